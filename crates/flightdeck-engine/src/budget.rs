//! Raising a mission's budget (`flightdeck budget MISSION --add DIM=AMOUNT`), and the one
//! kind of foreign append a driving process accepts while it works: a raise changes limits,
//! never what the mission has done, so the driver folds it in and goes on.

use flightdeck_core::budget::Dimension;
use flightdeck_core::event::BudgetRaised;
use flightdeck_core::{EventKind, MissionState};

use crate::{Engine, EngineError};

impl Engine {
    /// Records `budget.raised` for each `(dimension, amount)`, by `by`. Refused (nothing
    /// recorded) for a finished mission, an unknown dimension, a dimension the template does
    /// not limit, or an amount that is not positive (or not whole, except `usd`).
    pub async fn raise_budget(
        &self,
        id: &str,
        by: &str,
        adds: &[(String, f64)],
    ) -> Result<MissionState, EngineError> {
        let bad = |reason: String| EngineError::BadBudget {
            id: id.to_string(),
            reason,
        };
        if adds.is_empty() {
            return Err(bad("nothing to add".into()));
        }
        for _ in 0..5 {
            let mut state = self.load(id).await?;
            if state.status.is_terminal() {
                return Err(EngineError::AlreadyFinished {
                    id: state.id.clone(),
                    status: state.status,
                });
            }
            let mut events = Vec::with_capacity(adds.len());
            for (name, amount) in adds {
                let dimension = Dimension::parse(name).ok_or_else(|| {
                    bad(format!(
                        "`{name}` is not a budget dimension (usd, tokens, tool_calls, model_calls, wall_seconds)"
                    ))
                })?;
                if !(amount.is_finite() && *amount > 0.0) {
                    return Err(bad(format!("{name}={amount}: the amount must be positive")));
                }
                if dimension.is_integral() && amount.fract() != 0.0 {
                    return Err(bad(format!("{name}={amount}: {name} counts whole units")));
                }
                if state.budget_limit(dimension).is_none() {
                    return Err(bad(format!(
                        "the template sets no `{name}` limit, so there is nothing to raise"
                    )));
                }
                events.push(EventKind::BudgetRaised(BudgetRaised {
                    by: by.to_string(),
                    dimension: name.clone(),
                    amount: *amount,
                }));
            }
            match self.append(&mut state, events).await {
                Ok(_) => return Ok(state),
                Err(EngineError::Raced { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(EngineError::Raced { id: id.to_string() })
    }

    /// Folds into `state` what others appended since, when all of it is budget raises.
    /// False (and `state` unchanged) when anything else was appended.
    pub(crate) async fn adopt_budget_raises(
        &self,
        state: &mut MissionState,
    ) -> Result<bool, EngineError> {
        let newer = self.config().store.events(&state.id, state.events).await?;
        let mut next = state.clone();
        for event in &newer {
            if event.event_type != "budget.raised" {
                return Ok(false);
            }
            next.apply_stored(event)
                .map_err(|source| EngineError::Corrupt {
                    id: state.id.clone(),
                    source,
                })?;
        }
        *state = next;
        Ok(true)
    }
}
