//! The local runtime: commands run in the worktree on this machine, inside bubblewrap unless
//! the installation allows and the template asks for `local-unsandboxed`.
//!
//! The sandbox is an allow-list built in an empty root: the system directories, toolchains and
//! the repository's `.git` read-only; the worktree, the mission's own HOME (or a throwaway one
//! for a step given secrets) and its caches (writable only by trusted commands); a private
//! `/tmp`. Protected paths inside anything bound (the store, the config, secret files, the
//! signing key, git configs) are covered. New namespaces (a network of its own, joined to the
//! outside by slirp4netns when allowed), no capabilities, `nobody` when flightdeck is root,
//! killed with us, a new session, a cleared environment, and the workspace's cgroup joined
//! before exec.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;

use crate::caches::Cache;
use crate::exec::{run, CommandOutcome};
use crate::limits::{Cgroups, Limits, WorkspaceGroup};
use crate::network::NetworkPlumbing;
use crate::server::{Ran, Server};
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

pub(crate) fn find_in_path(program: &str) -> Option<PathBuf> {
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

/// The uid and gid sandboxed commands run as on the host when flightdeck runs as root:
/// `nobody`, so root-only files and root-owned sockets stay out of reach.
pub const SANDBOX_UID: u32 = 65534;
pub const SANDBOX_GID: u32 = 65534;

/// Who owns the files sandboxed commands write, when that is not flightdeck's own user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// The owner sandboxed commands run as: `nobody` when flightdeck runs as root, else `None`
/// (commands run as flightdeck's own user, who owns nothing more than flightdeck does).
pub fn sandbox_owner() -> Option<Owner> {
    nix::unistd::geteuid().is_root().then_some(Owner {
        uid: SANDBOX_UID,
        gid: SANDBOX_GID,
    })
}

/// Gives `path` and everything under it (symlinks themselves, never what they point to) to
/// `owner`, so that the sandbox's user can change what flightdeck wrote on the host. Entries
/// already owned are only looked at.
pub fn hand_over(path: &Path, owner: Owner) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path)?;
    if meta.uid() != owner.uid || meta.gid() != owner.gid {
        std::os::unix::fs::lchown(path, Some(owner.uid), Some(owner.gid))?;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            hand_over(&entry?.path(), owner)?;
        }
    }
    Ok(())
}

/// System directories bound read-only into every sandbox (those this host has); a symlink
/// among them (`/bin -> usr/bin` on merged-/usr systems) is made again as a symlink.
const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/nix",
];

/// Files and directories of the system that stay hidden although their directory is bound.
const SYSTEM_SECRETS: &[&str] = &[
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/ssh",
    "/etc/ssl/private",
    "/etc/flightdeck",
];

/// What a sandboxed command sees of the host: an allow-list. Nothing is there unless named
/// here: the system directories, toolchains, the repository's objects (read-only), the
/// worktree, the mission's HOME and caches; protected files that lie inside one of those
/// (secrets, the store, the config, git configs) are covered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxLayout {
    /// Directories bound read-only where they are (toolchains, the repository's `.git`),
    /// besides the system directories every sandbox gets.
    pub read_only: Vec<PathBuf>,
    /// Paths covered although their directory is bound: directories by an empty tmpfs,
    /// files by an empty file (the store, the config, secret files, `.git` configs).
    pub protected: Vec<PathBuf>,
    /// The empty regular file hidden files are covered with (a device node such as
    /// `/dev/null` cannot be read through bubblewrap's `nodev` binds).
    pub empty_file: PathBuf,
    /// The mission's HOME, bound read-write where it is (a step with secrets gets a
    /// throwaway one in its place).
    pub home: Option<PathBuf>,
    /// `(host, inside)` caches: read-write for trusted commands, read-only for the others
    /// (see [`CommandSpec::trusted`]).
    pub caches: Vec<(PathBuf, PathBuf)>,
    /// Variables set for every command (HOME, CARGO_HOME, cache variables…), over the
    /// allowlisted environment.
    pub env: Vec<(String, String)>,
}

