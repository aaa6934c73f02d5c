//! Human output: one line per event, the mission summary, and live progress. Data goes to
//! stdout; progress and errors to stderr.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use flightdeck_core::{EventKind, StoredEvent};
use flightdeck_engine::Observer;
use serde_json::Value;

fn short(s: &str, n: usize) -> &str {
    s.get(..n).unwrap_or(s)
}

/// One line, cut to `max` characters.
fn one_line(text: &str, max: usize) -> String {
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
pub fn describe(event: &StoredEvent) -> String {
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
            let args = match t.args.get("command").and_then(Value::as_str) {
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
                (ok, None, _) => {
                    if ok {
                        "ok".to_string()
                    } else {
                        "FAILED, killed".to_string()
                    }
                }
            };
            format!(
                "{} {how} in {} ms, output {}",
                t.call_id,
                t.duration_ms,
                short(t.output.as_str(), 19)
            )
        }
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
            "{} {} gate needs {} approval(s) from {}",
            a.approval_id,
            a.gate,
            a.required,
            a.eligible.join(", ")
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
        EventKind::BudgetExceeded(b) => flightdeck_core::budget::describe_exceeded(&b),
        EventKind::BudgetRaised(b) => format!("{} +{} by {}", b.dimension, b.amount, b.by),
        EventKind::BreakerTripped(b) => format!("{}: {}", b.kind, one_line(&b.detail, 100)),
        EventKind::MissionInterrupted(i) => i.reason,
        EventKind::MissionResumed(r) => format!("by {}", r.by),
        EventKind::MissionFinished(f) => match (f.error, f.summary) {
            (Some(e), _) => format!("{}: {}", f.status, one_line(&e.message, 100)),
            (None, Some(s)) => format!("{}: {s}", f.status),
            (None, None) => f.status.to_string(),
        },
        other => one_line(&other.data().to_string(), 100),
    }
}

