//! A mission's state is a pure fold over its events. The same fold serves the engine (what to
//! do next), the CLI (`show`) and the store's summary projection.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::budget::{action_fingerprint, Ledger};
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

    /// Being worked on: what the wall-time budget counts.
    pub fn is_active(self) -> bool {
        matches!(self, MissionStatus::Provisioning | MissionStatus::Running)
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
    /// The policy's decision on this call (recorded before it executes).
    pub decision: Option<PolicyDecided>,
    /// The approval the call waits for, when the decision was `approve`.
    pub approval: Option<String>,
    /// A `mission.interrupted` named this call: whatever it did was thrown away.
    pub interrupted: bool,
}

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    /// Waiting for decisions.
    Pending,
    /// Enough distinct approvals for the requested diff.
    Approved,
    /// Someone denied it: one deny rejects.
    Denied,
    /// Not granted within `expires_after_seconds`; counts as a deny.
    Expired,
    /// A newer request for the same gate replaced it (the diff changed).
    Superseded,
    /// The mission ended (cancelled, failed) before it was decided.
    Withdrawn,
}

impl ApprovalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Denied => "denied",
            ApprovalStatus::Expired => "expired",
            ApprovalStatus::Superseded => "superseded",
            ApprovalStatus::Withdrawn => "withdrawn",
        }
    }
}

impl std::fmt::Display for ApprovalStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One person's decision on an approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalVote {
    pub decided: ApprovalDecided,
    pub at_ms: i64,
}

/// An approval request and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalProgress {
    pub request: ApprovalRequested,
    pub requested_at_ms: i64,
    pub votes: Vec<ApprovalVote>,
    pub status: ApprovalStatus,
    /// When it stopped being pending.
    pub closed_at_ms: Option<i64>,
}

impl ApprovalProgress {
    /// Who approved the diff this approval was requested for, in order. A vote for any
    /// other diff does not count.
    pub fn approved_by(&self) -> Vec<&str> {
        self.votes
            .iter()
            .filter(|v| {
                v.decided.decision == "approve" && v.decided.diff_hash == self.request.diff_hash
            })
            .map(|v| v.decided.by.as_str())
            .collect()
    }

    /// Paths with code owners of which no owner has approved yet (see
    /// `ApprovalRequested::code_owners`).
    pub fn uncovered_paths(&self) -> Vec<&str> {
        let approved = self.approved_by();
        self.request
            .code_owners
            .iter()
            .filter(|(_, owners)| {
                !owners.iter().any(|owner| {
                    approved.iter().any(|who| {
                        same_person(who, owner)
                            || self.request.teams.iter().any(|(team, members)| {
                                team.eq_ignore_ascii_case(owner)
                                    && members.iter().any(|m| same_person(m, who))
                            })
                    })
                })
            })
            .map(|(path, _)| path.as_str())
            .collect()
    }

    /// Enough distinct approvals, and every owned path approved by one of its owners.
    pub fn is_satisfied(&self) -> bool {
        self.approved_by().len() >= self.request.required as usize
            && self.uncovered_paths().is_empty()
    }

    /// Everyone who decided, whatever they decided.
    pub fn decided_by(&self) -> Vec<&str> {
        self.votes.iter().map(|v| v.decided.by.as_str()).collect()
    }

