//! `approvals`, `approve` and `deny`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::sync::Arc;

use flightdeck_core::ids::mission_of_approval;
use flightdeck_engine::{Channel, Silent, Vote};
use serde_json::{json, Value};

use crate::context::Context;
use crate::error::{exit, CliError};
use crate::output::approval_text;

/// How many missions `approvals` looks through (newest first).
const APPROVALS_SCAN_LIMIT: u32 = 100_000;

/// Whether a summary lists a pending approval whose expiry has passed.
fn has_due_expiry(summary: &Value, now_ms: i64) -> bool {
    summary
        .get("pending_approvals")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|a| a.get("expires_at").and_then(Value::as_str))
        .filter_map(flightdeck_core::clock::parse_rfc3339_millis)
        .any(|at| at <= now_ms)
}

pub async fn list(ctx: &Context, pending_only: bool) -> Result<i32, CliError> {
    let mut listed: Vec<Value> = Vec::new();
    if ctx.store_exists() {
        let engine = ctx.engine(Arc::new(Silent)).await?;
        let rows = engine.config().store.missions(APPROVALS_SCAN_LIMIT).await?;
        let now = engine.config().clock.now_ms();
        for row in rows {
            let has_approvals = row
                .summary
                .get("approvals")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
            if !has_approvals {
                continue;
            }
            // Listing is one of the moments expiry is checked (and recorded).
            let summary = if has_due_expiry(&row.summary, now) {
                engine.expire_due(&row.id).await?.summary()
            } else {
                row.summary
            };
            for approval in summary
                .get("approvals")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let status = approval.get("status").and_then(Value::as_str);
                if pending_only && status != Some("pending") {
                    continue;
                }
                let mut entry = approval.clone();
                if let Some(object) = entry.as_object_mut() {
                    object.insert("mission".into(), json!(row.id));
                    object.insert("mission_status".into(), summary["status"].clone());
                    object.insert("template".into(), summary["template"].clone());
                    object.insert("requested_by".into(), summary["requested_by"].clone());
                }
                listed.push(entry);
            }
        }
    }
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
    for approval in &listed {
        let s = |key: &str| approval.get(key).and_then(Value::as_str).unwrap_or("-");
        println!(
            "{}  (mission {}, template {}, requested by {})",
            approval_text(approval),
            s("mission"),
            s("template"),
            s("requested_by")
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
            approval_id: approval,
            by: &by,
            approve,
            comment,
            channel: Channel::Cli,
        })
        .await?;
    let summary = state.summary();
    let entry = summary
        .get("approvals")
        .and_then(Value::as_array)
        .and_then(|list| list.iter().find(|a| a["id"] == approval))
        .cloned()
        .unwrap_or(Value::Null);
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
    if !approve {
        println!(
            "denied {approval} ({gate} gate) as {by}: mission {} failed",
            state.id
        );
    } else if progress.status == flightdeck_core::state::ApprovalStatus::Approved {
        let still_pending = state.pending_approvals().count();
        let next = if still_pending == 0 {
            format!("continue it with `flightdeck resume {}`", state.id)
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
