//! The events of a mission's timeline (CONTRACT.md, "Events"), as typed Rust data.
//!
//! On the wire an event is `{"type": "<name>", "data": {…}}`. Payloads accept fields they do
//! not know (newer writers may add some) and always write the fields the contract requires.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::hash::Digest;
use crate::MissionStatus;

/// `{"kind", "message"}` of a failed, blocked or cancelled mission.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MissionError {
    pub kind: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MissionCreated {
    pub template: String,
    pub template_hash: Digest,
    pub params: BTreeMap<String, String>,
    pub repo: String,
    pub base_commit: String,
    pub requested_by: String,
    pub policy_hash: Digest,
    /// The template's exact bytes, so a resume or replay runs what was pinned, not what the
    /// file says today.
    pub template_source: Digest,
    /// The ref the user named as base (`HEAD` by default), for people reading the timeline.
    #[serde(default)]
    pub base_ref: String,
    /// The version of flightdeck that created the mission.
    #[serde(default)]
    pub engine_version: String,
    /// The budget limits pinned at creation (raised later by `budget.raised`).
    #[serde(default)]
    pub budget: crate::template::BudgetSpec,
    /// Number of steps in the template, so progress can be shown from the timeline alone.
    #[serde(default)]
    pub steps: usize,
    /// The policy's exact bytes (its digest is `policy_hash`), so every gate of the mission
    /// is judged by the policy it was created under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_source: Option<Digest>,
    /// The repository's CODEOWNERS at creation, and where it was found; approvals are
    /// checked against this copy, never against a file the mission itself could change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codeowners: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codeowners_path: Option<String>,
    /// The scripts of the template's `scripted:` models (model ref → the script's bytes), so
    /// a resumed or replayed mission is answered by the script it was created with.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub model_scripts: BTreeMap<String, Digest>,
    /// The identity the requester gave, when the installation's people know it by another
    /// name (`requested_by` is then the person's handle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_as: Option<String>,
    /// CODEOWNERS lines GitHub would skip (so the mission's code owners are read without
    /// them), as `CODEOWNERS line N: skipped: why`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codeowners_warnings: Vec<String>,
    /// The URL the repository was fetched from (`run --remote`, `[repos.NAME]`), without
    /// any user or password: a worker on a machine that does not have `repo` fetches it
    /// from there into its own cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// Replaces the template's `goal` (a GitHub issue's title and body, or a review's
    /// comments): what the mission is asked to do, in the words of who asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<String>,
    /// Where the request came from: `cli`, `api` or `github` (absent: the command line of
    /// a version that did not say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<MissionSource>,
    /// The mission this one follows up (review comments on its pull request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follows: Option<String>,
    /// The GitHub issue or pull request the mission came from: publishing proposes the
    /// change there (`change.proposed`) before the publish gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github: Option<Box<GitHubOrigin>>,
}

/// Where a mission request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MissionSource {
    /// `flightdeck run`.
    Cli,
    /// `POST /api/v1/missions`.
    Api,
    /// A label, a comment or a review on GitHub.
    Github,
}

/// Where on GitHub a mission came from and proposes its change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitHubOrigin {
    /// The App installation that reaches the repository.
    pub installation_id: u64,
    /// `owner/name`.
    pub repository: String,
    /// The issue whose label or comment asked for the mission (a pull request's number for
    /// a follow-up).
    pub issue: u64,
    /// The GitHub login that asked (label, comment or review).
    pub requested_by_login: String,
    /// The branch the pull request is to merge into (the repository's default branch).
    pub base_branch: String,
    /// A follow-up's pull request and branch: the change is pushed there, on top of what it
    /// had, instead of on a new `flightdeck/<mission>` branch and pull request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceProvisioning {
    pub runtime: String,
}

/// Pinned and found version of one tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolchainEntry {
    pub pinned: Option<String>,
    pub found: Option<String>,
    /// The file that pins it (`rust-toolchain.toml`, `.nvmrc`…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Whether `found` satisfies `pinned`.
    #[serde(default = "yes")]
    pub ok: bool,
}

fn yes() -> bool {
    true
}

/// Memory and process limits of a workspace's commands, and how (whether) they are enforced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceLimits {
    pub memory_mb: Option<u64>,
    pub max_processes: Option<u64>,
    /// `cgroup2`, `cgroup1`, `container`, or `none: <why>`.
    pub enforced: String,
}

