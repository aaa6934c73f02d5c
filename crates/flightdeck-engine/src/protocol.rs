//! The governed-call protocol: what a proposed action becomes.
//!
//! Every action a mission takes on the world goes through here first: a template's `run`
//! step, each tool call of an agent, each acceptance command, the publication of the change,
//! and each model attempt (the engine's agents and, next, external agents calling the
//! gateway). Over the mission's state and its pinned policy, [`govern`] decides whether the
//! call runs now, waits for an approval, or stops the mission (a budget, a breaker, a deny),
//! and which events record that; the driver appends them, performs the call if it runs, and
//! records its result with [`completed`].
//!
//! Pure: no IO, no clock (the caller passes `now_ms`), nothing but the state and the rules.
//! What the protocol cannot know without IO it asks for: when an approval could cover the
//! call, the worktree's diff hash ([`Next::NeedDiff`]); the caller reads it and asks again.
//!
//! The order of the checks, for a tool call of base id `base`:
//! 1. an attempt of `base` completed: the call is done ([`Next::Done`]), never run again;
//! 2. an attempt waited for an approval that is now granted and has not run: it runs as
//!    requested, if the worktree is still exactly the diff that was approved;
//! 3. a new attempt: the budget (tool calls, wall time), then the breakers (agents only),
//!    then the arguments (a malformed call completes at once with the reason, runs nothing),
//!    then the policy: allow runs; deny stops the mission; approve parks it, unless an
//!    approval of this very command on this very diff was granted to an attempt that a crash
//!    interrupted (then it runs without a second approval).

use flightdeck_core::budget::{before_action, check_model_call, check_tool_call, BreakerLimits};
use flightdeck_core::event::{
    MissionError, MissionFinished, PolicyDecided, Reservation, StepFinished, StepKind, StepStatus,
    ToolCompleted, ToolRequested,
};
use flightdeck_core::state::ApprovalStatus;
use flightdeck_core::{Digest, EventKind, MissionState, MissionStatus};
use flightdeck_policy::{Action, ChangedFile, Decision, Policy, Verdict};
use serde_json::Value;

/// The gate that judges a mission's diff before it is published (also its subject).
pub const PUBLISH_GATE: &str = "publish";

/// Who proposes a call (`tool.requested.actor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// A template's `run` step.
    Template,
    /// An agent role: `planner`, `coder`, `reviewer`.
    Agent(&'static str),
    /// The platform's acceptance checks.
    Acceptance,
}

impl Actor {
    pub fn as_str(self) -> &'static str {
        match self {
            Actor::Template => "template",
            Actor::Agent(role) => role,
            Actor::Acceptance => "acceptance",
        }
    }
}

/// Where a path names, as the workspace's confinement judged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confinement {
    /// Inside the worktree: the normalised path (what the policy judges).
    Inside(String),
    /// Not checkable yet (a missing file, say): the tool reports it when it runs; the policy
    /// judges the path as given.
    Unchecked,
    /// Outside the worktree or into `.git`: why. No rule can allow it.
    Outside(String),
}

/// What a call would do.
#[derive(Debug, Clone, PartialEq)]
pub enum Proposed<'a> {
    /// A shell command (a `run` step, an agent's `run`, an acceptance command).
    Command { command: &'a str },
    /// An agent's write (`write_file`, `edit_file`) to `path`; `preview` is what approvers are
    /// shown of it.
    Write {
        path: &'a str,
        confinement: Confinement,
        preview: String,
    },
    /// An agent's read (`read_file`, `list_files`, `search`, `read_output`).
    Read {
        path: &'a str,
        confinement: Confinement,
    },
    /// The call that ends an agent's run (`finish`, `review`): never held back by the budget.
    End,
    /// Arguments that do not parse: nothing runs, the model is told `message`.
    Invalid { message: &'a str },
}

/// A proposed call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call<'a> {
    /// The call's base id: `step-<i>`, `step-<i>.m<n>.t<k>`, `acceptance.<r>.c<j>.a<k>`.
    /// Attempts after an interruption are `base#2`, `base#3`, ….
    pub base: &'a str,
    pub actor: Actor,
    /// The tool (`run` for commands).
    pub tool: &'a str,
    pub args: &'a Value,
    pub proposed: Proposed<'a>,
    /// For people, when the call is denied: "step 1/3 (`cargo test`)".
    pub what: &'a str,
    /// The template step a denial fails with the mission, if the call belongs to one.
    pub step: Option<(usize, StepKind)>,
    /// The agent's breakers; `None` for the template's and the platform's calls.
    pub breakers: Option<&'a BreakerLimits>,
}

