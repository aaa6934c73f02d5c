//! Team quotas with the real binary: eight missions of one team queued at once and raced
//! by four `flightdeck worker` processes, on one store (SQLite, and PostgreSQL on the server
//! `FLIGHTDECK_TEST_DATABASE_URL` names), against a monthly quota that fits five of them.
//! Each mission makes one scripted model call whose cost is exactly its reservation, so
//! however the processes interleave, five fit and the other three stop before their call.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::process::Stdio;

use flightdeck_testkit::{Cli, TestRepo};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");

const TEAM: &str = "@acme/platform";
/// One call: 1,000 tokens in and 100 out at $100 per million tokens = $0.11, which is also
/// its worst case (the script declares its input tokens, the output limit is 100).
const CALL_USD: f64 = 0.11;
/// Five calls fit ($0.55), a sixth never does, even after the five settled.
const QUOTA_USD: f64 = 0.6;
const MISSIONS: usize = 8;

const SCRIPT: &str = r#"
model = "sim-1"
[pricing]
input_per_mtok = 100.0
output_per_mtok = 100.0

[[turn]]
input_tokens = 1000
output_tokens = 100
[[turn.call]]
tool = "finish"
args = { summary = "nothing to change" }
"#;

const TEMPLATE: &str = r#"
goal = "Say you are done."
[model]
pin = "scripted:.flightdeck/script.toml"
max_output_tokens = 100
[[steps]]
agent = "coder"
"#;

fn repo() -> TestRepo {
    let repo = TestRepo::with_files(&[
        ("README.md", "hello\n"),
        (
            ".flightdeck/policy.toml",
            "[defaults]\npublish = \"allow\"\n",
        ),
        (".flightdeck/missions/t.toml", TEMPLATE),
        (".flightdeck/script.toml", SCRIPT),
    ]);
    repo.commit_all("quota template");
    repo
}

fn config(usd_per_month: f64) -> String {
    format!(
        "[teams]\n\"{TEAM}\" = [\"@carol\", \"dave@acme.com\"]\n\n[quotas.\"{TEAM}\"]\nusd_per_month = {usd_per_month}\n"
    )
}

/// `flightdeck [--database-url URL] ARGS…`.
fn args<'a>(url: Option<&'a str>, rest: &[&'a str]) -> Vec<&'a str> {
    let mut full = Vec::new();
    if let Some(url) = url {
        full.extend(["--database-url", url]);
    }
    full.extend_from_slice(rest);
    full
}

fn f64_at(value: &Value, pointer: &str) -> f64 {
    value
        .pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("no number at {pointer} in {value}"))
}

