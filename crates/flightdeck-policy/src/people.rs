//! People, not strings: every identity that reaches flightdeck resolved to one person.
//!
//! The installation config lists people (`[people.<key>]` with a handle, emails, a GitHub
//! login and a Slack user id). An identity arriving on a channel (the CLI's `--as`, a
//! token, a Slack user id, a GitHub login) is resolved to one of them before anything is
//! decided, so one person is one approver whatever name they use.
//!
//! With no person configured (an empty directory) every identity is its own person, by
//! its [`canonical_identity`], and none is unknown: that is how installations without
//! `[people]` have always behaved.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::approval::{self, canonical_identity, ApprovalContext, ApprovalRequirement, Teams};
use crate::ApproverRefusal;

/// [`Resolved::resolved_by`] when the identity is a person's handle (`@alice`, `alice`).
const BY_HANDLE: &str = "people.handle";
/// ... one of a person's emails.
const BY_EMAIL: &str = "people.email";
/// ... a person's GitHub login.
const BY_GITHUB: &str = "people.github";
/// ... a person's Slack user id.
const BY_SLACK: &str = "people.slack";
/// ... an email address Slack vouched for (`users.info`), for a Slack user id no person
/// lists.
const BY_SLACK_EMAIL: &str = "slack.email";
/// ... the identity itself, because no person is configured.
const BY_IDENTITY: &str = "identity";
/// ... nobody: people are configured and this identity is none of them.
const UNKNOWN: &str = "unknown";

/// One person of the installation's `[people]`.
///
/// [`People::new`] normalises the names: the handle to `@` + lowercase, emails and the
/// GitHub login to lowercase (they compare case-insensitively), the Slack id trimmed
/// (it compares exactly).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Person {
    /// The `[people.<key>]` table key: free, used in errors. Not part of the table's
    /// body, so deserialising a body leaves it empty for the caller to fill in.
    #[serde(default)]
    pub key: String,
    /// `@name`: how policies, CODEOWNERS and approvals name this person.
    pub handle: String,
    /// Addresses that resolve to this person (`--as`, `git config user.email`).
    #[serde(default)]
    pub emails: Vec<String>,
    /// GitHub login.
    #[serde(default)]
    pub github: Option<String>,
    /// Slack user id (`U0123ABCD`).
    #[serde(default)]
    pub slack: Option<String>,
    /// The subject (`sub`) the installation's OpenID Connect provider gives this person,
    /// compared exactly (the web UI's single sign-on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<String>,
}

/// Where an identity came from, which decides how it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityChannel {
    /// `--as`: a handle (`@alice`, `alice`), an email, `github:LOGIN` or `slack:UID`.
    Cli,
    /// The web UI; read as [`IdentityChannel::Cli`].
    Web,
    /// A Slack user id, compared exactly.
    Slack,
    /// A GitHub login (`alice-gh` or `@alice-gh`), compared case-insensitively.
    Github,
    /// The email address Slack's `users.info` gives for a Slack user `[people] slack`
    /// does not list (only when the installation allows the lookup): one of a person's
    /// `emails`, case-insensitively.
    SlackEmail,
    /// An API token's identity; read as [`IdentityChannel::Cli`].
    Token,
}

/// An identity resolved against [`People`]: who it is, and how that was decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolved {
    /// The person, when the directory knows the identity.
    pub person: Option<Person>,
    /// What to record as the actor (`approval.decided.by`): the person's handle, or the
    /// [`canonical_identity`] itself when no person matches.
    pub handle: String,
    /// How: `"people.handle"`, `"people.email"`, `"people.github"`, `"people.slack"`,
    /// `"identity"` (no person is configured) or `"unknown"` (no person matches).
    pub resolved_by: &'static str,
    /// The identity as the channel gave it, trimmed (`U0123ABCD`, `alice@acme.com`).
    pub channel_user: String,
}

impl Resolved {
    /// People are configured and this identity is none of them.
    pub fn is_unknown(&self) -> bool {
        self.resolved_by == UNKNOWN
    }

