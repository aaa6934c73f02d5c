//! devcontainer.json: our reading against the reference (`@devcontainers/cli`,
//! `devcontainer read-configuration`), fixture by fixture, plus tables for the JSONC scanner,
//! the mount strings and runArgs.
//!
//! The reference is the binary named by `FLIGHTDECK_DEVCONTAINER_CLI`, or what
//! `scripts/devcontainer-cli` installs (pinned version, under `target/tools`). Without it the
//! test fails: run `scripts/devcontainer-cli`.
//!
//! Fixtures live in `tests/devcontainers/<NN-name>/`; a name with `-error-` is one we refuse
//! (its message goes to the `errors` snapshot), every other one must parse and agree with the
//! reference field by field.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use flightdeck_workspace::devcontainer::{
    self, devcontainer_id, parse_mount_string, strip_jsonc, CommandForm, DevContainer, ForwardPort,
    ImageSource, JsoncError, LifecycleCommand, Mount, ShutdownAction, Substitution,
};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/devcontainers");

/// The environment both sides see: `${localEnv:…}` must resolve the same.
fn fixture_env() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("FD_TEST_SET".into(), "from-env".into()),
        ("FD_TEST_EMPTY".into(), String::new()),
        ("FD_TEST_ARG".into(), "42".into()),
        ("FD_TEST_HOME".into(), "/home/fd-test".into()),
    ])
}

fn fixtures() -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(FIXTURES)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                path,
            )
        })
        .filter(|(_, path)| path.is_dir())
        .collect();
    out.sort();
    out
}

fn load_fixture(dir: &Path) -> Result<DevContainer, devcontainer::DevcontainerError> {
    let env = fixture_env();
    let lookup = move |name: &str| env.get(name).cloned();
    let config = devcontainer::find(dir).expect("fixture has a devcontainer.json");
    devcontainer::load(dir, &config, &lookup)
}

fn reference_cli() -> &'static Path {
    static CLI: OnceLock<PathBuf> = OnceLock::new();
    CLI.get_or_init(|| {
        const HOW: &str = "the reference devcontainer CLI is needed: run `scripts/devcontainer-cli` \
             (installs @devcontainers/cli with npm) or set FLIGHTDECK_DEVCONTAINER_CLI to its `devcontainer` binary";
        if let Ok(path) = std::env::var("FLIGHTDECK_DEVCONTAINER_CLI") {
            let path = PathBuf::from(path);
            assert!(path.is_file(), "FLIGHTDECK_DEVCONTAINER_CLI={} is not a file; {HOW}", path.display());
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
    })
}

