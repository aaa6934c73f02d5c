//! Team quotas in the store: reservations held against a team's monthly sums and settled to
//! what calls cost, atomically, so that missions driven by any number of processes on any
//! number of machines never hold or spend together more than a quota allows.
//!
//! Two tables (migrations `*_quotas.sql`): `quota_usage`, one row per team, dimension and
//! period with what is `reserved` (calls in flight) and `spent`; `quota_holds`, one row per
//! hold of a reservation (a team's dimension), `spent` NULL until it is settled. A
//! reservation is all or nothing: every hold fits (`reserved + spent + amount <= limit`)
//! and is added, or nothing is written. Its id is the caller's and deterministic, so asking
//! again for a reservation that exists changes nothing.
//!
//! - SQLite: through the store's one writer (`writer.rs`), in its transaction: nothing
//!   else writes meanwhile.
//! - PostgreSQL: one transaction per reservation; each sum is added by one `INSERT … ON
//!   CONFLICT DO UPDATE … WHERE reserved + spent + amount <= limit`, which locks the row and
//!   judges its latest committed value, so two reservations on different machines are
//!   decided one after the other. Rows are taken in (team, dimension) order, so two
//!   reservations never wait on each other.
//!
//! The store does not interpret teams or dimensions: it adds amounts of equal names.

use rusqlite::{params, OptionalExtension};
use sqlx::Row;

use crate::StoreError;

/// One quota a reservation holds an amount against.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaHold {
    /// Whose quota (`@acme/platform`).
    pub team: String,
    /// What it limits (`usd`, `tokens`).
    pub dimension: String,
    /// The quota's limit for the period (what is reserved and spent may not pass it).
    pub limit: f64,
    /// What the reservation holds: the call's worst case.
    pub amount: f64,
}

/// A reservation to make: every hold or none.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaReservation {
    /// Chosen by the caller, the same for the same call: asked again, a reservation that
    /// exists is granted without reserving twice.
    pub id: String,
    /// The mission it is for (kept with its holds).
    pub mission: String,
    /// The period its holds count in (`2026-03`); settling counts in the same.
    pub period: String,
    pub at_ms: i64,
    pub holds: Vec<QuotaHold>,
}

/// The answer to a reservation.
#[derive(Debug, Clone, PartialEq)]
pub enum QuotaGrant {
    /// Every hold is reserved. `again`: the reservation already existed (nothing changed).
    Granted { again: bool },
    /// This hold did not fit, and nothing was reserved: `used` is what the team's sum held
    /// and spent, `needed` the hold's amount.
    Refused {
        team: String,
        dimension: String,
        used: f64,
        limit: f64,
        needed: f64,
    },
}

/// What a reserved call cost, replacing its reservation.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaSettlement {
    /// The reservation's id.
    pub id: String,
    pub at_ms: i64,
    /// The cost per dimension (a dimension not listed cost nothing).
    pub spent: Vec<(String, f64)>,
}

/// One team's sums in one dimension and period.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaUsage {
    pub team: String,
    pub dimension: String,
    pub period: String,
    /// Held by calls not settled yet (in flight, or cut off by a crash).
    pub reserved: f64,
    pub spent: f64,
}

/// A write the SQLite writer applies in its transaction.
pub(crate) enum QuotaWrite {
    Reserve(QuotaReservation),
    Settle(QuotaSettlement),
}

/// What a quota write answers: a reservation its grant, a settlement whether it settled
/// anything.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum QuotaAnswer {
    Reserved(QuotaGrant),
    Settled(bool),
}

/// The most a sum may reach: the limit, with the tolerance mission budgets allow for
/// floating-point sums (`flightdeck_core::budget`).
fn ceiling(limit: f64) -> f64 {
    limit + f64::EPSILON * limit.abs().max(1.0)
}

/// The holds in the order their rows are taken: (team, dimension).
fn ordered(holds: &[QuotaHold]) -> Vec<&QuotaHold> {
    let mut holds: Vec<&QuotaHold> = holds.iter().collect();
    holds.sort_by(|a, b| (&a.team, &a.dimension).cmp(&(&b.team, &b.dimension)));
    holds
}

