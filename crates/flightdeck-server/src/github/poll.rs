//! Poll mode (`[github] mode = "poll"`, for an installation GitHub cannot reach): every
//! `poll_seconds`, the one process holding the store's `github-poller` lease asks GitHub's
//! REST API what changed in each repository of each installation of the App, and stores
//! each finding as the webhook delivery GitHub would have sent for it. The handler
//! ([`super::deliveries`]) then takes it exactly as it takes a webhook: the same checks
//! (write access asked of GitHub, eligibility, the proposed head), the same outcomes.
//!
//! - `issues.labeled`: open issues updated since the last look that carry a
//!   `<trigger_label>:TEMPLATE` label (the issues API matches label names exactly, so they
//!   are picked here), each labelling from the issue's latest `labeled` event of that label,
//!   whose `actor` is the sender (the issue does not say who labelled it);
//! - `issue_comment.created`: comments created since, with a `/flightdeck` line, by people
//!   (the handler ignores the rest; they are not stored);
//! - `pull_request_review.submitted`: reviews submitted since on the open pull requests
//!   whose branch is `flightdeck/…` (an approving one votes, comments follow up).
//!
//! Not polled: check-run buttons (`check_run.requested_action`), which GitHub sends only as
//! webhooks, so in poll mode approvals are approving reviews, the web UI, the CLI or Slack;
//! pushes to a flightdeck pull request (`pull_request.synchronize`) and its closing.
//!
//! Each finding has an id of its own (`poll:labeled:<repository id>:<issue>:<event id>`,
//! `poll:comment:<comment id>`, `poll:review:<review id>`), and the store keeps a delivery
//! id once: a finding seen again (each look overlaps the last by a minute, a restart) is
//! not taken twice. The "since" of each repository is kept in the store as a feed cursor
//! (`github-poll:<repository id>`, Unix seconds): the latest `updated_at` GitHub listed, so
//! the local clock's skew does not matter and a list cut at its last page goes on from
//! where it stopped. A first look starts a minute back: what happened before is not taken,
//! as webhooks would not have brought it either. A look costs three requests per
//! repository, plus one per open flightdeck pull request, per issue with a trigger label
//! updated since, and per closed issue with a new command.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use flightdeck_engine::{Clock, SystemClock};
use flightdeck_github::types::{AsSent, Comment, Issue, Repository, ReviewState};
use flightdeck_github::{GitHubClient, GitHubError, PullRequestStateFilter};
use serde_json::{json, Map, Value};

use super::deliveries::{parse_run_command, template_of_label, transient};
use super::GitHubChannel;
use crate::routes::Shared;

/// The store's lease that makes one process poll.
const READER: &str = "github-poller";
/// How far each look reaches back before the last one's cursor.
const OVERLAP_SECS: i64 = 60;
/// The branches flightdeck proposes on.
const BRANCH_PREFIX: &str = "flightdeck/";

/// What one look at a repository found.
#[derive(Debug, Clone, Default)]
pub struct Findings {
    /// In the order they happened on GitHub.
    pub found: Vec<Finding>,
    /// The latest `updated_at` of the issues and comments listed (Unix seconds): where the
    /// next look starts, less the overlap.
    pub latest_unix: Option<i64>,
    /// What could not be read for good (GitHub's answer was final), one line each.
    pub skipped: Vec<String>,
}

/// One finding: a delivery as GitHub would have sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The delivery id, the same each time the same thing is found.
    pub id: String,
    /// `X-GitHub-Event`: `issues`, `issue_comment`, `pull_request_review`.
    pub event: &'static str,
    /// When it happened, by GitHub's clock (Unix seconds).
    pub at_unix: i64,
    pub payload: Value,
}

