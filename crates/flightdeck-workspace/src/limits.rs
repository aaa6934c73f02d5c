//! Memory and process limits for a workspace's commands, through cgroups (v2 where the unified
//! hierarchy has the controllers, else v1's `memory` and `pids` hierarchies). One group per
//! workspace; each command joins it between fork and exec (the child writes to `cgroup.procs`
//! files flightdeck opened), so nothing it starts can escape the limit by forking early. Where the host gives us no writable cgroups, the limits
//! are not enforced and the workspace says so (`workspace.provisioned.limits`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// The memory limit a workspace gets when its template names none, in MiB.
pub const DEFAULT_MEMORY_MB: u64 = 4096;
/// The process (task) limit a workspace gets when its template names none.
pub const DEFAULT_MAX_PROCESSES: u64 = 4096;

/// What a template asks for (`[workspace] memory_mb`, `max_processes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Limits {
    pub memory_mb: Option<u64>,
    pub max_processes: Option<u64>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        self.memory_mb.is_none() && self.max_processes.is_none()
    }
}

/// Where this host lets us make cgroups, found once per workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroups {
    /// A directory in the unified hierarchy whose children get `memory` and `pids`.
    V2(PathBuf),
    /// `flightdeck` directories in v1's `pids` and `memory` hierarchies (either may be absent).
    V1 {
        pids: Option<PathBuf>,
        memory: Option<PathBuf>,
    },
    /// Why limits cannot be enforced here.
    Unavailable(String),
}

const V2_ROOT: &str = "/sys/fs/cgroup";

impl Cgroups {
    /// Finds (and prepares) a place for per-command groups.
    pub fn detect() -> Cgroups {
        Cgroups::detect_under(Path::new(V2_ROOT))
    }

    fn detect_under(root: &Path) -> Cgroups {
        if root.join("cgroup.controllers").is_file() {
            return match prepare_v2(root) {
                Ok(dir) => Cgroups::V2(dir),
                Err(why) => Cgroups::Unavailable(why),
            };
        }
        let v1 = |controller: &str| {
            let dir = root.join(controller).join("flightdeck");
            (root.join(controller).is_dir() && std::fs::create_dir_all(&dir).is_ok()).then_some(dir)
        };
        let (pids, memory) = (v1("pids"), v1("memory"));
        if pids.is_none() && memory.is_none() {
            return Cgroups::Unavailable(format!(
                "no writable cgroup hierarchy under {} (v2 with memory and pids, or v1 memory/pids)",
                root.display()
            ));
        }
        Cgroups::V1 { pids, memory }
    }

    /// How limits are enforced, for the timeline: `cgroup2`, `cgroup1`, or `none: <why>`.
    pub fn describe(&self) -> String {
        match self {
            Cgroups::V2(_) => "cgroup2".into(),
            Cgroups::V1 { pids, memory } => match (pids, memory) {
                (Some(_), Some(_)) => "cgroup1".into(),
                (Some(_), None) => "cgroup1 (pids only: no memory hierarchy)".into(),
                _ => "cgroup1 (memory only: no pids hierarchy)".into(),
            },
            Cgroups::Unavailable(why) => format!("none: {why}"),
        }
    }

