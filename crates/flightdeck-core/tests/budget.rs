//! Budgets and breakers as pure functions of a folded timeline: tables for the decisions, and
//! a property for the promise that spend never passes a limit.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use flightdeck_core::budget::{
    after_action, after_model_failure, before_action, check_model_call, check_tool_call,
    BreakerLimits, Dimension,
};
use flightdeck_core::event::*;
use flightdeck_core::template::BudgetSpec;
use flightdeck_core::{Digest, EventKind, MissionState};
use proptest::prelude::*;
use serde_json::json;

fn created(budget: BudgetSpec) -> EventKind {
    EventKind::MissionCreated(MissionCreated {
        template: "t".into(),
        template_hash: Digest::of(b"t"),
        params: Default::default(),
        repo: "/r".into(),
        base_commit: "abc".into(),
        requested_by: "@carol".into(),
        policy_hash: Digest::of(b"p"),
        template_source: Digest::of(b"t"),
        base_ref: "HEAD".into(),
        engine_version: "0".into(),
        budget,
        steps: 1,
        policy_source: None,
        codeowners: None,
        codeowners_path: None,
        model_scripts: Default::default(),
        requested_as: None,
        codeowners_warnings: Vec::new(),
        remote: None,
        goal: None,
        source: None,
        follows: None,
        github: None,
    })
}

fn provisioned() -> Vec<EventKind> {
    vec![
        EventKind::WorkspaceProvisioning(WorkspaceProvisioning {
            runtime: "local".into(),
        }),
        EventKind::WorkspaceProvisioned(WorkspaceProvisioned {
            runtime: "local".into(),
            network: "none".into(),
            toolchain: Default::default(),
            image: None,
            image_digest: None,
            path: "/w".into(),
            sandbox: "bubblewrap".into(),
            base_tree: Some("base".into()),
            ..Default::default()
        }),
    ]
}

/// A state folded from `events`, every event 1 s after the previous one.
fn fold(budget: BudgetSpec, events: Vec<EventKind>) -> MissionState {
    let mut state = MissionState::new("m-1");
    let mut all = vec![created(budget)];
    all.extend(provisioned());
    all.extend(events);
    for (i, kind) in all.iter().enumerate() {
        state.apply(i as u64 + 1, (i as i64) * 1000, kind).unwrap();
    }
    state
}

fn model_call(n: usize, role: &str, input: u64, output: u64, usd: f64) -> Vec<EventKind> {
    let call_id = format!("step-0.m{n}");
    vec![
        EventKind::ModelRequested(ModelRequested {
            call_id: call_id.clone(),
            provider: "scripted".into(),
            model: "s.toml".into(),
            role: role.into(),
            request: Digest::of(b"req"),
            wire: None,
            attempt: 1,
            reserved: None,
            omitted: Vec::new(),
        }),
        EventKind::ModelResponded(ModelResponded {
            call_id,
            model_served: "sim".into(),
            input_tokens: input,
            output_tokens: output,
            cost_usd: usd,
            response: Digest::of(b"resp"),
            cache_read_tokens: input / 10,
            cache_write_tokens: 0,
            message: None,
        }),
    ]
}

fn tool_call(
    id: &str,
    actor: &str,
    tool: &str,
    args: serde_json::Value,
    ok: bool,
    tree: Option<&str>,
) -> Vec<EventKind> {
    vec![
        EventKind::ToolRequested(ToolRequested {
            call_id: id.into(),
            tool: tool.into(),
            args,
            actor: actor.into(),
        }),
        EventKind::ToolCompleted(ToolCompleted {
            call_id: id.into(),
            ok,
            exit_code: None,
            output: Digest::of(b"out"),
            duration_ms: 1,
            timed_out: false,
            tree: tree.map(str::to_string),
        }),
    ]
}

fn reservation(tokens: u64, usd: Option<f64>) -> Reservation {
    Reservation { tokens, usd }
}

