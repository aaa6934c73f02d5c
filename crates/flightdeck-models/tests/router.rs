#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Retries, fallback and pinning, with in-memory providers and a clock that does not wait.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use flightdeck_models::{
    ChatRequest, ChatResponse, Exchange, Message, ModelError, ModelRef, Provider, RetryPolicy,
    RouteAbort, RouteError, RouteEvent, RouteObserver, Router, Sleeper, StopReason, Target, Usage,
    WireFormat,
};

/// What a fake provider does on one call.
#[derive(Clone, Debug)]
enum Reply {
    /// Answers, reporting this served id.
    Ok(&'static str),
    Status(u16, Option<u64>),
    Timeout,
    Connection,
}

struct FakeProvider {
    name: &'static str,
    replies: Mutex<VecDeque<Reply>>,
    models_asked: Mutex<Vec<String>>,
}

impl FakeProvider {
    fn new(name: &'static str, replies: &[Reply]) -> Arc<FakeProvider> {
        Arc::new(FakeProvider {
            name,
            replies: Mutex::new(replies.iter().cloned().collect()),
            models_asked: Mutex::new(Vec::new()),
        })
    }

    fn calls(&self) -> usize {
        self.models_asked.lock().unwrap().len()
    }
}

#[async_trait]
impl Provider for FakeProvider {
    fn name(&self) -> &str {
        self.name
    }

    fn wire_format(&self) -> WireFormat {
        WireFormat::Neutral
    }

    async fn chat(&self, request: &ChatRequest) -> Result<Exchange, ModelError> {
        self.models_asked
            .lock()
            .unwrap()
            .push(request.model.clone());
        let reply = self
            .replies
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| panic!("{} was called more often than scripted", self.name));
        let provider = self.name.to_string();
        match reply {
            Reply::Ok(served) => {
                let response = ChatResponse {
                    model_served: served.to_string(),
                    content: Some(format!("from {served}")),
                    tool_calls: Vec::new(),
                    usage: Usage::default(),
                    stop_reason: StopReason::EndTurn,
                };
                Ok(Exchange {
                    request_body: serde_json::to_vec(request).unwrap(),
                    response_body: serde_json::to_vec(&response).unwrap(),
                    response,
                })
            }
            Reply::Status(status, retry_after) => Err(ModelError::Status {
                provider,
                status,
                message: format!("status {status}"),
                retry_after: retry_after.map(Duration::from_secs),
            }),
            Reply::Timeout => Err(ModelError::Timeout {
                provider,
                after: Duration::from_secs(30),
            }),
            Reply::Connection => Err(ModelError::Connection {
                provider,
                message: "connection refused".into(),
            }),
        }
    }
}

/// Records the waits instead of waiting.
#[derive(Default)]
struct RecordingSleeper(Mutex<Vec<Duration>>);

#[async_trait]
impl Sleeper for RecordingSleeper {
    async fn sleep(&self, duration: Duration) {
        self.0.lock().unwrap().push(duration);
    }
}

/// Writes every event as one line, the way the engine would turn them into events.
#[derive(Default)]
struct Log(Vec<String>);

#[async_trait]
impl RouteObserver for Log {
    async fn on_event(&mut self, event: RouteEvent<'_>) -> Result<(), RouteAbort> {
        let line = match event {
            RouteEvent::Attempt {
                number,
                model,
                retry,
                request,
                request_body,
                ..
            } => {
                assert_eq!(request.model, model.model_id());
                // These providers speak the neutral format, which sends no bytes.
                assert!(request_body.is_empty(), "{} bytes", request_body.len());
                format!("requested #{number} {model} retry={retry}")
            }
            RouteEvent::Responded { record } => {
                format!(
                    "responded #{} {}",
                    record.number,
                    record.outcome.as_ref().unwrap()
                )
            }
            RouteEvent::Failed { record } => format!(
                "failed #{} {} retryable={}",
                record.number,
                record.outcome.as_ref().unwrap_err().kind(),
                record.retryable()
            ),
            RouteEvent::Waiting { duration, .. } => format!("wait {}s", duration.as_secs()),
            RouteEvent::Fallback(fallback) => {
                format!("fallback {} -> {}", fallback.from, fallback.to)
            }
        };
        self.0.push(line);
        Ok(())
    }
}

