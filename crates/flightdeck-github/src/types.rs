//! The GitHub objects flightdeck reads, with only the fields it uses. Each is read from the
//! JSON GitHub sends, whether in a webhook payload or a REST answer (the shapes are the
//! same), and ignores every other field.

use std::ops::Deref;

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// An object read as `T` and also kept whole, as GitHub sent it. Poll mode builds the
/// webhook payloads GitHub would have sent from REST answers, and a webhook carries the
/// whole objects, not the few fields `T` reads.
#[derive(Debug, Clone, PartialEq)]
pub struct AsSent<T> {
    pub value: T,
    /// The object exactly as GitHub sent it.
    pub json: Value,
}

impl<T> Deref for AsSent<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for AsSent<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let json = Value::deserialize(deserializer)?;
        let value = T::deserialize(&json).map_err(serde::de::Error::custom)?;
        Ok(AsSent { value, json })
    }
}

/// A user, bot or organisation (`login`, `id`, `type`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "RawUser")]
pub struct User {
    pub login: String,
    pub id: u64,
    /// `type` is `Bot` (an app acting, such as flightdeck itself).
    pub is_bot: bool,
}

#[derive(Deserialize)]
struct RawUser {
    login: String,
    #[serde(default)]
    id: u64,
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

impl User {
    /// Who GitHub shows in place of a deleted account (`@ghost`): the REST API sends
    /// `"user": null` for it on issues, comments and pull requests, and one such object
    /// must not make a whole list unreadable.
    pub fn ghost() -> User {
        User {
            login: "ghost".to_string(),
            id: 0,
            is_bot: false,
        }
    }
}

impl From<RawUser> for User {
    fn from(raw: RawUser) -> User {
        User {
            login: raw.login,
            id: raw.id,
            is_bot: raw.kind.as_deref() == Some("Bot"),
        }
    }
}

/// A repository. `owner` comes from `owner.login`, or from `full_name` where GitHub sends
/// no `owner` (the repository lists of `installation` events).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "RawRepository")]
pub struct Repository {
    pub id: u64,
    pub owner: String,
    pub name: String,
    /// `owner/name`.
    pub full_name: String,
    pub private: bool,
    pub default_branch: Option<String>,
    /// Where git fetches and pushes it over HTTPS (absent from the short repository
    /// objects of `installation` events).
    pub clone_url: Option<String>,
}

#[derive(Deserialize)]
struct RawRepository {
    id: u64,
    name: String,
    full_name: String,
    #[serde(default)]
    private: bool,
    owner: Option<User>,
    default_branch: Option<String>,
    clone_url: Option<String>,
}

impl From<RawRepository> for Repository {
    fn from(raw: RawRepository) -> Repository {
        let owner = match raw.owner {
            Some(owner) => owner.login,
            None => raw
                .full_name
                .split_once('/')
                .map(|(owner, _)| owner.to_string())
                .unwrap_or_default(),
        };
        Repository {
            id: raw.id,
            owner,
            name: raw.name,
            full_name: raw.full_name,
            private: raw.private,
            default_branch: raw.default_branch,
            clone_url: raw.clone_url,
        }
    }
}

#[derive(Deserialize)]
struct RawLabel {
    name: String,
}

/// An issue, or a pull request seen as an issue (`is_pull_request`: the REST issue list and
/// `issue_comment` events on pull requests).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "RawIssue")]
pub struct Issue {
    pub number: u64,
    pub title: String,
    /// Empty when GitHub sends `null`.
    pub body: String,
    /// `open` or `closed`.
    pub state: String,
    /// Label names, as they are now.
    pub labels: Vec<String>,
    /// [`User::ghost`] when the account was deleted.
    pub author: User,
    pub is_pull_request: bool,
    pub html_url: Option<String>,
    pub updated_at: Option<String>,
}

#[derive(Deserialize)]
struct RawIssue {
    number: u64,
    title: String,
    body: Option<String>,
    #[serde(default)]
    state: String,
    #[serde(default)]
    labels: Vec<RawLabel>,
    user: Option<User>,
    pull_request: Option<IgnoredAny>,
    html_url: Option<String>,
    updated_at: Option<String>,
}

impl From<RawIssue> for Issue {
    fn from(raw: RawIssue) -> Issue {
        Issue {
            number: raw.number,
            title: raw.title,
            body: raw.body.unwrap_or_default(),
            state: raw.state,
            labels: raw.labels.into_iter().map(|l| l.name).collect(),
            author: raw.user.unwrap_or_else(User::ghost),
            is_pull_request: raw.pull_request.is_some(),
            html_url: raw.html_url,
            updated_at: raw.updated_at,
        }
    }
}

/// An issue (or pull request conversation) comment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "RawComment")]
pub struct Comment {
    pub id: u64,
    pub body: String,
    /// [`User::ghost`] when the account was deleted.
    pub author: User,
    /// `OWNER`, `MEMBER`, `COLLABORATOR`, `CONTRIBUTOR`, `NONE`…: a hint only; permission is
    /// checked through the API.
    pub author_association: Option<String>,
    pub html_url: Option<String>,
    /// The API URL of the issue (or pull request) it is on; see [`Comment::issue_number`].
    pub issue_url: Option<String>,
    pub created_at: Option<String>,
    /// Later than `created_at` once edited.
    pub updated_at: Option<String>,
}

impl Comment {
    /// The number of the issue or pull request the comment is on, read from the last
    /// segment of `issue_url` (a comment carries no other reference to it).
    pub fn issue_number(&self) -> Option<u64> {
        self.issue_url
            .as_deref()?
            .trim_end_matches('/')
            .rsplit('/')
            .next()?
            .parse()
            .ok()
    }
}

#[derive(Deserialize)]
struct RawComment {
    id: u64,
    body: Option<String>,
    user: Option<User>,
    author_association: Option<String>,
    html_url: Option<String>,
    issue_url: Option<String>,
    created_at: Option<String>,
    updated_at: Option<String>,
}

impl From<RawComment> for Comment {
    fn from(raw: RawComment) -> Comment {
        Comment {
            id: raw.id,
            body: raw.body.unwrap_or_default(),
            author: raw.user.unwrap_or_else(User::ghost),
            author_association: raw.author_association,
            html_url: raw.html_url,
            issue_url: raw.issue_url,
            created_at: raw.created_at,
            updated_at: raw.updated_at,
        }
    }
}

/// An event of an issue's timeline (`GET /repos/{owner}/{repo}/issues/{n}/events`): who
/// did what when. Poll mode reads `labeled` events for who added a label, which the issue
/// itself does not say.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "RawIssueEvent")]
pub struct IssueEvent {
    pub id: u64,
    /// `labeled`, `unlabeled`, `closed`, `renamed`…
    pub event: String,
    /// Who did it; `None` when the account was deleted.
    pub actor: Option<User>,
    /// The label's name, for `labeled` and `unlabeled`.
    pub label: Option<String>,
    pub created_at: Option<String>,
}

#[derive(Deserialize)]
struct RawIssueEvent {
    id: u64,
    event: String,
    actor: Option<User>,
    label: Option<RawLabel>,
    created_at: Option<String>,
}

impl From<RawIssueEvent> for IssueEvent {
    fn from(raw: RawIssueEvent) -> IssueEvent {
        IssueEvent {
            id: raw.id,
            event: raw.event,
            actor: raw.actor,
            label: raw.label.map(|l| l.name),
            created_at: raw.created_at,
        }
    }
}

/// A pull request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "RawPullRequest")]
pub struct PullRequest {
    pub number: u64,
    /// The GraphQL id (for `markPullRequestReadyForReview`).
    pub node_id: Option<String>,
    pub title: String,
    pub body: String,
    /// `open` or `closed`.
    pub state: String,
    pub draft: bool,
    /// `merged`, or (where GitHub leaves it out) whether `merged_at` is set.
    pub merged: bool,
    pub head_ref: String,
    pub head_sha: String,
    /// The head's repository (`owner/name`); `None` when it was deleted. Differs from the
    /// base's for a pull request from a fork.
    pub head_repo: Option<String>,
    pub base_ref: String,
    pub base_sha: String,
    pub labels: Vec<String>,
    /// [`User::ghost`] when the account was deleted.
    pub author: User,
    pub html_url: Option<String>,
}

#[derive(Deserialize)]
struct RawPullRequest {
    number: u64,
    node_id: Option<String>,
    title: String,
    body: Option<String>,
    #[serde(default)]
    state: String,
    draft: Option<bool>,
    merged: Option<bool>,
    merged_at: Option<String>,
    head: RawBranch,
    base: RawBranch,
    #[serde(default)]
    labels: Vec<RawLabel>,
    user: Option<User>,
    html_url: Option<String>,
}

#[derive(Deserialize)]
struct RawBranch {
    #[serde(rename = "ref")]
    name: String,
    sha: String,
    repo: Option<RawBranchRepository>,
}

#[derive(Deserialize)]
struct RawBranchRepository {
    full_name: String,
}

impl From<RawPullRequest> for PullRequest {
    fn from(raw: RawPullRequest) -> PullRequest {
        PullRequest {
            number: raw.number,
            node_id: raw.node_id,
            title: raw.title,
            body: raw.body.unwrap_or_default(),
            state: raw.state,
            draft: raw.draft.unwrap_or(false),
            merged: raw.merged.unwrap_or(raw.merged_at.is_some()),
            head_ref: raw.head.name,
            head_sha: raw.head.sha,
            head_repo: raw.head.repo.map(|r| r.full_name),
            base_ref: raw.base.name,
            base_sha: raw.base.sha,
            labels: raw.labels.into_iter().map(|l| l.name).collect(),
            author: raw.user.unwrap_or_else(User::ghost),
            html_url: raw.html_url,
        }
    }
}

/// A review's state. Webhooks send it in lower case (`approved`), the REST API in upper
/// case (`APPROVED`); both read the same. A dismissed review's earlier state is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviewState {
    Approved,
    ChangesRequested,
    Commented,
    Dismissed,
    Pending,
    Other(String),
}

