//! Approvals in Slack (`[slack]`, HTTP mode): the notifier posts one message per approval
//! request to the channel of its approvers' team and keeps it up to date; `POST
//! /slack/actions` takes the Approve / Deny clicks.
//!
//! - The notifier tails the store's global feed (`EventStore::wait_for_change`): for a
//!   mission that changed, each pending approval with no `approval_request` message yet gets
//!   one (`chat.postMessage`), recorded as `notification.sent` through the mission's inbox
//!   (the one writer records it), so a restarted server never posts it again; a message
//!   whose approval changed since it was last drawn (a vote, the gate closing) is redrawn in
//!   place (`chat.update`), losing its buttons once the approval is no longer pending.
//! - A click is checked before anything reads it: the `v0` signature over the raw body and
//!   its timestamp (`flightdeck_slack::signature`). The Slack user is resolved to a person
//!   through `[people] slack` and judged by the same rules as every channel
//!   (`Engine::decide_approval` with `Channel::Slack`); who may not decide gets an
//!   ephemeral message saying why, and nothing is recorded.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use flightdeck_app::config::SlackSection;
use flightdeck_app::AppError;
use flightdeck_core::event::NotificationSent;
use flightdeck_core::state::{ApprovalProgress, ApprovalStatus};
use flightdeck_core::MissionState;
use flightdeck_engine::{Channel, Foreign, Vote};
use flightdeck_slack::blocks::{
    AcceptanceResult, ApprovalRequestView, Approvers, BudgetLine, ChangedFile, CloseReason,
    DiffStat, FiredRule,
};
use flightdeck_slack::{BotToken, SlackClient};
use serde_json::Value;

use crate::routes::Shared;

/// What a notification of an approval request is called in `notification.sent`.
const APPROVAL_REQUEST: &str = "approval_request";
/// How many feed entries one wait reads at most.
const FEED_PAGE: u32 = 1_000;

/// The installation's Slack: the client, how clicks are checked, where requests go.
pub struct SlackChannel {
    client: SlackClient,
    signing_secret: Option<Vec<u8>>,
    channels: BTreeMap<String, String>,
    public_url: String,
    /// Each message's view as last drawn (approval id → its text), so a message is updated
    /// only when what it shows changed.
    drawn: Mutex<HashMap<String, String>>,
    /// Where what goes wrong is said (the binary prints it).
    report: Box<dyn Fn(&str) + Send + Sync>,
}

impl SlackChannel {
    /// Checks `[slack]` and reads its secrets from the environment: a bad entry is an error
    /// naming the key, with a hint, before the server starts.
    pub fn from_config(
        config: &SlackSection,
        public_url: &str,
        report: Box<dyn Fn(&str) + Send + Sync>,
    ) -> Result<SlackChannel, AppError> {
        let bad = |what: String, hint: &str| {
            AppError::bad_input(format!("[slack] {what}"), Some(hint.to_string()))
        };
        let env = |key: &str, name: &str| match std::env::var(name) {
            Ok(value) if !value.trim().is_empty() => Ok(value.trim().to_string()),
            _ => Err(bad(
                format!("{key} = \"{name}\": that environment variable is not set"),
                "set it in serve's environment (secrets are never written in the config)",
            )),
        };
        let token = env("bot_token_env", &config.bot_token_env)?;
        let Some(secret_env) = &config.signing_secret_env else {
            return Err(bad(
                "has no signing_secret_env".to_string(),
                "this build takes Slack's clicks in HTTP mode (POST /slack/actions), checked with the app's signing secret: set signing_secret_env (Socket Mode is not built yet)",
            ));
        };
        let secret = env("signing_secret_env", secret_env)?;
        if !config.channels.contains_key("default") {
            return Err(bad(
                "has no channels.default".to_string(),
                "name the channel approval requests go to: [slack.channels] default = \"C0123ABCD\"",
            ));
        }
        let client = SlackClient::new(&config.api_url, BotToken::new(token)).map_err(|e| {
            bad(
                format!("api_url = \"{}\": {e}", config.api_url),
                "Slack's Web API is https://slack.com/api",
            )
        })?;
        Ok(SlackChannel {
            client,
            signing_secret: Some(secret.into_bytes()),
            channels: config.channels.clone(),
            public_url: public_url.trim_end_matches('/').to_string(),
            drawn: Mutex::new(HashMap::new()),
            report,
        })
    }

    /// The channel an approval's request goes to: that of the first of its approvers' teams
    /// that has one, else `default`.
    fn channel_for(&self, approval: &ApprovalProgress) -> &str {
        approval
            .request
            .teams
            .keys()
            .chain(approval.request.approvers.iter())
            .find_map(|team| self.channels.get(team))
            .or_else(|| self.channels.get("default"))
            .map_or("", String::as_str)
    }

