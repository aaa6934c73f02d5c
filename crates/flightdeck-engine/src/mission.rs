//! Creating, driving, resuming and cancelling missions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flightdeck_core::event::*;
use flightdeck_core::ids::{is_call_of_step, step_call_id};
use flightdeck_core::template::{Network, Runtime, Step, Template, ToolchainMode, WorkspaceSpec};
use flightdeck_core::{
    Digest, EventKind, MissionId, MissionState, MissionStatus, StoredEvent, UnstoredEvent,
};
use flightdeck_store::{AppendRequest, NewEvent, Projection, StoreError};
use flightdeck_workspace::docker::{DockerEngine, DockerWorkspace};
use flightdeck_workspace::{
    repo_root, resolve_commit, Cgroups, CommandOutcome, CommandSpec, Limits, LocalWorkspace,
    Sandbox, SandboxLayout, Workspace, WorkspaceError, Worktree,
};

use flightdeck_core::state::ApprovalStatus;
use flightdeck_policy::{Action, ChangedFile, Decision, Policy, Verdict};

use crate::agent::{AgentPlace, AgentStep};
use crate::gate::{decided_event, denied_error, CurrentDiff, Gates};
use crate::models::{check_models, ModelSettings};
use crate::pr::{render_pr_description, PrContext};
use crate::worker::WorkerId;
use crate::{EngineConfig, EngineError};

/// How long a lease lasts without renewal; the driving process renews it well before.
const LEASE_TTL_MS: i64 = 30_000;
const LEASE_RENEW_EVERY: Duration = Duration::from_secs(10);
/// How often a running command checks for cancellation and reports progress.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// What `flightdeck run` asks for.
#[derive(Debug, Clone)]
pub struct CreateMission {
    pub id: MissionId,
    /// The template's name (file stem).
    pub template_name: String,
    /// Where the template came from, for messages.
    pub template_file: String,
    pub template_source: String,
    pub params: BTreeMap<String, String>,
    /// Any directory inside the repository.
    pub repo: PathBuf,
    pub base_ref: String,
    pub requested_by: String,
    /// The policy that governs the mission (the repo's file, or the built-in one).
    pub policy_source: String,
    /// Where the policy came from, for error messages.
    pub policy_file: String,
    /// The repository's CODEOWNERS, if it has one.
    pub codeowners: Option<RepoFile>,
    /// The commit to start from, when it is fixed already (a replay's recorded base);
    /// otherwise `base_ref` is resolved.
    pub base_commit: Option<String>,
}

/// What `flightdeck fork` asks for.
#[derive(Debug, Clone)]
pub struct ForkMission {
    /// The new mission's id.
    pub id: MissionId,
    pub origin: String,
    pub at_seq: u64,
    pub by: String,
    /// Replaces the template's `[model] pin`.
    pub model: Option<String>,
    /// Replaces the template (its source and where it came from, for messages).
    pub template_source: Option<String>,
    pub template_file: String,
    /// Sources of the scripted models the overrides name, by model ref.
    pub model_scripts: BTreeMap<String, String>,
}

/// A file read from the repository when the mission was created.
#[derive(Debug, Clone)]
pub struct RepoFile {
    /// Repo-relative path.
    pub path: String,
    pub source: String,
}

/// A mission ready to be created: everything checked, nothing written.
struct Checked {
    template: Template,
    params: BTreeMap<String, String>,
    repo: PathBuf,
    base_commit: String,
    /// The sources of the template's scripted models, by model ref.
    scripts: BTreeMap<String, String>,
}

/// Drives missions. Cheap to clone; every method may be called from any task.
#[derive(Clone)]
pub struct Engine {
    cfg: EngineConfig,
    /// Pinned scripts, parsed once: each agent run builds its providers, and a long
    /// script takes longer to parse than a run's step.
    scripts: std::sync::Arc<
        std::sync::Mutex<BTreeMap<Digest, std::sync::Arc<flightdeck_models::Script>>>,
    >,
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Engine {
        Engine {
            cfg,
            scripts: Default::default(),
        }
    }

    pub(crate) fn cached_script(
        &self,
        digest: &Digest,
    ) -> Option<std::sync::Arc<flightdeck_models::Script>> {
        let cache = self.scripts.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(digest).cloned()
    }

