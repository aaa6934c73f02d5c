//! The mission log: the one writer of a driven mission's timeline.
//!
//! A `MissionLog` owns the mission's state (the fold of its timeline), the events staged to
//! go with the next append, and the append itself: every event of a driven mission is
//! checked against the state machine, redacted, appended with the seq the log expects
//! (optimistic concurrency: a stale append changes nothing), and folded in place; the
//! store's projection (the summary, its steps as items) is computed here from the new state. Nothing else
//! appends to a mission while it is driven: what comes from outside (a vote, a budget
//! raise, a cancel) reaches the driver as an input and is appended through its log.

use std::collections::BTreeSet;
use std::sync::Arc;

use flightdeck_core::views::{MissionSummary, StepView, STEPS_LIST};
use flightdeck_core::{Digest, EventKind, MissionState, MissionStatus, StoredEvent};
use flightdeck_store::{
    AnchorLog, AnchorPoint, AnchorReason, AppendRequest, ArtifactStore, EventStore, NewEvent,
    Projection, ProjectionColumns, ProjectionItem, StoreError,
};

use crate::error::EngineError;
use crate::ports::{Clock, Observer};
use crate::redact::Secrets;

/// Where a log's events and artifacts go, and what they pass on the way.
#[derive(Clone)]
pub struct LogSink {
    pub store: Arc<dyn EventStore>,
    pub artifacts: Arc<dyn ArtifactStore>,
    pub clock: Arc<dyn Clock>,
    pub secrets: Secrets,
    pub observer: Arc<dyn Observer>,
    /// Whether the store keeps the summary projection (a replay's store does not).
    pub projection: bool,
    /// Where heads are anchored outside the store (see [`anchor`]); none in a replay.
    pub anchors: Option<Arc<AnchorLog>>,
    /// The team a requester is in (the first by name), for the projection's `team`.
    pub team_of: TeamOf,
}

/// Which team an identity is in, if any.
pub type TeamOf = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// An event folded into the state before it is stored, with the time it happened.
#[derive(Debug, Clone)]
struct Staged {
    at_ms: i64,
    kind: EventKind,
}

/// A driven mission's timeline: its state and its one writer.
pub struct MissionLog {
    state: MissionState,
    /// Folded into `state`, stored by the next append in its commit. Only what a crash may
    /// lose without hiding an effect is staged: a model's answer (the call then counts as
    /// interrupted and is made again) and a read-only tool's request and result (the read
    /// never happened; the model asks again).
    staged: Vec<Staged>,
    sink: LogSink,
    /// Whether this log has stored every step as a projection item. Until it has, its next
    /// append stores them all, not only those it touches: a mission last written by an
    /// older flightdeck (its steps inside the stored summary, no items) keeps its steps.
    items_complete: bool,
    /// The status as of the last stored event (`None`: nothing stored yet): a change to a
    /// parked or finished status is anchored.
    stored_status: Option<MissionStatus>,
    /// The lease epoch its appends carry (a driver's log); `None` for a log that holds no
    /// lease (a mission's creation, a replay).
    fence: Option<u64>,
    /// Its next append is held for the process that makes it until this time (ms): a
    /// mission created to be driven here at once is not claimed by a worker meanwhile.
    held_until: Option<i64>,
}

impl MissionLog {
    /// This log, its appends carrying lease epoch `epoch` (see [`flightdeck_store::Lease`]).
    pub fn fenced(mut self, epoch: u64) -> MissionLog {
        self.fence = Some(epoch);
        self
    }

    /// The lease epoch its appends carry.
    pub fn fence(&self) -> Option<u64> {
        self.fence
    }

    /// The log of mission `id` as its timeline stands.
    pub async fn open(sink: LogSink, id: &str) -> Result<MissionLog, EngineError> {
        let state = load(&*sink.store, id).await?;
        Ok(MissionLog {
            fence: None,
            held_until: None,
            stored_status: Some(state.status),
            state,
            staged: Vec::new(),
            sink,
            items_complete: false,
        })
    }

