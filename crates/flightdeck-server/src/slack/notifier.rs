//! Slack's notifier: for each mission that changed in a way Slack shows, posts what its
//! approvals lack, redraws what changed, reminds before an approval expires and reports the
//! mission's news in the request's thread. It runs on [`crate::feed_notifier`] (the lease
//! on the `slack-notifier` reader, the feed from its durable cursor, retries), which is what
//! keeps anything from being sent twice; Slack's part of that:
//! - While a mission can take events, each message is recorded as `notification.sent`
//!   through its inbox, and a redraw records the digest of what it drew.
//! - What a finished mission's end sends (a status in the thread, the last redraw) is kept
//!   in the notifier's memory: the request's message as posted, each message's digest as
//!   drawn, and the statuses and reminders sent.

use flightdeck_core::event::NotificationSent;
use flightdeck_core::{MissionState, MissionStatus};
use flightdeck_engine::{Clock, SystemClock};

use super::view::{self, Status};
use super::SlackChannel;
use crate::feed_notifier::{record, FeedChannel, Memory, SyncError};
use crate::routes::Shared;

/// The store's feed reader the notifier's lease and cursor are kept under.
const READER: &str = "slack-notifier";
/// What a notification of an approval request is called in `notification.sent`.
pub(super) const APPROVAL_REQUEST: &str = "approval_request";
const REMINDER: &str = "reminder";

#[async_trait::async_trait]
impl FeedChannel for SlackChannel {
    fn reader(&self) -> &'static str {
        READER
    }

    fn name(&self) -> &'static str {
        "Slack"
    }

    fn memory(&self) -> &Memory {
        &self.memory
    }

    fn report(&self, message: &str) {
        (self.report)(message);
    }

    fn shows(&self, status: &str) -> bool {
        shows_in_slack(status)
    }

    async fn sync_mission(&self, state: &Shared, id: &str) -> Result<Option<i64>, SyncError> {
        sync_mission(state, self, id).await
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
            .or_else(|| slack.memory.posted().get(approval_id).cloned());
        let Some((target, ts)) = first else {
            if view::is_open(approval) && !mission.status.is_terminal() {
                let channel = slack.channel_for(approval).to_string();
                slack.memory.still_notifying()?;
                let posted = slack
                    .client
                    .chat_post_message(&channel, &message.text, &message.blocks, None)
                    .await
                    .map_err(|e| slack_failed(format!("posting {approval_id}"), e))?;
                slack
                    .memory
                    .drawn()
                    .insert(approval_id.to_string(), digest.clone());
                slack.memory.posted().insert(
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
            .memory
            .drawn()
            .get(approval_id)
            .cloned()
            .or_else(|| records.iter().rev().find_map(|n| n.digest.clone()));
        if last_drawn.as_deref() != Some(digest.as_str()) {
            slack.memory.still_notifying()?;
            slack
                .client
                .chat_update(&target, &ts, &message.text, &message.blocks)
                .await
                .map_err(|e| slack_failed(format!("updating {approval_id}"), e))?;
            slack
                .memory
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
            || slack.memory.sent_untracked().contains(&reminder_key);
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
        slack.memory.still_notifying()?;
        let posted = slack
            .client
            .chat_post_message(&target, &text, &[], Some(&ts))
            .await
            .map_err(|e| slack_failed(format!("reminding of {approval_id}"), e))?;
        // Not sent again should recording it fail.
        slack.memory.sent_untracked().insert(reminder_key);
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
        slack.memory.done_with(&mission);
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
        let posted = slack.memory.posted();
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
    if recorded || slack.memory.sent_untracked().contains(&key) {
        return Ok(());
    }
    let text = view::status_text(slack, mission, &status);
    slack.memory.still_notifying()?;
    let posted = slack
        .client
        .chat_post_message(&root_channel, &text, &[], Some(&root_ts))
        .await
        .map_err(|e| slack_failed(format!("telling the thread {kind}"), e))?;
    slack.memory.sent_untracked().insert(key);
    let mut sent = notification(&posted.channel, &posted.ts, kind, None, None);
    sent.about = about;
    record(state, slack, mission, sent).await?;
    Ok(())
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