const PINNED: &str = "openai:gpt-4.1-2025-04-14";
const FALLBACK: &str = "anthropic:claude-sonnet-4-5-20250929";

fn policy() -> RetryPolicy {
    RetryPolicy {
        max_retries: 2,
        max_total_wait: Duration::from_secs(60),
        initial_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(16),
    }
}

struct Case {
    name: &'static str,
    primary: &'static [Reply],
    fallback: &'static [Reply],
    allow_snapshot_mismatch: bool,
    /// The events, one per line.
    log: &'static [&'static str],
    sleeps: &'static [u64],
    /// `Ok(model that answered)` or the start of the error message.
    result: Result<&'static str, &'static str>,
}

const GPT: &str = "gpt-4.1-2025-04-14";
const CLAUDE: &str = "claude-sonnet-4-5-20250929";

fn cases() -> Vec<Case> {
    use Reply::*;
    vec![
        Case {
            name: "success at once",
            primary: &[Ok(GPT)],
            fallback: &[],
            allow_snapshot_mismatch: false,
            log: &["requested #1 openai:gpt-4.1-2025-04-14 retry=0", "responded #1 gpt-4.1-2025-04-14"],
            sleeps: &[],
            result: Result::Ok(PINNED),
        },
        Case {
            name: "429 with Retry-After is waited out on the same model",
            primary: &[Status(429, Some(7)), Ok(GPT)],
            fallback: &[],
            allow_snapshot_mismatch: false,
            log: &[
                "requested #1 openai:gpt-4.1-2025-04-14 retry=0",
                "failed #1 rate_limited retryable=true",
                "wait 7s",
                "requested #2 openai:gpt-4.1-2025-04-14 retry=1",
                "responded #2 gpt-4.1-2025-04-14",
            ],
            sleeps: &[7],
            result: Result::Ok(PINNED),
        },
        Case {
            name: "500s back off exponentially, then fall back",
            primary: &[Status(500, None), Status(502, None), Status(503, None)],
            fallback: &[Ok(CLAUDE)],
            allow_snapshot_mismatch: false,
            log: &[
                "requested #1 openai:gpt-4.1-2025-04-14 retry=0",
                "failed #1 server_error retryable=true",
                "wait 1s",
                "requested #2 openai:gpt-4.1-2025-04-14 retry=1",
                "failed #2 server_error retryable=true",
                "wait 2s",
                "requested #3 openai:gpt-4.1-2025-04-14 retry=2",
                "failed #3 server_error retryable=true",
                "fallback openai:gpt-4.1-2025-04-14 -> anthropic:claude-sonnet-4-5-20250929",
                "requested #4 anthropic:claude-sonnet-4-5-20250929 retry=0",
                "responded #4 claude-sonnet-4-5-20250929",
            ],
            sleeps: &[1, 2],
            result: Result::Ok(FALLBACK),
        },
        Case {
            name: "a Retry-After beyond the wait limit falls back at once",
            primary: &[Status(429, Some(3600))],
            fallback: &[Ok(CLAUDE)],
            allow_snapshot_mismatch: false,
            log: &[
                "requested #1 openai:gpt-4.1-2025-04-14 retry=0",
                "failed #1 rate_limited retryable=true",
                "fallback openai:gpt-4.1-2025-04-14 -> anthropic:claude-sonnet-4-5-20250929",
                "requested #2 anthropic:claude-sonnet-4-5-20250929 retry=0",
                "responded #2 claude-sonnet-4-5-20250929",
            ],
            sleeps: &[],
            result: Result::Ok(FALLBACK),
        },
        Case {
            name: "timeouts and connection errors are retryable",
            primary: &[Timeout, Connection, Timeout],
            fallback: &[Status(529, None), Ok(CLAUDE)],
            allow_snapshot_mismatch: false,
            log: &[
                "requested #1 openai:gpt-4.1-2025-04-14 retry=0",
                "failed #1 timeout retryable=true",
                "wait 1s",
                "requested #2 openai:gpt-4.1-2025-04-14 retry=1",
                "failed #2 connection retryable=true",
                "wait 2s",
                "requested #3 openai:gpt-4.1-2025-04-14 retry=2",
                "failed #3 timeout retryable=true",
                "fallback openai:gpt-4.1-2025-04-14 -> anthropic:claude-sonnet-4-5-20250929",
                "requested #4 anthropic:claude-sonnet-4-5-20250929 retry=0",
                "failed #4 overloaded retryable=true",
                "wait 1s",
                "requested #5 anthropic:claude-sonnet-4-5-20250929 retry=1",
                "responded #5 claude-sonnet-4-5-20250929",
            ],
            sleeps: &[1, 2, 1],
            result: Result::Ok(FALLBACK),
        },
        Case {
            name: "a 400 does not fall back",
            primary: &[Status(400, None)],
            fallback: &[],
            allow_snapshot_mismatch: false,
            log: &[
                "requested #1 openai:gpt-4.1-2025-04-14 retry=0",
                "failed #1 http_status retryable=false",
            ],
            sleeps: &[],
            result: Err("openai:gpt-4.1-2025-04-14: openai answered HTTP 400: status 400 (not retryable, so no fallback was tried); tried:\n  1. openai:gpt-4.1-2025-04-14: openai answered HTTP 400: status 400"),
        },
        Case {
            name: "a 401 after a retry does not fall back either",
            primary: &[Status(500, None), Status(401, None)],
            fallback: &[],
            allow_snapshot_mismatch: false,
            log: &[
                "requested #1 openai:gpt-4.1-2025-04-14 retry=0",
                "failed #1 server_error retryable=true",
                "wait 1s",
                "requested #2 openai:gpt-4.1-2025-04-14 retry=1",
                "failed #2 http_status retryable=false",
            ],
            sleeps: &[1],
            result: Err("openai:gpt-4.1-2025-04-14: openai answered HTTP 401"),
        },
        Case {
            name: "another snapshot fails the call and does not fall back",
            primary: &[Ok("gpt-4.1-2025-06-01")],
            fallback: &[],
            allow_snapshot_mismatch: false,
            log: &[
                "requested #1 openai:gpt-4.1-2025-04-14 retry=0",
                "failed #1 snapshot_mismatch retryable=false",
            ],
            sleeps: &[],
            result: Err("openai:gpt-4.1-2025-04-14: pinned `gpt-4.1-2025-04-14` but the provider served `gpt-4.1-2025-06-01` (a different snapshot)"),
        },
        Case {
            name: "another snapshot is accepted when the template allows it",
            primary: &[Ok("gpt-4.1-2025-06-01")],
            fallback: &[],
            allow_snapshot_mismatch: true,
            log: &["requested #1 openai:gpt-4.1-2025-04-14 retry=0", "responded #1 gpt-4.1-2025-06-01"],
            sleeps: &[],
            result: Result::Ok(PINNED),
        },
        Case {
            name: "another model is never accepted",
            primary: &[Ok("gpt-4o-2024-08-06")],
            fallback: &[],
            allow_snapshot_mismatch: true,
            log: &[
                "requested #1 openai:gpt-4.1-2025-04-14 retry=0",
                "failed #1 model_mismatch retryable=false",
            ],
            sleeps: &[],
            result: Err("openai:gpt-4.1-2025-04-14: pinned `gpt-4.1-2025-04-14` but the provider served `gpt-4o-2024-08-06` (a different model)"),
        },
        Case {
            name: "all fail: the error lists every attempt",
            primary: &[Status(429, Some(1)), Status(429, Some(1)), Status(429, Some(1))],
            fallback: &[Status(500, None), Timeout, Status(503, None)],
            allow_snapshot_mismatch: false,
            log: &[
                "requested #1 openai:gpt-4.1-2025-04-14 retry=0",
                "failed #1 rate_limited retryable=true",
                "wait 1s",
                "requested #2 openai:gpt-4.1-2025-04-14 retry=1",
                "failed #2 rate_limited retryable=true",
                "wait 1s",
                "requested #3 openai:gpt-4.1-2025-04-14 retry=2",
                "failed #3 rate_limited retryable=true",
                "fallback openai:gpt-4.1-2025-04-14 -> anthropic:claude-sonnet-4-5-20250929",
                "requested #4 anthropic:claude-sonnet-4-5-20250929 retry=0",
                "failed #4 server_error retryable=true",
                "wait 1s",
                "requested #5 anthropic:claude-sonnet-4-5-20250929 retry=1",
                "failed #5 timeout retryable=true",
                "wait 2s",
                "requested #6 anthropic:claude-sonnet-4-5-20250929 retry=2",
                "failed #6 server_error retryable=true",
            ],
            sleeps: &[1, 1, 1, 2],
            result: Err(concat!(
                "every model failed (6 attempts); tried:\n",
                "  1. openai:gpt-4.1-2025-04-14: openai answered HTTP 429: status 429 (retry after 1s)\n",
                "  2. openai:gpt-4.1-2025-04-14 (retry 1): openai answered HTTP 429: status 429 (retry after 1s)\n",
                "  3. openai:gpt-4.1-2025-04-14 (retry 2): openai answered HTTP 429: status 429 (retry after 1s)\n",
                "  4. anthropic:claude-sonnet-4-5-20250929: anthropic answered HTTP 500: status 500\n",
                "  5. anthropic:claude-sonnet-4-5-20250929 (retry 1): anthropic did not answer within 30s\n",
                "  6. anthropic:claude-sonnet-4-5-20250929 (retry 2): anthropic answered HTTP 503: status 503",
            )),
        },
    ]
}

