//! The scripted model (`scripted:<path>`, CONTRACT.md "Scripted model"): a TOML file of turns
//! that answers model calls in order, deterministically, offline.
//!
//! # Which turn answers a call
//!
//! One script serves every call of a mission in order, across roles, so the turn cannot be
//! derived from one conversation (each role has its own). Instead the provider keeps a cursor:
//! the number of calls it has answered. The caller sets where it starts
//! ([`ScriptedProvider::starting_at`]): for a new mission 0; on resume or replay, the number of
//! calls this script already answered in the timeline (its `model.responded` events). The
//! cursor advances only when a turn answers; a failed `expect` leaves it in place, so trying
//! again fails the same way. So the same timeline always meets the same turn.
//!
//! Turns are numbered from 1 in messages, in file order.
//!
//! # Bytes
//!
//! The request bytes are the neutral JSON of the [`ChatRequest`]; the response bytes the
//! neutral JSON of the [`ChatResponse`] ([`crate::WireFormat::Neutral`]).

use std::path::Path;
use std::sync::Mutex;

use async_trait::async_trait;
use serde::Deserialize;

use crate::error::ModelError;
use crate::model_ref::SCRIPTED;
use crate::pricing::{estimate_output_tokens, input_tokens_of, Pricing};
use crate::provider::{Provider, WireFormat};
use crate::types::{ChatRequest, ChatResponse, Exchange, Message, StopReason, ToolCall, Usage};

