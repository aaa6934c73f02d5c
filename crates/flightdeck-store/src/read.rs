//! Reads of the SQLite store: `rusqlite` connections opened read-only, kept in a small pool,
//! used on tokio's blocking threads (one hop per read, however many rows), and the queries
//! they run.
//!
//! A store opened read-only ([`crate::SqliteStore::open_read_only`]) creates no file. SQLite
//! reads a WAL database through its `-shm` index and `-wal`, and creates them when they are
//! missing (which a read-only directory or a full disk forbids anyway). So while no `-wal`
//! holds data (no writer has committed since the last one closed: the database file is the
//! whole database), each read is made on a connection of its own opened `immutable=1` (no
//! locks, no `-shm`), and kept only if the database file did not change while it ran (else
//! it is retried): nothing commits to a WAL database without writing its `-wal` first, and
//! a checkpoint that wrote the file during the read changes its size or times. Once a
//! `-wal` holds data (a writer is at work), reads go through SQLite's usual locking, on
//! pooled connections; where the `-shm` cannot be written, SQLite reads the `-wal` itself.
//!
//! The check is a check, not a lock: a checkpoint that began and ended within one tick of
//! the file system's clock around the start of a read could go unnoticed. That needs a
//! writer to start, commit and checkpoint within those milliseconds.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use flightdeck_core::StoredEvent;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde_json::Value;

use crate::feed::wal_path;
use crate::{
    InputRow, InputState, Lease, MissionIndexRow, MissionRow, RawEvent, StoreError, TokenRow,
};

/// Idle connections kept for the next reads.
const MAX_IDLE: usize = 4;

/// Immutable reads retried when the database file changes under them.
const IMMUTABLE_ATTEMPTS: usize = 3;

