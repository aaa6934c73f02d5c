//! The platform's own checks of a change against a mission template's `[acceptance]`.
//!
//! An agent is asked to make the acceptance commands pass, and the cheapest way to make a
//! test suite pass is to delete or skip the tests that fail. So before a change is
//! published the platform (not the agent) looks at the diff itself:
//!
//! - `max_changed_files`: a change touching more files than the limit is refused
//!   ([`ViolationKind::TooManyFiles`]); it keeps a mission's blast radius what the template
//!   promised.
//! - `paths`: every changed path must match one of the template's gitignore-style globs
//!   (the same flavour as the policy's `paths` and `[classes]` globs); a rename is judged
//!   on both of its paths ([`ViolationKind::OutsidePaths`], one per file). No globs means
//!   no restriction. A glob that does not compile matches nothing, so a broken `paths`
//!   list fails closed.
//! - `forbid_test_deletion`:
//!   - deleting a file in the policy's `tests` class (built in, plus the repository's
//!     `[classes] tests = [...]`), or renaming one out of that class, is refused
//!     ([`ViolationKind::TestDeleted`]);
//!   - an added line that adds a skip marker (`#[ignore]`, `@pytest.mark.skip`,
//!     `it.skip(`, `t.Skip(`, `@Disabled`, ...: the `SKIP_MARKERS` table in the source) is
//!     refused ([`ViolationKind::SkipMarkerAdded`]). Only markers the change adds count:
//!     per file and per marker, the markers on added lines minus those on removed lines,
//!     so moving or rewording an existing `#[ignore]` is fine. Files that are prose (the
//!     `docs` class unless also `tests`, and `.md`/`.rst`/`.txt`-like files anywhere) are
//!     not looked at.
//!
//! Like the rest of the crate this is pure: the caller passes the changed files and the
//! unified diff text (`git diff --no-renames --binary` with git's default `a/` and `b/`
//! prefixes), split by [`diff_lines`].
//!
//! Limits, on purpose: markers are found with regular expressions on single lines, not by
//! parsing code, so a marker inside a comment or a string counts too (an agent commenting
//! a marker in is rare, and a person reading the message can tell); a test emptied rather
//! than deleted, or a `#[test]` function removed from a file that stays, is not caught
//! here (the acceptance commands and review are there for that).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::LazyLock;

use globset::{GlobSet, GlobSetBuilder};
use regex::{Captures, Regex, RegexSet};
use serde::{Deserialize, Serialize};

use crate::classes::{mask_bit, ClassMask};
use crate::glob::{self, Flavor};
use crate::paths;
use crate::policy::Policy;
use crate::types::{ChangeStatus, ChangedFile};

/// What `[acceptance]` asks of the diff (a plain copy of the template's fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DiffRules<'a> {
    /// At most this many changed files.
    pub max_changed_files: Option<u64>,
    /// Gitignore-style globs every changed path must match; empty means any path.
    pub paths: &'a [String],
    /// Refuse deleted test files and newly added skip markers.
    pub forbid_test_deletion: bool,
}

/// One changed file with the lines the diff adds to it and removes from it (without the
/// leading `+` or `-`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffFileLines {
    pub file: ChangedFile,
    pub added_lines: Vec<String>,
    pub removed_lines: Vec<String>,
}

/// Which acceptance rule a change breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViolationKind {
    /// More changed files than `max_changed_files`.
    TooManyFiles,
    /// A changed path outside `paths`.
    OutsidePaths,
    /// A test file deleted (or renamed out of the tests) under `forbid_test_deletion`.
    TestDeleted,
    /// A skip marker added under `forbid_test_deletion`.
    SkipMarkerAdded,
}

impl ViolationKind {
    /// The snake_case name used in JSON and events.
    pub fn as_str(self) -> &'static str {
        match self {
            ViolationKind::TooManyFiles => "too_many_files",
            ViolationKind::OutsidePaths => "outside_paths",
            ViolationKind::TestDeleted => "test_deleted",
            ViolationKind::SkipMarkerAdded => "skip_marker_added",
        }
    }
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One broken acceptance rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub kind: ViolationKind,
    /// The file concerned; `None` for [`ViolationKind::TooManyFiles`].
    pub path: Option<String>,
    /// One line for people and for the agent: the file, what is wrong, and for a skip
    /// marker the added line.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Lines added and removed per file, as [`diff_lines`] returns them.
