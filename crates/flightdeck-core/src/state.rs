//! A mission's state is a pure fold over its events. The same fold serves the engine (what to
//! do next), the CLI (`show`) and the store's summary projection.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::event::*;
use crate::hash::{Digest, GENESIS_HASH};

/// Where a mission is in its life (CONTRACT.md, "Mission summary").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissionStatus {
    Queued,
    Provisioning,
    Running,
    AwaitingApproval,
    Blocked,
    Succeeded,
    Failed,
    Cancelled,
}

impl MissionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MissionStatus::Queued => "queued",
            MissionStatus::Provisioning => "provisioning",
            MissionStatus::Running => "running",
            MissionStatus::AwaitingApproval => "awaiting_approval",
            MissionStatus::Blocked => "blocked",
            MissionStatus::Succeeded => "succeeded",
            MissionStatus::Failed => "failed",
            MissionStatus::Cancelled => "cancelled",
        }
    }

    /// A finished mission never changes again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            MissionStatus::Succeeded | MissionStatus::Failed | MissionStatus::Cancelled
        )
    }

    /// Parked: waiting for a person, holding no process.
    pub fn is_parked(self) -> bool {
        matches!(
            self,
            MissionStatus::AwaitingApproval | MissionStatus::Blocked
        )
    }
}

impl std::fmt::Display for MissionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A timeline that breaks the rules of the state machine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FoldError {
    #[error("seq {seq}: expected seq {expected} (the timeline has a gap or a repeat)")]
    Gap { seq: u64, expected: u64 },
    #[error("seq {seq}: prev_hash does not match the hash of seq {}", seq - 1)]
    BrokenLink { seq: u64 },
    #[error("seq {seq}: the first event must be mission.created, found {found}")]
    NotCreatedFirst { seq: u64, found: String },
    #[error("seq {seq}: mission.created may only be the first event")]
    CreatedTwice { seq: u64 },
    #[error("seq {seq}: {found} after mission.finished")]
    AfterFinish { seq: u64, found: String },
    #[error("seq {seq}: {detail}")]
    Inconsistent { seq: u64, detail: String },
    #[error("seq {seq}: {message}")]
    Undecodable { seq: u64, message: String },
}

/// How far a step got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepProgress {
    pub kind: StepKind,
    pub description: String,
    /// `None` while running (or interrupted).
    pub status: Option<StepStatus>,
}

/// A tool call and, once it completed, its result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallProgress {
    pub requested: ToolRequested,
    pub completed: Option<ToolCompleted>,
}

/// Everything the timeline says about a mission.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MissionState {
    pub id: String,
    pub created: Option<MissionCreated>,
    pub status: MissionStatus,
    pub workspace: Option<WorkspaceProvisioned>,
    pub steps: BTreeMap<usize, StepProgress>,
    pub tool_calls: BTreeMap<String, ToolCallProgress>,
    pub published: Option<ChangePublished>,
    pub finished: Option<MissionFinished>,
    pub error: Option<MissionError>,
    /// Events folded so far (= the seq of the last one).
    pub events: u64,
    pub head_hash: String,
    pub first_at_ms: i64,
    pub last_at_ms: i64,
    /// The worktree's tree after the last completed tool call that recorded one.
    pub last_tree: Option<String>,
    pub interruptions: u32,
    pub model_calls: u64,
    pub tokens: u64,
    pub cost_usd: f64,
    pub budget_raised: BTreeMap<String, f64>,
}

impl MissionState {
    pub fn new(id: &str) -> MissionState {
        MissionState {
            id: id.to_string(),
            created: None,
            status: MissionStatus::Queued,
            workspace: None,
            steps: BTreeMap::new(),
            tool_calls: BTreeMap::new(),
            published: None,
            finished: None,
            error: None,
            events: 0,
            head_hash: GENESIS_HASH.to_string(),
            first_at_ms: 0,
            last_at_ms: 0,
            last_tree: None,
            interruptions: 0,
            model_calls: 0,
            tokens: 0,
            cost_usd: 0.0,
            budget_raised: BTreeMap::new(),
        }
    }

    /// Folds a whole stored timeline, checking seq continuity and hash links.
    pub fn fold(id: &str, events: &[StoredEvent]) -> Result<MissionState, FoldError> {
        let mut state = MissionState::new(id);
        for event in events {
            state.apply_stored(event)?;
        }
        Ok(state)
    }

