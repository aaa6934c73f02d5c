//! Ports: every effect a mission has on the world, behind a trait.
//!
//! The driver decides; the ports act. Each port is handed an effect (a command and the
//! workspace to run it in, a file tool call, a commit to make, a workspace to provision) and
//! gives back its result; none sees the mission's state. Which implementation runs is
//! chosen once, where the engine is built: live ones here and in `workspaces.rs`; a replay's
//! in `replay.rs` (verify serves recorded results and executes nothing; re-execute runs the
//! calls again and compares).
//!
//! The clock ([`Clock`]) and the model providers ([`ModelPort`]) are ports too.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use flightdeck_core::{Digest, MissionState, StoredEvent};
use flightdeck_models::Provider;
use flightdeck_workspace::{CommandOutcome, CommandSpec, ConfinedFs, Workspace, Worktree};

use crate::error::EngineError;
use crate::tools::ToolInvocation;

/// Where a mission's repository is on this machine.
#[async_trait]
pub trait RepoPort: Send + Sync {
    /// The repository of the mission `created` describes: the recorded `repo` when this
    /// machine has it; else (a worker elsewhere) a fetch of the recorded `remote` at the
    /// base commit into this installation's cache.
    async fn locate(
        &self,
        created: &flightdeck_core::event::MissionCreated,
    ) -> Result<PathBuf, EngineError>;
}

/// The recorded repository, which must be on this machine (no fetching).
#[derive(Debug, Default, Clone, Copy)]
pub struct RecordedRepo;

#[async_trait]
impl RepoPort for RecordedRepo {
    async fn locate(
        &self,
        created: &flightdeck_core::event::MissionCreated,
    ) -> Result<PathBuf, EngineError> {
        let repo = PathBuf::from(&created.repo);
        if repo.exists() {
            return Ok(repo);
        }
        Err(EngineError::RepoNotHere {
            repo: created.repo.clone(),
            why: match &created.remote {
                Some(url) => format!("this process does not fetch repositories (from {url})"),
                None => "the mission was started from a checkout; missions a fleet's workers on other machines drive are started with --remote URL or a [repos.NAME]".to_string(),
            },
        })
    }
}

/// Runs a command of a mission in its workspace.
#[async_trait]
pub trait CommandPort: Send + Sync {
    /// Runs `spec` as call `call_id` in `workspace` (whose worktree is `worktree`). The
    /// returned future may be dropped: that kills the command.
    async fn run(
        &self,
        call_id: &str,
        workspace: &dyn Workspace,
        worktree: &Worktree,
        spec: &CommandSpec,
    ) -> Result<CommandOutcome, EngineError>;
}

/// How a file tool call went: what is recorded (and, cut, what the model sees).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOutcome {
    pub ok: bool,
    pub text: String,
    pub duration_ms: u64,
}

/// Runs an agent's file tools (`read_file`, `write_file`, `edit_file`, `list_files`,
/// `search`) inside the worktree.
pub trait FilePort: Send + Sync {
    fn run(
        &self,
        call_id: &str,
        fs: &ConfinedFs,
        worktree: &Worktree,
        invocation: &ToolInvocation,
    ) -> Result<FileOutcome, EngineError>;

    /// How long a call the driver answered itself (`read_output`) took: as measured (a
    /// replay: as recorded, since results are reproduced, not timings).
    fn duration_ms(&self, _call_id: &str, measured: Duration) -> u64 {
        millis(measured)
    }
}

/// What publishing commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The tree to commit (the worktree's, as judged by the publish gate).
    pub tree: String,
    pub branch: String,
    pub message: String,
    /// The commit's author and committer date, seconds since the epoch (recorded before
    /// anything is written, so a resumed publish makes the same commit).
    pub date_s: i64,
}

/// The published commit and its patch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub commit: String,
    /// The patch's bytes, or (a replay) the recorded patch's digest.
    pub patch: PatchBytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchBytes {
    Bytes(Vec<u8>),
    Recorded(Digest),
}