#[tokio::test]
async fn routing_table() {
    for case in cases() {
        let primary = FakeProvider::new("openai", case.primary);
        let fallback = FakeProvider::new("anthropic", case.fallback);
        let sleeper = Arc::new(RecordingSleeper::default());
        let router = Router::new(
            vec![
                Target::new(ModelRef::parse(PINNED).unwrap(), primary.clone()),
                Target::new(ModelRef::parse(FALLBACK).unwrap(), fallback.clone()),
            ],
            policy(),
            sleeper.clone(),
        )
        .allow_snapshot_mismatch(case.allow_snapshot_mismatch);
        let request = ChatRequest::new("ignored", vec![Message::user("hi")]);
        let mut log = Log::default();
        let result = router.run_observed(&request, &mut log).await;
        assert_eq!(log.0, case.log, "{}: events", case.name);
        let sleeps: Vec<u64> = sleeper
            .0
            .lock()
            .unwrap()
            .iter()
            .map(Duration::as_secs)
            .collect();
        assert_eq!(sleeps, case.sleeps, "{}: sleeps", case.name);
        assert_eq!(
            primary.calls(),
            case.primary.len(),
            "{}: primary calls",
            case.name
        );
        assert_eq!(
            fallback.calls(),
            case.fallback.len(),
            "{}: fallback calls",
            case.name
        );
        for model in primary.models_asked.lock().unwrap().iter() {
            assert_eq!(model, GPT, "the pinned id is sent");
        }
        match (result, case.result) {
            (Ok(routed), Ok(model)) => {
                assert_eq!(routed.model.to_string(), model, "{}", case.name);
                assert_eq!(
                    routed.attempts.len(),
                    case.primary.len() + case.fallback.len()
                );
                assert_eq!(
                    routed.waited,
                    Duration::from_secs(case.sleeps.iter().sum()),
                    "{}",
                    case.name
                );
            }
            (Err(error), Err(message)) => {
                let text = error.to_string();
                assert!(
                    text.starts_with(message),
                    "{}:\n{text}\nwanted:\n{message}",
                    case.name
                );
                assert_eq!(
                    error.attempts().len(),
                    case.primary.len() + case.fallback.len()
                );
            }
            (result, expected) => panic!("{}: got {result:?}, wanted {expected:?}", case.name),
        }
    }
}

