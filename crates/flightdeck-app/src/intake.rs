//! Intake: a mission request made from a repository, with everything that governs the
//! mission read at its base commit.
//!
//! The template (by name, or a path inside the repository), the policy and CODEOWNERS are
//! read from the base commit's tree, never from the working tree: an edit that is not
//! committed does not govern a mission, so a mission's rules are exactly what its base
//! commit says (and what a reviewer of that commit saw). A template given as a path outside
//! the repository is read from that file. The repository is a checkout, or a remote URL
//! fetched into the installation's cache of repositories.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use flightdeck_core::MissionId;
use flightdeck_engine::{CreateMission, RepoFile};
use flightdeck_policy::{Codeowners, CodeownersWarning, CODEOWNERS_LOCATIONS};
use flightdeck_workspace::{read_at_commit, repo_root, resolve_commit};

use crate::config::{Config, ScopedRepo};
use crate::error::AppError;

/// A new mission id: a ULID, so ids sort by creation time.
pub fn new_mission_id() -> MissionId {
    let ulid = ulid::Ulid::new();
    MissionId::from_parts(ulid.timestamp_ms(), ulid.random())
}

/// Where the repository comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoSource {
    /// A directory inside a checkout.
    Checkout(PathBuf),
    /// A URL git can fetch (`https://…`, `ssh://…`, `file://…`, a path to another repository),
    /// fetched into `<data-dir>/repos/`.
    Remote(String),
}

/// What `flightdeck run`, the API or GitHub asks for.
#[derive(Clone)]
pub struct RunRequest {
    /// A name under `.flightdeck/missions/NAME.toml`, or a path to a `.toml`.
    pub template: String,
    pub repo: RepoSource,
    /// A branch, tag or commit id.
    pub base: String,
    pub params: BTreeMap<String, String>,
    pub requested_by: String,
    /// Where the request came from (`MissionOrigin::from_source(MissionSource::Cli)`, `Api`, or a
    /// GitHub issue or review): recorded in `mission.created`.
    pub origin: flightdeck_engine::MissionOrigin,
    /// An `http.extraHeader` value (`Authorization: …`) git fetches a remote with: a GitHub
    /// App installation's token ([`crate::github::GitHubApp::git_auth_header`]). A secret:
    /// given to git through its environment only, never recorded, never shown by `Debug`.
    pub git_auth: Option<String>,
}

impl std::fmt::Debug for RunRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunRequest")
            .field("template", &self.template)
            .field("repo", &self.repo)
            .field("base", &self.base)
            .field("params", &self.params)
            .field("requested_by", &self.requested_by)
            .field("origin", &self.origin)
            .field("git_auth", &self.git_auth.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A request ready for the engine, and what the intake noticed.
#[derive(Debug, Clone)]
pub struct Intake {
    pub request: CreateMission,
    /// The repository the mission runs in (a checkout's root, or the cached clone).
    pub repo: PathBuf,
    /// The base commit everything was read from.
    pub base_commit: String,
    /// The repository's remote URL: `--remote`, or the checkout's `origin` (secret scopes
    /// name repositories by it).
    pub remote_url: Option<String>,
    /// Whether `repo` is the user's checkout (not the installation's clone of a remote).
    pub from_checkout: bool,
    /// CODEOWNERS lines GitHub would skip (shown, and recorded with the mission).
    pub codeowners_warnings: Vec<CodeownersWarning>,
}

/// The policy, as a commit of a repository has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyAt {
    /// Where it came from, for messages: `<repo>/.flightdeck/policy.toml` (as `commit` has
    /// it), or the built-in policy.
    pub origin: String,
    pub source: String,
    /// The commit it was read at.
    pub commit: String,
    pub codeowners: Option<RepoFile>,
}

