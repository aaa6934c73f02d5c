//! A mission's page: what happened and why, and what may be done about it.
//!
//! The timeline is shown one page of [`TIMELINE_PAGE`] events at a time (a page is a fixed
//! window of seqs, so a deep link `?seq=N#seq-N` always lands on the same page), grouped by
//! turns: a model call, then the tool calls it made, each with its policy decision,
//! approvals and output.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use flightdeck_app::tokens::Role;
use flightdeck_app::{queries, AppError};
use flightdeck_core::event::{ModelRequested, ToolCompleted, ToolRequested};
use flightdeck_core::views::{one_line, ApprovalView, EventLine, MissionSummary};
use flightdeck_core::{EventKind, StoredEvent};
use flightdeck_engine::{Clock, SystemClock};
use maud::{html, Markup};
use serde::Deserialize;

use super::{capped, diff_view, error_page, page, status_badge, usd, Nav, Viewer};
use crate::routes::Shared;

/// Events on one page of a timeline.
pub const TIMELINE_PAGE: u64 = 200;
/// The most of a tool call's output a page shows (the rest is a link away).
const OUTPUT_SHOWN: usize = 16 * 1024;
/// The most of a published patch or a step's diff a page shows.
const DIFF_SHOWN: usize = 512 * 1024;

#[derive(Deserialize, Default)]
pub struct PageQuery {
    /// A seq on the page to show (deep links); the last page without it.
    seq: Option<u64>,
}

/// One tool call and what followed from it.
struct Call<'a> {
    requested: &'a StoredEvent,
    tool: ToolRequested,
    events: Vec<&'a StoredEvent>,
    completed: Option<(&'a StoredEvent, ToolCompleted)>,
    decision: Option<String>,
}

/// A model call and the tool calls it made.
struct Turn<'a> {
    model: Vec<&'a StoredEvent>,
    requested: ModelRequested,
    calls: Vec<Call<'a>>,
}

enum Block<'a> {
    Turn(Turn<'a>),
    Call(Call<'a>),
    Line(&'a StoredEvent),
}

/// The page's events grouped by turns.
fn group(events: &[StoredEvent]) -> Vec<Block<'_>> {
    let mut blocks: Vec<Block<'_>> = Vec::new();
    // Where each call is: (block, index in the turn's calls, if in a turn).
    let mut calls: HashMap<String, (usize, Option<usize>)> = HashMap::new();
    let mut approval_calls: HashMap<String, String> = HashMap::new();
    let mut turn: Option<usize> = None;
    for event in events {
        let Ok(kind) = event.kind() else {
            blocks.push(Block::Line(event));
            continue;
        };
        let call_of = |id: &str| calls.get(id).copied();
        let attach = match &kind {
            EventKind::ModelRequested(m) => {
                let retry = turn.and_then(|t| match &blocks[t] {
                    Block::Turn(open)
                        if open.calls.is_empty() && open.requested.call_id == m.call_id =>
                    {
                        Some(t)
                    }
                    _ => None,
                });
                match retry {
                    Some(t) => {
                        if let Block::Turn(open) = &mut blocks[t] {
                            open.model.push(event);
                        }
                    }
                    None => {
                        blocks.push(Block::Turn(Turn {
                            model: vec![event],
                            requested: m.clone(),
                            calls: Vec::new(),
                        }));
                        turn = Some(blocks.len() - 1);
                    }
                }
                continue;
            }
            EventKind::ModelResponded(_)
            | EventKind::ModelFailed(_)
            | EventKind::ModelFallback(_)
            | EventKind::ContextCompacted(_) => {
                if let Some(Block::Turn(open)) = turn.and_then(|t| blocks.get_mut(t)) {
                    open.model.push(event);
                    continue;
                }
                None
            }
            EventKind::ToolRequested(t) => {
                let call = Call {
                    requested: event,
                    tool: t.clone(),
                    events: Vec::new(),
                    completed: None,
                    decision: None,
                };
                match turn.and_then(|i| blocks.get_mut(i).map(|b| (i, b))) {
                    Some((i, Block::Turn(open))) => {
                        open.calls.push(call);
                        calls.insert(t.call_id.clone(), (i, Some(open.calls.len() - 1)));
                    }
                    _ => {
                        blocks.push(Block::Call(call));
                        calls.insert(t.call_id.clone(), (blocks.len() - 1, None));
                    }
                }
                continue;
            }
            EventKind::PolicyDecided(d) => call_of(&d.subject),
            EventKind::ApprovalRequested(a) => {
                approval_calls.insert(a.approval_id.clone(), a.subject.clone());
                call_of(&a.subject)
            }
            EventKind::ApprovalDecided(a) => approval_calls
                .get(&a.approval_id)
                .and_then(|subject| call_of(subject)),
            EventKind::ApprovalExpired(a) => approval_calls
                .get(&a.approval_id)
                .and_then(|subject| call_of(subject)),
            EventKind::ToolCompleted(t) => call_of(&t.call_id),
            EventKind::StepStarted(_) | EventKind::StepFinished(_) => {
                turn = None;
                None
            }
            _ => None,
        };
        let call = attach.and_then(|(b, inner)| match (blocks.get_mut(b), inner) {
            (Some(Block::Turn(t)), Some(i)) => t.calls.get_mut(i),
            (Some(Block::Call(c)), None) => Some(c),
            _ => None,
        });
        match call {
            Some(call) => {
                match kind {
                    EventKind::ToolCompleted(t) => call.completed = Some((event, t)),
                    EventKind::PolicyDecided(d) => call.decision = Some(d.decision),
                    _ => {}
                }
                call.events.push(event);
            }
            None => blocks.push(Block::Line(event)),
        }
    }
    blocks
}

/// What the page needs besides the events.
struct Context<'a> {
    id: &'a str,
    viewer: &'a Viewer,
    /// Tool outputs by digest: the text shown and whether it was cut.
    outputs: HashMap<String, (String, bool)>,
    /// What the model said (its text, without the tool calls), by the seq of its
    /// `model.responded`.
    said: HashMap<u64, String>,
    /// The seq of `mission.finished`, if on or before this page: no fork after it.
    finished_at: Option<u64>,
}

