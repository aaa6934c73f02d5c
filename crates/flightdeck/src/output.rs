//! Human output: one line per event, the mission summary, and live progress. Data goes to
//! stdout; progress and errors to stderr.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use flightdeck_core::budget::Dimension;
use flightdeck_core::state::ApprovalStatus;
use flightdeck_core::views::{
    first_line_and_size, one_line, ApprovalView, BudgetView, CostLine, CostView, EventLine,
    MissionSummary,
};
use flightdeck_core::{Digest, EventKind, MissionStatus, StoredEvent};
use flightdeck_engine::Observer;
use serde_json::Value;

fn short(s: &str, n: usize) -> &str {
    s.get(..n).unwrap_or(s)
}

/// `  12  19:41:02.123  tool.completed         …`
pub fn event_line(event: &StoredEvent) -> String {
    let line = EventLine::of(event);
    format!(
        "{:>4}  {}  {:<22} {}",
        line.seq, line.time, line.event_type, line.text
    )
}

/// The JSON line of an event (CONTRACT.md envelope).
pub fn event_json(event: &StoredEvent) -> String {
    serde_json::json!({
        "mission": event.mission,
        "seq": event.seq,
        "at": event.at,
        "type": event.event_type,
        "data": event.data,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    })
    .to_string()
}

/// Progress of a running mission on stderr: what a person watching needs, not every event.
#[derive(Default)]
pub struct Progress {
    steps: Mutex<usize>,
    last_report: Mutex<Option<Duration>>,
}

impl Progress {
    fn say(&self, line: &str) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
    }
}

impl Observer for Progress {
    fn event(&self, event: &StoredEvent) {
        let Ok(kind) = event.kind() else { return };
        let total = || self.steps.lock().map(|s| *s).unwrap_or(0);
        match kind {
            EventKind::MissionCreated(c) => {
                if let Ok(mut steps) = self.steps.lock() {
                    *steps = c.steps;
                }
                self.say(&format!(
                    "mission {} created from template {} (base {})",
                    event.mission,
                    c.template,
                    short(&c.base_commit, 12)
                ));
            }
            EventKind::WorkspaceProvisioned(w) => {
                self.say(&format!(
                    "  workspace ready: {} (sandbox {}, network {})",
                    w.path, w.sandbox, w.network
                ));
            }
            EventKind::StepStarted(s) => {
                if let Ok(mut last) = self.last_report.lock() {
                    *last = None;
                }
                self.say(&format!(
                    "  step {}/{}  {}",
                    s.index + 1,
                    total(),
                    one_line(&s.description, 100)
                ));
            }
            EventKind::ToolRequested(t) if t.actor != "template" => {
                let args = match t.args.get("command").and_then(Value::as_str) {
                    Some(command) => format!("`{}`", one_line(command, 80)),
                    None => one_line(&t.args.to_string(), 80),
                };
                self.say(&format!("    {} {} {args}", t.actor, t.tool));
            }
            EventKind::ModelResponded(m) => self.say(&format!(
                "    model {}: {} in / {} out tokens, ${:.4}",
                m.model_served, m.input_tokens, m.output_tokens, m.cost_usd
            )),
            EventKind::ModelFailed(m) => self.say(&format!(
                "    model {} failed{}: {}",
                m.model.as_deref().unwrap_or("?"),
                if m.retryable {
                    " (will retry or fall back)"
                } else {
                    ""
                },
                one_line(&m.error, 100)
            )),
            EventKind::ModelFallback(f) => {
                self.say(&format!("    falling back from {} to {}", f.from, f.to))
            }
            EventKind::BudgetExceeded(b) => self.say(&format!(
                "  BLOCKED: {}",
                flightdeck_core::budget::describe_exceeded(&b)
            )),
            EventKind::BreakerTripped(b) => self.say(&format!(
                "  BLOCKED: breaker {} tripped: {}",
                b.kind, b.detail
            )),
            EventKind::ToolCompleted(t) => {
                let secs = t.duration_ms as f64 / 1000.0;
                let result = match (t.ok, t.exit_code, t.timed_out) {
                    (_, _, true) => format!("timed out after {secs:.1}s"),
                    (true, _, _) => format!("passed in {secs:.1}s"),
                    (false, Some(code), _) => format!("failed (exit {code}) after {secs:.1}s"),
                    (false, None, _) => format!("killed after {secs:.1}s"),
                };
                self.say(&format!("            {result}"));
            }
            EventKind::PolicyDecided(d) if d.decision != "allow" => self.say(&format!(
                "  policy: {} {} ({} tier, {}): {}",
                d.action,
                if d.decision == "deny" {
                    "DENIED"
                } else {
                    "needs approval"
                },
                d.tier,
                if d.rule_ids.is_empty() {
                    "default".to_string()
                } else {
                    d.rule_ids.join(", ")
                },
                one_line(&d.explanation, 120)
            )),
            EventKind::ApprovalRequested(a) => self.say(&format!(
                "  waiting for approval {} ({} gate): {} from {}",
                a.approval_id,
                a.gate,
                a.required,
                a.eligible.join(", ")
            )),
            EventKind::MissionInterrupted(i) => {
                self.say(&format!("  interrupted earlier: {}", i.reason))
            }
            EventKind::MissionResumed(r) => {
                self.say(&format!("mission {} resumed by {}", event.mission, r.by))
            }
            EventKind::ChangePublished(c) => {
                self.say(&format!(
                    "  published {} file(s) on branch {}",
                    c.files.len(),
                    c.branch
                ));
            }
            EventKind::MissionFinished(f) => {
                self.say(&format!("mission {} {}", event.mission, f.status))
            }
            _ => {}
        }
    }

