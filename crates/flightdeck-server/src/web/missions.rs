//! The missions list, and the form that starts one.

use axum::extract::{Query, State};
use axum::response::Response;
use flightdeck_app::tokens::Role;
use flightdeck_app::{queries, AppError};
use flightdeck_engine::{Clock, SystemClock};
use maud::html;
use serde::Deserialize;

use super::{age, error_page, page, status_badge, url_encode, usd, Nav, Viewer};
use crate::routes::Shared;

const PAGE: usize = 50;

const STATUSES: [&str; 8] = [
    "queued",
    "provisioning",
    "running",
    "awaiting_approval",
    "blocked",
    "succeeded",
    "failed",
    "cancelled",
];

#[derive(Deserialize, Default)]
pub struct ListQuery {
    status: Option<String>,
    template: Option<String>,
    requested_by: Option<String>,
    cursor: Option<String>,
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

pub async fn list(
    State(state): State<Shared>,
    viewer: Viewer,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = q.unwrap_or_default();
    let status = non_empty(&q.status).filter(|s| STATUSES.contains(s));
    let template = non_empty(&q.template);
    let requested_by = non_empty(&q.requested_by);
    let cursor = non_empty(&q.cursor).filter(|c| c.starts_with("m-"));
    let listed = queries::mission_page(
        &state.reader(),
        status,
        template,
        requested_by,
        cursor,
        PAGE,
    )
    .await;
    let listed = match listed {
        Ok(listed) => listed,
        Err(e) => return error_page(&e),
    };
    let now = SystemClock.now_ms();
    let filters = [
        ("status", status),
        ("template", template),
        ("requested_by", requested_by),
    ];
    let next = listed.next_cursor.as_deref().map(|cursor| {
        let mut query: Vec<String> = filters
            .iter()
            .filter_map(|(k, v)| v.map(|v| format!("{k}={}", url_encode(v))))
            .collect();
        query.push(format!("cursor={}", url_encode(cursor)));
        format!("/?{}", query.join("&"))
    });
    let body = html! {
        div #live data-changes="/api/v1/changes" {
            div.title-row {
                h1 { "Missions" }
                @if viewer.may(Role::Operator) { a.button href="/missions/new" { "New mission" } }
            }
            form.filters method="get" action="/" {
                label { "Status "
                    select name="status" {
                        option value="" { "any" }
                        @for s in STATUSES {
                            option value=(s) selected[status == Some(s)] { (s.replace('_', " ")) }
                        }
                    }
                }
                label { "Template " input type="text" name="template" value=[template] placeholder="any"; }
                label { "Requested by " input type="text" name="requested_by" value=[requested_by] placeholder="anyone"; }
                button type="submit" { "Filter" }
                @if filters.iter().any(|(_, v)| v.is_some()) { a href="/" { "Clear" } }
            }
            @if listed.missions.is_empty() {
                p.empty { "No missions" @if filters.iter().any(|(_, v)| v.is_some()) { " match these filters" } "." }
            } @else {
                table.missions {
                    thead { tr { th { "Mission" } th { "Status" } th { "Risk" } th { "Cost" } th { "Requested by" } th { "Age" } } }
                    tbody {
                        @for m in &listed.missions {
                            tr {
                                td data-label="Mission" {
                                    a href=(format!("/missions/{}", m.id)) {
                                        strong { (m.template.as_deref().unwrap_or("-")) }
                                        " " span.id { (m.id) }
                                    }
                                    @if !m.pending_approvals.is_empty() {
                                        " " span.badge.waiting { (m.pending_approvals.len()) " approval(s) pending" }
                                    }
                                }
                                td data-label="Status" { (status_badge(m.status)) }
                                td data-label="Risk" { (m.risk_tier.as_deref().unwrap_or("-")) }
                                td data-label="Cost" { (usd(m.cost.total_usd)) }
                                td data-label="Requested by" { (m.requested_by.as_deref().unwrap_or("-")) }
                                td data-label="Age" title=(m.created_at) { (age(&m.created_at, now)) }
                            }
                        }
                    }
                }
            }
            nav.pager {
                @if cursor.is_some() { a href="/" { "Newest" } }
                @if let Some(next) = next { a href=(next) { "Older →" } }
            }
        }
    };
    page("Missions", Some(&viewer), Nav::Missions, body)
}

/// The form that starts a mission (the script posts it to the API, which checks it as
/// `flightdeck run` does).
pub async fn new_form(State(state): State<Shared>, viewer: Viewer) -> Response {
    if !viewer.may(Role::Operator) {
        return error_page(&AppError::new(
            flightdeck_app::ErrorKind::Forbidden,
            format!(
                "{} acts as {}; starting a mission needs the role operator",
                viewer.principal.handle, viewer.principal.role
            ),
            None,
        ));
    }
    let repos: Vec<&String> = state.app.config.repos.keys().collect();
    let body = html! {
        section.narrow {
            h1 { "New mission" }
            @if repos.is_empty() {
                div.error-box {
                    p { "No repository is configured, so no mission can be started here." }
                    p.hint { "hint: name one in the config: " code { "[repos.NAME] url = \"…\"" } }
                }
            } @else {
                form.stack #start-mission {
                    label for="repo" { "Repository" }
                    select #repo name="repo" required {
                        @for name in &repos { option value=(name) { (name) } }
                    }
                    label for="template" { "Template" }
                    input #template type="text" name="template" required placeholder="a name under .flightdeck/missions/";
                    label for="base" { "Base" }
                    input #base type="text" name="base" value="HEAD";
                    label for="params" { "Parameters, one " code { "key=value" } " per line" }
                    textarea #params name="params" rows="4" {}
                    button type="submit" { "Start" }
                }
            }
        }
    };
    page("New mission", Some(&viewer), Nav::New, body)
}
