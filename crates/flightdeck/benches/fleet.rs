//! A fleet of workers (issue 17): missions completed per second with 1, 2 and 4 `flightdeck
//! worker --concurrency 1` processes sharing one store, on a short scripted mission that
//! waits on commands (two `run` steps of `sleep 0.5 && echo … >> f` in the sandbox, then
//! publish), on PostgreSQL (a fresh database per run, on the server
//! `FLIGHTDECK_TEST_DATABASE_URL` names: `scripts/postgres start` prints it) and on SQLite
//! (a fresh data directory per run, shared by the run's processes).
//!
//! A run queues N missions with `run --queue` (untimed), then starts the workers and
//! measures from their start to the last mission finished, as the bench sees it through the
//! store's change feed (no polling of the CLI). Beside the rate it records where the time
//! went: the CPU time of the worker processes and everything they ran (their children, once
//! reaped: sandboxes, git, the commands), the PostgreSQL server's processes' CPU time over
//! the run (read from `/proc` for the backends `pg_stat_activity` lists), how busy the
//! machine's cores were, how long after the workers started the first missions started, and
//! how long a mission took from its first step to its end.
//!
//! `cargo bench -p flightdeck --bench fleet`: 3 rounds, each round 1, 2 and 4 workers on
//! each backend, 16 missions each; medians and the scaling ratios (per round, and of the
//! medians). Outside `cargo bench` (no `--bench` argument, e.g. `cargo test --all-targets`)
//! one short round of 2 missions per fleet, which checks only that every mission finished.
//!
//! To look further (where the machine runs out), `FLIGHTDECK_FLEET_WORKERS=1,8,16` sets
//! the fleets' sizes (ratios are to the first), `FLIGHTDECK_FLEET_MISSIONS` the missions
//! per run and `FLIGHTDECK_FLEET_ROUNDS` the rounds.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)] // a bench: failing loudly is the point

use std::collections::BTreeSet;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime};

use flightdeck_store::EventStore;
use flightdeck_testkit::{Cli, TestRepo};

const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");

/// The server the PostgreSQL runs make their databases on.
const DATABASE_URL_VAR: &str = "FLIGHTDECK_TEST_DATABASE_URL";

/// A short mission that waits on commands: two steps of half a second each, in the
/// sandbox (`runtime = "local"`, the default), then a published branch.
const MISSION: &str = r#"goal = "Wait on two commands."
[[steps]]
run = "sleep 0.5 && echo one >> f"
[[steps]]
run = "sleep 0.5 && echo two >> f"
"#;

/// The fleets' sizes unless `FLIGHTDECK_FLEET_WORKERS` says otherwise.
const WORKERS: [usize; 3] = [1, 2, 4];

/// A setting from the environment, or `default`.
fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text}: not a number")),
        Err(_) => default,
    }
}

/// `/proc`'s clock ticks per second (USER_HZ, 100 on Linux whatever the kernel's HZ).
const TICKS_PER_S: f64 = 100.0;

fn repo() -> TestRepo {
    TestRepo::with_files(&[
        ("README.md", "fleet bench\n"),
        (
            ".flightdeck/policy.toml",
            "[defaults]\npublish = \"allow\"\n",
        ),
        (".flightdeck/missions/wait.toml", MISSION),
    ])
}

/// The PostgreSQL server's URL. Not set is a failure, never a skip: a benchmark that
/// passes without PostgreSQL would say nothing about it.
fn server_url() -> String {
    match std::env::var(DATABASE_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "{DATABASE_URL_VAR} is not set: this benchmark also runs against a real \
             PostgreSQL server: run `scripts/postgres start` and export the variable it prints \
             (e.g. `export \"$(scripts/postgres start)\"`), then `scripts/postgres clean` after"
        ),
    }
}

