//! Memory and process limits for one command, through cgroups (v2 where the unified hierarchy
//! has the controllers, else v1's `memory` and `pids` hierarchies). A command joins its group
//! before it execs the sandbox (a `sh` prologue writes its own pid), so nothing it starts can
//! escape the limit by forking early. Where the host gives us no writable cgroups, the limits
//! are not enforced and the workspace says so (`workspace.provisioned.limits`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

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

    /// Makes the groups for one command with `limits` applied. `None` when nothing is to be
    /// limited or limits are unavailable.
    pub(crate) fn group_for(&self, limits: &Limits) -> Result<Option<CommandGroup>, String> {
        if limits.is_empty() {
            return Ok(None);
        }
        let name = unique_name();
        let mut group = CommandGroup {
            dirs: Vec::new(),
            pids_events: None,
            memory_events: None,
            limits: *limits,
        };
        match self {
            Cgroups::Unavailable(_) => return Ok(None),
            Cgroups::V2(parent) => {
                let dir = parent.join(&name);
                make_dir(&dir)?;
                group.dirs.push(dir.clone());
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
                    make_dir(&dir)?;
                    group.dirs.push(dir.clone());
                    write(&dir.join("pids.max"), &max.to_string())?;
                    group.pids_events = Some(dir.join("pids.events"));
                }
                if let (Some(mb), Some(parent)) = (limits.memory_mb, memory) {
                    let dir = parent.join(&name);
                    make_dir(&dir)?;
                    group.dirs.push(dir.clone());
                    write(
                        &dir.join("memory.limit_in_bytes"),
                        &mb.saturating_mul(1024 * 1024).to_string(),
                    )?;
                    group.memory_events = Some(dir.join("memory.oom_control"));
                }
            }
        }
        Ok(Some(group))
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
        "cmd-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn make_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

fn write(file: &Path, value: &str) -> Result<(), String> {
    std::fs::write(file, value).map_err(|e| format!("cannot write {}: {e}", file.display()))
}

/// The cgroups one command runs in; removed when dropped (after the command and everything
/// it started are gone: the sandbox's PID namespace dies with it).
#[derive(Debug)]
pub(crate) struct CommandGroup {
    dirs: Vec<PathBuf>,
    pids_events: Option<PathBuf>,
    memory_events: Option<PathBuf>,
    limits: Limits,
}

impl CommandGroup {
    /// The files a command writes its pid to, to join.
    pub(crate) fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Which limit the command ran into, if any, said for a person.
    pub(crate) fn limit_hit(&self) -> Option<String> {
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
        let mut hits = Vec::new();
        if let Some(max) = self.limits.max_processes {
            if count(&self.pids_events, "max") > 0 {
                hits.push(format!(
                    "the command hit the workspace's process limit (max_processes = {max}): a fork failed"
                ));
            }
        }
        if let Some(mb) = self.limits.memory_mb {
            if count(&self.memory_events, "oom_kill") > 0 {
                hits.push(format!(
                    "the command hit the workspace's memory limit (memory_mb = {mb}): a process was killed"
                ));
            }
        }
        (!hits.is_empty()).then(|| hits.join("; "))
    }
}

impl Drop for CommandGroup {
    fn drop(&mut self) {
        for dir in &self.dirs {
            // A group with a process left cannot be removed; that process dies with the
            // sandbox's PID namespace moments later, so try again briefly.
            for _ in 0..50 {
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}

/// The `sh` prologue that joins the groups, then execs the rest of the arguments:
/// `sh -c PROLOGUE sh N FILE… PROGRAM ARGS…`.
pub(crate) const JOIN_PROLOGUE: &str = r#"n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || { echo "[flightdeck: cannot join the cgroup $1, so the workspace's limits cannot be applied]"; exit 125; }; shift; n=$((n-1)); done; exec "$@""#;

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
        assert!(found
            .group_for(&Limits {
                memory_mb: Some(10),
                max_processes: None
            })
            .unwrap()
            .is_none());
    }

    #[test]
    fn v1_groups_get_their_limits_and_go_away() {
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
        let group = cgroups.group_for(&limits).unwrap().unwrap();
        let files = group.procs_files();
        assert_eq!(files.len(), 2);
        let pids_dir = files[0].parent().unwrap().to_path_buf();
        assert_eq!(
            std::fs::read_to_string(pids_dir.join("pids.max")).unwrap(),
            "32"
        );
        std::fs::write(pids_dir.join("pids.events"), "max 3\n").unwrap();
        assert_eq!(
            group.limit_hit().unwrap(),
            "the command hit the workspace's process limit (max_processes = 32): a fork failed"
        );
        // Plain directories with files in them cannot be removed like cgroups; clear them.
        for f in &files {
            let d = f.parent().unwrap();
            for entry in std::fs::read_dir(d).unwrap() {
                std::fs::remove_file(entry.unwrap().path()).unwrap();
            }
        }
        drop(group);
        assert!(!pids_dir.exists());
    }
}
