//! `flightdeck serve` under load, over real HTTP against the real binary:
//!
//! 1. **Live streams**: `CLIENTS` server-sent-event streams on one mission; events are
//!    appended one at a time through a store of this process (as another process's driver
//!    would), and each client's time from the start of the append (its fsync included) to
//!    the event's arrival is taken. Median, p99 and max over every client and append.
//! 2. **Missions listing**: `MISSIONS` missions in the store; `GET /api/v1/missions` (the
//!    first page of 50, and a page deep in the list by cursor), median of `ROUNDS`.
//! 3. **A long timeline**: a mission of `EVENTS` events; its summary, and a page of 1,000
//!    events from the middle, median of `ROUNDS`.
//! 4. **Its web page**: `GET /missions/{id}` of that mission (the last page of its timeline,
//!    the one holding seq `EVENTS / 2`, and the first), as the local user of a `local-only`
//!    server; the time to the response's headers and to its whole body, median of `ROUNDS`,
//!    and the body's size. The same window of 200 events through the API, for comparison.
//!
//! `cargo bench -p flightdeck --bench serve`; under `cargo test --all-targets` (as
//! `scripts/test` runs it) a small version checks that every client receives every event
//! and that every page renders.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)] // a bench: failing loudly is the point

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flightdeck_store::{AppendRequest, EventStore, NewEvent, Projection, SqliteStore};
use flightdeck_testkit::TestRepo;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");
const CLIENTS: usize = 200;
const APPENDS: usize = 50;
const MISSIONS: usize = 10_000;
const EVENTS: usize = 10_000;
const ROUNDS: usize = 20;

/// A repository whose mission writes a file and parks at the publish gate.
fn repo() -> TestRepo {
    TestRepo::with_files(&[
        (".flightdeck/policy.toml", "[defaults]\npublish = \"approve\"\n"),
        (
            ".flightdeck/missions/park.toml",
            "goal = \"Write a file and wait.\"\n[budget]\ntool_calls = 100\n[workspace]\nruntime = \"local-unsandboxed\"\n[[steps]]\nrun = \"echo x > a.txt\"\n",
        ),
        ("README.md", "bench\n"),
    ])
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let at = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[at]
}

/// A parked mission made by the real binary: (id, its summary, its last seq).
fn parked_mission(data: &Path, repo_dir: &Path) -> (String, Value, u64) {
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .args([
            "--as",
            "bench@example.com",
            "--json",
            "run",
            "park",
            "--repo",
        ])
        .arg(repo_dir)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "the mission should park: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let seq = summary["events"].as_u64().unwrap();
    (summary["id"].as_str().unwrap().to_string(), summary, seq)
}

