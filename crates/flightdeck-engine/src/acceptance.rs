//! Acceptance, run by the platform after the steps: the template's `[acceptance]` commands in
//! the sandbox (a command that fails and then passes on a retry is flaky, and both outputs are
//! kept), and the diff rules (`max_changed_files`, `paths`, `forbid_test_deletion`: deleted
//! tests and newly added skip markers). A failure gives the coder `fix_rounds` more rounds with
//! the report; then the mission fails with it. Nothing the agent said counts here.

use flightdeck_core::budget::check_tool_call;
use flightdeck_core::event::*;
use flightdeck_core::template::{AcceptanceSpec, AgentRole, Network};
use flightdeck_core::{EventKind, MissionState, MissionStatus};
use flightdeck_policy::{diff_lines, Action, DiffFileLines, DiffRules, Verdict};
use flightdeck_workspace::CommandSpec;

use crate::agent::{AgentEnd, AgentPlace, AgentRun};
use crate::gate::{changed_file, decided_event, denied_error, CurrentDiff};
use crate::{Engine, EngineError};

/// Fix rounds when the template sets none.
const DEFAULT_FIX_ROUNDS: u32 = 1;
/// Lines of a failed command's output the report shows.
const REPORT_TAIL_LINES: usize = 30;

/// Whether the template asks for any acceptance check.
pub(crate) fn has_checks(spec: &AcceptanceSpec) -> bool {
    !spec.commands.is_empty()
        || spec.max_changed_files.is_some()
        || !spec.paths.is_empty()
        || spec.forbid_test_deletion
}

/// How a platform command went.
enum Ran {
    Completed(String, ToolCompleted),
    /// The mission parked, blocked or ended (recorded).
    Stopped,
}

impl Engine {
    /// The acceptance checks, with fix rounds between failures. True when publishing may go
    /// on; false when the mission stopped (failed, parked, blocked; all recorded).
    pub(crate) async fn accept(
        &self,
        state: &mut MissionState,
        place: &AgentPlace<'_>,
    ) -> Result<bool, EngineError> {
        let spec = &place.template.acceptance;
        if !has_checks(spec) {
            return Ok(true);
        }
        // Without a model there is no coder to fix anything.
        let fix_rounds = if place.template.model.is_some() {
            spec.fix_rounds.unwrap_or(DEFAULT_FIX_ROUNDS)
        } else {
            0
        };
        for round in 1..=fix_rounds.saturating_add(1) {
            let recorded = state.acceptance.iter().find(|a| a.round == round).cloned();
            let checked = match recorded {
                Some(checked) => checked,
                None => match self.check(state, place, round).await? {
                    Some(checked) => checked,
                    None => return Ok(false),
                },
            };
            if checked.passed {
                return Ok(true);
            }
            let report = match &checked.report {
                Some(digest) => {
                    String::from_utf8_lossy(&self.config().artifacts.get(digest).await?)
                        .into_owned()
                }
                None => checked.violations.join("\n"),
            };
            if round > fix_rounds {
                let error = MissionError {
                    kind: "acceptance_failed".into(),
                    message: report,
                };
                self.fail_run(state, None, error).await?;
                return Ok(false);
            }
            let fix = AgentRun {
                key: format!("acceptance.{round}.fix"),
                step: None,
                role: AgentRole::Coder,
                model: None,
                task: format!(
                    "The platform's acceptance checks failed. Fix the cause (never by deleting, skipping or weakening tests), check your work, then call `finish`.\n\n{report}"
                ),
                label: format!("acceptance fix round {round}"),
            };
            if self.agent_run(state, place, &fix).await? == AgentEnd::Stopped {
                return Ok(false);
            }
        }
        Ok(false)
    }

