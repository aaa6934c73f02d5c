//! What a stored delivery does, taken in order of arrival by one process per store (the
//! holder of the store's `github-deliveries` lease), after GitHub had its answer:
//!
//! - a `flightdeck:TEMPLATE` label, or a `/flightdeck run TEMPLATE k=v…` comment, by
//!   someone with write permission (asked of GitHub, never read from the payload) starts a
//!   mission on the repository with the issue as its goal; anyone else is told why on the
//!   issue, and nothing starts;
//! - an Approve / Deny button of the `flightdeck/approval` check run, or an `approved`
//!   review on the head flightdeck proposed, is a vote judged like any channel's
//!   (`Channel::Github`); a refusal is told on the pull request, nothing recorded;
//! - a push that changes the diff of a flightdeck pull request voids the approval for the
//!   new head: a `failure` check run on it says why;
//! - review comments by an eligible person on a finished mission's pull request start a
//!   follow-up mission on its branch; others are told they are ignored;
//! - closing the pull request of a mission that waits for approval cancels it.
//!
//! A failure that may pass (GitHub unreachable, rate limits, the store) is tried again
//! with backoff; what GitHub's answer makes final is recorded as the delivery's outcome.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use flightdeck_app::intake::{self, RepoSource, RunRequest};
use flightdeck_app::AppError;
use flightdeck_core::event::GitHubOrigin;
use flightdeck_core::state::ApprovalStatus;
use flightdeck_core::{MissionId, MissionState};
use flightdeck_engine::{Channel, Clock, MissionOrigin, SystemClock, Vote};
use flightdeck_github::types::{Issue, PullRequest, Repository, ReviewState};
use flightdeck_github::webhook::{parse_event, Context, WebhookEvent};
use flightdeck_github::GitHubError;
use flightdeck_store::GitHubDelivery;

use super::{GitHubChannel, CHECK_NAME};
use crate::routes::Shared;

/// The store's lease that makes one process handle deliveries.
const READER: &str = "github-deliveries";
const LEASE_TTL: Duration = Duration::from_secs(45);
/// How many deliveries one pass takes (each body up to 25 MiB in memory).
const BATCH: usize = 10;
/// How long an idle handler waits before it looks at the store again (a delivery another
/// server stored wakes no one here).
const IDLE: Duration = Duration::from_secs(2);
/// Attempts before a delivery that keeps failing is given up (about an hour).
const MAX_ATTEMPTS: u32 = 10;

/// Handling a delivery failed in a way that may pass: try again later.
#[derive(Debug)]
pub(super) struct Again(pub(super) String);

impl From<AppError> for Again {
    fn from(e: AppError) -> Again {
        Again(e.message)
    }
}

impl From<flightdeck_store::StoreError> for Again {
    fn from(e: flightdeck_store::StoreError) -> Again {
        Again(e.to_string())
    }
}

impl From<flightdeck_engine::EngineError> for Again {
    fn from(e: flightdeck_engine::EngineError) -> Again {
        Again(AppError::from(e).message)
    }
}

/// A delivery's outcome, or why it is to be tried again.
type Handled = Result<String, Again>;

/// Whether GitHub's answer may differ next time (its outage, a rate limit, the network).
pub(super) fn transient(e: &GitHubError) -> bool {
    match e {
        // A 401: the token cache dropped the refused token, so the next try takes a new one.
        GitHubError::Api { status, .. } => *status >= 500 || *status == 429 || *status == 401,
        GitHubError::RateLimited { .. }
        | GitHubError::Timeout { .. }
        | GitHubError::Connection { .. } => true,
        _ => false,
    }
}

/// A GitHub failure as an outcome (final) or a retry.
fn github_failed(what: &str, e: GitHubError) -> Handled {
    if transient(&e) {
        Err(Again(format!("{what}: {e}")))
    } else {
        Ok(format!("{what} failed: {e}"))
    }
}

/// Handles deliveries while this process holds the store's lease on them, until the
/// server stops.
pub(super) async fn run(state: Shared, github: Arc<GitHubChannel>) {
    let owner = state.engine.config().worker.0.clone();
    let store = state.engine.config().store.clone();
    let mut shutdown = state.shutdown.clone();
    loop {
        if shutdown.borrow().is_some() {
            let _ = store.release_feed_reader(READER, &owner).await;
            return;
        }
        let held = match hold(&state, &owner).await {
            Ok(held) => held,
            Err(e) => {
                github.report(&format!("taking the deliveries' lease failed: {e}"));
                false
            }
        };
        let mut busy = false;
        if held {
            let now = SystemClock.now_ms();
            match store.pending_deliveries(now, BATCH).await {
                Ok(pending) => {
                    busy = pending.len() == BATCH;
                    for delivery in pending {
                        if shutdown.borrow().is_some() {
                            break;
                        }
                        // Renewed before each one: a slow delivery (a first fetch of a big
                        // repository) must not let another server take the same ones.
                        if !matches!(hold(&state, &owner).await, Ok(true)) {
                            break;
                        }
                        take(&state, &github, &delivery).await;
                    }
                }
                Err(e) => github.report(&format!("reading the stored deliveries failed: {e}")),
            }
        }
        if busy {
            continue;
        }
        tokio::select! {
            () = github.woken() => {}
            () = tokio::time::sleep(IDLE) => {}
            _ = shutdown.changed() => {}
        }
    }
}

async fn hold(state: &Shared, owner: &str) -> Result<bool, flightdeck_store::StoreError> {
    crate::feed_notifier::hold_reader(state, READER, owner, LEASE_TTL).await
}

