//! The client against a tiny HTTP/1.1 server written here: replies programmed per method
//! and path, every request recorded; JWTs checked with the public key `openssl` extracts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use common::TestKey;
use flightdeck_github::client::{Sleeper, MAX_RETRIES};
use flightdeck_github::{
    AppKey, CheckAction, CheckConclusion, CheckOutput, CheckRunFields, CheckStatus, Clock,
    GitHubClient, GitHubError, NewPullRequest, Permission, PullRequestState, PullRequestUpdate,
    ReviewState,
};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const APP_ID: u64 = 29310;
const INSTALLATION: u64 = 4242;
/// 2026-01-01T00:00:00Z
const T0: i64 = 1_767_225_600;
const TOKEN: &str = "ghs_16C7e42F292c6912E7710c838347Ae178B4a";

fn key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(TestKey::pkcs1)
}

#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

impl Reply {
    fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            headers: vec![],
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }
}

fn ok(body: Value) -> Reply {
    Reply::json(200, body)
}

fn token_reply(token: &str, expires_at: &str) -> Reply {
    Reply::json(
        201,
        json!({"token": token, "expires_at": expires_at, "permissions": {"issues": "write"}, "repository_selection": "selected"}),
    )
}

#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }
    fn bearer(&self) -> &str {
        self.header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .expect("a Bearer credential")
    }
}

type Routes = Arc<Mutex<HashMap<(String, String), VecDeque<Reply>>>>;

