//! Approvals in Slack (`[slack]`): one message per approval request in the channel of its
//! approvers' team, kept up to date, with its mission's news in the message's thread; the
//! Approve / Deny clicks come over Socket Mode (an app-level token: no public URL needed)
//! or to `POST /slack/actions` (HTTP mode, checked with the signing secret), or both.
//!
//! - [`notifier`] posts, redraws, reminds and reports in threads, run by
//!   [`crate::feed_notifier`] (the store's global feed tailed from a durable cursor); what
//!   it sends is recorded as `notification.sent` while the mission can still take events.
//! - [`clicks`] turns a click into a vote judged like every channel's
//!   (`Engine::decide_approval` with `Channel::Slack`); who may not decide is told why in
//!   an ephemeral message, and nothing is recorded.
//! - [`view`] is what the messages say, from the mission's state.

mod clicks;
mod notifier;
mod view;

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use flightdeck_app::config::SlackSection;
use flightdeck_app::AppError;
use flightdeck_core::state::ApprovalProgress;
use flightdeck_slack::{AppToken, BotToken, SlackClient};

pub use clicks::actions;

use crate::feed_notifier::{self, Memory};
use crate::routes::Shared;

/// What reports a problem (the binary prints it; the server's library may not).
pub type Report = Box<dyn Fn(&str) + Send + Sync>;

/// The installation's Slack: the client, how clicks arrive and are checked, where
/// requests go.
pub struct SlackChannel {
    client: SlackClient,
    /// HTTP mode's signing secret, when configured.
    signing_secret: Option<Vec<u8>>,
    /// Socket Mode's app-level token, when configured.
    app_token: Option<AppToken>,
    channels: BTreeMap<String, String>,
    public_url: String,
    resolve_by_email: bool,
    remind_before_ms: i64,
    /// The workspace the bot token belongs to (`auth.test`), once known: a click from any
    /// other is refused.
    team_id: OnceLock<String>,
    /// What the notifier keeps in memory between syncs: whether it notifies now (holds the
    /// store's lease on the notifier), what it sent that a finished mission's timeline could
    /// not record (statuses, reminders, each request's channel and `ts` as posted, each
    /// message's digest as drawn), the finished missions it is done with.
    memory: Memory,
    report: Report,
}

impl SlackChannel {
    /// Checks `[slack]` and reads its secrets from the environment: a bad entry is an error
    /// naming the key, with a hint, before the server starts.
    pub fn from_config(
        config: &SlackSection,
        public_url: &str,
        report: Report,
    ) -> Result<SlackChannel, AppError> {
        let bad = |what: String, hint: &str| {
            AppError::bad_input(format!("[slack] {what}"), Some(hint.to_string()))
        };
        let env = |key: &str, name: &str| match std::env::var(name) {
            Ok(value) if !value.trim().is_empty() => Ok(value.trim().to_string()),
            _ => Err(bad(
                format!("{key} = \"{name}\": that environment variable is not set"),
                "set it in serve's environment (secrets are never written in the config)",
            )),
        };
        let token = env("bot_token_env", &config.bot_token_env)?;
        if !token.starts_with("xoxb-") {
            return Err(bad(
                format!(
                    "bot_token_env = \"{}\": the token is not a bot token (xoxb-…)",
                    config.bot_token_env
                ),
                "use the app's Bot User OAuth Token (OAuth & Permissions)",
            ));
        }
        let app_token = match &config.app_token_env {
            Some(name) => {
                let value = env("app_token_env", name)?;
                if !value.starts_with("xapp-") {
                    return Err(bad(
                        format!("app_token_env = \"{name}\": the token is not an app-level token (xapp-…)"),
                        "Socket Mode connects with an app-level token with the connections:write scope (Basic Information → App-Level Tokens)",
                    ));
                }
                Some(AppToken::new(value))
            }
            None => None,
        };
        let signing_secret = match &config.signing_secret_env {
            Some(name) => Some(env("signing_secret_env", name)?.into_bytes()),
            None => None,
        };
        if app_token.is_none() && signing_secret.is_none() {
            return Err(bad(
                "has neither app_token_env nor signing_secret_env: clicks could not reach flightdeck".to_string(),
                "set app_token_env for Socket Mode (no public URL needed), or signing_secret_env for HTTP mode (POST /slack/actions)",
            ));
        }
        if !config.channels.contains_key("default") {
            return Err(bad(
                "has no channels.default".to_string(),
                "name the channel approval requests go to: [slack.channels] default = \"C0123ABCD\"",
            ));
        }
        // A rate limit longer than this is a failure to retry later, not a wait: the
        // notifier's lease must not run out during one call.
        let client = SlackClient::new(&config.api_url, BotToken::new(token))
            .map_err(|e| {
                bad(
                    format!("api_url = \"{}\": {e}", config.api_url),
                    "Slack's Web API is https://slack.com/api",
                )
            })?
            .with_max_retry_wait(Duration::from_secs(10));
        Ok(SlackChannel {
            client,
            signing_secret,
            app_token,
            channels: config.channels.clone(),
            public_url: public_url.trim_end_matches('/').to_string(),
            resolve_by_email: config.resolve_by_email,
            remind_before_ms: i64::try_from(config.remind_before_seconds.saturating_mul(1000))
                .unwrap_or(i64::MAX),
            team_id: OnceLock::new(),
            memory: Memory::new(),
            report,
        })
    }

