//! Reading a repository's `devcontainer.json` into plain data the container runtime consumes.
//!
//! The reference is the `@devcontainers/cli` package (`devcontainer read-configuration`); the
//! comparison test in `tests/devcontainer.rs` runs it on every fixture we accept. What it does,
//! we do: JSON with comments and trailing commas, `${…}` variables substituted in every string
//! value (never in keys), `workspaceFolder` defaulting to `/workspaces/<basename>`, `build`
//! paths relative to the file's folder. Where it differs, it is on purpose:
//!
//! - A syntax error is an error (the reference's parser is lenient and keeps what it could read).
//! - `features` are read as written (ids and options, in the file's order) with
//!   `overrideFeatureInstallOrder`; fetching, ordering and installing them is
//!   [`crate::features`]'s. `dockerComposeFile` (paths resolved against the file's folder, kept
//!   inside the repository), `service` and `runServices` become [`ImageSource::Compose`], which
//!   [`crate::compose`] checks and brings up.
//! - What flightdeck cannot do is refused, not dropped: everything that would weaken the
//!   container's isolation: `privileged`, `capAdd`, `securityOpt`, `runArgs` other
//!   than `--network`/`--net`, `--env`/`-e`, `--user`/`-u`, `--label`/`-l`, mount options other
//!   than the plain ones, and host paths outside the repository (bind mounts, build context,
//!   Dockerfile). A workspace must not see the host.
//! - `${devcontainerId}` is replaced when the caller gives the id (see [`devcontainer_id`]);
//!   [`load`] does. The reference's `read-configuration` leaves it as written when no container
//!   exists yet and substitutes the same value once one does.
//! - Nothing is dropped silently. Every key the spec defines is in the table `TOP_LEVEL` (with
//!   `BUILD` and `HOST_REQUIREMENTS` for the nested objects), which says whether flightdeck
//!   reads it, refuses it (when honouring it would be needed for the result to be right, or
//!   ignoring it would mislead), or does not apply it: then it is reported in
//!   [`DevContainer::ignored`] with the reason, for the timeline (`workspace.provisioned`'s
//!   `ignored`). Keys that are not in the tables (typos, newer keys) are reported the same way. A known key
//!   whose value asks for nothing (`null`, `[]`, `{}`, `""`, or what flightdeck does anyway,
//!   such as `"init": false`) is not reported. Editor metadata (`name`, `$schema`,
//!   `customizations`, the legacy top-level `extensions` and `settings`) configures the editor,
//!   not the container, so it is never reported.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Where a repository's configuration is looked for, in the spec's order.
pub const CONFIG_LOCATIONS: [&str; 2] = [".devcontainer/devcontainer.json", ".devcontainer.json"];

/// What flightdeck reads from `runArgs`; everything else is refused.
const ACCEPTED_RUN_ARGS: &str = "--network/--net, --env/-e, --user/-u, --label/-l, --platform";

/// A `devcontainer.json`, read and with its variables substituted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DevContainer {
    /// The file this was read from.
    pub config_file: PathBuf,
    pub name: Option<String>,
    /// The image to run, or how to build it. `build` wins over `image` when both are given, as
    /// in the reference.
    pub source: ImageSource,
    /// Set on the container (`docker run -e`).
    pub container_env: BTreeMap<String, String>,
    /// Set for the commands run in the container; `None` unsets the variable. Values may still
    /// hold `${containerEnv:VAR}`, which only the container side can resolve.
    pub remote_env: BTreeMap<String, Option<String>>,
    pub container_user: Option<String>,
    pub remote_user: Option<String>,
    /// Where the repository is inside the container (`workspaceFolder`, default
    /// `/workspaces/<basename of the repository>`).
    pub workspace_folder: String,
    /// How the repository gets into the container; `None` when `workspaceMount` is empty or
    /// null (the image brings its own). Default: the repository bound at `/workspaces/<basename>`.
    pub workspace_mount: Option<Mount>,
    pub mounts: Vec<Mount>,
    pub run_args: RunArgs,
    /// Runs on the host in the reference, before the container exists. Read so that the runtime
    /// can refuse or confine it: flightdeck must not run repository code on the host unsandboxed.
    pub initialize_command: Option<LifecycleCommand>,
    pub on_create_command: Option<LifecycleCommand>,
    pub update_content_command: Option<LifecycleCommand>,
    pub post_create_command: Option<LifecycleCommand>,
    pub post_start_command: Option<LifecycleCommand>,
    pub post_attach_command: Option<LifecycleCommand>,
    /// `None` means the default: `true` (the image's command is replaced by a sleep loop).
    pub override_command: Option<bool>,
    pub shutdown_action: Option<ShutdownAction>,
    pub forward_ports: Vec<ForwardPort>,
    /// `docker run --init`.
    pub init: bool,
    /// `features`: id as written → its options (an object, a string for `version`, or
    /// `true`), in the file's order.
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub features: Map<String, Value>,
    /// `overrideFeatureInstallOrder`: feature ids (without version) installed first, in this
    /// order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub override_feature_install_order: Vec<String>,
    /// Keys present in the file that flightdeck does not apply, with why; in the file's order.
    /// `override_command`, `shutdown_action`, `forward_ports` and `init` above are read (and
    /// checked) but not applied by the container runtime, so they are listed here too.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<IgnoredKey>,
}

/// A key of devcontainer.json that flightdeck read past without applying it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IgnoredKey {
    /// Its JSON path: `appPort`, `build.cacheFrom`, `hostRequirements.memory`.
    pub key: String,
    /// Why it is not applied and what that means for the workspace, said for a person.
    pub why: String,
}

/// Where the container's image comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageSource {
    Image(String),
    Build(Build),
    /// `dockerComposeFile`: the container is a service of a Compose project.
    Compose(Compose),
}

/// `dockerComposeFile`, `service` and `runServices`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Compose {
    /// Absolute, normalized, inside the repository; in the file's order (later files override
    /// earlier ones, as with `docker compose -f … -f …`).
    pub files: Vec<PathBuf>,
    /// The service the mission's commands run in.
    pub service: String,
    /// The services brought up (besides `service`); `None` is all of the project's.
    pub run_services: Option<Vec<String>>,
}

/// `build` (or the legacy top-level `dockerFile`/`context`), paths resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Build {
    /// Absolute: relative to the folder holding the devcontainer.json.
    pub dockerfile: PathBuf,
    /// Absolute: `context` relative to the devcontainer.json's folder; without one, the
    /// Dockerfile's folder (what the reference does).
    pub context: PathBuf,
    pub args: BTreeMap<String, String>,
    pub target: Option<String>,
}

/// One mount, from either the string form (`type=…,source=…,target=…`) or the object form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Mount {
    /// `source` is absolute, normalized and inside the repository once it comes out of
    /// [`parse`] (the bare [`parse_mount_string`] checks only the syntax).
    Bind {
        source: PathBuf,
        target: String,
        readonly: bool,
    },
    /// A named volume, or an anonymous one without `source`.
    Volume {
        source: Option<String>,
        target: String,
        readonly: bool,
    },
    Tmpfs {
        target: String,
        readonly: bool,
        /// `tmpfs-size`, as docker takes it (bytes, or with a unit: `64m`).
        size: Option<String>,
        /// `tmpfs-mode`, octal.
        mode: Option<String>,
    },
}

/// A lifecycle command in one of its three forms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleCommand {
    /// A string: run by `/bin/sh -c`.
    Shell(String),
    /// An array: the program and its arguments, no shell.
    Exec(Vec<String>),
    /// An object: named commands that the reference runs in parallel; done when all are.
    Parallel(BTreeMap<String, CommandForm>),
}

/// One named command of [`LifecycleCommand::Parallel`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandForm {
    Shell(String),
    Exec(Vec<String>),
}

