#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The real providers over real HTTP against the contract-checking fakes: wire shapes,
//! headers, decoding, error classification, retries and fallback, and the API key never
//! reaching recorded bytes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use flightdeck_models::{
    AnthropicConfig, AnthropicProvider, ApiKey, CapabilityOverride, ChatRequest, Exchange,
    MaxTokensField, Message, ModelError, ModelRef, OpenAiConfig, OpenAiProvider, Provider,
    RetryPolicy, RouteError, RouteEvent, RouteObserver, Router, SamplingParam, Sleeper, StopReason,
    Target, ToolDefinition, Usage,
};
use flightdeck_testkit::fake_anthropic::{self, AnthropicMessage};
use flightdeck_testkit::fake_openai::{self, Completion};
use flightdeck_testkit::{FakeAnthropic, FakeOpenAi, FakeReply};
use serde_json::json;

const OPENAI_KEY: &str = "sk-test-openai-5f3c9a1e";
const ANTHROPIC_KEY: &str = "sk-ant-test-0b7d2e44";
const GPT: &str = "gpt-4.1-2025-04-14";
const CLAUDE: &str = "claude-sonnet-4-5-20250929";

fn openai(fake: &FakeOpenAi, timeout: Duration) -> Arc<OpenAiProvider> {
    Arc::new(
        OpenAiProvider::new(OpenAiConfig {
            name: "openai".into(),
            base_url: fake.base_url(),
            api_key: Some(ApiKey::new(OPENAI_KEY)),
            timeout,
            max_tokens_field: MaxTokensField::MaxCompletionTokens,
        })
        .unwrap(),
    )
}

fn anthropic(fake: &FakeAnthropic, timeout: Duration) -> Arc<AnthropicProvider> {
    Arc::new(
        AnthropicProvider::new(AnthropicConfig {
            name: "anthropic".into(),
            base_url: fake.base_url(),
            api_key: ApiKey::new(ANTHROPIC_KEY),
            timeout,
        })
        .unwrap(),
    )
}

