//! A compiled policy and its decisions.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::OnceLock;

use globset::GlobSet;

use crate::classes::{ClassMask, ClassTable};
use crate::command::{self, CommandPattern};
use crate::error::PolicyError;
use crate::paths::{self, PathProblem};
use crate::types::{Action, ActionKind, ChangedFile, Decision, Tier, Verdict};
use crate::{parse, BUILTIN_POLICY_ORIGIN, BUILTIN_POLICY_TOML};

/// The approver spec that means "the code owners of the changed files".
pub(crate) const CODEOWNERS_APPROVER: &str = "codeowners";

/// The rule id of a decision on a command the judge cannot see through.
pub const UNSEEN_COMMAND_RULE: &str = "builtin:unseen-command";

/// How many files or command parts an explanation names before summarising the rest.
const EXPLAIN_LIMIT: usize = 3;

/// Past this many matching parts, explanations do not look for the smallest ones.
const MINIMAL_PARTS_LIMIT: usize = 64;

/// A parsed, compiled `.flightdeck/policy.toml`. Immutable and `Send + Sync`: parse it
/// once and share it (behind an `Arc`); deciding never fails.
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) origin: String,
    pub(crate) hash: String,
    pub(crate) allow_self_approval: bool,
    /// Whether an identity that resolves to no configured person may approve.
    pub(crate) allow_unknown_approvers: bool,
    /// Whether a template may turn the sandbox off (`runtime = "local-unsandboxed"`).
    pub(crate) allow_unsandboxed: bool,
    /// Default verdict per [`ActionKind::index`].
    pub(crate) defaults: [Verdict; 4],
    pub(crate) classes: ClassTable,
    pub(crate) rules: Vec<Rule>,
    /// Rule indices per [`ActionKind::index`], in file order.
    pub(crate) rules_by_kind: [Vec<usize>; 4],
    /// Every rule's `paths` globs in one set, so a path is matched once per decision.
    pub(crate) path_set: GlobSet,
    /// For each glob of `path_set`: (rule index, index into the rule's `paths`).
    pub(crate) path_globs: Vec<(usize, usize)>,
    /// Every command rule's patterns, indexed for matching many units.
    pub(crate) command_index: CommandIndex,
}

/// The command patterns of all command rules, indexed by the byte a matching unit must
/// start with, so each unit is only tried against patterns that can match it.
#[derive(Debug, Clone, Default)]
pub(crate) struct CommandIndex {
    /// (rule, pattern) pairs by first byte; 256 entries once built.
    by_first_byte: Vec<Vec<(usize, usize)>>,
    /// Patterns starting with `*`, tried against every unit.
    floating: Vec<(usize, usize)>,
}

impl CommandIndex {
    pub(crate) fn build(rules: &[Rule]) -> CommandIndex {
        let mut index = CommandIndex {
            by_first_byte: vec![Vec::new(); 256],
            floating: Vec::new(),
        };
        for (rule_index, rule) in rules.iter().enumerate() {
            for (pattern_index, pattern) in rule.command_matches.iter().enumerate() {
                let slot = match pattern.first_byte() {
                    Some(byte) => index.by_first_byte.get_mut(usize::from(byte)),
                    None => Some(&mut index.floating),
                };
                if let Some(slot) = slot {
                    slot.push((rule_index, pattern_index));
                }
            }
        }
        index
    }

    /// The (rule, pattern) pairs that may match `unit`.
    fn candidates<'a>(&'a self, unit: &str) -> impl Iterator<Item = &'a (usize, usize)> {
        let anchored = unit
            .as_bytes()
            .first()
            .and_then(|&byte| self.by_first_byte.get(usize::from(byte)))
            .map_or(&[][..], Vec::as_slice);
        anchored.iter().chain(&self.floating)
    }
}

/// One `[[rule]]`, validated.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub(crate) id: String,
    pub(crate) verdict: Verdict,
    pub(crate) tier: Tier,
    pub(crate) approvals: u32,
    pub(crate) approvers: Vec<String>,
    pub(crate) expires_after_seconds: Option<u64>,
    pub(crate) changes_only: Option<ClassCondition>,
    pub(crate) changes_any: Option<ClassCondition>,
    pub(crate) paths: Vec<String>,
    pub(crate) command_matches: Vec<CommandPattern>,
    pub(crate) files_changed_over: Option<u64>,
}