/// Writes a mission's change where people can take it: a commit on the mission branch and
/// its patch (next, a pull request).
#[async_trait]
pub trait Publisher: Send + Sync {
    async fn commit(&self, worktree: &Worktree, commit: &Commit) -> Result<Committed, EngineError>;
}

/// What a mission from GitHub proposes before its publish gate: the commit on the mission's
/// local branch, pushed to the repository, and a draft pull request for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub origin: flightdeck_core::event::GitHubOrigin,
    /// The mission's id (`flightdeck/<mission>` is the branch pushed, unless the origin names
    /// a follow-up's branch).
    pub mission: String,
    /// The URL the mission's repository was fetched from (`mission.created.remote`).
    pub remote: Option<String>,
    /// The commit to push (on the mission's local branch).
    pub commit: String,
    pub tree: String,
    /// The head this mission proposed before (a resume proposing a new tree): the only
    /// head a follow-up may replace on the branch people review.
    pub previous_head: Option<String>,
    /// The pull request's title and body (the PR description so far).
    pub title: String,
    pub body: String,
}

/// Where a mission's change is proposed for review before it is published (GitHub).
#[async_trait]
pub trait Forge: Send + Sync {
    /// Pushes the commit and opens a draft pull request, or finds the one already open for
    /// the branch (a resume proposes again): idempotent.
    async fn propose(
        &self,
        worktree: &Worktree,
        proposal: &Proposal,
    ) -> Result<flightdeck_core::event::ChangeProposed, EngineError>;
}

/// No forge configured: a mission from GitHub cannot publish on this process.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoForge;

#[async_trait]
impl Forge for NoForge {
    async fn propose(
        &self,
        _worktree: &Worktree,
        proposal: &Proposal,
    ) -> Result<flightdeck_core::event::ChangeProposed, EngineError> {
        Err(EngineError::Forge(format!(
            "mission {} came from GitHub ({}), but this process has no [github] in its config, so it cannot push the change or open its pull request",
            proposal.mission, proposal.origin.repository
        )))
    }
}

/// The installation's secrets, for the commands allowed to have them.
pub trait SecretPort: Send + Sync {
    /// `NAME=value` of the named secrets. A secret that became unreadable since the mission
    /// was created stops the mission.
    fn env(&self, names: &[String]) -> Result<Vec<(String, String)>, EngineError>;

    /// Logins to container registries among the named secrets (`[secrets.NAME] registry`):
    /// registry (`host` or `host:port`) → (username, password). Used to fetch devcontainer
    /// features; an unreadable one is left out (the fetch then says the registry wants one).
    fn registry_logins(&self, _names: &[String]) -> BTreeMap<String, (String, String)> {
        BTreeMap::new()
    }
}

/// Turns the providers the configuration describes into what a mission calls.
pub trait ModelPort: Send + Sync {
    /// The provider a mission calls for `model` (a live provider as built; a replay's serves
    /// the recorded answers through it).
    fn provider(&self, model: &str, built: Arc<dyn Provider>) -> Arc<dyn Provider>;

    /// Whether remote providers need their API keys (a replay sends nothing).
    fn needs_keys(&self) -> bool {
        true
    }
}

/// Commands run for real.
#[derive(Debug, Default, Clone, Copy)]
pub struct LiveCommands;

#[async_trait]
impl CommandPort for LiveCommands {
    async fn run(
        &self,
        _call_id: &str,
        workspace: &dyn Workspace,
        _worktree: &Worktree,
        spec: &CommandSpec,
    ) -> Result<CommandOutcome, EngineError> {
        Ok(workspace.exec(spec).await?)
    }
}

/// File tools run for real.
#[derive(Debug, Default, Clone, Copy)]
pub struct LiveFiles;

