//! Live streams read the store once per change, not once per client.
//!
//! The store's change feed says only "something may have changed" (any mission, any
//! process). One task ([`Tails::run`]) takes every wake-up, reads what came after the tip
//! of each mission someone streams (usually nothing), and publishes a mission's new events
//! once on its [`Tip`]. Each stream waits on its mission's tip, takes the events it has not
//! sent from it, and reads the store itself only when it fell behind what the tip holds. So
//! 200 clients of one mission cost one read per append, and an append to another mission
//! costs one empty read per streamed mission, whatever the number of clients.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use flightdeck_core::StoredEvent;
use flightdeck_store::{ChangeFeed, EventStore, StoreError};
use tokio::sync::watch;

/// Where a streamed mission is.
#[derive(Debug, Clone, Default)]
pub struct Tip {
    /// The seq of its last event.
    pub last_seq: u64,
    /// Whether it has finished (nothing more will come).
    pub finished: bool,
    /// The events read at the last change, in order, ending at `last_seq` (empty before the
    /// first change the server saw).
    pub recent: Arc<Vec<StoredEvent>>,
}

pub struct Tails {
    store: Arc<dyn EventStore>,
    missions: Mutex<HashMap<String, watch::Sender<Tip>>>,
}

fn is_finished(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "cancelled")
}

impl Tails {
    pub fn new(store: Arc<dyn EventStore>) -> Arc<Tails> {
        Arc::new(Tails {
            store,
            missions: Mutex::new(HashMap::new()),
        })
    }

    /// The tip of `mission`, to wait on. Taken before the stream's first read: a change
    /// after that read is published on it.
    pub async fn watch(&self, mission: &str) -> Result<watch::Receiver<Tip>, StoreError> {
        if let Some(sender) = self.lock().get(mission) {
            return Ok(sender.subscribe());
        }
        let row = self.store.mission(mission).await?;
        let tip = Tip {
            last_seq: row.as_ref().map_or(0, |r| r.last_seq),
            finished: row.as_ref().is_some_and(|r| is_finished(&r.status)),
            recent: Arc::new(Vec::new()),
        };
        let mut missions = self.lock();
        let sender = missions
            .entry(mission.to_string())
            .or_insert_with(|| watch::channel(tip).0);
        Ok(sender.subscribe())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<Tip>>> {
        // A map of senders stays consistent whatever a panicking holder did.
        self.missions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Ends every stream: their tips are dropped, so each one's wait ends (its client
    /// reconnects with `Last-Event-ID` and reads what it missed).
    pub fn close(&self) {
        self.lock().clear();
    }

    /// Publishes what changed, at every wake-up of `feed` (subscribed before the server
    /// took its first request), until `shutdown`. The caller closes the tails when this
    /// returns, however it returns.
    pub async fn run(
        self: Arc<Tails>,
        mut feed: ChangeFeed,
        mut shutdown: watch::Receiver<Option<String>>,
    ) {
        loop {
            tokio::select! {
                changed = feed.changed() => if changed.is_err() { return },
                _ = shutdown.changed() => return,
            }
            let watched: Vec<(String, Tip)> = {
                let mut missions = self.lock();
                missions.retain(|_, sender| sender.receiver_count() > 0);
                missions
                    .iter()
                    .map(|(id, sender)| (id.clone(), sender.borrow().clone()))
                    .collect()
            };
            for (id, tip) in watched {
                // Only what came after the tip: usually nothing, and no summary is read. A
                // read that fails ends the mission's streams rather than leave them waiting
                // for a change that was not published.
                let Ok(events) = self.store.events(&id, tip.last_seq).await else {
                    self.lock().remove(&id);
                    continue;
                };
                let Some(last) = events.last() else {
                    continue;
                };
                let next = Tip {
                    last_seq: last.seq,
                    finished: tip.finished
                        || events.iter().any(|e| e.event_type == "mission.finished"),
                    recent: Arc::new(events),
                };
                if let Some(sender) = self.lock().get(&id) {
                    sender.send_replace(next);
                }
            }
        }
    }
}
