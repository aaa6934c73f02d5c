//! The span model: a driven segment's events → OpenTelemetry spans, following the GenAI
//! semantic conventions. Pure and deterministic: no IO, no clock (the caller passes the times
//! a segment opened and closed), ids derived from the mission id and seqs.
//!
//! One trace per driven segment (a driver opening a mission until it closes), rooted in an
//! `invoke_agent` span; `chat {model}` spans for model call attempts and `execute_tool {tool}`
//! spans for tool calls, children of the root. Spans carry names, ids, counts and seqs, never
//! contents: prompts, outputs, arguments and error texts stay in the timeline.

use std::collections::BTreeMap;

use flightdeck_core::event::ToolCompleted;
use flightdeck_core::{EventKind, MissionState, MissionStatus, StoredEvent};
use sha2::{Digest as _, Sha256};

/// The attribute names this model writes.
pub mod keys {
    pub const OPERATION_NAME: &str = "gen_ai.operation.name";
    pub const CONVERSATION_ID: &str = "gen_ai.conversation.id";
    pub const AGENT_NAME: &str = "gen_ai.agent.name";
    pub const PROVIDER_NAME: &str = "gen_ai.provider.name";
    pub const REQUEST_MODEL: &str = "gen_ai.request.model";
    pub const RESPONSE_MODEL: &str = "gen_ai.response.model";
    pub const INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
    pub const OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
    pub const TOOL_NAME: &str = "gen_ai.tool.name";
    pub const TOOL_CALL_ID: &str = "gen_ai.tool.call.id";
    pub const ERROR_TYPE: &str = "error.type";
    pub const MISSION_ID: &str = "flightdeck.mission.id";
    pub const EVENT_SEQ: &str = "flightdeck.event.seq";
    pub const MISSION_STATUS: &str = "flightdeck.mission.status";
    pub const SEGMENT_END: &str = "flightdeck.segment.end";
    pub const MODEL_CALL_ID: &str = "flightdeck.model.call_id";
    pub const MODEL_ATTEMPT: &str = "flightdeck.model.attempt";
    pub const ROLE: &str = "flightdeck.agent.role";
    pub const COST_USD: &str = "flightdeck.cost_usd";
    pub const TOOL_ACTOR: &str = "flightdeck.tool.actor";
    pub const TOOL_EXIT_CODE: &str = "flightdeck.tool.exit_code";
    pub const TOOL_REQUESTED_EARLIER: &str = "flightdeck.tool.requested_earlier";
    pub const POLICY_DECISION: &str = "flightdeck.policy.decision";
    pub const POLICY_TIER: &str = "flightdeck.policy.tier";
    pub const APPROVAL_ID: &str = "flightdeck.approval.id";
    pub const SPAN_CUT: &str = "flightdeck.span.cut";
    pub const LINK_KIND: &str = "flightdeck.link.kind";
}

pub type TraceId = [u8; 16];
pub type SpanId = [u8; 8];

/// A typed attribute value (OTLP's `AnyValue`, the kinds used here).
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    Ints(Vec<i64>),
}

impl From<&str> for AttrValue {
    fn from(s: &str) -> AttrValue {
        AttrValue::Str(s.to_string())
    }
}

impl From<String> for AttrValue {
    fn from(s: String) -> AttrValue {
        AttrValue::Str(s)
    }
}

/// OTLP's `Span.SpanKind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Internal,
    Client,
}