    /// Whether both name the same person: the same configured person, or, for
    /// identities that are no configured person, the same canonical identity.
    pub fn is_same_person(&self, other: &Resolved) -> bool {
        self.person.is_some() == other.person.is_some() && self.handle == other.handle
    }
}

/// Why a list of people cannot be a directory. Names the person's key and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeopleError {
    /// A person without a key (the `[people.<key>]` name).
    #[error("people: person #{position} has no key")]
    MissingKey {
        /// 1-based position in the list.
        position: usize,
    },
    /// Two persons with one key.
    #[error("people.{key}: the key is used by two persons")]
    DuplicateKey { key: String },
    /// A name that is not of its kind (a handle that is not `@name`, an email without
    /// `@`, ...).
    #[error("people.{key}.{field}: `{value}` {reason}")]
    Invalid {
        key: String,
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    /// One name given to two persons: it would resolve to either.
    #[error(
        "people.{second}.{field}: `{value}` already belongs to people.{first}; one name must name one person"
    )]
    Duplicate {
        field: &'static str,
        value: String,
        first: String,
        second: String,
    },
}

/// The installation's people, indexed by every name they go by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct People {
    persons: Vec<Person>,
    by_handle: BTreeMap<String, usize>,
    by_email: BTreeMap<String, usize>,
    by_github: BTreeMap<String, usize>,
    by_slack: BTreeMap<String, usize>,
    by_oidc: BTreeMap<String, usize>,
}

/// Who an identity is, for comparisons: a configured person, or (unknown, or no person
/// configured) the canonical identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Who {
    Person(usize),
    Identity(String),
}

impl Who {
    /// The canonical name: the person's handle or the identity.
    pub(crate) fn name<'a>(&'a self, people: &'a People) -> &'a str {
        match self {
            Who::Person(index) => people
                .persons
                .get(*index)
                .map_or("", |person| person.handle.as_str()),
            Who::Identity(identity) => identity,
        }
    }
}

impl People {
    /// A directory of these persons, with their names normalised (see [`Person`]).
    /// Refuses a person without a key or with a malformed name, and any key, handle,
    /// email, GitHub login or Slack id given to two persons.
    pub fn new(persons: Vec<Person>) -> Result<People, PeopleError> {
        let mut people = People::default();
        for (index, person) in persons.into_iter().enumerate() {
            let person = normalise(index + 1, person)?;
            if people.persons.iter().any(|known| known.key == person.key) {
                return Err(PeopleError::DuplicateKey { key: person.key });
            }
            let persons = &people.persons;
            claim(
                &mut people.by_handle,
                persons,
                "handle",
                &person.handle,
                &person.key,
            )?;
            for email in &person.emails {
                claim(&mut people.by_email, persons, "emails", email, &person.key)?;
            }
            if let Some(login) = &person.github {
                claim(&mut people.by_github, persons, "github", login, &person.key)?;
            }
            if let Some(id) = &person.slack {
                claim(&mut people.by_slack, persons, "slack", id, &person.key)?;
            }
            if let Some(subject) = &person.oidc {
                claim(&mut people.by_oidc, persons, "oidc", subject, &person.key)?;
            }
            people.persons.push(person);
        }
        Ok(people)
    }

    /// No person is configured: every identity is its own person and none is unknown.
    pub fn is_empty(&self) -> bool {
        self.persons.is_empty()
    }

    /// The person one of whose emails is `email` (case-insensitively); only an address
    /// (`local@domain`), never a handle or a `github:` / `slack:` name.
    pub fn by_email(&self, email: &str) -> Option<&Person> {
        let email = email.trim();
        let (local, domain) = email.split_once('@')?;
        if local.is_empty() || domain.is_empty() || domain.contains('@') {
            return None;
        }
        self.by_email
            .get(&email.to_lowercase())
            .and_then(|index| self.persons.get(*index))
    }

    /// The person whose OpenID Connect subject is `subject` (exactly).
    pub fn by_oidc_subject(&self, subject: &str) -> Option<&Person> {
        self.by_oidc
            .get(subject)
            .and_then(|index| self.persons.get(*index))
    }

    /// The persons, normalised, in the order given.
    pub fn persons(&self) -> &[Person] {
        &self.persons
    }

