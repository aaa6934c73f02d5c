//! From policy TOML to a compiled [`Policy`], with errors that point at the key.

use std::collections::BTreeMap;
use std::ops::Range;

use globset::GlobSetBuilder;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::classes::{mask_bit, ClassTable, MAX_CLASSES};
use crate::command::CommandPattern;
use crate::error::{Location, PolicyError, PolicyErrorKind};
use crate::glob::{self, Flavor};
use crate::policy::{ClassCondition, CommandIndex, Policy, Rule, CODEOWNERS_APPROVER};
use crate::types::{ActionKind, Tier, Verdict};

/// Defaults when `[defaults]` (or one of its keys) is absent: commands and writes run,
/// publishing and merging wait for one code owner.
const DEFAULT_VERDICTS: [Verdict; 4] = [
    Verdict::Allow,
    Verdict::Allow,
    Verdict::Approve,
    Verdict::Approve,
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    allow_self_approval: Option<bool>,
    allow_unknown_approvers: Option<bool>,
    allow_unsandboxed: Option<bool>,
    classes: Option<Spanned<BTreeMap<String, SpannedList>>>,
    defaults: Option<RawDefaults>,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    command: Option<Spanned<String>>,
    write: Option<Spanned<String>>,
    publish: Option<Spanned<String>>,
    merge: Option<Spanned<String>>,
}

type SpannedList = Spanned<Vec<Spanned<String>>>;

/// A validated rule, its action, and its `paths` (compiled into the policy-wide set).
type BuiltRule = (Rule, ActionKind, Option<Vec<Spanned<String>>>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Option<Spanned<String>>,
    action: Option<Spanned<String>>,
    decision: Option<Spanned<String>>,
    tier: Option<Spanned<String>>,
    approvals: Option<Spanned<i64>>,
    approvers: Option<SpannedList>,
    expires_after: Option<Spanned<String>>,
    changes_only: Option<SpannedList>,
    changes_any: Option<SpannedList>,
    paths: Option<SpannedList>,
    command_matches: Option<SpannedList>,
    files_changed_over: Option<Spanned<i64>>,
}

/// Fail with `kind`; keeps `return fail(Kind { .. })` as short as a plain `Err`.
fn fail<T>(kind: PolicyErrorKind) -> Result<T, PolicyError> {
    Err(kind.into())
}

/// `sha256:<hex>` of the source bytes.
pub(crate) fn source_hash(source: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(source.as_bytes())))
}

/// The source being parsed, for locating errors.
struct Source<'a> {
    text: &'a str,
    origin: &'a str,
}

impl Source<'_> {
    fn at(&self, span: &Range<usize>) -> Location {
        Location::at(self.origin, self.text, span.start)
    }
}

pub(crate) fn parse(text: &str, origin: &str) -> Result<Policy, PolicyError> {
    let src = Source { text, origin };
    let raw: RawPolicy = toml::from_str(text).map_err(|error| toml_error(&src, &error))?;

    let classes = build_classes(&src, raw.classes)?;
    let defaults = build_defaults(&src, raw.defaults)?;

    let mut rules = Vec::with_capacity(raw.rule.len());
    let mut rules_by_kind: [Vec<usize>; 4] = Default::default();
    let mut first_line_of_id: BTreeMap<String, usize> = BTreeMap::new();
    let mut path_set = GlobSetBuilder::new();
    let mut path_globs = Vec::new();
    for (position, raw_rule) in raw.rule.into_iter().enumerate() {
        let index = rules.len();
        let (rule, kind, path_list) =
            build_rule(&src, position, raw_rule, &classes, &mut first_line_of_id)?;
        if let Some(list) = path_list {
            let table = format!("rule `{}`", rule.id);
            for (pattern_index, pattern) in list.iter().enumerate() {
                let globs = glob::compile(pattern.get_ref(), Flavor::Policy).map_err(|reason| {
                    PolicyErrorKind::InvalidGlob {
                        at: src.at(&pattern.span()),
                        key: "paths".to_owned(),
                        table: table.clone(),
                        glob: pattern.get_ref().clone(),
                        reason,
                    }
                })?;
                for glob in globs {
                    path_set.add(glob);
                    path_globs.push((index, pattern_index));
                }
            }
        }
        if let Some(list) = rules_by_kind.get_mut(kind.index()) {
            list.push(index);
        }
        rules.push(rule);
    }
    let path_set = path_set
        .build()
        .map_err(|error| PolicyErrorKind::InvalidGlob {
            at: Location::at(origin, text, 0),
            key: "paths".to_owned(),
            table: "the policy".to_owned(),
            glob: error.glob().unwrap_or_default().to_owned(),
            reason: error.kind().to_string().to_lowercase(),
        })?;

    let command_index = CommandIndex::build(&rules);
    Ok(Policy {
        origin: origin.to_owned(),
        hash: source_hash(text),
        allow_self_approval: raw.allow_self_approval.unwrap_or(false),
        allow_unknown_approvers: raw.allow_unknown_approvers.unwrap_or(false),
        allow_unsandboxed: raw.allow_unsandboxed.unwrap_or(true),
        defaults,
        classes,
        rules,
        rules_by_kind,
        path_set,
        path_globs,
        command_index,
    })
}

