//! A fake Anthropic Messages server. Anthropic publishes no OpenAPI file, so the checks are
//! written from its Messages API reference: the headers (`x-api-key`, `anthropic-version`,
//! `content-type`), the request fields and their types, content blocks (`text`, `tool_use`
//! in assistant turns, `tool_result` in user turns answering the previous turn's `tool_use`
//! ids, results before text), tool definitions, and the response shape. Parameters a model
//! no longer takes are refused for that model ([`REFUSED_PARAMS`], more with
//! [`FakeAnthropic::refuse_param`]).

use std::collections::BTreeSet;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::fake_http::{FakeHttp, FakeReply, RecordedRequest};

pub const ANTHROPIC_VERSION: &str = "2023-06-01";

const REQUEST_FIELDS: &[&str] = &[
    "model",
    "max_tokens",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "stream",
    "metadata",
    "thinking",
    "service_tier",
];

/// Request fields the API refuses for some models, as `(model, field)`: the model id itself
/// or any id that starts with it and `-` (its snapshots). Claude Opus 4.7 removed the sampling
/// parameters: a request that sets one is a 400 (Anthropic, "Migrating to Claude Opus 4.7",
/// <https://platform.claude.com/docs/en/about-claude/models/migration-guide>).
pub const REFUSED_PARAMS: &[(&str, &str)] = &[
    ("claude-opus-4-7", "temperature"),
    ("claude-opus-4-7", "top_p"),
    ("claude-opus-4-7", "top_k"),
];

/// The fake server. Derefs to [`FakeHttp`].
pub struct FakeAnthropic {
    http: FakeHttp,
    refused: Arc<Mutex<Vec<(String, String)>>>,
}

impl Deref for FakeAnthropic {
    type Target = FakeHttp;

    fn deref(&self) -> &FakeHttp {
        &self.http
    }
}

impl FakeAnthropic {
    /// A server that wants `x-api-key: <key>` and refuses [`REFUSED_PARAMS`].
    pub async fn with_api_key(key: &str) -> FakeAnthropic {
        let key = key.to_string();
        let refused = Arc::new(Mutex::new(default_refusals()));
        let check_refused = refused.clone();
        let check_request = Arc::new(move |request: &RecordedRequest| {
            let refused = check_refused.lock().unwrap().clone();
            check_request_refusing(&key, request, &refused)
        });
        let check_response = Arc::new(|body: &[u8]| check_response(body));
        FakeAnthropic {
            http: FakeHttp::start(check_request, check_response, error_body).await,
            refused,
        }
    }

    /// From now on, refuses requests for `model` (and its snapshots, `model-…`) that set
    /// `field`, the way the API refuses a parameter a model no longer takes.
    pub fn refuse_param(&self, model: &str, field: &str) {
        self.refused
            .lock()
            .unwrap()
            .push((model.to_string(), field.to_string()));
    }

    /// The base URL a provider is configured with (no `/v1`).
    pub fn base_url(&self) -> String {
        self.http.url()
    }
}

fn error_body(message: &str) -> Value {
    json!({"type": "error", "error": {"type": "invalid_request_error", "message": message}})
}

fn default_refusals() -> Vec<(String, String)> {
    REFUSED_PARAMS
        .iter()
        .map(|(model, field)| (model.to_string(), field.to_string()))
        .collect()
}

/// The checks on one request, refusing [`REFUSED_PARAMS`].
pub fn check_request(key: &str, request: &RecordedRequest) -> Vec<String> {
    check_request_refusing(key, request, &default_refusals())
}

