//! flightdeck's storage: append-only, hash-chained mission timelines ([`EventStore`]), a
//! content-addressed [`ArtifactStore`], and mission leases so that one worker at a time
//! drives a mission.
//!
//! The traits speak plain Rust data (strings, integers, JSON values): no backend type leaks
//! out, so the PostgreSQL backend slots in beside [`SqliteStore`] without touching callers.
//! Invariant: this is the only crate that contains SQL. It knows missions only by id and seq;
//! what events mean is the caller's business (the caller supplies the summary projection).
//!
//! Each mission also has an inbox: what other processes ask of it (an approval vote, a
//! budget raise, a cancel) is posted as an input ([`EventStore::post_input`]) and taken in
//! by the mission's driver, which appends the events it leads to and marks it applied in the
//! same transaction ([`AppendRequest::consumes`]), or refuses it. A [`ChangeFeed`]
//! ([`EventStore::subscribe`]) wakes whoever waits on a timeline or an input, in this
//! process or another, without polling.

pub mod anchors;
mod artifacts;
mod feed;
mod postgres;
mod quota;
mod read;
mod sqlite;
mod sqlite_artifacts;
mod verify;
mod writer;

use async_trait::async_trait;
use serde_json::Value;

pub use anchors::{AnchorError, AnchorLog, AnchorPoint, AnchorReason};
pub use artifacts::{ArtifactError, ArtifactStore, FsArtifactStore};
pub use feed::ChangeFeed;
pub use flightdeck_core::StoredEvent;
pub use postgres::{masked_url, PgArtifactStore, PgStore};
pub use quota::{QuotaGrant, QuotaHold, QuotaReservation, QuotaSettlement, QuotaUsage};
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
    /// Items of lists that grow with the mission, changed by this append (the others are
    /// kept). When the mission is read, each list replaces the summary's field of its name.
    pub items: Vec<ProjectionItem>,
    /// What schedulers and listings filter on, as typed columns of the mission's row.
    pub columns: ProjectionColumns,
}

/// The typed columns of a mission's row, beside its summary: what claiming work and
/// listings filter on without parsing a summary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProjectionColumns {
    /// Who asked for the mission (a person's handle).
    pub requested_by: Option<String>,
    /// The requester's team (the first of their `[teams]` by name) when the append was
    /// made.
    pub team: Option<String>,
    /// A worker can drive the mission on without anyone's input (it is queued, its driver
    /// died or handed it back, its approvals are granted, its budget was raised).
    pub ready: bool,
    /// What it waits for when it is not ready (`approval`, `budget_raise`, `resume`).
    pub waiting_for: Option<String>,
    /// When something fires by itself (an approval's expiry), in ms since the epoch.
    pub next_deadline_ms: Option<i64>,
    /// What it has cost so far, in USD.
    pub cost_usd: f64,
}

/// One append as the global change feed has it ([`EventStore::feed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEntry {
    /// Its place among every append to every mission, in commit order.
    pub position: u64,
    pub mission: String,
    /// The mission's last seq after the append.
    pub last_seq: u64,
    /// The mission's status after the append.
    pub status: String,
    /// When its last event happened (the event's `at`).
    pub at_ms: i64,
}

/// What a worker asks for when it looks for work ([`EventStore::claim_runnable`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    /// Who claims: the lease owner the claimed missions get.
    pub owner: String,
    /// The database's clock ([`EventStore::clock_ms`]).
    pub now_ms: i64,
    pub ttl_ms: i64,
    /// At most this many missions.
    pub limit: u32,
    /// Lease holders known to be gone (processes of this host that died): their leases are
    /// taken as if they had run out.
    pub steal_from: Vec<String>,
    /// Missions not to claim (ones this worker failed to drive a moment ago).
    pub skip: Vec<String>,
}

/// A mission a claim handed out, leased to the claimer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub mission: String,
    pub lease: Lease,
}

/// One item of a list of a mission's projection (one step of its summary's `steps`).
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectionItem {
    /// The summary field the list is put back into (`steps`).
    pub list: String,
    /// Where the item goes in the list (items are read in this order).
    pub position: u64,
    pub value: Value,
}

