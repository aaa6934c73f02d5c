//! Workspaces with dev container features and Compose workspaces (issue 22): how long
//! `flightdeck workspace up` takes to make them ready, against the reference CLI's
//! `devcontainer up` on the same definitions.
//!
//! - **first**: three features from the local OCI registry (`opts-string` with an option,
//!   `env-path`, `depends-a`, which brings `depends-b` through its `dependsOn`) on
//!   `flightdeck-test/busybox:1`, with a cold cache: flightdeck's `flightdeck-features:<key>`
//!   image removed before each sample; for the reference, a fresh copy of the repository (no
//!   `devcontainer-lock.json`) and its previous `vsc-…-features` image removed.
//! - **cached**: the same definition again, the image of the "first" sample left in place:
//!   flightdeck finds its tag by cache key; the reference, in the same folder (with the lock
//!   file its first `up` wrote), builds again and the engine's build cache answers every step.
//! - **compose**: a Compose definition, `app` and a `db` sidecar (both busybox), up and down.
//!
//! Needs a Docker engine (`DOCKER_HOST`; `scripts/container-engine start`), the local registry
//! with the test features (`FLIGHTDECK_TEST_REGISTRY`; `scripts/registry start`), a Compose CLI,
//! and for the reference its CLI (`FLIGHTDECK_DEVCONTAINER_CLI`, else `scripts/devcontainer-cli`).
//! Without any of them the bench fails, it does not skip; so it does when anything it measures
//! fails or did not make what it should (checked after every sample, untimed).
//!
//! `cargo bench -p flightdeck --bench features_up`: one untimed warm-up round, then 5 rounds,
//! each sample of ours followed by the same of the reference; median, min and max, and the
//! ratio of the medians. Under `cargo test` it runs one round of flightdeck's side only.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)] // a bench: failing loudly is the point

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");
const IMAGE: &str = "flightdeck-test/busybox:1";
const FEATURES_LOG: &str = "/usr/local/share/flightdeck-features.log";
const TEMPLATE: &str =
    "goal = \"g\"\n[workspace]\nruntime = \"docker\"\negress = [\"localhost\"]\n[[steps]]\nrun = \"true\"\n";
const COMPOSE_DEVCONTAINER: &str = r#"{
  "dockerComposeFile": "docker-compose.yml",
  "service": "app",
  "runServices": ["app", "db"],
  "workspaceFolder": "/workspaces/app",
  "postCreateCommand": "echo ready > /tmp/ready"
}"#;
const COMPOSE_FILE: &str = r#"services:
  app:
    image: flightdeck-test/busybox:1
    command: ["sh", "-c", "trap 'exit 0' TERM; while sleep 1000; do :; done"]
    volumes: ["..:/workspaces/app"]
    depends_on: [db]
  db:
    image: flightdeck-test/busybox:1
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do echo db-answers | nc -l -p 5432; done"]
"#;

fn features_devcontainer(registry: &str) -> String {
    format!(
        r#"{{
  "image": "{IMAGE}",
  "features": {{
    "{registry}/flightdeck-test/opts-string:1": {{ "flavor": "mint" }},
    "{registry}/flightdeck-test/env-path:1": {{}},
    "{registry}/flightdeck-test/depends-a:1": {{}}
  }},
  "postCreateCommand": "echo ready > /tmp/ready"
}}"#
    )
}

/// Fails (never skips) when the engine, its image or the registry is missing.
fn require_environment() -> String {
    let host = std::env::var("DOCKER_HOST").unwrap_or_default();
    assert!(
        !host.is_empty(),
        "DOCKER_HOST is not set: run `export \"$(scripts/container-engine start)\"` first \
         (scripts/test does)"
    );
    let socket = host
        .strip_prefix("unix://")
        .unwrap_or("/var/run/docker.sock");
    assert!(
        Path::new(socket).exists(),
        "no container engine at {socket} (DOCKER_HOST={host:?}): run \
         `export \"$(scripts/container-engine start)\"` first"
    );
    let image = docker(&["image", "inspect", "--format", "{{.Id}}", IMAGE]);
    assert!(
        image.status.success(),
        "{IMAGE} is not in the engine at {socket}: run `scripts/container-engine start`, \
         which imports it\n{}",
        String::from_utf8_lossy(&image.stderr)
    );
    let registry = std::env::var("FLIGHTDECK_TEST_REGISTRY").unwrap_or_default();
    assert!(
        !registry.is_empty(),
        "FLIGHTDECK_TEST_REGISTRY is not set: run `scripts/registry start` and export what it \
         prints (scripts/test does)"
    );
    registry
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

fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
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

/// A repository with `files` and template `t`, committed.
fn repo(dir: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir.join(".devcontainer")).unwrap();
    std::fs::create_dir_all(dir.join(".flightdeck/missions")).unwrap();
    std::fs::write(dir.join("README.md"), "# bench\n").unwrap();
    std::fs::write(dir.join(".flightdeck/missions/t.toml"), TEMPLATE).unwrap();
    for (path, text) in files {
        std::fs::write(dir.join(path), text).unwrap();
    }
    git(dir, &["init", "-q"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "bench"]);
}