/// A package cache given to the workspace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheKey {
    /// `sha256:` of the lockfiles.
    pub key: String,
    pub lockfiles: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WorkspaceProvisioned {
    pub runtime: String,
    pub network: String,
    #[serde(default)]
    pub toolchain: BTreeMap<String, ToolchainEntry>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub image_digest: Option<String>,
    /// Where the worktree lives on the host.
    #[serde(default)]
    pub path: String,
    /// How commands are isolated (`none` for the unsandboxed first cut).
    #[serde(default)]
    pub sandbox: String,
    /// Git tree id of the fresh worktree (the base commit's tree): the "before" of the
    /// first call's diff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_tree: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<WorkspaceLimits>,
    /// Ecosystem (`cargo`, `npm`, `pip`) → its cache's key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub caches: BTreeMap<String, CacheKey>,
    /// Names of the secrets the mission's commands may be given (never their values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// The container (docker runtime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Setup commands run (devcontainer lifecycle), in order, e.g. `postCreateCommand`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub setup: Vec<String>,
    /// devcontainer.json settings flightdeck did not apply: key (a JSON path such as
    /// `build.cacheFrom`) → why.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ignored: BTreeMap<String, String>,
    /// Dev container features installed into the image, in install order, pinned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<FeaturePin>,
    /// The Compose project the workspace's container belongs to (`dockerComposeFile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose: Option<ComposeProject>,
}

/// A dev container feature as it was installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeaturePin {
    /// As devcontainer.json (or a feature's `dependsOn`) names it.
    pub id: String,
    /// Its `version` in `devcontainer-feature.json`.
    #[serde(default)]
    pub version: String,
    /// `registry/repository@sha256:…` (OCI), the URL (tarball) or the folder (local).
    pub resolved: String,
    /// `sha256:…` of the bytes installed.
    pub integrity: String,
}

/// A Compose project brought up for a workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComposeProject {
    /// `docker-compose 1.29.2` or `docker compose v2.…`: which CLI brought it up.
    pub cli: String,
    /// The project name (`-p`), labelled with the mission.
    pub project: String,
    /// The service the commands run in.
    pub service: String,
    /// The services brought up besides it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceDrift {
    pub tool: String,
    pub pinned: String,
    pub found: String,
}

/// `run` or `agent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    Run,
    Agent,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Run => "run",
            StepKind::Agent => "agent",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepStarted {
    pub index: usize,
    pub kind: StepKind,
    /// The command, or the agent role and task, for people reading the timeline.
    #[serde(default)]
    pub description: String,
    /// Agent steps: the role (`planner`, `coder`, `reviewer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Agent steps: the system prompt's bytes (an artifact), so a replay knows what ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<Digest>,
    /// Agent steps: the model refs the step may call, pinned one first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Succeeded,
    Failed,
}

