//! The container runtime: a mission's commands run in a container of the Docker Engine API
//! (dockerd, or Podman's compatible socket), with the worktree bind-mounted at the workspace
//! folder.
//!
//! - Connecting: `DOCKER_HOST` (`unix://` only), else `/var/run/docker.sock`, then Podman's
//!   rootful and rootless sockets. The API version is negotiated down from `/_ping`'s
//!   `Api-Version` header (bollard's own negotiation asks `/v1.5x/version` first, which
//!   dockerd 20.10 refuses as too new).
//! - Images are never pulled: an existing image must be present locally, and so must the
//!   base images a Dockerfile's `FROM` lines name (checked before building, since the
//!   classic builder would pull them). A build sends the context (a tar made here,
//!   `.dockerignore` applied with gitignore-style matching anchored at the context root) to
//!   the classic builder. [`ImageInfo`] records the image id (`sha256:…`, the digest of the
//!   image config) as `digest`, and the first RepoDigest (`name@sha256:…` of the registry
//!   manifest; dockerd has none for a local build or import, Podman makes a `localhost/`
//!   one) as `repo_digest`.
//! - The container runs `sh -c` with a sleep loop as its init (busybox has `sleep`, not
//!   `sleep infinity` everywhere), `no-new-privileges`, a few capabilities dropped, network
//!   `none` unless asked for; [`DockerWorkspace::set_network`] swaps `none` for the
//!   `flightdeck` bridge network and back.
//! - A command runs through the exec API as `sh -c`, stderr joined to stdout inside the
//!   container (one pipe, so the order is the order of writing). When it exits, a wrapper
//!   kills what it left in its process group (background jobs); a service that started its
//!   own session (`setsid`, any daemon) keeps running. Every process it starts inherits a
//!   `FLIGHTDECK_EXEC=<token>` variable; at the timeout a second exec, as the same user,
//!   kills every process whose environment carries the token (new sessions included), using
//!   only `sh`, `cat` and the `kill` builtin. No `timeout` binary is needed.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bollard::container::LogOutput;
use bollard::errors::Error as ApiError;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum,
    ContainerSummaryStateEnum, HostConfig, ImageInspect, Mount as ApiMount, MountType,
    NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest,
};
use bollard::query_parameters::{
    BuildImageOptions, CreateContainerOptions, ListContainersOptions, ListNetworksOptions,
    RemoveContainerOptions, RemoveImageOptions, StartContainerOptions, StopContainerOptions,
};
use bollard::{ClientVersion, Docker, API_DEFAULT_VERSION};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::exec::{CommandOutcome, MAX_CAPTURED_OUTPUT};
use crate::{CommandSpec, Workspace, WorkspaceError};

/// Sockets tried, in order, when `DOCKER_HOST` is not set.
const DEFAULT_SOCKETS: &[&str] = &["/var/run/docker.sock", "/run/podman/podman.sock"];

/// The bridge network containers join while they may use the network.
pub const NETWORK_NAME: &str = "flightdeck";

/// Labels flightdeck adds to its containers, so [`DockerWorkspace::attach`] can rebuild the
/// exec settings of a resumed mission.
pub const REMOTE_USER_LABEL: &str = "flightdeck.remote-user";
pub const REMOTE_ENV_LABEL: &str = "flightdeck.remote-env";
/// The label Docker Compose puts on a project's containers, networks and volumes.
pub const COMPOSE_PROJECT_LABEL: &str = "com.docker.compose.project";
/// Marks the network flightdeck created.
const MANAGED_LABEL: &str = "flightdeck.managed";

/// The variable that marks every process of one command.
const EXEC_MARKER: &str = "FLIGHTDECK_EXEC";

/// Oldest Engine API with everything used here (`WorkingDir` on exec arrived in 1.35).
const MIN_API: (usize, usize) = (1, 35);

/// Per-request limit until response headers arrive (streams are not cut by it).
const REQUEST_TIMEOUT_SECS: u64 = 300;

/// How long the output may keep flowing after the command's processes were killed.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// Every capability is dropped, then the few builds need given back: package managers chown
/// and change users (apt's `_apt` sandbox), root reads and writes files of other users, and
/// the clean-up after each command kills what any user left. Not FSETID and SETFCAP (no
/// setuid-group or file-capability binaries in the bind-mounted worktree; setuid bits a
/// command sets anyway are cleared after it, see `exec`), raw sockets, device nodes.
const CAP_ADD: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "SETUID",
    "SETGID",
    "KILL",
];

/// The container's main process: sleeps forever with any `sh` and `sleep`, and stops at once
/// on SIGTERM (a shell as PID 1 otherwise ignores it and `docker stop` waits 10 s).
const INIT_SCRIPT: &str = "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done";

/// The container's first process: features' entrypoints (each a command line, as the
/// reference writes them into its start script), then the wait.
pub(crate) fn init_script(entrypoints: &[String]) -> String {
    let mut script = String::new();
    for entrypoint in entrypoints {
        script.push_str(entrypoint);
        script.push('\n');
    }
    script.push_str(INIT_SCRIPT);
    script
}

/// Runs the command (`$1`) as `sh -c COMMAND` with stderr joined to stdout, then kills what
/// it left in its process group (background jobs), as the local runtime does: the engine
/// makes an exec's process a session and group leader, so the group is the command's. A
/// service that started its own session survives. Only shell builtins, so any image with a
/// `sh` works; when the wrapper is not a group leader (some other runtime), nothing is
/// killed rather than the wrong group.
const EXEC_WRAPPER: &str = r#"exec 2>&1
sh -c "$1"
rc=$?
{ read -r me < /proc/$$/stat; } 2>/dev/null
set -- ${me##*")"}
if [ "$3" = "$$" ]; then
  for pass in 1 2; do
    for d in /proc/[0-9]*; do
      p=${d#/proc/}
      [ "$p" = "$$" ] && continue
      { read -r s < "$d/stat"; } 2>/dev/null || continue
      set -- ${s##*")"}
      [ "$3" = "$$" ] && kill -KILL "$p" 2>/dev/null
    done
  done
fi
exit $rc"#;

/// Kills every process whose environment carries `FLIGHTDECK_EXEC=$1`. `$(cat …)` drops the
/// NUL separators, which is fine for a substring test; three passes catch processes forked
/// while the first ran.
const KILL_SCRIPT: &str = "m=\"FLIGHTDECK_EXEC=$1\"; for pass in 1 2 3; do \
for d in /proc/[0-9]*; do case \"$(cat \"$d/environ\" 2>/dev/null)\" in *\"$m\"*) \
kill -KILL \"${d#/proc/}\" 2>/dev/null;; esac; done; done; exit 0";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DockerError {
    #[error(
        "no container engine answers at {socket}: {reason}; start dockerd (or `podman system \
         service`) or set DOCKER_HOST=unix:///path/to/docker.sock"
    )]
    Unreachable { socket: String, reason: String },
    #[error("DOCKER_HOST={0} is not supported: only unix:// sockets are")]
    UnsupportedHost(String),
    #[error(
        "the container engine at {socket} speaks Engine API {version}; at least {}.{} is needed",
        MIN_API.0,
        MIN_API.1
    )]
    TooOld { socket: String, version: String },
    #[error("image {0} is not present locally; build or load it (flightdeck never pulls images)")]
    ImageMissing(String),
    #[error("cannot read the build context at {path}: {source}")]
    Context {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("building image {tag} failed: {message}{log}")]
    Build {
        tag: String,
        message: String,
        /// The last lines the build printed, with a leading newline (empty when none).
        log: String,
    },
    #[error("a container named {0} already exists; attach to it or remove it")]
    NameInUse(String),
    #[error("no container named {0}")]
    ContainerMissing(String),
    #[error("container {name} cannot run: it is {state}")]
    NotRunnable { name: String, state: String },
    #[error("cannot {action}: {message}")]
    Network { action: String, message: String },
    #[error("{action}: {source}")]
    Api {
        action: String,
        #[source]
        source: ApiError,
    },
}