fn build_classes(
    src: &Source<'_>,
    raw: Option<Spanned<BTreeMap<String, SpannedList>>>,
) -> Result<ClassTable, PolicyError> {
    let Some(raw) = raw else {
        return ClassTable::build(&[]).or_else(|error| {
            fail(PolicyErrorKind::InvalidGlob {
                at: src.at(&(0..0)),
                key: "classes".to_owned(),
                table: "the built-in classes".to_owned(),
                glob: String::new(),
                reason: error.reason,
            })
        });
    };
    let table_span = raw.span();
    let mut extensions: Vec<(String, Vec<String>)> = Vec::new();
    for (name, patterns) in raw.into_inner() {
        let list_span = patterns.span();
        if name.trim().is_empty() {
            return fail(PolicyErrorKind::InvalidValue {
                at: src.at(&list_span),
                key: "classes".to_owned(),
                table: "[classes]".to_owned(),
                reason: "a class name must not be empty".to_owned(),
            });
        }
        let patterns = patterns.into_inner();
        if patterns.is_empty() {
            return fail(PolicyErrorKind::InvalidValue {
                at: src.at(&list_span),
                key: name,
                table: "[classes]".to_owned(),
                reason: "the list of globs must not be empty".to_owned(),
            });
        }
        for pattern in &patterns {
            glob::compile(pattern.get_ref(), Flavor::Policy).map_err(|reason| {
                PolicyErrorKind::InvalidGlob {
                    at: src.at(&pattern.span()),
                    key: name.clone(),
                    table: "[classes]".to_owned(),
                    glob: pattern.get_ref().clone(),
                    reason,
                }
            })?;
        }
        extensions.push((
            name,
            patterns.into_iter().map(Spanned::into_inner).collect(),
        ));
    }
    // Patterns were checked one by one above, so this can only fail on the built-ins,
    // which a unit test proves compile.
    let table = ClassTable::build(&extensions).map_err(|error| PolicyErrorKind::InvalidGlob {
        at: src.at(&table_span),
        key: "classes".to_owned(),
        table: "[classes]".to_owned(),
        glob: String::new(),
        reason: error.reason,
    })?;
    if table.len() > MAX_CLASSES {
        return fail(PolicyErrorKind::TooManyClasses {
            at: src.at(&table_span),
            count: table.len(),
            max: MAX_CLASSES,
        });
    }
    Ok(table)
}

fn build_defaults(src: &Source<'_>, raw: Option<RawDefaults>) -> Result<[Verdict; 4], PolicyError> {
    let mut defaults = DEFAULT_VERDICTS;
    let Some(raw) = raw else {
        return Ok(defaults);
    };
    let entries = [
        (ActionKind::Command, raw.command),
        (ActionKind::Write, raw.write),
        (ActionKind::Publish, raw.publish),
        (ActionKind::Merge, raw.merge),
    ];
    for (kind, value) in entries {
        let Some(value) = value else {
            continue;
        };
        let verdict =
            Verdict::from_name(value.get_ref()).ok_or_else(|| PolicyErrorKind::InvalidValue {
                at: src.at(&value.span()),
                key: kind.as_str().to_owned(),
                table: "[defaults]".to_owned(),
                reason: format!(
                    "`{}` is not a decision (expected allow, approve or deny)",
                    value.get_ref()
                ),
            })?;
        if let Some(slot) = defaults.get_mut(kind.index()) {
            *slot = verdict;
        }
    }
    Ok(defaults)
}