#[tokio::test]
async fn a_pin_mismatch_keeps_the_answer_for_the_record() {
    let primary = FakeProvider::new("openai", &[Reply::Ok("gpt-4.1-2025-06-01")]);
    let router = Router::new(
        vec![Target::new(ModelRef::parse(PINNED).unwrap(), primary)],
        policy(),
        Arc::new(RecordingSleeper::default()),
    );
    let error = router
        .run(&ChatRequest::new("x", vec![Message::user("hi")]))
        .await
        .unwrap_err();
    let RouteError::Fatal { error, attempts } = error else {
        panic!("expected a fatal error");
    };
    assert_eq!(error.kind(), "snapshot_mismatch");
    let exchange = attempts[0].exchange.as_ref().expect("the answer is kept");
    assert_eq!(exchange.response.model_served, "gpt-4.1-2025-06-01");
}

#[tokio::test]
async fn a_target_can_override_the_retry_count() {
    let primary = FakeProvider::new("openai", &[Reply::Status(500, None)]);
    let fallback = FakeProvider::new("anthropic", &[Reply::Ok(CLAUDE)]);
    let mut first = Target::new(ModelRef::parse(PINNED).unwrap(), primary.clone());
    first.max_retries = Some(0);
    let router = Router::new(
        vec![
            first,
            Target::new(ModelRef::parse(FALLBACK).unwrap(), fallback),
        ],
        policy(),
        Arc::new(RecordingSleeper::default()),
    );
    let routed = router
        .run(&ChatRequest::new("x", vec![Message::user("hi")]))
        .await
        .unwrap();
    assert_eq!(routed.fallbacks.len(), 1);
    assert_eq!(
        routed.fallbacks[0].reason,
        "openai answered HTTP 500: status 500"
    );
    assert_eq!(primary.calls(), 1);
}