fn api(action: impl Into<String>) -> impl FnOnce(ApiError) -> DockerError {
    let action = action.into();
    move |source| DockerError::Api { action, source }
}

fn is_status(error: &ApiError, code: u16) -> bool {
    matches!(error, ApiError::DockerResponseServerError { status_code, .. } if *status_code == code)
}

/// Where the image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// An image already present in the engine (name, name:tag or id).
    Existing(String),
    /// Built by the engine's classic builder and tagged `tag`.
    Build {
        context: PathBuf,
        /// Relative paths are relative to `context`; a Dockerfile outside the context is sent
        /// along with it.
        dockerfile: PathBuf,
        args: BTreeMap<String, String>,
        target: Option<String>,
        tag: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    Bind,
    /// A named volume (`source`), or an anonymous one (empty `source`), removed with the
    /// container.
    Volume,
    /// `source` is ignored.
    Tmpfs,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub kind: MountKind,
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

/// What to run a mission's container from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    pub image: ImageSource,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// devcontainer `containerEnv`: set on the container, seen by every process.
    pub env: Vec<(String, String)>,
    /// devcontainer `containerUser`; the image's user when `None`.
    pub user: Option<String>,
    /// devcontainer `remoteUser`: who commands run as; `user` when `None`.
    pub remote_user: Option<String>,
    /// devcontainer `remoteEnv`: set on every command.
    pub remote_env: Vec<(String, String)>,
    /// Where the worktree is mounted, and where commands start.
    pub workspace_folder: String,
    /// The worktree on the host, bind-mounted read-write at `workspace_folder`.
    pub worktree: PathBuf,
    pub mounts: Vec<Mount>,
    /// Start attached to the [`NETWORK_NAME`] network instead of `none`.
    pub network: bool,
    /// Memory and process limits of the whole container (cgroups, by the engine).
    pub limits: crate::Limits,
    /// Dev container features' `entrypoint`s: run in order by the container's first process,
    /// before it settles into its wait (as the reference runs them).
    pub entrypoints: Vec<String>,
}

/// The image a container was created from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// The reference asked for (the tag, for a build).
    pub image: String,
    /// The image id, `sha256:` and 64 hex digits.
    pub digest: String,
    /// The first RepoDigest (`name@sha256:…`), when the image came from a registry.
    pub repo_digest: Option<String>,
    /// The image's `USER` (empty: root).
    pub user: String,
}

/// A container found by [`DockerEngine::list_labelled`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledContainer {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub running: bool,
}

/// A connection to a container engine.
#[derive(Debug, Clone)]
pub struct DockerEngine {
    docker: Docker,
    socket: String,
    api_version: String,
    podman: bool,
}

