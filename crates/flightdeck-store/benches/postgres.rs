//! PostgreSQL store benchmark (a bench binary; run with
//! `cargo bench -p flightdeck-store --bench postgres`).
//!
//! Measures [`PgStore`] on a real PostgreSQL server (`FLIGHTDECK_TEST_DATABASE_URL`, a
//! superuser on a throwaway cluster: `scripts/postgres start` makes one and prints the
//! variable), in a database made for the run and dropped after it:
//! 1. durable single appends per second, one appender awaiting each append of one event
//!    (one transaction, so one commit and one WAL flush, per event);
//! 2. durable appends per second with many missions appending at once, each appender
//!    sequential on a mission of its own, against (1) in the same run: what PostgreSQL's own
//!    group commit could batch (but each append's `pg_notify` serialises the commits: see
//!    docs/benchmarks.md). On one store (one process, whose pool has 8 connections), and
//!    with the appenders spread over 8 stores (as 8 processes would be);
//! 3. claim latency: `claim_runnable` handing out one mission (a committed write: a new
//!    holding at a new epoch) among 1,000 missions of which 100 are ready, the ready ones
//!    spread among the others in the order claims look at them, and some of them held by
//!    earlier claims (as other workers would hold them); measured first, while the database
//!    holds those missions only;
//! 4. feed latency: a second store on the same database (as another process would have)
//!    waits on its change feed (`LISTEN`/`NOTIFY`, no polling); from the start of an append
//!    through the first store to the second store having read the new event.
//!
//! Throughputs run several times (median, min and max are printed); latencies print the
//! median, p99 and max of all samples. Outside `cargo bench` (which passes `--bench`), e.g.
//! under `cargo test --all-targets`, it makes a short run only, to prove the benchmark still
//! works.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flightdeck_store::{
    AppendRequest, ClaimRequest, EventStore, NewEvent, PgStore, Projection, ProjectionColumns,
};
use serde_json::json;
use sqlx::Connection;

/// The server the benchmark makes its database on.
const DATABASE_URL_VAR: &str = "FLIGHTDECK_TEST_DATABASE_URL";

fn request(mission: &str, expected_seq: u64, count: u64) -> AppendRequest {
    AppendRequest {
        mission: mission.to_string(),
        expected_seq,
        events: (0..count)
            .map(|i| NewEvent {
                at_ms: 1_795_000_000_000 + (expected_seq + i) as i64,
                event_type: "tool.completed".into(),
                data: json!({"call_id": format!("c-{}", expected_seq + i), "ok": true, "exit_code": 0,
                    "output": "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
                    "duration_ms": 12}),
            })
            .collect(),
        projection: Projection {
            status: "running".into(),
            template: "bench".into(),
            summary: json!({"id": mission, "status": "running"}),
            items: Vec::new(),
            columns: ProjectionColumns::default(),
        },
        consumes: Vec::new(),
        fence: None,
    }
}

fn stats(mut samples: Vec<f64>) -> (f64, f64, f64) {
    samples.sort_by(|a, b| a.total_cmp(b));
    (
        samples[samples.len() / 2],
        samples[0],
        samples[samples.len() - 1],
    )
}

fn report(name: &str, unit: &str, samples: Vec<f64>) {
    let (median, min, max) = stats(samples);
    println!("{name:<62} median {median:>10.1} {unit}  (min {min:.1}, max {max:.1})");
}

/// Median, p99 and max of latencies in ms.
fn report_latency(name: &str, mut samples: Vec<f64>) {
    samples.sort_by(|a, b| a.total_cmp(b));
    let n = samples.len();
    let p99 = samples[((n * 99).div_ceil(100)).max(1) - 1];
    println!(
        "{name:<62} median {:>8.2} ms  p99 {p99:.2} ms  max {:.2} ms  ({n} samples)",
        samples[n / 2],
        samples[n - 1],
    );
}

