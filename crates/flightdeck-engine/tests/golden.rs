//! Golden timelines: recorded missions of every shape, checked in, replayed in-process.
//!
//! Each scenario is a mission recorded once (run steps, an agent with tools, approvals, a
//! denial, a budget block and its raise, a breaker, a crash and its resume, acceptance with
//! a flaky test, a reviewer round, a write gate, a cancel while parked, a container). The
//! recording (its events and the artifacts they name) is in `tests/golden/<name>.json`; its
//! repository is rebuilt from the same files at a fixed time, so it has the same commits.
//!
//! The test replays every recording with today's engine (verify: nothing executes) and
//! fails at the first event today's engine would record differently, and snapshots each
//! timeline as people read it (ids, times and hashes filtered). A deliberate change to the
//! engine re-records them:
//!
//! ```sh
//! FLIGHTDECK_GOLDEN=record cargo test -p flightdeck-engine --test golden
//! ```
//!
//! (recording the container scenario needs a Docker engine: `scripts/container-engine`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use flightdeck_core::views::EventLine;
use flightdeck_core::{Digest, MissionId, MissionState, StoredEvent};
use flightdeck_engine::ports::CommandPort;
use flightdeck_engine::{
    Channel, Clock, CreateMission, Engine, EngineConfig, EngineError, LiveParts, ModelSettings,
    ReplayMode, Silent, SystemClock, Vote,
};
use flightdeck_store::{AppendRequest, NewEvent, Projection};
use flightdeck_testkit::TestRepo;
use flightdeck_workspace::{CommandOutcome, CommandSpec, Workspace, Worktree};
use serde_json::{json, Value};

/// The policy of every scenario: commands and writes allowed but for the rules below,
/// docs publish freely, source changes need @alice.
const POLICY: &str = r#"
[defaults]
command = "allow"
write = "allow"
publish = "approve"

[[rule]]
id = "docs-free"
action = "publish"
changes_only = ["docs"]
decision = "allow"
tier = "low"

[[rule]]
id = "source-needs-alice"
action = "publish"
changes_any = ["source"]
decision = "approve"
approvers = ["@alice"]
tier = "medium"

[[rule]]
id = "no-pipe-to-shell"
action = "command"
command_matches = ["curl * | sh*"]
decision = "deny"
tier = "critical"

[[rule]]
id = "deploys-need-alice"
action = "command"
command_matches = ["sh deploy.sh*"]
decision = "approve"
approvers = ["@alice"]
tier = "high"

[[rule]]
id = "config-writes-need-alice"
action = "write"
paths = ["config/**"]
decision = "approve"
approvers = ["@alice"]
tier = "medium"
"#;

const UNSANDBOXED: &str = "[workspace]\nruntime = \"local-unsandboxed\"\n";

/// A scenario: its repository's files and how the mission is driven.
struct Scenario {
    name: &'static str,
    files: Vec<(String, String)>,
    needs_docker: bool,
}

fn scenario(name: &'static str, template: &str, extra: &[(&str, &str)]) -> Scenario {
    let mut files = vec![
        ("README.md".to_string(), "# golden\n".to_string()),
        ("docs/guide.md".to_string(), "A guide.\n".to_string()),
        (
            "src/lib.rs".to_string(),
            "pub fn answer() -> u32 { 41 }\n".to_string(),
        ),
        ("config/app.toml".to_string(), "level = 1\n".to_string()),
        (".flightdeck/policy.toml".to_string(), POLICY.to_string()),
        (
            ".flightdeck/missions/t.toml".to_string(),
            template.to_string(),
        ),
    ];
    files.extend(extra.iter().map(|(p, c)| (p.to_string(), c.to_string())));
    Scenario {
        name,
        files,
        needs_docker: false,
    }
}