#[test]
fn model_calls_must_fit_their_worst_case_in_every_limit() {
    let spent = || model_call(1, "coder", 1000, 100, 0.4);
    // (name, limits, reservation, now_ms, refused dimension)
    let cases: Vec<(&str, BudgetSpec, Reservation, i64, Option<&str>)> = vec![
        (
            "no limits",
            BudgetSpec::default(),
            reservation(u64::MAX / 2, None),
            0,
            None,
        ),
        (
            "fits usd exactly",
            BudgetSpec {
                usd: Some(1.0),
                ..Default::default()
            },
            reservation(10, Some(0.6)),
            0,
            None,
        ),
        (
            "crosses usd",
            BudgetSpec {
                usd: Some(1.0),
                ..Default::default()
            },
            reservation(10, Some(0.61)),
            0,
            Some("usd"),
        ),
        (
            "an unpriced model under a usd limit",
            BudgetSpec {
                usd: Some(100.0),
                ..Default::default()
            },
            reservation(10, None),
            0,
            Some("usd"),
        ),
        (
            "crosses tokens",
            BudgetSpec {
                tokens: Some(2000),
                ..Default::default()
            },
            reservation(901, Some(0.0)),
            0,
            Some("tokens"),
        ),
        (
            "fits tokens",
            BudgetSpec {
                tokens: Some(2000),
                ..Default::default()
            },
            reservation(900, Some(0.0)),
            0,
            None,
        ),
        (
            "model calls used up",
            BudgetSpec {
                model_calls: Some(1),
                ..Default::default()
            },
            reservation(1, None),
            0,
            Some("model_calls"),
        ),
        (
            "model calls count first",
            BudgetSpec {
                model_calls: Some(1),
                usd: Some(0.5),
                ..Default::default()
            },
            reservation(1, Some(1.0)),
            0,
            Some("model_calls"),
        ),
        (
            "wall time used up",
            BudgetSpec {
                wall_seconds: Some(10),
                ..Default::default()
            },
            reservation(1, None),
            60_000,
            Some("wall_seconds"),
        ),
        (
            "wall time left",
            BudgetSpec {
                wall_seconds: Some(100),
                ..Default::default()
            },
            reservation(1, None),
            60_000,
            None,
        ),
    ];
    for (name, budget, reserved, now, expected) in cases {
        let state = fold(budget, spent());
        let got = check_model_call(&state, "step-0.m2", &reserved, now);
        assert_eq!(
            got.as_ref().map(|e| e.dimension.as_str()),
            expected,
            "{name}: {got:?}"
        );
        if let Some(e) = got {
            assert_eq!(e.refused.as_deref(), Some("model call step-0.m2"), "{name}");
        }
    }
}

#[test]
fn raises_add_to_limits_and_tool_calls_have_their_own_limit() {
    let budget = BudgetSpec {
        tool_calls: Some(2),
        usd: Some(0.5),
        ..Default::default()
    };
    let mut events = tool_call(
        "step-0.m1.t1",
        "coder",
        "read_file",
        json!({"path": "a"}),
        true,
        None,
    );
    events.extend(tool_call(
        "step-0.m1.t2",
        "coder",
        "read_file",
        json!({"path": "b"}),
        true,
        None,
    ));
    let state = fold(budget.clone(), events.clone());
    let refused = check_tool_call(&state, "step-0.m1.t3", 0).unwrap();
    assert_eq!(
        (refused.dimension.as_str(), refused.used, refused.limit),
        ("tool_calls", 2.0, 2.0)
    );
    events.push(EventKind::BudgetRaised(BudgetRaised {
        by: "@carol".into(),
        dimension: "tool_calls".into(),
        amount: 3.0,
    }));
    let raised = fold(budget, events);
    assert_eq!(raised.budget_limit(Dimension::ToolCalls), Some(5.0));
    assert_eq!(raised.budget_remaining(Dimension::ToolCalls, 0), Some(3.0));
    assert!(check_tool_call(&raised, "step-0.m1.t3", 0).is_none());
}