impl StepStatus {
    /// The lowercase name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepFinished {
    pub index: usize,
    pub kind: StepKind,
    pub status: StepStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRequested {
    /// One logical call of an agent (`step-<i>.m<n>`); its retries and fallbacks share it.
    pub call_id: String,
    pub provider: String,
    /// The model id sent (for `scripted`, the script's path).
    pub model: String,
    pub role: String,
    /// The request record (`flightdeck.request/1`): the provider-neutral request, as what it
    /// adds to the record it continues (`after`), so one digest pins the whole request while
    /// each step stores only its new messages.
    pub request: Digest,
    /// The sha256 of the exact body sent, for providers that send one (not `scripted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wire: Option<Digest>,
    /// 1 for the first attempt of the call, then one more per retry or fallback.
    #[serde(default = "one")]
    pub attempt: u32,
    /// The worst case the budget reserved for this attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved: Option<Reservation>,
    /// Sampling parameters the template asked for that this model does not accept, left
    /// out of what was sent (`temperature` for a reasoning model, say).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub omitted: Vec<String>,
}

/// What a model call may cost at most: checked against the budget before it is made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reservation {
    pub tokens: u64,
    /// `null` when the model has no price (only allowed without a `usd` limit).
    pub usd: Option<f64>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelResponded {
    pub call_id: String,
    pub model_served: String,
    /// Every prompt token, cache reads and writes included.
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    /// The exact response bytes received.
    pub response: Digest,
    #[serde(default)]
    pub cache_read_tokens: u64,
    #[serde(default)]
    pub cache_write_tokens: u64,
    /// The answer as provider-neutral JSON (text and tool calls), from which a resumed or
    /// replayed agent rebuilds its conversation whatever the provider's format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Digest>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelFailed {
    pub call_id: String,
    pub error: String,
    pub retryable: bool,
    /// The model ref that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default = "one")]
    pub attempt: u32,
    /// A stable name for the error (`rate_limited`, `server_error`, `timeout`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The answer of a call that failed its pin check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Digest>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelFallback {
    pub from: String,
    pub to: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolRequested {
    pub call_id: String,
    pub tool: String,
    pub args: Value,
    /// `template`, or the agent role that asked.
    pub actor: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyDecided {
    /// A tool call id, or a gate name (`publish`).
    pub subject: String,
    pub action: String,
    pub decision: String,
    pub tier: String,
    pub rule_ids: Vec<String>,
    pub policy_hash: Digest,
    pub explanation: String,
    /// Approvals an `approve` decision needs (0 otherwise).
    #[serde(default)]
    pub approvals: u32,
    /// Who may approve (`codeowners`, `@team`, `@user`, email), for `approve` decisions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    /// The files, path or command parts that triggered the deciding rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggered_by: Vec<String>,
    /// The diff the decision judged (publish gates), `sha256:<hex>` of the binary patch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff_hash: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRequested {
    pub approval_id: String,
    /// `command` or `publish`.
    pub gate: String,
    pub required: u32,
    /// Who may approve, resolved for display (code owners named, teams and users as listed).
    pub eligible: Vec<String>,
    /// `sha256:<hex>` of the binary patch from the base commit to the worktree when the
    /// approval was requested: an approval covers exactly this diff.
    pub diff_hash: String,
    /// The context bundle a reviewer reads (JSON artifact).
    pub bundle: Digest,
    /// The stored patch (in the bundle) had secrets masked, so its hash is not
    /// `diff_hash`: the approval still covers the unmasked diff.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub masked: bool,
    /// The tool call id (command gates) or gate name the approval is for.
    #[serde(default)]
    pub subject: String,
    /// The command a command gate would run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default)]
    pub tier: String,
    #[serde(default)]
    pub rule_ids: Vec<String>,
    /// The approver specs of the deciding rules, as the policy wrote them.
    #[serde(default)]
    pub approvers: Vec<String>,
    /// The changed paths whose code owners may approve (`codeowners`).
    #[serde(default)]
    pub changed_paths: Vec<String>,
    /// The approval is denied if not granted within this many seconds of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_after_seconds: Option<u64>,
    /// Members of the eligible teams when the approval was requested (pinned: membership
    /// added later does not count).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub teams: BTreeMap<String, Vec<String>>,
    /// For `codeowners` requirements: each triggering path that has code owners, and its
    /// owners. As on GitHub, every such path needs an approval from one of its own owners,
    /// besides the required count.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub code_owners: BTreeMap<String, Vec<String>>,
}

/// An approval that was not granted in time; it counts as a deny.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalExpired {
    pub approval_id: String,
    pub expires_after_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalDecided {
    pub approval_id: String,
    /// The person's handle (the identity resolved through the installation's people).
    pub by: String,
    pub decision: String,
    pub channel: String,
    pub comment: Option<String>,
    pub policy_hash: Digest,
    pub diff_hash: String,
    /// The identity as the channel gave it, and how it was resolved to `by`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<DecisionActor>,
}

/// Who decided, as the channel named them (CONTRACT.md "People and identity").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionActor {
    /// The channel's own id: `--as` of the CLI, a Slack user id, a GitHub login.
    pub channel_user: String,
    /// `people.handle`, `people.email`, `people.github`, `people.slack`, `identity` (no
    /// directory configured: each identity is its own person), `slack.email` (a Slack
    /// user `[people] slack` does not list, known by the email Slack gave for them) or
    /// `unknown`.
    pub resolved_by: String,
    /// The email address Slack's `users.info` gave, when that is how they were resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCompleted {
    pub call_id: String,
    pub ok: bool,
    /// For commands; `null` when the command never exited (timed out, killed).
    #[serde(default)]
    pub exit_code: Option<i32>,
    pub output: Digest,
    pub duration_ms: u64,
    /// The command ran into its timeout and was killed.
    #[serde(default)]
    pub timed_out: bool,
    /// Git tree id of the worktree after the call: what a resume restores.
    #[serde(default)]
    pub tree: Option<String>,
}

/// An agent's conversation was shortened before a model call, so it fits the model's
/// context window: the results of `dropped` tool calls were replaced by a note (the agent can
/// read them again with `read_output`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextCompacted {
    /// The model call the compaction preceded.
    pub before_call: String,
    pub dropped: Vec<String>,
    /// Estimated prompt tokens before and after, and the window.
    pub tokens_before: u64,
    pub tokens_after: u64,
    pub context_tokens: u64,
}

/// This mission is a fork: its events before this one are copies of `origin`'s events
/// 1..`at_seq`; from here on it runs live, with what was overridden.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MissionForked {
    pub origin: String,
    pub at_seq: u64,
    /// The hash of the origin's event `at_seq`: which timeline, exactly, was copied.
    pub origin_hash: String,
    pub by: String,
    /// The model ref that replaces the template's `[model] pin` (its fallbacks are dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// A template that replaces the pinned one (source artifact and hash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_source: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_hash: Option<Digest>,
    /// Scripts of scripted models the overrides name, pinned like `mission.created`'s.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub model_scripts: BTreeMap<String, Digest>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetExceeded {
    pub dimension: String,
    pub used: f64,
    pub limit: f64,
    /// What the refused call needed on top of `used`.
    #[serde(default)]
    pub needed: f64,
    /// The call that was refused (`model call step-1.m3`, `tool call step-2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// The team whose quota refused the call (`dimension` `team_usd` or `team_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetRaised {
    pub by: String,
    pub dimension: String,
    pub amount: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakerTripped {
    pub kind: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcceptanceResult {
    pub command: String,
    /// The last attempt's exit code.
    pub exit_code: Option<i32>,
    pub attempts: u32,
    /// Failed, then passed on a retry.
    pub flaky: bool,
    #[serde(default)]
    pub passed: bool,
    /// The tool calls of the attempts, in order (their outputs are the artifacts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<String>,
    /// Each attempt's output artifact, in order: a flaky command keeps both.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<Digest>,
}

/// A diff rule of `[acceptance]` the change breaks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcceptanceViolation {
    /// `too_many_files`, `outside_paths`, `test_deleted`, `skip_marker_added`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcceptanceChecked {
    pub passed: bool,
    pub results: Vec<AcceptanceResult>,
    /// One readable line per violation (the details are in `violation_details`).
    pub violations: Vec<String>,
    /// 1 for the first check, then one more after each fix round.
    #[serde(default = "one")]
    pub round: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub violation_details: Vec<AcceptanceViolation>,
    /// The readable report (artifact): what failed and why, as the coder's fix round and
    /// people see it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<Digest>,
    /// The git tree that was checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree: Option<String>,
}

/// A file a published change touches, with its line counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChange {
    pub path: String,
    /// `A`dded, `M`odified, `D`eleted, `R`enamed …, as git reports it.
    pub status: String,
    /// `None` for binary files.
    pub added: Option<u64>,
    pub removed: Option<u64>,
}