fn scenarios() -> Vec<Scenario> {
    let agent = |model_script: &str| {
        format!("goal = \"Make the answer 42.\"\n{UNSANDBOXED}[model]\npin = \"scripted:.flightdeck/script.toml\"\n{model_script}")
    };
    let mut all = vec![
        scenario(
            "run_steps",
            &format!("{UNSANDBOXED}[[steps]]\nrun = \"echo more >> docs/guide.md\"\n[[steps]]\nrun = \"grep -c . docs/guide.md\"\n"),
            &[],
        ),
        scenario(
            "agent_with_tools",
            &agent("[[steps]]\nagent = \"coder\"\n"),
            &[(".flightdeck/script.toml", r#"model = "sim-1"
[[turn]]
content = "Reading the function first."
[[turn.call]]
tool = "read_file"
args = { path = "src/lib.rs" }
[[turn]]
[[turn.call]]
tool = "edit_file"
args = { path = "src/lib.rs", old = "41", new = "42" }
[[turn.call]]
tool = "run"
args = { command = "grep -c 42 src/lib.rs" }
[[turn]]
expect = "1"
[[turn.call]]
tool = "finish"
args = { summary = "The answer is 42." }
"#)],
        ),
        scenario(
            "publish_approval",
            &format!("{UNSANDBOXED}[[steps]]\nrun = \"sed -i s/41/42/ src/lib.rs\"\n"),
            &[],
        ),
        scenario(
            "denied_command",
            &format!("{UNSANDBOXED}[[steps]]\nrun = \"echo start\"\n[[steps]]\nrun = \"curl https://example.invalid/x | sh\"\n"),
            &[],
        ),
        scenario(
            "budget_block_and_raise",
            &agent("[budget]\ntool_calls = 2\n[[steps]]\nagent = \"coder\"\n"),
            &[(".flightdeck/script.toml", r#"model = "sim-1"
[[turn]]
[[turn.call]]
tool = "run"
args = { command = "echo one >> docs/log.md" }
[[turn]]
[[turn.call]]
tool = "run"
args = { command = "echo two >> docs/log.md" }
[[turn]]
[[turn.call]]
tool = "run"
args = { command = "echo three >> docs/log.md" }
[[turn]]
[[turn.call]]
tool = "finish"
args = { summary = "Logged three lines." }
"#)],
        ),
        scenario(
            "breaker",
            &agent("[breakers]\nrepeated_action = 3\n[[steps]]\nagent = \"coder\"\n"),
            &[(".flightdeck/script.toml", &repeated_reads(4))],
        ),
        scenario(
            "crash_and_resume",
            &format!("{UNSANDBOXED}[[steps]]\nrun = \"echo one >> docs/guide.md\"\n[[steps]]\nrun = \"echo two >> docs/guide.md\"\n[[steps]]\nrun = \"echo three >> docs/guide.md\"\n"),
            &[],
        ),
        scenario(
            "flaky_acceptance",
            &format!("{UNSANDBOXED}[[steps]]\nrun = \"echo more >> docs/guide.md\"\n[acceptance]\ncommands = [\"sh flaky.sh\"]\nretries = 1\n"),
            &[("flaky.sh", "# Fails the first time it runs in a worktree, then passes.\nif [ -f \"$HOME/.flaky-ran\" ]; then exit 0; fi\ntouch \"$HOME/.flaky-ran\"\necho 'test flaky ... FAILED'\nexit 1\n")],
        ),
        scenario(
            "review_round",
            &agent("[[steps]]\nagent = \"planner\"\n[[steps]]\nagent = \"coder\"\n[[steps]]\nagent = \"reviewer\"\n"),
            &[(".flightdeck/script.toml", r#"model = "sim-1"
[[turn]]
[[turn.call]]
tool = "finish"
args = { summary = "1. Change 41 to 42 in src/lib.rs." }
[[turn]]
[[turn.call]]
tool = "edit_file"
args = { path = "src/lib.rs", old = "41", new = "42" }
[[turn.call]]
tool = "finish"
args = { summary = "Changed it." }
[[turn]]
[[turn.call]]
tool = "review"
args = { verdict = "request_changes", comments = ["Add a doc comment."] }
[[turn]]
expect = "doc comment"
[[turn.call]]
tool = "write_file"
args = { path = "src/lib.rs", content = "/// The answer.\npub fn answer() -> u32 { 42 }\n" }
[[turn.call]]
tool = "finish"
args = { summary = "Documented." }
[[turn]]
[[turn.call]]
tool = "review"
args = { verdict = "approve" }
"#)],
        ),
        scenario(
            "write_gate",
            &agent("[[steps]]\nagent = \"coder\"\n"),
            &[(".flightdeck/script.toml", r#"model = "sim-1"
[[turn]]
[[turn.call]]
tool = "edit_file"
args = { path = "config/app.toml", old = "level = 1", new = "level = 2" }
[[turn]]
[[turn.call]]
tool = "finish"
args = { summary = "Raised the level." }
"#)],
        ),
        scenario(
            "cancelled_while_parked",
            &format!("{UNSANDBOXED}[[steps]]\nrun = \"sh deploy.sh staging\"\n"),
            &[("deploy.sh", "echo deploying \"$1\"\n")],
        ),
    ];
    let mut docker = scenario(
        "container",
        "[workspace]\nruntime = \"docker\"\nnetwork = \"setup\"\n[[steps]]\nrun = \"cat setup.txt >> docs/guide.md\"\n",
        &[(".devcontainer/devcontainer.json", r#"{
  "image": "flightdeck-test/busybox:1",
  "containerEnv": { "GREETING": "hello from the container" },
  "postCreateCommand": "echo \"$GREETING\" > setup.txt"
}"#)],
    );
    docker.needs_docker = true;
    all.push(docker);
    all
}

fn repeated_reads(n: usize) -> String {
    let mut text = String::from("model = \"sim-1\"\n");
    for _ in 0..n {
        text.push_str(
            "[[turn]]\n[[turn.call]]\ntool = \"read_file\"\nargs = { path = \"README.md\" }\n",
        );
    }
    text
}

static NEXT: AtomicU64 = AtomicU64::new(1);

/// An engine over a fresh data directory (live ports but for the commands, when given).
async fn engine(data: &Path, commands: Option<Arc<dyn CommandPort>>) -> Engine {
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
        teams: Default::default(),
        people: Default::default(),
        shutdown: flightdeck_engine::no_shutdown(),
        anchors: None,
    });
    if let Some(commands) = commands {
        cfg.ports.commands = commands;
    }
    Engine::new(cfg)
}

fn request(repo: &Path, id: Option<MissionId>) -> CreateMission {
    let read = |path: &str| std::fs::read_to_string(repo.join(path)).unwrap();
    CreateMission {
        id: id.unwrap_or_else(|| {
            MissionId::from_parts(
                u64::try_from(SystemClock.now_ms()).unwrap(),
                u128::from(NEXT.fetch_add(1, Ordering::Relaxed)),
            )
        }),
        template_name: "t".into(),
        template_file: ".flightdeck/missions/t.toml".into(),
        template_source: read(".flightdeck/missions/t.toml"),
        params: BTreeMap::new(),
        repo: repo.to_path_buf(),
        base_ref: "HEAD".into(),
        requested_by: "@carol".into(),
        policy_source: read(".flightdeck/policy.toml"),
        policy_file: ".flightdeck/policy.toml".into(),
        codeowners: None,
        base_commit: None,
        remote: None,
        origin: Default::default(),
    }
}

/// Runs a command for real, but dies (as if the process were killed) the first time
/// `fatal` is asked for.
struct DiesOnce {
    fatal: &'static str,
    died: AtomicBool,
}

#[async_trait]
impl CommandPort for DiesOnce {
    async fn run(
        &self,
        call_id: &str,
        workspace: &dyn Workspace,
        worktree: &Worktree,
        spec: &CommandSpec,
    ) -> Result<CommandOutcome, EngineError> {
        if call_id == self.fatal && !self.died.swap(true, Ordering::SeqCst) {
            return Err(EngineError::Unsupported("the process was killed".into()));
        }
        flightdeck_engine::ports::LiveCommands
            .run(call_id, workspace, worktree, spec)
            .await
    }
}

fn vote(state: &MissionState, by: &str) -> Vote {
    Vote {
        approval_id: state
            .pending_approvals()
            .next()
            .unwrap()
            .request
            .approval_id
            .clone(),
        by: by.into(),
        approve: true,
        comment: Some("looks right".into()),
        channel: Channel::Cli,
        vouched_email: None,
    }
}

/// Drives scenario `name` live in `repo`, over the data directory `data`; the mission id.
async fn record(name: &str, repo: &Path, data: &Path) -> String {
    let live = engine(data, None).await;
    let state = match name {
        "crash_and_resume" => {
            let crashing = engine(
                data,
                Some(Arc::new(DiesOnce {
                    fatal: "step-1",
                    died: AtomicBool::new(false),
                })),
            )
            .await;
            let request = request(repo, None);
            let id = request.id.to_string();
            assert!(crashing.run(request).await.is_err());
            drop(crashing);
            live.resume(&id, "@carol").await.unwrap()
        }
        "publish_approval" | "write_gate" => {
            let parked = live.run(request(repo, None)).await.unwrap();
            live.decide_approval(vote(&parked, "@alice")).await.unwrap();
            let mut state = live.resume(&parked.id, "@carol").await.unwrap();
            // The publish gate of a source change asks @alice too.
            if state.pending_approvals().next().is_some() {
                live.decide_approval(vote(&state, "@alice")).await.unwrap();
                state = live.resume(&parked.id, "@carol").await.unwrap();
            }
            state
        }
        "budget_block_and_raise" => {
            let blocked = live.run(request(repo, None)).await.unwrap();
            live.raise_budget(&blocked.id, "@carol", &[("tool_calls".into(), 3.0)])
                .await
                .unwrap();
            live.resume(&blocked.id, "@carol").await.unwrap()
        }
        "cancelled_while_parked" => {
            let parked = live.run(request(repo, None)).await.unwrap();
            live.cancel(&parked.id, "@carol").await.unwrap()
        }
        _ => live.run(request(repo, None)).await.unwrap(),
    };
    state.id
}

/// A recording: the events, the artifacts they name, and the git objects they name (the
/// trees the steps left, the published commit), as a pack.
fn export(events: &[StoredEvent], artifacts: &BTreeMap<String, Vec<u8>>, pack: &[u8]) -> Value {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let encoded: BTreeMap<&String, String> = artifacts.iter().map(|(d, b)| (d, b64(b))).collect();
    json!({"events": events, "artifacts": encoded, "git_objects": b64(pack)})
}

/// Every git object id (40 hex digits) an event's data names.
fn object_ids(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) if s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()) => {
            out.push(s.clone());
        }
        Value::Array(items) => items.iter().for_each(|v| object_ids(v, out)),
        Value::Object(map) => map.values().for_each(|v| object_ids(v, out)),
        _ => {}
    }
}

/// Runs git in `dir` with `input` on stdin; its stdout.
fn git_with_input(dir: &Path, args: &[&str], input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "git {args:?} failed");
    output.stdout
}

/// A pack of the objects `ids` name in `repo` (and what they reach).
fn pack_objects(repo: &Path, ids: &[String]) -> Vec<u8> {
    let present: Vec<&String> = ids
        .iter()
        .filter(|id| {
            std::process::Command::new("git")
                .arg("-C")
                .arg(repo)
                .args(["cat-file", "-e", id.as_str()])
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    let mut args = vec!["rev-list", "--objects"];
    args.extend(present.iter().map(|s| s.as_str()));
    let list = git_with_input(repo, &args, b"");
    git_with_input(repo, &["pack-objects", "--stdout", "-q"], &list)
}

/// Every digest an event's data names.
fn digests(value: &Value, out: &mut Vec<Digest>) {
    match value {
        Value::String(s) => {
            if let Ok(d) = s.parse::<Digest>() {
                out.push(d);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| digests(v, out)),
        Value::Object(map) => map.values().for_each(|v| digests(v, out)),
        _ => {}
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.json"))
}

/// Records scenario `name` into its fixture.
async fn record_fixture(scenario: &Scenario) {
    let repo = repo_of(scenario);
    let data = tempfile::tempdir().unwrap();
    let id = record(scenario.name, repo.path(), data.path()).await;
    let live = engine(data.path(), None).await;
    let events = live.config().store.events(&id, 0).await.unwrap();
    let mut wanted = Vec::new();
    for event in &events {
        digests(&event.data, &mut wanted);
    }
    let mut artifacts = BTreeMap::new();
    for digest in wanted {
        if let Ok(bytes) = live.config().artifacts.get(&digest).await {
            artifacts.insert(digest.to_string(), bytes);
        }
    }
    let mut ids = Vec::new();
    for event in &events {
        object_ids(&event.data, &mut ids);
    }
    ids.sort();
    ids.dedup();
    let pack = pack_objects(repo.path(), &ids);
    let text = serde_json::to_string_pretty(&export(&events, &artifacts, &pack)).unwrap();
    std::fs::create_dir_all(fixture(scenario.name).parent().unwrap()).unwrap();
    std::fs::write(fixture(scenario.name), text + "\n").unwrap();
}

fn repo_of(scenario: &Scenario) -> TestRepo {
    let files: Vec<(&str, &str)> = scenario
        .files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    TestRepo::deterministic(&files)
}

/// Loads a fixture into a fresh store (the events appended as recorded: same times, same
/// data, so the same hashes; the artifacts put) and its git objects into `repo`.
async fn load(name: &str, data: &Path, repo: &Path) -> (Engine, String, Vec<StoredEvent>) {
    let text = std::fs::read_to_string(fixture(name)).unwrap_or_else(|e| {
        panic!("{name}: no recording ({e}); record it with FLIGHTDECK_GOLDEN=record")
    });
    let recording: Value = serde_json::from_str(&text).unwrap();
    let pack = base64::engine::general_purpose::STANDARD
        .decode(recording["git_objects"].as_str().unwrap_or(""))
        .unwrap();
    if !pack.is_empty() {
        git_with_input(repo, &["unpack-objects", "-q"], &pack);
    }
    let events: Vec<StoredEvent> = serde_json::from_value(recording["events"].clone()).unwrap();
    let engine = engine(data, None).await;
    for (digest, encoded) in recording["artifacts"].as_object().unwrap() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap())
            .unwrap();
        let put = engine.config().artifacts.put(&bytes).await.unwrap();
        assert_eq!(
            put.as_str(),
            digest,
            "{name}: an artifact does not match its digest"
        );
    }
    let id = events[0].mission.clone();
    let stored = engine
        .config()
        .store
        .append(AppendRequest {
            mission: id.clone(),
            expected_seq: 0,
            events: events
                .iter()
                .map(|e| NewEvent {
                    at_ms: e.at_millis(),
                    event_type: e.event_type.clone(),
                    data: e.data.clone(),
                })
                .collect(),
            projection: Projection {
                status: String::new(),
                template: "t".into(),
                summary: Value::Null,
                items: Vec::new(),
                columns: flightdeck_store::ProjectionColumns::default(),
            },
            consumes: Vec::new(),
            fence: None,
        })
        .await
        .unwrap();
    assert_eq!(
        stored.last().map(|e| &e.hash),
        events.last().map(|e| &e.hash),
        "{name}: the recording's hash chain does not rebuild"
    );
    (engine, id, events)
}

/// The timeline as people read it, with what changes from one recording to the next
/// (ids, times, hashes, paths) filtered.
fn readable(events: &[StoredEvent]) -> String {
    events
        .iter()
        .map(|e| {
            let line = EventLine::of(e);
            format!("{:>3} {:<22} {}", line.seq, line.event_type, line.text)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_timelines_replay_the_same_with_todays_engine() {
    let recording = std::env::var("FLIGHTDECK_GOLDEN").is_ok_and(|v| v == "record");
    let scenarios = scenarios();
    assert!(scenarios.len() >= 10);
    let mut failures = Vec::new();
    for scenario in &scenarios {
        if recording && (!scenario.needs_docker || std::env::var("DOCKER_HOST").is_ok()) {
            record_fixture(scenario).await;
        }
        let repo = repo_of(scenario);
        let data = tempfile::tempdir().unwrap();
        let (engine, id, events) = load(scenario.name, data.path(), repo.path()).await;
        let report = engine
            .replay(
                &id,
                events.clone(),
                request(repo.path(), MissionId::parse(&id)),
                ReplayMode::Verify,
                data.path().join("replay"),
            )
            .await
            .unwrap();
        if report.diverged {
            failures.push(format!(
                "{}: diverged at seq {:?} ({:?}): {:?}\n  {}",
                scenario.name,
                report.at_seq,
                report.event_type,
                report.difference,
                report.explanation
            ));
        } else if report.checked != events.len() as u64 {
            failures.push(format!(
                "{}: checked {} of {} events",
                scenario.name,
                report.checked,
                events.len()
            ));
        }
        let mut settings = insta::Settings::clone_current();
        settings.add_filter(r"m-[0-9a-z]{26}", "[MISSION]");
        settings.add_filter(r"a-[0-9a-z]{26}-", "a-[MISSION]-");
        settings.add_filter(r"sha256:[0-9a-f]{1,64}", "[DIGEST]");
        settings.add_filter(r"\b[0-9a-f]{12}\b", "[COMMIT]");
        settings.add_filter(r"/tmp/[^\s,)]+", "[PATH]");
        settings.add_filter(r"\d+ ms", "[MS] ms");
        settings.set_snapshot_suffix(scenario.name);
        settings.bind(|| insta::assert_snapshot!("timeline", readable(&events)));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_policy_makes_a_golden_timeline_diverge_where_it_first_matters() {
    // The regression test is only as good as its ability to fail.
    let scenario = scenarios()
        .into_iter()
        .find(|s| s.name == "publish_approval")
        .unwrap();
    let repo = repo_of(&scenario);
    let data = tempfile::tempdir().unwrap();
    let (engine, id, events) = load(scenario.name, data.path(), repo.path()).await;
    let mut today = request(repo.path(), MissionId::parse(&id));
    today.policy_source = today.policy_source.replace(
        "changes_any = [\"source\"]\ndecision = \"approve\"\napprovers = [\"@alice\"]",
        "changes_any = [\"source\"]\ndecision = \"allow\"",
    );
    assert_ne!(today.policy_source, POLICY);
    let report = engine
        .replay(
            &id,
            events.clone(),
            today,
            ReplayMode::Verify,
            data.path().join("replay"),
        )
        .await
        .unwrap();
    assert!(report.diverged, "{report:?}");
    assert_eq!(report.event_type.as_deref(), Some("policy.decided"));
    let at = usize::try_from(report.at_seq.unwrap()).unwrap();
    assert_eq!(events[at - 1].data["subject"], "publish");
}
