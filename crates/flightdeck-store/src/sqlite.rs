//! The SQLite backend: one file, WAL, `synchronous = FULL` (an append has reached the disk
//! when it returns). Reads go through a sqlx pool; every write of a timeline goes through the
//! one writer thread of `writer.rs`, which batches concurrent appends into one transaction
//! (group commit), so many missions appending at once share one fsync.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flightdeck_core::StoredEvent;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Row};
use tokio::sync::oneshot;

use crate::artifacts::FsArtifactStore;
use crate::sqlite_artifacts::{SqliteArtifactStore, Staged};
use crate::writer::{self, Job, Writer};
use crate::{AppendRequest, EventStore, Lease, MissionRow, RawEvent, StoreError};

/// Written into the database header (`PRAGMA application_id`) so that a flightdeck database
/// is recognisable and a foreign one is refused before anything is written to it. "FDK1".
const APPLICATION_ID: i64 = 0x4644_4B31;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// [`EventStore`] on a SQLite file.
pub struct SqliteStore {
    path: PathBuf,
    pool: SqlitePool,
    writer: Arc<Writer>,
    /// Artifacts put through [`SqliteStore::artifacts`] and not yet committed.
    staged: Arc<Staged>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`. A file that is not a flightdeck
    /// database is refused before anything is written to it.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        probe(path).await?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await?;
        // Marked as ours before any table exists: another process opening the file while
        // this one migrates must not take the half-made database for someone else's.
        sqlx::raw_sql(&format!("PRAGMA application_id = {APPLICATION_ID}"))
            .execute(&pool)
            .await?;
        MIGRATOR.run(&pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::VersionMissing(found) => StoreError::TooNew {
                found,
                known: MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0),
            },
            other => StoreError::Migrate(other),
        })?;
        let staged = Arc::new(Staged::default());
        let writer = Arc::new(writer::spawn(path, staged.clone())?);
        Ok(SqliteStore {
            path: path.to_path_buf(),
            pool,
            writer,
            staged,
        })
    }

    /// The artifact store that goes with this event store: artifacts up to
    /// [`crate::sqlite_artifacts::INLINE_MAX`] bytes in the database, made durable in the
    /// commit of this store's next append; larger ones (and any written by earlier versions)
    /// as files under `files_root`.
    pub fn artifacts(&self, files_root: impl Into<PathBuf>) -> SqliteArtifactStore {
        SqliteArtifactStore {
            files: FsArtifactStore::new(files_root),
            db_path: self.path.clone(),
            pool: self.pool.clone(),
            staged: self.staged.clone(),
            writer: self.writer.clone(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Refuses a file that exists and is not (an empty or a) flightdeck database.
async fn probe(path: &Path) -> Result<(), StoreError> {
    let not_ours = |reason: String| StoreError::NotFlightdeck {
        path: path.display().to_string(),
        reason,
    };
    let metadata = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(StoreError::Io {
                path: path.display().to_string(),
                source,
            })
        }
    };
    if metadata.is_dir() {
        return Err(not_ours("it is a directory".into()));
    }
    if metadata.len() == 0 {
        return Ok(());
    }
    let mut header = [0u8; 16];
    let read = std::fs::File::open(path).and_then(|mut f| {
        use std::io::Read;
        f.read(&mut header)
    });
    match read {
        Ok(16) if &header == b"SQLite format 3\0" => {}
        Ok(_) => return Err(not_ours("it is not a SQLite database".into())),
        Err(source) => {
            return Err(StoreError::Io {
                path: path.display().to_string(),
                source,
            })
        }
    }
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await?;
    let app_id: i64 = sqlx::query_scalar("PRAGMA application_id")
        .fetch_one(&mut conn)
        .await?;
    if app_id == APPLICATION_ID {
        return Ok(());
    }
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name LIMIT 5",
    )
    .fetch_all(&mut conn)
    .await?;
    if app_id == 0 && tables.is_empty() {
        return Ok(());
    }
    if app_id != 0 {
        return Err(not_ours(format!("its application_id is {app_id:#x}")));
    }
    Err(not_ours(format!(
        "it holds other tables: {}",
        tables.join(", ")
    )))
}

fn raw_from_row(row: &SqliteRow) -> Result<RawEvent, sqlx::Error> {
    Ok(RawEvent {
        mission: row.try_get(0)?,
        seq: row.try_get::<i64, _>(1)? as u64,
        at_ms: row.try_get(2)?,
        event_type: row.try_get(3)?,
        data: row.try_get(4)?,
        prev_hash: row.try_get(5)?,
        hash: row.try_get(6)?,
    })
}

fn mission_from_row(row: &SqliteRow) -> Result<MissionRow, StoreError> {
    let id: String = row.try_get("id")?;
    let summary_text: String = row.try_get("summary")?;
    let last_seq = row.try_get::<i64, _>("last_seq")? as u64;
    let head_hash: String = row.try_get("head_hash")?;
    let mut summary: serde_json::Value =
        serde_json::from_str(&summary_text).map_err(|e| StoreError::Corrupt {
            mission: id.clone(),
            seq: last_seq,
            reason: format!("summary is not JSON: {e}"),
        })?;
    // The projection is computed before the hashes exist; the store stamps the head.
    if let Some(object) = summary.as_object_mut() {
        object.insert("events".into(), last_seq.into());
        object.insert("head_hash".into(), head_hash.clone().into());
    }
    let lease_owner: Option<String> = row.try_get("lease_owner")?;
    let lease_expires: Option<i64> = row.try_get("lease_expires_ms")?;
    Ok(MissionRow {
        id,
        status: row.try_get("status")?,
        template: row.try_get("template")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
        last_seq,
        head_hash,
        summary,
        lease: lease_owner.map(|owner| Lease {
            owner,
            expires_ms: lease_expires.unwrap_or(0),
        }),
    })
}

const MISSION_COLUMNS: &str = "id, status, template, created_at_ms, updated_at_ms, last_seq, head_hash, summary, lease_owner, lease_expires_ms";

#[async_trait]
impl EventStore for SqliteStore {
    async fn append(&self, request: AppendRequest) -> Result<Vec<StoredEvent>, StoreError> {
        let (reply, answer) = oneshot::channel();
        if !self.writer.send(Job::Append { request, reply }) {
            return Err(StoreError::WriterGone);
        }
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    async fn events(&self, mission: &str, after_seq: u64) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT mission, seq, at_ms, type, data, prev_hash, hash FROM events
             WHERE mission = ?1 AND seq > ?2 ORDER BY seq",
        )
        .bind(mission)
        .bind(after_seq as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let raw = raw_from_row(row)?;
                raw.into_stored()
            })
            .collect()
    }

    async fn raw_events(&self, mission: &str) -> Result<Vec<RawEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT mission, seq, at_ms, type, data, prev_hash, hash FROM events WHERE mission = ?1 ORDER BY seq",
        )
        .bind(mission)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(raw_from_row).collect::<Result<_, _>>()?)
    }

    async fn mission(&self, id: &str) -> Result<Option<MissionRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {MISSION_COLUMNS} FROM missions WHERE id = ?1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(mission_from_row).transpose()
    }

    async fn missions(&self, limit: u32) -> Result<Vec<MissionRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {MISSION_COLUMNS} FROM missions ORDER BY created_at_ms DESC, id DESC LIMIT ?1"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(mission_from_row).collect()
    }

    async fn mission_ids_with_prefix(
        &self,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        // `substr` rather than LIKE: ids are compared as plain text, no wildcards.
        Ok(sqlx::query_scalar(
            "SELECT id FROM missions WHERE substr(id, 1, length(?1)) = ?1 ORDER BY id LIMIT ?2",
        )
        .bind(prefix)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn acquire_lease(
        &self,
        mission: &str,
        owner: &str,
        now_ms: i64,
        ttl_ms: i64,
        steal_from: Option<&str>,
    ) -> Result<Option<Lease>, StoreError> {
        sqlx::query(
            "UPDATE missions SET lease_owner = ?2, lease_expires_ms = ?3
             WHERE id = ?1 AND (lease_owner IS NULL OR lease_owner = ?2 OR lease_expires_ms <= ?4
                                OR lease_owner = ?5)",
        )
        .bind(mission)
        .bind(owner)
        .bind(now_ms + ttl_ms)
        .bind(now_ms)
        .bind(steal_from)
        .execute(&self.pool)
        .await?;
        let holder: Option<(Option<String>, Option<i64>)> =
            sqlx::query_as("SELECT lease_owner, lease_expires_ms FROM missions WHERE id = ?1")
                .bind(mission)
                .fetch_optional(&self.pool)
                .await?;
        Ok(holder.and_then(|(owner, expires)| {
            owner.map(|owner| Lease {
                owner,
                expires_ms: expires.unwrap_or(0),
            })
        }))
    }

    async fn release_lease(&self, mission: &str, owner: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE missions SET lease_owner = NULL, lease_expires_ms = NULL WHERE id = ?1 AND lease_owner = ?2",
        )
        .bind(mission)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

impl RawEvent {
    /// The envelope of CONTRACT.md, `data` parsed.
    pub fn into_stored(self) -> Result<StoredEvent, StoreError> {
        let data = serde_json::from_str(&self.data).map_err(|e| StoreError::Corrupt {
            mission: self.mission.clone(),
            seq: self.seq,
            reason: format!("data is not JSON: {e}"),
        })?;
        Ok(StoredEvent {
            at: flightdeck_core::clock::format_rfc3339_millis(self.at_ms),
            mission: self.mission,
            seq: self.seq,
            event_type: self.event_type,
            data,
            prev_hash: self.prev_hash,
            hash: self.hash,
        })
    }
}
