//! The PostgreSQL backend: the same [`EventStore`] contract as [`crate::SqliteStore`], on a
//! database many processes on many machines share.
//!
//! - An append is one transaction: the mission's row is locked (`FOR UPDATE`, or its
//!   insertion conflicts for a new mission), the expected seq checked, the events sealed onto
//!   the chain, the inputs it consumes marked applied, the projection written, and
//!   `pg_notify` sent, all committed together. PostgreSQL's own group commit batches
//!   concurrent transactions' fsyncs.
//! - Change feeds are `LISTEN flightdeck_changes`: one listener connection per store, started
//!   by the first [`EventStore::subscribe`], bumps a counter every feed of the store waits on.
//!   After a lost connection (re-established by the listener) it wakes every feed, since
//!   notifications sent meanwhile are lost.
//! - Artifacts live in the database ([`PgArtifactStore`]), committed before `put` returns, so
//!   they are durable before any event that references them.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flightdeck_core::hash::GENESIS_HASH;
use flightdeck_core::{Digest, StoredEvent};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Row, Transaction};
use tokio::sync::{watch, OnceCell};

use crate::artifacts::{ArtifactError, ArtifactStore};
use crate::feed::ChangeFeed;
use crate::{
    AppendRequest, ClaimRequest, Claimed, EventStore, InputRow, InputState, Lease, MissionIndexRow,
    MissionRow, NewInput, RawEvent, StoreError, TokenRow,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The channel appends and inbox changes are announced on.
const CHANNEL: &str = "flightdeck_changes";

/// The advisory lock feed positions are drawn under ("flightfd" in ASCII).
const FEED_LOCK: i64 = 0x666c_6967_6874_6664;

/// `url` with its password replaced (in the user part and as a `password` parameter), for
/// messages.
pub fn masked_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        // Not a URL: nothing in it can be told apart from a password, so none of it is shown.
        return "<the database URL, unreadable>".to_string();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query_pairs().any(|(k, _)| k == "password") {
        let kept: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "password" {
                    "***".to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(kept);
    }
    parsed.to_string().replace("%2A%2A%2A", "***")
}

fn unreachable(url: &str, e: sqlx::Error) -> StoreError {
    // sqlx's messages do not carry the password; the URL is masked here.
    StoreError::Unreachable {
        url: masked_url(url),
        reason: e.to_string(),
    }
}

pub struct PgStore {
    url: String,
    pool: PgPool,
    changes: Arc<watch::Sender<u64>>,
    listener: OnceCell<()>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("url", &masked_url(&self.url))
            .finish()
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://…`), makes sure the database is flightdeck's (an empty
    /// one gets the schema; one of another program is refused, and nothing is written), and
    /// brings its schema up to date.
    pub async fn open(url: &str) -> Result<PgStore, StoreError> {
        let options: PgConnectOptions = url.parse().map_err(|e| unreachable(url, e))?;
        // A process stalled inside a transaction (paused, cut off) would hold the feed's
        // lock, and so every append of the fleet: the server ends such a session, which
        // rolls its transaction back, after a few seconds.
        // And no JIT: every statement here is a short lookup, which JIT compilation (on by
        // default in Debian's build) makes tens of milliseconds slower once a table is big.
        let options = options.options([
            ("idle_in_transaction_session_timeout", "10s"),
            ("jit", "off"),
        ]);
        // One connection first: a refused or unknown server says why at once (a pool would
        // only time out).
        let probe = sqlx::PgConnection::connect_with(&options)
            .await
            .map_err(|e| unreachable(url, e))?;
        let _ = probe.close().await;
        // No idle timeout nor lifetime: sqlx then runs no maintenance task (see the SQLite
        // store's set-up for why).
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(|e| unreachable(url, e))?;
        check_is_flightdecks(&pool, url).await?;
        MIGRATOR.run(&pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::VersionMissing(found) => StoreError::TooNew {
                found,
                known: MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0),
            },
            other => StoreError::Migrate(other),
        })?;
        Ok(PgStore {
            url: url.to_string(),
            pool,
            changes: Arc::new(watch::channel(0).0),
            listener: OnceCell::new(),
        })
    }

    /// The artifact store of this database.
    pub fn artifacts(&self) -> PgArtifactStore {
        PgArtifactStore {
            pool: self.pool.clone(),
        }
    }

    async fn begin(&self) -> Result<Transaction<'static, sqlx::Postgres>, StoreError> {
        Ok(self.pool.begin().await?)
    }

    /// Starts the listener that wakes this store's feeds (once).
    async fn listen(&self) -> Result<(), StoreError> {
        self.listener
            .get_or_try_init(|| async {
                let mut listener = PgListener::connect_with(&self.pool).await?;
                listener.listen(CHANNEL).await?;
                let changes = Arc::downgrade(&self.changes);
                tokio::spawn(async move {
                    loop {
                        // `try_recv` says `None` when the connection was lost (and will be
                        // re-established by the next call): whatever was sent meanwhile is
                        // lost, so every feed is woken.
                        let received = listener.try_recv().await;
                        let Some(changes) = changes.upgrade() else {
                            return;
                        };
                        match received {
                            Ok(_) => changes.send_modify(|n| *n += 1),
                            Err(_) => {
                                changes.send_modify(|n| *n += 1);
                                tokio::time::sleep(Duration::from_millis(500)).await;
                            }
                        }
                    }
                });
                Ok::<(), StoreError>(())
            })
            .await?;
        Ok(())
    }
}

