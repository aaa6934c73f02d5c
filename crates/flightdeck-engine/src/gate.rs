//! Policy gates and approvals. Every command is judged before it runs and every diff before
//! it is published, by the policy pinned when the mission was created; an `approve` verdict
//! parks the mission until enough eligible people have approved exactly that diff.

use std::collections::BTreeMap;

use flightdeck_core::event::{ApprovalRequested, MissionCreated, StepStatus};
use flightdeck_core::ids::approval_id;
use flightdeck_core::views::BudgetView;
use flightdeck_core::{Digest, MissionState};
use flightdeck_policy::{
    eligible_approvers, ApprovalRequirement, ChangeStatus, ChangedFile, Codeowners, Decision,
    Policy,
};
use flightdeck_workspace::{DiffFile, Worktree};
use serde_json::{json, Value};

use crate::error::EngineError;
use crate::log::put_artifact;
use crate::protocol::ApprovalAsk;
use crate::shared::Shared;

/// The pinned policy and CODEOWNERS of a mission, parsed once per drive.
pub struct Gates {
    pub policy: Policy,
    pub codeowners: Option<Codeowners>,
}

/// The worktree's changes against the base at one moment.
pub(crate) struct CurrentDiff {
    pub(crate) tree: String,
    pub(crate) files: Vec<DiffFile>,
    /// `git diff --binary --full-index base tree`.
    pub(crate) patch: Vec<u8>,
}

impl CurrentDiff {
    pub(crate) fn read(worktree: &Worktree) -> Result<CurrentDiff, EngineError> {
        let (tree, files) = worktree.changes()?;
        let patch = worktree.diff_bytes(&tree)?;
        Ok(CurrentDiff { tree, files, patch })
    }

    /// What an approval covers: `sha256:<hex>` of the binary patch.
    pub(crate) fn hash(&self) -> String {
        Digest::of(&self.patch).to_string()
    }

    pub(crate) fn changed_files(&self) -> Vec<ChangedFile> {
        self.files.iter().map(changed_file).collect()
    }
}

/// The policy's view of one file of a diff (renames are off, so no `Renamed`).
pub(crate) fn changed_file(file: &DiffFile) -> ChangedFile {
    let status = match file.status.chars().next() {
        Some('A') => ChangeStatus::Added,
        Some('D') => ChangeStatus::Deleted,
        _ => ChangeStatus::Modified,
    };
    ChangedFile {
        path: file.path.clone(),
        added: file.added.unwrap_or(0),
        removed: file.removed.unwrap_or(0),
        status,
    }
}

/// Top-level areas a set of paths touches (`(root)` for files at the top).
fn areas(paths: &[&str]) -> Vec<String> {
    let mut areas: Vec<String> = paths
        .iter()
        .map(|p| match p.split_once('/') {
            Some((top, _)) => format!("{top}/"),
            None => "(root)".to_string(),
        })
        .collect();
    areas.sort();
    areas.dedup();
    areas
}

impl Shared {
    /// The policy and CODEOWNERS pinned in `mission.created` (the built-in policy for a
    /// mission recorded before policies were pinned).
    pub(crate) async fn gates_of(&self, created: &MissionCreated) -> Result<Gates, EngineError> {
        let policy = match &created.policy_source {
            Some(digest) => {
                let bytes = self.cfg.artifacts.get(digest).await?;
                let text = String::from_utf8_lossy(&bytes);
                Policy::parse(&text, ".flightdeck/policy.toml (as pinned by the mission)")?
            }
            None => Policy::builtin(),
        };
        let codeowners = match &created.codeowners {
            Some(digest) => {
                let bytes = self.cfg.artifacts.get(digest).await?;
                Some(Codeowners::parse(&String::from_utf8_lossy(&bytes)))
            }
            None => None,
        };
        Ok(Gates { policy, codeowners })
    }

    /// The gates of a mission as its state stands.
    pub(crate) async fn gates_of_state(&self, state: &MissionState) -> Result<Gates, EngineError> {
        let created = state
            .created
            .as_ref()
            .ok_or_else(|| EngineError::UnknownMission(state.id.clone()))?;
        self.gates_of(created).await
    }