impl DockerEngine {
    /// Connects to `DOCKER_HOST`, or the first default socket that exists.
    pub async fn connect() -> Result<DockerEngine, DockerError> {
        match std::env::var("DOCKER_HOST") {
            Ok(host) if !host.trim().is_empty() => DockerEngine::connect_to(host.trim()).await,
            _ => {
                let mut candidates: Vec<String> =
                    DEFAULT_SOCKETS.iter().map(|s| s.to_string()).collect();
                if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") {
                    candidates.push(
                        Path::new(&dir)
                            .join("podman/podman.sock")
                            .display()
                            .to_string(),
                    );
                }
                match candidates.iter().find(|s| Path::new(s).exists()) {
                    Some(socket) => DockerEngine::connect_to(&format!("unix://{socket}")).await,
                    None => Err(DockerError::Unreachable {
                        socket: candidates.join(", "),
                        reason: "no such socket".into(),
                    }),
                }
            }
        }
    }

    /// Connects to `host` (`unix:///path` or a bare path).
    pub async fn connect_to(host: &str) -> Result<DockerEngine, DockerError> {
        let socket = match host.strip_prefix("unix://") {
            Some(path) => path.to_string(),
            None if host.starts_with('/') => host.to_string(),
            None => return Err(DockerError::UnsupportedHost(host.to_string())),
        };
        let unreachable = |reason: String| DockerError::Unreachable {
            socket: socket.clone(),
            reason,
        };
        let ping = ping(&socket).await.map_err(unreachable)?;
        let version = match ping.api_version {
            Some((major, minor)) => {
                if (major, minor) < MIN_API {
                    return Err(DockerError::TooOld {
                        socket,
                        version: format!("{major}.{minor}"),
                    });
                }
                let default = (
                    API_DEFAULT_VERSION.major_version,
                    API_DEFAULT_VERSION.minor_version,
                );
                let (major_version, minor_version) = default.min((major, minor));
                ClientVersion {
                    major_version,
                    minor_version,
                }
            }
            // No version header: let bollard ask (it only ever lowers its own default).
            None => ClientVersion {
                major_version: API_DEFAULT_VERSION.major_version,
                minor_version: API_DEFAULT_VERSION.minor_version,
            },
        };
        let docker = Docker::connect_with_unix(&socket, REQUEST_TIMEOUT_SECS, &version)
            .map_err(|e| unreachable(e.to_string()))?;
        let docker = if ping.api_version.is_none() {
            docker
                .negotiate_version()
                .await
                .map_err(|e| unreachable(e.to_string()))?
        } else {
            docker
        };
        let api_version = docker.client_version().to_string();
        Ok(DockerEngine {
            docker,
            socket,
            api_version,
            podman: ping.podman,
        })
    }

    /// The socket connected to.
    pub fn socket(&self) -> &str {
        &self.socket
    }

    /// The Engine API version spoken, e.g. `1.41`.
    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    /// The Engine API client, for what this module does not wrap (compose projects'
    /// networks and volumes).
    pub fn api(&self) -> &Docker {
        &self.docker
    }

    /// Whether the engine is Podman's compatible service.
    pub fn is_podman(&self) -> bool {
        self.podman
    }

    /// The image `reference` as present locally, or [`DockerError::ImageMissing`].
    pub async fn local_image(&self, reference: &str) -> Result<ImageInfo, DockerError> {
        match self.docker.inspect_image(reference).await {
            Ok(inspect) => image_info(reference, inspect),
            Err(e) if is_status(&e, 404) => Err(DockerError::ImageMissing(reference.to_string())),
            Err(e) => Err(api(format!("inspect image {reference}"))(e)),
        }
    }

    /// Removes an image (forced: tags and stopped containers' references go too). An image
    /// already gone is not an error.
    pub async fn remove_image(&self, reference: &str) -> Result<(), DockerError> {
        let options = RemoveImageOptions {
            force: true,
            ..Default::default()
        };
        match self
            .docker
            .remove_image(reference, Some(options), None)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) => Err(api(format!("remove image {reference}"))(e)),
        }
    }

    /// Builds an image from a context directory, never pulling (a missing base image fails
    /// the build).
    pub async fn build_image(
        &self,
        context: &Path,
        dockerfile: &Path,
        args: &BTreeMap<String, String>,
        target: Option<&str>,
        tag: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<ImageInfo, DockerError> {
        self.build_image_on(context, dockerfile, args, target, tag, labels, false)
            .await
    }

    /// [`Self::build_image`], with `RUN` lines on the [`NETWORK_NAME`] bridge when `network`
    /// (dev container features' install scripts, under a template's `network = "setup"` or
    /// `"on"`).
    #[allow(clippy::too_many_arguments)]
    pub async fn build_image_on(
        &self,
        context: &Path,
        dockerfile: &Path,
        args: &BTreeMap<String, String>,
        target: Option<&str>,
        tag: &str,
        labels: &BTreeMap<String, String>,
        network: bool,
    ) -> Result<ImageInfo, DockerError> {
        let network_mode = if network {
            self.ensure_network().await?
        } else {
            "none".to_string()
        };
        let context_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DockerError::Context { path, source }
        };
        let context = std::path::absolute(context).map_err(context_error(context))?;
        if !context.is_dir() {
            return Err(DockerError::Context {
                path: context,
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
            });
        }
        let dockerfile_path = if dockerfile.is_absolute() {
            dockerfile.to_path_buf()
        } else {
            context.join(dockerfile)
        };
        let ignore = DockerIgnore::load(&context).map_err(context_error(&context))?;
        let (in_context, dockerfile_name) = match dockerfile_path.strip_prefix(&context) {
            Ok(rel) if !rel.as_os_str().is_empty() => (true, rel.to_path_buf()),
            _ => (false, PathBuf::from(OUTSIDE_DOCKERFILE)),
        };
        if !dockerfile_path.is_file() {
            return Err(DockerError::Context {
                path: dockerfile_path,
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such Dockerfile"),
            });
        }
        // The classic builder pulls a missing base image; flightdeck never pulls, so every
        // base image it can name must be here first.
        let text =
            std::fs::read_to_string(&dockerfile_path).map_err(context_error(&dockerfile_path))?;
        for image in base_images(&text, args) {
            self.local_image(&image).await?;
        }

        // The archive is written by a blocking thread into a bounded channel, so a large
        // context streams instead of sitting in memory.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
        let producer = {
            let context = context.clone();
            let dockerfile_path = dockerfile_path.clone();
            let dockerfile_name = dockerfile_name.clone();
            tokio::task::spawn_blocking(move || {
                let mut tar = TarWriter::new(ChannelWriter::new(tx));
                write_context(
                    &mut tar,
                    &context,
                    &ignore,
                    &dockerfile_path,
                    &dockerfile_name,
                    in_context,
                )?;
                tar.finish()
            })
        };
        let body = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)).map(Into::into);

        let options = BuildImageOptions {
            dockerfile: dockerfile_name.to_string_lossy().into_owned(),
            t: Some(tag.to_string()),
            rm: true,
            forcerm: true,
            buildargs: Some(args.clone().into_iter().collect()),
            labels: Some(labels.clone().into_iter().collect()),
            target: target.unwrap_or_default().to_string(),
            // RUN lines get no network unless asked: the image is built from what is local.
            networkmode: Some(network_mode),
            ..Default::default()
        };
        let mut log = LogTail::default();
        let mut failure: Option<String> = None;
        {
            let mut stream =
                self.docker
                    .build_image(options, None, Some(bollard::body_stream(body)));
            while let Some(item) = stream.next().await {
                match item {
                    Ok(info) => {
                        if let Some(text) = &info.stream {
                            log.push(text);
                        }
                        if let Some(message) = info.error_detail.and_then(|d| d.message) {
                            failure = Some(message);
                        }
                    }
                    Err(e) => {
                        failure = Some(match e {
                            ApiError::DockerStreamError { error } => error,
                            other => other.to_string(),
                        });
                        break;
                    }
                }
            }
        }
        let produced = match producer.await {
            Ok(result) => result,
            Err(join) => Err(std::io::Error::other(join.to_string())),
        };
        match (produced, failure) {
            (Ok(()), None) => {}
            // The engine stopped reading because the build failed: the build's error says why.
            (Err(e), Some(message)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                return Err(DockerError::Build {
                    tag: tag.to_string(),
                    message: message.trim().to_string(),
                    log: log.render(),
                })
            }
            // Otherwise a context that could not be read explains a failed build better
            // than the daemon's "unexpected EOF".
            (Err(source), _) => {
                return Err(DockerError::Context {
                    path: context,
                    source,
                })
            }
            (Ok(()), Some(message)) => {
                return Err(DockerError::Build {
                    tag: tag.to_string(),
                    message: message.trim().to_string(),
                    log: log.render(),
                })
            }
        }
        self.local_image(tag).await
    }

    /// Containers carrying the label `label_key` (any value), running or not.
    pub async fn list_labelled(
        &self,
        label_key: &str,
    ) -> Result<Vec<LabelledContainer>, DockerError> {
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![label_key.to_string()],
            )])),
            ..Default::default()
        };
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(api("list containers"))?;
        Ok(containers
            .into_iter()
            .map(|c| LabelledContainer {
                id: c.id.unwrap_or_default(),
                name: c
                    .names
                    .and_then(|names| names.into_iter().next())
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_default(),
                labels: c.labels.unwrap_or_default().into_iter().collect(),
                running: c.state == Some(ContainerSummaryStateEnum::RUNNING),
            })
            .collect())
    }

    /// Removes a container by id or name, with its anonymous volumes, running or not. A
    /// container already gone is not an error.
    pub async fn remove_container(&self, id_or_name: &str) -> Result<(), DockerError> {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        match self
            .docker
            .remove_container(id_or_name, Some(options))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) => Err(api(format!("remove container {id_or_name}"))(e)),
        }
    }

    /// Stops a container (SIGTERM, then SIGKILL after `grace`); [`DockerEngine::attach`]
    /// starts it again. A container already stopped is not an error.
    pub async fn stop_container(
        &self,
        id_or_name: &str,
        grace: Duration,
    ) -> Result<(), DockerError> {
        let options = StopContainerOptions {
            t: Some(i32::try_from(grace.as_secs()).unwrap_or(i32::MAX)),
            ..Default::default()
        };
        match self.docker.stop_container(id_or_name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_status(&e, 304) => Ok(()),
            Err(e) if is_status(&e, 404) => Err(DockerError::ContainerMissing(id_or_name.into())),
            Err(e) => Err(api(format!("stop container {id_or_name}"))(e)),
        }
    }

    /// Gives container `id` the name `name`.
    pub async fn rename_container(&self, id: &str, name: &str) -> Result<(), DockerError> {
        let options = bollard::query_parameters::RenameContainerOptions {
            name: name.to_string(),
        };
        self.docker
            .rename_container(id, options)
            .await
            .map_err(api(format!("rename container {id} to {name}")))
    }

    /// Container `id_or_name`'s labels and the id of its image.
    pub async fn container_labels_and_image(
        &self,
        id_or_name: &str,
    ) -> Result<(BTreeMap<String, String>, String), DockerError> {
        let inspect = self.inspect(id_or_name).await?;
        let labels = inspect
            .config
            .and_then(|c| c.labels)
            .unwrap_or_default()
            .into_iter()
            .collect();
        Ok((labels, inspect.image.unwrap_or_default()))
    }

    /// Builds or finds the image, creates the container and starts it.
    pub async fn provision(
        &self,
        spec: ContainerSpec,
    ) -> Result<(DockerWorkspace, ImageInfo), DockerError> {
        let image = match &spec.image {
            ImageSource::Existing(reference) => self.local_image(reference).await?,
            ImageSource::Build {
                context,
                dockerfile,
                args,
                target,
                tag,
            } => {
                self.build_image(
                    context,
                    dockerfile,
                    args,
                    target.as_deref(),
                    tag,
                    &spec.labels,
                )
                .await?
            }
        };
        let network_mode = if spec.network {
            self.ensure_network().await?
        } else {
            "none".to_string()
        };
        let worktree =
            std::path::absolute(&spec.worktree).map_err(|source| DockerError::Context {
                path: spec.worktree.clone(),
                source,
            })?;

        let mut labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
        if let Some(user) = &spec.remote_user {
            labels.insert(REMOTE_USER_LABEL.into(), user.clone());
        }
        if !spec.remote_env.is_empty() {
            let env: BTreeMap<&str, &str> = spec
                .remote_env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            labels.insert(
                REMOTE_ENV_LABEL.into(),
                serde_json::to_string(&env).unwrap_or_default(),
            );
        }
        let mut mounts = vec![ApiMount {
            target: Some(spec.workspace_folder.clone()),
            source: Some(worktree.display().to_string()),
            typ: Some(MountType::BIND),
            read_only: Some(false),
            ..Default::default()
        }];
        mounts.extend(spec.mounts.iter().map(|m| ApiMount {
            target: Some(m.target.clone()),
            source: match m.kind {
                MountKind::Tmpfs => None,
                MountKind::Volume if m.source.is_empty() => None,
                _ => Some(m.source.clone()),
            },
            typ: Some(match m.kind {
                MountKind::Bind => MountType::BIND,
                MountKind::Volume => MountType::VOLUME,
                MountKind::Tmpfs => MountType::TMPFS,
            }),
            read_only: Some(m.read_only),
            ..Default::default()
        }));
        let body = ContainerCreateBody {
            image: Some(image.digest.clone()),
            cmd: Some(vec![
                "sh".into(),
                "-c".into(),
                init_script(&spec.entrypoints),
            ]),
            entrypoint: Some(vec![]),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            user: spec.user.clone(),
            working_dir: Some(spec.workspace_folder.clone()),
            labels: Some(labels),
            attach_stdin: Some(false),
            attach_stdout: Some(false),
            attach_stderr: Some(false),
            tty: Some(false),
            open_stdin: Some(false),
            host_config: Some(HostConfig {
                mounts: Some(mounts),
                network_mode: Some(network_mode),
                security_opt: Some(vec!["no-new-privileges".into()]),
                cap_drop: Some(vec!["ALL".to_string()]),
                cap_add: Some(CAP_ADD.iter().map(|c| c.to_string()).collect()),
                memory: spec
                    .limits
                    .memory_mb
                    .and_then(|mb| i64::try_from(mb.saturating_mul(1024 * 1024)).ok()),
                // No swap beyond the memory limit, as in the local sandbox.
                memory_swap: spec
                    .limits
                    .memory_mb
                    .and_then(|mb| i64::try_from(mb.saturating_mul(1024 * 1024)).ok()),
                pids_limit: spec
                    .limits
                    .max_processes
                    .and_then(|n| i64::try_from(n).ok()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..Default::default()
        };
        let created = match self.docker.create_container(Some(options), body).await {
            Ok(created) => created,
            // Podman says so with a 500.
            Err(e) if is_status(&e, 409) || e.to_string().contains("already in use") => {
                return Err(DockerError::NameInUse(spec.name))
            }
            Err(e) => return Err(api(format!("create container {}", spec.name))(e)),
        };
        if let Err(e) = self
            .docker
            .start_container(&created.id, None::<StartContainerOptions>)
            .await
        {
            // A container that never ran is of no use to anyone; do not leave it behind.
            let _ = self.remove_container(&created.id).await;
            return Err(api(format!("start container {}", spec.name))(e));
        }
        let workspace = DockerWorkspace {
            engine: self.clone(),
            id: created.id,
            name: spec.name,
            root: worktree,
            workspace_folder: spec.workspace_folder,
            remote_user: spec.remote_user,
            remote_env: spec.remote_env,
        };
        Ok((workspace, image))
    }

    /// Reattaches to a mission's container: started if stopped, unpaused if paused.
    pub async fn attach(&self, name: &str) -> Result<DockerWorkspace, DockerError> {
        let inspect = self.inspect(name).await?;
        let state = inspect
            .state
            .as_ref()
            .and_then(|s| s.status)
            .unwrap_or(ContainerStateStatusEnum::EMPTY);
        match state {
            ContainerStateStatusEnum::RUNNING => {}
            ContainerStateStatusEnum::PAUSED => self
                .docker
                .unpause_container(name)
                .await
                .map_err(api(format!("unpause container {name}")))?,
            ContainerStateStatusEnum::CREATED | ContainerStateStatusEnum::EXITED => self
                .docker
                .start_container(name, None::<StartContainerOptions>)
                .await
                .map_err(api(format!("start container {name}")))?,
            other => {
                return Err(DockerError::NotRunnable {
                    name: name.to_string(),
                    state: other.to_string(),
                })
            }
        }
        let config = inspect.config.unwrap_or_default();
        let labels = config.labels.unwrap_or_default();
        let workspace_folder = config.working_dir.unwrap_or_default();
        let root = inspect
            .mounts
            .unwrap_or_default()
            .into_iter()
            .find(|m| m.destination.as_deref() == Some(workspace_folder.as_str()))
            .and_then(|m| m.source)
            .map(PathBuf::from)
            .unwrap_or_default();
        let remote_env = labels
            .get(REMOTE_ENV_LABEL)
            .and_then(|json| serde_json::from_str::<BTreeMap<String, String>>(json).ok())
            .map(|env| env.into_iter().collect())
            .unwrap_or_default();
        Ok(DockerWorkspace {
            engine: self.clone(),
            id: inspect.id.unwrap_or_else(|| name.to_string()),
            name: inspect
                .name
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_else(|| name.to_string()),
            root,
            workspace_folder,
            remote_user: labels.get(REMOTE_USER_LABEL).cloned(),
            remote_env,
        })
    }

    async fn inspect(&self, name: &str) -> Result<ContainerInspectResponse, DockerError> {
        match self.docker.inspect_container(name, None).await {
            Ok(inspect) => Ok(inspect),
            Err(e) if is_status(&e, 404) => Err(DockerError::ContainerMissing(name.to_string())),
            Err(e) => Err(api(format!("inspect container {name}"))(e)),
        }
    }

    /// The id of the [`NETWORK_NAME`] bridge network, created when missing.
    async fn ensure_network(&self) -> Result<String, DockerError> {
        // Engines before API 1.44 accept two networks of one name; one process creates it
        // at a time, and the oldest id wins if another process raced us.
        static CREATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _guard = CREATING.lock().await;
        if let Some(id) = self.find_network().await? {
            return Ok(id);
        }
        let request = NetworkCreateRequest {
            name: NETWORK_NAME.to_string(),
            driver: Some("bridge".to_string()),
            labels: Some(HashMap::from([(MANAGED_LABEL.into(), "true".into())])),
            ..Default::default()
        };
        if let Err(e) = self.docker.create_network(request).await {
            if !is_status(&e, 409) {
                return Err(DockerError::Network {
                    action: format!("create the bridge network `{NETWORK_NAME}`"),
                    message: format!(
                        "{e}; this engine cannot give containers a network (rootless, or a \
                         sandbox without bridges?), so templates need `network = \"none\"`"
                    ),
                });
            }
        }
        self.find_network()
            .await?
            .ok_or_else(|| DockerError::Network {
                action: format!("find the bridge network `{NETWORK_NAME}`"),
                message: "it vanished right after it was created".into(),
            })
    }

    async fn find_network(&self) -> Result<Option<String>, DockerError> {
        let options = ListNetworksOptions {
            filters: Some(HashMap::from([(
                "name".to_string(),
                vec![NETWORK_NAME.to_string()],
            )])),
        };
        let networks = self
            .docker
            .list_networks(Some(options))
            .await
            .map_err(api("list networks"))?;
        // The name filter matches substrings.
        Ok(networks
            .into_iter()
            .filter(|n| n.name.as_deref() == Some(NETWORK_NAME))
            .filter_map(|n| n.id)
            .min())
    }
}

/// `GET /_ping` over the socket, by hand: the `Api-Version` header says what the engine
/// speaks, before any versioned request can be refused.
/// What `/_ping` tells about an engine.
struct Ping {
    api_version: Option<(usize, usize)>,
    podman: bool,
}

async fn ping(socket: &str) -> Result<Ping, String> {
    let exchange = async {
        let mut stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|e| e.to_string())?;
        stream
            .write_all(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        stream
            .take(64 * 1024)
            .read_to_end(&mut response)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| "no answer to /_ping within 10 s".to_string())??;
    let text = String::from_utf8_lossy(&response);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("/_ping answered `{}`", status.trim()));
    }
    let headers: Vec<(&str, &str)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim(), value.trim()))
        .collect();
    let header = |wanted: &str| {
        headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
            .map(|(_, value)| *value)
    };
    Ok(Ping {
        api_version: header("api-version").and_then(|value| {
            let (major, minor) = value.split_once('.')?;
            Some((major.parse().ok()?, minor.parse().ok()?))
        }),
        podman: header("libpod-api-version").is_some(),
    })
}