/// The checks on one request, refusing the `(model, field)` pairs of `refused` (see
/// [`REFUSED_PARAMS`]).
pub fn check_request_refusing(
    key: &str,
    request: &RecordedRequest,
    refused: &[(String, String)],
) -> Vec<String> {
    let mut problems = Vec::new();
    if request.method != "POST" || request.path != "/v1/messages" {
        problems.push(format!(
            "expected POST /v1/messages, got {} {}",
            request.method, request.path
        ));
    }
    if request.header("x-api-key") != Some(key) {
        problems.push("missing or wrong `x-api-key` header".to_string());
    }
    if request.header("anthropic-version") != Some(ANTHROPIC_VERSION) {
        problems.push(format!(
            "`anthropic-version` is {:?}, expected {ANTHROPIC_VERSION}",
            request.header("anthropic-version")
        ));
    }
    if !request
        .header("content-type")
        .is_some_and(|v| v.starts_with("application/json"))
    {
        problems.push("content-type is not application/json".to_string());
    }
    if request.header("authorization").is_some() {
        problems.push("an `Authorization` header was sent; Messages uses `x-api-key`".to_string());
    }
    match serde_json::from_slice::<Value>(&request.body) {
        Ok(body) => problems.extend(check_request_body_refusing(&body, refused)),
        Err(e) => problems.push(format!("the body is not JSON: {e}")),
    }
    problems
}

/// The checks on a request body, refusing [`REFUSED_PARAMS`].
pub fn check_request_body(body: &Value) -> Vec<String> {
    check_request_body_refusing(body, &default_refusals())
}

