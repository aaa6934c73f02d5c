//! The real binary on PostgreSQL (`--database-url postgres://…`): a mission's whole life with
//! its timeline, artifacts and anchors, a worker in another process woken by the database's
//! notifications, and database URLs that cannot be used.
//!
//! The server is a throwaway cluster `scripts/postgres start` makes (the test command starts
//! it and exports `FLIGHTDECK_TEST_DATABASE_URL`); each test makes databases of its own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use flightdeck_testkit::{Cli, TestRepo};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");

fn admin_url() -> String {
    std::env::var("FLIGHTDECK_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "these tests run against a real PostgreSQL: run scripts/test, or \
             `scripts/postgres start` and export the FLIGHTDECK_TEST_DATABASE_URL it prints"
        )
    })
}

fn psql(url: &str, sql: &str) -> String {
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
}

/// A new, empty database on the test cluster; its URL.
fn fresh_database(tag: &str) -> String {
    let admin = admin_url();
    let name = format!(
        "fd_{tag}_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    psql(&admin, &format!("CREATE DATABASE {name}"));
    let (server, _) = admin.rsplit_once('/').unwrap();
    format!("{server}/{name}")
}

fn repo() -> TestRepo {
    let policy = "[[rule]]\nid = \"owners\"\naction = \"publish\"\nchanges_any = [\"source\"]\ndecision = \"approve\"\napprovers = [\"@bob\"]\n";
    let template = "[publish]\ntitle = \"On PostgreSQL\"\n[[steps]]\nrun = \"echo stored && echo 'pub fn g() {}' >> src/lib.rs\"\n";
    let repo = TestRepo::with_files(&[
        ("README.md", "# sample\n"),
        ("src/lib.rs", "pub fn f() {}\n"),
        (".flightdeck/policy.toml", policy),
        (".flightdeck/missions/t.toml", template),
    ]);
    repo.commit_all("sample");
    repo
}

/// `flightdeck --database-url URL ARGS…` as `who`.
fn on(cli: &Cli, url: &str, who: &str, args: &[&str]) -> flightdeck_testkit::CliOutput {
    let mut full = vec!["--database-url", url, "--as", who];
    full.extend_from_slice(args);
    cli.run(&full)
}

fn parked(cli: &Cli, url: &str, repo: &TestRepo) -> (String, String) {
    let out = on(
        cli,
        url,
        "@carol",
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
    (
        summary["id"].as_str().unwrap().to_string(),
        summary["pending_approvals"][0]["id"]
            .as_str()
            .unwrap()
            .to_string(),
    )
}

fn show(cli: &Cli, url: &str, id: &str) -> Value {
    on(cli, url, "@carol", &["--json", "show", id])
        .expect_code(0)
        .json()
}

#[test]
fn a_mission_lives_on_postgresql_and_a_worker_elsewhere_is_woken_by_the_database() {
    let url = fresh_database("life");
    let repo = repo();
    let cli = Cli::new(BIN);

    // Parked at the gate; approved from another process; continued by a worker pass.
    let (id, approval) = parked(&cli, &url, &repo);
    on(&cli, &url, "@bob", &["approve", &approval]).expect_code(0);
    on(&cli, &url, "@carol", &["worker", "--once"]).expect_code(0);
    let done = show(&cli, &url, &id);
    assert_eq!(done["status"], "succeeded", "{done:#}");

    // The timeline is in the database, whole: verified, replayed, anchored outside it.
    let verified = on(&cli, &url, "@carol", &["audit", "verify", "--all"]);
    assert_eq!(verified.code(), 0, "{}", verified.stdout());
    let replayed = on(&cli, &url, "@carol", &["replay", &id]);
    assert_eq!(replayed.code(), 0, "{}", replayed.stderr());
    assert!(replayed.stdout().contains("same"), "{}", replayed.stdout());
    let events: i64 = psql(
        &url,
        &format!("SELECT count(*) FROM events WHERE mission = '{id}'"),
    )
    .parse()
    .unwrap();
    assert_eq!(events as u64, done["events"].as_u64().unwrap());
    // Artifacts live in PostgreSQL, none on this machine's disk.
    let patch = done["artifacts"]["patch"].as_str().unwrap();
    let shown = on(&cli, &url, "@carol", &["artifact", patch]).expect_code(0);
    assert!(
        shown.stdout().contains("+pub fn g() {}"),
        "{}",
        shown.stdout()
    );
    assert_eq!(
        psql(
            &url,
            &format!("SELECT count(*) FROM artifacts WHERE digest = '{patch}'")
        ),
        "1"
    );
    assert!(
        !cli.data_dir().join("artifacts").exists(),
        "artifacts were written to the data directory"
    );
    // The database refuses to rewrite history, whoever asks.
    let tampered = std::process::Command::new("psql")
        .args([
            url.as_str(),
            "-qAtc",
            &format!("UPDATE events SET type = 'x' WHERE mission = '{id}' AND seq = 1"),
        ])
        .output()
        .unwrap();
    assert!(!tampered.status.success(), "an event was updated");
    assert!(String::from_utf8_lossy(&tampered.stderr).contains("append-only"));

    // A worker in another process, waiting: an approval recorded by a third process wakes
    // it through the database's notifications, and it continues the mission.
    let (second, approval) = parked(&cli, &url, &repo);
    let mut worker = cli
        .command(&["--database-url", &url, "--json", "worker"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = worker.stdout.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    // Its first pass finds nothing to do (the approval is not given yet).
    std::thread::sleep(Duration::from_millis(500));
    on(&cli, &url, "@bob", &["approve", &approval]).expect_code(0);
    let deadline = Instant::now() + Duration::from_secs(20);
    let continued = loop {
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
            let action: Value = serde_json::from_str(&line).unwrap();
            if action["mission"] == second.as_str() && action["action"] == "continued" {
                break action;
            }
        }
        assert!(Instant::now() < deadline, "the worker was never woken");
    };
    assert_eq!(continued["status"], "succeeded", "{continued}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(worker.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    assert!(worker.wait().unwrap().code().is_some());
    assert_eq!(show(&cli, &url, &second)["status"], "succeeded");
}

#[test]
fn database_urls_that_cannot_be_used_are_refused_with_the_password_masked() {
    let cli = Cli::new(BIN);
    let admin = admin_url();
    let (server, _) = admin.rsplit_once('/').unwrap();
    let foreign = fresh_database("foreign");
    psql(&foreign, "CREATE TABLE customers (id int)");
    let with_password =
        |u: &str| u.replacen("postgres://postgres@", "postgres://postgres:hunter2@", 1);
    let cases = [
        (
            "postgres://fd:hunter2@127.0.0.1:1/flightdeck".to_string(),
            "cannot connect to postgres://fd:***@127.0.0.1:1/flightdeck",
        ),
        (
            with_password(&format!("{server}/no_such_database")),
            "does not exist",
        ),
        (with_password(&foreign), "is not a flightdeck database"),
        ("mysql://x@y/z".to_string(), "unsupported database url"),
    ];
    for (url, says) in cases {
        let out = cli.run(&["--database-url", &url, "missions"]);
        assert_eq!(out.code(), 2, "{url}: {}", out.stderr());
        assert!(out.stderr().contains(says), "{url}: {}", out.stderr());
        assert!(out.stderr().contains("hint:"), "{url}: {}", out.stderr());
        assert!(!out.stderr().contains("hunter2"), "{url}: {}", out.stderr());
    }
    // Nothing was written to the other program's database.
    assert_eq!(
        psql(
            &foreign,
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ),
        "1"
    );
}

#[test]
fn a_sqlite_installation_is_copied_into_postgresql_with_every_hash_intact() {
    let repo = repo();
    let cli = Cli::new(BIN);
    let run = |who: &str, args: &[&str]| {
        let mut full = vec!["--as", who];
        full.extend_from_slice(args);
        cli.run(&full)
    };
    // On SQLite (the data directory's default): one mission published, one parked.
    let out = run(
        "@carol",
        &[
            "--json",
            "run",
            "t",
            "--repo",
            repo.path().to_str().unwrap(),
        ],
    );
    assert_eq!(out.code(), 3, "{}", out.stderr());
    let published = out.json()["id"].as_str().unwrap().to_string();
    let approval = out.json()["pending_approvals"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    run("@bob", &["approve", &approval]).expect_code(0);
    run("@carol", &["resume", &published]).expect_code(0);
    let out = run(
        "@carol",
        &[
            "--json",
            "run",
            "t",
            "--repo",
            repo.path().to_str().unwrap(),
        ],
    );
    assert_eq!(out.code(), 3, "{}", out.stderr());
    let parked = out.json()["id"].as_str().unwrap().to_string();
    let parked_approval = out.json()["pending_approvals"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    run(
        "@carol",
        &["token", "create", "--for", "@bob", "--role", "viewer"],
    )
    .expect_code(0);

    let url = fresh_database("copy");
    let copied = run("@carol", &["--json", "store", "copy", "--to", &url]);
    assert_eq!(copied.code(), 0, "{}", copied.stderr());
    let report = copied.json();
    assert_eq!(report["copied"].as_array().unwrap().len(), 2, "{report}");
    assert_eq!(report["tokens"], 1, "{report}");
    assert!(report["artifacts"].as_u64().unwrap() > 0, "{report}");

    // The same timelines, event for event and hash for hash, and the same summaries.
    for id in [&published, &parked] {
        let here = run("@carol", &["timeline", id, "--json"])
            .expect_code(0)
            .json_lines();
        let there = on(&cli, &url, "@carol", &["timeline", id, "--json"])
            .expect_code(0)
            .json_lines();
        assert_eq!(here, there, "{id}");
        assert_eq!(
            run("@carol", &["--json", "show", id]).expect_code(0).json(),
            show(&cli, &url, id),
            "{id}"
        );
    }
    on(&cli, &url, "@carol", &["audit", "verify", "--all"]).expect_code(0);
    let replayed = on(&cli, &url, "@carol", &["replay", &published]);
    assert_eq!(replayed.code(), 0, "{}", replayed.stderr());
    assert_eq!(
        on(&cli, &url, "@carol", &["--json", "token", "list"])
            .expect_code(0)
            .json()["tokens"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Copying again writes nothing: what is there is found with the same head.
    let again = run("@carol", &["--json", "store", "copy", "--to", &url])
        .expect_code(0)
        .json();
    assert_eq!(again["copied"], serde_json::json!([]), "{again}");
    assert_eq!(
        again["already_there"].as_array().unwrap().len(),
        2,
        "{again}"
    );
    assert_eq!(again["tokens"], 0, "{again}");

    // The parked mission goes on in PostgreSQL.
    on(&cli, &url, "@bob", &["approve", &parked_approval]).expect_code(0);
    on(&cli, &url, "@carol", &["resume", &parked]).expect_code(0);
    assert_eq!(show(&cli, &url, &parked)["status"], "succeeded");
    // And the original is untouched by it.
    assert_eq!(
        run("@carol", &["--json", "show", &parked])
            .expect_code(0)
            .json()["status"],
        "awaiting_approval"
    );
    // Copying a store onto itself is refused.
    let own = format!(
        "sqlite://{}",
        cli.data_dir().join("flightdeck.db").display()
    );
    let refused = run("@carol", &["store", "copy", "--to", &own]);
    assert_eq!(refused.code(), 2, "{}", refused.stderr());
}

/// The timeline of `id` as `timeline --json` prints it.
fn timeline(cli: &Cli, url: &str, id: &str) -> Vec<Value> {
    on(cli, url, "@carol", &["timeline", id, "--json"])
        .expect_code(0)
        .json_lines()
}

#[test]
fn a_worker_paused_past_its_lease_cannot_write_after_another_took_over() {
    let url = fresh_database("fence");
    let repo = TestRepo::with_files(&[
        ("README.md", "# sample\n"),
        ("src/lib.rs", "pub fn f() {}\n"),
        (
            ".flightdeck/policy.toml",
            "[defaults]\npublish = \"allow\"\n",
        ),
        (
            ".flightdeck/missions/t.toml",
            "[[steps]]\nrun = \"sleep 3 && echo 'pub fn g() {}' >> src/lib.rs\"\n",
        ),
    ]);
    repo.commit_all("sample");
    let cli = Cli::new(BIN);
    // Leases of 3 s, so that a pause outlives one quickly.
    let lease = [("FLIGHTDECK_LEASE_SECONDS", "3")];
    let first = cli
        .command(&[
            "--database-url",
            &url,
            "--as",
            "@carol",
            "--json",
            "run",
            "t",
            "--repo",
            repo.path().to_str().unwrap(),
        ])
        .envs(lease)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until its command runs, then pause the worker (not its sandbox: the command goes
    // on and ends while the worker sleeps).
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        let listed = on(&cli, &url, "@carol", &["--json", "missions"]).json();
        if let Some(id) = listed[0]["id"].as_str() {
            let events = timeline(&cli, &url, id);
            if events.iter().any(|e| e["type"] == "tool.requested") {
                break id.to_string();
            }
        }
        assert!(Instant::now() < deadline, "the command never started");
        std::thread::sleep(Duration::from_millis(50));
    };
    let pid = nix::unistd::Pid::from_raw(first.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    // Its lease runs out; another worker takes the mission over and finishes it.
    std::thread::sleep(Duration::from_secs(4));
    let second = cli
        .command(&["--database-url", &url, "--as", "@carol", "resume", &id])
        .envs(lease)
        .output()
        .unwrap();
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let finished = timeline(&cli, &url, &id);
    assert_eq!(show(&cli, &url, &id)["status"], "succeeded");
    // The first worker wakes up with its command's result and an old lease: whatever it
    // tries to write is refused, and it stops.
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    let out = first.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the paused worker went on: {stderr}");
    assert!(
        stderr.contains("changed by someone else") || stderr.contains("being driven by"),
        "{stderr}"
    );
    let after = timeline(&cli, &url, &id);
    assert_eq!(
        after, finished,
        "the paused worker wrote after the takeover"
    );
    on(&cli, &url, "@carol", &["audit", "verify", &id]).expect_code(0);
    // Each call completed once.
    let mut completed = std::collections::BTreeMap::new();
    for event in after.iter().filter(|e| e["type"] == "tool.completed") {
        *completed
            .entry(event["data"]["call_id"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert!(completed.values().all(|n| *n == 1), "{completed:?}");
}
