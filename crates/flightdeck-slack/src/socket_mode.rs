//! Slack Socket Mode: interactivity over a WebSocket the app opens, so no public URL is needed.
//!
//! The protocol, as Slack documents it:
//! - `apps.connections.open` with the app-level token ([`AppToken`], `xapp-…`) answers a
//!   one-time `wss://` URL ([`SlackClient::apps_connections_open`]); the app connects there.
//! - Slack greets with `{"type":"hello",…}`, then sends envelopes
//!   (`{"envelope_id":…,"type":"interactive","payload":{…},"retry_attempt":0,…}`). Each must be
//!   acknowledged within [`ACK_DEADLINE`] by sending `{"envelope_id":…}` ([`ack`]) on the same
//!   socket, or Slack sends it again with `retry_attempt + 1`.
//! - Slack rotates connections: `{"type":"disconnect","reason":"warning"|"refresh_requested"}`
//!   comes shortly before it closes one; `link_disabled` means Socket Mode was turned off for
//!   the app.
//!
//! [`SocketMode::run`] keeps one connection up: it acknowledges every envelope the moment it
//! is read, before anything handles it (a slow handler must not make Slack retry), hands each
//! envelope once to the handler on a task of its own (a redelivery whose id is among the last
//! [`DEDUP_CAPACITY`] handed out is acknowledged and dropped), opens the next connection as
//! soon as Slack announces a rotation (the old one keeps being read until Slack closes it, so
//! nothing in flight is lost), and reconnects after a failure with a backoff of
//! [`INITIAL_BACKOFF`] doubling up to [`MAX_BACKOFF`] ([`LINK_DISABLED_RETRY`] after
//! `link_disabled`). It pings every [`PING_INTERVAL`] and gives a connection up after
//! [`IDLE_TIMEOUT`] of silence (a half-open TCP connection would otherwise look alive
//! forever); Slack's own pings are answered by tungstenite as the socket is read.
//!
//! Library code does not print: whatever goes wrong (a refused token, a dropped connection, a
//! malformed or oversize frame) is passed as one line of text to the reporter
//! ([`SocketMode::with_reporter`]). Nothing reported contains the token or the connection URL
//! (its ticket is a credential too).

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::rustls;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

use crate::client::{AppToken, SlackClient, SlackError};

/// How long Slack waits for an acknowledgement before it sends an envelope again.
pub const ACK_DEADLINE: Duration = Duration::from_secs(3);
/// The largest envelope handed to the handler; a bigger one is acknowledged (so Slack stops
/// sending it) and dropped with a report. Interactivity payloads are a few KiB.
pub const MAX_ENVELOPE_BYTES: usize = 1024 * 1024;
/// The largest WebSocket message read at all; a bigger one ends the connection. Above
/// [`MAX_ENVELOPE_BYTES`] so an oversize envelope can still be read far enough to be
/// acknowledged.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
/// How many envelope ids are remembered to recognise a redelivery.
pub const DEDUP_CAPACITY: usize = 1024;
/// The first wait before reconnecting after a failure; it doubles with each failure in a row.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait before reconnecting after failures.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The wait before trying again after `link_disabled` (Socket Mode turned off for the app:
/// only a person can turn it back on).
pub const LINK_DISABLED_RETRY: Duration = Duration::from_secs(60);
/// The longest the TCP connect, the TLS handshake and the WebSocket handshake may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the client pings.
pub const PING_INTERVAL: Duration = Duration::from_secs(10);
/// A connection from which nothing (not even a pong) was read for this long is given up.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(35);
/// How long a shutdown waits for the connections to send their close frames.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// One envelope Slack sent (anything but `hello` and `disconnect`).
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub envelope_id: String,
    /// `interactive`, `events_api`, `slash_commands`, …
    pub kind: String,
    /// For `interactive`: the same JSON HTTP mode sends form-encoded as `payload=…` (parse it
    /// with [`crate::interactivity::parse_payload_json`]). `null` when the envelope had none.
    pub payload: Value,
    /// 0 for the first delivery.
    pub retry_attempt: u32,
    /// Why Slack sent it again (`timeout`, …); empty for the first delivery.
    pub retry_reason: String,
}

/// What Slack's `hello` says (informational only).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hello {
    pub num_connections: Option<u64>,
    pub app_id: Option<String>,
    pub host: Option<String>,
    /// Roughly how many seconds Slack intends to keep this connection.
    pub approximate_connection_time: Option<u64>,
}

/// Why Slack is about to close a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The connection will be closed soon (Slack's servers rotate).
    Warning,
    /// Slack asks for a new connection.
    RefreshRequested,
    /// Socket Mode was turned off for the app.
    LinkDisabled,
    /// A reason this client does not know (treated as a rotation).
    Other(String),
}