struct Server {
    url: String,
    routes: Routes,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Server {
    async fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/api/v3", listener.local_addr().expect("addr"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let routes: Routes = Arc::new(Mutex::new(HashMap::new()));
        let (recorded, queue) = (requests.clone(), routes.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let recorded = recorded.clone();
                let queue = queue.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let mut lines = head.split("\r\n");
                    let mut start = lines.next().unwrap_or_default().split(' ');
                    let method = start.next().unwrap_or_default().to_string();
                    let target = start.next().unwrap_or_default().to_string();
                    let headers: Vec<(String, String)> = lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
                        .collect();
                    let length = headers
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                        .and_then(|(_, v)| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + length {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body = buf[head_end..head_end + length].to_vec();
                    let path = target.split('?').next().unwrap_or_default().to_string();
                    recorded.lock().unwrap().push(Recorded {
                        method: method.clone(),
                        target,
                        headers,
                        body,
                    });
                    let reply = queue
                        .lock()
                        .unwrap()
                        .get_mut(&(method, path))
                        .and_then(VecDeque::pop_front)
                        .unwrap_or(Reply::json(599, json!({"message": "no reply programmed"})));
                    tokio::time::sleep(reply.delay).await;
                    let mut out = format!(
                        "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
                        reply.status,
                        reply.body.len()
                    );
                    for (n, v) in &reply.headers {
                        out.push_str(&format!("{n}: {v}\r\n"));
                    }
                    out.push_str("\r\n");
                    out.push_str(&reply.body);
                    let _ = stream.write_all(out.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Server {
            url,
            routes,
            requests,
        }
    }

    /// Queues `reply` for `method` on `path` (below `/api/v3`).
    fn on(&self, method: &str, path: &str, reply: Reply) -> &Server {
        self.on_exactly(method, &format!("/api/v3{path}"), reply)
    }

    /// Queues `reply` for `method` on `path` as it is.
    fn on_exactly(&self, method: &str, path: &str, reply: Reply) -> &Server {
        self.routes
            .lock()
            .unwrap()
            .entry((method.to_string(), path.to_string()))
            .or_default()
            .push_back(reply);
        self
    }

    fn on_token(&self) -> &Server {
        self.on(
            "POST",
            &format!("/app/installations/{INSTALLATION}/access_tokens"),
            token_reply(TOKEN, "2026-01-01T01:00:00Z"),
        )
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// The requests other than token fetches.
    fn calls(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| !r.path().ends_with("/access_tokens"))
            .collect()
    }
}

#[derive(Default)]
struct RecordingSleeper(Mutex<Vec<Duration>>);

impl RecordingSleeper {
    fn waits(&self) -> Vec<Duration> {
        self.0.lock().unwrap().clone()
    }
}

impl Sleeper for RecordingSleeper {
    fn sleep(
        &self,
        duration: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        self.0.lock().unwrap().push(duration);
        Box::pin(async {})
    }
}

struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now_unix(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

struct Harness {
    client: GitHubClient,
    sleeper: Arc<RecordingSleeper>,
    clock: Arc<TestClock>,
}

fn client(server: &Server) -> Harness {
    let sleeper = Arc::new(RecordingSleeper::default());
    let clock = Arc::new(TestClock(AtomicI64::new(T0)));
    let app_key = AppKey::from_pem(&key().pem).expect("key");
    let client = GitHubClient::new(&server.url, APP_ID, app_key)
        .expect("client")
        .with_sleeper(sleeper.clone())
        .with_clock(clock.clone());
    Harness {
        client,
        sleeper,
        clock,
    }
}

fn assert_standard_headers(request: &Recorded) {
    assert_eq!(
        request.header("accept"),
        Some("application/vnd.github+json")
    );
    assert_eq!(request.header("x-github-api-version"), Some("2022-11-28"));
    assert!(
        request
            .header("user-agent")
            .is_some_and(|ua| ua.starts_with("flightdeck")),
        "{:?}",
        request.header("user-agent")
    );
}

/// The credential is in the Authorization header and nowhere else.
fn assert_only_in_the_header(request: &Recorded, secret: &str) {
    assert!(!request.target.contains(secret), "{}", request.target);
    assert!(!String::from_utf8_lossy(&request.body).contains(secret));
    let carrying: Vec<&str> = request
        .headers
        .iter()
        .filter(|(_, v)| v.contains(secret))
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(carrying.len(), 1, "{carrying:?}");
    assert!(carrying[0].eq_ignore_ascii_case("authorization"));
}

#[tokio::test]
async fn the_token_comes_from_a_jwt_and_is_reused_until_near_its_expiry() {
    let server = Server::start().await;
    server.on_token().on(
        "POST",
        &format!("/app/installations/{INSTALLATION}/access_tokens"),
        token_reply("v2.second-token-of-another-shape", "2026-01-01T02:00:00Z"),
    );
    for _ in 0..3 {
        server.on("GET", "/repos/acme/widgets/pulls/18/reviews", ok(json!([])));
    }
    let h = client(&server);
    h.client
        .list_reviews(INSTALLATION, "acme", "widgets", 18)
        .await
        .expect("reviews");
    // 54 minutes later: more than 5 minutes left, the same token.
    h.clock.0.store(T0 + 54 * 60, Ordering::SeqCst);
    h.client
        .list_reviews(INSTALLATION, "acme", "widgets", 18)
        .await
        .expect("reviews");
    // 55 minutes later: a new one.
    h.clock.0.store(T0 + 55 * 60, Ordering::SeqCst);
    h.client
        .list_reviews(INSTALLATION, "acme", "widgets", 18)
        .await
        .expect("reviews");

    let requests = server.requests();
    let kinds: Vec<(&str, &str)> = requests
        .iter()
        .map(|r| (r.method.as_str(), r.path()))
        .collect();
    let token_path = format!("/api/v3/app/installations/{INSTALLATION}/access_tokens");
    let reviews = "/api/v3/repos/acme/widgets/pulls/18/reviews";
    assert_eq!(
        kinds,
        vec![
            ("POST", token_path.as_str()),
            ("GET", reviews),
            ("GET", reviews),
            ("POST", token_path.as_str()),
            ("GET", reviews),
        ]
    );
    // Token fetches carry the app's JWT, verified with the public key.
    for (request, now) in [(&requests[0], T0), (&requests[3], T0 + 55 * 60)] {
        assert_standard_headers(request);
        let jwt = request.bearer();
        let (header, claims) = key().verify(jwt);
        assert_eq!(header["alg"], "RS256");
        assert_eq!(
            claims,
            json!({"iat": now - 60, "exp": now + 540, "iss": APP_ID.to_string()})
        );
        assert_only_in_the_header(request, jwt);
    }
    for request in [&requests[1], &requests[2]] {
        assert_standard_headers(request);
        assert_eq!(request.bearer(), TOKEN);
        assert_only_in_the_header(request, TOKEN);
        assert_eq!(request.target, format!("{reviews}?per_page=100&page=1"));
    }
    assert_eq!(requests[4].bearer(), "v2.second-token-of-another-shape");
    // The token for git, with no secret in its Debug.
    let token = h
        .client
        .installation_token(INSTALLATION)
        .await
        .expect("token");
    assert_eq!(token.secret(), "v2.second-token-of-another-shape");
    assert!(!format!("{token:?} {:?}", h.client).contains("second-token"));
}

#[tokio::test]
async fn comments_are_created_then_updated_in_place() {
    let server = Server::start().await;
    let comment = |id: u64, body: &str| {
        json!({"id": id, "node_id": "IC_x", "body": body, "user": {"login": "flightdeck[bot]", "id": 1, "type": "Bot"},
               "html_url": format!("https://github.com/acme/widgets/issues/17#issuecomment-{id}"), "author_association": "NONE"})
    };
    server
        .on_token()
        .on(
            "POST",
            "/repos/acme/widgets/issues/17/comments",
            Reply::json(201, comment(900, "Working on it")),
        )
        .on(
            "PATCH",
            "/repos/acme/widgets/issues/comments/900",
            ok(comment(900, "Done")),
        );
    let h = client(&server);
    let posted = h
        .client
        .create_issue_comment(INSTALLATION, "acme", "widgets", 17, "Working on it")
        .await
        .expect("posted");
    assert_eq!(posted.id, 900);
    assert!(posted.author.is_bot);
    let updated = h
        .client
        .update_issue_comment(INSTALLATION, "acme", "widgets", posted.id, "Done")
        .await
        .expect("updated");
    assert_eq!(updated.body, "Done");
    let calls = server.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].json(), json!({"body": "Working on it"}));
    assert_eq!(calls[0].header("content-type"), Some("application/json"));
    assert_eq!(calls[1].method, "PATCH");
    assert_eq!(calls[1].json(), json!({"body": "Done"}));
    for call in &calls {
        assert_standard_headers(call);
        assert_only_in_the_header(call, TOKEN);
    }
    // One token for both.
    assert_eq!(server.requests().len(), 3);
}

fn pull(number: u64, draft: bool) -> Value {
    json!({
        "number": number, "node_id": "PR_kwDOCx2Yis5Ao9Ot", "title": "t", "body": null, "state": "open",
        "draft": draft, "merged": false, "html_url": format!("https://github.com/acme/widgets/pull/{number}"),
        "user": {"login": "flightdeck[bot]", "id": 1, "type": "Bot"},
        "head": {"ref": "flightdeck/17", "sha": "aaa", "repo": {"full_name": "acme/widgets"}},
        "base": {"ref": "main", "sha": "bbb", "repo": {"full_name": "acme/widgets"}}
    })
}

#[tokio::test]
async fn pull_requests_are_opened_as_drafts_updated_and_marked_ready() {
    let server = Server::start().await;
    server
        .on_token()
        .on("POST", "/repos/acme/widgets/pulls", Reply::json(201, pull(18, true)))
        .on("PATCH", "/repos/acme/widgets/pulls/18", ok(pull(18, true)))
        // GraphQL lives at /api/graphql next to /api/v3 (GitHub Enterprise Server's layout).
        .on_exactly(
            "POST",
            "/api/graphql",
            ok(json!({"data": {"markPullRequestReadyForReview": {"pullRequest": {"isDraft": false}}}})),
        )
        .on_exactly(
            "POST",
            "/api/graphql",
            ok(json!({"data": null, "errors": [{"type": "NOT_FOUND", "message": "Could not resolve to a node with the global id of 'nope'"}]})),
        );
    let h = client(&server);
    assert!(h.client.graphql_url().ends_with("/api/graphql"));
    let pr = h
        .client
        .create_pull_request(
            INSTALLATION,
            "acme",
            "widgets",
            &NewPullRequest::draft(
                "flightdeck: retry uploads",
                "flightdeck/17",
                "main",
                "Closes #17",
            ),
        )
        .await
        .expect("opened");
    assert!(pr.draft);
    assert_eq!(pr.head_sha, "aaa");
    h.client
        .update_pull_request(
            INSTALLATION,
            "acme",
            "widgets",
            18,
            &PullRequestUpdate {
                body: Some("Closes #17\n\nAll checks pass.".into()),
                state: Some(PullRequestState::Open),
                ..PullRequestUpdate::default()
            },
        )
        .await
        .expect("updated");
    h.client
        .mark_ready_for_review(INSTALLATION, pr.node_id.as_deref().expect("node id"))
        .await
        .expect("ready");
    let err = h
        .client
        .mark_ready_for_review(INSTALLATION, "nope")
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, GitHubError::GraphQl { message, .. } if message.contains("Could not resolve")),
        "{err:?}"
    );
    let calls = server.calls();
    assert_eq!(
        calls[0].json(),
        json!({"title": "flightdeck: retry uploads", "head": "flightdeck/17", "base": "main", "body": "Closes #17", "draft": true})
    );
    assert_eq!(
        calls[1].json(),
        json!({"body": "Closes #17\n\nAll checks pass.", "state": "open"})
    );
    assert_eq!(calls[2].path(), "/api/graphql");
    let graphql = calls[2].json();
    assert!(graphql["query"]
        .as_str()
        .unwrap()
        .contains("markPullRequestReadyForReview(input: {pullRequestId: $id})"));
    assert_eq!(graphql["variables"], json!({"id": "PR_kwDOCx2Yis5Ao9Ot"}));
    for call in &calls {
        assert_only_in_the_header(call, TOKEN);
    }
}

#[tokio::test]
async fn check_runs_are_created_then_updated() {
    let server = Server::start().await;
    let run = json!({"id": 77, "name": "flightdeck", "head_sha": "aaa", "external_id": "appr-1", "status": "completed",
                     "conclusion": "action_required", "pull_requests": [{"number": 18}], "html_url": "https://github.com/acme/widgets/runs/77"});
    server
        .on_token()
        .on(
            "POST",
            "/repos/acme/widgets/check-runs",
            Reply::json(201, run.clone()),
        )
        .on("PATCH", "/repos/acme/widgets/check-runs/77", ok(run));
    let h = client(&server);
    let mut fields = CheckRunFields {
        name: "flightdeck".into(),
        conclusion: Some(CheckConclusion::ActionRequired),
        external_id: Some("appr-1".into()),
        details_url: Some("https://fd.example.com/m/1".into()),
        output: Some(CheckOutput {
            title: "Waiting for approval".into(),
            summary: "1 of 2".into(),
            text: None,
        }),
        actions: vec![CheckAction {
            label: "Approve".into(),
            description: "Approve this mission".into(),
            identifier: "approve".into(),
        }],
        ..CheckRunFields::default()
    };
    let created = h
        .client
        .create_check_run(INSTALLATION, "acme", "widgets", "aaa", &fields)
        .await
        .expect("created");
    assert_eq!(created.id, 77);
    assert_eq!(created.pull_requests, vec![18]);
    fields.status = Some(CheckStatus::Completed);
    fields.conclusion = Some(CheckConclusion::Success);
    fields.actions.clear();
    h.client
        .update_check_run(INSTALLATION, "acme", "widgets", created.id, &fields)
        .await
        .expect("updated");
    let calls = server.calls();
    assert_eq!(
        calls[0].json(),
        json!({"name": "flightdeck", "conclusion": "action_required", "external_id": "appr-1",
               "details_url": "https://fd.example.com/m/1",
               "output": {"title": "Waiting for approval", "summary": "1 of 2"},
               "actions": [{"label": "Approve", "description": "Approve this mission", "identifier": "approve"}],
               "head_sha": "aaa"})
    );
    assert_eq!(calls[1].method, "PATCH");
    assert_eq!(calls[1].json()["conclusion"], "success");
    assert_eq!(calls[1].json()["status"], "completed");
    assert_eq!(calls[1].json()["actions"], json!([]));
    assert!(calls[1].json().get("head_sha").is_none());
}

#[tokio::test]
async fn reads_permission_reviews_contents_and_poll_lists() {
    let server = Server::start().await;
    let review = |id: u64, state: &str| {
        json!({"id": id, "state": state, "commit_id": "aaa", "body": "", "submitted_at": "2026-01-01T00:00:00Z",
               "user": {"login": format!("r{id}"), "id": id, "type": "User"}})
    };
    let page1: Vec<Value> = (1..=100).map(|i| review(i, "COMMENTED")).collect();
    let codeowners = "* @acme/core\n/docs/ @alice\n";
    let encoded = STANDARD.encode(codeowners);
    // GitHub wraps the base64 at 60 columns.
    let wrapped: String = encoded
        .as_bytes()
        .chunks(60)
        .map(|c| format!("{}\n", String::from_utf8_lossy(c)))
        .collect();
    server
        .on_token()
        .on(
            "GET",
            "/repos/acme/widgets/collaborators/bob/permission",
            ok(json!({"permission": "write", "role_name": "maintain", "user": {"login": "bob", "id": 2}})),
        )
        .on(
            "GET",
            "/repos/acme/widgets/collaborators/carol/permission",
            ok(json!({"permission": "read", "role_name": "security-reviewer", "user": {"login": "carol", "id": 3}})),
        )
        .on("GET", "/repos/acme/widgets/pulls/18/reviews", ok(Value::Array(page1)))
        .on(
            "GET",
            "/repos/acme/widgets/pulls/18/reviews",
            ok(json!([review(101, "APPROVED")])),
        )
        .on(
            "GET",
            "/repos/acme/widgets/contents/.github/CODEOWNERS",
            ok(json!({"type": "file", "encoding": "base64", "size": codeowners.len(), "name": "CODEOWNERS",
                      "path": ".github/CODEOWNERS", "content": wrapped, "sha": "3d21ec53a331a6f037a91c368710b99387d012c1"})),
        )
        .on(
            "GET",
            "/repos/acme/widgets/contents/CODEOWNERS",
            Reply::json(404, json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest/repos/contents#get-repository-content", "status": "404"})),
        )
        .on(
            "GET",
            "/repos/acme/widgets/contents/docs",
            ok(json!([{"type": "file", "name": "a.md"}])),
        )
        .on(
            "GET",
            "/app/installations",
            ok(json!([{"id": INSTALLATION, "account": {"login": "acme", "id": 9, "type": "Organization"},
                        "repository_selection": "selected", "app_id": APP_ID, "suspended_at": null}])),
        )
        .on(
            "GET",
            "/installation/repositories",
            ok(json!({"total_count": 1, "repository_selection": "selected", "repositories": [
                {"id": 5, "name": "widgets", "full_name": "acme/widgets", "private": true, "default_branch": "main",
                 "owner": {"login": "acme", "id": 9, "type": "Organization"}}]})),
        )
        .on(
            "GET",
            "/repos/acme/widgets/issues",
            ok(json!([{"number": 17, "title": "Retry uploads", "body": null, "state": "open",
                        "labels": [{"name": "flightdeck"}], "user": {"login": "alice", "id": 1, "type": "User"},
                        "updated_at": "2026-01-01T00:00:00Z"}])),
        );
    let h = client(&server);
    let bob = h
        .client
        .collaborator_permission(INSTALLATION, "acme", "widgets", "bob")
        .await
        .expect("permission");
    assert_eq!(bob.permission, Permission::Maintain);
    assert!(bob.permission.can_write());
    let carol = h
        .client
        .collaborator_permission(INSTALLATION, "acme", "widgets", "carol")
        .await
        .expect("permission");
    assert_eq!(carol.permission, Permission::Read);
    assert_eq!(carol.role_name.as_deref(), Some("security-reviewer"));

    let reviews = h
        .client
        .list_reviews(INSTALLATION, "acme", "widgets", 18)
        .await
        .expect("reviews");
    assert_eq!(reviews.len(), 101);
    assert_eq!(reviews[100].state, ReviewState::Approved);
    assert_eq!(reviews[0].state, ReviewState::Commented);

    let file = h
        .client
        .file_contents(
            INSTALLATION,
            "acme",
            "widgets",
            ".github/CODEOWNERS",
            "main",
        )
        .await
        .expect("contents");
    assert_eq!(file.as_deref(), Some(codeowners.as_bytes()));
    let missing = h
        .client
        .file_contents(INSTALLATION, "acme", "widgets", "CODEOWNERS", "main")
        .await
        .expect("a 404 is no file");
    assert_eq!(missing, None);
    let dir = h
        .client
        .file_contents(INSTALLATION, "acme", "widgets", "docs", "main")
        .await;
    assert!(
        matches!(dir, Err(GitHubError::BadResponse { .. })),
        "{dir:?}"
    );
    let traversal = h
        .client
        .file_contents(INSTALLATION, "acme", "widgets", "docs/../../x", "main")
        .await;
    assert!(
        matches!(traversal, Err(GitHubError::InvalidArgument { .. })),
        "{traversal:?}"
    );

    let installations = h.client.list_installations().await.expect("installations");
    assert_eq!(installations.len(), 1);
    assert_eq!(installations[0].id, INSTALLATION);
    let repositories = h
        .client
        .list_installation_repositories(INSTALLATION)
        .await
        .expect("repositories");
    assert_eq!(repositories[0].full_name, "acme/widgets");
    let issues = h
        .client
        .list_labeled_issues(
            INSTALLATION,
            "acme",
            "widgets",
            "flightdeck",
            Some("2026-01-01T00:00:00Z"),
        )
        .await
        .expect("issues");
    assert_eq!(issues[0].number, 17);
    assert_eq!(issues[0].labels, vec!["flightdeck"]);

    let requests = server.requests();
    let target = |path: &str| {
        requests
            .iter()
            .filter(|r| r.path() == format!("/api/v3{path}"))
            .map(|r| r.target.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        target("/repos/acme/widgets/pulls/18/reviews"),
        vec![
            "/api/v3/repos/acme/widgets/pulls/18/reviews?per_page=100&page=1",
            "/api/v3/repos/acme/widgets/pulls/18/reviews?per_page=100&page=2"
        ]
    );
    assert_eq!(
        target("/repos/acme/widgets/contents/.github/CODEOWNERS"),
        vec!["/api/v3/repos/acme/widgets/contents/.github/CODEOWNERS?ref=main"]
    );
    assert_eq!(
        target("/repos/acme/widgets/issues"),
        vec!["/api/v3/repos/acme/widgets/issues?labels=flightdeck&state=open&sort=updated&direction=asc&since=2026-01-01T00%3A00%3A00Z&per_page=100&page=1"]
    );
    // `/app/installations` is made as the app (a JWT), everything else with the token.
    let app = requests
        .iter()
        .find(|r| r.path() == "/api/v3/app/installations")
        .expect("installations request");
    key().verify(app.bearer());
    let with_token = requests
        .iter()
        .filter(|r| !r.path().starts_with("/api/v3/app/"))
        .count();
    assert_eq!(
        requests
            .iter()
            .filter(|r| r.header("authorization") == Some(&format!("Bearer {TOKEN}")))
            .count(),
        with_token
    );
}

#[tokio::test]
async fn rate_limits_are_waited_through_the_sleeper() {
    let server = Server::start().await;
    let path = "/repos/acme/widgets/issues/17/comments";
    let posted = Reply::json(
        201,
        json!({"id": 1, "body": "hi", "user": {"login": "flightdeck[bot]", "id": 1, "type": "Bot"}}),
    );
    server
        .on_token()
        // Secondary limit with retry-after.
        .on(
            "POST",
            path,
            Reply::json(
                403,
                json!({"message": "You have exceeded a secondary rate limit."}),
            )
            .header("retry-after", "30"),
        )
        // Primary limit: remaining 0, reset 45 s from now.
        .on(
            "POST",
            path,
            Reply::json(
                403,
                json!({"message": "API rate limit exceeded for installation ID 4242."}),
            )
            .header("x-ratelimit-remaining", "0")
            .header("x-ratelimit-reset", (T0 + 45).to_string()),
        )
        // Secondary limit with no headers at all: 60 s, doubled per retry.
        .on(
            "POST",
            path,
            Reply::json(
                429,
                json!({"message": "You have exceeded a secondary rate limit."}),
            ),
        )
        .on("POST", path, posted);
    let h = client(&server);
    let h = Harness {
        client: h.client.with_max_retry_wait(Duration::from_secs(600)),
        ..h
    };
    h.client
        .create_issue_comment(INSTALLATION, "acme", "widgets", 17, "hi")
        .await
        .expect("posted after three waits");
    assert_eq!(
        h.sleeper.waits(),
        vec![
            Duration::from_secs(30),
            Duration::from_secs(46),
            Duration::from_secs(240)
        ]
    );
    assert_eq!(server.calls().len(), 4);
}

#[tokio::test]
async fn rate_limits_past_the_bounds_are_returned_not_waited() {
    let server = Server::start().await;
    let path = "/repos/acme/widgets/issues/17/comments";
    server.on_token().on(
        "POST",
        path,
        Reply::json(429, json!({"message": "slow down"})).header("retry-after", "3600"),
    );
    let h = client(&server);
    let err = h
        .client
        .create_issue_comment(INSTALLATION, "acme", "widgets", 17, "hi")
        .await
        .expect_err("limited");
    assert_eq!(
        err,
        GitHubError::RateLimited {
            call: "POST /api/v3/repos/acme/widgets/issues/17/comments".into(),
            attempts: 1,
            retry_after: Duration::from_secs(3600)
        }
    );
    assert!(h.sleeper.waits().is_empty());

    // More than MAX_RETRIES short waits: given up after MAX_RETRIES + 1 requests.
    for _ in 0..=MAX_RETRIES {
        server.on(
            "POST",
            path,
            Reply::json(429, json!({"message": "slow down"})).header("retry-after", "1"),
        );
    }
    let err = h
        .client
        .create_issue_comment(INSTALLATION, "acme", "widgets", 17, "hi")
        .await
        .expect_err("limited");
    assert!(
        matches!(err, GitHubError::RateLimited { attempts, .. } if attempts == MAX_RETRIES + 1),
        "{err:?}"
    );
    assert_eq!(h.sleeper.waits().len(), MAX_RETRIES as usize);
    assert_eq!(server.calls().len(), 1 + MAX_RETRIES as usize + 1);
}

#[tokio::test]
async fn other_failures_are_not_retried_and_say_what_github_said() {
    let server = Server::start().await;
    let path = "/repos/acme/widgets/issues/17/comments";
    server
        .on_token()
        .on(
            "POST",
            path,
            Reply::json(403, json!({"message": "Resource not accessible by integration",
                                    "documentation_url": "https://docs.github.com/rest/issues/comments#create-an-issue-comment"})),
        )
        .on(
            "POST",
            path,
            Reply::json(502, json!({"message": "Server Error"})),
        )
        .on(
            "POST",
            path,
            Reply::json(422, json!({"message": "Validation Failed", "errors": [{"resource": "IssueComment", "code": "custom", "field": "body", "message": format!("body echoes {TOKEN}")}]})),
        );
    let h = client(&server);
    let err = h
        .client
        .create_issue_comment(INSTALLATION, "acme", "widgets", 17, "hi")
        .await
        .expect_err("forbidden");
    assert_eq!(
        err,
        GitHubError::Api {
            call: "POST /api/v3/repos/acme/widgets/issues/17/comments".into(),
            status: 403,
            message: "Resource not accessible by integration".into(),
            documentation_url: Some(
                "https://docs.github.com/rest/issues/comments#create-an-issue-comment".into()
            ),
        }
    );
    let err = h
        .client
        .create_issue_comment(INSTALLATION, "acme", "widgets", 17, "hi")
        .await
        .expect_err("server error");
    assert_eq!(err.status(), Some(502));
    let err = h
        .client
        .create_issue_comment(INSTALLATION, "acme", "widgets", 17, "hi")
        .await
        .expect_err("invalid");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(TOKEN), "{shown}");
    assert!(shown.contains("[REDACTED]"), "{shown}");
    // Three calls, three requests: nothing retried.
    assert_eq!(server.calls().len(), 3);
    assert!(h.sleeper.waits().is_empty());
}

#[tokio::test]
async fn a_refused_token_is_dropped_and_the_next_call_fetches_another() {
    let server = Server::start().await;
    let path = "/repos/acme/widgets/pulls/18/reviews";
    server
        .on_token()
        .on(
            "POST",
            &format!("/app/installations/{INSTALLATION}/access_tokens"),
            token_reply("ghs_fresh", "2026-01-01T01:00:00Z"),
        )
        .on(
            "GET",
            path,
            Reply::json(401, json!({"message": "Bad credentials"})),
        )
        .on("GET", path, ok(json!([])));
    let h = client(&server);
    let err = h
        .client
        .list_reviews(INSTALLATION, "acme", "widgets", 18)
        .await
        .expect_err("401");
    assert_eq!(err.status(), Some(401));
    h.client
        .list_reviews(INSTALLATION, "acme", "widgets", 18)
        .await
        .expect("with a new token");
    let calls = server.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].bearer(), TOKEN);
    assert_eq!(calls[1].bearer(), "ghs_fresh");
}

