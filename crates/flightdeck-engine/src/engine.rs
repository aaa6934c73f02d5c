//! The engine: a small façade over the mission log, the driver, the protocol and the ports.
//! It creates missions, drives them (one driver per mission, holding its lease), and takes
//! inputs from outside (votes, budget raises, cancels) to the mission's driver.

use std::collections::BTreeMap;
use std::path::PathBuf;

use flightdeck_core::event::*;
use flightdeck_core::template::{Runtime, Template};
use flightdeck_core::{Digest, EventKind, MissionId, MissionState, MissionStatus};
use flightdeck_policy::Policy;
use flightdeck_store::{AppendRequest, InputRow, InputState, NewEvent};
use flightdeck_workspace::{repo_root, resolve_commit, Sandbox};

use crate::config::EngineConfig;
use crate::driver::INBOX_POLL;
use crate::driver::{Applied, Driver, Stop};
use crate::error::EngineError;
use crate::inputs::{self, Foreign, Refusal, Vote};
use crate::log::{pin_input, MissionLog};
use crate::models::{check_models, ModelSettings};
use crate::place::Halt;
use crate::shared::Shared;

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
    /// The URL the repository was fetched from, without credentials (recorded so that a
    /// worker elsewhere can fetch it too).
    pub remote: Option<String>,
    /// Who asked, where, and for what, beyond the template (GitHub's issues and reviews).
    pub origin: MissionOrigin,
}

/// Where a mission request came from, when it says more than the template: recorded in
/// `mission.created` as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MissionOrigin {
    /// Replaces the template's goal.
    pub goal: Option<String>,
    pub source: Option<flightdeck_core::event::MissionSource>,
    /// The mission this one follows up.
    pub follows: Option<String>,
    pub github: Option<flightdeck_core::event::GitHubOrigin>,
}

impl MissionOrigin {
    /// The origin a recorded mission was created with (a replay asks for the same).
    pub fn of(created: &MissionCreated) -> MissionOrigin {
        MissionOrigin {
            goal: created.goal.clone(),
            source: created.source,
            follows: created.follows.clone(),
            github: created.github.as_deref().cloned(),
        }
    }