fn request() -> ChatRequest {
    let mut request = ChatRequest::new(
        "replaced-by-the-router",
        vec![
            Message::system("You fix Rust code."),
            Message::user("Upgrade serde to 1.0.219."),
        ],
    );
    request.tools.push(ToolDefinition {
        name: "run".into(),
        description: "Run a command.".into(),
        parameters: json!({"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}),
    });
    request.temperature = Some(0.0);
    request.max_output_tokens = Some(1024);
    request
}

fn assert_no_key(bytes: &[u8], what: &str) {
    let text = String::from_utf8_lossy(bytes);
    for key in [OPENAI_KEY, ANTHROPIC_KEY] {
        assert!(!text.contains(key), "{what} contains an API key:\n{text}");
    }
}

fn assert_exchange_has_no_key(exchange: &Exchange) {
    assert_no_key(&exchange.request_body, "request bytes");
    assert_no_key(&exchange.response_body, "response bytes");
}

#[derive(Default)]
struct RecordingSleeper(Mutex<Vec<Duration>>);

#[async_trait]
impl Sleeper for RecordingSleeper {
    async fn sleep(&self, duration: Duration) {
        self.0.lock().unwrap().push(duration);
    }
}

/// Keeps every byte the engine would record, to search for keys.
#[derive(Default)]
struct Recorder {
    bytes: Vec<Vec<u8>>,
    lines: Vec<String>,
    /// The request bytes announced before the last call.
    last_attempt: Vec<u8>,
}

#[async_trait]
impl RouteObserver for Recorder {
    async fn on_event(
        &mut self,
        event: RouteEvent<'_>,
    ) -> Result<(), flightdeck_models::RouteAbort> {
        match event {
            RouteEvent::Attempt {
                model,
                request_body,
                ..
            } => {
                self.bytes.push(request_body.to_vec());
                self.last_attempt = request_body.to_vec();
                self.lines.push(format!("requested {model}"));
            }
            RouteEvent::Responded { record } | RouteEvent::Failed { record } => {
                if let Some(exchange) = &record.exchange {
                    self.bytes.push(exchange.request_body.clone());
                    self.bytes.push(exchange.response_body.clone());
                }
                match &record.outcome {
                    Ok(served) => self.lines.push(format!("responded {served}")),
                    Err(error) => {
                        self.bytes.push(error.to_string().into_bytes());
                        self.lines.push(format!(
                            "failed {} retryable={}",
                            error.kind(),
                            error.retryable()
                        ));
                    }
                }
            }
            RouteEvent::Waiting { duration, .. } => {
                self.lines.push(format!("wait {}ms", duration.as_millis()))
            }
            RouteEvent::Fallback(fallback) => {
                self.bytes.push(fallback.reason.clone().into_bytes());
                self.lines
                    .push(format!("fallback {} -> {}", fallback.from, fallback.to));
            }
        }
        Ok(())
    }
}

#[tokio::test]
async fn openai_round_trip_with_tool_calls_and_cached_usage() {
    let fake = FakeOpenAi::with_api_key(OPENAI_KEY).await;
    fake.push(
        Completion::new(GPT)
            .tool_call("call_abc", "run", json!({"command": "cargo test"}))
            .usage(1200, 30)
            .cached(1024)
            .reply(),
    );
    fake.push(
        Completion::new(GPT)
            .content("All green.")
            .usage(1300, 4)
            .reply(),
    );
    let provider = openai(&fake, Duration::from_secs(10));

    let mut conversation = request();
    conversation.model = GPT.into();
    let first = provider.chat(&conversation).await.unwrap();
    assert_eq!(first.response.model_served, GPT);
    assert_eq!(first.response.stop_reason, StopReason::ToolUse);
    assert_eq!(first.response.tool_calls[0].id, "call_abc");
    assert_eq!(
        first.response.tool_calls[0].arguments,
        json!({"command": "cargo test"})
    );
    assert_eq!(
        first.response.usage,
        Usage {
            input_tokens: 1200,
            output_tokens: 30,
            cache_read_tokens: 1024,
            cache_write_tokens: 0
        }
    );
    conversation.messages.push(first.response.to_message());
    conversation
        .messages
        .push(Message::tool_result("call_abc", "test result: ok"));
    let second = provider.chat(&conversation).await.unwrap();
    assert_eq!(second.response.content.as_deref(), Some("All green."));
    assert_eq!(second.response.stop_reason, StopReason::EndTurn);

    fake.assert_clean();
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    for (sent, exchange) in requests.iter().zip([&first, &second]) {
        // The recorded bytes are exactly the bytes on the wire.
        assert_eq!(sent.body, exchange.request_body);
        assert_eq!(
            sent.header("authorization"),
            Some(format!("Bearer {OPENAI_KEY}").as_str())
        );
        assert_exchange_has_no_key(exchange);
    }
    assert_eq!(requests[1].json()["messages"][3]["role"], "tool");
}

#[tokio::test]
async fn an_openai_compatible_server_without_a_key_gets_no_authorization_header() {
    let fake = FakeOpenAi::start().await;
    fake.push(Completion::new("llama3.1:8b").content("hi").reply());
    let provider = OpenAiProvider::new(OpenAiConfig {
        name: "ollama".into(),
        base_url: format!("{}/", fake.base_url()),
        api_key: None,
        timeout: Duration::from_secs(10),
        max_tokens_field: MaxTokensField::MaxTokens,
    })
    .unwrap();
    let mut request = request();
    request.model = "llama3.1:8b".into();
    let exchange = provider.chat(&request).await.unwrap();
    assert_eq!(exchange.response.model_served, "llama3.1:8b");
    fake.assert_clean();
    let sent = &fake.requests()[0];
    assert_eq!(sent.header("authorization"), None);
    assert_eq!(sent.json()["max_tokens"], 1024);
}

#[tokio::test]
async fn anthropic_round_trip_with_tool_use_blocks_and_cache_usage() {
    let fake = FakeAnthropic::with_api_key(ANTHROPIC_KEY).await;
    fake.push(
        AnthropicMessage::new(CLAUDE)
            .text("Let me run the tests.")
            .tool_use("toolu_01", "run", json!({"command": "cargo test"}))
            .usage(20, 40, 1000, 0)
            .reply(),
    );
    fake.push(
        AnthropicMessage::new(CLAUDE)
            .text("Done.")
            .usage(30, 2, 0, 1000)
            .reply(),
    );
    let provider = anthropic(&fake, Duration::from_secs(10));
    let mut conversation = request();
    conversation.model = CLAUDE.into();
    let first = provider.chat(&conversation).await.unwrap();
    assert_eq!(
        first.response.content.as_deref(),
        Some("Let me run the tests.")
    );
    assert_eq!(first.response.tool_calls[0].id, "toolu_01");
    assert_eq!(first.response.stop_reason, StopReason::ToolUse);
    assert_eq!(
        first.response.usage,
        Usage {
            input_tokens: 1020,
            output_tokens: 40,
            cache_read_tokens: 0,
            cache_write_tokens: 1000
        }
    );
    conversation.messages.push(first.response.to_message());
    conversation
        .messages
        .push(Message::tool_error("toolu_01", "1 test failed"));
    let second = provider.chat(&conversation).await.unwrap();
    assert_eq!(second.response.usage.cache_read_tokens, 1000);
    assert_eq!(second.response.usage.input_tokens, 1030);

    fake.assert_clean();
    let requests = fake.requests();
    for (sent, exchange) in requests.iter().zip([&first, &second]) {
        assert_eq!(sent.body, exchange.request_body);
        assert_eq!(sent.header("x-api-key"), Some(ANTHROPIC_KEY));
        assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
        assert_exchange_has_no_key(exchange);
    }
    let body = requests[1].json();
    assert_eq!(body["system"], "You fix Rust code.");
    assert_eq!(
        body["messages"][2]["content"][0],
        json!({"type": "tool_result", "tool_use_id": "toolu_01", "content": "1 test failed", "is_error": true})
    );
}

#[tokio::test]
async fn the_anthropic_fake_rejects_what_the_api_would() {
    let fake = FakeAnthropic::with_api_key(ANTHROPIC_KEY).await;
    let provider = anthropic(&fake, Duration::from_secs(10));
    // A tool result that answers nothing.
    let mut bad = request();
    bad.model = CLAUDE.into();
    bad.messages.push(Message::tool_result("toolu_404", "x"));
    let error = provider.chat(&bad).await.unwrap_err();
    assert!(!error.retryable());
    assert!(
        error
            .to_string()
            .contains("tool_result answers `toolu_404`"),
        "{error}"
    );
    // A wrong key.
    let wrong = AnthropicProvider::new(AnthropicConfig {
        name: "anthropic".into(),
        base_url: fake.base_url(),
        api_key: ApiKey::new("sk-ant-wrong"),
        timeout: Duration::from_secs(10),
    })
    .unwrap();
    let mut fine = request();
    fine.model = CLAUDE.into();
    let error = wrong.chat(&fine).await.unwrap_err();
    assert!(error.to_string().contains("x-api-key"), "{error}");
    assert!(!error.to_string().contains("sk-ant-wrong"), "{error}");
    let violations = fake.violations();
    // The orphan result also came after the user's text in the merged user turn.
    assert!(
        violations
            .iter()
            .any(|v| v.contains("tool_result blocks must come before any text")),
        "{violations:?}"
    );
    assert_eq!(violations.len(), 3, "{violations:?}");
}

#[tokio::test]
async fn an_empty_openai_answer_goes_back_as_empty_text() {
    let fake = FakeOpenAi::with_api_key(OPENAI_KEY).await;
    // An answer with no text and no tool calls.
    fake.push(Completion::new(GPT).reply());
    fake.push(Completion::new(GPT).content("Sorry, here it is.").reply());
    let provider = openai(&fake, Duration::from_secs(10));
    let mut conversation = request();
    conversation.model = GPT.into();
    let first = provider.chat(&conversation).await.unwrap();
    assert_eq!(first.response.content, None);
    assert!(first.response.tool_calls.is_empty());
    conversation.messages.push(first.response.to_message());
    conversation
        .messages
        .push(Message::user("You said nothing."));
    provider.chat(&conversation).await.unwrap();
    fake.assert_clean();
    assert_eq!(
        fake.requests()[1].json()["messages"][2],
        json!({"role": "assistant", "content": ""})
    );
}

#[tokio::test]
async fn a_model_that_refuses_temperature_is_not_sent_it() {
    const OPUS: &str = "claude-opus-4-7";
    const REFUSING: &str = "claude-test-no-sampling";
    let fake = FakeAnthropic::with_api_key(ANTHROPIC_KEY).await;
    // A model the built-in table does not know, which this server refuses it for.
    fake.refuse_param(REFUSING, "temperature");
    let reply = |model: &str| AnthropicMessage::new(model).text("ok").reply();
    let plain = anthropic(&fake, Duration::from_secs(10));
    let with = |overrides: CapabilityOverride| {
        AnthropicProvider::new(AnthropicConfig {
            name: "anthropic".into(),
            base_url: fake.base_url(),
            api_key: ApiKey::new(ANTHROPIC_KEY),
            timeout: Duration::from_secs(10),
        })
        .unwrap()
        .with_capabilities(overrides)
    };
    let ask = |model: &str| {
        let mut request = request();
        request.model = model.into();
        request
    };

    // The built-in table: Opus 4.7 is not sent the template's temperature, and says so.
    fake.push(reply(OPUS));
    let exchange = plain.chat(&ask(OPUS)).await.unwrap();
    assert_eq!(
        plain.wire_format().omitted_params(&ask(OPUS)),
        vec![SamplingParam::Temperature]
    );
    assert!(fake.requests()[0].json().get("temperature").is_none());
    assert_eq!(fake.requests()[0].body, exchange.request_body);
    // A model that takes it still gets it.
    fake.push(reply(CLAUDE));
    plain.chat(&ask(CLAUDE)).await.unwrap();
    assert_eq!(fake.requests()[1].json()["temperature"], 0.0);
    assert!(plain.wire_format().omitted_params(&ask(CLAUDE)).is_empty());
    // An installation's override for a model the table does not know.
    let told = with(CapabilityOverride::NONE.with_temperature(false));
    fake.push(reply(REFUSING));
    told.chat(&ask(REFUSING)).await.unwrap();
    assert!(fake.requests()[2].json().get("temperature").is_none());
    fake.assert_clean();

    // The server really refuses it: without the override, and when an override forces it.
    let error = plain.chat(&ask(REFUSING)).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("temperature: `temperature` is deprecated for this model"),
        "{error}"
    );
    assert!(!error.retryable());
    let forced = with(CapabilityOverride::NONE.with_temperature(true));
    let error = forced.chat(&ask(OPUS)).await.unwrap_err();
    assert!(
        error.to_string().contains("`temperature` is deprecated"),
        "{error}"
    );
    assert_eq!(fake.violations().len(), 2, "{:?}", fake.violations());
    assert_eq!(fake.pending(), 0);
}

#[tokio::test]
async fn an_openai_reasoning_model_is_not_sent_temperature() {
    let fake = FakeOpenAi::with_api_key(OPENAI_KEY).await;
    fake.push(Completion::new("o3-2025-04-16").content("ok").reply());
    fake.push(Completion::new("my-local-model").content("ok").reply());
    let provider = openai(&fake, Duration::from_secs(10));
    let mut reasoning = request();
    reasoning.model = "o3-2025-04-16".into();
    provider.chat(&reasoning).await.unwrap();
    let told = OpenAiProvider::new(OpenAiConfig {
        name: "local".into(),
        base_url: fake.base_url(),
        api_key: Some(ApiKey::new(OPENAI_KEY)),
        timeout: Duration::from_secs(10),
        max_tokens_field: MaxTokensField::MaxCompletionTokens,
    })
    .unwrap()
    .with_capabilities(CapabilityOverride::NONE.with_temperature(false));
    let mut local = request();
    local.model = "my-local-model".into();
    told.chat(&local).await.unwrap();
    fake.assert_clean();
    for sent in fake.requests() {
        assert!(
            sent.json().get("temperature").is_none(),
            "{:?}",
            sent.json()
        );
    }
    assert_eq!(
        told.wire_format().omitted_params(&local),
        vec![SamplingParam::Temperature]
    );
}

/// `is_error` on a tool result: a boolean or nothing.
#[test]
fn the_anthropic_fake_checks_is_error() {
    let body = |is_error: Option<serde_json::Value>| {
        let mut result = json!({"type": "tool_result", "tool_use_id": "toolu_1", "content": "x"});
        if let Some(value) = is_error {
            result["is_error"] = value;
        }
        json!({"model": CLAUDE, "max_tokens": 10, "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "run", "input": {}}]},
            {"role": "user", "content": [result]}
        ]})
    };
    let cases: Vec<(Option<serde_json::Value>, bool)> = vec![
        (None, true),
        (Some(json!(true)), true),
        (Some(json!(false)), true),
        (Some(json!("true")), false),
        (Some(json!(1)), false),
        (Some(serde_json::Value::Null), false),
    ];
    for (is_error, accepted) in cases {
        let problems = fake_anthropic::check_request_body(&body(is_error.clone()));
        assert_eq!(problems.is_empty(), accepted, "{is_error:?}: {problems:?}");
        if !accepted {
            assert_eq!(
                problems,
                vec!["messages.2.content.0.is_error: must be a boolean".to_string()]
            );
        }
    }
}

