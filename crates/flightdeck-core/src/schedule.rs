//! What a scheduler needs to know of a mission, read off its state: whether a worker can
//! make progress on it without anyone's input, what it waits for, and its next deadline.
//! The store keeps these as typed columns of the mission's row, so claiming work never
//! parses summaries.

use crate::state::{ApprovalStatus, MissionState, MissionStatus};

/// A mission's scheduling facts after its last event.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// A worker holding no lease on it can drive it on: it was queued and never started,
    /// its driver died (or handed it back), its approvals are all granted, or its budget
    /// was raised after it blocked.
    pub ready: bool,
    /// What it waits for when not ready and not finished: `approval`, `budget_raise`,
    /// `resume` (a breaker tripped, or an interruption no one handed back).
    pub waiting_for: Option<&'static str>,
    /// The earliest moment something fires by itself (an approval's expiry), in ms.
    pub next_deadline_ms: Option<i64>,
}

impl Schedule {
    pub fn of(state: &MissionState) -> Schedule {
        let ready = can_go_on_by_itself(state);
        let waiting_for = if ready || state.status.is_terminal() {
            None
        } else {
            Some(match state.status {
                MissionStatus::AwaitingApproval => "approval",
                MissionStatus::Blocked
                    if state
                        .error
                        .as_ref()
                        .is_some_and(|e| e.kind == "budget_exceeded") =>
                {
                    "budget_raise"
                }
                _ => "resume",
            })
        };
        let next_deadline_ms = if state.status.is_terminal() {
            None
        } else {
            state
                .pending_approvals()
                .filter_map(|a| a.expires_at_ms())
                .min()
        };
        Schedule {
            ready,
            waiting_for,
            next_deadline_ms,
        }
    }
}

/// Whether a worker may drive the mission on now (see [`Schedule::ready`]).
pub fn can_go_on_by_itself(state: &MissionState) -> bool {
    match state.status {
        MissionStatus::Queued => true,
        // Nobody says it stopped: its driver died. Stopped by a shutdown: only when the
        // worker handed it back (someone who pressed ctrl-c resumes it themselves).
        MissionStatus::Provisioning | MissionStatus::Running => !state.halted || state.handed_back,
        MissionStatus::AwaitingApproval => {
            state.pending_approvals().next().is_none()
                && state
                    .approvals
                    .values()
                    .any(|a| a.status == ApprovalStatus::Approved)
        }
        MissionStatus::Blocked => {
            state
                .error
                .as_ref()
                .is_some_and(|e| e.kind == "budget_exceeded")
                && state.budget_raised_since_block
        }
        MissionStatus::Succeeded | MissionStatus::Failed | MissionStatus::Cancelled => false,
    }
}