    fn still_running(&self, _call_id: &str, _command: &str, elapsed: Duration) {
        // First after 5 s, then every 10 s: a sign of life, not a flood.
        let Ok(mut last) = self.last_report.lock() else {
            return;
        };
        let due = match *last {
            None => elapsed >= Duration::from_secs(5),
            Some(previous) => elapsed >= previous + Duration::from_secs(10),
        };
        if due {
            *last = Some(elapsed);
            drop(last);
            self.say(&format!(
                "            … still running ({}s)",
                elapsed.as_secs()
            ));
        }
    }
}

/// The human view of a mission summary (the `--json` shape, laid out for people).
pub fn summary_text(
    summary: &MissionSummary,
    artifact_path: impl Fn(&Digest) -> Option<String>,
) -> String {
    let or_dash = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".to_string());
    let mut out = String::new();
    let mut row = |label: &str, value: String| {
        out.push_str(&format!("{label:<10} {value}\n"));
    };
    row("mission", summary.id.clone());
    row("template", or_dash(&summary.template));
    row("status", summary.status.to_string());
    row("repo", or_dash(&summary.repo));
    row(
        "base",
        short(&or_dash(&summary.base_commit), 12).to_string(),
    );
    row("requested", or_dash(&summary.requested_by));
    if let Some(tier) = &summary.risk_tier {
        let d = summary.policy.decisions;
        row(
            "risk",
            format!(
                "{tier} ({} allowed, {} needing approval, {} denied)",
                d.allow, d.approve, d.deny
            ),
        );
    }
    if !summary.steps.is_empty() {
        let lines: Vec<String> = summary
            .steps
            .iter()
            .map(|step| {
                format!(
                    "{}. [{}] {}",
                    step.index + 1,
                    step.status,
                    one_line(&step.description, 80)
                )
            })
            .collect();
        row("steps", lines.join("\n           "));
    }
    if let Some(branch) = &summary.branch {
        row(
            "branch",
            format!(
                "{branch} (commit {})",
                short(&or_dash(&summary.head_commit), 12)
            ),
        );
    }
    for (label, digest) in [
        ("patch", &summary.artifacts.patch),
        ("pr", &summary.artifacts.pr_description),
    ] {
        if let Some(digest) = digest {
            let location = artifact_path(digest)
                .map(|p| format!("{p}\n           "))
                .unwrap_or_default();
            row(label, format!("{location}flightdeck artifact {digest}"));
        }
    }
    if !summary.approvals.is_empty() {
        let lines: Vec<String> = summary.approvals.iter().map(approval_text).collect();
        row("approvals", lines.join("\n           "));
    }
    if let Some(budget) = budget_text(&summary.budget) {
        row("budget", budget);
    }
    if let Some(cost) = cost_text(&summary.cost) {
        row("cost", cost);
    }
    if let Some(error) = &summary.error {
        row(
            "error",
            format!(
                "{}: {}",
                error.kind,
                error.message.replace('\n', "\n           ")
            ),
        );
    }
    for warning in &summary.warnings {
        row("warning", warning.clone());
    }
    if let Some(workspace) = &summary.workspace {
        if std::path::Path::new(workspace).exists() {
            row("workspace", workspace.clone());
        }
    }
    row(
        "events",
        format!(
            "{} (head {})",
            summary.events,
            short(&summary.head_hash, 16)
        ),
    );
    row("timeline", format!("flightdeck timeline {}", summary.id));
    if summary.status == MissionStatus::Blocked {
        row(
            "next",
            format!(
                "raise the budget (`flightdeck budget {0} --add DIM=AMOUNT`) or fix the cause, then `flightdeck resume {0}`",
                summary.id
            ),
        );
    }
    out
}

