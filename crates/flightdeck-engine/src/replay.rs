//! Replay: the engine driven again from a recorded timeline.
//!
//! A replay runs today's engine (today's template, policy and prompts, the recorded params
//! and base commit) against stand-ins for everything nondeterministic, all fed from the
//! recording:
//!
//! - the store ([`ReplayStore`]) compares every event the engine appends with the recorded
//!   event at that seq; the first that differs is the divergence, and the replay stops there.
//!   Events other processes appended (approvals, budget raises, a cancel) are let in where
//!   the recording has them; where the recording was interrupted (a crash), the engine is
//!   stopped there and resumed, as it was;
//! - the clock reads the time of the recorded event that comes next;
//! - each model is served its recorded answers (or failures) in order, through the real
//!   router and recorder, so the request bytes recorded are compared too;
//! - tool calls: in `verify`, nothing executes: the recorded result is served back and the
//!   scratch worktree is set to the tree the recording says the call left; in `reexecute`,
//!   the call really runs in a fresh worktree of the same base and its result is compared
//!   with the recorded one (exit code, output with times and durations masked, the tree it
//!   left), then the recorded result goes on, so one flaky call does not hide the next;
//! - artifacts go to memory: nothing is written to the mission or the store.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use flightdeck_core::event::{MissionCreated, ToolCompleted, WorkspaceProvisioned};
use flightdeck_core::template::AgentRole;
use flightdeck_core::{Digest, EventKind, StoredEvent};
use flightdeck_models::{Provider, RecordedAttempt, Sleeper};
use flightdeck_store::{
    AppendRequest, ArtifactError, ArtifactStore, ChangeFeed, EventStore, InputRow, InputState,
    Lease, MissionRow, NewInput, RawEvent, StoreError,
};
use flightdeck_workspace::{CommandOutcome, CommandSpec, ConfinedFs, Worktree};
use serde_json::Value;

use crate::inputs::{Foreign, Vote};
use crate::people::Channel;
use crate::tools::ToolInvocation;
use crate::{Clock, EngineError};

/// What a replay does with tool calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayMode {
    /// Recorded results are served back; nothing executes.
    Verify,
    /// Tool calls run for real in a fresh worktree and their results are compared.
    Reexecute,
}

impl ReplayMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplayMode::Verify => "verify",
            ReplayMode::Reexecute => "reexecute",
        }
    }
}

/// How a replay went.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReplayReport {
    pub mission: String,
    pub mode: &'static str,
    pub diverged: bool,
    /// Recorded events the replay went through and found equal.
    pub checked: u64,
    /// The seq of the first recorded event that differs.
    pub at_seq: Option<u64>,
    /// Its type (or, in `reexecute`, `tool.completed` of the call whose result differs).
    pub event_type: Option<String>,
    /// The recorded event's data (`null`: the recording has nothing there).
    pub expected: Value,
    /// What the engine did instead (`null`: it did nothing more).
    pub actual: Value,
    /// The first difference, readable: a JSON pointer with both sides, or for a model request
    /// the place in the request body where they part.
    pub difference: Option<String>,
    /// What likely changed since the recording.
    pub explanation: String,
}

/// Where a replay parted from the recording.
#[derive(Debug, Clone)]
struct Divergence {
    seq: u64,
    event_type: String,
    expected: Value,
    actual: Value,
    difference: Option<String>,
    /// Two request records that differ, to be read back for a readable `difference`.
    records: Option<(Digest, Digest)>,
}

/// One recorded attempt of a model call.
#[derive(Debug, Clone)]
enum RecordedOutcome {
    Responded {
        raw: Digest,
    },
    Failed {
        error: String,
        kind: String,
        retryable: bool,
        response: Option<Digest>,
    },
    /// The process died during the call.
    Interrupted,
}

#[derive(Debug, Default)]
struct Cursor {
    /// What the replayed mission's timeline holds so far (the engine's own events).
    accepted: Vec<StoredEvent>,
    /// Index into the recording of the next event to compare.
    next: usize,
    divergence: Option<Divergence>,
    /// The engine was stopped where the recording was interrupted.
    crashed: bool,
    /// The engine went on past the recording's last event.
    ended: bool,
    /// The tree the scratch worktree holds (after a restore).
    tree: Option<String>,
    /// Per model: attempts served so far.
    served: HashMap<String, usize>,
}

impl Cursor {
    /// The recording stops at `stop` (a crash, or a fork): a fork's marker comes in with its
    /// overrides, and the engine is stopped here, to go on from a resume as it did.
    fn stop_at(&mut self, stop: &StoredEvent) {
        if stop.event_type == "mission.forked" {
            self.take_in(stop.clone());
        }
        self.crashed = true;
    }

    /// Lets in a recorded event another process appended, sealed onto the replay's chain.
    fn take_in(&mut self, event: StoredEvent) {
        let prev = self.accepted.last().map_or_else(
            || flightdeck_core::hash::GENESIS_HASH.to_string(),
            |e| e.hash.clone(),
        );
        let at_ms = flightdeck_core::clock::parse_rfc3339_millis(&event.at).unwrap_or(0);
        let seq = self.accepted.len() as u64 + 1;
        let sealed = flightdeck_core::chain::seal(
            &event.mission,
            seq,
            at_ms,
            &prev,
            &event.event_type,
            event.data.clone(),
        )
        .unwrap_or(event);
        self.accepted.push(sealed);
        self.next += 1;
    }
}

/// The recording and the replay's progress through it, shared by the store, the clock,
/// the models and the tool seams.
pub struct Replay {
    mode: ReplayMode,
    mission: String,
    recorded: Vec<StoredEvent>,
    /// Recorded completions by call id.
    completions: HashMap<String, (u64, ToolCompleted)>,
    /// The recorded artifacts the replay serves back (tool outputs, model answers).
    served_artifacts: Vec<Digest>,
    /// Recorded attempts per model ref, in order.
    attempts: HashMap<String, Vec<RecordedOutcome>>,
    /// The recorded artifacts (read) and the replay's own (memory).
    artifacts: Arc<OverlayArtifacts>,
    /// The directory hidden from sandboxed commands (the data directory).
    pub(crate) hidden: PathBuf,
    cursor: Mutex<Cursor>,
    /// Bumped when recorded inputs come due.
    inbox: tokio::sync::watch::Sender<u64>,
}

/// Events that came from outside the mission's driver (an input): a vote, a budget raise,
/// a cancel. A replay gives them to the replayed driver as inputs where the recording has
/// them, and the driver records them again (compared like everything else). Expiries are
/// the driver's own deadlines, fired again from the recorded clock.
fn foreign(event: &StoredEvent) -> bool {
    match event.event_type.as_str() {
        "budget.raised" | "approval.decided" | "notification.sent" => true,
        "mission.finished" => {
            event.data.pointer("/error/kind").and_then(Value::as_str) == Some("cancelled")
        }
        _ => false,
    }
}

