//! The local runtime: commands run in the worktree on this machine, inside bubblewrap unless
//! the template explicitly asks for `local-unsandboxed`.
//!
//! The sandbox: the system read-only; the worktree, the mission's own HOME and its caches the
//! only writable places besides a private `/tmp`; the host's homes, `/run` (sockets: docker,
//! dbus), flightdeck's data directory and secret files covered; toolchains that live in the
//! host's home (rustup, pyenv, nvm, mise…) bound back read-only so builds still work; new
//! namespaces (no network unless allowed), no capabilities, killed with us, a new session, a
//! cleared environment, and per-command cgroup limits where the host allows.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::caches::Cache;
use crate::exec::{run, CommandOutcome};
use crate::limits::{Cgroups, Limits, JOIN_PROLOGUE};
use crate::{CommandSpec, Workspace, WorkspaceError, ENV_ALLOWLIST};

/// How commands are isolated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sandbox {
    /// bubblewrap at this path.
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

/// Toolchain directories under a user's home, bound back read-only into the sandbox after the
/// home itself is hidden: the compilers and interpreters, never credentials (`.cargo/
/// credentials.toml`, `.npmrc`, `.ssh`, `.aws`, `.config/gh` stay hidden).
pub const HOME_TOOLCHAIN_DIRS: &[&str] = &[
    ".cargo/bin",
    ".rustup",
    ".pyenv",
    ".nvm",
    ".volta",
    ".asdf",
    ".local/share/mise",
    ".local/bin",
    ".sdkman",
    "go",
    "sdk",
];

/// Variables that point tools at toolchains in the host's home; kept pointing there (read-only)
/// while HOME moves to the mission's own.
const TOOLCHAIN_HOME_VARS: &[(&str, &str)] = &[
    ("RUSTUP_HOME", ".rustup"),
    ("PYENV_ROOT", ".pyenv"),
    ("NVM_DIR", ".nvm"),
    ("VOLTA_HOME", ".volta"),
    ("ASDF_DATA_DIR", ".asdf"),
];

/// What a sandboxed command sees of the host, beyond the read-only system.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxLayout {
    /// Directories covered by an empty tmpfs.
    pub hidden_dirs: Vec<PathBuf>,
    /// Files covered by `/dev/null`.
    pub hidden_files: Vec<PathBuf>,
    /// Directories bound back read-only after hiding (toolchains, the repository's `.git`).
    pub read_only: Vec<PathBuf>,
    /// Files covered by an empty file after the read-only binds (`.git/config`, which may
    /// hold credentials in remote URLs or headers).
    pub masked: Vec<PathBuf>,
    /// The empty regular file hidden files are covered with (a device node such as
    /// `/dev/null` cannot be read through bubblewrap's `nodev` binds).
    pub empty_file: PathBuf,
    /// `(host, inside)` directories bound read-write: the mission's HOME and its caches.
    pub writable: Vec<(PathBuf, PathBuf)>,
    /// Variables set for every command (HOME, CARGO_HOME, cache variables…), over the
    /// allowlisted environment.
    pub env: Vec<(String, String)>,
}