#[test]
fn time_parked_for_a_person_does_not_use_the_wall_time_budget() {
    let budget = BudgetSpec {
        wall_seconds: Some(100),
        ..Default::default()
    };
    let mut state = fold(budget, Vec::new());
    let at = state.last_at_ms;
    let blocked = EventKind::BudgetExceeded(BudgetExceeded {
        dimension: "usd".into(),
        used: 1.0,
        limit: 1.0,
        needed: 0.1,
        refused: None,
        team: None,
    });
    state.apply(state.events + 1, at + 5_000, &blocked).unwrap();
    let active = state.active_ms_at(at + 5_000);
    // A day later, still blocked: no more time used.
    assert_eq!(state.active_ms_at(at + 86_400_000), active);
    state
        .apply(
            state.events + 1,
            at + 86_400_000,
            &EventKind::MissionResumed(MissionResumed {
                by: "@carol".into(),
            }),
        )
        .unwrap();
    assert_eq!(state.active_ms_at(at + 86_400_000 + 2_000), active + 2_000);
}

#[test]
fn breakers_table() {
    let limits = BreakerLimits {
        repeated_action: 3,
        consecutive_failures: 3,
        no_progress: 3,
        provider_errors: 2,
    };
    let read = |id: &str| tool_call(id, "coder", "read_file", json!({"path": "a"}), true, None);
    let fail = |id: &str, cmd: &str| {
        tool_call(
            id,
            "coder",
            "run",
            json!({"command": cmd}),
            false,
            Some("base"),
        )
    };
    let write = |id: &str, tree: &str| {
        tool_call(
            id,
            "coder",
            "write_file",
            json!({"path": id}),
            true,
            Some(tree),
        )
    };
    let planner_read = |id: &str, path: &str| {
        tool_call(
            id,
            "planner",
            "read_file",
            json!({"path": path}),
            true,
            None,
        )
    };
    // (name, history, next call's (tool, args) for before_action, expected trip)
    type Case = (
        &'static str,
        Vec<Vec<EventKind>>,
        Option<(&'static str, serde_json::Value)>,
        Option<&'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            "two identical calls, a third asked",
            vec![read("t1"), read("t2")],
            Some(("read_file", json!({"path": "a"}))),
            Some("repeated_action"),
        ),
        (
            "same tool, other args",
            vec![read("t1"), read("t2")],
            Some(("read_file", json!({"path": "b"}))),
            None,
        ),
        (
            "args compared canonically",
            vec![
                tool_call(
                    "t1",
                    "coder",
                    "edit_file",
                    json!({"path": "a", "old": "x"}),
                    true,
                    None,
                ),
                tool_call(
                    "t2",
                    "coder",
                    "edit_file",
                    json!({"old": "x", "path": "a"}),
                    true,
                    None,
                ),
            ],
            Some(("edit_file", json!({"path": "a", "old": "x"}))),
            Some("repeated_action"),
        ),
        (
            "three failures in a row",
            vec![fail("t1", "a"), fail("t2", "b"), fail("t3", "c")],
            None,
            Some("consecutive_failures"),
        ),
        (
            "a success in between",
            vec![
                fail("t1", "a"),
                fail("t2", "b"),
                write("t3", "t-3"),
                fail("t4", "c"),
            ],
            None,
            None,
        ),
        (
            "three coder calls without a change",
            vec![write("t1", "t-1"), read("t2"), read("t3"), read("t4")],
            None,
            Some("no_progress"),
        ),
        (
            "a write that changes the tree is progress",
            vec![read("t1"), read("t2"), write("t3", "t-3")],
            None,
            None,
        ),
        (
            "a write that leaves the tree as it was is not",
            vec![read("t1"), read("t2"), write("t3", "base")],
            None,
            Some("no_progress"),
        ),
        (
            "planners are not held to making changes",
            vec![
                planner_read("t1", "a"),
                planner_read("t2", "b"),
                planner_read("t3", "c"),
            ],
            None,
            None,
        ),
    ];
    for (name, history, next, expected) in cases {
        let state = fold(
            BudgetSpec::default(),
            history.into_iter().flatten().collect(),
        );
        let got = match next {
            Some((tool, args)) => before_action(&state, &limits, tool, &args),
            None => after_action(&state, &limits),
        };
        assert_eq!(
            got.as_ref().map(|t| t.kind.as_str()),
            expected,
            "{name}: {got:?}"
        );
    }
}

