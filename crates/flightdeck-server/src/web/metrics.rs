//! Metrics as charts (SVG drawn here, no script) and the same numbers as
//! `flightdeck metrics`.

use axum::extract::{Query, State};
use axum::response::Response;
use flightdeck_app::queries;
use flightdeck_core::metrics::{Counts, MetricsView};
use flightdeck_engine::{Clock, SystemClock};
use maud::{html, Markup};
use serde::Deserialize;

use super::{error_page, page, usd, Nav, Viewer};
use crate::routes::Shared;

#[derive(Deserialize, Default)]
pub struct MetricsQuery {
    since: Option<u32>,
    template: Option<String>,
}

const WIDTH: f64 = 640.0;
const BAR_HEIGHT: f64 = 22.0;

/// Missions per day: a column per day, the succeeded part darker.
fn per_day_chart(view: &MetricsView) -> Markup {
    let days = &view.per_day;
    let height = 160.0;
    let max = days.iter().map(|d| d.missions).max().unwrap_or(0).max(1) as f64;
    let slot = if days.is_empty() {
        WIDTH
    } else {
        WIDTH / days.len() as f64
    };
    let bar = (slot * 0.7).clamp(1.0, 36.0);
    html! {
        figure {
            svg.chart viewBox=(format!("0 0 {WIDTH} {}", height + 20.0)) role="img"
                aria-label="missions per day, succeeded darker" {
                @for (i, d) in days.iter().enumerate() {
                    @let x = i as f64 * slot + (slot - bar) / 2.0;
                    @let all = d.missions as f64 / max * height;
                    @let ok = d.succeeded as f64 / max * height;
                    g {
                        title { (d.day) ": " (d.missions) " mission(s), " (d.succeeded) " succeeded" }
                        rect.all x=(x) y=(height - all) width=(bar) height=(all) {}
                        rect.ok x=(x) y=(height - ok) width=(bar) height=(ok) {}
                    }
                    @if days.len() <= 14 || i % (days.len() / 7).max(1) == 0 {
                        text x=(x + bar / 2.0) y=(height + 14.0) text-anchor="middle" { (d.day.get(5..).unwrap_or(&d.day)) }
                    }
                }
            }
            figcaption { "Missions per day (UTC); the darker part succeeded." }
        }
    }
}

/// One horizontal bar per template for the number `value` picks (`None`: no bar).
fn by_template_chart(
    view: &MetricsView,
    caption: &str,
    value: impl Fn(&Counts) -> Option<f64>,
    label: impl Fn(f64) -> String,
) -> Markup {
    let rows: Vec<(&str, Option<f64>)> = view
        .by_template
        .iter()
        .map(|t| (t.template.as_str(), value(&t.counts)))
        .collect();
    let max = rows
        .iter()
        .filter_map(|(_, v)| *v)
        .fold(0.0_f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let label_width = 160.0;
    let height = rows.len().max(1) as f64 * (BAR_HEIGHT + 6.0);
    html! {
        figure {
            svg.chart viewBox=(format!("0 0 {WIDTH} {height}")) role="img" aria-label=(caption) {
                @for (i, (template, v)) in rows.iter().enumerate() {
                    @let y = i as f64 * (BAR_HEIGHT + 6.0);
                    text x="0" y=(y + BAR_HEIGHT * 0.7) { (template) }
                    @if let Some(v) = v {
                        @let w = (v / max * (WIDTH - label_width - 90.0)).max(1.0);
                        rect.all x=(label_width) y=(y) width=(w) height=(BAR_HEIGHT) { title { (template) ": " (label(*v)) } }
                        text x=(label_width + w + 6.0) y=(y + BAR_HEIGHT * 0.7) { (label(*v)) }
                    } @else {
                        text.none x=(label_width) y=(y + BAR_HEIGHT * 0.7) { "no data yet" }
                    }
                }
            }
            figcaption { (caption) }
        }
    }
}

fn counts_row(name: &str, c: &Counts) -> Markup {
    html! {
        tr {
            td { (name) }
            td { (c.missions) }
            td { (c.succeeded) } td { (c.failed) } td { (c.cancelled) } td { (c.in_progress) }
            td { (c.success_rate.map_or("-".to_string(), |r| format!("{:.0}%", r * 100.0))) }
            td { (c.median_lead_time_seconds.map_or("-".to_string(), |s| format!("{s:.0} s"))) }
            td { (usd(c.cost_usd)) }
            td { (c.cost_per_mission_usd.map_or("-".to_string(), usd)) }
        }
    }
}

pub async fn page_handler(state: &Shared, viewer: &Viewer, q: MetricsQuery) -> Response {
    let now = SystemClock.now_ms();
    let since = q.since.or(Some(30)).filter(|d| *d > 0);
    let template = q
        .template
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let view = match queries::metrics(&state.reader(), now, since, template).await {
        Ok(view) => view,
        Err(e) => return error_page(&e),
    };
    let body = html! {
        h1 { "Metrics" }
        form.filters method="get" action="/metrics" {
            label { "Last " input type="number" name="since" min="1" value=(since.unwrap_or(30)); " days" }
            label { "Template " input type="text" name="template" value=[template] placeholder="all"; }
            button type="submit" { "Show" }
        }
        p.meta { "The same numbers as " code { "flightdeck metrics --since " (since.unwrap_or(30)) } "." }
        table.metrics {
            thead { tr {
                th { "" } th { "Missions" } th { "Succeeded" } th { "Failed" } th { "Cancelled" } th { "In progress" }
                th { "Success rate" } th { "Median lead time" } th { "Cost" } th { "Cost per mission" }
            } }
            tbody {
                (counts_row("All", &view.all))
                @for t in &view.by_template { (counts_row(&t.template, &t.counts)) }
            }
        }
        @if view.all.missions == 0 {
            p.empty { "No missions in this window yet." }
        } @else {
            div.charts {
                (per_day_chart(&view))
                (by_template_chart(&view, "Success rate by template (of finished missions)", |c| c.success_rate, |r| format!("{:.0}%", r * 100.0)))
                (by_template_chart(&view, "Median lead time by template (created → published)", |c| c.median_lead_time_seconds, |s| format!("{s:.0} s")))
                (by_template_chart(&view, "Cost per mission by template", |c| c.cost_per_mission_usd, usd))
            }
        }
    };
    page("Metrics", Some(viewer), Nav::Metrics, body)
}

pub async fn show(
    State(state): State<Shared>,
    viewer: Viewer,
    q: Result<Query<MetricsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = q.unwrap_or_default();
    page_handler(&state, &viewer, q).await
}