/// Handles one delivery and records how it ended (or when to try again).
async fn take(state: &Shared, github: &GitHubChannel, delivery: &GitHubDelivery) {
    let store = &state.engine.config().store;
    let outcome = handle(state, github, delivery).await;
    let now = SystemClock.now_ms();
    let written = match outcome {
        Ok(outcome) => {
            github.report(&format!(
                "delivery {} ({}): {outcome}",
                delivery.id, delivery.event
            ));
            store.finish_delivery(&delivery.id, &outcome, now).await
        }
        Err(Again(why)) if delivery.attempts + 1 >= MAX_ATTEMPTS => {
            let outcome = format!("given up after {MAX_ATTEMPTS} attempts: {why}");
            github.report(&format!(
                "delivery {} ({}): {outcome}",
                delivery.id, delivery.event
            ));
            store.finish_delivery(&delivery.id, &outcome, now).await
        }
        Err(Again(why)) => {
            let wait = 2_000_i64
                .saturating_mul(1 << delivery.attempts.min(11))
                .min(600_000);
            github.report(&format!(
                "delivery {} ({}): {why}; trying again in {} s",
                delivery.id,
                delivery.event,
                wait / 1000
            ));
            store.retry_delivery(&delivery.id, &why, now + wait).await
        }
    };
    if let Err(e) = written {
        github.report(&format!(
            "recording delivery {}'s outcome failed: {e}",
            delivery.id
        ));
    }
}

/// What one delivery does; its outcome in a line.
pub(super) async fn handle(
    state: &Shared,
    github: &GitHubChannel,
    delivery: &GitHubDelivery,
) -> Handled {
    let parsed = match parse_event(&delivery.event, &delivery.body) {
        Ok(parsed) => parsed,
        Err(e) => return Ok(format!("unreadable: {e}")),
    };
    match parsed {
        WebhookEvent::Ping { hook_id, app_id, .. } => Ok(match app_id {
            Some(id) if id != github.app_id() => format!(
                "ping from hook {} of app {id}, which is not this installation's app {}",
                hook_id.map_or_else(|| "?".to_string(), |h| h.to_string()),
                github.app_id()
            ),
            _ => format!(
                "ping from hook {}",
                hook_id.map_or_else(|| "?".to_string(), |h| h.to_string())
            ),
        }),
        WebhookEvent::IssueLabeled {
            context,
            issue,
            label,
        } => {
            let Some(template) = template_of_label(&label, github.trigger_label()) else {
                return Ok(format!("label {label:?} is not a flightdeck label"));
            };
            let ask = Ask {
                template,
                params: BTreeMap::new(),
                login: context.sender.login.clone(),
                how: format!("the label `{label}`"),
            };
            start(state, github, delivery, &context, &issue, ask).await
        }
        WebhookEvent::IssueCommentCreated {
            context,
            issue,
            comment,
        } => {
            if comment.author.is_bot {
                return Ok("a comment by a bot; ignored".to_string());
            }
            match parse_run_command(&comment.body) {
                Some(Ok((template, params))) => {
                    let ask = Ask {
                        template,
                        params,
                        login: comment.author.login.clone(),
                        how: "a `/flightdeck run` comment".to_string(),
                    };
                    start(state, github, delivery, &context, &issue, ask).await
                }
                Some(Err(why)) => {
                    // Only someone who may start missions is answered: anyone else's
                    // comments must not make the App post, nor spend its rate limit.
                    let installation = match installation_of(&context) {
                        Ok(id) => id,
                        Err(outcome) => return Ok(outcome),
                    };
                    let login = comment.author.login.clone();
                    if can_write(github, installation, &context.repository, &login).await?
                        != Ok(true)
                    {
                        return Ok(format!("a malformed /flightdeck comment by {login}, who may not write; ignored"));
                    }
                    let text = format!(
                        "@{login}: nothing started: {why}\n\nWrite `/flightdeck run TEMPLATE key=value…` on a line of its own."
                    );
                    reply(github, &context, issue.number, &text).await?;
                    Ok(format!("refused a /flightdeck comment: {why}"))
                }
                // A plain comment ("LGTM", a question) starts nothing: only a review's
                // comments ask for changes.
                None => Ok("a comment that asks flightdeck nothing".to_string()),
            }
        }
        WebhookEvent::CheckRunRequestedAction {
            context,
            check_run,
            identifier,
        } => {
            if check_run.name != CHECK_NAME {
                return Ok(format!("a button of check run {:?}; not flightdeck's", check_run.name));
            }
            let Some(approval_id) = check_run.external_id.clone() else {
                return Ok("a flightdeck/approval check run without an approval id".to_string());
            };
            let approve = match identifier.as_str() {
                "approve" => true,
                "deny" => false,
                other => return Ok(format!("unknown button {other:?}")),
            };
            let pull = check_run.pull_requests.first().copied();
            vote(
                state,
                github,
                &context,
                VoteAsk {
                    approval_id,
                    approve,
                    login: context.sender.login.clone(),
                    head_sha: check_run.head_sha.clone(),
                    pull,
                    how: "the check run's button",
                },
            )
            .await
        }
        WebhookEvent::CheckRunRerequested { context, check_run } => {
            rerun(state, github, &context, &check_run).await
        }
        WebhookEvent::PullRequestReviewSubmitted {
            context,
            pull_request,
            review,
        } => {
            let login = review
                .author
                .as_ref()
                .map_or_else(|| context.sender.login.clone(), |a| a.login.clone());
            match review.state {
                ReviewState::Approved => {
                    let Some(mission) = mission_of_pull(state, &context, &pull_request).await?
                    else {
                        return Ok(format!(
                            "an approving review of #{}, which is no flightdeck mission's",
                            pull_request.number
                        ));
                    };
                    let Some(approval) = open_publish_gate(&mission) else {
                        return Ok(format!(
                            "an approving review of #{}: mission {} waits for no approval",
                            pull_request.number, mission.id
                        ));
                    };
                    vote(
                        state,
                        github,
                        &context,
                        VoteAsk {
                            approval_id: approval,
                            approve: true,
                            login,
                            head_sha: review.commit_id.clone().unwrap_or_default(),
                            pull: Some(pull_request.number),
                            how: "an approving review",
                        },
                    )
                    .await
                }
                ReviewState::Commented | ReviewState::ChangesRequested => {
                    let feedback = Feedback {
                        number: pull_request.number,
                        login,
                        text: review.body.clone(),
                        review: Some(review.id),
                    };
                    follow_up(state, github, delivery, &context, feedback).await
                }
                _ => Ok(format!("a review in state {:?}; nothing to do", review.state)),
            }
        }
        WebhookEvent::PullRequestReviewDismissed { pull_request, .. } => Ok(format!(
            "a review of #{} was dismissed; a vote already recorded stands (the timeline is append-only)",
            pull_request.number
        )),
        WebhookEvent::PullRequestSynchronize {
            context,
            pull_request,
            after,
            ..
        } => synchronized(state, github, &context, &pull_request, after).await,
        WebhookEvent::PullRequestClosed {
            context,
            pull_request,
        } => {
            let Some(mission) = mission_of_pull(state, &context, &pull_request).await? else {
                return Ok(format!("#{} closed; no flightdeck mission's", pull_request.number));
            };
            if mission.status.is_terminal() {
                return Ok(format!(
                    "#{} closed; mission {} had finished",
                    pull_request.number, mission.id
                ));
            }
            let by = format!("github:{}", context.sender.login);
            state.engine.cancel(&mission.id, &by).await?;
            Ok(format!(
                "#{} closed by {}: mission {} cancelled",
                pull_request.number, context.sender.login, mission.id
            ))
        }
        WebhookEvent::Installation {
            action,
            installation,
            ..
        } => Ok(format!("installation {} {action}", installation.id)),
        WebhookEvent::InstallationRepositories {
            action,
            installation,
            added,
            removed,
            ..
        } => Ok(format!(
            "installation {} repositories {action}: {} added, {} removed",
            installation.id,
            added.len(),
            removed.len()
        )),
        WebhookEvent::InstallationTarget {
            action,
            installation_id,
            ..
        } => Ok(format!("installation {installation_id} target {action}")),
        WebhookEvent::Other { event, action } => Ok(format!(
            "{event}{} is not an event flightdeck takes",
            action.map(|a| format!(".{a}")).unwrap_or_default()
        )),
    }
}

