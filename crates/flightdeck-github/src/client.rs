//! A thin GitHub App client over reqwest: the transport under the typed calls of
//! [`crate::api`].
//!
//! Every request carries `Accept: application/vnd.github+json`, `X-GitHub-Api-Version:
//! 2022-11-28`, a `User-Agent` (GitHub refuses requests without one) and `Authorization:
//! Bearer <credential>` in a header marked sensitive: the app's JWT ([`AppKey::jwt`]) for
//! `/app/…` endpoints, else the installation's token, fetched with the JWT and cached by
//! [`TokenCache`] until shortly before it expires. No credential is put in a URL, a body, an
//! error or `Debug` output; whatever a server echoes of one is replaced by [`REDACTED`]. A
//! 401 answered to an installation token drops it from the cache (the next call fetches a
//! new one); the call itself is not repeated.
//!
//! Rate limits (GitHub's "best practices"): a 403 or 429 with `retry-after` waits that many
//! seconds; one with `x-ratelimit-remaining: 0` waits until `x-ratelimit-reset`; a secondary
//! limit without either (a 429, or a 403 whose message speaks of a rate limit) waits 60 s,
//! doubling on each further retry. Waits go through the injected [`Sleeper`], at most
//! [`MAX_RETRIES`] times per call; a wait longer than `max_retry_wait` is not waited for
//! but returned as [`GitHubError::RateLimited`] so the caller can schedule it. Nothing else
//! is retried (a POST that may have reached GitHub must not run twice).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;

use crate::jwt::{AppKey, KeyError};
use crate::token::{Clock, InstallationToken, SystemClock, TokenCache};

/// Retries after a rate limit (so at most `MAX_RETRIES + 1` requests per call).
pub const MAX_RETRIES: u32 = 3;
/// The per-request timeout unless [`GitHubClient::with_timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest rate-limit wait done in place unless [`GitHubClient::with_max_retry_wait`]
/// says otherwise.
pub const DEFAULT_MAX_RETRY_WAIT: Duration = Duration::from_secs(60);
/// The first wait after a secondary rate limit that named no time (GitHub: "at least one
/// minute"); doubled on each further retry.
pub const SECONDARY_LIMIT_WAIT: Duration = Duration::from_secs(60);
/// The REST API version every request asks for.
pub const API_VERSION: &str = "2022-11-28";
/// The media type every request accepts.
pub const MEDIA_TYPE: &str = "application/vnd.github+json";
/// The `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("flightdeck/", env!("CARGO_PKG_VERSION"));
/// GitHub.com's REST API.
pub const PUBLIC_API_URL: &str = "https://api.github.com";
/// Answers larger than this are refused rather than read.
pub const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;
/// What replaces a credential wherever a server echoes it.
pub const REDACTED: &str = "[REDACTED]";

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

/// Why a call failed. `call` is the method and path (`POST /repos/o/r/check-runs`), never
/// a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitHubError {
    #[error("the GitHub API URL is not an http(s) URL without query or fragment")]
    InvalidApiUrl,
    #[error("cannot call GitHub with {what}")]
    InvalidArgument { what: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("GitHub answered {call} with HTTP {status}: {message}{}", doc_note(documentation_url.as_deref()))]
    Api {
        call: String,
        status: u16,
        message: String,
        documentation_url: Option<String>,
    },
    #[error("GitHub's GraphQL API refused {call}: {message}")]
    GraphQl { call: String, message: String },
    #[error("GitHub rate-limited {call} after {attempts} attempt(s); it asks to wait {} s", retry_after.as_secs())]
    RateLimited {
        call: String,
        attempts: u32,
        /// How long the last answer asked to wait.
        retry_after: Duration,
    },
    #[error("{call} timed out after {after:?}")]
    Timeout { call: String, after: Duration },
    #[error("cannot reach GitHub for {call}: {message}")]
    Connection { call: String, message: String },
    #[error("GitHub's answer to {call} is not what the API describes: {message}")]
    BadResponse { call: String, message: String },
}

fn doc_note(url: Option<&str>) -> String {
    url.map(|u| format!(" (see {u})")).unwrap_or_default()
}

