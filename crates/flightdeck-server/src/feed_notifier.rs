//! The machine a channel that tells people about missions (Slack, GitHub) runs on: it tails
//! the store's global feed from a durable cursor, while this process holds the store's lease
//! on the channel's named feed reader, and has the channel bring each mission that changed
//! in a way it shows up to date ([`FeedChannel::sync_mission`]).
//!
//! Nothing is sent twice, across restarts too:
//! - While a mission can take events, each send is recorded as `notification.sent` through
//!   its inbox (the one writer records it, [`record`]), with the digest of what it showed
//!   when it draws something that may be drawn again; what is recorded is never sent again.
//! - A finished mission takes no more events, so what its end sends (a status, the last
//!   redraw) is kept in memory ([`Memory`]), and the feed cursor, saved in the store after
//!   each mission is done with, keeps a restarted notifier from going over it again. Only a
//!   crash between a send and the cursor's save can repeat that one mission's last send.
//! - Of several `serve`s sharing a store, only the one holding the store's lease on the
//!   channel's reader ([`FeedChannel::reader`]) notifies; the others stand by.
//!
//! A mission the channel failed for is tried again with backoff, and the saved cursor stays
//! before it meanwhile, so a restart goes over it again; unless the channel's answer is
//! final ([`SyncError::Final`]).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use flightdeck_app::AppError;
use flightdeck_core::event::NotificationSent;
use flightdeck_core::MissionState;
use flightdeck_engine::{Applied, Clock, Foreign, SystemClock, WorkerId};

use crate::routes::Shared;

/// How many feed entries one wait reads at most.
const FEED_PAGE: u32 = 1_000;
/// How many of the newest missions a starting notifier looks through for those that wait
/// for approval.
const WAITING_SCAN: u32 = 10_000;
/// How long one wait for the feed lasts when no revisit is due sooner (the lease is
/// renewed between waits).
const PATIENCE: Duration = Duration::from_secs(10);
/// How long the notifier's lease lasts unless renewed, and how often it is.
const LEASE_TTL: Duration = Duration::from_secs(45);
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// How many times a mission the channel failed for is tried (over about half an hour).
const MAX_ATTEMPTS: u32 = 12;
/// How often a standing-by notifier asks for the lease.
const STANDBY_POLL: Duration = Duration::from_secs(10);
/// How many finished missions a notifier remembers being done with.
const DONE_KEPT: usize = 10_000;

/// A channel the notifier keeps up to date from the store's feed.
#[async_trait::async_trait]
pub(crate) trait FeedChannel: Send + Sync + 'static {
    /// The store's feed reader the lease and the cursor are kept under
    /// (`"slack-notifier"`).
    fn reader(&self) -> &'static str;
    /// The channel's name in what is reported (`"Slack"`).
    fn name(&self) -> &'static str;
    /// What the channel's notifier keeps in memory between syncs.
    fn memory(&self) -> &Memory;
    /// Reports a problem (the binary prints it; the server's library may not).
    fn report(&self, message: &str);
    /// Whether an append that leaves a mission in `status` (as the feed names it) can change
    /// what the channel shows.
    fn shows(&self, status: &str) -> bool;
    /// Brings one mission up to date: sends what it lacks, each send checked first with
    /// [`Memory::still_notifying`] and recorded with [`record`]; marks a finished mission
    /// done with ([`Memory::done_with`]) once nothing more will be sent for it. Returns when
    /// to look at the mission again (a reminder comes due), if ever.
    async fn sync_mission(&self, state: &Shared, id: &str) -> Result<Option<i64>, SyncError>;
}

/// Why a mission could not be brought up to date.
#[derive(Debug)]
pub(crate) enum SyncError {
    /// The channel's answer will not change (Slack: the message was deleted, the channel
    /// archived, the bot removed from it): trying again would only fail again.
    Final(String),
    /// Worth another try: the channel or the store may answer otherwise later.
    Again(String),
}

impl From<AppError> for SyncError {
    fn from(e: AppError) -> SyncError {
        SyncError::Again(e.message)
    }
}

impl From<flightdeck_engine::EngineError> for SyncError {
    fn from(e: flightdeck_engine::EngineError) -> SyncError {
        SyncError::Again(AppError::from(e).message)
    }
}

