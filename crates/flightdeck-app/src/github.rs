//! The installation's GitHub App ([`GitHubApp`], built once from `[github]`) and the forge
//! missions from GitHub propose their change through ([`GitHubForge`]).
//!
//! One [`GitHubApp`] per process: the server, every engine it composes and their workers
//! share its client, so they share one cache of installation tokens (a token is fetched
//! once per installation and hour, not once per mission).
//!
//! Pushing is done by the real `git`, with the installation token given only as an
//! `http.extraHeader` through git's `GIT_CONFIG_COUNT` environment: never on a command line
//! (which every user of the machine can read), never in a URL (which git may print or
//! store), never in an error (git's own output is scrubbed of it).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use flightdeck_core::event::ChangeProposed;
use flightdeck_engine::ports::{Forge, Proposal};
use flightdeck_engine::EngineError;
use flightdeck_github::{
    Clock, GitHubClient, GitHubError, InstallationToken, NewPullRequest, PullRequest,
    PullRequestStateFilter, PullRequestUpdate, Sleeper,
};
use flightdeck_workspace::Worktree;

use crate::config::{GitHubMode, GitHubSection};
use crate::error::AppError;

/// What replaces a credential in anything shown.
const REDACTED: &str = "[REDACTED]";

/// The installation's GitHub App: its client (the App's JWT made from its key, installation
/// tokens cached) and the `[github]` values the server and the forge need. `Debug` shows no
/// key and no token.
pub struct GitHubApp {
    client: GitHubClient,
    section: GitHubSection,
    key_path: PathBuf,
}

impl fmt::Debug for GitHubApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHubApp")
            .field("app_id", &self.section.app_id)
            .field("api_url", &self.client.api_url())
            .field("mode", &self.section.mode)
            .field("trigger_label", &self.section.trigger_label)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl GitHubApp {
    /// The App `[github]` describes: its private key read (a relative `private_key_file` is
    /// relative to `config_dir`) and its client made. [`crate::Config::parse`] has checked
    /// the section already; this fails only if the key changed since.
    pub fn from_config(section: &GitHubSection, config_dir: &Path) -> Result<GitHubApp, AppError> {
        let key_path = section.key_path(config_dir);
        let key = crate::config::read_app_key(&key_path).map_err(|(what, hint)| {
            AppError::bad_input(
                format!(
                    "[github] private_key_file = {:?} ({}): {what}",
                    section.private_key_file.display().to_string(),
                    key_path.display()
                ),
                Some(hint),
            )
        })?;
        let client =
            GitHubClient::new(section.api_url.trim(), section.app_id, key).map_err(|e| {
                AppError::bad_input(
                    format!("[github] api_url = {:?}: {e}", section.api_url),
                    Some("api_url is GitHub's REST API: \"https://api.github.com\" (the default), or \"https://HOST/api/v3\" for GitHub Enterprise Server".to_string()),
                )
            })?;
        Ok(GitHubApp {
            client,
            section: section.clone(),
            key_path,
        })
    }

    /// Reads the time from `clock` (JWTs, token freshness, rate-limit resets): tests run a
    /// fake GitHub on a clock of its own. Starts an empty token cache.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> GitHubApp {
        self.client = self.client.with_clock(clock);
        self
    }

    /// Waits out rate limits with `sleeper` (tests: one that does not wait).
    pub fn with_sleeper(mut self, sleeper: Arc<dyn Sleeper>) -> GitHubApp {
        self.client = self.client.with_sleeper(sleeper);
        self
    }

    /// The client, for every REST call (clones share the token cache).
    pub fn client(&self) -> &GitHubClient {
        &self.client
    }

    /// The installation's token, cached until five minutes before it expires.
    pub async fn installation_token(
        &self,
        installation_id: u64,
    ) -> Result<InstallationToken, GitHubError> {
        self.client.installation_token(installation_id).await
    }

    /// The `http.extraHeader` value git authenticates to the installation's repositories
    /// with: `Authorization: Basic base64(x-access-token:TOKEN)`, GitHub's documented form
    /// for an App's token over HTTPS. A secret: for git's environment only.
    pub async fn git_auth_header(&self, installation_id: u64) -> Result<String, GitHubError> {
        let token = self.installation_token(installation_id).await?;
        Ok(basic_auth_header(token.secret()))
    }

    pub fn app_id(&self) -> u64 {
        self.section.app_id
    }

    /// `<trigger_label>:TEMPLATE` labels start missions.
    pub fn trigger_label(&self) -> &str {
        &self.section.trigger_label
    }

    pub fn mode(&self) -> GitHubMode {
        self.section.mode
    }

    /// Whether events are polled for (`mode = "poll"`) rather than delivered as webhooks.
    pub fn polls(&self) -> bool {
        self.section.mode == GitHubMode::Poll
    }

    /// The REST API's base URL, without a trailing `/`.
    pub fn api_url(&self) -> &str {
        self.client.api_url()
    }

    /// The environment variable holding the webhook secret (`serve` reads it).
    pub fn webhook_secret_env(&self) -> Option<&str> {
        self.section.webhook_secret_env.as_deref()
    }

    /// Poll mode's interval.
    pub fn poll_interval(&self) -> Duration {
        self.section.poll_interval()
    }

    /// The section as configured.
    pub fn section(&self) -> &GitHubSection {
        &self.section
    }

    /// Where the private key was read from.
    pub fn key_path(&self) -> &Path {
        &self.key_path
    }
}