/// The input a recorded foreign event came from.
fn input_of(event: &StoredEvent) -> Option<Foreign> {
    let text = |pointer: &str| {
        event
            .data
            .pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    match event.kind().ok()? {
        EventKind::ApprovalDecided(decided) => {
            let channel = match decided.channel.as_str() {
                "web" => Channel::Web,
                "slack" => Channel::Slack,
                "github" => Channel::Github,
                _ => Channel::Cli,
            };
            Some(Foreign::Vote(Vote {
                approval_id: decided.approval_id,
                // The identity as the channel gave it, when it was recorded.
                by: decided
                    .actor
                    .as_ref()
                    .map_or(decided.by, |actor| actor.channel_user.clone()),
                approve: decided.decision == "approve",
                comment: decided.comment,
                channel,
                // The address Slack vouched for, when that is how they were known.
                vouched_email: decided.actor.and_then(|actor| actor.email),
            }))
        }
        // What a notifier sent is an input like a vote: given back where it was recorded.
        EventKind::NotificationSent(sent) => Some(Foreign::Notification { sent }),
        EventKind::BudgetRaised(raised) => Some(Foreign::BudgetRaise {
            by: raised.by,
            adds: vec![(raised.dimension, raised.amount)],
        }),
        EventKind::MissionFinished(_) => {
            let message = text("/error/message").unwrap_or_default();
            let by = message
                .strip_prefix("cancelled by ")
                .unwrap_or("someone")
                .to_string();
            Some(Foreign::Cancel { by })
        }
        _ => None,
    }
}

impl Replay {
    pub(crate) fn new(
        mode: ReplayMode,
        mission: &str,
        recorded: Vec<StoredEvent>,
        base_artifacts: Arc<dyn ArtifactStore>,
        hidden: PathBuf,
    ) -> Replay {
        let mut completions = HashMap::new();
        let mut attempts: HashMap<String, Vec<RecordedOutcome>> = HashMap::new();
        // call id -> (model, index into that model's attempts) of its latest attempt
        let mut open: HashMap<String, (String, usize)> = HashMap::new();
        // Each recorded event is decoded once, here.
        let mut referenced = std::collections::HashSet::new();
        let mut served = Vec::new();
        for event in &recorded {
            let Ok(kind) = event.kind() else { continue };
            referenced.extend(kind.artifact_refs().into_iter().cloned());
            match &kind {
                EventKind::ToolCompleted(c) => served.push(c.output.clone()),
                EventKind::ModelResponded(r) => {
                    served.push(r.response.clone());
                    served.extend(r.message.clone());
                }
                EventKind::ModelFailed(f) => served.extend(f.response.clone()),
                _ => {}
            }
            match kind {
                EventKind::ToolCompleted(done) => {
                    completions.insert(done.call_id.clone(), (event.seq, done));
                }
                EventKind::ModelRequested(requested) => {
                    let model = format!("{}:{}", requested.provider, requested.model);
                    let list = attempts.entry(model.clone()).or_default();
                    list.push(RecordedOutcome::Interrupted);
                    open.insert(requested.call_id, (model, list.len() - 1));
                }
                EventKind::ModelResponded(responded) => {
                    if let Some((model, i)) = open.remove(&responded.call_id) {
                        if let Some(slot) = attempts.get_mut(&model).and_then(|l| l.get_mut(i)) {
                            *slot = RecordedOutcome::Responded {
                                raw: responded.response,
                            };
                        }
                    }
                }
                EventKind::ModelFailed(failed) => {
                    if let Some((model, i)) = open.remove(&failed.call_id) {
                        if let Some(slot) = attempts.get_mut(&model).and_then(|l| l.get_mut(i)) {
                            *slot = RecordedOutcome::Failed {
                                error: failed.error,
                                kind: failed.kind.unwrap_or_else(|| "recorded".into()),
                                retryable: failed.retryable,
                                response: failed.response,
                            };
                        }
                    }
                }
                _ => {}
            }
        }
        served.sort();
        served.dedup();
        Replay {
            served_artifacts: served,
            mode,
            mission: mission.to_string(),
            recorded,
            completions,
            attempts,
            artifacts: Arc::new(OverlayArtifacts {
                recorded: referenced,
                base: base_artifacts,
                new: Mutex::new(HashMap::new()),
            }),
            hidden,
            cursor: Mutex::new(Cursor::default()),
            inbox: tokio::sync::watch::channel(0).0,
        }
    }

    fn cursor(&self) -> MutexGuard<'_, Cursor> {
        match self.cursor.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    pub(crate) fn artifacts(&self) -> Arc<OverlayArtifacts> {
        self.artifacts.clone()
    }

    fn diverged(&self) -> bool {
        self.cursor().divergence.is_some()
    }

    fn diverge(&self, divergence: Divergence) {
        let mut cursor = self.cursor();
        if cursor.divergence.is_none() {
            cursor.divergence = Some(divergence);
        }
    }

    /// The recorded completion of `call_id`; without one, the recording was interrupted
    /// during the call and the engine is stopped here, as the original was.
    fn completion(&self, call_id: &str) -> Result<(u64, ToolCompleted), EngineError> {
        match self.completions.get(call_id) {
            Some(found) => Ok(found.clone()),
            None => {
                self.cursor().crashed = true;
                Err(EngineError::ReplayStopped(format!(
                    "the recording has no result for {call_id}: its process stopped during it"
                )))
            }
        }
    }

    /// Puts the scratch worktree at `tree` (what the recording says the call left).
    fn restore(&self, worktree: &Worktree, tree: Option<&str>) -> Result<(), EngineError> {
        let Some(tree) = tree else { return Ok(()) };
        if self.cursor().tree.as_deref() == Some(tree) {
            return Ok(());
        }
        worktree.restore(Some(tree)).map_err(|e| {
            EngineError::ReplayStopped(format!(
                "cannot set the worktree to the recorded tree {tree}: {e} (replay needs the \
                 repository that holds the mission's objects)"
            ))
        })?;
        self.cursor().tree = Some(tree.to_string());
        Ok(())
    }

    /// A command of the mission: the recorded outcome (verify), or the real one compared with
    /// it (reexecute).
    pub(crate) async fn command(
        &self,
        call_id: &str,
        workspace: &dyn flightdeck_workspace::Workspace,
        worktree: &Worktree,
        spec: &CommandSpec,
    ) -> Result<CommandOutcome, EngineError> {
        let (seq, done) = self.completion(call_id)?;
        let output = self.artifacts.get(&done.output).await?;
        let recorded = CommandOutcome {
            exit_code: done.exit_code,
            timed_out: done.timed_out,
            output,
            dropped_bytes: 0,
            duration: Duration::from_millis(done.duration_ms),
            limit_hit: None,
        };
        if self.mode == ReplayMode::Reexecute {
            self.cursor().tree = None;
            let actual = workspace.exec(spec).await?;
            let tree = Some(worktree.snapshot()?);
            let (recorded_roots, root) = self.worktree_paths(worktree);
            let expected_view = command_view(&recorded, done.tree.as_deref(), &recorded_roots);
            let actual_view = command_view(
                &actual,
                tree.as_deref().filter(|_| done.tree.is_some()),
                &[root],
            );
            if expected_view != actual_view {
                self.diverge(Divergence {
                    seq,
                    event_type: "tool.completed".into(),
                    difference: first_difference_text(&expected_view, &actual_view),
                    records: None,
                    expected: expected_view,
                    actual: actual_view,
                });
                return Err(EngineError::ReplayStopped(format!(
                    "the result of {call_id} differs from the recorded one"
                )));
            }
        }
        self.restore(worktree, done.tree.as_deref())?;
        Ok(recorded)
    }

    /// A file tool of an agent: the recorded `(ok, output)` (verify), or the real one compared
    /// with it (reexecute).
    pub(crate) fn file_tool(
        &self,
        call_id: &str,
        fs: &ConfinedFs,
        worktree: &Worktree,
        invocation: &ToolInvocation,
    ) -> Result<(bool, String), EngineError> {
        let (seq, done) = self.completion(call_id)?;
        let output = self.artifacts.get_now(&done.output).ok_or_else(|| {
            EngineError::ReplayStopped(format!(
                "the recorded output of {call_id} ({}) is not in the recording's artifacts",
                done.output
            ))
        })?;
        let recorded = (done.ok, String::from_utf8_lossy(&output).into_owned());
        if self.mode == ReplayMode::Reexecute {
            self.cursor().tree = None;
            let actual = crate::tools::file_tool(fs, invocation);
            if actual != recorded {
                let view =
                    |(ok, text): &(bool, String)| serde_json::json!({"ok": ok, "output": text});
                let (expected, actual) = (view(&recorded), view(&actual));
                self.diverge(Divergence {
                    seq,
                    event_type: "tool.completed".into(),
                    difference: first_difference_text(&expected, &actual),
                    records: None,
                    expected,
                    actual,
                });
                return Err(EngineError::ReplayStopped(format!(
                    "the result of {call_id} differs from the recorded one"
                )));
            }
        }
        self.restore(worktree, done.tree.as_deref())?;
        Ok(recorded)
    }

    /// The recorded duration of a call (a replay reproduces results, not timings).
    pub(crate) fn duration_ms(&self, call_id: &str) -> Option<u64> {
        self.completions.get(call_id).map(|(_, c)| c.duration_ms)
    }

    /// The commit and patch the recording published (the replay commits nothing).
    /// The recorded proposal of `tree` (a mission proposes again when its tree changed).
    pub(crate) fn proposed(&self, tree: &str) -> Option<flightdeck_core::event::ChangeProposed> {
        self.recorded.iter().find_map(|e| match e.kind() {
            Ok(EventKind::ChangeProposed(p)) if p.tree == tree => Some(p),
            _ => None,
        })
    }

    pub(crate) fn published(&self) -> (String, Digest) {
        self.recorded
            .iter()
            .find_map(|e| match e.kind() {
                Ok(EventKind::ChangePublished(p)) => Some((p.commit, p.patch)),
                _ => None,
            })
            .unwrap_or_else(|| ("(the recording published nothing)".into(), Digest::of(b"")))
    }

    /// The recording's `workspace.provisioned`: what the recorded host found (toolchain,
    /// limits) is taken as found, not probed again.
    pub(crate) fn recorded_provisioned(&self) -> Option<WorkspaceProvisioned> {
        self.recorded.iter().find_map(|e| match e.kind() {
            Ok(EventKind::WorkspaceProvisioned(p)) => Some(p),
            _ => None,
        })
    }

    /// Where the recording's worktree was (as provisioned, and, for a fork, its own), and
    /// where the replay's is.
    fn worktree_paths(&self, worktree: &Worktree) -> (Vec<String>, String) {
        let mut recorded: Vec<String> = self
            .recorded
            .iter()
            .find_map(|e| match e.kind() {
                Ok(EventKind::WorkspaceProvisioned(p)) => Some(p.path),
                _ => None,
            })
            .into_iter()
            .collect();
        recorded.push(
            self.hidden
                .join("workspaces")
                .join(&self.mission)
                .display()
                .to_string(),
        );
        (recorded, worktree.path().display().to_string())
    }

    /// The next recorded outcome of `model`.
    fn next_outcome(&self, model: &str) -> Option<RecordedOutcome> {
        let mut cursor = self.cursor();
        let served = cursor.served.entry(model.to_string()).or_insert(0);
        let outcome = self
            .attempts
            .get(model)
            .and_then(|l| l.get(*served))
            .cloned();
        *served += 1;
        outcome
    }

    /// The recorded inputs due now: the foreign events at the cursor. A driver takes inputs
    /// in only with nothing staged, so each is recorded right after an append, and is due
    /// once the replayed driver has made that append.
    fn due_inputs(&self) -> Vec<(u64, Foreign)> {
        let cursor = self.cursor();
        let mut at = cursor.next;
        let mut due = Vec::new();
        while let Some(event) = self.recorded.get(at).filter(|e| foreign(e)) {
            if let Some(input) = input_of(event) {
                due.push((event.seq, input));
            }
            at += 1;
        }
        due
    }

    /// Tells the replayed driver when inputs are due (after each accepted append).
    fn signal_inputs(&self) {
        if !self.due_inputs().is_empty() {
            self.inbox.send_modify(|n| *n += 1);
        }
    }

    /// The next recorded event.
    fn next_recorded(&self) -> Option<&StoredEvent> {
        self.recorded.get(self.cursor().next)
    }

    fn report(&self, created_now: Option<&MissionCreated>) -> ReplayReport {
        let cursor = self.cursor();
        let checked = cursor.next as u64;
        let mut report = ReplayReport {
            mission: self.mission.clone(),
            mode: self.mode.as_str(),
            diverged: false,
            checked,
            at_seq: None,
            event_type: None,
            expected: Value::Null,
            actual: Value::Null,
            difference: None,
            explanation: if cursor.ended {
                format!(
                    "the {} recorded events came out the same; the mission had not finished \
                     when it was read (still running, or its process stopped and it was not \
                     resumed), and the replay stops where the recording does",
                    self.recorded.len()
                )
            } else {
                format!(
                    "today's engine made the same {} events as the recording",
                    self.recorded.len()
                )
            },
        };
        if let Some(d) = &cursor.divergence {
            report.diverged = true;
            report.checked = d.seq.saturating_sub(1);
            report.at_seq = Some(d.seq);
            report.event_type = Some(d.event_type.clone());
            report.expected = d.expected.clone();
            report.actual = d.actual.clone();
            report.difference = d.difference.clone();
            report.explanation = explain(&self.recorded, created_now, d, self.mode);
        }
        report
    }
}

/// What of a command's result a re-execution compares: exit code, timeout, the tree it left
/// (when the recording has one) and the output with times, durations and the worktree's path
/// masked, its lines sorted: parallel test runners print the same lines in a different order
/// each run, and that order is timing, not a result.
fn command_view(outcome: &CommandOutcome, tree: Option<&str>, worktrees: &[String]) -> Value {
    let mut text = String::from_utf8_lossy(&outcome.output).into_owned();
    for worktree in worktrees.iter().filter(|w| !w.is_empty()) {
        text = text.replace(worktree.as_str(), "<worktree>");
    }
    let text = normalize_output(&text);
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    serde_json::json!({
        "exit_code": outcome.exit_code,
        "timed_out": outcome.timed_out,
        "output_lines": lines,
        "tree": tree,
    })
}

/// Masks what changes from run to run without meaning anything: clock times, dates and
/// durations (`12:03:04`, `2026-11-24T…`, `0.53s`, `120 ms`, `1m 2s`).
pub fn normalize_output(text: &str) -> String {
    static PATTERNS: std::sync::OnceLock<Vec<(regex::Regex, &'static str)>> =
        std::sync::OnceLock::new();
    let patterns = PATTERNS.get_or_init(|| {
        [
            (
                r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?",
                "<datetime>",
            ),
            (r"\b\d{1,2}:\d{2}:\d{2}(\.\d+)?\b", "<time>"),
            (
                r"\b\d+(\.\d+)?\s?(ns|µs|us|ms|s|sec|secs|seconds|m|min|minutes|h)\b",
                "<duration>",
            ),
        ]
        .into_iter()
        .filter_map(|(p, r)| regex::Regex::new(p).ok().map(|re| (re, r)))
        .collect()
    });
    let mut text = text.to_string();
    for (re, replacement) in patterns {
        text = re.replace_all(&text, *replacement).into_owned();
    }
    text
}

/// What of an event a replay compares: its data, less what names where or with which
/// inputs the mission ran rather than what it did (paths of the scratch worktree, the
/// policy's and template's hashes, which the explanation reports instead).
fn comparable(event_type: &str, data: &Value) -> Value {
    let mut data = data.clone();
    if let Value::Object(map) = &mut data {
        match event_type {
            "mission.created" => {
                map.retain(|k, _| {
                    matches!(
                        k.as_str(),
                        "template"
                            | "params"
                            | "base_commit"
                            | "base_ref"
                            | "requested_by"
                            | "budget"
                            | "steps"
                    )
                });
            }
            "workspace.provisioned" => {
                map.remove("path");
                map.remove("sandbox");
                map.remove("container");
            }
            // Why a process stopped is not something the mission did; which calls it cut
            // off is.
            "mission.interrupted" => {
                map.remove("reason");
            }
            // How the channel named the person is the channel's; who decided is compared.
            "approval.decided" => {
                map.remove("actor");
                map.remove("policy_hash");
            }
            _ => {
                map.remove("policy_hash");
            }
        }
    }
    data
}

/// JSON equality as the store sees it: numbers by value (a stored `0` is the engine's `0.0`:
/// canonical JSON writes both as `0`).
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, a)| y.get(k).is_some_and(|b| same_json(a, b)))
        }
        _ => a == b,
    }
}