/// The checks on a request body, refusing the `(model, field)` pairs of `refused`.
pub fn check_request_body_refusing(body: &Value, refused: &[(String, String)]) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(object) = body.as_object() else {
        return vec!["the body is not an object".to_string()];
    };
    for key in object.keys() {
        if !REQUEST_FIELDS.contains(&key.as_str()) {
            problems.push(format!("{key}: Extra inputs are not permitted"));
        }
    }
    let model = body.get("model").and_then(Value::as_str).unwrap_or("");
    for (family, field) in refused {
        let of_family = model
            .strip_prefix(family.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'));
        if of_family && object.contains_key(field) {
            problems.push(format!(
                "{field}: `{field}` is deprecated for this model ({model})"
            ));
        }
    }
    if body
        .get("model")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        problems.push("model: a non-empty string is required".to_string());
    }
    if body
        .get("max_tokens")
        .and_then(Value::as_u64)
        .is_none_or(|n| n < 1)
    {
        problems.push("max_tokens: an integer ≥ 1 is required".to_string());
    }
    if let Some(t) = body.get("temperature") {
        if !t.as_f64().is_some_and(|t| (0.0..=1.0).contains(&t)) {
            problems.push("temperature: must be a number in 0..=1".to_string());
        }
    }
    match body.get("system") {
        None | Some(Value::String(_)) => {}
        Some(Value::Array(blocks)) => {
            for (i, block) in blocks.iter().enumerate() {
                if block.get("type").and_then(Value::as_str) != Some("text")
                    || !block.get("text").is_some_and(Value::is_string)
                {
                    problems.push(format!("system.{i}: must be a text block"));
                }
            }
        }
        Some(_) => problems.push("system: must be a string or text blocks".to_string()),
    }
    for (i, tool) in body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let name_ok = tool.get("name").and_then(Value::as_str).is_some_and(|n| {
            (1..=64).contains(&n.len())
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
        if !name_ok {
            problems.push(format!(
                "tools.{i}.name: must match ^[a-zA-Z0-9_-]{{1,64}}$"
            ));
        }
        if tool
            .get("input_schema")
            .and_then(|s| s.get("type"))
            .and_then(Value::as_str)
            != Some("object")
        {
            problems.push(format!(
                "tools.{i}.input_schema: must be a JSON Schema with type object"
            ));
        }
        if tool.get("description").is_some_and(|d| !d.is_string()) {
            problems.push(format!("tools.{i}.description: must be a string"));
        }
        for key in tool.as_object().into_iter().flat_map(|o| o.keys()) {
            if ![
                "name",
                "description",
                "input_schema",
                "cache_control",
                "type",
            ]
            .contains(&key.as_str())
            {
                problems.push(format!("tools.{i}.{key}: Extra inputs are not permitted"));
            }
        }
    }
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        problems.push("messages: an array is required".to_string());
        return problems;
    };
    if messages.is_empty() {
        problems.push("messages: at least one message is required".to_string());
    }
    let mut open_tool_uses: BTreeSet<String> = BTreeSet::new();
    for (i, message) in messages.iter().enumerate() {
        let at = format!("messages.{i}");
        for key in message.as_object().into_iter().flat_map(|o| o.keys()) {
            if key != "role" && key != "content" {
                problems.push(format!("{at}.{key}: Extra inputs are not permitted"));
            }
        }
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        if role != "user" && role != "assistant" {
            problems.push(format!(
                "{at}.role: must be `user` or `assistant`, got {role:?}"
            ));
        }
        let blocks: Vec<Value> = match message.get("content") {
            Some(Value::String(text)) => vec![json!({"type": "text", "text": text})],
            Some(Value::Array(blocks)) if !blocks.is_empty() => blocks.clone(),
            _ => {
                problems.push(format!(
                    "{at}.content: a string or a non-empty array of blocks is required"
                ));
                continue;
            }
        };
        let answered: BTreeSet<String> = std::mem::take(&mut open_tool_uses);
        let mut results = BTreeSet::new();
        let mut seen_text = false;
        for (j, block) in blocks.iter().enumerate() {
            let at = format!("{at}.content.{j}");
            match block.get("type").and_then(Value::as_str) {
                Some("text") => {
                    seen_text = true;
                    if block
                        .get("text")
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
                    {
                        problems.push(format!("{at}: text content blocks must be non-empty"));
                    }
                }
                Some("tool_use") => {
                    if role != "assistant" {
                        problems.push(format!("{at}: tool_use blocks belong to assistant turns"));
                    }
                    let id = block.get("id").and_then(Value::as_str).unwrap_or("");
                    if id.is_empty() || block.get("name").and_then(Value::as_str).is_none() {
                        problems.push(format!("{at}: tool_use needs `id` and `name`"));
                    }
                    if !block.get("input").is_some_and(Value::is_object) {
                        problems.push(format!("{at}: tool_use `input` must be an object"));
                    }
                    open_tool_uses.insert(id.to_string());
                }
                Some("tool_result") => {
                    if role != "user" {
                        problems.push(format!("{at}: tool_result blocks belong to user turns"));
                    }
                    if seen_text {
                        problems.push(format!(
                            "{at}: tool_result blocks must come before any text"
                        ));
                    }
                    let id = block
                        .get("tool_use_id")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    if !answered.contains(id) {
                        problems.push(format!(
                            "{at}: tool_result answers `{id}`, which the previous assistant turn did not use"
                        ));
                    }
                    results.insert(id.to_string());
                    match block.get("content") {
                        None | Some(Value::String(_)) => {}
                        Some(Value::Array(parts))
                            if parts.iter().all(|p| p.get("type").is_some()) => {}
                        Some(_) => {
                            problems.push(format!("{at}.content: must be a string or blocks"))
                        }
                    }
                    if block.get("is_error").is_some_and(|e| !e.is_boolean()) {
                        problems.push(format!("{at}.is_error: must be a boolean"));
                    }
                }
                other => problems.push(format!("{at}: unknown block type {other:?}")),
            }
        }
        for id in answered.difference(&results) {
            problems.push(format!(
                "{at}: tool_use `{id}` of the previous turn has no tool_result here"
            ));
        }
    }
    problems
}