pub type FileLines = (Vec<String>, Vec<String>);

/// Split `git diff --no-renames` output (unified, possibly with `--binary` sections) into
/// the added and removed lines of each file, keyed by repo-relative path: the `b/` side,
/// or the `a/` side for a deletion.
///
/// Quoted paths (`"b/tab\there"`, octal-escaped UTF-8), the tab git appends to a `---`/`+++`
/// path with a space, `\ No newline at end of file`, binary patches and `Binary files ...
/// differ` (no lines), mode changes and empty new or deleted files (no lines) are
/// handled. Hunks are read by their line counts, so an added line that starts with `++`
/// or a removed one that starts with `--` is content, not a header. Anything before the
/// first `diff --git` line (a mail header, say) is ignored.
pub fn diff_lines(patch: &str) -> BTreeMap<String, FileLines> {
    let mut out = BTreeMap::new();
    let mut current: Option<FilePatch> = None;
    let mut state = State::Header;
    for line in patch.lines() {
        // Never content: a content line starts with ` `, `+`, `-` or `\`.
        if let Some(rest) = line.strip_prefix("diff --git ") {
            if let Some(done) = current.take() {
                done.finish(&mut out);
            }
            current = Some(FilePatch::new(rest));
            state = State::Header;
            continue;
        }
        let Some(file) = current.as_mut() else {
            continue;
        };
        state = match state {
            State::Binary => State::Binary,
            State::Header => file.header_line(line),
            State::Hunk { old, new } => match file.hunk_line(line, old, new) {
                Some(state) => state,
                None => file.header_line(line),
            },
        };
    }
    if let Some(done) = current {
        done.finish(&mut out);
    }
    out
}

/// Where [`diff_lines`] is within one file's section.
#[derive(Debug, Clone, Copy)]
enum State {
    /// The extended header lines, or between hunks.
    Header,
    /// Inside a hunk, with the old and new lines still to come (`u64::MAX` when the hunk
    /// header could not be read: then every content-looking line is content).
    Hunk { old: u64, new: u64 },
    /// After `GIT binary patch`: nothing more until the next file.
    Binary,
}

/// One file's section of a patch, as it is being read.
#[derive(Debug, Default)]
struct FilePatch {
    header_a: Option<String>,
    header_b: Option<String>,
    minus: Option<String>,
    plus: Option<String>,
    rename_from: Option<String>,
    rename_to: Option<String>,
    deleted: bool,
    added: Vec<String>,
    removed: Vec<String>,
}

impl FilePatch {
    fn new(header: &str) -> FilePatch {
        let (header_a, header_b) = header_paths(header);
        FilePatch {
            header_a,
            header_b,
            ..FilePatch::default()
        }
    }

    fn header_line(&mut self, line: &str) -> State {
        if let Some(rest) = line.strip_prefix("--- ") {
            self.minus = side_path(rest, "a/");
        } else if let Some(rest) = line.strip_prefix("+++ ") {
            match side_path(rest, "b/") {
                Some(path) => self.plus = Some(path),
                None => self.deleted = true,
            }
        } else if line.starts_with("@@") {
            return match hunk_counts(line) {
                Some((0, 0)) => State::Header,
                Some((old, new)) => State::Hunk { old, new },
                None => State::Hunk {
                    old: u64::MAX,
                    new: u64::MAX,
                },
            };
        } else if line.starts_with("GIT binary patch") {
            return State::Binary;
        } else if line.starts_with("deleted file mode") {
            self.deleted = true;
        } else if let Some(rest) = line
            .strip_prefix("rename from ")
            .or_else(|| line.strip_prefix("copy from "))
        {
            self.rename_from = Some(plain_or_quoted(rest));
        } else if let Some(rest) = line
            .strip_prefix("rename to ")
            .or_else(|| line.strip_prefix("copy to "))
        {
            self.rename_to = Some(plain_or_quoted(rest));
        }
        State::Header
    }