/// OTLP's `Status`: `Unset` may carry a message saying why a span was cut short without
/// anything having failed (a park).
#[derive(Debug, Clone, PartialEq)]
pub enum SpanStatus {
    Unset(Option<String>),
    Ok,
    Error(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub attributes: Vec<(&'static str, AttrValue)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent: Option<SpanId>,
    pub name: String,
    pub kind: SpanKind,
    /// Milliseconds since the Unix epoch (events are stamped to the millisecond).
    pub start_ms: i64,
    pub end_ms: i64,
    pub attributes: Vec<(&'static str, AttrValue)>,
    pub status: SpanStatus,
    pub links: Vec<Link>,
}

impl Span {
    /// The value of attribute `key`, if set.
    pub fn attribute(&self, key: &str) -> Option<&AttrValue> {
        self.attributes
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    fn set(&mut self, key: &'static str, value: AttrValue) {
        match self.attributes.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.attributes.push((key, value)),
        }
    }
}

fn digest(parts: &[&str]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hasher.finalize().into()
}

/// Never all zeros (an invalid id in OTLP).
fn nonzero<const N: usize>(mut id: [u8; N]) -> [u8; N] {
    if id.iter().all(|b| *b == 0) {
        id[N - 1] = 1;
    }
    id
}

fn take<const N: usize>(bytes: &[u8; 32]) -> [u8; N] {
    let mut id = [0u8; N];
    id.copy_from_slice(&bytes[..N]);
    nonzero(id)
}

/// The trace of the segment of `mission` whose first event is `first_seq`.
pub fn trace_id(mission: &str, first_seq: u64) -> TraceId {
    take(&digest(&[
        "flightdeck.trace",
        mission,
        &first_seq.to_string(),
    ]))
}

/// The root (`invoke_agent`) span of that segment.
pub fn root_span_id(mission: &str, first_seq: u64) -> SpanId {
    take(&digest(&[
        "flightdeck.span.root",
        mission,
        &first_seq.to_string(),
    ]))
}

/// The span whose first event is `seq` (a model attempt, a tool call).
pub fn span_id(mission: &str, seq: u64) -> SpanId {
    take(&digest(&["flightdeck.span", mission, &seq.to_string()]))
}

/// The link from a segment's root to the root of the segment that began at `first_seq`.
pub fn link_to(mission: &str, first_seq: u64) -> Link {
    Link {
        trace_id: trace_id(mission, first_seq),
        span_id: root_span_id(mission, first_seq),
        attributes: vec![(keys::LINK_KIND, "previous_segment".into())],
    }
}

/// A tool call requested before the segment opened and not completed (one that waited for an
/// approval): its execution in this segment is a span of its own.
#[derive(Debug, Clone)]
struct Waiting {
    tool: String,
    actor: String,
}

#[derive(Debug)]
struct Open {
    span: Span,
    seqs: Vec<i64>,
}

/// How a segment ended, read from the mission's state when its driver closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentEnd {
    /// Waiting for approvals.
    Parked,
    /// Blocked by a budget or a breaker.
    Blocked,
    /// The mission reached a final status.
    Finished(MissionStatus),
    /// Its process stopped (SIGINT / SIGTERM, a worker handing it back).
    Interrupted,
    /// The driver closed while the mission still runs: it lost the lease, or an error.
    Stopped,
}

impl SegmentEnd {
    pub fn of(state: &MissionState) -> SegmentEnd {
        if state.status.is_terminal() {
            SegmentEnd::Finished(state.status)
        } else if state.halted {
            SegmentEnd::Interrupted
        } else {
            match state.status {
                MissionStatus::AwaitingApproval => SegmentEnd::Parked,
                MissionStatus::Blocked => SegmentEnd::Blocked,
                _ => SegmentEnd::Stopped,
            }
        }
    }

    /// The value of `flightdeck.segment.end` and `flightdeck.span.cut`.
    pub fn code(self) -> &'static str {
        match self {
            SegmentEnd::Parked => "parked",
            SegmentEnd::Blocked => "blocked",
            SegmentEnd::Finished(_) => "finished",
            SegmentEnd::Interrupted => "interrupted",
            SegmentEnd::Stopped => "stopped",
        }
    }

    /// The status of a span still open when the segment ended.
    fn cut_status(self) -> SpanStatus {
        match self {
            SegmentEnd::Parked => SpanStatus::Unset(Some(
                "the mission parked for an approval; what follows is in a later segment".into(),
            )),
            SegmentEnd::Blocked => SpanStatus::Unset(Some(
                "the mission was blocked (budget or breaker); what follows is in a later segment"
                    .into(),
            )),
            SegmentEnd::Finished(status) => {
                SpanStatus::Error(format!("the mission ended ({status}) before this finished"))
            }
            SegmentEnd::Interrupted => SpanStatus::Error(
                "the process driving the mission stopped (interrupted) before this finished".into(),
            ),
            SegmentEnd::Stopped => SpanStatus::Error(
                "the driver stopped (lease lost or an error) before this finished".into(),
            ),
        }
    }
}

/// A segment's root, ready to export once its link is known (see
/// [`previous_segment_start`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedSegment {
    pub mission: String,
    /// The root span, without its link.
    pub root: Span,
    /// The last seq before the segment: the previous segment is the one that holds it.
    pub after_seq: u64,
}

