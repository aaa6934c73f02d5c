//! The scheduler: continues missions by themselves.
//!
//! A parked mission holds no process. When its approvals are all granted, or the budget that
//! blocked it is raised, it can go on; when one of its approvals runs out of time, it fails.
//! The scheduler finds those missions and drives them (taking their lease, as any driver
//! does): inputs waiting in a mission's inbox with no driver to take them, expiries that
//! came due (fired as deadlines, never as a side effect of reading), and missions ready to
//! continue. `flightdeck worker` runs it; `resume` still works by hand.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flightdeck_core::state::ApprovalStatus;
use flightdeck_core::{MissionState, MissionStatus};
use flightdeck_engine::{Engine, EngineError};

use crate::error::AppError;

/// How many missions one pass looks at.
const SCAN: u32 = 10_000;
/// The longest the scheduler sleeps without a change or a deadline.
const IDLE: Duration = Duration::from_secs(30);
/// The least time between two passes of a scheduler with more than one worker.
const BUSY_PASS_GAP: Duration = Duration::from_millis(250);
/// Who a continuation is recorded as (`mission.resumed.by`).
pub const SCHEDULER: &str = "flightdeck-scheduler";

/// What a pass did to one mission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub mission: String,
    pub what: ActionKind,
    /// The mission's status after.
    pub status: MissionStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    /// Inputs or expiries taken in.
    Settled,
    /// Continued: its approvals are granted, or its budget was raised.
    Continued,
}

