//! `flightdeck replay` of a long mission: how long verifying a 10,000-event timeline takes,
//! and how it compares with recording it (a 1,000-call conversation).
//!
//! Records one mission with the real binary (a coder that reads a file per turn for
//! `TURNS` turns, then writes one and finishes; scripted model, nothing sandboxed, so the
//! recording is quick), then times `flightdeck replay MISSION` (verify) five times and
//! reports the median, min and max: the whole command, process start and store open
//! included. `cargo bench -p flightdeck --bench replay`; under `cargo test` it records a
//! short mission and checks that its replay verifies.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)] // a bench: failing loudly is the point

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");

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

fn flightdeck(data: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .args(["--as", "bench@example.com"])
        .args(args)
        .output()
        .unwrap()
}

/// A repository whose template has `steps` coder steps, each reading `reads` files (one
/// per turn) and finishing; the last one also writes a file.
fn repo(dir: &Path, steps: usize, reads: usize) {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::create_dir_all(dir.join(".flightdeck/missions")).unwrap();
    for i in 0..50 {
        std::fs::write(
            dir.join(format!("src/f{i}.rs")),
            format!("pub fn f{i}() -> u32 {{ {i} }}\n"),
        )
        .unwrap();
    }
    std::fs::write(
        dir.join(".flightdeck/policy.toml"),
        "[defaults]\npublish = \"allow\"\n",
    )
    .unwrap();
    let mut template = String::from(
        "goal = \"Read every file, then write a summary.\"\n[model]\npin = \"scripted:.flightdeck/script.toml\"\nmax_output_tokens = 256\ncontext_tokens = 32000\n[budget]\ntool_calls = 100000\nmodel_calls = 100000\n[breakers]\nno_progress = 100000\n[workspace]\nruntime = \"local-unsandboxed\"\n",
    );
    let mut script = String::from("model = \"bench-1\"\n");
    for step in 0..steps {
        template.push_str("[[steps]]\nagent = \"coder\"\n");
        for t in 0..reads {
            script.push_str(&format!(
                "[[turn]]\n[[turn.call]]\ntool = \"read_file\"\nargs = {{ path = \"src/f{}.rs\" }}\n",
                (step + t) % 50
            ));
        }
        if step + 1 == steps {
            script.push_str("[[turn]]\n[[turn.call]]\ntool = \"write_file\"\nargs = { path = \"SUMMARY.md\", content = \"all read\\n\" }\n");
        }
        script.push_str(
            "[[turn]]\n[[turn.call]]\ntool = \"finish\"\nargs = { summary = \"done\" }\n",
        );
    }
    std::fs::write(dir.join(".flightdeck/missions/long.toml"), template).unwrap();
    std::fs::write(dir.join(".flightdeck/script.toml"), script).unwrap();
    git(dir, &["init", "--quiet", "--initial-branch=main"]);
    git(dir, &["add", "--all"]);
    git(dir, &["commit", "--quiet", "-m", "bench"]);
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

/// Records a mission of `steps` × `reads` and replays it `runs` times.
fn measure(label: &str, steps: usize, reads: usize, runs: usize, benching: bool) {
    let root = tempfile::tempdir().unwrap();
    // REPLAY_BENCH_KEEP=DIR keeps the recording there, to profile a replay of it.
    let base = std::env::var_os("REPLAY_BENCH_KEEP").map_or_else(
        || root.path().to_path_buf(),
        |d| std::path::PathBuf::from(d).join(label),
    );
    let data = base.join("data");
    // Unsandboxed runs are the installation's decision.
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("config.toml"),
        "[workspace]\nallow_unsandboxed = true\n",
    )
    .unwrap();
    let repo_dir = base.join("repo");
    repo(&repo_dir, steps, reads);
    let started = Instant::now();
    let out = flightdeck(
        &data,
        &[
            "--json",
            "run",
            "long",
            "--repo",
            repo_dir.to_str().unwrap(),
        ],
    );
    let recorded_in = started.elapsed();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = summary["id"].as_str().unwrap().to_string();
    let events = summary["events"].as_u64().unwrap();
    let mut times = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let out = flightdeck(&data, &["--json", "replay", &id]);
        times.push(started.elapsed());
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["diverged"], false, "{report}");
        assert_eq!(report["checked"], events, "{report}");
    }
    if benching {
        let min = *times.iter().min().unwrap();
        let max = *times.iter().max().unwrap();
        let mid = median(times);
        println!(
            "{label}: {events} events ({steps} step(s) x {reads} reads), recorded in {recorded_in:.2?}; \
             replay verify median {mid:.3?} (min {min:.3?}, max {max:.3?}, {runs} runs), {:.1} µs per event; \
             replay / recording = {:.1}%",
            mid.as_secs_f64() * 1e6 / events as f64,
            100.0 * mid.as_secs_f64() / recorded_in.as_secs_f64()
        );
    }
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    if !benching {
        measure("test", 2, 5, 1, false);
        return;
    }
    // 5 events per read (model.requested, model.responded, tool.requested, policy.decided,
    // tool.completed): about 10,000 events either way.
    // One conversation of 1,000 model calls (999 reads, then finish).
    measure("conversation-1000", 1, 999, 5, true);
    measure("many-steps", 20, 99, 5, true);
    measure("one-step", 1, 1996, 3, true);
}
