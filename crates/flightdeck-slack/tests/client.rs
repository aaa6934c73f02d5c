//! The client against a tiny HTTP/1.1 server written here: one programmed reply per request,
//! every request recorded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flightdeck_slack::client::{BotToken, SlackClient, SlackError, Sleeper, MAX_RETRIES};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const TOKEN: &str = "xoxb-1234-5678-SECRETTOKEN";

#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

fn ok(body: Value) -> Reply {
    Reply {
        status: 200,
        headers: vec![],
        body: body.to_string(),
        delay: Duration::ZERO,
    }
}

fn rate_limited(retry_after: Option<&str>) -> Reply {
    Reply {
        status: 429,
        headers: retry_after
            .map(|s| ("Retry-After", s.to_string()))
            .into_iter()
            .collect(),
        body: json!({"ok": false, "error": "ratelimited"}).to_string(),
        delay: Duration::ZERO,
    }
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
}

struct Server {
    url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Server {
    async fn start(replies: Vec<Reply>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/api", listener.local_addr().expect("addr"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let queue = Arc::new(Mutex::new(VecDeque::from(replies)));
        let recorded = requests.clone();
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
                        let Ok(n) = stream.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
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
                        let Ok(n) = stream.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let body = buf[head_end..head_end + length].to_vec();
                    recorded.lock().expect("lock").push(Recorded {
                        method,
                        target,
                        headers,
                        body,
                    });
                    let reply = queue.lock().expect("lock").pop_front().unwrap_or(Reply {
                        status: 500,
                        headers: vec![],
                        body: "no reply programmed".into(),
                        delay: Duration::ZERO,
                    });
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
        Server { url, requests }
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("lock").clone()
    }
}

#[derive(Default)]
struct RecordingSleeper(Mutex<Vec<Duration>>);

impl Sleeper for RecordingSleeper {
    fn sleep(
        &self,
        duration: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        self.0.lock().expect("lock").push(duration);
        Box::pin(async {})
    }
}

fn client(server: &Server) -> (SlackClient, Arc<RecordingSleeper>) {
    let sleeper = Arc::new(RecordingSleeper::default());
    let client = SlackClient::new(&server.url, BotToken::new(TOKEN))
        .expect("client")
        .with_sleeper(sleeper.clone());
    (client, sleeper)
}

fn assert_token_only_in_the_header(request: &Recorded) {
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert!(!request.target.contains("xoxb"), "{}", request.target);
    assert!(!String::from_utf8_lossy(&request.body).contains("xoxb"));
    assert_eq!(
        request
            .headers
            .iter()
            .filter(|(_, v)| v.contains(TOKEN))
            .count(),
        1
    );
}

#[tokio::test]
async fn post_message_sends_json_with_a_bearer_token() {
    let server = Server::start(vec![
        ok(json!({"ok": true, "channel": "C0123ABCD", "ts": "1700000000.000100", "message": {}})),
        ok(json!({"ok": true, "channel": "C0123ABCD", "ts": "1700000000.000200"})),
    ])
    .await;
    let (client, _) = client(&server);
    let blocks = vec![json!({"type": "section", "text": {"type": "mrkdwn", "text": "hi"}})];
    let posted = client
        .chat_post_message("C0123ABCD", "fallback", &blocks, None)
        .await
        .expect("posted");
    assert_eq!(posted.channel, "C0123ABCD");
    assert_eq!(posted.ts, "1700000000.000100");
    client
        .chat_post_message("C0123ABCD", "in the thread", &[], Some("1700000000.000100"))
        .await
        .expect("posted in thread");
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].target, "/api/chat.postMessage");
    assert_eq!(
        requests[0].header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(
        requests[0].json(),
        json!({"channel": "C0123ABCD", "text": "fallback", "blocks": blocks})
    );
    assert_eq!(
        requests[1].json(),
        json!({"channel": "C0123ABCD", "text": "in the thread", "thread_ts": "1700000000.000100"})
    );
    for request in &requests {
        assert_token_only_in_the_header(request);
    }
}

#[tokio::test]
async fn update_ephemeral_and_users_info() {
    let server = Server::start(vec![
        ok(json!({"ok": true, "channel": "C1", "ts": "1.2", "text": "t"})),
        ok(json!({"ok": true, "message_ts": "1.3"})),
        ok(json!({"ok": true, "user": {"id": "U1", "profile": {"email": "alice@acme.com"}}})),
        ok(json!({"ok": true, "user": {"id": "U2", "profile": {}}})),
    ])
    .await;
    let (client, _) = client(&server);
    client
        .chat_update("C1", "1.2", "updated", &[])
        .await
        .expect("updated");
    let ts = client
        .chat_post_ephemeral("C1", "U9", "you may not approve")
        .await
        .expect("ephemeral");
    assert_eq!(ts, "1.3");
    assert_eq!(
        client.users_info("U1").await.expect("info"),
        Some("alice@acme.com".to_string())
    );
    assert_eq!(client.users_info("U2&x=y").await.expect("info"), None);
    let requests = server.requests();
    assert_eq!(requests[0].target, "/api/chat.update");
    assert_eq!(
        requests[0].json(),
        json!({"channel": "C1", "ts": "1.2", "text": "updated", "blocks": []})
    );
    assert_eq!(requests[1].target, "/api/chat.postEphemeral");
    assert_eq!(
        requests[1].json(),
        json!({"channel": "C1", "user": "U9", "text": "you may not approve"})
    );
    assert_eq!(requests[2].method, "GET");
    assert_eq!(requests[2].target, "/api/users.info?user=U1");
    assert_eq!(requests[3].target, "/api/users.info?user=U2%26x%3Dy");
    for request in &requests {
        assert_token_only_in_the_header(request);
    }
}