    pub(crate) fn cache_script(
        &self,
        digest: &Digest,
        script: &std::sync::Arc<flightdeck_models::Script>,
    ) {
        let mut cache = self.scripts.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(digest.clone(), script.clone());
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Checks a request without writing anything: the template parses and renders with the
    /// params, the repository and base commit exist, the runtime is available.
    pub fn validate(
        request: &CreateMission,
        models: &ModelSettings,
        workspace: &crate::WorkspaceSettings,
    ) -> Result<(), EngineError> {
        check(request, models, workspace, false).map(|_| ())
    }

    /// Records a new mission (`mission.created`); nothing runs yet.
    pub async fn create(&self, request: CreateMission) -> Result<MissionState, EngineError> {
        let checked = check(
            &request,
            &self.cfg.models,
            &self.cfg.workspace,
            self.cfg.replay.is_some(),
        )?;
        let mut model_scripts = BTreeMap::new();
        for (model, source) in &checked.scripts {
            model_scripts.insert(model.clone(), self.put_artifact(source.as_bytes()).await?);
        }
        let template_source = self
            .put_artifact(request.template_source.as_bytes())
            .await?;
        let policy_source = self.put_artifact(request.policy_source.as_bytes()).await?;
        let codeowners = match &request.codeowners {
            Some(file) => Some(self.put_artifact(file.source.as_bytes()).await?),
            None => None,
        };
        let created = MissionCreated {
            template: request.template_name.clone(),
            template_hash: Digest::of(request.template_source.as_bytes()),
            params: checked.params,
            repo: checked.repo.display().to_string(),
            base_commit: checked.base_commit,
            requested_by: request.requested_by.clone(),
            policy_hash: Digest::of(request.policy_source.as_bytes()),
            template_source,
            base_ref: request.base_ref.clone(),
            engine_version: flightdeck_core::ENGINE_VERSION.to_string(),
            budget: checked.template.budget.clone(),
            steps: checked.template.steps.len(),
            policy_source: Some(policy_source),
            codeowners,
            codeowners_path: request.codeowners.as_ref().map(|f| f.path.clone()),
            model_scripts,
        };
        let mut state = MissionState::new(request.id.as_str());
        self.append(&mut state, vec![EventKind::MissionCreated(created)])
            .await?;
        Ok(state)
    }

    /// Creates a mission and drives it until it ends or parks.
    pub async fn run(&self, request: CreateMission) -> Result<MissionState, EngineError> {
        let state = self.create(request).await?;
        self.with_lease(state, false, None).await
    }

    /// Drives a mission created earlier (`run --detach`) that no process has started.
    pub async fn start(&self, id: &str) -> Result<MissionState, EngineError> {
        let state = self.load(id).await?;
        self.with_lease(state, false, None).await
    }

    /// Continues a parked or interrupted mission. Completed steps never run again; a command
    /// that was running when its process died runs again from the worktree as it was
    /// after the last completed step.
    ///
    /// A mission waiting for approvals stays parked (returned unchanged) until every
    /// pending approval is granted; one whose approval expired fails here.
    pub async fn resume(&self, id: &str, by: &str) -> Result<MissionState, EngineError> {
        let state = self.load(id).await?;
        if state.status.is_terminal() {
            return Err(EngineError::AlreadyFinished {
                id: state.id.clone(),
                status: state.status,
            });
        }
        self.with_lease(state, true, Some(by)).await
    }

    /// Cancels a mission that has not finished. A process driving it notices within a
    /// second, kills its command and cleans up; otherwise the workspace is removed here.
    pub async fn cancel(&self, id: &str, by: &str) -> Result<MissionState, EngineError> {
        let mut state = self.load(id).await?;
        if state.status.is_terminal() {
            return Err(EngineError::AlreadyFinished {
                id: state.id.clone(),
                status: state.status,
            });
        }
        let finished = EventKind::MissionFinished(MissionFinished {
            status: MissionStatus::Cancelled,
            error: Some(MissionError {
                kind: "cancelled".into(),
                message: format!("cancelled by {by}"),
            }),
            summary: None,
        });
        self.append(&mut state, vec![finished]).await?;
        let driven_elsewhere = self
            .cfg
            .store
            .mission(&state.id)
            .await?
            .and_then(|row| row.lease)
            .is_some_and(|lease| {
                lease.expires_ms > self.cfg.clock.now_ms()
                    && !WorkerId::is_dead_on_this_host(&lease.owner)
            });
        if !driven_elsewhere {
            self.remove_workspace(&state).await;
        }
        Ok(state)
    }

    /// Forks mission `request.origin` at `request.at_seq`: a new mission whose first events
    /// are copies of the origin's 1..=`at_seq`, then `mission.forked` with what is overridden;
    /// then it is resumed and runs live. The origin is not touched.
    pub async fn fork(&self, request: ForkMission) -> Result<MissionState, EngineError> {
        let origin = self.cfg.store.events(&request.origin, 0).await?;
        let last = origin.len() as u64;
        if origin.is_empty() {
            return Err(EngineError::UnknownMission(request.origin));
        }
        if request.at_seq == 0 || request.at_seq > last {
            return Err(EngineError::BadFork(format!(
                "--at {}: mission {} has events 1..{last}",
                request.at_seq, request.origin
            )));
        }
        let copied = &origin[..usize::try_from(request.at_seq).unwrap_or(usize::MAX)];
        if let Some(finished) = copied.iter().find(|e| e.event_type == "mission.finished") {
            return Err(EngineError::BadFork(format!(
                "--at {}: the mission had already finished at seq {}, so nothing would run",
                request.at_seq, finished.seq
            )));
        }
        let id = request.id.as_str();
        let mut state = MissionState::new(id);
        let mut events = Vec::with_capacity(copied.len() + 1);
        for event in copied {
            let kind = event
                .kind()
                .map_err(|e| EngineError::BadFork(e.to_string()))?;
            let at_ms = flightdeck_core::clock::parse_rfc3339_millis(&event.at).unwrap_or(0);
            state
                .apply(event.seq, at_ms, &kind)
                .map_err(|source| EngineError::Corrupt {
                    id: request.origin.clone(),
                    source,
                })?;
            events.push(NewEvent {
                at_ms,
                event_type: event.event_type.clone(),
                data: event.data.clone(),
            });
        }
        let created = state
            .created
            .clone()
            .ok_or_else(|| EngineError::UnknownMission(request.origin.clone()))?;
        let mut forked = MissionForked {
            origin: request.origin.clone(),
            at_seq: request.at_seq,
            origin_hash: copied.last().map(|e| e.hash.clone()).unwrap_or_default(),
            by: request.by.clone(),
            model: None,
            template_source: None,
            template_hash: None,
            model_scripts: BTreeMap::new(),
        };
        if let Some(model) = &request.model {
            model
                .parse::<flightdeck_models::ModelRef>()
                .map_err(|e| EngineError::BadFork(format!("--model {model}: {e}")))?;
            forked.model = Some(model.clone());
        }
        if let Some(source) = &request.template_source {
            // The new template must render with the mission's params.
            let template = Template::parse(&created.template, &request.template_file, source)?;
            template.render(&created.params, &request.id)?;
            forked.template_source = Some(self.put_artifact(source.as_bytes()).await?);
            forked.template_hash = Some(Digest::of(source.as_bytes()));
        }
        for (model, source) in &request.model_scripts {
            forked
                .model_scripts
                .insert(model.clone(), self.put_artifact(source.as_bytes()).await?);
        }
        let now = self.cfg.clock.now_ms().max(state.last_at_ms);
        let kind = EventKind::MissionForked(forked);
        state
            .apply(state.events + 1, now, &kind)
            .map_err(|source| EngineError::Corrupt {
                id: id.to_string(),
                source,
            })?;
        events.push(NewEvent {
            at_ms: now,
            event_type: kind.type_name().to_string(),
            data: kind.data(),
        });
        let projection = Projection {
            status: state.status.as_str().to_string(),
            template: created.template.clone(),
            summary: state.summary(),
        };
        let stored = self
            .cfg
            .store
            .append(AppendRequest {
                mission: id.to_string(),
                expected_seq: 0,
                events,
                projection,
            })
            .await?;
        for event in &stored {
            self.cfg.observer.event(event);
        }
        self.resume(id, &request.by).await
    }

    /// The full id of a mission from its id or a unique prefix of it.
    pub async fn resolve_id(&self, given: &str) -> Result<String, EngineError> {
        let given = given.trim();
        if given.is_empty() {
            return Err(EngineError::UnknownMission(given.to_string()));
        }
        if self.cfg.store.mission(given).await?.is_some() {
            return Ok(given.to_string());
        }
        let candidates = self.cfg.store.mission_ids_with_prefix(given, 6).await?;
        match candidates.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(EngineError::UnknownMission(given.to_string())),
            many => Err(EngineError::AmbiguousMission {
                prefix: given.to_string(),
                candidates: many.join(", "),
            }),
        }
    }

    /// The state of a mission, folded from its timeline.
    pub async fn load(&self, id: &str) -> Result<MissionState, EngineError> {
        let events = self.cfg.store.events(id, 0).await?;
        if events.is_empty() {
            return Err(EngineError::UnknownMission(id.to_string()));
        }
        MissionState::fold(id, &events).map_err(|source| EngineError::Corrupt {
            id: id.to_string(),
            source,
        })
    }