/// One driven segment of a mission, as its events come.
#[derive(Debug)]
pub struct Segment {
    mission: String,
    agent: Option<String>,
    opened_ms: i64,
    /// The head when the driver opened: the segment's first event is `after_seq + 1`.
    after_seq: u64,
    first: Option<(u64, i64)>,
    last: Option<(u64, i64)>,
    waiting: BTreeMap<String, Waiting>,
    chats: BTreeMap<String, Open>,
    tools: BTreeMap<String, Open>,
}

impl Segment {
    /// A driver opened the mission (`state` as it read it) at `opened_ms`.
    pub fn open(state: &MissionState, opened_ms: i64) -> Segment {
        let waiting = state
            .tool_calls
            .iter()
            .filter(|(_, call)| call.completed.is_none() && !call.interrupted)
            .map(|(id, call)| {
                (
                    id.clone(),
                    Waiting {
                        tool: call.requested.tool.clone(),
                        actor: call.requested.actor.clone(),
                    },
                )
            })
            .collect();
        Segment {
            mission: state.id.clone(),
            agent: state.created.as_ref().map(|c| c.template.clone()),
            opened_ms,
            after_seq: state.events,
            first: None,
            last: None,
            waiting,
            chats: BTreeMap::new(),
            tools: BTreeMap::new(),
        }
    }

    fn ids(&self) -> (TraceId, SpanId) {
        let first = self.first.map_or(self.after_seq + 1, |(seq, _)| seq);
        (
            trace_id(&self.mission, first),
            root_span_id(&self.mission, first),
        )
    }

    fn child(&self, seq: u64, name: String, kind: SpanKind, at_ms: i64) -> Span {
        let (trace, root) = self.ids();
        Span {
            trace_id: trace,
            span_id: span_id(&self.mission, seq),
            parent: Some(root),
            name,
            kind,
            start_ms: at_ms,
            end_ms: at_ms,
            attributes: vec![(keys::MISSION_ID, self.mission.as_str().into())],
            status: SpanStatus::Unset(None),
            links: Vec::new(),
        }
    }

