//! The bundled examples run as the README says: the quickstart's mission, end to end, with
//! its scripted coder, the built-in policy's approval and the sandboxed `cargo test`; and the
//! three example missions of `examples/run.sh` (a dependency upgrade that waits for the
//! dependencies' code owner, tests for an untested function and a docs fix, both published
//! without an approval), each with its scripted model, offline.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use std::path::{Path, PathBuf};

use flightdeck_testkit::{git_in, Cli};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn example(name: &str) -> (tempfile::TempDir, PathBuf) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join(name);
    copy_dir(&source, &repo);
    git_in(&repo, &["init", "--quiet", "--initial-branch=main"]);
    git_in(&repo, &["add", "--all"]);
    git_in(
        &repo,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "commit",
            "--quiet",
            "-m",
            "import",
        ],
    );
    (dir, repo)
}

#[test]
fn the_quickstart_mission_fixes_word_count_waits_for_the_code_owner_and_publishes() {
    let (_dir, repo) = example("sample-repo");
    let cli = Cli::new(BIN);
    let out = cli.run_as(
        "quickstart@example.com",
        &[
            "--json",
            "run",
            "fix-word-count",
            "--repo",
            repo.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code(), 3, "parks for the code owner: {}", out.stderr());
    let summary = out.json();
    let id = summary["id"].as_str().unwrap().to_string();
    assert_eq!(summary["steps"][0]["status"], "succeeded");
    assert_eq!(summary["steps"][1]["status"], "succeeded");
    assert!(summary["cost"]["total_usd"].as_f64().unwrap() > 0.0);
    let approval = summary["pending_approvals"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        summary["pending_approvals"][0]["eligible"][0],
        "@textstats-lead"
    );
    cli.run_as("@textstats-lead", &["approve", &approval])
        .expect_code(0);
    let done = cli
        .run_as("quickstart@example.com", &["--json", "resume", &id])
        .expect_code(0)
        .json();
    assert_eq!(done["status"], "succeeded");
    let branch = done["branch"].as_str().unwrap();
    let lib = git_in(&repo, &["show", &format!("{branch}:src/lib.rs")]);
    assert!(lib.contains("text.split_whitespace().count()"), "{lib}");
    // The agent ran the tests before and after its edit, in the sandbox.
    let events = cli.timeline(&id);
    // Parked, approved from another process, resumed: the replay goes through all of it.
    assert_replay_verifies(&cli, &id, events.len());
    assert_provenance_validates(&cli, &id, &done);
    let exits: Vec<i64> = events
        .iter()
        .filter(|e| {
            e["type"] == "tool.completed"
                && e["data"]["call_id"]
                    .as_str()
                    .unwrap()
                    .starts_with("step-0.")
                && !e["data"]["exit_code"].is_null()
        })
        .map(|e| e["data"]["exit_code"].as_i64().unwrap())
        .collect();
    assert_eq!(
        exits,
        [101, 0],
        "cargo test failed before the fix and passed after"
    );
}

/// Who runs the example missions.
const REQUESTER: &str = "examples@example.com";

/// An example mission run to its end, as `examples/run.sh` runs it.
struct Finished {
    _dir: tempfile::TempDir,
    repo: PathBuf,
    cli: Cli,
    summary: Value,
    events: Vec<Value>,
    /// Who approved which gate, in order.
    approvals: Vec<(String, String)>,
}

impl Finished {
    fn branch(&self) -> &str {
        self.summary["branch"].as_str().unwrap()
    }

    /// A file as the published branch has it.
    fn file(&self, path: &str) -> String {
        git_in(&self.repo, &["show", &format!("{}:{path}", self.branch())])
    }

    /// The paths the published commit changed, sorted.
    fn changed(&self) -> Vec<String> {
        let names = git_in(
            &self.repo,
            &["diff", "--name-only", &format!("main...{}", self.branch())],
        );
        names.lines().map(str::to_string).collect()
    }

    fn of_type(&self, kind: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["type"] == kind).collect()
    }

    /// The exit codes of the commands a step's agent (or the step itself) ran, in order.
    fn exit_codes(&self, step: usize) -> Vec<i64> {
        let prefix = format!("step-{step}.");
        self.of_type("tool.completed")
            .into_iter()
            .filter(|e| {
                let call = e["data"]["call_id"].as_str().unwrap();
                (call.starts_with(&prefix) || call == format!("step-{step}"))
                    && !e["data"]["exit_code"].is_null()
            })
            .map(|e| e["data"]["exit_code"].as_i64().unwrap())
            .collect()
    }

    /// The publish gate's decision: (decision, rule ids).
    fn publish_decision(&self) -> (String, Vec<String>) {
        let decided = self
            .of_type("policy.decided")
            .into_iter()
            .rfind(|e| e["data"]["subject"] == "publish")
            .expect("a publish decision");
        let rules = decided["data"]["rule_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_string())
            .collect();
        (decided["data"]["decision"].as_str().unwrap().into(), rules)
    }

    /// Acceptance passed on its first check, with every command passing first time.
    fn assert_acceptance_passed(&self) {
        let checked = self.of_type("acceptance.checked");
        assert_eq!(checked.len(), 1, "one acceptance check");
        let data = &checked[0]["data"];
        assert_eq!(data["passed"], true, "{data}");
        assert_eq!(data["violations"], serde_json::json!([]), "{data}");
        for result in data["results"].as_array().unwrap() {
            assert_eq!(result["exit_code"], 0, "{result}");
            assert_eq!(result["flaky"], false, "{result}");
        }
    }
}

/// `flightdeck replay` drives today's engine through the whole recorded timeline and finds
/// every event the same.
fn assert_replay_verifies(cli: &Cli, id: &str, events: usize) {
    let out = cli.run(&["--json", "replay", id]);
    assert_eq!(
        out.code(),
        0,
        "replay of {id}: {}{}",
        out.stdout(),
        out.stderr()
    );
    let report = out.json();
    assert_eq!(report["diverged"], false, "{report}");
    assert_eq!(report["checked"], events as u64, "{report}");
    assert_eq!(report["mode"], "verify");
}

/// `audit export --format intoto` is an in-toto Statement v1 with an SLSA Provenance v1
/// predicate (schemas in tests/fixtures), whose subject is the published patch and commit.
fn assert_provenance_validates(cli: &Cli, id: &str, summary: &Value) {
    let schemas = flightdeck_testkit::openapi::OpenApi::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/intoto-slsa.yaml"),
    );
    for name in ["Statement", "SlsaProvenanceV1"] {
        assert!(schemas.unknown_keywords(name).is_empty(), "{name}");
    }
    // The chain and every artifact check out (prices are floats: read back exactly).
    cli.run(&["audit", "verify", id]).expect_code(0);
    let out = cli.run(&["audit", "export", id, "--format", "intoto"]);
    assert_eq!(out.code(), 0, "{}", out.stderr());
    let statement: Value = serde_json::from_str(&out.stdout()).unwrap();
    schemas.validate("Statement", &statement).unwrap();
    schemas
        .validate("SlsaProvenanceV1", &statement["predicate"])
        .unwrap();
    let patch = summary["artifacts"]["patch"].as_str().unwrap();
    assert_eq!(
        format!(
            "sha256:{}",
            statement["subject"][0]["digest"]["sha256"]
                .as_str()
                .unwrap()
        ),
        patch
    );
    assert_eq!(
        statement["subject"][1]["digest"]["gitCommit"],
        summary["head_commit"]
    );
    let head = cli.timeline(id).last().unwrap()["hash"].clone();
    assert_eq!(
        statement["predicate"]["runDetails"]["byproducts"][0]["digest"]["sha256"],
        head
    );
}