struct Setup {
    openai: FakeOpenAi,
    anthropic: FakeAnthropic,
    sleeper: Arc<RecordingSleeper>,
    router: Router,
}

async fn setup(timeout: Duration, max_retries: u32) -> Setup {
    let openai_fake = FakeOpenAi::with_api_key(OPENAI_KEY).await;
    let anthropic_fake = FakeAnthropic::with_api_key(ANTHROPIC_KEY).await;
    let sleeper = Arc::new(RecordingSleeper::default());
    let router = Router::new(
        vec![
            Target::new(
                ModelRef::parse(&format!("openai:{GPT}")).unwrap(),
                openai(&openai_fake, timeout),
            ),
            Target::new(
                ModelRef::parse(&format!("anthropic:{CLAUDE}")).unwrap(),
                anthropic(&anthropic_fake, timeout),
            ),
        ],
        RetryPolicy {
            max_retries,
            max_total_wait: Duration::from_secs(30),
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
        },
        sleeper.clone(),
    );
    Setup {
        openai: openai_fake,
        anthropic: anthropic_fake,
        sleeper,
        router,
    }
}

/// One routing scenario over real HTTP.
struct Scenario {
    name: &'static str,
    max_retries: u32,
    timeout_ms: u64,
    openai: Vec<FakeReply>,
    anthropic: Vec<FakeReply>,
    lines: &'static [&'static str],
    sleeps_ms: &'static [u64],
    /// `Ok(served)` or a fragment of the error.
    result: Result<&'static str, &'static str>,
}

