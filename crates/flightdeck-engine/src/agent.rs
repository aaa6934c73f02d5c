//! `agent` steps: model call → tool calls → results → model call … until the agent calls
//! `finish` (or `review`), or a budget, breaker, policy denial or approval stops it.
//!
//! The conversation is never stored as such: it is rebuilt from the timeline (the pinned
//! template, the answers' neutral messages, the tools' recorded results) when a step starts
//! or resumes, and grown with the same functions as the loop goes, so a resumed agent sends
//! exactly the requests it would have sent without the interruption. Each tool call is a
//! governed call ([`crate::protocol`]); each model call is recorded through the driver
//! ([`crate::model_call`]).

use std::time::{Duration, Instant};

use flightdeck_core::budget::{after_action, BreakerLimits};
use flightdeck_core::event::*;
use flightdeck_core::ids::{agent_model_call_id, agent_tool_call_id, step_call_id};
use flightdeck_core::template::{AgentRole, Network};
use flightdeck_core::EventKind;
use flightdeck_models::{ChatRequest, ChatResponse, Message, ToolCall};
use flightdeck_workspace::CommandSpec;

use crate::driver::Driver;
use crate::gate::CurrentDiff;
use crate::model_call::{self, ModelOutcome};
use crate::models::StepModels;
use crate::place::{Halt, Place};
use crate::protocol::{self, Actor, Call, Confinement, Next, Proposed};
use crate::request_record::RecordedRequest;
use crate::tools::{self, ToolInvocation};
use crate::EngineError;

/// The longest one `run` of an agent may take.
const AGENT_COMMAND_TIMEOUT: Duration = Duration::from_secs(600);
/// Answers in a row without a tool call before the agent is stopped as stuck.
const MAX_ANSWERS_WITHOUT_TOOLS: u32 = 3;
/// The most of the diff a reviewer is shown in its task.
const REVIEW_DIFF_SHOWN: usize = 24 * 1024;
/// What the model is told when it answers without calling a tool.
const NUDGE: &str = "You did not call a tool. Continue with the tools, or call `finish` (the reviewer: `review`) when you are done.";

/// An `agent` step as the template gives it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AgentStep<'a> {
    pub(crate) index: usize,
    pub(crate) total: usize,
    pub(crate) role: AgentRole,
    pub(crate) task: Option<&'a str>,
    pub(crate) model: Option<&'a str>,
    /// Reviewers: how many reviews (with coder rounds between them) at most.
    pub(crate) max_rounds: Option<u32>,
}

/// One agent's run: a step's agent, or a round that follows a review or a failed acceptance
/// check. Its calls are named after `key`.
#[derive(Debug, Clone)]
pub(crate) struct AgentRun<'a> {
    /// The prefix of its call ids: `step-<i>`, `step-<i>.fix<r>`, `step-<i>.review<r>`,
    /// `acceptance.<r>.fix`.
    pub(crate) key: String,
    /// The template step it belongs to (none for acceptance rounds).
    pub(crate) step: Option<usize>,
    pub(crate) role: AgentRole,
    pub(crate) model: Option<&'a str>,
    /// What the agent is asked to do, besides the goal, the plan and the acceptance criteria.
    pub(crate) task: String,
    /// For people: `step 2/3 (coder agent)`.
    pub(crate) label: String,
}

/// How an agent's run ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AgentEnd {
    /// `finish`, with its summary.
    Finished(String),
    /// `review`, with its verdict.
    Reviewed {
        approve: bool,
        comments: Vec<String>,
    },
    /// The mission parked, blocked or ended (recorded).
    Stopped,
}

/// Where the step's work happens.
pub(crate) struct AgentPlace<'a> {
    pub(crate) place: &'a Place,
}

/// The system prompt of each role; its bytes are recorded when a step starts.
pub(crate) fn system_prompt(role: AgentRole) -> &'static str {
    match role {
        AgentRole::Planner => include_str!("../prompts/planner.md"),
        AgentRole::Coder => include_str!("../prompts/coder.md"),
        AgentRole::Reviewer => include_str!("../prompts/reviewer.md"),
    }
}

/// An answer whose tool calls have not all completed.
#[derive(Debug, Clone)]
struct Pending {
    model_call: String,
    response: ChatResponse,
    /// Index of the first call not completed yet.
    next: usize,
}

struct Conversation {
    messages: Vec<Message>,
    /// For each message, the tool call whose result it is (what compaction may drop).
    origins: Vec<Option<String>>,
    /// Model calls of this step answered so far.
    answered: usize,
    pending: Option<Pending>,
    answers_without_tools: u32,
    /// The request record the next call continues: the one of the attempt that answered the
    /// previous call, while the conversation has only grown since (none after a compaction).
    recorded: Option<RecordedRequest>,
    /// The messages' part of the request's token estimate, kept as messages come so a call
    /// does not estimate the whole conversation again (compaction recounts it).
    message_tokens: u64,
}