/// `runArgs`: kept as written, and what flightdeck understands of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunArgs {
    /// As written (after substitution), in order.
    pub raw: Vec<String>,
    /// `--network`/`--net`. `host` or `container:<id>` leave the network namespace: the runtime
    /// decides whether policy allows that.
    pub network: Option<String>,
    /// `--env`/`-e NAME=VALUE`; the later of two wins, as in docker.
    pub env: BTreeMap<String, String>,
    /// `--user`/`-u`; docker applies it after `containerUser`, so it wins over it.
    pub user: Option<String>,
    /// `--label`/`-l KEY[=VALUE]`.
    pub labels: BTreeMap<String, String>,
    /// `--platform`: harmless (it chooses what to pull, and nothing is pulled), so accepted
    /// and reported as not applied.
    pub platform: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ShutdownAction {
    None,
    StopContainer,
    StopCompose,
}

/// An entry of `forwardPorts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ForwardPort {
    /// A port of the container.
    Port(u16),
    /// `"host:port"`: a port of another host the container reaches.
    Host { host: String, port: u16 },
}

/// What `${…}` variables resolve to.
pub struct Substitution<'a> {
    /// The repository on the host, absolute and normalized: `${localWorkspaceFolder}`. Bind
    /// mounts, the Dockerfile and the build context must stay inside it.
    pub local_workspace_folder: &'a Path,
    /// `${localEnv:VAR}` (alias `${env:VAR}`).
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// `${devcontainerId}`; `None` leaves it as written.
    pub devcontainer_id: Option<&'a str>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevcontainerError {
    #[error("failed to read {}: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}\nhint: devcontainer.json is JSON with `//` and `/* */` comments and trailing commas; fix the text at this position", file.display())]
    Syntax {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}: `{field}`: {message}\nhint: {hint}", file.display())]
    Invalid {
        file: PathBuf,
        field: String,
        message: String,
        hint: String,
    },
    /// A feature of the format flightdeck does not provide.
    #[error("{}: `{field}`: {message}\nhint: {hint}", file.display())]
    Unsupported {
        file: PathBuf,
        field: String,
        message: String,
        hint: String,
    },
    /// Something that would weaken the workspace's isolation from the host.
    #[error("{}: `{field}`: {message}\nhint: {hint}", file.display())]
    Refused {
        file: PathBuf,
        field: String,
        message: String,
        hint: String,
    },
}

/// A syntax error of the JSONC layer (an unterminated block comment).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct JsoncError {
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub message: String,
}

/// A mount string that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MountError(String);

/// The repository's devcontainer.json: `.devcontainer/devcontainer.json`, else
/// `.devcontainer.json`. (The spec's `.devcontainer/<name>/devcontainer.json` variants need a
/// choice of name, so the caller passes those to [`load`] itself.)
pub fn find(repo_root: &Path) -> Option<PathBuf> {
    CONFIG_LOCATIONS
        .iter()
        .map(|location| repo_root.join(location))
        .find(|path| path.is_file())
}

/// Reads `config_path` (relative to `repo_root`, or absolute) for the repository at
/// `repo_root`. `env` answers `${localEnv:…}`; `${devcontainerId}` becomes
/// [`devcontainer_id`] of the two paths. On top of [`parse`], host paths the config names
/// (bind sources, Dockerfile, build context) are checked again with symlinks resolved.
pub fn load(
    repo_root: &Path,
    config_path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<DevContainer, DevcontainerError> {
    let root = absolute(repo_root).map_err(|source| DevcontainerError::Read {
        file: repo_root.to_path_buf(),
        source,
    })?;
    let file = normalize(&root.join(config_path));
    let text = std::fs::read_to_string(&file).map_err(|source| DevcontainerError::Read {
        file: file.clone(),
        source,
    })?;
    let id = devcontainer_id(&root, &file);
    let ctx = Substitution {
        local_workspace_folder: &root,
        env,
        devcontainer_id: Some(&id),
    };
    let config = parse(&text, &file, &ctx)?;
    check_resolved_paths(&config, &root)?;
    Ok(config)
}

/// Parses the text of a devcontainer.json found at `file` (absolute: relative `build` paths
/// resolve against its folder). No IO: symlinks are not looked at, see [`load`].
pub fn parse(
    text: &str,
    file: &Path,
    ctx: &Substitution<'_>,
) -> Result<DevContainer, DevcontainerError> {
    let cx = Cx { file };
    let root = parse_jsonc(text, file)?;
    let raw = match root {
        Value::Object(raw) => raw,
        other => {
            return Err(cx.invalid(
                "(root)",
                format!("the file holds {}, not an object", kind(&other)),
                "write the configuration as one JSON object: { \"image\": \"…\" }",
            ))
        }
    };
    refuse_unsupported(&cx, &raw)?;
    let ignored = classify_keys(&cx, "", &raw, TOP_LEVEL)?;

    // The container folder that `${containerWorkspaceFolder}` names comes from the raw
    // `workspaceFolder`, substituted with itself as that variable (the reference's order).
    let local = ctx.local_workspace_folder;
    let default_folder = format!("/workspaces/{}", posix_basename(&local.to_string_lossy()));
    let raw_folder = match raw.get("workspaceFolder") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => default_folder.clone(),
    };
    let mut vars = Vars {
        ctx,
        container_folder: raw_folder.clone(),
    };
    vars.container_folder = vars.substitute(&raw_folder, &cx, "workspaceFolder")?;

    let mut config = Map::new();
    for (key, value) in raw {
        let value = vars.substitute_value(value, &cx, &key)?;
        config.insert(key, value);
    }
    let mut config = read_config(&cx, &config, ctx, default_folder)?;
    let compose_only = std::mem::take(&mut config.ignored);
    config.ignored = ignored;
    config.ignored.extend(compose_only);
    Ok(config)
}

/// The reference's `${devcontainerId}`: sha256 of the JSON of its id labels
/// (`devcontainer.config_file`, `devcontainer.local_folder`, keys sorted) as a base-32 number,
/// 52 digits. Stable for a repository folder and config file.
pub fn devcontainer_id(local_folder: &Path, config_file: &Path) -> String {
    let labels: BTreeMap<&str, String> = BTreeMap::from([
        (
            "devcontainer.config_file",
            config_file.to_string_lossy().into_owned(),
        ),
        (
            "devcontainer.local_folder",
            local_folder.to_string_lossy().into_owned(),
        ),
    ]);
    // Serializing a map of strings cannot fail; an empty input would still give an id.
    let json = serde_json::to_string(&labels).unwrap_or_default();
    let digest = Sha256::digest(json.as_bytes());
    // 256 bits with 4 zero bits in front are 52 groups of 5 bits: the base-32 digits, already
    // padded to 52 as the reference pads them.
    const DIGITS: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
    let bit = |i: usize| -> u8 {
        if i < 4 {
            0
        } else {
            let i = i - 4;
            (digest[i / 8] >> (7 - i % 8)) & 1
        }
    };
    (0..52)
        .map(|group| {
            let value = (0..5).fold(0u8, |acc, b| (acc << 1) | bit(group * 5 + b));
            char::from(DIGITS[usize::from(value)])
        })
        .collect()
}