/// The template a `flightdeck:TEMPLATE` label names (the prefix is `trigger_label`,
/// compared without case, as GitHub compares label names).
pub(super) fn template_of_label(label: &str, trigger: &str) -> Option<String> {
    let (prefix, template) = label.split_once(':')?;
    if !prefix.trim().eq_ignore_ascii_case(trigger) {
        return None;
    }
    Some(template.trim().to_string())
}

/// A `/flightdeck run` command: the template and the params.
type RunCommand = (String, BTreeMap<String, String>);

/// `/flightdeck run TEMPLATE key=value…` on a line of its own: `None` when the comment has
/// no such line, an error saying what is wrong with one that does.
pub(super) fn parse_run_command(body: &str) -> Option<Result<RunCommand, String>> {
    let line = body
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("/flightdeck"))?;
    let mut words = line.split_whitespace();
    words.next();
    if words.next() != Some("run") {
        return Some(Err(format!(
            "{} is not a flightdeck command (the only one is `/flightdeck run`)",
            super::view::code(line, 80)
        )));
    }
    let Some(template) = words.next() else {
        return Some(Err("the command names no template".to_string()));
    };
    let mut params = BTreeMap::new();
    for word in words {
        match word.split_once('=') {
            Some((key, value)) if !key.is_empty() => {
                params.insert(key.to_string(), value.to_string());
            }
            _ => {
                return Some(Err(format!(
                    "{} is not key=value",
                    super::view::code(word, 80)
                )))
            }
        }
    }
    Some(Ok((template.to_string(), params)))
}

/// A request to start a mission from an issue.
struct Ask {
    template: String,
    params: BTreeMap<String, String>,
    login: String,
    /// What asked, for the reply: "the label `flightdeck:fix`".
    how: String,
}

/// The installation a delivery names, or the outcome when it names none (a repository
/// webhook that is not the App's).
fn installation_of(context: &Context) -> Result<u64, String> {
    context.installation_id.ok_or_else(|| {
        format!(
            "refused: the delivery about {} names no installation of the App",
            context.repository.full_name
        )
    })
}

/// Whether `login` may write to the repository, asked of GitHub. `Err` carries the
/// outcome when the answer is that the App cannot reach it.
async fn can_write(
    github: &GitHubChannel,
    installation: u64,
    repository: &Repository,
    login: &str,
) -> Result<Result<bool, String>, Again> {
    match github
        .client()
        .collaborator_permission(installation, &repository.owner, &repository.name, login)
        .await
    {
        Ok(permission) => Ok(Ok(permission.permission.can_write())),
        // No token for the installation: GitHub does not know it (or the App was removed).
        Err(GitHubError::Api {
            status: 404 | 401 | 403,
            ref call,
            ..
        }) if call.contains("/access_tokens") => Ok(Err(format!(
            "refused: installation {installation} is not one of the App's (no token for it)"
        ))),
        Err(GitHubError::Api { status: 404, .. }) => Ok(Ok(false)),
        Err(e) if transient(&e) => Err(Again(format!("asking {login}'s permission: {e}"))),
        Err(e) => Ok(Err(format!(
            "refused: the App cannot reach {} through installation {installation}: {e}",
            repository.full_name
        ))),
    }
}

/// Starts a mission from an issue, after checking who asked.
async fn start(
    state: &Shared,
    github: &GitHubChannel,
    delivery: &GitHubDelivery,
    context: &Context,
    issue: &Issue,
    ask: Ask,
) -> Handled {
    let installation = match installation_of(context) {
        Ok(id) => id,
        Err(outcome) => return Ok(outcome),
    };
    let repository = &context.repository;
    match can_write(github, installation, repository, &ask.login).await? {
        Ok(true) => {}
        Ok(false) => {
            let text = format!(
                "@{}: nothing started. Only people with write access to {} can start flightdeck missions; {} was ignored.",
                ask.login, repository.full_name, ask.how
            );
            reply(github, context, issue.number, &text).await?;
            return Ok(format!(
                "refused {} by {}: no write access",
                ask.how, ask.login
            ));
        }
        Err(outcome) => return Ok(outcome),
    }
    let Some(clone_url) = repository.clone_url.clone() else {
        return Ok(format!(
            "refused: the delivery gives no clone URL for {}",
            repository.full_name
        ));
    };
    let base_branch = repository
        .default_branch
        .clone()
        .unwrap_or_else(|| "main".to_string());
    let goal = issue_goal(issue);
    let origin = GitHubOrigin {
        installation_id: installation,
        repository: repository.full_name.clone(),
        issue: issue.number,
        requested_by_login: ask.login.clone(),
        base_branch: base_branch.clone(),
        pull_request: None,
        branch: None,
    };
    let request = RunRequest {
        template: ask.template.clone(),
        repo: RepoSource::Remote(clone_url),
        base: base_branch,
        params: ask.params.clone(),
        requested_by: format!("github:{}", ask.login),
        origin: MissionOrigin {
            goal: Some(goal),
            source: Some(flightdeck_core::event::MissionSource::Github),
            follows: None,
            github: Some(origin),
        },
        git_auth: None,
    };
    match create(state, github, delivery, installation, request).await? {
        // The mission's comment on the issue is the notifier's (one writer of it).
        Ok(mission) => Ok(format!(
            "mission {mission} started from {} on {}#{} by {}",
            ask.how, repository.full_name, issue.number, ask.login
        )),
        Err(refusal) => {
            let text = format!("@{}: nothing started: {refusal}", ask.login);
            reply(github, context, issue.number, &text).await?;
            Ok(format!("refused {}: {}", ask.how, first_line(&refusal)))
        }
    }
}