impl From<flightdeck_store::StoreError> for SyncError {
    fn from(e: flightdeck_store::StoreError) -> SyncError {
        SyncError::Again(AppError::from(e).message)
    }
}

/// What a channel's notifier keeps in memory between syncs: what it sent that no timeline
/// could record, and which finished missions it is done with.
#[derive(Debug, Default)]
pub(crate) struct Memory {
    /// Whether this process notifies now (holds the store's lease on the channel's reader);
    /// every send checks it first ([`Memory::still_notifying`]).
    notifying: AtomicBool,
    /// How many sends [`record`] could not record (their mission had finished): when it
    /// moves, the notifier saves its cursor at once.
    untracked_sends: AtomicU64,
    /// What this process sent that the mission's timeline could not record (it had
    /// finished): `mission/kind/approval/about` keys. The durable cursor keeps a restart
    /// from sending them again.
    sent_untracked: Mutex<HashSet<String>>,
    /// Each message's digest as last drawn by this process (approval id, or a key starting
    /// `mission/`, → digest), for messages whose mission can no longer record one.
    drawn: Mutex<HashMap<String, String>>,
    /// Each message this process posted (approval id, or a key starting `mission/`, →
    /// target and reference): it is found even when its mission finished before the record
    /// was taken in.
    posted: Mutex<HashMap<String, (String, String)>>,
    /// Finished missions this process is done with, and the order they came in.
    done: Mutex<(HashSet<String>, VecDeque<String>)>,
}

impl Memory {
    pub(crate) fn new() -> Memory {
        Memory::default()
    }

    /// Whether this process notifies now (holds the lease).
    pub(crate) fn notifying(&self) -> bool {
        self.notifying.load(Ordering::SeqCst)
    }

    /// Before each send: this process still notifies.
    pub(crate) fn still_notifying(&self) -> Result<(), SyncError> {
        if self.notifying() {
            Ok(())
        } else {
            Err(SyncError::Again(
                "the notifier's lease was lost".to_string(),
            ))
        }
    }

