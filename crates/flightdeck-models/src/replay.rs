//! The replay provider: a model served from a recording.
//!
//! A replay stands in for a real provider. It keeps the provider it stands for (`inner`),
//! which still encodes each request (so the bytes a replay would have sent can be compared
//! with what was recorded) and bounds its tokens (so budget checks are the same), and serves
//! the recorded outcome of each attempt in order instead of calling anyone: the answer's
//! recorded bytes, decoded with the provider's own wire format; a recorded failure (message,
//! kind and retryability, so the router decides again exactly as it did); or the point where
//! the recording stopped. Where the outcomes come from is a [`Recording`] (the engine reads
//! them from a mission's timeline).

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::error::ModelError;
use crate::provider::{Provider, WireFormat};
use crate::types::{ChatRequest, Exchange};

/// How one recorded attempt of a model call went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordedAttempt {
    /// Answered: the provider's response bytes as received.
    Answered { response_body: Vec<u8> },
    /// Failed as recorded; a pin mismatch keeps the answer that failed the check.
    Failed {
        message: String,
        kind: String,
        retryable: bool,
        response_body: Option<Vec<u8>>,
    },
    /// The process died during the call: the recording stops here.
    Interrupted,
}

/// The recorded attempts of each model, in order.
#[async_trait]
pub trait Recording: Send + Sync {
    /// The next recorded attempt of `model` (a model ref); `None` when there is none left.
    async fn next_attempt(&self, model: &str) -> Option<RecordedAttempt>;
}

/// A model served from a [`Recording`], through the provider it stands for.
pub struct ReplayProvider {
    model: String,
    inner: Arc<dyn Provider>,
    recording: Arc<dyn Recording>,
}

impl std::fmt::Debug for ReplayProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayProvider")
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl ReplayProvider {
    /// `model` is the ref the recording names (`openai:gpt-4.1-…`, `scripted:…`); `inner`
    /// the provider built for it.
    pub fn new(
        model: impl Into<String>,
        inner: Arc<dyn Provider>,
        recording: Arc<dyn Recording>,
    ) -> ReplayProvider {
        ReplayProvider {
            model: model.into(),
            inner,
            recording,
        }
    }
}

#[async_trait]
impl Provider for ReplayProvider {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn wire_format(&self) -> WireFormat {
        self.inner.wire_format()
    }

    fn input_token_bound(&self, request: &ChatRequest, body: &[u8]) -> u64 {
        self.inner.input_token_bound(request, body)
    }

    async fn chat(&self, _request: &ChatRequest) -> Result<Exchange, ModelError> {
        let format = self.inner.wire_format();
        let recorded = |message: String, kind: &str| ModelError::Recorded {
            message,
            kind: kind.to_string(),
            retryable: false,
        };
        // Nothing is sent: the exchange carries no request bytes (the caller records its
        // own encoding of the request, compared with the recording's).
        let exchange = |raw: Vec<u8>| -> Result<Exchange, ModelError> {
            let response = format.decode_response(&raw).map_err(|e| {
                recorded(
                    format!("the recorded answer does not decode: {e}"),
                    "replay_invalid",
                )
            })?;
            Ok(Exchange {
                response,
                request_body: Vec::new(),
                response_body: raw,
            })
        };
        match self.recording.next_attempt(&self.model).await {
            Some(RecordedAttempt::Answered { response_body }) => {
                // A scripted model's cursor moves on as if it had answered.
                self.inner.replayed_answer();
                exchange(response_body)
            }
            Some(RecordedAttempt::Failed {
                response_body: Some(raw),
                ..
            }) => exchange(raw),
            Some(RecordedAttempt::Failed {
                message,
                kind,
                retryable,
                response_body: None,
            }) => Err(ModelError::Recorded {
                message,
                kind,
                retryable,
            }),
            Some(RecordedAttempt::Interrupted) => Err(recorded(
                "the recording stopped during this call".into(),
                "interrupted",
            )),
            None => Err(recorded(
                format!("the recording has no more answers of {}", self.model),
                "replay_exhausted",
            )),
        }
    }
}

fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// The JSON pointer of the first place `expected` and `actual` differ, with both sides there
/// (`None` for a missing key or element).
pub fn first_difference<'a>(
    expected: &'a Value,
    actual: &'a Value,
    pointer: String,
) -> Option<(String, Option<&'a Value>, Option<&'a Value>)> {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (key, e_value) in e {
                let here = format!("{pointer}/{}", escape_pointer(key));
                match a.get(key) {
                    Some(a_value) => {
                        if let Some(found) = first_difference(e_value, a_value, here) {
                            return Some(found);
                        }
                    }
                    None => return Some((here, Some(e_value), None)),
                }
            }
            a.iter()
                .find(|(key, _)| !e.contains_key(*key))
                .map(|(key, a_value)| {
                    (
                        format!("{pointer}/{}", escape_pointer(key)),
                        None,
                        Some(a_value),
                    )
                })
        }
        (Value::Array(e), Value::Array(a)) => {
            for i in 0..e.len().max(a.len()) {
                let here = format!("{pointer}/{i}");
                match (e.get(i), a.get(i)) {
                    (Some(e_value), Some(a_value)) => {
                        if let Some(found) = first_difference(e_value, a_value, here) {
                            return Some(found);
                        }
                    }
                    (e_value, a_value) => return Some((here, e_value, a_value)),
                }
            }
            None
        }
        _ if expected == actual => None,
        _ => Some((pointer, Some(expected), Some(actual))),
    }
}
