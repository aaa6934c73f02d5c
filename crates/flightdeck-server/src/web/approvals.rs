//! The approvals inbox: what waits for the viewer first, then what waits for others, each
//! with the context bundle the gate recorded (what Slack shows too).

use axum::extract::State;
use axum::response::Response;
use flightdeck_app::queries;
use flightdeck_app::tokens::Role;
use flightdeck_core::views::ApprovalListing;
use flightdeck_engine::{Clock, SystemClock};
use flightdeck_policy::IdentityChannel;
use maud::{html, Markup};
use serde_json::Value;

use super::{age, error_page, page, Nav, Viewer};
use crate::routes::Shared;

/// How many changed files a card lists before "…and N more".
const FILES_SHOWN: usize = 10;

fn card(viewer: &Viewer, listing: &ApprovalListing, bundle: Option<&Value>, now: i64) -> Markup {
    let a = &listing.approval;
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let files: Vec<&Value> = bundle
        .and_then(|b| b.get("files"))
        .and_then(Value::as_array)
        .map(|f| f.iter().collect())
        .unwrap_or_default();
    let lines = bundle.and_then(|b| b.get("lines"));
    let budget = bundle
        .and_then(|b| b.get("budget"))
        .and_then(Value::as_object);
    html! {
        article.approval-card id=(format!("approval-{}", a.id)) {
            h3 {
                a href=(format!("/missions/{}#approval-{}", listing.mission, a.id)) {
                    (text(bundle.and_then(|b| b.get("title"))).or(listing.template.clone()).unwrap_or_else(|| listing.mission.clone()))
                }
                " · " (a.gate) " gate"
                span class=(format!("pill tier-{}", a.tier)) { (a.tier) " risk" }
            }
            p.meta {
                "Mission " (listing.mission) " · " (listing.template.as_deref().unwrap_or("-"))
                " · requested by " (listing.requested_by.as_deref().unwrap_or("-"))
                " · asked " (age(&a.requested_at, now))
                @if let Some(expires) = &a.expires_at { " · expires " (expires) }
            }
            @if let Some(command) = &a.command { pre.command { (command) } }
            dl.facts {
                dt { "Rules" } dd { @if a.rule_ids.is_empty() { "default" } @else { (a.rule_ids.join(", ")) } }
                @if let Some(explanation) = text(bundle.and_then(|b| b.pointer("/decision/explanation"))) {
                    dt { "Why" } dd { (explanation) }
                }
                dt { "Who may approve" } dd { (a.eligible.join(", ")) " · " (a.approved_by.len()) " of " (a.required) " so far" }
                @if let Some(lines) = lines {
                    dt { "Change" } dd {
                        (files.len()) " file(s), +" (lines.get("added").and_then(Value::as_u64).unwrap_or(0))
                        " −" (lines.get("removed").and_then(Value::as_u64).unwrap_or(0))
                    }
                }
                @if let Some(budget) = budget {
                    dt { "Budget" } dd {
                        @for (name, d) in budget {
                            @if let Some(remaining) = d.get("remaining").and_then(Value::as_f64) {
                                span.budget-item { (name) ": " (format!("{remaining:.2}")) " left" } " "
                            }
                        }
                    }
                }
            }
            @if !files.is_empty() {
                ul.files {
                    @for f in files.iter().take(FILES_SHOWN) {
                        li {
                            code { (f.get("path").and_then(Value::as_str).unwrap_or("?")) }
                            " +" (f.get("added").and_then(Value::as_u64).unwrap_or(0))
                            " −" (f.get("removed").and_then(Value::as_u64).unwrap_or(0))
                        }
                    }
                    @if files.len() > FILES_SHOWN { li { "…and " (files.len() - FILES_SHOWN) " more" } }
                }
            }
            p.actions {
                @if let Some(diff) = text(bundle.and_then(|b| b.get("diff"))) {
                    a href=(format!("/api/v1/artifacts/{diff}")) { "The diff (patch)" }
                }
                a href=(format!("/missions/{}", listing.mission)) { "Mission page" }
                @if viewer.may(Role::Approver) {
                    button.approve type="button" data-action="approve" data-approval=(a.id)
                        data-confirm=(format!("Approve the {} gate of mission {}?", a.gate, listing.mission)) { "Approve" }
                    button.deny type="button" data-action="deny" data-approval=(a.id)
                        data-confirm=(format!("Deny the {} gate of mission {}?", a.gate, listing.mission)) { "Deny" }
                }
            }
        }
    }
}

pub async fn inbox(State(state): State<Shared>, viewer: Viewer) -> Response {
    let now = SystemClock.now_ms();
    let reader = state.reader();
    let pending = match queries::approvals(&reader, true, now).await {
        Ok(listed) => listed,
        Err(e) => return error_page(&e),
    };
    let me = state
        .app
        .people
        .resolve(&viewer.principal.handle, IdentityChannel::Web)
        .handle;
    let mut mine = Vec::new();
    let mut others = Vec::new();
    for listing in pending {
        let bundle = reader
            .artifacts
            .get(&listing.approval.bundle)
            .await
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok());
        // Named, or a member of a team that is named (as the installation lists teams now;
        // the engine judges by the membership the request recorded).
        let for_me = listing.approval.eligible.iter().any(|eligible| {
            *eligible == me
                || state.app.config.teams.get(eligible).is_some_and(|members| {
                    members
                        .iter()
                        .any(|m| state.app.people.resolve(m, IdentityChannel::Web).handle == me)
                })
        });
        if for_me {
            mine.push((listing, bundle));
        } else {
            others.push((listing, bundle));
        }
    }
    let body = html! {
        div #live data-changes="/api/v1/changes" {
            h1 { "Approvals" }
            h2 { "Waiting for you (" (mine.len()) ")" }
            @if mine.is_empty() { p.empty { "Nothing waits for " (me) "." } }
            @for (listing, bundle) in &mine { (card(&viewer, listing, bundle.as_ref(), now)) }
            h2 { "Waiting for others (" (others.len()) ")" }
            @if others.is_empty() { p.empty { "Nothing else is pending." } }
            @for (listing, bundle) in &others { (card(&viewer, listing, bundle.as_ref(), now)) }
            p.hint { "Eligibility is judged when you decide: the policy's approvers, code owners, and never the mission's requester." }
        }
    };
    page("Approvals", Some(&viewer), Nav::Approvals, body)
}
