//! The SQLite backend: one file, WAL, `synchronous = FULL` (an append has reached the disk
//! when it returns). Reads go through the `rusqlite` read connections of `read.rs`; every
//! write (timelines, inboxes, leases) goes through the one writer thread of `writer.rs`,
//! which batches concurrent appends into one transaction (group commit), so many missions
//! appending at once share one fsync. sqlx only runs the migrations, on open.
//!
//! [`SqliteStore::open_read_only`] opens a store that never writes: see there.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use flightdeck_core::StoredEvent;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::{oneshot, watch};

use crate::artifacts::FsArtifactStore;
use crate::feed::{self, ChangeFeed, Watcher};
use crate::read::{self, Readers};
use crate::sqlite_artifacts::{SqliteArtifactStore, Staged};
use crate::writer::{self, Job, TokenWrite, Writer};
use crate::{
    AppendRequest, ClaimRequest, Claimed, EventStore, InputRow, Lease, MissionIndexRow, MissionRow,
    NewInput, RawEvent, StoreError, TokenRow,
};

/// Written into the database header (`PRAGMA application_id`) so that a flightdeck database
/// is recognisable and a foreign one is refused before anything is written to it. "FDK1".
pub(crate) const APPLICATION_ID: i64 = 0x4644_4B31;

/// The migration that made the inbox.
const INPUTS_VERSION: i64 = 3;
/// The schema version that added API tokens.
const TOKENS_VERSION: i64 = 5;
/// The first schema with projection items.
const ITEMS_VERSION: i64 = 4;
const EPOCH_VERSION: i64 = 6;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// [`EventStore`] on a SQLite file.
pub struct SqliteStore {
    path: PathBuf,
    /// `None` when read-only.
    writer: Option<Arc<Writer>>,
    /// Artifacts put through [`SqliteStore::artifacts`] and not yet committed.
    staged: Arc<Staged>,
    readers: Arc<Readers>,
    /// Bumped after each commit that changed a timeline or an inbox (and by the watcher).
    changes: Arc<watch::Sender<u64>>,
    /// Bumped after each commit that posted an input (and by the watcher).
    inputs: Arc<watch::Sender<u64>>,
    /// The inotify watcher of this store's feeds, while any feed lives.
    watcher: Mutex<Weak<Watcher>>,
    /// The watcher of `<db>-inbox` alone, while any inputs feed lives.
    inbox_watcher: Mutex<Weak<Watcher>>,
    /// Whether the schema has the inbox (a read-only store may open an older one).
    has_inputs: bool,
    /// Whether the schema has API tokens (a read-only store may open an older one).
    has_tokens: bool,
    /// Whether the schema has projection items (ditto; once seen, known: another process
    /// may migrate the database while a read-only store has it open).
    schema: Arc<read::SchemaSeen>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // The writer's connection closes last (when its thread is joined), so that it
        // checkpoints and removes the `-wal`, which a read-only connection cannot.
        self.readers.close_idle();
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("read_only", &self.writer.is_none())
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
        let pool = set_up(&options).await?;
        // Closed (and waited for) before the writer opens: its connection must be the last
        // one to close, so that it removes the `-wal`.
        pool.close().await;
        let staged = Arc::new(Staged::default());
        let (changes, _) = watch::channel(0);
        let changes = Arc::new(changes);
        // SQLite puts the `-wal` next to the file a symbolic link leads to.
        let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let inputs = Arc::new(watch::channel(0).0);
        let inbox = feed::inbox_path(&real);
        // Made now, so that drivers can watch it alone (see `subscribe_inputs`); only when
        // missing, since writing it wakes them.
        if !inbox.exists() {
            feed::signal_post(&inbox);
        }
        let notify = writer::Notify {
            changes: changes.clone(),
            wal: feed::wal_path(&real),
            inputs: inputs.clone(),
            inbox,
        };
        let writer = Arc::new(writer::spawn(path, staged.clone(), notify)?);
        Ok(SqliteStore {
            path: path.to_path_buf(),
            writer: Some(writer),
            staged,
            readers: Arc::new(Readers::new(path, false)),
            changes,
            inputs,
            watcher: Mutex::new(Weak::new()),
            inbox_watcher: Mutex::new(Weak::new()),
            has_inputs: true,
            has_tokens: true,
            schema: Arc::new(read::SchemaSeen {
                items: AtomicBool::new(true),
                epoch: AtomicBool::new(true),
            }),
        })
    }

    /// Opens the database at `path` for reading only: nothing is migrated or marked, no
    /// writer is started, and the database is never created ([`StoreError::Missing`]).
    /// Every write returns [`StoreError::ReadOnly`].
    ///
    /// - A database from a newer flightdeck is refused ([`StoreError::TooNew`]); one from
    ///   an older one is read as it is (every migration so far only adds tables): a database
    ///   from before the inbox has no inputs. A file with no flightdeck schema at all is
    ///   [`StoreError::Unmigrated`].
    /// - It creates no file: not the database, nor SQLite's `-shm` and `-wal`. While no
    ///   `-wal` holds data (no writer at work), each read is made on an `immutable=1`
    ///   connection, checked afterwards against a change of the database file (and retried);
    ///   so it reads where it could not write: a read-only directory or file system, a full
    ///   disk. While a writer is at work (its `-wal` holds data), reads go through SQLite's
    ///   usual locking, as any reader of a live WAL database; on a read-only view of it (a
    ///   read-only bind mount), SQLite reads the `-wal` directly. See `read.rs` for the
    ///   limit of the check.
    pub async fn open_read_only(path: &Path) -> Result<SqliteStore, StoreError> {
        let display = || path.display().to_string();
        let metadata = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::Missing { path: display() })
            }
            Err(source) => {
                return Err(StoreError::Io {
                    path: display(),
                    source,
                })
            }
        };
        if metadata.is_dir() {
            return Err(StoreError::NotFlightdeck {
                path: display(),
                reason: "it is a directory".into(),
            });
        }
        if metadata.len() == 0 {
            return Err(StoreError::Unmigrated { path: display() });
        }
        if !is_sqlite_file(path)? {
            return Err(StoreError::NotFlightdeck {
                path: display(),
                reason: "it is not a SQLite database".into(),
            });
        }
        let readers = Arc::new(Readers::new(path, true));
        let known: Vec<(i64, Vec<u8>)> = MIGRATOR
            .iter()
            .map(|m| (m.version, m.checksum.to_vec()))
            .collect();
        let at = path.to_path_buf();
        let version = readers
            .run(move |conn| read::schema_version(conn, &at, &known))
            .await?;
        let (changes, _) = watch::channel(0);
        Ok(SqliteStore {
            path: path.to_path_buf(),
            writer: None,
            staged: Arc::new(Staged::default()),
            readers,
            changes: Arc::new(changes),
            inputs: Arc::new(watch::channel(0).0),
            watcher: Mutex::new(Weak::new()),
            inbox_watcher: Mutex::new(Weak::new()),
            has_inputs: version >= INPUTS_VERSION,
            has_tokens: version >= TOKENS_VERSION,
            schema: Arc::new(read::SchemaSeen {
                items: AtomicBool::new(version >= ITEMS_VERSION),
                epoch: AtomicBool::new(version >= EPOCH_VERSION),
            }),
        })
    }

    /// The artifact store that goes with this event store: artifacts up to
    /// [`crate::sqlite_artifacts::INLINE_MAX`] bytes in the database, made durable in the
    /// commit of this store's next append; larger ones (and any written by earlier versions)
    /// as files under `files_root`. Read-only if this store is.
    pub fn artifacts(&self, files_root: impl Into<PathBuf>) -> SqliteArtifactStore {
        SqliteArtifactStore {
            files: FsArtifactStore::new(files_root),
            db_path: self.path.clone(),
            readers: self.readers.clone(),
            staged: self.staged.clone(),
            writer: self.writer.clone(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this store was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.writer.is_none()
    }

    fn writer(&self) -> Result<&Writer, StoreError> {
        self.writer.as_deref().ok_or(StoreError::ReadOnly)
    }

    /// Hands `job` to the writer and waits for its answer.
    async fn write<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Job,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        if !self.writer()?.send(job(reply)) {
            return Err(StoreError::WriterGone);
        }
        answer.await.map_err(|_| StoreError::WriterGone)?
    }
}

