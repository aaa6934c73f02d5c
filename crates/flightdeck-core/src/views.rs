//! Typed views of a mission: what every renderer (the CLI's text and `--json`, and next the
//! web UI, Slack and GitHub) reads, instead of picking JSON keys out of a summary or call ids
//! apart.
//!
//! Each view is versioned ([`VIEWS_VERSION`]): its JSON is part of the public contract
//! (`show --json`, `approvals --json`), so a field may be added but never renamed, retyped or
//! removed without a new version and a CHANGELOG entry. Field order is the order the JSON
//! has always had.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::budget::{Dimension, LedgerEntry};
use crate::event::{MissionError, StepKind, StepStatus};
use crate::hash::Digest;
use crate::state::{ApprovalProgress, ApprovalStatus, MissionState, MissionStatus};
use crate::{EventKind, StoredEvent};

/// The version of the views' JSON shapes.
pub const VIEWS_VERSION: u32 = 1;

/// The mission summary (`run`, `show`, `resume`, `fork`, `budget` with `--json`; the store's
/// projection; the approval bundle's budget).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MissionSummary {
    pub id: String,
    pub template: Option<String>,
    pub status: MissionStatus,
    pub repo: Option<String>,
    pub base_commit: Option<String>,
    pub branch: Option<String>,
    pub head_commit: Option<String>,
    pub requested_by: Option<String>,
    pub risk_tier: Option<String>,
    pub pending_approvals: Vec<PendingApproval>,
    pub approvals: Vec<ApprovalView>,
    pub policy: PolicyView,
    pub budget: BudgetView,
    pub cost: CostView,
    pub events: u64,
    pub head_hash: String,
    pub artifacts: PublishedArtifacts,
    pub error: Option<MissionError>,
    pub steps: Vec<StepView>,
    pub workspace: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// What the mission was created with that people should know (CODEOWNERS lines GitHub
    /// would skip); absent when there is nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The published change's artifacts (empty until the mission publishes).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PublishedArtifacts {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub patch: Option<Digest>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pr_description: Option<Digest>,
}

/// One template step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepView {
    pub index: usize,
    pub kind: StepKind,
    pub description: String,
    /// `running`, or the step's final status.
    pub status: String,
}

/// The name of the summary's list of steps, as a store keeps it item by item.
pub const STEPS_LIST: &str = "steps";

impl StepView {
    /// Step `index` of the mission as it stands, if it has started.
    pub fn of(state: &MissionState, index: usize) -> Option<StepView> {
        let step = state.steps.get(&index)?;
        Some(StepView {
            index,
            kind: step.kind,
            description: step.description.clone(),
            status: step
                .status
                .map_or("running", StepStatus::as_str)
                .to_string(),
        })
    }
}

/// The pinned policy and how its decisions went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyView {
    pub hash: Option<String>,
    pub decisions: DecisionCounts,
}

/// Policy decisions by verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionCounts {
    pub allow: u64,
    pub approve: u64,
    pub deny: u64,
}

/// Used and limit of each budget dimension (wall time as of the last event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetView {
    pub usd: BudgetDimension,
    pub tokens: BudgetDimension,
    pub tool_calls: BudgetDimension,
    pub model_calls: BudgetDimension,
    pub wall_seconds: BudgetDimension,
}

impl BudgetView {
    /// Each dimension with its name.
    pub fn dimensions(&self) -> [(Dimension, &BudgetDimension); 5] {
        [
            (Dimension::Usd, &self.usd),
            (Dimension::Tokens, &self.tokens),
            (Dimension::ToolCalls, &self.tool_calls),
            (Dimension::ModelCalls, &self.model_calls),
            (Dimension::WallSeconds, &self.wall_seconds),
        ]
    }
}

/// One budget dimension. `used` is a whole number for every dimension but `usd`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetDimension {
    pub used: Amount,
    /// `None`: unlimited.
    pub limit: Option<f64>,
}