impl ReviewState {
    pub fn parse(state: &str) -> ReviewState {
        match state.to_ascii_lowercase().as_str() {
            "approved" => ReviewState::Approved,
            "changes_requested" => ReviewState::ChangesRequested,
            "commented" => ReviewState::Commented,
            "dismissed" => ReviewState::Dismissed,
            "pending" => ReviewState::Pending,
            _ => ReviewState::Other(state.to_string()),
        }
    }
}

/// A pull request review.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "RawReview")]
pub struct Review {
    pub id: u64,
    pub state: ReviewState,
    /// The commit the review was made on (a review of an older head does not count for the
    /// new one).
    pub commit_id: Option<String>,
    /// `None` when the account was deleted.
    pub author: Option<User>,
    pub body: String,
    pub submitted_at: Option<String>,
}

#[derive(Deserialize)]
struct RawReview {
    id: u64,
    state: String,
    commit_id: Option<String>,
    user: Option<User>,
    body: Option<String>,
    submitted_at: Option<String>,
}

impl From<RawReview> for Review {
    fn from(raw: RawReview) -> Review {
        Review {
            id: raw.id,
            state: ReviewState::parse(&raw.state),
            commit_id: raw.commit_id,
            author: raw.user,
            body: raw.body.unwrap_or_default(),
            submitted_at: raw.submitted_at,
        }
    }
}

