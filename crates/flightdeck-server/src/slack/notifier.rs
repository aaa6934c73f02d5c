//! The notifier: tails the store's global feed and, for each mission that changed in a way
//! Slack shows, posts what its approvals lack, redraws what changed, reminds before an
//! approval expires and reports the mission's news in the request's thread.
//!
//! Nothing is sent twice, across restarts too:
//! - While a mission can take events, each message is recorded as `notification.sent`
//!   through its inbox (the one writer records it) and a redraw records the digest of what
//!   it drew; what is recorded is never sent again.
//! - A finished mission takes no more events, so what its end sends (a status, the last
//!   redraw) is kept in memory, and the feed cursor, saved in the store after each mission
//!   is done with, keeps a restarted notifier from going over it again. Only a crash
//!   between a send and the cursor's save can repeat that one mission's last message.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use flightdeck_app::AppError;
use flightdeck_core::event::NotificationSent;
use flightdeck_core::{MissionState, MissionStatus};
use flightdeck_engine::{Applied, Clock, Foreign, SystemClock, WorkerId};

use super::view::{self, Status};
use super::SlackChannel;
use crate::routes::Shared;

/// The name the notifier's cursor is saved under.
const READER: &str = "slack-notifier";
/// What a notification of an approval request is called in `notification.sent`.
pub(super) const APPROVAL_REQUEST: &str = "approval_request";
const REMINDER: &str = "reminder";
/// How many feed entries one wait reads at most.
const FEED_PAGE: u32 = 1_000;
/// How many of the newest missions a starting notifier looks through for those that wait
/// for approval.
const WAITING_SCAN: u32 = 10_000;
/// How long one wait for the feed lasts when no reminder is due sooner (the lease is
/// renewed between waits).
const PATIENCE: Duration = Duration::from_secs(10);
/// How long the notifier's lease lasts unless renewed, and how often it is.
const LEASE_TTL: Duration = Duration::from_secs(45);
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// How often a standing-by notifier asks for the lease.
const STANDBY_POLL: Duration = Duration::from_secs(10);