/// Turns JSONC into JSON with the same byte offsets: comments and trailing commas become spaces
/// (newlines inside block comments stay, so serde_json's line numbers are the file's).
pub fn strip_jsonc(text: &str) -> Result<String, JsoncError> {
    let bytes = text.as_bytes();
    let mut out = bytes.to_vec();
    let mut i = 0;
    // A comma is trailing when the next token after it is `]` or `}`.
    let mut pending_comma: Option<usize> = None;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                pending_comma = None;
                i += 1;
                while i < bytes.len() {
                    match bytes[i] {
                        b'\\' => i += 2,
                        b'"' => {
                            i += 1;
                            break;
                        }
                        _ => i += 1,
                    }
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    out[i] = b' ';
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let start = i;
                out[i] = b' ';
                out[i + 1] = b' ';
                i += 2;
                loop {
                    if i >= bytes.len() {
                        let (line, column) = line_column(text, start);
                        return Err(JsoncError {
                            line,
                            column,
                            message: "this `/*` comment is never closed with `*/`".into(),
                        });
                    }
                    if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
                        out[i] = b' ';
                        out[i + 1] = b' ';
                        i += 2;
                        break;
                    }
                    if bytes[i] != b'\n' && bytes[i] != b'\r' {
                        out[i] = b' ';
                    }
                    i += 1;
                }
            }
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b',' => {
                pending_comma = Some(i);
                i += 1;
            }
            b']' | b'}' => {
                if let Some(comma) = pending_comma.take() {
                    out[comma] = b' ';
                }
                i += 1;
            }
            _ => {
                pending_comma = None;
                i += 1;
            }
        }
    }
    // Only whole characters were blanked (every byte of a comment), so this stays UTF-8.
    Ok(String::from_utf8(out)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

/// Parses docker's `--mount` syntax: comma-separated `key=value` fields (CSV quoting, keys
/// case-insensitive, later keys win). Accepts `type` (bind, volume, tmpfs; default volume, as
/// docker), `source`/`src`, `target`/`destination`/`dst`, `readonly`/`ro`, `consistency`
/// (ignored, as docker ignores it on Linux), `tmpfs-size`, `tmpfs-mode`. Other options are
/// refused: `bind-propagation` could carry mounts back to the host and `volume-opt` can make
/// a volume a bind of any host path.
pub fn parse_mount_string(text: &str) -> Result<Mount, MountError> {
    let mut kind: Option<String> = None;
    let mut source: Option<String> = None;
    let mut target: Option<String> = None;
    let mut readonly = false;
    let mut size: Option<String> = None;
    let mut mode: Option<String> = None;
    for field in csv_fields(text)? {
        let (key, value) = match field.split_once('=') {
            Some((key, value)) => (key.to_ascii_lowercase(), Some(value.to_string())),
            None => (field.to_ascii_lowercase(), None),
        };
        let need = |value: Option<String>| {
            value.ok_or_else(|| MountError(format!("`{key}` needs a value (`{key}=…`)")))
        };
        match key.as_str() {
            "type" => kind = Some(need(value)?.to_ascii_lowercase()),
            "source" | "src" => source = Some(need(value)?),
            "target" | "destination" | "dst" => target = Some(need(value)?),
            "readonly" | "ro" => {
                readonly = match value.as_deref() {
                    None | Some("1") | Some("true") => true,
                    Some("0") | Some("false") => false,
                    Some(other) => {
                        return Err(MountError(format!(
                            "`{key}={other}`: expected true, false, 1 or 0"
                        )))
                    }
                }
            }
            "consistency" => {}
            "tmpfs-size" => size = Some(need(value)?),
            "tmpfs-mode" => mode = Some(need(value)?),
            "" => return Err(MountError("an empty field (two commas in a row?)".into())),
            other => {
                return Err(MountError(format!(
                    "mount option `{other}` is not supported: flightdeck passes on only type, source, target, readonly, tmpfs-size and tmpfs-mode, as other options can reach host paths"
                )))
            }
        }
    }
    build_mount(
        kind.as_deref().unwrap_or("volume"),
        source,
        target,
        readonly,
        size,
        mode,
    )
}

fn build_mount(
    kind: &str,
    source: Option<String>,
    target: Option<String>,
    readonly: bool,
    size: Option<String>,
    mode: Option<String>,
) -> Result<Mount, MountError> {
    let target = target.ok_or_else(|| MountError("no `target`".into()))?;
    if !target.starts_with('/') {
        return Err(MountError(format!(
            "target `{target}` is not an absolute path in the container"
        )));
    }
    if kind != "tmpfs" && (size.is_some() || mode.is_some()) {
        return Err(MountError(
            "`tmpfs-size` and `tmpfs-mode` apply to `type=tmpfs` only".into(),
        ));
    }
    match kind {
        "bind" => {
            let source =
                source.ok_or_else(|| MountError("a bind mount needs a `source`".into()))?;
            Ok(Mount::Bind {
                source: PathBuf::from(source),
                target,
                readonly,
            })
        }
        "volume" => {
            if let Some(name) = &source {
                if name.contains('/') {
                    return Err(MountError(format!(
                        "volume source `{name}` is a path, not a volume name"
                    )));
                }
            }
            Ok(Mount::Volume {
                source: source.filter(|s| !s.is_empty()),
                target,
                readonly,
            })
        }
        "tmpfs" => {
            if source.is_some() {
                return Err(MountError("a tmpfs mount has no `source`".into()));
            }
            Ok(Mount::Tmpfs {
                target,
                readonly,
                size,
                mode,
            })
        }
        other => Err(MountError(format!(
            "mount type `{other}` is not supported (supported: bind, volume, tmpfs)"
        ))),
    }
}

/// Splits on commas the way docker's CSV reader does: a field may be quoted (`"a,b"`, with
/// `""` for a quote); a quote inside an unquoted field is an error.
fn csv_fields(text: &str) -> Result<Vec<String>, MountError> {
    let mut fields = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(MountError("a quoted field is never closed".into())),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(c) => {
                    return Err(MountError(format!(
                        "`{c}` after a closing quote: a field is either all quoted or not"
                    )))
                }
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => {
                        fields.push(field);
                        break;
                    }
                    Some('"') => {
                        return Err(MountError(
                            "a quote inside an unquoted field: quote the whole field".into(),
                        ))
                    }
                    Some(c) => field.push(c),
                }
            }
        }
    }
}

/// The file being read, for errors.
struct Cx<'a> {
    file: &'a Path,
}

impl Cx<'_> {
    fn invalid(
        &self,
        field: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> DevcontainerError {
        DevcontainerError::Invalid {
            file: self.file.to_path_buf(),
            field: field.into(),
            message: message.into(),
            hint: hint.into(),
        }
    }

    fn unsupported(&self, field: &str, message: &str, hint: &str) -> DevcontainerError {
        DevcontainerError::Unsupported {
            file: self.file.to_path_buf(),
            field: field.into(),
            message: message.into(),
            hint: hint.into(),
        }
    }

    fn refused(
        &self,
        field: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> DevcontainerError {
        DevcontainerError::Refused {
            file: self.file.to_path_buf(),
            field: field.into(),
            message: message.into(),
            hint: hint.into(),
        }
    }

    fn wrong_type(&self, field: &str, expected: &str, found: &Value) -> DevcontainerError {
        self.invalid(
            field,
            format!("expected {expected}, found {}", kind(found)),
            format!("write `{field}` as {expected}"),
        )
    }
}

fn parse_jsonc(text: &str, file: &Path) -> Result<Value, DevcontainerError> {
    // A byte-order mark is not JSON; editors on Windows write one.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let json = strip_jsonc(text).map_err(|e| DevcontainerError::Syntax {
        file: file.to_path_buf(),
        line: e.line,
        column: e.column,
        message: e.message,
    })?;
    serde_json::from_str(&json).map_err(|e| {
        let (line, column) = (e.line(), e.column());
        let full = e.to_string();
        let suffix = format!(" at line {line} column {column}");
        let message = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
        DevcontainerError::Syntax {
            file: file.to_path_buf(),
            line,
            column,
            message,
        }
    })
}

fn refuse_unsupported(cx: &Cx<'_>, raw: &Map<String, Value>) -> Result<(), DevcontainerError> {
    match raw.get("features") {
        None | Some(Value::Null) | Some(Value::Object(_)) => {}
        Some(other) => return Err(cx.wrong_type("features", "an object", other)),
    }
    if let Some(value) = raw.get("privileged") {
        if value != &Value::Bool(false) && !value.is_null() {
            return Err(cx.refused(
                "privileged",
                "a privileged container can reach the host's devices and kernel",
                "remove `privileged`",
            ));
        }
    }
    for key in ["capAdd", "securityOpt"] {
        match raw.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) if items.is_empty() => {}
            Some(_) => {
                return Err(cx.refused(
                    key,
                    "added capabilities and security options weaken the container's isolation",
                    format!("remove `{key}`"),
                ))
            }
        }
    }
    Ok(())
}