/// Appends `events` to `mission`, whose last seq must be `expected_seq` (0 for a new
/// mission): optimistic concurrency, so two writers can never both advance a mission.
#[derive(Debug, Clone, PartialEq)]
pub struct AppendRequest {
    pub mission: String,
    pub expected_seq: u64,
    pub events: Vec<NewEvent>,
    pub projection: Projection,
    /// Ids of the pending inputs of `mission` this append applies: they are marked applied
    /// (at the seq of the append's last event) in the same transaction as the events. If any
    /// of them is not a pending input of `mission`, the append fails and nothing is written.
    pub consumes: Vec<i64>,
    /// The lease epoch the writer holds ([`Lease::epoch`]): the append fails
    /// ([`StoreError::Fenced`]) and writes nothing if the mission's lease has another epoch
    /// now (another holder took it). `None`: no lease is claimed (a mission's creation).
    pub fence: Option<u64>,
}

/// Something asked of a mission by someone other than its driver (an approval vote, a
/// budget raise, a cancel), posted to the mission's inbox. The store does not interpret
/// `kind` or `payload`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewInput {
    pub mission: String,
    pub kind: String,
    pub payload: Value,
    /// When it was posted, in milliseconds since the epoch: the poster's clock.
    pub posted_at_ms: i64,
}

/// A posted input and what became of it.
#[derive(Debug, Clone, PartialEq)]
pub struct InputRow {
    /// Assigned by the store, increasing in posting order.
    pub id: i64,
    pub mission: String,
    pub kind: String,
    pub payload: Value,
    pub posted_at_ms: i64,
    pub state: InputState,
}

/// An API token as stored: its SHA-256, never the token.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenRow {
    /// `tok_…`: how people name it (`token revoke`); not a secret.
    pub id: String,
    /// Hex SHA-256 of the token.
    #[serde(skip)]
    pub hash: String,
    /// The person it acts as (a handle).
    pub owner: String,
    /// `viewer`, `operator`, `approver` or `admin`.
    pub role: String,
    pub created_at_ms: i64,
    pub created_by: String,
    pub expires_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
    pub last_used_ms: Option<i64>,
}

/// A GitHub webhook delivery as stored: kept until handled, deduplicated by GitHub's
/// `X-GitHub-Delivery` id (a redelivery keeps the id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitHubDelivery {
    pub id: String,
    /// `X-GitHub-Event`.
    pub event: String,
    /// The raw body, exactly as received (its signature was checked over these bytes).
    pub body: Vec<u8>,
    pub received_ms: i64,
    /// How many times handling was tried and asked to be tried again.
    pub attempts: u32,
}

/// Where an input is: waiting for the mission's driver, or decided (once, for good).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputState {
    Pending,
    /// Taken in by an append; `seq` is the last event of that append.
    Applied {
        seq: u64,
    },
    Refused {
        reason: String,
    },
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

/// A mission as listings filter it: no summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissionIndexRow {
    pub id: String,
    pub status: String,
    pub template: String,
    pub created_at_ms: i64,
}

/// Stamps the head on a mission's summary as read: the projection is computed before the
/// hashes exist, so the store says how many events there are and the last one's hash.
pub(crate) fn stamp_head(summary: &mut Value, last_seq: u64, head_hash: &str) {
    if let Some(object) = summary.as_object_mut() {
        object.insert("events".into(), last_seq.into());
        object.insert("head_hash".into(), head_hash.into());
    }
}

/// Puts a mission's projection items (list name and value, ordered by list then position)
/// back into its summary: each list replaces the summary's field of its name.
pub(crate) fn put_items(summary: &mut Value, items: Vec<(String, Value)>) {
    let mut lists: Vec<(String, Vec<Value>)> = Vec::new();
    for (list, value) in items {
        match lists.last_mut() {
            Some((name, values)) if *name == list => values.push(value),
            _ => lists.push((list, vec![value])),
        }
    }
    if let Some(summary) = summary.as_object_mut() {
        for (list, values) in lists {
            summary.insert(list, Value::Array(values));
        }
    }
}