/// `changes_only` / `changes_any`: the classes as a mask, and as written.
#[derive(Debug, Clone)]
pub(crate) struct ClassCondition {
    pub(crate) mask: ClassMask,
    pub(crate) names: Vec<String>,
}

/// A rule that matched, why, and what triggered it.
struct Hit {
    rule: usize,
    reason: String,
    triggered: Vec<String>,
}

/// The action's default taking part in a decision: why, and what it applies to.
struct Fallback {
    reason: String,
    triggered: Vec<String>,
}

/// One changed file as the rules see it.
struct FileFacts {
    /// Normalised path (after the change).
    path: String,
    /// Classes of each touched path (the path, and the old path of a rename).
    masks: Vec<ClassMask>,
    /// (rule, pattern) pairs whose `paths` globs match a touched path.
    path_hits: Vec<(usize, usize)>,
}

impl Policy {
    /// Parse and compile a policy. `origin` names the source in errors (usually the file
    /// path). Unknown keys, unknown classes and conditions that do not fit a rule's action
    /// are errors: a typo must not silently weaken a policy.
    pub fn parse(source: &str, origin: &str) -> Result<Policy, PolicyError> {
        parse::parse(source, origin)
    }

    /// The policy that applies when a repository has none ([`BUILTIN_POLICY_TOML`]),
    /// parsed once per process.
    pub fn builtin() -> Policy {
        static BUILTIN: OnceLock<Policy> = OnceLock::new();
        BUILTIN
            .get_or_init(|| {
                // A unit test proves the built-in source parses; should it ever not, fail
                // closed rather than panic.
                Policy::parse(BUILTIN_POLICY_TOML, BUILTIN_POLICY_ORIGIN)
                    .unwrap_or_else(|_| Policy::deny_everything())
            })
            .clone()
    }

    fn deny_everything() -> Policy {
        Policy {
            origin: BUILTIN_POLICY_ORIGIN.to_owned(),
            hash: parse::source_hash(""),
            allow_self_approval: false,
            allow_unknown_approvers: false,
            allow_unsandboxed: false,
            defaults: [Verdict::Deny; 4],
            classes: ClassTable::source_only(),
            rules: Vec::new(),
            rules_by_kind: Default::default(),
            path_set: GlobSet::empty(),
            path_globs: Vec::new(),
            command_index: CommandIndex::default(),
        }
    }

    /// `sha256:<64 hex>` of the exact source bytes; recorded with every decision.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The name the source was parsed under.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Whether a mission's requester may approve its own gates.
    pub fn allow_self_approval(&self) -> bool {
        self.allow_self_approval
    }

    /// Whether an identity that resolves to no person of the installation's `[people]`
    /// may approve gates (`allow_unknown_approvers`, default false). Has no effect while
    /// no person is configured: then every identity is its own person.
    pub fn allow_unknown_approvers(&self) -> bool {
        self.allow_unknown_approvers
    }

    /// Whether a mission may run its commands without the sandbox (`runtime =
    /// "local-unsandboxed"`); `allow_unsandboxed = false` forbids it.
    pub fn allow_unsandboxed(&self) -> bool {
        self.allow_unsandboxed
    }

    /// The verdict when no rule matches an action of this kind.
    pub fn default_verdict(&self, kind: ActionKind) -> Verdict {
        self.defaults
            .get(kind.index())
            .copied()
            .unwrap_or(Verdict::Deny)
    }

