//! Replay, re-execute and fork with the real binary, and the crash harness: missions killed
//! with SIGKILL at random moments and resumed must end exactly as an uninterrupted run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use flightdeck_testkit::{Cli, TestRepo};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");

const POLICY: &str = "[defaults]\npublish = \"allow\"\n";

const TEMPLATE: &str = r#"
goal = "Make answer() return 42."
[model]
pin = "scripted:.flightdeck/script.toml"
[[steps]]
agent = "coder"
[acceptance]
commands = ["sh check.sh"]
"#;

const SCRIPT: &str = r#"
model = "sim-1"
[[turn]]
expect = "Goal: Make answer"
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
[[turn.call]]
tool = "finish"
args = { summary = "answer() returns 42." }
"#;

/// Another model: it makes a different change.
const OTHER_SCRIPT: &str = r#"
model = "sim-2"
[[turn]]
[[turn.call]]
tool = "edit_file"
args = { path = "src/lib.rs", old = "41", new = "43" }

[[turn]]
[[turn.call]]
tool = "finish"
args = { summary = "answer() returns 43." }
"#;

/// Passes only where missions run (under the data directory's `workspaces/`): a check whose
/// result depends on its environment, as a flaky test's does.
const CHECK: &str =
    "case \"$PWD\" in */workspaces/*) echo '1 passed';; *) echo '1 failed'; exit 1;; esac\n";

fn repo() -> TestRepo {
    TestRepo::with_files(&[
        ("src/lib.rs", "pub fn answer() -> u32 { 41 }\n"),
        ("check.sh", CHECK),
        (".flightdeck/policy.toml", POLICY),
        (".flightdeck/missions/t.toml", TEMPLATE),
        (".flightdeck/script.toml", SCRIPT),
        (".flightdeck/other.toml", OTHER_SCRIPT),
    ])
}

/// Runs template `t` to success; its id and timeline.
fn run_mission(cli: &Cli, repo: &TestRepo) -> (String, Vec<Value>) {
    let out = cli.run(&[
        "--json",
        "run",
        "t",
        "--repo",
        repo.path().to_str().unwrap(),
    ]);
    assert_eq!(out.code(), 0, "{}", out.stderr());
    let id = out.json()["id"].as_str().unwrap().to_string();
    let events = cli.timeline(&id);
    (id, events)
}

fn replay(cli: &Cli, args: &[&str]) -> (i32, Value) {
    let mut full = vec!["--json", "replay"];
    full.extend_from_slice(args);
    let out = cli.run(&full);
    assert!(
        matches!(out.code(), 0 | 1),
        "replay: {}{}",
        out.stdout(),
        out.stderr()
    );
    (out.code(), out.json())
}

fn seq_of(events: &[Value], kind: &str, pred: impl Fn(&Value) -> bool) -> u64 {
    events
        .iter()
        .find(|e| e["type"] == kind && pred(&e["data"]))
        .unwrap_or_else(|| panic!("no {kind}"))["seq"]
        .as_u64()
        .unwrap()
}

