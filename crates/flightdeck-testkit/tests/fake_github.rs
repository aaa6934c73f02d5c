#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The fake GitHub holds requests and its own answers to GitHub's REST description, verifies
//! GitHub App JWTs, issues expiring installation tokens, can be scripted, and sends webhook
//! deliveries that validate against GitHub's webhook description, signed as GitHub signs.
//! Driven with plain reqwest. Needs `FLIGHTDECK_GITHUB_SPECS` (`scripts/github-specs`).

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use flightdeck_testkit::fake_github::{
    rsa_public_key_der, sign, timestamp, FakeGitHub, GitHubSpecs, API_VERSION, HOOKSHOT_USER_AGENT,
    HOOK_ID, SERVED, WEBHOOK_EVENTS,
};
use ring::signature::RsaKeyPair;
use serde_json::{json, Value};

const APP_ID: u64 = 123_456;
const INSTALLATION: u64 = 4_242;
const REPO: &str = "acme/widgets";

/// An RSA key made with the openssl CLI, as a GitHub App's key: the PKCS#8 DER for ring,
/// the PEM files for the fake.
struct AppKey {
    pair: RsaKeyPair,
    private_pem: Vec<u8>,
    public_pem: Vec<u8>,
    public_pkcs1_der: Vec<u8>,
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

fn make_key() -> AppKey {
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
            "key.pem",
        ],
    );
    openssl(
        d,
        &[
            "pkcs8", "-topk8", "-nocrypt", "-in", "key.pem", "-outform", "DER", "-out", "key.der",
        ],
    );
    openssl(d, &["pkey", "-in", "key.pem", "-pubout", "-out", "pub.pem"]);
    openssl(
        d,
        &[
            "rsa",
            "-in",
            "key.pem",
            "-RSAPublicKey_out",
            "-outform",
            "DER",
            "-out",
            "pub.der",
        ],
    );
    let der = std::fs::read(d.join("key.der")).unwrap();
    AppKey {
        pair: RsaKeyPair::from_pkcs8(&der).unwrap(),
        private_pem: std::fs::read(d.join("key.pem")).unwrap(),
        public_pem: std::fs::read(d.join("pub.pem")).unwrap(),
        public_pkcs1_der: std::fs::read(d.join("pub.der")).unwrap(),
    }
}

fn app_key() -> &'static AppKey {
    static KEY: OnceLock<AppKey> = OnceLock::new();
    KEY.get_or_init(make_key)
}

fn other_key() -> &'static AppKey {
    static KEY: OnceLock<AppKey> = OnceLock::new();
    KEY.get_or_init(make_key)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An RS256 JWT with the given claims.