fn image_info(reference: &str, inspect: ImageInspect) -> Result<ImageInfo, DockerError> {
    let digest = inspect
        .id
        .ok_or_else(|| DockerError::ImageMissing(reference.to_string()))?;
    Ok(ImageInfo {
        image: reference.to_string(),
        digest,
        repo_digest: inspect
            .repo_digests
            .and_then(|digests| digests.into_iter().next()),
        user: inspect
            .config
            .and_then(|config| config.user)
            .unwrap_or_default(),
    })
}

/// A mission's container.
#[derive(Debug, Clone)]
pub struct DockerWorkspace {
    engine: DockerEngine,
    id: String,
    name: String,
    root: PathBuf,
    workspace_folder: String,
    remote_user: Option<String>,
    remote_env: Vec<(String, String)>,
}

impl DockerWorkspace {
    /// [`DockerEngine::attach`] on a fresh connection.
    pub async fn attach(name: &str) -> Result<DockerWorkspace, DockerError> {
        DockerEngine::connect().await?.attach(name).await
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn workspace_folder(&self) -> &str {
        &self.workspace_folder
    }

    pub fn engine(&self) -> &DockerEngine {
        &self.engine
    }

    /// Removes the container (running or not) and its anonymous volumes.
    pub async fn remove(&self) -> Result<(), DockerError> {
        self.engine.remove_container(&self.id).await
    }

    /// Gives the container a network (the [`NETWORK_NAME`] bridge) or takes it away (back to
    /// `none`: only `lo`). For setup commands under `network = "setup"`; commands running
    /// at the time keep their sockets but lose the interface.
    pub async fn set_network(&self, on: bool) -> Result<(), DockerError> {
        let docker = &self.engine.docker;
        let inspect = self.engine.inspect(&self.id).await?;
        let created_without = inspect
            .host_config
            .as_ref()
            .and_then(|h| h.network_mode.as_deref())
            == Some("none");
        let attached: Vec<String> = inspect
            .network_settings
            .and_then(|s| s.networks)
            .map(|n| n.into_keys().collect())
            .unwrap_or_default();
        let network_error = |action: String| {
            move |e: ApiError| DockerError::Network {
                action,
                message: e.to_string(),
            }
        };
        if on {
            if attached.iter().any(|n| n == NETWORK_NAME) {
                return Ok(());
            }
            // Podman fixes a container's network mode at creation (and does not list
            // `none` among its networks).
            if self.engine.podman && created_without {
                return Err(DockerError::Network {
                    action: format!("give container {} a network", self.name),
                    message: "Podman cannot connect a container created without a network \
                              (`none`); with Podman use `network = \"on\"` or `\"none\"`, \
                              not `\"setup\"`"
                        .into(),
                });
            }
            let network = self.engine.ensure_network().await?;
            // Docker refuses a second network next to `none`, but lets it be swapped.
            if attached.iter().any(|n| n == "none") {
                docker
                    .disconnect_network("none", self.disconnect_request())
                    .await
                    .map_err(network_error(format!(
                        "take container {} off network `none`",
                        self.name
                    )))?;
            }
            docker
                .connect_network(
                    &network,
                    NetworkConnectRequest {
                        container: self.id.clone(),
                        endpoint_config: None,
                    },
                )
                .await
                .map_err(network_error(format!(
                    "connect container {} to network `{NETWORK_NAME}`",
                    self.name
                )))?;
        } else {
            // A compose service keeps its project's networks (closed to the outside when
            // the project was brought up without the network, see `compose.rs`): only the
            // bridge given here is taken away.
            let compose_project = inspect
                .config
                .as_ref()
                .and_then(|c| c.labels.as_ref())
                .is_some_and(|l| l.contains_key(COMPOSE_PROJECT_LABEL));
            if compose_project {
                if attached.iter().any(|n| n == NETWORK_NAME) {
                    docker
                        .disconnect_network(NETWORK_NAME, self.disconnect_request())
                        .await
                        .map_err(network_error(format!(
                            "disconnect container {} from network `{NETWORK_NAME}`",
                            self.name
                        )))?;
                }
                return Ok(());
            }
            for network in attached.iter().filter(|n| n.as_str() != "none") {
                docker
                    .disconnect_network(network, self.disconnect_request())
                    .await
                    .map_err(network_error(format!(
                        "disconnect container {} from network `{network}`",
                        self.name
                    )))?;
            }
            if !attached.iter().any(|n| n == "none") {
                // Only bookkeeping: with no network left the container has just `lo`
                // already, which is all `none` means; an engine that refuses this is fine.
                let _ = docker
                    .connect_network(
                        "none",
                        NetworkConnectRequest {
                            container: self.id.clone(),
                            endpoint_config: None,
                        },
                    )
                    .await;
            }
        }
        Ok(())
    }

    fn disconnect_request(&self) -> NetworkDisconnectRequest {
        NetworkDisconnectRequest {
            container: self.id.clone(),
            force: Some(true),
        }
    }

    async fn run(&self, spec: &CommandSpec) -> Result<CommandOutcome, DockerError> {
        let docker = &self.engine.docker;
        let token = exec_token(&self.id);
        // Later values win, as they would in a shell.
        let mut env: Vec<(String, String)> = Vec::new();
        for (key, value) in self.remote_env.iter().chain(spec.env.iter()) {
            env.retain(|(k, _)| k != key);
            env.push((key.clone(), value.clone()));
        }
        let mut env: Vec<String> = env.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        env.push(format!("{EXEC_MARKER}={token}"));
        let options = CreateExecOptions::<String> {
            attach_stdin: Some(false),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            env: Some(env),
            cmd: Some(vec![
                "sh".into(),
                "-c".into(),
                EXEC_WRAPPER.into(),
                "sh".into(),
                spec.command.clone(),
            ]),
            user: self.remote_user.clone(),
            working_dir: Some(self.workspace_folder.clone()),
            ..Default::default()
        };
        let created = match docker.create_exec(&self.id, options.clone()).await {
            Ok(created) => created,
            // The engine restarted, or someone stopped the container: start it again once.
            Err(e) if is_status(&e, 409) => {
                docker
                    .start_container(&self.id, None::<StartContainerOptions>)
                    .await
                    .map_err(api(format!("start container {}", self.name)))?;
                docker
                    .create_exec(&self.id, options)
                    .await
                    .map_err(api(format!("create an exec in container {}", self.name)))?
            }
            Err(e) => return Err(api(format!("create an exec in container {}", self.name))(e)),
        };
        let started = Instant::now();
        // A timeout too large to add is no timeout.
        let now = tokio::time::Instant::now();
        let deadline = now
            .checked_add(spec.timeout)
            .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600));
        let start = StartExecOptions {
            detach: false,
            tty: false,
            output_capacity: Some(64 * 1024),
        };
        let StartExecResults::Attached {
            mut output,
            input: _input,
        } = docker
            .start_exec(&created.id, Some(start))
            .await
            .map_err(api(format!("start an exec in container {}", self.name)))?
        else {
            return Err(DockerError::Api {
                action: format!("start an exec in container {}", self.name),
                source: ApiError::DockerStreamError {
                    error: "the engine detached the exec".into(),
                },
            });
        };

