#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Socket Mode: `flightdeck_slack::socket_mode::SocketMode` against the fake (connect, a click
//! acknowledged at once and handed out once, rotations, a refused token, shutdown), and the
//! fake's own rules for `apps.connections.open` and acknowledgements, driven by hand.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use flightdeck_slack::blocks::{approval_message, ApprovalRequestView, APPROVE_ACTION_ID};
use flightdeck_slack::interactivity::parse_payload_json;
use flightdeck_slack::socket_mode::{Envelope, Handler, SocketMode};
use flightdeck_slack::{AppToken, BotToken, SlackClient};
use flightdeck_testkit::fake_slack::{BlockActions, FakeSlack, ACK_DEADLINE, CONNECTIONS_OPEN};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::Message;

const BOT_TOKEN: &str = "xoxb-1111-2222-fakebottoken";
const APP_TOKEN: &str = "xapp-1-A0FAKEAPP1-3333-fakeapptoken";
const CHANNEL: &str = "C0APPROVALS";
const WAIT: Duration = Duration::from_secs(5);

fn client(fake: &FakeSlack) -> SlackClient {
    SlackClient::new(&fake.api_url(), BotToken::new(BOT_TOKEN)).unwrap()
}

async fn fake() -> FakeSlack {
    let fake = FakeSlack::start(BOT_TOKEN).await;
    fake.enable_socket_mode(APP_TOKEN);
    fake
}

