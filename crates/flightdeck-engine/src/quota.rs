//! Team quotas on the driver: before each model attempt (once the mission's own budget let
//! it through), its worst case is reserved in the store against every quota of every team
//! the mission's requester belongs to, all or nothing; when the attempt is answered or fails,
//! the reservation is settled to what it cost. An attempt cut off by a crash is never
//! settled: its whole reservation stays counted, as the mission's budget counts it.
//!
//! The reservation's id is a function of the timeline (the mission, the model call and the
//! attempt's position among the call's recorded requests), so a driver that makes the same
//! attempt again after a crash names the same reservation, which the store grants without
//! reserving twice. The pure parts (periods, charges, the event) are
//! `flightdeck_core::quota`'s; the store decides atomically.

use flightdeck_core::event::{BudgetExceeded, Reservation};
use flightdeck_core::quota::{self, QuotaDimension, TeamQuota};
use flightdeck_core::MissionState;
use flightdeck_store::{QuotaGrant, QuotaHold, QuotaReservation, QuotaSettlement};

use crate::config::EngineConfig;
use crate::error::EngineError;

/// What reserving an attempt's worst case came to.
pub(crate) enum Reserved {
    /// No quota applies to the mission.
    Free,
    /// Reserved under this id: settle it when the attempt ends.
    Held(String),
    /// A quota refused: the `budget.exceeded` to record instead of the attempt.
    Refused(BudgetExceeded),
}

/// The quotas a mission counts against: those of every team (of `[teams]`) its requester,
/// as recorded, belongs to, compared as people.
pub(crate) fn quotas_of<'a>(cfg: &'a EngineConfig, state: &MissionState) -> Vec<&'a TeamQuota> {
    if cfg.quotas.is_empty() {
        return Vec::new();
    }
    let Some(created) = state.created.as_ref() else {
        return Vec::new();
    };
    let teams = cfg.people.0.teams_of(&cfg.teams, &created.requested_by);
    cfg.quotas
        .iter()
        .filter(|q| teams.iter().any(|team| team.eq_ignore_ascii_case(&q.team)))
        .collect()
}

/// Reserves the worst case `reserved` of the next attempt of model call `call_id`, at
/// `now_ms` (whose UTC month it counts in).
pub(crate) async fn reserve(
    cfg: &EngineConfig,
    state: &MissionState,
    call_id: &str,
    reserved: &Reservation,
    now_ms: i64,
) -> Result<Reserved, EngineError> {
    let charges = quota::charges(quotas_of(cfg, state), reserved);
    if charges.is_empty() {
        return Ok(Reserved::Free);
    }
    let attempt = state
        .model_call_log
        .get(call_id)
        .map_or(0, |call| call.attempts.len())
        + 1;
    let id = quota::reservation_id(&state.id, call_id, attempt);
    let reservation = QuotaReservation {
        id: id.clone(),
        mission: state.id.clone(),
        period: quota::period_of(now_ms),
        at_ms: now_ms,
        holds: charges
            .iter()
            .map(|charge| QuotaHold {
                team: charge.team.clone(),
                dimension: charge.dimension.as_str().to_string(),
                limit: charge.limit,
                amount: charge.amount,
            })
            .collect(),
    };
    match cfg.store.reserve_quota(reservation).await? {
        QuotaGrant::Granted { .. } => Ok(Reserved::Held(id)),
        QuotaGrant::Refused {
            team,
            dimension,
            used,
            limit,
            needed,
        } => {
            let dimension = QuotaDimension::parse(&dimension).ok_or_else(|| {
                EngineError::Store(flightdeck_store::StoreError::Encode(format!(
                    "the store refused quota dimension `{dimension}`, which is none of flightdeck's"
                )))
            })?;
            Ok(Reserved::Refused(quota::exceeded(
                &team, dimension, used, limit, needed, call_id,
            )))
        }
    }
}

/// Settles reservation `id` to what its attempt cost (nothing, for a failed attempt).
pub(crate) async fn settle(
    cfg: &EngineConfig,
    id: String,
    tokens: u64,
    usd: f64,
    now_ms: i64,
) -> Result<(), EngineError> {
    let settlement = QuotaSettlement {
        id,
        at_ms: now_ms,
        spent: quota::spent(tokens, usd)
            .into_iter()
            .map(|(dimension, amount)| (dimension.as_str().to_string(), amount))
            .collect(),
    };
    cfg.store.settle_quota(settlement).await?;
    Ok(())
}