        let mut capture = Capture::default();
        let mut timed_out = false;
        loop {
            tokio::select! {
                chunk = output.next() => match chunk {
                    Some(Ok(LogOutput::StdOut { message } | LogOutput::StdErr { message }
                        | LogOutput::Console { message })) => capture.push(&message),
                    Some(Ok(LogOutput::StdIn { .. })) => {}
                    Some(Err(_)) | None => break,
                },
                _ = tokio::time::sleep_until(deadline) => {
                    timed_out = true;
                    break;
                }
            }
        }
        // The output ends when the wrapper exits; its exit code may show a moment later. A
        // command that closed its output and kept running is waited for until the timeout.
        let mut exit_code = None;
        let mut pause = Duration::from_millis(10);
        while !timed_out {
            let inspect = docker
                .inspect_exec(&created.id)
                .await
                .map_err(api(format!("inspect an exec in container {}", self.name)))?;
            if inspect.running != Some(true) {
                exit_code = inspect.exit_code.and_then(|c| i32::try_from(c).ok());
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                timed_out = true;
                break;
            }
            tokio::time::sleep(
                pause.min(deadline.saturating_duration_since(tokio::time::Instant::now())),
            )
            .await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
        if timed_out {
            self.kill_marked(&token).await;
            let drain = async {
                while let Some(Ok(chunk)) = output.next().await {
                    if let LogOutput::StdOut { message } | LogOutput::StdErr { message } = chunk {
                        capture.push(&message);
                    }
                }
            };
            if tokio::time::timeout(DRAIN_GRACE, drain).await.is_err() {
                capture.note("[flightdeck: output still open after the kill; stopped reading]\n");
            }
        }
        // Nothing a command started outlives it (a daemon it left could read the secrets of
        // the commands after it from /proc), as in the local sandbox.
        self.kill_leftovers().await;
        let (output, dropped_bytes) = capture.finish();
        Ok(CommandOutcome {
            exit_code,
            timed_out,
            output,
            dropped_bytes,
            duration: started.elapsed(),
            limit_hit: None,
        })
    }

