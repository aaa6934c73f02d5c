//! Dev container features end to end: published to local OCI registries (`scripts/registry
//! start`), built onto `flightdeck-test/busybox:1` in a private engine (`scripts/container-engine
//! start`) by flightdeck and by the reference CLI (`@devcontainers/cli`), and the two images
//! compared: what the install scripts logged (same scripts, same options, same order), the
//! image config (Env, User, Entrypoint, Cmd), the files the features installed (contents,
//! modes, owners), the option variables each feature was given, and the pins (our lock file
//! against the one the reference writes). Then hostile input: features asking for privileges,
//! registries wanting credentials, options holding shell code, lock files that do not match,
//! hosts not allowed.
//!
//! These tests fail, not skip, without the engine, the registries or the reference CLI.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use flightdeck_workspace::docker::DockerEngine;
use flightdeck_workspace::features::fetch::{FetchSettings, RegistryCredential, RegistryFetcher};
use flightdeck_workspace::features::image::{self, FeatureBuild, FeatureImage, FeatureImageError};
use flightdeck_workspace::features::resolve::{lockfile_of, ResolvedFeature};
use flightdeck_workspace::features::{lock, FeatureError, FeatureSource, OciVersion};
use serde_json::{json, Map, Value};

const BASE_IMAGE: &str = "flightdeck-test/busybox:1";
/// On every image our builds make here; its value says which test made it.
const LABEL: &str = "flightdeck.test.features";
const NAMESPACE: &str = "flightdeck-test";
/// What every test feature's install.sh appends to.
const LOG: &str = "/usr/local/share/flightdeck-features.log";
/// The image the reference builds (and leaves behind) without BuildKit.
const REFERENCE_TEMP_IMAGE: &str = "dev_container_feature_content_temp";

// ---------------------------------------------------------------------------------------------
// The environment: engine, registries, reference CLI.

struct Registries {
    /// Anonymous.
    open: String,
    /// Basic auth.
    basic: String,
    /// Bearer token flow.
    token: String,
    user: String,
    password: String,
}

fn var(name: &str, how: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => value.trim().to_string(),
        _ => panic!("{name} is not set; {how}"),
    }
}

fn registries() -> Registries {
    const HOW: &str = "run `scripts/registry start` and export the lines it prints \
                       (FLIGHTDECK_TEST_REGISTRY=…, FLIGHTDECK_TEST_REGISTRY_AUTH=…, …)";
    Registries {
        open: var("FLIGHTDECK_TEST_REGISTRY", HOW),
        basic: var("FLIGHTDECK_TEST_REGISTRY_AUTH", HOW),
        token: var("FLIGHTDECK_TEST_REGISTRY_TOKEN", HOW),
        user: var("FLIGHTDECK_TEST_REGISTRY_USER", HOW),
        password: var("FLIGHTDECK_TEST_REGISTRY_PASSWORD", HOW),
    }
}

async fn engine() -> DockerEngine {
    var(
        "DOCKER_HOST",
        "run `scripts/container-engine start` and export the DOCKER_HOST=… line it prints",
    );
    let engine = match DockerEngine::connect().await {
        Ok(engine) => engine,
        Err(e) => panic!(
            "no container engine for the feature tests ({e}).\nRun `scripts/container-engine \
             start` and export the DOCKER_HOST=… line it prints."
        ),
    };
    if let Err(e) = engine.local_image(BASE_IMAGE).await {
        panic!("{e}\nRun `scripts/container-engine start`: it builds {BASE_IMAGE}.");
    }
    engine
}

