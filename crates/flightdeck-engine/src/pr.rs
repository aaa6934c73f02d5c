//! The PR description: written from the timeline (what was recorded), never from what an
//! agent says it did.

use std::fmt::Write;

use flightdeck_core::event::FileChange;
use flightdeck_core::template::Template;
use flightdeck_core::MissionState;

/// What the description is made from.
#[derive(Debug)]
pub struct PrContext<'a> {
    pub state: &'a MissionState,
    pub template: &'a Template,
    pub title: &'a str,
    pub branch: &'a str,
    pub commit: &'a str,
    pub files: &'a [FileChange],
    /// The planner's plan (its `finish` summary), if a planner ran.
    pub plan: Option<&'a str>,
    /// The policy's change classes of each changed path.
    pub classes: &'a std::collections::BTreeMap<String, Vec<String>>,
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// A markdown table cell: one line, pipes escaped, long text cut.
fn cell(text: &str) -> String {
    let one_line = text.lines().next().unwrap_or("").replace('|', "\\|");
    if one_line.chars().count() > 80 {
        format!("{}…", one_line.chars().take(79).collect::<String>())
    } else {
        one_line
    }
}

/// Model-written text (the planner's plan) as a fenced block: nothing in it is Markdown, so
/// it cannot open a heading (`## Policy`), a table row, an HTML comment that hides what
/// follows, or a fence of its own that the real sections would fall into. The fence is
/// longer than any run of backticks in the text.
fn fenced(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}text\n{text}\n{fence}")
}

/// Model-written text inside a line of the description's own (a review comment), escaped so
/// it reads as the words the model wrote: no character that opens a heading, table, quote,
/// code, link, emphasis or HTML is left live, nor a line start that makes a list or turns the
/// line above into a heading (`---`, `===`). Lines are indented by `indent` so they stay in
/// their list item.
fn escaped(text: &str, indent: &str) -> String {
    const ANYWHERE: &[char] = &['\\', '`', '*', '_', '[', ']', '<', '>', '#', '|', '&', '~'];
    const LINE_START: &[char] = &['-', '+', '='];
    text.trim()
        .lines()
        .map(|line| {
            let line = line.trim();
            let mut out = String::with_capacity(line.len() + 8);
            for (i, c) in line.chars().enumerate() {
                if ANYWHERE.contains(&c) || (i == 0 && LINE_START.contains(&c)) {
                    out.push('\\');
                }
                out.push(c);
            }
            out
        })
        .collect::<Vec<_>>()
        .join(&format!("\n{indent}"))
}

fn change_name(status: &str) -> &'static str {
    match status.chars().next() {
        Some('A') => "added",
        Some('D') => "deleted",
        Some('M') => "modified",
        Some('R') => "renamed",
        Some('T') => "type changed",
        _ => "changed",
    }
}

