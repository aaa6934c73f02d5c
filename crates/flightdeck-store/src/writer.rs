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
//!
//! Leases are taken and given back (and feed cursors saved) through it too: it is the
//! store's only writing connection. Inputs are posted and refused through the same thread,
//! in the same batches, so that a mission's inbox and its timeline change in one order; an
//! append that consumes inputs marks them applied in the transaction of its events. After
//! each commit that changed a timeline or an inbox, the thread wakes this process's change
//! feeds and opens and closes the `-wal` for other processes' (see `feed.rs`).
//!
//! GitHub webhook deliveries are recorded, finished and retried through it as well (durable
//! on return, like everything it commits); they wake no change feed.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use flightdeck_core::chain::seal;
use flightdeck_core::hash::GENESIS_HASH;
use flightdeck_core::jcs::canonicalize;
use flightdeck_core::{Digest, StoredEvent};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use tokio::sync::{oneshot, watch};

use crate::feed;
use crate::sqlite_artifacts::Staged;
use crate::{
    AppendRequest, ClaimRequest, Claimed, Lease, NewInput, Projection, StoreError, TokenRow,
};

/// Jobs committed together at most.
const MAX_BATCH: usize = 256;

pub(crate) type AppendResult = Result<Vec<StoredEvent>, StoreError>;

