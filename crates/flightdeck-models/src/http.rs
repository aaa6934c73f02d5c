//! The thin HTTP layer shared by the remote providers: one POST of JSON bytes, a per-call
//! timeout, status classification, `Retry-After`, and scrubbing of the API key out of anything
//! the server sends back.

use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};

use crate::error::ModelError;

/// An API key. It is only ever put into a request header (marked sensitive); `Debug` does not
/// show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(key.into())
    }

    /// Reads the key from the environment variable `var` (the config's `api_key_env`). The one
    /// place this crate reads the environment; callers may equally read it themselves and use
    /// [`ApiKey::new`].
    pub fn from_env_var(var: &str) -> Result<ApiKey, MissingApiKey> {
        match std::env::var(var) {
            Ok(key) if !key.trim().is_empty() => Ok(ApiKey(key)),
            _ => Err(MissingApiKey {
                var: var.to_string(),
            }),
        }
    }

    /// The key itself, for building a header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// The environment variable named for an API key is unset or empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable `{var}` is not set or empty\nhint: export {var}=… with the provider's API key")]
pub struct MissingApiKey {
    pub var: String,
}

/// What the server sent back, with the key scrubbed.
pub(crate) struct HttpReply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// The text that replaces an API key found in a server's answer.
pub const REDACTED: &str = "[REDACTED]";

/// A reqwest client with a per-call timeout.
#[derive(Clone)]
pub(crate) struct HttpClient {
    client: reqwest::Client,
    timeout: Duration,
}

impl HttpClient {
    pub fn new(provider: &str, timeout: Duration) -> Result<HttpClient, ModelError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("flightdeck/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ModelError::InvalidRequest {
                provider: provider.to_string(),
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(HttpClient { client, timeout })
    }

