//! The governed-call protocol as a decision table: a mission's state (built from events), a
//! proposed call and what the caller knows → what the call becomes, written as one line.
//!
//! Each row says `given … call … expect "…"`; all rows run, and every mismatch is reported
//! together with the row's name.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use flightdeck_core::budget::BreakerLimits;
use flightdeck_core::event::*;
use flightdeck_core::state::MissionState;
use flightdeck_core::template::BudgetSpec;
use flightdeck_core::{Digest, EventKind};
use flightdeck_engine::protocol::{
    covered_writes, govern, govern_model_attempt, govern_publish, Actor, Call, Confinement, Facts,
    Next, Proposed, PublishFacts,
};
use flightdeck_policy::{ChangeStatus, ChangedFile, Policy};
use serde_json::{json, Value};

const POLICY: &str = r#"
[defaults]
command = "allow"
write = "allow"
publish = "approve"

[[rule]]
id = "deploys-need-ops"
action = "command"
command_matches = ["deploy*"]
decision = "approve"
approvers = ["@ops"]
tier = "high"

[[rule]]
id = "no-rm-root"
action = "command"
command_matches = ["rm -rf /*"]
decision = "deny"
tier = "critical"

[[rule]]
id = "infra-writes"
action = "write"
paths = ["infra/**"]
decision = "approve"
approvers = ["@ops"]
tier = "high"

[[rule]]
id = "no-secret-writes"
action = "write"
paths = ["secrets/**"]
decision = "deny"
tier = "critical"

[[rule]]
id = "docs-auto"
action = "publish"
changes_only = ["docs"]
decision = "allow"
tier = "low"

[[rule]]
id = "infra-auto"
action = "publish"
changes_only = ["docs", "infra"]
decision = "allow"
tier = "low"

[[rule]]
id = "vendor-never"
action = "publish"
changes_any = ["vendored"]
decision = "deny"
tier = "critical"

[classes]
vendored = ["vendor/**"]
"#;

const T0: i64 = 1_700_000_000_000;

/// A mission's timeline being built, folded as it goes.
struct Given {
    state: MissionState,
    at: i64,
}

impl Given {
    fn mission(budget: BudgetSpec) -> Given {
        let mut given = Given {
            state: MissionState::new("m-01hzzzzzzzzzzzzzzzzzzzzzzz"),
            at: T0,
        };
        given.push(EventKind::MissionCreated(MissionCreated {
            template: "t".into(),
            template_hash: Digest::of(b"t"),
            params: BTreeMap::new(),
            repo: "/repo".into(),
            base_commit: "b".repeat(40),
            requested_by: "@carol".into(),
            policy_hash: Digest::of(POLICY.as_bytes()),
            template_source: Digest::of(b"t"),
            base_ref: "HEAD".into(),
            engine_version: "test".into(),
            budget,
            steps: 2,
            policy_source: None,
            codeowners: None,
            codeowners_path: None,
            model_scripts: BTreeMap::new(),
            requested_as: None,
            codeowners_warnings: Vec::new(),
            remote: None,
            goal: None,
            source: None,
            follows: None,
            github: None,
        }));
        given.push(EventKind::WorkspaceProvisioned(WorkspaceProvisioned {
            runtime: "local".into(),
            ..WorkspaceProvisioned::default()
        }));
        given
    }

    fn plain() -> Given {
        Given::mission(BudgetSpec::default())
    }

    fn push(&mut self, kind: EventKind) -> &mut Given {
        self.at += 1000;
        let seq = self.state.events + 1;
        if let Err(e) = self.state.apply(seq, self.at, &kind) {
            panic!("setup event {} does not fold: {e}", kind.type_name());
        }
        self
    }

    fn requested(&mut self, call: &str, tool: &str, args: Value, actor: &str) -> &mut Given {
        self.push(EventKind::ToolRequested(ToolRequested {
            call_id: call.into(),
            tool: tool.into(),
            args,
            actor: actor.into(),
        }))
    }

    fn command(&mut self, call: &str, command: &str, actor: &str) -> &mut Given {
        self.requested(call, "run", json!({ "command": command }), actor)
    }

    fn completed(&mut self, call: &str, ok: bool, tree: Option<&str>) -> &mut Given {
        self.push(EventKind::ToolCompleted(ToolCompleted {
            call_id: call.into(),
            ok,
            exit_code: Some(if ok { 0 } else { 1 }),
            output: Digest::of(b"out"),
            duration_ms: 1,
            timed_out: false,
            tree: tree.map(str::to_string),
        }))
    }

    fn asked(
        &mut self,
        approval: &str,
        subject: &str,
        gate: &str,
        diff: &str,
        command: Option<&str>,
    ) -> &mut Given {
        self.push(EventKind::ApprovalRequested(ApprovalRequested {
            approval_id: approval.into(),
            gate: gate.into(),
            required: 1,
            eligible: vec!["@ops".into()],
            diff_hash: diff.into(),
            bundle: Digest::of(b"bundle"),
            masked: false,
            subject: subject.into(),
            command: command.map(str::to_string),
            tier: "high".into(),
            rule_ids: vec![],
            approvers: vec!["@ops".into()],
            changed_paths: if gate == "write" {
                vec!["infra/main.tf".into()]
            } else {
                vec![]
            },
            expires_after_seconds: None,
            teams: BTreeMap::new(),
            code_owners: BTreeMap::new(),
        }))
    }