    /// One acceptance check: every command (with retries), then the diff rules, recorded as
    /// `acceptance.checked`. `None` when the mission stopped on the way.
    async fn check(
        &self,
        state: &mut MissionState,
        place: &AgentPlace<'_>,
        round: u32,
    ) -> Result<Option<AcceptanceChecked>, EngineError> {
        let spec = &place.template.acceptance;
        let retries = spec.retries.unwrap_or(0);
        let before = place.worktree.snapshot()?;
        let mut results = Vec::new();
        let mut report = Vec::new();
        for (j, command) in spec.commands.iter().enumerate() {
            let mut result = AcceptanceResult {
                command: command.clone(),
                exit_code: None,
                attempts: 0,
                flaky: false,
                passed: false,
                calls: Vec::new(),
                outputs: Vec::new(),
            };
            let mut last_output = Vec::new();
            for attempt in 1..=retries.saturating_add(1) {
                let base = format!("acceptance.{round}.c{}.a{attempt}", j + 1);
                let (id, done) = match self.platform_command(state, place, &base, command).await? {
                    Ran::Completed(id, done) => (id, done),
                    Ran::Stopped => return Ok(None),
                };
                // The platform checks the change; it does not make one.
                if place.worktree.snapshot()? != before {
                    place.worktree.restore(Some(&before))?;
                }
                result.attempts = attempt;
                result.exit_code = done.exit_code;
                result.calls.push(id);
                result.outputs.push(done.output.clone());
                if done.ok {
                    result.passed = true;
                    result.flaky = attempt > 1;
                    break;
                }
                last_output = self.config().artifacts.get(&done.output).await?;
            }
            report.push(command_report(&result, &last_output));
            results.push(result);
        }
        let diff = CurrentDiff::read(place.worktree)?;
        let lines = diff_lines(&String::from_utf8_lossy(&diff.patch));
        let files: Vec<DiffFileLines> = diff
            .files
            .iter()
            .map(|f| {
                let (added_lines, removed_lines) = lines.get(&f.path).cloned().unwrap_or_default();
                DiffFileLines {
                    file: changed_file(f),
                    added_lines,
                    removed_lines,
                }
            })
            .collect();
        let rules = DiffRules {
            max_changed_files: spec.max_changed_files,
            paths: &spec.paths,
            forbid_test_deletion: spec.forbid_test_deletion,
        };
        let violations = place.gates.policy.check_diff(&rules, &files);
        let passed = results.iter().all(|r| r.passed) && violations.is_empty();
        let mut text = format!(
            "Acceptance check {round}: {}\n",
            if passed { "passed" } else { "FAILED" }
        );
        for line in &report {
            text.push_str(line);
        }
        if !violations.is_empty() {
            text.push_str("Violations of the diff rules:\n");
            for v in &violations {
                text.push_str(&format!("- {}\n", v.message));
            }
        }
        let report = self.put_artifact(text.as_bytes()).await?;
        let checked = AcceptanceChecked {
            passed,
            results,
            violations: violations.iter().map(|v| v.message.clone()).collect(),
            round,
            violation_details: violations
                .iter()
                .map(|v| AcceptanceViolation {
                    kind: v.kind.as_str().to_string(),
                    path: v.path.clone(),
                    message: v.message.clone(),
                })
                .collect(),
            report: Some(report),
            tree: Some(diff.tree),
        };
        self.append(state, vec![EventKind::AcceptanceChecked(checked.clone())])
            .await?;
        Ok(Some(checked))
    }

