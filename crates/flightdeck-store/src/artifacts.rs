//! Content-addressed artifacts (`sha256:<hex>`): model requests and responses, command
//! output, patches, PR descriptions, template sources. Events carry digests; bytes live here.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use flightdeck_core::Digest;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArtifactError {
    #[error("no artifact {0}")]
    NotFound(Digest),
    #[error("artifact {digest} is corrupt: its bytes hash to {actual}")]
    Corrupt { digest: Digest, actual: Digest },
    #[error("io error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The artifact store of a read-only store.
    #[error("the artifact store is open read-only")]
    ReadOnly,
    /// The database that holds the artifacts (PostgreSQL) failed.
    #[error("artifact database error: {0}")]
    Database(String),
}

/// `bytes` if they hash to `digest`; what they hash to otherwise.
pub(crate) fn checked(digest: &Digest, bytes: Vec<u8>) -> Result<Vec<u8>, ArtifactError> {
    let actual = Digest::of(&bytes);
    if &actual != digest {
        return Err(ArtifactError::Corrupt {
            digest: digest.clone(),
            actual,
        });
    }
    Ok(bytes)
}

/// Where artifact bytes live.
#[async_trait]
pub trait ArtifactStore: Send + Sync {
    /// Stores `bytes` and returns their digest. Storing the same bytes twice is free. The
    /// bytes are durable no later than any event that references them: a file store makes
    /// them durable before it returns; a store that shares the event store's database
    /// ([`crate::SqliteArtifactStore`]) makes them durable in the commit of the next append
    /// through that event store, so that an event and what it references reach the disk
    /// together.
    async fn put(&self, bytes: &[u8]) -> Result<Digest, ArtifactError>;
    /// The bytes of `digest`, checked against it.
    async fn get(&self, digest: &Digest) -> Result<Vec<u8>, ArtifactError>;
    /// The bytes of several artifacts, checked, in the order given (a store may read them
    /// in one go; the default reads them one by one).
    async fn get_many(&self, digests: &[Digest]) -> Result<Vec<Vec<u8>>, ArtifactError> {
        let mut all = Vec::with_capacity(digests.len());
        for digest in digests {
            all.push(self.get(digest).await?);
        }
        Ok(all)
    }
    /// Whether the artifact exists.
    async fn contains(&self, digest: &Digest) -> Result<bool, ArtifactError>;
    /// A path a person can open, when the artifact is a local file.
    fn local_path(&self, digest: &Digest) -> Option<PathBuf>;
}

/// Artifacts as files under a directory: `<root>/sha256/<2 hex>/<62 hex>`.
#[derive(Debug, Clone)]
pub struct FsArtifactStore {
    root: PathBuf,
}

impl FsArtifactStore {
    pub fn new(root: impl Into<PathBuf>) -> FsArtifactStore {
        FsArtifactStore { root: root.into() }
    }

    /// [`ArtifactStore::put`] for callers that are not async.
    pub(crate) fn put_blocking(&self, bytes: &[u8]) -> Result<Digest, ArtifactError> {
        let digest = Digest::of(bytes);
        let path = self.path_of(&digest);
        if path.exists() {
            return Ok(digest);
        }
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        // Write to a temporary file, sync, then rename: a reader never sees half an artifact
        // and a crash leaves either nothing or the whole file.
        let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io_error(&dir))?;
        tmp.write_all(bytes).map_err(io_error(&path))?;
        tmp.as_file().sync_all().map_err(io_error(&path))?;
        tmp.persist(&path).map_err(|e| ArtifactError::Io {
            path: path.display().to_string(),
            source: e.error,
        })?;
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error(&dir))?;
        Ok(digest)
    }

    fn path_of(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root.join("sha256").join(&hex[..2]).join(&hex[2..])
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ArtifactError + '_ {
    move |source| ArtifactError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[async_trait]
impl ArtifactStore for FsArtifactStore {
    async fn put(&self, bytes: &[u8]) -> Result<Digest, ArtifactError> {
        self.put_blocking(bytes)
    }

    async fn get(&self, digest: &Digest) -> Result<Vec<u8>, ArtifactError> {
        let path = self.path_of(digest);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ArtifactError::NotFound(digest.clone()))
            }
            Err(e) => return Err(io_error(&path)(e)),
        };
        checked(digest, bytes)
    }

    async fn contains(&self, digest: &Digest) -> Result<bool, ArtifactError> {
        Ok(self.path_of(digest).is_file())
    }

    fn local_path(&self, digest: &Digest) -> Option<PathBuf> {
        Some(self.path_of(digest))
    }
}
