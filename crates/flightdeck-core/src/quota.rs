//! Team quotas, the pure part: what a team may spend per UTC calendar month
//! (`[quotas."@team"]` of the installation config), what one model call must hold against
//! each quota of its requester's teams, and the `budget.exceeded` a refusal records.
//!
//! A quota is enforced like a mission budget: before each model attempt its worst case (the
//! attempt's [`Reservation`]) is reserved against every quota of every team the requester
//! belongs to, all or nothing, in the store (which is shared by every process, so concurrent
//! missions can never overspend together); when the attempt ends the reservation is settled
//! to what it actually cost. The store keeps the sums; this module only says what to ask.

use serde::{Deserialize, Serialize};

use crate::event::{BudgetExceeded, Reservation};

/// What a call needs when its worst case cannot be bounded (a model without a price under a
/// `usd` quota): more than any quota allows, and still a finite number (events are JSON).
pub const UNBOUNDED: f64 = f64::MAX;

/// What a quota limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuotaDimension {
    Usd,
    Tokens,
}

impl QuotaDimension {
    pub const ALL: [QuotaDimension; 2] = [QuotaDimension::Usd, QuotaDimension::Tokens];

    /// The name the store keeps sums under (`usd`, `tokens`).
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaDimension::Usd => "usd",
            QuotaDimension::Tokens => "tokens",
        }
    }

    /// `budget.exceeded.dimension` when this quota refuses a call.
    pub fn exceeded_dimension(self) -> &'static str {
        match self {
            QuotaDimension::Usd => "team_usd",
            QuotaDimension::Tokens => "team_tokens",
        }
    }

    pub fn parse(name: &str) -> Option<QuotaDimension> {
        QuotaDimension::ALL.into_iter().find(|d| d.as_str() == name)
    }
}

/// `[quotas."@team"]`: one team's limits per UTC calendar month. `None`: that dimension is
/// not limited.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TeamQuota {
    /// The team's handle, as `[teams]` names it (`@acme/platform`).
    pub team: String,
    pub usd_per_month: Option<f64>,
    pub tokens_per_month: Option<u64>,
}

impl TeamQuota {
    /// The limited dimensions with their limits, `usd` first.
    pub fn limits(&self) -> Vec<(QuotaDimension, f64)> {
        let mut limits = Vec::with_capacity(2);
        if let Some(usd) = self.usd_per_month {
            limits.push((QuotaDimension::Usd, usd));
        }
        if let Some(tokens) = self.tokens_per_month {
            limits.push((QuotaDimension::Tokens, tokens as f64));
        }
        limits
    }
}

/// What one quota must hold for one call.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaCharge {
    pub team: String,
    pub dimension: QuotaDimension,
    /// The quota's limit for the month.
    pub limit: f64,
    /// The call's worst case in this dimension.
    pub amount: f64,
}

/// What a model attempt whose worst case is `reserved` must hold against `quotas` (the
/// quotas of the requester's teams): one charge per limited dimension of each, ordered by
/// team and dimension (the order the store takes them in, so that two reservations never
/// wait on each other's rows in opposite orders). A model without a price needs
/// [`UNBOUNDED`] of a `usd` quota: it is refused, as it is by a mission's `usd` budget.
pub fn charges<'a>(
    quotas: impl IntoIterator<Item = &'a TeamQuota>,
    reserved: &Reservation,
) -> Vec<QuotaCharge> {
    let mut charges: Vec<QuotaCharge> = quotas
        .into_iter()
        .flat_map(|quota| {
            quota
                .limits()
                .into_iter()
                .map(move |(dimension, limit)| QuotaCharge {
                    team: quota.team.clone(),
                    dimension,
                    limit,
                    amount: match dimension {
                        QuotaDimension::Usd => reserved.usd.unwrap_or(UNBOUNDED),
                        QuotaDimension::Tokens => reserved.tokens as f64,
                    },
                })
        })
        .collect();
    charges.sort_by(|a, b| (&a.team, a.dimension).cmp(&(&b.team, b.dimension)));
    charges.dedup_by(|a, b| a.team == b.team && a.dimension == b.dimension);
    charges
}

/// What a call costs in each dimension, for settling its reservation.
pub fn spent(tokens: u64, usd: f64) -> [(QuotaDimension, f64); 2] {
    [
        (QuotaDimension::Usd, usd),
        (QuotaDimension::Tokens, tokens as f64),
    ]
}

