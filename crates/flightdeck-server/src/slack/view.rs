//! What the Slack messages say, from a mission's state: the approval request (drawn by
//! `flightdeck_slack::approval_message`), the reminder, and the statuses in the thread.

use flightdeck_core::state::{ApprovalProgress, ApprovalStatus};
use flightdeck_core::MissionState;
use flightdeck_engine::Channel;
use flightdeck_slack::blocks::{
    escape, AcceptanceResult, ApprovalRequestView, Approvers, BudgetLine, ChangedFile, CloseReason,
    DiffStat, FiredRule,
};
use serde_json::Value;

use super::SlackChannel;
use crate::routes::Shared;

/// What an approval's message shows, from the mission and the approval's context bundle.
pub(super) async fn view_of(
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
        pr_url: mission.published.as_ref().and_then(|p| p.pr_url.clone()),
        status,
    }
}

/// A Slack mention of each eligible approver who has not decided yet (their `[people]
/// slack` id), else their handle: who a reminder is for.
pub(super) fn waiting_for(state: &Shared, approval: &ApprovalProgress) -> Vec<String> {
    let people = &state.engine.config().people;
    let decided = approval.decided_by();
    approval
        .request
        .eligible
        .iter()
        .filter(|handle| !approval.request.teams.contains_key(*handle))
        .chain(approval.request.teams.values().flatten())
        .filter(|handle| !decided.iter().any(|d| d.eq_ignore_ascii_case(handle)))
        .map(|handle| {
            let resolved = people.resolve(handle, Channel::Cli);
            match resolved.person.and_then(|p| p.slack) {
                Some(id) => format!("<@{}>", escape(&id)),
                None => escape(handle),
            }
        })
        .fold(Vec::new(), |mut all, who| {
            if !all.contains(&who) {
                all.push(who);
            }
            all
        })
}

/// The reminder posted in a request's thread before it expires.
pub(super) fn reminder(
    approval: &ApprovalProgress,
    waiting_for: &[String],
    expires_in_ms: i64,
) -> String {
    let minutes = (expires_in_ms.max(0) + 59_999) / 60_000;
    let approved = approval.approved_by().len();
    let mut text = format!(
        ":alarm_clock: This approval expires in {minutes} min ({approved} of {} approved so far).",
        approval.request.required
    );
    if !waiting_for.is_empty() {
        text.push_str(&format!(" Waiting for {}.", waiting_for.join(", ")));
    }
    text
}

/// What a mission's status says in its request's thread.
pub(super) enum Status<'a> {
    /// Blocked by its budget (or a team's quota) or a breaker: the `budget.exceeded` or
    /// `breaker.tripped` event's data.
    Blocked {
        kind: &'a str,
        data: &'a Value,
    },
    Failed,
    Cancelled,
    Published,
}

impl Status<'_> {
    /// `notification.sent.kind`.
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Status::Blocked { .. } => "blocked",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
            Status::Published => "published",
        }
    }
}

/// The thread reply for `status`.
pub(super) fn status_text(slack: &SlackChannel, mission: &MissionState, status: &Status) -> String {
    let page = format!(
        "<{}/missions/{}|mission page>",
        slack.public_url, mission.id
    );
    let error = mission
        .error
        .as_ref()
        .map(|e| escape(&e.message))
        .unwrap_or_default();
    match status {
        Status::Blocked { kind, data } if *kind == "budget.exceeded" => {
            let dimension = data
                .get("dimension")
                .and_then(Value::as_str)
                .unwrap_or("usd");
            let raise = match data.get("team").and_then(Value::as_str) {
                Some(team) => format!(
                    "The team {}'s monthly quota is spent: an admin raises it in `[quotas]`.",
                    escape(team)
                ),
                None => format!(
                    "Raise the budget and it goes on: `flightdeck budget {} --add {}=AMOUNT`.",
                    mission.id,
                    escape(dimension)
                ),
            };
            format!(":warning: Blocked: {error}\n{raise} · {page}")
        }
        Status::Blocked { .. } => format!(
            ":warning: Blocked: {error}\nLook at it, then `flightdeck resume {}`. · {page}",
            mission.id
        ),
        Status::Failed => format!(":x: Failed: {error} · {page}"),
        Status::Cancelled => format!(":no_entry_sign: {error} · {page}"),
        Status::Published => {
            let Some(published) = &mission.published else {
                return format!(":white_check_mark: Published · {page}");
            };
            let commit: String = published.commit.chars().take(12).collect();
            let pr = published
                .pr_url
                .as_ref()
                .map(|url| format!(" · <{}|pull request>", escape(url)))
                .unwrap_or_default();
            format!(
                ":white_check_mark: Published `{}` ({commit}){pr} · {page}",
                escape(&published.branch)
            )
        }
    }
}

/// Whether an approval's message still takes clicks.
pub(super) fn is_open(approval: &ApprovalProgress) -> bool {
    approval.status == ApprovalStatus::Pending
}