impl GitHubError {
    /// The HTTP status GitHub answered with, for [`GitHubError::Api`].
    pub fn status(&self) -> Option<u16> {
        match self {
            GitHubError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// What one request sends besides its headers: method, URL, optional JSON body.
pub(crate) struct Request {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) body: Option<Vec<u8>>,
}

impl Request {
    pub(crate) fn call(&self) -> String {
        format!("{} {}", self.method, self.url.path())
    }
}

/// A successful answer's body.
pub(crate) struct Answer {
    pub(crate) body: Vec<u8>,
}

/// The credential of one request.
struct Credential<'a> {
    header: HeaderValue,
    secret: &'a str,
}

impl<'a> Credential<'a> {
    fn bearer(secret: &'a str) -> Result<Credential<'a>, GitHubError> {
        let mut header = HeaderValue::from_str(&format!("Bearer {secret}")).map_err(|_| {
            GitHubError::InvalidArgument {
                what: "a credential an HTTP header cannot hold".to_string(),
            }
        })?;
        header.set_sensitive(true);
        Ok(Credential { header, secret })
    }
}

/// A GitHub App's client: REST (and one GraphQL mutation) as the app or as one of its
/// installations. Cheap to clone; clones share the token cache.
#[derive(Clone)]
pub struct GitHubClient {
    http: reqwest::Client,
    api_url: Url,
    graphql_url: Url,
    app_id: u64,
    key: AppKey,
    tokens: Arc<TokenCache>,
    clock: Arc<dyn Clock>,
    sleeper: Arc<dyn Sleeper>,
    timeout: Duration,
    max_retry_wait: Duration,
}

impl fmt::Debug for GitHubClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHubClient")
            .field("api_url", &self.api_url.as_str())
            .field("graphql_url", &self.graphql_url.as_str())
            .field("app_id", &self.app_id)
            .field("key", &self.key)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl GitHubClient {
    /// A client for the app `app_id` with its private `key`, against `api_url`
    /// ([`PUBLIC_API_URL`], `https://ghe.example.com/api/v3` for GitHub Enterprise Server, or
    /// a test server). The GraphQL endpoint is derived: `…/api/v3` → `…/api/graphql`, else
    /// `{api_url}/graphql`.
    pub fn new(api_url: &str, app_id: u64, key: AppKey) -> Result<GitHubClient, GitHubError> {
        let api_url = parse_base(api_url)?;
        let graphql_url = graphql_url_for(&api_url)?;
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .build()
            .map_err(|e| GitHubError::Client(e.to_string()))?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        Ok(GitHubClient {
            http,
            api_url,
            graphql_url,
            app_id,
            key,
            tokens: Arc::new(TokenCache::new(clock.clone())),
            clock,
            sleeper: Arc::new(TokioSleeper),
            timeout: DEFAULT_TIMEOUT,
            max_retry_wait: DEFAULT_MAX_RETRY_WAIT,
        })
    }

    /// Waits between retries with `sleeper` (tests: one that records and returns at once).
    pub fn with_sleeper(mut self, sleeper: Arc<dyn Sleeper>) -> GitHubClient {
        self.sleeper = sleeper;
        self
    }

    /// Reads the time from `clock` (JWTs, token freshness, `x-ratelimit-reset`). Starts an
    /// empty token cache.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> GitHubClient {
        self.tokens = Arc::new(TokenCache::new(clock.clone()));
        self.clock = clock;
        self
    }

    /// Gives each request at most `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> GitHubClient {
        self.timeout = timeout;
        self
    }

    /// Waits in place for a rate limit up to `max`; a longer wait is returned as
    /// [`GitHubError::RateLimited`].
    pub fn with_max_retry_wait(mut self, max: Duration) -> GitHubClient {
        self.max_retry_wait = max;
        self
    }

    /// Sends GraphQL requests to `graphql_url` instead of the derived one.
    pub fn with_graphql_url(mut self, graphql_url: &str) -> Result<GitHubClient, GitHubError> {
        self.graphql_url = parse_base(graphql_url)?;
        Ok(self)
    }

    pub fn api_url(&self) -> &str {
        self.api_url.as_str().trim_end_matches('/')
    }

    pub fn graphql_url(&self) -> &str {
        self.graphql_url.as_str()
    }

