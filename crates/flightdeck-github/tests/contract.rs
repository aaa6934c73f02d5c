#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]
//! Contract tests: the GitHub App client of this crate against the testkit's fake GitHub,
//! which holds every request and every answer to GitHub's REST description and every
//! webhook payload to GitHub's webhook description. "Works against the fake" thus means
//! "speaks the real API". Needs `FLIGHTDECK_GITHUB_SPECS` (`scripts/github-specs`).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::ops::RangeInclusive;
use std::path::Path;
use std::pin::Pin;
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use flightdeck_github::{
    parse_event, verify_signature, AppKey, CheckAction, CheckConclusion, CheckOutput,
    CheckRunFields, Clock, Context, GitHubClient, GitHubError, KeyFormat, NewPullRequest,
    Permission, PullRequestState, PullRequestStateFilter, PullRequestUpdate, ReviewState,
    SignatureError, Sleeper, WebhookEvent,
};
use flightdeck_testkit::fake_github::{
    sign, timestamp, FakeGitHub, GitHubSpecs, HOOK_ID, WEBHOOK_EVENTS,
};
use serde_json::Value;

const APP_ID: u64 = 123_456;
const INSTALLATION: u64 = 4_242;
const OTHER_INSTALLATION: u64 = 7_777;
const OWNER: &str = "acme";
const NAME: &str = "widgets";
const REPO: &str = "acme/widgets";
/// 2030-03-17: far from the real time, so a client reading the system clock would have its
/// JWTs refused; only a client on the fake's clock gets through.
const T0: i64 = 1_900_000_000;
const SECRET: &str = "webhook-secret-for-tests";

// ---------------------------------------------------------------------------------------------
// Set-up

/// One RSA key made with the openssl CLI, in both private forms, and its public half.
struct Keys {
    pkcs1: String,
    pkcs8: String,
    public: Vec<u8>,
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
        openssl(
            d,
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                "pkcs8.pem",
            ],
        );
        openssl(
            d,
            &[
                "rsa",
                "-in",
                "pkcs8.pem",
                "-traditional",
                "-out",
                "pkcs1.pem",
            ],
        );
        openssl(
            d,
            &["pkey", "-in", "pkcs8.pem", "-pubout", "-out", "public.pem"],
        );
        let read = |name: &str| std::fs::read_to_string(d.join(name)).unwrap();
        let keys = Keys {
            pkcs1: read("pkcs1.pem"),
            pkcs8: read("pkcs8.pem"),
            public: read("public.pem").into_bytes(),
        };
        assert!(keys.pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        assert!(keys.pkcs8.starts_with("-----BEGIN PRIVATE KEY-----"));
        keys
    })
}

/// The client's clock is the fake's.
struct FakeClock(Arc<FakeGitHub>);

impl Clock for FakeClock {
    fn now_unix(&self) -> i64 {
        self.0.now()
    }
}

/// Records each wait and moves the fake's clock on by it instead of sleeping.
struct FakeSleeper {
    fake: Arc<FakeGitHub>,
    waits: Mutex<Vec<Duration>>,
}

impl Sleeper for FakeSleeper {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        self.waits.lock().unwrap().push(duration);
        self.fake.advance(duration);
        Box::pin(std::future::ready(()))
    }
}

impl FakeSleeper {
    fn take(&self) -> Vec<Duration> {
        std::mem::take(&mut *self.waits.lock().unwrap())
    }
}

struct World {
    fake: Arc<FakeGitHub>,
    client: GitHubClient,
    sleeper: Arc<FakeSleeper>,
}

/// A fake at [`T0`] with the installation on `acme` (`acme/widgets`, `acme/gadgets`) and one
/// on `globex` (`globex/tools`); a client with `key`, the fake's clock and a [`FakeSleeper`].
async fn world(key: AppKey) -> World {
    let fake = Arc::new(FakeGitHub::start(APP_ID, &keys().public).await);
    fake.set_now(T0);
    fake.add_installation(INSTALLATION, OWNER);
    fake.add_repo(INSTALLATION, REPO, "main");
    fake.add_repo(INSTALLATION, "acme/gadgets", "trunk");
    fake.add_installation(OTHER_INSTALLATION, "globex");
    fake.add_repo(OTHER_INSTALLATION, "globex/tools", "main");
    let sleeper = Arc::new(FakeSleeper {
        fake: fake.clone(),
        waits: Mutex::new(Vec::new()),
    });
    let client = GitHubClient::new(&fake.url(), APP_ID, key)
        .unwrap()
        .with_clock(Arc::new(FakeClock(fake.clone())))
        .with_sleeper(sleeper.clone());
    World {
        fake,
        client,
        sleeper,
    }
}

/// The check run of an approval gate, waiting with two buttons.
fn approval_gate() -> CheckRunFields {
    CheckRunFields {
        name: "flightdeck/approval".into(),
        conclusion: Some(CheckConclusion::ActionRequired),
        external_id: Some("m1/approval-1".into()),
        details_url: Some("https://flightdeck.example/missions/m1".into()),
        output: Some(CheckOutput {
            title: "Waiting for approval".into(),
            summary: "One approval from a writer is needed.".into(),
            text: None,
        }),
        actions: vec![
            CheckAction {
                label: "Approve".into(),
                description: "Let the mission publish".into(),
                identifier: "approve".into(),
            },
            CheckAction {
                label: "Deny".into(),
                description: "Stop the mission".into(),
                identifier: "deny".into(),
            },
        ],
        ..CheckRunFields::default()
    }
}

/// Requests by operation (or path, for GraphQL) and status.
fn call_counts(fake: &FakeGitHub) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for request in fake.requests() {
        let kind = request
            .operation
            .clone()
            .unwrap_or_else(|| format!("{} {}", request.method, request.path));
        *counts
            .entry(format!("{kind} -> {}", request.status))
            .or_default() += 1;
    }
    counts
}

// ---------------------------------------------------------------------------------------------
// 1. A mission's traffic