    /// Holds the mission's lease while it is driven, renewing it, and gives it back after.
    async fn with_lease(
        &self,
        mut state: MissionState,
        resuming: bool,
        by: Option<&str>,
    ) -> Result<MissionState, EngineError> {
        self.take_lease(&state.id).await?;
        let renewal = {
            let store = self.cfg.store.clone();
            let clock = self.cfg.clock.clone();
            let id = state.id.clone();
            let owner = self.cfg.worker.0.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(LEASE_RENEW_EVERY).await;
                    let _ = store
                        .acquire_lease(&id, &owner, clock.now_ms(), LEASE_TTL_MS, None)
                        .await;
                }
            })
        };
        let result = async {
            // The lease is ours: re-read, in case the timeline moved while we waited for it.
            state = self.load(&state.id).await?;
            if resuming && (self.expire_due_in(&mut state).await? || still_waiting(&state)) {
                return Ok(());
            }
            if resuming {
                self.record_resume(&mut state, by.unwrap_or("unknown"))
                    .await?;
            }
            let driven = match self.drive(&mut state, resuming).await {
                Ok(()) => self.flush(&mut state).await,
                // An error that is not the store's view changing under us (a git or artifact
                // error, say): what is staged is still valid, and an answer already paid for
                // is kept so that a resume does not ask for it again. Best effort: the error
                // reported is the drive's.
                Err(error) => {
                    if !matches!(
                        error,
                        EngineError::Raced { .. }
                            | EngineError::Cancelled { .. }
                            | EngineError::Corrupt { .. }
                    ) {
                        let _ = self.flush(&mut state).await;
                    }
                    Err(error)
                }
            };
            match driven {
                // Cancelled by another process while we drove it: what `cancel` left to us
                // (the workspace) is cleaned up here.
                Err(EngineError::Cancelled { .. }) => {
                    self.remove_workspace(&state).await;
                    Ok(())
                }
                other => other,
            }
        }
        .await;
        renewal.abort();
        let _ = self
            .cfg
            .store
            .release_lease(&state.id, &self.cfg.worker.0)
            .await;
        result.map(|()| state)
    }

    async fn take_lease(&self, id: &str) -> Result<(), EngineError> {
        let me = &self.cfg.worker.0;
        let now = self.cfg.clock.now_ms();
        let store = &self.cfg.store;
        let holder = store.acquire_lease(id, me, now, LEASE_TTL_MS, None).await?;
        let holder = match holder {
            Some(lease) if &lease.owner != me && WorkerId::is_dead_on_this_host(&lease.owner) => {
                store
                    .acquire_lease(id, me, now, LEASE_TTL_MS, Some(&lease.owner))
                    .await?
            }
            other => other,
        };
        match holder {
            Some(lease) if &lease.owner == me => Ok(()),
            Some(lease) => Err(EngineError::Busy {
                id: id.to_string(),
                owner: lease.owner,
            }),
            None => Err(EngineError::UnknownMission(id.to_string())),
        }
    }

    async fn record_resume(&self, state: &mut MissionState, by: &str) -> Result<(), EngineError> {
        let mut events = Vec::new();
        if matches!(
            state.status,
            MissionStatus::Running | MissionStatus::Provisioning
        ) {
            let calls: Vec<String> = state
                .tool_calls
                .iter()
                .filter(|(_, call)| call.completed.is_none())
                .map(|(id, _)| id.clone())
                .collect();
            let reason = if let Some(forked) = state
                .forked
                .as_ref()
                .filter(|f| state.events == f.at_seq + 1)
            {
                format!(
                    "forked from {} at seq {}; what was in flight there runs again",
                    forked.origin, forked.at_seq
                )
            } else if calls.is_empty() {
                "the process driving the mission stopped before the mission finished".to_string()
            } else {
                format!(
                    "the process driving the mission stopped while {} ran",
                    calls.join(", ")
                )
            };
            events.push(EventKind::MissionInterrupted(MissionInterrupted {
                reason,
                calls,
            }));
        }
        events.push(EventKind::MissionResumed(MissionResumed {
            by: by.to_string(),
        }));
        self.append(state, events).await?;
        Ok(())
    }

    /// The mission's template as it was pinned at creation, rendered with its params.
    async fn template_of(
        &self,
        state: &MissionState,
    ) -> Result<(MissionCreated, Template), EngineError> {
        let created = state
            .created
            .clone()
            .ok_or_else(|| EngineError::UnknownMission(state.id.clone()))?;
        let source = self.cfg.artifacts.get(&created.template_source).await?;
        let source = String::from_utf8_lossy(&source);
        let template = Template::parse(&created.template, &created.template, &source)?;
        let id = MissionId::parse(&state.id).unwrap_or_else(|| MissionId::from_parts(0, 0));
        let mut rendered = template.render(&created.params, &id)?;
        // A fork may run on another model: it replaces the pin, and its fallbacks go.
        if let Some(pin) = state.forked.as_ref().and_then(|f| f.model.clone()) {
            let spec = rendered.template.model.get_or_insert_with(|| {
                flightdeck_core::template::ModelSpec {
                    pin: pin.clone(),
                    fallback: Vec::new(),
                    temperature: None,
                    max_output_tokens: None,
                    allow_snapshot_mismatch: false,
                    context_tokens: None,
                }
            });
            spec.pin = pin;
            spec.fallback.clear();
        }
        Ok((created, rendered.template))
    }

    async fn drive(&self, state: &mut MissionState, resuming: bool) -> Result<(), EngineError> {
        if state.status.is_terminal() || state.status.is_parked() {
            return Ok(());
        }
        let (created, template) = self.template_of(state).await?;
        let gates = self.gates_of(&created).await?;
        let (worktree, workspace) = match self
            .ensure_workspace(state, &created, &template, resuming)
            .await
        {
            Ok(made) => made,
            // The repository's own definition is at fault: the mission fails, saying why.
            // (An engine that does not answer is not: the mission can resume once it does.)
            Err(e) => {
                let Some(kind) = provisioning_failure(&e) else {
                    return Err(e);
                };
                let error = MissionError {
                    kind: kind.into(),
                    message: e.to_string(),
                };
                self.finish(state, MissionStatus::Failed, Some(error), None)
                    .await?;
                return Ok(());
            }
        };
        let total = template.steps.len();
        for (index, step) in template.steps.iter().enumerate() {
            if state.status.is_terminal() || state.status.is_parked() {
                break;
            }
            if state.steps.get(&index).is_some_and(|s| s.status.is_some()) {
                continue;
            }
            match step {
                Step::Run {
                    command,
                    timeout_seconds,
                    secrets,
                } => {
                    let timeout =
                        timeout_seconds.map_or(self.cfg.default_step_timeout, Duration::from_secs);
                    let step = RunStep {
                        index,
                        total,
                        command,
                        timeout,
                        secrets: run_step_secrets(&template, index, secrets.as_deref()),
                    };
                    self.run_step(state, &gates, &template, &worktree, &*workspace, &step)
                        .await?;
                }
                Step::Agent {
                    role,
                    task,
                    model,
                    max_rounds,
                } => {
                    let place = AgentPlace {
                        gates: &gates,
                        created: &created,
                        template: &template,
                        worktree: &worktree,
                        workspace: &*workspace,
                    };
                    let step = AgentStep {
                        index,
                        total,
                        role: *role,
                        task: task.as_deref(),
                        model: model.as_deref(),
                        max_rounds: *max_rounds,
                    };
                    self.agent_step(state, &place, &step).await?;
                }
            }
        }
        if state.status.is_terminal() {
            if state.status == MissionStatus::Cancelled {
                self.remove_workspace(state).await;
            }
            return Ok(());
        }
        if state.status.is_parked() {
            return Ok(()); // parked at a command gate
        }
        let place = AgentPlace {
            gates: &gates,
            created: &created,
            template: &template,
            worktree: &worktree,
            workspace: &*workspace,
        };
        if !self.accept(state, &place).await? {
            return Ok(());
        }
        self.publish(state, &gates, &created, &template, &worktree)
            .await
    }

    fn workspace_path(&self, id: &str) -> PathBuf {
        self.cfg.workspaces_dir.join(id)
    }

    /// The mission's own HOME (local runtimes): beside its worktree, hidden from others.
    fn home_path(&self, id: &str) -> PathBuf {
        self.cfg.workspaces_dir.join(format!("{id}.home"))
    }

    /// flightdeck's data directory, hidden from sandboxed commands (other missions'
    /// worktrees, artifacts, the store). A replay hides the recording's.
    fn data_dir(&self) -> PathBuf {
        match &self.cfg.replay {
            Some(replay) => replay.hidden.clone(),
            None => self
                .cfg
                .workspaces_dir
                .parent()
                .map_or_else(|| self.cfg.workspaces_dir.clone(), Path::to_path_buf),
        }
    }

    /// `NAME=value` of the named secrets, for one command. Checked at creation; a secret
    /// that became unreadable since (a resume in another shell) stops the mission here.
    pub(crate) fn secret_env(
        &self,
        names: &[String],
    ) -> Result<Vec<(String, String)>, EngineError> {
        // A replay gives no secrets (re-executed commands run without them).
        if self.cfg.replay.is_some() {
            return Ok(Vec::new());
        }
        names
            .iter()
            .map(|name| match self.cfg.workspace.secret(name) {
                Ok(value) => Ok((name.clone(), value.to_string())),
                Err(why) => Err(EngineError::SecretMissing {
                    template: "the mission's template".into(),
                    name: name.clone(),
                    why,
                }),
            })
            .collect()
    }

    async fn ensure_workspace(
        &self,
        state: &mut MissionState,
        created: &MissionCreated,
        template: &Template,
        resuming: bool,
    ) -> Result<(Worktree, Box<dyn Workspace>), EngineError> {
        let runtime = template.workspace.runtime;
        if state.workspace.is_none() && state.status != MissionStatus::Provisioning {
            let provisioning = WorkspaceProvisioning {
                runtime: runtime.as_str().to_string(),
            };
            self.append(state, vec![EventKind::WorkspaceProvisioning(provisioning)])
                .await?;
        }
        let fresh = state.workspace.is_none();
        let provisioned = self
            .provision(
                &state.id,
                Path::new(&created.repo),
                &created.base_commit,
                &template.workspace,
                fresh,
            )
            .await?;
        let Provisioned {
            worktree,
            workspace,
            event,
            drift,
        } = provisioned;
        if fresh {
            let mut events = vec![EventKind::WorkspaceProvisioned(event)];
            events.extend(drift.iter().cloned().map(EventKind::WorkspaceDrift));
            self.append(state, events).await?;
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
                self.finish(state, MissionStatus::Failed, Some(error), None)
                    .await?;
            }
        } else if resuming {
            // Whatever an interrupted command did is not in the timeline: throw it away.
            worktree.restore(state.last_tree.as_deref())?;
        }
        Ok((worktree, workspace))
    }

    /// Makes (or finds again) workspace `id`: the worktree of `base_commit`, its caches, and
    /// the runtime its commands run in; with `probe`, the toolchain is probed and the
    /// `workspace.provisioned` event filled. Missions and `flightdeck workspace up` both
    /// come here.
    pub async fn provision(
        &self,
        id: &str,
        repo: &Path,
        base_commit: &str,
        spec: &WorkspaceSpec,
        probe: bool,
    ) -> Result<Provisioned, EngineError> {
        let runtime = spec.runtime;
        let path = self.workspace_path(id);
        std::fs::create_dir_all(&self.cfg.workspaces_dir).map_err(|source| {
            flightdeck_workspace::WorkspaceError::Io {
                path: self.cfg.workspaces_dir.clone(),
                source,
            }
        })?;
        let worktree = Worktree::create(repo, &path, base_commit)?;
        if let Some(replay) = &self.cfg.replay {
            replay.set_worktree(&worktree);
        }
        let caches_dir = self.data_dir().join("caches");
        let caches =
            flightdeck_workspace::caches::for_repo(&path, &caches_dir).map_err(|source| {
                flightdeck_workspace::WorkspaceError::Io {
                    path: caches_dir.clone(),
                    source,
                }
            })?;
        let mut event = WorkspaceProvisioned {
            runtime: runtime.as_str().to_string(),
            network: spec.network.as_str().to_string(),
            path: path.display().to_string(),
            caches: caches
                .iter()
                .map(|c| {
                    let key = CacheKey {
                        key: c.key.clone(),
                        lockfiles: c.lockfiles.clone(),
                    };
                    (c.ecosystem.clone(), key)
                })
                .collect(),
            secrets: spec.secrets.clone(),
            ..WorkspaceProvisioned::default()
        };
        let limits = Limits {
            memory_mb: spec.memory_mb,
            max_processes: spec.max_processes,
        };
        let workspace: Box<dyn Workspace> = match runtime {
            Runtime::Local | Runtime::LocalUnsandboxed => {
                let sandbox = match runtime {
                    Runtime::Local => Sandbox::bubblewrap()?,
                    _ => Sandbox::None,
                };
                let layout = SandboxLayout::for_mission(
                    &self.home_path(id),
                    &self.data_dir(),
                    Some(repo),
                    &self.cfg.workspace.hidden_files,
                    &caches,
                )?;
                let cgroups = if limits.is_empty() {
                    Cgroups::Unavailable("no limits asked for".into())
                } else {
                    Cgroups::detect()
                };
                let local = LocalWorkspace::new(path.clone(), sandbox)
                    .with_layout(layout)
                    .with_limits(limits, cgroups);
                event.limits = Some(WorkspaceLimits {
                    memory_mb: limits.memory_mb,
                    max_processes: limits.max_processes,
                    enforced: local.limits_enforcement(),
                });
                Box::new(local)
            }
            Runtime::Docker => {
                let name = self.container_name(id);
                // The definition is read from the base commit's files: on a resume the worktree
                // holds what the agent wrote, which must not decide what runs with secrets.
                let base_root = if probe {
                    None
                } else {
                    Some(self.base_checkout(id, repo, base_commit)?)
                };
                let definition_root = base_root.as_ref().map_or(path.as_path(), |w| w.path());
                let plan = crate::container::plan(
                    &name,
                    id,
                    definition_root,
                    &path,
                    &self.installation(),
                    spec,
                    &caches,
                );
                if let Some(base) = &base_root {
                    let _ = Worktree::remove(repo, base.path());
                }
                let plan = plan?;
                event.image = Some(plan.image.clone());
                event.container = Some(name.clone());
                event.setup = plan.setup.iter().map(|c| c.name.clone()).collect();
                event.limits = Some(WorkspaceLimits {
                    memory_mb: limits.memory_mb,
                    max_processes: limits.max_processes,
                    enforced: "container".into(),
                });
                event.runtime = "docker".into();
                event.sandbox = "container".into();
                if self.replaying_verify() {
                    // Nothing executes in a verifying replay: no container, the recorded image,
                    // and the worktree as the recorded setup commands left it.
                    let recorded = self
                        .cfg
                        .replay
                        .as_ref()
                        .and_then(|r| r.recorded_provisioned());
                    event.image_digest = recorded.as_ref().and_then(|p| p.image_digest.clone());
                    if let Some(tree) = recorded.and_then(|p| p.base_tree).filter(|_| probe) {
                        worktree.restore(Some(&tree))?;
                    }
                    let standin = LocalWorkspace::new(path.clone(), Sandbox::None);
                    return self
                        .finish_provision(id, worktree, Box::new(standin), event, probe)
                        .await;
                }
                let engine = DockerEngine::connect()
                    .await
                    .map_err(WorkspaceError::from)?;
                let attached = if probe {
                    None
                } else {
                    match engine.attach(&name).await {
                        Ok(docker) => Some(docker),
                        Err(flightdeck_workspace::docker::DockerError::ContainerMissing(_)) => None,
                        Err(e) => return Err(WorkspaceError::from(e).into()),
                    }
                };
                let docker = match attached {
                    Some(docker) => docker,
                    None => {
                        // A container left by a provision that died half way is not ours to
                        // trust: start again.
                        let _ = engine.remove_container(&name).await;
                        let (docker, image) = engine
                            .provision(plan.spec.clone())
                            .await
                            .map_err(WorkspaceError::from)?;
                        event.image_digest = Some(image.digest);
                        if let Err(e) = self
                            .run_setup(&docker, spec, &plan.setup, &plan.prelude)
                            .await
                        {
                            // Nothing is recorded of a container whose setup failed: remove it.
                            let _ = docker.remove().await;
                            return Err(e);
                        }
                        docker
                    }
                };
                if plan.prelude.is_empty() {
                    Box::new(docker)
                } else {
                    Box::new(crate::container::WithPrelude {
                        inner: docker,
                        prelude: plan.prelude.clone(),
                    })
                }
            }
        };
        if event.runtime != "docker" {
            event.runtime = workspace.runtime().to_string();
            event.sandbox = workspace.sandbox().to_string();
        }
        self.finish_provision(id, worktree, workspace, event, probe)
            .await
    }

    /// The toolchain probe and the base tree, for a fresh workspace.
    async fn finish_provision(
        &self,
        id: &str,
        worktree: Worktree,
        workspace: Box<dyn Workspace>,
        mut event: WorkspaceProvisioned,
        probe: bool,
    ) -> Result<Provisioned, EngineError> {
        let path = worktree.path().to_path_buf();
        let mut drift = Vec::new();
        if probe {
            event.base_tree = Some(worktree.snapshot()?);
            drift = self
                .probe_toolchain(id, &path, &*workspace, &mut event)
                .await?;
        }
        Ok(Provisioned {
            worktree,
            workspace,
            event,
            drift,
        })
    }

    /// A throwaway checkout of the base commit beside workspace `id`, to read the
    /// repository's own definitions from.
    fn base_checkout(
        &self,
        id: &str,
        repo: &Path,
        base_commit: &str,
    ) -> Result<Worktree, EngineError> {
        let path = self.cfg.workspaces_dir.join(format!("{id}.base"));
        Ok(Worktree::create(repo, &path, base_commit)?)
    }

    /// The container of workspace `id`; a replay's has a name of its own, so it never
    /// touches the recorded mission's.
    pub fn container_name(&self, id: &str) -> String {
        match &self.cfg.replay {
            Some(_) => format!("flightdeck-replay-{}-{id}", std::process::id()),
            None => crate::container::container_name(id),
        }
    }

    /// A digest of the data directory: containers of this installation carry it.
    pub fn installation(&self) -> String {
        // The same directory however it is named (a symlink, `..`).
        let dir = std::fs::canonicalize(self.data_dir()).unwrap_or_else(|_| self.data_dir());
        let digest = flightdeck_core::Digest::of(dir.display().to_string().as_bytes());
        digest.as_str().trim_start_matches("sha256:")[..12].to_string()
    }

    /// Whether this engine replays a recording without executing anything.
    fn replaying_verify(&self) -> bool {
        self.cfg
            .replay
            .as_ref()
            .is_some_and(|r| r.mode() == crate::ReplayMode::Verify)
    }

    /// The devcontainer's setup commands, in order, with the workspace's secrets; with
    /// `network = "setup"` the container has the network for them and loses it after.
    async fn run_setup(
        &self,
        docker: &DockerWorkspace,
        spec: &WorkspaceSpec,
        setup: &[crate::container::SetupCommand],
        prelude: &str,
    ) -> Result<(), EngineError> {
        let env = self.secret_env(&spec.secrets)?;
        for command in setup {
            let outcome = docker
                .exec(&CommandSpec {
                    command: format!("{prelude}{}", command.line),
                    timeout: self.cfg.default_step_timeout,
                    env: env.clone(),
                    network: spec.network != Network::None,
                })
                .await?;
            if !outcome.success() {
                let why = if outcome.timed_out {
                    "it timed out".to_string()
                } else {
                    format!(
                        "it exited with {}\n{}",
                        outcome
                            .exit_code
                            .map_or("a signal".into(), |c| c.to_string()),
                        String::from_utf8_lossy(&self.redact(outcome.tail(20).as_bytes()))
                    )
                };
                return Err(EngineError::SetupFailed {
                    name: command.name.clone(),
                    command: String::from_utf8_lossy(&self.redact(command.line.as_bytes()))
                        .into_owned(),
                    why,
                });
            }
        }
        if spec.network == Network::Setup && !setup.is_empty() {
            docker
                .set_network(false)
                .await
                .map_err(WorkspaceError::from)?;
        }
        Ok(())
    }

    /// Reads the repository's toolchain pins and probes what the workspace has, filling
    /// `provisioned.toolchain`; the drift, one event per mismatch. A replay takes what the
    /// recording found (the host replaying may have other versions; that is not the
    /// mission's behaviour).
    async fn probe_toolchain(
        &self,
        id: &str,
        root: &Path,
        workspace: &dyn Workspace,
        provisioned: &mut WorkspaceProvisioned,
    ) -> Result<Vec<WorkspaceDrift>, EngineError> {
        use flightdeck_workspace::toolchain;
        let statuses = if let Some(recorded) = self
            .cfg
            .replay
            .as_ref()
            .and_then(|r| r.recorded_provisioned())
        {
            provisioned.toolchain = recorded.toolchain;
            provisioned.limits = recorded.limits;
            provisioned
                .toolchain
                .iter()
                .map(|(tool, entry)| toolchain::ToolStatus {
                    tool: tool.clone(),
                    pinned: entry.pinned.clone().unwrap_or_default(),
                    found: entry.found.clone(),
                    source: entry.source.clone().unwrap_or_default(),
                    ok: entry.ok,
                })
                .collect()
        } else {
            let pins = toolchain::read_pins(root).map_err(|e| {
                EngineError::WorkspaceDefinition(format!(
                    "workspace {id}: {e} (hint: fix or remove the pin file; flightdeck reads it to record the toolchain)"
                ))
            })?;
            if pins.is_empty() {
                return Ok(Vec::new());
            }
            let tools: Vec<&str> = pins.iter().map(|p| p.tool.as_str()).collect();
            let probe = CommandSpec {
                command: toolchain::probe_script(&tools),
                timeout: Duration::from_secs(60),
                env: Vec::new(),
                network: false,
            };
            let outcome = workspace.exec(&probe).await?;
            let found = toolchain::parse_probe(&String::from_utf8_lossy(&outcome.output));
            toolchain::check(&pins, &found)
        };
        let mut drift = Vec::new();
        for status in statuses {
            if !status.ok {
                drift.push(WorkspaceDrift {
                    tool: status.tool.clone(),
                    pinned: status.pinned.clone(),
                    found: status.found.clone().unwrap_or_else(|| "(missing)".into()),
                });
            }
            provisioned.toolchain.insert(
                status.tool,
                ToolchainEntry {
                    pinned: Some(status.pinned),
                    found: status.found,
                    source: Some(status.source),
                    ok: status.ok,
                },
            );
        }
        Ok(drift)
    }

    /// Runs one `run` step: judged by the policy first (`policy.decided` is recorded before
    /// anything executes), then executed unless denied or waiting for an approval.
    async fn run_step(
        &self,
        state: &mut MissionState,
        gates: &Gates,
        template: &Template,
        worktree: &Worktree,
        workspace: &dyn Workspace,
        step: &RunStep<'_>,
    ) -> Result<(), EngineError> {
        let RunStep { index, command, .. } = *step;
        // A call of this step that waited for an approval, now granted, runs as requested,
        // if the worktree is still exactly what the approvers saw.
        if let Some((call_id, approved_diff)) = state.approved_waiting(state.calls_of_step(index)) {
            if CurrentDiff::read(worktree)?.hash() == approved_diff {
                return self
                    .execute_call(state, template, worktree, workspace, step, call_id)
                    .await;
            }
        }
        let call_id = state.next_attempt_id(&step_call_id(index));
        // A template's command is a tool call too: it must fit the budget before it runs.
        let now = self.cfg.clock.now_ms();
        if let Some(exceeded) = flightdeck_core::budget::check_tool_call(state, &call_id, now) {
            self.append(state, vec![EventKind::BudgetExceeded(exceeded)])
                .await?;
            return Ok(());
        }
        let mut events = Vec::new();
        if !state.steps.contains_key(&index) {
            events.push(EventKind::StepStarted(StepStarted {
                index,
                kind: StepKind::Run,
                description: command.to_string(),
                role: None,
                system_prompt: None,
                models: Vec::new(),
            }));
        }
        events.push(EventKind::ToolRequested(ToolRequested {
            call_id: call_id.clone(),
            tool: "run".into(),
            args: serde_json::json!({ "command": command }),
            actor: "template".into(),
        }));
        let decision = gates.policy.decide(&Action::Command { command });
        match decision.verdict {
            Verdict::Allow => {
                events.push(EventKind::PolicyDecided(decided_event(
                    &call_id, &decision, "command", None,
                )?));
            }
            Verdict::Deny => {
                let decided = decided_event(&call_id, &decision, "command", None)?;
                let error = denied_error(
                    &format!("step {}/{} (`{command}`)", index + 1, step.total),
                    &decided,
                );
                events.push(EventKind::PolicyDecided(decided));
                events.push(EventKind::StepFinished(StepFinished {
                    index,
                    kind: StepKind::Run,
                    status: StepStatus::Failed,
                }));
                events.push(EventKind::MissionFinished(MissionFinished {
                    status: MissionStatus::Failed,
                    error: Some(error),
                    summary: None,
                }));
                self.append(state, events).await?;
                return Ok(());
            }
            Verdict::Approve => {
                let diff = CurrentDiff::read(worktree)?;
                let diff_hash = diff.hash();
                events.push(EventKind::PolicyDecided(decided_event(
                    &call_id,
                    &decision,
                    "command",
                    Some(diff_hash.clone()),
                )?));
                // An approval of this step's command on this very worktree state, granted
                // to a call a crash interrupted before it completed, still covers it.
                if !interrupted_approved_call(state, index, command, &diff_hash) {
                    let request = self
                        .approval_request(
                            state,
                            gates,
                            &template.title(),
                            "command",
                            &call_id,
                            Some(command),
                            &decision,
                            &diff,
                            Vec::new(),
                        )
                        .await?;
                    events.push(EventKind::ApprovalRequested(request));
                    self.append(state, events).await?;
                    return Ok(());
                }
            }
        }
        self.append(state, events).await?;
        self.execute_call(state, template, worktree, workspace, step, call_id)
            .await
    }

    /// Executes a requested, allowed call of a `run` step and records its result.
    async fn execute_call(
        &self,
        state: &mut MissionState,
        template: &Template,
        worktree: &Worktree,
        workspace: &dyn Workspace,
        step: &RunStep<'_>,
        call_id: String,
    ) -> Result<(), EngineError> {
        let RunStep {
            index,
            total,
            command,
            timeout,
            secrets,
        } = *step;
        let mut env = vec![("FLIGHTDECK_MISSION".into(), state.id.clone())];
        env.extend(self.secret_env(secrets)?);
        let spec = CommandSpec {
            command: command.to_string(),
            timeout: self.command_timeout(state, timeout),
            env,
            network: template.workspace.network == Network::On,
        };
        let Some(outcome) = self
            .exec_watching(state, workspace, &call_id, &spec)
            .await?
        else {
            return Ok(()); // cancelled while it ran; `state` holds the cancellation
        };
        let output = self.put_artifact(&outcome.output).await?;
        // A worktree git cannot record (a nested repository with no commit, say) fails the
        // step: nothing unrecorded may reach a later step or the published change.
        let (tree, snapshot_error) = match worktree.snapshot() {
            Ok(tree) => (Some(tree), None),
            Err(e) => (None, Some(e)),
        };
        let ok = outcome.success() && snapshot_error.is_none();
        let mut events = vec![
            EventKind::ToolCompleted(ToolCompleted {
                call_id,
                ok,
                exit_code: outcome.exit_code,
                output,
                duration_ms: u64::try_from(outcome.duration.as_millis()).unwrap_or(u64::MAX),
                timed_out: outcome.timed_out,
                tree,
            }),
            EventKind::StepFinished(StepFinished {
                index,
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
                Some(e) if outcome.success() => MissionError {
                    kind: "workspace_unrecordable".into(),
                    message: format!(
                        "step {}/{total} (`{command}`) left a worktree git cannot record: {e}",
                        index + 1
                    ),
                },
                _ => step_failure(index, total, command, &outcome, timeout),
            };
            events.push(EventKind::MissionFinished(MissionFinished {
                status: MissionStatus::Failed,
                error: Some(error),
                summary: None,
            }));
        }
        self.append(state, events).await?;
        Ok(())
    }

    /// Runs the command, reporting progress and watching for a cancellation recorded by
    /// another process. `None` when the mission was cancelled (the command is killed).
    pub(crate) async fn exec_watching(
        &self,
        state: &mut MissionState,
        workspace: &dyn Workspace,
        call_id: &str,
        spec: &CommandSpec,
    ) -> Result<Option<CommandOutcome>, EngineError> {
        // The watch below compares `state.events` with the store: nothing may be staged.
        self.flush(state).await?;
        if let Some(replay) = &self.cfg.replay {
            return replay.command(call_id, workspace, spec).await.map(Some);
        }
        let exec = workspace.exec(spec);
        tokio::pin!(exec);
        let started = Instant::now();
        let mut ticker = tokio::time::interval(WATCH_EVERY);
        ticker.tick().await;
        loop {
            tokio::select! {
                outcome = &mut exec => return Ok(Some(outcome?)),
                _ = ticker.tick() => {
                    self.cfg.observer.still_running(call_id, &spec.command, started.elapsed());
                    let moved_on = self.cfg.store.mission(&state.id).await?.is_some_and(|row| row.last_seq != state.events);
                    if moved_on && !self.adopt_budget_raises(state).await? {
                        let latest = self.load(&state.id).await?;
                        if latest.status == MissionStatus::Cancelled {
                            *state = latest;
                            return Ok(None); // dropping `exec` kills the command
                        }
                        return Err(EngineError::Raced { id: state.id.clone() });
                    }
                }
            }
        }
    }

    /// The publish gate, then the commit on the mission branch, the patch and the PR
    /// description. The gate judges the classified diff before anything is committed.
    async fn publish(
        &self,
        state: &mut MissionState,
        gates: &Gates,
        created: &MissionCreated,
        template: &Template,
        worktree: &Worktree,
    ) -> Result<(), EngineError> {
        let current = CurrentDiff::read(worktree)?;
        if current.files.is_empty() {
            let summary =
                "no changes: the steps left the repository as it was, so nothing was published"
                    .to_string();
            self.finish(state, MissionStatus::Succeeded, None, Some(summary))
                .await?;
            self.remove_workspace(state).await;
            return Ok(());
        }
        let mut events = Vec::new();
        if !self
            .publish_gate(state, gates, template, &current, &mut events)
            .await?
        {
            return Ok(());
        }
        let tree = current.tree.clone();
        let files: Vec<FileChange> = current
            .files
            .iter()
            .map(|f| FileChange {
                path: f.path.clone(),
                status: f.status.clone(),
                added: f.added,
                removed: f.removed,
            })
            .collect();
        let id = MissionId::parse(&state.id).unwrap_or_else(|| MissionId::from_parts(0, 0));
        let branch = id.branch();
        let title = template.title();
        let message = commit_message(
            &title,
            template.goal.as_deref(),
            &state.id,
            &created.requested_by,
        );
        // The commit's dates are the last recorded time, so the same timeline makes the same
        // commit (and a resumed publish finds the branch already right).
        let (commit, patch) = match &self.cfg.replay {
            // A replay commits nothing: it takes what the recording published.
            Some(replay) => replay.published(),
            None => {
                let commit = worktree.commit_to_branch(
                    &tree,
                    &branch,
                    &message,
                    state.last_at_ms.div_euclid(1000),
                )?;
                let patch = worktree.format_patch(&commit)?;
                let patch = self.put_artifact(patch.as_bytes()).await?;
                (commit, patch)
            }
        };
        // The description reports the publish decision too, which is appended with it.
        let mut preview = state.clone();
        for kind in &events {
            let _ = preview.apply(preview.events + 1, preview.last_at_ms, kind);
        }
        let plan = self.plan_of(state).await?;
        let classes: BTreeMap<String, Vec<String>> = files
            .iter()
            .map(|f| {
                let classes = gates.policy.classes_of(&f.path);
                (
                    f.path.clone(),
                    classes.into_iter().map(str::to_string).collect(),
                )
            })
            .collect();
        let description = render_pr_description(&PrContext {
            state: &preview,
            template,
            title: &title,
            branch: &branch,
            commit: &commit,
            files: &files,
            plan: plan.as_deref(),
            classes: &classes,
        });
        let pr_description = self.put_artifact(description.as_bytes()).await?;
        let summary = format!("published {} file(s) on branch {branch}", files.len());
        events.extend([
            EventKind::ChangePublished(ChangePublished {
                branch,
                commit,
                patch,
                pr_description,
                pr_url: None,
                files,
            }),
            EventKind::MissionFinished(MissionFinished {
                status: MissionStatus::Succeeded,
                error: None,
                summary: Some(summary),
            }),
        ]);
        self.append(state, events).await?;
        self.remove_workspace(state).await;
        Ok(())
    }

    /// Judges the diff for publishing. True when publishing may go on, with the decision
    /// (if not recorded before for this diff) left in `events` to be appended with the
    /// publication; false when the mission was denied or parked (already recorded).
    async fn publish_gate(
        &self,
        state: &mut MissionState,
        gates: &Gates,
        template: &Template,
        diff: &CurrentDiff,
        events: &mut Vec<EventKind>,
    ) -> Result<bool, EngineError> {
        let diff_hash = diff.hash();
        let recorded = state
            .decisions
            .iter()
            .rev()
            .find(|d| d.subject == PUBLISH_GATE && d.diff_hash.as_deref() == Some(&diff_hash))
            .cloned();
        let changed = diff.changed_files();
        let decision = publish_decision(&gates.policy, &changed);
        let decided = match recorded {
            Some(decided) => decided,
            None => {
                let decided =
                    decided_event(PUBLISH_GATE, &decision, "publish", Some(diff_hash.clone()))?;
                events.push(EventKind::PolicyDecided(decided.clone()));
                decided
            }
        };
        match decided.decision.as_str() {
            "allow" => Ok(true),
            "deny" => {
                let error = denied_error("publishing the change", &decided);
                events.push(EventKind::MissionFinished(MissionFinished {
                    status: MissionStatus::Failed,
                    error: Some(error),
                    summary: None,
                }));
                self.append(state, std::mem::take(events)).await?;
                Ok(false)
            }
            _ => {
                if state.granted_approval(PUBLISH_GATE, &diff_hash).is_some() {
                    return Ok(true);
                }
                let waiting = state
                    .pending_approvals()
                    .any(|a| a.request.gate == PUBLISH_GATE && a.request.diff_hash == diff_hash);
                if !waiting {
                    let request = self
                        .approval_request(
                            state,
                            gates,
                            &template.title(),
                            PUBLISH_GATE,
                            PUBLISH_GATE,
                            None,
                            &decision,
                            diff,
                            decision.triggering_paths(&changed),
                        )
                        .await?;
                    events.push(EventKind::ApprovalRequested(request));
                }
                if !events.is_empty() {
                    self.append(state, std::mem::take(events)).await?;
                }
                Ok(false)
            }
        }
    }

    async fn finish(
        &self,
        state: &mut MissionState,
        status: MissionStatus,
        error: Option<MissionError>,
        summary: Option<String>,
    ) -> Result<(), EngineError> {
        let finished = EventKind::MissionFinished(MissionFinished {
            status,
            error,
            summary,
        });
        self.append(state, vec![finished]).await?;
        Ok(())
    }

    /// Removes the mission's worktree, its HOME and its container (caches stay: they are
    /// shared). Called when a mission publishes or is cancelled; a failed mission keeps its
    /// workspace for inspection until `flightdeck workspace gc`.
    async fn remove_workspace(&self, state: &MissionState) {
        let repo = state.created.as_ref().map(|c| PathBuf::from(&c.repo));
        if state
            .workspace
            .as_ref()
            .is_some_and(|w| w.runtime == "docker")
            && !self.replaying_verify()
        {
            self.remove_container(&state.id).await;
        }
        self.remove_workspace_files(&state.id, repo.as_deref())
            .await;
    }

    /// Removes workspace `id`'s container, if there is one; best effort.
    pub async fn remove_container(&self, id: &str) {
        if let Ok(engine) = DockerEngine::connect().await {
            let _ = engine.remove_container(&self.container_name(id)).await;
        }
    }

    /// Removes workspace `id`'s worktree (through `repo`'s git when known) and its HOME;
    /// best effort, for cleanup paths that must not fail the mission.
    pub async fn remove_workspace_files(&self, id: &str, repo: Option<&Path>) {
        let home = self.home_path(id);
        if home.exists() {
            let _ = std::fs::remove_dir_all(&home);
        }
        let path = self.workspace_path(id);
        if !path.exists() {
            return;
        }
        match repo {
            Some(repo) => {
                let _ = Worktree::remove(repo, &path);
            }
            None => {
                let _ = std::fs::remove_dir_all(&path);
            }
        }
    }

    /// A command's timeout, cut to what remains of the wall-time budget, so no command can
    /// run the mission past it.
    pub(crate) fn command_timeout(&self, state: &MissionState, timeout: Duration) -> Duration {
        let now = self.cfg.clock.now_ms();
        match state.budget_remaining(flightdeck_core::budget::Dimension::WallSeconds, now) {
            Some(remaining) => timeout.min(Duration::from_secs_f64(remaining.max(1.0))),
            None => timeout,
        }
    }

    /// How long call `id` took: measured, or in a replay, as recorded.
    pub(crate) fn call_duration_ms(&self, id: &str, elapsed: Duration) -> u64 {
        self.cfg
            .replay
            .as_ref()
            .and_then(|r| r.duration_ms(id))
            .unwrap_or_else(|| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
    }

    /// `bytes` with the mission's secrets masked, as everything stored is.
    pub(crate) fn redact<'a>(&self, bytes: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        self.cfg.secrets.redact(bytes)
    }

    /// Stores an artifact. Every artifact passes here, and is redacted here.
    pub(crate) async fn put_artifact(&self, bytes: &[u8]) -> Result<Digest, EngineError> {
        let bytes = self.cfg.secrets.redact(bytes);
        Ok(self.cfg.artifacts.put(&bytes).await?)
    }

    /// Appends events to the mission's timeline after checking them against its state
    /// machine, with the projection computed from the new state. Every event passes here.
    pub(crate) async fn append(
        &self,
        state: &mut MissionState,
        kinds: Vec<EventKind>,
    ) -> Result<Vec<StoredEvent>, EngineError> {
        // A budget raised by someone else while we work is folded in and the append retried;
        // any other foreign append means another writer: we stop.
        for _ in 0..4 {
            let expected = stored_seq(state);
            let staged = state.unstored.len();
            match self.append_once(state, &kinds).await {
                Err(EngineError::Raced { .. }) => {
                    // `state` now holds the store's view; what did the others append?
                    if state.status == MissionStatus::Cancelled {
                        return Err(EngineError::Cancelled {
                            id: state.id.clone(),
                        });
                    }
                    if state.unstored.len() != staged {
                        // Staged events no longer follow what was stored: they are dropped,
                        // as in a crash, and this driver stops.
                        return Err(EngineError::Raced {
                            id: state.id.clone(),
                        });
                    }
                    let foreign = self.cfg.store.events(&state.id, expected).await?;
                    if foreign.is_empty()
                        || !foreign.iter().all(|e| e.event_type == "budget.raised")
                    {
                        return Err(EngineError::Raced {
                            id: state.id.clone(),
                        });
                    }
                }
                other => return other,
            }
        }
        Err(EngineError::Raced {
            id: state.id.clone(),
        })
    }

    /// Folds `kinds` into `state` now and stores them with the next append, in its commit
    /// (see `MissionState::unstored`). Only for results whose loss in a crash is the same as
    /// a crash during the call: the call counts as interrupted and is made again.
    pub(crate) async fn stage(
        &self,
        state: &mut MissionState,
        kinds: Vec<EventKind>,
    ) -> Result<(), EngineError> {
        let at_ms = self.cfg.clock.now_ms().max(state.last_at_ms);
        for kind in kinds {
            if let Err(source) = state.apply(state.events + 1, at_ms, &kind) {
                let id = state.id.clone();
                self.reload_keeping_staged(state).await?;
                return Err(EngineError::Corrupt { id, source });
            }
            state.unstored.push(UnstoredEvent { at_ms, kind });
        }
        Ok(())
    }

    /// Stores what is staged, if anything: before `state.events` is compared with the store,
    /// and when a drive ends.
    pub(crate) async fn flush(&self, state: &mut MissionState) -> Result<(), EngineError> {
        if state.unstored.is_empty() {
            return Ok(());
        }
        self.append(state, Vec::new()).await.map(|_| ())
    }

    /// Reads `state` back from the store, with its staged events folded on top again if they
    /// still follow (after a budget raise, say); otherwise they are dropped.
    async fn reload_keeping_staged(&self, state: &mut MissionState) -> Result<(), EngineError> {
        let mut fresh = self.load(&state.id).await?;
        let staged = std::mem::take(&mut state.unstored);
        if fresh.status.is_terminal() {
            // Cancelled meanwhile, say: nothing more goes into this timeline.
            *state = fresh;
            return Ok(());
        }
        for event in staged {
            let at_ms = event.at_ms.max(fresh.last_at_ms);
            if fresh.apply(fresh.events + 1, at_ms, &event.kind).is_err() {
                *state = self.load(&state.id).await?;
                return Ok(());
            }
            fresh.unstored.push(UnstoredEvent {
                at_ms,
                kind: event.kind,
            });
        }
        *state = fresh;
        Ok(())
    }

    /// One attempt. The events are folded into `state` in place (cloning a long mission's
    /// state for every append would make each step cost more than the one before); if they
    /// do not fold or the store refuses them, `state` is read back from the store.
    async fn append_once(
        &self,
        state: &mut MissionState,
        kinds: &[EventKind],
    ) -> Result<Vec<StoredEvent>, EngineError> {
        // Time never runs backwards within a timeline, whatever the machine's clock does.
        let at_ms = self.cfg.clock.now_ms().max(state.last_at_ms);
        let expected_seq = stored_seq(state);
        // Staged events go first, in the same commit.
        let mut events = Vec::with_capacity(state.unstored.len() + kinds.len());
        for staged in &state.unstored {
            events.push(NewEvent {
                at_ms: staged.at_ms,
                event_type: staged.kind.type_name().to_string(),
                data: self.cfg.secrets.redact_json(staged.kind.data()),
            });
        }
        for kind in kinds {
            if let Err(source) = state.apply(state.events + 1, at_ms, kind) {
                let id = state.id.clone();
                self.reload_keeping_staged(state).await?;
                return Err(EngineError::Corrupt { id, source });
            }
            events.push(NewEvent {
                at_ms,
                event_type: kind.type_name().to_string(),
                data: self.cfg.secrets.redact_json(kind.data()),
            });
        }
        let projection = Projection {
            status: state.status.as_str().to_string(),
            template: state
                .created
                .as_ref()
                .map(|c| c.template.clone())
                .unwrap_or_default(),
            // A replay's store keeps no projection: the summary is not worth computing.
            summary: if self.cfg.replay.is_some() {
                serde_json::Value::Null
            } else {
                // The summary quotes a failed step's output in its error: masked like the
                // events (only that text, so the summary is not serialized twice per append).
                let mut summary = state.summary();
                if let Some(message) = summary.pointer_mut("/error/message") {
                    *message = self.cfg.secrets.redact_json(message.take());
                }
                summary
            },
        };
        let request = AppendRequest {
            mission: state.id.clone(),
            expected_seq,
            events,
            projection,
        };
        let stored = match self.cfg.store.append(request).await {
            Ok(stored) => stored,
            Err(e) => {
                let id = state.id.clone();
                self.reload_keeping_staged(state).await?;
                return Err(match e {
                    StoreError::Conflict { .. } => EngineError::Raced { id },
                    other => EngineError::Store(other),
                });
            }
        };
        state.unstored.clear();
        if let Some(last) = stored.last() {
            state.head_hash = last.hash.clone();
        }
        for event in &stored {
            self.cfg.observer.event(event);
        }
        Ok(stored)
    }
}