    /// The log of a mission not created yet (its first append creates it).
    pub fn new(sink: LogSink, id: &str) -> MissionLog {
        MissionLog {
            fence: None,
            held_until: None,
            state: MissionState::new(id),
            staged: Vec::new(),
            sink,
            items_complete: true,
            stored_status: None,
        }
    }

    pub fn state(&self) -> &MissionState {
        &self.state
    }

    /// Holds the next append for this process until `until_ms` (see `held_until`).
    pub(crate) fn held_until(mut self, until_ms: i64) -> MissionLog {
        self.held_until = Some(until_ms);
        self
    }

    pub fn into_state(self) -> MissionState {
        self.state
    }

    pub fn id(&self) -> &str {
        &self.state.id
    }

    /// The clock, never before the timeline's last event (time does not run backwards
    /// within a timeline, whatever the machine's clock does).
    pub fn now_ms(&self) -> i64 {
        self.sink.clock.now_ms().max(self.state.last_at_ms)
    }

    /// The seq of the last stored event.
    pub fn stored_seq(&self) -> u64 {
        self.state.events - self.staged.len() as u64
    }

    /// Appends events (after whatever is staged, in the same commit).
    pub async fn append(&mut self, kinds: Vec<EventKind>) -> Result<Vec<StoredEvent>, EngineError> {
        self.append_consuming(kinds, Vec::new()).await
    }

    /// Appends events that apply inputs from the mission's inbox: the inputs are marked
    /// applied in the same transaction, so an input is taken in exactly once.
    pub async fn append_consuming(
        &mut self,
        kinds: Vec<EventKind>,
        consumes: Vec<i64>,
    ) -> Result<Vec<StoredEvent>, EngineError> {
        let at_ms = self.now_ms();
        let expected_seq = self.stored_seq();
        let mut events = Vec::with_capacity(self.staged.len() + kinds.len());
        for staged in &self.staged {
            events.push(NewEvent {
                at_ms: staged.at_ms,
                event_type: staged.kind.type_name().to_string(),
                data: self.sink.secrets.redact_json(staged.kind.data()),
            });
        }
        for kind in &kinds {
            if let Err(source) = self.state.apply(self.state.events + 1, at_ms, kind) {
                let id = self.state.id.clone();
                self.reload_keeping_staged().await?;
                return Err(EngineError::Corrupt { id, source });
            }
            events.push(NewEvent {
                at_ms,
                event_type: kind.type_name().to_string(),
                data: self.sink.secrets.redact_json(kind.data()),
            });
        }
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let projection = if !self.sink.projection {
            Projection {
                status: self.state.status.as_str().to_string(),
                template: template_of(&self.state),
                summary: serde_json::Value::Null,
                items: Vec::new(),
                columns: ProjectionColumns::default(),
            }
        } else if self.items_complete {
            let touched = self.staged.iter().map(|s| &s.kind).chain(&kinds);
            projection(&self.state, &self.sink, touched.filter_map(step_of))
        } else {
            let every_step: Vec<usize> = self.state.steps.keys().copied().collect();
            projection(&self.state, &self.sink, every_step)
        };
        let mut projection = projection;
        if let Some(until_ms) = self.held_until.take() {
            hold(&mut projection.columns, until_ms);
        }
        let request = AppendRequest {
            mission: self.state.id.clone(),
            expected_seq,
            events,
            projection,
            consumes,
            fence: self.fence,
        };
        let stored = match self.sink.store.append(request).await {
            Ok(stored) => stored,
            Err(e) => {
                let id = self.state.id.clone();
                self.reload_keeping_staged().await?;
                return Err(match e {
                    // Another writer moved it on, or took the lease over: this driver stops.
                    StoreError::Conflict { .. } | StoreError::Fenced { .. } => {
                        EngineError::Raced { id }
                    }
                    other => EngineError::Store(other),
                });
            }
        };
        self.staged.clear();
        self.items_complete = true;
        if let Some(last) = stored.last() {
            self.state.head_hash = last.hash.clone();
        }
        for event in &stored {
            self.sink.observer.event(event);
        }
        let before = self.stored_status.replace(self.state.status);
        anchor(&self.sink, before, &self.state, &stored).await?;
        Ok(stored)
    }