    fn vote(&mut self, approval: &str, decision: &str, diff: &str) -> &mut Given {
        self.push(EventKind::ApprovalDecided(ApprovalDecided {
            approval_id: approval.into(),
            by: "@ops".into(),
            decision: decision.into(),
            channel: "cli".into(),
            comment: None,
            policy_hash: Digest::of(POLICY.as_bytes()),
            diff_hash: diff.into(),
            actor: None,
        }))
    }

    fn resumed(&mut self) -> &mut Given {
        self.push(EventKind::MissionResumed(MissionResumed {
            by: "@carol".into(),
        }))
    }

    fn interrupted(&mut self, calls: &[&str]) -> &mut Given {
        self.push(EventKind::MissionInterrupted(MissionInterrupted {
            reason: "killed".into(),
            calls: calls.iter().map(|c| c.to_string()).collect(),
            handed_back: false,
        }))
    }

    fn publish_decided(&mut self, decision: &str, diff: &str) -> &mut Given {
        self.push(EventKind::PolicyDecided(PolicyDecided {
            subject: "publish".into(),
            action: "publish".into(),
            decision: decision.into(),
            tier: "medium".into(),
            rule_ids: vec![],
            policy_hash: Digest::of(POLICY.as_bytes()),
            explanation: "test".into(),
            approvals: 1,
            approvers: vec!["codeowners".into()],
            triggered_by: vec![],
            diff_hash: Some(diff.into()),
        }))
    }

    fn raised(&mut self, dimension: &str, amount: f64) -> &mut Given {
        self.push(EventKind::BudgetRaised(BudgetRaised {
            by: "@carol".into(),
            dimension: dimension.into(),
            amount,
        }))
    }
}

/// One line for what a call becomes.
fn render(next: &Next) -> String {
    let types = |events: &[EventKind]| {
        events
            .iter()
            .map(|e| e.type_name())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let decided = |events: &[EventKind]| {
        events
            .iter()
            .find_map(|e| match e {
                EventKind::PolicyDecided(d) => Some(format!(
                    " {}{}",
                    d.decision,
                    if d.rule_ids.is_empty() {
                        String::new()
                    } else {
                        format!("({})", d.rule_ids.join(","))
                    }
                )),
                EventKind::BudgetExceeded(b) => Some(format!(" over:{}", b.dimension)),
                EventKind::BreakerTripped(b) => Some(format!(" breaker:{}", b.kind)),
                _ => None,
            })
            .unwrap_or_default()
    };
    match next {
        Next::Done { call_id } => format!("done {call_id}"),
        Next::Run { call_id, events } => {
            format!("run {call_id} [{}]{}", types(events), decided(events))
        }
        Next::Reject {
            call_id, events, ..
        } => format!("reject {call_id} [{}]", types(events)),
        Next::NeedDiff => "need-diff".to_string(),
        Next::Park {
            call_id,
            events,
            ask,
        } => format!(
            "park {call_id} {} [{}]{}{}",
            ask.gate,
            types(events),
            decided(events),
            if ask.paths.is_empty() {
                String::new()
            } else {
                format!(" paths={}", ask.paths.join(","))
            }
        ),
        Next::Wait => "wait".to_string(),
        Next::Stop { events } => format!("stop [{}]{}", types(events), decided(events)),
    }
}

struct Table {
    policy: Policy,
    failures: Vec<String>,
    rows: usize,
}

impl Table {
    fn new() -> Table {
        Table {
            policy: Policy::parse(POLICY, "test policy").unwrap(),
            failures: Vec::new(),
            rows: 0,
        }
    }

    fn check(
        &mut self,
        name: &str,
        given: &Given,
        call: Call<'_>,
        diff: Option<&str>,
        expected: &str,
    ) {
        self.rows += 1;
        let facts = Facts {
            now_ms: given.at + 500,
            diff_hash: diff,
        };
        let next = govern(
            &given.state,
            &self.policy,
            &Digest::of(POLICY.as_bytes()),
            &call,
            &facts,
        );
        let actual = render(&next);
        if actual != expected {
            self.failures.push(format!(
                "{name}\n    expected: {expected}\n    actual:   {actual}"
            ));
        }
    }

    fn publish(
        &mut self,
        name: &str,
        given: &Given,
        changed: &[&str],
        diff: &str,
        approved_writes: &[&str],
        expected: &str,
    ) {
        self.rows += 1;
        let changed: Vec<ChangedFile> = changed
            .iter()
            .map(|p| ChangedFile::new(*p, ChangeStatus::Modified))
            .collect();
        let approved: Vec<String> = approved_writes.iter().map(|p| p.to_string()).collect();
        let next = govern_publish(
            &given.state,
            &self.policy,
            &PublishFacts {
                diff_hash: diff,
                changed: &changed,
                approved_writes: &approved,
            },
        );
        let actual = render(&next);
        if actual != expected {
            self.failures.push(format!(
                "{name}\n    expected: {expected}\n    actual:   {actual}"
            ));
        }
    }

    fn model(&mut self, name: &str, given: &Given, tokens: u64, usd: Option<f64>, expected: &str) {
        self.rows += 1;
        let reserved = Reservation { tokens, usd };
        let actual =
            match govern_model_attempt(&given.state, "step-0.m1", &reserved, given.at + 500) {
                None => "go".to_string(),
                Some(EventKind::BudgetExceeded(b)) => format!("over:{}", b.dimension),
                Some(other) => other.type_name().to_string(),
            };
        if actual != expected {
            self.failures.push(format!(
                "{name}\n    expected: {expected}\n    actual:   {actual}"
            ));
        }
    }

    fn finish(self) {
        assert!(self.rows >= 60, "the table has {} rows", self.rows);
        assert!(
            self.failures.is_empty(),
            "{} of {} rows differ:\n{}",
            self.failures.len(),
            self.rows,
            self.failures.join("\n")
        );
    }
}

fn run_step<'a>(base: &'a str, command: &'a str, args: &'a Value) -> Call<'a> {
    Call {
        base,
        actor: Actor::Template,
        tool: "run",
        args,
        proposed: Proposed::Command { command },
        what: "step 1/2",
        step: Some((0, StepKind::Run)),
        breakers: None,
    }
}