fn first_difference_text(expected: &Value, actual: &Value) -> Option<String> {
    flightdeck_models::first_difference(expected, actual, String::new()).map(|(pointer, e, a)| {
        let show = |v: Option<&Value>| match v {
            Some(v) => cut(&v.to_string()),
            None => "(absent)".to_string(),
        };
        format!(
            "at {}\n  expected: {}\n  actual:   {}",
            if pointer.is_empty() { "/" } else { &pointer },
            show(e),
            show(a)
        )
    })
}

fn cut(text: &str) -> String {
    if text.chars().count() > 600 {
        let mut short: String = text.chars().take(600).collect();
        short.push('…');
        short
    } else {
        text.to_string()
    }
}

/// What likely changed: the template, the policy, a system prompt, the engine, as the
/// recording names them against today's.
fn explain(
    recorded: &[StoredEvent],
    created_now: Option<&MissionCreated>,
    divergence: &Divergence,
    mode: ReplayMode,
) -> String {
    if mode == ReplayMode::Reexecute && divergence.event_type == "tool.completed" {
        return format!(
            "re-executing the call recorded at seq {} gave a different result: the command or \
             the files it reads behave differently now (a flaky test, the environment, a tool \
             version)",
            divergence.seq
        );
    }
    let mut changed = Vec::new();
    let created_then = recorded.iter().find_map(|e| match e.kind() {
        Ok(EventKind::MissionCreated(c)) => Some(c),
        _ => None,
    });
    if let (Some(then), Some(now)) = (&created_then, created_now) {
        if then.template_hash != now.template_hash {
            changed.push(format!(
                "the template `{}` ({} then, {} now)",
                then.template, then.template_hash, now.template_hash
            ));
        }
        if then.policy_hash != now.policy_hash {
            changed.push(format!(
                "the policy ({} then, {} now)",
                then.policy_hash, now.policy_hash
            ));
        }
        if then.codeowners != now.codeowners {
            changed.push("CODEOWNERS".to_string());
        }
        if then.model_scripts != now.model_scripts {
            changed.push("a scripted model's script (its recorded answers are used)".into());
        }
        if then.engine_version != now.engine_version {
            changed.push(format!(
                "the engine ({} then, {} now)",
                then.engine_version, now.engine_version
            ));
        }
    }
    let mut prompts: BTreeMap<String, (Digest, Digest)> = BTreeMap::new();
    for event in recorded {
        if let Ok(EventKind::StepStarted(started)) = event.kind() {
            if let (Some(role), Some(then)) = (started.role, started.system_prompt) {
                let role_now = [AgentRole::Planner, AgentRole::Coder, AgentRole::Reviewer]
                    .into_iter()
                    .find(|r| r.as_str() == role);
                if let Some(role_now) = role_now {
                    let now = Digest::of(crate::agent::system_prompt(role_now).as_bytes());
                    if now != then {
                        prompts.insert(role, (then, now));
                    }
                }
            }
        }
    }
    for (role, (then, now)) in prompts {
        changed.push(format!("the {role} system prompt ({then} then, {now} now)"));
    }
    let what = match divergence.event_type.as_str() {
        "model.requested" => "the model request differs".to_string(),
        "policy.decided" => "the policy decides differently".to_string(),
        "step.started" => "the step starts differently".to_string(),
        "mission.created" => "the mission is created differently".to_string(),
        other => format!("the engine records a different `{other}`"),
    };
    if changed.is_empty() {
        format!(
            "{what} at seq {}; nothing the recording names changed (template, policy, \
             CODEOWNERS, prompts and engine version are the same), so the engine's own code \
             or the configuration (providers, pricing) behaves differently",
            divergence.seq
        )
    } else {
        format!(
            "{what} at seq {}; since the recording, these changed: {}",
            divergence.seq,
            changed.join("; ")
        )
    }
}

