//! The installation config (`<data-dir>/config.toml`): identity, people and teams, model
//! providers and prices, secrets, audit signing. Every value is checked when it is read;
//! errors name the file, the line and the key, with a hint.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flightdeck_engine::WorkspaceSettings;
use flightdeck_engine::{ModelSettings, ProviderKind, ProviderSettings, MIN_SECRET_LEN};
use flightdeck_models::{ModelRef, Pricing};
use flightdeck_policy::{People, Person};
use serde::Deserialize;

use crate::error::AppError;

/// `config.toml` (CONTRACT.md, "Installation config").
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub identity: IdentityConfig,
    #[serde(default)]
    pub teams: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    #[serde(default)]
    pub pricing: BTreeMap<String, Pricing>,
    #[serde(default)]
    pub models: ModelsConfig,
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretConfig>,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub people: BTreeMap<String, PersonConfig>,
    #[serde(default)]
    pub workspace: WorkspaceSection,
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub repos: BTreeMap<String, RepoConfig>,
    /// `[quotas."@team"]`: what each team's missions may spend per UTC calendar month.
    #[serde(default)]
    pub quotas: BTreeMap<String, QuotaConfig>,
    #[serde(default)]
    pub telemetry: TelemetrySection,
    /// `[slack]`: approvals in Slack (`flightdeck serve`).
    #[serde(default)]
    pub slack: Option<SlackSection>,
    /// `[github]`: missions from GitHub issues, proposed as pull requests (issue 19).
    #[serde(default)]
    pub github: Option<GitHubSection>,
}

/// `[github]`: the GitHub App missions come from and propose their changes through. Checked
/// when the config is read ([`Config::parse`]): the key file is read and must be an RSA key
/// GitHub would accept, so a wrong path or key stops every command at once rather than a
/// mission at its publish gate. The webhook secret is an environment variable `serve` reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitHubSection {
    /// The App's id (its settings page, "App ID").
    #[serde(deserialize_with = "app_id")]
    pub app_id: u64,
    /// The App's private key (PEM, PKCS#1 or PKCS#8); relative to the config file's
    /// directory ([`GitHubSection::key_path`]).
    pub private_key_file: PathBuf,
    /// The environment variable holding the webhook secret (required in `webhook` mode).
    pub webhook_secret_env: Option<String>,
    /// The REST API's base URL: GitHub.com's, GitHub Enterprise Server's `…/api/v3`, or a
    /// test server.
    #[serde(default = "default_github_api_url")]
    pub api_url: String,
    #[serde(default)]
    pub mode: GitHubMode,
    /// `<trigger_label>:TEMPLATE` labels start missions.
    #[serde(default = "default_trigger_label")]
    pub trigger_label: String,
    /// Poll mode's interval between looks at the installations' labelled issues.
    #[serde(default = "default_poll_seconds")]
    pub poll_seconds: u64,
}

/// How GitHub's events reach flightdeck.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GitHubMode {
    /// GitHub POSTs them to `serve`'s `/webhooks/github` (needs a public URL).
    #[default]
    Webhook,
    /// `serve` asks GitHub every `poll_seconds` (no public URL needed).
    Poll,
}

impl GitHubMode {
    pub fn as_str(self) -> &'static str {
        match self {
            GitHubMode::Webhook => "webhook",
            GitHubMode::Poll => "poll",
        }
    }
}

/// Poll mode never asks more often than this: GitHub's rate limits are per hour and shared
/// by every call the App makes.
pub const MIN_POLL_SECONDS: u64 = 10;

/// A positive App id, read signed so that `-3` is told as "not an App id" with the key
/// rather than as a type mismatch.
fn app_id<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let id = i64::deserialize(deserializer)?;
    u64::try_from(id).ok().filter(|id| *id > 0).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "[github] app_id = {id}: not an App id (the number on the GitHub App's settings page, \"App ID\")"
        ))
    })
}

fn default_github_api_url() -> String {
    flightdeck_github::client::PUBLIC_API_URL.to_string()
}

fn default_trigger_label() -> String {
    "flightdeck".to_string()
}

fn default_poll_seconds() -> u64 {
    60
}

impl GitHubSection {
    /// The private key's path: a relative `private_key_file` is relative to `config_dir`
    /// (the config file's directory), so the config means the same from any directory.
    pub fn key_path(&self, config_dir: &Path) -> PathBuf {
        absolute(&config_dir.join(&self.private_key_file))
    }

