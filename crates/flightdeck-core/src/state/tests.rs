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
            base_tree: None,
            ..Default::default()
        }),
    ];
    let mut failed = false;
    for (index, fate) in fates.iter().enumerate() {
        let call_id = format!("step-{index}");
        let start = EventKind::StepStarted(StepStarted {
            index,
            kind: StepKind::Run,
            description: "x".into(),
            role: None,
            system_prompt: None,
            models: Vec::new(),
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
                handed_back: false,
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

// ---- approvals -------------------------------------------------------------------------

const DIFF: &str = "sha256:aaaa";

fn request(id: &str, gate: &str, required: u32, expires: Option<u64>) -> EventKind {
    EventKind::ApprovalRequested(ApprovalRequested {
        approval_id: id.into(),
        gate: gate.into(),
        required,
        eligible: vec!["@alice".into()],
        diff_hash: DIFF.into(),
        bundle: Digest::of(b"bundle"),
        masked: false,
        subject: gate.into(),
        command: None,
        tier: "medium".into(),
        rule_ids: vec!["r".into()],
        approvers: vec!["codeowners".into()],
        changed_paths: vec!["Cargo.toml".into()],
        expires_after_seconds: expires,
        teams: Default::default(),
        code_owners: Default::default(),
    })
}

/// A request whose owned paths each need one of their owners (one team among them).
fn owned_request() -> EventKind {
    let EventKind::ApprovalRequested(mut request) = request("a", "publish", 1, None) else {
        unreachable!()
    };
    request.code_owners = [
        ("Cargo.toml".to_string(), vec!["@alice".to_string()]),
        ("Cargo.lock".to_string(), vec!["@acme/sre".to_string()]),
    ]
    .into();
    request.teams = [("@acme/sre".to_string(), vec!["@erin".to_string()])].into();
    EventKind::ApprovalRequested(request)
}

fn vote(id: &str, by: &str, decision: &str, diff: &str) -> EventKind {
    EventKind::ApprovalDecided(ApprovalDecided {
        approval_id: id.into(),
        by: by.into(),
        decision: decision.into(),
        channel: "cli".into(),
        comment: None,
        policy_hash: Digest::of(b"p"),
        diff_hash: diff.into(),
        actor: None,
    })
}

fn decided(subject: &str, decision: &str, tier: &str) -> EventKind {
    EventKind::PolicyDecided(PolicyDecided {
        subject: subject.into(),
        action: "publish".into(),
        decision: decision.into(),
        tier: tier.into(),
        rule_ids: vec![],
        policy_hash: Digest::of(b"p"),
        explanation: "because".into(),
        approvals: 0,
        approvers: vec![],
        triggered_by: vec![],
        diff_hash: None,
    })
}

fn finished(status: MissionStatus) -> EventKind {
    EventKind::MissionFinished(MissionFinished {
        status,
        error: None,
        summary: None,
    })
}

/// Folds `created` + `events`; the approval `a` and the mission status, or the error.
fn approval_after(
    events: Vec<EventKind>,
) -> Result<(ApprovalStatus, Vec<String>, MissionStatus), String> {
    let mut kinds = vec![created()];
    kinds.extend(events);
    let state = MissionState::fold("m-1", &sealed(&kinds)).map_err(|e| e.to_string())?;
    let a = state.approvals.get("a").ok_or("no approval a")?;
    Ok((
        a.status,
        a.approved_by().iter().map(|s| s.to_string()).collect(),
        state.status,
    ))
}

#[test]
fn approvals_fold_to_the_right_status() {
    use ApprovalStatus::*;
    use MissionStatus::{AwaitingApproval as Waiting, Cancelled, Running};
    let resumed = || EventKind::MissionResumed(MissionResumed { by: "@x".into() });
    let expired = || {
        EventKind::ApprovalExpired(ApprovalExpired {
            approval_id: "a".into(),
            expires_after_seconds: 1,
        })
    };
    // (case, events after mission.created, approval status, approved by, mission status)
    type Case<'a> = (
        &'a str,
        Vec<EventKind>,
        ApprovalStatus,
        Vec<&'a str>,
        MissionStatus,
    );
    let table: Vec<Case> = vec![
        (
            "requested",
            vec![request("a", "publish", 1, None)],
            Pending,
            vec![],
            Waiting,
        ),
        (
            "one of one",
            vec![
                request("a", "publish", 1, None),
                vote("a", "@alice", "approve", DIFF),
            ],
            Approved,
            vec!["@alice"],
            Waiting,
        ),
        (
            "approved, then resumed",
            vec![
                request("a", "publish", 1, None),
                vote("a", "@alice", "approve", DIFF),
                resumed(),
            ],
            Approved,
            vec!["@alice"],
            Running,
        ),
        (
            "one of two",
            vec![
                request("a", "publish", 2, None),
                vote("a", "@alice", "approve", DIFF),
            ],
            Pending,
            vec!["@alice"],
            Waiting,
        ),
        (
            "two of two",
            vec![
                request("a", "publish", 2, None),
                vote("a", "@alice", "approve", DIFF),
                vote("a", "@bob", "approve", DIFF),
            ],
            Approved,
            vec!["@alice", "@bob"],
            Waiting,
        ),
        (
            "a vote for another diff does not count",
            vec![
                request("a", "publish", 1, None),
                vote("a", "@alice", "approve", "sha256:old"),
            ],
            Pending,
            vec![],
            Waiting,
        ),
        (
            "one deny rejects",
            vec![
                request("a", "publish", 2, None),
                vote("a", "@alice", "approve", DIFF),
                vote("a", "@bob", "deny", DIFF),
            ],
            Denied,
            vec!["@alice"],
            Waiting,
        ),
        (
            "expiry",
            vec![request("a", "publish", 1, Some(1)), expired()],
            Expired,
            vec![],
            Waiting,
        ),
        (
            "a newer request supersedes",
            vec![
                request("a", "publish", 1, None),
                request("b", "publish", 1, None),
            ],
            Superseded,
            vec![],
            Waiting,
        ),
        (
            "another gate does not supersede",
            vec![
                request("a", "publish", 1, None),
                request("b", "command", 1, None),
            ],
            Pending,
            vec![],
            Waiting,
        ),
        (
            "one approval of two owned paths",
            vec![owned_request(), vote("a", "@alice", "approve", DIFF)],
            Pending,
            vec!["@alice"],
            Waiting,
        ),
        (
            "a non-owner does not cover a path",
            vec![
                owned_request(),
                vote("a", "@bob", "approve", DIFF),
                vote("a", "@alice", "approve", DIFF),
            ],
            Pending,
            vec!["@bob", "@alice"],
            Waiting,
        ),
        (
            "a team member covers the team's path",
            vec![
                owned_request(),
                vote("a", "@alice", "approve", DIFF),
                vote("a", "@ERIN", "approve", DIFF),
            ],
            Approved,
            vec!["@alice", "@ERIN"],
            Waiting,
        ),
        (
            "the mission ends first",
            vec![request("a", "publish", 1, None), finished(Cancelled)],
            Withdrawn,
            vec![],
            Cancelled,
        ),
    ];
    for (case, events, status, by, mission) in table {
        let got = approval_after(events).unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(
            got,
            (status, by.iter().map(|s| s.to_string()).collect(), mission),
            "{case}"
        );
    }
}

#[test]
fn impossible_approval_histories_are_refused() {
    let expired = || {
        EventKind::ApprovalExpired(ApprovalExpired {
            approval_id: "a".into(),
            expires_after_seconds: 1,
        })
    };
    let table: Vec<(&str, Vec<EventKind>, &str)> = vec![
        (
            "decided but never requested",
            vec![vote("a", "@alice", "approve", DIFF)],
            "unknown approval",
        ),
        (
            "requested twice",
            vec![
                request("a", "publish", 1, None),
                request("a", "publish", 1, None),
            ],
            "requested twice",
        ),
        (
            "decided after approval",
            vec![
                request("a", "publish", 1, None),
                vote("a", "@alice", "approve", DIFF),
                vote("a", "@bob", "approve", DIFF),
            ],
            "after it was approved",
        ),
        (
            "decided after a deny",
            vec![
                request("a", "publish", 2, None),
                vote("a", "@alice", "deny", DIFF),
                vote("a", "@bob", "approve", DIFF),
            ],
            "after it was denied",
        ),
        (
            "expired after approval",
            vec![
                request("a", "publish", 1, Some(1)),
                vote("a", "@alice", "approve", DIFF),
                expired(),
            ],
            "expired after",
        ),
        (
            "the same person twice",
            vec![
                request("a", "publish", 2, None),
                vote("a", "@alice", "approve", DIFF),
                vote("a", " ALICE ", "approve", DIFF),
            ],
            "decided twice",
        ),
        (
            "resumed while an approval is pending",
            vec![
                request("a", "publish", 1, None),
                EventKind::MissionResumed(MissionResumed { by: "@x".into() }),
            ],
            "while approval a is pending",
        ),
        (
            "a decision that is neither",
            vec![
                request("a", "publish", 1, None),
                vote("a", "@alice", "maybe", DIFF),
            ],
            "neither approve nor deny",
        ),
    ];
    for (case, events, needle) in table {
        let err = approval_after(events).expect_err(case);
        assert!(err.contains(needle), "{case}: {err}");
    }
}

#[test]
fn the_summary_reports_risk_tier_and_pending_approvals() {
    let kinds = vec![
        created(),
        decided("step-0", "allow", "low"),
        decided("publish", "approve", "high"),
        decided("step-1", "allow", "medium"),
        request("a", "publish", 2, Some(60)),
        vote("a", "@alice", "approve", DIFF),
    ];
    let state = MissionState::fold("m-1", &sealed(&kinds)).unwrap();
    let summary = state.summary();
    assert_eq!(summary["risk_tier"], "high");
    assert_eq!(
        summary["policy"]["decisions"],
        json!({"allow": 2, "approve": 1, "deny": 0})
    );
    let pending = &summary["pending_approvals"][0];
    assert_eq!(pending["id"], "a");
    assert_eq!(pending["gate"], "publish");
    assert_eq!(pending["required"], 2);
    assert_eq!(pending["approved_by"], json!(["@alice"]));
    assert_eq!(pending["eligible"], json!(["@alice"]));
    assert_eq!(pending["rule_ids"], json!(["r"]));
    // Requested at seq 5 (4 s after the epoch in `sealed`), expiring 60 s later.
    assert_eq!(pending["expires_at"], "1970-01-01T00:01:04.000Z");
    assert_eq!(state.due_expiries(63_999).len(), 0);
    assert_eq!(state.due_expiries(64_000).len(), 1);
    assert!(state.granted_approval("publish", DIFF).is_none());
}

proptest! {
    /// Whatever the order of distinct approvers, an approval is granted exactly when the
    /// required count is reached, and any deny before that rejects it.
    #[test]
    fn approvals_count_distinct_votes_and_a_deny_wins(
        required in 1u32..4,
        votes in proptest::collection::vec(prop_oneof![Just("approve"), Just("deny")], 0..6),
    ) {
        let mut events = vec![request("a", "publish", required, None)];
        let mut expected = ApprovalStatus::Pending;
        let mut approvals = 0;
        for (i, decision) in votes.iter().enumerate() {
            if expected != ApprovalStatus::Pending {
                break; // the engine refuses decisions on a closed approval
            }
            events.push(vote("a", &format!("@p{i}"), decision, DIFF));
            if *decision == "deny" {
                expected = ApprovalStatus::Denied;
            } else {
                approvals += 1;
                if approvals >= required {
                    expected = ApprovalStatus::Approved;
                }
            }
        }
        let (status, by, _) = approval_after(events).unwrap();
        prop_assert_eq!(status, expected);
        prop_assert_eq!(by.len(), approvals as usize);
    }
}