    /// When a pending approval turns into a deny, if it ever does.
    pub fn expires_at_ms(&self) -> Option<i64> {
        self.request.expires_after_seconds.map(|secs| {
            self.requested_at_ms
                .saturating_add(i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX))
        })
    }

    fn close(&mut self, status: ApprovalStatus, at_ms: i64) {
        self.status = status;
        self.closed_at_ms = Some(at_ms);
    }
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
    /// Every policy decision, in order.
    pub decisions: Vec<PolicyDecided>,
    /// Approvals by id, in the order they were requested (ids sort by request order up
    /// to 9; `approval_order` keeps the exact order).
    pub approvals: BTreeMap<String, ApprovalProgress>,
    pub approval_order: Vec<String>,
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
    /// Every model call (by call id) with its attempts and answer.
    pub model_call_log: BTreeMap<String, ModelCallProgress>,
    /// Spend per model ref (`provider:model` as requested) and per role.
    pub ledger: Ledger,
    /// The agents' tool calls since the mission last started or resumed: what the breakers
    /// look at (a resume is a person's decision to go on, so it starts them afresh).
    pub recent_actions: Vec<ActionRecord>,
    /// Failed model attempts since the last answer or resume.
    pub model_failures_in_a_row: u32,
    /// The output of the planner's latest successful `finish` (its plan), kept as it comes
    /// so that the coder after it need not look through every call.
    pub plan: Option<Digest>,
    /// Milliseconds spent running (not parked) up to the last event: the wall-time budget.
    pub active_ms: i64,
    /// Every acceptance check, in order.
    pub acceptance: Vec<AcceptanceChecked>,
    /// Agents' conversation compactions, by the model call they preceded.
    pub compactions: BTreeMap<String, ContextCompacted>,
    /// Set when this mission is a fork of another.
    pub forked: Option<MissionForked>,
    /// Policy decisions by verdict, kept as they come (the summary shows them on every
    /// append, so they are not counted again each time).
    #[serde(default)]
    pub decision_counts: crate::views::DecisionCounts,
    /// The highest tier decided so far (see [`tier_rank`]).
    #[serde(default)]
    pub max_tier: Option<String>,
    /// A `budget.raised` came after the last `budget.exceeded`: a mission blocked by its
    /// budget may go on.
    #[serde(default)]
    pub budget_raised_since_block: bool,
    /// What publishing decided to commit (recorded before the branch is written).
    #[serde(default)]
    pub committing: Option<ChangeCommitting>,
    /// The change as last proposed on GitHub (`change.proposed`).
    #[serde(default)]
    pub proposed: Option<ChangeProposed>,
    /// The last `mission.interrupted` is not followed by a `mission.resumed` yet: no process
    /// drives the mission, and the time until it is resumed does not count as running.
    #[serde(default)]
    pub halted: bool,
    /// The last interruption handed the mission back to the fleet ([`MissionInterrupted::handed_back`]).
    #[serde(default)]
    pub handed_back: bool,
    /// Messages sent about the mission (Slack), in order.
    #[serde(default)]
    pub notifications: Vec<NotificationSent>,
}

/// One logical model call of an agent: its attempts (retries, fallbacks) and its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCallProgress {
    pub attempts: Vec<ModelRequested>,
    pub failures: Vec<ModelFailed>,
    pub responded: Option<ModelResponded>,
    /// Attempts a `mission.interrupted` cut off after they were sent: each counts its whole
    /// reservation as spent, since the provider may have billed it.
    #[serde(default)]
    pub interrupted: u32,
}

impl ModelCallProgress {
    /// The attempt sent and not settled yet (no answer, no failure, not interrupted).
    pub fn in_flight(&self) -> Option<&ModelRequested> {
        let settled =
            self.failures.len() + usize::from(self.responded.is_some()) + self.interrupted as usize;
        (self.attempts.len() > settled)
            .then(|| self.attempts.last())
            .flatten()
    }

    /// The attempt that answered (the last one requested).
    pub fn answering_attempt(&self) -> Option<&ModelRequested> {
        self.responded.as_ref().and_then(|_| self.attempts.last())
    }
}

