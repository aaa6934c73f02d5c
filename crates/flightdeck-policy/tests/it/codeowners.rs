//! CODEOWNERS matching, on the example file from GitHub's "About code owners" page
//! (written here from its documented semantics).

use flightdeck_policy::{Codeowners, CODEOWNERS_LOCATIONS};

const GITHUB_EXAMPLE: &str = "\
# This is a comment.
# Each line is a file pattern followed by one or more owners.

# Default owners for everything in the repo, unless a later match takes precedence.
*       @global-owner1 @global-owner2

# Order is important; the last matching pattern takes the most precedence.
*.js    @js-owner #This is an inline comment.

# Emails work like handles.
*.go docs@example.com

# Teams are written @org/team-name.
*.txt @octo-org/octocats

# Any file in the build/logs directory at the root and its subdirectories.
/build/logs/ @doctocat

# docs/* matches docs/getting-started.md but not docs/build-app/troubleshooting.md.
docs/*  docs@example.com

# Any file in an apps directory anywhere in the repository.
apps/ @octocat

# Any file in the /docs directory at the root and its subdirectories.
/docs/ @doctocat

# Any change inside /scripts needs @doctocat or @octocat.
/scripts/ @doctocat @octocat

# Any file in a logs directory at any depth: /build/logs, /scripts/logs, /deeply/nested/logs.
**/logs @octocat

# /apps is owned by @octocat, except /apps/github, which has no owners.
/apps/ @octocat
/apps/github

# Later lines win: now /apps/github is owned by @doctocat.
/apps/ @octocat
/apps/github @doctocat
";

/// The same file up to the line that leaves `/apps/github` without owners.
fn without_last_block() -> String {
    let end = GITHUB_EXAMPLE
        .find("# Later lines win")
        .expect("marker in the example");
    GITHUB_EXAMPLE[..end].to_owned()
}