/// The seq of the last stored event: what `state` folded, less what it only staged.
fn stored_seq(state: &MissionState) -> u64 {
    state.events - state.unstored.len() as u64
}

/// The gate that judges a mission's diff before it is published.
const PUBLISH_GATE: &str = "publish";

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

/// The kind of mission failure a provisioning error is, when the repository's workspace
/// definition (not this machine's state) is at fault.
fn provisioning_failure(e: &EngineError) -> Option<&'static str> {
    use flightdeck_workspace::docker::DockerError;
    match e {
        EngineError::SetupFailed { .. } => Some("setup_failed"),
        EngineError::WorkspaceDefinition(_) => Some("workspace_invalid"),
        EngineError::Workspace(WorkspaceError::Container(
            DockerError::ImageMissing(_) | DockerError::Build { .. } | DockerError::Context { .. },
        )) => Some("workspace_invalid"),
        _ => None,
    }
}

/// A workspace made ready: its worktree, the runtime, and what is recorded about it.
pub struct Provisioned {
    pub worktree: Worktree,
    pub workspace: Box<dyn Workspace>,
    pub event: WorkspaceProvisioned,
    pub drift: Vec<WorkspaceDrift>,
}

/// A mission parked on approvals that are not all granted yet.
fn still_waiting(state: &MissionState) -> bool {
    state.status == MissionStatus::AwaitingApproval && state.pending_approvals().next().is_some()
}