fn seq_link(event: &StoredEvent) -> Markup {
    html! { a.seq href=(format!("#seq-{}", event.seq)) title="link to this event" { "#" (event.seq) } }
}

fn fork_button(ctx: &Context<'_>, seq: u64) -> Markup {
    let can = ctx.viewer.may(Role::Operator) && ctx.finished_at.is_none_or(|f| seq < f);
    html! {
        @if can {
            button.small type="button" data-action="fork" data-mission=(ctx.id) data-seq=(seq)
                title="a new mission with this timeline up to here, then run live" { "Fork from here" }
        }
    }
}

fn line(ctx: &Context<'_>, event: &StoredEvent) -> Markup {
    let shown = EventLine::of(event);
    let failed = shown.text.contains("FAILED")
        || matches!(
            event.event_type.as_str(),
            "budget.exceeded" | "breaker.tripped"
        );
    html! {
        div.ev.failed[failed] id=(format!("seq-{}", event.seq)) tabindex="-1" {
            (seq_link(event))
            span.time { (shown.time) }
            span.type { (shown.event_type) }
            span.text { (shown.text) }
            (fork_button(ctx, event.seq))
        }
    }
}

fn call_view(ctx: &Context<'_>, call: &Call<'_>) -> Markup {
    let completed = call.completed.as_ref();
    let failed = completed.is_some_and(|(_, t)| !t.ok);
    let waiting = completed.is_none();
    let command = call
        .tool
        .args
        .get("command")
        .and_then(serde_json::Value::as_str);
    let icon = match completed {
        Some((_, t)) if t.ok => "✓",
        Some(_) => "✗",
        None => "…",
    };
    html! {
        details.call.ev.failed[failed] id=(format!("seq-{}", call.requested.seq)) open[failed || waiting] {
            summary {
                span.icon aria-hidden="true" { (icon) }
                span.tool { (call.tool.tool) }
                @if let Some(command) = command { code.cmd { (one_line(command, 100)) } }
                @if let Some(decision) = &call.decision {
                    span class=(format!("pill decision-{decision}")) { (decision) }
                }
                @if let Some((_, t)) = completed {
                    span.meta {
                        @if t.timed_out { "timed out" }
                        @else if let Some(code) = t.exit_code { "exit " (code) }
                        " · " (t.duration_ms) " ms"
                    }
                }
                " " (seq_link(call.requested))
            }
            div.body {
                p.meta { (call.tool.call_id) " by " (call.tool.actor) }
                @if let Some(command) = command {
                    pre.command { (command) }
                } @else {
                    pre.args { (serde_json::to_string_pretty(&call.tool.args).unwrap_or_default()) }
                }
                @for event in &call.events { (line(ctx, event)) }
                @if let Some((done, t)) = completed {
                    @if let Some((text, cut)) = ctx.outputs.get(t.output.as_str()) {
                        h4 { "Output" }
                        pre.output { (text) }
                        @if *cut {
                            p.note { "Only the first " (OUTPUT_SHOWN / 1024) " KiB are shown. " }
                        }
                    }
                    p.actions {
                        a href=(format!("/api/v1/artifacts/{}", t.output)) { "Whole output" }
                        @if t.tree.is_some() {
                            a href=(format!("/missions/{}/diff?seq={}", ctx.id, done.seq)) { "Worktree diff at this step" }
                        }
                        (fork_button(ctx, done.seq))
                    }
                }
            }
        }
    }
}

