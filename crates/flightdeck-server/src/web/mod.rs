//! The web UI: pages rendered on the server (maud, which escapes everything it is given)
//! from the same queries and views as the API and the CLI, and one small script
//! (`assets/app.js`) for live updates, keyboard navigation and actions. Actions call the
//! JSON API with the session's CSRF token; nothing here changes a mission itself.
//!
//! Every page sends a Content-Security-Policy that allows only this server's own script and
//! style (no inline script runs, whatever a mission wrote) and no framing.

mod approvals;
mod login;
mod metrics;
mod mission;
mod missions;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use flightdeck_app::tokens::{Principal, Role};
use flightdeck_app::{AppError, ErrorKind};
use flightdeck_core::MissionStatus;
use maud::{html, Markup, PreEscaped, DOCTYPE};

use crate::auth::authenticate;
use crate::routes::Shared;

pub fn router() -> Router<Shared> {
    Router::new()
        .route("/", get(missions::list))
        .route("/missions/new", get(missions::new_form))
        .route("/missions/{id}", get(mission::show))
        .route("/missions/{id}/diff", get(mission::diff))
        .route("/approvals", get(approvals::inbox))
        .route("/metrics", get(metrics::show))
        .route("/login", get(login::form).post(login::sign_in))
        .route("/logout", post(login::sign_out))
        .route("/auth/oidc/start", get(login::oidc_start))
        .route(crate::oidc::CALLBACK_PATH, get(login::oidc_callback))
        .route("/assets/app.css", get(css))
        .route("/assets/app.js", get(js))
}

const APP_CSS: &str = include_str!("../../assets/app.css");
const APP_JS: &str = include_str!("../../assets/app.js");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// Who looks at a page. Without credentials, the page sends them to sign in.
pub struct Viewer {
    pub principal: Principal,
    /// The session's CSRF token, which the page gives its script (`None`: a local request
    /// on a `local-only` server, which needs none).
    pub csrf: Option<String>,
}

impl Viewer {
    pub fn may(&self, role: Role) -> bool {
        self.principal.role.allows(role)
    }
}

impl FromRequestParts<Shared> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Viewer, Response> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
            .ok_or_else(|| error_page(&AppError::failed("the peer's address is unknown")))?;
        match authenticate(state, &parts.method, &parts.headers, peer).await {
            Ok(who) => Ok(Viewer {
                principal: who.principal,
                csrf: who.csrf,
            }),
            Err(e) if e.kind == ErrorKind::Unauthenticated => {
                let next = parts
                    .uri
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_string();
                Err(Redirect::to(&format!("/login?next={}", url_encode(&next))).into_response())
            }
            Err(e) => Err(error_page(&e)),
        }
    }
}

/// `text` percent-encoded for a query string.
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Which page of the navigation is open.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Missions,
    Approvals,
    Metrics,
    New,
    None,
}

/// A whole page: the navigation, who is signed in, and `body`.
pub fn page(title: &str, viewer: Option<&Viewer>, nav: Nav, body: Markup) -> Response {
    let link = |to: Nav, href: &str, label: &str| {
        html! { a href=(href) aria-current=[(nav == to).then_some("page")] { (label) } }
    };
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(csrf) = viewer.and_then(|v| v.csrf.as_deref()) {
                    meta name="csrf-token" content=(csrf);
                }
                title { (title) " · flightdeck" }
                link rel="icon" href="data:,";
                link rel="stylesheet" href="/assets/app.css";
                script src="/assets/app.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/" { "flightdeck" }
                    @if let Some(viewer) = viewer {
                        nav {
                            (link(Nav::Missions, "/", "Missions"))
                            (link(Nav::Approvals, "/approvals", "Approvals"))
                            (link(Nav::Metrics, "/metrics", "Metrics"))
                            @if viewer.may(Role::Operator) {
                                (link(Nav::New, "/missions/new", "New mission"))
                            }
                        }
                        div.who {
                            span title=(format!("role: {}", viewer.principal.role)) {
                                (viewer.principal.handle) " · " (viewer.principal.role.as_str())
                            }
                            @if let Some(csrf) = viewer.csrf.as_deref() {
                                form method="post" action="/logout" {
                                    input type="hidden" name="csrf" value=(csrf);
                                    button.link type="submit" { "Sign out" }
                                }
                            }
                        }
                    }
                }
                div #flash role="alert" hidden {}
                main #main { (body) }
                footer { "Press " kbd { "?" } " for keyboard shortcuts." }
            }
        }
    };
    html_response(StatusCode::OK, markup)
}

