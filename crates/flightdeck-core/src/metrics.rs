//! Metrics over missions' summaries (`flightdeck metrics`, `GET /api/v1/metrics`): how many,
//! how many succeeded, how long from request to a published change, what they cost; in all,
//! per template and per day (UTC). Pure: the caller gives the summaries and the time.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::clock::{format_rfc3339_millis, parse_rfc3339_millis};
use crate::state::MissionStatus;
use crate::views::MissionSummary;

const DAY_MS: i64 = 86_400_000;

/// What `flightdeck metrics --json` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricsView {
    /// The window: missions created in the last `since_days` days (`None`: all of them).
    pub since_days: Option<u32>,
    /// Only this template's missions, when asked.
    pub template: Option<String>,
    #[serde(flatten)]
    pub all: Counts,
    /// Per template, by name (missions whose template is unknown under `-`).
    pub by_template: Vec<TemplateCounts>,
    /// Per UTC day of creation, oldest first, days without missions left out.
    pub per_day: Vec<DayCounts>,
}

/// The numbers of one group of missions.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Counts {
    pub missions: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// Not finished: queued, running, waiting for an approval, blocked.
    pub in_progress: u64,
    /// Succeeded among the finished ones (`None` while none has finished).
    pub success_rate: Option<f64>,
    /// Median time from creation to the end of a mission that published its change.
    pub median_lead_time_seconds: Option<f64>,
    pub cost_usd: f64,
    /// Mean cost of a mission (`None` without missions).
    pub cost_per_mission_usd: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TemplateCounts {
    pub template: String,
    #[serde(flatten)]
    pub counts: Counts,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DayCounts {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    pub missions: u64,
    pub succeeded: u64,
}

/// One mission, as the metrics see it.
struct Row<'a> {
    summary: &'a MissionSummary,
    created_ms: i64,
}

impl MetricsView {
    /// The metrics of `summaries` created within `since_days` of `now_ms`, of `template` when
    /// given.
    pub fn of(
        summaries: &[MissionSummary],
        now_ms: i64,
        since_days: Option<u32>,
        template: Option<&str>,
    ) -> MetricsView {
        let from_ms = since_days.map(|d| now_ms - i64::from(d) * DAY_MS);
        let rows: Vec<Row<'_>> = summaries
            .iter()
            .filter_map(|summary| {
                let created_ms = parse_rfc3339_millis(&summary.created_at)?;
                Some(Row {
                    summary,
                    created_ms,
                })
            })
            .filter(|r| from_ms.is_none_or(|from| r.created_ms >= from))
            .filter(|r| template.is_none_or(|t| r.summary.template.as_deref() == Some(t)))
            .collect();
        let mut by_template: BTreeMap<&str, Vec<&Row<'_>>> = BTreeMap::new();
        let mut per_day: BTreeMap<String, DayCounts> = BTreeMap::new();
        for row in &rows {
            by_template
                .entry(row.summary.template.as_deref().unwrap_or("-"))
                .or_default()
                .push(row);
            let day = format_rfc3339_millis(row.created_ms)
                .get(..10)
                .unwrap_or_default()
                .to_string();
            let entry = per_day.entry(day.clone()).or_insert(DayCounts {
                day,
                missions: 0,
                succeeded: 0,
            });
            entry.missions += 1;
            if row.summary.status == MissionStatus::Succeeded {
                entry.succeeded += 1;
            }
        }
        MetricsView {
            since_days,
            template: template.map(str::to_string),
            all: counts(rows.iter()),
            by_template: by_template
                .into_iter()
                .map(|(template, rows)| TemplateCounts {
                    template: template.to_string(),
                    counts: counts(rows.into_iter()),
                })
                .collect(),
            per_day: per_day.into_values().collect(),
        }
    }
}