/// The reference CLI: `FLIGHTDECK_DEVCONTAINER_CLI`, or what `scripts/devcontainer-cli`
/// installs (as tests/devcontainer.rs finds it).
fn reference_cli() -> &'static Path {
    static CLI: OnceLock<PathBuf> = OnceLock::new();
    CLI.get_or_init(|| {
        const HOW: &str = "run `scripts/devcontainer-cli` (installs @devcontainers/cli with npm) \
                           or set FLIGHTDECK_DEVCONTAINER_CLI to its `devcontainer` binary";
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
        let output = std::process::Command::new(&script)
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

/// A fetcher that may reach `hosts` only, over plain http to localhost.
fn fetcher(hosts: &[&str], credentials: &[(&str, &str, &str)]) -> RegistryFetcher {
    RegistryFetcher::new(FetchSettings {
        allowed_hosts: hosts.iter().map(|h| h.to_string()).collect(),
        credentials: credentials
            .iter()
            .map(|(host, user, password)| {
                (
                    host.to_string(),
                    RegistryCredential {
                        username: user.to_string(),
                        password: password.to_string(),
                    },
                )
            })
            .collect(),
        plain_http: vec!["localhost".to_string()],
        ..FetchSettings::default()
    })
    .unwrap()
}

fn unique(what: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// `docker ARGS…`: stdout, or a message with stderr.
async fn docker(args: &[&str]) -> Result<String, String> {
    let output = tokio::process::Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run docker {args:?}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "docker {args:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Removes the images the tests made, even when one panics (best effort).
#[derive(Default)]
struct Cleanup {
    images: Mutex<Vec<String>>,
}

impl Cleanup {
    fn add(&self, image: impl Into<String>) {
        self.images.lock().unwrap().push(image.into());
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let images = std::mem::take(&mut *self.images.lock().unwrap());
        if images.is_empty() {
            return;
        }
        let _ = std::process::Command::new("docker")
            .args(["rmi", "-f"])
            .args(&images)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Untagged images (ids).
async fn dangling_images() -> std::collections::BTreeSet<String> {
    docker(&["images", "-q", "--no-trunc", "--filter", "dangling=true"])
        .await
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Removes what an earlier run of the same test left (it would make our builds cache hits).
async fn remove_leftovers(label_value: &str) {
    let filter = format!("label={LABEL}={label_value}");
    if let Ok(ids) = docker(&["images", "-q", "--filter", &filter]).await {
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rmi", "-f"];
            args.extend(ids);
            let _ = docker(&args).await;
        }
    }
}

fn labels(value: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(LABEL.to_string(), value.to_string())])
}

// ---------------------------------------------------------------------------------------------
// Definitions.

/// One devcontainer.json, built by both.
struct Def {
    name: &'static str,
    /// `features`, in the file's order.
    features: Vec<(String, Value)>,
    override_order: Vec<String>,
    remote_user: Option<&'static str>,
    container_user: Option<&'static str>,
    /// Writes `.devcontainer/local-feature/`.
    local_feature: bool,
    /// Our build reads the lock file the reference's build wrote (so it runs after it).
    locked: bool,
}

impl Def {
    fn new(name: &'static str, features: Vec<(String, Value)>) -> Def {
        Def {
            name,
            features,
            override_order: Vec::new(),
            remote_user: None,
            container_user: None,
            local_feature: false,
            locked: false,
        }
    }

    fn features_map(&self) -> Map<String, Value> {
        self.features.iter().cloned().collect()
    }

    fn devcontainer_json(&self) -> Value {
        let mut config = Map::new();
        config.insert("image".into(), json!(BASE_IMAGE));
        config.insert("features".into(), Value::Object(self.features_map()));
        if !self.override_order.is_empty() {
            config.insert(
                "overrideFeatureInstallOrder".into(),
                json!(self.override_order),
            );
        }
        if let Some(user) = self.remote_user {
            config.insert("remoteUser".into(), json!(user));
        }
        if let Some(user) = self.container_user {
            config.insert("containerUser".into(), json!(user));
        }
        Value::Object(config)
    }

    /// Writes the workspace into `dir`; returns the devcontainer.json's path.
    fn write(&self, dir: &Path, registry: &str) -> PathBuf {
        let config_dir = dir.join(".devcontainer");
        std::fs::create_dir_all(&config_dir).unwrap();
        let config = config_dir.join("devcontainer.json");
        std::fs::write(
            &config,
            serde_json::to_string_pretty(&self.devcontainer_json()).unwrap(),
        )
        .unwrap();
        if self.local_feature {
            write_local_feature(&config_dir.join("local-feature"), registry);
        }
        config
    }
}

fn write_local_feature(dir: &Path, registry: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let metadata = json!({
        "id": "local-feature",
        "version": "0.1.0",
        "name": "A local feature",
        "description": "Test feature in the .devcontainer folder.",
        "options": {
            "greeting": {"type": "string", "default": "hello", "description": "Free string"},
            "loud": {"type": "boolean", "default": false, "description": "Boolean"}
        },
        "containerEnv": {"LOCAL_FEATURE_DIR": "/opt/local-feature"},
        "installsAfter": [format!("{registry}/{NAMESPACE}/opts-string")]
    });
    std::fs::write(
        dir.join("devcontainer-feature.json"),
        serde_json::to_string_pretty(&metadata).unwrap(),
    )
    .unwrap();
    let install = dir.join("install.sh");
    std::fs::write(
        &install,
        "#!/bin/sh\nset -e\nmkdir -p /usr/local/share /opt/local-feature\n\
         if [ -x /usr/local/bin/opts-string-tool ]; then s=present; else s=missing; fi\n\
         echo \"local-feature greeting=${GREETING} loud=${LOUD} dir=${LOCAL_FEATURE_DIR} \
         opts-string=${s}\" >> /usr/local/share/flightdeck-features.log\n\
         echo \"${GREETING}\" > /opt/local-feature/greeting\n",
    )
    .unwrap();
    std::fs::set_permissions(&install, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn definitions(registry: &str) -> Vec<Def> {
    let f = |id: &str| format!("{registry}/{NAMESPACE}/{id}:1");
    let bare = |id: &str| format!("{registry}/{NAMESPACE}/{id}");
    let mut defs = vec![
        Def::new("string-defaults", vec![(f("opts-string"), json!({}))]),
        Def::new(
            "string-explicit-enum-proposal",
            vec![(
                f("opts-string"),
                json!({"flavor": "chocolate chip", "size": "large", "color": "purple"}),
            )],
        ),
        Def::new(
            "booleans",
            vec![
                (f("opts-bool"), json!({"enabled": false, "verbose": true})),
                (f("opts-string"), json!({"size": "small", "color": "green"})),
            ],
        ),
        Def::new(
            "shorthand-version-and-true",
            vec![
                (f("opts-string"), json!("latest")),
                (
                    format!("{registry}/{NAMESPACE}/opts-bool:1.0.0"),
                    json!(true),
                ),
            ],
        ),
        Def::new(
            "container-env-path",
            vec![(f("env-path"), json!({})), (f("opts-string"), json!({}))],
        ),
        Def::new(
            "depends-on",
            vec![(f("depends-a"), json!({"mode": "custom"}))],
        ),
        Def::new(
            "depends-on-listed-with-other-options",
            vec![
                (f("depends-b"), json!({"level": "shallow"})),
                (f("depends-a"), json!({})),
            ],
        ),
        Def::new(
            "installs-after-c-first",
            vec![(f("after-c"), json!({})), (f("after-d"), json!({}))],
        ),
        Def::new(
            "installs-after-d-first",
            // The same cache key as the definition above, built at the same time: one build,
            // and both get its image (image::build holds the key while it looks and builds).
            vec![(f("after-d"), json!({})), (f("after-c"), json!({}))],
        ),
        Def {
            override_order: vec![bare("opts-string"), bare("after-d")],
            ..Def::new(
                "override-install-order",
                vec![
                    (f("after-c"), json!({})),
                    (f("opts-bool"), json!({})),
                    (f("after-d"), json!({})),
                    (f("opts-string"), json!({"flavor": "first"})),
                ],
            )
        },
        Def {
            local_feature: true,
            ..Def::new(
                "local-feature",
                vec![
                    (
                        "./local-feature".to_string(),
                        json!({"greeting": "hi there"}),
                    ),
                    (f("opts-string"), json!({})),
                ],
            )
        },
        Def {
            locked: true,
            ..Def::new(
                "lock-file",
                vec![
                    (f("opts-string"), json!({"flavor": "locked"})),
                    (f("depends-a"), json!({})),
                    (bare("opts-bool"), json!({})),
                ],
            )
        },
        Def {
            remote_user: Some("root"),
            ..Def::new("users-remote-root", vec![(f("users"), json!({}))])
        },
        Def {
            container_user: Some("dev"),
            ..Def::new("users-container-dev", vec![(f("users"), json!({}))])
        },
        Def {
            remote_user: Some("dev"),
            container_user: Some("root"),
            ..Def::new(
                "users-remote-dev-container-root",
                vec![(f("users"), json!({}))],
            )
        },
        Def::new(
            "entrypoint-and-lifecycle",
            vec![(f("entrypoint"), json!({})), (f("lifecycle"), json!({}))],
        ),
    ];
    defs.push(Def {
        override_order: vec![bare("users")],
        remote_user: Some("dev"),
        local_feature: true,
        ..Def::new(
            "combined",
            vec![
                (f("lifecycle"), json!({})),
                ("./local-feature".to_string(), json!({"loud": true})),
                (
                    f("opts-string"),
                    json!({"flavor": "mint", "size": "small", "color": "blue"}),
                ),
                (f("opts-bool"), json!({"verbose": true})),
                (f("env-path"), json!({})),
                (f("depends-a"), json!({"mode": "combo"})),
                (f("after-c"), json!({})),
                (f("after-d"), json!({})),
                (f("users"), json!({})),
                (f("entrypoint"), json!({})),
            ],
        )
    });
    defs
}

// ---------------------------------------------------------------------------------------------
// What an image holds.

/// Lists everything the comparison looks at, in sections.
const INSPECT_SCRIPT: &str = r#"
echo '## log'
cat /usr/local/share/flightdeck-features.log 2>&1
echo '## files'
find /usr/local /opt /home -type f 2>/dev/null | sort | while read -r f; do sha256sum "$f"; done
echo '## modes'
find /usr/local /opt /home 2>/dev/null | sort | while read -r f; do stat -c '%A %U:%G %n' "$f"; done
echo '## options'
for d in $(ls -d /tmp/dev-container-features/*/ 2>/dev/null | sort); do
  echo "[$(basename "$d")]"
  cat "$d/devcontainer-features.env" 2>&1
  echo
done
echo '## builtin'
cat /tmp/dev-container-features/devcontainer-features.builtin.env 2>&1
echo
"#;

#[derive(Debug, Default, PartialEq)]
struct ImageContents {
    log: Vec<String>,
    files: Vec<String>,
    modes: Vec<String>,
    /// `[folder]` then `NAME=value` (unquoted), per feature folder in install order.
    options: Vec<String>,
    builtin: Vec<String>,
    env: Vec<String>,
    user: String,
    entrypoint: Value,
    cmd: Value,
}

/// A value as written in an env file, unquoted (`'…'` with `'\''`, or `"…"` as the reference
/// writes it).
fn unquote(value: &str) -> String {
    if value.len() >= 2 && value.starts_with('\'') && value.ends_with('\'') {
        value[1..value.len() - 1].replace("'\\''", "'")
    } else if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
        value[1..value.len() - 1].to_string()
    } else {
        value.to_string()
    }
}

fn env_lines(text: &[String]) -> Vec<String> {
    text.iter()
        .filter(|l| !l.trim().is_empty())
        .map(|line| match line.split_once('=') {
            Some((name, value)) if !line.starts_with('[') => {
                format!("{name}={}", unquote(value))
            }
            _ => line.clone(),
        })
        .collect()
}

/// Folder names `id_N` sorted by N (the install order).
fn by_install_order(options: Vec<String>) -> Vec<String> {
    let mut groups: Vec<(usize, Vec<String>)> = Vec::new();
    for line in options {
        if let Some(folder) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let n = folder
                .rsplit_once('_')
                .and_then(|(_, n)| n.parse().ok())
                .unwrap_or(usize::MAX);
            groups.push((n, vec![line.clone()]));
        } else if let Some(group) = groups.last_mut() {
            group.1.push(line);
        }
    }
    groups.sort_by_key(|g| g.0);
    let mut out = Vec::new();
    for (_, group) in groups {
        // Variables in name order: ours are sorted on purpose, the reference's are not.
        let mut vars = group[1..].to_vec();
        vars.sort();
        out.push(group[0].clone());
        out.extend(vars);
    }
    out
}

async fn contents(image: &str) -> Result<ImageContents, String> {
    let text = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "/bin/sh",
        image,
        "-c",
        INSPECT_SCRIPT,
    ])
    .await?;
    let mut sections: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("## ") {
            current = name.to_string();
            sections.entry(current.clone()).or_default();
        } else {
            sections
                .entry(current.clone())
                .or_default()
                .push(line.to_string());
        }
    }
    let mut take = |name: &str| sections.remove(name).unwrap_or_default();
    let config_text = docker(&["image", "inspect", "--format", "{{json .Config}}", image]).await?;
    let config: Value = serde_json::from_str(config_text.trim())
        .map_err(|e| format!("docker image inspect {image}: {e}: {config_text}"))?;
    let mut env: Vec<String> = config["Env"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    env.sort();
    Ok(ImageContents {
        log: take("log"),
        files: take("files"),
        modes: take("modes"),
        options: by_install_order(env_lines(&take("options"))),
        builtin: env_lines(&take("builtin")),
        env,
        user: config["User"].as_str().unwrap_or_default().to_string(),
        entrypoint: config["Entrypoint"].clone(),
        cmd: config["Cmd"].clone(),
    })
}

/// Lines only in `reference`, only in `ours`; or both texts when they differ in order only.
fn diff(what: &str, reference: &[String], ours: &[String]) -> Option<String> {
    if reference == ours {
        return None;
    }
    let only_ref: Vec<&String> = reference.iter().filter(|l| !ours.contains(l)).collect();
    let only_ours: Vec<&String> = ours.iter().filter(|l| !reference.contains(l)).collect();
    let mut out = format!("{what} differ:");
    if only_ref.is_empty() && only_ours.is_empty() {
        out.push_str(&format!(
            "\n    same lines, other order or count\n    reference: {reference:#?}\n    ours: {ours:#?}"
        ));
    }
    for line in only_ref {
        out.push_str(&format!("\n    - {line}   (reference only)"));
    }
    for line in only_ours {
        out.push_str(&format!("\n    + {line}   (ours only)"));
    }
    Some(out)
}

fn compare(reference: &ImageContents, ours: &ImageContents) -> Vec<String> {
    let mut out = Vec::new();
    if reference.log.is_empty() {
        out.push("the reference's image has no feature log".to_string());
    }
    out.extend(diff("install logs", &reference.log, &ours.log));
    out.extend(diff(
        "installed files (sha256)",
        &reference.files,
        &ours.files,
    ));
    out.extend(diff("modes and owners", &reference.modes, &ours.modes));
    out.extend(diff(
        "option variables per feature (install order)",
        &reference.options,
        &ours.options,
    ));
    out.extend(diff("builtin env", &reference.builtin, &ours.builtin));
    out.extend(diff("image Env", &reference.env, &ours.env));
    if reference.user != ours.user {
        out.push(format!(
            "image User: reference {:?}, ours {:?}",
            reference.user, ours.user
        ));
    }
    if reference.entrypoint != ours.entrypoint {
        out.push(format!(
            "image Entrypoint: reference {}, ours {}",
            reference.entrypoint, ours.entrypoint
        ));
    }
    if reference.cmd != ours.cmd {
        out.push(format!(
            "image Cmd: reference {}, ours {}",
            reference.cmd, ours.cmd
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The builds.

/// Runs the reference's `devcontainer build`; returns its output on failure.
async fn reference_build(dir: &Path, image: &str) -> Result<(), String> {
    let output = tokio::process::Command::new(reference_cli())
        .args(["build", "--workspace-folder"])
        .arg(dir)
        .args(["--image-name", image, "--log-level", "info"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run the reference CLI: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let tail: String = text
        .lines()
        .rev()
        .take(30)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    Err(format!(
        "reference build failed ({}):\n{tail}",
        output.status
    ))
}

async fn our_build(
    engine: &DockerEngine,
    def: &Def,
    config_file: &Path,
    fetcher: &RegistryFetcher,
    label: &str,
) -> Result<FeatureImage, FeatureImageError> {
    let features = def.features_map();
    let labels = labels(label);
    let scratch = tempfile::tempdir().unwrap();
    image::build(
        engine,
        BASE_IMAGE,
        &FeatureBuild {
            features: &features,
            override_order: &def.override_order,
            config_file,
            container_user: def.container_user,
            remote_user: def.remote_user,
            labels: &labels,
            // The test features install without it (the reference's build has it).
            network: false,
        },
        fetcher,
        scratch.path(),
    )
    .await
}

fn is_sha256(text: &str) -> bool {
    text.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// Our features' pins: `registry/flightdeck-test/<id>@sha256:…` and a `sha256:` integrity.
fn check_pins(registry: &str, features: &[ResolvedFeature]) -> Vec<String> {
    let mut out = Vec::new();
    for feature in features {
        let pinned = &feature.fetched;
        if !is_sha256(&pinned.integrity) {
            out.push(format!(
                "`{}`: integrity {:?} is not sha256:<hex>",
                feature.written, pinned.integrity
            ));
        }
        match &feature.source {
            FeatureSource::Oci(oci) => {
                let prefix = format!("{registry}/{NAMESPACE}/{}@", feature.metadata.id);
                let ok = oci.registry == registry
                    && pinned.resolved.strip_prefix(&prefix).is_some_and(is_sha256);
                if !ok {
                    out.push(format!(
                        "`{}`: resolved {:?}, wanted {prefix}sha256:<hex>",
                        feature.written, pinned.resolved
                    ));
                }
            }
            FeatureSource::Local(path) => {
                if !path.ends_with("local-feature") || pinned.resolved != feature.written {
                    out.push(format!(
                        "`{}`: local feature resolved {:?} from {}",
                        feature.written,
                        pinned.resolved,
                        path.display()
                    ));
                }
            }
            FeatureSource::Tarball(url) => out.push(format!("unexpected tarball {url}")),
        }
    }
    out
}

struct Shared<'a> {
    engine: &'a DockerEngine,
    fetcher: &'a RegistryFetcher,
    registry: &'a str,
    /// The reference tags one fixed image (`dev_container_feature_content_temp`) in each build:
    /// two at once would take each other's feature content, so they run one at a time.
    reference_lock: tokio::sync::Mutex<()>,
    /// Ours at most two at once (CI has two cores).
    ours: tokio::sync::Semaphore,
    cleanup: &'a Cleanup,
}

/// Builds `def` both ways and compares; returns the mismatches, each naming `def`.
async fn check_definition(
    shared: &Shared<'_>,
    index: usize,
    def: &Def,
) -> (Vec<String>, Option<ImageContents>) {
    let started = Instant::now();
    let ref_dir = tempfile::tempdir().unwrap();
    let our_dir = tempfile::tempdir().unwrap();
    def.write(ref_dir.path(), shared.registry);
    let config_file = def.write(our_dir.path(), shared.registry);
    let ref_image = format!("fd-ref-{}-{index}", std::process::id());
    shared.cleanup.add(ref_image.clone());

    let reference = async {
        let _one = shared.reference_lock.lock().await;
        let before = dangling_images().await;
        let built = reference_build(ref_dir.path(), &ref_image).await;
        // Its feature content image (retagged by each build), and the untagged images of its
        // multi-stage Dockerfile's other stages.
        let _ = docker(&["rmi", "-f", REFERENCE_TEMP_IMAGE]).await;
        for id in dangling_images().await.difference(&before) {
            shared.cleanup.add(id.clone());
        }
        built
    };
    let ours = async {
        let _slot = shared.ours.acquire().await.unwrap();
        our_build(shared.engine, def, &config_file, shared.fetcher, "compare").await
    };
    let ref_lock_path = ref_dir.path().join(".devcontainer/devcontainer-lock.json");
    let (reference, ours) = if def.locked {
        let reference = reference.await;
        if reference.is_ok() {
            std::fs::copy(&ref_lock_path, lock::path_for(&config_file)).unwrap();
        }
        (reference, ours.await)
    } else {
        tokio::join!(reference, ours)
    };

    let mut problems = Vec::new();
    if let Err(e) = &reference {
        problems.push(e.clone());
    }
    let ours = match ours {
        Ok(ours) => {
            // By id: a build racing another of the same key can lose the tag.
            shared.cleanup.add(ours.image.digest.clone());
            Some(ours)
        }
        Err(e) => {
            problems.push(format!("our build failed: {e}"));
            None
        }
    };
    let mut reference_contents = None;
    if let (Ok(()), Some(ours)) = (&reference, &ours) {
        match tokio::join!(contents(&ref_image), contents(&ours.image.image)) {
            (Ok(r), Ok(o)) => {
                problems.extend(compare(&r, &o));
                reference_contents = Some(r);
            }
            (r, o) => problems.push(format!("inspecting the images: {r:?} / {o:?}")),
        }
        // The pins: well formed, and what the reference wrote to its lock file.
        problems.extend(check_pins(shared.registry, &ours.features));
        match lock::read(&ref_lock_path) {
            Ok(Some(reference_lock)) => {
                let our_lock = lockfile_of(&ours.features);
                if reference_lock != our_lock {
                    problems.push(format!(
                        "lock files differ:\n    reference: {reference_lock:#?}\n    ours: {our_lock:#?}"
                    ));
                }
                if def.locked {
                    problems.extend(check_locked(&reference_lock, &ours.features));
                }
            }
            other => problems.push(format!("the reference's lock file: {other:?}")),
        }
    }
    // A second build of the same definition is the first image.
    // (no build slot: nothing is built the second time, unless that is the bug)
    if let Some(first) = &ours {
        match our_build(shared.engine, def, &config_file, shared.fetcher, "compare").await {
            Ok(second) => {
                if !second.cached || second.image.digest != first.image.digest {
                    problems.push(format!(
                        "second build: cached {}, image {} (first {})",
                        second.cached, second.image.digest, first.image.digest
                    ));
                }
            }
            Err(e) => problems.push(format!("second build failed: {e}")),
        }
    }
    eprintln!(
        "features: {} checked in {:.1?} ({} problem(s))",
        def.name,
        started.elapsed(),
        problems.len()
    );
    let problems = problems
        .into_iter()
        .map(|p| format!("[{}] {p}", def.name))
        .collect();
    (problems, reference_contents)
}

/// Every OCI feature pinned by the lock: fetched by the locked digest, resolved as locked.
fn check_locked(lock: &lock::Lockfile, features: &[ResolvedFeature]) -> Vec<String> {
    let mut out = Vec::new();
    for feature in features {
        let FeatureSource::Oci(oci) = &feature.source else {
            continue;
        };
        let Some(entry) = lock.features.get(&feature.written) else {
            out.push(format!("`{}` is not in the lock file", feature.written));
            continue;
        };
        if oci.version != OciVersion::Digest(entry.integrity.clone()) {
            out.push(format!(
                "`{}` was fetched as {:?}, not by the locked digest {}",
                feature.written, oci.version, entry.integrity
            ));
        }
        if feature.fetched.resolved != entry.resolved || feature.pin_digest() != entry.integrity {
            out.push(format!(
                "`{}`: resolved {} / {}, the lock says {} / {}",
                feature.written,
                feature.fetched.resolved,
                feature.pin_digest(),
                entry.resolved,
                entry.integrity
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn features_build_like_the_reference() {
    let started = Instant::now();
    let registries = registries();
    let engine = engine().await;
    reference_cli();
    remove_leftovers("compare").await;
    let cleanup = Cleanup::default();
    cleanup.add(REFERENCE_TEMP_IMAGE);
    let fetcher = fetcher(&[registries.open.as_str()], &[]);
    let shared = Shared {
        engine: &engine,
        fetcher: &fetcher,
        registry: &registries.open,
        reference_lock: tokio::sync::Mutex::new(()),
        ours: tokio::sync::Semaphore::new(2),
        cleanup: &cleanup,
    };
    let defs = definitions(&registries.open);
    assert!(defs.len() >= 12);
    let results = futures_util::future::join_all(
        defs.iter()
            .enumerate()
            .map(|(i, def)| check_definition(&shared, i, def)),
    )
    .await;
    let (problems, references): (Vec<Vec<String>>, Vec<Option<ImageContents>>) =
        results.into_iter().unzip();
    let mut problems: Vec<String> = problems.into_iter().flatten().collect();
    // The comparison can tell definitions apart: each reference image against the first one's.
    let references: Vec<(&str, ImageContents)> = defs
        .iter()
        .zip(references)
        .filter_map(|(def, r)| r.map(|r| (def.name, r)))
        .collect();
    for other in references.iter().skip(1) {
        if compare(&references[0].1, &other.1).is_empty() {
            problems.push(format!(
                "the comparison finds no difference between `{}` and `{}`",
                references[0].0, other.0
            ));
        }
    }
    if let Some((name, last)) = references.last() {
        eprintln!("features: the reference's `{name}` image: {last:#?}");
    }
    eprintln!(
        "features: {} definitions compared in {:.1?}",
        defs.len(),
        started.elapsed()
    );
    assert!(
        problems.is_empty(),
        "{} mismatch(es) between ours and the reference:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Hostile input.

/// Builds `features` (id → options) onto the base image with `fetcher`, from a fresh folder
/// (holding `lock`, when given, as devcontainer-lock.json).
async fn build_hostile(
    engine: &DockerEngine,
    fetcher: &RegistryFetcher,
    features: Vec<(String, Value)>,
    lock_file: Option<Value>,
    cleanup: &Cleanup,
) -> Result<FeatureImage, FeatureImageError> {
    let dir = tempfile::tempdir().unwrap();
    let def = Def::new("hostile", features);
    let config_file = def.write(dir.path(), "unused");
    if let Some(lock_file) = lock_file {
        std::fs::write(
            lock::path_for(&config_file),
            serde_json::to_string_pretty(&lock_file).unwrap(),
        )
        .unwrap();
    }
    let result = our_build(engine, &def, &config_file, fetcher, "hostile").await;
    if let Ok(built) = &result {
        cleanup.add(built.image.digest.clone());
    }
    result
}

fn feature_error(result: Result<FeatureImage, FeatureImageError>, what: &str) -> FeatureError {
    match result {
        Ok(built) => panic!("{what}: built {built:?}, wanted an error"),
        Err(FeatureImageError::Feature(e)) => e,
        Err(e) => panic!("{what}: {e}, wanted a feature error"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_features_are_refused() {
    let registries = registries();
    let engine = engine().await;
    remove_leftovers("hostile").await;
    let cleanup = Cleanup::default();
    let open = &registries.open;
    let f = |registry: &str, id: &str| format!("{registry}/{NAMESPACE}/{id}:1");
    let fetch_open = fetcher(&[open.as_str()], &[]);

    // (a) privileged and capAdd: refused, naming the feature.
    for (id, asks) in [("privileged", "privileged"), ("cap-add", "capAdd")] {
        let written = f(open, id);
        let error = feature_error(
            build_hostile(
                &engine,
                &fetch_open,
                vec![
                    (f(open, "opts-string"), json!({})),
                    (written.clone(), json!({})),
                ],
                None,
                &cleanup,
            )
            .await,
            id,
        );
        match &error {
            FeatureError::Refused { feature, message } => {
                assert_eq!(feature, &written, "{error}");
                assert!(message.contains(asks), "{error}");
            }
            other => panic!("{id}: {other:?}, wanted Refused"),
        }
    }

    // (f) a registry not allowed: refused before anything connects to it. A listener stands
    // in for it, so a connection would show.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let not_allowed = format!("127.0.0.1:{port}/{NAMESPACE}/opts-string:1");
    let fetch_other = RegistryFetcher::new(FetchSettings {
        allowed_hosts: vec![open.clone()],
        plain_http: vec!["localhost".into(), "127.0.0.1".into()],
        ..FetchSettings::default()
    })
    .unwrap();
    for written in [not_allowed.clone(), f(&registries.basic, "opts-string")] {
        let error = feature_error(
            build_hostile(
                &engine,
                &fetch_other,
                vec![(written.clone(), json!({}))],
                None,
                &cleanup,
            )
            .await,
            &written,
        );
        match &error {
            FeatureError::Refused { feature, message } => {
                assert_eq!(feature, &written, "{error}");
                let host = written.split('/').next().unwrap();
                assert!(message.contains(host), "{error}");
            }
            other => panic!("{written}: {other:?}, wanted Refused"),
        }
    }
    assert!(
        listener.accept().is_err(),
        "the fetcher connected to a host it may not reach"
    );
    // The control: allowed, the same fetch does connect.
    let fetch_allowed = RegistryFetcher::new(FetchSettings {
        allowed_hosts: vec![format!("127.0.0.1:{port}")],
        plain_http: vec!["127.0.0.1".into()],
        ..FetchSettings::default()
    })
    .unwrap();
    let attempt = tokio::spawn({
        let into = tempfile::tempdir().unwrap();
        let source =
            flightdeck_workspace::features::reference::parse(&not_allowed, into.path()).unwrap();
        async move {
            use flightdeck_workspace::features::Fetch;
            let _ = fetch_allowed
                .fetch(&not_allowed, &source, into.path())
                .await;
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let connected = loop {
        match listener.accept() {
            Ok(_) => break true,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(_) => break false,
        }
    };
    attempt.abort();
    assert!(connected, "control: an allowed fetch never connected");

    // (b), (c) registries that want credentials: with them it works; without them (or with
    // wrong ones) the error names the registry and holds no password.
    let basic64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", registries.user, registries.password))
    };
    for registry in [&registries.token, &registries.basic] {
        let written = f(registry, "opts-string");
        let good = fetcher(
            &["localhost"],
            &[(
                registry.as_str(),
                registries.user.as_str(),
                registries.password.as_str(),
            )],
        );
        let built = build_hostile(
            &engine,
            &good,
            vec![(written.clone(), json!({"flavor": "authenticated"}))],
            None,
            &cleanup,
        )
        .await
        .unwrap_or_else(|e| panic!("{written} with credentials: {e}"));
        assert_eq!(built.features.len(), 1);
        assert!(
            built.features[0]
                .fetched
                .resolved
                .starts_with(&format!("{registry}/{NAMESPACE}/opts-string@sha256:")),
            "{:?}",
            built.features[0].fetched
        );
        let log = docker(&["run", "--rm", &built.image.image, "cat", LOG])
            .await
            .unwrap();
        assert_eq!(
            log,
            "opts-string flavor=authenticated size=medium color=red\n"
        );

        let wrong_password = format!("{}-wrong", registries.password);
        for (what, credentials) in [
            ("no credentials", vec![]),
            (
                "credentials for another host",
                vec![(
                    open.as_str(),
                    registries.user.as_str(),
                    registries.password.as_str(),
                )],
            ),
            (
                "a wrong password",
                vec![(
                    registry.as_str(),
                    registries.user.as_str(),
                    wrong_password.as_str(),
                )],
            ),
        ] {
            let fetch = fetcher(&["localhost"], &credentials);
            let error = feature_error(
                build_hostile(
                    &engine,
                    &fetch,
                    vec![(written.clone(), json!({}))],
                    None,
                    &cleanup,
                )
                .await,
                &format!("{written} with {what}"),
            );
            let text = format!("{error} {error:?}");
            assert!(
                matches!(error, FeatureError::Fetch { .. }),
                "{written} with {what}: {text}"
            );
            assert!(
                text.contains(registry.as_str()),
                "{written} with {what}: {text}"
            );
            for secret in [&registries.password, &wrong_password, &basic64] {
                assert!(
                    !text.contains(secret.as_str()),
                    "{written} with {what}: {text}"
                );
            }
        }
    }

    // (d) shell code in an option value: written literally, never run (in the image or here).
    let marker = format!("/tmp/{}", unique("fd-pwned"));
    let value =
        format!("x$(touch {marker}-1)`touch {marker}-2`'\"; touch {marker}-3; ${{HOME}} \\n \\");
    let built = build_hostile(
        &engine,
        &fetch_open,
        vec![(
            f(open, "opts-string"),
            json!({"flavor": value, "color": "it's"}),
        )],
        None,
        &cleanup,
    )
    .await
    .unwrap_or_else(|e| panic!("shell metacharacters: {e}"));
    let log = docker(&["run", "--rm", &built.image.image, "cat", LOG])
        .await
        .unwrap();
    assert_eq!(
        log,
        format!("opts-string flavor={value} size=medium color=it's\n")
    );
    // The feature's own tool holds the value as text (its install.sh writes it into a
    // script; running that script is the feature's business, not the build's).
    let tool = docker(&[
        "run",
        "--rm",
        &built.image.image,
        "cat",
        "/usr/local/bin/opts-string-tool",
    ])
    .await
    .unwrap();
    assert_eq!(
        tool,
        format!("#!/bin/sh\necho \"opts-string flavor={value} size=medium color=it's\"\n")
    );
    let found = docker(&[
        "run",
        "--rm",
        &built.image.image,
        "sh",
        "-c",
        "ls /tmp; ls / /root",
    ])
    .await
    .unwrap();
    let short = marker.trim_start_matches("/tmp/");
    assert!(
        !found.contains(short),
        "the option's commands ran in the image:\n{found}"
    );
    for n in 1..=3 {
        let path = format!("{marker}-{n}");
        assert!(!Path::new(&path).exists(), "{path} was made on the host");
    }

    // (e) a lock file that does not match what is fetched.
    let digest_of = |id: &str| {
        let fetch = &fetch_open;
        let written = f(open, id);
        async move {
            use flightdeck_workspace::features::Fetch;
            let into = tempfile::tempdir().unwrap();
            let source =
                flightdeck_workspace::features::reference::parse(&written, into.path()).unwrap();
            let got = fetch.fetch(&written, &source, into.path()).await.unwrap();
            got.resolved.rsplit_once('@').unwrap().1.to_string()
        }
    };
    let string_digest = digest_of("opts-string").await;
    let bool_digest = digest_of("opts-bool").await;
    assert_ne!(string_digest, bool_digest);
    let lock_entry = |written: &str, id: &str, digest: &str| {
        json!({"features": {written: {
            "version": "1.0.0",
            "resolved": format!("{open}/{NAMESPACE}/{id}@{digest}"),
            "integrity": digest,
        }}})
    };
    // The id pins the real manifest, the lock another one.
    let pinned = format!("{open}/{NAMESPACE}/opts-string@{string_digest}");
    let error = feature_error(
        build_hostile(
            &engine,
            &fetch_open,
            vec![(pinned.clone(), json!({}))],
            Some(lock_entry(&pinned, "opts-string", &bool_digest)),
            &cleanup,
        )
        .await,
        "digest id, other digest locked",
    );
    match &error {
        FeatureError::Integrity { feature, message } => {
            assert_eq!(feature, &pinned, "{error}");
            assert!(
                message.contains(&string_digest) && message.contains(&bool_digest),
                "{error}"
            );
        }
        other => panic!("digest id, other digest locked: {other:?}, wanted Integrity"),
    }
    // A tag, locked to a digest the repository does not have (another feature's manifest):
    // fetched by the locked digest, which fails.
    let tagged = f(open, "opts-string");
    let error = feature_error(
        build_hostile(
            &engine,
            &fetch_open,
            vec![(tagged.clone(), json!({}))],
            Some(lock_entry(&tagged, "opts-string", &bool_digest)),
            &cleanup,
        )
        .await,
        "tag locked to another digest",
    );
    let text = error.to_string();
    eprintln!("features: a tag locked to a digest the repository lacks: {error:?}");
    assert!(
        matches!(error, FeatureError::Integrity { .. })
            && text.contains(&tagged)
            && text.contains(&bool_digest),
        "tag locked to another digest: {error:?}"
    );
    // A lock whose integrity is not a digest.
    let error = feature_error(
        build_hostile(
            &engine,
            &fetch_open,
            vec![(tagged.clone(), json!({}))],
            Some(lock_entry(&tagged, "opts-string", "sha256:not-a-digest")),
            &cleanup,
        )
        .await,
        "lock integrity not a digest",
    );
    // (refused when the lock file is read: the error names the file and the entry)
    match &error {
        FeatureError::Invalid { feature, message } => {
            assert!(
                feature.ends_with("/.devcontainer/devcontainer-lock.json"),
                "{error:?}"
            );
            assert!(
                message.contains(&tagged) && message.contains("integrity"),
                "{error:?}"
            );
        }
        other => panic!("lock integrity not a digest: {other:?}, wanted Invalid"),
    }
    // And the matching lock builds.
    build_hostile(
        &engine,
        &fetch_open,
        vec![(tagged.clone(), json!({}))],
        Some(lock_entry(&tagged, "opts-string", &string_digest)),
        &cleanup,
    )
    .await
    .unwrap_or_else(|e| panic!("the matching lock: {e}"));
}
