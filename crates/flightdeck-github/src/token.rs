//! Installation tokens and their cache.
//!
//! An installation token comes from `POST {api}/app/installations/{id}/access_tokens` (made
//! with the app's JWT) as `{"token": "…", "expires_at": "2026-01-01T12:00:00Z", …}` and lasts
//! an hour. [`TokenCache`] keeps one per installation and hands it out until
//! [`REFRESH_MARGIN_SECS`] before `expires_at`; then the next caller fetches a new one while
//! the others for that installation wait for it (one refresh at a time per installation, a
//! tokio mutex each; installations do not wait for each other). Nothing assumes a token's
//! length or prefix (GitHub has changed both): a token is any non-empty run of visible ASCII,
//! which is what an HTTP header can carry. The clock is injected ([`Clock`]).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A cached token is not handed out in the last 5 minutes of its life (a call made with it
/// must still be running when GitHub checks it, and clocks drift).
pub const REFRESH_MARGIN_SECS: i64 = 300;

/// The time, injected so tests decide it.
pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn now_unix(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> i64 {
        OffsetDateTime::now_utc().unix_timestamp()
    }
}

/// An installation access token and when it expires. `Debug` does not show the token; use
/// [`InstallationToken::secret`] only to put it in a header (or a git credential helper).
#[derive(Clone, PartialEq, Eq)]
pub struct InstallationToken {
    secret: String,
    expires_at: i64,
}

impl fmt::Debug for InstallationToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstallationToken")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl InstallationToken {
    /// A token that expires at `expires_at` (Unix seconds). `None` if `secret` is empty or
    /// has anything but visible ASCII (it could not go into a header).
    pub fn new(secret: impl Into<String>, expires_at: i64) -> Option<InstallationToken> {
        let secret = secret.into();
        if secret.is_empty() || !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return None;
        }
        Some(InstallationToken { secret, expires_at })
    }

    /// The token from an `access_tokens` answer (`token`, `expires_at` in RFC 3339). The
    /// error says what is wrong without quoting the token.
    pub fn from_answer(answer: &Value) -> Result<InstallationToken, String> {
        let secret = answer
            .get("token")
            .and_then(Value::as_str)
            .ok_or("no string `token` in the answer")?;
        let expires_at = answer
            .get("expires_at")
            .and_then(Value::as_str)
            .ok_or("no string `expires_at` in the answer")?;
        let expires_at = parse_rfc3339(expires_at)
            .ok_or_else(|| format!("`expires_at` is not an RFC 3339 time: {expires_at:.40}"))?;
        InstallationToken::new(secret, expires_at)
            .ok_or_else(|| "`token` is empty or not visible ASCII".to_string())
    }

    /// The token itself: for an `Authorization` header, never for a log or a URL.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// When GitHub says it expires (Unix seconds).
    pub fn expires_at(&self) -> i64 {
        self.expires_at
    }

    /// Whether it may still be handed out at `now_unix` (more than [`REFRESH_MARGIN_SECS`]
    /// left).
    pub fn is_fresh(&self, now_unix: i64) -> bool {
        now_unix < self.expires_at.saturating_sub(REFRESH_MARGIN_SECS)
    }
}

/// `2026-01-01T12:00:00Z` (or with an offset or fractional seconds) as Unix seconds.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}

type Slot = Arc<tokio::sync::Mutex<Option<InstallationToken>>>;

/// Installation tokens by installation id, refreshed shortly before they expire.
pub struct TokenCache {
    clock: Arc<dyn Clock>,
    slots: Mutex<HashMap<u64, Slot>>,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let installations = self.slots.lock().map(|s| s.len()).unwrap_or_default();
        f.debug_struct("TokenCache")
            .field("installations", &installations)
            .finish_non_exhaustive()
    }
}