/// The repository `repo` names for a mission: a configured `[repos.NAME]`, or, when
/// `any_url` (the command line's `--remote`, run by someone who can read the config and the
/// data directory), any URL git can fetch. Over the API only the repositories the config
/// names are accepted, by name or by their URL: a caller must not make the server read a
/// repository from its own disk, reach hosts of the caller's choosing, or bring a
/// repository whose path looks like one a secret is scoped to (scopes compare paths, not
/// hosts).
pub fn repo_source(config: &Config, repo: &str, any_url: bool) -> Result<RepoSource, AppError> {
    let repo = repo.trim();
    if let Some(configured) = config.repos.get(repo) {
        return Ok(RepoSource::Remote(configured.url.trim().to_string()));
    }
    let same = |a: &str, b: &str| {
        let plain = |u: &str| {
            let u = without_credentials(u);
            let u = u.trim_end_matches('/');
            u.strip_suffix(".git").unwrap_or(u).to_string()
        };
        plain(a) == plain(b)
    };
    if let Some(configured) = config.repos.values().find(|r| same(&r.url, repo)) {
        return Ok(RepoSource::Remote(configured.url.trim().to_string()));
    }
    if any_url {
        return Ok(RepoSource::Remote(repo.to_string()));
    }
    let names: Vec<&str> = config.repos.keys().map(String::as_str).collect();
    Err(AppError::bad_input(
        format!(
            "repo `{}` is not a repository the config names",
            without_credentials(repo)
        ),
        Some(if names.is_empty() {
            "missions started over the API run on repositories the config lists as [repos.NAME] (url = \"…\"); there are none".to_string()
        } else {
            format!("configured repositories: {}", names.join(", "))
        }),
    ))
}

/// Makes a mission request: the repository and base commit resolved, the template, policy
/// and CODEOWNERS read at that commit.
pub fn intake(data_dir: &Path, request: &RunRequest) -> Result<Intake, AppError> {
    let from_checkout = matches!(request.repo, RepoSource::Checkout(_));
    let (repo, base_commit, remote_url) = match &request.repo {
        RepoSource::Checkout(dir) => {
            let repo = checkout_root(dir)?;
            let commit = resolve_commit(&repo, &request.base)?;
            let origin = flightdeck_workspace::origin_url(&repo);
            (repo, commit, origin)
        }
        RepoSource::Remote(url) => {
            let (repo, commit) =
                fetch_remote(data_dir, url, &request.base, request.git_auth.as_deref())?;
            (repo, commit, Some(without_credentials(url)))
        }
    };
    let (template_name, template_file, template_source) =
        template_at(&repo, &base_commit, &request.template)?;
    let policy = policy_at(&repo, &base_commit)?;
    let codeowners_warnings = policy
        .codeowners
        .as_ref()
        .map(|file| Codeowners::parse(&file.source).warnings().to_vec())
        .unwrap_or_default();
    let request = CreateMission {
        id: new_mission_id(),
        template_name,
        template_file,
        template_source,
        params: request.params.clone(),
        repo: repo.clone(),
        base_ref: request.base.clone(),
        requested_by: request.requested_by.clone(),
        policy_file: policy.origin,
        policy_source: policy.source,
        codeowners: policy.codeowners,
        base_commit: Some(base_commit.clone()),
        remote: if from_checkout {
            None
        } else {
            remote_url.clone()
        },
        origin: request.origin.clone(),
    };
    Ok(Intake {
        request,
        repo,
        base_commit,
        remote_url,
        from_checkout,
        codeowners_warnings,
    })
}

/// What a secret's scope is judged on: a new mission's template and its repository.
#[derive(Debug, Clone, Copy)]
pub struct ScopeSubject<'a> {
    pub template_name: &'a str,
    pub template_file: &'a str,
    pub template_source: &'a str,
    /// A checkout's root, or the installation's clone of a remote.
    pub repo: &'a Path,
    pub remote_url: Option<&'a str>,
    pub from_checkout: bool,
}

impl Intake {
    pub fn scope_subject(&self) -> ScopeSubject<'_> {
        ScopeSubject {
            template_name: &self.request.template_name,
            template_file: &self.request.template_file,
            template_source: &self.request.template_source,
            repo: &self.repo,
            remote_url: self.remote_url.as_deref(),
            from_checkout: self.from_checkout,
        }
    }
}

/// Where an existing mission's repository came from, for judging a fork of it as `run`
/// judged the mission: `(remote_url, from_checkout)`. A clone of a remote lives under
/// `<data-dir>/repos` and knows its URL from the file `fetch_remote` left in it (none for a
/// clone made before that file existed: only path entries could then name it, and none do).
pub fn repository_origin(data_dir: &Path, repo: &Path) -> (Option<String>, bool) {
    let clones = data_dir.join("repos");
    let clones = std::fs::canonicalize(&clones).unwrap_or(clones);
    let canonical = std::fs::canonicalize(repo).unwrap_or_else(|_| repo.to_path_buf());
    if canonical.starts_with(&clones) {
        let url = std::fs::read_to_string(canonical.join(REMOTE_URL_FILE))
            .ok()
            .map(|url| url.trim().to_string())
            .filter(|url| !url.is_empty());
        (url, false)
    } else {
        (flightdeck_workspace::origin_url(repo), true)
    }
}