/// What publishing commits, decided and recorded before the branch is written: a resume
/// after a crash in between makes the very same commit (same tree, message and date), so
/// it finds the branch already right.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeCommitting {
    pub branch: String,
    /// The git tree committed.
    pub tree: String,
    pub message: String,
    /// Author and committer date, seconds since the epoch.
    pub date_s: i64,
}

/// A mission from GitHub proposed its change before the publish gate: the commit pushed to
/// the repository and a draft pull request opened (or found, when a resume proposes again).
/// Approvals on GitHub bind to `head_sha` and `tree`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeProposed {
    /// The branch on GitHub (`flightdeck/<mission>`, or a follow-up's pull request branch).
    pub branch: String,
    /// The commit pushed: the pull request's head when it was proposed.
    pub head_sha: String,
    /// Its git tree: a later push whose tree differs changed the diff.
    pub tree: String,
    pub pr_number: u64,
    pub pr_url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangePublished {
    pub branch: String,
    pub commit: String,
    pub patch: Digest,
    pub pr_description: Digest,
    #[serde(default)]
    pub pr_url: Option<String>,
    #[serde(default)]
    pub files: Vec<FileChange>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MissionInterrupted {
    pub reason: String,
    /// Tool calls that were requested and never completed: they are run again as new calls.
    #[serde(default)]
    pub calls: Vec<String>,
    /// A worker that shut down handed the mission back: any worker may continue it (an
    /// interruption without it waits for someone to `resume`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub handed_back: bool,
}

/// A message flightdeck sent about the mission on a channel people read (Slack), recorded
/// so it is sent once and updated in place later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationSent {
    /// `slack`.
    pub channel: String,
    /// Where it went: a Slack channel id.
    pub target: String,
    /// How to find it again: the Slack message's `ts`.
    #[serde(rename = "ref")]
    pub reference: String,
    /// What it is: `approval_request` (posted, or redrawn in place: the same `ref` again),
    /// `reminder`, or a status in the request's thread: `blocked`, `failed`, `cancelled`,
    /// `published`.
    pub kind: String,
    /// The approval it is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    /// A digest of what the message shows now (an approval request's), so that a
    /// restarted notifier redraws only a message whose content changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The timeline position of the event the message reports (a `blocked` status: the
    /// `budget.exceeded` or `breaker.tripped`), so each is reported once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub about: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MissionResumed {
    pub by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MissionFinished {
    pub status: MissionStatus,
    pub error: Option<MissionError>,
    /// Human summary of the outcome ("no changes", "published …").
    #[serde(default)]
    pub summary: Option<String>,
}

/// One event's type and payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum EventKind {
    #[serde(rename = "mission.created")]
    MissionCreated(MissionCreated),
    #[serde(rename = "workspace.provisioning")]
    WorkspaceProvisioning(WorkspaceProvisioning),
    #[serde(rename = "workspace.provisioned")]
    WorkspaceProvisioned(WorkspaceProvisioned),
    #[serde(rename = "workspace.drift")]
    WorkspaceDrift(WorkspaceDrift),
    #[serde(rename = "step.started")]
    StepStarted(StepStarted),
    #[serde(rename = "step.finished")]
    StepFinished(StepFinished),
    #[serde(rename = "model.requested")]
    ModelRequested(ModelRequested),
    #[serde(rename = "model.responded")]
    ModelResponded(ModelResponded),
    #[serde(rename = "model.failed")]
    ModelFailed(ModelFailed),
    #[serde(rename = "model.fallback")]
    ModelFallback(ModelFallback),
    #[serde(rename = "tool.requested")]
    ToolRequested(ToolRequested),
    #[serde(rename = "policy.decided")]
    PolicyDecided(PolicyDecided),
    #[serde(rename = "approval.requested")]
    ApprovalRequested(ApprovalRequested),
    #[serde(rename = "approval.decided")]
    ApprovalDecided(ApprovalDecided),
    #[serde(rename = "approval.expired")]
    ApprovalExpired(ApprovalExpired),
    #[serde(rename = "tool.completed")]
    ToolCompleted(ToolCompleted),
    #[serde(rename = "context.compacted")]
    ContextCompacted(ContextCompacted),
    #[serde(rename = "mission.forked")]
    MissionForked(MissionForked),
    #[serde(rename = "budget.exceeded")]
    BudgetExceeded(BudgetExceeded),
    #[serde(rename = "budget.raised")]
    BudgetRaised(BudgetRaised),
    #[serde(rename = "breaker.tripped")]
    BreakerTripped(BreakerTripped),
    #[serde(rename = "acceptance.checked")]
    AcceptanceChecked(AcceptanceChecked),
    #[serde(rename = "change.committing")]
    ChangeCommitting(ChangeCommitting),
    #[serde(rename = "change.proposed")]
    ChangeProposed(ChangeProposed),
    #[serde(rename = "change.published")]
    ChangePublished(ChangePublished),
    #[serde(rename = "mission.interrupted")]
    MissionInterrupted(MissionInterrupted),
    #[serde(rename = "mission.resumed")]
    MissionResumed(MissionResumed),
    #[serde(rename = "notification.sent")]
    NotificationSent(NotificationSent),
    #[serde(rename = "mission.finished")]
    MissionFinished(MissionFinished),
}

