//! Policy gates and approvals. Every command is judged before it runs and every diff before
//! it is published, by the policy pinned when the mission was created; an `approve` verdict
//! parks the mission until enough eligible people have approved exactly that diff.

use std::collections::BTreeMap;

use flightdeck_core::event::{
    ApprovalDecided, ApprovalExpired, ApprovalRequested, MissionCreated, MissionError,
    MissionFinished, PolicyDecided, StepStatus,
};
use flightdeck_core::ids::{approval_id, mission_of_approval};
use flightdeck_core::state::{ApprovalProgress, ApprovalStatus};
use flightdeck_core::{Digest, EventKind, MissionState, MissionStatus};
use flightdeck_policy::{
    canonical_identity, check_approver, eligible_approvers, ApprovalContext, ApprovalRequirement,
    ChangeStatus, ChangedFile, Codeowners, Decision, Policy, Teams,
};
use flightdeck_workspace::{DiffFile, Worktree};
use serde_json::{json, Value};

use crate::mission::Engine;
use crate::EngineError;

/// Where a decision on an approval came from (`approval.decided.channel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Cli,
    Web,
    Slack,
    Github,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Cli => "cli",
            Channel::Web => "web",
            Channel::Slack => "slack",
            Channel::Github => "github",
        }
    }
}

/// Someone's decision on an approval, as a channel delivers it.
#[derive(Debug, Clone, Copy)]
pub struct Vote<'a> {
    pub approval_id: &'a str,
    pub by: &'a str,
    pub approve: bool,
    pub comment: Option<&'a str>,
    pub channel: Channel,
}

