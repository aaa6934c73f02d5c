//! Artifacts kept in the SQLite store's database, made durable by the same commit as the next
//! append: one fsync per append instead of two more per artifact file.
//!
//! `put` of a small artifact stages its bytes in memory and returns; the store's writer
//! inserts everything staged into the transaction of its next batch, before that batch's
//! events. An event names only artifacts put before it was appended, so an event is never
//! durable while an artifact it references is not. An artifact put and never referenced is
//! lost if the process dies before the next append, which no timeline can notice. Large
//! artifacts (over [`INLINE_MAX`]) stay files, written durably by `put` as before, so a big
//! command output neither sits in memory nor bloats the database.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use flightdeck_core::Digest;
use tokio::sync::oneshot;

use crate::artifacts::{ArtifactError, ArtifactStore, FsArtifactStore};
use crate::read::{self, Readers};
use crate::writer::{Job, Writer};

/// The largest artifact stored in the database; larger ones are files.
pub const INLINE_MAX: usize = 1024 * 1024;

/// Staged bytes beyond which `put` commits them at once rather than waiting for an append,
/// so that puts without appends cannot hold unbounded memory.
const STAGED_MAX: usize = 64 * 1024 * 1024;

/// Artifacts put but not yet committed, shared by the artifact store (which adds) and the
/// writer (which commits and then removes).
#[derive(Default)]
pub(crate) struct Staged {
    inner: Mutex<StagedInner>,
}

#[derive(Default)]
struct StagedInner {
    bytes: HashMap<Digest, Arc<[u8]>>,
    total: usize,
}

impl Staged {
    fn lock(&self) -> MutexGuard<'_, StagedInner> {
        // The map stays consistent even if a holder panicked: every update is one insert or
        // remove.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Stages `bytes`; returns the total staged.
    fn insert(&self, digest: Digest, bytes: &[u8]) -> usize {
        let mut inner = self.lock();
        if !inner.bytes.contains_key(&digest) {
            inner.total += bytes.len();
            inner.bytes.insert(digest, Arc::from(bytes));
        }
        inner.total
    }

    fn get(&self, digest: &Digest) -> Option<Arc<[u8]>> {
        self.lock().bytes.get(digest).cloned()
    }

    /// Everything staged now, to commit.
    pub(crate) fn snapshot(&self) -> Vec<(Digest, Arc<[u8]>)> {
        self.lock()
            .bytes
            .iter()
            .map(|(d, b)| (d.clone(), b.clone()))
            .collect()
    }

    /// Forgets what a commit made durable.
    pub(crate) fn committed(&self, done: &[(Digest, Arc<[u8]>)]) {
        let mut inner = self.lock();
        for (digest, _) in done {
            if let Some(bytes) = inner.bytes.remove(digest) {
                inner.total -= bytes.len();
            }
        }
    }
}

/// [`ArtifactStore`] in the SQLite store's database (small artifacts) and files under a
/// directory (large ones, and artifacts written before artifacts moved into the database).
/// Made by [`crate::SqliteStore::artifacts`]: its puts become durable with that store's
/// appends. That of a read-only store refuses puts ([`ArtifactError::ReadOnly`]), and its
/// `local_path` names only artifacts that are files already.
pub struct SqliteArtifactStore {
    pub(crate) files: FsArtifactStore,
    pub(crate) db_path: PathBuf,
    pub(crate) readers: Arc<Readers>,
    pub(crate) staged: Arc<Staged>,
    /// `None` when read-only.
    pub(crate) writer: Option<Arc<Writer>>,
}

impl Drop for SqliteArtifactStore {
    fn drop(&mut self) {
        // As the store's: read connections close before the writer's (see there).
        self.readers.close_idle();
    }
}

impl std::fmt::Debug for SqliteArtifactStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteArtifactStore")
            .field("db_path", &self.db_path)
            .field("files", &self.files)
            .finish()
    }
}