/// `markup` with the headers every page has.
pub fn html_response(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    let headers = response.headers_mut();
    let set = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    for (name, value) in set {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// An error as a page, with the status of its kind.
pub fn error_page(e: &AppError) -> Response {
    let status =
        StatusCode::from_u16(e.kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Error · flightdeck" }
                link rel="icon" href="data:,";
                link rel="stylesheet" href="/assets/app.css";
            }
            body {
                header.top { a.brand href="/" { "flightdeck" } }
                main #main {
                    (error_box(e))
                    p { a href="/" { "Back to the missions" } }
                }
            }
        }
    };
    html_response(status, markup)
}

/// What went wrong, and the hint.
pub fn error_box(e: &AppError) -> Markup {
    html! {
        div.error-box {
            p { strong { (e.kind.as_str()) ": " } (e.message) }
            @if let Some(hint) = &e.hint { p.hint { "hint: " (hint) } }
        }
    }
}

/// A status as a coloured label.
pub fn status_badge(status: MissionStatus) -> Markup {
    let text = status.as_str();
    html! { span class=(format!("badge status-{text}")) { (text.replace('_', " ")) } }
}

/// How long ago `at` (RFC 3339) was, from `now_ms`, in a word or two.
pub fn age(at: &str, now_ms: i64) -> String {
    let Some(then) = flightdeck_core::clock::parse_rfc3339_millis(at) else {
        return at.to_string();
    };
    let s = (now_ms - then).max(0) / 1000;
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3_599 => format!("{} min ago", s / 60),
        3_600..=86_399 => format!("{} h ago", s / 3_600),
        _ => format!("{} d ago", s / 86_400),
    }
}

/// Dollars, to the cent below a dollar's hundredth shown as such.
pub fn usd(amount: f64) -> String {
    // An empty sum is -0.0.
    let amount = amount + 0.0;
    if amount > 0.0 && amount < 0.01 {
        format!("${amount:.4}")
    } else {
        format!("${amount:.2}")
    }
}

/// Text that a mission wrote, at most `max` bytes of it (cut on a character boundary),
/// and whether it was cut.
pub fn capped(bytes: &[u8], max: usize) -> (String, bool) {
    let text = String::from_utf8_lossy(bytes);
    if text.len() <= max {
        return (text.into_owned(), false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (text[..end].to_string(), true)
}

/// A unified diff, each line marked as added, removed or a header for the stylesheet.
pub fn diff_view(patch: &str) -> Markup {
    html! {
        pre.diff {
            @for line in patch.lines() {
                @let class = if line.starts_with("+++") || line.starts_with("---") || line.starts_with("diff ") || line.starts_with("index ") {
                    "d-file"
                } else if line.starts_with("@@") {
                    "d-hunk"
                } else if line.starts_with('+') {
                    "d-add"
                } else if line.starts_with('-') {
                    "d-del"
                } else {
                    "d-ctx"
                };
                span class=(class) { (line) } (PreEscaped("\n"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_text_are_encoded_and_cut_safely() {
        assert_eq!(
            url_encode("/missions/m-1?x=a b&c"),
            "/missions/m-1%3Fx%3Da%20b%26c"
        );
        assert_eq!(capped("héllo".as_bytes(), 2), ("h".to_string(), true));
        assert_eq!(capped(b"abc", 3), ("abc".to_string(), false));
        assert_eq!(usd(0.004), "$0.0040");
        assert_eq!(usd(1.5), "$1.50");
        assert_eq!(usd(-0.0), "$0.00");
    }

    #[test]
    fn diffs_escape_what_the_mission_wrote() {
        let shown = diff_view("+<script>alert(1)</script>\n-old").into_string();
        assert!(shown.contains("&lt;script&gt;"), "{shown}");
        assert!(!shown.contains("<script>"), "{shown}");
        assert!(shown.contains("class=\"d-add\""));
    }
}
