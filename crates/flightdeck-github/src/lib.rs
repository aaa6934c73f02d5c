//! flightdeck's GitHub layer: a GitHub App's credentials, the REST calls flightdeck makes
//! and the webhooks it takes, with no knowledge of missions, stores or config files (callers
//! pass plain data in and get plain data out). A thin reqwest client on the workspace's one
//! crypto stack (ring): no octocrab.
//!
//! - [`jwt`]: [`AppKey::from_pem`] reads the app's RSA private key (PKCS#1 `RSA PRIVATE
//!   KEY` or PKCS#8 `PRIVATE KEY`; encrypted, EC and other keys refused by name) and
//!   [`AppKey::jwt`] signs the app's JWT (RS256, `iat` 60 s back, `exp` 540 s ahead), pure
//!   given the time.
//! - [`token`]: [`TokenCache`], installation tokens by installation id, handed out until
//!   five minutes before they expire, one refresh at a time per installation, the clock
//!   injected ([`Clock`]); nothing assumes a token's length or prefix.
//! - [`client`]: [`GitHubClient`], the transport: the standard headers, the JWT or the
//!   installation's token only in a sensitive `Authorization` header, rate limits
//!   (`retry-after`, `x-ratelimit-*`, secondary limits) waited through an injectable
//!   [`client::Sleeper`] up to a bound, nothing else retried; typed [`GitHubError`]s.
//! - [`api`]: the calls, as methods of [`GitHubClient`]: collaborator permission, issue
//!   comments created and updated in place, draft pull requests created, read, found by
//!   their head branch (`owner:branch`, so that opening one is idempotent), updated and
//!   marked ready (GraphQL), check runs created and updated (actions within GitHub's
//!   limits), reviews and a review's inline comments, a commit (its tree) from the Git
//!   database, a file at a ref (CODEOWNERS), and poll mode's questions (installations,
//!   repositories, issues and comments updated since a time, an issue's events, open pull
//!   requests, answered as [`AsSent`]: typed, and whole as GitHub sent them). Pushing is git's, not the API's: over HTTPS to the repository's
//!   `clone_url` with the installation token as HTTP Basic `x-access-token:<token>`.
//! - [`webhook`]: [`verify_signature`] (`X-Hub-Signature-256` over the raw body, constant
//!   time) and [`parse_event`] into a [`WebhookEvent`] (`issues.labeled`,
//!   `issue_comment.created`, `pull_request.synchronize|closed`,
//!   `pull_request_review.submitted|dismissed`, `check_run.requested_action|rerequested`,
//!   `installation*`, `ping`; anything else [`WebhookEvent::Other`]).
//! - [`types`]: the GitHub objects read from answers and payloads alike (issue, comment,
//!   pull request, review and review comment, check run, git commit, repository,
//!   installation, user, issue event).
//!
//! Not here: the `POST /webhooks/github` route, delivery deduplication, poll mode's loop,
//! and what flightdeck does with an event (those are `flightdeck-server`'s and
//! `flightdeck-app`'s).

pub mod api;
pub mod client;
pub mod jwt;
pub mod token;
pub mod types;
pub mod webhook;

pub use api::{
    CheckAction, CheckConclusion, CheckOutput, CheckRunFields, CheckStatus, CollaboratorPermission,
    NewPullRequest, Permission, PullRequestState, PullRequestStateFilter, PullRequestUpdate,
};
pub use client::{GitHubClient, GitHubError, Sleeper, TokioSleeper};
pub use jwt::{AppKey, KeyError, KeyFormat};
pub use token::{Clock, InstallationToken, SystemClock, TokenCache};
pub use types::{
    AsSent, CheckRun, Comment, GitCommit, GitIdentity, Installation, Issue, IssueEvent,
    PullRequest, Repository, Review, ReviewComment, ReviewState, User,
};
pub use webhook::{
    parse_event, verify_signature, Context, SignatureError, WebhookError, WebhookEvent,
};
