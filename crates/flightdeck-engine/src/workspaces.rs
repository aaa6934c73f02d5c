//! Workspaces behind a provider port: provision, attach, set the network, remove.
//!
//! [`LiveWorkspaces`] makes a mission's workspace from its worktree of the base commit, its
//! caches, and the runtime its template asks for: the local sandbox (bubblewrap, layout and
//! limits) or a container made from the repository's devcontainer.json (through a
//! [`ContainerRuntime`]: the Docker Engine API, or a replay's stand-in that runs nothing).
//! It probes the toolchain against the repository's pins, unless it was given what a
//! recording found. Missions and `flightdeck workspace up` both come here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flightdeck_core::event::{
    CacheKey, ComposeProject, FeaturePin, ToolchainEntry, WorkspaceDrift, WorkspaceLimits,
    WorkspaceProvisioned,
};
use flightdeck_core::template::{Network, Runtime, WorkspaceSpec};
use flightdeck_workspace::compose;
use flightdeck_workspace::docker::{
    DockerEngine, DockerError, DockerWorkspace, ImageSource, COMPOSE_PROJECT_LABEL,
};
use flightdeck_workspace::{
    Cgroups, CommandSpec, Limits, LocalWorkspace, Sandbox, SandboxLayout, SnapshotStore, Workspace,
    WorkspaceError, Worktree, DEFAULT_MAX_PROCESSES, DEFAULT_MEMORY_MB,
};

use crate::container::{self, ContainerPlan, SetupCommand, WithPrelude};
use crate::ports::SecretPort;
use crate::{EngineError, Secrets};

/// What a workspace is made for.
#[derive(Debug, Clone, Copy)]
pub struct WorkspaceRequest<'a> {
    /// The mission (or debugging workspace) id.
    pub id: &'a str,
    /// The repository (any directory inside it).
    pub repo: &'a Path,
    pub base_commit: &'a str,
    pub spec: &'a WorkspaceSpec,
    /// What a recording found (a replay): its toolchain and limits are taken, not probed.
    pub recorded: Option<&'a WorkspaceProvisioned>,
    /// The mission this one was forked from: its snapshots are read too (the fork restores
    /// the worktree to a tree the origin recorded).
    pub origin: Option<&'a str>,
}

/// A workspace made ready: its worktree, the runtime, and what is recorded about it.
pub struct Provisioned {
    pub worktree: Worktree,
    pub workspace: Arc<dyn Workspace>,
    pub event: WorkspaceProvisioned,
    pub drift: Vec<WorkspaceDrift>,
}

