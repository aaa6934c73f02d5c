//! `policy explain`: what the repository's policy decides for an action, and why.

#![allow(clippy::print_stdout)]

use std::path::PathBuf;

use flightdeck_policy::{
    eligible_approvers, Action, ApprovalRequirement, ChangedFile, Codeowners, Policy, Verdict,
};
use serde_json::{json, Value};

use flightdeck_app::intake::{checkout_root, policy_at};

use crate::context::Context;
use crate::error::{exit, CliError};

pub fn explain(
    ctx: &Context,
    repo: Option<PathBuf>,
    base: &str,
    command: Option<String>,
    write: Option<String>,
    changed: Vec<String>,
) -> Result<i32, CliError> {
    let dir = repo.unwrap_or_else(|| PathBuf::from("."));
    let root = checkout_root(&dir)?;
    // As a mission would read them: at a commit, never from uncommitted files.
    let commit = flightdeck_workspace::resolve_commit(&root, base)?;
    let at = policy_at(&root, &commit)?;
    let policy = Policy::parse(&at.source, &at.origin)?;
    let codeowners_file = at.codeowners.clone();
    let codeowners = codeowners_file
        .as_ref()
        .map(|file| Codeowners::parse(&file.source));
    let warnings: Vec<String> = codeowners
        .as_ref()
        .map(|c| c.warnings().iter().map(ToString::to_string).collect())
        .unwrap_or_default();
    let changes: Vec<ChangedFile> = changed.iter().map(ChangedFile::modified).collect();
    let (action, subject) = match (&command, &write) {
        (Some(command), _) => (Action::Command { command }, command.clone()),
        (None, Some(path)) => (Action::Write { path }, path.clone()),
        (None, None) => (
            Action::Publish { changes: &changes },
            format!("{} changed file(s)", changes.len()),
        ),
    };
    let decision = policy.decide(&action);
    let eligible = if decision.verdict == Verdict::Approve {
        eligible_approvers(
            &ApprovalRequirement {
                approvers: decision.approvers.clone(),
                // As the publish gate does: owners of the files that triggered the rules.
                changed_paths: match &write {
                    Some(path) => vec![path.clone()],
                    None => decision.triggering_paths(&changes),
                },
            },
            codeowners.as_ref(),
        )
    } else {
        Vec::new()
    };
    let files: Vec<Value> = changed
        .iter()
        .map(|path| {
            let owners: Vec<String> = codeowners
                .as_ref()
                .map(|c| c.owners_of(path).to_vec())
                .unwrap_or_default();
            json!({"path": path, "classes": policy.classes_of(path), "owners": owners})
        })
        .collect();
    let report = json!({
        "repo": root.display().to_string(),
        "commit": commit,
        "policy": at.origin,
        "policy_hash": decision.policy_hash,
        "codeowners": codeowners_file.as_ref().map(|f| f.path.as_str()),
        "codeowners_warnings": warnings,
        "action": action.kind().as_str(),
        "subject": subject,
        "decision": decision.verdict.as_str(),
        "tier": decision.tier.as_str(),
        "rule_ids": decision.rule_ids,
        "approvals": decision.approvals,
        "approvers": decision.approvers,
        "eligible": eligible,
        "expires_after_seconds": decision.expires_after_seconds,
        "triggered_by": decision.triggered_by,
        "explanation": decision.explanation,
        "files": files,
    });
    if ctx.json() {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
        return Ok(exit::OK);
    }
    let mut out = String::new();
    let mut row = |label: &str, value: String| {
        out.push_str(&format!("{label:<9} {value}\n"));
    };
    row(
        "policy",
        format!(
            "{} at {} ({})",
            at.origin,
            commit.get(..12).unwrap_or(&commit),
            decision.policy_hash
        ),
    );
    for warning in &warnings {
        row("warning", warning.clone());
    }
    row("action", format!("{} {subject}", action.kind().as_str()));
    let verdict = match decision.verdict {
        Verdict::Approve => format!(
            "APPROVE: {} approval(s) from {} ({} tier)",
            decision.approvals.max(1),
            eligible.join(", "),
            decision.tier
        ),
        other => format!("{} ({} tier)", other.as_str().to_uppercase(), decision.tier),
    };
    row("decision", verdict);
    row(
        "rules",
        if decision.rule_ids.is_empty() {
            "none matched; the default for this action decided".to_string()
        } else {
            decision.rule_ids.join(", ")
        },
    );
    row("why", decision.explanation.clone());
    if let Some(seconds) = decision.expires_after_seconds {
        row(
            "expires",
            format!("an approval not granted within {seconds} s counts as a deny"),
        );
    }
    for file in &files {
        let list = |key: &str| {
            file.get(key)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default()
        };
        let owners = list("owners");
        row(
            "file",
            format!(
                "{}  [{}]  owners: {}",
                file["path"].as_str().unwrap_or(""),
                list("classes"),
                if owners.is_empty() {
                    "none".to_string()
                } else {
                    owners
                }
            ),
        );
    }
    print!("{out}");
    Ok(exit::OK)
}
