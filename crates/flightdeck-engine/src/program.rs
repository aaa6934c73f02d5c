//! The mission's program: provision the workspace, run the template's steps in order, the
//! platform's acceptance checks, then publish. It runs in the driver's task; every call goes
//! through the governed-call protocol and every effect through a port.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use flightdeck_core::event::*;
use flightdeck_core::ids::step_call_id;
use flightdeck_core::template::{Network, Step, Template, ToolchainMode};
use flightdeck_core::{EventKind, MissionId, MissionStatus, StoredEvent};
use flightdeck_workspace::{
    CommandOutcome, CommandSpec, ConfinedFs, GitError, Workspace, Worktree,
};

use crate::agent::{AgentPlace, AgentStep};
use crate::driver::{Driver, Running};
use crate::gate::CurrentDiff;
use crate::place::{Halt, Place};
use crate::pr::{render_pr_description, PrContext};
use crate::protocol::{self, Actor, Call, Facts, Next, Proposed, PublishFacts, PUBLISH_GATE};
use crate::workspaces::{provisioning_failure, WorkspaceRequest};
use crate::EngineError;

/// A `run` step as the template gives it.
#[derive(Debug, Clone, Copy)]
struct RunStep<'a> {
    index: usize,
    total: usize,
    command: &'a str,
    timeout: Duration,
    /// Names of the secrets the command is given.
    secrets: &'a [String],
}

impl Driver {
    /// Runs the mission from where its timeline stands to its end or a park.
    pub(crate) async fn program(&mut self, resuming: bool) -> Result<(), Halt> {
        if self.log.state().status.is_terminal() || self.log.state().status.is_parked() {
            return Ok(());
        }
        let (created, template) = self.shared.template_of(self.log.state()).await?;
        let gates = self.shared.gates_of(&created).await?;
        let (worktree, workspace) = match self.ensure_workspace(&created, &template, resuming).await
        {
            Ok(Some(made)) => made,
            Ok(None) => return Ok(()),
            // The repository's own definition is at fault: the mission fails, saying why.
            // (An engine that does not answer is not: the mission can resume once it does.)
            Err(Halt::Error(e)) => {
                let Some(kind) = provisioning_failure(&e) else {
                    return Err(Halt::Error(e));
                };
                let error = MissionError {
                    kind: kind.into(),
                    message: e.to_string(),
                };
                self.finish(MissionStatus::Failed, Some(error), None)
                    .await?;
                return Ok(());
            }
            Err(other) => return Err(other),
        };
        let fs = ConfinedFs::new(workspace.root())
            .map_err(EngineError::from)?
            .with_owner(workspace.file_owner());
        let place = Place {
            gates,
            created,
            template,
            worktree,
            workspace,
            fs,
        };
        let total = place.template.steps.len();
        for (index, step) in place.template.steps.iter().enumerate() {
            self.take_waiting().await?;
            let status = self.log.state().status;
            if status.is_terminal() || status.is_parked() {
                break;
            }
            if self
                .log
                .state()
                .steps
                .get(&index)
                .is_some_and(|s| s.status.is_some())
            {
                continue;
            }
            match step {
                Step::Run {
                    command,
                    timeout_seconds,
                    secrets,
                } => {
                    let timeout = timeout_seconds
                        .map_or(self.shared.cfg.default_step_timeout, Duration::from_secs);
                    let step = RunStep {
                        index,
                        total,
                        command,
                        timeout,
                        secrets: run_step_secrets(&place.template, index, secrets.as_deref()),
                    };
                    self.run_step(&place, &step).await?;
                }
                Step::Agent {
                    role,
                    task,
                    model,
                    max_rounds,
                } => {
                    let agent_place = AgentPlace { place: &place };
                    let step = AgentStep {
                        index,
                        total,
                        role: *role,
                        task: task.as_deref(),
                        model: model.as_deref(),
                        max_rounds: *max_rounds,
                    };
                    self.agent_step(&agent_place, &step).await?;
                }
            }
        }
        let status = self.log.state().status;
        if status.is_terminal() || status.is_parked() {
            return Ok(());
        }
        if !self.accept(&AgentPlace { place: &place }).await? {
            return Ok(());
        }
        self.publish(&place).await
    }

