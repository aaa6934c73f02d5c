//! The plain data that goes into and comes out of a policy decision.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What the policy says about an action. Ordered by strictness so that combining
/// verdicts is `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The action may proceed.
    Allow,
    /// The action waits for approvals.
    Approve,
    /// The action must not happen.
    Deny,
}

impl Verdict {
    /// The lowercase name used in policy files and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Approve => "approve",
            Verdict::Deny => "deny",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Verdict> {
        match name {
            "allow" => Some(Verdict::Allow),
            "approve" => Some(Verdict::Approve),
            "deny" => Some(Verdict::Deny),
            _ => None,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much is at stake; drives notification urgency and how a gate is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Low,
    Medium,
    High,
    Critical,
}

impl Tier {
    /// The lowercase name used in policy files and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Low => "low",
            Tier::Medium => "medium",
            Tier::High => "high",
            Tier::Critical => "critical",
        }
    }

    /// The tier a rule or default gets when the policy does not name one.
    pub fn default_for(verdict: Verdict) -> Tier {
        match verdict {
            Verdict::Allow => Tier::Low,
            Verdict::Approve => Tier::Medium,
            Verdict::Deny => Tier::High,
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Tier> {
        match name {
            "low" => Some(Tier::Low),
            "medium" => Some(Tier::Medium),
            "high" => Some(Tier::High),
            "critical" => Some(Tier::Critical),
            _ => None,
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kinds of action a rule can be about (`action = "..."` in a rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    Command,
    Write,
    Publish,
    Merge,
}

impl ActionKind {
    /// All kinds, in the order used for per-kind tables.
    pub const ALL: [ActionKind; 4] = [
        ActionKind::Command,
        ActionKind::Write,
        ActionKind::Publish,
        ActionKind::Merge,
    ];

    /// The lowercase name used in policy files and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Command => "command",
            ActionKind::Write => "write",
            ActionKind::Publish => "publish",
            ActionKind::Merge => "merge",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<ActionKind> {
        match name {
            "command" => Some(ActionKind::Command),
            "write" => Some(ActionKind::Write),
            "publish" => Some(ActionKind::Publish),
            "merge" => Some(ActionKind::Merge),
            _ => None,
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            ActionKind::Command => 0,
            ActionKind::Write => 1,
            ActionKind::Publish => 2,
            ActionKind::Merge => 3,
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something an agent or a mission wants to do, as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// A shell command line, judged whole, per pipeline and per simple command.
    Command { command: &'a str },
    /// A file write inside the workspace (repo-relative path).
    Write { path: &'a str },
    /// Publishing a change set (commit, patch or pull request).
    Publish { changes: &'a [ChangedFile] },
    /// Merging a change set.
    Merge { changes: &'a [ChangedFile] },
}

impl Action<'_> {
    /// Which kind of rule applies to this action.
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::Command { .. } => ActionKind::Command,
            Action::Write { .. } => ActionKind::Write,
            Action::Publish { .. } => ActionKind::Publish,
            Action::Merge { .. } => ActionKind::Merge,
        }
    }
}

/// One file of a diff.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChangedFile {
    /// Repo-relative path after the change (for a deletion: the deleted path).
    pub path: String,
    /// Lines added.
    pub added: u64,
    /// Lines removed.
    pub removed: u64,
    pub status: ChangeStatus,
}

impl ChangedFile {
    /// A changed file with the given status and no line counts (handy in tests and tools).
    pub fn new(path: impl Into<String>, status: ChangeStatus) -> ChangedFile {
        ChangedFile {
            path: path.into(),
            added: 0,
            removed: 0,
            status,
        }
    }

    /// A modified file with no line counts.
    pub fn modified(path: impl Into<String>) -> ChangedFile {
        ChangedFile::new(path, ChangeStatus::Modified)
    }

    /// The paths this change touches: the path, and for a rename also the old path.
    ///
    /// A rename touches both ends: moving a migration into `src/` changes the migrations.
    pub fn touched_paths(&self) -> impl Iterator<Item = &str> {
        let from = match &self.status {
            ChangeStatus::Renamed { from } => Some(from.as_str()),
            _ => None,
        };
        std::iter::once(self.path.as_str()).chain(from)
    }
}

/// How a file changed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeStatus {
    Added,
    Modified,
    Deleted,
    Renamed { from: String },
}

/// The outcome of [`crate::Policy::decide`]: everything a caller needs to act on it,
/// record it and show it to a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub verdict: Verdict,
    pub tier: Tier,
    /// Every rule that matched and determined the verdict (built-in checks use `builtin:*`
    /// ids). Empty when the default for the action decided.
    pub rule_ids: Vec<String>,
    /// Approvals required when the verdict is approve (0 otherwise).
    pub approvals: u32,
    /// Who may approve: `codeowners`, `@team`, `@user` or an email; de-duplicated, in
    /// order of first appearance. Empty unless the verdict is approve.
    pub approvers: Vec<String>,
    /// How long an approval stays valid, the smallest of the approve rules that set one.
    pub expires_after_seconds: Option<u64>,
    /// The changed files (publish, merge), the path (write) or the command parts
    /// (command) that triggered the deciding rules.
    pub triggered_by: Vec<String>,
    /// A sentence or two for people: which rule matched, and why.
    pub explanation: String,
    /// `sha256:<hex>` of the policy source that decided.
    pub policy_hash: String,
}

impl Decision {
    /// The strictest of several decisions about one change (for example the publish
    /// decision and the write decisions of its paths): deny beats approve beats allow, and
    /// among the strictest, approve decisions combine as approve rules do (the largest
    /// count, the union of approvers, the shortest expiry). `None` for an empty list.
    /// The changed paths whose code owners may approve this decision: those that triggered
    /// the deciding rules (an owner of an unrelated file in the same diff may not), else every
    /// changed path.
    pub fn triggering_paths(&self, changed: &[ChangedFile]) -> Vec<String> {
        let touched: Vec<String> = changed
            .iter()
            .flat_map(|f| f.touched_paths().map(str::to_string))
            .collect();
        let triggering: Vec<String> = touched
            .iter()
            .filter(|path| self.triggered_by.iter().any(|t| t == *path))
            .cloned()
            .collect();
        if triggering.is_empty() {
            touched
        } else {
            triggering
        }
    }

    pub fn strictest(decisions: Vec<Decision>) -> Option<Decision> {
        let verdict = decisions.iter().map(|d| d.verdict).max()?;
        let mut strictest = decisions.into_iter().filter(|d| d.verdict == verdict);
        let mut combined = strictest.next()?;
        for decision in strictest {
            combined.tier = combined.tier.max(decision.tier);
            combined.approvals = combined.approvals.max(decision.approvals);
            combined.expires_after_seconds = match (
                combined.expires_after_seconds,
                decision.expires_after_seconds,
            ) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            for (list, more) in [
                (&mut combined.approvers, decision.approvers),
                (&mut combined.rule_ids, decision.rule_ids),
                (&mut combined.triggered_by, decision.triggered_by),
            ] {
                for item in more {
                    if !list.contains(&item) {
                        list.push(item);
                    }
                }
            }
            if !combined.explanation.contains(&decision.explanation) {
                combined.explanation.push_str("; and ");
                combined.explanation.push_str(&decision.explanation);
            }
        }
        Some(combined)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(
        verdict: Verdict,
        tier: Tier,
        rule: &str,
        approvals: u32,
        approvers: &[&str],
    ) -> Decision {
        Decision {
            verdict,
            tier,
            rule_ids: vec![rule.to_owned()],
            approvals,
            approvers: approvers.iter().map(|a| (*a).to_owned()).collect(),
            expires_after_seconds: None,
            triggered_by: vec![format!("{rule}-file")],
            explanation: format!("{rule} says {verdict}"),
            policy_hash: "sha256:00".to_owned(),
        }
    }

    #[test]
    fn the_strictest_decision_wins_and_approvals_combine() {
        let allow = decision(Verdict::Allow, Tier::Low, "a", 0, &[]);
        let approve1 = decision(Verdict::Approve, Tier::Medium, "b", 1, &["codeowners"]);
        let approve2 = decision(
            Verdict::Approve,
            Tier::High,
            "c",
            2,
            &["@lead", "codeowners"],
        );
        let deny = decision(Verdict::Deny, Tier::Critical, "d", 0, &[]);

        let combined =
            Decision::strictest(vec![allow.clone(), approve1.clone(), approve2]).unwrap();
        assert_eq!(combined.verdict, Verdict::Approve);
        assert_eq!(combined.tier, Tier::High);
        assert_eq!(combined.approvals, 2);
        assert_eq!(combined.approvers, ["codeowners", "@lead"]);
        assert_eq!(combined.rule_ids, ["b", "c"]);
        assert_eq!(combined.triggered_by, ["b-file", "c-file"]);
        assert!(combined.explanation.contains("b says") && combined.explanation.contains("c says"));

        let denied = Decision::strictest(vec![approve1, deny, allow.clone()]).unwrap();
        assert_eq!(denied.verdict, Verdict::Deny);
        assert_eq!(denied.rule_ids, ["d"]);
        assert_eq!(Decision::strictest(vec![allow.clone()]), Some(allow));
        assert_eq!(Decision::strictest(Vec::new()), None);
    }
}
