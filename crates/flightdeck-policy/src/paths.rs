//! Lexical normalisation of repo-relative paths.
//!
//! No IO: symlinks cannot be seen from here, so confining a write is also the workspace
//! runtime's job. This module only makes sure that `./a//b` and `a/b` are judged alike
//! and that a path that is absolute or climbs out with `..` is recognised.

use std::borrow::Cow;

/// Why a path cannot be written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathProblem {
    /// `/etc/passwd`, `C:\x`: not relative to the workspace.
    Absolute,
    /// `../x`, `a/../../x`: climbs out of the workspace.
    Escapes,
    /// `.git/hooks/pre-commit`: git's own data, which can run code.
    GitDir,
    /// The empty path, the workspace root itself, or a path with a NUL byte.
    Invalid,
}

/// Normalise a path an agent wants to write, or say why it may not be written.
pub(crate) fn normalize_for_write(path: &str) -> Result<String, PathProblem> {
    if path.contains('\0') {
        return Err(PathProblem::Invalid);
    }
    if is_absolute(path) {
        return Err(PathProblem::Absolute);
    }
    let mut parts: Vec<&str> = Vec::new();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(PathProblem::Escapes);
                }
            }
            other => parts.push(other),
        }
    }
    if parts.is_empty() {
        return Err(PathProblem::Invalid);
    }
    // Any `.git` component, not only the first: a nested repository's git dir runs hooks
    // just the same. Case-insensitive because macOS and Windows file systems are.
    if parts
        .iter()
        .any(|component| component.eq_ignore_ascii_case(".git"))
    {
        return Err(PathProblem::GitDir);
    }
    Ok(parts.join("/"))
}

/// Normalise a repo-relative path for matching (`./a//b/` -> `a/b`), leaving clean paths
/// untouched. Never fails: a `..` that would climb out is dropped, since diffs and
/// CODEOWNERS lookups never legitimately contain one.
pub(crate) fn normalize_lenient(path: &str) -> Cow<'_, str> {
    if is_clean(path) {
        return Cow::Borrowed(path);
    }
    let mut parts: Vec<&str> = Vec::new();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    Cow::Owned(parts.join("/"))
}

fn is_clean(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.ends_with('/')
        && path
            .split('/')
            .all(|component| !matches!(component, "" | "." | ".."))
}

fn is_absolute(path: &str) -> bool {
    if path.starts_with('/') || path.starts_with('\\') || path.starts_with('~') {
        return true;
    }
    // `C:\x` or `C:/x`: absolute on Windows, and never a sensible repo path elsewhere.
    let bytes = path.as_bytes();
    matches!(bytes, [drive, b':', b'/' | b'\\', ..] if drive.is_ascii_alphabetic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_paths_are_normalised_or_refused() {
        assert_eq!(normalize_for_write("./a//b/./c"), Ok("a/b/c".to_owned()));
        assert_eq!(normalize_for_write("a/../b"), Ok("b".to_owned()));
        assert_eq!(normalize_for_write("../x"), Err(PathProblem::Escapes));
        assert_eq!(normalize_for_write("a/../../x"), Err(PathProblem::Escapes));
        assert_eq!(
            normalize_for_write("/etc/passwd"),
            Err(PathProblem::Absolute)
        );
        assert_eq!(normalize_for_write("C:\\x"), Err(PathProblem::Absolute));
        assert_eq!(normalize_for_write("~/.ssh/id"), Err(PathProblem::Absolute));
        assert_eq!(normalize_for_write(".git/config"), Err(PathProblem::GitDir));
        assert_eq!(
            normalize_for_write("./.GIT/hooks/x"),
            Err(PathProblem::GitDir)
        );
        assert_eq!(normalize_for_write("a/.git/x"), Err(PathProblem::GitDir));
        assert_eq!(normalize_for_write("a/../.git/x"), Err(PathProblem::GitDir));
        assert_eq!(
            normalize_for_write(".gitignore"),
            Ok(".gitignore".to_owned())
        );
        assert_eq!(normalize_for_write("."), Err(PathProblem::Invalid));
        assert_eq!(normalize_for_write(""), Err(PathProblem::Invalid));
        assert_eq!(normalize_for_write("a\0b"), Err(PathProblem::Invalid));
    }

    #[test]
    fn lenient_normalisation_borrows_clean_paths() {
        assert!(matches!(
            normalize_lenient("a/b.rs"),
            Cow::Borrowed("a/b.rs")
        ));
        assert_eq!(normalize_lenient("./a//b/"), "a/b");
        assert_eq!(normalize_lenient("/a/./b"), "a/b");
        assert_eq!(normalize_lenient("../a"), "a");
    }
}
