//! People, not strings: every identity that reaches a mission (`--as`, a Slack user id, a
//! GitHub login) is resolved through the installation's directory before anything is
//! decided, and what is recorded is the person's handle with the channel's own id beside it.
//! The rules are `flightdeck-policy`'s ([`flightdeck_policy::People`]); this is the engine's
//! view of them.

use flightdeck_core::event::DecisionActor;
use flightdeck_policy::{IdentityChannel, People};
use serde::{Deserialize, Serialize};

pub use flightdeck_policy::Resolved;

/// Where a decision on an approval came from (`approval.decided.channel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Cli,
    Web,
    Slack,
    Github,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Cli => "cli",
            Channel::Web => "web",
            Channel::Slack => "slack",
            Channel::Github => "github",
        }
    }
}

/// The installation's people (`[people.NAME]` of the config). Empty: every identity is its
/// own person, as before people were configured.
#[derive(Debug, Clone, Default)]
pub struct Directory(pub People);

impl Directory {
    pub fn new(people: People) -> Directory {
        Directory(people)
    }

    /// Who `identity`, arriving on `channel`, is.
    pub fn resolve(&self, identity: &str, channel: Channel) -> Resolved {
        self.0.resolve(identity, identity_channel(channel))
    }

    /// The handles of `identities` (team members, code owners), for pinning in an approval
    /// request: each name of a known person becomes that person's handle. With no directory
    /// the names are kept as written.
    pub fn handles(&self, identities: &[String]) -> Vec<String> {
        if self.0.is_empty() {
            return identities.to_vec();
        }
        let mut handles: Vec<String> = Vec::new();
        for identity in identities {
            let resolved = self.0.resolve(identity, IdentityChannel::Cli);
            let handle = if resolved.person.is_some() {
                resolved.handle
            } else {
                identity.clone()
            };
            if !handles.iter().any(|h| h.eq_ignore_ascii_case(&handle)) {
                handles.push(handle);
            }
        }
        handles
    }
}

/// How a decision's actor is recorded (`approval.decided.actor`).
pub fn actor(resolved: &Resolved) -> DecisionActor {
    DecisionActor {
        channel_user: resolved.channel_user.clone(),
        resolved_by: resolved.resolved_by.to_string(),
        email: None,
    }
}

/// The policy crate's name for a channel.
pub fn identity_channel(channel: Channel) -> IdentityChannel {
    match channel {
        Channel::Cli => IdentityChannel::Cli,
        Channel::Web => IdentityChannel::Web,
        Channel::Slack => IdentityChannel::Slack,
        Channel::Github => IdentityChannel::Github,
    }
}
