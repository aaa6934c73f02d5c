//! Who works in a mission's workspace on this machine: one process at a time.
//!
//! A driver holds `<workspaces>/.in-use/<mission>` locked (`flock`) for as long as it
//! drives. Leases say who may *write the timeline*; this says who may *touch the worktree*:
//! a process paused past its lease (whose appends are fenced) may still have a command
//! running in the worktree when it wakes, so a second process of the same machine that
//! claimed the mission meanwhile waits until the first is gone. The kernel lets go of the
//! lock when a process dies, however it dies.

use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

/// The lock on one mission's workspace, held until dropped.
#[derive(Debug)]
pub struct WorkspaceInUse {
    _lock: Flock<std::fs::File>,
}

impl WorkspaceInUse {
    /// Takes the lock on mission `id`'s workspace under `workspaces_dir`, or `Ok(None)`
    /// when another process of this machine holds it.
    pub fn try_take(workspaces_dir: &Path, id: &str) -> std::io::Result<Option<WorkspaceInUse>> {
        let dir = workspaces_dir.join(".in-use");
        std::fs::create_dir_all(&dir)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(id))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Some(WorkspaceInUse { _lock: lock })),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, errno)) => Err(std::io::Error::from(errno)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_free_again_once_dropped() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let first = WorkspaceInUse::try_take(dir.path(), "m-a").unwrap_or_else(|e| panic!("{e}"));
        assert!(first.is_some());
        // flock is per open file description: a second open in this process conflicts too.
        assert!(WorkspaceInUse::try_take(dir.path(), "m-a")
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none());
        assert!(WorkspaceInUse::try_take(dir.path(), "m-b")
            .unwrap_or_else(|e| panic!("{e}"))
            .is_some());
        drop(first);
        assert!(WorkspaceInUse::try_take(dir.path(), "m-a")
            .unwrap_or_else(|e| panic!("{e}"))
            .is_some());
    }
}