/// What flightdeck does with one key of devcontainer.json.
#[derive(Clone, Copy)]
enum Treatment {
    /// Read into [`DevContainer`], and refused there by value where the value would weaken the
    /// container's isolation or needs what flightdeck lacks (`features`, `privileged`,
    /// `runArgs`, `mounts`, …).
    Read,
    /// Configures an editor, not the container: never reported.
    Metadata,
    /// Not applied: reported with this reason, unless the value asks for nothing (`null`,
    /// `[]`, `{}`, `""`).
    Ignored(&'static str),
    /// An object whose keys have a table of their own.
    Nested(&'static [(&'static str, Treatment)]),
    /// Decided by the value: `Ok(None)` is applied or asks for nothing, `Ok(Some(why))` is
    /// reported, an error refuses.
    ByValue(Decide),
}

type Decide = fn(&Cx<'_>, &str, &Value) -> Result<Option<&'static str>, DevcontainerError>;

const NO_PORTS: &str = "flightdeck publishes and forwards no port of the container: the mission's commands reach its services on localhost, nothing outside the container does";
const HOST_RESOURCES: &str = "flightdeck does not check the host's resources; the container's limits come from the template's [workspace] (memory_mb, max_processes)";

/// Every top-level key of devcontainer.json (the spec's, for image, Dockerfile and Compose
/// configurations) and what flightdeck does with it. Why, for the keys not simply read:
const TOP_LEVEL: &[(&str, Treatment)] = &[
    ("image", Treatment::Read),
    ("build", Treatment::Nested(BUILD)),
    ("dockerFile", Treatment::Read),
    ("context", Treatment::Read),
    ("containerEnv", Treatment::Read),
    ("remoteEnv", Treatment::Read),
    ("containerUser", Treatment::Read),
    ("remoteUser", Treatment::Read),
    ("workspaceFolder", Treatment::Read),
    ("workspaceMount", Treatment::Read),
    ("mounts", Treatment::Read),
    ("runArgs", Treatment::Read),
    // Runs on the host in the reference: read so that the engine refuses it.
    ("initializeCommand", Treatment::Read),
    ("onCreateCommand", Treatment::Read),
    ("updateContentCommand", Treatment::Read),
    ("postCreateCommand", Treatment::Read),
    ("postStartCommand", Treatment::Read),
    ("postAttachCommand", Treatment::Read),
    ("features", Treatment::Read),
    ("overrideFeatureInstallOrder", Treatment::Read),
    ("dockerComposeFile", Treatment::Read),
    // Read with `dockerComposeFile`; reported as ignored without it (see `read_config`).
    ("service", Treatment::Read),
    ("runServices", Treatment::Read),
    // Refused when they ask for anything (see `refuse_unsupported`).
    ("privileged", Treatment::Read),
    ("capAdd", Treatment::Read),
    ("securityOpt", Treatment::Read),
    // Editor metadata.
    ("name", Treatment::Metadata),
    ("$schema", Treatment::Metadata),
    ("customizations", Treatment::Metadata),
    ("extensions", Treatment::Metadata),
    ("settings", Treatment::Metadata),
    // Ports are for an editor or a browser on the host; the mission's commands run inside the
    // container and need none. Publishing one would open the container to the host's network.
    ("appPort", Treatment::Ignored(NO_PORTS)),
    ("forwardPorts", Treatment::Ignored(NO_PORTS)),
    ("portsAttributes", Treatment::Ignored(NO_PORTS)),
    ("otherPortsAttributes", Treatment::Ignored(NO_PORTS)),
    // What happens when an editor disconnects; flightdeck's own lifecycle decides instead.
    (
        "shutdownAction",
        Treatment::Ignored("flightdeck stops and removes the container itself when the mission is done"),
    ),
    // Stricter than any value: nothing runs before all lifecycle commands are done.
    (
        "waitFor",
        Treatment::Ignored("flightdeck runs every lifecycle command to the end before the mission's first command"),
    ),
    // `false` means the image's own command must run (it often starts a service): refused,
    // since flightdeck always replaces it and the missing service would fail commands later
    // with a misleading error. `true` is what flightdeck does.
    ("overrideCommand", Treatment::ByValue(override_command)),
    // PID 1 is flightdeck's shell loop, which reaps orphans as tini would: harmless.
    ("init", Treatment::ByValue(init)),
    // The reference's default (`loginInteractiveShell`) is not honoured either; refusing the
    // explicit value while accepting the default would be arbitrary. Reported, with the way
    // to get the variables (remoteEnv). `"none"` is what flightdeck does.
    ("userEnvProbe", Treatment::ByValue(user_env_probe)),
    // Also the reference's default, also not done: reported so that a permission error in
    // the worktree has its explanation on the timeline. `false` is what flightdeck does.
    ("updateRemoteUserUID", Treatment::ByValue(update_remote_user_uid)),
    // Minimums for the host, except a required GPU (refused: the work cannot be right without).
    ("hostRequirements", Treatment::Nested(HOST_REQUIREMENTS)),
    // Recommendations shown by an editor; secrets come from the template.
    (
        "secrets",
        Treatment::Ignored("recommendations for an editor; the mission's commands get the secrets the template's [workspace] names"),
    ),
    // Not a key of the spec (the reference ignores it too); listed for the pointer.
    (
        "gpu",
        Treatment::Ignored("not a devcontainer.json key, so it has no effect; a GPU is asked for with `hostRequirements.gpu`, and flightdeck runs containers without one"),
    ),
];

/// `build`.
const BUILD: &[(&str, Treatment)] = &[
    ("dockerfile", Treatment::Read),
    ("context", Treatment::Read),
    ("args", Treatment::Read),
    ("target", Treatment::Read),
    // Cache sources change how fast the image builds, not what it is.
    (
        "cacheFrom",
        Treatment::Ignored("a build cache hint: the image is built without it (the same image, perhaps more slowly)"),
    ),
    // Arbitrary `docker build` flags: without them the image is not the one described, and
    // some (`--network=host`, `--add-host`, `--secret`) reach past the build's isolation, so
    // they are refused rather than dropped or passed on.
    ("options", Treatment::ByValue(build_options)),
];

/// `hostRequirements`.
const HOST_REQUIREMENTS: &[(&str, Treatment)] = &[
    ("cpus", Treatment::Ignored(HOST_RESOURCES)),
    ("memory", Treatment::Ignored(HOST_RESOURCES)),
    ("storage", Treatment::Ignored(HOST_RESOURCES)),
    ("gpu", Treatment::ByValue(gpu)),
];

fn override_command(
    cx: &Cx<'_>,
    field: &str,
    value: &Value,
) -> Result<Option<&'static str>, DevcontainerError> {
    if value == &Value::Bool(false) {
        return Err(cx.unsupported(
            field,
            "flightdeck always replaces the image's command with its own (a loop that keeps the container up), so the image's entrypoint and command would not run, nor any service they start",
            "start what the image's entrypoint starts from `postStartCommand`, and remove `overrideCommand` (or set it to true)",
        ));
    }
    Ok(None)
}

fn init(_: &Cx<'_>, _: &str, value: &Value) -> Result<Option<&'static str>, DevcontainerError> {
    Ok((value == &Value::Bool(true)).then_some(
        "the container's PID 1 is flightdeck's own loop, which reaps orphaned processes; docker's --init is not added",
    ))
}

fn user_env_probe(
    _: &Cx<'_>,
    _: &str,
    value: &Value,
) -> Result<Option<&'static str>, DevcontainerError> {
    Ok(match value {
        Value::Null => None,
        Value::String(s) if s == "none" => None,
        _ => Some("commands get the image's environment, containerEnv and remoteEnv; flightdeck does not probe the user's shell profile (set what it adds in remoteEnv)"),
    })
}

fn update_remote_user_uid(
    _: &Cx<'_>,
    _: &str,
    value: &Value,
) -> Result<Option<&'static str>, DevcontainerError> {
    Ok((value == &Value::Bool(true)).then_some(
        "flightdeck does not change the container user's UID: the worktree keeps the host's file owners, so remoteUser may not be able to write it unless its UID matches",
    ))
}