    /// The ids of all rules, in file order.
    pub fn rule_ids(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|rule| rule.id.as_str())
    }

    /// Every class name: the built-ins, then those defined in `[classes]`.
    pub fn class_names(&self) -> impl Iterator<Item = &str> {
        self.classes.names().iter().map(String::as_str)
    }

    /// The classes of a repo-relative path. A path can be in several; every path in none
    /// of docs/tests/dependencies/migrations/infra/ci is `source`.
    pub fn classes_of(&self, path: &str) -> Vec<&str> {
        let path = paths::normalize_lenient(path);
        let mask = self.classes.mask_of(&path, &mut Vec::new());
        self.classes.names_in(mask).collect()
    }

    /// Decide an action. Deny beats approve beats allow across all matching rules; when
    /// no rule matches, the `[defaults]` entry for the action applies.
    pub fn decide(&self, action: &Action<'_>) -> Decision {
        match *action {
            Action::Command { command } => self.decide_command(command),
            Action::Write { path } => self.decide_write(path),
            Action::Publish { changes } => self.decide_changes(ActionKind::Publish, changes),
            Action::Merge { changes } => self.decide_changes(ActionKind::Merge, changes),
        }
    }

    fn rules_for(&self, kind: ActionKind) -> &[usize] {
        self.rules_by_kind
            .get(kind.index())
            .map_or(&[], Vec::as_slice)
    }

    fn rule(&self, index: usize) -> Option<&Rule> {
        self.rules.get(index)
    }

    fn decide_command(&self, command_line: &str) -> Decision {
        let view = command::analyze(command_line);
        // Every (rule, unit, pattern) that matches, sorted so that each rule's matches
        // form one run, in unit order, smallest pattern index first.
        let mut matches: Vec<(usize, usize, usize)> = Vec::new();
        for (unit_index, unit) in view.units.iter().enumerate() {
            for &(rule, pattern) in self.command_index.candidates(unit) {
                let matched = self
                    .rule(rule)
                    .and_then(|rule| rule.command_matches.get(pattern))
                    .is_some_and(|compiled| compiled.matches(unit));
                if matched {
                    matches.push((rule, unit_index, pattern));
                }
            }
        }
        matches.sort_unstable();

        let mut hits = Vec::new();
        let mut covered = vec![false; view.leaves.len()];
        for &index in self.rules_for(ActionKind::Command) {
            let Some(rule) = self.rule(index) else {
                continue;
            };
            let unconditional = rule.command_matches.is_empty();
            let start = matches.partition_point(|&(r, _, _)| r < index);
            let end = matches.partition_point(|&(r, _, _)| r <= index);
            let rule_matches = matches.get(start..end).unwrap_or_default();
            // Sorted by unit then pattern: the first match of a unit is its first pattern.
            let pattern_of = |unit: usize| {
                let at = rule_matches.partition_point(|&(_, u, _)| u < unit);
                rule_matches
                    .get(at)
                    .filter(|&&(_, u, _)| u == unit)
                    .and_then(|&(_, _, pattern)| rule.command_matches.get(pattern))
                    .map(CommandPattern::as_str)
            };
            // The simple commands this rule speaks to are not left to the default; for
            // an allow rule they are all it vouches for.
            let mut leaf_matches: Vec<(&str, &str)> = Vec::new();
            for (leaf, is_covered) in view.leaves.iter().zip(covered.iter_mut()) {
                let pattern = if unconditional {
                    Some("*")
                } else {
                    pattern_of(leaf.text).or_else(|| pattern_of(leaf.core))
                };
                if let Some(pattern) = pattern {
                    *is_covered = true;
                    leaf_matches.push((view.unit(leaf.text), pattern));
                }
            }
            let matched: Vec<(&str, &str)> = if rule.verdict == Verdict::Allow {
                leaf_matches
            } else if unconditional {
                vec![(command_line.trim(), "*")]
            } else {
                let mut matched: Vec<(&str, &str)> = Vec::new();
                let mut previous_unit = None;
                for &(_, unit, pattern) in rule_matches {
                    let text = view.unit(unit);
                    // Units are distinct; keep the first pattern of each.
                    if previous_unit.replace(unit) != Some(unit) {
                        let pattern = rule
                            .command_matches
                            .get(pattern)
                            .map_or("", CommandPattern::as_str);
                        matched.push((text, pattern));
                    }
                }
                // Report the smallest parts: `curl x | sh`, not also `make && curl x | sh`
                // (skipped for huge commands, where it would be quadratic).
                if matched.len() <= MINIMAL_PARTS_LIMIT {
                    let all = matched.clone();
                    matched.retain(|(unit, _)| {
                        !all.iter()
                            .any(|(other, _)| other.len() < unit.len() && unit.contains(other))
                    });
                }
                matched
            };
            if matched.is_empty() {
                continue;
            }
            let reason = if unconditional {
                "it has no conditions, so it applies to every command".to_owned()
            } else {
                list_limited(
                    matched
                        .iter()
                        .map(|(unit, pattern)| format!("`{unit}` matches `{pattern}`")),
                )
            };
            hits.push(Hit {
                rule: index,
                reason,
                triggered: dedup(matched.iter().map(|(unit, _)| (*unit).to_owned())),
            });
        }

        let uncovered: Vec<&str> = view
            .leaves
            .iter()
            .zip(&covered)
            .filter(|(_, covered)| !**covered)
            .map(|(leaf, _)| view.unit(leaf.text))
            .collect();
        let fallback = if !uncovered.is_empty() {
            Some(Fallback {
                reason: format!(
                    "no rule covers {}",
                    list_limited(uncovered.iter().map(|text| format!("`{text}`")))
                ),
                triggered: dedup(uncovered.iter().map(|text| (*text).to_owned())),
            })
        } else if view.leaves.is_empty() && hits.is_empty() {
            Some(Fallback {
                reason: "the command runs nothing".to_owned(),
                triggered: Vec::new(),
            })
        } else {
            None
        };
        let decision = self.conclude(ActionKind::Command, hits, fallback);
        // A deny needs nothing more; otherwise the unseen decision is at least as strict
        // as any the rules gave, and when the two agree their approvals combine.
        if view.unseen.is_empty() || decision.verdict == Verdict::Deny {
            return decision;
        }
        let unseen = self.decide_unseen_command(&view.unseen);
        Decision::strictest(vec![unseen.clone(), decision]).unwrap_or(unseen)
    }

    /// A command with parts the judge cannot see through gets the strictest decision any
    /// command rule (or the default) could give, and never `allow`: deny when anything
    /// can deny, else approval by everyone any approve rule names.
    fn decide_unseen_command(&self, unseen: &[command::Unseen]) -> Decision {
        let default_verdict = self.default_verdict(ActionKind::Command);
        let rules: Vec<&Rule> = self
            .rules_for(ActionKind::Command)
            .iter()
            .filter_map(|&index| self.rule(index))
            .collect();
        let verdict = rules
            .iter()
            .map(|rule| rule.verdict)
            .chain([default_verdict, Verdict::Approve])
            .max()
            .unwrap_or(Verdict::Deny);
        let mut rule_ids = vec![UNSEEN_COMMAND_RULE.to_owned()];
        let mut tier: Option<Tier> = None;
        let mut approvals = 0u32;
        let mut approvers: Vec<String> = Vec::new();
        let mut expires: Option<u64> = None;
        let mut sources = Vec::new();
        for rule in rules.iter().filter(|rule| rule.verdict == verdict) {
            rule_ids.push(rule.id.clone());
            tier = tier.max(Some(rule.tier));
            approvals = approvals.max(rule.approvals);
            for approver in &rule.approvers {
                push_unique(&mut approvers, approver);
            }
            if let Some(seconds) = rule.expires_after_seconds {
                expires = Some(expires.map_or(seconds, |current| current.min(seconds)));
            }
            sources.push(format!("rule `{}` ({verdict})", rule.id));
        }
        if default_verdict == verdict || sources.is_empty() {
            // The default decides too; or nothing could require more than `allow`, and an
            // unseen command still is not allowed unseen.
            tier = tier.max(Some(if default_verdict == verdict {
                Tier::default_for(verdict)
            } else {
                Tier::High
            }));
            if verdict == Verdict::Approve {
                approvals = approvals.max(1);
                push_unique(&mut approvers, CODEOWNERS_APPROVER);
            }
            sources.push(if default_verdict == verdict {
                format!("the default for command ({default_verdict})")
            } else {
                "an approval, since an unseen command is never allowed".to_owned()
            });
        }
        if verdict != Verdict::Approve {
            approvals = 0;
            approvers.clear();
            expires = None;
        }
        let tier = tier.unwrap_or(Tier::High);
        let mut explanation = verdict_head(verdict, tier, approvals, &approvers, expires);
        let _ = write!(
            explanation,
            "): the policy cannot see what {} runs, so the strictest decision any command rule could give applies: {} ({UNSEEN_COMMAND_RULE}); command rules are a policy, the sandbox is the boundary",
            list_limited(
                unseen
                    .iter()
                    .map(|unseen| format!("`{}` ({})", unseen.part.trim(), unseen.why))
            ),
            sources.join(", ")
        );
        Decision {
            verdict,
            tier,
            rule_ids,
            approvals,
            approvers,
            expires_after_seconds: expires,
            triggered_by: dedup(unseen.iter().map(|unseen| unseen.part.trim().to_owned())),
            explanation,
            policy_hash: self.hash.clone(),
        }
    }

    fn decide_write(&self, raw_path: &str) -> Decision {
        let path = match paths::normalize_for_write(raw_path) {
            Ok(path) => path,
            Err(problem) => return self.refuse_write(raw_path, problem),
        };
        let mut scratch = Vec::new();
        let mask = self.classes.mask_of(&path, &mut scratch);
        let path_hits = self.path_hits(&path, &mut scratch);
        let mut hits = Vec::new();
        for &index in self.rules_for(ActionKind::Write) {
            let Some(rule) = self.rule(index) else {
                continue;
            };
            let mut reasons = Vec::new();
            if let Some(condition) = &rule.changes_only {
                if mask & condition.mask == 0 {
                    continue;
                }
                reasons.push(format!(
                    "`{path}` is in {}",
                    self.class_list(mask & condition.mask)
                ));
            }
            if let Some(condition) = &rule.changes_any {
                if mask & condition.mask == 0 {
                    continue;
                }
                reasons.push(format!(
                    "`{path}` is in {}",
                    self.class_list(mask & condition.mask)
                ));
            }
            if !rule.paths.is_empty() {
                let Some(&(_, pattern)) = path_hits.iter().find(|(rule, _)| *rule == index) else {
                    continue;
                };
                reasons.push(format!(
                    "`{path}` matches `{}`",
                    pattern_text(rule, pattern)
                ));
            }
            if reasons.is_empty() {
                reasons.push("it has no conditions, so it applies to every write".to_owned());
            }
            hits.push(Hit {
                rule: index,
                reason: reasons.join(" and "),
                triggered: vec![path.clone()],
            });
        }
        let fallback = hits.is_empty().then(|| Fallback {
            reason: format!("no rule matched `{path}`"),
            triggered: vec![path.clone()],
        });
        self.conclude(ActionKind::Write, hits, fallback)
    }

    fn refuse_write(&self, raw_path: &str, problem: PathProblem) -> Decision {
        let (rule_id, why) = match problem {
            PathProblem::Absolute => (
                "builtin:outside-workspace",
                "is an absolute path, outside the workspace",
            ),
            PathProblem::Escapes => (
                "builtin:outside-workspace",
                "climbs out of the workspace with `..`",
            ),
            PathProblem::GitDir => (
                "builtin:git-dir",
                "is inside a `.git` directory, whose hooks and config can run code",
            ),
            PathProblem::Invalid => (
                "builtin:invalid-path",
                "does not name a file in the workspace",
            ),
        };
        Decision {
            verdict: Verdict::Deny,
            tier: Tier::Critical,
            rule_ids: vec![rule_id.to_owned()],
            approvals: 0,
            approvers: Vec::new(),
            expires_after_seconds: None,
            triggered_by: vec![raw_path.to_owned()],
            explanation: format!(
                "deny (tier critical): `{}` {why} ({rule_id}); no rule can allow this",
                raw_path.escape_debug()
            ),
            policy_hash: self.hash.clone(),
        }
    }

    fn path_hits(&self, path: &str, scratch: &mut Vec<usize>) -> Vec<(usize, usize)> {
        if self.path_globs.is_empty() {
            return Vec::new();
        }
        self.path_set.matches_into(path, scratch);
        scratch
            .iter()
            .filter_map(|&glob| self.path_globs.get(glob).copied())
            .collect()
    }

    fn decide_changes(&self, kind: ActionKind, changes: &[ChangedFile]) -> Decision {
        let mut scratch = Vec::new();
        let facts: Vec<FileFacts> = changes
            .iter()
            .map(|file| {
                let mut masks = Vec::with_capacity(1);
                let mut path_hits = Vec::new();
                for touched in file.touched_paths() {
                    let touched = paths::normalize_lenient(touched);
                    masks.push(self.classes.mask_of(&touched, &mut scratch));
                    path_hits.extend(self.path_hits(&touched, &mut scratch));
                }
                FileFacts {
                    path: paths::normalize_lenient(&file.path).into_owned(),
                    masks,
                    path_hits,
                }
            })
            .collect();
        let all_files = || {
            facts
                .iter()
                .map(|file| file.path.clone())
                .collect::<Vec<_>>()
        };

        let mut hits = Vec::new();
        for &index in self.rules_for(kind) {
            let Some(rule) = self.rule(index) else {
                continue;
            };
            let mut reasons = Vec::new();
            let mut triggered: Vec<String> = Vec::new();
            if let Some(limit) = rule.files_changed_over {
                if facts.len() as u64 <= limit {
                    continue;
                }
                reasons.push(format!("{} files changed (more than {limit})", facts.len()));
            }
            if let Some(condition) = &rule.changes_only {
                let all_in = !facts.is_empty()
                    && facts
                        .iter()
                        .all(|file| file.masks.iter().all(|mask| mask & condition.mask != 0));
                if !all_in {
                    continue;
                }
                reasons.push(format!(
                    "every changed file is in {}",
                    condition.names.join(" or ")
                ));
                triggered.extend(all_files());
            }
            if let Some(condition) = &rule.changes_any {
                let matching: Vec<(&FileFacts, ClassMask)> = facts
                    .iter()
                    .filter_map(|file| {
                        let mask =
                            file.masks.iter().fold(0, |acc, mask| acc | mask) & condition.mask;
                        (mask != 0).then_some((file, mask))
                    })
                    .collect();
                if matching.is_empty() {
                    continue;
                }
                reasons.push(list_limited(matching.iter().map(|(file, mask)| {
                    format!("`{}` is in {}", file.path, self.class_list(*mask))
                })));
                triggered.extend(matching.iter().map(|(file, _)| file.path.clone()));
            }
            if !rule.paths.is_empty() {
                let matching: Vec<(&FileFacts, usize)> = facts
                    .iter()
                    .filter_map(|file| {
                        file.path_hits
                            .iter()
                            .find(|(rule, _)| *rule == index)
                            .map(|&(_, pattern)| (file, pattern))
                    })
                    .collect();
                if matching.is_empty() {
                    continue;
                }
                reasons.push(list_limited(matching.iter().map(|(file, pattern)| {
                    format!("`{}` matches `{}`", file.path, pattern_text(rule, *pattern))
                })));
                triggered.extend(matching.iter().map(|(file, _)| file.path.clone()));
            }
            if reasons.is_empty() {
                reasons.push(format!(
                    "it has no conditions, so it applies to every {kind}"
                ));
            }
            if triggered.is_empty() {
                triggered = all_files();
            }
            hits.push(Hit {
                rule: index,
                reason: reasons.join(" and "),
                triggered: dedup(triggered),
            });
        }
        let fallback = hits.is_empty().then(|| Fallback {
            reason: if facts.is_empty() {
                "the change set is empty and no rule matched".to_owned()
            } else {
                "no rule matched".to_owned()
            },
            triggered: all_files(),
        });
        self.conclude(kind, hits, fallback)
    }

    /// Combine the matching rules (and the default, when it takes part) into a decision.
    fn conclude(&self, kind: ActionKind, hits: Vec<Hit>, fallback: Option<Fallback>) -> Decision {
        let default_verdict = self.default_verdict(kind);
        let rule_verdict = |hit: &Hit| self.rule(hit.rule).map_or(Verdict::Deny, |r| r.verdict);
        let strictest_rule = hits.iter().map(rule_verdict).max();
        let verdict = match (&fallback, strictest_rule) {
            (Some(_), Some(verdict)) => verdict.max(default_verdict),
            (None, Some(verdict)) => verdict,
            (_, None) => default_verdict,
        };
        let default_decides =
            fallback.is_some() && default_verdict == verdict || strictest_rule.is_none();

        let mut tier: Option<Tier> = None;
        let mut approvals = 0u32;
        let mut approvers: Vec<String> = Vec::new();
        let mut expires: Option<u64> = None;
        let mut rule_ids = Vec::new();
        let mut triggered = Vec::new();
        let mut reasons = Vec::new();
        let mut overridden = Vec::new();
        for hit in &hits {
            let Some(rule) = self.rule(hit.rule) else {
                continue;
            };
            if rule.verdict != verdict {
                overridden.push(format!("`{}` ({})", rule.id, rule.verdict));
                continue;
            }
            tier = tier.max(Some(rule.tier));
            if verdict == Verdict::Approve {
                approvals = approvals.max(rule.approvals);
                for approver in &rule.approvers {
                    push_unique(&mut approvers, approver);
                }
                if let Some(seconds) = rule.expires_after_seconds {
                    expires = Some(expires.map_or(seconds, |current| current.min(seconds)));
                }
            }
            rule_ids.push(rule.id.clone());
            triggered.extend(hit.triggered.iter().cloned());
            reasons.push(format!("rule `{}` matched: {}", rule.id, hit.reason));
        }
        if default_decides {
            tier = tier.max(Some(Tier::default_for(verdict)));
            if verdict == Verdict::Approve {
                approvals = approvals.max(1);
                push_unique(&mut approvers, CODEOWNERS_APPROVER);
            }
            let reason = fallback
                .as_ref()
                .map_or("no rule matched", |fallback| fallback.reason.as_str());
            reasons.push(format!(
                "{reason}, so the default for {kind} applies ({default_verdict})"
            ));
            if let Some(fallback) = &fallback {
                triggered.extend(fallback.triggered.iter().cloned());
            }
        }
        let tier = tier.unwrap_or_else(|| Tier::default_for(verdict));

        let mut explanation = verdict_head(verdict, tier, approvals, &approvers, expires);
        let _ = write!(explanation, "): {}", reasons.join("; "));
        if !overridden.is_empty() {
            let _ = write!(explanation, "; overrides {}", overridden.join(", "));
        }

        Decision {
            verdict,
            tier,
            rule_ids,
            approvals,
            approvers,
            expires_after_seconds: expires,
            triggered_by: dedup(triggered),
            explanation,
            policy_hash: self.hash.clone(),
        }
    }

    /// "class docs" / "classes docs and tests".
    fn class_list(&self, mask: ClassMask) -> String {
        let names: Vec<&str> = self.classes.names_in(mask).collect();
        if names.len() == 1 {
            format!("class {}", names.join(""))
        } else {
            format!("classes {}", names.join(" and "))
        }
    }
}