/// How one tool call went.
enum ToolStep {
    /// Completed (this call id, its result for the model, whether it failed).
    Result(String, String, bool),
    /// The call ended the run (`finish`, `review`; recorded).
    Ended(AgentEnd),
    /// The mission parked, blocked or ended (recorded).
    Stopped,
}

/// Reviews, and the coder rounds between them, a reviewer step may take when none is set.
const DEFAULT_MAX_ROUNDS: u32 = 2;

impl Driver {
    pub(crate) async fn agent_step(
        &mut self,
        place: &AgentPlace<'_>,
        step: &AgentStep<'_>,
    ) -> Result<(), Halt> {
        let template = &place.place.template;
        let models = StepModels::of(template, step.model, &template.file)?;
        if !self.log.state().steps.contains_key(&step.index) {
            let digest = self
                .log
                .put_artifact(system_prompt(step.role).as_bytes())
                .await?;
            let started = StepStarted {
                index: step.index,
                kind: StepKind::Agent,
                description: describe(step),
                role: Some(step.role.as_str().to_string()),
                system_prompt: Some(digest),
                models: models.refs.iter().map(ToString::to_string).collect(),
            };
            self.log
                .append(vec![EventKind::StepStarted(started)])
                .await?;
        }
        let label = format!(
            "step {}/{} ({})",
            step.index + 1,
            step.total,
            describe(step)
        );
        let run = AgentRun {
            key: step_call_id(step.index),
            step: Some(step.index),
            role: step.role,
            model: step.model,
            task: step
                .task
                .map(str::to_string)
                .unwrap_or_else(|| default_task(step.role).to_string()),
            label,
        };
        if step.role == AgentRole::Reviewer {
            return self.review_step(place, step, run).await;
        }
        match self.agent_run(place, &run).await? {
            AgentEnd::Stopped => Ok(()),
            AgentEnd::Finished(_) | AgentEnd::Reviewed { .. } => {
                self.finish_step(step.index, StepStatus::Succeeded).await
            }
        }
    }

    async fn finish_step(&mut self, index: usize, status: StepStatus) -> Result<(), Halt> {
        let finished = EventKind::StepFinished(StepFinished {
            index,
            kind: StepKind::Agent,
            status,
        });
        self.log.append(vec![finished]).await?;
        Ok(())
    }