    pub fn app_id(&self) -> u64 {
        self.app_id
    }

    /// The installation's access token: the cached one while it has more than five minutes
    /// left, else a new one from `POST /app/installations/{id}/access_tokens` (made with
    /// the app's JWT). Also what `git` needs to push over HTTPS (`x-access-token:<token>`).
    pub async fn installation_token(
        &self,
        installation_id: u64,
    ) -> Result<InstallationToken, GitHubError> {
        self.tokens
            .get(installation_id, || async {
                let id = installation_id.to_string();
                let request = Request {
                    method: Method::POST,
                    url: self.endpoint(&["app", "installations", &id, "access_tokens"], &[])?,
                    body: None,
                };
                let call = request.call();
                let answer = self.send_as_app(&request).await?;
                let value: Value = decode(&call, &answer.body, "")?;
                InstallationToken::from_answer(&value)
                    .map_err(|message| GitHubError::BadResponse { call, message })
            })
            .await
    }

    /// `{api_url}/{segments…}?{query…}`: each segment percent-encoded as one path segment
    /// (so `a/b` cannot add a segment); empty, `.` and `..` segments refused.
    pub(crate) fn endpoint(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Url, GitHubError> {
        for segment in segments {
            if segment.is_empty() || *segment == "." || *segment == ".." {
                return Err(GitHubError::InvalidArgument {
                    what: format!("an empty, `.` or `..` path segment ({segments:?})"),
                });
            }
        }
        let mut url = self.api_url.clone();
        url.path_segments_mut()
            .map_err(|_| GitHubError::InvalidApiUrl)?
            .pop_if_empty()
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    pub(crate) fn graphql_endpoint(&self) -> Url {
        self.graphql_url.clone()
    }

    /// A request as the app (JWT).
    pub(crate) async fn send_as_app(&self, request: &Request) -> Result<Answer, GitHubError> {
        let jwt = self.key.jwt(self.app_id, self.clock.now_unix())?;
        self.send(request, &Credential::bearer(&jwt)?).await
    }

    /// A request as the installation (its cached token).
    pub(crate) async fn send_as_installation(
        &self,
        installation_id: u64,
        request: &Request,
    ) -> Result<Answer, GitHubError> {
        let token = self.installation_token(installation_id).await?;
        let result = self
            .send(request, &Credential::bearer(token.secret())?)
            .await;
        if matches!(result, Err(GitHubError::Api { status: 401, .. })) {
            self.tokens.invalidate(installation_id, &token).await;
        }
        result
    }

    async fn send(
        &self,
        request: &Request,
        credential: &Credential<'_>,
    ) -> Result<Answer, GitHubError> {
        let call = request.call();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut builder = self
                .http
                .request(request.method.clone(), request.url.clone())
                .header(AUTHORIZATION, credential.header.clone())
                .header(ACCEPT, MEDIA_TYPE)
                .header("X-GitHub-Api-Version", API_VERSION)
                .timeout(self.timeout);
            if let Some(body) = &request.body {
                builder = builder
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone());
            } else if request.method != Method::GET {
                builder = builder.body(Vec::new());
            }
            let (status, headers, body) = self
                .exchange(builder)
                .await
                .map_err(|e| self.classify(&call, credential.secret, e))?;
            if status == 403 || status == 429 {
                let wait =
                    rate_limit_wait(status, &headers, &body, self.clock.now_unix(), attempts);
                if let Some(wait) = wait {
                    if attempts > MAX_RETRIES || wait > self.max_retry_wait {
                        return Err(GitHubError::RateLimited {
                            call,
                            attempts,
                            retry_after: wait,
                        });
                    }
                    self.sleeper.sleep(wait).await;
                    continue;
                }
            }
            if !(200..300).contains(&status) {
                return Err(api_error(&call, status, &body, credential.secret));
            }
            return Ok(Answer { body });
        }
    }