fn turn_view(ctx: &Context<'_>, turn: &Turn<'_>) -> Markup {
    let first = turn.model[0];
    let mut tokens = (0u64, 0u64);
    let mut cost = 0.0;
    let mut failed = false;
    for event in &turn.model {
        match event.kind() {
            Ok(EventKind::ModelResponded(r)) => {
                tokens.0 += r.input_tokens;
                tokens.1 += r.output_tokens;
                cost += r.cost_usd;
            }
            Ok(EventKind::ModelFailed(_)) => failed = true,
            _ => {}
        }
    }
    let m = &turn.requested;
    html! {
        section.turn id=(format!("turn-{}", first.seq)) {
            h3 {
                "Model call " (m.call_id) " · " (m.provider) ":" (m.model) " for the " (m.role)
                span.meta { " · " (tokens.0) " in / " (tokens.1) " out tokens · " (usd(cost)) }
                @if failed { " " span.pill.decision-deny { "failed attempt" } }
            }
            @for event in &turn.model {
                (line(ctx, event))
                @if let Some(text) = ctx.said.get(&event.seq) { blockquote.said { (text) } }
            }
            @for call in &turn.calls { (call_view(ctx, call)) }
        }
    }
}

/// Why the mission is where it is, in a sentence.
fn why(summary: &MissionSummary) -> Option<Markup> {
    if let Some(e) = &summary.error {
        return Some(html! { p.why.failed { strong { (e.kind) } ": " (e.message) } });
    }
    if !summary.pending_approvals.is_empty() {
        return Some(html! {
            @for p in &summary.pending_approvals {
                p.why {
                    "Waits for the " strong { (p.gate) } " gate (" (p.subject) "): "
                    (p.approved_by.len()) " of " (p.required) " approval(s) from " (p.eligible.join(", "))
                    @if let Some(expires) = &p.expires_at { ", until " (expires) }
                    "."
                }
            }
        });
    }
    None
}

fn budget_view(summary: &MissionSummary) -> Markup {
    html! {
        table.budget {
            thead { tr { th { "Budget" } th { "Used" } th { "Limit" } th { "Remaining" } th {} } }
            tbody {
                @for (dimension, d) in summary.budget.dimensions() {
                    @let used = d.used.as_f64();
                    @let is_usd = dimension.as_str() == "usd";
                    @let fmt = |v: f64| if is_usd { usd(v) } else { format!("{v:.0}") };
                    tr {
                        td { (dimension.as_str()) }
                        td { (fmt(used)) }
                        td { (d.limit.map_or("unlimited".to_string(), fmt)) }
                        td { (d.remaining().map_or("-".to_string(), fmt)) }
                        td {
                            @if let Some(limit) = d.limit.filter(|l| *l > 0.0) {
                                meter min="0" max=(limit) value=(used.min(limit)) high=(limit * 0.8) {}
                            }
                        }
                    }
                }
            }
        }
    }
}

