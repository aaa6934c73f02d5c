//! Docker Compose devcontainers (`dockerComposeFile`, `service`, `runServices`,
//! `workspaceFolder`, `shutdownAction`), as `@devcontainers/cli` brings them up, under
//! flightdeck's rules.
//!
//! - [`check`] reads the compose files (YAML, `<<` merge keys applied, variables interpolated
//!   the way the CLI will see them: `.env` of the project directory and the few variables
//!   [`cli_env`] passes) and refuses everything that would let a service see the host or
//!   weaken its isolation, naming the file, the service and the key.
//! - [`up`] asks the compose CLI for the resolved configuration (`config`: every file merged,
//!   `extends` and interpolation done, paths absolute), checks *that* again (what runs is
//!   what was checked), rewrites it (the worktree bound at the workspace folder, a sleep loop
//!   as the service's command, labels on every service, limits, `no-new-privileges`,
//!   capabilities dropped, `ports` dropped, networks closed) into one file in a scratch
//!   directory, builds what has a `build` itself (never pulling, no network in `RUN`), checks
//!   every image is local, and runs `up -d --no-build` with that file only.
//! - Network: without the network every project network (`default` included) is
//!   `internal: true` *and* its bridge gets no IPv4 address on the host
//!   (`com.docker.network.bridge.inhibit_ipv4`): `internal` alone still lets a container
//!   reach the host's address on the bridge (and anything listening on all of the host's
//!   addresses; moby/moby#47356), and it is not enforced at all by a dockerd running with
//!   `--iptables=false`. The services reach each other by name; nothing else.
//!   [`crate::docker::DockerWorkspace::set_network`] adds and removes the `flightdeck`
//!   bridge on the service's container, keeping the project networks.
//! - `ports` are dropped and reported in [`ComposeModel::ignored`]: publishing a port opens
//!   the sidecar to the host's network; the service reaches it by name anyway. `expose`
//!   publishes nothing and is kept.
//! - [`down`] works from the project name alone (`workspace gc`): the CLI's `down` with an
//!   empty file, then every container, network and volume labelled with the project.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bollard::query_parameters::{ListNetworksOptions, ListVolumesOptions};
use serde_yaml::{Mapping, Value};

use crate::docker::{DockerEngine, DockerError, MountKind, COMPOSE_PROJECT_LABEL};

/// The label naming a container's compose service.
pub const COMPOSE_SERVICE_LABEL: &str = "com.docker.compose.service";

/// The capabilities given back after dropping all (the list of `docker.rs`).
const CAP_ADD: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "SETUID",
    "SETGID",
    "KILL",
];

/// How much of the CLI's output an error keeps (the end of it).
const MAX_CLI_OUTPUT: usize = 8 * 1024;

/// The engine the CLI talks to when flightdeck's environment names none (what
/// [`DockerEngine::connect`] tries first).
const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// How long one CLI call may take (`up` of a project with many services included).
const CLI_TIMEOUT: Duration = Duration::from_secs(600);

