//! Team quotas on a real engine (SQLite store, real git, a scripted model): a model attempt's
//! reservation is named by the timeline, so a driver that makes the attempt again after a
//! crash (here: the reservation a dead driver left in the store) is granted it without
//! reserving twice, and the reservation is settled to the call's cost; a mission of the
//! same team that no longer fits is blocked before its call, naming the team.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;

use flightdeck_core::quota::{period_of, reservation_id, TeamQuota};
use flightdeck_core::{EventKind, MissionId, MissionStatus};
use flightdeck_engine::{
    Clock, CreateMission, Engine, EngineConfig, LiveParts, ModelSettings, Silent, SystemClock,
};
use flightdeck_store::{EventStore, QuotaGrant, QuotaHold, QuotaReservation};
use flightdeck_testkit::TestRepo;

const TEAM: &str = "@acme/platform";

/// One call of $0.11 (1,000 tokens in, 100 out at $100/Mtok), its worst case too.
const SCRIPT: &str = r#"
[pricing]
input_per_mtok = 100.0
output_per_mtok = 100.0

[[turn]]
input_tokens = 1000
output_tokens = 100
[[turn.call]]
tool = "finish"
args = { summary = "done" }

[[turn]]
input_tokens = 1000
output_tokens = 100
[[turn.call]]
tool = "finish"
args = { summary = "done" }
"#;

const TEMPLATE: &str = "goal = \"g\"\n[workspace]\nruntime = \"local-unsandboxed\"\n[model]\npin = \"scripted:.flightdeck/script.toml\"\nmax_output_tokens = 100\n[[steps]]\nagent = \"coder\"\n";

const POLICY: &str = "[defaults]\ncommand = \"allow\"\nwrite = \"allow\"\npublish = \"allow\"\n";

async fn engine(data: &std::path::Path) -> Engine {
    let url = format!("sqlite://{}", data.join("flightdeck.db").display());
    let (store, artifacts) = flightdeck_store::open_with_artifacts(&url, &data.join("artifacts"))
        .await
        .unwrap();
    let mut cfg = EngineConfig::live(LiveParts {
        store,
        artifacts,
        data_dir: data.to_path_buf(),
        observer: Arc::new(Silent),
        models: ModelSettings::default(),
        secrets: Default::default(),
        workspace: flightdeck_engine::WorkspaceSettings {
            allow_unsandboxed: true,
            ..Default::default()
        },
        teams: flightdeck_policy::Teams::new(BTreeMap::from([(
            TEAM.to_string(),
            vec!["carol@acme.com".to_string(), "@carol".to_string()],
        )])),
        people: Default::default(),
        shutdown: flightdeck_engine::no_shutdown(),
        anchors: None,
    });
    cfg.quotas = vec![TeamQuota {
        team: TEAM.into(),
        usd_per_month: Some(0.15),
        tokens_per_month: None,
    }];
    Engine::new(cfg)
}

fn request(repo: &TestRepo, n: u128) -> CreateMission {
    CreateMission {
        id: MissionId::from_parts(u64::try_from(SystemClock.now_ms()).unwrap(), n),
        template_name: "t".into(),
        template_file: "t.toml".into(),
        template_source: TEMPLATE.into(),
        params: BTreeMap::new(),
        repo: repo.path().to_path_buf(),
        base_ref: "HEAD".into(),
        requested_by: "@carol".into(),
        policy_source: POLICY.into(),
        policy_file: "policy.toml".into(),
        codeowners: None,
        base_commit: None,
        remote: None,
        origin: Default::default(),
    }
}

/// `(reserved, spent)` of the team's usd this month.
async fn usd(store: &dyn EventStore) -> (f64, f64) {
    let period = period_of(SystemClock.now_ms());
    store
        .quota_usage(&period)
        .await
        .unwrap()
        .into_iter()
        .find(|u| u.team == TEAM && u.dimension == "usd")
        .map_or((0.0, 0.0), |u| (u.reserved, u.spent))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_made_again_after_a_crash_reserves_once_and_a_full_quota_blocks_the_next_mission(
) {
    let data = tempfile::tempdir().unwrap();
    let repo = TestRepo::with_files(&[
        ("README.md", "# test\n"),
        (".flightdeck/script.toml", SCRIPT),
    ]);
    repo.commit_all("script");
    let engine = engine(data.path()).await;
    let store = engine.config().store.clone();

    // A driver reserved the first attempt of the mission's first call and died before it
    // recorded the request: the reservation is in the store, the timeline knows nothing.
    let first = request(&repo, 1);
    let id = first.id.to_string();
    let now = SystemClock.now_ms();
    let left = store
        .reserve_quota(QuotaReservation {
            id: reservation_id(&id, "step-0.m1", 1),
            mission: id.clone(),
            period: period_of(now),
            at_ms: now,
            holds: vec![QuotaHold {
                team: TEAM.into(),
                dimension: "usd".into(),
                limit: 0.15,
                amount: 0.11,
            }],
        })
        .await
        .unwrap();
    assert_eq!(left, QuotaGrant::Granted { again: false });

    // The mission makes that attempt: granted as the reservation it is (not refused, though
    // a second $0.11 would not fit), then settled to what the call cost.
    let state = engine.run(first).await.unwrap();
    assert_eq!(state.status, MissionStatus::Succeeded, "{:?}", state.error);
    let (reserved, spent) = usd(store.as_ref()).await;
    assert!(reserved.abs() < 1e-12, "reserved {reserved}");
    assert!((spent - 0.11).abs() < 1e-12, "spent {spent}");
    assert!((state.cost_usd - spent).abs() < 1e-12);

    // The next mission of the team does not fit: blocked before its call, naming the team.
    let second = request(&repo, 2);
    let second_id = second.id.to_string();
    let state = engine.run(second).await.unwrap();
    assert_eq!(state.status, MissionStatus::Blocked);
    assert_eq!(
        state.error.as_ref().map(|e| e.kind.as_str()),
        Some("budget_exceeded")
    );
    let events = store.events(&second_id, 0).await.unwrap();
    assert!(events.iter().all(|e| e.event_type != "model.requested"));
    let Ok(EventKind::BudgetExceeded(exceeded)) = events.last().unwrap().kind() else {
        panic!("the mission did not end with budget.exceeded: {events:?}");
    };
    assert_eq!(exceeded.dimension, "team_usd");
    assert_eq!(exceeded.team.as_deref(), Some(TEAM));
    assert_eq!((exceeded.limit, exceeded.needed), (0.15, 0.11));
    assert!((exceeded.used - 0.11).abs() < 1e-12, "{exceeded:?}");
    assert_eq!(exceeded.refused.as_deref(), Some("model call step-0.m1"));
    // Nothing more was held for the refused call.
    assert_eq!(usd(store.as_ref()).await.0, 0.0);
}