/// The server's URL. Not set is a failure, never a skip: a benchmark that passes without
/// PostgreSQL would say nothing about it.
fn server_url() -> String {
    match std::env::var(DATABASE_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "{DATABASE_URL_VAR} is not set: this benchmark runs against a real PostgreSQL \
             server: run `scripts/postgres start` and export the variable it prints \
             (e.g. `export \"$(scripts/postgres start)\"`), then `scripts/postgres clean` after"
        ),
    }
}

/// A database made on the server for this run, dropped (best effort) with this.
struct Database {
    server: String,
    name: String,
    /// `server` with `name` as its database.
    url: String,
}

impl Database {
    async fn create(server: &str) -> Database {
        let name = format!("fd_bench_{}", random_hex());
        let mut conn = sqlx::postgres::PgConnection::connect(server)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {server} ({DATABASE_URL_VAR}): {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("cannot create database {name} on {server}: {e}"));
        let _ = conn.close().await;
        Database {
            server: server.to_string(),
            url: with_database(server, &name),
            name,
        }
    }

    /// What the server is and how it commits, for the header.
    async fn describe(&self) -> String {
        let mut conn = sqlx::postgres::PgConnection::connect(&self.url)
            .await
            .unwrap();
        let mut parts = Vec::new();
        for setting in [
            "server_version",
            "fsync",
            "synchronous_commit",
            "wal_sync_method",
            "commit_delay",
        ] {
            let value: String = sqlx::query_scalar(&format!("SHOW {setting}"))
                .fetch_one(&mut conn)
                .await
                .unwrap();
            parts.push(format!("{setting}={value}"));
        }
        let _ = conn.close().await;
        parts.join(", ")
    }
}

impl Drop for Database {
    /// On a thread of its own, so that it works inside and outside a runtime alike;
    /// `WITH (FORCE)` ends the sessions of stores still open.
    fn drop(&mut self) {
        let server = self.server.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropping = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if let Ok(mut conn) = sqlx::postgres::PgConnection::connect(&server).await {
                    let _ = sqlx::query(&sql).execute(&mut conn).await;
                    let _ = conn.close().await;
                }
            });
        });
        let _ = dropping.join();
    }
}

/// `url` with its database (the path) replaced by `name`; the query, if any, kept.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_at = base.find("://").map_or(0, |i| i + 3);
    let root = match base[authority_at..].find('/') {
        Some(slash) => &base[..authority_at + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{root}/{name}?{query}"),
        None => format!("{root}/{name}"),
    }
}

/// 64 random bits in hex (the standard library's hasher keys are seeded from the OS's
/// randomness; the clock and the process are mixed in as well).
fn random_hex() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:016x}", hasher.finish())
}

/// `n` single-event appends to a new mission, each awaited before the next. Returns the
/// appends per second, and each append's ms.
async fn sequential_appends(store: &PgStore, run: usize, n: u64) -> (f64, Vec<f64>) {
    let mission = format!("m-seq-{run}");
    let mut latencies = Vec::new();
    let start = Instant::now();
    for seq in 0..n {
        let one = Instant::now();
        store.append(request(&mission, seq, 1)).await.unwrap();
        latencies.push(one.elapsed().as_secs_f64() * 1000.0);
    }
    (n as f64 / start.elapsed().as_secs_f64(), latencies)
}