/// Which actions a condition key applies to, for validation and error messages.
fn applies_to(key: &str) -> (&'static [ActionKind], &'static str) {
    match key {
        "command_matches" => (&[ActionKind::Command], "command rules"),
        "files_changed_over" => (
            &[ActionKind::Publish, ActionKind::Merge],
            "publish and merge rules",
        ),
        _ => (
            &[ActionKind::Write, ActionKind::Publish, ActionKind::Merge],
            "write, publish and merge rules",
        ),
    }
}

fn build_rule(
    src: &Source<'_>,
    position: usize,
    raw: Spanned<RawRule>,
    classes: &ClassTable,
    first_line_of_id: &mut BTreeMap<String, usize>,
) -> Result<BuiltRule, PolicyError> {
    let rule_span = raw.span();
    let rule_at = src.at(&rule_span);
    let raw = raw.into_inner();
    let unnamed = format!("rule #{} (line {})", position + 1, rule_at.line);

    let id = raw.id.ok_or_else(|| PolicyErrorKind::MissingKey {
        at: rule_at.clone(),
        key: "id".to_owned(),
        table: unnamed.clone(),
    })?;
    let id_at = src.at(&id.span());
    let id = id.into_inner();
    let invalid_id = if id.trim().is_empty() {
        Some("a rule id must not be empty")
    } else if id.starts_with("builtin:") {
        Some("ids starting with `builtin:` are reserved for built-in checks")
    } else {
        None
    };
    if let Some(reason) = invalid_id {
        return fail(PolicyErrorKind::InvalidValue {
            at: id_at,
            key: "id".to_owned(),
            table: unnamed,
            reason: reason.to_owned(),
        });
    }
    if let Some(&first_line) = first_line_of_id.get(&id) {
        return fail(PolicyErrorKind::DuplicateRuleId {
            at: id_at,
            id,
            first_line,
        });
    }
    first_line_of_id.insert(id.clone(), id_at.line);
    let table = format!("rule `{id}`");
    let invalid = |span: &Range<usize>, key: &str, reason: String| PolicyErrorKind::InvalidValue {
        at: src.at(span),
        key: key.to_owned(),
        table: table.clone(),
        reason,
    };

    let action = raw.action.ok_or_else(|| PolicyErrorKind::MissingKey {
        at: rule_at.clone(),
        key: "action".to_owned(),
        table: table.clone(),
    })?;
    let kind = ActionKind::from_name(action.get_ref()).ok_or_else(|| {
        invalid(
            &action.span(),
            "action",
            format!(
                "`{}` is not an action (expected command, write, publish or merge)",
                action.get_ref()
            ),
        )
    })?;

    let decision = raw.decision.ok_or_else(|| PolicyErrorKind::MissingKey {
        at: rule_at.clone(),
        key: "decision".to_owned(),
        table: table.clone(),
    })?;
    let verdict = Verdict::from_name(decision.get_ref()).ok_or_else(|| {
        invalid(
            &decision.span(),
            "decision",
            format!(
                "`{}` is not a decision (expected allow, approve or deny)",
                decision.get_ref()
            ),
        )
    })?;

    let tier = match raw.tier {
        None => Tier::default_for(verdict),
        Some(tier) => Tier::from_name(tier.get_ref()).ok_or_else(|| {
            invalid(
                &tier.span(),
                "tier",
                format!(
                    "`{}` is not a tier (expected low, medium, high or critical)",
                    tier.get_ref()
                ),
            )
        })?,
    };

    // Approval settings only make sense on approve rules.
    let only_for_approve = |span: &Range<usize>, key: &str| {
        invalid(
            span,
            key,
            format!("`{key}` only applies to rules with decision = \"approve\""),
        )
    };
    let approvals = match raw.approvals {
        None => 1,
        Some(value) if verdict != Verdict::Approve => {
            return fail(only_for_approve(&value.span(), "approvals"))
        }
        Some(value) => match u32::try_from(*value.get_ref()) {
            Ok(count) if count >= 1 => count,
            _ => {
                return fail(invalid(
                    &value.span(),
                    "approvals",
                    format!("{} is not a positive number of approvals", value.get_ref()),
                ))
            }
        },
    };
    let approvers = match raw.approvers {
        None => vec![CODEOWNERS_APPROVER.to_owned()],
        Some(list) if verdict != Verdict::Approve => {
            return fail(only_for_approve(&list.span(), "approvers"))
        }
        Some(list) => {
            let list = non_empty(list, |span| {
                invalid(span, "approvers", "the list must not be empty".to_owned())
            })?;
            let mut approvers: Vec<String> = Vec::new();
            for approver in list {
                if !is_valid_approver(approver.get_ref()) {
                    return fail(invalid(
                        &approver.span(),
                        "approvers",
                        format!(
                            "`{}` is not an approver (expected \"codeowners\", \"@user\", \"@org/team\" or an email)",
                            approver.get_ref()
                        ),
                    ));
                }
                let approver = approver.into_inner();
                if !approvers.contains(&approver) {
                    approvers.push(approver);
                }
            }
            approvers
        }
    };
    let expires_after_seconds = match raw.expires_after {
        None => None,
        Some(value) if verdict != Verdict::Approve => {
            return fail(only_for_approve(&value.span(), "expires_after"))
        }
        Some(value) => Some(
            parse_duration(value.get_ref())
                .map_err(|reason| invalid(&value.span(), "expires_after", reason))?,
        ),
    };

    // Conditions must fit the action, or the rule could never match.
    let check_fits = |key: &str, span: &Range<usize>| {
        let (kinds, description) = applies_to(key);
        if kinds.contains(&kind) {
            Ok(())
        } else {
            fail(PolicyErrorKind::KeyNotForAction {
                at: src.at(span),
                key: key.to_owned(),
                table: table.clone(),
                action: kind,
                applies_to: description.to_owned(),
            })
        }
    };
    let class_condition =
        |key: &str, list: Option<SpannedList>| -> Result<Option<ClassCondition>, PolicyError> {
            let Some(list) = list else {
                return Ok(None);
            };
            check_fits(key, &list.span())?;
            let list = non_empty(list, |span| {
                invalid(span, key, "the list must not be empty".to_owned())
            })?;
            let mut mask = 0;
            let mut names = Vec::with_capacity(list.len());
            for name in list {
                let Some(class) = classes.index_of(name.get_ref()) else {
                    return fail(PolicyErrorKind::UnknownClass {
                        at: src.at(&name.span()),
                        key: key.to_owned(),
                        table: table.clone(),
                        class: name.get_ref().clone(),
                        known: classes.names().to_vec(),
                    });
                };
                mask |= mask_bit(class);
                names.push(name.into_inner());
            }
            Ok(Some(ClassCondition { mask, names }))
        };
    let changes_only = class_condition("changes_only", raw.changes_only)?;
    let changes_any = class_condition("changes_any", raw.changes_any)?;

    let paths = match raw.paths {
        None => None,
        Some(list) => {
            check_fits("paths", &list.span())?;
            Some(non_empty(list, |span| {
                invalid(span, "paths", "the list must not be empty".to_owned())
            })?)
        }
    };

    let command_matches = match raw.command_matches {
        None => Vec::new(),
        Some(list) => {
            check_fits("command_matches", &list.span())?;
            let list = non_empty(list, |span| {
                invalid(
                    span,
                    "command_matches",
                    "the list must not be empty".to_owned(),
                )
            })?;
            let mut patterns = Vec::with_capacity(list.len());
            for pattern in list {
                let compiled = CommandPattern::new(pattern.get_ref()).ok_or_else(|| {
                    invalid(
                        &pattern.span(),
                        "command_matches",
                        "a pattern must not be empty".to_owned(),
                    )
                })?;
                patterns.push(compiled);
            }
            patterns
        }
    };

    let files_changed_over = match raw.files_changed_over {
        None => None,
        Some(value) => {
            check_fits("files_changed_over", &value.span())?;
            Some(u64::try_from(*value.get_ref()).map_err(|_| {
                invalid(
                    &value.span(),
                    "files_changed_over",
                    format!("{} is not a file count", value.get_ref()),
                )
            })?)
        }
    };

    let rule = Rule {
        id,
        verdict,
        tier,
        approvals: if verdict == Verdict::Approve {
            approvals
        } else {
            0
        },
        approvers: if verdict == Verdict::Approve {
            approvers
        } else {
            Vec::new()
        },
        expires_after_seconds,
        changes_only,
        changes_any,
        paths: paths
            .as_ref()
            .map(|list| list.iter().map(|p| p.get_ref().clone()).collect())
            .unwrap_or_default(),
        command_matches,
        files_changed_over,
    };
    Ok((rule, kind, paths))
}