fn jwt_with(key: &AppKey, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64(json!({"alg": "RS256", "typ": "JWT"}).to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let mut signature = vec![0u8; key.pair.public().modulus_len()];
    key.pair
        .sign(
            &ring::signature::RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            input.as_bytes(),
            &mut signature,
        )
        .unwrap();
    format!("{input}.{}", b64(&signature))
}

/// A JWT as GitHub recommends: `iat` 60 s in the past, `exp` 9 minutes ahead.
fn jwt(now: i64) -> String {
    jwt_with(
        app_key(),
        &json!({"iat": now - 60, "exp": now + 540, "iss": APP_ID.to_string()}),
    )
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// A request with the headers GitHub wants; `auth` is the whole `Authorization` value.
async fn call(
    fake: &FakeGitHub,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> Answer {
    call_with(fake, method, path, auth, body, &[]).await
}

async fn call_with(
    fake: &FakeGitHub,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<Value>,
    skip: &[&str],
) -> Answer {
    let mut request = reqwest::Client::new().request(
        reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
        format!("{}{path}", fake.url()),
    );
    for (name, value) in [
        ("user-agent", "flightdeck-tests/0.1"),
        ("accept", "application/vnd.github+json"),
        ("x-github-api-version", API_VERSION),
    ] {
        if !skip.contains(&name) {
            request = request.header(name, value);
        }
    }
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.expect("reach the fake");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Answer {
        status,
        headers,
        body,
    }
}

/// A fake with an installation on `acme` and the repository `acme/widgets`.
async fn fake() -> FakeGitHub {
    let fake = FakeGitHub::start(APP_ID, &app_key().public_pem).await;
    fake.add_installation(INSTALLATION, "acme");
    fake.add_repo(INSTALLATION, REPO, "main");
    fake
}

/// Exchanges a JWT for an installation token; returns `Bearer <token>`.
async fn token(fake: &FakeGitHub) -> String {
    let jwt = jwt(fake.now());
    let answer = call(
        fake,
        "POST",
        &format!("/app/installations/{INSTALLATION}/access_tokens"),
        Some(&format!("Bearer {jwt}")),
        None,
    )
    .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    format!("Bearer {}", answer.body["token"].as_str().unwrap())
}

#[test]
fn sign_matches_githubs_documented_vector() {
    assert_eq!(
        sign("It's a Secret to Everybody", b"Hello, World!"),
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    );
}

#[test]
fn the_descriptions_load_once_and_cover_what_the_fake_serves() {
    let started = Instant::now();
    let specs = GitHubSpecs::get();
    eprintln!(
        "GitHub descriptions parsed in {:?} (this call waited {:?})",
        specs.load_time(),
        started.elapsed()
    );
    let again = Instant::now();
    let _ = GitHubSpecs::get();
    assert!(again.elapsed() < Duration::from_millis(50), "parsed twice");
    for (method, template) in SERVED {
        let path = template
            .replace("{installation_id}", "1")
            .replace("{owner}", "o")
            .replace("{repo}", "r")
            .replace("{username}", "u")
            .replace("{issue_number}", "1")
            .replace("{comment_id}", "1")
            .replace("{pull_number}", "1")
            .replace("{check_run_id}", "1")
            .replace("{path}", "a/b.txt");
        let op = specs
            .operation(method, &path)
            .unwrap_or_else(|| panic!("{method} {template} is not in the description"));
        assert_eq!(op.template, *template);
        // Every keyword the validator meets on the way is one it checks or knows to ignore.
        let mut schemas: Vec<&Value> = specs
            .request_schema(&op)
            .map(|(s, _)| s)
            .into_iter()
            .collect();
        for status in [200, 201, 401, 403, 404, 422] {
            if let Ok(Some(schema)) = specs.response_schema(&op, status) {
                schemas.push(schema);
            }
        }
        for schema in schemas {
            let unknown = specs.rest().unknown_keywords_in(schema);
            assert!(unknown.is_empty(), "{method} {template}: {unknown:?}");
        }
    }
    for event in WEBHOOK_EVENTS {
        let (name, action) = event.split_once('.').unwrap_or((event, ""));
        let (_, schema) = specs
            .webhook_schema(name, Some(action).filter(|a| !a.is_empty()))
            .unwrap_or_else(|| panic!("no webhook schema for {event}"));
        let unknown = specs.webhooks().unknown_keywords_in(schema);
        assert!(unknown.is_empty(), "{event}: {unknown:?}");
    }
    // The most literal template wins.
    let op = specs
        .operation("GET", "/repos/o/r/issues/comments")
        .unwrap();
    assert_eq!(op.template, "/repos/{owner}/{repo}/issues/comments");
    let op = specs
        .operation("GET", "/repos/o/r/contents/docs/deep/a.md")
        .unwrap();
    assert_eq!(op.params["path"], "docs/deep/a.md");
}

#[test]
fn keys_are_read_in_every_form_github_apps_use() {
    let key = app_key();
    let pkcs1 = key.public_pkcs1_der.clone();
    assert_eq!(rsa_public_key_der(&key.public_pem), pkcs1);
    assert_eq!(rsa_public_key_der(&key.private_pem), pkcs1);
    assert_eq!(rsa_public_key_der(&pkcs1), pkcs1);
    assert_eq!(key.pair.public().as_ref(), pkcs1.as_slice());
}

#[tokio::test]
async fn a_signed_jwt_is_exchanged_for_installation_tokens_of_varying_length() {
    let fake = fake().await;
    let now = fake.now();
    let mut lengths = Vec::new();
    for _ in 0..2 {
        let answer = call(
            &fake,
            "POST",
            &format!("/app/installations/{INSTALLATION}/access_tokens"),
            Some(&format!("Bearer {}", jwt(now))),
            None,
        )
        .await;
        assert_eq!(answer.status, 201, "{}", answer.body);
        let token = answer.body["token"].as_str().unwrap();
        assert!(token.starts_with("ghs_"), "{token}");
        lengths.push(token.len());
        let expires = answer.body["expires_at"].as_str().unwrap();
        let hour_later = timestamp(now + 3600);
        assert!(
            expires >= hour_later.as_str() && expires <= timestamp(now + 3605).as_str(),
            "{expires} vs {hour_later}"
        );
        assert_eq!(answer.body["permissions"]["issues"], "write");
        assert_eq!(answer.header("x-ratelimit-resource"), Some("core"));
    }
    assert_eq!(lengths[0], 40);
    assert!(lengths[1] > 40, "{lengths:?}");
    // A narrowed token: one repository, read-only issues.
    let answer = call(
        &fake,
        "POST",
        &format!("/app/installations/{INSTALLATION}/access_tokens"),
        Some(&format!("Bearer {}", jwt(now))),
        Some(json!({"repositories": ["widgets"], "permissions": {"issues": "read"}})),
    )
    .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    assert_eq!(answer.body["repositories"][0]["full_name"], REPO);
    let narrowed = format!("token {}", answer.body["token"].as_str().unwrap());
    let listed = call(
        &fake,
        "GET",
        "/repos/acme/widgets/issues",
        Some(&narrowed),
        None,
    )
    .await;
    assert_eq!(listed.status, 200);
    let number = fake.open_issue(REPO, "Deploy", "", "carol");
    let refused = call(
        &fake,
        "POST",
        &format!("/repos/acme/widgets/issues/{number}/comments"),
        Some(&narrowed),
        Some(json!({"body": "hi"})),
    )
    .await;
    assert_eq!(refused.status, 403);
    assert_eq!(
        refused.body["message"],
        "Resource not accessible by integration"
    );
    // More than the installation was granted.
    let answer = call(
        &fake,
        "POST",
        &format!("/app/installations/{INSTALLATION}/access_tokens"),
        Some(&format!("Bearer {}", jwt(now))),
        Some(json!({"permissions": {"administration": "write"}})),
    )
    .await;
    assert_eq!(answer.status, 422);
    // GET /app/installations with the JWT.
    let answer = call(
        &fake,
        "GET",
        "/app/installations",
        Some(&format!("Bearer {}", jwt(now))),
        None,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body[0]["id"], INSTALLATION);
    assert_eq!(answer.body[0]["account"]["login"], "acme");
    assert_eq!(fake.tokens_issued(), 3);
    fake.assert_clean();
}

#[tokio::test]
async fn bad_jwts_are_refused_401_and_are_no_violation() {
    let fake = fake().await;
    let now = fake.now();
    let path = format!("/app/installations/{INSTALLATION}/access_tokens");
    let iss = APP_ID.to_string();
    let cases = [
        (
            "expired",
            jwt_with(
                app_key(),
                &json!({"iat": now - 700, "exp": now - 100, "iss": iss}),
            ),
        ),
        (
            "issued in the future",
            jwt_with(
                app_key(),
                &json!({"iat": now + 120, "exp": now + 600, "iss": iss}),
            ),
        ),
        (
            "lives longer than 10 minutes",
            jwt_with(
                app_key(),
                &json!({"iat": now - 60, "exp": now + 600, "iss": iss}),
            ),
        ),
        (
            "another app",
            jwt_with(
                app_key(),
                &json!({"iat": now - 60, "exp": now + 500, "iss": "999"}),
            ),
        ),
        (
            "signed by another key",
            jwt_with(
                other_key(),
                &json!({"iat": now - 60, "exp": now + 500, "iss": iss}),
            ),
        ),
        ("not a JWT", "not.a.jwt".to_string()),
    ];
    for (why, jwt) in &cases {
        let answer = call(&fake, "POST", &path, Some(&format!("Bearer {jwt}")), None).await;
        assert_eq!(answer.status, 401, "{why}: {}", answer.body);
        assert!(answer.body["message"].is_string(), "{why}");
    }
    // The JWT is not an installation token, and no token is no access.
    let good = jwt(now);
    let answer = call(
        &fake,
        "GET",
        "/repos/acme/widgets/issues",
        Some(&format!("Bearer {good}")),
        None,
    )
    .await;
    assert_eq!(answer.status, 401);
    let answer = call(&fake, "GET", "/repos/acme/widgets/issues", None, None).await;
    assert_eq!(answer.status, 401);
    assert_eq!(fake.tokens_issued(), 0);
    fake.assert_clean();
}

#[tokio::test]
async fn installation_tokens_expire_on_the_fake_clock() {
    let fake = fake().await;
    let auth = token(&fake).await;
    let answer = call(
        &fake,
        "GET",
        "/repos/acme/widgets/issues",
        Some(&auth),
        None,
    )
    .await;
    assert_eq!(answer.status, 200);
    fake.advance(Duration::from_secs(3601));
    let answer = call(
        &fake,
        "GET",
        "/repos/acme/widgets/issues",
        Some(&auth),
        None,
    )
    .await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.body["message"], "Bad credentials");
    // A JWT made on the moved clock still works.
    let fresh = token(&fake).await;
    let answer = call(
        &fake,
        "GET",
        "/repos/acme/widgets/issues",
        Some(&fresh),
        None,
    )
    .await;
    assert_eq!(answer.status, 200);
    // Another installation's repository is not found.
    fake.add_installation(7, "other-org");
    fake.add_repo(7, "other-org/secret", "main");
    let answer = call(
        &fake,
        "GET",
        "/repos/other-org/secret/issues",
        Some(&fresh),
        None,
    )
    .await;
    assert_eq!(answer.status, 404);
    fake.set_now(1_900_000_000);
    assert!((fake.now() - 1_900_000_000).abs() <= 1);
    fake.assert_clean();
}

#[tokio::test]
async fn every_served_rest_call_answers_as_github_and_validates_clean() {
    let fake = fake().await;
    let bearer = token(&fake).await;
    let auth = Some(bearer.as_str());
    fake.set_permission(REPO, "carol", "maintain");
    fake.add_user("mallory");

    // Collaborator permission.
    let answer = call(
        &fake,
        "GET",
        "/repos/acme/widgets/collaborators/carol/permission",
        auth,
        None,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["permission"], "write");
    assert_eq!(answer.body["role_name"], "maintain");
    assert_eq!(answer.body["user"]["login"], "carol");
    let answer = call(
        &fake,
        "GET",
        "/repos/acme/widgets/collaborators/mallory/permission",
        auth,
        None,
    )
    .await;
    assert_eq!(answer.body["permission"], "none");
    let answer = call(
        &fake,
        "GET",
        "/repos/acme/widgets/collaborators/nobody-at-all/permission",
        auth,
        None,
    )
    .await;
    assert_eq!(answer.status, 404);

    // Comments: create, then edit.
    let issue = fake.open_issue(REPO, "Deploy v2", "Please approve", "carol");
    let answer = call(
        &fake,
        "POST",
        &format!("/repos/acme/widgets/issues/{issue}/comments"),
        auth,
        Some(json!({"body": "Waiting for approval"})),
    )
    .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    let comment_id = answer.body["id"].as_u64().unwrap();
    assert_eq!(answer.body["user"]["login"], fake.bot_login());
    assert_eq!(answer.body["user"]["type"], "Bot");
    assert_eq!(answer.body["performed_via_github_app"]["id"], APP_ID);
    assert!(answer
        .header("location")
        .unwrap()
        .ends_with(&comment_id.to_string()));
    let answer = call(
        &fake,
        "PATCH",
        &format!("/repos/acme/widgets/issues/comments/{comment_id}"),
        auth,
        Some(json!({"body": "Approved by @carol"})),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let comments = fake.comments(REPO, issue);
    assert_eq!(comments.len(), 1);
    assert_eq!(comments[0]["body"], "Approved by @carol");

    // Issues, with labels, since and state.
    let other = fake.open_issue(REPO, "Unrelated", "", "dave");
    let _ = fake.issues_labeled(REPO, issue, "flightdeck", "carol");
    let answer = call(
        &fake,
        "GET",
        "/repos/acme/widgets/issues?labels=flightdeck&state=open",
        auth,
        None,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let numbers: Vec<u64> = answer
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, vec![issue]);
    let since = timestamp(fake.now() + 10);
    let answer = call(
        &fake,
        "GET",
        &format!("/repos/acme/widgets/issues?since={since}&state=all"),
        auth,
        None,
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, json!([]));
    let answer = call(
        &fake,
        "GET",
        "/repos/acme/widgets/issues?per_page=1",
        auth,
        None,
    )
    .await;
    assert_eq!(answer.body.as_array().unwrap().len(), 1);
    assert_eq!(answer.body[0]["number"], other);
    assert!(answer.header("link").unwrap().contains("rel=\"next\""));

    // Pull requests: create (draft), edit, get.
    let answer = call(
        &fake,
        "POST",
        "/repos/acme/widgets/pulls",
        auth,
        Some(json!({"title": "Mission m1", "head": "flightdeck/m1", "base": "main", "body": "…", "draft": true})),
    )
    .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    let pull = answer.body["number"].as_u64().unwrap();
    let node = answer.body["node_id"].as_str().unwrap().to_string();
    let head_sha = answer.body["head"]["sha"].as_str().unwrap().to_string();
    assert_eq!(answer.body["draft"], true);
    assert_eq!(head_sha, fake.branch_sha(REPO, "flightdeck/m1"));
    let again = call(
        &fake,
        "POST",
        "/repos/acme/widgets/pulls",
        auth,
        Some(json!({"title": "Again", "head": "acme:flightdeck/m1", "base": "main"})),
    )
    .await;
    assert_eq!(again.status, 422, "a second open PR for the same head");
    let answer = call(
        &fake,
        "PATCH",
        &format!("/repos/acme/widgets/pulls/{pull}"),
        auth,
        Some(json!({"title": "Mission m1 (ready)", "body": "updated"})),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["title"], "Mission m1 (ready)");
    let answer = call(
        &fake,
        "GET",
        &format!("/repos/acme/widgets/pulls/{pull}"),
        auth,
        None,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["body"], "updated");
    // A pull request is an issue too.
    let answer = call(
        &fake,
        "GET",
        "/repos/acme/widgets/issues?state=all",
        auth,
        None,
    )
    .await;
    assert!(answer
        .body
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["number"] == pull && i["pull_request"].is_object()));

    // GraphQL: ready for review.
    let answer = call(
        &fake,
        "POST",
        "/graphql",
        auth,
        Some(json!({
            "query": "mutation($id: ID!) { markPullRequestReadyForReview(input: {pullRequestId: $id}) { pullRequest { id isDraft number } } }",
            "variables": {"id": node},
        })),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.body,
        json!({"data": {"markPullRequestReadyForReview": {"pullRequest": {"id": node, "isDraft": false, "number": pull}}}})
    );
    assert_eq!(fake.pulls(REPO)[0]["draft"], false);

    // Reviews.
    fake.submit_review(REPO, pull, "carol", "APPROVED", &head_sha);
    let answer = call(
        &fake,
        "GET",
        &format!("/repos/acme/widgets/pulls/{pull}/reviews"),
        auth,
        None,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body[0]["state"], "APPROVED");
    assert_eq!(answer.body[0]["user"]["login"], "carol");
    assert_eq!(answer.body[0]["commit_id"], head_sha.as_str());

    // Check runs: create with a button, complete.
    let answer = call(
        &fake,
        "POST",
        "/repos/acme/widgets/check-runs",
        auth,
        Some(json!({
            "name": "flightdeck/approval",
            "head_sha": head_sha,
            "status": "in_progress",
            "external_id": "m1",
            "output": {"title": "Waiting", "summary": "Needs 1 approval"},
            "actions": [{"label": "Approve", "description": "Approve the mission", "identifier": "approve"}],
        })),
    )
    .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    let run = answer.body["id"].as_u64().unwrap();
    assert_eq!(answer.body["pull_requests"][0]["number"], pull);
    let answer = call(
        &fake,
        "PATCH",
        &format!("/repos/acme/widgets/check-runs/{run}"),
        auth,
        Some(json!({"status": "completed", "conclusion": "success", "output": {"title": "Approved", "summary": "By @carol"}})),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["conclusion"], "success");
    assert!(answer.body["completed_at"].is_string());
    let runs = fake.check_runs(REPO);
    assert_eq!(runs[0]["output"]["title"], "Approved");
    assert_eq!(runs[0]["actions"][0]["identifier"], "approve");

    // Contents: a file on the default branch, on a ref, a directory, raw.
    fake.set_file(REPO, "main", ".flightdeck/policy.toml", "approvals = 1\n");
    fake.set_file(
        REPO,
        "flightdeck/m1",
        ".flightdeck/policy.toml",
        "approvals = 2\n",
    );
    let answer = call(
        &fake,
        "GET",
        "/repos/acme/widgets/contents/.flightdeck/policy.toml",
        auth,
        None,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let content: String = answer.body["content"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .collect();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(content)
        .unwrap();
    assert_eq!(decoded, b"approvals = 1\n");
    assert_eq!(
        answer.body["sha"],
        flightdeck_testkit::fake_github::git_blob_sha(b"approvals = 1\n")
    );
    let answer = call(
        &fake,
        "GET",
        "/repos/acme/widgets/contents/.flightdeck%2Fpolicy.toml?ref=flightdeck%2Fm1",
        auth,
        None,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["path"], ".flightdeck/policy.toml");
    let content: String = answer.body["content"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(content)
            .unwrap(),
        b"approvals = 2\n"
    );
    let answer = call(
        &fake,
        "GET",
        "/repos/acme/widgets/contents/.flightdeck",
        auth,
        None,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body[0]["type"], "file");
    let answer = call(
        &fake,
        "GET",
        "/repos/acme/widgets/contents/missing.txt?ref=main",
        auth,
        None,
    )
    .await;
    assert_eq!(answer.status, 404);
    let raw = reqwest::Client::new()
        .get(format!(
            "{}/repos/acme/widgets/contents/.flightdeck/policy.toml",
            fake.url()
        ))
        .header("user-agent", "flightdeck-tests")
        .header("accept", "application/vnd.github.raw+json")
        .header("x-github-api-version", API_VERSION)
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.text().await.unwrap(), "approvals = 1\n");

    fake.assert_clean();
    assert_eq!(fake.calls("GET", "/repos/acme/widgets/contents/"), 5);
    assert!(fake
        .requests()
        .iter()
        .any(|r| r.operation.as_deref()
            == Some("PATCH /repos/{owner}/{repo}/check-runs/{check_run_id}")));
}

#[tokio::test]
async fn a_request_that_breaks_the_description_is_a_violation() {
    let fake = fake().await;
    let bearer = token(&fake).await;
    let auth = Some(bearer.as_str());
    let issue = fake.open_issue(REPO, "Deploy", "", "carol");
    let path = format!("/repos/acme/widgets/issues/{issue}/comments");

    let answer = call(&fake, "POST", &path, auth, Some(json!({"text": "hi"}))).await;
    assert_eq!(answer.status, 422);
    let violations = fake.violations();
    assert!(
        violations
            .iter()
            .any(|v| v.contains("missing required property `body`")),
        "{violations:?}"
    );
    assert!(
        violations
            .iter()
            .any(|v| v.contains("`text` is not a property")),
        "{violations:?}"
    );

    let fake = self::fake().await;
    let bearer = token(&fake).await;
    let auth = Some(bearer.as_str());
    fake.open_pull(REPO, "PR", "topic", "main", "carol");
    // `draft` cannot be set by PATCH (that is what the GraphQL mutation is for).
    let answer = call(
        &fake,
        "PATCH",
        "/repos/acme/widgets/pulls/1",
        auth,
        Some(json!({"draft": false})),
    )
    .await;
    assert_eq!(answer.status, 422);
    assert!(
        fake.violations()[0].contains("`draft` is not a property"),
        "{:?}",
        fake.violations()
    );

    let fake = self::fake().await;
    let bearer = token(&fake).await;
    let auth = Some(bearer.as_str());
    let sha = "a".repeat(40);
    let answer = call(
        &fake,
        "POST",
        "/repos/acme/widgets/check-runs",
        auth,
        Some(json!({"name": "x", "head_sha": sha, "status": "completed"})),
    )
    .await;
    assert_eq!(answer.status, 422);
    assert!(
        fake.violations()[0].contains("conclusion"),
        "{:?}",
        fake.violations()
    );

    let fake = self::fake().await;
    let bearer = token(&fake).await;
    let auth = Some(bearer.as_str());
    for (query, needle) in [
        ("state=opened", "is not one of"),
        ("since=yesterday", "ISO 8601"),
        ("per_page=ten", "not an integer"),
        ("labelz=x", "`labelz` is not a query parameter"),
    ] {
        let answer = call(
            &fake,
            "GET",
            &format!("/repos/acme/widgets/issues?{query}"),
            auth,
            None,
        )
        .await;
        assert_eq!(answer.status, 422, "{query}");
        assert!(
            fake.violations().iter().any(|v| v.contains(needle)),
            "{query}: {:?}",
            fake.violations()
        );
    }
    let answer = call(&fake, "GET", "/repos/acme/widgets/pulls/abc", auth, None).await;
    assert_eq!(answer.status, 404);
    let raw = reqwest::Client::new()
        .post(format!("{}{path}", fake.url()))
        .header("user-agent", "t")
        .header("accept", "application/vnd.github+json")
        .header("x-github-api-version", API_VERSION)
        .header("authorization", &bearer)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 400);
}

#[tokio::test]
async fn missing_headers_unknown_paths_and_unserved_operations_are_violations() {
    let fake = fake().await;
    let bearer = token(&fake).await;
    let auth = Some(bearer.as_str());
    let answer = call_with(
        &fake,
        "GET",
        "/repos/acme/widgets/issues",
        auth,
        None,
        &["user-agent"],
    )
    .await;
    assert_eq!(answer.status, 403);
    assert!(fake.violations()[0].contains("User-Agent"));

    let fake = self::fake().await;
    let bearer = token(&fake).await;
    let auth = Some(bearer.as_str());
    let answer = call_with(
        &fake,
        "GET",
        "/repos/acme/widgets/issues",
        auth,
        None,
        &["accept", "x-github-api-version"],
    )
    .await;
    assert_eq!(answer.status, 200, "GitHub still answers");
    let violations = fake.violations();
    assert_eq!(violations.len(), 2, "{violations:?}");
    assert!(violations.iter().any(|v| v.contains("Accept")));
    assert!(violations
        .iter()
        .any(|v| v.contains("X-GitHub-Api-Version")));

    let fake = self::fake().await;
    let bearer = token(&fake).await;
    let auth = Some(bearer.as_str());
    let answer = call(
        &fake,
        "GET",
        "/repos/acme/widgets/no-such-thing",
        auth,
        None,
    )
    .await;
    assert_eq!(answer.status, 404);
    assert!(fake.violations()[0].contains("not in GitHub's REST description"));
    let answer = call(
        &fake,
        "DELETE",
        "/repos/acme/widgets/issues/comments/1",
        auth,
        None,
    )
    .await;
    assert_eq!(answer.status, 404);
    assert!(
        fake.violations()[1].contains("the fake does not serve it"),
        "{:?}",
        fake.violations()
    );
    let answer = call(
        &fake,
        "POST",
        "/graphql",
        auth,
        Some(json!({"query": "query { viewer { login } }"})),
    )
    .await;
    assert!(answer.body["errors"].is_array());
    assert!(fake.violations()[2].contains("markPullRequestReadyForReview"));
    let answer = call(
        &fake,
        "POST",
        "/graphql",
        auth,
        Some(json!({"query": "mutation { markPullRequestReadyForReview(input: {pullRequestId: \"PR_nope\"}) { pullRequest { isDraft } } }"})),
    )
    .await;
    assert_eq!(answer.body["errors"][0]["type"], "NOT_FOUND");
    assert_eq!(
        fake.violations().len(),
        3,
        "an unknown node is a legitimate answer"
    );
}

#[tokio::test]
async fn rate_limits_and_failures_can_be_scripted() {
    let fake = fake().await;
    let bearer = token(&fake).await;
    let auth = Some(bearer.as_str());
    let issue = fake.open_issue(REPO, "Deploy", "", "carol");
    let comments = format!("/repos/acme/widgets/issues/{issue}/comments");

    fake.rate_limit_next("/repos/acme/widgets/issues", 1);
    let answer = call(&fake, "POST", &comments, auth, Some(json!({"body": "x"}))).await;
    assert_eq!(answer.status, 403);
    assert_eq!(answer.header("retry-after"), Some("1"));
    assert!(answer.body["message"]
        .as_str()
        .unwrap()
        .contains("secondary rate limit"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let answer = call(&fake, "POST", &comments, auth, Some(json!({"body": "x"}))).await;
    assert_eq!(answer.status, 201);
    fake.assert_clean();

    let now = fake.now();
    fake.exhaust_rate_limit_next("/repos/", 30);
    let answer = call(&fake, "GET", "/repos/acme/widgets/issues", auth, None).await;
    assert_eq!(answer.status, 403);
    assert_eq!(answer.header("x-ratelimit-remaining"), Some("0"));
    let reset: i64 = answer.header("x-ratelimit-reset").unwrap().parse().unwrap();
    assert!((now + 30..=now + 32).contains(&reset), "{reset} vs {now}");
    // Retrying before the reset is a violation (and is answered).
    let answer = call(&fake, "GET", "/repos/acme/widgets/issues", auth, None).await;
    assert_eq!(answer.status, 200);
    assert!(
        fake.violations()[0].contains("before the exhausted rate limit's reset"),
        "{:?}",
        fake.violations()
    );

    let fake = self::fake().await;
    let bearer = token(&fake).await;
    let auth = Some(bearer.as_str());
    fake.fail_next("/repos/acme/widgets/pulls", 502);
    fake.open_pull(REPO, "PR", "topic", "main", "carol");
    let answer = call(&fake, "GET", "/repos/acme/widgets/pulls/1", auth, None).await;
    assert_eq!(answer.status, 502);
    assert_eq!(answer.body["message"], "Bad Gateway");
    let answer = call(&fake, "GET", "/repos/acme/widgets/pulls/1", auth, None).await;
    assert_eq!(answer.status, 200);
    // GraphQL too.
    fake.rate_limit_next("/graphql", 0);
    let mutation = json!({"query": "mutation { markPullRequestReadyForReview(input: {pullRequestId: \"PR_x\"}) { pullRequest { id } } }"});
    let answer = call(&fake, "POST", "/graphql", auth, Some(mutation.clone())).await;
    assert_eq!(answer.status, 403);
    assert_eq!(answer.header("retry-after"), Some("0"));
    let answer = call(&fake, "POST", "/graphql", auth, Some(mutation)).await;
    assert_eq!(answer.status, 200);
    fake.assert_clean();
}

/// Every payload builder, with the state it needs.
async fn payloads(fake: &FakeGitHub) -> Vec<(&'static str, Value)> {
    let auth = token(fake).await;
    let issue = fake.open_issue(REPO, "Deploy v2", "Please approve", "carol");
    let pull = fake.open_pull(
        REPO,
        "Mission m1",
        "flightdeck/m1",
        "main",
        "flightdeck-fake[bot]",
    );
    let head = fake.branch_sha(REPO, "flightdeck/m1");
    let answer = call(
        fake,
        "POST",
        "/repos/acme/widgets/check-runs",
        Some(&auth),
        Some(json!({
            "name": "flightdeck/approval",
            "head_sha": head,
            "actions": [{"label": "Approve", "description": "Approve the mission", "identifier": "approve"}],
        })),
    )
    .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    let run = answer.body["id"].as_u64().unwrap();
    fake.set_permission(REPO, "carol", "write");
    let approved = fake.submit_review(REPO, pull, "carol", "APPROVED", &head);
    let other = fake.submit_review(REPO, pull, "dave", "CHANGES_REQUESTED", &head);
    vec![
        (
            "ping",
            fake.ping("https://flightdeck.example/github/webhook"),
        ),
        (
            "installation",
            fake.installation_created(INSTALLATION, "acme-admin"),
        ),
        (
            "issues",
            fake.issues_labeled(REPO, issue, "flightdeck:approve", "carol"),
        ),
        (
            "issue_comment",
            fake.issue_comment_created(REPO, issue, "carol", "/approve"),
        ),
        (
            "issue_comment",
            fake.issue_comment_created(REPO, pull, "carol", "/approve"),
        ),
        (
            "pull_request",
            fake.pull_request_synchronize(REPO, pull, &"b".repeat(40), "carol"),
        ),
        (
            "pull_request_review",
            fake.pull_request_review_submitted(REPO, approved),
        ),
        (
            "pull_request_review",
            fake.pull_request_review_dismissed(REPO, other, "carol"),
        ),
        (
            "check_run",
            fake.check_run_requested_action(REPO, run, "approve", "carol"),
        ),
        ("check_run", fake.check_run_rerequested(REPO, run, "carol")),
        (
            "pull_request",
            fake.pull_request_closed(REPO, pull, true, "carol"),
        ),
    ]
}

#[tokio::test]
async fn every_payload_builder_validates_against_the_webhook_description() {
    let fake = fake().await;
    let specs = GitHubSpecs::get();
    let mut seen = std::collections::BTreeSet::new();
    for (event, payload) in payloads(&fake).await {
        match specs.check_webhook(event, &payload) {
            Ok(key) => {
                seen.insert(key);
            }
            Err(errors) => panic!("{event}: {}", errors.join("\n")),
        }
        // The validation reaches into nested objects: a required field taken out deep down
        // is caught.
        for pointer in [
            "/issue/user/login",
            "/comment/user/id",
            "/pull_request/head/sha",
            "/review/commit_id",
            "/check_run/app/owner/login",
            "/installation/account/login",
            "/hook/events",
            "/repository/owner/login",
        ] {
            let Some((parent, field)) = pointer.rsplit_once('/') else {
                continue;
            };
            let mut broken = payload.clone();
            let Some(object) = broken.pointer_mut(parent).and_then(Value::as_object_mut) else {
                continue;
            };
            if object.remove(field).is_none() {
                continue;
            }
            assert!(
                specs.check_webhook(event, &broken).is_err(),
                "{event}: {pointer} taken out still validates"
            );
        }
    }
    let expected: std::collections::BTreeSet<String> = WEBHOOK_EVENTS
        .iter()
        .map(|e| e.replace(['.', '_'], "-"))
        .collect();
    assert_eq!(seen, expected);
    // A closed, merged pull request as GitHub shows it.
    let closed = fake.pulls(REPO).pop().unwrap();
    assert_eq!(closed["merged"], true);
    assert_eq!(closed["state"], "closed");
    fake.assert_clean();
}

#[tokio::test]
#[should_panic(expected = "the fake would send a issues payload GitHub would not")]
async fn a_payload_github_would_not_send_panics() {
    let fake = fake().await;
    let issue = fake.open_issue(REPO, "Deploy", "", "carol");
    let mut payload = fake.issues_labeled(REPO, issue, "x", "carol");
    payload.as_object_mut().unwrap().remove("sender");
    fake.deliver("http://127.0.0.1:9/", "s", "issues", payload)
        .await;
}

/// The headers and the body of one request.
type Delivery = (Vec<(String, String)>, Vec<u8>);

#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Delivery>>>);

/// A receiver that checks the signature itself (ring HMAC, constant-time) and answers 202,
/// or 401 on a bad signature.
async fn receiver(secret: &'static str) -> (String, Received) {
    let received = Received::default();
    let store = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let store = store.clone();
                async move {
                    let pairs: Vec<(String, String)> = headers
                        .iter()
                        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
                        .collect();
                    store.0.lock().unwrap().push((pairs, body.to_vec()));
                    let signature = headers
                        .get("x-hub-signature-256")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("sha256="))
                        .and_then(|v| hex::decode(v).ok())
                        .unwrap_or_default();
                    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
                    if ring::hmac::verify(&key, &body, &signature).is_ok() {
                        axum::http::StatusCode::ACCEPTED
                    } else {
                        axum::http::StatusCode::UNAUTHORIZED
                    }
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), received)
}

#[tokio::test]
async fn deliveries_are_signed_and_carry_githubs_headers() {
    let fake = fake().await;
    let (url, received) = receiver("hunter2").await;
    let issue = fake.open_issue(REPO, "Deploy", "", "carol");
    let payload = fake.issue_comment_created(REPO, issue, "carol", "/approve");
    let result = fake
        .deliver(&url, "hunter2", "issue_comment", payload.clone())
        .await;
    assert_eq!(result.status, Some(202), "{result:?}");
    assert!(result.ok());
    let (headers, body) = received.0.lock().unwrap()[0].clone();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {name} header"))
    };
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), payload);
    assert_eq!(header("x-github-event"), "issue_comment");
    let id = header("x-github-delivery");
    let uuid =
        regex::Regex::new(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
            .unwrap();
    assert!(uuid.is_match(&id), "{id}");
    assert_eq!(id, result.delivery_id);
    assert_eq!(header("x-github-hook-id"), HOOK_ID.to_string());
    assert_eq!(
        header("x-github-hook-installation-target-id"),
        APP_ID.to_string()
    );
    assert_eq!(
        header("x-github-hook-installation-target-type"),
        "integration"
    );
    assert_eq!(header("user-agent"), HOOKSHOT_USER_AGENT);
    assert_eq!(header("content-type"), "application/json");
    assert_eq!(header("x-hub-signature-256"), sign("hunter2", &body));
    let sha1 = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, b"hunter2"),
        &body,
    );
    assert_eq!(
        header("x-hub-signature"),
        format!("sha1={}", hex::encode(sha1.as_ref()))
    );

    // A redelivery: the same id and body.
    let again = fake.redeliver(&id).await;
    assert!(again.redelivery);
    assert_eq!(again.status, Some(202));
    let (headers2, body2) = received.0.lock().unwrap()[1].clone();
    assert_eq!(body2, body);
    assert!(headers2
        .iter()
        .any(|(n, v)| n == "x-github-delivery" && *v == id));
    assert_eq!(fake.deliveries(), vec![id]);

    // A receiver with another secret refuses it; an unreachable one is an error, not a panic.
    let wrong = fake
        .deliver(&url, "not-the-secret", "ping", fake.ping(&url))
        .await;
    assert_eq!(wrong.status, Some(401));
    let gone = fake
        .deliver("http://127.0.0.1:9/hook", "s", "ping", fake.ping("x"))
        .await;
    assert!(gone.status.is_none() && gone.error.is_some());
    // No secret, no signature headers.
    let unsigned = fake.deliver(&url, "", "ping", fake.ping(&url)).await;
    assert!(unsigned.header("x-hub-signature-256").is_none());
    fake.assert_clean();
}
