//! Container workspaces: how long `flightdeck workspace up` takes to make a repository's
//! devcontainer ready (worktree, labelled container created and started, setup commands run),
//! against the reference CLI's `devcontainer up` on the same devcontainer.json and image.
//!
//! Both need a Docker engine (`DOCKER_HOST`; `scripts/container-engine start` runs one and
//! imports the local image `flightdeck-test/busybox:1`, nothing is pulled) and the reference
//! CLI: the binary named by `FLIGHTDECK_DEVCONTAINER_CLI`, or what `scripts/devcontainer-cli`
//! installs. Without either the bench fails, it does not skip.
//!
//! `cargo bench -p flightdeck --bench container_up`: 10 rounds of each (after one untimed
//! warm-up of each), alternating, median, min and max, and the ratio of the medians. Under
//! `cargo test` it runs one round of each and checks that both made a ready container.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)] // a bench: failing loudly is the point

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");
const IMAGE: &str = "flightdeck-test/busybox:1";
const DEVCONTAINER: &str =
    r#"{ "image": "flightdeck-test/busybox:1", "postCreateCommand": "echo ready > /tmp/ready" }"#;

/// Fails (never skips) when no engine answers: the test command starts one.
fn require_engine() {
    let host = std::env::var("DOCKER_HOST").unwrap_or_default();
    let socket = host
        .strip_prefix("unix://")
        .unwrap_or("/var/run/docker.sock");
    assert!(
        Path::new(socket).exists(),
        "no container engine at {socket} (DOCKER_HOST={host:?}): run \
         `export \"$(scripts/container-engine start)\"` first (scripts/test does)"
    );
    let image = docker(&["image", "inspect", "--format", "{{.Id}}", IMAGE]);
    assert!(
        image.status.success(),
        "{IMAGE} is not in the engine at {socket}: run `scripts/container-engine start`, \
         which imports it\n{}",
        String::from_utf8_lossy(&image.stderr)
    );
}

/// The reference `devcontainer` binary.
fn reference_cli() -> PathBuf {
    const HOW: &str = "the reference devcontainer CLI is needed: run `scripts/devcontainer-cli` \
         (installs @devcontainers/cli with npm) or set FLIGHTDECK_DEVCONTAINER_CLI to its \
         `devcontainer` binary";
    if let Ok(path) = std::env::var("FLIGHTDECK_DEVCONTAINER_CLI") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "FLIGHTDECK_DEVCONTAINER_CLI={} is not a file; {HOW}",
            path.display()
        );
        return path;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/devcontainer-cli");
    let output = Command::new(&script)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("failed to run {}: {e}; {HOW}", script.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let path = PathBuf::from(stdout.trim());
    assert!(
        output.status.success() && path.is_file(),
        "{} failed ({}, printed {stdout:?}); {HOW}",
        script.display(),
        output.status
    );
    path
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("run the docker CLI")
}

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

fn flightdeck(data: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .args(["--as", "bench@example.com"])
        .args(args)
        .output()
        .unwrap()
}

/// A repository with the devcontainer.json and a template whose workspace is that container.
fn repo(dir: &Path) {
    std::fs::create_dir_all(dir.join(".devcontainer")).unwrap();
    std::fs::write(dir.join(".devcontainer/devcontainer.json"), DEVCONTAINER).unwrap();
    std::fs::write(dir.join("README.md"), "# bench\n").unwrap();
    std::fs::create_dir_all(dir.join(".flightdeck/missions")).unwrap();
    std::fs::write(
        dir.join(".flightdeck/missions/container.toml"),
        "goal = \"g\"\n[workspace]\nruntime = \"docker\"\n[[steps]]\nrun = \"true\"\n",
    )
    .unwrap();
    git(dir, &["init", "-q"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "bench"]);
}

/// The reference's containers of `repo`: it labels them `devcontainer.local_folder=<folder>`.
fn reference_containers(repo: &str) -> Vec<String> {
    let out = docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=devcontainer.local_folder={repo}"),
    ]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn remove_reference_containers(repo: &str) {
    let ids = reference_containers(repo);
    if !ids.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend(ids.iter().map(String::as_str));
        let out = docker(&args);
        assert!(out.status.success(), "{out:?}");
    }
}