/// What the protocol cannot read itself.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Facts<'a> {
    /// The engine's clock (the budget's wall time).
    pub now_ms: i64,
    /// The worktree's diff hash, when the caller has read it (see [`Next::NeedDiff`]).
    pub diff_hash: Option<&'a str>,
}

/// An approval a parked call asks for (the driver builds `approval.requested` from it: the
/// diff, the context bundle and who is eligible need IO).
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalAsk {
    /// `command`, `write`, `tool` or `publish`.
    pub gate: &'static str,
    /// The call id, or `publish`.
    pub subject: String,
    /// What approvers are shown of the call.
    pub command: Option<String>,
    pub decision: Decision,
    /// The changed paths whose code owners may approve.
    pub paths: Vec<String>,
}

/// What a proposed call becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// An attempt of the call completed already (a resumed mission): its id.
    Done { call_id: String },
    /// Run the call as `call_id`, after appending `events` (empty when its request is on
    /// record already: a call whose approval was granted).
    Run {
        call_id: String,
        events: Vec<EventKind>,
    },
    /// Nothing runs: append `events` (the request), then complete the call at once with
    /// `message` as its failed output (what the model is told).
    Reject {
        call_id: String,
        events: Vec<EventKind>,
        message: String,
    },
    /// The decision depends on the worktree's diff hash: read it and ask again.
    NeedDiff,
    /// Append `events`, then `approval.requested` for `ask`: the mission parks.
    Park {
        call_id: String,
        events: Vec<EventKind>,
        ask: Box<ApprovalAsk>,
    },
    /// An approval for this very diff is pending: nothing to record, the mission waits.
    Wait,
    /// Append `events`: the mission is blocked (budget, breaker) or failed (a deny).
    Stop { events: Vec<EventKind> },
}

impl Next {
    /// The events to append (the caller appends them before anything else happens).
    pub fn events(&self) -> &[EventKind] {
        match self {
            Next::Run { events, .. }
            | Next::Reject { events, .. }
            | Next::Park { events, .. }
            | Next::Stop { events } => events,
            Next::Done { .. } | Next::NeedDiff | Next::Wait => &[],
        }
    }
}

/// Decides what a proposed tool call becomes.
pub fn govern(
    state: &MissionState,
    policy: &Policy,
    policy_hash: &Digest,
    call: &Call<'_>,
    facts: &Facts<'_>,
) -> Next {
    // 1. Done before.
    if let Some((id, _)) = state
        .attempts_of(call.base)
        .find(|(_, c)| c.completed.is_some())
    {
        return Next::Done {
            call_id: id.clone(),
        };
    }
    // 2. Granted while the mission was parked: it runs as requested, on the approved diff.
    if !matches!(call.proposed, Proposed::Invalid { .. }) {
        if let Some((id, approved_diff)) = state.approved_waiting(state.attempts_of(call.base)) {
            match facts.diff_hash {
                None => return Next::NeedDiff,
                Some(diff) if diff == approved_diff => {
                    return Next::Run {
                        call_id: id,
                        events: Vec::new(),
                    }
                }
                // The worktree moved on since: the call is asked about again.
                Some(_) => {}
            }
        }
    }
    // 3. A new attempt.
    let call_id = state.next_attempt_id(call.base);
    if !ends_run(call) {
        if let Some(exceeded) = check_tool_call(state, &call_id, facts.now_ms) {
            return Next::Stop {
                events: vec![EventKind::BudgetExceeded(exceeded)],
            };
        }
    }
    if let Some(limits) = call.breakers {
        if let Some(tripped) = before_action(state, limits, call.tool, call.args) {
            return Next::Stop {
                events: vec![EventKind::BreakerTripped(tripped)],
            };
        }
    }
    let requested = EventKind::ToolRequested(ToolRequested {
        call_id: call_id.clone(),
        tool: call.tool.to_string(),
        args: call.args.clone(),
        actor: call.actor.as_str().to_string(),
    });
    if let Proposed::Invalid { message } = &call.proposed {
        return Next::Reject {
            call_id,
            events: vec![requested],
            message: message.to_string(),
        };
    }
    let (decided, decision) = judge(policy, policy_hash, &call_id, &call.proposed);
    match decided.decision.as_str() {
        "allow" => Next::Run {
            call_id,
            events: vec![requested, EventKind::PolicyDecided(decided)],
        },
        "deny" => {
            let error = denied_error(call.what, &decided);
            let mut events = vec![requested, EventKind::PolicyDecided(decided)];
            events.extend(failure_events(call.step, error));
            Next::Stop { events }
        }
        _ => {
            let Some(decision) = decision else {
                // Only the policy asks for approvals; a fixed decision never does.
                return Next::Stop {
                    events: failure_events(
                        call.step,
                        MissionError {
                            kind: "internal".into(),
                            message: format!("{}: an approve decision without its rule", call.what),
                        },
                    ),
                };
            };
            let Some(diff_hash) = facts.diff_hash else {
                return Next::NeedDiff;
            };
            let mut decided = decided;
            decided.diff_hash = Some(diff_hash.to_string());
            let command = approvers_see(call);
            let events = vec![requested, EventKind::PolicyDecided(decided)];
            if let Some(command) = command.as_deref() {
                if interrupted_approval_covers(state, call.base, command, diff_hash) {
                    return Next::Run { call_id, events };
                }
            }
            let (gate, paths) = match &call.proposed {
                Proposed::Command { .. } => ("command", Vec::new()),
                Proposed::Write {
                    path, confinement, ..
                } => (
                    "write",
                    vec![match confinement {
                        Confinement::Inside(normalized) => normalized.clone(),
                        _ => path.to_string(),
                    }],
                ),
                _ => ("tool", Vec::new()),
            };
            Next::Park {
                ask: Box::new(ApprovalAsk {
                    gate,
                    subject: call_id.clone(),
                    command,
                    decision,
                    paths,
                }),
                call_id,
                events,
            }
        }
    }
}