/// Runs `devcontainer read-configuration` on a folder. `docker` is the docker CLI it is given:
/// it asks docker for an existing container of the folder, so a script stands in for it.
fn run_reference(dir: &Path, docker: &Path) -> std::process::Child {
    let mut command = Command::new(reference_cli());
    command
        .args(["read-configuration", "--workspace-folder"])
        .arg(dir)
        .arg("--docker-path")
        .arg(docker)
        // The fixtures sit inside this repository's git tree: without this the reference
        // would take the git root as the workspace.
        .args(["--mount-workspace-git-root", "false"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(fixture_env())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(home) = std::env::var_os("HOME") {
        command.env("HOME", home);
    }
    command
        .spawn()
        .expect("spawn the reference devcontainer CLI")
}

fn reference_output(child: std::process::Child, what: &str) -> Value {
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "reference failed on {what}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("reference output for {what} is not JSON: {e}"))
}

fn fake_docker(dir: &Path, name: &str, script: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn fixtures_match_the_reference() {
    let tools = tempfile::tempdir().unwrap();
    // "No container exists": `docker ps` prints nothing.
    let docker = fake_docker(tools.path(), "docker", "#!/bin/sh\nexit 0\n");
    let all = fixtures();
    assert!(
        all.len() >= 18,
        "expected at least 18 fixtures, found {}",
        all.len()
    );

    let mut accepted = Vec::new();
    let mut errors = String::new();
    for (name, dir) in &all {
        let expect_error = name.contains("-error-");
        match load_fixture(dir) {
            Ok(config) => {
                assert!(
                    !expect_error,
                    "{name}: expected an error, parsed {config:#?}"
                );
                accepted.push((name, dir, config));
            }
            Err(e) => {
                assert!(expect_error, "{name}: {e}");
                errors.push_str(&format!("--- {name}\n{e}\n"));
            }
        }
    }

    // All reference runs at once: each is a Node start-up.
    let children: Vec<_> = accepted
        .iter()
        .map(|(_, dir, _)| run_reference(dir, &docker))
        .collect();
    let mut mismatches = Vec::new();
    let mut snapshot = Map::new();
    for ((name, dir, ours), child) in accepted.iter().zip(children) {
        let reference = reference_output(child, name);
        let mut theirs = reference_view(&reference, dir, &ours.config_file);
        let mine = our_view(ours);
        // Nothing dropped silently: a key of the reference's configuration that we have no
        // field for must be one we report as ignored, or one that asks for nothing.
        for ignored in &ours.ignored {
            remove_unread(&mut theirs, &mine, &ignored.key);
        }
        prune_no_ops(&mut theirs, &mine, "");
        let keys: std::collections::BTreeSet<&String> = theirs.keys().chain(mine.keys()).collect();
        for key in keys {
            let (a, b) = (mine.get(key), theirs.get(key));
            if a != b {
                mismatches.push(format!(
                    "{name}: `{key}`\n  ours:      {}\n  reference: {}",
                    a.map_or("(absent)".into(), Value::to_string),
                    b.map_or("(absent)".into(), Value::to_string)
                ));
            }
        }
        // The id hashes this machine's path of the fixture.
        let id = devcontainer_id(dir, &ours.config_file);
        let ours = replace_strings(
            serde_json::to_value(ours).unwrap(),
            &id,
            "[DEVCONTAINER_ID]",
        );
        snapshot.insert(name.to_string(), ours);
    }
    assert!(
        mismatches.is_empty(),
        "differences from the reference:\n{}",
        mismatches.join("\n")
    );

    let fixtures_root = Path::new(FIXTURES).canonicalize().unwrap();
    let scrub = |text: &str| {
        text.replace(&fixtures_root.to_string_lossy().into_owned(), "[FIXTURES]")
            .replace(FIXTURES, "[FIXTURES]")
    };
    insta::assert_snapshot!(
        "accepted",
        scrub(&serde_json::to_string_pretty(&snapshot).unwrap())
    );
    insta::assert_snapshot!("errors", scrub(&errors));
}

/// Our result in the reference's shape. Paths are absolute on both sides (see
/// `reference_view`).
fn our_view(config: &DevContainer) -> Map<String, Value> {
    let mut out = Map::new();
    let mut put = |key: &str, value: Value| {
        out.insert(key.to_string(), value);
    };
    if let Some(name) = &config.name {
        put("name", json!(name));
    }
    match &config.source {
        ImageSource::Image(image) => put("image", json!(image)),
        ImageSource::Build(build) => {
            let mut b = json!({
                "dockerfile": build.dockerfile,
                "context": build.context,
                "args": build.args,
            });
            if let Some(target) = &build.target {
                b["target"] = json!(target);
            }
            put("build", b);
        }
        ImageSource::Compose(compose) => {
            put("dockerComposeFile", json!(compose.files));
            put("service", json!(compose.service));
            if let Some(services) = &compose.run_services {
                put("runServices", json!(services));
            }
        }
    }
    if !config.features.is_empty() {
        put("features", Value::Object(config.features.clone()));
    }
    if !config.override_feature_install_order.is_empty() {
        put(
            "overrideFeatureInstallOrder",
            json!(config.override_feature_install_order),
        );
    }
    if !config.container_env.is_empty() {
        put("containerEnv", json!(config.container_env));
    }
    if !config.remote_env.is_empty() {
        put("remoteEnv", json!(config.remote_env));
    }
    if let Some(user) = &config.container_user {
        put("containerUser", json!(user));
    }
    if let Some(user) = &config.remote_user {
        put("remoteUser", json!(user));
    }
    put("workspaceFolder", json!(config.workspace_folder));
    put(
        "workspaceMount",
        config
            .workspace_mount
            .as_ref()
            .map_or(Value::Null, our_mount),
    );
    if !config.mounts.is_empty() {
        put("mounts", config.mounts.iter().map(our_mount).collect());
    }
    if !config.run_args.raw.is_empty() {
        put("runArgs", json!(config.run_args.raw));
    }
    for (key, command) in [
        ("initializeCommand", &config.initialize_command),
        ("onCreateCommand", &config.on_create_command),
        ("updateContentCommand", &config.update_content_command),
        ("postCreateCommand", &config.post_create_command),
        ("postStartCommand", &config.post_start_command),
        ("postAttachCommand", &config.post_attach_command),
    ] {
        if let Some(command) = command {
            put(key, our_command(command));
        }
    }
    if let Some(value) = config.override_command {
        put("overrideCommand", json!(value));
    }
    if let Some(action) = config.shutdown_action {
        let action = match action {
            ShutdownAction::None => "none",
            ShutdownAction::StopContainer => "stopContainer",
            ShutdownAction::StopCompose => "stopCompose",
        };
        put("shutdownAction", json!(action));
    }
    if !config.forward_ports.is_empty() {
        let ports = config.forward_ports.iter().map(|port| match port {
            ForwardPort::Port(port) => json!(port),
            ForwardPort::Host { host, port } => json!(format!("{host}:{port}")),
        });
        put("forwardPorts", ports.collect());
    }
    if config.init {
        put("init", json!(true));
    }
    out
}

fn our_command(command: &LifecycleCommand) -> Value {
    let form = |form: &CommandForm| match form {
        CommandForm::Shell(s) => json!(s),
        CommandForm::Exec(args) => json!(args),
    };
    match command {
        LifecycleCommand::Shell(s) => json!(s),
        LifecycleCommand::Exec(args) => json!(args),
        LifecycleCommand::Parallel(named) => Value::Object(
            named
                .iter()
                .map(|(name, f)| (name.clone(), form(f)))
                .collect(),
        ),
    }
}

fn our_mount(mount: &Mount) -> Value {
    match mount {
        Mount::Bind {
            source,
            target,
            readonly,
        } => {
            json!({"type": "bind", "source": source, "target": target, "readonly": readonly})
        }
        Mount::Volume {
            source,
            target,
            readonly,
        } => {
            let mut m = json!({"type": "volume", "target": target, "readonly": readonly});
            if let Some(source) = source {
                m["source"] = json!(source);
            }
            m
        }
        Mount::Tmpfs {
            target,
            readonly,
            size,
            mode,
        } => {
            let mut m = json!({"type": "tmpfs", "target": target, "readonly": readonly});
            if let Some(size) = size {
                m["tmpfs-size"] = json!(size);
            }
            if let Some(mode) = mode {
                m["tmpfs-mode"] = json!(mode);
            }
            m
        }
    }
}

/// The reference's `configuration` (and `workspace`) normalized to compare with ours. Each
/// normalization is a place where we represent the same thing differently:
fn reference_view(output: &Value, dir: &Path, config_file: &Path) -> Map<String, Value> {
    let mut config = output["configuration"]
        .as_object()
        .cloned()
        .expect("configuration object");
    // Added by the reference: where it read the file (a VS Code URI).
    config.remove("configFilePath");
    // Editor metadata, which flightdeck ignores on purpose without a report.
    for key in ["customizations", "$schema", "extensions", "settings"] {
        config.remove(key);
    }
    // An empty `features` is accepted and means nothing.
    if config.get("features") == Some(&json!({})) {
        config.remove("features");
    }
    // Compose files: the reference keeps them as written (a string or an array); we resolve
    // them against the file's folder, as it does when it runs compose.
    if let Some(files) = config.remove("dockerComposeFile") {
        let folder = config_file.parent().unwrap();
        let files: Vec<Value> = match files {
            Value::String(file) => vec![json!(lexical(&folder.join(file)))],
            Value::Array(files) => files
                .iter()
                .map(|f| json!(lexical(&folder.join(f.as_str().unwrap()))))
                .collect(),
            other => panic!("dockerComposeFile: {other}"),
        };
        config.insert("dockerComposeFile".into(), Value::Array(files));
    }
    // `${devcontainerId}`: read-configuration leaves it while no container exists; we put in
    // the id, which `devcontainer_id_matches_the_reference` checks against a reference run that
    // does substitute it.
    let id = devcontainer_id(dir, config_file);
    let mut config = replace_strings(Value::Object(config), "${devcontainerId}", &id);
    let config = config.as_object_mut().unwrap();

    // `build` paths: the reference keeps them as written; we resolve them against the file's
    // folder as it does when building (context defaults to the Dockerfile's folder). The legacy
    // top-level `dockerFile`/`context` becomes `build`; a missing `args` is empty.
    let folder = config_file.parent().unwrap();
    let legacy = config.remove("dockerFile");
    let legacy_context = config.remove("context");
    let build = config.remove("build");
    let build_field = |key: &str| build.as_ref().and_then(|b| b.get(key)).cloned();
    let (dockerfile, context) = match legacy {
        Some(file) => (Some(file), legacy_context),
        None => (build_field("dockerfile"), build_field("context")),
    };
    if let Some(dockerfile) = dockerfile {
        let dockerfile = lexical(&folder.join(dockerfile.as_str().unwrap()));
        let context = match context {
            Some(c) => lexical(&folder.join(c.as_str().unwrap())),
            None => dockerfile.parent().unwrap().to_path_buf(),
        };
        let mut b = json!({
            "dockerfile": dockerfile,
            "context": context,
            "args": build_field("args").unwrap_or(json!({})),
        });
        if let Some(target) = build_field("target") {
            b["target"] = target;
        }
        // The rest of `build` as the reference has it: compared (and so reported as ignored
        // by us, see `remove_unread`).
        if let Some(Value::Object(rest)) = &build {
            for (key, value) in rest {
                if !["dockerfile", "context", "args", "target"].contains(&key.as_str()) {
                    b[key] = value.clone();
                }
            }
        }
        // With a Dockerfile the reference builds and does not use `image`.
        config.remove("image");
        config.insert("build".into(), b);
    }

    // The defaults the reference computes for workspaceFolder/workspaceMount are in its
    // `workspace` output, not in `configuration`.
    let workspace = &output["workspace"];
    config.insert(
        "workspaceFolder".into(),
        workspace["workspaceFolder"].clone(),
    );
    let mount = match &workspace["workspaceMount"] {
        Value::String(s) if !s.is_empty() => reference_mount(&json!(s)),
        _ => Value::Null,
    };
    config.insert("workspaceMount".into(), mount);
    if let Some(Value::Array(mounts)) = config.remove("mounts") {
        config.insert(
            "mounts".into(),
            mounts.iter().map(reference_mount).collect(),
        );
    }

    // Empty lifecycle commands: the reference keeps them and skips them when running; we
    // drop them.
    for key in [
        "initializeCommand",
        "onCreateCommand",
        "updateContentCommand",
        "postCreateCommand",
        "postStartCommand",
        "postAttachCommand",
    ] {
        let empty = match config.get(key) {
            Some(Value::String(s)) => s.trim().is_empty(),
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Object(o)) => o.is_empty(),
            _ => false,
        };
        if empty {
            config.remove(key);
        }
    }
    config.clone()
}

/// Removes the key at the dotted `path` (one we report as ignored) from the reference's side,
/// unless our side has it too (a field we read and compare, such as `forwardPorts`).
fn remove_unread(theirs: &mut Map<String, Value>, mine: &Map<String, Value>, path: &str) {
    let parts: Vec<&str> = path.split('.').collect();
    let (last, parents) = parts.split_last().unwrap();
    let mut theirs = theirs;
    let mut mine = Some(mine);
    for part in parents {
        mine = mine.and_then(|m| m.get(*part)).and_then(Value::as_object);
        match theirs.get_mut(*part) {
            Some(Value::Object(inner)) => theirs = inner,
            _ => return,
        }
    }
    if mine.is_none_or(|m| !m.contains_key(*last)) {
        theirs.remove(*last);
    }
}

/// Whether a value asks for nothing.
type NoOp = fn(&Value) -> bool;

/// Values that ask flightdeck for nothing: what it does anyway.
const NO_OPS: &[(&str, NoOp)] = &[
    ("userEnvProbe", |v| v == "none"),
    ("updateRemoteUserUID", |v| v == &json!(false)),
    ("init", |v| v == &json!(false)),
    ("hostRequirements.gpu", |v| v == &json!(false)),
];

/// Drops from the reference's side what we have no field for and that asks for nothing:
/// `null`, `[]`, `{}`, `""`, the values in [`NO_OPS`], and objects left empty by the removals.
fn prune_no_ops(theirs: &mut Map<String, Value>, mine: &Map<String, Value>, prefix: &str) {
    let keys: Vec<String> = theirs.keys().cloned().collect();
    for key in keys {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let ours = mine.get(&key);
        if let (Some(Value::Object(inner)), Some(Value::Object(ours))) =
            (theirs.get_mut(&key), ours)
        {
            prune_no_ops(inner, ours, &path);
            continue;
        }
        if ours.is_some() {
            continue;
        }
        if let Some(Value::Object(inner)) = theirs.get_mut(&key) {
            prune_no_ops(inner, &Map::new(), &path);
        }
        let value = &theirs[&key];
        let nothing = match value {
            Value::Null => true,
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            _ => false,
        } || NO_OPS.iter().any(|(p, no_op)| *p == path && no_op(value));
        if nothing {
            theirs.remove(&key);
        }
    }
}

/// A mount as docker reads it, from the reference's string or object, independently of our
/// parser: `key=value` fields with docker's aliases, `type` defaulting to volume and
/// `readonly` to false (as in docker), `consistency` dropped (docker ignores it on Linux), bind
/// sources normalized lexically (we do, so that no `..` reaches docker).
fn reference_mount(mount: &Value) -> Value {
    let mut fields: BTreeMap<String, String> = match mount {
        Value::String(s) => s
            .split(',')
            .map(|field| match field.split_once('=') {
                Some((k, v)) => (k.to_ascii_lowercase(), v.to_string()),
                None => (field.to_ascii_lowercase(), "true".to_string()),
            })
            .map(|(k, v)| {
                let k = match k.as_str() {
                    "src" => "source".to_string(),
                    "dst" | "destination" => "target".to_string(),
                    "ro" => "readonly".to_string(),
                    _ => k,
                };
                (k, v)
            })
            .collect(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect(),
        other => panic!("reference mount {other}"),
    };
    fields.remove("consistency");
    let kind = fields.remove("type").unwrap_or_else(|| "volume".into());
    let readonly = fields
        .remove("readonly")
        .is_some_and(|v| v == "true" || v == "1");
    let mut out = json!({"type": kind, "readonly": readonly});
    for (key, value) in fields {
        out[&key] = if key == "source" && kind == "bind" {
            json!(lexical(Path::new(&value)))
        } else {
            json!(value)
        };
    }
    out
}

fn replace_strings(value: Value, from: &str, to: &str) -> Value {
    match value {
        Value::String(s) => Value::String(s.replace(from, to)),
        Value::Array(items) => items
            .into_iter()
            .map(|v| replace_strings(v, from, to))
            .collect(),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, replace_strings(v, from, to)))
                .collect(),
        ),
        other => other,
    }
}

fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `${devcontainerId}` against the reference: its read-configuration substitutes it once a
/// container with the folder's id labels exists, so a stand-in docker reports one.
#[test]
fn devcontainer_id_matches_the_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("id-repo");
    std::fs::create_dir_all(repo.join(".devcontainer")).unwrap();
    let config = repo.join(".devcontainer/devcontainer.json");
    std::fs::write(
        &config,
        r#"{"image": "debian:12", "containerEnv": {"ID": "${devcontainerId}"}}"#,
    )
    .unwrap();
    let inspect = json!([{
        "Id": "0123456789ab",
        "Created": "2024-01-01T00:00:00Z",
        "Name": "/fd-test",
        "State": {"Status": "running", "StartedAt": "2024-01-01T00:00:00Z"},
        "Config": {"Env": [], "User": "", "Labels": {
            "devcontainer.local_folder": repo,
            "devcontainer.config_file": config,
        }},
        "Mounts": [],
        "NetworkSettings": {"Ports": {}},
    }]);
    let script = format!(
        "#!/bin/sh\ncase \"$1\" in\n  ps) echo 0123456789ab ;;\n  inspect) cat <<'JSON'\n{inspect}\nJSON\n ;;\n  *) exit 1 ;;\nesac\n"
    );
    let docker = fake_docker(tmp.path(), "docker-with-container", &script);
    let output = reference_output(run_reference(&repo, &docker), "the devcontainerId probe");
    let theirs = output["configuration"]["containerEnv"]["ID"]
        .as_str()
        .unwrap();
    assert_eq!(devcontainer_id(&repo, &config), theirs);
    assert_eq!(theirs.len(), 52);

    let ours = devcontainer::load(&repo, Path::new(".devcontainer/devcontainer.json"), &|_| {
        None
    })
    .unwrap();
    assert_eq!(ours.container_env["ID"], theirs);
}

