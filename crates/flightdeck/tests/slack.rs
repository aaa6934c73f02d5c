//! Approvals in Slack with the real binary and a fake Slack (Socket Mode and HTTP mode at
//! once): a mission parks → one message with the approval's context → a click by someone
//! not eligible, and one by the requester under their Slack id, are refused with an
//! ephemeral message and record nothing → a forged, stale, oversize or other-workspace
//! click is refused → the first approver approves in Slack over Socket Mode, the second on
//! the command line (2 of 2 across channels) → the message shows both and loses its
//! buttons → the mission publishes by itself and the thread says so → a deny by a Slack
//! user known by email → a server killed between a decision and the message's update
//! updates it once on restart → a reminder, a budget block and a cancel in the thread.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::time::{Duration, Instant};

use flightdeck_testkit::fake_slack::FakeSlack;
use flightdeck_testkit::{Cli, Served, TestRepo};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");
#[path = "common/slack_setup.rs"]
mod slack_setup;

use slack_setup::{config, serve, APP_TOKEN, CHANNEL, POLICY, SECRET, TOKEN};

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// POSTs a click to the server as Slack would (or with the given headers).
async fn post(server: &Served, body: &str, headers: &[(String, String)]) -> u16 {
    let mut request = reqwest::Client::new()
        .post(format!("{}/slack/actions", server.url))
        .body(body.to_string());
    for (name, value) in headers {
        request = request.header(name, value);
    }
    request.send().await.unwrap().status().as_u16()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn decided(cli: &Cli, id: &str) -> Vec<Value> {
    cli.timeline(id)
        .into_iter()
        .filter(|e| e["type"] == "approval.decided")
        .collect()
}

fn has_buttons(message: &Value) -> bool {
    message["blocks"]
        .as_array()
        .is_some_and(|blocks| blocks.iter().any(|b| b["type"] == "actions"))
}

/// The thread replies under the message `ts` of `CHANNEL`.
fn thread(slack: &FakeSlack, ts: &str) -> Vec<String> {
    slack
        .messages(CHANNEL)
        .into_iter()
        .filter(|m| m["thread_ts"].as_str() == Some(ts) && m["ts"].as_str() != Some(ts))
        .map(|m| m["text"].as_str().unwrap_or("").to_string())
        .collect()
}

/// The top-level messages of `CHANNEL` (approval requests), oldest first.
fn requests(slack: &FakeSlack) -> Vec<Value> {
    slack
        .messages(CHANNEL)
        .into_iter()
        .filter(|m| m.get("thread_ts").is_none() || m["thread_ts"] == m["ts"])
        .collect()
}

/// Parks a mission of template `t` in `repo`; its id and its first pending approval's.
fn park(cli: &Cli, repo: &TestRepo) -> (String, String) {
    let parked = cli.run(&[
        "--json",
        "run",
        "t",
        "--repo",
        repo.path().to_str().unwrap(),
    ]);
    assert_eq!(parked.code(), 3, "{}", parked.stderr());
    let summary = parked.json();
    (
        summary["id"].as_str().unwrap().to_string(),
        summary["pending_approvals"][0]["id"]
            .as_str()
            .unwrap()
            .to_string(),
    )
}

fn status(cli: &Cli, id: &str) -> String {
    cli.run(&["--json", "show", id]).json()["status"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_is_decided_in_slack_by_the_right_people_and_recorded_as_who_they_are() {
    let slack = FakeSlack::start(TOKEN).await;
    slack.enable_socket_mode(APP_TOKEN);
    slack.add_channel(CHANNEL, "approvals");
    slack.add_user("UDANA", "dana", Some("Dana@acme.test"));
    let cli = Cli::new(BIN);
    cli.write_config(&config(&slack.api_url()));
    let repo = TestRepo::with_files(&[
        ("README.md", "# sample\n"),
        ("src/lib.rs", "pub fn f() {}\n"),
        (".flightdeck/policy.toml", POLICY),
        (
            ".flightdeck/missions/t.toml",
            "[publish]\ntitle = \"Add g\"\n[[steps]]\nrun = \"echo 'pub fn g() {}' >> src/lib.rs\"\n",
        ),
    ]);
    repo.commit_all("sample");
    let server = serve(&cli);
    slack.wait_for_socket(1, Duration::from_secs(30)).await;
    let (id, approval) = park(&cli, &repo);

    // One message, with the approval's context and its buttons.
    wait_until("the request is posted", || requests(&slack).len() == 1).await;
    let message = requests(&slack)[0].clone();
    let ts = message["ts"].as_str().unwrap().to_string();
    let shown = message.to_string();
    for expected in [
        "Add g",
        "@carol",
        "@bob",
        "@dana",
        "src/lib.rs",
        &approval,
        &id,
    ] {
        assert!(shown.contains(expected), "{expected} not in {shown}");
    }
    assert!(has_buttons(&message));
    // Recorded, so it is never posted again.
    wait_until("notification.sent is recorded", || {
        cli.timeline(&id)
            .iter()
            .any(|e| e["type"] == "notification.sent" && e["data"]["ref"] == ts.as_str())
    })
    .await;

    // Forged, stale and oversize clicks are refused before they are read.
    let click = slack.click(CHANNEL, &ts, "UBOB", "flightdeck_approve");
    let (body, mut headers) = click.signed(SECRET, now());
    for header in headers.iter_mut() {
        if header.0.eq_ignore_ascii_case("x-slack-signature") {
            header.1 =
                flightdeck_testkit::fake_slack::sign("not-the-secret", &now().to_string(), &body);
        }
    }
    assert_eq!(
        post(&server, &body, &headers).await,
        401,
        "a forged signature"
    );
    // The signature covers the user: Bob's click claimed by Eve's id is forged.
    let forged_user = body.replace("UBOB", "UEVE");
    assert_eq!(
        post(&server, &forged_user, &headers).await,
        401,
        "a forged user.id"
    );
    let (body, headers) = click.signed(SECRET, now() - 600);
    assert_eq!(
        post(&server, &body, &headers).await,
        401,
        "a stale timestamp"
    );
    let oversize = format!("{body}&padding={}", "x".repeat(70 * 1024));
    let headers =
        flightdeck_testkit::fake_slack::signed_headers(SECRET, &now().to_string(), &oversize);
    assert_eq!(
        post(&server, &oversize, &headers).await,
        413,
        "an oversize body"
    );
    // A click from another workspace the app is installed in decides nothing here.
    let mut elsewhere = slack.click(CHANNEL, &ts, "UBOB", "flightdeck_approve");
    elsewhere.team_id = "T0ELSEWHERE".to_string();
    let (body, headers) = elsewhere.signed(SECRET, now());
    assert_eq!(post(&server, &body, &headers).await, 200);
    assert!(decided(&cli, &id).is_empty());

    // Someone the policy does not name, and the requester under their Slack id: refused
    // in a message only they see; nothing recorded. One by HTTP, one by Socket Mode.
    let (body, headers) = slack
        .click(CHANNEL, &ts, "UEVE", "flightdeck_approve")
        .signed(SECRET, now());
    assert_eq!(post(&server, &body, &headers).await, 200);
    let envelope = slack.socket_click(&slack.click(CHANNEL, &ts, "UCAROL", "flightdeck_approve"));
    slack.wait_for_ack(&envelope, Duration::from_secs(10)).await;
    for who in ["UEVE", "UCAROL"] {
        wait_until("the refusal is told", || {
            slack.ephemerals().iter().any(|e| e["user"] == who)
        })
        .await;
        let told = slack
            .ephemerals()
            .into_iter()
            .find(|e| e["user"] == who)
            .unwrap();
        assert!(
            told["text"]
                .as_str()
                .unwrap()
                .contains("Nothing was recorded"),
            "{told}"
        );
    }
    assert!(
        decided(&cli, &id).is_empty(),
        "refused clicks record nothing"
    );

    // Bob approves in Slack over Socket Mode: recorded as Bob, with his Slack id and how
    // it was resolved; a redelivery of the same envelope is acknowledged and not counted.
    let envelope = slack.socket_click(&slack.click(CHANNEL, &ts, "UBOB", "flightdeck_approve"));
    slack.wait_for_ack(&envelope, Duration::from_secs(10)).await;
    wait_until("Bob's approval is recorded", || {
        decided(&cli, &id).len() == 1
    })
    .await;
    slack.redeliver(&envelope);
    let vote = decided(&cli, &id)[0]["data"].clone();
    assert_eq!(vote["by"], "@bob", "{vote}");
    assert_eq!(vote["channel"], "slack", "{vote}");
    assert_eq!(vote["actor"]["channel_user"], "UBOB", "{vote}");
    assert_eq!(vote["actor"]["resolved_by"], "people.slack", "{vote}");
    wait_until("the message shows Bob's approval", || {
        slack
            .message(CHANNEL, &ts)
            .is_some_and(|m| m.to_string().contains("1 of 2") && has_buttons(&m))
    })
    .await;

    // Dana approves on the command line: the gate closes, the message loses its buttons,
    // the mission goes on by itself and the thread says it published.
    cli.run(&["--as", "@dana", "approve", &approval])
        .expect_code(0);
    wait_until("the message closes", || {
        slack
            .message(CHANNEL, &ts)
            .is_some_and(|m| !has_buttons(&m) && m.to_string().contains("Approved"))
    })
    .await;
    wait_until("the mission publishes", || status(&cli, &id) == "succeeded").await;
    wait_until("the thread says it published", || {
        thread(&slack, &ts)
            .iter()
            .any(|t| t.contains("Published") && t.contains("flightdeck/"))
    })
    .await;
    assert_eq!(requests(&slack).len(), 1);
    assert_eq!(decided(&cli, &id).len(), 2, "Bob's once, and Dana's");
    // Bob's click replayed once the request closed (freshly signed): nothing recorded, and
    // he is told why.
    let (body, headers) = click.signed(SECRET, now());
    assert_eq!(post(&server, &body, &headers).await, 200);
    wait_until("the late click is answered", || {
        slack
            .ephemerals()
            .iter()
            .any(|e| e["user"] == "UBOB" && e["text"].as_str().unwrap_or("").contains("already"))
    })
    .await;
    assert_eq!(
        decided(&cli, &id).len(),
        2,
        "only Bob's and Dana's approvals"
    );

    // Slack rotates the connection: clicks still arrive on the new one.
    slack.request_refresh();
    slack.wait_for_socket(2, Duration::from_secs(30)).await;

    // Dana, whom [people] knows by email only, denies in Slack: she is found through
    // users.info, and that is recorded. The mission fails at once and its request closes.
    let (denied_id, _) = park(&cli, &repo);
    wait_until("the second request is posted", || {
        requests(&slack).len() == 2
    })
    .await;
    let second_ts = requests(&slack)[1]["ts"].as_str().unwrap().to_string();
    let envelope =
        slack.socket_click(&slack.click(CHANNEL, &second_ts, "UDANA", "flightdeck_deny"));
    slack.wait_for_ack(&envelope, Duration::from_secs(10)).await;
    wait_until("the deny fails the mission", || {
        status(&cli, &denied_id) == "failed"
    })
    .await;
    let deny = decided(&cli, &denied_id)[0]["data"].clone();
    assert_eq!(deny["by"], "@dana", "{deny}");
    assert_eq!(deny["decision"], "deny", "{deny}");
    assert_eq!(deny["actor"]["channel_user"], "UDANA", "{deny}");
    assert_eq!(deny["actor"]["resolved_by"], "slack.email", "{deny}");
    assert_eq!(deny["actor"]["email"], "Dana@acme.test", "{deny}");
    // Replay judges the recorded deny again, by the address Slack vouched for.
    cli.run(&["replay", &denied_id]).expect_code(0);
    wait_until("the denied request closes", || {
        slack.message(CHANNEL, &second_ts).is_some_and(|m| {
            !has_buttons(&m) && m.to_string().contains("Denied") && m.to_string().contains("@dana")
        })
    })
    .await;

    // The server dies between a decision and the message's update (Slack fails every
    // update until then); once restarted it updates the message once.
    let (third_id, _) = park(&cli, &repo);
    wait_until("the third request is posted", || {
        requests(&slack).len() == 3
    })
    .await;
    let third_ts = requests(&slack)[2]["ts"].as_str().unwrap().to_string();
    wait_until("the third request is recorded", || {
        cli.timeline(&third_id)
            .iter()
            .any(|e| e["type"] == "notification.sent")
    })
    .await;
    for _ in 0..50 {
        slack.fail_next("chat.update", "fatal_error");
    }
    let updates_before = slack.calls("chat.update");
    let envelope =
        slack.socket_click(&slack.click(CHANNEL, &third_ts, "UBOB", "flightdeck_approve"));
    slack.wait_for_ack(&envelope, Duration::from_secs(10)).await;
    wait_until("the update was tried", || {
        slack.calls("chat.update") > updates_before
    })
    .await;
    server.kill();
    slack.clear_scripted("chat.update");
    assert!(slack
        .message(CHANNEL, &third_ts)
        .is_some_and(|m| !m.to_string().contains("1 of 2")));
    let failed_updates = slack.calls("chat.update");
    let server = serve(&cli);
    wait_until("the message is updated after the restart", || {
        slack
            .message(CHANNEL, &third_ts)
            .is_some_and(|m| m.to_string().contains("1 of 2"))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        slack.calls("chat.update"),
        failed_updates + 1,
        "updated once after the restart"
    );
    assert_eq!(requests(&slack).len(), 3, "nothing posted twice");
    assert_eq!(
        thread(&slack, &ts)
            .iter()
            .filter(|t| t.contains("Published"))
            .count(),
        1,
        "the first mission's news told once"
    );
    cli.run(&["--as", "@dana", "cancel", &third_id])
        .expect_code(0);
    wait_until("the cancel is in the thread", || {
        thread(&slack, &third_ts)
            .iter()
            .any(|t| t.contains("cancelled"))
    })
    .await;
    drop(server);
    slack.assert_clean();
}

/// A reminder before an approval expires, mentioning who is awaited; a budget block with
/// the command that raises it; both in the request's thread. Two servers share the store:
/// one notifies, the other stands by (and takes clicks all the same).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_thread_tells_reminders_and_blocks() {
    let slack = FakeSlack::start(TOKEN).await;
    slack.enable_socket_mode(APP_TOKEN);
    slack.add_channel(CHANNEL, "approvals");
    let cli = Cli::new(BIN);
    cli.write_config(&config(&slack.api_url()));
    let policy = "[[rule]]\nid = \"echo-needs-bob\"\naction = \"command\"\ncommand_matches = [\"echo *\"]\ndecision = \"approve\"\napprovers = [\"@bob\"]\nexpires_after = \"24s\"\n";
    let repo = TestRepo::with_files(&[
        ("README.md", "# sample\n"),
        (".flightdeck/policy.toml", policy),
        (
            ".flightdeck/missions/t.toml",
            "[budget]\ntool_calls = 1\n[[steps]]\nrun = \"echo one >> notes.txt\"\n[[steps]]\nrun = \"printf two >> notes.txt\"\n",
        ),
    ]);
    repo.commit_all("sample");
    let server = serve(&cli);
    let standby = serve(&cli);
    slack.wait_for_socket(2, Duration::from_secs(30)).await;
    let (id, _) = park(&cli, &repo);
    wait_until("the request is posted", || requests(&slack).len() == 1).await;
    let ts = requests(&slack)[0]["ts"].as_str().unwrap().to_string();
    // 24 s to decide, reminded 18 s before it ends but never before half its time: at 12 s.
    wait_until("the reminder", || {
        thread(&slack, &ts)
            .iter()
            .any(|t| t.contains("expires in") && t.contains("<@UBOB>"))
    })
    .await;
    let envelope = slack.socket_click(&slack.click(CHANNEL, &ts, "UBOB", "flightdeck_approve"));
    slack.wait_for_ack(&envelope, Duration::from_secs(10)).await;
    wait_until("the budget blocks it", || status(&cli, &id) == "blocked").await;
    wait_until("the thread says how to raise the budget", || {
        thread(&slack, &ts).iter().any(|t| {
            t.contains("Blocked")
                && t.contains(&format!("flightdeck budget {id} --add tool_calls="))
        })
    })
    .await;
    assert_eq!(
        thread(&slack, &ts)
            .iter()
            .filter(|t| t.contains("expires in"))
            .count(),
        1,
        "one reminder"
    );
    // Each message once (a redraw records the request's `ref` again). The thread's status
    // is recorded after Slack took it: wait for the record before counting.
    wait_until("the block's message is recorded", || {
        cli.timeline(&id)
            .iter()
            .any(|e| e["type"] == "notification.sent" && e["data"]["kind"] == "blocked")
    })
    .await;
    let sent: std::collections::BTreeSet<(String, String)> = cli
        .timeline(&id)
        .into_iter()
        .filter(|e| e["type"] == "notification.sent")
        .map(|e| {
            (
                e["data"]["kind"].as_str().unwrap_or("").to_string(),
                e["data"]["ref"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    for kind in ["approval_request", "reminder", "blocked"] {
        assert_eq!(
            sent.iter().filter(|(k, _)| k == kind).count(),
            1,
            "{kind} once in {sent:?}"
        );
    }
    assert_eq!(requests(&slack).len(), 1, "one request, not one per server");
    drop(standby);
    drop(server);
    slack.assert_clean();
}

/// A `[slack]` that cannot work stops `serve` before it starts, naming the key.
#[test]
fn a_slack_section_that_cannot_work_is_refused_at_start() {
    let cli = Cli::new(BIN);
    let cases = [
        (config("http://127.0.0.1:9/api"), vec![], "bot_token_env"),
        (
            config("http://127.0.0.1:9/api"),
            vec![
                ("FD_TEST_SLACK_TOKEN", TOKEN),
                ("FD_TEST_SLACK_APP_TOKEN", APP_TOKEN),
            ],
            "signing_secret_env",
        ),
        (
            config("http://127.0.0.1:9/api"),
            vec![
                ("FD_TEST_SLACK_TOKEN", TOKEN),
                ("FD_TEST_SLACK_SECRET", SECRET),
                ("FD_TEST_SLACK_APP_TOKEN", TOKEN),
            ],
            "app_token_env",
        ),
        (
            config("http://127.0.0.1:9/api")
                .replace("app_token_env = \"FD_TEST_SLACK_APP_TOKEN\"\n", "")
                .replace("signing_secret_env = \"FD_TEST_SLACK_SECRET\"\n", ""),
            vec![("FD_TEST_SLACK_TOKEN", TOKEN)],
            "neither app_token_env nor signing_secret_env",
        ),
        (
            config("http://127.0.0.1:9/api").replace(&format!("default = \"{CHANNEL}\""), ""),
            vec![
                ("FD_TEST_SLACK_TOKEN", TOKEN),
                ("FD_TEST_SLACK_SECRET", SECRET),
                ("FD_TEST_SLACK_APP_TOKEN", APP_TOKEN),
            ],
            "channels.default",
        ),
    ];
    for (text, env, key) in cases {
        cli.write_config(&text);
        let out = cli
            .command(&["serve", "--listen", "127.0.0.1:0"])
            .envs(env)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{key}: {stderr}");
        assert!(
            stderr.contains(key) && stderr.contains("hint:"),
            "{key}: {stderr}"
        );
    }
}