const LIMITS: BreakerLimits = BreakerLimits {
    repeated_action: 3,
    consecutive_failures: 8,
    no_progress: 30,
    provider_errors: 10,
};

fn agent<'a>(base: &'a str, tool: &'a str, args: &'a Value, proposed: Proposed<'a>) -> Call<'a> {
    Call {
        base,
        actor: Actor::Agent("coder"),
        tool,
        args,
        proposed,
        what: "step 2/2 (coder)",
        step: Some((1, StepKind::Agent)),
        breakers: Some(&LIMITS),
    }
}

#[test]
fn what_a_proposed_call_becomes() {
    let mut t = Table::new();
    let cmd = |c: &str| json!({ "command": c });
    let args = json!({});
    let (a_test, a_deploy, a_rm) = (cmd("cargo test"), cmd("deploy prod"), cmd("rm -rf /tmp/x"));
    let fresh = Given::plain();

    // Template commands.
    t.check(
        "an allowed command runs, its request and decision recorded first",
        &fresh,
        run_step("step-0", "cargo test", &a_test),
        None,
        "run step-0 [tool.requested policy.decided] allow",
    );
    t.check(
        "a denied command never runs and fails the step and the mission",
        &fresh,
        run_step("step-0", "rm -rf /tmp/x", &a_rm),
        None,
        "stop [tool.requested policy.decided step.finished mission.finished] deny(no-rm-root)",
    );
    t.check(
        "a command that needs approval first needs the diff it would be approved on",
        &fresh,
        run_step("step-0", "deploy prod", &a_deploy),
        None,
        "need-diff",
    );
    t.check(
        "with the diff, it parks at a command gate",
        &fresh,
        run_step("step-0", "deploy prod", &a_deploy),
        Some("sha256:d1"),
        "park step-0 command [tool.requested policy.decided] approve(deploys-need-ops)",
    );
    let mut done = Given::plain();
    done.command("step-0", "cargo test", "template")
        .completed("step-0", true, Some("t1"));
    t.check(
        "a completed call is done, never run again",
        &done,
        run_step("step-0", "cargo test", &a_test),
        None,
        "done step-0",
    );
    let mut failed = Given::plain();
    failed
        .command("step-0", "cargo test", "template")
        .completed("step-0", false, None);
    t.check(
        "a completed call is done even when it failed",
        &failed,
        run_step("step-0", "cargo test", &a_test),
        None,
        "done step-0",
    );
    let spent = Given::mission(BudgetSpec {
        tool_calls: Some(0),
        ..BudgetSpec::default()
    });
    t.check(
        "no tool call left: the call is not made and the mission blocks",
        &spent,
        run_step("step-0", "cargo test", &a_test),
        None,
        "stop [budget.exceeded] over:tool_calls",
    );
    let one_left = Given::mission(BudgetSpec {
        tool_calls: Some(1),
        ..BudgetSpec::default()
    });
    t.check(
        "the last tool call of the budget is made",
        &one_left,
        run_step("step-0", "cargo test", &a_test),
        None,
        "run step-0 [tool.requested policy.decided] allow",
    );
    let mut no_time = Given::mission(BudgetSpec {
        wall_seconds: Some(1),
        ..BudgetSpec::default()
    });
    no_time
        .command("step-0", "sleep 1", "template")
        .completed("step-0", true, None);
    t.check(
        "wall time used up: nothing starts",
        &no_time,
        run_step("step-1", "cargo test", &a_test),
        None,
        "stop [budget.exceeded] over:wall_seconds",
    );
    let mut raised = Given::mission(BudgetSpec {
        tool_calls: Some(0),
        ..BudgetSpec::default()
    });
    raised.raised("tool_calls", 1.0);
    t.check(
        "a raise makes room again",
        &raised,
        run_step("step-0", "cargo test", &a_test),
        None,
        "run step-0 [tool.requested policy.decided] allow",
    );
    t.check(
        "a denied command is denied even when the budget would block",
        &Given::mission(BudgetSpec {
            tool_calls: Some(1),
            ..BudgetSpec::default()
        }),
        run_step("step-0", "rm -rf /tmp/x", &a_rm),
        None,
        "stop [tool.requested policy.decided step.finished mission.finished] deny(no-rm-root)",
    );

    // Approvals of command gates.
    let mut granted = Given::plain();
    granted
        .command("step-0", "deploy prod", "template")
        .asked("a-1", "step-0", "command", "sha256:d1", Some("deploy prod"))
        .vote("a-1", "approve", "sha256:d1")
        .resumed();
    t.check(
        "granted while parked: the asked call needs the diff to run",
        &granted,
        run_step("step-0", "deploy prod", &a_deploy),
        None,
        "need-diff",
    );
    t.check(
        "granted while parked, same diff: the asked call runs as requested",
        &granted,
        run_step("step-0", "deploy prod", &a_deploy),
        Some("sha256:d1"),
        "run step-0 []",
    );
    t.check(
        "granted while parked, the worktree moved on: asked again as a new attempt",
        &granted,
        run_step("step-0", "deploy prod", &a_deploy),
        Some("sha256:d2"),
        "park step-0#2 command [tool.requested policy.decided] approve(deploys-need-ops)",
    );
    let mut pending = Given::plain();
    pending.command("step-0", "deploy prod", "template").asked(
        "a-1",
        "step-0",
        "command",
        "sha256:d1",
        Some("deploy prod"),
    );
    t.check(
        "a pending approval covers nothing: another attempt asks again",
        &pending,
        run_step("step-0", "deploy prod", &a_deploy),
        Some("sha256:d1"),
        "park step-0#2 command [tool.requested policy.decided] approve(deploys-need-ops)",
    );
    let mut interrupted = Given::plain();
    interrupted
        .command("step-0", "deploy prod", "template")
        .asked("a-1", "step-0", "command", "sha256:d1", Some("deploy prod"))
        .vote("a-1", "approve", "sha256:d1")
        .resumed()
        .interrupted(&["step-0"])
        .resumed();
    t.check(
        "an approved command a crash interrupted runs again without a second approval",
        &interrupted,
        run_step("step-0", "deploy prod", &a_deploy),
        Some("sha256:d1"),
        "run step-0#2 [tool.requested policy.decided] approve(deploys-need-ops)",
    );
    t.check(
        "…but not on another diff",
        &interrupted,
        run_step("step-0", "deploy prod", &a_deploy),
        Some("sha256:d9"),
        "park step-0#2 command [tool.requested policy.decided] approve(deploys-need-ops)",
    );
    let a_other = cmd("deploy staging");
    t.check(
        "…and not for another command",
        &interrupted,
        run_step("step-0", "deploy staging", &a_other),
        Some("sha256:d1"),
        "park step-0#2 command [tool.requested policy.decided] approve(deploys-need-ops)",
    );
    t.check(
        "…and not for the same command in another step",
        &interrupted,
        run_step("step-1", "deploy prod", &a_deploy),
        Some("sha256:d1"),
        "park step-1 command [tool.requested policy.decided] approve(deploys-need-ops)",
    );
    let mut spent_approval = Given::plain();
    spent_approval
        .command("step-0", "deploy prod", "template")
        .asked("a-1", "step-0", "command", "sha256:d1", Some("deploy prod"))
        .vote("a-1", "approve", "sha256:d1")
        .resumed()
        .completed("step-0", true, None);
    t.check(
        "an approval is spent once its call completed: the same command later asks again",
        &spent_approval,
        run_step("step-1", "deploy prod", &a_deploy),
        Some("sha256:d1"),
        "park step-1 command [tool.requested policy.decided] approve(deploys-need-ops)",
    );
    let mut twice = Given::plain();
    twice
        .command("step-0", "cargo test", "template")
        .interrupted(&["step-0"])
        .resumed()
        .command("step-0#2", "cargo test", "template")
        .interrupted(&["step-0#2"])
        .resumed();
    t.check(
        "attempts are numbered after every interrupted one",
        &twice,
        run_step("step-0", "cargo test", &a_test),
        None,
        "run step-0#3 [tool.requested policy.decided] allow",
    );
    let mut plain_interrupted = Given::plain();
    plain_interrupted
        .command("step-0", "cargo test", "template")
        .interrupted(&["step-0"])
        .resumed();
    t.check(
        "an interrupted allowed call runs again as a new attempt",
        &plain_interrupted,
        run_step("step-0", "cargo test", &a_test),
        None,
        "run step-0#2 [tool.requested policy.decided] allow",
    );

    // Agents' tool calls.
    let read_args = json!({"path": "src/lib.rs"});
    t.check(
        "an agent's read inside the worktree is allowed",
        &fresh,
        agent(
            "step-1.m1.t1",
            "read_file",
            &read_args,
            Proposed::Read {
                path: "src/lib.rs",
                confinement: Confinement::Inside("src/lib.rs".into()),
            },
        ),
        None,
        "run step-1.m1.t1 [tool.requested policy.decided] allow",
    );
    let out_args = json!({"path": "../etc/passwd"});
    t.check("a read out of the worktree is denied whatever the policy says", &fresh, agent("step-1.m1.t1", "read_file", &out_args, Proposed::Read { path: "../etc/passwd", confinement: Confinement::Outside("`..` leaves the worktree".into()) }), None, "stop [tool.requested policy.decided step.finished mission.finished] deny(workspace-confinement)");
    let mut acceptance_fix = agent(
        "acceptance.1.fix.m1.t1",
        "read_file",
        &out_args,
        Proposed::Read {
            path: "../etc/passwd",
            confinement: Confinement::Outside("out".into()),
        },
    );
    acceptance_fix.step = None;
    t.check(
        "a denied call of an acceptance fix round fails the mission (no step to fail)",
        &fresh,
        acceptance_fix,
        None,
        "stop [tool.requested policy.decided mission.finished] deny(workspace-confinement)",
    );
    let write_args = json!({"path": "src/lib.rs", "content": "x"});
    t.check(
        "a write the policy allows runs",
        &fresh,
        agent(
            "step-1.m1.t1",
            "write_file",
            &write_args,
            Proposed::Write {
                path: "src/lib.rs",
                confinement: Confinement::Inside("src/lib.rs".into()),
                preview: "w".into(),
            },
        ),
        None,
        "run step-1.m1.t1 [tool.requested policy.decided] allow",
    );
    let infra_args = json!({"path": "infra/main.tf", "content": "x"});
    let infra = || Proposed::Write {
        path: "infra/main.tf",
        confinement: Confinement::Inside("infra/main.tf".into()),
        preview: "write_file infra/main.tf (1 bytes):\nx".into(),
    };
    t.check(
        "a write that needs approval needs the diff first",
        &fresh,
        agent("step-1.m1.t1", "write_file", &infra_args, infra()),
        None,
        "need-diff",
    );
    t.check("…then parks at a write gate for that path", &fresh, agent("step-1.m1.t1", "write_file", &infra_args, infra()), Some("sha256:d1"), "park step-1.m1.t1 write [tool.requested policy.decided] approve(infra-writes) paths=infra/main.tf");
    t.check("a write to a normalised path is judged on the normalised path", &fresh, agent("step-1.m1.t1", "write_file", &infra_args, Proposed::Write { path: "./infra//main.tf", confinement: Confinement::Inside("infra/main.tf".into()), preview: "p".into() }), Some("sha256:d1"), "park step-1.m1.t1 write [tool.requested policy.decided] approve(infra-writes) paths=infra/main.tf");
    let secret_args = json!({"path": "secrets/key", "content": "x"});
    t.check("a write a rule denies fails the mission", &fresh, agent("step-1.m1.t1", "write_file", &secret_args, Proposed::Write { path: "secrets/key", confinement: Confinement::Inside("secrets/key".into()), preview: "p".into() }), None, "stop [tool.requested policy.decided step.finished mission.finished] deny(no-secret-writes)");
    t.check("a write into .git is denied by confinement", &fresh, agent("step-1.m1.t1", "write_file", &write_args, Proposed::Write { path: ".git/config", confinement: Confinement::Outside("`.git` is not the agent's".into()), preview: "p".into() }), None, "stop [tool.requested policy.decided step.finished mission.finished] deny(workspace-confinement)");
    t.check("a write whose path could not be checked yet is judged as given", &fresh, agent("step-1.m1.t1", "write_file", &infra_args, Proposed::Write { path: "infra/new.tf", confinement: Confinement::Unchecked, preview: "p".into() }), Some("sha256:d1"), "park step-1.m1.t1 write [tool.requested policy.decided] approve(infra-writes) paths=infra/new.tf");
    t.check(
        "an agent's command is judged like a template's",
        &fresh,
        agent(
            "step-1.m1.t1",
            "run",
            &a_test,
            Proposed::Command {
                command: "cargo test",
            },
        ),
        None,
        "run step-1.m1.t1 [tool.requested policy.decided] allow",
    );
    t.check(
        "an agent's denied command fails its step",
        &fresh,
        agent(
            "step-1.m1.t1",
            "run",
            &a_rm,
            Proposed::Command {
                command: "rm -rf /tmp/x",
            },
        ),
        None,
        "stop [tool.requested policy.decided step.finished mission.finished] deny(no-rm-root)",
    );
    t.check(
        "an agent's command can need approval",
        &fresh,
        agent(
            "step-1.m1.t1",
            "run",
            &a_deploy,
            Proposed::Command {
                command: "deploy prod",
            },
        ),
        Some("sha256:d1"),
        "park step-1.m1.t1 command [tool.requested policy.decided] approve(deploys-need-ops)",
    );
    let finish_args = json!({"summary": "done"});
    t.check(
        "finishing is always allowed",
        &fresh,
        agent("step-1.m1.t1", "finish", &finish_args, Proposed::End),
        None,
        "run step-1.m1.t1 [tool.requested policy.decided] allow",
    );
    t.check(
        "finishing is not held back by a spent budget",
        &spent,
        agent("step-1.m1.t1", "finish", &finish_args, Proposed::End),
        None,
        "run step-1.m1.t1 [tool.requested policy.decided] allow",
    );
    t.check(
        "a malformed finish is not held back by a spent budget either",
        &spent,
        agent(
            "step-1.m1.t1",
            "finish",
            &args,
            Proposed::Invalid {
                message: "`finish`: `summary` is required",
            },
        ),
        None,
        "reject step-1.m1.t1 [tool.requested]",
    );
    t.check(
        "a read is held back by a spent budget",
        &spent,
        agent(
            "step-1.m1.t1",
            "read_file",
            &read_args,
            Proposed::Read {
                path: "src/lib.rs",
                confinement: Confinement::Inside("src/lib.rs".into()),
            },
        ),
        None,
        "stop [budget.exceeded] over:tool_calls",
    );
    t.check(
        "malformed arguments: nothing runs, the model is told",
        &fresh,
        agent(
            "step-1.m1.t1",
            "read_file",
            &args,
            Proposed::Invalid {
                message: "`read_file`: `path` is required",
            },
        ),
        None,
        "reject step-1.m1.t1 [tool.requested]",
    );
    t.check(
        "malformed arguments are held back by a spent budget",
        &spent,
        agent(
            "step-1.m1.t1",
            "read_file",
            &args,
            Proposed::Invalid { message: "bad" },
        ),
        None,
        "stop [budget.exceeded] over:tool_calls",
    );
    let mut repeated = Given::plain();
    for n in 1..=2 {
        let id = format!("step-1.m{n}.t1");
        repeated
            .requested(&id, "read_file", read_args.clone(), "coder")
            .completed(&id, true, None);
    }
    t.check(
        "the same call a third time in a row trips the breaker",
        &repeated,
        agent(
            "step-1.m3.t1",
            "read_file",
            &read_args,
            Proposed::Read {
                path: "src/lib.rs",
                confinement: Confinement::Inside("src/lib.rs".into()),
            },
        ),
        None,
        "stop [breaker.tripped] breaker:repeated_action",
    );
    let other_read = json!({"path": "src/main.rs"});
    t.check(
        "another call after two repeats does not",
        &repeated,
        agent(
            "step-1.m3.t1",
            "read_file",
            &other_read,
            Proposed::Read {
                path: "src/main.rs",
                confinement: Confinement::Inside("src/main.rs".into()),
            },
        ),
        None,
        "run step-1.m3.t1 [tool.requested policy.decided] allow",
    );
    let mut template_repeat = run_step("step-3", "cargo test", &a_test);
    template_repeat.breakers = None;
    let mut repeated_cmds = Given::plain();
    for n in 0..3 {
        let id = format!("step-{n}");
        repeated_cmds
            .command(&id, "cargo test", "template")
            .completed(&id, true, None);
    }
    t.check(
        "breakers watch agents, not the template's steps",
        &repeated_cmds,
        template_repeat,
        None,
        "run step-3 [tool.requested policy.decided] allow",
    );
    let mut repeated_spent = Given::mission(BudgetSpec {
        tool_calls: Some(2),
        ..BudgetSpec::default()
    });
    for n in 1..=2 {
        let id = format!("step-1.m{n}.t1");
        repeated_spent
            .requested(&id, "read_file", read_args.clone(), "coder")
            .completed(&id, true, None);
    }
    t.check(
        "the budget is checked before the breakers",
        &repeated_spent,
        agent(
            "step-1.m3.t1",
            "read_file",
            &read_args,
            Proposed::Read {
                path: "src/lib.rs",
                confinement: Confinement::Inside("src/lib.rs".into()),
            },
        ),
        None,
        "stop [budget.exceeded] over:tool_calls",
    );
    let mut repeated_finish = Given::plain();
    for n in 1..=2 {
        let id = format!("step-1.m{n}.t1");
        repeated_finish
            .requested(&id, "finish", finish_args.clone(), "coder")
            .completed(&id, false, None);
    }
    t.check(
        "ending the run a third time in a row trips the breaker too",
        &repeated_finish,
        agent("step-1.m3.t1", "finish", &finish_args, Proposed::End),
        None,
        "stop [breaker.tripped] breaker:repeated_action",
    );
    let mut resumed_repeats = repeated.clone_state();
    resumed_repeats.resumed();
    t.check(
        "a resume starts the breakers afresh",
        &resumed_repeats,
        agent(
            "step-1.m3.t1",
            "read_file",
            &read_args,
            Proposed::Read {
                path: "src/lib.rs",
                confinement: Confinement::Inside("src/lib.rs".into()),
            },
        ),
        None,
        "run step-1.m3.t1 [tool.requested policy.decided] allow",
    );
    let mut agent_done = Given::plain();
    agent_done
        .requested("step-1.m1.t1", "read_file", read_args.clone(), "coder")
        .completed("step-1.m1.t1", true, None);
    t.check(
        "an agent's call that completed is done",
        &agent_done,
        agent(
            "step-1.m1.t1",
            "read_file",
            &read_args,
            Proposed::Read {
                path: "src/lib.rs",
                confinement: Confinement::Inside("src/lib.rs".into()),
            },
        ),
        None,
        "done step-1.m1.t1",
    );
    let mut write_granted = Given::plain();
    write_granted
        .requested("step-1.m1.t1", "write_file", infra_args.clone(), "coder")
        .asked(
            "a-1",
            "step-1.m1.t1",
            "write",
            "sha256:d1",
            Some("write_file infra/main.tf (1 bytes):\nx"),
        )
        .vote("a-1", "approve", "sha256:d1")
        .resumed();
    t.check(
        "an approved write runs as asked, on the approved diff",
        &write_granted,
        agent("step-1.m1.t1", "write_file", &infra_args, infra()),
        Some("sha256:d1"),
        "run step-1.m1.t1 []",
    );
    t.check("an approved write on a moved worktree asks again", &write_granted, agent("step-1.m1.t1", "write_file", &infra_args, infra()), Some("sha256:d2"), "park step-1.m1.t1#2 write [tool.requested policy.decided] approve(infra-writes) paths=infra/main.tf");
    let mut write_interrupted = write_granted.clone_state();
    write_interrupted.interrupted(&["step-1.m1.t1"]).resumed();
    t.check(
        "an approved write a crash interrupted runs again without a second approval",
        &write_interrupted,
        agent("step-1.m1.t1", "write_file", &infra_args, infra()),
        Some("sha256:d1"),
        "run step-1.m1.t1#2 [tool.requested policy.decided] approve(infra-writes)",
    );
    let other_write = Proposed::Write {
        path: "infra/main.tf",
        confinement: Confinement::Inside("infra/main.tf".into()),
        preview: "write_file infra/main.tf (1 bytes):\ny".into(),
    };
    t.check("…but not another content for the same path", &write_interrupted, agent("step-1.m1.t1", "write_file", &infra_args, other_write), Some("sha256:d1"), "park step-1.m1.t1#2 write [tool.requested policy.decided] approve(infra-writes) paths=infra/main.tf");

    // Acceptance commands.
    let acceptance = |command: &'static str, args: &'static Value| Call {
        base: "acceptance.1.c1.a1",
        actor: Actor::Acceptance,
        tool: "run",
        args,
        proposed: Proposed::Command { command },
        what: "acceptance command",
        step: None,
        breakers: None,
    };
    static TEST: std::sync::LazyLock<Value> =
        std::sync::LazyLock::new(|| json!({"command": "cargo test"}));
    static RM: std::sync::LazyLock<Value> =
        std::sync::LazyLock::new(|| json!({"command": "rm -rf /tmp/x"}));
    static DEPLOY: std::sync::LazyLock<Value> =
        std::sync::LazyLock::new(|| json!({"command": "deploy prod"}));
    t.check(
        "an acceptance command runs like any command",
        &fresh,
        acceptance("cargo test", &TEST),
        None,
        "run acceptance.1.c1.a1 [tool.requested policy.decided] allow",
    );
    t.check(
        "a denied acceptance command fails the mission (no step)",
        &fresh,
        acceptance("rm -rf /tmp/x", &RM),
        None,
        "stop [tool.requested policy.decided mission.finished] deny(no-rm-root)",
    );
    t.check(
        "an acceptance command can need approval",
        &fresh,
        acceptance("deploy prod", &DEPLOY),
        Some("sha256:d1"),
        "park acceptance.1.c1.a1 command [tool.requested policy.decided] approve(deploys-need-ops)",
    );
    t.check(
        "acceptance commands count against the budget",
        &spent,
        acceptance("cargo test", &TEST),
        None,
        "stop [budget.exceeded] over:tool_calls",
    );
    let mut acceptance_done = Given::plain();
    acceptance_done
        .command("acceptance.1.c1.a1", "cargo test", "acceptance")
        .completed("acceptance.1.c1.a1", true, None);
    t.check(
        "a completed acceptance command is done",
        &acceptance_done,
        acceptance("cargo test", &TEST),
        None,
        "done acceptance.1.c1.a1",
    );

    // The publish gate.
    t.publish(
        "a docs-only change publishes without waiting",
        &fresh,
        &["docs/guide.md"],
        "sha256:p1",
        &[],
        "run publish [policy.decided] allow(docs-auto,infra-auto)",
    );
    t.publish(
        "a source change parks for the default approval",
        &fresh,
        &["src/lib.rs"],
        "sha256:p1",
        &[],
        "park publish publish [policy.decided] approve paths=src/lib.rs",
    );
    t.publish(
        "a vendored change is denied and fails the mission",
        &fresh,
        &["vendor/lib.c"],
        "sha256:p1",
        &[],
        "stop [policy.decided mission.finished] deny(vendor-never)",
    );
    t.publish(
        "a write rule judges what run steps wrote before publishing",
        &fresh,
        &["docs/a.md", "infra/main.tf"],
        "sha256:p1",
        &[],
        "park publish publish [policy.decided] approve(infra-writes) paths=infra/main.tf",
    );
    t.publish(
        "a write approved at its own gate is not asked again at publish",
        &fresh,
        &["docs/a.md", "infra/main.tf"],
        "sha256:p1",
        &["infra/main.tf"],
        "run publish [policy.decided] allow(infra-auto)",
    );
    t.publish(
        "…but a write approved for another path does not cover this one",
        &fresh,
        &["docs/a.md", "infra/main.tf"],
        "sha256:p1",
        &["infra/other.tf"],
        "park publish publish [policy.decided] approve(infra-writes) paths=infra/main.tf",
    );
    t.publish(
        "…unless the publish decision itself asks",
        &fresh,
        &["src/lib.rs", "infra/main.tf"],
        "sha256:p1",
        &["infra/main.tf"],
        "park publish publish [policy.decided] approve paths=src/lib.rs,infra/main.tf",
    );
    t.publish(
        "a denied write path stays denied whatever was approved",
        &fresh,
        &["docs/a.md", "secrets/key"],
        "sha256:p1",
        &["secrets/key"],
        "stop [policy.decided mission.finished] deny(no-secret-writes)",
    );
    let mut decided_here = Given::plain();
    decided_here.publish_decided("approve", "sha256:p1").asked(
        "a-1",
        "publish",
        "publish",
        "sha256:p1",
        None,
    );
    t.publish(
        "an approval already asked for this diff: the mission waits",
        &decided_here,
        &["src/lib.rs"],
        "sha256:p1",
        &[],
        "wait",
    );
    let mut granted_publish = decided_here.clone_state();
    granted_publish
        .vote("a-1", "approve", "sha256:p1")
        .resumed();
    t.publish(
        "granted for this diff: it publishes, the decision not made again",
        &granted_publish,
        &["src/lib.rs"],
        "sha256:p1",
        &[],
        "run publish []",
    );
    t.publish(
        "granted for an older diff: a new decision and a new approval",
        &granted_publish,
        &["src/lib.rs"],
        "sha256:p2",
        &[],
        "park publish publish [policy.decided] approve paths=src/lib.rs",
    );
    let mut allowed_before = Given::plain();
    allowed_before.publish_decided("allow", "sha256:p1");
    t.publish(
        "an allow recorded for this diff (a resume) is not decided again",
        &allowed_before,
        &["src/lib.rs"],
        "sha256:p1",
        &[],
        "run publish []",
    );
    let mut denied_before = Given::plain();
    denied_before.publish_decided("deny", "sha256:p1");
    t.publish(
        "a deny recorded for this diff fails the mission",
        &denied_before,
        &["src/lib.rs"],
        "sha256:p1",
        &[],
        "stop [mission.finished]",
    );
    let mut decided_no_ask = Given::plain();
    decided_no_ask.publish_decided("approve", "sha256:p1");
    t.publish(
        "an approve recorded without its request (a crash between) asks now",
        &decided_no_ask,
        &["src/lib.rs"],
        "sha256:p1",
        &[],
        "park publish publish [] paths=src/lib.rs",
    );

    // Model attempts.
    let priced = Given::mission(BudgetSpec {
        usd: Some(1.0),
        tokens: Some(10_000),
        model_calls: Some(2),
        ..BudgetSpec::default()
    });
    t.model(
        "an attempt that fits is made",
        &priced,
        5_000,
        Some(0.5),
        "go",
    );
    t.model(
        "an attempt whose worst case passes the tokens is not made",
        &priced,
        10_001,
        Some(0.5),
        "over:tokens",
    );
    t.model(
        "…nor one whose worst case passes the money",
        &priced,
        100,
        Some(1.5),
        "over:usd",
    );
    t.model(
        "an unpriced model cannot be bounded under a usd limit",
        &priced,
        100,
        None,
        "over:usd",
    );
    t.model(
        "an unpriced model is fine without a usd limit",
        &fresh,
        100,
        None,
        "go",
    );
    let mut calls_spent = Given::mission(BudgetSpec {
        model_calls: Some(1),
        ..BudgetSpec::default()
    });
    calls_spent.push(EventKind::ModelRequested(ModelRequested {
        call_id: "step-1.m1".into(),
        provider: "scripted".into(),
        model: "x".into(),
        role: "coder".into(),
        request: Digest::of(b"r"),
        wire: None,
        attempt: 1,
        reserved: Some(Reservation {
            tokens: 10,
            usd: None,
        }),
        omitted: Vec::new(),
    }));
    t.model(
        "every attempt is a model call",
        &calls_spent,
        10,
        None,
        "over:model_calls",
    );
    let mut crashed_call = calls_spent.clone_state();
    crashed_call.raised("model_calls", 5.0).interrupted(&[]);
    let tokens_left = Given::mission(BudgetSpec {
        tokens: Some(100),
        ..BudgetSpec::default()
    });
    t.model(
        "tokens exactly at the limit fit",
        &tokens_left,
        100,
        None,
        "go",
    );
    t.model("a raise counts", &crashed_call, 10, None, "go");
    t.model(
        "wall time used up: no attempt",
        &no_time,
        10,
        None,
        "over:wall_seconds",
    );

    t.finish();
}

