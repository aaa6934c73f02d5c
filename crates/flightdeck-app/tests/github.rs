//! `[github]` in the installation config, and the GitHub forge end to end: a mission's
//! commit pushed over smart HTTP to a repository the fake GitHub hosts, its draft pull
//! request opened, found again, and a follow-up pushed on the pull request's branch. Every
//! REST request is held to GitHub's description by the fake (`fake.assert_clean()`); the
//! forge tests need `FLIGHTDECK_GITHUB_SPECS` (`scripts/github-specs`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use flightdeck_app::config::{Config, GitHubMode};
use flightdeck_app::github::{GitHubApp, GitHubForge};
use flightdeck_app::intake::{intake, FetchingRepos, RepoSource, RunRequest};
use flightdeck_app::{App, AppOptions, ErrorKind};
use flightdeck_core::event::{GitHubOrigin, MissionCreated};
use flightdeck_engine::ports::{Forge, Proposal};
use flightdeck_engine::{MissionOrigin, RepoPort};
use flightdeck_testkit::fake_github::FakeGitHub;
use flightdeck_testkit::{git_in, TestRepo};
use flightdeck_workspace::{SnapshotStore, Worktree};

// ---------------------------------------------------------------------------------------------
// Keys

struct Keys {
    /// An RSA key as GitHub hands them out (PKCS#1).
    rsa: String,
    /// An EC key (P-256), which a GitHub App never has.
    ec: String,
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        #[rustfmt::skip]
        openssl(d, &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "pkcs8.pem"]);
        openssl(
            d,
            &["rsa", "-in", "pkcs8.pem", "-traditional", "-out", "rsa.pem"],
        );
        #[rustfmt::skip]
        openssl(d, &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "ec.pem"]);
        let read = |name: &str| std::fs::read_to_string(d.join(name)).unwrap();
        Keys {
            rsa: read("rsa.pem"),
            ec: read("ec.pem"),
        }
    })
}

/// A directory with `etc/keys/app.pem` (RSA) and `etc/keys/ec.pem` (EC), where configs are
/// written as `etc/config.toml`.
fn key_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let keys_dir = dir.path().join("etc/keys");
    std::fs::create_dir_all(&keys_dir).unwrap();
    std::fs::write(keys_dir.join("app.pem"), &keys().rsa).unwrap();
    std::fs::write(keys_dir.join("ec.pem"), &keys().ec).unwrap();
    dir
}

// ---------------------------------------------------------------------------------------------
// Config

