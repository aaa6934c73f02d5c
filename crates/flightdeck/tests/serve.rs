//! `flightdeck serve` over real HTTP, with the real binary: every route's credentials and
//! roles, decisions recorded as the person on the web channel, the live stream and its
//! resumption, pages that cover a timeline, and a local-only server that browsers on other
//! sites cannot drive.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

use flightdeck_testkit::{Cli, TestRepo};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");

const CONFIG: &str = r#"
[server]
auth = "required"

[people.carol]
handle = "@carol"
emails = ["carol@acme.com"]

[people.bob]
handle = "@bob"
emails = ["bob@acme.com"]
"#;

const POLICY: &str = "[[rule]]\nid = \"owners\"\naction = \"publish\"\nchanges_any = [\"source\"]\ndecision = \"approve\"\napprovers = [\"@bob\"]\n";

fn repo() -> TestRepo {
    let template = "[publish]\ntitle = \"Served\"\n[budget]\ntool_calls = 40\n[[steps]]\nrun = \"echo 'pub fn g() {}' >> src/lib.rs\"\n";
    let repo = TestRepo::with_files(&[
        ("README.md", "# sample\n"),
        ("src/lib.rs", "pub fn f() {}\n"),
        (".flightdeck/policy.toml", POLICY),
        (".flightdeck/missions/t.toml", template),
    ]);
    repo.commit_all("sample");
    repo
}

