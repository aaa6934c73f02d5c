//! Mission templates: `.flightdeck/missions/NAME.toml` (CONTRACT.md).
//!
//! Parsing is strict: an unknown key, a bad value, a step that is neither `run` nor `agent`, or
//! a `{{placeholder}}` that names no param is an error that names the file, the key and the
//! line. Rendering resolves params (defaults, required ones) and substitutes them; in `run`
//! and acceptance commands a value is shell-quoted for where it stands (`{{NAME | raw}}`
//! inserts it as given), so a param cannot add commands.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::MissionId;

/// Why a template cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    #[error("{file}:{line}:{column}: {message}")]
    Parse {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}: {field}: {message}")]
    Invalid {
        file: String,
        field: String,
        message: String,
    },
    #[error("{file}: `{{{{{placeholder}}}}}` in {field} names no param (declared: {declared})")]
    UnknownPlaceholder {
        file: String,
        field: String,
        placeholder: String,
        declared: String,
    },
    #[error("{file}: required param `{param}` was not given")]
    MissingParam { file: String, param: String },
    #[error("{file}: unknown param `{param}` (declared: {declared})")]
    UnknownParam {
        file: String,
        param: String,
        declared: String,
    },
}

/// One declared parameter.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    #[serde(default)]
    pub required: bool,
    pub default: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub pin: String,
    #[serde(default)]
    pub fallback: Vec<String>,
    pub temperature: Option<f64>,
    pub max_output_tokens: Option<u64>,
    /// Accept a served model id that is a different dated snapshot of the pinned one.
    #[serde(default)]
    pub allow_snapshot_mismatch: bool,
    /// The model's context window in tokens; an agent's conversation is compacted before it
    /// would fill it (default 128000).
    pub context_tokens: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSpec {
    pub usd: Option<f64>,
    pub tokens: Option<u64>,
    pub tool_calls: Option<u64>,
    pub model_calls: Option<u64>,
    pub wall_seconds: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakersSpec {
    pub repeated_action: Option<u32>,
    pub consecutive_failures: Option<u32>,
    pub no_progress: Option<u32>,
    pub provider_errors: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Runtime {
    #[default]
    Local,
    LocalUnsandboxed,
    Docker,
}

impl Runtime {
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Local => "local",
            Runtime::LocalUnsandboxed => "local-unsandboxed",
            Runtime::Docker => "docker",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    #[default]
    None,
    Setup,
    On,
}

impl Network {
    pub fn as_str(self) -> &'static str {
        match self {
            Network::None => "none",
            Network::Setup => "setup",
            Network::On => "on",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolchainMode {
    #[default]
    Warn,
    Enforce,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceSpec {
    #[serde(default)]
    pub runtime: Runtime,
    #[serde(default)]
    pub network: Network,
    #[serde(default)]
    pub secrets: Vec<String>,
    #[serde(default)]
    pub toolchain: ToolchainMode,
    /// Memory limit per command, in MiB (cgroups; recorded when the host cannot enforce it).
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// Processes (and threads) per command; a fork bomb stops here.
    #[serde(default = "default_max_processes")]
    pub max_processes: Option<u64>,
    /// Hosts the workspace may reach beyond flightdeck (`crates.io`, `registry:5000`,
    /// `*.pypi.org`). In this build they govern the registries devcontainer features are
    /// fetched from; nothing else is reached without being listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<String>,
}

/// Whether `pattern` is an egress entry: a host name (letters, digits, `-`, `.`), or `*.`
/// and one, optionally with `:port`; an IPv4 address is a host name here.
pub fn valid_egress(pattern: &str) -> bool {
    let (host, port) = match pattern.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (pattern, None),
    };
    let host = host.strip_prefix("*.").unwrap_or(host);
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    port_ok
        && !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
        })
}

/// Enough for parallel builds and test runners on a large machine; far below what takes a
/// host down.
pub const DEFAULT_MAX_PROCESSES: u64 = 4096;

fn default_max_processes() -> Option<u64> {
    Some(DEFAULT_MAX_PROCESSES)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentRole {
    Planner,
    Coder,
    Reviewer,
}

impl AgentRole {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentRole::Planner => "planner",
            AgentRole::Coder => "coder",
            AgentRole::Reviewer => "reviewer",
        }
    }
}

/// A `[[steps]]` entry as written: exactly one of `run` and `agent`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    pub run: Option<String>,
    pub agent: Option<AgentRole>,
    pub task: Option<String>,
    pub model: Option<String>,
    pub max_rounds: Option<u32>,
    /// Per-step command timeout (`run` steps); the workspace default applies otherwise.
    pub timeout_seconds: Option<u64>,
    /// The secrets this `run` step gets (names from `[workspace] secrets`); without it, all of
    /// them, unless an agent step comes before it (then none). Agent steps' commands never get
    /// secrets.
    pub secrets: Option<Vec<String>>,
}