/// `Authorization: Basic base64(x-access-token:TOKEN)`.
fn basic_auth_header(token: &str) -> String {
    format!(
        "Authorization: Basic {}",
        STANDARD.encode(format!("x-access-token:{token}"))
    )
}

/// The forge of an installation with `[github]`: pushes a mission's commit to its repository
/// and opens (or finds) its draft pull request.
#[derive(Debug, Clone)]
pub struct GitHubForge {
    app: Arc<GitHubApp>,
    /// Where the web UI is (`[server] public_url`), for the mission page's link in the pull
    /// request's description.
    pages: Option<String>,
}

impl GitHubForge {
    pub fn new(app: Arc<GitHubApp>) -> GitHubForge {
        GitHubForge { app, pages: None }
    }

    /// Links the mission's page (`<public_url>/missions/<id>`) from the pull request.
    pub fn with_pages(mut self, public_url: Option<&str>) -> GitHubForge {
        self.pages = public_url.map(|u| u.trim_end_matches('/').to_string());
        self
    }

    /// The pull request's description: the proposal's, and the mission page's link.
    fn body(&self, proposal: &Proposal) -> String {
        match &self.pages {
            Some(base) => format!(
                "{}\n\n---\n[The mission's page]({base}/missions/{}): its timeline, approvals and cost as they happen.\n",
                proposal.body.trim_end(),
                proposal.mission
            ),
            None => proposal.body.clone(),
        }
    }
}

/// The mission's own branch, `flightdeck/<mission>`.
fn mission_branch(mission: &str) -> String {
    flightdeck_core::MissionId::parse(mission)
        .map_or_else(|| format!("flightdeck/{mission}"), |id| id.branch())
}