    /// Takes in an appended event; returns the spans it ended.
    pub fn event(&mut self, event: &StoredEvent) -> Vec<Span> {
        if event.mission != self.mission || event.seq <= self.after_seq {
            return Vec::new();
        }
        let at = event.at_millis();
        let seq = event.seq;
        if self.first.is_none() {
            self.first = Some((seq, at));
        }
        self.last = Some((seq, at));
        let Ok(kind) = event.kind() else {
            return Vec::new();
        };
        let mut ended = Vec::new();
        match kind {
            EventKind::ModelRequested(r) => {
                if let Some(open) = self.chats.remove(&r.call_id) {
                    ended.push(finish(
                        open,
                        at,
                        SpanStatus::Error("another attempt started before this one ended".into()),
                    ));
                }
                let mut span = self.child(seq, format!("chat {}", r.model), SpanKind::Client, at);
                span.attributes.extend([
                    (keys::OPERATION_NAME, "chat".into()),
                    (keys::PROVIDER_NAME, r.provider.as_str().into()),
                    (keys::REQUEST_MODEL, r.model.as_str().into()),
                    (keys::MODEL_CALL_ID, r.call_id.as_str().into()),
                    (keys::MODEL_ATTEMPT, AttrValue::Int(i64::from(r.attempt))),
                    (keys::ROLE, r.role.as_str().into()),
                ]);
                self.chats.insert(
                    r.call_id,
                    Open {
                        span,
                        seqs: vec![seq_value(seq)],
                    },
                );
            }
            EventKind::ModelResponded(r) => {
                if let Some(mut open) = self.chats.remove(&r.call_id) {
                    open.seqs.push(seq_value(seq));
                    let span = &mut open.span;
                    span.set(keys::RESPONSE_MODEL, r.model_served.as_str().into());
                    span.set(keys::INPUT_TOKENS, count(r.input_tokens));
                    span.set(keys::OUTPUT_TOKENS, count(r.output_tokens));
                    span.set(keys::COST_USD, AttrValue::Double(r.cost_usd));
                    ended.push(finish(open, at, SpanStatus::Unset(None)));
                }
            }
            EventKind::ModelFailed(f) => {
                if let Some(mut open) = self.chats.remove(&f.call_id) {
                    open.seqs.push(seq_value(seq));
                    // The kind, never the error's text (it may quote what was sent or said).
                    let kind = f.kind.unwrap_or_else(|| "_OTHER".to_string());
                    open.span.set(keys::ERROR_TYPE, kind.as_str().into());
                    ended.push(finish(open, at, SpanStatus::Error(kind)));
                }
            }
            EventKind::ToolRequested(t) => {
                if let Some(open) = self.tools.remove(&t.call_id) {
                    ended.push(finish(
                        open,
                        at,
                        SpanStatus::Error("requested again before it completed".into()),
                    ));
                }
                self.waiting.remove(&t.call_id);
                let span = self.tool_span(seq, &t.tool, &t.call_id, &t.actor, at);
                self.tools.insert(
                    t.call_id,
                    Open {
                        span,
                        seqs: vec![seq_value(seq)],
                    },
                );
            }
            EventKind::PolicyDecided(p) => {
                if let Some(mut open) = self.tools.remove(&p.subject) {
                    open.seqs.push(seq_value(seq));
                    open.span
                        .set(keys::POLICY_DECISION, p.decision.as_str().into());
                    open.span.set(keys::POLICY_TIER, p.tier.as_str().into());
                    if p.decision == "deny" {
                        open.span.set(keys::ERROR_TYPE, "policy_denied".into());
                        ended.push(finish(
                            open,
                            at,
                            SpanStatus::Error("denied by the policy".into()),
                        ));
                    } else {
                        self.tools.insert(p.subject, open);
                    }
                }
            }
            EventKind::ApprovalRequested(a) => {
                if let Some(open) = self.tools.get_mut(&a.subject) {
                    open.seqs.push(seq_value(seq));
                    open.span
                        .set(keys::APPROVAL_ID, a.approval_id.as_str().into());
                }
            }
            EventKind::ToolCompleted(c) => {
                if let Some(mut open) = self.tools.remove(&c.call_id) {
                    open.seqs.push(seq_value(seq));
                    let status = completed(&mut open.span, &c);
                    ended.push(finish(open, at, status));
                } else if let Some(waiting) = self.waiting.remove(&c.call_id) {
                    // Requested (and approved) before this segment: its execution is here.
                    let ran_ms = i64::try_from(c.duration_ms).unwrap_or(i64::MAX);
                    let start = at.saturating_sub(ran_ms).max(self.opened_ms).min(at);
                    let mut span =
                        self.tool_span(seq, &waiting.tool, &c.call_id, &waiting.actor, start);
                    span.set(keys::TOOL_REQUESTED_EARLIER, AttrValue::Bool(true));
                    let status = completed(&mut span, &c);
                    let open = Open {
                        span,
                        seqs: vec![seq_value(seq)],
                    };
                    ended.push(finish(open, at, status));
                }
            }
            EventKind::MissionInterrupted(i) => {
                // Calls an interruption names run again under new ids.
                for call in &i.calls {
                    self.waiting.remove(call);
                }
            }
            _ => {}
        }
        ended
    }

    fn tool_span(&self, seq: u64, tool: &str, call_id: &str, actor: &str, at: i64) -> Span {
        let mut span = self.child(seq, format!("execute_tool {tool}"), SpanKind::Internal, at);
        span.attributes.extend([
            (keys::OPERATION_NAME, "execute_tool".into()),
            (keys::TOOL_NAME, tool.into()),
            (keys::TOOL_CALL_ID, call_id.into()),
            (keys::TOOL_ACTOR, actor.into()),
        ]);
        span
    }