    /// Provisions the workspace (a fresh mission) or finds it again (a resume); `None` when
    /// the mission ended here (toolchain drift under `enforce`).
    async fn ensure_workspace(
        &mut self,
        created: &MissionCreated,
        template: &Template,
        resuming: bool,
    ) -> Result<Option<(Worktree, Arc<dyn Workspace>)>, Halt> {
        let runtime = template.workspace.runtime;
        // On another machine than the requester's, the repository is fetched here first
        // (before anything is recorded: a worker that cannot get it leaves no trace).
        let repo = self.shared.cfg.ports.repos.locate(created).await?;
        let state = self.log.state();
        if state.workspace.is_none() && state.status != MissionStatus::Provisioning {
            let provisioning = WorkspaceProvisioning {
                runtime: runtime.as_str().to_string(),
            };
            self.log
                .append(vec![EventKind::WorkspaceProvisioning(provisioning)])
                .await?;
        }
        let fresh = self.log.state().workspace.is_none();
        let origin = self.log.state().forked.as_ref().map(|f| f.origin.clone());
        let request = WorkspaceRequest {
            id: &self.log.state().id.clone(),
            repo: &repo,
            base_commit: &created.base_commit,
            spec: &template.workspace,
            recorded: None,
            origin: origin.as_deref(),
        };
        let provider = self.shared.cfg.ports.workspaces.clone();
        let id = self.log.id().to_string();
        if fresh && provider.worktree_path(&id).exists() {
            // Left by a provisioning a crash cut off (nothing recorded it as made): `git
            // worktree add` may have stopped half way through its checkout, and a worktree
            // missing files would publish them as deleted. It is made again from scratch.
            provider.remove(&id, Some(&repo)).await;
        }
        let label = format!("provisioning workspace {id}");
        let made = if fresh {
            self.perform(
                Running {
                    call_id: "workspace",
                    label: &label,
                },
                provider.provision(&request),
            )
            .await?
        } else {
            self.perform(
                Running {
                    call_id: "workspace",
                    label: &label,
                },
                provider.attach(&request),
            )
            .await?
        }?;
        let crate::workspaces::Provisioned {
            worktree,
            workspace,
            event,
            drift,
        } = made;
        if fresh {
            let mut events = vec![EventKind::WorkspaceProvisioned(event)];
            events.extend(drift.iter().cloned().map(EventKind::WorkspaceDrift));
            self.log.append(events).await?;
            if !drift.is_empty() && template.workspace.toolchain == ToolchainMode::Enforce {
                let list: Vec<String> = drift
                    .iter()
                    .map(|d| format!("{} pinned {} but found {}", d.tool, d.pinned, d.found))
                    .collect();
                let error = MissionError {
                    kind: "toolchain_drift".into(),
                    message: format!(
                        "the workspace's toolchain does not match the repository's pins ({}), and the template says toolchain = \"enforce\"; no step ran",
                        list.join("; ")
                    ),
                };
                self.finish(MissionStatus::Failed, Some(error), None)
                    .await?;
                return Ok(None);
            }
        } else if resuming {
            // Whatever an interrupted command did is not in the timeline: throw it away.
            worktree.restore(self.log.state().last_tree.as_deref())?;
        }
        Ok(Some((worktree, workspace)))
    }

