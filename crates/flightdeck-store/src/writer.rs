//! The SQLite store's one writer: a dedicated thread that owns a `rusqlite` connection and
//! commits every append. Concurrent appends are batched into one transaction (group commit),
//! so many missions appending at once share one fsync.
//!
//! Why a thread of its own and not sqlx: sqlx runs each statement on its connection's worker
//! thread, so every statement of a batch cost a round trip between threads (about 50 µs each
//! on a small virtual machine), which was most of an append. Here an append costs one hop
//! in (the channel) and one out (the reply), and its statements run in-process.
//!
//! Every transaction first inserts the artifacts staged by the store's
//! [`crate::SqliteArtifactStore`], so an event and the artifacts put before it become durable
//! in one commit.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use flightdeck_core::chain::seal;
use flightdeck_core::hash::GENESIS_HASH;
use flightdeck_core::jcs::canonicalize;
use flightdeck_core::{Digest, StoredEvent};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use tokio::sync::oneshot;

use crate::sqlite_artifacts::Staged;
use crate::{AppendRequest, Projection, StoreError};

/// Appends committed together at most.
const MAX_BATCH: usize = 256;

pub(crate) type AppendResult = Result<Vec<StoredEvent>, StoreError>;

/// What the writer is asked to do.
pub(crate) enum Job {
    Append {
        request: AppendRequest,
        reply: oneshot::Sender<AppendResult>,
    },
    /// Commit the staged artifacts now.
    Flush {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// The writer thread, shared by the store and its artifact store. Dropping the last handle
/// closes the channel and waits for the thread to commit what is still staged and close its
/// connection, so that once a store is dropped, its file is quiet and nothing it was given
/// is lost.
pub(crate) struct Writer {
    sender: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// Hands `job` to the thread; false if it has stopped.
    pub(crate) fn send(&self, job: Job) -> bool {
        self.sender.as_ref().is_some_and(|s| s.send(job).is_ok())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.sender.take());
        if let Some(thread) = self.thread.take() {
            // A panic on the writer thread has already failed its appenders.
            let _ = thread.join();
        }
    }
}

/// Opens the writer's connection and starts its thread. The schema must already be migrated.
pub(crate) fn spawn(path: &Path, staged: Arc<Staged>) -> Result<Writer, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // `synchronous` is per connection: FULL makes a commit return only once it is on disk.
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.set_prepared_statement_cache_capacity(32);
    let (sender, jobs) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("flightdeck-store-writer".into())
        .spawn(move || writer_loop(conn, jobs, &staged))
        .map_err(|source| StoreError::Io {
            path: path.display().to_string(),
            source,
        })?;
    Ok(Writer {
        sender: Some(sender),
        thread: Some(thread),
    })
}

/// Runs until every sender is gone (the store and its artifact store were dropped), then
/// commits what is still staged, so a clean shutdown loses nothing.
fn writer_loop(mut conn: Connection, jobs: mpsc::Receiver<Job>, staged: &Staged) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // Taken after the jobs arrived: whatever a caller put before it sent its append is
        // in this snapshot.
        let artifacts = staged.snapshot();
        let requests: Vec<&AppendRequest> = batch
            .iter()
            .filter_map(|job| match job {
                Job::Append { request, .. } => Some(request),
                Job::Flush { .. } => None,
            })
            .collect();
        let (results, flushed) = match commit_batch(&mut conn, &artifacts, &requests) {
            Ok(results) => {
                staged.committed(&artifacts);
                (results, Ok(()))
            }
            Err(e) => {
                // Nothing of the batch is kept (the staged artifacts stay staged for the
                // next one); every appender hears why.
                let message = e.to_string();
                let results = requests
                    .iter()
                    .map(|_| Err(database_error(&message)))
                    .collect();
                (results, Err(message))
            }
        };
        let mut results = results.into_iter();
        for job in batch {
            // A caller may have gone away; what it asked for is committed all the same.
            match job {
                Job::Append { reply, .. } => {
                    let result = results
                        .next()
                        .unwrap_or_else(|| Err(database_error("no result for this append")));
                    let _ = reply.send(result);
                }
                Job::Flush { reply } => {
                    let _ = reply.send(flushed.clone().map_err(|m| database_error(&m)));
                }
            }
        }
    }
    let artifacts = staged.snapshot();
    if !artifacts.is_empty() && commit_batch(&mut conn, &artifacts, &[]).is_ok() {
        staged.committed(&artifacts);
    }
}

/// Commits every request of the batch that can be applied, in one transaction: the head of
/// each mission in the batch read once, conflicts decided in memory (a conflicting request
/// writes nothing), then the events inserted and each touched mission's projection upserted.
/// The staged `artifacts` go first, so that no event commits without what it references.
/// An error rolls the whole transaction back (the transaction is dropped uncommitted).
fn commit_batch(
    conn: &mut Connection,
    artifacts: &[(Digest, Arc<[u8]>)],
    batch: &[&AppendRequest],
) -> Result<Vec<AppendResult>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if !artifacts.is_empty() {
        let mut insert =
            tx.prepare_cached("INSERT OR IGNORE INTO artifacts (digest, bytes) VALUES (?1, ?2)")?;
        for (digest, bytes) in artifacts {
            insert.execute(params![digest.to_string(), &bytes[..]])?;
        }
    }
    let results = if batch.is_empty() {
        Vec::new()
    } else {
        write_batch(&tx, batch)?
    };
    tx.commit()?;
    Ok(results)
}