fn pattern_text(rule: &Rule, pattern: usize) -> &str {
    rule.paths.get(pattern).map_or("?", String::as_str)
}

fn push_unique(list: &mut Vec<String>, item: &str) {
    if !list.iter().any(|known| known == item) {
        list.push(item.to_owned());
    }
}

/// Drop repeated items, keeping the first of each, in order.
fn dedup(items: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    items
        .into_iter()
        .filter(|item| seen.insert(item.clone()))
        .collect()
}

/// Join the first few items with ", " and summarise the rest.
fn list_limited(items: impl Iterator<Item = String>) -> String {
    let mut shown = Vec::new();
    let mut more = 0usize;
    for item in items {
        if shown.len() < EXPLAIN_LIMIT {
            shown.push(item);
        } else {
            more += 1;
        }
    }
    let mut text = shown.join(", ");
    if more > 0 {
        let _ = write!(text, " and {more} more");
    }
    text
}

/// `86400` -> `1d`, `5400` -> `90m`: the largest unit that divides evenly.
/// An explanation's opening, left open for its reasons: `approve (tier high; 1 approval from
/// @alice; approvals expire after 2h`.
fn verdict_head(
    verdict: Verdict,
    tier: Tier,
    approvals: u32,
    approvers: &[String],
    expires: Option<u64>,
) -> String {
    let mut head = format!("{verdict} (tier {tier}");
    if verdict == Verdict::Approve {
        let plural = if approvals == 1 { "" } else { "s" };
        let _ = write!(
            head,
            "; {approvals} approval{plural} from {}",
            approvers.join(" or ")
        );
        if let Some(seconds) = expires {
            let _ = write!(
                head,
                "; approvals expire after {}",
                format_duration(seconds)
            );
        }
    }
    head
}