/// An agent's tool call as the breakers see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    pub call_id: String,
    /// The role that asked.
    pub actor: String,
    /// `tool` + canonical JSON of the args: equal fingerprints are the same action.
    pub fingerprint: String,
    /// `None` until the call completes.
    pub ok: Option<bool>,
    /// Whether the call changed the worktree (its recorded tree differs from the one before).
    pub changed: bool,
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
            decisions: Vec::new(),
            approvals: BTreeMap::new(),
            approval_order: Vec::new(),
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
            model_call_log: BTreeMap::new(),
            ledger: Ledger::default(),
            recent_actions: Vec::new(),
            model_failures_in_a_row: 0,
            plan: None,
            active_ms: 0,
            acceptance: Vec::new(),
            compactions: BTreeMap::new(),
            forked: None,
            decision_counts: crate::views::DecisionCounts::default(),
            max_tier: None,
            halted: false,
            handed_back: false,
            notifications: Vec::new(),
            committing: None,
            proposed: None,
            budget_raised_since_block: false,
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
        // The gap a `mission.interrupted` closes is time the mission was not running (its
        // process had died): it does not count.
        if seq > 1
            && self.status.is_active()
            && !self.halted
            && !matches!(kind, EventKind::MissionInterrupted(_))
        {
            self.active_ms += (at_ms - self.last_at_ms).max(0);
        }
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
                if self.last_tree.is_none() {
                    self.last_tree = ws.base_tree.clone();
                }
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
                if is_agent_role(&call.actor) {
                    self.recent_actions.push(ActionRecord {
                        call_id: call.call_id.clone(),
                        actor: call.actor.clone(),
                        fingerprint: action_fingerprint(&call.tool, &call.args),
                        ok: None,
                        changed: false,
                    });
                }
                // A re-request of an interrupted call replaces the old request.
                self.tool_calls.insert(
                    call.call_id.clone(),
                    ToolCallProgress {
                        requested: call.clone(),
                        completed: None,
                        decision: None,
                        approval: None,
                        interrupted: false,
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
                if done.ok && call.requested.actor == "planner" && call.requested.tool == "finish" {
                    self.plan = Some(done.output.clone());
                }
                let changed = done.tree.is_some() && done.tree != self.last_tree;
                if let Some(action) = self
                    .recent_actions
                    .iter_mut()
                    .rev()
                    .find(|a| a.call_id == done.call_id)
                {
                    action.ok = Some(done.ok);
                    action.changed = changed;
                }
                if let Some(tree) = &done.tree {
                    self.last_tree = Some(tree.clone());
                }
            }
            EventKind::ModelRequested(requested) => {
                self.model_calls += 1;
                let call = self
                    .model_call_log
                    .entry(requested.call_id.clone())
                    .or_insert_with(|| ModelCallProgress {
                        attempts: Vec::new(),
                        failures: Vec::new(),
                        responded: None,
                        interrupted: 0,
                    });
                if call.responded.is_some() {
                    return Err(inconsistent(format!(
                        "model call {} requested again after it was answered",
                        requested.call_id
                    )));
                }
                call.attempts.push(requested.clone());
            }
            EventKind::ModelResponded(r) => {
                let call = self.model_call_log.get_mut(&r.call_id).ok_or_else(|| {
                    inconsistent(format!(
                        "model call {} answered but never requested",
                        r.call_id
                    ))
                })?;
                if call.responded.is_some() {
                    return Err(inconsistent(format!(
                        "model call {} answered twice",
                        r.call_id
                    )));
                }
                call.responded = Some(r.clone());
                if let Some(attempt) = call.attempts.last() {
                    self.ledger.add_response(attempt, r);
                }
                self.tokens += r.input_tokens + r.output_tokens;
                self.cost_usd += r.cost_usd;
                self.model_failures_in_a_row = 0;
            }
            EventKind::ModelFailed(failed) => {
                let call = self
                    .model_call_log
                    .get_mut(&failed.call_id)
                    .ok_or_else(|| {
                        inconsistent(format!(
                            "model call {} failed but was never requested",
                            failed.call_id
                        ))
                    })?;
                call.failures.push(failed.clone());
                if let Some(attempt) = call.attempts.last() {
                    self.ledger.add_failure(attempt);
                }
                self.model_failures_in_a_row += 1;
            }
            EventKind::PolicyDecided(decided) => {
                if let Some(call) = self.tool_calls.get_mut(&decided.subject) {
                    if call.completed.is_some() {
                        return Err(inconsistent(format!(
                            "policy.decided for tool call {} after it completed",
                            decided.subject
                        )));
                    }
                    call.decision = Some(decided.clone());
                }
                match decided.decision.as_str() {
                    "allow" => self.decision_counts.allow += 1,
                    "approve" => self.decision_counts.approve += 1,
                    "deny" => self.decision_counts.deny += 1,
                    _ => {}
                }
                let higher = self
                    .max_tier
                    .as_deref()
                    .is_none_or(|tier| tier_rank(&decided.tier) > tier_rank(tier));
                if higher {
                    self.max_tier = Some(decided.tier.clone());
                }
                self.decisions.push(decided.clone());
            }
            EventKind::ApprovalRequested(request) => {
                if self.approvals.contains_key(&request.approval_id) {
                    return Err(inconsistent(format!(
                        "approval {} requested twice",
                        request.approval_id
                    )));
                }
                for earlier in self.approvals.values_mut() {
                    if earlier.status == ApprovalStatus::Pending
                        && earlier.request.gate == request.gate
                        && earlier.request.subject == request.subject
                    {
                        earlier.close(ApprovalStatus::Superseded, at_ms);
                    }
                }
                if let Some(call) = self.tool_calls.get_mut(&request.subject) {
                    call.approval = Some(request.approval_id.clone());
                }
                self.approvals.insert(
                    request.approval_id.clone(),
                    ApprovalProgress {
                        request: request.clone(),
                        requested_at_ms: at_ms,
                        votes: Vec::new(),
                        status: ApprovalStatus::Pending,
                        closed_at_ms: None,
                    },
                );
                self.approval_order.push(request.approval_id.clone());
                self.status = MissionStatus::AwaitingApproval;
            }
            EventKind::ApprovalDecided(decided) => {
                let approval = self
                    .approvals
                    .get_mut(&decided.approval_id)
                    .ok_or_else(|| {
                        inconsistent(format!(
                            "approval.decided for unknown approval {}",
                            decided.approval_id
                        ))
                    })?;
                if approval.status != ApprovalStatus::Pending {
                    return Err(inconsistent(format!(
                        "approval {} decided after it was {}",
                        decided.approval_id, approval.status
                    )));
                }
                if approval
                    .votes
                    .iter()
                    .any(|v| same_person(&v.decided.by, &decided.by))
                {
                    return Err(inconsistent(format!(
                        "approval {}: {} decided twice (approvers must be distinct)",
                        decided.approval_id, decided.by
                    )));
                }
                approval.votes.push(ApprovalVote {
                    decided: decided.clone(),
                    at_ms,
                });
                match decided.decision.as_str() {
                    "deny" => approval.close(ApprovalStatus::Denied, at_ms),
                    "approve" => {
                        if approval.is_satisfied() {
                            approval.close(ApprovalStatus::Approved, at_ms);
                        }
                    }
                    other => {
                        return Err(inconsistent(format!(
                            "approval {}: decision `{other}` is neither approve nor deny",
                            decided.approval_id
                        )))
                    }
                }
            }
            EventKind::ApprovalExpired(expired) => {
                let approval = self
                    .approvals
                    .get_mut(&expired.approval_id)
                    .ok_or_else(|| {
                        inconsistent(format!(
                            "approval.expired for unknown approval {}",
                            expired.approval_id
                        ))
                    })?;
                if approval.status != ApprovalStatus::Pending {
                    return Err(inconsistent(format!(
                        "approval {} expired after it was {}",
                        expired.approval_id, approval.status
                    )));
                }
                approval.close(ApprovalStatus::Expired, at_ms);
            }
            EventKind::BudgetExceeded(exceeded) => {
                self.budget_raised_since_block = false;
                self.status = MissionStatus::Blocked;
                self.error = Some(MissionError {
                    kind: "budget_exceeded".into(),
                    message: crate::budget::describe_exceeded(exceeded),
                });
            }
            EventKind::BreakerTripped(tripped) => {
                self.status = MissionStatus::Blocked;
                self.error = Some(MissionError {
                    kind: "breaker_tripped".into(),
                    message: format!("breaker {} tripped: {}", tripped.kind, tripped.detail),
                });
            }
            EventKind::BudgetRaised(raised) => {
                self.budget_raised_since_block = true;
                *self
                    .budget_raised
                    .entry(raised.dimension.clone())
                    .or_default() += raised.amount;
            }
            EventKind::ChangeCommitting(committing) => self.committing = Some(committing.clone()),
            EventKind::ChangeProposed(proposed) => self.proposed = Some(proposed.clone()),
            EventKind::ChangePublished(published) => self.published = Some(published.clone()),
            EventKind::MissionInterrupted(interrupted) => {
                self.interruptions += 1;
                self.halted = true;
                self.handed_back = interrupted.handed_back;
                for id in &interrupted.calls {
                    if let Some(call) = self.tool_calls.get_mut(id) {
                        call.interrupted = true;
                    }
                }
                // A model attempt cut off after it was sent may have been billed: its whole
                // reservation counts as spent, so a crash never makes spend invisible.
                for call in self.model_call_log.values_mut() {
                    let Some(attempt) = call.in_flight().cloned() else {
                        continue;
                    };
                    call.interrupted += 1;
                    if let Some(reserved) = &attempt.reserved {
                        self.tokens += reserved.tokens;
                        self.cost_usd += reserved.usd.unwrap_or(0.0);
                        self.ledger.add_interrupted(&attempt, reserved);
                    }
                }
            }
            EventKind::NotificationSent(sent) => self.notifications.push(sent.clone()),
            EventKind::MissionResumed(_) => {
                if let Some(pending) = self.pending_approvals().next() {
                    return Err(inconsistent(format!(
                        "mission.resumed while approval {} is pending",
                        pending.request.approval_id
                    )));
                }
                self.status = MissionStatus::Running;
                self.halted = false;
                self.handed_back = false;
                self.error = None;
                self.recent_actions.clear();
                self.model_failures_in_a_row = 0;
            }
            EventKind::MissionFinished(finished) => {
                if !finished.status.is_terminal() {
                    return Err(inconsistent(format!(
                        "mission.finished with non-final status {}",
                        finished.status
                    )));
                }
                for approval in self.approvals.values_mut() {
                    if approval.status == ApprovalStatus::Pending {
                        approval.close(ApprovalStatus::Withdrawn, at_ms);
                    }
                }
                self.status = finished.status;
                self.error = finished.error.clone();
                self.finished = Some(finished.clone());
            }
            EventKind::AcceptanceChecked(checked) => self.acceptance.push(checked.clone()),
            EventKind::ContextCompacted(compacted) => {
                self.compactions
                    .insert(compacted.before_call.clone(), compacted.clone());
            }
            EventKind::MissionForked(forked) => {
                // The overrides take the place of what the mission was created with.
                if let Some(created) = &mut self.created {
                    if let (Some(source), Some(hash)) =
                        (&forked.template_source, &forked.template_hash)
                    {
                        created.template_source = source.clone();
                        created.template_hash = hash.clone();
                    }
                    created.model_scripts.extend(forked.model_scripts.clone());
                }
                self.forked = Some(forked.clone());
            }
            EventKind::WorkspaceDrift(_) | EventKind::ModelFallback(_) => {}
        }
        self.events = seq;
        self.last_at_ms = at_ms;
        Ok(())
    }

    /// The highest tier of any policy decision so far (`low` < `medium` < `high` <
    /// `critical`), or `None` before the first decision.
    pub fn risk_tier(&self) -> Option<&str> {
        self.max_tier.as_deref()
    }

    /// Approvals in the order they were requested.
    pub fn approvals_in_order(&self) -> impl Iterator<Item = &ApprovalProgress> {
        self.approval_order
            .iter()
            .filter_map(|id| self.approvals.get(id))
    }

    /// Approvals still waiting for decisions.
    pub fn pending_approvals(&self) -> impl Iterator<Item = &ApprovalProgress> {
        self.approvals_in_order()
            .filter(|a| a.status == ApprovalStatus::Pending)
    }

    /// Pending approvals whose time ran out at `now_ms`.
    pub fn due_expiries(&self, now_ms: i64) -> Vec<&ApprovalProgress> {
        self.pending_approvals()
            .filter(|a| a.expires_at_ms().is_some_and(|at| at <= now_ms))
            .collect()
    }

    /// The approved approval of `gate` that covers exactly `diff_hash`.
    pub fn granted_approval(&self, gate: &str, diff_hash: &str) -> Option<&ApprovalProgress> {
        self.approvals_in_order().find(|a| {
            a.status == ApprovalStatus::Approved
                && a.request.gate == gate
                && a.request.diff_hash == diff_hash
        })
    }

    /// The tool calls of `run` step `index` (the first, and re-runs of interrupted ones).
    pub fn calls_of_step(
        &self,
        index: usize,
    ) -> impl Iterator<Item = (&String, &ToolCallProgress)> {
        let base = crate::ids::step_call_id(index);
        self.tool_calls
            .range(base.clone()..)
            .take_while(move |(id, _)| id.starts_with(&base))
            .filter(move |(id, _)| crate::ids::is_call_of_step(id, index))
    }

    /// Every run of tool call `base` (`base`, `base#2`, …).
    pub fn attempts_of<'a>(
        &'a self,
        base: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a ToolCallProgress)> + 'a {
        // Attempts of `base` sort right after it (`base`, `base#2`, …): a range, not a scan
        // of every call the mission made.
        self.tool_calls
            .range::<str, _>((std::ops::Bound::Included(base), std::ops::Bound::Unbounded))
            .take_while(move |(id, _)| id.starts_with(base))
            .filter(move |(id, _)| crate::ids::is_attempt_of(id, base))
    }

    /// The id the next run of call `base` gets.
    pub fn next_attempt_id(&self, base: &str) -> String {
        crate::ids::attempt_id(base, self.attempts_of(base).count() + 1)
    }

    /// Among `calls`, the one that waited for an approval that has now been granted and has
    /// not run yet (nor been interrupted while running), with the diff hash approved.
    pub fn approved_waiting<'a>(
        &self,
        calls: impl IntoIterator<Item = (&'a String, &'a ToolCallProgress)>,
    ) -> Option<(String, String)> {
        calls
            .into_iter()
            .filter(|(_, call)| call.completed.is_none() && !call.interrupted)
            .find_map(|(id, call)| {
                let approval = self.approvals.get(call.approval.as_deref()?)?;
                (approval.status == ApprovalStatus::Approved)
                    .then(|| (id.clone(), approval.request.diff_hash.clone()))
            })
    }

    /// The result of step `index`'s call that completed (at most one does: a completed call
    /// ends its step).
    pub fn completed_call_of_step(&self, index: usize) -> Option<&ToolCompleted> {
        self.calls_of_step(index)
            .find_map(|(_, call)| call.completed.as_ref())
    }

    /// Tool calls made so far (every request counts, interrupted ones too).
    pub fn tool_call_count(&self) -> u64 {
        self.tool_calls.len() as u64
    }

    /// The mission summary of CONTRACT.md, plus `steps`, `created_at` and `updated_at`, as
    /// JSON (see [`crate::views::MissionSummary`] for the typed view).
    pub fn summary(&self) -> Value {
        self.summary_view().to_json()
    }

    /// The mission summary as a typed view.
    pub fn summary_view(&self) -> crate::views::MissionSummary {
        crate::views::MissionSummary::of(self)
    }

    /// The digests of the artifacts the summary lists.
    pub fn published_artifacts(&self) -> Vec<Digest> {
        self.published
            .as_ref()
            .map(|p| vec![p.patch.clone(), p.pr_description.clone()])
            .unwrap_or_default()
    }
}

/// Whether `actor` is an agent role (the breakers watch only agents, not the template's
/// commands or the platform's acceptance checks).
fn is_agent_role(actor: &str) -> bool {
    matches!(actor, "planner" | "coder" | "reviewer")
}

/// Whether two identities name the same person, compared as `flightdeck-policy`'s
/// `canonical_identity` does (trimmed, lowercase, `alice` read as `@alice`).
fn same_person(a: &str, b: &str) -> bool {
    let canonical = |id: &str| {
        let id = id.trim().to_lowercase();
        if id.is_empty() || id.contains('@') {
            id
        } else {
            format!("@{id}")
        }
    };
    canonical(a) == canonical(b)
}

/// Orders tiers; an unknown tier ranks below `low`.
pub fn tier_rank(tier: &str) -> u8 {
    match tier {
        "low" => 1,
        "medium" => 2,
        "high" => 3,
        "critical" => 4,
        _ => 0,
    }
}

#[cfg(test)]
mod tests;