    /// Kills every process of the command marked with `token`, as the user it ran as (who
    /// may read those processes' environments). Best effort: a failure leaves the caller's
    /// grace period to end the wait.
    /// Kills every process in the container but its init (as root: `kill -KILL -1` spares
    /// PID 1 and the caller).
    async fn kill_leftovers(&self) {
        let script = "kill -KILL -1 2>/dev/null; exit 0";
        self.housekeeping(vec![script.into()], Some("0".into()))
            .await;
    }

    async fn kill_marked(&self, token: &str) {
        let args = vec![KILL_SCRIPT.into(), "sh".into(), token.to_string()];
        self.housekeeping(args, self.remote_user.clone()).await;
    }

    /// Runs `sh -c ARGS…` in the container as `user`, waits for it (at most 10 s) and
    /// ignores how it went: cleanup that must not fail the command it follows.
    async fn housekeeping(&self, args: Vec<String>, user: Option<String>) {
        let docker = &self.engine.docker;
        let mut cmd = vec!["sh".to_string(), "-c".to_string()];
        cmd.extend(args);
        let options = CreateExecOptions::<String> {
            attach_stdin: Some(false),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            cmd: Some(cmd),
            user,
            ..Default::default()
        };
        let run = async {
            let created = docker.create_exec(&self.id, options).await.ok()?;
            if let Ok(StartExecResults::Attached { mut output, .. }) =
                docker.start_exec(&created.id, None).await
            {
                while output.next().await.is_some() {}
            }
            Some(())
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), run).await;
    }
}

#[async_trait]
impl Workspace for DockerWorkspace {
    fn root(&self) -> &Path {
        &self.root
    }

    fn runtime(&self) -> &'static str {
        "docker"
    }

    fn sandbox(&self) -> &'static str {
        "container"
    }

    /// Runs the command in the container. `spec.network` is not per command here: the
    /// container has the network [`DockerWorkspace::set_network`] gave it.
    async fn exec(&self, spec: &CommandSpec) -> Result<CommandOutcome, WorkspaceError> {
        let outcome = self.run(spec).await.map_err(|e| WorkspaceError::Spawn {
            program: format!("docker exec ({})", self.name),
            source: std::io::Error::other(e),
        })?;
        // The container's root is root on the host: a setuid file it made in the worktree
        // would be a setuid-root program on the host. Nothing of the command runs any more
        // (see `run`), so the bits cannot come back.
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || crate::strip_set_id_bits(&root))
            .await
            .map_err(|e| WorkspaceError::Spawn {
                program: "setuid check".into(),
                source: std::io::Error::other(e),
            })?
            .map_err(|source| WorkspaceError::Io {
                path: self.root.clone(),
                source,
            })?;
        Ok(outcome)
    }
}

/// A token no other command of this process or any other shares.
fn exec_token(container: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = Sha256::new();
    hasher.update(container.as_bytes());
    hasher.update(std::process::id().to_le_bytes());
    hasher.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    hasher.update(now.as_nanos().to_le_bytes());
    hex::encode(&hasher.finalize()[..16])
}

/// Output kept up to [`MAX_CAPTURED_OUTPUT`], counting what is dropped (as `exec.rs` does for
/// local commands).
#[derive(Default)]
struct Capture {
    output: Vec<u8>,
    dropped: u64,
    notes: Vec<u8>,
}

impl Capture {
    fn push(&mut self, bytes: &[u8]) {
        let room = MAX_CAPTURED_OUTPUT.saturating_sub(self.output.len());
        let keep = bytes.len().min(room);
        self.output.extend_from_slice(&bytes[..keep]);
        self.dropped += (bytes.len() - keep) as u64;
    }

    fn note(&mut self, text: &str) {
        self.notes.extend_from_slice(text.as_bytes());
    }