/// Why stored `type` + `data` is not an event this version understands.
#[derive(Debug, thiserror::Error)]
#[error("event type `{event_type}` has unreadable data: {source}")]
pub struct EventDecodeError {
    pub event_type: String,
    #[source]
    pub source: serde_json::Error,
}

impl EventKind {
    /// The `type` string on the wire.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventKind::MissionCreated(_) => "mission.created",
            EventKind::WorkspaceProvisioning(_) => "workspace.provisioning",
            EventKind::WorkspaceProvisioned(_) => "workspace.provisioned",
            EventKind::WorkspaceDrift(_) => "workspace.drift",
            EventKind::StepStarted(_) => "step.started",
            EventKind::StepFinished(_) => "step.finished",
            EventKind::ModelRequested(_) => "model.requested",
            EventKind::ModelResponded(_) => "model.responded",
            EventKind::ModelFailed(_) => "model.failed",
            EventKind::ModelFallback(_) => "model.fallback",
            EventKind::ToolRequested(_) => "tool.requested",
            EventKind::PolicyDecided(_) => "policy.decided",
            EventKind::ApprovalRequested(_) => "approval.requested",
            EventKind::ApprovalDecided(_) => "approval.decided",
            EventKind::ApprovalExpired(_) => "approval.expired",
            EventKind::ToolCompleted(_) => "tool.completed",
            EventKind::ContextCompacted(_) => "context.compacted",
            EventKind::MissionForked(_) => "mission.forked",
            EventKind::BudgetExceeded(_) => "budget.exceeded",
            EventKind::BudgetRaised(_) => "budget.raised",
            EventKind::BreakerTripped(_) => "breaker.tripped",
            EventKind::AcceptanceChecked(_) => "acceptance.checked",
            EventKind::ChangeCommitting(_) => "change.committing",
            EventKind::ChangeProposed(_) => "change.proposed",
            EventKind::ChangePublished(_) => "change.published",
            EventKind::MissionInterrupted(_) => "mission.interrupted",
            EventKind::MissionResumed(_) => "mission.resumed",
            EventKind::NotificationSent(_) => "notification.sent",
            EventKind::MissionFinished(_) => "mission.finished",
        }
    }

    /// The `data` object on the wire.
    pub fn data(&self) -> Value {
        match serde_json::to_value(self) {
            Ok(Value::Object(mut map)) => map.remove("data").unwrap_or(Value::Null),
            _ => Value::Null,
        }
    }

    /// Reads an event back from its wire `type` and `data`.
    pub fn decode(event_type: &str, data: &Value) -> Result<EventKind, EventDecodeError> {
        serde_json::from_value(serde_json::json!({"type": event_type, "data": data})).map_err(
            |source| EventDecodeError {
                event_type: event_type.to_string(),
                source,
            },
        )
    }

    /// Every artifact digest this event references (for audits and garbage collection).
    pub fn artifact_refs(&self) -> Vec<&Digest> {
        match self {
            EventKind::MissionCreated(e) => std::iter::once(&e.template_source)
                .chain(&e.policy_source)
                .chain(&e.codeowners)
                .collect(),
            EventKind::ModelRequested(e) => vec![&e.request],
            EventKind::ModelResponded(e) => vec![&e.response],
            EventKind::ApprovalRequested(e) => vec![&e.bundle],
            EventKind::ToolCompleted(e) => vec![&e.output],
            EventKind::ChangePublished(e) => vec![&e.patch, &e.pr_description],
            EventKind::MissionForked(e) => e
                .template_source
                .iter()
                .chain(e.model_scripts.values())
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// An event as stored in a timeline: the envelope of CONTRACT.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub mission: String,
    pub seq: u64,
    /// RFC 3339 UTC with milliseconds.
    pub at: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub data: Value,
    pub prev_hash: String,
    pub hash: String,
}

impl StoredEvent {
    pub fn kind(&self) -> Result<EventKind, EventDecodeError> {
        EventKind::decode(&self.event_type, &self.data)
    }

    /// Milliseconds since the epoch of `at` (0 if unreadable).
    pub fn at_millis(&self) -> i64 {
        crate::clock::parse_rfc3339_millis(&self.at).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_round_trip_through_type_and_data() {
        let kind = EventKind::ToolCompleted(ToolCompleted {
            call_id: "step-0".into(),
            ok: true,
            exit_code: Some(0),
            output: Digest::of(b"out"),
            duration_ms: 12,
            timed_out: false,
            tree: None,
        });
        assert_eq!(kind.type_name(), "tool.completed");
        let data = kind.data();
        assert_eq!(data["exit_code"], json!(0));
        assert_eq!(EventKind::decode("tool.completed", &data).unwrap(), kind);
    }

    #[test]
    fn unknown_fields_are_accepted_and_missing_required_ones_are_not() {
        let data = json!({"reason": "killed", "pid": 4});
        assert!(EventKind::decode("mission.interrupted", &data).is_ok());
        let err = EventKind::decode("mission.interrupted", &json!({})).unwrap_err();
        assert!(err.to_string().contains("mission.interrupted"), "{err}");
        assert!(EventKind::decode("no.such.type", &json!({})).is_err());
    }
}
