#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The replay provider serves recorded calls and refuses a request that differs.

use flightdeck_models::{
    CapabilityOverride, ChatRequest, MaxTokensField, Message, ModelError, Provider, RecordedCall,
    ReplayProvider, SamplingParam, Script, ScriptedProvider, WireFormat,
};
use serde_json::json;

fn conversation(task: &str) -> ChatRequest {
    let mut request = ChatRequest::new(
        "gpt-4.1-2025-04-14",
        vec![Message::system("you fix code"), Message::user(task)],
    );
    request.max_output_tokens = Some(512);
    request
}

fn openai_answer(content: &str) -> Vec<u8> {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4.1-2025-04-14",
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": null,
                     "message": {"role": "assistant", "content": content, "refusal": null}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
    })
    .to_string()
    .into_bytes()
}

fn recorded(format: WireFormat, request: &ChatRequest, response: Vec<u8>) -> RecordedCall {
    RecordedCall {
        format,
        request_body: format.encode_request(request).unwrap(),
        response_body: response,
    }
}

#[tokio::test]
async fn serves_recorded_calls_in_order_with_the_recorded_bytes() {
    let format = WireFormat::OpenAi(
        MaxTokensField::MaxCompletionTokens,
        CapabilityOverride::NONE,
    );
    let calls = vec![
        recorded(format, &conversation("one"), openai_answer("first")),
        recorded(format, &conversation("two"), openai_answer("second")),
    ];
    let replay = ReplayProvider::new("openai", calls.clone());
    assert_eq!(replay.wire_format(), format);
    for (i, (task, content)) in [("one", "first"), ("two", "second")]
        .into_iter()
        .enumerate()
    {
        let exchange = replay.chat(&conversation(task)).await.unwrap();
        assert_eq!(exchange.response.content.as_deref(), Some(content));
        assert_eq!(exchange.request_body, calls[i].request_body);
        assert_eq!(exchange.response_body, calls[i].response_body);
    }
    assert!(replay.is_exhausted());
    let error = replay.chat(&conversation("three")).await.unwrap_err();
    assert_eq!(
        error,
        ModelError::ReplayExhausted {
            index: 2,
            recorded: 2
        }
    );
}

/// A request that differs: (how the new request is changed, pointer, expected, actual).
#[tokio::test]
async fn mismatch_table() {
    type Change = fn(&mut ChatRequest);
    let cases: Vec<(Change, &str, &str, &str)> = vec![
        (
            |r| r.messages[1] = Message::user("other"),
            "/messages/1/content",
            "\"fix the build\"",
            "\"other\"",
        ),
        (
            |r| r.model = "gpt-4o".into(),
            "/model",
            "\"gpt-4.1-2025-04-14\"",
            "\"gpt-4o\"",
        ),
        (
            |r| r.messages.push(Message::user("more")),
            "/messages/2",
            "(absent)",
            r#"{"role":"user","content":"more"}"#,
        ),
        (
            |r| r.max_output_tokens = None,
            "/max_completion_tokens",
            "512",
            "(absent)",
        ),
        (
            |r| r.temperature = Some(0.0),
            "/temperature",
            "(absent)",
            "0.0",
        ),
    ];
    let format = WireFormat::OpenAi(
        MaxTokensField::MaxCompletionTokens,
        CapabilityOverride::NONE,
    );
    for (change, pointer, expected, actual) in cases {
        let original = conversation("fix the build");
        let warmup = conversation("warm up");
        let replay = ReplayProvider::new(
            "openai",
            vec![
                recorded(format, &warmup, openai_answer("ok")),
                recorded(format, &original, openai_answer("done")),
            ],
        );
        replay.chat(&warmup).await.unwrap();
        let mut changed = original.clone();
        change(&mut changed);
        let error = replay.chat(&changed).await.unwrap_err();
        assert_eq!(
            error,
            ModelError::ReplayMismatch {
                index: 1,
                pointer: pointer.to_string(),
                expected: expected.to_string(),
                actual: actual.to_string(),
            },
            "{pointer}"
        );
        assert!(error
            .to_string()
            .starts_with("replay diverged at model call 1"));
        // The mismatched call is not consumed: the same request fails the same way.
        assert_eq!(replay.served(), 1);
    }
}

#[tokio::test]
async fn replays_what_the_scripted_model_recorded() {
    let source = "model = \"sim-1\"\n[[turn]]\ncontent = \"a\"\n[[turn]]\ncontent = \"b\"\n";
    let live = ScriptedProvider::new(Script::parse(source, "s.toml").unwrap());
    let requests = [conversation("one"), conversation("two")];
    let mut calls = Vec::new();
    for request in &requests {
        let exchange = live.chat(request).await.unwrap();
        // The scripted model is sent no bytes; its request is recorded in the neutral format.
        calls.push(RecordedCall {
            format: live.wire_format(),
            request_body: live.wire_format().encode_request(request).unwrap(),
            response_body: exchange.response_body,
        });
    }
    let replay = ReplayProvider::new("scripted", calls);
    for (request, content) in requests.iter().zip(["a", "b"]) {
        let response = replay.chat(request).await.unwrap().response;
        assert_eq!(response.content.as_deref(), Some(content));
        assert_eq!(response.model_served, "sim-1");
    }
}

#[tokio::test]
async fn an_unreadable_recording_is_reported() {
    let request = conversation("x");
    let replay = ReplayProvider::new(
        "anthropic",
        vec![recorded(
            WireFormat::Anthropic(CapabilityOverride::NONE),
            &request,
            b"<html>".to_vec(),
        )],
    );
    let error = replay.chat(&request).await.unwrap_err();
    assert_eq!(error.kind(), "replay_invalid");
    assert!(error
        .to_string()
        .starts_with("recorded model call 0 cannot be replayed"));
}

#[tokio::test]
async fn a_capability_override_travels_with_the_recorded_format() {
    let mut request = conversation("x");
    request.temperature = Some(0.2);
    let plain = WireFormat::OpenAi(
        MaxTokensField::MaxCompletionTokens,
        CapabilityOverride::NONE,
    );
    let refusing = WireFormat::OpenAi(
        MaxTokensField::MaxCompletionTokens,
        CapabilityOverride::NONE.with_temperature(false),
    );
    assert_eq!(
        refusing.omitted_params(&request),
        vec![SamplingParam::Temperature]
    );
    assert_eq!(plain.omitted_params(&request), Vec::new());
    // Recorded by a provider told the model refuses `temperature`: replayed with that format,
    // the new request encodes the same way.
    let replay = ReplayProvider::new(
        "openai",
        vec![recorded(refusing, &request, openai_answer("ok"))],
    );
    assert_eq!(replay.wire_format(), refusing);
    replay.chat(&request).await.unwrap();
    // The same body claimed by the plain format: the new request has a temperature it lacks.
    let replay = ReplayProvider::new(
        "openai",
        vec![RecordedCall {
            format: plain,
            request_body: refusing.encode_request(&request).unwrap(),
            response_body: openai_answer("ok"),
        }],
    );
    let error = replay.chat(&request).await.unwrap_err();
    assert!(
        matches!(&error, ModelError::ReplayMismatch { pointer, .. } if pointer == "/temperature"),
        "{error:?}"
    );
}