impl SandboxLayout {
    /// The layout for a mission on this host: `home` is the mission's own HOME (created here),
    /// `data_dir` flightdeck's data directory, `secret_files` files that must stay unreadable
    /// (secret files, the config), `caches` the mission's caches.
    pub fn for_mission(
        home: &Path,
        data_dir: &Path,
        repo: Option<&Path>,
        secret_files: &[PathBuf],
        caches: &[Cache],
    ) -> Result<SandboxLayout, WorkspaceError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| WorkspaceError::Io { path, source }
        };
        std::fs::create_dir_all(home).map_err(io(home))?;
        let empty_file = home.parent().unwrap_or(home).join(".flightdeck-empty");
        if !empty_file.is_file() {
            std::fs::write(&empty_file, b"").map_err(io(&empty_file))?;
        }
        let host_home = std::env::var_os("HOME").map(PathBuf::from);
        let mut layout = SandboxLayout {
            empty_file,
            ..SandboxLayout::default()
        };
        // bubblewrap mounts on the real path: `/var/run` is usually a link to `/run`.
        let mut hide_dir = |dir: PathBuf| {
            let Ok(dir) = std::fs::canonicalize(&dir) else {
                return;
            };
            if dir.is_dir() && !layout.hidden_dirs.contains(&dir) && dir != Path::new("/") {
                layout.hidden_dirs.push(dir);
            }
        };
        hide_dir(PathBuf::from("/home"));
        hide_dir(PathBuf::from("/root"));
        if let Some(h) = &host_home {
            hide_dir(h.clone());
        }
        hide_dir(PathBuf::from("/run"));
        hide_dir(PathBuf::from("/var/run"));
        if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") {
            hide_dir(PathBuf::from(dir));
        }
        // A container engine's socket is root on the host.
        if let Some(socket) = std::env::var("DOCKER_HOST")
            .ok()
            .map(|h| PathBuf::from(h.strip_prefix("unix://").unwrap_or(&h)))
            .filter(|p| p.is_absolute())
        {
            if let Some(dir) = socket.parent() {
                hide_dir(dir.to_path_buf());
            }
        }
        hide_dir(data_dir.to_path_buf());
        hide_dir(PathBuf::from("/etc/ssh"));
        // The checkout the mission was started from: untracked files there (`.env`) are not
        // the mission's. Its `.git` comes back read-only (git in the worktree needs the
        // objects), without its config.
        let repo = repo.and_then(|r| std::fs::canonicalize(r).ok());
        if let Some(repo) = &repo {
            hide_dir(repo.clone());
        }
        for file in ["/etc/shadow", "/etc/gshadow", "/etc/sudoers"]
            .iter()
            .map(PathBuf::from)
            .chain(secret_files.iter().cloned())
        {
            let covered = layout.hidden_dirs.iter().any(|d| file.starts_with(d));
            if file.is_file() && !covered && !layout.hidden_files.contains(&file) {
                layout.hidden_files.push(file);
            }
        }
        if let Some(git) = repo.map(|r| r.join(".git")).filter(|g| g.is_dir()) {
            let config = git.join("config");
            layout.read_only.push(git);
            if config.is_file() {
                layout.masked.push(config);
            }
        }
        if let Some(h) = &host_home {
            for dir in HOME_TOOLCHAIN_DIRS {
                let dir = h.join(dir);
                if dir.is_dir() {
                    layout.read_only.push(dir);
                }
            }
            for (var, default) in TOOLCHAIN_HOME_VARS {
                let value = std::env::var_os(var)
                    .map(PathBuf::from)
                    .unwrap_or_else(|| h.join(default));
                if value.is_dir() {
                    layout
                        .env
                        .push((var.to_string(), value.display().to_string()));
                }
            }
        }
        layout
            .writable
            .push((home.to_path_buf(), home.to_path_buf()));
        let cargo_home = home.join(".cargo");
        std::fs::create_dir_all(&cargo_home).map_err(io(&cargo_home))?;
        layout.env.push(("HOME".into(), home.display().to_string()));
        layout
            .env
            .push(("CARGO_HOME".into(), cargo_home.display().to_string()));
        for cache in caches {
            let inside = home.join(cache.home_dir);
            // The mount point, made on the host so bubblewrap need not create it.
            std::fs::create_dir_all(&inside).map_err(io(&inside))?;
            layout
                .writable
                .push((cache.host_dir.clone(), inside.clone()));
            if !cache.variable.is_empty() {
                layout
                    .env
                    .push((cache.variable.to_string(), inside.display().to_string()));
            }
        }
        Ok(layout)
    }
}

/// A worktree on this machine and the sandbox its commands run in.
#[derive(Debug, Clone)]
pub struct LocalWorkspace {
    root: PathBuf,
    sandbox: Sandbox,
    layout: SandboxLayout,
    limits: Limits,
    cgroups: Cgroups,
}

impl LocalWorkspace {
    pub fn new(root: PathBuf, sandbox: Sandbox) -> LocalWorkspace {
        LocalWorkspace {
            root,
            sandbox,
            layout: SandboxLayout::default(),
            limits: Limits::default(),
            cgroups: Cgroups::Unavailable("no limits asked for".into()),
        }
    }

    /// What commands see of the host (bubblewrap), and the variables they get (both).
    pub fn with_layout(mut self, layout: SandboxLayout) -> LocalWorkspace {
        self.layout = layout;
        self
    }