fn approval_view(viewer: &Viewer, a: &ApprovalView, now_ms: i64) -> Markup {
    let open = a.open_at(now_ms);
    let status = if a.expired_at(now_ms) {
        "expired".to_string()
    } else {
        format!("{:?}", a.status).to_lowercase()
    };
    html! {
        div.approval id=(format!("approval-{}", a.id)) {
            h3 {
                (a.gate) " gate · " (a.subject) " "
                span class=(format!("pill approval-{status}")) { (status) }
            }
            @if let Some(command) = &a.command { pre.command { (command) } }
            dl.facts {
                dt { "Risk" } dd { (a.tier) @if !a.rule_ids.is_empty() { " · rules " (a.rule_ids.join(", ")) } }
                dt { "Who may approve" } dd { (a.eligible.join(", ")) }
                dt { "Approved" } dd { (a.approved_by.len()) " of " (a.required) @if !a.approved_by.is_empty() { " (" (a.approved_by.join(", ")) ")" } }
                @if !a.changed_paths.is_empty() {
                    dt { "Changed paths" } dd { (a.changed_paths.join(", ")) }
                }
                dt { "Diff" } dd { code { (a.diff_hash) } @if a.masked { " (secrets masked in the stored patch)" } }
                @if let Some(expires) = &a.expires_at { dt { "Expires" } dd { (expires) } }
            }
            @if !a.decisions.is_empty() {
                ul.decisions {
                    @for d in &a.decisions {
                        li {
                            strong { (d.by) } " " (d.decision) " via " (d.channel) " at " (d.at)
                            @if !d.counts { " (for an older diff: does not count)" }
                            @if let Some(c) = &d.comment { ": " q { (c) } }
                        }
                    }
                }
            }
            p.actions {
                a href=(format!("/api/v1/artifacts/{}", a.bundle)) { "Context bundle (JSON)" }
                @if open && viewer.may(Role::Approver) {
                    button.approve type="button" data-action="approve" data-approval=(a.id)
                        data-confirm=(format!("Approve the {} gate ({})?", a.gate, a.subject)) { "Approve" }
                    button.deny type="button" data-action="deny" data-approval=(a.id)
                        data-confirm=(format!("Deny the {} gate ({})?", a.gate, a.subject)) { "Deny" }
                }
            }
        }
    }
}

fn pager(id: &str, start: u64, last_seq: u64) -> Markup {
    let last_start = last_seq.saturating_sub(1) / TIMELINE_PAGE * TIMELINE_PAGE;
    let link = |after: u64, label: &str| {
        html! { a href=(format!("/missions/{id}?seq={}#timeline", after + 1)) { (label) } }
    };
    html! {
        nav.pager aria-label="timeline pages" {
            @if start > 0 {
                (link(0, "« First"))
                (link(start - TIMELINE_PAGE, "‹ Earlier"))
            }
            span { "events " (start + 1) "–" ((start + TIMELINE_PAGE).min(last_seq)) " of " (last_seq) }
            @if start < last_start {
                (link(start + TIMELINE_PAGE, "Later ›"))
                (link(last_start, "Last »"))
            }
        }
    }
}

pub async fn show(
    State(state): State<Shared>,
    viewer: Viewer,
    Path(given): Path<String>,
    q: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = q.unwrap_or_default();
    match render(&state, &viewer, &given, q.seq).await {
        Ok(response) => response,
        Err(e) => error_page(&e),
    }
}