/// The read connections of one store.
pub(crate) struct Readers {
    path: PathBuf,
    /// Next to the file the path leads to (symbolic links resolved), as SQLite puts it.
    wal: PathBuf,
    read_only_store: bool,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    pub(crate) fn new(path: &Path, read_only_store: bool) -> Readers {
        let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        Readers {
            path: path.to_path_buf(),
            wal: wal_path(&real),
            read_only_store,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Connection>> {
        // A list of connections stays consistent whatever a panicking holder did.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `read` on a read connection, on a blocking thread.
    pub(crate) async fn run<R, F>(self: &Arc<Self>, read: F) -> Result<R, StoreError>
    where
        F: Fn(&Connection) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let readers = self.clone();
        tokio::task::spawn_blocking(move || readers.run_blocking(&read))
            .await
            .map_err(|e| crate::writer::database_error(&format!("a read failed: {e}")))?
    }

    /// Runs `read` on a read connection, on this thread.
    pub(crate) fn run_blocking<R>(
        &self,
        read: &dyn Fn(&Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let pooled = self.idle().pop();
        if let Some(conn) = pooled {
            return self.keep(conn, read);
        }
        if !self.read_only_store {
            return self.keep(self.open_shared()?, read);
        }
        for _ in 0..IMMUTABLE_ATTEMPTS {
            if !self.wal_is_empty()? {
                return self.keep(self.open_shared()?, read);
            }
            if let Some(result) = self.read_immutable(read)? {
                return Ok(result);
            }
        }
        Err(crate::writer::database_error(
            "the database file kept changing during reads of it as immutable; retry",
        ))
    }

    fn keep<R>(
        &self,
        conn: Connection,
        read: &dyn Fn(&Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let result = read(&conn);
        let mut idle = self.idle();
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
        result
    }

    /// Closes the idle connections (so that the writer's, closed after them, is the last
    /// one and removes the `-wal`).
    pub(crate) fn close_idle(&self) {
        self.idle().clear();
    }

    /// A read-only connection through SQLite's usual locking (and its `-shm` and `-wal`).
    fn open_shared(&self) -> Result<Connection, StoreError> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.set_prepared_statement_cache_capacity(16);
        Ok(conn)
    }

    /// Whether the `-wal` is absent or empty: then the database file is the whole database.
    fn wal_is_empty(&self) -> Result<bool, StoreError> {
        match std::fs::metadata(&self.wal) {
            Ok(m) => Ok(m.len() == 0),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
            Err(source) => Err(StoreError::Io {
                path: self.wal.display().to_string(),
                source,
            }),
        }
    }

    /// `read` on an `immutable=1` connection; `None` if the database file changed meanwhile
    /// (the result may mix two states of it).
    fn read_immutable<R>(
        &self,
        read: &dyn Fn(&Connection) -> Result<R, StoreError>,
    ) -> Result<Option<R>, StoreError> {
        let before = self.stamp()?;
        let conn = Connection::open_with_flags(
            immutable_uri(&self.path),
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )?;
        let result = read(&conn);
        drop(conn);
        if self.stamp()? != before {
            return Ok(None);
        }
        result.map(Some)
    }

    fn stamp(&self) -> Result<(u64, u64, i64, i64, i64, i64), StoreError> {
        let m = std::fs::metadata(&self.path).map_err(|source| StoreError::Io {
            path: self.path.display().to_string(),
            source,
        })?;
        Ok((
            m.ino(),
            m.len(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
        ))
    }
}

/// `file:PATH?immutable=1`, the path percent-encoded where a URI needs it.
fn immutable_uri(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut uri = String::from("file:");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/._-~".contains(&b) {
            uri.push(char::from(b));
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push_str("?mode=ro&immutable=1");
    uri
}

// ---------------------------------------------------------------------------------------
// Queries.

/// Timelines shorter than this are read by one thread.
const PARALLEL_MIN: u64 = 8192;

/// The events of `mission` after `after_seq`. A long timeline is read in two halves at
/// once, each on its own connection and thread (decoding each event's JSON `data` is most
/// of the time, and it parallelises): the mission's `last_seq` splits it, and since every
/// event up to it is committed and never changes, the halves join without a gap whatever
/// each connection's snapshot (the second half also has whatever was appended meanwhile).
pub(crate) fn events_parallel(
    readers: &Readers,
    mission: &str,
    after_seq: u64,
) -> Result<Vec<StoredEvent>, StoreError> {
    let last = readers.run_blocking(&|conn| last_seq(conn, mission))?;
    let count = last.map_or(0, |last| last.saturating_sub(after_seq));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if count < PARALLEL_MIN || cores < 2 {
        return readers.run_blocking(&|conn| events(conn, mission, after_seq, None, count));
    }
    let mid = after_seq + count / 2;
    std::thread::scope(|scope| {
        let tail = std::thread::Builder::new()
            .name("flightdeck-store-read".into())
            .spawn_scoped(scope, || {
                readers.run_blocking(&|conn| events(conn, mission, mid, None, count - count / 2))
            })
            .map_err(|source| StoreError::Io {
                path: readers.path.display().to_string(),
                source,
            })?;
        let mut head =
            readers.run_blocking(&|conn| events(conn, mission, after_seq, Some(mid), count))?;
        let tail = tail
            .join()
            .map_err(|_| crate::writer::database_error("a read thread panicked"))??;
        head.extend(tail);
        Ok(head)
    })
}

fn last_seq(conn: &Connection, mission: &str) -> Result<Option<u64>, StoreError> {
    let last: Option<i64> = conn
        .prepare_cached("SELECT last_seq FROM missions WHERE id = ?1")?
        .query_row(params![mission], |row| row.get(0))
        .optional()?;
    Ok(last.map(|l| l as u64))
}

/// The events of `mission` after `after_seq` (up to `up_to`), as the contract's envelope:
/// one statement, columns read in place (no copy of the data text), the mission id not read
/// back; room made for `expected` events at once.
pub(crate) fn events(
    conn: &Connection,
    mission: &str,
    after_seq: u64,
    up_to: Option<u64>,
    expected: u64,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, at_ms, type, data, prev_hash, hash FROM events
         WHERE mission = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq",
    )?;
    let up_to = up_to.map_or(i64::MAX, |u| i64::try_from(u).unwrap_or(i64::MAX));
    let mut events = Vec::with_capacity(usize::try_from(expected.min(1 << 24)).unwrap_or(0));
    let mut rows = stmt.query(params![mission, after_seq as i64, up_to])?;
    let mut at = AtFormatter::default();
    while let Some(row) = rows.next()? {
        let seq = row.get::<_, i64>(0)? as u64;
        let at_ms: i64 = row.get(1)?;
        let data_text = text(row, 3)?;
        let data: Value = serde_json::from_str(data_text).map_err(|e| StoreError::Corrupt {
            mission: mission.to_string(),
            seq,
            reason: format!("data is not JSON: {e}"),
        })?;
        events.push(StoredEvent {
            mission: mission.to_string(),
            seq,
            at: at.format(at_ms),
            event_type: text(row, 2)?.to_string(),
            data,
            prev_hash: text(row, 4)?.to_string(),
            hash: text(row, 5)?.to_string(),
        });
    }
    Ok(events)
}

/// RFC 3339 times exactly as `flightdeck_core::clock::format_rfc3339_millis` writes them,
/// the `YYYY-MM-DDTHH:MM:SS.` part formatted once per second rather than per event.
#[derive(Default)]
struct AtFormatter {
    second: Option<(i64, String)>,
}

impl AtFormatter {
    fn format(&mut self, at_ms: i64) -> String {
        let second = at_ms.div_euclid(1000);
        let millis = at_ms.rem_euclid(1000);
        if self.second.as_ref().is_none_or(|(s, _)| *s != second) {
            let Some(whole_second) = second.checked_mul(1000) else {
                self.second = None;
                return flightdeck_core::clock::format_rfc3339_millis(at_ms);
            };
            let whole = flightdeck_core::clock::format_rfc3339_millis(whole_second);
            // Anything but the usual `YYYY-MM-DDTHH:MM:SS.000Z` is left to the core.
            match whole.strip_suffix("000Z") {
                Some(prefix) if whole.len() == 24 => {
                    self.second = Some((second, prefix.to_string()));
                }
                _ => {
                    self.second = None;
                    return flightdeck_core::clock::format_rfc3339_millis(at_ms);
                }
            }
        }
        match &self.second {
            Some((_, prefix)) => {
                let mut at = String::with_capacity(24);
                at.push_str(prefix);
                let digits = [
                    b'0' + (millis / 100) as u8,
                    b'0' + (millis / 10 % 10) as u8,
                    b'0' + (millis % 10) as u8,
                ];
                for d in digits {
                    at.push(char::from(d));
                }
                at.push('Z');
                at
            }
            None => flightdeck_core::clock::format_rfc3339_millis(at_ms),
        }
    }
}

pub(crate) fn raw_events(conn: &Connection, mission: &str) -> Result<Vec<RawEvent>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, at_ms, type, data, prev_hash, hash FROM events WHERE mission = ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map(params![mission], |row| {
        Ok(RawEvent {
            mission: mission.to_string(),
            seq: row.get::<_, i64>(0)? as u64,
            at_ms: row.get(1)?,
            event_type: row.get(2)?,
            data: row.get(3)?,
            prev_hash: row.get(4)?,
            hash: row.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Column `i` as text, borrowed from the row.
fn text<'r>(row: &'r rusqlite::Row<'_>, i: usize) -> Result<&'r str, StoreError> {
    row.get_ref(i)?.as_str().map_err(|e| {
        StoreError::Sqlite(rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            Box::new(e),
        ))
    })
}

/// The columns of a mission row; the lease's epoch where the schema has it (a read-only
/// store may read a database of a version before it: its epochs are 0).
fn mission_columns(has_epoch: bool) -> &'static str {
    if has_epoch {
        "id, status, template, created_at_ms, updated_at_ms, last_seq, head_hash, summary, lease_owner, lease_expires_ms, lease_epoch"
    } else {
        "id, status, template, created_at_ms, updated_at_ms, last_seq, head_hash, summary, lease_owner, lease_expires_ms, 0"
    }
}

/// What a store has seen of its database's schema (it only grows: a database may be
/// migrated by another process while a read-only store has it open).
#[derive(Debug, Default)]
pub(crate) struct SchemaSeen {
    pub(crate) items: AtomicBool,
    pub(crate) epoch: AtomicBool,
}

fn schema_has_epoch(conn: &Connection, known: &AtomicBool) -> Result<bool, StoreError> {
    if known.load(Ordering::Relaxed) {
        return Ok(true);
    }
    let found: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM pragma_table_info('missions') WHERE name = 'lease_epoch')",
        [],
        |row| row.get(0),
    )?;
    if found {
        known.store(true, Ordering::Relaxed);
    }
    Ok(found)
}

fn mission_from_row(row: &rusqlite::Row<'_>) -> Result<MissionRow, StoreError> {
    let id: String = row.get(0)?;
    let last_seq = row.get::<_, i64>(5)? as u64;
    let head_hash: String = row.get(6)?;
    let mut summary: Value =
        serde_json::from_str(text(row, 7)?).map_err(|e| StoreError::Corrupt {
            mission: id.clone(),
            seq: last_seq,
            reason: format!("summary is not JSON: {e}"),
        })?;
    crate::stamp_head(&mut summary, last_seq, &head_hash);
    let lease_owner: Option<String> = row.get(8)?;
    let lease_expires: Option<i64> = row.get(9)?;
    let lease_epoch: i64 = row.get(10)?;
    Ok(MissionRow {
        id,
        status: row.get(1)?,
        template: row.get(2)?,
        created_at_ms: row.get(3)?,
        updated_at_ms: row.get(4)?,
        last_seq,
        head_hash,
        summary,
        lease: lease_owner.map(|owner| Lease {
            owner,
            expires_ms: lease_expires.unwrap_or(0),
            epoch: lease_epoch as u64,
        }),
    })
}

pub(crate) fn mission(
    conn: &Connection,
    id: &str,
    seen: &SchemaSeen,
) -> Result<Option<MissionRow>, StoreError> {
    // One read transaction: the summary and its items of the same commit.
    let _snapshot = conn.unchecked_transaction()?;
    let has_items = schema_has_items(conn, &seen.items)?;
    let columns = mission_columns(schema_has_epoch(conn, &seen.epoch)?);
    let mut stmt = conn.prepare_cached(&format!("SELECT {columns} FROM missions WHERE id = ?1"))?;
    let mut rows = stmt.query(params![id])?;
    let Some(mut mission) = rows.next()?.map(mission_from_row).transpose()? else {
        return Ok(None);
    };
    if has_items {
        put_back_items(conn, &mut mission)?;
    }
    Ok(Some(mission))
}

pub(crate) fn missions(
    conn: &Connection,
    limit: u32,
    seen: &SchemaSeen,
) -> Result<Vec<MissionRow>, StoreError> {
    // One read transaction, so the summaries and the items put back into them are of the
    // same commit (ended by its drop; it wrote nothing).
    let _snapshot = conn.unchecked_transaction()?;
    let has_items = schema_has_items(conn, &seen.items)?;
    let columns = mission_columns(schema_has_epoch(conn, &seen.epoch)?);
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {columns} FROM missions ORDER BY created_at_ms DESC, id DESC LIMIT ?1"
    ))?;
    let mut rows = stmt.query(params![i64::from(limit)])?;
    let mut all = Vec::new();
    while let Some(row) = rows.next()? {
        all.push(mission_from_row(row)?);
    }
    drop(rows);
    if has_items {
        for mission in &mut all {
            put_back_items(conn, mission)?;
        }
    }
    Ok(all)
}

pub(crate) fn mission_index(
    conn: &Connection,
    limit: u32,
    requested_by: Option<&str>,
) -> Result<Vec<MissionIndexRow>, StoreError> {
    let row = |row: &rusqlite::Row<'_>| {
        Ok(MissionIndexRow {
            id: row.get(0)?,
            status: row.get(1)?,
            template: row.get(2)?,
            created_at_ms: row.get(3)?,
        })
    };
    let rows = match requested_by {
        None => {
            let mut stmt = conn.prepare_cached(
                "SELECT id, status, template, created_at_ms FROM missions
                 ORDER BY created_at_ms DESC, id DESC LIMIT ?1",
            )?;
            let rows = stmt.query_map(params![i64::from(limit)], row)?;
            rows.collect::<Result<_, _>>()?
        }
        // The typed column (indexed); a read-only open of a database older than it reads
        // each projection's JSON instead.
        Some(who) => {
            let by_column = conn.prepare_cached(
                "SELECT id, status, template, created_at_ms FROM missions
                 WHERE requested_by = ?2
                 ORDER BY created_at_ms DESC, id DESC LIMIT ?1",
            );
            let mut stmt = match by_column {
                Ok(stmt) => stmt,
                Err(rusqlite::Error::SqliteFailure(_, Some(ref m)))
                    if m.contains("no such column") =>
                {
                    conn.prepare_cached(
                        "SELECT id, status, template, created_at_ms FROM missions
                         WHERE json_valid(summary) AND json_extract(summary, '$.requested_by') = ?2
                         ORDER BY created_at_ms DESC, id DESC LIMIT ?1",
                    )?
                }
                Err(e) => return Err(e.into()),
            };
            let rows = stmt.query_map(params![i64::from(limit), who], row)?;
            rows.collect::<Result<_, _>>()?
        }
    };
    Ok(rows)
}