/// The limited budget dimensions: `usd $0.0123 of $2.00 · tool_calls 7 of 200`.
fn budget_text(budget: &BudgetView) -> Option<String> {
    let parts: Vec<String> = budget
        .dimensions()
        .into_iter()
        .filter_map(|(dimension, value)| {
            let limit = value.limit?;
            let used = value.used.as_f64();
            Some(if dimension == Dimension::Usd {
                format!("usd ${used:.4} of ${limit:.2}")
            } else {
                format!("{} {used} of {limit}", dimension.as_str())
            })
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(" · "))
}

/// The cost ledger: total, then one line per model and per role.
fn cost_text(cost: &CostView) -> Option<String> {
    if cost.by_model.is_empty() {
        return None;
    }
    let line = |entry: &CostLine| {
        let name = entry
            .model
            .as_deref()
            .or(entry.role.as_deref())
            .unwrap_or("?");
        format!(
            "{name}: {} call(s), {} in / {} out tokens{}{}{}, ${:.4}",
            entry.calls,
            entry.input_tokens,
            entry.output_tokens,
            if entry.cache_read_tokens > 0 {
                format!(" ({} cached)", entry.cache_read_tokens)
            } else {
                String::new()
            },
            match entry.failed {
                0 => String::new(),
                failed => format!(", {failed} failed attempt(s)"),
            },
            match entry.interrupted {
                0 => String::new(),
                n => format!(
                    ", {n} attempt(s) cut off by a crash (their {} reserved tokens count as spent)",
                    entry.interrupted_tokens
                ),
            },
            entry.cost_usd
        )
    };
    let mut lines = vec![format!("${:.4} total", cost.total_usd)];
    lines.extend(cost.by_model.iter().map(|m| format!("model {}", line(m))));
    lines.extend(cost.by_role.iter().map(|r| format!("role {}", line(r))));
    Some(lines.join("\n           "))
}

/// One approval, for people: what it gates, where it stands, who decided.
pub fn approval_text(approval: &ApprovalView) -> String {
    let what = match &approval.command {
        Some(command) if approval.gate == "write" => {
            format!("write `{}`", first_line_and_size(command))
        }
        Some(command) => format!("command `{}`", first_line_and_size(command)),
        None => format!("{} gate", approval.gate),
    };
    let rules = if approval.rule_ids.is_empty() {
        "policy default".to_string()
    } else {
        approval.rule_ids.join(", ")
    };
    let mut text = format!(
        "{} {what} [{}, {} tier, {rules}] {}/{} approved",
        approval.id,
        approval.status,
        approval.tier,
        approval.approved_by.len(),
        approval.required,
    );
    for decision in &approval.decisions {
        text.push_str(&format!(
            "\n             {} by {} via {} at {}{}",
            decision.decision,
            decision.by,
            decision.channel,
            decision
                .at
                .get(..19)
                .unwrap_or(&decision.at)
                .replace('T', " "),
            decision
                .comment
                .as_deref()
                .map(|c| format!(": {}", one_line(c, 60)))
                .unwrap_or_default()
        ));
    }
    if approval.masked {
        text.push_str(&format!(
            "\n             the stored patch has secrets masked; the approval covers the unmasked diff {}",
            approval.diff_hash
        ));
    }
    if approval.status == ApprovalStatus::Pending {
        text.push_str(&format!(
            "\n             eligible: {}\n             decide: flightdeck approve {} (or deny) --as IDENTITY",
            approval.eligible.join(", "),
            approval.id
        ));
        if let Some(expires) = &approval.expires_at {
            text.push_str(&format!("\n             expires: {expires}"));
        }
    }
    text
}
