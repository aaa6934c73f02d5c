//! A small Slack Web API client: `POST {api_url}/{method}` with a JSON body
//! (`application/json; charset=utf-8`) and `Authorization: Bearer <token>`; the token is never
//! put in a URL or a body, never shown by `Debug`, and scrubbed from anything the server sends
//! back before it reaches an error. `{"ok": false, "error": "…"}` becomes
//! [`SlackError::Api`]. HTTP 429 is retried after `Retry-After` seconds, up to
//! [`MAX_RETRIES`] times, through an injectable [`Sleeper`]; a wait longer than the client's
//! `max_retry_wait` is not waited for but returned ([`SlackError::RateLimited`]) so the caller
//! can schedule it. Other failures are not retried: a `chat.postMessage` that may have
//! reached Slack must not be sent twice.
//!
//! One call is made with the app-level token instead ([`AppToken`], `xapp-…`):
//! [`SlackClient::apps_connections_open`], the start of a Socket Mode connection
//! ([`crate::socket_mode`]). It gets the same header-only, scrubbed, 429-retrying treatment.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use serde_json::{json, Value};

/// Retries after HTTP 429 (so at most `MAX_RETRIES + 1` requests per call).
pub const MAX_RETRIES: u32 = 3;
/// The per-request timeout unless [`SlackClient::with_timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest `Retry-After` waited for in place unless [`SlackClient::with_max_retry_wait`]
/// says otherwise.
pub const DEFAULT_MAX_RETRY_WAIT: Duration = Duration::from_secs(60);
/// The wait after a 429 that came without a (readable) `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// What replaces the token wherever a server echoes it.
pub const REDACTED: &str = "[REDACTED]";

/// A bot token (`xoxb-…`). `Debug` does not show it; it only goes into a sensitive header.
#[derive(Clone, PartialEq, Eq)]
pub struct BotToken(String);

impl BotToken {
    pub fn new(token: impl Into<String>) -> BotToken {
        BotToken(token.into())
    }
}

impl fmt::Debug for BotToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BotToken(<redacted>)")
    }
}

/// An app-level token (`xapp-…`, scope `connections:write`), the credential of Socket Mode.
/// Neither `Debug` nor `Display` shows it; it only goes into a sensitive header of
/// `apps.connections.open`, never into a URL, a body or a message.
#[derive(Clone, PartialEq, Eq)]
pub struct AppToken(String);

impl AppToken {
    pub fn new(token: impl Into<String>) -> AppToken {
        AppToken(token.into())
    }
}

impl fmt::Debug for AppToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AppToken(<redacted>)")
    }
}

impl fmt::Display for AppToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted app token>")
    }
}

/// Waits between retries; injected so tests need not wait.
pub trait Sleeper: Send + Sync {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// Sleeps with tokio's timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioSleeper;

impl Sleeper for TokioSleeper {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// Why a Web API call failed. Never contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlackError {
    #[error("the Slack API URL is not an http(s) URL")]
    InvalidApiUrl,
    #[error(
        "the bot token cannot be sent in an HTTP header (it has characters a header cannot hold)"
    )]
    InvalidToken,
    #[error(
        "the app token cannot be sent in an HTTP header (it has characters a header cannot hold)"
    )]
    InvalidAppToken,
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("Slack refused {method}: {error}")]
    Api { method: String, error: String },
    #[error("Slack answered {method} with HTTP {status}")]
    Http { method: String, status: u16 },
    #[error("Slack rate-limited {method} after {attempts} attempt(s){}", retry_note(*retry_after))]
    RateLimited {
        method: String,
        attempts: u32,
        /// What the last answer asked to wait.
        retry_after: Option<Duration>,
    },
    #[error("{method} timed out after {after:?}")]
    Timeout { method: String, after: Duration },
    #[error("cannot reach Slack for {method}: {message}")]
    Connection { method: String, message: String },
    #[error("Slack's answer to {method} is not what the API describes: {message}")]
    BadResponse { method: String, message: String },
}