/// Whether the schema has projection items: `known` once seen, else looked up (a
/// read-only store's database may be migrated by another process while it is open).
fn schema_has_items(conn: &Connection, known: &AtomicBool) -> Result<bool, StoreError> {
    if known.load(Ordering::Relaxed) {
        return Ok(true);
    }
    let found: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'projection_items')",
        [],
        |row| row.get(0),
    )?;
    if found {
        known.store(true, Ordering::Relaxed);
    }
    Ok(found)
}

/// Puts the mission's projection items back into its summary: each list replaces the field
/// of its name, in position order.
fn put_back_items(conn: &Connection, mission: &mut MissionRow) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT list, value FROM projection_items WHERE mission = ?1 ORDER BY list, position",
    )?;
    let mut rows = stmt.query(params![mission.id])?;
    let mut items = Vec::new();
    while let Some(row) = rows.next()? {
        let list: String = row.get(0)?;
        let value: Value =
            serde_json::from_str(text(row, 1)?).map_err(|e| StoreError::Corrupt {
                mission: mission.id.clone(),
                seq: mission.last_seq,
                reason: format!("projection item of `{list}` is not JSON: {e}"),
            })?;
        items.push((list, value));
    }
    crate::put_items(&mut mission.summary, items);
    Ok(())
}