    /// Folds `kinds` into the state now; they are stored with the next append, in its
    /// commit (see `staged`).
    pub async fn stage(&mut self, kinds: Vec<EventKind>) -> Result<(), EngineError> {
        let at_ms = self.now_ms();
        for kind in kinds {
            if let Err(source) = self.state.apply(self.state.events + 1, at_ms, &kind) {
                let id = self.state.id.clone();
                self.reload_keeping_staged().await?;
                return Err(EngineError::Corrupt { id, source });
            }
            self.staged.push(Staged { at_ms, kind });
        }
        Ok(())
    }

    /// Whether events are staged (not stored yet).
    pub fn has_staged(&self) -> bool {
        !self.staged.is_empty()
    }

    /// Stores what is staged, if anything.
    pub async fn flush(&mut self) -> Result<(), EngineError> {
        if self.staged.is_empty() {
            return Ok(());
        }
        self.append(Vec::new()).await.map(|_| ())
    }

    /// The last stored event of type `event_type`, read back from the store.
    pub async fn last_stored_of_type(
        &self,
        event_type: &str,
    ) -> Result<Option<StoredEvent>, EngineError> {
        let events = self.sink.store.events(&self.state.id, 0).await?;
        Ok(events.into_iter().rfind(|e| e.event_type == event_type))
    }

    /// Stores an artifact. Every artifact of a driven mission passes here, and is redacted.
    pub async fn put_artifact(&self, bytes: &[u8]) -> Result<Digest, EngineError> {
        put_artifact(&self.sink, bytes).await
    }

    pub async fn artifact(&self, digest: &Digest) -> Result<Vec<u8>, EngineError> {
        Ok(self.sink.artifacts.get(digest).await?)
    }

    /// Reads the state back from the store, with the staged events folded on top again if
    /// they still follow; otherwise they are dropped, as in a crash.
    async fn reload_keeping_staged(&mut self) -> Result<(), EngineError> {
        let mut fresh = load(&*self.sink.store, &self.state.id).await?;
        self.stored_status = Some(fresh.status);
        let staged = std::mem::take(&mut self.staged);
        if fresh.status.is_terminal() {
            self.state = fresh;
            return Ok(());
        }
        let mut kept = Vec::with_capacity(staged.len());
        for event in staged {
            let at_ms = event.at_ms.max(fresh.last_at_ms);
            if fresh.apply(fresh.events + 1, at_ms, &event.kind).is_err() {
                self.state = load(&*self.sink.store, &self.state.id).await?;
                return Ok(());
            }
            kept.push(Staged {
                at_ms,
                kind: event.kind,
            });
        }
        self.state = fresh;
        self.staged = kept;
        Ok(())
    }
}

/// Anchors the head of an append outside the store (the installation's anchor file) when it
/// created the mission (`before` is `None`) or moved it from `before` to a parked or
/// finished status. Every append of the engine passes here: a mission's log and a fork.
pub(crate) async fn anchor(
    sink: &LogSink,
    before: Option<MissionStatus>,
    state: &MissionState,
    stored: &[StoredEvent],
) -> Result<(), EngineError> {
    let (Some(anchors), Some(head)) = (&sink.anchors, stored.last()) else {
        return Ok(());
    };
    let status = state.status;
    let reason = match before {
        None => AnchorReason::Created,
        Some(before) if before == status => return Ok(()),
        Some(_) if status.is_terminal() => AnchorReason::Finished,
        Some(_)
            if matches!(
                status,
                MissionStatus::AwaitingApproval | MissionStatus::Blocked
            ) =>
        {
            AnchorReason::Parked
        }
        Some(_) => return Ok(()),
    };
    let point = AnchorPoint {
        mission: head.mission.clone(),
        seq: head.seq,
        head: head.hash.clone(),
        at: head.at.clone(),
        reason,
        status: status.as_str().to_string(),
    };
    let anchors = anchors.clone();
    // A small write and an fsync: off the async threads.
    tokio::task::spawn_blocking(move || anchors.append(&point))
        .await
        .map_err(|e| {
            EngineError::Anchor(flightdeck_store::AnchorError::Io {
                path: flightdeck_store::anchors::ANCHOR_FILE.to_string(),
                source: std::io::Error::other(e.to_string()),
            })
        })??;
    Ok(())
}

