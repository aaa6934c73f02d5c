//! GitHub CODEOWNERS: who owns which path.
//!
//! Semantics follow GitHub's documentation: gitignore-style patterns (see
//! [`crate::glob`]), the last matching line wins, a matching line without owners means
//! "no owners", `#` starts a comment (also after the owners), and negation (`!`) and
//! character ranges (`[ ]`) are not supported. Like GitHub, a line with invalid syntax is
//! skipped; it is reported in [`Codeowners::warnings`] rather than failing, because a
//! broken CODEOWNERS must not stop a mission.

use std::fmt;

use globset::{GlobSet, GlobSetBuilder};

use crate::glob::{self, Flavor};
use crate::parse::is_valid_approver;
use crate::paths;

/// Where GitHub looks for CODEOWNERS, in its search order; callers read the first that
/// exists.
pub const CODEOWNERS_LOCATIONS: [&str; 3] = [".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS"];

/// A CODEOWNERS line that was skipped or is suspicious, and why.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CodeownersWarning {
    /// 1-based line number.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for CodeownersWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
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
    /// Parse CODEOWNERS text. Never fails: invalid lines are skipped and reported in
    /// [`Codeowners::warnings`].
    pub fn parse(source: &str) -> Codeowners {
        let mut entries = Vec::new();
        let mut glob_entry = Vec::new();
        let mut warnings = Vec::new();
        let mut builder = GlobSetBuilder::new();
        let source = source.strip_prefix('\u{feff}').unwrap_or(source);
        for (index, text) in source.lines().enumerate() {
            let line = index + 1;
            let mut tokens = text.split_whitespace();
            let Some(pattern) = tokens.next() else {
                continue;
            };
            if pattern.starts_with('#') {
                continue;
            }
            let owners: Vec<&str> = tokens.take_while(|token| !token.starts_with('#')).collect();
            let mut warn = |message: String| warnings.push(CodeownersWarning { line, message });

            if let Some(owner) = owners.iter().find(|owner| {
                **owner == crate::policy::CODEOWNERS_APPROVER || !is_valid_approver(owner)
            }) {
                warn(format!(
                    "`{owner}` is not a valid owner (expected @user, @org/team or an email); the line is ignored"
                ));
                continue;
            }
            let globs = match glob::compile(pattern, Flavor::Codeowners) {
                Ok(globs) => globs,
                Err(reason) => {
                    warn(format!(
                        "invalid pattern `{pattern}`: {reason}; the line is ignored"
                    ));
                    continue;
                }
            };
            if pattern.contains(['[', ']']) {
                warn(format!(
                    "GitHub does not support character ranges; `[` and `]` in `{pattern}` match literally"
                ));
            }
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
        let set = match builder.build() {
            Ok(set) => set,
            Err(error) => {
                warnings.push(CodeownersWarning {
                    line: 0,
                    message: format!("failed to compile the patterns: {error}; no line applies"),
                });
                entries.clear();
                glob_entry.clear();
                GlobSet::empty()
            }
        };
        Codeowners {
            entries,
            set,
            glob_entry,
            warnings,
        }
    }

    /// Lines that were skipped or that GitHub may read differently.
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
        assert_eq!(owners.owners_of("[ab].md"), ["@docs"]);
        assert_eq!(owners.matching_line("x.py"), Some(1));
        assert!(owners.warnings()[0].to_string().starts_with("line 2: "));
    }

    #[test]
    fn empty_file_owns_nothing() {
        let owners = Codeowners::default();
        assert!(owners.owners_of("a").is_empty());
        assert!(owners.warnings().is_empty());
    }
}