/// The store a replay appends to: it compares instead of writing.
pub(crate) struct ReplayStore {
    pub(crate) replay: Arc<Replay>,
}

fn replay_error(message: &str) -> StoreError {
    StoreError::Replay(message.to_string())
}

impl ReplayStore {
    /// Where two model requests part, read back whole from their request records (`None`
    /// when either cannot be read, e.g. a recording made before request records).
    async fn request_difference(&self, then: &Digest, now: &Digest) -> Option<String> {
        let artifacts = self.replay.artifacts.as_ref();
        let then = crate::request_record::expand(artifacts, then).await.ok()?;
        let now = crate::request_record::expand(artifacts, now).await.ok()?;
        first_difference_text(&then, &now).map(|text| format!("in the request {text}"))
    }

    /// Compares the events the engine would append with the recorded ones at their seqs,
    /// and accepts them if they are the same.
    fn compare_and_accept(&self, request: AppendRequest) -> Result<Vec<StoredEvent>, StoreError> {
        let replay = &self.replay;
        let mut cursor = replay.cursor();
        if cursor.divergence.is_some() {
            return Err(replay_error("the replay has diverged"));
        }
        if request.expected_seq != cursor.accepted.len() as u64 {
            return Err(StoreError::Conflict {
                mission: request.mission,
                expected: request.expected_seq,
                actual: cursor.accepted.len() as u64,
            });
        }
        if let Some(first) = replay.recorded.get(cursor.next) {
            // The recording stopped here: a crash, or a fork whose origin stopped here (the
            // fork's overrides come in, and the engine goes on from a resume, as it did).
            if first.event_type == "mission.forked" {
                cursor.stop_at(first);
                return Err(replay_error("the mission was forked here"));
            }
            let resuming = request.events.first().is_some_and(|e| {
                matches!(
                    e.event_type.as_str(),
                    "mission.interrupted" | "mission.resumed"
                )
            });
            if matches!(
                first.event_type.as_str(),
                "mission.interrupted" | "mission.resumed"
            ) && !resuming
            {
                cursor.stop_at(first);
                return Err(replay_error("the recording was interrupted here"));
            }
        }
        // The recording stops here while the engine would go on: the mission is still being
        // driven, or its process died and nobody resumed it. Everything so far matched.
        if cursor.next >= replay.recorded.len() {
            cursor.ended = true;
            return Err(replay_error("the recording ends here"));
        }
        // A fork (or a crash and resume) recorded inside what the engine appends at once: the
        // part before it is compared and taken, and the recording stops there as above.
        let stops_at = (1..request.events.len()).find(|&k| {
            replay.recorded.get(cursor.next + k).is_some_and(|r| {
                matches!(
                    r.event_type.as_str(),
                    "mission.forked" | "mission.interrupted" | "mission.resumed"
                ) && request.events[k].event_type != r.event_type
            })
        });
        let compared = stops_at.unwrap_or(request.events.len());
        let mut sealed = Vec::with_capacity(request.events.len());
        let mut prev_hash = cursor.accepted.last().map_or_else(
            || flightdeck_core::hash::GENESIS_HASH.to_string(),
            |e| e.hash.clone(),
        );
        for (i, event) in request.events.iter().enumerate().take(compared) {
            let seq = cursor.accepted.len() as u64 + 1 + i as u64;
            let recorded = replay.recorded.get(cursor.next + i);
            let expected = recorded.map(|r| comparable(&r.event_type, &r.data));
            let actual = comparable(&event.event_type, &event.data);
            let same_type = recorded.is_some_and(|r| r.event_type == event.event_type);
            if !same_type || !expected.as_ref().is_some_and(|e| same_json(e, &actual)) {
                let difference = match (&expected, same_type) {
                    (Some(expected), true) => first_difference_text(expected, &actual),
                    (Some(_), false) => Some(format!(
                        "the recording has `{}` here, the engine `{}`",
                        recorded.map_or("", |r| r.event_type.as_str()),
                        event.event_type
                    )),
                    (None, _) => Some("the recording ends before this event".into()),
                };
                let mut actual_typed = serde_json::json!({"type": event.event_type});
                actual_typed["data"] = event.data.clone();
                let expected_typed = recorded.map_or(
                    Value::Null,
                    |r| serde_json::json!({"type": r.event_type, "data": r.data}),
                );
                // Two model requests differ in their request records: say where in the
                // requests themselves (read back whole) they part.
                let records = same_type
                    .then(|| {
                        let digest = |data: &Value| {
                            data.get("request")
                                .and_then(Value::as_str)
                                .and_then(|d| d.parse::<Digest>().ok())
                        };
                        Some((digest(&recorded?.data)?, digest(&event.data)?))
                    })
                    .flatten()
                    .filter(|(then, now)| event.event_type == "model.requested" && then != now);
                cursor.divergence = Some(Divergence {
                    seq,
                    event_type: recorded
                        .map_or_else(|| event.event_type.clone(), |r| r.event_type.clone()),
                    expected: expected_typed,
                    actual: actual_typed,
                    difference,
                    records,
                });
                return Err(replay_error("the replay diverged"));
            }
            let at_ms = recorded
                .and_then(|r| flightdeck_core::clock::parse_rfc3339_millis(&r.at))
                .unwrap_or(event.at_ms);
            let stored = flightdeck_core::chain::seal(
                &request.mission,
                seq,
                at_ms,
                &prev_hash,
                &event.event_type,
                event.data.clone(),
            )
            .map_err(|e| StoreError::Encode(e.to_string()))?;
            prev_hash = stored.hash.clone();
            sealed.push(stored);
        }
        cursor.next += sealed.len();
        cursor.accepted.extend(sealed.iter().cloned());
        if let Some(stop) = stops_at.and_then(|_| replay.recorded.get(cursor.next)) {
            cursor.stop_at(stop);
            return Err(replay_error("the recording stopped inside this append"));
        }
        Ok(sealed)
    }
}

