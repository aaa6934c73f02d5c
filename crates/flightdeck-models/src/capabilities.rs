//! Which request parameters a model accepts: a built-in table by model id, and overrides an
//! installation gives per model.
//!
//! The neutral [`ChatRequest`] keeps what the template asked for; a parameter the model does
//! not accept is left out of the wire request for that model (never sent to be refused), and
//! [`Capabilities::omitted`] (or [`crate::WireFormat::omitted_params`]) says which were left
//! out, for the record.
//!
//! # The built-in table
//!
//! Model ids are matched after the last `/` (so `openai/o3` behind a gateway is `o3`),
//! case-insensitively; "family `x`" means the id `x` or any id starting with `x-` (its
//! snapshots and variants). A model the table does not name accepts everything.
//!
//! | models | refuse | source |
//! |---|---|---|
//! | Claude models of version 4.7 or later (`claude-opus-4-7`, `claude-opus-4-8`, `claude-<family>-5…`) | `temperature` (also `top_p`, `top_k`, which flightdeck does not send) | Anthropic, [Migrating to Claude Opus 4.7](https://platform.claude.com/docs/en/about-claude/models/migration-guide#migrating-to-claude-opus-4-7): sampling parameters removed, a non-default value is a 400 (`` `temperature` is deprecated for this model``, as reported in Comfy-Org/ComfyUI#13923); "every model after it": scottpmiller/evalcore 2.4.3 release notes (Opus 4.8, Opus 5, Sonnet 5) |
//! | OpenAI o-series: families `o1`, `o3`, `o4` (`o1-mini`, `o3-mini`, `o3-pro`, `o4-mini`, …) | `temperature` (only the default 1 is accepted) | OpenAI reasoning guide, limitations (<https://platform.openai.com/docs/guides/reasoning>); the API's `unsupported_value` / `unsupported_parameter` errors quoted in openai/openai-python#2104 (o3-mini) and leafo/lua-openai#12 (o1-mini) |
//! | OpenAI GPT-5 reasoning models: family `gpt-5` (`gpt-5-2025-08-07`, `gpt-5-mini`, `gpt-5-nano`, `gpt-5-codex`, `gpt-5-pro`), except the `gpt-5-chat` family | `temperature` (only the default 1) | OpenAI, Using GPT-5 (<https://platform.openai.com/docs/guides/latest-model>): older GPT-5 models refuse `temperature`/`top_p`/`logprobs`; error text quoted in openai/openai-guardrails-js#29 (gpt-5-nano); `gpt-5-chat-latest` accepts it (BerriAI/litellm#13781) |
//! | OpenAI `gpt-5.<n>-codex…` and `gpt-5.<n>-pro…` | `temperature` | GPT-5.1 and later accept sampling parameters only at reasoning effort `none` (OpenAI latest-model guide, parameter compatibility; vercel/ai#10932); the codex and pro models do not offer `none` (OpenAI `reasoning_effort` reference: "gpt-5-pro … only supports high"; compatibility matrix in the OpenAI community thread "Request for Compatibility Matrix: Reasoning Effort & Sampling Parameters across GPT-5 Series") |
//! | OpenAI family `gpt-5.6` | `temperature` | the API's "Only the default (1) value is supported" reported for `gpt-5.6-luna` (khoj-ai/khoj#1377) and `gpt-5.6-sol` (LubergAlexander/plexmuse#7) |
//!
//! Not in the table, so sent: `gpt-5.1`, `gpt-5.2` and their `-chat` models (flightdeck sends
//! no `reasoning_effort`, and their default is `none`, where `temperature` is accepted),
//! Claude 4.6 and older. Anthropic's "`temperature` and `top_p` cannot both be specified" rule
//! (Claude Sonnet 4.5, Haiku 4.5, Opus 4.1 and 4.5) does not arise: flightdeck never sends
//! `top_p`.
//!
//! The Claude rows apply to both kinds of provider (a Claude model behind an
//! OpenAI-compatible gateway refuses the same parameters); the OpenAI rows to
//! OpenAI-compatible providers only.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::types::ChatRequest;

/// The API a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// Chat Completions (OpenAI and compatible servers).
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
}

/// A request parameter some models refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum SamplingParam {
    /// `temperature` (the same name in both APIs).
    Temperature,
}