    /// Poll mode's interval.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_secs(self.poll_seconds)
    }
}

/// The directory of the config file `path` (relative paths in it are relative to it).
pub fn config_dir(path: &Path) -> PathBuf {
    absolute(path)
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf)
}

/// The lines keys of `[github]` are written on, for messages: toml keeps no places once
/// parsed, so the text is read again, leniently, with spans.
#[derive(Deserialize)]
struct GitHubPlaces {
    github: Option<toml::Spanned<BTreeMap<String, toml::Spanned<toml::Value>>>>,
}

/// `file:line: [github] key` (the section's line when the key is not written; the file alone
/// when neither can be found).
fn github_place(text: &str, path: &Path, key: &str) -> String {
    let places: Option<GitHubPlaces> = toml::from_str(text).ok();
    let section = places.and_then(|p| p.github);
    let offset = section.as_ref().map(|s| {
        s.get_ref()
            .get(key)
            .map_or(s.span().start, |value| value.span().start)
    });
    let at = offset
        .map(|o| format!(":{}", flightdeck_core::template::line_column(text, o).0))
        .unwrap_or_default();
    format!("{}{at}: [github] {key}", path.display())
}

/// The `[github]` section checked: every value, and the private key read and parsed (the
/// secret named by `webhook_secret_env` is read by `serve`, not here). Errors name the file,
/// the line and the key, with a hint.
fn check_github(section: &GitHubSection, text: &str, path: &Path) -> Result<(), AppError> {
    let bad = |key: &str, what: String, hint: &str| {
        AppError::bad_input(
            format!("{} {what}", github_place(text, path, key)),
            Some(hint.to_string()),
        )
    };
    let api_url = section.api_url.trim();
    if !(api_url.starts_with("https://") || api_url.starts_with("http://"))
        || api_url.contains(['?', '#'])
    {
        return Err(bad(
            "api_url",
            format!("= {api_url:?}: not an http(s) URL without query or fragment"),
            "api_url is GitHub's REST API: \"https://api.github.com\" (the default), or \"https://HOST/api/v3\" for GitHub Enterprise Server",
        ));
    }
    match (section.mode, section.webhook_secret_env.as_deref().map(str::trim)) {
        (GitHubMode::Webhook, None) => {
            return Err(bad(
                "webhook_secret_env",
                "is missing: mode = \"webhook\" (the default) needs it".to_string(),
                "name the environment variable of `serve` that holds the App's webhook secret, e.g. webhook_secret_env = \"GITHUB_WEBHOOK_SECRET\"; or set mode = \"poll\" (no public URL, no webhooks)",
            ))
        }
        (_, Some(var)) if var.is_empty() || var.contains(['=', '\0']) => {
            return Err(bad(
                "webhook_secret_env",
                format!("= {var:?}: not the name of an environment variable"),
                "the secret itself never goes in the file: name the variable that holds it, e.g. webhook_secret_env = \"GITHUB_WEBHOOK_SECRET\"",
            ))
        }
        _ => {}
    }
    let label = section.trigger_label.as_str();
    if label.trim().is_empty() || label.trim() != label || label.contains([',', ':']) {
        return Err(bad(
            "trigger_label",
            format!("= {label:?}: not a label prefix"),
            "`<trigger_label>:TEMPLATE` labels start missions, so the prefix has no `:` or `,` and no spaces around it, e.g. trigger_label = \"flightdeck\"",
        ));
    }
    if section.poll_seconds < MIN_POLL_SECONDS {
        return Err(bad(
            "poll_seconds",
            format!(
                "= {}: polls more often than every {MIN_POLL_SECONDS} seconds",
                section.poll_seconds
            ),
            "poll_seconds is at least 10 (60 by default): every look at GitHub spends the App's hourly rate limit",
        ));
    }
    let key_path = section.key_path(&config_dir(path));
    read_app_key(&key_path).map_err(|(what, hint)| {
        bad(
            "private_key_file",
            format!(
                "= {:?} ({}): {what}",
                section.private_key_file.display().to_string(),
                key_path.display()
            ),
            &hint,
        )
    })?;
    Ok(())
}