    /// Builds the `approval.requested` of a parked call, storing its diff and context
    /// bundle. Who is eligible is resolved to people now and pinned with the request: the
    /// teams' members and the code owners of the triggering paths, as handles.
    pub(crate) async fn approval_request(
        &self,
        state: &MissionState,
        gates: &Gates,
        title: &str,
        ask: &ApprovalAsk,
        diff: &CurrentDiff,
    ) -> Result<ApprovalRequested, EngineError> {
        let decision = &ask.decision;
        let id = approval_id(&state.id, state.approvals.len() + 1);
        let changed: Vec<ChangedFile> = diff.changed_files();
        let changed_paths = ask.paths.clone();
        let requirement = ApprovalRequirement {
            approvers: decision.approvers.clone(),
            changed_paths: changed_paths.clone(),
        };
        let eligible = eligible_approvers(&requirement, gates.codeowners.as_ref());
        // The members of the teams that may approve, as configured now: pinned, so who
        // counted as a member is on record and cannot be widened later.
        let teams: BTreeMap<String, Vec<String>> = self
            .cfg
            .teams
            .0
            .iter()
            .filter(|(team, _)| eligible.iter().any(|e| e.eq_ignore_ascii_case(team)))
            .map(|(team, members)| (team.clone(), self.cfg.people.handles(members)))
            .collect();
        let code_owners: BTreeMap<String, Vec<String>> = match &gates.codeowners {
            Some(codeowners) if decision.approvers.iter().any(|a| a == "codeowners") => {
                changed_paths
                    .iter()
                    .filter_map(|path| {
                        let owners = codeowners.owners_of(path);
                        (!owners.is_empty())
                            .then(|| (path.clone(), self.cfg.people.handles(owners)))
                    })
                    .collect()
            }
            _ => BTreeMap::new(),
        };
        let required = decision.approvals.max(1);
        // The stored patch is masked like every artifact; the approval covers the diff as
        // it is (what the gate compares later), and says when the two differ.
        let diff_digest = put_artifact(&self.sink(), &diff.patch).await?;
        let diff_hash = diff.hash();
        let masked = diff_digest.to_string() != diff_hash;
        let bundle = bundle_json(BundleInput {
            state,
            gates,
            title,
            approval_id: &id,
            gate: ask.gate,
            subject: &ask.subject,
            command: ask.command.as_deref(),
            decision,
            required,
            eligible: &eligible,
            changed: &changed,
            diff_digest: &diff_digest,
            masked,
        });
        let bundle = serde_json::to_vec_pretty(&bundle).map_err(|e| EngineError::Encode {
            what: "approval bundle",
            message: e.to_string(),
        })?;
        let bundle = put_artifact(&self.sink(), &bundle).await?;
        Ok(ApprovalRequested {
            approval_id: id,
            gate: ask.gate.to_string(),
            required,
            eligible,
            diff_hash,
            bundle,
            masked,
            subject: ask.subject.clone(),
            command: ask.command.clone(),
            tier: decision.tier.as_str().to_string(),
            rule_ids: decision.rule_ids.clone(),
            approvers: decision.approvers.clone(),
            changed_paths,
            expires_after_seconds: decision.expires_after_seconds,
            teams,
            code_owners,
        })
    }
}

struct BundleInput<'a> {
    state: &'a MissionState,
    gates: &'a Gates,
    title: &'a str,
    approval_id: &'a str,
    gate: &'a str,
    subject: &'a str,
    command: Option<&'a str>,
    decision: &'a Decision,
    required: u32,
    eligible: &'a [String],
    changed: &'a [ChangedFile],
    diff_digest: &'a Digest,
    masked: bool,
}

