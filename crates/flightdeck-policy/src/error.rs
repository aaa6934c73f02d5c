//! Errors from parsing a policy file.

use std::fmt;

use crate::types::ActionKind;

/// Where in a policy file something went wrong: the caller's name for the file, and a
/// 1-based line and column (columns count characters, not bytes).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    pub origin: String,
    pub line: usize,
    pub column: usize,
}

impl Location {
    /// The location of byte offset `offset` in `source`.
    pub(crate) fn at(origin: &str, source: &str, offset: usize) -> Location {
        let mut line = 1usize;
        let mut line_start = 0;
        let offset = offset.min(source.len());
        for (index, byte) in source.bytes().enumerate().take(offset) {
            if byte == b'\n' {
                line += 1;
                line_start = index + 1;
            }
        }
        let column = source
            .get(line_start..offset)
            .map_or(1, |prefix| prefix.chars().count() + 1);
        Location {
            origin: origin.to_owned(),
            line,
            column,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.origin, self.line, self.column)
    }
}

/// A policy file that cannot be used: what is wrong ([`PolicyError::kind`]), where
/// ([`PolicyError::location`]) and which key ([`PolicyError::key`]). Displays as
/// `origin:line:column: message`.
///
/// The details are boxed to keep `Result<Policy, PolicyError>` small.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(transparent)]
pub struct PolicyError(Box<PolicyErrorKind>);

impl From<PolicyErrorKind> for PolicyError {
    fn from(kind: PolicyErrorKind) -> PolicyError {
        PolicyError(Box::new(kind))
    }
}

/// What is wrong with a policy file. Every variant says where (`at`) and, where there
/// is one, which key is at fault; `table` names the section (`the top level`,
/// `[defaults]`, `[classes]`, ``rule `deps-owner` ``).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyErrorKind {
    /// The text is not valid TOML.
    #[error("{at}: invalid toml: {message}")]
    Syntax { at: Location, message: String },

    /// A key the format does not know; typos must not silently weaken a policy.
    #[error("{at}: unknown key `{key}` in {table}{}", expected_list(expected))]
    UnknownKey {
        at: Location,
        key: String,
        table: String,
        expected: Vec<String>,
    },

    /// A key that every rule needs (`id`, `action`, `decision`).
    #[error("{at}: missing key `{key}` in {table}")]
    MissingKey {
        at: Location,
        key: String,
        table: String,
    },

    /// A key with a value of the wrong type or outside what the format accepts.
    #[error("{at}: invalid value for `{key}` in {table}: {reason}")]
    InvalidValue {
        at: Location,
        key: String,
        table: String,
        reason: String,
    },

    /// A class name in `changes_only` / `changes_any` that is neither built in nor
    /// defined in `[classes]`.
    #[error("{at}: unknown class `{class}` in `{key}` of {table} (known classes: {})", known.join(", "))]
    UnknownClass {
        at: Location,
        key: String,
        table: String,
        class: String,
        known: Vec<String>,
    },

    /// A condition that cannot apply to the rule's action (e.g. `command_matches` on a
    /// publish rule), which would otherwise never match.
    #[error("{at}: `{key}` cannot be used in {table} with action = \"{action}\" (it applies to {applies_to})")]
    KeyNotForAction {
        at: Location,
        key: String,
        table: String,
        action: ActionKind,
        applies_to: String,
    },

    /// Two rules with the same id; decisions record rule ids, so they must be unique.
    #[error("{at}: duplicate rule id `{id}` (first used on line {first_line})")]
    DuplicateRuleId {
        at: Location,
        id: String,
        first_line: usize,
    },

    /// A path pattern that does not compile.
    #[error("{at}: invalid glob `{glob}` in `{key}` of {table}: {reason}")]
    InvalidGlob {
        at: Location,
        key: String,
        table: String,
        glob: String,
        reason: String,
    },

    /// More classes than a decision can track.
    #[error("{at}: too many classes: {count} (at most {max}, built-ins included)")]
    TooManyClasses {
        at: Location,
        count: usize,
        max: usize,
    },
}

impl PolicyError {
    /// What is wrong.
    pub fn kind(&self) -> &PolicyErrorKind {
        &self.0
    }

    /// Where the error is.
    pub fn location(&self) -> &Location {
        self.0.location()
    }

    /// The key at fault, when there is one.
    pub fn key(&self) -> Option<&str> {
        self.0.key()
    }
}

impl PolicyErrorKind {
    /// Where the error is.
    pub fn location(&self) -> &Location {
        match self {
            PolicyErrorKind::Syntax { at, .. }
            | PolicyErrorKind::UnknownKey { at, .. }
            | PolicyErrorKind::MissingKey { at, .. }
            | PolicyErrorKind::InvalidValue { at, .. }
            | PolicyErrorKind::UnknownClass { at, .. }
            | PolicyErrorKind::KeyNotForAction { at, .. }
            | PolicyErrorKind::DuplicateRuleId { at, .. }
            | PolicyErrorKind::InvalidGlob { at, .. }
            | PolicyErrorKind::TooManyClasses { at, .. } => at,
        }
    }

    /// The key at fault, when there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            PolicyErrorKind::UnknownKey { key, .. }
            | PolicyErrorKind::MissingKey { key, .. }
            | PolicyErrorKind::InvalidValue { key, .. }
            | PolicyErrorKind::UnknownClass { key, .. }
            | PolicyErrorKind::KeyNotForAction { key, .. }
            | PolicyErrorKind::InvalidGlob { key, .. } => Some(key),
            PolicyErrorKind::DuplicateRuleId { .. } => Some("id"),
            PolicyErrorKind::Syntax { .. } | PolicyErrorKind::TooManyClasses { .. } => None,
        }
    }
}

fn expected_list(expected: &[String]) -> String {
    if expected.is_empty() {
        String::new()
    } else {
        format!(" (expected one of: {})", expected.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_counts_lines_and_characters() {
        let source = "a = 1\nbé = 2\n";
        let offset = source.find('=').unwrap();
        assert_eq!(Location::at("f", source, offset).column, 3);
        let second = source.rfind('=').unwrap();
        let at = Location::at("f", source, second);
        assert_eq!((at.line, at.column), (2, 4));
        assert_eq!(at.to_string(), "f:2:4");
        assert_eq!(Location::at("f", source, 10_000).line, 3);
    }
}