impl SqliteArtifactStore {
    /// Commits every staged artifact now, without waiting for an append.
    pub async fn flush(&self) -> Result<(), ArtifactError> {
        let (reply, answer) = oneshot::channel();
        let gone = || self.db_error("the store's writer has stopped".into());
        let Some(writer) = &self.writer else {
            return Err(ArtifactError::ReadOnly);
        };
        if !writer.send(Job::Flush { reply }) {
            return Err(gone());
        }
        answer
            .await
            .map_err(|_| gone())?
            .map_err(|e| self.db_error(e.to_string()))
    }

    fn db_error(&self, message: String) -> ArtifactError {
        ArtifactError::Io {
            path: self.db_path.display().to_string(),
            source: std::io::Error::other(message),
        }
    }

    /// The committed bytes of `digest` in the database, read on this thread (for callers
    /// that are not async).
    fn read_blocking(&self, digest: &Digest) -> Result<Option<Vec<u8>>, ArtifactError> {
        let digest = digest.to_string();
        self.readers
            .run_blocking(&|conn| read::artifact(conn, &digest))
            .map_err(|e| self.db_error(e.to_string()))
    }

    async fn read_db(&self, digest: &Digest) -> Result<Option<Vec<u8>>, ArtifactError> {
        let digest = digest.to_string();
        self.readers
            .run(move |conn| read::artifact(conn, &digest))
            .await
            .map_err(|e| self.db_error(e.to_string()))
    }
}

#[async_trait]
impl ArtifactStore for SqliteArtifactStore {
    async fn put(&self, bytes: &[u8]) -> Result<Digest, ArtifactError> {
        if self.writer.is_none() {
            return Err(ArtifactError::ReadOnly);
        }
        if bytes.len() > INLINE_MAX {
            return self.files.put(bytes).await;
        }
        let digest = Digest::of(bytes);
        if self.staged.insert(digest.clone(), bytes) > STAGED_MAX {
            self.flush().await?;
        }
        Ok(digest)
    }

    async fn get(&self, digest: &Digest) -> Result<Vec<u8>, ArtifactError> {
        if let Some(bytes) = self.staged.get(digest) {
            return Ok(bytes.to_vec());
        }
        match self.read_db(digest).await? {
            Some(bytes) => crate::artifacts::checked(digest, bytes),
            None => self.files.get(digest).await,
        }
    }

    /// One query per few hundred digests for those in the database; the rest one by one.
    async fn get_many(&self, digests: &[Digest]) -> Result<Vec<Vec<u8>>, ArtifactError> {
        let wanted: Vec<String> = digests.iter().map(|d| d.to_string()).collect();
        let found: std::collections::HashMap<String, Vec<u8>> = self
            .readers
            .run(move |conn| read::artifacts(conn, &wanted))
            .await
            .map_err(|e| self.db_error(e.to_string()))?
            .into_iter()
            .collect();
        let mut all = Vec::with_capacity(digests.len());
        for digest in digests {
            match found.get(&digest.to_string()) {
                Some(bytes) => all.push(crate::artifacts::checked(digest, bytes.clone())?),
                None => all.push(self.get(digest).await?),
            }
        }
        Ok(all)
    }

    async fn contains(&self, digest: &Digest) -> Result<bool, ArtifactError> {
        if self.staged.get(digest).is_some() || self.read_db(digest).await?.is_some() {
            return Ok(true);
        }
        self.files.contains(digest).await
    }

    /// The artifact's file; an artifact held in the database is first copied out to it
    /// (written durably like any artifact file, so the copy is whole or absent).
    fn local_path(&self, digest: &Digest) -> Option<PathBuf> {
        let path = self.files.local_path(digest)?;
        if path.is_file() {
            return Some(path);
        }
        self.writer.as_ref()?; // a read-only store writes no file
        let bytes = match self.staged.get(digest) {
            Some(bytes) => bytes.to_vec(),
            None => self.read_blocking(digest).ok().flatten()?,
        };
        if &Digest::of(&bytes) != digest {
            return None;
        }
        self.files.put_blocking(&bytes).ok()?;
        Some(path)
    }
}
