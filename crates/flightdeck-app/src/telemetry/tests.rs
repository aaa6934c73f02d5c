#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use std::sync::{Arc, Mutex};
use std::time::Duration;

use flightdeck_core::{MissionState, StoredEvent};
use serde_json::{json, Value};

use super::export::{Exporter, Message, Stats};
use super::spans::{
    keys, link_to, previous_segment_start, root_span_id, trace_id, AttrValue, Segment,
    SegmentStart, Span, SpanKind, SpanStatus,
};
use super::{otlp, Endpoint, EndpointError};

const M: &str = "m-01jz3k8q2v7w9x0y1z2a3b4c5d";
const T0: i64 = 1_750_000_000_000;

fn digest() -> String {
    format!("sha256:{}", "ab".repeat(32))
}

/// A timeline being written: each `append` is one append (its events share `at`).
struct Timeline {
    events: Vec<StoredEvent>,
}

impl Timeline {
    fn new() -> Timeline {
        Timeline { events: Vec::new() }
    }

    fn head(&self) -> u64 {
        self.events.len() as u64
    }

    /// Appends `events` at `at_ms` (seconds after T0) in one append; returns them.
    fn append(&mut self, at_s: i64, events: &[(&str, Value)]) -> Vec<StoredEvent> {
        let at = flightdeck_core::clock::format_rfc3339_millis(T0 + at_s * 1000);
        let mut out = Vec::new();
        for (event_type, data) in events {
            let event = StoredEvent {
                mission: M.to_string(),
                seq: self.head() + 1,
                at: at.clone(),
                event_type: (*event_type).to_string(),
                data: data.clone(),
                prev_hash: String::new(),
                hash: String::new(),
            };
            self.events.push(event.clone());
            out.push(event);
        }
        out
    }

    fn state(&self) -> MissionState {
        let mut state = MissionState::new(M);
        for event in &self.events {
            state
                .apply(event.seq, event.at_millis(), &event.kind().unwrap())
                .unwrap();
        }
        state
    }
}

fn created() -> (&'static str, Value) {
    (
        "mission.created",
        json!({"template": "fix-it", "template_hash": digest(), "params": {}, "repo": "/r",
               "base_commit": "abc", "requested_by": "@carol", "policy_hash": digest(),
               "template_source": digest()}),
    )
}

fn step_started() -> (&'static str, Value) {
    ("step.started", json!({"index": 0, "kind": "agent"}))
}

fn model_requested(call: &str, attempt: u32) -> (&'static str, Value) {
    (
        "model.requested",
        json!({"call_id": call, "provider": "openai", "model": "gpt-x", "role": "coder",
               "request": digest(), "attempt": attempt}),
    )
}

fn model_responded(call: &str) -> (&'static str, Value) {
    (
        "model.responded",
        json!({"call_id": call, "model_served": "gpt-x-2025-01-01", "input_tokens": 1200,
               "output_tokens": 40, "cost_usd": 0.5, "response": digest()}),
    )
}

fn tool_requested(call: &str, tool: &str, args: Value) -> (&'static str, Value) {
    (
        "tool.requested",
        json!({"call_id": call, "tool": tool, "args": args, "actor": "coder"}),
    )
}

fn policy_decided(subject: &str, decision: &str) -> (&'static str, Value) {
    (
        "policy.decided",
        json!({"subject": subject, "action": "write", "decision": decision, "tier": "medium",
               "rule_ids": [], "policy_hash": digest(), "explanation": "because"}),
    )
}

fn approval_requested(subject: &str) -> (&'static str, Value) {
    (
        "approval.requested",
        json!({"approval_id": "a-1-1", "gate": "write", "required": 1, "eligible": ["@alice"],
               "diff_hash": "sha256:00", "bundle": digest(), "subject": subject}),
    )
}

fn approved() -> (&'static str, Value) {
    (
        "approval.decided",
        json!({"approval_id": "a-1-1", "by": "@alice", "decision": "approve", "channel": "cli",
               "comment": null, "policy_hash": digest(), "diff_hash": "sha256:00"}),
    )
}

fn tool_completed(call: &str, ok: bool, exit_code: Option<i32>) -> (&'static str, Value) {
    (
        "tool.completed",
        json!({"call_id": call, "ok": ok, "exit_code": exit_code, "output": digest(),
               "duration_ms": 1500}),
    )
}