/// What the setup command left in the container.
fn assert_ready(container: &str) {
    let out = docker(&["exec", container, "cat", "/tmp/ready"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ready");
}

/// Removes what a round made, even when it panics.
struct Cleanup<'a> {
    data: &'a Path,
    repo: &'a str,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = flightdeck(self.data, &["workspace", "down", "--repo", self.repo]);
        let ids = reference_containers(self.repo);
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&ids)
                .output();
        }
    }
}

/// `flightdeck workspace up`, timed as a whole command; the container is checked, then
/// `workspace down` removes it (timed too). Returns (whole, ready_ms in process, down).
fn flightdeck_round(data: &Path, repo: &str) -> (Duration, Duration, Duration) {
    let started = Instant::now();
    let out = flightdeck(
        data,
        &[
            "--json",
            "workspace",
            "up",
            "--repo",
            repo,
            "--template",
            "container",
        ],
    );
    let whole = started.elapsed();
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["workspace"]["runtime"], "docker", "{report}");
    assert_eq!(report["workspace"]["image"], IMAGE, "{report}");
    let container = report["workspace"]["container"].as_str().unwrap();
    assert_ready(container);
    let ready = Duration::from_millis(report["ready_ms"].as_u64().unwrap());
    let started = Instant::now();
    let down = flightdeck(data, &["workspace", "down", "--repo", repo]);
    let down_took = started.elapsed();
    assert!(down.status.success(), "{down:?}");
    let left = docker(&["container", "inspect", "--format", "{{.Id}}", container]);
    assert!(!left.status.success(), "workspace down left {container}");
    (whole, ready, down_took)
}

/// `devcontainer up` on the same folder, offline: the image is local (no pull, no build:
/// `--update-remote-user-uid-default never` rules out the UID-update image it would build
/// for a non-root user), no postAttachCommand, the folder itself mounted rather than its git
/// root. Then its container is removed by label. Returns (up, rm).
fn reference_round(cli: &Path, repo: &str) -> (Duration, Duration) {
    let started = Instant::now();
    let out = Command::new(cli)
        .args(["up", "--workspace-folder", repo])
        .args(["--docker-path", "docker"])
        .arg("--skip-post-attach")
        .args(["--update-remote-user-uid-default", "never"])
        .args(["--mount-workspace-git-root", "false"])
        .output()
        .unwrap();
    let whole = started.elapsed();
    assert!(
        out.status.success(),
        "devcontainer up failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["outcome"], "success", "{report}");
    let container = report["containerId"].as_str().unwrap();
    assert_ready(container);
    assert_eq!(reference_containers(repo).len(), 1);
    let started = Instant::now();
    remove_reference_containers(repo);
    let rm = started.elapsed();
    assert!(reference_containers(repo).is_empty());
    (whole, rm)
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

fn report(what: &str, samples: Vec<Duration>) -> f64 {
    let (m, lo, hi) = stats(samples);
    println!("{what}: median {m:.1} ms (min {lo:.1}, max {hi:.1})");
    m
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let rounds = if benching { 10 } else { 1 };
    require_engine();
    let cli = reference_cli();
    let scratch = tempfile::tempdir().unwrap();
    let repo_dir = scratch.path().join("repo");
    std::fs::create_dir_all(&repo_dir).unwrap();
    repo(&repo_dir);
    let repo_arg = repo_dir.to_str().unwrap();
    let data = scratch.path().join("data");
    let _cleanup = Cleanup {
        data: &data,
        repo: repo_arg,
    };

    if benching {
        // Warm-up, untimed: page cache for both binaries and node's modules.
        flightdeck_round(&data, repo_arg);
        reference_round(&cli, repo_arg);
    }
    let (mut up, mut ready, mut down) = (Vec::new(), Vec::new(), Vec::new());
    let (mut reference, mut rm) = (Vec::new(), Vec::new());
    // Alternating, so that load from elsewhere on the machine falls on both alike.
    for _ in 0..rounds {
        let (whole, in_process, down_took) = flightdeck_round(&data, repo_arg);
        up.push(whole);
        ready.push(in_process);
        down.push(down_took);
        let (whole, rm_took) = reference_round(&cli, repo_arg);
        reference.push(whole);
        rm.push(rm_took);
    }
    let ours = report("flightdeck workspace up, whole command", up);
    report("flightdeck workspace up, ready (in process)", ready);
    report("flightdeck workspace down", down);
    let theirs = report("devcontainer up (reference)", reference);
    report("docker rm -f of the reference's container", rm);
    println!(
        "ratio, devcontainer up / flightdeck workspace up (medians): {:.2}x",
        theirs / ours
    );
}