/// `  12  19:41:02.123  tool.completed         …`
pub fn event_line(event: &StoredEvent) -> String {
    let time = event.at.get(11..23).unwrap_or(&event.at);
    format!(
        "{:>4}  {time}  {:<22} {}",
        event.seq,
        event.event_type,
        describe(event)
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
pub fn summary_text(summary: &Value, artifact_path: impl Fn(&str) -> Option<String>) -> String {
    let s = |key: &str| {
        summary
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or("-")
            .to_string()
    };
    let mut out = String::new();
    let mut row = |label: &str, value: String| {
        out.push_str(&format!("{label:<10} {value}\n"));
    };
    row("mission", s("id"));
    row("template", s("template"));
    row("status", s("status"));
    row("repo", s("repo"));
    row("base", short(&s("base_commit"), 12).to_string());
    row("requested", s("requested_by"));
    if let Some(tier) = summary.get("risk_tier").and_then(Value::as_str) {
        let decisions = summary.pointer("/policy/decisions");
        let n = |k: &str| {
            decisions
                .and_then(|d| d.get(k))
                .and_then(Value::as_u64)
                .unwrap_or(0)
        };
        row(
            "risk",
            format!(
                "{tier} ({} allowed, {} needing approval, {} denied)",
                n("allow"),
                n("approve"),
                n("deny")
            ),
        );
    }
    if let Some(steps) = summary
        .get("steps")
        .and_then(Value::as_array)
        .filter(|s| !s.is_empty())
    {
        let lines: Vec<String> = steps
            .iter()
            .map(|step| {
                format!(
                    "{}. [{}] {}",
                    step.get("index").and_then(Value::as_u64).unwrap_or(0) + 1,
                    step.get("status").and_then(Value::as_str).unwrap_or("?"),
                    one_line(
                        step.get("description")
                            .and_then(Value::as_str)
                            .unwrap_or(""),
                        80
                    )
                )
            })
            .collect();
        row("steps", lines.join("\n           "));
    }
    if let Some(branch) = summary.get("branch").and_then(Value::as_str) {
        row(
            "branch",
            format!("{branch} (commit {})", short(&s("head_commit"), 12)),
        );
    }
    if let Some(artifacts) = summary.get("artifacts").and_then(Value::as_object) {
        for (label, key) in [("patch", "patch"), ("pr", "pr_description")] {
            if let Some(digest) = artifacts.get(key).and_then(Value::as_str) {
                let location = artifact_path(digest)
                    .map(|p| format!("{p}\n           "))
                    .unwrap_or_default();
                row(label, format!("{location}flightdeck artifact {digest}"));
            }
        }
    }
    if let Some(approvals) = summary
        .get("approvals")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
    {
        let lines: Vec<String> = approvals.iter().map(approval_text).collect();
        row("approvals", lines.join("\n           "));
    }
    if let Some(budget) = budget_text(summary) {
        row("budget", budget);
    }
    if let Some(cost) = cost_text(summary) {
        row("cost", cost);
    }
    if let Some(error) = summary.get("error").filter(|e| !e.is_null()) {
        let kind = error.get("kind").and_then(Value::as_str).unwrap_or("error");
        let message = error.get("message").and_then(Value::as_str).unwrap_or("");
        row(
            "error",
            format!("{kind}: {}", message.replace('\n', "\n           ")),
        );
    }
    if let Some(workspace) = summary.get("workspace").and_then(Value::as_str) {
        if std::path::Path::new(workspace).exists() {
            row("workspace", workspace.to_string());
        }
    }
    row(
        "events",
        format!(
            "{} (head {})",
            summary.get("events").and_then(Value::as_u64).unwrap_or(0),
            short(&s("head_hash"), 16)
        ),
    );
    row("timeline", format!("flightdeck timeline {}", s("id")));
    if s("status") == "blocked" {
        row(
            "next",
            format!(
                "raise the budget (`flightdeck budget {0} --add DIM=AMOUNT`) or fix the cause, then `flightdeck resume {0}`",
                s("id")
            ),
        );
    }
    out
}

/// The limited budget dimensions: `usd $0.0123 of $2.00 · tool_calls 7 of 200`.
fn budget_text(summary: &Value) -> Option<String> {
    let budget = summary.get("budget")?.as_object()?;
    let parts: Vec<String> = budget
        .iter()
        .filter_map(|(dimension, value)| {
            let limit = value.get("limit").and_then(Value::as_f64)?;
            let used = value.get("used").and_then(Value::as_f64).unwrap_or(0.0);
            Some(if dimension == "usd" {
                format!("usd ${used:.4} of ${limit:.2}")
            } else {
                format!("{dimension} {used} of {limit}")
            })
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(" · "))
}

/// The cost ledger: total, then one line per model and per role.
fn cost_text(summary: &Value) -> Option<String> {
    let cost = summary.get("cost")?;
    let models = cost.get("by_model")?.as_array()?;
    if models.is_empty() {
        return None;
    }
    let line = |entry: &Value, key: &str| {
        let n = |k: &str| entry.get(k).and_then(Value::as_u64).unwrap_or(0);
        let cached = n("cache_read_tokens");
        format!(
            "{}: {} call(s), {} in / {} out tokens{}{}, ${:.4}",
            entry.get(key).and_then(Value::as_str).unwrap_or("?"),
            n("calls"),
            n("input_tokens"),
            n("output_tokens"),
            if cached > 0 {
                format!(" ({cached} cached)")
            } else {
                String::new()
            },
            match n("failed") {
                0 => String::new(),
                failed => format!(", {failed} failed attempt(s)"),
            },
            entry.get("cost_usd").and_then(Value::as_f64).unwrap_or(0.0)
        )
    };
    let total = cost.get("total_usd").and_then(Value::as_f64).unwrap_or(0.0);
    let mut lines = vec![format!("${total:.4} total")];
    lines.extend(models.iter().map(|m| format!("model {}", line(m, "model"))));
    if let Some(roles) = cost.get("by_role").and_then(Value::as_array) {
        lines.extend(roles.iter().map(|r| format!("role {}", line(r, "role"))));
    }
    Some(lines.join("\n           "))
}

fn strings(value: Option<&Value>) -> Vec<&str> {
    value
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// One approval of a summary, for people: what it gates, where it stands, who decided.
pub fn approval_text(approval: &Value) -> String {
    let s = |key: &str| approval.get(key).and_then(Value::as_str).unwrap_or("-");
    let required = approval
        .get("required")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let approved = strings(approval.get("approved_by"));
    let what = match approval.get("command").and_then(Value::as_str) {
        Some(command) if s("gate") == "write" => format!("write `{}`", one_line(command, 60)),
        Some(command) => format!("command `{}`", one_line(command, 60)),
        None => format!("{} gate", s("gate")),
    };
    let mut text = format!(
        "{} {what} [{}, {} tier, {}] {}/{required} approved",
        s("id"),
        s("status"),
        s("tier"),
        {
            let rules = strings(approval.get("rule_ids"));
            if rules.is_empty() {
                "policy default".to_string()
            } else {
                rules.join(", ")
            }
        },
        approved.len()
    );
    for decision in approval
        .get("decisions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let d = |key: &str| decision.get(key).and_then(Value::as_str).unwrap_or("-");
        let at = d("at");
        text.push_str(&format!(
            "\n             {} by {} via {} at {}{}",
            d("decision"),
            d("by"),
            d("channel"),
            at.get(..19).unwrap_or(at).replace('T', " "),
            decision
                .get("comment")
                .and_then(Value::as_str)
                .map(|c| format!(": {}", one_line(c, 60)))
                .unwrap_or_default()
        ));
    }
    if s("status") == "pending" {
        text.push_str(&format!(
            "\n             eligible: {}\n             decide: flightdeck approve {} (or deny) --as IDENTITY",
            strings(approval.get("eligible")).join(", "),
            s("id")
        ));
        if let Some(expires) = approval.get("expires_at").and_then(Value::as_str) {
            text.push_str(&format!("\n             expires: {expires}"));
        }
    }
    text
}
