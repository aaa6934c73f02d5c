//! The calls flightdeck makes, as typed methods of [`GitHubClient`]. Each takes the
//! installation id it acts as (except the `/app/…` ones, made as the app) and returns the
//! few fields flightdeck reads ([`crate::types`]). GitHub's documented limits are kept by
//! truncating, never by failing: comment and pull request bodies at [`MAX_BODY_CHARS`],
//! check run summaries and texts at [`MAX_CHECK_TEXT_CHARS`], check run actions at
//! [`MAX_CHECK_ACTIONS`] with `label` ≤ 20, `description` ≤ 40 and `identifier` ≤ 20
//! characters.
//!
//! Lists are read 100 at a time, at most [`MAX_PAGES`] pages (`per_page`/`page`, not the
//! `Link` header: nothing is fetched from a URL the server chose).
//!
//! Marking a draft pull request ready for review has no REST endpoint; it is GraphQL's
//! `markPullRequestReadyForReview`, posted to the client's GraphQL URL
//! ([`GitHubClient::mark_ready_for_review`]).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::client::{decode, GitHubClient, GitHubError, Request};
use crate::types::{
    AsSent, CheckRun, Comment, GitCommit, Installation, Issue, IssueEvent, PullRequest, Repository,
    Review, ReviewComment,
};

/// The longest comment or pull request body GitHub takes (characters).
pub const MAX_BODY_CHARS: usize = 65_536;
/// The longest check run `output.summary` / `output.text` GitHub takes (characters).
pub const MAX_CHECK_TEXT_CHARS: usize = 65_535;
/// At most this many buttons on a check run.
pub const MAX_CHECK_ACTIONS: usize = 3;
/// The longest check run action `label`.
pub const MAX_ACTION_LABEL_CHARS: usize = 20;
/// The longest check run action `description`.
pub const MAX_ACTION_DESCRIPTION_CHARS: usize = 40;
/// The longest check run action `identifier`.
pub const MAX_ACTION_IDENTIFIER_CHARS: usize = 20;
/// Items per page of a list.
pub const PER_PAGE: usize = 100;
/// Pages read of a list, at most.
pub const MAX_PAGES: u32 = 10;

/// A collaborator's permission on a repository, highest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    None,
    Read,
    Triage,
    Write,
    Maintain,
    Admin,
}

impl Permission {
    /// `write`, `maintain` or `admin`: may push, so may do what needs write access.
    pub fn can_write(self) -> bool {
        self >= Permission::Write
    }

    fn parse(name: &str) -> Option<Permission> {
        Some(match name {
            "none" => Permission::None,
            "read" | "pull" => Permission::Read,
            "triage" => Permission::Triage,
            "write" | "push" => Permission::Write,
            "maintain" => Permission::Maintain,
            "admin" => Permission::Admin,
            _ => return None,
        })
    }
}

/// The answer of `GET /repos/{owner}/{repo}/collaborators/{username}/permission`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollaboratorPermission {
    /// From `role_name` when it is a base role (it tells `maintain` and `triage` apart),
    /// else from `permission` (`admin`, `write`, `read`, `none`; a custom role is reported
    /// there as its base role).
    pub permission: Permission,
    /// GitHub's `role_name` (a custom role's name, or a base role).
    pub role_name: Option<String>,
}

/// A new pull request (`POST /repos/{owner}/{repo}/pulls`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPullRequest {
    pub title: String,
    /// The branch with the changes (`branch`, or `owner:branch` from a fork).
    pub head: String,
    /// The branch to merge into.
    pub base: String,
    pub body: String,
    pub draft: bool,
}

impl NewPullRequest {
    /// A draft pull request, as flightdeck opens them.
    pub fn draft(
        title: impl Into<String>,
        head: impl Into<String>,
        base: impl Into<String>,
        body: impl Into<String>,
    ) -> NewPullRequest {
        NewPullRequest {
            title: title.into(),
            head: head.into(),
            base: base.into(),
            body: body.into(),
            draft: true,
        }
    }
}

/// Changes to a pull request (`PATCH /repos/{owner}/{repo}/pulls/{n}`); `None` leaves a
/// field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullRequestUpdate {
    pub title: Option<String>,
    pub body: Option<String>,
    /// `open` or `closed`.
    pub state: Option<PullRequestState>,
    pub base: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullRequestState {
    Open,
    Closed,
}