fn retry_note(after: Option<Duration>) -> String {
    match after {
        Some(after) => format!("; it asked to wait {} s", after.as_secs()),
        None => String::new(),
    }
}

/// A message `chat.postMessage` posted: where it is and its `ts` (its id, for `chat.update`
/// and threads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostedMessage {
    pub channel: String,
    pub ts: String,
}

/// The credential of one request: the `Authorization` header and the secret in it (to scrub
/// from whatever comes back).
struct Auth<'a> {
    header: &'a HeaderValue,
    secret: &'a str,
}

/// The Slack Web API, as the bot (and, for `apps.connections.open`, as the app).
#[derive(Clone)]
pub struct SlackClient {
    http: reqwest::Client,
    api_url: String,
    token: BotToken,
    authorization: HeaderValue,
    timeout: Duration,
    max_retry_wait: Duration,
    sleeper: Arc<dyn Sleeper>,
}

impl fmt::Debug for SlackClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackClient")
            .field("api_url", &self.api_url)
            .field("token", &self.token)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl SlackClient {
    /// A client for `api_url` (`https://slack.com/api`, or a test server) with `bot_token`.
    pub fn new(api_url: &str, bot_token: BotToken) -> Result<SlackClient, SlackError> {
        let api_url = api_url.trim_end_matches('/').to_string();
        let parsed = url::Url::parse(&api_url).map_err(|_| SlackError::InvalidApiUrl)?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.query().is_some() {
            return Err(SlackError::InvalidApiUrl);
        }
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", bot_token.0))
            .map_err(|_| SlackError::InvalidToken)?;
        authorization.set_sensitive(true);
        let http = reqwest::Client::builder()
            .user_agent(concat!("flightdeck/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SlackError::Client(e.to_string()))?;
        Ok(SlackClient {
            http,
            api_url,
            token: bot_token,
            authorization,
            timeout: DEFAULT_TIMEOUT,
            max_retry_wait: DEFAULT_MAX_RETRY_WAIT,
            sleeper: Arc::new(TokioSleeper),
        })
    }

    /// Waits between retries with `sleeper` (tests: one that records and returns at once).
    pub fn with_sleeper(mut self, sleeper: Arc<dyn Sleeper>) -> SlackClient {
        self.sleeper = sleeper;
        self
    }

    /// Gives each request at most `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> SlackClient {
        self.timeout = timeout;
        self
    }

    /// Waits in place for a `Retry-After` up to `max`; a longer one is returned as
    /// [`SlackError::RateLimited`].
    pub fn with_max_retry_wait(mut self, max: Duration) -> SlackClient {
        self.max_retry_wait = max;
        self
    }

    /// `chat.postMessage`: posts `text` (the notification / fallback) and `blocks` (none if
    /// empty) to `channel`, in the thread of `thread_ts` if given.
    pub async fn chat_post_message(
        &self,
        channel: &str,
        text: &str,
        blocks: &[Value],
        thread_ts: Option<&str>,
    ) -> Result<PostedMessage, SlackError> {
        const METHOD: &str = "chat.postMessage";
        let mut body = json!({ "channel": channel, "text": text });
        if !blocks.is_empty() {
            body["blocks"] = Value::Array(blocks.to_vec());
        }
        if let Some(ts) = thread_ts {
            body["thread_ts"] = json!(ts);
        }
        let answer = self.call(METHOD, &body).await?;
        Ok(PostedMessage {
            channel: string_field(METHOD, &answer, "channel")?,
            ts: string_field(METHOD, &answer, "ts")?,
        })
    }

    /// `chat.update`: replaces the message `ts` in `channel` (an empty `blocks` removes them).
    pub async fn chat_update(
        &self,
        channel: &str,
        ts: &str,
        text: &str,
        blocks: &[Value],
    ) -> Result<(), SlackError> {
        let body = json!({ "channel": channel, "ts": ts, "text": text, "blocks": blocks });
        self.call("chat.update", &body).await.map(|_| ())
    }

    /// `chat.postEphemeral`: a message only `user` sees in `channel`; returns its
    /// `message_ts`.
    pub async fn chat_post_ephemeral(
        &self,
        channel: &str,
        user: &str,
        text: &str,
    ) -> Result<String, SlackError> {
        const METHOD: &str = "chat.postEphemeral";
        let body = json!({ "channel": channel, "user": user, "text": text });
        let answer = self.call(METHOD, &body).await?;
        string_field(METHOD, &answer, "message_ts")
    }

    /// `users.info`: the email on `user`'s profile, if Slack shows it (the bot needs
    /// `users:read.email`). A read method: `GET …/users.info?user=…` (Slack takes no JSON body
    /// for it), the token still only in the header.
    pub async fn users_info(&self, user: &str) -> Result<Option<String>, SlackError> {
        const METHOD: &str = "users.info";
        let mut url = url::Url::parse(&format!("{}/{METHOD}", self.api_url))
            .map_err(|_| SlackError::InvalidApiUrl)?;
        url.query_pairs_mut().append_pair("user", user);
        let answer = self
            .send(METHOD, &self.bot_auth(), || self.http.get(url.as_str()))
            .await?;
        Ok(answer
            .pointer("/user/profile/email")
            .and_then(Value::as_str)
            .filter(|e| !e.is_empty())
            .map(str::to_string))
    }

    /// Any write method: `POST {api_url}/{method}` with `body` as JSON; returns Slack's answer
    /// (with `ok: true`).
    pub async fn call(&self, method: &str, body: &Value) -> Result<Value, SlackError> {
        let url = format!("{}/{method}", self.api_url);
        let bytes = serde_json::to_vec(body).map_err(|e| SlackError::BadResponse {
            method: method.to_string(),
            message: format!("cannot encode the request: {e}"),
        })?;
        self.send(method, &self.bot_auth(), || {
            self.http
                .post(&url)
                .header(CONTENT_TYPE, "application/json; charset=utf-8")
                .body(bytes.clone())
        })
        .await
    }

    /// `apps.connections.open`: a one-time WebSocket URL (`wss://…?ticket=…`) for a Socket
    /// Mode connection. Authenticated with the app-level token, not the bot token (Slack
    /// refuses a bot token here with `not_allowed_token_type`); takes no arguments, so the
    /// request has no body. The answer's `url` must be a `ws://` or `wss://` URL.
    pub async fn apps_connections_open(&self, app_token: &AppToken) -> Result<String, SlackError> {
        const METHOD: &str = "apps.connections.open";
        let mut header = HeaderValue::from_str(&format!("Bearer {}", app_token.0))
            .map_err(|_| SlackError::InvalidAppToken)?;
        header.set_sensitive(true);
        let auth = Auth {
            header: &header,
            secret: &app_token.0,
        };
        let url = format!("{}/{METHOD}", self.api_url);
        let answer = self.send(METHOD, &auth, || self.http.post(&url)).await?;
        socket_url(&answer)
    }

    fn bot_auth(&self) -> Auth<'_> {
        Auth {
            header: &self.authorization,
            secret: &self.token.0,
        }
    }

    async fn send(
        &self,
        method: &str,
        auth: &Auth<'_>,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Value, SlackError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let result = async {
                let response = request()
                    .header(AUTHORIZATION, auth.header.clone())
                    .timeout(self.timeout)
                    .send()
                    .await?;
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let body = response.bytes().await?;
                Ok::<_, reqwest::Error>((status, retry_after, body))
            }
            .await;
            let (status, retry_after, body) =
                result.map_err(|e| self.classify(method, auth.secret, &e))?;
            if status == 429 {
                let wait = retry_after.unwrap_or(DEFAULT_RETRY_AFTER);
                if attempts > MAX_RETRIES || wait > self.max_retry_wait {
                    return Err(SlackError::RateLimited {
                        method: method.to_string(),
                        attempts,
                        retry_after,
                    });
                }
                self.sleeper.sleep(wait).await;
                continue;
            }
            if !(200..300).contains(&status) {
                return Err(SlackError::Http {
                    method: method.to_string(),
                    status,
                });
            }
            return answer(method, auth.secret, &body);
        }
    }

    fn classify(&self, method: &str, secret: &str, error: &reqwest::Error) -> SlackError {
        if error.is_timeout() {
            return SlackError::Timeout {
                method: method.to_string(),
                after: self.timeout,
            };
        }
        let mut message = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        SlackError::Connection {
            method: method.to_string(),
            message: scrub(secret, &message),
        }
    }
}