impl SamplingParam {
    /// The field name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            SamplingParam::Temperature => "temperature",
        }
    }
}

impl fmt::Display for SamplingParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which of the parameters in [`SamplingParam`] one model accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Whether `temperature` is sent.
    pub temperature: bool,
}

impl Capabilities {
    /// A model that accepts every parameter (what a model the table does not name gets).
    pub const ALL: Capabilities = Capabilities { temperature: true };

    /// What the built-in table (see the module docs) says of `model` served by a provider of
    /// `kind`.
    pub fn for_model(kind: ProviderKind, model: &str) -> Capabilities {
        let id = model
            .rsplit('/')
            .next()
            .unwrap_or(model)
            .to_ascii_lowercase();
        let refuses_temperature = claude_refuses_sampling(&id)
            || (kind == ProviderKind::OpenAi && openai_refuses_temperature(&id));
        Capabilities {
            temperature: !refuses_temperature,
        }
    }

    /// The table's answer with `overrides` applied on top.
    pub fn with_override(self, overrides: CapabilityOverride) -> Capabilities {
        Capabilities {
            temperature: overrides.temperature.unwrap_or(self.temperature),
        }
    }

    /// Whether `param` is sent to this model.
    pub fn accepts(self, param: SamplingParam) -> bool {
        match param {
            SamplingParam::Temperature => self.temperature,
        }
    }

    /// The parameters `request` sets that this model does not accept: what its wire request
    /// leaves out.
    pub fn omitted(self, request: &ChatRequest) -> Vec<SamplingParam> {
        let mut omitted = Vec::new();
        if request.temperature.is_some() && !self.accepts(SamplingParam::Temperature) {
            omitted.push(SamplingParam::Temperature);
        }
        omitted
    }
}

/// What an installation says about a model, over the built-in table: each field that is set
/// replaces the table's answer. The app reads it from `[capabilities."provider:model"]` of its
/// configuration (`temperature = false`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CapabilityOverride {
    /// Whether the model accepts `temperature`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<bool>,
}

impl CapabilityOverride {
    /// No override: the built-in table decides.
    pub const NONE: CapabilityOverride = CapabilityOverride { temperature: None };

    /// Says whether the model accepts `temperature`.
    pub fn with_temperature(mut self, accepts: bool) -> CapabilityOverride {
        self.temperature = Some(accepts);
        self
    }

    /// Whether nothing is overridden.
    pub fn is_empty(&self) -> bool {
        *self == CapabilityOverride::NONE
    }
}

/// `id` is `family` or one of its snapshots and variants (`family-…`).
fn in_family(id: &str, family: &str) -> bool {
    id.strip_prefix(family)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
}

/// Claude 4.7 and later: `claude-<name>-<major>[-<minor>][-<date>]`. The older naming
/// (`claude-3-7-sonnet-…`) starts with the version and is older than 4.7 by construction.
fn claude_refuses_sampling(id: &str) -> bool {
    let Some(rest) = id.strip_prefix("claude-") else {
        return false;
    };
    let mut parts = rest.split('-');
    let Some(name) = parts.next() else {
        return false;
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphabetic()) {
        return false;
    }
    let Some(major) = parts.next().and_then(version_number) else {
        return false;
    };
    // A one- or two-digit part is the minor version; a date snapshot is eight digits.
    let minor = parts.next().and_then(version_number).unwrap_or(0);
    (major, minor) >= (4, 7)
}

fn version_number(part: &str) -> Option<u32> {
    if (1..=2).contains(&part.len()) && part.chars().all(|c| c.is_ascii_digit()) {
        part.parse().ok()
    } else {
        None
    }
}