#[test]
fn devcontainer_id_known_value() {
    // Printed by @devcontainers/cli 0.89.0 for this folder and file.
    assert_eq!(
        devcontainer_id(
            Path::new("/tmp/dcid"),
            Path::new("/tmp/dcid/.devcontainer/devcontainer.json")
        ),
        "092gjh0pih6ise1k466locs5nf5cik531vi765fims3i1u1u10a6"
    );
}

#[test]
fn find_prefers_the_devcontainer_folder() {
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(devcontainer::find(tmp.path()), None);
    std::fs::write(tmp.path().join(".devcontainer.json"), "{}").unwrap();
    assert_eq!(
        devcontainer::find(tmp.path()),
        Some(tmp.path().join(".devcontainer.json"))
    );
    std::fs::create_dir(tmp.path().join(".devcontainer")).unwrap();
    std::fs::write(tmp.path().join(".devcontainer/devcontainer.json"), "{}").unwrap();
    assert_eq!(
        devcontainer::find(tmp.path()),
        Some(tmp.path().join(".devcontainer/devcontainer.json"))
    );
}

/// A committed symlink inside the repository must not carry a bind mount (or the build
/// context) out to the host: `load` resolves links, `parse` alone cannot.
#[test]
fn symlinks_out_of_the_repository_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(repo.join(".devcontainer")).unwrap();
    std::os::unix::fs::symlink("/etc", repo.join("etc-link")).unwrap();
    let write =
        |text: &str| std::fs::write(repo.join(".devcontainer/devcontainer.json"), text).unwrap();
    let load = || {
        devcontainer::load(&repo, Path::new(".devcontainer/devcontainer.json"), &|_| {
            None
        })
    };

    write(
        r#"{"image": "x", "mounts": ["type=bind,source=${localWorkspaceFolder}/etc-link,target=/e"]}"#,
    );
    let e = load().unwrap_err().to_string();
    assert!(
        e.contains("`mounts[0]`") && e.contains("symbolic link"),
        "{e}"
    );

    write(
        r#"{"image": "x", "mounts": ["type=bind,source=${localWorkspaceFolder}/etc-link/not-yet,target=/e"]}"#,
    );
    let e = load().unwrap_err().to_string();
    assert!(e.contains("symbolic link"), "{e}");

    write(r#"{"build": {"dockerfile": "Dockerfile", "context": "../etc-link"}}"#);
    let e = load().unwrap_err().to_string();
    assert!(
        e.contains("`build.context`") && e.contains("symbolic link"),
        "{e}"
    );

    write(
        r#"{"image": "x", "mounts": ["type=bind,source=${localWorkspaceFolder}/real,target=/r"]}"#,
    );
    std::fs::create_dir(repo.join("real")).unwrap();
    load().unwrap();
}