/// Makes, finds again and removes workspaces.
#[async_trait]
pub trait WorkspaceProvider: Send + Sync {
    /// A fresh workspace: worktree, caches, runtime, setup; the toolchain probed.
    async fn provision(&self, request: &WorkspaceRequest<'_>) -> Result<Provisioned, EngineError>;

    /// The workspace of a mission that was provisioned before (a resume): the worktree
    /// reused, a container re-attached (or rebuilt from the base commit's definition if it
    /// is gone). `event` is empty but for what identifies the runtime.
    async fn attach(&self, request: &WorkspaceRequest<'_>) -> Result<Provisioned, EngineError>;

    /// Gives a container workspace the network, or takes it away.
    async fn set_network(&self, id: &str, on: bool) -> Result<(), EngineError>;

    /// Removes workspace `id`: its worktree (through `repo`'s git when known), its HOME and
    /// its container. Best effort: cleanup never fails a mission.
    async fn remove(&self, id: &str, repo: Option<&Path>);

    /// Where workspace `id`'s worktree is.
    fn worktree_path(&self, id: &str) -> PathBuf;

    /// The name of workspace `id`'s container.
    fn container_name(&self, id: &str) -> String;

    /// A digest of the data directory: the installation label of its containers.
    fn installation(&self) -> String;
}

/// Where containers come from.
#[async_trait]
pub trait ContainerRuntime: Send + Sync {
    /// A container for `plan` (its features installed, its Compose project up), with its
    /// setup commands run.
    async fn create(
        &self,
        plan: &ContainerPlan,
        setup: &SetupRun<'_>,
    ) -> Result<Created, EngineError>;

    /// The running container `name`, if there is one.
    async fn attach(&self, name: &str) -> Result<Option<Arc<dyn Workspace>>, EngineError>;

    async fn set_network(&self, name: &str, on: bool) -> Result<(), EngineError>;

    async fn remove(&self, name: &str);

    /// Whether commands really run in its containers (a verifying replay's stand-in runs
    /// none, so the worktree is set to the tree the recorded setup commands left).
    fn executes(&self) -> bool {
        true
    }
}

/// How setup commands run: with which secrets, network and timeout.
pub struct SetupRun<'a> {
    pub env: Vec<(String, String)>,
    pub network: Network,
    pub timeout: Duration,
    pub redact: &'a Secrets,
    /// Registry → (username, password), from the template's secrets, for fetching features.
    pub registry_logins: BTreeMap<String, (String, String)>,
}

/// A container made by [`ContainerRuntime::create`], and what is recorded about it.
pub struct Created {
    pub workspace: Arc<dyn Workspace>,
    pub image_digest: Option<String>,
    /// The image the container runs, when it is not the plan's (the features' image).
    pub image: Option<String>,
    /// The features installed, in install order.
    pub features: Vec<FeaturePin>,
    pub compose: Option<ComposeProject>,
    /// The setup commands run, in order (features' lifecycle commands among them).
    pub setup: Vec<String>,
    /// What of the compose files was not applied, and why.
    pub ignored: BTreeMap<String, String>,
}

fn compose_error(e: compose::ComposeError) -> EngineError {
    match e {
        compose::ComposeError::Docker(e) => WorkspaceError::from(e).into(),
        e => EngineError::WorkspaceDefinition(e.to_string()),
    }
}

/// Where a provider keeps things.
#[derive(Debug, Clone)]
pub struct WorkspaceConfig {
    /// `<data-dir>/workspaces`.
    pub workspaces_dir: PathBuf,
    /// Hidden from every sandboxed command (other missions, artifacts, the store); caches
    /// live under it.
    pub data_dir: PathBuf,
    /// Files no command may read (secret files, the installation config).
    pub hidden_files: Vec<PathBuf>,
    /// The longest a setup command may run.
    pub setup_timeout: Duration,
    /// Containers are named `<prefix><id>`.
    pub container_prefix: String,
    /// `<data-dir>/objects`: workspace `id` writes its snapshots and commits to `<dir>/<id>`,
    /// never to the repository's object store.
    pub objects_dir: PathBuf,
    /// A replay's: where the recorded mission's objects are (`<dir>/<id>`), read through.
    pub recorded_objects_dir: Option<PathBuf>,
}

/// Workspaces made for real.
pub struct LiveWorkspaces {
    pub config: WorkspaceConfig,
    pub secrets: Arc<dyn SecretPort>,
    pub redact: Secrets,
    pub containers: Arc<dyn ContainerRuntime>,
}

impl LiveWorkspaces {
    fn home_path(&self, id: &str) -> PathBuf {
        self.config.workspaces_dir.join(format!("{id}.home"))
    }

    /// Where workspace `id`'s snapshots go, and the secrets none may hold; the snapshots of
    /// `origin` (a fork's) are read too, and through its own alternates, its origin's.
    fn snapshot_store(&self, id: &str, origin: Option<&str>) -> SnapshotStore {
        let mut dirs: Vec<PathBuf> = Vec::new();
        for mission in std::iter::once(id).chain(origin) {
            if mission != id {
                dirs.push(self.config.objects_dir.join(mission));
            }
            dirs.extend(
                self.config
                    .recorded_objects_dir
                    .iter()
                    .map(|dir| dir.join(mission)),
            );
        }
        SnapshotStore {
            objects: self.config.objects_dir.join(id),
            read_also: dirs.into_iter().filter(|dir| dir.is_dir()).collect(),
            secrets: self.redact.clone(),
        }
    }