/// The file in a remote's clone that names the URL it was fetched from (without any user
/// or password the URL carried).
const REMOTE_URL_FILE: &str = "flightdeck-remote-url";

/// `url` without the `user:password@` of a `scheme://` URL: what may be written to disk.
pub fn without_credentials(url: &str) -> String {
    let url = url.trim();
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    }
}

/// Refuses a mission whose template names a secret that is not scoped to its repository (or
/// not to its template): the error names the secret, the repository and the config line that
/// would let it. A secret without `repos` is scoped to no repository. A template that does
/// not parse is left to [`flightdeck_engine::Engine::validate`] to report.
pub fn check_secret_scopes(
    subject: ScopeSubject<'_>,
    config: &Config,
    config_path: &Path,
) -> Result<(), AppError> {
    let Ok(template) = flightdeck_core::template::Template::parse(
        subject.template_name,
        subject.template_file,
        subject.template_source,
    ) else {
        return Ok(());
    };
    // A fetched remote has no checkout: only `owner/name` entries can name it.
    let checkout = subject.from_checkout.then(|| {
        std::fs::canonicalize(subject.repo).unwrap_or_else(|_| subject.repo.to_path_buf())
    });
    let url_path = subject.remote_url.map(url_path_components);
    let matches = |entry: &str| match ScopedRepo::parse(entry) {
        Some(ScopedRepo::Checkout(path)) => checkout.as_ref().is_some_and(|checkout| {
            std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()) == *checkout
        }),
        // The whole path, not its end: `acme/textstats` must not name
        // `gitlab.com/mallory/acme/textstats`, a subgroup anyone may make.
        Some(ScopedRepo::Remote(parts)) => url_path.as_ref().is_some_and(|have| {
            have.len() == parts.len()
                && have
                    .iter()
                    .zip(&parts)
                    .all(|(a, b)| a.eq_ignore_ascii_case(b))
        }),
        None => false,
    };
    // How the repository is named to the user, and the entry that would let it.
    let entry = match (url_path.as_ref().filter(|p| p.len() >= 2), &checkout) {
        (Some(parts), _) => parts.join("/"),
        (None, Some(checkout)) => checkout.display().to_string(),
        // A clone from before flightdeck recorded its remote's URL: say what to write.
        (None, None) => "OWNER/NAME".to_string(),
    };
    let shown = match (subject.remote_url, &checkout) {
        (Some(url), Some(checkout)) => format!("{entry} ({url}, checkout {})", checkout.display()),
        (Some(url), None) => format!("{entry} ({url})"),
        (None, Some(checkout)) => checkout.display().to_string(),
        (None, None) => format!(
            "{} (a clone of a remote whose URL was not recorded)",
            subject.repo.display()
        ),
    };
    let quoted = |items: &[String]| {
        items
            .iter()
            .map(|i| format!("{i:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for name in &template.workspace.secrets {
        // A secret the config lacks is reported by validate (SecretMissing).
        let Some(secret) = config.secrets.get(name) else {
            continue;
        };
        if !secret.repos.iter().any(|e| matches(e)) {
            let mut repos = secret.repos.clone();
            repos.push(entry.clone());
            return Err(AppError::bad_input(
                format!(
                    "template `{}` names secret `{name}`, which is not scoped to repository {shown}; nothing was created",
                    subject.template_name
                ),
                Some(format!(
                    "a secret is given only to the repositories its scope names: to allow this one, write in {}:\n[secrets.{name}]\nrepos = [{}]",
                    config_path.display(),
                    quoted(&repos)
                )),
            ));
        }
        if let Some(templates) = &secret.templates {
            if !templates.iter().any(|t| t == subject.template_name) {
                let mut templates = templates.clone();
                templates.push(subject.template_name.to_string());
                return Err(AppError::bad_input(
                    format!(
                        "template `{}` names secret `{name}`, which is scoped to other templates of repository {shown} ({}); nothing was created",
                        subject.template_name,
                        quoted(secret.templates.as_deref().unwrap_or_default())
                    ),
                    Some(format!(
                        "to allow this template, write in {}:\n[secrets.{name}]\ntemplates = [{}]",
                        config_path.display(),
                        quoted(&templates)
                    )),
                ));
            }
        }
    }
    Ok(())
}

/// The path of a repository URL, as components without a trailing `.git`:
/// `https://github.com/acme/textstats.git`, `git@github.com:acme/textstats` and
/// `/srv/git/acme/textstats` all end in `["acme", "textstats"]`.
pub fn url_path_components(url: &str) -> Vec<String> {
    let url = url.trim();
    let path = match url.split_once("://") {
        // scheme://host[:port]/path (file:///path has an empty host).
        Some((_, rest)) => rest.find('/').map_or("", |i| &rest[i..]),
        None => match (url.find(':'), url.find('/')) {
            // scp-like `user@host:path`.
            (Some(colon), slash) if slash.is_none_or(|s| colon < s) => &url[colon + 1..],
            _ => url,
        },
    };
    let path = path.trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    path.split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .map(str::to_string)
        .collect()
}

/// The top of the checkout `dir` is in.
pub fn checkout_root(dir: &Path) -> Result<PathBuf, AppError> {
    if !dir.is_dir() {
        return Err(AppError::bad_input(
            format!("--repo {}: no such directory", dir.display()),
            Some("pass --repo with a directory inside a git repository".to_string()),
        ));
    }
    repo_root(dir).map_err(|_| {
        AppError::bad_input(
            format!("--repo {}: not a git repository", dir.display()),
            Some(
                "pass --repo with a directory inside a git repository (`git init` makes one)"
                    .to_string(),
            ),
        )
    })
}

/// The policy and CODEOWNERS of `repo` at `commit` (the built-in policy when the commit has
/// no `.flightdeck/policy.toml`).
pub fn policy_at(repo: &Path, commit: &str) -> Result<PolicyAt, AppError> {
    let short = commit.get(..12).unwrap_or(commit);
    let (origin, source) = match read_text(repo, commit, ".flightdeck/policy.toml")? {
        Some(source) => (
            repo.join(".flightdeck/policy.toml").display().to_string(),
            source,
        ),
        None => (
            format!(
                "{} (no .flightdeck/policy.toml at {short})",
                flightdeck_policy::BUILTIN_POLICY_ORIGIN
            ),
            flightdeck_policy::BUILTIN_POLICY_TOML.to_string(),
        ),
    };
    let mut codeowners = None;
    for location in CODEOWNERS_LOCATIONS {
        if let Some(source) = read_text(repo, commit, location)? {
            codeowners = Some(RepoFile {
                path: location.to_string(),
                source,
            });
            break;
        }
    }
    Ok(PolicyAt {
        origin,
        source,
        commit: commit.to_string(),
        codeowners,
    })
}

/// The template `name` names: `(name, where it came from, its text)`.
fn template_at(
    repo: &Path,
    commit: &str,
    name: &str,
) -> Result<(String, String, String), AppError> {
    let short = commit.get(..12).unwrap_or(commit);
    let given = Path::new(name);
    let is_path = name.ends_with(".toml") || name.contains('/');
    let stem = |path: &Path| {
        path.file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("template")
            .to_string()
    };
    if !is_path {
        let relative = format!(".flightdeck/missions/{name}.toml");
        return match read_text(repo, commit, &relative)? {
            Some(source) => Ok((
                name.to_string(),
                repo.join(&relative).display().to_string(),
                source,
            )),
            None => Err(no_template(repo, commit, name, &relative)),
        };
    }
    // A path: inside the repository it is read at the base commit, like a name; outside,
    // from the file.
    let absolute = if given.is_absolute() {
        given.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|cwd| cwd.join(given))
            .unwrap_or_else(|_| given.to_path_buf())
    };
    let absolute = std::fs::canonicalize(&absolute).unwrap_or(absolute);
    let root = std::fs::canonicalize(repo).unwrap_or_else(|_| repo.to_path_buf());
    if let Ok(inside) = absolute.strip_prefix(&root) {
        let relative = inside.to_string_lossy().into_owned();
        return match read_text(repo, commit, &relative)? {
            Some(source) => Ok((stem(&absolute), absolute.display().to_string(), source)),
            None => Err(AppError::bad_input(
                format!(
                    "template {} is not in the base commit {short} of {}",
                    absolute.display(),
                    repo.display()
                ),
                Some(format!(
                    "a mission's template is read at its base commit, not from uncommitted files: commit it (`git add {relative} && git commit`), or pass --base with a commit that has it"
                )),
            )),
        };
    }
    let source = std::fs::read_to_string(&absolute).map_err(|e| {
        AppError::bad_input(
            format!("cannot read template {}: {e}", absolute.display()),
            None,
        )
    })?;
    Ok((stem(&absolute), absolute.display().to_string(), source))
}