/// Whether the call would end an agent's run: ending is not work the budget holds back.
fn ends_run(call: &Call<'_>) -> bool {
    matches!(call.proposed, Proposed::End)
        || (matches!(call.actor, Actor::Agent(_)) && matches!(call.tool, "finish" | "review"))
}

/// What approvers are shown of a call (and what an approval of it covers).
fn approvers_see(call: &Call<'_>) -> Option<String> {
    match &call.proposed {
        Proposed::Command { command } => Some(command.to_string()),
        Proposed::Write { preview, .. } => Some(preview.clone()),
        _ => Some(call.tool.to_string()),
    }
}

/// The policy's decision on a call, and the rule decision behind it when the policy (not
/// the workspace's confinement or a fixed rule) decided.
fn judge(
    policy: &Policy,
    policy_hash: &Digest,
    call_id: &str,
    proposed: &Proposed<'_>,
) -> (PolicyDecided, Option<Decision>) {
    let fixed = |action: &str, deny: Option<&str>, path: &str| PolicyDecided {
        subject: call_id.to_string(),
        action: action.to_string(),
        decision: if deny.is_some() { "deny" } else { "allow" }.to_string(),
        tier: if deny.is_some() { "critical" } else { "low" }.to_string(),
        rule_ids: if deny.is_some() {
            vec!["workspace-confinement".to_string()]
        } else {
            Vec::new()
        },
        policy_hash: policy_hash.clone(),
        explanation: match deny {
            Some(why) => why.to_string(),
            None if action == "read" => "reading inside the worktree is always allowed".into(),
            None => "ending the step is always allowed".into(),
        },
        approvals: 0,
        approvers: Vec::new(),
        triggered_by: if path.is_empty() {
            Vec::new()
        } else {
            vec![path.to_string()]
        },
        diff_hash: None,
    };
    match proposed {
        Proposed::Command { command } => {
            let decision = policy.decide(&Action::Command { command });
            (
                decided_event(call_id, &decision, "command", None),
                Some(decision),
            )
        }
        Proposed::Write {
            path, confinement, ..
        } => match confinement {
            Confinement::Outside(why) => (fixed("write", Some(why), path), None),
            Confinement::Inside(normalized) => policy_write(policy, call_id, normalized),
            Confinement::Unchecked => policy_write(policy, call_id, path),
        },
        Proposed::Read { path, confinement } => match confinement {
            Confinement::Outside(why) => (fixed("read", Some(why), path), None),
            _ => (fixed("read", None, path), None),
        },
        Proposed::End | Proposed::Invalid { .. } => (fixed("finish", None, ""), None),
    }
}