    async fn make(
        &self,
        request: &WorkspaceRequest<'_>,
        fresh: bool,
    ) -> Result<Provisioned, EngineError> {
        let WorkspaceRequest {
            id,
            repo,
            base_commit,
            spec,
            origin,
            ..
        } = *request;
        let runtime = spec.runtime;
        let path = self.worktree_path(id);
        std::fs::create_dir_all(&self.config.workspaces_dir).map_err(|source| {
            WorkspaceError::Io {
                path: self.config.workspaces_dir.clone(),
                source,
            }
        })?;
        let mut worktree =
            Worktree::create(repo, &path, base_commit, self.snapshot_store(id, origin))?;
        let caches_dir = self.config.data_dir.join("caches");
        let repository = std::fs::canonicalize(repo).unwrap_or_else(|_| repo.to_path_buf());
        let caches = flightdeck_workspace::caches::for_repo(
            &path,
            &repository.display().to_string(),
            &caches_dir,
        )
        .map_err(|source| WorkspaceError::Io {
            path: caches_dir.clone(),
            source,
        })?;
        let mut event = WorkspaceProvisioned {
            runtime: runtime.as_str().to_string(),
            network: spec.network.as_str().to_string(),
            path: path.display().to_string(),
            caches: caches
                .iter()
                .map(|c| {
                    let key = CacheKey {
                        key: c.key.clone(),
                        lockfiles: c.lockfiles.clone(),
                    };
                    (c.ecosystem.clone(), key)
                })
                .collect(),
            secrets: spec.secrets.clone(),
            ..WorkspaceProvisioned::default()
        };
        // Every local workspace is limited: what the template says, else the defaults.
        let limits = Limits {
            memory_mb: spec.memory_mb.or(Some(DEFAULT_MEMORY_MB)),
            max_processes: spec.max_processes.or(Some(DEFAULT_MAX_PROCESSES)),
        };
        let workspace: Arc<dyn Workspace> = match runtime {
            Runtime::Local | Runtime::LocalUnsandboxed => {
                let sandbox = match runtime {
                    Runtime::Local => Sandbox::bubblewrap()?,
                    _ => Sandbox::None,
                };
                let layout = SandboxLayout::for_mission(
                    &self.home_path(id),
                    &self.config.data_dir,
                    Some(repo),
                    &self.config.hidden_files,
                    &caches,
                )?;
                let local = LocalWorkspace::new(path.clone(), sandbox)
                    .with_layout(layout)
                    .with_limits(limits, Cgroups::detect());
                worktree = worktree.with_owner(local.file_owner());
                event.limits = Some(WorkspaceLimits {
                    memory_mb: limits.memory_mb,
                    max_processes: limits.max_processes,
                    enforced: local.limits_enforcement(),
                });
                event.sandbox = local.sandbox().to_string();
                event.runtime = local.runtime().to_string();
                Arc::new(local)
            }
            Runtime::Docker => {
                let name = self.container_name(id);
                // The definition is read from the base commit's files: on a resume the
                // worktree holds what the agent wrote, which must not decide what runs with
                // secrets.
                let base_root = if fresh {
                    None
                } else {
                    Some(self.base_checkout(id, repo, base_commit)?)
                };
                let definition_root = base_root.as_ref().map_or(path.as_path(), |w| w.path());
                let plan = container::plan(
                    &name,
                    id,
                    definition_root,
                    &path,
                    &self.installation(),
                    spec,
                    &caches,
                );
                if let Some(base) = &base_root {
                    let _ = Worktree::remove(repo, base.path());
                    let _ =
                        std::fs::remove_dir_all(self.config.objects_dir.join(format!("{id}.base")));
                    let _ = std::fs::remove_file(base.index_path());
                }
                let plan = plan?;
                event.image = Some(plan.image.clone());
                event.container = Some(name.clone());
                event.setup = plan.setup.iter().map(|c| c.name.clone()).collect();
                event.ignored = plan.ignored.clone();
                event.limits = Some(WorkspaceLimits {
                    memory_mb: plan.spec.limits.memory_mb,
                    max_processes: plan.spec.limits.max_processes,
                    enforced: "container".into(),
                });
                event.runtime = "docker".into();
                event.sandbox = "container".into();
                let attached = if fresh {
                    None
                } else {
                    self.containers.attach(&name).await?
                };
                let workspace = match attached {
                    Some(workspace) => workspace,
                    None => {
                        // A container left by a provision that died half way is not ours
                        // to trust: start again.
                        self.containers.remove(&name).await;
                        let setup = SetupRun {
                            env: self.secrets.env(&spec.secrets)?,
                            network: spec.network,
                            timeout: self.config.setup_timeout,
                            redact: &self.redact,
                            registry_logins: self.secrets.registry_logins(&spec.secrets),
                        };
                        let created = self.containers.create(&plan, &setup).await?;
                        event.image_digest = created.image_digest;
                        if let Some(image) = created.image {
                            event.image = Some(image);
                        }
                        event.features = created.features;
                        event.compose = created.compose;
                        event.setup = created.setup;
                        event.ignored.extend(created.ignored);
                        created.workspace
                    }
                };
                if let Some(recorded) = request.recorded {
                    // A replay's stand-in ran no setup: the worktree as the recorded setup
                    // commands left it, and the recorded image.
                    if event.image_digest.is_none() {
                        event.image_digest = recorded.image_digest.clone();
                    }
                }
                if plan.prelude.is_empty() {
                    workspace
                } else {
                    Arc::new(WithPrelude {
                        inner: workspace,
                        prelude: plan.prelude.clone(),
                    })
                }
            }
        };
        let mut drift = Vec::new();
        if fresh {
            if let Some(tree) = request
                .recorded
                .filter(|r| r.runtime == "docker")
                .and_then(|r| r.base_tree.clone())
            {
                if !self.containers.executes() {
                    worktree.restore(Some(&tree))?;
                }
            }
            event.base_tree = Some(worktree.snapshot()?);
            drift = probe_toolchain(id, &path, &*workspace, &mut event, request.recorded).await?;
        }
        Ok(Provisioned {
            worktree,
            workspace,
            event,
            drift,
        })
    }