    /// Governs a proposed call: asks the protocol, reading the worktree's diff when it
    /// needs it; records a park's `approval.requested`. The protocol's answer, its events
    /// not appended yet (but for a park's, which are).
    pub(crate) async fn govern(&mut self, place: &Place, call: &Call<'_>) -> Result<Next, Halt> {
        let now = self.log.now_ms();
        let policy_hash = place.created.policy_hash.clone();
        let mut diff: Option<CurrentDiff> = None;
        let mut diff_hash: Option<String> = None;
        loop {
            let facts = Facts {
                now_ms: now,
                diff_hash: diff_hash.as_deref(),
            };
            let next = protocol::govern(
                self.log.state(),
                &place.gates.policy,
                &policy_hash,
                call,
                &facts,
            );
            match next {
                Next::NeedDiff if diff.is_none() => {
                    let current = CurrentDiff::read(&place.worktree)?;
                    diff_hash = Some(current.hash());
                    diff = Some(current);
                }
                Next::Park {
                    call_id,
                    mut events,
                    ask,
                } => {
                    let current = match diff.take() {
                        Some(current) => current,
                        None => CurrentDiff::read(&place.worktree)?,
                    };
                    let request = self
                        .shared
                        .approval_request(
                            self.log.state(),
                            &place.gates,
                            &place.template.title(),
                            &ask,
                            &current,
                        )
                        .await?;
                    events.push(EventKind::ApprovalRequested(request));
                    return Ok(Next::Park {
                        call_id,
                        events,
                        ask,
                    });
                }
                other => return Ok(other),
            }
        }
    }

    /// Runs one `run` step: judged by the policy first (`policy.decided` is recorded before
    /// anything executes), then executed unless denied or waiting for an approval.
    async fn run_step(&mut self, place: &Place, step: &RunStep<'_>) -> Result<(), Halt> {
        let base = step_call_id(step.index);
        let args = serde_json::json!({ "command": step.command });
        let what = format!(
            "step {}/{} (`{}`)",
            step.index + 1,
            step.total,
            quoted_command(step.command)
        );
        let call = Call {
            base: &base,
            actor: Actor::Template,
            tool: "run",
            args: &args,
            proposed: Proposed::Command {
                command: step.command,
            },
            what: &what,
            step: Some((step.index, StepKind::Run)),
            breakers: None,
        };
        let next = self.govern(place, &call).await?;
        let started = !self.log.state().steps.contains_key(&step.index);
        let step_started = || {
            EventKind::StepStarted(StepStarted {
                index: step.index,
                kind: StepKind::Run,
                description: step.command.to_string(),
                role: None,
                system_prompt: None,
                models: Vec::new(),
            })
        };
        let with_start = |events: Vec<EventKind>| {
            let requests = events
                .iter()
                .any(|e| matches!(e, EventKind::ToolRequested(_)));
            if started && requests {
                let mut all = vec![step_started()];
                all.extend(events);
                all
            } else {
                events
            }
        };
        match next {
            Next::Done { .. } | Next::Wait | Next::NeedDiff => Ok(()),
            Next::Stop { events } | Next::Park { events, .. } => {
                self.log.append(with_start(events)).await?;
                Ok(())
            }
            Next::Reject { .. } => Ok(()),
            Next::Run { call_id, events } => {
                if !events.is_empty() {
                    self.log.append(with_start(events)).await?;
                }
                self.execute_run_step(place, step, &call_id).await
            }
        }
    }