/// The pinned policy and CODEOWNERS of a mission, parsed once per drive.
pub(crate) struct Gates {
    pub(crate) policy: Policy,
    pub(crate) codeowners: Option<Codeowners>,
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

/// The `policy.decided` event of a decision.
pub(crate) fn decided_event(
    subject: &str,
    decision: &Decision,
    action: &str,
    diff_hash: Option<String>,
) -> Result<PolicyDecided, EngineError> {
    let policy_hash = decision
        .policy_hash
        .parse::<Digest>()
        .map_err(|e| EngineError::Encode {
            what: "policy hash",
            message: e.to_string(),
        })?;
    Ok(PolicyDecided {
        subject: subject.to_string(),
        action: action.to_string(),
        decision: decision.verdict.as_str().to_string(),
        tier: decision.tier.as_str().to_string(),
        rule_ids: decision.rule_ids.clone(),
        policy_hash,
        explanation: decision.explanation.clone(),
        approvals: decision.approvals,
        approvers: decision.approvers.clone(),
        triggered_by: decision.triggered_by.clone(),
        diff_hash,
    })
}

/// How a mission that a policy denied ends.
pub(crate) fn denied_error(what: &str, decided: &PolicyDecided) -> MissionError {
    let rules = if decided.rule_ids.is_empty() {
        "the policy's default".to_string()
    } else {
        format!("rule {}", decided.rule_ids.join(", "))
    };
    MissionError {
        kind: "policy_denied".into(),
        message: format!(
            "{what} was denied by {rules} ({} tier): {}",
            decided.tier, decided.explanation
        ),
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

impl Engine {
    /// The policy and CODEOWNERS pinned in `mission.created` (the built-in policy for a
    /// mission recorded before policies were pinned).
    pub(crate) async fn gates_of(&self, created: &MissionCreated) -> Result<Gates, EngineError> {
        let policy = match &created.policy_source {
            Some(digest) => {
                let bytes = self.config().artifacts.get(digest).await?;
                let text = String::from_utf8_lossy(&bytes);
                Policy::parse(&text, ".flightdeck/policy.toml (as pinned by the mission)")?
            }
            None => Policy::builtin(),
        };
        let codeowners = match &created.codeowners {
            Some(digest) => {
                let bytes = self.config().artifacts.get(digest).await?;
                Some(Codeowners::parse(&String::from_utf8_lossy(&bytes)))
            }
            None => None,
        };
        Ok(Gates { policy, codeowners })
    }

    /// Builds the `approval.requested` of a gate, storing its diff and context bundle.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn approval_request(
        &self,
        state: &MissionState,
        gates: &Gates,
        title: &str,
        gate: &str,
        subject: &str,
        command: Option<&str>,
        decision: &Decision,
        diff: &CurrentDiff,
        changed_paths: Vec<String>,
    ) -> Result<ApprovalRequested, EngineError> {
        let id = approval_id(&state.id, state.approvals.len() + 1);
        let changed: Vec<ChangedFile> = diff.changed_files();
        let requirement = ApprovalRequirement {
            approvers: decision.approvers.clone(),
            changed_paths: changed_paths.clone(),
        };
        let eligible = eligible_approvers(&requirement, gates.codeowners.as_ref());
        // The members of the teams that may approve, as configured now: pinned, so who
        // counted as a member is on record and cannot be widened later.
        let teams: BTreeMap<String, Vec<String>> = self
            .config()
            .teams
            .0
            .iter()
            .filter(|(team, _)| eligible.iter().any(|e| e.eq_ignore_ascii_case(team)))
            .map(|(team, members)| (team.clone(), members.clone()))
            .collect();
        let code_owners: BTreeMap<String, Vec<String>> = match &gates.codeowners {
            Some(codeowners) if decision.approvers.iter().any(|a| a == "codeowners") => {
                changed_paths
                    .iter()
                    .filter_map(|path| {
                        let owners = codeowners.owners_of(path);
                        (!owners.is_empty()).then(|| (path.clone(), owners.to_vec()))
                    })
                    .collect()
            }
            _ => BTreeMap::new(),
        };
        let required = decision.approvals.max(1);
        let diff_digest = self.put_artifact(&diff.patch).await?;
        let bundle = bundle_json(BundleInput {
            state,
            gates,
            title,
            approval_id: &id,
            gate,
            subject,
            command,
            decision,
            required,
            eligible: &eligible,
            changed: &changed,
            diff_digest: &diff_digest,
        });
        let bundle = serde_json::to_vec_pretty(&bundle).map_err(|e| EngineError::Encode {
            what: "approval bundle",
            message: e.to_string(),
        })?;
        let bundle = self.put_artifact(&bundle).await?;
        Ok(ApprovalRequested {
            approval_id: id,
            gate: gate.to_string(),
            required,
            eligible,
            diff_hash: diff_digest.to_string(),
            bundle,
            subject: subject.to_string(),
            command: command.map(str::to_string),
            tier: decision.tier.as_str().to_string(),
            rule_ids: decision.rule_ids.clone(),
            approvers: decision.approvers.clone(),
            changed_paths,
            expires_after_seconds: decision.expires_after_seconds,
            teams,
            code_owners,
        })
    }

    /// Records a person's approve or deny. Refused (nothing recorded) when the approval is
    /// unknown or no longer pending, or the identity may not decide it. A deny fails the
    /// mission at once.
    pub async fn decide_approval(&self, vote: Vote<'_>) -> Result<MissionState, EngineError> {
        let approval_id = vote.approval_id.trim();
        let unknown = || EngineError::UnknownApproval(approval_id.to_string());
        let mission = mission_of_approval(approval_id).ok_or_else(unknown)?;
        // Another writer may append between our read and our write (a second approver,
        // say): read again and re-check, a few times.
        for _ in 0..5 {
            let mut state = match self.load(mission.as_str()).await {
                Err(EngineError::UnknownMission(_)) => return Err(unknown()),
                other => other?,
            };
            self.expire_due_in(&mut state).await?;
            let approval = state
                .approvals
                .get(approval_id)
                .cloned()
                .ok_or_else(unknown)?;
            if approval.status != ApprovalStatus::Pending {
                return Err(EngineError::ApprovalClosed {
                    id: approval_id.to_string(),
                    status: approval.status.to_string(),
                    mission: state.id.clone(),
                });
            }
            let created = state.created.clone().ok_or_else(unknown)?;
            let gates = self.gates_of(&created).await?;
            let requirement = ApprovalRequirement {
                approvers: approval.request.approvers.clone(),
                changed_paths: approval.request.changed_paths.clone(),
            };
            let already: Vec<String> = approval
                .decided_by()
                .into_iter()
                .map(str::to_string)
                .collect();
            let teams = Teams::new(approval.request.teams.clone());
            let ctx = ApprovalContext {
                requester: &created.requested_by,
                allow_self_approval: gates.policy.allow_self_approval(),
                codeowners: gates.codeowners.as_ref(),
                teams: &teams,
                already_approved_by: &already,
            };
            check_approver(vote.by, &requirement, &ctx).map_err(|refusal| {
                EngineError::ApprovalRefused {
                    id: approval_id.to_string(),
                    by: vote.by.to_string(),
                    reason: refusal.to_string(),
                }
            })?;
            let decision = if vote.approve { "approve" } else { "deny" };
            let by = canonical_identity(vote.by);
            let mut events = vec![EventKind::ApprovalDecided(ApprovalDecided {
                approval_id: approval_id.to_string(),
                by: by.clone(),
                decision: decision.to_string(),
                channel: vote.channel.as_str().to_string(),
                comment: vote.comment.map(str::to_string),
                policy_hash: created.policy_hash.clone(),
                diff_hash: approval.request.diff_hash.clone(),
            })];
            if !vote.approve {
                let comment = vote
                    .comment
                    .filter(|c| !c.trim().is_empty())
                    .map(|c| format!(": {}", c.trim()))
                    .unwrap_or_default();
                events.push(EventKind::MissionFinished(MissionFinished {
                    status: MissionStatus::Failed,
                    error: Some(MissionError {
                        kind: "approval_denied".into(),
                        message: format!(
                            "{} ({} gate) was denied by {}{comment}",
                            approval_id, approval.request.gate, by
                        ),
                    }),
                    summary: None,
                }));
            }
            match self.append(&mut state, events).await {
                Ok(_) => return Ok(state),
                Err(EngineError::Raced { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(EngineError::Raced {
            id: mission.to_string(),
        })
    }

    /// Loads a mission and records the expiry of every pending approval whose time ran
    /// out (a deny: the mission fails).
    pub async fn expire_due(&self, id: &str) -> Result<MissionState, EngineError> {
        let mut state = self.load(id).await?;
        self.expire_due_in(&mut state).await?;
        Ok(state)
    }

    /// Records due expiries on `state`; true when something expired.
    pub(crate) async fn expire_due_in(
        &self,
        state: &mut MissionState,
    ) -> Result<bool, EngineError> {
        if state.status.is_terminal() {
            return Ok(false);
        }
        let now = self.config().clock.now_ms();
        let due: Vec<ApprovalProgress> = state.due_expiries(now).into_iter().cloned().collect();
        if due.is_empty() {
            return Ok(false);
        }
        let mut events: Vec<EventKind> = Vec::new();
        let mut named = Vec::new();
        for approval in &due {
            let secs = approval.request.expires_after_seconds.unwrap_or(0);
            events.push(EventKind::ApprovalExpired(ApprovalExpired {
                approval_id: approval.request.approval_id.clone(),
                expires_after_seconds: secs,
            }));
            named.push(format!(
                "{} ({} gate, {} of {} approvals) was not granted within {secs} s",
                approval.request.approval_id,
                approval.request.gate,
                approval.approved_by().len(),
                approval.request.required
            ));
        }
        events.push(EventKind::MissionFinished(MissionFinished {
            status: MissionStatus::Failed,
            error: Some(MissionError {
                kind: "approval_expired".into(),
                message: format!("{}; an expired approval counts as a deny", named.join("; ")),
            }),
            summary: None,
        }));
        self.append(state, events).await?;
        Ok(true)
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
    let summary = state.summary();
    json!({
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
        "budget": budget_with_remaining(summary.get("budget")),
        "timeline_command": format!("flightdeck timeline {}", state.id),
        "diff_command": format!("flightdeck artifact {diff_digest}"),
    })
}

/// The summary's budget with `remaining` (limit − used) beside each set limit.
fn budget_with_remaining(budget: Option<&Value>) -> Value {
    let Some(Value::Object(dimensions)) = budget else {
        return Value::Null;
    };
    let mut out = serde_json::Map::new();
    for (name, dimension) in dimensions {
        let mut dimension = dimension.clone();
        let used = dimension.get("used").and_then(Value::as_f64);
        let limit = dimension.get("limit").and_then(Value::as_f64);
        if let (Some(object), Some(used), Some(limit)) = (dimension.as_object_mut(), used, limit) {
            object.insert("remaining".into(), json!((limit - used).max(0.0)));
        }
        out.insert(name.clone(), dimension);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_bundle_budget_says_what_remains_where_a_limit_is_set() {
        let budget = json!({
            "usd": {"used": 0.5, "limit": 2.0},
            "tokens": {"used": 10, "limit": null},
        });
        let out = budget_with_remaining(Some(&budget));
        assert_eq!(out["usd"]["remaining"], 1.5);
        assert!(out["tokens"].get("remaining").is_none());
        assert!(budget_with_remaining(None).is_null());
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