    /// A throwaway checkout of the base commit beside workspace `id`, to read the
    /// repository's own definitions from.
    fn base_checkout(
        &self,
        id: &str,
        repo: &Path,
        base_commit: &str,
    ) -> Result<Worktree, EngineError> {
        let path = self.config.workspaces_dir.join(format!("{id}.base"));
        let mut store = self.snapshot_store(id, None);
        store.objects = self.config.objects_dir.join(format!("{id}.base"));
        Ok(Worktree::create(repo, &path, base_commit, store)?)
    }
}

#[async_trait]
impl WorkspaceProvider for LiveWorkspaces {
    async fn provision(&self, request: &WorkspaceRequest<'_>) -> Result<Provisioned, EngineError> {
        self.make(request, true).await
    }

    async fn attach(&self, request: &WorkspaceRequest<'_>) -> Result<Provisioned, EngineError> {
        self.make(request, false).await
    }

    async fn set_network(&self, id: &str, on: bool) -> Result<(), EngineError> {
        self.containers
            .set_network(&self.container_name(id), on)
            .await
    }

    async fn remove(&self, id: &str, repo: Option<&Path>) {
        self.containers.remove(&self.container_name(id)).await;
        let home = self.home_path(id);
        if home.exists() {
            let _ = std::fs::remove_dir_all(&home);
        }
        // The objects stay (a replay reads them); the index is the worktree's.
        let _ = std::fs::remove_file(self.snapshot_store(id, None).index());
        let path = self.worktree_path(id);
        if !path.exists() {
            return;
        }
        match repo {
            Some(repo) => {
                let _ = Worktree::remove(repo, &path);
            }
            None => {
                let _ = std::fs::remove_dir_all(&path);
            }
        }
    }

    fn worktree_path(&self, id: &str) -> PathBuf {
        self.config.workspaces_dir.join(id)
    }

    fn container_name(&self, id: &str) -> String {
        format!("{}{id}", self.config.container_prefix)
    }