    /// Executes a requested, allowed call of a `run` step and records its result.
    async fn execute_run_step(
        &mut self,
        place: &Place,
        step: &RunStep<'_>,
        call_id: &str,
    ) -> Result<(), Halt> {
        let mut env = vec![("FLIGHTDECK_MISSION".into(), self.log.id().to_string())];
        let secrets = self.shared.cfg.ports.secrets.env(step.secrets)?;
        let private_home = !secrets.is_empty();
        env.extend(secrets);
        let spec = CommandSpec {
            command: step.command.to_string(),
            timeout: self.command_timeout(step.timeout),
            env,
            network: place.template.workspace.network == Network::On,
            trusted: runs_only_trusted_code(self.log.state()),
            private_home,
        };
        let outcome = self.run_command(place, call_id, &spec).await?;
        let output = self.log.put_artifact(&outcome.output).await?;
        // A worktree git cannot record (a nested repository with no commit, say) fails the
        // step: nothing unrecorded may reach a later step or the published change.
        let (tree, snapshot_error) = match place.worktree.snapshot() {
            Ok(tree) => (Some(tree), None),
            Err(e) => (None, Some(e)),
        };
        let ok = outcome.success() && snapshot_error.is_none();
        let mut events = vec![
            protocol::completed(
                call_id,
                protocol::Outcome {
                    ok,
                    exit_code: outcome.exit_code,
                    output,
                    duration_ms: crate::ports::millis(outcome.duration),
                    timed_out: outcome.timed_out,
                    tree,
                },
            ),
            EventKind::StepFinished(StepFinished {
                index: step.index,
                kind: StepKind::Run,
                status: if ok {
                    StepStatus::Succeeded
                } else {
                    StepStatus::Failed
                },
            }),
        ];
        if !ok {
            let error = match snapshot_error {
                Some(e @ GitError::ChangesTooLarge { .. }) => MissionError {
                    kind: "workspace_too_large".into(),
                    message: format!(
                        "step {}/{} (`{}`) changed too much: {e}",
                        step.index + 1,
                        step.total,
                        quoted_command(step.command)
                    ),
                },
                Some(e @ GitError::SecretInWorktree { .. }) => MissionError {
                    kind: "secret_in_worktree".into(),
                    message: format!(
                        "step {}/{} (`{}`) left a secret in the worktree: {e}",
                        step.index + 1,
                        step.total,
                        step.command
                    ),
                },
                Some(e) if outcome.success() => MissionError {
                    kind: "workspace_unrecordable".into(),
                    message: format!(
                        "step {}/{} (`{}`) left a worktree git cannot record: {e}",
                        step.index + 1,
                        step.total,
                        quoted_command(step.command)
                    ),
                },
                _ => step_failure(step, &outcome),
            };
            events.push(EventKind::MissionFinished(MissionFinished {
                status: MissionStatus::Failed,
                error: Some(error),
                summary: None,
            }));
        }
        self.log.append(events).await?;
        Ok(())
    }

    /// Runs a command through the command port, taking in inputs while it runs (a cancel
    /// kills it).
    pub(crate) async fn run_command(
        &mut self,
        place: &Place,
        call_id: &str,
        spec: &CommandSpec,
    ) -> Result<CommandOutcome, Halt> {
        // Nothing staged may wait while a command runs: a crash during it must not lose a
        // result that is already paid for.
        self.log.flush().await?;
        let port = self.shared.cfg.ports.commands.clone();
        let outcome = self
            .perform(
                Running {
                    call_id,
                    label: &spec.command,
                },
                port.run(call_id, &*place.workspace, &place.worktree, spec),
            )
            .await??;
        Ok(outcome)
    }

    /// A command's timeout, cut to what remains of the wall-time budget, so no command can
    /// run the mission past it.
    pub(crate) fn command_timeout(&self, timeout: Duration) -> Duration {
        let now = self.log.now_ms();
        match self
            .log
            .state()
            .budget_remaining(flightdeck_core::budget::Dimension::WallSeconds, now)
        {
            Some(remaining) => timeout.min(Duration::from_secs_f64(remaining.max(1.0))),
            None => timeout,
        }
    }

