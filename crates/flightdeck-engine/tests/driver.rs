//! The driver with injected inputs, in-process: inputs that arrive while a command runs are
//! taken in (never a race), a cancel kills the command and removes the workspace, a
//! shutdown records the interruption and a resume finishes the work, and a crash between
//! writing the branch and recording the publication resumes to the very same commit.
//!
//! Each test drives a real engine (a store in a temporary data directory: SQLite, and again
//! on PostgreSQL, the server `FLIGHTDECK_TEST_DATABASE_URL` names; real git, commands
//! unsandboxed so the tests need no bubblewrap) and, where another process would act, a
//! second engine over the same database: what another `flightdeck` process is.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use flightdeck_core::{MissionId, MissionState, MissionStatus, StoredEvent};
use flightdeck_engine::ports::{Commit, Committed, FileOutcome, FilePort, LiveFiles, Publisher};
use flightdeck_engine::tools::ToolInvocation;
use flightdeck_engine::{
    Clock, CreateMission, Engine, EngineConfig, EngineError, LiveParts, ModelSettings, Silent,
    SystemClock,
};
use flightdeck_engine::{Foreign, ReplayMode};
use flightdeck_store::{EventStore, NewInput};
use flightdeck_testkit::TestRepo;
use flightdeck_workspace::ConfinedFs;
use flightdeck_workspace::Worktree;

const ALLOW_ALL: &str = "[defaults]\ncommand = \"allow\"\nwrite = \"allow\"\npublish = \"allow\"\n";

/// The store an installation's engines share.
#[derive(Debug, Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A data directory and the engines (processes) working on it.
struct Installation {
    data: tempfile::TempDir,
    /// The database: SQLite in the data directory, or a fresh PostgreSQL database.
    url: String,
}

impl Installation {
    fn on(backend: Backend) -> Installation {
        let data = tempfile::tempdir().unwrap();
        let url = match backend {
            Backend::Sqlite => format!("sqlite://{}", data.path().join("flightdeck.db").display()),
            Backend::Postgres => fresh_postgres_database(),
        };
        Installation { data, url }
    }

    /// An engine over this installation, as one `flightdeck` process has one.
    async fn engine(&self) -> Engine {
        self.engine_with(flightdeck_engine::no_shutdown(), None)
            .await
    }

    async fn engine_with(
        &self,
        shutdown: tokio::sync::watch::Receiver<Option<String>>,
        publisher: Option<Arc<dyn Publisher>>,
    ) -> Engine {
        self.engine_with_ports(shutdown, publisher, None).await
    }

    async fn engine_with_ports(
        &self,
        shutdown: tokio::sync::watch::Receiver<Option<String>>,
        publisher: Option<Arc<dyn Publisher>>,
        files: Option<Arc<dyn FilePort>>,
    ) -> Engine {
        let (store, artifacts) =
            flightdeck_store::open_with_artifacts(&self.url, &self.data.path().join("artifacts"))
                .await
                .unwrap();
        let mut cfg = EngineConfig::live(LiveParts {
            store,
            artifacts,
            data_dir: self.data.path().to_path_buf(),
            observer: Arc::new(Silent),
            models: ModelSettings::default(),
            secrets: Default::default(),
            workspace: flightdeck_engine::WorkspaceSettings {
                allow_unsandboxed: true,
                ..Default::default()
            },
            teams: Default::default(),
            people: Default::default(),
            shutdown,
            anchors: None,
        });
        if let Some(publisher) = publisher {
            cfg.ports.publisher = publisher;
        }
        if let Some(files) = files {
            cfg.ports.files = files;
        }
        Engine::new(cfg)
    }

    fn workspace(&self, id: &str) -> std::path::PathBuf {
        self.data.path().join("workspaces").join(id)
    }
}

static NEXT: AtomicU64 = AtomicU64::new(1);