/// Which pull requests a list shows, by state (`state=` of `GET /repos/{owner}/{repo}/pulls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullRequestStateFilter {
    Open,
    Closed,
    /// Open and closed (merged included).
    All,
}

impl PullRequestStateFilter {
    pub fn as_str(self) -> &'static str {
        match self {
            PullRequestStateFilter::Open => "open",
            PullRequestStateFilter::Closed => "closed",
            PullRequestStateFilter::All => "all",
        }
    }
}

/// A check run's `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    Queued,
    InProgress,
    Completed,
}

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Queued => "queued",
            CheckStatus::InProgress => "in_progress",
            CheckStatus::Completed => "completed",
        }
    }
}

/// A check run's `conclusion` (setting one makes GitHub mark the run `completed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckConclusion {
    /// Waiting for a person: GitHub shows the actions and `details_url`.
    ActionRequired,
    Success,
    Failure,
    Neutral,
    Cancelled,
    Skipped,
    TimedOut,
}

impl CheckConclusion {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckConclusion::ActionRequired => "action_required",
            CheckConclusion::Success => "success",
            CheckConclusion::Failure => "failure",
            CheckConclusion::Neutral => "neutral",
            CheckConclusion::Cancelled => "cancelled",
            CheckConclusion::Skipped => "skipped",
            CheckConclusion::TimedOut => "timed_out",
        }
    }
}

/// A check run's `output`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutput {
    pub title: String,
    /// Markdown, at most [`MAX_CHECK_TEXT_CHARS`] (truncated).
    pub summary: String,
    /// More Markdown below the summary, same limit.
    pub text: Option<String>,
}

/// A button on a check run; pressing it sends `check_run.requested_action` with
/// `identifier`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckAction {
    /// At most 20 characters (truncated with `…`).
    pub label: String,
    /// At most 40 characters (truncated with `…`).
    pub description: String,
    /// At most 20 characters (cut): keep identifiers short, they come back as they are sent.
    pub identifier: String,
}

/// What a check run is created or updated with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckRunFields {
    pub name: String,
    pub status: Option<CheckStatus>,
    pub conclusion: Option<CheckConclusion>,
    /// The app's own reference (flightdeck: the mission / approval), sent back in events.
    pub external_id: Option<String>,
    /// Where "Details" leads (the mission page).
    pub details_url: Option<String>,
    pub output: Option<CheckOutput>,
    /// At most [`MAX_CHECK_ACTIONS`] (the rest dropped). An update replaces the buttons;
    /// an empty list on an update removes them.
    pub actions: Vec<CheckAction>,
}

impl CheckRunFields {
    /// The JSON body, limits applied (without `head_sha`, which only a creation takes).
    pub fn to_json(&self) -> Value {
        let mut body = Map::new();
        body.insert("name".into(), json!(self.name));
        if let Some(status) = self.status {
            body.insert("status".into(), json!(status.as_str()));
        }
        if let Some(conclusion) = self.conclusion {
            body.insert("conclusion".into(), json!(conclusion.as_str()));
        }
        if let Some(external_id) = &self.external_id {
            body.insert("external_id".into(), json!(external_id));
        }
        if let Some(details_url) = &self.details_url {
            body.insert("details_url".into(), json!(details_url));
        }
        if let Some(output) = &self.output {
            let mut out = Map::new();
            out.insert("title".into(), json!(output.title));
            out.insert(
                "summary".into(),
                json!(truncate(&output.summary, MAX_CHECK_TEXT_CHARS)),
            );
            if let Some(text) = &output.text {
                out.insert("text".into(), json!(truncate(text, MAX_CHECK_TEXT_CHARS)));
            }
            body.insert("output".into(), Value::Object(out));
        }
        let actions: Vec<Value> = self
            .actions
            .iter()
            .take(MAX_CHECK_ACTIONS)
            .map(|a| {
                json!({
                    "label": truncate(&a.label, MAX_ACTION_LABEL_CHARS),
                    "description": truncate(&a.description, MAX_ACTION_DESCRIPTION_CHARS),
                    "identifier": a.identifier.chars().take(MAX_ACTION_IDENTIFIER_CHARS).collect::<String>(),
                })
            })
            .collect();
        body.insert("actions".into(), Value::Array(actions));
        Value::Object(body)
    }
}