fn resumed() -> (&'static str, Value) {
    ("mission.resumed", json!({"by": "@carol"}))
}

fn finished(status: &str) -> (&'static str, Value) {
    ("mission.finished", json!({"status": status, "error": null}))
}

fn interrupted(calls: &[&str]) -> (&'static str, Value) {
    (
        "mission.interrupted",
        json!({"reason": "SIGINT", "calls": calls}),
    )
}

/// Drives one segment of `timeline`: opened at `open_s`, the appends made, closed at
/// `close_s`. Returns every span it ended and the closed root.
fn segment(
    timeline: &mut Timeline,
    open_s: i64,
    appends: &[(i64, Vec<(&str, Value)>)],
    close_s: i64,
) -> (Vec<Span>, Option<super::spans::ClosedSegment>) {
    let mut segment = Segment::open(&timeline.state(), T0 + open_s * 1000);
    let mut spans = Vec::new();
    for (at_s, events) in appends {
        for event in timeline.append(*at_s, events) {
            spans.extend(segment.event(&event));
        }
    }
    match segment.close(&timeline.state(), T0 + close_s * 1000) {
        Some((cut, closed)) => {
            spans.extend(cut);
            (spans, Some(closed))
        }
        None => (spans, None),
    }
}

fn str_attr<'a>(span: &'a Span, key: &str) -> &'a str {
    match span.attribute(key) {
        Some(AttrValue::Str(s)) => s,
        other => panic!("{} {key}: {other:?}", span.name),
    }
}

fn int_attr(span: &Span, key: &str) -> i64 {
    match span.attribute(key) {
        Some(AttrValue::Int(i)) => *i,
        other => panic!("{} {key}: {other:?}", span.name),
    }
}

fn seqs(span: &Span) -> Vec<i64> {
    match span.attribute(keys::EVENT_SEQ) {
        Some(AttrValue::Ints(seqs)) => seqs.clone(),
        other => panic!("{} seqs: {other:?}", span.name),
    }
}

fn named<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name} in {spans:#?}"))
}

