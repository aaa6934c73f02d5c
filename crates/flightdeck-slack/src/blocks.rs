//! The approval request message: Block Kit `blocks` plus a `text` fallback, built from a
//! plain-data [`ApprovalRequestView`]. Pure: no IO, no clock.
//!
//! Every piece of text that comes from a mission (title, template, handles, rule reasons,
//! paths, check names, hosts, budget figures) is escaped with Slack's rules (`&`, `<`, `>`
//! become entities), so nothing a mission says can make a link, a mention or a broadcast;
//! the only links are the mission page and the PR, and only when they are `http(s)` URLs.
//! Slack's Block Kit limits are kept by truncating, never by failing: long texts end in `…`,
//! long lists end in `…and N more`.

use serde_json::{json, Value};

/// The `action_id` of the Approve button.
pub const APPROVE_ACTION_ID: &str = "flightdeck_approve";
/// The `action_id` of the Deny button.
pub const DENY_ACTION_ID: &str = "flightdeck_deny";
/// The `block_id` of the block holding the buttons.
pub const ACTIONS_BLOCK_ID: &str = "flightdeck_approval";

/// Block Kit limits (Slack's reference, "Blocks" and "Composition objects").
pub mod limits {
    /// Text of a section block.
    pub const SECTION_TEXT: usize = 3000;
    /// Text of a header block.
    pub const HEADER_TEXT: usize = 150;
    /// Elements of a context block.
    pub const CONTEXT_ELEMENTS: usize = 10;
    /// Fields of a section block.
    pub const FIELDS: usize = 10;
    /// Text of one field.
    pub const FIELD_TEXT: usize = 2000;
    /// Blocks in one message.
    pub const BLOCKS: usize = 50;
    /// Text of a button.
    pub const BUTTON_TEXT: usize = 75;
    /// `value` of a button.
    pub const BUTTON_VALUE: usize = 2000;
    /// The top-level `text` of a message (Slack truncates beyond it).
    pub const MESSAGE_TEXT: usize = 40_000;
    /// Title of a confirmation dialog.
    pub const CONFIRM_TITLE: usize = 100;
    /// Text of a confirmation dialog.
    pub const CONFIRM_TEXT: usize = 300;
    /// Labels of a confirmation dialog's buttons.
    pub const CONFIRM_BUTTON: usize = 30;
}

/// The most characters a single item taken from a mission may take in a list line.
const ITEM_MAX: usize = 300;
/// Room always kept at the end of a list for `\n…and N more`.
const MORE_RESERVE: usize = 32;
/// The longest URL linked; a longer one is not linked.
const URL_MAX: usize = 1500;
/// How long the `text` fallback may get (well under Slack's limit; it is a notification).
const FALLBACK_MAX: usize = 3000;

/// Everything the approval request shows, as plain data (the caller reads it from the
/// mission's summary, policy decision and config).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApprovalRequestView {
    pub approval_id: String,
    pub mission_id: String,
    pub title: String,
    pub template: String,
    /// The requester's handle (`@alice`).
    pub requester: String,
    pub risk_tier: String,
    pub rules: Vec<FiredRule>,
    pub approvers: Approvers,
    pub diffstat: DiffStat,
    pub acceptance: Vec<AcceptanceResult>,
    /// Hosts the sandbox refused; may be empty.
    pub blocked_egress: Vec<String>,
    pub budget: Vec<BudgetLine>,
    /// The mission's page in the web UI.
    pub mission_url: String,
    pub pr_url: Option<String>,
    pub status: ApprovalStatus,
}

/// A policy rule that asked for this approval.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FiredRule {
    pub id: String,
    pub why: String,
}

/// Who may approve and how far the gate is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Approvers {
    /// Handles of people who may approve.
    pub people: Vec<String>,
    /// Teams whose members may approve.
    pub teams: Vec<String>,
    /// Approvals needed (the `m` of `n of m`).
    pub required: u32,
    /// Handles of those who approved so far, in order (the `n`).
    pub approved_by: Vec<String>,
}

/// The change's size and its largest files.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiffStat {
    pub files_changed: u64,
    pub insertions: u64,
    pub deletions: u64,
    /// The top changed files, largest first (the message shows as many as fit).
    pub top_files: Vec<ChangedFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChangedFile {
    pub path: String,
    pub insertions: u64,
    pub deletions: u64,
}