/// What the writer is asked to do.
pub(crate) enum Job {
    Append {
        request: AppendRequest,
        reply: oneshot::Sender<AppendResult>,
    },
    PostInput {
        input: NewInput,
        reply: oneshot::Sender<Result<i64, StoreError>>,
    },
    RefuseInput {
        id: i64,
        reason: String,
        at_ms: i64,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    AcquireLease {
        mission: String,
        owner: String,
        now_ms: i64,
        ttl_ms: i64,
        steal_from: Option<String>,
        reply: oneshot::Sender<Result<Option<Lease>, StoreError>>,
    },
    ReleaseLease {
        mission: String,
        owner: String,
        /// Only this holding of `owner`'s (`None`: any).
        epoch: Option<u64>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Lease missions a worker can make progress on ([`crate::EventStore::claim_runnable`]).
    Claim {
        request: ClaimRequest,
        reply: oneshot::Sender<Result<Vec<Claimed>, StoreError>>,
    },
    /// Make, revoke or use an API token.
    Token {
        write: TokenWrite,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    /// Reserve or settle team quotas ([`crate::EventStore::reserve_quota`]).
    Quota {
        write: crate::quota::QuotaWrite,
        reply: oneshot::Sender<Result<crate::quota::QuotaAnswer, StoreError>>,
    },
    /// Save where a reader of the feed got to ([`crate::EventStore::save_feed_cursor`]).
    SaveFeedCursor {
        reader: String,
        position: u64,
        at_ms: i64,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Take or renew the lease on a named feed reader
    /// ([`crate::EventStore::hold_feed_reader`]).
    HoldFeedReader {
        reader: String,
        owner: String,
        now_ms: i64,
        ttl_ms: i64,
        steal_from: Option<String>,
        reply: oneshot::Sender<Result<Option<String>, StoreError>>,
    },
    /// Give the lease on a named feed reader back
    /// ([`crate::EventStore::release_feed_reader`]).
    ReleaseFeedReader {
        reader: String,
        owner: String,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Store a GitHub webhook delivery unless its id is known
    /// ([`crate::EventStore::record_delivery`]).
    RecordDelivery {
        id: String,
        event: String,
        body: Vec<u8>,
        now_ms: i64,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    /// Mark a delivery handled ([`crate::EventStore::finish_delivery`]).
    FinishDelivery {
        id: String,
        outcome: String,
        now_ms: i64,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Count a failed try of a delivery and make it due again
    /// ([`crate::EventStore::retry_delivery`]).
    RetryDelivery {
        id: String,
        error: String,
        retry_at_ms: i64,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Commit the staged artifacts now.
    Flush {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// A change to the API tokens.
pub(crate) enum TokenWrite {
    Create(TokenRow),
    Revoke { id: String, at_ms: i64 },
    Touch { id: String, at_ms: i64 },
}

/// What became of one job of a committed batch.
enum Outcome {
    Append(AppendResult),
    Posted(Result<i64, StoreError>),
    Refused(Result<(), StoreError>),
    Leased(Option<Lease>),
    Released,
    Claimed(Vec<Claimed>),
    /// Whether the token write changed a row, or why it was refused.
    Token(Result<bool, StoreError>),
    Flushed,
    Quota(Result<crate::quota::QuotaAnswer, StoreError>),
    CursorSaved,
    /// Whether the owner holds the feed reader's lease after the attempt.
    FeedReaderHeld(Option<String>),
    FeedReaderReleased,
    /// Whether the delivery was new (stored) rather than known already.
    DeliveryRecorded(bool),
    DeliveryFinished,
    DeliveryRetried,
}

impl Outcome {
    /// Whether a timeline or an inbox changed, or a lease was given back (whoever waits to
    /// take a mission's inbox in may now): what change feeds hear about.
    fn changed(&self) -> bool {
        match self {
            Outcome::Append(r) => r.is_ok(),
            Outcome::Posted(r) => r.is_ok(),
            Outcome::Refused(r) => r.is_ok(),
            Outcome::Released => true,
            Outcome::Leased(_)
            | Outcome::Claimed(_)
            | Outcome::Flushed
            | Outcome::Quota(_)
            | Outcome::Token(_)
            | Outcome::CursorSaved
            | Outcome::FeedReaderHeld(_)
            | Outcome::FeedReaderReleased
            | Outcome::DeliveryRecorded(_)
            | Outcome::DeliveryFinished
            | Outcome::DeliveryRetried => false,
        }
    }

    /// Whether an input was posted: what drivers wait for.
    fn posted(&self) -> bool {
        matches!(self, Outcome::Posted(Ok(_)))
    }
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

/// Where the writer tells of its commits.
pub(crate) struct Notify {
    pub(crate) changes: Arc<watch::Sender<u64>>,
    /// The `-wal` opened and closed after each commit, for other processes' feeds.
    pub(crate) wal: PathBuf,
    /// Bumped after each commit that posted an input (drivers' feeds).
    pub(crate) inputs: Arc<watch::Sender<u64>>,
    /// The `-inbox` file written after such a commit, for other processes' drivers.
    pub(crate) inbox: PathBuf,
}

/// Opens the writer's connection and starts its thread. The schema must already be migrated.
pub(crate) fn spawn(
    path: &Path,
    staged: Arc<Staged>,
    notify: Notify,
) -> Result<Writer, StoreError> {
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
        .spawn(move || writer_loop(conn, jobs, &staged, &notify))
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
fn writer_loop(mut conn: Connection, jobs: mpsc::Receiver<Job>, staged: &Staged, notify: &Notify) {
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
        let outcomes = match commit_batch(&mut conn, &artifacts, &batch) {
            Ok(outcomes) => {
                staged.committed(&artifacts);
                if outcomes.iter().any(Outcome::changed) {
                    // The commit is visible: now, and only now, wake the feeds.
                    feed::signal_commit(&notify.wal);
                    feed::bump(&notify.changes);
                }
                if outcomes.iter().any(Outcome::posted) {
                    feed::signal_post(&notify.inbox);
                    feed::bump(&notify.inputs);
                }
                outcomes.into_iter().map(Ok).collect()
            }
            Err(e) => {
                // Nothing of the batch is kept (the staged artifacts stay staged for the
                // next one); every job hears why.
                let message = e.to_string();
                batch
                    .iter()
                    .map(|_| Err(message.clone()))
                    .collect::<Vec<_>>()
            }
        };
        for (job, outcome) in batch.into_iter().zip(outcomes) {
            // A caller may have gone away; what it asked for is committed all the same.
            reply(job, outcome);
        }
    }
    let artifacts = staged.snapshot();
    if !artifacts.is_empty() && commit_batch(&mut conn, &artifacts, &[]).is_ok() {
        staged.committed(&artifacts);
    }
}

/// Answers `job` with its outcome, or with the error that failed its whole batch.
fn reply(job: Job, outcome: Result<Outcome, String>) {
    match (job, outcome) {
        (Job::Append { reply, .. }, Ok(Outcome::Append(r))) => {
            let _ = reply.send(r);
        }
        (Job::PostInput { reply, .. }, Ok(Outcome::Posted(r))) => {
            let _ = reply.send(r);
        }
        (Job::RefuseInput { reply, .. }, Ok(Outcome::Refused(r))) => {
            let _ = reply.send(r);
        }
        (Job::AcquireLease { reply, .. }, Ok(Outcome::Leased(holder))) => {
            let _ = reply.send(Ok(holder));
        }
        (Job::Token { reply, .. }, Ok(Outcome::Token(changed))) => {
            let _ = reply.send(changed);
        }
        (Job::Quota { reply, .. }, Ok(Outcome::Quota(answer))) => {
            let _ = reply.send(answer);
        }
        (Job::Claim { reply, .. }, Ok(Outcome::Claimed(claimed))) => {
            let _ = reply.send(Ok(claimed));
        }
        (Job::HoldFeedReader { reply, .. }, Ok(Outcome::FeedReaderHeld(held))) => {
            let _ = reply.send(Ok(held));
        }
        (Job::RecordDelivery { reply, .. }, Ok(Outcome::DeliveryRecorded(new))) => {
            let _ = reply.send(Ok(new));
        }
        (Job::ReleaseLease { reply, .. }, Ok(Outcome::Released))
        | (Job::SaveFeedCursor { reply, .. }, Ok(Outcome::CursorSaved))
        | (Job::ReleaseFeedReader { reply, .. }, Ok(Outcome::FeedReaderReleased))
        | (Job::FinishDelivery { reply, .. }, Ok(Outcome::DeliveryFinished))
        | (Job::RetryDelivery { reply, .. }, Ok(Outcome::DeliveryRetried))
        | (Job::Flush { reply }, Ok(Outcome::Flushed)) => {
            let _ = reply.send(Ok(()));
        }
        (job, outcome) => {
            let error = || match &outcome {
                Err(message) => database_error(message),
                Ok(_) => database_error("no result for this job"),
            };
            match job {
                Job::Append { reply, .. } => {
                    let _ = reply.send(Err(error()));
                }
                Job::PostInput { reply, .. } => {
                    let _ = reply.send(Err(error()));
                }
                Job::RefuseInput { reply, .. } => {
                    let _ = reply.send(Err(error()));
                }
                Job::AcquireLease { reply, .. } => {
                    let _ = reply.send(Err(error()));
                }
                Job::ReleaseLease { reply, .. }
                | Job::SaveFeedCursor { reply, .. }
                | Job::ReleaseFeedReader { reply, .. }
                | Job::FinishDelivery { reply, .. }
                | Job::RetryDelivery { reply, .. }
                | Job::Flush { reply } => {
                    let _ = reply.send(Err(error()));
                }
                Job::Token { reply, .. } => {
                    let _ = reply.send(Err(error()));
                }
                Job::Claim { reply, .. } => {
                    let _ = reply.send(Err(error()));
                }
                Job::Quota { reply, .. } => {
                    let _ = reply.send(Err(error()));
                }
                Job::HoldFeedReader { reply, .. } => {
                    let _ = reply.send(Err(error()));
                }
                Job::RecordDelivery { reply, .. } => {
                    let _ = reply.send(Err(error()));
                }
            }
        }
    }
}

/// Commits every job of the batch that can be applied, in one transaction, in the order
/// the jobs came: a job that cannot be applied (a conflicting append, an input that is not
/// pending, a post to a missing mission) writes nothing and fails alone. The staged
/// `artifacts` go first, so that no event commits without what it references. An SQL error
/// rolls the whole transaction back (the transaction is dropped uncommitted).
fn commit_batch(
    conn: &mut Connection,
    artifacts: &[(Digest, Arc<[u8]>)],
    batch: &[Job],
) -> Result<Vec<Outcome>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if !artifacts.is_empty() {
        let mut insert =
            tx.prepare_cached("INSERT OR IGNORE INTO artifacts (digest, bytes) VALUES (?1, ?2)")?;
        for (digest, bytes) in artifacts {
            insert.execute(params![digest.to_string(), &bytes[..]])?;
        }
    }
    let outcomes = write_batch(&tx, batch)?;
    tx.commit()?;
    Ok(outcomes)
}

/// A mission's row as the batch leaves it.
struct PendingMission<'a> {
    created_at_ms: i64,
    updated_at_ms: i64,
    last_seq: u64,
    head_hash: String,
    projection: Option<&'a Projection>,
}

/// The batch's view of the missions it touches: each head read once, then kept in memory.
struct Heads<'a> {
    missions: BTreeMap<&'a str, PendingMission<'a>>,
}

impl<'a> Heads<'a> {
    fn get(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        id: &'a str,
    ) -> Result<&mut PendingMission<'a>, StoreError> {
        if !self.missions.contains_key(id) {
            let row = tx
                .prepare_cached(
                    "SELECT last_seq, head_hash, created_at_ms FROM missions WHERE id = ?1",
                )?
                .query_row(params![id], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, i64>(2)?,
                    ))
                })
                .optional()?;
            let pending = match row {
                Some((last_seq, head_hash, created_at_ms)) => PendingMission {
                    created_at_ms,
                    updated_at_ms: created_at_ms,
                    last_seq: last_seq as u64,
                    head_hash,
                    projection: None,
                },
                None => PendingMission {
                    created_at_ms: 0,
                    updated_at_ms: 0,
                    last_seq: 0,
                    head_hash: GENESIS_HASH.to_string(),
                    projection: None,
                },
            };
            self.missions.insert(id, pending);
        }
        self.missions
            .get_mut(id)
            .ok_or_else(|| database_error("a mission head vanished from the batch"))
    }
}

fn write_batch(tx: &rusqlite::Transaction<'_>, batch: &[Job]) -> Result<Vec<Outcome>, StoreError> {
    let mut heads = Heads {
        missions: BTreeMap::new(),
    };
    let mut outcomes = Vec::with_capacity(batch.len());
    for job in batch {
        outcomes.push(match job {
            Job::Append { request, .. } => Outcome::Append(append(tx, &mut heads, request)?),
            Job::PostInput { input, .. } => Outcome::Posted(post_input(tx, &mut heads, input)?),
            Job::RefuseInput {
                id, reason, at_ms, ..
            } => Outcome::Refused(refuse_input(tx, *id, reason, *at_ms)?),
            Job::AcquireLease {
                mission,
                owner,
                now_ms,
                ttl_ms,
                steal_from,
                ..
            } => Outcome::Leased(acquire_lease(
                tx,
                mission,
                owner,
                *now_ms,
                *ttl_ms,
                steal_from.as_deref(),
            )?),
            Job::ReleaseLease {
                mission,
                owner,
                epoch,
                ..
            } => {
                tx.prepare_cached(
                    "UPDATE missions SET lease_owner = NULL, lease_expires_ms = NULL
                     WHERE id = ?1 AND lease_owner = ?2 AND (?3 IS NULL OR lease_epoch = ?3)",
                )?
                .execute(params![mission, owner, epoch.map(|e| e as i64)])?;
                Outcome::Released
            }
            Job::Flush { .. } => Outcome::Flushed,
            Job::SaveFeedCursor {
                reader,
                position,
                at_ms,
                ..
            } => {
                save_feed_cursor(tx, reader, *position, *at_ms)?;
                Outcome::CursorSaved
            }
            Job::HoldFeedReader {
                reader,
                owner,
                now_ms,
                ttl_ms,
                steal_from,
                ..
            } => Outcome::FeedReaderHeld(hold_feed_reader(
                tx,
                reader,
                owner,
                (*now_ms, *ttl_ms),
                steal_from.as_deref(),
            )?),
            Job::ReleaseFeedReader { reader, owner, .. } => {
                tx.prepare_cached(
                    "UPDATE feed_cursors SET holder = NULL, held_until_ms = NULL
                     WHERE reader = ?1 AND holder = ?2",
                )?
                .execute(params![reader, owner])?;
                Outcome::FeedReaderReleased
            }
            Job::RecordDelivery {
                id,
                event,
                body,
                now_ms,
                ..
            } => Outcome::DeliveryRecorded(record_delivery(tx, id, event, body, *now_ms)?),
            Job::FinishDelivery {
                id,
                outcome,
                now_ms,
                ..
            } => {
                tx.prepare_cached(
                    "UPDATE github_deliveries SET handled_ms = ?3, outcome = ?2, body = X''
                     WHERE id = ?1 AND handled_ms IS NULL",
                )?
                .execute(params![id, outcome, now_ms])?;
                Outcome::DeliveryFinished
            }
            Job::RetryDelivery {
                id,
                error,
                retry_at_ms,
                ..
            } => {
                tx.prepare_cached(
                    "UPDATE github_deliveries
                     SET attempts = attempts + 1, last_error = ?2, due_ms = ?3
                     WHERE id = ?1 AND handled_ms IS NULL",
                )?
                .execute(params![id, error, retry_at_ms])?;
                Outcome::DeliveryRetried
            }
            Job::Token { write, .. } => Outcome::Token(write_token(tx, write)?),
            Job::Quota { write, .. } => Outcome::Quota(crate::quota::sqlite_write(tx, write)?),
            Job::Claim { request, .. } => {
                // A claim judges missions by their rows: the appends before it in this
                // batch are written first.
                write_mission_rows(tx, &mut heads)?;
                Outcome::Claimed(claim_runnable(tx, request)?)
            }
        });
    }
    write_mission_rows(tx, &mut heads)?;
    Ok(outcomes)
}

/// Writes the mission rows the batch's appends changed so far (each once: a later append
/// of the same mission in the batch writes it again).
fn write_mission_rows(
    tx: &rusqlite::Transaction<'_>,
    heads: &mut Heads<'_>,
) -> Result<(), StoreError> {
    let mut upsert = tx.prepare_cached(
        "INSERT INTO missions (id, status, template, created_at_ms, updated_at_ms, last_seq,
                               head_hash, summary, requested_by, ready, waiting_for,
                               next_deadline_ms, cost_usd, team)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
         ON CONFLICT (id) DO UPDATE SET status = excluded.status, template = excluded.template,
           updated_at_ms = excluded.updated_at_ms, last_seq = excluded.last_seq,
           head_hash = excluded.head_hash, summary = excluded.summary,
           requested_by = excluded.requested_by, ready = excluded.ready,
           waiting_for = excluded.waiting_for, next_deadline_ms = excluded.next_deadline_ms,
           cost_usd = excluded.cost_usd, team = excluded.team",
    )?;
    for (id, m) in &mut heads.missions {
        let Some(projection) = m.projection.take() else {
            continue;
        };
        let summary = serde_json::to_string(&projection.summary)
            .map_err(|e| StoreError::Encode(e.to_string()))?;
        let columns = &projection.columns;
        upsert.execute(params![
            id,
            projection.status,
            projection.template,
            m.created_at_ms,
            m.updated_at_ms,
            m.last_seq as i64,
            m.head_hash,
            summary,
            columns.requested_by,
            columns.ready,
            columns.waiting_for,
            columns.next_deadline_ms,
            columns.cost_usd,
            columns.team,
        ])?;
    }
    Ok(())
}

/// What a claim hands out: see [`crate::EventStore::claim_runnable`]. The writer is the
/// only writer, so the missions chosen are leased before anyone else can look.
fn claim_runnable(
    tx: &rusqlite::Transaction<'_>,
    request: &ClaimRequest,
) -> Result<Vec<Claimed>, StoreError> {
    let steal = serde_json::to_string(&request.steal_from)
        .map_err(|e| StoreError::Encode(e.to_string()))?;
    let skip =
        serde_json::to_string(&request.skip).map_err(|e| StoreError::Encode(e.to_string()))?;
    let chosen: Vec<String> = tx
        .prepare_cached(
            // Three small sets, each read through its own partial index (never a scan of
            // every mission), then the leases and the order on those alone.
            "SELECT id FROM missions
             WHERE id IN (SELECT id FROM missions WHERE ready = 1
                          UNION SELECT id FROM missions WHERE next_deadline_ms <= ?1
                          UNION SELECT mission FROM inputs INDEXED BY inputs_pending
                                WHERE state = 'pending')
               AND (lease_owner IS NULL OR lease_expires_ms <= ?1
                    OR lease_owner IN (SELECT value FROM json_each(?2)))
               AND id NOT IN (SELECT value FROM json_each(?3))
             ORDER BY updated_at_ms, id
             LIMIT ?4",
        )?
        .query_map(
            params![request.now_ms, steal, skip, i64::from(request.limit)],
            |row| row.get(0),
        )?
        .collect::<Result<_, _>>()?;
    let expires_ms = request.now_ms.saturating_add(request.ttl_ms);
    let mut lease = tx.prepare_cached(
        "UPDATE missions SET lease_epoch = lease_epoch + 1, lease_owner = ?2,
                             lease_expires_ms = ?3
         WHERE id = ?1 RETURNING lease_epoch",
    )?;
    let mut claimed = Vec::with_capacity(chosen.len());
    for mission in chosen {
        let epoch: i64 = lease.query_row(params![mission, request.owner, expires_ms], |row| {
            row.get(0)
        })?;
        claimed.push(Claimed {
            mission,
            lease: Lease {
                owner: request.owner.clone(),
                expires_ms,
                epoch: epoch as u64,
            },
        });
    }
    Ok(claimed)
}

/// Saves where `reader` got to in the feed, never moving its cursor back: a lower
/// position keeps the saved one (and when it was saved).
fn save_feed_cursor(
    tx: &rusqlite::Transaction<'_>,
    reader: &str,
    position: u64,
    at_ms: i64,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO feed_cursors (reader, position, saved_at_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (reader) DO UPDATE SET
           saved_at_ms = CASE WHEN excluded.position >= position
                              THEN excluded.saved_at_ms ELSE saved_at_ms END,
           position = max(position, excluded.position)",
    )?
    .execute(params![
        reader,
        i64::try_from(position).unwrap_or(i64::MAX),
        at_ms
    ])?;
    Ok(())
}

/// Takes or renews the lease on `reader` for `owner` if it is free, ran out, is already
/// `owner`'s or `steal_from`'s (a row made for it has no saved position); who holds it
/// after, at `now_ms`.
fn hold_feed_reader(
    tx: &rusqlite::Transaction<'_>,
    reader: &str,
    owner: &str,
    (now_ms, ttl_ms): (i64, i64),
    steal_from: Option<&str>,
) -> Result<Option<String>, StoreError> {
    tx.prepare_cached(
        "INSERT INTO feed_cursors (reader, holder, held_until_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (reader) DO UPDATE SET holder = ?2, held_until_ms = ?3
         WHERE holder IS NULL OR holder = ?2 OR held_until_ms <= ?4 OR holder = ?5",
    )?
    .execute(params![
        reader,
        owner,
        now_ms.saturating_add(ttl_ms),
        now_ms,
        steal_from
    ])?;
    let holder: Option<Option<String>> = tx
        .prepare_cached("SELECT holder FROM feed_cursors WHERE reader = ?1 AND held_until_ms > ?2")?
        .query_row(params![reader, now_ms], |row| row.get(0))
        .optional()?;
    Ok(holder.flatten())
}

/// Stores a GitHub webhook delivery, due at once, unless its id is known (pending or
/// handled: the row outlives the handling for this); whether it was new.
fn record_delivery(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
    event: &str,
    body: &[u8],
    now_ms: i64,
) -> Result<bool, StoreError> {
    let stored = tx
        .prepare_cached(
            "INSERT INTO github_deliveries (id, event, body, received_ms, due_ms)
             VALUES (?1, ?2, ?3, ?4, ?4)
             ON CONFLICT (id) DO NOTHING",
        )?
        .execute(params![id, event, body, now_ms])?;
    Ok(stored > 0)
}

/// One token write of the batch; whether it changed a row. A write the schema refuses (a
/// hash or id already taken, a trigger) fails alone: SQLite undoes only that statement, and
/// the rest of the batch commits.
fn write_token(
    tx: &rusqlite::Transaction<'_>,
    write: &TokenWrite,
) -> Result<Result<bool, StoreError>, StoreError> {
    let executed = match write {
        TokenWrite::Create(t) => tx
            .prepare_cached(
                "INSERT INTO tokens (id, hash, owner, role, created_at_ms, created_by, expires_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                t.id,
                t.hash,
                t.owner,
                t.role,
                t.created_at_ms,
                t.created_by,
                t.expires_at_ms
            ]),
        TokenWrite::Revoke { id, at_ms } => tx
            .prepare_cached(
                "UPDATE tokens SET revoked_at_ms = ?2 WHERE id = ?1 AND revoked_at_ms IS NULL",
            )?
            .execute(params![id, at_ms]),
        TokenWrite::Touch { id, at_ms } => tx
            .prepare_cached("UPDATE tokens SET last_used_ms = ?2 WHERE id = ?1")?
            .execute(params![id, at_ms]),
    };
    match executed {
        Ok(changed) => Ok(Ok(changed > 0)),
        Err(rusqlite::Error::SqliteFailure(e, message))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Ok(Err(database_error(&format!(
                "the token was refused: {}",
                message.unwrap_or_else(|| e.to_string())
            ))))
        }
        Err(e) => Err(e.into()),
    }
}

/// One append of the batch. The outer error fails the batch (SQL); the inner one only this
/// append, which then has written nothing.
fn append<'a>(
    tx: &rusqlite::Transaction<'_>,
    heads: &mut Heads<'a>,
    request: &'a AppendRequest,
) -> Result<AppendResult, StoreError> {
    if let Some(held) = request.fence {
        let current: Option<i64> = tx
            .prepare_cached("SELECT lease_epoch FROM missions WHERE id = ?1")?
            .query_row(params![request.mission], |row| row.get(0))
            .optional()?;
        let current = current.unwrap_or(0) as u64;
        if current != held {
            return Ok(Err(StoreError::Fenced {
                mission: request.mission.clone(),
                held,
                current,
            }));
        }
    }
    let pending = heads.get(tx, &request.mission)?;
    let sealed = match seal_request(request, pending.last_seq, &pending.head_hash) {
        Ok(sealed) => sealed,
        Err(e) => return Ok(Err(e)),
    };
    if let Some(refusal) = check_consumes(tx, request)? {
        return Ok(Err(refusal));
    }
    let mut insert = tx.prepare_cached(
        "INSERT INTO events (mission, seq, at_ms, type, data, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
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
    let (Some(first), Some(last)) = (sealed.first(), sealed.last()) else {
        return Ok(Err(StoreError::EmptyAppend(request.mission.clone())));
    };
    if !request.consumes.is_empty() {
        let mut applied = tx.prepare_cached(
            "UPDATE inputs SET state = 'applied', applied_seq = ?2, decided_at_ms = ?3
             WHERE id = ?1 AND state = 'pending'",
        )?;
        for id in &request.consumes {
            applied.execute(params![id, last.0.seq as i64, last.2])?;
        }
    }
    if !request.projection.items.is_empty() {
        let mut item = tx.prepare_cached(
            "INSERT INTO projection_items (mission, list, position, value) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (mission, list, position) DO UPDATE SET value = excluded.value",
        )?;
        for it in &request.projection.items {
            let value =
                serde_json::to_string(&it.value).map_err(|e| StoreError::Encode(e.to_string()))?;
            let position = i64::try_from(it.position).unwrap_or(i64::MAX);
            item.execute(params![request.mission, it.list, position, value])?;
        }
    }
    // The global position of this append (one writer: positions are in commit order).
    tx.prepare_cached(
        "INSERT INTO feed (mission, last_seq, status, at_ms) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        request.mission,
        last.0.seq as i64,
        request.projection.status,
        last.2
    ])?;
    if pending.last_seq == 0 {
        pending.created_at_ms = first.2;
    }
    pending.last_seq = last.0.seq;
    pending.head_hash = last.0.hash.clone();
    pending.updated_at_ms = last.2;
    pending.projection = Some(&request.projection);
    Ok(Ok(sealed.into_iter().map(|(e, _, _)| e).collect()))
}