/// Connects, marks the database ours and migrates it. Processes opening a new database at
/// once contend for it: where waiting could deadlock SQLite answers "database is locked" at
/// once instead of waiting out the busy timeout, and since SQLite's migrations take no lock
/// across processes, two may start the same migration and the one that commits second fails
/// on what the first made (its transaction rolled back). Either way, looking again finds the
/// database set up, so the whole set-up is tried again a few times, briefly, before its
/// error is believed.
async fn set_up(options: &SqliteConnectOptions) -> Result<sqlx::SqlitePool, StoreError> {
    let mut attempt = 0u64;
    loop {
        let result = async {
            // No idle timeout nor lifetime: sqlx then runs no maintenance task, whose loop
            // over idle connections was seen spinning without end (100% CPU, the test's
            // runtime starved) on a pool that was being closed.
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(options.clone())
                .await?;
            // Marked as ours before any table exists: another process opening the file
            // while this one migrates must not take the half-made database for someone
            // else's.
            sqlx::raw_sql(&format!("PRAGMA application_id = {APPLICATION_ID}"))
                .execute(&pool)
                .await?;
            migrate(&pool).await?;
            Ok::<_, StoreError>(pool)
        }
        .await;
        match result {
            Err(e) if lost_a_race(&e) && attempt < 10 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(10 * attempt)).await;
            }
            other => return other,
        }
    }
}