/// Refuses a database that holds tables but not flightdeck's.
async fn check_is_flightdecks(pool: &PgPool, url: &str) -> Result<(), StoreError> {
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables
         WHERE table_schema = current_schema() AND table_name <> '_sqlx_migrations'",
    )
    .fetch_one(pool)
    .await?;
    if tables == 0 {
        return Ok(());
    }
    let marked: Option<String> =
        sqlx::query_scalar("SELECT value FROM flightdeck_meta WHERE key = 'application'")
            .fetch_optional(pool)
            .await
            .unwrap_or(None);
    if marked.as_deref() == Some("flightdeck") {
        return Ok(());
    }
    Err(StoreError::NotFlightdeck {
        path: masked_url(url),
        reason: format!("its schema has {tables} table(s) and no flightdeck marker"),
    })
}

fn seq_i64(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

fn corrupt(mission: &str, seq: u64, reason: String) -> StoreError {
    StoreError::Corrupt {
        mission: mission.to_string(),
        seq,
        reason,
    }
}

fn event_from_row(mission: &str, row: &PgRow) -> Result<StoredEvent, StoreError> {
    let seq = row.try_get::<i64, _>("seq")? as u64;
    let at_ms: i64 = row.try_get("at_ms")?;
    let text: String = row.try_get("data")?;
    let data: Value = serde_json::from_str(&text)
        .map_err(|e| corrupt(mission, seq, format!("data is not JSON: {e}")))?;
    Ok(StoredEvent {
        mission: mission.to_string(),
        seq,
        at: flightdeck_core::clock::format_rfc3339_millis(at_ms),
        event_type: row.try_get("type")?,
        data,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

const MISSION_COLUMNS: &str = "id, status, template, created_at_ms, updated_at_ms, last_seq, head_hash, summary, lease_owner, lease_expires_ms, lease_epoch";

fn mission_from_row(row: &PgRow) -> Result<MissionRow, StoreError> {
    let id: String = row.try_get("id")?;
    let last_seq = row.try_get::<i64, _>("last_seq")? as u64;
    let head_hash: String = row.try_get("head_hash")?;
    let text: String = row.try_get("summary")?;
    let mut summary: Value = serde_json::from_str(&text)
        .map_err(|e| corrupt(&id, last_seq, format!("summary is not JSON: {e}")))?;
    crate::stamp_head(&mut summary, last_seq, &head_hash);
    let lease_owner: Option<String> = row.try_get("lease_owner")?;
    let lease_expires: Option<i64> = row.try_get("lease_expires_ms")?;
    let lease_epoch: i64 = row.try_get("lease_epoch")?;
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
            epoch: lease_epoch as u64,
        }),
    })
}

/// Puts the mission's projection items back into its summary ([`crate::put_items`]).
async fn put_back_items<'c, E>(executor: E, mission: &mut MissionRow) -> Result<(), StoreError>
where
    E: sqlx::PgExecutor<'c>,
{
    let rows = sqlx::query(
        "SELECT list, value FROM projection_items WHERE mission = $1 ORDER BY list, position",
    )
    .bind(&mission.id)
    .fetch_all(executor)
    .await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        let list: String = row.try_get("list")?;
        let text: String = row.try_get("value")?;
        let value: Value = serde_json::from_str(&text).map_err(|e| {
            corrupt(
                &mission.id,
                mission.last_seq,
                format!("projection item of `{list}` is not JSON: {e}"),
            )
        })?;
        items.push((list, value));
    }
    crate::put_items(&mut mission.summary, items);
    Ok(())
}

const INPUT_COLUMNS: &str = "id, mission, kind, payload, posted_at_ms, state, applied_seq, reason";