#[async_trait::async_trait]
impl Forge for GitHubForge {
    async fn propose(
        &self,
        worktree: &Worktree,
        proposal: &Proposal,
    ) -> Result<ChangeProposed, EngineError> {
        let origin = &proposal.origin;
        let repository = origin.repository.as_str();
        let mission = proposal.mission.as_str();
        let fail = |what: String| EngineError::Forge(format!("mission {mission}: {what}"));
        let Some((owner, name)) = repository
            .split_once('/')
            .filter(|(o, n)| !o.is_empty() && !n.is_empty() && !n.contains('/'))
        else {
            return Err(fail(format!(
                "the GitHub repository {repository:?} it came from is not `owner/name`"
            )));
        };
        let Some(remote) = proposal.remote.clone() else {
            return Err(fail(format!(
                "it came from GitHub ({repository}) but records no URL it was fetched from, so there is nowhere to push its change"
            )));
        };
        let installation = origin.installation_id;
        let gh = self.app.client();
        // A follow-up's pull request is read first: its branch must be one of this
        // repository (a fork's branch cannot be pushed to with this installation's token,
        // and a branch of the same name here would not be the pull request's).
        let follows = match origin.pull_request {
            Some(number) => {
                let pull = gh
                    .get_pull_request(installation, owner, name, number)
                    .await
                    .map_err(|e| {
                        fail(format!(
                            "cannot read pull request #{number} of {repository}, which it follows up: {e}"
                        ))
                    })?;
                let same_repository = pull
                    .head_repo
                    .as_deref()
                    .is_some_and(|head| head.eq_ignore_ascii_case(repository));
                if !same_repository {
                    return Err(fail(format!(
                        "pull request #{number} of {repository}, which it follows up, has its branch in {}, so its change cannot be pushed there",
                        pull.head_repo.as_deref().unwrap_or("a repository that was deleted")
                    )));
                }
                Some(pull)
            }
            None => None,
        };
        // A follow-up adds to a branch people are reviewing: never rewritten. The mission's
        // own branch may be: a resume may propose a new tree on the same base.
        let (branch, force) = match (&origin.branch, &follows) {
            (Some(branch), _) => (
                branch.clone(),
                Rewrite::Only(proposal.previous_head.clone()),
            ),
            (None, Some(pull)) => (
                pull.head_ref.clone(),
                Rewrite::Only(proposal.previous_head.clone()),
            ),
            (None, None) => (mission_branch(mission), Rewrite::Always),
        };
        let token = self.app.installation_token(installation).await.map_err(|e| {
            fail(format!(
                "cannot get a token of the GitHub App's installation {installation} to push to {repository}: {e}"
            ))
        })?;
        let push = Push {
            repo: worktree.repo.clone(),
            remote,
            commit: proposal.commit.clone(),
            branch: branch.clone(),
            force,
            header: basic_auth_header(token.secret()),
            token: token.secret().to_string(),
        };
        let pushed = tokio::task::spawn_blocking(move || push.run())
            .await
            .map_err(|e| fail(format!("pushing to {repository} stopped: {e}")))?;
        pushed.map_err(|why| fail(format!("cannot push to {repository}: {why}")))?;

        let pull = match follows {
            Some(pull) => pull,
            None => {
                let head = format!("{owner}:{branch}");
                let open = gh
                    .list_pulls_by_head(
                        installation,
                        owner,
                        name,
                        &head,
                        PullRequestStateFilter::Open,
                    )
                    .await
                    .map_err(|e| {
                        fail(format!(
                            "pushed {branch} to {repository}, but cannot list its pull requests: {e}"
                        ))
                    })?;
                match open.into_iter().next() {
                    Some(pull) => self.refresh(&pull, proposal, owner, name).await.map_err(|e| {
                        fail(format!(
                            "pushed {branch} to {repository}, but cannot update the description of pull request #{}: {e}",
                            pull.number
                        ))
                    })?,
                    None => {
                        let new = NewPullRequest::draft(
                            proposal.title.clone(),
                            branch.clone(),
                            origin.base_branch.clone(),
                            self.body(proposal),
                        );
                        gh.create_pull_request(installation, owner, name, &new)
                            .await
                            .map_err(|e| {
                                fail(format!(
                                    "pushed {branch} to {repository}, but cannot open a draft pull request into {}: {e}",
                                    origin.base_branch
                                ))
                            })?
                    }
                }
            }
        };
        let Some(pr_url) = pull.html_url.clone() else {
            return Err(fail(format!(
                "GitHub's answer for pull request #{} of {repository} has no html_url",
                pull.number
            )));
        };
        Ok(ChangeProposed {
            branch,
            head_sha: proposal.commit.clone(),
            tree: proposal.tree.clone(),
            pr_number: pull.number,
            pr_url,
        })
    }
}

impl GitHubForge {
    /// The open pull request found for the branch, with this proposal's description (a
    /// resume that proposes a new tree describes it); unchanged when it already says so.
    async fn refresh(
        &self,
        pull: &PullRequest,
        proposal: &Proposal,
        owner: &str,
        name: &str,
    ) -> Result<PullRequest, GitHubError> {
        let body = flightdeck_github::api::truncate(
            &self.body(proposal),
            flightdeck_github::api::MAX_BODY_CHARS,
        );
        if pull.body == body {
            return Ok(pull.clone());
        }
        let update = PullRequestUpdate {
            body: Some(self.body(proposal)),
            ..PullRequestUpdate::default()
        };
        self.app
            .client()
            .update_pull_request(
                proposal.origin.installation_id,
                owner,
                name,
                pull.number,
                &update,
            )
            .await
    }
}

/// What a push may replace on the branch.
enum Rewrite {
    /// Anything: the mission's own `flightdeck/<mission>` branch.
    Always,
    /// Only this mission's own earlier proposal, when there is one (a follow-up proposing
    /// again after a resume); otherwise the push must fast-forward.
    Only(Option<String>),
}