    fn installation(&self) -> String {
        installation_of(&self.config.data_dir)
    }
}

/// A digest of the data directory (the same directory however it is named).
pub fn installation_of(data_dir: &Path) -> String {
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let digest = flightdeck_core::Digest::of(dir.display().to_string().as_bytes());
    digest.as_str().trim_start_matches("sha256:")[..12].to_string()
}

/// Containers made by the Docker Engine API (dockerd, or Podman's socket).
#[derive(Debug, Default, Clone, Copy)]
pub struct DockerContainers;

#[async_trait]
impl ContainerRuntime for DockerContainers {
    async fn create(
        &self,
        plan: &ContainerPlan,
        setup: &SetupRun<'_>,
    ) -> Result<Created, EngineError> {
        let engine = DockerEngine::connect()
            .await
            .map_err(WorkspaceError::from)?;
        let mut spec = plan.spec.clone();
        let mut commands: Vec<SetupCommand> = Vec::new();
        let mut pins = Vec::new();
        let mut image = None;
        // A Compose project's service: its image is the compose file's, checked first.
        let compose = match &plan.compose {
            Some(compose) => {
                let model =
                    compose::check(&compose.files, &spec.worktree).map_err(compose_error)?;
                let service = model.services.get(&compose.service).ok_or_else(|| {
                    EngineError::WorkspaceDefinition(format!(
                        "devcontainer.json `service`: `{}` is not a service of {}\nhint: name one of: {}",
                        compose.service,
                        compose.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", "),
                        model.services.keys().cloned().collect::<Vec<_>>().join(", ")
                    ))
                })?;
                if plan.features.is_some() {
                    spec.image = match (&service.image, &service.build) {
                        (_, Some(build)) => ImageSource::Build {
                            context: build.context.clone(),
                            dockerfile: build.dockerfile.clone(),
                            args: build.args.clone(),
                            target: build.target.clone(),
                            tag: format!(
                                "flightdeck-build/{}-{}:latest",
                                compose.project, compose.service
                            ),
                        },
                        (Some(image), None) => ImageSource::Existing(image.clone()),
                        (None, None) => {
                            return Err(EngineError::WorkspaceDefinition(format!(
                                "compose service `{}` has neither `image` nor `build`, so there is nothing to install the features on\nhint: give the service an image",
                                compose.service
                            )))
                        }
                    };
                }
                Some((compose, model))
            }
            None => None,
        };
        match &plan.features {
            None => commands.extend(plan.setup.iter().cloned()),
            Some(features) => {
                let built =
                    container::install_features(&engine, &spec, features, &setup.registry_logins)
                        .await?;
                spec.image = ImageSource::Existing(built.image.image.clone());
                image = Some(built.image.image.clone());
                container::apply_features(&mut spec, &built.features, &plan.setup, &mut commands)?;
                pins = built.features.iter().map(container::pin_of).collect();
            }
        }
        // Under `network = "setup"` the features' lifecycle commands count as setup too.
        if setup.network == Network::Setup && !commands.is_empty() {
            spec.network = true;
        }
        let mut recorded_compose = None;
        let mut ignored = BTreeMap::new();
        let (docker, image_digest) = match compose {
            None => {
                let (docker, info) = engine.provision(spec).await.map_err(WorkspaceError::from)?;
                (docker, Some(info.digest))
            }
            Some((compose, model)) => {
                let cli = compose::detect().await.map_err(compose_error)?;
                let scratch = tempfile::tempdir().map_err(|source| WorkspaceError::Io {
                    path: std::env::temp_dir(),
                    source,
                })?;
                let project_dir = compose
                    .files
                    .first()
                    .and_then(|f| f.parent())
                    .unwrap_or(&spec.worktree)
                    .to_path_buf();
                let features_image = match &spec.image {
                    ImageSource::Existing(name) if image.is_some() => Some(name.clone()),
                    _ => None,
                };
                let up = compose::ComposeUp {
                    project: compose.project.clone(),
                    files: compose.files.clone(),
                    project_dir,
                    service: compose.service.clone(),
                    run_services: compose.run_services.clone(),
                    worktree: spec.worktree.clone(),
                    workspace_folder: spec.workspace_folder.clone(),
                    labels: spec.labels.clone(),
                    env: spec.env.clone(),
                    user: spec.user.clone(),
                    remote_user: spec.remote_user.clone(),
                    remote_env: spec.remote_env.clone(),
                    image: features_image,
                    // Only `network = "on"` opens the project's networks; setup's network is
                    // the flightdeck bridge, joined below and left when setup is done.
                    network_open: setup.network == Network::On,
                    limits: spec.limits,
                    extra_mounts: spec.mounts.clone(),
                    entrypoints: spec.entrypoints.clone(),
                };
                let started = match compose::up_detailed(&cli, &up, scratch.path()).await {
                    Ok(started) => started,
                    Err(e) => {
                        // Half a project is of no use: take down what came up.
                        let _ = compose::sweep(&engine, &compose.project).await;
                        return Err(compose_error(e));
                    }
                };
                // Named like every workspace container, so attach and remove find it.
                let docker = match engine
                    .rename_container(&started.container, &spec.name)
                    .await
                {
                    Ok(()) => engine.attach(&spec.name).await,
                    Err(e) => Err(e),
                };
                let docker = match docker {
                    Ok(docker) => docker,
                    Err(e) => {
                        let _ = compose::sweep(&engine, &compose.project).await;
                        return Err(WorkspaceError::from(e).into());
                    }
                };
                if spec.network && setup.network != Network::On {
                    if let Err(e) = docker.set_network(true).await {
                        let _ = compose::sweep(&engine, &compose.project).await;
                        return Err(WorkspaceError::from(e).into());
                    }
                }
                let digest = engine
                    .container_labels_and_image(docker.id())
                    .await
                    .ok()
                    .map(|(_, image)| image);
                ignored.extend(
                    model
                        .ignored
                        .into_iter()
                        .chain(started.ignored)
                        .map(|(key, why)| (format!("dockerComposeFile: {key}"), why)),
                );
                recorded_compose = Some(ComposeProject {
                    cli: cli.describe(),
                    project: compose.project.clone(),
                    service: compose.service.clone(),
                    services: started
                        .services
                        .into_iter()
                        .filter(|s| *s != compose.service)
                        .collect(),
                });
                (docker, digest)
            }
        };
        if let Err(e) = run_setup(&docker, setup, &commands, &plan.prelude).await {
            // Nothing is recorded of a container whose setup failed: remove it (and its
            // project).
            let _ = docker.remove().await;
            if let Some(compose) = &recorded_compose {
                let _ = compose::sweep(&engine, &compose.project).await;
            }
            return Err(e);
        }
        Ok(Created {
            workspace: Arc::new(docker),
            image_digest,
            image,
            features: pins,
            compose: recorded_compose,
            setup: commands.into_iter().map(|c| c.name).collect(),
            ignored,
        })
    }