#[test]
fn jsonc_scanner_table() {
    let ok: &[(&str, Value)] = &[
        ("{}", json!({})),
        ("{\"a\": 1, // c\n}", json!({"a": 1})),
        (
            "{\"a\": \"// not a comment\"}",
            json!({"a": "// not a comment"}),
        ),
        (
            "{\"a\": \"/* not */ either\"}",
            json!({"a": "/* not */ either"}),
        ),
        ("[1, 2, /* c */ ]", json!([1, 2])),
        ("[1,\n// x\n]", json!([1])),
        ("[1, /* a */ // b\n /* c */]", json!([1])),
        ("{\"a\": [1,],}", json!({"a": [1]})),
        ("{\"a\": \"\\\"//\"}", json!({"a": "\"//"})),
        (
            "{\"a\": \"\\\\\", \"b\": 2 // c\n}",
            json!({"a": "\\", "b": 2}),
        ),
        ("{\"a\": \"x,\"}", json!({"a": "x,"})),
        ("{\"é\": 1 /* ü 🚀 */}", json!({"é": 1})),
        ("{\"a\": 1}\r\n// end", json!({"a": 1})),
        ("/**/{\"a\"/**/:/**/1/**/}", json!({"a": 1})),
        (
            "/* ** / * */ {\"a\": {\"b\": [],},}",
            json!({"a": {"b": []}}),
        ),
        ("// only a comment\n\"s\"", json!("s")),
    ];
    for (input, expected) in ok {
        let stripped = strip_jsonc(input).unwrap();
        assert_eq!(
            stripped.len(),
            input.len(),
            "offsets must not move: {input:?}"
        );
        let value: Value = serde_json::from_str(&stripped)
            .unwrap_or_else(|e| panic!("{input:?} -> {stripped:?}: {e}"));
        assert_eq!(&value, expected, "{input:?}");
    }
    let err: &[(&str, (usize, usize))] = &[
        ("/* never closed", (1, 1)),
        ("{}\n  /* x", (2, 3)),
        ("{\"é\": 1} /* ü", (1, 10)),
    ];
    for (input, (line, column)) in err {
        let e: JsoncError = strip_jsonc(input).unwrap_err();
        assert_eq!((e.line, e.column), (*line, *column), "{input:?}: {e}");
    }
}

#[test]
fn mount_string_table() {
    let bind = |source: &str, target: &str, readonly: bool| Mount::Bind {
        source: source.into(),
        target: target.into(),
        readonly,
    };
    let volume = |source: Option<&str>, target: &str, readonly: bool| Mount::Volume {
        source: source.map(Into::into),
        target: target.into(),
        readonly,
    };
    let ok: Vec<(&str, Mount)> = vec![
        ("type=bind,source=/r/x,target=/x", bind("/r/x", "/x", false)),
        (
            "source=/r/x,target=/x,type=bind,readonly",
            bind("/r/x", "/x", true),
        ),
        ("type=bind,src=/a,dst=/b,ro=false", bind("/a", "/b", false)),
        (
            "type=bind,source=/a,destination=/b,readonly=1",
            bind("/a", "/b", true),
        ),
        ("Type=BIND,Source=/A,Target=/B", bind("/A", "/B", false)),
        (
            "type=bind,source=/a,target=/b,consistency=cached",
            bind("/a", "/b", false),
        ),
        (
            "type=bind,source=/a,target=/b,source=/c",
            bind("/c", "/b", false),
        ),
        (
            "\"type=bind\",\"source=/a,b\",target=/c",
            bind("/a,b", "/c", false),
        ),
        (
            "type=bind,\"source=/say \"\"hi\"\"\",target=/c",
            bind("/say \"hi\"", "/c", false),
        ),
        (
            "type=volume,source=cache,target=/cache",
            volume(Some("cache"), "/cache", false),
        ),
        ("target=/anon", volume(None, "/anon", false)),
        (
            "type=volume,target=/ro,readonly=true",
            volume(None, "/ro", true),
        ),
        (
            "type=tmpfs,target=/tmp,tmpfs-size=64m,tmpfs-mode=1777",
            Mount::Tmpfs {
                target: "/tmp".into(),
                readonly: false,
                size: Some("64m".into()),
                mode: Some("1777".into()),
            },
        ),
    ];
    for (input, expected) in ok {
        assert_eq!(parse_mount_string(input).unwrap(), expected, "{input}");
    }
    let err: &[(&str, &str)] = &[
        ("type=bind,target=/x", "needs a `source`"),
        ("type=bind,source=/a", "no `target`"),
        (
            "type=bind,source=/a,target=relative",
            "not an absolute path",
        ),
        ("type=npipe,source=a,target=/b", "mount type `npipe`"),
        (
            "type=bind,source=/a,target=/b,bind-propagation=rshared",
            "`bind-propagation`",
        ),
        (
            "type=volume,source=v,target=/b,volume-opt=device=/",
            "`volume-opt`",
        ),
        (
            "type=volume,source=v,target=/b,volume-driver=local",
            "`volume-driver`",
        ),
        (
            "type=volume,source=/etc,target=/b",
            "is a path, not a volume name",
        ),
        ("type=tmpfs,source=x,target=/b", "has no `source`"),
        (
            "type=volume,target=/b,tmpfs-size=1",
            "apply to `type=tmpfs` only",
        ),
        ("type=bind,,source=/a,target=/b", "empty field"),
        ("type=bind,source=/a,target=/b,", "empty field"),
        (
            "type=bind,source=/a,target=/b,readonly=maybe",
            "`readonly=maybe`",
        ),
        ("type=bind,source,target=/b", "`source` needs a value"),
        ("type=bind,\"source=/a,target=/b", "never closed"),
        (
            "type=bind,so\"urce=/a,target=/b",
            "quote inside an unquoted field",
        ),
        (
            "\"type=bind\"x,source=/a,target=/b",
            "after a closing quote",
        ),
    ];
    for (input, needle) in err {
        let e = parse_mount_string(input).unwrap_err().to_string();
        assert!(
            e.contains(needle),
            "{input}: {e:?} should mention {needle:?}"
        );
    }
}

fn parse_inline(text: &str) -> Result<DevContainer, String> {
    let root = Path::new("/repo");
    let env = |name: &str| (name == "SET").then(|| "yes".to_string());
    let ctx = Substitution {
        local_workspace_folder: root,
        env: &env,
        devcontainer_id: None,
    };
    devcontainer::parse(
        text,
        Path::new("/repo/.devcontainer/devcontainer.json"),
        &ctx,
    )
    .map_err(|e| e.to_string())
}