    /// POSTs `body` (JSON) to `url` with `headers`; `secret` is scrubbed from the reply.
    pub async fn post_json(
        &self,
        provider: &str,
        url: &str,
        headers: Vec<(HeaderName, HeaderValue)>,
        body: Vec<u8>,
        secret: Option<&ApiKey>,
    ) -> Result<HttpReply, ModelError> {
        let mut request = self
            .client
            .post(url)
            .timeout(self.timeout)
            .header(CONTENT_TYPE, "application/json");
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let result = async {
            let response = request.body(body).send().await?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, headers, body))
        }
        .await;
        match result {
            Ok((status, headers, body)) => Ok(HttpReply {
                status,
                headers,
                body: scrub(body.to_vec(), secret),
            }),
            Err(error) => Err(self.classify(provider, &error, secret)),
        }
    }

    fn classify(
        &self,
        provider: &str,
        error: &reqwest::Error,
        secret: Option<&ApiKey>,
    ) -> ModelError {
        if error.is_timeout() {
            return ModelError::Timeout {
                provider: provider.to_string(),
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
        let message = scrub_text(message, secret);
        // A request that could not even be built (a bad base URL) will not get better.
        if error.is_builder() {
            return ModelError::InvalidRequest {
                provider: provider.to_string(),
                message,
            };
        }
        ModelError::Connection {
            provider: provider.to_string(),
            message,
        }
    }
}

/// A header value marked sensitive (kept out of reqwest's and hyper's debug output).
pub(crate) fn secret_header(provider: &str, value: &str) -> Result<HeaderValue, ModelError> {
    let mut value = HeaderValue::from_str(value).map_err(|_| ModelError::InvalidRequest {
        provider: provider.to_string(),
        message: "the API key is not a valid header value".to_string(),
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// Replaces every occurrence of the key in `bytes` with [`REDACTED`]. Servers do not normally
/// echo keys, but a misbehaving proxy might: the bytes are recorded as artifacts, so this is
/// the last line of defence.
pub(crate) fn scrub(bytes: Vec<u8>, secret: Option<&ApiKey>) -> Vec<u8> {
    let Some(key) = secret.map(ApiKey::expose).filter(|k| !k.is_empty()) else {
        return bytes;
    };
    let needle = key.as_bytes();
    if bytes.len() < needle.len() || !bytes.windows(needle.len()).any(|w| w == needle) {
        return bytes;
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(needle) {
            out.extend_from_slice(REDACTED.as_bytes());
            i += needle.len();
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

pub(crate) fn scrub_text(text: String, secret: Option<&ApiKey>) -> String {
    match secret.map(ApiKey::expose).filter(|k| !k.is_empty()) {
        Some(key) if text.contains(key) => text.replace(key, REDACTED),
        _ => text,
    }
}

/// The wait a server asked for: `retry-after-ms` (milliseconds, sent by OpenAI and Anthropic)
/// first, then `Retry-After` as seconds or as an HTTP date (relative to the current time).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            return Some(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    let value = text("retry-after")?;
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let at =
        time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    let wait = at - time::OffsetDateTime::now_utc();
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

/// The human part of an error body: `error.message` (both providers nest it so), else the
/// first 500 characters of the body.
pub(crate) fn error_message(body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        if let Some(message) = value
            .pointer("/error/message")
            .and_then(serde_json::Value::as_str)
        {
            return message.to_string();
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_string();
    }
    let mut short: String = text.chars().take(500).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

/// Turns a non-success reply into the typed error.
pub(crate) fn status_error(provider: &str, reply: &HttpReply) -> ModelError {
    ModelError::Status {
        provider: provider.to_string(),
        status: reply.status,
        message: error_message(&reply.body),
        retry_after: retry_after(&reply.headers),
    }
}

/// Joins a base URL and a path without doubling or dropping the `/`.
pub(crate) fn join_url(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_replaces_every_occurrence() {
        let key = ApiKey::new("sk-secret");
        let out = scrub(b"a sk-secret b sk-secretsk-secret".to_vec(), Some(&key));
        assert_eq!(out, b"a [REDACTED] b [REDACTED][REDACTED]".to_vec());
        assert_eq!(scrub(b"clean".to_vec(), Some(&key)), b"clean".to_vec());
        assert_eq!(scrub(b"sk-secret".to_vec(), None), b"sk-secret".to_vec());
        assert_eq!(format!("{key:?}"), "ApiKey(<redacted>)");
    }

    #[test]
    fn retry_after_table() {
        type Headers<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Headers, Option<Duration>)] = &[
            (&[("retry-after", "3")], Some(Duration::from_secs(3))),
            (&[("retry-after", "1.5")], Some(Duration::from_millis(1500))),
            (
                &[("retry-after-ms", "250"), ("retry-after", "9")],
                Some(Duration::from_millis(250)),
            ),
            (&[("retry-after", "-1")], None),
            (&[("retry-after", "soon")], None),
            (
                &[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")],
                Some(Duration::ZERO),
            ),
            (&[], None),
        ];
        for (headers, expected) in cases {
            let mut map = HeaderMap::new();
            for (name, value) in *headers {
                map.insert(
                    HeaderName::from_static(name),
                    HeaderValue::from_str(value).unwrap(),
                );
            }
            assert_eq!(retry_after(&map), *expected, "{headers:?}");
        }
    }

    #[test]
    fn error_message_table() {
        let cases: &[(&[u8], &str)] = &[
            (br#"{"error":{"message":"bad key","type":"x"}}"#, "bad key"),
            (
                br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
                "Overloaded",
            ),
            (b"upstream timed out", "upstream timed out"),
            (b"", "(empty body)"),
        ];
        for (body, expected) in cases {
            assert_eq!(error_message(body), *expected);
        }
    }

    #[test]
    fn join_url_table() {
        assert_eq!(
            join_url("http://h/v1", "chat/completions"),
            "http://h/v1/chat/completions"
        );
        assert_eq!(
            join_url("http://h/v1/", "/chat/completions"),
            "http://h/v1/chat/completions"
        );
    }
}