impl BudgetDimension {
    /// What is left (`None`: unlimited).
    pub fn remaining(&self) -> Option<f64> {
        self.limit
            .map(|limit| (limit - self.used.as_f64()).max(0.0))
    }
}

/// A count (whole units) or an amount of money.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Amount {
    Count(u64),
    Usd(f64),
}

impl Amount {
    pub fn as_f64(self) -> f64 {
        match self {
            Amount::Count(n) => n as f64,
            Amount::Usd(usd) => usd,
        }
    }
}

/// Spend per model and per role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostView {
    pub total_usd: f64,
    pub by_model: Vec<CostLine>,
    pub by_role: Vec<CostLine>,
}

/// The spend of one model (`model` set) or one role (`role` set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostLine {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub role: Option<String>,
    pub calls: u64,
    pub failed: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub cost_usd: f64,
    pub served: Vec<String>,
    /// Attempts cut off by a crash after they were sent (their reservations count as spent).
    #[serde(skip_serializing_if = "is_zero", default)]
    pub interrupted: u64,
    #[serde(skip_serializing_if = "is_zero", default)]
    pub interrupted_tokens: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl CostLine {
    fn of(model: Option<&str>, role: Option<&str>, entry: &LedgerEntry) -> CostLine {
        CostLine {
            model: model.map(str::to_string),
            role: role.map(str::to_string),
            calls: entry.calls,
            failed: entry.failed,
            input_tokens: entry.input_tokens,
            output_tokens: entry.output_tokens,
            cache_read_tokens: entry.cache_read_tokens,
            cache_write_tokens: entry.cache_write_tokens,
            cost_usd: entry.cost_usd,
            served: entry.served.clone(),
            interrupted: entry.interrupted,
            interrupted_tokens: entry.interrupted_tokens,
        }
    }
}

/// A pending approval as the summary's `pending_approvals` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingApproval {
    pub id: String,
    pub gate: String,
    pub required: u32,
    pub approved_by: Vec<String>,
    pub eligible: Vec<String>,
    pub rule_ids: Vec<String>,
    /// Changed paths none of whose code owners has approved yet, with their owners.
    pub waiting_for_owners: BTreeMap<String, Option<Vec<String>>>,
    pub subject: String,
    pub command: Option<String>,
    pub tier: String,
    pub diff_hash: String,
    /// The stored patch had secrets masked (the approval covers the unmasked diff).
    pub masked: bool,
    pub bundle: Digest,
    pub requested_at: String,
    pub expires_at: Option<String>,
}

/// Any approval, with who decided what and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalView {
    pub id: String,
    pub gate: String,
    pub subject: String,
    pub command: Option<String>,
    pub status: ApprovalStatus,
    pub required: u32,
    pub approved_by: Vec<String>,
    pub tier: String,
    pub rule_ids: Vec<String>,
    pub eligible: Vec<String>,
    /// The changed paths the approval is about (whose code owners may approve).
    pub changed_paths: Vec<String>,
    pub diff_hash: String,
    /// The stored patch had secrets masked (the approval covers the unmasked diff).
    pub masked: bool,
    pub bundle: Digest,
    pub requested_at: String,
    pub expires_at: Option<String>,
    pub closed_at: Option<String>,
    pub decisions: Vec<VoteView>,
}

/// One person's decision on an approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoteView {
    pub by: String,
    pub decision: String,
    pub channel: String,
    pub comment: Option<String>,
    pub at: String,
    /// Whether it counts: it was given for the diff the approval covers.
    pub counts: bool,
}

/// An approval in `approvals` (all missions): the approval, and its mission's context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalListing {
    #[serde(flatten)]
    pub approval: ApprovalView,
    pub mission: String,
    pub mission_status: MissionStatus,
    pub template: Option<String>,
    pub requested_by: Option<String>,
}

