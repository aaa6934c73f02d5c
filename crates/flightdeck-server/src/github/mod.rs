//! GitHub as a channel (`[github]`): missions from issues, approvals on pull requests, the
//! review feedback loop. What GitHub sends arrives at `POST /webhooks/github` (or, in poll
//! mode, is asked of the REST API); what flightdeck shows on GitHub is kept up to date
//! from the store's feed.
//!
//! - [`webhooks`] checks a delivery's signature on the raw body, stores it durably under
//!   its delivery id (a redelivery is recognised) and answers at once.
//! - [`deliveries`] handles the stored deliveries in order, after the answer: missions
//!   started, votes taken, pushes judged, follow-ups started.
//! - [`notifier`] keeps, for each mission from GitHub, its comment on the issue, the
//!   `flightdeck/approval` check run on the proposed head and, once it succeeded, the
//!   pull request ready for review with its final description.
//! - [`view`] is what those say.
//!
//! Publishing itself (the push and the draft pull request) is the engine's, through the
//! `Forge` port the app layer implements: it happens on the driver's path, recorded as
//! `change.proposed`, before the publish gate.

mod deliveries;
mod notifier;
pub mod poll;
mod view;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use flightdeck_app::github::GitHubApp;
use flightdeck_app::AppError;
use flightdeck_core::event::NotificationSent;
use flightdeck_github::GitHubClient;

pub use webhooks::deliveries as webhook;

mod webhooks;

use crate::feed_notifier::Memory;
use crate::routes::Shared;

/// The name of the check run that is the approval gate on a pull request.
pub const CHECK_NAME: &str = "flightdeck/approval";
/// `notification.sent` kinds on GitHub: the mission's comment on its issue, a check run,
/// the pull request made ready for review.
pub(crate) const COMMENT: &str = "comment";
pub(crate) const CHECK_RUN: &str = "check_run";
pub(crate) const READY: &str = "ready_for_review";

/// What reports a problem (the binary prints it; the server's library may not).
pub type Report = Box<dyn Fn(&str) + Send + Sync>;

/// The installation's GitHub App, as the server uses it.
pub struct GitHubChannel {
    app: Arc<GitHubApp>,
    /// The webhook secret (`[github] webhook_secret_env`); empty in poll mode.
    secret: Vec<u8>,
    public_url: String,
    /// Rings when a delivery was stored, so the handler takes it at once.
    wake: tokio::sync::Notify,
    memory: Memory,
    /// Missions seen not to come from GitHub (the notifier skips them without a load).
    not_ours: Mutex<HashSet<String>>,
    report: Report,
}

impl GitHubChannel {
    /// The channel over the app layer's GitHub App, with the webhook secret read from the
    /// environment: a missing secret in webhook mode is an error naming the key.
    pub fn new(
        app: Arc<GitHubApp>,
        public_url: &str,
        report: Report,
    ) -> Result<GitHubChannel, AppError> {
        let secret = match app.webhook_secret_env() {
            Some(name) => match std::env::var(name) {
                Ok(value) if !value.trim().is_empty() => value,
                _ => {
                    return Err(AppError::bad_input(
                        format!("[github] webhook_secret_env = \"{name}\": that environment variable is not set"),
                        Some("set it in serve's environment to the App's webhook secret (secrets are never written in the config)".to_string()),
                    ))
                }
            },
            None => String::new(),
        };
        Ok(GitHubChannel {
            app,
            secret: secret.trim().as_bytes().to_vec(),
            public_url: public_url.trim_end_matches('/').to_string(),
            wake: tokio::sync::Notify::new(),
            memory: Memory::new(),
            not_ours: Mutex::new(HashSet::new()),
            report,
        })
    }

    pub(crate) fn secret(&self) -> &[u8] {
        &self.secret
    }

    pub(crate) fn report(&self, message: &str) {
        (self.report)(message);
    }

    pub(crate) fn app(&self) -> &GitHubApp {
        &self.app
    }

    pub(crate) fn client(&self) -> &GitHubClient {
        self.app.client()
    }

    pub(crate) fn app_id(&self) -> u64 {
        self.app.app_id()
    }

    pub(crate) fn trigger_label(&self) -> &str {
        self.app.trigger_label()
    }

    /// The mission's page in the web UI.
    pub(crate) fn mission_url(&self, mission: &str) -> String {
        format!("{}/missions/{mission}", self.public_url)
    }

    /// A delivery was stored: the handler takes it now.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    pub(crate) async fn woken(&self) {
        self.wake.notified().await;
    }
}

/// A `notification.sent` on GitHub.
pub(crate) fn notification(
    target: &str,
    reference: &str,
    kind: &str,
    approval_id: Option<&str>,
    digest: Option<String>,
) -> NotificationSent {
    NotificationSent {
        channel: "github".to_string(),
        target: target.to_string(),
        reference: reference.to_string(),
        kind: kind.to_string(),
        approval_id: approval_id.map(str::to_string),
        digest,
        about: None,
    }
}

/// What a drawn text or check run is known by.
pub(crate) fn digest(text: &str) -> String {
    flightdeck_core::hash::sha256_hex(text.as_bytes())
}

/// Runs GitHub for the server until it stops: the deliveries' handler and the notifier,
/// and in poll mode the poller that stores what it finds as deliveries.
pub async fn run(state: Shared) {
    let Some(github) = state.github.clone() else {
        return;
    };
    let handler = deliveries::run(state.clone(), github.clone());
    let notifier = notifier::notify(state.clone(), github.clone());
    let poller = async {
        if github.app().polls() {
            poll::run(state.clone(), github.clone()).await;
        }
    };
    tokio::join!(handler, notifier, poller);
}