fn answer(method: &str, secret: &str, body: &[u8]) -> Result<Value, SlackError> {
    let answer: Value = serde_json::from_slice(body).map_err(|e| SlackError::BadResponse {
        method: method.to_string(),
        message: format!("not JSON: {e}"),
    })?;
    match answer.get("ok").and_then(Value::as_bool) {
        Some(true) => Ok(answer),
        Some(false) => {
            let error = answer
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no error code given");
            Err(SlackError::Api {
                method: method.to_string(),
                error: scrub(secret, &error.chars().take(200).collect::<String>()),
            })
        }
        None => Err(SlackError::BadResponse {
            method: method.to_string(),
            message: "no boolean `ok`".to_string(),
        }),
    }
}

/// `text` with every occurrence of the token `secret` replaced by [`REDACTED`].
fn scrub(secret: &str, text: &str) -> String {
    if secret.is_empty() {
        return text.to_string();
    }
    text.replace(secret, REDACTED)
}

/// The `url` of an `apps.connections.open` answer, if it is a `ws://` or `wss://` URL with a
/// host (the URL itself is not put in the error: its ticket is a credential).
fn socket_url(answer: &Value) -> Result<String, SlackError> {
    const METHOD: &str = "apps.connections.open";
    let ws_url = string_field(METHOD, answer, "url")?;
    let usable = url::Url::parse(&ws_url)
        .is_ok_and(|u| matches!(u.scheme(), "ws" | "wss") && u.host_str().is_some());
    if !usable {
        return Err(SlackError::BadResponse {
            method: METHOD.to_string(),
            message: "`url` is not a ws:// or wss:// URL".to_string(),
        });
    }
    Ok(ws_url)
}