/// Largest compose file read.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Variables the compose CLI gets from flightdeck's environment (nothing else: compose
/// interpolates `${…}` from it).
const CLI_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "DOCKER_HOST",
    "DOCKER_API_VERSION",
    "COMPOSE_API_VERSION",
    "DOCKER_CONFIG",
    "XDG_RUNTIME_DIR",
];

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ComposeError {
    #[error("{file}: {place}`{key}` {why}\nhint: {hint}")]
    Refused {
        file: String,
        /// `service `x`: ` or empty.
        place: String,
        key: String,
        why: String,
        hint: String,
    },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a valid compose file: {message}\nhint: check it with `docker compose config`", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("service `{service}` is not in {files}\nhint: `service` (and `runServices`) in devcontainer.json must name services of the compose files")]
    NoService { service: String, files: String },
    #[error("no Docker Compose found: {reason}\nhint: install the compose plugin (`docker compose`) or docker-compose")]
    CliMissing { reason: String },
    #[error("`{command}` failed ({status}):\n{output}")]
    Cli {
        command: String,
        status: String,
        output: String,
    },
    #[error("image {image} of service `{service}` is not present locally\nhint: build or load it first (`docker load`, `docker build -t {image}`); flightdeck never pulls images")]
    ImageMissing { service: String, image: String },
    #[error("compose project {project} has no container for service `{service}` after `up`\nhint: see the service's logs (`docker logs`)")]
    ContainerMissing { project: String, service: String },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Docker(#[from] DockerError),
}

fn refused(
    file: &str,
    service: Option<&str>,
    key: &str,
    why: impl Into<String>,
    hint: impl Into<String>,
) -> ComposeError {
    ComposeError::Refused {
        file: file.to_string(),
        place: service
            .map(|s| format!("service `{s}`: "))
            .unwrap_or_default(),
        key: key.to_string(),
        why: why.into(),
        hint: hint.into(),
    }
}

/// What the compose files define, as far as flightdeck uses it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComposeModel {
    /// The files read, in order (files `extends` and `include` name are checked too).
    pub files: Vec<PathBuf>,
    /// The first file's folder: where relative paths start.
    pub project_dir: PathBuf,
    pub services: BTreeMap<String, ComposeService>,
    /// Top-level networks (`default` is implicit).
    pub networks: BTreeSet<String>,
    /// Top-level named volumes.
    pub volumes: BTreeSet<String>,
    /// Keys not applied, and why (`services.db.ports`).
    pub ignored: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComposeService {
    pub image: Option<String>,
    pub build: Option<ComposeBuild>,
    pub depends_on: BTreeSet<String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub networks: BTreeSet<String>,
    pub environment: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeBuild {
    pub context: PathBuf,
    /// Relative to `context` unless absolute.
    pub dockerfile: PathBuf,
    pub args: BTreeMap<String, String>,
    pub target: Option<String>,
}

/// Reads and checks the compose files (in order, merged as compose merges them for the keys
/// kept). Paths are resolved against the first file's folder; every host path must lie
/// inside `repo_root`.
pub fn check(files: &[PathBuf], repo_root: &Path) -> Result<ComposeModel, ComposeError> {
    let Some(first) = files.first() else {
        return Err(ComposeError::NoService {
            service: String::new(),
            files: "no compose file".into(),
        });
    };
    let root = canonical_root(repo_root);
    let project_dir = first
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let vars = interpolation_vars(&project_dir);
    let mut model = ComposeModel {
        project_dir: project_dir.clone(),
        ..Default::default()
    };
    // Files to read: the given ones (merged), then those `extends`/`include` name (checked).
    let mut queue: Vec<(PathBuf, bool)> = files.iter().map(|f| (f.clone(), true)).collect();
    let mut seen = BTreeSet::new();
    let mut index = 0;
    while index < queue.len() {
        let (path, merge) = queue[index].clone();
        index += 1;
        let label = path.display().to_string();
        if !inside(&resolve(&project_dir, &label), &root) {
            return Err(refused(
                &label,
                None,
                "dockerComposeFile",
                "lies outside the repository",
                "keep the compose files in the repository",
            ));
        }
        if !seen.insert(path.clone()) || seen.len() > 64 {
            continue;
        }
        let doc = read_yaml(&path)?;
        let doc = interpolate(doc, &vars);
        let base = if merge {
            project_dir.clone()
        } else {
            path.parent().map(Path::to_path_buf).unwrap_or_default()
        };
        let found = check_document(&doc, &label, &base, &root, &mut model.ignored)?;
        for extra in found.more_files {
            queue.push((extra, false));
        }
        if merge {
            model.files.push(path.clone());
            merge_model(&mut model, &doc, &base);
        }
    }
    Ok(model)
}

/// The repository root with symlinks resolved (as given when it cannot be).
fn canonical_root(root: &Path) -> PathBuf {
    std::fs::canonicalize(root).unwrap_or_else(|_| normalize(root))
}

fn read_yaml(path: &Path) -> Result<Value, ComposeError> {
    let read_error = |source| ComposeError::Read {
        path: path.to_path_buf(),
        source,
    };
    let bytes = crate::read_repo_file(path, MAX_FILE_BYTES)
        .map_err(read_error)?
        .ok_or_else(|| read_error(std::io::ErrorKind::NotFound.into()))?;
    parse_yaml(&bytes, path)
}

fn parse_yaml(bytes: &[u8], path: &Path) -> Result<Value, ComposeError> {
    let mut value: Value = serde_yaml::from_slice(bytes).map_err(|e| ComposeError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    value.apply_merge().map_err(|e| ComposeError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    match value {
        Value::Mapping(_) => Ok(value),
        Value::Null => Ok(Value::Mapping(Mapping::new())),
        _ => Err(ComposeError::Parse {
            path: path.to_path_buf(),
            message: "the top level is not a mapping".into(),
        }),
    }
}

/// What compose interpolates `${…}` with: the CLI's environment (see [`cli_env`]) and the
/// project directory's `.env`.
fn interpolation_vars(project_dir: &Path) -> HashMap<String, String> {
    let mut vars: HashMap<String, String> = cli_env().into_iter().collect();
    if let Ok(Some(bytes)) = crate::read_repo_file(&project_dir.join(".env"), MAX_FILE_BYTES) {
        for line in String::from_utf8_lossy(&bytes).lines() {
            let line = line.trim();
            if line.starts_with('#') {
                continue;
            }
            if let Some((k, v)) = line.split_once('=') {
                let v = v.trim();
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                    .unwrap_or(v);
                // The environment wins over `.env`, as in compose.
                vars.entry(k.trim().to_string())
                    .or_insert_with(|| v.to_string());
            }
        }
    }
    vars
}

/// The environment the compose CLI runs with.
/// Compose v2's `config` names every network and volume `<project>_<key>` (the name it would
/// get anyway); only a name of the file's own is refused by [`refuse_global_name`].
fn drop_default_names(doc: &mut Value, project: &str) {
    let Some(top) = doc.as_mapping_mut() else {
        return;
    };
    for section in ["networks", "volumes"] {
        let Some(Value::Mapping(items)) = top.get_mut(section) else {
            continue;
        };
        for (key, item) in items.iter_mut() {
            let (Some(key), Some(item)) = (str_of(key), item.as_mapping_mut()) else {
                continue;
            };
            let default = format!("{project}_{key}");
            if item.get("name").and_then(str_of).as_deref() == Some(default.as_str()) {
                item.remove("name");
            }
        }
    }
}

/// A top-level network or volume with a `name` of its own (or labels) is the engine's, not
/// the project's: compose uses an existing one of that name, another mission's included.
fn refuse_global_name(
    item: &serde_yaml::Mapping,
    key: &str,
    file: &str,
) -> Result<(), ComposeError> {
    for k in ["name", "labels"] {
        if get(item, k).is_some_and(non_empty) {
            return Err(refused(
                file,
                None,
                &format!("{key}.{k}"),
                "names it on the engine, where compose takes an existing one of that name (another project's data or network)",
                "remove it: the project's own networks and volumes are named after the project",
            ));
        }
    }
    Ok(())
}

pub fn cli_env() -> Vec<(String, String)> {
    CLI_ENV
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect()
}

fn interpolate(value: Value, vars: &HashMap<String, String>) -> Value {
    match value {
        Value::String(s) => Value::String(interpolate_str(&s, vars)),
        Value::Sequence(items) => {
            Value::Sequence(items.into_iter().map(|v| interpolate(v, vars)).collect())
        }
        Value::Mapping(map) => Value::Mapping(
            map.into_iter()
                .map(|(k, v)| (k, interpolate(v, vars)))
                .collect(),
        ),
        other => other,
    }
}

/// `$$`, `$NAME`, `${NAME}`, `${NAME:-d}`, `${NAME-d}`, `${NAME:?e}`, `${NAME?e}`,
/// `${NAME:+r}`, `${NAME+r}`; unknown names are empty (compose warns and does the same).
fn interpolate_str(text: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(braced) = after.strip_prefix('{') {
            let Some(end) = braced.find('}') else {
                out.push_str(&rest[at..]);
                return out;
            };
            let expression = &braced[..end];
            let name_end = expression
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(expression.len());
            let (name, op) = expression.split_at(name_end);
            let value = vars.get(name);
            let set = value.is_some();
            let non_empty = value.is_some_and(|v| !v.is_empty());
            let replaced = if let Some(d) = op.strip_prefix(":-") {
                if non_empty {
                    value.cloned().unwrap_or_default()
                } else {
                    interpolate_str(d, vars)
                }
            } else if let Some(d) = op.strip_prefix('-') {
                if set {
                    value.cloned().unwrap_or_default()
                } else {
                    interpolate_str(d, vars)
                }
            } else if let Some(r) = op.strip_prefix(":+") {
                if non_empty {
                    interpolate_str(r, vars)
                } else {
                    String::new()
                }
            } else if let Some(r) = op.strip_prefix('+') {
                if set {
                    interpolate_str(r, vars)
                } else {
                    String::new()
                }
            } else {
                value.cloned().unwrap_or_default()
            };
            out.push_str(&replaced);
            rest = &braced[end + 1..];
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if end == 0 {
                out.push('$');
            } else {
                out.push_str(vars.get(&after[..end]).map(String::as_str).unwrap_or(""));
            }
            rest = &after[end..];
        }
    }
    out.push_str(rest);
    out
}

/// `path` made absolute against `base` and `..` resolved; then the longest existing prefix
/// with its symlinks resolved, so a link cannot lead out unseen.
fn resolve(base: &Path, raw: &str) -> PathBuf {
    let joined = normalize(&base.join(raw));
    let mut existing = joined.clone();
    let mut tail = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(&existing) {
            let mut out = real;
            for part in tail.iter().rev() {
                out.push(part);
            }
            return normalize(&out);
        }
        match (
            existing.file_name().map(|n| n.to_os_string()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                tail.push(name);
                existing = parent.to_path_buf();
            }
            _ => return joined,
        }
    }
}

fn normalize(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for part in absolute.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn inside(path: &Path, root: &Path) -> bool {
    path.starts_with(root)
}

fn str_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn truthy(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        Value::String(s) => matches!(s.to_ascii_lowercase().as_str(), "true" | "yes" | "on" | "1"),
        Value::Number(n) => n.as_i64() != Some(0),
        _ => false,
    }
}

fn non_empty(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Sequence(s) => !s.is_empty(),
        Value::Mapping(m) => !m.is_empty(),
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

fn get<'a>(map: &'a Mapping, key: &str) -> Option<&'a Value> {
    map.get(key)
}

/// Checks a host path (raw, key, service) is inside the repository; the resolved path.
type PathCheck<'a> = dyn Fn(&str, &str, Option<&str>) -> Result<PathBuf, ComposeError> + 'a;

/// What checking a document found beyond refusals.
struct Found {
    more_files: Vec<PathBuf>,
}

/// Checks one compose document (a file, or the CLI's resolved configuration). `base` is
/// where its relative paths start.
fn check_document(
    doc: &Value,
    file: &str,
    base: &Path,
    root: &Path,
    ignored: &mut BTreeMap<String, String>,
) -> Result<Found, ComposeError> {
    let mut found = Found {
        more_files: Vec::new(),
    };
    let empty = Mapping::new();
    let top = doc.as_mapping().unwrap_or(&empty);
    let path_inside = |raw: &str,
                       key: &str,
                       service: Option<&str>|
     -> Result<PathBuf, ComposeError> {
        if raw.starts_with('~') {
            return Err(refused(
                file,
                service,
                key,
                format!("names `{raw}` in a home directory on the host"),
                "use a path inside the repository (relative to the compose file)",
            ));
        }
        let resolved = resolve(base, raw);
        if !inside(&resolved, root) {
            let what = if raw.contains("docker.sock") || resolved.ends_with("docker.sock") {
                "binds the container engine's socket (root on the host)".to_string()
            } else {
                format!(
                    "names `{raw}` ({}), outside the repository",
                    resolved.display()
                )
            };
            return Err(refused(
                file,
                service,
                key,
                what,
                "only paths inside the repository may be used; use a named volume declared in the file, or a path in the repository",
            ));
        }
        Ok(resolved)
    };

    // Top-level `include` (compose 2.20).
    if let Some(include) = get(top, "include") {
        let items = include.as_sequence().cloned().unwrap_or_default();
        for item in items {
            let paths: Vec<String> = match &item {
                Value::String(s) => vec![s.clone()],
                Value::Mapping(m) => match get(m, "path") {
                    Some(Value::String(s)) => vec![s.clone()],
                    Some(Value::Sequence(s)) => s.iter().filter_map(str_of).collect(),
                    _ => Vec::new(),
                },
                _ => Vec::new(),
            };
            for p in paths {
                found.more_files.push(path_inside(&p, "include", None)?);
            }
        }
    }

    // Top-level networks.
    let mut networks = BTreeSet::new();
    if let Some(Value::Mapping(nets)) = get(top, "networks") {
        for (name, net) in nets {
            let name = str_of(name).unwrap_or_default();
            networks.insert(name.clone());
            let Some(net) = net.as_mapping() else {
                continue;
            };
            let key = format!("networks.{name}");
            refuse_global_name(net, &key, file)?;
            if get(net, "external").is_some_and(|e| truthy(e) || e.is_mapping()) {
                return Err(refused(
                    file,
                    None,
                    &format!("{key}.external"),
                    "joins a network outside the project (shared with other containers, or open to the outside)",
                    "drop `external`: flightdeck makes the project's networks and closes them",
                ));
            }
            if let Some(driver) = get(net, "driver").and_then(str_of) {
                if driver != "bridge" {
                    return Err(refused(
                        file,
                        None,
                        &format!("{key}.driver"),
                        format!(
                            "is `{driver}`; only `bridge` networks can be closed to the outside"
                        ),
                        "remove `driver` (the default is `bridge`)",
                    ));
                }
            }
        }
    }

    // Top-level volumes.
    let mut declared = BTreeSet::new();
    if let Some(Value::Mapping(vols)) = get(top, "volumes") {
        for (name, vol) in vols {
            let name = str_of(name).unwrap_or_default();
            let key = format!("volumes.{name}");
            if let Some(vol) = vol.as_mapping() {
                refuse_global_name(vol, &key, file)?;
                if get(vol, "external").is_some_and(|e| truthy(e) || e.is_mapping()) {
                    return Err(refused(
                        file,
                        None,
                        &format!("{key}.external"),
                        "uses a volume outside the project (it may hold other applications' data)",
                        "drop `external`: a volume the file declares belongs to the mission",
                    ));
                }
                for k in ["driver", "driver_opts"] {
                    if get(vol, k).is_some_and(non_empty) {
                        return Err(refused(
                            file,
                            None,
                            &format!("{key}.{k}"),
                            "can make a volume of any host directory (`o: bind`, `device:`)",
                            "remove it: a plain named volume is kept in the engine",
                        ));
                    }
                }
            }
            declared.insert(name);
        }
    }

    // Top-level secrets and configs: files on the host.
    for section in ["secrets", "configs"] {
        if let Some(Value::Mapping(items)) = get(top, section) {
            for (name, item) in items {
                let name = str_of(name).unwrap_or_default();
                let Some(item) = item.as_mapping() else {
                    continue;
                };
                let key = format!("{section}.{name}");
                if get(item, "external").is_some_and(truthy) {
                    return Err(refused(
                        file,
                        None,
                        &format!("{key}.external"),
                        "is defined outside the project",
                        "use `file:` with a path in the repository",
                    ));
                }
                if let Some(path) = get(item, "file").and_then(str_of) {
                    path_inside(&path, &format!("{key}.file"), None)?;
                }
                if get(item, "environment").is_some() {
                    return Err(refused(
                        file,
                        None,
                        &format!("{key}.environment"),
                        "reads a variable of flightdeck's environment",
                        "use `file:` with a path in the repository",
                    ));
                }
            }
        }
    }

    let empty_services = Mapping::new();
    let services = match get(top, "services") {
        Some(Value::Mapping(s)) => s,
        _ => &empty_services,
    };
    let names: BTreeSet<String> = services.keys().filter_map(str_of).collect();
    for (name, service) in services {
        let name = str_of(name).unwrap_or_default();
        let svc = Some(name.as_str());
        let Some(service) = service.as_mapping() else {
            continue;
        };
        for (key, value) in service {
            let key = str_of(key).unwrap_or_default();
            let value_text = str_of(value).unwrap_or_default();
            let refuse = |why: String, hint: &str| Err(refused(file, svc, &key, why, hint));
            match key.as_str() {
                "privileged" if truthy(value) => {
                    return refuse(
                        "gives the container every capability and the host's devices".into(),
                        "remove `privileged`",
                    )
                }
                "cap_add"
                | "security_opt"
                | "devices"
                | "device_cgroup_rules"
                | "cgroup_parent"
                | "gpus"
                | "runtime"
                | "external_links"
                | "credential_spec"
                    if non_empty(value) =>
                {
                    return refuse(
                        match key.as_str() {
                            "cap_add" => "gives capabilities back that flightdeck drops".into(),
                            "security_opt" => {
                                "changes the container's confinement (seccomp, AppArmor, no-new-privileges)".into()
                            }
                            "devices" | "device_cgroup_rules" | "gpus" => {
                                "gives the container devices of the host".into()
                            }
                            "external_links" => "links containers outside the project".into(),
                            _ => "changes how the container is run and confined".into(),
                        },
                        "remove it; flightdeck sets the container's confinement itself",
                    );
                }
                "logging" => {
                    let driver = value
                        .as_mapping()
                        .and_then(|l| get(l, "driver"))
                        .and_then(str_of)
                        .unwrap_or_else(|| "json-file".into());
                    if !["json-file", "local", "none"].contains(&driver.as_str()) {
                        return refuse(
                            format!("uses the `{driver}` log driver: dockerd would send the container's output over the host's network, whatever the workspace's network"),
                            "remove `logging` (or use the `json-file` or `local` driver)",
                        );
                    }
                }
                "deploy"
                    if value
                        .as_mapping()
                        .is_some_and(|d| get(d, "resources").is_some()) =>
                {
                    return refuse(
                        "sets resources (limits, devices) flightdeck decides: the template's [workspace] memory_mb and max_processes".into(),
                        "remove `deploy.resources`",
                    );
                }
                "network_mode" => {
                    let ok = value_text == "none"
                        || value_text
                            .strip_prefix("service:")
                            .is_some_and(|s| names.contains(s));
                    if !ok {
                        return refuse(
                            format!("is `{value_text}`: the container would leave the project's networks (the host's, another container's, or the default bridge)"),
                            "remove `network_mode`; services reach each other by name on the project's networks",
                        );
                    }
                }
                "pid" | "ipc" | "uts" | "userns_mode" | "cgroup"
                    if value_text == "host" || value_text.starts_with("container:") =>
                {
                    return refuse(
                        format!("is `{value_text}`: the container would share the namespace of the host or of a container outside the project"),
                        "remove it",
                    );
                }
                "volumes_from" => {
                    for item in value.as_sequence().cloned().unwrap_or_default() {
                        let text = str_of(&item).unwrap_or_default();
                        if text.starts_with("container:") {
                            return refuse(
                                format!(
                                    "`{text}` takes the volumes of a container outside the project"
                                ),
                                "name a service of the project instead",
                            );
                        }
                    }
                }
                "volumes" => {
                    for item in value.as_sequence().cloned().unwrap_or_default() {
                        check_volume(&item, file, &name, &declared, &path_inside)?;
                    }
                }
                "build" => {
                    check_build(value, file, &name, &path_inside)?;
                }
                "env_file" => {
                    let items = match value {
                        Value::Sequence(s) => s.clone(),
                        other => vec![other.clone()],
                    };
                    for item in items {
                        let path = match &item {
                            Value::Mapping(m) => get(m, "path").and_then(str_of),
                            other => str_of(other),
                        };
                        if let Some(path) = path {
                            path_inside(&path, "env_file", svc)?;
                        }
                    }
                }
                "extends" => {
                    if let Some(path) = value
                        .as_mapping()
                        .and_then(|m| get(m, "file"))
                        .and_then(str_of)
                    {
                        found
                            .more_files
                            .push(path_inside(&path, "extends.file", svc)?);
                    }
                }
                "ports" if non_empty(value) => {
                    ignored.insert(
                        format!("services.{name}.ports"),
                        "publishing ports would open the service to the host's network; the services reach each other by name".into(),
                    );
                }
                "networks" => {
                    let used: Vec<String> = match value {
                        Value::Sequence(s) => s.iter().filter_map(str_of).collect(),
                        Value::Mapping(m) => m.keys().filter_map(str_of).collect(),
                        _ => Vec::new(),
                    };
                    for net in used {
                        if net != "default" && !networks.contains(&net) {
                            return refuse(
                                format!("names network `{net}`, which the file does not declare"),
                                "declare it under the top-level `networks`",
                            );
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(found)
}

fn check_volume(
    item: &Value,
    file: &str,
    service: &str,
    declared: &BTreeSet<String>,
    path_inside: &PathCheck,
) -> Result<(), ComposeError> {
    let svc = Some(service);
    let (kind, source) = match item {
        Value::String(text) => {
            let parts: Vec<&str> = text.split(':').collect();
            if parts.len() < 2 {
                return Ok(()); // An anonymous volume.
            }
            let source = parts[0];
            let kind = if source.starts_with(['/', '.', '~']) {
                "bind"
            } else {
                "volume"
            };
            (kind.to_string(), source.to_string())
        }
        Value::Mapping(m) => (
            get(m, "type")
                .and_then(str_of)
                .unwrap_or_else(|| "volume".into()),
            get(m, "source").and_then(str_of).unwrap_or_default(),
        ),
        _ => return Ok(()),
    };
    match kind.as_str() {
        "bind" => {
            path_inside(&source, "volumes", svc)?;
        }
        "volume" if source.is_empty() => {}
        "volume" => {
            if !declared.contains(&source) {
                return Err(refused(
                    file,
                    svc,
                    "volumes",
                    format!("names volume `{source}`, which the file does not declare (a volume of that name outside the project would be shared)"),
                    "declare it under the top-level `volumes`",
                ));
            }
        }
        "tmpfs" => {}
        other => {
            return Err(refused(
                file,
                svc,
                "volumes",
                format!("has a mount of type `{other}`"),
                "use `bind` (in the repository), `volume` or `tmpfs`",
            ))
        }
    }
    Ok(())
}

fn check_build(
    value: &Value,
    file: &str,
    service: &str,
    path_inside: &PathCheck,
) -> Result<(), ComposeError> {
    let svc = Some(service);
    let (context, dockerfile, build) = match value {
        Value::String(s) => (s.clone(), None, None),
        Value::Mapping(m) => (
            get(m, "context")
                .and_then(str_of)
                .unwrap_or_else(|| ".".into()),
            get(m, "dockerfile").and_then(str_of),
            Some(m),
        ),
        _ => return Ok(()),
    };
    if context.contains("://") || context.starts_with("git@") {
        return Err(refused(
            file,
            svc,
            "build.context",
            format!("is `{context}`: a remote context would be fetched"),
            "build from a folder of the repository",
        ));
    }
    let context_path = path_inside(&context, "build.context", svc)?;
    if let Some(dockerfile) = dockerfile {
        let raw = context_path.join(&dockerfile);
        path_inside(&raw.display().to_string(), "build.dockerfile", svc)?;
    }
    if let Some(build) = build {
        for key in [
            "ssh",
            "secrets",
            "additional_contexts",
            "network",
            "privileged",
            "entitlements",
        ] {
            if get(build, key).is_some_and(non_empty) {
                return Err(refused(
                    file,
                    svc,
                    &format!("build.{key}"),
                    "gives the build something of the host (an agent, secrets, other folders, the network or privileges)",
                    "remove it: builds see only their context, without the network",
                ));
            }
        }
    }
    Ok(())
}

/// Merges one file into the model: scalars of a later file win, lists and maps add up.
fn merge_model(model: &mut ComposeModel, doc: &Value, base: &Path) {
    let Some(top) = doc.as_mapping() else { return };
    if let Some(Value::Mapping(nets)) = get(top, "networks") {
        model.networks.extend(nets.keys().filter_map(str_of));
    }
    if let Some(Value::Mapping(vols)) = get(top, "volumes") {
        model.volumes.extend(vols.keys().filter_map(str_of));
    }
    let Some(Value::Mapping(services)) = get(top, "services") else {
        return;
    };
    for (name, service) in services {
        let (Some(name), Some(service)) = (str_of(name), service.as_mapping()) else {
            continue;
        };
        let entry = model.services.entry(name).or_default();
        if let Some(image) = get(service, "image").and_then(str_of) {
            entry.image = Some(image);
        }
        if let Some(user) = get(service, "user").and_then(str_of) {
            entry.user = Some(user);
        }
        if let Some(dir) = get(service, "working_dir").and_then(str_of) {
            entry.working_dir = Some(dir);
        }
        if let Some(build) = get(service, "build") {
            entry.build = build_of(build, base);
        }
        match get(service, "depends_on") {
            Some(Value::Sequence(s)) => entry.depends_on.extend(s.iter().filter_map(str_of)),
            Some(Value::Mapping(m)) => entry.depends_on.extend(m.keys().filter_map(str_of)),
            _ => {}
        }
        match get(service, "networks") {
            Some(Value::Sequence(s)) => entry.networks.extend(s.iter().filter_map(str_of)),
            Some(Value::Mapping(m)) => entry.networks.extend(m.keys().filter_map(str_of)),
            _ => {}
        }
        match get(service, "environment") {
            Some(Value::Sequence(s)) => {
                for item in s.iter().filter_map(str_of) {
                    let (k, v) = item.split_once('=').unwrap_or((item.as_str(), ""));
                    entry.environment.insert(k.to_string(), v.to_string());
                }
            }
            Some(Value::Mapping(m)) => {
                for (k, v) in m {
                    if let Some(k) = str_of(k) {
                        entry.environment.insert(k, str_of(v).unwrap_or_default());
                    }
                }
            }
            _ => {}
        }
    }
}

fn build_of(value: &Value, base: &Path) -> Option<ComposeBuild> {
    match value {
        Value::String(context) => Some(ComposeBuild {
            context: normalize(&base.join(context)),
            dockerfile: PathBuf::from("Dockerfile"),
            args: BTreeMap::new(),
            target: None,
        }),
        Value::Mapping(m) => {
            let context = get(m, "context")
                .and_then(str_of)
                .unwrap_or_else(|| ".".into());
            let args = match get(m, "args") {
                Some(Value::Mapping(a)) => a
                    .iter()
                    .filter_map(|(k, v)| Some((str_of(k)?, str_of(v).unwrap_or_default())))
                    .collect(),
                Some(Value::Sequence(a)) => a
                    .iter()
                    .filter_map(str_of)
                    .map(|item| {
                        let (k, v) = item.split_once('=').unwrap_or((item.as_str(), ""));
                        (k.to_string(), v.to_string())
                    })
                    .collect(),
                _ => BTreeMap::new(),
            };
            Some(ComposeBuild {
                context: normalize(&base.join(context)),
                dockerfile: PathBuf::from(
                    get(m, "dockerfile")
                        .and_then(str_of)
                        .unwrap_or_else(|| "Dockerfile".into()),
                ),
                args,
                target: get(m, "target").and_then(str_of),
            })
        }
        _ => None,
    }
}

/// The compose command line found on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeCli {
    /// `["docker", "compose"]` or `["docker-compose"]`.
    pub program: Vec<String>,
    /// As `version --short` prints it (`2.29.1`, `1.29.2`).
    pub version: String,
}

impl ComposeCli {
    /// For the timeline: `docker compose 2.29.1`, `docker-compose 1.29.2`.
    pub fn describe(&self) -> String {
        format!("{} {}", self.program.join(" "), self.version)
    }

    /// Whether this is compose v2 (the plugin, or a v2 standalone binary).
    pub fn is_v2(&self) -> bool {
        self.major() >= 2
    }

    fn major(&self) -> u32 {
        self.version
            .trim_start_matches('v')
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0)
    }

    fn command(&self, args: &[String]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.program[0]);
        command
            .args(&self.program[1..])
            .args(args)
            .env_clear()
            // Set, so that a repository's `.env` (which the CLI reads for its own settings
            // too) cannot point it at another engine; what flightdeck's environment says wins.
            .env("DOCKER_HOST", DEFAULT_DOCKER_HOST)
            .env("DOCKER_CONTEXT", "default")
            .env("DOCKER_TLS_VERIFY", "")
            .env("DOCKER_CERT_PATH", "")
            .envs(cli_env())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// Runs the CLI; its stdout, or an error with the end of its output.
    async fn run(&self, args: &[String]) -> Result<String, ComposeError> {
        let shown = format!("{} {}", self.program.join(" "), args.join(" "));
        let child = self.command(args).spawn().map_err(|e| ComposeError::Cli {
            command: shown.clone(),
            status: "not started".into(),
            output: e.to_string(),
        })?;
        let output = match tokio::time::timeout(CLI_TIMEOUT, child.wait_with_output()).await {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => {
                return Err(ComposeError::Cli {
                    command: shown,
                    status: "no exit status".into(),
                    output: e.to_string(),
                })
            }
            Err(_) => {
                return Err(ComposeError::Cli {
                    command: shown,
                    status: format!("timed out after {} s", CLI_TIMEOUT.as_secs()),
                    output: String::new(),
                })
            }
        };
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stdout));
        Err(ComposeError::Cli {
            command: shown,
            status: output
                .status
                .code()
                .map(|c| format!("exit {c}"))
                .unwrap_or_else(|| "killed by a signal".into()),
            output: tail(&text, MAX_CLI_OUTPUT),
        })
    }
}

/// The end of `text`, at most `max` bytes, on a character boundary.
fn tail(text: &str, max: usize) -> String {
    let text = text.trim_end();
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("[…]{}", &text[start..])
}

/// Finds the compose CLI: the `docker compose` plugin when `docker compose version` works,
/// else `docker-compose`.
pub async fn detect() -> Result<ComposeCli, ComposeError> {
    let mut reasons = Vec::new();
    for program in [vec!["docker", "compose"], vec!["docker-compose"]] {
        let cli = ComposeCli {
            program: program.iter().map(|s| s.to_string()).collect(),
            version: String::new(),
        };
        match cli.run(&["version".into(), "--short".into()]).await {
            Ok(out) => {
                let version = out.trim().trim_start_matches('v').to_string();
                if !version.is_empty() {
                    return Ok(ComposeCli { version, ..cli });
                }
                reasons.push(format!("`{}` printed no version", program.join(" ")));
            }
            Err(e) => reasons.push(e.to_string().lines().take(2).collect::<Vec<_>>().join(" ")),
        }
    }
    Err(ComposeError::CliMissing {
        reason: reasons.join("; "),
    })
}

/// What to bring up for a mission.
#[derive(Debug, Clone)]
pub struct ComposeUp {
    /// `flightdeck-<mission id>`, lowercase (see [`project_name`]).
    pub project: String,
    /// The compose files, in order. They must lie in `worktree` (a checkout of the base
    /// commit): host paths they name must too.
    pub files: Vec<PathBuf>,
    /// Where relative paths start: the first file's folder.
    pub project_dir: PathBuf,
    /// devcontainer `service`: where commands run.
    pub service: String,
    /// devcontainer `runServices`: only these and `service` come up (all when `None`).
    pub run_services: Option<Vec<String>>,
    pub worktree: PathBuf,
    pub workspace_folder: String,
    /// Put on every service's container.
    pub labels: BTreeMap<String, String>,
    /// devcontainer `containerEnv`, on `service`.
    pub env: Vec<(String, String)>,
    /// devcontainer `containerUser`; the service's own user when `None`.
    pub user: Option<String>,
    /// devcontainer `remoteUser` / `remoteEnv`, as labels [`DockerEngine::attach`] reads.
    pub remote_user: Option<String>,
    pub remote_env: Vec<(String, String)>,
    /// Replaces the service's image (and build); `None` keeps it.
    pub image: Option<String>,
    /// Project networks open to the outside; closed (internal, no host address) otherwise.
    pub network_open: bool,
    /// Memory and process limits of every service's container.
    pub limits: crate::Limits,
    /// More mounts of `service`.
    pub extra_mounts: Vec<crate::docker::Mount>,
    /// Dev container features' `entrypoint`s, run in order by `service`'s first process before
    /// its wait.
    pub entrypoints: Vec<String>,
}

/// The Compose project of a workspace, named after its container (`flightdeck-<mission id>`,
/// a replay's own prefix included, so a replay never touches the mission's project):
/// lowercase, `[a-z0-9_-]` only.
pub fn project_name(container: &str) -> String {
    container
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

/// What [`up`] brought up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeStarted {
    /// The container id of the service.
    pub container: String,
    /// The file written in the scratch directory and given to the CLI.
    pub file: PathBuf,
    /// Services brought up.
    pub services: Vec<String>,
    /// Keys not applied, and why.
    pub ignored: BTreeMap<String, String>,
}

/// Brings the project up (see the module's documentation); the service's container id.
pub async fn up(cli: &ComposeCli, up: &ComposeUp, scratch: &Path) -> Result<String, ComposeError> {
    up_detailed(cli, up, scratch).await.map(|s| s.container)
}

/// [`up`], with what it did.
pub async fn up_detailed(
    cli: &ComposeCli,
    up: &ComposeUp,
    scratch: &Path,
) -> Result<ComposeStarted, ComposeError> {
    let files_shown = up
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let worktree = canonical_root(&up.worktree);
    // The files first, for errors that name them.
    let model = check(&up.files, &worktree)?;
    for name in std::iter::once(&up.service).chain(up.run_services.iter().flatten()) {
        if !model.services.contains_key(name) {
            return Err(ComposeError::NoService {
                service: name.clone(),
                files: files_shown.clone(),
            });
        }
    }
    // Then what the CLI makes of them, which is what runs.
    let mut args = vec![
        "-p".to_string(),
        up.project.clone(),
        "--project-directory".into(),
        up.project_dir.display().to_string(),
    ];
    for file in &up.files {
        args.push("-f".into());
        args.push(file.display().to_string());
    }
    let mut config_args = args.clone();
    config_args.push("config".into());
    let resolved = cli.run(&config_args).await?;
    let resolved_label = format!(
        "the configuration `{}` resolves from {files_shown}",
        cli.describe()
    );
    let mut doc = parse_yaml(resolved.as_bytes(), Path::new(&resolved_label))?;
    drop_default_names(&mut doc, &up.project);
    let mut ignored = model.ignored.clone();
    check_document(
        &doc,
        &resolved_label,
        &up.project_dir,
        &worktree,
        &mut ignored,
    )?;

    let engine = DockerEngine::connect().await?;
    let wanted: Vec<String> = match &up.run_services {
        Some(list) => {
            let mut all = list.clone();
            if !all.contains(&up.service) {
                all.push(up.service.clone());
            }
            all
        }
        None => model.services.keys().cloned().collect(),
    };
    let starting = with_dependencies(&doc, &wanted);
    rewrite(&mut doc, up, &starting, &engine, &ignored).await?;

    std::fs::create_dir_all(scratch).map_err(|source| ComposeError::Write {
        path: scratch.to_path_buf(),
        source,
    })?;
    let file = scratch.join(format!("{}.compose.yml", up.project));
    // JSON (which is YAML): every string quoted, so a YAML 1.1 reader (docker-compose
    // 1.x) cannot take `yes` or `on` for a boolean.
    let text = serde_json::to_string_pretty(&doc).map_err(|e| ComposeError::Write {
        path: file.clone(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(&file, text).map_err(|source| ComposeError::Write {
        path: file.clone(),
        source,
    })?;

    // The file is resolved: `up` reads no `.env` of the repository's (an empty one instead).
    let no_env = scratch.join(format!("{}.env", up.project));
    std::fs::write(&no_env, "").map_err(|source| ComposeError::Write {
        path: no_env.clone(),
        source,
    })?;
    let mut up_args = vec![
        "-p".to_string(),
        up.project.clone(),
        "--project-directory".into(),
        up.project_dir.display().to_string(),
        "--env-file".into(),
        no_env.display().to_string(),
        "-f".into(),
        file.display().to_string(),
        "up".into(),
        "-d".into(),
        "--no-build".into(),
        "--no-color".into(),
    ];
    if cli.is_v2() {
        up_args.push("--pull".into());
        up_args.push("never".into());
    }
    if up.run_services.is_some() {
        up_args.extend(wanted.iter().cloned());
    }
    cli.run(&up_args).await?;

    let container = service_container(&engine, &up.project, &up.service)
        .await?
        .ok_or_else(|| ComposeError::ContainerMissing {
            project: up.project.clone(),
            service: up.service.clone(),
        })?;
    Ok(ComposeStarted {
        container,
        file,
        services: starting.into_iter().collect(),
        ignored,
    })
}

/// `wanted` and every service they depend on (compose starts those too).
fn with_dependencies(doc: &Value, wanted: &[String]) -> BTreeSet<String> {
    let services = doc.get("services").and_then(Value::as_mapping);
    let mut out = BTreeSet::new();
    let mut queue: Vec<String> = wanted.to_vec();
    while let Some(name) = queue.pop() {
        if !out.insert(name.clone()) {
            continue;
        }
        let Some(service) = services
            .and_then(|s| s.get(name.as_str()))
            .and_then(Value::as_mapping)
        else {
            continue;
        };
        match get(service, "depends_on") {
            Some(Value::Sequence(s)) => queue.extend(s.iter().filter_map(str_of)),
            Some(Value::Mapping(m)) => queue.extend(m.keys().filter_map(str_of)),
            _ => {}
        }
        if let Some(target) = get(service, "network_mode")
            .and_then(str_of)
            .and_then(|m| m.strip_prefix("service:").map(str::to_string))
        {
            queue.push(target);
        }
    }
    out
}

/// `$` doubled, for a value compose must not interpolate.
fn literal(text: &str) -> Value {
    Value::String(text.replace('$', "$$"))
}

/// The mapping under `key`, made (or replaced by) an empty one when it is not a mapping.
fn mapping_mut<'a>(map: &'a mut Mapping, key: &str) -> Option<&'a mut Mapping> {
    let entry = map
        .entry(Value::String(key.to_string()))
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    if !entry.is_mapping() {
        *entry = Value::Mapping(Mapping::new());
    }
    entry.as_mapping_mut()
}

/// `labels`/`environment` (a list of `K=V` or a mapping) as a mapping.
fn as_key_values(value: Option<Value>) -> Mapping {
    match value {
        Some(Value::Mapping(m)) => m,
        Some(Value::Sequence(items)) => items
            .iter()
            .filter_map(str_of)
            .map(|item| {
                let (k, v) = item.split_once('=').unwrap_or((item.as_str(), ""));
                (Value::String(k.into()), Value::String(v.into()))
            })
            .collect(),
        _ => Mapping::new(),
    }
}

async fn rewrite(
    doc: &mut Value,
    up: &ComposeUp,
    starting: &BTreeSet<String>,
    engine: &DockerEngine,
    ignored: &BTreeMap<String, String>,
) -> Result<(), ComposeError> {
    let _ = ignored;
    let Some(top) = doc.as_mapping_mut() else {
        return Ok(());
    };
    let mut uses_default = false;
    let Some(services) = mapping_mut(top, "services") else {
        return Ok(());
    };
    let names: Vec<String> = services.keys().filter_map(str_of).collect();
    for name in names {
        let Some(Value::Mapping(service)) = services.get_mut(name.as_str()) else {
            continue;
        };
        service.remove("ports");
        service.remove("container_name");
        if !service.contains_key("networks") && !service.contains_key("network_mode") {
            uses_default = true;
        }
        if let Some(Value::Sequence(nets)) = service.get("networks") {
            uses_default |= nets.iter().any(|n| str_of(n).as_deref() == Some("default"));
        }
        if let Some(Value::Mapping(nets)) = service.get("networks") {
            uses_default |= nets.contains_key("default");
        }
        let mut labels = as_key_values(service.remove("labels"));
        for (k, v) in &up.labels {
            labels.insert(Value::String(k.clone()), literal(v));
        }
        service.insert(
            "security_opt".into(),
            vec![Value::from("no-new-privileges:true")].into(),
        );
        service.insert("cap_drop".into(), vec![Value::from("ALL")].into());
        service.insert(
            "cap_add".into(),
            CAP_ADD
                .iter()
                .map(|c| Value::from(*c))
                .collect::<Vec<_>>()
                .into(),
        );
        if let Some(mb) = up.limits.memory_mb {
            service.insert("mem_limit".into(), format!("{mb}m").into());
            service.insert("memswap_limit".into(), format!("{mb}m").into());
        }
        if let Some(n) = up.limits.max_processes {
            service.insert("pids_limit".into(), Value::from(n));
        }
        if name == up.service {
            if let Some(user) = &up.remote_user {
                labels.insert(crate::docker::REMOTE_USER_LABEL.into(), literal(user));
            }
            if !up.remote_env.is_empty() {
                let env: BTreeMap<&str, &str> = up
                    .remote_env
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                labels.insert(
                    crate::docker::REMOTE_ENV_LABEL.into(),
                    literal(&serde_json::to_string(&env).unwrap_or_default()),
                );
            }
            // docker.rs's first process; compose interpolates the file, so every `$` is
            // doubled to stay literal.
            let script = crate::docker::init_script(&up.entrypoints).replace('$', "$$");
            service.insert(
                "entrypoint".into(),
                vec![Value::from("sh"), Value::from("-c"), Value::from(script)].into(),
            );
            service.insert("command".into(), Value::Sequence(Vec::new()));
            service.insert("working_dir".into(), literal(&up.workspace_folder));
            if let Some(user) = &up.user {
                service.insert("user".into(), literal(user));
            }
            let mut env = as_key_values(service.remove("environment"));
            for (k, v) in &up.env {
                env.insert(Value::String(k.clone()), literal(v));
            }
            service.insert("environment".into(), Value::Mapping(env));
            let mut volumes = match service.remove("volumes") {
                Some(Value::Sequence(v)) => v,
                _ => Vec::new(),
            };
            volumes.retain(|v| volume_target(v).as_deref() != Some(up.workspace_folder.as_str()));
            volumes.push(bind(
                "bind",
                &up.worktree.display().to_string(),
                &up.workspace_folder,
                false,
            ));
            for m in &up.extra_mounts {
                let kind = match m.kind {
                    MountKind::Bind => "bind",
                    MountKind::Volume => "volume",
                    MountKind::Tmpfs => "tmpfs",
                };
                volumes.push(bind(kind, &m.source, &m.target, m.read_only));
            }
            service.insert("volumes".into(), Value::Sequence(volumes));
            if let Some(image) = &up.image {
                service.insert("image".into(), literal(image));
                service.remove("build");
            }
        }
        service.insert("labels".into(), Value::Mapping(labels));

        // Images: built here (never pulled), or present.
        if !starting.contains(&name) {
            continue;
        }
        if let Some(build) = service.remove("build") {
            let base = up.project_dir.clone();
            let Some(build) = build_of(&build, &base) else {
                continue;
            };
            // Never the service's `image`: a repository's build must not take the name of an
            // image other missions run (nothing is pulled, so a tag is trusted as found).
            let tag = format!("flightdeck-build/{}-{name}:latest", up.project);
            engine
                .build_image(
                    &build.context,
                    &build.dockerfile,
                    &build.args,
                    build.target.as_deref(),
                    &tag,
                    &up.labels,
                )
                .await?;
            service.insert("image".into(), literal(&tag));
        } else {
            let image = service.get("image").and_then(str_of).unwrap_or_default();
            let unescaped = image.replace("$$", "$");
            match engine.local_image(&unescaped).await {
                Ok(_) => {}
                Err(DockerError::ImageMissing(_)) => {
                    return Err(ComposeError::ImageMissing {
                        service: name.clone(),
                        image: unescaped,
                    })
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    // Networks: closed unless the mission may use the network.
    let Some(networks) = mapping_mut(top, "networks") else {
        return Ok(());
    };
    if uses_default && !networks.contains_key("default") {
        networks.insert("default".into(), Value::Mapping(Mapping::new()));
    }
    if !up.network_open {
        for (_, network) in networks.iter_mut() {
            if !network.is_mapping() {
                *network = Value::Mapping(Mapping::new());
            }
            if let Value::Mapping(network) = network {
                network.insert("driver".into(), "bridge".into());
                network.insert("internal".into(), true.into());
                network.remove("enable_ipv6");
                if let Some(opts) = mapping_mut(network, "driver_opts") {
                    opts.insert(
                        "com.docker.network.bridge.inhibit_ipv4".into(),
                        "true".into(),
                    );
                }
            }
        }
    }
    if networks.is_empty() {
        top.remove("networks");
    }
    Ok(())
}

fn volume_target(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => {
            let parts: Vec<&str> = s.split(':').collect();
            match parts.len() {
                1 => Some(parts[0].to_string()),
                _ => Some(parts[1].to_string()),
            }
        }
        Value::Mapping(m) => get(m, "target").and_then(str_of),
        _ => None,
    }
}

fn bind(kind: &str, source: &str, target: &str, read_only: bool) -> Value {
    let mut m = Mapping::new();
    m.insert("type".into(), kind.into());
    if !source.is_empty() && kind != "tmpfs" {
        m.insert("source".into(), literal(source));
    }
    m.insert("target".into(), literal(target));
    if read_only {
        m.insert("read_only".into(), true.into());
    }
    Value::Mapping(m)
}

/// The container of `service` in compose project `project`.
pub async fn service_container(
    engine: &DockerEngine,
    project: &str,
    service: &str,
) -> Result<Option<String>, ComposeError> {
    let containers = engine.list_labelled(COMPOSE_PROJECT_LABEL).await?;
    Ok(containers
        .into_iter()
        .filter(|c| {
            c.labels.get(COMPOSE_PROJECT_LABEL).map(String::as_str) == Some(project)
                && c.labels.get(COMPOSE_SERVICE_LABEL).map(String::as_str) == Some(service)
        })
        .map(|c| c.id)
        .next())
}

/// The compose projects of containers labelled `label=value` (`workspace gc`).
pub async fn projects_with_label(
    engine: &DockerEngine,
    label: &str,
    value: Option<&str>,
) -> Result<BTreeSet<String>, ComposeError> {
    let containers = engine.list_labelled(label).await?;
    Ok(containers
        .into_iter()
        .filter(|c| value.is_none_or(|v| c.labels.get(label).map(String::as_str) == Some(v)))
        .filter_map(|c| c.labels.get(COMPOSE_PROJECT_LABEL).cloned())
        .collect())
}

/// Removes the project: its containers (with their anonymous volumes), networks and
/// volumes. Needs only the name: the CLI's `down` runs with an empty file, then whatever
/// the engine still holds with the project's label goes through the API (the CLI removes
/// only the networks and volumes a file names). A project already gone is not an error.
pub async fn down(cli: &ComposeCli, project: &str, scratch: &Path) -> Result<(), ComposeError> {
    std::fs::create_dir_all(scratch).map_err(|source| ComposeError::Write {
        path: scratch.to_path_buf(),
        source,
    })?;
    let empty = scratch.join(format!("{project}.down.yml"));
    let text = if cli.is_v2() {
        "services: {}\n"
    } else {
        "version: \"3.8\"\nservices: {}\n"
    };
    std::fs::write(&empty, text).map_err(|source| ComposeError::Write {
        path: empty.clone(),
        source,
    })?;
    let args: Vec<String> = [
        "-p",
        project,
        "--project-directory",
        &scratch.display().to_string(),
        "-f",
        &empty.display().to_string(),
        "down",
        "-v",
        "--remove-orphans",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let cli_result = cli.run(&args).await;
    let _ = std::fs::remove_file(&empty);
    let engine = DockerEngine::connect().await?;
    let swept = sweep(&engine, project).await;
    match (cli_result, swept) {
        (_, Ok(())) => Ok(()),
        (Err(e), Err(_)) => Err(e),
        (Ok(_), Err(e)) => Err(e),
    }
}

/// Removes what the engine holds labelled with the project.
pub async fn sweep(engine: &DockerEngine, project: &str) -> Result<(), ComposeError> {
    let filter = format!("{COMPOSE_PROJECT_LABEL}={project}");
    for container in engine.list_labelled(COMPOSE_PROJECT_LABEL).await? {
        if container
            .labels
            .get(COMPOSE_PROJECT_LABEL)
            .map(String::as_str)
            == Some(project)
        {
            engine.remove_container(&container.id).await?;
        }
    }
    let api = engine.api();
    let api_error = |action: &str| {
        let action = action.to_string();
        move |source| DockerError::Api { action, source }
    };
    let networks = api
        .list_networks(Some(ListNetworksOptions {
            filters: Some(HashMap::from([("label".to_string(), vec![filter.clone()])])),
        }))
        .await
        .map_err(api_error("list networks"))?;
    for network in networks {
        let Some(id) = network.id else { continue };
        match api.remove_network(&id).await {
            Ok(()) => {}
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => return Err(api_error(&format!("remove network {id}"))(e).into()),
        }
    }
    let volumes = api
        .list_volumes(Some(ListVolumesOptions {
            filters: Some(HashMap::from([("label".to_string(), vec![filter])])),
        }))
        .await
        .map_err(api_error("list volumes"))?;
    for volume in volumes.volumes.unwrap_or_default() {
        match api
            .remove_volume(
                &volume.name,
                None::<bollard::query_parameters::RemoveVolumeOptions>,
            )
            .await
        {
            Ok(()) => {}
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => return Err(api_error(&format!("remove volume {}", volume.name))(e).into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn interpolation_follows_compose() {
        let vars = HashMap::from([
            ("A".to_string(), "a".to_string()),
            ("E".to_string(), String::new()),
        ]);
        for (text, want) in [
            ("$$A", "$A"),
            ("${A}/x", "a/x"),
            ("$A-$B.", "a-."),
            ("${B:-/d}", "/d"),
            ("${E:-d}", "d"),
            ("${E-d}", ""),
            ("${A:+r}", "r"),
            ("${B?err}", ""),
            ("a$", "a$"),
        ] {
            assert_eq!(interpolate_str(text, &vars), want, "{text}");
        }
    }

    #[test]
    fn project_names_are_lowercase_and_plain() {
        assert_eq!(project_name("flightdeck-M-01.AbC"), "flightdeck-m-01abc");
    }

    #[test]
    fn the_output_tail_is_bounded() {
        let long = "é".repeat(10_000);
        let t = tail(&long, 101);
        assert!(t.len() <= 101 + "[…]".len());
        assert!(t.starts_with("[…]"));
    }
}
