//! The real binary on temporary git repositories: what a user does, end to end.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use std::path::Path;
use std::time::{Duration, Instant};

use flightdeck_testkit::{event_types, git_in, Cli, TestRepo};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");

/// These tests are about the mission machinery, not the policy (tests/approvals.rs is):
/// their repositories let any change publish without an approval.
const PUBLISH_FREELY: &str = "[defaults]\npublish = \"allow\"\n";

/// A repository with a template named `t` (its body given) and a README.
fn repo_with_template(template: &str) -> TestRepo {
    TestRepo::with_files(&[
        ("README.md", "# sample\n"),
        (".gitignore", "/target\n"),
        ("src/lib.rs", "pub fn answer() -> u32 { 41 }\n"),
        (".flightdeck/missions/t.toml", template),
        (".flightdeck/policy.toml", PUBLISH_FREELY),
    ])
}

fn run_json(cli: &Cli, repo: &TestRepo, args: &[&str]) -> (i32, Value, String) {
    let mut full = vec![
        "--json",
        "run",
        "t",
        "--repo",
        repo.path().to_str().unwrap(),
    ];
    full.extend_from_slice(args);
    let out = cli.run(&full);
    let code = out.code();
    let stderr = out.stderr();
    let summary = if out.stdout().trim().is_empty() {
        Value::Null
    } else {
        out.json()
    };
    (code, summary, stderr)
}

fn timeline(cli: &Cli, id: &str) -> Vec<Value> {
    cli.timeline(id)
}

fn types(events: &[Value]) -> Vec<String> {
    event_types(events)
}

const FIX: &str = r#"
description = "Fix the answer"
goal = "Make answer() return {{value}}."
[params.value]
required = true
[[steps]]
run = "sed -i 's/41/{{value}}/' src/lib.rs"
[[steps]]
run = "grep -q {{value}} src/lib.rs && echo checked"
[publish]
title = "Fix answer to {{value}}"
"#;