    /// The channel an approval's request goes to: that of the first of its approvers' teams
    /// that has one, else `default`.
    fn channel_for(&self, approval: &ApprovalProgress) -> &str {
        approval
            .request
            .teams
            .keys()
            .chain(approval.request.approvers.iter())
            .find_map(|team| self.channels.get(team))
            .or_else(|| self.channels.get("default"))
            .map_or("", String::as_str)
    }

    /// Learns the workspace the bot token belongs to (`auth.test`). A token Slack refuses
    /// is an error (the server does not start); an unreachable Slack is reported and
    /// asked again by [`run`].
    pub async fn check_token(&self) -> Result<(), AppError> {
        match self.auth_test().await {
            Ok(()) => Ok(()),
            Err(flightdeck_slack::SlackError::Api { error, .. }) => Err(AppError::bad_input(
                format!("[slack] bot_token_env: Slack refused the bot token ({error})"),
                Some("check the token in serve's environment: the app's Bot User OAuth Token, installed in the workspace".to_string()),
            )),
            Err(e) => {
                (self.report)(&format!("cannot reach Slack yet ({e}); trying again"));
                Ok(())
            }
        }
    }

    async fn auth_test(&self) -> Result<(), flightdeck_slack::SlackError> {
        let answer = self
            .client
            .call("auth.test", &serde_json::json!({}))
            .await?;
        let team = answer
            .get("team_id")
            .and_then(serde_json::Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| flightdeck_slack::SlackError::BadResponse {
                method: "auth.test".to_string(),
                message: "no team_id".to_string(),
            })?;
        let _ = self.team_id.set(team.to_string());
        Ok(())
    }
}

/// Runs Slack for the server until it stops: learns the workspace, then the notifier and,
/// with an app-level token, the Socket Mode connection.
pub async fn run(state: Shared) {
    let Some(slack) = state.slack.clone() else {
        return;
    };
    let mut shutdown = state.shutdown.clone();
    let mut wait = Duration::from_secs(1);
    while slack.team_id.get().is_none() {
        match slack.auth_test().await {
            Ok(()) => break,
            Err(e) => (slack.report)(&format!(
                "auth.test failed ({e}); clicks wait until Slack answers"
            )),
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        wait = (wait * 2).min(Duration::from_secs(60));
    }
    let socket = clicks::socket_mode(state.clone(), slack.clone());
    tokio::join!(feed_notifier::notify(state.clone(), slack.clone()), socket);
}
