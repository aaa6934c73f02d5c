//! GitHub CODEOWNERS: who owns which path.
//!
//! Semantics follow GitHub's "About code owners" page
//! (docs.github.com/en/repositories/managing-your-repositorys-settings-and-features/customizing-your-repository/about-code-owners):
//! gitignore-style patterns (see [`crate::glob`]), the last matching line wins, a matching
//! line without owners means "no owners", `#` starts a comment (also after the owners),
//! owners are `@user`, `@org/team` or an email, and a file of 3 MB or more is not loaded.
//!
//! "If any line in your CODEOWNERS file contains invalid syntax, that line will be
//! skipped", so a broken line never stops a mission: it is skipped and reported in
//! [`Codeowners::warnings`]. Skipped, as GitHub does:
//! - negation (`!`) and character ranges (`[ ]`), documented as unsupported; GitHub's
//!   own error for a bracket is "both `[` and `]` must be escaped with a `\`", and
//!   `\[`, `\]` match literal brackets;
//! - a pattern starting with `\#`: the docs list escaping a leading `#` as not working;
//! - a line with any invalid owner: invalid syntax skips the whole line, not the one
//!   owner (the docs say the line is skipped; the valid owners on it do not apply).
//!
//! As in gitignore, `\` makes the next character literal, so `\ ` is a space inside the
//! pattern rather than the end of it (`docs/My\ Guide.md @alice`).

use std::fmt;

use globset::{GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

use crate::glob::{self, Flavor};
use crate::parse::is_valid_approver;
use crate::paths;

/// Where GitHub looks for CODEOWNERS, in its search order; callers read the first that
/// exists.
pub const CODEOWNERS_LOCATIONS: [&str; 3] = [".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS"];

/// GitHub does not load a CODEOWNERS file of this size or more ("must be under 3 MB").
const MAX_SOURCE_BYTES: usize = 3 * 1024 * 1024;

/// A CODEOWNERS line that was skipped, and why. Displays as
/// `CODEOWNERS line 7: skipped: <reason>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CodeownersWarning {
    /// 1-based line number; 0 when the whole file is skipped.
    pub line: usize,
    /// The line as written (empty when the whole file is skipped).
    pub text: String,
    /// Why it was skipped, meant to be shown as is.
    pub reason: String,
}

impl fmt::Display for CodeownersWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "CODEOWNERS: skipped: {}", self.reason)
        } else {
            write!(f, "CODEOWNERS line {}: skipped: {}", self.line, self.reason)
        }
    }
}

/// A parsed CODEOWNERS file with all patterns compiled into one glob set.
#[derive(Debug, Clone)]
pub struct Codeowners {
    entries: Vec<Entry>,
    set: GlobSet,
    /// For each glob of `set`, the entry it belongs to.
    glob_entry: Vec<usize>,
    warnings: Vec<CodeownersWarning>,
}

#[derive(Debug, Clone)]
struct Entry {
    line: usize,
    owners: Vec<String>,
}

impl Default for Codeowners {
    fn default() -> Codeowners {
        Codeowners::parse("")
    }
}