fn gpu(cx: &Cx<'_>, field: &str, value: &Value) -> Result<Option<&'static str>, DevcontainerError> {
    match value {
        Value::Null | Value::Bool(false) => Ok(None),
        Value::String(s) if s == "optional" => Ok(Some("flightdeck runs containers without a GPU")),
        Value::Bool(true) | Value::Object(_) => Err(cx.unsupported(
            field,
            "the configuration requires a GPU, and flightdeck runs containers without one",
            "write \"optional\" if the work can run without a GPU",
        )),
        other => Err(cx.wrong_type(field, "true, false, \"optional\" or an object", other)),
    }
}

fn build_options(
    cx: &Cx<'_>,
    field: &str,
    value: &Value,
) -> Result<Option<&'static str>, DevcontainerError> {
    match value {
        Value::Null => Ok(None),
        Value::Array(items) if items.is_empty() => Ok(None),
        Value::Array(items) => {
            let shown: Vec<String> = items
                .iter()
                .map(|item| {
                    item.as_str()
                        .map_or_else(|| item.to_string(), str::to_string)
                })
                .collect();
            Err(cx.unsupported(
                field,
                &format!(
                    "docker build options (`{}`) are not passed on: flightdeck builds through the engine's API, cannot vet options such as `--network=host`, `--add-host` or `--secret`, and without them the image would not be the one described",
                    shown.join(" ")
                ),
                "do in the Dockerfile (or with `build.args`) what the options did, and remove `build.options`",
            ))
        }
        other => Err(cx.wrong_type(field, "an array of strings", other)),
    }
}

/// The keys of `map` (at `prefix`) that flightdeck does not apply, by `table`; refuses those
/// the table says to.
fn classify_keys(
    cx: &Cx<'_>,
    prefix: &str,
    map: &Map<String, Value>,
    table: &[(&str, Treatment)],
) -> Result<Vec<IgnoredKey>, DevcontainerError> {
    let mut ignored = Vec::new();
    for (key, value) in map {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let Some((_, treatment)) = table.iter().find(|(known, _)| known == key) else {
            let mut why =
                "not a devcontainer.json key flightdeck knows, so it has no effect".to_string();
            let nearest = table
                .iter()
                .filter_map(|(known, _)| Some((misspelling_distance(key, known)?, known)))
                .min_by_key(|(distance, _)| *distance);
            if let Some((_, known)) = nearest {
                why.push_str(&format!(" (did you mean `{known}`?)"));
            }
            ignored.push(IgnoredKey { key: path, why });
            continue;
        };
        let why = match treatment {
            Treatment::Read | Treatment::Metadata => None,
            Treatment::Ignored(why) => (!asks_nothing(value)).then_some(*why),
            Treatment::Nested(inner) => {
                match value {
                    Value::Null => {}
                    Value::Object(nested) => {
                        ignored.extend(classify_keys(cx, &path, nested, inner)?)
                    }
                    other => return Err(cx.wrong_type(&path, "an object", other)),
                }
                None
            }
            Treatment::ByValue(decide) => decide(cx, &path, value)?,
        };
        if let Some(why) = why {
            ignored.push(IgnoredKey {
                key: path,
                why: why.to_string(),
            });
        }
    }
    Ok(ignored)
}

fn asks_nothing(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
        Value::Bool(_) | Value::Number(_) => false,
    }
}

/// How far `key` is from `known` (edits, case ignored) when it is likely a misspelling of it:
/// at most two edits, for keys of four characters or more.
fn misspelling_distance(key: &str, known: &str) -> Option<usize> {
    let a: Vec<char> = key.to_lowercase().chars().collect();
    let b: Vec<char> = known.to_lowercase().chars().collect();
    if a.len().abs_diff(b.len()) > 2 || a.len() < 4 {
        return None;
    }
    // Levenshtein distance, one row at a time.
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    Some(row[b.len()]).filter(|distance| *distance <= 2)
}

/// Resolves `${…}` the way the reference does: the text between `${` and the first `}` (on the
/// same line) is split at `:`; the first part names the variable, the rest are its arguments.
struct Vars<'a> {
    ctx: &'a Substitution<'a>,
    container_folder: String,
}

impl Vars<'_> {
    fn substitute_value(
        &self,
        value: Value,
        cx: &Cx<'_>,
        field: &str,
    ) -> Result<Value, DevcontainerError> {
        Ok(match value {
            Value::String(s) => Value::String(self.substitute(&s, cx, field)?),
            Value::Array(items) => Value::Array(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| self.substitute_value(item, cx, &format!("{field}[{i}]")))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => {
                let mut out = Map::new();
                for (key, item) in map {
                    let item = self.substitute_value(item, cx, &format!("{field}.{key}"))?;
                    out.insert(key, item);
                }
                Value::Object(out)
            }
            other => other,
        })
    }

    fn substitute(
        &self,
        text: &str,
        cx: &Cx<'_>,
        field: &str,
    ) -> Result<String, DevcontainerError> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            let after = &rest[start + 2..];
            // JavaScript's `.` stops at line terminators, so a `}` on a later line ends nothing.
            let end = after
                .char_indices()
                .take_while(|(_, c)| !matches!(c, '\n' | '\r' | '\u{2028}' | '\u{2029}'))
                .find(|(_, c)| *c == '}')
                .map(|(i, _)| i);
            let Some(end) = end else {
                out.push_str(&rest[..start + 1]);
                rest = &rest[start + 1..];
                continue;
            };
            out.push_str(&rest[..start]);
            let whole = &rest[start..start + 2 + end + 1];
            out.push_str(&self.resolve(&after[..end], whole, cx, field)?);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn resolve(
        &self,
        inner: &str,
        whole: &str,
        cx: &Cx<'_>,
        field: &str,
    ) -> Result<String, DevcontainerError> {
        let mut parts = inner.split(':');
        let name = parts.next().unwrap_or_default();
        let args: Vec<&str> = parts.collect();
        let local = self.ctx.local_workspace_folder.to_string_lossy();
        Ok(match name {
            "localEnv" | "env" => {
                let Some(var) = args.first() else {
                    return Err(cx.invalid(
                        field,
                        format!("`{whole}` names no environment variable"),
                        format!("write `${{{name}:VARIABLE}}` or `${{{name}:VARIABLE:default}}`"),
                    ));
                };
                // Like the reference, the default is the text up to the next `:` only.
                match (self.ctx.env)(var) {
                    Some(value) => value,
                    None => args.get(1).copied().unwrap_or_default().to_string(),
                }
            }
            "localWorkspaceFolder" => local.into_owned(),
            "localWorkspaceFolderBasename" => posix_basename(&local).to_string(),
            "containerWorkspaceFolder" => self.container_folder.clone(),
            "containerWorkspaceFolderBasename" => {
                posix_basename(&self.container_folder).to_string()
            }
            "devcontainerId" => match self.ctx.devcontainer_id {
                Some(id) => id.to_string(),
                None => whole.to_string(),
            },
            // `${containerEnv:…}` and unknown names are the container side's (or nobody's).
            _ => whole.to_string(),
        })
    }
}

/// Directories of a container's system that the worktree must not be mounted over: the root,
/// the kernel's file systems, and where programs, libraries and configuration live.
const SYSTEM_DIRECTORIES: &[&str] = &[
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/usr/bin",
    "/usr/lib",
    "/usr/lib32",
    "/usr/lib64",
    "/usr/libexec",
    "/usr/local",
    "/usr/local/bin",
    "/usr/local/lib",
    "/usr/sbin",
    "/usr/share",
    "/var",
    "/var/lib",
    "/var/run",
];

/// Directories whose whole subtree belongs to the kernel.
const KERNEL_TREES: &[&str] = &["/proc", "/sys", "/dev"];

/// What makes `folder` (an absolute container path) a system directory, said for a person,
/// or `None`. Judged on the path as the container resolves it: `.`, `..`, repeated and
/// trailing slashes folded (`/workspaces/../proc/` is `/proc`).
fn system_directory_under(folder: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in folder.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    let normal = format!("/{}", parts.join("/"));
    if normal == "/" {
        return Some("the container's root directory".to_string());
    }
    if SYSTEM_DIRECTORIES.contains(&normal.as_str()) {
        return Some(format!("the system directory {normal}"));
    }
    KERNEL_TREES
        .iter()
        .find(|tree| normal.starts_with(&format!("{tree}/")))
        .map(|tree| format!("inside {tree}, which the kernel provides"))
}