/// The parts of the host every sandbox gets, found once.
#[derive(Debug)]
struct System {
    /// `(target, link)`.
    symlinks: Vec<(PathBuf, PathBuf)>,
    dirs: Vec<PathBuf>,
    /// Existing secrets under `dirs`.
    secrets: Vec<PathBuf>,
}

fn system() -> &'static System {
    static SYSTEM: std::sync::OnceLock<System> = std::sync::OnceLock::new();
    SYSTEM.get_or_init(|| {
        let mut system = System {
            symlinks: Vec::new(),
            dirs: Vec::new(),
            secrets: Vec::new(),
        };
        for dir in SYSTEM_DIRS.iter().map(PathBuf::from) {
            let Ok(meta) = std::fs::symlink_metadata(&dir) else {
                continue;
            };
            if meta.file_type().is_symlink() {
                if let Ok(target) = std::fs::read_link(&dir) {
                    system.symlinks.push((target, dir));
                }
            } else if meta.is_dir() {
                system.dirs.push(dir);
            }
        }
        system.secrets = SYSTEM_SECRETS
            .iter()
            .map(PathBuf::from)
            .filter(|p| std::fs::symlink_metadata(p).is_ok())
            .collect();
        system
    })
}

/// An empty file to cover secrets with when the layout names none (a workspace made without
/// [`SandboxLayout::for_mission`]): made once per process in a private temporary directory.
fn fallback_empty_file() -> &'static std::ffi::OsStr {
    static EMPTY: OnceLock<PathBuf> = OnceLock::new();
    EMPTY
        .get_or_init(|| {
            tempfile::Builder::new()
                .prefix("flightdeck-empty-")
                .tempfile()
                .ok()
                .and_then(|file| file.keep().ok())
                .map(|(_, path)| path)
                // Covering with a missing file makes bubblewrap fail: fail closed.
                .unwrap_or_else(|| PathBuf::from("/nonexistent/flightdeck-empty"))
        })
        .as_os_str()
}

/// Whether `path` is one of `dirs` or below one.
fn under_any(path: &Path, dirs: &[PathBuf]) -> bool {
    dirs.iter().any(|d| path.starts_with(d))
}

/// The configs of a git dir and of its submodules and worktrees: they may hold credentials in
/// remote URLs or headers, and commands that run code (`core.fsmonitor`, `core.sshCommand`).
fn git_configs(git_dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) {
        if depth > 6 {
            return;
        }
        for name in ["config", "config.worktree"] {
            let file = dir.join(name);
            if file.is_file() {
                found.push(file);
            }
        }
        for sub in ["modules", "worktrees"] {
            let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, depth + 1, found);
                    // Nested submodules live under `modules/a/modules/b`.
                    if sub == "modules" {
                        walk_modules(&path, depth + 1, found);
                    }
                }
            }
        }
    }
    fn walk_modules(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) {
        // A submodule's name may have slashes: `modules/lib/a` is one git dir.
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() && !path.join("HEAD").is_file() && depth <= 6 {
                walk(&path, depth + 1, found);
            }
        }
    }
    let mut found = Vec::new();
    walk(git_dir, 0, &mut found);
    found.sort();
    found.dedup();
    found
}