    fn finish(mut self) -> (Vec<u8>, u64) {
        if self.dropped > 0 {
            self.output.extend_from_slice(
                format!(
                    "\n[flightdeck: {} more bytes of output dropped]\n",
                    self.dropped
                )
                .as_bytes(),
            );
        }
        if !self.notes.is_empty() {
            if self.output.last().is_some_and(|b| *b != b'\n') {
                self.output.push(b'\n');
            }
            self.output.extend_from_slice(&self.notes);
        }
        (self.output, self.dropped)
    }
}

/// The last lines a build printed, for its error message.
#[derive(Default)]
struct LogTail {
    lines: std::collections::VecDeque<String>,
}

impl LogTail {
    const KEEP: usize = 30;

    fn push(&mut self, text: &str) {
        for line in text.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
            if self.lines.len() == Self::KEEP {
                self.lines.pop_front();
            }
            self.lines.push_back(line.to_string());
        }
    }

    fn render(&self) -> String {
        self.lines.iter().fold(String::new(), |mut out, line| {
            out.push('\n');
            out.push_str(line);
            out
        })
    }
}

/// The images a Dockerfile's `FROM` lines name, other than earlier stages and `scratch`, with
/// `ARG`s declared before the first `FROM` (and build args) substituted. A name that still
/// holds a variable is left to the build.
fn base_images(dockerfile: &str, args: &BTreeMap<String, String>) -> Vec<String> {
    let mut vars: HashMap<String, String> = HashMap::new();
    let mut stages: Vec<String> = Vec::new();
    let mut images = Vec::new();
    let mut seen_from = false;
    let joined = dockerfile.replace("\\\r\n", " ").replace("\\\n", " ");
    for line in joined.lines().map(str::trim) {
        if line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let Some(instruction) = words.next() else {
            continue;
        };
        if instruction.eq_ignore_ascii_case("ARG") && !seen_from {
            for arg in words {
                let (name, default) = match arg.split_once('=') {
                    Some((name, value)) => (name, Some(value.trim_matches('"'))),
                    None => (arg, None),
                };
                if let Some(value) = args.get(name).map(String::as_str).or(default) {
                    vars.insert(name.to_string(), value.to_string());
                }
            }
        } else if instruction.eq_ignore_ascii_case("FROM") {
            seen_from = true;
            let mut words = words.skip_while(|w| w.starts_with("--"));
            let Some(image) = words.next() else {
                continue;
            };
            let image = substitute(image, &vars).filter(|image| {
                !image.eq_ignore_ascii_case("scratch")
                    && !stages.contains(&image.to_ascii_lowercase())
                    && !images.contains(image)
            });
            if let (Some(keyword), Some(alias)) = (words.next(), words.next()) {
                if keyword.eq_ignore_ascii_case("AS") {
                    stages.push(alias.to_ascii_lowercase());
                }
            }
            images.extend(image);
        }
    }
    images
}

/// `$NAME`, `${NAME}` and `${NAME:-default}` replaced; `None` when a variable is unknown.
fn substitute(text: &str, vars: &HashMap<String, String>) -> Option<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (expression, remainder) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced.find('}')?;
            (&braced[..end], &braced[end + 1..])
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        let (name, default) = match expression.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (expression, None),
        };
        match vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
            .or(default)
        {
            Some(value) => out.push_str(value),
            None => return None,
        }
        rest = remainder;
    }
    out.push_str(rest);
    Some(out)
}

/// The name a Dockerfile from outside the context gets inside the archive.
const OUTSIDE_DOCKERFILE: &str = ".flightdeck.Dockerfile";

/// `.dockerignore`, matched with gitignore rules after anchoring every pattern at the context
/// root (which is how Docker reads them); a path is excluded when it or a parent directory
/// matches, and `!` patterns re-include.
struct DockerIgnore {
    matcher: Option<ignore::gitignore::Gitignore>,
    has_negations: bool,
}

impl DockerIgnore {
    fn load(context: &Path) -> std::io::Result<DockerIgnore> {
        let file = context.join(".dockerignore");
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(DockerIgnore {
                    matcher: None,
                    has_negations: false,
                })
            }
            Err(e) => return Err(e),
        };
        let mut builder = ignore::gitignore::GitignoreBuilder::new(context);
        let mut has_negations = false;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (negate, pattern) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let pattern = pattern.trim_start_matches("./").trim_start_matches('/');
            if pattern.is_empty() {
                continue;
            }
            has_negations |= negate;
            let anchored = format!("{}/{pattern}", if negate { "!" } else { "" });
            builder
                .add_line(None, &anchored)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        }
        let matcher = builder
            .build()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        Ok(DockerIgnore {
            matcher: Some(matcher),
            has_negations,
        })
    }

    fn excluded(&self, relative: &Path, is_dir: bool) -> bool {
        self.matcher
            .as_ref()
            .is_some_and(|m| m.matched_path_or_any_parents(relative, is_dir).is_ignore())
    }
}

/// Writes the context directory (minus what `.dockerignore` excludes) and the Dockerfile.
fn write_context<W: Write>(
    tar: &mut TarWriter<W>,
    context: &Path,
    ignore: &DockerIgnore,
    dockerfile_path: &Path,
    dockerfile_name: &Path,
    in_context: bool,
) -> std::io::Result<()> {
    let mut dockerfile_written = false;
    walk(
        tar,
        context,
        Path::new(""),
        ignore,
        dockerfile_name,
        &mut dockerfile_written,
    )?;
    // Docker always sends the Dockerfile, even when `.dockerignore` names it.
    if !dockerfile_written || !in_context {
        let meta = std::fs::metadata(dockerfile_path)?;
        let mut file = std::fs::File::open(dockerfile_path)?;
        tar.file(
            dockerfile_name.as_os_str().as_bytes(),
            0o644,
            meta.mtime(),
            meta.len(),
            &mut file,
        )?;
    }
    Ok(())
}

fn walk<W: Write>(
    tar: &mut TarWriter<W>,
    context: &Path,
    relative: &Path,
    ignore: &DockerIgnore,
    dockerfile_name: &Path,
    dockerfile_written: &mut bool,
) -> std::io::Result<()> {
    let dir = context.join(relative);
    let mut entries = std::fs::read_dir(&dir)?.collect::<Result<Vec<_>, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = relative.join(entry.file_name());
        let meta = entry.path().symlink_metadata()?;
        let kind = meta.file_type();
        let mode = meta.permissions().mode();
        let name = path.as_os_str().as_bytes();
        if ignore.excluded(&path, kind.is_dir()) {
            // An excluded directory may hold re-included files.
            if kind.is_dir() && ignore.has_negations {
                walk(
                    tar,
                    context,
                    &path,
                    ignore,
                    dockerfile_name,
                    dockerfile_written,
                )?;
            }
            continue;
        }
        if kind.is_dir() {
            tar.directory(name, mode, meta.mtime())?;
            walk(
                tar,
                context,
                &path,
                ignore,
                dockerfile_name,
                dockerfile_written,
            )?;
        } else if kind.is_symlink() {
            let target = std::fs::read_link(entry.path())?;
            tar.symlink(name, target.as_os_str().as_bytes(), meta.mtime())?;
        } else if kind.is_file() {
            let mut file = std::fs::File::open(entry.path())?;
            tar.file(name, mode, meta.mtime(), meta.len(), &mut file)?;
            if path == dockerfile_name {
                *dockerfile_written = true;
            }
        }
        // Sockets, FIFOs and devices have no place in a build context.
    }
    Ok(())
}

/// A minimal tar (ustar, with PAX headers for names over 100 bytes) writer: what Docker's
/// build endpoint reads.
struct TarWriter<W: Write> {
    out: W,
}

