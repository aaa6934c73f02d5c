//! A fake OpenAI-compatible Chat Completions server. Every request body is validated against
//! `CreateChatCompletionRequest` and every programmed success body against
//! `CreateChatCompletionResponse` from the official description
//! (`specs/openai-openapi.yaml` of this crate); a request that breaks it is answered 400 and
//! recorded as a violation.

use std::collections::BTreeSet;
use std::ops::Deref;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::fake_http::{openai_error, FakeHttp, FakeReply, RecordedRequest};
use crate::openapi::OpenApi;

pub const REQUEST_SCHEMA: &str = "CreateChatCompletionRequest";
pub const RESPONSE_SCHEMA: &str = "CreateChatCompletionResponse";

/// The fake server; see the module docs. Derefs to [`FakeHttp`] for `push`, `requests`,
/// `violations` and `assert_clean`.
pub struct FakeOpenAi {
    http: FakeHttp,
}

impl Deref for FakeOpenAi {
    type Target = FakeHttp;

    fn deref(&self) -> &FakeHttp {
        &self.http
    }
}

impl FakeOpenAi {
    /// A server that wants no key (like a local vLLM or Ollama).
    pub async fn start() -> FakeOpenAi {
        FakeOpenAi::start_inner(None).await
    }

    /// A server that wants `Authorization: Bearer <key>`.
    pub async fn with_api_key(key: &str) -> FakeOpenAi {
        FakeOpenAi::start_inner(Some(key.to_string())).await
    }

    async fn start_inner(key: Option<String>) -> FakeOpenAi {
        let spec = OpenApi::openai();
        let check_request =
            Arc::new(move |request: &RecordedRequest| check_request(spec, key.as_deref(), request));
        let check_response = Arc::new(move |body: &[u8]| check_response(spec, body));
        FakeOpenAi {
            http: FakeHttp::start(check_request, check_response, openai_error).await,
        }
    }

    /// The base URL a provider is configured with (`…/v1`).
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.http.url())
    }
}

/// The contract checks on one request (also usable without a server).
pub fn check_request(spec: &OpenApi, key: Option<&str>, request: &RecordedRequest) -> Vec<String> {
    let mut problems = Vec::new();
    if request.method != "POST" || request.path != "/v1/chat/completions" {
        problems.push(format!(
            "expected POST /v1/chat/completions, got {} {}",
            request.method, request.path
        ));
    }
    if !request
        .header("content-type")
        .is_some_and(|v| v.starts_with("application/json"))
    {
        problems.push(format!(
            "content-type is {:?}, expected application/json",
            request.header("content-type")
        ));
    }
    if let Some(key) = key {
        let expected = format!("Bearer {key}");
        if request.header("authorization") != Some(expected.as_str()) {
            problems.push("missing or wrong `Authorization: Bearer` header".to_string());
        }
    }
    let body: Value = match serde_json::from_slice(&request.body) {
        Ok(body) => body,
        Err(e) => {
            problems.push(format!("the body is not JSON: {e}"));
            return problems;
        }
    };
    problems.extend(check_request_body(spec, &body));
    problems
}

/// Schema validation, plus what the API enforces beyond the schema: no unknown top-level
/// fields, every `tool` message answers a tool call of an earlier assistant message, and an
/// assistant message has `content` unless it has `tool_calls` (or the deprecated
/// `function_call`): the schema lets `content` be null, its description says "Required
/// unless `tool_calls` or `function_call` is specified".
pub fn check_request_body(spec: &OpenApi, body: &Value) -> Vec<String> {
    let mut problems = match spec.validate(REQUEST_SCHEMA, body) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .into_iter()
            .map(|e| format!("{REQUEST_SCHEMA}: {e}"))
            .collect(),
    };
    let known = top_level_properties(spec);
    if let Some(object) = body.as_object() {
        for key in object.keys() {
            if !known.contains(key) {
                problems.push(format!("unrecognized request argument `{key}`"));
            }
        }
    }
    let mut call_ids = BTreeSet::new();
    for (i, message) in body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        match message.get("role").and_then(Value::as_str) {
            Some("assistant") => {
                let has_tool_calls = message
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .is_some_and(|calls| !calls.is_empty());
                let has_function_call = message
                    .get("function_call")
                    .is_some_and(|call| !call.is_null());
                if message.get("content").is_none_or(Value::is_null)
                    && !has_tool_calls
                    && !has_function_call
                {
                    problems.push(format!(
                        "/messages/{i}: an assistant message needs `content` unless `tool_calls` or `function_call` is specified"
                    ));
                }
                for call in message
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(id) = call.get("id").and_then(Value::as_str) {
                        call_ids.insert(id.to_string());
                    }
                    if let Some(arguments) =
                        call.pointer("/function/arguments").and_then(Value::as_str)
                    {
                        if serde_json::from_str::<Value>(arguments).is_err() {
                            problems.push(format!(
                                "/messages/{i}: tool call arguments are not a JSON string"
                            ));
                        }
                    }
                }
            }
            Some("tool") => {
                let id = message
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if !call_ids.contains(id) {
                    problems.push(format!(
                        "/messages/{i}: tool message answers `{id}`, which no earlier assistant message called"
                    ));
                }
            }
            _ => {}
        }
    }
    problems
}

