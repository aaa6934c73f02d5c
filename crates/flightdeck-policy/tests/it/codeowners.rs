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