fn non_empty(
    list: SpannedList,
    error: impl FnOnce(&Range<usize>) -> PolicyErrorKind,
) -> Result<Vec<Spanned<String>>, PolicyError> {
    let span = list.span();
    let list = list.into_inner();
    if list.is_empty() {
        fail(error(&span))
    } else {
        Ok(list)
    }
}

/// `codeowners`, `@user`, `@org/team` or `name@example.com`.
pub(crate) fn is_valid_approver(approver: &str) -> bool {
    if approver == CODEOWNERS_APPROVER {
        return true;
    }
    if approver.is_empty() || approver.chars().any(char::is_whitespace) {
        return false;
    }
    if let Some(handle) = approver.strip_prefix('@') {
        let mut parts = handle.split('/');
        let valid_part =
            |part: Option<&str>| part.is_some_and(|p| !p.is_empty() && !p.contains('@'));
        let first = parts.next();
        return match parts.next() {
            None => valid_part(first),
            Some(team) => valid_part(first) && valid_part(Some(team)) && parts.next().is_none(),
        };
    }
    match approver.split_once('@') {
        Some((local, domain)) => !local.is_empty() && !domain.is_empty() && !domain.contains('@'),
        None => false,
    }
}

/// `30s`, `30m`, `24h`, `7d`, `2w` to seconds.
pub(crate) fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|ch: char| !ch.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit_seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => {
            return Err(format!(
                "`{text}` is not a duration (expected a number and a unit: s, m, h, d or w, as in \"24h\")"
            ))
        }
    };
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (expected a number before the unit)"))?;
    if number == 0 {
        return Err("a duration must be positive".to_owned());
    }
    number
        .checked_mul(unit_seconds)
        .ok_or_else(|| format!("`{text}` is too long"))
}