/// `text` cut to at most `max` characters, the last one `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A file read through the contents API.
#[derive(Deserialize)]
struct RawContent {
    #[serde(rename = "type")]
    kind: String,
    encoding: Option<String>,
    content: Option<String>,
}

#[derive(Deserialize)]
struct RawPermission {
    permission: String,
    role_name: Option<String>,
}

#[derive(Deserialize)]
struct RawRepositories {
    repositories: Vec<AsSent<Repository>>,
}

impl GitHubClient {
    /// `GET /repos/{owner}/{repo}/collaborators/{username}/permission`: what `username` may
    /// do in the repository (flightdeck's "write permission through the API" check:
    /// [`Permission::can_write`]). A user who does not exist is GitHub's 404.
    pub async fn collaborator_permission(
        &self,
        installation_id: u64,
        owner: &str,
        repo: &str,
        username: &str,
    ) -> Result<CollaboratorPermission, GitHubError> {
        let url = self.endpoint(
            &[
                "repos",
                owner,
                repo,
                "collaborators",
                username,
                "permission",
            ],
            &[],
        )?;
        let request = get(url);
        let raw: RawPermission = self.installation_json(installation_id, &request).await?;
        // A custom role's name is not a base role: fall back to `permission`.
        let from_role = match raw.role_name.as_deref() {
            Some(role @ ("admin" | "maintain" | "write" | "triage" | "read")) => {
                Permission::parse(role)
            }
            _ => None,
        };
        let permission = from_role
            .or_else(|| Permission::parse(&raw.permission))
            .ok_or_else(|| GitHubError::BadResponse {
                call: request.call(),
                message: format!("unknown permission `{:.40}`", raw.permission),
            })?;
        Ok(CollaboratorPermission {
            permission,
            role_name: raw.role_name,
        })
    }

    /// `POST /repos/{owner}/{repo}/issues/{number}/comments` (issues and pull requests alike).
    /// Keep the returned id and update that comment rather than posting another.
    pub async fn create_issue_comment(
        &self,
        installation_id: u64,
        owner: &str,
        repo: &str,
        number: u64,
        body: &str,
    ) -> Result<Comment, GitHubError> {
        let number = number.to_string();
        let url = self.endpoint(&["repos", owner, repo, "issues", &number, "comments"], &[])?;
        let request = with_json(
            Method::POST,
            url,
            &json!({ "body": truncate(body, MAX_BODY_CHARS) }),
        )?;
        self.installation_json(installation_id, &request).await
    }

    /// `PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}`: the comment rewritten in
    /// place.
    pub async fn update_issue_comment(
        &self,
        installation_id: u64,
        owner: &str,
        repo: &str,
        comment_id: u64,
        body: &str,
    ) -> Result<Comment, GitHubError> {
        let id = comment_id.to_string();
        let url = self.endpoint(&["repos", owner, repo, "issues", "comments", &id], &[])?;
        let request = with_json(
            Method::PATCH,
            url,
            &json!({ "body": truncate(body, MAX_BODY_CHARS) }),
        )?;
        self.installation_json(installation_id, &request).await
    }

    /// `POST /repos/{owner}/{repo}/pulls`.
    pub async fn create_pull_request(
        &self,
        installation_id: u64,
        owner: &str,
        repo: &str,
        pull: &NewPullRequest,
    ) -> Result<PullRequest, GitHubError> {
        let url = self.endpoint(&["repos", owner, repo, "pulls"], &[])?;
        let body = json!({
            "title": pull.title,
            "head": pull.head,
            "base": pull.base,
            "body": truncate(&pull.body, MAX_BODY_CHARS),
            "draft": pull.draft,
        });
        let request = with_json(Method::POST, url, &body)?;
        self.installation_json(installation_id, &request).await
    }