#[test]
fn a_successful_mission_publishes_branch_patch_and_description() {
    let repo = repo_with_template(FIX);
    let cli = Cli::new(BIN);
    let (code, summary, stderr) = run_json(&cli, &repo, &["-p", "value=42"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(summary["status"], "succeeded");
    let id = summary["id"].as_str().unwrap();
    let branch = format!("flightdeck/{id}");
    assert_eq!(summary["branch"], branch.as_str());
    assert_eq!(summary["requested_by"], "@carol");
    // The branch is in the user's repository, one commit on the base, with the change.
    let head = summary["head_commit"].as_str().unwrap();
    assert_eq!(repo.git(&["rev-parse", &branch]), head);
    assert_eq!(
        repo.git(&["rev-parse", &format!("{head}^")]),
        summary["base_commit"].as_str().unwrap()
    );
    assert_eq!(
        repo.git(&["show", &format!("{branch}:src/lib.rs")]),
        "pub fn answer() -> u32 { 42 }"
    );
    assert_eq!(
        repo.git(&["status", "--porcelain"]),
        "",
        "the user's checkout is untouched"
    );
    // The patch applies to the base and is what the branch holds.
    let patch = cli
        .run(&["artifact", summary["artifacts"]["patch"].as_str().unwrap()])
        .expect_code(0)
        .stdout();
    assert!(
        patch.contains("Subject: [PATCH] Fix answer to 42"),
        "{patch}"
    );
    assert!(patch.contains("+pub fn answer() -> u32 { 42 }"), "{patch}");
    let pr = cli
        .run(&[
            "artifact",
            summary["artifacts"]["pr_description"].as_str().unwrap(),
        ])
        .expect_code(0)
        .stdout();
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"m-[0-9a-z]{26}", "[MISSION]");
    settings.add_filter(r"sha256:[0-9a-f]{64}", "[DIGEST]");
    settings.add_filter(r"`[0-9a-f]{12}`", "`[COMMIT]`");
    settings.add_filter(r"\d+\.\d s", "[TIME]");
    settings.bind(|| insta::assert_snapshot!("pr_description", pr));
    // The timeline is the contract's: gapless, chained, and each run step a template tool call.
    let events = timeline(&cli, id);
    assert_eq!(
        types(&events),
        [
            "mission.created",
            "workspace.provisioning",
            "workspace.provisioned",
            "step.started",
            "tool.requested",
            "policy.decided",
            "tool.completed",
            "step.finished",
            "step.started",
            "tool.requested",
            "policy.decided",
            "tool.completed",
            "step.finished",
            "policy.decided",
            "change.committing",
            "change.published",
            "mission.finished",
        ]
    );
    // Every call was judged before it ran, and so was the diff before it was published.
    let decided: Vec<(&str, &str, &str)> = events
        .iter()
        .filter(|e| e["type"] == "policy.decided")
        .map(|e| {
            (
                e["data"]["subject"].as_str().unwrap(),
                e["data"]["action"].as_str().unwrap(),
                e["data"]["decision"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        decided,
        [
            ("step-0", "command", "allow"),
            ("step-1", "command", "allow"),
            ("publish", "publish", "allow")
        ]
    );
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event["seq"], i as u64 + 1);
        assert_eq!(event["mission"], id);
        let expected_prev = if i == 0 {
            "0".repeat(64)
        } else {
            events[i - 1]["hash"].as_str().unwrap().to_string()
        };
        assert_eq!(event["prev_hash"], expected_prev.as_str());
        assert!(event["at"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(events[4]["data"]["actor"], "template");
    assert_eq!(events[4]["data"]["tool"], "run");
    assert_eq!(events[0]["data"]["params"]["value"], "42");
    for field in [
        "template",
        "template_hash",
        "params",
        "repo",
        "base_commit",
        "requested_by",
        "policy_hash",
    ] {
        assert!(
            !events[0]["data"][field].is_null(),
            "mission.created lacks {field}"
        );
    }
    assert_eq!(events[2]["data"]["sandbox"], "bubblewrap");
    let output = cli
        .run(&[
            "artifact",
            events
                .iter()
                .rfind(|e| e["type"] == "tool.completed")
                .unwrap()["data"]["output"]
                .as_str()
                .unwrap(),
        ])
        .expect_code(0)
        .stdout();
    assert_eq!(output, "checked\n");
    // The worktree is gone (the branch holds the change); the audit holds.
    assert!(!cli.data_dir().join("workspaces").join(id).exists());
    cli.run(&["audit", "verify", id]).expect_code(0);
    // Human views name the essentials.
    let show = cli.run(&["show", &id[..10]]).expect_code(0).stdout();
    assert!(
        show.contains("succeeded") && show.contains(&branch),
        "{show}"
    );
    let human = cli.run(&["timeline", id]).expect_code(0).stdout();
    assert_eq!(human.lines().count(), events.len(), "{human}");
}

/// Whether `python3` runs here (the independent verifier is a Python script).
fn have_python() -> bool {
    std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok()
}

/// `docs/verify_timeline.py` given `input` on stdin.
fn python_verify(input: &str) -> std::process::Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/verify_timeline.py");
    let mut child = std::process::Command::new("python3")
        .arg(&script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn an_independent_verifier_agrees_with_the_hash_chain() {
    if !have_python() {
        return; // the verifier is a Python script; without Python there is nothing to compare
    }
    let repo = repo_with_template(FIX);
    let cli = Cli::new(BIN);
    let (_, summary, _) = run_json(&cli, &repo, &["-p", "value=7"]);
    let id = summary["id"].as_str().unwrap();
    let export = cli
        .run(&["audit", "export", id, "--format", "jsonl"])
        .expect_code(0)
        .stdout();
    let verify = python_verify;
    let ok = verify(&export);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let head = summary["head_hash"].as_str().unwrap();
    assert!(String::from_utf8_lossy(&ok.stdout).contains(head));
    // One changed character in one event's data breaks the chain from that event on.
    let tampered = export.replacen("\"value\":\"7\"", "\"value\":\"8\"", 1);
    assert_ne!(tampered, export);
    assert!(!verify(&tampered).status.success());
}

/// Numbers the way RFC 8785 prints them (ECMAScript's Number::toString), where Python's own
/// JSON differs: exponents without padding (5e-8, not 5e-08), integral doubles without `.0`,
/// no exponent below 1e21, integers past 2^53 as the double they become.
#[test]
fn the_independent_verifier_prints_numbers_as_rfc_8785_does() {
    if !have_python() {
        return;
    }
    let numbers = [
        json!(5e-08),
        json!(1e-7),
        json!(1e-6),
        json!(0.000001234),
        json!(2.0),
        json!(1e16),
        json!(1e20),
        json!(1e21),
        json!(-0.5),
        json!(0.30000000000000004),
        json!(123456789.125),
        json!(9_007_199_254_740_993u64),
        json!(5e-324),
    ];
    // A timeline sealed by flightdeck's own chain (its JCS), one number per event.
    let mut prev = flightdeck_core::hash::GENESIS_HASH.to_string();
    let mut lines = String::new();
    for (i, number) in numbers.iter().enumerate() {
        let event = flightdeck_core::chain::seal(
            "m-numbers",
            i as u64 + 1,
            1_700_000_000_000,
            &prev,
            "model.responded",
            json!({ "cost_usd": number }),
        )
        .unwrap();
        prev = event.hash.clone();
        lines.push_str(&serde_json::to_string(&event).unwrap());
        lines.push('\n');
    }
    let out = python_verify(&lines);
    assert!(
        out.status.success(),
        "{}\n{lines}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&prev));
}

/// A genuine mission whose costs are tiny (5e-8 dollars and the like) verifies with the
/// independent verifier: its numbers are printed in exponent form.
#[test]
fn the_independent_verifier_agrees_on_a_mission_with_tiny_costs() {
    if !have_python() {
        return;
    }
    let repo = TestRepo::with_files(&[
        ("README.md", "# sample\n"),
        (".flightdeck/policy.toml", PUBLISH_FREELY),
        (
            ".flightdeck/missions/t.toml",
            "goal = \"Change nothing.\"\n[model]\npin = \"scripted:.flightdeck/script.toml\"\n[[steps]]\nagent = \"coder\"\n",
        ),
        (
            ".flightdeck/script.toml",
            "model = \"sim-1\"\n[pricing]\ninput_per_mtok = 0.00001\noutput_per_mtok = 0.00001\n\n[[turn]]\n[[turn.call]]\ntool = \"finish\"\nargs = { summary = \"nothing to change\" }\n",
        ),
    ]);
    let cli = Cli::new(BIN);
    let (code, summary, stderr) = run_json(&cli, &repo, &[]);
    assert_eq!(code, 0, "{stderr}");
    let id = summary["id"].as_str().unwrap();
    let costs: Vec<f64> = timeline(&cli, id)
        .iter()
        .filter(|e| e["type"] == "model.responded")
        .map(|e| e["data"]["cost_usd"].as_f64().unwrap())
        .collect();
    assert!(
        costs.iter().any(|c| *c > 0.0 && *c < 1e-6),
        "a cost in exponent form: {costs:?}"
    );
    let export = cli
        .run(&["audit", "export", id, "--format", "jsonl"])
        .expect_code(0)
        .stdout();
    let out = python_verify(&export);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_failing_step_fails_the_mission_and_stops_there() {
    let repo = repo_with_template(
        r#"
[[steps]]
run = "echo one > one.txt"
[[steps]]
run = "echo 'compiler says no' >&2; exit 3"
[[steps]]
run = "echo three > three.txt"
"#,
    );
    let cli = Cli::new(BIN);
    let (code, summary, _) = run_json(&cli, &repo, &[]);
    assert_eq!(code, 1);
    assert_eq!(summary["status"], "failed");
    assert_eq!(summary["error"]["kind"], "step_failed");
    let message = summary["error"]["message"].as_str().unwrap();
    assert!(message.contains("step 2/3"), "{message}");
    assert!(message.contains("exited with 3"), "{message}");
    assert!(
        message.contains("compiler says no"),
        "the output is in the error: {message}"
    );
    assert!(summary["branch"].is_null());
    let id = summary["id"].as_str().unwrap();
    let events = timeline(&cli, id);
    assert_eq!(
        events
            .iter()
            .filter(|e| e["type"] == "tool.requested")
            .count(),
        2,
        "step 3 never ran"
    );
    assert_eq!(events.last().unwrap()["type"], "mission.finished");
    // The failed workspace is kept for inspection, without step 3's file.
    let workspace = cli.data_dir().join("workspaces").join(id);
    assert!(workspace.join("one.txt").exists());
    assert!(!workspace.join("three.txt").exists());
    assert!(git_in(repo.path(), &["branch", "--list", "flightdeck/*"]).is_empty());
}

#[test]
fn a_mission_that_changes_nothing_succeeds_without_a_branch() {
    let repo = repo_with_template("[[steps]]\nrun = \"cat README.md\"\n");
    let cli = Cli::new(BIN);
    let out = cli
        .run(&["run", "t", "--repo", repo.path().to_str().unwrap()])
        .expect_code(0);
    assert!(out.stdout().contains("succeeded"));
    let (_, summary, _) = run_json(&cli, &repo, &[]);
    assert_eq!(summary["status"], "succeeded");
    assert!(summary["branch"].is_null());
    let events = timeline(&cli, summary["id"].as_str().unwrap());
    let finished = &events.last().unwrap()["data"];
    assert!(
        finished["summary"].as_str().unwrap().contains("no changes"),
        "{finished}"
    );
    assert!(!types(&events).contains(&"change.published".to_string()));
    assert!(git_in(repo.path(), &["branch", "--list", "flightdeck/*"]).is_empty());
}

#[test]
fn commands_cannot_write_outside_the_worktree_or_reach_the_network_config() {
    let repo = repo_with_template(
        "[[steps]]\nrun = \"touch /etc/flightdeck-escape 2>/dev/null || touch ../escape 2>/dev/null; echo done\"\n",
    );
    let cli = Cli::new(BIN);
    let (code, _, stderr) = run_json(&cli, &repo, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!Path::new("/etc/flightdeck-escape").exists());
    assert!(!cli.data_dir().join("workspaces/escape").exists());
}

#[test]
fn kill_dash_nine_during_a_step_then_resume_runs_each_completed_step_once() {
    // Each step appends to ran.log, which the branch ends up holding: a completed step that
    // ran twice would show twice. The interrupted step's partial line is thrown away.
    let repo = repo_with_template(
        r#"
[[steps]]
run = "echo step1 >> ran.log"
[[steps]]
run = "echo step2-start >> ran.log; sleep 4; echo step2 >> ran.log"
[[steps]]
run = "echo step3 >> ran.log"
"#,
    );
    let cli = Cli::new(BIN);
    let mut child = cli
        .command(&["run", "t", "--repo", repo.path().to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let events = cli.wait_for(|events| {
        events
            .iter()
            .any(|e| e["type"] == "tool.requested" && e["data"]["call_id"] == "step-1")
    });
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let id = events[0]["mission"].as_str().unwrap().to_string();
    let before = timeline(&cli, &id);
    assert!(!types(&before).contains(&"mission.finished".to_string()));
    let show = cli.run(&["show", &id, "--json"]).expect_code(0).json();
    assert_eq!(show["status"], "running");
    // The sandbox died with its parent: step 2 never finished writing.
    std::thread::sleep(Duration::from_secs(5));
    let log = std::fs::read_to_string(cli.data_dir().join("workspaces").join(&id).join("ran.log"))
        .unwrap();
    assert_eq!(log, "step1\nstep2-start\n", "the killed step kept running");

    let resumed = cli.run(&["resume", &id, "--json"]).expect_code(0).json();
    assert_eq!(resumed["status"], "succeeded");
    let branch = resumed["branch"].as_str().unwrap();
    assert_eq!(
        repo.git(&["show", &format!("{branch}:ran.log")]),
        "step1\nstep2-start\nstep2\nstep3"
    );
    let after = timeline(&cli, &id);
    // Everything recorded before the kill is still there, unchanged.
    assert_eq!(&after[..before.len()], &before[..]);
    let interrupted: Vec<&Value> = after
        .iter()
        .filter(|e| e["type"] == "mission.interrupted")
        .collect();
    assert_eq!(interrupted.len(), 1);
    assert_eq!(
        interrupted[0]["data"]["calls"],
        serde_json::json!(["step-1"])
    );
    let requested: Vec<&str> = after
        .iter()
        .filter(|e| e["type"] == "tool.requested")
        .map(|e| e["data"]["call_id"].as_str().unwrap())
        .collect();
    assert_eq!(requested, ["step-0", "step-1", "step-1#2", "step-2"]);
    assert_eq!(
        after
            .iter()
            .filter(|e| e["type"] == "step.started" && e["data"]["index"] == 0)
            .count(),
        1
    );
    assert!(types(&after).contains(&"mission.resumed".to_string()));
    cli.run(&["audit", "verify", &id]).expect_code(0);
    // A finished mission cannot be resumed, and trying records nothing.
    let again = cli.run(&["resume", &id]).expect_code(2);
    assert!(
        again.stderr().contains("already finished"),
        "{}",
        again.stderr()
    );
    assert_eq!(timeline(&cli, &id).len(), after.len());
}

#[test]
fn a_detached_mission_runs_in_the_background_and_can_be_cancelled() {
    let repo = repo_with_template("[[steps]]\nrun = \"sleep 30\"\n");
    let cli = Cli::new(BIN);
    let out = cli
        .run(&[
            "--json",
            "run",
            "t",
            "--repo",
            repo.path().to_str().unwrap(),
            "--detach",
        ])
        .expect_code(0);
    let id = out.json()["id"].as_str().unwrap().to_string();
    cli.wait_for(|events| events.iter().any(|e| e["type"] == "tool.requested"));
    let busy = cli.run(&["resume", &id]).expect_code(2);
    assert!(busy.stderr().contains("being driven"), "{}", busy.stderr());
    let started = Instant::now();
    cli.run(&["cancel", &id]).expect_code(0);
    let events = cli.wait_for(|events| {
        events
            .last()
            .is_some_and(|e| e["type"] == "mission.finished")
    });
    assert_eq!(events.last().unwrap()["data"]["status"], "cancelled");
    // The background process notices, kills `sleep 30` and removes the worktree.
    let workspace = cli.data_dir().join("workspaces").join(&id);
    while workspace.exists() && started.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !workspace.exists(),
        "the cancelled mission's worktree was not cleaned up"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "cancel did not stop the running command"
    );
    cli.run(&["cancel", &id]).expect_code(2);
}

/// Bad input: exit 2, a message naming the culprit, a hint, and no mission recorded.
#[test]
fn bad_input_is_refused_with_a_hint_and_leaves_no_trace() {
    let repo = repo_with_template(FIX);
    repo.write_files(&[
        (
            ".flightdeck/missions/broken.toml",
            "[[steps]]\nrun = \"x\"\ncolour = \"red\"\n",
        ),
        (".flightdeck/missions/notoml.toml", "this is = not [toml"),
    ]);
    // Templates are read at the base commit: the broken ones are committed.
    repo.commit_all("broken templates");
    let not_repo = tempfile::tempdir().unwrap();
    let repo_arg = repo.path().to_str().unwrap();
    let digest = format!("sha256:{}", "ab".repeat(32));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["run", "broken", "--repo", repo_arg],
            "broken.toml:3:1: unknown field `colour`",
        ),
        (vec!["run", "notoml", "--repo", repo_arg], "notoml.toml:1:"),
        (
            vec!["run", "t", "--repo", repo_arg],
            "required param `value` was not given",
        ),
        (
            vec![
                "run",
                "t",
                "--repo",
                repo_arg,
                "-p",
                "value=1",
                "-p",
                "colour=red",
            ],
            "unknown param `colour`",
        ),
        (
            vec!["run", "t", "--repo", repo_arg, "-p", "value"],
            "-p value: a param is KEY=VALUE",
        ),
        (
            vec!["run", "nope", "--repo", repo_arg],
            "no template `nope`",
        ),
        (
            vec!["run", "t", "--repo", not_repo.path().to_str().unwrap()],
            "not a git repository",
        ),
        (
            vec![
                "run",
                "t",
                "--repo",
                repo_arg,
                "-p",
                "value=1",
                "--base",
                "no-such-branch",
            ],
            "`no-such-branch` is not a commit",
        ),
        (
            vec!["show", "m-00000000000000000000000000"],
            "no mission `m-00000000000000000000000000`",
        ),
        (vec!["resume", "m-nope"], "no mission `m-nope`"),
        (vec!["timeline", "m-nope"], "no mission `m-nope`"),
        (vec!["artifact", &digest], "no artifact"),
        (vec!["artifact", "sha256:xyz"], "is not a digest"),
        (vec!["run"], "TEMPLATE"),
    ];
    let cli = Cli::new(BIN);
    let mut failures = Vec::new();
    for (args, expected) in &cases {
        let out = cli.run(args);
        let stderr = out.stderr();
        if out.code() != 2
            || !stderr.contains(expected)
            || !(stderr.contains("hint:") || stderr.contains("Usage"))
        {
            failures.push(format!("{args:?}: exit {}\n{stderr}", out.code()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n---\n"));
    assert!(
        cli.data_files().is_empty(),
        "bad input wrote {:?}",
        cli.data_files().iter().map(|f| &f.0).collect::<Vec<_>>()
    );

    // After a real mission exists, more bad input must not add to the store.
    let (_, summary, _) = run_json(&cli, &repo, &["-p", "value=5"]);
    let id = summary["id"].as_str().unwrap();
    let count = timeline(&cli, id).len();
    cli.run(&["resume", id]).expect_code(2);
    cli.run(&["run", "broken", "--repo", repo_arg])
        .expect_code(2);
    assert_eq!(
        cli.run(&["missions", "--json"])
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(timeline(&cli, id).len(), count);
}

#[test]
fn a_database_that_is_not_flightdecks_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("notes.db");
    std::fs::write(&db, "these are my notes, not a database").unwrap();
    let cli = Cli::new(BIN);
    let url = format!("sqlite://{}", db.display());
    let repo = repo_with_template(FIX);
    for args in [
        vec!["--database-url", url.as_str(), "missions"],
        vec![
            "--database-url",
            url.as_str(),
            "run",
            "t",
            "--repo",
            repo.path().to_str().unwrap(),
            "-p",
            "value=1",
        ],
    ] {
        let out = cli.run(&args).expect_code(2);
        assert!(
            out.stderr().contains("is not a flightdeck database"),
            "{}",
            out.stderr()
        );
        assert!(out.stderr().contains("hint:"));
    }
    assert_eq!(
        std::fs::read_to_string(&db).unwrap(),
        "these are my notes, not a database"
    );
}

#[test]
fn init_writes_a_policy_and_an_example_that_runs() {
    let repo = TestRepo::with_files(&[("README.md", "hello\n")]);
    let cli = Cli::new(BIN);
    cli.run(&["init", "--repo", repo.path().to_str().unwrap()])
        .expect_code(0);
    assert!(repo.path().join(".flightdeck/policy.toml").is_file());
    let second = cli
        .run(&["init", "--repo", repo.path().to_str().unwrap()])
        .expect_code(0)
        .stdout();
    assert!(second.contains("kept existing"), "{second}");
    repo.commit_all("add flightdeck");
    let out = cli
        .run(&[
            "--json",
            "run",
            "example",
            "--repo",
            repo.path().to_str().unwrap(),
        ])
        .expect_code(0);
    let summary = out.json();
    let branch = summary["branch"].as_str().unwrap();
    assert_eq!(
        repo.git(&["show", &format!("{branch}:NOTES.md")]),
        "flightdeck was here"
    );
}

#[test]
fn a_step_cannot_make_host_git_run_its_code_through_a_planted_git_dir() {
    // The step points the worktree's `.git` at a git dir it controls, whose config has a clean
    // filter and an fsmonitor hook. If flightdeck's own git (on the host, after the step)
    // followed that `.git` file, the hook would run outside the sandbox and touch the marker.
    let marker_dir = tempfile::tempdir().unwrap();
    let marker = marker_dir.path().join("pwned");
    let template = format!(
        r#"
[workspace]
runtime = "local"
[[steps]]
run = """git init -q --bare evilgit && git --git-dir=evilgit config core.bare false \
  && git --git-dir=evilgit config filter.pwn.clean 'touch {m}; cat' \
  && git --git-dir=evilgit config core.fsmonitor 'touch {m}; false' \
  && echo '* filter=pwn' > .gitattributes && printf 'gitdir: %s/evilgit\\n' "$PWD" > .git \
  && echo changed > README.md"""
"#,
        m = marker.display()
    );
    let repo = repo_with_template(&template);
    let cli = Cli::new(BIN);
    let (code, summary, stderr) = run_json(&cli, &repo, &[]);
    assert!(
        !marker.exists(),
        "host-side git ran code planted by a sandboxed step"
    );
    assert_eq!(code, 0, "{stderr}");
    let branch = summary["branch"].as_str().unwrap();
    assert_eq!(
        repo.git(&["show", &format!("{branch}:README.md")]),
        "changed"
    );
}

#[test]
fn a_step_that_leaves_an_unrecordable_worktree_fails_the_mission_cleanly() {
    let repo = repo_with_template("[[steps]]\nrun = \"git init -q nested\"\n");
    let cli = Cli::new(BIN);
    let (code, summary, _) = run_json(&cli, &repo, &[]);
    assert_eq!(code, 1);
    assert_eq!(summary["status"], "failed");
    assert_eq!(summary["error"]["kind"], "workspace_unrecordable");
    cli.run(&["audit", "verify", summary["id"].as_str().unwrap()])
        .expect_code(0);
}

#[test]
fn a_step_that_runs_past_its_timeout_is_killed_and_fails() {
    let repo = repo_with_template("[[steps]]\nrun = \"sleep 30\"\ntimeout_seconds = 1\n");
    let cli = Cli::new(BIN);
    let started = Instant::now();
    let (code, summary, _) = run_json(&cli, &repo, &[]);
    assert_eq!(code, 1);
    assert!(started.elapsed() < Duration::from_secs(20));
    let message = summary["error"]["message"].as_str().unwrap();
    assert!(message.contains("timed out after 1s"), "{message}");
    let events = timeline(&cli, summary["id"].as_str().unwrap());
    let completed = events
        .iter()
        .find(|e| e["type"] == "tool.completed")
        .unwrap();
    assert_eq!(completed["data"]["timed_out"], true);
    assert!(completed["data"]["exit_code"].is_null());
}

#[test]
fn a_mission_on_a_remote_repository_runs_from_the_fetched_base() {
    let origin = repo_with_template(FIX);
    let url = format!("file://{}", origin.path().display());
    let cli = Cli::new(BIN);
    let out = cli.run(&[
        "--json", "run", "t", "--remote", &url, "--base", "main", "-p", "value=42",
    ]);
    assert_eq!(out.code(), 0, "{}", out.stderr());
    let summary = out.json();
    assert_eq!(summary["status"], "succeeded");
    assert_eq!(
        summary["base_commit"],
        origin.git(&["rev-parse", "main"]).as_str()
    );
    // The mission ran in the installation's cache of the repository, not in a checkout.
    let repo = summary["repo"].as_str().unwrap();
    assert!(
        Path::new(repo).starts_with(cli.data_dir().join("repos")),
        "{repo}"
    );
    let patch = cli
        .run(&["artifact", summary["artifacts"]["patch"].as_str().unwrap()])
        .expect_code(0)
        .stdout();
    assert!(patch.contains("+pub fn answer() -> u32 { 42 }"), "{patch}");
    // --remote and --repo are one or the other.
    let both = cli
        .run(&["run", "t", "--remote", &url, "--repo", "."])
        .expect_code(2);
    assert!(
        both.stderr().contains("cannot be used with"),
        "{}",
        both.stderr()
    );
}

#[test]
fn reading_never_writes() {
    let repo = repo_with_template(FIX);
    let cli = Cli::new(BIN);
    let (code, summary, _) = run_json(&cli, &repo, &["-p", "value=42"]);
    assert_eq!(code, 0);
    let id = summary["id"].as_str().unwrap().to_string();
    let db = cli.data_dir().join("flightdeck.db");
    let before: Vec<(std::path::PathBuf, Vec<u8>)> = cli.data_files();
    // Every reading command, on a database opened read-only by URL.
    let ro = format!("sqlite://{}?mode=ro", db.display());
    for args in [
        vec!["missions"],
        vec!["show", id.as_str()],
        vec!["timeline", id.as_str()],
        vec!["approvals"],
        vec!["audit", "verify", id.as_str()],
        vec!["audit", "verify", "--all"],
        vec!["audit", "export", id.as_str(), "--format", "jsonl"],
    ] {
        let mut full = vec!["--database-url", ro.as_str()];
        full.extend(args.iter().copied());
        let out = cli.run(&full);
        assert_eq!(out.code(), 0, "{args:?}: {}", out.stderr());
    }
    // And with the default URL too: nothing in the data directory changed.
    for args in [
        vec!["missions"],
        vec!["show", id.as_str()],
        vec!["timeline", id.as_str()],
    ] {
        cli.run(&args).expect_code(0);
    }
    let after = cli.data_files();
    // SQLite's own coordination files of a WAL database (the shared-memory index, and an
    // empty log a reader opens) are not data.
    let changed: Vec<_> = after
        .iter()
        .filter(|(path, bytes)| {
            let name = path.to_string_lossy();
            let coordination =
                name.ends_with("-shm") || (name.ends_with("-wal") && bytes.is_empty());
            !coordination && before.iter().find(|(p, _)| p == path).map(|(_, b)| b) != Some(bytes)
        })
        .map(|(path, _)| path.clone())
        .collect();
    assert!(changed.is_empty(), "reading wrote {changed:?}");
    // A write through a read-only URL is refused, not attempted.
    let mut full = vec!["--database-url", ro.as_str()];
    full.extend(["cancel", id.as_str()]);
    assert_ne!(cli.run(&full).code(), 0);
    // Verifying everything in a data directory that does not exist is an error, not
    // "nothing to verify".
    let nowhere = cli.data_dir().join("no-such-dir");
    let out = cli.run(&[
        "--data-dir",
        nowhere.to_str().unwrap(),
        "audit",
        "verify",
        "--all",
    ]);
    assert_eq!(out.code(), 2, "{}", out.stderr());
    assert!(out.stderr().contains("does not exist"), "{}", out.stderr());
    assert!(!nowhere.exists());
}

#[test]
fn a_data_dir_given_with_dot_dot_works_like_its_plain_form() {
    let repo = repo_with_template("goal = \"g\"\n[[steps]]\nrun = \"echo hi > hi.txt\"\n");
    let scratch = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(scratch.path().join("elsewhere")).unwrap();
    let winding = scratch.path().join("elsewhere/../data");
    let out = std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(&winding)
        .args(["--as", "@carol", "--json", "run", "t", "--repo"])
        .arg(repo.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["status"], "succeeded", "{summary}");
    let workspace = summary["workspace"].as_str().unwrap();
    assert!(!workspace.contains(".."), "{workspace}");
    assert!(scratch.path().join("data/flightdeck.db").exists());
}

/// A param cannot add commands: in `run` and acceptance commands its value is one literal
/// word, whatever quotes the template put around it; `| raw` is the explicit way out.
#[test]
fn params_are_shell_quoted_in_commands() {
    const QUOTED: &str = r#"
goal = "Greet {{name}}"
[params.name]
required = true
[[steps]]
run = "echo {{name}} > bare.txt"
[[steps]]
run = "echo '{{name}}' > single.txt"
[[steps]]
run = "echo \"{{name}}\" > double.txt"
[acceptance]
commands = ["test \"$(cat bare.txt)\" = {{name}}"]
"#;
    let payloads = [
        "x; touch p",
        "x' ; touch p ; echo '",
        "x\" ; touch p ; echo \"",
        "$(touch p)`touch p`",
    ];
    let cli = Cli::new(BIN);
    for payload in payloads {
        let repo = repo_with_template(QUOTED);
        let param = format!("name={payload}");
        let (code, summary, stderr) = run_json(&cli, &repo, &["-p", &param]);
        assert_eq!(code, 0, "{payload}: {stderr}");
        assert_eq!(summary["status"], "succeeded", "{payload}: {summary}");
        let branch = summary["branch"].as_str().unwrap();
        let files = repo.git(&["ls-tree", "-r", "--name-only", branch]);
        assert!(
            !files.lines().any(|file| file == "p"),
            "{payload}: `touch p` ran: {files}"
        );
        for file in ["bare.txt", "single.txt", "double.txt"] {
            assert_eq!(
                repo.git(&["show", &format!("{branch}:{file}")]),
                payload,
                "{file}"
            );
        }
    }

    // The raw filter inserts the value as given: the template asked for it.
    let repo = repo_with_template(
        "[params.name]\nrequired = true\n[[steps]]\nrun = \"echo {{name | raw}}\"\n",
    );
    let (code, summary, stderr) = run_json(&cli, &repo, &["-p", "name=x; touch p"]);
    assert_eq!(code, 0, "{stderr}");
    let branch = summary["branch"].as_str().unwrap();
    let files = repo.git(&["ls-tree", "-r", "--name-only", branch]);
    assert!(files.lines().any(|file| file == "p"), "{files}");
}

/// Inputs are the installation's own: a template and a policy holding text the redactor
/// would mask (AWS's documentation key) are pinned as written, and the step runs the
/// command as written, not the mask.
#[test]
fn templates_and_policies_are_pinned_as_written() {
    const KEY: &str = "AKIAIOSFODNN7EXAMPLE";
    let template =
        format!("[[steps]]\nrun = \"test $(printf %s {KEY} | wc -c) -eq 20 && echo as-written\"\n");
    let policy = format!("# the example key {KEY} is documentation\n{PUBLISH_FREELY}");
    let repo = repo_with_template(&template);
    repo.write_files(&[(".flightdeck/policy.toml", &policy)]);
    repo.commit_all("a template and a policy that mention the example key");
    let cli = Cli::new(BIN);
    let (code, summary, stderr) = run_json(&cli, &repo, &[]);
    assert_eq!(code, 0, "{stderr}\n{summary:#}");
    assert_eq!(summary["status"], "succeeded", "{summary:#}");
    let id = summary["id"].as_str().unwrap();
    let events = timeline(&cli, id);
    let created = &events[0]["data"];
    for (field, written) in [("template_source", &template), ("policy_source", &policy)] {
        let pinned = cli
            .run(&["artifact", created[field].as_str().unwrap()])
            .expect_code(0)
            .stdout();
        assert_eq!(pinned.trim_end(), written.trim_end(), "{field}");
    }
}