/// Polls while this process holds the store's lease on polling, until the server stops.
pub(super) async fn run(state: Shared, github: Arc<GitHubChannel>) {
    let owner = state.engine.config().worker.0.clone();
    let store = state.engine.config().store.clone();
    let interval = github.app().poll_interval();
    let mut shutdown = state.shutdown.clone();
    loop {
        if shutdown.borrow().is_some() {
            let _ = store.release_feed_reader(READER, &owner).await;
            return;
        }
        match hold(&state, &owner, interval).await {
            Ok(true) => poll(&state, &github, &owner, interval).await,
            Ok(false) => {}
            Err(e) => github.report(&format!("taking the GitHub poller's lease failed: {e}")),
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// The lease outlives two intervals, so that it is not lost between looks, and is renewed
/// while a long look goes on.
fn lease_ttl(interval: Duration) -> Duration {
    (interval * 2 + Duration::from_secs(15)).max(Duration::from_secs(45))
}

async fn hold(
    state: &Shared,
    owner: &str,
    interval: Duration,
) -> Result<bool, flightdeck_store::StoreError> {
    crate::feed_notifier::hold_reader(state, READER, owner, lease_ttl(interval)).await
}

/// One look at every repository of every installation; failures are reported, and what
/// failed is asked again at the next look (its cursor did not move).
async fn poll(state: &Shared, github: &GitHubChannel, owner: &str, interval: Duration) {
    let client = github.client();
    let installations = match client.list_installations().await {
        Ok(installations) => installations,
        Err(e) => {
            github.report(&format!(
                "polling GitHub: listing the App's installations failed: {e}"
            ));
            return;
        }
    };
    let mut renewed = Instant::now();
    for installation in installations.iter().filter(|i| !i.suspended) {
        let repositories = match client
            .list_installation_repositories_as_sent(installation.id)
            .await
        {
            Ok(repositories) => repositories,
            Err(e) => {
                github.report(&format!(
                    "polling GitHub: listing the repositories of installation {} failed: {e}",
                    installation.id
                ));
                continue;
            }
        };
        for repository in &repositories {
            if state.shutdown.borrow().is_some() {
                return;
            }
            if renewed.elapsed() > lease_ttl(interval) / 3 {
                match hold(state, owner, interval).await {
                    Ok(true) => renewed = Instant::now(),
                    Ok(false) => return,
                    Err(e) => {
                        github.report(&format!("renewing the GitHub poller's lease failed: {e}"));
                        return;
                    }
                }
            }
            if let Err(why) = poll_repository(state, github, installation.id, repository).await {
                github.report(&format!("polling {}: {why}", repository.full_name));
            }
        }
    }
}

/// Asks what changed in one repository since its cursor, stores the findings, moves the
/// cursor on.
async fn poll_repository(
    state: &Shared,
    github: &GitHubChannel,
    installation_id: u64,
    repository: &AsSent<Repository>,
) -> Result<(), String> {
    let store = &state.engine.config().store;
    let reader = format!("github-poll:{}", repository.id);
    let cursor = store
        .feed_cursor(&reader)
        .await
        .map_err(|e| format!("reading its cursor {reader}: {e}"))?;
    let start = cursor
        .and_then(|c| i64::try_from(c).ok())
        .unwrap_or_else(|| SystemClock.now_ms() / 1000);
    let since = start - OVERLAP_SECS;
    let findings = findings(
        github.client(),
        installation_id,
        repository,
        github.trigger_label(),
        since,
    )
    .await
    .map_err(|e| format!("asking GitHub what changed since {}: {e}", rfc3339(since)))?;
    for why in &findings.skipped {
        github.report(&format!("polling {}: skipped {why}", repository.full_name));
    }
    let mut new = false;
    for finding in &findings.found {
        let body = serde_json::to_vec(&finding.payload)
            .map_err(|e| format!("encoding finding {}: {e}", finding.id))?;
        new |= store
            .record_delivery(&finding.id, finding.event, &body, SystemClock.now_ms())
            .await
            .map_err(|e| format!("storing finding {}: {e}", finding.id))?;
    }
    if new {
        github.wake();
    }
    let next = findings
        .latest_unix
        .map_or(start, |latest| latest.max(start));
    store
        .save_feed_cursor(&reader, u64::try_from(next).unwrap_or(0))
        .await
        .map_err(|e| format!("saving its cursor {reader}: {e}"))
}

/// What changed in `repository` since `since_unix`, each finding as the delivery GitHub
/// would have sent. A failure that may pass (GitHub's outage, a rate limit) fails the whole
/// look, to be asked again; one GitHub's answer makes final skips that item only.
pub async fn findings(
    client: &GitHubClient,
    installation_id: u64,
    repository: &AsSent<Repository>,
    trigger_label: &str,
    since_unix: i64,
) -> Result<Findings, GitHubError> {
    let look = Look {
        client,
        installation_id,
        repository,
        since_unix,
        since: rfc3339(since_unix),
    };
    let (owner, name) = look.names();
    let mut out = Findings::default();
    let issues = client
        .list_issues_updated_since(installation_id, owner, name, &look.since)
        .await?;
    out.latest_unix = latest(
        out.latest_unix,
        issues.iter().map(|i| i.updated_at.as_deref()),
    );
    look.labels(&issues, trigger_label, &mut out).await?;
    let comments = client
        .list_issue_comments_since(installation_id, owner, name, &look.since)
        .await?;
    out.latest_unix = latest(
        out.latest_unix,
        comments.iter().map(|c| c.updated_at.as_deref()),
    );
    look.commands(&comments, &issues, &mut out).await?;
    look.reviews(&mut out).await?;
    out.found.sort_by_key(|f| f.at_unix);
    Ok(out)
}

/// One look at one repository.
struct Look<'a> {
    client: &'a GitHubClient,
    installation_id: u64,
    repository: &'a AsSent<Repository>,
    since_unix: i64,
    /// `since_unix` as GitHub's `since` parameter.
    since: String,
}

impl Look<'_> {
    fn names(&self) -> (&str, &str) {
        (&self.repository.owner, &self.repository.name)
    }

    /// Each trigger label on the open issues updated since, added since: who added it is
    /// the latest `labeled` event of that label.
    async fn labels(
        &self,
        issues: &[AsSent<Issue>],
        trigger_label: &str,
        out: &mut Findings,
    ) -> Result<(), GitHubError> {
        let (owner, name) = self.names();
        // On a pull request, GitHub sends `pull_request.labeled`, which starts nothing.
        for issue in issues.iter().filter(|i| !i.is_pull_request) {
            let labels: Vec<&Value> = issue
                .json
                .get("labels")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|l| {
                    l.get("name")
                        .and_then(Value::as_str)
                        .is_some_and(|n| template_of_label(n, trigger_label).is_some())
                })
                .collect();
            if labels.is_empty() {
                continue;
            }
            let events = match self
                .client
                .list_issue_events(self.installation_id, owner, name, issue.number)
                .await
            {
                Ok(events) => events,
                Err(e) if transient(&e) => return Err(e),
                Err(e) => {
                    out.skipped
                        .push(format!("the events of #{}: {e}", issue.number));
                    continue;
                }
            };
            for label in labels {
                let label_name = label.get("name").and_then(Value::as_str).unwrap_or("");
                let Some(event) = events.iter().rev().find(|e| {
                    e.event == "labeled"
                        && e.label
                            .as_deref()
                            .is_some_and(|l| l.eq_ignore_ascii_case(label_name))
                }) else {
                    continue;
                };
                let Some(at) = event.created_at.as_deref().and_then(unix) else {
                    continue;
                };
                let Some(actor) = event.json.get("actor").filter(|a| a.is_object()) else {
                    continue;
                };
                if at < self.since_unix {
                    continue;
                }
                out.found.push(Finding {
                    id: format!(
                        "poll:labeled:{}:{}:{}",
                        self.repository.id, issue.number, event.id
                    ),
                    event: "issues",
                    at_unix: at,
                    payload: labeled_payload(
                        self.installation_id,
                        &self.repository.json,
                        &issue.json,
                        label,
                        actor,
                    ),
                });
            }
        }
        Ok(())
    }

    /// The comments created since with a `/flightdeck` line, by people, with the issue
    /// they are on (from `issues` when listed there, else asked for).
    async fn commands(
        &self,
        comments: &[AsSent<Comment>],
        issues: &[AsSent<Issue>],
        out: &mut Findings,
    ) -> Result<(), GitHubError> {
        let (owner, name) = self.names();
        let mut fetched: HashMap<u64, Value> = HashMap::new();
        for comment in comments {
            // Bots' comments (flightdeck's own among them) and those of deleted accounts
            // (no sender) ask nothing the handler would take.
            let person = comment.json.get("user").is_some_and(Value::is_object);
            if !person || comment.author.is_bot || parse_run_command(&comment.body).is_none() {
                continue;
            }
            let Some(at) = comment.created_at.as_deref().and_then(unix) else {
                continue;
            };
            if at < self.since_unix {
                // An older comment, edited since: `created` was its webhook, long ago.
                continue;
            }
            let Some(number) = comment.issue_number() else {
                out.skipped.push(format!(
                    "comment {}: its issue_url names no issue",
                    comment.id
                ));
                continue;
            };
            let listed = issues.iter().find(|i| i.number == number);
            let issue = match (listed, fetched.get(&number)) {
                (Some(issue), _) => issue.json.clone(),
                (None, Some(issue)) => issue.clone(),
                (None, None) => {
                    match self
                        .client
                        .get_issue(self.installation_id, owner, name, number)
                        .await
                    {
                        Ok(issue) => {
                            fetched.insert(number, issue.json.clone());
                            issue.json
                        }
                        Err(e) if transient(&e) => return Err(e),
                        Err(e) => {
                            out.skipped.push(format!(
                                "#{number}, which comment {} is on: {e}",
                                comment.id
                            ));
                            continue;
                        }
                    }
                }
            };
            out.found.push(Finding {
                id: format!("poll:comment:{}", comment.id),
                event: "issue_comment",
                at_unix: at,
                payload: comment_payload(
                    self.installation_id,
                    &self.repository.json,
                    &issue,
                    &comment.json,
                ),
            });
        }
        Ok(())
    }

    /// The reviews submitted since on the open pull requests of flightdeck's branches.
    async fn reviews(&self, out: &mut Findings) -> Result<(), GitHubError> {
        let (owner, name) = self.names();
        let pulls = self
            .client
            .list_pulls(
                self.installation_id,
                owner,
                name,
                PullRequestStateFilter::Open,
            )
            .await?;
        for pull in pulls
            .iter()
            .filter(|p| p.head_ref.starts_with(BRANCH_PREFIX))
        {
            // Its head as it is now: a push GitHub would have announced as `synchronize`
            // (the handler judges whether it changed what was approved; flightdeck's own
            // pushes are recognised there). The head before is not known here: `before`
            // repeats it, and nothing reads it.
            let at = pull
                .json
                .get("updated_at")
                .and_then(Value::as_str)
                .and_then(unix);
            let sender = pull.json.pointer("/head/user").filter(|u| u.is_object());
            if let (Some(at), Some(sender)) = (at, sender) {
                let mut payload = envelope(
                    "synchronize",
                    self.installation_id,
                    &self.repository.json,
                    sender,
                );
                payload.insert("number".into(), json!(pull.number));
                payload.insert("before".into(), json!(pull.head_sha));
                payload.insert("after".into(), json!(pull.head_sha));
                payload.insert("pull_request".into(), pull.json.clone());
                out.found.push(Finding {
                    id: format!("poll:head:{}:{}", pull.number, pull.head_sha),
                    event: "pull_request",
                    at_unix: at,
                    payload: Value::Object(payload),
                });
            }
            let reviews = match self
                .client
                .list_reviews_as_sent(self.installation_id, owner, name, pull.number)
                .await
            {
                Ok(reviews) => reviews,
                Err(e) if transient(&e) => return Err(e),
                Err(e) => {
                    out.skipped
                        .push(format!("the reviews of #{}: {e}", pull.number));
                    continue;
                }
            };
            for review in &reviews {
                // A pending review is not submitted yet; a dismissed one no longer says
                // what it said (its `submitted` webhook would have).
                if !matches!(
                    review.state,
                    ReviewState::Approved | ReviewState::ChangesRequested | ReviewState::Commented
                ) {
                    continue;
                }
                let Some(at) = review.submitted_at.as_deref().and_then(unix) else {
                    continue;
                };
                let Some(sender) = review.json.get("user").filter(|u| u.is_object()) else {
                    continue;
                };
                if at < self.since_unix {
                    continue;
                }
                out.found.push(Finding {
                    id: format!("poll:review:{}", review.id),
                    event: "pull_request_review",
                    at_unix: at,
                    payload: review_payload(
                        self.installation_id,
                        &self.repository.json,
                        &pull.json,
                        &review.json,
                        sender,
                    ),
                });
            }
        }
        Ok(())
    }
}

