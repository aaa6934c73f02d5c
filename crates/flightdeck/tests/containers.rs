//! Missions in containers, end to end with the real binary and a real Docker engine
//! (`scripts/container-engine start` runs one and imports the busybox test image; the test
//! command exports its DOCKER_HOST): the workspace comes from the repository's
//! devcontainer.json, setup commands run with network only under `network = "setup"`, the
//! agent phase has none, the image digest is recorded and the container goes with the mission.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use flightdeck_testkit::{Cli, TestRepo};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");
const IMAGE: &str = "flightdeck-test/busybox:1";

/// Fails (never skips) when no engine answers: the test command starts one.
fn require_engine() {
    let host = std::env::var("DOCKER_HOST").unwrap_or_default();
    let socket = host
        .strip_prefix("unix://")
        .unwrap_or("/var/run/docker.sock");
    assert!(
        std::path::Path::new(socket).exists(),
        "no container engine at {socket}: run `export \"$(scripts/container-engine start)\"` first (scripts/test does)"
    );
}

fn repo_with(devcontainer: &str, template: &str, files: &[(&str, &str)]) -> TestRepo {
    let mut all = vec![
        ("README.md", "# sample\n"),
        (".devcontainer/devcontainer.json", devcontainer),
        (".flightdeck/missions/t.toml", template),
        (
            ".flightdeck/policy.toml",
            "[defaults]\npublish = \"allow\"\n",
        ),
    ];
    all.extend_from_slice(files);
    let repo = TestRepo::with_files(&all);
    repo.commit_all("sample");
    repo
}

fn run(cli: &Cli, repo: &TestRepo) -> (i32, Value) {
    let out = cli.run(&[
        "--json",
        "run",
        "t",
        "--repo",
        repo.path().to_str().unwrap(),
    ]);
    assert!(!out.stdout().trim().is_empty(), "{}", out.stderr());
    (out.code(), out.json())
}

fn provisioned(cli: &Cli, id: &str) -> Value {
    cli.timeline(id)
        .into_iter()
        .find(|e| e["type"] == "workspace.provisioned")
        .map(|e| e["data"].clone())
        .expect("workspace.provisioned")
}

/// Names of the containers carrying mission `id`'s label.
fn containers_of(id: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            &format!("label=dev.flightdeck.mission={id}"),
            "--format",
            "{{.Names}}",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

const DEVCONTAINER: &str = r#"{
  // A workspace from a local image; setup in two named commands.
  "image": "flightdeck-test/busybox:1",
  "containerEnv": { "GREETING": "hello from containerEnv" },
  "remoteEnv": { "WHERE": "${containerWorkspaceFolder}", "PATH": "${containerEnv:PATH}:/opt/extra" },
  "workspaceFolder": "/workspaces/app",
  "postCreateCommand": {
    "net": "grep -c : /proc/net/dev > .setup-interfaces",
    "env": ["sh", "-c", "echo \"$GREETING\" > setup.txt"],
  },
}"#;