/// A `SocketMode` running against the fake: envelopes handed out arrive on `envelopes` once
/// `gate` is open; reports are collected.
struct Running {
    envelopes: mpsc::UnboundedReceiver<Envelope>,
    gate: watch::Sender<bool>,
    reports: Arc<Mutex<Vec<String>>>,
    connections: watch::Receiver<u64>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

fn start(fake: &FakeSlack, app_token: &str, gate_open: bool) -> Running {
    let reports = Arc::new(Mutex::new(Vec::new()));
    let sink = reports.clone();
    let socket = SocketMode::new(client(fake), AppToken::new(app_token))
        .with_reporter(move |line| sink.lock().unwrap().push(line.to_string()))
        .with_backoff(Duration::from_millis(50), Duration::from_millis(200));
    let connections = socket.connections();
    let (handed, envelopes) = mpsc::unbounded_channel();
    let (gate, gate_rx) = watch::channel(gate_open);
    let handler: Handler = Arc::new(move |envelope: Envelope| {
        let handed = handed.clone();
        let mut gate = gate_rx.clone();
        Box::pin(async move {
            let _ = gate.wait_for(|open| *open).await;
            let _ = handed.send(envelope);
        })
    });
    let (stop, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(socket.run(handler, async {
        let _ = stop_rx.await;
    }));
    Running {
        envelopes,
        gate,
        reports,
        connections,
        stop,
        task,
    }
}

impl Running {
    async fn next_envelope(&mut self) -> Envelope {
        tokio::time::timeout(WAIT, self.envelopes.recv())
            .await
            .expect("an envelope is handed out")
            .expect("the handler is alive")
    }

    fn reports(&self) -> String {
        self.reports.lock().unwrap().join("\n")
    }

    async fn stop(self) -> String {
        let reports = self.reports.clone();
        self.stop.send(()).unwrap();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the run stops")
            .unwrap();
        let reports = reports.lock().unwrap().join("\n");
        reports
    }
}

/// Posts an approval message and returns a click on its Approve button.
async fn approval_click(fake: &FakeSlack) -> BlockActions {
    let view = ApprovalRequestView {
        approval_id: "apr_01".into(),
        mission_id: "m-1".into(),
        title: "Fix the login redirect".into(),
        mission_url: "https://fd.example.com/missions/m-1".into(),
        ..ApprovalRequestView::default()
    };
    let message = approval_message(&view);
    let posted = client(fake)
        .chat_post_message(CHANNEL, &message.text, &message.blocks, None)
        .await
        .unwrap();
    fake.click(CHANNEL, &posted.ts, "U0ALICE", APPROVE_ACTION_ID)
}

#[tokio::test]
async fn a_click_is_acknowledged_before_it_is_handled_and_its_payload_parses() {
    let fake = fake().await;
    let click = approval_click(&fake).await;
    let mut run = start(&fake, APP_TOKEN, false);
    fake.wait_for_socket(1, WAIT).await;
    run.connections.wait_for(|n| *n == 1).await.unwrap();

    let id = fake.socket_click(&click);
    // The handler is held at its gate: the ack does not wait for it.
    let took = fake.wait_for_ack(&id, WAIT).await;
    assert!(took < ACK_DEADLINE, "{took:?}");
    run.gate.send(true).unwrap();
    let envelope = run.next_envelope().await;
    assert_eq!(envelope.envelope_id, id);
    assert_eq!(envelope.kind, "interactive");
    assert_eq!(envelope.retry_attempt, 0);
    assert_eq!(envelope.payload, click.payload());
    let parsed = parse_payload_json(&serde_json::to_vec(&envelope.payload).unwrap()).unwrap();
    assert_eq!(parsed.approval_id, "apr_01");
    assert!(parsed.approve);
    assert_eq!(parsed.user_id, "U0ALICE");
    assert_eq!(parsed.channel_id, CHANNEL);

    assert_eq!(
        fake.socket_frames(),
        vec![json!({"envelope_id": id}).to_string()]
    );
    assert_eq!(fake.calls(CONNECTIONS_OPEN), 1);
    let reports = run.stop().await;
    assert!(reports.is_empty(), "{reports}");
    fake.assert_clean();
}

#[tokio::test]
async fn a_redelivery_is_acknowledged_but_handed_out_once() {
    let fake = fake().await;
    let click = approval_click(&fake).await;
    let mut run = start(&fake, APP_TOKEN, true);
    fake.wait_for_socket(1, WAIT).await;

    let id = fake.socket_click(&click);
    assert_eq!(run.next_envelope().await.envelope_id, id);
    fake.wait_for_ack(&id, WAIT).await;
    fake.redeliver(&id);
    fake.wait_for_ack(&id, WAIT).await;
    let acks: Vec<String> = fake.acks().into_iter().map(|(id, _)| id).collect();
    assert_eq!(acks, vec![id.clone(), id.clone()]);
    // A second click is a new envelope and is handed out.
    let second = fake.socket_click(&click);
    assert_eq!(run.next_envelope().await.envelope_id, second);
    assert!(
        run.envelopes.try_recv().is_err(),
        "the redelivery was handed out again"
    );
    run.stop().await;
    fake.assert_clean();
}

#[tokio::test]
async fn a_refresh_opens_a_new_connection_and_clicks_still_arrive() {
    let fake = fake().await;
    let click = approval_click(&fake).await;
    let mut run = start(&fake, APP_TOKEN, true);
    fake.wait_for_socket(1, WAIT).await;

    fake.request_refresh();
    fake.wait_for_socket(2, WAIT).await;
    run.connections.wait_for(|n| *n == 2).await.unwrap();
    assert_eq!(fake.calls(CONNECTIONS_OPEN), 2);
    let id = fake.socket_click(&click);
    assert_eq!(run.next_envelope().await.envelope_id, id);
    fake.wait_for_ack(&id, WAIT).await;
    // The old connection is closed by the fake; the client neither reconnects again nor
    // complains.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(fake.open_socket_connections(), 1);
    assert_eq!(fake.calls(CONNECTIONS_OPEN), 2);
    assert!(run.reports().is_empty(), "{}", run.reports());

    // So does a `warning`.
    fake.disconnect_sockets("warning");
    fake.wait_for_socket(3, WAIT).await;
    let id = fake.socket_click(&click);
    assert_eq!(run.next_envelope().await.envelope_id, id);
    run.stop().await;
    fake.assert_clean();
}

#[tokio::test]
async fn a_bot_token_as_the_app_token_is_refused_reported_and_retried() {
    let fake = fake().await;
    let run = start(&fake, BOT_TOKEN, true);
    let deadline = tokio::time::Instant::now() + WAIT;
    while fake.calls(CONNECTIONS_OPEN) < 3 {
        assert!(tokio::time::Instant::now() < deadline, "no retries");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(fake.socket_connections(), 0);
    let violations = fake.violations();
    assert!(
        violations
            .iter()
            .any(|v| v.contains("a `xoxb-` token, not an app-level token")),
        "{violations:?}"
    );
    let reports = run.stop().await;
    assert!(
        reports.contains("Slack refused apps.connections.open: not_allowed_token_type"),
        "{reports}"
    );
    assert!(reports.contains("connecting again in"), "{reports}");
    assert!(!reports.contains(BOT_TOKEN), "{reports}");
    for request in fake.requests() {
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {BOT_TOKEN}").as_str())
        );
        assert!(request.body.is_empty() && request.query.is_empty());
    }
}

#[tokio::test]
async fn an_unknown_app_token_is_invalid_auth_and_a_rate_limit_is_waited_out() {
    let fake = fake().await;
    let refused = client(&fake)
        .apps_connections_open(&AppToken::new("xapp-1-someone-else"))
        .await;
    assert_eq!(
        refused.err().map(|e| e.to_string()),
        Some("Slack refused apps.connections.open: invalid_auth".to_string())
    );
    fake.rate_limit_next(CONNECTIONS_OPEN, 0);
    let url = client(&fake)
        .apps_connections_open(&AppToken::new(APP_TOKEN))
        .await
        .unwrap();
    assert!(
        url.starts_with(&format!(
            "ws://{}/link/?ticket=",
            fake.url().trim_start_matches("http://")
        )),
        "{url}"
    );
    assert!(url.ends_with("&app_id=A0FAKEAPP1"), "{url}");
    assert_eq!(fake.calls(CONNECTIONS_OPEN), 3);
    fake.assert_clean();
}

#[tokio::test]
async fn shutdown_stops_the_client_and_closes_its_connection() {
    let fake = fake().await;
    let run = start(&fake, APP_TOKEN, true);
    fake.wait_for_socket(1, WAIT).await;
    assert_eq!(fake.open_socket_connections(), 1);
    let reports = run.stop().await;
    assert!(reports.is_empty(), "{reports}");
    let deadline = tokio::time::Instant::now() + WAIT;
    while fake.open_socket_connections() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "still connected");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(fake.calls(CONNECTIONS_OPEN), 1);
    fake.assert_clean();
}

/// POSTs to `apps.connections.open` by hand.
async fn open_by_hand(
    fake: &FakeSlack,
    verb: reqwest::Method,
    auth: Option<&str>,
    form: &[(&str, &str)],
) -> Value {
    let mut request =
        reqwest::Client::new().request(verb, format!("{}{CONNECTIONS_OPEN}", fake.api_url()));
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    if !form.is_empty() {
        request = request.form(form);
    }
    let response = request.send().await.unwrap();
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

#[tokio::test]
async fn apps_connections_open_is_held_to_its_documented_rules() {
    let fake = fake().await;
    let app = format!("Bearer {APP_TOKEN}");
    /// verb, Authorization header, form arguments, the error answered, the violation recorded
    type Case<'a> = (
        reqwest::Method,
        Option<String>,
        Vec<(&'a str, &'a str)>,
        &'a str,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            reqwest::Method::POST,
            None,
            vec![],
            "not_authed",
            "no Authorization header",
        ),
        (
            reqwest::Method::POST,
            Some(format!("Bearer {BOT_TOKEN}")),
            vec![],
            "not_allowed_token_type",
            "not an app-level token",
        ),
        (
            reqwest::Method::POST,
            Some(APP_TOKEN.to_string()),
            vec![],
            "invalid_auth",
            "is not `Bearer <token>`",
        ),
        (
            reqwest::Method::POST,
            Some(app.clone()),
            vec![("token", APP_TOKEN)],
            "invalid_arguments",
            "must come only as `Authorization: Bearer`",
        ),
        (
            reqwest::Method::POST,
            Some(app.clone()),
            vec![("app_id", "A0FAKEAPP1")],
            "invalid_arguments",
            "unknown argument `app_id`",
        ),
        (
            reqwest::Method::GET,
            Some(app.clone()),
            vec![],
            "invalid_arguments",
            "GET is not allowed",
        ),
    ];
    for (verb, auth, form, error, violation) in cases {
        let answer = open_by_hand(&fake, verb, auth.as_deref(), &form).await;
        assert_eq!(answer["ok"], false, "{violation}: {answer}");
        assert_eq!(answer["error"], error, "{violation}: {answer}");
        let violations = fake.violations();
        assert!(
            violations.iter().any(|v| v.contains(violation)),
            "{violation:?} not in {violations:?}"
        );
    }
    let answer = open_by_hand(&fake, reqwest::Method::POST, Some(&app), &[]).await;
    assert_eq!(answer["ok"], true, "{answer}");
}