/// A step after validation.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Run {
        command: String,
        timeout_seconds: Option<u64>,
        /// `None`: every secret of `[workspace] secrets`.
        secrets: Option<Vec<String>>,
    },
    Agent {
        role: AgentRole,
        task: Option<String>,
        model: Option<String>,
        max_rounds: Option<u32>,
    },
}

impl Step {
    pub fn kind(&self) -> crate::event::StepKind {
        match self {
            Step::Run { .. } => crate::event::StepKind::Run,
            Step::Agent { .. } => crate::event::StepKind::Agent,
        }
    }

    /// One line for people: the command, or the role and task.
    pub fn describe(&self) -> String {
        match self {
            Step::Run { command, .. } => command.clone(),
            Step::Agent { role, task, .. } => match task {
                Some(task) => format!("{} agent: {task}", role.as_str()),
                None => format!("{} agent", role.as_str()),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptanceSpec {
    #[serde(default)]
    pub commands: Vec<String>,
    pub retries: Option<u32>,
    pub max_changed_files: Option<u64>,
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub forbid_test_deletion: bool,
    pub fix_rounds: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishSpec {
    pub title: Option<String>,
}

/// The file as written.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateFile {
    description: Option<String>,
    owner: Option<String>,
    goal: Option<String>,
    #[serde(default)]
    params: BTreeMap<String, ParamSpec>,
    model: Option<ModelSpec>,
    #[serde(default)]
    budget: BudgetSpec,
    #[serde(default)]
    breakers: BreakersSpec,
    #[serde(default)]
    workspace: WorkspaceSpec,
    #[serde(default)]
    steps: Vec<StepSpec>,
    #[serde(default)]
    acceptance: AcceptanceSpec,
    #[serde(default)]
    publish: PublishSpec,
}

/// A validated template. Strings may still hold `{{placeholders}}`; see [`Template::render`].
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// The name missions show: the file stem.
    pub name: String,
    /// Where it was read from, for messages.
    pub file: String,
    pub description: Option<String>,
    pub owner: Option<String>,
    pub goal: Option<String>,
    pub params: BTreeMap<String, ParamSpec>,
    pub model: Option<ModelSpec>,
    pub budget: BudgetSpec,
    pub breakers: BreakersSpec,
    pub workspace: WorkspaceSpec,
    pub steps: Vec<Step>,
    pub acceptance: AcceptanceSpec,
    pub publish: PublishSpec,
}

/// A template with every placeholder substituted, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedTemplate {
    pub template: Template,
    /// Every param's value, defaults included: what `mission.created` records.
    pub params: BTreeMap<String, String>,
}

/// The placeholder that always exists.
const MISSION_PLACEHOLDER: &str = "mission";

impl Template {
    /// Parses and validates `source`. `name` is the template's name (file stem) and `file`
    /// the path to name in errors.
    pub fn parse(name: &str, file: &str, source: &str) -> Result<Template, TemplateError> {
        let raw: TemplateFile = toml::from_str(source).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|span| line_column(source, span.start))
                .unwrap_or((0, 0));
            TemplateError::Parse {
                file: file.to_string(),
                line,
                column,
                message: match e.span() {
                    Some(span) if e.message().starts_with("invalid ") => {
                        value_error(source, span.start, &toml_message(&e, source))
                    }
                    _ => toml_message(&e, source),
                },
            }
        })?;
        let invalid = |field: String, message: &str| TemplateError::Invalid {
            file: file.to_string(),
            field,
            message: message.to_string(),
        };
        if raw.steps.is_empty() {
            return Err(invalid(
                "steps".into(),
                "the template has no [[steps]]; add at least one `run` or `agent` step",
            ));
        }
        let mut steps = Vec::with_capacity(raw.steps.len());
        for (i, spec) in raw.steps.into_iter().enumerate() {
            let field = format!("steps[{i}]");
            let step = match (spec.run, spec.agent) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        field,
                        "a step has either `run` or `agent`, not both",
                    ))
                }
                (None, None) => {
                    return Err(invalid(
                        field,
                        "a step needs `run = \"…\"` or `agent = \"planner|coder|reviewer\"`",
                    ))
                }
                (Some(command), None) => {
                    if let Some(names) = &spec.secrets {
                        if let Some(unknown) =
                            names.iter().find(|n| !raw.workspace.secrets.contains(n))
                        {
                            return Err(invalid(
                                format!("{field}.secrets"),
                                &format!("`{unknown}` is not in [workspace] secrets; declare it there first"),
                            ));
                        }
                    }
                    if spec.task.is_some() || spec.model.is_some() || spec.max_rounds.is_some() {
                        return Err(invalid(
                            field,
                            "`task`, `model` and `max_rounds` belong to `agent` steps",
                        ));
                    }
                    if command.trim().is_empty() {
                        return Err(invalid(format!("{field}.run"), "the command is empty"));
                    }
                    Step::Run {
                        command,
                        timeout_seconds: spec.timeout_seconds,
                        secrets: spec.secrets,
                    }
                }
                (None, Some(_)) if spec.secrets.is_some() => {
                    return Err(invalid(
                        format!("{field}.secrets"),
                        "agent steps get no secrets (a model could print them); give them to a `run` step",
                    ))
                }
                (None, Some(role)) => Step::Agent {
                    role,
                    task: spec.task,
                    model: spec.model,
                    max_rounds: spec.max_rounds,
                },
            };
            steps.push(step);
        }
        for (param, spec) in &raw.params {
            if !is_identifier(param) {
                return Err(invalid(
                    format!("params.{param}"),
                    "param names are letters, digits, `_` and `-`",
                ));
            }
            if param == MISSION_PLACEHOLDER {
                return Err(invalid(
                    format!("params.{param}"),
                    "`mission` is reserved for the mission id",
                ));
            }
            if spec.required && spec.default.is_some() {
                return Err(invalid(
                    format!("params.{param}"),
                    "a param is either `required` or has a `default`, not both",
                ));
            }
        }
        for (i, secret) in raw.workspace.secrets.iter().enumerate() {
            let env_name = !secret.is_empty()
                && !secret.starts_with(|c: char| c.is_ascii_digit())
                && secret
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !env_name {
                return Err(invalid(
                    format!("workspace.secrets[{i}]"),
                    "a secret is given to commands as an environment variable: letters, digits and `_`, not starting with a digit",
                ));
            }
        }
        for (i, entry) in raw.workspace.egress.iter().enumerate() {
            if !valid_egress(entry) {
                return Err(invalid(
                    format!("workspace.egress[{i}]"),
                    "an egress entry is a host name, optionally `*.` before it and `:port` after it (e.g. \"ghcr.io\", \"*.pypi.org\", \"registry.local:5000\")",
                ));
            }
        }
        if raw.workspace.memory_mb == Some(0) || raw.workspace.memory_mb > Some(1 << 30) {
            return Err(invalid(
                "workspace.memory_mb".into(),
                "must be between 1 and 1073741824 (MiB)",
            ));
        }
        if raw.workspace.max_processes == Some(0) {
            return Err(invalid(
                "workspace.max_processes".into(),
                "must be at least 1",
            ));
        }
        // NaN passes every comparison and infinity never runs out: a limit that is not a
        // finite amount of zero or more would leave the mission unbounded without saying so.
        let amounts = [
            ("budget.usd", raw.budget.usd),
            (
                "model.temperature",
                raw.model.as_ref().and_then(|m| m.temperature),
            ),
        ];
        for (field, amount) in amounts {
            if let Some(amount) = amount.filter(|a| !(a.is_finite() && *a >= 0.0)) {
                return Err(invalid(
                    field.into(),
                    &format!("`{amount}` is not a finite number of zero or more"),
                ));
            }
        }
        let template = Template {
            name: name.to_string(),
            file: file.to_string(),
            description: raw.description,
            owner: raw.owner,
            goal: raw.goal,
            params: raw.params,
            model: raw.model,
            budget: raw.budget,
            breakers: raw.breakers,
            workspace: raw.workspace,
            steps,
            acceptance: raw.acceptance,
            publish: raw.publish,
        };
        template.check_placeholders()?;
        Ok(template)
    }

    /// Every field that may hold placeholders, with its name for messages.
    fn templated_fields(&self) -> Vec<(String, &String)> {
        let mut fields = Vec::new();
        if let Some(goal) = &self.goal {
            fields.push(("goal".to_string(), goal));
        }
        for (i, step) in self.steps.iter().enumerate() {
            match step {
                Step::Run { command, .. } => fields.push((format!("steps[{i}].run"), command)),
                Step::Agent {
                    task: Some(task), ..
                } => fields.push((format!("steps[{i}].task"), task)),
                Step::Agent { .. } => {}
            }
        }
        for (i, command) in self.acceptance.commands.iter().enumerate() {
            fields.push((format!("acceptance.commands[{i}]"), command));
        }
        if let Some(title) = &self.publish.title {
            fields.push(("publish.title".to_string(), title));
        }
        fields
    }

    fn check_placeholders(&self) -> Result<(), TemplateError> {
        for (field, text) in self.templated_fields() {
            for written in placeholders(text) {
                let (placeholder, filter) = split_filter(written);
                if let Some(filter) = filter.filter(|filter| *filter != RAW_FILTER) {
                    return Err(TemplateError::Invalid {
                        file: self.file.clone(),
                        field,
                        message: format!(
                            "`{{{{{written}}}}}` has an unknown filter `{filter}` (the only filter is `{RAW_FILTER}`, which inserts the value unquoted)"
                        ),
                    });
                }
                if placeholder != MISSION_PLACEHOLDER && !self.params.contains_key(placeholder) {
                    return Err(TemplateError::UnknownPlaceholder {
                        file: self.file.clone(),
                        field,
                        placeholder: placeholder.to_string(),
                        declared: self.declared_params(),
                    });
                }
            }
        }
        Ok(())
    }

    fn declared_params(&self) -> String {
        if self.params.is_empty() {
            "none".to_string()
        } else {
            self.params
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        }
    }

    /// Resolves `given` against the declared params (defaults applied; unknown and missing
    /// required params are errors) without substituting anything.
    pub fn resolve_params(
        &self,
        given: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, TemplateError> {
        if let Some(unknown) = given.keys().find(|k| !self.params.contains_key(*k)) {
            return Err(TemplateError::UnknownParam {
                file: self.file.clone(),
                param: unknown.clone(),
                declared: self.declared_params(),
            });
        }
        let mut resolved = BTreeMap::new();
        for (name, spec) in &self.params {
            match given.get(name).or(spec.default.as_ref()) {
                Some(value) => {
                    resolved.insert(name.clone(), value.clone());
                }
                None if spec.required => {
                    return Err(TemplateError::MissingParam {
                        file: self.file.clone(),
                        param: name.clone(),
                    })
                }
                None => {
                    resolved.insert(name.clone(), String::new());
                }
            }
        }
        Ok(resolved)
    }

    /// Substitutes resolved params and the mission id into every templated field.
    pub fn render(
        &self,
        given: &BTreeMap<String, String>,
        mission: &MissionId,
    ) -> Result<RenderedTemplate, TemplateError> {
        let params = self.resolve_params(given)?;
        let subst = |text: &str| substitute(text, &params, mission.as_str(), Insert::AsText);
        let file = self.file.clone();
        let subst_shell = |text: &str, field: String| {
            let mut unsure = None;
            let out = substitute_into(
                text,
                &params,
                mission.as_str(),
                Insert::ShellQuoted,
                &mut unsure,
            );
            match unsure {
                None => Ok(out),
                Some(why) => Err(TemplateError::Invalid {
                    file: file.clone(),
                    field,
                    message: format!(
                        "a param's value cannot be quoted safely here ({why}), so it could add commands\nhint: move the {{{{param}}}} out of the comment, here-document or backquotes (use $(…)), or write {{{{NAME | raw}}}} if the value is meant to be shell text"
                    ),
                }),
            }
        };
        let mut template = self.clone();
        template.goal = template.goal.as_deref().map(subst);
        for (index, step) in template.steps.iter_mut().enumerate() {
            match step {
                Step::Run { command, .. } => {
                    *command = subst_shell(command, format!("steps[{index}].run"))?
                }
                Step::Agent { task, .. } => *task = task.as_deref().map(subst),
            }
        }
        for (index, command) in template.acceptance.commands.iter_mut().enumerate() {
            *command = subst_shell(command, format!("acceptance.commands[{index}]"))?;
        }
        template.publish.title = template.publish.title.as_deref().map(subst);
        Ok(RenderedTemplate { template, params })
    }

    /// The PR title: `[publish].title`, else the description, else the template name.
    pub fn title(&self) -> String {
        self.publish
            .title
            .clone()
            .or_else(|| self.description.clone())
            .unwrap_or_else(|| format!("flightdeck: {}", self.name))
    }
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The names inside `{{ … }}` in `text`, in order.
fn placeholders(text: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                found.push(after[..end].trim());
                rest = &after[end + 2..];
            }
            None => break,
        }
    }
    found
}