fn policy_write(policy: &Policy, call_id: &str, path: &str) -> (PolicyDecided, Option<Decision>) {
    let decision = policy.decide(&Action::Write { path });
    let decided = decided_event(call_id, &decision, "write", None);
    let rule = (decision.verdict != Verdict::Allow).then_some(decision);
    (decided, rule)
}

/// Whether an approval of `command` on `diff_hash`, granted to an attempt of `base` that a
/// crash interrupted before it completed, still covers a new attempt. An approval is spent
/// once its call completes, so the same command later asks again.
fn interrupted_approval_covers(
    state: &MissionState,
    base: &str,
    command: &str,
    diff_hash: &str,
) -> bool {
    state.attempts_of(base).any(|(_, call)| {
        call.interrupted
            && call.completed.is_none()
            && call
                .approval
                .as_deref()
                .and_then(|id| state.approvals.get(id))
                .is_some_and(|approval| {
                    approval.status == ApprovalStatus::Approved
                        && approval.request.command.as_deref() == Some(command)
                        && approval.request.diff_hash == diff_hash
                })
    })
}

/// What the publish gate sees of the change.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PublishFacts<'a> {
    /// The worktree's diff hash (what an approval covers).
    pub diff_hash: &'a str,
    pub changed: &'a [ChangedFile],
    /// Paths whose write was approved at its own write gate and have not changed since:
    /// their `write` rules are not asked again (see [`covered_writes`]).
    pub approved_writes: &'a [String],
}

/// Decides the publication of the change: the policy's publish decision on the classified
/// diff, and its `write` rules on every changed path (a `run` step's writes cannot be judged
/// one by one, so they are judged here, before anything is committed); the strictest wins.
/// A decision recorded for this very diff before (a resumed mission) is not made again.
pub fn govern_publish(state: &MissionState, policy: &Policy, facts: &PublishFacts<'_>) -> Next {
    let recorded = state
        .decisions
        .iter()
        .rev()
        .find(|d| d.subject == PUBLISH_GATE && d.diff_hash.as_deref() == Some(facts.diff_hash))
        .cloned();
    let decision = publish_decision(policy, facts.changed, facts.approved_writes);
    let mut events = Vec::new();
    let decided = match recorded {
        Some(decided) => decided,
        None => {
            let decided = decided_event(
                PUBLISH_GATE,
                &decision,
                "publish",
                Some(facts.diff_hash.to_string()),
            );
            events.push(EventKind::PolicyDecided(decided.clone()));
            decided
        }
    };
    match decided.decision.as_str() {
        "allow" => Next::Run {
            call_id: PUBLISH_GATE.to_string(),
            events,
        },
        "deny" => {
            events.extend(failure_events(
                None,
                denied_error("publishing the change", &decided),
            ));
            Next::Stop { events }
        }
        _ => {
            if state
                .granted_approval(PUBLISH_GATE, facts.diff_hash)
                .is_some()
            {
                return Next::Run {
                    call_id: PUBLISH_GATE.to_string(),
                    events,
                };
            }
            let waiting = state
                .pending_approvals()
                .any(|a| a.request.gate == PUBLISH_GATE && a.request.diff_hash == facts.diff_hash);
            if waiting && events.is_empty() {
                return Next::Wait;
            }
            Next::Park {
                call_id: PUBLISH_GATE.to_string(),
                events,
                ask: Box::new(ApprovalAsk {
                    gate: PUBLISH_GATE,
                    subject: PUBLISH_GATE.to_string(),
                    command: None,
                    paths: decision.triggering_paths(facts.changed),
                    decision,
                }),
            }
        }
    }
}

/// The publish decision over `changed`, less the `write` rules of `approved_writes`.
pub fn publish_decision(
    policy: &Policy,
    changed: &[ChangedFile],
    approved_writes: &[String],
) -> Decision {
    let publish = policy.decide(&Action::Publish { changes: changed });
    let mut decisions = vec![publish.clone()];
    for file in changed {
        for path in file.touched_paths() {
            let write = policy.decide(&Action::Write { path });
            let approved =
                write.verdict == Verdict::Approve && approved_writes.iter().any(|p| p == path);
            if !approved && (write.verdict != Verdict::Allow || !write.rule_ids.is_empty()) {
                decisions.push(write);
            }
        }
    }
    Decision::strictest(decisions).unwrap_or(publish)
}

