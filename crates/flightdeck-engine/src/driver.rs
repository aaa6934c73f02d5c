//! The driver: one task per driven mission, the only writer of its timeline.
//!
//! A driver holds the mission's lease and its [`MissionLog`]. The mission's program (steps,
//! agents, acceptance, publishing) runs in the driver's task and hands every effect to a
//! port; while an effect runs, the driver waits on one channel of [`Input`]s, in the manner
//! of nextest's dispatcher: the effect finishing, a model attempt asking to go ahead, an
//! input from outside (a vote, a budget raise, a cancel; from the mission's inbox in the
//! store, or from this process), a lease tick, a deadline, a shutdown. Everything that
//! changes the timeline is applied here, in the order it arrives, so nothing foreign ever
//! races the driver: a cancel during a command kills the command and is recorded; a budget
//! raise during a command is recorded and the command goes on.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration, Instant};

use flightdeck_core::budget::BreakerLimits;
use flightdeck_core::event::{MissionError, MissionFinished, MissionInterrupted, Reservation};
use flightdeck_core::{Digest, EventKind, MissionStatus};
use flightdeck_models::Usage;
use tokio::sync::{mpsc, oneshot};

use crate::error::EngineError;
use crate::inputs::{self, Foreign, Refusal};
use crate::log::MissionLog;
use crate::shared::Shared;

/// How often observers hear that a command is still running.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// How often the inbox is read when the store's change feed cannot wake the driver.
pub(crate) const INBOX_POLL: Duration = Duration::from_millis(500);

/// A feed's next wake-up, or a slow poll when there is no feed.
async fn inbox_changed(feed: &mut Option<flightdeck_store::ChangeFeed>) {
    match feed {
        Some(feed) => {
            if feed.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => tokio::time::sleep(INBOX_POLL).await,
    }
}

/// Everything a driver waits on while an effect runs (besides the effect finishing).
pub(crate) enum Input {
    /// A model attempt asks to go ahead, or reports how it went (answered on `reply`).
    Model(Report, oneshot::Sender<Verdict>),
    /// Inputs may have been posted to the mission's inbox (a vote, a budget raise, a cancel,
    /// from this process or another).
    Inbox,
    /// Time to renew the lease.
    LeaseTick,
    /// A second has passed (observers hear how long the running effect has taken).
    Progress,
    /// The process is shutting down (SIGTERM, SIGINT): stop cleanly.
    Shutdown(String),
}

/// Why a driver stopped before its program ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The mission was cancelled (recorded); the workspace goes.
    Cancelled,
    /// The process is shutting down; the interruption is recorded.
    Shutdown(String),
    /// Another process holds the lease now: this one must not write.
    /// Who holds it now; `None`: this process again, only after its lease ran out.
    LeaseLost(Option<String>),
}

/// A running effect the driver waits for.
pub(crate) struct Running<'a> {
    /// The call it performs, for progress reports.
    pub(crate) call_id: &'a str,
    /// What observers are told it is.
    pub(crate) label: &'a str,
}

/// What a running model call tells its driver.
pub(crate) struct Report {
    pub(crate) call_id: String,
    pub(crate) role: String,
    pub(crate) limits: BreakerLimits,
    pub(crate) step: ReportStep,
}

pub(crate) enum ReportStep {
    /// About to send attempt `number` to `model`.
    Attempt {
        number: usize,
        provider: String,
        model: String,
        /// The request record's bytes (see `request_record`).
        record: Vec<u8>,
        /// The digest of the bytes sent, for providers that send any.
        wire: Option<Digest>,
        reserved: Reservation,
        /// Sampling parameters the model does not accept, left out of what is sent.
        omitted: Vec<String>,
    },
    /// The attempt was answered (and passed the pin check).
    Responded {
        model_served: String,
        usage: Usage,
        cost_usd: f64,
        /// The provider's answer as received.
        raw: Vec<u8>,
        /// The answer in the neutral format (what a rebuilt conversation reads).
        neutral: Vec<u8>,
    },
    Failed {
        error: String,
        retryable: bool,
        model: String,
        attempt: usize,
        kind: String,
        raw: Option<Vec<u8>>,
    },
    Fallback {
        from: String,
        to: String,
        reason: String,
    },
}

/// The driver's answer to a report.
pub(crate) enum Verdict {
    /// Go on; for an attempt, the digest its request record was stored under.
    Go(Option<Digest>),
    /// Stop the route (the reason is recorded).
    Abort(String),
}