/// A copy of `from` at `to` (for the reference: a folder of its own per "first" sample).
fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-r")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cp -r {} {}",
        from.display(),
        to.display()
    );
}

fn image_id(image: &str) -> Option<String> {
    let out = docker(&["image", "inspect", "--format", "{{.Id}}", image]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn remove_image(image: &str) {
    if image_id(image).is_some() {
        docker_ok(&["rmi", image]);
    }
    assert!(image_id(image).is_none(), "{image} is still there");
}

/// What the postCreateCommand left, and the features' install log.
fn assert_features_ready(container: &str) {
    assert_eq!(
        docker_ok(&["exec", container, "cat", "/tmp/ready"]),
        "ready",
        "postCreateCommand in {container}"
    );
    let log = docker_ok(&["exec", container, "cat", FEATURES_LOG]);
    for installed in [
        "opts-string flavor=mint",
        "env-path",
        "depends-b level=deep",
        "depends-a",
    ] {
        assert!(
            log.lines().any(|l| l.starts_with(installed)),
            "{installed} not installed in {container}: {log}"
        );
    }
}

/// The postCreateCommand ran in the app container, and the sidecar answers by its name.
fn assert_compose_ready(container: &str) {
    assert_eq!(
        docker_ok(&["exec", container, "cat", "/tmp/ready"]),
        "ready",
        "postCreateCommand in {container}"
    );
    let mut last = None;
    for _ in 0..50 {
        let out = docker(&["exec", container, "sh", "-c", "nc db 5432 < /dev/null"]);
        if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "db-answers" {
            return;
        }
        last = Some(out);
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the db sidecar never answered from {container}: {last:?}");
}

fn labelled(kind: &str, label: &str) -> Vec<String> {
    let filter = format!("label={label}");
    let out = if kind == "network" {
        docker(&["network", "ls", "-q", "--filter", &filter])
    } else {
        docker(&["ps", "-aq", "--filter", &filter])
    };
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Removes the containers, then the networks, labelled `label`.
fn remove_labelled(label: &str) {
    let ids = labelled("container", label);
    if !ids.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend(ids.iter().map(String::as_str));
        docker_ok(&args);
    }
    for network in labelled("network", label) {
        docker_ok(&["network", "rm", &network]);
    }
    assert!(labelled("container", label).is_empty(), "{label}");
}

fn reference_label(folder: &Path) -> String {
    format!("devcontainer.local_folder={}", folder.display())
}

/// Removes what the bench made, even when it panics.
struct Cleanup {
    data: PathBuf,
    repos: Vec<PathBuf>,
    reference_folders: Vec<PathBuf>,
    compose_projects: Vec<String>,
    images: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for repo in &self.repos {
            let _ = flightdeck(
                &self.data,
                &["workspace", "down", "--repo", repo.to_str().unwrap()],
            );
        }
        let mut labels: Vec<String> = self
            .reference_folders
            .iter()
            .map(|f| reference_label(f))
            .collect();
        labels.extend(
            self.compose_projects
                .iter()
                .map(|p| format!("com.docker.compose.project={p}")),
        );
        for label in labels {
            let filter = format!("label={label}");
            let ids = docker(&["ps", "-aq", "--filter", &filter]);
            let ids = String::from_utf8_lossy(&ids.stdout).to_string();
            for id in ids.split_whitespace() {
                let _ = docker(&["rm", "-f", id]);
            }
            let nets = docker(&["network", "ls", "-q", "--filter", &filter]);
            let nets = String::from_utf8_lossy(&nets.stdout).to_string();
            for id in nets.split_whitespace() {
                let _ = docker(&["network", "rm", id]);
            }
        }
        for image in &self.images {
            let _ = docker(&["rmi", image]);
        }
    }
}

/// One sample of `flightdeck workspace up` (timed, whole command), then `workspace down`.
struct Ours {
    whole: Duration,
    ready: Duration,
    image: String,
    image_id: String,
}

fn flightdeck_up(data: &Path, repo: &Path, compose: bool) -> Ours {
    let repo = repo.to_str().unwrap();
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
            "t",
        ],
    );
    let whole = started.elapsed();
    assert!(
        out.status.success(),
        "flightdeck workspace up failed: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let workspace = &report["workspace"];
    assert_eq!(workspace["runtime"], "docker", "{report}");
    let container = workspace["container"].as_str().unwrap().to_string();
    let image = workspace["image"].as_str().unwrap().to_string();
    if compose {
        assert_eq!(workspace["compose"]["service"], "app", "{report}");
        assert_eq!(
            workspace["compose"]["services"],
            serde_json::json!(["db"]),
            "{report}"
        );
        assert_compose_ready(&container);
    } else {
        assert!(image.starts_with("flightdeck-features:"), "{report}");
        assert_eq!(
            workspace["features"].as_array().map(Vec::len),
            Some(4),
            "{report}"
        );
        assert_features_ready(&container);
    }
    let image_id = if compose {
        String::new()
    } else {
        image_id(&image).unwrap()
    };
    let ready = Duration::from_millis(report["ready_ms"].as_u64().unwrap());
    let down = flightdeck(data, &["workspace", "down", "--repo", repo]);
    assert!(down.status.success(), "{down:?}");
    let left = docker(&["container", "inspect", "--format", "{{.Id}}", &container]);
    assert!(!left.status.success(), "workspace down left {container}");
    Ours {
        whole,
        ready,
        image,
        image_id,
    }
}

/// One sample of `devcontainer up` (timed), with the offline flags of container_up.rs.
/// Returns the time and the container.
fn reference_up(cli: &Path, folder: &Path) -> (Duration, String) {
    let started = Instant::now();
    let out = Command::new(cli)
        .args(["up", "--workspace-folder", folder.to_str().unwrap()])
        .args(["--docker-path", "docker"])
        .arg("--skip-post-attach")
        .args(["--update-remote-user-uid-default", "never"])
        .args(["--mount-workspace-git-root", "false"])
        .output()
        .unwrap();
    let whole = started.elapsed();
    assert!(
        out.status.success(),
        "devcontainer up failed: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["outcome"], "success", "{report}");
    (whole, report["containerId"].as_str().unwrap().to_string())
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

fn report(what: &str, samples: &[Duration]) -> f64 {
    let (m, lo, hi) = stats(samples.to_vec());
    println!("{what}: median {m:.1} ms (min {lo:.1}, max {hi:.1})");
    m
}

#[derive(Default)]
struct Samples {
    first: Vec<Duration>,
    first_ready: Vec<Duration>,
    cached: Vec<Duration>,
    cached_ready: Vec<Duration>,
    compose: Vec<Duration>,
    compose_ready: Vec<Duration>,
    ref_first: Vec<Duration>,
    ref_cached: Vec<Duration>,
    ref_compose: Vec<Duration>,
}

struct Bench {
    cli: Option<PathBuf>,
    scratch: PathBuf,
    features_repo: PathBuf,
    compose_repo: PathBuf,
    compose_folder: PathBuf,
    cleanup: Cleanup,
    /// The image every "first" sample of ours must build anew (the cache key does not change).
    our_image: Option<String>,
    /// Ids of every features image built so far: a cold build makes a new one.
    built: Vec<String>,
    round: usize,
}

impl Bench {
    fn round(&mut self, s: &mut Samples) {
        self.round += 1;
        let data = self.cleanup.data.clone();

        // 1. first, cold: no image under the cache key.
        if let Some(image) = &self.our_image {
            remove_image(image);
        }
        let first = flightdeck_up(&data, &self.features_repo, false);
        assert!(
            !self.built.contains(&first.image_id),
            "the first sample did not build: {} is an earlier image",
            first.image_id
        );
        self.built.push(first.image_id.clone());
        if self.our_image.is_none() {
            self.cleanup.images.push(first.image.clone());
        }
        self.our_image = Some(first.image.clone());
        s.first.push(first.whole);
        s.first_ready.push(first.ready);

        // Reference, first: a folder of its own (no lock file, a new image name); the previous
        // round's image is gone.
        let folder = self.scratch.join(format!("reference-{}", self.round));
        let reference_image = self.cli.clone().map(|cli| {
            copy_dir(&self.features_repo, &folder);
            self.cleanup.reference_folders.push(folder.clone());
            let lock = folder.join(".devcontainer/devcontainer-lock.json");
            assert!(!lock.exists());
            let (took, container) = reference_up(&cli, &folder);
            assert_features_ready(&container);
            let image = docker_ok(&["inspect", "--format", "{{.Config.Image}}", &container]);
            assert!(
                image.starts_with("vsc-") && image.ends_with("-features"),
                "{image}"
            );
            self.cleanup.images.push(image.clone());
            let id = image_id(&image).unwrap();
            assert!(
                !self.built.contains(&id),
                "the reference's first sample did not build: {id} is an earlier image"
            );
            self.built.push(id.clone());
            remove_labelled(&reference_label(&folder));
            assert!(lock.exists(), "the reference wrote no lock file");
            s.ref_first.push(took);
            (cli, image, id)
        });

        // 2. cached: the image of the first sample is there.
        let cached = flightdeck_up(&data, &self.features_repo, false);
        assert_eq!(cached.image, first.image);
        assert_eq!(
            cached.image_id, first.image_id,
            "the cached sample built again"
        );
        s.cached.push(cached.whole);
        s.cached_ready.push(cached.ready);

        if let Some((cli, image, id)) = reference_image {
            let (took, container) = reference_up(&cli, &folder);
            assert_features_ready(&container);
            assert_eq!(
                docker_ok(&["inspect", "--format", "{{.Image}}", &container]),
                id,
                "the reference's cached sample made another image"
            );
            remove_labelled(&reference_label(&folder));
            remove_image(&image);
            s.ref_cached.push(took);
        }

        // 3. compose: app and its db sidecar.
        let compose = flightdeck_up(&data, &self.compose_repo, true);
        s.compose.push(compose.whole);
        s.compose_ready.push(compose.ready);

        if let Some(cli) = &self.cli {
            let (took, container) = reference_up(cli, &self.compose_folder);
            assert_compose_ready(&container);
            let project = docker_ok(&[
                "inspect",
                "--format",
                "{{index .Config.Labels \"com.docker.compose.project\"}}",
                &container,
            ]);
            assert!(!project.is_empty());
            if !self.cleanup.compose_projects.contains(&project) {
                self.cleanup.compose_projects.push(project.clone());
            }
            remove_labelled(&format!("com.docker.compose.project={project}"));
            s.ref_compose.push(took);
        }
    }
}

fn ratio(what: &str, theirs: f64, ours: f64) {
    println!(
        "ratio {what}, flightdeck / devcontainer (medians): {:.2}x",
        ours / theirs
    );
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let rounds = if benching { 5 } else { 1 };
    let registry = require_environment();
    let cli = benching.then(reference_cli);
    let scratch = tempfile::tempdir().unwrap();
    let features_repo = scratch.path().join("features");
    std::fs::create_dir_all(&features_repo).unwrap();
    repo(
        &features_repo,
        &[(
            ".devcontainer/devcontainer.json",
            &features_devcontainer(&registry),
        )],
    );
    let compose_repo = scratch.path().join("compose");
    std::fs::create_dir_all(&compose_repo).unwrap();
    repo(
        &compose_repo,
        &[
            (".devcontainer/devcontainer.json", COMPOSE_DEVCONTAINER),
            (".devcontainer/docker-compose.yml", COMPOSE_FILE),
        ],
    );
    let compose_folder = scratch.path().join("compose-reference");
    if cli.is_some() {
        copy_dir(&compose_repo, &compose_folder);
    }
    let mut bench = Bench {
        cli,
        scratch: scratch.path().to_path_buf(),
        features_repo: features_repo.clone(),
        compose_repo: compose_repo.clone(),
        compose_folder: compose_folder.clone(),
        cleanup: Cleanup {
            data: scratch.path().join("data"),
            repos: vec![features_repo, compose_repo],
            reference_folders: vec![compose_folder],
            compose_projects: Vec::new(),
            images: Vec::new(),
        },
        our_image: None,
        built: Vec::new(),
        round: 0,
    };

    if benching {
        // Warm-up, untimed: page cache for both binaries, node's modules, docker-compose.
        bench.round(&mut Samples::default());
    }
    let mut s = Samples::default();
    for _ in 0..rounds {
        bench.round(&mut s);
    }
    println!("{rounds} samples each");
    let first = report("flightdeck workspace up, features, first (cold)", &s.first);
    report("  ready_ms (in process)", &s.first_ready);
    let cached = report("flightdeck workspace up, features, cached", &s.cached);
    report("  ready_ms (in process)", &s.cached_ready);
    let compose = report("flightdeck workspace up, compose", &s.compose);
    report("  ready_ms (in process)", &s.compose_ready);
    if bench.cli.is_some() {
        let ref_first = report("devcontainer up, features, first (cold)", &s.ref_first);
        let ref_cached = report("devcontainer up, features, cached", &s.ref_cached);
        let ref_compose = report("devcontainer up, compose", &s.ref_compose);
        ratio("first", ref_first, first);
        ratio("cached", ref_cached, cached);
        ratio("compose", ref_compose, compose);
        println!(
            "goal, cached <= 0.5x the reference's cached: {}",
            if cached <= 0.5 * ref_cached {
                "met"
            } else {
                "NOT met"
            }
        );
    }
    // Removes the features images (ours and the reference's) and anything left.
    drop(bench);
}
