//! The scheduler: what `flightdeck worker` and `serve` run to drive missions no one else
//! drives, on any number of machines sharing one store.
//!
//! A pass claims work from the store ([`EventStore::claim_runnable`]): missions a worker
//! can make progress on, leased to this process in one transaction on the database's clock,
//! so two workers never get the same mission. That is a mission started with `run
//! --detach` (or over the API) and never started, one whose driver died or handed it back
//! at its shutdown (it is resumed: the call that was cut off runs again), one whose
//! approvals are all granted or whose budget was raised (continued), one with inputs in its
//! inbox and no driver to take them, or one whose approval's expiry came due (fired as a
//! deadline, never as a side effect of reading). A parked mission holds no process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flightdeck_core::schedule::can_go_on_by_itself;
use flightdeck_core::{MissionState, MissionStatus};
use flightdeck_engine::{Engine, EngineError, WorkerId};
use flightdeck_store::{ClaimRequest, Claimed};

use crate::error::AppError;

/// The longest the scheduler sleeps without a change or a deadline.
const IDLE: Duration = Duration::from_secs(30);
/// The least time between two passes of a scheduler with more than one worker.
const BUSY_PASS_GAP: Duration = Duration::from_millis(250);
/// How long a mission this worker could not drive on is left to others, at first; it
/// doubles with each failure in a row, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Who a continuation is recorded as (`mission.resumed.by`).
pub const SCHEDULER: &str = "flightdeck-scheduler";

/// What a pass did to one mission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub mission: String,
    pub what: ActionKind,
    /// The mission's status after (with more than one worker: before, as it is driven on a
    /// task of its own).
    pub status: MissionStatus,
    /// Why it could not be driven here (`ActionKind::Failed`), with its hint.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    /// Inputs or expiries taken in.
    Settled,
    /// Driven on: started, resumed after its driver stopped, or continued because its
    /// approvals are granted or its budget was raised.
    Continued,
    /// Could not be driven here (its repository cannot be fetched, say): left to others
    /// for a while.
    Failed,
}

/// Missions this worker failed to make progress on, left to others for a while (so a
/// mission that cannot be driven here does not make every pass claim it again).
#[derive(Default)]
struct Backoff {
    /// mission → (until, failures in a row).
    missions: HashMap<String, (i64, u32)>,
}

impl Backoff {
    fn skip_list(&mut self, now_ms: i64) -> Vec<String> {
        self.missions.retain(|_, (until, _)| *until > now_ms);
        self.missions.keys().cloned().collect()
    }

    fn failed(&mut self, mission: &str, now_ms: i64) {
        let entry = self.missions.entry(mission.to_string()).or_insert((0, 0));
        entry.1 = entry.1.saturating_add(1);
        let wait = FIRST_BACKOFF
            .saturating_mul(1 << entry.1.saturating_sub(1).min(16))
            .min(MAX_BACKOFF);
        entry.0 = now_ms.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
    }

    fn went_on(&mut self, mission: &str) {
        self.missions.remove(mission);
    }
}