/// Who drives a mission, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub expires_ms: i64,
    /// The fencing token of this holding: it grows each time the lease passes to another
    /// holder or is taken again after it ran out. The holder's appends carry it
    /// ([`AppendRequest::fence`]).
    pub epoch: u64,
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
    /// A database server that cannot be reached or refuses the connection (the URL's
    /// password masked).
    #[error("cannot connect to {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error(
        "unsupported parameter `{parameter}` in database url `{url}` (the only one is `mode=ro`)"
    )]
    UnsupportedUrlParameter { url: String, parameter: String },
    /// A read-only open never creates a database.
    #[error("no database at `{path}` (a read-only open does not create one)")]
    Missing { path: String },
    /// A read-only open of a file that has no flightdeck schema yet (it cannot be made
    /// without writing).
    #[error("`{path}` has no flightdeck schema yet; open it read-write once to create it")]
    Unmigrated { path: String },
    #[error("the store is open read-only")]
    ReadOnly,
    #[error("this store keeps no API tokens")]
    NoTokens,
    #[error("no mission {mission}")]
    UnknownMission { mission: String },
    #[error("no input {id}")]
    UnknownInput { id: i64 },
    /// The input was already applied or refused, or (in an append's `consumes`) it belongs
    /// to another mission.
    #[error("input {id} is not a pending input of this mission")]
    InputNotPending { id: i64 },
    #[error("stored input {id} is unreadable: {reason}")]
    CorruptInput { id: i64, reason: String },
    /// Everything that could wake a change feed is gone.
    #[error("the store was closed")]
    Closed,
    #[error("stored event {mission}#{seq} is unreadable: {reason}")]
    Corrupt {
        mission: String,
        seq: u64,
        reason: String,
    },
    /// The writer's lease was taken over: its append changed nothing.
    #[error("mission {mission}'s lease is at epoch {current}; this writer holds epoch {held}, so it may not write")]
    Fenced {
        mission: String,
        held: u64,
        current: u64,
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

    /// Events of `mission` with `after_seq` < seq <= `up_to`, in order: one page of a long
    /// timeline, read without the rest.
    async fn events_between(
        &self,
        mission: &str,
        after_seq: u64,
        up_to: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut events = self.events(mission, after_seq).await?;
        events.retain(|e| e.seq <= up_to);
        Ok(events)
    }

    /// Events as stored, for verification.
    async fn raw_events(&self, mission: &str) -> Result<Vec<RawEvent>, StoreError>;

    async fn mission(&self, id: &str) -> Result<Option<MissionRow>, StoreError>;

    /// Missions, newest first.
    async fn missions(&self, limit: u32) -> Result<Vec<MissionRow>, StoreError>;

    /// The newest `limit` missions' ids, statuses and templates, newest first: what a
    /// listing filters before it reads the summaries of one page.
    async fn mission_index(&self, limit: u32) -> Result<Vec<MissionIndexRow>, StoreError> {
        Ok(self
            .missions(limit)
            .await?
            .into_iter()
            .map(|m| MissionIndexRow {
                id: m.id,
                status: m.status,
                template: m.template,
                created_at_ms: m.created_at_ms,
            })
            .collect())
    }

    /// [`EventStore::mission_index`] of the missions `requested_by` requested (as their
    /// projection says), the newest `limit` of them.
    async fn mission_index_requested_by(
        &self,
        limit: u32,
        requested_by: &str,
    ) -> Result<Vec<MissionIndexRow>, StoreError> {
        Ok(self
            .missions(u32::MAX)
            .await?
            .into_iter()
            .filter(|m| {
                m.summary
                    .get("requested_by")
                    .and_then(serde_json::Value::as_str)
                    == Some(requested_by)
            })
            .take(limit as usize)
            .map(|m| MissionIndexRow {
                id: m.id,
                status: m.status,
                template: m.template,
                created_at_ms: m.created_at_ms,
            })
            .collect())
    }

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

    /// Gives the lease back if `owner` still holds it at `epoch` (the holding a claim
    /// made): never a later holding of the same owner, such as another driver of the same
    /// process that took the mission since.
    async fn release_claim(&self, mission: &str, owner: &str, epoch: u64)
        -> Result<(), StoreError>;

    /// The clock leases run on, in ms since the epoch: the database server's on
    /// PostgreSQL, so that workers on machines whose clocks disagree agree on who holds a
    /// lease; this machine's for an embedded store.
    async fn clock_ms(&self) -> Result<i64, StoreError> {
        Ok(system_clock_ms())
    }

    /// Hands out, in one transaction, up to `limit` missions a worker can make progress on
    /// (ready by their projection, with a pending input, or with a deadline due at
    /// `now_ms`) whose lease is free, ran out, or is held by one of `steal_from`, each
    /// leased to `owner` until `now_ms + ttl_ms` at a new epoch: the ones that waited
    /// longest first. Missions another transaction holds locked are skipped, never waited
    /// for, so concurrent claimers get different missions.
    async fn claim_runnable(&self, request: ClaimRequest) -> Result<Vec<Claimed>, StoreError>;

    /// The owners of leases that have not run out at `now_ms`: what a worker checks for
    /// holders that died on its host.
    async fn lease_holders(&self, now_ms: i64) -> Result<Vec<String>, StoreError>;

    /// The earliest moment, in ms, something becomes claimable by time alone: an
    /// approval's expiry, or the lease on a mission that could go on running out (its
    /// holder died elsewhere, say). When a worker that found nothing to do looks again at
    /// the latest.
    async fn next_deadline_ms(&self) -> Result<Option<i64>, StoreError>;

    /// Posts `input` to its mission's inbox; durable on return. Returns the input's id.
    /// [`StoreError::UnknownMission`] if the mission does not exist.
    async fn post_input(&self, input: NewInput) -> Result<i64, StoreError>;

    /// The pending inputs of `mission`, oldest first.
    async fn pending_inputs(&self, mission: &str) -> Result<Vec<InputRow>, StoreError>;

    /// Input `id`, whatever its state.
    async fn input(&self, id: i64) -> Result<Option<InputRow>, StoreError>;

    /// Refuses pending input `id` for `reason` (durable on return).
    /// [`StoreError::UnknownInput`] or [`StoreError::InputNotPending`] otherwise.
    async fn refuse_input(&self, id: i64, reason: &str, at_ms: i64) -> Result<(), StoreError>;

    /// Missions with at least one pending input, the one waiting longest first (at most
    /// `limit`): what a scheduler drives.
    async fn missions_with_pending_inputs(&self, limit: u32) -> Result<Vec<String>, StoreError>;

    /// Appends to any mission after global position `after` (0: from the start), oldest
    /// first, at most `limit`: what tails every mission from a cursor without polling each.
    /// A position once read is never preceded by one that appears later.
    async fn feed(&self, after: u64, limit: u32) -> Result<Vec<FeedEntry>, StoreError>;

    /// The feed's last position now (0 when empty): where a tail that starts now starts.
    async fn feed_head(&self) -> Result<u64, StoreError>;

    /// Where the named reader of the feed (`slack-notifier`) got to: the last position it
    /// was done with, as it saved it; `None` when it never saved one.
    async fn feed_cursor(&self, reader: &str) -> Result<Option<u64>, StoreError>;

    /// Saves `position` as where `reader` got to; durable on return. A cursor never moves
    /// back: a position lower than the saved one is ignored (two readers of one name, or a
    /// late save, cannot rewind it).
    async fn save_feed_cursor(&self, reader: &str, position: u64) -> Result<(), StoreError>;

    /// Takes or renews the lease on the named feed reader for `owner` until
    /// `now_ms + ttl_ms`, if it is free, ran out, is already `owner`'s, or is held by
    /// `steal_from` (a holder known to be dead). Returns who holds it after the attempt
    /// (`owner` on success; `None` if no one's lease runs). A process reads the feed under
    /// that name only while it holds the lease, so that processes sharing one store do not
    /// each read it. `now_ms` is [`EventStore::clock_ms`], as for mission leases. The cursor
    /// is left as it is.
    async fn hold_feed_reader(
        &self,
        reader: &str,
        owner: &str,
        now_ms: i64,
        ttl_ms: i64,
        steal_from: Option<&str>,
    ) -> Result<Option<String>, StoreError>;

    /// Gives the lease on the named feed reader back if `owner` holds it.
    async fn release_feed_reader(&self, reader: &str, owner: &str) -> Result<(), StoreError>;

    /// Stores a delivery unless one with its id is known (handled or not); `true` when it
    /// is new. Durable when it returns: the webhook is answered only then, so that GitHub
    /// redelivers what a crash before it lost. The new delivery is due at once (`now_ms`).
    async fn record_delivery(
        &self,
        id: &str,
        event: &str,
        body: &[u8],
        now_ms: i64,
    ) -> Result<bool, StoreError>;

    /// Deliveries not handled yet whose next try is due (at or before `now_ms`), oldest
    /// received first, at most `limit`: what a handler works through after a restart or a
    /// failure, as well as just after receipt. Nothing is leased: two processes asking at
    /// once get the same ones.
    async fn pending_deliveries(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<GitHubDelivery>, StoreError>;

    /// Marks a delivery handled with a one-line outcome (what was done or why nothing was);
    /// its body is dropped (set empty) to save space, its id kept for deduplication. Once:
    /// a delivery already handled keeps its first outcome, and an unknown id changes
    /// nothing. Durable on return.
    async fn finish_delivery(&self, id: &str, outcome: &str, now_ms: i64)
        -> Result<(), StoreError>;

    /// Handling failed for a reason that may pass: counts the attempt, keeps the error, and
    /// makes it due again at `retry_at_ms`. A delivery already handled (or unknown) is left
    /// as it is. Durable on return.
    async fn retry_delivery(
        &self,
        id: &str,
        error: &str,
        retry_at_ms: i64,
    ) -> Result<(), StoreError>;

    /// The outcome of a handled delivery (None while pending or unknown), for tests and
    /// diagnostics.
    async fn delivery_outcome(&self, id: &str) -> Result<Option<String>, StoreError>;

    /// [`EventStore::feed`] after `after`, waiting until it has something: woken by the
    /// store's change feed (in this process or another), with a slow poll as the fallback
    /// should a wake-up be lost. Returns empty after `patience` with nothing new.
    async fn wait_for_change(
        &self,
        after: u64,
        limit: u32,
        patience: std::time::Duration,
    ) -> Result<Vec<FeedEntry>, StoreError> {
        /// The fallback poll: the change feed wakes on every change; this only bounds what
        /// a lost wake-up could cost.
        const SLOW_POLL: std::time::Duration = std::time::Duration::from_secs(5);
        let until = tokio::time::Instant::now() + patience;
        // Subscribed before reading: a change after the read wakes this.
        let mut changes = self.subscribe().await.ok();
        loop {
            let entries = self.feed(after, limit).await?;
            let now = tokio::time::Instant::now();
            if !entries.is_empty() || now >= until {
                return Ok(entries);
            }
            let wait = (until - now).min(SLOW_POLL);
            match changes.as_mut() {
                Some(feed) => {
                    let _ = tokio::time::timeout(wait, feed.changed()).await;
                }
                None => tokio::time::sleep(wait).await,
            }
        }
    }

    /// A feed that wakes when something may have changed (an append, an input posted or
    /// decided) through this store or any other process using the same database. Nothing
    /// that happens after `subscribe` returns is missed.
    async fn subscribe(&self) -> Result<ChangeFeed, StoreError>;

    /// A feed that wakes when an input may have been posted to a mission, in this process
    /// or another (what a driver waits on: unlike [`EventStore::subscribe`], not woken by
    /// its own appends). By default the store's whole change feed.
    async fn subscribe_inputs(&self) -> Result<ChangeFeed, StoreError> {
        self.subscribe().await
    }

    /// Reserves every hold of `reservation` against its team's sums for its period, all or
    /// none, atomically across every process using the database: each hold must fit
    /// (`reserved + spent + amount <= limit`), else nothing is reserved and the answer names
    /// the first hold (in team, dimension order) that does not. A reservation whose id
    /// exists already is granted again without reserving anything (a retry after a crash).
    /// Durable on return.
    async fn reserve_quota(&self, reservation: QuotaReservation) -> Result<QuotaGrant, StoreError>;

    /// Replaces the holds of a reservation by what its call cost (`spent`, per dimension):
    /// their amounts leave `reserved`, the cost joins `spent`, in the period they were
    /// reserved in. Once: holds already settled are left as they are. Whether anything was
    /// settled. A reservation never settled (its call cut off by a crash) keeps holding its
    /// whole amount.
    async fn settle_quota(&self, settlement: QuotaSettlement) -> Result<bool, StoreError>;

    /// Every team's sums in `period` (`2026-03`), by team and dimension.
    async fn quota_usage(&self, period: &str) -> Result<Vec<QuotaUsage>, StoreError>;

    /// Stores a new API token (its hash). Stores that keep no tokens refuse.
    async fn create_token(&self, token: TokenRow) -> Result<(), StoreError> {
        let _ = token;
        Err(StoreError::NoTokens)
    }

    /// Every token, newest first.
    async fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        Ok(Vec::new())
    }

    /// The token whose SHA-256 is `hash`, revoked or expired ones included.
    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>, StoreError> {
        let _ = hash;
        Ok(None)
    }

    /// Revokes a token; false when there is no such token or it was already revoked.
    async fn revoke_token(&self, id: &str, at_ms: i64) -> Result<bool, StoreError> {
        let _ = (id, at_ms);
        Err(StoreError::NoTokens)
    }

    /// Records that a token was used at `at_ms`.
    async fn touch_token(&self, id: &str, at_ms: i64) -> Result<(), StoreError> {
        let _ = (id, at_ms);
        Ok(())
    }
}

