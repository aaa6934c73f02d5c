//! A fleet under fire: missions queued on one store, several `flightdeck worker` processes
//! claiming them, and a random worker SIGKILLed every few hundred milliseconds (and replaced)
//! until more than a hundred have died. At the end every mission has finished, every
//! timeline verifies, no completed call ran twice, and each published branch is what an
//! uninterrupted run publishes. On PostgreSQL (the test cluster `scripts/postgres start`
//! makes) and on SQLite (processes on one machine sharing a data directory).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)] // test code: failing loudly and saying what it did is the point

use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use flightdeck_testkit::{Cli, CliOutput, TestRepo};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");

/// Three commands, each appending to a file after a pause: a step cut off mid-way runs again
/// from the worktree as it was before it, so the file ends with each line once.
const COMMANDS: &str = r#"
[[steps]]
run = "sleep 0.3 && echo one >> notes.md"
[[steps]]
run = "sleep 0.3 && echo two >> notes.md"
[[steps]]
run = "sleep 0.3 && echo three >> notes.md"
"#;

/// A scripted agent that reads, edits and runs a command.
const AGENT: &str = r#"
goal = "Make answer() return 42."
[model]
pin = "scripted:.flightdeck/script.toml"
[[steps]]
agent = "coder"
[[steps]]
run = "sleep 0.2 && grep -c 42 src/lib.rs > count.txt"
"#;

const SCRIPT: &str = r#"
model = "sim-1"
[[turn]]
expect = "Goal: Make answer"
[[turn.call]]
tool = "read_file"
args = { path = "src/lib.rs" }

[[turn]]
expect = "41"
[[turn.call]]
tool = "edit_file"
args = { path = "src/lib.rs", old = "41", new = "42" }
[[turn.call]]
tool = "run"
args = { command = "sleep 0.3 && grep -c 42 src/lib.rs" }

[[turn]]
expect = "/exit code 0\n1/"
[[turn.call]]
tool = "finish"
args = { summary = "answer() returns 42." }
"#;

const TEMPLATES: [&str; 2] = ["commands", "agent"];

fn repo() -> TestRepo {
    let repo = TestRepo::with_files(&[
        ("README.md", "hello\n"),
        ("src/lib.rs", "pub fn answer() -> u32 { 41 }\n"),
        (
            ".flightdeck/policy.toml",
            "[defaults]\npublish = \"allow\"\n",
        ),
        (".flightdeck/missions/commands.toml", COMMANDS),
        (".flightdeck/missions/agent.toml", AGENT),
        (".flightdeck/script.toml", SCRIPT),
    ]);
    repo.commit_all("fleet");
    repo
}

/// The store the fleet shares: PostgreSQL (a fresh database) or the CLI's SQLite data
/// directory.
struct Store<'a> {
    cli: &'a Cli,
    url: Option<String>,
}

impl Store<'_> {
    fn args<'b>(&'b self, args: &[&'b str]) -> Vec<&'b str> {
        let mut full = Vec::new();
        if let Some(url) = &self.url {
            full.extend(["--database-url", url.as_str()]);
        }
        full.extend_from_slice(args);
        full
    }

    fn run(&self, args: &[&str]) -> CliOutput {
        self.cli.run(&self.args(args))
    }

    /// A worker: driving two missions at once, in a process group of its own (a SIGKILL of
    /// the group is the machine dying: the worker and all it runs). Leases of 10 s: a
    /// killed worker's missions are taken at once anyway (its holder is dead on this host),
    /// and a live one that a loaded machine slows is not taken over.
    fn worker(&self) -> Child {
        self.worker_with("2")
    }

    fn worker_with(&self, concurrency: &str) -> Child {
        let mut command = self
            .cli
            .command(&self.args(&["worker", "--concurrency", concurrency]));
        command
            .env("FLIGHTDECK_LEASE_SECONDS", "10")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        command.spawn().unwrap()
    }

    fn missions(&self) -> Vec<Value> {
        let listed = self
            .run(&["--json", "missions", "--limit", "1000"])
            .expect_code(0)
            .json();
        listed.as_array().unwrap().clone()
    }

    fn timeline(&self, id: &str) -> Vec<Value> {
        self.run(&["timeline", id, "--json"])
            .expect_code(0)
            .json_lines()
    }
}