#[tokio::test]
async fn token_failures_and_timeouts_are_typed() {
    let server = Server::start().await;
    server
        .on(
            "POST",
            &format!("/app/installations/{INSTALLATION}/access_tokens"),
            Reply::json(
                401,
                json!({"message": "'Expiration time' claim ('exp') is too far in the future"}),
            ),
        )
        .on(
            "POST",
            &format!("/app/installations/{INSTALLATION}/access_tokens"),
            Reply::json(201, json!({"token": "no expiry"})),
        )
        .on_token()
        .on(
            "GET",
            "/repos/acme/widgets/pulls/18/reviews",
            Reply {
                delay: Duration::from_millis(500),
                ..ok(json!([]))
            },
        );
    let h = client(&server);
    let err = h
        .client
        .installation_token(INSTALLATION)
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, GitHubError::Api { status: 401, message, .. } if message.contains("exp")),
        "{err:?}"
    );
    let err = h
        .client
        .installation_token(INSTALLATION)
        .await
        .expect_err("bad answer");
    assert!(matches!(&err, GitHubError::BadResponse { .. }), "{err:?}");
    assert!(!err.to_string().contains("no expiry"), "{err}");
    let client = h.client.clone().with_timeout(Duration::from_millis(100));
    let err = client
        .list_reviews(INSTALLATION, "acme", "widgets", 18)
        .await
        .expect_err("timeout");
    assert!(matches!(err, GitHubError::Timeout { .. }), "{err:?}");

    // Nothing listening.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    let app_key = AppKey::from_pem(&key().pem).expect("key");
    let offline = GitHubClient::new(&format!("http://{addr}"), APP_ID, app_key).expect("client");
    let err = offline.list_installations().await.expect_err("offline");
    assert!(matches!(err, GitHubError::Connection { .. }), "{err:?}");
}

