//! OpenAI-compatible Chat Completions (`POST {base_url}/chat/completions`): OpenAI, vLLM,
//! Ollama, llama.cpp server, LiteLLM and anything else that speaks it.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION};
use serde_json::{json, Map, Value};

use crate::capabilities::{Capabilities, CapabilityOverride, ProviderKind};
use crate::error::ModelError;
use crate::http::{join_url, secret_header, status_error, ApiKey, HttpClient};
use crate::provider::{Provider, WireFormat};
use crate::types::{ChatRequest, ChatResponse, Exchange, Message, StopReason, ToolCall, Usage};

/// OpenAI's public endpoint.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

/// Which request field carries the output limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaxTokensField {
    /// `max_completion_tokens`: what OpenAI documents now (and vLLM accepts).
    #[default]
    MaxCompletionTokens,
    /// `max_tokens`: the older field, for servers that only know it.
    MaxTokens,
}

/// Settings of one OpenAI-compatible provider.
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// The provider's name in model refs and errors (`openai`, or a `[providers]` key).
    pub name: String,
    /// Up to and including the version segment, e.g. `https://api.openai.com/v1` or
    /// `http://localhost:11434/v1`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer …`; `None` for local servers that need none.
    pub api_key: Option<ApiKey>,
    /// The limit for one whole call (connect, send, and read the full answer).
    pub timeout: Duration,
    pub max_tokens_field: MaxTokensField,
}

impl OpenAiConfig {
    /// OpenAI itself, with a 120 s timeout.
    pub fn openai(api_key: ApiKey) -> OpenAiConfig {
        OpenAiConfig {
            name: "openai".to_string(),
            base_url: OPENAI_BASE_URL.to_string(),
            api_key: Some(api_key),
            timeout: Duration::from_secs(120),
            max_tokens_field: MaxTokensField::default(),
        }
    }
}

/// The Chat Completions provider.
pub struct OpenAiProvider {
    config: OpenAiConfig,
    capabilities: CapabilityOverride,
    http: HttpClient,
}

impl std::fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiProvider")
            .field("config", &self.config)
            .field("capabilities", &self.capabilities)
            .finish_non_exhaustive()
    }
}

impl OpenAiProvider {
    pub fn new(config: OpenAiConfig) -> Result<OpenAiProvider, ModelError> {
        let http = HttpClient::new(&config.name, config.timeout)?;
        Ok(OpenAiProvider {
            config,
            capabilities: CapabilityOverride::NONE,
            http,
        })
    }

    /// Applies `overrides` over the built-in capability table for every model this provider
    /// is asked for (one provider per `provider:model`, as the engine builds them, makes it
    /// per model). It travels in [`Provider::wire_format`], so the body recorded before a
    /// call is the body sent.
    pub fn with_capabilities(mut self, overrides: CapabilityOverride) -> OpenAiProvider {
        self.capabilities = overrides;
        self
    }
}

#[async_trait]
impl Provider for OpenAiProvider {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn wire_format(&self) -> WireFormat {
        WireFormat::OpenAi(self.config.max_tokens_field, self.capabilities)
    }

    async fn chat(&self, request: &ChatRequest) -> Result<Exchange, ModelError> {
        let name = &self.config.name;
        let request_body = self.wire_format().encode_request(request)?;
        let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
        if let Some(key) = &self.config.api_key {
            headers.push((
                AUTHORIZATION,
                secret_header(name, &format!("Bearer {}", key.expose()))?,
            ));
        }
        let url = join_url(&self.config.base_url, "chat/completions");
        let reply = self
            .http
            .post_json(
                name,
                &url,
                headers,
                request_body.clone(),
                self.config.api_key.as_ref(),
            )
            .await?;
        if !(200..300).contains(&reply.status) {
            return Err(status_error(name, &reply));
        }
        let response = decode_response(name, &reply.body)?;
        Ok(Exchange {
            response,
            request_body,
            response_body: reply.body,
        })
    }
}

pub(crate) fn to_bytes(provider: &str, body: &Value) -> Result<Vec<u8>, ModelError> {
    serde_json::to_vec(body).map_err(|e| ModelError::InvalidRequest {
        provider: provider.to_string(),
        message: format!("cannot encode the request: {e}"),
    })
}