    /// The publish gate, then the commit on the mission branch, the patch and the PR
    /// description. The gate judges the classified diff before anything is committed; what
    /// will be committed (tree, message, date) is recorded before the branch is written, so
    /// a crash in between leaves a resume that makes the very same commit.
    async fn publish(&mut self, place: &Place) -> Result<(), Halt> {
        let current = CurrentDiff::read(&place.worktree)?;
        if current.files.is_empty() {
            let summary =
                "no changes: the steps left the repository as it was, so nothing was published"
                    .to_string();
            self.finish(MissionStatus::Succeeded, None, Some(summary))
                .await?;
            self.remove_workspace().await;
            return Ok(());
        }
        let diff_hash = current.hash();
        let changed = current.changed_files();
        let approved_writes = protocol::covered_writes(
            self.log.state(),
            |path| place.worktree.blob_in_tree(&current.tree, path),
            |tree, path| place.worktree.blob_in_tree(tree, path),
        );
        let next = protocol::govern_publish(
            self.log.state(),
            &place.gates.policy,
            &PublishFacts {
                diff_hash: diff_hash.as_str(),
                changed: &changed,
                approved_writes: &approved_writes,
            },
        );
        // A mission from GitHub proposes its change first (the commit pushed, a draft pull
        // request opened), so that its publish gate is a check run on that pull request's
        // head, and approvals bind to that commit.
        let needs_proposal = place.created.github.is_some()
            && !matches!(
                next,
                Next::Wait
                    | Next::Done { .. }
                    | Next::NeedDiff
                    | Next::Reject { .. }
                    | Next::Stop { .. }
            )
            && self
                .log
                .state()
                .proposed
                .as_ref()
                .is_none_or(|p| p.tree != current.tree);
        if needs_proposal {
            self.propose(place, &current).await?;
        }
        let mut events = match next {
            Next::Run { events, .. } => events,
            Next::Wait | Next::Done { .. } | Next::NeedDiff | Next::Reject { .. } => return Ok(()),
            Next::Stop { events } => {
                self.log.append(events).await?;
                return Ok(());
            }
            Next::Park {
                mut events, ask, ..
            } => {
                let request = self
                    .shared
                    .approval_request(
                        self.log.state(),
                        &place.gates,
                        &place.template.title(),
                        &ask,
                        &current,
                    )
                    .await?;
                events.push(EventKind::ApprovalRequested(request));
                self.log.append(events).await?;
                return Ok(());
            }
        };
        let tree = current.tree.clone();
        let files = file_changes(&current);
        let id = MissionId::parse(self.log.id()).unwrap_or_else(|| MissionId::from_parts(0, 0));
        let branch = id.branch();
        let title = place.template.title();
        let committed = self.commit_tree(place, &tree, &mut events).await?;
        let patch = match committed.patch {
            crate::ports::PatchBytes::Bytes(bytes) => self.log.put_artifact(&bytes).await?,
            crate::ports::PatchBytes::Recorded(digest) => digest,
        };
        // The description reports the publish decision too, which is appended with it.
        let mut preview = self.log.state().clone();
        for kind in &events {
            let _ = preview.apply(preview.events + 1, preview.last_at_ms, kind);
        }
        let plan = self.plan_of().await?;
        let classes = self.classes_of(place, &files);
        let description = render_pr_description(&PrContext {
            state: &preview,
            template: &place.template,
            title: &title,
            branch: &branch,
            commit: &committed.commit,
            files: &files,
            plan: plan.as_deref(),
            classes: &classes,
        });
        let pr_description = self.log.put_artifact(description.as_bytes()).await?;
        let summary = format!("published {} file(s) on branch {branch}", files.len());
        events.extend([
            EventKind::ChangePublished(ChangePublished {
                branch,
                commit: committed.commit,
                patch,
                pr_description,
                pr_url: self.log.state().proposed.as_ref().map(|p| p.pr_url.clone()),
                files,
            }),
            EventKind::MissionFinished(MissionFinished {
                status: MissionStatus::Succeeded,
                error: None,
                summary: Some(summary),
            }),
        ]);
        self.log.append(events).await?;
        self.remove_workspace().await;
        Ok(())
    }