/// Why the inputs an append consumes cannot be applied, if they cannot: each must be a
/// pending input of the append's mission, named once.
fn check_consumes(
    tx: &rusqlite::Transaction<'_>,
    request: &AppendRequest,
) -> Result<Option<StoreError>, StoreError> {
    if request.consumes.is_empty() {
        return Ok(None);
    }
    let mut seen = HashSet::new();
    let mut state = tx.prepare_cached("SELECT mission, state FROM inputs WHERE id = ?1")?;
    for &id in &request.consumes {
        if !seen.insert(id) {
            return Ok(Some(StoreError::InputNotPending { id }));
        }
        let row = state
            .query_row(params![id], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })
            .optional()?;
        match row {
            None => return Ok(Some(StoreError::UnknownInput { id })),
            Some((mission, state)) if mission != request.mission || state != "pending" => {
                return Ok(Some(StoreError::InputNotPending { id }))
            }
            Some(_) => {}
        }
    }
    Ok(None)
}

fn post_input<'a>(
    tx: &rusqlite::Transaction<'_>,
    heads: &mut Heads<'a>,
    input: &'a NewInput,
) -> Result<Result<i64, StoreError>, StoreError> {
    // A mission exists once it has an event (here or earlier in this batch).
    if heads.get(tx, &input.mission)?.last_seq == 0 {
        return Ok(Err(StoreError::UnknownMission {
            mission: input.mission.clone(),
        }));
    }
    let payload = match serde_json::to_string(&input.payload) {
        Ok(payload) => payload,
        Err(e) => return Ok(Err(StoreError::Encode(e.to_string()))),
    };
    tx.prepare_cached(
        "INSERT INTO inputs (mission, kind, payload, posted_at_ms, state)
         VALUES (?1, ?2, ?3, ?4, 'pending')",
    )?
    .execute(params![
        input.mission,
        input.kind,
        payload,
        input.posted_at_ms
    ])?;
    Ok(Ok(tx.last_insert_rowid()))
}