/// Whether an approval granted to a call of step `index` for this very command and diff was
/// never used: its call was interrupted before it completed. Only then does it cover a
/// re-run; an approval is spent once its call completes, so the same command in a later step
/// asks again.
fn interrupted_approved_call(
    state: &MissionState,
    index: usize,
    command: &str,
    diff_hash: &str,
) -> bool {
    state.approvals_in_order().any(|approval| {
        approval.status == ApprovalStatus::Approved
            && approval.request.gate == "command"
            && approval.request.command.as_deref() == Some(command)
            && approval.request.diff_hash == diff_hash
            && is_call_of_step(&approval.request.subject, index)
            && state
                .tool_calls
                .get(&approval.request.subject)
                .is_some_and(|call| call.interrupted && call.completed.is_none())
    })
}

/// The publish gate's decision: the policy's publish decision on the classified diff, and
/// its `write` rules on every changed path (a `run` step's writes cannot be judged one by
/// one, so they are judged here, before anything is committed); the strictest wins.
fn publish_decision(policy: &Policy, changed: &[ChangedFile]) -> Decision {
    let publish = policy.decide(&Action::Publish { changes: changed });
    let mut decisions = vec![publish.clone()];
    for file in changed {
        for path in file.touched_paths() {
            let write = policy.decide(&Action::Write { path });
            if write.verdict != Verdict::Allow || !write.rule_ids.is_empty() {
                decisions.push(write);
            }
        }
    }
    Decision::strictest(decisions).unwrap_or(publish)
}

