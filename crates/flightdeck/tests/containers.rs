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
            // A registry the template's egress does not name is never asked.
            r#"{ "image": "flightdeck-test/busybox:1", "features": { "ghcr.io/devcontainers/features/node:1": {} } }"#,
            "workspace_invalid",
            "add `ghcr.io` to the template's [workspace] egress",
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

/// The local registry holding the test features (`scripts/registry start` publishes them
/// under `flightdeck-test/`; the test command exports this).
fn registry() -> String {
    std::env::var("FLIGHTDECK_TEST_REGISTRY").unwrap_or_else(|_| {
        panic!("FLIGHTDECK_TEST_REGISTRY is not set: run `scripts/registry start` and export what it prints (scripts/test does)")
    })
}

/// `file` as mission `summary` published it.
fn published(repo: &TestRepo, summary: &Value, file: &str) -> String {
    let branch = summary["branch"].as_str().unwrap();
    repo.git(&["show", &format!("{branch}:{file}")])
}

#[test]
fn features_from_a_registry_are_installed_pinned_cached_and_locked() {
    require_engine();
    let registry = registry();
    let devcontainer = format!(
        r#"{{
  "image": "flightdeck-test/busybox:1",
  "features": {{
    "{registry}/flightdeck-test/opts-string:1": {{ "flavor": "mint" }},
    "{registry}/flightdeck-test/depends-a:1": {{}},
    "{registry}/flightdeck-test/env-path:1": {{}},
    "{registry}/flightdeck-test/lifecycle:1": {{}},
    "{registry}/flightdeck-test/entrypoint:1": {{}}
  }},
  "postCreateCommand": "echo definition-postCreate >> /tmp/lifecycle.log"
}}"#
    );
    // What the features did, and in which order, copied into the worktree to be read back.
    let template = r#"goal = "g"