impl TokenCache {
    pub fn new(clock: Arc<dyn Clock>) -> TokenCache {
        TokenCache {
            clock,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The cached token of `installation_id` if it is still fresh, else the one `fetch`
    /// returns (which is then cached). Callers for the same installation wait while one of
    /// them fetches; a failed fetch caches nothing and the next caller tries again.
    pub async fn get<F, Fut, E>(
        &self,
        installation_id: u64,
        fetch: F,
    ) -> Result<InstallationToken, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<InstallationToken, E>>,
    {
        let slot = self.slot(installation_id);
        let mut cached = slot.lock().await;
        if let Some(token) = cached.as_ref() {
            if token.is_fresh(self.clock.now_unix()) {
                return Ok(token.clone());
            }
        }
        *cached = None;
        let token = fetch().await?;
        *cached = Some(token.clone());
        Ok(token)
    }

    /// Forgets `token` for `installation_id` (GitHub refused it: revoked, or the app's
    /// permissions changed), unless another caller has already replaced it.
    pub async fn invalidate(&self, installation_id: u64, token: &InstallationToken) {
        let slot = self.slot(installation_id);
        let mut cached = slot.lock().await;
        if cached.as_ref() == Some(token) {
            *cached = None;
        }
    }

    fn slot(&self, installation_id: u64) -> Slot {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slots.entry(installation_id).or_default().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};

    struct FakeClock(AtomicI64);

    impl Clock for FakeClock {
        fn now_unix(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// 2026-01-01T00:00:00Z
    const T0: i64 = 1_767_225_600;

    #[test]
    fn answers_parse_without_assumptions_about_the_token() {
        let long = "x".repeat(2000);
        for secret in [
            "ghs_16C7e42F292c6912E7710c838347Ae178B4a",
            "v1.abc",
            long.as_str(),
        ] {
            let token = InstallationToken::from_answer(&json!({
                "token": secret,
                "expires_at": "2026-01-01T01:00:00Z",
                "permissions": {"issues": "write"},
                "repository_selection": "selected"
            }))
            .expect("parses");
            assert_eq!(token.secret(), secret);
            assert_eq!(token.expires_at(), T0 + 3600);
        }
        assert_eq!(parse_rfc3339("2026-01-01T01:00:00.5+01:00"), Some(T0));
        for bad in [
            json!({"expires_at": "2026-01-01T01:00:00Z"}),
            json!({"token": "", "expires_at": "2026-01-01T01:00:00Z"}),
            json!({"token": "has space", "expires_at": "2026-01-01T01:00:00Z"}),
            json!({"token": "t"}),
            json!({"token": "t", "expires_at": "tomorrow"}),
        ] {
            let err = InstallationToken::from_answer(&bad).expect_err("refused");
            assert!(!err.contains("has space"), "{err}");
        }
    }

    #[test]
    fn debug_hides_the_token() {
        let token = InstallationToken::new("ghs_SECRET", T0).expect("token");
        let shown = format!("{token:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("expires_at"), "{shown}");
    }

    #[tokio::test]
    async fn a_token_is_reused_until_five_minutes_before_it_expires() {
        let clock = Arc::new(FakeClock(AtomicI64::new(T0)));
        let cache = TokenCache::new(clock.clone());
        let fetches = AtomicU32::new(0);
        let fetch = || async {
            let n = fetches.fetch_add(1, Ordering::SeqCst);
            let now = clock.now_unix();
            Ok::<_, String>(
                InstallationToken::new(format!("token-{n}"), now + 3600).expect("token"),
            )
        };
        assert_eq!(
            cache.get(7, fetch).await.map(|t| t.secret().to_string()),
            Ok("token-0".into())
        );
        clock
            .0
            .store(T0 + 3600 - REFRESH_MARGIN_SECS - 1, Ordering::SeqCst);
        assert_eq!(
            cache.get(7, fetch).await.map(|t| t.secret().to_string()),
            Ok("token-0".into())
        );
        // Another installation has its own token.
        assert_eq!(
            cache.get(8, fetch).await.map(|t| t.secret().to_string()),
            Ok("token-1".into())
        );
        clock
            .0
            .store(T0 + 3600 - REFRESH_MARGIN_SECS, Ordering::SeqCst);
        assert_eq!(
            cache.get(7, fetch).await.map(|t| t.secret().to_string()),
            Ok("token-2".into())
        );
        assert_eq!(fetches.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn failures_are_not_cached_and_invalidation_is_targeted() {
        let cache = TokenCache::new(Arc::new(FakeClock(AtomicI64::new(T0))));
        let failed: Result<InstallationToken, &str> = cache.get(1, || async { Err("down") }).await;
        assert_eq!(failed, Err("down"));
        let first = InstallationToken::new("a", T0 + 3600).expect("token");
        let second = InstallationToken::new("b", T0 + 3600).expect("token");
        let got = cache.get(1, || async { Ok::<_, ()>(first.clone()) }).await;
        assert_eq!(got.as_ref(), Ok(&first));
        // Invalidating a token that is not the cached one changes nothing.
        cache.invalidate(1, &second).await;
        let got = cache.get(1, || async { Ok::<_, ()>(second.clone()) }).await;
        assert_eq!(got.as_ref(), Ok(&first));
        cache.invalidate(1, &first).await;
        let got = cache.get(1, || async { Ok::<_, ()>(second.clone()) }).await;
        assert_eq!(got.as_ref(), Ok(&second));
    }

    #[tokio::test]
    async fn one_refresh_at_a_time_per_installation() {
        let cache = Arc::new(TokenCache::new(Arc::new(FakeClock(AtomicI64::new(T0)))));
        let fetches = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let cache = cache.clone();
            let fetches = fetches.clone();
            tasks.push(tokio::spawn(async move {
                cache
                    .get(3, || async {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        Ok::<_, ()>(InstallationToken::new("shared", T0 + 3600).expect("token"))
                    })
                    .await
            }));
        }
        for task in tasks {
            assert_eq!(
                task.await.expect("joined").map(|t| t.secret().to_string()),
                Ok("shared".into())
            );
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }
}