    /// Applies one stored event (checks its seq and its link to the previous hash).
    pub fn apply_stored(&mut self, event: &StoredEvent) -> Result<(), FoldError> {
        if event.prev_hash != self.head_hash {
            return Err(FoldError::BrokenLink { seq: event.seq });
        }
        let kind = event.kind().map_err(|e| FoldError::Undecodable {
            seq: event.seq,
            message: e.to_string(),
        })?;
        self.apply(event.seq, event.at_millis(), &kind)?;
        self.head_hash = event.hash.clone();
        Ok(())
    }

    /// Applies an event that is about to be appended as `seq` at `at_ms`. The head hash is
    /// the store's to compute; it is not touched here.
    pub fn apply(&mut self, seq: u64, at_ms: i64, kind: &EventKind) -> Result<(), FoldError> {
        let expected = self.events + 1;
        if seq != expected {
            return Err(FoldError::Gap { seq, expected });
        }
        let found = || kind.type_name().to_string();
        if seq == 1 && !matches!(kind, EventKind::MissionCreated(_)) {
            return Err(FoldError::NotCreatedFirst {
                seq,
                found: found(),
            });
        }
        if self.finished.is_some() {
            return Err(FoldError::AfterFinish {
                seq,
                found: found(),
            });
        }
        let inconsistent = |detail: String| FoldError::Inconsistent { seq, detail };
        match kind {
            EventKind::MissionCreated(created) => {
                if seq != 1 {
                    return Err(FoldError::CreatedTwice { seq });
                }
                self.created = Some(created.clone());
                self.status = MissionStatus::Queued;
                self.first_at_ms = at_ms;
            }
            EventKind::WorkspaceProvisioning(_) => self.status = MissionStatus::Provisioning,
            EventKind::WorkspaceProvisioned(ws) => {
                self.workspace = Some(ws.clone());
                self.status = MissionStatus::Running;
            }
            EventKind::StepStarted(step) => {
                if self
                    .steps
                    .get(&step.index)
                    .is_some_and(|s| s.status.is_some())
                {
                    return Err(inconsistent(format!(
                        "step {} started again after it finished",
                        step.index
                    )));
                }
                self.steps.insert(
                    step.index,
                    StepProgress {
                        kind: step.kind,
                        description: step.description.clone(),
                        status: None,
                    },
                );
                self.status = MissionStatus::Running;
            }
            EventKind::StepFinished(step) => {
                let progress = self.steps.get_mut(&step.index).ok_or_else(|| {
                    inconsistent(format!("step {} finished but never started", step.index))
                })?;
                progress.status = Some(step.status);
            }
            EventKind::ToolRequested(call) => {
                if self
                    .tool_calls
                    .get(&call.call_id)
                    .is_some_and(|c| c.completed.is_some())
                {
                    return Err(inconsistent(format!(
                        "tool call {} requested again after it completed",
                        call.call_id
                    )));
                }
                // A re-request of an interrupted call replaces the old request.
                self.tool_calls.insert(
                    call.call_id.clone(),
                    ToolCallProgress {
                        requested: call.clone(),
                        completed: None,
                    },
                );
            }
            EventKind::ToolCompleted(done) => {
                let call = self.tool_calls.get_mut(&done.call_id).ok_or_else(|| {
                    inconsistent(format!(
                        "tool call {} completed but was never requested",
                        done.call_id
                    ))
                })?;
                if call.completed.is_some() {
                    return Err(inconsistent(format!(
                        "tool call {} completed twice",
                        done.call_id
                    )));
                }
                call.completed = Some(done.clone());
                if let Some(tree) = &done.tree {
                    self.last_tree = Some(tree.clone());
                }
            }
            EventKind::ModelRequested(_) => self.model_calls += 1,
            EventKind::ModelResponded(r) => {
                self.tokens += r.input_tokens + r.output_tokens;
                self.cost_usd += r.cost_usd;
            }
            EventKind::ApprovalRequested(_) => self.status = MissionStatus::AwaitingApproval,
            EventKind::BudgetExceeded(_) | EventKind::BreakerTripped(_) => {
                self.status = MissionStatus::Blocked
            }
            EventKind::BudgetRaised(raised) => {
                *self
                    .budget_raised
                    .entry(raised.dimension.clone())
                    .or_default() += raised.amount;
            }
            EventKind::ChangePublished(published) => self.published = Some(published.clone()),
            EventKind::MissionInterrupted(_) => self.interruptions += 1,
            EventKind::MissionResumed(_) => self.status = MissionStatus::Running,
            EventKind::MissionFinished(finished) => {
                if !finished.status.is_terminal() {
                    return Err(inconsistent(format!(
                        "mission.finished with non-final status {}",
                        finished.status
                    )));
                }
                self.status = finished.status;
                self.error = finished.error.clone();
                self.finished = Some(finished.clone());
            }
            EventKind::WorkspaceDrift(_)
            | EventKind::ModelFailed(_)
            | EventKind::ModelFallback(_)
            | EventKind::PolicyDecided(_)
            | EventKind::ApprovalDecided(_)
            | EventKind::AcceptanceChecked(_) => {}
        }
        self.events = seq;
        self.last_at_ms = at_ms;
        Ok(())
    }

