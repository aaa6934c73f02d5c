//! What an engine is made of: the store, the installation's settings and the ports, composed
//! once (the composition root): live ports by [`EngineConfig::live`], a replay's in
//! `replay.rs`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use flightdeck_store::{AnchorLog, ArtifactStore, EventStore};

use crate::models::ModelSettings;
use crate::people::Directory;
use crate::ports::{
    Clock, CommandPort, ConfiguredSecrets, FilePort, GitPublisher, LiveCommands, LiveFiles,
    LiveModels, ModelPort, Observer, Publisher, SecretPort, SystemClock, WorkspaceSettings,
};
use crate::redact::Secrets;
use crate::worker::WorkerId;
use crate::workspaces::{DockerContainers, LiveWorkspaces, WorkspaceConfig, WorkspaceProvider};

/// What the engine is given: where timelines go, the installation's settings, and the
/// ports every effect goes through (live ones, or a replay's).
pub struct EngineConfig {
    pub store: Arc<dyn EventStore>,
    pub artifacts: Arc<dyn ArtifactStore>,
    pub clock: Arc<dyn Clock>,
    pub observer: Arc<dyn Observer>,
    /// `<data-dir>/workspaces`.
    pub workspaces_dir: PathBuf,
    /// Timeout of a `run` step that sets none.
    pub default_step_timeout: Duration,
    /// Who drives missions from this process (lease owner).
    pub worker: WorkerId,
    /// How long a mission's lease lasts without renewal: after it, another worker may take
    /// the mission over (and this one's appends are fenced). Drivers renew at a third of it.
    pub lease_ttl: Duration,
    /// A shutdown hands the missions this process drives back to the fleet (`worker`,
    /// `serve`): their interruption says so, and any worker continues them. Otherwise
    /// (`run`, `resume`) they wait for someone to resume them.
    pub hand_back_on_shutdown: bool,
    /// Team membership for approvals (`[teams]` of the installation config).
    pub teams: flightdeck_policy::Teams,
    /// The installation's people: every identity is resolved to one before a decision.
    pub people: Directory,
    /// `[quotas."@team"]`: what each team's missions may spend per UTC calendar month,
    /// reserved in the store before each model call (none: no quota).
    pub quotas: Vec<flightdeck_core::quota::TeamQuota>,
    /// Providers, prices and waiting limits for model calls.
    pub models: ModelSettings,
    /// How the engine waits between retries of a model call (injected so tests need not).
    pub sleeper: Arc<dyn flightdeck_models::Sleeper>,
    /// Values that never reach an event, an artifact or a model (API keys, `[secrets]`).
    pub secrets: Secrets,
    /// The installation's `[secrets]` and what the sandbox must hide.
    pub workspace: WorkspaceSettings,
    /// Every effect's port.
    pub ports: Ports,
    /// Whether the store keeps the summary projection (a replay's does not).
    pub projection: bool,
    /// Set (to the reason) when the process is shutting down: drivers stop cleanly.
    pub shutdown: tokio::sync::watch::Receiver<Option<String>>,
    /// The installation's anchor file: every mission's head at its creation and whenever
    /// it parks or finishes (none for a replay, which writes nothing).
    pub anchors: Option<Arc<AnchorLog>>,
}

impl Clone for EngineConfig {
    fn clone(&self) -> EngineConfig {
        EngineConfig {
            store: self.store.clone(),
            artifacts: self.artifacts.clone(),
            clock: self.clock.clone(),
            observer: self.observer.clone(),
            workspaces_dir: self.workspaces_dir.clone(),
            default_step_timeout: self.default_step_timeout,
            worker: self.worker.clone(),
            lease_ttl: self.lease_ttl,
            hand_back_on_shutdown: self.hand_back_on_shutdown,
            teams: self.teams.clone(),
            people: self.people.clone(),
            quotas: self.quotas.clone(),
            models: self.models.clone(),
            sleeper: self.sleeper.clone(),
            secrets: self.secrets.clone(),
            workspace: self.workspace.clone(),
            ports: self.ports.clone(),
            projection: self.projection,
            shutdown: self.shutdown.clone(),
            anchors: self.anchors.clone(),
        }
    }
}

