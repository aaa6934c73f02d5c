#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The replay provider serves a recording's attempts in order, through the provider it
//! stands for: answers decoded with its wire format, failures as recorded, the point where
//! the recording stopped.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use flightdeck_models::{
    CapabilityOverride, ChatRequest, MaxTokensField, Message, OpenAiConfig, OpenAiProvider,
    Provider, RecordedAttempt, Recording, ReplayProvider, Script, ScriptedProvider, WireFormat,
};
use serde_json::json;

/// Recorded attempts per model, served in order.
#[derive(Default)]
struct Tape(Mutex<BTreeMap<String, VecDeque<RecordedAttempt>>>);

impl Tape {
    fn with(model: &str, attempts: Vec<RecordedAttempt>) -> Arc<Tape> {
        let tape = Tape::default();
        tape.0
            .lock()
            .unwrap()
            .insert(model.to_string(), attempts.into());
        Arc::new(tape)
    }
}

#[async_trait]
impl Recording for Tape {
    async fn next_attempt(&self, model: &str) -> Option<RecordedAttempt> {
        self.0.lock().unwrap().get_mut(model)?.pop_front()
    }
}

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

fn openai() -> Arc<dyn Provider> {
    Arc::new(
        OpenAiProvider::new(OpenAiConfig {
            name: "openai".into(),
            base_url: "http://127.0.0.1:9/v1".into(),
            api_key: None,
            timeout: std::time::Duration::from_secs(1),
            max_tokens_field: MaxTokensField::MaxCompletionTokens,
        })
        .unwrap(),
    )
}

const MODEL: &str = "openai:gpt-4.1-2025-04-14";

#[tokio::test]
async fn serves_the_recorded_answers_in_order_and_sends_nothing() {
    let tape = Tape::with(
        MODEL,
        vec![
            RecordedAttempt::Answered {
                response_body: openai_answer("first"),
            },
            RecordedAttempt::Answered {
                response_body: openai_answer("second"),
            },
        ],
    );
    let replay = ReplayProvider::new(MODEL, openai(), tape);
    // It stands for the provider: same name, same wire format.
    assert_eq!(replay.name(), "openai");
    assert_eq!(
        replay.wire_format(),
        WireFormat::OpenAi(
            MaxTokensField::MaxCompletionTokens,
            CapabilityOverride::NONE
        )
    );
    for expected in ["first", "second"] {
        let exchange = replay.chat(&conversation("x")).await.unwrap();
        assert_eq!(exchange.response.content.as_deref(), Some(expected));
        assert!(exchange.request_body.is_empty(), "a replay sends nothing");
        assert_eq!(exchange.response_body, openai_answer(expected));
    }
    let error = replay.chat(&conversation("x")).await.unwrap_err();
    assert_eq!(error.kind(), "replay_exhausted");
    assert!(error.to_string().contains(MODEL), "{error}");
}

#[tokio::test]
async fn recorded_failures_come_back_as_recorded() {
    let tape = Tape::with(
        MODEL,
        vec![
            RecordedAttempt::Failed {
                message: "HTTP 429: slow down".into(),
                kind: "rate_limited".into(),
                retryable: true,
                response_body: None,
            },
            RecordedAttempt::Failed {
                message: "served another model".into(),
                kind: "model_mismatch".into(),
                retryable: false,
                response_body: Some(openai_answer("checked again")),
            },
            RecordedAttempt::Interrupted,
        ],
    );
    let replay = ReplayProvider::new(MODEL, openai(), tape);
    let error = replay.chat(&conversation("x")).await.unwrap_err();
    assert_eq!((error.kind(), error.retryable()), ("rate_limited", true));
    assert_eq!(error.to_string(), "HTTP 429: slow down");
    // A failed pin check kept the answer: it is served, so the router checks it again.
    let exchange = replay.chat(&conversation("x")).await.unwrap();
    assert_eq!(exchange.response.content.as_deref(), Some("checked again"));
    let error = replay.chat(&conversation("x")).await.unwrap_err();
    assert_eq!((error.kind(), error.retryable()), ("interrupted", false));
}

#[tokio::test]
async fn an_unreadable_answer_is_reported() {
    let tape = Tape::with(
        MODEL,
        vec![RecordedAttempt::Answered {
            response_body: b"<html>".to_vec(),
        }],
    );
    let replay = ReplayProvider::new(MODEL, openai(), tape);
    let error = replay.chat(&conversation("x")).await.unwrap_err();
    assert_eq!(error.kind(), "replay_invalid");
    assert!(error.to_string().contains("does not decode"), "{error}");
}

#[tokio::test]
async fn a_scripted_models_cursor_moves_on_with_the_answers_served() {
    let source = "model = \"sim-1\"\n[[turn]]\ncontent = \"a\"\n[[turn]]\ncontent = \"b\"\n";
    let live = ScriptedProvider::new(Script::parse(source, "s.toml").unwrap());
    let first = live.chat(&conversation("one")).await.unwrap();
    // Replayed: the first answer from the recording, then (the recording ends) the script
    // itself must be at its second turn, as the recorded mission's was.
    let inner = Arc::new(ScriptedProvider::new(
        Script::parse(source, "s.toml").unwrap(),
    ));
    let tape = Tape::with(
        "scripted:s.toml",
        vec![RecordedAttempt::Answered {
            response_body: first.response_body,
        }],
    );
    let replay = ReplayProvider::new("scripted:s.toml", inner.clone(), tape);
    let served = replay.chat(&conversation("one")).await.unwrap();
    assert_eq!(served.response.content.as_deref(), Some("a"));
    assert_eq!(served.response.model_served, "sim-1");
    let next = inner.chat(&conversation("two")).await.unwrap();
    assert_eq!(next.response.content.as_deref(), Some("b"));
}
