//! Provider-neutral chat types: what the engine builds and what every provider answers.
//!
//! The serde form of these types is also the "neutral" wire format (see [`crate::wire`]):
//! the scripted provider records it as its request and response bytes.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case", deny_unknown_fields)]
pub enum Message {
    /// Instructions from the platform. Anthropic takes them as the top-level `system` field.
    System { content: String },
    /// A user turn (the task, the goal, feedback).
    User { content: String },
    /// What the model said: text, tool calls, or both.
    Assistant {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ToolCall>,
    },
    /// The result of one tool call, answering the assistant's call with the same id.
    Tool {
        call_id: String,
        content: String,
        /// The call failed and `content` says why. Absent from the neutral JSON when false, so
        /// a successful result serializes as it always did and older records still decode.
        /// Anthropic sends it as the `tool_result` block's `is_error`; Chat Completions has no
        /// such field (see [`crate::openai::encode_request`]).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
    },
}

impl Message {
    pub fn system(content: impl Into<String>) -> Message {
        Message::System {
            content: content.into(),
        }
    }

    pub fn user(content: impl Into<String>) -> Message {
        Message::User {
            content: content.into(),
        }
    }

    pub fn assistant(content: impl Into<String>) -> Message {
        Message::Assistant {
            content: Some(content.into()),
            tool_calls: Vec::new(),
        }
    }

    pub fn tool_result(call_id: impl Into<String>, content: impl Into<String>) -> Message {
        Message::Tool {
            call_id: call_id.into(),
            content: content.into(),
            is_error: false,
        }
    }

    /// The result of a tool call that failed; `content` says how.
    pub fn tool_error(call_id: impl Into<String>, content: impl Into<String>) -> Message {
        Message::Tool {
            call_id: call_id.into(),
            content: content.into(),
            is_error: true,
        }
    }

    /// The role name as the contract's events spell it.
    pub fn role(&self) -> &'static str {
        match self {
            Message::System { .. } => "system",
            Message::User { .. } => "user",
            Message::Assistant { .. } => "assistant",
            Message::Tool { .. } => "tool",
        }
    }
}

/// A tool call made by the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCall {
    /// The provider's id for the call; a tool result answers it with the same id.
    pub id: String,
    pub name: String,
    /// The arguments as a JSON value (an object for every built-in tool).
    pub arguments: serde_json::Value,
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolDefinition {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments object.
    pub parameters: serde_json::Value,
}

/// One model call, before it is encoded for a provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatRequest {
    /// The model id sent to the provider (without the `<provider>:` prefix).
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolDefinition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
    /// [`crate::estimate_input_tokens`] of this request, when the caller keeps it up to date
    /// as the conversation grows (the engine's agents do): estimating a long conversation
    /// again for every call would cost in proportion to its length. Never sent or recorded.
    #[serde(skip)]
    pub input_tokens_estimate: Option<u64>,
}

impl ChatRequest {
    pub fn new(model: impl Into<String>, messages: Vec<Message>) -> ChatRequest {
        ChatRequest {
            model: model.into(),
            messages,
            tools: Vec::new(),
            temperature: None,
            max_output_tokens: None,
            input_tokens_estimate: None,
        }
    }
}

/// Token counts of one call, normalised across providers.
///
/// `input_tokens` counts every prompt token the provider processed, cached or not (OpenAI's
/// `prompt_tokens`; Anthropic's `input_tokens + cache_creation_input_tokens +
/// cache_read_input_tokens`). `cache_read_tokens` and `cache_write_tokens` are the parts of it
/// read from or written to the provider's prompt cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(default)]
    pub cache_read_tokens: u64,
    #[serde(default)]
    pub cache_write_tokens: u64,
}

impl Usage {
    /// Input plus output: what the `tokens` budget counts.
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// A natural end of turn (OpenAI `stop`, Anthropic `end_turn`).
    EndTurn,
    /// The model called tools (OpenAI `tool_calls`, Anthropic `tool_use`).
    ToolUse,
    /// `max_output_tokens` was reached (OpenAI `length`, Anthropic `max_tokens`).
    MaxTokens,
    /// A stop sequence matched (Anthropic `stop_sequence`).
    StopSequence,
    /// The provider withheld content (OpenAI `content_filter`, Anthropic `refusal`).
    ContentFilter,
    /// Anything else, as the provider spelled it.
    Other(String),
}

impl StopReason {
    pub fn as_str(&self) -> &str {
        match self {
            StopReason::EndTurn => "end_turn",
            StopReason::ToolUse => "tool_use",
            StopReason::MaxTokens => "max_tokens",
            StopReason::StopSequence => "stop_sequence",
            StopReason::ContentFilter => "content_filter",
            StopReason::Other(other) => other,
        }
    }

    /// The neutral spelling back to a value (the inverse of [`StopReason::as_str`]).
    pub fn parse(text: &str) -> StopReason {
        match text {
            "end_turn" => StopReason::EndTurn,
            "tool_use" => StopReason::ToolUse,
            "max_tokens" => StopReason::MaxTokens,
            "stop_sequence" => StopReason::StopSequence,
            "content_filter" => StopReason::ContentFilter,
            other => StopReason::Other(other.to_string()),
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for StopReason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for StopReason {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(StopReason::parse(&text))
    }
}

/// What a model answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatResponse {
    /// The model id the provider says it served (recorded as `model_served`).
    pub model_served: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    pub usage: Usage,
    pub stop_reason: StopReason,
}

impl ChatResponse {
    /// The assistant message to append to the conversation.
    pub fn to_message(&self) -> Message {
        Message::Assistant {
            content: self.content.clone(),
            tool_calls: self.tool_calls.clone(),
        }
    }
}

/// One completed call: the decoded response and the exact bytes that crossed the wire, for
/// recording as artifacts. API keys travel only in headers, never in these bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Exchange {
    pub response: ChatResponse,
    /// The request body sent (for the scripted provider: the neutral JSON of the request).
    pub request_body: Vec<u8>,
    /// The response body received (for the scripted provider: the neutral JSON of the answer).
    pub response_body: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The neutral JSON of messages: what the engine records and the replay decodes again.
    #[test]
    fn neutral_json_of_messages() {
        let cases: Vec<(Message, &str)> = vec![
            (
                Message::tool_result("call_1", "ok"),
                r#"{"role":"tool","call_id":"call_1","content":"ok"}"#,
            ),
            (
                Message::tool_error("call_1", "exit 1"),
                r#"{"role":"tool","call_id":"call_1","content":"exit 1","is_error":true}"#,
            ),
            (
                Message::assistant("done"),
                r#"{"role":"assistant","content":"done"}"#,
            ),
            (
                Message::Assistant {
                    content: None,
                    tool_calls: Vec::new(),
                },
                r#"{"role":"assistant"}"#,
            ),
        ];
        for (message, json) in cases {
            assert_eq!(serde_json::to_string(&message).unwrap(), json);
            assert_eq!(serde_json::from_str::<Message>(json).unwrap(), message);
        }
        // A record written before the flag existed still decodes, as a success.
        let old: Message =
            serde_json::from_str(r#"{"role":"tool","call_id":"c","content":"x"}"#).unwrap();
        assert_eq!(old, Message::tool_result("c", "x"));
        assert!(serde_json::from_str::<Message>(
            r#"{"role":"tool","call_id":"c","content":"x","is_error":"yes"}"#
        )
        .is_err());
    }
}