    /// Memory and process limits for every command, enforced through `cgroups`.
    pub fn with_limits(mut self, limits: Limits, cgroups: Cgroups) -> LocalWorkspace {
        self.limits = limits;
        self.cgroups = cgroups;
        self
    }

    /// How limits are enforced: `cgroup2`, `cgroup1`, or `none: <why>`.
    pub fn limits_enforcement(&self) -> String {
        if self.limits.is_empty() {
            return "none: no limits asked for".into();
        }
        self.cgroups.describe()
    }

    fn bubblewrap_args(&self, spec: &CommandSpec) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = Vec::new();
        let mut push = |items: &[&std::ffi::OsStr]| args.extend(items.iter().map(|s| s.into()));
        use std::ffi::OsStr;
        let s = OsStr::new;
        push(&[s("--ro-bind"), s("/"), s("/")]);
        push(&[s("--dev"), s("/dev"), s("--proc"), s("/proc")]);
        push(&[s("--tmpfs"), s("/tmp")]);
        for dir in &self.layout.hidden_dirs {
            push(&[s("--tmpfs"), dir.as_os_str()]);
        }
        let empty = self.layout.empty_file.as_os_str();
        for file in &self.layout.hidden_files {
            push(&[s("--ro-bind"), empty, file.as_os_str()]);
        }
        for dir in &self.layout.read_only {
            push(&[s("--ro-bind"), dir.as_os_str(), dir.as_os_str()]);
        }
        for file in &self.layout.masked {
            push(&[s("--ro-bind"), empty, file.as_os_str()]);
        }
        for (host, inside) in &self.layout.writable {
            push(&[s("--bind"), host.as_os_str(), inside.as_os_str()]);
        }
        let root = self.root.as_os_str();
        push(&[s("--bind"), root, root]);
        push(&[s("--unshare-all")]);
        if spec.network {
            push(&[s("--share-net")]);
        }
        push(&[
            s("--cap-drop"),
            s("ALL"),
            s("--die-with-parent"),
            s("--new-session"),
            s("--chdir"),
            root,
            s("--"),
            s("sh"),
            s("-c"),
            s(&spec.command),
        ]);
        args
    }

    fn command_for(
        &self,
        spec: &CommandSpec,
        join: &[PathBuf],
    ) -> (tokio::process::Command, String) {
        let (program, args): (PathBuf, Vec<std::ffi::OsString>) = match &self.sandbox {
            Sandbox::Bubblewrap(bwrap) => (bwrap.clone(), self.bubblewrap_args(spec)),
            Sandbox::None => (
                PathBuf::from("sh"),
                vec!["-c".into(), spec.command.clone().into()],
            ),
        };
        let mut command = if join.is_empty() {
            let mut c = tokio::process::Command::new(&program);
            c.args(&args);
            c
        } else {
            // Join the cgroups first, then become the sandbox: nothing runs outside them.
            let mut c = tokio::process::Command::new("sh");
            c.arg("-c")
                .arg(JOIN_PROLOGUE)
                .arg("sh")
                .arg(join.len().to_string())
                .args(join)
                .arg(&program)
                .args(&args);
            c
        };
        if matches!(self.sandbox, Sandbox::None) {
            command.current_dir(&self.root);
        }
        command.env_clear();
        for name in ENV_ALLOWLIST {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        command.envs(
            self.layout
                .env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        command.envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        (command, program.display().to_string())
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
        let group = self
            .cgroups
            .group_for(&self.limits)
            .map_err(WorkspaceError::Limits)?;
        let join = group.as_ref().map(|g| g.procs_files()).unwrap_or_default();
        let (command, program) = self.command_for(spec, &join);
        // The command leads no group of its own: `run` puts it in one that is killed as a
        // whole when it ends, times out, is dropped, or when flightdeck dies. In the sandbox
        // the PID namespace dies with bubblewrap as well.
        let mut outcome = run(command, &program, spec.timeout).await?;
        if let Some(hit) = group.as_ref().and_then(|g| g.limit_hit()) {
            outcome
                .output
                .extend_from_slice(format!("\n[flightdeck: {hit}]\n").as_bytes());
            outcome.limit_hit = Some(hit);
        }
        Ok(outcome)
    }
}