/// Copies `examples/NAME` into a fresh repository and runs its mission as [`REQUESTER`];
/// whenever it parks for approval, the requester is refused and the first person the gate
/// names approves, then the mission is resumed. Panics unless it ends `succeeded`.
fn run_example(name: &str, template: &str) -> Finished {
    let (dir, repo) = example(name);
    let cli = Cli::new(BIN);
    let repo_arg = repo.to_str().unwrap().to_string();
    let mut out = cli.run_as(REQUESTER, &["--json", "run", template, "--repo", &repo_arg]);
    let mut approvals = Vec::new();
    while out.code() == 3 {
        let summary = out.json();
        let id = summary["id"].as_str().unwrap();
        for pending in summary["pending_approvals"].as_array().unwrap() {
            let approval = pending["id"].as_str().unwrap();
            let owner = pending["eligible"][0].as_str().unwrap();
            cli.run_as(REQUESTER, &["approve", approval]).expect_code(2);
            cli.run_as(owner, &["approve", approval]).expect_code(0);
            approvals.push((
                pending["gate"].as_str().unwrap().to_string(),
                owner.to_string(),
            ));
        }
        out = cli.run_as(REQUESTER, &["--json", "resume", id]);
    }
    assert_eq!(out.code(), 0, "{name}: {}", out.stderr());
    let summary = out.json();
    assert_eq!(summary["status"], "succeeded", "{name}");
    for step in summary["steps"].as_array().unwrap() {
        assert_eq!(step["status"], "succeeded", "{name}: {step}");
    }
    // The scripted model is priced, so the ledger shows what the mission cost.
    assert!(
        summary["cost"]["total_usd"].as_f64().unwrap() > 0.0,
        "{name}"
    );
    let id = summary["id"].as_str().unwrap();
    let events = cli.timeline(id);
    assert_replay_verifies(&cli, id, events.len());
    assert_provenance_validates(&cli, id, &summary);
    Finished {
        _dir: dir,
        repo,
        cli,
        summary,
        events,
        approvals,
    }
}