fn openai_refuses_temperature(id: &str) -> bool {
    if ["o1", "o3", "o4"]
        .iter()
        .any(|family| in_family(id, family))
    {
        return true;
    }
    if in_family(id, "gpt-5") {
        return !in_family(id, "gpt-5-chat");
    }
    if let Some(rest) = id.strip_prefix("gpt-5.") {
        let mut parts = rest.split('-');
        let minor = parts.next().unwrap_or_default();
        if minor == "6" {
            return true;
        }
        return matches!(parts.next(), Some("codex" | "pro"));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Message;

    #[test]
    fn the_built_in_table() {
        use ProviderKind::{Anthropic, OpenAi};
        // (kind, model id, accepts temperature)
        let cases: &[(ProviderKind, &str, bool)] = &[
            (Anthropic, "claude-opus-4-7", false),
            (Anthropic, "claude-opus-4-7-20260416", false),
            (Anthropic, "claude-opus-4-8", false),
            (Anthropic, "claude-opus-5", false),
            (Anthropic, "claude-sonnet-5-20270101", false),
            (Anthropic, "CLAUDE-OPUS-4-7", false),
            (OpenAi, "anthropic/claude-opus-4-7", false),
            (Anthropic, "claude-opus-4-6", true),
            (Anthropic, "claude-sonnet-4-5-20250929", true),
            (Anthropic, "claude-haiku-4-5", true),
            (Anthropic, "claude-opus-4-1-20250805", true),
            (Anthropic, "claude-opus-4-20250514", true),
            (Anthropic, "claude-3-7-sonnet-20250219", true),
            (Anthropic, "claude-3-5-haiku-latest", true),
            (OpenAi, "o1", false),
            (OpenAi, "o1-mini", false),
            (OpenAi, "o3", false),
            (OpenAi, "o3-2025-04-16", false),
            (OpenAi, "o3-mini", false),
            (OpenAi, "o3-pro", false),
            (OpenAi, "o4-mini", false),
            (OpenAi, "o4-mini-2025-04-16", false),
            (OpenAi, "openai/o3", false),
            (OpenAi, "gpt-5", false),
            (OpenAi, "gpt-5-2025-08-07", false),
            (OpenAi, "gpt-5-mini", false),
            (OpenAi, "gpt-5-nano-2025-08-07", false),
            (OpenAi, "gpt-5-codex", false),
            (OpenAi, "gpt-5-pro", false),
            (OpenAi, "gpt-5-chat-latest", true),
            (OpenAi, "gpt-5.1", true),
            (OpenAi, "gpt-5.1-2025-11-13", true),
            (OpenAi, "gpt-5.1-chat-latest", true),
            (OpenAi, "gpt-5.1-codex", false),
            (OpenAi, "gpt-5.1-codex-max", false),
            (OpenAi, "gpt-5.2", true),
            (OpenAi, "gpt-5.2-pro", false),
            (OpenAi, "gpt-5.6-luna", false),
            (OpenAi, "gpt-4.1-2025-04-14", true),
            (OpenAi, "gpt-4o", true),
            (OpenAi, "llama3.1:8b", true),
            (OpenAi, "o3ish-local", true),
            (OpenAi, "gpt-50", true),
            // The OpenAI rows are about OpenAI's models on OpenAI-compatible servers.
            (Anthropic, "o3", true),
        ];
        for &(kind, model, temperature) in cases {
            assert_eq!(
                Capabilities::for_model(kind, model).temperature,
                temperature,
                "{kind:?} {model}"
            );
        }
    }

    #[test]
    fn overrides_replace_the_table_and_omissions_follow() {
        let mut request = ChatRequest::new("claude-opus-4-7", vec![Message::user("hi")]);
        let table = Capabilities::for_model(ProviderKind::Anthropic, &request.model);
        // Nothing asked, nothing omitted.
        assert_eq!(table.omitted(&request), Vec::new());
        request.temperature = Some(0.0);
        assert_eq!(table.omitted(&request), vec![SamplingParam::Temperature]);
        let allowed = table.with_override(CapabilityOverride::default().with_temperature(true));
        assert_eq!(allowed.omitted(&request), Vec::new());
        assert_eq!(table.with_override(CapabilityOverride::NONE), table);
        let refused =
            Capabilities::ALL.with_override(CapabilityOverride::NONE.with_temperature(false));
        assert_eq!(refused.omitted(&request), vec![SamplingParam::Temperature]);
        assert_eq!(SamplingParam::Temperature.to_string(), "temperature");
    }

    #[test]
    fn an_override_reads_from_a_config_table() {
        let read: CapabilityOverride = toml::from_str("temperature = false").unwrap();
        assert_eq!(read, CapabilityOverride::NONE.with_temperature(false));
        assert!(toml::from_str::<CapabilityOverride>("").unwrap().is_empty());
        assert!(toml::from_str::<CapabilityOverride>("top_k = false").is_err());
    }
}