    /// Makes the groups for one workspace with `limits` applied: every command of the
    /// workspace joins them (before it execs), so they are made and removed once per
    /// workspace, not per command. Leftovers of processes that died without removing theirs
    /// are collected first.
    pub(crate) fn workspace_group(&self, limits: &Limits) -> Result<WorkspaceGroup, String> {
        let _ = self.collect_leaked();
        let name = unique_name();
        let mut group = WorkspaceGroup {
            dirs: Vec::new(),
            procs: Vec::new(),
            pids_events: None,
            memory_events: None,
            limits: *limits,
        };
        let add = |group: &mut WorkspaceGroup, dir: PathBuf| -> Result<(), String> {
            make_dir(&dir)?;
            group.dirs.push(dir.clone());
            let procs = dir.join("cgroup.procs");
            // Opened here, by flightdeck: the child writes to it between fork and exec,
            // after it may have dropped root (cgroup2 checks the opener's rights).
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&procs)
                .map_err(|e| format!("cannot open {}: {e}", procs.display()))?;
            group.procs.push(file);
            Ok(())
        };
        match self {
            Cgroups::Unavailable(why) => return Err(why.clone()),
            Cgroups::V2(parent) => {
                let dir = parent.join(&name);
                add(&mut group, dir.clone())?;
                if let Some(max) = limits.max_processes {
                    write(&dir.join("pids.max"), &max.to_string())?;
                    group.pids_events = Some(dir.join("pids.events"));
                }
                if let Some(mb) = limits.memory_mb {
                    write(
                        &dir.join("memory.max"),
                        &mb.saturating_mul(1024 * 1024).to_string(),
                    )?;
                    // Swap would let a command sail past its memory limit, slowly.
                    let _ = write(&dir.join("memory.swap.max"), "0");
                    group.memory_events = Some(dir.join("memory.events"));
                }
            }
            Cgroups::V1 { pids, memory } => {
                if let (Some(max), Some(parent)) = (limits.max_processes, pids) {
                    let dir = parent.join(&name);
                    add(&mut group, dir.clone())?;
                    write(&dir.join("pids.max"), &max.to_string())?;
                    group.pids_events = Some(dir.join("pids.events"));
                }
                if let (Some(mb), Some(parent)) = (limits.memory_mb, memory) {
                    let dir = parent.join(&name);
                    add(&mut group, dir.clone())?;
                    write(
                        &dir.join("memory.limit_in_bytes"),
                        &mb.saturating_mul(1024 * 1024).to_string(),
                    )?;
                    group.memory_events = Some(dir.join("memory.oom_control"));
                }
            }
        }
        Ok(group)
    }

    /// Removes the groups of flightdeck processes that are gone (killed before they could
    /// remove theirs); a group that still holds a process stays. Returns how many went.
    pub fn collect_leaked(&self) -> usize {
        let parents: Vec<&PathBuf> = match self {
            Cgroups::V2(parent) => vec![parent],
            Cgroups::V1 { pids, memory } => pids.iter().chain(memory.iter()).collect(),
            Cgroups::Unavailable(_) => Vec::new(),
        };
        let mut removed = 0;
        for parent in parents {
            let Ok(entries) = std::fs::read_dir(parent) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(pid) = owner_pid(&name.to_string_lossy()) else {
                    continue;
                };
                let alive =
                    pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
                if !alive && std::fs::remove_dir(entry.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        removed
    }
}
/// v2: the controllers must be enabled in the parent's `subtree_control`; a process may not
/// sit in a group that has children with controllers (the "no internal processes" rule), so
/// our groups live under a `flightdeck` group of their own that holds no process.
fn prepare_v2(root: &Path) -> Result<PathBuf, String> {
    let controllers = std::fs::read_to_string(root.join("cgroup.controllers")).map_err(|e| {
        format!(
            "cannot read {}: {e}",
            root.join("cgroup.controllers").display()
        )
    })?;
    for needed in ["memory", "pids"] {
        if !controllers.split_whitespace().any(|c| c == needed) {
            return Err(format!(
                "the cgroup2 hierarchy has no `{needed}` controller"
            ));
        }
    }
    let dir = root.join("flightdeck");
    make_dir(&dir)?;
    // Enabling at the root fails when the root holds processes on some hosts; then the
    // controllers may already be on, which the check below finds.
    let _ = write(&root.join("cgroup.subtree_control"), "+memory +pids");
    write(&dir.join("cgroup.subtree_control"), "+memory +pids")?;
    Ok(dir)
}

fn unique_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "ws-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The flightdeck process a group was made by: `ws-<pid>-<n>` (and `cmd-<pid>-<n>`, the
/// per-command groups of earlier releases).
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name
        .strip_prefix("ws-")
        .or_else(|| name.strip_prefix("cmd-"))?;
    rest.split('-').next()?.parse().ok()
}

fn make_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

fn write(file: &Path, value: &str) -> Result<(), String> {
    std::fs::write(file, value).map_err(|e| format!("cannot write {}: {e}", file.display()))
}

/// The cgroups a workspace's commands run in; removed when dropped (when the workspace is
/// done: its commands are gone). A group still busy then is left to
/// [`Cgroups::collect_leaked`], never waited for.
#[derive(Debug)]
pub(crate) struct WorkspaceGroup {
    dirs: Vec<PathBuf>,
    /// Each group's `cgroup.procs`, open for writing.
    procs: Vec<std::fs::File>,
    pids_events: Option<PathBuf>,
    memory_events: Option<PathBuf>,
    limits: Limits,
}

/// How often the limits were hit so far (the counters only grow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HitCounts {
    forks_refused: u64,
    oom_kills: u64,
}

impl WorkspaceGroup {
    /// Each group's `cgroup.procs`, for the child to join between fork and exec (writing
    /// `0`, itself): nothing the command runs ever runs outside them, and no shell prologue
    /// is needed.
    pub(crate) fn procs_fds(&self) -> Result<Vec<std::os::fd::OwnedFd>, crate::WorkspaceError> {
        self.procs
            .iter()
            .map(|file| {
                file.try_clone()
                    .map(std::os::fd::OwnedFd::from)
                    .map_err(|e| crate::WorkspaceError::Limits(format!("cannot join: {e}")))
            })
            .collect()
    }