#[test]
fn provider_errors_trip_after_failures_in_a_row_and_an_answer_or_resume_resets_them() {
    let limits = BreakerLimits {
        provider_errors: 2,
        ..BreakerLimits::DEFAULT
    };
    let request = |n: u32| {
        EventKind::ModelRequested(ModelRequested {
            call_id: "step-0.m1".into(),
            provider: "openai".into(),
            model: "gpt".into(),
            role: "coder".into(),
            request: Digest::of(b"r"),
            wire: None,
            attempt: n,
            reserved: None,
            omitted: Vec::new(),
        })
    };
    let failed = |n: u32| {
        EventKind::ModelFailed(ModelFailed {
            call_id: "step-0.m1".into(),
            error: "HTTP 500".into(),
            retryable: true,
            model: Some("openai:gpt".into()),
            attempt: n,
            kind: Some("server_error".into()),
            response: None,
        })
    };
    let one = fold(BudgetSpec::default(), vec![request(1), failed(1)]);
    assert!(after_model_failure(&one, &limits).is_none());
    let two = fold(
        BudgetSpec::default(),
        vec![request(1), failed(1), request(2), failed(2)],
    );
    assert_eq!(
        after_model_failure(&two, &limits).unwrap().kind,
        "provider_errors"
    );
    assert_eq!(two.ledger.by_model["openai:gpt"].failed, 2);
}

#[test]
fn the_ledger_splits_spend_by_model_and_role() {
    let mut events = model_call(1, "planner", 1000, 100, 0.25);
    events.extend(model_call(2, "coder", 2000, 200, 0.5));
    events.extend(model_call(3, "coder", 3000, 300, 0.75));
    let state = fold(BudgetSpec::default(), events);
    let json = state.ledger.to_json();
    assert_eq!(json["total_usd"], 1.5);
    assert_eq!(json["by_role"][0]["role"], "coder");
    assert_eq!(json["by_role"][0]["calls"], 2);
    assert_eq!(json["by_role"][0]["input_tokens"], 5000);
    assert_eq!(json["by_role"][1]["role"], "planner");
    assert_eq!(json["by_model"][0]["cache_read_tokens"], 600);
    assert_eq!(state.ledger.answered_by("scripted:s.toml"), 3);
    assert_eq!(state.tokens, 6600);
}

proptest! {
    /// Whatever the calls reserve and actually use (never more than reserved, as providers
    /// never answer past the output limit and the input bound is an upper bound), a mission
    /// that checks each call before making it never spends past a limit.
    #[test]
    fn spend_never_passes_a_limit(
        usd_limit in 0.0f64..5.0,
        token_limit in 0u64..50_000,
        calls in proptest::collection::vec((1u64..20_000, 0.0f64..2.0, 0.0f64..=1.0), 1..40),
    ) {
        let budget = BudgetSpec { usd: Some(usd_limit), tokens: Some(token_limit), ..Default::default() };
        let mut state = fold(budget, Vec::new());
        for (n, (tokens, usd, used_share)) in calls.into_iter().enumerate() {
            let call_id = format!("step-0.m{}", n + 1);
            let reserved = Reservation { tokens, usd: Some(usd) };
            if check_model_call(&state, &call_id, &reserved, state.last_at_ms).is_some() {
                continue; // refused: nothing is spent
            }
            let actual_tokens = (tokens as f64 * used_share) as u64;
            let events = model_call(n + 1, "coder", actual_tokens / 2, actual_tokens - actual_tokens / 2, usd * used_share);
            for kind in &events {
                state.apply(state.events + 1, state.last_at_ms, kind).unwrap();
            }
            prop_assert!(state.cost_usd <= usd_limit + 1e-9, "spent {} of {}", state.cost_usd, usd_limit);
            prop_assert!(state.tokens <= token_limit, "used {} of {} tokens", state.tokens, token_limit);
        }
    }
}