pub(crate) fn mission_ids_with_prefix(
    conn: &Connection,
    prefix: &str,
    limit: u32,
) -> Result<Vec<String>, StoreError> {
    // `substr` rather than LIKE: ids are compared as plain text, no wildcards.
    let mut stmt = conn.prepare_cached(
        "SELECT id FROM missions WHERE substr(id, 1, length(?1)) = ?1 ORDER BY id LIMIT ?2",
    )?;
    let ids = stmt.query_map(params![prefix, i64::from(limit)], |row| row.get(0))?;
    Ok(ids.collect::<Result<_, _>>()?)
}

const INPUT_COLUMNS: &str = "id, mission, kind, payload, posted_at_ms, state, applied_seq, reason";

fn input_from_row(row: &rusqlite::Row<'_>) -> Result<InputRow, StoreError> {
    let id: i64 = row.get(0)?;
    let corrupt = |reason: String| StoreError::CorruptInput { id, reason };
    let payload = serde_json::from_str(text(row, 3)?)
        .map_err(|e| corrupt(format!("payload is not JSON: {e}")))?;
    let state = match text(row, 5)? {
        "pending" => InputState::Pending,
        "applied" => InputState::Applied {
            seq: row
                .get::<_, Option<i64>>(6)?
                .ok_or_else(|| corrupt("applied without a seq".into()))? as u64,
        },
        "refused" => InputState::Refused {
            reason: row
                .get::<_, Option<String>>(7)?
                .ok_or_else(|| corrupt("refused without a reason".into()))?,
        },
        other => return Err(corrupt(format!("unknown state `{other}`"))),
    };
    Ok(InputRow {
        id,
        mission: row.get(1)?,
        kind: row.get(2)?,
        payload,
        posted_at_ms: row.get(4)?,
        state,
    })
}