fn string_field(method: &str, answer: &Value, field: &str) -> Result<String, SlackError> {
    answer
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| SlackError::BadResponse {
            method: method.to_string(),
            message: format!("no `{field}` in the answer"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_url_must_be_a_websocket_url() {
        let wss = "wss://wss-primary.slack.com/link/?ticket=abc&app_id=A1";
        assert_eq!(
            socket_url(&json!({"ok": true, "url": wss})),
            Ok(wss.to_string())
        );
        assert_eq!(
            socket_url(&json!({"ok": true, "url": "ws://127.0.0.1:9/link/?ticket=t"})),
            Ok("ws://127.0.0.1:9/link/?ticket=t".to_string())
        );
        for bad in [
            json!({"ok": true}),
            json!({"ok": true, "url": 7}),
            json!({"ok": true, "url": "https://slack.com/link/?ticket=secret"}),
            json!({"ok": true, "url": "not a url ticket=secret"}),
        ] {
            let err = socket_url(&bad).err();
            assert!(
                matches!(&err, Some(SlackError::BadResponse { method, .. }) if method == "apps.connections.open"),
                "{bad}: {err:?}"
            );
            assert!(!format!("{err:?}").contains("secret"));
        }
    }

    #[test]
    fn the_app_token_is_redacted_and_scrubbed() {
        let token = AppToken::new("xapp-1-A1-SECRET");
        assert_eq!(format!("{token:?}"), "AppToken(<redacted>)");
        assert!(!token.to_string().contains("SECRET"));
        assert_eq!(
            scrub("xapp-1-A1-SECRET", "echo xapp-1-A1-SECRET!"),
            "echo [REDACTED]!"
        );
    }
}