/// Drives missions no one else drives.
pub struct Scheduler {
    engine: Engine,
    /// How many missions it drives at once (`worker --concurrency N`, `serve --workers N`):
    /// with one, a pass drives each claimed mission to its next stop before it claims the
    /// next; with more, each is driven on a task of its own and the pass goes on.
    workers: usize,
    permits: Arc<tokio::sync::Semaphore>,
    /// Notified when a task of its own ends: a pass may claim again.
    slot_freed: Arc<tokio::sync::Notify>,
    backoff: Arc<Mutex<Backoff>>,
    /// Failures of missions its tasks drove, reported by the next pass.
    failures: Arc<Mutex<Vec<Action>>>,
    /// A mission one of its tasks drove was interrupted by a signal (the process is
    /// stopping): what `run` returns once it has drained.
    stopped: Arc<Mutex<Option<AppError>>>,
    tasks: Mutex<tokio::task::JoinSet<()>>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Scheduler {
    pub fn new(engine: Engine) -> Scheduler {
        Scheduler::with_workers(engine, 1)
    }

    /// A scheduler that drives up to `workers` missions at once (at least one).
    pub fn with_workers(engine: Engine, workers: usize) -> Scheduler {
        let workers = workers.max(1);
        Scheduler {
            engine,
            workers,
            permits: Arc::new(tokio::sync::Semaphore::new(workers)),
            slot_freed: Arc::new(tokio::sync::Notify::new()),
            backoff: Arc::new(Mutex::new(Backoff::default())),
            failures: Arc::new(Mutex::new(Vec::new())),
            stopped: Arc::new(Mutex::new(None)),
            tasks: Mutex::new(tokio::task::JoinSet::new()),
        }
    }

    /// Waits for every mission its tasks drive to stop (at its next stop, or recording
    /// its interruption when the engine shuts down).
    pub async fn drain(&self) {
        let mut tasks = std::mem::take(&mut *locked(&self.tasks));
        while tasks.join_next().await.is_some() {}
    }

    /// One pass: claims what can make progress (as many as it has free workers) and drives
    /// it. Returns what it did, and when the next deadline is due (ms).
    pub async fn tick(&self) -> Result<(Vec<Action>, Option<i64>), AppError> {
        let store = self.engine.config().store.clone();
        let owner = self.engine.config().worker.0.clone();
        let ttl_ms = i64::try_from(self.engine.config().lease_ttl.as_millis()).unwrap_or(i64::MAX);
        let mut actions = std::mem::take(&mut *locked(&self.failures));
        loop {
            // A process that is stopping claims nothing more.
            if self.engine.config().shutdown.borrow().is_some() {
                break;
            }
            let free = if self.workers == 1 {
                1
            } else {
                self.permits.available_permits()
            };
            if free == 0 {
                break;
            }
            let now = store.clock_ms().await?;
            // Holders that died on this host: their missions are taken at once, not after
            // their leases run out.
            let steal_from = store
                .lease_holders(now)
                .await?
                .into_iter()
                .filter(|owner| WorkerId::is_dead_on_this_host(owner))
                .collect();
            let skip = locked(&self.backoff).skip_list(now);
            let claimed = store
                .claim_runnable(ClaimRequest {
                    owner: owner.clone(),
                    now_ms: now,
                    ttl_ms,
                    limit: u32::try_from(free).unwrap_or(u32::MAX),
                    steal_from,
                    skip,
                })
                .await?;
            if claimed.is_empty() {
                break;
            }
            // With one worker, each is driven here before the next claim; with more, each on
            // a task of its own, and the next claim takes what free workers are left.
            for claim in claimed {
                if self.workers == 1 {
                    if let Some(action) = drive_claimed(&self.engine, &self.backoff, &claim).await?
                    {
                        actions.push(action);
                    }
                } else {
                    actions.push(self.spawn_claimed(claim).await);
                }
            }
        }
        let deadline = store.next_deadline_ms().await?;
        Ok((actions, deadline))
    }

    /// Drives a claimed mission on a task of its own.
    async fn spawn_claimed(&self, claim: Claimed) -> Action {
        let id = claim.mission.clone();
        let status = self
            .engine
            .load(&id)
            .await
            .map_or(MissionStatus::Running, |s| s.status);
        let permit = self.permits.clone().try_acquire_owned().ok();
        /// Wakes the scheduler's passes however the task ends (a panic included): a worker
        /// of its own is free to claim more.
        struct Freed(Arc<tokio::sync::Notify>);
        impl Drop for Freed {
            fn drop(&mut self) {
                self.0.notify_one();
            }
        }
        let freed = Freed(self.slot_freed.clone());
        let engine = self.engine.clone();
        let backoff = self.backoff.clone();
        let failures = self.failures.clone();
        let stopped = self.stopped.clone();
        let mut tasks = locked(&self.tasks);
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move {
            let _permit = permit;
            let _freed = freed;
            // What the mission did is in its timeline; why it could not be driven, in the
            // next pass's report.
            match drive_claimed(&engine, &backoff, &claim).await {
                Ok(Some(failed)) if failed.what == ActionKind::Failed => {
                    locked(&failures).push(failed);
                }
                Ok(_) => {}
                // Stopped by a signal: said once the scheduler has drained.
                Err(interrupted) => *locked(&stopped) = Some(interrupted),
            }
        });
        Action {
            mission: id.to_string(),
            what: ActionKind::Continued,
            status,
            error: None,
        }
    }

    /// Runs passes until `shutdown` fires: after each, it waits for a change in the store
    /// (an input posted, an append), the next deadline, or a worker of its own to be free.
    /// A pass that fails (a database that does not answer now) is given to `on_error`, and
    /// tried again a few seconds later: a worker outlives a restarting database.
    pub async fn run(
        &self,
        mut shutdown: tokio::sync::watch::Receiver<Option<String>>,
        mut on_pass: impl FnMut(&[Action]),
        mut on_error: impl FnMut(&AppError),
    ) -> Result<(), AppError> {
        let store = self.engine.config().store.clone();
        let mut feed = store.subscribe().await.ok();
        let ran = self
            .passes(&mut shutdown, &mut on_pass, &mut on_error, &mut feed)
            .await;
        self.drain().await;
        ran?;
        // A signal stopped missions this worker drove (their interruptions are recorded
        // and handed back): the process says it was stopped.
        match locked(&self.stopped).take() {
            Some(interrupted) => Err(interrupted),
            None => Ok(()),
        }
    }