/// The Chat Completions request body for `request`, leaving out what the built-in table says
/// its model refuses ([`Capabilities::for_model`]).
///
/// A failed tool result (`is_error`) is encoded like any other: Chat Completions' tool
/// message has no error field (only `role`, `content`, `tool_call_id`), and the result's text
/// already says what failed, so nothing is added to it.
pub fn encode_request(request: &ChatRequest, max_tokens_field: MaxTokensField) -> Value {
    let capabilities = Capabilities::for_model(ProviderKind::OpenAi, &request.model);
    encode_request_with(request, max_tokens_field, capabilities)
}

/// [`encode_request`] for a model that accepts `capabilities`.
pub fn encode_request_with(
    request: &ChatRequest,
    max_tokens_field: MaxTokensField,
    capabilities: Capabilities,
) -> Value {
    let messages: Vec<Value> = request.messages.iter().map(encode_message).collect();
    let mut body = Map::new();
    body.insert("model".into(), json!(request.model));
    body.insert("messages".into(), Value::Array(messages));
    if !request.tools.is_empty() {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .map(|tool| {
                json!({
                    "type": "function",
                    "function": {
                        "name": tool.name,
                        "description": tool.description,
                        "parameters": tool.parameters,
                    }
                })
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(temperature) = request.temperature.filter(|_| capabilities.temperature) {
        body.insert("temperature".into(), json!(temperature));
    }
    if let Some(max) = request.max_output_tokens {
        let field = match max_tokens_field {
            MaxTokensField::MaxCompletionTokens => "max_completion_tokens",
            MaxTokensField::MaxTokens => "max_tokens",
        };
        body.insert(field.into(), json!(max));
    }
    Value::Object(body)
}

fn encode_message(message: &Message) -> Value {
    match message {
        Message::System { content } => json!({"role": "system", "content": content}),
        Message::User { content } => json!({"role": "user", "content": content}),
        Message::Assistant {
            content,
            tool_calls,
        } => {
            let mut out = Map::new();
            out.insert("role".into(), json!("assistant"));
            // `content` is required unless `tool_calls` is present: an answer that was empty
            // (decoded as no content) goes back as empty text.
            let content = match content {
                None if tool_calls.is_empty() => Some(""),
                other => other.as_deref(),
            };
            out.insert("content".into(), json!(content));
            if !tool_calls.is_empty() {
                let calls: Vec<Value> = tool_calls
                    .iter()
                    .map(|call| {
                        json!({
                            "id": call.id,
                            "type": "function",
                            "function": {
                                "name": call.name,
                                // Chat Completions carries arguments as a JSON string.
                                "arguments": call.arguments.to_string(),
                            }
                        })
                    })
                    .collect();
                out.insert("tool_calls".into(), Value::Array(calls));
            }
            Value::Object(out)
        }
        // Chat Completions has no error flag on tool results; the content says it (see
        // `encode_request`).
        Message::Tool {
            call_id, content, ..
        } => json!({"role": "tool", "tool_call_id": call_id, "content": content}),
    }
}

/// Reads a Chat Completions response body (the first choice).
pub fn decode_response(provider: &str, body: &[u8]) -> Result<ChatResponse, ModelError> {
    let invalid = |message: String| ModelError::InvalidResponse {
        provider: provider.to_string(),
        message,
    };
    let value: Value =
        serde_json::from_slice(body).map_err(|e| invalid(format!("not JSON: {e}")))?;
    let model_served = value
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("no `model`".to_string()))?
        .to_string();
    let choice = value
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|choices| choices.first())
        .ok_or_else(|| invalid("no `choices[0]`".to_string()))?;
    let message = choice
        .get("message")
        .ok_or_else(|| invalid("no `choices[0].message`".to_string()))?;
    let content = message
        .get("content")
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty())
        .map(str::to_string);
    let mut tool_calls = Vec::new();
    for (i, call) in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let field = |name: &str| {
            call.pointer(name)
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(format!("tool_calls[{i}] has no `{}`", &name[1..])))
        };
        let id = field("/id")?.to_string();
        let name = field("/function/name")?.to_string();
        let raw = field("/function/arguments")?;
        let arguments = if raw.trim().is_empty() {
            Value::Object(Map::new())
        } else {
            serde_json::from_str(raw).map_err(|e| {
                invalid(format!(
                    "tool_calls[{i}] (`{name}`) arguments are not JSON: {e}"
                ))
            })?
        };
        tool_calls.push(ToolCall {
            id,
            name,
            arguments,
        });
    }
    let stop_reason = match choice.get("finish_reason").and_then(Value::as_str) {
        Some("stop") => StopReason::EndTurn,
        Some("tool_calls") | Some("function_call") => StopReason::ToolUse,
        Some("length") => StopReason::MaxTokens,
        Some("content_filter") => StopReason::ContentFilter,
        Some(other) => StopReason::Other(other.to_string()),
        None if !tool_calls.is_empty() => StopReason::ToolUse,
        None => StopReason::EndTurn,
    };
    let count = |pointer: &str| {
        value
            .pointer(pointer)
            .and_then(Value::as_u64)
            .unwrap_or_default()
    };
    let usage = Usage {
        input_tokens: count("/usage/prompt_tokens"),
        output_tokens: count("/usage/completion_tokens"),
        cache_read_tokens: count("/usage/prompt_tokens_details/cached_tokens"),
        cache_write_tokens: 0,
    };
    Ok(ChatResponse {
        model_served,
        content,
        tool_calls,
        usage,
        stop_reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ToolDefinition;

    #[test]
    fn encodes_messages_tools_and_limits() {
        let mut request = ChatRequest::new(
            "gpt-4.1-2025-04-14",
            vec![
                Message::system("be brief"),
                Message::user("fix it"),
                Message::Assistant {
                    content: None,
                    tool_calls: vec![ToolCall {
                        id: "call_1".into(),
                        name: "run".into(),
                        arguments: json!({"command": "cargo test"}),
                    }],
                },
                Message::Tool {
                    call_id: "call_1".into(),
                    content: "ok".into(),
                    is_error: true,
                },
            ],
        );
        request.tools.push(ToolDefinition {
            name: "run".into(),
            description: "run a command".into(),
            parameters: json!({"type": "object", "properties": {"command": {"type": "string"}}}),
        });
        request.temperature = Some(0.0);
        request.max_output_tokens = Some(100);
        let body = encode_request(&request, MaxTokensField::MaxCompletionTokens);
        assert_eq!(
            body,
            json!({
                "model": "gpt-4.1-2025-04-14",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "fix it"},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "call_1", "type": "function",
                         "function": {"name": "run", "arguments": "{\"command\":\"cargo test\"}"}}
                    ]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "ok"}
                ],
                "tools": [{"type": "function", "function": {
                    "name": "run", "description": "run a command",
                    "parameters": {"type": "object", "properties": {"command": {"type": "string"}}}
                }}],
                "temperature": 0.0,
                "max_completion_tokens": 100
            })
        );
        let legacy = encode_request(&request, MaxTokensField::MaxTokens);
        assert_eq!(legacy["max_tokens"], json!(100));
        assert!(legacy.get("max_completion_tokens").is_none());
    }

    /// Assistant turns as Chat Completions takes them back: `content` may be null only when
    /// `tool_calls` is present.
    #[test]
    fn assistant_turns() {
        let call = ToolCall {
            id: "call_1".into(),
            name: "run".into(),
            arguments: json!({}),
        };
        let calls = json!([{"id": "call_1", "type": "function",
                            "function": {"name": "run", "arguments": "{}"}}]);
        let cases: Vec<(Option<&str>, Vec<ToolCall>, Value)> = vec![
            (
                Some("done"),
                vec![],
                json!({"role": "assistant", "content": "done"}),
            ),
            // An empty answer (decoded as no content) goes back as empty text, not null.
            (None, vec![], json!({"role": "assistant", "content": ""})),
            (
                Some(""),
                vec![],
                json!({"role": "assistant", "content": ""}),
            ),
            (
                None,
                vec![call.clone()],
                json!({"role": "assistant", "content": null, "tool_calls": calls}),
            ),
            (
                Some("running"),
                vec![call],
                json!({"role": "assistant", "content": "running", "tool_calls": calls}),
            ),
        ];
        for (content, tool_calls, expected) in cases {
            let message = Message::Assistant {
                content: content.map(str::to_string),
                tool_calls,
            };
            assert_eq!(encode_message(&message), expected, "{message:?}");
        }
    }

    /// (model, override, temperature sent)
    #[test]
    fn temperature_follows_the_model_capabilities() {
        let cases: &[(&str, CapabilityOverride, bool)] = &[
            ("gpt-4.1-2025-04-14", CapabilityOverride::NONE, true),
            ("o3", CapabilityOverride::NONE, false),
            ("o4-mini-2025-04-16", CapabilityOverride::NONE, false),
            ("gpt-5-mini", CapabilityOverride::NONE, false),
            ("gpt-5-chat-latest", CapabilityOverride::NONE, true),
            ("o3", CapabilityOverride::NONE.with_temperature(true), true),
            (
                "llama3.1:8b",
                CapabilityOverride::NONE.with_temperature(false),
                false,
            ),
        ];
        for &(model, overrides, sent) in cases {
            let mut request = ChatRequest::new(model, vec![Message::user("hi")]);
            request.temperature = Some(0.2);
            let format = WireFormat::OpenAi(MaxTokensField::MaxCompletionTokens, overrides);
            let body: Value =
                serde_json::from_slice(&format.encode_request(&request).unwrap()).unwrap();
            assert_eq!(
                body.get("temperature").is_some(),
                sent,
                "{model} {overrides:?}"
            );
            assert_eq!(format.omitted_params(&request).is_empty(), sent, "{model}");
            if overrides.is_empty() {
                assert_eq!(
                    encode_request(&request, MaxTokensField::MaxCompletionTokens),
                    body
                );
            }
        }
    }

    /// A failed tool result reads the same as a successful one: the tool message has no
    /// error field, and its text says what failed.
    #[test]
    fn a_failed_tool_result_is_its_text() {
        let call = Message::Assistant {
            content: None,
            tool_calls: vec![ToolCall {
                id: "call_1".into(),
                name: "run".into(),
                arguments: json!({}),
            }],
        };
        let failed = ChatRequest::new(
            "gpt-4.1",
            vec![call.clone(), Message::tool_error("call_1", "exit status 1")],
        );
        let succeeded = ChatRequest::new(
            "gpt-4.1",
            vec![call, Message::tool_result("call_1", "exit status 1")],
        );
        let encode = |r: &ChatRequest| encode_request(r, MaxTokensField::MaxCompletionTokens);
        assert_eq!(encode(&failed), encode(&succeeded));
        assert_eq!(
            encode(&failed)["messages"][1],
            json!({"role": "tool", "tool_call_id": "call_1", "content": "exit status 1"})
        );
    }

    #[test]
    fn decodes_tool_calls_and_usage() {
        let body = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4.1-2025-04-14",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": null,
                "message": {"role": "assistant", "content": null, "refusal": null, "tool_calls": [
                    {"id": "call_9", "type": "function", "function": {"name": "run", "arguments": "{\"command\":\"ls\"}"}}
                ]}}],
            "usage": {"prompt_tokens": 120, "completion_tokens": 7, "total_tokens": 127,
                      "prompt_tokens_details": {"cached_tokens": 100}}
        });
        let response = decode_response("openai", body.to_string().as_bytes()).unwrap();
        assert_eq!(response.model_served, "gpt-4.1-2025-04-14");
        assert_eq!(response.content, None);
        assert_eq!(response.stop_reason, StopReason::ToolUse);
        assert_eq!(
            response.tool_calls,
            vec![ToolCall {
                id: "call_9".into(),
                name: "run".into(),
                arguments: json!({"command": "ls"})
            }]
        );
        assert_eq!(
            response.usage,
            Usage {
                input_tokens: 120,
                output_tokens: 7,
                cache_read_tokens: 100,
                cache_write_tokens: 0
            }
        );
    }

    #[tokio::test]
    async fn a_bad_base_url_is_a_final_invalid_request() {
        let provider = OpenAiProvider::new(OpenAiConfig {
            name: "local".into(),
            base_url: "not a url".into(),
            api_key: None,
            timeout: Duration::from_secs(1),
            max_tokens_field: MaxTokensField::default(),
        })
        .unwrap();
        let error = provider
            .chat(&ChatRequest::new("m", vec![Message::user("hi")]))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), "invalid_request", "{error}");
        assert!(!error.retryable());
    }

    #[test]
    fn rejects_unreadable_responses() {
        let cases: &[(&str, &str)] = &[
            ("not json", "not JSON"),
            (r#"{"choices": []}"#, "no `model`"),
            (r#"{"model": "m", "choices": []}"#, "no `choices[0]`"),
            (
                r#"{"model": "m", "choices": [{"message": {"tool_calls": [{"id": "c", "function": {"name": "run", "arguments": "{oops"}}]}}]}"#,
                "tool_calls[0] (`run`) arguments are not JSON",
            ),
        ];
        for (body, message) in cases {
            let error = decode_response("openai", body.as_bytes()).unwrap_err();
            assert!(error.to_string().contains(message), "{body}: {error}");
            assert!(!error.retryable());
        }
    }
}