/// Starts the eight missions at once and checks what became of them; returns the ids of the
/// stopped ones.
fn race(cli: &Cli, url: Option<&str>) -> Vec<String> {
    // One checkout for all: its worktrees are added by several processes at once.
    let repo = repo();
    let path = repo.path().to_str().unwrap();
    cli.write_config(&config(QUOTA_USD));
    let ids: Vec<String> = (0..MISSIONS)
        .map(|_| {
            let queued = cli
                .run(&args(
                    url,
                    &["--json", "run", "t", "--queue", "--repo", path],
                ))
                .expect_code(0)
                .json();
            queued["id"].as_str().unwrap().to_string()
        })
        .collect();
    let mut workers: Vec<_> = (0..4)
        .map(|_| {
            cli.command(&args(url, &["worker"]))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let show = |id: &str| -> Value {
        cli.run(&args(url, &["--json", "show", id]))
            .expect_code(0)
            .json()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let summaries: Vec<Value> = loop {
        let summaries: Vec<Value> = ids.iter().map(|id| show(id)).collect();
        if summaries
            .iter()
            .all(|s| s["status"] == "succeeded" || s["status"] == "blocked")
        {
            break summaries;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the workers never finished: {summaries:#?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    for worker in &mut workers {
        let pid = nix::unistd::Pid::from_raw(worker.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        worker.wait().unwrap();
    }
    let mut succeeded = Vec::new();
    let mut stopped = Vec::new();
    for summary in summaries {
        let id = summary["id"].as_str().unwrap().to_string();
        if summary["status"] == "succeeded" {
            succeeded.push((id, summary));
        } else {
            assert_eq!(summary["error"]["kind"], "budget_exceeded", "{summary:#}");
            let message = summary["error"]["message"].as_str().unwrap();
            assert!(message.contains(TEAM), "{message}");
            stopped.push((id, summary));
        }
    }
    assert_eq!(
        (succeeded.len(), stopped.len()),
        (5, 3),
        "five fit, three do not"
    );

    let timeline = |id: &str| -> Vec<Value> {
        cli.run(&args(url, &["timeline", id, "--json"]))
            .expect_code(0)
            .json_lines()
    };
    let of_type = |events: &[Value], kind: &str| -> Vec<Value> {
        events
            .iter()
            .filter(|e| e["type"] == kind)
            .cloned()
            .collect()
    };
    let mut spent = 0.0;
    for (id, summary) in &succeeded {
        let events = timeline(id);
        assert!(of_type(&events, "budget.exceeded").is_empty(), "{id}");
        let requested = of_type(&events, "model.requested");
        assert_eq!(requested.len(), 1, "{id}");
        let reserved = f64_at(&requested[0], "/data/reserved/usd");
        assert!(
            (reserved - CALL_USD).abs() < 1e-12,
            "{id}: reserved {reserved}"
        );
        spent += f64_at(summary, "/budget/usd/used");
    }
    for (id, summary) in &stopped {
        let events = timeline(id);
        // Stopped before its call: nothing was asked of the model, nothing spent.
        assert!(of_type(&events, "model.requested").is_empty(), "{id}");
        assert_eq!(f64_at(summary, "/budget/usd/used"), 0.0, "{id}");
        let exceeded = of_type(&events, "budget.exceeded");
        assert_eq!(exceeded.len(), 1, "{id}");
        let e = &exceeded[0]["data"];
        assert_eq!(e["dimension"], "team_usd", "{e}");
        assert_eq!(e["team"], TEAM, "{e}");
        assert_eq!(e["refused"], "model call step-0.m1", "{e}");
        let (used, limit, needed) = (
            f64_at(e, "/used"),
            f64_at(e, "/limit"),
            f64_at(e, "/needed"),
        );
        assert_eq!(limit, QUOTA_USD, "{e}");
        assert!((needed - CALL_USD).abs() < 1e-12, "{e}");
        assert!(used <= limit && used + needed > limit, "{e}");
        assert_eq!(events.last().unwrap()["type"], "budget.exceeded", "{id}");
    }
    assert!(
        (spent - 5.0 * CALL_USD).abs() < 1e-9 && spent <= QUOTA_USD,
        "recorded spend {spent}"
    );

    let verified = cli.run(&args(url, &["audit", "verify", "--all"]));
    assert_eq!(
        verified.code(),
        0,
        "{}{}",
        verified.stdout(),
        verified.stderr()
    );
    // A replay answers the quota as the recording did: the refusal comes back the same.
    for id in [&stopped[0].0, &succeeded[0].0] {
        let replayed = cli.run(&args(url, &["replay", id]));
        assert_eq!(replayed.code(), 0, "{id}: {}", replayed.stderr());
        assert!(
            replayed.stdout().contains("same"),
            "{id}: {}",
            replayed.stdout()
        );
    }
    stopped.into_iter().map(|(id, _)| id).collect()
}

/// The store's sums for the team this month: `(reserved, spent)` in usd.
fn sums(rows: &str) -> (f64, f64) {
    let (reserved, spent) = rows.trim().split_once('|').unwrap_or(("", ""));
    (reserved.parse().unwrap(), spent.parse().unwrap())
}

const SUMS_SQL: &str = "SELECT reserved, spent FROM quota_usage WHERE dimension = 'usd'";

fn assert_settled((reserved, spent): (f64, f64), calls: f64) {
    // Every call that was made settled to its cost; nothing is left held.
    assert!(reserved.abs() < 1e-12, "reserved {reserved}");
    assert!((spent - calls * CALL_USD).abs() < 1e-9, "spent {spent}");
}

/// Two calls: a read (staged with its answer until the next append), then `finish`.
const READ_SCRIPT: &str = r#"
model = "sim-1"
[pricing]
input_per_mtok = 100.0
output_per_mtok = 100.0

[[turn]]
input_tokens = 1000
output_tokens = 100
[[turn.call]]
tool = "read_file"
args = { path = "README.md" }

[[turn]]
input_tokens = 1000
output_tokens = 100
[[turn.call]]
tool = "finish"
args = { summary = "read it" }
"#;

#[test]
fn eight_missions_racing_for_a_team_quota_that_fits_five_on_sqlite() {
    let cli = Cli::new(BIN);
    race(&cli, None);
    let sqlite_sums = || {
        let out = std::process::Command::new("sqlite3")
            .arg(cli.data_dir().join("flightdeck.db"))
            .arg(SUMS_SQL)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        sums(&String::from_utf8_lossy(&out.stdout))
    };
    assert_settled(sqlite_sums(), 5.0);
    // Each mission's row names its requester's team, as a typed column.
    let teams = std::process::Command::new("sqlite3")
        .arg(cli.data_dir().join("flightdeck.db"))
        .arg("SELECT DISTINCT team FROM missions")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&teams.stdout).trim(), TEAM);

    // Raised to fit one more call (the config applies to the next call): a mission of two
    // calls makes its first and is stopped at its second, whose refusal is stored with the
    // answer and the read staged before it; a replay gives the same refusal back, and a
    // resume under a higher quota finishes the mission.
    let repo = TestRepo::with_files(&[
        ("README.md", "hello\n"),
        (
            ".flightdeck/policy.toml",
            "[defaults]\npublish = \"allow\"\n",
        ),
        (".flightdeck/missions/t.toml", TEMPLATE),
        (".flightdeck/script.toml", READ_SCRIPT),
    ]);
    repo.commit_all("two calls");
    cli.write_config(&config(0.7));
    let out = cli.run(&[
        "--json",
        "run",
        "t",
        "--repo",
        repo.path().to_str().unwrap(),
    ]);
    assert_eq!(out.code(), 4, "{}", out.stderr());
    let id = out.json()["id"].as_str().unwrap().to_string();
    let events = cli.timeline(&id);
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let last = events.last().unwrap();
    assert_eq!(last["type"], "budget.exceeded", "{types:?}");
    assert_eq!(last["data"]["refused"], "model call step-0.m2", "{last}");
    assert_eq!(last["data"]["team"], TEAM, "{last}");
    assert!(
        (f64_at(last, "/data/used") - 6.0 * CALL_USD).abs() < 1e-9,
        "{last}"
    );
    assert_eq!(
        types.iter().filter(|t| **t == "model.requested").count(),
        1,
        "{types:?}"
    );
    assert!(types.contains(&"model.responded") && types.contains(&"tool.completed"));
    let replayed = cli.run(&["replay", &id]);
    assert_eq!(replayed.code(), 0, "{}", replayed.stderr());
    assert!(replayed.stdout().contains("same"), "{}", replayed.stdout());
    cli.write_config(&config(0.8));
    let resumed = cli.run(&["--json", "resume", &id]);
    assert_eq!(resumed.code(), 0, "{}", resumed.stderr());
    assert_eq!(resumed.json()["status"], "succeeded");
    let replayed = cli.run(&["replay", &id]);
    assert_eq!(replayed.code(), 0, "{}", replayed.stderr());
    assert!(replayed.stdout().contains("same"), "{}", replayed.stdout());
    assert_settled(sqlite_sums(), 7.0);
}

#[test]
fn eight_missions_racing_for_a_team_quota_that_fits_five_on_postgresql() {
    let admin = std::env::var("FLIGHTDECK_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "this test runs against a real PostgreSQL: run scripts/test, or \
             `scripts/postgres start` and export the FLIGHTDECK_TEST_DATABASE_URL it prints"
        )
    });
    let psql = |url: &str, sql: &str| {
        let out = std::process::Command::new("psql")
            .args([url, "-qAtc", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let name = format!("fd_quota_{}", std::process::id());
    psql(&admin, &format!("CREATE DATABASE {name}"));
    let (server, _) = admin.rsplit_once('/').unwrap();
    let url = format!("{server}/{name}");
    let cli = Cli::new(BIN);
    race(&cli, Some(&url));
    assert_settled(sums(&psql(&url, SUMS_SQL)), 5.0);
    psql(&admin, &format!("DROP DATABASE {name} WITH (FORCE)"));
}