fn read_config(
    cx: &Cx<'_>,
    config: &Map<String, Value>,
    ctx: &Substitution<'_>,
    default_folder: String,
) -> Result<DevContainer, DevcontainerError> {
    let root = ctx.local_workspace_folder;
    let workspace_folder = match config.get("workspaceFolder") {
        None | Some(Value::Null) => default_folder.clone(),
        Some(Value::String(s)) if s.starts_with('/') => s.clone(),
        Some(Value::String(s)) => {
            return Err(cx.invalid(
                "workspaceFolder",
                format!("`{s}` is not an absolute path in the container"),
                "write an absolute path, e.g. \"/workspaces/${localWorkspaceFolderBasename}\"",
            ))
        }
        Some(other) => return Err(cx.wrong_type("workspaceFolder", "a string", other)),
    };
    if let Some(system) = system_directory_under(&workspace_folder) {
        return Err(cx.invalid(
            "workspaceFolder",
            format!(
                "`{workspace_folder}` is {system}: the worktree mounted there would hide what the container needs to run"
            ),
            "use a folder of its own, e.g. \"/workspaces/${localWorkspaceFolderBasename}\"",
        ));
    }
    let workspace_mount = match config.get("workspaceMount") {
        None => Some(Mount::Bind {
            source: root.to_path_buf(),
            target: default_folder,
            readonly: false,
        }),
        Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => {
            let mount = parse_mount_string(s).map_err(|e| {
                cx.invalid(
                    "workspaceMount",
                    format!("`{s}`: {e}"),
                    "write `type=bind,source=${localWorkspaceFolder},target=/workspaces/…`",
                )
            })?;
            Some(confine_mount(cx, "workspaceMount", s, mount, root)?)
        }
        Some(other) => return Err(cx.wrong_type("workspaceMount", "a string", other)),
    };
    let mounts = match config.get("mounts") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| read_mount(cx, &format!("mounts[{i}]"), item, root))
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(cx.wrong_type("mounts", "an array", other)),
    };
    let run_args = match config.get("runArgs") {
        None | Some(Value::Null) => RunArgs::default(),
        Some(Value::Array(items)) => {
            let raw = items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(cx.wrong_type(&format!("runArgs[{i}]"), "a string", other)),
                })
                .collect::<Result<Vec<_>, _>>()?;
            read_run_args(cx, raw)?
        }
        Some(other) => return Err(cx.wrong_type("runArgs", "an array of strings", other)),
    };
    let lifecycle = |key: &str| read_lifecycle(cx, key, config.get(key));
    let compose = read_compose(cx, config, root)?;
    // Keys that one kind of configuration reads and the other has no use for.
    let mut ignored = Vec::new();
    let unused = |key: &str| config.get(key).is_some_and(|value| !asks_nothing(value));
    let (source, workspace_mount, run_args) = match compose {
        Some(compose) => {
            for key in [
                "image",
                "build",
                "dockerFile",
                "context",
                "workspaceMount",
                "runArgs",
            ] {
                if unused(key) {
                    ignored.push(IgnoredKey {
                        key: key.into(),
                        why: "a Compose configuration's container is the compose file's `service`: its image, mounts and run options come from there (flightdeck mounts the worktree at `workspaceFolder` itself)".into(),
                    });
                }
            }
            (ImageSource::Compose(compose), None, RunArgs::default())
        }
        None => {
            for key in ["service", "runServices"] {
                if unused(key) {
                    ignored.push(IgnoredKey {
                        key: key.into(),
                        why:
                            "only meaningful with `dockerComposeFile`, which this file does not use"
                                .into(),
                    });
                }
            }
            (read_source(cx, config, root)?, workspace_mount, run_args)
        }
    };
    if run_args.platform.is_some() {
        ignored.push(IgnoredKey {
            key: "runArgs --platform".into(),
            why: "the image is used as the engine has it: a platform chooses what to pull, and flightdeck never pulls".into(),
        });
    }
    let features = match config.get("features") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(features)) => {
            for (id, options) in features {
                if !matches!(
                    options,
                    Value::Object(_) | Value::String(_) | Value::Bool(_)
                ) {
                    return Err(cx.wrong_type(
                        &format!("features.{id}"),
                        "an object of options, a version string or true",
                        options,
                    ));
                }
            }
            features.clone()
        }
        Some(other) => return Err(cx.wrong_type("features", "an object", other)),
    };
    let override_feature_install_order =
        string_list(cx, config, "overrideFeatureInstallOrder")?.unwrap_or_default();
    if features.is_empty() && !override_feature_install_order.is_empty() {
        ignored.push(IgnoredKey {
            key: "overrideFeatureInstallOrder".into(),
            why: "there are no features to order".into(),
        });
    }
    Ok(DevContainer {
        config_file: cx.file.to_path_buf(),
        name: opt_string(cx, config, "name")?,
        source,
        container_env: string_map(cx, config, "containerEnv")?,
        remote_env: match config.get("remoteEnv") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(Value::Object(map)) => map
                .iter()
                .map(|(key, value)| match value {
                    Value::String(s) => Ok((key.clone(), Some(s.clone()))),
                    Value::Null => Ok((key.clone(), None)),
                    other => {
                        Err(cx.wrong_type(&format!("remoteEnv.{key}"), "a string or null", other))
                    }
                })
                .collect::<Result<_, _>>()?,
            Some(other) => return Err(cx.wrong_type("remoteEnv", "an object", other)),
        },
        container_user: opt_string(cx, config, "containerUser")?,
        remote_user: opt_string(cx, config, "remoteUser")?,
        workspace_folder,
        workspace_mount,
        mounts,
        run_args,
        initialize_command: lifecycle("initializeCommand")?,
        on_create_command: lifecycle("onCreateCommand")?,
        update_content_command: lifecycle("updateContentCommand")?,
        post_create_command: lifecycle("postCreateCommand")?,
        post_start_command: lifecycle("postStartCommand")?,
        post_attach_command: lifecycle("postAttachCommand")?,
        override_command: opt_bool(cx, config, "overrideCommand")?,
        shutdown_action: match opt_string(cx, config, "shutdownAction")?.as_deref() {
            None => None,
            Some("none") => Some(ShutdownAction::None),
            Some("stopContainer") => Some(ShutdownAction::StopContainer),
            Some("stopCompose") => Some(ShutdownAction::StopCompose),
            Some(other) => {
                return Err(cx.invalid(
                    "shutdownAction",
                    format!("unknown action `{other}`"),
                    "write \"none\" or \"stopContainer\"",
                ))
            }
        },
        forward_ports: read_forward_ports(cx, config.get("forwardPorts"))?,
        init: opt_bool(cx, config, "init")?.unwrap_or(false),
        features,
        override_feature_install_order,
        // Handed back to `parse`, which puts the key table's findings first.
        ignored,
    })
}

/// An array of strings, or `None` when absent or null.
fn string_list(
    cx: &Cx<'_>,
    config: &Map<String, Value>,
    key: &str,
) -> Result<Option<Vec<String>>, DevcontainerError> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(s.clone()),
                other => Err(cx.wrong_type(&format!("{key}[{i}]"), "a string", other)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(cx.wrong_type(key, "an array of strings", other)),
    }
}