#[test]
fn run_args_table() {
    let ok: &[(&str, &str, Value)] = &[
        (r#"["--network", "none"]"#, "network", json!("none")),
        (r#"["--network=none"]"#, "network", json!("none")),
        (r#"["--net", "bridge"]"#, "network", json!("bridge")),
        (r#"["--net=host"]"#, "network", json!("host")),
        (
            r#"["-e", "A=1", "--env=B=2=3", "-eC=", "-e=D=4"]"#,
            "env",
            json!({"A": "1", "B": "2=3", "C": "", "D": "4"}),
        ),
        (
            r#"["--env", "A=1", "--env", "A=2"]"#,
            "env",
            json!({"A": "2"}),
        ),
        (r#"["-u", "1000"]"#, "user", json!("1000")),
        (r#"["--user=dev:dev"]"#, "user", json!("dev:dev")),
        (r#"["-u", "a", "--user", "b"]"#, "user", json!("b")),
        (
            r#"["--label", "a=b", "-l", "c", "--label=d=e=f"]"#,
            "labels",
            json!({"a": "b", "c": "", "d": "e=f"}),
        ),
    ];
    for (args, field, expected) in ok {
        let text = format!(r#"{{"image": "x", "runArgs": {args}}}"#);
        let config = parse_inline(&text).unwrap_or_else(|e| panic!("{args}: {e}"));
        let run = serde_json::to_value(&config.run_args).unwrap();
        assert_eq!(&run[field], expected, "{args}");
        assert_eq!(run["raw"], serde_json::from_str::<Value>(args).unwrap());
    }
    let err: &[(&str, &str)] = &[
        (
            r#"["--privileged"]"#,
            "`runArgs[0]`: `--privileged` is not supported",
        ),
        (
            r#"["--network=none", "--cap-add", "SYS_ADMIN"]"#,
            "`runArgs[1]`: `--cap-add`",
        ),
        (r#"["-v", "/:/host"]"#, "`-v`"),
        (r#"["--volume=/:/host"]"#, "`--volume=/:/host`"),
        (
            r#"["--mount", "type=bind,source=/,target=/h"]"#,
            "`--mount`",
        ),
        (r#"["--pid=host"]"#, "`--pid=host`"),
        (
            r#"["--security-opt", "seccomp=unconfined"]"#,
            "`--security-opt`",
        ),
        (r#"["--device", "/dev/kvm"]"#, "`--device`"),
        (r#"["--env-file", ".env"]"#, "`--env-file`"),
        (r#"["-it"]"#, "`-it`"),
        (r#"["--network none"]"#, "`--network none`"),
        (r#"["--network"]"#, "`--network` needs a value"),
        (
            r#"["--network", "a", "--network", "b"]"#,
            "a second `--network`",
        ),
        (r#"["-e", "SECRET"]"#, "copy the host's variable `SECRET`"),
    ];
    for (args, needle) in err {
        let text = format!(r#"{{"image": "x", "runArgs": {args}}}"#);
        let e = parse_inline(&text).unwrap_err();
        assert!(
            e.contains(needle),
            "{args}: {e:?} should mention {needle:?}"
        );
    }
}

/// Substitution and field errors not covered by a fixture.
#[test]
fn parse_edge_table() {
    let ok: &[(&str, &str, Value)] = &[
        (
            r#"{"image": "${localEnv:SET}"}"#,
            "source",
            json!({"image": "yes"}),
        ),
        (
            r#"{"image": "x", "name": "${a\n}${localEnv:SET}"}"#,
            "name",
            json!("${a\n}yes"),
        ),
        (
            r#"{"image": "x", "name": "$${localEnv:SET}}"}"#,
            "name",
            json!("$yes}"),
        ),
        (
            r#"{"image": "x", "name": "${localEnv:}"}"#,
            "name",
            json!(""),
        ),
        (
            r#"{"image": "x", "name": "${devcontainerId}"}"#,
            "name",
            json!("${devcontainerId}"),
        ),
        (
            r#"{"image": "x", "containerEnv": {"${localEnv:SET}": "keys stay"}}"#,
            "container_env",
            json!({"${localEnv:SET}": "keys stay"}),
        ),
        (
            r#"{"image": "x", "workspaceFolder": "/w/${containerWorkspaceFolderBasename}"}"#,
            "workspace_folder",
            json!("/w/${containerWorkspaceFolderBasename}"),
        ),
        (
            r#"{"image": "x", "workspaceMount": ""}"#,
            "workspace_mount",
            Value::Null,
        ),
        (
            r#"{"image": "x", "postCreateCommand": "  "}"#,
            "post_create_command",
            Value::Null,
        ),
        (
            r#"{"image": "x", "build": {"args": {"A": "1"}}}"#,
            "source",
            json!({"image": "x"}),
        ),
        (
            r#"{"image": "x", "build": {"dockerfile": "../Dockerfile"}}"#,
            "source",
            json!({"build": {"dockerfile": "/repo/Dockerfile", "context": "/repo", "args": {}, "target": null}}),
        ),
        (
            r#"{"image": "x", "privileged": false, "capAdd": [], "securityOpt": null}"#,
            "init",
            json!(false),
        ),
        (
            "\u{feff}{\"image\": \"bom\"}",
            "source",
            json!({"image": "bom"}),
        ),
    ];
    for (text, field, expected) in ok {
        let config = parse_inline(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(
            &serde_json::to_value(&config).unwrap()[field],
            expected,
            "{text}"
        );
    }
    let err: &[(&str, &str)] = &[
        ("[]", "`(root)`: the file holds an array"),
        (r#"{"name": "x"}"#, "names no image and no Dockerfile"),
        (
            r#"{"image": "x", "name": "${localEnv}"}"#,
            "`name`: `${localEnv}` names no environment variable",
        ),
        (
            r#"{"image": "x", "containerEnv": {"A": 1}}"#,
            "`containerEnv.A`: expected a string, found a number",
        ),
        (
            r#"{"image": "x", "mounts": [{"type": "bind", "source": "/repo/a", "target": "/a", "readonly": true}]}"#,
            "`mounts[0].readonly`",
        ),
        (
            r#"{"image": "x", "mounts": ["type=bind,source=relative,target=/a"]}"#,
            "is not an absolute path",
        ),
        (
            r#"{"image": "x", "workspaceMount": "type=bind,source=/,target=/w"}"#,
            "`workspaceMount`",
        ),
        (
            r#"{"image": "x", "workspaceFolder": "w"}"#,
            "not an absolute path in the container",
        ),
        (r#"{"image": "x", "privileged": true}"#, "`privileged`"),
        (r#"{"image": "x", "capAdd": ["SYS_PTRACE"]}"#, "`capAdd`"),
        (
            r#"{"image": "x", "securityOpt": ["seccomp=unconfined"]}"#,
            "`securityOpt`",
        ),
        (
            r#"{"build": {"dockerfile": "/etc/Dockerfile"}}"#,
            "`build.dockerfile`",
        ),
        (
            r#"{"image": "x", "postCreateCommand": {"a": 1}}"#,
            "`postCreateCommand.a`",
        ),
        (
            r#"{"image": "x", "onCreateCommand": ["a", 1]}"#,
            "`onCreateCommand[1]`",
        ),
        (
            r#"{"image": "x", "forwardPorts": [70000]}"#,
            "70000 is not a port",
        ),
        (
            r#"{"image": "x", "forwardPorts": ["3000"]}"#,
            "`3000` is not host:port",
        ),
        (
            r#"{"image": "x", "shutdownAction": "explode"}"#,
            "unknown action",
        ),
        (
            "{\"image\": \"x\",\n  \"name\": }",
            "devcontainer.json:2:11: expected value",
        ),
        (
            "{\"image\": \"x\" /* open",
            "devcontainer.json:1:15: this `/*` comment is never closed",
        ),
    ];
    for (text, needle) in err {
        let e = parse_inline(text).unwrap_err();
        assert!(
            e.contains(needle),
            "{text}: {e:?} should mention {needle:?}"
        );
        assert!(e.contains("\nhint: "), "{text}: {e:?} has no hint");
    }
}

/// The worktree is mounted at `workspaceFolder`: over a system directory the container could
/// not start (or would run on the worktree's files as its system), so such folders are refused
/// when the definition is read, before any container exists.
#[test]
fn workspace_folder_over_a_system_directory_is_refused_table() {
    let refused: &[(&str, &str)] = &[
        ("/", "the container's root directory"),
        ("//", "the container's root directory"),
        ("/workspaces/..", "the container's root directory"),
        ("/proc", "the system directory /proc"),
        ("/proc/", "the system directory /proc"),
        ("/proc/self", "inside /proc"),
        ("/sys/fs/cgroup", "inside /sys"),
        ("/dev", "the system directory /dev"),
        ("/dev/shm", "inside /dev"),
        ("/etc", "the system directory /etc"),
        ("/usr", "the system directory /usr"),
        ("/usr/local/bin", "the system directory /usr/local/bin"),
        ("/bin", "the system directory /bin"),
        ("/lib", "the system directory /lib"),
        ("/./lib64", "the system directory /lib64"),
        ("/workspaces/../../sbin", "the system directory /sbin"),
        ("/var/lib", "the system directory /var/lib"),
    ];
    let mut failures = Vec::new();
    for (folder, says) in refused {
        let text = format!(r#"{{"image": "x", "workspaceFolder": "{folder}"}}"#);
        match parse_inline(&text) {
            Ok(_) => failures.push(format!("{folder}: accepted")),
            Err(e)
                if !(e.contains("`workspaceFolder`")
                    && e.contains(says)
                    && e.contains("\nhint: ")) =>
            {
                failures.push(format!("{folder}: {e}"))
            }
            Err(_) => {}
        }
    }
    // Folders of their own, even below a system directory's neighbours, stay allowed.
    for folder in [
        "/workspaces/repo",
        "/usr/src/app",
        "/home/dev/project",
        "/srv",
        "/procfs",
        "/tmp/w",
    ] {
        let text = format!(r#"{{"image": "x", "workspaceFolder": "{folder}"}}"#);
        if let Err(e) = parse_inline(&text) {
            failures.push(format!("{folder}: refused: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// What becomes of a key we do not simply read.
enum Fate {
    /// Accepted, and these keys (JSON paths) reported in `ignored`, in this order; the reason
    /// of the first must mention the text.
    Reported(&'static [&'static str], &'static str),
    /// Accepted without a report.
    Silent,
    /// Refused: the error names this field.
    Refused(&'static str),
}

/// Every key the spec has that flightdeck does not apply, and unknown ones: refused, reported,
/// or (editor metadata, values that ask for nothing) silent.
#[test]
fn ignored_and_refused_keys_table() {
    use Fate::*;
    let table: &[(&str, Fate)] = &[
        (r#""appPort": 3000"#, Reported(&["appPort"], "no port")),
        (
            r#""appPort": [8080, "0.0.0.0:9090:90"]"#,
            Reported(&["appPort"], "no port"),
        ),
        (r#""appPort": []"#, Silent),
        (
            r#""forwardPorts": [3000]"#,
            Reported(&["forwardPorts"], "no port"),
        ),
        (r#""forwardPorts": []"#, Silent),
        (
            r#""portsAttributes": {"3000": {"label": "web"}}"#,
            Reported(&["portsAttributes"], "no port"),
        ),
        (
            r#""otherPortsAttributes": {"onAutoForward": "ignore"}"#,
            Reported(&["otherPortsAttributes"], "no port"),
        ),
        (
            r#""shutdownAction": "none""#,
            Reported(&["shutdownAction"], "removes the container"),
        ),
        (
            r#""shutdownAction": "stopContainer""#,
            Reported(&["shutdownAction"], "removes the container"),
        ),
        (
            r#""waitFor": "onCreateCommand""#,
            Reported(&["waitFor"], "every lifecycle command"),
        ),
        (r#""overrideCommand": true"#, Silent),
        (r#""overrideCommand": null"#, Silent),
        (r#""overrideCommand": false"#, Refused("overrideCommand")),
        (r#""init": true"#, Reported(&["init"], "PID 1")),
        (r#""init": false"#, Silent),
        (
            r#""userEnvProbe": "loginInteractiveShell""#,
            Reported(&["userEnvProbe"], "remoteEnv"),
        ),
        (
            r#""userEnvProbe": "interactiveShell""#,
            Reported(&["userEnvProbe"], "remoteEnv"),
        ),
        (r#""userEnvProbe": "none""#, Silent),
        (
            r#""updateRemoteUserUID": true"#,
            Reported(&["updateRemoteUserUID"], "UID"),
        ),
        (r#""updateRemoteUserUID": false"#, Silent),
        (
            r#""hostRequirements": {"cpus": 2, "memory": "4gb", "storage": "10gb"}"#,
            Reported(
                &[
                    "hostRequirements.cpus",
                    "hostRequirements.memory",
                    "hostRequirements.storage",
                ],
                "memory_mb",
            ),
        ),
        (
            r#""hostRequirements": {"gpu": "optional"}"#,
            Reported(&["hostRequirements.gpu"], "without a GPU"),
        ),
        (r#""hostRequirements": {"gpu": false}"#, Silent),
        (
            r#""hostRequirements": {"gpu": true}"#,
            Refused("hostRequirements.gpu"),
        ),
        (
            r#""hostRequirements": {"gpu": {"cores": 2, "memory": "8gb"}}"#,
            Refused("hostRequirements.gpu"),
        ),
        (
            r#""hostRequirements": {"gpu": "yes"}"#,
            Refused("hostRequirements.gpu"),
        ),
        (
            r#""hostRequirements": {"gpus": 1}"#,
            Reported(&["hostRequirements.gpus"], "no effect"),
        ),
        (
            r#""hostRequirements": {"memmory": "4gb"}"#,
            Reported(&["hostRequirements.memmory"], "did you mean `memory`?"),
        ),
        (r#""hostRequirements": 4"#, Refused("hostRequirements")),
        (r#""hostRequirements": null"#, Silent),
        (r#""gpu": true"#, Reported(&["gpu"], "hostRequirements.gpu")),
        (
            r#""build": {"dockerfile": "Dockerfile", "cacheFrom": "app:cache"}"#,
            Reported(&["build.cacheFrom"], "cache"),
        ),
        (
            r#""build": {"dockerfile": "Dockerfile", "cacheFrom": []}"#,
            Silent,
        ),
        (
            r#""build": {"dockerfile": "Dockerfile", "options": ["--network=host"]}"#,
            Refused("build.options"),
        ),
        (
            r#""build": {"dockerfile": "Dockerfile", "options": "--pull"}"#,
            Refused("build.options"),
        ),
        (
            r#""build": {"dockerfile": "Dockerfile", "options": []}"#,
            Silent,
        ),
        (
            r#""build": {"dockerfile": "Dockerfile", "targt": "dev"}"#,
            Reported(&["build.targt"], "did you mean `target`?"),
        ),
        (r#""build": "Dockerfile""#, Refused("build")),
        (
            r#""postCreateComand": "make""#,
            Reported(&["postCreateComand"], "did you mean `postCreateCommand`?"),
        ),
        (
            r#""RemoteUser": "dev""#,
            Reported(&["RemoteUser"], "did you mean `remoteUser`?"),
        ),
        (r#""x-notes": null"#, Reported(&["x-notes"], "no effect")),
        (
            r#""overrideFeatureInstallOrder": ["a"], "features": {}"#,
            Reported(&["overrideFeatureInstallOrder"], "no features"),
        ),
        (
            r#""service": "app", "runServices": ["db"]"#,
            Reported(&["service", "runServices"], "dockerComposeFile"),
        ),
        (
            r#""secrets": {"TOKEN": {}}"#,
            Reported(&["secrets"], "[workspace]"),
        ),
        (
            r#""name": "n", "$schema": "https://x", "customizations": {"vscode": {}}, "extensions": ["a"], "settings": {"a": 1}"#,
            Silent,
        ),
        // Several: in the file's order.
        (
            r#""waitFor": "x", "init": true, "appPort": 1"#,
            Reported(&["waitFor", "init", "appPort"], "every lifecycle command"),
        ),
    ];
    for (fragment, fate) in table {
        let text = format!(r#"{{"image": "x", {fragment}}}"#);
        let result = parse_inline(&text);
        match (fate, result) {
            (Silent, Ok(config)) => assert!(
                config.ignored.is_empty(),
                "{fragment}: reported {:?}",
                config.ignored
            ),
            (Reported(keys, why), Ok(config)) => {
                let reported: Vec<&str> = config.ignored.iter().map(|k| k.key.as_str()).collect();
                assert_eq!(&reported, keys, "{fragment}");
                assert!(
                    config.ignored[0].why.contains(why),
                    "{fragment}: {:?} should mention {why:?}",
                    config.ignored[0].why
                );
            }
            (Refused(field), Err(e)) => {
                assert!(
                    e.contains(&format!("`{field}`: ")) && e.contains("\nhint: "),
                    "{fragment}: {e:?} should name `{field}` and give a hint"
                );
            }
            (_, Ok(config)) => panic!("{fragment}: accepted, reporting {:?}", config.ignored),
            (_, Err(e)) => panic!("{fragment}: refused: {e}"),
        }
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    // Strings full of what the scanner looks for.
    let text = "[a-z/*,\\]\\[{}\"\\\\ \n\té🚀]{0,12}";
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        text.prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(text, inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    /// JSON without comments or trailing commas goes through the scanner unchanged.
    #[test]
    fn jsonc_scanner_keeps_plain_json(value in json_value()) {
        for text in [serde_json::to_string(&value).unwrap(), serde_json::to_string_pretty(&value).unwrap()] {
            let stripped = strip_jsonc(&text).unwrap();
            prop_assert_eq!(&stripped, &text);
            prop_assert_eq!(serde_json::from_str::<Value>(&stripped).unwrap(), value.clone());
        }
    }

    /// Comments and trailing commas added to pretty JSON change nothing.
    #[test]
    fn jsonc_scanner_drops_comments_and_trailing_commas(value in json_value()) {
        let pretty = serde_json::to_string_pretty(&value).unwrap();
        // A line comment after every line (repeating the line, so it holds quotes, commas,
        // brackets) and a block comment between lines.
        let commented = pretty
            .lines()
            .map(|line| format!("{line} // {line} /* \n"))
            .collect::<Vec<_>>()
            .join("\n/* { , \" */\n");
        let stripped = strip_jsonc(&commented).unwrap();
        prop_assert_eq!(serde_json::from_str::<Value>(&stripped).unwrap(), value.clone());
        // Pretty JSON has a raw newline only between tokens, so each closer on its own line
        // ends a non-empty container: a comma before it is a trailing one.
        let with_commas = pretty.replace("\n}", ",\n}").replace("\n]", ",\n]");
        let stripped = strip_jsonc(&with_commas).unwrap();
        prop_assert_eq!(serde_json::from_str::<Value>(&stripped).unwrap(), value);
    }
}