/// One acceptance check's result.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AcceptanceResult {
    pub name: String,
    pub passed: bool,
}

/// One budget dimension, figures already formatted by the caller (`$1.20`, `120k tokens`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BudgetLine {
    pub dimension: String,
    pub used: String,
    pub limit: String,
    pub remaining: String,
}

/// Whether the gate is open (buttons shown) or closed (no buttons, a line saying why).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ApprovalStatus {
    #[default]
    Open,
    Closed {
        why: CloseReason,
    },
}

/// Why an approval request no longer takes decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    Approved,
    /// Denied, by this handle.
    Denied {
        by: String,
    },
    Expired,
    /// A new diff replaced the one this request was about.
    VoidedByNewDiff,
    /// The mission ended (cancelled, failed) before it was decided.
    Withdrawn,
}

/// A message ready for `chat.postMessage` / `chat.update`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalMessage {
    /// The notification / fallback text (mrkdwn, escaped).
    pub text: String,
    /// The Block Kit blocks (a JSON array's elements).
    pub blocks: Vec<Value>,
}

/// Builds the approval request message for `view`.
pub fn approval_message(view: &ApprovalRequestView) -> ApprovalMessage {
    let mut blocks = vec![
        header(&view.title),
        summary_fields(view),
        rules_section(&view.rules),
        approvers_section(&view.approvers),
        changes_section(&view.diffstat),
        acceptance_section(&view.acceptance),
    ];
    if !view.blocked_egress.is_empty() {
        blocks.push(egress_section(&view.blocked_egress));
    }
    if !view.budget.is_empty() {
        blocks.push(budget_section(&view.budget));
    }
    match &view.status {
        ApprovalStatus::Open => blocks.push(buttons(view)),
        ApprovalStatus::Closed { why } => blocks.push(closed_context(view, why)),
    }
    blocks.push(footer_context(view));
    blocks.truncate(limits::BLOCKS);
    ApprovalMessage {
        text: fallback_text(view),
        blocks,
    }
}

// ---------------------------------------------------------------------------------------------
// Text helpers

/// Escapes `&`, `<` and `>` as Slack's mrkdwn requires, so the text cannot form a link, a
/// mention (`<@U…>`), a broadcast (`<!here>`) or a date.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        push_escaped(&mut out, c);
    }
    out
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        // Line breaks and other controls would let one item look like several.
        c if c.is_control() => out.push(' '),
        c => out.push(c),
    }
}

fn escaped_len(c: char) -> usize {
    match c {
        '&' => 5,
        '<' | '>' => 4,
        _ => 1,
    }
}

/// `text` escaped, at most `max` characters (counting the entities), ending in `…` if cut; an
/// entity is never cut in half.
pub fn escape_clipped(text: &str, max: usize) -> String {
    let total: usize = text.chars().map(escaped_len).sum();
    if total <= max {
        return escape(text);
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let len = escaped_len(c);
        if used + len + 1 > max {
            break;
        }
        push_escaped(&mut out, c);
        used += len;
    }
    if max > 0 {
        out.push('…');
    }
    out
}

/// Plain text (no mrkdwn), at most `max` characters, ending in `…` if cut.
fn plain_clipped(text: &str, max: usize) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.chars().count() <= max {
        return clean;
    }
    let mut out: String = clean.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A code span: backticks inside would end it early, so they become quotes.
fn code(text: &str, max: usize) -> String {
    format!("`{}`", escape_clipped(&text.replace('`', "'"), max))
}