pub(crate) fn pending_inputs(
    conn: &Connection,
    mission: &str,
) -> Result<Vec<InputRow>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {INPUT_COLUMNS} FROM inputs WHERE mission = ?1 AND state = 'pending' ORDER BY id"
    ))?;
    let mut rows = stmt.query(params![mission])?;
    let mut all = Vec::new();
    while let Some(row) = rows.next()? {
        all.push(input_from_row(row)?);
    }
    Ok(all)
}

pub(crate) fn input(conn: &Connection, id: i64) -> Result<Option<InputRow>, StoreError> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {INPUT_COLUMNS} FROM inputs WHERE id = ?1"))?;
    let mut rows = stmt.query(params![id])?;
    rows.next()?.map(input_from_row).transpose()
}

const TOKEN_COLUMNS: &str =
    "id, hash, owner, role, created_at_ms, created_by, expires_at_ms, revoked_at_ms, last_used_ms";

fn token_from_row(row: &rusqlite::Row<'_>) -> Result<TokenRow, rusqlite::Error> {
    Ok(TokenRow {
        id: row.get(0)?,
        hash: row.get(1)?,
        owner: row.get(2)?,
        role: row.get(3)?,
        created_at_ms: row.get(4)?,
        created_by: row.get(5)?,
        expires_at_ms: row.get(6)?,
        revoked_at_ms: row.get(7)?,
        last_used_ms: row.get(8)?,
    })
}