async fn render(
    state: &Shared,
    viewer: &Viewer,
    given: &str,
    seq: Option<u64>,
) -> Result<Response, AppError> {
    let store = state.engine.config().store.clone();
    let id = queries::resolve_id(store.as_ref(), given).await?;
    let reader = state.reader();
    let summary = queries::summary(&reader, &id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no mission {id}"), None))?;
    // The store stamps `events` with its last seq when it reads the summary.
    let last = summary.events.max(1);
    let start = (seq.unwrap_or(last).clamp(1, last) - 1) / TIMELINE_PAGE * TIMELINE_PAGE;
    let (events, last_seq) = queries::events_page(&reader, &id, start, TIMELINE_PAGE).await?;
    // What it was asked: the first event's goal and parameters, on every page.
    let created = match events.first().filter(|e| e.seq == 1) {
        Some(first) => first.kind().ok(),
        None => queries::events_page(&reader, &id, 0, 1)
            .await?
            .0
            .first()
            .and_then(|e| e.kind().ok()),
    };
    let params = match created {
        Some(EventKind::MissionCreated(c)) => c.params,
        _ => Default::default(),
    };
    let now = SystemClock.now_ms();
    let mut outputs = HashMap::new();
    let mut said = HashMap::new();
    for event in &events {
        match event.kind() {
            Ok(EventKind::ToolCompleted(t)) => {
                if let Ok(bytes) = reader.artifacts.get(&t.output).await {
                    outputs.insert(t.output.to_string(), capped(&bytes, OUTPUT_SHOWN));
                }
            }
            Ok(EventKind::ModelResponded(r)) => {
                let Some(message) = &r.message else { continue };
                let text = reader
                    .artifacts
                    .get(message)
                    .await
                    .ok()
                    .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
                    .and_then(|m| {
                        m.get("content")
                            .and_then(|c| c.as_str())
                            .map(str::to_string)
                    })
                    .filter(|text| !text.trim().is_empty());
                if let Some(text) = text {
                    said.insert(event.seq, capped(text.as_bytes(), OUTPUT_SHOWN).0);
                }
            }
            _ => {}
        }
    }
    // Every seq before `mission.finished` can be forked from (on earlier pages, all of them).
    let finished_at = events
        .iter()
        .find(|e| e.event_type == "mission.finished")
        .map(|e| e.seq);
    let ctx = Context {
        id: &id,
        viewer,
        outputs,
        said,
        finished_at,
    };
    let published = match (&summary.artifacts.patch, &summary.artifacts.pr_description) {
        (Some(patch), Some(description)) => {
            let patch = reader.artifacts.get(patch).await.ok();
            let description = reader.artifacts.get(description).await.ok();
            Some((patch, description))
        }
        _ => None,
    };
    let blocks = group(&events);
    let live = !summary.status.is_terminal() && start + TIMELINE_PAGE >= last_seq;
    let body = html! {
        div #live data-stream=[live.then(|| format!("/api/v1/missions/{id}/events/stream?after={last_seq}"))] {
            div.title-row {
                h1 { (summary.template.as_deref().unwrap_or("mission")) " " span.id { (id) } }
                (status_badge(summary.status))
                // Checked by the page's script through the verify route, so the page costs
                // the same however long the timeline (re-hashing every event does not).
                @let verify = format!("/api/v1/missions/{id}/verify");
                span.badge.chain #chain data-verify=(verify) title="whether every event's hash chains to the one before" {
                    a href=(verify) { "check the hash chain" }
                }
            }
            @if let Some(why) = why(&summary) { (why) }
            @if live { p.live-note { span.dot {} "Live: this page follows the mission as it runs." } }
            dl.facts {
                dt { "Requested by" } dd { (summary.requested_by.as_deref().unwrap_or("-")) }
                @if !params.is_empty() {
                    dt { "Parameters" } dd {
                        @for (k, v) in &params { code { (k) "=" (v) } " " }
                    }
                }
                dt { "Repository" } dd { (summary.repo.as_deref().unwrap_or("-")) " @ " code { (summary.base_commit.as_deref().map_or("-", |c| c.get(..12).unwrap_or(c))) } }
                dt { "Risk" } dd { (summary.risk_tier.as_deref().unwrap_or("not assessed yet")) }
                dt { "Policy" } dd {
                    code { (summary.policy.hash.as_deref().map_or("-", |h| h.get(..19).unwrap_or(h))) }
                    " · " (summary.policy.decisions.allow) " allowed, " (summary.policy.decisions.approve) " needed approval, " (summary.policy.decisions.deny) " denied"
                }
                dt { "Cost" } dd { (usd(summary.cost.total_usd)) }
                dt { "Created" } dd { (summary.created_at) }
                dt { "Updated" } dd { (summary.updated_at) }
                @if let (Some(branch), Some(commit)) = (&summary.branch, &summary.head_commit) {
                    dt { "Published" } dd { "branch " code { (branch) } " at " code { (commit.get(..12).unwrap_or(commit)) } }
                }
            }
            @for warning in &summary.warnings { p.note { (warning) } }
            (budget_view(&summary))
            @if viewer.may(Role::Operator) && !summary.status.is_terminal() {
                div.controls {
                    button type="button" data-action="cancel" data-mission=(id) data-confirm="Cancel this mission?" { "Cancel" }
                    button type="button" data-action="resume" data-mission=(id) { "Resume" }
                    form.inline #raise-budget data-mission=(id) {
                        label { "Raise "
                            select name="dimension" {
                                @for d in ["usd", "tokens", "tool_calls", "model_calls", "wall_seconds"] { option value=(d) { (d) } }
                            }
                        }
                        label { " by " input type="number" name="amount" min="0" step="any" required; }
                        button type="submit" { "Raise budget" }
                    }
                }
            }
            @if !summary.approvals.is_empty() {
                h2 { "Approvals" }
                @for a in &summary.approvals { (approval_view(viewer, a, now)) }
            }
            @if let Some((patch, description)) = &published {
                h2 { "Published change" }
                @if let Some(description) = description {
                    h3 { "PR description" }
                    pre.prose { (capped(description, DIFF_SHOWN).0) }
                }
                @if let Some(patch) = patch {
                    details.final-diff open {
                        summary { "Final diff" }
                        (diff_view(&capped(patch, DIFF_SHOWN).0))
                    }
                }
            }
            h2 #timeline { "Timeline" }
            (pager(&id, start, last_seq))
            div.timeline {
                @for block in &blocks {
                    @match block {
                        Block::Turn(turn) => (turn_view(&ctx, turn)),
                        Block::Call(call) => (call_view(&ctx, call)),
                        Block::Line(event) => (line(&ctx, event)),
                    }
                }
            }
            (pager(&id, start, last_seq))
        }
    };
    let title = format!(
        "{} {}",
        summary.template.as_deref().unwrap_or("mission"),
        id
    );
    Ok(page(&title, Some(viewer), Nav::Missions, body))
}