/// A message read from the socket.
#[derive(Debug, Clone, PartialEq)]
pub enum SocketMessage {
    Hello(Hello),
    Disconnect {
        reason: DisconnectReason,
        host: Option<String>,
    },
    Envelope(Envelope),
}

/// Why a frame is not a Socket Mode message. When it still names an envelope
/// ([`MessageError::envelope_id`]), the envelope is acknowledged anyway, so Slack does not
/// send the same malformed frame again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("a frame that is not JSON: {0}")]
    NotJson(String),
    #[error("a frame that is not a JSON object")]
    NotObject,
    #[error("a frame without a string `type`")]
    NoType,
    #[error("a `{0}` frame without an `envelope_id`")]
    NoEnvelopeId(String),
    #[error("a `disconnect` without a string `reason`")]
    NoReason,
    #[error("envelope {envelope_id}: {problem}")]
    BadEnvelope {
        envelope_id: String,
        problem: String,
    },
}

impl MessageError {
    /// The envelope the frame named, if it named one.
    pub fn envelope_id(&self) -> Option<&str> {
        match self {
            MessageError::BadEnvelope { envelope_id, .. } => Some(envelope_id),
            _ => None,
        }
    }
}

/// Why a connection could not be made. Never contains the URL (its ticket is a credential).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("the Socket Mode URL is not a ws:// or wss:// URL with a host")]
    BadUrl,
    #[error("cannot reach {host}:{port}: {message}")]
    Tcp {
        host: String,
        port: u16,
        message: String,
    },
    #[error("cannot set up TLS: {0}")]
    TlsConfig(String),
    #[error("the TLS handshake with {host} failed: {message}")]
    Tls { host: String, message: String },
    #[error("the WebSocket handshake with {host} failed: {message}")]
    Handshake { host: String, message: String },
    #[error("connecting to {host} took longer than {after:?}")]
    Timeout { host: String, after: Duration },
}

/// Parses one text frame.
pub fn parse_message(text: &str) -> Result<SocketMessage, MessageError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| MessageError::NotJson(printable(&e.to_string(), 200)))?;
    let Some(object) = value.as_object() else {
        return Err(MessageError::NotObject);
    };
    let envelope_id = object
        .get("envelope_id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_string);
    let bad = |id: &str, problem: &str| MessageError::BadEnvelope {
        envelope_id: id.to_string(),
        problem: problem.to_string(),
    };
    let Some(kind) = object.get("type").and_then(Value::as_str) else {
        return Err(match &envelope_id {
            Some(id) => bad(id, "no string `type`"),
            None => MessageError::NoType,
        });
    };
    match (kind, envelope_id) {
        ("hello", None) => {
            let number = |pointer: &str| value.pointer(pointer).and_then(Value::as_u64);
            let text = |pointer: &str| {
                value
                    .pointer(pointer)
                    .and_then(Value::as_str)
                    .map(|t| printable(t, 100))
            };
            Ok(SocketMessage::Hello(Hello {
                num_connections: number("/num_connections"),
                app_id: text("/connection_info/app_id"),
                host: text("/debug_info/host"),
                approximate_connection_time: number("/debug_info/approximate_connection_time"),
            }))
        }
        ("disconnect", None) => {
            let reason = match object.get("reason").and_then(Value::as_str) {
                Some("warning") => DisconnectReason::Warning,
                Some("refresh_requested") => DisconnectReason::RefreshRequested,
                Some("link_disabled") => DisconnectReason::LinkDisabled,
                Some(other) => DisconnectReason::Other(printable(other, 64)),
                None => return Err(MessageError::NoReason),
            };
            let host = object
                .get("debug_info")
                .and_then(|d| d.get("host"))
                .and_then(Value::as_str)
                .map(|h| printable(h, 100));
            Ok(SocketMessage::Disconnect { reason, host })
        }
        (kind, None) => Err(MessageError::NoEnvelopeId(printable(kind, 64))),
        (kind, Some(envelope_id)) => {
            let retry_attempt = match object.get("retry_attempt") {
                None | Some(Value::Null) => 0,
                Some(value) => {
                    let attempt = value
                        .as_u64()
                        .ok_or_else(|| bad(&envelope_id, "`retry_attempt` is not a count"))?;
                    u32::try_from(attempt).unwrap_or(u32::MAX)
                }
            };
            let retry_reason = match object.get("retry_reason") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(reason)) => reason.clone(),
                Some(_) => return Err(bad(&envelope_id, "`retry_reason` is not a string")),
            };
            Ok(SocketMessage::Envelope(Envelope {
                kind: kind.to_string(),
                payload: object.get("payload").cloned().unwrap_or(Value::Null),
                retry_attempt,
                retry_reason,
                envelope_id,
            }))
        }
    }
}