/// Everything a mission does on GitHub, once; returns the calls made, by kind.
async fn mission_flow(w: &World) -> BTreeMap<String, usize> {
    let (fake, gh) = (&w.fake, &w.client);

    // Who may approve: the role name tells `maintain` from `write` (both legacy "write").
    for (login, role, expected) in [
        ("alice", "write", Permission::Write),
        ("bob", "read", Permission::Read),
        ("carol", "maintain", Permission::Maintain),
    ] {
        fake.set_permission(REPO, login, role);
        let got = gh
            .collaborator_permission(INSTALLATION, OWNER, NAME, login)
            .await
            .unwrap();
        assert_eq!(got.permission, expected, "{login}");
        assert_eq!(got.role_name.as_deref(), Some(role), "{login}");
        assert_eq!(got.permission.can_write(), login != "bob", "{login}");
    }

    // The mission's comment on its issue, created once and then rewritten in place.
    let issue = fake.open_issue(REPO, "Deploy v2", "Please ship it", "alice");
    fake.issues_labeled(REPO, issue, "flightdeck", "alice");
    let created = gh
        .create_issue_comment(INSTALLATION, OWNER, NAME, issue, "Mission m1 started")
        .await
        .unwrap();
    assert_eq!(created.author.login, fake.bot_login());
    assert!(created.author.is_bot);
    let updated = gh
        .update_issue_comment(
            INSTALLATION,
            OWNER,
            NAME,
            created.id,
            "Mission m1 opened a pull request",
        )
        .await
        .unwrap();
    assert_eq!(updated.id, created.id);
    assert_eq!(updated.body, "Mission m1 opened a pull request");
    let comments = fake.comments(REPO, issue);
    assert_eq!(comments.len(), 1, "one comment, updated in place");
    assert_eq!(comments[0]["body"], "Mission m1 opened a pull request");

    // A draft pull request, edited, then marked ready (GraphQL).
    let draft = gh
        .create_pull_request(
            INSTALLATION,
            OWNER,
            NAME,
            &NewPullRequest::draft(
                "Mission m1: deploy v2",
                "flightdeck/m1",
                "main",
                "Closes #1",
            ),
        )
        .await
        .unwrap();
    assert!(draft.draft);
    assert_eq!(
        (draft.head_ref.as_str(), draft.base_ref.as_str()),
        ("flightdeck/m1", "main")
    );
    assert_eq!(draft.head_repo.as_deref(), Some(REPO));
    assert_eq!(draft.head_sha, fake.branch_sha(REPO, "flightdeck/m1"));
    let edited = gh
        .update_pull_request(
            INSTALLATION,
            OWNER,
            NAME,
            draft.number,
            &PullRequestUpdate {
                body: Some("Closes #1\n\nAll checks passed.".into()),
                ..PullRequestUpdate::default()
            },
        )
        .await
        .unwrap();
    assert!(edited.draft);
    assert_eq!(edited.body, "Closes #1\n\nAll checks passed.");
    let node_id = draft.node_id.clone().expect("a node id");
    gh.mark_ready_for_review(INSTALLATION, &node_id)
        .await
        .unwrap();
    let pulls = fake.pulls(REPO);
    assert_eq!(pulls.len(), 1);
    assert_eq!(pulls[0]["draft"], false);
    assert_eq!(pulls[0]["body"], "Closes #1\n\nAll checks passed.");

    // The approval gate: a check run waiting with two buttons, then passed (one run).
    let run = gh
        .create_check_run(INSTALLATION, OWNER, NAME, &draft.head_sha, &approval_gate())
        .await
        .unwrap();
    assert_eq!(run.status.as_deref(), Some("completed"));
    assert_eq!(run.conclusion.as_deref(), Some("action_required"));
    assert_eq!(run.external_id.as_deref(), Some("m1/approval-1"));
    assert_eq!(run.pull_requests, vec![draft.number]);
    let buttons: Vec<Value> = fake.check_runs(REPO)[0]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["identifier"].clone())
        .collect();
    assert_eq!(buttons, ["approve", "deny"]);
    let passed = CheckRunFields {
        conclusion: Some(CheckConclusion::Success),
        output: Some(CheckOutput {
            title: "Approved".into(),
            summary: "Approved by alice.".into(),
            text: None,
        }),
        actions: Vec::new(),
        ..approval_gate()
    };
    let done = gh
        .update_check_run(INSTALLATION, OWNER, NAME, run.id, &passed)
        .await
        .unwrap();
    assert_eq!(done.id, run.id);
    assert_eq!(done.conclusion.as_deref(), Some("success"));
    let runs = fake.check_runs(REPO);
    assert_eq!(runs.len(), 1, "one check run, updated in place");
    assert_eq!(runs[0]["conclusion"], "success");
    assert_eq!(runs[0]["output"]["title"], "Approved");
    assert_eq!(runs[0]["actions"], serde_json::json!([]), "buttons removed");

    // Reviews, as the REST API spells their states.
    let head = draft.head_sha.clone();
    fake.submit_review(REPO, draft.number, "alice", "APPROVED", &head);
    fake.submit_review(REPO, draft.number, "bob", "COMMENTED", &head);
    let reviews: Vec<(String, ReviewState, Option<String>)> = gh
        .list_reviews(INSTALLATION, OWNER, NAME, draft.number)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.author.unwrap().login, r.state, r.commit_id))
        .collect();
    assert_eq!(
        reviews,
        [
            ("alice".into(), ReviewState::Approved, Some(head.clone())),
            ("bob".into(), ReviewState::Commented, Some(head.clone())),
        ]
    );

    // CODEOWNERS from the base branch (the head's edit is another file); missing is None.
    fake.set_file(REPO, "main", ".github/CODEOWNERS", "* @acme/platform\n");
    fake.set_file(REPO, "flightdeck/m1", ".github/CODEOWNERS", "* @mallory\n");
    for (path, git_ref, expected) in [
        (
            ".github/CODEOWNERS",
            draft.base_ref.as_str(),
            Some("* @acme/platform\n"),
        ),
        (".github/CODEOWNERS", "flightdeck/m1", Some("* @mallory\n")),
        ("CODEOWNERS", "main", None),
        ("docs/CODEOWNERS", "main", None),
    ] {
        let got = gh
            .file_contents(INSTALLATION, OWNER, NAME, path, git_ref)
            .await
            .unwrap();
        assert_eq!(
            got.as_deref(),
            expected.map(str::as_bytes),
            "{path}@{git_ref}"
        );
    }

    // Poll mode's lists.
    let installations: Vec<(u64, Option<String>)> = gh
        .list_installations()
        .await
        .unwrap()
        .into_iter()
        .map(|i| (i.id, i.account.map(|a| a.login)))
        .collect();
    assert_eq!(
        installations,
        [
            (INSTALLATION, Some("acme".into())),
            (OTHER_INSTALLATION, Some("globex".into()))
        ]
    );
    let mut repositories: Vec<(String, String, Option<String>)> = gh
        .list_installation_repositories(INSTALLATION)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.owner, r.full_name, r.default_branch))
        .collect();
    repositories.sort();
    assert_eq!(
        repositories,
        [
            ("acme".into(), "acme/gadgets".into(), Some("trunk".into())),
            ("acme".into(), "acme/widgets".into(), Some("main".into())),
        ]
    );
    let labeled = gh
        .list_labeled_issues(INSTALLATION, OWNER, NAME, "flightdeck", None)
        .await
        .unwrap();
    assert_eq!(labeled.len(), 1);
    assert_eq!(labeled[0].number, issue);
    assert_eq!(labeled[0].labels, ["flightdeck"]);
    assert!(!labeled[0].is_pull_request);
    let later = timestamp(fake.now() + 3600);
    let none = gh
        .list_labeled_issues(INSTALLATION, OWNER, NAME, "flightdeck", Some(&later))
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");

    fake.assert_clean();
    // Credentials only in the Authorization header: the JWT for /app/…, the token elsewhere.
    let token = gh.installation_token(INSTALLATION).await.unwrap();
    for request in fake.requests() {
        let auth = request.header("authorization").unwrap_or("");
        if request.path.starts_with("/app/") {
            assert!(auth.starts_with("Bearer ey"), "{}", request.path);
        } else {
            assert_eq!(
                auth,
                format!("Bearer {}", token.secret()),
                "{}",
                request.path
            );
        }
        assert!(!request.query.contains(token.secret()));
        assert!(!request.path.contains(token.secret()));
    }
    assert_eq!(fake.tokens_issued(), 1);
    assert_eq!(fake.calls("POST", "/app/installations/"), 1);
    call_counts(fake)
}

