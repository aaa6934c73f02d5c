//! Who may approve a gate.
//!
//! A gate's requirement lists approver specs (`codeowners`, `@org/team`, `@user`, email).
//! `codeowners` means the owners of the changed files per CODEOWNERS; when none of them
//! has an owner, anyone but the requester may approve. Identities compare as people
//! ([`People`]): with people configured, every name of a person is that person; with
//! none, identities compare case-insensitively and a bare name (`alice`) is read as a
//! handle (`@alice`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::codeowners::Codeowners;
use crate::people::{IdentityChannel, People, Who};
use crate::policy::CODEOWNERS_APPROVER;
use crate::types::Decision;

/// What [`eligible_approvers`] lists when a `codeowners` requirement has no owners to ask.
pub const ANYONE_BUT_REQUESTER: &str = "anyone but the requester";

/// Team membership from the installation config: `"@org/team"` -> members (`@user` or
/// emails).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Teams(pub BTreeMap<String, Vec<String>>);

impl Teams {
    pub fn new(teams: BTreeMap<String, Vec<String>>) -> Teams {
        Teams(teams)
    }

    /// The members of a team (case-insensitive name); empty for an unknown team.
    pub fn members(&self, team: &str) -> &[String] {
        self.0
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(team))
            .map_or(&[], |(_, members)| members.as_slice())
    }
}

/// What a gate needs: approver specs and the changed files (for `codeowners`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRequirement {
    pub approvers: Vec<String>,
    pub changed_paths: Vec<String>,
}

impl ApprovalRequirement {
    /// The requirement of an approve decision over `changed_paths`.
    pub fn from_decision(decision: &Decision, changed_paths: Vec<String>) -> ApprovalRequirement {
        ApprovalRequirement {
            approvers: decision.approvers.clone(),
            changed_paths,
        }
    }
}

/// Everything besides the requirement that decides whether someone may approve.
///
/// Identities here (and in [`Teams`] and the requirement) are read as CLI identities: a
/// handle, an email, `github:LOGIN` or `slack:UID`; record resolved handles
/// ([`crate::Resolved::handle`]) and they resolve back to the same person.
#[derive(Debug, Clone, Copy)]
pub struct ApprovalContext<'a> {
    /// Who asked for the mission.
    pub requester: &'a str,
    /// From the policy ([`crate::Policy::allow_self_approval`]).
    pub allow_self_approval: bool,
    /// The repository's CODEOWNERS, if it has one.
    pub codeowners: Option<&'a Codeowners>,
    pub teams: &'a Teams,
    /// Identities that have already approved this gate.
    pub already_approved_by: &'a [String],
}

/// Why an identity may not approve a gate. The messages are meant to be shown as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApproverRefusal {
    /// The requester tried to approve their own mission and the policy forbids it.
    #[error("the requester may not approve their own mission (the policy sets allow_self_approval = false)")]
    SelfApproval,
    /// This identity already approved; approvals must come from distinct people.
    #[error(
        "this identity has already approved this gate; approvals must come from distinct people"
    )]
    AlreadyDecided,
    /// A team (or anything shaped like one) tried to approve: only people approve, so one
    /// person cannot count twice, once as themselves and once as their team.
    #[error("`{identity}` is a team, and only people approve; approve as one of its members")]
    TeamIdentity { identity: String },
    /// People are configured, the identity is none of them, and the policy does not let
    /// unknown identities approve.
    #[error(
        "`{identity}` is not one of the people configured for this installation, and the policy does not let unknown identities approve (allow_unknown_approvers = false); add them under [people] in the installation config, with this name as their handle, email, github or slack"
    )]
    UnknownApprover { identity: String },
    /// The identity is not among the eligible approvers.
    #[error(
        "not an eligible approver for this gate; eligible: {}",
        eligible_text(eligible)
    )]
    NotEligible { eligible: Vec<String> },
}

fn eligible_text(eligible: &[String]) -> String {
    if eligible.is_empty() {
        "nobody (the requirement lists no approvers)".to_owned()
    } else {
        eligible.join(", ")
    }
}

/// Whether `identity` may approve a gate with this requirement now, with no people
/// configured: every identity is its own person, compared by [`canonical_identity`].
/// [`People::check_approver`] does the same with the installation's people.
pub fn check_approver(
    identity: &str,
    requirement: &ApprovalRequirement,
    ctx: &ApprovalContext<'_>,
) -> Result<(), ApproverRefusal> {
    let people = People::default();
    let who = people.who(identity, IdentityChannel::Cli);
    check(&people, identity, &who, false, requirement, ctx)
}