/// The App's private key at `path`, or what is wrong with it and what to do (never any of
/// the file's content).
pub(crate) fn read_app_key(path: &Path) -> Result<flightdeck_github::AppKey, (String, String)> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            "private_key_file names the `.pem` GitHub generated for the App (its settings page, \"Private keys\"); a relative path is relative to the config file's directory"
        } else {
            "the file must be readable by every flightdeck process of this installation (and by no one else)"
        };
        (format!("cannot read it: {e}"), hint.to_string())
    })?;
    flightdeck_github::AppKey::from_pem(&text).map_err(|e| {
        let hint = match e {
            flightdeck_github::KeyError::NotRsa { .. } => "GitHub App keys are RSA: generate a new private key on the App's settings page and point private_key_file at the `.pem` it downloads",
            flightdeck_github::KeyError::Encrypted { .. } => "decrypt it first (`openssl pkey -in KEY -out KEY.pem`), and keep the decrypted file readable only by flightdeck",
            _ => "private_key_file is the `.pem` GitHub generated for the App (`-----BEGIN RSA PRIVATE KEY-----`), or the same key as PKCS#8 (`-----BEGIN PRIVATE KEY-----`)",
        };
        (e.to_string(), hint.to_string())
    })
}

/// `[slack]`: where approval requests go and how Slack's clicks are checked.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackSection {
    /// The environment variable holding the bot token (`xoxb-…`).
    pub bot_token_env: String,
    /// The environment variable holding the app-level token (`xapp-…`) for Socket Mode.
    pub app_token_env: Option<String>,
    /// The environment variable holding the signing secret HTTP mode checks clicks with.
    pub signing_secret_env: Option<String>,
    /// The Web API's base URL (a test server in tests).
    #[serde(default = "default_slack_api_url")]
    pub api_url: String,
    /// Where approval requests go: `default`, and per team of approvers.
    #[serde(default)]
    pub channels: BTreeMap<String, String>,
    /// A Slack user `[people] slack` does not list may be known by the email address
    /// Slack's `users.info` gives (needs the `users:read.email` scope); recorded as
    /// `resolved_by = "slack.email"` with the address. Off unless set.
    #[serde(default)]
    pub resolve_by_email: bool,
    /// How long before an approval expires a reminder goes to the request's thread
    /// (never before half its time has passed).
    #[serde(default = "default_remind_before_seconds")]
    pub remind_before_seconds: u64,
}

fn default_remind_before_seconds() -> u64 {
    3600
}

fn default_slack_api_url() -> String {
    "https://slack.com/api".to_string()
}

/// `[telemetry]`: OpenTelemetry traces over OTLP/HTTP.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySection {
    /// The OTLP/HTTP receiver's base URL; traces are POSTed to `<it>/v1/traces`.
    pub otlp_endpoint: Option<String>,
}

/// The `[telemetry]` endpoint, checked; none when not configured.
pub(crate) fn telemetry_endpoint(
    config: &Config,
    path: &Path,
) -> Result<Option<crate::telemetry::Endpoint>, AppError> {
    let Some(text) = &config.telemetry.otlp_endpoint else {
        return Ok(None);
    };
    crate::telemetry::Endpoint::parse(text)
        .map(Some)
        .map_err(|e| {
            AppError::bad_input(
                format!(
                    "{}: [telemetry] otlp_endpoint = {text:?}: {e}",
                    path.display()
                ),
                Some("otlp_endpoint is the base URL of an OTLP/HTTP receiver, http or https, e.g. \"http://127.0.0.1:4318\"; traces are POSTed to <otlp_endpoint>/v1/traces".to_string()),
            )
        })
}

/// `[quotas."@team"]`: a `[teams]` entry's limits per UTC calendar month, over every mission
/// its people request, across every process sharing the store.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    /// US dollars (as priced by `[pricing]` or the scripted model's own prices).
    pub usd_per_month: Option<f64>,
    /// Input plus output tokens. Read signed, so a negative number is told as such.
    pub tokens_per_month: Option<i64>,
}