/// One `git push` of a mission's commit, run off the async threads.
struct Push {
    repo: PathBuf,
    /// Without credentials (as recorded).
    remote: String,
    commit: String,
    branch: String,
    force: Rewrite,
    /// The `http.extraHeader` value, and the token in it: both scrubbed from git's output.
    header: String,
    token: String,
}

impl Push {
    fn run(self) -> Result<(), String> {
        let refspec = format!("{}:refs/heads/{}", self.commit, self.branch);
        let mut git = std::process::Command::new("git");
        git.arg("-C")
            .arg(&self.repo)
            .args(["push", "--quiet", "--no-verify", "--porcelain"]);
        match &self.force {
            Rewrite::Always => {
                git.arg("--force");
            }
            Rewrite::Only(Some(previous)) => {
                git.arg(format!(
                    "--force-with-lease=refs/heads/{}:{previous}",
                    self.branch
                ));
            }
            Rewrite::Only(None) => {}
        }
        let output = git
            .arg("--")
            .arg(&self.remote)
            .arg(&refspec)
            // The token as a header, through the environment only; no hook of the repository
            // runs, no transport runs a command.
            .env("GIT_CONFIG_COUNT", "3")
            .env("GIT_CONFIG_KEY_0", "http.extraHeader")
            .env("GIT_CONFIG_VALUE_0", &self.header)
            .env("GIT_CONFIG_KEY_1", "core.hooksPath")
            .env("GIT_CONFIG_VALUE_1", "/dev/null")
            .env("GIT_CONFIG_KEY_2", "protocol.ext.allow")
            .env("GIT_CONFIG_VALUE_2", "never")
            // Never wait for a person, nor on a stalled transfer.
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_HTTP_LOW_SPEED_LIMIT", "1000")
            .env("GIT_HTTP_LOW_SPEED_TIME", "60")
            .env("LC_ALL", "C")
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("cannot run git: {e}"))?;
        if output.status.success() {
            return Ok(());
        }
        let said = self.scrub(&format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
        let said = said.trim();
        let rejected = said.contains("[rejected]")
            || said.contains("non-fast-forward")
            || said.contains("fetch first");
        if rejected && !matches!(self.force, Rewrite::Always) {
            let short = self.commit.get(..12).unwrap_or(&self.commit);
            return Err(format!(
                "branch {} of {} does not fast-forward to the mission's commit {short}: someone pushed to it since the follow-up started and is not this mission's earlier proposal), and a follow-up never overwrites a pull request's branch, so nothing was pushed; start a new follow-up from the branch as it is now (git said: {said})",
                self.branch, self.remote
            ));
        }
        Err(format!(
            "`git push {}{} {}` failed: {said}",
            if matches!(self.force, Rewrite::Always) {
                "--force "
            } else {
                ""
            },
            self.remote,
            refspec
        ))
    }

    /// `text` without the header or the token (a server may echo what it was sent).
    fn scrub(&self, text: &str) -> String {
        let encoded = self
            .header
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .to_string();
        let mut text = text.replace(&self.header, REDACTED);
        for secret in [encoded.as_str(), self.token.as_str()] {
            if !secret.is_empty() {
                text = text.replace(secret, REDACTED);
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_git_header_is_basic_auth_of_the_token_as_github_documents() {
        let header = basic_auth_header("ghs_abc");
        assert_eq!(
            header,
            format!(
                "Authorization: Basic {}",
                STANDARD.encode("x-access-token:ghs_abc")
            )
        );
    }

    #[test]
    fn scrubbing_removes_the_header_its_encoding_and_the_token() {
        let push = Push {
            repo: PathBuf::from("/r"),
            remote: "https://github.com/acme/w.git".into(),
            commit: "c".repeat(40),
            branch: "flightdeck/x".into(),
            force: Rewrite::Always,
            header: basic_auth_header("ghs_SECRET"),
            token: "ghs_SECRET".into(),
        };
        let encoded = STANDARD.encode("x-access-token:ghs_SECRET");
        let said = push.scrub(&format!(
            "{} / {encoded} / token ghs_SECRET",
            basic_auth_header("ghs_SECRET")
        ));
        assert!(!said.contains("SECRET"), "{said}");
        assert!(!said.contains(&encoded), "{said}");
    }
}
