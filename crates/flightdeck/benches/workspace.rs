//! Workspaces: how long `flightdeck workspace up` takes to make a repository of 10,000 files
//! ready (worktree, sandbox layout, caches, toolchain probe), and what the sandbox costs per
//! command (`workspace exec -- true` in bubblewrap against the same without it).
//!
//! `cargo bench -p flightdeck --bench workspace`: 10 rounds each, median, min and max; each
//! `up` starts after `sync` and a second's pause. Under
//! `cargo test` it runs one round of each and checks the results.

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

/// A repository of `files` files in 100 directories, with a Cargo.lock (a cache) and a
/// rust-toolchain.toml (a probe), and templates for the sandboxed and unsandboxed runtimes.
fn repo(dir: &Path, files: usize) {
    for i in 0..files {
        let sub = dir.join(format!("src/m{}", i % 100));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(
            sub.join(format!("f{i}.rs")),
            format!("pub fn f{i}() {{}}\n"),
        )
        .unwrap();
    }
    std::fs::write(dir.join("Cargo.lock"), "version = 3\n").unwrap();
    std::fs::write(
        dir.join("rust-toolchain.toml"),
        "[toolchain]\nchannel = \"stable\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join(".flightdeck/missions")).unwrap();
    for (name, runtime) in [("local", "local"), ("bare", "local-unsandboxed")] {
        std::fs::write(
            dir.join(format!(".flightdeck/missions/{name}.toml")),
            format!(
                "goal = \"g\"\n[workspace]\nruntime = \"{runtime}\"\n[[steps]]\nrun = \"true\"\n"
            ),
        )
        .unwrap();
    }
    git(dir, &["init", "-q"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "bench"]);
}

fn settle(benching: bool) {
    if benching {
        let _ = Command::new("sync").status();
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn stats(mut samples: Vec<Duration>) -> (f64, f64, f64) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (
        ms(samples[samples.len() / 2]),
        ms(samples[0]),
        ms(samples[samples.len() - 1]),
    )
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let (files, rounds) = if benching { (10_000, 10) } else { (200, 1) };
    let scratch = tempfile::tempdir().unwrap();
    let repo_dir = scratch.path().join("repo");
    std::fs::create_dir_all(&repo_dir).unwrap();
    repo(&repo_dir, files);
    let repo_arg = repo_dir.to_str().unwrap();
    let data = scratch.path().join("data");
    // Unsandboxed runs are the installation's decision.
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("config.toml"),
        "[workspace]\nallow_unsandboxed = true\n",
    )
    .unwrap();

    // Ready: the whole `workspace up` command, and the in-process time it reports. Each round
    // has a data directory of its own, so a fresh worktree path, as every mission has (on
    // this machine's disk, checking 10,000 files out where 10,000 were just deleted takes
    // ten times as long, for plain `git worktree add` too).
    let mut whole = Vec::new();
    let mut ready = Vec::new();
    for round in 0..rounds {
        let data = scratch.path().join(format!("data-{round}"));
        settle(benching);
        let started = Instant::now();
        let out = flightdeck(
            &data,
            &[
                "--json",
                "workspace",
                "up",
                "--repo",
                repo_arg,
                "--template",
                "local",
            ],
        );
        whole.push(started.elapsed());
        assert!(out.status.success(), "{out:?}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            report["workspace"]["toolchain"]["rust"]["ok"], true,
            "{report}"
        );
        ready.push(Duration::from_millis(report["ready_ms"].as_u64().unwrap()));
        let path = report["workspace"]["path"].as_str().unwrap();
        assert_eq!(
            std::fs::read_dir(Path::new(path).join("src"))
                .unwrap()
                .count(),
            100.min(files)
        );
    }
    for round in 0..rounds {
        let data = scratch.path().join(format!("data-{round}"));
        let down = flightdeck(&data, &["workspace", "down", "--repo", repo_arg]);
        assert!(down.status.success(), "{down:?}");
    }
    let (m, lo, hi) = stats(whole);
    println!(
        "workspace up, {files} files, whole command: median {m:.1} ms (min {lo:.1}, max {hi:.1})"
    );
    let (m, lo, hi) = stats(ready);
    println!("workspace up, {files} files, ready (in process): median {m:.1} ms (min {lo:.1}, max {hi:.1})");

    // Per command: `exec -- true` sandboxed and not; the difference is the sandbox's cost.
    let mut medians = Vec::new();
    for template in ["local", "bare"] {
        let up = flightdeck(
            &data,
            &[
                "workspace",
                "up",
                "--repo",
                repo_arg,
                "--template",
                template,
            ],
        );
        assert!(up.status.success(), "{up:?}");
        let mut samples = Vec::new();
        for _ in 0..rounds * 3 {
            let started = Instant::now();
            let out = flightdeck(
                &data,
                &["workspace", "exec", "--repo", repo_arg, "--", "true"],
            );
            samples.push(started.elapsed());
            assert!(out.status.success(), "{out:?}");
        }
        let (m, lo, hi) = stats(samples);
        println!(
            "workspace exec -- true ({template}): median {m:.1} ms (min {lo:.1}, max {hi:.1})"
        );
        medians.push(m);
        let down = flightdeck(&data, &["workspace", "down", "--repo", repo_arg]);
        assert!(down.status.success(), "{down:?}");
    }
    println!(
        "sandbox overhead per command: {:.1} ms ({:.2}x)",
        medians[0] - medians[1],
        medians[0] / medians[1]
    );
}
