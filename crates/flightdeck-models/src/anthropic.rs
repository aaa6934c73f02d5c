//! Anthropic Messages (`POST {base_url}/v1/messages`).

use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{json, Map, Value};

use crate::capabilities::{Capabilities, CapabilityOverride, ProviderKind};
use crate::error::ModelError;
use crate::http::{join_url, secret_header, status_error, ApiKey, HttpClient};
use crate::provider::{Provider, WireFormat};
use crate::types::{ChatRequest, ChatResponse, Exchange, Message, StopReason, ToolCall, Usage};

/// Anthropic's public endpoint (without the `/v1`).
pub const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";
/// The `anthropic-version` header sent with every request.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// `max_tokens` is required by Messages; this is sent when the request sets no limit.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Settings of one Anthropic provider.
#[derive(Debug, Clone)]
pub struct AnthropicConfig {
    /// The provider's name in model refs and errors.
    pub name: String,
    /// Without the `/v1`, e.g. `https://api.anthropic.com`.
    pub base_url: String,
    /// Sent as `x-api-key`.
    pub api_key: ApiKey,
    /// The limit for one whole call.
    pub timeout: Duration,
}

impl AnthropicConfig {
    /// Anthropic itself, with a 120 s timeout.
    pub fn anthropic(api_key: ApiKey) -> AnthropicConfig {
        AnthropicConfig {
            name: "anthropic".to_string(),
            base_url: ANTHROPIC_BASE_URL.to_string(),
            api_key,
            timeout: Duration::from_secs(120),
        }
    }
}

/// The Messages provider.
pub struct AnthropicProvider {
    config: AnthropicConfig,
    capabilities: CapabilityOverride,
    http: HttpClient,
}

impl std::fmt::Debug for AnthropicProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnthropicProvider")
            .field("config", &self.config)
            .field("capabilities", &self.capabilities)
            .finish_non_exhaustive()
    }
}

impl AnthropicProvider {
    pub fn new(config: AnthropicConfig) -> Result<AnthropicProvider, ModelError> {
        let http = HttpClient::new(&config.name, config.timeout)?;
        Ok(AnthropicProvider {
            config,
            capabilities: CapabilityOverride::NONE,
            http,
        })
    }

    /// Applies `overrides` over the built-in capability table for every model this provider
    /// is asked for (see [`crate::OpenAiProvider::with_capabilities`]).
    pub fn with_capabilities(mut self, overrides: CapabilityOverride) -> AnthropicProvider {
        self.capabilities = overrides;
        self
    }
}

#[async_trait]
impl Provider for AnthropicProvider {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn wire_format(&self) -> WireFormat {
        WireFormat::Anthropic(self.capabilities)
    }