[workspace]
runtime = "docker"
egress = ["localhost"]
[[steps]]
run = '''cp /usr/local/share/flightdeck-features.log features.log && cp /tmp/lifecycle.log lifecycle.log && echo "$PATH" > path.txt && test -f /tmp/entrypoint-ran && echo ok > result.txt'''
"#;
    let repo = repo_with(&devcontainer, template, &[]);
    let cli = Cli::new(BIN);
    let (code, summary) = run(&cli, &repo);
    assert_eq!(code, 0, "{summary}");
    let id = summary["id"].as_str().unwrap().to_string();
    // The recording replays without fetching or building anything.
    let dir = repo.path().to_str().unwrap();
    let out = cli.run(&["replay", &id, "--repo", dir]);
    assert_eq!(out.code(), 0, "{}{}", out.stdout(), out.stderr());
    let log = published(&repo, &summary, "features.log");
    let lines: Vec<&str> = log.lines().collect();
    // depends-b comes in through depends-a's dependsOn (with its options), before it.
    let position = |prefix: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix} not installed: {log}"))
    };
    assert!(
        position("depends-b level=deep") < position("depends-a"),
        "{log}"
    );
    assert!(
        lines.contains(&"opts-string flavor=mint size=medium color=red"),
        "{log}"
    );
    assert_eq!(
        published(&repo, &summary, "lifecycle.log"),
        "lifecycle-onCreate\nlifecycle-postCreate\ndefinition-postCreate",
        "the features' lifecycle commands run before the definition's, stage by stage"
    );
    assert!(
        published(&repo, &summary, "path.txt").starts_with("/opt/env-path/bin:"),
        "containerEnv of a feature"
    );
    let data = provisioned(&cli, &id);
    let features = data["features"].as_array().unwrap();
    let ids: Vec<&str> = features.iter().map(|f| f["id"].as_str().unwrap()).collect();
    assert_eq!(features.len(), 6, "{data}");
    assert!(ids.iter().any(|i| i.contains("depends-b")), "{ids:?}");
    for feature in features {
        let resolved = feature["resolved"].as_str().unwrap();
        assert!(
            resolved.starts_with(&format!("{registry}/flightdeck-test/"))
                && resolved.contains("@sha256:"),
            "{feature}"
        );
        assert!(feature["integrity"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"));
        assert_eq!(feature["version"], "1.0.0");
    }
    let setup: Vec<&str> = data["setup"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(setup.len(), 3, "{setup:?}");
    assert!(setup[0].starts_with("onCreateCommand ("), "{setup:?}");
    assert_eq!(setup[2], "postCreateCommand");
    let image = data["image"].as_str().unwrap().to_string();
    assert!(image.starts_with("flightdeck-features:"), "{image}");

    // The second mission starts from the cached image.
    let (code, again) = run(&cli, &repo);
    assert_eq!(code, 0, "{again}");
    let again = provisioned(&cli, again["id"].as_str().unwrap());
    assert_eq!(again["image"], image.as_str());
    assert_eq!(again["image_digest"], data["image_digest"]);
    assert_eq!(again["features"], data["features"]);

    // `workspace lock` pins what was resolved, as the reference's lock file does.
    let out = cli
        .run(&[
            "--json",
            "workspace",
            "lock",
            "--repo",
            repo.path().to_str().unwrap(),
        ])
        .expect_code(0)
        .json();
    let lock_path = repo.path().join(".devcontainer/devcontainer-lock.json");
    assert_eq!(out["lock_file"], lock_path.display().to_string());
    let lock: Value = serde_json::from_str(&std::fs::read_to_string(&lock_path).unwrap()).unwrap();
    for feature in features {
        let written = feature["id"].as_str().unwrap();
        let locked = &lock["features"][written];
        assert_eq!(locked["resolved"], feature["resolved"], "{lock}");
        let manifest = feature["resolved"]
            .as_str()
            .unwrap()
            .split('@')
            .nth(1)
            .unwrap();
        assert_eq!(locked["integrity"], manifest, "{lock}");
    }
    // A lock file that pins a digest the registry does not serve stops the mission.
    let mut bad = lock.clone();
    for locked in bad["features"].as_object_mut().unwrap().values_mut() {
        let resolved = locked["resolved"].as_str().unwrap();
        let name = resolved.split('@').next().unwrap();
        locked["resolved"] = Value::String(format!("{name}@sha256:{}", "0".repeat(64)));
        locked["integrity"] = Value::String(format!("sha256:{}", "0".repeat(64)));
    }
    std::fs::write(&lock_path, serde_json::to_string_pretty(&bad).unwrap()).unwrap();
    repo.commit_all("a lock file pinning what the registry never served");
    let (code, failed) = run(&cli, &repo);
    assert_eq!(code, 1, "{failed}");
    assert_eq!(failed["error"]["kind"], "workspace_invalid", "{failed}");

    // Without the registry in egress, nothing is fetched and the mission says why.
    let closed = repo_with(
        &devcontainer,
        &template.replace("egress = [\"localhost\"]\n", ""),
        &[],
    );
    let (code, refused) = run(&cli, &closed);
    assert_eq!(code, 1, "{refused}");
    assert_eq!(refused["error"]["kind"], "workspace_invalid", "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("egress"), "{message}");
    cli.run(&["workspace", "gc"]).expect_code(0);
    let _ = std::process::Command::new("docker")
        .args(["rmi", "-f", &image])
        .output();
}

#[test]
fn a_compose_workspace_reaches_its_sidecar_and_goes_with_the_mission() {
    require_engine();
    let registry = registry();
    // A feature is installed on the service's image, its entrypoint run when it starts.
    let devcontainer = format!(
        r#"{{
  "dockerComposeFile": "docker-compose.yml",
  "service": "app",
  "runServices": ["app", "db"],
  "workspaceFolder": "/workspaces/app",
  "features": {{ "{registry}/flightdeck-test/entrypoint:1": {{}} }},
  "postCreateCommand": "echo set-up > setup.txt"
}}"#
    );
    let compose = r#"services:
  app:
    image: flightdeck-test/busybox:1
    depends_on: [db]
  db:
    image: flightdeck-test/busybox:1
    command: ["sh", "-c", "while true; do echo db-answers | nc -l -p 5432; done"]
    ports: ["5432:5432"]
  unused:
    image: flightdeck-test/busybox:1
    command: ["sleep", "600"]
"#;
    let template = r#"goal = "g"
[workspace]
runtime = "docker"
egress = ["localhost"]
[[steps]]
run = '''test "$(pwd)" = /workspaces/app && cat setup.txt && test -f /tmp/entrypoint-ran && nc db 5432 < /dev/null > db.txt && echo ok > result.txt'''
"#;
    let repo = repo_with(
        &devcontainer,
        template,
        &[(".devcontainer/docker-compose.yml", compose)],
    );
    let cli = Cli::new(BIN);
    let (code, summary) = run(&cli, &repo);
    assert_eq!(code, 0, "{summary}");
    let id = summary["id"].as_str().unwrap();
    assert_eq!(published(&repo, &summary, "db.txt"), "db-answers");
    let data = provisioned(&cli, id);
    assert_eq!(data["container"], format!("flightdeck-{id}"));
    let compose = &data["compose"];
    assert_eq!(compose["service"], "app", "{data}");
    assert_eq!(
        compose["project"],
        format!("flightdeck-{}", id.to_lowercase())
    );
    assert!(
        compose["cli"].as_str().unwrap().contains("compose"),
        "{compose}"
    );
    assert_eq!(compose["services"], serde_json::json!(["db"]), "{compose}");
    assert_eq!(data["features"].as_array().map(Vec::len), Some(1), "{data}");
    assert!(
        data["image"]
            .as_str()
            .unwrap()
            .starts_with("flightdeck-features:"),
        "{data}"
    );
    assert!(
        data["ignored"]
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.contains("ports")),
        "published ports are reported, not applied: {data}"
    );
    // The project went with the mission: no container, no network.
    assert!(containers_of(id).is_empty(), "{:?}", containers_of(id));
    let networks = std::process::Command::new("docker")
        .args([
            "network",
            "ls",
            "--filter",
            &format!(
                "label=com.docker.compose.project={}",
                compose["project"].as_str().unwrap()
            ),
            "--format",
            "{{.Name}}",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&networks.stdout).trim().is_empty(),
        "{networks:?}"
    );
}