/// Continues missions that can go on by themselves.
pub struct Scheduler {
    engine: Engine,
    /// How many missions it drives at once (`serve --workers N`): with one, a pass drives
    /// each ready mission to its next stop before it looks at the next; with more, each is
    /// driven on a task of its own and the pass goes on.
    workers: usize,
    permits: Arc<tokio::sync::Semaphore>,
    /// Missions a task of this scheduler drives now.
    driving: Arc<Mutex<HashSet<String>>>,
    tasks: Mutex<tokio::task::JoinSet<()>>,
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
            driving: Arc::new(Mutex::new(HashSet::new())),
            tasks: Mutex::new(tokio::task::JoinSet::new()),
        }
    }

    fn driving(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.driving
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for every mission its tasks drive to stop (at its next stop, or recording
    /// its interruption when the engine shuts down).
    pub async fn drain(&self) {
        let mut tasks = {
            let mut guard = self
                .tasks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            std::mem::take(&mut *guard)
        };
        while tasks.join_next().await.is_some() {}
    }

    /// Continues `state`'s mission: here, or on a task of its own when more than one
    /// worker is configured (none when all are busy: a later pass takes it).
    async fn continue_mission(
        &self,
        state: &MissionState,
        actions: &mut Vec<Action>,
    ) -> Result<(), AppError> {
        let id = state.id.clone();
        if self.workers == 1 {
            match self.engine.resume(&id, SCHEDULER).await {
                Ok(after) => actions.push(Action {
                    mission: id,
                    what: ActionKind::Continued,
                    status: after.status,
                }),
                Err(EngineError::Busy { .. } | EngineError::AlreadyFinished { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            return Ok(());
        }
        if self.driving().contains(&id) {
            return Ok(());
        }
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            return Ok(());
        };
        self.driving().insert(id.clone());
        let engine = self.engine.clone();
        let driving = self.driving.clone();
        let driven = id.clone();
        let mut tasks = self
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while tasks.try_join_next().is_some() {}
        /// Takes the mission out of `driving` however the task ends (a panic included).
        struct Driving {
            set: Arc<Mutex<HashSet<String>>>,
            id: String,
        }
        impl Drop for Driving {
            fn drop(&mut self) {
                self.set
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&self.id);
            }
        }
        let guard = Driving {
            set: driving,
            id: driven.clone(),
        };
        tasks.spawn(async move {
            let _guard = guard;
            let _permit = permit;
            // What the mission did is in its timeline; a failure to drive it is retried by
            // a later pass.
            let _ = engine.resume(&driven, SCHEDULER).await;
        });
        actions.push(Action {
            mission: id,
            what: ActionKind::Continued,
            status: state.status,
        });
        Ok(())
    }

    /// One pass over the store; what it did, and when the next deadline is due (ms).
    pub async fn tick(&self) -> Result<(Vec<Action>, Option<i64>), AppError> {
        let store = &self.engine.config().store;
        let now = self.engine.config().clock.now_ms();
        let mut actions = Vec::new();
        let mut next_deadline: Option<i64> = None;
        let with_inputs = store.missions_with_pending_inputs(SCAN).await?;
        let rows = store.missions(SCAN).await?;
        for row in rows {
            let parked = matches!(row.status.as_str(), "awaiting_approval" | "blocked");
            if !parked && !with_inputs.contains(&row.id) {
                continue;
            }
            let state = match self.engine.load(&row.id).await {
                Ok(state) => state,
                Err(_) => continue,
            };
            let due = state.due_expiries(now);
            if with_inputs.contains(&row.id) || !due.is_empty() {
                match self.engine.settle(&row.id).await {
                    Ok(after) => actions.push(Action {
                        mission: row.id.clone(),
                        what: ActionKind::Settled,
                        status: after.status,
                    }),
                    // Someone drives it: they take what waits.
                    Err(EngineError::Busy { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            let state = match self.engine.load(&row.id).await {
                Ok(state) => state,
                Err(_) => continue,
            };
            if let Some(at) = state
                .pending_approvals()
                .filter_map(|a| a.expires_at_ms())
                .min()
            {
                next_deadline = Some(next_deadline.map_or(at, |d| d.min(at)));
            }
            if ready_to_continue(&state) {
                self.continue_mission(&state, &mut actions).await?;
            }
        }
        Ok((actions, next_deadline))
    }

    /// Runs passes until `shutdown` fires: after each, it waits for a change in the store
    /// (an input posted, an append) or the next deadline.
    pub async fn run(
        &self,
        mut shutdown: tokio::sync::watch::Receiver<Option<String>>,
        mut on_pass: impl FnMut(&[Action]),
    ) -> Result<(), AppError> {
        let store = self.engine.config().store.clone();
        let mut feed = store.subscribe().await.ok();
        let ran = self.passes(&mut shutdown, &mut on_pass, &mut feed).await;
        self.drain().await;
        ran
    }

    async fn passes(
        &self,
        shutdown: &mut tokio::sync::watch::Receiver<Option<String>>,
        on_pass: &mut impl FnMut(&[Action]),
        feed: &mut Option<flightdeck_store::ChangeFeed>,
    ) -> Result<(), AppError> {
        loop {
            if shutdown.borrow().is_some() {
                return Ok(());
            }
            let (actions, deadline) = self.tick().await?;
            on_pass(&actions);
            let now = self.engine.config().clock.now_ms();
            let wait = deadline
                .map(|at| Duration::from_millis(u64::try_from((at - now).max(0)).unwrap_or(0)))
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
                _ = shutdown.changed() => return Ok(()),
            }
            // While its tasks drive missions, every event they append is a change: passes
            // are spaced so that a pass's reads do not grow with the missions' events.
            if self.workers > 1 {
                tokio::select! {
                    () = tokio::time::sleep(BUSY_PASS_GAP) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
            }
        }
    }
}

/// Whether a parked mission can go on by itself: awaiting approval with every approval it
/// asked for granted, or blocked by its budget with a raise recorded after the block.
pub fn ready_to_continue(state: &MissionState) -> bool {
    match state.status {
        MissionStatus::AwaitingApproval => {
            state.pending_approvals().next().is_none()
                && state
                    .approvals
                    .values()
                    .any(|a| a.status == ApprovalStatus::Approved)
        }
        MissionStatus::Blocked => {
            state
                .error
                .as_ref()
                .is_some_and(|e| e.kind == "budget_exceeded")
                && state.budget_raised_since_block
        }
        _ => false,
    }
}