fn scenarios() -> Vec<Scenario> {
    let gpt = || Completion::new(GPT).content("from gpt").reply();
    let claude = || AnthropicMessage::new(CLAUDE).text("from claude").reply();
    vec![
        Scenario {
            name: "429 with Retry-After is honoured, then the pinned model answers",
            max_retries: 2,
            timeout_ms: 5000,
            openai: vec![fake_openai::rate_limited(2), gpt()],
            anthropic: vec![],
            lines: &[
                "requested openai:gpt-4.1-2025-04-14",
                "failed rate_limited retryable=true",
                "wait 2000ms",
                "requested openai:gpt-4.1-2025-04-14",
                "responded gpt-4.1-2025-04-14",
            ],
            sleeps_ms: &[2000],
            result: Ok(GPT),
        },
        Scenario {
            name: "429 whose Retry-After exceeds the wait limit falls back",
            max_retries: 2,
            timeout_ms: 5000,
            openai: vec![fake_openai::rate_limited(120)],
            anthropic: vec![claude()],
            lines: &[
                "requested openai:gpt-4.1-2025-04-14",
                "failed rate_limited retryable=true",
                "fallback openai:gpt-4.1-2025-04-14 -> anthropic:claude-sonnet-4-5-20250929",
                "requested anthropic:claude-sonnet-4-5-20250929",
                "responded claude-sonnet-4-5-20250929",
            ],
            sleeps_ms: &[],
            result: Ok(CLAUDE),
        },
        Scenario {
            name: "500 falls back once retries are spent",
            max_retries: 1,
            timeout_ms: 5000,
            openai: vec![fake_openai::server_error(), fake_openai::server_error()],
            anthropic: vec![claude()],
            lines: &[
                "requested openai:gpt-4.1-2025-04-14",
                "failed server_error retryable=true",
                "wait 500ms",
                "requested openai:gpt-4.1-2025-04-14",
                "failed server_error retryable=true",
                "fallback openai:gpt-4.1-2025-04-14 -> anthropic:claude-sonnet-4-5-20250929",
                "requested anthropic:claude-sonnet-4-5-20250929",
                "responded claude-sonnet-4-5-20250929",
            ],
            sleeps_ms: &[500],
            result: Ok(CLAUDE),
        },
        Scenario {
            name: "a timeout falls back",
            max_retries: 0,
            timeout_ms: 300,
            openai: vec![gpt().delayed(Duration::from_secs(3))],
            anthropic: vec![claude()],
            lines: &[
                "requested openai:gpt-4.1-2025-04-14",
                "failed timeout retryable=true",
                "fallback openai:gpt-4.1-2025-04-14 -> anthropic:claude-sonnet-4-5-20250929",
                "requested anthropic:claude-sonnet-4-5-20250929",
                "responded claude-sonnet-4-5-20250929",
            ],
            sleeps_ms: &[],
            result: Ok(CLAUDE),
        },
        Scenario {
            name: "a 400 does not fall back",
            max_retries: 2,
            timeout_ms: 5000,
            openai: vec![fake_openai::bad_request("Invalid 'messages[1].content'")],
            anthropic: vec![],
            lines: &[
                "requested openai:gpt-4.1-2025-04-14",
                "failed http_status retryable=false",
            ],
            sleeps_ms: &[],
            result: Err("openai answered HTTP 400: Invalid 'messages[1].content' (not retryable, so no fallback was tried)"),
        },
        Scenario {
            name: "a different snapshot fails the call",
            max_retries: 2,
            timeout_ms: 5000,
            openai: vec![Completion::new("gpt-4.1-2025-09-30").content("hi").reply()],
            anthropic: vec![],
            lines: &[
                "requested openai:gpt-4.1-2025-04-14",
                "failed snapshot_mismatch retryable=false",
            ],
            sleeps_ms: &[],
            result: Err("pinned `gpt-4.1-2025-04-14` but the provider served `gpt-4.1-2025-09-30` (a different snapshot)"),
        },
        Scenario {
            name: "all fail: the error lists what was tried",
            max_retries: 1,
            timeout_ms: 5000,
            openai: vec![fake_openai::server_error(), fake_openai::rate_limited(1)],
            anthropic: vec![fake_anthropic::overloaded(), fake_anthropic::overloaded()],
            lines: &[
                "requested openai:gpt-4.1-2025-04-14",
                "failed server_error retryable=true",
                "wait 500ms",
                "requested openai:gpt-4.1-2025-04-14",
                "failed rate_limited retryable=true",
                "fallback openai:gpt-4.1-2025-04-14 -> anthropic:claude-sonnet-4-5-20250929",
                "requested anthropic:claude-sonnet-4-5-20250929",
                "failed overloaded retryable=true",
                "wait 500ms",
                "requested anthropic:claude-sonnet-4-5-20250929",
                "failed overloaded retryable=true",
            ],
            sleeps_ms: &[500, 500],
            result: Err(concat!(
                "every model failed (4 attempts); tried:\n",
                "  1. openai:gpt-4.1-2025-04-14: openai answered HTTP 500: The server had an error while processing your request.\n",
                "  2. openai:gpt-4.1-2025-04-14 (retry 1): openai answered HTTP 429: Rate limit reached for requests (retry after 1s)\n",
                "  3. anthropic:claude-sonnet-4-5-20250929: anthropic answered HTTP 529: Overloaded\n",
                "  4. anthropic:claude-sonnet-4-5-20250929 (retry 1): anthropic answered HTTP 529: Overloaded",
            )),
        },
    ]
}