    /// What this process sent that the mission's timeline could not record
    /// (`mission/kind/approval/about` keys).
    pub(crate) fn sent_untracked(&self) -> MutexGuard<'_, HashSet<String>> {
        self.sent_untracked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Each message's digest as last drawn by this process (approval id, or a key starting
    /// `mission/`, → digest).
    pub(crate) fn drawn(&self) -> MutexGuard<'_, HashMap<String, String>> {
        self.drawn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Each message this process posted (approval id, or a key starting `mission/`, →
    /// target and reference).
    pub(crate) fn posted(&self) -> MutexGuard<'_, HashMap<String, (String, String)>> {
        self.posted.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks a finished mission as done with (not looked at again by this process) and
    /// drops what memory kept of it (under its approvals' ids and under keys starting
    /// `mission/`). The marks are the last [`DONE_KEPT`] missions: a finished mission comes
    /// back through the feed only right after it finished.
    pub(crate) fn done_with(&self, mission: &MissionState) {
        {
            let mut done = self.done.lock().unwrap_or_else(PoisonError::into_inner);
            if done.0.insert(mission.id.clone()) {
                done.1.push_back(mission.id.clone());
                while done.1.len() > DONE_KEPT {
                    if let Some(oldest) = done.1.pop_front() {
                        done.0.remove(&oldest);
                    }
                }
            }
        }
        let prefix = format!("{}/", mission.id);
        let mut posted = self.posted();
        let mut drawn = self.drawn();
        for approval in &mission.approval_order {
            posted.remove(approval);
            drawn.remove(approval);
        }
        posted.retain(|key, _| !key.starts_with(&prefix));
        drawn.retain(|key, _| !key.starts_with(&prefix));
        drop((posted, drawn));
        self.sent_untracked()
            .retain(|key| !key.starts_with(&prefix));
    }

    /// Whether this process is done with the (finished) mission.
    pub(crate) fn is_done(&self, mission: &str) -> bool {
        self.done
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .contains(mission)
    }
}

/// Runs the channel's notifier until the server stops, while this process holds the
/// store's lease on the channel's reader: of several `serve`s sharing a store, one notifies
/// and the others stand by, taking over when its lease runs out.
pub(crate) async fn notify<C: FeedChannel>(state: Shared, channel: Arc<C>) {
    // This process, as mission leases name it: a holder that died on this host is known.
    let owner = state.engine.config().worker.0.clone();
    let mut shutdown = state.shutdown.clone();
    let mut standing_by = false;
    let name = channel.name();
    loop {
        if shutdown.borrow().is_some() {
            return;
        }
        match hold(&state, channel.reader(), &owner).await {
            Ok(true) => {
                if standing_by {
                    channel.report(&format!(
                        "taking over the {name} notifications for this store"
                    ));
                }
                let ended = notify_while_held(&state, &channel, &owner).await;
                if ended == Held::Stopped {
                    let store = &state.engine.config().store;
                    if let Err(e) = store.release_feed_reader(channel.reader(), &owner).await {
                        channel.report(&format!("giving the notifier's lease back failed: {e}"));
                    }
                    return;
                }
                channel.report(&format!(
                    "lost the {name} notifier's lease to another serve; standing by"
                ));
                standing_by = true;
            }
            Ok(false) => {
                if !standing_by {
                    channel.report(&format!(
                        "another serve notifies {name} for this store; this one stands by"
                    ));
                    standing_by = true;
                }
            }
            Err(e) => channel.report(&format!("taking the notifier's lease failed: {e}")),
        }
        tokio::select! {
            () = tokio::time::sleep(STANDBY_POLL) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Takes or renews the notifier's lease on `reader` ([`hold_reader`] for [`LEASE_TTL`]).
async fn hold(
    state: &Shared,
    reader: &str,
    owner: &str,
) -> Result<bool, flightdeck_store::StoreError> {
    hold_reader(state, reader, owner, LEASE_TTL).await
}

/// Takes or renews the store's lease on `reader` for `ttl`, on the database's clock; a
/// holder that died on this host (a killed `serve`) is taken over at once rather than after
/// its lease runs out. Whether this process holds it now.
pub(crate) async fn hold_reader(
    state: &Shared,
    reader: &str,
    owner: &str,
    ttl: Duration,
) -> Result<bool, flightdeck_store::StoreError> {
    let store = &state.engine.config().store;
    let now = store.clock_ms().await?;
    let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let holder = store
        .hold_feed_reader(reader, owner, now, ttl, None)
        .await?;
    match holder {
        Some(holder) if holder != owner && WorkerId::is_dead_on_this_host(&holder) => {
            let taken = store
                .hold_feed_reader(reader, owner, now, ttl, Some(&holder))
                .await?;
            Ok(taken.as_deref() == Some(owner))
        }
        holder => Ok(holder.as_deref() == Some(owner)),
    }
}

/// How [`notify_while_held`] ended.
#[derive(Debug, PartialEq, Eq)]
enum Held {
    Stopped,
    Lost,
}

/// Renews the notifier's lease every [`RENEW_EVERY`] on a task of its own, so that no slow
/// call to the channel or inbox wait lets it run out unnoticed; clears the memory's
/// `notifying` (which every send checks first) once it is lost, or once renewals failed for
/// so long that it may soon run out.
async fn keep_lease<C: FeedChannel>(state: Shared, channel: Arc<C>, owner: String) {
    let mut renewed = std::time::Instant::now();
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        match hold(&state, channel.reader(), &owner).await {
            Ok(true) => renewed = std::time::Instant::now(),
            Ok(false) => break,
            Err(e) => {
                channel.report(&format!("renewing the notifier's lease failed: {e}"));
                if renewed.elapsed() + 2 * RENEW_EVERY >= LEASE_TTL {
                    break;
                }
            }
        }
    }
    channel.memory().notifying.store(false, Ordering::SeqCst);
}

async fn notify_while_held<C: FeedChannel>(state: &Shared, channel: &Arc<C>, owner: &str) -> Held {
    let memory = channel.memory();
    memory.notifying.store(true, Ordering::SeqCst);
    let renewal = tokio::spawn(keep_lease(
        state.clone(),
        channel.clone(),
        owner.to_string(),
    ));
    let ended = notify_with_lease(state, channel.as_ref()).await;
    renewal.abort();
    memory.notifying.store(false, Ordering::SeqCst);
    ended
}

async fn notify_with_lease<C: FeedChannel>(state: &Shared, channel: &C) -> Held {
    let store = state.engine.config().store.clone();
    let mut shutdown = state.shutdown.clone();
    let memory = channel.memory();
    let held = || memory.notifying();
    // Where the last holder got to.
    let mut cursor = loop {
        match store.feed_cursor(channel.reader()).await {
            Ok(saved) => break saved.unwrap_or(0),
            Err(e) => {
                channel.report(&format!("reading the notifier's cursor failed: {e}"));
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = shutdown.changed() => return Held::Stopped,
                }
                if !held() {
                    return Held::Lost;
                }
            }
        }
    };
    // What the store holds as the cursor (saved only when it moves on).
    let mut saved = cursor;
    // Missions to look at again, and when: a reminder comes due, or the channel failed.
    let mut revisits: BTreeMap<String, i64> = BTreeMap::new();
    // Missions the channel failed for, at the feed position they were met: the saved
    // cursor stays before the earliest, so a restart goes over them again.
    let mut failing: BTreeMap<String, (u64, u32)> = BTreeMap::new();
    // The cursor may be past missions that still wait for approval (their reminders were
    // only in the memory of the process before): look at each once.
    match store.mission_index(WAITING_SCAN).await {
        Ok(missions) => {
            for row in missions.iter().filter(|m| m.status == "awaiting_approval") {
                if !held() {
                    return Held::Lost;
                }
                sync(state, channel, &row.id, cursor, &mut revisits, &mut failing).await;
            }
        }
        Err(e) => channel.report(&format!("listing the missions that wait failed: {e}")),
    }
    loop {
        if shutdown.borrow().is_some() {
            return Held::Stopped;
        }
        if !held() {
            return Held::Lost;
        }
        let now = SystemClock.now_ms();
        let patience = revisits
            .values()
            .min()
            .map(|due| Duration::from_millis(u64::try_from(due - now).unwrap_or(0)))
            .map_or(PATIENCE, |until| until.min(PATIENCE));
        let waited = tokio::select! {
            entries = store.wait_for_change(cursor, FEED_PAGE, patience) => entries,
            _ = shutdown.changed() => return Held::Stopped,
        };
        let entries = match waited {
            Ok(entries) => entries,
            Err(e) => {
                channel.report(&format!(
                    "reading the store's feed failed: {e}; trying again"
                ));
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        // Reminders that came due, failures to try again.
        let now = SystemClock.now_ms();
        let due: Vec<String> = revisits
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(mission, _)| mission.clone())
            .collect();
        for mission in due {
            if !held() {
                return Held::Lost;
            }
            revisits.remove(&mission);
            let position = failing.get(&mission).map_or(cursor, |f| f.0);
            sync(
                state,
                channel,
                &mission,
                position,
                &mut revisits,
                &mut failing,
            )
            .await;
        }
        // Each mission once, at its last position in the page, in the order of those
        // positions: once one is done with, the cursor can move past it.
        let mut last_at: BTreeMap<&str, u64> = BTreeMap::new();
        for entry in &entries {
            if channel.shows(&entry.status) {
                last_at.insert(entry.mission.as_str(), entry.position);
            }
        }
        let mut order: Vec<(u64, &str)> = last_at.into_iter().map(|(m, p)| (p, m)).collect();
        order.sort_unstable();
        for (position, mission) in order {
            if !held() {
                return Held::Lost;
            }
            let untracked = memory.untracked_sends.load(Ordering::Relaxed);
            sync(
                state,
                channel,
                mission,
                position,
                &mut revisits,
                &mut failing,
            )
            .await;
            // What only memory knows was sent is kept from a restart at once.
            if memory.untracked_sends.load(Ordering::Relaxed) != untracked {
                save_cursor(state, channel, position, &failing, &mut saved).await;
            }
        }
        if let Some(last) = entries.last().map(|e| e.position) {
            cursor = cursor.max(last);
        }
        save_cursor(state, channel, cursor, &failing, &mut saved).await;
    }
}

/// Saves `position` as done with, or less: never past a mission the channel failed for;
/// only when that moves the cursor on from `saved` (an idle notifier writes nothing).
async fn save_cursor<C: FeedChannel>(
    state: &Shared,
    channel: &C,
    position: u64,
    failing: &BTreeMap<String, (u64, u32)>,
    saved: &mut u64,
) {
    let earliest_failure = failing.values().map(|(at, _)| at.saturating_sub(1)).min();
    let position = earliest_failure.map_or(position, |before| before.min(position));
    if position <= *saved {
        return;
    }
    let store = &state.engine.config().store;
    match store.save_feed_cursor(channel.reader(), position).await {
        Ok(()) => *saved = position,
        Err(e) => channel.report(&format!("saving the notifier's cursor failed: {e}")),
    }
}

/// [`FeedChannel::sync_mission`], reporting what went wrong: a mission the channel failed
/// for is tried again later (2 s, doubling up to 5 minutes, [`MAX_ATTEMPTS`] times at most),
/// unless the channel's answer will not change ([`SyncError::Final`]); one with a reminder
/// coming is looked at then. A finished mission already done with is not looked at again.
async fn sync<C: FeedChannel>(
    state: &Shared,
    channel: &C,
    mission: &str,
    position: u64,
    revisits: &mut BTreeMap<String, i64>,
    failing: &mut BTreeMap<String, (u64, u32)>,
) {
    if channel.memory().is_done(mission) {
        return;
    }
    match channel.sync_mission(state, mission).await {
        Ok(next_reminder) => {
            failing.remove(mission);
            match next_reminder {
                Some(due) => revisits.insert(mission.to_string(), due),
                None => revisits.remove(mission),
            };
        }
        Err(SyncError::Final(message)) => {
            failing.remove(mission);
            revisits.remove(mission);
            channel.report(&format!(
                "mission {mission}: {message}; {} will answer the same again, so it is not retried",
                channel.name()
            ));
        }
        Err(SyncError::Again(message)) => {
            let (at, attempts) = failing.entry(mission.to_string()).or_insert((position, 0));
            *at = (*at).min(position);
            *attempts = attempts.saturating_add(1);
            if *attempts > MAX_ATTEMPTS {
                failing.remove(mission);
                revisits.remove(mission);
                channel.report(&format!(
                    "mission {mission}: {message}; given up after {MAX_ATTEMPTS} attempts"
                ));
                return;
            }
            let wait = 2_000_i64
                .saturating_mul(1 << (*attempts - 1).min(8))
                .min(300_000);
            channel.report(&format!(
                "mission {mission}: {message}; trying again in {} s",
                wait / 1000
            ));
            revisits.insert(mission.to_string(), SystemClock.now_ms() + wait);
        }
    }
}

/// Records a send as `notification.sent`, through the mission's inbox. A finished mission
/// takes no more events: what it was sent is kept by the caller (in [`Memory`]) and the
/// cursor, and counted so the notifier saves its cursor at once.
pub(crate) async fn record(
    state: &Shared,
    channel: &dyn FeedChannel,
    mission: &MissionState,
    sent: NotificationSent,
) -> Result<(), AppError> {
    let untracked = || {
        channel
            .memory()
            .untracked_sends
            .fetch_add(1, Ordering::Relaxed);
    };
    if mission.status.is_terminal() {
        untracked();
        return Ok(());
    }
    let what = format!("{} {}", sent.kind, sent.reference);
    match state
        .engine
        .post(&mission.id, Foreign::Notification { sent })
        .await?
    {
        Applied::Recorded { .. } => Ok(()),
        // It finished in between: the cursor keeps it from being sent again.
        Applied::Refused(flightdeck_engine::Refusal::AlreadyFinished { .. }) => {
            untracked();
            Ok(())
        }
        Applied::Refused(refusal) => {
            // Finished after the input was posted: the same as above.
            if state.engine.load(&mission.id).await?.status.is_terminal() {
                untracked();
                return Ok(());
            }
            channel.report(&format!(
                "mission {}: recording {what} was refused: {refusal}",
                mission.id
            ));
            Ok(())
        }
    }
}
