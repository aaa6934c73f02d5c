//! Everything a command needs from its flags, environment and config: the data directory,
//! the installation config, the acting identity, and (opened on demand) the store and engine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flightdeck_engine::{
    Engine, EngineConfig, ModelSettings, Observer, ProviderKind, ProviderSettings, SystemClock,
    WorkerId,
};
use flightdeck_models::{ModelRef, Pricing};
use flightdeck_store::{ArtifactStore, EventStore, FsArtifactStore};
use serde::Deserialize;

use crate::cli::Global;
use crate::error::CliError;

/// Timeout of a `run` step that sets none.
const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(3600);

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
}

/// `[secrets.NAME]`: where a secret's value comes from (exactly one of the two).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretConfig {
    /// An environment variable of the flightdeck process.
    pub env: Option<String>,
    /// A file (trailing newlines are not part of the value).
    pub file: Option<PathBuf>,
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

pub struct Context {
    pub global: Global,
    pub data_dir: PathBuf,
    pub config: Config,
    /// `[providers]`, `[pricing]` and `[models]`, checked.
    pub models: ModelSettings,
    /// `[secrets]` read, and the files sandboxes hide.
    pub workspace: flightdeck_engine::WorkspaceSettings,
}

impl Context {
    pub fn new(global: Global) -> Result<Context, CliError> {
        let data_dir = match &global.data_dir {
            Some(dir) => absolute(dir),
            None => default_data_dir()?,
        };
        let config_path = global
            .config
            .clone()
            .unwrap_or_else(|| data_dir.join("config.toml"));
        let config = match std::fs::read_to_string(&config_path) {
            Ok(text) => toml::from_str(&text).map_err(|e| {
                let at = e
                    .span()
                    .map(|s| {
                        let (line, column) = flightdeck_core::template::line_column(&text, s.start);
                        format!(":{line}:{column}")
                    })
                    .unwrap_or_default();
                CliError::bad_input(
                    format!("{}{at}: {}", config_path.display(), e.message().trim()),
                    Some(
                        "the config format is described in flightdeck's docs/reference/config.md"
                            .to_string(),
                    ),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && global.config.is_none() => {
                Config::default()
            }
            Err(e) => {
                return Err(CliError::bad_input(
                    format!("cannot read config {}: {e}", config_path.display()),
                    Some("--config and FLIGHTDECK_CONFIG name an existing file".to_string()),
                ))
            }
        };
        let models = model_settings(&config, &config_path)?;
        let workspace = workspace_settings(&config, &config_path)?;
        Ok(Context {
            global,
            data_dir,
            config,
            models,
            workspace,
        })
    }

    pub fn json(&self) -> bool {
        self.global.json
    }

    /// Who is acting: `--as`, `FLIGHTDECK_USER`, the config's default, git's user.email, or
    /// the login name.
    pub fn identity(&self, repo: Option<&Path>) -> Result<String, CliError> {
        if let Some(id) = self
            .global
            .identity
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            return Ok(id.to_string());
        }
        if let Some(id) = self
            .config
            .identity
            .default
            .as_deref()
            .filter(|s| !s.is_empty())
        {
            return Ok(id.to_string());
        }
        let mut git = std::process::Command::new("git");
        if let Some(repo) = repo {
            git.arg("-C").arg(repo);
        }
        if let Ok(out) = git.args(["config", "user.email"]).output() {
            let email = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if out.status.success() && !email.is_empty() {
                return Ok(email);
            }
        }
        if let Some(user) = std::env::var("USER").ok().filter(|u| !u.is_empty()) {
            return Ok(user);
        }
        Err(CliError::bad_input(
            "cannot tell who you are",
            Some(
                "pass --as IDENTITY, set FLIGHTDECK_USER, or set [identity].default in config.toml"
                    .to_string(),
            ),
        ))
    }

    pub fn database_url(&self) -> String {
        self.global.database_url.clone().unwrap_or_else(|| {
            format!("sqlite://{}", self.data_dir.join("flightdeck.db").display())
        })
    }

    /// The SQLite file the database URL names, if it names one.
    fn sqlite_path(&self) -> Option<PathBuf> {
        let url = self.database_url();
        url.strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .map(PathBuf::from)
    }

    /// Whether there is a store to read yet (commands that only read do not create one).
    pub fn store_exists(&self) -> bool {
        self.sqlite_path().is_none_or(|p| p.exists())
    }

    pub async fn store(&self) -> Result<Arc<dyn EventStore>, CliError> {
        Ok(flightdeck_store::open(&self.database_url()).await?)
    }

    /// The store and the artifact store that goes with it (small artifacts live in the
    /// store's database and become durable with its appends).
    pub async fn stores(&self) -> Result<(Arc<dyn EventStore>, Arc<dyn ArtifactStore>), CliError> {
        Ok(flightdeck_store::open_with_artifacts(
            &self.database_url(),
            &self.data_dir.join("artifacts"),
        )
        .await?)
    }

    /// The artifacts, for reading: the store's if there is one (which does not create it).
    pub async fn artifacts(&self) -> Result<Arc<dyn ArtifactStore>, CliError> {
        if !self.store_exists() {
            return Ok(Arc::new(FsArtifactStore::new(
                self.data_dir.join("artifacts"),
            )));
        }
        Ok(self.stores().await?.1)
    }

    pub async fn engine(&self, observer: Arc<dyn Observer>) -> Result<Engine, CliError> {
        let (store, artifacts) = self.stores().await?;
        Ok(Engine::new(EngineConfig {
            store,
            artifacts,
            clock: Arc::new(SystemClock),
            observer,
            workspaces_dir: self.data_dir.join("workspaces"),
            default_step_timeout: DEFAULT_STEP_TIMEOUT,
            worker: WorkerId::current(),
            teams: flightdeck_policy::Teams::new(self.config.teams.clone()),
            models: self.models.clone(),
            sleeper: Arc::new(flightdeck_models::TokioSleeper),
            secrets: self.secrets(),
            replay: None,
            workspace: self.workspace.clone(),
        }))
    }

    /// The API keys of every provider this installation knows (built in or configured), to
    /// be redacted wherever they might show up.
    fn secrets(&self) -> flightdeck_engine::Secrets {
        let mut vars: Vec<String> = ["openai", "anthropic"]
            .iter()
            .filter_map(|name| self.models.provider(name))
            .chain(self.models.providers.values().cloned())
            .filter_map(|p| p.api_key_env)
            .collect();
        vars.sort();
        vars.dedup();
        // The installation's [secrets] are masked everywhere too, whichever mission uses them.
        let configured = self
            .workspace
            .secret_values
            .iter()
            .filter_map(|(name, value)| Some((name.clone(), value.as_ref().ok()?.clone())));
        flightdeck_engine::Secrets::new(
            vars.into_iter()
                .filter_map(|var| std::env::var(&var).ok().map(|value| (var, value)))
                .chain(configured),
        )
    }

    /// An engine over an existing store, or the error a read of an unknown mission gives.
    pub async fn existing_engine(
        &self,
        mission: &str,
        observer: Arc<dyn Observer>,
    ) -> Result<Engine, CliError> {
        if !self.store_exists() {
            return Err(CliError::bad_input(
                format!("no mission `{mission}`: there are no missions in {} yet", self.data_dir.display()),
                Some("start one with `flightdeck run TEMPLATE`, or point --data-dir at another data directory".to_string()),
            ));
        }
        self.engine(observer).await
    }
}

/// The model settings of the config, every value checked; errors name the config file and
/// the section at fault.
fn model_settings(config: &Config, path: &Path) -> Result<ModelSettings, CliError> {
    let file = path.display();
    let bad = |what: String, hint: &str| {
        CliError::bad_input(format!("{file}: {what}"), Some(hint.to_string()))
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

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn default_data_dir() -> Result<PathBuf, CliError> {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(absolute(&PathBuf::from(xdg).join("flightdeck")));
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(home).join(".local/share/flightdeck"));
    }
    Err(CliError::bad_input(
        "cannot find a data directory: neither XDG_DATA_HOME nor HOME is set",
        Some("pass --data-dir DIR or set FLIGHTDECK_DATA_DIR".to_string()),
    ))
}

/// `[secrets]` read now: each value, or why it cannot be had (a mission that names it then
/// fails before anything runs, saying so). A malformed entry is bad input at once.
fn workspace_settings(
    config: &Config,
    config_path: &Path,
) -> Result<flightdeck_engine::WorkspaceSettings, CliError> {
    let mut settings = flightdeck_engine::WorkspaceSettings::default();
    settings.hidden_files.push(absolute(config_path));
    for (name, secret) in &config.secrets {
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
                return Err(CliError::bad_input(
                    format!(
                        "{}: [secrets.{name}] needs exactly one of `env` and `file`",
                        config_path.display()
                    ),
                    Some(format!("e.g. [secrets.{name}]\nenv = \"{name}\"")),
                ))
            }
        };
        let value = value.and_then(|v| {
            if v.trim().len() < flightdeck_engine::MIN_SECRET_LEN {
                Err(format!(
                    "its value is shorter than {} characters, too short to be masked reliably in what flightdeck stores",
                    flightdeck_engine::MIN_SECRET_LEN
                ))
            } else {
                Ok(v)
            }
        });
        settings.secret_values.insert(name.clone(), value);
    }
    Ok(settings)
}
