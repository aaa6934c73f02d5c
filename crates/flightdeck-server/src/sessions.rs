//! Web sessions: a browser signs in once with an API token and then carries a cookie.
//!
//! - The cookie (`fd_session`) holds a random id, `HttpOnly` (no script reads it) and
//!   `SameSite=Lax` (no other site's form or script sends it; a link from Slack or GitHub
//!   still opens the page signed in). The server keeps only the id's SHA-256.
//! - A session keeps the hash of the token it was opened with, never the token, and every
//!   request checks that token again: revoking or expiring it, or taking its person out of
//!   `[people]`, ends the session at the next request.
//! - Each session has a CSRF token, which the pages carry; every request that changes
//!   something must send it back (`X-CSRF-Token`, or the `csrf` field of the sign-out form).
//!
//! Sessions live in the server's memory: a restarted server asks people to sign in again,
//! and nothing else is lost (what a session did is in the timelines).

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

/// The session cookie's name.
pub const COOKIE: &str = "fd_session";
/// How long a session lasts at most (the token's own expiry may end it sooner).
pub const SESSION_TTL_MS: i64 = 12 * 3_600_000;
/// The most sessions kept at once: the oldest go first beyond it.
const MAX_SESSIONS: usize = 10_000;

/// How a browser signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionIdentity {
    /// With an API token: the SHA-256 of the token (checked again at every request).
    Token { hash: String },
    /// With the OpenID Connect provider, as this person (still in `[people]` at every
    /// request; the role is `[server.oidc]`'s).
    Person { handle: String },
}

/// One signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    pub identity: SessionIdentity,
    /// What state-changing requests must send back.
    pub csrf: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
}

/// The sessions of this server, by the SHA-256 of their ids.
#[derive(Default)]
pub struct Sessions {
    by_id_hash: Mutex<HashMap<String, Session>>,
}

/// 32 random bytes, URL-safe base64.
pub(crate) fn random_secret() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn id_hash(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.by_id_hash
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens a session for `identity`, until `expires_at_ms` at the latest (a token's
    /// expiry). Returns the cookie's value (the id) and the session.
    pub fn open(
        &self,
        identity: SessionIdentity,
        now_ms: i64,
        token_expires_at_ms: Option<i64>,
    ) -> Result<(String, Session), getrandom::Error> {
        let id = random_secret()?;
        let session = Session {
            identity,
            csrf: random_secret()?,
            created_at_ms: now_ms,
            expires_at_ms: token_expires_at_ms
                .map_or(now_ms + SESSION_TTL_MS, |t| t.min(now_ms + SESSION_TTL_MS)),
        };
        let mut sessions = self.lock();
        sessions.retain(|_, s| s.expires_at_ms > now_ms);
        while sessions.len() >= MAX_SESSIONS {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, s)| s.created_at_ms)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(key) => sessions.remove(&key),
                None => break,
            };
        }
        sessions.insert(id_hash(&id), session.clone());
        Ok((id, session))
    }

    /// The live session whose id is `id`.
    pub fn get(&self, id: &str, now_ms: i64) -> Option<Session> {
        let key = id_hash(id);
        let mut sessions = self.lock();
        match sessions.get(&key) {
            Some(s) if s.expires_at_ms > now_ms => Some(s.clone()),
            Some(_) => {
                sessions.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Ends the session whose id is `id` (signing out).
    pub fn close(&self, id: &str) {
        self.lock().remove(&id_hash(id));
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Compares secrets in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `Set-Cookie` value that gives the browser session `id` (`secure` when the server is
/// reached over https).
pub fn set_cookie(id: &str, max_age_s: i64, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_s}{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0")
}

/// Opens a session for `identity` and answers with a redirect to `next` that sets its
/// cookie.
pub fn signed_in_redirect(
    state: &crate::ServerState,
    identity: SessionIdentity,
    token_expires_at_ms: Option<i64>,
    now_ms: i64,
    next: &str,
) -> Result<axum::response::Response, flightdeck_app::AppError> {
    use axum::response::IntoResponse;
    let (id, session) = state
        .sessions
        .open(identity, now_ms, token_expires_at_ms)
        .map_err(|e| {
            flightdeck_app::AppError::failed(format!("cannot get random bytes for a session: {e}"))
        })?;
    let cookie = set_cookie(
        &id,
        (session.expires_at_ms - now_ms) / 1000,
        state.served_over_https(),
    );
    let mut response = axum::response::Redirect::to(next).into_response();
    if let Ok(value) = axum::http::HeaderValue::from_str(&cookie) {
        response
            .headers_mut()
            .insert(axum::http::header::SET_COOKIE, value);
    }
    Ok(response)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_id_until_it_expires_or_closes() {
        let sessions = Sessions::default();
        let token = || SessionIdentity::Token {
            hash: "hash".to_string(),
        };
        let (id, session) = sessions.open(token(), 1_000, Some(5_000)).unwrap();
        assert_eq!(session.expires_at_ms, 5_000, "the token's expiry bounds it");
        assert_eq!(sessions.get(&id, 4_999).unwrap().csrf, session.csrf);
        assert!(sessions.get(&id, 5_000).is_none());
        let (id, _) = sessions.open(token(), 1_000, None).unwrap();
        assert!(sessions.get(&id, 1_000 + SESSION_TTL_MS - 1).is_some());
        assert!(sessions.get("not-an-id", 1_000).is_none());
        sessions.close(&id);
        assert!(sessions.get(&id, 1_001).is_none());
    }

    #[test]
    fn cookies_and_secrets() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            axum::http::header::COOKIE,
            "a=1; fd_session=abc ; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&headers, COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "c"), None);
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
        assert!(set_cookie("x", 60, true).contains("HttpOnly; SameSite=Lax; Max-Age=60; Secure"));
    }
}
