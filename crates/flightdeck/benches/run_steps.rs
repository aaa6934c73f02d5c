//! What a `run = "true"` step costs over a whole mission: a template of 200 such steps run by
//! `flightdeck run`, in the sandbox (with the default limits) and unsandboxed. The per-step
//! cost is (time of the 200-step mission − time of the 1-step mission) / 199, so start-up,
//! the workspace's provisioning and the end of the mission cancel out.
//!
//! `cargo bench -p flightdeck --bench run_steps`: 5 rounds of each, medians. Under
//! `cargo test` it runs one round of 5 steps and checks the missions succeeded.

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
        .args(["-c", "user.name=b", "-c", "user.email=b@example.com"])
        .args(args)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

/// Templates `<runtime>-<steps>` for each runtime and step count.
fn repo(dir: &Path, counts: &[usize]) {
    std::fs::create_dir_all(dir.join(".flightdeck/missions")).unwrap();
    std::fs::write(dir.join("README.md"), "bench\n").unwrap();
    for runtime in ["local", "local-unsandboxed"] {
        for &steps in counts {
            let mut text = format!(
                "goal = \"g\"\n[budget]\ntool_calls = {}\n[workspace]\nruntime = \"{runtime}\"\n",
                steps + 10
            );
            for _ in 0..steps {
                text.push_str("[[steps]]\nrun = \"true\"\n");
            }
            std::fs::write(
                dir.join(format!(".flightdeck/missions/{runtime}-{steps}.toml")),
                text,
            )
            .unwrap();
        }
    }
    git(dir, &["init", "-q"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "bench"]);
}

fn run(data: &Path, repo: &Path, template: &str) -> Duration {
    let started = Instant::now();
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .args([
            "--as",
            "bench@example.com",
            "--json",
            "run",
            template,
            "--repo",
        ])
        .arg(repo)
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(out.status.success(), "{template}: {out:?}");
    took
}

fn median(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1000.0
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let (long, rounds) = if benching { (200, 5) } else { (5, 1) };
    let scratch = tempfile::tempdir().unwrap();
    let repo_dir = scratch.path().join("repo");
    std::fs::create_dir_all(&repo_dir).unwrap();
    repo(&repo_dir, &[1, long]);
    let data = scratch.path().join("data");
    // The unsandboxed runtime is the installation's decision.
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("config.toml"),
        "[workspace]\nallow_unsandboxed = true\n",
    )
    .unwrap();
    let mut per_step = Vec::new();
    for runtime in ["local", "local-unsandboxed"] {
        let mut short = Vec::new();
        let mut whole = Vec::new();
        for _ in 0..rounds {
            short.push(run(&data, &repo_dir, &format!("{runtime}-1")));
            whole.push(run(&data, &repo_dir, &format!("{runtime}-{long}")));
        }
        let (short, whole) = (median(short), median(whole));
        let step = (whole - short) / (long - 1) as f64;
        println!(
            "{runtime}: {long}-step mission median {whole:.0} ms, 1-step {short:.0} ms, per step {step:.2} ms"
        );
        per_step.push(step);
    }
    println!(
        "sandboxed step / unsandboxed step: {:.2}x ({:.2} ms more)",
        per_step[0] / per_step[1],
        per_step[0] - per_step[1]
    );
}