/// A driven mission.
pub(crate) struct Driver {
    pub(crate) shared: Shared,
    pub(crate) log: MissionLog,
    inputs: mpsc::UnboundedReceiver<Input>,
    sender: mpsc::UnboundedSender<Input>,
    /// Inbox inputs already taken in (the watcher may see them again before they are
    /// marked applied).
    seen: BTreeSet<i64>,
    background: Vec<Background>,
    /// Wakes when an input is posted to any mission (this process or another).
    inbox: Option<flightdeck_store::ChangeFeed>,
    /// A stop that came while no effect ran, to be acted on at the next safe point.
    pending_stop: Option<Stop>,
    /// The inbox woke while events were staged: it is read at the next take point with
    /// nothing staged (see `take_inbox`).
    inbox_deferred: bool,
    /// Whether the lease is ours (a replay's driver has no real lease).
    holds_lease: bool,
    /// The mission was taken over (lease lost, or an append fenced or raced): nothing more
    /// is written, not even the refusal of an input.
    lost: bool,
    /// An error recording a model call's report: it stopped the route, and the call
    /// returns it.
    pub(crate) model_error: Option<EngineError>,
    /// The team quota reservation of the model attempt in flight, settled when it is
    /// answered or fails (see `quota.rs`).
    pub(crate) quota_hold: Option<String>,
}

impl Driver {
    /// Takes mission `id`'s lease and opens its log; starts the lease ticker, the inbox
    /// watcher and the shutdown forwarder.
    pub(crate) async fn open(shared: &Shared, id: &str) -> Result<Driver, EngineError> {
        let epoch = shared.take_lease(id).await?;
        let log = match MissionLog::open(shared.sink(), id).await {
            Ok(log) => log.fenced(epoch),
            Err(e) => {
                shared.release_lease(id).await;
                return Err(e);
            }
        };
        let (sender, inputs) = mpsc::unbounded_channel();
        let mut driver = Driver {
            shared: shared.clone(),
            log,
            inputs,
            sender,
            seen: BTreeSet::new(),
            background: Vec::new(),
            inbox: shared.cfg.store.subscribe_inputs().await.ok(),
            pending_stop: None,
            inbox_deferred: false,
            holds_lease: true,
            lost: false,
            model_error: None,
            quota_hold: None,
        };
        driver.start_background();
        shared.cfg.observer.segment_opened(driver.log.state());
        Ok(driver)
    }