#[async_trait]
impl EventStore for ReplayStore {
    async fn append(&self, request: AppendRequest) -> Result<Vec<StoredEvent>, StoreError> {
        let result = self.compare_and_accept(request);
        if result.is_ok() {
            self.replay.signal_inputs();
        }
        let records = self
            .replay
            .cursor()
            .divergence
            .as_mut()
            .and_then(|d| d.records.take());
        if let Some((then, now)) = records {
            if let Some(text) = self.request_difference(&then, &now).await {
                if let Some(divergence) = self.replay.cursor().divergence.as_mut() {
                    divergence.difference = Some(text);
                }
            }
        }
        result
    }

    async fn events(&self, _mission: &str, after_seq: u64) -> Result<Vec<StoredEvent>, StoreError> {
        let cursor = self.replay.cursor();
        let from = usize::try_from(after_seq).unwrap_or(usize::MAX);
        Ok(cursor.accepted.iter().skip(from).cloned().collect())
    }

    async fn raw_events(&self, _mission: &str) -> Result<Vec<RawEvent>, StoreError> {
        Ok(Vec::new())
    }

    async fn mission(&self, id: &str) -> Result<Option<MissionRow>, StoreError> {
        let cursor = self.replay.cursor();
        if cursor.accepted.is_empty() || id != self.replay.mission {
            return Ok(None);
        }
        Ok(Some(MissionRow {
            id: id.to_string(),
            status: String::new(),
            template: String::new(),
            created_at_ms: 0,
            updated_at_ms: 0,
            last_seq: cursor.accepted.len() as u64,
            head_hash: cursor
                .accepted
                .last()
                .map(|e| e.hash.clone())
                .unwrap_or_default(),
            summary: Value::Null,
            lease: None,
        }))
    }

    async fn missions(&self, _limit: u32) -> Result<Vec<MissionRow>, StoreError> {
        Ok(Vec::new())
    }

    async fn mission_ids_with_prefix(
        &self,
        _prefix: &str,
        _limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }

    async fn acquire_lease(
        &self,
        _mission: &str,
        owner: &str,
        now_ms: i64,
        ttl_ms: i64,
        _steal_from: Option<&str>,
    ) -> Result<Option<Lease>, StoreError> {
        Ok(Some(Lease {
            owner: owner.to_string(),
            expires_ms: now_ms.saturating_add(ttl_ms),
            epoch: 0,
        }))
    }

    async fn release_lease(&self, _mission: &str, _owner: &str) -> Result<(), StoreError> {
        Ok(())
    }

    async fn release_claim(
        &self,
        _mission: &str,
        _owner: &str,
        _epoch: u64,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    /// A replay hands out no work.
    async fn claim_runnable(
        &self,
        _request: flightdeck_store::ClaimRequest,
    ) -> Result<Vec<flightdeck_store::Claimed>, StoreError> {
        Ok(Vec::new())
    }

    async fn lease_holders(&self, _now_ms: i64) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }

    async fn next_deadline_ms(&self) -> Result<Option<i64>, StoreError> {
        Ok(None)
    }

    async fn feed(
        &self,
        _after: u64,
        _limit: u32,
    ) -> Result<Vec<flightdeck_store::FeedEntry>, StoreError> {
        Ok(Vec::new())
    }

    async fn feed_head(&self) -> Result<u64, StoreError> {
        Ok(0)
    }

