//! The mission engine: creates missions from templates and drives them, step by step, to the
//! end or to a point where they park. Every action is an event appended to the mission's
//! timeline before (request) and after (result) it happens; the mission's state is the fold
//! of those events, so a mission continues from its timeline after any crash.
//!
//! Invariants:
//! - the engine is the only writer of a timeline, and appends with optimistic concurrency;
//! - it never reads the wall clock, randomness or the environment for a decision except
//!   through a recorded event (the clock reading is the event's `at`);
//! - it knows nothing of HTTP or terminals: progress goes to an [`Observer`].

mod acceptance;
mod agent;
pub mod container;
mod driver;
mod engine;
pub mod gate;
pub mod inputs;
mod log;
mod model_call;
mod models;
pub mod people;
pub mod ports;
mod pr;
mod program;
pub mod protocol;
mod redact;
mod replay;
mod request_record;
pub mod tools;
mod worker;
pub mod workspaces;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use flightdeck_core::state::FoldError;
use flightdeck_core::template::TemplateError;
use flightdeck_core::{MissionStatus, StoredEvent};
use flightdeck_store::{ArtifactError, ArtifactStore, EventStore, StoreError};
use flightdeck_workspace::{GitError, WorkspaceError};

pub use container::{container_name, INSTALLATION_LABEL, MISSION_LABEL};
pub use driver::Applied;
pub use engine::{CreateMission, Engine, ForkMission, RepoFile};
pub use inputs::{Channel, Foreign, Refusal, Vote};
pub use log::load;
pub use models::{ModelSettings, ProviderKind, ProviderSettings};
pub use people::{Directory, Resolved};
pub use ports::Ports;
pub use pr::{render_pr_description, PrContext};
pub use redact::{Secrets, MIN_SECRET_LEN};
pub use replay::{normalize_output, ReplayMode, ReplayReport};
pub use worker::WorkerId;
pub use workspaces::{
    ContainerRuntime, DockerContainers, LiveWorkspaces, Provisioned, WorkspaceConfig,
    WorkspaceProvider,
};

/// Where time comes from. The engine reads it only to stamp events.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

/// The machine's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// Hears what the engine does, as it does it (the CLI prints progress from this).
pub trait Observer: Send + Sync {
    /// An event was appended.
    fn event(&self, _event: &StoredEvent) {}
    /// A command has been running for `elapsed`; called every few seconds.
    fn still_running(&self, _call_id: &str, _command: &str, _elapsed: Duration) {}
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;
impl Observer for Silent {}

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
    /// Team membership for approvals (`[teams]` of the installation config).
    pub teams: flightdeck_policy::Teams,
    /// The installation's people: every identity is resolved to one before a decision.
    pub people: Directory,
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
            teams: self.teams.clone(),
            people: self.people.clone(),
            models: self.models.clone(),
            sleeper: self.sleeper.clone(),
            secrets: self.secrets.clone(),
            workspace: self.workspace.clone(),
            ports: self.ports.clone(),
            projection: self.projection,
            shutdown: self.shutdown.clone(),
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
}

/// Timeout of a `run` step that sets none.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(3600);

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
                },
                secrets: Arc::new(ports::ConfiguredSecrets(parts.workspace.clone())),
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
            teams: parts.teams,
            people: parts.people,
            models: parts.models,
            sleeper: Arc::new(flightdeck_models::TokioSleeper),
            secrets: parts.secrets,
            workspace: parts.workspace,
            ports,
            projection: true,
            shutdown: parts.shutdown,
        }
    }
}

/// A shutdown signal that never fires (tools and tests that do not stop on signals): its
/// sender is gone, so it never changes.
pub fn no_shutdown() -> tokio::sync::watch::Receiver<Option<String>> {
    tokio::sync::watch::channel(None).1
}

/// What workspaces are given by the installation.
#[derive(Clone, Default)]
pub struct WorkspaceSettings {
    /// `[secrets.NAME]`: the value, or why it cannot be read (the variable is unset, the file
    /// is missing). A mission whose template names a secret that cannot be read fails before
    /// anything runs.
    pub secret_values: BTreeMap<String, Result<String, String>>,
    /// Files no command may read (secret files, the installation config).
    pub hidden_files: Vec<PathBuf>,
}

impl WorkspaceSettings {
    /// Secret `name`'s value, or why it cannot be had.
    pub fn secret(&self, name: &str) -> Result<&str, String> {
        match self.secret_values.get(name) {
            Some(Ok(value)) => Ok(value),
            Some(Err(why)) => Err(why.clone()),
            None => Err(format!("the installation config has no [secrets.{name}]")),
        }
    }
}

impl std::fmt::Debug for WorkspaceSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: values never reach a log.
        let names: Vec<&str> = self.secret_values.keys().map(String::as_str).collect();
        f.debug_struct("WorkspaceSettings")
            .field("secrets", &names)
            .field("hidden_files", &self.hidden_files)
            .finish()
    }
}

/// Why the engine could not do what was asked. A mission that fails is not an error: it is
/// an outcome (see the returned state's status).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("no mission `{0}`")]
    UnknownMission(String),
    #[error("mission id prefix `{prefix}` is ambiguous: {candidates}")]
    AmbiguousMission { prefix: String, candidates: String },
    #[error("mission {id} has already finished ({status})")]
    AlreadyFinished { id: String, status: MissionStatus },
    #[error("mission {id} is being driven by {owner} right now")]
    Busy { id: String, owner: String },
    #[error("mission {id} was changed by someone else while this process drove it")]
    Raced { id: String },
    #[error("mission {id} was stopped: {reason}")]
    Interrupted { id: String, reason: String },
    #[error("{0}")]
    Refused(String),
    #[error("mission {id}'s timeline is inconsistent: {source}")]
    Corrupt {
        id: String,
        #[source]
        source: FoldError,
    },
    #[error("{0}")]
    Unsupported(String),
    /// The repository's workspace definition (devcontainer.json) cannot be used.
    #[error("{0}")]
    WorkspaceDefinition(String),
    #[error("setup command {name} (`{command}`) failed: {why}")]
    SetupFailed {
        name: String,
        command: String,
        why: String,
    },
    #[error("{template}: secret `{name}` (in [workspace] secrets) cannot be read: {why}")]
    SecretMissing {
        template: String,
        name: String,
        why: String,
    },
    #[error("cannot fork: {0}")]
    BadFork(String),
    /// A replay stopped the engine (where the recording was interrupted, or diverged).
    #[error("replay: {0}")]
    ReplayStopped(String),
    /// A model the template names cannot be called as configured.
    #[error("{message}")]
    ModelConfig {
        message: String,
        hint: Option<String>,
    },
    #[error("cannot raise the budget of {id}: {reason}")]
    BadBudget { id: String, reason: String },
    #[error(transparent)]
    Policy(#[from] flightdeck_policy::PolicyError),
    #[error("no approval `{0}`")]
    UnknownApproval(String),
    #[error("{by} may not decide {id}: {reason}")]
    ApprovalRefused {
        id: String,
        by: String,
        reason: String,
    },
    #[error("{id} is already {status}; nothing to decide (mission {mission})")]
    ApprovalClosed {
        id: String,
        status: String,
        mission: String,
    },
    #[error("{0} is not a git repository")]
    NotARepo(String),
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    #[error(transparent)]
    Files(#[from] flightdeck_workspace::FileToolError),
    #[error("failed to encode {what}: {message}")]
    Encode { what: &'static str, message: String },
}
