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
//! - Of several `serve`s sharing a store, only the one holding the store's lease on the
//!   `slack-notifier` reader notifies; the others stand by.

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
/// How many times a mission Slack failed for is tried (over about half an hour).
const MAX_ATTEMPTS: u32 = 12;
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

/// Renews the notifier's lease every [`RENEW_EVERY`] on a task of its own, so that no
/// slow Slack call or inbox wait lets it run out unnoticed; clears `slack.notifying` (which
/// every send checks first) once it is lost, or once renewals failed for so long that it
/// may soon run out.
async fn keep_lease(state: Shared, slack: Arc<SlackChannel>, owner: String) {
    let mut renewed = std::time::Instant::now();
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        match hold(&state, &owner).await {
            Ok(true) => renewed = std::time::Instant::now(),
            Ok(false) => break,
            Err(e) => {
                (slack.report)(&format!("renewing the notifier's lease failed: {e}"));
                if renewed.elapsed() + 2 * RENEW_EVERY >= LEASE_TTL {
                    break;
                }
            }
        }
    }
    slack.notifying.store(false, Ordering::SeqCst);
}

async fn notify_while_held(state: &Shared, slack: &Arc<SlackChannel>, owner: &str) -> Held {
    slack.notifying.store(true, Ordering::SeqCst);
    let renewal = tokio::spawn(keep_lease(state.clone(), slack.clone(), owner.to_string()));
    let ended = notify_with_lease(state, slack).await;
    renewal.abort();
    slack.notifying.store(false, Ordering::SeqCst);
    ended
}

async fn notify_with_lease(state: &Shared, slack: &SlackChannel) -> Held {
    let store = state.engine.config().store.clone();
    let mut shutdown = state.shutdown.clone();
    let held = || slack.notifying.load(Ordering::SeqCst);
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
                if !held() {
                    return Held::Lost;
                }
            }
        }
    };
    // What the store holds as the cursor (saved only when it moves on).
    let mut saved = cursor;
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
                if !held() {
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
            if !held() {
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
            if !held() {
                return Held::Lost;
            }
            let untracked = slack.untracked_sends.load(Ordering::Relaxed);
            sync(state, slack, mission, position, &mut revisits, &mut failing).await;
            // What only memory knows was sent is kept from a restart at once.
            if slack.untracked_sends.load(Ordering::Relaxed) != untracked {
                save_cursor(state, slack, position, &failing, &mut saved).await;
            }
        }
        if let Some(last) = entries.last().map(|e| e.position) {
            cursor = cursor.max(last);
        }
        save_cursor(state, slack, cursor, &failing, &mut saved).await;
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

/// Saves `position` as done with, or less: never past a mission Slack failed for; only
/// when that moves the cursor on from `saved` (an idle notifier writes nothing).
async fn save_cursor(
    state: &Shared,
    slack: &SlackChannel,
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
    match store.save_feed_cursor(READER, position).await {
        Ok(()) => *saved = position,
        Err(e) => (slack.report)(&format!("saving the notifier's cursor failed: {e}")),
    }
}

/// [`sync_mission`], reporting what went wrong: a mission Slack failed for is tried again
/// later (2 s, doubling up to 5 minutes, [`MAX_ATTEMPTS`] times at most), unless Slack's
/// answer will not change (a deleted message, an archived channel); one with a reminder
/// coming is looked at then. A finished mission already done with is not looked at again.
async fn sync(
    state: &Shared,
    slack: &SlackChannel,
    mission: &str,
    position: u64,
    revisits: &mut BTreeMap<String, i64>,
    failing: &mut BTreeMap<String, (u64, u32)>,
) {
    if slack.is_done(mission) {
        return;
    }
    match sync_mission(state, slack, mission).await {
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
            (slack.report)(&format!(
                "mission {mission}: {message}; Slack will answer the same again, so it is not retried"
            ));
        }
        Err(SyncError::Again(message)) => {
            let (at, attempts) = failing.entry(mission.to_string()).or_insert((position, 0));
            *at = (*at).min(position);
            *attempts = attempts.saturating_add(1);
            if *attempts > MAX_ATTEMPTS {
                failing.remove(mission);
                revisits.remove(mission);
                (slack.report)(&format!(
                    "mission {mission}: {message}; given up after {MAX_ATTEMPTS} attempts"
                ));
                return;
            }
            let wait = 2_000_i64
                .saturating_mul(1 << (*attempts - 1).min(8))
                .min(300_000);
            (slack.report)(&format!(
                "mission {mission}: {message}; trying again in {} s",
                wait / 1000
            ));
            revisits.insert(mission.to_string(), SystemClock.now_ms() + wait);
        }
    }
}