/// The `[quotas]` of the config, checked: each names a `[teams]` entry and limits something,
/// by numbers of zero or more. Errors name the file and the key, with a hint.
pub(crate) fn quotas(
    config: &Config,
    path: &Path,
) -> Result<Vec<flightdeck_core::quota::TeamQuota>, AppError> {
    let file = path.display();
    let mut quotas = Vec::with_capacity(config.quotas.len());
    for (name, quota) in &config.quotas {
        let key = format!("[quotas.\"{name}\"]");
        let Some(team) = config
            .teams
            .keys()
            .find(|team| team.trim().eq_ignore_ascii_case(name.trim()))
        else {
            let known = if config.teams.is_empty() {
                "there is no [teams] section".to_string()
            } else {
                format!(
                    "the teams are {}",
                    config
                        .teams
                        .keys()
                        .map(|t| format!("\"{t}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            return Err(AppError::bad_input(
                format!("{file}: {key}: no team \"{name}\" in [teams]"),
                Some(format!(
                    "a quota belongs to a team of [teams] ({known}); add [teams] \"{name}\" = [\"@alice\", …] or name one of them"
                )),
            ));
        };
        if let Some(usd) = quota.usd_per_month {
            if !(usd.is_finite() && usd >= 0.0) {
                return Err(AppError::bad_input(
                    format!("{file}: {key} usd_per_month = {usd}: not a number of dollars"),
                    Some("usd_per_month is zero or more US dollars per month, e.g. usd_per_month = 500.0".to_string()),
                ));
            }
        }
        let tokens = match quota.tokens_per_month {
            Some(tokens) => Some(u64::try_from(tokens).map_err(|_| {
                AppError::bad_input(
                    format!("{file}: {key} tokens_per_month = {tokens}: not a number of tokens"),
                    Some("tokens_per_month is zero or more tokens (input plus output) per month, e.g. tokens_per_month = 50000000".to_string()),
                )
            })?),
            None => None,
        };
        if quota.usd_per_month.is_none() && tokens.is_none() {
            return Err(AppError::bad_input(
                format!("{file}: {key} limits nothing"),
                Some("set usd_per_month, tokens_per_month or both".to_string()),
            ));
        }
        quotas.push(flightdeck_core::quota::TeamQuota {
            team: team.clone(),
            usd_per_month: quota.usd_per_month,
            tokens_per_month: tokens,
        });
    }
    Ok(quotas)
}

/// `[repos.NAME]`: a repository missions can name (`run --remote NAME`, the API's `repo`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoConfig {
    /// A URL git can fetch (`https://…`, `ssh://…`, `git@host:path`, `file://…`).
    pub url: String,
}

/// `[server]`: how `flightdeck serve` lets people in.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Links in PRs and messages (not used by this build yet).
    pub public_url: Option<String>,
    /// How requests are authenticated.
    #[serde(default)]
    pub auth: ServerAuth,
    /// Signing in to the web UI with an OpenID Connect provider.
    pub oidc: Option<OidcConfig>,
}

/// `[server.oidc]`: the web UI's single sign-on (authorization code flow with PKCE). The
/// provider's subject is mapped to a person by `[people.NAME] oidc = "<sub>"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The provider's issuer URL (its discovery document is `<issuer>/.well-known/openid-configuration`).
    pub issuer: String,
    pub client_id: String,
    /// The environment variable that holds the client secret (the secret is never in the
    /// file); none for a public client.
    pub client_secret_env: Option<String>,
    /// Where the provider sends the browser back: `<public_url>/auth/oidc/callback` by default.
    pub redirect_url: Option<String>,
    /// Scopes asked for (`openid` is always asked).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The role of a person signed in this way (`viewer` by default).
    pub default_role: Option<String>,
    /// Roles of particular people, by handle (`"@bob" = "approver"`).
    #[serde(default)]
    pub roles: BTreeMap<String, String>,
    /// Also map a person by the `email` claim when the provider says it is verified.
    #[serde(default)]
    pub match_verified_email: bool,
}

/// `[server] auth`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServerAuth {
    /// Loopback addresses only; requests from this machine need no token.
    #[default]
    LocalOnly,
    /// Every request needs an API token.
    Required,
}

/// `[workspace]`: what this installation lets missions' workspaces do.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceSection {
    /// Whether templates may say `runtime = "local-unsandboxed"` (default false).
    #[serde(default)]
    pub allow_unsandboxed: bool,
}