    async fn passes(
        &self,
        shutdown: &mut tokio::sync::watch::Receiver<Option<String>>,
        on_pass: &mut impl FnMut(&[Action]),
        on_error: &mut impl FnMut(&AppError),
        feed: &mut Option<flightdeck_store::ChangeFeed>,
    ) -> Result<(), AppError> {
        let store = self.engine.config().store.clone();
        loop {
            if shutdown.borrow().is_some() {
                return Ok(());
            }
            let (actions, deadline) = match self.tick().await {
                Ok(pass) => pass,
                // A signal stopped the mission it drove: the process is stopping.
                Err(e) if matches!(e.kind, crate::error::ErrorKind::Interrupted { .. }) => {
                    return Err(e)
                }
                // A store that does not answer now (a restarting database) may at the next
                // pass: the worker says so and tries again instead of dying.
                Err(e) => {
                    on_error(&e);
                    let now = store.clock_ms().await.unwrap_or(0);
                    (Vec::new(), Some(now + 3000))
                }
            };
            on_pass(&actions);
            let now = store.clock_ms().await.unwrap_or(0);
            // A deadline already due that no claim took (a mission left to others for a
            // while) is looked at again after a moment, not in a loop.
            let wait = deadline
                .map(|at| {
                    let due_in = u64::try_from(at - now).unwrap_or(0);
                    Duration::from_millis(due_in.max(1000))
                })
                .map_or(IDLE, |d| d.min(IDLE));
            let changed = async {
                match feed.as_mut() {
                    Some(feed) => {
                        let _ = feed.changed().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep(wait) => {}
                () = self.slot_freed.notified(), if self.workers > 1 => {}
                _ = shutdown.changed() => return Ok(()),
            }
            // While its tasks drive missions, every event they append is a change: passes
            // are spaced so that claims do not grow with the missions' events.
            if self.workers > 1 {
                tokio::select! {
                    () = tokio::time::sleep(BUSY_PASS_GAP) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
            }
        }
    }
}

/// Drives a mission this worker claimed: starts it (queued), drives it on (its driver died
/// or handed it back, its approvals are granted, its budget was raised), or takes in what
/// waits for it (inputs, a due expiry) and then drives it on if that made it ready. The
/// claim's lease is given back however it ends.
/// `Err` only when a signal stopped the mission (the process is stopping).
async fn drive_claimed(
    engine: &Engine,
    backoff: &Mutex<Backoff>,
    claim: &Claimed,
) -> Result<Option<Action>, AppError> {
    let id = claim.mission.as_str();
    let before = engine.load(id).await.ok();
    let driven = drive_claimed_mission(engine, id, before.as_ref()).await;
    let store = &engine.config().store;
    // The claim's own holding only (the driver gave back the one it took): never a lease
    // another driver of this process holds now.
    if !matches!(driven, Err(EngineError::Busy { .. })) {
        let _ = store
            .release_claim(id, &claim.lease.owner, claim.lease.epoch)
            .await;
    }
    // The mission as the drive left it; read again only when the drive failed.
    let after = match &driven {
        Ok((_, state)) => Some((state.events, state.status)),
        Err(_) => engine.load(id).await.ok().map(|s| (s.events, s.status)),
    };
    let status = after.map_or(MissionStatus::Running, |(_, status)| status);
    let moved = match (&before, after) {
        (Some(b), Some((events, _))) => events > b.events,
        _ => false,
    };
    let now = store.clock_ms().await.unwrap_or(0);
    match (&driven, moved) {
        (Ok(_), true) => locked(backoff).went_on(id),
        // Someone else drives it now, or this process is stopping: nothing to hold
        // against it.
        (
            Err(
                EngineError::Busy { .. }
                | EngineError::Raced { .. }
                | EngineError::Interrupted { .. },
            ),
            _,
        ) => {}
        _ => locked(backoff).failed(id, now),
    }
    match driven {
        Ok((what, _)) => Ok(Some(Action {
            mission: id.to_string(),
            what,
            status,
            error: None,
        })),
        Err(EngineError::Busy { .. } | EngineError::Raced { .. }) => Ok(None),
        Err(e @ EngineError::Interrupted { .. }) => {
            let mut stopped = AppError::from(e);
            if engine.config().hand_back_on_shutdown {
                stopped.hint = Some(
                    "its interruption is recorded and handed back: any worker continues it"
                        .to_string(),
                );
            }
            Err(stopped)
        }
        Err(e) => {
            let e = AppError::from(e);
            Ok(Some(Action {
                mission: id.to_string(),
                what: ActionKind::Failed,
                status,
                error: Some(match e.hint {
                    Some(hint) => format!("{}\nhint: {hint}", e.message),
                    None => e.message,
                }),
            }))
        }
    }
}

/// What was done, and the mission as it was left.
async fn drive_claimed_mission(
    engine: &Engine,
    id: &str,
    before: Option<&MissionState>,
) -> Result<(ActionKind, MissionState), EngineError> {
    let Some(state) = before else {
        return Err(EngineError::UnknownMission(id.to_string()));
    };
    if state.status.is_terminal() {
        // Inputs posted as it finished: its driver refuses them.
        return Ok((ActionKind::Settled, engine.settle(id).await?));
    }
    if state.status == MissionStatus::Queued {
        return Ok((ActionKind::Continued, engine.start(id).await?));
    }
    if can_go_on_by_itself(state) {
        return Ok((ActionKind::Continued, engine.resume(id, SCHEDULER).await?));
    }
    let settled = engine.settle(id).await?;
    if can_go_on_by_itself(&settled) {
        return Ok((ActionKind::Continued, engine.resume(id, SCHEDULER).await?));
    }
    Ok((ActionKind::Settled, settled))
}