fn input_from_row(row: &PgRow) -> Result<InputRow, StoreError> {
    let id: i64 = row.try_get("id")?;
    let bad = |reason: String| StoreError::CorruptInput { id, reason };
    let payload_text: String = row.try_get("payload")?;
    let payload = serde_json::from_str(&payload_text)
        .map_err(|e| bad(format!("payload is not JSON: {e}")))?;
    let state: String = row.try_get("state")?;
    let state = match state.as_str() {
        "pending" => InputState::Pending,
        "applied" => InputState::Applied {
            seq: row
                .try_get::<Option<i64>, _>("applied_seq")?
                .ok_or_else(|| bad("applied without a seq".into()))? as u64,
        },
        "refused" => InputState::Refused {
            reason: row
                .try_get::<Option<String>, _>("reason")?
                .ok_or_else(|| bad("refused without a reason".into()))?,
        },
        other => return Err(bad(format!("unknown state `{other}`"))),
    };
    Ok(InputRow {
        id,
        mission: row.try_get("mission")?,
        kind: row.try_get("kind")?,
        payload,
        posted_at_ms: row.try_get("posted_at_ms")?,
        state,
    })
}

const TOKEN_COLUMNS: &str =
    "id, hash, owner, role, created_at_ms, created_by, expires_at_ms, revoked_at_ms, last_used_ms";

fn token_from_row(row: &PgRow) -> Result<TokenRow, StoreError> {
    Ok(TokenRow {
        id: row.try_get("id")?,
        hash: row.try_get("hash")?,
        owner: row.try_get("owner")?,
        role: row.try_get("role")?,
        created_at_ms: row.try_get("created_at_ms")?,
        created_by: row.try_get("created_by")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        revoked_at_ms: row.try_get("revoked_at_ms")?,
        last_used_ms: row.try_get("last_used_ms")?,
    })
}

/// Whether `e` is PostgreSQL's unique violation (two writers creating the same mission).
fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| code == "23505")
}

/// The message of a trigger's or a check's refusal, if `e` is one.
fn refusal(e: &sqlx::Error) -> Option<String> {
    let d = e.as_database_error()?;
    matches!(d.code().as_deref(), Some("P0001" | "23514" | "23505"))
        .then(|| d.message().to_string())
}