#[test]
fn the_dependency_upgrade_fixes_the_renamed_call_and_waits_for_the_dependencies_owner() {
    let done = run_example("dep-upgrade", "upgrade-dep");
    assert_eq!(
        done.of_type("mission.created")[0]["data"]["params"],
        serde_json::json!({"crate": "tinyfmt", "version": "2"})
    );
    // The template moved the dependency; the coder moved the call site to the new API.
    let manifest = done.file("Cargo.toml");
    assert!(
        manifest.contains(r#"tinyfmt = { version = "2.0.0", path = "vendor/tinyfmt-2" }"#),
        "{manifest}"
    );
    let lock = done.file("Cargo.lock");
    assert!(
        lock.contains("name = \"tinyfmt\"\nversion = \"2.0.0\""),
        "{lock}"
    );
    let lib = done.file("src/lib.rs");
    assert!(
        lib.contains("tinyfmt::pad_left(&money(cents), PRICE_WIDTH)"),
        "{lib}"
    );
    assert!(!lib.contains("tinyfmt::pad("), "{lib}");
    assert_eq!(done.changed(), ["Cargo.lock", "Cargo.toml", "src/lib.rs"]);
    // `cargo add` passed; the coder's build failed on the rename, its tests passed after.
    assert_eq!(done.exit_codes(0), [0]);
    assert_eq!(done.exit_codes(1), [101, 0]);
    let reviews = done
        .of_type("tool.requested")
        .into_iter()
        .filter(|e| e["data"]["tool"] == "review")
        .map(|e| e["data"]["args"]["verdict"].clone())
        .collect::<Vec<_>>();
    assert_eq!(reviews, ["approve"]);
    done.assert_acceptance_passed();
    // A dependency change publishes only once the owner of Cargo.toml/Cargo.lock approves.
    assert_eq!(
        done.publish_decision(),
        (
            "approve".to_string(),
            vec!["deps-migrations-owner".to_string()]
        )
    );
    assert_eq!(
        done.approvals,
        [("publish".to_string(), "@dana".to_string())]
    );
    assert_eq!(done.of_type("change.published").len(), 1);
}

#[test]
fn adding_tests_for_slugify_plans_writes_real_tests_and_publishes_without_approval() {
    let done = run_example("add-tests", "add-tests");
    let tests = done.file("tests/slugify.rs");
    assert!(tests.contains("use blogkit::slugify;"), "{tests}");
    assert_eq!(tests.matches("#[test]").count(), 6, "{tests}");
    assert!(
        tests.contains(r#"assert_eq!(slugify("Hello World"), "hello-world");"#),
        "{tests}"
    );
    // Tests only: the function itself is as it was.
    assert_eq!(done.changed(), ["tests/slugify.rs"]);
    // planner → coder (given the plan) → reviewer (shown the new file).
    let roles: Vec<&str> = done
        .of_type("step.started")
        .iter()
        .map(|e| e["data"]["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["planner", "coder", "reviewer"]);
    let coder_ran = done
        .of_type("tool.completed")
        .into_iter()
        .find(|e| {
            e["data"]["call_id"]
                .as_str()
                .unwrap()
                .starts_with("step-1.")
                && !e["data"]["exit_code"].is_null()
        })
        .expect("the coder ran the tests");
    let output = done
        .cli
        .run(&["artifact", coder_ran["data"]["output"].as_str().unwrap()])
        .expect_code(0)
        .stdout();
    assert!(
        output.contains("test result: ok. 6 passed"),
        "the six new tests ran and passed: {output}"
    );
    done.assert_acceptance_passed();
    assert_eq!(
        done.publish_decision(),
        ("allow".to_string(), vec!["docs-tests-auto".to_string()])
    );
    assert!(done.approvals.is_empty());
    assert!(done.of_type("approval.requested").is_empty());
    assert_eq!(done.summary["risk_tier"], "low");
}

#[test]
fn the_docs_fix_corrects_the_misspelled_option_and_publishes_without_approval() {
    let done = run_example("docs-fix", "docs-fix");
    let usage = done.file("docs/usage.md");
    assert!(!usage.contains("shuot"), "{usage}");
    assert!(usage.contains("`--shout` says it in capitals:"), "{usage}");
    assert!(
        usage.contains("$ greet --shout Ada\nHELLO, ADA!"),
        "{usage}"
    );
    assert_eq!(done.changed(), ["docs/usage.md"]);
    // The docs check failed before the edits and passed after them.
    assert_eq!(done.exit_codes(0), [1, 0]);
    let edits = done
        .of_type("tool.requested")
        .into_iter()
        .filter(|e| e["data"]["tool"] == "edit_file")
        .count();
    assert_eq!(edits, 2);
    done.assert_acceptance_passed();
    assert_eq!(
        done.publish_decision(),
        ("allow".to_string(), vec!["docs-tests-auto".to_string()])
    );
    assert!(done.approvals.is_empty());
    assert!(done.of_type("approval.requested").is_empty());
}
