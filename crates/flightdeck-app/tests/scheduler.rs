//! The scheduler continues missions by themselves: an approval that completes while a
//! mission is parked, a budget raised while it is blocked, an expiry that comes due. No
//! `resume` is typed anywhere here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;

use flightdeck_app::intake::{intake, RepoSource, RunRequest};
use flightdeck_app::scheduler::{ActionKind, Scheduler, SCHEDULER};
use flightdeck_app::{App, AppOptions};
use flightdeck_core::MissionStatus;
use flightdeck_engine::{Channel, Engine, Silent, Vote};
use flightdeck_testkit::TestRepo;

const POLICY: &str = "[defaults]\npublish = \"approve\"\n[[rule]]\nid = \"alice\"\naction = \"publish\"\nchanges_any = [\"source\"]\ndecision = \"approve\"\napprovers = [\"@alice\"]\nexpires_after = \"2s\"\n";

async fn installation() -> (tempfile::TempDir, App, Engine) {
    let data = tempfile::tempdir().unwrap();
    // The templates here run unsandboxed: the installation's decision.
    std::fs::write(
        data.path().join("config.toml"),
        "[workspace]\nallow_unsandboxed = true\n",
    )
    .unwrap();
    let app = App::open(AppOptions {
        data_dir: Some(data.path().to_path_buf()),
        identity: Some("@carol".into()),
        ..AppOptions::default()
    })
    .unwrap();
    let engine = app
        .engine(Arc::new(Silent), flightdeck_engine::no_shutdown())
        .await
        .unwrap();
    (data, app, engine)
}

fn repo(template: &str, script: Option<&str>) -> TestRepo {
    let mut files = vec![
        ("src/lib.rs", "pub fn f() {}\n"),
        (".flightdeck/policy.toml", POLICY),
        (".flightdeck/missions/t.toml", template),
    ];
    if let Some(script) = script {
        files.push((".flightdeck/script.toml", script));
    }
    TestRepo::with_files(&files)
}

async fn start(app: &App, engine: &Engine, repo: &TestRepo) -> flightdeck_core::MissionState {
    let made = intake(
        &app.data_dir,
        &RunRequest {
            template: "t".into(),
            repo: RepoSource::Checkout(repo.path().to_path_buf()),
            base: "HEAD".into(),
            params: BTreeMap::new(),
            requested_by: "@carol".into(),
            origin: flightdeck_engine::MissionOrigin::from_source(
                flightdeck_core::event::MissionSource::Cli,
            ),
            git_auth: None,
        },
    )
    .unwrap();
    engine.run(made.request).await.unwrap()
}

const CHANGE_SOURCE: &str = "[workspace]\nruntime = \"local-unsandboxed\"\n[[steps]]\nrun = \"echo '// more' >> src/lib.rs\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_completed_while_parked_continues_the_mission_without_resume() {
    let (_data, app, engine) = installation().await;
    let repo = repo(CHANGE_SOURCE, None);
    let parked = start(&app, &engine, &repo).await;
    assert_eq!(parked.status, MissionStatus::AwaitingApproval);
    let scheduler = Scheduler::new(engine.clone());
    // Nothing to do while the approval is pending.
    let (actions, deadline) = scheduler.tick().await.unwrap();
    assert!(actions.is_empty(), "{actions:?}");
    assert!(deadline.is_some(), "the expiry is the next deadline");
    let approval = parked
        .pending_approvals()
        .next()
        .unwrap()
        .request
        .approval_id
        .clone();
    engine
        .decide_approval(Vote {
            approval_id: approval,
            by: "@alice".into(),
            approve: true,
            comment: None,
            channel: Channel::Cli,
            vouched_email: None,
        })
        .await
        .unwrap();
    let (actions, _) = scheduler.tick().await.unwrap();
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert_eq!(actions[0].what, ActionKind::Continued);
    assert_eq!(actions[0].status, MissionStatus::Succeeded);
    let done = engine.load(&parked.id).await.unwrap();
    assert!(done.published.is_some());
    let events = engine.config().store.events(&parked.id, 0).await.unwrap();
    let resumed = events
        .iter()
        .find(|e| e.event_type == "mission.resumed")
        .unwrap();
    assert_eq!(resumed.data["by"], SCHEDULER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_raised_while_blocked_continues_the_mission() {
    let (_data, app, engine) = installation().await;
    let template = "[workspace]\nruntime = \"local-unsandboxed\"\n[budget]\ntool_calls = 1\n[[steps]]\nrun = \"echo one > docs.md\"\n[[steps]]\nrun = \"echo two >> docs.md\"\n";
    let repo = repo(template, None);
    let blocked = start(&app, &engine, &repo).await;
    assert_eq!(
        blocked.status,
        MissionStatus::Blocked,
        "{:?}",
        blocked.error
    );
    let scheduler = Scheduler::new(engine.clone());
    assert!(
        scheduler.tick().await.unwrap().0.is_empty(),
        "blocked until someone raises it"
    );
    engine
        .raise_budget(&blocked.id, "@carol", &[("tool_calls".into(), 1.0)])
        .await
        .unwrap();
    let (actions, _) = scheduler.tick().await.unwrap();
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert_eq!(actions[0].what, ActionKind::Continued);
    // Both steps ran (the publish gate then asks for an approval: the default).
    let after = engine.load(&blocked.id).await.unwrap();
    assert_eq!(after.steps.len(), 2, "{:?}", after.steps);
    assert!(after.steps.values().all(|s| s.status.is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiry_is_fired_when_it_comes_due_and_only_then() {
    let (_data, app, engine) = installation().await;
    let repo = repo(CHANGE_SOURCE, None);
    let parked = start(&app, &engine, &repo).await;
    let scheduler = Scheduler::new(engine.clone());
    let (actions, deadline) = scheduler.tick().await.unwrap();
    assert!(actions.is_empty());
    let deadline = deadline.unwrap();
    let now = flightdeck_engine::Clock::now_ms(&flightdeck_engine::SystemClock);
    tokio::time::sleep(std::time::Duration::from_millis(
        u64::try_from((deadline - now).max(0) + 200).unwrap(),
    ))
    .await;
    let (actions, deadline) = scheduler.tick().await.unwrap();
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert_eq!(actions[0].what, ActionKind::Settled);
    assert_eq!(actions[0].status, MissionStatus::Failed);
    assert!(deadline.is_none());
    let failed = engine.load(&parked.id).await.unwrap();
    assert_eq!(failed.error.unwrap().kind, "approval_expired");
}