/// A hand-driven client: the fake's acknowledgement rules.
#[tokio::test]
async fn the_fake_holds_acknowledgements_to_the_rules() {
    let fake = fake().await;
    let click = approval_click(&fake).await;
    let url = client(&fake)
        .apps_connections_open(&AppToken::new(APP_TOKEN))
        .await
        .unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    let hello: Value = match ws.next().await {
        Some(Ok(Message::Text(text))) => serde_json::from_str(text.as_str()).unwrap(),
        other => panic!("expected hello, got {other:?}"),
    };
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["num_connections"], 1);
    assert_eq!(hello["connection_info"]["app_id"], "A0FAKEAPP1");
    assert!(hello["debug_info"]["approximate_connection_time"].is_u64());
    fake.wait_for_socket(1, WAIT).await;

    // The ticket was good for one connection.
    assert!(tokio_tungstenite::connect_async(url.as_str())
        .await
        .is_err());
    assert!(fake
        .violations()
        .iter()
        .any(|v| v.contains("a ticket used a second time")));

    let acked = fake.socket_click(&click);
    let envelope: Value = match ws.next().await {
        Some(Ok(Message::Text(text))) => serde_json::from_str(text.as_str()).unwrap(),
        other => panic!("expected an envelope, got {other:?}"),
    };
    assert_eq!(envelope["envelope_id"], acked.as_str());
    assert_eq!(envelope["type"], "interactive");
    assert_eq!(envelope["accepts_response_payload"], false);
    assert_eq!(envelope["retry_attempt"], 0);
    assert_eq!(envelope["retry_reason"], "");
    assert_eq!(envelope["payload"], click.payload());
    // An ack with a payload is allowed.
    let ack = json!({"envelope_id": acked, "payload": {}}).to_string();
    ws.send(Message::text(ack)).await.unwrap();
    fake.wait_for_ack(&acked, WAIT).await;

    let unacked = fake.socket_click(&click);
    for frame in [
        "not json".to_string(),
        json!({"id": "x"}).to_string(),
        json!({"envelope_id": "no-such-envelope"}).to_string(),
        json!({"envelope_id": acked}).to_string(),
        json!({"envelope_id": unacked, "extra": 1}).to_string(),
    ] {
        ws.send(Message::text(frame)).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while fake.socket_frames().len() < 6 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let late = fake.socket_click(&click);
    tokio::time::sleep(ACK_DEADLINE + Duration::from_millis(200)).await;
    let violations = fake.violations().join("\n");
    for needle in [
        "a frame that is not a JSON object: not json",
        "a frame without a string `envelope_id`",
        "an ack for an unknown envelope no-such-envelope",
        &format!("envelope {acked} acknowledged more times than it was delivered"),
        &format!("the ack of {unacked} has an unknown key `extra`"),
        &format!("envelope {late} (attempt 0) is still unacknowledged"),
    ] {
        assert!(
            violations.contains(needle),
            "{needle:?} not in\n{violations}"
        );
    }
    assert!(!violations.contains(&format!("envelope {unacked} (attempt")));
    ws.send(Message::text(json!({"envelope_id": late}).to_string()))
        .await
        .unwrap();
    fake.wait_for_ack(&late, WAIT).await;
    assert!(fake
        .violations()
        .iter()
        .any(|v| v.contains(&format!("envelope {late} was acknowledged after"))));
}
