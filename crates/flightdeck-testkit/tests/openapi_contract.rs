#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The validator and the fake OpenAI server really hold requests and responses to the official
//! description, and what flightdeck-models sends passes it.

use flightdeck_models::openai::{encode_request, MaxTokensField};
use flightdeck_models::{ChatRequest, Message, ToolCall, ToolDefinition};
use flightdeck_testkit::fake_openai::{
    check_request_body, check_response, Completion, REQUEST_SCHEMA, RESPONSE_SCHEMA,
};
use flightdeck_testkit::openapi::OpenApi;
use flightdeck_testkit::FakeOpenAi;
use serde_json::{json, Value};

fn spec() -> &'static OpenApi {
    OpenApi::openai()
}

#[test]
fn the_validator_understands_every_keyword_the_schemas_use() {
    for name in [REQUEST_SCHEMA, RESPONSE_SCHEMA] {
        assert!(
            spec().schema(name).is_some(),
            "{name} is in the description"
        );
        let unknown = spec().unknown_keywords(name);
        assert!(
            unknown.is_empty(),
            "{name} uses unchecked keywords: {unknown:?}"
        );
    }
}

fn full_request() -> ChatRequest {
    let mut request = ChatRequest::new(
        "gpt-4.1-2025-04-14",
        vec![
            Message::system("You fix Rust code."),
            Message::user("Upgrade serde."),
            Message::Assistant {
                content: Some("Running the tests.".into()),
                tool_calls: vec![
                    ToolCall {
                        id: "call_1".into(),
                        name: "run".into(),
                        arguments: json!({"command": "cargo test"}),
                    },
                    ToolCall {
                        id: "call_2".into(),
                        name: "read_file".into(),
                        arguments: json!({"path": "Cargo.toml"}),
                    },
                ],
            },
            Message::tool_result("call_1", "test result: ok"),
            Message::Tool {
                call_id: "call_2".into(),
                content: "no such file".into(),
                is_error: true,
            },
            Message::Assistant {
                content: None,
                tool_calls: vec![ToolCall {
                    id: "call_3".into(),
                    name: "finish".into(),
                    arguments: json!({"summary": "done"}),
                }],
            },
            Message::tool_result("call_3", "ok"),
            Message::assistant("All done."),
            Message::user("Thanks."),
            // A turn that answered with empty text and no tool calls.
            Message::Assistant {
                content: None,
                tool_calls: Vec::new(),
            },
            Message::user("Anything else?"),
        ],
    );
    request.tools = vec![
        ToolDefinition {
            name: "run".into(),
            description: "Run a shell command in the workspace.".into(),
            parameters: json!({"type": "object", "properties": {"command": {"type": "string"}},
                               "required": ["command"], "additionalProperties": false}),
        },
        ToolDefinition {
            name: "finish".into(),
            description: "End the task.".into(),
            parameters: json!({"type": "object", "properties": {"summary": {"type": "string"}}}),
        },
    ];
    request.temperature = Some(0.0);
    request.max_output_tokens = Some(4096);
    request
}

#[test]
fn what_flightdeck_sends_is_a_valid_request() {
    let minimal = ChatRequest::new("llama3.1:8b", vec![Message::user("hi")]);
    for request in [minimal, full_request()] {
        for field in [
            MaxTokensField::MaxCompletionTokens,
            MaxTokensField::MaxTokens,
        ] {
            let body = encode_request(&request, field);
            let problems = check_request_body(spec(), &body);
            assert!(problems.is_empty(), "{body:#}\n{problems:#?}");
        }
    }
}

/// Requests the API would refuse: (change to a valid body, a fragment of the violation).
#[test]
fn malformed_requests_are_rejected() {
    let valid = encode_request(&full_request(), MaxTokensField::MaxCompletionTokens);
    type Change = fn(&mut Value);
    let cases: Vec<(&str, Change, &str)> = vec![
        (
            "no messages",
            |b| {
                b.as_object_mut().unwrap().remove("messages");
            },
            "missing required property `messages`",
        ),
        (
            "no model",
            |b| {
                b.as_object_mut().unwrap().remove("model");
            },
            "missing required property `model`",
        ),
        (
            "empty messages",
            |b| b["messages"] = json!([]),
            "fewer than 1 items",
        ),
        (
            "unknown role",
            |b| b["messages"][1]["role"] = json!("robot"),
            "/messages/1: matches none of oneOf",
        ),
        (
            "model not a string",
            |b| b["model"] = json!(4),
            "/model: matches none of anyOf",
        ),
        (
            "temperature too high",
            |b| b["temperature"] = json!(3.5),
            "/temperature: 3.5 is above the maximum",
        ),
        (
            "tool without function",
            |b| {
                b["tools"][0].as_object_mut().unwrap().remove("function");
            },
            "/tools/0: matches none of oneOf",
        ),
        (
            "tool type typo",
            |b| b["tools"][0]["type"] = json!("fn"),
            "/tools/0: matches none of oneOf",
        ),
        (
            "max tokens as text",
            |b| b["max_completion_tokens"] = json!("4096"),
            "/max_completion_tokens: expected integer",
        ),
        (
            "user content as number",
            |b| b["messages"][1]["content"] = json!(7),
            "/messages/1: matches none of oneOf",
        ),
        (
            "unknown argument",
            |b| b["max_output_tokens"] = json!(10),
            "unrecognized request argument `max_output_tokens`",
        ),
        (
            "orphan tool result",
            |b| b["messages"][3]["tool_call_id"] = json!("call_404"),
            "answers `call_404`, which no earlier assistant message called",
        ),
        (
            "assistant text null without tool calls",
            |b| b["messages"][7]["content"] = Value::Null,
            "/messages/7: an assistant message needs `content` unless `tool_calls`",
        ),
        (
            "assistant text missing without tool calls",
            |b| {
                b["messages"][7].as_object_mut().unwrap().remove("content");
            },
            "/messages/7: an assistant message needs `content` unless `tool_calls`",
        ),
        (
            "assistant text null with empty tool calls",
            |b| {
                b["messages"][7]["content"] = Value::Null;
                b["messages"][7]["tool_calls"] = json!([]);
            },
            "/messages/7: an assistant message needs `content` unless `tool_calls`",
        ),
        (
            "arguments not JSON",
            |b| b["messages"][2]["tool_calls"][0]["function"]["arguments"] = json!("{oops"),
            "tool call arguments are not a JSON string",
        ),
    ];
    for (name, change, fragment) in cases {
        let mut body = valid.clone();
        change(&mut body);
        let problems = check_request_body(spec(), &body);
        assert!(
            problems.iter().any(|p| p.contains(fragment)),
            "{name}: wanted a violation containing {fragment:?}, got {problems:#?}"
        );
    }
}