/// The `envelope_id` of a frame, read without building the rest (for frames too big to
/// parse whole).
pub fn envelope_id_of(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct IdOnly {
        envelope_id: Option<String>,
    }
    serde_json::from_str::<IdOnly>(text)
        .ok()
        .and_then(|f| f.envelope_id)
        .filter(|id| !id.is_empty())
}

/// The acknowledgement of an envelope: `{"envelope_id":"…"}`.
pub fn ack(envelope_id: &str) -> String {
    json!({ "envelope_id": envelope_id }).to_string()
}

/// The last [`DEDUP_CAPACITY`] (or `capacity`) envelope ids handed out, oldest forgotten first.
#[derive(Debug)]
struct SeenEnvelopes {
    order: VecDeque<String>,
    ids: HashSet<String>,
    capacity: usize,
}

impl SeenEnvelopes {
    fn new(capacity: usize) -> SeenEnvelopes {
        SeenEnvelopes {
            order: VecDeque::new(),
            ids: HashSet::new(),
            capacity: capacity.max(1),
        }
    }

    /// Whether `id` is new; remembers it.
    fn first_time(&mut self, id: &str) -> bool {
        if self.ids.contains(id) {
            return false;
        }
        if self.order.len() >= self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.ids.remove(&oldest);
            }
        }
        self.order.push_back(id.to_string());
        self.ids.insert(id.to_string());
        true
    }
}

/// What an envelope is handed to: called once per envelope, its future run on a task of its
/// own.
pub type Handler = Arc<dyn Fn(Envelope) -> BoxFuture<'static, ()> + Send + Sync>;
/// Where what goes wrong is told, one line at a time.
pub type Reporter = Arc<dyn Fn(&str) + Send + Sync>;

/// A Socket Mode client; see the module docs.
pub struct SocketMode {
    client: SlackClient,
    token: AppToken,
    report: Reporter,
    initial_backoff: Duration,
    max_backoff: Duration,
    link_disabled_retry: Duration,
    connected: watch::Sender<u64>,
}