impl Codeowners {
    /// Parse CODEOWNERS text. Never fails: lines GitHub would skip are skipped and
    /// reported in [`Codeowners::warnings`].
    pub fn parse(source: &str) -> Codeowners {
        let mut entries = Vec::new();
        let mut glob_entry = Vec::new();
        let mut warnings = Vec::new();
        let mut builder = GlobSetBuilder::new();
        if source.len() >= MAX_SOURCE_BYTES {
            return Codeowners::skip_all(format!(
                "the file is {} bytes; GitHub does not load a CODEOWNERS file of 3 MB or more, so no line applies",
                source.len()
            ));
        }
        let source = source.strip_prefix('\u{feff}').unwrap_or(source);
        for (index, text) in source.lines().enumerate() {
            let line = index + 1;
            let tokens = split_tokens(text);
            let Some(&pattern) = tokens.first() else {
                continue;
            };
            if pattern.starts_with('#') {
                continue;
            }
            let owners: Vec<&str> = tokens
                .iter()
                .skip(1)
                .take_while(|token| !token.starts_with('#'))
                .copied()
                .collect();
            let globs = match check_line(pattern, &owners) {
                Ok(globs) => globs,
                Err(reason) => {
                    warnings.push(CodeownersWarning {
                        line,
                        text: text.to_owned(),
                        reason,
                    });
                    continue;
                }
            };
            let entry = entries.len();
            for glob in globs {
                builder.add(glob);
                glob_entry.push(entry);
            }
            entries.push(Entry {
                line,
                owners: owners.into_iter().map(str::to_owned).collect(),
            });
        }
        match builder.build() {
            Ok(set) => Codeowners {
                entries,
                set,
                glob_entry,
                warnings,
            },
            // Every glob compiled on its own, so only a limit of the combined set can
            // get here; fail to "no owners" rather than guess.
            Err(error) => {
                let mut skipped = Codeowners::skip_all(format!(
                    "the patterns could not be compiled together ({error}), so no line applies"
                ));
                warnings.append(&mut skipped.warnings);
                skipped.warnings = warnings;
                skipped
            }
        }
    }

    /// No line applies, for this reason.
    fn skip_all(reason: String) -> Codeowners {
        Codeowners {
            entries: Vec::new(),
            set: GlobSet::empty(),
            glob_entry: Vec::new(),
            warnings: vec![CodeownersWarning {
                line: 0,
                text: String::new(),
                reason,
            }],
        }
    }

    /// The lines that were skipped, in file order, each with its line number, text and
    /// reason; for `policy explain` and the mission.
    pub fn warnings(&self) -> &[CodeownersWarning] {
        &self.warnings
    }

    /// The owners of a repo-relative path: those of the last matching line. Empty when no
    /// line matches or the last matching line lists no owners.
    pub fn owners_of(&self, path: &str) -> &[String] {
        self.last_match(path)
            .map_or(&[], |entry| entry.owners.as_slice())
    }

    /// The 1-based line that decides the owners of `path`, if any; for explanations.
    pub fn matching_line(&self, path: &str) -> Option<usize> {
        self.last_match(path).map(|entry| entry.line)
    }

    fn last_match(&self, path: &str) -> Option<&Entry> {
        if self.entries.is_empty() {
            return None;
        }
        let path = paths::normalize_lenient(path);
        self.set
            .matches(path.as_ref())
            .into_iter()
            .filter_map(|glob| self.glob_entry.get(glob).copied())
            .max()
            .and_then(|entry| self.entries.get(entry))
    }
}

/// The globs of a line, or why GitHub skips it.
fn check_line(pattern: &str, owners: &[&str]) -> Result<Vec<globset::Glob>, String> {
    if pattern.starts_with("\\#") {
        return Err(format!(
            "`{pattern}`: escaping a leading `#` with `\\` does not work in CODEOWNERS (GitHub documents it as unsupported)"
        ));
    }
    if pattern.starts_with('!') {
        return Err(format!(
            "`{pattern}`: negation (`!`) does not work in CODEOWNERS; give the exception its own line, after the broader one"
        ));
    }
    if has_unescaped_bracket(pattern) {
        return Err(format!(
            "`{pattern}`: character ranges (`[ ]`) do not work in CODEOWNERS, and GitHub requires `[` and `]` to be escaped; for literal brackets write `{}`",
            escape_brackets(pattern)
        ));
    }
    let invalid: Vec<String> = owners
        .iter()
        .filter(|owner| **owner == crate::policy::CODEOWNERS_APPROVER || !is_valid_approver(owner))
        .map(|owner| format!("`{owner}`"))
        .collect();
    if !invalid.is_empty() {
        let (subject, verb) = if invalid.len() == 1 {
            ("owner", "is not a valid")
        } else {
            ("owners", "are not valid")
        };
        return Err(format!(
            "{} {verb} {subject} (expected @user, @org/team or an email); GitHub skips the whole line, so its other owners do not apply either",
            invalid.join(", ")
        ));
    }
    glob::compile(pattern, Flavor::Codeowners).map_err(|reason| {
        if pattern.trim_matches('/').is_empty() {
            format!("the pattern `{pattern}` never matches anything; did you mean `*`?")
        } else {
            format!("invalid pattern `{pattern}`: {reason}")
        }
    })
}

