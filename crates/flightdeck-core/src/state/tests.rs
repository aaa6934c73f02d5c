//! Property tests of the fold: any valid timeline folds, incrementally or at once, to the same
//! state; breaking the rules anywhere is caught.

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::chain::{seal_kind, verify_chain};
use crate::template::BudgetSpec;

fn created() -> EventKind {
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
        budget: BudgetSpec::default(),
        steps: 3,
        policy_source: None,
        codeowners: None,
        codeowners_path: None,
    })
}

/// What can happen to one step in a generated timeline.
#[derive(Debug, Clone, Copy)]
enum StepFate {
    Succeeds,
    Fails,
    InterruptedThenSucceeds,
}

fn timeline(fates: &[StepFate], finish: bool) -> Vec<EventKind> {
    let mut events = vec![
        created(),
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
            sandbox: "none".into(),
        }),
    ];
    let mut failed = false;
    for (index, fate) in fates.iter().enumerate() {
        let call_id = format!("step-{index}");
        let start = EventKind::StepStarted(StepStarted {
            index,
            kind: StepKind::Run,
            description: "x".into(),
        });
        let request = EventKind::ToolRequested(ToolRequested {
            call_id: call_id.clone(),
            tool: "run".into(),
            args: json!({"command": "x"}),
            actor: "template".into(),
        });
        events.push(start.clone());
        events.push(request.clone());
        if let StepFate::InterruptedThenSucceeds = fate {
            events.push(EventKind::MissionInterrupted(MissionInterrupted {
                reason: "killed".into(),
                calls: vec![],
            }));
            events.push(EventKind::MissionResumed(MissionResumed {
                by: "@carol".into(),
            }));
            events.push(start);
            events.push(request);
        }
        let ok = !matches!(fate, StepFate::Fails);
        events.push(EventKind::ToolCompleted(ToolCompleted {
            call_id,
            ok,
            exit_code: Some(if ok { 0 } else { 1 }),
            output: Digest::of(b"o"),
            duration_ms: 1,
            timed_out: false,
            tree: Some(format!("tree-{index}")),
        }));
        events.push(EventKind::StepFinished(StepFinished {
            index,
            kind: StepKind::Run,
            status: if ok {
                StepStatus::Succeeded
            } else {
                StepStatus::Failed
            },
        }));
        if !ok {
            failed = true;
            break;
        }
    }
    if finish {
        events.push(EventKind::MissionFinished(MissionFinished {
            status: if failed {
                MissionStatus::Failed
            } else {
                MissionStatus::Succeeded
            },
            error: None,
            summary: None,
        }));
    }
    events
}

fn sealed(kinds: &[EventKind]) -> Vec<StoredEvent> {
    let mut prev = GENESIS_HASH.to_string();
    kinds
        .iter()
        .enumerate()
        .map(|(i, kind)| {
            let e = seal_kind("m-1", i as u64 + 1, 1_000 * i as i64, &prev, kind).unwrap();
            prev = e.hash.clone();
            e
        })
        .collect()
}

fn fate() -> impl Strategy<Value = StepFate> {
    prop_oneof![
        Just(StepFate::Succeeds),
        Just(StepFate::Fails),
        Just(StepFate::InterruptedThenSucceeds)
    ]
}

proptest! {
    #[test]
    fn any_prefix_of_a_valid_timeline_folds_like_incremental_application(
        fates in prop::collection::vec(fate(), 0..6),
        finish in any::<bool>(),
    ) {
        let events = sealed(&timeline(&fates, finish));
        prop_assert!(verify_chain("m-1", &events).is_ok());
        let mut incremental = MissionState::new("m-1");
        for (i, event) in events.iter().enumerate() {
            incremental.apply_stored(event).unwrap();
            let whole = MissionState::fold("m-1", &events[..=i]).unwrap();
            prop_assert_eq!(&whole, &incremental);
        }
        prop_assert_eq!(incremental.events, events.len() as u64);
        let failed = fates.iter().any(|f| matches!(f, StepFate::Fails));
        let expected = match (finish, failed) {
            (true, true) => MissionStatus::Failed,
            (true, false) => MissionStatus::Succeeded,
            (false, _) => MissionStatus::Running,
        };
        prop_assert_eq!(incremental.status, expected);
        let interrupted = fates
            .iter()
            .take_while(|f| !matches!(f, StepFate::Fails))
            .filter(|f| matches!(f, StepFate::InterruptedThenSucceeds))
            .count();
        prop_assert_eq!(incremental.interruptions as usize, interrupted);
    }

    #[test]
    fn dropping_or_duplicating_any_event_is_caught(
        fates in prop::collection::vec(fate(), 1..5),
        pick in any::<prop::sample::Index>(),
        duplicate in any::<bool>(),
    ) {
        let mut events = sealed(&timeline(&fates, true));
        // Dropping the last event leaves a valid prefix, so only earlier ones are dropped.
        let at = pick.index(if duplicate { events.len() } else { events.len() - 1 });
        if duplicate {
            let copy = events[at].clone();
            events.insert(at, copy);
        } else {
            events.remove(at);
        }
        prop_assert!(MissionState::fold("m-1", &events).is_err());
        prop_assert!(verify_chain("m-1", &events).is_err());
    }
}

/// Timelines that break the state machine, and the error each gives.
#[test]
fn illegal_timelines_are_refused() {
    let finished = EventKind::MissionFinished(MissionFinished {
        status: MissionStatus::Succeeded,
        error: None,
        summary: None,
    });
    let completed = EventKind::ToolCompleted(ToolCompleted {
        call_id: "nope".into(),
        ok: true,
        exit_code: Some(0),
        output: Digest::of(b""),
        duration_ms: 0,
        timed_out: false,
        tree: None,
    });
    let running = EventKind::MissionFinished(MissionFinished {
        status: MissionStatus::Running,
        error: None,
        summary: None,
    });
    let cases: Vec<(Vec<EventKind>, &str)> = vec![
        (
            vec![finished.clone()],
            "seq 1: the first event must be mission.created, found mission.finished",
        ),
        (
            vec![created(), created()],
            "seq 2: mission.created may only be the first event",
        ),
        (
            vec![created(), finished.clone(), finished],
            "seq 3: mission.finished after mission.finished",
        ),
        (
            vec![created(), completed],
            "seq 2: tool call nope completed but was never requested",
        ),
        (
            vec![created(), running],
            "seq 2: mission.finished with non-final status running",
        ),
    ];
    for (kinds, expected) in cases {
        let events = sealed(&kinds);
        let err = MissionState::fold("m-1", &events).unwrap_err();
        assert_eq!(err.to_string(), expected);
    }
}

#[test]
fn summary_has_the_contract_fields() {
    let events = sealed(&timeline(&[StepFate::Succeeds], true));
    let state = MissionState::fold("m-1", &events).unwrap();
    let summary = state.summary();
    for field in [
        "id",
        "template",
        "status",
        "repo",
        "base_commit",
        "branch",
        "head_commit",
        "requested_by",
        "risk_tier",
        "pending_approvals",
        "budget",
        "events",
        "head_hash",
        "artifacts",
        "error",
    ] {
        assert!(summary.get(field).is_some(), "missing {field}");
    }
    assert_eq!(summary["status"], "succeeded");
    assert_eq!(summary["events"], events.len() as u64);
    assert_eq!(summary["head_hash"], events.last().unwrap().hash);
    assert_eq!(
        summary["budget"]["tool_calls"],
        json!({"used": 1, "limit": null})
    );
}