    /// A replay's feed is empty, so no reader of it got anywhere.
    async fn feed_cursor(&self, _reader: &str) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }

    /// A cursor is another process's state, like a posted input: a replay writes none.
    async fn save_feed_cursor(&self, _reader: &str, _position: u64) -> Result<(), StoreError> {
        Err(replay_error("a replay saves no feed cursors"))
    }

    /// A feed reader's lease is another process's state too: a replay takes none.
    async fn hold_feed_reader(
        &self,
        _reader: &str,
        _owner: &str,
        _now_ms: i64,
        _ttl_ms: i64,
        _steal_from: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        Err(replay_error("a replay holds no feed readers"))
    }

    async fn release_feed_reader(&self, _reader: &str, _owner: &str) -> Result<(), StoreError> {
        Err(replay_error("a replay holds no feed readers"))
    }

    /// GitHub deliveries are the server's state, not a mission's: a replay records none.
    async fn record_delivery(
        &self,
        _id: &str,
        _event: &str,
        _body: &[u8],
        _now_ms: i64,
    ) -> Result<bool, StoreError> {
        Err(replay_error("a replay records no GitHub deliveries"))
    }

    /// A replay has recorded none, so none is pending.
    async fn pending_deliveries(
        &self,
        _now_ms: i64,
        _limit: usize,
    ) -> Result<Vec<flightdeck_store::GitHubDelivery>, StoreError> {
        Ok(Vec::new())
    }

    async fn finish_delivery(
        &self,
        _id: &str,
        _outcome: &str,
        _now_ms: i64,
    ) -> Result<(), StoreError> {
        Err(replay_error("a replay handles no GitHub deliveries"))
    }

    async fn retry_delivery(
        &self,
        _id: &str,
        _error: &str,
        _retry_at_ms: i64,
    ) -> Result<(), StoreError> {
        Err(replay_error("a replay handles no GitHub deliveries"))
    }

    async fn delivery_outcome(&self, _id: &str) -> Result<Option<String>, StoreError> {
        Ok(None)
    }

    // The replay's inbox is the recording: what other processes asked of the mission (a
    // vote, a budget raise, a cancel) is given to the replayed driver as an input where the
    // recording has it, and the driver records it again (compared like every event).

    async fn post_input(&self, _input: NewInput) -> Result<i64, StoreError> {
        Err(replay_error(
            "a replay takes no inputs but the recorded ones",
        ))
    }

    async fn pending_inputs(&self, mission: &str) -> Result<Vec<InputRow>, StoreError> {
        Ok(self
            .replay
            .due_inputs()
            .into_iter()
            .map(|(seq, input)| InputRow {
                id: i64::try_from(seq).unwrap_or(i64::MAX),
                mission: mission.to_string(),
                kind: input.kind().to_string(),
                payload: input.payload(),
                posted_at_ms: 0,
                state: InputState::Pending,
            })
            .collect())
    }

    async fn input(&self, _id: i64) -> Result<Option<InputRow>, StoreError> {
        Ok(None)
    }

    /// Today's engine refuses what the recording took in: that is where they part.
    async fn refuse_input(&self, id: i64, reason: &str, _at_ms: i64) -> Result<(), StoreError> {
        let seq = u64::try_from(id).unwrap_or(0);
        let recorded = self.replay.recorded.iter().find(|e| e.seq == seq);
        self.replay.diverge(Divergence {
            seq,
            event_type: recorded.map_or_else(String::new, |e| e.event_type.clone()),
            expected: recorded.map_or(
                Value::Null,
                |e| serde_json::json!({"type": e.event_type, "data": e.data}),
            ),
            actual: Value::Null,
            difference: Some(format!(
                "today's engine refuses the recorded input: {reason}"
            )),
            records: None,
        });
        Ok(())
    }

    async fn missions_with_pending_inputs(&self, _limit: u32) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }

    // Team quotas: a replay reserves and settles nothing. What a quota answered is in the
    // recording: the attempt being reserved is recorded next as its `model.requested`, or as
    // a quota's `budget.exceeded` instead (after what was staged before it: a model's answer,
    // a read's request and result). A recorded refusal of a hold the engine asks for is
    // answered as recorded (and the engine records it again, to be compared); any other
    // reservation is granted.

    async fn reserve_quota(
        &self,
        reservation: flightdeck_store::QuotaReservation,
    ) -> Result<flightdeck_store::QuotaGrant, StoreError> {
        let cursor = self.replay.cursor();
        let next = self
            .replay
            .recorded
            .iter()
            .skip(cursor.next)
            .find(|e| matches!(e.event_type.as_str(), "model.requested" | "budget.exceeded"))
            .map(StoredEvent::kind);
        if let Some(Ok(EventKind::BudgetExceeded(exceeded))) = next {
            let dimension = exceeded
                .dimension
                .strip_prefix("team_")
                .unwrap_or_default()
                .to_string();
            if let Some(team) = exceeded.team {
                let asked = reservation
                    .holds
                    .iter()
                    .any(|hold| hold.team == team && hold.dimension == dimension);
                if asked {
                    return Ok(flightdeck_store::QuotaGrant::Refused {
                        team,
                        dimension,
                        used: exceeded.used,
                        limit: exceeded.limit,
                        needed: exceeded.needed,
                    });
                }
            }
        }
        Ok(flightdeck_store::QuotaGrant::Granted { again: false })
    }

    async fn settle_quota(
        &self,
        _settlement: flightdeck_store::QuotaSettlement,
    ) -> Result<bool, StoreError> {
        Ok(false)
    }

    async fn quota_usage(
        &self,
        _period: &str,
    ) -> Result<Vec<flightdeck_store::QuotaUsage>, StoreError> {
        Ok(Vec::new())
    }

    /// Nothing but the replay itself changes its store.
    async fn subscribe(&self) -> Result<ChangeFeed, StoreError> {
        Ok(ChangeFeed::never())
    }

    /// Fires when recorded inputs come due.
    async fn subscribe_inputs(&self) -> Result<ChangeFeed, StoreError> {
        Ok(ChangeFeed::from_watch(self.replay.inbox.subscribe()))
    }
}

/// The clock of a replay: the time of the recorded event that comes next.
pub(crate) struct ReplayClock {
    pub(crate) replay: Arc<Replay>,
}

impl Clock for ReplayClock {
    fn now_ms(&self) -> i64 {
        let cursor = self.replay.cursor();
        let recorded = &self.replay.recorded;
        recorded
            .get(cursor.next)
            .or_else(|| recorded.last())
            .and_then(|e| flightdeck_core::clock::parse_rfc3339_millis(&e.at))
            .unwrap_or(0)
    }
}

/// Replays never wait between retries.
pub(crate) struct NoWait;

#[async_trait]
impl Sleeper for NoWait {
    async fn sleep(&self, _duration: Duration) {}
}

/// Recorded artifacts, read; the replay's own, kept in memory.
pub(crate) struct OverlayArtifacts {
    /// Every artifact the recording names: a replay that matches makes mostly these, and
    /// they need not be kept again.
    recorded: std::collections::HashSet<Digest>,
    base: Arc<dyn ArtifactStore>,
    new: Mutex<HashMap<Digest, Vec<u8>>>,
}

impl OverlayArtifacts {
    /// Reads, in one go, the recorded artifacts a replay serves back (tool outputs, model
    /// answers), instead of one store read per call.
    async fn prefetch(&self, wanted: &[Digest]) -> Result<(), ArtifactError> {
        let bytes = self.base.get_many(wanted).await?;
        self.memory().extend(wanted.iter().cloned().zip(bytes));
        Ok(())
    }

    /// An artifact already in memory (prefetched or made by the replay).
    pub(crate) fn get_now(&self, digest: &Digest) -> Option<Vec<u8>> {
        self.memory().get(digest).cloned()
    }

    fn memory(&self) -> MutexGuard<'_, HashMap<Digest, Vec<u8>>> {
        match self.new.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

#[async_trait]
impl ArtifactStore for OverlayArtifacts {
    async fn put(&self, bytes: &[u8]) -> Result<Digest, ArtifactError> {
        let digest = Digest::of(bytes);
        if !self.recorded.contains(&digest) {
            self.memory().insert(digest.clone(), bytes.to_vec());
        }
        Ok(digest)
    }

    async fn get(&self, digest: &Digest) -> Result<Vec<u8>, ArtifactError> {
        if let Some(bytes) = self.memory().get(digest) {
            return Ok(bytes.clone());
        }
        self.base.get(digest).await
    }