pub(crate) fn format_duration(seconds: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(604_800, "w"), (86_400, "d"), (3_600, "h"), (60, "m")];
    for (size, unit) in UNITS {
        if seconds >= size && seconds.checked_rem(size) == Some(0) {
            return format!("{}{unit}", seconds / size);
        }
    }
    format!("{seconds}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_policy_parses() {
        let policy = Policy::parse(BUILTIN_POLICY_TOML, BUILTIN_POLICY_ORIGIN);
        assert!(policy.is_ok(), "{}", policy.unwrap_err());
        let builtin = Policy::builtin();
        assert!(!builtin.rules.is_empty());
        assert_eq!(builtin.hash(), parse::source_hash(BUILTIN_POLICY_TOML));
    }

    #[test]
    fn fail_closed_fallback_denies_everything() {
        let policy = Policy::deny_everything();
        let decision = policy.decide(&Action::Command { command: "ls" });
        assert_eq!(decision.verdict, Verdict::Deny);
        assert_eq!(policy.classes_of("README.md"), ["source"]);
    }

    #[test]
    fn durations_are_formatted_in_the_largest_even_unit() {
        assert_eq!(format_duration(86_400), "1d");
        assert_eq!(format_duration(5_400), "90m");
        assert_eq!(format_duration(1_209_600), "2w");
        assert_eq!(format_duration(45), "45s");
    }
}