fn no_template(repo: &Path, commit: &str, name: &str, relative: &str) -> AppError {
    let short = commit.get(..12).unwrap_or(commit);
    let mut available: Vec<String> =
        flightdeck_workspace::list_at_commit(repo, commit, ".flightdeck/missions")
            .unwrap_or_default()
            .into_iter()
            .filter_map(|f| f.strip_suffix(".toml").map(str::to_string))
            .collect();
    available.sort();
    let uncommitted = repo.join(relative).is_file();
    let hint = if uncommitted {
        format!(
            "{relative} exists in the working tree but not in the base commit {short}: a mission's template is read at its base commit; commit it first"
        )
    } else if available.is_empty() {
        format!(
            "`flightdeck init --repo {}` writes an example template (commit it, then run)",
            repo.display()
        )
    } else {
        format!("templates at {short}: {}", available.join(", "))
    };
    AppError::not_found(
        format!(
            "no template `{name}` in {} at {short} (looked for {relative})",
            repo.display()
        ),
        Some(hint),
    )
}

/// A repository file's text at `commit`, if the commit has it.
fn read_text(repo: &Path, commit: &str, path: &str) -> Result<Option<String>, AppError> {
    match read_at_commit(repo, commit, path)? {
        Some(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| {
            AppError::bad_input(format!("{path} at {commit} is not UTF-8 text"), None)
        }),
        None => Ok(None),
    }
}