/// Turn a TOML/serde error into a located policy error naming the key and table.
fn toml_error(src: &Source<'_>, error: &toml::de::Error) -> PolicyErrorKind {
    let offset = error.span().map_or(0, |span| span.start);
    let at = Location::at(src.origin, src.text, offset);
    let message = readable_message(error.message());
    // toml 0.8 gives no message when the text ends where a value should be.
    let message = if message.is_empty() {
        "the file ends where a value is expected (a `key =` with nothing after it?)".to_owned()
    } else {
        message
    };
    let table = table_at(src.text, offset);
    if let Some(rest) = message.strip_prefix("unknown field `") {
        // "unknown field `k`, expected one of `a`, `b`": the key, then every other piece.
        let mut pieces = rest.split('`');
        let key = pieces.next().unwrap_or_default().to_owned();
        let expected = pieces.skip(1).step_by(2).map(str::to_owned).collect();
        return PolicyErrorKind::UnknownKey {
            at,
            key,
            table,
            expected,
        };
    }
    match key_at(src.text, offset) {
        Some(key) if !message.starts_with("TOML parse error") && is_value_error(&message) => {
            PolicyErrorKind::InvalidValue {
                at,
                key,
                table,
                reason: message,
            }
        }
        _ => PolicyErrorKind::Syntax { at, message },
    }
}