/// The UTC calendar month `at_ms` falls in, as `YYYY-MM`: the period a quota counts in.
pub fn period_of(at_ms: i64) -> String {
    let days = at_ms.div_euclid(86_400_000);
    let (year, month, _) = civil_from_days(days);
    format!("{year:04}-{month:02}")
}

/// Year, month (1-12) and day of the proleptic Gregorian calendar `days` after 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The id of the reservation of attempt `attempt` (1 for a call's first `model.requested`,
/// counted over the timeline, so interrupted attempts count too) of model call `call_id`:
/// the same attempt always names the same reservation, so a driver that retries it after a
/// crash never reserves twice.
pub fn reservation_id(mission: &str, call_id: &str, attempt: usize) -> String {
    format!("{mission}/{call_id}/{attempt}")
}

/// The `budget.exceeded` a quota's refusal records: `used` is what the team's missions used
/// and hold this month, `needed` the refused call's worst case.
pub fn exceeded(
    team: &str,
    dimension: QuotaDimension,
    used: f64,
    limit: f64,
    needed: f64,
    call_id: &str,
) -> BudgetExceeded {
    BudgetExceeded {
        dimension: dimension.exceeded_dimension().to_string(),
        used,
        limit,
        needed,
        refused: Some(format!("model call {call_id}")),
        team: Some(team.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_utc_calendar_months() {
        let cases = [
            (0, "1970-01"),
            (-1, "1969-12"),
            // 2026-01-31T23:59:59.999Z and the next millisecond.
            (1_769_903_999_999, "2026-01"),
            (1_769_904_000_000, "2026-02"),
            // A leap day, and the first instant of March.
            (1_709_164_800_000, "2024-02"),
            (1_709_251_200_000, "2024-03"),
            (253_402_300_799_999, "9999-12"),
        ];
        for (at, period) in cases {
            assert_eq!(period_of(at), period, "{at}");
            let formatted = crate::clock::format_rfc3339_millis(at);
            assert_eq!(&formatted[..7], period, "{formatted}");
        }
    }

    #[test]
    fn charges_cover_every_limited_dimension_of_every_team_once_in_order() {
        let quotas = [
            TeamQuota {
                team: "@b/team".into(),
                usd_per_month: Some(5.0),
                tokens_per_month: Some(1_000),
            },
            TeamQuota {
                team: "@a/team".into(),
                usd_per_month: None,
                tokens_per_month: Some(10),
            },
        ];
        let reserved = Reservation {
            tokens: 300,
            usd: Some(0.25),
        };
        let got: Vec<(String, QuotaDimension, f64, f64)> = charges(&quotas, &reserved)
            .into_iter()
            .map(|c| (c.team, c.dimension, c.limit, c.amount))
            .collect();
        assert_eq!(
            got,
            [
                ("@a/team".into(), QuotaDimension::Tokens, 10.0, 300.0),
                ("@b/team".into(), QuotaDimension::Usd, 5.0, 0.25),
                ("@b/team".into(), QuotaDimension::Tokens, 1_000.0, 300.0),
            ]
        );
        // A model without a price cannot be bounded in usd.
        let unpriced = Reservation {
            tokens: 300,
            usd: None,
        };
        let usd = charges(&quotas, &unpriced)
            .into_iter()
            .find(|c| c.dimension == QuotaDimension::Usd)
            .map(|c| c.amount);
        assert_eq!(usd, Some(UNBOUNDED));
    }

    #[test]
    fn a_refusal_names_the_team_and_reads_as_a_quota() {
        let e = exceeded(
            "@acme/platform",
            QuotaDimension::Usd,
            4.5,
            5.0,
            0.75,
            "step-1.m2",
        );
        assert_eq!(e.dimension, "team_usd");
        assert_eq!(e.team.as_deref(), Some("@acme/platform"));
        let said = crate::budget::describe_exceeded(&e);
        assert!(said.contains("@acme/platform"), "{said}");
        assert!(said.contains("$4.5000 used of $5.0000"), "{said}");
        let json = serde_json::to_value(&e).unwrap_or_default();
        assert_eq!(json["team"], "@acme/platform");
        let unbounded = exceeded("@t/x", QuotaDimension::Usd, 0.0, 1.0, UNBOUNDED, "s");
        assert!(crate::budget::describe_exceeded(&unbounded).contains("an unbounded amount"));
        assert_eq!(reservation_id("m-1", "step-1.m2", 3), "m-1/step-1.m2/3");
    }
}