/// A small deterministic generator (xorshift), seeded and printed so a run can be repeated.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn kill_group(child: &mut Child) {
    let group = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    let _ = child.wait();
}

/// The tree each template publishes when nothing interrupts it.
fn reference_trees(store: &Store<'_>, repo: &TestRepo) -> BTreeMap<String, String> {
    let mut trees = BTreeMap::new();
    for template in TEMPLATES {
        let out = store.run(&[
            "--json",
            "run",
            template,
            "--repo",
            repo.path().to_str().unwrap(),
        ]);
        assert_eq!(out.code(), 0, "{template}: {}", out.stderr());
        let branch = out.json()["branch"].as_str().unwrap().to_string();
        trees.insert(
            template.to_string(),
            repo.git(&["rev-parse", &format!("{branch}^{{tree}}")]),
        );
    }
    trees
}

fn chaos(store: &Store<'_>, what: &str, missions: usize, kills: usize) {
    let repo = repo();
    let expected = reference_trees(store, &repo);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("{what}: seed {seed}");
    let mut dice = Dice(seed);

    // Queued, for whichever worker claims them.
    let mut queued = BTreeMap::new();
    for i in 0..missions {
        let template = TEMPLATES[i % TEMPLATES.len()];
        let out = store.run(&[
            "--json",
            "run",
            template,
            "--queue",
            "--repo",
            repo.path().to_str().unwrap(),
        ]);
        assert_eq!(out.code(), 0, "{}", out.stderr());
        let summary = out.json();
        assert_eq!(summary["status"], "queued", "{summary:#}");
        queued.insert(
            summary["id"].as_str().unwrap().to_string(),
            template.to_string(),
        );
    }

    let mut workers: Vec<Child> = (0..4).map(|_| store.worker()).collect();
    let started = Instant::now();
    let mut killed = 0;
    while killed < kills {
        std::thread::sleep(Duration::from_millis(150 + dice.below(300)));
        let victim = dice.below(workers.len() as u64) as usize;
        kill_group(&mut workers[victim]);
        workers[victim] = store.worker();
        killed += 1;
    }
    eprintln!("{what}: {killed} workers killed in {:?}", started.elapsed());

    // The survivors finish the work.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let listed = store.missions();
        let open: Vec<&Value> = listed
            .iter()
            .filter(|m| queued.contains_key(m["id"].as_str().unwrap()))
            .filter(|m| {
                !["succeeded", "failed", "cancelled"].contains(&m["status"].as_str().unwrap())
            })
            .collect();
        if open.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {} missions never finished: {open:?}",
            open.len()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!("{what}: all finished after {:?}", started.elapsed());
    for worker in &mut workers {
        let pid = nix::unistd::Pid::from_raw(worker.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = worker.wait();
    }

    store.run(&["audit", "verify", "--all"]).expect_code(0);
    let mut interruptions = 0;
    for (id, template) in &queued {
        let events = store.timeline(id);
        let last = events.last().unwrap();
        assert_eq!(last["type"], "mission.finished", "{what}: {id}");
        assert_eq!(
            last["data"]["status"], "succeeded",
            "{what}: {id}: {:#}",
            last["data"]
        );
        // No event lost: seqs 1..n without a gap (the chain itself is verified above).
        for (i, event) in events.iter().enumerate() {
            assert_eq!(event["seq"].as_u64(), Some(i as u64 + 1), "{what}: {id}");
        }
        // No completed call ran twice: each completes once, and nothing runs it after.
        let mut completed = BTreeMap::new();
        for event in &events {
            let call = event["data"]["call_id"].as_str();
            match event["type"].as_str().unwrap() {
                "tool.completed" => {
                    *completed.entry(call.unwrap().to_string()).or_insert(0) += 1;
                }
                "tool.requested" => assert!(
                    !completed.contains_key(call.unwrap()),
                    "{what}: {id}: {} requested again after it completed",
                    call.unwrap()
                ),
                _ => {}
            }
        }
        assert!(
            completed.values().all(|n| *n == 1),
            "{what}: {id}: {completed:?}"
        );
        interruptions += events
            .iter()
            .filter(|e| e["type"] == "mission.interrupted")
            .count();
        // What it published is what an uninterrupted run publishes.
        let published = events
            .iter()
            .find(|e| e["type"] == "change.published")
            .unwrap_or_else(|| panic!("{what}: {id} published nothing"));
        let branch = published["data"]["branch"].as_str().unwrap();
        let tree = repo.git(&["rev-parse", &format!("{branch}^{{tree}}")]);
        if tree != expected[template] {
            let story: Vec<String> = events
                .iter()
                .map(|e| {
                    format!(
                        "{} {} {}",
                        e["seq"],
                        e["type"].as_str().unwrap_or(""),
                        e["data"]["call_id"].as_str().unwrap_or("")
                    )
                })
                .collect();
            panic!(
                "{what}: {id} ({template}) published another tree:\n{}\ntimeline:\n{}",
                repo.git(&["diff", &expected[template], &tree]),
                story.join("\n")
            );
        }
    }
    eprintln!("{what}: {interruptions} interruptions recorded across the missions");
    assert!(
        interruptions > 0,
        "{what}: no worker was killed while it drove a mission: the test proved nothing"
    );
}

fn fresh_database(tag: &str) -> String {
    let admin = std::env::var("FLIGHTDECK_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "this test runs against a real PostgreSQL: run scripts/test, or \
             `scripts/postgres start` and export the FLIGHTDECK_TEST_DATABASE_URL it prints"
        )
    });
    let name = format!("fd_{tag}_{}", std::process::id());
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