/// The filter that inserts a value into a command as given: `{{NAME | raw}}`.
pub const RAW_FILTER: &str = "raw";

/// `crate | raw` -> (`crate`, Some(`raw`)); `crate` -> (`crate`, None).
fn split_filter(placeholder: &str) -> (&str, Option<&str>) {
    match placeholder.split_once('|') {
        Some((name, filter)) => (name.trim(), Some(filter.trim())),
        None => (placeholder.trim(), None),
    }
}

/// How a value goes into a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Insert {
    /// Text for people and models: as given.
    AsText,
    /// A shell command: quoted for where the placeholder stands.
    ShellQuoted,
}

fn substitute(
    text: &str,
    params: &BTreeMap<String, String>,
    mission: &str,
    insert: Insert,
) -> String {
    let mut unsure = None;
    substitute_into(text, params, mission, insert, &mut unsure)
}

/// [`substitute`], saying in `unsure` why a value could not be quoted with certainty (the
/// text around it is shell the quote tracker does not follow: a comment, a here-document,
/// `$'…'`, a backquote in a value inside backquotes).
fn substitute_into(
    text: &str,
    params: &BTreeMap<String, String>,
    mission: &str,
    insert: Insert,
    unsure: &mut Option<String>,
) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut quoting = ShellContext::default();
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let (name, filter) = split_filter(&after[..end]);
        out.push_str(&rest[..start]);
        quoting.advance(&rest[..start]);
        let value = match params.get(name) {
            Some(value) => Some(value.as_str()),
            None if name == MISSION_PLACEHOLDER => Some(mission),
            None => None,
        };
        match value {
            Some(value) if insert == Insert::ShellQuoted && filter != Some(RAW_FILTER) => {
                if let Some(why) = quoting.unsure_for(value) {
                    unsure.get_or_insert(why);
                }
                out.push_str(&quoting.quote(value));
            }
            Some(value) => {
                out.push_str(value);
                quoting.advance(value);
            }
            // Validation rejects unknown placeholders; keep the text if one slips through.
            None => out.push_str(&rest[start..start + 2 + end + 2]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// A value that is one shell word as it stands, wherever it goes: no quoting needed.
fn plainly_safe(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_./:@%+,".contains(ch))
}

/// Where in shell text a position is: which quotes are open. Substitutions (`$(`,
/// backticks) open an unquoted context of their own.
#[derive(Debug, Default)]
struct ShellContext {
    /// Open contexts, innermost last; empty means unquoted at the top level.
    open: Vec<Quote>,
    /// The previous character was an unquoted or double-quoted backslash.
    escaped: bool,
    /// The previous character was an unquoted or double-quoted `$`.
    dollar: bool,
    /// Shell the tracker does not follow came before (a comment, a here-document, `$'…'`):
    /// from there on it cannot tell what is quoted.
    lost: Option<&'static str>,
    /// The previous character was an unquoted `<`.
    less: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quote {
    Single,
    Double,
    /// `$( … )`: unquoted until its `)`.
    Substitution,
    /// `` ` … ` ``: unquoted until the next backtick.
    Backtick,
}

impl ShellContext {
    fn advance(&mut self, text: &str) {
        for ch in text.chars() {
            let dollar = std::mem::take(&mut self.dollar);
            let less = std::mem::take(&mut self.less);
            if std::mem::take(&mut self.escaped) {
                continue;
            }
            let quoted = matches!(self.open.last(), Some(Quote::Single | Quote::Double));
            if !quoted && self.lost.is_none() {
                self.lost = match ch {
                    '#' => Some("a `#` comment before it"),
                    '<' if less => Some("a here-document before it"),
                    '\'' if dollar => Some("a $'…' string before it"),
                    _ => None,
                };
                self.less = ch == '<';
            }
            match (self.open.last().copied(), ch) {
                (Some(Quote::Single), '\'') => {
                    self.open.pop();
                }
                (Some(Quote::Single), _) => {}
                (_, '\\') => self.escaped = true,
                (Some(Quote::Double), '"') => {
                    self.open.pop();
                }
                (Some(Quote::Backtick), '`') => {
                    self.open.pop();
                }
                (_, '`') => self.open.push(Quote::Backtick),
                (_, '$') => self.dollar = true,
                (_, '(') if dollar => self.open.push(Quote::Substitution),
                (Some(Quote::Double), _) => {}
                (Some(Quote::Substitution), ')') => {
                    self.open.pop();
                }
                (_, '\'') => self.open.push(Quote::Single),
                (_, '"') => self.open.push(Quote::Double),
                _ => {}
            }
        }
    }

    /// Why `value` cannot be quoted with certainty here, if it cannot.
    fn unsure_for(&self, value: &str) -> Option<String> {
        if plainly_safe(value) {
            return None;
        }
        if let Some(why) = self.lost {
            return Some(why.to_string());
        }
        if self.open.contains(&Quote::Backtick) && value.contains(['`', '\\']) {
            return Some("a backquote or backslash in a value inside backquotes".to_string());
        }
        None
    }

    /// `value` as one literal word (or part of one) at this position.
    fn quote(&self, value: &str) -> String {
        if plainly_safe(value) {
            return value.to_string();
        }
        match self.open.last() {
            // Close the quote, add an escaped one, reopen.
            Some(Quote::Single) => value.replace('\'', "'\\''"),
            Some(Quote::Double) => {
                let mut quoted = String::with_capacity(value.len());
                for ch in value.chars() {
                    if matches!(ch, '"' | '\\' | '$' | '`') {
                        quoted.push('\\');
                    }
                    quoted.push(ch);
                }
                quoted
            }
            _ => format!("'{}'", value.replace('\'', "'\\''")),
        }
    }
}

/// 1-based line and column (in characters) of byte `offset` in `source`.
pub fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// A value's error with the key it is given to (toml names only the place) and serde's type
/// names in TOML's words: "`tokens`: invalid value: integer `-1`, expected a whole number of
/// zero or more".
fn value_error(source: &str, offset: usize, message: &str) -> String {
    let message = message
        .replace("expected u64", "expected a whole number of zero or more")
        .replace("expected u32", "expected a whole number of zero or more")
        .replace("expected f64", "expected a number");
    let line_start = source
        .get(..offset)
        .and_then(|before| before.rfind('\n'))
        .map_or(0, |i| i + 1);
    let key = source
        .get(line_start..offset)
        .and_then(|line| line.split_once('='))
        .map(|(key, _)| key.trim().trim_matches(['"', '\'']))
        .filter(|key| !key.is_empty() && !key.contains(['{', ',', '[']));
    match key {
        Some(key) => format!("`{key}`: {message}"),
        None => message,
    }
}

/// A TOML error's message, never empty: toml 0.8 gives none when the text ends where a
/// value should be (`key =` at the end of the file), and an empty message reads as no reason.
pub fn toml_message(error: &toml::de::Error, source: &str) -> String {
    let message = error.message().trim();
    if !message.is_empty() {
        return message.to_string();
    }
    let at_end = error
        .span()
        .is_none_or(|span| span.start >= source.trim_end().len());
    if at_end {
        "the file ends where a value is expected (a `key =` with nothing after it?)".to_string()
    } else {
        "invalid TOML syntax here".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPGRADE: &str = r#"
description = "Upgrade one Rust dependency"
owner = "@acme/platform"
goal = "Upgrade {{crate}} to {{version}}."

[params.crate]
required = true
[params.version]
default = "latest"

[workspace]
runtime = "local"

[[steps]]
run = "cargo update -p {{crate}} --precise {{version}}"

[[steps]]
agent = "coder"
task = "Fix {{ crate }} fallout in {{mission}}"

[publish]
title = "Upgrade {{crate}} to {{version}}"
"#;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn egress_entries() {
        for (entry, valid) in [
            ("ghcr.io", true),
            ("localhost", true),
            ("localhost:5000", true),
            ("*.pypi.org", true),
            ("127.0.0.1:8080", true),
            ("", false),
            ("*", false),
            ("host:0", false),
            ("host:", false),
            ("-bad.io", false),
            ("a..b", false),
            ("https://ghcr.io", false),
            ("ghcr.io/path", false),
        ] {
            assert_eq!(valid_egress(entry), valid, "{entry:?}");
        }
    }

    #[test]
    fn renders_params_defaults_and_mission() {
        let t = Template::parse("upgrade", "upgrade.toml", UPGRADE).unwrap();
        let id = MissionId::from_parts(0, 1);
        let r = t.render(&params(&[("crate", "serde")]), &id).unwrap();
        assert_eq!(
            r.params,
            params(&[("crate", "serde"), ("version", "latest")])
        );
        assert_eq!(r.template.goal.as_deref(), Some("Upgrade serde to latest."));
        assert_eq!(
            r.template.steps[0],
            Step::Run {
                command: "cargo update -p serde --precise latest".into(),
                timeout_seconds: None,
                secrets: None,
            }
        );
        assert_eq!(
            r.template.steps[1].describe(),
            format!("coder agent: Fix serde fallout in {id}")
        );
        assert_eq!(r.template.title(), "Upgrade serde to latest");
    }

    /// Each bad template and the message it must produce (file, key and where).
    #[test]
    fn bad_templates_name_file_and_key() {
        let cases: &[(&str, &str)] = &[
            (
                "[[steps]]\nrun = \"x\"\ncolour = 1\n",
                "t.toml:3:1: unknown field `colour`",
            ),
            (
                "[[steps]]\nrun = \"x\"\n[workspace]\nruntime = \"vm\"\n",
                "t.toml:4:11: unknown variant `vm`",
            ),
            (
                "goal = \"x\"\n",
                "t.toml: steps: the template has no [[steps]]",
            ),
            (
                "[[steps]]\nrun = \"x\"\nagent = \"coder\"\n",
                "t.toml: steps[0]: a step has either `run` or `agent`, not both",
            ),
            (
                "[[steps]]\ntask = \"x\"\n",
                "t.toml: steps[0]: a step needs `run",
            ),
            (
                "[[steps]]\nrun = \"echo {{nope}}\"\n",
                "t.toml: `{{nope}}` in steps[0].run names no param (declared: none)",
            ),
            (
                "[params.a]\nrequired = true\ndefault = \"x\"\n[[steps]]\nrun = \"x\"\n",
                "t.toml: params.a: a param is either `required` or has a `default`",
            ),
            (
                "[[steps]]\nrun = \"x\"\n[publish]\ntitle = \"{{ver}}\"\n[params.version]\n",
                "t.toml: `{{ver}}` in publish.title names no param (declared: version)",
            ),
            (
                "[[steps]]\nrun = \"x\"\n[workspace]\negress = [\"ghcr.io\", \"https://x.io\"]\n",
                "t.toml: workspace.egress[1]: an egress entry is a host name",
            ),
            (
                "[[steps]]\nrun = \"x\"\n[workspace]\negress = [\"registry:99999\"]\n",
                "workspace.egress[0]",
            ),
            ("this is = not toml [", "t.toml:1:6"),
            (
                "[[steps]]\nrun = \"x\"\n[acceptance]\ncommands = [\"make {{target}}\"]\n",
                "`{{target}}` in acceptance.commands[0]",
            ),
        ];
        let mut failures = Vec::new();
        for (source, expected) in cases {
            match Template::parse("t", "t.toml", source) {
                Ok(_) => failures.push(format!("accepted: {source:?}")),
                Err(e) if !e.to_string().contains(expected) => failures.push(format!(
                    "{source:?}\n  expected: {expected}\n  got:      {e}"
                )),
                Err(_) => {}
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn params_are_checked_when_rendering() {
        let t = Template::parse("upgrade", "upgrade.toml", UPGRADE).unwrap();
        let id = MissionId::from_parts(0, 1);
        let missing = t.render(&params(&[]), &id).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "upgrade.toml: required param `crate` was not given"
        );
        let unknown = t
            .render(&params(&[("crate", "a"), ("colour", "b")]), &id)
            .unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "upgrade.toml: unknown param `colour` (declared: crate, version)"
        );
    }

    #[test]
    fn substitution_is_single_pass() {
        let p = params(&[("a", "{{b}}"), ("b", "x")]);
        assert_eq!(
            substitute("{{a}}-{{b}}-{{mission}}", &p, "m-1", Insert::AsText),
            "{{b}}-x-m-1"
        );
        assert_eq!(
            substitute("{{ unclosed", &p, "m", Insert::AsText),
            "{{ unclosed"
        );
    }

    /// Where the quote tracker cannot follow the shell (a comment, a here-document, `$'…'`,
    /// a backquote in a value inside backquotes), a value that would need quoting is refused
    /// rather than guessed at; a plainly safe value, or one before such text, still goes in.
    #[test]
    fn values_the_tracker_cannot_quote_with_certainty_are_refused() {
        let evil = "a; touch p";
        // (command, value, refused?)
        let cases: &[(&str, &str, bool)] = &[
            ("# don't retry\necho {{v}}", evil, true),
            ("echo x # it's\necho {{v}}", evil, true),
            ("cat <<EOF\nit's {{v}}\nEOF", evil, true),
            ("cat <<'EOF'\n{{v}}\nEOF", evil, true),
            ("echo $'\\'' {{v}}", evil, true),
            ("echo `echo {{v}}`", "a`touch p`", true),
            ("echo `echo {{v}}`", "a\\`touch p\\`", true),
            ("# note\necho {{v}}", "1.2.3", false),
            ("echo {{v}} # it's fine", evil, false),
            ("echo '#' {{v}}", evil, false),
            ("echo `echo {{v}}`", evil, false),
        ];
        for (command, value, refused) in cases {
            let p = params(&[("v", value)]);
            let mut unsure = None;
            let _ = substitute_into(command, &p, "m-1", Insert::ShellQuoted, &mut unsure);
            assert_eq!(
                unsure.is_some(),
                *refused,
                "{command:?} with {value:?}: {unsure:?}"
            );
        }
    }

    /// A value goes into a command as one literal word (or part of one), whatever quotes
    /// the template put around the placeholder; `| raw` inserts it as given.
    #[test]
    fn command_values_are_shell_quoted_for_where_they_stand() {
        let cases: &[(&str, &str, &str)] = &[
            ("echo {{v}}", "x; touch p", "echo 'x; touch p'"),
            ("echo {{v}}", "it's", "echo 'it'\\''s'"),
            ("echo {{v}}", "", "echo ''"),
            ("echo {{v}}", "1.2.3-rc1", "echo 1.2.3-rc1"),
            ("echo {{v}}", "$(id)", "echo '$(id)'"),
            ("echo {{v}}", "a=b", "echo 'a=b'"),
            (
                "echo '{{v}}'",
                "x'; touch p; echo '",
                "echo 'x'\\''; touch p; echo '\\'''",
            ),
            (
                "echo \"{{v}}\"",
                "x\"; touch p; \"$(id)`id`\\",
                "echo \"x\\\"; touch p; \\\"\\$(id)\\`id\\`\\\\\"",
            ),
            ("echo \"$(cat {{v}})\"", "a b", "echo \"$(cat 'a b')\""),
            ("echo 'a' {{v}} \"b\"", "x y", "echo 'a' 'x y' \"b\""),
            ("echo \\'{{v}}", "x y", "echo \\''x y'"),
            ("echo {{v | raw}}", "x; y", "echo x; y"),
            ("echo {{ v|raw }} {{v}}", "a b", "echo a b 'a b'"),
        ];
        for (text, value, expected) in cases {
            let p = params(&[("v", value)]);
            assert_eq!(
                substitute(text, &p, "m-1", Insert::ShellQuoted),
                *expected,
                "{text} with {value:?}"
            );
            // Text for people and models is never quoted.
            assert!(!substitute(text, &p, "m-1", Insert::AsText).contains("'\\''"));
        }
    }

    #[test]
    fn only_run_and_acceptance_commands_are_quoted_and_filters_are_checked() {
        let source = "goal = \"Say {{v}}\"\n[params.v]\nrequired = true\n[[steps]]\nrun = \"echo {{v}}\"\n[[steps]]\nagent = \"coder\"\ntask = \"Say {{v}}\"\n[acceptance]\ncommands = [\"test -n {{v}}\"]\n";
        let t = Template::parse("t", "t.toml", source).unwrap();
        let r = t
            .render(&params(&[("v", "a; b")]), &MissionId::from_parts(0, 1))
            .unwrap();
        assert_eq!(r.template.goal.as_deref(), Some("Say a; b"));
        assert_eq!(r.template.steps[0].describe(), "echo 'a; b'");
        assert_eq!(r.template.acceptance.commands, ["test -n 'a; b'"]);
        assert!(r.template.steps[1].describe().ends_with("Say a; b"));
        let error = Template::parse(
            "t",
            "t.toml",
            &source.replace(
                "{{v}}\"\n[[steps]]\nagent",
                "{{v|upper}}\"\n[[steps]]\nagent",
            ),
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("steps[0].run") && error.contains("unknown filter `upper`"),
            "{error}"
        );
    }
}