#[tokio::test]
async fn a_missions_github_traffic_speaks_the_real_api_with_either_key_form() {
    let expected: BTreeMap<String, usize> = [
        ("GET /app/installations -> 200", 1),
        ("GET /installation/repositories -> 200", 1),
        (
            "GET /repos/{owner}/{repo}/collaborators/{username}/permission -> 200",
            3,
        ),
        ("GET /repos/{owner}/{repo}/contents/{path} -> 200", 2),
        ("GET /repos/{owner}/{repo}/contents/{path} -> 404", 2),
        ("GET /repos/{owner}/{repo}/issues -> 200", 2),
        (
            "GET /repos/{owner}/{repo}/pulls/{pull_number}/reviews -> 200",
            1,
        ),
        (
            "PATCH /repos/{owner}/{repo}/check-runs/{check_run_id} -> 200",
            1,
        ),
        (
            "PATCH /repos/{owner}/{repo}/issues/comments/{comment_id} -> 200",
            1,
        ),
        ("PATCH /repos/{owner}/{repo}/pulls/{pull_number} -> 200", 1),
        (
            "POST /app/installations/{installation_id}/access_tokens -> 201",
            1,
        ),
        ("POST /graphql -> 200", 1),
        ("POST /repos/{owner}/{repo}/check-runs -> 201", 1),
        (
            "POST /repos/{owner}/{repo}/issues/{issue_number}/comments -> 201",
            1,
        ),
        ("POST /repos/{owner}/{repo}/pulls -> 201", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let keys = keys();
    for (pem, format) in [
        (&keys.pkcs1, KeyFormat::Pkcs1),
        (&keys.pkcs8, KeyFormat::Pkcs8),
    ] {
        let key = AppKey::from_pem(pem).unwrap();
        assert_eq!(key.format(), format);
        assert_eq!(key.modulus_bits(), 2048);
        let w = world(key).await;
        let counts = mission_flow(&w).await;
        println!("{format}: {} requests", counts.values().sum::<usize>());
        for (kind, n) in &counts {
            println!("  {n:>2}  {kind}");
        }
        assert_eq!(counts, expected, "{format}");
        assert!(w.sleeper.take().is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Token refresh

#[tokio::test]
async fn the_installation_token_is_refreshed_once_past_55_minutes() {
    let w = world(AppKey::from_pem(&keys().pkcs1).unwrap()).await;
    let (fake, gh) = (&w.fake, &w.client);
    fake.set_permission(REPO, "alice", "write");
    let start = fake.now();
    let mut used: Vec<String> = Vec::new();
    // (seconds after the start, tokens issued by then)
    for (at, issued) in [
        (0, 1),
        (30 * 60, 1),
        (54 * 60, 1),
        (55 * 60 + 1, 2),
        (90 * 60, 2),
        (109 * 60, 2),
        (111 * 60, 3),
    ] {
        fake.set_now(start + at);
        let got = gh
            .collaborator_permission(INSTALLATION, OWNER, NAME, "alice")
            .await
            .unwrap();
        assert_eq!(got.permission, Permission::Write, "at {at} s");
        assert_eq!(fake.tokens_issued(), issued, "at {at} s");
        let last = fake.requests().pop().unwrap();
        let bearer = last.header("authorization").unwrap().to_string();
        let token = gh.installation_token(INSTALLATION).await.unwrap();
        assert_eq!(bearer, format!("Bearer {}", token.secret()), "at {at} s");
        assert!(token.expires_at() > fake.now() + 5 * 60, "at {at} s");
        if used.last() != Some(&token.secret().to_string()) {
            used.push(token.secret().to_string());
        }
    }
    // The fake's tokens differ in length (36 characters after `ghs_`, then 37 to 292): each
    // went out exactly as issued.
    let lengths: Vec<usize> = used.iter().map(String::len).collect();
    assert_eq!(lengths.len(), 3, "{lengths:?}");
    assert_eq!(lengths[0], 40);
    assert!(lengths[1] > 40, "{lengths:?}");
    assert_eq!(lengths[2], 40);
    assert_eq!(fake.calls("POST", "/app/installations/"), 3);
    fake.assert_clean();

    // The clocks must agree: a client on the system clock signs JWTs that are already
    // expired on the fake's clock (2030), and GitHub refuses them.
    let system = GitHubClient::new(
        &fake.url(),
        APP_ID,
        AppKey::from_pem(&keys().pkcs8).unwrap(),
    )
    .unwrap();
    let refused = system.installation_token(INSTALLATION).await.unwrap_err();
    assert_eq!(refused.status(), Some(401), "{refused}");
    fake.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// 3. Rate limits and failures

#[derive(Clone, Copy, Debug)]
enum Script {
    /// `rate_limit_next` this many times.
    Secondary(&'static str, u64, usize),
    Exhausted(&'static str, u64),
    Fail(&'static str, u16),
    Nothing,
}

#[derive(Clone, Copy, Debug)]
enum Call {
    Comment,
    Reviews,
    Ready,
    Permission,
    CheckRun,
    Contents,
    /// A check run on `globex/tools`, whose installation may not write checks.
    ForbiddenCheckRun,
}

#[derive(Clone, Debug)]
enum Expect {
    Ok,
    RateLimited(u32, RangeInclusive<u64>),
    Status(u16),
}

/// One row of the rate limit table.
struct Case {
    what: &'static str,
    script: Script,
    /// With the client whose `max_retry_wait` is 10 s.
    tight: bool,
    call: Call,
    expect: Expect,
    /// The waits the sleeper saw, in seconds.
    waits: Vec<RangeInclusive<u64>>,
    /// Requests under the scripted prefix.
    requests: usize,
}

#[tokio::test]
async fn rate_limits_are_waited_out_on_the_fake_clock_up_to_the_bound_and_nothing_else_is_retried()
{
    let w = world(AppKey::from_pem(&keys().pkcs8).unwrap()).await;
    let (fake, sleeper) = (&w.fake, &w.sleeper);
    let tight = w
        .client
        .clone()
        .with_max_retry_wait(Duration::from_secs(10));
    fake.set_installation_permissions(
        OTHER_INSTALLATION,
        &[("metadata", "read"), ("contents", "read")],
    );
    let issue = fake.open_issue(REPO, "Deploy v2", "", "alice");
    fake.set_permission(REPO, "alice", "write");
    let draft = w
        .client
        .create_pull_request(
            INSTALLATION,
            OWNER,
            NAME,
            &NewPullRequest::draft("Mission m1", "flightdeck/m1", "main", ""),
        )
        .await
        .unwrap();
    let node_id = draft.node_id.clone().unwrap();
    let globex_sha = fake.branch_sha("globex/tools", "main");

    use Expect::{RateLimited, Status};
    let cases = [
        Case {
            what: "a secondary limit's retry-after is waited, then the POST succeeds",
            script: Script::Secondary("/repos/acme/widgets/issues", 7, 1),
            tight: false,
            call: Call::Comment,
            expect: Expect::Ok,
            waits: vec![7..=7],
            requests: 2,
        },
        Case {
            what: "an exhausted primary limit is waited until its reset",
            script: Script::Exhausted("/repos/acme/widgets/pulls", 30),
            tight: false,
            call: Call::Reviews,
            expect: Expect::Ok,
            waits: vec![30..=31],
            requests: 2,
        },
        Case {
            what: "GraphQL's secondary limit too",
            script: Script::Secondary("/graphql", 3, 1),
            tight: false,
            call: Call::Ready,
            expect: Expect::Ok,
            waits: vec![3..=3],
            requests: 2,
        },
        Case {
            what: "after MAX_RETRIES waits the limit is returned",
            script: Script::Secondary("/repos/acme/widgets/collaborators", 2, 4),
            tight: false,
            call: Call::Permission,
            expect: RateLimited(4, 2..=2),
            waits: vec![2..=2, 2..=2, 2..=2],
            requests: 4,
        },
        Case {
            what: "a retry-after beyond the bound is returned, not waited",
            script: Script::Secondary("/repos/acme/widgets/check-runs", 120, 1),
            tight: true,
            call: Call::CheckRun,
            expect: RateLimited(1, 120..=120),
            waits: vec![],
            requests: 1,
        },
        Case {
            what: "a reset beyond the bound is returned, not waited",
            script: Script::Exhausted("/repos/acme/widgets/contents", 600),
            tight: true,
            call: Call::Contents,
            expect: RateLimited(1, 600..=601),
            waits: vec![],
            requests: 1,
        },
        Case {
            what: "a 502 to a POST is not retried",
            script: Script::Fail("/repos/acme/widgets/issues", 502),
            tight: false,
            call: Call::Comment,
            expect: Status(502),
            waits: vec![],
            requests: 1,
        },
        Case {
            what: "a permission 403 is not a rate limit",
            script: Script::Nothing,
            tight: false,
            call: Call::ForbiddenCheckRun,
            expect: Status(403),
            waits: vec![],
            requests: 1,
        },
    ];
    for Case {
        what,
        script,
        tight: use_tight,
        call,
        expect,
        waits,
        requests,
    } in cases
    {
        let prefix = match script {
            Script::Secondary(prefix, seconds, times) => {
                for _ in 0..times {
                    fake.rate_limit_next(prefix, seconds);
                }
                prefix
            }
            Script::Exhausted(prefix, seconds) => {
                fake.exhaust_rate_limit_next(prefix, seconds);
                prefix
            }
            Script::Fail(prefix, status) => {
                fake.fail_next(prefix, status);
                prefix
            }
            Script::Nothing => "/repos/globex/tools/check-runs",
        };
        let under = || {
            fake.requests()
                .iter()
                .filter(|r| r.path.starts_with(prefix))
                .count()
        };
        let (before, comments_before) = (under(), fake.comments(REPO, issue).len());
        let gh = if use_tight { &tight } else { &w.client };
        let result: Result<(), GitHubError> = match call {
            Call::Comment => gh
                .create_issue_comment(INSTALLATION, OWNER, NAME, issue, "progress")
                .await
                .map(drop),
            Call::Reviews => gh
                .list_reviews(INSTALLATION, OWNER, NAME, draft.number)
                .await
                .map(drop),
            Call::Ready => gh.mark_ready_for_review(INSTALLATION, &node_id).await,
            Call::Permission => gh
                .collaborator_permission(INSTALLATION, OWNER, NAME, "alice")
                .await
                .map(drop),
            Call::CheckRun => gh
                .create_check_run(INSTALLATION, OWNER, NAME, &draft.head_sha, &approval_gate())
                .await
                .map(drop),
            Call::Contents => gh
                .file_contents(INSTALLATION, OWNER, NAME, ".github/CODEOWNERS", "main")
                .await
                .map(drop),
            Call::ForbiddenCheckRun => gh
                .create_check_run(
                    OTHER_INSTALLATION,
                    "globex",
                    "tools",
                    &globex_sha,
                    &approval_gate(),
                )
                .await
                .map(drop),
        };
        match (&expect, &result) {
            (Expect::Ok, Ok(())) => {}
            (
                RateLimited(attempts, wait),
                Err(GitHubError::RateLimited {
                    attempts: got,
                    retry_after,
                    ..
                }),
            ) if got == attempts && wait.contains(&retry_after.as_secs()) => {}
            (Status(status), Err(e)) if e.status() == Some(*status) => {}
            _ => panic!("{what}: expected {expect:?}, got {result:?}"),
        }
        let slept: Vec<u64> = sleeper.take().iter().map(Duration::as_secs).collect();
        assert_eq!(slept.len(), waits.len(), "{what}: waits {slept:?}");
        for (got, want) in slept.iter().zip(&waits) {
            assert!(
                want.contains(got),
                "{what}: waits {slept:?}, want {waits:?}"
            );
        }
        assert_eq!(
            under() - before,
            requests,
            "{what}: requests under {prefix}"
        );
        if matches!(call, Call::Comment) {
            let added = fake.comments(REPO, issue).len() - comments_before;
            assert_eq!(added, usize::from(matches!(expect, Expect::Ok)), "{what}");
        }
        // Not one retry came before the wait GitHub asked for was over.
        fake.assert_clean();
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Webhooks

/// What a parsed event says, in one comparable line.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    variant: &'static str,
    installation: Option<u64>,
    repo: Option<String>,
    number: Option<u64>,
    detail: String,
}

fn seen(event: &WebhookEvent) -> Seen {
    let at = |variant, context: &Context, number: u64, detail: String| Seen {
        variant,
        installation: context.installation_id,
        repo: Some(format!(
            "{}/{}",
            context.repository.owner, context.repository.name
        )),
        number: Some(number),
        detail: format!("{detail} sender={}", context.sender.login),
    };
    match event {
        WebhookEvent::Ping {
            hook_id,
            app_id,
            zen,
        } => Seen {
            variant: "Ping",
            installation: None,
            repo: None,
            number: *hook_id,
            detail: format!("app={app_id:?} zen={}", zen.is_some()),
        },
        WebhookEvent::IssueLabeled {
            context,
            issue,
            label,
        } => at(
            "IssueLabeled",
            context,
            issue.number,
            format!("label={label} labels={:?}", issue.labels),
        ),
        WebhookEvent::IssueCommentCreated {
            context,
            issue,
            comment,
        } => at(
            "IssueCommentCreated",
            context,
            issue.number,
            format!(
                "body={} by={} pr={}",
                comment.body, comment.author.login, issue.is_pull_request
            ),
        ),
        WebhookEvent::PullRequestSynchronize {
            context,
            pull_request,
            before,
            after,
        } => at(
            "PullRequestSynchronize",
            context,
            pull_request.number,
            format!(
                "before={} after={} head={}",
                before.as_deref().unwrap_or("-"),
                after.as_deref().unwrap_or("-"),
                pull_request.head_sha
            ),
        ),
        WebhookEvent::PullRequestClosed {
            context,
            pull_request,
        } => at(
            "PullRequestClosed",
            context,
            pull_request.number,
            format!(
                "state={} merged={}",
                pull_request.state, pull_request.merged
            ),
        ),
        WebhookEvent::PullRequestReviewSubmitted {
            context,
            pull_request,
            review,
        }
        | WebhookEvent::PullRequestReviewDismissed {
            context,
            pull_request,
            review,
        } => at(
            if matches!(event, WebhookEvent::PullRequestReviewSubmitted { .. }) {
                "PullRequestReviewSubmitted"
            } else {
                "PullRequestReviewDismissed"
            },
            context,
            pull_request.number,
            format!(
                "review={} {:?} by={} commit={}",
                review.id,
                review.state,
                review.author.as_ref().map_or("-", |a| a.login.as_str()),
                review.commit_id.as_deref().unwrap_or("-")
            ),
        ),
        WebhookEvent::CheckRunRequestedAction {
            context,
            check_run,
            identifier,
        } => at(
            "CheckRunRequestedAction",
            context,
            check_run.id,
            format!(
                "identifier={identifier} external_id={:?} prs={:?}",
                check_run.external_id, check_run.pull_requests
            ),
        ),
        WebhookEvent::CheckRunRerequested { context, check_run } => at(
            "CheckRunRerequested",
            context,
            check_run.id,
            format!(
                "external_id={:?} prs={:?}",
                check_run.external_id, check_run.pull_requests
            ),
        ),
        WebhookEvent::Installation {
            action,
            installation,
            repositories,
            sender,
        } => Seen {
            variant: "Installation",
            installation: Some(installation.id),
            repo: None,
            number: installation.app_id,
            detail: format!(
                "{action} account={:?} repos={:?} sender={}",
                installation.account.as_ref().map(|a| a.login.as_str()),
                repositories
                    .iter()
                    .map(|r| format!("{}/{}", r.owner, r.name))
                    .collect::<Vec<_>>(),
                sender.login
            ),
        },
        other => panic!("not an event the fake builds: {other:?}"),
    }
}

#[tokio::test]
async fn every_webhook_payload_of_the_fake_verifies_and_parses_into_its_event() {
    let w = world(AppKey::from_pem(&keys().pkcs1).unwrap()).await;
    let (fake, gh) = (&w.fake, &w.client);
    let issue = fake.open_issue(REPO, "Deploy v2", "Please ship it", "alice");
    let pull = fake.open_pull(REPO, "Mission m1", "flightdeck/m1", "main", "alice");
    let head = fake.branch_sha(REPO, "flightdeck/m1");
    let run = gh
        .create_check_run(INSTALLATION, OWNER, NAME, &head, &approval_gate())
        .await
        .unwrap();
    fake.set_permission(REPO, "alice", "write");
    let approved = fake.submit_review(REPO, pull, "alice", "APPROVED", &head);
    let objected = fake.submit_review(REPO, pull, "bob", "CHANGES_REQUESTED", &head);
    let after = "b".repeat(40);
    let event = |variant, number: u64, detail: String| Seen {
        variant,
        installation: Some(INSTALLATION),
        repo: Some(REPO.to_string()),
        number: Some(number),
        detail,
    };
    // Built in this order: the check run events before the head moves.
    let cases: Vec<(&str, Value, Seen)> = vec![
        (
            "ping",
            fake.ping("https://flightdeck.example/webhooks/github"),
            Seen {
                variant: "Ping",
                installation: None,
                repo: None,
                number: Some(HOOK_ID),
                detail: format!("app=Some({APP_ID}) zen=true"),
            },
        ),
        (
            "installation",
            fake.installation_created(INSTALLATION, "acme-admin"),
            Seen {
                variant: "Installation",
                installation: Some(INSTALLATION),
                repo: None,
                number: Some(APP_ID),
                detail: r#"created account=Some("acme") repos=["acme/gadgets", "acme/widgets"] sender=acme-admin"#.into(),
            },
        ),
        (
            "issues",
            fake.issues_labeled(REPO, issue, "flightdeck", "alice"),
            event(
                "IssueLabeled",
                issue,
                r#"label=flightdeck labels=["flightdeck"] sender=alice"#.into(),
            ),
        ),
        (
            "issue_comment",
            fake.issue_comment_created(REPO, issue, "alice", "/approve"),
            event(
                "IssueCommentCreated",
                issue,
                "body=/approve by=alice pr=false sender=alice".into(),
            ),
        ),
        (
            "issue_comment",
            fake.issue_comment_created(REPO, pull, "bob", "/deny"),
            event(
                "IssueCommentCreated",
                pull,
                "body=/deny by=bob pr=true sender=bob".into(),
            ),
        ),
        (
            "check_run",
            fake.check_run_requested_action(REPO, run.id, "approve", "alice"),
            event(
                "CheckRunRequestedAction",
                run.id,
                format!(
                    r#"identifier=approve external_id=Some("m1/approval-1") prs=[{pull}] sender=alice"#
                ),
            ),
        ),
        (
            "check_run",
            fake.check_run_rerequested(REPO, run.id, "carol"),
            event(
                "CheckRunRerequested",
                run.id,
                format!(r#"external_id=Some("m1/approval-1") prs=[{pull}] sender=carol"#),
            ),
        ),
        (
            "pull_request_review",
            fake.pull_request_review_submitted(REPO, approved),
            event(
                "PullRequestReviewSubmitted",
                pull,
                format!("review={approved} Approved by=alice commit={head} sender=alice"),
            ),
        ),
        (
            "pull_request_review",
            fake.pull_request_review_dismissed(REPO, objected, "alice"),
            event(
                "PullRequestReviewDismissed",
                pull,
                format!("review={objected} Dismissed by=bob commit={head} sender=alice"),
            ),
        ),
        (
            "pull_request",
            fake.pull_request_synchronize(REPO, pull, &after, "alice"),
            event(
                "PullRequestSynchronize",
                pull,
                format!("before={head} after={after} head={after} sender=alice"),
            ),
        ),
        (
            "pull_request",
            fake.pull_request_closed(REPO, pull, true, "carol"),
            event(
                "PullRequestClosed",
                pull,
                "state=closed merged=true sender=carol".into(),
            ),
        ),
    ];
    let specs = GitHubSpecs::get();
    let mut described = BTreeSet::new();
    for (name, payload, expected) in cases {
        let key = specs
            .check_webhook(name, &payload)
            .unwrap_or_else(|errors| panic!("{name}: {}", errors.join("\n")));
        let body = serde_json::to_vec(&payload).unwrap();
        let signature = sign(SECRET, &body);
        assert_eq!(
            verify_signature(SECRET.as_bytes(), &signature, &body),
            Ok(()),
            "{key}"
        );
        let parsed = parse_event(name, &body).unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(seen(&parsed), expected, "{key}");
        // One byte altered anywhere is refused; so is another secret.
        for at in [0, body.len() / 2, body.len() - 1] {
            let mut altered = body.clone();
            altered[at] ^= 0x01;
            assert_eq!(
                verify_signature(SECRET.as_bytes(), &signature, &altered),
                Err(SignatureError::Mismatch),
                "{key}: byte {at}"
            );
        }
        assert_eq!(
            verify_signature(b"another-secret", &signature, &body),
            Err(SignatureError::Mismatch),
            "{key}"
        );
        described.insert(key);
    }
    let every: BTreeSet<String> = WEBHOOK_EVENTS
        .iter()
        .map(|e| e.replace(['.', '_'], "-"))
        .collect();
    assert_eq!(described, every, "every payload builder of the fake");
    fake.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// 5. Git over HTTP, and the calls around a pushed branch

/// Runs `git args…` in `dir` with no system or global configuration, no prompt and a fixed
/// identity; `config` is given as flightdeck gives the token, through `GIT_CONFIG_COUNT`,
/// `GIT_CONFIG_KEY_<n>` and `GIT_CONFIG_VALUE_<n>` (never in argv or a URL). Async: the
/// fake answers on this test's one thread.
async fn git(dir: &Path, args: &[&str], config: &[(&str, &str)]) -> std::process::Output {
    git_with_env(dir, args, config, &[]).await
}

/// [`git`] with more environment.
async fn git_with_env(
    dir: &Path,
    args: &[&str],
    config: &[(&str, &str)],
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut command = tokio::process::Command::new("git");
    command
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_ASKPASS")
        .env_remove("SSH_ASKPASS")
        .env("GIT_AUTHOR_NAME", "Flightdeck")
        .env("GIT_AUTHOR_EMAIL", "flightdeck@example.com")
        .env("GIT_COMMITTER_NAME", "Flightdeck")
        .env("GIT_COMMITTER_EMAIL", "flightdeck@example.com")
        .env("GIT_CONFIG_COUNT", config.len().to_string());
    for (i, (key, value)) in config.iter().enumerate() {
        command
            .env(format!("GIT_CONFIG_KEY_{i}"), key)
            .env(format!("GIT_CONFIG_VALUE_{i}"), value);
    }
    command.envs(env.iter().copied());
    command.output().await.expect("run git")
}

/// `git args…` that must succeed; its stdout, trimmed.
async fn git_ok(dir: &Path, args: &[&str], config: &[(&str, &str)]) -> String {
    let output = git(dir, args, config).await;
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// The header git sends with an installation token: HTTP Basic `x-access-token:<token>`.
fn basic_auth(token: &str) -> String {
    format!(
        "Authorization: Basic {}",
        STANDARD.encode(format!("x-access-token:{token}"))
    )
}

/// A bare `widgets.git` under `dir` whose `main` has one commit, pushed to the path as a
/// person would; returns its path and main's sha.
async fn bare_repo(dir: &Path) -> (std::path::PathBuf, String) {
    let bare = dir.join("widgets.git");
    git_ok(
        dir,
        &[
            "init",
            "--quiet",
            "--bare",
            "--initial-branch=main",
            "widgets.git",
        ],
        &[],
    )
    .await;
    let seed = dir.join("seed");
    git_ok(
        dir,
        &["init", "--quiet", "--initial-branch=main", "seed"],
        &[],
    )
    .await;
    std::fs::write(seed.join("README.md"), "# widgets\n").unwrap();
    git_ok(&seed, &["add", "README.md"], &[]).await;
    git_ok(&seed, &["commit", "--quiet", "-m", "first"], &[]).await;
    git_ok(
        &seed,
        &["push", "--quiet", bare.to_str().unwrap(), "main"],
        &[],
    )
    .await;
    let main = git_ok(&seed, &["rev-parse", "HEAD"], &[]).await;
    (bare, main)
}

/// GET `{fake}/git/{repo}.git/info/refs?service=…` with `authorization`: the status and
/// `WWW-Authenticate`.
async fn info_refs(
    fake: &FakeGitHub,
    repo: &str,
    service: &str,
    authorization: Option<String>,
) -> (u16, Option<String>) {
    let url = format!("{}/git/{repo}.git/info/refs?service={service}", fake.url());
    let mut request = reqwest::Client::new()
        .get(url)
        .header("user-agent", "git/2.47.3");
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    let response = request.send().await.unwrap();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    (response.status().as_u16(), challenge)
}

#[tokio::test]
async fn a_branch_pushed_over_http_with_the_token_becomes_a_draft_pull_request_at_that_commit() {
    let w = world(AppKey::from_pem(&keys().pkcs1).unwrap()).await;
    let (fake, gh) = (&w.fake, &w.client);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (bare, main) = bare_repo(dir).await;
    fake.host_git(REPO, &bare);
    let clone_url = fake.clone_url(REPO);
    assert_eq!(clone_url, format!("{}/git/acme/widgets.git", fake.url()));
    assert_eq!(
        fake.branch_sha(REPO, "main"),
        main,
        "main is the bare repository's"
    );

    // The token as flightdeck passes it: a header given through git's environment.
    let token = gh.installation_token(INSTALLATION).await.unwrap();
    let header = basic_auth(token.secret());
    let with_token = [("http.extraHeader", header.as_str())];
    git_ok(dir, &["clone", "--quiet", &clone_url, "work"], &with_token).await;
    let work = dir.join("work");
    assert_eq!(git_ok(&work, &["rev-parse", "HEAD"], &[]).await, main);
    std::fs::write(work.join("deploy.txt"), "v2\n").unwrap();
    git_ok(&work, &["add", "deploy.txt"], &[]).await;
    git_ok(
        &work,
        &["commit", "--quiet", "-m", "Mission m1: deploy v2"],
        &[],
    )
    .await;
    let pushed = git_ok(&work, &["rev-parse", "HEAD"], &[]).await;
    let tree = git_ok(&work, &["rev-parse", "HEAD^{tree}"], &[]).await;
    git_ok(
        &work,
        &["push", "--quiet", "origin", "HEAD:refs/heads/flightdeck/m1"],
        &with_token,
    )
    .await;
    assert_eq!(
        fake.pushes(),
        [(
            REPO.to_string(),
            "refs/heads/flightdeck/m1".to_string(),
            pushed.clone()
        )]
    );
    assert_eq!(fake.branch_sha(REPO, "flightdeck/m1"), pushed);

    // The draft pull request's head is the pushed commit.
    let draft = gh
        .create_pull_request(
            INSTALLATION,
            OWNER,
            NAME,
            &NewPullRequest::draft(
                "Mission m1: deploy v2",
                "flightdeck/m1",
                "main",
                "Closes #1",
            ),
        )
        .await
        .unwrap();
    assert!(draft.draft);
    assert_eq!(draft.head_sha, pushed);
    assert_eq!(draft.base_sha, main);
    let pull = &fake.pulls(REPO)[0];
    assert_eq!(pull["head"]["repo"]["clone_url"], clone_url.as_str());
    let issue = fake.open_issue(REPO, "Deploy v2", "", "alice");
    let labeled = fake.issues_labeled(REPO, issue, "flightdeck", "alice");
    assert_eq!(labeled["repository"]["clone_url"], clone_url.as_str());
    let listed = gh
        .call(
            INSTALLATION,
            reqwest::Method::GET,
            &["installation", "repositories"],
            &[],
            None,
        )
        .await
        .unwrap();
    let widgets = listed["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["full_name"] == REPO)
        .unwrap();
    assert_eq!(widgets["clone_url"], clone_url.as_str());

    // Opening it again finds it first (idempotent creation).
    let found = gh
        .list_pulls_by_head(
            INSTALLATION,
            OWNER,
            NAME,
            "acme:flightdeck/m1",
            PullRequestStateFilter::Open,
        )
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].number, found[0].head_sha.as_str()),
        (draft.number, pushed.as_str())
    );
    assert_eq!(found[0].node_id, draft.node_id);

    // The pushed commit, from the Git database.
    let commit = gh
        .get_commit(INSTALLATION, OWNER, NAME, &pushed)
        .await
        .unwrap()
        .expect("the pushed commit");
    assert_eq!(commit.sha, pushed);
    assert_eq!(commit.tree_sha, tree);
    assert_eq!(commit.parents, std::slice::from_ref(&main));
    assert_eq!(commit.message, "Mission m1: deploy v2");
    let author = commit.author.unwrap();
    assert_eq!(
        (author.name.as_str(), author.email.as_str()),
        ("Flightdeck", "flightdeck@example.com")
    );
    let unknown = gh
        .get_commit(INSTALLATION, OWNER, NAME, &"e".repeat(40))
        .await
        .unwrap();
    assert_eq!(unknown, None);

    // Another push moves the pull request's head, as on GitHub; the synchronize payload
    // says from where to where.
    std::fs::write(work.join("deploy.txt"), "v2.1\n").unwrap();
    git_ok(&work, &["commit", "--quiet", "-am", "Mission m1: fix"], &[]).await;
    let second = git_ok(&work, &["rev-parse", "HEAD"], &[]).await;
    git_ok(
        &work,
        &["push", "--quiet", "origin", "HEAD:refs/heads/flightdeck/m1"],
        &with_token,
    )
    .await;
    let now = gh
        .get_pull_request(INSTALLATION, OWNER, NAME, draft.number)
        .await
        .unwrap();
    assert_eq!(now.head_sha, second);
    let after = fake.branch_sha(REPO, "flightdeck/m1");
    let payload = fake.pull_request_synchronize(REPO, draft.number, &after, &fake.bot_login());
    assert_eq!(
        (payload["before"].as_str(), payload["after"].as_str()),
        (Some(pushed.as_str()), Some(second.as_str()))
    );
    assert_eq!(payload["repository"]["clone_url"], clone_url.as_str());
    GitHubSpecs::get()
        .check_webhook("pull_request", &payload)
        .unwrap();
    let run = gh
        .create_check_run(INSTALLATION, OWNER, NAME, &second, &approval_gate())
        .await
        .unwrap();
    assert_eq!(run.pull_requests, [draft.number]);

    // GitHub refuses a pull request from a branch that was never pushed, one with nothing
    // over its base, and a check run on a commit it does not have.
    for head in ["flightdeck/m2", "main"] {
        let refused = gh
            .create_pull_request(
                INSTALLATION,
                OWNER,
                NAME,
                &NewPullRequest::draft("Mission m2", head, "main", ""),
            )
            .await
            .unwrap_err();
        assert_eq!(refused.status(), Some(422), "{head}: {refused}");
    }
    git_ok(
        &work,
        &[
            "push",
            "--quiet",
            "origin",
            &format!("{main}:refs/heads/flightdeck/empty"),
        ],
        &with_token,
    )
    .await;
    let refused = gh
        .create_pull_request(
            INSTALLATION,
            OWNER,
            NAME,
            &NewPullRequest::draft("Nothing", "flightdeck/empty", "main", ""),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.status(), Some(422), "{refused}");
    let refused = gh
        .create_check_run(INSTALLATION, OWNER, NAME, &"e".repeat(40), &approval_gate())
        .await
        .unwrap_err();
    assert_eq!(refused.status(), Some(422), "{refused}");

    // The same push with a wrong token fails, and changes nothing.
    std::fs::write(work.join("deploy.txt"), "v3\n").unwrap();
    git_ok(
        &work,
        &["commit", "--quiet", "-am", "Mission m1: more"],
        &[],
    )
    .await;
    let wrong = basic_auth("ghs_0123456789abcdefghijklmnopqrstuvwxyz");
    let refused = git(
        &work,
        &["push", "--quiet", "origin", "HEAD:refs/heads/flightdeck/m1"],
        &[("http.extraHeader", wrong.as_str())],
    )
    .await;
    assert!(!refused.status.success());
    assert_eq!(fake.branch_sha(REPO, "flightdeck/m1"), second);
    assert_eq!(fake.pushes().len(), 3);
    assert_eq!(fake.git_requests().last().unwrap().status, 401);

    // The token went only in the Authorization header: never in a path or a query.
    for request in fake.git_requests() {
        assert!(!request.path.contains(token.secret()), "{}", request.path);
        assert!(!request.query.contains(token.secret()), "{}", request.query);
    }
    fake.assert_clean();
}

#[tokio::test]
async fn git_over_http_is_authenticated_as_github_does() {
    let w = world(AppKey::from_pem(&keys().pkcs8).unwrap()).await;
    let (fake, gh) = (&w.fake, &w.client);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (bare, _) = bare_repo(dir).await;
    fake.host_git(REPO, &bare);
    let other = dir.join("tools.git");
    git_ok(
        dir,
        &[
            "clone",
            "--quiet",
            "--bare",
            bare.to_str().unwrap(),
            "tools.git",
        ],
        &[],
    )
    .await;
    fake.host_git("globex/tools", &other);
    let clone_url = fake.clone_url(REPO);

    // No credentials: GitHub's challenge, for reads too (the repositories are private).
    let (status, challenge) = info_refs(fake, REPO, "git-upload-pack", None).await;
    assert_eq!(status, 401);
    assert_eq!(challenge.as_deref(), Some("Basic realm=\"GitHub\""));
    let refused = git(dir, &["clone", "--quiet", &clone_url, "anonymous"], &[]).await;
    assert!(!refused.status.success());
    assert!(!dir.join("anonymous").join(".git").exists());

    let token = gh.installation_token(INSTALLATION).await.unwrap();
    let basic = |user: &str, password: &str| {
        Some(format!(
            "Basic {}",
            STANDARD.encode(format!("{user}:{password}"))
        ))
    };
    for (what, repo, service, authorization, expected) in [
        (
            "the token",
            REPO,
            "git-upload-pack",
            basic("x-access-token", token.secret()),
            200,
        ),
        (
            "push",
            REPO,
            "git-receive-pack",
            basic("x-access-token", token.secret()),
            200,
        ),
        (
            "a wrong token",
            REPO,
            "git-upload-pack",
            basic("x-access-token", "ghs_nope"),
            401,
        ),
        (
            "a bearer header",
            REPO,
            "git-upload-pack",
            Some(format!("Bearer {}", token.secret())),
            401,
        ),
        (
            "another installation's repository",
            "globex/tools",
            "git-upload-pack",
            basic("x-access-token", token.secret()),
            404,
        ),
        (
            "a repository the fake does not have",
            "acme/nothing",
            "git-upload-pack",
            basic("x-access-token", token.secret()),
            404,
        ),
        (
            "the dumb protocol",
            REPO,
            "",
            basic("x-access-token", token.secret()),
            403,
        ),
    ] {
        let (status, challenge) = info_refs(fake, repo, service, authorization).await;
        assert_eq!(status, expected, "{what}");
        assert_eq!(challenge.is_some(), status == 401, "{what}");
    }

    // A token that may only read contents clones but does not push: 403.
    fake.set_installation_permissions(
        OTHER_INSTALLATION,
        &[("metadata", "read"), ("contents", "read")],
    );
    let reader = gh.installation_token(OTHER_INSTALLATION).await.unwrap();
    let header = basic_auth(reader.secret());
    let read_only = [("http.extraHeader", header.as_str())];
    git_ok(
        dir,
        &["clone", "--quiet", &fake.clone_url("globex/tools"), "tools"],
        &read_only,
    )
    .await;
    let tools = dir.join("tools");
    git_ok(
        &tools,
        &["commit", "--quiet", "--allow-empty", "-m", "x"],
        &[],
    )
    .await;
    let refused = git(
        &tools,
        &["push", "--quiet", "origin", "HEAD:refs/heads/x"],
        &read_only,
    )
    .await;
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("403"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(fake.pushes().is_empty());

    // An expired token is a 401.
    fake.advance(Duration::from_secs(2 * 3600));
    let (status, _) = info_refs(
        fake,
        REPO,
        "git-upload-pack",
        basic("x-access-token", token.secret()),
    )
    .await;
    assert_eq!(status, 401);
    fake.assert_clean();
}

#[tokio::test]
async fn a_large_fetch_negotiation_comes_gzipped_and_is_served() {
    let w = world(AppKey::from_pem(&keys().pkcs1).unwrap()).await;
    let (fake, gh) = (&w.fake, &w.client);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (bare, _) = bare_repo(dir).await;
    fake.host_git(REPO, &bare);
    let token = gh.installation_token(INSTALLATION).await.unwrap();
    let header = basic_auth(token.secret());
    let with_token = [("http.extraHeader", header.as_str())];
    git_ok(
        dir,
        &["clone", "--quiet", &fake.clone_url(REPO), "work"],
        &with_token,
    )
    .await;
    let work = dir.join("work");
    // Local commits the server lacks: each is a `have` line of the next fetch's
    // negotiation, which git gzips once it is over 1 kB. Dated after the commit in common
    // (a walk by date reaches it last), so the negotiation takes several rounds.
    git_ok(&work, &["checkout", "--quiet", "-b", "local"], &[]).await;
    for i in 0..80 {
        let date = format!("@{} +0000", 4_000_000_000u64 + i);
        let output = git_with_env(
            &work,
            &[
                "commit",
                "--quiet",
                "--allow-empty",
                "-m",
                &format!("local {i}"),
            ],
            &[],
            &[("GIT_AUTHOR_DATE", &date), ("GIT_COMMITTER_DATE", &date)],
        )
        .await;
        assert!(output.status.success(), "{output:?}");
    }
    // Meanwhile main moves on the server.
    let seed = dir.join("seed");
    git_ok(
        &seed,
        &["commit", "--quiet", "--allow-empty", "-m", "upstream"],
        &[],
    )
    .await;
    git_ok(
        &seed,
        &["push", "--quiet", bare.to_str().unwrap(), "main"],
        &[],
    )
    .await;
    let upstream = git_ok(&seed, &["rev-parse", "HEAD"], &[]).await;
    git_ok(&work, &["fetch", "--quiet", "origin"], &with_token).await;
    assert_eq!(
        git_ok(&work, &["rev-parse", "origin/main"], &[]).await,
        upstream
    );
    let gzipped: Vec<u16> = fake
        .git_requests()
        .iter()
        .filter(|r| r.header("content-encoding") == Some("gzip"))
        .map(|r| r.status)
        .collect();
    assert!(!gzipped.is_empty(), "no gzip request body was sent");
    assert!(gzipped.iter().all(|s| *s == 200), "{gzipped:?}");
    fake.assert_clean();
}

#[tokio::test]
async fn pull_requests_are_found_by_head_and_read_with_their_reviews_inline_comments() {
    let w = world(AppKey::from_pem(&keys().pkcs8).unwrap()).await;
    let (fake, gh) = (&w.fake, &w.client);
    let first = gh
        .create_pull_request(
            INSTALLATION,
            OWNER,
            NAME,
            &NewPullRequest::draft("Mission m1", "flightdeck/m1", "main", ""),
        )
        .await
        .unwrap();
    let other = gh
        .create_pull_request(
            INSTALLATION,
            OWNER,
            NAME,
            &NewPullRequest::draft("Mission m2", "flightdeck/m2", "main", ""),
        )
        .await
        .unwrap();
    let got = gh
        .get_pull_request(INSTALLATION, OWNER, NAME, first.number)
        .await
        .unwrap();
    assert_eq!(got, first);

    // By head and state: closed ones only with `closed` or `all`.
    gh.update_pull_request(
        INSTALLATION,
        OWNER,
        NAME,
        first.number,
        &PullRequestUpdate {
            state: Some(PullRequestState::Closed),
            ..PullRequestUpdate::default()
        },
    )
    .await
    .unwrap();
    let numbers = |pulls: Vec<flightdeck_github::PullRequest>| -> Vec<u64> {
        pulls.into_iter().map(|p| p.number).collect()
    };
    for (head, state, expected) in [
        ("acme:flightdeck/m1", PullRequestStateFilter::Open, vec![]),
        (
            "acme:flightdeck/m1",
            PullRequestStateFilter::Closed,
            vec![first.number],
        ),
        (
            "acme:flightdeck/m1",
            PullRequestStateFilter::All,
            vec![first.number],
        ),
        (
            "acme:flightdeck/m2",
            PullRequestStateFilter::Open,
            vec![other.number],
        ),
        ("globex:flightdeck/m2", PullRequestStateFilter::All, vec![]),
        ("acme:flightdeck/m3", PullRequestStateFilter::All, vec![]),
    ] {
        let got = gh
            .list_pulls_by_head(INSTALLATION, OWNER, NAME, head, state)
            .await
            .unwrap();
        assert_eq!(numbers(got), expected, "{head} {state:?}");
    }
    // A head without its owner would be ignored by GitHub: refused before sending.
    let before = fake.requests().len();
    for head in ["flightdeck/m1", ":flightdeck/m1", "acme:"] {
        let refused = gh
            .list_pulls_by_head(INSTALLATION, OWNER, NAME, head, PullRequestStateFilter::All)
            .await
            .unwrap_err();
        assert!(
            matches!(refused, GitHubError::InvalidArgument { .. }),
            "{head}: {refused}"
        );
    }
    assert_eq!(fake.requests().len(), before);

    // A review's inline comments, and only its own.
    let head = other.head_sha.clone();
    fake.set_permission(REPO, "alice", "write");
    let review = fake.submit_review(REPO, other.number, "alice", "CHANGES_REQUESTED", &head);
    fake.set_review_body(REPO, review, "Two things.");
    fake.add_review_comment(
        REPO,
        review,
        "src/deploy.rs",
        12,
        "Handle the timeout here.",
    );
    fake.add_review_comment(REPO, review, "README.md", 3, "Say how to roll back.");
    let another = fake.submit_review(REPO, other.number, "bob", "COMMENTED", &head);
    fake.add_review_comment(REPO, another, "src/deploy.rs", 1, "Nit.");
    let comments: Vec<String> = gh
        .list_review_comments(INSTALLATION, OWNER, NAME, other.number, review)
        .await
        .unwrap()
        .into_iter()
        .map(|c| {
            assert_eq!(c.commit_id.as_deref(), Some(head.as_str()));
            assert_eq!(c.review_id, Some(review));
            let line = c.line.map_or("-".to_string(), |l| l.to_string());
            format!("{}:{line} {}: {}", c.path, c.author.unwrap().login, c.body)
        })
        .collect();
    assert_eq!(
        comments,
        [
            "src/deploy.rs:12 alice: Handle the timeout here.",
            "README.md:3 alice: Say how to roll back.",
        ]
    );
    let reviews = gh
        .list_reviews(INSTALLATION, OWNER, NAME, other.number)
        .await
        .unwrap();
    assert_eq!(reviews[0].body, "Two things.");
    // Another pull request's review is not found there.
    let missing = gh
        .list_review_comments(INSTALLATION, OWNER, NAME, first.number, review)
        .await
        .unwrap_err();
    assert_eq!(missing.status(), Some(404), "{missing}");
    // Unhosted, the fake has no commits to show.
    let none = gh
        .get_commit(INSTALLATION, OWNER, NAME, &head)
        .await
        .unwrap();
    assert_eq!(none, None);
    fake.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// Poll mode's questions

#[tokio::test]
async fn poll_modes_questions_read_what_changed_since_a_time_as_github_sent_it() {
    let w = world(AppKey::from_pem(&keys().pkcs8).unwrap()).await;
    let (fake, gh) = (&w.fake, &w.client);
    fake.set_permission(REPO, "alice", "write");
    fake.set_permission(REPO, "bob", "write");
    let since = timestamp(T0);

    // Repositories, whole: what a payload's `repository` is.
    let repositories = gh
        .list_installation_repositories_as_sent(INSTALLATION)
        .await
        .unwrap();
    let widgets = repositories.iter().find(|r| r.full_name == REPO).unwrap();
    assert_eq!(widgets.json["full_name"], REPO);
    assert!(widgets.json["clone_url"].is_string());
    assert_eq!(widgets.json["default_branch"], "main");
    assert_eq!(
        repositories
            .iter()
            .map(|r| r.value.clone())
            .collect::<Vec<_>>(),
        gh.list_installation_repositories(INSTALLATION)
            .await
            .unwrap()
    );

    // Issues updated since, least recently updated first, pull requests among them; who
    // labelled one is in its events.
    let first = fake.open_issue(REPO, "First", "", "alice");
    fake.advance(Duration::from_secs(10));
    let second = fake.open_issue(REPO, "Second", "Body", "bob");
    fake.advance(Duration::from_secs(10));
    fake.label_issue(REPO, first, "flightdeck:fix", "bob");
    fake.advance(Duration::from_secs(10));
    fake.label_issue(REPO, first, "bug", "alice");
    let pull = gh
        .create_pull_request(
            INSTALLATION,
            OWNER,
            NAME,
            &NewPullRequest::draft("Mission m1", "flightdeck/m1", "main", ""),
        )
        .await
        .unwrap();
    let updated: Vec<(u64, bool)> = gh
        .list_issues_updated_since(INSTALLATION, OWNER, NAME, &since)
        .await
        .unwrap()
        .iter()
        .map(|i| (i.number, i.is_pull_request))
        .collect();
    assert_eq!(
        updated,
        [(second, false), (first, false), (pull.number, true)]
    );
    let later = timestamp(T0 + 25);
    let recent = gh
        .list_issues_updated_since(INSTALLATION, OWNER, NAME, &later)
        .await
        .unwrap();
    assert_eq!(
        recent.iter().map(|i| i.number).collect::<Vec<_>>(),
        [first, pull.number]
    );
    assert_eq!(recent[0].labels, ["flightdeck:fix", "bug"]);
    assert_eq!(recent[0].json["labels"][0]["name"], "flightdeck:fix");
    assert!(recent[0].json["labels"][0]["id"].is_u64());

    let events: Vec<String> = gh
        .list_issue_events(INSTALLATION, OWNER, NAME, first)
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            assert!(e.json["actor"]["avatar_url"].is_string());
            format!(
                "{} {} by {} at {}",
                e.event,
                e.label.as_deref().unwrap_or("-"),
                e.actor.as_ref().map_or("-", |a| a.login.as_str()),
                e.created_at.as_deref().unwrap_or("-")
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            format!("labeled flightdeck:fix by bob at {}", timestamp(T0 + 20)),
            format!("labeled bug by alice at {}", timestamp(T0 + 30)),
        ]
    );
    assert!(gh
        .list_issue_events(INSTALLATION, OWNER, NAME, second)
        .await
        .unwrap()
        .is_empty());

    // One issue, whole; a pull request read as an issue; a missing one is GitHub's 404.
    let got = gh
        .get_issue(INSTALLATION, OWNER, NAME, second)
        .await
        .unwrap();
    assert_eq!((got.number, got.body.as_str()), (second, "Body"));
    assert_eq!(got.json["user"]["login"], "bob");
    assert!(
        gh.get_issue(INSTALLATION, OWNER, NAME, pull.number)
            .await
            .unwrap()
            .is_pull_request
    );
    let missing = gh
        .get_issue(INSTALLATION, OWNER, NAME, 999)
        .await
        .unwrap_err();
    assert_eq!(missing.status(), Some(404), "{missing}");

    // Comments of the whole repository updated since, least recently updated first, each
    // knowing its issue.
    fake.advance(Duration::from_secs(10));
    fake.issue_comment_created(REPO, second, "alice", "/flightdeck run fix");
    fake.advance(Duration::from_secs(10));
    fake.issue_comment_created(REPO, pull.number, "bob", "Nice.");
    let comments: Vec<(Option<u64>, String, String, Option<String>)> = gh
        .list_issue_comments_since(INSTALLATION, OWNER, NAME, &since)
        .await
        .unwrap()
        .into_iter()
        .map(|c| {
            assert!(c.json["reactions"].is_object());
            (
                c.issue_number(),
                c.author.login.clone(),
                c.body.clone(),
                c.created_at.clone(),
            )
        })
        .collect();
    assert_eq!(
        comments,
        [
            (
                Some(second),
                "alice".into(),
                "/flightdeck run fix".into(),
                Some(timestamp(T0 + 40))
            ),
            (
                Some(pull.number),
                "bob".into(),
                "Nice.".into(),
                Some(timestamp(T0 + 50))
            ),
        ]
    );
    let late = gh
        .list_issue_comments_since(INSTALLATION, OWNER, NAME, &timestamp(T0 + 45))
        .await
        .unwrap();
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].author.login, "bob");

    // Open pull requests, whole, and their reviews as GitHub sent them.
    let open = gh
        .list_pulls(INSTALLATION, OWNER, NAME, PullRequestStateFilter::Open)
        .await
        .unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].head_ref, "flightdeck/m1");
    assert_eq!(open[0].json["head"]["ref"], "flightdeck/m1");
    assert!(gh
        .list_pulls(INSTALLATION, OWNER, NAME, PullRequestStateFilter::Closed)
        .await
        .unwrap()
        .is_empty());
    let review = fake.submit_review(REPO, pull.number, "bob", "APPROVED", &pull.head_sha);
    let reviews = gh
        .list_reviews_as_sent(INSTALLATION, OWNER, NAME, pull.number)
        .await
        .unwrap();
    assert_eq!(reviews.len(), 1);
    assert_eq!(reviews[0].id, review);
    assert_eq!(reviews[0].state, ReviewState::Approved);
    assert_eq!(reviews[0].json["state"], "APPROVED");
    assert_eq!(reviews[0].json["user"]["login"], "bob");
    fake.assert_clean();

    let counts = call_counts(fake);
    for (call, n) in [
        ("GET /installation/repositories -> 200", 2),
        ("GET /repos/{owner}/{repo}/issues -> 200", 2),
        (
            "GET /repos/{owner}/{repo}/issues/{issue_number}/events -> 200",
            2,
        ),
        ("GET /repos/{owner}/{repo}/issues/{issue_number} -> 200", 2),
        ("GET /repos/{owner}/{repo}/issues/{issue_number} -> 404", 1),
        ("GET /repos/{owner}/{repo}/issues/comments -> 200", 2),
        ("GET /repos/{owner}/{repo}/pulls -> 200", 2),
        (
            "GET /repos/{owner}/{repo}/pulls/{pull_number}/reviews -> 200",
            1,
        ),
    ] {
        assert_eq!(counts.get(call), Some(&n), "{call}: {counts:#?}");
    }
}
