//! Budgets, breakers and the cost ledger: pure functions of a mission's state.
//!
//! The engine asks these *before* a call: a model call must fit its worst case (its
//! [`Reservation`]) in what remains of every limit, a tool call must fit in `tool_calls`, and
//! neither may start once `wall_seconds` is used up. The answer is an event to record
//! (`budget.exceeded`, `breaker.tripped`) or nothing. Spend is what `model.responded` says;
//! since each call is checked against its worst case, spend never passes a limit.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::{BreakerTripped, BudgetExceeded, ModelRequested, ModelResponded, Reservation};
use crate::state::MissionState;
use crate::template::BreakersSpec;

/// A budget dimension (CONTRACT.md `[budget]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dimension {
    Usd,
    Tokens,
    ToolCalls,
    ModelCalls,
    WallSeconds,
}

impl Dimension {
    pub const ALL: [Dimension; 5] = [
        Dimension::Usd,
        Dimension::Tokens,
        Dimension::ToolCalls,
        Dimension::ModelCalls,
        Dimension::WallSeconds,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Usd => "usd",
            Dimension::Tokens => "tokens",
            Dimension::ToolCalls => "tool_calls",
            Dimension::ModelCalls => "model_calls",
            Dimension::WallSeconds => "wall_seconds",
        }
    }

    pub fn parse(name: &str) -> Option<Dimension> {
        Dimension::ALL.into_iter().find(|d| d.as_str() == name)
    }

    /// Every dimension but `usd` counts whole units.
    pub fn is_integral(self) -> bool {
        self != Dimension::Usd
    }
}

impl MissionState {
    /// The limit of `dimension`: the template's, plus every `budget.raised`. `None`: unlimited.
    pub fn budget_limit(&self, dimension: Dimension) -> Option<f64> {
        let limits = &self.created.as_ref()?.budget;
        let pinned = match dimension {
            Dimension::Usd => limits.usd,
            Dimension::Tokens => limits.tokens.map(|v| v as f64),
            Dimension::ToolCalls => limits.tool_calls.map(|v| v as f64),
            Dimension::ModelCalls => limits.model_calls.map(|v| v as f64),
            Dimension::WallSeconds => limits.wall_seconds.map(|v| v as f64),
        }?;
        let raised = self
            .budget_raised
            .get(dimension.as_str())
            .copied()
            .unwrap_or(0.0);
        Some(pinned + raised)
    }

    /// What has been used of `dimension` by `now_ms`. Wall time counts only while the mission
    /// runs: time parked for an approval or a person does not use the budget.
    pub fn budget_used(&self, dimension: Dimension, now_ms: i64) -> f64 {
        match dimension {
            Dimension::Usd => self.cost_usd,
            Dimension::Tokens => self.tokens as f64,
            Dimension::ToolCalls => self.tool_call_count() as f64,
            Dimension::ModelCalls => self.model_calls as f64,
            Dimension::WallSeconds => (self.active_ms_at(now_ms) / 1000) as f64,
        }
    }

    /// Milliseconds the mission has been running (not parked) up to `now_ms`.
    pub fn active_ms_at(&self, now_ms: i64) -> i64 {
        let since_last = if self.status.is_active() && !self.halted {
            (now_ms - self.last_at_ms).max(0)
        } else {
            0
        };
        self.active_ms + since_last
    }

    /// What remains of `dimension` at `now_ms` (`None`: unlimited).
    pub fn budget_remaining(&self, dimension: Dimension, now_ms: i64) -> Option<f64> {
        self.budget_limit(dimension)
            .map(|limit| (limit - self.budget_used(dimension, now_ms)).max(0.0))
    }
}

/// The first limit `needs` would pass, as the event to record.
fn first_exceeded(
    state: &MissionState,
    now_ms: i64,
    needs: &[(Dimension, f64)],
    refused: &str,
) -> Option<BudgetExceeded> {
    needs.iter().find_map(|&(dimension, needed)| {
        let limit = state.budget_limit(dimension)?;
        let used = state.budget_used(dimension, now_ms);
        // Wall time is used up when it reaches the limit; the others when the call's
        // worst case would take them past it.
        let over = if dimension == Dimension::WallSeconds {
            used >= limit
        } else {
            used + needed > limit + f64::EPSILON * limit.abs().max(1.0)
        };
        over.then(|| BudgetExceeded {
            dimension: dimension.as_str().to_string(),
            used,
            limit,
            needed,
            refused: Some(refused.to_string()),
            team: None,
        })
    })
}