    /// Resolve an identity arriving on `channel` to a person.
    ///
    /// - [`IdentityChannel::Slack`]: a Slack user id, exactly.
    /// - [`IdentityChannel::Github`]: a GitHub login, case-insensitively.
    /// - CLI, web and token: a handle (`@alice` or `alice`) or an email,
    ///   case-insensitively, or `github:LOGIN` / `slack:UID`.
    ///
    /// With no person configured, every identity resolves to itself (`"identity"`).
    pub fn resolve(&self, identity: &str, channel: IdentityChannel) -> Resolved {
        let channel_user = identity.trim().to_owned();
        let found = self
            .find(identity, channel)
            .and_then(|(index, by)| self.persons.get(index).map(|person| (person, by)));
        match found {
            Some((person, resolved_by)) => Resolved {
                person: Some(person.clone()),
                handle: person.handle.clone(),
                resolved_by,
                channel_user,
            },
            None => Resolved {
                person: None,
                handle: canonical_identity(identity),
                resolved_by: if self.is_empty() {
                    BY_IDENTITY
                } else {
                    UNKNOWN
                },
                channel_user,
            },
        }
    }

    /// Whether `identity` (arriving on `channel`) may approve a gate with this
    /// requirement now; on success, who approves, to record.
    ///
    /// As [`crate::check_approver`], with people compared as people: the requester, the
    /// identities in [`ApprovalContext::already_approved_by`], the approver specs, the
    /// code owners and team members are resolved as CLI identities (a handle, an email,
    /// `github:LOGIN`, `slack:UID`), so `carol@acme.com` and `@carol` are one person.
    /// An identity that is no configured person may not approve unless
    /// `allow_unknown_approvers` ([`crate::Policy::allow_unknown_approvers`]); with no
    /// person configured this is exactly [`crate::check_approver`].
    pub fn check_approver(
        &self,
        identity: &str,
        channel: IdentityChannel,
        requirement: &ApprovalRequirement,
        ctx: &ApprovalContext<'_>,
        allow_unknown_approvers: bool,
    ) -> Result<Resolved, ApproverRefusal> {
        let who = self.who(identity, channel);
        let unknown = !self.is_empty() && matches!(who, Who::Identity(_));
        approval::check(
            self,
            identity,
            &who,
            unknown && !allow_unknown_approvers,
            requirement,
            ctx,
        )?;
        Ok(self.resolve(identity, channel))
    }

    /// The teams of `teams` whose members include `identity` (read as a CLI identity: a
    /// recorded handle, an email…), with members compared as people, in `teams`'s order:
    /// whose quotas a mission requested by `identity` counts against.
    pub fn teams_of<'t>(&self, teams: &'t Teams, identity: &str) -> Vec<&'t str> {
        let who = self.who(identity, IdentityChannel::Cli);
        teams
            .0
            .iter()
            .filter(|(_, members)| {
                members
                    .iter()
                    .any(|member| self.who(member, IdentityChannel::Cli) == who)
            })
            .map(|(team, _)| team.as_str())
            .collect()
    }

    /// Who an identity is, for comparisons.
    pub(crate) fn who(&self, identity: &str, channel: IdentityChannel) -> Who {
        match self.find(identity, channel) {
            Some((index, _)) => Who::Person(index),
            None => Who::Identity(canonical_identity(identity)),
        }
    }

    /// The index of the person `identity` names, and how it was found.
    fn find(&self, identity: &str, channel: IdentityChannel) -> Option<(usize, &'static str)> {
        if self.is_empty() {
            return None;
        }
        let identity = identity.trim();
        let slack = |id: &str| self.by_slack.get(id.trim()).map(|&i| (i, BY_SLACK));
        let github = |login: &str| {
            let login = login.trim();
            let login = login.strip_prefix('@').unwrap_or(login).to_lowercase();
            self.by_github.get(&login).map(|&i| (i, BY_GITHUB))
        };
        match channel {
            IdentityChannel::Slack => slack(identity),
            IdentityChannel::Github => github(identity),
            IdentityChannel::SlackEmail => self
                .by_email
                .get(&identity.to_lowercase())
                .map(|&i| (i, BY_SLACK_EMAIL)),
            IdentityChannel::Cli | IdentityChannel::Web | IdentityChannel::Token => {
                if let Some(login) = strip_prefix_ignore_case(identity, "github:") {
                    return github(login);
                }
                if let Some(id) = strip_prefix_ignore_case(identity, "slack:") {
                    return slack(id);
                }
                let canonical = canonical_identity(identity);
                if canonical.starts_with('@') {
                    self.by_handle.get(&canonical).map(|&i| (i, BY_HANDLE))
                } else {
                    self.by_email.get(&canonical).map(|&i| (i, BY_EMAIL))
                }
            }
        }
    }
}