#[test]
fn replay_verifies_and_each_edit_diverges_where_it_first_matters() {
    let repo = repo();
    let cli = Cli::new(BIN);
    let (id, events) = run_mission(&cli, &repo);
    let (code, report) = replay(&cli, &[&id]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["checked"], events.len() as u64);
    let first_request = seq_of(&events, "model.requested", |_| true);
    let grep_decision = seq_of(&events, "policy.decided", |d| d["action"] == "command");
    let coder_started = seq_of(&events, "step.started", |_| true);

    struct Case {
        name: &'static str,
        files: Vec<(&'static str, &'static str)>,
        at_seq: u64,
        at_type: &'static str,
        explains: &'static str,
    }
    let cases = [
        Case {
            name: "the template's goal",
            files: vec![(
                ".flightdeck/missions/t.toml",
                &*Box::leak(
                    TEMPLATE
                        .replace("return 42", "return 42 quickly")
                        .into_boxed_str(),
                ),
            )],
            at_seq: first_request,
            at_type: "model.requested",
            explains: "the template `t`",
        },
        Case {
            name: "the policy",
            files: vec![(
                ".flightdeck/policy.toml",
                "[defaults]\npublish = \"allow\"\ncommand = \"deny\"\n",
            )],
            at_seq: grep_decision,
            at_type: "policy.decided",
            explains: "the policy (sha256:",
        },
    ];
    for case in &cases {
        repo.write_files(&case.files);
        let (code, report) = replay(&cli, &[&id]);
        assert_eq!(code, 1, "{}: {report}", case.name);
        assert_eq!(report["diverged"], true, "{}", case.name);
        assert_eq!(report["at_seq"], case.at_seq, "{}: {report}", case.name);
        assert_eq!(
            report["event_type"], case.at_type,
            "{}: {report}",
            case.name
        );
        assert_eq!(report["checked"], case.at_seq - 1, "{}", case.name);
        let why = report["explanation"].as_str().unwrap();
        assert!(why.contains(case.explains), "{}: {why}", case.name);
        let difference = report["difference"].as_str().unwrap();
        if case.at_type == "model.requested" {
            // Read back whole from the request records: where the requests part, not that
            // two digests differ.
            assert!(
                difference.starts_with("in the request at /messages/1/content")
                    && difference.contains("return 42 quickly"),
                "{}: {difference}",
                case.name
            );
        }
        repo.git(&["checkout", "--", "."]);
    }
    // The files are back: the replay is the same again.
    assert_eq!(replay(&cli, &[&id]).0, 0);

    // A prompt that changed since the recording: the recorded prompt digest is made a
    // different one (the binary's own prompt cannot change under a test).
    let db = cli.data_dir().join("flightdeck.db");
    let zeros = format!("sha256:{}", "0".repeat(64));
    let status = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg(format!(
            "DROP TRIGGER events_are_append_only_update; UPDATE events SET data = json_set(data, '$.system_prompt', '{zeros}') \
             WHERE mission = '{id}' AND type = 'step.started'"
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let (code, report) = replay(&cli, &[&id]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["at_seq"], coder_started, "{report}");
    assert_eq!(report["event_type"], "step.started");
    let why = report["explanation"].as_str().unwrap();
    assert!(
        why.contains(&format!("the coder system prompt ({zeros} then")),
        "{why}"
    );
}

#[test]
fn reexecute_finds_the_command_whose_result_changed_and_verify_does_not() {
    let repo = repo();
    let cli = Cli::new(BIN);
    let (id, events) = run_mission(&cli, &repo);
    assert_eq!(replay(&cli, &[&id]).0, 0);
    let (code, report) = replay(&cli, &["--reexecute", &id]);
    assert_eq!(code, 1, "{report}");
    // The agent's own command re-ran the same; the acceptance check did not.
    let check = seq_of(&events, "tool.completed", |d| {
        d["call_id"].as_str().unwrap().starts_with("acceptance.")
    });
    assert_eq!(report["at_seq"], check, "{report}");
    assert_eq!(report["mode"], "reexecute");
    assert_eq!(report["expected"]["exit_code"], 0, "{report}");
    assert_eq!(report["actual"]["exit_code"], 1, "{report}");
    assert_eq!(
        report["expected"]["output_lines"],
        serde_json::json!(["1 passed"])
    );
    assert!(report["explanation"].as_str().unwrap().contains("flaky"));
    // Nothing was written: the mission's timeline is as it was.
    assert_eq!(cli.timeline(&id), events);
}

#[test]
fn a_fork_with_another_model_makes_another_change_and_both_timelines_verify() {
    let repo = repo();
    let cli = Cli::new(BIN);
    let (id, events) = run_mission(&cli, &repo);
    // Fork where the coder's second answer was asked for: the other model answers from there.
    let at = seq_of(&events, "model.requested", |d| d["call_id"] == "step-0.m2");
    let out = cli.run(&[
        "--json",
        "fork",
        &id,
        "--at",
        &at.to_string(),
        "--model",
        "scripted:.flightdeck/other.toml",
    ]);
    assert_eq!(out.code(), 0, "{}", out.stderr());
    let fork = out.json();
    let fork_id = fork["id"].as_str().unwrap().to_string();
    assert_ne!(fork_id, id);
    let forked = cli.timeline(&fork_id);
    // Events 1..at are copies (the data, not the chain: another mission).
    for (copy, original) in forked.iter().zip(&events).take(at as usize) {
        assert_eq!(copy["type"], original["type"]);
        assert_eq!(copy["data"], original["data"]);
    }
    let marker = &forked[at as usize];
    assert_eq!(marker["type"], "mission.forked");
    assert_eq!(marker["data"]["origin"], id.as_str());
    assert_eq!(marker["data"]["at_seq"], at);
    assert_eq!(marker["data"]["model"], "scripted:.flightdeck/other.toml");
    let show =
        |branch: &Value| repo.git(&["show", &format!("{}:src/lib.rs", branch.as_str().unwrap())]);
    assert!(
        show(&fork["branch"]).contains("43"),
        "the other model's change"
    );
    let original = cli.run(&["--json", "show", &id]).json();
    assert!(show(&original["branch"]).contains("42"));
    // The original is untouched and both verify.
    assert_eq!(cli.timeline(&id), events);
    assert_eq!(replay(&cli, &[&id]).0, 0);
    let (code, report) = replay(&cli, &[&fork_id]);
    assert_eq!(code, 0, "{report}");
    // A fork inside what the engine stores in one commit (an answer is stored with the next
    // call's request) goes on from there, and its replay stops at the fork as at a crash.
    let mid = seq_of(&events, "model.responded", |d| d["call_id"] == "step-0.m1");
    assert_eq!(events[mid as usize]["type"], "tool.requested");
    let out = cli.run(&["--json", "fork", &id, "--at", &mid.to_string()]);
    assert_eq!(out.code(), 0, "{}", out.stderr());
    let mid_fork = out.json()["id"].as_str().unwrap().to_string();
    assert_eq!(out.json()["status"], "succeeded", "{}", out.stdout());
    let (code, report) = replay(&cli, &[&mid_fork]);
    assert_eq!(code, 0, "{report}");
    cli.run(&["audit", "verify", "--all"]).expect_code(0);
    // Bad seqs are refused, naming the range.
    let out = cli.run(&["fork", &id, "--at", "0"]);
    assert_eq!(out.code(), 2);
    assert!(
        out.stderr()
            .contains(&format!("has events 1..{}", events.len())),
        "{}",
        out.stderr()
    );
}

#[test]
fn a_signed_provenance_statement_verifies_with_its_key_only() {
    let repo = repo();
    let cli = Cli::new(BIN);
    let (id, _) = run_mission(&cli, &repo);
    let keys = tempfile::tempdir().unwrap();
    let openssl = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .current_dir(keys.path())
            .status()
            .unwrap();
        assert!(status.success(), "openssl {args:?}");
    };
    openssl(&["genpkey", "-algorithm", "ed25519", "-out", "signing.pem"]);
    openssl(&[
        "pkey",
        "-in",
        "signing.pem",
        "-pubout",
        "-out",
        "public.pem",
    ]);
    openssl(&["genpkey", "-algorithm", "ed25519", "-out", "other.pem"]);
    openssl(&[
        "pkey",
        "-in",
        "other.pem",
        "-pubout",
        "-out",
        "other-public.pem",
    ]);
    let signing = keys.path().join("signing.pem");
    cli.write_config(&format!(
        "[audit]\nsigning_key = \"{}\"\n",
        signing.display()
    ));
    let out = cli.run(&["audit", "export", &id, "--format", "intoto"]);
    assert_eq!(out.code(), 0, "{}", out.stderr());
    let envelope: Value = serde_json::from_str(&out.stdout()).unwrap();
    assert_eq!(envelope["payloadType"], "application/vnd.in-toto+json");
    let file = keys.path().join("statement.dsse.json");
    let verify = |envelope: &Value, key: &str| {
        std::fs::write(&file, envelope.to_string()).unwrap();
        let public = keys.path().join(key);
        cli.run(&[
            "--json",
            "audit",
            "verify-attestation",
            file.to_str().unwrap(),
            "--public-key",
            public.to_str().unwrap(),
        ])
    };
    let ok = verify(&envelope, "public.pem");
    assert_eq!(ok.code(), 0, "{}{}", ok.stdout(), ok.stderr());
    assert_eq!(ok.json()["invocation"], id.as_str());
    // Another key, or any change to the signed payload, fails (exit 1, saying why).
    let other = verify(&envelope, "other-public.pem");
    assert_eq!(other.code(), 1);
    assert!(other.json()["reason"]
        .as_str()
        .unwrap()
        .contains("no signature"));
    let mut tampered = envelope.clone();
    let payload = tampered["payload"].as_str().unwrap().replace('A', "B");
    tampered["payload"] = Value::String(payload);
    assert_eq!(verify(&tampered, "public.pem").code(), 1);
    // A key file that is not a key is bad input, naming it.
    std::fs::write(keys.path().join("junk.pem"), "not a key").unwrap();
    let junk = verify(&envelope, "junk.pem");
    assert_eq!(junk.code(), 2);
    assert!(junk.stderr().contains("junk.pem"), "{}", junk.stderr());
}

/// A small deterministic generator, so a failing seed can be run again.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

const CALLS: usize = 5;

/// The crash test runs unsandboxed (bubblewrap's set-up would dominate its timings).
const UNSANDBOXED_CONFIG: &str = "[workspace]\nallow_unsandboxed = true\n";

fn crash_repo(side_log: &std::path::Path) -> TestRepo {
    let mut script = String::from("model = \"sim-1\"\n");
    for k in 1..=CALLS {
        script.push_str(&format!(
            "[[turn]]\n[[turn.call]]\ntool = \"run\"\nargs = {{ command = \"echo call-{k} >> {}; sleep 0.1; echo {k} > f{k}.txt\" }}\n",
            side_log.display()
        ));
    }
    script.push_str("[[turn]]\n[[turn.call]]\ntool = \"finish\"\nargs = { summary = \"done\" }\n");
    let template = "goal = \"Write the files.\"\n[model]\npin = \"scripted:.flightdeck/script.toml\"\n[workspace]\nruntime = \"local-unsandboxed\"\n[[steps]]\nagent = \"coder\"\n";
    TestRepo::with_files(&[
        ("README.md", "crash test\n"),
        (".flightdeck/policy.toml", POLICY),
        (".flightdeck/missions/t.toml", template),
        (".flightdeck/script.toml", &script),
    ])
}

/// The published change, as a diff of the files (commit ids differ between missions).
fn published_diff(repo: &TestRepo, cli: &Cli, id: &str) -> String {
    let branch = cli.run(&["--json", "show", id]).json()["branch"]
        .as_str()
        .unwrap()
        .to_string();
    repo.git(&["diff", &format!("main..{branch}")])
}

#[test]
fn missions_killed_at_random_moments_resume_to_the_same_change_without_running_a_completed_call_twice(
) {
    let dir = tempfile::tempdir().unwrap();
    let baseline_log = dir.path().join("baseline.log");
    let repo = crash_repo(&baseline_log);
    let cli = Cli::new(BIN);
    cli.write_config(UNSANDBOXED_CONFIG);
    // Kill moments are drawn from how long an uninterrupted run takes on this machine, so a
    // fast machine is hit as often as a slow one.
    let timed = Instant::now();
    let (baseline_id, _) = run_mission(&cli, &repo);
    let run_ms = (timed.elapsed().as_millis() as u64).max(50);
    let baseline = published_diff(&repo, &cli, &baseline_id);
    assert!(baseline.contains("f5.txt"), "{baseline}");

    let mut rng = Lcg(0x5eed);
    let mut kills = 0;
    let mut reruns = 0;
    for mission in 0..8 {
        let side_log = dir.path().join(format!("side-{mission}.log"));
        let repo = crash_repo(&side_log);
        let cli = Cli::new(BIN);
        cli.write_config(UNSANDBOXED_CONFIG);
        let repo_arg = repo.path().to_str().unwrap().to_string();
        let mut id: Option<String> = None;
        let mut finished = false;
        for round in 0..12 {
            let args: Vec<String> = match &id {
                None => vec!["run".into(), "t".into(), "--repo".into(), repo_arg.clone()],
                Some(id) => vec!["resume".into(), id.clone()],
            };
            let mut child = cli
                .command(&args.iter().map(String::as_str).collect::<Vec<_>>())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            // Kill at a random moment in the first rounds (the first one in the first half of
            // a run, so every mission is killed at least once); then let it finish.
            let span = if round == 0 { run_ms / 2 } else { run_ms };
            let deadline = (round < 6).then(|| Duration::from_millis(10 + rng.next(span)));
            let started = Instant::now();
            let exited = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break Some(status);
                }
                if deadline.is_some_and(|d| started.elapsed() >= d) {
                    child.kill().unwrap(); // SIGKILL
                    child.wait().unwrap();
                    kills += 1;
                    break None;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "mission {mission} hangs"
                );
                std::thread::sleep(Duration::from_millis(2));
            };
            if id.is_none() {
                let missions = cli.run(&["--json", "missions"]).json();
                id = missions
                    .as_array()
                    .and_then(|m| m.first())
                    .map(|m| m["id"].as_str().unwrap().to_string());
                if id.is_none() {
                    continue; // killed before the mission was created: start again
                }
            }
            // Killed just after the mission's last event: nothing is left to resume.
            let status_now =
                cli.run(&["--json", "show", id.as_deref().unwrap()]).json()["status"].clone();
            if exited.is_none() && status_now == "succeeded" {
                finished = true;
                break;
            }
            // A timeline cut short by the kill replays the same as far as it goes.
            if exited.is_none() && round == 0 {
                let (code, report) = replay(&cli, &[id.as_deref().unwrap()]);
                assert_eq!(code, 0, "mission {mission}, cut short: {report}");
                let why = report["explanation"].as_str().unwrap();
                assert!(why.contains("had not finished"), "{why}");
            }
            if let Some(status) = exited {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
                }
                assert!(
                    status.success(),
                    "mission {mission} round {round}: {status}: {stderr}"
                );
                finished = true;
                break;
            }
        }
        assert!(finished, "mission {mission} never finished");
        let id = id.unwrap();
        let events = cli.timeline(&id);
        cli.run(&["audit", "verify", &id]).expect_code(0);

        // No completed call ran twice: a call's side effect shows once per attempt that
        // started, and a second attempt exists only where the first was interrupted.
        let log = std::fs::read_to_string(&side_log).unwrap_or_default();
        let mut attempts: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for e in events.iter().filter(|e| e["type"] == "tool.requested") {
            let call = e["data"]["call_id"].as_str().unwrap().to_string();
            let base = call.split('#').next().unwrap().to_string();
            attempts.entry(base).or_default().push(call);
        }
        let interrupted: Vec<String> = events
            .iter()
            .filter(|e| e["type"] == "mission.interrupted")
            .flat_map(|e| e["data"]["calls"].as_array().unwrap().clone())
            .map(|c| c.as_str().unwrap().to_string())
            .collect();
        let completed: Vec<&str> = events
            .iter()
            .filter(|e| e["type"] == "tool.completed")
            .map(|e| e["data"]["call_id"].as_str().unwrap())
            .collect();
        for k in 1..=CALLS {
            let base = format!("step-0.m{k}.t1");
            let tries = &attempts[&base];
            let ran = log.lines().filter(|l| *l == format!("call-{k}")).count();
            assert!(
                ran <= tries.len(),
                "mission {mission}: call-{k} ran {ran} times in {} attempt(s)",
                tries.len()
            );
            assert_eq!(
                completed
                    .iter()
                    .filter(|c| c.split('#').next() == Some(&base))
                    .count(),
                1,
                "mission {mission}: {base} completed once"
            );
            reruns += tries.len() - 1;
            // Every attempt but the last was interrupted, and recorded so.
            for attempt in &tries[..tries.len() - 1] {
                assert!(
                    interrupted.contains(attempt),
                    "mission {mission}: {attempt} superseded but not recorded as interrupted"
                );
                assert!(!completed.contains(&attempt.as_str()));
            }
        }
        assert_eq!(
            published_diff(&repo, &cli, &id),
            baseline,
            "mission {mission}"
        );
        // And the crashed timeline replays: the resumes and re-runs come out the same.
        let (code, report) = replay(&cli, &[&id]);
        assert_eq!(code, 0, "mission {mission}: {report}");
    }
    assert!(kills >= 8, "the harness killed only {kills} time(s)");
    // Some kills landed during a command, so interrupted calls were run again.
    assert!(reruns >= 1, "no kill interrupted a command ({kills} kills)");
}