    /// Records what is committed (once per tree: a resume makes the very same commit) and
    /// has the publisher write it on the mission's branch. `events` (the publish decision,
    /// when there is one) are appended with the record.
    async fn commit_tree(
        &mut self,
        place: &Place,
        tree: &str,
        events: &mut Vec<EventKind>,
    ) -> Result<crate::ports::Committed, Halt> {
        let id = MissionId::parse(self.log.id()).unwrap_or_else(|| MissionId::from_parts(0, 0));
        // What is committed is decided and recorded first: the commit's date is the time
        // of this record, so the same timeline makes the same commit, and a resume after a
        // crash between the record and the branch finds the branch already right.
        let (committing, recorded_at) = match self.log.state().committing.clone() {
            Some(committing) if committing.tree == tree => {
                if !events.is_empty() {
                    self.log.append(std::mem::take(events)).await?;
                }
                let recorded_at = self.log.last_stored_of_type("change.committing").await?;
                (committing, recorded_at)
            }
            _ => {
                let committing = ChangeCommitting {
                    branch: id.branch(),
                    tree: tree.to_string(),
                    message: commit_message(
                        &place.template.title(),
                        place.template.goal.as_deref(),
                        self.log.id(),
                        &place.created.requested_by,
                        self.co_author(&place.created).as_deref(),
                    ),
                    date_s: self.log.now_ms().div_euclid(1000),
                };
                events.push(EventKind::ChangeCommitting(committing.clone()));
                let stored = self.log.append(std::mem::take(events)).await?;
                (committing, stored.last().cloned())
            }
        };
        let publisher = self.shared.cfg.ports.publisher.clone();
        let commit = crate::ports::Commit {
            tree: committing.tree.clone(),
            branch: committing.branch.clone(),
            message: with_timeline_trailers(&committing.message, recorded_at.as_ref()),
            date_s: committing.date_s,
        };
        let committed = self
            .perform(
                Running {
                    call_id: PUBLISH_GATE,
                    label: "publishing",
                },
                publisher.commit(&place.worktree, &commit),
            )
            .await??;
        Ok(committed)
    }

    /// The requester of a mission from GitHub, as the commit's co-author: by GitHub's
    /// no-reply address for the login (GitHub credits the account by it, and no address of
    /// the installation's people reaches a possibly public repository).
    fn co_author(&self, created: &MissionCreated) -> Option<String> {
        let github = created.github.as_ref()?;
        let login = github.requested_by_login.trim_start_matches('@');
        Some(format!("{login} <{login}@users.noreply.github.com>"))
    }

    /// Commits the change and proposes it on GitHub (push, draft pull request), recording
    /// `change.proposed`.
    async fn propose(&mut self, place: &Place, current: &CurrentDiff) -> Result<(), Halt> {
        let Some(origin) = place.created.github.as_deref().cloned() else {
            return Ok(());
        };
        let mut none = Vec::new();
        let committed = self.commit_tree(place, &current.tree, &mut none).await?;
        let title = place.template.title();
        let id = MissionId::parse(self.log.id()).unwrap_or_else(|| MissionId::from_parts(0, 0));
        let files = file_changes(current);
        let plan = self.plan_of().await?;
        let classes = self.classes_of(place, &files);
        let body = render_pr_description(&PrContext {
            state: self.log.state(),
            template: &place.template,
            title: &title,
            branch: &id.branch(),
            commit: &committed.commit,
            files: &files,
            plan: plan.as_deref(),
            classes: &classes,
        });
        let proposal = crate::ports::Proposal {
            origin,
            mission: self.log.id().to_string(),
            remote: place.created.remote.clone(),
            commit: committed.commit.clone(),
            tree: current.tree.clone(),
            previous_head: self
                .log
                .state()
                .proposed
                .as_ref()
                .map(|p| p.head_sha.clone()),
            title,
            body,
        };
        let forge = self.shared.cfg.ports.forge.clone();
        let proposed = self
            .perform(
                Running {
                    call_id: PUBLISH_GATE,
                    label: "proposing the change on GitHub",
                },
                forge.propose(&place.worktree, &proposal),
            )
            .await??;
        self.log
            .append(vec![EventKind::ChangeProposed(proposed)])
            .await?;
        Ok(())
    }

    /// The policy's classes of each changed file, as the PR description lists them.
    fn classes_of(&self, place: &Place, files: &[FileChange]) -> BTreeMap<String, Vec<String>> {
        files
            .iter()
            .map(|f| {
                let classes = place.gates.policy.classes_of(&f.path);
                (
                    f.path.clone(),
                    classes.into_iter().map(str::to_string).collect(),
                )
            })
            .collect()
    }