/// Runs the notifier until the server stops, while this process holds the store's lease
/// on the `slack-notifier` reader: of several `serve`s sharing a store, one notifies and
/// the others stand by, taking over when its lease runs out.
pub(super) async fn notify(state: Shared, slack: Arc<SlackChannel>) {
    // This process, as mission leases name it: a holder that died on this host is known.
    let owner = state.engine.config().worker.0.clone();
    let mut shutdown = state.shutdown.clone();
    let mut standing_by = false;
    loop {
        if shutdown.borrow().is_some() {
            return;
        }
        match hold(&state, &owner).await {
            Ok(true) => {
                if standing_by {
                    (slack.report)("taking over the Slack notifications for this store");
                }
                let ended = notify_while_held(&state, &slack, &owner).await;
                if ended == Held::Stopped {
                    let store = &state.engine.config().store;
                    if let Err(e) = store.release_feed_reader(READER, &owner).await {
                        (slack.report)(&format!("giving the notifier's lease back failed: {e}"));
                    }
                    return;
                }
                (slack.report)("lost the Slack notifier's lease to another serve; standing by");
                standing_by = true;
            }
            Ok(false) => {
                if !standing_by {
                    (slack.report)(
                        "another serve notifies Slack for this store; this one stands by",
                    );
                    standing_by = true;
                }
            }
            Err(e) => (slack.report)(&format!("taking the notifier's lease failed: {e}")),
        }
        tokio::select! {
            () = tokio::time::sleep(STANDBY_POLL) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Takes or renews the notifier's lease, on the database's clock; a holder that died on
/// this host (a killed `serve`) is taken over at once rather than after its lease runs out.
async fn hold(state: &Shared, owner: &str) -> Result<bool, flightdeck_store::StoreError> {
    let store = &state.engine.config().store;
    let now = store.clock_ms().await?;
    let ttl = i64::try_from(LEASE_TTL.as_millis()).unwrap_or(i64::MAX);
    let holder = store
        .hold_feed_reader(READER, owner, now, ttl, None)
        .await?;
    match holder {
        Some(holder) if holder != owner && WorkerId::is_dead_on_this_host(&holder) => {
            let taken = store
                .hold_feed_reader(READER, owner, now, ttl, Some(&holder))
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

/// The lease, renewed when it is due.
struct Lease<'a> {
    state: &'a Shared,
    owner: &'a str,
    renewed: std::time::Instant,
}

impl Lease<'_> {
    /// Whether it is still held (renewed when due; a failed renewal counts as lost once the
    /// lease may have run out).
    async fn still_held(&mut self, slack: &SlackChannel) -> bool {
        if self.renewed.elapsed() < RENEW_EVERY {
            return true;
        }
        match hold(self.state, self.owner).await {
            Ok(held) => {
                if held {
                    self.renewed = std::time::Instant::now();
                }
                held
            }
            Err(e) => {
                (slack.report)(&format!("renewing the notifier's lease failed: {e}"));
                self.renewed.elapsed() < LEASE_TTL
            }
        }
    }
}

async fn notify_while_held(state: &Shared, slack: &SlackChannel, owner: &str) -> Held {
    let store = state.engine.config().store.clone();
    let mut shutdown = state.shutdown.clone();
    let mut lease = Lease {
        state,
        owner,
        renewed: std::time::Instant::now(),
    };
    // Where the last holder got to.
    let mut cursor = loop {
        match store.feed_cursor(READER).await {
            Ok(saved) => break saved.unwrap_or(0),
            Err(e) => {
                (slack.report)(&format!("reading the notifier's cursor failed: {e}"));
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = shutdown.changed() => return Held::Stopped,
                }
                if !lease.still_held(slack).await {
                    return Held::Lost;
                }
            }
        }
    };
    // Missions to look at again, and when: a reminder comes due, or Slack failed.
    let mut revisits: BTreeMap<String, i64> = BTreeMap::new();
    // Missions Slack failed for, at the feed position they were met: the saved cursor
    // stays before the earliest, so a restart goes over them again.
    let mut failing: BTreeMap<String, (u64, u32)> = BTreeMap::new();
    // The cursor may be past missions that still wait for approval (their reminders were
    // only in the memory of the process before): look at each once.
    match store.mission_index(WAITING_SCAN).await {
        Ok(missions) => {
            for row in missions.iter().filter(|m| m.status == "awaiting_approval") {
                if !lease.still_held(slack).await {
                    return Held::Lost;
                }
                sync(state, slack, &row.id, cursor, &mut revisits, &mut failing).await;
            }
        }
        Err(e) => (slack.report)(&format!("listing the missions that wait failed: {e}")),
    }
    loop {
        if shutdown.borrow().is_some() {
            return Held::Stopped;
        }
        if !lease.still_held(slack).await {
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
                (slack.report)(&format!(
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
            if !lease.still_held(slack).await {
                return Held::Lost;
            }
            revisits.remove(&mission);
            let position = failing.get(&mission).map_or(cursor, |f| f.0);
            sync(
                state,
                slack,
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
            if shows_in_slack(&entry.status) {
                last_at.insert(entry.mission.as_str(), entry.position);
            }
        }
        let mut order: Vec<(u64, &str)> = last_at.into_iter().map(|(m, p)| (p, m)).collect();
        order.sort_unstable();
        for (position, mission) in order {
            if !lease.still_held(slack).await {
                return Held::Lost;
            }
            let untracked = slack.untracked_sends.load(Ordering::Relaxed);
            sync(state, slack, mission, position, &mut revisits, &mut failing).await;
            // What only memory knows was sent is kept from a restart at once.
            if slack.untracked_sends.load(Ordering::Relaxed) != untracked {
                save_cursor(state, slack, position, &failing).await;
            }
        }
        if let Some(last) = entries.last().map(|e| e.position) {
            cursor = cursor.max(last);
        }
        save_cursor(state, slack, cursor, &failing).await;
    }
}

/// Only an append that leaves a mission waiting for approval, blocked or finished can
/// change what Slack shows (a vote leaves it waiting, a deny or an expiry finishes it).
fn shows_in_slack(status: &str) -> bool {
    matches!(
        status,
        "awaiting_approval" | "blocked" | "failed" | "cancelled" | "succeeded"
    )
}

/// Saves `position` as done with, or less: never past a mission Slack failed for.
async fn save_cursor(
    state: &Shared,
    slack: &SlackChannel,
    position: u64,
    failing: &BTreeMap<String, (u64, u32)>,
) {
    let earliest_failure = failing.values().map(|(at, _)| at.saturating_sub(1)).min();
    let position = earliest_failure.map_or(position, |before| before.min(position));
    let store = &state.engine.config().store;
    if let Err(e) = store.save_feed_cursor(READER, position).await {
        (slack.report)(&format!("saving the notifier's cursor failed: {e}"));
    }
}

/// [`sync_mission`], reporting what went wrong: a mission Slack failed for is tried again
/// later (2 s, doubling up to 5 minutes), one with a reminder coming is looked at then.
async fn sync(
    state: &Shared,
    slack: &SlackChannel,
    mission: &str,
    position: u64,
    revisits: &mut BTreeMap<String, i64>,
    failing: &mut BTreeMap<String, (u64, u32)>,
) {
    match sync_mission(state, slack, mission).await {
        Ok(next_reminder) => {
            failing.remove(mission);
            match next_reminder {
                Some(due) => revisits.insert(mission.to_string(), due),
                None => revisits.remove(mission),
            };
        }
        Err(e) => {
            let (at, attempts) = failing.entry(mission.to_string()).or_insert((position, 0));
            *at = (*at).min(position);
            *attempts = attempts.saturating_add(1);
            let wait = 2_000_i64
                .saturating_mul(1 << (*attempts - 1).min(8))
                .min(300_000);
            (slack.report)(&format!(
                "mission {mission}: {}; trying again in {} s",
                e.message,
                wait / 1000
            ));
            revisits.insert(mission.to_string(), SystemClock.now_ms() + wait);
        }
    }
}

/// Posts what a mission's approvals lack, redraws what changed, sends due reminders and
/// reports its status in the thread. Returns when its next reminder is due.
async fn sync_mission(
    state: &Shared,
    slack: &SlackChannel,
    id: &str,
) -> Result<Option<i64>, AppError> {
    let mission = state.engine.load(id).await?;
    let now = SystemClock.now_ms();
    let mut next_reminder: Option<i64> = None;
    for approval in mission.approvals_in_order() {
        let approval_id = approval.request.approval_id.as_str();
        let records: Vec<&NotificationSent> = mission
            .notifications
            .iter()
            .filter(|n| n.kind == APPROVAL_REQUEST && n.approval_id.as_deref() == Some(approval_id))
            .collect();
        let view = view::view_of(state, slack, &mission, approval).await;
        let message = flightdeck_slack::approval_message(&view);
        let digest = flightdeck_core::hash::sha256_hex(
            serde_json::to_string(&(&message.text, &message.blocks))
                .unwrap_or_default()
                .as_bytes(),
        );
        // Where the request's message is: as recorded, or as posted by this process when the
        // mission finished before the record was taken in (a deny right after the post).
        let first = records
            .first()
            .map(|n| (n.target.clone(), n.reference.clone()))
            .or_else(|| slack.posted().get(approval_id).cloned());
        let Some((target, ts)) = first else {
            if view::is_open(approval) && !mission.status.is_terminal() {
                let channel = slack.channel_for(approval).to_string();
                let posted = slack
                    .client
                    .chat_post_message(&channel, &message.text, &message.blocks, None)
                    .await
                    .map_err(|e| AppError::failed(format!("posting {approval_id}: {e}")))?;
                slack
                    .drawn()
                    .insert(approval_id.to_string(), digest.clone());
                slack.posted().insert(
                    approval_id.to_string(),
                    (posted.channel.clone(), posted.ts.clone()),
                );
                let sent = notification(
                    &posted.channel,
                    &posted.ts,
                    APPROVAL_REQUEST,
                    Some(approval_id),
                    Some(digest),
                );
                record(state, slack, &mission, sent).await?;
            }
            continue;
        };
        // Redraw when what it shows changed since it was last drawn (by this process, or
        // as the timeline recorded).
        let last_drawn = slack
            .drawn()
            .get(approval_id)
            .cloned()
            .or_else(|| records.iter().rev().find_map(|n| n.digest.clone()));
        if last_drawn.as_deref() != Some(digest.as_str()) {
            slack
                .client
                .chat_update(&target, &ts, &message.text, &message.blocks)
                .await
                .map_err(|e| AppError::failed(format!("updating {approval_id}: {e}")))?;
            slack
                .drawn()
                .insert(approval_id.to_string(), digest.clone());
            let sent = notification(
                &target,
                &ts,
                APPROVAL_REQUEST,
                Some(approval_id),
                Some(digest),
            );
            record(state, slack, &mission, sent).await?;
        }
        // A reminder, once, when the approval nears its expiry (never before half its time).
        let Some(seconds) = approval.request.expires_after_seconds else {
            continue;
        };
        if !view::is_open(approval) || mission.status.is_terminal() {
            continue;
        }
        let lifetime = i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
        let expires_at = approval.requested_at_ms.saturating_add(lifetime);
        let remind_at = expires_at
            .saturating_sub(slack.remind_before_ms)
            .max(approval.requested_at_ms.saturating_add(lifetime / 2));
        let reminded = mission
            .notifications
            .iter()
            .any(|n| n.kind == REMINDER && n.approval_id.as_deref() == Some(approval_id));
        if reminded || now >= expires_at {
            continue;
        }
        if now < remind_at {
            next_reminder = Some(next_reminder.map_or(remind_at, |at: i64| at.min(remind_at)));
            continue;
        }
        let text = view::reminder(
            approval,
            &view::waiting_for(state, approval),
            expires_at - now,
        );
        let posted = slack
            .client
            .chat_post_message(&target, &text, &[], Some(&ts))
            .await
            .map_err(|e| AppError::failed(format!("reminding of {approval_id}: {e}")))?;
        let sent = notification(
            &posted.channel,
            &posted.ts,
            REMINDER,
            Some(approval_id),
            None,
        );
        record(state, slack, &mission, sent).await?;
    }
    report_status(state, slack, &mission).await?;
    if mission.status.is_terminal() {
        // Done with for good: a finished mission has no more appends to bring it back, and
        // the saved cursor keeps a restart from it. What memory kept of it can go.
        slack.forget(&mission);
    }
    Ok(next_reminder)
}

/// The mission's news in the thread of its first approval request: blocked (each time),
/// failed, cancelled, published. A mission Slack was never asked about gets none.
async fn report_status(
    state: &Shared,
    slack: &SlackChannel,
    mission: &MissionState,
) -> Result<(), AppError> {
    let recorded = mission
        .notifications
        .iter()
        .find(|n| n.kind == APPROVAL_REQUEST)
        .map(|n| (n.target.clone(), n.reference.clone()));
    let Some((root_channel, root_ts)) = recorded.or_else(|| {
        let posted = slack.posted();
        mission
            .approval_order
            .iter()
            .find_map(|approval| posted.get(approval).cloned())
    }) else {
        return Ok(());
    };
    let mut blocking = None;
    let status = match mission.status {
        MissionStatus::Blocked => {
            // The event that blocked it, once each: read after the last one reported.
            let after = mission
                .notifications
                .iter()
                .filter(|n| n.kind == "blocked")
                .filter_map(|n| n.about)
                .max()
                .unwrap_or(0);
            let events = state
                .engine
                .config()
                .store
                .events(&mission.id, after)
                .await?;
            blocking = events
                .into_iter()
                .rev()
                .find(|e| matches!(e.event_type.as_str(), "budget.exceeded" | "breaker.tripped"));
            let Some(event) = &blocking else {
                return Ok(());
            };
            Status::Blocked {
                kind: event.event_type.as_str(),
                data: &event.data,
            }
        }
        MissionStatus::Failed => {
            // A denied or expired request says so itself.
            let by_approval = mission
                .error
                .as_ref()
                .is_some_and(|e| e.kind.starts_with("approval_"));
            if by_approval {
                return Ok(());
            }
            Status::Failed
        }
        MissionStatus::Cancelled => Status::Cancelled,
        MissionStatus::Succeeded if mission.published.is_some() => Status::Published,
        _ => return Ok(()),
    };
    let about = blocking.as_ref().map(|e| e.seq);
    let kind = status.kind();
    let key = format!("{}/{kind}/{}", mission.id, about.unwrap_or(0));
    let recorded = mission
        .notifications
        .iter()
        .any(|n| n.kind == kind && n.about == about);
    if recorded || slack.sent_untracked().contains(&key) {
        return Ok(());
    }
    let text = view::status_text(slack, mission, &status);
    let posted = slack
        .client
        .chat_post_message(&root_channel, &text, &[], Some(&root_ts))
        .await
        .map_err(|e| AppError::failed(format!("telling the thread {kind}: {e}")))?;
    slack.sent_untracked().insert(key);
    let mut sent = notification(&posted.channel, &posted.ts, kind, None, None);
    sent.about = about;
    record(state, slack, mission, sent).await
}

/// Records a message sent as `notification.sent`, through the mission's inbox. A finished
/// mission takes no more events: what it was sent is kept by the caller and the cursor.
async fn record(
    state: &Shared,
    slack: &SlackChannel,
    mission: &MissionState,
    sent: NotificationSent,
) -> Result<(), AppError> {
    if mission.status.is_terminal() {
        slack.untracked_sends.fetch_add(1, Ordering::Relaxed);
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
            slack.untracked_sends.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Applied::Refused(refusal) => {
            (slack.report)(&format!(
                "mission {}: recording {what} was refused: {refusal}",
                mission.id
            ));
            Ok(())
        }
    }
}

/// A `notification.sent` on Slack: a message `kind` at `reference` in `target`, about an
/// approval, showing what `digest` digests.
fn notification(
    target: &str,
    reference: &str,
    kind: &str,
    approval_id: Option<&str>,
    digest: Option<String>,
) -> NotificationSent {
    NotificationSent {
        channel: "slack".to_string(),
        target: target.to_string(),
        reference: reference.to_string(),
        kind: kind.to_string(),
        approval_id: approval_id.map(str::to_string),
        digest,
        about: None,
    }
}