    /// Tool calls made so far (every request counts, interrupted ones too).
    pub fn tool_call_count(&self) -> u64 {
        self.tool_calls.len() as u64
    }

    /// The `budget` object of the summary: used and limit per dimension.
    fn budget_json(&self) -> Value {
        let limits = self
            .created
            .as_ref()
            .map(|c| c.budget.clone())
            .unwrap_or_default();
        let raised = |dim: &str| self.budget_raised.get(dim).copied().unwrap_or(0.0);
        let limit_f = |l: Option<f64>, dim: &str| l.map(|l| json!(l + raised(dim)));
        let limit_u = |l: Option<u64>, dim: &str| l.map(|l| json!(l as f64 + raised(dim)));
        let wall = ((self.last_at_ms - self.first_at_ms).max(0) / 1000) as u64;
        json!({
            "usd": {"used": self.cost_usd, "limit": limit_f(limits.usd, "usd")},
            "tokens": {"used": self.tokens, "limit": limit_u(limits.tokens, "tokens")},
            "tool_calls": {"used": self.tool_call_count(), "limit": limit_u(limits.tool_calls, "tool_calls")},
            "model_calls": {"used": self.model_calls, "limit": limit_u(limits.model_calls, "model_calls")},
            "wall_seconds": {"used": wall, "limit": limit_u(limits.wall_seconds, "wall_seconds")},
        })
    }

    /// The mission summary of CONTRACT.md, plus `steps`, `created_at` and `updated_at`.
    pub fn summary(&self) -> Value {
        let created = self.created.as_ref();
        let published = self.published.as_ref();
        let mut artifacts = serde_json::Map::new();
        if let Some(p) = published {
            artifacts.insert("patch".into(), json!(p.patch));
            artifacts.insert("pr_description".into(), json!(p.pr_description));
        }
        let steps: Vec<Value> = self
            .steps
            .iter()
            .map(|(index, s)| {
                json!({
                    "index": index,
                    "kind": s.kind,
                    "description": s.description,
                    "status": s.status.map_or("running", |st| match st {
                        StepStatus::Succeeded => "succeeded",
                        StepStatus::Failed => "failed",
                    }),
                })
            })
            .collect();
        json!({
            "id": self.id,
            "template": created.map(|c| c.template.as_str()),
            "status": self.status,
            "repo": created.map(|c| c.repo.as_str()),
            "base_commit": created.map(|c| c.base_commit.as_str()),
            "branch": published.map(|p| p.branch.as_str()),
            "head_commit": published.map(|p| p.commit.as_str()),
            "requested_by": created.map(|c| c.requested_by.as_str()),
            "risk_tier": Value::Null,
            "pending_approvals": [],
            "budget": self.budget_json(),
            "events": self.events,
            "head_hash": self.head_hash,
            "artifacts": artifacts,
            "error": self.error,
            "steps": steps,
            "workspace": self.workspace.as_ref().map(|w| w.path.as_str()),
            "created_at": crate::clock::format_rfc3339_millis(self.first_at_ms),
            "updated_at": crate::clock::format_rfc3339_millis(self.last_at_ms),
        })
    }

    /// The digests of the artifacts the summary lists.
    pub fn published_artifacts(&self) -> Vec<Digest> {
        self.published
            .as_ref()
            .map(|p| vec![p.patch.clone(), p.pr_description.clone()])
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