    /// `PATCH /repos/{owner}/{repo}/pulls/{number}`: only the fields that are `Some`.
    pub async fn update_pull_request(
        &self,
        installation_id: u64,
        owner: &str,
        repo: &str,
        number: u64,
        update: &PullRequestUpdate,
    ) -> Result<PullRequest, GitHubError> {
        let number = number.to_string();
        let url = self.endpoint(&["repos", owner, repo, "pulls", &number], &[])?;
        let mut body = Map::new();
        if let Some(title) = &update.title {
            body.insert("title".into(), json!(title));
        }
        if let Some(text) = &update.body {
            body.insert("body".into(), json!(truncate(text, MAX_BODY_CHARS)));
        }
        if let Some(state) = update.state {
            let state = match state {
                PullRequestState::Open => "open",
                PullRequestState::Closed => "closed",
            };
            body.insert("state".into(), json!(state));
        }
        if let Some(base) = &update.base {
            body.insert("base".into(), json!(base));
        }
        let request = with_json(Method::PATCH, url, &Value::Object(body))?;
        self.installation_json(installation_id, &request).await
    }

    /// `GET /repos/{owner}/{repo}/pulls/{number}`.
    pub async fn get_pull_request(
        &self,
        installation_id: u64,
        owner: &str,
        repo: &str,
        number: u64,
    ) -> Result<PullRequest, GitHubError> {
        let number = number.to_string();
        let url = self.endpoint(&["repos", owner, repo, "pulls", &number], &[])?;
        self.installation_json(installation_id, &get(url)).await
    }

    /// `GET /repos/{owner}/{repo}/pulls?head={head}&state={state}`, newest first (all
    /// pages): the pull requests from one branch, to find the one already opened for it
    /// before opening another. `head` is `owner:branch` (the owner of the head's
    /// repository); GitHub silently ignores a `head` without the owner and lists every pull
    /// request, so one without `:` is [`GitHubError::InvalidArgument`].
    pub async fn list_pulls_by_head(
        &self,
        installation_id: u64,
        owner: &str,
        repo: &str,
        head: &str,
        state: PullRequestStateFilter,
    ) -> Result<Vec<PullRequest>, GitHubError> {
        match head.split_once(':') {
            Some((head_owner, branch)) if !head_owner.is_empty() && !branch.is_empty() => {}
            _ => {
                return Err(GitHubError::InvalidArgument {
                    what: format!("a pull request head {head:?} that is not `owner:branch`"),
                })
            }
        }
        self.pages(
            Some(installation_id),
            &["repos", owner, repo, "pulls"],
            &[("head", head), ("state", state.as_str())],
            |page: Vec<PullRequest>| page,
        )
        .await
    }

    /// Marks a draft pull request ready for review. REST has no endpoint for it: this is
    /// GraphQL's `markPullRequestReadyForReview(input: {pullRequestId})`, posted to
    /// [`GitHubClient::graphql_url`]; `node_id` is the pull request's
    /// [`PullRequest::node_id`]. GraphQL `errors` (200 with errors) are
    /// [`GitHubError::GraphQl`].
    pub async fn mark_ready_for_review(
        &self,
        installation_id: u64,
        node_id: &str,
    ) -> Result<(), GitHubError> {
        const MUTATION: &str = "mutation($id: ID!) { markPullRequestReadyForReview(input: {pullRequestId: $id}) { pullRequest { isDraft } } }";
        let body = json!({ "query": MUTATION, "variables": { "id": node_id } });
        let request = with_json(Method::POST, self.graphql_endpoint(), &body)?;
        let answer: Value = self.installation_json(installation_id, &request).await?;
        if let Some(errors) = answer.get("errors").and_then(Value::as_array) {
            if !errors.is_empty() {
                let message = errors
                    .iter()
                    .map(|e| e.get("message").and_then(Value::as_str).unwrap_or("error"))
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(GitHubError::GraphQl {
                    call: "markPullRequestReadyForReview".to_string(),
                    message: message.chars().take(1000).collect(),
                });
            }
        }
        match answer.pointer("/data/markPullRequestReadyForReview/pullRequest/isDraft") {
            Some(Value::Bool(false)) => Ok(()),
            _ => Err(GitHubError::BadResponse {
                call: request.call(),
                message: "no `isDraft: false` in the answer".to_string(),
            }),
        }
    }

