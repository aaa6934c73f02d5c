//! Who a request acts as, and whether it may.
//!
//! - A bearer token (`Authorization: Bearer fd_…`) is always checked when one is sent: an
//!   unknown, revoked or expired token is refused (401) even where none is needed.
//! - `[server] auth = "required"`: nothing without a valid token (401), except `/healthz`.
//! - `local-only` (the default, loopback addresses only): a request without a token acts as
//!   the installation's default identity with every role, as the CLI on this machine does.
//!   Browsers are kept from using that: the `Host` must name this machine (a page whose
//!   DNS name was rebound to 127.0.0.1 is refused), and a request that is not a `GET` is
//!   refused when it carries an `Origin` other than the server's own or says it is
//!   cross-site (`Sec-Fetch-Site`): another site's form cannot post to it.

use std::net::SocketAddr;

use axum::http::{header, HeaderMap, Method};
use flightdeck_app::tokens::{self, Principal, Role};
use flightdeck_app::{AppError, ErrorKind};
use flightdeck_engine::{Clock, SystemClock};

pub use flightdeck_app::config::ServerAuth as AuthMode;

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

/// The principal a request acts as, or why it has none.
pub async fn authenticate(
    state: &ServerState,
    method: &Method,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Result<Principal, AppError> {
    let now = SystemClock.now_ms();
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let presented = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| unauthenticated("the Authorization header is not `Bearer <token>`"))?;
        return tokens::authenticate(state.engine.config().store.as_ref(), presented, now).await;
    }
    match state.auth {
        AuthMode::Required => Err(unauthenticated("this server needs a token")),
        AuthMode::LocalOnly => {
            if !peer.ip().is_loopback() {
                return Err(unauthenticated(
                    "only requests from this machine go without a token",
                ));
            }
            check_local_request(state, method, headers)?;
            Ok(Principal {
                handle: state.local_identity.clone(),
                role: Role::Admin,
                token_id: None,
            })
        }
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
    if method == Method::GET || method == Method::HEAD {
        return Ok(());
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

/// Whether `authority` (`host[:port]`) names this machine at the server's port.
fn is_local_authority(authority: &str, local: SocketAddr) -> bool {
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !port.contains(']') => (host, Some(port)),
        _ => (authority, None),
    };
    let port_ok = port.is_none_or(|p| p.parse::<u16>().ok() == Some(local.port()));
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host_ok = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    port_ok && host_ok
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
        let local: SocketAddr = "127.0.0.1:7777".parse().unwrap();
        for (authority, ok) in [
            ("127.0.0.1:7777", true),
            ("localhost:7777", true),
            ("LOCALHOST", true),
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
