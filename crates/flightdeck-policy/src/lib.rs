//! Policy evaluation for flightdeck: what an agent may run, write, publish and merge.
//!
//! Everything here is a pure function of its inputs. The crate reads no files, no
//! environment, no clock and no randomness: callers pass the policy source, the CODEOWNERS
//! source, the team table and the action, and get the same [`Decision`] every time. That
//! is what lets the engine record a decision and replay it exactly.
//!
//! The pieces:
//! - [`Policy`] parses `.flightdeck/policy.toml` (or the [`BUILTIN_POLICY_TOML`]) once,
//!   compiling every glob and command pattern, and then [`Policy::decide`]s actions.
//! - Change classes (`docs`, `tests`, `dependencies`, `migrations`, `infra`, `ci`, `source`)
//!   are built in and can be extended by the policy's `[classes]` table.
//! - [`Codeowners`] implements GitHub's CODEOWNERS matching (the last matching line wins).
//! - [`People`] resolves every identity (CLI, web, token, Slack, GitHub) to one person,
//!   and [`People::check_approver`] decides whether that person may approve a gate
//!   ([`check_approver`] does so with no people configured); [`eligible_approvers`] lists
//!   who may.
//! - [`Policy::check_diff`] checks a change against a mission template's `[acceptance]`
//!   (file count, allowed paths, no deleted tests, no newly added skip markers), on the
//!   lines [`diff_lines`] splits out of a `git diff`.

mod acceptance;
mod approval;
mod classes;
mod codeowners;
mod command;
mod error;
mod glob;
mod parse;
mod paths;
mod people;
mod policy;
mod types;

pub use acceptance::{
    diff_lines, is_test_path, DiffFileLines, DiffRules, FileLines, Violation, ViolationKind,
};
pub use approval::{
    canonical_identity, check_approver, eligible_approvers, ApprovalContext, ApprovalRequirement,
    ApproverRefusal, Teams, ANYONE_BUT_REQUESTER,
};
pub use classes::{BUILTIN_CLASS_NAMES, SOURCE_CLASS};
pub use codeowners::{Codeowners, CodeownersWarning, CODEOWNERS_LOCATIONS};
pub use error::{Location, PolicyError, PolicyErrorKind};
pub use people::{IdentityChannel, People, PeopleError, Person, Resolved};
pub use policy::{Policy, UNSEEN_COMMAND_RULE};
pub use types::{Action, ActionKind, ChangeStatus, ChangedFile, Decision, Tier, Verdict};

/// The policy that `flightdeck init` writes and that applies when a repository has none.
///
/// Kept as a commented TOML file so that what users get from `init` is the exact text
/// that is tested here.
pub const BUILTIN_POLICY_TOML: &str = include_str!("builtin_policy.toml");

/// The origin name used in errors and explanations for [`BUILTIN_POLICY_TOML`].
pub const BUILTIN_POLICY_ORIGIN: &str = "<built-in policy>";