    async fn attach(&self, name: &str) -> Result<Option<Arc<dyn Workspace>>, EngineError> {
        let engine = DockerEngine::connect()
            .await
            .map_err(WorkspaceError::from)?;
        match engine.attach(name).await {
            Ok(docker) => Ok(Some(Arc::new(docker))),
            Err(DockerError::ContainerMissing(_)) => Ok(None),
            Err(e) => Err(WorkspaceError::from(e).into()),
        }
    }

    async fn set_network(&self, name: &str, on: bool) -> Result<(), EngineError> {
        let engine = DockerEngine::connect()
            .await
            .map_err(WorkspaceError::from)?;
        let docker = engine.attach(name).await.map_err(WorkspaceError::from)?;
        docker.set_network(on).await.map_err(WorkspaceError::from)?;
        Ok(())
    }

    async fn remove(&self, name: &str) {
        if let Ok(engine) = DockerEngine::connect().await {
            // A Compose service takes its project (sidecars, networks, volumes) with it.
            let project = engine
                .container_labels_and_image(name)
                .await
                .ok()
                .and_then(|(labels, _)| labels.get(COMPOSE_PROJECT_LABEL).cloned());
            let _ = engine.remove_container(name).await;
            if let Some(project) = project {
                let _ = compose::sweep(&engine, &project).await;
            }
        }
    }
}

