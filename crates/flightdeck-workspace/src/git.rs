//! The git side of a workspace, run on the host with the real `git`: create the worktree,
//! snapshot and restore its state, list what changed, and publish a commit on a branch.
//!
//! Repository hooks never run (`core.hooksPath=/dev/null`): a hook is code from the
//! repository, and it would run outside the sandbox. For the same reason git never trusts the
//! worktree's `.git` file, which sandboxed commands can rewrite (pointing it at a git dir
//! whose config runs a command, `core.fsmonitor` say): every git command on a worktree names
//! its git dir explicitly, found from the repository's own administrative files.

use std::path::{Path, PathBuf};
use std::process::Output;

/// The most files one step may change (add, modify, delete) between two snapshots.
pub const MAX_CHANGED_FILES: u64 = 20_000;

/// How long a git still working on a worktree whose index is locked is waited for before
/// the lock is called held (an orphan of a killed flightdeck ends within milliseconds).
const ORPHAN_GIT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// The most bytes the files one step changed may hold together.
pub const MAX_CHANGED_BYTES: u64 = 512 * 1024 * 1024;

/// What `git` said when it failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GitError {
    #[error("failed to run git: {0}")]
    Spawn(String),
    #[error("`git {args}` failed in {dir}: {stderr}")]
    Failed {
        args: String,
        dir: String,
        stderr: String,
    },
    #[error("{0} is not inside a git repository")]
    NotARepo(String),
    #[error("`{reference}` is not a commit in {repo}")]
    UnknownRef { reference: String, repo: String },
    #[error("branch {branch} already exists at {existing}, not at {wanted}")]
    BranchExists {
        branch: String,
        existing: String,
        wanted: String,
    },
    /// The worktree's index is locked by a git process that is still running.
    #[error("{lock} is held by the running git process {pid} (`{command}`), so git cannot work on the worktree now\nhint: wait for that git to finish, or end it (kill {pid}) if it hangs, then try again")]
    IndexLocked {
        lock: String,
        pid: u32,
        command: String,
    },
    /// A lock left by a killed git that could not be removed.
    #[error("cannot remove {lock}, left by a git process that was killed: {error}\nhint: remove the file by hand (no git is working on the worktree), then try again")]
    StaleLock { lock: String, error: String },
    /// A file of the worktree holds a configured secret (in a form redaction knows): it is
    /// not recorded anywhere. Names the file and the secret, never the value.
    #[error("{path} holds the value of the secret `{secret}`; nothing was recorded in git\nhint: a secret must not be written into the worktree: write it outside it (its HOME, /tmp), or remove it from the file")]
    SecretInWorktree { path: String, secret: String },
    #[error("cannot prepare {path}: {error}")]
    Io { path: String, error: String },
    /// More changed since the last snapshot than a step may change: nothing was recorded.
    #[error("{files} files ({bytes} bytes) changed since the last snapshot, over the workspace's limit of {max_files} files and {max_bytes} bytes a step may change; nothing was recorded\nhint: keep build output and downloads out of the worktree (in .gitignore, or under HOME or /tmp)")]
    ChangesTooLarge {
        files: u64,
        bytes: u64,
        max_files: u64,
        max_bytes: u64,
    },
}

/// Where a worktree's snapshots and commits are written, and what they must never hold.
#[derive(Debug, Clone, Default)]
pub struct SnapshotStore {
    /// The mission's own object directory (`<data-dir>/objects/<mission>`): every object a
    /// snapshot or a commit makes goes here, never into the repository's `objects`, which is
    /// only read (an alternate). A published commit is copied into the repository.
    pub objects: PathBuf,
    /// Object directories read through besides the repository's (a replay reads the
    /// recorded mission's).
    pub read_also: Vec<PathBuf>,
    /// Values no snapshot or commit may hold, in any form redaction knows.
    pub secrets: crate::redact::Secrets,
}

impl SnapshotStore {
    /// The index snapshots are made with, beside the object directory: the worktree's own
    /// index (which sandboxed commands may read and write) is left at the base, so it
    /// never names an object only the mission's directory has.
    pub fn index(&self) -> PathBuf {
        let mut name = self.objects.as_os_str().to_owned();
        name.push(".index");
        PathBuf::from(name)
    }
}

/// git's path, found on PATH once: spawning by name looks along PATH (and fails to exec in
/// every directory before git's) for each of the many git commands a mission runs.
fn git_program() -> &'static Path {
    static GIT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    GIT.get_or_init(|| crate::local::find_in_path("git").unwrap_or_else(|| PathBuf::from("git")))
}