fn at(ms: i64) -> String {
    crate::clock::format_rfc3339_millis(ms)
}

impl PendingApproval {
    pub fn of(a: &ApprovalProgress) -> PendingApproval {
        PendingApproval {
            id: a.request.approval_id.clone(),
            gate: a.request.gate.clone(),
            required: a.request.required,
            approved_by: a.approved_by().into_iter().map(str::to_string).collect(),
            eligible: a.request.eligible.clone(),
            rule_ids: a.request.rule_ids.clone(),
            waiting_for_owners: a
                .uncovered_paths()
                .into_iter()
                .map(|p| (p.to_string(), a.request.code_owners.get(p).cloned()))
                .collect(),
            subject: a.request.subject.clone(),
            command: a.request.command.clone(),
            tier: a.request.tier.clone(),
            diff_hash: a.request.diff_hash.clone(),
            masked: a.request.masked,
            bundle: a.request.bundle.clone(),
            requested_at: at(a.requested_at_ms),
            expires_at: a.expires_at_ms().map(at),
        }
    }
}

impl ApprovalView {
    pub fn of(a: &ApprovalProgress) -> ApprovalView {
        ApprovalView {
            id: a.request.approval_id.clone(),
            gate: a.request.gate.clone(),
            subject: a.request.subject.clone(),
            command: a.request.command.clone(),
            status: a.status,
            required: a.request.required,
            approved_by: a.approved_by().into_iter().map(str::to_string).collect(),
            tier: a.request.tier.clone(),
            rule_ids: a.request.rule_ids.clone(),
            eligible: a.request.eligible.clone(),
            changed_paths: a.request.changed_paths.clone(),
            diff_hash: a.request.diff_hash.clone(),
            masked: a.request.masked,
            bundle: a.request.bundle.clone(),
            requested_at: at(a.requested_at_ms),
            expires_at: a.expires_at_ms().map(at),
            closed_at: a.closed_at_ms.map(at),
            decisions: a
                .votes
                .iter()
                .map(|v| VoteView {
                    by: v.decided.by.clone(),
                    decision: v.decided.decision.clone(),
                    channel: v.decided.channel.clone(),
                    comment: v.decided.comment.clone(),
                    at: at(v.at_ms),
                    counts: v.decided.diff_hash == a.request.diff_hash,
                })
                .collect(),
        }
    }

    /// Whether it still waits for decisions at `now_ms`: pending, and not past its expiry
    /// (an expiry is recorded by the mission's driver or the scheduler; until then a view
    /// says what it will be).
    pub fn open_at(&self, now_ms: i64) -> bool {
        self.status == ApprovalStatus::Pending && !self.expired_at(now_ms)
    }

    /// Pending but past its expiry at `now_ms` (not recorded yet).
    pub fn expired_at(&self, now_ms: i64) -> bool {
        self.status == ApprovalStatus::Pending
            && self
                .expires_at
                .as_deref()
                .and_then(crate::clock::parse_rfc3339_millis)
                .is_some_and(|at| at <= now_ms)
    }
}

impl CostView {
    pub fn of(state: &MissionState) -> CostView {
        CostView::of_ledger(&state.ledger)
    }

    pub fn of_ledger(ledger: &crate::budget::Ledger) -> CostView {
        CostView {
            total_usd: ledger.by_model.values().map(|e| e.cost_usd).sum(),
            by_model: ledger
                .by_model
                .iter()
                .map(|(k, e)| CostLine::of(Some(k), None, e))
                .collect(),
            by_role: ledger
                .by_role
                .iter()
                .map(|(k, e)| CostLine::of(None, Some(k), e))
                .collect(),
        }
    }
}

