//! flightdeck's storage: append-only, hash-chained mission timelines ([`EventStore`]), a
//! content-addressed [`ArtifactStore`], and mission leases so that one worker at a time
//! drives a mission.
//!
//! The traits speak plain Rust data (strings, integers, JSON values): no backend type leaks
//! out, so the PostgreSQL backend slots in beside [`SqliteStore`] without touching callers.
//! Invariant: this is the only crate that contains SQL. It knows missions only by id and seq;
//! what events mean is the caller's business (the caller supplies the summary projection).

mod artifacts;
mod sqlite;
mod sqlite_artifacts;
mod verify;
mod writer;

use async_trait::async_trait;
use serde_json::Value;

pub use artifacts::{ArtifactError, ArtifactStore, FsArtifactStore};
pub use flightdeck_core::StoredEvent;
pub use sqlite::SqliteStore;
pub use sqlite_artifacts::{SqliteArtifactStore, INLINE_MAX};
pub use verify::{verify_mission, verify_mission_events, VerifyFailure};

/// An event to append; the store assigns the seq and computes the hashes.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// When it happened, in milliseconds since the epoch: the caller's recorded clock reading.
    pub at_ms: i64,
    pub event_type: String,
    pub data: Value,
}

/// The mission row's projection after the appended events, computed by the caller from the
/// whole timeline (the store does not interpret events).
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    pub status: String,
    pub template: String,
    pub summary: Value,
}

/// Appends `events` to `mission`, whose last seq must be `expected_seq` (0 for a new
/// mission): optimistic concurrency, so two writers can never both advance a mission.
#[derive(Debug, Clone, PartialEq)]
pub struct AppendRequest {
    pub mission: String,
    pub expected_seq: u64,
    pub events: Vec<NewEvent>,
    pub projection: Projection,
}

/// A mission's row: the projection plus what the store itself maintains.
#[derive(Debug, Clone, PartialEq)]
pub struct MissionRow {
    pub id: String,
    pub status: String,
    pub template: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub last_seq: u64,
    pub head_hash: String,
    pub summary: Value,
    pub lease: Option<Lease>,
}

/// Who drives a mission, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub expires_ms: i64,
}

/// An event exactly as stored, `data` as its stored text: what `audit verify` checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    pub mission: String,
    pub seq: u64,
    pub at_ms: i64,
    pub event_type: String,
    pub data: String,
    pub prev_hash: String,
    pub hash: String,
}

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("mission {mission} has moved on: expected last seq {expected}, found {actual}")]
    Conflict {
        mission: String,
        expected: u64,
        actual: u64,
    },
    #[error("`{path}` is not a flightdeck database ({reason})")]
    NotFlightdeck { path: String, reason: String },
    #[error(
        "the database was written by a newer flightdeck (schema {found}, this build knows {known})"
    )]
    TooNew { found: i64, known: i64 },
    #[error("unsupported database url `{0}`")]
    UnsupportedUrl(String),
    #[error("stored event {mission}#{seq} is unreadable: {reason}")]
    Corrupt {
        mission: String,
        seq: u64,
        reason: String,
    },
    #[error("cannot append an empty batch to mission {0}")]
    EmptyAppend(String),
    #[error("failed to encode event data: {0}")]
    Encode(String),
    #[error("the store's writer has stopped")]
    WriterGone,
    /// A replay's store refused an append (it compares instead of writing).
    #[error("replay: {0}")]
    Replay(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("failed to run migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("io error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Append-only, hash-chained timelines with a per-mission summary projection.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Appends atomically (all events or none) and durably (on return the events survive a
    /// crash), updating the projection in the same transaction. Returns the stored events.
    async fn append(&self, request: AppendRequest) -> Result<Vec<StoredEvent>, StoreError>;

    /// Events of `mission` with seq > `after_seq`, in order.
    async fn events(&self, mission: &str, after_seq: u64) -> Result<Vec<StoredEvent>, StoreError>;

    /// Events as stored, for verification.
    async fn raw_events(&self, mission: &str) -> Result<Vec<RawEvent>, StoreError>;

    async fn mission(&self, id: &str) -> Result<Option<MissionRow>, StoreError>;

    /// Missions, newest first.
    async fn missions(&self, limit: u32) -> Result<Vec<MissionRow>, StoreError>;

    /// Ids of missions that start with `prefix` (at most `limit`).
    async fn mission_ids_with_prefix(
        &self,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<String>, StoreError>;

    /// Takes the lease of `mission` for `owner` until `now_ms + ttl_ms` if it is free,
    /// expired, already `owner`'s, or held by `steal_from`. Returns the lease holder after the
    /// attempt: `owner` on success.
    async fn acquire_lease(
        &self,
        mission: &str,
        owner: &str,
        now_ms: i64,
        ttl_ms: i64,
        steal_from: Option<&str>,
    ) -> Result<Option<Lease>, StoreError>;

    /// Gives the lease back if `owner` holds it.
    async fn release_lease(&self, mission: &str, owner: &str) -> Result<(), StoreError>;
}

/// Opens the store a database URL names and the artifact store that goes with it: for
/// SQLite, small artifacts in the same database, made durable with the next append (see
/// [`SqliteStore::artifacts`]), larger ones as files under `artifacts_dir`.
pub async fn open_with_artifacts(
    url: &str,
    artifacts_dir: &std::path::Path,
) -> Result<
    (
        std::sync::Arc<dyn EventStore>,
        std::sync::Arc<dyn ArtifactStore>,
    ),
    StoreError,
> {
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let store = SqliteStore::open(std::path::Path::new(path)).await?;
        let artifacts = store.artifacts(artifacts_dir);
        return Ok((std::sync::Arc::new(store), std::sync::Arc::new(artifacts)));
    }
    Err(StoreError::UnsupportedUrl(url.to_string()))
}

/// Opens the store a database URL names (`sqlite://PATH`; `postgres://` arrives with the
/// PostgreSQL backend).
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn EventStore>, StoreError> {
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let store = SqliteStore::open(std::path::Path::new(path)).await?;
        return Ok(std::sync::Arc::new(store));
    }
    Err(StoreError::UnsupportedUrl(url.to_string()))
}