fn psql(url: &str, sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args([url, "-qAtc", sql])
        .output()
        .expect("psql (Debian's postgresql-client) runs");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A database made for one run, dropped with this.
struct Database {
    server: String,
    name: String,
    url: String,
}

impl Database {
    fn create(server: &str, tag: &str) -> Database {
        let name = format!("fd_fleet_{}_{tag}", std::process::id());
        psql(server, &format!("CREATE DATABASE {name}"));
        let (root, _) = server.split_once('?').map_or((server, ""), |(a, b)| (a, b));
        let (root, _) = root.rsplit_once('/').unwrap();
        Database {
            server: server.to_string(),
            url: format!("{root}/{name}"),
            name,
        }
    }

    /// CPU seconds the server's processes (those `pg_stat_activity` lists: backends and
    /// the background processes) have used so far, by pid.
    fn cpu_by_pid(&self) -> Vec<(u32, f64)> {
        psql(&self.server, "SELECT pid FROM pg_stat_activity")
            .lines()
            .filter_map(|l| l.trim().parse::<u32>().ok())
            .filter_map(|pid| process_cpu(pid).map(|(own, _)| (pid, own)))
            .collect()
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args([
                self.server.as_str(),
                "-qAtc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

/// A process's CPU seconds from `/proc/<pid>/stat`: its own (utime + stime) and its
/// reaped children's (cutime + cstime).
fn process_cpu(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<f64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    // utime, stime, cutime, cstime are fields 14-17 of stat(5); `rest` starts at field 3.
    Some((
        (fields[11] + fields[12]) / TICKS_PER_S,
        (fields[13] + fields[14]) / TICKS_PER_S,
    ))
}

/// The machine's CPU counters from `/proc/stat`: (busy, total) ticks over all cores.
fn machine_ticks() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let cpu: Vec<f64> = stat
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap())
        .collect();
    let total: f64 = cpu.iter().take(8).sum();
    // idle and iowait are not busy.
    (total - cpu[3] - cpu[4], total)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// One fleet's store: a fresh PostgreSQL database or a fresh SQLite data directory, with
/// a fresh repository (so published branches do not pile up from run to run).
struct Fleet {
    cli: Cli,
    database: Option<Database>,
    repo: TestRepo,
    logs: tempfile::TempDir,
}

impl Fleet {
    fn new(postgres: Option<&str>, tag: &str) -> Fleet {
        Fleet {
            cli: Cli::new(BIN),
            database: postgres.map(|server| Database::create(server, tag)),
            repo: repo(),
            logs: tempfile::tempdir().unwrap(),
        }
    }

    fn url(&self) -> String {
        match &self.database {
            Some(db) => db.url.clone(),
            None => format!(
                "sqlite://{}?mode=ro",
                self.cli.data_dir().join("flightdeck.db").display()
            ),
        }
    }

    fn args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut full = Vec::new();
        if let Some(db) = &self.database {
            full.extend(["--database-url", db.url.as_str()]);
        }
        full.extend_from_slice(args);
        full
    }

    fn queue(&self, missions: usize) -> BTreeSet<String> {
        (0..missions)
            .map(|_| {
                let repo = self.repo.path().to_str().unwrap();
                let out = self
                    .cli
                    .run(&self.args(&["--json", "run", "wait", "--queue", "--repo", repo]));
                assert_eq!(out.code(), 0, "run --queue: {}", out.stderr());
                let summary = out.json();
                assert_eq!(summary["status"], "queued", "{summary:#}");
                summary["id"].as_str().unwrap().to_string()
            })
            .collect()
    }

    /// A worker driving one mission at a time, in a process group of its own; its stderr
    /// in a log file (printed if the run fails).
    fn worker(&self, i: usize) -> Child {
        let mut command = self
            .cli
            .command(&self.args(&["worker", "--concurrency", "1"]));
        let log = std::fs::File::create(self.logs.path().join(format!("worker-{i}.log"))).unwrap();
        command.stdout(Stdio::null()).stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        command.spawn().unwrap()
    }

    fn worker_logs(&self) -> String {
        let mut text = String::new();
        for entry in std::fs::read_dir(self.logs.path()).unwrap() {
            let path = entry.unwrap().path();
            let log = std::fs::read_to_string(&path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            text.push_str(&format!("--- {}\n", path.display()));
            for line in tail.into_iter().rev() {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }
}

/// Stops the workers as a deployment would (SIGTERM: they hand back what they drive, here
/// nothing), and waits for them, so their CPU time is counted in this process's children's.
fn stop(workers: Vec<Child>) {
    for worker in &workers {
        let pid = nix::unistd::Pid::from_raw(worker.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    for mut worker in workers {
        loop {
            if worker.try_wait().unwrap().is_some() {
                break;
            }
            if Instant::now() > deadline {
                let group = nix::unistd::Pid::from_raw(worker.id() as i32);
                let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
                let _ = worker.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// What one fleet run measured.
struct Sample {
    /// From starting the workers to the last mission finished, in s.
    elapsed: f64,
    /// Missions finished per second.
    rate: f64,
    /// CPU s of the workers and everything they ran.
    fleet_cpu: f64,
    /// CPU s of the PostgreSQL server's processes over the run.
    server_cpu: Option<f64>,
    /// Share of all the machine's cores busy over the run (anyone's work).
    machine_busy: f64,
    /// ms from starting the workers to the first mission started, and to the k-th
    /// (k = the number of workers: all of them had work).
    first_start_ms: f64,
    kth_start_ms: f64,
    /// Median s from a mission's first step (its workspace provisioning) to its end.
    mission_s: f64,
    /// Median ms between a worker finishing a mission and starting its next (1 worker).
    gap_ms: Option<f64>,
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn fleet_run(
    runtime: &tokio::runtime::Runtime,
    postgres: Option<&str>,
    tag: &str,
    workers: usize,
    missions: usize,
) -> Sample {
    let fleet = Fleet::new(postgres, tag);
    let ids = fleet.queue(missions);
    let store: std::sync::Arc<dyn EventStore> = runtime
        .block_on(flightdeck_store::open(&fleet.url()))
        .unwrap();
    let mut feed = runtime.block_on(store.subscribe()).unwrap();

    let server_before = fleet.database.as_ref().map(Database::cpu_by_pid);
    let (_, children_before) = process_cpu(std::process::id()).unwrap();
    let machine_before = machine_ticks();
    let started_ms = now_ms();
    let started = Instant::now();
    let children: Vec<Child> = (0..workers).map(|i| fleet.worker(i)).collect();

    // Wait on the store: woken by its change feed, a slow look now and then as a fallback.
    let finished = runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let index = store.mission_index(u32::MAX).await.unwrap();
            let done = index
                .iter()
                .filter(|m| ids.contains(&m.id))
                .filter(|m| ["succeeded", "failed", "cancelled"].contains(&m.status.as_str()))
                .count();
            if done == ids.len() {
                return Some(started.elapsed());
            }
            if Instant::now() > deadline {
                return None;
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), feed.changed()).await;
        }
    });
    let machine_after = machine_ticks();
    let server_cpu = fleet.database.as_ref().map(|db| {
        let before = server_before.unwrap();
        db.cpu_by_pid()
            .into_iter()
            .map(|(pid, cpu)| {
                let was = before.iter().find(|(p, _)| *p == pid).map_or(0.0, |b| b.1);
                cpu - was
            })
            .sum::<f64>()
    });
    stop(children);
    let (_, children_after) = process_cpu(std::process::id()).unwrap();
    let Some(elapsed) = finished else {
        panic!(
            "{tag}: the missions did not all finish in 10 minutes\n{}",
            fleet.worker_logs()
        );
    };

    // Each mission: succeeded; when it started (its first event after its creation) and
    // ended (`mission.finished`), on the clock its events were stamped with.
    let mut spans = Vec::new();
    for id in &ids {
        let events = runtime.block_on(store.events(id, 0)).unwrap();
        let last = events.last().unwrap();
        assert_eq!(last.event_type, "mission.finished", "{tag}: {id}");
        assert_eq!(
            last.data["status"],
            "succeeded",
            "{tag}: {id}: {}\n{}",
            last.data,
            fleet.worker_logs()
        );
        spans.push((events[1].at_millis(), last.at_millis()));
    }
    spans.sort_unstable();
    let first_start_ms = (spans[0].0 - started_ms) as f64;
    let kth_start_ms = (spans[workers.min(spans.len()) - 1].0 - started_ms) as f64;
    let mission_s = median(spans.iter().map(|(a, b)| (b - a) as f64 / 1000.0).collect());
    // With one worker the missions run one after the other: the gap is what it takes to
    // claim and load the next.
    let gap_ms = (workers == 1 && spans.len() > 1)
        .then(|| median(spans.windows(2).map(|w| (w[1].0 - w[0].1) as f64).collect()));
    drop(store);
    let elapsed = elapsed.as_secs_f64();
    Sample {
        elapsed,
        rate: missions as f64 / elapsed,
        fleet_cpu: children_after - children_before,
        server_cpu,
        machine_busy: (machine_after.0 - machine_before.0) / (machine_after.1 - machine_before.1),
        first_start_ms,
        kth_start_ms,
        mission_s,
        gap_ms,
    }
}

fn print_sample(backend: &str, workers: usize, missions: usize, s: &Sample) {
    let server = s
        .server_cpu
        .map_or(String::new(), |cpu| format!(", server CPU {cpu:.1} s"));
    let gap = s.gap_ms.map_or(String::new(), |gap| {
        format!(", gap between missions {gap:.0} ms")
    });
    println!(
        "  {backend:<10} {workers} worker(s): {missions} missions in {:.2} s = {:.2}/s; \
         fleet CPU {:.1} s ({:.2} s/mission){server}; machine busy {:.0}% of {} cores; \
         first start {:.0} ms, all {workers} busy by {:.0} ms; a mission {:.2} s{gap}",
        s.elapsed,
        s.rate,
        s.fleet_cpu,
        s.fleet_cpu / missions as f64,
        s.machine_busy * 100.0,
        cores(),
        s.first_start_ms,
        s.kth_start_ms,
        s.mission_s,
    );
}

/// The median (min–max) of a list.
fn spread(samples: &[f64], digits: usize) -> String {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    format!(
        "{:.digits$} ({:.digits$}–{:.digits$})",
        sorted[sorted.len() / 2],
        sorted[0],
        sorted[sorted.len() - 1]
    )
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let (rounds, missions) = if benching { (3, 16) } else { (1, 2) };
    let rounds = setting("FLIGHTDECK_FLEET_ROUNDS", rounds);
    let missions = setting("FLIGHTDECK_FLEET_MISSIONS", missions);
    let sizes: Vec<usize> = match std::env::var("FLIGHTDECK_FLEET_WORKERS") {
        Ok(list) => list
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .expect("FLIGHTDECK_FLEET_WORKERS: numbers, e.g. 1,8")
            })
            .collect(),
        Err(_) => WORKERS.to_vec(),
    };
    let server = server_url();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "flightdeck fleet benchmark: {missions} missions (2 steps of `sleep 0.5`, sandboxed, \
         then publish) per run, `worker --concurrency 1` processes; {rounds} round(s); \
         {} cores",
        cores()
    );
    let backends: [(&str, Option<&str>); 2] = [("postgresql", Some(&server)), ("sqlite", None)];
    // samples[backend][workers index] = one per round
    let mut samples: Vec<Vec<Vec<Sample>>> = backends
        .iter()
        .map(|_| sizes.iter().map(|_| Vec::new()).collect())
        .collect();
    // Each round measures every fleet one after the other, so that a round's ratios
    // compare runs minutes apart at most (this machine's speed drifts).
    for round in 0..rounds {
        println!("round {}", round + 1);
        for (b, (backend, postgres)) in backends.iter().enumerate() {
            for (w, &workers) in sizes.iter().enumerate() {
                let tag = format!("{round}_{b}_{workers}");
                let sample = fleet_run(&runtime, *postgres, &tag, workers, missions);
                print_sample(backend, workers, missions, &sample);
                samples[b][w].push(sample);
            }
        }
    }

    println!("summary: median (min–max) over {rounds} round(s)");
    for (b, (backend, _)) in backends.iter().enumerate() {
        let rates: Vec<Vec<f64>> = samples[b]
            .iter()
            .map(|runs| runs.iter().map(|s| s.rate).collect())
            .collect();
        for (w, &workers) in sizes.iter().enumerate() {
            let runs = &samples[b][w];
            let cpu: Vec<f64> = runs.iter().map(|s| s.fleet_cpu / missions as f64).collect();
            let busy: Vec<f64> = runs.iter().map(|s| s.machine_busy * 100.0).collect();
            let mission: Vec<f64> = runs.iter().map(|s| s.mission_s).collect();
            println!(
                "  {backend:<10} {workers} worker(s): {} missions/s; fleet CPU {} s/mission; \
                 machine busy {} %; a mission {} s",
                spread(&rates[w], 2),
                spread(&cpu, 2),
                spread(&busy, 0),
                spread(&mission, 2),
            );
        }
        for (w, &workers) in sizes.iter().enumerate().skip(1) {
            let per_round: Vec<f64> = rates[w]
                .iter()
                .zip(&rates[0])
                .map(|(n, one)| n / one)
                .collect();
            println!(
                "  {backend:<10} {workers} workers / {}: {:.2}x (medians); per round {}",
                sizes[0],
                median(rates[w].clone()) / median(rates[0].clone()),
                spread(&per_round, 2),
            );
        }
    }
}