    async fn contains(&self, digest: &Digest) -> Result<bool, ArtifactError> {
        if self.memory().contains_key(digest) {
            return Ok(true);
        }
        self.base.contains(digest).await
    }

    fn local_path(&self, digest: &Digest) -> Option<PathBuf> {
        self.base.local_path(digest)
    }
}

/// The recording, as the replay provider asks it for each model's next attempt.
#[async_trait]
impl flightdeck_models::Recording for Replay {
    async fn next_attempt(&self, model: &str) -> Option<RecordedAttempt> {
        let read = |digest: &Digest| self.artifacts.get_now(digest);
        Some(match self.next_outcome(model)? {
            RecordedOutcome::Responded { raw } => match read(&raw) {
                Some(response_body) => RecordedAttempt::Answered { response_body },
                None => RecordedAttempt::Failed {
                    message: format!("the recorded answer {raw} is not in the recording"),
                    kind: "replay_invalid".into(),
                    retryable: false,
                    response_body: None,
                },
            },
            RecordedOutcome::Failed {
                error,
                kind,
                retryable,
                response,
            } => RecordedAttempt::Failed {
                message: error,
                kind,
                retryable,
                response_body: response.as_ref().and_then(read),
            },
            RecordedOutcome::Interrupted => RecordedAttempt::Interrupted,
        })
    }
}

/// Drives the replay: the mission's creation and run, then, wherever the recording stopped
/// and went on (a park, a crash, an approval), whatever came from outside and a resume.
pub(crate) async fn drive(
    engine: &crate::Engine,
    replay: &Arc<Replay>,
    request: crate::CreateMission,
) -> Result<ReplayReport, EngineError> {
    let id = replay.mission.clone();
    let mut first = Some(request);
    let mut last_position = None;
    loop {
        let position = replay.cursor().next;
        // A resume that gets no further than the last one would loop for ever.
        if last_position == Some(position) {
            let event = replay.recorded.get(position);
            replay.diverge(Divergence {
                seq: position as u64 + 1,
                event_type: event.map_or_else(String::new, |e| e.event_type.clone()),
                expected: event.map_or(
                    Value::Null,
                    |e| serde_json::json!({"type": e.event_type, "data": e.data}),
                ),
                actual: Value::Null,
                difference: Some("resuming the engine here makes no progress".into()),
                records: None,
            });
            break;
        }
        last_position = Some(position);
        let result = match first.take() {
            Some(request) => engine.run(request).await.map(|_| ()),
            None => {
                let by = {
                    let cursor = replay.cursor();
                    replay.recorded[cursor.next.min(replay.recorded.len())..]
                        .iter()
                        .find_map(|e| match e.kind() {
                            Ok(EventKind::MissionResumed(r)) => Some(r.by),
                            _ => None,
                        })
                        .unwrap_or_else(|| "replay".to_string())
                };
                replay.cursor().crashed = false;
                engine.resume(&id, &by).await.map(|_| ())
            }
        };
        if replay.diverged() {
            break;
        }
        if replay.cursor().ended {
            break;
        }
        if let Err(e) = result {
            let crashed = replay.cursor().crashed;
            if !crashed {
                return Err(e);
            }
        }
        let next = replay.next_recorded().cloned();
        match next {
            None => {
                // Stopped where the recording stops mid-way (a call without its result).
                let mut cursor = replay.cursor();
                if cursor.crashed {
                    cursor.ended = true;
                }
                break;
            }
            // Resumed by someone, or inputs that came while it was parked (taken in when it
            // is driven again), or an expiry (fired when it is driven again).
            Some(event)
                if matches!(
                    event.event_type.as_str(),
                    "mission.interrupted" | "mission.resumed" | "approval.expired"
                ) || foreign(&event) => {}
            Some(event) => {
                let seq = event.seq;
                replay.diverge(Divergence {
                    seq,
                    event_type: event.event_type.clone(),
                    expected: serde_json::json!({"type": event.event_type, "data": event.data}),
                    actual: Value::Null,
                    difference: Some("the engine stopped here; the recording goes on".to_string()),
                    records: None,
                });
                break;
            }
        }
    }
    let created_now = {
        let cursor = replay.cursor();
        cursor.accepted.first().and_then(|e| match e.kind() {
            Ok(EventKind::MissionCreated(c)) => Some(c),
            _ => None,
        })
    };
    Ok(replay.report(created_now.as_ref()))
}

impl crate::Engine {
    /// Replays mission `id`, whose timeline is `recorded` (read from this engine's store),
    /// with today's template, policy and prompts (`request`, which carries the recorded id,
    /// params and base commit). Nothing is written to the store or the artifacts; the scratch
    /// worktree lives under `scratch` and is removed afterwards.
    pub async fn replay(
        &self,
        id: &str,
        recorded: Vec<StoredEvent>,
        request: crate::CreateMission,
        mode: ReplayMode,
        scratch: PathBuf,
    ) -> Result<ReplayReport, EngineError> {
        let cfg = self.config();
        if recorded.is_empty() {
            return Err(EngineError::UnknownMission(id.to_string()));
        }
        let hidden = cfg
            .workspaces_dir
            .parent()
            .map_or_else(|| cfg.workspaces_dir.clone(), std::path::Path::to_path_buf);
        let replay = Arc::new(Replay::new(
            mode,
            id,
            recorded,
            cfg.artifacts.clone(),
            hidden.clone(),
        ));
        replay.artifacts.prefetch(&replay.served_artifacts).await?;
        let ports = replay_ports(&replay, cfg, &scratch, hidden);
        let workspaces = ports.workspaces.clone();
        let engine = crate::Engine::new(crate::EngineConfig {
            store: Arc::new(ReplayStore {
                replay: replay.clone(),
            }),
            artifacts: replay.artifacts(),
            clock: Arc::new(ReplayClock {
                replay: replay.clone(),
            }),
            observer: Arc::new(crate::Silent),
            workspaces_dir: scratch.clone(),
            worker: crate::WorkerId(format!("replay-{}", std::process::id())),
            lease_ttl: crate::config::DEFAULT_LEASE_TTL,
            hand_back_on_shutdown: false,
            sleeper: Arc::new(NoWait),
            ports,
            projection: false,
            anchors: None,
            ..cfg.clone()
        });
        let repo = flightdeck_workspace::repo_root(&request.repo).ok();
        let report = drive(&engine, &replay, request).await;
        workspaces.remove(id, repo.as_deref()).await;
        let _ = std::fs::remove_dir_all(&scratch);
        report
    }
}

/// The ports of a replay: recorded results (verify) or real calls compared with them
/// (re-execute); commits and secrets never; workspaces in `scratch`, with the recorded
/// toolchain and, verifying, a stand-in for the container that runs nothing.
fn replay_ports(
    replay: &Arc<Replay>,
    cfg: &crate::EngineConfig,
    scratch: &std::path::Path,
    hidden: PathBuf,
) -> crate::Ports {
    let containers: Arc<dyn crate::workspaces::ContainerRuntime> = match replay.mode {
        ReplayMode::Verify => Arc::new(StandInContainers {
            replay: replay.clone(),
        }),
        ReplayMode::Reexecute => Arc::new(crate::workspaces::DockerContainers),
    };
    let secrets: Arc<dyn crate::ports::SecretPort> = Arc::new(NoSecrets);
    let live = crate::workspaces::LiveWorkspaces {
        config: crate::workspaces::WorkspaceConfig {
            workspaces_dir: scratch.to_path_buf(),
            data_dir: hidden.clone(),
            hidden_files: cfg.workspace.hidden_files.clone(),
            setup_timeout: cfg.default_step_timeout,
            // Never the recorded mission's container.
            container_prefix: format!("flightdeck-replay-{}-", std::process::id()),
            // What the replay makes stays in the scratch directory; the recorded mission's
            // snapshots are read from the data directory.
            objects_dir: scratch.join("objects"),
            recorded_objects_dir: Some(hidden.join("objects")),
        },
        secrets: secrets.clone(),
        redact: cfg.secrets.clone(),
        containers,
    };
    crate::Ports {
        commands: Arc::new(ReplayCommands {
            replay: replay.clone(),
        }),
        files: Arc::new(ReplayFiles {
            replay: replay.clone(),
        }),
        publisher: Arc::new(ReplayPublisher {
            replay: replay.clone(),
        }),
        secrets,
        models: Arc::new(ReplayModels {
            replay: replay.clone(),
        }),
        workspaces: Arc::new(RecordedWorkspaces {
            inner: live,
            recorded: replay.recorded_provisioned(),
        }),
        repos: Arc::new(crate::ports::RecordedRepo),
        forge: Arc::new(ReplayForge {
            replay: replay.clone(),
        }),
    }
}

/// Commands: the recorded outcome (verify), or the real one compared with it (re-execute).
struct ReplayCommands {
    replay: Arc<Replay>,
}

#[async_trait]
impl crate::ports::CommandPort for ReplayCommands {
    async fn run(
        &self,
        call_id: &str,
        workspace: &dyn flightdeck_workspace::Workspace,
        worktree: &Worktree,
        spec: &CommandSpec,
    ) -> Result<CommandOutcome, EngineError> {
        self.replay
            .command(call_id, workspace, worktree, spec)
            .await
    }
}

/// File tools: the recorded result (verify), or the real one compared with it.
struct ReplayFiles {
    replay: Arc<Replay>,
}

impl crate::ports::FilePort for ReplayFiles {
    fn run(
        &self,
        call_id: &str,
        fs: &ConfinedFs,
        worktree: &Worktree,
        invocation: &ToolInvocation,
    ) -> Result<crate::ports::FileOutcome, EngineError> {
        let (ok, text) = self.replay.file_tool(call_id, fs, worktree, invocation)?;
        Ok(crate::ports::FileOutcome {
            ok,
            text,
            duration_ms: self.replay.duration_ms(call_id).unwrap_or(0),
        })
    }