/// The issue as the mission's goal.
fn issue_goal(issue: &Issue) -> String {
    let mut goal = format!("GitHub issue #{}: {}", issue.number, issue.title.trim());
    if !issue.body.trim().is_empty() {
        goal.push_str("\n\n");
        goal.push_str(issue.body.trim());
    }
    goal
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

/// Runs the intake (fetch at the base, read the template and policy there, check the
/// request and the secrets' scopes) and creates the mission, queued for a worker. `Ok(Err)`
/// is a refusal to tell the requester (a template that does not exist, a bad param).
/// What a follow-up is governed by: the template, policy and CODEOWNERS its earlier
/// mission was created with, never the files on the branch under review (which the agent
/// and anyone with write access may have changed).
struct Pinned {
    template_source: String,
    policy_source: String,
    policy_file: String,
    codeowners: Option<flightdeck_engine::RepoFile>,
}

impl Pinned {
    async fn of(
        state: &Shared,
        created: &flightdeck_core::event::MissionCreated,
        mission: &str,
    ) -> Result<Pinned, Again> {
        let artifacts = state.engine.config().artifacts.clone();
        let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
        let template_source = text(
            artifacts
                .get(&created.template_source)
                .await
                .map_err(|e| Again(format!("reading mission {mission}'s template: {e}")))?,
        );
        let policy_source = match &created.policy_source {
            Some(digest) => text(
                artifacts
                    .get(digest)
                    .await
                    .map_err(|e| Again(format!("reading mission {mission}'s policy: {e}")))?,
            ),
            None => flightdeck_policy::BUILTIN_POLICY_TOML.to_string(),
        };
        let codeowners =
            match (&created.codeowners, &created.codeowners_path) {
                (Some(digest), Some(path)) => Some(flightdeck_engine::RepoFile {
                    path: path.clone(),
                    source: text(artifacts.get(digest).await.map_err(|e| {
                        Again(format!("reading mission {mission}'s CODEOWNERS: {e}"))
                    })?),
                }),
                _ => None,
            };
        Ok(Pinned {
            template_source,
            policy_source,
            policy_file: format!("the policy mission {mission} was created with"),
            codeowners,
        })
    }
}

async fn create(
    state: &Shared,
    github: &GitHubChannel,
    delivery: &GitHubDelivery,
    installation: u64,
    request: RunRequest,
) -> Result<Result<String, String>, Again> {
    create_pinned(state, github, delivery, installation, request, None, "").await
}

/// [`create`], with what governs it pinned (a follow-up), and the base commit it must have
/// (the head that was checked; empty: any).
async fn create_pinned(
    state: &Shared,
    github: &GitHubChannel,
    delivery: &GitHubDelivery,
    installation: u64,
    mut request: RunRequest,
    pinned: Option<Pinned>,
    expected_base: &str,
) -> Result<Result<String, String>, Again> {
    // The mission's id comes from the delivery's: a server that dies after creating it and
    // before the delivery is marked handled finds it created when it takes the delivery
    // again, and creates nothing twice.
    let id = mission_id_of(delivery);
    match state.engine.load(id.as_str()).await {
        Ok(_) => return Ok(Ok(id.as_str().to_string())),
        Err(flightdeck_engine::EngineError::UnknownMission(_)) => {}
        Err(e) => return Err(e.into()),
    }
    request.git_auth = Some(
        github
            .app()
            .git_auth_header(installation)
            .await
            .map_err(|e| {
                Again(format!(
                    "an installation token to fetch the repository: {e}"
                ))
            })?,
    );
    let plain = !request.template.is_empty()
        && request
            .template
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !plain {
        return Ok(Err(format!(
            "{} is not a template name (letters, digits, - and _ of the repository's .flightdeck/missions/)",
            super::view::code(&request.template, 80)
        )));
    }
    let app = state.app.clone();
    let expected_base = expected_base.to_string();
    let intake = tokio::task::spawn_blocking(move || {
        let mut intake = intake::intake(&app.data_dir, &request)?;
        if !expected_base.is_empty() && intake.base_commit != expected_base {
            return Err(AppError::bad_input(
                format!(
                    "the branch moved while the follow-up started (to {})",
                    intake.base_commit
                ),
                Some("comment again on the pull request as it is now".to_string()),
            ));
        }
        if let Some(pinned) = pinned {
            intake.request.template_source = pinned.template_source;
            intake.request.policy_source = pinned.policy_source;
            intake.request.policy_file = pinned.policy_file;
            intake.request.codeowners = pinned.codeowners;
        }
        flightdeck_engine::Engine::validate(&intake.request, &app.models, &app.workspace)
            .map_err(AppError::from)?;
        intake::check_secret_scopes(intake.scope_subject(), &app.config, &app.config_path)?;
        Ok::<_, AppError>(intake)
    })
    .await
    .map_err(|e| Again(format!("the intake stopped: {e}")))?;
    let intake = match intake {
        Ok(intake) => intake,
        Err(e) if e.kind == flightdeck_app::ErrorKind::BadInput => {
            let text = match &e.hint {
                Some(hint) => format!("{}\nhint: {hint}", e.message),
                None => e.message,
            };
            return Ok(Err(text));
        }
        Err(e) => return Err(Again(e.message)),
    };
    let mut request = intake.request;
    request.id = id;
    let created = state.engine.create(request).await?;
    Ok(Ok(created.id))
}

/// The id of the mission a delivery starts: its time is when the delivery was received, its
/// random part the delivery id's SHA-256 (80 bits, as a ULID has).
fn mission_id_of(delivery: &GitHubDelivery) -> MissionId {
    let digest = flightdeck_core::hash::sha256_hex(delivery.id.as_bytes());
    let random = u128::from_str_radix(digest.get(..20).unwrap_or("0"), 16).unwrap_or(0);
    MissionId::from_parts(u64::try_from(delivery.received_ms).unwrap_or(0), random)
}

/// A comment on the issue or pull request, whatever the mission.
async fn reply(
    github: &GitHubChannel,
    context: &Context,
    number: u64,
    text: &str,
) -> Result<(), Again> {
    let Some(installation) = context.installation_id else {
        return Ok(());
    };
    let repository = &context.repository;
    match github
        .client()
        .create_issue_comment(
            installation,
            &repository.owner,
            &repository.name,
            number,
            text,
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if transient(&e) => Err(Again(format!("replying on #{number}: {e}"))),
        Err(e) => {
            github.report(&format!(
                "replying on {}#{number} failed: {e}",
                repository.full_name
            ));
            Ok(())
        }
    }
}

/// "Re-run" on a `flightdeck/approval` check run: it is drawn again, in place, from the
/// mission as it stands.
async fn rerun(
    state: &Shared,
    github: &GitHubChannel,
    context: &Context,
    check_run: &flightdeck_github::types::CheckRun,
) -> Handled {
    if check_run.name != CHECK_NAME {
        return Ok(format!(
            "re-run of check run {:?}; not flightdeck's",
            check_run.name
        ));
    }
    let Some(reference) = check_run.external_id.clone() else {
        return Ok("re-run of a flightdeck/approval check run without a reference".to_string());
    };
    let mission_id = flightdeck_core::ids::mission_of_approval(&reference)
        .map_or_else(|| reference.clone(), |m| m.as_str().to_string());
    let mission = match state.engine.load(&mission_id).await {
        Ok(mission) => mission,
        Err(flightdeck_engine::EngineError::UnknownMission(_)) => {
            return Ok(format!("re-run of {reference}: no such mission"))
        }
        Err(e) => return Err(e.into()),
    };
    // Only a check run on the head the mission proposed, in this repository, is drawn
    // again: any other (a pushed head's voided run) stays as it is.
    let proposed_here = mission
        .proposed
        .as_ref()
        .filter(|p| p.head_sha == check_run.head_sha);
    let same_repository = mission
        .created
        .as_ref()
        .and_then(|c| c.github.as_ref())
        .is_some_and(|g| {
            g.repository
                .eq_ignore_ascii_case(&context.repository.full_name)
        });
    if proposed_here.is_none() || !same_repository {
        return Ok(format!(
            "re-run of a check run on {}, which is not what mission {} proposed; left as it is",
            short(&check_run.head_sha),
            mission.id
        ));
    }
    let gate = mission
        .approvals_in_order()
        .filter(|a| a.request.gate == "publish")
        .last();
    let fields = match gate {
        Some(approval) if approval.request.approval_id == reference => {
            super::view::approval_check(github, &mission, approval)
        }
        None if reference == mission.id && mission.published.is_some() => {
            super::view::no_approval_check(github, &mission)
        }
        _ => {
            return Ok(format!(
                "re-run of {reference}: not the check run of mission {}'s gate; left as it is",
                mission.id
            ))
        }
    };
    let installation = match installation_of(context) {
        Ok(id) => id,
        Err(outcome) => return Ok(outcome),
    };
    let repository = &context.repository;
    match github
        .client()
        .update_check_run(
            installation,
            &repository.owner,
            &repository.name,
            check_run.id,
            &fields,
        )
        .await
    {
        Ok(_) => Ok(format!(
            "re-run of {reference}: the check run is drawn again"
        )),
        Err(e) => github_failed("drawing the check run again", e),
    }
}

/// A vote asked from GitHub.
struct VoteAsk {
    approval_id: String,
    approve: bool,
    login: String,
    /// The commit it was given on (the check run's, or the review's).
    head_sha: String,
    pull: Option<u64>,
    how: &'static str,
}

/// Records a vote given on GitHub, when it was given on the head flightdeck proposed;
/// tells on the pull request why not otherwise.
async fn vote(state: &Shared, github: &GitHubChannel, context: &Context, ask: VoteAsk) -> Handled {
    let Some(mission_id) = flightdeck_core::ids::mission_of_approval(&ask.approval_id) else {
        return Ok(format!("{:?} is not an approval id", ask.approval_id));
    };
    let mission = match state.engine.load(mission_id.as_str()).await {
        Ok(mission) => mission,
        Err(flightdeck_engine::EngineError::UnknownMission(_)) => {
            return Ok(format!("no mission for approval {}", ask.approval_id))
        }
        Err(e) => return Err(e.into()),
    };
    let repository = &context.repository;
    let same_repository = mission
        .created
        .as_ref()
        .and_then(|c| c.github.as_ref())
        .is_some_and(|g| g.repository.eq_ignore_ascii_case(&repository.full_name));
    if !same_repository {
        return Ok(format!(
            "refused: approval {} is not for a mission of {}",
            ask.approval_id, repository.full_name
        ));
    }
    let number = ask
        .pull
        .or_else(|| mission.proposed.as_ref().map(|p| p.pr_number));
    let proposed_head = mission.proposed.as_ref().map(|p| p.head_sha.clone());
    if proposed_head.as_deref() != Some(ask.head_sha.as_str()) {
        let text = format!(
            "@{}: {} was not recorded: it was given on commit {}, and flightdeck asks approval for {}, the commit it proposed. Approve that commit, or ask for a new mission on the new one.",
            ask.login,
            ask.how,
            short(&ask.head_sha),
            proposed_head.as_deref().map_or("no commit yet", short),
        );
        if let Some(number) = number {
            reply(github, context, number, &text).await?;
        }
        return Ok(format!(
            "refused {} by {}: not on the proposed head",
            ask.how, ask.login
        ));
    }
    // Who decides on GitHub is a person the installation knows by that login, who may
    // write to the repository, and not who asked for the mission under any of their names.
    let requester = mission
        .created
        .as_ref()
        .and_then(|c| c.github.as_ref())
        .map(|g| g.requested_by_login.clone())
        .unwrap_or_default();
    let known = state
        .engine
        .config()
        .people
        .resolve(&ask.login, Channel::Github)
        .person
        .is_some();
    let installation = match installation_of(context) {
        Ok(id) => id,
        Err(outcome) => return Ok(outcome),
    };
    let refused = if ask.login.eq_ignore_ascii_case(&requester) {
        Some("they asked for this mission, and nobody approves their own request".to_string())
    } else if !known {
        Some(format!(
            "the installation's people do not know the GitHub login {} (`[people] github`)",
            ask.login
        ))
    } else {
        match can_write(github, installation, repository, &ask.login).await? {
            Ok(true) => None,
            Ok(false) => Some(format!(
                "{} has no write access to {}",
                ask.login, repository.full_name
            )),
            Err(outcome) => return Ok(outcome),
        }
    };
    if let Some(why) = refused {
        let text = format!("@{}: {} was not recorded: {why}.", ask.login, ask.how);
        if let Some(number) = number {
            reply(github, context, number, &text).await?;
        }
        return Ok(format!("refused {} by {}: {why}", ask.how, ask.login));
    }
    let vote = Vote {
        approval_id: ask.approval_id.clone(),
        by: ask.login.clone(),
        approve: ask.approve,
        comment: None,
        channel: Channel::Github,
        vouched_email: None,
    };
    match state.engine.decide_approval(vote).await {
        Ok(_) => Ok(format!(
            "{} by {} on {}: {} recorded",
            ask.how,
            ask.login,
            ask.approval_id,
            if ask.approve { "approve" } else { "deny" }
        )),
        Err(e) => {
            let refusal = AppError::from(e);
            if refusal.kind != flightdeck_app::ErrorKind::Forbidden
                && refusal.kind != flightdeck_app::ErrorKind::Conflict
                && refusal.kind != flightdeck_app::ErrorKind::NotFound
            {
                return Err(Again(refusal.message));
            }
            let text = format!(
                "@{}: {} was not recorded: {}",
                ask.login, ask.how, refusal.message
            );
            if let Some(number) = number {
                reply(github, context, number, &text).await?;
            }
            Ok(format!(
                "refused {} by {}: {}",
                ask.how, ask.login, refusal.message
            ))
        }
    }
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// The publish gate the mission waits on, if any.
fn open_publish_gate(mission: &MissionState) -> Option<String> {
    mission
        .approvals_in_order()
        .find(|a| a.status == ApprovalStatus::Pending && a.request.gate == "publish")
        .map(|a| a.request.approval_id.clone())
}

/// The mission a pull request is about: the one waiting on it for approval, else the one
/// its `flightdeck/<mission>` branch names.
async fn mission_of_pull(
    state: &Shared,
    context: &Context,
    pull: &PullRequest,
) -> Result<Option<MissionState>, Again> {
    let store = state.engine.config().store.clone();
    let waiting = store.mission_index(WAITING_SCAN).await?;
    for row in waiting.iter().filter(|m| m.status == "awaiting_approval") {
        let mission = state.engine.load(&row.id).await?;
        if proposes(&mission, &context.repository, pull.number) {
            return Ok(Some(mission));
        }
    }
    let Some(id) = pull
        .head_ref
        .strip_prefix("flightdeck/")
        .and_then(MissionId::parse)
    else {
        return Ok(None);
    };
    match state.engine.load(id.as_str()).await {
        Ok(mission) if proposes(&mission, &context.repository, pull.number) => Ok(Some(mission)),
        Ok(_) | Err(flightdeck_engine::EngineError::UnknownMission(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// How many of the newest missions are looked through for one waiting on a pull request.
const WAITING_SCAN: u32 = 2_000;

/// Whether the mission proposed its change as that pull request of that repository.
fn proposes(mission: &MissionState, repository: &Repository, number: u64) -> bool {
    let same_repository = mission
        .created
        .as_ref()
        .and_then(|c| c.github.as_ref())
        .is_some_and(|g| g.repository.eq_ignore_ascii_case(&repository.full_name));
    same_repository
        && mission
            .proposed
            .as_ref()
            .is_some_and(|p| p.pr_number == number)
}

/// A push to a flightdeck pull request: when the new head's tree is not the tree that was
/// proposed (and approved), the approval does not carry over: the new head gets a
/// `failure` check run saying so, which a branch protection requiring the check holds.
async fn synchronized(
    state: &Shared,
    github: &GitHubChannel,
    context: &Context,
    pull: &PullRequest,
    after: Option<String>,
) -> Handled {
    let Some(mission) = mission_of_pull(state, context, pull).await? else {
        return Ok(format!(
            "#{} synchronized; no flightdeck mission's",
            pull.number
        ));
    };
    let Some(proposed) = mission.proposed.clone() else {
        return Ok(format!(
            "#{} synchronized; nothing proposed yet",
            pull.number
        ));
    };
    let after = after.unwrap_or_else(|| pull.head_sha.clone());
    if after == proposed.head_sha {
        return Ok(format!(
            "#{} synchronized to flightdeck's own head",
            pull.number
        ));
    }
    let installation = match installation_of(context) {
        Ok(id) => id,
        Err(outcome) => return Ok(outcome),
    };
    let repository = &context.repository;
    let commit = match github
        .client()
        .get_commit(installation, &repository.owner, &repository.name, &after)
        .await
    {
        Ok(Some(commit)) => commit,
        Ok(None) => {
            return Ok(format!(
                "#{} synchronized to {}, which GitHub does not have",
                pull.number,
                short(&after)
            ))
        }
        Err(e) => return github_failed(&format!("reading commit {}", short(&after)), e),
    };
    if let Some(own) = own_push(state, repository, &commit).await? {
        return Ok(format!(
            "#{} synchronized to {}, mission {own}'s own push",
            pull.number,
            short(&after)
        ));
    }
    if commit.tree_sha == proposed.tree {
        // The same content: what was approved covers it, and the new head says so (branch
        // protection asks for the check on the head).
        let gate = mission
            .approvals_in_order()
            .filter(|a| a.request.gate == "publish")
            .last();
        let fields = match gate {
            Some(approval) if approval.status == ApprovalStatus::Approved => {
                super::view::approval_check(github, &mission, approval)
            }
            None if mission.published.is_some() => super::view::no_approval_check(github, &mission),
            _ => {
                return Ok(format!(
                    "#{} synchronized to {}, the same tree as proposed, not approved yet",
                    pull.number,
                    short(&after)
                ))
            }
        };
        return match github
            .client()
            .create_check_run(
                installation,
                &repository.owner,
                &repository.name,
                &after,
                &fields,
            )
            .await
        {
            Ok(_) => Ok(format!(
                "#{} synchronized to {}, the same tree as proposed: the approval stands",
                pull.number,
                short(&after)
            )),
            Err(e) => github_failed("the check run carrying the approval", e),
        };
    }
    let fields = super::view::voided_check(github, &mission, &proposed, &after);
    match github
        .client()
        .create_check_run(installation, &repository.owner, &repository.name, &after, &fields)
        .await
    {
        Ok(_) => Ok(format!(
            "#{} synchronized to {}: the diff changed since {}, so its approval is void for the new head",
            pull.number,
            short(&after),
            short(&proposed.head_sha)
        )),
        Err(e) => github_failed("the check run voiding the approval", e),
    }
}

/// The mission whose own push `commit` is: its message names the mission
/// (`Flightdeck-Mission:`), and that mission of this repository proposed it, or is about to
/// (its recorded commit has this tree). A person's commit naming a mission is not enough.
async fn own_push(
    state: &Shared,
    repository: &Repository,
    commit: &flightdeck_github::types::GitCommit,
) -> Result<Option<String>, Again> {
    let Some(id) = commit
        .message
        .lines()
        .find_map(|l| l.strip_prefix("Flightdeck-Mission:"))
        .and_then(|id| MissionId::parse(id.trim()))
    else {
        return Ok(None);
    };
    let mission = match state.engine.load(id.as_str()).await {
        Ok(mission) => mission,
        Err(flightdeck_engine::EngineError::UnknownMission(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let here = mission
        .created
        .as_ref()
        .and_then(|c| c.github.as_ref())
        .is_some_and(|g| g.repository.eq_ignore_ascii_case(&repository.full_name));
    let ours = mission
        .proposed
        .as_ref()
        .is_some_and(|p| p.head_sha == commit.sha)
        || mission
            .committing
            .as_ref()
            .is_some_and(|c| c.tree == commit.tree_sha);
    Ok((here && ours).then(|| mission.id.clone()))
}

/// Review comments, as a follow-up mission takes them.
struct Feedback {
    number: u64,
    login: String,
    text: String,
    /// The review whose inline comments belong to it.
    review: Option<u64>,
}

/// Review comments on a finished mission's pull request, by an eligible person: a
/// follow-up mission on the same branch, whose goal is the comments.
async fn follow_up(
    state: &Shared,
    github: &GitHubChannel,
    delivery: &GitHubDelivery,
    context: &Context,
    feedback: Feedback,
) -> Handled {
    let installation = match installation_of(context) {
        Ok(id) => id,
        Err(outcome) => return Ok(outcome),
    };
    let repository = &context.repository;
    let client = github.client();
    let pull = match client
        .get_pull_request(
            installation,
            &repository.owner,
            &repository.name,
            feedback.number,
        )
        .await
    {
        Ok(pull) => pull,
        Err(e) => return github_failed(&format!("reading #{}", feedback.number), e),
    };
    let Some(earlier) = mission_of_pull(state, context, &pull).await? else {
        return Ok(format!(
            "a comment on #{}, which is no flightdeck mission's",
            feedback.number
        ));
    };
    let mut goal = format!(
        "Address the review comments by @{} on pull request #{} ({}):\n\n{}",
        feedback.login,
        feedback.number,
        pull.title.trim(),
        feedback.text.trim()
    );
    let mut said_something = !feedback.text.trim().is_empty();
    if let Some(review) = feedback.review {
        match client
            .list_review_comments(
                installation,
                &repository.owner,
                &repository.name,
                feedback.number,
                review,
            )
            .await
        {
            Ok(comments) => {
                for comment in comments {
                    let at = match comment.line {
                        Some(line) => format!("{}:{line}", comment.path),
                        None => comment.path.clone(),
                    };
                    said_something |= !comment.body.trim().is_empty();
                    goal.push_str(&format!("\n\n{at}: {}", comment.body.trim()));
                }
            }
            Err(e) if transient(&e) => {
                return Err(Again(format!("reading the review's comments: {e}")))
            }
            Err(e) => github.report(&format!("reading review {review}'s comments failed: {e}")),
        }
    }
    if !said_something {
        return Ok(format!(
            "a review of #{} by {} with no comment; nothing to follow up",
            feedback.number, feedback.login
        ));
    }
    if is_bot_login(&feedback.login) {
        return Ok("a review by a bot; ignored".to_string());
    }
    let eligible =
        eligible_reviewer(state, github, installation, repository, &feedback.login).await?;
    if let Err(why) = eligible {
        let text = format!(
            "@{}: flightdeck ignores this comment: {why}. Only people the installation knows (`[people] github`) with write access start follow-up missions.",
            feedback.login
        );
        reply(github, context, feedback.number, &text).await?;
        return Ok(format!(
            "ignored review comments by {}: {why}",
            feedback.login
        ));
    }
    // The follow-up starts from the branch's head: it must be a head flightdeck proposed
    // (by content), or the follow-up would carry commits nobody approved under its own
    // approval. Its mission is the one the follow-up follows.
    let head = match client
        .get_commit(
            installation,
            &repository.owner,
            &repository.name,
            &pull.head_sha,
        )
        .await
    {
        Ok(Some(head)) => head,
        Ok(None) => return Ok(format!("#{}'s head is not on GitHub", feedback.number)),
        Err(e) => return github_failed(&format!("reading #{}'s head", feedback.number), e),
    };
    let earlier = match own_push(state, repository, &head).await? {
        Some(id) if id != earlier.id => state.engine.load(&id).await?,
        _ => earlier,
    };
    if earlier.proposed.as_ref().map(|p| p.tree.as_str()) != Some(head.tree_sha.as_str()) {
        let text = format!(
            "@{}: no follow-up started: the branch's head {} is not what flightdeck proposed and was approved (mission {}), so a follow-up would carry commits nobody approved. Push the branch back to what was proposed, or open a new issue.",
            feedback.login,
            short(&pull.head_sha),
            earlier.id
        );
        reply(github, context, feedback.number, &text).await?;
        return Ok(format!(
            "refused a follow-up on #{}: its head {} is not a proposed one",
            feedback.number,
            short(&pull.head_sha)
        ));
    }
    if !earlier.status.is_terminal() {
        let text = format!(
            "@{}: mission {} is still {}; comment again once it has finished, and a follow-up mission will take your comments.",
            feedback.login,
            earlier.id,
            earlier.status.as_str()
        );
        reply(github, context, feedback.number, &text).await?;
        return Ok(format!("comments while mission {} runs; told", earlier.id));
    }
    let Some(created) = earlier.created.clone() else {
        return Ok(format!("mission {} has no creation record", earlier.id));
    };
    let Some(clone_url) = repository.clone_url.clone() else {
        return Ok(format!(
            "refused: the delivery gives no clone URL for {}",
            repository.full_name
        ));
    };
    let origin = GitHubOrigin {
        installation_id: installation,
        repository: repository.full_name.clone(),
        issue: feedback.number,
        requested_by_login: feedback.login.clone(),
        base_branch: pull.base_ref.clone(),
        pull_request: Some(feedback.number),
        branch: Some(pull.head_ref.clone()),
    };
    let request = RunRequest {
        template: created.template.clone(),
        repo: RepoSource::Remote(clone_url),
        base: pull.head_ref.clone(),
        params: created.params.clone(),
        requested_by: format!("github:{}", feedback.login),
        origin: MissionOrigin {
            goal: Some(goal),
            source: Some(flightdeck_core::event::MissionSource::Github),
            follows: Some(earlier.id.clone()),
            github: Some(origin),
        },
        git_auth: None,
    };
    let pinned = Pinned::of(state, &created, &earlier.id).await?;
    match create_pinned(
        state,
        github,
        delivery,
        installation,
        request,
        Some(pinned),
        &pull.head_sha,
    )
    .await?
    {
        Ok(mission) => Ok(format!(
            "follow-up mission {mission} of {} from {}'s comments on #{}",
            earlier.id, feedback.login, feedback.number
        )),
        Err(refusal) => {
            let text = format!("@{}: no follow-up started: {refusal}", feedback.login);
            reply(github, context, feedback.number, &text).await?;
            Ok(format!("refused a follow-up: {}", first_line(&refusal)))
        }
    }
}

fn is_bot_login(login: &str) -> bool {
    login.ends_with("[bot]")
}

/// Whether review comments by `login` start a follow-up: a person the installation knows
/// by that GitHub login, with write access to the repository.
async fn eligible_reviewer(
    state: &Shared,
    github: &GitHubChannel,
    installation: u64,
    repository: &Repository,
    login: &str,
) -> Result<Result<(), String>, Again> {
    let known = state
        .engine
        .config()
        .people
        .resolve(login, Channel::Github)
        .person
        .is_some();
    if !known {
        return Ok(Err(format!("{login} is not in the installation's people")));
    }
    match can_write(github, installation, repository, login).await? {
        Ok(true) => Ok(Ok(())),
        Ok(false) => Ok(Err(format!(
            "{login} has no write access to {}",
            repository.full_name
        ))),
        Err(outcome) => Ok(Err(outcome)),
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_run_command, template_of_label};

    #[test]
    fn a_delivery_names_one_mission() {
        let delivery = |id: &str, received_ms: i64| flightdeck_store::GitHubDelivery {
            id: id.to_string(),
            event: "issues".to_string(),
            body: Vec::new(),
            received_ms,
            attempts: 0,
        };
        let first = super::mission_id_of(&delivery("72d3162e-cc78-11e3", 1_765_000_000_000));
        assert_eq!(
            first,
            super::mission_id_of(&delivery("72d3162e-cc78-11e3", 1_765_000_000_000))
        );
        assert_ne!(
            first,
            super::mission_id_of(&delivery("72d3162e-cc78-11e4", 1_765_000_000_000))
        );
        assert!(flightdeck_core::MissionId::parse(first.as_str()).is_some());
    }

    #[test]
    fn labels_name_templates_under_the_trigger() {
        let cases = [
            ("flightdeck:fix-bug", Some("fix-bug")),
            ("FlightDeck:fix", Some("fix")),
            ("flightdeck: docs ", Some("docs")),
            ("bug", None),
            ("other:fix", None),
        ];
        for (label, want) in cases {
            assert_eq!(
                template_of_label(label, "flightdeck").as_deref(),
                want,
                "{label}"
            );
        }
    }

    #[test]
    fn run_commands_are_read_from_their_own_line() {
        let ok = parse_run_command("Please\n/flightdeck run fix-bug level=2 area=parser\nthanks");
        let Some(Ok((template, params))) = ok else {
            panic!("not read: {ok:?}");
        };
        assert_eq!(template, "fix-bug");
        assert_eq!(params.get("level").map(String::as_str), Some("2"));
        assert_eq!(params.get("area").map(String::as_str), Some("parser"));
        assert!(parse_run_command("no command here").is_none());
        assert!(matches!(parse_run_command("/flightdeck go"), Some(Err(_))));
        assert!(matches!(parse_run_command("/flightdeck run"), Some(Err(_))));
        assert!(matches!(
            parse_run_command("/flightdeck run t x"),
            Some(Err(_))
        ));
    }
}