/// The properties `CreateChatCompletionRequest` declares, through `allOf` and `$ref`.
fn top_level_properties(spec: &OpenApi) -> BTreeSet<String> {
    fn collect(spec: &OpenApi, schema: &Value, out: &mut BTreeSet<String>) {
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            if let Some(name) = reference.strip_prefix("#/components/schemas/") {
                if let Some(target) = spec.schema(name) {
                    collect(spec, target, out);
                }
            }
        }
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            out.extend(properties.keys().cloned());
        }
        for branch in schema
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            collect(spec, branch, out);
        }
    }
    let mut out = BTreeSet::new();
    if let Some(schema) = spec.schema(REQUEST_SCHEMA) {
        collect(spec, schema, &mut out);
    }
    out
}

/// The contract check on a programmed success body.
pub fn check_response(spec: &OpenApi, body: &[u8]) -> Vec<String> {
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        // A deliberately broken body (to test the client) is sent as is.
        Err(_) => return Vec::new(),
    };
    match spec.validate(RESPONSE_SCHEMA, &value) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .into_iter()
            .map(|e| format!("{RESPONSE_SCHEMA}: {e}"))
            .collect(),
    }
}

/// A chat completion to answer with.
#[derive(Debug, Clone)]
pub struct Completion {
    pub model: String,
    pub content: Option<String>,
    /// `(id, function name, arguments)`.
    pub tool_calls: Vec<(String, String, Value)>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: Option<u64>,
    pub finish_reason: Option<String>,
}

impl Completion {
    pub fn new(model: &str) -> Completion {
        Completion {
            model: model.to_string(),
            content: None,
            tool_calls: Vec::new(),
            prompt_tokens: 10,
            completion_tokens: 5,
            cached_tokens: None,
            finish_reason: None,
        }
    }

    pub fn content(mut self, text: &str) -> Completion {
        self.content = Some(text.to_string());
        self
    }

    pub fn tool_call(mut self, id: &str, name: &str, arguments: Value) -> Completion {
        self.tool_calls
            .push((id.to_string(), name.to_string(), arguments));
        self
    }

    pub fn usage(mut self, prompt: u64, completion: u64) -> Completion {
        self.prompt_tokens = prompt;
        self.completion_tokens = completion;
        self
    }

    pub fn cached(mut self, tokens: u64) -> Completion {
        self.cached_tokens = Some(tokens);
        self
    }

    pub fn finish_reason(mut self, reason: &str) -> Completion {
        self.finish_reason = Some(reason.to_string());
        self
    }

    /// The response body.
    pub fn body(&self) -> Value {
        let mut message = Map::new();
        message.insert("role".into(), json!("assistant"));
        message.insert("content".into(), json!(self.content));
        message.insert("refusal".into(), Value::Null);
        if !self.tool_calls.is_empty() {
            let calls: Vec<Value> = self
                .tool_calls
                .iter()
                .map(|(id, name, arguments)| {
                    json!({"id": id, "type": "function",
                           "function": {"name": name, "arguments": arguments.to_string()}})
                })
                .collect();
            message.insert("tool_calls".into(), Value::Array(calls));
        }
        let finish_reason = self.finish_reason.clone().unwrap_or_else(|| {
            if self.tool_calls.is_empty() {
                "stop".to_string()
            } else {
                "tool_calls".to_string()
            }
        });
        let mut usage = json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        });
        if let Some(cached) = self.cached_tokens {
            usage["prompt_tokens_details"] = json!({"cached_tokens": cached, "audio_tokens": 0});
        }
        json!({
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 1_760_000_000,
            "model": self.model,
            "choices": [{"index": 0, "message": Value::Object(message), "logprobs": null,
                         "finish_reason": finish_reason}],
            "usage": usage,
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        })
    }

    /// A 200 reply with [`Completion::body`].
    pub fn reply(&self) -> FakeReply {
        FakeReply::json(200, &self.body())
    }
}

/// 429 with `Retry-After: <seconds>`.
pub fn rate_limited(retry_after_seconds: u64) -> FakeReply {
    FakeReply::json(
        429,
        &json!({"error": {"message": "Rate limit reached for requests", "type": "requests",
                          "param": null, "code": "rate_limit_exceeded"}}),
    )
    .header("retry-after", &retry_after_seconds.to_string())
}

/// 500.
pub fn server_error() -> FakeReply {
    FakeReply::json(
        500,
        &json!({"error": {"message": "The server had an error while processing your request.",
                          "type": "server_error", "param": null, "code": null}}),
    )
}

/// 400 with `message`.
pub fn bad_request(message: &str) -> FakeReply {
    FakeReply::json(400, &openai_error(message))
}