/// Stores an artifact through `sink`, redacted.
pub async fn put_artifact(sink: &LogSink, bytes: &[u8]) -> Result<Digest, EngineError> {
    let bytes = sink.secrets.redact(bytes);
    Ok(sink.artifacts.put(&bytes).await?)
}

/// Pins an input of the installation's own (a template, a policy, CODEOWNERS, a scripted
/// model's file) exactly as written: masking it would change what the mission runs and
/// decides (a template's `run` would write the mask instead of its text), and it is not
/// output of the mission.
pub async fn pin_input(sink: &LogSink, bytes: &[u8]) -> Result<Digest, EngineError> {
    Ok(sink.artifacts.put(bytes).await?)
}

/// The state of mission `id`, folded from its timeline.
pub async fn load(store: &dyn EventStore, id: &str) -> Result<MissionState, EngineError> {
    let events = store.events(id, 0).await?;
    if events.is_empty() {
        return Err(EngineError::UnknownMission(id.to_string()));
    }
    MissionState::fold(id, &events).map_err(|source| EngineError::Corrupt {
        id: id.to_string(),
        source,
    })
}

/// The step an event starts or ends.
fn step_of(kind: &EventKind) -> Option<usize> {
    match kind {
        EventKind::StepStarted(s) => Some(s.index),
        EventKind::StepFinished(s) => Some(s.index),
        _ => None,
    }
}

fn template_of(state: &MissionState) -> String {
    state
        .created
        .as_ref()
        .map(|c| c.template.clone())
        .unwrap_or_default()
}

/// The store's projection of `state`: the summary without its steps, whose cost is the same
/// at every step of a mission, and the steps in `steps` as items (those an append started or
/// finished; a store keeps the others). The summary quotes a failed step's output in its
/// error: that text is masked like the events (only it, so the summary is not serialized
/// twice).
pub(crate) fn projection(
    state: &MissionState,
    sink: &LogSink,
    steps: impl IntoIterator<Item = usize>,
) -> Projection {
    let secrets = &sink.secrets;
    let mut summary = MissionSummary::without_steps(state);
    if let Some(error) = &mut summary.error {
        let message = serde_json::Value::String(std::mem::take(&mut error.message));
        if let serde_json::Value::String(masked) = secrets.redact_json(message) {
            error.message = masked;
        }
    }
    let steps: BTreeSet<usize> = steps.into_iter().collect();
    let mut items: Vec<ProjectionItem> = Vec::with_capacity(steps.len());
    for index in steps {
        // A step view is plain data: it always serializes.
        let Some(Ok(value)) = StepView::of(state, index).map(serde_json::to_value) else {
            continue;
        };
        items.push(ProjectionItem {
            list: STEPS_LIST.to_string(),
            position: index as u64,
            value,
        });
    }
    Projection {
        status: state.status.as_str().to_string(),
        template: template_of(state),
        summary: summary.to_json(),
        items,
        columns: projection_columns(
            state,
            state
                .created
                .as_ref()
                .and_then(|c| (sink.team_of)(&c.requested_by)),
        ),
    }
}

/// Keeps a mission the caller is about to drive from being claimed until `until_ms`: not
/// ready, and due (claimable) then, should the caller die before it takes the lease.
pub(crate) fn hold(columns: &mut ProjectionColumns, until_ms: i64) {
    columns.ready = false;
    columns.next_deadline_ms = Some(
        columns
            .next_deadline_ms
            .map_or(until_ms, |d| d.min(until_ms)),
    );
}

/// The typed columns of a mission's row after `state` (its requester in `team`): what
/// claiming work and listings filter on.
pub fn projection_columns(state: &MissionState, team: Option<String>) -> ProjectionColumns {
    let schedule = flightdeck_core::schedule::Schedule::of(state);
    ProjectionColumns {
        team,
        requested_by: state.created.as_ref().map(|c| c.requested_by.clone()),
        ready: schedule.ready,
        waiting_for: schedule.waiting_for.map(str::to_string),
        next_deadline_ms: schedule.next_deadline_ms,
        cost_usd: state.cost_usd,
    }
}