fn refuse_input(
    tx: &rusqlite::Transaction<'_>,
    id: i64,
    reason: &str,
    at_ms: i64,
) -> Result<Result<(), StoreError>, StoreError> {
    let state: Option<String> = tx
        .prepare_cached("SELECT state FROM inputs WHERE id = ?1")?
        .query_row(params![id], |row| row.get(0))
        .optional()?;
    match state.as_deref() {
        None => return Ok(Err(StoreError::UnknownInput { id })),
        Some("pending") => {}
        Some(_) => return Ok(Err(StoreError::InputNotPending { id })),
    }
    tx.prepare_cached(
        "UPDATE inputs SET state = 'refused', reason = ?2, decided_at_ms = ?3
         WHERE id = ?1 AND state = 'pending'",
    )?
    .execute(params![id, reason, at_ms])?;
    Ok(Ok(()))
}

/// Takes the lease of `mission` for `owner` if it is free, expired, already `owner`'s, or
/// held by `steal_from`; returns the holder after the attempt. A mission first appended in
/// this same batch has no row yet, so no lease either.
fn acquire_lease(
    tx: &rusqlite::Transaction<'_>,
    mission: &str,
    owner: &str,
    now_ms: i64,
    ttl_ms: i64,
    steal_from: Option<&str>,
) -> Result<Option<Lease>, StoreError> {
    // A new holding (another owner, or the same after it ran out) is a new epoch.
    tx.prepare_cached(
        "UPDATE missions SET
           lease_epoch = CASE WHEN lease_owner IS ?2 AND lease_expires_ms > ?4
                              THEN lease_epoch ELSE lease_epoch + 1 END,
           lease_owner = ?2, lease_expires_ms = ?3
         WHERE id = ?1 AND (lease_owner IS NULL OR lease_owner = ?2 OR lease_expires_ms <= ?4
                            OR lease_owner = ?5)",
    )?
    .execute(params![mission, owner, now_ms + ttl_ms, now_ms, steal_from])?;
    let holder: Option<(Option<String>, Option<i64>, i64)> = tx
        .prepare_cached(
            "SELECT lease_owner, lease_expires_ms, lease_epoch FROM missions WHERE id = ?1",
        )?
        .query_row(params![mission], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()?;
    Ok(holder.and_then(|(owner, expires, epoch)| {
        owner.map(|owner| Lease {
            owner,
            expires_ms: expires.unwrap_or(0),
            epoch: epoch as u64,
        })
    }))
}

/// Checks the expected seq and seals the request's events onto the chain: each event with
/// its canonical data text and time.
pub(crate) fn seal_request(
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

pub(crate) fn database_error(message: &str) -> StoreError {
    StoreError::Database(sqlx::Error::Protocol(message.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use serde_json::json;

    use super::*;
    use crate::{EventStore, InputState, NewEvent, SqliteStore};

    fn append(mission: &str, expected_seq: u64, consumes: &[i64]) -> Job {
        Job::Append {
            request: AppendRequest {
                mission: mission.into(),
                expected_seq,
                events: vec![NewEvent {
                    at_ms: 1_000 + expected_seq as i64,
                    event_type: "note".into(),
                    data: json!({}),
                }],
                projection: Projection {
                    status: "running".into(),
                    template: "t".into(),
                    summary: json!({}),
                    items: Vec::new(),
                    columns: crate::ProjectionColumns::default(),
                },
                consumes: consumes.to_vec(),
                fence: None,
            },
            reply: oneshot::channel().0,
        }
    }

    fn post(mission: &str) -> Job {
        Job::PostInput {
            input: NewInput {
                mission: mission.into(),
                kind: "k".into(),
                payload: json!(null),
                posted_at_ms: 5,
            },
            reply: oneshot::channel().0,
        }
    }

    /// One batch, in order: what can be applied is, what cannot fails alone.
    #[tokio::test]
    async fn one_batch_applies_what_it_can_and_fails_the_rest_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let (ok, refused) = {
            let store = SqliteStore::open(&path).await.unwrap();
            let mut first = append("m-a", 0, &[]);
            let Job::Append { request, .. } = &mut first else {
                panic!()
            };
            store.append(request.clone()).await.unwrap();
            let ok = store.post_input(input("m-a")).await.unwrap();
            let refused = store.post_input(input("m-a")).await.unwrap();
            store.refuse_input(refused, "no", 9).await.unwrap();
            (ok, refused)
        };
        let mut conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        let batch = vec![
            append("m-b", 0, &[]),
            post("m-b"), // created by the job before, in this batch
            append("m-a", 1, &[refused]),
            append("m-a", 1, &[ok]),
            post("m-nope"),
            Job::RefuseInput {
                id: refused,
                reason: "again".into(),
                at_ms: 0,
                reply: oneshot::channel().0,
            },
            append("m-a", 1, &[]), // conflicts with the append before
        ];
        let outcomes = commit_batch(&mut conn, &[], &batch).unwrap();
        let posted_b = match &outcomes[1] {
            Outcome::Posted(Ok(id)) => *id,
            _ => panic!("post to a mission created in the batch"),
        };
        assert!(matches!(outcomes[0], Outcome::Append(Ok(_))));
        assert!(matches!(
            outcomes[2],
            Outcome::Append(Err(StoreError::InputNotPending { .. }))
        ));
        assert!(matches!(outcomes[3], Outcome::Append(Ok(_))));
        assert!(matches!(
            outcomes[4],
            Outcome::Posted(Err(StoreError::UnknownMission { .. }))
        ));
        assert!(matches!(
            outcomes[5],
            Outcome::Refused(Err(StoreError::InputNotPending { .. }))
        ));
        assert!(matches!(
            outcomes[6],
            Outcome::Append(Err(StoreError::Conflict { .. }))
        ));
        drop(conn);

        let store = SqliteStore::open(&path).await.unwrap();
        assert_eq!(store.mission("m-a").await.unwrap().unwrap().last_seq, 2);
        let b = store.mission("m-b").await.unwrap().unwrap();
        assert_eq!((b.last_seq, b.created_at_ms), (1, 1_000));
        assert_eq!(
            store.input(ok).await.unwrap().unwrap().state,
            InputState::Applied { seq: 2 }
        );
        assert_eq!(
            store.input(refused).await.unwrap().unwrap().state,
            InputState::Refused {
                reason: "no".into()
            }
        );
        assert_eq!(
            store.input(posted_b).await.unwrap().unwrap().state,
            InputState::Pending
        );
    }

    fn input(mission: &str) -> NewInput {
        NewInput {
            mission: mission.into(),
            kind: "k".into(),
            payload: json!({"n": 1}),
            posted_at_ms: 5,
        }
    }
}