/// `[people.NAME]`: one person and their names on every channel.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonConfig {
    /// What policies and CODEOWNERS name (`@alice`).
    pub handle: String,
    #[serde(default)]
    pub emails: Vec<String>,
    /// GitHub login.
    pub github: Option<String>,
    /// Slack user id.
    pub slack: Option<String>,
    /// The subject (`sub`) `[server.oidc]`'s provider gives this person.
    pub oidc: Option<String>,
}

/// `[secrets.NAME]`: where a secret's value comes from (exactly one of the two), and who may
/// use it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretConfig {
    /// An environment variable of the flightdeck process.
    pub env: Option<String>,
    /// A file (trailing newlines are not part of the value).
    pub file: Option<PathBuf>,
    /// The repositories whose missions may use it: `owner/name` (the whole path of the
    /// repository's remote URL) or an absolute path (a checkout). Empty: none.
    #[serde(default)]
    pub repos: Vec<String>,
    /// The templates (by name) that may use it in those repositories; absent: any.
    pub templates: Option<Vec<String>>,
    /// A container registry (`ghcr.io`, `registry.acme.dev:5000`) this secret logs in to, as
    /// `username`: devcontainer features are fetched from it with this login.
    pub registry: Option<String>,
    pub username: Option<String>,
}

/// What a `repos` entry of a secret's scope names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopedRepo<'a> {
    /// `owner/name` (or `group/sub/name`): the remote URL's whole path.
    Remote(Vec<&'a str>),
    /// An absolute path: the checkout's top directory.
    Checkout(&'a Path),
}

impl<'a> ScopedRepo<'a> {
    /// Reads one `repos` entry; `None` when it is neither form.
    pub fn parse(entry: &'a str) -> Option<ScopedRepo<'a>> {
        if entry.starts_with('/') {
            return Some(ScopedRepo::Checkout(Path::new(entry)));
        }
        let parts: Vec<&str> = entry.split('/').collect();
        let plain = |p: &&str| {
            !p.is_empty()
                && *p != "."
                && *p != ".."
                && !p
                    .chars()
                    .any(|c| c.is_whitespace() || c == ':' || c == '\\')
        };
        (parts.len() >= 2 && parts.iter().all(plain)).then_some(ScopedRepo::Remote(parts))
    }
}

/// `[audit]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// An ed25519 private key (PKCS#8 PEM); relative paths are under the data directory.
    /// When set, `audit export --format intoto` signs the statement (a DSSE envelope).
    pub signing_key: Option<std::path::PathBuf>,
}

/// `[providers.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// `openai` (Chat Completions compatible) or `anthropic` (Messages); optional for the
    /// built-in `openai` and `anthropic`.
    pub kind: Option<String>,
    pub base_url: Option<String>,
    pub api_key_env: Option<String>,
    pub max_retries: Option<u32>,
    pub timeout_seconds: Option<u64>,
    /// `max_completion_tokens` (default) or `max_tokens`, for older compatible servers.
    pub max_tokens_field: Option<String>,
}

/// `[models]`: limits of model calls across providers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsConfig {
    /// The most one model call waits in total between retries (default 300).
    pub max_wait_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    pub default: Option<String>,
}

impl Config {
    /// Reads the config at `path`; a missing file is the empty config when `optional`.
    pub fn load(path: &Path, optional: bool) -> Result<Config, AppError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && optional => Ok(Config::default()),
            Err(e) => Err(AppError::bad_input(
                format!("cannot read config {}: {e}", path.display()),
                Some("--config and FLIGHTDECK_CONFIG name an existing file".to_string()),
            )),
        }
    }

    /// Parses a config's text (`path` for messages).
    pub fn parse(text: &str, path: &Path) -> Result<Config, AppError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| {
                    let (line, column) = flightdeck_core::template::line_column(text, s.start);
                    format!(":{line}:{column}")
                })
                .unwrap_or_default();
            AppError::bad_input(
                format!(
                    "{}{at}: {}",
                    path.display(),
                    flightdeck_core::template::toml_message(&e, text)
                ),
                Some(
                    "the config format is described in flightdeck's docs/reference/config.md"
                        .to_string(),
                ),
            )
        })?;
        if let Some(github) = &config.github {
            check_github(github, text, path)?;
        }
        Ok(config)
    }

    /// The `[people]` directory, checked (no two people share a name on any channel).
    pub fn people(&self, path: &Path) -> Result<People, AppError> {
        let persons = self
            .people
            .iter()
            .map(|(key, p)| Person {
                key: key.clone(),
                handle: p.handle.clone(),
                emails: p.emails.clone(),
                github: p.github.clone(),
                slack: p.slack.clone(),
                oidc: p.oidc.clone(),
            })
            .collect();
        People::new(persons).map_err(|e| {
            AppError::bad_input(
                format!("{}: {e}", path.display()),
                Some("each person has one handle (`@name`), and no handle, email, github login, slack id or oidc subject may belong to two people".to_string()),
            )
        })
    }
}