/// serde's messages on one line and in TOML's words (`i64` -> an integer).
fn readable_message(message: &str) -> String {
    let message = message.trim().replace('\n', "; ");
    [
        ("expected i64", "expected an integer"),
        ("expected u64", "expected a non-negative integer"),
        ("expected a sequence", "expected an array"),
        ("expected a map", "expected a table"),
        ("expected struct", "expected a table for"),
    ]
    .iter()
    .fold(message, |message, (from, to)| message.replace(from, to))
}

fn is_value_error(message: &str) -> bool {
    message.starts_with("invalid type")
        || message.starts_with("invalid value")
        || message.starts_with("invalid length")
}

/// The key whose value starts at `offset`: the text before `=` on that line.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset)?;
    let line = before.rsplit('\n').next().unwrap_or(before);
    let (key, _) = line.rsplit_once('=')?;
    let key = key.trim().trim_start_matches('{').trim();
    let key = key.rsplit([',', '{']).next().unwrap_or(key).trim();
    let key = key.trim_matches('"').trim_matches('\'');
    (!key.is_empty()).then(|| key.to_owned())
}

/// A description of the table containing `offset`: ``rule `id` `` for a `[[rule]]` with an
/// id, the header otherwise, or "the top level".
fn table_at(text: &str, offset: usize) -> String {
    let before = text.get(..offset).unwrap_or(text);
    let header_start = before
        .match_indices('\n')
        .map(|(index, _)| index + 1)
        .chain(std::iter::once(0))
        .filter(|&start| {
            text.get(start..)
                .is_some_and(|line| line.trim_start().starts_with('['))
        })
        .max();
    let Some(header_start) = header_start else {
        return "the top level".to_owned();
    };
    let rest = text.get(header_start..).unwrap_or_default();
    let mut lines = rest.lines();
    let header = lines.next().unwrap_or_default().trim();
    let header = header.split('#').next().unwrap_or(header).trim();
    if header.starts_with("[[rule]]") {
        for line in lines {
            let line = line.trim();
            if line.starts_with('[') {
                break;
            }
            if let Some(value) = line
                .strip_prefix("id")
                .map(str::trim_start)
                .and_then(|rest| rest.strip_prefix('='))
            {
                let id = value.trim().split('#').next().unwrap_or_default().trim();
                return format!("rule `{}`", id.trim_matches('"').trim_matches('\''));
            }
        }
        let line = Location::at("", text, header_start).line;
        return format!("[[rule]] on line {line}");
    }
    header.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30m"), Ok(1_800));
        assert_eq!(parse_duration("24h"), Ok(86_400));
        assert_eq!(parse_duration("7d"), Ok(604_800));
        assert_eq!(parse_duration("2w"), Ok(1_209_600));
        assert_eq!(parse_duration("45s"), Ok(45));
        for bad in [
            "",
            "h",
            "10",
            "1.5h",
            "0m",
            "-1h",
            "10y",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn approvers() {
        for good in ["codeowners", "@alice", "@acme/sre", "a@example.com"] {
            assert!(is_valid_approver(good), "{good}");
        }
        for bad in [
            "", "alice", "@", "@a/", "@/b", "@a/b/c", "a @b", "@", "x@", "@a@b",
        ] {
            assert!(!is_valid_approver(bad), "{bad}");
        }
    }

    #[test]
    fn keys_and_tables_are_found_from_offsets() {
        let text = "a = 1\n[[rule]]\nid = \"x\"\napprovals = \"two\"\n";
        let offset = text.find("\"two\"").unwrap();
        assert_eq!(key_at(text, offset).as_deref(), Some("approvals"));
        assert_eq!(table_at(text, offset), "rule `x`");
        assert_eq!(table_at(text, 2), "the top level");
        let inline = "d = { command = 5 }";
        assert_eq!(
            key_at(inline, inline.find('5').unwrap()).as_deref(),
            Some("command")
        );
    }
}