impl BudgetView {
    /// The budget at `now_ms` (the summary uses the last event's time).
    pub fn of(state: &MissionState, now_ms: i64) -> BudgetView {
        let dimension = |d: Dimension| {
            let used = state.budget_used(d, now_ms);
            BudgetDimension {
                used: if d.is_integral() {
                    Amount::Count(used as u64)
                } else {
                    Amount::Usd(used)
                },
                limit: state.budget_limit(d),
            }
        };
        BudgetView {
            usd: dimension(Dimension::Usd),
            tokens: dimension(Dimension::Tokens),
            tool_calls: dimension(Dimension::ToolCalls),
            model_calls: dimension(Dimension::ModelCalls),
            wall_seconds: dimension(Dimension::WallSeconds),
        }
    }
}

impl MissionSummary {
    pub fn of(state: &MissionState) -> MissionSummary {
        let mut summary = MissionSummary::without_steps(state);
        summary.steps = state
            .steps
            .keys()
            .filter_map(|index| StepView::of(state, *index))
            .collect();
        summary
    }

    /// The summary with an empty `steps`: what a store keeps on every append, its cost
    /// independent of the mission's length (the steps are kept one by one, as they change:
    /// see [`StepView::of`] and [`STEPS_LIST`]).
    pub fn without_steps(state: &MissionState) -> MissionSummary {
        let created = state.created.as_ref();
        let published = state.published.as_ref();
        MissionSummary {
            id: state.id.clone(),
            template: created.map(|c| c.template.clone()),
            status: state.status,
            repo: created.map(|c| c.repo.clone()),
            base_commit: created.map(|c| c.base_commit.clone()),
            branch: published.map(|p| p.branch.clone()),
            head_commit: published.map(|p| p.commit.clone()),
            requested_by: created.map(|c| c.requested_by.clone()),
            risk_tier: state.risk_tier().map(str::to_string),
            pending_approvals: state.pending_approvals().map(PendingApproval::of).collect(),
            approvals: state.approvals_in_order().map(ApprovalView::of).collect(),
            policy: PolicyView {
                hash: created.map(|c| c.policy_hash.to_string()),
                decisions: state.decision_counts,
            },
            budget: BudgetView::of(state, state.last_at_ms),
            cost: CostView::of(state),
            events: state.events,
            head_hash: state.head_hash.clone(),
            artifacts: PublishedArtifacts {
                patch: published.map(|p| p.patch.clone()),
                pr_description: published.map(|p| p.pr_description.clone()),
            },
            error: state.error.clone(),
            steps: Vec::new(),
            workspace: state.workspace.as_ref().map(|w| w.path.clone()),
            created_at: at(state.first_at_ms),
            updated_at: at(state.last_at_ms),
            warnings: created
                .map(|c| c.codeowners_warnings.clone())
                .unwrap_or_default(),
        }
    }

    /// The summary as JSON (what `--json` prints and the store keeps as the projection).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// One line of a timeline for people: what an event says, in a few words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLine {
    pub seq: u64,
    /// `HH:MM:SS.mmm` (UTC) of the event.
    pub time: String,
    pub event_type: String,
    pub text: String,
}

impl EventLine {
    pub fn of(event: &StoredEvent) -> EventLine {
        EventLine {
            seq: event.seq,
            time: event.at.get(11..23).unwrap_or(&event.at).to_string(),
            event_type: event.event_type.clone(),
            text: describe(event),
        }
    }
}

fn short(s: &str, n: usize) -> &str {
    s.get(..n).unwrap_or(s)
}

/// The first line of `text`, cut to `max` characters (`…` marks what was cut).
/// A command (or any text an approver decides on) for a one-line view: its whole first
/// line, and when there is more, how much: `make \` -> `make \ (+2 more lines, 31 bytes)`.
/// Nothing is cut from the first line: an approver must not approve text they cannot see.
pub fn first_line_and_size(text: &str) -> String {
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("");
    let more = lines.count();
    if more == 0 {
        first.to_string()
    } else {
        let plural = if more == 1 { "" } else { "s" };
        format!("{first} (+{more} more line{plural}, {} bytes)", text.len())
    }
}

