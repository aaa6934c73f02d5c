//! Store benchmark (a bench binary; run with `cargo bench -p flightdeck-store --bench store`).
//!
//! Measures, on a real file with `synchronous = FULL`:
//! 1. durable single appends per second, one appender awaiting each append (one commit, so
//!    one fsync, per event: the baseline group commit must beat);
//! 2. durable appends per second with many missions appending at once (group commit);
//! 3. reading a 100,000-event timeline, and verifying its hash chain;
//! 5. how soon another store on the same file (as another process would) sees an append:
//!    a follower waits on its change feed (no polling) and reads what is new;
//! 6. claim latency: `claim_runnable` handing out one mission (a committed write through the
//!    writer: a new holding at a new epoch) among 1,000 missions of which 100 are ready, on a
//!    file of its own holding those missions only (the same shape as the PostgreSQL bench's
//!    claims: see `benches/postgres.rs`).
//!
//! Each measurement runs several times; the median, min and max are printed. Outside
//! `cargo bench` (which passes `--bench`), e.g. under `cargo test --all-targets`, it makes a
//! short run only, to prove the benchmark still works.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flightdeck_store::{
    AppendRequest, ClaimRequest, EventStore, NewEvent, Projection, ProjectionColumns, SqliteStore,
};
use serde_json::json;

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
    println!("{name:<58} median {median:>12.1} {unit}  (min {min:.1}, max {max:.1})");
}

async fn sequential_appends(store: &SqliteStore, run: usize, n: u64) -> f64 {
    let mission = format!("m-seq-{run}");
    let start = Instant::now();
    for seq in 0..n {
        store.append(request(&mission, seq, 1)).await.unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn concurrent_appends(
    store: Arc<SqliteStore>,
    run: usize,
    missions: usize,
    per_mission: u64,
) -> f64 {
    let start = Instant::now();
    let tasks: Vec<_> = (0..missions)
        .map(|m| {
            let store = store.clone();
            tokio::spawn(async move {
                let mission = format!("m-conc-{run}-{m}");
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

/// Appends `n` single events, one every few ms, while a follower (a read-only store on the
/// same file, woken only by its change feed) reads each as soon as it can. Returns, per
/// append, the ms from the append's return to the follower having read the event, and from
/// the append's start (which includes its fsync).
async fn feed_latency(path: &std::path::Path, n: u64) -> (Vec<f64>, Vec<f64>) {
    let writer = SqliteStore::open(path).await.unwrap();
    let mission = "m-feed";
    writer.append(request(mission, 0, 1)).await.unwrap();
    let follower = SqliteStore::open_read_only(path).await.unwrap();
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
    let mut after_return = Vec::new();
    let mut after_start = Vec::new();
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
    for (i, (start, returned)) in times.into_iter().enumerate() {
        let at = seen[i + 1].expect("seen");
        let ms = |from: Instant| at.saturating_duration_since(from).as_secs_f64() * 1000.0;
        after_return.push(ms(returned));
        after_start.push(ms(start));
    }
    (after_return, after_start)
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
async fn claimable_missions(store: &SqliteStore) -> std::collections::HashSet<String> {
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
    store: &SqliteStore,
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

/// Median, p99 and max of latencies in ms.
fn report_latency(name: &str, mut samples: Vec<f64>) {
    samples.sort_by(|a, b| a.total_cmp(b));
    let n = samples.len();
    let p99 = samples[((n * 99).div_ceil(100)).max(1) - 1];
    println!(
        "{name:<58} median {:>8.2} ms  p99 {p99:.2} ms  max {:.2} ms  ({n} samples)",
        samples[n / 2],
        samples[n - 1],
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let (runs, seq_n, missions, per_mission, big) = if quick {
        (1, 20, 8, 5, 2_000)
    } else {
        (5, 300, 64, 40, 100_000)
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteStore::open(&dir.path().join("bench.db"))
            .await
            .unwrap(),
    );
    println!("flightdeck store benchmark: SQLite WAL, synchronous=FULL, {runs} runs each");

    let mut samples = Vec::new();
    for run in 0..runs {
        samples.push(sequential_appends(&store, run, seq_n).await);
    }
    let sequential_median = stats(samples.clone()).0;
    report(
        "1. durable single appends, one appender (appends/s)",
        "/s",
        samples,
    );

    let mut samples = Vec::new();
    for run in 0..runs {
        samples.push(concurrent_appends(store.clone(), run, missions, per_mission).await);
    }
    let concurrent_median = stats(samples.clone()).0;
    report(
        &format!("2. durable appends, {missions} missions at once (appends/s)"),
        "/s",
        samples,
    );
    println!(
        "   group commit speed-up over one commit per event: {:.1}x",
        concurrent_median / sequential_median
    );

    // A 100k-event timeline, written in batches.
    let mission = "m-big";
    let mut seq = 0;
    while seq < big {
        let n = 1_000.min(big - seq);
        store.append(request(mission, seq, n)).await.unwrap();
        seq += n;
    }
    let mut read = Vec::new();
    let mut verify = Vec::new();
    for _ in 0..runs.max(3) {
        let start = Instant::now();
        let events = store.events(mission, 0).await.unwrap();
        read.push(start.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(events.len() as u64, big);
        let start = Instant::now();
        flightdeck_core::chain::verify_chain(mission, &events).unwrap();
        verify.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    report(&format!("3. read a {big}-event timeline (ms)"), "ms", read);
    report(
        &format!("4. verify the hash chain of {big} events (ms)"),
        "ms",
        verify,
    );

    let feed_n = if quick { 5 } else { 100 };
    let (after_return, after_start) = feed_latency(&dir.path().join("feed.db"), feed_n).await;
    let max = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    println!(
        "5. another store sees an append, woken by its feed ({feed_n} appends): median {:.2} ms after the append returned (max {:.2}); {:.2} ms after it started (max {:.2})",
        stats(after_return.clone()).0,
        max(&after_return),
        stats(after_start.clone()).0,
        max(&after_start),
    );

    let claims = SqliteStore::open(&dir.path().join("claims.db"))
        .await
        .unwrap();
    let ready = claimable_missions(&claims).await;
    let claims_n = if quick { 20 } else { 1_000 };
    let claim_ms = claim_latency(&claims, &ready, 0..claims_n).await;
    report_latency(
        &format!("6. claim 1 of {CLAIM_READY} ready among {CLAIM_MISSIONS} (claim_runnable)"),
        claim_ms,
    );
}