    /// Take one line inside a hunk; `None` when the line cannot be part of the hunk.
    fn hunk_line(&mut self, line: &str, mut old: u64, mut new: u64) -> Option<State> {
        if let Some(text) = line.strip_prefix('+') {
            new = new.checked_sub(1)?;
            self.added.push(text.to_owned());
        } else if let Some(text) = line.strip_prefix('-') {
            old = old.checked_sub(1)?;
            self.removed.push(text.to_owned());
        } else if line.starts_with(' ') || line.is_empty() {
            // An empty line is a context line whose trailing space was stripped on the way.
            old = old.checked_sub(1)?;
            new = new.checked_sub(1)?;
        } else if !line.starts_with('\\') {
            return None;
        }
        Some(if old == 0 && new == 0 {
            State::Header
        } else {
            State::Hunk { old, new }
        })
    }

    fn finish(self, out: &mut BTreeMap<String, FileLines>) {
        let old = self.minus.or(self.rename_from).or(self.header_a);
        let new = self.plus.or(self.rename_to).or(self.header_b);
        let key = if self.deleted {
            old.or(new)
        } else {
            new.or(old)
        };
        if let Some(key) = key {
            let entry: &mut FileLines = out.entry(key).or_default();
            entry.0.extend(self.added);
            entry.1.extend(self.removed);
        }
    }
}

/// The two paths of a `diff --git a/x b/x` line, without their prefixes.
fn header_paths(header: &str) -> (Option<String>, Option<String>) {
    if header.starts_with('"') {
        let Some((a, tail)) = unquote(header) else {
            return (None, None);
        };
        let tail = tail.strip_prefix(' ').unwrap_or(tail);
        let b = if tail.starts_with('"') {
            unquote(tail).map(|(b, _)| b)
        } else {
            Some(tail.to_owned())
        };
        return (Some(strip_side(a, "a/")), b.map(|b| strip_side(b, "b/")));
    }
    if let Some(split) = header.rfind(" \"") {
        if let (Some(a), Some(b)) = (header.get(..split), header.get(split + 1..)) {
            if let Some((b, _)) = unquote(b) {
                return (
                    Some(strip_side(a.to_owned(), "a/")),
                    Some(strip_side(b, "b/")),
                );
            }
        }
    }
    // Unquoted paths may hold spaces, so `a/P b/P` is split in the middle: without renames
    // both sides are the same path.
    if header.len() >= 5 && (header.len() - 5).is_multiple_of(2) {
        let half = (header.len() - 5) / 2;
        if let (Some(a), Some(middle), Some(b)) = (
            header.get(2..2 + half),
            header.get(2 + half..5 + half),
            header.get(5 + half..),
        ) {
            if header.starts_with("a/") && middle == " b/" && a == b {
                return (Some(a.to_owned()), Some(b.to_owned()));
            }
        }
    }
    match header.split_once(" b/") {
        Some((a, b)) => (Some(strip_side(a.to_owned(), "a/")), Some(b.to_owned())),
        None => (None, None),
    }
}

/// The path of a `---` or `+++` line without its prefix; `None` for `/dev/null`.
fn side_path(text: &str, prefix: &str) -> Option<String> {
    let name = if text.starts_with('"') {
        unquote(text).map_or_else(|| text.to_owned(), |(name, _)| name)
    } else {
        // Git appends a tab to a name with a space; other tools a tab and a timestamp.
        text.split('\t').next().unwrap_or(text).to_owned()
    };
    if name == "/dev/null" {
        None
    } else {
        Some(strip_side(name, prefix))
    }
}

/// A `rename from`/`rename to` path, which git quotes like the others but never prefixes.
fn plain_or_quoted(text: &str) -> String {
    if text.starts_with('"') {
        if let Some((name, _)) = unquote(text) {
            return name;
        }
    }
    text.to_owned()
}

fn strip_side(path: String, prefix: &str) -> String {
    match path.strip_prefix(prefix) {
        Some(stripped) => stripped.to_owned(),
        None => path,
    }
}