/// The served id when a script names none.
pub const DEFAULT_SCRIPTED_MODEL: &str = "scripted";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptFile {
    model: Option<String>,
    pricing: Option<Pricing>,
    #[serde(default)]
    turn: Vec<TurnFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TurnFile {
    expect: Option<String>,
    content: Option<String>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    #[serde(default)]
    call: Vec<CallFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallFile {
    tool: String,
    #[serde(default = "empty_table")]
    args: toml::Value,
}

fn empty_table() -> toml::Value {
    toml::Value::Table(toml::map::Map::new())
}

/// What a turn requires of the newest user/tool message.
#[derive(Debug, Clone)]
pub enum Expect {
    /// Must occur as is.
    Substring(String),
    /// `/re/` in the file: must match somewhere.
    Regex(regex::Regex),
}

impl Expect {
    fn parse(text: &str) -> Result<Expect, regex::Error> {
        match text
            .strip_prefix('/')
            .and_then(|rest| rest.strip_suffix('/'))
        {
            Some(pattern) if text.len() >= 2 => Ok(Expect::Regex(regex::Regex::new(pattern)?)),
            _ => Ok(Expect::Substring(text.to_string())),
        }
    }

    fn matches(&self, text: &str) -> bool {
        match self {
            Expect::Substring(needle) => text.contains(needle.as_str()),
            Expect::Regex(re) => re.is_match(text),
        }
    }

    fn describe(&self) -> String {
        match self {
            Expect::Substring(needle) => format!("{needle:?}"),
            Expect::Regex(re) => format!("/{}/", re.as_str()),
        }
    }
}

/// One parsed turn.
#[derive(Debug, Clone)]
pub struct Turn {
    pub expect: Option<Expect>,
    pub content: Option<String>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    /// `(tool, args)` in order.
    pub calls: Vec<(String, serde_json::Value)>,
}

/// A parsed script.
#[derive(Debug, Clone)]
pub struct Script {
    /// Where it came from, for messages.
    pub path: String,
    /// The id reported as served.
    pub model: String,
    pub pricing: Option<Pricing>,
    pub turns: Vec<Turn>,
}

/// A script that cannot be read or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScriptError {
    #[error("cannot read scripted model {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: turn {turn}: {message}")]
    Turn {
        path: String,
        turn: usize,
        message: String,
    },
}

/// A TOML error as toml 0.8 says it (place, source excerpt, message), with a message even
/// where toml gives none: when the file ends where a value should be.
fn script_toml_message(error: &toml::de::Error) -> String {
    let said = error.to_string().trim_end().to_string();
    if error.message().trim().is_empty() {
        format!(
            "{said}\nthe file ends where a value is expected (a `key =` with nothing after it?)"
        )
    } else {
        said
    }
}

impl Script {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Script, ScriptError> {
        let label = path.display().to_string();
        let source = std::fs::read_to_string(path).map_err(|e| ScriptError::Read {
            path: label.clone(),
            message: e.to_string(),
        })?;
        Script::parse(&source, &label)
    }

    /// Parses `source`; `path` names it in errors.
    pub fn parse(source: &str, path: &str) -> Result<Script, ScriptError> {
        let file: ScriptFile = toml::from_str(source).map_err(|e| ScriptError::Parse {
            path: path.to_string(),
            message: script_toml_message(&e),
        })?;
        if let Some(price) = &file.pricing {
            let prices = [
                ("input_per_mtok", Some(price.input_per_mtok)),
                ("output_per_mtok", Some(price.output_per_mtok)),
                ("cache_read_per_mtok", price.cache_read_per_mtok),
                ("cache_write_per_mtok", price.cache_write_per_mtok),
            ];
            // A NaN or negative price would make every spend check pass.
            if let Some((key, Some(bad))) = prices
                .iter()
                .find(|(_, p)| p.is_some_and(|p| !(p.is_finite() && p >= 0.0)))
            {
                return Err(ScriptError::Parse {
                    path: path.to_string(),
                    message: format!(
                        "pricing.{key}: `{bad}` is not a price (USD per million tokens, zero or more)"
                    ),
                });
            }
        }
        let mut turns = Vec::with_capacity(file.turn.len());
        for (i, turn) in file.turn.into_iter().enumerate() {
            let turn_error = |message: String| ScriptError::Turn {
                path: path.to_string(),
                turn: i + 1,
                message,
            };
            let expect = turn
                .expect
                .as_deref()
                .map(Expect::parse)
                .transpose()
                .map_err(|e| turn_error(format!("`expect` is not a valid regex: {e}")))?;
            let mut calls = Vec::with_capacity(turn.call.len());
            for call in turn.call {
                if call.tool.trim().is_empty() {
                    return Err(turn_error("a call has an empty `tool`".to_string()));
                }
                let args = serde_json::to_value(&call.args)
                    .map_err(|e| turn_error(format!("`{}` args: {e}", call.tool)))?;
                calls.push((call.tool, args));
            }
            turns.push(Turn {
                expect,
                content: turn.content,
                input_tokens: turn.input_tokens,
                output_tokens: turn.output_tokens,
                calls,
            });
        }
        Ok(Script {
            path: path.to_string(),
            model: file
                .model
                .unwrap_or_else(|| DEFAULT_SCRIPTED_MODEL.to_string()),
            pricing: file.pricing,
            turns,
        })
    }
}

/// The scripted provider (see the module docs for how turns are chosen).
#[derive(Debug)]
pub struct ScriptedProvider {
    /// Shared: a mission builds a provider per agent run from one parsed script.
    script: std::sync::Arc<Script>,
    next_turn: Mutex<usize>,
}

impl ScriptedProvider {
    /// A provider whose first call meets turn 1.
    pub fn new(script: Script) -> ScriptedProvider {
        ScriptedProvider::starting_at(script, 0)
    }

    /// A provider whose first call meets the turn after `answered` turns (0-based index
    /// `answered`): the number of calls this script already answered in the timeline.
    pub fn starting_at(
        script: impl Into<std::sync::Arc<Script>>,
        answered: usize,
    ) -> ScriptedProvider {
        ScriptedProvider {
            script: script.into(),
            next_turn: Mutex::new(answered),
        }
    }

    pub fn script(&self) -> &Script {
        &self.script
    }

    /// The 0-based index of the turn the next call meets.
    pub fn next_turn(&self) -> usize {
        match self.next_turn.lock() {
            Ok(guard) => *guard,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    /// Answers `request` with turn `index` (0-based), without moving the cursor.
    pub fn answer(&self, index: usize, request: &ChatRequest) -> Result<ChatResponse, ModelError> {
        let script = &self.script;
        let error = |message: String| ModelError::Script {
            path: script.path.clone(),
            turn: index + 1,
            message,
        };
        let Some(turn) = script.turns.get(index) else {
            return Err(error(format!(
                "the script has run out of turns (it has {}); model call {} has no answer",
                script.turns.len(),
                index + 1
            )));
        };
        if let Some(expect) = &turn.expect {
            let newest = request.messages.iter().rev().find_map(|m| match m {
                Message::User { content } | Message::Tool { content, .. } => Some(content),
                _ => None,
            });
            match newest {
                Some(text) if expect.matches(text) => {}
                Some(text) => {
                    return Err(error(format!(
                        "expected {} in the newest user/tool message, which is: {}",
                        expect.describe(),
                        excerpt(text)
                    )))
                }
                None => {
                    return Err(error(format!(
                        "expected {} but the request has no user/tool message",
                        expect.describe()
                    )))
                }
            }
        }
        let tool_calls: Vec<ToolCall> = turn
            .calls
            .iter()
            .enumerate()
            .map(|(i, (tool, args))| ToolCall {
                id: format!("scripted-{}-{}", index + 1, i + 1),
                name: tool.clone(),
                arguments: args.clone(),
            })
            .collect();
        let usage = Usage {
            input_tokens: turn
                .input_tokens
                .unwrap_or_else(|| input_tokens_of(request)),
            // A model never answers past the request's output limit.
            output_tokens: turn
                .output_tokens
                .unwrap_or_else(|| estimate_output_tokens(turn.content.as_deref(), &tool_calls))
                .min(request.max_output_tokens.unwrap_or(u64::MAX)),
            cache_read_tokens: 0,
            cache_write_tokens: 0,
        };
        let stop_reason = if tool_calls.is_empty() {
            StopReason::EndTurn
        } else {
            StopReason::ToolUse
        };
        Ok(ChatResponse {
            model_served: script.model.clone(),
            content: turn.content.clone(),
            tool_calls,
            usage,
            stop_reason,
        })
    }
}

fn excerpt(text: &str) -> String {
    const MAX: usize = 200;
    let mut short: String = text.chars().take(MAX).collect();
    if text.chars().count() > MAX {
        short.push('…');
    }
    format!("{short:?}")
}

#[async_trait]
impl Provider for ScriptedProvider {
    fn name(&self) -> &str {
        SCRIPTED
    }

    fn wire_format(&self) -> WireFormat {
        WireFormat::Neutral
    }

    /// The turn that will answer may declare its input tokens: the bound covers them.
    fn input_token_bound(&self, request: &ChatRequest, body: &[u8]) -> u64 {
        let declared = self
            .script
            .turns
            .get(self.next_turn())
            .and_then(|turn| turn.input_tokens)
            .unwrap_or_else(|| input_tokens_of(request));
        declared.max(body.len() as u64)
    }

    fn replayed_answer(&self) {
        let mut next = match self.next_turn.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        *next += 1;
    }

    async fn chat(&self, request: &ChatRequest) -> Result<Exchange, ModelError> {
        // Nothing crosses a wire: no request body is built (see `WireFormat::sends`).
        let request_body = Vec::new();
        // Hold the lock across the answer so concurrent calls take distinct turns.
        let mut next = match self.next_turn.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let response = self.answer(*next, request)?;
        *next += 1;
        drop(next);
        let response_body =
            serde_json::to_vec(&response).map_err(|e| ModelError::InvalidResponse {
                provider: SCRIPTED.to_string(),
                message: e.to_string(),
            })?;
        Ok(Exchange {
            response,
            request_body,
            response_body,
        })
    }
}