/// A check run.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "RawCheckRun")]
pub struct CheckRun {
    pub id: u64,
    pub name: String,
    pub head_sha: String,
    /// What the app set as `external_id` (`None` when empty).
    pub external_id: Option<String>,
    /// `queued`, `in_progress`, `completed`…
    pub status: Option<String>,
    pub conclusion: Option<String>,
    /// Numbers of the pull requests whose head is `head_sha` (in the same repository).
    pub pull_requests: Vec<u64>,
    pub html_url: Option<String>,
}

#[derive(Deserialize)]
struct RawCheckRun {
    id: u64,
    name: String,
    head_sha: String,
    external_id: Option<String>,
    status: Option<String>,
    conclusion: Option<String>,
    #[serde(default)]
    pull_requests: Vec<RawNumbered>,
    html_url: Option<String>,
}

#[derive(Deserialize)]
struct RawNumbered {
    number: u64,
}

impl From<RawCheckRun> for CheckRun {
    fn from(raw: RawCheckRun) -> CheckRun {
        CheckRun {
            id: raw.id,
            name: raw.name,
            head_sha: raw.head_sha,
            external_id: raw.external_id.filter(|id| !id.is_empty()),
            status: raw.status,
            conclusion: raw.conclusion,
            pull_requests: raw.pull_requests.into_iter().map(|p| p.number).collect(),
            html_url: raw.html_url,
        }
    }
}

/// An installation of the app (an `installation` event's, or an item of `GET
/// /app/installations`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "RawInstallation")]
pub struct Installation {
    pub id: u64,
    /// The account it is installed on (a user or an organisation).
    pub account: Option<User>,
    /// `all` or `selected`.
    pub repository_selection: Option<String>,
    pub app_id: Option<u64>,
    pub suspended: bool,
}

#[derive(Deserialize)]
struct RawInstallation {
    id: u64,
    /// An enterprise account has no `login`: read as no account rather than refused.
    account: Option<serde_json::Value>,
    repository_selection: Option<String>,
    app_id: Option<u64>,
    suspended_at: Option<IgnoredAny>,
}

impl From<RawInstallation> for Installation {
    fn from(raw: RawInstallation) -> Installation {
        Installation {
            id: raw.id,
            account: raw
                .account
                .and_then(|account| serde_json::from_value(account).ok()),
            repository_selection: raw.repository_selection,
            app_id: raw.app_id,
            suspended: raw.suspended_at.is_some(),
        }
    }
}