/// The later of `current` and the latest of `times` (RFC 3339), in Unix seconds.
fn latest<'a>(current: Option<i64>, times: impl Iterator<Item = Option<&'a str>>) -> Option<i64> {
    times.filter_map(|t| t.and_then(unix)).chain(current).max()
}

/// An RFC 3339 time (as GitHub writes them) in Unix seconds.
fn unix(text: &str) -> Option<i64> {
    flightdeck_core::clock::parse_rfc3339_millis(text).map(|ms| ms.div_euclid(1000))
}

/// `YYYY-MM-DDTHH:MM:SSZ`, the form GitHub documents for `since`.
fn rfc3339(unix: i64) -> String {
    let text = flightdeck_core::clock::format_rfc3339_millis(unix.saturating_mul(1000));
    match text.strip_suffix(".000Z") {
        Some(seconds) => format!("{seconds}Z"),
        None => text,
    }
}

/// The `node_id` GitHub gives an installation in webhooks (its legacy global id:
/// base64 of `023:IntegrationInstallation<id>`); the REST API has no field for it.
fn installation_node_id(id: u64) -> String {
    STANDARD.encode(format!("023:IntegrationInstallation{id}"))
}

/// What every repository event carries: the installation, the repository, the sender.
/// (`organization` is left out: the REST answers read have only the owner as a user, and
/// nothing reads it.)
fn envelope(
    action: &str,
    installation_id: u64,
    repository: &Value,
    sender: &Value,
) -> Map<String, Value> {
    let mut payload = Map::new();
    payload.insert("action".into(), json!(action));
    payload.insert("repository".into(), repository.clone());
    payload.insert("sender".into(), sender.clone());
    payload.insert(
        "installation".into(),
        json!({"id": installation_id, "node_id": installation_node_id(installation_id)}),
    );
    payload
}