#[tokio::test]
async fn the_observer_can_stop_the_route() {
    struct StopOnFailure;
    #[async_trait]
    impl RouteObserver for StopOnFailure {
        async fn on_event(&mut self, event: RouteEvent<'_>) -> Result<(), RouteAbort> {
            match event {
                RouteEvent::Failed { .. } => Err(RouteAbort("the event store is gone".into())),
                _ => Ok(()),
            }
        }
    }
    let primary = FakeProvider::new("openai", &[Reply::Status(500, None)]);
    let router = Router::new(
        vec![Target::new(
            ModelRef::parse(PINNED).unwrap(),
            primary.clone(),
        )],
        policy(),
        Arc::new(RecordingSleeper::default()),
    );
    let error = router
        .run_observed(
            &ChatRequest::new("x", vec![Message::user("hi")]),
            &mut StopOnFailure,
        )
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "model calls stopped: the event store is gone"
    );
    assert_eq!(error.attempts().len(), 1);
    assert_eq!(primary.calls(), 1);
}

#[tokio::test]
async fn no_targets_is_an_error() {
    let router = Router::new(Vec::new(), policy(), Arc::new(RecordingSleeper::default()));
    let error = router
        .run(&ChatRequest::new("x", vec![Message::user("hi")]))
        .await
        .unwrap_err();
    assert!(matches!(error, RouteError::NoTargets));
}