    /// Removes the mission's workspace (worktree, HOME, container). Called when a mission
    /// publishes or is cancelled; a failed mission keeps its workspace for inspection until
    /// `flightdeck workspace gc`.
    pub(crate) async fn remove_workspace(&self) {
        let state = self.log.state();
        let repo = match &state.created {
            Some(created) => self.shared.cfg.ports.repos.locate(created).await.ok(),
            None => None,
        };
        self.shared
            .cfg
            .ports
            .workspaces
            .remove(&state.id, repo.as_deref())
            .await;
    }
}

/// The secrets `run` step `index` gets: those it names, else `[workspace] secrets` unless an
/// agent step came before it (it would run code an agent wrote: a build script, a package
/// hook), in which case none unless named.
fn run_step_secrets<'a>(
    template: &'a Template,
    index: usize,
    named: Option<&'a [String]>,
) -> &'a [String] {
    match named {
        Some(names) => names,
        None if template.steps[..index]
            .iter()
            .any(|s| matches!(s, Step::Agent { .. })) =>
        {
            &[]
        }
        None => &template.workspace.secrets,
    }
}

/// A command as messages quote it: whole up to 200 characters, else its start and its size
/// (a command of megabytes must not make a message of megabytes).
fn quoted_command(command: &str) -> String {
    const SHOWN: usize = 200;
    match command.char_indices().nth(SHOWN) {
        None => command.to_string(),
        Some((cut, _)) => format!("{}… ({} bytes)", &command[..cut], command.len()),
    }
}

fn step_failure(step: &RunStep<'_>, outcome: &CommandOutcome) -> MissionError {
    let how = if outcome.timed_out {
        format!("timed out after {}s and was killed", step.timeout.as_secs())
    } else {
        match outcome.exit_code {
            Some(code) => format!("exited with {code}"),
            None => "was killed by a signal".to_string(),
        }
    };
    let tail = outcome.tail(20);
    let mut message = format!(
        "step {}/{} (`{}`) {how}",
        step.index + 1,
        step.total,
        quoted_command(step.command)
    );
    if !tail.is_empty() {
        message.push('\n');
        message.push_str(&tail);
    }
    MissionError {
        kind: "step_failed".into(),
        message,
    }
}

/// The recorded commit message with the `change.committing` event that records it (its seq
/// and hash) as trailers: the published commit anchors the timeline up to there, outside
/// flightdeck's database. The event cannot hold its own hash, so they are added here, from
/// the timeline (the same timeline makes the same commit).
fn with_timeline_trailers(message: &str, committing: Option<&StoredEvent>) -> String {
    match committing {
        Some(event) => format!(
            "{message}Flightdeck-Timeline-Seq: {}\nFlightdeck-Timeline-Head: {}\n",
            event.seq, event.hash
        ),
        None => message.to_string(),
    }
}

fn commit_message(
    title: &str,
    goal: Option<&str>,
    mission: &str,
    requested_by: &str,
    co_author: Option<&str>,
) -> String {
    let mut message = format!("{title}\n\n");
    if let Some(goal) = goal.filter(|g| !g.trim().is_empty()) {
        message.push_str(goal.trim());
        message.push_str("\n\n");
    }
    message.push_str(&format!(
        "Flightdeck-Mission: {mission}\nRequested-by: {requested_by}\n"
    ));
    if let Some(co_author) = co_author {
        // One line, whatever the login or the email hold: a trailer cannot be split.
        let co_author: String = co_author.chars().filter(|c| !c.is_control()).collect();
        message.push_str(&format!("Co-authored-by: {co_author}\n"));
    }
    message
}

/// The files a diff changes, as `change.published` lists them.
fn file_changes(current: &CurrentDiff) -> Vec<FileChange> {
    current
        .files
        .iter()
        .map(|f| FileChange {
            path: f.path.clone(),
            status: f.status.clone(),
            added: f.added,
            removed: f.removed,
        })
        .collect()
}

/// Whether the worktree holds only what the repository and the template's own steps made: no
/// agent step has run (nor did one in a mission this was forked from). Only then may a
/// command write the shared caches.
fn runs_only_trusted_code(state: &flightdeck_core::MissionState) -> bool {
    state.forked.is_none() && state.steps.values().all(|s| s.kind == StepKind::Run)
}