pub fn render_pr_description(ctx: &PrContext<'_>) -> String {
    let state = ctx.state;
    let mut out = String::new();
    let _ = writeln!(out, "# {}\n", ctx.title);
    if let Some(goal) = ctx
        .template
        .goal
        .as_deref()
        .filter(|g| !g.trim().is_empty())
    {
        // A goal from GitHub (an issue, review comments) is anyone's text: escaped, so it
        // cannot forge the description's own sections; a template's is its author's.
        let from_outside = state.created.as_ref().is_some_and(|c| c.goal.is_some());
        if from_outside {
            let _ = writeln!(out, "{}\n", escaped(goal, ""));
        } else {
            let _ = writeln!(out, "{}\n", goal.trim());
        }
    }
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(out, "| Mission | `{}` |", state.id);
    if let Some(created) = &state.created {
        let _ = writeln!(
            out,
            "| Template | `{}` ({}) |",
            created.template, created.template_hash
        );
        let _ = writeln!(out, "| Requested by | {} |", cell(&created.requested_by));
        let _ = writeln!(out, "| Base | `{}` |", short(&created.base_commit));
        if !created.params.is_empty() {
            let params: Vec<String> = created
                .params
                .iter()
                .map(|(k, v)| format!("`{k}={}`", cell(v)))
                .collect();
            let _ = writeln!(out, "| Params | {} |", params.join(" "));
        }
    }
    let _ = writeln!(out, "| Branch | `{}` |", ctx.branch);
    let _ = writeln!(out, "| Commit | `{}` |", short(ctx.commit));

    if let Some(plan) = ctx.plan.filter(|p| !p.trim().is_empty()) {
        let _ = writeln!(out, "\n## Plan\n\n{}", fenced(plan.trim()));
    }

    let _ = writeln!(out, "\n## Steps\n");
    let _ = writeln!(out, "| # | Step | Result | Time |\n|---|---|---|---|");
    for (index, step) in &state.steps {
        if step.kind == flightdeck_core::event::StepKind::Agent {
            let prefix = format!("{}.", flightdeck_core::ids::step_call_id(*index));
            let tools = state
                .tool_calls
                .keys()
                .filter(|id| id.starts_with(&prefix))
                .count();
            let models = state
                .model_call_log
                .keys()
                .filter(|id| id.starts_with(&prefix))
                .count();
            let status = step.status.map_or("not completed", |s| s.as_str());
            let _ = writeln!(
                out,
                "| {} | {} | {status}: {models} model call(s), {tools} tool call(s) | |",
                index + 1,
                cell(&step.description)
            );
            continue;
        }
        let (result, time) = match state.completed_call_of_step(*index) {
            Some(done) => {
                let result = match (done.ok, done.exit_code, done.timed_out) {
                    (_, _, true) => "timed out".to_string(),
                    (true, Some(code), _) => format!("passed (exit {code})"),
                    (false, Some(code), _) => format!("failed (exit {code})"),
                    (ok, None, _) => {
                        if ok {
                            "passed".to_string()
                        } else {
                            "failed".to_string()
                        }
                    }
                };
                (result, format!("{:.1} s", done.duration_ms as f64 / 1000.0))
            }
            None => ("not completed".to_string(), "".to_string()),
        };
        let _ = writeln!(
            out,
            "| {} | `{}` | {result} | {time} |",
            index + 1,
            cell(&step.description)
        );
    }

    let added: u64 = ctx.files.iter().filter_map(|f| f.added).sum();
    let removed: u64 = ctx.files.iter().filter_map(|f| f.removed).sum();
    let _ = writeln!(
        out,
        "\n## Files changed ({}, +{added} −{removed})\n",
        ctx.files.len()
    );
    let mut by_class: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for file in ctx.files {
        for class in ctx.classes.get(&file.path).into_iter().flatten() {
            *by_class.entry(class.as_str()).or_default() += 1;
        }
    }
    if !by_class.is_empty() {
        let counts: Vec<String> = by_class.iter().map(|(c, n)| format!("{c} {n}")).collect();
        let _ = writeln!(out, "By class: {}\n", counts.join(" · "));
    }
    let _ = writeln!(
        out,
        "| File | Class | Change | + | − |\n|---|---|---|---|---|"
    );
    for file in ctx.files {
        let count = |n: Option<u64>| n.map_or_else(|| "binary".to_string(), |n| n.to_string());
        let classes = ctx
            .classes
            .get(&file.path)
            .map(|c| c.join(", "))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "| `{}` | {classes} | {} | {} | {} |",
            cell(&file.path),
            change_name(&file.status),
            count(file.added),
            count(file.removed)
        );
    }

    render_reviews(&mut out, state);
    render_acceptance(&mut out, state);

    render_policy(&mut out, state);
    render_cost(&mut out, state);

    let _ = writeln!(out, "\n## Timeline\n");
    let _ = writeln!(
        out,
        "Every action of this mission is recorded in a hash-chained timeline; \
         this description is generated from it.\n"
    );
    let _ = writeln!(
        out,
        "```\nflightdeck timeline {}\nflightdeck audit verify {}\n```",
        state.id, state.id
    );
    out
}

/// Each review's verdict and comments, in order (the reviewer's recorded `review` calls).
fn render_reviews(out: &mut String, state: &MissionState) {
    let mut reviews: Vec<(&String, &serde_json::Value)> = state
        .tool_calls
        .iter()
        .filter(|(_, c)| c.requested.tool == "review" && c.completed.as_ref().is_some_and(|d| d.ok))
        .map(|(id, c)| (id, &c.requested.args))
        .collect();
    if reviews.is_empty() {
        return;
    }
    // Call ids sort by step, then round (`step-2.m…` before `step-2.review2.m…`).
    reviews.sort_by_key(|(id, _)| {
        let step = id.split('.').next().unwrap_or("").to_string();
        let round: u32 = id
            .split(".review")
            .nth(1)
            .and_then(|rest| rest.split('.').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        (step.len(), step, round)
    });
    let _ = writeln!(out, "\n## Review\n");
    for (round, (_, args)) in reviews.iter().enumerate() {
        let verdict = args.get("verdict").and_then(|v| v.as_str()).unwrap_or("?");
        let _ = writeln!(
            out,
            "- Round {}: **{}**",
            round + 1,
            verdict.replace('_', " ")
        );
        for comment in args
            .get("comments")
            .and_then(|c| c.as_array())
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str())
        {
            // Whole comments: a reviewer's words matter here; continuation lines indented.
            let _ = writeln!(out, "  - {}", escaped(comment, "    "));
        }
    }
}

/// The platform's own acceptance checks (the last one), not the agent's claims.
fn render_acceptance(out: &mut String, state: &MissionState) {
    let Some(checked) = state.acceptance.last() else {
        return;
    };
    let _ = writeln!(
        out,
        "\n## Acceptance (run by the platform)\n\n{} after {} check(s).\n",
        if checked.passed { "Passed" } else { "Failed" },
        checked.round
    );
    if !checked.results.is_empty() {
        let _ = writeln!(out, "| Command | Result | Attempts |\n|---|---|---|");
        for r in &checked.results {
            let result = match (r.passed, r.flaky, r.exit_code) {
                (true, true, _) => "passed (flaky: failed first)".to_string(),
                (true, false, _) => "passed".to_string(),
                (false, _, Some(code)) => format!("failed (exit {code})"),
                (false, _, None) => "failed (killed)".to_string(),
            };
            let _ = writeln!(
                out,
                "| `{}` | {result} | {} |",
                cell(&r.command),
                r.attempts
            );
        }
    }
    if checked.violations.is_empty() {
        let _ = writeln!(out, "\nNo diff rule was broken.");
    } else {
        let _ = writeln!(out, "\nDiff rules broken:\n");
        for v in &checked.violations {
            let _ = writeln!(out, "- {v}");
        }
    }
}