/// `issues.labeled`: `label` as the issue lists it (a `labeled` event names only the
/// label's name and colour), `sender` the event's actor.
fn labeled_payload(
    installation_id: u64,
    repository: &Value,
    issue: &Value,
    label: &Value,
    sender: &Value,
) -> Value {
    let mut payload = envelope("labeled", installation_id, repository, sender);
    payload.insert("issue".into(), issue.clone());
    payload.insert("label".into(), label.clone());
    Value::Object(payload)
}

/// `issue_comment.created`, sent by the comment's author.
fn comment_payload(
    installation_id: u64,
    repository: &Value,
    issue: &Value,
    comment: &Value,
) -> Value {
    let sender = comment.get("user").cloned().unwrap_or(Value::Null);
    let mut payload = envelope("created", installation_id, repository, &sender);
    payload.insert("issue".into(), issue.clone());
    payload.insert("comment".into(), comment.clone());
    Value::Object(payload)
}

/// `pull_request_review.submitted`, sent by the reviewer. The REST API spells the state in
/// upper case, webhooks in lower case.
fn review_payload(
    installation_id: u64,
    repository: &Value,
    pull: &Value,
    review: &Value,
    sender: &Value,
) -> Value {
    let mut review = review.clone();
    if let Some(state) = review.get("state").and_then(Value::as_str) {
        review["state"] = json!(state.to_ascii_lowercase());
    }
    let mut payload = envelope("submitted", installation_id, repository, sender);
    payload.insert("review".into(), review);
    payload.insert("pull_request".into(), pull.clone());
    Value::Object(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flightdeck_github::webhook::{parse_event, WebhookEvent};

    fn user(login: &str) -> Value {
        json!({"login": login, "id": 7, "type": "User"})
    }

    fn repository() -> Value {
        json!({
            "id": 11, "name": "widgets", "full_name": "acme/widgets", "private": true,
            "owner": user("acme"), "default_branch": "main",
            "clone_url": "https://github.com/acme/widgets.git",
        })
    }

    #[test]
    fn payloads_parse_as_the_webhooks_they_stand_for() {
        let issue = json!({"number": 3, "title": "t", "body": null, "user": user("carol"),
            "labels": [{"name": "flightdeck:fix"}], "state": "open"});
        let label = json!({"name": "flightdeck:fix"});
        let labeled = labeled_payload(42, &repository(), &issue, &label, &user("carol"));
        let body = serde_json::to_vec(&labeled).unwrap_or_default();
        match parse_event("issues", &body) {
            Ok(WebhookEvent::IssueLabeled {
                context,
                issue,
                label,
            }) => {
                assert_eq!(context.installation_id, Some(42));
                assert_eq!(context.sender.login, "carol");
                assert_eq!(
                    context.repository.clone_url.as_deref(),
                    Some("https://github.com/acme/widgets.git")
                );
                assert_eq!(issue.number, 3);
                assert_eq!(label, "flightdeck:fix");
            }
            other => panic!("{other:?}"),
        }

        let pull = json!({"number": 5, "title": "p", "body": null, "user": user("app[bot]"),
            "head": {"ref": "flightdeck/m1", "sha": "a"}, "base": {"ref": "main", "sha": "b"}});
        let review = json!({"id": 9, "state": "APPROVED", "commit_id": "a", "user": user("bob"),
            "body": "", "submitted_at": "2026-01-01T00:00:00Z"});
        let reviewed = review_payload(42, &repository(), &pull, &review, &user("bob"));
        assert_eq!(reviewed["review"]["state"], "approved");
        let body = serde_json::to_vec(&reviewed).unwrap_or_default();
        match parse_event("pull_request_review", &body) {
            Ok(WebhookEvent::PullRequestReviewSubmitted {
                context,
                pull_request,
                review,
            }) => {
                assert_eq!(context.sender.login, "bob");
                assert_eq!(pull_request.head_ref, "flightdeck/m1");
                assert_eq!(review.state, ReviewState::Approved);
            }
            other => panic!("{other:?}"),
        }

        let comment = json!({"id": 12, "body": "/flightdeck run fix", "user": user("mallory")});
        let commented = comment_payload(42, &repository(), &issue, &comment);
        let body = serde_json::to_vec(&commented).unwrap_or_default();
        match parse_event("issue_comment", &body) {
            Ok(WebhookEvent::IssueCommentCreated {
                context, comment, ..
            }) => {
                assert_eq!(context.sender.login, "mallory");
                assert_eq!(comment.id, 12);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn times_are_read_and_written_as_github_does() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            unix("2026-01-01T00:00:10Z").map(rfc3339),
            Some("2026-01-01T00:00:10Z".to_string())
        );
        assert_eq!(
            latest(
                Some(5),
                [Some("1970-01-01T00:00:09Z"), None, Some("bad")].into_iter()
            ),
            Some(9)
        );
        assert_eq!(latest(Some(50), std::iter::empty()), Some(50));
        assert_eq!(
            installation_node_id(1),
            "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ=="
        );
    }
}