#[async_trait]
impl EventStore for PgStore {
    async fn append(&self, request: AppendRequest) -> Result<Vec<StoredEvent>, StoreError> {
        if request.events.is_empty() {
            return Err(StoreError::EmptyAppend(request.mission.clone()));
        }
        let mut tx = self.begin().await?;
        // The row is locked for the transaction: appends to one mission are serialised, to
        // different missions they are not.
        let head = sqlx::query(
            "SELECT last_seq, head_hash, created_at_ms, lease_epoch FROM missions WHERE id = $1 FOR UPDATE",
        )
        .bind(&request.mission)
        .fetch_optional(&mut *tx)
        .await?;
        let (last_seq, head_hash, created_at_ms, epoch) = match &head {
            Some(row) => (
                row.try_get::<i64, _>("last_seq")? as u64,
                row.try_get::<String, _>("head_hash")?,
                Some(row.try_get::<i64, _>("created_at_ms")?),
                row.try_get::<i64, _>("lease_epoch")? as u64,
            ),
            None => (0, GENESIS_HASH.to_string(), None, 0),
        };
        // Checked under the row's lock: a takeover commits before or after this append,
        // never in between.
        if let Some(held) = request.fence {
            if held != epoch {
                return Err(StoreError::Fenced {
                    mission: request.mission.clone(),
                    held,
                    current: epoch,
                });
            }
        }
        let sealed = crate::writer::seal_request(&request, last_seq, &head_hash)?;
        // The inputs it consumes: pending inputs of this mission, each named once.
        let mut seen = HashSet::new();
        for &id in &request.consumes {
            if !seen.insert(id) {
                return Err(StoreError::InputNotPending { id });
            }
            let row = sqlx::query("SELECT mission, state FROM inputs WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            match row {
                None => return Err(StoreError::UnknownInput { id }),
                Some(row) => {
                    let mission: String = row.try_get("mission")?;
                    let state: String = row.try_get("state")?;
                    if mission != request.mission || state != "pending" {
                        return Err(StoreError::InputNotPending { id });
                    }
                }
            }
        }
        for (event, text, at_ms) in &sealed {
            let inserted = sqlx::query(
                "INSERT INTO events (mission, seq, at_ms, type, data, prev_hash, hash)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&event.mission)
            .bind(seq_i64(event.seq))
            .bind(at_ms)
            .bind(&event.event_type)
            .bind(text)
            .bind(&event.prev_hash)
            .bind(&event.hash)
            .execute(&mut *tx)
            .await;
            if let Err(e) = inserted {
                // Another writer created the same new mission first.
                if is_unique_violation(&e) {
                    return Err(StoreError::Conflict {
                        mission: request.mission.clone(),
                        expected: request.expected_seq,
                        actual: request.expected_seq + 1,
                    });
                }
                return Err(e.into());
            }
        }
        let (Some(first), Some(last)) = (sealed.first(), sealed.last()) else {
            return Err(StoreError::EmptyAppend(request.mission.clone()));
        };
        for id in &request.consumes {
            sqlx::query(
                "UPDATE inputs SET state = 'applied', applied_seq = $2, decided_at_ms = $3
                 WHERE id = $1 AND state = 'pending'",
            )
            .bind(id)
            .bind(seq_i64(last.0.seq))
            .bind(last.2)
            .execute(&mut *tx)
            .await?;
        }
        for item in &request.projection.items {
            let value = serde_json::to_string(&item.value)
                .map_err(|e| StoreError::Encode(e.to_string()))?;
            sqlx::query(
                "INSERT INTO projection_items (mission, list, position, value) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (mission, list, position) DO UPDATE SET value = excluded.value",
            )
            .bind(&request.mission)
            .bind(&item.list)
            .bind(seq_i64(item.position))
            .bind(value)
            .execute(&mut *tx)
            .await?;
        }
        let summary = serde_json::to_string(&request.projection.summary)
            .map_err(|e| StoreError::Encode(e.to_string()))?;
        let columns = &request.projection.columns;
        let upserted = sqlx::query(
            "INSERT INTO missions (id, status, template, created_at_ms, updated_at_ms, last_seq,
                                   head_hash, summary, requested_by, ready, waiting_for,
                                   next_deadline_ms, cost_usd, team)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
             ON CONFLICT (id) DO UPDATE SET status = excluded.status, template = excluded.template,
               updated_at_ms = excluded.updated_at_ms, last_seq = excluded.last_seq,
               head_hash = excluded.head_hash, summary = excluded.summary,
               requested_by = excluded.requested_by, ready = excluded.ready,
               waiting_for = excluded.waiting_for, next_deadline_ms = excluded.next_deadline_ms,
               cost_usd = excluded.cost_usd, team = excluded.team",
        )
        .bind(&request.mission)
        .bind(&request.projection.status)
        .bind(&request.projection.template)
        .bind(created_at_ms.unwrap_or(first.2))
        .bind(last.2)
        .bind(seq_i64(last.0.seq))
        .bind(&last.0.hash)
        .bind(summary)
        .bind(&columns.requested_by)
        .bind(columns.ready)
        .bind(&columns.waiting_for)
        .bind(columns.next_deadline_ms)
        .bind(columns.cost_usd)
        .bind(&columns.team)
        .execute(&mut *tx)
        .await;
        if let Err(e) = upserted {
            return Err(e.into());
        }
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(&request.mission)
            .execute(&mut *tx)
            .await?;
        // The global position, last: drawn under a lock held until commit, so positions
        // are in commit order (a reader past N never sees a smaller one appear later).
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(FEED_LOCK)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO feed (mission, last_seq, status, at_ms) VALUES ($1, $2, $3, $4)")
            .bind(&request.mission)
            .bind(seq_i64(last.0.seq))
            .bind(&request.projection.status)
            .bind(last.2)
            .execute(&mut *tx)
            .await?;
        match tx.commit().await {
            Ok(()) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Conflict {
                    mission: request.mission.clone(),
                    expected: request.expected_seq,
                    actual: request.expected_seq + 1,
                })
            }
            Err(e) => return Err(e.into()),
        }
        self.changes.send_modify(|n| *n += 1);
        Ok(sealed.into_iter().map(|(e, _, _)| e).collect())
    }

    async fn events(&self, mission: &str, after_seq: u64) -> Result<Vec<StoredEvent>, StoreError> {
        self.events_between(mission, after_seq, i64::MAX as u64)
            .await
    }

    async fn events_between(
        &self,
        mission: &str,
        after_seq: u64,
        up_to: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at_ms, type, data, prev_hash, hash FROM events
             WHERE mission = $1 AND seq > $2 AND seq <= $3 ORDER BY seq",
        )
        .bind(mission)
        .bind(seq_i64(after_seq))
        .bind(seq_i64(up_to))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| event_from_row(mission, row))
            .collect()
    }

    async fn raw_events(&self, mission: &str) -> Result<Vec<RawEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at_ms, type, data, prev_hash, hash FROM events WHERE mission = $1 ORDER BY seq",
        )
        .bind(mission)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(RawEvent {
                    mission: mission.to_string(),
                    seq: row.try_get::<i64, _>("seq")? as u64,
                    at_ms: row.try_get("at_ms")?,
                    event_type: row.try_get("type")?,
                    data: row.try_get("data")?,
                    prev_hash: row.try_get("prev_hash")?,
                    hash: row.try_get("hash")?,
                })
            })
            .collect()
    }

    async fn mission(&self, id: &str) -> Result<Option<MissionRow>, StoreError> {
        // One snapshot: the summary and its items of the same commit.
        let mut tx = self.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(&format!(
            "SELECT {MISSION_COLUMNS} FROM missions WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut mission = mission_from_row(&row)?;
        put_back_items(&mut *tx, &mut mission).await?;
        tx.commit().await?;
        Ok(Some(mission))
    }

    async fn missions(&self, limit: u32) -> Result<Vec<MissionRow>, StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await?;
        let rows = sqlx::query(&format!(
            "SELECT {MISSION_COLUMNS} FROM missions ORDER BY created_at_ms DESC, id DESC LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut all = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut mission = mission_from_row(row)?;
            put_back_items(&mut *tx, &mut mission).await?;
            all.push(mission);
        }
        tx.commit().await?;
        Ok(all)
    }

    async fn mission_index(&self, limit: u32) -> Result<Vec<MissionIndexRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, status, template, created_at_ms FROM missions
             ORDER BY created_at_ms DESC, id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(index_row).collect()
    }

    async fn mission_index_requested_by(
        &self,
        limit: u32,
        requested_by: &str,
    ) -> Result<Vec<MissionIndexRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, status, template, created_at_ms FROM missions
             WHERE requested_by = $2
             ORDER BY created_at_ms DESC, id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .bind(requested_by)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(index_row).collect()
    }

    async fn mission_ids_with_prefix(
        &self,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        // `left` rather than LIKE: ids are compared as plain text, no wildcards.
        Ok(sqlx::query_scalar(
            "SELECT id FROM missions WHERE left(id, length($1)) = $1 ORDER BY id LIMIT $2",
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
        let mut tx = self.begin().await?;
        // A new holding (another owner, or the same after it ran out) is a new epoch.
        sqlx::query(
            "UPDATE missions SET
               lease_epoch = CASE WHEN lease_owner IS NOT DISTINCT FROM $2 AND lease_expires_ms > $4
                                  THEN lease_epoch ELSE lease_epoch + 1 END,
               lease_owner = $2, lease_expires_ms = $3
             WHERE id = $1 AND (lease_owner IS NULL OR lease_owner = $2 OR lease_expires_ms <= $4
                                OR lease_owner = $5)",
        )
        .bind(mission)
        .bind(owner)
        .bind(now_ms + ttl_ms)
        .bind(now_ms)
        .bind(steal_from)
        .execute(&mut *tx)
        .await?;
        let holder = sqlx::query(
            "SELECT lease_owner, lease_expires_ms, lease_epoch FROM missions WHERE id = $1",
        )
        .bind(mission)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        let Some(row) = holder else {
            return Ok(None);
        };
        let owner: Option<String> = row.try_get("lease_owner")?;
        let expires: Option<i64> = row.try_get("lease_expires_ms")?;
        let epoch: i64 = row.try_get("lease_epoch")?;
        Ok(owner.map(|owner| Lease {
            owner,
            expires_ms: expires.unwrap_or(0),
            epoch: epoch as u64,
        }))
    }

    async fn release_lease(&self, mission: &str, owner: &str) -> Result<(), StoreError> {
        // A lease given back is news to whoever waits to take the mission's inbox in (a
        // vote posted while its driver was closing): they are woken, not left to poll.
        sqlx::query(
            "WITH released AS (
               UPDATE missions SET lease_owner = NULL, lease_expires_ms = NULL
               WHERE id = $1 AND lease_owner = $2 RETURNING id)
             SELECT pg_notify($3, id) FROM released",
        )
        .bind(mission)
        .bind(owner)
        .bind(CHANNEL)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn clock_ms(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn claim_runnable(&self, request: ClaimRequest) -> Result<Vec<Claimed>, StoreError> {
        let expires_ms = request.now_ms.saturating_add(request.ttl_ms);
        // Rows another transaction holds (an append, another claim) are skipped, not
        // waited for: concurrent claimers get different missions.
        let rows = sqlx::query(
            // Three small sets, each read through its own partial index (never a scan of
            // every mission), then the leases and the order on those alone.
            "WITH chosen AS (
               SELECT id FROM missions
               WHERE id IN (SELECT id FROM missions WHERE ready
                            UNION SELECT id FROM missions WHERE next_deadline_ms <= $1
                            UNION SELECT mission FROM inputs WHERE state = 'pending')
                 AND (lease_owner IS NULL OR lease_expires_ms <= $1 OR lease_owner = ANY($2))
                 AND NOT (id = ANY($3))
               ORDER BY updated_at_ms, id
               LIMIT $4
               FOR UPDATE SKIP LOCKED)
             UPDATE missions SET lease_epoch = missions.lease_epoch + 1, lease_owner = $5,
                                 lease_expires_ms = $6
             FROM chosen WHERE missions.id = chosen.id
             RETURNING missions.id, missions.lease_epoch, missions.updated_at_ms",
        )
        .bind(request.now_ms)
        .bind(&request.steal_from)
        .bind(&request.skip)
        .bind(i64::from(request.limit))
        .bind(&request.owner)
        .bind(expires_ms)
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            let epoch: i64 = row.try_get("lease_epoch")?;
            let updated: i64 = row.try_get("updated_at_ms")?;
            claimed.push((
                updated,
                Claimed {
                    mission: row.try_get("id")?,
                    lease: Lease {
                        owner: request.owner.clone(),
                        expires_ms,
                        epoch: epoch as u64,
                    },
                },
            ));
        }
        // RETURNING keeps no order: the longest waiting first, as chosen.
        claimed.sort_by(|a, b| (a.0, &a.1.mission).cmp(&(b.0, &b.1.mission)));
        Ok(claimed.into_iter().map(|(_, c)| c).collect())
    }

    async fn lease_holders(&self, now_ms: i64) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT lease_owner FROM missions
             WHERE lease_owner IS NOT NULL AND lease_expires_ms > $1",
        )
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn feed(&self, after: u64, limit: u32) -> Result<Vec<crate::FeedEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT position, mission, last_seq, status, at_ms FROM feed
             WHERE position > $1 ORDER BY position LIMIT $2",
        )
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(crate::FeedEntry {
                    position: row.try_get::<i64, _>("position")? as u64,
                    mission: row.try_get("mission")?,
                    last_seq: row.try_get::<i64, _>("last_seq")? as u64,
                    status: row.try_get("status")?,
                    at_ms: row.try_get("at_ms")?,
                })
            })
            .collect()
    }

    async fn feed_head(&self) -> Result<u64, StoreError> {
        let head: Option<i64> = sqlx::query_scalar("SELECT max(position) FROM feed")
            .fetch_one(&self.pool)
            .await?;
        Ok(head.map_or(0, |h| h as u64))
    }

    async fn feed_cursor(&self, reader: &str) -> Result<Option<u64>, StoreError> {
        let position: Option<i64> = sqlx::query_scalar(
            "SELECT position FROM feed_cursors WHERE reader = $1 AND saved_at_ms IS NOT NULL",
        )
        .bind(reader)
        .fetch_optional(&self.pool)
        .await?;
        Ok(position.map(|p| p as u64))
    }

    /// One statement, so concurrent saves of one reader serialize on its row: the highest
    /// position wins whatever order they commit in. `saved_at_ms` is the server's clock.
    async fn save_feed_cursor(&self, reader: &str, position: u64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO feed_cursors (reader, position, saved_at_ms)
             VALUES ($1, $2, (extract(epoch FROM clock_timestamp()) * 1000)::bigint)
             ON CONFLICT (reader) DO UPDATE SET
               saved_at_ms = CASE WHEN excluded.position >= feed_cursors.position
                                  THEN excluded.saved_at_ms ELSE feed_cursors.saved_at_ms END,
               position = GREATEST(feed_cursors.position, excluded.position)",
        )
        .bind(reader)
        .bind(i64::try_from(position).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One statement: concurrent holders serialize on the reader's row, and the update's
    /// condition is judged on the row as the one before left it.
    async fn hold_feed_reader(
        &self,
        reader: &str,
        owner: &str,
        now_ms: i64,
        ttl_ms: i64,
        steal_from: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO feed_cursors (reader, holder, held_until_ms) VALUES ($1, $2, $3)
             ON CONFLICT (reader) DO UPDATE SET holder = $2, held_until_ms = $3
             WHERE feed_cursors.holder IS NULL OR feed_cursors.holder = $2
                OR feed_cursors.held_until_ms <= $4 OR feed_cursors.holder = $5",
        )
        .bind(reader)
        .bind(owner)
        .bind(now_ms.saturating_add(ttl_ms))
        .bind(now_ms)
        .bind(steal_from)
        .execute(&mut *tx)
        .await?;
        let holder: Option<Option<String>> = sqlx::query_scalar(
            "SELECT holder FROM feed_cursors WHERE reader = $1 AND held_until_ms > $2",
        )
        .bind(reader)
        .bind(now_ms)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(holder.flatten())
    }

    async fn release_feed_reader(&self, reader: &str, owner: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE feed_cursors SET holder = NULL, held_until_ms = NULL
             WHERE reader = $1 AND holder = $2",
        )
        .bind(reader)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One statement: of concurrent records of one id (GitHub redelivering while the first
    /// is being stored, or two servers behind one load balancer), exactly one inserts.
    async fn record_delivery(
        &self,
        id: &str,
        event: &str,
        body: &[u8],
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let stored = sqlx::query(
            "INSERT INTO github_deliveries (id, event, body, received_ms, due_ms)
             VALUES ($1, $2, $3, $4, $4)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(event)
        .bind(body)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(stored.rows_affected() > 0)
    }

    async fn pending_deliveries(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<crate::GitHubDelivery>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, event, body, received_ms, attempts FROM github_deliveries
             WHERE handled_ms IS NULL AND due_ms <= $1
             ORDER BY received_ms, id LIMIT $2",
        )
        .bind(now_ms)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(crate::GitHubDelivery {
                    id: row.try_get("id")?,
                    event: row.try_get("event")?,
                    body: row.try_get("body")?,
                    received_ms: row.try_get("received_ms")?,
                    attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
                })
            })
            .collect()
    }

    /// Only a pending delivery is finished: of two handlers finishing one delivery, the
    /// first outcome stays.
    async fn finish_delivery(
        &self,
        id: &str,
        outcome: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE github_deliveries SET handled_ms = $3, outcome = $2, body = ''::bytea
             WHERE id = $1 AND handled_ms IS NULL",
        )
        .bind(id)
        .bind(outcome)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn retry_delivery(
        &self,
        id: &str,
        error: &str,
        retry_at_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE github_deliveries
             SET attempts = attempts + 1, last_error = $2, due_ms = $3
             WHERE id = $1 AND handled_ms IS NULL",
        )
        .bind(id)
        .bind(error)
        .bind(retry_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delivery_outcome(&self, id: &str) -> Result<Option<String>, StoreError> {
        let outcome: Option<Option<String>> = sqlx::query_scalar(
            "SELECT outcome FROM github_deliveries WHERE id = $1 AND handled_ms IS NOT NULL",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(outcome.flatten())
    }

    async fn next_deadline_ms(&self) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT min(at) FROM (
                   SELECT min(next_deadline_ms) AS at FROM missions WHERE next_deadline_ms IS NOT NULL
                   UNION ALL
                   SELECT min(lease_expires_ms) FROM missions
                   WHERE ready AND lease_owner IS NOT NULL) AS soonest",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    async fn reserve_quota(
        &self,
        reservation: crate::QuotaReservation,
    ) -> Result<crate::QuotaGrant, StoreError> {
        crate::quota::pg_reserve(&self.pool, &reservation).await
    }

    async fn settle_quota(&self, settlement: crate::QuotaSettlement) -> Result<bool, StoreError> {
        crate::quota::pg_settle(&self.pool, &settlement).await
    }

    async fn quota_usage(&self, period: &str) -> Result<Vec<crate::QuotaUsage>, StoreError> {
        crate::quota::pg_usage(&self.pool, period).await
    }

    async fn release_claim(
        &self,
        mission: &str,
        owner: &str,
        epoch: u64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "WITH released AS (
               UPDATE missions SET lease_owner = NULL, lease_expires_ms = NULL
               WHERE id = $1 AND lease_owner = $2 AND lease_epoch = $3 RETURNING id)
             SELECT pg_notify($4, id) FROM released",
        )
        .bind(mission)
        .bind(owner)
        .bind(epoch as i64)
        .bind(CHANNEL)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn post_input(&self, input: NewInput) -> Result<i64, StoreError> {
        let payload =
            serde_json::to_string(&input.payload).map_err(|e| StoreError::Encode(e.to_string()))?;
        let mut tx = self.begin().await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT last_seq FROM missions WHERE id = $1")
            .bind(&input.mission)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.unwrap_or(0) == 0 {
            return Err(StoreError::UnknownMission {
                mission: input.mission.clone(),
            });
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO inputs (mission, kind, payload, posted_at_ms, state)
             VALUES ($1, $2, $3, $4, 'pending') RETURNING id",
        )
        .bind(&input.mission)
        .bind(&input.kind)
        .bind(payload)
        .bind(input.posted_at_ms)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(&input.mission)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.changes.send_modify(|n| *n += 1);
        Ok(id)
    }

    async fn pending_inputs(&self, mission: &str) -> Result<Vec<InputRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {INPUT_COLUMNS} FROM inputs WHERE mission = $1 AND state = 'pending' ORDER BY id"
        ))
        .bind(mission)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(input_from_row).collect()
    }

    async fn input(&self, id: i64) -> Result<Option<InputRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {INPUT_COLUMNS} FROM inputs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(input_from_row).transpose()
    }

    async fn refuse_input(&self, id: i64, reason: &str, at_ms: i64) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("SELECT mission, state FROM inputs WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Err(StoreError::UnknownInput { id });
        };
        let state: String = row.try_get("state")?;
        let mission: String = row.try_get("mission")?;
        if state != "pending" {
            return Err(StoreError::InputNotPending { id });
        }
        sqlx::query(
            "UPDATE inputs SET state = 'refused', reason = $2, decided_at_ms = $3
             WHERE id = $1 AND state = 'pending'",
        )
        .bind(id)
        .bind(reason)
        .bind(at_ms)
        .execute(&mut *tx)
        .await?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(&mission)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.changes.send_modify(|n| *n += 1);
        Ok(())
    }

    async fn missions_with_pending_inputs(&self, limit: u32) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT mission FROM inputs WHERE state = 'pending'
             GROUP BY mission ORDER BY min(id) LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn subscribe(&self) -> Result<ChangeFeed, StoreError> {
        self.listen().await?;
        Ok(ChangeFeed::from_watch(self.changes.subscribe()))
    }

    async fn create_token(&self, token: TokenRow) -> Result<(), StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO tokens (id, hash, owner, role, created_at_ms, created_by, expires_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&token.id)
        .bind(&token.hash)
        .bind(&token.owner)
        .bind(&token.role)
        .bind(token.created_at_ms)
        .bind(&token.created_by)
        .bind(token.expires_at_ms)
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(e) => match refusal(&e) {
                Some(message) => Err(crate::writer::database_error(&format!(
                    "the token was refused: {message}"
                ))),
                None => Err(e.into()),
            },
        }
    }

    async fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at_ms DESC, id DESC"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = $1"
        ))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn revoke_token(&self, id: &str, at_ms: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tokens SET revoked_at_ms = $2 WHERE id = $1 AND revoked_at_ms IS NULL",
        )
        .bind(id)
        .bind(at_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn touch_token(&self, id: &str, at_ms: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE tokens SET last_used_ms = $2 WHERE id = $1")
            .bind(id)
            .bind(at_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

fn index_row(row: &PgRow) -> Result<MissionIndexRow, StoreError> {
    Ok(MissionIndexRow {
        id: row.try_get("id")?,
        status: row.try_get("status")?,
        template: row.try_get("template")?,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

/// Artifacts in the PostgreSQL database, committed before `put` returns.
#[derive(Clone)]
pub struct PgArtifactStore {
    pool: PgPool,
}

fn artifact_db(e: sqlx::Error) -> ArtifactError {
    ArtifactError::Database(e.to_string())
}

#[async_trait]
impl ArtifactStore for PgArtifactStore {
    async fn put(&self, bytes: &[u8]) -> Result<Digest, ArtifactError> {
        let digest = Digest::of(bytes);
        sqlx::query(
            "INSERT INTO artifacts (digest, bytes) VALUES ($1, $2) ON CONFLICT (digest) DO NOTHING",
        )
        .bind(digest.as_str())
        .bind(bytes)
        .execute(&self.pool)
        .await
        .map_err(artifact_db)?;
        Ok(digest)
    }

    async fn get(&self, digest: &Digest) -> Result<Vec<u8>, ArtifactError> {
        let bytes: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT bytes FROM artifacts WHERE digest = $1")
                .bind(digest.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(artifact_db)?;
        let bytes = bytes.ok_or_else(|| ArtifactError::NotFound(digest.clone()))?;
        crate::artifacts::checked(digest, bytes)
    }

    async fn contains(&self, digest: &Digest) -> Result<bool, ArtifactError> {
        let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM artifacts WHERE digest = $1")
            .bind(digest.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(artifact_db)?;
        Ok(found.is_some())
    }

    fn local_path(&self, _digest: &Digest) -> Option<std::path::PathBuf> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_in_messages() {
        assert_eq!(
            masked_url("postgres://fd:s3cret@db.acme:5432/flightdeck"),
            "postgres://fd:***@db.acme:5432/flightdeck"
        );
        assert_eq!(
            masked_url("postgres://fd@db.acme/flightdeck"),
            "postgres://fd@db.acme/flightdeck"
        );
        for (url, secret) in [
            ("postgres://fd:p@ssw0rd@db/x", "ssw0rd"),
            ("postgres://fd@corp:pw9@db/x", "pw9"),
            (
                "postgres://fd@db/x?sslmode=require&password=hunter2",
                "hunter2",
            ),
        ] {
            let shown = masked_url(url);
            assert!(!shown.contains(secret), "{url} -> {shown}");
        }
    }
}
