//! The PR description: written from the timeline (what was recorded), never from what an
//! agent says it did.

use std::fmt::Write;

use flightdeck_core::event::FileChange;
use flightdeck_core::ids::step_call_id;
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
        let _ = writeln!(out, "{}\n", goal.trim());
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

    let _ = writeln!(out, "\n## Steps\n");
    let _ = writeln!(out, "| # | Step | Result | Time |\n|---|---|---|---|");
    for (index, step) in &state.steps {
        let base = step_call_id(*index);
        let call = state
            .tool_calls
            .iter()
            .filter(|(id, _)| **id == base || id.starts_with(&format!("{base}#")))
            .filter_map(|(_, c)| c.completed.as_ref())
            .next_back();
        let (result, time) = match call {
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
    let _ = writeln!(out, "| File | Change | + | − |\n|---|---|---|---|");
    for file in ctx.files {
        let count = |n: Option<u64>| n.map_or_else(|| "binary".to_string(), |n| n.to_string());
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} |",
            cell(&file.path),
            change_name(&file.status),
            count(file.added),
            count(file.removed)
        );
    }

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