    /// `POST /repos/{owner}/{repo}/check-runs` on `head_sha`. Keep the returned id and
    /// update that run rather than creating another.
    pub async fn create_check_run(
        &self,
        installation_id: u64,
        owner: &str,
        repo: &str,
        head_sha: &str,
        fields: &CheckRunFields,
    ) -> Result<CheckRun, GitHubError> {
        let url = self.endpoint(&["repos", owner, repo, "check-runs"], &[])?;
        let mut body = fields.to_json();
        body["head_sha"] = json!(head_sha);
        let request = with_json(Method::POST, url, &body)?;
        self.installation_json(installation_id, &request).await
    }

    /// `PATCH /repos/{owner}/{repo}/check-runs/{check_run_id}`.
    pub async fn update_check_run(
        &self,
        installation_id: u64,
        owner: &str,
        repo: &str,
        check_run_id: u64,
        fields: &CheckRunFields,
    ) -> Result<CheckRun, GitHubError> {
        let id = check_run_id.to_string();
        let url = self.endpoint(&["repos", owner, repo, "check-runs", &id], &[])?;
        let request = with_json(Method::PATCH, url, &fields.to_json())?;
        self.installation_json(installation_id, &request).await
    }

    /// `GET /repos/{owner}/{repo}/pulls/{number}/reviews`, oldest first (all pages).
    pub async fn list_reviews(
        &self,
        installation_id: u64,
        owner: &str,
        repo: &str,
        number: u64,
    ) -> Result<Vec<Review>, GitHubError> {
        let reviews = self
            .list_reviews_as_sent(installation_id, owner, repo, number)
            .await?;
        Ok(reviews.into_iter().map(|r| r.value).collect())
    }

    /// [`GitHubClient::list_reviews`], each review also as GitHub sent it (poll mode makes
    /// `pull_request_review` payloads of them). The REST API spells states in upper case
    /// (`APPROVED`), webhooks in lower case.
    pub async fn list_reviews_as_sent(
        &self,
        installation_id: u64,
        owner: &str,
        repo: &str,
        number: u64,
    ) -> Result<Vec<AsSent<Review>>, GitHubError> {
        let number = number.to_string();
        self.pages(
            Some(installation_id),
            &["repos", owner, repo, "pulls", &number, "reviews"],
            &[],
            |page: Vec<AsSent<Review>>| page,
        )
        .await
    }

    /// `GET /repos/{owner}/{repo}/pulls/{number}/reviews/{review_id}/comments`, oldest first
    /// (all pages): a review's inline comments (file, line, text, author), what a follow-up
    /// is made of. [`ReviewComment::line`] may be `None` (a comment on a whole file, an
    /// outdated one); fall back to [`ReviewComment::original_line`] or the file.
    pub async fn list_review_comments(
        &self,
        installation_id: u64,
        owner: &str,
        repo: &str,
        number: u64,
        review_id: u64,
    ) -> Result<Vec<ReviewComment>, GitHubError> {
        let number = number.to_string();
        let review_id = review_id.to_string();
        self.pages(
            Some(installation_id),
            &[
                "repos", owner, repo, "pulls", &number, "reviews", &review_id, "comments",
            ],
            &[],
            |page: Vec<ReviewComment>| page,
        )
        .await
    }

