//! Change feeds: wake-ups when a database may have changed, without polling.
//!
//! In-process, the store's writer bumps a `tokio::sync::watch` counter after each commit
//! that appended events or posted or decided an input. Across processes (SQLite), one
//! inotify watch on the database's directory per store, read by a thread started on the
//! first [`crate::EventStore::subscribe`] and shared by every feed of the store, bumps the
//! same counter when the database file or its `-wal` is modified, closed (after writing or
//! not), or renamed into place.
//!
//! Why "closed": SQLite makes a commit visible to readers by updating the WAL index, a
//! shared memory mapping, which raises no inotify event, and it does so after writing the
//! WAL frames (which do raise one, but too early: a reader woken by them may not see the
//! commit yet). So every writer of this store, once a commit is visible, opens the `-wal`
//! read-only and closes it again: an event (`IN_CLOSE_NOWRITE`) that comes after the
//! commit, whichever process made it. (Not a change of its times, which dirties the
//! `-wal`'s inode, so that the next commit's fsync commits the file system's journal too: a
//! write + fsync loop on this machine's disk did 23-38% fewer fsyncs per second with a
//! `utimensat` after each, and the same within noise with an open and close. Opening and
//! closing changes nothing; SQLite holds no lock on the `-wal` that closing another
//! descriptor of it could drop.)
//! Only a writer that does not do this (an older flightdeck, the `sqlite3` shell) can leave
//! a feed woken before its commit and not after.
//!
//! Limits: inotify sees writes by processes on this machine (not through a network file
//! system from another one); a feed only ever says "something may have changed", possibly
//! more often than needed (including for this store's own writes).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use tokio::sync::watch;

use crate::StoreError;

/// Wakes its holder when the store may have changed since the previous call. See
/// [`crate::EventStore::subscribe`].
pub struct ChangeFeed {
    changes: watch::Receiver<u64>,
    /// Keeps the inotify thread going while the feed lives.
    _watcher: Option<Arc<Watcher>>,
    /// A feed that never fires holds its own sender, so it never closes either.
    _never: Option<watch::Sender<u64>>,
}

impl std::fmt::Debug for ChangeFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeFeed").finish_non_exhaustive()
    }
}

impl ChangeFeed {
    /// Returns once something may have changed since the previous call (or since the feed
    /// was made): changes in between are coalesced into one wake-up, and a wake-up may be
    /// spurious. Cancel-safe. [`StoreError::Closed`] once nothing can wake it any more.
    pub async fn changed(&mut self) -> Result<(), StoreError> {
        self.changes.changed().await.map_err(|_| StoreError::Closed)
    }

    /// Whether something may have changed since the previous call or wake-up, without
    /// waiting (and marks it seen).
    pub fn has_changed(&mut self) -> bool {
        let changed = self.changes.has_changed().unwrap_or(false);
        if changed {
            self.changes.borrow_and_update();
        }
        changed
    }

    /// A feed woken by `changes` (a store that is not SQLite's: a replay's).
    pub fn from_watch(changes: watch::Receiver<u64>) -> ChangeFeed {
        ChangeFeed {
            changes,
            _watcher: None,
            _never: None,
        }
    }

    /// A feed that never fires: for a store that nothing else writes to (a replay).
    pub fn never() -> ChangeFeed {
        let (sender, changes) = watch::channel(0);
        ChangeFeed {
            changes,
            _watcher: None,
            _never: Some(sender),
        }
    }

    pub(crate) fn new(changes: watch::Receiver<u64>, watcher: Option<Arc<Watcher>>) -> ChangeFeed {
        ChangeFeed {
            changes,
            _watcher: watcher,
            _never: None,
        }
    }
}

/// Marks the store's counter changed: feeds wake.
pub(crate) fn bump(changes: &watch::Sender<u64>) {
    changes.send_modify(|n| *n = n.wrapping_add(1));
}

/// The `-wal` of a database.
pub(crate) fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// The file a writer writes after a commit that posted an input: `<db>-inbox` (empty).
pub(crate) fn inbox_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-inbox");
    PathBuf::from(name)
}

/// Tells other processes' input feeds that an input was posted (the commit is visible):
/// opens `<db>-inbox` for writing, creating it the first time, and closes it. Best effort.
pub(crate) fn signal_post(inbox: &Path) {
    drop(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(inbox),
    );
}

/// Tells other processes' feeds that a commit is visible: opens and closes the `-wal`.
/// Best effort: a missing `-wal` (no WAL yet) has nothing to tell.
pub(crate) fn signal_commit(wal: &Path) {
    drop(std::fs::File::open(wal));
}