/// This machine's clock, in ms since the epoch.
pub fn system_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A database URL, parsed: `sqlite://PATH` or `sqlite:PATH`, optionally `?mode=ro`
/// (read-only: see [`SqliteStore::open_read_only`]) or `?mode=rwc` (the default: read,
/// write, create). The path is taken as written (no percent-decoding); any other query
/// parameter is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    pub path: std::path::PathBuf,
    pub read_only: bool,
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<DatabaseUrl, StoreError> {
        let Some(rest) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        else {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        };
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };
        if path.is_empty() {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        }
        let mut read_only = false;
        for parameter in query.into_iter().flat_map(|q| q.split('&')) {
            match parameter {
                "" => {}
                "mode=ro" => read_only = true,
                "mode=rwc" => read_only = false,
                other => {
                    return Err(StoreError::UnsupportedUrlParameter {
                        url: url.to_string(),
                        parameter: other.to_string(),
                    })
                }
            }
        }
        Ok(DatabaseUrl {
            path: std::path::PathBuf::from(path),
            read_only,
        })
    }
}

async fn open_sqlite(url: &DatabaseUrl) -> Result<SqliteStore, StoreError> {
    if url.read_only {
        SqliteStore::open_read_only(&url.path).await
    } else {
        SqliteStore::open(&url.path).await
    }
}