    pub(crate) fn counts(&self) -> HitCounts {
        let count = |file: &Option<PathBuf>, key: &str| -> u64 {
            file.as_ref()
                .and_then(|f| std::fs::read_to_string(f).ok())
                .and_then(|text| {
                    text.lines().find_map(|line| {
                        let (k, v) = line.split_once(' ')?;
                        (k == key).then(|| v.trim().parse().ok())?
                    })
                })
                .unwrap_or(0)
        };
        HitCounts {
            forks_refused: count(&self.pids_events, "max"),
            oom_kills: count(&self.memory_events, "oom_kill"),
        }
    }

    /// Which limit a command ran into since `before` was read, if any, said for a person.
    pub(crate) fn limit_hit(&self, before: HitCounts) -> Option<String> {
        let now = self.counts();
        let mut hits = Vec::new();
        if let Some(max) = self.limits.max_processes {
            if now.forks_refused > before.forks_refused {
                hits.push(format!(
                    "the command hit the workspace's process limit (max_processes = {max}): a fork failed"
                ));
            }
        }
        if let Some(mb) = self.limits.memory_mb {
            if now.oom_kills > before.oom_kills {
                hits.push(format!(
                    "the command hit the workspace's memory limit (memory_mb = {mb}): a process was killed"
                ));
            }
        }
        (!hits.is_empty()).then(|| hits.join("; "))
    }
}

impl Drop for WorkspaceGroup {
    fn drop(&mut self) {
        self.procs.clear();
        for dir in &self.dirs {
            // Busy (a process still dying): `collect_leaked` removes it later.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_host_without_cgroups_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let found = Cgroups::detect_under(dir.path());
        assert!(
            found
                .describe()
                .starts_with("none: no writable cgroup hierarchy"),
            "{}",
            found.describe()
        );
        let limits = Limits {
            memory_mb: Some(10),
            max_processes: None,
        };
        assert!(found.workspace_group(&limits).is_err());
    }

    #[test]
    fn v1_groups_get_their_limits_count_hits_and_go_away() {
        // A fake v1 tree: plain directories behave like cgroupfs for writing the files.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("pids")).unwrap();
        std::fs::create_dir_all(dir.path().join("memory")).unwrap();
        let cgroups = Cgroups::detect_under(dir.path());
        assert_eq!(cgroups.describe(), "cgroup1");
        let limits = Limits {
            memory_mb: Some(64),
            max_processes: Some(32),
        };
        let group = cgroups.workspace_group(&limits).unwrap();
        assert_eq!(group.dirs.len(), 2);
        let pids_dir = group.dirs[0].clone();
        assert_eq!(
            std::fs::read_to_string(pids_dir.join("pids.max")).unwrap(),
            "32"
        );
        std::fs::write(pids_dir.join("pids.events"), "max 3\n").unwrap();
        let before = group.counts();
        assert_eq!(group.limit_hit(before), None, "nothing new since");
        std::fs::write(pids_dir.join("pids.events"), "max 4\n").unwrap();
        assert_eq!(
            group.limit_hit(before).unwrap(),
            "the command hit the workspace's process limit (max_processes = 32): a fork failed"
        );
        // Plain directories with files in them cannot be removed like cgroups; clear them.
        for d in &group.dirs {
            for entry in std::fs::read_dir(d).unwrap() {
                std::fs::remove_file(entry.unwrap().path()).unwrap();
            }
        }
        drop(group);
        assert!(!pids_dir.exists());
    }

    #[test]
    fn groups_of_dead_processes_are_collected_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        let cgroups = Cgroups::detect_under(dir.path());
        let Cgroups::V2(parent) = &cgroups else {
            panic!("{cgroups:?}")
        };
        // A pid above the kernel's maximum (2^22) is never alive.
        let dead = ["ws-4999999-0", "cmd-4999999-7"];
        let ours = format!("ws-{}-9", std::process::id());
        for name in dead.iter().copied().chain([ours.as_str(), "unrelated"]) {
            std::fs::create_dir_all(parent.join(name)).unwrap();
        }
        assert_eq!(cgroups.collect_leaked(), 2);
        for name in dead {
            assert!(!parent.join(name).exists(), "{name}");
        }
        assert!(parent.join(&ours).exists());
        assert!(parent.join("unrelated").exists());
    }
}
