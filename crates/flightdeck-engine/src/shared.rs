//! What every driver of one engine shares: the configuration, the missions this process
//! drives (their leases) and the scripts parsed once. Cheap to clone.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use flightdeck_core::event::MissionCreated;
use flightdeck_core::template::Template;
use flightdeck_core::{Digest, MissionId, MissionState};

use crate::config::EngineConfig;
use crate::error::EngineError;
use crate::log::LogSink;
use crate::worker::WorkerId;

#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) cfg: Arc<EngineConfig>,
    /// Pinned scripts, parsed once: each agent run builds its providers, and a long
    /// script takes longer to parse than a run's step.
    scripts: Arc<Mutex<BTreeMap<Digest, Arc<flightdeck_models::Script>>>>,
    /// Missions driven by this process now: a second driver of one mission in the same
    /// process is refused like one in another process.
    driving: Arc<Mutex<BTreeSet<String>>>,
}

impl Shared {
    pub(crate) fn new(cfg: EngineConfig) -> Shared {
        Shared {
            cfg: Arc::new(cfg),
            scripts: Default::default(),
            driving: Default::default(),
        }
    }

    pub(crate) fn sink(&self) -> LogSink {
        LogSink {
            store: self.cfg.store.clone(),
            artifacts: self.cfg.artifacts.clone(),
            clock: self.cfg.clock.clone(),
            secrets: self.cfg.secrets.clone(),
            observer: self.cfg.observer.clone(),
            projection: self.cfg.projection,
            anchors: self.cfg.anchors.clone(),
            team_of: {
                let cfg = self.cfg.clone();
                Arc::new(move |who: &str| {
                    cfg.people
                        .0
                        .teams_of(&cfg.teams, who)
                        .first()
                        .map(|team| (*team).to_string())
                })
            },
        }
    }

    pub(crate) fn cached_script(&self, digest: &Digest) -> Option<Arc<flightdeck_models::Script>> {
        let cache = self.scripts.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(digest).cloned()
    }

    pub(crate) fn cache_script(&self, digest: &Digest, script: &Arc<flightdeck_models::Script>) {
        let mut cache = self.scripts.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(digest.clone(), script.clone());
    }

    /// How long a lease lasts without renewal, in ms.
    fn lease_ttl_ms(&self) -> i64 {
        i64::try_from(self.cfg.lease_ttl.as_millis()).unwrap_or(i64::MAX)
    }

    /// Takes mission `id`'s lease for this process, or says who holds it. Returns the
    /// lease's epoch, which every append of the driver carries (fencing).
    pub(crate) async fn take_lease(&self, id: &str) -> Result<u64, EngineError> {
        {
            let mut driving = self.driving.lock().unwrap_or_else(|p| p.into_inner());
            if !driving.insert(id.to_string()) {
                return Err(EngineError::Busy {
                    id: id.to_string(),
                    owner: self.cfg.worker.0.clone(),
                });
            }
        }
        let taken = self.acquire(id).await;
        if taken.is_err() {
            self.forget(id);
        }
        taken
    }

    /// Now on the clock leases run on: the database's (see `EventStore::clock_ms`).
    async fn lease_clock_ms(&self) -> Result<i64, flightdeck_store::StoreError> {
        self.cfg.store.clock_ms().await
    }

    async fn acquire(&self, id: &str) -> Result<u64, EngineError> {
        let me = &self.cfg.worker.0;
        let now = self.lease_clock_ms().await?;
        let store = &self.cfg.store;
        let holder = store
            .acquire_lease(id, me, now, self.lease_ttl_ms(), None)
            .await?;
        let holder = match holder {
            Some(lease) if &lease.owner != me && WorkerId::is_dead_on_this_host(&lease.owner) => {
                store
                    .acquire_lease(id, me, now, self.lease_ttl_ms(), Some(&lease.owner))
                    .await?
            }
            other => other,
        };
        match holder {
            Some(lease) if &lease.owner == me => Ok(lease.epoch),
            Some(lease) => Err(EngineError::Busy {
                id: id.to_string(),
                owner: lease.owner,
            }),
            None => Err(EngineError::UnknownMission(id.to_string())),
        }
    }

    fn forget(&self, id: &str) {
        let mut driving = self.driving.lock().unwrap_or_else(|p| p.into_inner());
        driving.remove(id);
    }

    /// Renews the lease of epoch `epoch`. When it is lost: the holder's name when another
    /// process took it, `None` when this one holds it again only after it ran out (a new
    /// epoch, which the driver's appends do not carry: someone may have driven it between).
    pub(crate) async fn renew_lease(&self, id: &str, epoch: u64) -> Result<(), Option<String>> {
        let me = &self.cfg.worker.0;
        let Ok(now) = self.lease_clock_ms().await else {
            // A store that does not answer now may answer at the next tick.
            return Ok(());
        };
        match self
            .cfg
            .store
            .acquire_lease(id, me, now, self.lease_ttl_ms(), None)
            .await
        {
            Ok(Some(lease)) if &lease.owner == me && lease.epoch == epoch => Ok(()),
            Ok(Some(lease)) if &lease.owner == me => Err(None),
            Ok(Some(lease)) => Err(Some(lease.owner)),
            // A store that does not answer now may answer at the next tick; the lease
            // outlives a few missed renewals.
            Ok(None) | Err(_) => Ok(()),
        }
    }

    pub(crate) async fn release_lease(&self, id: &str) {
        let _ = self.cfg.store.release_lease(id, &self.cfg.worker.0).await;
        self.forget(id);
    }

    /// Whether no live process holds mission `id`'s lease.
    pub(crate) async fn lease_is_free(&self, id: &str) -> Result<bool, EngineError> {
        if self
            .driving
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id)
        {
            return Ok(false);
        }
        let row = self.cfg.store.mission(id).await?;
        let now = self.lease_clock_ms().await?;
        Ok(row.and_then(|r| r.lease).is_none_or(|lease| {
            lease.expires_ms <= now || WorkerId::is_dead_on_this_host(&lease.owner)
        }))
    }

    /// The mission's template as it was pinned at creation, rendered with its params.
    pub(crate) async fn template_of(
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
        // A request from GitHub says what it wants in the issue (or the review): that is
        // the goal, not the template's.
        if let Some(goal) = created.goal.as_ref().filter(|g| !g.trim().is_empty()) {
            rendered.template.goal = Some(goal.clone());
        }
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
}
