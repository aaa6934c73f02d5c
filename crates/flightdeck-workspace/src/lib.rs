//! Where a mission's commands run: a git worktree of the base commit, and a runtime that runs
//! commands in it (bubblewrap sandbox by default; containers arrive with the docker runtime).
//!
//! The engine talks to [`Workspace`]; the git side of a worktree (snapshots, restore, diff,
//! commit, patch) is [`Worktree`], run on the host, never inside the sandbox. The agent's
//! built-in file tools go through [`ConfinedFs`], which keeps them inside the worktree.

pub mod caches;
pub mod compose;
pub mod devcontainer;
pub mod docker;
mod exec;
pub mod features;
mod files;
mod git;
mod limits;
mod local;
mod network;
pub mod redact;
mod server;
pub mod toolchain;

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;

pub use exec::{CommandOutcome, MAX_CAPTURED_OUTPUT};
pub use files::{
    Access, ConfinedFs, EntryKind, FileRead, FileToolError, FileWritten, ListEntry, Listing,
    SearchMatch, SearchResult, BINARY_PROBE_BYTES, MAX_EDIT_BYTES, MAX_LINE_CHARS,
    MAX_SEARCH_FILE_BYTES,
};
pub use git::{
    diff_in_objects, list_at_commit, origin_url, read_at_commit, repo_root, resolve_commit,
    DiffFile, GitError, SnapshotStore, Worktree,
};
pub use limits::{Cgroups, Limits, DEFAULT_MAX_PROCESSES, DEFAULT_MEMORY_MB};
pub use local::{
    hand_over, sandbox_owner, LocalWorkspace, Owner, Sandbox, SandboxLayout, HOME_TOOLCHAIN_DIRS,
    SANDBOX_GID, SANDBOX_UID,
};
pub use server::{serve_if_asked, SERVER_ARG};

/// One command to run in a workspace.
#[derive(Clone, PartialEq, Eq)]
pub struct CommandSpec {
    /// Run by `sh -c`.
    pub command: String,
    pub timeout: Duration,
    /// Variables set on top of the allowlisted environment.
    pub env: Vec<(String, String)>,
    /// Whether the command may reach the network.
    pub network: bool,
    /// Whether the command runs only code the repository and the template brought (no agent
    /// has changed the worktree yet): only such commands may write the shared caches.
    pub trusted: bool,
    /// Whether the command gets a throwaway HOME that no later command sees (a step given
    /// secrets: what it writes under HOME could carry them to the next step).
    pub private_home: bool,
}

impl std::fmt::Debug for CommandSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Variable names only: `env` carries secrets.
        let names: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("CommandSpec")
            .field("command", &self.command)
            .field("timeout", &self.timeout)
            .field("env", &names)
            .field("network", &self.network)
            .field("trusted", &self.trusted)
            .field("private_home", &self.private_home)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkspaceError {
    #[error("bubblewrap (`bwrap`) is not installed, so commands cannot be sandboxed")]
    SandboxMissing,
    #[error("slirp4netns is not installed, so a sandboxed command cannot have the network (network = \"on\") without sharing the host's\nhint: install it (Debian/Ubuntu: `apt-get install slirp4netns`)")]
    NetworkHelperMissing,
    #[error("failed to start `{program}`: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("io error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("cannot set the workspace's limits: {0}")]
    Limits(String),
    #[error(transparent)]
    Container(#[from] docker::DockerError),
}

/// A place where a mission's commands run.
#[async_trait]
pub trait Workspace: Send + Sync {
    /// The worktree on the host.
    fn root(&self) -> &Path;
    /// `local`, `local-unsandboxed`, `docker`.
    fn runtime(&self) -> &'static str;
    /// How commands are isolated, for the timeline (`bubblewrap`, `none`).
    fn sandbox(&self) -> &'static str;
    /// Who must own what flightdeck writes into the worktree on the host (restored files,
    /// the file tools' writes) so that commands can change it: `None` when commands run as
    /// flightdeck's own user.
    fn file_owner(&self) -> Option<Owner> {
        None
    }
    /// Runs a command to completion or timeout. A non-zero exit is an outcome, not an error.
    async fn exec(&self, spec: &CommandSpec) -> Result<CommandOutcome, WorkspaceError>;
}

/// Environment variables a command inherits from flightdeck's own environment; everything
/// else (API keys, tokens, cloud credentials) stays outside.
pub const ENV_ALLOWLIST: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TERM",
    "TZ",
    "CARGO_HOME",
    "RUSTUP_HOME",
    "RUSTUP_TOOLCHAIN",
    "GOPATH",
    "GOROOT",
    "GOCACHE",
    "JAVA_HOME",
    "PYENV_ROOT",
    "NVM_DIR",
];

/// Reads a file of a repository that flightdeck itself interprets on the host (a pin file, a
/// lockfile): `None` when it does not exist; an error when it is a symlink (it could lead
/// out of the worktree, to a credential or a FIFO), not a regular file, or over `max` bytes.
pub(crate) fn read_repo_file(path: &Path, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if !metadata.file_type().is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "it is a symlink or not a regular file; flightdeck reads only regular files here",
        ));
    }
    if metadata.len() > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("it is larger than {max} bytes"),
        ));
    }
    std::fs::read(path).map(Some)
}

/// Clears the setuid and setgid bits of every file under `dir` (symlinks are not followed):
/// a file a container's root made setuid in a bind-mounted worktree is a setuid-root program
/// on the host. Each file is opened without following a symlink and changed through its
/// descriptor, so a name swapped for a symlink meanwhile cannot redirect the change.
pub fn strip_set_id_bits(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            strip_set_id_bits(&entry.path())?;
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
            .open(entry.path())
        {
            Ok(file) => file,
            // Swapped for a symlink, or gone: nothing of ours to change.
            Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            // Not ours to read, hence not ours to have made setuid.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => continue,
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        let mode = meta.permissions().mode();
        if meta.is_file() && mode & 0o6000 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(mode & !0o6000))?;
        }
    }
    Ok(())
}

/// An argument vector as one `sh -c` line, each argument quoted unless it is plainly safe.
pub fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