/// Read a C-style quoted string as git writes paths (`"a/tab\there"`, `"a/\303\251"`),
/// returning it and what follows the closing quote. `None` when `text` does not start
/// with a quote or the quote is not closed.
fn unquote(text: &str) -> Option<(String, &str)> {
    let bytes = text.as_bytes();
    if bytes.first() != Some(&b'"') {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 1;
    while let Some(&byte) = bytes.get(i) {
        i += 1;
        match byte {
            b'"' => {
                let rest = text.get(i..)?;
                return Some((String::from_utf8_lossy(&out).into_owned(), rest));
            }
            b'\\' => {
                let escaped = *bytes.get(i)?;
                i += 1;
                out.push(match escaped {
                    b'a' => 0x07,
                    b'b' => 0x08,
                    b't' => b'\t',
                    b'n' => b'\n',
                    b'v' => 0x0b,
                    b'f' => 0x0c,
                    b'r' => b'\r',
                    b'0'..=b'7' => {
                        let mut value = u32::from(escaped - b'0');
                        for _ in 0..2 {
                            match bytes.get(i) {
                                Some(&digit @ b'0'..=b'7') => {
                                    value = value * 8 + u32::from(digit - b'0');
                                    i += 1;
                                }
                                _ => break,
                            }
                        }
                        u8::try_from(value).unwrap_or(b'?')
                    }
                    // `\"`, `\\` and anything unknown: the character itself.
                    other => other,
                });
            }
            other => out.push(other),
        }
    }
    None
}

/// The old and new line counts of a `@@ -l,s +l,s @@` header.
fn hunk_counts(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("@@ -")?;
    let (old, rest) = rest.split_once(" +")?;
    let (new, _) = rest.split_once(" @@")?;
    Some((range_len(old)?, range_len(new)?))
}

fn range_len(range: &str) -> Option<u64> {
    match range.split_once(',') {
        Some((start, len)) => {
            start.parse::<u64>().ok()?;
            len.parse().ok()
        }
        None => {
            range.parse::<u64>().ok()?;
            Some(1)
        }
    }
}

/// Whether `path` is in the policy's `tests` class (built in, plus the policy's own
/// `[classes] tests = [...]` globs).
pub fn is_test_path(policy: &Policy, path: &str) -> bool {
    has_class(policy, class_mask(policy, path), "tests")
}

fn class_mask(policy: &Policy, path: &str) -> ClassMask {
    let path = paths::normalize_lenient(path);
    policy.classes.mask_by_globs(&path, &mut Vec::new())
}

fn has_class(policy: &Policy, mask: ClassMask, class: &str) -> bool {
    policy
        .classes
        .index_of(class)
        .is_some_and(|index| mask & mask_bit(index) != 0)
}

/// File name extensions of prose, never searched for skip markers wherever they are.
const PROSE_EXTENSIONS: &[&str] = &["md", "mdx", "markdown", "rst", "adoc", "asciidoc", "txt"];

/// Whether added lines of `path` are searched for skip markers: not in prose files, nor in
/// the `docs` class unless the file is also a test.
fn searched_for_markers(policy: &Policy, path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    if let Some((_, extension)) = name.rsplit_once('.') {
        if PROSE_EXTENSIONS
            .iter()
            .any(|prose| prose.eq_ignore_ascii_case(extension))
        {
            return false;
        }
    }
    let mask = class_mask(policy, path);
    !has_class(policy, mask, "docs") || has_class(policy, mask, "tests")
}

impl Policy {
    /// Check a change against a template's `[acceptance]` rules: more files than
    /// `max_changed_files`; paths matching none of `paths`; with `forbid_test_deletion`,
    /// deleted files of this policy's `tests` class and skip markers (`#[ignore]`,
    /// `@pytest.mark.skip`, `it.skip(`, `t.Skip(`, `@Disabled`, ...) that added lines add
    /// to files other than prose. A marker counts only when the file's added lines hold
    /// more of it than its removed lines, so moving one is fine.
    ///
    /// Violations come in a stable order: too many files first, then per file in path
    /// order (outside the paths, test deleted, then skip markers in the order of the
    /// added lines).
    pub fn check_diff(&self, rules: &DiffRules<'_>, files: &[DiffFileLines]) -> Vec<Violation> {
        let mut violations = Vec::new();
        if let Some(limit) = rules.max_changed_files {
            let count = u64::try_from(files.len()).unwrap_or(u64::MAX);
            if count > limit {
                violations.push(Violation {
                    kind: ViolationKind::TooManyFiles,
                    path: None,
                    message: format!(
                        "the change touches {count} files, more than the {limit} that \
                         acceptance.max_changed_files allows"
                    ),
                });
            }
        }

        let allowed = allowed_paths(rules.paths);
        let mut sorted: Vec<&DiffFileLines> = files.iter().collect();
        sorted.sort_by(|a, b| a.file.path.cmp(&b.file.path));
        for file in sorted {
            let path = file.file.path.as_str();
            if let Some(allowed) = &allowed {
                let outside: Vec<&str> = file
                    .file
                    .touched_paths()
                    .filter(|touched| !allowed.is_match(&*paths::normalize_lenient(touched)))
                    .collect();
                if !outside.is_empty() {
                    let named = outside
                        .iter()
                        .map(|&touched| {
                            if touched == path {
                                format!("`{touched}`")
                            } else {
                                format!("`{touched}` (renamed to `{path}`)")
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(" and ");
                    let verb = if outside.len() == 1 { "is" } else { "are" };
                    violations.push(Violation {
                        kind: ViolationKind::OutsidePaths,
                        path: Some(path.to_owned()),
                        message: format!(
                            "{named} {verb} outside the paths this mission may change \
                             (acceptance.paths: {})",
                            rules.paths.join(", ")
                        ),
                    });
                }
            }
            if rules.forbid_test_deletion {
                if let Some(violation) = self.test_deleted(&file.file) {
                    violations.push(violation);
                }
                if searched_for_markers(self, path) {
                    violations.extend(added_markers(file));
                }
            }
        }
        violations
    }

    fn test_deleted(&self, file: &ChangedFile) -> Option<Violation> {
        let path = file.path.as_str();
        let message = match &file.status {
            ChangeStatus::Deleted if is_test_path(self, path) => format!(
                "`{path}` is a test file and the change deletes it; \
                 acceptance.forbid_test_deletion does not allow that"
            ),
            ChangeStatus::Renamed { from }
                if is_test_path(self, from) && !is_test_path(self, path) =>
            {
                format!(
                    "`{from}` is a test file and the change moves it out of the tests to \
                     `{path}`; acceptance.forbid_test_deletion does not allow that"
                )
            }
            _ => return None,
        };
        Some(Violation {
            kind: ViolationKind::TestDeleted,
            path: Some(path.to_owned()),
            message,
        })
    }
}

/// The `paths` globs compiled, or `None` when there are none (no restriction). Globs that
/// do not compile are left out, so they match nothing.
fn allowed_paths(patterns: &[String]) -> Option<GlobSet> {
    if patterns.is_empty() {
        return None;
    }
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        for glob in glob::compile(pattern, Flavor::Policy).unwrap_or_default() {
            builder.add(glob);
        }
    }
    Some(builder.build().unwrap_or_else(|_| GlobSet::empty()))
}

/// A way of skipping (or focusing, which skips all the others) tests in some test runner.
struct SkipMarker {
    /// A regular expression for one line. `n`, when present, names the marker in the label.
    pattern: &'static str,
    /// The marker as messages show it; `{}` stands for the `n` group without whitespace.
    label: &'static str,
    /// What the marker does when that is not plain skipping, for the message.
    note: &'static str,
}

/// Note for markers that focus some tests, and so skip all the others.
const FOCUS: &str = " (it runs only the focused tests)";

/// Note for markers that turn a failing test into a passing one.
const EXPECTED_FAILURE: &str = " (a failing test then passes)";

/// The skip markers looked for. Boundaries keep them to code tokens: `exit(` is not
/// `xit(`, `@JsonIgnore` is not `@Ignore`, an iterator's `it.skip(1)` is not Jest's
/// `it.skip('name', ...)`, and `ignore` or `skip` in prose matches nothing. `it.todo(` is
/// not a skip (it declares a test still to be written).
const SKIP_MARKERS: &[SkipMarker] = &[
    // Rust
    SkipMarker {
        pattern: r"#\[\s*ignore\s*[\]=]",
        label: "#[ignore]",
        note: "",
    },
    SkipMarker {
        pattern: r"#\[\s*cfg_attr\s*\(.*,\s*ignore\s*[)=]",
        label: "#[cfg_attr(..., ignore)]",
        note: "",
    },
    // Python: pytest and unittest
    SkipMarker {
        pattern: r"\bpytest\s*\.\s*mark\s*\.\s*(?P<n>skip|skipif)\b",
        label: "@pytest.mark.{}",
        note: "",
    },
    SkipMarker {
        pattern: r"\bpytest\s*\.\s*mark\s*\.\s*xfail\b",
        label: "@pytest.mark.xfail",
        note: EXPECTED_FAILURE,
    },
    SkipMarker {
        pattern: r"\bpytest\s*\.\s*skip\s*\(",
        label: "pytest.skip(",
        note: "",
    },
    SkipMarker {
        pattern: r"\bpytest\s*\.\s*xfail\s*\(",
        label: "pytest.xfail(",
        note: EXPECTED_FAILURE,
    },
    SkipMarker {
        pattern: r"\bunittest\s*\.\s*(?P<n>skip|skipIf|skipUnless)\b",
        label: "@unittest.{}",
        note: "",
    },
    SkipMarker {
        pattern: r"\bunittest\s*\.\s*expectedFailure\b",
        label: "@unittest.expectedFailure",
        note: EXPECTED_FAILURE,
    },
    SkipMarker {
        pattern: r"^\s*@\s*(?P<n>skip|skipIf|skipUnless)\b",
        label: "@{}",
        note: "",
    },
    SkipMarker {
        pattern: r"^\s*@\s*expectedFailure\b",
        label: "@expectedFailure",
        note: EXPECTED_FAILURE,
    },
    SkipMarker {
        pattern: r"\.\s*skipTest\s*\(",
        label: "self.skipTest(",
        note: "",
    },
    SkipMarker {
        pattern: r"\braise\s+(?:[\w.]+\.)?SkipTest\b",
        label: "raise SkipTest",
        note: "",
    },
    // JavaScript and TypeScript: Jest, Vitest, Mocha, Jasmine
    SkipMarker {
        pattern: "(?:^|[^\\w.$])(?P<n>it|test|describe|context|suite|specify)\\s*\\.\\s*skip\\s*(?:\\(\\s*(?:[\"'`]|$)|\\.\\s*each\\b)",
        label: "{}.skip(",
        note: "",
    },
    SkipMarker {
        pattern: "(?:^|[^\\w.$])(?P<n>it|test|describe|context|suite|specify)\\s*\\.\\s*only\\s*(?:\\(\\s*(?:[\"'`]|$)|\\.\\s*each\\b)",
        label: "{}.only(",
        note: FOCUS,
    },
    SkipMarker {
        pattern: "^\\s*(?P<n>fit|fdescribe|fcontext)(?:\\s*\\(\\s*(?:[\"'`]|$)|\\s+[\"'])",
        label: "{}",
        note: FOCUS,
    },
    SkipMarker {
        pattern: r"\bthis\s*\.\s*skip\s*\(\s*\)",
        label: "this.skip()",
        note: "",
    },
    // JavaScript and RSpec: x-prefixed examples and groups
    SkipMarker {
        pattern: r#"(?:^|[^\w.$])(?P<n>xit|xtest|xdescribe|xcontext|xspecify|xexample)(?:\s*\(|\s+["'{:A-Z])"#,
        label: "{}",
        note: "",
    },
    // Go
    SkipMarker {
        pattern: r"\b(?P<n>(?:t|b|f|tb)\s*\.\s*(?:Skip|SkipNow|Skipf))\s*\(",
        label: "{}(",
        note: "",
    },
    // JUnit, Kotlin
    SkipMarker {
        pattern: r"(?:^|[^\w@])@\s*(?:[\w.]+\.)?(?P<n>Disabled\w*|Ignore)\b",
        label: "@{}",
        note: "",
    },
    // C#: NUnit and MSTest, xUnit
    SkipMarker {
        pattern: r"\[\s*Ignore\s*[\](]",
        label: "[Ignore]",
        note: "",
    },
    SkipMarker {
        pattern: r"\[\s*(?P<n>Fact|Theory)\s*\(.*\bSkip\s*=",
        label: "[{}(Skip = ...)]",
        note: "",
    },
    // PHPUnit
    SkipMarker {
        pattern: r"\bmarkTestSkipped\s*\(",
        label: "markTestSkipped(",
        note: "",
    },
];

/// The compiled markers, and a set of the same patterns (in the same order) to find the
/// ones worth running on a line.
struct CompiledMarkers {
    markers: Vec<(&'static SkipMarker, Regex)>,
    set: Option<RegexSet>,
}

static MARKERS: LazyLock<CompiledMarkers> = LazyLock::new(|| {
    // A unit test proves every pattern compiles; one that did not would only be skipped.
    let markers: Vec<(&'static SkipMarker, Regex)> = SKIP_MARKERS
        .iter()
        .filter_map(|marker| Regex::new(marker.pattern).ok().map(|re| (marker, re)))
        .collect();
    let set = RegexSet::new(markers.iter().map(|(marker, _)| marker.pattern)).ok();
    CompiledMarkers { markers, set }
});

/// A skip marker found on a line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Found {
    /// The marker as messages show it, and what markers are counted by.
    text: String,
    note: &'static str,
}

/// The skip markers on one line, one per occurrence.
fn markers_in(line: &str) -> Vec<Found> {
    let compiled = &*MARKERS;
    let candidates: Vec<usize> = match &compiled.set {
        Some(set) => set.matches(line).into_iter().collect(),
        None => (0..compiled.markers.len()).collect(),
    };
    let mut labels = Vec::new();
    for index in candidates {
        let Some((marker, regex)) = compiled.markers.get(index) else {
            continue;
        };
        for captures in regex.captures_iter(line) {
            labels.push(label(marker, &captures));
        }
    }
    labels
}

fn label(marker: &SkipMarker, captures: &Captures<'_>) -> Found {
    let text = match captures.name("n") {
        Some(name) => {
            let name: String = name
                .as_str()
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            marker.label.replacen("{}", &name, 1)
        }
        None => marker.label.to_owned(),
    };
    Found {
        text,
        note: marker.note,
    }
}

/// The skip markers a file's added lines add. A marker on an added line is offset by the
/// same marker on a removed line of the file: moved or reworded, it was there before.
/// Added lines identical to a removed one are taken as the moved ones.
fn added_markers(file: &DiffFileLines) -> Vec<Violation> {
    let mut removed_count: BTreeMap<String, usize> = BTreeMap::new();
    let mut removed_lines: BTreeMap<(String, &str), usize> = BTreeMap::new();
    for line in &file.removed_lines {
        for found in markers_in(line) {
            *removed_count.entry(found.text.clone()).or_default() += 1;
            *removed_lines.entry((found.text, line.trim())).or_default() += 1;
        }
    }
    // (marker, index of the added line, the line)
    let added: Vec<(Found, usize, &str)> = file
        .added_lines
        .iter()
        .enumerate()
        .flat_map(|(index, line)| {
            markers_in(line)
                .into_iter()
                .map(move |found| (found, index, line.as_str()))
        })
        .collect();
    if added.is_empty() {
        return Vec::new();
    }

    // Per marker, how many the file gains: those on added lines minus those on removed.
    let mut gained: BTreeMap<&str, usize> = BTreeMap::new();
    for (found, _, _) in &added {
        *gained.entry(found.text.as_str()).or_default() += 1;
    }
    for (text, count) in gained.iter_mut() {
        *count = count.saturating_sub(removed_count.get(*text).copied().unwrap_or(0));
    }
    let moved: Vec<bool> = added
        .iter()
        .map(
            |(found, _, line)| match removed_lines.get_mut(&(found.text.clone(), line.trim())) {
                Some(left) if *left > 0 => {
                    *left -= 1;
                    true
                }
                _ => false,
            },
        )
        .collect();

    let path = file.file.path.as_str();
    let mut violations: Vec<Violation> = Vec::new();
    let mut last_reported: Option<(usize, &str)> = None;
    for ((found, index, line), moved) in added.iter().zip(moved) {
        if moved {
            continue;
        }
        let Some(left) = gained.get_mut(found.text.as_str()) else {
            continue;
        };
        if *left == 0 {
            continue;
        }
        *left -= 1;
        // The same marker twice on one line is one violation.
        if last_reported == Some((*index, found.text.as_str())) {
            continue;
        }
        last_reported = Some((*index, found.text.as_str()));
        violations.push(Violation {
            kind: ViolationKind::SkipMarkerAdded,
            path: Some(path.to_owned()),
            message: format!(
                "`{path}`: an added line skips tests with `{}`{}, which \
                 acceptance.forbid_test_deletion does not allow: {}",
                found.text,
                found.note,
                excerpt(line)
            ),
        });
    }
    violations
}

/// Longest added line quoted in a message, in characters.
const EXCERPT_CHARS: usize = 120;

/// A line fit to quote in a one-line message: trimmed, control characters blanked,
/// shortened with `...` when long.
fn excerpt(line: &str) -> String {
    let line = line.trim();
    let mut out: String = line
        .chars()
        .take(EXCERPT_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.chars().nth(EXCERPT_CHARS).is_some() {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_skip_marker_compiles() {
        assert_eq!(MARKERS.markers.len(), SKIP_MARKERS.len());
        assert!(MARKERS.set.is_some());
    }

    #[test]
    fn markers_are_labelled() {
        let cases: &[(&str, &[&str])] = &[
            ("#[ignore]", &["#[ignore]"]),
            (r#"# [ignore] this field"#, &[]),
            (
                "  @pytest.mark.skipif(sys.platform == 'win32')",
                &["@pytest.mark.skipif"],
            ),
            ("it.skip('a', () => {}); xit('b', f)", &["it.skip(", "xit"]),
            ("  t . Skip ( \"slow\" )", &["t.Skip("]),
            ("@org.junit.Ignore", &["@Ignore"]),
            ("@JsonIgnore", &[]),
            ("let v: Vec<_> = it.skip(1).collect();", &[]),
            ("process.exit(1)", &[]),
        ];
        for (line, expected) in cases {
            let found: Vec<String> = markers_in(line).into_iter().map(|f| f.text).collect();
            assert_eq!(found, *expected, "{line}");
        }
    }

    #[test]
    fn quoted_paths_unescape() {
        assert_eq!(
            unquote(r#""a/\303\251\t\"x\\" rest"#),
            Some(("a/é\t\"x\\".to_owned(), " rest"))
        );
        assert_eq!(unquote(r#""open"#), None);
        assert_eq!(unquote("plain"), None);
    }

    #[test]
    fn header_paths_split() {
        let cases: &[(&str, Option<&str>, Option<&str>)] = &[
            ("a/x b/y.rs b/x b/y.rs", Some("x b/y.rs"), Some("x b/y.rs")),
            (r#""a/t\tx" "b/t\tx""#, Some("t\tx"), Some("t\tx")),
            (r#"a/old "b/n\303\251w""#, Some("old"), Some("néw")),
            ("a/old b/new", Some("old"), Some("new")),
            ("garbage", None, None),
        ];
        for (header, a, b) in cases {
            let (got_a, got_b) = header_paths(header);
            assert_eq!((got_a.as_deref(), got_b.as_deref()), (*a, *b), "{header}");
        }
    }

    #[test]
    fn excerpts_are_one_short_line() {
        assert_eq!(excerpt("  x\ty  "), "x y");
        let long = "y".repeat(200);
        assert_eq!(excerpt(&long).chars().count(), EXCERPT_CHARS + 3);
    }
}
