//! `flightdeck timeline --follow`: how soon an appended event is printed, with no polling.
//!
//! Records a mission that parks for approval (the real binary), starts `flightdeck timeline
//! MISSION --follow --json` on it, then appends `budget.raised` events to the mission through
//! a store of this process (as another process's driver would) one at a time, and takes the
//! time from the start of each append (which includes its fsync), and from its return, to
//! the moment the follower's line is read from its standard output. Reports the median, p90
//! and max over `APPENDS` appends. `cargo bench -p flightdeck --bench follow`; under `cargo
//! test` it checks a few appends are printed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)] // a bench: failing loudly is the point

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use flightdeck_store::{AppendRequest, EventStore, NewEvent, Projection, SqliteStore};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");
const APPENDS: usize = 200;

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args([
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@example.com",
        ])
        .args(args)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

/// A repository whose mission writes a file and parks at the publish gate.
fn repo(dir: &Path) {
    std::fs::create_dir_all(dir.join(".flightdeck/missions")).unwrap();
    std::fs::write(
        dir.join(".flightdeck/policy.toml"),
        "[defaults]\npublish = \"approve\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join(".flightdeck/missions/park.toml"),
        "goal = \"Write a file and wait.\"\n[budget]\ntool_calls = 100\n[workspace]\nruntime = \"local-unsandboxed\"\n[[steps]]\nrun = \"echo x > a.txt\"\n",
    )
    .unwrap();
    std::fs::write(dir.join("README.md"), "bench\n").unwrap();
    git(dir, &["init", "--quiet", "--initial-branch=main"]);
    git(dir, &["add", "--all"]);
    git(dir, &["commit", "--quiet", "-m", "bench"]);
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let at = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[at]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let appends = if benching { APPENDS } else { 5 };
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    // Unsandboxed runs are the installation's decision.
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("config.toml"),
        "[workspace]\nallow_unsandboxed = true\n",
    )
    .unwrap();
    let repo_dir = root.path().join("repo");
    repo(&repo_dir);
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(&data)
        .args([
            "--as",
            "bench@example.com",
            "--json",
            "run",
            "park",
            "--repo",
        ])
        .arg(&repo_dir)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "the mission should park: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = summary["id"].as_str().unwrap().to_string();
    let mut seq = summary["events"].as_u64().unwrap();

    let mut follower = Command::new(BIN)
        .arg("--data-dir")
        .arg(&data)
        .args(["--json", "timeline", &id, "--follow"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Each line as it arrives, with when it arrived.
    let (lines, arrived) = mpsc::channel::<(Instant, String)>();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if lines.send((Instant::now(), line)).is_err() {
                return;
            }
        }
    });
    let wait_line = |seq: u64| -> Instant {
        loop {
            let (at, line) = arrived
                .recv_timeout(Duration::from_secs(30))
                .expect("the follower printed nothing for 30 s");
            let event: serde_json::Value = serde_json::from_str(&line).unwrap();
            if event["seq"].as_u64() == Some(seq) {
                return at;
            }
        }
    };
    wait_line(seq); // the recorded timeline is printed first

    let store = SqliteStore::open(&data.join("flightdeck.db"))
        .await
        .unwrap();
    let (mut from_start, mut from_return) = (Vec::new(), Vec::new());
    for i in 0..appends {
        let started = Instant::now();
        store
            .append(AppendRequest {
                mission: id.clone(),
                expected_seq: seq,
                events: vec![NewEvent {
                    at_ms: 1_800_000_000_000 + i as i64,
                    event_type: "budget.raised".into(),
                    data: json!({"by": "@bench", "dimension": "tool_calls", "amount": 1}),
                }],
                projection: Projection {
                    status: "awaiting_approval".into(),
                    template: "park".into(),
                    summary: summary.clone(),
                    items: Vec::new(),
                    columns: flightdeck_store::ProjectionColumns::default(),
                },
                consumes: Vec::new(),
                fence: None,
            })
            .await
            .unwrap();
        let returned = Instant::now();
        seq += 1;
        let printed = wait_line(seq);
        from_start.push((printed - started).as_secs_f64() * 1e3);
        from_return.push(printed.saturating_duration_since(returned).as_secs_f64() * 1e3);
    }
    let _ = follower.kill();
    let _ = follower.wait();
    if !benching {
        println!("quick run (not under `cargo bench`): {appends} appends followed");
        return;
    }
    for (label, mut samples) in [
        ("append started → line printed", from_start),
        ("append returned → line printed", from_return),
    ] {
        samples.sort_by(f64::total_cmp);
        println!(
            "{label:<32} median {:.2} ms  p90 {:.2} ms  max {:.2} ms  ({} appends)",
            percentile(&samples, 0.5),
            percentile(&samples, 0.9),
            samples[samples.len() - 1],
            samples.len()
        );
    }
}