/// Models used and what they cost (from `model.responded`, not from anything a model said),
/// and the budget used and remaining.
fn render_cost(out: &mut String, state: &MissionState) {
    use flightdeck_core::budget::Dimension;
    if !state.ledger.is_empty() {
        let _ = writeln!(out, "\n## Models and cost\n");
        let _ = writeln!(
            out,
            "| Model | Served as | Calls | Failed | Input tokens | Cached | Output tokens | Cost |\n|---|---|---|---|---|---|---|---|"
        );
        for (model, e) in &state.ledger.by_model {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} | {} | {} | ${:.4} |",
                cell(model),
                cell(&e.served.join(", ")),
                e.calls,
                e.failed,
                e.input_tokens,
                e.cache_read_tokens,
                e.output_tokens,
                e.cost_usd
            );
        }
        let _ = writeln!(
            out,
            "\n| Role | Calls | Input tokens | Output tokens | Cost |\n|---|---|---|---|---|"
        );
        for (role, e) in &state.ledger.by_role {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | ${:.4} |",
                cell(role),
                e.calls,
                e.input_tokens,
                e.output_tokens,
                e.cost_usd
            );
        }
    }
    let limited: Vec<String> = Dimension::ALL
        .into_iter()
        .filter_map(|d| {
            let limit = state.budget_limit(d)?;
            let used = state.budget_used(d, state.last_at_ms);
            Some(if d == Dimension::Usd {
                format!(
                    "| usd | ${used:.4} | ${limit:.2} | ${:.4} |",
                    (limit - used).max(0.0)
                )
            } else {
                format!(
                    "| {} | {used} | {limit} | {} |",
                    d.as_str(),
                    (limit - used).max(0.0)
                )
            })
        })
        .collect();
    if !limited.is_empty() {
        let _ = writeln!(out, "\n## Budget\n");
        let _ = writeln!(
            out,
            "| Dimension | Used | Limit | Remaining |\n|---|---|---|---|"
        );
        for line in limited {
            let _ = writeln!(out, "{line}");
        }
    }
}

/// The risk tier, the gates that were not simply allowed, and who approved what when.
fn render_policy(out: &mut String, state: &MissionState) {
    let _ = writeln!(out, "\n## Policy\n");
    let tier = state.risk_tier().unwrap_or("low");
    let hash = state
        .created
        .as_ref()
        .map(|c| c.policy_hash.to_string())
        .unwrap_or_default();
    let hash = hash.get(..19).unwrap_or(&hash);
    let _ = write!(out, "Risk tier: **{tier}** · policy `{hash}`");
    // Calls simply allowed by default are counted; anything a rule decided, anything not
    // allowed, and the publish gate are listed.
    let routine = |d: &&flightdeck_core::event::PolicyDecided| {
        d.decision == "allow" && d.rule_ids.is_empty() && d.action != "publish"
    };
    let mut allowed: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for d in state.decisions.iter().filter(routine) {
        *allowed.entry(d.action.as_str()).or_default() += 1;
    }
    let notable: Vec<_> = state.decisions.iter().filter(|d| !routine(d)).collect();
    if !allowed.is_empty() {
        let counts: Vec<String> = allowed
            .iter()
            .map(|(action, n)| format!("{action} ×{n}"))
            .collect();
        let _ = write!(out, " · allowed by default: {}", counts.join(", "));
    }
    let _ = writeln!(out);
    if !notable.is_empty() {
        let _ = writeln!(
            out,
            "\n| Subject | Action | Decision | Tier | Rules |\n|---|---|---|---|---|"
        );
        for d in notable {
            let rules = if d.rule_ids.is_empty() {
                "default".to_string()
            } else {
                d.rule_ids.join(", ")
            };
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} |",
                cell(&d.subject),
                d.action,
                d.decision,
                d.tier,
                cell(&rules)
            );
        }
    }
    let approvals: Vec<_> = state.approvals_in_order().collect();
    if approvals.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n| Approval | Gate | Status | Decisions |\n|---|---|---|---|"
    );
    for approval in approvals {
        let decisions: Vec<String> = approval
            .votes
            .iter()
            .map(|v| {
                format!(
                    "{} by {} via {} at {}",
                    v.decided.decision,
                    cell(&v.decided.by),
                    v.decided.channel,
                    flightdeck_core::clock::format_rfc3339_millis(v.at_ms)
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "| `{}` | {} | {} ({}/{}) | {} |",
            approval.request.approval_id,
            approval.request.gate,
            approval.status,
            approval.approved_by().len(),
            approval.request.required,
            if decisions.is_empty() {
                "—".to_string()
            } else {
                decisions.join("; ")
            }
        );
    }
}