fn append(mission: &str, expected_seq: u64, count: usize, summary: &Value) -> AppendRequest {
    AppendRequest {
        mission: mission.to_string(),
        expected_seq,
        events: (0..count)
            .map(|i| NewEvent {
                at_ms: 1_800_000_000_000 + i as i64,
                event_type: "budget.raised".into(),
                data: json!({"by": "@bench", "dimension": "tool_calls", "amount": 1}),
            })
            .collect(),
        projection: Projection {
            status: "awaiting_approval".into(),
            template: "park".into(),
            summary: summary.clone(),
            items: Vec::new(),
            columns: flightdeck_store::ProjectionColumns::default(),
        },
        consumes: Vec::new(),
        fence: None,
    }
}

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(data: &Path) -> Server {
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .args([
            "--json",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "0",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let started: Value = serde_json::from_str(&line).unwrap();
    Server {
        child,
        url: started["listening"].as_str().unwrap().to_string(),
    }
}

/// The medians of `rounds` GETs of a web page: milliseconds to its headers (time to first
/// byte: the page is rendered whole before it is sent) and to its whole body, and the
/// body's size in bytes. Each must answer 200 with the chain's badge and show `shows`.
async fn median_page(
    http: &reqwest::Client,
    url: &str,
    shows: &str,
    rounds: usize,
) -> (f64, f64, usize) {
    let (mut first_byte, mut full) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    let mut size = 0;
    for _ in 0..rounds {
        let started = Instant::now();
        let response = http.get(url).send().await.unwrap();
        first_byte.push(started.elapsed().as_secs_f64() * 1e3);
        let status = response.status();
        let body = response.bytes().await.unwrap();
        full.push(started.elapsed().as_secs_f64() * 1e3);
        let text = String::from_utf8_lossy(&body);
        assert_eq!(status, 200, "{url}: {text}");
        assert!(text.contains("data-verify="), "{url}: {text}");
        assert!(text.contains(shows), "{url} should show {shows}: {text}");
        size = body.len();
    }
    first_byte.sort_by(f64::total_cmp);
    full.sort_by(f64::total_cmp);
    (percentile(&first_byte, 0.5), percentile(&full, 0.5), size)
}

/// Median milliseconds of `rounds` GETs of `path`, checking each answers 200.
async fn median_get(http: &reqwest::Client, url: &str, rounds: usize) -> f64 {
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        let response = http.get(url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        let _ = response.bytes().await.unwrap();
        samples.push(started.elapsed().as_secs_f64() * 1e3);
    }
    samples.sort_by(f64::total_cmp);
    percentile(&samples, 0.5)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let (clients, appends, missions, events, rounds) = if benching {
        (CLIENTS, APPENDS, MISSIONS, EVENTS, ROUNDS)
    } else {
        (5, 3, 100, 200, 2)
    };
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("config.toml"),
        "[workspace]\nallow_unsandboxed = true\n",
    )
    .unwrap();
    let repo = repo();
    let repo_dir = repo.path();
    let (id, summary, mut seq) = parked_mission(&data, repo_dir);
    let (long_id, long_summary, long_seq) = parked_mission(&data, repo_dir);
    let server = serve(&data);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients + 8)
        .build()
        .unwrap();
    let store = Arc::new(
        SqliteStore::open(&data.join("flightdeck.db"))
            .await
            .unwrap(),
    );

    // 1. Live streams: every client opens its stream after the last recorded event.
    let (arrivals, mut arrived) = tokio::sync::mpsc::unbounded_channel::<(usize, u64, Instant)>();
    let mut readers = Vec::with_capacity(clients);
    for client in 0..clients {
        let response = http
            .get(format!(
                "{}/api/v1/missions/{id}/events/stream?after={seq}",
                server.url
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let arrivals = arrivals.clone();
        readers.push(tokio::spawn(async move {
            let mut response = response;
            let mut buffer = String::new();
            while let Ok(Some(chunk)) = response.chunk().await {
                let at = Instant::now();
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find("\n\n") {
                    let block: String = buffer.drain(..end + 2).collect();
                    if let Some(id) = block.lines().find_map(|l| l.strip_prefix("id: ")) {
                        let _ = arrivals.send((client, id.parse().unwrap(), at));
                    }
                }
            }
        }));
    }
    let mut latencies = Vec::with_capacity(clients * appends);
    for _ in 0..appends {
        let started = Instant::now();
        store.append(append(&id, seq, 1, &summary)).await.unwrap();
        seq += 1;
        let mut heard = vec![false; clients];
        let mut left = clients;
        while left > 0 {
            let (client, got, at) = tokio::time::timeout(Duration::from_secs(30), arrived.recv())
                .await
                .expect("a client heard nothing for 30 s")
                .unwrap();
            assert_eq!(got, seq, "client {client} got events out of order");
            if !heard[client] {
                heard[client] = true;
                left -= 1;
                latencies.push((at - started).as_secs_f64() * 1e3);
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    // The streams close: what follows measures reads alone.
    for reader in readers {
        reader.abort();
    }

    // 2. Many missions: copies of the parked one's projection under other ids.
    let mut appenders = Vec::new();
    for i in 0..missions.saturating_sub(2) {
        let store = store.clone();
        let mut copy = summary.clone();
        let other = format!("m-01benchmark{i:013}");
        copy["id"] = json!(other);
        appenders.push(tokio::spawn(async move {
            store.append(append(&other, 0, 1, &copy)).await.unwrap();
        }));
        if appenders.len() >= 256 {
            for a in appenders.drain(..) {
                a.await.unwrap();
            }
        }
    }
    for a in appenders {
        a.await.unwrap();
    }
    let first_page = median_get(&http, &format!("{}/api/v1/missions", server.url), rounds).await;
    let deep = format!("m-01benchmark{:013}", missions / 2);
    let deep_page = median_get(
        &http,
        &format!("{}/api/v1/missions?cursor={deep}", server.url),
        rounds,
    )
    .await;

    // 3. A long timeline, appended in batches; its projection counts them, as a driver's would.
    let mut at = long_seq;
    while (at as usize) < events {
        let count = (events - at as usize).min(1_000);
        let mut summary = long_summary.clone();
        summary["events"] = json!(at + count as u64);
        store
            .append(append(&long_id, at, count, &summary))
            .await
            .unwrap();
        at += count as u64;
    }
    let mission_summary = median_get(
        &http,
        &format!("{}/api/v1/missions/{long_id}", server.url),
        rounds,
    )
    .await;
    let middle = median_get(
        &http,
        &format!(
            "{}/api/v1/missions/{long_id}/events?after={}&limit=1000",
            server.url,
            events / 2
        ),
        rounds,
    )
    .await;

    // 4. Its web page: the last page (the default), the one holding the middle seq, the first;
    // and for scale, the page of the streamed mission, whose whole timeline fits on one.
    let mut pages = Vec::new();
    for (label, mission, query, seq) in [
        (
            "last page".to_string(),
            &long_id,
            String::new(),
            events as u64,
        ),
        (
            "middle page".to_string(),
            &long_id,
            format!("?seq={}", events / 2),
            events as u64 / 2,
        ),
        ("first page".to_string(), &long_id, "?seq=1".to_string(), 1),
        (
            format!("the streamed mission: {seq} events, one page"),
            &id,
            String::new(),
            seq,
        ),
    ] {
        let url = format!("{}/missions/{mission}{query}", server.url);
        let measured = median_page(&http, &url, &format!("id=\"seq-{seq}\""), rounds).await;
        pages.push((label, query, measured));
    }
    // The middle page's window of 200 events, through the API.
    let window = median_get(
        &http,
        &format!(
            "{}/api/v1/missions/{long_id}/events?after={}&limit=200",
            server.url,
            (events / 2 - 1) / 200 * 200
        ),
        rounds,
    )
    .await;
    // The chain's badge, which the page's script asks for once it is shown.
    let verify = median_get(
        &http,
        &format!("{}/api/v1/missions/{long_id}/verify", server.url),
        rounds,
    )
    .await;
    drop(server);
    if !benching {
        println!(
            "quick run (not under `cargo bench`): {clients} streams heard {appends} appends each; {} mission pages rendered",
            pages.len()
        );
        return;
    }
    println!(
        "{clients} live streams, append started → event received: median {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} deliveries)",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1],
        latencies.len()
    );
    println!("GET /api/v1/missions, {missions} missions: first page {first_page:.1} ms, a page by cursor {deep_page:.1} ms (medians of {rounds})");
    println!("a {events}-event mission: summary {mission_summary:.1} ms, 1,000 events from the middle {middle:.1} ms (medians of {rounds})");
    for (label, query, (first_byte, full, size)) in pages {
        println!(
            "web page GET /missions/{{id}}{query} ({label}): first byte {first_byte:.1} ms, whole body {full:.1} ms, {:.1} KB (medians of {rounds})",
            size as f64 / 1e3
        );
    }
    println!("the middle page's 200 events through the API: {window:.1} ms (median of {rounds})");
    println!("the page's chain badge, GET /api/v1/missions/{{id}}/verify of all {events} events: {verify:.1} ms (median of {rounds})");
}