/// The model settings of the config, every value checked; errors name the config file and
/// the section at fault.
pub(crate) fn model_settings(config: &Config, path: &Path) -> Result<ModelSettings, AppError> {
    let file = path.display();
    let bad = |what: String, hint: &str| {
        AppError::bad_input(format!("{file}: {what}"), Some(hint.to_string()))
    };
    let mut settings = ModelSettings::default();
    for (name, provider) in &config.providers {
        let builtin = ProviderSettings::builtin(name);
        let kind = match (provider.kind.as_deref(), &builtin) {
            (Some("openai"), _) => ProviderKind::OpenAi,
            (Some("anthropic"), _) => ProviderKind::Anthropic,
            (Some(other), _) => {
                return Err(bad(
                    format!("[providers.{name}] kind = {other:?} is not a provider kind"),
                    "kind is \"openai\" (Chat Completions compatible: OpenAI, vLLM, Ollama, llama.cpp, LiteLLM) or \"anthropic\" (Messages)",
                ))
            }
            (None, Some(b)) => b.kind,
            (None, None) => {
                return Err(bad(
                    format!("[providers.{name}] has no kind"),
                    "add kind = \"openai\" or kind = \"anthropic\"",
                ))
            }
        };
        let base_url = match (&provider.base_url, &builtin) {
            (Some(url), _) => url.trim_end_matches('/').to_string(),
            (None, Some(b)) => b.base_url.clone(),
            (None, None) => {
                return Err(bad(
                    format!("[providers.{name}] has no base_url"),
                    "add base_url, e.g. \"http://localhost:11434/v1\" for Ollama",
                ))
            }
        };
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(bad(
                format!("[providers.{name}] base_url {base_url:?} is not an http(s) URL"),
                "write the URL up to the API version, e.g. \"https://api.openai.com/v1\"",
            ));
        }
        let legacy_max_tokens = match provider.max_tokens_field.as_deref() {
            None | Some("max_completion_tokens") => false,
            Some("max_tokens") => true,
            Some(other) => {
                return Err(bad(
                    format!("[providers.{name}] max_tokens_field = {other:?} is not a field name"),
                    "max_tokens_field is \"max_completion_tokens\" (default) or \"max_tokens\"",
                ))
            }
        };
        let defaults = builtin.as_ref();
        settings.providers.insert(
            name.clone(),
            ProviderSettings {
                kind,
                base_url,
                api_key_env: provider
                    .api_key_env
                    .clone()
                    .or_else(|| defaults.and_then(|b| b.api_key_env.clone())),
                max_retries: provider.max_retries.unwrap_or(2),
                timeout: Duration::from_secs(provider.timeout_seconds.unwrap_or(120).max(1)),
                legacy_max_tokens,
            },
        );
    }
    for (model, price) in &config.pricing {
        ModelRef::parse(model).map_err(|e| {
            bad(
                format!("[pricing.\"{model}\"]: {e}"),
                "pricing keys are model refs, e.g. [pricing.\"openai:gpt-4.1-2025-04-14\"]",
            )
        })?;
        let prices = [
            Some(price.input_per_mtok),
            Some(price.output_per_mtok),
            price.cache_read_per_mtok,
            price.cache_write_per_mtok,
        ];
        if prices
            .iter()
            .flatten()
            .any(|p| !(p.is_finite() && *p >= 0.0))
        {
            return Err(bad(
                format!("[pricing.\"{model}\"]: prices must be zero or more"),
                "prices are USD per million tokens",
            ));
        }
        settings.pricing.insert(model.clone(), *price);
    }
    if let Some(wait) = config.models.max_wait_seconds {
        settings.max_wait = Duration::from_secs(wait);
    }
    Ok(settings)
}