/// What an engine over the live ports is made from (the application layer composes one
/// from the installation; benches and tests from their own parts).
pub struct LiveParts {
    pub store: Arc<dyn EventStore>,
    pub artifacts: Arc<dyn ArtifactStore>,
    /// The data directory: workspaces and caches under it, and hidden from every sandbox.
    pub data_dir: PathBuf,
    pub observer: Arc<dyn Observer>,
    pub models: ModelSettings,
    pub secrets: Secrets,
    pub workspace: WorkspaceSettings,
    pub teams: flightdeck_policy::Teams,
    pub people: Directory,
    pub shutdown: tokio::sync::watch::Receiver<Option<String>>,
    /// Where mission heads are anchored outside the store (`<data-dir>/anchors.jsonl`).
    pub anchors: Option<Arc<AnchorLog>>,
}

/// Timeout of a `run` step that sets none.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(3600);

/// How long a lease lasts without renewal unless the installation says otherwise.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);

impl EngineConfig {
    /// The engine's configuration with the live ports: commands, files and commits for real,
    /// secrets from the installation, workspaces under the data directory (local sandbox or
    /// the Docker Engine API), the system clock.
    pub fn live(parts: LiveParts) -> EngineConfig {
        let workspaces_dir = parts.data_dir.join("workspaces");
        let ports = Ports::live(
            &parts.workspace,
            Arc::new(LiveWorkspaces {
                config: WorkspaceConfig {
                    workspaces_dir: workspaces_dir.clone(),
                    data_dir: parts.data_dir.clone(),
                    hidden_files: parts.workspace.hidden_files.clone(),
                    setup_timeout: DEFAULT_STEP_TIMEOUT,
                    container_prefix: "flightdeck-".to_string(),
                    objects_dir: parts.data_dir.join("objects"),
                    recorded_objects_dir: None,
                },
                secrets: Arc::new(ConfiguredSecrets(parts.workspace.clone())),
                redact: parts.secrets.clone(),
                containers: Arc::new(DockerContainers),
            }),
        );
        EngineConfig {
            store: parts.store,
            artifacts: parts.artifacts,
            clock: Arc::new(SystemClock),
            observer: parts.observer,
            workspaces_dir,
            default_step_timeout: DEFAULT_STEP_TIMEOUT,
            worker: WorkerId::current(),
            lease_ttl: DEFAULT_LEASE_TTL,
            hand_back_on_shutdown: false,
            teams: parts.teams,
            people: parts.people,
            quotas: Vec::new(),
            models: parts.models,
            sleeper: Arc::new(flightdeck_models::TokioSleeper),
            secrets: parts.secrets,
            workspace: parts.workspace,
            ports,
            projection: true,
            shutdown: parts.shutdown,
            anchors: parts.anchors,
        }
    }
}

/// A shutdown signal that never fires (tools and tests that do not stop on signals): its
/// sender is gone, so it never changes.
pub fn no_shutdown() -> tokio::sync::watch::Receiver<Option<String>> {
    tokio::sync::watch::channel(None).1
}

/// Every port of an engine.
#[derive(Clone)]
pub struct Ports {
    pub commands: Arc<dyn CommandPort>,
    pub files: Arc<dyn FilePort>,
    pub publisher: Arc<dyn Publisher>,
    pub secrets: Arc<dyn SecretPort>,
    pub models: Arc<dyn ModelPort>,
    pub workspaces: Arc<dyn WorkspaceProvider>,
    /// Where a mission's repository is on this machine.
    pub repos: Arc<dyn crate::ports::RepoPort>,
    /// Where missions from GitHub propose their change ([`crate::ports::NoForge`] unless the
    /// installation configures `[github]`).
    pub forge: Arc<dyn crate::ports::Forge>,
}

impl Ports {
    /// The live ports: commands, files and commits for real, secrets from `settings`,
    /// workspaces from `workspaces`.
    pub fn live(settings: &WorkspaceSettings, workspaces: Arc<dyn WorkspaceProvider>) -> Ports {
        Ports {
            commands: Arc::new(LiveCommands),
            files: Arc::new(LiveFiles),
            publisher: Arc::new(GitPublisher),
            secrets: Arc::new(ConfiguredSecrets(settings.clone())),
            models: Arc::new(LiveModels),
            workspaces,
            repos: Arc::new(crate::ports::RecordedRepo),
            forge: Arc::new(crate::ports::NoForge),
        }
    }
}