#[test]
fn an_attempt_cut_off_by_a_crash_counts_its_reservation_as_spent() {
    let mut given = Given::mission(BudgetSpec {
        usd: Some(1.0),
        tokens: Some(1000),
        ..BudgetSpec::default()
    });
    given.push(EventKind::ModelRequested(ModelRequested {
        call_id: "step-1.m1".into(),
        provider: "openai".into(),
        model: "gpt".into(),
        role: "coder".into(),
        request: Digest::of(b"r"),
        wire: None,
        attempt: 1,
        reserved: Some(Reservation {
            tokens: 600,
            usd: Some(0.6),
        }),
        omitted: Vec::new(),
    }));
    assert_eq!(given.state.cost_usd, 0.0);
    given.interrupted(&[]);
    assert_eq!(given.state.tokens, 600);
    assert!((given.state.cost_usd - 0.6).abs() < 1e-9);
    let entry = &given.state.ledger.by_model["openai:gpt"];
    assert_eq!((entry.interrupted, entry.interrupted_tokens), (1, 600));
    // Charged once: a second interruption does not charge the same attempt again.
    given.resumed().interrupted(&[]);
    assert_eq!(given.state.tokens, 600);
    // And the next attempt must fit in what is left.
    assert!(govern_model_attempt(
        &given.state,
        "step-1.m1",
        &Reservation {
            tokens: 500,
            usd: Some(0.1)
        },
        given.at
    )
    .is_some());
    assert!(govern_model_attempt(
        &given.state,
        "step-1.m1",
        &Reservation {
            tokens: 300,
            usd: Some(0.3)
        },
        given.at
    )
    .is_none());
}

