//! What reaches a mission from outside its driver, and what it becomes.
//!
//! A vote on an approval, a budget raise and a cancel are [`Foreign`] inputs: posted to the
//! mission's inbox (or handed to the driver in this process), checked here against the
//! mission as it stands when the driver takes them in, and recorded by the driver, or
//! refused with the reason and nothing recorded. The same check runs before an input is
//! posted, so a refusal that can be told at once is told at once.

use flightdeck_core::budget::Dimension;
use flightdeck_core::event::{
    ApprovalDecided, ApprovalExpired, BudgetRaised, DecisionActor, MissionError, MissionFinished,
};
use flightdeck_core::state::{ApprovalProgress, ApprovalStatus};
use flightdeck_core::{EventKind, MissionState, MissionStatus};
use flightdeck_policy::{ApprovalContext, ApprovalRequirement, IdentityChannel, Teams};
use flightdeck_store::InputRow;
use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use crate::gate::Gates;
pub use crate::people::Channel;
use crate::people::{Directory, Resolved};

/// Someone's decision on an approval, as a channel delivers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vote {
    pub approval_id: String,
    /// The identity as the channel gave it (`--as`, a Slack user id, a GitHub login).
    pub by: String,
    pub approve: bool,
    pub comment: Option<String>,
    pub channel: Channel,
    /// An email address the channel vouches for, for a Slack user `[people] slack` does
    /// not list: Slack's `users.info`, asked only when `[slack] resolve_by_email` allows
    /// it. The person it names decides, recorded as resolved by `slack.email`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vouched_email: Option<String>,
}

/// An input from outside a mission's driver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Foreign {
    Vote(Vote),
    BudgetRaise {
        by: String,
        adds: Vec<(String, f64)>,
    },
    Cancel {
        by: String,
    },
    /// A message sent about the mission (`notification.sent`), recorded by its driver like
    /// any input so the one writer stays the one writer. (A field, not the variant's
    /// content: the event has a `kind` of its own, which the tag would collide with.)
    Notification {
        sent: flightdeck_core::event::NotificationSent,
    },
}

impl Foreign {
    /// The inbox's `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Foreign::Vote(_) => "vote",
            Foreign::BudgetRaise { .. } => "budget_raise",
            Foreign::Cancel { .. } => "cancel",
            Foreign::Notification { .. } => "notification",
        }
    }

    /// The inbox's payload.
    pub fn payload(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// An input read back from the inbox.
    pub fn from_row(row: &InputRow) -> Result<Foreign, serde_json::Error> {
        serde_json::from_value(row.payload.clone())
    }
}

/// Why an input was refused (nothing was recorded).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    #[error("no approval `{0}`")]
    UnknownApproval(String),
    #[error("{id} is already {status}; nothing to decide (mission {mission})")]
    ApprovalClosed {
        id: String,
        status: String,
        mission: String,
    },
    #[error("{by} may not decide {id}: {reason}")]
    NotEligible {
        id: String,
        by: String,
        reason: String,
    },
    #[error("mission {id} has already finished ({status})")]
    AlreadyFinished { id: String, status: MissionStatus },
    #[error("cannot raise the budget of {id}: {reason}")]
    BadBudget { id: String, reason: String },
    #[error("{0}")]
    Other(String),
}

impl From<Refusal> for EngineError {
    fn from(refusal: Refusal) -> EngineError {
        match refusal {
            Refusal::UnknownApproval(id) => EngineError::UnknownApproval(id),
            Refusal::ApprovalClosed {
                id,
                status,
                mission,
            } => EngineError::ApprovalClosed {
                id,
                status,
                mission,
            },
            Refusal::NotEligible { id, by, reason } => {
                EngineError::ApprovalRefused { id, by, reason }
            }
            Refusal::AlreadyFinished { id, status } => EngineError::AlreadyFinished { id, status },
            Refusal::BadBudget { id, reason } => EngineError::BadBudget { id, reason },
            Refusal::Other(reason) => EngineError::Refused(reason),
        }
    }
}

/// The events an input leads to on `state` at `now_ms`, or why it is refused.
pub fn apply(
    state: &MissionState,
    gates: &Gates,
    people: &Directory,
    foreign: &Foreign,
    now_ms: i64,
) -> Result<Vec<EventKind>, Refusal> {
    match foreign {
        Foreign::Vote(vote) => vote_events(state, gates, people, vote, now_ms),
        Foreign::BudgetRaise { by, adds } => raise_events(state, by, adds),
        Foreign::Notification { sent } => {
            if state.status.is_terminal() {
                return Err(Refusal::AlreadyFinished {
                    id: state.id.clone(),
                    status: state.status,
                });
            }
            Ok(vec![EventKind::NotificationSent(sent.clone())])
        }
        Foreign::Cancel { by } => {
            if state.status.is_terminal() {
                return Err(Refusal::AlreadyFinished {
                    id: state.id.clone(),
                    status: state.status,
                });
            }
            Ok(vec![EventKind::MissionFinished(MissionFinished {
                status: MissionStatus::Cancelled,
                error: Some(MissionError {
                    kind: "cancelled".into(),
                    message: format!("cancelled by {by}"),
                }),
                summary: None,
            })])
        }
    }
}

