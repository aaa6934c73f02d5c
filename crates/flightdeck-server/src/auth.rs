//! Who a request acts as, and whether it may.
//!
//! - A bearer token (`Authorization: Bearer fd_…`) is always checked when one is sent: an
//!   unknown, revoked or expired token, or one whose person left `[people]`, is refused
//!   (401) on every API route, even where none is needed.
//! - Otherwise a web session's cookie (see [`crate::sessions`]), its token checked again and
//!   its CSRF token required on every request that changes something.
//! - `[server] auth = "required"`: nothing without a valid token (401), except `/healthz`.
//! - `local-only` (the default, loopback addresses only): a request without a token acts as
//!   the installation's default identity with every role, as the command line does for the
//!   user who can read the data directory. So it must come from that user: the socket at the
//!   other end, open while the request is judged, must belong to the server's own uid, which
//!   keeps out other users of the machine and services such as a reverse proxy. And it must
//!   not come from a web page:
//!   the `Host` must name this server (a page whose DNS name was rebound to 127.0.0.1 is
//!   refused), and a request that is not a `GET` must say `Content-Type: application/json`
//!   (which no form can send and no script can without a preflight the server never
//!   answers), must not carry an `Origin` other than the server's own, and must not say it
//!   is cross-site or same-site (`Sec-Fetch-Site`).

use std::net::SocketAddr;

use axum::http::{header, HeaderMap, Method};
use flightdeck_app::tokens::{self, Principal, Role};
use flightdeck_app::{AppError, ErrorKind};
use flightdeck_engine::{Clock, SystemClock};

pub use flightdeck_app::config::ServerAuth as AuthMode;

use crate::sessions::SessionIdentity;
use crate::ServerState;

fn unauthenticated(message: &str) -> AppError {
    AppError::new(
        ErrorKind::Unauthenticated,
        message,
        Some(
            "send `Authorization: Bearer fd_…` with a token made by `flightdeck token create`"
                .to_string(),
        ),
    )
}

/// Who a request acts as, and the CSRF token its pages carry when it came with a session.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub principal: Principal,
    /// The session's CSRF token (signed in on the web); `None` for tokens and local requests.
    pub csrf: Option<String>,
}

/// The principal a request acts as, or why it has none.
///
/// A session cookie (see [`crate::sessions`]) counts when no bearer token is sent: a
/// request that changes something must then also send the session's CSRF token in
/// `X-CSRF-Token` (403 otherwise). A cookie of no live session is ignored.
pub async fn authenticate(
    state: &ServerState,
    method: &Method,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Result<Authenticated, AppError> {
    let now = SystemClock.now_ms();
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let presented = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token)
            .ok_or_else(|| unauthenticated("the Authorization header is not `Bearer <token>`"))?;
        let principal = tokens::authenticate(
            state.engine.config().store.as_ref(),
            &state.app.people,
            presented,
            now,
        )
        .await?;
        return Ok(Authenticated {
            principal,
            csrf: None,
        });
    }
    let session = crate::sessions::cookie(headers, crate::sessions::COOKIE)
        .and_then(|id| state.sessions.get(id, now).map(|s| (id, s)));
    if let Some((id, session)) = session {
        if !is_safe(method) {
            let sent = headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !crate::sessions::same_secret(sent, &session.csrf) {
                return Err(AppError::new(
                    ErrorKind::Forbidden,
                    "this request changes something and its X-CSRF-Token is missing or wrong",
                    Some("send the csrf-token of the page (meta name=\"csrf-token\") as X-CSRF-Token; reload the page if the session is new".to_string()),
                ));
            }
        }
        let principal = match &session.identity {
            SessionIdentity::Token { hash } => {
                tokens::authenticate_hash(
                    state.engine.config().store.as_ref(),
                    &state.app.people,
                    hash,
                    now,
                )
                .await
            }
            SessionIdentity::Person { handle } => match &state.oidc {
                Some(oidc)
                    if !state
                        .app
                        .people
                        .resolve(handle, flightdeck_policy::IdentityChannel::Web)
                        .is_unknown() =>
                {
                    Ok(Principal {
                        handle: handle.clone(),
                        role: oidc.role_of(handle),
                        token_id: None,
                        token_hash: None,
                    })
                }
                _ => Err(unauthenticated(&format!(
                    "{handle} is no longer someone who may sign in here"
                ))),
            },
        };
        let principal = match principal {
            Ok(principal) => principal,
            Err(e) => {
                // The token or the person went (revoked, expired, removed): so does the
                // session.
                state.sessions.close(id);
                return Err(e);
            }
        };
        return Ok(Authenticated {
            principal,
            csrf: Some(session.csrf),
        });
    }
    match state.auth {
        AuthMode::Required => Err(unauthenticated("this server needs a token")),
        AuthMode::LocalOnly => {
            check_local_user(state, peer).await?;
            check_local_request(state, method, headers)?;
            Ok(Authenticated {
                principal: Principal {
                    handle: state.local_identity.clone(),
                    role: Role::Admin,
                    token_id: None,
                    token_hash: None,
                },
                csrf: None,
            })
        }
    }
}

/// What a long-lived answer (an event stream) was opened with, to check again while it
/// lasts: revoking a token, signing out or a session's end closes it.
#[derive(Debug, Clone)]
pub enum Credential {
    /// A bearer token, by its hash.
    Token(String),
    /// A web session, by its cookie's id.
    Session(String),
    /// A local request of a `local-only` server: nothing that can be revoked.
    Local,
}