    fn drawn(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.drawn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Runs the notifier until the server stops: from the start of the feed (what was sent is
/// in the timelines, so nothing is sent twice), then as the store changes.
pub async fn notify(state: Shared) {
    let Some(slack) = state.slack.clone() else {
        return;
    };
    let store = state.engine.config().store.clone();
    let mut shutdown = state.shutdown.clone();
    let mut cursor = 0;
    loop {
        if shutdown.borrow().is_some() {
            return;
        }
        let waited = tokio::select! {
            entries = store.wait_for_change(cursor, FEED_PAGE, Duration::from_secs(30)) => entries,
            _ = shutdown.changed() => return,
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
        let Some(last) = entries.last().map(|e| e.position) else {
            continue;
        };
        // Only a mission that waits for approval, or did within these appends (its request
        // may have just closed), or just failed or was cancelled (a deny, an expiry, a
        // cancel close its requests) can have a message to post or redraw.
        let mut missions: Vec<&str> = entries
            .iter()
            .filter(|e| {
                matches!(
                    e.status.as_str(),
                    "awaiting_approval" | "failed" | "cancelled"
                )
            })
            .map(|e| e.mission.as_str())
            .collect();
        missions.sort_unstable();
        missions.dedup();
        for mission in missions {
            if let Err(e) = sync_mission(&state, &slack, mission).await {
                (slack.report)(&format!("mission {mission}: {}", e.message));
            }
        }
        cursor = last;
    }
}

/// Posts what a mission's approvals lack and redraws what changed.
async fn sync_mission(state: &Shared, slack: &SlackChannel, id: &str) -> Result<(), AppError> {
    let mission = state.engine.load(id).await?;
    for approval in mission.approvals_in_order() {
        let approval_id = approval.request.approval_id.as_str();
        let sent = mission
            .notifications
            .iter()
            .find(|n| n.kind == APPROVAL_REQUEST && n.approval_id.as_deref() == Some(approval_id));
        let view = view_of(state, slack, &mission, approval).await;
        let message = flightdeck_slack::approval_message(&view);
        let drawn = serde_json::to_string(&message.blocks).unwrap_or_default();
        match sent {
            None if approval.status == ApprovalStatus::Pending && !mission.status.is_terminal() => {
                let channel = slack.channel_for(approval).to_string();
                let posted = slack
                    .client
                    .chat_post_message(&channel, &message.text, &message.blocks, None)
                    .await
                    .map_err(|e| AppError::failed(format!("posting {approval_id}: {e}")))?;
                slack.drawn().insert(approval_id.to_string(), drawn);
                let record = Foreign::Notification {
                    sent: NotificationSent {
                        channel: "slack".to_string(),
                        target: posted.channel,
                        reference: posted.ts,
                        kind: APPROVAL_REQUEST.to_string(),
                        approval_id: Some(approval_id.to_string()),
                    },
                };
                if let flightdeck_engine::Applied::Refused(refusal) =
                    state.engine.post(id, record).await?
                {
                    return Err(AppError::failed(format!(
                        "recording the message of {approval_id}: {refusal}"
                    )));
                }
            }
            None => {}
            Some(sent) => {
                let unchanged = slack.drawn().get(approval_id) == Some(&drawn);
                if unchanged {
                    continue;
                }
                slack
                    .client
                    .chat_update(
                        &sent.target,
                        &sent.reference,
                        &message.text,
                        &message.blocks,
                    )
                    .await
                    .map_err(|e| AppError::failed(format!("updating {approval_id}: {e}")))?;
                slack.drawn().insert(approval_id.to_string(), drawn);
            }
        }
    }
    Ok(())
}

/// What an approval's message shows, from the mission and the approval's context bundle.
async fn view_of(
    state: &Shared,
    slack: &SlackChannel,
    mission: &MissionState,
    approval: &ApprovalProgress,
) -> ApprovalRequestView {
    let bundle: Option<Value> = state
        .engine
        .config()
        .artifacts
        .get(&approval.request.bundle)
        .await
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let text = |pointer: &str| {
        bundle
            .as_ref()
            .and_then(|b| b.pointer(pointer))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let number = |value: &Value, key: &str| value.get(key).and_then(Value::as_u64).unwrap_or(0);
    let files: Vec<ChangedFile> = bundle
        .as_ref()
        .and_then(|b| b.get("files"))
        .and_then(Value::as_array)
        .map(|files| {
            files
                .iter()
                .map(|f| ChangedFile {
                    path: f
                        .get("path")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    insertions: number(f, "added"),
                    deletions: number(f, "removed"),
                })
                .collect()
        })
        .unwrap_or_default();
    let summary = mission.summary_view();
    let created = mission.created.as_ref();
    let approved_by: Vec<String> = approval
        .approved_by()
        .into_iter()
        .map(str::to_string)
        .collect();
    let status = match approval.status {
        ApprovalStatus::Pending => flightdeck_slack::blocks::ApprovalStatus::Open,
        ApprovalStatus::Approved => flightdeck_slack::blocks::ApprovalStatus::Closed {
            why: CloseReason::Approved,
        },
        ApprovalStatus::Denied => flightdeck_slack::blocks::ApprovalStatus::Closed {
            why: CloseReason::Denied {
                by: approval
                    .votes
                    .iter()
                    .rev()
                    .find(|v| v.decided.decision == "deny")
                    .map(|v| v.decided.by.clone())
                    .unwrap_or_default(),
            },
        },
        ApprovalStatus::Expired => flightdeck_slack::blocks::ApprovalStatus::Closed {
            why: CloseReason::Expired,
        },
        ApprovalStatus::Superseded => flightdeck_slack::blocks::ApprovalStatus::Closed {
            why: CloseReason::VoidedByNewDiff,
        },
        ApprovalStatus::Withdrawn => flightdeck_slack::blocks::ApprovalStatus::Closed {
            why: CloseReason::Withdrawn,
        },
    };
    ApprovalRequestView {
        approval_id: approval.request.approval_id.clone(),
        mission_id: mission.id.clone(),
        title: text("/title").unwrap_or_else(|| mission.id.clone()),
        template: created.map(|c| c.template.clone()).unwrap_or_default(),
        requester: created.map(|c| c.requested_by.clone()).unwrap_or_default(),
        risk_tier: approval.request.tier.clone(),
        rules: approval
            .request
            .rule_ids
            .iter()
            .map(|id| FiredRule {
                id: id.clone(),
                why: text("/decision/explanation").unwrap_or_default(),
            })
            .collect(),
        approvers: Approvers {
            people: approval
                .request
                .eligible
                .iter()
                .filter(|e| !approval.request.teams.contains_key(*e))
                .cloned()
                .collect(),
            teams: approval.request.teams.keys().cloned().collect(),
            required: approval.request.required,
            approved_by,
        },
        diffstat: DiffStat {
            files_changed: files.len() as u64,
            insertions: files.iter().map(|f| f.insertions).sum(),
            deletions: files.iter().map(|f| f.deletions).sum(),
            top_files: files,
        },
        // The last check's commands.
        acceptance: mission
            .acceptance
            .last()
            .map(|check| {
                check
                    .results
                    .iter()
                    .map(|r| AcceptanceResult {
                        name: r.command.clone(),
                        passed: r.passed,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        blocked_egress: Vec::new(),
        // The limited dimensions.
        budget: summary
            .budget
            .dimensions()
            .into_iter()
            .filter_map(|(dimension, d)| {
                let limit = d.limit?;
                Some(BudgetLine {
                    dimension: dimension.as_str().to_string(),
                    used: format!("{}", d.used.as_f64()),
                    limit: format!("{limit}"),
                    remaining: format!("{}", d.remaining().unwrap_or(0.0)),
                })
            })
            .collect(),
        mission_url: format!("{}/missions/{}", slack.public_url, mission.id),
        pr_url: None,
        status,
    }
}

/// `POST /slack/actions`: an Approve or Deny click (HTTP mode). Answers 200 once the
/// decision is recorded or refused (Slack shows nothing for a 200 with no body); 401 for a
/// request whose signature does not check out, before its body is read.
pub async fn actions(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(slack) = state.slack.clone() else {
        return (StatusCode::NOT_FOUND, "slack is not configured").into_response();
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let now = flightdeck_engine::Clock::now_ms(&flightdeck_engine::SystemClock) / 1000;
    let secret = slack.signing_secret.as_deref().unwrap_or_default();
    if let Err(e) = flightdeck_slack::verify(
        secret,
        &header("x-slack-request-timestamp"),
        &header("x-slack-signature"),
        &body,
        now,
    ) {
        return (StatusCode::UNAUTHORIZED, e.to_string()).into_response();
    }
    let click = match flightdeck_slack::parse_approval_click(&body) {
        Ok(click) => click,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let vote = Vote {
        approval_id: click.approval_id.clone(),
        by: click.user_id.clone(),
        approve: click.approve,
        comment: None,
        channel: Channel::Slack,
    };
    let refusal = match state.engine.decide_approval(vote).await {
        Ok(_) => None,
        Err(e) => Some(AppError::from(e)),
    };
    if let Some(refusal) = refusal {
        let text = match &refusal.hint {
            Some(hint) => format!("Nothing was recorded: {}\n{hint}", refusal.message),
            None => format!("Nothing was recorded: {}", refusal.message),
        };
        if let Err(e) = slack
            .client
            .chat_post_ephemeral(&click.channel_id, &click.user_id, &text)
            .await
        {
            (slack.report)(&format!("telling {} why: {e}", click.user_id));
        }
    }
    // The message is redrawn by the notifier, which the decision's append wakes.
    StatusCode::OK.into_response()
}