#[test]
fn a_mission_runs_in_its_devcontainer_with_network_only_for_setup() {
    require_engine();
    let template = r#"goal = "g"
[workspace]
runtime = "docker"
network = "setup"
[[steps]]
run = '''test "$(pwd)" = /workspaces/app && test "$WHERE" = /workspaces/app && test "$PATH" = /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/opt/extra && cat setup.txt && test "$(cat .setup-interfaces)" -ge 2 && rm .setup-interfaces && grep -c : /proc/net/dev > agent-interfaces.txt && echo done > result.txt'''
"#;
    let repo = repo_with(DEVCONTAINER, template, &[]);
    let cli = Cli::new(BIN);
    let (code, summary) = run(&cli, &repo);
    assert_eq!(code, 0, "{summary}");
    let id = summary["id"].as_str().unwrap();
    let data = provisioned(&cli, id);
    assert_eq!(data["runtime"], "docker");
    assert_eq!(data["sandbox"], "container");
    assert_eq!(data["network"], "setup");
    assert_eq!(data["image"], IMAGE);
    let digest = data["image_digest"].as_str().unwrap();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    assert_eq!(data["container"], format!("flightdeck-{id}"));
    assert_eq!(
        data["setup"],
        serde_json::json!(["postCreateCommand.env", "postCreateCommand.net"])
    );
    let branch = summary["branch"].as_str().unwrap();
    let show = |file: &str| repo.git(&["show", &format!("{branch}:{file}")]);
    assert_eq!(show("setup.txt").trim(), "hello from containerEnv");
    // The agent phase saw only `lo`.
    assert_eq!(show("agent-interfaces.txt").trim(), "1");
    assert_eq!(show("result.txt").trim(), "done");
    assert!(
        containers_of(id).is_empty(),
        "the container goes with the mission"
    );

    // The recording replays: verifying touches no engine, re-executing runs the commands in
    // a container of its own, removed after.
    let dir = repo.path().to_str().unwrap();
    for args in [
        vec!["replay", id, "--repo", dir],
        vec!["replay", id, "--reexecute", "--repo", dir],
    ] {
        let out = cli.run(&args);
        assert_eq!(out.code(), 0, "{args:?}: {}{}", out.stdout(), out.stderr());
    }
    assert!(containers_of(id).is_empty(), "replays leave no container");
    let out = std::process::Command::new("docker")
        .args(["ps", "-a", "--format", "{{.Names}}"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(&format!("replay-{}", std::process::id())),
        "no replay container is left"
    );
}

#[test]
fn a_built_image_is_recorded_and_the_container_is_collected_when_orphaned() {
    require_engine();
    let devcontainer =
        r#"{ "build": { "dockerfile": "Dockerfile", "args": { "FLAVOUR": "built" } } }"#;
    let dockerfile =
        "FROM flightdeck-test/busybox:1\nARG FLAVOUR\nRUN echo \"$FLAVOUR\" > /flavour\n";
    let template = "goal = \"g\"\n[workspace]\nruntime = \"docker\"\n[[steps]]\nrun = \"cat /flavour; grep -c : /proc/net/dev; exit 4\"\n";
    let repo = repo_with(
        devcontainer,
        template,
        &[(".devcontainer/Dockerfile", dockerfile)],
    );
    let cli = Cli::new(BIN);
    let (code, summary) = run(&cli, &repo);
    assert_eq!(code, 1, "{summary}");
    let message = summary["error"]["message"].as_str().unwrap();
    assert!(message.contains("exited with 4"), "{message}");
    assert!(
        message.contains("built\n1"),
        "the image was built; only lo: {message}"
    );
    let id = summary["id"].as_str().unwrap();
    let data = provisioned(&cli, id);
    assert_eq!(data["image"], format!("flightdeck-build/{id}:latest"));
    assert!(data["image_digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    // A failed mission keeps its workspace for a look; gc takes it.
    assert_eq!(containers_of(id), [format!("flightdeck-{id}")]);
    let dry = cli
        .run(&["--json", "workspace", "gc", "--dry-run"])
        .expect_code(0)
        .json();
    assert!(
        dry["removed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["container"] == format!("flightdeck-{id}")),
        "{dry}"
    );
    assert_eq!(containers_of(id).len(), 1);
    cli.run(&["workspace", "gc"]).expect_code(0);
    assert!(containers_of(id).is_empty());
    let _ = std::process::Command::new("docker")
        .args(["rmi", "-f", &format!("flightdeck-build/{id}:latest")])
        .output();
}

#[test]
fn definitions_flightdeck_cannot_honour_fail_the_mission_saying_why() {
    require_engine();
    let template = "goal = \"g\"\n[workspace]\nruntime = \"docker\"\n[[steps]]\nrun = \"echo ran > ran.txt\"\n";
    for (devcontainer, kind, says) in [
        (
            r#"{ "image": "flightdeck-test/busybox:1", "features": { "ghcr.io/devcontainers/features/node:1": {} } }"#,
            "workspace_invalid",
            "registry",
        ),
        (
            r#"{ "image": "flightdeck-test/no-such-image:9" }"#,
            "workspace_invalid",
            "is not present locally",
        ),
        (
            r#"{ "image": "flightdeck-test/busybox:1", "onCreateCommand": "echo broken >&2; exit 9" }"#,
            "setup_failed",
            "exited with 9",
        ),
        (
            r#"{ "image": "flightdeck-test/busybox:1", "runArgs": ["--network", "host"] }"#,
            "workspace_invalid",
            "--network host",
        ),
    ] {
        let repo = repo_with(devcontainer, template, &[]);
        let cli = Cli::new(BIN);
        let out = cli.run(&[
            "--json",
            "run",
            "t",
            "--repo",
            repo.path().to_str().unwrap(),
        ]);
        let text = format!("{}{}", out.stdout(), out.stderr());
        assert!(text.contains(says), "{devcontainer}: {text}");
        if !kind.is_empty() {
            assert_eq!(out.code(), 1, "{text}");
            let summary = out.json();
            assert_eq!(summary["status"], "failed");
            assert_eq!(summary["error"]["kind"], kind, "{summary}");
            let id = summary["id"].as_str().unwrap();
            assert!(
                !cli.timeline(id).iter().any(|e| e["type"] == "step.started"),
                "no step ran"
            );
            cli.run(&["workspace", "gc"]).expect_code(0);
            assert!(containers_of(id).is_empty());
        } else {
            assert_ne!(out.code(), 0, "{text}");
        }
    }
}