#[tokio::test]
async fn ok_false_is_a_typed_error_without_the_token() {
    let server = Server::start(vec![
        ok(json!({"ok": false, "error": "channel_not_found"})),
        ok(json!({"ok": false, "error": format!("invalid_auth for {TOKEN}")})),
        ok(json!({"nothing": true})),
    ])
    .await;
    let (client, _) = client(&server);
    let err = client
        .chat_post_message("C404", "x", &[], None)
        .await
        .expect_err("refused");
    assert_eq!(
        err,
        SlackError::Api {
            method: "chat.postMessage".into(),
            error: "channel_not_found".into()
        }
    );
    let err = client
        .chat_update("C1", "1.2", "x", &[])
        .await
        .expect_err("refused");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(TOKEN), "{shown}");
    assert!(shown.contains("invalid_auth for [REDACTED]"), "{shown}");
    let err = client
        .chat_post_ephemeral("C1", "U1", "x")
        .await
        .expect_err("no ok");
    assert!(matches!(err, SlackError::BadResponse { .. }), "{err:?}");
    let debug = format!("{client:?}");
    assert!(
        !debug.contains(TOKEN) && !debug.contains("SECRET"),
        "{debug}"
    );
    assert!(debug.contains("redacted"), "{debug}");
}

#[tokio::test]
async fn rate_limits_are_waited_out_as_slack_asks() {
    let server = Server::start(vec![
        rate_limited(Some("2")),
        rate_limited(None),
        ok(json!({"ok": true, "channel": "C1", "ts": "1.1"})),
    ])
    .await;
    let (client, sleeper) = client(&server);
    let posted = client
        .chat_post_message("C1", "x", &[], None)
        .await
        .expect("posted");
    assert_eq!(posted.ts, "1.1");
    assert_eq!(server.requests().len(), 3);
    assert_eq!(
        *sleeper.0.lock().expect("lock"),
        vec![Duration::from_secs(2), Duration::from_secs(1)]
    );
}

#[tokio::test]
async fn rate_limits_give_up_after_three_retries() {
    let server = Server::start(vec![rate_limited(Some("1")); 5]).await;
    let (client, sleeper) = client(&server);
    let err = client
        .chat_post_message("C1", "x", &[], None)
        .await
        .expect_err("limited");
    assert_eq!(
        err,
        SlackError::RateLimited {
            method: "chat.postMessage".into(),
            attempts: MAX_RETRIES + 1,
            retry_after: Some(Duration::from_secs(1)),
        }
    );
    assert_eq!(server.requests().len(), 4);
    assert_eq!(sleeper.0.lock().expect("lock").len(), 3);
}

#[tokio::test]
async fn a_long_retry_after_is_returned_not_waited() {
    let server = Server::start(vec![rate_limited(Some("3600"))]).await;
    let (client, sleeper) = client(&server);
    let err = client
        .chat_update("C1", "1.1", "x", &[])
        .await
        .expect_err("limited");
    assert_eq!(
        err,
        SlackError::RateLimited {
            method: "chat.update".into(),
            attempts: 1,
            retry_after: Some(Duration::from_secs(3600)),
        }
    );
    assert!(sleeper.0.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn server_errors_are_not_retried() {
    let server = Server::start(vec![Reply {
        status: 503,
        headers: vec![],
        body: "busy".into(),
        delay: Duration::ZERO,
    }])
    .await;
    let (client, _) = client(&server);
    let err = client
        .chat_post_message("C1", "x", &[], None)
        .await
        .expect_err("503");
    assert_eq!(
        err,
        SlackError::Http {
            method: "chat.postMessage".into(),
            status: 503
        }
    );
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn slow_answers_time_out() {
    let mut slow = ok(json!({"ok": true, "channel": "C1", "ts": "1.1"}));
    slow.delay = Duration::from_secs(5);
    let server = Server::start(vec![slow]).await;
    let (client, _) = client(&server);
    let client = client.with_timeout(Duration::from_millis(200));
    let err = client
        .chat_post_message("C1", "x", &[], None)
        .await
        .expect_err("timeout");
    assert_eq!(
        err,
        SlackError::Timeout {
            method: "chat.postMessage".into(),
            after: Duration::from_millis(200)
        }
    );
}

#[tokio::test]
async fn bad_configuration_is_refused_up_front() {
    assert_eq!(
        SlackClient::new("ftp://slack.com/api", BotToken::new(TOKEN)).map(|_| ()),
        Err(SlackError::InvalidApiUrl)
    );
    assert_eq!(
        SlackClient::new("not a url", BotToken::new(TOKEN)).map(|_| ()),
        Err(SlackError::InvalidApiUrl)
    );
    let err = SlackClient::new("https://slack.com/api", BotToken::new("xoxb-\nINJECT")).map(|_| ());
    assert_eq!(err, Err(SlackError::InvalidToken));
    assert!(!format!("{:?}", BotToken::new(TOKEN)).contains("xoxb"));
}

#[tokio::test]
async fn an_unreachable_server_is_a_connection_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/api", listener.local_addr().expect("addr"));
    drop(listener);
    let client = SlackClient::new(&url, BotToken::new(TOKEN)).expect("client");
    let err = client
        .chat_post_message("C1", "x", &[], None)
        .await
        .expect_err("refused");
    assert!(matches!(err, SlackError::Connection { .. }), "{err:?}");
    assert!(!format!("{err}").contains(TOKEN));
}