fn git(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<Output, GitError> {
    std::process::Command::new(git_program())
        .arg("-C")
        .arg(dir)
        .args(["-c", "core.hooksPath=/dev/null", "-c", "core.quotepath=off"])
        .args(args)
        .envs(env.iter().copied())
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| GitError::Spawn(e.to_string()))
}

fn git_ok(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<String, GitError> {
    let output = git(dir, args, env)?;
    if !output.status.success() {
        return Err(GitError::Failed {
            args: args.join(" "),
            dir: dir.display().to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .trim_end()
        .to_string())
}

/// The top-level directory of the repository containing `dir`; for a bare repository (a
/// cache of a remote one), the repository itself.
pub fn repo_root(dir: &Path) -> Result<PathBuf, GitError> {
    let output = git(dir, &["rev-parse", "--show-toplevel"], &[])?;
    if output.status.success() {
        return Ok(PathBuf::from(
            String::from_utf8_lossy(&output.stdout).trim(),
        ));
    }
    let bare = git(dir, &["rev-parse", "--is-bare-repository"], &[])?;
    if bare.status.success() && String::from_utf8_lossy(&bare.stdout).trim() == "true" {
        return Ok(std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()));
    }
    Err(GitError::NotARepo(dir.display().to_string()))
}

/// The full commit id `reference` names in `repo`.
pub fn resolve_commit(repo: &Path, reference: &str) -> Result<String, GitError> {
    let spec = format!("{reference}^{{commit}}");
    let output = git(
        repo,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            &spec,
        ],
        &[],
    )?;
    if !output.status.success() {
        return Err(GitError::UnknownRef {
            reference: reference.to_string(),
            repo: repo.display().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// One changed file of a worktree against its base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffFile {
    pub path: String,
    /// `A`, `M`, `D`, `R…`, `T`, as git says.
    pub status: String,
    /// `None` for binary files.
    pub added: Option<u64>,
    pub removed: Option<u64>,
}

/// A git worktree of `repo` at `path`, made from `base`.
#[derive(Debug, Clone)]
pub struct Worktree {
    pub repo: PathBuf,
    pub path: PathBuf,
    pub base: String,
    /// The worktree's administrative directory inside the repository's git dir.
    git_dir: PathBuf,
    /// Who gets what a restore writes (the sandbox's user, see [`crate::sandbox_owner`]).
    owner: Option<crate::Owner>,
    store: SnapshotStore,
    /// `GIT_OBJECT_DIRECTORY` and `GIT_INDEX_FILE` for every git run on the worktree.
    env: [(String, String); 2],
    /// The tree the index held at the last snapshot, and the index file as it was then
    /// (shared by the clones of a worktree, which share its index).
    last_snapshot: std::sync::Arc<std::sync::Mutex<Option<(IndexStamp, String)>>>,
}

/// What tells one version of an index file from another: its checksum trailer (a hash of
/// everything before it) and its length. `None` for an index written without its checksum
/// (`index.skipHash`): then every snapshot asks git.
#[derive(Debug, Clone, PartialEq, Eq)]
struct IndexStamp {
    len: u64,
    trailer: [u8; 32],
}

impl IndexStamp {
    fn of(index: &Path) -> Option<IndexStamp> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = std::fs::File::open(index).ok()?;
        let len = file.metadata().ok()?.len();
        let mut trailer = [0u8; 32];
        file.seek(SeekFrom::Start(len.checked_sub(32)?)).ok()?;
        file.read_exact(&mut trailer).ok()?;
        // A SHA-1 index ends with 20 bytes of hash; zeros mean none was written.
        if trailer[12..].iter().all(|b| *b == 0) {
            return None;
        }
        Some(IndexStamp { len, trailer })
    }
}

/// The repository's object directory (`<common git dir>/objects`).
fn objects_dir(repo: &Path) -> Result<PathBuf, GitError> {
    Ok(common_dir(repo)?.join("objects"))
}

/// The repository's common git directory (`.git`, or the bare repository itself).
fn common_dir(repo: &Path) -> Result<PathBuf, GitError> {
    let common = git_ok(
        repo,
        &["rev-parse", "--path-format=absolute", "--git-common-dir"],
        &[],
    )?;
    Ok(PathBuf::from(common))
}

/// Holds `<common dir>/flightdeck-worktrees.lock` exclusively: `git worktree prune` run while
/// another process's `git worktree add` is half done deletes the new worktree's
/// administrative files (the add then fails reading them), so the processes of one machine
/// add, prune and remove a repository's worktrees one at a time.
fn lock_worktrees(repo: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, GitError> {
    let path = common_dir(repo)?.join("flightdeck-worktrees.lock");
    let io = |e: String| GitError::Io {
        path: path.display().to_string(),
        error: e,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io(e.to_string()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| io(errno.to_string()))
}

/// Makes the mission's object directory, reading through to `alternates`.
fn prepare_objects(dir: &Path, alternates: &[PathBuf]) -> Result<(), GitError> {
    let io = |path: &Path, e: std::io::Error| GitError::Io {
        path: path.display().to_string(),
        error: e.to_string(),
    };
    let info = dir.join("info");
    std::fs::create_dir_all(&info).map_err(|e| io(&info, e))?;
    std::fs::create_dir_all(dir.join("pack")).map_err(|e| io(dir, e))?;
    let mut list = String::new();
    for alternate in alternates {
        list.push_str(&alternate.display().to_string());
        list.push('\n');
    }
    let file = info.join("alternates");
    std::fs::write(&file, list).map_err(|e| io(&file, e))
}

/// The administrative directory (`<common git dir>/worktrees/<name>`) whose `gitdir` file
/// points at `path`: read from the repository, never from the worktree.
fn admin_dir(repo: &Path, path: &Path) -> Result<Option<PathBuf>, GitError> {
    let common = git_ok(
        repo,
        &["rev-parse", "--path-format=absolute", "--git-common-dir"],
        &[],
    )?;
    let wanted = path.join(".git");
    let Ok(entries) = std::fs::read_dir(Path::new(&common).join("worktrees")) else {
        return Ok(None);
    };
    for entry in entries.flatten() {
        let Ok(pointer) = std::fs::read_to_string(entry.path().join("gitdir")) else {
            continue;
        };
        if Path::new(pointer.trim()) == wanted {
            return Ok(Some(entry.path()));
        }
    }
    Ok(None)
}

impl Worktree {
    /// Where the worktree is on the host.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the worktree (detached at `base`) or, after a crash, reuses the one already
    /// there. Its snapshots and commits are written to `store`'s object directory.
    pub fn create(
        repo: &Path,
        path: &Path,
        base: &str,
        store: SnapshotStore,
    ) -> Result<Worktree, GitError> {
        let mut alternates = store.read_also.clone();
        alternates.push(objects_dir(repo)?);
        prepare_objects(&store.objects, &alternates)?;
        let worktree = |git_dir: PathBuf| -> Result<Worktree, GitError> {
            let index = store.index();
            if !index.exists() {
                // Start from the index `worktree add` wrote (the base, with its stat data),
                // so the first snapshot hashes only what changed.
                let _ = std::fs::copy(git_dir.join("index"), &index);
            }
            Ok(Worktree {
                repo: repo.to_path_buf(),
                path: path.to_path_buf(),
                base: base.to_string(),
                git_dir,
                env: [
                    (
                        "GIT_OBJECT_DIRECTORY".to_string(),
                        store.objects.display().to_string(),
                    ),
                    ("GIT_INDEX_FILE".to_string(), index.display().to_string()),
                ],
                store: store.clone(),
                owner: None,
                last_snapshot: Default::default(),
            })
        };
        if path.exists() {
            if let Some(git_dir) = admin_dir(repo, path)? {
                return worktree(git_dir);
            }
            // Half made by a process that died: start again.
            std::fs::remove_dir_all(path).map_err(|e| GitError::Spawn(e.to_string()))?;
        }
        let _ = std::fs::remove_file(store.index());
        let path_str = path.to_string_lossy();
        {
            let _one_at_a_time = lock_worktrees(repo)?;
            let _ = git_ok(repo, &["worktree", "prune"], &[]);
            git_ok(
                repo,
                &["worktree", "add", "--detach", "--quiet", &path_str, base],
                &[],
            )?;
        }
        let git_dir = admin_dir(repo, path)?.ok_or_else(|| GitError::Failed {
            args: format!("worktree add {path_str}"),
            dir: repo.display().to_string(),
            stderr: "the new worktree has no administrative directory".to_string(),
        })?;
        worktree(git_dir)
    }

    /// The index snapshots are made with (its lock is `<index>.lock`).
    pub fn index_path(&self) -> PathBuf {
        self.store.index()
    }

    /// The environment every git run on the worktree gets, then `extra`.
    fn env<'a>(&'a self, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.extend_from_slice(extra);
        env
    }

    /// Files a restore writes are given to `owner` (see [`crate::Workspace::file_owner`]).
    pub fn with_owner(mut self, owner: Option<crate::Owner>) -> Worktree {
        self.owner = owner;
        self
    }

    /// Runs git on the worktree with its git dir and work tree named explicitly.
    fn git(&self, args: &[&str], env: &[(&str, &str)]) -> Result<String, GitError> {
        self.recover_index_lock()?;
        let git_dir = format!("--git-dir={}", self.git_dir.display());
        let work_tree = format!("--work-tree={}", self.path.display());
        // The worktree belongs to the sandbox's user when flightdeck runs as root: git would
        // refuse it as "dubious ownership". This worktree only, never the user's repository.
        let safe = format!("safe.directory={}", self.path.display());
        let mut full = vec![
            git_dir.as_str(),
            work_tree.as_str(),
            "-c",
            "core.fsmonitor=false",
            "-c",
            safe.as_str(),
        ];
        full.extend_from_slice(args);
        match git_ok(&self.path, &full, &self.env(env)) {
            // A git of a flightdeck that was killed (it lives on as an orphan for a few
            // milliseconds) took the index between the check above and this git: wait for
            // it to end, then once more.
            Err(GitError::Failed { stderr, .. }) if stderr.contains(".lock': File exists") => {
                self.recover_index_lock()?;
                git_ok(&self.path, &full, &self.env(env))
            }
            other => other,
        }
    }

    /// Checks what changed since the last snapshot before anything is added to an object
    /// store: at most [`MAX_CHANGED_FILES`] files and [`MAX_CHANGED_BYTES`] bytes
    /// ([`GitError::ChangesTooLarge`]: a step writing a gigabyte in 100,000 files would take
    /// minutes and gigabytes to record), and no file, name or symlink target holding a
    /// configured secret ([`GitError::SecretInWorktree`]).
    ///
    /// Returns how many paths differ from the index.
    fn check_changes(&self) -> Result<usize, GitError> {
        let listed = self.git(
            &[
                "ls-files",
                "-z",
                "--modified",
                "--others",
                "--exclude-standard",
            ],
            &[],
        )?;
        let names: Vec<&str> = listed.split('\0').filter(|n| !n.is_empty()).collect();
        let files = names.len() as u64;
        let mut bytes = 0u64;
        for name in &names {
            if let Ok(meta) = std::fs::symlink_metadata(self.path.join(name)) {
                bytes = bytes.saturating_add(meta.len());
            }
        }
        if files > MAX_CHANGED_FILES || bytes > MAX_CHANGED_BYTES {
            return Err(GitError::ChangesTooLarge {
                files,
                bytes,
                max_files: MAX_CHANGED_FILES,
                max_bytes: MAX_CHANGED_BYTES,
            });
        }
        if self.store.secrets.is_empty() {
            return Ok(names.len());
        }
        let count = names.len();
        for name in names {
            let found = self
                .store
                .secrets
                .value_in(name.as_bytes())
                .map(str::to_string)
                .or_else(|| secret_in_file(&self.store.secrets, &self.path.join(name)));
            if let Some(secret) = found {
                // The name itself may be the secret.
                let path = String::from_utf8_lossy(&self.store.secrets.redact(name.as_bytes()))
                    .into_owned();
                return Err(GitError::SecretInWorktree { path, secret });
            }
        }
        Ok(count)
    }

    /// A git killed while it held the worktree's index (flightdeck killed mid-`git add`, say)
    /// leaves `<admin dir>/index.lock` behind, and every later git command on the worktree
    /// fails on it. The lock is stale when no git process works on the worktree: none whose
    /// arguments or current directory name its admin dir or its work tree (see
    /// [`git_process_on`]), waited for up to [`ORPHAN_GIT_WAIT`]; then it is removed. One
    /// that lives on is an error naming it.
    fn recover_index_lock(&self) -> Result<(), GitError> {
        let mut lock = self.store.index().into_os_string();
        lock.push(".lock");
        let lock = PathBuf::from(lock);
        if std::fs::symlink_metadata(&lock).is_err() {
            return Ok(());
        }
        // A git still at work on the worktree is most often an orphan of a flightdeck that
        // was killed: it ends within milliseconds. Give it a moment before calling it live.
        let deadline = std::time::Instant::now() + ORPHAN_GIT_WAIT;
        while let Some((pid, command)) = git_process_on(&[&self.git_dir, &self.path]) {
            if std::time::Instant::now() >= deadline {
                return Err(GitError::IndexLocked {
                    lock: lock.display().to_string(),
                    pid,
                    command,
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        match std::fs::remove_file(&lock) {
            Ok(()) => Ok(()),
            // Its git finished between the look and now.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(GitError::StaleLock {
                lock: lock.display().to_string(),
                error: e.to_string(),
            }),
        }
    }

    /// Records the worktree's whole state (tracked and untracked, not ignored files) as a git
    /// tree and returns its id. Restoring that tree gives the same files back.
    ///
    /// When nothing differs from the index (the common case after a command that only read),
    /// nothing is added, and the tree of the last snapshot is given again while the index
    /// file is the one it was made from: one git process instead of three. (The index is
    /// the mission's own, outside the sandbox: no command can change it.)
    pub fn snapshot(&self) -> Result<String, GitError> {
        let changed = self.check_changes()?;
        let index = self.store.index();
        if changed == 0 {
            let last = self.last_snapshot.lock().ok().and_then(|last| last.clone());
            if let Some((stamp, tree)) = last {
                if IndexStamp::of(&index).as_ref() == Some(&stamp) {
                    return Ok(tree);
                }
            }
        } else {
            self.git(&["add", "--all", "--", "."], &[])?;
        }
        let tree = self.git(&["write-tree"], &[])?;
        if let Ok(mut last) = self.last_snapshot.lock() {
            *last = IndexStamp::of(&index).map(|stamp| (stamp, tree.clone()));
        }
        Ok(tree)
    }

    /// Puts the worktree back to `tree` (a snapshot) or, with `None`, to the base commit:
    /// what an interrupted command left behind is thrown away.
    pub fn restore(&self, tree: Option<&str>) -> Result<(), GitError> {
        if let Ok(mut last) = self.last_snapshot.lock() {
            *last = None;
        }
        let target = tree.unwrap_or(&self.base);
        self.git(&["read-tree", "-u", "--reset", target], &[])?;
        // Again: a snapshot on a clone between the first clearing and the read-tree would
        // have paired the new index with the old tree.
        if let Ok(mut last) = self.last_snapshot.lock() {
            *last = None;
        }
        // -x: ignored files too (a build directory, node_modules): nothing unrecorded
        // may influence what runs next. -f twice: a directory holding a `.git` (a nested
        // repository, or a `.git` file pointing at one) is removed too; with one -f git
        // skips it and it would survive into the steps that follow.
        self.git(&["clean", "-ffdxq"], &[])?;
        if let Some(owner) = self.owner {
            crate::hand_over(&self.path, owner).map_err(|e| GitError::Failed {
                args: "restore".to_string(),
                dir: self.path.display().to_string(),
                stderr: format!("cannot give the restored files to the sandbox's user: {e}"),
            })?;
        }
        Ok(())
    }

    /// The files that differ between the base and the worktree's current state.
    pub fn changes(&self) -> Result<(String, Vec<DiffFile>), GitError> {
        let tree = self.snapshot()?;
        let numstat = self.git(
            &["diff", "--numstat", "--no-renames", &self.base, &tree],
            &[],
        )?;
        let names = self.git(
            &["diff", "--name-status", "--no-renames", &self.base, &tree],
            &[],
        )?;
        let mut files: Vec<DiffFile> = names
            .lines()
            .filter_map(|line| {
                let (status, path) = line.split_once('\t')?;
                Some(DiffFile {
                    path: path.to_string(),
                    status: status.to_string(),
                    added: None,
                    removed: None,
                })
            })
            .collect();
        for line in numstat.lines() {
            let mut parts = line.splitn(3, '\t');
            let (Some(added), Some(removed), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if let Some(file) = files.iter_mut().find(|f| f.path == path) {
                file.added = added.parse().ok();
                file.removed = removed.parse().ok();
            }
        }
        Ok((tree, files))
    }

    /// The exact binary patch from the base to `tree` (`git diff --binary --full-index`):
    /// what an approval covers is the sha256 of these bytes.
    pub fn diff_bytes(&self, tree: &str) -> Result<Vec<u8>, GitError> {
        let git_dir = format!("--git-dir={}", self.git_dir.display());
        let work_tree = format!("--work-tree={}", self.path.display());
        let safe = format!("safe.directory={}", self.path.display());
        let args = [
            git_dir.as_str(),
            work_tree.as_str(),
            "-c",
            "core.fsmonitor=false",
            "-c",
            safe.as_str(),
            "-c",
            "diff.noprefix=false",
            "diff",
            "--binary",
            "--full-index",
            "--no-renames",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            &self.base,
            tree,
        ];
        let output = git(&self.path, &args, &self.env(&[]))?;
        if !output.status.success() {
            return Err(GitError::Failed {
                args: format!("diff --binary {} {tree}", self.base),
                dir: self.path.display().to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        Ok(output.stdout)
    }

    /// Commits `tree` on top of the base and points `branch` at it (in the repository the
    /// worktree belongs to). Dates come from the caller so that the same timeline makes the
    /// same commit. Idempotent: the branch may already point at that very commit.
    pub fn commit_to_branch(
        &self,
        tree: &str,
        branch: &str,
        message: &str,
        unix_seconds: i64,
    ) -> Result<String, GitError> {
        let date = format!("{unix_seconds} +0000");
        let env = [
            ("GIT_AUTHOR_NAME", "flightdeck"),
            ("GIT_AUTHOR_EMAIL", "flightdeck@localhost"),
            ("GIT_COMMITTER_NAME", "flightdeck"),
            ("GIT_COMMITTER_EMAIL", "flightdeck@localhost"),
            ("GIT_AUTHOR_DATE", date.as_str()),
            ("GIT_COMMITTER_DATE", date.as_str()),
        ];
        if let Some(secret) = self.store.secrets.value_in(message.as_bytes()) {
            return Err(GitError::SecretInWorktree {
                path: "the commit message".to_string(),
                secret: secret.to_string(),
            });
        }
        let commit = self.git(
            &["commit-tree", tree, "-p", &self.base, "-m", message],
            &env,
        )?;
        self.copy_to_repo(&commit)?;
        let reference = format!("refs/heads/{branch}");
        match git(
            &self.repo,
            &["rev-parse", "--verify", "--quiet", &reference],
            &[],
        )? {
            existing if existing.status.success() => {
                let existing = String::from_utf8_lossy(&existing.stdout).trim().to_string();
                if existing != commit {
                    return Err(GitError::BranchExists {
                        branch: branch.to_string(),
                        existing,
                        wanted: commit,
                    });
                }
            }
            _ => {
                // Only the mission's driver (it holds the mission's lease) writes its branch:
                // a lock file on a branch that does not exist yet was left by a driver killed
                // in the middle of this very write, and would refuse every later one.
                let lock = common_dir(&self.repo)?.join(format!("{reference}.lock"));
                if lock.is_file() {
                    let _ = std::fs::remove_file(&lock);
                }
                git_ok(
                    &self.repo,
                    &[
                        "update-ref",
                        "-m",
                        "flightdeck: publish",
                        &reference,
                        &commit,
                        "",
                    ],
                    &[],
                )?;
            }
        }
        Ok(commit)
    }

    /// Copies `commit` and what it has that the base has not from the mission's object
    /// directory into the repository's (a pack): what publishing puts there, and all it does.
    fn copy_to_repo(&self, commit: &str) -> Result<(), GitError> {
        let there = git(&self.repo, &["cat-file", "-e", commit], &[])?;
        if there.status.success() {
            return Ok(());
        }
        let spawn = |e: std::io::Error| GitError::Spawn(e.to_string());
        let git_dir = format!("--git-dir={}", self.git_dir.display());
        let mut pack = std::process::Command::new(git_program())
            .args([git_dir.as_str(), "-c", "core.hooksPath=/dev/null"])
            .args(["pack-objects", "--revs", "--stdout", "-q"])
            .envs(self.env(&[]))
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(spawn)?;
        if let Some(mut stdin) = pack.stdin.take() {
            use std::io::Write as _;
            writeln!(stdin, "{commit}\n^{}", self.base).map_err(spawn)?;
        }
        let stdout = pack
            .stdout
            .take()
            .ok_or_else(|| GitError::Spawn("pack-objects has no output".to_string()))?;
        let index = std::process::Command::new(git_program())
            .arg("-C")
            .arg(&self.repo)
            .args(["-c", "core.hooksPath=/dev/null", "index-pack", "--stdin"])
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C")
            .stdin(stdout)
            .output()
            .map_err(spawn)?;
        let packed = pack.wait_with_output().map_err(spawn)?;
        for (what, out_status, stderr) in [
            ("pack-objects", packed.status, packed.stderr),
            ("index-pack --stdin", index.status, index.stderr),
        ] {
            if !out_status.success() {
                return Err(GitError::Failed {
                    args: what.to_string(),
                    dir: self.repo.display().to_string(),
                    stderr: String::from_utf8_lossy(&stderr).trim().to_string(),
                });
            }
        }
        Ok(())
    }

    /// `git format-patch` of `commit` (one commit on the base), as mailbox text.
    pub fn format_patch(&self, commit: &str) -> Result<String, GitError> {
        let mut patch = self.git(
            &["format-patch", "-1", "--stdout", "--no-signature", commit],
            &[],
        )?;
        patch.push('\n');
        Ok(patch)
    }

    /// Removes the worktree at `path` of `repo` and its administrative files.
    pub fn remove(repo: &Path, path: &Path) -> Result<(), GitError> {
        let path_str = path.to_string_lossy();
        // Best effort: a repository that is gone has no worktrees to race on.
        let _one_at_a_time = lock_worktrees(repo).ok();
        let removed = git_ok(
            repo,
            &["worktree", "remove", "--force", "--force", &path_str],
            &[],
        );
        if removed.is_err() && path.exists() {
            std::fs::remove_dir_all(path).map_err(|e| GitError::Spawn(e.to_string()))?;
            let _ = git_ok(repo, &["worktree", "prune"], &[]);
        }
        Ok(())
    }
}

/// The patch from `base` to `tree` (`git diff`, as a person reads it), reading the objects
/// of `repo` and of a mission's own object directory `objects` (where its snapshots are):
/// the worktree as of a step, shown on the mission's page. Nothing is written.
pub fn diff_in_objects(
    repo: &Path,
    objects: &Path,
    base: &str,
    tree: &str,
) -> Result<Vec<u8>, GitError> {
    let objects = objects.display().to_string();
    let args = [
        "-c",
        "core.fsmonitor=false",
        "diff",
        "--no-renames",
        "--no-color",
        "--no-ext-diff",
        "--no-textconv",
        "--end-of-options",
        base,
        tree,
    ];
    let output = git(
        repo,
        &args,
        &[("GIT_ALTERNATE_OBJECT_DIRECTORIES", objects.as_str())],
    )?;
    if !output.status.success() {
        return Err(GitError::Failed {
            args: format!("diff {base} {tree}"),
            dir: repo.display().to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(output.stdout)
}

/// The bytes of `path` (repo-relative) in `commit` of `repo`, or `None` when the commit has
/// no such file. Read from the object store: the working tree is never looked at.
pub fn read_at_commit(repo: &Path, commit: &str, path: &str) -> Result<Option<Vec<u8>>, GitError> {
    let spec = format!("{commit}:{}", path.trim_start_matches("./"));
    let exists = git(repo, &["cat-file", "-e", "--end-of-options", &spec], &[])?;
    if !exists.status.success() {
        return Ok(None);
    }
    let output = git(repo, &["cat-file", "blob", &spec], &[])?;
    if !output.status.success() {
        // A directory, or a submodule: not a file of the commit.
        return Ok(None);
    }
    Ok(Some(output.stdout))
}

/// The name of the first configured secret the file at `path` holds (a symlink: its
/// target), read in overlapping chunks so a large file is never held whole. A file that
/// cannot be read is not looked at (git will say why it cannot record it).
fn secret_in_file(secrets: &crate::redact::Secrets, path: &Path) -> Option<String> {
    use std::io::Read as _;
    let meta = std::fs::symlink_metadata(path).ok()?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(path).ok()?;
        return secrets
            .value_in(target.as_os_str().as_encoded_bytes())
            .map(str::to_string);
    }
    if !meta.is_file() {
        return None;
    }
    // A hit may straddle two chunks: each chunk starts with the previous one's tail, longer
    // than any form of a value redaction matches.
    const CHUNK: usize = 1 << 20;
    const OVERLAP: usize = 64 << 10;
    let mut file = std::fs::File::open(path).ok()?;
    let mut buffer = Vec::with_capacity(CHUNK + OVERLAP);
    loop {
        let kept = buffer.len();
        buffer.resize(kept + CHUNK, 0);
        let read = file.read(&mut buffer[kept..]).ok()?;
        buffer.truncate(kept + read);
        if let Some(name) = secrets.value_in(&buffer) {
            return Some(name.to_string());
        }
        if read == 0 {
            return None;
        }
        let tail = buffer.len().saturating_sub(OVERLAP);
        buffer.drain(..tail);
    }
}

/// The URL of `repo`'s remote `origin`, if it has one.
pub fn origin_url(repo: &Path) -> Option<String> {
    let output = git(repo, &["config", "--get", "remote.origin.url"], &[]).ok()?;
    let url = String::from_utf8_lossy(&output.stdout).trim().to_string();
    (output.status.success() && !url.is_empty()).then_some(url)
}

/// The names of the files directly in `dir` (repo-relative) in `commit` of `repo`.
pub fn list_at_commit(repo: &Path, commit: &str, dir: &str) -> Result<Vec<String>, GitError> {
    let spec = format!("{commit}:{}", dir.trim_end_matches('/'));
    let output = git(
        repo,
        &["ls-tree", "--name-only", "--end-of-options", &spec],
        &[],
    )?;
    if !output.status.success() {
        return Ok(Vec::new());
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

impl Worktree {
    /// The blob id of `path` in `tree` (a tree id this worktree's repository has), if it is a
    /// file there.
    pub fn blob_in_tree(&self, tree: &str, path: &str) -> Option<String> {
        let spec = format!("{tree}:{path}");
        let id = self
            .git(
                &[
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    "--end-of-options",
                    &spec,
                ],
                &[],
            )
            .ok()?;
        (!id.is_empty()).then_some(id)
    }
}

/// A running git process (other than this one) working on one of `dirs`: its pid and command
/// line. Read from `/proc`: a process whose program is `git` (or `git-…`) and whose arguments
/// (`--git-dir=…`, `--work-tree=…`, `-C …`, relative ones against its current directory) or
/// current directory name one of `dirs` or a path inside one. Processes that vanish or cannot
/// be read while looking are skipped, and so is one in the first moments of its exec (its
/// arguments read empty until the kernel has set them up): it has not run yet, so it holds no
/// lock. Environment variables (`GIT_DIR`) are not looked at: flightdeck never passes them.
fn git_process_on(dirs: &[&Path]) -> Option<(u32, String)> {
    // Both spellings: the path as flightdeck has it and with symlinks resolved.
    let mut wanted: Vec<PathBuf> = Vec::new();
    for dir in dirs {
        wanted.push(dir.to_path_buf());
        if let Ok(real) = std::fs::canonicalize(dir) {
            wanted.push(real);
        }
    }
    let own = std::process::id();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let argv: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if !is_git(&argv, comm.trim_end()) {
            continue;
        }
        let cwd = std::fs::read_link(entry.path().join("cwd")).ok();
        if names_any(&argv, cwd.as_deref(), &wanted) {
            return Some((pid, argv.join(" ")));
        }
    }
    None
}

/// Whether a process is git: its `argv[0]` or its kernel name is `git` or `git-…`.
fn is_git(argv: &[String], comm: &str) -> bool {
    let program = argv
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a))
        .unwrap_or_default();
    [program, comm]
        .iter()
        .any(|name| *name == "git" || name.starts_with("git-"))
}

/// Whether a process's arguments (past `argv[0]`) or its current directory name one of
/// `dirs` or a path inside one. `--option=PATH` counts for its value; relative paths are
/// taken from `cwd`.
fn names_any(argv: &[String], cwd: Option<&Path>, dirs: &[PathBuf]) -> bool {
    let inside = |path: &Path| dirs.iter().any(|dir| path.starts_with(dir));
    if cwd.is_some_and(inside) {
        return true;
    }
    argv.iter().skip(1).any(|arg| {
        let value = match arg.split_once('=') {
            Some((option, value)) if option.starts_with('-') => value,
            _ => arg.as_str(),
        };
        if value.is_empty() || value.starts_with('-') {
            return false;
        }
        let path = Path::new(value);
        if path.is_absolute() {
            inside(&lexical(path))
        } else {
            cwd.is_some_and(|cwd| inside(&lexical(&cwd.join(path))))
        }
    })
}

/// `.` and `..` resolved without looking at the disk.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn which_processes_are_git_on_the_worktree() {
        let dirs = [
            PathBuf::from("/r/.git/worktrees/wt"),
            PathBuf::from("/m/wt"),
        ];
        // (argv, cwd, is git, names a dir)
        let table: &[(&[&str], Option<&str>, bool, bool)] = &[
            (
                &["git", "--git-dir=/r/.git/worktrees/wt", "add"],
                None,
                true,
                true,
            ),
            (&["/usr/bin/git", "-C", "/m/wt", "status"], None, true, true),
            (&["git", "--work-tree=/m/wt/", "add"], None, true, true),
            (&["git", "add", "--", "."], Some("/m/wt/src"), true, true),
            (&["git", "-C", "wt", "add"], Some("/m"), true, true),
            (&["git", "-C", "../wt", "add"], Some("/m/other"), true, true),
            (
                &["git", "--git-dir=/r/.git/worktrees/wt/../wt2", "add"],
                None,
                true,
                false,
            ),
            (
                &["git", "--git-dir=/r/.git/worktrees/wt2", "add"],
                None,
                true,
                false,
            ),
            (&["git", "-C", "/m/wt2", "add"], Some("/"), true, false),
            (
                &["git", "-C", "/r", "worktree", "prune"],
                Some("/"),
                true,
                false,
            ),
            (&["git", "status"], None, true, false),
            (&["git-upload-pack", "/m/wt"], None, true, true),
            (&["sleep", "/m/wt"], None, false, true),
            (&["/opt/gitlab/bin/gitaly", "/m/wt"], None, false, true),
            (&["vim", "--cmd=x"], Some("/m/wt"), false, true),
        ];
        for (argv, cwd, git, names) in table {
            let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
            assert_eq!(is_git(&argv, "x"), *git, "{argv:?}");
            assert_eq!(
                names_any(&argv, cwd.map(Path::new), &dirs),
                *names,
                "{argv:?} in {cwd:?}"
            );
        }
        assert!(
            is_git(&["whatever".to_string()], "git"),
            "the kernel's name counts"
        );
    }
}