/// Fetches `base` of the repository at `url` into the installation's cache of repositories:
/// the cache's path and the base commit. A commit already fetched is not fetched again.
/// `auth` is an `http.extraHeader` value (a GitHub App installation's token), given to git
/// like the URL: in its environment.
fn fetch_remote(
    data_dir: &Path,
    url: &str,
    base: &str,
    auth: Option<&str>,
) -> Result<(PathBuf, String), AppError> {
    let key = flightdeck_core::Digest::of(url.trim().as_bytes());
    let name = key.as_str().trim_start_matches("sha256:");
    let cache = data_dir.join("repos").join(name.get(..16).unwrap_or(name));
    let git = |dir: &Path, args: &[&str]| -> Result<std::process::Output, AppError> {
        let mut git = std::process::Command::new("git");
        if let Some(header) = auth {
            git.env("GIT_CONFIG_COUNT", "2")
                .env("GIT_CONFIG_KEY_1", "http.extraHeader")
                .env("GIT_CONFIG_VALUE_1", header);
        } else {
            git.env("GIT_CONFIG_COUNT", "1");
        }
        git.arg("-C")
            .arg(dir)
            .args([
                "-c",
                "core.hooksPath=/dev/null",
                "-c",
                "protocol.ext.allow=never",
            ])
            .args(args)
            // The URL (which may carry credentials) as the remote `flightdeck-source`, and
            // `auth`, in the environment: never on a command line every user can read.
            .env("GIT_CONFIG_KEY_0", "remote.flightdeck-source.url")
            .env("GIT_CONFIG_VALUE_0", url.trim())
            // Never wait for a person: no credential prompt, and a transfer that stalls
            // (under 1 KB/s for a minute) is given up.
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_HTTP_LOW_SPEED_LIMIT", "1000")
            .env("GIT_HTTP_LOW_SPEED_TIME", "60")
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| AppError::failed(format!("cannot run git: {e}")))
    };
    // What messages show of the URL: never a user or password it carries.
    let shown = without_credentials(url);
    // What messages show of git's output: never the URL's credentials or `auth`.
    let scrub = |said: &[u8]| {
        let said = String::from_utf8_lossy(said)
            .trim()
            .replace(url.trim(), &shown);
        match auth.filter(|a| !a.is_empty()) {
            Some(header) => {
                let said = said.replace(header, "[REDACTED]");
                match header.rsplit(' ').next().filter(|e| !e.is_empty()) {
                    Some(encoded) => said.replace(encoded, "[REDACTED]"),
                    None => said,
                }
            }
            None => said,
        }
    };
    if !cache.join("HEAD").is_file() {
        std::fs::create_dir_all(&cache)?;
        let out = git(&cache, &["init", "--bare", "--quiet"])?;
        if !out.status.success() {
            return Err(AppError::failed(format!(
                "cannot make the repository cache {}: {}",
                cache.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    // What a fork of a mission in this clone is judged by (secret scopes name remotes).
    std::fs::write(cache.join(REMOTE_URL_FILE), without_credentials(url))?;
    if base.len() == 40 {
        if let Ok(commit) = resolve_commit(&cache, base) {
            return Ok((cache, commit));
        }
    }
    // A ref of this fetch's own: two missions fetching the same repository at once each
    // resolve the commit they fetched. It stays, so the base commit stays reachable.
    let fetched = format!(
        "refs/flightdeck/fetched/{}",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    let refspec = format!("+{base}:{fetched}");
    let out = git(
        &cache,
        &[
            "fetch",
            "--quiet",
            "--no-tags",
            "flightdeck-source",
            &refspec,
        ],
    )?;
    if !out.status.success() {
        // A commit id cannot be fetched by name from every server: fetch everything.
        let all = git(
            &cache,
            &[
                "fetch",
                "--quiet",
                "--no-tags",
                "flightdeck-source",
                "+refs/heads/*:refs/remotes/origin/*",
            ],
        )?;
        let commit = resolve_commit(&cache, base)
            .ok()
            .filter(|_| all.status.success());
        return match commit {
            Some(commit) => Ok((cache, commit)),
            None => Err(AppError::bad_input(
                format!("cannot fetch {base} from {shown}: {}", scrub(&out.stderr)),
                Some(
                    "--remote takes a URL git can fetch, and --base a branch, tag or commit it has"
                        .to_string(),
                ),
            )),
        };
    }
    // The base named a branch or tag: the mission's base is the commit fetched for it.
    let commit = resolve_commit(&cache, &fetched)?;
    Ok((cache, commit))
}

/// Where a mission's repository is on this machine, for a worker that may not be the
/// requester's machine: a repository fetched by URL is this installation's cache of that URL
/// (`<data-dir>/repos`), fetched there at the mission's base commit unless the cache has it
/// already (a cache made earlier may lack a newer base), with the credentials of this
/// installation's `[repos.NAME]` of the same URL when it has one (the timeline records URLs
/// without them), or, for a mission from GitHub, its installation's token; a checkout is its
/// recorded path, which must be here.
pub struct FetchingRepos {
    pub data_dir: PathBuf,
    pub repos: BTreeMap<String, crate::config::RepoConfig>,
    /// `[github]`'s App, whose installation tokens fetch the repositories of missions from
    /// GitHub (private ones need them).
    pub github: Option<std::sync::Arc<crate::github::GitHubApp>>,
}

#[async_trait::async_trait]
impl flightdeck_engine::RepoPort for FetchingRepos {
    async fn locate(
        &self,
        created: &flightdeck_core::event::MissionCreated,
    ) -> Result<PathBuf, flightdeck_engine::EngineError> {
        let Some(remote) = created.remote.clone() else {
            return flightdeck_engine::RecordedRepo.locate(created).await;
        };
        let url = self
            .repos
            .values()
            .find(|r| without_credentials(&r.url) == remote)
            .map_or(remote.clone(), |r| r.url.trim().to_string());
        let auth = match (&created.github, &self.github) {
            (Some(origin), Some(app)) => Some(
                app.git_auth_header(origin.installation_id)
                    .await
                    .map_err(|e| flightdeck_engine::EngineError::RepoNotHere {
                        repo: created.repo.clone(),
                        why: format!(
                            "fetching it from {remote} needs a token of the GitHub App's installation {}, which GitHub did not give: {e}",
                            origin.installation_id
                        ),
                    })?,
            ),
            // Without `[github]` a public repository can still be fetched; a private one
            // fails below, saying so.
            _ => None,
        };
        let data_dir = self.data_dir.clone();
        let base = created.base_commit.clone();
        let fetched = tokio::task::spawn_blocking(move || {
            fetch_remote(&data_dir, &url, &base, auth.as_deref())
        })
        .await;
        match fetched {
            Ok(Ok((cache, _))) => Ok(cache),
            Ok(Err(e)) => Err(flightdeck_engine::EngineError::RepoNotHere {
                repo: created.repo.clone(),
                why: format!(
                    "fetching it from {remote} failed: {}{}",
                    e.message,
                    if created.github.is_some() && self.github.is_none() {
                        " (the mission came from GitHub, and this process has no [github] in its config to fetch with the App's token)"
                    } else {
                        ""
                    }
                ),
            }),
            Err(e) => Err(flightdeck_engine::EngineError::RepoNotHere {
                repo: created.repo.clone(),
                why: format!("fetching it from {remote} failed: {e}"),
            }),
        }
    }
}
