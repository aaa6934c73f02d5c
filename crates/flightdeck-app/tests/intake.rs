//! Intake reads what governs a mission at its base commit: an edit that is not committed
//! governs nothing; a remote repository is fetched and read the same way.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use flightdeck_app::intake::{intake, policy_at, RepoSource, RunRequest};
use flightdeck_app::ErrorKind;
use flightdeck_testkit::TestRepo;

const TEMPLATE: &str = "description = \"committed\"\n[[steps]]\nrun = \"true\"\n";
const POLICY: &str = "[defaults]\npublish = \"allow\"\n";

fn repo() -> TestRepo {
    TestRepo::with_files(&[
        ("README.md", "# r\n"),
        (".flightdeck/missions/t.toml", TEMPLATE),
        (".flightdeck/policy.toml", POLICY),
        (".github/CODEOWNERS", "* @alice\n"),
    ])
}

fn ask(repo: RepoSource, template: &str, base: &str) -> RunRequest {
    RunRequest {
        template: template.to_string(),
        repo,
        base: base.to_string(),
        params: BTreeMap::new(),
        requested_by: "@carol".into(),
        origin: flightdeck_engine::MissionOrigin::from_source(
            flightdeck_core::event::MissionSource::Cli,
        ),
        git_auth: None,
    }
}

fn checkout(repo: &TestRepo) -> RepoSource {
    RepoSource::Checkout(repo.path().to_path_buf())
}

#[test]
fn uncommitted_edits_to_the_template_policy_and_codeowners_govern_nothing() {
    let repo = repo();
    let data = tempfile::tempdir().unwrap();
    repo.write_files(&[
        (
            ".flightdeck/missions/t.toml",
            "description = \"uncommitted\"\n[[steps]]\nrun = \"rm -rf .\"\n",
        ),
        (
            ".flightdeck/policy.toml",
            "[defaults]\ncommand = \"deny\"\n",
        ),
        (".github/CODEOWNERS", "* @mallory\n"),
    ]);
    let made = intake(data.path(), &ask(checkout(&repo), "t", "HEAD")).unwrap();
    assert_eq!(made.request.template_source, TEMPLATE);
    assert_eq!(made.request.policy_source, POLICY);
    assert_eq!(
        made.request.codeowners.as_ref().unwrap().source,
        "* @alice\n"
    );
    assert_eq!(made.base_commit, repo.git(&["rev-parse", "HEAD"]));
    // Once committed, they do.
    let head = repo.commit_all("edits");
    let made = intake(data.path(), &ask(checkout(&repo), "t", "HEAD")).unwrap();
    assert!(made.request.template_source.contains("uncommitted"));
    assert!(made.request.policy_source.contains("deny"));
    assert_eq!(made.base_commit, head);
    // And an older base reads the older files.
    let made = intake(data.path(), &ask(checkout(&repo), "t", "HEAD~1")).unwrap();
    assert_eq!(made.request.template_source, TEMPLATE);
}

#[test]
fn a_template_that_is_not_committed_is_refused_with_a_hint() {
    let repo = repo();
    let data = tempfile::tempdir().unwrap();
    repo.write_files(&[(".flightdeck/missions/new.toml", TEMPLATE)]);
    let error = intake(data.path(), &ask(checkout(&repo), "new", "HEAD")).unwrap_err();
    assert_eq!(error.kind, ErrorKind::NotFound);
    assert!(
        error.message.contains("no template `new`"),
        "{}",
        error.message
    );
    assert!(error.hint.unwrap().contains("commit it first"));
    // By path inside the repository: read at the base commit too.
    let path = repo.path().join(".flightdeck/missions/new.toml");
    let error = intake(
        data.path(),
        &ask(checkout(&repo), path.to_str().unwrap(), "HEAD"),
    )
    .unwrap_err();
    assert!(
        error.message.contains("is not in the base commit"),
        "{}",
        error.message
    );
    // A template outside the repository is read from its file.
    let outside = tempfile::tempdir().unwrap();
    let file = outside.path().join("elsewhere.toml");
    std::fs::write(
        &file,
        "description = \"outside\"\n[[steps]]\nrun = \"true\"\n",
    )
    .unwrap();
    let made = intake(
        data.path(),
        &ask(checkout(&repo), file.to_str().unwrap(), "HEAD"),
    )
    .unwrap();
    assert!(made.request.template_source.contains("outside"));
    assert_eq!(made.request.template_name, "elsewhere");
}

#[test]
fn the_policy_is_the_base_commits_and_says_which_commit() {
    let repo = repo();
    let first = repo.git(&["rev-parse", "HEAD"]);
    repo.write_files(&[(
        ".flightdeck/policy.toml",
        "[defaults]\npublish = \"deny\"\n",
    )]);
    let at = policy_at(repo.path(), &first).unwrap();
    assert_eq!(at.source, POLICY);
    assert_eq!(at.commit, first);
    // A commit without a policy file has the built-in policy, and says so.
    let bare = TestRepo::with_files(&[("README.md", "# r\n")]);
    let head = bare.git(&["rev-parse", "HEAD"]);
    let at = policy_at(bare.path(), &head).unwrap();
    assert_eq!(at.source, flightdeck_policy::BUILTIN_POLICY_TOML);
    assert!(
        at.origin.contains("no .flightdeck/policy.toml at"),
        "{}",
        at.origin
    );
}