/// `<url|label>` when `url` is an `http(s)` URL of sane length, else the label alone.
/// `label` must already be escaped.
fn link(url: &str, label: &str) -> String {
    let sane = (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() <= URL_MAX
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if !sane {
        return label.to_string();
    }
    let mut target = String::with_capacity(url.len());
    for c in url.chars() {
        match c {
            '&' => target.push_str("&amp;"),
            '<' => target.push_str("%3C"),
            '>' => target.push_str("%3E"),
            '|' => target.push_str("%7C"),
            c => target.push(c),
        }
    }
    format!("<{target}|{label}>")
}

fn count(text: &str) -> usize {
    text.chars().count()
}

fn and_more(n: usize) -> String {
    format!("…and {n} more")
}

/// `heading`, then as many of `lines` as fit in `max` characters, then `…and N more` for the
/// `total - shown` left out (`total` may count items never formatted).
fn fit_lines(heading: &str, lines: &[String], total: usize, max: usize) -> String {
    let mut out = heading.to_string();
    let mut used = count(&out);
    let mut shown = 0;
    for line in lines {
        let len = count(line) + 1;
        if used + len + MORE_RESERVE > max {
            break;
        }
        out.push('\n');
        out.push_str(line);
        used += len;
        shown += 1;
    }
    if shown < total {
        out.push('\n');
        out.push_str(&and_more(total - shown));
    }
    clip_lines(out, max)
}

/// `items` (already escaped) joined by `, `, as many as fit in `max`, then `…and N more`.
fn join_fitting(items: &[String], max: usize) -> String {
    let mut out = String::new();
    let mut used = 0;
    let mut shown = 0;
    for item in items {
        let len = count(item) + if shown == 0 { 0 } else { 2 };
        if used + len + MORE_RESERVE > max {
            break;
        }
        if shown > 0 {
            out.push_str(", ");
        }
        out.push_str(item);
        used += len;
        shown += 1;
    }
    if shown < items.len() {
        if shown > 0 {
            out.push(' ');
        }
        out.push_str(&and_more(items.len() - shown));
    }
    out
}

/// A last guard for assembled mrkdwn: whole lines only, so no entity or link is cut.
fn clip_lines(text: String, max: usize) -> String {
    if count(&text) <= max {
        return text;
    }
    let mut out = String::new();
    let mut used = 0;
    for line in text.split('\n') {
        let len = count(line) + usize::from(!out.is_empty());
        if used + len + 2 > max {
            break;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(line);
        used += len;
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out.push('…');
    out
}

fn mrkdwn(text: String) -> Value {
    json!({ "type": "mrkdwn", "text": text })
}

fn plain(text: String) -> Value {
    json!({ "type": "plain_text", "text": text, "emoji": true })
}

fn section(text: String) -> Value {
    json!({ "type": "section", "text": mrkdwn(clip_lines(text, limits::SECTION_TEXT)) })
}

fn handles(list: &[String]) -> Vec<String> {
    list.iter().map(|h| escape_clipped(h, 100)).collect()
}

// ---------------------------------------------------------------------------------------------
// Blocks

fn header(title: &str) -> Value {
    let title = if title.trim().is_empty() {
        "Approval request"
    } else {
        title
    };
    json!({ "type": "header", "text": plain(plain_clipped(title, limits::HEADER_TEXT)) })
}

fn approvals_so_far(approvers: &Approvers, max: usize) -> String {
    let mut text = format!("{} of {}", approvers.approved_by.len(), approvers.required);
    if !approvers.approved_by.is_empty() {
        text.push_str(" — approved by ");
        text.push_str(&join_fitting(&handles(&approvers.approved_by), max));
    }
    text
}

fn summary_fields(view: &ApprovalRequestView) -> Value {
    let mission = link(
        &view.mission_url,
        &escape_clipped(&view.mission_id, ITEM_MAX),
    );
    let mut fields = vec![
        format!("*Mission*\n{mission}"),
        format!("*Template*\n{}", escape_clipped(&view.template, ITEM_MAX)),
        format!(
            "*Requested by*\n{}",
            escape_clipped(&view.requester, ITEM_MAX)
        ),
        format!("*Risk tier*\n{}", escape_clipped(&view.risk_tier, ITEM_MAX)),
        format!(
            "*Approvals*\n{}",
            approvals_so_far(&view.approvers, limits::FIELD_TEXT - 100)
        ),
    ];
    if let Some(pr) = &view.pr_url {
        fields.push(format!("*Pull request*\n{}", link(pr, "Open the PR")));
    }
    let fields: Vec<Value> = fields
        .into_iter()
        .take(limits::FIELDS)
        .map(|f| mrkdwn(clip_lines(f, limits::FIELD_TEXT)))
        .collect();
    json!({ "type": "section", "fields": fields })
}

fn rules_section(rules: &[FiredRule]) -> Value {
    if rules.is_empty() {
        return section("*Rules that fired*\nnone recorded".to_string());
    }
    let lines: Vec<String> = rules
        .iter()
        .take(200)
        .map(|r| {
            format!(
                "• {}: {}",
                code(&r.id, 100),
                escape_clipped(&r.why, ITEM_MAX)
            )
        })
        .collect();
    section(fit_lines(
        "*Rules that fired*",
        &lines,
        rules.len(),
        limits::SECTION_TEXT,
    ))
}

fn approvers_section(approvers: &Approvers) -> Value {
    let budget = (limits::SECTION_TEXT - 100) / 3;
    let mut text = "*Who may approve*".to_string();
    if approvers.people.is_empty() && approvers.teams.is_empty() {
        text.push_str("\nno one is named by the policy");
    }
    if !approvers.people.is_empty() {
        text.push_str("\nPeople: ");
        text.push_str(&join_fitting(&handles(&approvers.people), budget));
    }
    if !approvers.teams.is_empty() {
        text.push_str("\nTeams: ");
        text.push_str(&join_fitting(&handles(&approvers.teams), budget));
    }
    text.push_str("\nSo far: ");
    text.push_str(&approvals_so_far(approvers, budget));
    section(text)
}

fn changes_section(diff: &DiffStat) -> Value {
    let heading = format!(
        "*Changes*: {} file{} changed, +{} −{}",
        diff.files_changed,
        if diff.files_changed == 1 { "" } else { "s" },
        diff.insertions,
        diff.deletions
    );
    let lines: Vec<String> = diff
        .top_files
        .iter()
        .take(200)
        .map(|f| {
            format!(
                "• {} +{} −{}",
                code(&f.path, ITEM_MAX),
                f.insertions,
                f.deletions
            )
        })
        .collect();
    let total = usize::try_from(diff.files_changed)
        .unwrap_or(usize::MAX)
        .max(diff.top_files.len());
    section(fit_lines(&heading, &lines, total, limits::SECTION_TEXT))
}

fn acceptance_section(results: &[AcceptanceResult]) -> Value {
    if results.is_empty() {
        return section("*Acceptance*\nno checks ran".to_string());
    }
    let failed = results.iter().filter(|r| !r.passed).count();
    let heading = format!(
        "*Acceptance*: {} passed, {} failed",
        results.len() - failed,
        failed
    );
    // Failures first: they are what an approver must see.
    let lines: Vec<String> = results
        .iter()
        .filter(|r| !r.passed)
        .chain(results.iter().filter(|r| r.passed))
        .take(200)
        .map(|r| {
            format!(
                "{} {}",
                if r.passed { "✅" } else { "❌" },
                escape_clipped(&r.name, ITEM_MAX)
            )
        })
        .collect();
    section(fit_lines(
        &heading,
        &lines,
        results.len(),
        limits::SECTION_TEXT,
    ))
}

fn egress_section(hosts: &[String]) -> Value {
    let lines: Vec<String> = hosts
        .iter()
        .take(200)
        .map(|h| format!("• {}", code(h, ITEM_MAX)))
        .collect();
    section(fit_lines(
        "*Blocked egress* (the sandbox refused these hosts)",
        &lines,
        hosts.len(),
        limits::SECTION_TEXT,
    ))
}

fn budget_section(budget: &[BudgetLine]) -> Value {
    let field = |b: &BudgetLine| {
        format!(
            "*{}*\n{} of {} used, {} left",
            escape_clipped(&b.dimension, 100),
            escape_clipped(&b.used, 100),
            escape_clipped(&b.limit, 100),
            escape_clipped(&b.remaining, 100)
        )
    };
    let mut fields: Vec<Value> = Vec::new();
    if budget.len() <= limits::FIELDS {
        fields.extend(budget.iter().map(|b| mrkdwn(field(b))));
    } else {
        let shown = limits::FIELDS - 1;
        fields.extend(budget.iter().take(shown).map(|b| mrkdwn(field(b))));
        fields.push(mrkdwn(and_more(budget.len() - shown)));
    }
    json!({ "type": "section", "text": mrkdwn("*Budget*".to_string()), "fields": fields })
}

fn button(view: &ApprovalRequestView, approve: bool) -> Value {
    let title = escape_clipped(&view.title, 120);
    let mission = escape_clipped(&view.mission_id, 60);
    let (label, action_id, style, dialog_title, verb) = if approve {
        (
            "Approve",
            APPROVE_ACTION_ID,
            "primary",
            "Approve this change?",
            "approve",
        )
    } else {
        (
            "Deny",
            DENY_ACTION_ID,
            "danger",
            "Deny this change?",
            "deny",
        )
    };
    let dialog = format!(
        "You {verb} *{title}* ({mission}) as yourself; the decision is recorded under your name."
    );
    json!({
        "type": "button",
        "action_id": action_id,
        "text": plain(plain_clipped(label, limits::BUTTON_TEXT)),
        "value": plain_clipped(&view.approval_id, limits::BUTTON_VALUE),
        "style": style,
        "confirm": {
            "title": plain(plain_clipped(dialog_title, limits::CONFIRM_TITLE)),
            "text": mrkdwn(clip_lines(dialog, limits::CONFIRM_TEXT)),
            "confirm": plain(plain_clipped(label, limits::CONFIRM_BUTTON)),
            "deny": plain(plain_clipped("Cancel", limits::CONFIRM_BUTTON)),
            "style": style,
        },
    })
}

fn buttons(view: &ApprovalRequestView) -> Value {
    json!({
        "type": "actions",
        "block_id": ACTIONS_BLOCK_ID,
        "elements": [button(view, true), button(view, false)],
    })
}

fn close_sentence(view: &ApprovalRequestView, why: &CloseReason) -> String {
    match why {
        CloseReason::Approved => format!(
            "*Approved* ({}). No more decisions are taken here.",
            approvals_so_far(&view.approvers, 1000)
        ),
        CloseReason::Denied { by } => format!(
            "*Denied* by {}. No more decisions are taken here.",
            escape_clipped(by, 100)
        ),
        CloseReason::Expired => {
            "*Expired* before enough approvals. No more decisions are taken here.".to_string()
        }
        CloseReason::VoidedByNewDiff => {
            "*Voided* by a new diff; the new change gets its own request.".to_string()
        }
        CloseReason::Withdrawn => {
            "*Withdrawn*: the mission ended before this was decided.".to_string()
        }
    }
}

fn closed_context(view: &ApprovalRequestView, why: &CloseReason) -> Value {
    json!({
        "type": "context",
        "elements": [mrkdwn(clip_lines(close_sentence(view, why), limits::SECTION_TEXT))],
    })
}

fn footer_context(view: &ApprovalRequestView) -> Value {
    let mut elements = vec![mrkdwn(format!("Approval {}", code(&view.approval_id, 200)))];
    elements.push(mrkdwn(link(&view.mission_url, "Mission page")));
    if let Some(pr) = &view.pr_url {
        elements.push(mrkdwn(link(pr, "Pull request")));
    }
    elements.truncate(limits::CONTEXT_ELEMENTS);
    json!({ "type": "context", "elements": elements })
}

fn fallback_text(view: &ApprovalRequestView) -> String {
    let title = escape_clipped(&view.title, 500);
    let mission = escape_clipped(&view.mission_id, 200);
    let text = match &view.status {
        ApprovalStatus::Open => format!(
            "Approval needed: {title} ({mission}), requested by {}, risk tier {}, {} approvals",
            escape_clipped(&view.requester, 100),
            escape_clipped(&view.risk_tier, 100),
            approvals_so_far(&view.approvers, 1000),
        ),
        ApprovalStatus::Closed { why } => {
            format!("{title} ({mission}): {}", close_sentence(view, why))
        }
    };
    clip_lines(text, FALLBACK_MAX.min(limits::MESSAGE_TEXT))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normal() -> ApprovalRequestView {
        ApprovalRequestView {
            approval_id: "apr_01".into(),
            mission_id: "m-20250101-fix-login".into(),
            title: "Fix the login redirect".into(),
            template: "bugfix".into(),
            requester: "@carol".into(),
            risk_tier: "high".into(),
            rules: vec![FiredRule {
                id: "auth-paths".into(),
                why: "touches src/auth/**".into(),
            }],
            approvers: Approvers {
                people: vec!["@alice".into(), "@bob".into()],
                teams: vec!["@acme/platform".into()],
                required: 2,
                approved_by: vec!["@alice".into()],
            },
            diffstat: DiffStat {
                files_changed: 3,
                insertions: 40,
                deletions: 7,
                top_files: vec![
                    ChangedFile {
                        path: "src/auth/login.rs".into(),
                        insertions: 30,
                        deletions: 5,
                    },
                    ChangedFile {
                        path: "src/auth/mod.rs".into(),
                        insertions: 8,
                        deletions: 2,
                    },
                ],
            },
            acceptance: vec![
                AcceptanceResult {
                    name: "cargo test".into(),
                    passed: true,
                },
                AcceptanceResult {
                    name: "lint".into(),
                    passed: false,
                },
            ],
            blocked_egress: vec!["evil.example.com".into()],
            budget: vec![BudgetLine {
                dimension: "usd".into(),
                used: "$1.20".into(),
                limit: "$5.00".into(),
                remaining: "$3.80".into(),
            }],
            mission_url: "https://fd.example.com/missions/m-20250101-fix-login".into(),
            pr_url: Some("https://github.com/acme/app/pull/12".into()),
            status: ApprovalStatus::Open,
        }
    }

    fn huge() -> ApprovalRequestView {
        let mut view = normal();
        view.title = "T".repeat(5000);
        view.template = "<".repeat(3000);
        view.rules = (0..100)
            .map(|i| FiredRule {
                id: format!("rule-{i}"),
                why: format!("{}{}", "why & ".repeat(80), i),
            })
            .collect();
        view.approvers.people = (0..400).map(|i| format!("@person-{i}")).collect();
        view.approvers.teams = (0..400).map(|i| format!("@acme/team-{i}")).collect();
        view.approvers.approved_by = (0..300).map(|i| format!("@person-{i}")).collect();
        view.diffstat = DiffStat {
            files_changed: 500,
            insertions: 100_000,
            deletions: 50_000,
            top_files: (0..500)
                .map(|i| ChangedFile {
                    path: format!("src/{}/file-{i}.rs", "deep/".repeat(60)),
                    insertions: i,
                    deletions: 1,
                })
                .collect(),
        };
        view.acceptance = (0..300)
            .map(|i| AcceptanceResult {
                name: format!("check {i} {}", "x".repeat(400)),
                passed: i % 3 != 0,
            })
            .collect();
        view.blocked_egress = (0..300).map(|i| format!("host-{i}.example.com")).collect();
        view.budget = (0..25)
            .map(|i| BudgetLine {
                dimension: format!("dim-{i}"),
                used: "1".into(),
                limit: "2".into(),
                remaining: "1".into(),
            })
            .collect();
        view.approval_id = "a".repeat(5000);
        view
    }

    /// Walks every block and checks every Block Kit limit this module promises.
    fn assert_within_limits(message: &ApprovalMessage) {
        assert!(count(&message.text) <= limits::MESSAGE_TEXT);
        assert!(message.blocks.len() <= limits::BLOCKS);
        let len = |v: &Value| v.as_str().map(count).unwrap_or(0);
        for block in &message.blocks {
            match block["type"].as_str() {
                Some("header") => assert!(len(&block["text"]["text"]) <= limits::HEADER_TEXT),
                Some("section") => {
                    assert!(
                        len(&block["text"]["text"]) <= limits::SECTION_TEXT,
                        "{block}"
                    );
                    if let Some(fields) = block["fields"].as_array() {
                        assert!(fields.len() <= limits::FIELDS);
                        for f in fields {
                            assert!(len(&f["text"]) <= limits::FIELD_TEXT);
                        }
                    }
                    assert!(block.get("text").is_some() || block.get("fields").is_some());
                }
                Some("context") => {
                    let elements = block["elements"].as_array().map(Vec::len).unwrap_or(0);
                    assert!((1..=limits::CONTEXT_ELEMENTS).contains(&elements));
                    for e in block["elements"].as_array().into_iter().flatten() {
                        assert!(len(&e["text"]) <= limits::SECTION_TEXT);
                    }
                }
                Some("actions") => {
                    for b in block["elements"].as_array().into_iter().flatten() {
                        assert!(len(&b["text"]["text"]) <= limits::BUTTON_TEXT);
                        assert!(len(&b["value"]) <= limits::BUTTON_VALUE);
                        assert!(len(&b["confirm"]["title"]["text"]) <= limits::CONFIRM_TITLE);
                        assert!(len(&b["confirm"]["text"]["text"]) <= limits::CONFIRM_TEXT);
                        assert!(len(&b["confirm"]["confirm"]["text"]) <= limits::CONFIRM_BUTTON);
                        assert!(len(&b["confirm"]["deny"]["text"]) <= limits::CONFIRM_BUTTON);
                    }
                }
                other => panic!("unexpected block type {other:?}"),
            }
        }
    }

    fn all_text(message: &ApprovalMessage) -> String {
        format!("{}\n{}", message.text, Value::Array(message.blocks.clone()))
    }

    fn actions(message: &ApprovalMessage) -> Option<&Value> {
        message.blocks.iter().find(|b| b["type"] == "actions")
    }

    #[test]
    fn a_normal_request_shows_everything_and_two_confirmed_buttons() {
        let message = approval_message(&normal());
        assert_within_limits(&message);
        let text = all_text(&message);
        for needle in [
            "Fix the login redirect",
            "bugfix",
            "@carol",
            "high",
            "`auth-paths`: touches src/auth/**",
            "People: @alice, @bob",
            "Teams: @acme/platform",
            "1 of 2 — approved by @alice",
            "3 files changed, +40 −7",
            "`src/auth/login.rs` +30 −5",
            "1 passed, 1 failed",
            "❌ lint",
            "✅ cargo test",
            "`evil.example.com`",
            "$1.20 of $5.00 used, $3.80 left",
            "<https://fd.example.com/missions/m-20250101-fix-login|m-20250101-fix-login>",
            "<https://github.com/acme/app/pull/12|Pull request>",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in {text}");
        }
        assert_eq!(message.blocks[0]["type"], "header");
        assert_eq!(message.blocks[0]["text"]["text"], "Fix the login redirect");
        assert!(message
            .text
            .starts_with("Approval needed: Fix the login redirect"));
        let actions = actions(&message).expect("buttons");
        assert_eq!(actions["block_id"], ACTIONS_BLOCK_ID);
        let elements = actions["elements"].as_array().expect("elements");
        assert_eq!(elements.len(), 2);
        assert_eq!(elements[0]["action_id"], APPROVE_ACTION_ID);
        assert_eq!(elements[0]["value"], "apr_01");
        assert_eq!(elements[0]["style"], "primary");
        assert_eq!(elements[1]["action_id"], DENY_ACTION_ID);
        assert_eq!(elements[1]["value"], "apr_01");
        assert_eq!(elements[1]["style"], "danger");
        for e in elements {
            assert!(e["confirm"]["text"]["text"]
                .as_str()
                .expect("confirm")
                .contains("Fix the login redirect"));
        }
    }

    #[test]
    fn a_huge_request_stays_within_every_limit() {
        let message = approval_message(&huge());
        assert_within_limits(&message);
        let text = all_text(&message);
        assert!(text.contains("…and "), "{text}");
        // The header is the title cut to 150 characters.
        let header = message.blocks[0]["text"]["text"].as_str().expect("header");
        assert_eq!(count(header), limits::HEADER_TEXT);
        assert!(header.ends_with('…'));
        // The rules section says how many were left out, and counts add up.
        let rules = message.blocks[2]["text"]["text"].as_str().expect("rules");
        let shown = rules.lines().filter(|l| l.starts_with("• ")).count();
        assert!(
            rules.ends_with(&format!("…and {} more", 100 - shown)),
            "{rules}"
        );
        // Files: the total is the diffstat's count.
        let files = message.blocks[4]["text"]["text"].as_str().expect("files");
        let shown = files.lines().filter(|l| l.starts_with("• ")).count();
        assert!(shown > 0);
        assert!(
            files.ends_with(&format!("…and {} more", 500 - shown)),
            "{files}"
        );
        // Budget: nine dimensions and a tenth field saying how many more.
        let budget = message
            .blocks
            .iter()
            .find(|b| b["text"]["text"] == "*Budget*")
            .expect("budget");
        assert_eq!(budget["fields"].as_array().map(Vec::len), Some(10));
        assert_eq!(budget["fields"][9]["text"], "…and 16 more");
        // No entity is ever cut in half.
        for piece in text.split('&').skip(1) {
            assert!(
                piece.starts_with("amp;") || piece.starts_with("lt;") || piece.starts_with("gt;"),
                "a cut entity: {}",
                &piece[..piece.len().min(10)]
            );
        }
    }

    #[test]
    fn mission_text_cannot_make_links_or_mentions() {
        let mut view = normal();
        view.title = "<!channel> & <https://evil.example|click>".into();
        view.template = "<@U0123ABCD>".into();
        view.requester = "<!here>".into();
        view.rules = vec![FiredRule {
            id: "r`<x>`".into(),
            why: "<https://evil|login> now".into(),
        }];
        view.approvers.people = vec!["<@U999>".into()];
        view.diffstat.top_files = vec![ChangedFile {
            path: "a<b>&c".into(),
            insertions: 1,
            deletions: 0,
        }];
        view.acceptance = vec![AcceptanceResult {
            name: "<!everyone>".into(),
            passed: true,
        }];
        view.blocked_egress = vec!["<http://x|y>".into()];
        view.budget[0].used = "<!subteam^S1>".into();
        view.mission_id = "m|<x>".into();
        view.mission_url = "https://fd.example.com/m?a=1&b=<2>|3".into();
        view.pr_url = Some("javascript:alert(1)".into());
        let message = approval_message(&view);
        assert_within_limits(&message);
        let mut mrkdwn_texts = vec![message.text.clone()];
        collect_mrkdwn(&Value::Array(message.blocks.clone()), &mut mrkdwn_texts);
        for text in &mrkdwn_texts {
            // The only `<` left open a link to one of our two URLs.
            for (i, _) in text.match_indices('<') {
                assert!(
                    text[i..].starts_with("<https://fd.example.com/m?a=1&amp;b=%3C2%3E%7C3|"),
                    "a raw `<` in {text}"
                );
            }
            assert!(!text.contains("javascript:"), "{text}");
        }
        let all = all_text(&message);
        assert!(all.contains("&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;"));
        assert!(all.contains("`a&lt;b&gt;&amp;c`"));
        assert!(all.contains("`r'&lt;x&gt;'`"));
        // The header is plain text: shown as written, never parsed.
        assert_eq!(message.blocks[0]["text"]["type"], "plain_text");
    }

    fn collect_mrkdwn(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if map.get("type").and_then(Value::as_str) == Some("mrkdwn") {
                    out.extend(map.get("text").and_then(Value::as_str).map(str::to_string));
                }
                map.values().for_each(|v| collect_mrkdwn(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| collect_mrkdwn(v, out)),
            _ => {}
        }
    }

    #[test]
    fn closed_requests_have_no_buttons_and_say_why() {
        let cases = [
            (
                CloseReason::Approved,
                "*Approved* (2 of 2 — approved by @alice, @bob)",
            ),
            (
                CloseReason::Denied { by: "@bob".into() },
                "*Denied* by @bob.",
            ),
            (CloseReason::Expired, "*Expired* before enough approvals."),
            (CloseReason::VoidedByNewDiff, "*Voided* by a new diff"),
            (CloseReason::Withdrawn, "*Withdrawn*: the mission ended"),
        ];
        for (why, expected) in cases {
            let mut view = normal();
            view.approvers.approved_by = vec!["@alice".into(), "@bob".into()];
            view.status = ApprovalStatus::Closed { why };
            let message = approval_message(&view);
            assert_within_limits(&message);
            assert!(actions(&message).is_none(), "{expected}: buttons left");
            assert!(!all_text(&message).contains(APPROVE_ACTION_ID));
            let context = message
                .blocks
                .iter()
                .filter(|b| b["type"] == "context")
                .map(|b| {
                    b["elements"][0]["text"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                })
                .collect::<Vec<_>>();
            assert!(
                context.iter().any(|c| c.starts_with(expected)),
                "{expected} not in {context:?}"
            );
            assert!(message.text.contains(expected), "{}", message.text);
        }
    }

    #[test]
    fn escape_clipped_never_cuts_an_entity() {
        let cases = [
            ("abc", 10, "abc"),
            ("a&b", 10, "a&amp;b"),
            ("abcdef", 4, "abc…"),
            ("&&&", 7, "&amp;…"),
            ("<<", 8, "&lt;&lt;"),
            ("<<", 7, "&lt;…"),
            ("a\nb", 5, "a b"),
            ("", 0, ""),
        ];
        for (input, max, expected) in cases {
            assert_eq!(escape_clipped(input, max), expected, "{input:?} {max}");
        }
    }

    #[test]
    fn empty_lists_still_make_a_valid_message() {
        let view = ApprovalRequestView::default();
        let message = approval_message(&view);
        assert_within_limits(&message);
        assert_eq!(message.blocks[0]["text"]["text"], "Approval request");
        assert!(!all_text(&message).contains("Blocked egress"));
    }
}