/// Refuses what no store can hold: a reservation without holds, amounts or limits that are
/// not finite numbers of zero or more, one team's dimension held twice.
fn check(reservation: &QuotaReservation) -> Result<(), StoreError> {
    let bad = |why: String| {
        Err(StoreError::Encode(format!(
            "quota reservation {}: {why}",
            reservation.id
        )))
    };
    if reservation.holds.is_empty() {
        return bad("it holds nothing".into());
    }
    let holds = ordered(&reservation.holds);
    for (i, hold) in holds.iter().enumerate() {
        let sane = |v: f64| v.is_finite() && v >= 0.0;
        if !(sane(hold.amount) && sane(hold.limit)) {
            return bad(format!(
                "{} {}: amount {} and limit {} must be finite and not negative",
                hold.team, hold.dimension, hold.amount, hold.limit
            ));
        }
        if i > 0 && holds[i - 1].team == hold.team && holds[i - 1].dimension == hold.dimension {
            return bad(format!("{} {} is held twice", hold.team, hold.dimension));
        }
    }
    Ok(())
}

// --- SQLite (on the writer's transaction) ---------------------------------------------------

/// One quota write of the writer's batch. The outer error fails the batch (SQL); the inner
/// one only this write, which then has written nothing.
pub(crate) fn sqlite_write(
    tx: &rusqlite::Transaction<'_>,
    write: &QuotaWrite,
) -> Result<Result<QuotaAnswer, StoreError>, StoreError> {
    match write {
        QuotaWrite::Reserve(reservation) => {
            if let Err(e) = check(reservation) {
                return Ok(Err(e));
            }
            sqlite_reserve(tx, reservation).map(|grant| Ok(QuotaAnswer::Reserved(grant)))
        }
        QuotaWrite::Settle(settlement) => {
            sqlite_settle(tx, settlement).map(|settled| Ok(QuotaAnswer::Settled(settled)))
        }
    }
}