    async fn chat(&self, request: &ChatRequest) -> Result<Exchange, ModelError> {
        let name = &self.config.name;
        let request_body = self.wire_format().encode_request(request)?;
        let headers = vec![
            (
                HeaderName::from_static("x-api-key"),
                secret_header(name, self.config.api_key.expose())?,
            ),
            (
                HeaderName::from_static("anthropic-version"),
                HeaderValue::from_static(ANTHROPIC_VERSION),
            ),
        ];
        let url = join_url(&self.config.base_url, "v1/messages");
        let reply = self
            .http
            .post_json(
                name,
                &url,
                headers,
                request_body.clone(),
                Some(&self.config.api_key),
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

/// The Messages request body for `request`.
///
/// System messages become the top-level `system` (joined by a blank line). Tool results are
/// `tool_result` blocks of a user message; consecutive messages of the same role are merged
/// into one message, since Messages expects user and assistant turns to alternate. A failed
/// tool result carries `"is_error": true` on its block. What the built-in table says the
/// model refuses ([`Capabilities::for_model`]) is left out.
pub fn encode_request(request: &ChatRequest) -> Value {
    let capabilities = Capabilities::for_model(ProviderKind::Anthropic, &request.model);
    encode_request_with(request, capabilities)
}

/// [`encode_request`] for a model that accepts `capabilities`.
pub fn encode_request_with(request: &ChatRequest, capabilities: Capabilities) -> Value {
    let mut system: Vec<&str> = Vec::new();
    let mut messages: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for message in &request.messages {
        let (role, blocks) = match message {
            Message::System { content } => {
                system.push(content);
                continue;
            }
            Message::User { content } => ("user", vec![json!({"type": "text", "text": content})]),
            Message::Assistant {
                content,
                tool_calls,
            } => {
                let mut blocks = Vec::new();
                if let Some(text) = content.as_deref().filter(|t| !t.is_empty()) {
                    blocks.push(json!({"type": "text", "text": text}));
                }
                for call in tool_calls {
                    blocks.push(json!({
                        "type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments,
                    }));
                }
                ("assistant", blocks)
            }
            Message::Tool {
                call_id,
                content,
                is_error,
            } => {
                let mut block =
                    json!({"type": "tool_result", "tool_use_id": call_id, "content": content});
                if *is_error {
                    block["is_error"] = json!(true);
                }
                ("user", vec![block])
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match messages.last_mut() {
            Some((last_role, last_blocks)) if *last_role == role => last_blocks.extend(blocks),
            _ => messages.push((role, blocks)),
        }
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(request.model));
    body.insert(
        "max_tokens".into(),
        json!(request.max_output_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
    );
    if !system.is_empty() {
        body.insert("system".into(), json!(system.join("\n\n")));
    }
    let messages: Vec<Value> = messages
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    body.insert("messages".into(), Value::Array(messages));
    if !request.tools.is_empty() {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .map(|tool| {
                json!({"name": tool.name, "description": tool.description, "input_schema": tool.parameters})
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(temperature) = request.temperature.filter(|_| capabilities.temperature) {
        body.insert("temperature".into(), json!(temperature));
    }
    Value::Object(body)
}

/// Reads a Messages response body. Text blocks are joined with newlines; other block types
/// (thinking, server tools) are skipped.
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
    let blocks = value
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("no `content` array".to_string()))?;
    let mut texts = Vec::new();
    let mut tool_calls = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                let text = block
                    .get("text")
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid(format!("content[{i}] (text) has no `text`")))?;
                texts.push(text);
            }
            Some("tool_use") => {
                let field = |name: &str| {
                    block
                        .get(name)
                        .and_then(Value::as_str)
                        .ok_or_else(|| invalid(format!("content[{i}] (tool_use) has no `{name}`")))
                };
                tool_calls.push(ToolCall {
                    id: field("id")?.to_string(),
                    name: field("name")?.to_string(),
                    arguments: block
                        .get("input")
                        .cloned()
                        .unwrap_or_else(|| Value::Object(Map::new())),
                });
            }
            _ => {}
        }
    }
    let content = (!texts.is_empty())
        .then(|| texts.join("\n"))
        .filter(|t| !t.is_empty());
    let stop_reason = match value.get("stop_reason").and_then(Value::as_str) {
        Some("end_turn") | None => StopReason::EndTurn,
        Some("tool_use") => StopReason::ToolUse,
        Some("max_tokens") => StopReason::MaxTokens,
        Some("stop_sequence") => StopReason::StopSequence,
        Some("refusal") => StopReason::ContentFilter,
        Some(other) => StopReason::Other(other.to_string()),
    };
    let count = |name: &str| {
        value
            .pointer(&format!("/usage/{name}"))
            .and_then(Value::as_u64)
            .unwrap_or_default()
    };
    let cache_read = count("cache_read_input_tokens");
    let cache_write = count("cache_creation_input_tokens");
    let usage = Usage {
        // Messages counts uncached input separately; the neutral count includes the cache.
        input_tokens: count("input_tokens")
            .saturating_add(cache_read)
            .saturating_add(cache_write),
        output_tokens: count("output_tokens"),
        cache_read_tokens: cache_read,
        cache_write_tokens: cache_write,
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
    fn encodes_system_tool_blocks_and_merges_roles() {
        let mut request = ChatRequest::new(
            "claude-sonnet-4-5-20250929",
            vec![
                Message::system("a"),
                Message::system("b"),
                Message::user("fix it"),
                Message::Assistant {
                    content: Some("running".into()),
                    tool_calls: vec![
                        ToolCall {
                            id: "toolu_1".into(),
                            name: "run".into(),
                            arguments: json!({"command": "ls"}),
                        },
                        ToolCall {
                            id: "toolu_2".into(),
                            name: "read_file".into(),
                            arguments: json!({"path": "a"}),
                        },
                    ],
                },
                Message::tool_result("toolu_1", "x"),
                Message::tool_error("toolu_2", "no such file"),
                Message::user("go on"),
            ],
        );
        request.tools.push(ToolDefinition {
            name: "run".into(),
            description: "run".into(),
            parameters: json!({"type": "object"}),
        });
        request.temperature = Some(0.5);
        assert_eq!(
            encode_request(&request),
            json!({
                "model": "claude-sonnet-4-5-20250929",
                "max_tokens": DEFAULT_MAX_TOKENS,
                "system": "a\n\nb",
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "fix it"}]},
                    {"role": "assistant", "content": [
                        {"type": "text", "text": "running"},
                        {"type": "tool_use", "id": "toolu_1", "name": "run", "input": {"command": "ls"}},
                        {"type": "tool_use", "id": "toolu_2", "name": "read_file", "input": {"path": "a"}}
                    ]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "x"},
                        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "no such file", "is_error": true},
                        {"type": "text", "text": "go on"}
                    ]}
                ],
                "tools": [{"name": "run", "description": "run", "input_schema": {"type": "object"}}],
                "temperature": 0.5
            })
        );
    }

    /// `temperature` is sent only to a model that accepts it: (model, override, sent).
    #[test]
    fn temperature_follows_the_model_capabilities() {
        let cases: &[(&str, CapabilityOverride, bool)] = &[
            ("claude-sonnet-4-5-20250929", CapabilityOverride::NONE, true),
            ("claude-opus-4-6", CapabilityOverride::NONE, true),
            ("claude-opus-4-7", CapabilityOverride::NONE, false),
            ("claude-opus-4-7-20260416", CapabilityOverride::NONE, false),
            (
                "claude-opus-4-7",
                CapabilityOverride::NONE.with_temperature(true),
                true,
            ),
            (
                "claude-sonnet-4-5-20250929",
                CapabilityOverride::NONE.with_temperature(false),
                false,
            ),
        ];
        for &(model, overrides, sent) in cases {
            let mut request = ChatRequest::new(model, vec![Message::user("hi")]);
            request.temperature = Some(0.0);
            let capabilities =
                Capabilities::for_model(ProviderKind::Anthropic, model).with_override(overrides);
            let body = encode_request_with(&request, capabilities);
            assert_eq!(
                body.get("temperature").is_some(),
                sent,
                "{model} {overrides:?}"
            );
            if overrides.is_empty() {
                assert_eq!(encode_request(&request), body, "{model}");
            }
            // The neutral request keeps what was asked.
            assert_eq!(request.temperature, Some(0.0));
            let format = WireFormat::Anthropic(overrides);
            let bytes = format.encode_request(&request).unwrap();
            assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), body);
            let omitted: Vec<&str> = format
                .omitted_params(&request)
                .into_iter()
                .map(|p| p.as_str())
                .collect();
            let expected: &[&str] = if sent { &[] } else { &["temperature"] };
            assert_eq!(omitted, expected, "{model} {overrides:?}");
        }
    }

    #[test]
    fn decodes_blocks_and_cache_usage() {
        let body = json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "s"},
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_1", "name": "list_files", "input": {"path": "."}}
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 5,
                      "cache_creation_input_tokens": 100, "cache_read_input_tokens": 1000}
        });
        let response = decode_response("anthropic", body.to_string().as_bytes()).unwrap();
        assert_eq!(response.content.as_deref(), Some("Let me look."));
        assert_eq!(response.stop_reason, StopReason::ToolUse);
        assert_eq!(response.tool_calls[0].name, "list_files");
        assert_eq!(
            response.usage,
            Usage {
                input_tokens: 1110,
                output_tokens: 5,
                cache_read_tokens: 1000,
                cache_write_tokens: 100
            }
        );
    }
}