    /// A reviewer step: review; on `request_changes`, a coder round with the comments, then
    /// review again, up to `max_rounds` reviews. The change goes on only once approved.
    async fn review_step(
        &mut self,
        place: &AgentPlace<'_>,
        step: &AgentStep<'_>,
        first: AgentRun<'_>,
    ) -> Result<(), Halt> {
        let max_rounds = step.max_rounds.unwrap_or(DEFAULT_MAX_ROUNDS).max(1);
        let base = first.key.clone();
        for round in 1..=max_rounds {
            let review = AgentRun {
                key: if round == 1 {
                    base.clone()
                } else {
                    format!("{base}.review{round}")
                },
                label: format!("{} round {round}", first.label),
                ..first.clone()
            };
            let comments = match self.agent_run(place, &review).await? {
                AgentEnd::Stopped => return Ok(()),
                AgentEnd::Reviewed { approve: true, .. } | AgentEnd::Finished(_) => {
                    return self.finish_step(step.index, StepStatus::Succeeded).await;
                }
                AgentEnd::Reviewed {
                    approve: false,
                    comments,
                } => comments,
            };
            if round == max_rounds {
                let error = MissionError {
                    kind: "changes_requested".into(),
                    message: format!(
                        "{}: the reviewer still requested changes after {max_rounds} review round(s): {}",
                        first.label,
                        comments.join("; ")
                    ),
                };
                return self.fail_run(Some(step.index), error).await;
            }
            let fix = AgentRun {
                key: format!("{base}.fix{round}"),
                step: Some(step.index),
                role: AgentRole::Coder,
                // The template's model codes; without one, the reviewer step's own.
                model: if place.place.template.model.is_some() {
                    None
                } else {
                    step.model
                },
                task: review_fix_task(&comments),
                label: format!("{} (coder, answering review round {round})", first.label),
            };
            if self.agent_run(place, &fix).await? == AgentEnd::Stopped {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Runs one agent until it ends (or the mission stops). A run that already ended in the
    /// timeline ends again at once, with the same result.
    pub(crate) async fn agent_run(
        &mut self,
        place: &AgentPlace<'_>,
        run: &AgentRun<'_>,
    ) -> Result<AgentEnd, Halt> {
        if let Some(end) = self.ended_run(&run.key).await? {
            return Ok(end);
        }
        let template = &place.place.template;
        let models = StepModels::of(template, run.model, &template.file)?;
        let role = run.role;
        let ledger = self.log.state().ledger.clone();
        let callables =
            model_call::callables(&self.shared, &place.place.created, &models, |model| {
                ledger.answered_by(model)
            })
            .await?;
        let router = model_call::router(&self.shared, &models, &callables);
        let limits = BreakerLimits::from_spec(&template.breakers);
        let mut convo = self.rebuild_conversation(place, run).await?;
        let mut tools = tools::definitions(role);
        let tools_tokens = flightdeck_models::estimate_tools_tokens(&tools);
        loop {
            self.take_waiting().await?;
            let status = self.log.state().status;
            if status.is_terminal() || status.is_parked() {
                return Ok(AgentEnd::Stopped);
            }
            if let Some(pending) = convo.pending.take() {
                for (k, call) in pending
                    .response
                    .tool_calls
                    .iter()
                    .enumerate()
                    .skip(pending.next)
                {
                    let outcome = self
                        .agent_tool_call(place, run, &limits, &pending.model_call, k + 1, call)
                        .await?;
                    match outcome {
                        ToolStep::Result(id, text, failed) => {
                            convo.push_result(call, id, text, failed)
                        }
                        ToolStep::Ended(end) => return Ok(end),
                        ToolStep::Stopped => return Ok(AgentEnd::Stopped),
                    }
                }
                continue;
            }
            let call_id = agent_model_call_id(&run.key, convo.answered + 1);
            // The conversation is lent to the request, not copied, and taken back after.
            let mut request = ChatRequest {
                model: String::new(), // set by the router for each target
                messages: std::mem::take(&mut convo.messages),
                tools: std::mem::take(&mut tools),
                temperature: models.temperature,
                max_output_tokens: Some(models.max_output_tokens),
                input_tokens_estimate: Some(convo.input_tokens(tools_tokens)),
            };
            if !self.log.state().compactions.contains_key(&call_id) {
                if let Some(compacted) =
                    plan_compaction(&request, &convo.origins, &call_id, models.context_tokens)
                {
                    drop_results(&mut request.messages, &convo.origins, &compacted.dropped);
                    convo.recorded = None;
                    convo.message_tokens = tally(&request.messages);
                    request.input_tokens_estimate = Some(convo.input_tokens(tools_tokens));
                    self.log
                        .append(vec![EventKind::ContextCompacted(compacted)])
                        .await?;
                }
            }
            // The kept estimate is the whole one (checked in debug builds, i.e. every test).
            debug_assert_eq!(
                request.input_tokens_estimate,
                Some(flightdeck_models::estimate_input_tokens(&request))
            );
            let outcome = self
                .call_model(
                    &router,
                    &callables,
                    &call_id,
                    role.as_str(),
                    limits,
                    &mut request,
                    convo.recorded.as_ref(),
                )
                .await;
            convo.messages = std::mem::take(&mut request.messages);
            tools = std::mem::take(&mut request.tools);
            match outcome?? {
                ModelOutcome::Answered(response, recorded) => {
                    convo.recorded = Some(recorded);
                    convo.answered += 1;
                    if push_answer(&mut convo, call_id, response) >= MAX_ANSWERS_WITHOUT_TOOLS {
                        let tripped = BreakerTripped {
                            kind: "no_progress".into(),
                            detail: format!(
                                "the model answered {} times in a row without calling a tool",
                                convo.answers_without_tools
                            ),
                        };
                        self.log
                            .append(vec![EventKind::BreakerTripped(tripped)])
                            .await?;
                        return Ok(AgentEnd::Stopped);
                    }
                }
                ModelOutcome::Stopped => return Ok(AgentEnd::Stopped),
                ModelOutcome::Failed(error) => {
                    let error = MissionError {
                        kind: "model_failed".into(),
                        message: format!("{}: {error}", run.label),
                    };
                    self.fail_run(run.step, error).await?;
                    return Ok(AgentEnd::Stopped);
                }
            }
        }
    }

    /// Fails the mission (and the step the run belongs to).
    pub(crate) async fn fail_run(
        &mut self,
        step: Option<usize>,
        error: MissionError,
    ) -> Result<(), Halt> {
        self.log.append(failure_events(step, error)).await?;
        Ok(())
    }

    /// How run `key` ended, if the timeline says it did: its completed `finish` or `review`.
    async fn ended_run(&self, key: &str) -> Result<Option<AgentEnd>, EngineError> {
        let prefix = format!("{key}.m");
        let state = self.log.state();
        let ending = state
            .tool_calls
            .range(prefix.clone()..)
            .take_while(|(id, _)| id.starts_with(&prefix))
            .find_map(|(_, call)| {
                let done = call.completed.as_ref().filter(|c| c.ok)?;
                let tool = call.requested.tool.as_str();
                matches!(tool, "finish" | "review").then(|| {
                    (
                        tool.to_string(),
                        done.output.clone(),
                        call.requested.args.clone(),
                    )
                })
            });
        let Some((tool, output, args)) = ending else {
            return Ok(None);
        };
        if tool == "review" {
            let invocation = ToolInvocation::parse(AgentRole::Reviewer, "review", &args);
            if let Ok(ToolInvocation::Review { approve, comments }) = invocation {
                return Ok(Some(AgentEnd::Reviewed { approve, comments }));
            }
            return Err(EngineError::Encode {
                what: "review verdict",
                message: format!("the recorded review of {key} does not parse"),
            });
        }
        let bytes = self.log.artifact(&output).await?;
        Ok(Some(AgentEnd::Finished(
            String::from_utf8_lossy(&bytes).into_owned(),
        )))
    }

    /// The conversation as the timeline left it: the system prompt, the task, and every
    /// answer of this step with the results of its completed tool calls.
    async fn rebuild_conversation(
        &self,
        place: &AgentPlace<'_>,
        run: &AgentRun<'_>,
    ) -> Result<Conversation, EngineError> {
        let task = self.task_message(place, run).await?;
        let messages = vec![
            Message::system(system_prompt(run.role)),
            Message::user(task),
        ];
        let mut convo = Conversation {
            message_tokens: tally(&messages),
            messages,
            origins: vec![None, None],
            answered: 0,
            pending: None,
            answers_without_tools: 0,
            recorded: None,
        };
        let state = self.log.state();
        loop {
            let model_call = agent_model_call_id(&run.key, convo.answered + 1);
            // Compactions happened right before the call they name: replay them there.
            if let Some(compacted) = state.compactions.get(&model_call) {
                drop_results(&mut convo.messages, &convo.origins, &compacted.dropped);
                convo.recorded = None;
                convo.message_tokens = tally(&convo.messages);
            }
            let Some(call) = state.model_call_log.get(&model_call) else {
                return Ok(convo);
            };
            let Some(responded) = call.responded.clone() else {
                return Ok(convo);
            };
            // The record the answering attempt sent, as the live run kept it.
            convo.recorded = Some(RecordedRequest {
                digest: call
                    .answering_attempt()
                    .map(|a| a.request.clone())
                    .ok_or_else(|| EngineError::Encode {
                        what: "agent conversation",
                        message: format!("{model_call} was answered without a recorded request"),
                    })?,
                messages: convo.messages.len(),
            });
            let digest = responded.message.ok_or_else(|| EngineError::Encode {
                what: "agent conversation",
                message: format!("{model_call} has no recorded neutral message"),
            })?;
            let bytes = self.log.artifact(&digest).await?;
            let response: ChatResponse =
                serde_json::from_slice(&bytes).map_err(|e| EngineError::Encode {
                    what: "agent conversation",
                    message: format!("{model_call}'s message: {e}"),
                })?;
            convo.answered += 1;
            push_answer(&mut convo, model_call.clone(), response);
            if let Some(mut pending) = convo.pending.take() {
                for (k, call) in pending.response.tool_calls.iter().enumerate() {
                    let base = agent_tool_call_id(&model_call, k + 1, 1);
                    let completed = state.attempts_of(&base).find_map(|(_, c)| {
                        c.completed
                            .clone()
                            .map(|done| (c.requested.tool.clone(), done))
                    });
                    match completed {
                        Some((tool, completed)) => {
                            let output = self.log.artifact(&completed.output).await?;
                            let text = tools::result_text(&tool, &completed, &output);
                            convo.push_result(call, completed.call_id.clone(), text, !completed.ok);
                            pending.next = k + 1;
                        }
                        None => break,
                    }
                }
                if pending.next < pending.response.tool_calls.len() {
                    convo.pending = Some(pending);
                    return Ok(convo);
                }
            }
        }
    }

    /// The first user message: the goal, the task, the plan (for the coder), and what the
    /// platform will check.
    async fn task_message(
        &self,
        place: &AgentPlace<'_>,
        run: &AgentRun<'_>,
    ) -> Result<String, EngineError> {
        let template = &place.place.template;
        let mut text = String::new();
        if let Some(goal) = template.goal.as_deref().filter(|g| !g.trim().is_empty()) {
            text.push_str(&format!("Goal: {}\n", goal.trim()));
        }
        text.push_str(&format!("Your task: {}\n", run.task.trim()));
        if run.role != AgentRole::Planner {
            if let Some(plan) = self.plan_of().await? {
                text.push_str(&format!("\nThe plan:\n{}\n", plan.trim()));
            }
        }
        let acceptance = &template.acceptance;
        if !acceptance.commands.is_empty() {
            let commands: Vec<String> = acceptance
                .commands
                .iter()
                .map(|c| format!("`{c}`"))
                .collect();
            text.push_str(&format!(
                "\nWhen the steps are done, the platform itself runs: {}.\n",
                commands.join(", ")
            ));
        }
        if !acceptance.paths.is_empty() {
            text.push_str(&format!(
                "Only these paths may change: {}.\n",
                acceptance.paths.join(", ")
            ));
        }
        if acceptance.forbid_test_deletion {
            text.push_str("Tests may not be deleted or skipped.\n");
        }
        if run.role == AgentRole::Reviewer {
            // The change as it stands: the worktree is what the timeline recorded last, so a
            // resumed reviewer is shown the same diff.
            let diff = CurrentDiff::read(&place.place.worktree)?;
            let patch = String::from_utf8_lossy(&diff.patch);
            let files: Vec<String> = diff
                .files
                .iter()
                .map(|f| format!("{} {}", f.status, f.path))
                .collect();
            text.push_str(&format!(
                "\nThe change ({} file(s)):\n{}\n\n```diff\n{}\n```\n",
                files.len(),
                files.join("\n"),
                tools::cut_middle(&patch, REVIEW_DIFF_SHOWN, |n, _| format!(
                    "[… {n} bytes of the diff left out; read the files for the rest …]"
                ))
            ));
        }
        Ok(text)
    }

    /// The newest plan: the summary of the last `finish` of a planner.
    pub(crate) async fn plan_of(&self) -> Result<Option<String>, EngineError> {
        let Some(plan) = self.log.state().plan.clone() else {
            return Ok(None);
        };
        let bytes = self.log.artifact(&plan).await?;
        Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// Tool call `k` of answer `model_call`, governed (budget, breakers, arguments, policy),
    /// then made.
    #[allow(clippy::too_many_arguments)]
    async fn agent_tool_call(
        &mut self,
        place: &AgentPlace<'_>,
        run: &AgentRun<'_>,
        limits: &BreakerLimits,
        model_call: &str,
        k: usize,
        call: &ToolCall,
    ) -> Result<ToolStep, Halt> {
        self.take_waiting().await?;
        let role = run.role;
        let base = agent_tool_call_id(model_call, k, 1);
        let parsed = ToolInvocation::parse(role, &call.name, &call.arguments);
        let what = format!(
            "{}: the agent's `{}` call {}",
            run.label, call.name, call.arguments
        );
        let fs = &place.place.fs;
        let confine =
            |path: &str, access: flightdeck_workspace::Access| match fs.check(path, access) {
                Err(e) if e.is_confinement() => Confinement::Outside(e.to_string()),
                Ok(normalized) => Confinement::Inside(normalized),
                // Other problems (a missing file, say) are the tool's to report when it runs.
                Err(_) => Confinement::Unchecked,
            };
        let proposed = match &parsed {
            Err(message) => Proposed::Invalid { message },
            Ok(ToolInvocation::Run { command }) => Proposed::Command { command },
            Ok(ToolInvocation::WriteFile { path, content }) => Proposed::Write {
                path,
                confinement: confine(path, flightdeck_workspace::Access::Write),
                preview: format!("write_file {path} ({} bytes):\n{content}", content.len()),
            },
            Ok(ToolInvocation::EditFile { path, old, new }) => Proposed::Write {
                path,
                confinement: confine(path, flightdeck_workspace::Access::Write),
                preview: format!("edit_file {path}: replace\n{old}\nwith\n{new}"),
            },
            Ok(
                ToolInvocation::ReadFile { path }
                | ToolInvocation::ListFiles { path }
                | ToolInvocation::Search { path, .. },
            ) => Proposed::Read {
                path,
                confinement: confine(path, flightdeck_workspace::Access::Read),
            },
            // The mission's own record: nothing outside it can be named.
            Ok(ToolInvocation::ReadOutput { .. }) => Proposed::Read {
                path: "",
                confinement: Confinement::Unchecked,
            },
            Ok(ToolInvocation::Finish { .. } | ToolInvocation::Review { .. }) => Proposed::End,
        };
        let governed = Call {
            base: &base,
            actor: Actor::Agent(role.as_str()),
            tool: &call.name,
            args: &call.arguments,
            proposed,
            what: &what,
            step: run.step.map(|i| (i, StepKind::Agent)),
            breakers: Some(limits),
        };
        let next = self.govern(place.place, &governed).await?;
        match next {
            Next::Done { call_id } => {
                // Completed before a crash, while the conversation did not record it yet:
                // its result goes to the model as it was recorded.
                let state = self.log.state();
                let Some(done) = state
                    .tool_calls
                    .get(&call_id)
                    .and_then(|c| c.completed.clone())
                else {
                    return Ok(ToolStep::Stopped);
                };
                let output = self.log.artifact(&done.output).await?;
                let text = tools::result_text(&call.name, &done, &output);
                Ok(ToolStep::Result(call_id, text, !done.ok))
            }
            Next::Reject {
                call_id,
                mut events,
                message,
            } => {
                // Nothing runs: the model is told what was wrong with its call.
                let output = self.log.put_artifact(message.as_bytes()).await?;
                let completed = ToolCompleted {
                    call_id: call_id.clone(),
                    ok: false,
                    exit_code: None,
                    output,
                    duration_ms: 0,
                    timed_out: false,
                    tree: None,
                };
                let text = tools::result_text(&call.name, &completed, message.as_bytes());
                events.push(EventKind::ToolCompleted(completed));
                self.log.append(events).await?;
                let stopped = self.trip_after(limits).await?;
                Ok(if stopped {
                    ToolStep::Stopped
                } else {
                    ToolStep::Result(call_id, text, true)
                })
            }
            Next::Stop { events } | Next::Park { events, .. } => {
                self.log.append(events).await?;
                Ok(ToolStep::Stopped)
            }
            Next::Wait | Next::NeedDiff => Ok(ToolStep::Stopped),
            Next::Run { call_id, events } => {
                let Ok(invocation) = parsed else {
                    return Ok(ToolStep::Stopped);
                };
                let only_records_the_call = events.iter().all(|e| {
                    matches!(e, EventKind::ToolRequested(_) | EventKind::PolicyDecided(_))
                });
                if !invocation.may_write() && only_records_the_call {
                    // A read changes nothing: its request is staged like its result, both
                    // stored with the next append (the next model call's request). Lost in
                    // a crash, the read never happened; the model asks again.
                    self.log.stage(events).await?;
                } else if !events.is_empty() {
                    self.log.append(events).await?;
                }
                self.execute_tool(place, run, limits, &call_id, &invocation)
                    .await
            }
        }
    }

    /// Runs an allowed tool call and records its result (with the breakers' verdict).
    async fn execute_tool(
        &mut self,
        place: &AgentPlace<'_>,
        run: &AgentRun<'_>,
        limits: &BreakerLimits,
        id: &str,
        invocation: &ToolInvocation,
    ) -> Result<ToolStep, Halt> {
        let place_ = place.place;
        let started = Instant::now();
        let tool = self
            .log
            .state()
            .tool_calls
            .get(id)
            .map(|c| c.requested.tool.clone())
            .unwrap_or_default();
        let files = self.shared.cfg.ports.files.clone();
        let (mut ok, exit_code, mut output, timed_out, duration_ms) = match invocation {
            ToolInvocation::Run { command } => {
                let spec = CommandSpec {
                    command: command.clone(),
                    timeout: self.command_timeout(
                        self.shared
                            .cfg
                            .default_step_timeout
                            .min(AGENT_COMMAND_TIMEOUT),
                    ),
                    env: vec![("FLIGHTDECK_MISSION".into(), self.log.id().to_string())],
                    network: place_.template.workspace.network == Network::On,
                    trusted: false,
                    private_home: false,
                };
                let outcome = self.run_command(place_, id, &spec).await?;
                (
                    outcome.success(),
                    outcome.exit_code,
                    outcome.output,
                    outcome.timed_out,
                    crate::ports::millis(outcome.duration),
                )
            }
            ToolInvocation::ReadOutput { call_id, offset } => {
                let done = self
                    .log
                    .state()
                    .tool_calls
                    .get(call_id)
                    .and_then(|c| c.completed.clone());
                let (ok, text) = match done {
                    Some(done) => {
                        let bytes = self.log.artifact(&done.output).await?;
                        (true, tools::output_page(call_id, &bytes, *offset))
                    }
                    None => (
                        false,
                        format!("no completed tool call `{call_id}` in this mission"),
                    ),
                };
                let duration = files.duration_ms(id, started.elapsed());
                (ok, None, text.into_bytes(), false, duration)
            }
            other => {
                let done = files.run(id, &place_.fs, &place_.worktree, other)?;
                (
                    done.ok,
                    None,
                    done.text.into_bytes(),
                    false,
                    done.duration_ms,
                )
            }
        };
        // A secret a command printed (a key found on disk, say) is never shown to the model.
        if let std::borrow::Cow::Owned(redacted) = self.shared.cfg.secrets.redact(&output) {
            output = redacted;
        }
        let tree = if invocation.may_write() {
            match place_.worktree.snapshot() {
                Ok(tree) => Some(tree),
                Err(e) => {
                    let error = match e {
                        flightdeck_workspace::GitError::ChangesTooLarge { .. } => MissionError {
                            kind: "workspace_too_large".into(),
                            message: format!(
                                "{}: the agent's `{tool}` call changed too much: {e}",
                                run.label
                            ),
                        },
                        flightdeck_workspace::GitError::SecretInWorktree { .. } => MissionError {
                            kind: "secret_in_worktree".into(),
                            message: format!(
                                "{}: the agent's `{tool}` call left a secret in the worktree: {e}",
                                run.label
                            ),
                        },
                        _ => MissionError {
                            kind: "workspace_unrecordable".into(),
                            message: format!(
                                "{}: the agent's `{tool}` call left a worktree git cannot record: {e}",
                                run.label
                            ),
                        },
                    };
                    ok = false;
                    output.extend_from_slice(format!("\n{e}").as_bytes());
                    let digest = self.log.put_artifact(&output).await?;
                    let completed = protocol::completed(
                        id,
                        protocol::Outcome {
                            ok,
                            exit_code,
                            output: digest,
                            duration_ms,
                            timed_out,
                            tree: None,
                        },
                    );
                    self.log.append(vec![completed]).await?;
                    self.fail_run(run.step, error).await?;
                    return Ok(ToolStep::Stopped);
                }
            }
        } else {
            None
        };
        let digest = self.log.put_artifact(&output).await?;
        let completed = ToolCompleted {
            call_id: id.to_string(),
            ok,
            exit_code,
            output: digest,
            duration_ms,
            timed_out,
            tree,
        };
        let text = tools::result_text(&tool, &completed, &output);
        let events = vec![EventKind::ToolCompleted(completed)];
        let end = match invocation {
            ToolInvocation::Finish { summary } => Some(AgentEnd::Finished(summary.clone())),
            ToolInvocation::Review { approve, comments } => Some(AgentEnd::Reviewed {
                approve: *approve,
                comments: comments.clone(),
            }),
            _ => None,
        };
        if let Some(end) = end {
            // The caller records what the end means for the step (succeeded, another round).
            self.log.append(events).await?;
            return Ok(ToolStep::Ended(end));
        }
        if invocation.may_write() {
            self.log.append(events).await?;
        } else {
            // A read changes nothing, so its result is staged: stored with the next append
            // (the next call's request), one commit fewer per step. Lost in a crash, the read
            // counts as interrupted and runs again, which gives the same result.
            self.log.stage(events).await?;
        }
        Ok(if self.trip_after(limits).await? {
            ToolStep::Stopped
        } else {
            ToolStep::Result(id.to_string(), text, !ok)
        })
    }

    /// Records `breaker.tripped` when the state after a completed call trips a breaker.
    async fn trip_after(&mut self, limits: &BreakerLimits) -> Result<bool, EngineError> {
        match after_action(self.log.state(), limits) {
            Some(tripped) => {
                self.log
                    .append(vec![EventKind::BreakerTripped(tripped)])
                    .await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

impl Conversation {
    fn push(&mut self, message: Message, origin: Option<String>) {
        self.message_tokens += flightdeck_models::estimate_message_tokens(&message);
        self.messages.push(message);
        self.origins.push(origin);
    }

    /// The result of tool call `id`, answering the model's `call` (marked as an error when
    /// the call failed, for the providers that say so).
    fn push_result(&mut self, call: &ToolCall, id: String, text: String, failed: bool) {
        let message = if failed {
            Message::tool_error(call.id.clone(), text)
        } else {
            Message::tool_result(call.id.clone(), text)
        };
        self.push(message, Some(id));
    }

    /// `estimate_input_tokens` of a request of this conversation, from the kept parts.
    fn input_tokens(&self, tools_tokens: u64) -> u64 {
        flightdeck_models::PER_REQUEST_TOKENS + self.message_tokens + tools_tokens
    }
}

/// The messages' part of the token estimate.
fn tally(messages: &[Message]) -> u64 {
    messages
        .iter()
        .map(flightdeck_models::estimate_message_tokens)
        .sum()
}

/// Replaces the results of `dropped` calls by a note saying how to read them again
/// (`origins[i]` is the call whose result `messages[i]` is).
fn drop_results(messages: &mut [Message], origins: &[Option<String>], dropped: &[String]) {
    for (message, origin) in messages.iter_mut().zip(origins) {
        if let (Message::Tool { content, .. }, Some(id)) = (message, origin) {
            if dropped.contains(id) {
                *content = dropped_note(id);
            }
        }
    }
}

/// What a dropped result becomes: `DROPPED_HEAD`, the call's id, `DROPPED_TAIL`.
fn dropped_note(id: &str) -> String {
    format!("{DROPPED_HEAD}{id}{DROPPED_TAIL}")
}

const DROPPED_HEAD: &str = "[output dropped to save context; read_output {\"call_id\": \"";
const DROPPED_TAIL: &str = "\", \"offset\": 0} shows it again]";

/// Whether `content` is already [`dropped_note`]`(id)`, without building the note: once a
/// conversation is past its compaction threshold this runs for every old result at every
/// call.
fn is_dropped_note(content: &str, id: &str) -> bool {
    content
        .strip_prefix(DROPPED_HEAD)
        .and_then(|rest| rest.strip_suffix(DROPPED_TAIL))
        == Some(id)
}

/// Messages at the end of a conversation that compaction never touches (the newest answer
/// and its result).
const KEEP_RECENT_MESSAGES: usize = 2;

/// When the request would pass 3/4 of the model's context window, the oldest tool results
/// (not the last few messages) are dropped until it fits in half of it.
fn plan_compaction(
    request: &ChatRequest,
    origins: &[Option<String>],
    before_call: &str,
    context_tokens: u64,
) -> Option<ContextCompacted> {
    let tokens_before = flightdeck_models::input_tokens_of(request);
    if tokens_before <= context_tokens / 4 * 3 {
        return None;
    }
    let target = context_tokens / 2;
    let keep_from = request.messages.len().saturating_sub(KEEP_RECENT_MESSAGES);
    let mut tokens = tokens_before;
    let mut dropped = Vec::new();
    for (message, origin) in request.messages.iter().zip(origins).take(keep_from) {
        if tokens <= target {
            break;
        }
        let (Message::Tool { content, .. }, Some(id)) = (message, origin) else {
            continue;
        };
        if is_dropped_note(content, id) {
            continue;
        }
        let saved = flightdeck_models::estimate_text_tokens(content)
            .saturating_sub(flightdeck_models::estimate_text_tokens(&dropped_note(id)));
        if saved == 0 {
            continue;
        }
        tokens -= saved;
        dropped.push(id.clone());
    }
    (!dropped.is_empty()).then(|| ContextCompacted {
        before_call: before_call.to_string(),
        dropped,
        tokens_before,
        tokens_after: tokens,
        context_tokens,
    })
}

/// Adds a model's answer to the conversation; returns how many answers in a row had no
/// tool call.
fn push_answer(convo: &mut Conversation, model_call: String, response: ChatResponse) -> u32 {
    convo.push(
        Message::Assistant {
            content: response.content.clone(),
            tool_calls: response.tool_calls.clone(),
        },
        None,
    );
    if response.tool_calls.is_empty() {
        convo.answers_without_tools += 1;
        convo.push(Message::user(NUDGE), None);
    } else {
        convo.answers_without_tools = 0;
        convo.pending = Some(Pending {
            model_call,
            response,
            next: 0,
        });
    }
    convo.answers_without_tools
}

/// How a failed agent run ends: its step (if it has one) and the mission fail.
fn failure_events(step: Option<usize>, error: MissionError) -> Vec<EventKind> {
    protocol::failure_events(step.map(|i| (i, StepKind::Agent)), error)
}

/// What an agent is asked when its step names no task.
fn default_task(role: AgentRole) -> &'static str {
    match role {
        AgentRole::Planner => "Write the plan for the goal.",
        AgentRole::Coder => "Make the change the goal asks for.",
        AgentRole::Reviewer => "Review the change made for the goal.",
    }
}

/// The coder's task after a review asked for changes.
fn review_fix_task(comments: &[String]) -> String {
    let mut task = String::from(
        "The reviewer requested changes. Address every comment, check your work, then call `finish`.\nComments:\n",
    );
    for comment in comments {
        task.push_str(&format!("- {}\n", comment.trim()));
    }
    task
}

fn describe(step: &AgentStep<'_>) -> String {
    match step.task {
        Some(task) => format!("{} agent: {task}", step.role.as_str()),
        None => format!("{} agent", step.role.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::{dropped_note, is_dropped_note};

    #[test]
    fn a_dropped_note_is_recognised_for_its_own_call_only() {
        let note = dropped_note("call-7");
        assert!(note.contains(r#"read_output {"call_id": "call-7", "offset": 0} shows it"#));
        for (content, id, expected) in [
            (note.as_str(), "call-7", true),
            (note.as_str(), "call-70", false),
            (note.as_str(), "call-", false),
            ("fn main() {}", "call-7", false),
            ("", "call-7", false),
            (&note[..note.len() - 1], "call-7", false),
        ] {
            assert_eq!(is_dropped_note(content, id), expected, "{content:?} {id:?}");
        }
    }
}
