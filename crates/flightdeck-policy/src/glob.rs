//! Gitignore-style path patterns, compiled to `globset` globs.
//!
//! Both the policy (`[classes]`, `paths`) and CODEOWNERS use the gitignore rules:
//! - a leading `/` anchors the pattern at the repository root;
//! - a pattern with no `/` except a trailing one matches at any depth (`*.md`, `logs/`);
//! - a pattern with a `/` in the middle is relative to the root (`docs/*`);
//! - a trailing `/` matches a directory, that is, everything under it;
//! - `*` and `?` do not cross `/`; `**` does.
//!
//! In CODEOWNERS a backslash makes the next character literal (`\ ` a space, `\[` a
//! bracket), and an unescaped `[` or `]` is refused: GitHub has no character ranges.
//!
//! The flavours differ in one point: whether a pattern also matches the contents of a
//! directory it names. CODEOWNERS follows GitHub: every pattern does except one whose
//! last component is exactly `*` (GitHub documents that `docs/*` does not own
//! `docs/a/b.md`). Policy globs do so only when the last component is a plain name
//! (`docs` is `docs/`), while `**/*.md` matches files named `*.md`; that keeps the
//! compiled sets on globset's fast literal/extension strategies.

use globset::{Glob, GlobBuilder};

/// Which set of matching rules a pattern follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    Policy,
    Codeowners,
}

/// Compile one gitignore-style pattern into the globs that together implement it.
/// The error is a lowercase reason.
pub(crate) fn compile(pattern: &str, flavor: Flavor) -> Result<Vec<Glob>, String> {
    // A CODEOWNERS pattern arrives as one token, and may end in an escaped space (`a\ `)
    // that trimming would cut in half.
    let pattern = match flavor {
        Flavor::Policy => pattern.trim(),
        Flavor::Codeowners => pattern,
    };
    if pattern.is_empty() {
        return Err("empty pattern".to_owned());
    }
    if pattern.starts_with('!') {
        return Err("negated patterns (`!`) are not supported".to_owned());
    }
    if pattern.contains("***") {
        return Err("`***` is not a valid wildcard".to_owned());
    }
    let anchored = pattern.starts_with('/');
    let body = pattern.strip_prefix('/').unwrap_or(pattern);
    let directory_only = body.ends_with('/');
    let body = body.trim_end_matches('/');
    if body.is_empty() {
        return Err("the pattern matches nothing".to_owned());
    }

    let mut glob = String::with_capacity(body.len() + 8);
    if !anchored && !body.contains('/') && !body.starts_with("**") {
        glob.push_str("**/");
    }
    let mut chars = body.chars();
    while let Some(ch) = chars.next() {
        match ch {
            // gitignore: a backslash makes the next character literal (`\ `, `\[`, `\*`).
            '\\' if flavor == Flavor::Codeowners => {
                let Some(escaped) = chars.next() else {
                    return Err("the pattern ends with a lone `\\`".to_owned());
                };
                glob.push('\\');
                glob.push(escaped);
            }
            // Braces are not gitignore syntax; match them literally.
            '{' | '}' => {
                glob.push('\\');
                glob.push(ch);
            }
            // GitHub does not support character ranges in CODEOWNERS and refuses the line.
            '[' | ']' if flavor == Flavor::Codeowners => {
                return Err(
                    "character ranges (`[ ]`) are not supported; escape brackets as `\\[` and `\\]`"
                        .to_owned(),
                );
            }
            _ => glob.push(ch),
        }
    }

    let last = body.rsplit('/').next().unwrap_or(body);
    let also_contents = match flavor {
        Flavor::Codeowners => last != "*" && last != "**",
        Flavor::Policy => !last.contains(['*', '?', '[']),
    };
    let mut globs = Vec::with_capacity(2);
    if directory_only {
        globs.push(build(&format!("{glob}/**"))?);
    } else {
        globs.push(build(&glob)?);
        if also_contents {
            globs.push(build(&format!("{glob}/**"))?);
        }
    }
    Ok(globs)
}

fn build(glob: &str) -> Result<Glob, String> {
    GlobBuilder::new(glob)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|error| error.kind().to_string().to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use globset::GlobSetBuilder;

    fn matches(pattern: &str, flavor: Flavor, path: &str) -> bool {
        let mut builder = GlobSetBuilder::new();
        for glob in compile(pattern, flavor).unwrap() {
            builder.add(glob);
        }
        builder.build().unwrap().is_match(path)
    }

    #[test]
    fn gitignore_rules() {
        use Flavor::*;
        let cases: &[(&str, Flavor, &str, bool)] = &[
            ("*.md", Policy, "README.md", true),
            ("*.md", Policy, "a/b/c.md", true),
            ("*.md", Policy, "a.md/x", false),
            ("*.md", Codeowners, "a.md/x", true),
            ("docs/**", Policy, "docs/a/b.png", true),
            ("docs/**", Policy, "x/docs/a", false),
            ("docs", Policy, "x/docs/a", true),
            ("docs/", Policy, "docs", false),
            ("/docs/", Policy, "docs/a", true),
            ("/docs/", Policy, "x/docs/a", false),
            ("docs/*", Codeowners, "docs/a.md", true),
            ("docs/*", Codeowners, "docs/a/b.md", false),
            ("apps/", Codeowners, "x/apps/y/z", true),
            ("/apps/github", Codeowners, "apps/github/a", true),
            ("/apps/github", Codeowners, "apps/githubx", false),
            ("**/logs", Codeowners, "a/b/logs/c", true),
            ("**/logs", Codeowners, "logs", true),
            ("*", Codeowners, "a/b/c", true),
            ("a/**/b", Policy, "a/b", true),
            ("a/**/b", Policy, "a/x/y/b", true),
            ("{x}", Policy, "{x}", true),
            ("\\[ab\\]", Codeowners, "[ab]", true),
            ("\\[ab\\]", Codeowners, "a", false),
            ("a\\ b", Codeowners, "x/a b", true),
            ("a\\ ", Codeowners, "a ", true),
            ("a\\ ", Codeowners, "a", false),
            ("\\*.md", Codeowners, "*.md", true),
            ("\\*.md", Codeowners, "a.md", false),
            ("a\\#b", Codeowners, "a#b", true),
            ("\\!x", Codeowners, "!x", true),
            ("[ab]", Policy, "a", true),
            ("?.rs", Policy, "a.rs", true),
            ("?.rs", Policy, "ab.rs", false),
        ];
        for (pattern, flavor, path, expected) in cases {
            assert_eq!(
                matches(pattern, *flavor, path),
                *expected,
                "{pattern} ({flavor:?}) vs {path}"
            );
        }
    }

    #[test]
    fn bad_patterns_are_refused() {
        for pattern in ["", "  ", "!x", "/", "a***b"] {
            assert!(compile(pattern, Flavor::Policy).is_err(), "{pattern:?}");
        }
        for pattern in ["[ab]", "a]", "a\\", "!x", "/"] {
            assert!(compile(pattern, Flavor::Codeowners).is_err(), "{pattern:?}");
        }
    }
}