/// A mission Carol asks for, parked at the publish gate Bob must approve.
fn parked_mission(cli: &Cli, repo: &TestRepo) -> (String, String) {
    let out = cli.run(&[
        "--json",
        "run",
        "t",
        "--repo",
        repo.path().to_str().unwrap(),
    ]);
    assert_eq!(out.code(), 3, "{}", out.stderr());
    let summary = out.json();
    let id = summary["id"].as_str().unwrap().to_string();
    let approval = summary["pending_approvals"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    (id, approval)
}

fn token(cli: &Cli, owner: &str, role: &str) -> String {
    token_id(cli, owner, role).0
}

/// A new token and its id.
fn token_id(cli: &Cli, owner: &str, role: &str) -> (String, String) {
    let out = cli.run(&["--json", "token", "create", "--for", owner, "--role", role]);
    assert_eq!(out.code(), 0, "{}", out.stderr());
    let made = out.json();
    (
        made["token"].as_str().unwrap().to_string(),
        made["id"].as_str().unwrap().to_string(),
    )
}

fn sqlite(cli: &Cli, sql: &str) {
    let out = std::process::Command::new("sqlite3")
        .arg(cli.data_dir().join("flightdeck.db"))
        .arg(sql)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running `flightdeck serve`, stopped (SIGINT, then killed) when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(cli: &Cli, extra: &[&str]) -> Server {
        Server::start_with_env(cli, extra, &[])
    }

    fn start_with_env(cli: &Cli, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut args = vec!["--json", "serve", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let mut child = cli
            .command(&args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let started: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("serve said {line:?}: {e}"));
        Server {
            child,
            url: started["listening"].as_str().unwrap().to_string(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!("serve did not stop within 30 s of SIGINT (it gives connections 10 s)");
    }
}

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

async fn call(
    http: &reqwest::Client,
    server: &Server,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let mut request = http.request(method, format!("{}{path}", server.url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
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

/// Reads a server-sent event stream to its end: (id, event type, data) of each event.
async fn read_stream(response: reqwest::Response) -> Vec<(u64, String, Value)> {
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut response = response;
    let mut text = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while let Some(chunk) =
        tokio::time::timeout(std::time::Duration::from_secs(60), response.chunk())
            .await
            .expect("the stream went quiet for 60 s")
            .unwrap()
    {
        text.push_str(&String::from_utf8_lossy(&chunk));
        assert!(
            std::time::Instant::now() < deadline,
            "the stream did not end"
        );
    }
    let mut events = Vec::new();
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let field = |name: &str| {
            block
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                .map(str::to_string)
        };
        // Keep-alive comments carry no id.
        let Some(id) = field("id") else { continue };
        events.push((
            id.parse().unwrap(),
            field("event").unwrap(),
            serde_json::from_str(&field("data").unwrap()).unwrap(),
        ));
    }
    events
}

fn timeline_len(cli: &Cli, id: &str) -> usize {
    cli.timeline(id).len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_by_role_and_records_web_decisions_as_the_person() {
    let repo = repo();
    let cli = Cli::new(BIN);
    cli.write_config(CONFIG);
    let (id, approval) = parked_mission(&cli, &repo);
    let (other, _) = parked_mission(&cli, &repo);
    // Bob's viewer and operator tokens: he is eligible to approve, so only the role stops them.
    let viewer = token(&cli, "@bob", "viewer");
    let operator = token(&cli, "bob@acme.com", "operator");
    let carol_approver = token(&cli, "@carol", "approver");
    let bob = token(&cli, "@bob", "approver");
    let (revoked, revoked_id) = token_id(&cli, "@bob", "admin");
    cli.run(&["token", "revoke", &revoked_id]).expect_code(0);
    // A token past its expiry (made here: what a token is cannot be changed in the store).
    let expired = "fd_a-token-that-expired-long-ago";
    let expired_hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(expired.as_bytes()));
    sqlite(
        &cli,
        &format!(
            "INSERT INTO tokens (id, hash, owner, role, created_at_ms, created_by, expires_at_ms) \
             VALUES ('tok_expired', '{expired_hash}', '@bob', 'admin', 0, 'test', 1)"
        ),
    );
    // Someone outside [people] gets no token.
    let refused = cli.run(&["token", "create", "--for", "@mallory"]);
    assert_eq!(refused.code(), 2, "{}", refused.stderr());
    assert!(refused.stderr().contains("hint:"), "{}", refused.stderr());

    let server = Server::start(&cli, &["--workers", "1"]);
    let http = reqwest::Client::new();
    let summary = call(
        &http,
        &server,
        Method::GET,
        &format!("/api/v1/missions/{id}"),
        Some(&viewer),
        None,
    )
    .await;
    assert_eq!(summary.status, StatusCode::OK, "{}", summary.body);
    let patch = summary.body["pending_approvals"][0]["diff_hash"].clone();
    let created = cli.timeline(&id)[0].clone();
    let template_digest = created["data"]["template_source"]
        .as_str()
        .unwrap()
        .to_string();

    // (method, path, body, the role it needs)
    let routes: Vec<(Method, String, Option<Value>, &str)> = vec![
        (Method::GET, "/api/v1/missions".into(), None, "viewer"),
        (
            Method::GET,
            format!("/api/v1/missions/{id}"),
            None,
            "viewer",
        ),
        (
            Method::GET,
            format!("/api/v1/missions/{id}/events?limit=2"),
            None,
            "viewer",
        ),
        (
            Method::GET,
            format!("/api/v1/missions/{id}/verify"),
            None,
            "viewer",
        ),
        (
            Method::GET,
            format!("/api/v1/artifacts/{template_digest}"),
            None,
            "viewer",
        ),
        (
            Method::GET,
            "/api/v1/approvals?pending=true".into(),
            None,
            "viewer",
        ),
        (
            Method::GET,
            "/api/v1/metrics?since=7".into(),
            None,
            "viewer",
        ),
        (
            Method::POST,
            format!("/api/v1/missions/{id}/resume"),
            None,
            "operator",
        ),
        (
            Method::POST,
            format!("/api/v1/missions/{id}/cancel"),
            None,
            "operator",
        ),
        (
            Method::POST,
            format!("/api/v1/missions/{id}/budget"),
            Some(json!({"add": {"tool_calls": 5}})),
            "operator",
        ),
        (
            Method::POST,
            format!("/api/v1/missions/{id}/fork"),
            Some(json!({"at": 3})),
            "operator",
        ),
        (
            Method::POST,
            format!("/api/v1/approvals/{approval}/approve"),
            Some(json!({"comment": "x"})),
            "approver",
        ),
        (
            Method::POST,
            format!("/api/v1/approvals/{approval}/deny"),
            Some(json!({})),
            "approver",
        ),
    ];
    let before = timeline_len(&cli, &id);
    for (method, path, body, needed) in &routes {
        for (who, token) in [
            ("nobody", None),
            ("a made-up token", Some("fd_not-a-token")),
            ("a token without the prefix", Some("ghp_abc")),
            ("a revoked token", Some(revoked.as_str())),
            ("an expired token", Some(expired)),
        ] {
            let answer = call(&http, &server, method.clone(), path, token, body.clone()).await;
            assert_eq!(
                answer.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} by {who}: {}",
                answer.body
            );
            assert_eq!(
                answer.body["error"]["kind"], "unauthenticated",
                "{method} {path}"
            );
            assert!(answer.body["error"]["hint"].is_string(), "{method} {path}");
            assert_eq!(answer.headers["www-authenticate"], "Bearer");
        }
        let answer = call(
            &http,
            &server,
            method.clone(),
            path,
            Some(&viewer),
            body.clone(),
        )
        .await;
        if *needed == "viewer" {
            assert_eq!(
                answer.status,
                StatusCode::OK,
                "{method} {path}: {}",
                answer.body
            );
        } else {
            assert_eq!(
                answer.status,
                StatusCode::FORBIDDEN,
                "{method} {path}: {}",
                answer.body
            );
            assert!(
                answer.body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains(needed),
                "{}",
                answer.body
            );
        }
        if *needed == "approver" {
            let answer = call(
                &http,
                &server,
                method.clone(),
                path,
                Some(&operator),
                body.clone(),
            )
            .await;
            assert_eq!(
                answer.status,
                StatusCode::FORBIDDEN,
                "{method} {path}: {}",
                answer.body
            );
        }
    }
    assert_eq!(
        timeline_len(&cli, &id),
        before,
        "refused requests record nothing"
    );
    let revoked_and_expired = call(
        &http,
        &server,
        Method::GET,
        "/api/v1/missions",
        Some(&revoked),
        None,
    )
    .await;
    assert!(revoked_and_expired.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("revoked"));
    let expired_answer = call(
        &http,
        &server,
        Method::GET,
        "/api/v1/missions",
        Some(expired),
        None,
    )
    .await;
    assert!(expired_answer.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("expired"));
    assert_eq!(
        call(&http, &server, Method::GET, "/healthz", None, None)
            .await
            .body,
        "ok"
    );

    // Bad input and unknown ids have the contract's error shape and status.
    for (path, status, kind) in [
        (
            "/api/v1/missions/m-nope",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "/api/v1/missions?limit=0",
            StatusCode::BAD_REQUEST,
            "bad_input",
        ),
        (
            "/api/v1/missions?status=happy",
            StatusCode::BAD_REQUEST,
            "bad_input",
        ),
        (
            "/api/v1/missions?colour=red",
            StatusCode::BAD_REQUEST,
            "bad_input",
        ),
        (
            "/api/v1/artifacts/..%2F..%2Fetc%2Fpasswd",
            StatusCode::BAD_REQUEST,
            "bad_input",
        ),
        (
            &format!("/api/v1/artifacts/sha256:{}", "0".repeat(64)),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        ("/api/v2/missions", StatusCode::NOT_FOUND, "not_found"),
    ] {
        let answer = call(&http, &server, Method::GET, path, Some(&viewer), None).await;
        assert_eq!(answer.status, status, "{path}: {}", answer.body);
        assert_eq!(answer.body["error"]["kind"], kind, "{path}");
    }
    let wrong_method = call(
        &http,
        &server,
        Method::DELETE,
        &format!("/api/v1/missions/{id}"),
        Some(&viewer),
        None,
    )
    .await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.body["error"]["kind"], "bad_input");
    let artifact = http
        .get(format!("{}/api/v1/artifacts/{template_digest}", server.url))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(
        artifact.headers()["content-type"],
        "application/octet-stream"
    );
    assert!(artifact.text().await.unwrap().contains("Served"));

    // Listing: filters and pages.
    let page = call(
        &http,
        &server,
        Method::GET,
        "/api/v1/missions?limit=1&status=awaiting_approval&template=t",
        Some(&viewer),
        None,
    )
    .await;
    assert_eq!(
        page.body["missions"].as_array().unwrap().len(),
        1,
        "{}",
        page.body
    );
    let cursor = page.body["next_cursor"].as_str().unwrap().to_string();
    let rest = call(
        &http,
        &server,
        Method::GET,
        &format!("/api/v1/missions?limit=5&status=awaiting_approval&template=t&cursor={cursor}"),
        Some(&viewer),
        None,
    )
    .await;
    let ids: Vec<&str> = [&page.body, &rest.body]
        .iter()
        .flat_map(|b| {
            b["missions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap())
        })
        .collect();
    let mut expected = vec![id.as_str(), other.as_str()];
    expected.sort_unstable();
    let mut got = ids.clone();
    got.sort_unstable();
    assert_eq!(got, expected, "two pages hold both missions once");
    assert!(rest.body["next_cursor"].is_null());
    let none = call(
        &http,
        &server,
        Method::GET,
        "/api/v1/missions?status=succeeded",
        Some(&viewer),
        None,
    )
    .await;
    assert_eq!(none.body["missions"], json!([]));

    // An operator raises the budget (recorded as the person) and cancels the other mission.
    let raised = call(
        &http,
        &server,
        Method::POST,
        &format!("/api/v1/missions/{id}/budget"),
        Some(&operator),
        Some(json!({"add": {"tool_calls": 5}})),
    )
    .await;
    assert_eq!(raised.status, StatusCode::OK, "{}", raised.body);
    let budget_event = cli
        .timeline(&id)
        .into_iter()
        .rev()
        .find(|e| e["type"] == "budget.raised")
        .unwrap();
    assert_eq!(budget_event["data"]["by"], "@bob");
    let bad_budget = call(
        &http,
        &server,
        Method::POST,
        &format!("/api/v1/missions/{id}/budget"),
        Some(&operator),
        Some(json!({"add": {"usd": "lots"}})),
    )
    .await;
    assert_eq!(
        bad_budget.status,
        StatusCode::BAD_REQUEST,
        "{}",
        bad_budget.body
    );
    // A viewer's bad body is refused for the role first: nothing about the body is said.
    let viewer_budget = call(
        &http,
        &server,
        Method::POST,
        &format!("/api/v1/missions/{other}/budget"),
        Some(&viewer),
        Some(json!({"add": "lots"})),
    )
    .await;
    assert_eq!(
        viewer_budget.status,
        StatusCode::FORBIDDEN,
        "{}",
        viewer_budget.body
    );
    // A stream outlives no revocation of its token: the next change ends it.
    let (watcher, watcher_id) = token_id(&cli, "@bob", "viewer");
    let watching = http
        .get(format!(
            "{}/api/v1/missions/{other}/events/stream",
            server.url
        ))
        .bearer_auth(&watcher)
        .send()
        .await
        .unwrap();
    let reading = tokio::spawn(read_stream(watching));
    cli.run(&["token", "revoke", &watcher_id]).expect_code(0);
    // Checked every few seconds, whether or not the mission moves.
    tokio::time::timeout(std::time::Duration::from_secs(20), reading)
        .await
        .expect("the revoked token's stream did not end")
        .unwrap();
    let cancelled = call(
        &http,
        &server,
        Method::POST,
        &format!("/api/v1/missions/{other}/cancel"),
        Some(&operator),
        None,
    )
    .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    assert_eq!(cancelled.body["status"], "cancelled");
    let again = call(
        &http,
        &server,
        Method::POST,
        &format!("/api/v1/missions/{other}/cancel"),
        Some(&operator),
        None,
    )
    .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    let finished_resume = call(
        &http,
        &server,
        Method::POST,
        &format!("/api/v1/missions/{other}/resume"),
        Some(&operator),
        None,
    )
    .await;
    assert_eq!(
        finished_resume.status,
        StatusCode::CONFLICT,
        "{}",
        finished_resume.body
    );

    // Carol may not approve her own mission, whatever her token's role.
    let before = timeline_len(&cli, &id);
    let own = call(
        &http,
        &server,
        Method::POST,
        &format!("/api/v1/approvals/{approval}/approve"),
        Some(&carol_approver),
        Some(json!({})),
    )
    .await;
    assert_eq!(own.status, StatusCode::FORBIDDEN, "{}", own.body);
    assert!(
        own.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("own mission"),
        "{}",
        own.body
    );
    assert_eq!(
        timeline_len(&cli, &id),
        before,
        "a refused vote records nothing"
    );

    // Watch it live from the start while Bob approves: the in-process worker publishes it.
    let stream = http
        .get(format!("{}/api/v1/missions/{id}/events/stream", server.url))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    let approved = call(
        &http,
        &server,
        Method::POST,
        &format!("/api/v1/approvals/{approval}/approve"),
        Some(&bob),
        Some(json!({"comment": "ship it"})),
    )
    .await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
    assert_eq!(approved.body["status"], "approved", "{}", approved.body);
    assert_eq!(approved.body["id"], approval.as_str());
    let streamed = read_stream(stream).await;
    let timeline = cli.timeline(&id);
    assert_eq!(timeline.last().unwrap()["type"], "mission.finished");
    assert_eq!(
        timeline.last().unwrap()["data"]["status"],
        "succeeded",
        "{:#}",
        timeline.last().unwrap()
    );
    assert_eq!(
        streamed.len(),
        timeline.len(),
        "every event once, to the end"
    );
    for ((seq, kind, data), event) in streamed.iter().zip(&timeline) {
        assert_eq!(*seq, event["seq"].as_u64().unwrap());
        assert_eq!(kind, event["type"].as_str().unwrap());
        assert_eq!(data, event);
    }
    let decided = timeline
        .iter()
        .find(|e| e["type"] == "approval.decided")
        .unwrap();
    assert_eq!(decided["data"]["by"], "@bob");
    assert_eq!(decided["data"]["channel"], "web");
    assert_eq!(decided["data"]["comment"], "ship it");
    assert!(patch.is_string());

    // Resuming after seq k gets exactly the events after it, by header or by query.
    let k = timeline.len() / 2;
    for request in [
        http.get(format!("{}/api/v1/missions/{id}/events/stream", server.url))
            .header("Last-Event-ID", k.to_string()),
        http.get(format!(
            "{}/api/v1/missions/{id}/events/stream?after={k}",
            server.url
        )),
    ] {
        let resumed = read_stream(request.bearer_auth(&viewer).send().await.unwrap()).await;
        let seqs: Vec<u64> = resumed.iter().map(|(s, _, _)| *s).collect();
        let expected: Vec<u64> = (k as u64 + 1..=timeline.len() as u64).collect();
        assert_eq!(seqs, expected);
    }
    // Reconnecting after the end gets nothing and is told so at once.
    let after_end = http
        .get(format!("{}/api/v1/missions/{id}/events/stream", server.url))
        .header("Last-Event-ID", timeline.len().to_string())
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert!(read_stream(after_end).await.is_empty());
    for path in [
        format!("/api/v1/missions/{id}/events?after=18446744073709551615"),
        format!("/api/v1/missions/{id}/events/stream?after=9223372036854775808"),
    ] {
        let answer = call(&http, &server, Method::GET, &path, Some(&viewer), None).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{path}: {}",
            answer.body
        );
    }
    let bad_resume = http
        .get(format!("{}/api/v1/missions/{id}/events/stream", server.url))
        .header("Last-Event-ID", "soon")
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_resume.status(), StatusCode::BAD_REQUEST);

    // Pages of 3 cover the timeline, in order, once.
    let mut after = 0;
    let mut paged = Vec::new();
    loop {
        let page = call(
            &http,
            &server,
            Method::GET,
            &format!("/api/v1/missions/{id}/events?after={after}&limit=3"),
            Some(&viewer),
            None,
        )
        .await;
        paged.extend(page.body["events"].as_array().unwrap().iter().cloned());
        match page.body["next_after"].as_u64() {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(paged, timeline);
    let verified = call(
        &http,
        &server,
        Method::GET,
        &format!("/api/v1/missions/{id}/verify"),
        Some(&viewer),
        None,
    )
    .await;
    assert_eq!(
        verified.body,
        json!({"ok": true, "checked": timeline.len(), "first_bad_seq": null})
    );

    // The metrics are the command line's.
    let api_metrics = call(
        &http,
        &server,
        Method::GET,
        "/api/v1/metrics",
        Some(&viewer),
        None,
    )
    .await;
    let cli_metrics = cli.run(&["--json", "metrics"]).expect_code(0).json();
    assert_eq!(api_metrics.body, cli_metrics);
    assert_eq!(cli_metrics["missions"], 2, "{cli_metrics:#}");
    assert_eq!(cli_metrics["succeeded"], 1);
    assert_eq!(cli_metrics["cancelled"], 1);
    assert_eq!(cli_metrics["success_rate"], 0.5);
    assert!(cli_metrics["median_lead_time_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(cli_metrics["by_template"][0]["template"], "t");
    let narrowed = call(
        &http,
        &server,
        Method::GET,
        "/api/v1/metrics?template=nope",
        Some(&viewer),
        None,
    )
    .await;
    assert_eq!(narrowed.body["missions"], 0);
    // Tokens record their last use and never show their secret.
    let listed = cli.run(&["--json", "token", "list"]).expect_code(0);
    assert!(!listed.stdout().contains(&viewer));
    let tokens = listed.json();
    let used = tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["last_used_at"].is_string())
        .count();
    assert!(used >= 4, "{tokens:#}");
    drop(server);
    for (_, bytes) in cli.data_files() {
        assert!(
            memchr::memmem::find(&bytes, viewer.as_bytes()).is_none(),
            "a token's secret is stored nowhere"
        );
    }
}

/// A tokenless request to a local-only server: its headers and what it must get.
#[derive(Debug, Clone)]
struct Local {
    host: Option<String>,
    origin: Option<&'static str>,
    site: Option<&'static str>,
    content_type: Option<&'static str>,
    /// A POST that would cancel a mission, else a GET of the missions.
    post: bool,
    expected: StatusCode,
}

impl Local {
    fn get() -> Local {
        Local {
            host: None,
            origin: None,
            site: None,
            content_type: None,
            post: false,
            expected: StatusCode::FORBIDDEN,
        }
    }

    fn post() -> Local {
        Local {
            post: true,
            ..Local::get()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_only_server_stays_on_this_machine_and_out_of_other_sites_reach() {
    let cli = Cli::new(BIN);
    // Other machines could reach it: refused before it listens.
    let out = cli.run(&["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(out.code(), 2, "{}", out.stderr());
    assert!(
        out.stderr().contains("auth = \"required\""),
        "{}",
        out.stderr()
    );
    // Not an address at all.
    let out = cli.run(&["serve", "--listen", "localhost"]);
    assert_eq!(out.code(), 2, "{}", out.stderr());
    assert!(out.stderr().contains("not an address"), "{}", out.stderr());

    let repo = repo();
    let (id, _) = parked_mission(&cli, &repo);
    let (resumed, resumed_approval) = parked_mission(&cli, &repo);
    let (waiting, _) = parked_mission(&cli, &repo);
    let server = Server::start(&cli, &["--workers", "0"]);
    let http = reqwest::Client::new();
    let port = server.url.rsplit(':').next().unwrap().to_string();
    let cancel = format!("{}/api/v1/missions/{id}/cancel", server.url);
    let json = Some("application/json");
    // The server's own origin, as a browser on its page would send it.
    let here: Option<&'static str> = Some(String::leak(server.url.clone()));
    let mine = Some(format!("localhost:{port}"));
    // What a browser (or something else that is not this user's tool) sends, and what it gets.
    let cases = [
        Local {
            expected: StatusCode::OK,
            ..Local::get()
        },
        Local {
            host: mine.clone(),
            expected: StatusCode::OK,
            ..Local::get()
        },
        // DNS rebinding: a page of evil.example whose name now means 127.0.0.1.
        Local {
            host: Some(format!("evil.example:{port}")),
            ..Local::get()
        },
        Local {
            host: Some("127.0.0.1:1".into()),
            ..Local::get()
        },
        Local {
            host: Some("localhost".into()),
            ..Local::get()
        },
        // Another site's form or script.
        Local {
            origin: Some("http://evil.example"),
            content_type: json,
            ..Local::post()
        },
        Local {
            origin: Some("null"),
            content_type: json,
            ..Local::post()
        },
        Local {
            origin: Some("http://localhost"),
            content_type: json,
            ..Local::post()
        },
        Local {
            origin: Some("http://127.0.0.1:1"),
            content_type: json,
            ..Local::post()
        },
        Local {
            site: Some("cross-site"),
            content_type: json,
            ..Local::post()
        },
        Local {
            site: Some("same-site"),
            content_type: json,
            ..Local::post()
        },
        Local {
            origin: here,
            content_type: Some("text/plain"),
            ..Local::post()
        },
        Local {
            origin: here,
            content_type: Some("application/x-www-form-urlencoded"),
            ..Local::post()
        },
        Local {
            origin: here,
            ..Local::post()
        },
    ];
    for case in &cases {
        let url = if case.post {
            cancel.clone()
        } else {
            format!("{}/api/v1/missions", server.url)
        };
        let mut request = http.request(if case.post { Method::POST } else { Method::GET }, &url);
        if let Some(host) = &case.host {
            request = request.header("Host", host);
        }
        if let Some(origin) = case.origin {
            request = request.header("Origin", origin);
        }
        if let Some(site) = case.site {
            request = request.header("Sec-Fetch-Site", site);
        }
        if let Some(content_type) = case.content_type {
            request = request.header("Content-Type", content_type);
        }
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status(), case.expected, "{case:?}");
    }
    // Another user of this machine is no one without a token (when the test can be one).
    if nix::unistd::geteuid().is_root() {
        // bash's /dev/tcp: a raw request from a process of uid 65534.
        let script = format!(
            "exec 3<>/dev/tcp/127.0.0.1/{port}; printf 'GET /api/v1/missions HTTP/1.1\\r\\nHost: 127.0.0.1:{port}\\r\\nConnection: close\\r\\n\\r\\n' >&3; head -n 1 <&3"
        );
        let out = std::process::Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "/bin/bash",
                "-c",
                &script,
            ])
            .output()
            .unwrap();
        let status_line = String::from_utf8_lossy(&out.stdout);
        assert!(status_line.starts_with("HTTP/1.1 401"), "{out:?}");
    }
    assert_eq!(
        cli.run(&["--json", "show", &id]).json()["status"],
        "awaiting_approval",
        "no refused request cancelled it"
    );
    // Approved on the command line with no worker running: resuming over HTTP drives it
    // in the background, and the stream shows it to the end.
    cli.run_as("@bob", &["approve", &resumed_approval])
        .expect_code(0);
    let stream = http
        .get(format!(
            "{}/api/v1/missions/{resumed}/events/stream",
            server.url
        ))
        .send()
        .await
        .unwrap();
    let answer = http
        .post(format!("{}/api/v1/missions/{resumed}/resume", server.url))
        .header("Content-Type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let streamed = read_stream(stream).await;
    let (_, last_type, last) = streamed.last().unwrap();
    assert_eq!(last_type, "mission.finished");
    assert_eq!(last["data"]["status"], "succeeded", "{last:#}");
    let resumed_by = cli
        .timeline(&resumed)
        .into_iter()
        .find(|e| e["type"] == "mission.resumed")
        .unwrap();
    assert_eq!(resumed_by["data"]["by"], "@carol");
    // A bad token is refused even where none is needed.
    let answer = call(
        &http,
        &server,
        Method::GET,
        "/api/v1/missions",
        Some("fd_wrong"),
        None,
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    // From the server's own origin, a local request acts as the installation's identity.
    let answer = http
        .post(&cancel)
        .header("Origin", server.url.as_str())
        .header("Content-Type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let finished = cli.timeline(&id).pop().unwrap();
    assert_eq!(finished["type"], "mission.finished");
    assert_eq!(finished["data"]["status"], "cancelled");
    assert_eq!(finished["data"]["error"]["message"], "cancelled by @carol");
    // A server stopping with a stream open ends the stream, and stops.
    let open_stream = http
        .get(format!(
            "{}/api/v1/missions/{waiting}/events/stream",
            server.url
        ))
        .send()
        .await
        .unwrap();
    let reading = tokio::spawn(read_stream(open_stream));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    drop(server);
    let streamed = reading.await.unwrap();
    assert_eq!(
        streamed.last().unwrap().1,
        "approval.requested",
        "it ended where the mission waits"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missions_start_over_http_from_configured_repositories_checked_as_the_cli_checks() {
    let template =
        "[params.name]\nrequired = true\n[[steps]]\nrun = \"echo {{name}} > hello.txt\"\n";
    let deploy = "[workspace]\nsecrets = [\"DEPLOY_KEY\"]\n[[steps]]\nrun = \"true\"\n";
    let sample = TestRepo::with_files(&[
        ("README.md", "# sample\n"),
        (
            ".flightdeck/policy.toml",
            "[defaults]\npublish = \"allow\"\n",
        ),
        (".flightdeck/missions/t.toml", template),
        (".flightdeck/missions/deploy.toml", deploy),
    ]);
    sample.commit_all("sample");
    let served = tempfile::tempdir().unwrap();
    let bare = served.path().join("acme/sample.git");
    let out = std::process::Command::new("git")
        .args(["clone", "--quiet", "--bare"])
        .arg(sample.path())
        .arg(&bare)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let cli = Cli::new(BIN);
    cli.write_config(&format!(
        "{CONFIG}\n[repos.sample]\nurl = \"file://{}\"\n\n[secrets.DEPLOY_KEY]\nenv = \"FD_TEST_DEPLOY_KEY\"\nrepos = [\"acme/other\"]\n",
        bare.display()
    ));
    let operator = token(&cli, "@bob", "operator");
    let viewer = token(&cli, "@bob", "viewer");
    let server = Server::start(&cli, &["--workers", "0"]);
    let http = reqwest::Client::new();
    let start = |body: Value, token: String| {
        let http = http.clone();
        let url = format!("{}/api/v1/missions", server.url);
        async move {
            let response = http
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let good = json!({"template": "t", "repo": "sample", "params": {"name": "world"}});
    let (status, body) = start(good.clone(), viewer.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        cli.run(&["--json", "missions"]).json(),
        json!([]),
        "nothing was created"
    );

    // Refused before anything is created, with the command line's own messages.
    let bad = StatusCode::BAD_REQUEST;
    let cases = [
        (
            json!({"template": "t", "repo": "file:///etc"}),
            "not a repository the config names",
            bad,
        ),
        (
            json!({"template": "t", "repo": "/etc"}),
            "not a repository the config names",
            bad,
        ),
        (
            json!({"template": "t", "repo": "nope"}),
            "not a repository the config names",
            bad,
        ),
        // A path like the one a secret is scoped to, on a host of the caller's choosing.
        (
            json!({"template": "deploy", "repo": "https://evil.example/acme/other.git"}),
            "not a repository the config names",
            bad,
        ),
        (
            json!({"template": "../../../etc/x.toml", "repo": "sample"}),
            "not a template name",
            bad,
        ),
        (
            json!({"template": "/etc/passwd", "repo": "sample"}),
            "not a template name",
            bad,
        ),
        (
            json!({"template": "nope", "repo": "sample"}),
            "nope",
            StatusCode::NOT_FOUND,
        ),
        (json!({"template": "t", "repo": "sample"}), "name", bad),
        (
            json!({"template": "t", "repo": "sample", "params": {"name": "x", "colour": "red"}}),
            "colour",
            bad,
        ),
        (
            json!({"template": "t", "repo": "sample", "base": "no-such-branch", "params": {"name": "x"}}),
            "no-such-branch",
            bad,
        ),
        (
            json!({"template": "deploy", "repo": "sample"}),
            "DEPLOY_KEY",
            bad,
        ),
        (json!({"template": "t"}), "repo", bad),
    ];
    for (body, says, expected) in cases {
        let (status, answer) = start(body.clone(), operator.clone()).await;
        assert_eq!(status, expected, "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {answer}");
        // Where the command line can say it too, it says the same.
        let cli_can_say = body["template"].as_str().is_some_and(|t| !t.contains('/'));
        if let (Some(template), Some("sample"), true) = (
            body["template"].as_str(),
            body["repo"].as_str(),
            cli_can_say,
        ) {
            let mut args = vec![
                "run".to_string(),
                template.to_string(),
                "--remote".into(),
                "sample".into(),
            ];
            if let Some(base) = body["base"].as_str() {
                args.extend(["--base".to_string(), base.to_string()]);
            }
            for (k, v) in body["params"].as_object().into_iter().flatten() {
                args.extend(["-p".to_string(), format!("{k}={}", v.as_str().unwrap())]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = cli.run(&args);
            assert_eq!(out.code(), 2, "{args:?}: {}", out.stderr());
            assert!(
                out.stderr().contains(message),
                "{args:?}: CLI said {} / API said {message}",
                out.stderr()
            );
        }
    }
    assert_eq!(
        cli.run(&["--json", "missions"]).json(),
        json!([]),
        "nothing was created"
    );

    // A good request, by name (and by the configured URL): 201, the summary, and the
    // mission runs in the background.
    let by_url = json!({"template": "t", "repo": format!("file://{}/", bare.display()), "params": {"name": "url"}});
    let (status, answer) = start(by_url, operator.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let (status, created) = start(good, operator.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["requested_by"], "@bob");
    let id = created["id"].as_str().unwrap().to_string();
    let stream = http
        .get(format!("{}/api/v1/missions/{id}/events/stream", server.url))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    let streamed = read_stream(stream).await;
    let (_, kind, last) = streamed.last().unwrap();
    assert_eq!(kind, "mission.finished");
    assert_eq!(last["data"]["status"], "succeeded", "{last:#}");
    let shown = cli.run(&["--json", "show", &id]).expect_code(0).json();
    assert!(
        shown["branch"].as_str().unwrap().starts_with("flightdeck/"),
        "{shown:#}"
    );
    let created_event = &cli.timeline(&id)[0];
    assert_eq!(created_event["data"]["params"]["name"], "world");
}

/// The directory holding playwright-core (`scripts/browser-tools` installs it, and Debian's
/// chromium, when missing), and the browser.
fn browser_tools() -> (std::path::PathBuf, std::path::PathBuf) {
    const HOW: &str = "the browser test needs Debian's chromium and playwright-core: run \
         `scripts/browser-tools` (as root it installs both), or set FLIGHTDECK_BROWSER_MODULES \
         to a node_modules holding playwright-core and FLIGHTDECK_CHROMIUM to the browser";
    let chromium = std::path::PathBuf::from(
        std::env::var("FLIGHTDECK_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_string()),
    );
    let modules = match std::env::var("FLIGHTDECK_BROWSER_MODULES") {
        Ok(path) => std::path::PathBuf::from(path),
        Err(_) => {
            let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../scripts/browser-tools");
            let output = std::process::Command::new(&script)
                .stderr(Stdio::inherit())
                .output()
                .unwrap_or_else(|e| panic!("failed to run {}: {e}; {HOW}", script.display()));
            assert!(
                output.status.success(),
                "{} failed; {HOW}",
                script.display()
            );
            std::path::PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
        }
    };
    assert!(
        modules.join("playwright-core/package.json").is_file(),
        "no playwright-core in {}; {HOW}",
        modules.display()
    );
    assert!(
        chromium.is_file(),
        "no browser at {}; {HOW}",
        chromium.display()
    );
    (modules, chromium)
}

/// A repository served by URL whose `greet` mission runs a while (so a page can watch it),
/// makes a coder agent's tool calls (one fails), and parks at a publish gate Bob approves.
fn served_greeter() -> (TestRepo, tempfile::TempDir, std::path::PathBuf) {
    let template = r#"description = "Greet someone"
goal = "Add a greeting for {{name}}."
[params.name]
required = true
[model]
pin = "scripted:.flightdeck/models/greet.toml"
[budget]
usd = 1.0
tool_calls = 40
[[steps]]
run = "sleep 2"
[[steps]]
agent = "coder"
task = "Greet {{name}} in src/lib.rs"
[publish]
title = "Greet {{name}}"
"#;
    let script = r#"model = "scripted-greeter"
[pricing]
input_per_mtok = 2.0
output_per_mtok = 8.0
[[turn]]
content = "Looking around first."
[[turn.call]]
tool = "run"
args = { command = "ls src && echo '<b>not bold</b>'" }
[[turn]]
[[turn.call]]
tool = "run"
args = { command = "cat does-not-exist.txt" }
[[turn]]
[[turn.call]]
tool = "run"
args = { command = "printf 'pub fn greet() {}\\n' >> src/lib.rs" }
[[turn]]
[[turn.call]]
tool = "finish"
args = { summary = "Added greet()." }
"#;
    let sample = TestRepo::with_files(&[
        ("README.md", "# sample\n"),
        ("src/lib.rs", "pub fn f() {}\n"),
        (".flightdeck/policy.toml", POLICY),
        (".flightdeck/missions/greet.toml", template),
        (".flightdeck/models/greet.toml", script),
    ]);
    sample.commit_all("sample");
    let served = tempfile::tempdir().unwrap();
    let bare = served.path().join("sample.git");
    let out = std::process::Command::new("git")
        .args(["clone", "--quiet", "--bare"])
        .arg(sample.path())
        .arg(&bare)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    (sample, served, bare)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_in_a_real_browser_from_sign_in_to_a_published_change() {
    let (modules, chromium) = browser_tools();
    let (_sample, _served, bare) = served_greeter();
    let cli = Cli::new(BIN);
    cli.write_config(&format!(
        "{CONFIG}\n[repos.sample]\nurl = \"file://{}\"\n",
        bare.display()
    ));
    let carol = token(&cli, "@carol", "operator");
    let bob = token(&cli, "@bob", "approver");
    let server = Server::start(&cli, &[]);
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("screenshots");
    let scenario =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/scenario.mjs");
    let out = tokio::process::Command::new("node")
        .arg(&scenario)
        .env("BASE_URL", &server.url)
        .env("SHOTS", &shots)
        .env("PLAYWRIGHT_MODULES", &modules)
        .env("CHROMIUM", &chromium)
        .env("CAROL_TOKEN", &carol)
        .env("BOB_TOKEN", &bob)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser scenario failed:\n{stderr}"
    );
    let said: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(said["ok"], json!(true), "{said}");
    let id = said["mission"].as_str().unwrap();

    // What the browser did is in the timeline, as who did it.
    let shown = cli.run(&["--json", "show", id]).json();
    assert_eq!(shown["status"], "succeeded", "{shown}");
    assert_eq!(shown["requested_by"], "@carol");
    let decided: Vec<Value> = cli
        .timeline(id)
        .into_iter()
        .filter(|e| e["type"] == "approval.decided")
        .collect();
    assert_eq!(decided.len(), 1, "{decided:?}");
    assert_eq!(decided[0]["data"]["by"], "@bob");
    assert_eq!(decided[0]["data"]["channel"], "web");
    for name in [
        "01-sign-in",
        "05-mission-at-gate",
        "07-mission-published",
        "09-metrics",
        "11-mission-phone",
    ] {
        let png = shots.join(format!("{name}.png"));
        let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
        assert!(
            bytes.starts_with(b"\x89PNG"),
            "{} is not a PNG",
            png.display()
        );
    }
    // No token reached a log or the timeline.
    let everything: Vec<u8> = cli.data_files().into_iter().flat_map(|(_, b)| b).collect();
    for secret in [&carol, &bob] {
        assert!(
            !everything
                .windows(secret.len())
                .any(|w| w == secret.as_bytes()),
            "a token was written to the data directory"
        );
    }
    drop(server);
}

/// What a request sends.
enum Body<'a> {
    None,
    Form(&'a [(&'a str, &'a str)]),
    Json(Value),
}

/// A browser's requests, by hand: no redirects followed, the session cookie kept.
struct Page {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: String,
}

async fn web(
    http: &reqwest::Client,
    server: &Server,
    method: Method,
    path: &str,
    cookie: Option<&str>,
    headers: &[(&str, &str)],
    body: Body<'_>,
) -> Page {
    let mut request = http.request(method, format!("{}{path}", server.url));
    if let Some(cookie) = cookie {
        request = request.header("cookie", format!("fd_session={cookie}"));
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    match body {
        Body::None => {}
        Body::Form(form) => request = request.form(form),
        Body::Json(json) => request = request.json(&json),
    }
    let response = request.send().await.unwrap();
    Page {
        status: response.status(),
        headers: response.headers().clone(),
        body: response.text().await.unwrap(),
    }
}

/// Signs in with `token`; the session cookie's value and the page's CSRF token.
async fn sign_in(http: &reqwest::Client, server: &Server, token: &str) -> (String, String) {
    let signed = web(
        http,
        server,
        Method::POST,
        "/login",
        None,
        &[],
        Body::Form(&[("token", token), ("next", "/approvals")]),
    )
    .await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.body);
    assert_eq!(signed.headers["location"], "/approvals");
    let set = signed.headers["set-cookie"].to_str().unwrap().to_string();
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set.contains(attribute), "{set}");
    }
    let cookie = set
        .strip_prefix("fd_session=")
        .and_then(|v| v.split(';').next())
        .unwrap()
        .to_string();
    let home = web(
        http,
        server,
        Method::GET,
        "/",
        Some(&cookie),
        &[],
        Body::None,
    )
    .await;
    assert_eq!(home.status, StatusCode::OK);
    let csrf = home
        .body
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    (cookie, csrf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_sessions_sign_in_with_tokens_need_csrf_and_show_what_missions_wrote_as_text() {
    // A mission whose command output, parameter and publish title carry markup.
    let template = "[params.who]\nrequired = true\n[publish]\ntitle = \"For {{who}}\"\n[[steps]]\nrun = \"printf '%s\\\\n' '<script>window.owned=1</script>' && echo 'pub fn g() {}' >> src/lib.rs\"\n";
    let repo = TestRepo::with_files(&[
        ("README.md", "# sample\n"),
        ("src/lib.rs", "pub fn f() {}\n"),
        (".flightdeck/policy.toml", POLICY),
        (".flightdeck/missions/t.toml", template),
    ]);
    repo.commit_all("sample");
    let cli = Cli::new(BIN);
    cli.write_config(CONFIG);
    let out = cli.run(&[
        "--json",
        "run",
        "t",
        "--repo",
        repo.path().to_str().unwrap(),
        "-p",
        "who=<img src=x onerror=alert(1)>",
    ]);
    assert_eq!(out.code(), 3, "{}", out.stderr());
    let id = out.json()["id"].as_str().unwrap().to_string();
    let approval = out.json()["pending_approvals"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (bob_viewer, bob_viewer_id) = token_id(&cli, "@bob", "viewer");
    let bob = token(&cli, "@bob", "approver");
    let operator = token(&cli, "@carol", "operator");
    let server = Server::start(&cli, &["--workers", "0"]);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // Every page sends a visitor without credentials to sign in, and comes back after.
    for path in [
        "/".to_string(),
        format!("/missions/{id}"),
        format!("/missions/{id}/diff?seq=5"),
        "/approvals".into(),
        "/metrics".into(),
        "/missions/new".into(),
    ] {
        let page = web(&http, &server, Method::GET, &path, None, &[], Body::None).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        let location = page.headers["location"].to_str().unwrap();
        assert!(location.starts_with("/login?next=/"), "{path}: {location}");
    }
    let login = web(&http, &server, Method::GET, "/login", None, &[], Body::None).await;
    assert_eq!(login.status, StatusCode::OK);
    let csp = login.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(login.headers["x-frame-options"], "DENY");

    // A wrong token, or a sign-in another site posted, opens no session.
    for (token, headers, expected) in [
        ("fd_wrong", vec![], StatusCode::UNAUTHORIZED),
        (
            bob.as_str(),
            vec![("origin", "http://evil.example")],
            StatusCode::FORBIDDEN,
        ),
        (
            bob.as_str(),
            vec![("sec-fetch-site", "cross-site")],
            StatusCode::FORBIDDEN,
        ),
    ] {
        let page = web(
            &http,
            &server,
            Method::POST,
            "/login",
            None,
            &headers,
            Body::Form(&[("token", token)]),
        )
        .await;
        assert_eq!(page.status, expected, "{}", page.body);
        assert!(page.headers.get("set-cookie").is_none());
    }
    // Signing in never sends the browser to another site.
    let page = web(
        &http,
        &server,
        Method::POST,
        "/login",
        None,
        &[],
        Body::Form(&[("token", &bob), ("next", "//evil.example/")]),
    )
    .await;
    assert_eq!(page.headers["location"], "/");

    // What a mission wrote is shown as text, on every page that shows it.
    let (viewer_cookie, viewer_csrf) = sign_in(&http, &server, &bob_viewer).await;
    let mission_page = web(
        &http,
        &server,
        Method::GET,
        &format!("/missions/{id}"),
        Some(&viewer_cookie),
        &[],
        Body::None,
    )
    .await;
    assert_eq!(mission_page.status, StatusCode::OK);
    let inbox = web(
        &http,
        &server,
        Method::GET,
        "/approvals",
        Some(&viewer_cookie),
        &[],
        Body::None,
    )
    .await;
    for (name, page) in [("mission page", &mission_page.body), ("inbox", &inbox.body)] {
        assert!(!page.contains("<script>window.owned"), "{name}");
        assert!(!page.contains("<img src=x"), "{name}");
        assert!(
            page.contains("&lt;img src=x onerror=alert(1)&gt;"),
            "{name}: {page}"
        );
    }
    assert!(mission_page
        .body
        .contains("&lt;script&gt;window.owned=1&lt;/script&gt;"));
    // A viewer sees no buttons to act with, and the API refuses the role.
    assert!(!mission_page.body.contains("data-action=\"approve\""));
    assert!(!mission_page.body.contains("data-action=\"cancel\""));
    let refused = web(
        &http,
        &server,
        Method::POST,
        &format!("/api/v1/missions/{id}/cancel"),
        Some(&viewer_cookie),
        &[("x-csrf-token", &viewer_csrf)],
        Body::Json(json!({})),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);

    // An approver's session: a decision needs the session's CSRF token.
    let (cookie, csrf) = sign_in(&http, &server, &bob).await;
    let before = timeline_len(&cli, &id);
    let approve = format!("/api/v1/approvals/{approval}/approve");
    for (csrf_sent, why) in [
        (None, "missing"),
        (Some("not-the-token"), "wrong"),
        (Some(viewer_csrf.as_str()), "another session's"),
    ] {
        let headers: Vec<(&str, &str)> =
            csrf_sent.map(|c| ("x-csrf-token", c)).into_iter().collect();
        let page = web(
            &http,
            &server,
            Method::POST,
            &approve,
            Some(&cookie),
            &headers,
            Body::Json(json!({})),
        )
        .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{why}: {}", page.body);
        assert!(page.body.contains("X-CSRF-Token"), "{}", page.body);
    }
    assert_eq!(
        timeline_len(&cli, &id),
        before,
        "refused decisions record nothing"
    );
    let page = web(
        &http,
        &server,
        Method::POST,
        &approve,
        Some(&cookie),
        &[("x-csrf-token", &csrf)],
        Body::Json(json!({"comment": "looks right"})),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let decided = cli
        .timeline(&id)
        .into_iter()
        .find(|e| e["type"] == "approval.decided")
        .unwrap();
    assert_eq!(decided["data"]["by"], "@bob");
    assert_eq!(decided["data"]["channel"], "web");

    // A listing by requester.
    for (who, count) in [("@carol", 1), ("@nobody", 0)] {
        let page = web(
            &http,
            &server,
            Method::GET,
            &format!("/api/v1/missions?requested_by={who}"),
            Some(&viewer_cookie),
            &[],
            Body::None,
        )
        .await;
        let listed: Value = serde_json::from_str(&page.body).unwrap();
        assert_eq!(
            listed["missions"].as_array().unwrap().len(),
            count,
            "{who}: {listed}"
        );
    }

    // The changes stream tails the store's global feed: from position 0 it tells of every
    // mission so far, with the position as the event's id (what a reconnect resumes from).
    let mut changes = http
        .get(format!("{}/api/v1/changes?after=0", server.url))
        .header("cookie", format!("fd_session={viewer_cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(changes.status(), StatusCode::OK);
    let mut text = String::new();
    let first = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            let chunk = changes.chunk().await.unwrap().unwrap();
            text.push_str(&String::from_utf8_lossy(&chunk));
            if let Some(block) = text.split("\n\n").find(|b| b.contains("event: changed")) {
                return block.to_string();
            }
        }
    })
    .await
    .expect("a changed event from position 0");
    let field = |name: &str| {
        first
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {name} in {first}"))
    };
    let data: Value = serde_json::from_str(&field("data")).unwrap();
    assert_eq!(data["position"].to_string(), field("id"), "{first}");
    assert!(data["position"].as_u64().unwrap() >= 1, "{first}");
    assert!(
        data["missions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == &json!(id)),
        "{first}"
    );
    drop(changes);
    let refused = http
        .get(format!("{}/api/v1/changes?after=soon", server.url))
        .header("cookie", format!("fd_session={viewer_cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);

    // A stream a session opened ends once the session's token is revoked (checked every 5 s).
    let stream = http
        .get(format!("{}/api/v1/changes", server.url))
        .header("cookie", format!("fd_session={viewer_cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);

    // Revoking the token a session was opened with ends the session.
    cli.run(&["token", "revoke", &bob_viewer_id]).expect_code(0);
    let page = web(
        &http,
        &server,
        Method::GET,
        "/",
        Some(&viewer_cookie),
        &[],
        Body::None,
    )
    .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let page = web(
        &http,
        &server,
        Method::GET,
        "/api/v1/missions",
        Some(&viewer_cookie),
        &[],
        Body::None,
    )
    .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{}", page.body);
    let mut stream = stream;
    let ended = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Some(_chunk) = stream.chunk().await.unwrap() {}
    })
    .await;
    assert!(
        ended.is_ok(),
        "the session's stream outlived its revoked token"
    );

    // Signing out needs the CSRF token too, and ends the session.
    let page = web(
        &http,
        &server,
        Method::POST,
        "/logout",
        Some(&cookie),
        &[],
        Body::Form(&[("csrf", "nope")]),
    )
    .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    let page = web(
        &http,
        &server,
        Method::POST,
        "/logout",
        Some(&cookie),
        &[],
        Body::Form(&[("csrf", &csrf)]),
    )
    .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert!(page.headers["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let page = web(
        &http,
        &server,
        Method::GET,
        "/approvals",
        Some(&cookie),
        &[],
        Body::None,
    )
    .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "the session is gone");

    // Unknown places: a page for people, JSON for programs.
    let (cookie, _) = sign_in(&http, &server, &operator).await;
    let page = web(
        &http,
        &server,
        Method::GET,
        "/nowhere",
        Some(&cookie),
        &[],
        Body::None,
    )
    .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(page.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = web(
        &http,
        &server,
        Method::GET,
        "/api/v1/nowhere",
        Some(&cookie),
        &[],
        Body::None,
    )
    .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(
        page.body.contains("\"kind\":\"not_found\""),
        "{}",
        page.body
    );
    // A step's diff is asked for by seq, of a tool call that recorded the worktree.
    // (`seq=abc` is no seq at all: the page asks which step.)
    for query in ["seq=abc", "seq=1", "seq=99999", ""] {
        let page = web(
            &http,
            &server,
            Method::GET,
            &format!("/missions/{id}/diff?{query}"),
            Some(&cookie),
            &[],
            Body::None,
        )
        .await;
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "{query}: {}",
            page.body
        );
    }
    let completed = cli
        .timeline(&id)
        .into_iter()
        .find(|e| e["type"] == "tool.completed")
        .unwrap();
    let seq = completed["seq"].as_u64().unwrap();
    let page = web(
        &http,
        &server,
        Method::GET,
        &format!("/missions/{id}/diff?seq={seq}"),
        Some(&cookie),
        &[],
        Body::None,
    )
    .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("+pub fn g() {}"), "{}", page.body);

    // Forking from the API: a new mission, its first events copied from the origin.
    let forked = call(
        &http,
        &server,
        Method::POST,
        &format!("/api/v1/missions/{id}/fork"),
        Some(&operator),
        Some(json!({"at": seq})),
    )
    .await;
    assert_eq!(forked.status, StatusCode::CREATED, "{}", forked.body);
    let fork_id = forked.body["id"].as_str().unwrap();
    assert_ne!(fork_id, id);
    let copied = cli.timeline(fork_id);
    assert!(
        copied.iter().any(|e| e["type"] == "mission.forked"),
        "{copied:?}"
    );
    let beyond = call(
        &http,
        &server,
        Method::POST,
        &format!("/api/v1/missions/{id}/fork"),
        Some(&operator),
        Some(json!({"at": 100000})),
    )
    .await;
    assert_eq!(beyond.status, StatusCode::BAD_REQUEST, "{}", beyond.body);

    // Bob forks Carol's mission: the fork runs for him, so he may not approve its gate,
    // though its `mission.created` still names Carol.
    let forked = call(
        &http,
        &server,
        Method::POST,
        &format!("/api/v1/missions/{id}/fork"),
        Some(&bob),
        Some(json!({"at": seq})),
    )
    .await;
    assert_eq!(forked.status, StatusCode::CREATED, "{}", forked.body);
    let bobs = forked.body["id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let gate = loop {
        let shown = cli.run(&["--json", "show", &bobs]).json();
        if let Some(gate) = shown["pending_approvals"][0]["id"].as_str() {
            break gate.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the fork never parked: {shown}\n{:#?}",
            cli.timeline(&bobs)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let before = timeline_len(&cli, &bobs);
    let own = call(
        &http,
        &server,
        Method::POST,
        &format!("/api/v1/approvals/{gate}/approve"),
        Some(&bob),
        Some(json!({})),
    )
    .await;
    assert_eq!(own.status, StatusCode::FORBIDDEN, "{}", own.body);
    assert!(
        own.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("forked"),
        "{}",
        own.body
    );
    assert_eq!(timeline_len(&cli, &bobs), before, "nothing recorded");
    drop(server);
}

/// A faithful stand-in for an OpenID Connect provider, over real HTTP: discovery, JWKS, an
/// authorization endpoint that signs in whoever `subject` names at once, and a token
/// endpoint that checks the client's secret, the redirect URI and the PKCE verifier before
/// it issues an RS256 ID token (or a forged one, when told to).
mod fake_idp {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use axum::extract::{Form, Query, State};
    use axum::http::{header, HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::{get, post};
    use axum::{Json, Router};
    use base64::Engine as _;
    use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
    use serde_json::{json, Value};
    use sha2::Digest as _;

    pub const CLIENT: &str = "flightdeck";
    pub const SECRET: &str = "s3cret-of-the-client";

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    pub struct Idp {
        pub url: String,
        pub state: Arc<Shared>,
    }

    pub struct Shared {
        key: RsaKeyPair,
        issuer: Mutex<String>,
        /// Who the next sign-in is.
        pub subject: Mutex<String>,
        /// Sign the next ID token with the wrong key bytes.
        pub forge: Mutex<bool>,
        /// code -> (challenge, nonce, redirect_uri, subject)
        codes: Mutex<HashMap<String, (String, String, String, String)>>,
        /// Everything the token endpoint refused, and why (the test shows it).
        pub refusals: Mutex<Vec<String>>,
    }

    pub async fn start() -> Idp {
        // A 2048-bit RSA key, made by openssl as an administrator would.
        let out = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-outform",
                "DER",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // OpenSSL writes the DER form as PKCS#1 (RSAPrivateKey).
        let key = RsaKeyPair::from_der(&out.stdout).unwrap();
        let state = Arc::new(Shared {
            key,
            issuer: Mutex::new(String::new()),
            subject: Mutex::new("sub-bob".to_string()),
            forge: Mutex::new(false),
            codes: Mutex::new(HashMap::new()),
            refusals: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        *state.issuer.lock().unwrap() = url.clone();
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .with_state(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Idp { url, state }
    }

    async fn discovery(State(s): State<Arc<Shared>>) -> Json<Value> {
        let issuer = s.issuer.lock().unwrap().clone();
        Json(json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "jwks_uri": format!("{issuer}/jwks"),
            "response_types_supported": ["code"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
        }))
    }

    async fn jwks(State(s): State<Arc<Shared>>) -> Json<Value> {
        let public: ring::rsa::PublicKeyComponents<Vec<u8>> = s.key.public().into();
        Json(json!({"keys": [{
            "kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256",
            "n": b64(&public.n), "e": b64(&public.e),
        }]}))
    }

    async fn authorize(
        State(s): State<Arc<Shared>>,
        Query(q): Query<HashMap<String, String>>,
    ) -> Response {
        let get = |k: &str| q.get(k).cloned().unwrap_or_default();
        let wrong = [
            (get("response_type") != "code", "response_type"),
            (get("client_id") != CLIENT, "client_id"),
            (
                get("code_challenge_method") != "S256",
                "code_challenge_method",
            ),
            (get("code_challenge").len() != 43, "code_challenge"),
            (!get("scope").split(' ').any(|s| s == "openid"), "scope"),
            (
                get("state").is_empty() || get("nonce").is_empty(),
                "state/nonce",
            ),
        ];
        if let Some((_, what)) = wrong.iter().find(|(bad, _)| *bad) {
            return (StatusCode::BAD_REQUEST, format!("bad {what}")).into_response();
        }
        let code = format!("code-{}", s.codes.lock().unwrap().len() + 1);
        let subject = s.subject.lock().unwrap().clone();
        s.codes.lock().unwrap().insert(
            code.clone(),
            (
                get("code_challenge"),
                get("nonce"),
                get("redirect_uri"),
                subject,
            ),
        );
        let location = format!("{}?code={code}&state={}", get("redirect_uri"), get("state"));
        (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
    }

    async fn token(
        State(s): State<Arc<Shared>>,
        headers: HeaderMap,
        Form(f): Form<HashMap<String, String>>,
    ) -> Response {
        let refuse = |why: String| {
            s.refusals.lock().unwrap().push(why.clone());
            (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "invalid_grant", "error_description": why})),
            )
                .into_response()
        };
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT}:{SECRET}"))
        );
        if headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            != Some(basic.as_str())
        {
            return refuse("client authentication".to_string());
        }
        if f.get("grant_type").map(String::as_str) != Some("authorization_code") {
            return refuse("grant_type".to_string());
        }
        let code = f.get("code").cloned().unwrap_or_default();
        let Some((challenge, nonce, redirect_uri, subject)) = s.codes.lock().unwrap().remove(&code)
        else {
            return refuse(format!("unknown or used code {code}"));
        };
        if f.get("redirect_uri") != Some(&redirect_uri) {
            return refuse("redirect_uri".to_string());
        }
        let verifier = f.get("code_verifier").cloned().unwrap_or_default();
        if b64(&sha2::Sha256::digest(verifier.as_bytes())) != challenge {
            return refuse("PKCE verifier".to_string());
        }
        let issuer = s.issuer.lock().unwrap().clone();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header_part = b64(json!({"alg": "RS256", "kid": "k1", "typ": "JWT"})
            .to_string()
            .as_bytes());
        let claims = b64(json!({
            "iss": issuer, "aud": CLIENT, "sub": subject, "nonce": nonce,
            "iat": now, "exp": now + 300, "email": "bob@acme.com", "email_verified": true,
        })
        .to_string()
        .as_bytes());
        let signed = format!("{header_part}.{claims}");
        let mut signature = vec![0; s.key.public().modulus_len()];
        s.key
            .sign(
                &RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                signed.as_bytes(),
                &mut signature,
            )
            .unwrap();
        if *s.forge.lock().unwrap() {
            signature[10] ^= 0xff;
        }
        Json(json!({
            "access_token": "at", "token_type": "Bearer", "expires_in": 300,
            "id_token": format!("{signed}.{}", b64(&signature)),
        }))
        .into_response()
    }
}

/// Goes through the single sign-on flow as a browser does: the state cookie, the provider's
/// redirect, the callback. Returns the callback's answer.
async fn sso(http: &reqwest::Client, server: &Server, next: &str, keep_state_cookie: bool) -> Page {
    let start = web(
        http,
        server,
        Method::GET,
        &format!("/auth/oidc/start?next={next}"),
        None,
        &[],
        Body::None,
    )
    .await;
    assert_eq!(start.status, StatusCode::SEE_OTHER, "{}", start.body);
    let set = start.headers["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("Path=/auth/oidc"),
        "{set}"
    );
    let state_cookie = set.split(';').next().unwrap().to_string();
    let authorize = start.headers["location"].to_str().unwrap().to_string();
    let back = http.get(&authorize).send().await.unwrap();
    assert_eq!(
        back.status(),
        StatusCode::FOUND,
        "{}",
        back.text().await.unwrap()
    );
    let callback = back.headers()["location"].to_str().unwrap().to_string();
    assert!(
        callback.starts_with(&format!("{}/auth/oidc/callback?", server.url)),
        "{callback}"
    );
    let mut request = http.get(&callback);
    if keep_state_cookie {
        request = request.header("cookie", state_cookie);
    }
    let response = request.send().await.unwrap();
    Page {
        status: response.status(),
        headers: response.headers().clone(),
        body: response.text().await.unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_sign_on_maps_the_providers_subject_to_a_person_and_refuses_the_rest() {
    let idp = fake_idp::start().await;
    let cli = Cli::new(BIN);
    cli.write_config(&format!(
        r#"
[server]
auth = "required"

[server.oidc]
issuer = "{}"
client_id = "{}"
client_secret_env = "FD_TEST_OIDC_SECRET"
default_role = "viewer"
roles = {{ "@bob" = "approver" }}

[people.bob]
handle = "@bob"
emails = ["bob@acme.com"]
oidc = "sub-bob"

[people.carol]
handle = "@carol"
oidc = "sub-carol"
"#,
        idp.url,
        fake_idp::CLIENT
    ));
    // Without the secret in the environment, serve refuses to start, naming the key.
    let out = cli.run(&["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(out.code(), 2, "{}", out.stderr());
    assert!(
        out.stderr().contains("client_secret_env"),
        "{}",
        out.stderr()
    );

    let server = Server::start_with_env(
        &cli,
        &["--workers", "0"],
        &[("FD_TEST_OIDC_SECRET", fake_idp::SECRET)],
    );
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = web(
        &http,
        &server,
        Method::GET,
        "/login?next=/approvals",
        None,
        &[],
        Body::None,
    )
    .await;
    assert!(
        login.body.contains("Sign in with single sign-on"),
        "{}",
        login.body
    );

    // Bob signs in and lands where he was going, as himself with his configured role.
    let done = sso(&http, &server, "/approvals", true).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.headers["location"], "/approvals");
    let cookies: Vec<String> = done
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let session = cookies
        .iter()
        .find_map(|c| c.strip_prefix("fd_session="))
        .and_then(|v| v.split(';').next())
        .unwrap()
        .to_string();
    assert!(
        cookies.iter().any(|c| c.starts_with("fd_oidc_state=;")),
        "the flow's cookie is cleared: {cookies:?}"
    );
    let page = web(
        &http,
        &server,
        Method::GET,
        "/approvals",
        Some(&session),
        &[],
        Body::None,
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("@bob · approver"), "{}", page.body);

    // Carol has no role of her own: the default.
    *idp.state.subject.lock().unwrap() = "sub-carol".to_string();
    let done = sso(&http, &server, "/", true).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let carol = done.headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .strip_prefix("fd_session=")
        .unwrap()
        .to_string();
    let page = web(
        &http,
        &server,
        Method::GET,
        "/",
        Some(&carol),
        &[],
        Body::None,
    )
    .await;
    assert!(page.body.contains("@carol · viewer"), "{}", page.body);

    // Nobody in [people]: refused, no session.
    *idp.state.subject.lock().unwrap() = "sub-mallory".to_string();
    let done = sso(&http, &server, "/", true).await;
    assert_eq!(done.status, StatusCode::FORBIDDEN, "{}", done.body);
    assert!(done.body.contains("sub-mallory"), "{}", done.body);
    assert!(!done
        .headers
        .get_all("set-cookie")
        .iter()
        .any(|c| c.to_str().unwrap().starts_with("fd_session=")));

    // A callback in a browser that did not start the flow (no state cookie): refused.
    *idp.state.subject.lock().unwrap() = "sub-bob".to_string();
    let done = sso(&http, &server, "/", false).await;
    assert_eq!(done.status, StatusCode::UNAUTHORIZED, "{}", done.body);
    assert!(
        done.body.contains("not started by this browser"),
        "{}",
        done.body
    );

    // An ID token whose signature does not verify: refused.
    *idp.state.forge.lock().unwrap() = true;
    let done = sso(&http, &server, "/", true).await;
    assert_eq!(done.status, StatusCode::UNAUTHORIZED, "{}", done.body);
    assert!(done.body.contains("signature"), "{}", done.body);
    *idp.state.forge.lock().unwrap() = false;

    // The provider saw the right PKCE verifier, secret and redirect URI every time.
    assert_eq!(*idp.state.refusals.lock().unwrap(), Vec::<String>::new());
    drop(server);
}
