//! Approvals in Slack with the real binary and a fake Slack (HTTP mode): a mission parks →
//! one message with the approval's context → a click by someone not eligible, and one by
//! the requester under their Slack id, are refused with an ephemeral message and record
//! nothing → a forged or stale click is refused before it is read → the first approver
//! approves in Slack, the second on the command line (2 of 2 across channels) → the message
//! shows both and loses its buttons → the mission publishes by itself → a restarted server
//! posts nothing twice.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use flightdeck_testkit::fake_slack::FakeSlack;
use flightdeck_testkit::{Cli, TestRepo};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");
const TOKEN: &str = "xoxb-test-token-1234";
const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const CHANNEL: &str = "CAPPROVALS";

const POLICY: &str = "[[rule]]\nid = \"two-owners\"\naction = \"publish\"\nchanges_any = [\"source\"]\ndecision = \"approve\"\napprovals = 2\napprovers = [\"@bob\", \"@dana\"]\n";

fn config(api_url: &str) -> String {
    format!(
        "[people.carol]\nhandle = \"@carol\"\nslack = \"UCAROL\"\n\
         [people.bob]\nhandle = \"@bob\"\nslack = \"UBOB\"\n\
         [people.dana]\nhandle = \"@dana\"\nslack = \"UDANA\"\n\
         [people.eve]\nhandle = \"@eve\"\nslack = \"UEVE\"\n\
         [slack]\nbot_token_env = \"FD_TEST_SLACK_TOKEN\"\nsigning_secret_env = \"FD_TEST_SLACK_SECRET\"\napi_url = \"{api_url}\"\n\
         [slack.channels]\ndefault = \"{CHANNEL}\"\n"
    )
}

/// `flightdeck serve` with the Slack secrets in its environment; stopped when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(cli: &Cli) -> Server {
        let mut child = cli
            .command(&["--json", "serve", "--listen", "127.0.0.1:0"])
            .env("FD_TEST_SLACK_TOKEN", TOKEN)
            .env("FD_TEST_SLACK_SECRET", SECRET)
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
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// POSTs a click to the server as Slack would (or with the given headers).
async fn post(server: &Server, body: &str, headers: &[(String, String)]) -> u16 {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_is_decided_in_slack_by_the_right_people_and_recorded_as_who_they_are() {
    let slack = FakeSlack::start(TOKEN).await;
    slack.add_channel(CHANNEL, "approvals");
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
    let server = Server::start(&cli);
    let parked = cli.run(&[
        "--json",
        "run",
        "t",
        "--repo",
        repo.path().to_str().unwrap(),
    ]);
    assert_eq!(parked.code(), 3, "{}", parked.stderr());
    let summary = parked.json();
    let id = summary["id"].as_str().unwrap().to_string();
    let approval = summary["pending_approvals"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // One message, with the approval's context and its buttons.
    wait_until("the request is posted", || {
        slack.messages(CHANNEL).len() == 1
    })
    .await;
    let message = slack.messages(CHANNEL)[0].clone();
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

    // Forged and stale clicks are refused before they are read.
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
    assert!(decided(&cli, &id).is_empty());

    // Someone the policy does not name, and the requester under their Slack id: refused
    // in a message only they see; nothing recorded.
    for who in ["UEVE", "UCAROL"] {
        let (body, headers) = slack
            .click(CHANNEL, &ts, who, "flightdeck_approve")
            .signed(SECRET, now());
        assert_eq!(post(&server, &body, &headers).await, 200, "{who}");
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

    // Bob approves in Slack: recorded as Bob, with his Slack id and how it was resolved.
    let (body, headers) = slack
        .click(CHANNEL, &ts, "UBOB", "flightdeck_approve")
        .signed(SECRET, now());
    assert_eq!(post(&server, &body, &headers).await, 200);
    let votes = decided(&cli, &id);
    assert_eq!(votes.len(), 1, "{votes:?}");
    let vote = &votes[0]["data"];
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
    // and the mission goes on by itself.
    cli.run(&["--as", "@dana", "approve", &approval])
        .expect_code(0);
    wait_until("the message closes", || {
        slack
            .message(CHANNEL, &ts)
            .is_some_and(|m| !has_buttons(&m) && m.to_string().contains("Approved"))
    })
    .await;
    wait_until("the mission publishes", || {
        cli.run(&["--json", "show", &id]).json()["status"] == "succeeded"
    })
    .await;
    assert_eq!(slack.calls("chat.postMessage"), 1);
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

    // A deny in Slack fails the mission at once and closes its request.
    let parked = cli.run(&[
        "--json",
        "run",
        "t",
        "--repo",
        repo.path().to_str().unwrap(),
    ]);
    assert_eq!(parked.code(), 3, "{}", parked.stderr());
    let denied_id = parked.json()["id"].as_str().unwrap().to_string();
    wait_until("the second request is posted", || {
        slack.messages(CHANNEL).len() == 2
    })
    .await;
    let second_ts = slack.messages(CHANNEL)[1]["ts"]
        .as_str()
        .unwrap()
        .to_string();
    let (body, headers) = slack
        .click(CHANNEL, &second_ts, "UDANA", "flightdeck_deny")
        .signed(SECRET, now());
    assert_eq!(post(&server, &body, &headers).await, 200);
    assert_eq!(
        cli.run(&["--json", "show", &denied_id]).json()["status"],
        "failed"
    );
    wait_until("the denied request closes", || {
        slack.message(CHANNEL, &second_ts).is_some_and(|m| {
            !has_buttons(&m) && m.to_string().contains("Denied") && m.to_string().contains("@dana")
        })
    })
    .await;

    // A restarted server posts nothing again.
    drop(server);
    let again = Server::start(&cli);
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(again);
    assert_eq!(
        slack.calls("chat.postMessage"),
        2,
        "posted twice after a restart"
    );
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
            vec![("FD_TEST_SLACK_TOKEN", TOKEN)],
            "signing_secret_env",
        ),
        (
            config("http://127.0.0.1:9/api").replace(&format!("default = \"{CHANNEL}\""), ""),
            vec![
                ("FD_TEST_SLACK_TOKEN", TOKEN),
                ("FD_TEST_SLACK_SECRET", SECRET),
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