impl fmt::Debug for SocketMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketMode")
            .field("client", &self.client)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl SocketMode {
    /// A client that opens connections with `client` (only its API URL, HTTP client and
    /// retry settings are used; the bot token is not sent) and `app_token`. Reports go nowhere
    /// until [`SocketMode::with_reporter`].
    pub fn new(client: SlackClient, app_token: AppToken) -> SocketMode {
        SocketMode {
            client,
            token: app_token,
            report: Arc::new(|_| {}),
            initial_backoff: INITIAL_BACKOFF,
            max_backoff: MAX_BACKOFF,
            link_disabled_retry: LINK_DISABLED_RETRY,
            connected: watch::channel(0).0,
        }
    }

    /// Tells `report` what goes wrong (a line each; no token, no URL).
    pub fn with_reporter(mut self, report: impl Fn(&str) + Send + Sync + 'static) -> SocketMode {
        self.report = Arc::new(report);
        self
    }

    /// Reconnects after `initial` doubling up to `max` instead of [`INITIAL_BACKOFF`] and
    /// [`MAX_BACKOFF`] (tests).
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> SocketMode {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// Waits `wait` after `link_disabled` instead of [`LINK_DISABLED_RETRY`] (tests).
    pub fn with_link_disabled_retry(mut self, wait: Duration) -> SocketMode {
        self.link_disabled_retry = wait;
        self
    }

    /// How many connections Slack has greeted (`hello`) since [`SocketMode::run`] started: 0
    /// until the first is up; it goes up by one with each new connection (a rotation, a
    /// reconnect). `wait_for(|n| *n >= 1)` waits until the client is connected.
    pub fn connections(&self) -> watch::Receiver<u64> {
        self.connected.subscribe()
    }

    /// Runs until `shutdown` resolves, then closes its connections (waiting up to a second for
    /// the close frames to go out) and returns. Handler tasks already started keep running.
    pub async fn run(self, handler: Handler, shutdown: impl Future<Output = ()>) {
        let shared = Arc::new(Shared {
            client: self.client,
            token: self.token,
            report: self.report,
            handler,
            seen: Mutex::new(SeenEnvelopes::new(DEDUP_CAPACITY)),
            tls: tls_config(),
        });
        let (events_tx, mut events_rx) = mpsc::unbounded_channel::<(u64, Event)>();
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut next_id = 0u64;
        // The connection the run relies on (0: none, a new one is due).
        let mut current = 0u64;
        let mut backoff = self.initial_backoff;
        let mut reconnect_at = Some(Instant::now());
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                () = at(reconnect_at) => {
                    reconnect_at = None;
                    next_id += 1;
                    current = next_id;
                    tasks.spawn(connection(
                        shared.clone(),
                        current,
                        events_tx.clone(),
                        stop_rx.clone(),
                    ));
                }
                Some((id, event)) = events_rx.recv() => match event {
                    Event::Greeted => {
                        if id == current {
                            backoff = self.initial_backoff;
                        }
                        self.connected.send_modify(|n| *n += 1);
                    }
                    Event::Rotate => {
                        if id == current {
                            // It is replaced now: its end is expected, not a failure.
                            current = 0;
                            reconnect_at = Some(Instant::now());
                        }
                    }
                    Event::Ended(end) => {
                        if id != current {
                            // A connection already replaced: its end is expected.
                            if let End::Failed(why) = &end {
                                (shared.report)(&format!(
                                    "Socket Mode: a replaced connection ended: {why}"
                                ));
                            }
                            continue;
                        }
                        let wait = match &end {
                            End::LinkDisabled => self.link_disabled_retry,
                            End::Open(SlackError::RateLimited {
                                retry_after: Some(after),
                                ..
                            }) => backoff.max(*after),
                            _ => backoff,
                        };
                        if !matches!(end, End::LinkDisabled) {
                            backoff = (backoff * 2).min(self.max_backoff);
                        }
                        current = 0;
                        reconnect_at = Some(Instant::now() + wait);
                        (shared.report)(&format!(
                            "Socket Mode: {}; connecting again in {}",
                            end.describe(),
                            seconds(wait)
                        ));
                    }
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        let _ = stop_tx.send(true);
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        tasks.abort_all();
    }
}

/// Sleeps until `deadline`, or forever when there is none.
async fn at(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn seconds(wait: Duration) -> String {
    format!("{wait:?}")
}

/// What every connection of one run shares.
struct Shared {
    client: SlackClient,
    token: AppToken,
    report: Reporter,
    handler: Handler,
    seen: Mutex<SeenEnvelopes>,
    tls: Result<Arc<rustls::ClientConfig>, String>,
}

/// What a connection tells the run.
enum Event {
    /// Slack said `hello`.
    Greeted,
    /// Slack announced it will close this connection: open the next one now.
    Rotate,
    /// The connection is over.
    Ended(End),
}

/// How a connection ended.
enum End {
    /// `apps.connections.open` failed.
    Open(SlackError),
    Connect(ConnectError),
    /// Slack closed the socket.
    Closed,
    Failed(String),
    LinkDisabled,
    /// The run is shutting down.
    Stopped,
}

impl End {
    fn describe(&self) -> String {
        match self {
            End::Open(e) => format!("cannot open a connection: {e}"),
            End::Connect(e) => format!("cannot connect: {e}"),
            End::Closed => "the connection was closed".to_string(),
            End::Failed(why) => format!("the connection failed: {why}"),
            End::LinkDisabled => {
                "Slack disabled Socket Mode for the app (link_disabled)".to_string()
            }
            End::Stopped => "stopped".to_string(),
        }
    }
}

/// What the connection does after a frame.
enum Step {
    Continue,
    LinkDisabled,
}

async fn connection(
    shared: Arc<Shared>,
    id: u64,
    events: mpsc::UnboundedSender<(u64, Event)>,
    mut stop: watch::Receiver<bool>,
) {
    let end = connect_and_read(&shared, id, &events, &mut stop).await;
    let _ = events.send((id, Event::Ended(end)));
}

/// Resolves when the run is stopping (or gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

async fn connect_and_read(
    shared: &Shared,
    id: u64,
    events: &mpsc::UnboundedSender<(u64, Event)>,
    stop: &mut watch::Receiver<bool>,
) -> End {
    let url = tokio::select! {
        () = stopped(stop) => return End::Stopped,
        url = shared.client.apps_connections_open(&shared.token) => match url {
            Ok(url) => url,
            Err(e) => return End::Open(e),
        },
    };
    let mut ws = tokio::select! {
        () = stopped(stop) => return End::Stopped,
        ws = connect(&url, &shared.tls) => match ws {
            Ok(ws) => ws,
            Err(e) => return End::Connect(e),
        },
    };
    let mut ping = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
    let mut last_read = Instant::now();
    let mut rotating = false;
    loop {
        tokio::select! {
            () = stopped(stop) => {
                let _ = tokio::time::timeout(CLOSE_GRACE / 2, ws.close(None)).await;
                return End::Stopped;
            }
            _ = ping.tick() => {
                if let Err(e) = ws.send(WsMessage::Ping(Default::default())).await {
                    return End::Failed(format!("cannot ping: {e}"));
                }
            }
            () = tokio::time::sleep_until(last_read + IDLE_TIMEOUT) => {
                return End::Failed(format!("nothing was heard for {}", seconds(IDLE_TIMEOUT)));
            }
            frame = ws.next() => {
                last_read = Instant::now();
                match frame {
                    None => return End::Closed,
                    Some(Err(e)) => return End::Failed(e.to_string()),
                    Some(Ok(WsMessage::Text(text))) => {
                        match on_text(shared, id, events, &mut ws, text.as_str(), &mut rotating).await {
                            Ok(Step::Continue) => {}
                            Ok(Step::LinkDisabled) => {
                                let _ = tokio::time::timeout(CLOSE_GRACE / 2, ws.close(None)).await;
                                return End::LinkDisabled;
                            }
                            Err(e) => return End::Failed(format!("cannot acknowledge: {e}")),
                        }
                    }
                    Some(Ok(WsMessage::Binary(bytes))) => (shared.report)(&format!(
                        "Socket Mode: ignored a binary frame of {} bytes",
                        bytes.len()
                    )),
                    Some(Ok(WsMessage::Ping(_))) => {
                        // The pong is queued by tungstenite; send it now.
                        if let Err(e) = ws.flush().await {
                            return End::Failed(format!("cannot answer a ping: {e}"));
                        }
                    }
                    // The reply to a close is sent by tungstenite; the stream ends next.
                    Some(Ok(WsMessage::Pong(_) | WsMessage::Close(_) | WsMessage::Frame(_))) => {}
                }
            }
        }
    }
}

/// Handles one text frame: acknowledges an envelope first, then hands it out once.
async fn on_text<S>(
    shared: &Shared,
    id: u64,
    events: &mpsc::UnboundedSender<(u64, Event)>,
    ws: &mut WebSocketStream<S>,
    text: &str,
    rotating: &mut bool,
) -> Result<Step, tokio_tungstenite::tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let report = |line: String| (shared.report)(&line);
    if text.len() > MAX_ENVELOPE_BYTES {
        match envelope_id_of(text) {
            Some(envelope_id) => {
                ws.send(WsMessage::text(ack(&envelope_id))).await?;
                report(format!(
                    "Socket Mode: dropped envelope {} of {} bytes (more than {MAX_ENVELOPE_BYTES})",
                    printable(&envelope_id, 64),
                    text.len()
                ));
            }
            None => report(format!(
                "Socket Mode: dropped a frame of {} bytes with no envelope id",
                text.len()
            )),
        }
        return Ok(Step::Continue);
    }
    match parse_message(text) {
        Ok(SocketMessage::Hello(_)) => {
            let _ = events.send((id, Event::Greeted));
        }
        Ok(SocketMessage::Disconnect {
            reason: DisconnectReason::LinkDisabled,
            ..
        }) => return Ok(Step::LinkDisabled),
        Ok(SocketMessage::Disconnect { reason, .. }) => {
            if let DisconnectReason::Other(other) = &reason {
                report(format!(
                    "Socket Mode: disconnect for an unknown reason {other:?}; opening a new connection"
                ));
            }
            if !*rotating {
                *rotating = true;
                let _ = events.send((id, Event::Rotate));
            }
        }
        Ok(SocketMessage::Envelope(envelope)) => {
            ws.send(WsMessage::text(ack(&envelope.envelope_id))).await?;
            let first = shared
                .seen
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .first_time(&envelope.envelope_id);
            if first {
                tokio::spawn((shared.handler)(envelope));
            }
        }
        Err(e) => {
            if let Some(envelope_id) = e.envelope_id() {
                ws.send(WsMessage::text(ack(envelope_id))).await?;
            }
            report(format!(
                "Socket Mode: ignored {}",
                printable(&e.to_string(), 300)
            ));
        }
    }
    Ok(Step::Continue)
}

/// A byte stream a WebSocket runs over: plain TCP or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// rustls with the ring provider and the webpki roots (the stack reqwest uses here too).
fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Connects to a `ws://` (plain TCP, for tests) or `wss://` URL.
async fn connect(
    url: &str,
    tls: &Result<Arc<rustls::ClientConfig>, String>,
) -> Result<WebSocketStream<Box<dyn Io>>, ConnectError> {
    let parsed = url::Url::parse(url).map_err(|_| ConnectError::BadUrl)?;
    let secure = match parsed.scheme() {
        "wss" => true,
        "ws" => false,
        _ => return Err(ConnectError::BadUrl),
    };
    let host = match parsed.host() {
        Some(url::Host::Domain(domain)) => domain.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Err(ConnectError::BadUrl),
    };
    let port = parsed.port_or_known_default().ok_or(ConnectError::BadUrl)?;
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| ConnectError::Tcp {
                host: host.clone(),
                port,
                message: e.to_string(),
            })?;
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Io> = if secure {
            let config = tls.clone().map_err(ConnectError::TlsConfig)?;
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|_| ConnectError::BadUrl)?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| ConnectError::Tls {
                    host: host.clone(),
                    message: e.to_string(),
                })?;
            Box::new(tls)
        } else {
            Box::new(tcp)
        };
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_FRAME_BYTES))
            .max_frame_size(Some(MAX_FRAME_BYTES));
        let (ws, _response) =
            tokio_tungstenite::client_async_with_config(url, stream, Some(config))
                .await
                .map_err(|e| ConnectError::Handshake {
                    host: host.clone(),
                    message: e.to_string(),
                })?;
        Ok(ws)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .map_err(|_| ConnectError::Timeout {
            host: host.clone(),
            after: CONNECT_TIMEOUT,
        })?
}