/// Index `name` (a `field` of the person about to join `persons`), unless an earlier
/// person already has it.
fn claim(
    names: &mut BTreeMap<String, usize>,
    persons: &[Person],
    field: &'static str,
    name: &str,
    key: &str,
) -> Result<(), PeopleError> {
    if let Some(&first) = names.get(name) {
        return Err(PeopleError::Duplicate {
            field,
            value: name.to_owned(),
            first: persons
                .get(first)
                .map(|known| known.key.clone())
                .unwrap_or_default(),
            second: key.to_owned(),
        });
    }
    names.insert(name.to_owned(), persons.len());
    Ok(())
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| text.get(prefix.len()..))
        .flatten()
}

/// The person with normalised names, or the first name that is malformed.
fn normalise(position: usize, person: Person) -> Result<Person, PeopleError> {
    let key = person.key.trim().to_owned();
    if key.is_empty() {
        return Err(PeopleError::MissingKey { position });
    }
    let invalid = |field, value: &str, reason| PeopleError::Invalid {
        key: key.clone(),
        field,
        value: value.to_owned(),
        reason,
    };

    let handle = person.handle.trim().to_lowercase();
    let handle = if handle.starts_with('@') {
        handle
    } else {
        format!("@{handle}")
    };
    let name = handle.get(1..).unwrap_or_default();
    if name.is_empty() || name.contains(['@', '/']) || name.contains(char::is_whitespace) {
        return Err(invalid(
            "handle",
            &person.handle,
            "is not a handle (expected @name, as in \"@alice\")",
        ));
    }

    let mut emails: Vec<String> = Vec::with_capacity(person.emails.len());
    for email in &person.emails {
        let normalised = email.trim().to_lowercase();
        let valid = match normalised.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.is_empty()
                    && !domain.contains('@')
                    && !normalised.contains(char::is_whitespace)
            }
            None => false,
        };
        if !valid {
            return Err(invalid(
                "emails",
                email,
                "is not an email (expected name@domain)",
            ));
        }
        // The same address twice on one person is harmless; keep one.
        if !emails.contains(&normalised) {
            emails.push(normalised);
        }
    }

    let github = match &person.github {
        None => None,
        Some(login) => {
            let trimmed = login.trim();
            let normalised = trimmed.strip_prefix('@').unwrap_or(trimmed).to_lowercase();
            let valid = !normalised.is_empty()
                && normalised
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_');
            if !valid {
                return Err(invalid(
                    "github",
                    login,
                    "is not a GitHub login (letters, digits, `-` and `_`)",
                ));
            }
            Some(normalised)
        }
    };

    let slack = match &person.slack {
        None => None,
        Some(id) => {
            let trimmed = id.trim();
            if trimmed.is_empty() || !trimmed.chars().all(|ch| ch.is_ascii_alphanumeric()) {
                return Err(invalid(
                    "slack",
                    id,
                    "is not a Slack user id (letters and digits, as in \"U0123ABCD\")",
                ));
            }
            Some(trimmed.to_owned())
        }
    };

    let oidc = match person.oidc {
        None => None,
        Some(subject) if subject.is_empty() || subject.trim() != subject => {
            return Err(invalid(
                "oidc",
                &subject,
                "is not an OpenID Connect subject (the provider's `sub`, exactly, without surrounding spaces)",
            ))
        }
        Some(subject) => Some(subject),
    };

    Ok(Person {
        key,
        handle,
        emails,
        github,
        slack,
        oidc,
    })
}