#[test]
fn a_run_that_parks_a_vote_and_a_resume_are_three_linked_traces_with_no_span_across_the_park() {
    let mut timeline = Timeline::new();
    timeline.append(0, &[created()]);
    // Segment 1: the run, until it parks for the write.
    let (spans1, root1) = segment(
        &mut timeline,
        1,
        &[
            (
                2,
                vec![
                    ("workspace.provisioning", json!({"runtime": "local"})),
                    step_started(),
                ],
            ),
            (3, vec![model_requested("step-0.m1", 1)]),
            (
                5,
                vec![
                    model_responded("step-0.m1"),
                    tool_requested("step-0.m1.t1", "edit_file", json!({"path": "src/lib.rs"})),
                    policy_decided("step-0.m1.t1", "approve"),
                    approval_requested("step-0.m1.t1"),
                ],
            ),
        ],
        6,
    );
    let root1 = root1.unwrap();
    assert_eq!(root1.after_seq, 1);
    let root = &root1.root;
    assert_eq!(root.name, "invoke_agent fix-it");
    assert_eq!(root.parent, None);
    assert_eq!(root.trace_id, trace_id(M, 2), "named by its first event");
    assert_eq!(root.span_id, root_span_id(M, 2));
    assert_eq!(str_attr(root, keys::OPERATION_NAME), "invoke_agent");
    assert_eq!(str_attr(root, keys::CONVERSATION_ID), M);
    assert_eq!(str_attr(root, keys::AGENT_NAME), "fix-it");
    assert_eq!(str_attr(root, keys::MISSION_ID), M);
    assert_eq!(str_attr(root, keys::SEGMENT_END), "parked");
    assert_eq!(seqs(root), [2, 8]);
    assert_eq!((root.start_ms, root.end_ms), (T0 + 1000, T0 + 6000));

    let chat = named(&spans1, "chat gpt-x");
    assert_eq!(chat.kind, SpanKind::Client);
    assert_eq!(chat.parent, Some(root.span_id));
    assert_eq!(chat.trace_id, root.trace_id);
    assert_eq!(str_attr(chat, keys::OPERATION_NAME), "chat");
    assert_eq!(str_attr(chat, keys::PROVIDER_NAME), "openai");
    assert_eq!(str_attr(chat, keys::REQUEST_MODEL), "gpt-x");
    assert_eq!(str_attr(chat, keys::RESPONSE_MODEL), "gpt-x-2025-01-01");
    assert_eq!(int_attr(chat, keys::INPUT_TOKENS), 1200);
    assert_eq!(int_attr(chat, keys::OUTPUT_TOKENS), 40);
    assert_eq!(str_attr(chat, keys::MISSION_ID), M);
    assert_eq!(seqs(chat), [4, 5]);
    assert_eq!((chat.start_ms, chat.end_ms), (T0 + 3000, T0 + 5000));
    assert_eq!(chat.status, SpanStatus::Unset(None));

    // The call waiting for its approval is ended with the segment, saying why.
    let tool = named(&spans1, "execute_tool edit_file");
    assert_eq!(str_attr(tool, keys::OPERATION_NAME), "execute_tool");
    assert_eq!(str_attr(tool, keys::TOOL_NAME), "edit_file");
    assert_eq!(str_attr(tool, keys::TOOL_CALL_ID), "step-0.m1.t1");
    assert_eq!(str_attr(tool, keys::POLICY_DECISION), "approve");
    assert_eq!(str_attr(tool, keys::APPROVAL_ID), "a-1-1");
    assert_eq!(str_attr(tool, keys::SPAN_CUT), "parked");
    assert_eq!(seqs(tool), [6, 7, 8]);
    assert_eq!(tool.end_ms, root.end_ms);
    assert!(
        matches!(&tool.status, SpanStatus::Unset(Some(why)) if why.contains("parked")),
        "{:?}",
        tool.status
    );
    assert_eq!(spans1.len(), 2);

    // Segment 2: `approve` takes the vote in.
    let before_vote = timeline.head();
    let (spans2, root2) = segment(&mut timeline, 60, &[(60, vec![approved()])], 61);
    assert!(spans2.is_empty());
    let root2 = root2.unwrap();
    assert_eq!(root2.root.trace_id, trace_id(M, 9));
    assert_eq!(root2.after_seq, before_vote);
    assert_eq!(str_attr(&root2.root, keys::SEGMENT_END), "parked");
    assert_eq!(
        previous_segment_start(&timeline.events[..8], true),
        SegmentStart::At(2),
        "the vote's root links to the run's"
    );

    // A resume of a mission still waiting appends nothing: no trace.
    let (none, nothing) = segment(&mut timeline, 70, &[], 70);
    assert!(none.is_empty() && nothing.is_none());

    // Segment 3: the resume; the approved edit runs here, then the mission finishes.
    let (spans3, root3) = segment(
        &mut timeline,
        100,
        &[
            (
                103,
                vec![resumed(), tool_completed("step-0.m1.t1", true, None)],
            ),
            (104, vec![model_requested("step-0.m2", 1)]),
            (
                105,
                vec![
                    model_responded("step-0.m2"),
                    tool_requested("step-0.m2.t1", "finish", json!({})),
                    policy_decided("step-0.m2.t1", "allow"),
                    tool_completed("step-0.m2.t1", true, None),
                    finished("succeeded"),
                ],
            ),
        ],
        106,
    );
    let root3 = root3.unwrap();
    assert_eq!(root3.after_seq, 9);
    assert_eq!(
        previous_segment_start(&timeline.events[..9], true),
        SegmentStart::At(9)
    );
    assert_eq!(root3.root.status, SpanStatus::Ok);
    assert_eq!(str_attr(&root3.root, keys::MISSION_STATUS), "succeeded");
    let carried = spans3
        .iter()
        .find(|s| s.attribute(keys::TOOL_CALL_ID) == Some(&"step-0.m1.t1".into()))
        .unwrap();
    assert_eq!(carried.name, "execute_tool edit_file");
    assert_eq!(carried.trace_id, root3.root.trace_id);
    assert_eq!(seqs(carried), [11]);
    assert_eq!(
        carried.attribute(keys::TOOL_REQUESTED_EARLIER),
        Some(&AttrValue::Bool(true))
    );
    // It started in this segment (the completion's time less its duration), not at the park.
    assert_eq!(
        (carried.start_ms, carried.end_ms),
        (T0 + 101_500, T0 + 103_000)
    );
    assert!(carried.start_ms >= root3.root.start_ms);
    assert_eq!(
        named(&spans3, "execute_tool finish").status,
        SpanStatus::Unset(None)
    );
    assert_eq!(spans3.len(), 3);

    // Ids are derived, never drawn: the same events give the same spans.
    let ids: std::collections::BTreeSet<_> = spans1
        .iter()
        .chain(&spans3)
        .map(|s| s.span_id)
        .chain([root1.root.span_id, root2.root.span_id, root3.root.span_id])
        .collect();
    assert_eq!(ids.len(), 8, "span ids are distinct");
    assert_eq!(link_to(M, 9).trace_id, root2.root.trace_id);
    assert_eq!(link_to(M, 9).span_id, root2.root.span_id);
}

