//! Approve / Deny clicks, by either road Slack sends them: `POST /slack/actions` (HTTP
//! mode: the `v0` signature over the raw body and its timestamp are checked before
//! anything reads it) or a Socket Mode envelope (the connection itself is authenticated by
//! the app-level token). Both end in [`take_click`].

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use flightdeck_app::AppError;
use flightdeck_engine::{Channel, Clock, SystemClock, Vote};
use flightdeck_slack::interactivity::ApprovalClick;
use flightdeck_slack::socket_mode::{Envelope, Handler, SocketMode};

use super::SlackChannel;
use crate::routes::Shared;

/// `POST /slack/actions`: an Approve or Deny click (HTTP mode). Answers 200 once the
/// decision is recorded or refused (Slack shows nothing for a 200 with no body); 401 for a
/// request whose signature does not check out, before its body is read.
pub async fn actions(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(slack) = state.slack.clone() else {
        return (StatusCode::NOT_FOUND, "slack is not configured").into_response();
    };
    let Some(secret) = slack.signing_secret.as_deref() else {
        return (
            StatusCode::NOT_FOUND,
            "HTTP mode is not configured ([slack] signing_secret_env); clicks come over Socket Mode",
        )
            .into_response();
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let now = SystemClock.now_ms() / 1000;
    if let Err(e) = flightdeck_slack::verify(
        secret,
        &header("x-slack-request-timestamp"),
        &header("x-slack-signature"),
        &body,
        now,
    ) {
        return (StatusCode::UNAUTHORIZED, e.to_string()).into_response();
    }
    let click = match flightdeck_slack::parse_approval_click(&body) {
        Ok(click) => click,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    take_click(&state, &slack, click).await;
    // The message is redrawn by the notifier, which the decision's append wakes.
    StatusCode::OK.into_response()
}

/// Judges a click like any vote and records it; tells who may not decide why, in a
/// message only they see. A click from another workspace is refused unread.
pub(super) async fn take_click(state: &Shared, slack: &SlackChannel, click: ApprovalClick) {
    match slack.team_id.get() {
        Some(team) if *team == click.team_id => {}
        Some(team) => {
            // Slack's signature (or the socket) vouches for the app, which may be installed
            // in several workspaces: only this installation's decides here.
            (slack.report)(&format!(
                "a click by {} came from Slack workspace {}, not this installation's {team}; nothing was recorded",
                click.user_id, click.team_id
            ));
            return;
        }
        None => {
            tell(
                slack,
                &click,
                "Nothing was recorded: flightdeck has not reached Slack's auth.test yet, so it cannot tell whether this click comes from its workspace. Try again in a minute.",
            )
            .await;
            return;
        }
    }
    let vouched_email = match vouched_email(state, slack, &click.user_id).await {
        Ok(email) => email,
        Err(e) => {
            (slack.report)(&format!("users.info {}: {e}", click.user_id));
            None
        }
    };
    let vote = Vote {
        approval_id: click.approval_id.clone(),
        by: click.user_id.clone(),
        approve: click.approve,
        comment: None,
        channel: Channel::Slack,
        vouched_email,
    };
    if let Err(e) = state.engine.decide_approval(vote).await {
        let refusal = AppError::from(e);
        let text = match &refusal.hint {
            Some(hint) => format!("Nothing was recorded: {}\n{hint}", refusal.message),
            None => format!("Nothing was recorded: {}", refusal.message),
        };
        tell(slack, &click, &text).await;
    }
}

/// The email Slack gives for a user `[people] slack` does not list, when the installation
/// allows the lookup (`[slack] resolve_by_email`).
async fn vouched_email(
    state: &Shared,
    slack: &SlackChannel,
    user: &str,
) -> Result<Option<String>, flightdeck_slack::SlackError> {
    if !slack.resolve_by_email {
        return Ok(None);
    }
    let known = state
        .engine
        .config()
        .people
        .resolve(user, Channel::Slack)
        .person
        .is_some();
    if known {
        return Ok(None);
    }
    slack.client.users_info(user).await
}

/// An ephemeral message to who clicked.
async fn tell(slack: &SlackChannel, click: &ApprovalClick, text: &str) {
    if let Err(e) = slack
        .client
        .chat_post_ephemeral(&click.channel_id, &click.user_id, text)
        .await
    {
        (slack.report)(&format!("telling {} why: {e}", click.user_id));
    }
}

/// Socket Mode, when `[slack] app_token_env` is set: runs until the server stops. Each
/// envelope is acknowledged as it arrives (Slack wants it within 3 s), then its click
/// taken like HTTP mode's.
pub(super) async fn socket_mode(state: Shared, slack: Arc<SlackChannel>) {
    let Some(app_token) = slack.app_token.clone() else {
        return;
    };
    let reporter = slack.clone();
    let socket = SocketMode::new(slack.client.clone(), app_token)
        .with_reporter(move |message| (reporter.report)(&format!("socket mode: {message}")));
    let handler: Handler = {
        let state = state.clone();
        let slack = slack.clone();
        Arc::new(move |envelope: Envelope| {
            let state = state.clone();
            let slack = slack.clone();
            Box::pin(async move { take_envelope(&state, &slack, envelope).await })
        })
    };
    let mut shutdown = state.shutdown.clone();
    socket
        .run(handler, async move {
            let _ = shutdown.wait_for(Option::is_some).await;
        })
        .await;
}

/// An envelope Socket Mode handed out: a click on our buttons, or something this app does
/// not take (reported).
async fn take_envelope(state: &Shared, slack: &SlackChannel, envelope: Envelope) {
    if envelope.kind != "interactive" {
        (slack.report)(&format!(
            "socket mode: an envelope of type {:?} was acknowledged and ignored",
            envelope.kind
        ));
        return;
    }
    let json = serde_json::to_vec(&envelope.payload).unwrap_or_default();
    match flightdeck_slack::interactivity::parse_payload_json(&json) {
        Ok(click) => take_click(state, slack, click).await,
        Err(e) => (slack.report)(&format!(
            "socket mode: envelope {} is not a click on flightdeck's buttons: {e}",
            envelope.envelope_id
        )),
    }
}