    /// One attempt of an acceptance command: judged by the policy like any command (and
    /// checked against the budget), run in the sandbox, recorded with actor `acceptance`. A
    /// call that completed before (a resumed mission) is not run again.
    async fn platform_command(
        &self,
        state: &mut MissionState,
        place: &AgentPlace<'_>,
        base: &str,
        command: &str,
    ) -> Result<Ran, EngineError> {
        if let Some((id, done)) = state
            .attempts_of(base)
            .find_map(|(id, c)| c.completed.clone().map(|done| (id.clone(), done)))
        {
            return Ok(Ran::Completed(id, done));
        }
        if let Some((id, approved_diff)) = state.approved_waiting(state.attempts_of(base)) {
            if CurrentDiff::read(place.worktree)?.hash() == approved_diff {
                return self.run_platform_command(state, place, &id, command).await;
            }
        }
        let id = state.next_attempt_id(base);
        if let Some(exceeded) = check_tool_call(state, &id, self.config().clock.now_ms()) {
            self.append(state, vec![EventKind::BudgetExceeded(exceeded)])
                .await?;
            return Ok(Ran::Stopped);
        }
        let requested = EventKind::ToolRequested(ToolRequested {
            call_id: id.clone(),
            tool: "run".into(),
            args: serde_json::json!({ "command": command }),
            actor: "acceptance".into(),
        });
        let decision = place.gates.policy.decide(&Action::Command { command });
        match decision.verdict {
            Verdict::Allow => {
                let decided = decided_event(&id, &decision, "command", None)?;
                self.append(state, vec![requested, EventKind::PolicyDecided(decided)])
                    .await?;
                self.run_platform_command(state, place, &id, command).await
            }
            Verdict::Deny => {
                let decided = decided_event(&id, &decision, "command", None)?;
                let error = denied_error(&format!("acceptance command `{command}`"), &decided);
                let finished = EventKind::MissionFinished(MissionFinished {
                    status: MissionStatus::Failed,
                    error: Some(error),
                    summary: None,
                });
                self.append(
                    state,
                    vec![requested, EventKind::PolicyDecided(decided), finished],
                )
                .await?;
                Ok(Ran::Stopped)
            }
            Verdict::Approve => {
                let diff = CurrentDiff::read(place.worktree)?;
                let decided = decided_event(&id, &decision, "command", Some(diff.hash()))?;
                let request = self
                    .approval_request(
                        state,
                        place.gates,
                        &place.template.title(),
                        "command",
                        &id,
                        Some(command),
                        &decision,
                        &diff,
                        Vec::new(),
                    )
                    .await?;
                self.append(
                    state,
                    vec![
                        requested,
                        EventKind::PolicyDecided(decided),
                        EventKind::ApprovalRequested(request),
                    ],
                )
                .await?;
                Ok(Ran::Stopped)
            }
        }
    }

    async fn run_platform_command(
        &self,
        state: &mut MissionState,
        place: &AgentPlace<'_>,
        id: &str,
        command: &str,
    ) -> Result<Ran, EngineError> {
        let spec = CommandSpec {
            command: command.to_string(),
            timeout: self.command_timeout(state, self.config().default_step_timeout),
            env: vec![("FLIGHTDECK_MISSION".into(), state.id.clone())],
            network: place.template.workspace.network == Network::On,
        };
        let Some(outcome) = self
            .exec_watching(state, place.workspace, id, &spec)
            .await?
        else {
            return Ok(Ran::Stopped); // cancelled while it ran
        };
        let output = self.put_artifact(&outcome.output).await?;
        let completed = ToolCompleted {
            call_id: id.to_string(),
            ok: outcome.success(),
            exit_code: outcome.exit_code,
            output,
            duration_ms: u64::try_from(outcome.duration.as_millis()).unwrap_or(u64::MAX),
            timed_out: outcome.timed_out,
            // The worktree the agent left is what counts: acceptance records no tree.
            tree: None,
        };
        self.append(state, vec![EventKind::ToolCompleted(completed.clone())])
            .await?;
        Ok(Ran::Completed(id.to_string(), completed))
    }
}

/// The report's lines for one command.
fn command_report(result: &AcceptanceResult, last_failed_output: &[u8]) -> String {
    let how = match (result.passed, result.flaky) {
        (true, true) => format!(
            "passed on attempt {} (flaky: it failed first)",
            result.attempts
        ),
        (true, false) => "passed".to_string(),
        (false, _) => match result.exit_code {
            Some(code) => format!("FAILED (exit {code}) after {} attempt(s)", result.attempts),
            None => format!(
                "FAILED (killed or timed out) after {} attempt(s)",
                result.attempts
            ),
        },
    };
    let mut text = format!("- `{}`: {how}\n", result.command);
    if !result.passed {
        let output = String::from_utf8_lossy(last_failed_output);
        let lines: Vec<&str> = output.lines().collect();
        let tail = &lines[lines.len().saturating_sub(REPORT_TAIL_LINES)..];
        for line in tail {
            text.push_str(&format!("    {line}\n"));
        }
    }
    text
}