#[test]
fn open_spans_end_with_the_segment_saying_why() {
    struct Case {
        name: &'static str,
        last: Vec<(&'static str, Value)>,
        root: SpanStatus,
        cut_code: &'static str,
        cut_is_error: bool,
    }
    let cases = [
        Case {
            name: "SIGINT while a command runs",
            last: vec![interrupted(&["step-0.m1.t1"])],
            root: SpanStatus::Error("interrupted".into()),
            cut_code: "interrupted",
            cut_is_error: true,
        },
        Case {
            name: "the driver lost its lease",
            last: vec![],
            root: SpanStatus::Error("the driver stopped (lease lost or an error)".into()),
            cut_code: "stopped",
            cut_is_error: true,
        },
        Case {
            name: "a breaker blocks the mission",
            last: vec![(
                "breaker.tripped",
                json!({"kind": "no_progress", "detail": "x"}),
            )],
            root: SpanStatus::Unset(Some("blocked: breaker_tripped".into())),
            cut_code: "blocked",
            cut_is_error: false,
        },
        Case {
            name: "cancelled",
            last: vec![finished("cancelled")],
            root: SpanStatus::Unset(Some("mission cancelled".into())),
            cut_code: "finished",
            cut_is_error: true,
        },
    ];
    for case in cases {
        let mut timeline = Timeline::new();
        timeline.append(0, &[created()]);
        let mut appends = vec![(
            1,
            vec![
                step_started(),
                model_requested("step-0.m1", 1),
                tool_requested("step-0.m1.t1", "run", json!({"command": "sleep 100"})),
                policy_decided("step-0.m1.t1", "allow"),
            ],
        )];
        if !case.last.is_empty() {
            appends.push((9, case.last));
        }
        let (spans, closed) = segment(&mut timeline, 1, &appends, 10);
        let closed = closed.unwrap();
        assert_eq!(closed.root.status, case.root, "{}", case.name);
        assert_eq!(spans.len(), 2, "{}", case.name);
        for span in &spans {
            assert_eq!(
                str_attr(span, keys::SPAN_CUT),
                case.cut_code,
                "{}",
                case.name
            );
            assert_eq!(span.end_ms, T0 + 10_000, "{}", case.name);
            assert_eq!(
                matches!(span.status, SpanStatus::Error(_)),
                case.cut_is_error,
                "{}: {:?}",
                case.name,
                span.status
            );
            assert!(span.end_ms <= closed.root.end_ms);
        }
    }
}

#[test]
fn failures_carry_an_error_type_and_never_their_text() {
    let mut timeline = Timeline::new();
    timeline.append(0, &[created()]);
    let (spans, _) = segment(
        &mut timeline,
        1,
        &[
            (2, vec![step_started(), model_requested("step-0.m1", 1)]),
            (
                3,
                vec![(
                    "model.failed",
                    json!({"call_id": "step-0.m1", "error": "429: the prompt MARKER was", "retryable": true,
                           "attempt": 1, "kind": "rate_limited"}),
                )],
            ),
            (4, vec![model_requested("step-0.m1", 2)]),
            (
                5,
                vec![
                    model_responded("step-0.m1"),
                    tool_requested("step-0.m1.t1", "run", json!({"command": "cargo test"})),
                    policy_decided("step-0.m1.t1", "allow"),
                    tool_completed("step-0.m1.t1", false, Some(101)),
                    tool_requested("step-0.m1.t2", "run", json!({"command": "curl x | sh"})),
                    policy_decided("step-0.m1.t2", "deny"),
                    finished("failed"),
                ],
            ),
        ],
        6,
    );
    let chats: Vec<&Span> = spans.iter().filter(|s| s.name == "chat gpt-x").collect();
    assert_eq!(chats.len(), 2, "one span per attempt");
    assert_eq!(str_attr(chats[0], keys::ERROR_TYPE), "rate_limited");
    assert_eq!(chats[0].status, SpanStatus::Error("rate_limited".into()));
    assert_eq!(int_attr(chats[0], keys::MODEL_ATTEMPT), 1);
    assert_eq!(int_attr(chats[1], keys::MODEL_ATTEMPT), 2);
    assert_ne!(chats[0].span_id, chats[1].span_id);
    let failed = spans
        .iter()
        .find(|s| s.attribute(keys::TOOL_CALL_ID) == Some(&"step-0.m1.t1".into()))
        .unwrap();
    assert_eq!(str_attr(failed, keys::ERROR_TYPE), "nonzero_exit");
    assert_eq!(int_attr(failed, keys::TOOL_EXIT_CODE), 101);
    let denied = spans
        .iter()
        .find(|s| s.attribute(keys::TOOL_CALL_ID) == Some(&"step-0.m1.t2".into()))
        .unwrap();
    assert_eq!(str_attr(denied, keys::ERROR_TYPE), "policy_denied");
    assert_eq!(seqs(denied), [10, 11]);
    let text = String::from_utf8(otlp::encode(&spans, "0.1.0")).unwrap();
    for content in ["MARKER", "cargo test", "curl", "because"] {
        assert!(!text.contains(content), "{content} leaked: {text}");
    }
}

#[test]
fn where_the_previous_segment_began_is_read_from_the_timeline() {
    // (name, appends as (second, types), head to look from, expected start)
    type Appends = Vec<(i64, Vec<(&'static str, Value)>)>;
    let run: Appends = vec![
        (0, vec![created()]),
        (
            1,
            vec![step_started(), tool_requested("step-0", "run", json!({}))],
        ),
    ];
    let with = |more: Appends| -> Appends { run.iter().cloned().chain(more).collect() };
    let cases: Vec<(&str, Appends, u64, SegmentStart)> = vec![
        (
            "only the creation",
            vec![(0, vec![created()])],
            1,
            SegmentStart::NotDriven,
        ),
        ("the first run", run.clone(), 3, SegmentStart::At(2)),
        (
            "a run whose first append came in the creation's millisecond",
            vec![(0, vec![created()]), (0, vec![step_started()])],
            2,
            SegmentStart::At(2),
        ),
        (
            "a resume after a crash records the interruption first",
            with(vec![
                (50, vec![interrupted(&["step-0"]), resumed()]),
                (51, vec![step_started()]),
            ]),
            6,
            SegmentStart::At(4),
        ),
        (
            "a SIGINT ends the run; the resume begins at mission.resumed",
            with(vec![
                (2, vec![interrupted(&["step-0"])]),
                (50, vec![resumed()]),
                (51, vec![step_started()]),
            ]),
            6,
            SegmentStart::At(5),
        ),
        (
            "the SIGINT's interruption belongs to the run",
            with(vec![(2, vec![interrupted(&["step-0"])])]),
            4,
            SegmentStart::At(2),
        ),
        (
            "an expiry and the failure it causes are one settle",
            with(vec![
                (2, vec![approval_requested("step-0")]),
                (
                    90,
                    vec![
                        (
                            "approval.expired",
                            json!({"approval_id": "a-1-1", "expires_after_seconds": 60}),
                        ),
                        finished("failed"),
                    ],
                ),
            ]),
            6,
            SegmentStart::At(5),
        ),
        (
            "a raise while blocked is a settle of its own",
            with(vec![
                (
                    2,
                    vec![(
                        "budget.exceeded",
                        json!({"dimension": "usd", "used": 1.0, "limit": 1.0}),
                    )],
                ),
                (
                    30,
                    vec![(
                        "budget.raised",
                        json!({"by": "@carol", "dimension": "usd", "amount": 1.0}),
                    )],
                ),
            ]),
            5,
            SegmentStart::At(5),
        ),
        (
            "a raise taken in by the running driver is part of its segment",
            with(vec![(
                30,
                vec![(
                    "budget.raised",
                    json!({"by": "@carol", "dimension": "usd", "amount": 1.0}),
                )],
            )]),
            4,
            SegmentStart::At(2),
        ),
        (
            "a fork's copies are no segment",
            vec![(
                0,
                vec![
                    created(),
                    step_started(),
                    (
                        "mission.forked",
                        json!({"origin": "m-x", "at_seq": 2, "origin_hash": "h", "by": "@carol"}),
                    ),
                ],
            )],
            3,
            SegmentStart::NotDriven,
        ),
    ];
    for (name, appends, head, expected) in cases {
        let mut timeline = Timeline::new();
        for (at, events) in &appends {
            timeline.append(*at, events);
        }
        let window = &timeline.events[..usize::try_from(head).unwrap()];
        assert_eq!(previous_segment_start(window, true), expected, "{name}");
    }
    // A window that starts mid-segment cannot tell until it reaches a boundary.
    let mut timeline = Timeline::new();
    timeline.append(0, &[created()]);
    timeline.append(1, &[step_started()]);
    for i in 0..5 {
        timeline.append(
            2 + i,
            &[tool_requested(&format!("step-0.t{i}"), "run", json!({}))],
        );
    }
    assert_eq!(
        previous_segment_start(&timeline.events[3..], false),
        SegmentStart::NeedMore
    );
    assert_eq!(
        previous_segment_start(&timeline.events, true),
        SegmentStart::At(2)
    );
    // …and tells once it sees the mission come to rest inside the window.
    timeline.append(10, &[approval_requested("step-0.t4")]);
    timeline.append(20, &[approved()]);
    assert_eq!(
        previous_segment_start(&timeline.events[4..], false),
        SegmentStart::At(9)
    );
}

#[test]
fn the_otlp_json_has_the_contracts_shape() {
    let mut root = Span {
        trace_id: trace_id(M, 2),
        span_id: root_span_id(M, 2),
        parent: None,
        name: "invoke_agent t".into(),
        kind: SpanKind::Internal,
        start_ms: T0,
        end_ms: T0 + 1,
        attributes: vec![
            (keys::MISSION_ID, M.into()),
            (keys::EVENT_SEQ, AttrValue::Ints(vec![2, 9])),
            (keys::INPUT_TOKENS, AttrValue::Int(7)),
            (keys::COST_USD, AttrValue::Double(0.25)),
            (keys::TOOL_REQUESTED_EARLIER, AttrValue::Bool(true)),
        ],
        status: SpanStatus::Error("interrupted".into()),
        links: vec![link_to(M, 1)],
    };
    let body: Value =
        serde_json::from_slice(&otlp::encode(std::slice::from_ref(&root), "9.9.9")).unwrap();
    let resource = &body["resourceSpans"][0];
    assert_eq!(
        resource["resource"]["attributes"][0],
        json!({"key": "service.name", "value": {"stringValue": "flightdeck"}})
    );
    let scope = &resource["scopeSpans"][0];
    assert_eq!(
        scope["scope"],
        json!({"name": "flightdeck", "version": "9.9.9"})
    );
    let span = &scope["spans"][0];
    assert_eq!(span["traceId"].as_str().unwrap().len(), 32);
    assert_eq!(span["spanId"].as_str().unwrap().len(), 16);
    assert!(span.get("parentSpanId").is_none());
    assert_eq!(span["kind"], 1);
    assert_eq!(span["startTimeUnixNano"], json!(format!("{}000000", T0)));
    assert_eq!(span["endTimeUnixNano"], json!(format!("{}000000", T0 + 1)));
    assert_eq!(
        span["attributes"],
        json!([
            {"key": "flightdeck.mission.id", "value": {"stringValue": M}},
            {"key": "flightdeck.event.seq", "value": {"arrayValue": {"values": [{"intValue": "2"}, {"intValue": "9"}]}}},
            {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "7"}},
            {"key": "flightdeck.cost_usd", "value": {"doubleValue": 0.25}},
            {"key": "flightdeck.tool.requested_earlier", "value": {"boolValue": true}},
        ])
    );
    assert_eq!(span["status"], json!({"code": 2, "message": "interrupted"}));
    assert_eq!(
        span["links"][0]["traceId"],
        json!(hex::encode(trace_id(M, 1)))
    );
    assert_eq!(
        span["links"][0]["spanId"],
        json!(hex::encode(root_span_id(M, 1)))
    );
    root.parent = Some(root.span_id);
    root.kind = SpanKind::Client;
    root.status = SpanStatus::Unset(None);
    let body: Value = serde_json::from_slice(&otlp::encode(&[root], "9.9.9")).unwrap();
    let span = &body["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
    assert_eq!(span["parentSpanId"], span["spanId"]);
    assert_eq!(span["kind"], 3);
    assert_eq!(span["status"], json!({"code": 0}));
}

#[test]
fn endpoints_are_http_urls_without_credentials() {
    let ok = Endpoint::parse(" http://127.0.0.1:4318/ ").unwrap();
    assert_eq!(ok.traces_url(), "http://127.0.0.1:4318/v1/traces");
    assert_eq!(
        Endpoint::parse("https://otel.acme.internal/otlp")
            .unwrap()
            .traces_url(),
        "https://otel.acme.internal/otlp/v1/traces"
    );
    assert!(matches!(
        Endpoint::parse("127.0.0.1:4318"),
        Err(EndpointError::Scheme(_) | EndpointError::NotAUrl(_))
    ));
    assert!(matches!(
        Endpoint::parse("localhost"),
        Err(EndpointError::NotAUrl(_))
    ));
    assert_eq!(
        Endpoint::parse("grpc://127.0.0.1:4317"),
        Err(EndpointError::Scheme("grpc".into()))
    );
    assert_eq!(
        Endpoint::parse("http://user:pw@127.0.0.1:4318"),
        Err(EndpointError::Credentials)
    );
    assert_eq!(
        Endpoint::parse("http://127.0.0.1:4318?x=1"),
        Err(EndpointError::QueryOrFragment)
    );
}

#[test]
fn a_bad_endpoint_in_the_config_names_the_file_and_key_with_a_hint() {
    let path = std::path::Path::new("/etc/flightdeck/config.toml");
    let config =
        crate::Config::parse("[telemetry]\notlp_endpoint = \"ftp://collector\"\n", path).unwrap();
    let e = crate::config::telemetry_endpoint(&config, path).unwrap_err();
    assert!(
        e.message.contains("/etc/flightdeck/config.toml"),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("[telemetry] otlp_endpoint"),
        "{}",
        e.message
    );
    assert!(e.hint.as_deref().unwrap().contains("http://127.0.0.1:4318"));
    assert_eq!(e.kind, crate::ErrorKind::BadInput);
    let none = crate::Config::parse("", path).unwrap();
    assert_eq!(
        crate::config::telemetry_endpoint(&none, path).unwrap(),
        None
    );
}

#[tokio::test]
async fn a_receiver_that_is_not_there_is_counted_and_reported_once() {
    // A port nothing listens on.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let warnings = Arc::new(Mutex::new(Vec::<String>::new()));
    let stats = Arc::new(Stats::default());
    let seen = warnings.clone();
    stats.set_warn(Arc::new(move |m: &str| {
        seen.lock().unwrap().push(m.to_string())
    }));
    let exporter =
        Exporter::start(format!("http://127.0.0.1:{port}/v1/traces"), stats.clone()).unwrap();
    let span = Span {
        trace_id: trace_id(M, 2),
        span_id: root_span_id(M, 2),
        parent: None,
        name: "invoke_agent t".into(),
        kind: SpanKind::Internal,
        start_ms: T0,
        end_ms: T0,
        attributes: Vec::new(),
        status: SpanStatus::Ok,
        links: Vec::new(),
    };
    for _ in 0..3 {
        exporter
            .sender
            .send(Message::Spans(vec![span.clone(), span.clone()]))
            .await
            .unwrap();
        assert!(exporter.flush(Duration::from_secs(5)).await);
    }
    use std::sync::atomic::Ordering;
    assert_eq!(stats.failed_posts.load(Ordering::Relaxed), 3);
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 6);
    assert_eq!(stats.exported.load(Ordering::Relaxed), 0);
    let warnings = warnings.lock().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains(&format!("127.0.0.1:{port}")),
        "{}",
        warnings[0]
    );
}