/// Opens the store a database URL names and the artifact store that goes with it: for
/// SQLite, small artifacts in the same database, made durable with the next append (see
/// [`SqliteStore::artifacts`]), larger ones as files under `artifacts_dir`. With
/// `?mode=ro`, both are read-only.
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
    if is_postgres(url) {
        let store = PgStore::open(url).await?;
        let artifacts = store.artifacts();
        return Ok((std::sync::Arc::new(store), std::sync::Arc::new(artifacts)));
    }
    let store = open_sqlite(&DatabaseUrl::parse(url)?).await?;
    let artifacts = store.artifacts(artifacts_dir);
    Ok((std::sync::Arc::new(store), std::sync::Arc::new(artifacts)))
}

/// Whether `url` names a PostgreSQL database (`postgres://` or `postgresql://`).
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Opens the store a database URL names: SQLite (see [`DatabaseUrl`]) or PostgreSQL
/// (`postgres://…`, see [`PgStore`]).
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn EventStore>, StoreError> {
    if is_postgres(url) {
        return Ok(std::sync::Arc::new(PgStore::open(url).await?));
    }
    Ok(std::sync::Arc::new(
        open_sqlite(&DatabaseUrl::parse(url)?).await?,
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    #[test]
    fn database_urls_parse_or_are_refused() {
        let ok = |path: &str, read_only: bool| {
            Ok::<_, String>(DatabaseUrl {
                path: path.into(),
                read_only,
            })
        };
        let table: [(&str, Result<DatabaseUrl, String>); 14] = [
            ("sqlite:///data/fd.db", ok("/data/fd.db", false)),
            ("sqlite://rel/fd.db", ok("rel/fd.db", false)),
            ("sqlite:fd.db", ok("fd.db", false)),
            ("sqlite:/data/fd.db", ok("/data/fd.db", false)),
            ("sqlite:///data/fd.db?mode=ro", ok("/data/fd.db", true)),
            ("sqlite:fd.db?mode=ro", ok("fd.db", true)),
            ("sqlite:fd.db?mode=rwc", ok("fd.db", false)),
            ("sqlite:fd.db?", ok("fd.db", false)),
            ("sqlite:fd.db?mode=ro&", ok("fd.db", true)),
            (
                "sqlite:fd.db?mode=rw",
                Err("unsupported parameter `mode=rw`".into()),
            ),
            (
                "sqlite:fd.db?mode=ro&cache=shared",
                Err("unsupported parameter `cache=shared`".into()),
            ),
            (
                "sqlite://",
                Err("unsupported database url `sqlite://`".into()),
            ),
            ("sqlite:?mode=ro", Err("unsupported database url".into())),
            (
                "postgres://host/db",
                Err("unsupported database url `postgres://host/db`".into()),
            ),
        ];
        for (url, expected) in table {
            let parsed = DatabaseUrl::parse(url).map_err(|e| e.to_string());
            match (&parsed, &expected) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{url}"),
                (Err(got), Err(want)) => assert!(got.contains(want.as_str()), "{url}: {got}"),
                _ => panic!("{url}: got {parsed:?}, expected {expected:?}"),
            }
        }
    }
}