/// Whether a model call whose worst case is `reserved` may be made now. `usd: None` (a model
/// without a price) passes the `usd` check only when there is no `usd` limit.
pub fn check_model_call(
    state: &MissionState,
    call_id: &str,
    reserved: &Reservation,
    now_ms: i64,
) -> Option<BudgetExceeded> {
    // Unpriced: any spend could pass the limit, so the call needs all of it.
    let usd = reserved.usd.unwrap_or(f64::INFINITY);
    let mut needs = vec![
        (Dimension::ModelCalls, 1.0),
        (Dimension::Tokens, reserved.tokens as f64),
    ];
    if reserved.usd.is_some() || state.budget_limit(Dimension::Usd).is_some() {
        needs.push((Dimension::Usd, usd));
    }
    needs.push((Dimension::WallSeconds, 0.0));
    first_exceeded(state, now_ms, &needs, &format!("model call {call_id}"))
}

/// Whether a tool call may start now.
pub fn check_tool_call(state: &MissionState, call_id: &str, now_ms: i64) -> Option<BudgetExceeded> {
    first_exceeded(
        state,
        now_ms,
        &[(Dimension::ToolCalls, 1.0), (Dimension::WallSeconds, 0.0)],
        &format!("tool call {call_id}"),
    )
}

/// One line for people: which limit, how much was used, what the refused call needed.
pub fn describe_exceeded(e: &BudgetExceeded) -> String {
    let amount = |v: f64| {
        if !v.is_finite() || v >= crate::quota::UNBOUNDED {
            "an unbounded amount".to_string()
        } else if e.dimension == "usd" || e.dimension == "team_usd" {
            format!("${v:.4}")
        } else {
            format!("{}", v.round() as i64)
        }
    };
    let refused = e.refused.as_deref().unwrap_or("the next call");
    if let Some(team) = &e.team {
        return format!(
            "team {team}'s monthly quota {} would be exceeded: {} used of {} this month, and {refused} may need up to {}; it was not made",
            e.dimension.strip_prefix("team_").unwrap_or(&e.dimension),
            amount(e.used),
            amount(e.limit),
            amount(e.needed)
        );
    }
    if e.dimension == "wall_seconds" {
        return format!(
            "budget wall_seconds used up ({} of {}); {refused} was not started",
            amount(e.used),
            amount(e.limit)
        );
    }
    format!(
        "budget {} would be exceeded: {} used of {}, and {refused} may need up to {}; it was not made",
        e.dimension,
        amount(e.used),
        amount(e.limit),
        amount(e.needed)
    )
}

/// The breakers' thresholds: the template's `[breakers]`, else these defaults, so a template
/// that sets none is still protected from an agent looping for hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerLimits {
    pub repeated_action: u32,
    pub consecutive_failures: u32,
    pub no_progress: u32,
    pub provider_errors: u32,
}

impl BreakerLimits {
    pub const DEFAULT: BreakerLimits = BreakerLimits {
        repeated_action: 5,
        consecutive_failures: 8,
        no_progress: 30,
        provider_errors: 10,
    };

    pub fn from_spec(spec: &BreakersSpec) -> BreakerLimits {
        let d = BreakerLimits::DEFAULT;
        BreakerLimits {
            repeated_action: spec.repeated_action.unwrap_or(d.repeated_action),
            consecutive_failures: spec.consecutive_failures.unwrap_or(d.consecutive_failures),
            no_progress: spec.no_progress.unwrap_or(d.no_progress),
            provider_errors: spec.provider_errors.unwrap_or(d.provider_errors),
        }
    }
}

/// `tool` + the canonical JSON of its args: two calls with equal fingerprints do the same.
pub fn action_fingerprint(tool: &str, args: &Value) -> String {
    let args = crate::jcs::canonicalize(args).unwrap_or_else(|_| args.to_string());
    format!("{tool} {args}")
}

/// Before an agent's tool call: would it be the `repeated_action`th identical call in a row?
pub fn before_action(
    state: &MissionState,
    limits: &BreakerLimits,
    tool: &str,
    args: &Value,
) -> Option<BreakerTripped> {
    let fingerprint = action_fingerprint(tool, args);
    let in_a_row = state
        .recent_actions
        .iter()
        .rev()
        .take_while(|a| a.fingerprint == fingerprint)
        .count();
    (limits.repeated_action > 0 && in_a_row + 1 >= limits.repeated_action as usize).then(|| {
        BreakerTripped {
            kind: "repeated_action".into(),
            detail: format!(
                "the agent asked for the same call {} times in a row: {}",
                in_a_row + 1,
                excerpt(&fingerprint)
            ),
        }
    })
}