/// Why a mission could not be brought up to date.
#[derive(Debug)]
enum SyncError {
    /// Slack's answer will not change (the message was deleted, the channel archived, the
    /// bot removed from it): trying again would only fail again.
    Final(String),
    /// Worth another try: Slack or the store may answer otherwise later.
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

/// A failed Slack call, final or worth another try.
fn slack_failed(what: String, e: flightdeck_slack::SlackError) -> SyncError {
    use flightdeck_slack::SlackError as E;
    let again = match &e {
        E::Api { error, .. } => matches!(
            error.as_str(),
            "ratelimited"
                | "rate_limited"
                | "internal_error"
                | "fatal_error"
                | "service_unavailable"
                | "request_timeout"
        ),
        E::Http { status, .. } => *status >= 500 || *status == 429,
        E::RateLimited { .. }
        | E::Timeout { .. }
        | E::Connection { .. }
        | E::BadResponse { .. } => true,
        _ => false,
    };
    let message = format!("{what}: {e}");
    if again {
        SyncError::Again(message)
    } else {
        SyncError::Final(message)
    }
}

/// Before each Slack send: this process still notifies.
fn still_notifying(slack: &SlackChannel) -> Result<(), SyncError> {
    if slack.notifying.load(Ordering::SeqCst) {
        Ok(())
    } else {
        Err(SyncError::Again(
            "the notifier's lease was lost".to_string(),
        ))
    }
}

/// Posts what a mission's approvals lack, redraws what changed, sends due reminders and
/// reports its status in the thread. Returns when its next reminder is due.
async fn sync_mission(
    state: &Shared,
    slack: &SlackChannel,
    id: &str,
) -> Result<Option<i64>, SyncError> {
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
                still_notifying(slack)?;
                let posted = slack
                    .client
                    .chat_post_message(&channel, &message.text, &message.blocks, None)
                    .await
                    .map_err(|e| slack_failed(format!("posting {approval_id}"), e))?;
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
            still_notifying(slack)?;
            slack
                .client
                .chat_update(&target, &ts, &message.text, &message.blocks)
                .await
                .map_err(|e| slack_failed(format!("updating {approval_id}"), e))?;
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
        } else if records.is_empty() && !mission.status.is_terminal() {
            // Posted by this process, but recording it failed: record it now, so that a
            // restart or another server does not post it again.
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
        let reminder_key = format!("{}/{REMINDER}/{approval_id}", mission.id);
        let reminded = mission
            .notifications
            .iter()
            .any(|n| n.kind == REMINDER && n.approval_id.as_deref() == Some(approval_id))
            || slack.sent_untracked().contains(&reminder_key);
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
        still_notifying(slack)?;
        let posted = slack
            .client
            .chat_post_message(&target, &text, &[], Some(&ts))
            .await
            .map_err(|e| slack_failed(format!("reminding of {approval_id}"), e))?;
        // Not sent again should recording it fail.
        slack.sent_untracked().insert(reminder_key);
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
        // Done with for good: the saved cursor keeps a restart from it, and this process
        // does not look at it again (the notifier's own records may still bring it back
        // through the feed). What memory kept of it can go.
        slack.done_with(&mission);
    }
    Ok(next_reminder)
}

/// The mission's news in the thread of its first approval request: blocked (each time),
/// failed, cancelled, published. A mission Slack was never asked about gets none.
async fn report_status(
    state: &Shared,
    slack: &SlackChannel,
    mission: &MissionState,
) -> Result<(), SyncError> {
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
    still_notifying(slack)?;
    let posted = slack
        .client
        .chat_post_message(&root_channel, &text, &[], Some(&root_ts))
        .await
        .map_err(|e| slack_failed(format!("telling the thread {kind}"), e))?;
    slack.sent_untracked().insert(key);
    let mut sent = notification(&posted.channel, &posted.ts, kind, None, None);
    sent.about = about;
    record(state, slack, mission, sent).await?;
    Ok(())
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
            // Finished after the input was posted: the same as above.
            if state.engine.load(&mission.id).await?.status.is_terminal() {
                slack.untracked_sends.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use flightdeck_slack::SlackError;

    use super::{slack_failed, SyncError};

    fn api(error: &str) -> SlackError {
        SlackError::Api {
            method: "chat.update".to_string(),
            error: error.to_string(),
        }
    }

    /// Which failures are tried again: what may pass (Slack's own trouble, the network, a
    /// rate limit) is; what Slack will answer again (a deleted message, an archived channel,
    /// a bad token) is not.
    #[test]
    fn a_failure_is_tried_again_only_when_the_answer_may_change() {
        let cases = [
            (api("fatal_error"), true),
            (api("internal_error"), true),
            (api("ratelimited"), true),
            (api("service_unavailable"), true),
            (api("message_not_found"), false),
            (api("channel_not_found"), false),
            (api("not_in_channel"), false),
            (api("is_archived"), false),
            (api("invalid_auth"), false),
            (api("msg_too_long"), false),
            (
                SlackError::Http {
                    method: "chat.update".to_string(),
                    status: 503,
                },
                true,
            ),
            (
                SlackError::Http {
                    method: "chat.update".to_string(),
                    status: 404,
                },
                false,
            ),
            (
                SlackError::RateLimited {
                    method: "chat.update".to_string(),
                    attempts: 3,
                    retry_after: Some(Duration::from_secs(60)),
                },
                true,
            ),
            (
                SlackError::Timeout {
                    method: "chat.update".to_string(),
                    after: Duration::from_secs(10),
                },
                true,
            ),
            (
                SlackError::Connection {
                    method: "chat.update".to_string(),
                    message: "refused".to_string(),
                },
                true,
            ),
        ];
        for (error, again) in cases {
            let shown = error.to_string();
            match slack_failed("updating a-1".to_string(), error) {
                SyncError::Again(message) => {
                    assert!(again, "{shown}: tried again");
                    assert!(message.starts_with("updating a-1: "), "{message}");
                }
                SyncError::Final(message) => {
                    assert!(!again, "{shown}: not tried again");
                    assert!(message.contains(&shown), "{message}");
                }
            }
        }
    }
}