/// `dockerComposeFile` (a path or an array of paths, relative to the file's folder),
/// `service` and `runServices`; `None` without `dockerComposeFile`.
fn read_compose(
    cx: &Cx<'_>,
    config: &Map<String, Value>,
    root: &Path,
) -> Result<Option<Compose>, DevcontainerError> {
    let files = match config.get("dockerComposeFile") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(file)) => vec![file.clone()],
        Some(Value::Array(_)) => string_list(cx, config, "dockerComposeFile")?.unwrap_or_default(),
        Some(other) => {
            return Err(cx.wrong_type("dockerComposeFile", "a path or an array of paths", other))
        }
    };
    if files.is_empty() || files.iter().any(String::is_empty) {
        return Err(cx.invalid(
            "dockerComposeFile",
            "names no compose file",
            "write \"dockerComposeFile\": \"docker-compose.yml\" (relative to this file's folder)",
        ));
    }
    let folder = cx.file.parent().unwrap_or(Path::new("/"));
    let mut paths = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let path = normalize(&folder.join(file));
        if !path.starts_with(root) {
            return Err(cx.refused(
                format!("dockerComposeFile[{i}]"),
                format!(
                    "{} is outside the repository: a workspace is defined by the repository alone",
                    path.display()
                ),
                "keep the compose files inside the repository",
            ));
        }
        paths.push(path);
    }
    let service = match config.get("service") {
        Some(Value::String(service)) if !service.is_empty() => service.clone(),
        None | Some(Value::Null) | Some(Value::String(_)) => {
            return Err(cx.invalid(
                "service",
                "a Compose configuration must name the service the commands run in",
                "add \"service\": \"<the compose service of the workspace>\"",
            ))
        }
        Some(other) => return Err(cx.wrong_type("service", "a string", other)),
    };
    if !matches!(config.get("workspaceFolder"), Some(Value::String(s)) if !s.is_empty()) {
        return Err(cx.invalid(
            "workspaceFolder",
            "a Compose configuration must say where the repository is in the service's container",
            "add \"workspaceFolder\": \"/workspaces/${localWorkspaceFolderBasename}\"",
        ));
    }
    Ok(Some(Compose {
        files: paths,
        service,
        run_services: string_list(cx, config, "runServices")?,
    }))
}

fn read_source(
    cx: &Cx<'_>,
    config: &Map<String, Value>,
    root: &Path,
) -> Result<ImageSource, DevcontainerError> {
    let build = match config.get("build") {
        None | Some(Value::Null) => None,
        Some(Value::Object(build)) => Some(build),
        Some(other) => return Err(cx.wrong_type("build", "an object", other)),
    };
    let field_of = |key: &str| build.and_then(|b| b.get(key)).filter(|v| !v.is_null());
    let as_string = |field: &str, value: Option<&Value>| match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(cx.wrong_type(field, "a string", other)),
    };
    // The legacy top-level `dockerFile` wins over `build.dockerfile` and brings its own
    // top-level `context`; `args` and `target` come from `build` either way (as the reference).
    let legacy = as_string("dockerFile", config.get("dockerFile"))?;
    let (dockerfile, dockerfile_field, context, context_field) = match legacy {
        Some(file) => (
            Some(file),
            "dockerFile",
            as_string("context", config.get("context"))?,
            "context",
        ),
        None => (
            as_string("build.dockerfile", field_of("dockerfile"))?,
            "build.dockerfile",
            as_string("build.context", field_of("context"))?,
            "build.context",
        ),
    };
    let Some(dockerfile) = dockerfile else {
        return match config.get("image") {
            Some(Value::String(image)) if !image.is_empty() => {
                Ok(ImageSource::Image(image.clone()))
            }
            Some(Value::String(_)) | None | Some(Value::Null) => Err(cx.invalid(
                "image",
                "the configuration names no image and no Dockerfile",
                "add \"image\": \"<image>\" or \"build\": { \"dockerfile\": \"Dockerfile\" }",
            )),
            Some(other) => Err(cx.wrong_type("image", "a string", other)),
        };
    };
    let folder = cx.file.parent().unwrap_or(Path::new("/"));
    let dockerfile_path = normalize(&folder.join(&dockerfile));
    let context_path = match &context {
        Some(context) => normalize(&folder.join(context)),
        None => dockerfile_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| folder.to_path_buf()),
    };
    for (field, path) in [
        (dockerfile_field, &dockerfile_path),
        (context_field, &context_path),
    ] {
        if !path.starts_with(root) {
            return Err(cx.refused(
                field,
                format!(
                    "{} is outside the repository: building from it would copy host files into the image",
                    path.display()
                ),
                "keep the Dockerfile and the build context inside the repository",
            ));
        }
    }
    let args = match field_of("args") {
        None => BTreeMap::new(),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(key, value)| match value {
                Value::String(s) => Ok((key.clone(), s.clone())),
                other => Err(cx.wrong_type(&format!("build.args.{key}"), "a string", other)),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(cx.wrong_type("build.args", "an object", other)),
    };
    Ok(ImageSource::Build(Build {
        dockerfile: dockerfile_path,
        context: context_path,
        args,
        target: as_string("build.target", field_of("target"))?,
    }))
}

fn read_mount(
    cx: &Cx<'_>,
    field: &str,
    value: &Value,
    root: &Path,
) -> Result<Mount, DevcontainerError> {
    let (shown, mount) = match value {
        Value::String(s) => {
            let mount = parse_mount_string(s).map_err(|e| {
                cx.invalid(
                    field,
                    format!("`{s}`: {e}"),
                    "write `type=bind|volume|tmpfs,source=…,target=…[,readonly]`",
                )
            })?;
            (s.clone(), mount)
        }
        Value::Object(map) => {
            let shown = value.to_string();
            // The object form has only these keys in the spec; the reference drops any other
            // (a `readonly` here would silently give a writable mount), so they are errors.
            if let Some(key) = map
                .keys()
                .find(|k| !matches!(k.as_str(), "type" | "source" | "target"))
            {
                return Err(cx.invalid(
                    format!("{field}.{key}"),
                    format!("the object form of a mount has no `{key}`"),
                    "use `type`, `source` and `target`, or the string form for options such as `readonly`",
                ));
            }
            let text = |key: &str| match map.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(cx.wrong_type(&format!("{field}.{key}"), "a string", other)),
            };
            let kind = text("type")?.ok_or_else(|| {
                cx.invalid(
                    field,
                    "the mount has no `type`",
                    "add \"type\": \"bind\", \"volume\" or \"tmpfs\"",
                )
            })?;
            let mount = build_mount(&kind, text("source")?, text("target")?, false, None, None)
                .map_err(|e| {
                    cx.invalid(
                        field,
                        format!("{shown}: {e}"),
                        "write { \"type\": \"bind|volume|tmpfs\", \"source\": \"…\", \"target\": \"…\" }",
                    )
                })?;
            (shown, mount)
        }
        other => return Err(cx.wrong_type(field, "a mount string or object", other)),
    };
    confine_mount(cx, field, &shown, mount, root)
}

/// Bind sources must be absolute and inside the repository; they come out normalized, so
/// that a `..` the kernel would resolve through a symlink never reaches docker.
fn confine_mount(
    cx: &Cx<'_>,
    field: &str,
    shown: &str,
    mount: Mount,
    root: &Path,
) -> Result<Mount, DevcontainerError> {
    let Mount::Bind {
        source,
        target,
        readonly,
    } = mount
    else {
        return Ok(mount);
    };
    if !source.is_absolute() {
        return Err(cx.invalid(
            field,
            format!(
                "`{shown}`: bind source `{}` is not an absolute path",
                source.display()
            ),
            "start it with ${localWorkspaceFolder}/",
        ));
    }
    let source = normalize(&source);
    if !source.starts_with(root) {
        return Err(cx.refused(
            field,
            format!(
                "`{shown}` binds {} from the host, outside the repository: a workspace must not see the host",
                source.display()
            ),
            "use a volume (type=volume) or tmpfs, or a path under ${localWorkspaceFolder}",
        ));
    }
    Ok(Mount::Bind {
        source,
        target,
        readonly,
    })
}