    /// The driver closed at `closed_ms` with the mission in `state`: every span still open is
    /// ended there, with a status saying why, and the root is made. `None` when the segment
    /// appended nothing (no trace).
    pub fn close(self, state: &MissionState, closed_ms: i64) -> Option<(Vec<Span>, ClosedSegment)> {
        let ((first, first_at), (last, last_at)) = (self.first?, self.last?);
        let end = SegmentEnd::of(state);
        let (trace, root_id) = self.ids();
        let mut spans = Vec::with_capacity(self.chats.len() + self.tools.len());
        let end_ms = closed_ms.max(last_at);
        for open in self.chats.into_values().chain(self.tools.into_values()) {
            let mut open = open;
            open.span.set(keys::SPAN_CUT, end.code().into());
            spans.push(finish(open, end_ms, end.cut_status()));
        }
        let start_ms = self.opened_ms.min(first_at);
        let name = match &self.agent {
            Some(agent) => format!("invoke_agent {agent}"),
            None => "invoke_agent".to_string(),
        };
        let mut attributes = vec![
            (keys::OPERATION_NAME, "invoke_agent".into()),
            (keys::CONVERSATION_ID, self.mission.as_str().into()),
        ];
        if let Some(agent) = &self.agent {
            attributes.push((keys::AGENT_NAME, agent.as_str().into()));
        }
        attributes.extend([
            (keys::MISSION_ID, self.mission.as_str().into()),
            (
                keys::EVENT_SEQ,
                AttrValue::Ints(vec![seq_value(first), seq_value(last)]),
            ),
            (keys::MISSION_STATUS, state.status.as_str().into()),
            (keys::SEGMENT_END, end.code().into()),
        ]);
        let status = match end {
            SegmentEnd::Finished(MissionStatus::Succeeded) => SpanStatus::Ok,
            SegmentEnd::Finished(MissionStatus::Failed) => {
                let kind = state
                    .error
                    .as_ref()
                    .map_or_else(|| "failed".to_string(), |e| e.kind.clone());
                attributes.push((keys::ERROR_TYPE, kind.as_str().into()));
                SpanStatus::Error(kind)
            }
            SegmentEnd::Finished(status) => SpanStatus::Unset(Some(format!("mission {status}"))),
            SegmentEnd::Parked => SpanStatus::Unset(Some("parked for an approval".into())),
            SegmentEnd::Blocked => SpanStatus::Unset(Some(format!(
                "blocked: {}",
                state
                    .error
                    .as_ref()
                    .map_or("budget or breaker", |e| &e.kind)
            ))),
            SegmentEnd::Interrupted => SpanStatus::Error("interrupted".into()),
            SegmentEnd::Stopped => {
                SpanStatus::Error("the driver stopped (lease lost or an error)".into())
            }
        };
        let root = Span {
            trace_id: trace,
            span_id: root_id,
            parent: None,
            name,
            kind: SpanKind::Internal,
            start_ms,
            end_ms: end_ms.max(start_ms),
            attributes,
            status,
            links: Vec::new(),
        };
        Some((
            spans,
            ClosedSegment {
                mission: self.mission,
                root,
                after_seq: self.after_seq,
            },
        ))
    }
}