/// `path` made absolute, without `.` and `..` components: paths built from it are compared
/// with paths git and the kernel give back (`--data-dir ../data` would otherwise name a
/// worktree git reports differently).
pub(crate) fn absolute(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut clean = PathBuf::new();
    for part in absolute.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                clean.pop();
            }
            other => clean.push(other),
        }
    }
    clean
}

/// `[secrets]` read now: each value, or why it cannot be had (a mission that names it then
/// fails before anything runs, saying so). A malformed entry is bad input at once.
pub(crate) fn workspace_settings(
    config: &Config,
    config_path: &Path,
) -> Result<WorkspaceSettings, AppError> {
    let mut settings = WorkspaceSettings {
        allow_unsandboxed: config.workspace.allow_unsandboxed,
        ..WorkspaceSettings::default()
    };
    settings.hidden_files.push(absolute(config_path));
    for (name, secret) in &config.secrets {
        if let Some(bad) = secret
            .repos
            .iter()
            .find(|entry| ScopedRepo::parse(entry).is_none())
        {
            return Err(AppError::bad_input(
                format!(
                    "{}: [secrets.{name}] repos: {bad:?} is neither `owner/name` nor an absolute path",
                    config_path.display()
                ),
                Some(format!(
                    "e.g. [secrets.{name}]\nrepos = [\"acme/textstats\", \"/srv/checkouts/textstats\"]"
                )),
            ));
        }
        match (&secret.registry, &secret.username) {
            (None, None) => {}
            (Some(registry), Some(username))
                if flightdeck_core::template::valid_egress(registry)
                    && !registry.starts_with("*.")
                    && !username.is_empty() =>
            {
                settings.registry_logins.insert(
                    name.clone(),
                    flightdeck_engine::RegistryLogin {
                        registry: registry.to_ascii_lowercase(),
                        username: username.clone(),
                    },
                );
            }
            _ => {
                return Err(AppError::bad_input(
                    format!(
                        "{}: [secrets.{name}] a registry login needs both `registry` (a host, or host:port) and `username`",
                        config_path.display()
                    ),
                    Some(format!(
                        "e.g. [secrets.{name}]\nenv = \"{name}\"\nregistry = \"ghcr.io\"\nusername = \"acme-bot\"\nrepos = [\"acme/textstats\"]"
                    )),
                ))
            }
        }
        let value = match (&secret.env, &secret.file) {
            (Some(var), None) => std::env::var(var)
                .map_err(|_| format!("the environment variable `{var}` is not set")),
            (None, Some(file)) => {
                let file = absolute(file);
                settings.hidden_files.push(file.clone());
                std::fs::read_to_string(&file)
                    .map(|text| text.trim_end_matches(['\n', '\r']).to_string())
                    .map_err(|e| format!("cannot read {}: {e}", file.display()))
            }
            _ => {
                return Err(AppError::bad_input(
                    format!(
                        "{}: [secrets.{name}] needs exactly one of `env` and `file`",
                        config_path.display()
                    ),
                    Some(format!("e.g. [secrets.{name}]\nenv = \"{name}\"")),
                ))
            }
        };
        let value = value.and_then(|v| {
            if v.trim().len() < MIN_SECRET_LEN {
                Err(format!(
                    "its value is shorter than {} characters, too short to be masked reliably in what flightdeck stores",
                    MIN_SECRET_LEN
                ))
            } else {
                Ok(v)
            }
        });
        settings.secret_values.insert(name.clone(), value);
    }
    Ok(settings)
}