/// Whether a set-up failed on another process setting up the same database: SQLite's
/// "database is locked" (`SQLITE_BUSY`, `SQLITE_LOCKED` and their extended codes), or a
/// migration that failed to execute.
fn lost_a_race(e: &StoreError) -> bool {
    use sqlx::migrate::MigrateError;
    match e {
        StoreError::Database(sqlx::Error::Database(db)) => {
            let primary = db
                .code()
                .and_then(|c| c.parse::<i64>().ok())
                .map(|c| c & 0xff);
            matches!(primary, Some(5 | 6))
        }
        StoreError::Migrate(MigrateError::Execute(_) | MigrateError::ExecuteMigration(..)) => true,
        _ => false,
    }
}

/// Runs the migrations not yet applied.
async fn migrate(pool: &sqlx::SqlitePool) -> Result<(), StoreError> {
    match MIGRATOR.run(pool).await {
        Ok(()) => Ok(()),
        Err(sqlx::migrate::MigrateError::VersionMissing(found)) => Err(StoreError::TooNew {
            found,
            known: known_version(),
        }),
        Err(other) => Err(StoreError::Migrate(other)),
    }
}

fn known_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Whether the file starts with SQLite's magic.
fn is_sqlite_file(path: &Path) -> Result<bool, StoreError> {
    let mut header = [0u8; 16];
    let read = std::fs::File::open(path).and_then(|mut f| {
        use std::io::Read;
        f.read(&mut header)
    });
    match read {
        Ok(16) => Ok(&header == b"SQLite format 3\0"),
        Ok(_) => Ok(false),
        Err(source) => Err(StoreError::Io {
            path: path.display().to_string(),
            source,
        }),
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
    if !is_sqlite_file(path)? {
        return Err(not_ours("it is not a SQLite database".into()));
    }
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await?;
    let app_id: i64 = sqlx::query_scalar("PRAGMA application_id")
        .fetch_one(&mut conn)
        .await?;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name LIMIT 5",
    )
    .fetch_all(&mut conn)
    .await?;
    conn.close().await?;
    if app_id == APPLICATION_ID {
        return Ok(());
    }
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

#[async_trait]
impl EventStore for SqliteStore {
    async fn append(&self, request: AppendRequest) -> Result<Vec<StoredEvent>, StoreError> {
        self.write(|reply| Job::Append { request, reply }).await
    }

    async fn events(&self, mission: &str, after_seq: u64) -> Result<Vec<StoredEvent>, StoreError> {
        let mission = mission.to_string();
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || read::events_parallel(&readers, &mission, after_seq))
            .await
            .map_err(|e| writer::database_error(&format!("a read failed: {e}")))?
    }

    async fn events_between(
        &self,
        mission: &str,
        after_seq: u64,
        up_to: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mission = mission.to_string();
        // A capacity hint only: pages are small.
        let expected = up_to.saturating_sub(after_seq).min(4_096);
        self.readers
            .run(move |conn| read::events(conn, &mission, after_seq, Some(up_to), expected))
            .await
    }

    async fn raw_events(&self, mission: &str) -> Result<Vec<RawEvent>, StoreError> {
        let mission = mission.to_string();
        self.readers
            .run(move |conn| read::raw_events(conn, &mission))
            .await
    }

    async fn mission(&self, id: &str) -> Result<Option<MissionRow>, StoreError> {
        let id = id.to_string();
        let schema = self.schema.clone();
        self.readers
            .run(move |conn| read::mission(conn, &id, &schema))
            .await
    }

    async fn missions(&self, limit: u32) -> Result<Vec<MissionRow>, StoreError> {
        let schema = self.schema.clone();
        self.readers
            .run(move |conn| read::missions(conn, limit, &schema))
            .await
    }

    async fn mission_index(&self, limit: u32) -> Result<Vec<MissionIndexRow>, StoreError> {
        self.readers
            .run(move |conn| read::mission_index(conn, limit, None))
            .await
    }

    async fn mission_index_requested_by(
        &self,
        limit: u32,
        requested_by: &str,
    ) -> Result<Vec<MissionIndexRow>, StoreError> {
        let who = requested_by.to_string();
        self.readers
            .run(move |conn| read::mission_index(conn, limit, Some(&who)))
            .await
    }

    async fn mission_ids_with_prefix(
        &self,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        let prefix = prefix.to_string();
        self.readers
            .run(move |conn| read::mission_ids_with_prefix(conn, &prefix, limit))
            .await
    }

    async fn acquire_lease(
        &self,
        mission: &str,
        owner: &str,
        now_ms: i64,
        ttl_ms: i64,
        steal_from: Option<&str>,
    ) -> Result<Option<Lease>, StoreError> {
        self.write(|reply| Job::AcquireLease {
            mission: mission.to_string(),
            owner: owner.to_string(),
            now_ms,
            ttl_ms,
            steal_from: steal_from.map(str::to_string),
            reply,
        })
        .await
    }

    async fn release_lease(&self, mission: &str, owner: &str) -> Result<(), StoreError> {
        self.write(|reply| Job::ReleaseLease {
            mission: mission.to_string(),
            owner: owner.to_string(),
            epoch: None,
            reply,
        })
        .await
    }

    async fn release_claim(
        &self,
        mission: &str,
        owner: &str,
        epoch: u64,
    ) -> Result<(), StoreError> {
        self.write(|reply| Job::ReleaseLease {
            mission: mission.to_string(),
            owner: owner.to_string(),
            epoch: Some(epoch),
            reply,
        })
        .await
    }

    async fn create_token(&self, token: TokenRow) -> Result<(), StoreError> {
        self.write(|reply| Job::Token {
            write: TokenWrite::Create(token),
            reply,
        })
        .await
        .map(|_| ())
    }

    async fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        if !self.has_tokens {
            return Ok(Vec::new());
        }
        self.readers.run(read::tokens).await
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>, StoreError> {
        if !self.has_tokens {
            return Ok(None);
        }
        let hash = hash.to_string();
        self.readers
            .run(move |conn| read::token_by_hash(conn, &hash))
            .await
    }

    async fn revoke_token(&self, id: &str, at_ms: i64) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.write(|reply| Job::Token {
            write: TokenWrite::Revoke { id, at_ms },
            reply,
        })
        .await
    }

    async fn touch_token(&self, id: &str, at_ms: i64) -> Result<(), StoreError> {
        let id = id.to_string();
        self.write(|reply| Job::Token {
            write: TokenWrite::Touch { id, at_ms },
            reply,
        })
        .await
        .map(|_| ())
    }

    async fn post_input(&self, input: NewInput) -> Result<i64, StoreError> {
        self.write(|reply| Job::PostInput { input, reply }).await
    }

    async fn reserve_quota(
        &self,
        reservation: crate::QuotaReservation,
    ) -> Result<crate::QuotaGrant, StoreError> {
        let write = crate::quota::QuotaWrite::Reserve(reservation);
        match self.write(|reply| Job::Quota { write, reply }).await? {
            crate::quota::QuotaAnswer::Reserved(grant) => Ok(grant),
            crate::quota::QuotaAnswer::Settled(_) => Err(writer::database_error(
                "a reservation was answered as a settlement",
            )),
        }
    }

    async fn settle_quota(&self, settlement: crate::QuotaSettlement) -> Result<bool, StoreError> {
        let write = crate::quota::QuotaWrite::Settle(settlement);
        match self.write(|reply| Job::Quota { write, reply }).await? {
            crate::quota::QuotaAnswer::Settled(settled) => Ok(settled),
            crate::quota::QuotaAnswer::Reserved(_) => Err(writer::database_error(
                "a settlement was answered as a reservation",
            )),
        }
    }

    async fn quota_usage(&self, period: &str) -> Result<Vec<crate::QuotaUsage>, StoreError> {
        let period = period.to_string();
        self.readers
            .run(move |conn| crate::quota::sqlite_usage(conn, &period))
            .await
    }

    async fn pending_inputs(&self, mission: &str) -> Result<Vec<InputRow>, StoreError> {
        if !self.has_inputs {
            return Ok(Vec::new());
        }
        let mission = mission.to_string();
        self.readers
            .run(move |conn| read::pending_inputs(conn, &mission))
            .await
    }

    async fn input(&self, id: i64) -> Result<Option<InputRow>, StoreError> {
        if !self.has_inputs {
            return Ok(None);
        }
        self.readers.run(move |conn| read::input(conn, id)).await
    }

    async fn refuse_input(&self, id: i64, reason: &str, at_ms: i64) -> Result<(), StoreError> {
        let reason = reason.to_string();
        self.write(|reply| Job::RefuseInput {
            id,
            reason,
            at_ms,
            reply,
        })
        .await
    }

    async fn claim_runnable(&self, request: ClaimRequest) -> Result<Vec<Claimed>, StoreError> {
        self.write(|reply| Job::Claim { request, reply }).await
    }

    async fn lease_holders(&self, now_ms: i64) -> Result<Vec<String>, StoreError> {
        self.readers
            .run(move |conn| read::lease_holders(conn, now_ms))
            .await
    }

    async fn feed(&self, after: u64, limit: u32) -> Result<Vec<crate::FeedEntry>, StoreError> {
        self.readers
            .run(move |conn| read::feed(conn, after, limit))
            .await
    }

    async fn feed_head(&self) -> Result<u64, StoreError> {
        self.readers.run(read::feed_head).await
    }

    async fn feed_cursor(&self, reader: &str) -> Result<Option<u64>, StoreError> {
        let reader = reader.to_string();
        self.readers
            .run(move |conn| read::feed_cursor(conn, &reader))
            .await
    }

    async fn save_feed_cursor(&self, reader: &str, position: u64) -> Result<(), StoreError> {
        self.write(|reply| Job::SaveFeedCursor {
            reader: reader.to_string(),
            position,
            at_ms: crate::system_clock_ms(),
            reply,
        })
        .await
    }

    async fn hold_feed_reader(
        &self,
        reader: &str,
        owner: &str,
        now_ms: i64,
        ttl_ms: i64,
        steal_from: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        self.write(|reply| Job::HoldFeedReader {
            reader: reader.to_string(),
            owner: owner.to_string(),
            now_ms,
            ttl_ms,
            steal_from: steal_from.map(str::to_string),
            reply,
        })
        .await
    }

    async fn release_feed_reader(&self, reader: &str, owner: &str) -> Result<(), StoreError> {
        self.write(|reply| Job::ReleaseFeedReader {
            reader: reader.to_string(),
            owner: owner.to_string(),
            reply,
        })
        .await
    }

    async fn next_deadline_ms(&self) -> Result<Option<i64>, StoreError> {
        self.readers.run(read::next_deadline_ms).await
    }

    async fn record_delivery(
        &self,
        id: &str,
        event: &str,
        body: &[u8],
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.write(|reply| Job::RecordDelivery {
            id: id.to_string(),
            event: event.to_string(),
            body: body.to_vec(),
            now_ms,
            reply,
        })
        .await
    }

    async fn pending_deliveries(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<crate::GitHubDelivery>, StoreError> {
        self.readers
            .run(move |conn| read::pending_deliveries(conn, now_ms, limit))
            .await
    }

    async fn finish_delivery(
        &self,
        id: &str,
        outcome: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.write(|reply| Job::FinishDelivery {
            id: id.to_string(),
            outcome: outcome.to_string(),
            now_ms,
            reply,
        })
        .await
    }

    async fn retry_delivery(
        &self,
        id: &str,
        error: &str,
        retry_at_ms: i64,
    ) -> Result<(), StoreError> {
        self.write(|reply| Job::RetryDelivery {
            id: id.to_string(),
            error: error.to_string(),
            retry_at_ms,
            reply,
        })
        .await
    }

    async fn delivery_outcome(&self, id: &str) -> Result<Option<String>, StoreError> {
        let id = id.to_string();
        self.readers
            .run(move |conn| read::delivery_outcome(conn, &id))
            .await
    }

    async fn missions_with_pending_inputs(&self, limit: u32) -> Result<Vec<String>, StoreError> {
        if !self.has_inputs {
            return Ok(Vec::new());
        }
        self.readers
            .run(move |conn| read::missions_with_pending_inputs(conn, limit))
            .await
    }

    async fn subscribe(&self) -> Result<ChangeFeed, StoreError> {
        let watcher = self.watcher()?;
        // After the watch is in place: whatever changes from here on wakes this feed.
        Ok(ChangeFeed::new(self.changes.subscribe(), Some(watcher)))
    }

    async fn subscribe_inputs(&self) -> Result<ChangeFeed, StoreError> {
        // The `-inbox` file alone when it exists (a read-write store makes it at open), so
        // that this process's own appends do not wake the watcher; else the directory.
        let watcher = match self.inbox_watcher()? {
            Some(watcher) => watcher,
            None => self.watcher()?,
        };
        Ok(ChangeFeed::new(self.inputs.subscribe(), Some(watcher)))
    }
}

