//! `POST /webhooks/github`: a delivery is checked (its `X-Hub-Signature-256` over the raw
//! body, before anything reads it), stored durably under its `X-GitHub-Delivery` id, and
//! answered; the work happens afterwards, in [`super::deliveries`]. A redelivery keeps its
//! id, so it is answered and not stored or handled again.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use flightdeck_engine::{Clock, SystemClock};
use flightdeck_github::webhook::{self, DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER};

use crate::routes::Shared;

/// Answers GitHub: 202 for a delivery taken (handled after the answer), 200 for one already
/// taken (a redelivery), 401 for a signature that does not check out, 400 for a delivery
/// without its id or event, 413 (by the route's body limit) for more than GitHub ever sends,
/// 503 when the store cannot keep it (GitHub shows the failure; it can be redelivered).
pub async fn deliveries(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(github) = state.github.clone() else {
        return (StatusCode::NOT_FOUND, "GitHub is not configured ([github])").into_response();
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim()
            .to_string()
    };
    if let Err(e) = webhook::verify_signature(github.secret(), &header(SIGNATURE_HEADER), &body) {
        github.report(&format!(
            "refused a webhook delivery ({} bytes, delivery id {:?}): {e}",
            body.len(),
            shown(&header(DELIVERY_HEADER))
        ));
        return (StatusCode::UNAUTHORIZED, e.to_string()).into_response();
    }
    let id = header(DELIVERY_HEADER);
    if !is_delivery_id(&id) {
        return (
            StatusCode::BAD_REQUEST,
            "the X-GitHub-Delivery header is missing or not a delivery id",
        )
            .into_response();
    }
    let event = header(EVENT_HEADER);
    if event.is_empty() || event.len() > 100 {
        return (
            StatusCode::BAD_REQUEST,
            "the X-GitHub-Event header is missing or too long",
        )
            .into_response();
    }
    let store = &state.engine.config().store;
    match store
        .record_delivery(&id, &event, &body, SystemClock.now_ms())
        .await
    {
        Ok(true) => {
            github.wake();
            (StatusCode::ACCEPTED, "queued").into_response()
        }
        Ok(false) => (StatusCode::OK, "already received").into_response(),
        Err(e) => {
            github.report(&format!("storing delivery {id} failed: {e}"));
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the delivery could not be stored; redeliver it",
            )
                .into_response()
        }
    }
}

/// GitHub's delivery ids are GUIDs; anything short and plain is accepted (GHES and tests),
/// nothing that could smuggle text into a log line.
fn is_delivery_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 100
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A header as a log line may show it: at most 100 printable characters.
fn shown(value: &str) -> String {
    value
        .chars()
        .filter(|c| !c.is_control())
        .take(100)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::is_delivery_id;

    #[test]
    fn delivery_ids_are_plain_and_short() {
        let cases = [
            ("72d3162e-cc78-11e3-81ab-4c9367dc0958", true),
            ("abc_123", true),
            ("", false),
            ("a b", false),
            ("x\ny", false),
            ("../etc", false),
        ];
        for (id, ok) in cases {
            assert_eq!(is_delivery_id(id), ok, "{id:?}");
        }
        assert!(!is_delivery_id(&"a".repeat(101)));
    }
}