#[test]
fn a_bad_github_section_is_refused_naming_the_file_line_and_key_with_a_hint() {
    let dir = key_dir();
    let config = dir.path().join("etc/config.toml");
    let ok_key = "private_key_file = \"keys/app.pem\"";
    let secret = "webhook_secret_env = \"GITHUB_WEBHOOK_SECRET\"";
    // (what, the config, where the error points, what it says)
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "missing key file",
            format!("[github]\napp_id = 1\n{secret}\nprivate_key_file = \"keys/nope.pem\"\n"),
            "config.toml:4: [github] private_key_file",
            "cannot read it",
        ),
        (
            "an EC key",
            format!("[github]\napp_id = 1\nprivate_key_file = \"keys/ec.pem\"\n{secret}\n"),
            "config.toml:3: [github] private_key_file",
            "not RSA",
        ),
        (
            "a key file that is no key",
            format!("[github]\napp_id = 1\nprivate_key_file = \"config.toml\"\n{secret}\n"),
            "config.toml:3: [github] private_key_file",
            "not PEM",
        ),
        (
            "unknown key",
            format!("[github]\napp_id = 1\n{ok_key}\n{secret}\nwebhook_secret = \"hunter2\"\n"),
            "config.toml:5:",
            "unknown field `webhook_secret`",
        ),
        (
            "poll_seconds too small",
            format!("\n[github]\napp_id = 1\n{ok_key}\nmode = \"poll\"\npoll_seconds = 5\n"),
            "config.toml:6: [github] poll_seconds",
            "= 5: polls more often than every 10 seconds",
        ),
        (
            "webhook mode without its secret",
            format!("[github]\napp_id = 1\n{ok_key}\n"),
            "config.toml:1: [github] webhook_secret_env",
            "is missing",
        ),
        (
            "an unknown mode",
            format!("[github]\napp_id = 1\n{ok_key}\nmode = \"push\"\n"),
            "config.toml:4:",
            "unknown variant `push`",
        ),
        (
            "a negative app id",
            format!("[github]\napp_id = -3\n{ok_key}\n{secret}\n"),
            "config.toml:2:",
            "[github] app_id = -3: not an App id",
        ),
        (
            "app id zero",
            format!("[github]\napp_id = 0\n{ok_key}\n{secret}\n"),
            "config.toml:2:",
            "[github] app_id = 0: not an App id",
        ),
        (
            "missing app id",
            format!("[github]\n{ok_key}\n{secret}\n"),
            "config.toml:1:",
            "missing field `app_id`",
        ),
        (
            "a label prefix with a colon",
            format!("[github]\napp_id = 1\n{ok_key}\n{secret}\ntrigger_label = \"fd:run\"\n"),
            "config.toml:5: [github] trigger_label",
            "not a label prefix",
        ),
        (
            "an api_url that is not http",
            format!("[github]\napp_id = 1\n{ok_key}\n{secret}\napi_url = \"ftp://github\"\n"),
            "config.toml:5: [github] api_url",
            "not an http(s) URL",
        ),
    ];
    for (what, text, at, says) in cases {
        std::fs::write(&config, &text).unwrap();
        let Err(e) = Config::load(&config, false) else {
            panic!("{what}: accepted:\n{text}");
        };
        assert_eq!(e.kind, ErrorKind::BadInput, "{what}");
        let expected_at = format!("{}/{at}", dir.path().join("etc").display());
        assert!(
            e.message.starts_with(&expected_at),
            "{what}: {} does not start with {expected_at}",
            e.message
        );
        assert!(e.message.contains(says), "{what}: {}", e.message);
        assert!(e.hint.is_some(), "{what}: no hint");
        assert!(!e.message.contains("PRIVATE KEY"), "{what}: {}", e.message);
    }
}

#[test]
fn a_relative_key_path_is_relative_to_the_config_files_directory() {
    let dir = key_dir();
    let data = dir.path().join("data");
    let config = dir.path().join("etc/config.toml");
    std::fs::write(
        &config,
        "[github]\napp_id = 12345\nprivate_key_file = \"keys/app.pem\"\nmode = \"poll\"\n",
    )
    .unwrap();
    // From another directory than the config's, the key is still found beside it.
    let app = App::open(AppOptions {
        data_dir: Some(data),
        config: Some(config),
        ..AppOptions::default()
    })
    .unwrap();
    let github = app.github.clone().expect("[github] makes the App");
    assert_eq!(
        github.key_path(),
        dir.path().join("etc/keys/app.pem").as_path()
    );
    assert_eq!(github.app_id(), 12345);
    assert_eq!(github.mode(), GitHubMode::Poll);
    assert_eq!(github.api_url(), "https://api.github.com");
    assert_eq!(github.trigger_label(), "flightdeck");
    assert_eq!(github.poll_interval(), std::time::Duration::from_secs(60));
    assert_eq!(github.webhook_secret_env(), None);
    // The key is hidden from sandboxes, and shown by no Debug.
    assert!(app
        .workspace
        .hidden_files
        .contains(&dir.path().join("etc/keys/app.pem")));
    let shown = format!("{github:?} {:?}", app.config);
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    // Without [github], nothing is made.
    let plain = tempfile::tempdir().unwrap();
    let app = App::open(AppOptions {
        data_dir: Some(plain.path().to_path_buf()),
        ..AppOptions::default()
    })
    .unwrap();
    assert!(app.github.is_none());
}

// ---------------------------------------------------------------------------------------------
// The forge against the fake GitHub