/// A new database on the test PostgreSQL server; its URL.
fn fresh_postgres_database() -> String {
    let admin = std::env::var("FLIGHTDECK_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "the PostgreSQL half of these tests needs a server: run scripts/test, or \
             `scripts/postgres start` and export the FLIGHTDECK_TEST_DATABASE_URL it prints"
        )
    });
    let name = format!(
        "fd_driver_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    let out = std::process::Command::new("psql")
        .args([admin.as_str(), "-qAtc", &format!("CREATE DATABASE {name}")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (server, _) = admin.rsplit_once('/').unwrap();
    format!("{server}/{name}")
}

/// A mission request for `template` in `repo` (the policy allows everything).
fn request(repo: &TestRepo, template: &str, policy: &str) -> CreateMission {
    CreateMission {
        id: MissionId::from_parts(
            u64::try_from(SystemClock.now_ms()).unwrap(),
            u128::from(NEXT.fetch_add(1, Ordering::Relaxed)),
        ),
        template_name: "t".into(),
        template_file: "t.toml".into(),
        template_source: template.into(),
        params: BTreeMap::new(),
        repo: repo.path().to_path_buf(),
        base_ref: "HEAD".into(),
        requested_by: "@carol".into(),
        policy_source: policy.into(),
        policy_file: "policy.toml".into(),
        codeowners: None,
        base_commit: None,
        remote: None,
        origin: Default::default(),
    }
}

fn repo() -> TestRepo {
    TestRepo::with_files(&[("README.md", "# test\n"), ("src/lib.rs", "pub fn f() {}\n")])
}

async fn timeline(engine: &Engine, id: &str) -> Vec<StoredEvent> {
    engine.config().store.events(id, 0).await.unwrap()
}

fn types(events: &[StoredEvent]) -> Vec<&str> {
    events.iter().map(|e| e.event_type.as_str()).collect()
}

/// Waits (up to 20 s) until mission `id`'s timeline satisfies `predicate`.
async fn wait_until(engine: &Engine, id: &str, predicate: impl Fn(&[StoredEvent]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let events = engine
            .config()
            .store
            .events(id, 0)
            .await
            .unwrap_or_default();
        if predicate(&events) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out: {:?}", types(&events));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn requested(events: &[StoredEvent], call: &str) -> bool {
    events
        .iter()
        .any(|e| e.event_type == "tool.requested" && e.data["call_id"] == call)
}

/// Whether a process whose command line contains `marker` is alive.
fn process_alive(marker: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        std::fs::read(entry.path().join("cmdline"))
            .map(|cmd| {
                String::from_utf8_lossy(&cmd)
                    .replace('\0', " ")
                    .contains(marker)
            })
            .unwrap_or(false)
    })
}

/// Whether every process whose command line contains `marker` is gone within 5 s.
async fn gone(marker: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while process_alive(marker) {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

const UNSANDBOXED: &str = "[workspace]\nruntime = \"local-unsandboxed\"\n";

async fn a_budget_raise_while_a_command_runs_is_taken_in_and_the_command_goes_on(backend: Backend) {
    let installation = Installation::on(backend);
    let repo = repo();
    let template = format!(
        "{UNSANDBOXED}[budget]\ntool_calls = 3\n[[steps]]\nrun = \"sleep 2 && echo one > one.txt\"\n[[steps]]\nrun = \"echo two > two.txt\"\n"
    );
    let driver = installation.engine().await;
    let request = request(&repo, &template, ALLOW_ALL);
    let id = request.id.to_string();
    let running = tokio::spawn(async move { driver.run(request).await });
    let other = installation.engine().await; // another process
    wait_until(&other, &id, |events| requested(events, "step-0")).await;
    let raised = other
        .raise_budget(&id, "@carol", &[("tool_calls".into(), 2.0)])
        .await
        .unwrap();
    assert_eq!(
        raised.budget_limit(flightdeck_core::budget::Dimension::ToolCalls),
        Some(5.0)
    );
    let state = running.await.unwrap().unwrap();
    assert_eq!(state.status, MissionStatus::Succeeded, "{:?}", state.error);
    let events = timeline(&other, &id).await;
    let kinds = types(&events);
    let raise = kinds.iter().position(|t| *t == "budget.raised").unwrap();
    let first_done = kinds.iter().position(|t| *t == "tool.completed").unwrap();
    assert!(
        raise < first_done,
        "the raise came in while step 0 ran: {kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|t| **t == "tool.completed").count(),
        2,
        "the command went on: {kinds:?}"
    );
    assert!(!kinds.contains(&"mission.interrupted"), "{kinds:?}");
}

async fn a_cancel_during_a_command_kills_it_and_removes_the_workspace(backend: Backend) {
    let installation = Installation::on(backend);
    let repo = repo();
    let marker = format!("sleep 30.{:04}", NEXT.fetch_add(1, Ordering::Relaxed));
    let template = format!("{UNSANDBOXED}[[steps]]\nrun = \"{marker}\"\n");
    let driver = installation.engine().await;
    let request = request(&repo, &template, ALLOW_ALL);
    let id = request.id.to_string();
    let running = tokio::spawn(async move { driver.run(request).await });
    let other = installation.engine().await;
    wait_until(&other, &id, |events| requested(events, "step-0")).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !process_alive(&marker) {
        assert!(Instant::now() < deadline, "the command never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let cancelled = other.cancel(&id, "@carol").await.unwrap();
    assert_eq!(cancelled.status, MissionStatus::Cancelled);
    let state = running.await.unwrap().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the driver took the cancel in late"
    );
    assert_eq!(state.status, MissionStatus::Cancelled);
    assert!(gone(&marker).await, "the cancelled command still runs");
    assert!(!installation.workspace(&id).exists(), "the workspace stays");
    let events = timeline(&other, &id).await;
    assert_eq!(events.last().unwrap().event_type, "mission.finished");
    assert_eq!(events.last().unwrap().data["error"]["kind"], "cancelled");
}

async fn a_cancel_during_an_acceptance_command_removes_the_workspace_like_any_cancel(
    backend: Backend,
) {
    let installation = Installation::on(backend);
    let repo = repo();
    let marker = format!("sleep 30.{:04}", NEXT.fetch_add(1, Ordering::Relaxed));
    let template = format!(
        "{UNSANDBOXED}[[steps]]\nrun = \"echo x >> README.md\"\n[acceptance]\ncommands = [\"{marker}\"]\n"
    );
    let driver = installation.engine().await;
    let request = request(&repo, &template, ALLOW_ALL);
    let id = request.id.to_string();
    let running = tokio::spawn(async move { driver.run(request).await });
    let other = installation.engine().await;
    wait_until(&other, &id, |events| {
        requested(events, "acceptance.1.c1.a1")
    })
    .await;
    other.cancel(&id, "@carol").await.unwrap();
    let state = running.await.unwrap().unwrap();
    assert_eq!(state.status, MissionStatus::Cancelled);
    assert!(!installation.workspace(&id).exists(), "the workspace stays");
    assert!(
        gone(&marker).await,
        "the cancelled acceptance command still runs"
    );
}

async fn a_shutdown_records_the_interruption_and_a_resume_finishes_the_work(backend: Backend) {
    let installation = Installation::on(backend);
    let repo = repo();
    // A sleep long enough to be interrupted, short enough to run again after the resume.
    let marker = format!("sleep 3.{:04}", NEXT.fetch_add(1, Ordering::Relaxed));
    let template = format!("{UNSANDBOXED}[[steps]]\nrun = \"{marker}; echo done > done.txt\"\n");
    let (signal, shutdown) = tokio::sync::watch::channel(None);
    let driver = installation.engine_with(shutdown, None).await;
    let request = request(&repo, &template, ALLOW_ALL);
    let id = request.id.to_string();
    let running = tokio::spawn(async move { driver.run(request).await });
    let other = installation.engine().await;
    wait_until(&other, &id, |events| requested(events, "step-0")).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !process_alive(&marker) {
        assert!(Instant::now() < deadline, "the command never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal.send(Some("SIGTERM".into())).unwrap();
    let stopped = running.await.unwrap();
    assert!(
        matches!(stopped, Err(EngineError::Interrupted { ref reason, .. }) if reason == "SIGTERM"),
        "{stopped:?}"
    );
    assert!(gone(&marker).await, "the command outlived the shutdown");
    let events = timeline(&other, &id).await;
    let last = events.last().unwrap();
    assert_eq!(
        last.event_type,
        "mission.interrupted",
        "{:?}",
        types(&events)
    );
    assert!(last.data["reason"].as_str().unwrap().contains("SIGTERM"));
    assert_eq!(last.data["calls"], serde_json::json!(["step-0"]));
    // The lease is free: another process resumes at once, and the step runs again.
    let resumed = tokio::time::timeout(Duration::from_secs(60), other.resume(&id, "@carol"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        resumed.status,
        MissionStatus::Succeeded,
        "{:?}",
        resumed.error
    );
    let events = timeline(&other, &id).await;
    let kinds = types(&events);
    assert_eq!(
        kinds
            .iter()
            .filter(|t| **t == "mission.interrupted")
            .count(),
        1,
        "the shutdown's interruption is not recorded twice: {kinds:?}"
    );
    assert!(requested(&events, "step-0#2"));
}

/// Commits, then fails as if the process died right after writing the branch.
struct DiesAfterCommit;

#[async_trait]
impl Publisher for DiesAfterCommit {
    async fn commit(&self, worktree: &Worktree, commit: &Commit) -> Result<Committed, EngineError> {
        flightdeck_engine::ports::GitPublisher
            .commit(worktree, commit)
            .await?;
        Err(EngineError::Unsupported(
            "the process died after writing the branch".into(),
        ))
    }
}

async fn a_crash_after_the_branch_is_written_resumes_to_the_same_commit(backend: Backend) {
    let installation = Installation::on(backend);
    let repo = repo();
    let template = format!("{UNSANDBOXED}[[steps]]\nrun = \"echo more >> src/lib.rs\"\n");
    let crashing = installation
        .engine_with(
            flightdeck_engine::no_shutdown(),
            Some(Arc::new(DiesAfterCommit)),
        )
        .await;
    let request = request(&repo, &template, ALLOW_ALL);
    let id = request.id.to_string();
    assert!(crashing.run(request).await.is_err());
    let branch = format!("flightdeck/{id}");
    let written = repo.git(&["rev-parse", &branch]);
    let events = timeline(&crashing, &id).await;
    assert_eq!(
        events.last().unwrap().event_type,
        "change.committing",
        "what is committed is recorded before the branch is written"
    );
    // Time passes, and the resume appends events of its own: the commit is the same anyway.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let engine = installation.engine().await;
    let state: MissionState = engine.resume(&id, "@carol").await.unwrap();
    assert_eq!(state.status, MissionStatus::Succeeded, "{:?}", state.error);
    assert_eq!(state.published.as_ref().unwrap().commit, written);
    assert_eq!(repo.git(&["rev-parse", &branch]), written);
}

async fn inputs_that_cannot_be_taken_in_are_refused_with_the_reason_and_record_nothing(
    backend: Backend,
) {
    let installation = Installation::on(backend);
    let repo = repo();
    let template = format!("{UNSANDBOXED}[[steps]]\nrun = \"true\"\n");
    let engine = installation.engine().await;
    let state = engine
        .run(request(&repo, &template, ALLOW_ALL))
        .await
        .unwrap();
    let before = timeline(&engine, &state.id).await.len();
    let refused = engine
        .raise_budget(&state.id, "@carol", &[("usd".into(), 1.0)])
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("already finished"),
        "{refused}"
    );
    let refused = engine.cancel(&state.id, "@carol").await.unwrap_err();
    assert!(
        refused.to_string().contains("already finished"),
        "{refused}"
    );
    assert_eq!(timeline(&engine, &state.id).await.len(), before);
}

/// Reads files for real; on the first read, before reading, posts `input` to the mission's
/// inbox through the engine's own store (as `flightdeck budget` from another process would,
/// at the worst moment: while the read's request is staged, not stored yet).
struct PostsDuringFirstRead {
    store: std::sync::OnceLock<Arc<dyn EventStore>>,
    input: NewInput,
    posted: std::sync::atomic::AtomicBool,
}

impl FilePort for PostsDuringFirstRead {
    fn run(
        &self,
        call_id: &str,
        fs: &ConfinedFs,
        worktree: &Worktree,
        invocation: &ToolInvocation,
    ) -> Result<FileOutcome, EngineError> {
        if !self.posted.swap(true, Ordering::SeqCst) {
            let store = self.store.get().unwrap().clone();
            let input = self.input.clone();
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(store.post_input(input))
            })
            .unwrap();
        }
        LiveFiles.run(call_id, fs, worktree, invocation)
    }
}

/// An input posted while an agent's read is staged (its request and result are stored with
/// the next model call's request) is taken in after that append, never between staged
/// events, so the replay, which hands an input over right after the append it follows,
/// reproduces the mission event for event.
async fn an_input_posted_during_a_staged_read_is_recorded_where_a_replay_takes_it_in(
    backend: Backend,
) {
    let install = Installation::on(backend);
    let script = r#"model = "sim-1"
[[turn]]
[[turn.call]]
tool = "read_file"
args = { path = "README.md" }
[[turn]]
[[turn.call]]
tool = "read_file"
args = { path = "src/lib.rs" }
[[turn]]
[[turn.call]]
tool = "write_file"
args = { path = "NOTES.md", content = "read both\n" }
[[turn.call]]
tool = "finish"
args = { summary = "Done." }
"#;
    let repo = TestRepo::with_files(&[
        ("README.md", "# test\n"),
        ("src/lib.rs", "pub fn f() {}\n"),
        (".flightdeck/script.toml", script),
    ]);
    let template = "goal = \"Read, then note.\"\n[model]\npin = \"scripted:.flightdeck/script.toml\"\n[budget]\ntool_calls = 40\n[workspace]\nruntime = \"local-unsandboxed\"\n[[steps]]\nagent = \"coder\"\n";
    let request = request(&repo, template, ALLOW_ALL);
    let id = request.id.to_string();
    let raise = Foreign::BudgetRaise {
        by: "@carol".into(),
        adds: vec![("tool_calls".into(), 5.0)],
    };
    let files = Arc::new(PostsDuringFirstRead {
        store: std::sync::OnceLock::new(),
        input: NewInput {
            mission: id.clone(),
            kind: raise.kind().to_string(),
            payload: raise.payload(),
            posted_at_ms: SystemClock.now_ms(),
        },
        posted: std::sync::atomic::AtomicBool::new(false),
    });
    let engine = install
        .engine_with_ports(flightdeck_engine::no_shutdown(), None, Some(files.clone()))
        .await;
    let _ = files.store.set(engine.config().store.clone());
    let state = engine.run(request.clone()).await.unwrap();
    assert_eq!(state.status, MissionStatus::Succeeded);
    let events = timeline(&engine, &id).await;
    let raised = events
        .iter()
        .position(|e| e.event_type == "budget.raised")
        .unwrap_or_else(|| panic!("the raise was not taken in: {:?}", types(&events)));
    // Taken in right after the append that stored the staged read: the event before it is
    // the next model call's request, stored with them.
    assert_eq!(
        events[raised - 1].event_type,
        "model.requested",
        "{:?}",
        types(&events)
    );

    let report = engine
        .replay(
            &id,
            events.clone(),
            request,
            ReplayMode::Verify,
            install.data.path().join("replay"),
        )
        .await
        .unwrap();
    assert!(
        !report.diverged,
        "diverged at {:?} ({:?}): {}",
        report.at_seq, report.event_type, report.explanation
    );
    assert_eq!(report.checked, events.len() as u64);
}

/// Makes each check a test on SQLite and one on PostgreSQL.
macro_rules! on_both_backends {
    ($($check:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::$check(super::Backend::Sqlite).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::$check(super::Backend::Postgres).await;
                }
            )*
        }
    };
}

on_both_backends!(
    a_budget_raise_while_a_command_runs_is_taken_in_and_the_command_goes_on,
    a_cancel_during_a_command_kills_it_and_removes_the_workspace,
    a_cancel_during_an_acceptance_command_removes_the_workspace_like_any_cancel,
    a_shutdown_records_the_interruption_and_a_resume_finishes_the_work,
    a_crash_after_the_branch_is_written_resumes_to_the_same_commit,
    inputs_that_cannot_be_taken_in_are_refused_with_the_reason_and_record_nothing,
    an_input_posted_during_a_staged_read_is_recorded_where_a_replay_takes_it_in,
);