/// `missions` appenders at once, appender `m` on `stores[m % stores.len()]`, each appending
/// `per_mission` single events to a mission of its own, one after the other.
async fn concurrent_appends(
    stores: &[Arc<PgStore>],
    label: &str,
    missions: usize,
    per_mission: u64,
) -> f64 {
    let start = Instant::now();
    let tasks: Vec<_> = (0..missions)
        .map(|m| {
            let store = stores[m % stores.len()].clone();
            let mission = format!("m-conc-{label}-{m}");
            tokio::spawn(async move {
                for seq in 0..per_mission {
                    store.append(request(&mission, seq, 1)).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (missions as u64 * per_mission) as f64 / start.elapsed().as_secs_f64()
}

/// How many missions the claims choose among, and how many of them are ready.
const CLAIM_MISSIONS: usize = 1_000;
const CLAIM_READY: usize = 100;
/// Claims in a row that keep their leases (so the later ones of a batch find the earlier
/// ones' missions held, as other workers' would be) before the clock moves past them all.
const CLAIM_BATCH: u64 = 50;

/// `CLAIM_MISSIONS` new missions, one event each, created in the order claims look at them
/// (the longest waiting first); one in ten is ready (queued), the others finished. Returns
/// the ready ones.
async fn claimable_missions(store: &PgStore) -> std::collections::HashSet<String> {
    let mut ready = std::collections::HashSet::new();
    for i in 0..CLAIM_MISSIONS {
        let mission = format!("m-claim-{i:04}");
        let mut append = request(&mission, 0, 1);
        append.events[0].at_ms = 1_795_000_000_000 + i as i64;
        let is_ready = i % (CLAIM_MISSIONS / CLAIM_READY) == 0;
        append.projection.status = if is_ready { "queued" } else { "succeeded" }.into();
        append.projection.columns.ready = is_ready;
        store.append(append).await.unwrap();
        if is_ready {
            ready.insert(mission);
        }
    }
    ready
}

/// `claims` claims of one mission each (`limit` 1) by two owners in turn, each lease of
/// 100 s, in batches of [`CLAIM_BATCH`] claims 1 ms apart on the lease clock; the clock
/// moves 1,000 s between batches, so a batch's first claim finds every earlier lease run
/// out. Returns each claim's ms.
async fn claim_latency(
    store: &PgStore,
    ready: &std::collections::HashSet<String>,
    claims: std::ops::Range<u64>,
) -> Vec<f64> {
    let mut samples = Vec::new();
    let mut epochs = std::collections::HashMap::new();
    for i in claims {
        let batch = i / CLAIM_BATCH;
        let owner = format!("worker-{}", i % 2);
        let now_ms = 1_800_000_000_000 + batch as i64 * 1_000_000 + (i % CLAIM_BATCH) as i64;
        let start = Instant::now();
        let claimed = store
            .claim_runnable(ClaimRequest {
                owner: owner.clone(),
                now_ms,
                ttl_ms: 100_000,
                limit: 1,
                steal_from: Vec::new(),
                skip: Vec::new(),
            })
            .await
            .unwrap();
        samples.push(start.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(claimed.len(), 1, "one of the ready missions is free");
        let claim = &claimed[0];
        assert!(
            ready.contains(&claim.mission),
            "{} is not ready",
            claim.mission
        );
        assert_eq!(claim.lease.owner, owner);
        let last = epochs.insert(claim.mission.clone(), claim.lease.epoch);
        assert!(
            last.is_none_or(|last| claim.lease.epoch > last),
            "each claim is a new holding"
        );
    }
    samples
}

/// Appends `n` single events, one every few ms, through `writer` while `follower` (another
/// store on the same database, woken only by its change feed) reads each as soon as it can.
/// Returns, per append, the ms from the append's start (which includes its commit) to the
/// follower having read the event, and from the append's return.
async fn feed_latency(writer: &PgStore, follower: PgStore, n: u64) -> (Vec<f64>, Vec<f64>) {
    let mission = "m-feed";
    writer.append(request(mission, 0, 1)).await.unwrap();
    let mut feed = follower.subscribe().await.unwrap();
    let seen: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; n as usize + 1]));
    let follow = {
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut last = 1;
            while last <= n {
                feed.changed().await.unwrap();
                let events = follower.events(mission, last).await.unwrap();
                let now = Instant::now();
                for event in events {
                    seen.lock().unwrap()[(event.seq - 1) as usize] = Some(now);
                    last = event.seq;
                }
            }
        })
    };
    let mut times = Vec::new();
    for i in 1..=n {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let start = Instant::now();
        writer.append(request(mission, i, 1)).await.unwrap();
        times.push((start, Instant::now()));
    }
    tokio::time::timeout(Duration::from_secs(60), follow)
        .await
        .expect("the follower missed appends")
        .unwrap();
    let seen = seen.lock().unwrap();
    let mut after_start = Vec::new();
    let mut after_return = Vec::new();
    for (i, (start, returned)) in times.into_iter().enumerate() {
        let at = seen[i + 1].expect("seen");
        let ms = |from: Instant| at.saturating_duration_since(from).as_secs_f64() * 1000.0;
        after_start.push(ms(start));
        after_return.push(ms(returned));
    }
    (after_start, after_return)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let (runs, seq_n, total_concurrent, claims_per_run, feed_n) = if quick {
        (1, 20, 64, 20, 5)
    } else {
        (5, 300, 2_560, 200, 500)
    };
    let database = Database::create(&server_url()).await;
    let store = Arc::new(PgStore::open(&database.url).await.unwrap());
    println!(
        "flightdeck store benchmark: PostgreSQL ({}), {runs} runs each",
        database.describe().await
    );

    // Claims first, while the database holds the claimable missions and nothing else (the
    // appends below add missions, none of them ready); their appends open the pool's
    // connections before anything is timed.
    let ready = claimable_missions(&store).await;
    let mut claim_ms = Vec::new();
    for run in 0..runs {
        let first = run as u64 * claims_per_run;
        claim_ms.extend(claim_latency(&store, &ready, first..first + claims_per_run).await);
    }

    // Opens the other pools' connections before anything is timed.
    let mut others = vec![store.clone()];
    for _ in 1..8 {
        others.push(Arc::new(PgStore::open(&database.url).await.unwrap()));
    }
    concurrent_appends(&others, "warm", 64, 2).await;

    // Each run measures every case one after the other, so that each run's ratios compare
    // measurements taken within seconds of each other (this machine's disk and cores are
    // shared, and how fast they are drifts over minutes).
    let cases: [(&str, &[Arc<PgStore>], usize); 4] = [
        ("one store", std::slice::from_ref(&store), 8),
        ("one store", std::slice::from_ref(&store), 32),
        ("one store", std::slice::from_ref(&store), 64),
        ("8 stores", &others, 64),
    ];
    let mut sequential = Vec::new();
    let mut append_ms = Vec::new();
    let mut concurrent = vec![Vec::new(); cases.len()];
    let mut ratios = vec![Vec::new(); cases.len()];
    for run in 0..runs {
        let (rate, latencies) = sequential_appends(&store, run, seq_n).await;
        sequential.push(rate);
        append_ms.extend(latencies);
        for (i, (_, stores, missions)) in cases.iter().enumerate() {
            let per_mission = (total_concurrent / *missions as u64).max(1);
            let label = format!("{i}-{run}");
            let concurrent_rate = concurrent_appends(stores, &label, *missions, per_mission).await;
            concurrent[i].push(concurrent_rate);
            ratios[i].push(concurrent_rate / rate);
        }
    }

    report(
        "1. durable single appends, one appender (/s)",
        "/s",
        sequential,
    );
    report_latency("   each append", append_ms);
    for (i, (stores_label, _, missions)) in cases.iter().enumerate() {
        report(
            &format!("2. durable appends, {missions} missions at once, {stores_label} (/s)"),
            "/s",
            concurrent[i].clone(),
        );
        let (median, min, max) = stats(ratios[i].clone());
        println!(
            "   over one appender in the same run: {median:.1}x (min {min:.1}x, max {max:.1}x)"
        );
    }
    drop(others);
    report_latency(
        &format!("3. claim 1 of {CLAIM_READY} ready among {CLAIM_MISSIONS} (claim_runnable)"),
        claim_ms,
    );

    let follower = PgStore::open(&database.url).await.unwrap();
    let (after_start, after_return) = feed_latency(&store, follower, feed_n).await;
    report_latency(
        &format!("4. another store reads an append, from its start ({feed_n})"),
        after_start,
    );
    report_latency("   ... from the append's return", after_return);
    drop(store);
    drop(database);
}