const APP_ID: u64 = 31_337;
const INSTALLATION: u64 = 4_242;
const REPO: &str = "acme/widgets";
const TEMPLATE: &str = "description = \"widgets\"\n[[steps]]\nrun = \"true\"\n";

struct World {
    fake: Arc<FakeGitHub>,
    app: Arc<GitHubApp>,
    forge: GitHubForge,
    /// Holds the key, the config, the bare repository and the data directory.
    dir: tempfile::TempDir,
    clone_url: String,
}

impl World {
    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    async fn auth(&self) -> String {
        self.app.git_auth_header(INSTALLATION).await.unwrap()
    }

    /// The installation's token now (to check it is in no message).
    async fn token(&self) -> String {
        self.app
            .installation_token(INSTALLATION)
            .await
            .unwrap()
            .secret()
            .to_string()
    }

    fn origin(&self, follow_up: Option<(u64, &str)>) -> GitHubOrigin {
        GitHubOrigin {
            installation_id: INSTALLATION,
            repository: REPO.to_string(),
            issue: 7,
            requested_by_login: "alice".to_string(),
            base_branch: "main".to_string(),
            pull_request: follow_up.map(|(n, _)| n),
            branch: follow_up.map(|(_, b)| b.to_string()),
        }
    }

    /// A mission's repository as intake fetches it from the fake (with the App's token), at
    /// `base`.
    async fn fetch(&self, base: &str, origin: &GitHubOrigin) -> (PathBuf, String) {
        let request = RunRequest {
            template: "t".into(),
            repo: RepoSource::Remote(self.clone_url.clone()),
            base: base.to_string(),
            params: BTreeMap::new(),
            requested_by: "@alice".into(),
            origin: MissionOrigin {
                source: Some(flightdeck_core::event::MissionSource::Github),
                github: Some(origin.clone()),
                ..MissionOrigin::default()
            },
            git_auth: Some(self.auth().await),
        };
        let header = request.git_auth.clone().unwrap();
        assert!(
            !format!("{request:?}").contains(&header),
            "Debug shows no token"
        );
        let data_dir = self.data_dir();
        let made = tokio::task::spawn_blocking(move || intake(&data_dir, &request))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(made.request.origin.github.as_ref(), Some(origin));
        assert_eq!(
            made.request.remote.as_deref(),
            Some(self.clone_url.as_str())
        );
        (made.repo, made.base_commit)
    }

    /// A worktree of `repo` at `base` with `files` changed, committed on `branch` as the
    /// publisher would: the commit and its tree.
    fn change(
        &self,
        repo: &Path,
        base: &str,
        name: &str,
        files: &[(&str, &str)],
    ) -> (Worktree, String, String) {
        let objects = self.data_dir().join("objects").join(name);
        let worktree = Worktree::create(
            repo,
            &self.data_dir().join("worktrees").join(name),
            base,
            SnapshotStore {
                objects,
                ..SnapshotStore::default()
            },
        )
        .unwrap();
        for (path, text) in files {
            std::fs::write(worktree.path().join(path), text).unwrap();
        }
        let tree = worktree.snapshot().unwrap();
        let commit = worktree
            .commit_to_branch(&tree, &format!("local/{name}"), "a change\n", 1_800_000_000)
            .unwrap();
        (worktree, commit, tree)
    }

    fn proposal(
        &self,
        origin: GitHubOrigin,
        mission: &str,
        commit: &str,
        tree: &str,
        body: &str,
    ) -> Proposal {
        Proposal {
            origin,
            mission: mission.to_string(),
            remote: Some(self.clone_url.clone()),
            commit: commit.to_string(),
            tree: tree.to_string(),
            previous_head: None,
            title: "Fix the widgets".to_string(),
            body: body.to_string(),
        }
    }
}