#[tokio::test]
async fn routing_over_real_http() {
    for scenario in scenarios() {
        let setup = setup(
            Duration::from_millis(scenario.timeout_ms),
            scenario.max_retries,
        )
        .await;
        for reply in scenario.openai.iter().cloned() {
            setup.openai.push(reply);
        }
        for reply in scenario.anthropic.iter().cloned() {
            setup.anthropic.push(reply);
        }
        let mut recorder = Recorder::default();
        let result = setup.router.run_observed(&request(), &mut recorder).await;
        let name = scenario.name;
        assert_eq!(recorder.lines, scenario.lines, "{name}");
        let sleeps: Vec<u64> = setup
            .sleeper
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|d| d.as_millis() as u64)
            .collect();
        assert_eq!(sleeps, scenario.sleeps_ms, "{name}");
        match (&result, scenario.result) {
            (Ok(routed), Ok(served)) => {
                assert_eq!(routed.exchange.response.model_served, served, "{name}");
                // What was announced before the call is what was sent.
                assert_eq!(
                    recorder.last_attempt, routed.exchange.request_body,
                    "{name}"
                );
                assert_exchange_has_no_key(&routed.exchange);
            }
            (Err(error), Err(fragment)) => {
                assert!(
                    error.to_string().contains(fragment),
                    "{name}:\n{error}\nwanted:\n{fragment}"
                );
                assert_no_key(error.to_string().as_bytes(), "the error");
            }
            (result, expected) => panic!("{name}: got {result:?}, wanted {expected:?}"),
        }
        // Every programmed reply was used, no request broke the contract, and no key is in
        // anything the engine would record.
        assert_eq!(setup.openai.pending(), 0, "{name}: openai replies left");
        assert_eq!(
            setup.anthropic.pending(),
            0,
            "{name}: anthropic replies left"
        );
        setup.openai.assert_clean();
        setup.anthropic.assert_clean();
        for bytes in &recorder.bytes {
            assert_no_key(bytes, name);
        }
        // The pinned id is what was sent.
        for sent in setup.openai.requests() {
            assert_eq!(sent.json()["model"], GPT, "{name}");
        }
    }
}