fn vote_events(
    state: &MissionState,
    gates: &Gates,
    people: &Directory,
    vote: &Vote,
    now_ms: i64,
) -> Result<Vec<EventKind>, Refusal> {
    let approval_id = vote.approval_id.trim();
    let approval: &ApprovalProgress = state
        .approvals
        .get(approval_id)
        .ok_or_else(|| Refusal::UnknownApproval(approval_id.to_string()))?;
    let expired = approval.status == ApprovalStatus::Pending
        && approval.expires_at_ms().is_some_and(|at| at <= now_ms);
    if approval.status != ApprovalStatus::Pending || expired {
        return Err(Refusal::ApprovalClosed {
            id: approval_id.to_string(),
            status: if expired {
                ApprovalStatus::Expired.to_string()
            } else {
                approval.status.to_string()
            },
            mission: state.id.clone(),
        });
    }
    let created = state
        .created
        .as_ref()
        .ok_or_else(|| Refusal::UnknownApproval(approval_id.to_string()))?;
    let requirement = ApprovalRequirement {
        approvers: approval.request.approvers.clone(),
        changed_paths: approval.request.changed_paths.clone(),
    };
    let already: Vec<String> = approval
        .decided_by()
        .into_iter()
        .map(str::to_string)
        .collect();
    let teams = Teams::new(approval.request.teams.clone());
    let ctx = ApprovalContext {
        requester: &created.requested_by,
        allow_self_approval: gates.policy.allow_self_approval(),
        codeowners: gates.codeowners.as_ref(),
        teams: &teams,
        already_approved_by: &already,
    };
    // A Slack user no person lists by id may be known by the email Slack vouched for.
    let (identity, channel) = match (&vote.vouched_email, vote.channel) {
        (Some(email), Channel::Slack)
            if people
                .0
                .resolve(&vote.by, IdentityChannel::Slack)
                .person
                .is_none() =>
        {
            (email.as_str(), IdentityChannel::SlackEmail)
        }
        _ => (
            vote.by.as_str(),
            crate::people::identity_channel(vote.channel),
        ),
    };
    let mut resolved: Resolved = people
        .0
        .check_approver(
            identity,
            channel,
            &requirement,
            &ctx,
            gates.policy.allow_unknown_approvers(),
        )
        .map_err(|refusal| Refusal::NotEligible {
            id: approval_id.to_string(),
            by: vote.by.clone(),
            reason: refusal.to_string(),
        })?;
    // A fork runs for whoever forked it, though it keeps the origin's `mission.created`:
    // they may not approve it either (unless the policy allows self-approval).
    if let Some(forked) = &state.forked {
        let as_forker = ApprovalContext {
            requester: &forked.by,
            allow_self_approval: ctx.allow_self_approval,
            codeowners: ctx.codeowners,
            teams: ctx.teams,
            already_approved_by: ctx.already_approved_by,
        };
        people
            .0
            .check_approver(
                identity,
                channel,
                &requirement,
                &as_forker,
                gates.policy.allow_unknown_approvers(),
            )
            .map_err(|refusal| Refusal::NotEligible {
                id: approval_id.to_string(),
                by: vote.by.clone(),
                reason: format!("{refusal} (they forked this mission)"),
            })?;
    }
    if channel == IdentityChannel::SlackEmail {
        // Recorded as who clicked, with the address that named them.
        resolved.channel_user = vote.by.trim().to_string();
    }
    let decision = if vote.approve { "approve" } else { "deny" };
    let by = resolved.handle.clone();
    let mut events = vec![EventKind::ApprovalDecided(ApprovalDecided {
        approval_id: approval_id.to_string(),
        by: by.clone(),
        decision: decision.to_string(),
        channel: vote.channel.as_str().to_string(),
        comment: vote.comment.clone(),
        policy_hash: created.policy_hash.clone(),
        diff_hash: approval.request.diff_hash.clone(),
        actor: Some(DecisionActor {
            email: (channel == IdentityChannel::SlackEmail).then(|| identity.trim().to_string()),
            ..crate::people::actor(&resolved)
        }),
    })];
    if !vote.approve {
        let comment = vote
            .comment
            .as_deref()
            .filter(|c| !c.trim().is_empty())
            .map(|c| format!(": {}", c.trim()))
            .unwrap_or_default();
        events.push(EventKind::MissionFinished(MissionFinished {
            status: MissionStatus::Failed,
            error: Some(MissionError {
                kind: "approval_denied".into(),
                message: format!(
                    "{} ({} gate) was denied by {}{comment}",
                    approval_id, approval.request.gate, by
                ),
            }),
            summary: None,
        }));
    }
    Ok(events)
}

