//! Which models a mission may call and how to reach them: the template's `[model]` (or a
//! step's own `model`), the installation's `[providers]` and `[pricing]`, and the scripts of
//! `scripted:` models pinned at creation.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use flightdeck_core::template::{Step, Template};
use flightdeck_models::{
    AnthropicConfig, AnthropicProvider, ApiKey, MaxTokensField, ModelRef, OpenAiConfig,
    OpenAiProvider, Pricing, Provider, Script, DEFAULT_MAX_OUTPUT_TOKENS,
};

use crate::error::EngineError;

/// The wire protocol of a provider (`[providers.NAME] kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// Chat Completions (OpenAI, vLLM, Ollama, llama.cpp server, LiteLLM, …).
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
}

/// How to reach one provider.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderSettings {
    pub kind: ProviderKind,
    pub base_url: String,
    /// The environment variable holding the API key; `None` for servers that need none.
    pub api_key_env: Option<String>,
    /// Retries of one call on retryable errors before falling back.
    pub max_retries: u32,
    /// The limit for one call.
    pub timeout: Duration,
    /// `max_tokens` instead of `max_completion_tokens` (older compatible servers).
    pub legacy_max_tokens: bool,
}

impl ProviderSettings {
    /// The built-in `openai` and `anthropic` providers, with their public URLs.
    pub fn builtin(name: &str) -> Option<ProviderSettings> {
        let (kind, base_url, env) = match name {
            "openai" => (
                ProviderKind::OpenAi,
                flightdeck_models::openai::OPENAI_BASE_URL,
                "OPENAI_API_KEY",
            ),
            "anthropic" => (
                ProviderKind::Anthropic,
                flightdeck_models::anthropic::ANTHROPIC_BASE_URL,
                "ANTHROPIC_API_KEY",
            ),
            _ => return None,
        };
        Some(ProviderSettings {
            kind,
            base_url: base_url.to_string(),
            api_key_env: Some(env.to_string()),
            max_retries: 2,
            timeout: Duration::from_secs(120),
            legacy_max_tokens: false,
        })
    }
}

/// The installation's model settings (`[providers]`, `[pricing]`, `[models]` of config.toml).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSettings {
    /// Providers by name; `openai` and `anthropic` exist without an entry.
    pub providers: BTreeMap<String, ProviderSettings>,
    /// Prices by model ref (`openai:gpt-4.1-2025-04-14`).
    pub pricing: BTreeMap<String, Pricing>,
    /// The most one model call may wait in total between retries (the route then fails).
    pub max_wait: Duration,
}

impl Default for ModelSettings {
    fn default() -> ModelSettings {
        ModelSettings {
            providers: BTreeMap::new(),
            pricing: BTreeMap::new(),
            max_wait: Duration::from_secs(300),
        }
    }
}

impl ModelSettings {
    pub fn provider(&self, name: &str) -> Option<ProviderSettings> {
        self.providers
            .get(name)
            .cloned()
            .or_else(|| ProviderSettings::builtin(name))
    }

    /// The price of `model`: the config's, else the script's own `[pricing]`.
    pub(crate) fn pricing_of(&self, model: &ModelRef, script: Option<&Script>) -> Option<Pricing> {
        self.pricing
            .get(&model.to_string())
            .cloned()
            .or_else(|| script.and_then(|s| s.pricing))
    }
}

/// The context window assumed when the template names none.
const DEFAULT_CONTEXT_TOKENS: u64 = 128_000;

/// The models an agent step calls, pinned one first, and how.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StepModels {
    pub(crate) refs: Vec<ModelRef>,
    pub(crate) temperature: Option<f64>,
    pub(crate) max_output_tokens: u64,
    pub(crate) allow_snapshot_mismatch: bool,
    /// The context window an agent's conversation is kept within.
    pub(crate) context_tokens: u64,
}