    async fn exchange(
        &self,
        builder: reqwest::RequestBuilder,
    ) -> Result<(u16, HeaderMap, Vec<u8>), Exchange> {
        let mut response = builder.send().await.map_err(Exchange::Http)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(Exchange::Http)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(Exchange::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, headers, body))
    }

    fn classify(&self, call: &str, secret: &str, error: Exchange) -> GitHubError {
        let error = match error {
            Exchange::TooLarge => {
                return GitHubError::BadResponse {
                    call: call.to_string(),
                    message: format!("the answer is larger than {MAX_RESPONSE_BYTES} bytes"),
                }
            }
            Exchange::Http(error) => error,
        };
        if error.is_timeout() {
            return GitHubError::Timeout {
                call: call.to_string(),
                after: self.timeout,
            };
        }
        let mut message = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        GitHubError::Connection {
            call: call.to_string(),
            message: scrub(secret, &message),
        }
    }
}

enum Exchange {
    Http(reqwest::Error),
    TooLarge,
}

/// The API base: http(s), no query or fragment, no trailing slash.
fn parse_base(api_url: &str) -> Result<Url, GitHubError> {
    let url =
        Url::parse(api_url.trim().trim_end_matches('/')).map_err(|_| GitHubError::InvalidApiUrl)?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host_str().is_none()
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(GitHubError::InvalidApiUrl);
    }
    Ok(url)
}

/// `https://api.github.com` → `https://api.github.com/graphql`; GitHub Enterprise Server's
/// `https://host/api/v3` → `https://host/api/graphql`; anything else → `{api_url}/graphql`.
fn graphql_url_for(api_url: &Url) -> Result<Url, GitHubError> {
    let base = api_url.as_str().trim_end_matches('/');
    let graphql = match base.strip_suffix("/api/v3") {
        Some(host) => format!("{host}/api/graphql"),
        None => format!("{base}/graphql"),
    };
    Url::parse(&graphql).map_err(|_| GitHubError::InvalidApiUrl)
}

/// How long a 403 / 429 asks to wait, if it is a rate limit at all (`attempt` counts from 1).
fn rate_limit_wait(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    now_unix: i64,
    attempt: u32,
) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(seconds) = header(RETRY_AFTER.as_str()).and_then(|v| v.parse::<u64>().ok()) {
        return Some(Duration::from_secs(seconds));
    }
    if header("x-ratelimit-remaining") == Some("0") {
        if let Some(reset) = header("x-ratelimit-reset").and_then(|v| v.parse::<i64>().ok()) {
            let seconds = reset.saturating_sub(now_unix).max(0).saturating_add(1);
            return Some(Duration::from_secs(u64::try_from(seconds).unwrap_or(1)));
        }
        return Some(secondary_wait(attempt));
    }
    let speaks_of_a_limit = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase)
        })
        .is_some_and(|m| m.contains("rate limit"));
    if status == 429 || speaks_of_a_limit {
        return Some(secondary_wait(attempt));
    }
    None
}

/// 60 s, 120 s, 240 s…
fn secondary_wait(attempt: u32) -> Duration {
    SECONDARY_LIMIT_WAIT.saturating_mul(1u32 << attempt.saturating_sub(1).min(10))
}

/// A non-2xx answer as [`GitHubError::Api`]: GitHub's `message`, the `errors` details of a
/// 422, `documentation_url`; credentials scrubbed, at most 1000 characters.
fn api_error(call: &str, status: u16, body: &[u8], secret: &str) -> GitHubError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let mut message = parsed
        .as_ref()
        .and_then(|v| v.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                "no message".to_string()
            } else {
                text.chars().take(200).collect()
            }
        });
    let details: Vec<String> = parsed
        .as_ref()
        .and_then(|v| v.get("errors"))
        .and_then(Value::as_array)
        .map(|errors| errors.iter().map(error_detail).collect())
        .unwrap_or_default();
    if !details.is_empty() {
        message = format!("{message} ({})", details.join("; "));
    }
    let documentation_url = parsed
        .as_ref()
        .and_then(|v| v.get("documentation_url"))
        .and_then(Value::as_str)
        .map(|u| scrub(secret, &u.chars().take(200).collect::<String>()));
    GitHubError::Api {
        call: call.to_string(),
        status,
        message: scrub(secret, &message.chars().take(1000).collect::<String>()),
        documentation_url,
    }
}