    /// `GET /repos/{owner}/{repo}/git/commits/{sha}`: the commit (its tree, parents,
    /// message), or `None` when the repository has no such commit (404; e.g. not pushed
    /// yet). `sha` is the full 40-hex-digit id.
    pub async fn get_commit(
        &self,
        installation_id: u64,
        owner: &str,
        repo: &str,
        sha: &str,
    ) -> Result<Option<GitCommit>, GitHubError> {
        let url = self.endpoint(&["repos", owner, repo, "git", "commits", sha], &[])?;
        match self.installation_json(installation_id, &get(url)).await {
            Ok(commit) => Ok(Some(commit)),
            Err(GitHubError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /repos/{owner}/{repo}/contents/{path}?ref={git_ref}`: the file's bytes (base64
    /// decoded), or `None` if there is no such file at that ref (404). A directory, a
    /// symlink or submodule, or a file over 1 MB (which the contents API does not inline)
    /// is [`GitHubError::BadResponse`]. flightdeck reads CODEOWNERS from the base branch
    /// with it.
    pub async fn file_contents(
        &self,
        installation_id: u64,
        owner: &str,
        repo: &str,
        path: &str,
        git_ref: &str,
    ) -> Result<Option<Vec<u8>>, GitHubError> {
        let mut segments = vec!["repos", owner, repo, "contents"];
        segments.extend(path.trim_matches('/').split('/'));
        let url = self.endpoint(&segments, &[("ref", git_ref)])?;
        let request = get(url);
        let value: Value = match self.installation_json(installation_id, &request).await {
            Ok(value) => value,
            Err(GitHubError::Api { status: 404, .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let bad = |message: &str| GitHubError::BadResponse {
            call: request.call(),
            message: message.to_string(),
        };
        if value.is_array() {
            return Err(bad("the path is a directory"));
        }
        let raw: RawContent = serde_json::from_value(value).map_err(|e| bad(&e.to_string()))?;
        if raw.kind != "file" {
            return Err(bad(&format!("the path is a {:.20}, not a file", raw.kind)));
        }
        match raw.encoding.as_deref() {
            Some("base64") => {}
            Some("none") => return Err(bad("the file is too large for the contents API")),
            _ => return Err(bad("the content is not base64")),
        }
        let content: String = raw
            .content
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        STANDARD
            .decode(content)
            .map(Some)
            .map_err(|_| bad("the content is not valid base64"))
    }

    /// `GET /app/installations` (as the app): every installation of the app, for poll mode.
    pub async fn list_installations(&self) -> Result<Vec<Installation>, GitHubError> {
        self.pages(
            None,
            &["app", "installations"],
            &[],
            |page: Vec<Installation>| page,
        )
        .await
    }

    /// `GET /installation/repositories`: the repositories the installation may access, for
    /// poll mode.
    pub async fn list_installation_repositories(
        &self,
        installation_id: u64,
    ) -> Result<Vec<Repository>, GitHubError> {
        let repositories = self
            .list_installation_repositories_as_sent(installation_id)
            .await?;
        Ok(repositories.into_iter().map(|r| r.value).collect())
    }

    /// [`GitHubClient::list_installation_repositories`], each repository also as GitHub
    /// sent it: the `repository` of the payloads poll mode makes.
    pub async fn list_installation_repositories_as_sent(
        &self,
        installation_id: u64,
    ) -> Result<Vec<AsSent<Repository>>, GitHubError> {
        self.pages(
            Some(installation_id),
            &["installation", "repositories"],
            &[],
            |page: RawRepositories| page.repositories,
        )
        .await
    }

    /// Poll mode's question: `GET /repos/{owner}/{repo}/issues?labels={label}&state=open
    /// &sort=updated&direction=asc[&since=…]`, the open issues carrying `label` that were
    /// updated at or after `since` (RFC 3339), least recently updated first. Pull requests
    /// are in the list too ([`Issue::is_pull_request`]). This endpoint, rather than
    /// `/issues/events`, because it answers with the issue as it is now (its labels, title
    /// and body), so one request per repository and label is enough.
    pub async fn list_labeled_issues(
        &self,
        installation_id: u64,
        owner: &str,
        repo: &str,
        label: &str,
        since: Option<&str>,
    ) -> Result<Vec<Issue>, GitHubError> {
        let mut query = vec![
            ("labels", label),
            ("state", "open"),
            ("sort", "updated"),
            ("direction", "asc"),
        ];
        if let Some(since) = since {
            query.push(("since", since));
        }
        self.pages(
            Some(installation_id),
            &["repos", owner, repo, "issues"],
            &query,
            |page: Vec<Issue>| page,
        )
        .await
    }

    /// Poll mode's question for labels: `GET /repos/{owner}/{repo}/issues?state=open
    /// &sort=updated&direction=asc&since={since}`, the open issues (pull requests among
    /// them, [`Issue::is_pull_request`]) updated at or after `since` (RFC 3339), least
    /// recently updated first, so that a list cut at [`MAX_PAGES`] ends at the latest
    /// update it read and the next question can start there. Not filtered by label: the
    /// API matches label names exactly, and a trigger label is any `PREFIX:TEMPLATE`.
    pub async fn list_issues_updated_since(
        &self,
        installation_id: u64,
        owner: &str,
        repo: &str,
        since: &str,
    ) -> Result<Vec<AsSent<Issue>>, GitHubError> {
        self.pages(
            Some(installation_id),
            &["repos", owner, repo, "issues"],
            &[
                ("state", "open"),
                ("sort", "updated"),
                ("direction", "asc"),
                ("since", since),
            ],
            |page: Vec<AsSent<Issue>>| page,
        )
        .await
    }

    /// `GET /repos/{owner}/{repo}/issues/{number}`: an issue (or a pull request seen as
    /// one), as GitHub sent it.
    pub async fn get_issue(
        &self,
        installation_id: u64,
        owner: &str,
        repo: &str,
        number: u64,
    ) -> Result<AsSent<Issue>, GitHubError> {
        let number = number.to_string();
        let url = self.endpoint(&["repos", owner, repo, "issues", &number], &[])?;
        self.installation_json(installation_id, &get(url)).await
    }

    /// `GET /repos/{owner}/{repo}/issues/{number}/events`, oldest first (at most
    /// [`MAX_PAGES`] pages): who labelled the issue, which the issue does not say. A
    /// `labeled` event carries the label's name and colour only; the whole label is in the
    /// issue's `labels`.
    pub async fn list_issue_events(
        &self,
        installation_id: u64,
        owner: &str,
        repo: &str,
        number: u64,
    ) -> Result<Vec<AsSent<IssueEvent>>, GitHubError> {
        let number = number.to_string();
        self.pages(
            Some(installation_id),
            &["repos", owner, repo, "issues", &number, "events"],
            &[],
            |page: Vec<AsSent<IssueEvent>>| page,
        )
        .await
    }

    /// Poll mode's question for commands: `GET /repos/{owner}/{repo}/issues/comments
    /// ?sort=updated&direction=asc&since={since}`, the comments on every issue and pull
    /// request of the repository updated at or after `since` (RFC 3339), least recently
    /// updated first. An edited comment is listed again: tell new ones by
    /// [`Comment::created_at`]; [`Comment::issue_number`] says where each is.
    pub async fn list_issue_comments_since(
        &self,
        installation_id: u64,
        owner: &str,
        repo: &str,
        since: &str,
    ) -> Result<Vec<AsSent<Comment>>, GitHubError> {
        self.pages(
            Some(installation_id),
            &["repos", owner, repo, "issues", "comments"],
            &[("sort", "updated"), ("direction", "asc"), ("since", since)],
            |page: Vec<AsSent<Comment>>| page,
        )
        .await
    }

    /// `GET /repos/{owner}/{repo}/pulls?state={state}&sort=updated&direction=desc`, the
    /// most recently updated first (so a list cut at [`MAX_PAGES`] drops the stalest), each
    /// as GitHub sent it (the "simple" pull request that webhooks about reviews carry).
    pub async fn list_pulls(
        &self,
        installation_id: u64,
        owner: &str,
        repo: &str,
        state: PullRequestStateFilter,
    ) -> Result<Vec<AsSent<PullRequest>>, GitHubError> {
        self.pages(
            Some(installation_id),
            &["repos", owner, repo, "pulls"],
            &[
                ("state", state.as_str()),
                ("sort", "updated"),
                ("direction", "desc"),
            ],
            |page: Vec<AsSent<PullRequest>>| page,
        )
        .await
    }

    /// Any other REST call as the installation: `method {api_url}/{segments…}?{query…}` with
    /// `body` as JSON; the answer's JSON (`Value::Null` for an empty answer such as a 204).
    pub async fn call(
        &self,
        installation_id: u64,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, GitHubError> {
        let url = self.endpoint(segments, query)?;
        let request = match body {
            Some(body) => with_json(method, url, body)?,
            None => Request {
                method,
                url,
                body: None,
            },
        };
        let answer = self.send_as_installation(installation_id, &request).await?;
        if answer.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        decode(&request.call(), &answer.body, "")
    }

    async fn installation_json<T: DeserializeOwned>(
        &self,
        installation_id: u64,
        request: &Request,
    ) -> Result<T, GitHubError> {
        let answer = self.send_as_installation(installation_id, request).await?;
        decode(&request.call(), &answer.body, "")
    }

    /// Every page of a list: `per_page=100&page=1…` until a short page or [`MAX_PAGES`].
    /// As the installation, or as the app when `installation_id` is `None`.
    async fn pages<P, T>(
        &self,
        installation_id: Option<u64>,
        segments: &[&str],
        query: &[(&str, &str)],
        items: impl Fn(P) -> Vec<T>,
    ) -> Result<Vec<T>, GitHubError>
    where
        P: DeserializeOwned,
    {
        let mut all = Vec::new();
        let per_page = PER_PAGE.to_string();
        for page in 1..=MAX_PAGES {
            let page = page.to_string();
            let mut pairs = query.to_vec();
            pairs.push(("per_page", &per_page));
            pairs.push(("page", &page));
            let request = get(self.endpoint(segments, &pairs)?);
            let answer = match installation_id {
                Some(id) => self.send_as_installation(id, &request).await?,
                None => self.send_as_app(&request).await?,
            };
            let batch = items(decode(&request.call(), &answer.body, "")?);
            let short = batch.len() < PER_PAGE;
            all.extend(batch);
            if short {
                break;
            }
        }
        Ok(all)
    }
}

fn get(url: url::Url) -> Request {
    Request {
        method: Method::GET,
        url,
        body: None,
    }
}

fn with_json(method: Method, url: url::Url, body: &Value) -> Result<Request, GitHubError> {
    let bytes = serde_json::to_vec(body).map_err(|e| GitHubError::InvalidArgument {
        what: format!("a body that cannot be encoded: {e}"),
    })?;
    Ok(Request {
        method,
        url,
        body: Some(bytes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_run_limits_are_kept_by_truncating() {
        let fields = CheckRunFields {
            name: "flightdeck".into(),
            status: Some(CheckStatus::Completed),
            conclusion: Some(CheckConclusion::ActionRequired),
            external_id: Some("approval-01J".into()),
            details_url: Some("https://fd.example/m/1".into()),
            output: Some(CheckOutput {
                title: "Waiting for approval".into(),
                summary: "s".repeat(70_000),
                text: None,
            }),
            actions: vec![
                CheckAction {
                    label: "Approve this mission now".into(),
                    description: "Approve the mission and let it publish its changes".into(),
                    identifier: "approve-0123456789abcdef".into(),
                },
                CheckAction {
                    label: "Deny".into(),
                    description: "Stop it".into(),
                    identifier: "deny".into(),
                },
                CheckAction {
                    label: "Ask".into(),
                    description: "".into(),
                    identifier: "ask".into(),
                },
                CheckAction {
                    label: "Fourth".into(),
                    description: "dropped".into(),
                    identifier: "fourth".into(),
                },
            ],
        };
        let body = fields.to_json();
        assert_eq!(body["status"], "completed");
        assert_eq!(body["conclusion"], "action_required");
        assert_eq!(body["external_id"], "approval-01J");
        let actions = body["actions"].as_array().expect("actions");
        assert_eq!(actions.len(), 3);
        assert_eq!(actions[0]["label"], "Approve this missio…");
        assert_eq!(
            actions[0]["label"].as_str().map(|s| s.chars().count()),
            Some(20)
        );
        assert_eq!(
            actions[0]["description"]
                .as_str()
                .map(|s| s.chars().count()),
            Some(40)
        );
        assert_eq!(actions[0]["identifier"], "approve-0123456789ab");
        assert_eq!(
            actions[1],
            json!({"label": "Deny", "description": "Stop it", "identifier": "deny"})
        );
        let summary = body["output"]["summary"].as_str().expect("summary");
        assert_eq!(summary.chars().count(), MAX_CHECK_TEXT_CHARS);
        assert!(summary.ends_with('…'));
        assert!(body.get("head_sha").is_none());
        // No actions: an empty list (an update removes the buttons).
        let plain = CheckRunFields {
            name: "flightdeck".into(),
            ..CheckRunFields::default()
        };
        assert_eq!(
            plain.to_json(),
            json!({"name": "flightdeck", "actions": []})
        );
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate("héllo", 5), "héllo");
        assert_eq!(truncate("héllo!", 5), "héll…");
        assert_eq!(truncate("", 0), "");
    }

    #[test]
    fn permissions_order() {
        assert!(Permission::Admin.can_write());
        assert!(Permission::Maintain.can_write());
        assert!(Permission::Write.can_write());
        assert!(!Permission::Triage.can_write());
        assert!(!Permission::Read.can_write());
        assert!(!Permission::None.can_write());
    }
}