fn seq_value(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

fn count(n: u64) -> AttrValue {
    AttrValue::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

fn finish(open: Open, end_ms: i64, status: SpanStatus) -> Span {
    let Open { mut span, seqs } = open;
    span.end_ms = end_ms.max(span.start_ms);
    span.status = status;
    span.set(keys::EVENT_SEQ, AttrValue::Ints(seqs));
    span
}

/// Sets what a completed call says; returns the span's status.
fn completed(span: &mut Span, c: &ToolCompleted) -> SpanStatus {
    if let Some(code) = c.exit_code {
        span.set(keys::TOOL_EXIT_CODE, AttrValue::Int(i64::from(code)));
    }
    if c.ok {
        return SpanStatus::Unset(None);
    }
    let kind = if c.timed_out {
        "timeout"
    } else if c.exit_code.is_some() {
        "nonzero_exit"
    } else {
        "tool_error"
    };
    span.set(keys::ERROR_TYPE, kind.into());
    SpanStatus::Error(kind.to_string())
}

/// Where the segment holding the last event of `window` began, as far as the timeline tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentStart {
    /// Its first seq.
    At(u64),
    /// That event was not appended by a driver (a creation, a fork's copy): no segment.
    NotDriven,
    /// The window does not reach back far enough to tell: read more.
    NeedMore,
}

/// Where the segment that holds the last event of `window` began (`window`: contiguous
/// events ending there; `from_start`: it begins at seq 1). The timeline does not record
/// segments, so they are told from what drivers append:
///
/// - events with the same `at` were appended together (one append stamps its events once),
///   and a segment never begins inside an append;
/// - the first append after `mission.created` or `mission.forked` begins a segment (those
///   are appended by no driver);
/// - an append with `mission.resumed` begins one (a resume records it first, with the
///   interruption a dead predecessor left unsaid);
/// - so does any append made while the mission was at rest (after `approval.requested`,
///   `budget.exceeded`, `breaker.tripped`, `mission.interrupted` or `mission.finished`, and
///   before anything set it going again): a settle taking in a vote, a raise, a cancel, an
///   expiry.
///
/// Rare cases it cannot see: a settle that takes in two inputs in two appends is read as two
/// segments, and a settle of a running mission whose driver died as part of that driver's.
pub fn previous_segment_start(window: &[StoredEvent], from_start: bool) -> SegmentStart {
    #[derive(Clone, Copy)]
    enum Start {
        Unknown,
        NotDriven,
        At(u64),
    }
    let mut start = Start::Unknown;
    // Whether the mission is at rest after the events so far (`None`: not known yet).
    let mut rest: Option<bool> = if from_start { Some(false) } else { None };
    let mut previous: Option<Kind> = None;
    let mut i = 0;
    while i < window.len() {
        // One append: the same `at`, and never past a creation or a fork's last copy (each
        // ends the append that made it).
        let at = &window[i].at;
        let mut j = i + 1;
        while j < window.len()
            && &window[j].at == at
            && !matches!(
                Kind::of(&window[j - 1].event_type),
                Kind::Created | Kind::Forked
            )
        {
            j += 1;
        }
        let group = &window[i..j];
        let kinds: Vec<Kind> = group.iter().map(|e| Kind::of(&e.event_type)).collect();
        let first_seq = group[0].seq;
        let outside = kinds
            .iter()
            .any(|k| matches!(k, Kind::Created | Kind::Forked));
        let begins = match previous {
            // The window's first group may be cut: it says nothing.
            None if !from_start => None,
            Some(Kind::Created | Kind::Forked) => Some(true),
            _ if kinds.contains(&Kind::Resumed) => Some(true),
            _ => rest,
        };
        start = match (outside, begins) {
            (true, _) => Start::NotDriven,
            (false, Some(true)) => Start::At(first_seq),
            (false, Some(false)) => start,
            (false, None) => Start::Unknown,
        };
        for kind in &kinds {
            match kind {
                Kind::Rests => rest = Some(true),
                Kind::Goes | Kind::Resumed | Kind::Created | Kind::Forked => rest = Some(false),
                Kind::Other => {}
            }
        }
        previous = kinds.last().copied();
        i = j;
    }
    match start {
        Start::At(seq) => SegmentStart::At(seq),
        Start::NotDriven => SegmentStart::NotDriven,
        Start::Unknown if from_start => SegmentStart::NotDriven,
        Start::Unknown => SegmentStart::NeedMore,
    }
}

/// What an event type says about segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Created,
    Forked,
    Resumed,
    /// The mission comes to rest: parked, blocked, interrupted, finished.
    Rests,
    /// The mission runs again.
    Goes,
    Other,
}

impl Kind {
    fn of(event_type: &str) -> Kind {
        match event_type {
            "mission.created" => Kind::Created,
            "mission.forked" => Kind::Forked,
            "mission.resumed" => Kind::Resumed,
            "approval.requested"
            | "budget.exceeded"
            | "breaker.tripped"
            | "mission.interrupted"
            | "mission.finished" => Kind::Rests,
            "workspace.provisioning" | "workspace.provisioned" | "step.started" => Kind::Goes,
            _ => Kind::Other,
        }
    }
}