#[test]
fn codeowners_lines_github_would_skip_come_back_as_warnings() {
    let repo = TestRepo::with_files(&[
        (".flightdeck/missions/t.toml", TEMPLATE),
        (
            ".github/CODEOWNERS",
            "* @alice\n/pages/[id].tsx @bob\n!docs/ @carol\n",
        ),
    ]);
    let data = tempfile::tempdir().unwrap();
    let made = intake(data.path(), &ask(checkout(&repo), "t", "HEAD")).unwrap();
    let lines: Vec<usize> = made.codeowners_warnings.iter().map(|w| w.line).collect();
    assert_eq!(lines, [2, 3], "{:?}", made.codeowners_warnings);
}

#[test]
fn a_remote_repository_is_fetched_and_read_at_the_base() {
    let origin = repo();
    let data = tempfile::tempdir().unwrap();
    let url = format!("file://{}", origin.path().display());
    let made = intake(
        data.path(),
        &ask(RepoSource::Remote(url.clone()), "t", "main"),
    )
    .unwrap();
    assert_eq!(made.base_commit, origin.git(&["rev-parse", "HEAD"]));
    assert_eq!(made.request.template_source, TEMPLATE);
    assert!(
        made.repo.starts_with(data.path().join("repos")),
        "{}",
        made.repo.display()
    );
    // A new commit upstream is fetched for the next mission; the old one is still there.
    let old = made.base_commit.clone();
    origin.write_files(&[(
        ".flightdeck/missions/t.toml",
        "description = \"v2\"\n[[steps]]\nrun = \"true\"\n",
    )]);
    let new = origin.commit_all("v2");
    let made = intake(
        data.path(),
        &ask(RepoSource::Remote(url.clone()), "t", "main"),
    )
    .unwrap();
    assert_eq!(made.base_commit, new);
    assert!(made.request.template_source.contains("v2"));
    let made = intake(data.path(), &ask(RepoSource::Remote(url), "t", &old)).unwrap();
    assert_eq!(made.request.template_source, TEMPLATE);
    // A base the remote does not have is bad input naming both.
    let error = intake(
        data.path(),
        &ask(
            RepoSource::Remote(format!("file://{}", origin.path().display())),
            "t",
            "no-such-branch",
        ),
    )
    .unwrap_err();
    assert_eq!(error.kind, ErrorKind::BadInput);
    assert!(
        error.message.contains("no-such-branch"),
        "{}",
        error.message
    );
}

#[test]
fn a_remote_url_is_named_by_the_path_at_its_end() {
    use flightdeck_app::intake::url_path_components;
    for (url, path) in [
        ("https://github.com/acme/textstats.git", "acme/textstats"),
        ("https://github.com/acme/textstats/", "acme/textstats"),
        ("git@github.com:acme/textstats.git", "acme/textstats"),
        ("ssh://git@host:2222/acme/textstats", "acme/textstats"),
        (
            "file:///srv/git/acme/textstats.git",
            "srv/git/acme/textstats",
        ),
        ("/srv/git/acme/textstats", "srv/git/acme/textstats"),
        ("../acme/textstats", "../acme/textstats"),
        ("https://gitlab.com/group/sub/name.git", "group/sub/name"),
        ("https://host", ""),
    ] {
        assert_eq!(url_path_components(url).join("/"), path, "{url}");
    }
}

#[test]
fn a_remote_url_is_recorded_without_its_user_and_password() {
    use flightdeck_app::intake::without_credentials;
    for (url, kept) in [
        (
            "https://x-access-token:ghs_secret@github.com/acme/textstats.git",
            "https://github.com/acme/textstats.git",
        ),
        ("https://user@host/a/b@c.git", "https://host/a/b@c.git"),
        (
            "ssh://git@host:2222/acme/textstats",
            "ssh://host:2222/acme/textstats",
        ),
        (
            "git@github.com:acme/textstats.git",
            "git@github.com:acme/textstats.git",
        ),
        (
            "file:///srv/git/acme/textstats",
            "file:///srv/git/acme/textstats",
        ),
        (" /srv/git/x ", "/srv/git/x"),
    ] {
        assert_eq!(without_credentials(url), kept, "{url}");
    }
}

#[test]
fn scope_entries_are_owner_name_or_an_absolute_path() {
    use flightdeck_app::config::ScopedRepo;
    for (entry, ok) in [
        ("acme/textstats", true),
        ("group/sub/name", true),
        ("/srv/checkouts/textstats", true),
        ("textstats", false),
        ("acme/", false),
        ("/", true),
        ("acme/../x", false),
        ("acme/text stats", false),
        ("https://github.com/acme/textstats", false),
        ("", false),
    ] {
        assert_eq!(ScopedRepo::parse(entry).is_some(), ok, "{entry:?}");
    }
}