pub(crate) fn tokens(conn: &Connection) -> Result<Vec<TokenRow>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at_ms DESC, id DESC"
    ))?;
    let rows = stmt.query_map([], token_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) fn token_by_hash(conn: &Connection, hash: &str) -> Result<Option<TokenRow>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = ?1"
    ))?;
    Ok(stmt.query_row(params![hash], token_from_row).optional()?)
}

pub(crate) fn missions_with_pending_inputs(
    conn: &Connection,
    limit: u32,
) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT mission FROM inputs WHERE state = 'pending'
         GROUP BY mission ORDER BY min(id) LIMIT ?1",
    )?;
    let ids = stmt.query_map(params![i64::from(limit)], |row| row.get(0))?;
    Ok(ids.collect::<Result<_, _>>()?)
}

/// The owners of leases that have not run out at `now_ms`.
pub(crate) fn lease_holders(conn: &Connection, now_ms: i64) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT lease_owner FROM missions
         WHERE lease_owner IS NOT NULL AND lease_expires_ms > ?1",
    )?;
    let owners = stmt.query_map(params![now_ms], |row| row.get(0))?;
    Ok(owners.collect::<Result<_, _>>()?)
}

/// Appends after global position `after` (none from a database older than the feed).
pub(crate) fn feed(
    conn: &Connection,
    after: u64,
    limit: u32,
) -> Result<Vec<crate::FeedEntry>, StoreError> {
    let has_feed: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'feed')",
        )?
        .query_row([], |row| row.get(0))?;
    if !has_feed {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare_cached(
        "SELECT position, mission, last_seq, status, at_ms FROM feed
         WHERE position > ?1 ORDER BY position LIMIT ?2",
    )?;
    let rows = stmt.query_map(
        params![i64::try_from(after).unwrap_or(i64::MAX), i64::from(limit)],
        |row| {
            Ok(crate::FeedEntry {
                position: row.get::<_, i64>(0)? as u64,
                mission: row.get(1)?,
                last_seq: row.get::<_, i64>(2)? as u64,
                status: row.get(3)?,
                at_ms: row.get(4)?,
            })
        },
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The feed's last position (0 when empty, or from a database older than the feed).
pub(crate) fn feed_head(conn: &Connection) -> Result<u64, StoreError> {
    let head: Option<i64> = conn
        .prepare_cached("SELECT max(position) FROM feed")?
        .query_row([], |row| row.get(0))
        .or_else(|e| match e {
            rusqlite::Error::SqliteFailure(_, Some(ref m)) if m.contains("no such table") => {
                Ok(None)
            }
            e => Err(e),
        })?;
    Ok(head.map_or(0, |h| h as u64))
}

/// Where `reader` got to in the feed (`None` when it never saved a cursor, its row held only
/// for its lease, or from a database older than the cursors).
pub(crate) fn feed_cursor(conn: &Connection, reader: &str) -> Result<Option<u64>, StoreError> {
    let position: Option<i64> = conn
        .prepare_cached(
            "SELECT position FROM feed_cursors WHERE reader = ?1 AND saved_at_ms IS NOT NULL",
        )
        .and_then(|mut stmt| stmt.query_row(params![reader], |row| row.get(0)).optional())
        .or_else(|e| match e {
            rusqlite::Error::SqliteFailure(_, Some(ref m)) if m.contains("no such table") => {
                Ok(None)
            }
            e => Err(e),
        })?;
    Ok(position.map(|p| p as u64))
}

/// GitHub deliveries not handled yet and due at `now_ms`, oldest received first (none from
/// a database older than the deliveries).
pub(crate) fn pending_deliveries(
    conn: &Connection,
    now_ms: i64,
    limit: usize,
) -> Result<Vec<crate::GitHubDelivery>, StoreError> {
    let stmt = conn.prepare_cached(
        "SELECT id, event, body, received_ms, attempts FROM github_deliveries
         WHERE handled_ms IS NULL AND due_ms <= ?1
         ORDER BY received_ms, id LIMIT ?2",
    );
    let mut stmt = match stmt {
        Ok(stmt) => stmt,
        Err(rusqlite::Error::SqliteFailure(_, Some(ref m))) if m.contains("no such table") => {
            return Ok(Vec::new())
        }
        Err(e) => return Err(e.into()),
    };
    let rows = stmt.query_map(
        params![now_ms, i64::try_from(limit).unwrap_or(i64::MAX)],
        |row| {
            Ok(crate::GitHubDelivery {
                id: row.get(0)?,
                event: row.get(1)?,
                body: row.get(2)?,
                received_ms: row.get(3)?,
                attempts: u32::try_from(row.get::<_, i64>(4)?).unwrap_or(u32::MAX),
            })
        },
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The outcome of GitHub delivery `id` once handled (`None` while pending, unknown, or
/// from a database older than the deliveries).
pub(crate) fn delivery_outcome(conn: &Connection, id: &str) -> Result<Option<String>, StoreError> {
    let outcome: Option<Option<String>> = conn
        .prepare_cached(
            "SELECT outcome FROM github_deliveries WHERE id = ?1 AND handled_ms IS NOT NULL",
        )
        .and_then(|mut stmt| stmt.query_row(params![id], |row| row.get(0)).optional())
        .or_else(|e| match e {
            rusqlite::Error::SqliteFailure(_, Some(ref m)) if m.contains("no such table") => {
                Ok(None)
            }
            e => Err(e),
        })?;
    Ok(outcome.flatten())
}

/// See [`crate::EventStore::next_deadline_ms`].
pub(crate) fn next_deadline_ms(conn: &Connection) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT min(at) FROM (
               SELECT min(next_deadline_ms) AS at FROM missions WHERE next_deadline_ms IS NOT NULL
               UNION ALL
               SELECT min(lease_expires_ms) FROM missions
               WHERE ready = 1 AND lease_owner IS NOT NULL)",
        )?
        .query_row([], |row| row.get(0))?)
}

/// The bytes of artifact `digest` in the database.
pub(crate) fn artifact(conn: &Connection, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT bytes FROM artifacts WHERE digest = ?1")?;
    Ok(stmt
        .query_row(params![digest], |row| row.get(0))
        .optional()?)
}

/// The artifacts of `digests` found in the database (digest, bytes), in no order.
pub(crate) fn artifacts(
    conn: &Connection,
    digests: &[String],
) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let mut found = Vec::new();
    for chunk in digests.chunks(500) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let mut stmt = conn.prepare(&format!(
            "SELECT digest, bytes FROM artifacts WHERE digest IN ({marks})"
        ))?;
        let rows = stmt.query_map(rusqlite::params_from_iter(chunk), |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?;
        for row in rows {
            found.push(row?);
        }
    }
    Ok(found)
}

/// What a read-only open needs to know of the schema: the applied migrations, checked
/// against this build's.
pub(crate) fn schema_version(
    conn: &Connection,
    path: &Path,
    known: &[(i64, Vec<u8>)],
) -> Result<i64, StoreError> {
    let not_ours = |reason: String| StoreError::NotFlightdeck {
        path: path.display().to_string(),
        reason,
    };
    let app_id: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let tables: Vec<String> = {
        let mut stmt = conn.prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )?;
        let names = stmt.query_map([], |r| r.get(0))?;
        names.collect::<Result<_, _>>()?
    };
    if app_id != crate::sqlite::APPLICATION_ID {
        if app_id != 0 {
            return Err(not_ours(format!("its application_id is {app_id:#x}")));
        }
        if !tables.is_empty() {
            return Err(not_ours(format!(
                "it holds other tables: {}",
                tables
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    if !tables.iter().any(|t| t == "_sqlx_migrations") {
        return Err(StoreError::Unmigrated {
            path: path.display().to_string(),
        });
    }
    let mut stmt =
        conn.prepare("SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version")?;
    let applied = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, bool>(1)?,
            r.get::<_, Vec<u8>>(2)?,
        ))
    })?;
    let mut version = 0;
    for row in applied {
        let (v, success, checksum) = row?;
        let Some((_, expected)) = known.iter().find(|(k, _)| *k == v) else {
            return Err(StoreError::TooNew {
                found: v,
                known: known.iter().map(|(k, _)| *k).max().unwrap_or(0),
            });
        };
        if !success {
            return Err(not_ours(format!("its migration {v} did not complete")));
        }
        if &checksum != expected {
            return Err(not_ours(format!(
                "its migration {v} differs from this build's"
            )));
        }
        version = version.max(v);
    }
    if version == 0 {
        return Err(StoreError::Unmigrated {
            path: path.display().to_string(),
        });
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn times_are_formatted_exactly_as_the_core_does() {
        let mut at = AtFormatter::default();
        let samples = [
            0,
            1,
            999,
            1000,
            -1,
            -999,
            -1000,
            -1001,
            1_795_000_000_000,
            1_795_000_000_999,
            1_795_000_001_000,
            1_795_000_001_001,
            253_402_300_799_999,
            253_402_300_800_000,
            -62_135_596_800_000,
            i64::MAX,
            i64::MIN,
        ];
        // In order, in reverse, and interleaved: the per-second cache must never leak.
        for &ms in samples.iter().chain(samples.iter().rev()) {
            assert_eq!(
                at.format(ms),
                flightdeck_core::clock::format_rfc3339_millis(ms),
                "{ms}"
            );
        }
        let mut ms = 1_700_000_000_000i64;
        for _ in 0..10_000 {
            ms += 7_919;
            assert_eq!(
                at.format(ms),
                flightdeck_core::clock::format_rfc3339_millis(ms)
            );
        }
    }

    #[test]
    fn immutable_uris_escape_what_a_uri_must() {
        assert_eq!(
            immutable_uri(Path::new("/a b/x?y#z%.db")),
            "file:/a%20b/x%3Fy%23z%25.db?mode=ro&immutable=1"
        );
    }
}