#[test]
fn writes_approved_at_their_gate_are_covered_while_their_content_stands() {
    let mut given = Given::plain();
    let args = json!({"path": "infra/main.tf", "content": "x"});
    given
        .requested("step-1.m1.t1", "write_file", args, "coder")
        .asked("a-1", "step-1.m1.t1", "write", "sha256:d1", Some("w"))
        .vote("a-1", "approve", "sha256:d1")
        .resumed()
        .completed("step-1.m1.t1", true, Some("tree-after"));
    let blob_approved = |tree: &str, path: &str| {
        (tree == "tree-after" && path == "infra/main.tf").then(|| "blob-x".to_string())
    };
    assert_eq!(
        covered_writes(&given.state, |_| Some("blob-x".into()), blob_approved),
        vec!["infra/main.tf"]
    );
    assert!(
        covered_writes(&given.state, |_| Some("blob-y".into()), blob_approved).is_empty(),
        "edited since"
    );
    assert!(
        covered_writes(&given.state, |_| None, blob_approved).is_empty(),
        "deleted since"
    );
    let mut pending = Given::plain();
    pending
        .requested("step-1.m1.t1", "write_file", json!({}), "coder")
        .asked("a-1", "step-1.m1.t1", "write", "sha256:d1", Some("w"));
    assert!(
        covered_writes(&pending.state, |_| Some("blob-x".into()), blob_approved).is_empty(),
        "not granted"
    );
}

impl Given {
    fn clone_state(&self) -> Given {
        Given {
            state: self.state.clone(),
            at: self.at,
        }
    }
}