/// A mission's row as the batch leaves it.
struct PendingMission<'a> {
    created_at_ms: i64,
    updated_at_ms: i64,
    last_seq: u64,
    head_hash: String,
    projection: Option<&'a Projection>,
}

fn write_batch(
    tx: &rusqlite::Transaction<'_>,
    batch: &[&AppendRequest],
) -> Result<Vec<AppendResult>, StoreError> {
    let mut missions: BTreeMap<&str, PendingMission<'_>> = BTreeMap::new();
    {
        let mut head = tx.prepare_cached(
            "SELECT last_seq, head_hash, created_at_ms FROM missions WHERE id = ?1",
        )?;
        for request in batch {
            let id = request.mission.as_str();
            if missions.contains_key(id) {
                continue;
            }
            let row = head
                .query_row(params![id], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, i64>(2)?,
                    ))
                })
                .optional()?;
            let first_at = request.events.first().map_or(0, |e| e.at_ms);
            let pending = match row {
                Some((last_seq, head_hash, created_at_ms)) => PendingMission {
                    created_at_ms,
                    updated_at_ms: created_at_ms,
                    last_seq: last_seq as u64,
                    head_hash,
                    projection: None,
                },
                None => PendingMission {
                    created_at_ms: first_at,
                    updated_at_ms: first_at,
                    last_seq: 0,
                    head_hash: GENESIS_HASH.to_string(),
                    projection: None,
                },
            };
            missions.insert(id, pending);
        }
    }
    let mut results = Vec::with_capacity(batch.len());
    let mut insert = tx.prepare_cached(
        "INSERT INTO events (mission, seq, at_ms, type, data, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for request in batch {
        // Every mission of the batch was entered above.
        let Some(pending) = missions.get_mut(request.mission.as_str()) else {
            continue;
        };
        match seal_request(request, pending.last_seq, &pending.head_hash) {
            Ok(sealed) => {
                for (event, data_text, at_ms) in &sealed {
                    insert.execute(params![
                        event.mission,
                        event.seq as i64,
                        at_ms,
                        event.event_type,
                        data_text,
                        event.prev_hash,
                        event.hash,
                    ])?;
                }
                if let Some(last) = sealed.last() {
                    pending.last_seq = last.0.seq;
                    pending.head_hash = last.0.hash.clone();
                    pending.updated_at_ms = last.2;
                    pending.projection = Some(&request.projection);
                }
                results.push(Ok(sealed.into_iter().map(|(e, _, _)| e).collect()));
            }
            Err(e) => results.push(Err(e)),
        }
    }
    let mut upsert = tx.prepare_cached(
        "INSERT INTO missions (id, status, template, created_at_ms, updated_at_ms, last_seq, head_hash, summary)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (id) DO UPDATE SET status = excluded.status, template = excluded.template,
           updated_at_ms = excluded.updated_at_ms, last_seq = excluded.last_seq,
           head_hash = excluded.head_hash, summary = excluded.summary",
    )?;
    for (id, m) in &missions {
        let Some(projection) = m.projection else {
            continue;
        };
        let summary = serde_json::to_string(&projection.summary)
            .map_err(|e| StoreError::Encode(e.to_string()))?;
        upsert.execute(params![
            id,
            projection.status,
            projection.template,
            m.created_at_ms,
            m.updated_at_ms,
            m.last_seq as i64,
            m.head_hash,
            summary,
        ])?;
    }
    Ok(results)
}

/// Checks the expected seq and seals the request's events onto the chain: each event with
/// its canonical data text and time.
fn seal_request(
    request: &AppendRequest,
    last_seq: u64,
    head_hash: &str,
) -> Result<Vec<(StoredEvent, String, i64)>, StoreError> {
    if request.events.is_empty() {
        return Err(StoreError::EmptyAppend(request.mission.clone()));
    }
    if last_seq != request.expected_seq {
        return Err(StoreError::Conflict {
            mission: request.mission.clone(),
            expected: request.expected_seq,
            actual: last_seq,
        });
    }
    let mut prev_hash = head_hash.to_string();
    let mut sealed = Vec::with_capacity(request.events.len());
    for (i, event) in request.events.iter().enumerate() {
        let seq = last_seq + 1 + i as u64;
        let stored = seal(
            &request.mission,
            seq,
            event.at_ms,
            &prev_hash,
            &event.event_type,
            event.data.clone(),
        )
        .map_err(|e| StoreError::Encode(e.to_string()))?;
        let data_text =
            canonicalize(&stored.data).map_err(|e| StoreError::Encode(e.to_string()))?;
        prev_hash = stored.hash.clone();
        sealed.push((stored, data_text, event.at_ms));
    }
    Ok(sealed)
}

fn database_error(message: &str) -> StoreError {
    StoreError::Database(sqlx::Error::Protocol(message.to_string()))
}