#[tokio::test]
async fn path_segments_are_encoded_and_the_generic_call_works() {
    let server = Server::start().await;
    server
        .on_token()
        .on(
            "GET",
            "/repos/acme/widgets/collaborators/we%20ird%2Fname/permission",
            ok(json!({"permission": "none", "role_name": null})),
        )
        .on(
            "DELETE",
            "/repos/acme/widgets/issues/17/labels/flightdeck",
            Reply {
                status: 204,
                headers: vec![],
                body: String::new(),
                delay: Duration::ZERO,
            },
        );
    let h = client(&server);
    let permission = h
        .client
        .collaborator_permission(INSTALLATION, "acme", "widgets", "we ird/name")
        .await
        .expect("permission");
    assert_eq!(permission.permission, Permission::None);
    let answer = h
        .client
        .call(
            INSTALLATION,
            Method::DELETE,
            &[
                "repos",
                "acme",
                "widgets",
                "issues",
                "17",
                "labels",
                "flightdeck",
            ],
            &[],
            None,
        )
        .await
        .expect("deleted");
    assert_eq!(answer, Value::Null);
    for bad in ["", ".", ".."] {
        let err = h
            .client
            .collaborator_permission(INSTALLATION, "acme", bad, "bob")
            .await
            .expect_err("refused");
        assert!(
            matches!(err, GitHubError::InvalidArgument { .. }),
            "{err:?}"
        );
    }
}