impl FilePort for LiveFiles {
    fn run(
        &self,
        _call_id: &str,
        fs: &ConfinedFs,
        _worktree: &Worktree,
        invocation: &ToolInvocation,
    ) -> Result<FileOutcome, EngineError> {
        let started = Instant::now();
        let (ok, text) = crate::tools::file_tool(fs, invocation);
        Ok(FileOutcome {
            ok,
            text,
            duration_ms: millis(started.elapsed()),
        })
    }
}

/// Commits to the mission branch in the repository, with the real git.
#[derive(Debug, Default, Clone, Copy)]
pub struct GitPublisher;

#[async_trait]
impl Publisher for GitPublisher {
    async fn commit(&self, worktree: &Worktree, commit: &Commit) -> Result<Committed, EngineError> {
        let id = worktree.commit_to_branch(
            &commit.tree,
            &commit.branch,
            &commit.message,
            commit.date_s,
        )?;
        let patch = worktree.format_patch(&id)?;
        Ok(Committed {
            commit: id,
            patch: PatchBytes::Bytes(patch.into_bytes()),
        })
    }
}

/// The secrets of the installation config.
#[derive(Debug, Clone)]
pub struct ConfiguredSecrets(pub WorkspaceSettings);

impl SecretPort for ConfiguredSecrets {
    fn env(&self, names: &[String]) -> Result<Vec<(String, String)>, EngineError> {
        names
            .iter()
            .map(|name| match self.0.secret(name) {
                Ok(value) => Ok((name.clone(), value.to_string())),
                Err(why) => Err(EngineError::SecretMissing {
                    template: "the mission's template".into(),
                    name: name.clone(),
                    why,
                }),
            })
            .collect()
    }

    fn registry_logins(&self, names: &[String]) -> BTreeMap<String, (String, String)> {
        names
            .iter()
            .filter_map(|name| {
                let login = self.0.registry_logins.get(name)?;
                let password = self.0.secret(name).ok()?;
                Some((
                    login.registry.clone(),
                    (login.username.clone(), password.to_string()),
                ))
            })
            .collect()
    }
}

/// Providers as configured.
#[derive(Debug, Default, Clone, Copy)]
pub struct LiveModels;

impl ModelPort for LiveModels {
    fn provider(&self, _model: &str, built: Arc<dyn Provider>) -> Arc<dyn Provider> {
        built
    }
}

pub(crate) fn millis(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
}

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
    /// A driver opened mission `state.id` (lease taken, timeline read; `state.events` is the
    /// head): what it appends until `segment_closed` is one driven segment.
    fn segment_opened(&self, _state: &MissionState) {}
    /// The driver of `state.id` closed (the mission parked, ended, stopped, or was lost):
    /// the segment is over.
    fn segment_closed(&self, _state: &MissionState) {}
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;
impl Observer for Silent {}

/// What workspaces are given by the installation.
#[derive(Clone, Default)]
pub struct WorkspaceSettings {
    /// `[secrets.NAME]`: the value, or why it cannot be read (the variable is unset, the file
    /// is missing). A mission whose template names a secret that cannot be read fails before
    /// anything runs.
    pub secret_values: BTreeMap<String, Result<String, String>>,
    /// Files no command may read (secret files, the installation config, the store, the
    /// signing key).
    pub hidden_files: Vec<PathBuf>,
    /// Whether templates may run commands outside the sandbox (`runtime =
    /// "local-unsandboxed"`): the installation's decision (`[workspace] allow_unsandboxed`
    /// in config.toml), never the repository's.
    pub allow_unsandboxed: bool,
    /// Secrets that are logins to a container registry (`[secrets.NAME] registry`,
    /// `username`), by secret name.
    pub registry_logins: BTreeMap<String, RegistryLogin>,
}

/// `[secrets.NAME] registry = "ghcr.io"`, `username = "…"`: the secret's value is the password
/// or token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryLogin {
    pub registry: String,
    pub username: String,
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