pub fn one_line(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    let more = text.lines().nth(1).is_some();
    if line.chars().count() > max {
        format!(
            "{}…",
            line.chars().take(max.saturating_sub(1)).collect::<String>()
        )
    } else if more {
        format!("{line} …")
    } else {
        line.to_string()
    }
}

/// What an event says, in a few words.
fn describe(event: &StoredEvent) -> String {
    let Ok(kind) = event.kind() else {
        return one_line(&event.data.to_string(), 100);
    };
    match kind {
        EventKind::MissionCreated(c) => format!(
            "template {} by {}, repo {}, base {}",
            c.template,
            c.requested_by,
            c.repo,
            short(&c.base_commit, 12)
        ),
        EventKind::WorkspaceProvisioning(w) => format!("runtime {}", w.runtime),
        EventKind::WorkspaceProvisioned(w) => {
            format!(
                "{} (sandbox {}), network {}, {}",
                w.runtime, w.sandbox, w.network, w.path
            )
        }
        EventKind::WorkspaceDrift(d) => {
            format!("{}: pinned {}, found {}", d.tool, d.pinned, d.found)
        }
        EventKind::StepStarted(s) => format!(
            "step {} ({}): {}",
            s.index + 1,
            s.kind.as_str(),
            one_line(&s.description, 80)
        ),
        EventKind::StepFinished(s) => format!("step {} {:?}", s.index + 1, s.status).to_lowercase(),
        EventKind::ToolRequested(t) => {
            let args = match t.args.get("command").and_then(serde_json::Value::as_str) {
                Some(command) => format!("`{}`", one_line(command, 80)),
                None => one_line(&t.args.to_string(), 80),
            };
            format!("{} {} {args} (by {})", t.call_id, t.tool, t.actor)
        }
        EventKind::ToolCompleted(t) => {
            let how = match (t.ok, t.exit_code, t.timed_out) {
                (_, _, true) => "timed out".to_string(),
                (true, Some(code), _) => format!("ok, exit {code}"),
                (false, Some(code), _) => format!("FAILED, exit {code}"),
                (true, None, _) => "ok".to_string(),
                (false, None, _) => "FAILED, killed".to_string(),
            };
            format!(
                "{} {how} in {} ms, output {}",
                t.call_id,
                t.duration_ms,
                short(t.output.as_str(), 19)
            )
        }
        EventKind::ChangeCommitting(c) => format!(
            "tree {} on branch {}, dated {}",
            short(&c.tree, 12),
            c.branch,
            crate::clock::format_rfc3339_millis(c.date_s.saturating_mul(1000))
        ),
        EventKind::AcceptanceChecked(a) => {
            let results: Vec<String> = a
                .results
                .iter()
                .map(|r| {
                    let how = match (r.passed, r.flaky) {
                        (true, true) => format!("passed on attempt {} (flaky)", r.attempts),
                        (true, false) => "passed".to_string(),
                        (false, _) => format!("FAILED after {} attempt(s)", r.attempts),
                    };
                    format!("`{}` {how}", one_line(&r.command, 40))
                })
                .collect();
            let mut text = format!(
                "round {}: {}",
                a.round,
                if a.passed { "passed" } else { "FAILED" }
            );
            if !results.is_empty() {
                text.push_str(&format!("; {}", results.join(", ")));
            }
            if !a.violations.is_empty() {
                text.push_str(&format!("; {} violation(s)", a.violations.len()));
            }
            text
        }
        EventKind::ChangeProposed(p) => format!(
            "commit {} pushed to {}, draft pull request #{} {}",
            short(&p.head_sha, 12),
            p.branch,
            p.pr_number,
            p.pr_url
        ),
        EventKind::ChangePublished(c) => format!(
            "branch {} commit {} ({} file(s)), patch {}",
            c.branch,
            short(&c.commit, 12),
            c.files.len(),
            short(c.patch.as_str(), 19)
        ),
        EventKind::PolicyDecided(d) => {
            let rules = if d.rule_ids.is_empty() {
                "default".to_string()
            } else {
                d.rule_ids.join(",")
            };
            format!(
                "{} {}: {} ({}, {rules}) {}",
                d.subject,
                d.action,
                d.decision.to_uppercase(),
                d.tier,
                one_line(&d.explanation, 80)
            )
        }
        EventKind::ApprovalRequested(a) => format!(
            "{} {} gate needs {} approval(s) from {}{}{}",
            a.approval_id,
            a.gate,
            a.required,
            a.eligible.join(", "),
            a.command
                .as_deref()
                .map(|command| format!(": `{}`", first_line_and_size(command)))
                .unwrap_or_default(),
            if a.masked { " (patch masked)" } else { "" }
        ),
        EventKind::ApprovalDecided(a) => format!(
            "{} {} by {} via {}{}",
            a.approval_id,
            a.decision,
            a.by,
            a.channel,
            a.comment
                .as_deref()
                .map(|c| format!(": {}", one_line(c, 60)))
                .unwrap_or_default()
        ),
        EventKind::ApprovalExpired(a) => format!(
            "{} not granted within {} s: counts as a deny",
            a.approval_id, a.expires_after_seconds
        ),
        EventKind::ModelRequested(m) => {
            let reserved = m
                .reserved
                .as_ref()
                .map(|r| match r.usd {
                    Some(usd) => format!(", reserves {} tokens / ${usd:.4}", r.tokens),
                    None => format!(", reserves {} tokens", r.tokens),
                })
                .unwrap_or_default();
            format!(
                "{} {}:{} for the {} (attempt {}{reserved})",
                m.call_id, m.provider, m.model, m.role, m.attempt
            )
        }
        EventKind::ModelResponded(m) => format!(
            "{} served by {}: {} in / {} out tokens{}, ${:.4}",
            m.call_id,
            m.model_served,
            m.input_tokens,
            m.output_tokens,
            if m.cache_read_tokens > 0 {
                format!(" ({} cached)", m.cache_read_tokens)
            } else {
                String::new()
            },
            m.cost_usd
        ),
        EventKind::ModelFailed(m) => format!(
            "{} {} attempt {} FAILED{}: {}",
            m.call_id,
            m.model.as_deref().unwrap_or("?"),
            m.attempt,
            if m.retryable { " (retryable)" } else { "" },
            one_line(&m.error, 100)
        ),
        EventKind::ModelFallback(f) => {
            format!("{} -> {}: {}", f.from, f.to, one_line(&f.reason, 100))
        }
        EventKind::ContextCompacted(c) => format!(
            "before {}: dropped {} tool result(s), ~{} -> ~{} of {} tokens",
            c.before_call,
            c.dropped.len(),
            c.tokens_before,
            c.tokens_after,
            c.context_tokens
        ),
        EventKind::BudgetExceeded(b) => crate::budget::describe_exceeded(&b),
        EventKind::BudgetRaised(b) => format!("{} +{} by {}", b.dimension, b.amount, b.by),
        EventKind::BreakerTripped(b) => format!("{}: {}", b.kind, one_line(&b.detail, 100)),
        EventKind::MissionInterrupted(i) => i.reason,
        EventKind::MissionResumed(r) => format!("by {}", r.by),
        EventKind::NotificationSent(n) => match &n.approval_id {
            Some(approval) => format!("{} {} for {approval} to {}", n.channel, n.kind, n.target),
            None => format!("{} {} to {}", n.channel, n.kind, n.target),
        },
        EventKind::MissionFinished(f) => match (f.error, f.summary) {
            (Some(e), _) => format!("{}: {}", f.status, one_line(&e.message, 100)),
            (None, Some(s)) => format!("{}: {s}", f.status),
            (None, None) => f.status.to_string(),
        },
        other => one_line(&other.data().to_string(), 100),
    }
}
