//! Acceptance, run by the platform after the steps: the template's `[acceptance]` commands in
//! the sandbox (a command that fails and then passes on a retry is flaky, and both outputs are
//! kept), and the diff rules (`max_changed_files`, `paths`, `forbid_test_deletion`: deleted
//! tests and newly added skip markers). A failure gives the coder `fix_rounds` more rounds with
//! the report; then the mission fails with it. Nothing the agent said counts here.

use flightdeck_core::event::*;
use flightdeck_core::template::{AcceptanceSpec, AgentRole, Network};
use flightdeck_core::EventKind;
use flightdeck_policy::{diff_lines, DiffFileLines, DiffRules};
use flightdeck_workspace::CommandSpec;

use crate::agent::{AgentEnd, AgentPlace, AgentRun};
use crate::driver::Driver;
use crate::gate::{changed_file, CurrentDiff};
use crate::place::Halt;
use crate::protocol::{Actor, Call, Next, Proposed};

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

impl Driver {
    /// The acceptance checks, with fix rounds between failures. True when publishing may go
    /// on; false when the mission stopped (failed, parked, blocked; all recorded).
    pub(crate) async fn accept(&mut self, place: &AgentPlace<'_>) -> Result<bool, Halt> {
        let spec = &place.place.template.acceptance;
        if !has_checks(spec) {
            return Ok(true);
        }
        // Without a model there is no coder to fix anything.
        let fix_rounds = if place.place.template.model.is_some() {
            spec.fix_rounds.unwrap_or(DEFAULT_FIX_ROUNDS)
        } else {
            0
        };
        for round in 1..=fix_rounds.saturating_add(1) {
            let recorded = self
                .log
                .state()
                .acceptance
                .iter()
                .find(|a| a.round == round)
                .cloned();
            let checked = match recorded {
                Some(checked) => checked,
                None => match self.check(place, round).await? {
                    Some(checked) => checked,
                    None => return Ok(false),
                },
            };
            if checked.passed {
                return Ok(true);
            }
            let report = match &checked.report {
                Some(digest) => {
                    String::from_utf8_lossy(&self.log.artifact(digest).await?).into_owned()
                }
                None => checked.violations.join("\n"),
            };
            if round > fix_rounds {
                let error = MissionError {
                    kind: "acceptance_failed".into(),
                    message: report,
                };
                self.fail_run(None, error).await?;
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
            if self.agent_run(place, &fix).await? == AgentEnd::Stopped {
                return Ok(false);
            }
        }
        Ok(false)
    }

    /// One acceptance check: every command (with retries), then the diff rules, recorded as
    /// `acceptance.checked`. `None` when the mission stopped on the way.
    async fn check(
        &mut self,
        place: &AgentPlace<'_>,
        round: u32,
    ) -> Result<Option<AcceptanceChecked>, Halt> {
        let spec = &place.place.template.acceptance;
        let worktree = &place.place.worktree;
        let retries = spec.retries.unwrap_or(0);
        let before = worktree.snapshot()?;
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
                let (id, done) = match self.platform_command(place, &base, command).await? {
                    Ran::Completed(id, done) => (id, done),
                    Ran::Stopped => return Ok(None),
                };
                // The platform checks the change; it does not make one. What a check left
                // that may not be recorded (a secret in a file) is thrown away all the same.
                let changed = match worktree.snapshot() {
                    Ok(tree) => tree != before,
                    Err(
                        flightdeck_workspace::GitError::SecretInWorktree { .. }
                        | flightdeck_workspace::GitError::ChangesTooLarge { .. },
                    ) => true,
                    Err(e) => return Err(e.into()),
                };
                if changed {
                    worktree.restore(Some(&before))?;
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
                last_output = self.log.artifact(&done.output).await?;
            }
            report.push(command_report(&result, &last_output));
            results.push(result);
        }
        let diff = CurrentDiff::read(worktree)?;
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
        let violations = place.place.gates.policy.check_diff(&rules, &files);
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
        let report = self.log.put_artifact(text.as_bytes()).await?;
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
        self.log
            .append(vec![EventKind::AcceptanceChecked(checked.clone())])
            .await?;
        Ok(Some(checked))
    }

    /// One attempt of an acceptance command: a governed call like any command (budget,
    /// policy), run in the sandbox, recorded with actor `acceptance`. A call that completed
    /// before (a resumed mission) is not run again.
    async fn platform_command(
        &mut self,
        place: &AgentPlace<'_>,
        base: &str,
        command: &str,
    ) -> Result<Ran, Halt> {
        let args = serde_json::json!({ "command": command });
        let what = format!("acceptance command `{command}`");
        let call = Call {
            base,
            actor: Actor::Acceptance,
            tool: "run",
            args: &args,
            proposed: Proposed::Command { command },
            what: &what,
            step: None,
            breakers: None,
        };
        match self.govern(place.place, &call).await? {
            Next::Done { call_id } => {
                let done = self
                    .log
                    .state()
                    .tool_calls
                    .get(&call_id)
                    .and_then(|c| c.completed.clone());
                Ok(match done {
                    Some(done) => Ran::Completed(call_id, done),
                    None => Ran::Stopped,
                })
            }
            Next::Run { call_id, events } => {
                if !events.is_empty() {
                    self.log.append(events).await?;
                }
                self.run_platform_command(place, &call_id, command).await
            }
            Next::Stop { events } | Next::Park { events, .. } | Next::Reject { events, .. } => {
                self.log.append(events).await?;
                Ok(Ran::Stopped)
            }
            Next::Wait | Next::NeedDiff => Ok(Ran::Stopped),
        }
    }

    async fn run_platform_command(
        &mut self,
        place: &AgentPlace<'_>,
        id: &str,
        command: &str,
    ) -> Result<Ran, Halt> {
        let spec = CommandSpec {
            command: command.to_string(),
            timeout: self.command_timeout(self.shared.cfg.default_step_timeout),
            env: vec![("FLIGHTDECK_MISSION".into(), self.log.id().to_string())],
            network: place.place.template.workspace.network == Network::On,
            // Acceptance checks what the agent wrote: its code runs.
            trusted: false,
            private_home: false,
        };
        let outcome = self.run_command(place.place, id, &spec).await?;
        let output = self.log.put_artifact(&outcome.output).await?;
        let completed = ToolCompleted {
            call_id: id.to_string(),
            ok: outcome.success(),
            exit_code: outcome.exit_code,
            output,
            duration_ms: crate::ports::millis(outcome.duration),
            timed_out: outcome.timed_out,
            // The worktree the agent left is what counts: acceptance records no tree.
            tree: None,
        };
        self.log
            .append(vec![EventKind::ToolCompleted(completed.clone())])
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
