//! Signing in with an API token, and out.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use flightdeck_app::{tokens, AppError, ErrorKind};
use flightdeck_engine::{Clock, SystemClock};
use maud::html;
use serde::Deserialize;

use super::{error_box, page, Nav};
use crate::auth::authenticate;
use crate::oidc;
use crate::routes::Shared;
use crate::sessions::{self, SessionIdentity};

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// Where to go after signing in: a path of this server, never another site. Browsers drop
/// tabs and line breaks from URLs (`/<tab>/evil` is `//evil`) and read a backslash as `/`,
/// so a path with any of them, any other control character or a space is refused.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n
                    .chars()
                    .any(|c| c == '\\' || c.is_control() || c.is_whitespace()) =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

fn login_page(
    state: &Shared,
    next: &str,
    error: Option<&AppError>,
    local_note: Option<&str>,
) -> Response {
    let sso = state.oidc.is_some();
    let body = html! {
        section.narrow {
            h1 { "Sign in" }
            @if let Some(handle) = local_note {
                p.note {
                    "This browser runs on the server's machine as its user, so it acts as "
                    strong { (handle) } " without signing in. "
                    a href=(next) { "Continue" } ", or sign in with a token to act as someone else."
                }
            }
            @if let Some(e) = error { (error_box(e)) }
            @if sso {
                p { a.button #sso href=(format!("/auth/oidc/start?next={}", super::url_encode(next))) { "Sign in with single sign-on" } }
                p.hint { "Or with an API token:" }
            }
            form.stack method="post" action="/login" {
                label for="token" { "API token" }
                input #token type="password" name="token" autocomplete="off" required placeholder="fd_…" autofocus;
                input type="hidden" name="next" value=(next);
                button type="submit" { "Sign in" }
            }
            p.hint { "An admin makes tokens with " code { "flightdeck token create --for HANDLE --role ROLE" } "." }
        }
    };
    let mut response = page("Sign in", None, Nav::None, body);
    if let Some(e) = error {
        *response.status_mut() =
            StatusCode::from_u16(e.kind.http_status()).unwrap_or(StatusCode::UNAUTHORIZED);
    }
    response
}

pub async fn form(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<LoginQuery>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    // Already someone (a session, or the local user on a local-only server): say so.
    let local = match authenticate(&state, &Method::GET, &headers, peer).await {
        Ok(who) if who.csrf.is_some() => return Redirect::to(&next).into_response(),
        Ok(who) => Some(who.principal.handle),
        Err(_) => None,
    };
    login_page(&state, &next, None, local.as_deref())
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

/// A sign-in form another site posted would sign the browser in as someone of the other
/// site's choosing: refused when the browser says the request is not from this origin (the
/// `Host` it was sent to, or `[server] public_url` behind a proxy that rewrites `Host`).
fn check_same_origin(headers: &HeaderMap, public_url: Option<&str>) -> Result<(), AppError> {
    let refused = |why: String| {
        AppError::new(
            ErrorKind::Forbidden,
            why,
            Some("sign in from this server's own sign-in page".to_string()),
        )
    };
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if site != "same-origin" && site != "none" {
            return Err(refused(format!(
                "a sign-in from another site ({site}) is refused"
            )));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or_default();
        let public = public_url
            .map(|u| u.trim_end_matches('/'))
            .is_some_and(|u| u.eq_ignore_ascii_case(origin));
        if !public && (authority.is_empty() || !authority.eq_ignore_ascii_case(host)) {
            return Err(refused(format!(
                "a sign-in from origin `{origin}` is refused"
            )));
        }
    }
    Ok(())
}

pub async fn sign_in(
    State(state): State<Shared>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return login_page(
            &state,
            "/",
            Some(&AppError::bad_input(
                "the sign-in form was not sent as a form",
                None,
            )),
            None,
        );
    };
    let next = safe_next(form.next.as_deref());
    if let Err(e) = check_same_origin(&headers, state.app.config.server.public_url.as_deref()) {
        return login_page(&state, &next, Some(&e), None);
    }
    let now = SystemClock.now_ms();
    let store = state.engine.config().store.clone();
    let principal =
        match tokens::authenticate(store.as_ref(), &state.app.people, &form.token, now).await {
            Ok(p) => p,
            Err(e) => return login_page(&state, &next, Some(&e), None),
        };
    // A session this browser had is over: one browser, one session.
    if let Some(old) = sessions::cookie(&headers, sessions::COOKIE) {
        state.sessions.close(old);
    }
    let hash = principal.token_hash.clone().unwrap_or_default();
    let expires = match store.token_by_hash(&hash).await {
        Ok(Some(row)) => row.expires_at_ms,
        _ => None,
    };
    sessions::signed_in_redirect(&state, SessionIdentity::Token { hash }, expires, now, &next)
        .unwrap_or_else(|e| login_page(&state, &next, Some(&e), None))
}

/// Sends the browser to the provider, with a cookie that binds the flow to it.
pub async fn oidc_start(
    State(state): State<Shared>,
    axum::extract::Query(q): axum::extract::Query<LoginQuery>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    let Some(oidc) = &state.oidc else {
        return super::error_page(&AppError::not_found(
            "single sign-on is not configured here",
            Some(
                "an admin configures it under [server.oidc]; sign in with a token meanwhile"
                    .to_string(),
            ),
        ));
    };
    match oidc.start(&next, SystemClock.now_ms()).await {
        Ok((url, flow_state)) => {
            let mut response = Redirect::to(&url).into_response();
            let cookie = format!(
                "{}={flow_state}; Path=/auth/oidc; HttpOnly; SameSite=Lax; Max-Age=600{}",
                oidc::STATE_COOKIE,
                if state.served_over_https() {
                    "; Secure"
                } else {
                    ""
                }
            );
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Err(e) => login_page(&state, &next, Some(&e), None),
    }
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Where the provider sends the browser back: the flow finished, a session opened.
pub async fn oidc_callback(
    State(state): State<Shared>,
    headers: HeaderMap,
    q: Result<axum::extract::Query<CallbackQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(oidc) = &state.oidc else {
        return super::error_page(&AppError::not_found(
            "single sign-on is not configured here",
            None,
        ));
    };
    let q = q.map(|axum::extract::Query(q)| q);
    // Only this browser's own flow may end here, with an error or a code; another page
    // sending the browser here neither shows a message nor ends the flow in progress.
    let ours = match (
        sessions::cookie(&headers, oidc::STATE_COOKIE),
        q.as_ref().ok().and_then(|q| q.state.as_deref()),
    ) {
        (Some(cookie), Some(sent)) => sessions::same_secret(cookie, sent),
        _ => false,
    };
    let finished = async {
        let q =
            q.map_err(|e| AppError::bad_input(format!("bad callback: {}", e.body_text()), None))?;
        if !ours {
            return Err(AppError::new(
                ErrorKind::Unauthenticated,
                "this sign-in was not started by this browser (its state does not match)",
                Some("start again from the sign-in page".to_string()),
            ));
        }
        if let Some(error) = q.error {
            return Err(AppError::new(
                ErrorKind::Unauthenticated,
                format!(
                    "the sign-in provider said: {error}{}",
                    q.error_description
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                ),
                Some("try again, or sign in with a token".to_string()),
            ));
        }
        let (Some(code), Some(flow_state)) = (q.code, q.state) else {
            return Err(AppError::bad_input(
                "the provider sent back no code or state",
                Some("start again from the sign-in page".to_string()),
            ));
        };
        let now = SystemClock.now_ms();
        let signed = oidc
            .finish(
                &flow_state,
                sessions::cookie(&headers, oidc::STATE_COOKIE),
                &code,
                &state.app.people,
                now,
            )
            .await?;
        sessions::signed_in_redirect(
            &state,
            SessionIdentity::Person {
                handle: signed.handle,
            },
            None,
            now,
            &safe_next(Some(&signed.next)),
        )
    }
    .await;
    let mut response = finished.unwrap_or_else(|e| login_page(&state, "/", Some(&e), None));
    if ours {
        let clear = format!(
            "{}=; Path=/auth/oidc; HttpOnly; SameSite=Lax; Max-Age=0",
            oidc::STATE_COOKIE
        );
        if let Ok(value) = HeaderValue::from_str(&clear) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

#[derive(Deserialize)]
pub struct LogoutForm {
    csrf: String,
}

pub async fn sign_out(
    State(state): State<Shared>,
    headers: HeaderMap,
    form: Result<Form<LogoutForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let now = SystemClock.now_ms();
    if let Some(id) = sessions::cookie(&headers, sessions::COOKIE) {
        if let Some(session) = state.sessions.get(id, now) {
            let sent = form.as_ref().map(|f| f.csrf.as_str()).unwrap_or_default();
            if !sessions::same_secret(sent, &session.csrf) {
                return super::error_page(&AppError::new(
                    ErrorKind::Forbidden,
                    "signing out needs the page's CSRF token",
                    Some("use the Sign out button of a page of this server".to_string()),
                ));
            }
            state.sessions.close(id);
        }
    }
    let mut response = Redirect::to("/login").into_response();
    if let Ok(value) = HeaderValue::from_str(&sessions::clear_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_server() {
        for (given, kept) in [
            (Some("/missions/m-1?seq=3"), "/missions/m-1?seq=3"),
            (Some("//evil.example/"), "/"),
            (Some("https://evil.example/"), "/"),
            (Some("/\\evil.example"), "/"),
            (Some("/\t/evil.example"), "/"),
            (Some("/\n/evil.example"), "/"),
            (Some("/ /evil.example"), "/"),
            (None, "/"),
        ] {
            assert_eq!(safe_next(given), kept, "{given:?}");
        }
    }

    fn check_same_origin_t(headers: &HeaderMap) -> Result<(), AppError> {
        check_same_origin(headers, Some("https://fd.acme.example"))
    }

    #[test]
    fn sign_ins_from_other_origins_are_refused() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, v.parse().unwrap());
            }
            h
        };
        assert!(check_same_origin_t(&headers(&[("host", "fd.example:7777")])).is_ok());
        assert!(check_same_origin_t(&headers(&[
            ("host", "fd.example:7777"),
            ("origin", "http://fd.example:7777"),
            ("sec-fetch-site", "same-origin"),
        ]))
        .is_ok());
        assert!(check_same_origin_t(&headers(&[
            ("host", "fd.example:7777"),
            ("origin", "http://evil.example"),
        ]))
        .is_err());
        assert!(check_same_origin_t(&headers(&[
            ("host", "fd.example:7777"),
            ("sec-fetch-site", "cross-site"),
        ]))
        .is_err());
        assert!(check_same_origin_t(&headers(&[("host", "a"), ("origin", "null")])).is_err());
        // Behind a proxy that rewrites Host: the public URL's origin.
        assert!(check_same_origin_t(&headers(&[
            ("host", "127.0.0.1:7777"),
            ("origin", "https://fd.acme.example"),
        ]))
        .is_ok());
    }
}