fn counts<'a, 'b: 'a>(rows: impl Iterator<Item = &'a Row<'b>>) -> Counts {
    let mut c = Counts::default();
    let mut lead_times = Vec::new();
    for row in rows {
        let s = row.summary;
        c.missions += 1;
        c.cost_usd += s.cost.total_usd;
        match s.status {
            MissionStatus::Succeeded => c.succeeded += 1,
            MissionStatus::Failed => c.failed += 1,
            MissionStatus::Cancelled => c.cancelled += 1,
            _ => c.in_progress += 1,
        }
        // Published: the summary names the change's patch; the mission ends right after.
        if s.status == MissionStatus::Succeeded && s.artifacts.patch.is_some() {
            if let Some(ended) = parse_rfc3339_millis(&s.updated_at) {
                lead_times.push((ended - row.created_ms).max(0) as f64 / 1000.0);
            }
        }
    }
    let finished = c.succeeded + c.failed + c.cancelled;
    c.success_rate = (finished > 0).then(|| c.succeeded as f64 / finished as f64);
    c.median_lead_time_seconds = median(&mut lead_times);
    c.cost_per_mission_usd = (c.missions > 0).then(|| c.cost_usd / c.missions as f64);
    // `-0.0` (a sum of no costs) is shown as 0.
    c.cost_usd += 0.0;
    c
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::state::MissionState;

    const NOW: &str = "2026-12-07T12:00:00.000Z";

    /// (template, status, created, updated, published, cost)
    fn summary(
        template: &str,
        status: MissionStatus,
        created: &str,
        updated: &str,
        published: bool,
        cost: f64,
    ) -> MissionSummary {
        let mut s = MissionState::new("m-x").summary_view();
        s.template = Some(template.to_string());
        s.status = status;
        s.created_at = created.to_string();
        s.updated_at = updated.to_string();
        s.cost.total_usd = cost;
        if published {
            s.artifacts.patch = Some(crate::Digest::of(b"patch"));
        }
        s
    }

    #[test]
    fn metrics_count_rate_lead_time_and_cost_in_the_window() {
        use MissionStatus::*;
        let all = vec![
            summary(
                "fix",
                Succeeded,
                "2026-12-07T10:00:00.000Z",
                "2026-12-07T10:01:00.000Z",
                true,
                0.5,
            ),
            summary(
                "fix",
                Succeeded,
                "2026-12-06T10:00:00.000Z",
                "2026-12-06T10:03:00.000Z",
                true,
                0.25,
            ),
            summary(
                "fix",
                Succeeded,
                "2026-12-06T11:00:00.000Z",
                "2026-12-06T11:10:00.000Z",
                false,
                0.0,
            ),
            summary(
                "fix",
                Failed,
                "2026-12-06T12:00:00.000Z",
                "2026-12-06T12:00:30.000Z",
                false,
                0.25,
            ),
            summary(
                "bump",
                Cancelled,
                "2026-12-05T09:00:00.000Z",
                "2026-12-05T09:00:01.000Z",
                false,
                0.0,
            ),
            summary(
                "bump",
                AwaitingApproval,
                "2026-12-07T11:00:00.000Z",
                "2026-12-07T11:00:05.000Z",
                false,
                1.0,
            ),
            // Outside a 7-day window.
            summary(
                "fix",
                Succeeded,
                "2026-11-01T10:00:00.000Z",
                "2026-11-01T10:00:10.000Z",
                true,
                9.0,
            ),
        ];
        let now = parse_rfc3339_millis(NOW).unwrap();
        let m = MetricsView::of(&all, now, Some(7), None);
        assert_eq!(m.all.missions, 6);
        assert_eq!(
            (
                m.all.succeeded,
                m.all.failed,
                m.all.cancelled,
                m.all.in_progress
            ),
            (3, 1, 1, 1)
        );
        assert_eq!(m.all.success_rate, Some(3.0 / 5.0));
        // Published ones only: 60 s and 180 s.
        assert_eq!(m.all.median_lead_time_seconds, Some(120.0));
        assert_eq!(m.all.cost_usd, 2.0);
        assert_eq!(m.all.cost_per_mission_usd, Some(2.0 / 6.0));
        let names: Vec<&str> = m.by_template.iter().map(|t| t.template.as_str()).collect();
        assert_eq!(names, ["bump", "fix"]);
        assert_eq!(m.by_template[0].counts.success_rate, Some(0.0));
        assert_eq!(m.by_template[0].counts.median_lead_time_seconds, None);
        assert_eq!(m.by_template[1].counts.missions, 4);
        let days: Vec<(&str, u64, u64)> = m
            .per_day
            .iter()
            .map(|d| (d.day.as_str(), d.missions, d.succeeded))
            .collect();
        assert_eq!(
            days,
            [
                ("2026-12-05", 1, 0),
                ("2026-12-06", 3, 2),
                ("2026-12-07", 2, 1)
            ]
        );

        let everything = MetricsView::of(&all, now, None, Some("fix"));
        assert_eq!(everything.all.missions, 5);
        assert_eq!(
            everything.all.median_lead_time_seconds,
            Some(60.0),
            "10 s, 60 s, 180 s"
        );
        assert_eq!(everything.by_template.len(), 1);

        let none = MetricsView::of(&[], now, Some(1), None);
        assert_eq!(none.all.missions, 0);
        assert_eq!(none.all.success_rate, None);
        assert_eq!(none.all.cost_per_mission_usd, None);
        assert!(none.per_day.is_empty());
    }
}