#[test]
fn a_private_registry_is_reached_with_the_login_of_a_secret_and_never_records_it() {
    require_engine();
    let registry = std::env::var("FLIGHTDECK_TEST_REGISTRY_TOKEN")
        .expect("FLIGHTDECK_TEST_REGISTRY_TOKEN: run `scripts/registry start` (scripts/test does)");
    let user = std::env::var("FLIGHTDECK_TEST_REGISTRY_USER").unwrap();
    let password = std::env::var("FLIGHTDECK_TEST_REGISTRY_PASSWORD").unwrap();
    let devcontainer = format!(
        r#"{{ "image": "flightdeck-test/busybox:1",
  "features": {{ "{registry}/flightdeck-test/opts-bool:1": {{ "verbose": true }} }} }}"#
    );
    let template = |secrets: &str| {
        format!(
            "goal = \"g\"\n[workspace]\nruntime = \"docker\"\negress = [\"localhost\"]\nsecrets = [{secrets}]\n[[steps]]\nsecrets = []\nrun = \"cp /usr/local/share/flightdeck-features.log features.log\"\n"
        )
    };
    let repo = repo_with(&devcontainer, &template("\"REGISTRY_TOKEN\""), &[]);
    let cli = Cli::new(BIN);
    cli.write_config(&format!(
        "[secrets.REGISTRY_TOKEN]\nenv = \"FD_TEST_REGISTRY_PASSWORD\"\nregistry = \"{registry}\"\nusername = \"{user}\"\nrepos = [\"{}\"]\n",
        repo.path().display()
    ));
    let run_with_login = |repo: &TestRepo| {
        let mut command = cli.command(&[
            "--json",
            "run",
            "t",
            "--repo",
            repo.path().to_str().unwrap(),
        ]);
        command.env("FD_TEST_REGISTRY_PASSWORD", &password);
        let out = command.output().unwrap();
        let summary: Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
        (out.status.code().unwrap_or(-1), summary)
    };
    let (code, summary) = run_with_login(&repo);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(
        published(&repo, &summary, "features.log"),
        "opts-bool enabled=true verbose=true"
    );
    // The login is stored nowhere flightdeck writes.
    for (path, bytes) in cli.data_files() {
        assert!(
            memchr::memmem::find(&bytes, password.as_bytes()).is_none(),
            "the registry password is in {}",
            path.display()
        );
    }
    // A template that does not name the login fetches anonymously, and the registry refuses.
    let anonymous = repo_with(&devcontainer, &template(""), &[]);
    let (code, refused) = run_with_login(&anonymous);
    assert_eq!(code, 1, "{refused}");
    assert_eq!(refused["error"]["kind"], "workspace_invalid", "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("credentials"), "{message}");
    assert!(!message.contains(&password), "{message}");
    cli.run(&["workspace", "gc"]).expect_code(0);
}