/// The checks of [`check_approver`] for `who` (the approver `identity`, resolved in
/// `people`); `refuse_unknown` when `who` is no configured person and may not approve.
pub(crate) fn check(
    people: &People,
    identity: &str,
    who: &Who,
    refuse_unknown: bool,
    requirement: &ApprovalRequirement,
    ctx: &ApprovalContext<'_>,
) -> Result<(), ApproverRefusal> {
    let not_eligible = || ApproverRefusal::NotEligible {
        eligible: eligible_approvers(requirement, ctx.codeowners),
    };
    let name = who.name(people);
    if name.is_empty() {
        return Err(not_eligible());
    }
    if is_team(name) || ctx.teams.0.keys().any(|team| canonical(team) == name) {
        return Err(ApproverRefusal::TeamIdentity {
            identity: identity.trim().to_owned(),
        });
    }
    if refuse_unknown {
        return Err(ApproverRefusal::UnknownApprover {
            identity: identity.trim().to_owned(),
        });
    }
    // Stored identities and specs are read as CLI identities: handles, emails,
    // `github:LOGIN`, `slack:UID`.
    let is_who = |other: &str| people.who(other, IdentityChannel::Cli) == *who;
    if !ctx.allow_self_approval && is_who(ctx.requester) {
        return Err(ApproverRefusal::SelfApproval);
    }
    if ctx
        .already_approved_by
        .iter()
        .any(|approved| is_who(approved))
    {
        return Err(ApproverRefusal::AlreadyDecided);
    }
    // `owner` is the approver, or a team with the approver among its members.
    let satisfies = |owner: &str| {
        let is_team = owner.starts_with('@') && owner.contains('/');
        is_who(owner) || (is_team && ctx.teams.members(owner).iter().any(|m| is_who(m)))
    };
    for spec in &requirement.approvers {
        if spec == CODEOWNERS_APPROVER {
            let owners = owners_of_changes(requirement, ctx.codeowners);
            // No owner to ask: anyone may approve (the requester was handled above).
            if owners.is_empty() || owners.iter().any(|owner| satisfies(owner)) {
                return Ok(());
            }
        } else if satisfies(spec) {
            return Ok(());
        }
    }
    Err(not_eligible())
}

/// Who may approve, for display: the concrete owners of the changed files for
/// `codeowners` (or [`ANYONE_BUT_REQUESTER`] when they have none), then the listed teams
/// and users; de-duplicated case-insensitively.
pub fn eligible_approvers(
    requirement: &ApprovalRequirement,
    codeowners: Option<&Codeowners>,
) -> Vec<String> {
    let mut eligible: Vec<String> = Vec::new();
    let mut add = |name: &str| {
        if !eligible
            .iter()
            .any(|known| known.eq_ignore_ascii_case(name))
        {
            eligible.push(name.to_owned());
        }
    };
    for spec in &requirement.approvers {
        if spec == CODEOWNERS_APPROVER {
            let owners = owners_of_changes(requirement, codeowners);
            if owners.is_empty() {
                add(ANYONE_BUT_REQUESTER);
            }
            for owner in owners {
                add(owner);
            }
        } else {
            add(spec);
        }
    }
    eligible
}

/// The union of the owners of the changed paths, in order of first appearance.
fn owners_of_changes<'a>(
    requirement: &ApprovalRequirement,
    codeowners: Option<&'a Codeowners>,
) -> Vec<&'a str> {
    let mut owners: Vec<&str> = Vec::new();
    let Some(codeowners) = codeowners else {
        return owners;
    };
    for path in &requirement.changed_paths {
        for owner in codeowners.owners_of(path) {
            if !owners.iter().any(|known| known.eq_ignore_ascii_case(owner)) {
                owners.push(owner);
            }
        }
    }
    owners
}

/// `@org/team` (after canonicalising): a team handle, never a person.
fn is_team(canonical_identity: &str) -> bool {
    canonical_identity.starts_with('@') && canonical_identity.contains('/')
}

/// How an identity is compared and recorded: lowercase, trimmed, and `alice` read as
/// `@alice`. Two spellings of one person give the same canonical identity.
pub fn canonical_identity(identity: &str) -> String {
    canonical(identity)
}

/// Lowercase, trimmed, and `alice` read as `@alice`.
fn canonical(identity: &str) -> String {
    let identity = identity.trim().to_lowercase();
    if identity.is_empty() || identity.contains('@') {
        identity
    } else {
        format!("@{identity}")
    }
}
