//! A fake Slack Web API over real HTTP, held to Slack's own description
//! (`specs/slack-web-openapi-v2.json`, Swagger 2.0, from slackapi/slack-api-specs).
//!
//! Methods: `chat.postMessage`, `chat.update`, `chat.postEphemeral`, `users.info`, at
//! `POST /api/{method}` (and `GET` where the description says so: `users.info`).
//!
//! - **Requests**: the arguments (a JSON body, a form body, or the query string) are checked
//!   against the operation's `parameters`: required ones present, types (a form value must
//!   parse as the declared type; a JSON value must have it), enums (none of Slack's
//!   parameters declares one today), no unknown argument, and
//!   the body's content type among the operation's `consumes`. A "JSON-based array …
//!   presented as a URL-encoded string" (`blocks`, `attachments`) may be a real array in a
//!   JSON body and must parse as one in a form body. The description lists `token` as a
//!   parameter; the fake insists it comes only as `Authorization: Bearer xoxb-…` (a token in
//!   the body or the query string is a violation, a missing header is a violation answered
//!   `not_authed`) and equals the configured one (else `invalid_auth`). A request that breaks
//!   the contract is answered `{"ok": false, "error": "invalid_arguments"}` and recorded.
//! - **Responses**: every answer is validated against the operation's `200` schema (success)
//!   or its `default` schema (`ok: false`, whose `error` is an enum) before it is sent; a
//!   mismatch is a violation, answered 500, so the fake cannot drift from Slack's shape.
//! - **State**: messages per channel with increasing `ts`, `chat.update` edits them
//!   (`message_not_found` for an unknown `ts`), ephemerals apart, users registered by the test.
//! - **Scripting**: the next call of a method answers 429 with `Retry-After`, or an error.
//! - **Interactivity**: [`BlockActions`] builds a `block_actions` payload as Slack sends it,
//!   form-encoded and signed ([`sign`]).
//!
//! - **Socket Mode** ([`FakeSlack::enable_socket_mode`]): `POST /api/apps.connections.open`
//!   and the WebSocket endpoint `/link/` on the same listener (see below).
//!
//! The description is read as it is, with one normalization: Slack writes "one of these" as
//! a tuple-form `items: [A, B]` on a schema without `type: array` (`objs_user`, `bot_id`,
//! `tz`); JSON Schema would ignore that, so it is read as `anyOf: [A, B]`.
//!
//! ## Socket Mode
//!
//! `apps.connections.open` is not in the published description (it predates Socket Mode), so
//! it is held to its documented rules instead: `POST`, no arguments (any argument, a `token`
//! one above all, is a violation), the app-level token only as `Authorization: Bearer xapp-…`.
//! A missing header is a violation answered `not_authed`; a bot (or any non-`xapp-`) token is
//! a violation answered `not_allowed_token_type`; an app token other than the enabled one is
//! answered `invalid_auth`. Success is `{"ok": true, "url": "ws://127.0.0.1:<port>/link/?ticket=…
//! &app_id=A0FAKEAPP1"}`; a ticket is good for one connection (an unknown or used one is
//! refused with HTTP 401 and is a violation).
//!
//! On `/link/` the fake greets with `hello` as Slack does, records every text frame the
//! client sends ([`FakeSlack::socket_frames`]) and holds them to the acknowledgement rules: a
//! frame is `{"envelope_id": "<id>"}` (a `payload` key allowed); anything else (not JSON, other
//! keys, an unknown envelope, a second ack of one delivery, a binary frame) is a violation, and
//! so is an ack later than [`ACK_DEADLINE`] or, when [`FakeSlack::violations`] is called, a
//! delivery still unacknowledged after it. The test sends envelopes
//! ([`FakeSlack::socket_click`], [`FakeSlack::redeliver`]) and rotations
//! ([`FakeSlack::request_refresh`], [`FakeSlack::disconnect_sockets`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{json, Map, Value};

use crate::openapi::OpenApi;

/// The methods the fake serves.
pub const METHODS: &[&str] = &[
    "auth.test",
    "chat.postMessage",
    "chat.update",
    "chat.postEphemeral",
    "users.info",
];

/// The Socket Mode method (not in the published description; checked by its documented rules).
pub const CONNECTIONS_OPEN: &str = "apps.connections.open";

/// How long Slack waits for a Socket Mode acknowledgement.
pub const ACK_DEADLINE: Duration = Duration::from_secs(3);

/// How long after a `disconnect` the fake closes the connection.
pub const DISCONNECT_GRACE: Duration = Duration::from_millis(500);

/// The workspace the fake pretends to be.
pub const TEAM_ID: &str = "T0FAKETEAM";
pub const TEAM_DOMAIN: &str = "fake-team";
/// The app and its bot user (the author of every message the fake stores).
pub const API_APP_ID: &str = "A0FAKEAPP1";
pub const BOT_ID: &str = "B0FAKEBOT1";
pub const BOT_USER_ID: &str = "U0FAKEBOT1";

/// The crate's copy of Slack's published description (`specs/`, with its license).
pub fn slack_spec_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/slack-web-openapi-v2.json")
}

/// Slack's Web API description, normalized (see the module docs).
pub struct SlackSpec {
    api: OpenApi,
}

/// How arguments arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/json`: values keep their JSON types.
    Json,
    /// `application/x-www-form-urlencoded` or the query string: every value is a string.
    Form,
}

impl SlackSpec {
    /// Loads a Swagger 2.0 JSON file.
    pub fn load(path: &Path) -> SlackSpec {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let mut root: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        assert_eq!(
            root.get("swagger").and_then(Value::as_str),
            Some("2.0"),
            "{} is not a Swagger 2.0 document",
            path.display()
        );
        normalize_tuple_items(&mut root);
        SlackSpec {
            api: OpenApi::from_value(root),
        }
    }