    fn duration_ms(&self, call_id: &str, measured: Duration) -> u64 {
        self.replay
            .duration_ms(call_id)
            .unwrap_or_else(|| crate::ports::millis(measured))
    }
}

/// A replay commits nothing: it takes what the recording published.
struct ReplayPublisher {
    replay: Arc<Replay>,
}

#[async_trait]
impl crate::ports::Publisher for ReplayPublisher {
    async fn commit(
        &self,
        _worktree: &Worktree,
        _commit: &crate::ports::Commit,
    ) -> Result<crate::ports::Committed, EngineError> {
        let (commit, patch) = self.replay.published();
        Ok(crate::ports::Committed {
            commit,
            patch: crate::ports::PatchBytes::Recorded(patch),
        })
    }
}

/// A replay pushes nothing: the proposal is the recorded one.
struct ReplayForge {
    replay: Arc<Replay>,
}

#[async_trait]
impl crate::ports::Forge for ReplayForge {
    async fn propose(
        &self,
        _worktree: &Worktree,
        proposal: &crate::ports::Proposal,
    ) -> Result<flightdeck_core::event::ChangeProposed, EngineError> {
        self.replay.proposed(&proposal.tree).ok_or_else(|| {
            EngineError::Forge(
                "the replayed mission proposes a change on GitHub, but the recorded timeline has no change.proposed of that tree".to_string(),
            )
        })
    }
}

/// A replay gives no secrets (re-executed commands run without them).
struct NoSecrets;

impl crate::ports::SecretPort for NoSecrets {
    fn env(&self, _names: &[String]) -> Result<Vec<(String, String)>, EngineError> {
        Ok(Vec::new())
    }
}

/// Models: each serves its recorded answers, in order.
struct ReplayModels {
    replay: Arc<Replay>,
}

impl crate::ports::ModelPort for ReplayModels {
    fn provider(&self, model: &str, built: Arc<dyn Provider>) -> Arc<dyn Provider> {
        Arc::new(flightdeck_models::ReplayProvider::new(
            model,
            built,
            self.replay.clone(),
        ))
    }

    fn needs_keys(&self) -> bool {
        false
    }
}

/// Workspaces made with what the recording found (toolchain, limits), not probed again.
struct RecordedWorkspaces {
    inner: crate::workspaces::LiveWorkspaces,
    recorded: Option<WorkspaceProvisioned>,
}

#[async_trait]
impl crate::workspaces::WorkspaceProvider for RecordedWorkspaces {
    async fn provision(
        &self,
        request: &crate::workspaces::WorkspaceRequest<'_>,
    ) -> Result<crate::workspaces::Provisioned, EngineError> {
        let request = crate::workspaces::WorkspaceRequest {
            recorded: self.recorded.as_ref(),
            ..*request
        };
        self.inner.provision(&request).await
    }

    async fn attach(
        &self,
        request: &crate::workspaces::WorkspaceRequest<'_>,
    ) -> Result<crate::workspaces::Provisioned, EngineError> {
        let request = crate::workspaces::WorkspaceRequest {
            recorded: self.recorded.as_ref(),
            ..*request
        };
        self.inner.attach(&request).await
    }

    async fn set_network(&self, id: &str, on: bool) -> Result<(), EngineError> {
        self.inner.set_network(id, on).await
    }

    async fn remove(&self, id: &str, repo: Option<&std::path::Path>) {
        self.inner.remove(id, repo).await
    }

    fn worktree_path(&self, id: &str) -> PathBuf {
        self.inner.worktree_path(id)
    }

    fn container_name(&self, id: &str) -> String {
        self.inner.container_name(id)
    }

    fn installation(&self) -> String {
        self.inner.installation()
    }
}

/// A verifying replay's container: nothing runs, nothing is made; commands are served from
/// the recording, and the worktree is set to the tree the recorded setup left.
struct StandInContainers {
    replay: Arc<Replay>,
}

#[async_trait]
impl crate::workspaces::ContainerRuntime for StandInContainers {
    async fn create(
        &self,
        plan: &crate::container::ContainerPlan,
        _setup: &crate::workspaces::SetupRun<'_>,
    ) -> Result<crate::workspaces::Created, EngineError> {
        let root = plan.spec.worktree.clone();
        // What the recorded provisioning made: nothing is fetched, built or brought up.
        let recorded = self.replay.recorded_provisioned().unwrap_or_default();
        Ok(crate::workspaces::Created {
            workspace: Arc::new(flightdeck_workspace::LocalWorkspace::new(
                root,
                flightdeck_workspace::Sandbox::None,
            )),
            image_digest: recorded.image_digest,
            image: recorded.image,
            features: recorded.features,
            compose: recorded.compose,
            setup: recorded.setup,
            // Already in the recorded event's `ignored`.
            ignored: std::collections::BTreeMap::new(),
        })
    }

    async fn attach(
        &self,
        _name: &str,
    ) -> Result<Option<Arc<dyn flightdeck_workspace::Workspace>>, EngineError> {
        Ok(None)
    }

    async fn set_network(&self, _name: &str, _on: bool) -> Result<(), EngineError> {
        Ok(())
    }

    async fn remove(&self, _name: &str) {}

    fn executes(&self) -> bool {
        false
    }
}