#[derive(Deserialize, Default)]
pub struct DiffQuery {
    seq: Option<u64>,
}

/// The worktree's change from the base as of a tool call (`?seq=` of its `tool.completed`).
pub async fn diff(
    State(state): State<Shared>,
    viewer: Viewer,
    Path(given): Path<String>,
    q: Result<Query<DiffQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = q.unwrap_or_default();
    let rendered = async {
        let store = state.engine.config().store.clone();
        let id = queries::resolve_id(store.as_ref(), &given).await?;
        let seq = q
            .seq
            .filter(|seq| (1..=i64::MAX as u64).contains(seq))
            .ok_or_else(|| {
                AppError::bad_input("which step? ?seq= names a tool call's tool.completed", None)
            })?;
        let reader = state.reader();
        let summary = queries::summary(&reader, &id)
            .await?
            .ok_or_else(|| AppError::not_found(format!("no mission {id}"), None))?;
        let (events, _) = queries::events_page(&reader, &id, seq.saturating_sub(1), 1).await?;
        let tree = events
            .first()
            .and_then(|e| match e.kind() {
                Ok(EventKind::ToolCompleted(t)) => t.tree,
                _ => None,
            })
            .ok_or_else(|| {
                AppError::bad_input(
                    format!("seq {seq} of mission {id} is not a tool call that recorded the worktree"),
                    Some("follow a \"Worktree diff at this step\" link of the mission's page".to_string()),
                )
            })?;
        let (Some(repo), Some(base)) = (summary.repo.clone(), summary.base_commit.clone()) else {
            return Err(AppError::not_found(format!("mission {id} has no repository"), None));
        };
        let data_dir = state.app.data_dir.clone();
        let (mission, at_tree) = (id.clone(), tree.clone());
        let patch = tokio::task::spawn_blocking(move || {
            queries::diff_at(&data_dir, &mission, std::path::Path::new(&repo), &base, &at_tree)
        })
        .await
        .map_err(|e| AppError::failed(format!("the diff stopped: {e}")))??;
        let (shown, cut) = capped(&patch, DIFF_SHOWN);
        let body = html! {
            div.title-row {
                h1 { "Worktree at seq " (seq) }
                a href=(format!("/missions/{id}?seq={seq}#seq-{seq}")) { "← back to the timeline" }
            }
            p.meta { "Mission " (id) " · tree " code { (tree) } " against the base " code { (summary.base_commit.as_deref().unwrap_or("-")) } }
            @if shown.is_empty() { p.empty { "No change from the base at this step." } }
            @else { (diff_view(&shown)) }
            @if cut { p.note { "Only the first " (DIFF_SHOWN / 1024) " KiB are shown." } }
        };
        Ok::<_, AppError>(page("Worktree diff", Some(&viewer), Nav::Missions, body))
    }
    .await;
    rendered.unwrap_or_else(|e| error_page(&e))
}