/// The paths a `write` gate approved whose content is still what was approved: `blob_now`
/// gives a path's blob id in the worktree now, `blob_approved` the blob the approved call
/// left (`None` when either is unknown). An approval covers its write, not later edits of
/// the same file.
pub fn covered_writes(
    state: &MissionState,
    blob_now: impl Fn(&str) -> Option<String>,
    blob_approved: impl Fn(&str, &str) -> Option<String>,
) -> Vec<String> {
    let mut covered = Vec::new();
    for approval in state.approvals_in_order() {
        if approval.status != ApprovalStatus::Approved || approval.request.gate != "write" {
            continue;
        }
        let Some(call) = state.tool_calls.get(&approval.request.subject) else {
            continue;
        };
        let Some(tree) = call.completed.as_ref().and_then(|c| c.tree.as_deref()) else {
            continue;
        };
        for path in &approval.request.changed_paths {
            let now = blob_now(path);
            if now.is_some() && now == blob_approved(tree, path) && !covered.contains(path) {
                covered.push(path.clone());
            }
        }
    }
    covered
}

/// Whether a model attempt whose worst case is `reserved` may be made now: `None` when it
/// may, else the `budget.exceeded` to record instead of the attempt.
pub fn govern_model_attempt(
    state: &MissionState,
    call_id: &str,
    reserved: &Reservation,
    now_ms: i64,
) -> Option<EventKind> {
    check_model_call(state, call_id, reserved, now_ms).map(EventKind::BudgetExceeded)
}

/// How a call that ran is recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub ok: bool,
    pub exit_code: Option<i32>,
    pub output: Digest,
    pub duration_ms: u64,
    pub timed_out: bool,
    /// The worktree's tree after the call (calls that may write).
    pub tree: Option<String>,
}

/// The `tool.completed` that closes `call_id`.
pub fn completed(call_id: &str, outcome: Outcome) -> EventKind {
    EventKind::ToolCompleted(ToolCompleted {
        call_id: call_id.to_string(),
        ok: outcome.ok,
        exit_code: outcome.exit_code,
        output: outcome.output,
        duration_ms: outcome.duration_ms,
        timed_out: outcome.timed_out,
        tree: outcome.tree,
    })
}

/// How a call that fails the mission ends it: its step (if it has one) and the mission.
pub fn failure_events(step: Option<(usize, StepKind)>, error: MissionError) -> Vec<EventKind> {
    let mut events = Vec::new();
    if let Some((index, kind)) = step {
        events.push(EventKind::StepFinished(StepFinished {
            index,
            kind,
            status: StepStatus::Failed,
        }));
    }
    events.push(EventKind::MissionFinished(MissionFinished {
        status: MissionStatus::Failed,
        error: Some(error),
        summary: None,
    }));
    events
}

/// The `policy.decided` event of a decision.
pub fn decided_event(
    subject: &str,
    decision: &Decision,
    action: &str,
    diff_hash: Option<String>,
) -> PolicyDecided {
    PolicyDecided {
        subject: subject.to_string(),
        action: action.to_string(),
        decision: decision.verdict.as_str().to_string(),
        tier: decision.tier.as_str().to_string(),
        rule_ids: decision.rule_ids.clone(),
        // The policy crate hashes what it parsed; a hash it made always parses.
        policy_hash: decision
            .policy_hash
            .parse::<Digest>()
            .unwrap_or_else(|_| Digest::of(decision.policy_hash.as_bytes())),
        explanation: decision.explanation.clone(),
        approvals: decision.approvals,
        approvers: decision.approvers.clone(),
        triggered_by: decision.triggered_by.clone(),
        diff_hash,
    }
}

/// How a mission that a policy denied ends.
pub fn denied_error(what: &str, decided: &PolicyDecided) -> MissionError {
    let rules = if decided.rule_ids.is_empty() {
        "the policy's default".to_string()
    } else {
        format!("rule {}", decided.rule_ids.join(", "))
    };
    MissionError {
        kind: "policy_denied".into(),
        message: format!(
            "{what} was denied by {rules} ({} tier): {}",
            decided.tier, decided.explanation
        ),
    }
}