/// The context bundle a reviewer reads before deciding: what would happen, why the policy
/// stopped it, what the mission did so far and how to see everything.
fn bundle_json(input: BundleInput<'_>) -> Value {
    let BundleInput {
        state,
        gates,
        title,
        approval_id,
        gate,
        subject,
        command,
        decision,
        required,
        eligible,
        changed,
        diff_digest,
        masked,
    } = input;
    let mut by_class: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut files = Vec::new();
    for file in changed {
        let classes: Vec<String> = gates
            .policy
            .classes_of(&file.path)
            .into_iter()
            .map(str::to_string)
            .collect();
        let status = match &file.status {
            ChangeStatus::Added => "added",
            ChangeStatus::Deleted => "deleted",
            ChangeStatus::Modified => "modified",
            ChangeStatus::Renamed { .. } => "renamed",
        };
        let owners: Vec<String> = gates
            .codeowners
            .as_ref()
            .map(|c| c.owners_of(&file.path).to_vec())
            .unwrap_or_default();
        for class in &classes {
            by_class.entry(class.clone()).or_default().push(json!({
                "path": file.path, "added": file.added, "removed": file.removed,
            }));
        }
        files.push(json!({
            "path": file.path, "status": status, "added": file.added, "removed": file.removed,
            "classes": classes, "owners": owners,
        }));
    }
    let paths: Vec<&str> = changed.iter().map(|f| f.path.as_str()).collect();
    let steps: Vec<Value> = state
        .steps
        .iter()
        .map(|(index, step)| {
            let done = state.completed_call_of_step(*index);
            json!({
                "index": index,
                "description": step.description,
                "status": step.status.map_or("running", StepStatus::as_str),
                "exit_code": done.and_then(|d| d.exit_code),
                "duration_ms": done.map(|d| d.duration_ms),
                "output": done.map(|d| d.output.to_string()),
            })
        })
        .collect();
    let mut bundle = json!({
        "approval_id": approval_id,
        "mission": state.id,
        "title": title,
        "gate": gate,
        "subject": subject,
        "command": command,
        "requested_by": state.created.as_ref().map(|c| c.requested_by.as_str()),
        "risk_tier": decision.tier.as_str(),
        "decision": {
            "verdict": decision.verdict.as_str(),
            "rule_ids": decision.rule_ids,
            "explanation": decision.explanation,
            "triggered_by": decision.triggered_by,
            "approvals": required,
            "approvers": decision.approvers,
            "expires_after_seconds": decision.expires_after_seconds,
        },
        "eligible": eligible,
        "policy_hash": decision.policy_hash,
        "base_commit": state.created.as_ref().map(|c| c.base_commit.as_str()),
        "diff": diff_digest.to_string(),
        "lines": {
            "added": changed.iter().map(|f| f.added).sum::<u64>(),
            "removed": changed.iter().map(|f| f.removed).sum::<u64>(),
        },
        "files": files,
        "files_by_class": by_class,
        "areas": areas(&paths),
        "steps": steps,
        "budget": budget_with_remaining(&BudgetView::of(state, state.last_at_ms)),
        "timeline_command": format!("flightdeck timeline {}", state.id),
        "diff_command": format!("flightdeck artifact {diff_digest}"),
    });
    // Only when masked: a bundle of an unmasked diff stays byte for byte what earlier
    // releases recorded, so their timelines still replay.
    if masked {
        if let Some(object) = bundle.as_object_mut() {
            object.insert("diff_masked".into(), json!(true));
        }
    }
    bundle
}

/// The budget with `remaining` (limit − used) beside each set limit.
fn budget_with_remaining(budget: &BudgetView) -> Value {
    let mut out = serde_json::Map::new();
    for (dimension, entry) in budget.dimensions() {
        let mut value = json!({"used": entry.used, "limit": entry.limit});
        if let (Some(object), Some(remaining)) = (value.as_object_mut(), entry.remaining()) {
            object.insert("remaining".into(), json!(remaining));
        }
        out.insert(dimension.as_str().to_string(), value);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_bundle_budget_says_what_remains_where_a_limit_is_set() {
        use flightdeck_core::views::{Amount, BudgetDimension};
        let dimension = |used, limit| BudgetDimension { used, limit };
        let budget = BudgetView {
            usd: dimension(Amount::Usd(0.5), Some(2.0)),
            tokens: dimension(Amount::Count(10), None),
            tool_calls: dimension(Amount::Count(0), None),
            model_calls: dimension(Amount::Count(0), None),
            wall_seconds: dimension(Amount::Count(0), None),
        };
        let out = budget_with_remaining(&budget);
        assert_eq!(out["usd"]["remaining"], 1.5);
        assert_eq!(out["usd"]["used"], 0.5);
        assert!(out["tokens"].get("remaining").is_none());
    }

    use super::*;

    #[test]
    fn areas_are_top_level_directories_or_root() {
        assert_eq!(
            areas(&["src/a.rs", "src/b/c.rs", "Cargo.toml", "docs/x.md"]),
            vec!["(root)", "docs/", "src/"]
        );
        assert!(areas(&[]).is_empty());
    }
}