const BLOCK: usize = 512;

impl<W: Write> TarWriter<W> {
    fn new(out: W) -> TarWriter<W> {
        TarWriter { out }
    }

    fn directory(&mut self, name: &[u8], mode: u32, mtime: i64) -> std::io::Result<()> {
        let mut name = name.to_vec();
        name.push(b'/');
        self.header(&name, b'5', mode, 0, mtime, b"")
    }

    fn symlink(&mut self, name: &[u8], target: &[u8], mtime: i64) -> std::io::Result<()> {
        self.header(name, b'2', 0o777, 0, mtime, target)
    }

    fn file(
        &mut self,
        name: &[u8],
        mode: u32,
        mtime: i64,
        size: u64,
        data: &mut impl Read,
    ) -> std::io::Result<()> {
        self.header(name, b'0', mode, size, mtime, b"")?;
        // Exactly `size` bytes, whatever the file did since it was measured.
        let copied = std::io::copy(&mut data.take(size), &mut self.out)?;
        let mut missing = size - copied;
        let zeros = [0u8; BLOCK];
        while missing > 0 {
            let n = missing.min(BLOCK as u64) as usize;
            self.out.write_all(&zeros[..n])?;
            missing -= n as u64;
        }
        self.pad(size)
    }

    fn finish(mut self) -> std::io::Result<()> {
        self.out.write_all(&[0u8; 2 * BLOCK])?;
        self.out.flush()
    }

    fn pad(&mut self, size: u64) -> std::io::Result<()> {
        let rest = (size % BLOCK as u64) as usize;
        if rest != 0 {
            self.out.write_all(&[0u8; BLOCK][..BLOCK - rest])?;
        }
        Ok(())
    }

    fn header(
        &mut self,
        name: &[u8],
        kind: u8,
        mode: u32,
        size: u64,
        mtime: i64,
        link: &[u8],
    ) -> std::io::Result<()> {
        if size >= 8u64.pow(11) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "{} is 8 GiB or larger; leave it out with .dockerignore",
                    String::from_utf8_lossy(name)
                ),
            ));
        }
        if name.len() > 100 || link.len() > 100 {
            let mut records = Vec::new();
            if name.len() > 100 {
                records.extend(pax_record("path", name));
            }
            if link.len() > 100 {
                records.extend(pax_record("linkpath", link));
            }
            let block = ustar_block(b"././@PaxHeader", b'x', 0o644, records.len() as u64, 0, b"");
            self.out.write_all(&block)?;
            self.out.write_all(&records)?;
            self.pad(records.len() as u64)?;
        }
        let block = ustar_block(
            &name[..name.len().min(100)],
            kind,
            mode,
            size,
            mtime.max(0) as u64,
            &link[..link.len().min(100)],
        );
        self.out.write_all(&block)
    }
}

/// `"<length> <key>=<value>\n"`, the length counting itself.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let base = key.len() + value.len() + 3;
    let mut length = base + 1;
    while base + length.to_string().len() != length {
        length = base + length.to_string().len();
    }
    let mut record = format!("{length} {key}=").into_bytes();
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

fn ustar_block(name: &[u8], kind: u8, mode: u32, size: u64, mtime: u64, link: &[u8]) -> [u8; 512] {
    fn octal(field: &mut [u8], value: u64) {
        let digits = field.len() - 1;
        let text = format!("{value:0digits$o}");
        let text = text.as_bytes();
        // Callers keep values in range; the low digits are kept if not.
        field[..digits].copy_from_slice(&text[text.len() - digits..]);
        field[digits] = 0;
    }
    let mut block = [0u8; BLOCK];
    block[..name.len()].copy_from_slice(name);
    octal(&mut block[100..108], u64::from(mode & 0o7777));
    octal(&mut block[108..116], 0);
    octal(&mut block[116..124], 0);
    octal(&mut block[124..136], size);
    octal(&mut block[136..148], mtime);
    block[148..156].copy_from_slice(b"        ");
    block[156] = kind;
    block[157..157 + link.len()].copy_from_slice(link);
    block[257..263].copy_from_slice(b"ustar\0");
    block[263..265].copy_from_slice(b"00");
    block[265..269].copy_from_slice(b"root");
    block[297..301].copy_from_slice(b"root");
    let sum: u32 = block.iter().map(|b| u32::from(*b)).sum();
    block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    block
}

/// Hands the archive to the async side in chunks; a closed channel (the request failed)
/// stops the walk.
struct ChannelWriter {
    buffer: Vec<u8>,
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
}

impl ChannelWriter {
    const CHUNK: usize = 256 * 1024;

    fn new(tx: tokio::sync::mpsc::Sender<Vec<u8>>) -> ChannelWriter {
        ChannelWriter {
            buffer: Vec::with_capacity(Self::CHUNK),
            tx,
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(Self::CHUNK));
        self.tx.blocking_send(chunk).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the engine stopped reading the build context",
            )
        })
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= Self::CHUNK {
            self.send()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        let record = pax_record("path", b"a/b");
        assert_eq!(record, b"12 path=a/b\n");
        let long = vec![b'x'; 95];
        let record = pax_record("path", &long);
        let (length, _) = std::str::from_utf8(&record)
            .unwrap()
            .split_once(' ')
            .unwrap();
        assert_eq!(length.parse::<usize>().unwrap(), record.len());
    }

    #[test]
    fn ustar_checksum_is_valid() {
        let block = ustar_block(b"a.txt", b'0', 0o644, 5, 0, b"");
        let stored = std::str::from_utf8(&block[148..154]).unwrap();
        let mut copy = block;
        copy[148..156].copy_from_slice(b"        ");
        let sum: u32 = copy.iter().map(|b| u32::from(*b)).sum();
        assert_eq!(u32::from_str_radix(stored, 8).unwrap(), sum);
    }

    #[test]
    fn base_images_skip_stages_and_scratch_and_substitute_args() {
        let dockerfile = "ARG BASE=debian:12\nARG TAG\n# FROM commented:out\n\
            FROM --platform=linux/amd64 ${BASE} AS build\nRUN make \\\n  FROM=x\n\
            FROM build AS test\nFROM scratch\nFROM registry.local/tools:${TAG:-1}\n\
            FROM $UNKNOWN\nFROM busybox:$TAG\n";
        let args = BTreeMap::from([("TAG".to_string(), "2".to_string())]);
        assert_eq!(
            base_images(dockerfile, &args),
            vec!["debian:12", "registry.local/tools:2", "busybox:2"]
        );
        assert_eq!(
            base_images(dockerfile, &BTreeMap::new()),
            vec!["debian:12", "registry.local/tools:1"]
        );
    }

    #[test]
    fn dockerignore_is_anchored_and_negatable() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(".dockerignore"),
            "# comment\ntarget\n*.log\n!keep.log\ndocs/**/*.tmp\n",
        )
        .unwrap();
        let ignore = DockerIgnore::load(dir.path()).unwrap();
        assert!(ignore.excluded(Path::new("target"), true));
        assert!(ignore.excluded(Path::new("target/debug/x"), false));
        assert!(!ignore.excluded(Path::new("src/target"), true));
        assert!(ignore.excluded(Path::new("a.log"), false));
        assert!(!ignore.excluded(Path::new("keep.log"), false));
        assert!(!ignore.excluded(Path::new("sub/a.log"), false));
        assert!(ignore.excluded(Path::new("docs/x/y.tmp"), false));
        assert!(ignore.has_negations);
    }
}