#[tokio::test]
async fn a_key_echoed_by_the_server_is_scrubbed_from_bytes_and_errors() {
    let fake = FakeOpenAi::with_api_key(OPENAI_KEY).await;
    // A misbehaving proxy that repeats the key in a success body and in an error.
    let echo = Completion::new(GPT)
        .content(&format!("your key is {OPENAI_KEY}"))
        .reply();
    fake.push(echo);
    fake.push(fake_openai::bad_request(&format!(
        "Incorrect API key provided: {OPENAI_KEY}"
    )));
    let provider = openai(&fake, Duration::from_secs(10));
    let mut request = request();
    request.model = GPT.into();
    let exchange = provider.chat(&request).await.unwrap();
    assert_exchange_has_no_key(&exchange);
    assert_eq!(
        exchange.response.content.as_deref(),
        Some("your key is [REDACTED]")
    );
    let error = provider.chat(&request).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "openai answered HTTP 400: Incorrect API key provided: [REDACTED]"
    );
    assert!(!format!("{provider:?}").contains(OPENAI_KEY));
    fake.assert_clean();
}

#[tokio::test]
async fn an_unreachable_server_is_a_retryable_connection_error() {
    // Bind and drop a listener to get a port nobody listens on.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let provider = OpenAiProvider::new(OpenAiConfig {
        name: "vllm".into(),
        base_url: format!("http://127.0.0.1:{port}/v1"),
        api_key: Some(ApiKey::new(OPENAI_KEY)),
        timeout: Duration::from_secs(5),
        max_tokens_field: MaxTokensField::MaxCompletionTokens,
    })
    .unwrap();
    let error = provider.chat(&request()).await.unwrap_err();
    assert!(matches!(error, ModelError::Connection { .. }), "{error:?}");
    assert!(error.retryable());
    assert!(
        error.to_string().starts_with("could not reach vllm: "),
        "{error}"
    );
}

#[tokio::test]
async fn a_success_body_that_is_not_chat_completions_is_invalid_not_retryable() {
    let fake = FakeOpenAi::with_api_key(OPENAI_KEY).await;
    fake.push(FakeReply::json(200, &json!({})).with_body_text("<html>gateway</html>"));
    let router = Router::new(
        vec![Target::new(
            ModelRef::parse(&format!("openai:{GPT}")).unwrap(),
            openai(&fake, Duration::from_secs(5)),
        )],
        RetryPolicy::default(),
        Arc::new(RecordingSleeper::default()),
    );
    let error = router.run(&request()).await.unwrap_err();
    let RouteError::Fatal { error, .. } = error else {
        panic!("expected a fatal error, got {error:?}");
    };
    assert_eq!(error.kind(), "invalid_response");
}