async fn world() -> World {
    let dir = key_dir();
    let fake = Arc::new(FakeGitHub::start(APP_ID, keys().rsa.as_bytes()).await);
    fake.add_installation(INSTALLATION, "acme");
    fake.add_repo(INSTALLATION, REPO, "main");
    // The repository on "GitHub": a bare repository with a main branch.
    let bare = dir.path().join("widgets.git");
    let source = TestRepo::with_files(&[
        ("README.md", "# widgets\n"),
        ("src.txt", "one\n"),
        (".flightdeck/missions/t.toml", TEMPLATE),
    ]);
    git_in(
        dir.path(),
        &["init", "--quiet", "--bare", bare.to_str().unwrap()],
    );
    source.git(&[
        "push",
        "--quiet",
        bare.to_str().unwrap(),
        "main:refs/heads/main",
    ]);
    fake.host_git(REPO, &bare);
    let clone_url = fake.clone_url(REPO);
    let config = dir.path().join("etc/config.toml");
    std::fs::write(
        &config,
        format!(
            "[github]\napp_id = {APP_ID}\nprivate_key_file = \"keys/app.pem\"\nmode = \"poll\"\napi_url = \"{}\"\n",
            fake.url()
        ),
    )
    .unwrap();
    let section = Config::load(&config, false).unwrap().github.unwrap();
    let app = Arc::new(GitHubApp::from_config(&section, &dir.path().join("etc")).unwrap());
    World {
        forge: GitHubForge::new(app.clone()),
        fake,
        app,
        dir,
        clone_url,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forge_pushes_opens_one_draft_pull_request_and_follows_up_on_its_branch() {
    let w = world().await;
    let mission = "01JZ0000000000000000000000";
    let origin = w.origin(None);

    // 1. A mission's change: pushed as flightdeck/<mission>, a draft pull request opened.
    let (repo, base) = w.fetch("main", &origin).await;
    assert_eq!(base, w.fake.branch_sha(REPO, "main"));
    let (worktree, commit, tree) = w.change(&repo, &base, "m1", &[("src.txt", "two\n")]);
    let body = "## Fix the widgets\n\nThe plan, fenced.\n";
    let proposal = w.proposal(origin.clone(), mission, &commit, &tree, body);
    let proposed = w.forge.propose(&worktree, &proposal).await.unwrap();
    let branch = format!("flightdeck/{mission}");
    assert_eq!(proposed.branch, branch);
    assert_eq!(proposed.head_sha, commit);
    assert_eq!(proposed.tree, tree);
    assert_eq!(w.fake.branch_sha(REPO, &branch), commit);
    let pulls = w.fake.pulls(REPO);
    assert_eq!(pulls.len(), 1, "{pulls:#?}");
    let pull = &pulls[0];
    assert_eq!(pull["number"].as_u64(), Some(proposed.pr_number));
    assert_eq!(pull["html_url"].as_str(), Some(proposed.pr_url.as_str()));
    assert_eq!(pull["draft"], true);
    assert_eq!(pull["body"], body);
    assert_eq!(pull["title"], "Fix the widgets");
    assert_eq!(pull["head"]["ref"].as_str(), Some(branch.as_str()));
    assert_eq!(pull["base"]["ref"], "main");

    // 2. Proposed again (a resume): the same pull request, nothing new.
    let again = w.forge.propose(&worktree, &proposal).await.unwrap();
    assert_eq!(again, proposed);
    assert_eq!(w.fake.pulls(REPO).len(), 1);

    // 3. A resume proposes a new tree on the same base: the mission's own branch is replaced
    //    (forced), the pull request is the same one, its description the new one.
    let (worktree2, commit2, tree2) = w.change(&repo, &base, "m1b", &[("src.txt", "three\n")]);
    let body2 = "## Fix the widgets\n\nA better plan.\n";
    let proposal2 = w.proposal(origin.clone(), mission, &commit2, &tree2, body2);
    let replaced = w.forge.propose(&worktree2, &proposal2).await.unwrap();
    assert_eq!(replaced.pr_number, proposed.pr_number);
    assert_eq!(replaced.head_sha, commit2);
    assert_eq!(w.fake.branch_sha(REPO, &branch), commit2);
    let pulls = w.fake.pulls(REPO);
    assert_eq!(pulls.len(), 1);
    assert_eq!(pulls[0]["body"], body2);

    // 4. A follow-up (review comments on that pull request): its base is the branch's head;
    //    its commit goes on top, a plain push, on the same pull request.
    let follow = w.origin(Some((proposed.pr_number, &branch)));
    let (repo3, base3) = w.fetch(&branch, &follow).await;
    assert_eq!(base3, commit2);
    let (worktree3, commit3, tree3) =
        w.change(&repo3, &base3, "m2", &[("src.txt", "three, reviewed\n")]);
    let follow_up = "01JZ0000000000000000000001";
    let proposal3 = w.proposal(follow.clone(), follow_up, &commit3, &tree3, "follow-up");
    let followed = w.forge.propose(&worktree3, &proposal3).await.unwrap();
    assert_eq!(followed.branch, branch);
    assert_eq!(followed.pr_number, proposed.pr_number);
    assert_eq!(followed.pr_url, proposed.pr_url);
    assert_eq!(w.fake.branch_sha(REPO, &branch), commit3);
    assert_eq!(w.fake.pulls(REPO).len(), 1);

    // 5. A follow-up whose commit is not on top of the branch is never forced: it says so,
    //    and the branch stays.
    let (worktree4, commit4, tree4) = w.change(&repo3, &base3, "m3", &[("src.txt", "other\n")]);
    let proposal4 = w.proposal(follow.clone(), follow_up, &commit4, &tree4, "follow-up");
    let err = w.forge.propose(&worktree4, &proposal4).await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains("does not fast-forward"), "{message}");
    assert!(message.contains(REPO), "{message}");
    assert!(!message.contains(&w.token().await), "{message}");
    assert_eq!(w.fake.branch_sha(REPO, &branch), commit3);

    // 6. Unless what it replaces is the follow-up's own earlier proposal (a resume proposing
    //    a new tree): then only that head is replaced, and only while it is still there.
    let mut again = w.proposal(follow.clone(), follow_up, &commit4, &tree4, "follow-up");
    again.previous_head = Some(commit2.clone());
    let err = w.forge.propose(&worktree4, &again).await.unwrap_err();
    assert!(err.to_string().contains("does not fast-forward"), "{err}");
    assert_eq!(w.fake.branch_sha(REPO, &branch), commit3);
    again.previous_head = Some(commit3.clone());
    let replaced = w.forge.propose(&worktree4, &again).await.unwrap();
    assert_eq!(replaced.head_sha, commit4);
    assert_eq!(w.fake.branch_sha(REPO, &branch), commit4);

    // Every push went over HTTP with the App's token as Basic credentials.
    let pushed: Vec<String> = w.fake.pushes().into_iter().map(|(_, _, sha)| sha).collect();
    assert_eq!(pushed, [commit, commit2, commit3, commit4]);
    w.fake.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_fetches_a_github_missions_repository_with_the_installations_token() {
    let w = world().await;
    let base = w.fake.branch_sha(REPO, "main");
    let created = |github: Option<GitHubOrigin>| -> MissionCreated {
        serde_json::from_value(serde_json::json!({
            "template": "t",
            "template_hash": flightdeck_core::Digest::of(b"t"),
            "params": {},
            "repo": "/elsewhere/not/here",
            "base_commit": base,
            "requested_by": "@alice",
            "policy_hash": flightdeck_core::Digest::of(b"p"),
            "template_source": flightdeck_core::Digest::of(b"t"),
            "remote": w.clone_url,
            "github": github,
        }))
        .unwrap()
    };
    let repos = |github: Option<Arc<GitHubApp>>| FetchingRepos {
        data_dir: w.data_dir(),
        repos: BTreeMap::new(),
        github,
    };
    // Without [github] the private repository cannot be fetched, and the error says why.
    let err = repos(None)
        .locate(&created(Some(w.origin(None))))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no [github]"), "{err}");
    // With it, the installation's token fetches the base commit.
    let repo = repos(Some(w.app.clone()))
        .locate(&created(Some(w.origin(None))))
        .await
        .unwrap();
    let have = git_in(&repo, &["rev-parse", &format!("{base}^{{commit}}")]);
    assert_eq!(have, base);
    assert!(!err.contains(&w.token().await), "{err}");
    w.fake.assert_clean();
}

/// A template that changes a file, and a policy that lets it publish.
const CHANGING: &str = "description = \"widgets\"\n[workspace]\nruntime = \"local-unsandboxed\"\n[[steps]]\nrun = \"echo changed > src.txt\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mission_from_github_proposes_through_the_apps_engine_before_it_publishes() {
    let w = world().await;
    // The repository gets the template and a policy that lets a change publish.
    let bare = w.dir.path().join("widgets.git");
    let source = TestRepo::with_files(&[
        ("README.md", "# widgets\n"),
        ("src.txt", "one\n"),
        (".flightdeck/missions/change.toml", CHANGING),
        (
            ".flightdeck/policy.toml",
            "[defaults]\npublish = \"allow\"\n",
        ),
    ]);
    source.git(&[
        "push",
        "--quiet",
        "--force",
        bare.to_str().unwrap(),
        "main:refs/heads/main",
    ]);
    let config = w.dir.path().join("etc/config.toml");
    std::fs::write(
        &config,
        format!(
            "[workspace]\nallow_unsandboxed = true\n\n[github]\napp_id = {APP_ID}\nprivate_key_file = \"keys/app.pem\"\nmode = \"poll\"\napi_url = \"{}\"\n",
            w.fake.url()
        ),
    )
    .unwrap();
    let app = App::open(AppOptions {
        data_dir: Some(w.data_dir()),
        config: Some(config),
        identity: Some("@alice".into()),
        ..AppOptions::default()
    })
    .unwrap();
    let github = app.github.clone().unwrap();
    let origin = w.origin(None);
    let request = RunRequest {
        template: "change".into(),
        repo: RepoSource::Remote(w.clone_url.clone()),
        base: "main".into(),
        params: BTreeMap::new(),
        requested_by: "@alice".into(),
        origin: MissionOrigin {
            source: Some(flightdeck_core::event::MissionSource::Github),
            github: Some(origin.clone()),
            goal: Some("Make src.txt say changed".into()),
            ..MissionOrigin::default()
        },
        git_auth: Some(github.git_auth_header(INSTALLATION).await.unwrap()),
    };
    let data_dir = app.data_dir.clone();
    let made = tokio::task::spawn_blocking(move || intake(&data_dir, &request))
        .await
        .unwrap()
        .unwrap();
    let engine = app
        .engine(
            Arc::new(flightdeck_engine::Silent),
            flightdeck_engine::no_shutdown(),
        )
        .await
        .unwrap();
    let state = engine.run(made.request).await.unwrap();
    assert_eq!(
        state.status,
        flightdeck_core::MissionStatus::Succeeded,
        "{state:#?}"
    );
    let created = state.created.as_ref().unwrap();
    assert_eq!(created.github.as_deref(), Some(&origin));
    assert_eq!(
        created.source,
        Some(flightdeck_core::event::MissionSource::Github)
    );
    let proposed = state.proposed.clone().expect("change.proposed");
    let branch = format!("flightdeck/{}", state.id);
    assert_eq!(proposed.branch, branch);
    assert_eq!(w.fake.branch_sha(REPO, &branch), proposed.head_sha);
    let published = state.published.as_ref().expect("change.published");
    assert_eq!(published.commit, proposed.head_sha);
    assert_eq!(published.pr_url.as_deref(), Some(proposed.pr_url.as_str()));
    let pulls = w.fake.pulls(REPO);
    assert_eq!(pulls.len(), 1, "{pulls:#?}");
    assert_eq!(pulls[0]["draft"], true);
    assert_eq!(
        pulls[0]["html_url"].as_str(),
        Some(proposed.pr_url.as_str())
    );
    w.fake.assert_clean();
}