#[test]
fn responses_are_checked_too() {
    let good = Completion::new("gpt-4.1-2025-04-14")
        .content("hi")
        .tool_call("call_1", "run", json!({"command": "ls"}))
        .usage(100, 20)
        .cached(64)
        .body();
    assert_eq!(
        check_response(spec(), good.to_string().as_bytes()),
        Vec::<String>::new()
    );
    type Change = fn(&mut Value);
    let cases: Vec<(&str, Change, &str)> = vec![
        (
            "bad finish reason",
            |b| b["choices"][0]["finish_reason"] = json!("done"),
            "/choices/0/finish_reason",
        ),
        (
            "no choices",
            |b| {
                b.as_object_mut().unwrap().remove("choices");
            },
            "missing required property `choices`",
        ),
        (
            "wrong object",
            |b| b["object"] = json!("chat.completion.chunk"),
            "/object",
        ),
        (
            "usage as text",
            |b| b["usage"]["prompt_tokens"] = json!("100"),
            "/usage/prompt_tokens: expected integer",
        ),
        (
            "tool call without id",
            |b| {
                b["choices"][0]["message"]["tool_calls"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("id");
            },
            "/choices/0/message/tool_calls/0",
        ),
    ];
    for (name, change, fragment) in cases {
        let mut body = good.clone();
        change(&mut body);
        let problems = check_response(spec(), body.to_string().as_bytes());
        assert!(
            problems.iter().any(|p| p.contains(fragment)),
            "{name}: wanted {fragment:?}, got {problems:#?}"
        );
    }
}

#[tokio::test]
async fn the_fake_answers_a_malformed_request_with_400_and_records_it() {
    let fake = FakeOpenAi::with_api_key("sk-test").await;
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{}/chat/completions", fake.base_url()))
        .header("authorization", "Bearer sk-test")
        .header("content-type", "application/json")
        .body(
            json!({"model": "gpt-4.1", "messages": [{"role": "robot", "content": "hi"}]})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("/messages/0: matches none of oneOf"),
        "{message}"
    );
    assert_eq!(fake.violations().len(), 1, "{:?}", fake.violations());

    // A wrong key and a wrong path are violations as well.
    let response = client
        .post(format!("{}/completions", fake.base_url()))
        .header("authorization", "Bearer nope")
        .header("content-type", "application/json")
        .body(
            json!({"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let violations = fake.violations();
    assert!(
        violations
            .iter()
            .any(|v| v.contains("expected POST /v1/chat/completions")),
        "{violations:?}"
    );
    assert!(
        violations
            .iter()
            .any(|v| v.contains("Authorization: Bearer")),
        "{violations:?}"
    );
}

#[tokio::test]
async fn the_fake_refuses_an_assistant_turn_with_null_content_and_no_tool_calls() {
    let fake = FakeOpenAi::start().await;
    fake.push(Completion::new("gpt-4.1").content("hi").reply());
    let client = reqwest::Client::new();
    let send = |assistant: Value| {
        let body = json!({"model": "gpt-4.1", "messages": [
            {"role": "user", "content": "hi"},
            assistant,
            {"role": "user", "content": "hello?"}
        ]});
        client
            .post(format!("{}/chat/completions", fake.base_url()))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    // The shape flightdeck used to send for an empty answer.
    let refused = send(json!({"role": "assistant", "content": null}))
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 400);
    let violations = fake.violations();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(
        violations[0].contains("/messages/1: an assistant message needs `content`"),
        "{violations:?}"
    );
    // What it sends now.
    let accepted = send(json!({"role": "assistant", "content": ""}))
        .await
        .unwrap();
    assert_eq!(accepted.status().as_u16(), 200);
    assert_eq!(fake.violations().len(), 1);
}

#[tokio::test]
async fn the_fake_refuses_to_send_an_invalid_programmed_response() {
    let fake = FakeOpenAi::start().await;
    let mut body = Completion::new("gpt-4.1").content("hi").body();
    body["choices"][0]["finish_reason"] = json!("done");
    fake.push(flightdeck_testkit::FakeReply::json(200, &body));
    let response = reqwest::Client::new()
        .post(format!("{}/chat/completions", fake.base_url()))
        .header("content-type", "application/json")
        .body(
            json!({"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 500);
    assert!(
        fake.violations()[0].contains("/choices/0/finish_reason"),
        "{:?}",
        fake.violations()
    );
}