/// The devcontainer's setup commands, in order, with the workspace's secrets; with
/// `network = "setup"` the container has the network for them and loses it after.
async fn run_setup(
    docker: &DockerWorkspace,
    run: &SetupRun<'_>,
    setup: &[SetupCommand],
    prelude: &str,
) -> Result<(), EngineError> {
    let redact =
        |text: &str| String::from_utf8_lossy(&run.redact.redact(text.as_bytes())).into_owned();
    for command in setup {
        let outcome = docker
            .exec(&CommandSpec {
                command: format!("{prelude}{}", command.line),
                timeout: run.timeout,
                env: run.env.clone(),
                network: run.network != Network::None,
                // The repository's own setup, before any agent.
                trusted: true,
                private_home: false,
            })
            .await?;
        if !outcome.success() {
            let why = if outcome.timed_out {
                "it timed out".to_string()
            } else {
                format!(
                    "it exited with {}\n{}",
                    outcome
                        .exit_code
                        .map_or("a signal".into(), |c| c.to_string()),
                    redact(&outcome.tail(20))
                )
            };
            return Err(EngineError::SetupFailed {
                name: command.name.clone(),
                command: redact(&command.line),
                why,
            });
        }
    }
    if run.network == Network::Setup && !setup.is_empty() {
        docker
            .set_network(false)
            .await
            .map_err(WorkspaceError::from)?;
    }
    Ok(())
}

/// Reads the repository's toolchain pins and probes what the workspace has, filling
/// `provisioned.toolchain`; the drift, one event per mismatch. A replay takes what the
/// recording found (the host replaying may have other versions; that is not the mission's
/// behaviour).
async fn probe_toolchain(
    id: &str,
    root: &Path,
    workspace: &dyn Workspace,
    provisioned: &mut WorkspaceProvisioned,
    recorded: Option<&WorkspaceProvisioned>,
) -> Result<Vec<WorkspaceDrift>, EngineError> {
    use flightdeck_workspace::toolchain;
    let statuses = if let Some(recorded) = recorded {
        provisioned.toolchain = recorded.toolchain.clone();
        provisioned.limits = recorded.limits.clone();
        provisioned
            .toolchain
            .iter()
            .map(|(tool, entry)| toolchain::ToolStatus {
                tool: tool.clone(),
                pinned: entry.pinned.clone().unwrap_or_default(),
                found: entry.found.clone(),
                source: entry.source.clone().unwrap_or_default(),
                ok: entry.ok,
            })
            .collect()
    } else {
        let pins = toolchain::read_pins(root).map_err(|e| {
            EngineError::WorkspaceDefinition(format!(
                "workspace {id}: {e} (hint: fix or remove the pin file; flightdeck reads it to record the toolchain)"
            ))
        })?;
        if pins.is_empty() {
            return Ok(Vec::new());
        }
        let tools: Vec<&str> = pins.iter().map(|p| p.tool.as_str()).collect();
        let probe = CommandSpec {
            command: toolchain::probe_script(&tools),
            timeout: Duration::from_secs(60),
            env: Vec::new(),
            network: false,
            trusted: false,
            private_home: false,
        };
        let outcome = workspace.exec(&probe).await?;
        let found = toolchain::parse_probe(&String::from_utf8_lossy(&outcome.output));
        toolchain::check(&pins, &found)
    };
    let mut drift = Vec::new();
    for status in statuses {
        if !status.ok {
            drift.push(WorkspaceDrift {
                tool: status.tool.clone(),
                pinned: status.pinned.clone(),
                found: status.found.clone().unwrap_or_else(|| "(missing)".into()),
            });
        }
        provisioned.toolchain.insert(
            status.tool,
            ToolchainEntry {
                pinned: Some(status.pinned),
                found: status.found,
                source: Some(status.source),
                ok: status.ok,
            },
        );
    }
    Ok(drift)
}

/// The kind of mission failure a provisioning error is, when the repository's workspace
/// definition (not this machine's state) is at fault.
pub(crate) fn provisioning_failure(e: &EngineError) -> Option<&'static str> {
    match e {
        EngineError::SetupFailed { .. } => Some("setup_failed"),
        EngineError::WorkspaceDefinition(_) => Some("workspace_invalid"),
        EngineError::Workspace(WorkspaceError::Container(
            DockerError::ImageMissing(_) | DockerError::Build { .. } | DockerError::Context { .. },
        )) => Some("workspace_invalid"),
        _ => None,
    }
}