    fn start_background(&mut self) {
        let sender = self.sender.clone();
        self.background.push(Background(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(PROGRESS_EVERY);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                if sender.send(Input::Progress).is_err() {
                    return;
                }
            }
        })));
        let sender = self.sender.clone();
        let lease_ttl = self.shared.cfg.lease_ttl;
        self.background.push(Background(tokio::spawn(async move {
            // Renewed at a third of its life: two renewals may fail before it runs out.
            let mut ticker = tokio::time::interval(lease_ttl / 3);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                if sender.send(Input::LeaseTick).is_err() {
                    return;
                }
            }
        })));
        let sender = self.sender.clone();
        let mut shutdown = self.shared.cfg.shutdown.clone();
        self.background.push(Background(tokio::spawn(async move {
            loop {
                if let Some(reason) = shutdown.borrow().clone() {
                    let _ = sender.send(Input::Shutdown(reason));
                    return;
                }
                if shutdown.changed().await.is_err() {
                    return;
                }
            }
        })));
    }

    /// A sender other parts of this process use to reach the driver (model attempts).
    pub(crate) fn sender(&self) -> mpsc::UnboundedSender<Input> {
        self.sender.clone()
    }

    /// Waits for an effect, taking in every other input meanwhile. The effect is dropped
    /// (which kills a command) when the mission is cancelled or the process shuts down.
    pub(crate) async fn perform<T>(
        &mut self,
        running: Running<'_>,
        effect: impl Future<Output = T>,
    ) -> Result<T, Stop> {
        self.take_waiting().await?;
        tokio::pin!(effect);
        let started = Instant::now();
        loop {
            let input = tokio::select! {
                biased;
                input = self.inputs.recv() => match input {
                    Some(input) => input,
                    None => continue,
                },
                () = inbox_changed(&mut self.inbox) => Input::Inbox,
                out = &mut effect => return Ok(out),
            };
            if let Input::Progress = input {
                // The driver's one ticker, not a timer per effect: registering a timer for
                // every model call and file read wakes the runtime's timer thread.
                let elapsed = started.elapsed();
                if elapsed >= PROGRESS_EVERY {
                    let observer = &self.shared.cfg.observer;
                    observer.still_running(running.call_id, running.label, elapsed);
                }
                continue;
            }
            if let Some(stop) = self.take(input).await {
                return Err(stop);
            }
        }
    }

    /// Takes in whatever inputs are waiting, without blocking: called at safe points between
    /// effects (before each step and tool call), so a cancel is acted on promptly.
    pub(crate) async fn take_waiting(&mut self) -> Result<(), Stop> {
        if let Some(stop) = self.pending_stop.take() {
            return Err(stop);
        }
        while let Ok(input) = self.inputs.try_recv() {
            if let Some(stop) = self.take(input).await {
                return Err(stop);
            }
        }
        match self.take_inbox_if_woken().await {
            Some(stop) => Err(stop),
            None => Ok(()),
        }
    }

    /// Takes the inbox in if it woke since it was last read (or woke while events were
    /// staged). `Some` when the driver must stop.
    async fn take_inbox_if_woken(&mut self) -> Option<Stop> {
        let woken = self.inbox.as_mut().is_some_and(|feed| feed.has_changed());
        if !(woken || self.inbox_deferred) {
            return None;
        }
        // A store that does not answer now is asked again at the next wake-up.
        let _ = self.take_inbox().await;
        self.pending_stop.take()
    }

    /// Applies one input. `Some` when the driver must stop.
    async fn take(&mut self, input: Input) -> Option<Stop> {
        match input {
            Input::Model(report, reply) => {
                let verdict = self.model_report(report).await;
                let _ = reply.send(verdict);
                // Right after the report's append (a request, stored with what was staged),
                // before an answer is staged: an input that came meanwhile is recorded
                // here, where a replay, which hands it over after that append, takes it.
                self.take_inbox_if_woken().await
            }
            Input::Inbox => {
                // A store that does not answer now is asked again at the next wake-up.
                let _ = self.take_inbox().await;
                self.pending_stop.take()
            }
            Input::LeaseTick => {
                if !self.holds_lease {
                    return None;
                }
                let epoch = self.log.fence().unwrap_or(0);
                if let Err(holder) = self.shared.renew_lease(self.log.id(), epoch).await {
                    self.lost = true;
                    return Some(Stop::LeaseLost(holder));
                }
                // A wake-up the feed lost (its watch gone) costs at most one tick.
                let _ = self.take_inbox().await;
                self.pending_stop.take()
            }
            // Between effects nothing is running: nothing to report.
            Input::Progress => None,
            Input::Shutdown(reason) => {
                self.record_shutdown(&reason).await;
                Some(Stop::Shutdown(reason))
            }
        }
    }

    /// Records a foreign input's events (or its refusal). `Some(Stop::Cancelled)` when it
    /// cancelled the mission.
    async fn foreign(&mut self, inbox: Option<i64>, foreign: Foreign) -> Option<Stop> {
        if let Some(id) = inbox {
            if !self.seen.insert(id) {
                return None;
            }
        }
        let now = self.log.now_ms();
        let gates = match self.shared.gates_of_state(self.log.state()).await {
            Ok(gates) => gates,
            Err(e) => {
                self.refuse(inbox, &e.to_string()).await;
                return None;
            }
        };
        match inputs::apply(
            self.log.state(),
            &gates,
            &self.shared.cfg.people,
            &foreign,
            now,
        ) {
            Ok(events) => {
                let consumes = inbox.into_iter().collect();
                match self.log.append_consuming(events, consumes).await {
                    Ok(_) => {}
                    // Someone else drives the mission now (its lease was taken over, or it
                    // moved on): the input stays pending for them, and this driver stops
                    // without writing anything more, a refusal included.
                    Err(EngineError::Raced { .. }) => {
                        self.lost = true;
                        return Some(Stop::LeaseLost(None));
                    }
                    Err(e) => {
                        self.refuse(inbox, &e.to_string()).await;
                        return None;
                    }
                }
                if matches!(foreign, Foreign::Cancel { .. })
                    && self.log.state().status == MissionStatus::Cancelled
                {
                    return Some(Stop::Cancelled);
                }
                None
            }
            Err(refusal) => {
                self.refuse(inbox, &refusal.to_string()).await;
                None
            }
        }
    }

    async fn refuse(&self, inbox: Option<i64>, reason: &str) {
        if let Some(id) = inbox {
            let _ = self
                .shared
                .cfg
                .store
                .refuse_input(id, reason, self.log.now_ms())
                .await;
        }
    }

    /// On SIGTERM / SIGINT: what is staged is stored, and the interruption recorded with
    /// the calls that were cut off, so a resume finds it said.
    async fn record_shutdown(&mut self, reason: &str) {
        let state = self.log.state();
        if state.status.is_terminal() || state.status.is_parked() {
            return;
        }
        let calls: Vec<String> = state
            .tool_calls
            .iter()
            .filter(|(_, call)| call.completed.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        let reason = if calls.is_empty() {
            format!("flightdeck stopped ({reason}) before the mission finished")
        } else {
            format!(
                "flightdeck stopped ({reason}) while {} ran",
                calls.join(", ")
            )
        };
        let event = EventKind::MissionInterrupted(MissionInterrupted {
            reason,
            calls,
            handed_back: self.shared.cfg.hand_back_on_shutdown,
        });
        let _ = self.log.append(vec![event]).await;
    }

    /// Takes in the mission's pending inbox inputs now (before it is driven, and when its
    /// program has ended, so an input that came as it parked is not left waiting).
    ///
    /// Never while events are staged: then the inbox is read at the next take point after
    /// the append that stores them (a read's request and result and a model's answer are
    /// staged only for the moment between a model call and the next durable record). So
    /// every input is recorded right after an append, which is where a replay hands it over.
    pub(crate) async fn take_inbox(&mut self) -> Result<(), EngineError> {
        if self.log.has_staged() {
            self.inbox_deferred = true;
            return Ok(());
        }
        self.inbox_deferred = false;
        let rows = self.shared.cfg.store.pending_inputs(self.log.id()).await?;
        for row in rows {
            if self.lost {
                break;
            }
            if self.seen.contains(&row.id) {
                continue;
            }
            match Foreign::from_row(&row) {
                Ok(foreign) => {
                    if let Some(stop) = self.foreign(Some(row.id), foreign).await {
                        self.pending_stop = Some(stop);
                    }
                }
                Err(_) => {
                    self.seen.insert(row.id);
                    self.refuse(Some(row.id), "the input cannot be read").await;
                }
            }
        }
        Ok(())
    }

    /// Records every pending approval whose time ran out (a deny: the mission fails).
    pub(crate) async fn fire_deadlines(&mut self) -> Result<bool, EngineError> {
        let now = self.log.now_ms();
        let Some(events) = inputs::expiries(self.log.state(), now) else {
            return Ok(false);
        };
        self.log.append(events).await?;
        Ok(true)
    }

    /// A stop that came in while nothing ran, if any.
    pub(crate) fn take_stop(&mut self) -> Option<Stop> {
        self.pending_stop.take()
    }

    /// Ends the drive: stores what is staged, takes in what came meanwhile, stops the
    /// background tasks and gives the lease back.
    pub(crate) async fn close(mut self) -> Result<flightdeck_core::MissionState, EngineError> {
        let flushed = self.log.flush().await;
        // A driver that lost the mission leaves what waits to whoever drives it now.
        if flushed.is_ok() && !self.lost && !self.log.state().status.is_terminal() {
            let _ = self.take_inbox().await;
        }
        // A cancelled mission's workspace goes, whoever took the cancel in.
        if self.log.state().status == MissionStatus::Cancelled {
            self.remove_workspace().await;
        }
        self.background.clear();
        self.shared.cfg.observer.segment_closed(self.log.state());
        if self.holds_lease {
            self.shared.release_lease(self.log.id()).await;
        }
        flushed?;
        Ok(self.log.into_state())
    }

    /// Records the end of the mission.
    pub(crate) async fn finish(
        &mut self,
        status: MissionStatus,
        error: Option<MissionError>,
        summary: Option<String>,
    ) -> Result<(), EngineError> {
        let finished = EventKind::MissionFinished(MissionFinished {
            status,
            error,
            summary,
        });
        self.log.append(vec![finished]).await?;
        Ok(())
    }
}

/// A background task of a driver, stopped when the driver goes (however it goes).
struct Background(tokio::task::JoinHandle<()>);

impl Drop for Background {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How an input posted to a mission went.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// Recorded: the mission's timeline now ends at `seq`.
    Recorded { seq: u64 },
    /// Refused, nothing recorded.
    Refused(Refusal),
}