/// `text` cut to `max` characters, control characters replaced (it came from the wire).
fn printable(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::client::BotToken;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const HELLO: &str = r#"{"type":"hello","num_connections":1,"debug_info":{"host":"applink-7fc4fdbb7b-zsvwx","build_number":10,"approximate_connection_time":18060},"connection_info":{"app_id":"A0123APP"}}"#;

    fn interactive(id: &str, attempt: u32) -> String {
        json!({
            "envelope_id": id,
            "payload": {"type": "block_actions", "user": {"id": "U1"}, "actions": []},
            "type": "interactive",
            "accepts_response_payload": false,
            "retry_attempt": attempt,
            "retry_reason": if attempt == 0 { "" } else { "timeout" },
        })
        .to_string()
    }

    #[test]
    fn hello_parses() {
        assert_eq!(
            parse_message(HELLO),
            Ok(SocketMessage::Hello(Hello {
                num_connections: Some(1),
                app_id: Some("A0123APP".into()),
                host: Some("applink-7fc4fdbb7b-zsvwx".into()),
                approximate_connection_time: Some(18060),
            }))
        );
        // Everything in it is informational.
        assert_eq!(
            parse_message(r#"{"type":"hello"}"#),
            Ok(SocketMessage::Hello(Hello::default()))
        );
    }

    #[test]
    fn interactive_envelopes_parse() {
        let Ok(SocketMessage::Envelope(envelope)) =
            parse_message(&interactive("57d6a792-4d35-4d0b-b6aa-3361493e1caf", 0))
        else {
            panic!("an envelope");
        };
        assert_eq!(envelope.envelope_id, "57d6a792-4d35-4d0b-b6aa-3361493e1caf");
        assert_eq!(envelope.kind, "interactive");
        assert_eq!(envelope.payload["type"], "block_actions");
        assert_eq!(envelope.retry_attempt, 0);
        assert_eq!(envelope.retry_reason, "");
        let Ok(SocketMessage::Envelope(retry)) = parse_message(&interactive("e2", 2)) else {
            panic!("an envelope");
        };
        assert_eq!(
            (retry.retry_attempt, retry.retry_reason.as_str()),
            (2, "timeout")
        );
        // Optional fields may be missing.
        assert_eq!(
            parse_message(r#"{"envelope_id":"e3","type":"events_api"}"#),
            Ok(SocketMessage::Envelope(Envelope {
                envelope_id: "e3".into(),
                kind: "events_api".into(),
                payload: Value::Null,
                retry_attempt: 0,
                retry_reason: String::new(),
            }))
        );
    }

    #[test]
    fn disconnects_parse() {
        for (reason, expected) in [
            ("warning", DisconnectReason::Warning),
            ("refresh_requested", DisconnectReason::RefreshRequested),
            ("link_disabled", DisconnectReason::LinkDisabled),
            ("too_many", DisconnectReason::Other("too_many".into())),
        ] {
            let frame = json!({"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-1"}});
            assert_eq!(
                parse_message(&frame.to_string()),
                Ok(SocketMessage::Disconnect {
                    reason: expected,
                    host: Some("applink-1".into())
                })
            );
        }
    }

    #[test]
    fn malformed_frames_are_errors_that_keep_the_envelope_id() {
        let cases: Vec<(&str, MessageError)> = vec![
            ("{", MessageError::NotJson(String::new())),
            ("[1]", MessageError::NotObject),
            ("{}", MessageError::NoType),
            (r#"{"type":7}"#, MessageError::NoType),
            (
                r#"{"type":"interactive","payload":{}}"#,
                MessageError::NoEnvelopeId("interactive".into()),
            ),
            (
                r#"{"type":"interactive","envelope_id":""}"#,
                MessageError::NoEnvelopeId("interactive".into()),
            ),
            (r#"{"type":"disconnect"}"#, MessageError::NoReason),
            (
                r#"{"envelope_id":"e1"}"#,
                MessageError::BadEnvelope {
                    envelope_id: "e1".into(),
                    problem: "no string `type`".into(),
                },
            ),
            (
                r#"{"envelope_id":"e2","type":"interactive","retry_attempt":"one"}"#,
                MessageError::BadEnvelope {
                    envelope_id: "e2".into(),
                    problem: "`retry_attempt` is not a count".into(),
                },
            ),
            (
                r#"{"envelope_id":"e3","type":"interactive","retry_reason":1}"#,
                MessageError::BadEnvelope {
                    envelope_id: "e3".into(),
                    problem: "`retry_reason` is not a string".into(),
                },
            ),
        ];
        for (frame, expected) in cases {
            let got = parse_message(frame);
            match (&got, &expected) {
                (Err(MessageError::NotJson(_)), MessageError::NotJson(_)) => {}
                _ => assert_eq!(got, Err(expected), "{frame}"),
            }
        }
        assert_eq!(
            parse_message(r#"{"envelope_id":"e1"}"#)
                .err()
                .as_ref()
                .and_then(MessageError::envelope_id),
            Some("e1")
        );
        // Text from the wire is shortened and printable in errors.
        let frame = json!({"type": format!("x\n{}", "y".repeat(500))}).to_string();
        let Err(MessageError::NoEnvelopeId(kind)) = parse_message(&frame) else {
            panic!("NoEnvelopeId");
        };
        assert_eq!(kind.chars().count(), 64);
        assert!(kind.starts_with("x?"));
    }

    #[test]
    fn the_ack_is_the_envelope_id_alone() {
        assert_eq!(ack("57d6a792-4d35"), r#"{"envelope_id":"57d6a792-4d35"}"#);
        assert_eq!(ack("a\"b"), r#"{"envelope_id":"a\"b"}"#);
        assert_eq!(envelope_id_of(&interactive("e9", 0)), Some("e9".into()));
        assert_eq!(envelope_id_of("not json"), None);
        assert_eq!(envelope_id_of(r#"{"envelope_id":""}"#), None);
    }

    #[test]
    fn redeliveries_are_recognised_within_the_capacity() {
        let mut seen = SeenEnvelopes::new(3);
        assert!(seen.first_time("a"));
        assert!(!seen.first_time("a"));
        assert!(seen.first_time("b"));
        assert!(seen.first_time("c"));
        assert!(!seen.first_time("a"));
        assert!(seen.first_time("d")); // forgets "a"
        assert!(seen.first_time("a"));
        assert!(!seen.first_time("d"));
        assert_eq!(seen.order.len(), 3);
        assert_eq!(seen.ids.len(), 3);
    }

    #[test]
    fn tls_is_rustls_with_ring_and_the_webpki_roots() {
        let config = tls_config().unwrap();
        assert!(config.crypto_provider().cipher_suites.len() > 1);
        assert!(!webpki_roots::TLS_SERVER_ROOTS.is_empty());
    }

    #[tokio::test]
    async fn bad_urls_are_refused_before_connecting() {
        let tls = tls_config();
        for url in [
            "https://slack.com/link",
            "not a url",
            "ftp://example.com/",
            "ws://",
        ] {
            assert_eq!(
                connect(url, &tls).await.err(),
                Some(ConnectError::BadUrl),
                "{url}"
            );
        }
    }

    #[test]
    fn tokens_are_not_shown() {
        let token = AppToken::new("xapp-1-secret");
        assert!(!format!("{token:?} {token}").contains("secret"));
        let client = SlackClient::new("http://127.0.0.1:1/api", BotToken::new("xoxb-1")).unwrap();
        let socket = SocketMode::new(client, token);
        assert!(!format!("{socket:?}").contains("secret"));
    }

    /// Answers every HTTP request on `listener` with `apps.connections.open`'s answer
    /// pointing at `ws_port`, and sends each request's head to `heads`.
    async fn serve_open(listener: TcpListener, ws_port: u16, heads: mpsc::UnboundedSender<String>) {
        let mut ticket = 0;
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            ticket += 1;
            let body = json!({
                "ok": true,
                "url": format!("ws://127.0.0.1:{ws_port}/link/?ticket=t{ticket}&app_id=A1"),
            })
            .to_string();
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
            let _ = heads.send(String::from_utf8_lossy(&head).to_string());
        }
    }

    async fn next_text(ws: &mut WebSocketStream<tokio::net::TcpStream>) -> String {
        loop {
            match ws.next().await {
                Some(Ok(WsMessage::Text(text))) => return text.as_str().to_string(),
                Some(Ok(_)) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn acks_first_hands_out_once_drops_oversize_and_survives_link_disabled() {
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ws_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ws_port = ws_listener.local_addr().unwrap().port();
        let api = format!("http://{}/api", http.local_addr().unwrap());
        let (heads_tx, mut heads) = mpsc::unbounded_channel();
        tokio::spawn(serve_open(http, ws_port, heads_tx));

        let client = SlackClient::new(&api, BotToken::new("xoxb-bot")).unwrap();
        let reports = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = reports.clone();
        let socket = SocketMode::new(client, AppToken::new("xapp-1-test"))
            .with_reporter(move |line| sink.lock().unwrap().push(line.to_string()))
            .with_link_disabled_retry(Duration::from_millis(50));
        let mut connections = socket.connections();
        let (handed_tx, mut handed) = mpsc::unbounded_channel();
        let handler: Handler = Arc::new(move |envelope: Envelope| {
            let handed_tx = handed_tx.clone();
            Box::pin(async move {
                let _ = handed_tx.send(envelope);
            })
        });
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let run = tokio::spawn(socket.run(handler, async {
            let _ = stop_rx.await;
        }));

        let test = async {
            // The first connection.
            let head = heads.recv().await.unwrap();
            assert!(
                head.starts_with("POST /api/apps.connections.open "),
                "{head}"
            );
            assert!(
                head.to_ascii_lowercase()
                    .contains("authorization: bearer xapp-1-test\r\n"),
                "{head}"
            );
            let (tcp, _) = ws_listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            ws.send(WsMessage::text(HELLO)).await.unwrap();
            ws.send(WsMessage::text(interactive("e-1", 0)))
                .await
                .unwrap();
            assert_eq!(next_text(&mut ws).await, ack("e-1"));
            let envelope = handed.recv().await.unwrap();
            assert_eq!(envelope.envelope_id, "e-1");
            connections.wait_for(|n| *n == 1).await.unwrap();

            // A redelivery is acknowledged, not handed out again.
            ws.send(WsMessage::text(interactive("e-1", 1)))
                .await
                .unwrap();
            assert_eq!(next_text(&mut ws).await, ack("e-1"));
            // Oversize: acknowledged and dropped.
            let mut big: Value = serde_json::from_str(&interactive("e-big", 0)).unwrap();
            big["payload"]["blob"] = json!("x".repeat(MAX_ENVELOPE_BYTES));
            ws.send(WsMessage::text(big.to_string())).await.unwrap();
            assert_eq!(next_text(&mut ws).await, ack("e-big"));
            // Malformed: acknowledged when it names an envelope, reported either way.
            ws.send(WsMessage::text(r#"{"type":"interactive"}"#))
                .await
                .unwrap();
            ws.send(WsMessage::text("not json")).await.unwrap();
            ws.send(WsMessage::binary(vec![1u8, 2, 3])).await.unwrap();
            ws.send(WsMessage::text(
                r#"{"envelope_id":"e-bad","type":"interactive","retry_attempt":-1}"#,
            ))
            .await
            .unwrap();
            assert_eq!(next_text(&mut ws).await, ack("e-bad"));
            ws.send(WsMessage::text(interactive("e-2", 0)))
                .await
                .unwrap();
            assert_eq!(next_text(&mut ws).await, ack("e-2"));
            assert_eq!(handed.recv().await.unwrap().envelope_id, "e-2");

            // link_disabled: the client closes, waits, and opens a new connection.
            ws.send(WsMessage::text(
                r#"{"type":"disconnect","reason":"link_disabled","debug_info":{"host":"h"}}"#,
            ))
            .await
            .unwrap();
            while let Some(Ok(frame)) = ws.next().await {
                assert!(!frame.is_text(), "{frame:?}");
            }
            let _ = heads.recv().await.unwrap();
            let (tcp, _) = ws_listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            ws.send(WsMessage::text(HELLO)).await.unwrap();
            connections.wait_for(|n| *n == 2).await.unwrap();

            // Shutdown closes the socket.
            stop_tx.send(()).unwrap();
            loop {
                match ws.next().await {
                    Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), test)
            .await
            .expect("the exchange finishes");
        tokio::time::timeout(Duration::from_secs(5), run)
            .await
            .expect("run returns")
            .unwrap();
        assert!(handed.try_recv().is_err(), "nothing else was handed out");
        let reports = reports.lock().unwrap().join("\n");
        for needle in [
            "dropped envelope e-big",
            "ignored a `interactive` frame without an `envelope_id`",
            "ignored a frame that is not JSON",
            "binary frame of 3 bytes",
            "envelope e-bad: `retry_attempt` is not a count",
            "link_disabled",
            "connecting again in 50ms",
        ] {
            assert!(reports.contains(needle), "{needle:?} not in\n{reports}");
        }
        assert!(!reports.contains("xapp-1-test"), "{reports}");
        assert!(!reports.contains("ticket"), "{reports}");
    }
}