/// One test, the two backends one after the other: each harness loads both cores.
#[test]
fn workers_killed_at_random_lose_nothing_and_duplicate_nothing() {
    let cli = Cli::new(BIN);
    let postgres = Store {
        cli: &cli,
        url: Some(fresh_database("fleet")),
    };
    if std::env::var_os("FLIGHTDECK_FLEET_SQLITE_ONLY").is_none() {
        chaos(&postgres, "postgresql", 40, 100);
    }
    let sqlite_cli = Cli::new(BIN);
    let sqlite = Store {
        cli: &sqlite_cli,
        url: None,
    };
    chaos(&sqlite, "sqlite", 40, 100);
}

/// A worker on "another machine" (its own data directory, and the requester's clone gone)
/// fetches a mission's repository from the URL the mission recorded, and publishes there; a
/// mission started from a checkout it cannot see is reported, with what to do, and left
/// queued for a worker that can.
#[test]
fn a_worker_elsewhere_fetches_the_repository_from_the_missions_url() {
    let url = fresh_database("remote");
    let source = repo();
    let bare = tempfile::tempdir().unwrap();
    let bare_repo = bare.path().join("fleet.git");
    flightdeck_testkit::git_in(
        bare.path(),
        &[
            "clone",
            "--quiet",
            "--bare",
            source.path().to_str().unwrap(),
            "fleet.git",
        ],
    );
    let remote = format!("file://{}", bare_repo.display());
    let requester = Cli::new(BIN);
    let here = Store {
        cli: &requester,
        url: Some(url.clone()),
    };
    let fetched = here
        .run(&["--json", "run", "commands", "--remote", &remote, "--queue"])
        .expect_code(0)
        .json();
    let fetched = fetched["id"].as_str().unwrap().to_string();
    let checkout = repo();
    let stranded = here
        .run(&[
            "--json",
            "run",
            "commands",
            "--queue",
            "--repo",
            checkout.path().to_str().unwrap(),
        ])
        .expect_code(0)
        .json();
    let stranded = stranded["id"].as_str().unwrap().to_string();
    // The requester's machine is gone: its clone of the remote and its checkout with it.
    std::fs::remove_dir_all(requester.data_dir().join("repos")).unwrap();
    let moved = tempfile::tempdir().unwrap();
    std::fs::rename(checkout.path(), moved.path().join("elsewhere")).unwrap();

    let worker_cli = Cli::new(BIN);
    let elsewhere = Store {
        cli: &worker_cli,
        url: Some(url),
    };
    let out = elsewhere.run(&["--json", "worker", "--once"]);
    assert_eq!(out.code(), 0, "{}", out.stderr());
    let lines = out.json_lines();
    let of = |id: &str| {
        lines
            .iter()
            .find(|l| l["mission"] == id)
            .unwrap_or_else(|| panic!("nothing said of {id}: {lines:?}"))
            .clone()
    };
    assert_eq!(of(&fetched)["action"], "continued", "{lines:?}");
    assert_eq!(of(&fetched)["status"], "succeeded", "{lines:?}");
    let failed = of(&stranded);
    assert_eq!(failed["action"], "failed", "{lines:?}");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("is not on this machine")
            && error.contains("hint: ")
            && error.contains("--remote"),
        "{error}"
    );
    let listed = elsewhere.missions();
    let status = |id: &str| {
        listed
            .iter()
            .find(|m| m["id"] == id)
            .map(|m| m["status"].as_str().unwrap().to_string())
    };
    assert_eq!(status(&stranded).as_deref(), Some("queued"));
    // The branch is in the worker's own cache of the remote.
    let caches: Vec<_> = std::fs::read_dir(worker_cli.data_dir().join("repos"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(caches.len(), 1, "{caches:?}");
    let tree = flightdeck_testkit::git_in(
        &caches[0],
        &["rev-parse", &format!("flightdeck/{fetched}:notes.md")],
    );
    assert!(!tree.is_empty());
    assert_eq!(
        flightdeck_testkit::git_in(
            &caches[0],
            &["show", &format!("flightdeck/{fetched}:notes.md")]
        ),
        "one\ntwo\nthree"
    );
}

/// A worker stopped with SIGTERM hands its missions back: it kills what they run, records
/// each interruption as handed back and gives the lease up, and another worker resumes the
/// mission at once (the cut-off call runs again; nothing completed runs twice). A mission
/// interrupted by ctrl-c on `run` is not handed back: it waits for `resume`.
#[test]
fn a_worker_stopped_with_sigterm_hands_its_missions_back() {
    let cli = Cli::new(BIN);
    let store = Store {
        cli: &cli,
        url: Some(fresh_database("handback")),
    };
    let repo = TestRepo::with_files(&[
        ("README.md", "hello\n"),
        (
            ".flightdeck/policy.toml",
            "[defaults]\npublish = \"allow\"\n",
        ),
        (
            ".flightdeck/missions/slow.toml",
            "[[steps]]\nrun = \"sleep 3 && echo done >> notes.md\"\n",
        ),
    ]);
    repo.commit_all("slow");
    let queued = store
        .run(&[
            "--json",
            "run",
            "slow",
            "--queue",
            "--repo",
            repo.path().to_str().unwrap(),
        ])
        .expect_code(0)
        .json();
    let id = queued["id"].as_str().unwrap().to_string();
    // One mission at a time (driven in the pass itself, not on a task of its own).
    let mut first = store.worker_with("1");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !store
        .timeline(&id)
        .iter()
        .any(|e| e["type"] == "tool.requested")
    {
        assert!(
            Instant::now() < deadline,
            "the first worker never ran the step"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = nix::unistd::Pid::from_raw(first.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = first.wait().unwrap();
    assert_eq!(status.code(), Some(143), "stopped by SIGTERM: {status:?}");
    let events = store.timeline(&id);
    let interrupted = events
        .iter()
        .find(|e| e["type"] == "mission.interrupted")
        .unwrap_or_else(|| panic!("no interruption recorded: {events:#?}"));
    assert_eq!(interrupted["data"]["handed_back"], true, "{interrupted}");
    assert_eq!(interrupted["data"]["calls"].as_array().unwrap().len(), 1);

    let mut second = store.worker();
    let deadline = Instant::now() + Duration::from_secs(60);
    let finished = loop {
        let events = store.timeline(&id);
        if events.last().unwrap()["type"] == "mission.finished" {
            break events;
        }
        assert!(
            Instant::now() < deadline,
            "the second worker never finished it"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // A mission run in the foreground meanwhile is its own: the waiting worker, woken by
    // its creation, does not take it.
    let foreground = store.run(&[
        "--json",
        "run",
        "slow",
        "--repo",
        repo.path().to_str().unwrap(),
    ]);
    assert_eq!(foreground.code(), 0, "{}", foreground.stderr());
    let foreground = foreground.json();
    let foreground_events = store.timeline(foreground["id"].as_str().unwrap());
    assert!(
        !foreground_events
            .iter()
            .any(|e| e["type"] == "mission.resumed" || e["type"] == "mission.interrupted"),
        "{foreground_events:#?}"
    );
    kill_group(&mut second);
    assert_eq!(finished.last().unwrap()["data"]["status"], "succeeded");
    let resumed = finished
        .iter()
        .find(|e| e["type"] == "mission.resumed")
        .unwrap();
    assert_eq!(resumed["data"]["by"], "flightdeck-scheduler");
    let branch = format!("flightdeck/{id}");
    assert_eq!(
        repo.git(&["show", &format!("{branch}:notes.md")]),
        "done",
        "the cut-off step ran again from the worktree as it was"
    );

    // ctrl-c on `run`: recorded, not handed back; a worker leaves it to `resume`.
    let known: Vec<Value> = store.missions().iter().map(|m| m["id"].clone()).collect();
    let mut run = cli
        .command(&store.args(&[
            "--json",
            "run",
            "slow",
            "--repo",
            repo.path().to_str().unwrap(),
        ]))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        let listed = store.missions();
        let newest = listed[0]["id"].as_str().unwrap().to_string();
        if !known.contains(&listed[0]["id"])
            && store
                .timeline(&newest)
                .iter()
                .any(|e| e["type"] == "tool.requested")
        {
            break newest;
        }
        assert!(Instant::now() < deadline, "the run never started its step");
        std::thread::sleep(Duration::from_millis(50));
    };
    let pid = nix::unistd::Pid::from_raw(run.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    run.wait().unwrap();
    let out = store.run(&["--json", "worker", "--once"]);
    assert_eq!(out.code(), 0, "{}", out.stderr());
    assert!(
        !out.stdout().contains(&id),
        "a worker took a mission interrupted by ctrl-c: {}",
        out.stdout()
    );
    let events = store.timeline(&id);
    let interrupted = events
        .iter()
        .find(|e| e["type"] == "mission.interrupted")
        .unwrap();
    assert!(
        interrupted["data"].get("handed_back").is_none(),
        "{interrupted}"
    );
    assert_eq!(events.last().unwrap()["type"], "mission.interrupted");
}

/// A store of the release before claims (no typed columns, no feed, no quotas) migrates in
/// place when a command opens it to write: its missions still verify and replay, and a
/// mission parked there is claimed and continued by a worker once approved. On SQLite (a
/// data directory) and PostgreSQL.
fn migrates_in_place(store: &Store<'_>, downgrade: impl Fn()) {
    let repo = repo();
    let gated = TestRepo::with_files(&[
        ("README.md", "hello\n"),
        ("src/lib.rs", "pub fn f() {}\n"),
        (
            ".flightdeck/policy.toml",
            "[[rule]]\nid = \"owners\"\naction = \"publish\"\nchanges_any = [\"source\"]\ndecision = \"approve\"\napprovers = [\"@bob\"]\n",
        ),
        (
            ".flightdeck/missions/t.toml",
            "[[steps]]\nrun = \"echo 'pub fn g() {}' >> src/lib.rs\"\n",
        ),
    ]);
    gated.commit_all("gated");
    let done = store
        .run(&[
            "--json",
            "run",
            "commands",
            "--repo",
            repo.path().to_str().unwrap(),
        ])
        .expect_code(0)
        .json();
    let done = done["id"].as_str().unwrap().to_string();
    let parked = store.run(&[
        "--json",
        "run",
        "t",
        "--repo",
        gated.path().to_str().unwrap(),
    ]);
    assert_eq!(parked.code(), 3, "{}", parked.stderr());
    let parked = parked.json();
    let approval = parked["pending_approvals"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let parked = parked["id"].as_str().unwrap().to_string();

    downgrade();

    store.run(&["audit", "verify", "--all"]).expect_code(0);
    store
        .run(&["--as", "@bob", "approve", &approval])
        .expect_code(0);
    let out = store.run(&["--json", "worker", "--once"]);
    assert_eq!(out.code(), 0, "{}", out.stderr());
    let lines = out.json_lines();
    assert!(
        lines
            .iter()
            .any(|l| l["mission"] == parked.as_str() && l["status"] == "succeeded"),
        "{lines:?}"
    );
    let replayed = store.run(&["replay", &done]);
    assert_eq!(replayed.code(), 0, "{}", replayed.stderr());
    store.run(&["audit", "verify", "--all"]).expect_code(0);
}

#[test]
fn a_data_directory_of_the_previous_release_migrates_in_place() {
    let cli = Cli::new(BIN);
    let store = Store {
        cli: &cli,
        url: None,
    };
    let db = cli.data_dir().join("flightdeck.db");
    let sqlite = |sql: &str| {
        let out = std::process::Command::new("sqlite3")
            .arg(&db)
            .arg(sql)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    migrates_in_place(&store, || {
        // Back to the previous release's schema, as its binary left it.
        sqlite(
            "DROP INDEX missions_ready; DROP INDEX missions_deadline; DROP INDEX missions_leased; DROP INDEX missions_by_requester;
             ALTER TABLE missions DROP COLUMN requested_by; ALTER TABLE missions DROP COLUMN team;
             ALTER TABLE missions DROP COLUMN ready; ALTER TABLE missions DROP COLUMN waiting_for;
             ALTER TABLE missions DROP COLUMN next_deadline_ms;
             ALTER TABLE missions DROP COLUMN cost_usd;
             DROP TABLE feed; DROP TABLE quota_usage; DROP TABLE quota_holds;
             DELETE FROM _sqlx_migrations WHERE version >= 7;",
        );
    });
    let version: i64 = sqlite("SELECT max(version) FROM _sqlx_migrations")
        .parse()
        .unwrap();
    assert!(version >= 8, "migrated to {version}");
}

#[test]
fn a_postgresql_database_of_the_previous_release_migrates_in_place() {
    let cli = Cli::new(BIN);
    let url = fresh_database("migrate");
    let store = Store {
        cli: &cli,
        url: Some(url.clone()),
    };
    let psql = |sql: &str| {
        let out = std::process::Command::new("psql")
            .args([url.as_str(), "-qAtc", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    migrates_in_place(&store, || {
        psql(
            "DROP INDEX missions_ready; DROP INDEX missions_deadline; DROP INDEX missions_leased; DROP INDEX missions_by_requester;
             ALTER TABLE missions DROP COLUMN requested_by, DROP COLUMN team, DROP COLUMN ready,
               DROP COLUMN waiting_for, DROP COLUMN next_deadline_ms, DROP COLUMN cost_usd;
             DROP TABLE feed; DROP TABLE quota_usage; DROP TABLE quota_holds;
             DELETE FROM _sqlx_migrations WHERE version >= 3;",
        );
    });
    let version: i64 = psql("SELECT max(version) FROM _sqlx_migrations")
        .parse()
        .unwrap();
    assert!(version >= 4, "migrated to {version}");
    // The feed starts with each mission once, then every append since.
    let fed: i64 = psql("SELECT count(DISTINCT mission) FROM feed")
        .parse()
        .unwrap();
    assert_eq!(fed, 2);
}

/// A worktree a crash left half made (killed in the middle of `git worktree add`, before
/// the workspace was recorded as provisioned) is made again from scratch, never reused: a
/// worktree missing files would publish them as deleted.
#[test]
fn a_worktree_left_half_made_by_a_crash_is_made_again() {
    let cli = Cli::new(BIN);
    let store = Store {
        cli: &cli,
        url: None,
    };
    let repo = repo();
    let expected = reference_trees(&store, &repo);
    let queued = store
        .run(&[
            "--json",
            "run",
            "commands",
            "--queue",
            "--repo",
            repo.path().to_str().unwrap(),
        ])
        .expect_code(0)
        .json();
    let id = queued["id"].as_str().unwrap().to_string();
    // What the crash left: a registered worktree at the mission's path, its checkout cut
    // short.
    let path = cli.data_dir().join("workspaces").join(&id);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    repo.git(&[
        "worktree",
        "add",
        "--detach",
        "--quiet",
        path.to_str().unwrap(),
        "HEAD",
    ]);
    std::fs::remove_file(path.join("README.md")).unwrap();
    std::fs::remove_dir_all(path.join(".flightdeck")).unwrap();
    let out = store.run(&["--json", "worker", "--once"]);
    assert_eq!(out.code(), 0, "{}", out.stderr());
    let tree = repo.git(&["rev-parse", &format!("flightdeck/{id}^{{tree}}")]);
    assert_eq!(
        tree,
        expected["commands"],
        "{}",
        repo.git(&["diff", "--stat", &expected["commands"], &tree])
    );
}