impl SqliteStore {
    /// The watcher of the `-inbox` file, started by the first inputs feed; `None` when the
    /// file is not there (a read-only store on a database no post has touched).
    fn inbox_watcher(&self) -> Result<Option<Arc<Watcher>>, StoreError> {
        let mut slot = self.inbox_watcher.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(watcher) = slot.upgrade() {
            return Ok(Some(watcher));
        }
        let real = std::fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone());
        let inbox = feed::inbox_path(&real);
        if !inbox.is_file() {
            return Ok(None);
        }
        let watcher = Arc::new(Watcher::start_inbox(&inbox, self.inputs.clone())?);
        *slot = Arc::downgrade(&watcher);
        Ok(Some(watcher))
    }

    /// The store's inotify watcher, started by the first feed and shared by all.
    fn watcher(&self) -> Result<Arc<Watcher>, StoreError> {
        let mut slot = self.watcher.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(watcher) = slot.upgrade() {
            return Ok(watcher);
        }
        let watcher = Arc::new(Watcher::start(
            &self.path,
            self.changes.clone(),
            self.inputs.clone(),
        )?);
        *slot = Arc::downgrade(&watcher);
        Ok(watcher)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    /// A read-only store reads the GitHub deliveries and refuses to change them, like every
    /// other write; on a database from before the deliveries it finds none.
    #[tokio::test]
    async fn a_read_only_store_reads_deliveries_and_refuses_to_record_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flightdeck.db");
        let store = SqliteStore::open(&path).await.unwrap();
        assert!(store
            .record_delivery("d-1", "push", b"{}", 1_000)
            .await
            .unwrap());
        assert!(store
            .record_delivery("d-2", "push", b"{}", 1_000)
            .await
            .unwrap());
        store.finish_delivery("d-2", "done", 1_500).await.unwrap();
        drop(store);

        let read_only = SqliteStore::open_read_only(&path).await.unwrap();
        let pending = read_only.pending_deliveries(2_000, 10).await.unwrap();
        assert_eq!(
            pending.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            ["d-1"]
        );
        assert_eq!(
            read_only.delivery_outcome("d-2").await.unwrap().as_deref(),
            Some("done")
        );
        assert!(matches!(
            read_only.record_delivery("d-3", "push", b"{}", 2_000).await,
            Err(StoreError::ReadOnly)
        ));
        assert!(matches!(
            read_only.finish_delivery("d-1", "done", 2_000).await,
            Err(StoreError::ReadOnly)
        ));
        assert!(matches!(
            read_only.retry_delivery("d-1", "again", 3_000).await,
            Err(StoreError::ReadOnly)
        ));
        drop(read_only);

        // A database from before the deliveries (what an older flightdeck left).
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP TABLE github_deliveries; DELETE FROM _sqlx_migrations WHERE version >= 10;",
        )
        .unwrap();
        drop(conn);
        let old = SqliteStore::open_read_only(&path).await.unwrap();
        assert!(old.pending_deliveries(2_000, 10).await.unwrap().is_empty());
        assert_eq!(old.delivery_outcome("d-2").await.unwrap(), None);
    }
}