    /// Only where the request came from (the command line, the API).
    pub fn from_source(source: flightdeck_core::event::MissionSource) -> MissionOrigin {
        MissionOrigin {
            source: Some(source),
            ..MissionOrigin::default()
        }
    }
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
    pub(crate) shared: Shared,
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Engine {
        Engine {
            shared: Shared::new(cfg),
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.shared.cfg
    }

    /// This engine for a fleet's worker (`worker`, `serve`): a shutdown hands the missions
    /// it drives back ([`EngineConfig::hand_back_on_shutdown`]). Call before driving any.
    pub fn handing_back_on_shutdown(self) -> Engine {
        let mut cfg = (*self.shared.cfg).clone();
        cfg.hand_back_on_shutdown = true;
        Engine::new(cfg)
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

    /// Records a new mission (`mission.created`), queued: nothing runs yet, and any worker
    /// may claim it.
    pub async fn create(&self, request: CreateMission) -> Result<MissionState, EngineError> {
        self.create_held(request, false).await
    }

    /// How long a mission created to be driven by its creator is kept from workers: the
    /// creator takes its lease at once; should it die first, a worker claims it then.
    fn creator_hold_until(&self) -> i64 {
        let ttl = i64::try_from(self.shared.cfg.lease_ttl.as_millis()).unwrap_or(i64::MAX);
        self.shared.cfg.clock.now_ms().saturating_add(ttl)
    }

    async fn create_held(
        &self,
        request: CreateMission,
        held: bool,
    ) -> Result<MissionState, EngineError> {
        let checked = check(
            &request,
            &self.shared.cfg.models,
            &self.shared.cfg.workspace,
            !self.shared.cfg.ports.models.needs_keys(),
        )?;
        let mut model_scripts = BTreeMap::new();
        for (model, source) in &checked.scripts {
            model_scripts.insert(
                model.clone(),
                pin_input(&self.shared.sink(), source.as_bytes()).await?,
            );
        }
        let template_source =
            pin_input(&self.shared.sink(), request.template_source.as_bytes()).await?;
        let policy_source =
            pin_input(&self.shared.sink(), request.policy_source.as_bytes()).await?;
        let codeowners = match &request.codeowners {
            Some(file) => Some(pin_input(&self.shared.sink(), file.source.as_bytes()).await?),
            None => None,
        };
        // The requester as a person, when the installation knows them by another name.
        let resolved = self
            .shared
            .cfg
            .people
            .resolve(&request.requested_by, crate::people::Channel::Cli);
        let (requested_by, requested_as) = match &resolved.person {
            Some(_) if resolved.handle != request.requested_by => {
                (resolved.handle.clone(), Some(request.requested_by.clone()))
            }
            _ => (request.requested_by.clone(), None),
        };
        let codeowners_warnings = request
            .codeowners
            .as_ref()
            .map(|file| {
                flightdeck_policy::Codeowners::parse(&file.source)
                    .warnings()
                    .iter()
                    .map(ToString::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let created = MissionCreated {
            template: request.template_name.clone(),
            template_hash: Digest::of(request.template_source.as_bytes()),
            params: checked.params,
            repo: checked.repo.display().to_string(),
            base_commit: checked.base_commit,
            requested_by,
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
            requested_as,
            codeowners_warnings,
            remote: request.remote.clone(),
            goal: request.origin.goal.clone(),
            source: request.origin.source,
            follows: request.origin.follows.clone(),
            github: request.origin.github.clone().map(Box::new),
        };
        let mut log = MissionLog::new(self.shared.sink(), request.id.as_str());
        if held {
            log = log.held_until(self.creator_hold_until());
        }
        log.append(vec![EventKind::MissionCreated(created)]).await?;
        Ok(log.into_state())
    }

    /// Creates a mission and drives it until it ends or parks.
    pub async fn run(&self, request: CreateMission) -> Result<MissionState, EngineError> {
        let state = self.create_held(request, true).await?;
        self.drive(&state.id, None).await
    }

    /// Drives a mission created earlier (`run --detach`) that no process has started.
    pub async fn start(&self, id: &str) -> Result<MissionState, EngineError> {
        self.drive(id, None).await
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
        self.drive(id, Some(by)).await
    }

    /// Cancels a mission that has not finished: its driver (in this process or another)
    /// kills what runs and removes the workspace; a mission no one drives is cancelled
    /// here.
    pub async fn cancel(&self, id: &str, by: &str) -> Result<MissionState, EngineError> {
        self.post_and_load(id, Foreign::Cancel { by: by.to_string() })
            .await
    }

    /// Records a person's approve or deny. Refused (nothing recorded) when the approval is
    /// unknown or no longer pending, or the identity may not decide it. A deny fails the
    /// mission at once.
    pub async fn decide_approval(&self, vote: Vote) -> Result<MissionState, EngineError> {
        let approval_id = vote.approval_id.trim().to_string();
        let mission = flightdeck_core::ids::mission_of_approval(&approval_id)
            .ok_or_else(|| EngineError::UnknownApproval(approval_id.clone()))?;
        match self.load(mission.as_str()).await {
            Err(EngineError::UnknownMission(_)) => {
                return Err(EngineError::UnknownApproval(approval_id))
            }
            other => other?,
        };
        self.post_and_load(mission.as_str(), Foreign::Vote(vote))
            .await
    }

    /// Raises a mission's budget: `budget.raised` for each `(dimension, amount)`, by `by`.
    /// Refused (nothing recorded) for a finished mission, an unknown dimension, a dimension
    /// the template does not limit, or an amount that is not positive (or not whole, except
    /// `usd`). A driver working on the mission takes the raise in and goes on.
    pub async fn raise_budget(
        &self,
        id: &str,
        by: &str,
        adds: &[(String, f64)],
    ) -> Result<MissionState, EngineError> {
        let raise = Foreign::BudgetRaise {
            by: by.to_string(),
            adds: adds.to_vec(),
        };
        self.post_and_load(id, raise).await
    }

    /// Takes in what waits for mission `id` while no one drives it: inputs in its inbox and
    /// approval expiries that came due. Does not continue the mission (see `resume`).
    pub async fn settle(&self, id: &str) -> Result<MissionState, EngineError> {
        let mut driver = Driver::open(&self.shared, id).await?;
        let taken = async {
            driver.fire_deadlines().await?;
            driver.take_inbox().await
        }
        .await;
        let closed = driver.close().await;
        taken?;
        closed
    }

    async fn post_and_load(&self, id: &str, foreign: Foreign) -> Result<MissionState, EngineError> {
        match self.post(id, foreign).await? {
            Applied::Recorded { .. } => self.load(id).await,
            Applied::Refused(refusal) => Err(refusal.into()),
        }
    }

    /// Forks mission `request.origin` at `request.at_seq`: a new mission whose first events
    /// are copies of the origin's 1..=`at_seq`, then `mission.forked` with what is overridden;
    /// then it is resumed and runs live. The origin is not touched.
    pub async fn fork(&self, request: ForkMission) -> Result<MissionState, EngineError> {
        let origin = self.shared.cfg.store.events(&request.origin, 0).await?;
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
            forked.template_source = Some(pin_input(&self.shared.sink(), source.as_bytes()).await?);
            forked.template_hash = Some(Digest::of(source.as_bytes()));
        }
        for (model, source) in &request.model_scripts {
            forked.model_scripts.insert(
                model.clone(),
                pin_input(&self.shared.sink(), source.as_bytes()).await?,
            );
        }
        let now = self.shared.cfg.clock.now_ms().max(state.last_at_ms);
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
        let steps: Vec<usize> = state.steps.keys().copied().collect();
        let mut projection = crate::log::projection(&state, &self.shared.sink(), steps);
        // Resumed here next, not by a worker that sees it first.
        crate::log::hold(&mut projection.columns, self.creator_hold_until());
        // The origin's events are copied as they were recorded (already redacted), in one
        // append that creates the new mission.
        let stored = self
            .shared
            .cfg
            .store
            .append(AppendRequest {
                mission: id.to_string(),
                expected_seq: 0,
                events,
                projection,
                consumes: Vec::new(),
                fence: None,
            })
            .await?;
        for event in &stored {
            self.shared.cfg.observer.event(event);
        }
        crate::log::anchor(&self.shared.sink(), None, &state, &stored).await?;
        self.resume(id, &request.by).await
    }

    /// The full id of a mission from its id or a unique prefix of it.
    pub async fn resolve_id(&self, given: &str) -> Result<String, EngineError> {
        let given = given.trim();
        if given.is_empty() {
            return Err(EngineError::UnknownMission(given.to_string()));
        }
        if self.shared.cfg.store.mission(given).await?.is_some() {
            return Ok(given.to_string());
        }
        let candidates = self
            .shared
            .cfg
            .store
            .mission_ids_with_prefix(given, 6)
            .await?;
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
        crate::log::load(&*self.shared.cfg.store, id).await
    }

    /// Drives mission `id` under its lease until it ends or parks (`resume_by`: resumed by
    /// whom, recorded).
    async fn drive(&self, id: &str, resume_by: Option<&str>) -> Result<MissionState, EngineError> {
        let mut driver = Driver::open(&self.shared, id).await?;
        let driven = drive_open(&mut driver, resume_by).await;
        let closed = driver.close().await;
        match driven {
            Ok(()) => closed,
            Err(e) => Err(e),
        }
    }

    /// Makes workspace `id` as a mission of this template would get it (`flightdeck
    /// workspace up`): the provider's provision.
    pub async fn provision(
        &self,
        id: &str,
        repo: &std::path::Path,
        base_commit: &str,
        spec: &flightdeck_core::template::WorkspaceSpec,
    ) -> Result<crate::workspaces::Provisioned, EngineError> {
        let request = standalone_workspace(id, repo, base_commit, spec);
        self.shared.cfg.ports.workspaces.provision(&request).await
    }

    /// Finds workspace `id` again as `provision` made it (`flightdeck workspace exec`).
    pub async fn attach(
        &self,
        id: &str,
        repo: &std::path::Path,
        base_commit: &str,
        spec: &flightdeck_core::template::WorkspaceSpec,
    ) -> Result<crate::workspaces::Provisioned, EngineError> {
        let request = standalone_workspace(id, repo, base_commit, spec);
        self.shared.cfg.ports.workspaces.attach(&request).await
    }

    /// Removes workspace `id` (worktree, HOME, container); best effort.
    pub async fn remove_workspace(&self, id: &str, repo: Option<&std::path::Path>) {
        self.shared.cfg.ports.workspaces.remove(id, repo).await;
    }

    /// The container of workspace `id`.
    pub fn container_name(&self, id: &str) -> String {
        self.shared.cfg.ports.workspaces.container_name(id)
    }

    /// A digest of the data directory: containers of this installation carry it.
    pub fn installation(&self) -> String {
        self.shared.cfg.ports.workspaces.installation()
    }
}

/// The drive, between taking the lease and giving it back.
async fn drive_open(driver: &mut Driver, resume_by: Option<&str>) -> Result<(), EngineError> {
    // Due deadlines first (an approval that expired while the mission was parked), then
    // whatever waits in the inbox.
    driver.fire_deadlines().await?;
    driver.take_inbox().await?;
    if let Some(stop) = driver.take_stop() {
        return stopped(driver, stop).await;
    }
    let state = driver.log.state();
    if state.status.is_terminal() {
        return Ok(());
    }
    let resuming = resume_by.is_some();
    if let Some(by) = resume_by {
        if still_waiting(state) {
            return Ok(());
        }
        // A worker that cannot get the repository here records nothing (another may).
        if let Some(created) = state.created.clone() {
            driver.shared.cfg.ports.repos.locate(&created).await?;
        }
        record_resume(driver, by).await?;
    }
    match driver.program(resuming).await {
        Ok(()) => Ok(()),
        Err(Halt::Stop(stop)) => stopped(driver, stop).await,
        Err(Halt::Error(e)) => Err(e),
    }
}

/// What a stop means for the caller.
async fn stopped(driver: &mut Driver, stop: Stop) -> Result<(), EngineError> {
    match stop {
        // Recorded by the driver; the workspace goes (`close` removes it).
        Stop::Cancelled => Ok(()),
        Stop::Shutdown(reason) => Err(EngineError::Interrupted {
            id: driver.log.id().to_string(),
            reason,
        }),
        Stop::LeaseLost(Some(owner)) => Err(EngineError::Busy {
            id: driver.log.id().to_string(),
            owner,
        }),
        // Its lease ran out (the process was paused, say): another may have driven it since.
        Stop::LeaseLost(None) => Err(EngineError::Raced {
            id: driver.log.id().to_string(),
        }),
    }
}

/// Records the resume: the interruption first when the mission was running and its process
/// died without saying so (a shutdown records its own interruption).
async fn record_resume(driver: &mut Driver, by: &str) -> Result<(), EngineError> {
    let state = driver.log.state();
    let mut events = Vec::new();
    if matches!(
        state.status,
        MissionStatus::Running | MissionStatus::Provisioning
    ) && !state.halted
    {
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
            handed_back: false,
        }));
    }
    events.push(EventKind::MissionResumed(MissionResumed {
        by: by.to_string(),
    }));
    driver.log.append(events).await?;
    Ok(())
}

/// A mission parked on approvals that are not all granted yet.
fn still_waiting(state: &MissionState) -> bool {
    state.status == MissionStatus::AwaitingApproval && state.pending_approvals().next().is_some()
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
        Runtime::LocalUnsandboxed if !workspace.allow_unsandboxed => {
            return Err(EngineError::Unsupported(format!(
                "{}: workspace.runtime = \"local-unsandboxed\" is not allowed by this installation: running a repository's commands outside the sandbox is the installation's decision, never the repository's\nhint: run in the sandbox (runtime = \"local\"), or set allow_unsandboxed = true under [workspace] in the installation's config.toml",
                request.template_file
            )))
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
    let scripts = check_models(&rendered.template, &repo, &base_commit, models, replaying)?;
    Ok(Checked {
        template: rendered.template,
        params: rendered.params,
        repo,
        base_commit,
        scripts,
    })
}

impl Engine {
    /// Posts an input to mission `id` and waits until it is taken in: by the driver that
    /// holds the mission now (in this process or another), or here, under the lease, when
    /// no one drives it. Refusals that can be told from the mission as it stands are given
    /// before anything is written.
    pub async fn post(&self, id: &str, foreign: Foreign) -> Result<Applied, EngineError> {
        let mut state = crate::log::load(&*self.shared.cfg.store, id).await?;
        // A deadline that came due (an approval's expiry) is fired first, by whoever comes
        // by to write: the input is then judged on the mission as it now stands.
        let now = self.shared.cfg.clock.now_ms().max(state.last_at_ms);
        if inputs::expiries(&state, now).is_some() && self.shared.lease_is_free(id).await? {
            state = match self.settle(id).await {
                Ok(state) => state,
                Err(EngineError::Busy { .. }) => state,
                Err(e) => return Err(e),
            };
        }
        let gates = self.shared.gates_of_state(&state).await?;
        let now = self.shared.cfg.clock.now_ms().max(state.last_at_ms);
        if let Err(refusal) = inputs::apply(&state, &gates, &self.shared.cfg.people, &foreign, now)
        {
            return Ok(Applied::Refused(refusal));
        }
        let row = self
            .shared
            .cfg
            .store
            .post_input(flightdeck_store::NewInput {
                mission: id.to_string(),
                kind: foreign.kind().to_string(),
                payload: foreign.payload(),
                posted_at_ms: now,
            })
            .await?;
        let mut feed = self.shared.cfg.store.subscribe().await.ok();
        loop {
            match self.shared.cfg.store.input(row).await? {
                Some(InputRow {
                    state: InputState::Applied { seq },
                    ..
                }) => return Ok(Applied::Recorded { seq }),
                Some(InputRow {
                    state: InputState::Refused { reason },
                    ..
                }) => return Ok(Applied::Refused(Refusal::Other(reason))),
                Some(_) => {}
                None => return Err(EngineError::UnknownMission(id.to_string())),
            }
            // No one drives it (or its driver died): take it in here.
            if self.shared.lease_is_free(id).await? {
                match Driver::open(&self.shared, id).await {
                    Ok(mut driver) => {
                        // Closed whatever happened: the lease is given back, and this
                        // process does not keep thinking it drives the mission.
                        let taken = match driver.fire_deadlines().await {
                            Ok(_) => driver.take_inbox().await,
                            Err(e) => Err(e),
                        };
                        let closed = driver.close().await;
                        taken?;
                        closed?;
                        continue;
                    }
                    Err(EngineError::Busy { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            match feed.as_mut() {
                Some(feed) => {
                    let _ = tokio::time::timeout(INBOX_POLL, feed.changed()).await;
                }
                None => tokio::time::sleep(INBOX_POLL).await,
            }
        }
    }
}

/// The request for a workspace of no mission (`flightdeck workspace`): nothing recorded.
fn standalone_workspace<'a>(
    id: &'a str,
    repo: &'a std::path::Path,
    base_commit: &'a str,
    spec: &'a flightdeck_core::template::WorkspaceSpec,
) -> crate::workspaces::WorkspaceRequest<'a> {
    crate::workspaces::WorkspaceRequest {
        id,
        repo,
        base_commit,
        spec,
        recorded: None,
        origin: None,
    }
}