impl SandboxLayout {
    /// The layout for a mission on this host: `home` is the mission's own HOME (created here),
    /// `data_dir` flightdeck's data directory, `protected` files that must stay unreadable
    /// (secret files, the config, the store, the signing key), `caches` the mission's caches.
    pub fn for_mission(
        home: &Path,
        data_dir: &Path,
        repo: Option<&Path>,
        protected: &[PathBuf],
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
        if let Some(h) = &host_home {
            for dir in HOME_TOOLCHAIN_DIRS {
                // Canonical, as the protected paths they are compared with are.
                if let Ok(dir) = std::fs::canonicalize(h.join(dir)) {
                    if dir.is_dir() {
                        layout.read_only.push(dir);
                    }
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
                    let bound = std::fs::canonicalize(&value).unwrap_or(value);
                    if !layout.read_only.contains(&bound) {
                        layout.read_only.push(bound);
                    }
                }
            }
        }
        // Directories on PATH (toolchains installed elsewhere: /usr/lib/jvm/…/bin), unless
        // one is a home or a root of everything.
        let homes = [
            PathBuf::from("/"),
            PathBuf::from("/root"),
            PathBuf::from("/home"),
        ];
        // The checkout the mission started from (its untracked files are not the mission's).
        let checkout = repo.and_then(|r| std::fs::canonicalize(r).ok());
        if let Some(path) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&path) {
                // A relative entry (`.`, empty) would name flightdeck's own directory.
                if !dir.is_absolute() {
                    continue;
                }
                let Ok(dir) = std::fs::canonicalize(&dir) else {
                    continue;
                };
                let in_checkout = checkout
                    .as_ref()
                    .is_some_and(|c| c.starts_with(&dir) || dir.starts_with(c));
                if in_checkout {
                    continue;
                }
                let is_a_home = homes.contains(&dir)
                    || dir.parent() == Some(Path::new("/home"))
                    || host_home.as_deref() == Some(dir.as_path());
                let holds_data = data_dir.starts_with(&dir) || home.starts_with(&dir);
                if dir.is_dir()
                    && !is_a_home
                    && !holds_data
                    && !under_any(&dir, &system().dirs)
                    && !under_any(&dir, &layout.read_only)
                {
                    layout.read_only.push(dir);
                }
            }
        }
        // The repository's `.git`, read-only, so git works in the worktree; its configs
        // (and its submodules') covered.
        let mut git_configs_found = Vec::new();
        if let Some(git) = checkout.map(|r| r.join(".git")).filter(|g| g.is_dir()) {
            git_configs_found = git_configs(&git);
            layout.read_only.push(git);
        }
        // What must stay unreadable wherever it lives: it is covered where a bind would show
        // it (a data directory under /opt, a secret file under /etc).
        let mut protected_paths: Vec<PathBuf> = vec![data_dir.to_path_buf()];
        protected_paths.extend(protected.iter().cloned());
        let mut bound = system().dirs.clone();
        bound.extend(layout.read_only.iter().cloned());
        for path in protected_paths {
            let Ok(path) = std::fs::canonicalize(&path) else {
                continue;
            };
            if under_any(&path, &bound)
                && !layout.protected.contains(&path)
                && !system().secrets.contains(&path)
            {
                layout.protected.push(path);
            }
        }
        layout.protected.extend(git_configs_found);
        layout.home = Some(home.to_path_buf());
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
            layout.caches.push((cache.host_dir.clone(), inside.clone()));
            if !cache.variable.is_empty() {
                layout
                    .env
                    .push((cache.variable.to_string(), inside.display().to_string()));
            }
        }
        if let Some(owner) = sandbox_owner() {
            hand_over(home, owner).map_err(io(home))?;
            // What is in a cache was written by the sandbox's user; its directory may be new.
            for cache in caches {
                std::os::unix::fs::lchown(&cache.host_dir, Some(owner.uid), Some(owner.gid))
                    .map_err(io(&cache.host_dir))?;
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
    /// The workspace's cgroup, made at the first command that needs it and shared by all.
    group: Arc<OnceLock<WorkspaceGroup>>,
    /// Who commands run as on the host (bubblewrap only): see [`sandbox_owner`].
    owner: Option<Owner>,
    /// The workspace's sandbox that commands enter, started at the first command that can
    /// (see [`crate::server`]); one command at a time.
    server: Arc<tokio::sync::Mutex<Option<Server>>>,
    /// Set when a server started but could not run a command: from then on every command
    /// gets a bubblewrap of its own (which says what is wrong).
    server_failed: Arc<std::sync::atomic::AtomicBool>,
}

/// What bubblewrap runs: one command, or the workspace's server that commands enter.
#[derive(Clone, Copy)]
enum Inside<'a> {
    Command(&'a str),
    /// flightdeck's binary, bound in to serve (see [`crate::server`]).
    Server(&'a Path),
}

/// A throwaway HOME, removed when dropped (after its command ended).
struct PrivateHome(PathBuf);

impl Drop for PrivateHome {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where `sh` is: spawned by its path, not looked up along PATH for every command (the
/// watchdog's too).
pub(crate) const SH: &str = "/bin/sh";
/// Drops root for the command inside bubblewrap (util-linux).
const SETPRIV: &str = "/usr/bin/setpriv";

/// What the workspace's server may do, and no more (see [`crate::server`]): make each
/// command's IPC namespace (SYS_ADMIN), make it `nobody` (SETUID, SETGID, SETPCAP for the
/// bounding set), kill and reap what a command left (KILL), and empty `/tmp` whatever modes
/// were left there (DAC_OVERRIDE, FOWNER).
const SERVER_CAPABILITIES: &[&str] = &[
    "CAP_SYS_ADMIN",
    "CAP_SETUID",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_KILL",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
];

impl LocalWorkspace {
    /// A workspace over `root`. In the sandbox, when flightdeck runs as root, `root` is given
    /// to the sandbox's user (see [`sandbox_owner`]).
    pub fn new(root: PathBuf, sandbox: Sandbox) -> LocalWorkspace {
        let owner = match sandbox {
            Sandbox::Bubblewrap(_) => sandbox_owner(),
            Sandbox::None => None,
        };
        if let Some(owner) = owner {
            // A failure shows at the first command that cannot write.
            let _ = hand_over(&root, owner);
        }
        LocalWorkspace {
            root,
            sandbox,
            layout: SandboxLayout::default(),
            limits: Limits::default(),
            cgroups: Cgroups::Unavailable("no limits asked for".into()),
            group: Arc::new(OnceLock::new()),
            owner,
            server: Arc::new(tokio::sync::Mutex::new(None)),
            server_failed: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    /// What commands see of the host (bubblewrap), and the variables they get (both).
    pub fn with_layout(mut self, layout: SandboxLayout) -> LocalWorkspace {
        self.layout = layout;
        self
    }

    /// Memory and process limits for the workspace's commands, enforced through `cgroups`.
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

    /// The arguments of bubblewrap: caches writable when `trusted`, `private_home` bound over
    /// the mission's HOME when the command gets a throwaway one, and what runs inside.
    fn bubblewrap_args(
        &self,
        trusted: bool,
        private_home: Option<&Path>,
        network: Option<&NetworkPlumbing>,
        inside: Inside<'_>,
    ) -> Vec<std::ffi::OsString> {
        use std::ffi::{OsStr, OsString};
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |items: &[&OsStr]| args.extend(items.iter().map(|s| s.into()));
        let s = OsStr::new;
        let system = system();
        let root = self.root.as_path();
        // Mount points' parents, made world-traversable: bubblewrap makes missing parents
        // 0700, which the sandbox's user could not cross. Made before the binds (in the
        // sandbox's own root and its /tmp) and again after the covers are mounted.
        let destinations = system
            .dirs
            .iter()
            .chain(&self.layout.read_only)
            .map(PathBuf::as_path)
            .chain(self.layout.home.as_deref())
            .chain(
                self.layout
                    .caches
                    .iter()
                    .map(|(_, inside)| inside.as_path()),
            )
            .chain(std::iter::once(root));
        let mut parents: Vec<&Path> = Vec::new();
        for place in destinations {
            for ancestor in place.ancestors().skip(1) {
                if ancestor != Path::new("/") && !parents.contains(&ancestor) {
                    parents.push(ancestor);
                }
            }
        }
        // A private /tmp, world-writable (the command may not be root), as large as the
        // memory limit allows (its pages count against it).
        let tmp_bytes = self
            .limits
            .memory_mb
            .unwrap_or(crate::limits::DEFAULT_MEMORY_MB)
            .saturating_mul(1024 * 1024)
            .to_string();
        push(&[
            s("--perms"),
            s("1777"),
            s("--size"),
            s(&tmp_bytes),
            s("--tmpfs"),
            s("/tmp"),
        ]);
        parents.sort_by_key(|p| p.components().count());
        for dir in &parents {
            push(&[s("--dir"), dir.as_os_str()]);
        }
        for (target, link) in &system.symlinks {
            push(&[s("--symlink"), target.as_os_str(), link.as_os_str()]);
        }
        for dir in system.dirs.iter().chain(&self.layout.read_only) {
            push(&[s("--ro-bind"), dir.as_os_str(), dir.as_os_str()]);
        }
        push(&[s("--dev"), s("/dev"), s("--proc"), s("/proc")]);
        let empty = if self.layout.empty_file.as_os_str().is_empty() {
            fallback_empty_file()
        } else {
            self.layout.empty_file.as_os_str()
        };
        for path in system.secrets.iter().chain(&self.layout.protected) {
            if path.is_dir() {
                push(&[s("--tmpfs"), path.as_os_str()]);
            } else {
                push(&[s("--ro-bind"), empty, path.as_os_str()]);
            }
        }
        // Again: parents under a covered directory are new.
        for dir in &parents {
            push(&[s("--dir"), dir.as_os_str()]);
        }
        if let Some(home) = &self.layout.home {
            let host = private_home.unwrap_or(home);
            push(&[s("--bind"), host.as_os_str(), home.as_os_str()]);
        }
        // A cache written by a command that runs agent-written code could carry that code
        // into the next mission (a `build.rs` planted in the cargo registry).
        let cache_bind = if trusted { "--bind" } else { "--ro-bind" };
        for (host, inside) in &self.layout.caches {
            push(&[s(cache_bind), host.as_os_str(), inside.as_os_str()]);
        }
        push(&[s("--bind"), root.as_os_str(), root.as_os_str()]);
        if self.owner.is_some() {
            // As root, bubblewrap makes no user namespace (its user would be root on the
            // host); `setpriv` becomes `nobody` with no capabilities instead.
            push(&[
                s("--unshare-ipc"),
                s("--unshare-pid"),
                s("--unshare-uts"),
                s("--unshare-cgroup-try"),
            ]);
        } else {
            push(&[
                s("--unshare-user"),
                s("--unshare-ipc"),
                s("--unshare-pid"),
                s("--unshare-uts"),
                s("--unshare-cgroup-try"),
                s("--cap-drop"),
                s("ALL"),
            ]);
        }
        // Always a network namespace of its own: with `network`, slirp4netns joins it to
        // the outside (never the host's loopback); without, it has only its own loopback.
        push(&[s("--unshare-net")]);
        if let Some(network) = network {
            for arg in network.bubblewrap_args() {
                push(&[s(&arg)]);
            }
        }
        let command = match inside {
            Inside::Server(exe) => {
                // No `--die-with-parent`: the server ends when its socket closes (see
                // `server`), and the parent-death signal would fire when the thread that
                // started it exits. PID 1 itself: nothing inside can signal it, and its end
                // is everyone's.
                push(&[
                    s("--ro-bind"),
                    exe.as_os_str(),
                    s(crate::server::SERVER_INSIDE),
                    s("--as-pid-1"),
                    s("--cap-drop"),
                    s("ALL"),
                ]);
                for cap in SERVER_CAPABILITIES {
                    push(&[s("--cap-add"), s(cap)]);
                }
                push(&[
                    s("--new-session"),
                    s("--chdir"),
                    root.as_os_str(),
                    s("--"),
                    s(crate::server::SERVER_INSIDE),
                    s(crate::server::SERVER_ARG),
                ]);
                if let Some(owner) = self.owner {
                    let (uid, gid) = (owner.uid.to_string(), owner.gid.to_string());
                    push(&[s(&uid), s(&gid)]);
                }
                return args;
            }
            Inside::Command(command) => command,
        };
        push(&[
            s("--die-with-parent"),
            s("--new-session"),
            s("--chdir"),
            root.as_os_str(),
            s("--"),
        ]);
        if let Some(owner) = self.owner {
            let uid = format!("--reuid={}", owner.uid);
            let gid = format!("--regid={}", owner.gid);
            push(&[
                s(SETPRIV),
                s(&uid),
                s(&gid),
                s("--clear-groups"),
                s("--no-new-privs"),
                s("--inh-caps=-all"),
                s("--bounding-set=-all"),
            ]);
        }
        push(&[s(SH), s("-c"), s(command)]);
        args
    }

    fn command_for(
        &self,
        spec: &CommandSpec,
        private_home: Option<&Path>,
        network: Option<&NetworkPlumbing>,
    ) -> (tokio::process::Command, String) {
        let (program, args): (PathBuf, Vec<std::ffi::OsString>) = match &self.sandbox {
            Sandbox::Bubblewrap(bwrap) => (
                bwrap.clone(),
                self.bubblewrap_args(
                    spec.trusted,
                    private_home,
                    network,
                    Inside::Command(&spec.command),
                ),
            ),
            Sandbox::None => (
                PathBuf::from(SH),
                vec!["-c".into(), spec.command.clone().into()],
            ),
        };
        let mut command = tokio::process::Command::new(&program);
        command.args(&args);
        if matches!(self.sandbox, Sandbox::None) {
            command.current_dir(&self.root);
        }
        command.env_clear();
        command.envs(self.environment(spec, private_home));
        (command, program.display().to_string())
    }

    /// The variables a command gets: the allowlisted ones of flightdeck's environment, the
    /// layout's, the spec's.
    fn environment(
        &self,
        spec: &CommandSpec,
        private_home: Option<&Path>,
    ) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
        let mut env: Vec<(std::ffi::OsString, std::ffi::OsString)> = Vec::new();
        let mut set = |name: &str, value: std::ffi::OsString| {
            env.retain(|(n, _)| n != name);
            env.push((name.into(), value));
        };
        for name in ENV_ALLOWLIST {
            if let Some(value) = std::env::var_os(name) {
                set(name, value);
            }
        }
        for (name, value) in &self.layout.env {
            set(name, value.into());
        }
        if self.owner.is_some() {
            // The worktree's git dir belongs to flightdeck's user, not the sandbox's: git in
            // the sandbox would refuse it as "dubious ownership". (Its configs are covered.)
            set("GIT_CONFIG_COUNT", "1".into());
            set("GIT_CONFIG_KEY_0", "safe.directory".into());
            set("GIT_CONFIG_VALUE_0", "*".into());
        }
        for (name, value) in &spec.env {
            set(name, value.into());
        }
        if let (Sandbox::None, Some(home)) = (&self.sandbox, private_home) {
            set("HOME", home.into());
            set("CARGO_HOME", home.join(".cargo").into());
        }
        env
    }

    /// A throwaway HOME for a command that gets secrets, beside the mission's own: what the
    /// command leaves there (a token in `~/.config`) is gone when it ends. It has the mount
    /// points of the caches, given to the sandbox's user.
    fn make_private_home(&self) -> Result<Option<PrivateHome>, WorkspaceError> {
        let Some(home) = &self.layout.home else {
            return Ok(None);
        };
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut name = home.clone().into_os_string();
        name.push(format!(".private-{}-{n}", std::process::id()));
        let dir = PathBuf::from(name);
        let io = |source| WorkspaceError::Io {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(dir.join(".cargo")).map_err(io)?;
        let private = PrivateHome(dir.clone());
        for (_, inside) in &self.layout.caches {
            if let Ok(relative) = inside.strip_prefix(home) {
                std::fs::create_dir_all(dir.join(relative)).map_err(io)?;
            }
        }
        if let Some(owner) = self.owner {
            hand_over(&dir, owner).map_err(io)?;
        }
        Ok(Some(private))
    }

    /// Runs `spec` in the workspace's sandbox server, started (or restarted with the caches
    /// bound as `spec.trusted` asks) here. `None` when the command needs a sandbox of its
    /// own (the network, a throwaway HOME), when this program cannot serve, or when the
    /// server could not start it: the caller then runs it in a bubblewrap of its own.
    async fn exec_in_server(
        &self,
        spec: &CommandSpec,
        group: Option<&WorkspaceGroup>,
    ) -> Result<Option<CommandOutcome>, WorkspaceError> {
        // Without root there is no second user: a command would be the server's own.
        let (Sandbox::Bubblewrap(bwrap), Some(exe), Some(_)) =
            (&self.sandbox, crate::server::server_exe(), self.owner)
        else {
            return Ok(None);
        };
        let failed = self
            .server_failed
            .load(std::sync::atomic::Ordering::Relaxed);
        if failed || spec.network || spec.private_home {
            return Ok(None);
        }
        let mut env = self.environment(spec, None);
        // As bubblewrap's `--chdir` sets it.
        env.push(("PWD".into(), self.root.clone().into_os_string()));
        let has_nul = |text: &std::ffi::OsStr| text.as_encoded_bytes().contains(&0);
        if spec.command.contains('\0') || env.iter().any(|(k, v)| has_nul(k) || has_nul(v)) {
            // Not a request the server can take; a bubblewrap of its own says what is wrong.
            return Ok(None);
        }
        let mut slot = self.server.lock().await;
        if slot.as_ref().is_some_and(|s| s.trusted != spec.trusted) {
            // Dropped: it ends, and with it whatever ran there.
            *slot = None;
        }
        let fresh = slot.is_none();
        if fresh {
            let mut command = tokio::process::Command::new(bwrap);
            command.args(self.bubblewrap_args(spec.trusted, None, None, Inside::Server(exe)));
            command.env_clear();
            if let Some(group) = group {
                prepare_child(&mut command, group.procs_fds()?, Vec::new());
            }
            match Server::start(command, spec.trusted) {
                Ok(server) => *slot = Some(server),
                Err(_) => {
                    self.server_failed
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    return Ok(None);
                }
            }
        }
        // Until the command is over, the server is taken out of the slot: should this future
        // be dropped half-way, the server goes with it and ends the command.
        let Some(mut server) = slot.take() else {
            return Ok(None);
        };
        let spawn_error = |source| WorkspaceError::Spawn {
            program: "pipe".into(),
            source,
        };
        let (reader, writer) = std::io::pipe().map_err(spawn_error)?;
        let reader =
            tokio::net::unix::pipe::Receiver::from_owned_fd(reader.into()).map_err(spawn_error)?;
        // Aborted (the pipe closed) however this function ends, the future dropped included.
        let mut collector = AbortOnDrop(tokio::spawn(crate::exec::collect_async(reader)));
        let before = group.map(|g| g.counts());
        let started = std::time::Instant::now();
        let ran = tokio::time::timeout(
            spec.timeout,
            server.run(writer.into(), &self.root, &spec.command, &env),
        )
        .await;
        let mut note = None;
        let (exit_code, timed_out) = match ran {
            Ok(Ok(Ran::Exited { code, keep })) => {
                if keep {
                    *slot = Some(server);
                }
                (code, false)
            }
            // Dropping the server ends the sandbox and the command (output reaches EOF).
            Ok(Ok(Ran::NotStarted)) | Ok(Err(_)) => {
                drop(server);
                // A new server that cannot run a command never will; one that ran others
                // and is gone (killed by the memory limit) is started again next time.
                if fresh {
                    self.server_failed
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                }
                return Ok(None);
            }
            Ok(Ok(Ran::Lost)) => {
                drop(server);
                note = Some("[flightdeck: the workspace's sandbox ended during the command]\n");
                (None, false)
            }
            Err(_) => {
                drop(server);
                (None, true)
            }
        };
        drop(slot);
        let collecting = tokio::time::timeout(std::time::Duration::from_secs(5), &mut collector.0);
        let (mut output, dropped_bytes) = match collecting.await {
            Ok(Ok(collected)) => collected,
            _ => (b"[flightdeck: output could not be collected]\n".to_vec(), 0),
        };
        if let Some(note) = note {
            output.extend_from_slice(note.as_bytes());
        }
        let mut outcome = CommandOutcome {
            exit_code,
            timed_out,
            output,
            dropped_bytes,
            duration: started.elapsed(),
            limit_hit: None,
        };
        note_limit_hit(&mut outcome, group, before);
        Ok(Some(outcome))
    }

    /// The workspace's cgroup, made at first use; `None` when nothing is limited or the host
    /// has no cgroups for us.
    fn group(&self) -> Result<Option<&WorkspaceGroup>, WorkspaceError> {
        if self.limits.is_empty() || matches!(self.cgroups, Cgroups::Unavailable(_)) {
            return Ok(None);
        }
        if let Some(group) = self.group.get() {
            return Ok(Some(group));
        }
        let made = self
            .cgroups
            .workspace_group(&self.limits)
            .map_err(WorkspaceError::Limits)?;
        // Two commands racing here: the loser's group is dropped (removed) unused.
        let _ = self.group.set(made);
        Ok(self.group.get())
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

    fn file_owner(&self) -> Option<Owner> {
        self.owner
    }

    async fn exec(&self, spec: &CommandSpec) -> Result<CommandOutcome, WorkspaceError> {
        let group = self.group()?;
        if let Some(outcome) = self.exec_in_server(spec, group).await? {
            return Ok(outcome);
        }
        let private_home = if spec.private_home {
            self.make_private_home()?
        } else {
            None
        };
        let network = match (&self.sandbox, spec.network) {
            (Sandbox::Bubblewrap(_), true) => {
                if crate::network::slirp4netns().is_none() {
                    return Err(WorkspaceError::NetworkHelperMissing);
                }
                Some(
                    NetworkPlumbing::new().map_err(|source| WorkspaceError::Spawn {
                        program: "pipe".into(),
                        source,
                    })?,
                )
            }
            _ => None,
        };
        let (mut command, program) = self.command_for(
            spec,
            private_home.as_ref().map(|h| h.0.as_path()),
            network.as_ref(),
        );
        let join = match group {
            Some(group) => group.procs_fds()?,
            None => Vec::new(),
        };
        let inherit = network
            .as_ref()
            .map(|n| n.inherited().to_vec())
            .unwrap_or_default();
        if !join.is_empty() || !inherit.is_empty() {
            prepare_child(&mut command, join, inherit);
        }
        let before = group.map(|g| g.counts());
        // The command leads no group of its own: `run` puts it in one that is killed as a
        // whole when it ends, times out, is dropped, or when flightdeck dies. In the sandbox
        // the PID namespace dies with bubblewrap as well.
        let running = run(command, &program, spec.timeout);
        let (outcome, network_error, _slirp) = match network {
            None => (running.await?, None, None),
            Some(network) => {
                tokio::pin!(running);
                tokio::select! {
                    outcome = &mut running => (outcome?, None, None),
                    connected = network.connect() => match connected {
                        Ok(slirp) => (running.await?, None, Some(slirp)),
                        Err(why) => (running.await?, Some(why), None),
                    },
                }
            }
        };
        let mut outcome = outcome;
        if let Some(why) = network_error {
            outcome.output.extend_from_slice(
                format!("\n[flightdeck: the command ran without the network: {why}]\n").as_bytes(),
            );
        }
        note_limit_hit(&mut outcome, group, before);
        Ok(outcome)
    }
}

/// A task aborted when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Says in `outcome` which of the workspace's limits the command ran into, if any.
fn note_limit_hit(
    outcome: &mut CommandOutcome,
    group: Option<&WorkspaceGroup>,
    before: Option<crate::limits::HitCounts>,
) {
    let hit = group
        .zip(before)
        .and_then(|(g, before)| g.limit_hit(before));
    if let Some(hit) = hit {
        outcome
            .output
            .extend_from_slice(format!("\n[flightdeck: {hit}]\n").as_bytes());
        outcome.limit_hit = Some(hit);
    }
}

/// In the child, between fork and exec: joins the workspace's cgroups (writing `0`, itself,
/// to each `cgroup.procs`) and keeps `inherit` open across exec (bubblewrap's pipes).
#[allow(unsafe_code)]
fn prepare_child(
    command: &mut tokio::process::Command,
    join: Vec<std::os::fd::OwnedFd>,
    inherit: Vec<std::os::fd::RawFd>,
) {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    let setup = move || -> std::io::Result<()> {
        let errno = |e: nix::errno::Errno| std::io::Error::from_raw_os_error(e as i32);
        for fd in &join {
            nix::unistd::write(fd, b"0").map_err(errno)?;
        }
        for fd in &inherit {
            // SAFETY (of the borrow): the descriptor is open in the parent until the child
            // has been spawned, and the child is a copy of it.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(*fd) };
            fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).map_err(errno)?;
        }
        Ok(())
    };
    // SAFETY: the closure runs in the forked child before exec; it only calls write(2) and
    // fcntl(2) on descriptors opened before the fork and builds no heap value (an
    // `io::Error` from an OS error number does not allocate).
    unsafe {
        command.pre_exec(setup);
    }
}