/// One inotify watch on a database's directory and the thread that reads it.
pub(crate) struct Watcher {
    inotify: Arc<Inotify>,
    wd: WatchDescriptor,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    /// Watches the directory of `db` (symbolic links resolved: SQLite puts the `-wal` next
    /// to the file they lead to). The watch is in place when this returns, so no change
    /// made afterwards is missed.
    pub(crate) fn start(
        db: &Path,
        changes: Arc<watch::Sender<u64>>,
        inputs: Arc<watch::Sender<u64>>,
    ) -> Result<Watcher, StoreError> {
        let io = |path: &Path, e: nix::Error| StoreError::Io {
            path: path.display().to_string(),
            source: std::io::Error::from(e),
        };
        let db = std::fs::canonicalize(db).unwrap_or_else(|_| db.to_path_buf());
        let dir = match db.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let Some(name) = db.file_name().map(|n| n.to_os_string()) else {
            return Err(StoreError::Io {
                path: db.display().to_string(),
                source: std::io::Error::other("not a file name"),
            });
        };
        let mut wal_name = name.clone();
        wal_name.push("-wal");
        let mut inbox_name = name.clone();
        inbox_name.push("-inbox");
        let inotify = Arc::new(Inotify::init(InitFlags::IN_CLOEXEC).map_err(|e| io(&dir, e))?);
        let wd = inotify
            .add_watch(
                &dir,
                AddWatchFlags::IN_MODIFY
                    | AddWatchFlags::IN_CLOSE_WRITE
                    | AddWatchFlags::IN_MOVED_TO
                    | AddWatchFlags::IN_CLOSE_NOWRITE,
            )
            .map_err(|e| io(&dir, e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let inotify = inotify.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("flightdeck-store-feed".into())
                .spawn(move || {
                    let names = Names {
                        database: [name, wal_name],
                        inbox: inbox_name,
                    };
                    watch_loop(&inotify, wd, &names, &stop, &changes, &inputs);
                })
                .map_err(|source| StoreError::Io {
                    path: dir.display().to_string(),
                    source,
                })?
        };
        Ok(Watcher {
            inotify,
            wd,
            stop,
            thread: Some(thread),
        })
    }
}

impl Watcher {
    /// Watches the `-inbox` file itself (it must exist): woken only when an input is
    /// posted, not by every write to the database (what a driver, which appends all the
    /// time, waits on). Bumps `inputs` on every close after writing; if the file goes away,
    /// bumps it once and stops (the driver's lease ticks still look at the inbox).
    pub(crate) fn start_inbox(
        inbox: &Path,
        inputs: Arc<watch::Sender<u64>>,
    ) -> Result<Watcher, StoreError> {
        let io = |e: nix::Error| StoreError::Io {
            path: inbox.display().to_string(),
            source: std::io::Error::from(e),
        };
        let inotify = Arc::new(Inotify::init(InitFlags::IN_CLOEXEC).map_err(io)?);
        let wd = inotify
            .add_watch(inbox, AddWatchFlags::IN_CLOSE_WRITE)
            .map_err(io)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let inotify = inotify.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("flightdeck-store-inbox".into())
                .spawn(move || loop {
                    let gone = match inotify.read_events() {
                        Ok(events) => events
                            .iter()
                            .any(|e| e.wd == wd && e.mask.contains(AddWatchFlags::IN_IGNORED)),
                        Err(nix::Error::EINTR) => continue,
                        Err(_) => true,
                    };
                    bump(&inputs);
                    if gone || stop.load(Ordering::SeqCst) {
                        return;
                    }
                })
                .map_err(|source| StoreError::Io {
                    path: inbox.display().to_string(),
                    source,
                })?
        };
        Ok(Watcher {
            inotify,
            wd,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Removing the watch queues IN_IGNORED, which ends the thread's blocking read. If
        // the watch is already gone (the directory was removed), so is the thread, or it
        // is about to be: it is not waited for.
        if self.inotify.rm_watch(self.wd).is_ok() {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// The files a watcher listens for, in the database's directory.
struct Names {
    /// The database and its `-wal`, in that order: anything changed.
    database: [OsString; 2],
    /// `-inbox`: an input was posted.
    inbox: OsString,
}

fn watch_loop(
    inotify: &Inotify,
    wd: WatchDescriptor,
    names: &Names,
    stop: &AtomicBool,
    changes: &watch::Sender<u64>,
    inputs: &watch::Sender<u64>,
) {
    loop {
        match inotify.read_events() {
            Ok(events) => {
                let (mut changed, mut posted) = (false, false);
                let mut gone = false;
                for event in &events {
                    if event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                        // Events were lost: anything may have changed.
                        (changed, posted) = (true, true);
                    }
                    if event.wd == wd && event.mask.contains(AddWatchFlags::IN_IGNORED) {
                        gone = true;
                    }
                    if let Some(name) = event.name.as_ref() {
                        if *name == names.database[1] {
                            // The `-wal`: written, or opened and closed by `signal_commit`.
                            changed = true;
                        } else if *name == names.database[0] {
                            // The database file: written only. Readers open and close it
                            // (an `immutable=1` read does at every read), and a feed that
                            // woke on its own reads would spin.
                            changed |= !event.mask.contains(AddWatchFlags::IN_CLOSE_NOWRITE);
                        } else if *name == names.inbox
                            && event.mask.contains(AddWatchFlags::IN_CLOSE_WRITE)
                        {
                            posted = true;
                        }
                    }
                }
                if changed {
                    bump(changes);
                }
                if posted {
                    bump(inputs);
                }
                if gone || stop.load(Ordering::SeqCst) {
                    return;
                }
            }
            Err(nix::Error::EINTR) => {}
            Err(_) => {
                // The watch cannot be read any more: wake the feeds once (they re-read and
                // go on with in-process wake-ups only) rather than go quiet silently.
                bump(changes);
                bump(inputs);
                return;
            }
        }
    }
}