/// Checks a request without writing anything (see [`Engine::validate`]).
/// `replaying`: a replay sends nothing to remote models, so their keys may be unset.
fn check(
    request: &CreateMission,
    models: &ModelSettings,
    workspace: &crate::WorkspaceSettings,
    replaying: bool,
) -> Result<Checked, EngineError> {
    let policy = Policy::parse(&request.policy_source, &request.policy_file)?;
    let template = Template::parse(
        &request.template_name,
        &request.template_file,
        &request.template_source,
    )?;
    let rendered = template.render(&request.params, &request.id)?;
    // A replay runs no command for real (re-execution runs them without secrets).
    if !replaying {
        for name in &template.workspace.secrets {
            if let Err(why) = workspace.secret(name) {
                return Err(EngineError::SecretMissing {
                    template: request.template_file.clone(),
                    name: name.clone(),
                    why,
                });
            }
        }
    }
    match template.workspace.runtime {
        Runtime::Local => {
            Sandbox::bubblewrap()?;
        }
        Runtime::LocalUnsandboxed if !policy.allow_unsandboxed() => {
            return Err(EngineError::Unsupported(format!(
                "{}: workspace.runtime = \"local-unsandboxed\" is forbidden by the policy {} (allow_unsandboxed = false); run in the sandbox (runtime = \"local\"), or change the policy",
                request.template_file, request.policy_file
            )))
        }
        Runtime::LocalUnsandboxed => {}
        Runtime::Docker => {}
    }
    let repo = repo_root(&request.repo)
        .map_err(|_| EngineError::NotARepo(request.repo.display().to_string()))?;
    let base_commit = resolve_commit(
        &repo,
        request.base_commit.as_deref().unwrap_or(&request.base_ref),
    )?;
    let scripts = check_models(&rendered.template, &repo, models, replaying)?;
    Ok(Checked {
        template: rendered.template,
        params: rendered.params,
        repo,
        base_commit,
        scripts,
    })
}

fn step_failure(
    index: usize,
    total: usize,
    command: &str,
    outcome: &CommandOutcome,
    timeout: Duration,
) -> MissionError {
    let how = if outcome.timed_out {
        format!("timed out after {}s and was killed", timeout.as_secs())
    } else {
        match outcome.exit_code {
            Some(code) => format!("exited with {code}"),
            None => "was killed by a signal".to_string(),
        }
    };
    let tail = outcome.tail(20);
    let mut message = format!("step {}/{total} (`{command}`) {how}", index + 1);
    if !tail.is_empty() {
        message.push('\n');
        message.push_str(&tail);
    }
    MissionError {
        kind: "step_failed".into(),
        message,
    }
}

fn commit_message(title: &str, goal: Option<&str>, mission: &str, requested_by: &str) -> String {
    let mut message = format!("{title}\n\n");
    if let Some(goal) = goal.filter(|g| !g.trim().is_empty()) {
        message.push_str(goal.trim());
        message.push_str("\n\n");
    }
    message.push_str(&format!(
        "Flightdeck-Mission: {mission}\nRequested-by: {requested_by}\n"
    ));
    message
}