fn sqlite_reserve(
    tx: &rusqlite::Transaction<'_>,
    reservation: &QuotaReservation,
) -> Result<QuotaGrant, StoreError> {
    let exists: Option<i64> = tx
        .prepare_cached("SELECT 1 FROM quota_holds WHERE reservation = ?1 LIMIT 1")?
        .query_row(params![reservation.id], |row| row.get(0))
        .optional()?;
    if exists.is_some() {
        return Ok(QuotaGrant::Granted { again: true });
    }
    let holds = ordered(&reservation.holds);
    // Judged first, written after: a refusal writes nothing (nothing else writes meanwhile).
    let mut used = tx.prepare_cached(
        "SELECT reserved + spent FROM quota_usage WHERE team = ?1 AND dimension = ?2 AND period = ?3",
    )?;
    for hold in &holds {
        let now: f64 = used
            .query_row(
                params![hold.team, hold.dimension, reservation.period],
                |row| row.get(0),
            )
            .optional()?
            .unwrap_or(0.0);
        if now + hold.amount > ceiling(hold.limit) {
            return Ok(QuotaGrant::Refused {
                team: hold.team.clone(),
                dimension: hold.dimension.clone(),
                used: now,
                limit: hold.limit,
                needed: hold.amount,
            });
        }
    }
    let mut add = tx.prepare_cached(
        "INSERT INTO quota_usage (team, dimension, period, reserved, spent) VALUES (?1, ?2, ?3, ?4, 0)
         ON CONFLICT (team, dimension, period) DO UPDATE SET reserved = reserved + excluded.reserved",
    )?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO quota_holds (reservation, team, dimension, period, mission, amount, reserved_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for hold in &holds {
        add.execute(params![
            hold.team,
            hold.dimension,
            reservation.period,
            hold.amount
        ])?;
        insert.execute(params![
            reservation.id,
            hold.team,
            hold.dimension,
            reservation.period,
            reservation.mission,
            hold.amount,
            reservation.at_ms
        ])?;
    }
    Ok(QuotaGrant::Granted { again: false })
}

/// The cost of `dimension` in a settlement.
fn spent_in(settlement: &QuotaSettlement, dimension: &str) -> f64 {
    settlement
        .spent
        .iter()
        .find(|(name, _)| name == dimension)
        .map_or(0.0, |(_, amount)| amount.max(0.0))
}

fn sqlite_settle(
    tx: &rusqlite::Transaction<'_>,
    settlement: &QuotaSettlement,
) -> Result<bool, StoreError> {
    let open: Vec<(String, String, String, f64)> = tx
        .prepare_cached(
            "SELECT team, dimension, period, amount FROM quota_holds
             WHERE reservation = ?1 AND spent IS NULL ORDER BY team, dimension",
        )?
        .query_map(params![settlement.id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut settle = tx.prepare_cached(
        "UPDATE quota_holds SET spent = ?4, settled_at_ms = ?5
         WHERE reservation = ?1 AND team = ?2 AND dimension = ?3 AND spent IS NULL",
    )?;
    let mut sums = tx.prepare_cached(
        "UPDATE quota_usage SET reserved = MAX(reserved - ?4, 0.0), spent = spent + ?5
         WHERE team = ?1 AND dimension = ?2 AND period = ?3",
    )?;
    for (team, dimension, period, amount) in &open {
        let spent = spent_in(settlement, dimension);
        settle.execute(params![
            settlement.id,
            team,
            dimension,
            spent,
            settlement.at_ms
        ])?;
        sums.execute(params![team, dimension, period, amount, spent])?;
    }
    Ok(!open.is_empty())
}

/// The sums of `period`, by team and dimension. A database from before quotas has none.
pub(crate) fn sqlite_usage(
    conn: &rusqlite::Connection,
    period: &str,
) -> Result<Vec<QuotaUsage>, StoreError> {
    let statement = conn.prepare_cached(
        "SELECT team, dimension, period, reserved, spent FROM quota_usage
         WHERE period = ?1 ORDER BY team, dimension",
    );
    let mut statement = match statement {
        Ok(statement) => statement,
        Err(rusqlite::Error::SqliteFailure(_, Some(message)))
            if message.contains("no such table") =>
        {
            return Ok(Vec::new())
        }
        Err(e) => return Err(e.into()),
    };
    let rows = statement
        .query_map(params![period], |row| {
            Ok(QuotaUsage {
                team: row.get(0)?,
                dimension: row.get(1)?,
                period: row.get(2)?,
                reserved: row.get(3)?,
                spent: row.get(4)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

// --- PostgreSQL ----------------------------------------------------------------------------

/// Whether `e` is PostgreSQL's unique violation.
fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| code == "23505")
}

pub(crate) async fn pg_reserve(
    pool: &sqlx::PgPool,
    reservation: &QuotaReservation,
) -> Result<QuotaGrant, StoreError> {
    check(reservation)?;
    let mut tx = pool.begin().await?;
    let exists: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM quota_holds WHERE reservation = $1 LIMIT 1")
            .bind(&reservation.id)
            .fetch_optional(&mut *tx)
            .await?;
    if exists.is_some() {
        return Ok(QuotaGrant::Granted { again: true });
    }
    for hold in ordered(&reservation.holds) {
        let refused = |used: f64| QuotaGrant::Refused {
            team: hold.team.clone(),
            dimension: hold.dimension.clone(),
            used,
            limit: hold.limit,
            needed: hold.amount,
        };
        let ceiling = ceiling(hold.limit);
        let used = || async {
            let used: Option<f64> = sqlx::query_scalar(
                "SELECT reserved + spent FROM quota_usage
                 WHERE team = $1 AND dimension = $2 AND period = $3",
            )
            .bind(&hold.team)
            .bind(&hold.dimension)
            .bind(&reservation.period)
            .fetch_optional(pool)
            .await?;
            Ok::<f64, StoreError>(used.unwrap_or(0.0))
        };
        if hold.amount > ceiling {
            // Dropping the transaction rolls back what it added.
            drop(tx);
            return Ok(refused(used().await?));
        }
        // Adds to the row (made if missing) only if the sum still fits: the row is locked
        // and its latest committed value judged, whoever else reserves meanwhile.
        let added = sqlx::query(
            "INSERT INTO quota_usage AS u (team, dimension, period, reserved, spent)
             VALUES ($1, $2, $3, $4, 0)
             ON CONFLICT (team, dimension, period) DO UPDATE
               SET reserved = u.reserved + excluded.reserved
               WHERE u.reserved + u.spent + excluded.reserved <= $5
             RETURNING u.reserved",
        )
        .bind(&hold.team)
        .bind(&hold.dimension)
        .bind(&reservation.period)
        .bind(hold.amount)
        .bind(ceiling)
        .fetch_optional(&mut *tx)
        .await?;
        if added.is_none() {
            drop(tx);
            return Ok(refused(used().await?));
        }
    }
    for hold in ordered(&reservation.holds) {
        let inserted = sqlx::query(
            "INSERT INTO quota_holds (reservation, team, dimension, period, mission, amount, reserved_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&reservation.id)
        .bind(&hold.team)
        .bind(&hold.dimension)
        .bind(&reservation.period)
        .bind(&reservation.mission)
        .bind(hold.amount)
        .bind(reservation.at_ms)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            // The same reservation made at the same moment by another transaction, which
            // committed first: this one's additions are rolled back.
            Err(e) if is_unique_violation(&e) => return Ok(QuotaGrant::Granted { again: true }),
            Err(e) => return Err(e.into()),
        }
    }
    match tx.commit().await {
        Ok(()) => Ok(QuotaGrant::Granted { again: false }),
        Err(e) if is_unique_violation(&e) => Ok(QuotaGrant::Granted { again: true }),
        Err(e) => Err(e.into()),
    }
}

pub(crate) async fn pg_settle(
    pool: &sqlx::PgPool,
    settlement: &QuotaSettlement,
) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    let rows = sqlx::query(
        "SELECT team, dimension, period, amount FROM quota_holds
         WHERE reservation = $1 AND spent IS NULL FOR UPDATE",
    )
    .bind(&settlement.id)
    .fetch_all(&mut *tx)
    .await?;
    let mut open = Vec::with_capacity(rows.len());
    for row in &rows {
        open.push((
            row.try_get::<String, _>("team")?,
            row.try_get::<String, _>("dimension")?,
            row.try_get::<String, _>("period")?,
            row.try_get::<f64, _>("amount")?,
        ));
    }
    // The sums are taken in the order reservations take them (byte order, not the
    // database's collation), so a settlement and a reservation never wait on each other.
    open.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    for (team, dimension, period, amount) in &open {
        let spent = spent_in(settlement, dimension);
        sqlx::query(
            "UPDATE quota_holds SET spent = $4, settled_at_ms = $5
             WHERE reservation = $1 AND team = $2 AND dimension = $3",
        )
        .bind(&settlement.id)
        .bind(team)
        .bind(dimension)
        .bind(spent)
        .bind(settlement.at_ms)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE quota_usage SET reserved = GREATEST(reserved - $4, 0), spent = spent + $5
             WHERE team = $1 AND dimension = $2 AND period = $3",
        )
        .bind(team)
        .bind(dimension)
        .bind(period)
        .bind(amount)
        .bind(spent)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(!open.is_empty())
}

pub(crate) async fn pg_usage(
    pool: &sqlx::PgPool,
    period: &str,
) -> Result<Vec<QuotaUsage>, StoreError> {
    let rows = sqlx::query(
        "SELECT team, dimension, period, reserved, spent FROM quota_usage
         WHERE period = $1 ORDER BY team, dimension",
    )
    .bind(period)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(QuotaUsage {
                team: row.try_get("team")?,
                dimension: row.try_get("dimension")?,
                period: row.try_get("period")?,
                reserved: row.try_get("reserved")?,
                spent: row.try_get("spent")?,
            })
        })
        .collect()
}