/// The checks on a programmed success body.
pub fn check_response(body: &[u8]) -> Vec<String> {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    let string = |key: &str| value.get(key).and_then(Value::as_str);
    if string("type") != Some("message") {
        problems.push("type: must be `message`".to_string());
    }
    if string("role") != Some("assistant") {
        problems.push("role: must be `assistant`".to_string());
    }
    if string("id").is_none() || string("model").is_none() {
        problems.push("`id` and `model` are required strings".to_string());
    }
    match value.get("stop_reason") {
        Some(Value::Null) => {}
        Some(Value::String(reason))
            if [
                "end_turn",
                "max_tokens",
                "stop_sequence",
                "tool_use",
                "pause_turn",
                "refusal",
            ]
            .contains(&reason.as_str()) => {}
        other => problems.push(format!("stop_reason: unexpected {other:?}")),
    }
    for (i, block) in value
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        match block.get("type").and_then(Value::as_str) {
            Some("text") if block.get("text").is_some_and(Value::is_string) => {}
            Some("tool_use")
                if block.get("id").is_some_and(Value::is_string)
                    && block.get("name").is_some_and(Value::is_string)
                    && block.get("input").is_some_and(Value::is_object) => {}
            Some("thinking") => {}
            _ => problems.push(format!("content.{i}: not a valid block: {block}")),
        }
    }
    if !value.get("content").is_some_and(Value::is_array) {
        problems.push("content: an array is required".to_string());
    }
    for key in ["input_tokens", "output_tokens"] {
        if !value
            .pointer(&format!("/usage/{key}"))
            .is_some_and(Value::is_u64)
        {
            problems.push(format!("usage.{key}: an integer is required"));
        }
    }
    problems
}

/// A Messages response to answer with.
#[derive(Debug, Clone)]
pub struct AnthropicMessage {
    pub model: String,
    pub text: Option<String>,
    /// `(id, name, input)`.
    pub tool_uses: Vec<(String, String, Value)>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
}

impl AnthropicMessage {
    pub fn new(model: &str) -> AnthropicMessage {
        AnthropicMessage {
            model: model.to_string(),
            text: None,
            tool_uses: Vec::new(),
            input_tokens: 10,
            output_tokens: 5,
            cache_creation_input_tokens: 0,
            cache_read_input_tokens: 0,
        }
    }

    pub fn text(mut self, text: &str) -> AnthropicMessage {
        self.text = Some(text.to_string());
        self
    }

    pub fn tool_use(mut self, id: &str, name: &str, input: Value) -> AnthropicMessage {
        self.tool_uses
            .push((id.to_string(), name.to_string(), input));
        self
    }

    pub fn usage(
        mut self,
        input: u64,
        output: u64,
        cache_write: u64,
        cache_read: u64,
    ) -> AnthropicMessage {
        self.input_tokens = input;
        self.output_tokens = output;
        self.cache_creation_input_tokens = cache_write;
        self.cache_read_input_tokens = cache_read;
        self
    }

    pub fn body(&self) -> Value {
        let mut content = Vec::new();
        if let Some(text) = &self.text {
            content.push(json!({"type": "text", "text": text}));
        }
        for (id, name, input) in &self.tool_uses {
            content.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
        }
        let stop_reason = if self.tool_uses.is_empty() {
            "end_turn"
        } else {
            "tool_use"
        };
        json!({
            "id": "msg_fake", "type": "message", "role": "assistant", "model": self.model,
            "content": content, "stop_reason": stop_reason, "stop_sequence": null,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                      "cache_creation_input_tokens": self.cache_creation_input_tokens,
                      "cache_read_input_tokens": self.cache_read_input_tokens}
        })
    }

    pub fn reply(&self) -> FakeReply {
        FakeReply::json(200, &self.body())
    }
}

/// 529 `overloaded_error`.
pub fn overloaded() -> FakeReply {
    FakeReply::json(
        529,
        &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    )
}

/// 429 `rate_limit_error` with `retry-after`.
pub fn rate_limited(retry_after_seconds: u64) -> FakeReply {
    FakeReply::json(
        429,
        &json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Number of request tokens has exceeded your per-minute rate limit"}}),
    )
    .header("retry-after", &retry_after_seconds.to_string())
}