/// Whitespace-separated tokens; `\` keeps the next character, a space included, in the
/// token (gitignore's `\ `).
fn split_tokens(text: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    let mut start: Option<usize> = None;
    let mut escaped = false;
    for (index, ch) in text.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        if ch.is_whitespace() {
            if let Some(token) = start.take().and_then(|begin| text.get(begin..index)) {
                tokens.push(token);
            }
            continue;
        }
        start.get_or_insert(index);
        escaped = ch == '\\';
    }
    if let Some(token) = start.and_then(|begin| text.get(begin..)) {
        tokens.push(token);
    }
    tokens
}

fn has_unescaped_bracket(pattern: &str) -> bool {
    let mut escaped = false;
    pattern.chars().any(|ch| {
        let bracket = !escaped && matches!(ch, '[' | ']');
        escaped = !escaped && ch == '\\';
        bracket
    })
}

/// `pages/[id].tsx` -> `pages/\[id\].tsx`, for the warning's suggestion.
fn escape_brackets(pattern: &str) -> String {
    let mut escaped_pattern = String::with_capacity(pattern.len() + 4);
    let mut escaped = false;
    for ch in pattern.chars() {
        if !escaped && matches!(ch, '[' | ']') {
            escaped_pattern.push('\\');
        }
        escaped = !escaped && ch == '\\';
        escaped_pattern.push(ch);
    }
    escaped_pattern
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_lines_are_reported_and_skipped() {
        let owners = Codeowners::parse(
            "* @all\n!keep.txt @x\n*.rs not-an-owner\n/ @root\n[ab].md @docs # comment\n*.py codeowners\n",
        );
        let lines: Vec<usize> = owners.warnings().iter().map(|w| w.line).collect();
        assert_eq!(lines, [2, 3, 4, 5, 6]);
        assert_eq!(owners.owners_of("keep.txt"), ["@all"]);
        assert_eq!(owners.owners_of("main.rs"), ["@all"]);
        assert_eq!(owners.owners_of("[ab].md"), ["@all"]);
        assert_eq!(owners.matching_line("x.py"), Some(1));
        assert!(owners.warnings()[0]
            .to_string()
            .starts_with("CODEOWNERS line 2: skipped: "));
        assert_eq!(owners.warnings()[0].text, "!keep.txt @x");
    }

    #[test]
    fn tokens_keep_escaped_spaces() {
        let cases: &[(&str, &[&str])] = &[
            ("a b", &["a", "b"]),
            ("  a\\ b\tc  ", &["a\\ b", "c"]),
            ("a\\\\ b", &["a\\\\", "b"]),
            ("a\\", &["a\\"]),
            ("", &[]),
        ];
        for (text, expected) in cases {
            assert_eq!(split_tokens(text), *expected, "{text:?}");
        }
    }

    #[test]
    fn brackets_are_escaped_for_the_suggestion() {
        assert_eq!(escape_brackets("pages/[id].tsx"), "pages/\\[id\\].tsx");
        assert_eq!(escape_brackets("a\\[b]"), "a\\[b\\]");
        assert!(has_unescaped_bracket("a\\[b]"));
        assert!(!has_unescaped_bracket("a\\[b\\]"));
        assert!(has_unescaped_bracket("a\\\\[b\\]"));
    }

    #[test]
    fn oversized_files_are_not_loaded() {
        let source = "* @all\n".repeat(MAX_SOURCE_BYTES / 7 + 1);
        let owners = Codeowners::parse(&source);
        assert!(owners.owners_of("a").is_empty());
        assert_eq!(owners.warnings().len(), 1);
        assert!(owners.warnings()[0]
            .to_string()
            .starts_with("CODEOWNERS: skipped: "));
    }

    #[test]
    fn empty_file_owns_nothing() {
        let owners = Codeowners::default();
        assert!(owners.owners_of("a").is_empty());
        assert!(owners.warnings().is_empty());
    }
}