#[cfg(test)]
mod quota_tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    fn quotas_of(text: &str) -> Result<Vec<flightdeck_core::quota::TeamQuota>, AppError> {
        let path = Path::new("/etc/fd/config.toml");
        quotas(&Config::parse(text, path)?, path)
    }

    const TEAMS: &str = "[teams]\n\"@acme/platform\" = [\"@alice\"]\n";

    #[test]
    fn a_quota_is_a_teams_limits_in_dollars_and_tokens() {
        let got = quotas_of(&format!(
            "{TEAMS}[quotas.\"@ACME/Platform\"]\nusd_per_month = 500.0\ntokens_per_month = 20000000\n"
        ))
        .unwrap();
        assert_eq!(
            got,
            [flightdeck_core::quota::TeamQuota {
                team: "@acme/platform".into(),
                usd_per_month: Some(500.0),
                tokens_per_month: Some(20_000_000),
            }]
        );
        assert!(quotas_of(TEAMS).unwrap().is_empty());
    }

    #[test]
    fn a_bad_quota_is_refused_naming_the_file_and_key_with_a_hint() {
        let cases = [
            (
                format!("{TEAMS}[quotas.\"@acme/nope\"]\nusd_per_month = 1.0\n"),
                "[quotas.\"@acme/nope\"]: no team \"@acme/nope\" in [teams]",
            ),
            (
                "[quotas.\"@acme/platform\"]\nusd_per_month = 1.0\n".to_string(),
                "no team \"@acme/platform\" in [teams]",
            ),
            (
                format!("{TEAMS}[quotas.\"@acme/platform\"]\nusd_per_month = -5.0\n"),
                "[quotas.\"@acme/platform\"] usd_per_month = -5: not a number of dollars",
            ),
            (
                format!("{TEAMS}[quotas.\"@acme/platform\"]\nusd_per_month = nan\n"),
                "usd_per_month = NaN",
            ),
            (
                format!("{TEAMS}[quotas.\"@acme/platform\"]\ntokens_per_month = -1\n"),
                "[quotas.\"@acme/platform\"] tokens_per_month = -1: not a number of tokens",
            ),
            (
                format!("{TEAMS}[quotas.\"@acme/platform\"]\n"),
                "[quotas.\"@acme/platform\"] limits nothing",
            ),
            (
                format!("{TEAMS}[quotas.\"@acme/platform\"]\nusd = 1.0\n"),
                "unknown field `usd`",
            ),
        ];
        for (text, says) in cases {
            let Err(e) = quotas_of(&text) else {
                panic!("accepted:\n{text}");
            };
            assert_eq!(e.kind, crate::ErrorKind::BadInput, "{text}");
            assert!(
                e.message.starts_with("/etc/fd/config.toml"),
                "{}",
                e.message
            );
            assert!(e.message.contains(says), "{text}: {}", e.message);
            assert!(e.hint.is_some(), "{text}");
        }
    }
}

#[cfg(test)]
mod registry_login_tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    fn settings_of(text: &str) -> Result<WorkspaceSettings, AppError> {
        let path = Path::new("/etc/fd/config.toml");
        workspace_settings(&Config::parse(text, path)?, path)
    }

    #[test]
    fn a_secret_with_registry_and_username_is_a_registry_login() {
        let settings = settings_of(
            "[secrets.GHCR]\nenv = \"FD_NO_SUCH_VARIABLE_FOR_THIS_TEST\"\nregistry = \"GHCR.io\"\nusername = \"acme-bot\"\n",
        )
        .unwrap();
        assert_eq!(
            settings.registry_logins.get("GHCR"),
            Some(&flightdeck_engine::RegistryLogin {
                registry: "ghcr.io".into(),
                username: "acme-bot".into(),
            })
        );
        let plain = settings_of("[secrets.KEY]\nenv = \"X\"\n").unwrap();
        assert!(plain.registry_logins.is_empty());
    }

    #[test]
    fn half_a_registry_login_or_a_bad_registry_is_refused() {
        for text in [
            "[secrets.GHCR]\nenv = \"X\"\nregistry = \"ghcr.io\"\n",
            "[secrets.GHCR]\nenv = \"X\"\nusername = \"bot\"\n",
            "[secrets.GHCR]\nenv = \"X\"\nregistry = \"https://ghcr.io\"\nusername = \"bot\"\n",
            "[secrets.GHCR]\nenv = \"X\"\nregistry = \"*.ghcr.io\"\nusername = \"bot\"\n",
            "[secrets.GHCR]\nenv = \"X\"\nregistry = \"ghcr.io\"\nusername = \"\"\n",
        ] {
            let Err(e) = settings_of(text) else {
                panic!("accepted:\n{text}");
            };
            assert_eq!(e.kind, crate::ErrorKind::BadInput, "{text}");
            assert!(
                e.message.starts_with("/etc/fd/config.toml"),
                "{}",
                e.message
            );
            assert!(e.message.contains("[secrets.GHCR]"), "{}", e.message);
            assert!(
                e.hint.as_deref().unwrap_or("").contains("registry = "),
                "{text}"
            );
        }
    }
}
