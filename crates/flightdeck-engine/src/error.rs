//! The engine's one error type.

use flightdeck_core::state::FoldError;
use flightdeck_core::template::TemplateError;
use flightdeck_core::MissionStatus;
use flightdeck_store::{ArtifactError, StoreError};
use flightdeck_workspace::{GitError, WorkspaceError};

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
    /// Proposing a change on GitHub failed (the push, the pull request), or cannot be done
    /// here.
    #[error("{0}")]
    Forge(String),
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
    /// A worker on a machine without the mission's repository, and nowhere to fetch it.
    #[error("the mission's repository {repo} is not on this machine: {why}")]
    RepoNotHere { repo: String, why: String },
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The head could not be anchored (the events before it are stored).
    #[error(transparent)]
    Anchor(#[from] flightdeck_store::AnchorError),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    #[error(transparent)]
    Files(#[from] flightdeck_workspace::FileToolError),
    #[error("failed to encode {what}: {message}")]
    Encode { what: &'static str, message: String },
}