/// The credential `headers` authenticated `principal` with (as [`authenticate`] chose it).
pub fn credential_of(
    state: &ServerState,
    headers: &HeaderMap,
    principal: &Principal,
) -> Credential {
    if headers.contains_key(header::AUTHORIZATION) {
        if let Some(hash) = &principal.token_hash {
            return Credential::Token(hash.clone());
        }
    }
    let now = SystemClock.now_ms();
    match crate::sessions::cookie(headers, crate::sessions::COOKIE) {
        Some(id) if state.sessions.get(id, now).is_some() => Credential::Session(id.to_string()),
        _ => Credential::Local,
    }
}

/// Whether `credential` still lets its holder in.
pub async fn still_valid(state: &ServerState, credential: &Credential) -> bool {
    let now = SystemClock.now_ms();
    let store = state.engine.config().store.clone();
    let token_ok = |hash: String| {
        let store = store.clone();
        async move {
            tokens::authenticate_hash(store.as_ref(), &state.app.people, &hash, now)
                .await
                .is_ok()
        }
    };
    match credential {
        Credential::Local => true,
        Credential::Token(hash) => token_ok(hash.clone()).await,
        Credential::Session(id) => match state.sessions.get(id, now).map(|s| s.identity) {
            None => false,
            Some(SessionIdentity::Token { hash }) => token_ok(hash).await,
            Some(SessionIdentity::Person { handle }) => {
                state.oidc.is_some()
                    && !state
                        .app
                        .people
                        .resolve(&handle, flightdeck_policy::IdentityChannel::Web)
                        .is_unknown()
            }
        },
    }
}

/// Whether a request with `method` only reads.
pub fn is_safe(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// A request without a token comes from a process of the server's own user.
async fn check_local_user(state: &ServerState, peer: SocketAddr) -> Result<(), AppError> {
    let server_uid = nix::unistd::geteuid().as_raw();
    let refused = |why: String| {
        AppError::new(
            ErrorKind::Unauthenticated,
            format!("without a token, only the user the server runs as (uid {server_uid}) may use it: {why}"),
            Some("send `Authorization: Bearer fd_…` with a token made by `flightdeck token create`".to_string()),
        )
    };
    if !peer.ip().is_loopback() {
        return Err(refused(format!("{} is another machine", peer.ip())));
    }
    let server = state.local_addr;
    let uid = tokio::task::spawn_blocking(move || crate::peer::loopback_peer_uid(peer, server))
        .await
        .ok()
        .flatten();
    match uid {
        Some(uid) if uid == server_uid => Ok(()),
        Some(uid) => Err(refused(format!("this request comes from uid {uid}"))),
        None => Err(refused(
            "the kernel does not say whose this connection is".to_string(),
        )),
    }
}

/// The browser checks of a `local-only` request without a token (see the module doc).
fn check_local_request(
    state: &ServerState,
    method: &Method,
    headers: &HeaderMap,
) -> Result<(), AppError> {
    let forbidden = |message: String| {
        AppError::new(
            ErrorKind::Forbidden,
            message,
            Some(format!(
                "open the server as http://{} or send a token",
                state.local_addr
            )),
        )
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if !is_local_authority(host, state.local_addr) {
        return Err(forbidden(format!(
            "Host `{host}` does not name this server"
        )));
    }
    if is_safe(method) {
        return Ok(());
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(AppError::new(
            ErrorKind::Forbidden,
            "a request that changes something must say `Content-Type: application/json`",
            Some("e.g. curl -X POST -H 'Content-Type: application/json' …".to_string()),
        ));
    }
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site" || v == "same-site")
    {
        return Err(forbidden(
            "a request another site made is refused".to_string(),
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        let authority = origin.strip_prefix("http://").unwrap_or("");
        if !is_local_authority(authority, state.local_addr) {
            return Err(forbidden(format!(
                "a request from origin `{origin}` is refused"
            )));
        }
    }
    Ok(())
}

/// Whether `authority` (`host[:port]`, as `Host` or an `http://` origin has it) names this
/// machine at the server's port (no port is 80, as a browser leaves it out).
fn is_local_authority(authority: &str, local: SocketAddr) -> bool {
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !port.contains(']') => (host, port.parse().ok()),
        _ => (authority, Some(80)),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host_ok = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    port == Some(local.port()) && host_ok
}

/// Refuses a principal whose role is below `needed` (403).
pub fn require(principal: &Principal, needed: Role) -> Result<(), AppError> {
    if principal.role.allows(needed) {
        return Ok(());
    }
    Err(AppError::new(
        ErrorKind::Forbidden,
        format!(
            "{} acts as {} here; this needs the role {needed}",
            principal.handle, principal.role
        ),
        Some("an admin can make a token with that role: `flightdeck token create --for HANDLE --role ROLE`".to_string()),
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn local_authorities_are_loopback_names_at_the_servers_port() {
        let on_80: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert!(is_local_authority("localhost", on_80));
        assert!(is_local_authority("[::1]", on_80));
        let local: SocketAddr = "127.0.0.1:7777".parse().unwrap();
        for (authority, ok) in [
            ("127.0.0.1:7777", true),
            ("localhost:7777", true),
            ("LOCALHOST", false),
            ("localhost", false),
            ("127.0.0.1", false),
            ("[::1]:7777", true),
            ("127.0.0.2:7777", true),
            ("127.0.0.1:7778", false),
            ("evil.example:7777", false),
            ("127.0.0.1.evil.example:7777", false),
            ("", false),
            ("localhost:x", false),
        ] {
            assert_eq!(is_local_authority(authority, local), ok, "{authority}");
        }
    }
}