fn read_run_args(cx: &Cx<'_>, raw: Vec<String>) -> Result<RunArgs, DevcontainerError> {
    let mut run = RunArgs::default();
    let mut i = 0;
    while i < raw.len() {
        let arg = raw[i].as_str();
        let field = format!("runArgs[{i}]");
        let Some((flag, inline)) = split_flag(arg) else {
            return Err(cx.refused(
                field,
                format!("`{arg}` is not supported: flightdeck must not drop or pass on run arguments it does not know, as they may weaken the container's isolation"),
                format!("flightdeck reads {ACCEPTED_RUN_ARGS} from runArgs; remove `{arg}`"),
            ));
        };
        let value = match inline {
            Some(value) => value.to_string(),
            None => {
                i += 1;
                match raw.get(i) {
                    Some(value) => value.clone(),
                    None => {
                        return Err(cx.invalid(
                            field,
                            format!("`{arg}` needs a value"),
                            format!("write `{arg}` and its value as two entries, or `{arg}=…`"),
                        ))
                    }
                }
            }
        };
        match flag {
            Flag::Network => {
                // Several networks would connect the container to all of them.
                if run.network.is_some() {
                    return Err(cx.invalid(field, "a second `--network`", "name one network"));
                }
                run.network = Some(value);
            }
            Flag::Env => {
                let Some((name, val)) = value.split_once('=') else {
                    return Err(cx.refused(
                        field,
                        format!(
                            "`{value}` would copy the host's variable `{value}` into the container"
                        ),
                        format!("set it in containerEnv: \"{value}\": \"${{localEnv:{value}}}\""),
                    ));
                };
                run.env.insert(name.to_string(), val.to_string());
            }
            Flag::User => run.user = Some(value),
            Flag::Platform => run.platform = Some(value),
            Flag::Label => {
                let (key, val) = value.split_once('=').unwrap_or((value.as_str(), ""));
                run.labels.insert(key.to_string(), val.to_string());
            }
        }
        i += 1;
    }
    run.raw = raw;
    Ok(run)
}

#[derive(Clone, Copy)]
enum Flag {
    Network,
    Env,
    User,
    Label,
    Platform,
}

/// Recognizes the accepted flags in docker's spellings: `--flag value`, `--flag=value`,
/// `-f value`, `-f=value`, `-fvalue`. Returns the flag and its value when inline.
fn split_flag(arg: &str) -> Option<(Flag, Option<&str>)> {
    if let Some(long) = arg.strip_prefix("--") {
        let (name, value) = match long.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (long, None),
        };
        let flag = match name {
            "network" | "net" => Flag::Network,
            "env" => Flag::Env,
            "user" => Flag::User,
            "label" => Flag::Label,
            "platform" => Flag::Platform,
            _ => return None,
        };
        return Some((flag, value));
    }
    let short = arg.strip_prefix('-')?;
    let mut chars = short.chars();
    let flag = match chars.next()? {
        'e' => Flag::Env,
        'u' => Flag::User,
        'l' => Flag::Label,
        _ => return None,
    };
    let rest = chars.as_str();
    Some(match rest {
        "" => (flag, None),
        _ => (flag, Some(rest.strip_prefix('=').unwrap_or(rest))),
    })
}

fn read_lifecycle(
    cx: &Cx<'_>,
    field: &str,
    value: Option<&Value>,
) -> Result<Option<LifecycleCommand>, DevcontainerError> {
    let exec = |field: &str, items: &[Value]| {
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(s.clone()),
                other => Err(cx.wrong_type(&format!("{field}[{i}]"), "a string", other)),
            })
            .collect::<Result<Vec<_>, _>>()
    };
    // Empty commands are nothing to run, as the reference skips them.
    Ok(match value {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(LifecycleCommand::Shell(s.clone())),
        Some(Value::Array(items)) if items.is_empty() => None,
        Some(Value::Array(items)) => Some(LifecycleCommand::Exec(exec(field, items)?)),
        Some(Value::Object(map)) if map.is_empty() => None,
        Some(Value::Object(map)) => {
            let mut named = BTreeMap::new();
            for (name, command) in map {
                let entry = format!("{field}.{name}");
                let form = match command {
                    Value::String(s) => CommandForm::Shell(s.clone()),
                    Value::Array(items) => CommandForm::Exec(exec(&entry, items)?),
                    other => return Err(cx.wrong_type(&entry, "a string or an array", other)),
                };
                named.insert(name.clone(), form);
            }
            Some(LifecycleCommand::Parallel(named))
        }
        Some(other) => return Err(cx.wrong_type(field, "a string, an array or an object", other)),
    })
}

fn read_forward_ports(
    cx: &Cx<'_>,
    value: Option<&Value>,
) -> Result<Vec<ForwardPort>, DevcontainerError> {
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(cx.wrong_type("forwardPorts", "an array", other)),
    };
    let hint = "write a port number (3000) or \"host:port\"";
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let field = format!("forwardPorts[{i}]");
            match item {
                Value::Number(n) => n
                    .as_u64()
                    .and_then(|n| u16::try_from(n).ok())
                    .map(ForwardPort::Port)
                    .ok_or_else(|| cx.invalid(&field, format!("{n} is not a port"), hint)),
                Value::String(s) => s
                    .rsplit_once(':')
                    .and_then(|(host, port)| {
                        let port = port.parse::<u16>().ok()?;
                        (!host.is_empty()).then(|| ForwardPort::Host {
                            host: host.to_string(),
                            port,
                        })
                    })
                    .ok_or_else(|| cx.invalid(&field, format!("`{s}` is not host:port"), hint)),
                other => Err(cx.wrong_type(&field, "a number or a string", other)),
            }
        })
        .collect()
}

fn opt_string(
    cx: &Cx<'_>,
    config: &Map<String, Value>,
    key: &str,
) -> Result<Option<String>, DevcontainerError> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(cx.wrong_type(key, "a string", other)),
    }
}

fn opt_bool(
    cx: &Cx<'_>,
    config: &Map<String, Value>,
    key: &str,
) -> Result<Option<bool>, DevcontainerError> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(cx.wrong_type(key, "true or false", other)),
    }
}

fn string_map(
    cx: &Cx<'_>,
    config: &Map<String, Value>,
    key: &str,
) -> Result<BTreeMap<String, String>, DevcontainerError> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(name, value)| match value {
                Value::String(s) => Ok((name.clone(), s.clone())),
                other => Err(cx.wrong_type(&format!("{key}.{name}"), "a string", other)),
            })
            .collect(),
        Some(other) => Err(cx.wrong_type(key, "an object of strings", other)),
    }
}

/// [`parse`] compares paths lexically; here the host paths are resolved through symlinks
/// (a committed `link -> /etc` inside the repository would otherwise pass). A path that does
/// not exist yet is judged by its nearest existing ancestor.
fn check_resolved_paths(config: &DevContainer, root: &Path) -> Result<(), DevcontainerError> {
    let cx = Cx {
        file: &config.config_file,
    };
    let real_root = std::fs::canonicalize(root).map_err(|source| DevcontainerError::Read {
        file: root.to_path_buf(),
        source,
    })?;
    let mut paths: Vec<(String, &Path)> = Vec::new();
    if let ImageSource::Build(build) = &config.source {
        paths.push(("build.dockerfile".into(), build.dockerfile.as_path()));
        paths.push(("build.context".into(), build.context.as_path()));
    }
    if let ImageSource::Compose(compose) = &config.source {
        for (i, file) in compose.files.iter().enumerate() {
            paths.push((format!("dockerComposeFile[{i}]"), file.as_path()));
        }
    }
    if let Some(Mount::Bind { source, .. }) = &config.workspace_mount {
        paths.push(("workspaceMount".into(), source.as_path()));
    }
    for (i, mount) in config.mounts.iter().enumerate() {
        if let Mount::Bind { source, .. } = mount {
            paths.push((format!("mounts[{i}]"), source.as_path()));
        }
    }
    for (field, path) in paths {
        let Some(real) = path.ancestors().find_map(|p| std::fs::canonicalize(p).ok()) else {
            continue;
        };
        if !real.starts_with(&real_root) {
            return Err(cx.refused(
                field,
                format!(
                    "{} resolves through a symbolic link to {}, outside the repository: a workspace must not see the host",
                    path.display(),
                    real.display()
                ),
                "name a real directory inside the repository, or use a volume",
            ));
        }
    }
    Ok(())
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Node's `path.posix.basename`: the last segment, trailing slashes ignored.
fn posix_basename(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    trimmed.rsplit('/').next().unwrap_or(trimmed)
}

fn absolute(path: &Path) -> std::io::Result<PathBuf> {
    Ok(normalize(&std::path::absolute(path)?))
}

/// Resolves `.` and `..` lexically (`/..` stays `/`).
fn normalize(path: &Path) -> PathBuf {
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
