//! `approvals`, `approve` and `deny`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::sync::Arc;

use flightdeck_app::queries;
use flightdeck_core::ids::mission_of_approval;
use flightdeck_engine::{Channel, Clock, Silent, Vote};
use serde_json::json;

use crate::context::Context;
use crate::error::{exit, CliError};
use crate::output::approval_text;

pub async fn list(ctx: &Context, pending_only: bool) -> Result<i32, CliError> {
    let now = flightdeck_engine::SystemClock.now_ms();
    let listed = match ctx.app.reader().await? {
        Some(reader) => queries::approvals(&reader, pending_only, now).await?,
        None => Vec::new(),
    };
    if ctx.json() {
        println!(
            "{}",
            serde_json::to_string_pretty(&listed).unwrap_or_default()
        );
        return Ok(exit::OK);
    }
    if listed.is_empty() {
        println!(
            "{}",
            if pending_only {
                "no approvals are waiting"
            } else {
                "no approvals yet"
            }
        );
        return Ok(exit::OK);
    }
    for entry in &listed {
        println!(
            "{}  (mission {}, template {}, requested by {})",
            approval_text(&entry.approval),
            entry.mission,
            entry.template.as_deref().unwrap_or("-"),
            entry.requested_by.as_deref().unwrap_or("-"),
        );
    }
    Ok(exit::OK)
}

pub async fn decide(
    ctx: &Context,
    approval: &str,
    comment: Option<&str>,
    approve: bool,
) -> Result<i32, CliError> {
    let approval = approval.trim();
    let Some(mission) = mission_of_approval(approval) else {
        return Err(CliError::bad_input(
            format!("no approval `{approval}`: approval ids look like a-<mission ulid>-<n>"),
            Some(
                "`flightdeck approvals --pending` lists the approvals waiting for you".to_string(),
            ),
        ));
    };
    let engine = ctx
        .existing_engine(mission.as_str(), Arc::new(Silent))
        .await?;
    let by = ctx.identity(None)?;
    let state = engine
        .decide_approval(Vote {
            approval_id: approval.to_string(),
            by: by.clone(),
            approve,
            comment: comment.map(str::to_string),
            channel: Channel::Cli,
            vouched_email: None,
        })
        .await?;
    let summary = state.summary_view();
    let entry = summary.approvals.iter().find(|a| a.id == approval).cloned();
    if ctx.json() {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"approval": entry, "mission": summary}))
                .unwrap_or_default()
        );
        return Ok(exit::OK);
    }
    let Some(progress) = state.approvals.get(approval) else {
        return Ok(exit::OK);
    };
    let approved = progress.approved_by().len();
    let required = progress.request.required;
    let gate = &progress.request.gate;
    let decided_on = decided_on(&progress.request);
    if !approve {
        println!(
            "denied {approval} ({gate} gate) as {by}: mission {} failed",
            state.id
        );
        println!("{decided_on}");
        return Ok(exit::OK);
    }
    println!("{decided_on}");
    if progress.status == flightdeck_core::state::ApprovalStatus::Approved {
        let still_pending = state.pending_approvals().count();
        let next = if still_pending == 0 {
            format!(
                "continue it with `flightdeck resume {}` (a running `flightdeck worker` continues it by itself)",
                state.id
            )
        } else {
            format!(
                "{still_pending} other approval(s) of mission {} still wait",
                state.id
            )
        };
        println!("approved {approval} ({gate} gate) as {by}: {approved} of {required}, the gate is open; {next}");
    } else if approved >= required as usize {
        let owners: Vec<String> = progress
            .uncovered_paths()
            .iter()
            .map(|path| {
                let owners = progress
                    .request
                    .code_owners
                    .get(*path)
                    .cloned()
                    .unwrap_or_default();
                format!("{path} ({})", owners.join(", "))
            })
            .collect();
        println!(
            "approved {approval} ({gate} gate) as {by}: {approved} of {required}; still waiting for a code owner of {}",
            owners.join(", ")
        );
    } else {
        println!(
            "approved {approval} ({gate} gate) as {by}: {approved} of {required}; waiting for {} more from {}",
            u64::from(required).saturating_sub(approved as u64),
            progress.request.eligible.join(", ")
        );
    }
    Ok(exit::OK)
}

/// Exactly what a decision was given on: the whole command (every line), or the diff's hash
/// and the paths it was asked for.
fn decided_on(request: &flightdeck_core::event::ApprovalRequested) -> String {
    let mut text = match &request.command {
        Some(command) => {
            let what = if request.gate == "write" {
                "write"
            } else {
                "command"
            };
            let mut text = format!("{what} ({} bytes):", command.len());
            for line in command.lines() {
                text.push_str("\n    ");
                text.push_str(line);
            }
            text.push('\n');
            text
        }
        None => String::new(),
    };
    text.push_str(&format!("diff {}", request.diff_hash));
    if !request.changed_paths.is_empty() {
        text.push_str(&format!(" ({})", request.changed_paths.join(", ")));
    }
    if request.masked {
        text.push_str(
            "; the stored patch has secrets masked, the approval covers the unmasked diff",
        );
    }
    text
}