/// After an agent's tool call completed: too many failures in a row, or no change to the
/// worktree for too long (only roles that are meant to change it, `coder`, are held to that).
pub fn after_action(state: &MissionState, limits: &BreakerLimits) -> Option<BreakerTripped> {
    // Newest first, and only as far back as a breaker can look: this runs after every call,
    // so it must not cost more as a mission grows.
    let done = || state.recent_actions.iter().rev().filter(|a| a.ok.is_some());
    if limits.consecutive_failures > 0 {
        let failures = done()
            .take_while(|a| a.ok == Some(false))
            .take(limits.consecutive_failures as usize)
            .count();
        if failures >= limits.consecutive_failures as usize {
            return Some(BreakerTripped {
                kind: "consecutive_failures".into(),
                detail: format!("{failures} tool calls failed in a row"),
            });
        }
    }
    let last_actor = done().next().map(|a| a.actor.as_str());
    if last_actor == Some("coder") && limits.no_progress > 0 {
        let idle = done()
            .take_while(|a| a.actor == "coder" && !a.changed)
            .take(limits.no_progress as usize)
            .count();
        if idle >= limits.no_progress as usize {
            return Some(BreakerTripped {
                kind: "no_progress".into(),
                detail: format!("{idle} tool calls in a row left the worktree's diff unchanged"),
            });
        }
    }
    None
}

/// After a failed model attempt: too many provider errors without an answer in between.
pub fn after_model_failure(state: &MissionState, limits: &BreakerLimits) -> Option<BreakerTripped> {
    let failures = state.model_failures_in_a_row;
    (limits.provider_errors > 0 && failures >= limits.provider_errors).then(|| BreakerTripped {
        kind: "provider_errors".into(),
        detail: format!("{failures} model attempts failed in a row without an answer"),
    })
}

fn excerpt(text: &str) -> String {
    const MAX: usize = 160;
    if text.chars().count() <= MAX {
        return text.to_string();
    }
    let mut short: String = text.chars().take(MAX).collect();
    short.push('…');
    short
}

/// Spend of one model or one role.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Answered calls.
    pub calls: u64,
    /// Failed attempts (no tokens are billed for them here).
    pub failed: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub cost_usd: f64,
    /// The ids the provider said it served.
    pub served: Vec<String>,
    /// Attempts cut off by a crash after they were sent, whose reservations count as spent.
    #[serde(default)]
    pub interrupted: u64,
    /// The tokens those reservations held.
    #[serde(default)]
    pub interrupted_tokens: u64,
}

impl LedgerEntry {
    fn add(&mut self, r: &ModelResponded) {
        self.calls += 1;
        self.input_tokens += r.input_tokens;
        self.output_tokens += r.output_tokens;
        self.cache_read_tokens += r.cache_read_tokens;
        self.cache_write_tokens += r.cache_write_tokens;
        self.cost_usd += r.cost_usd;
        if !self.served.contains(&r.model_served) {
            self.served.push(r.model_served.clone());
        }
    }

    /// An attempt cut off by a crash after it was sent: its reservation is spent.
    fn charge_interrupted(&mut self, reserved: &Reservation) {
        self.interrupted += 1;
        self.interrupted_tokens += reserved.tokens;
        self.cost_usd += reserved.usd.unwrap_or(0.0);
    }
}

/// The cost ledger: spend per model ref and per role.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    pub by_model: BTreeMap<String, LedgerEntry>,
    pub by_role: BTreeMap<String, LedgerEntry>,
}

/// `provider:model` of an attempt, as the template names it.
pub fn model_ref_of(attempt: &ModelRequested) -> String {
    format!("{}:{}", attempt.provider, attempt.model)
}

impl Ledger {
    pub(crate) fn add_response(&mut self, attempt: &ModelRequested, r: &ModelResponded) {
        self.by_model
            .entry(model_ref_of(attempt))
            .or_default()
            .add(r);
        self.by_role.entry(attempt.role.clone()).or_default().add(r);
    }

    pub(crate) fn add_interrupted(&mut self, attempt: &ModelRequested, reserved: &Reservation) {
        self.by_model
            .entry(model_ref_of(attempt))
            .or_default()
            .charge_interrupted(reserved);
        self.by_role
            .entry(attempt.role.clone())
            .or_default()
            .charge_interrupted(reserved);
    }

    pub(crate) fn add_failure(&mut self, attempt: &ModelRequested) {
        self.by_model
            .entry(model_ref_of(attempt))
            .or_default()
            .failed += 1;
        self.by_role.entry(attempt.role.clone()).or_default().failed += 1;
    }

    /// Calls `model` (a ref) has answered in this mission.
    pub fn answered_by(&self, model: &str) -> u64 {
        self.by_model.get(model).map_or(0, |e| e.calls)
    }

    pub fn is_empty(&self) -> bool {
        self.by_model.is_empty()
    }

    /// The summary's `cost` object.
    /// The ledger as the summary's `cost` shows it.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(crate::views::CostView::of_ledger(self)).unwrap_or(Value::Null)
    }
}