/// A commit as the Git database API shows it (`GET /repos/{owner}/{repo}/git/commits/{sha}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "RawGitCommit")]
pub struct GitCommit {
    pub sha: String,
    /// The sha of its tree (the files it holds).
    pub tree_sha: String,
    /// The shas of its parents, in order.
    pub parents: Vec<String>,
    pub message: String,
    pub author: Option<GitIdentity>,
    pub committer: Option<GitIdentity>,
}

/// A commit's author or committer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GitIdentity {
    pub name: String,
    pub email: String,
    /// ISO 8601, as GitHub sends it.
    pub date: Option<String>,
}

#[derive(Deserialize)]
struct RawGitCommit {
    sha: String,
    tree: RawSha,
    #[serde(default)]
    parents: Vec<RawSha>,
    #[serde(default)]
    message: String,
    author: Option<GitIdentity>,
    committer: Option<GitIdentity>,
}

#[derive(Deserialize)]
struct RawSha {
    sha: String,
}

impl From<RawGitCommit> for GitCommit {
    fn from(raw: RawGitCommit) -> GitCommit {
        GitCommit {
            sha: raw.sha,
            tree_sha: raw.tree.sha,
            parents: raw.parents.into_iter().map(|p| p.sha).collect(),
            message: raw.message,
            author: raw.author,
            committer: raw.committer,
        }
    }
}

/// An inline comment of a pull request review (on a line of a file in the diff).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "RawReviewComment")]
pub struct ReviewComment {
    pub id: u64,
    /// The review it belongs to.
    pub review_id: Option<u64>,
    /// The file, relative to the repository's root.
    pub path: String,
    /// The line of the file it is on (the last line of a range), as of `commit_id`. `None`
    /// for a comment on the whole file, one whose line the diff no longer has (outdated: see
    /// `original_line`), or where GitHub leaves the field out.
    pub line: Option<u64>,
    /// The line as of the commit the comment was made on (`original_commit_id`).
    pub original_line: Option<u64>,
    /// The first line of a multi-line comment.
    pub start_line: Option<u64>,
    /// `RIGHT` (the new file) or `LEFT` (the old one).
    pub side: Option<String>,
    pub body: String,
    /// `None` when the account was deleted.
    pub author: Option<User>,
    pub commit_id: Option<String>,
    /// Set on a reply in a thread.
    pub in_reply_to_id: Option<u64>,
    pub html_url: Option<String>,
}

#[derive(Deserialize)]
struct RawReviewComment {
    id: u64,
    pull_request_review_id: Option<u64>,
    path: String,
    line: Option<u64>,
    original_line: Option<u64>,
    start_line: Option<u64>,
    side: Option<String>,
    body: Option<String>,
    user: Option<User>,
    commit_id: Option<String>,
    in_reply_to_id: Option<u64>,
    html_url: Option<String>,
}

impl From<RawReviewComment> for ReviewComment {
    fn from(raw: RawReviewComment) -> ReviewComment {
        ReviewComment {
            id: raw.id,
            review_id: raw.pull_request_review_id,
            path: raw.path,
            line: raw.line,
            original_line: raw.original_line,
            start_line: raw.start_line,
            side: raw.side,
            body: raw.body.unwrap_or_default(),
            author: raw.user,
            commit_id: raw.commit_id,
            in_reply_to_id: raw.in_reply_to_id,
            html_url: raw.html_url,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_kept_whole_as_sent_and_read_typed() {
        let json = serde_json::json!({
            "id": 7, "body": "/flightdeck run fix", "user": null,
            "issue_url": "https://api.github.com/repos/acme/widgets/issues/12",
            "created_at": "2026-01-01T00:00:00Z", "reactions": {"total_count": 0},
        });
        let comment: AsSent<Comment> = match serde_json::from_value(json.clone()) {
            Ok(comment) => comment,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(comment.json, json);
        assert_eq!(comment.id, 7);
        assert_eq!(comment.issue_number(), Some(12));
        // A deleted account reads as GitHub shows it, rather than failing the list.
        assert_eq!(comment.author, User::ghost());
        let event: Result<IssueEvent, _> = serde_json::from_value(serde_json::json!({
            "id": 1, "event": "labeled", "actor": {"login": "carol", "id": 3},
            "label": {"name": "flightdeck:fix", "color": "ededed"},
            "created_at": "2026-01-01T00:00:00Z",
        }));
        let event = event.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(event.label.as_deref(), Some("flightdeck:fix"));
        assert_eq!(event.actor.map(|a| a.login).as_deref(), Some("carol"));
    }
}