    /// The description at [`slack_spec_path`], loaded once per process.
    pub fn get() -> &'static SlackSpec {
        static SPEC: OnceLock<SlackSpec> = OnceLock::new();
        SPEC.get_or_init(|| SlackSpec::load(&slack_spec_path()))
    }

    /// The validator over the whole (normalized) document.
    pub fn openapi(&self) -> &OpenApi {
        &self.api
    }

    /// `(HTTP verb, operation)` of `paths./{method}`.
    pub fn operation(&self, method: &str) -> Option<(&str, &Value)> {
        let path = self
            .api
            .root()
            .get("paths")?
            .get(format!("/{method}").as_str())?;
        path.as_object()?
            .iter()
            .find(|(verb, _)| matches!(verb.as_str(), "get" | "post" | "put" | "delete"))
            .map(|(verb, op)| (verb.as_str(), op))
    }

    /// The operation's parameters other than `token`.
    pub fn parameters(&self, method: &str) -> Vec<&Value> {
        self.operation(method)
            .and_then(|(_, op)| op.get("parameters"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|p| p.get("name").and_then(Value::as_str) != Some("token"))
            .collect()
    }

    /// The content types the operation `consumes`.
    pub fn consumes(&self, method: &str) -> Vec<String> {
        self.operation(method)
            .and_then(|(_, op)| op.get("consumes"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    }

    /// The response schema for `status` (`"200"` or `"default"`).
    pub fn response_schema(&self, method: &str, status: &str) -> Option<&Value> {
        self.operation(method)?
            .1
            .get("responses")?
            .get(status)?
            .get("schema")
    }

    /// Checks arguments against the operation's parameters (the token rule included: a
    /// `token` argument is a violation). Returns the violations.
    pub fn check_arguments(
        &self,
        method: &str,
        args: &Map<String, Value>,
        encoding: Encoding,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        if self.operation(method).is_none() {
            problems.push(format!("`{method}` is not in the description"));
            return problems;
        }
        let parameters = self.parameters(method);
        for parameter in &parameters {
            let Some(name) = parameter.get("name").and_then(Value::as_str) else {
                continue;
            };
            let required = parameter.get("required") == Some(&Value::Bool(true));
            match args.get(name) {
                None if required => {
                    problems.push(format!("{method}: missing required argument `{name}`"))
                }
                None => {}
                Some(value) => problems.extend(check_argument(method, parameter, value, encoding)),
            }
        }
        for name in args.keys() {
            if name == "token" {
                problems.push(format!(
                    "{method}: the token was sent as an argument; it must come only as `Authorization: Bearer`"
                ));
            } else if !parameters
                .iter()
                .any(|p| p.get("name").and_then(Value::as_str) == Some(name.as_str()))
            {
                problems.push(format!("{method}: unknown argument `{name}`"));
            }
        }
        problems
    }

    /// Validates a response body: `ok: true` against the `200` schema, anything else against
    /// `default`.
    pub fn check_response(&self, method: &str, body: &Value) -> Vec<String> {
        let status = if body.get("ok") == Some(&Value::Bool(true)) {
            "200"
        } else {
            "default"
        };
        let Some(schema) = self.response_schema(method, status) else {
            return vec![format!(
                "{method}: the description has no {status} response"
            )];
        };
        match self.api.validate_schema(schema, body) {
            Ok(()) => Vec::new(),
            Err(errors) => errors
                .into_iter()
                .map(|e| format!("{method} {status} response: {e}"))
                .collect(),
        }
    }
}

fn check_argument(
    method: &str,
    parameter: &Value,
    value: &Value,
    encoding: Encoding,
) -> Vec<String> {
    let name = parameter.get("name").and_then(Value::as_str).unwrap_or("?");
    let kind = parameter
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("string");
    let json_array = parameter
        .get("description")
        .and_then(Value::as_str)
        .is_some_and(|d| d.contains("JSON-based array"));
    let mut problems = Vec::new();
    let wrong = |found: &Value| {
        format!(
            "{method}: argument `{name}` should be {kind} ({} body), found {found}",
            match encoding {
                Encoding::Json => "JSON",
                Encoding::Form => "form",
            }
        )
    };
    let text = match (encoding, value) {
        (Encoding::Json, Value::Array(_)) if json_array => return problems,
        (Encoding::Json, _) => {
            let fits = match kind {
                "string" => value.is_string(),
                "boolean" => value.is_boolean(),
                "integer" => value.is_i64() || value.is_u64(),
                "number" => value.is_number(),
                _ => true,
            };
            if !fits {
                problems.push(wrong(value));
                return problems;
            }
            value.as_str().map(str::to_string)
        }
        (Encoding::Form, Value::String(text)) => {
            let fits = match kind {
                "boolean" => matches!(text.as_str(), "true" | "false" | "1" | "0"),
                "integer" => text.parse::<i64>().is_ok(),
                "number" => text.parse::<f64>().is_ok(),
                _ => true,
            };
            if !fits {
                problems.push(wrong(value));
                return problems;
            }
            Some(text.clone())
        }
        (Encoding::Form, other) => {
            problems.push(wrong(other));
            return problems;
        }
    };
    if json_array {
        if let Some(text) = &text {
            if !serde_json::from_str::<Value>(text).is_ok_and(|v| v.is_array()) {
                problems.push(format!(
                    "{method}: argument `{name}` should hold a JSON array, found {text:?}"
                ));
            }
        }
    }
    if let Some(options) = parameter.get("enum").and_then(Value::as_array) {
        let as_text = text.clone().unwrap_or_else(|| value.to_string());
        if !options.contains(value)
            && !options.iter().any(|o| match o {
                Value::String(option) => *option == as_text,
                other => serde_json::to_string(other).is_ok_and(|o| o == as_text),
            })
        {
            problems.push(format!(
                "{method}: argument `{name}` is {value}, not one of {}",
                Value::Array(options.clone())
            ));
        }
    }
    problems
}

/// Rewrites `items: [A, B]` on a schema that is not `type: array` as `anyOf: [A, B]`.
fn normalize_tuple_items(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let is_array = map.get("type").and_then(Value::as_str) == Some("array");
            if !is_array
                && map.get("items").is_some_and(Value::is_array)
                && !map.contains_key("anyOf")
            {
                if let Some(items) = map.remove("items") {
                    map.insert("anyOf".to_string(), items);
                }
            }
            for child in map.values_mut() {
                normalize_tuple_items(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_tuple_items),
        _ => {}
    }
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct SlackRequest {
    /// `GET`, `POST`, …
    pub http_method: String,
    pub path: String,
    /// The raw query string (empty when none).
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The Slack method (`chat.postMessage`), when the path names one.
    pub method: Option<String>,
    /// The arguments as parsed (query string and body merged; form values are strings).
    pub args: Map<String, Value>,
}

impl SlackRequest {
    /// The first header with `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A scripted answer for the next call of a method.
#[derive(Debug, Clone)]
enum Scripted {
    RateLimited(u64),
    Error(String),
}

/// A registered user.
#[derive(Debug, Clone)]
struct User {
    id: String,
    name: String,
    email: Option<String>,
}

struct Inner {
    token: String,
    messages: BTreeMap<String, Vec<Value>>,
    ephemerals: Vec<Value>,
    users: BTreeMap<String, User>,
    channels: BTreeMap<String, String>,
    scripted: HashMap<String, VecDeque<Scripted>>,
    requests: Vec<SlackRequest>,
    violations: Vec<String>,
    next_micros: u64,
    addr: SocketAddr,
    socket: SocketState,
}

/// Socket Mode's side of the fake.
#[derive(Default)]
struct SocketState {
    /// The app-level token `apps.connections.open` wants; `None` until enabled.
    app_token: Option<String>,
    /// Every ticket handed out, and whether it was used.
    tickets: HashMap<String, bool>,
    next_ticket: u64,
    next_connection: u64,
    next_envelope: u64,
    connections: Vec<SocketConnection>,
    /// How many connections were greeted.
    greeted: usize,
    envelopes: Vec<SentEnvelope>,
    acks: Vec<(String, Duration)>,
    frames: Vec<String>,
}

struct SocketConnection {
    id: u64,
    to_client: tokio::sync::mpsc::UnboundedSender<Outgoing>,
    open: bool,
    /// Told to disconnect: gets no new envelopes.
    draining: bool,
}

/// What the test asks a connection's task to do.
enum Outgoing {
    Text(String),
    /// Send this `disconnect`, then close after [`DISCONNECT_GRACE`].
    Disconnect(String),
    Close,
}

/// An envelope the fake sent, with each delivery of it.
struct SentEnvelope {
    id: String,
    payload: Value,
    deliveries: Vec<Delivery>,
}

struct Delivery {
    sent_at: Instant,
    acked: Option<Duration>,
}

/// The running fake; stops when dropped.
pub struct FakeSlack {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        self.task.abort();
        if let Ok(inner) = self.inner.lock() {
            for connection in &inner.socket.connections {
                let _ = connection.to_client.send(Outgoing::Close);
            }
        }
    }
}

impl FakeSlack {
    /// Serves on an ephemeral port of 127.0.0.1, wanting `Authorization: Bearer <token>`
    /// (a bot token, `xoxb-…`).
    pub async fn start(token: &str) -> FakeSlack {
        assert!(
            token.starts_with("xoxb-"),
            "the fake wants a bot token (xoxb-…)"
        );
        // Load (and fail) here rather than inside a request.
        let _ = SlackSpec::get();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let inner = Arc::new(Mutex::new(Inner {
            token: token.to_string(),
            messages: BTreeMap::new(),
            ephemerals: Vec::new(),
            users: BTreeMap::new(),
            channels: BTreeMap::new(),
            scripted: HashMap::new(),
            requests: Vec::new(),
            violations: Vec::new(),
            next_micros: 1_700_000_000_000_100,
            addr,
            socket: SocketState::default(),
        }));
        let app = axum::Router::new()
            .route("/link/", axum::routing::get(link))
            .fallback(handle)
            .with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeSlack { addr, inner, task }
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The Web API base a client is configured with (`…/api/`), like `https://slack.com/api/`.
    pub fn api_url(&self) -> String {
        format!("http://{}/api/", self.addr)
    }

    /// Registers a user for `users.info` (and for [`FakeSlack::click`]).
    pub fn add_user(&self, id: &str, name: &str, email: Option<&str>) {
        self.lock().users.insert(
            id.to_string(),
            User {
                id: id.to_string(),
                name: name.to_string(),
                email: email.map(str::to_string),
            },
        );
    }

    /// Registers a channel name (`approvals` or `#approvals`) that resolves to `id`.
    pub fn add_channel(&self, id: &str, name: &str) {
        self.lock()
            .channels
            .insert(name.trim_start_matches('#').to_string(), id.to_string());
    }

    /// The next call of `method` answers 429 with `Retry-After: <seconds>`.
    pub fn rate_limit_next(&self, method: &str, retry_after_seconds: u64) {
        self.script(method, Scripted::RateLimited(retry_after_seconds));
    }

    /// The next call of `method` answers `{"ok": false, "error": <error>}` (held to the
    /// method's error enum in the description).
    pub fn fail_next(&self, method: &str, error: &str) {
        self.script(method, Scripted::Error(error.to_string()));
    }

    /// Forgets what was scripted for `method` and not answered yet.
    pub fn clear_scripted(&self, method: &str) {
        self.lock().scripted.remove(method);
    }

    fn script(&self, method: &str, scripted: Scripted) {
        assert!(
            METHODS.contains(&method) || method == CONNECTIONS_OPEN,
            "the fake does not serve {method}"
        );
        self.lock()
            .scripted
            .entry(method.to_string())
            .or_default()
            .push_back(scripted);
    }

    /// The messages of a channel (by id), oldest first, as stored (the full message, with
    /// `blocks`, `attachments`, `app_id`, `thread_ts` when present).
    pub fn messages(&self, channel: &str) -> Vec<Value> {
        self.lock()
            .messages
            .get(channel)
            .cloned()
            .unwrap_or_default()
    }

    /// One stored message.
    pub fn message(&self, channel: &str, ts: &str) -> Option<Value> {
        self.messages(channel)
            .into_iter()
            .find(|m| m["ts"].as_str() == Some(ts))
    }

    /// Every ephemeral message: `{channel, user, ts, text, blocks?, thread_ts?}`.
    pub fn ephemerals(&self) -> Vec<Value> {
        self.lock().ephemerals.clone()
    }

    pub fn requests(&self) -> Vec<SlackRequest> {
        self.lock().requests.clone()
    }

    /// How many calls of `method` were received.
    pub fn calls(&self, method: &str) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.method.as_deref() == Some(method))
            .count()
    }

    /// Every contract violation seen, in either direction, and every Socket Mode delivery
    /// still unacknowledged after [`ACK_DEADLINE`] now.
    pub fn violations(&self) -> Vec<String> {
        let inner = self.lock();
        let mut violations = inner.violations.clone();
        for envelope in &inner.socket.envelopes {
            for (attempt, delivery) in envelope.deliveries.iter().enumerate() {
                let waited = delivery.sent_at.elapsed();
                if delivery.acked.is_none() && waited > ACK_DEADLINE {
                    violations.push(format!(
                        "Socket Mode: envelope {} (attempt {attempt}) is still unacknowledged after {waited:?}",
                        envelope.id
                    ));
                }
            }
        }
        violations
    }

    /// Panics with the violations, if any.
    pub fn assert_clean(&self) {
        let violations = self.violations();
        assert!(
            violations.is_empty(),
            "Slack contract violations:\n{}",
            violations.join("\n")
        );
    }

    /// A click by `user_id` on the button `action_id` of the stored message `ts` in
    /// `channel`, as Slack would send it; panics when the message or the button is missing.
    /// The clicker's name comes from [`FakeSlack::add_user`] (else the id).
    pub fn click(&self, channel: &str, ts: &str, user_id: &str, action_id: &str) -> BlockActions {
        let message = self
            .message(channel, ts)
            .unwrap_or_else(|| panic!("no message {ts} in {channel}"));
        let (user_name, channel_name) = {
            let inner = self.lock();
            let user_name = inner
                .users
                .get(user_id)
                .map(|u| u.name.clone())
                .unwrap_or_else(|| user_id.to_string());
            let channel_name = inner
                .channels
                .iter()
                .find(|(_, id)| id.as_str() == channel)
                .map(|(name, _)| name.clone())
                .unwrap_or_else(|| "approvals".to_string());
            (user_name, channel_name)
        };
        let mut click = BlockActions::new(user_id, channel, message, action_id);
        click.username = user_name.clone();
        click.name = user_name;
        click.channel_name = channel_name;
        click
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    // -----------------------------------------------------------------------------------------
    // Socket Mode

    /// Turns Socket Mode on: `apps.connections.open` wants `Authorization: Bearer <app_token>`
    /// (an app-level token, `xapp-…`).
    pub fn enable_socket_mode(&self, app_token: &str) {
        assert!(
            app_token.starts_with("xapp-"),
            "Socket Mode wants an app-level token (xapp-…)"
        );
        self.lock().socket.app_token = Some(app_token.to_string());
    }

    /// How many Socket Mode connections were greeted with `hello` so far.
    pub fn socket_connections(&self) -> usize {
        self.lock().socket.greeted
    }

    /// How many Socket Mode connections are open now.
    pub fn open_socket_connections(&self) -> usize {
        self.lock()
            .socket
            .connections
            .iter()
            .filter(|c| c.open)
            .count()
    }

    /// Waits until `n` connections have been greeted; panics after `timeout`.
    pub async fn wait_for_socket(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.socket_connections() < n {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {n} Socket Mode connection(s): {} greeted, {} call(s) of {CONNECTIONS_OPEN}, violations: {:?}",
                self.socket_connections(),
                self.calls(CONNECTIONS_OPEN),
                self.violations()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Sends an `interactive` envelope carrying `click.payload()` to the newest open
    /// connection (not one told to disconnect); returns its `envelope_id`. Panics when there
    /// is no such connection.
    pub fn socket_click(&self, click: &BlockActions) -> String {
        let mut inner = self.lock();
        let socket = &mut inner.socket;
        socket.next_envelope += 1;
        let n = socket.next_envelope;
        let id = format!("{n:08x}-fa4e-4c1a-9e5d-{n:012x}");
        let payload = click.payload();
        let frame = envelope_frame(&id, &payload, 0);
        let connection = newest_connection(socket);
        let _ = connection.to_client.send(Outgoing::Text(frame));
        socket.envelopes.push(SentEnvelope {
            id: id.clone(),
            payload,
            deliveries: vec![Delivery {
                sent_at: Instant::now(),
                acked: None,
            }],
        });
        id
    }

    /// Sends the envelope `envelope_id` again (`retry_attempt` one more, `retry_reason`
    /// `timeout`), as Slack does when it missed the acknowledgement, to the newest open
    /// connection.
    pub fn redeliver(&self, envelope_id: &str) {
        let mut inner = self.lock();
        let socket = &mut inner.socket;
        let Some(index) = socket.envelopes.iter().position(|e| e.id == envelope_id) else {
            panic!("the fake sent no envelope {envelope_id}");
        };
        let attempt = u32::try_from(socket.envelopes[index].deliveries.len()).unwrap_or(u32::MAX);
        let frame = envelope_frame(envelope_id, &socket.envelopes[index].payload, attempt);
        let connection = newest_connection(socket);
        let _ = connection.to_client.send(Outgoing::Text(frame));
        socket.envelopes[index].deliveries.push(Delivery {
            sent_at: Instant::now(),
            acked: None,
        });
    }

    /// Sends `disconnect` `refresh_requested` to every open connection and closes each
    /// [`DISCONNECT_GRACE`] later.
    pub fn request_refresh(&self) {
        self.disconnect_sockets("refresh_requested");
    }

    /// Sends `disconnect` with `reason` (`warning`, `refresh_requested`, `link_disabled`) to
    /// every open connection and closes each [`DISCONNECT_GRACE`] later.
    pub fn disconnect_sockets(&self, reason: &str) {
        let frame = json!({
            "type": "disconnect",
            "reason": reason,
            "debug_info": {"host": "applink-fake-1"},
        })
        .to_string();
        let mut inner = self.lock();
        for connection in inner.socket.connections.iter_mut().filter(|c| c.open) {
            connection.draining = true;
            let _ = connection
                .to_client
                .send(Outgoing::Disconnect(frame.clone()));
        }
    }

    /// Every acknowledgement, in order: the envelope id and how long after its delivery it came.
    pub fn acks(&self) -> Vec<(String, Duration)> {
        self.lock().socket.acks.clone()
    }

    /// Waits until the latest delivery of `envelope_id` is acknowledged and returns how long
    /// that took; panics after `timeout`.
    pub async fn wait_for_ack(&self, envelope_id: &str, timeout: Duration) -> Duration {
        let deadline = Instant::now() + timeout;
        loop {
            let acked = {
                let inner = self.lock();
                inner
                    .socket
                    .envelopes
                    .iter()
                    .find(|e| e.id == envelope_id)
                    .and_then(|e| e.deliveries.last())
                    .and_then(|d| d.acked)
            };
            if let Some(took) = acked {
                return took;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for the ack of {envelope_id}; acks: {:?}, violations: {:?}",
                self.acks(),
                self.violations()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Every text frame clients sent on Socket Mode connections, in order.
    pub fn socket_frames(&self) -> Vec<String> {
        self.lock().socket.frames.clone()
    }
}

/// An `interactive` envelope as Slack sends it.
fn envelope_frame(id: &str, payload: &Value, attempt: u32) -> String {
    json!({
        "envelope_id": id,
        "payload": payload,
        "type": "interactive",
        "accepts_response_payload": false,
        "retry_attempt": attempt,
        "retry_reason": if attempt == 0 { "" } else { "timeout" },
    })
    .to_string()
}

/// The newest open connection not told to disconnect; panics when there is none.
fn newest_connection(socket: &SocketState) -> &SocketConnection {
    socket
        .connections
        .iter()
        .rev()
        .find(|c| c.open && !c.draining)
        .unwrap_or_else(|| panic!("no open Socket Mode connection to send to"))
}

/// What the handler answers.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Reply {
    fn ok(body: Value) -> Reply {
        Reply {
            status: 200,
            headers: Vec::new(),
            body,
        }
    }

    fn error(error: &str) -> Reply {
        Reply::ok(json!({"ok": false, "error": error}))
    }
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut request = SlackRequest {
        http_method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or("").to_string(),
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).to_string(),
                )
            })
            .collect(),
        body: body.to_vec(),
        method: None,
        args: Map::new(),
    };
    let reply = {
        let mut inner = inner.lock().unwrap();
        let reply = serve(&mut inner, &mut request);
        inner.requests.push(request);
        reply
    };
    let mut response = Response::new(Body::from(reply.body.to_string()));
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    for (name, value) in &reply.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

fn serve(inner: &mut Inner, request: &mut SlackRequest) -> Reply {
    if request.path == format!("/api/{CONNECTIONS_OPEN}") {
        return connections_open(inner, request);
    }
    let spec = SlackSpec::get();
    let Some(method) = request
        .path
        .strip_prefix("/api/")
        .filter(|m| METHODS.contains(m))
        .map(str::to_string)
    else {
        inner.violations.push(format!(
            "{} {}: not a method the fake serves ({})",
            request.http_method,
            request.path,
            METHODS.join(", ")
        ));
        return Reply {
            status: 404,
            headers: Vec::new(),
            body: json!({"ok": false, "error": "unknown_method"}),
        };
    };
    request.method = Some(method.clone());
    let mut problems = Vec::new();

    // The verb: POST always works; GET where the description says so.
    let verb = spec
        .operation(&method)
        .map(|(verb, _)| verb)
        .unwrap_or("post");
    let http_method = request.http_method.to_ascii_lowercase();
    if http_method != "post" && http_method != verb {
        problems.push(format!(
            "{method}: {} is not allowed (POST, or {} as described)",
            request.http_method,
            verb.to_ascii_uppercase()
        ));
    }

    // Arguments: the query string, then the body.
    let mut args = Map::new();
    let mut encoding = Encoding::Form;
    let mut token_in_query = false;
    for (name, value) in url::form_urlencoded::parse(request.query.as_bytes()) {
        if name == "token" {
            token_in_query = true;
        }
        args.insert(name.into_owned(), Value::String(value.into_owned()));
    }
    if token_in_query {
        problems.push(format!(
            "{method}: the token was sent in the query string; it must come only as `Authorization: Bearer`"
        ));
        args.remove("token");
    }
    if !request.body.is_empty() {
        let content_type = request
            .header("content-type")
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let consumes = spec.consumes(&method);
        if !consumes
            .iter()
            .any(|c| c.eq_ignore_ascii_case(&content_type))
        {
            problems.push(format!(
                "{method}: a body of type {content_type:?} is not accepted (consumes: {})",
                consumes.join(", ")
            ));
        }
        if content_type == "application/json" {
            encoding = Encoding::Json;
            match serde_json::from_slice::<Value>(&request.body) {
                Ok(Value::Object(object)) => args.extend(object),
                Ok(_) => problems.push(format!("{method}: the JSON body is not an object")),
                Err(e) => problems.push(format!("{method}: the body is not JSON: {e}")),
            }
        } else {
            for (name, value) in url::form_urlencoded::parse(&request.body) {
                args.insert(name.into_owned(), Value::String(value.into_owned()));
            }
        }
    }
    problems.extend(spec.check_arguments(&method, &args, encoding));
    request.args = args.clone();

    // The bearer token.
    let auth = request.header("authorization").map(str::to_string);
    let auth_error = match auth.as_deref().map(|a| a.strip_prefix("Bearer ")) {
        None => {
            problems.push(format!(
                "{method}: no Authorization header; the token must come as `Authorization: Bearer xoxb-…`"
            ));
            Some("not_authed")
        }
        Some(None) => {
            problems.push(format!(
                "{method}: the Authorization header is not `Bearer <token>`"
            ));
            Some("invalid_auth")
        }
        Some(Some(token)) if !token.starts_with("xoxb-") => {
            problems.push(format!(
                "{method}: the bearer token is not a bot token (xoxb-…)"
            ));
            Some("invalid_auth")
        }
        Some(Some(token)) if token != inner.token => Some("invalid_auth"),
        Some(Some(_)) => None,
    };
    let contract_broken = !problems.is_empty();
    inner.violations.extend(problems.iter().cloned());
    if let Some(error) = auth_error {
        return checked(inner, spec, &method, Reply::error(error));
    }
    if contract_broken {
        // Not held to the description: `invalid_arguments` is what Slack answers to a
        // malformed call, but no method's error enum lists it.
        return Reply::ok(json!({
            "ok": false,
            "error": "invalid_arguments",
            "response_metadata": {"messages": problems.iter().map(|p| format!("[ERROR] {p}")).collect::<Vec<_>>()},
        }));
    }

    let scripted = inner
        .scripted
        .get_mut(&method)
        .and_then(VecDeque::pop_front);
    match scripted {
        Some(Scripted::RateLimited(seconds)) => {
            return Reply {
                status: 429,
                headers: vec![("retry-after".to_string(), seconds.to_string())],
                body: json!({"ok": false, "error": "ratelimited"}),
            };
        }
        Some(Scripted::Error(error)) => {
            return checked(inner, spec, &method, Reply::error(&error));
        }
        None => {}
    }

    let reply = match method.as_str() {
        "chat.postMessage" => post_message(inner, &args),
        "chat.update" => update(inner, &args),
        "chat.postEphemeral" => post_ephemeral(inner, &args),
        "users.info" => users_info(inner, &args),
        "auth.test" => Reply::ok(json!({
            "ok": true,
            "url": format!("https://{TEAM_DOMAIN}.slack.com/"),
            "team": "Fake Team",
            "user": "flightdeck",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": false,
        })),
        _ => Reply::error("unknown_method"),
    };
    checked(inner, spec, &method, reply)
}

/// `apps.connections.open`, held to its documented rules (see the module docs).
fn connections_open(inner: &mut Inner, request: &mut SlackRequest) -> Reply {
    const METHOD: &str = CONNECTIONS_OPEN;
    request.method = Some(METHOD.to_string());
    let mut problems = Vec::new();
    if request.http_method != "POST" {
        problems.push(format!(
            "{METHOD}: {} is not allowed (POST)",
            request.http_method
        ));
    }
    let mut args = Map::new();
    for (name, value) in url::form_urlencoded::parse(request.query.as_bytes()) {
        args.insert(name.into_owned(), Value::String(value.into_owned()));
    }
    if !request.body.is_empty() {
        let content_type = request
            .header("content-type")
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match content_type.as_str() {
            "application/json" => match serde_json::from_slice::<Value>(&request.body) {
                Ok(Value::Object(object)) => args.extend(object),
                _ => problems.push(format!("{METHOD}: the JSON body is not an object")),
            },
            "application/x-www-form-urlencoded" => {
                for (name, value) in url::form_urlencoded::parse(&request.body) {
                    args.insert(name.into_owned(), Value::String(value.into_owned()));
                }
            }
            other => problems.push(format!(
                "{METHOD}: a body of type {other:?} is not accepted (application/x-www-form-urlencoded, application/json)"
            )),
        }
    }
    for name in args.keys() {
        if name == "token" {
            problems.push(format!(
                "{METHOD}: the token was sent as an argument; it must come only as `Authorization: Bearer`"
            ));
        } else {
            problems.push(format!(
                "{METHOD}: unknown argument `{name}` (the method takes none)"
            ));
        }
    }
    request.args = args;
    let auth = request.header("authorization").map(str::to_string);
    let auth_error = match auth.as_deref().map(|a| a.strip_prefix("Bearer ")) {
        None => {
            problems.push(format!(
                "{METHOD}: no Authorization header; the app-level token must come as `Authorization: Bearer xapp-…`"
            ));
            Some("not_authed")
        }
        Some(None) => {
            problems.push(format!(
                "{METHOD}: the Authorization header is not `Bearer <token>`"
            ));
            Some("invalid_auth")
        }
        Some(Some(token)) if !token.starts_with("xapp-") => {
            let kind: String = token.chars().take_while(|c| *c != '-').take(8).collect();
            problems.push(format!(
                "{METHOD}: the bearer token is a `{kind}-` token, not an app-level token (xapp-…)"
            ));
            Some("not_allowed_token_type")
        }
        Some(Some(token)) if inner.socket.app_token.as_deref() != Some(token) => {
            Some("invalid_auth")
        }
        Some(Some(_)) => None,
    };
    let contract_broken = !problems.is_empty();
    inner.violations.extend(problems.iter().cloned());
    if let Some(error) = auth_error {
        return Reply::error(error);
    }
    if contract_broken {
        return Reply::error("invalid_arguments");
    }
    let scripted = inner.scripted.get_mut(METHOD).and_then(VecDeque::pop_front);
    match scripted {
        Some(Scripted::RateLimited(seconds)) => {
            return Reply {
                status: 429,
                headers: vec![("retry-after".to_string(), seconds.to_string())],
                body: json!({"ok": false, "error": "ratelimited"}),
            };
        }
        Some(Scripted::Error(error)) => return Reply::error(&error),
        None => {}
    }
    let socket = &mut inner.socket;
    socket.next_ticket += 1;
    let mut random = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random);
    let ticket = format!("{:04}{}", socket.next_ticket, hex::encode(random));
    socket.tickets.insert(ticket.clone(), false);
    Reply::ok(json!({
        "ok": true,
        "url": format!("ws://{}/link/?ticket={ticket}&app_id={API_APP_ID}", inner.addr),
    }))
}

/// `GET /link/?ticket=…`: the Socket Mode WebSocket.
async fn link(
    State(inner): State<Arc<Mutex<Inner>>>,
    uri: Uri,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ticket = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(name, _)| name == "ticket")
        .map(|(_, value)| value.into_owned());
    let refusal = {
        let mut inner = inner.lock().unwrap();
        let refusal = match &upgrade {
            Err(e) => Some((
                StatusCode::BAD_REQUEST,
                format!("Socket Mode: GET /link/ is not a WebSocket upgrade: {e}"),
            )),
            Ok(_) => match ticket
                .as_ref()
                .and_then(|t| inner.socket.tickets.get_mut(t))
            {
                None => Some((
                    StatusCode::UNAUTHORIZED,
                    "Socket Mode: a connection with a ticket apps.connections.open did not hand out".to_string(),
                )),
                Some(used) if *used => Some((
                    StatusCode::UNAUTHORIZED,
                    "Socket Mode: a ticket used a second time (a ticket is good for one connection; call apps.connections.open again)".to_string(),
                )),
                Some(used) => {
                    *used = true;
                    None
                }
            },
        };
        if let Some((_, message)) = &refusal {
            inner.violations.push(message.clone());
        }
        refusal
    };
    match (refusal, upgrade) {
        (None, Ok(upgrade)) => upgrade.on_upgrade(move |socket| socket_session(inner, socket)),
        (Some((status, message)), _) => {
            let mut response = Response::new(Body::from(message));
            *response.status_mut() = status;
            response
        }
        (None, Err(_)) => {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::BAD_REQUEST;
            response
        }
    }
}

/// Sleeps until `deadline`, or forever when there is none.
async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// One Socket Mode connection: `hello`, then the test's envelopes out and the client's frames
/// in, until either side closes.
async fn socket_session(inner: Arc<Mutex<Inner>>, mut socket: WebSocket) {
    let (to_client, mut outgoing) = tokio::sync::mpsc::unbounded_channel();
    let (id, hello) = {
        let mut inner = inner.lock().unwrap();
        let state = &mut inner.socket;
        state.next_connection += 1;
        let id = state.next_connection;
        state.connections.push(SocketConnection {
            id,
            to_client,
            open: true,
            draining: false,
        });
        let open = state.connections.iter().filter(|c| c.open).count();
        let hello = json!({
            "type": "hello",
            "num_connections": open,
            "debug_info": {
                "host": format!("applink-fake-{id}"),
                "build_number": 1,
                "approximate_connection_time": 18060,
            },
            "connection_info": {"app_id": API_APP_ID},
        });
        (id, hello.to_string())
    };
    if socket.send(WsMessage::Text(hello.into())).await.is_ok() {
        inner.lock().unwrap().socket.greeted += 1;
        let mut close_at = None;
        let mut closing = false;
        loop {
            tokio::select! {
                incoming = socket.recv() => match incoming {
                    Some(Ok(WsMessage::Text(text))) => {
                        client_frame(&mut inner.lock().unwrap(), text.as_str());
                    }
                    Some(Ok(WsMessage::Binary(bytes))) => inner.lock().unwrap().violations.push(format!(
                        "Socket Mode: the client sent a binary frame of {} bytes (acks are JSON text)",
                        bytes.len()
                    )),
                    Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
                    Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => break,
                },
                out = outgoing.recv(), if !closing => match out {
                    Some(Outgoing::Text(text)) => {
                        if socket.send(WsMessage::Text(text.into())).await.is_err() {
                            break;
                        }
                    }
                    Some(Outgoing::Disconnect(text)) => {
                        if socket.send(WsMessage::Text(text.into())).await.is_err() {
                            break;
                        }
                        close_at = Some(tokio::time::Instant::now() + DISCONNECT_GRACE);
                    }
                    Some(Outgoing::Close) | None => {
                        close_at = Some(tokio::time::Instant::now());
                    }
                },
                () = until(close_at) => {
                    if closing {
                        // The client did not answer the close: drop the connection.
                        break;
                    }
                    closing = true;
                    if socket.send(WsMessage::Close(None)).await.is_err() {
                        break;
                    }
                    close_at = Some(tokio::time::Instant::now() + Duration::from_secs(1));
                }
            }
        }
    }
    let mut inner = inner.lock().unwrap();
    if let Some(connection) = inner.socket.connections.iter_mut().find(|c| c.id == id) {
        connection.open = false;
    }
}

/// A text frame from the client: must be an acknowledgement of a delivery.
fn client_frame(inner: &mut Inner, text: &str) {
    inner.socket.frames.push(text.to_string());
    let shown: String = text.chars().take(200).collect();
    let object = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => object,
        _ => {
            inner.violations.push(format!(
                "Socket Mode: a frame that is not a JSON object: {shown}"
            ));
            return;
        }
    };
    let Some(id) = object.get("envelope_id").and_then(Value::as_str) else {
        inner.violations.push(format!(
            "Socket Mode: a frame without a string `envelope_id` (an ack is {{\"envelope_id\": …}}): {shown}"
        ));
        return;
    };
    for key in object.keys() {
        if key != "envelope_id" && key != "payload" {
            inner.violations.push(format!(
                "Socket Mode: the ack of {id} has an unknown key `{key}`"
            ));
        }
    }
    let Some(envelope) = inner.socket.envelopes.iter_mut().find(|e| e.id == id) else {
        inner
            .violations
            .push(format!("Socket Mode: an ack for an unknown envelope {id}"));
        return;
    };
    let Some(delivery) = envelope.deliveries.iter_mut().find(|d| d.acked.is_none()) else {
        inner.violations.push(format!(
            "Socket Mode: envelope {id} acknowledged more times than it was delivered"
        ));
        return;
    };
    let took = delivery.sent_at.elapsed();
    delivery.acked = Some(took);
    if took > ACK_DEADLINE {
        inner.violations.push(format!(
            "Socket Mode: envelope {id} was acknowledged after {took:?} (more than {ACK_DEADLINE:?})"
        ));
    }
    inner.socket.acks.push((id.to_string(), took));
}

/// Holds an answer to the description; a mismatch becomes a violation and a 500.
fn checked(inner: &mut Inner, spec: &SlackSpec, method: &str, reply: Reply) -> Reply {
    let problems = spec.check_response(method, &reply.body);
    if problems.is_empty() {
        return reply;
    }
    let message = format!(
        "fake: the answer to {method} breaks the description: {}",
        problems.join("; ")
    );
    inner.violations.push(message.clone());
    Reply {
        status: 500,
        headers: Vec::new(),
        body: json!({"ok": false, "error": "fatal_error", "detail": message}),
    }
}

fn arg_text(args: &Map<String, Value>, name: &str) -> Option<String> {
    match args.get(name)? {
        Value::String(text) => Some(text.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `blocks` / `attachments`: an array, or a string holding one.
fn arg_array(args: &Map<String, Value>, name: &str) -> Option<Value> {
    match args.get(name)? {
        Value::Array(items) => Some(Value::Array(items.clone())),
        Value::String(text) => serde_json::from_str::<Value>(text)
            .ok()
            .filter(Value::is_array),
        _ => None,
    }
}

fn resolve_channel(inner: &Inner, args: &Map<String, Value>) -> Option<String> {
    let given = arg_text(args, "channel")?;
    if let Some(id) = inner.channels.get(given.trim_start_matches('#')) {
        return Some(id.clone());
    }
    let id_like = given.len() >= 9
        && given.starts_with(['C', 'G', 'D'])
        && given
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    id_like.then_some(given)
}

fn next_ts(inner: &mut Inner) -> String {
    let micros = inner.next_micros;
    inner.next_micros += 100;
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

/// The message as `chat.postMessage` answers it: the description's `objs_message` has
/// `additionalProperties: false` without `app_id`, and its `attachments` are file images
/// (`id` required), so both stay out of the answer (they are kept in the store).
fn as_posted(message: &Value) -> Value {
    let mut shown = message.clone();
    if let Some(object) = shown.as_object_mut() {
        object.remove("app_id");
        object.remove("attachments");
    }
    shown
}

fn post_message(inner: &mut Inner, args: &Map<String, Value>) -> Reply {
    let Some(channel) = resolve_channel(inner, args) else {
        return Reply::error("channel_not_found");
    };
    let text = arg_text(args, "text");
    let blocks = arg_array(args, "blocks");
    let attachments = arg_array(args, "attachments");
    if text.is_none() && blocks.is_none() && attachments.is_none() {
        return Reply::error("no_text");
    }
    let ts = next_ts(inner);
    let mut message = json!({
        "type": "message",
        "text": text.unwrap_or_default(),
        "user": BOT_USER_ID,
        "bot_id": BOT_ID,
        "app_id": API_APP_ID,
        "team": TEAM_ID,
        "ts": ts,
    });
    if let Some(blocks) = blocks {
        message["blocks"] = blocks;
    }
    if let Some(attachments) = attachments {
        message["attachments"] = attachments;
    }
    if let Some(thread_ts) = arg_text(args, "thread_ts") {
        message["thread_ts"] = json!(thread_ts);
    }
    inner
        .messages
        .entry(channel.clone())
        .or_default()
        .push(message.clone());
    Reply::ok(json!({"ok": true, "channel": channel, "ts": ts, "message": as_posted(&message)}))
}

fn update(inner: &mut Inner, args: &Map<String, Value>) -> Reply {
    let Some(channel) = resolve_channel(inner, args) else {
        return Reply::error("channel_not_found");
    };
    let ts = arg_text(args, "ts").unwrap_or_default();
    let text = arg_text(args, "text");
    let blocks = arg_array(args, "blocks");
    let attachments = arg_array(args, "attachments");
    let Some(message) = inner
        .messages
        .get_mut(&channel)
        .and_then(|messages| messages.iter_mut().find(|m| m["ts"].as_str() == Some(&ts)))
    else {
        return Reply::error("message_not_found");
    };
    if let Some(text) = text {
        message["text"] = json!(text);
    }
    if let Some(blocks) = blocks {
        message["blocks"] = blocks;
    }
    if let Some(attachments) = attachments {
        message["attachments"] = attachments;
    }
    // The description's `chat.update` answer declares `message.blocks` as an object (it is
    // an array on the wire), so the answer leaves the blocks out; the store keeps them.
    let mut shown = as_posted(message);
    if let Some(object) = shown.as_object_mut() {
        object.remove("blocks");
    }
    let text = message["text"].clone();
    Reply::ok(json!({"ok": true, "channel": channel, "ts": ts, "text": text, "message": shown}))
}

fn post_ephemeral(inner: &mut Inner, args: &Map<String, Value>) -> Reply {
    let Some(channel) = resolve_channel(inner, args) else {
        return Reply::error("channel_not_found");
    };
    let text = arg_text(args, "text");
    let blocks = arg_array(args, "blocks");
    let attachments = arg_array(args, "attachments");
    if text.is_none() && blocks.is_none() && attachments.is_none() {
        return Reply::error("no_text");
    }
    let ts = next_ts(inner);
    let mut ephemeral = json!({
        "channel": channel,
        "user": arg_text(args, "user").unwrap_or_default(),
        "ts": ts,
        "text": text.unwrap_or_default(),
    });
    if let Some(blocks) = blocks {
        ephemeral["blocks"] = blocks;
    }
    if let Some(thread_ts) = arg_text(args, "thread_ts") {
        ephemeral["thread_ts"] = json!(thread_ts);
    }
    inner.ephemerals.push(ephemeral);
    Reply::ok(json!({"ok": true, "message_ts": ts}))
}

fn users_info(inner: &mut Inner, args: &Map<String, Value>) -> Reply {
    let Some(user) = arg_text(args, "user").and_then(|id| inner.users.get(&id)) else {
        return Reply::error("user_not_found");
    };
    let mut profile = json!({
        "real_name": user.name,
        "real_name_normalized": user.name,
        "display_name": user.name,
        "display_name_normalized": user.name,
        "avatar_hash": "g0fake00000",
        "title": "",
        "phone": "",
        "skype": "",
        "status_text": "",
        "status_emoji": "",
        "fields": null,
        "team": TEAM_ID,
    });
    // Slack shows the email only to a token with `users:read.email`.
    if let Some(email) = &user.email {
        profile["email"] = json!(email);
    }
    Reply::ok(json!({
        "ok": true,
        "user": {
            "id": user.id,
            "team_id": TEAM_ID,
            "name": user.name,
            "deleted": false,
            "real_name": user.name,
            "tz": "Europe/Amsterdam",
            "tz_label": "Central European Time",
            "tz_offset": 3600,
            "profile": profile,
            "is_admin": false,
            "is_owner": false,
            "is_primary_owner": false,
            "is_restricted": false,
            "is_ultra_restricted": false,
            "is_bot": false,
            "is_app_user": false,
            "updated": 1_700_000_000,
            "has_2fa": false,
        },
    }))
}

/// `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}` with the signing secret: the value of
/// `X-Slack-Signature`.
pub fn sign(signing_secret: &str, timestamp: &str, body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, signing_secret.as_bytes());
    let tag = ring::hmac::sign(&key, format!("v0:{timestamp}:{body}").as_bytes());
    format!("v0={}", hex::encode(tag.as_ref()))
}

/// The headers Slack sends with a signed form body.
pub fn signed_headers(signing_secret: &str, timestamp: &str, body: &str) -> Vec<(String, String)> {
    vec![
        (
            "content-type".to_string(),
            "application/x-www-form-urlencoded".to_string(),
        ),
        (
            "x-slack-request-timestamp".to_string(),
            timestamp.to_string(),
        ),
        (
            "x-slack-signature".to_string(),
            sign(signing_secret, timestamp, body),
        ),
    ]
}

/// A `block_actions` interaction (a button click), every field public to bend for hostile
/// tests (a forged `user_id`, another `team_id`, another `api_app_id`, …).
#[derive(Debug, Clone)]
pub struct BlockActions {
    pub user_id: String,
    pub username: String,
    pub name: String,
    pub team_id: String,
    pub team_domain: String,
    pub api_app_id: String,
    /// The legacy verification token (any string; flightdeck must not rely on it).
    pub verification_token: String,
    pub channel_id: String,
    pub channel_name: String,
    /// The message the button is on, as stored.
    pub message: Value,
    pub is_ephemeral: bool,
    pub trigger_id: String,
    pub response_url: String,
    pub action_id: String,
    pub block_id: String,
    pub text: String,
    pub value: Option<String>,
    pub style: Option<String>,
    pub action_ts: String,
}

impl BlockActions {
    /// A click by `user_id` on the button `action_id` of `message` (in `channel_id`); the
    /// button's block, text, value and style are read from the message's blocks (an
    /// `actions` block or a section accessory); panics when there is no such button.
    pub fn new(user_id: &str, channel_id: &str, message: Value, action_id: &str) -> BlockActions {
        let (block_id, button) = find_button(&message, action_id).unwrap_or_else(|| {
            panic!("no button with action_id {action_id:?} in the message: {message}")
        });
        BlockActions {
            user_id: user_id.to_string(),
            username: user_id.to_string(),
            name: user_id.to_string(),
            team_id: TEAM_ID.to_string(),
            team_domain: TEAM_DOMAIN.to_string(),
            api_app_id: API_APP_ID.to_string(),
            verification_token: "fakeVerificationToken0".to_string(),
            channel_id: channel_id.to_string(),
            channel_name: "approvals".to_string(),
            is_ephemeral: false,
            trigger_id: "1700000000000.1234567890.0123456789abcdef0123456789abcdef".to_string(),
            response_url: format!(
                "https://hooks.slack.com/actions/{TEAM_ID}/1700000000000/fakeResponseToken"
            ),
            action_id: action_id.to_string(),
            block_id,
            text: button
                .pointer("/text/text")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            value: button
                .get("value")
                .and_then(Value::as_str)
                .map(str::to_string),
            style: button
                .get("style")
                .and_then(Value::as_str)
                .map(str::to_string),
            action_ts: "1700000100.000200".to_string(),
            message,
        }
    }

    /// The payload JSON, field for field as Slack sends it.
    pub fn payload(&self) -> Value {
        let message_ts = self.message["ts"].clone();
        let mut action = json!({
            "action_id": self.action_id,
            "block_id": self.block_id,
            "text": {"type": "plain_text", "text": self.text, "emoji": true},
        });
        if let Some(value) = &self.value {
            action["value"] = json!(value);
        }
        if let Some(style) = &self.style {
            action["style"] = json!(style);
        }
        action["type"] = json!("button");
        action["action_ts"] = json!(self.action_ts);
        json!({
            "type": "block_actions",
            "user": {
                "id": self.user_id,
                "username": self.username,
                "name": self.name,
                "team_id": self.team_id,
            },
            "api_app_id": self.api_app_id,
            "token": self.verification_token,
            "container": {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": self.channel_id,
                "is_ephemeral": self.is_ephemeral,
            },
            "trigger_id": self.trigger_id,
            "team": {"id": self.team_id, "domain": self.team_domain},
            "enterprise": null,
            "is_enterprise_install": false,
            "channel": {"id": self.channel_id, "name": self.channel_name},
            "message": self.message,
            "state": {"values": {}},
            "response_url": self.response_url,
            "actions": [action],
        })
    }

    /// `payload=<urlencoded JSON>`, the body Slack posts.
    pub fn form_body(&self) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &self.payload().to_string())
            .finish()
    }

    /// The body and the headers (content type, timestamp, `v0` signature) of the POST Slack
    /// makes to the interactivity URL.
    pub fn signed(&self, signing_secret: &str, timestamp: u64) -> (String, Vec<(String, String)>) {
        let body = self.form_body();
        let headers = signed_headers(signing_secret, &timestamp.to_string(), &body);
        (body, headers)
    }
}

/// `(block_id, button)` of the button `action_id`.
fn find_button(message: &Value, action_id: &str) -> Option<(String, Value)> {
    for block in message.get("blocks").and_then(Value::as_array)? {
        let block_id = block
            .get("block_id")
            .and_then(Value::as_str)
            .unwrap_or("fake0")
            .to_string();
        let candidates = block
            .get("elements")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .chain(block.get("accessory"));
        for element in candidates {
            if element.get("type").and_then(Value::as_str) == Some("button")
                && element.get("action_id").and_then(Value::as_str) == Some(action_id)
            {
                return Some((block_id, element.clone()));
            }
        }
    }
    None
}