/// `budget.raised` for each `(dimension, amount)`. Refused for a finished mission, an
/// unknown dimension, a dimension the template does not limit, or an amount that is not
/// positive (or not whole, except `usd`).
fn raise_events(
    state: &MissionState,
    by: &str,
    adds: &[(String, f64)],
) -> Result<Vec<EventKind>, Refusal> {
    let bad = |reason: String| Refusal::BadBudget {
        id: state.id.clone(),
        reason,
    };
    if adds.is_empty() {
        return Err(bad("nothing to add".into()));
    }
    if state.status.is_terminal() {
        return Err(Refusal::AlreadyFinished {
            id: state.id.clone(),
            status: state.status,
        });
    }
    let mut events = Vec::with_capacity(adds.len());
    for (name, amount) in adds {
        let dimension = Dimension::parse(name).ok_or_else(|| {
            bad(format!(
                "`{name}` is not a budget dimension (usd, tokens, tool_calls, model_calls, wall_seconds)"
            ))
        })?;
        if !(amount.is_finite() && *amount > 0.0) {
            return Err(bad(format!("{name}={amount}: the amount must be positive")));
        }
        if dimension.is_integral() && amount.fract() != 0.0 {
            return Err(bad(format!("{name}={amount}: {name} counts whole units")));
        }
        if state.budget_limit(dimension).is_none() {
            return Err(bad(format!(
                "the template sets no `{name}` limit, so there is nothing to raise"
            )));
        }
        events.push(EventKind::BudgetRaised(BudgetRaised {
            by: by.to_string(),
            dimension: name.clone(),
            amount: *amount,
        }));
    }
    Ok(events)
}

/// The expiry of every pending approval whose time ran out at `now_ms`, and the mission's
/// failure (an expired approval counts as a deny); `None` when nothing is due.
pub fn expiries(state: &MissionState, now_ms: i64) -> Option<Vec<EventKind>> {
    if state.status.is_terminal() {
        return None;
    }
    let due = state.due_expiries(now_ms);
    if due.is_empty() {
        return None;
    }
    let mut events: Vec<EventKind> = Vec::new();
    let mut named = Vec::new();
    for approval in &due {
        let secs = approval.request.expires_after_seconds.unwrap_or(0);
        events.push(EventKind::ApprovalExpired(ApprovalExpired {
            approval_id: approval.request.approval_id.clone(),
            expires_after_seconds: secs,
        }));
        named.push(format!(
            "{} ({} gate, {} of {} approvals) was not granted within {secs} s",
            approval.request.approval_id,
            approval.request.gate,
            approval.approved_by().len(),
            approval.request.required
        ));
    }
    events.push(EventKind::MissionFinished(MissionFinished {
        status: MissionStatus::Failed,
        error: Some(MissionError {
            kind: "approval_expired".into(),
            message: format!("{}; an expired approval counts as a deny", named.join("; ")),
        }),
        summary: None,
    }));
    Some(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every input reads back from the inbox as it was posted (a variant whose content had
    /// a field named like the tag once could not).
    #[test]
    fn inputs_read_back_from_the_inbox_as_posted() {
        let inputs = [
            Foreign::Vote(Vote {
                approval_id: "a-1".into(),
                by: "UBOB".into(),
                approve: true,
                comment: None,
                channel: Channel::Slack,
                vouched_email: None,
            }),
            Foreign::BudgetRaise {
                by: "@carol".into(),
                adds: vec![("usd".into(), 1.5)],
            },
            Foreign::Cancel {
                by: "@carol".into(),
            },
            Foreign::Notification {
                sent: flightdeck_core::event::NotificationSent {
                    channel: "slack".into(),
                    target: "C1".into(),
                    reference: "1700000000.000100".into(),
                    kind: "approval_request".into(),
                    approval_id: Some("a-1".into()),
                    digest: None,
                    about: None,
                },
            },
        ];
        for input in inputs {
            let row = InputRow {
                id: 1,
                mission: "m".into(),
                kind: input.kind().into(),
                payload: input.payload(),
                posted_at_ms: 0,
                state: flightdeck_store::InputState::Pending,
            };
            let back = Foreign::from_row(&row).unwrap_or_else(|e| panic!("{}: {e}", input.kind()));
            assert_eq!(back, input);
        }
    }
}
