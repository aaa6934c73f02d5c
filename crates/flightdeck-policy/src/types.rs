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
