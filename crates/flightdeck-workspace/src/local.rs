//! The local runtime: commands run in the worktree on this machine, inside bubblewrap unless
//! the template explicitly asks for `local-unsandboxed`.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::exec::{run, CommandOutcome};
use crate::{CommandSpec, Workspace, WorkspaceError, ENV_ALLOWLIST};

/// How commands are isolated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sandbox {
    /// bubblewrap at this path: read-only system, the worktree the only writable place
    /// besides a private `/tmp`, new namespaces (no network unless allowed), killed with us.
    Bubblewrap(PathBuf),
    /// No isolation: only by an explicit `runtime = "local-unsandboxed"`, and recorded.
    None,
}

impl Sandbox {
    /// bubblewrap from `PATH`, or [`WorkspaceError::SandboxMissing`].
    pub fn bubblewrap() -> Result<Sandbox, WorkspaceError> {
        find_in_path("bwrap")
            .map(Sandbox::Bubblewrap)
            .ok_or(WorkspaceError::SandboxMissing)
    }
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            use std::os::unix::fs::PermissionsExt;
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// A worktree on this machine and the sandbox its commands run in.
#[derive(Debug, Clone)]
pub struct LocalWorkspace {
    root: PathBuf,
    sandbox: Sandbox,
    /// Directories the sandbox covers with an empty tmpfs (the worktree itself stays
    /// visible inside them): flightdeck's data directory, so a command cannot read other
    /// missions' worktrees, artifacts or the event store.
    hidden: Vec<PathBuf>,
}

impl LocalWorkspace {
    pub fn new(root: PathBuf, sandbox: Sandbox) -> LocalWorkspace {
        LocalWorkspace {
            root,
            sandbox,
            hidden: Vec::new(),
        }
    }

    /// Hides `dirs` from sandboxed commands (bubblewrap only).
    pub fn hiding(mut self, dirs: Vec<PathBuf>) -> LocalWorkspace {
        self.hidden = dirs;
        self
    }

    fn command_for(&self, spec: &CommandSpec) -> (tokio::process::Command, String) {
        let (mut command, program) = match &self.sandbox {
            Sandbox::Bubblewrap(bwrap) => {
                let mut c = tokio::process::Command::new(bwrap);
                let root = self.root.as_os_str();
                c.args([
                    "--ro-bind",
                    "/",
                    "/",
                    "--dev",
                    "/dev",
                    "--proc",
                    "/proc",
                    "--tmpfs",
                    "/tmp",
                ]);
                for dir in &self.hidden {
                    if dir.is_dir() {
                        c.arg("--tmpfs").arg(dir);
                    }
                }
                c.arg("--bind").arg(root).arg(root).arg("--unshare-all");
                if spec.network {
                    c.arg("--share-net");
                }
                c.args(["--die-with-parent", "--new-session", "--chdir"])
                    .arg(root)
                    .args(["--", "sh", "-c", &spec.command]);
                (c, bwrap.display().to_string())
            }
            Sandbox::None => {
                let mut c = tokio::process::Command::new("sh");
                c.args(["-c", &spec.command])
                    .current_dir(&self.root)
                    .process_group(0);
                (c, "sh".to_string())
            }
        };
        command.env_clear();
        for name in ENV_ALLOWLIST {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        command.envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        (command, program)
    }
}

#[async_trait]
impl Workspace for LocalWorkspace {
    fn root(&self) -> &Path {
        &self.root
    }

    fn runtime(&self) -> &'static str {
        match self.sandbox {
            Sandbox::Bubblewrap(_) => "local",
            Sandbox::None => "local-unsandboxed",
        }
    }

    fn sandbox(&self) -> &'static str {
        match self.sandbox {
            Sandbox::Bubblewrap(_) => "bubblewrap",
            Sandbox::None => "none",
        }
    }

    async fn exec(&self, spec: &CommandSpec) -> Result<CommandOutcome, WorkspaceError> {
        let (command, program) = self.command_for(spec);
        let sandboxed = matches!(self.sandbox, Sandbox::Bubblewrap(_));
        run(command, &program, spec.timeout, move |pid| {
            // In the sandbox the PID namespace dies with bubblewrap; outside it, the command
            // leads its own process group, which is ended as a whole.
            if !sandboxed {
                if let Ok(pid) = i32::try_from(pid) {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        })
        .await
    }
}