#[test]
fn github_example() {
    let full = Codeowners::parse(GITHUB_EXAMPLE);
    let partial = Codeowners::parse(&without_last_block());
    assert!(full.warnings().is_empty(), "{:?}", full.warnings());

    let global: &[&str] = &["@global-owner1", "@global-owner2"];
    let rows: &[(&Codeowners, &str, &[&str])] = &[
        (&full, "README.md", global),
        (&full, "src/main.rs", global),
        (&full, "src/app.js", &["@js-owner"]),
        (&full, "web/lib/deep/x.js", &["@js-owner"]),
        (&full, "main.go", &["docs@example.com"]),
        (&full, "cmd/tool/main.go", &["docs@example.com"]),
        (&full, "notes/todo.txt", &["@octo-org/octocats"]),
        // `/build/logs/` names @doctocat, but the later `**/logs` wins.
        (&full, "build/logs/out.log", &["@octocat"]),
        (&full, "build/logs/sub/x.txt", &["@octocat"]),
        (&full, "build/out.js", &["@js-owner"]),
        // `docs/*` owns direct children, but the later `/docs/` wins for all of docs.
        (&full, "docs/getting-started.md", &["@doctocat"]),
        (&full, "docs/build-app/troubleshooting.md", &["@doctocat"]),
        // `docs/*` and `/docs/` are anchored at the root.
        (&full, "guide/docs/readme.md", global),
        (&full, "apps/web/index.html", &["@octocat"]),
        (&full, "nested/apps/x.rb", &["@octocat"]),
        (&full, "apps", global),
        (&full, "apps/github/readme.md", &["@doctocat"]),
        (&full, "apps/githubber/readme.md", &["@octocat"]),
        (&full, "scripts/deploy.sh", &["@doctocat", "@octocat"]),
        (&full, "scripts/a.js", &["@doctocat", "@octocat"]),
        (&full, "scripts/logs/x.sh", &["@octocat"]),
        (&full, "deeply/nested/logs/a.txt", &["@octocat"]),
        (&full, "logs", &["@octocat"]),
        (&full, "catalogs/x.md", global),
        (&full, "./src//app.js", &["@js-owner"]),
        // A matching line with no owners means no owners.
        (&partial, "apps/github/readme.md", &[]),
        (&partial, "apps/github", &[]),
        (&partial, "apps/other/readme.md", &["@octocat"]),
        (&partial, "README.md", global),
    ];
    let mut failures = Vec::new();
    for (owners, path, expected) in rows {
        let actual = owners.owners_of(path);
        if actual != *expected {
            failures.push(format!("{path}: expected {expected:?}, got {actual:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn docs_star_does_not_own_nested_files() {
    let owners = Codeowners::parse("docs/*  docs@example.com\n");
    assert_eq!(
        owners.owners_of("docs/getting-started.md"),
        ["docs@example.com"]
    );
    assert!(owners
        .owners_of("docs/build-app/troubleshooting.md")
        .is_empty());
}

#[test]
fn matching_line_names_the_deciding_line() {
    let owners = Codeowners::parse(GITHUB_EXAMPLE);
    assert_eq!(owners.matching_line("src/app.js"), Some(8));
    assert_eq!(owners.matching_line("README.md"), Some(5));
    assert_eq!(Codeowners::parse("/a/ @x\n").matching_line("b"), None);
}

#[test]
fn github_search_order() {
    assert_eq!(
        CODEOWNERS_LOCATIONS,
        [".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS"]
    );
}

/// (CODEOWNERS text, path) -> owners: one row per rule of GitHub's reading.
#[test]
fn owners_table() {
    #[rustfmt::skip]
    let rows: &[(&str, &str, &[&str])] = &[
        // The last matching line wins; no match means no owners.
        ("* @a\n*.rs @b\n", "src/main.rs", &["@b"]),
        ("*.rs @b\n* @a\n", "src/main.rs", &["@a"]),
        ("/docs/ @a\n", "src/main.rs", &[]),
        ("", "a.rs", &[]),
        // A matching line without owners leaves the path unowned.
        ("* @a\n/vendor/\n", "vendor/x.c", &[]),
        // Owners: users, teams and emails, case kept as written.
        ("* @a @Org/Team b@example.com\n", "x", &["@a", "@Org/Team", "b@example.com"]),
        // A `#` token after the pattern starts a comment.
        ("*.js @a # @b\n", "x.js", &["@a"]),
        ("*.js @a #@b\n", "x.js", &["@a"]),
        ("*.js # @a\n", "x.js", &[]),
        // Paths are case-sensitive, as on GitHub.
        ("*.md @a\n", "README.MD", &[]),
        ("/Docs/ @a\n", "docs/x.md", &[]),
        // `\ ` is a space inside the pattern, not its end.
        ("docs/My\\ Guide.md @a\n", "docs/My Guide.md", &["@a"]),
        ("docs/My\\ Guide.md @a\n", "docs/My", &[]),
        ("/path\\ with\\ spaces/ @a\n", "path with spaces/x.txt", &["@a"]),
        ("a\\  @a\n", "a ", &["@a"]),
        // `\[` and `\]` are literal brackets (Next.js routes).
        ("/pages/\\[id\\].tsx @a\n", "pages/[id].tsx", &["@a"]),
        ("/pages/\\[id\\].tsx @a\n", "pages/i.tsx", &[]),
        ("/app/\\[org\\]/ @a\n", "app/[org]/page.tsx", &["@a"]),
        // Other escapes make the character literal too.
        ("\\*.md @a\n", "*.md", &["@a"]),
        ("\\*.md @a\n", "README.md", &[]),
        ("a\\#b @a\n", "a#b", &["@a"]),
        ("notes#1 @a\n", "notes#1", &["@a"]),
        // Skipped lines do not apply; earlier lines still do.
        ("* @a\n[ab].md @b\n", "a.md", &["@a"]),
        ("* @a\n[ab].md @b\n", "[ab].md", &["@a"]),
        ("* @a\n!x.md @b\n", "x.md", &["@a"]),
        ("* @a\n\\#x @b\n", "#x", &["@a"]),
        ("* @a\n*.rs @b alice\n", "x.rs", &["@a"]),
        ("* @a\n*.rs @b codeowners\n", "x.rs", &["@a"]),
        ("* @a\n/ @b\n", "x", &["@a"]),
        // Directories, anchoring and `*` versus `**`.
        ("docs/* @a\n", "docs/x/y.md", &[]),
        ("docs/** @a\n", "docs/x/y.md", &["@a"]),
        ("logs/ @a\n", "a/logs/b/c", &["@a"]),
        ("/logs/ @a\n", "a/logs/b", &[]),
        ("src/*.rs @a\n", "src/x/y.rs", &[]),
        ("*.rs @a\n", "src/x/y.rs", &["@a"]),
        // A BOM and CRLF line ends are tolerated.
        ("\u{feff}* @a\r\n*.rs @b\r\n", "x.rs", &["@b"]),
    ];
    let mut failures = Vec::new();
    for (index, (text, path, expected)) in rows.iter().enumerate() {
        let owners = Codeowners::parse(text);
        let actual = owners.owners_of(path);
        if actual != *expected {
            failures.push(format!(
                "row {index}: {text:?} on {path:?}: expected {expected:?}, got {actual:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Lines -> the warning they produce (line number, text and reason), or none.
#[test]
fn warnings_table() {
    #[rustfmt::skip]
    let rows: &[(&str, Option<&str>)] = &[
        ("* @a", None),
        ("# comment", None),
        ("   ", None),
        ("/apps/github", None),
        ("docs/My\\ Guide.md @a", None),
        ("/pages/\\[id\\].tsx @a", None),
        ("*.js @a #comment", None),
        (
            "!keep.txt @a",
            Some("`!keep.txt`: negation (`!`) does not work in CODEOWNERS; give the exception its own line, after the broader one"),
        ),
        (
            "\\#notes.md @a",
            Some("`\\#notes.md`: escaping a leading `#` with `\\` does not work in CODEOWNERS (GitHub documents it as unsupported)"),
        ),
        (
            "/pages/[id].tsx @a",
            Some("`/pages/[id].tsx`: character ranges (`[ ]`) do not work in CODEOWNERS, and GitHub requires `[` and `]` to be escaped; for literal brackets write `/pages/\\[id\\].tsx`"),
        ),
        (
            "*.[ch] @a",
            Some("`*.[ch]`: character ranges (`[ ]`) do not work in CODEOWNERS, and GitHub requires `[` and `]` to be escaped; for literal brackets write `*.\\[ch\\]`"),
        ),
        (
            "a] @a",
            Some("`a]`: character ranges (`[ ]`) do not work in CODEOWNERS, and GitHub requires `[` and `]` to be escaped; for literal brackets write `a\\]`"),
        ),
        (
            "*.rs alice",
            Some("`alice` is not a valid owner (expected @user, @org/team or an email); GitHub skips the whole line, so its other owners do not apply either"),
        ),
        (
            "*.rs @a alice @b/c/d",
            Some("`alice`, `@b/c/d` are not valid owners (expected @user, @org/team or an email); GitHub skips the whole line, so its other owners do not apply either"),
        ),
        (
            "*.rs codeowners",
            Some("`codeowners` is not a valid owner (expected @user, @org/team or an email); GitHub skips the whole line, so its other owners do not apply either"),
        ),
        (
            "*.rs a@b@c",
            Some("`a@b@c` is not a valid owner (expected @user, @org/team or an email); GitHub skips the whole line, so its other owners do not apply either"),
        ),
        (
            "/ @a",
            Some("the pattern `/` never matches anything; did you mean `*`?"),
        ),
        (
            "a***b @a",
            Some("invalid pattern `a***b`: `***` is not a valid wildcard"),
        ),
        (
            "docs\\",
            Some("invalid pattern `docs\\`: the pattern ends with a lone `\\`"),
        ),
    ];
    let mut failures = Vec::new();
    for (text, expected) in rows {
        // Line 3, after a valid line and a comment, so the number is checked too.
        let source = format!("* @all\n# c\n{text}\n");
        let owners = Codeowners::parse(&source);
        let actual: Vec<(usize, &str, &str)> = owners
            .warnings()
            .iter()
            .map(|w| (w.line, w.text.as_str(), w.reason.as_str()))
            .collect();
        let expected: Vec<(usize, &str, &str)> =
            expected.iter().map(|reason| (3, *text, *reason)).collect();
        if actual != expected {
            failures.push(format!(
                "{text:?}\n  expected {expected:?}\n  actual   {actual:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn warnings_display_line_and_reason() {
    let owners = Codeowners::parse("* @a\n\n\n\n\n\n!x @b\n");
    let shown: Vec<String> = owners.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        ["CODEOWNERS line 7: skipped: `!x`: negation (`!`) does not work in CODEOWNERS; give the exception its own line, after the broader one"]
    );
}