/// One item of a 422's `errors`: its `message`, else `resource.field: code`.
fn error_detail(error: &Value) -> String {
    if let Some(text) = error.as_str() {
        return text.to_string();
    }
    if let Some(message) = error.get("message").and_then(Value::as_str) {
        return message.to_string();
    }
    let field = |name: &str| error.get(name).and_then(Value::as_str).unwrap_or("?");
    format!(
        "{}.{}: {}",
        field("resource"),
        field("field"),
        field("code")
    )
}

/// `text` with every occurrence of `secret` replaced by [`REDACTED`].
pub(crate) fn scrub(secret: &str, text: &str) -> String {
    if secret.is_empty() {
        return text.to_string();
    }
    text.replace(secret, REDACTED)
}

/// A JSON answer as `T`; the message is scrubbed of `secret`.
pub(crate) fn decode<T: DeserializeOwned>(
    call: &str,
    body: &[u8],
    secret: &str,
) -> Result<T, GitHubError> {
    serde_json::from_slice(body).map_err(|e| GitHubError::BadResponse {
        call: call.to_string(),
        message: scrub(secret, &e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("header"));
        }
        map
    }

    #[test]
    fn rate_limit_waits() {
        let none = headers(&[]);
        let forbidden = br#"{"message":"Resource not accessible by integration"}"#;
        let secondary = br#"{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}"#;
        assert_eq!(
            rate_limit_wait(403, &headers(&[("retry-after", "7")]), b"", 0, 1),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            rate_limit_wait(
                403,
                &headers(&[
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", "1030")
                ]),
                b"",
                1000,
                1
            ),
            Some(Duration::from_secs(31))
        );
        // A reset already past still waits a second.
        assert_eq!(
            rate_limit_wait(
                429,
                &headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "900")]),
                b"",
                1000,
                1
            ),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            rate_limit_wait(429, &none, b"", 0, 1),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            rate_limit_wait(403, &none, secondary, 0, 2),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            rate_limit_wait(403, &none, secondary, 0, 3),
            Some(Duration::from_secs(240))
        );
        assert_eq!(rate_limit_wait(403, &none, forbidden, 0, 1), None);
        assert_eq!(
            rate_limit_wait(
                403,
                &headers(&[("x-ratelimit-remaining", "12")]),
                forbidden,
                0,
                1
            ),
            None
        );
    }

    #[test]
    fn graphql_urls() {
        let derive = |api: &str| {
            graphql_url_for(&parse_base(api).expect("url"))
                .expect("graphql")
                .to_string()
        };
        assert_eq!(
            derive("https://api.github.com"),
            "https://api.github.com/graphql"
        );
        assert_eq!(
            derive("https://api.github.com/"),
            "https://api.github.com/graphql"
        );
        assert_eq!(
            derive("https://ghe.example.com/api/v3"),
            "https://ghe.example.com/api/graphql"
        );
        assert_eq!(
            derive("https://ghe.example.com/api/v3/"),
            "https://ghe.example.com/api/graphql"
        );
        assert_eq!(
            derive("http://127.0.0.1:9/gh"),
            "http://127.0.0.1:9/gh/graphql"
        );
        for bad in [
            "ftp://x",
            "not a url",
            "https://api.github.com?x=1",
            "https://u:p@api.github.com",
        ] {
            assert_eq!(
                parse_base(bad).err(),
                Some(GitHubError::InvalidApiUrl),
                "{bad}"
            );
        }
    }

    #[test]
    fn api_errors_keep_githubs_words_and_drop_secrets() {
        let body = br#"{"message":"Validation Failed","errors":[{"resource":"Issue","field":"title","code":"missing_field"},{"message":"echo ghs_SECRET"}],"documentation_url":"https://docs.github.com/rest/issues"}"#;
        let err = api_error("POST /repos/o/r/issues", 422, body, "ghs_SECRET");
        assert_eq!(
            err,
            GitHubError::Api {
                call: "POST /repos/o/r/issues".into(),
                status: 422,
                message: "Validation Failed (Issue.title: missing_field; echo [REDACTED])".into(),
                documentation_url: Some("https://docs.github.com/rest/issues".into()),
            }
        );
        let err = api_error("GET /x", 502, b"<html>Bad gateway</html>", "s");
        assert!(
            matches!(&err, GitHubError::Api { message, .. } if message == "<html>Bad gateway</html>"),
            "{err:?}"
        );
    }
}
