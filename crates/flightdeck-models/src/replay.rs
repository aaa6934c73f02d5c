//! The replay provider: serves recorded calls back in order and checks that each new request
//! equals the recorded one.
//!
//! A recorded call is the pair of bodies (the request body sent and the response body, as in
//! `model.responded.response`) and the [`WireFormat`] of the provider that made it. (The
//! engine's own replay compares request records instead, see `flightdeck-engine`.) A new
//! request is encoded with that format and compared with the recorded request as JSON values
//! (so key order and whitespace do not matter, everything else does); the recorded response is
//! decoded with the same format. The exchange returned holds the recorded bytes, so a verified
//! replay records the very same artifacts.

use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::Value;

use crate::error::ModelError;
use crate::provider::{Provider, WireFormat};
use crate::types::{ChatRequest, Exchange};

/// One recorded model call.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedCall {
    pub format: WireFormat,
    pub request_body: Vec<u8>,
    pub response_body: Vec<u8>,
}

/// Serves [`RecordedCall`]s in order.
#[derive(Debug)]
pub struct ReplayProvider {
    name: String,
    calls: Vec<RecordedCall>,
    next: Mutex<usize>,
}

impl ReplayProvider {
    /// `name` is what [`Provider::name`] reports (e.g. the original provider's).
    pub fn new(name: impl Into<String>, calls: Vec<RecordedCall>) -> ReplayProvider {
        ReplayProvider {
            name: name.into(),
            calls,
            next: Mutex::new(0),
        }
    }

    /// How many recorded calls have been served.
    pub fn served(&self) -> usize {
        match self.next.lock() {
            Ok(guard) => *guard,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    /// Whether every recorded call was served.
    pub fn is_exhausted(&self) -> bool {
        self.served() >= self.calls.len()
    }
}

#[async_trait]
impl Provider for ReplayProvider {
    fn name(&self) -> &str {
        &self.name
    }

    /// The format of the next recorded call (neutral once all were served).
    fn wire_format(&self) -> WireFormat {
        self.calls
            .get(self.served())
            .map(|call| call.format)
            .unwrap_or(WireFormat::Neutral)
    }

    async fn chat(&self, request: &ChatRequest) -> Result<Exchange, ModelError> {
        let mut next = match self.next.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let index = *next;
        let Some(recorded) = self.calls.get(index) else {
            return Err(ModelError::ReplayExhausted {
                index,
                recorded: self.calls.len(),
            });
        };
        let invalid = |message: String| ModelError::ReplayInvalid { index, message };
        let actual_bytes = recorded.format.encode_request(request)?;
        let expected: Value = serde_json::from_slice(&recorded.request_body)
            .map_err(|e| invalid(format!("the recorded request is not JSON: {e}")))?;
        let actual: Value = serde_json::from_slice(&actual_bytes)
            .map_err(|e| invalid(format!("the new request is not JSON: {e}")))?;
        if let Some((pointer, expected, actual)) =
            first_difference(&expected, &actual, String::new())
        {
            return Err(ModelError::ReplayMismatch {
                index,
                pointer,
                expected: render(expected),
                actual: render(actual),
            });
        }
        let response = recorded
            .format
            .decode_response(&recorded.response_body)
            .map_err(|e| invalid(e.to_string()))?;
        *next += 1;
        Ok(Exchange {
            response,
            request_body: recorded.request_body.clone(),
            response_body: recorded.response_body.clone(),
        })
    }
}

fn render(value: Option<&Value>) -> String {
    match value {
        Some(value) => {
            let text = value.to_string();
            if text.chars().count() > 400 {
                let mut short: String = text.chars().take(400).collect();
                short.push('…');
                short
            } else {
                text
            }
        }
        None => "(absent)".to_string(),
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