impl StepModels {
    /// A step's own `model` replaces the template's pin and its fallbacks.
    pub(crate) fn of(
        template: &Template,
        step_model: Option<&str>,
        file: &str,
    ) -> Result<StepModels, EngineError> {
        let spec = template.model.as_ref();
        let refs: Vec<&str> = match (step_model, spec) {
            (Some(model), _) => vec![model],
            (None, Some(spec)) => std::iter::once(spec.pin.as_str())
                .chain(spec.fallback.iter().map(String::as_str))
                .collect(),
            (None, None) => {
                return Err(EngineError::ModelConfig {
                    message: format!("{file}: an agent step needs a model, and the template has no [model]"),
                    hint: Some("add [model] pin = \"<provider>:<model id>\" (or \"scripted:<path>\"), or give the step its own `model`".into()),
                })
            }
        };
        let refs = refs
            .into_iter()
            .map(|r| {
                ModelRef::parse(r).map_err(|e| EngineError::ModelConfig {
                    message: format!("{file}: {e}"),
                    hint: None,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(StepModels {
            refs,
            temperature: spec.and_then(|s| s.temperature),
            max_output_tokens: spec
                .and_then(|s| s.max_output_tokens)
                .unwrap_or(DEFAULT_MAX_OUTPUT_TOKENS),
            allow_snapshot_mismatch: spec.is_some_and(|s| s.allow_snapshot_mismatch),
            context_tokens: spec
                .and_then(|s| s.context_tokens)
                .unwrap_or(DEFAULT_CONTEXT_TOKENS),
        })
    }
}

/// Every model ref a template may call (its pin, fallbacks and steps' own models), in order,
/// without repeats.
pub(crate) fn template_models(template: &Template) -> Result<Vec<ModelRef>, EngineError> {
    let mut refs: Vec<ModelRef> = Vec::new();
    let mut wanted: Vec<Option<&str>> = template
        .steps
        .iter()
        .filter_map(|step| match step {
            Step::Agent { model, .. } => Some(model.as_deref()),
            Step::Run { .. } => None,
        })
        .collect();
    // Review and acceptance fix rounds call the template's model.
    if template.model.is_some() {
        wanted.push(None);
    }
    for model in wanted {
        for r in StepModels::of(template, model, &template.file)?.refs {
            if !refs.contains(&r) {
                refs.push(r);
            }
        }
    }
    Ok(refs)
}

/// Checks, before anything is recorded, that every model the template may call can be
/// called: a known provider, its API key in the environment, a readable script, and a price
/// when the budget limits `usd`. Returns the scripts' sources by model ref, to be pinned.
///
/// A script is read as the base commit has it, like the template (a repository fetched from
/// a URL has no working tree); one the commit does not have is read from the checkout.
pub(crate) fn check_models(
    template: &Template,
    repo_root: &Path,
    base_commit: &str,
    settings: &ModelSettings,
    replaying: bool,
) -> Result<BTreeMap<String, String>, EngineError> {
    let mut scripts = BTreeMap::new();
    let usd_limited = template.budget.usd.is_some();
    for model in template_models(template)? {
        let script = match &model {
            ModelRef::Scripted { path } => {
                let bad_path = |message: String| EngineError::ModelConfig {
                    message: format!("{}: {message}", template.file),
                    hint: Some(SCRIPT_PATH_HINT.into()),
                };
                let source = match script_at_commit(repo_root, base_commit, path) {
                    Some(source) => source.map_err(bad_path)?,
                    None => {
                        let file = resolve_script(repo_root, path).map_err(bad_path)?;
                        std::fs::read_to_string(&file).map_err(|e| {
                            bad_path(format!(
                                "cannot read the scripted model {}: {e}",
                                file.display()
                            ))
                        })?
                    }
                };
                let script =
                    Script::parse(&source, path).map_err(|e| EngineError::ModelConfig {
                        message: e.to_string(),
                        hint: Some(
                            "the scripted model format is described in flightdeck's docs/reference/scripted-model.md"
                                .into(),
                        ),
                    })?;
                scripts.insert(model.to_string(), source);
                Some(script)
            }
            ModelRef::Remote { provider, .. } => {
                let Some(settings) = settings.provider(provider) else {
                    return Err(EngineError::ModelConfig {
                        message: format!("{}: model `{model}` names provider `{provider}`, which is not configured", template.file),
                        hint: Some(format!("add [providers.{provider}] with kind and base_url to config.toml (openai and anthropic are built in)")),
                    });
                };
                // Build it now: a missing key or a bad setting shows before anything runs.
                remote_provider(provider, &settings, replaying)?;
                None
            }
        };
        if usd_limited && settings.pricing_of(&model, script.as_ref()).is_none() {
            return Err(EngineError::ModelConfig {
                message: format!("{}: the budget limits usd, but model `{model}` has no price, so its spend cannot be bounded", template.file),
                hint: Some(format!("add [pricing.\"{model}\"] input_per_mtok = … and output_per_mtok = … to config.toml")),
            });
        }
    }
    Ok(scripts)
}

/// The script `path` names as `commit` of `repo_root` has it: `None` when the commit has no
/// such file (or the path is outside the repository), an error when it is not text.
fn script_at_commit(repo_root: &Path, commit: &str, path: &str) -> Option<Result<String, String>> {
    let named = Path::new(path);
    let relative = if named.is_absolute() {
        named.strip_prefix(repo_root).ok()?
    } else {
        named
    };
    let relative = relative.to_str()?;
    let bytes = flightdeck_workspace::read_at_commit(repo_root, commit, relative)
        .ok()
        .flatten()?;
    Some(
        String::from_utf8(bytes)
            .map_err(|_| format!("the scripted model {path} at commit {commit} is not UTF-8 text")),
    )
}

/// The file a `scripted:<path>` model names: relative to the repository root or absolute,
/// and, once resolved (symlinks followed), inside the repository. A script outside it would
/// let a template read any file flightdeck can read into a mission (its bytes are pinned in
/// `mission.created`). The error says which file and why.
pub fn resolve_script(repo_root: &Path, path: &str) -> Result<std::path::PathBuf, String> {
    let named = Path::new(path);
    let file = if named.is_absolute() {
        named.to_path_buf()
    } else {
        repo_root.join(named)
    };
    let resolved = std::fs::canonicalize(&file)
        .map_err(|e| format!("cannot read the scripted model {}: {e}", file.display()))?;
    let root = std::fs::canonicalize(repo_root)
        .map_err(|e| format!("cannot resolve the repository {}: {e}", repo_root.display()))?;
    if !resolved.starts_with(&root) {
        return Err(format!(
            "the scripted model {} resolves to {}, outside the repository {}",
            file.display(),
            resolved.display(),
            root.display()
        ));
    }
    Ok(resolved)
}

/// The hint for a `scripted:<path>` that cannot be used.
pub const SCRIPT_PATH_HINT: &str = "a `scripted:<path>` model names a TOML script inside the repository (relative to its root, or absolute), not a symlink out of it";

/// `replaying`: the provider only encodes requests (a replay sends nothing), so a missing
/// API key does not matter.
pub(crate) fn remote_provider(
    name: &str,
    config: &ProviderSettings,
    replaying: bool,
) -> Result<Arc<dyn Provider>, EngineError> {
    let key = match &config.api_key_env {
        Some(var) if replaying => {
            Some(ApiKey::from_env_var(var).unwrap_or_else(|_| ApiKey::new("replay")))
        }
        Some(var) => Some(
            ApiKey::from_env_var(var).map_err(|_| EngineError::ModelConfig {
                message: format!("provider `{name}` needs an API key in ${var}, which is not set"),
                hint: Some(format!(
                    "export {var}=…, or set api_key_env in [providers.{name}] of config.toml"
                )),
            })?,
        ),
        None => None,
    };
    let model_error = |e: flightdeck_models::ModelError| EngineError::ModelConfig {
        message: e.to_string(),
        hint: None,
    };
    Ok(match config.kind {
        ProviderKind::OpenAi => Arc::new(
            OpenAiProvider::new(OpenAiConfig {
                name: name.to_string(),
                base_url: config.base_url.clone(),
                api_key: key,
                timeout: config.timeout,
                max_tokens_field: if config.legacy_max_tokens {
                    MaxTokensField::MaxTokens
                } else {
                    MaxTokensField::MaxCompletionTokens
                },
            })
            .map_err(model_error)?,
        ),
        ProviderKind::Anthropic => {
            let key = key.ok_or_else(|| EngineError::ModelConfig {
                message: format!("provider `{name}` (anthropic) needs api_key_env"),
                hint: Some(format!(
                    "set api_key_env in [providers.{name}] of config.toml"
                )),
            })?;
            Arc::new(
                AnthropicProvider::new(AnthropicConfig {
                    name: name.to_string(),
                    base_url: config.base_url.clone(),
                    api_key: key,
                    timeout: config.timeout,
                })
                .map_err(model_error)?,
            )
        }
    })
}
