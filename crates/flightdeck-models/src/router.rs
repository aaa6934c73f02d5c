//! Pinning, retries and fallback around providers.
//!
//! # Policy
//!
//! The router tries its targets in order: the pinned model, then each fallback. For one
//! target:
//!
//! 1. Call it (the request's `model` is set to the target's id). A success whose served id
//!    does not satisfy the pin ([`crate::check_pin`]) is a failure (not retryable).
//! 2. A failure that is not retryable ([`ModelError::retryable`]: 400, 401, 404, mismatches,
//!    …) ends the route at once: **no fallback**; it is a problem a different model will not
//!    fix, and a silent switch would hide it.
//! 3. A retryable failure is retried on the same target up to `max_retries` times. The wait
//!    before retry `n` (0-based) is the server's `Retry-After` when it sent one, else
//!    `initial_backoff · 2ⁿ` capped at `max_backoff` (no jitter: the schedule is
//!    deterministic). A wait that would take the route's total waiting past `max_total_wait`
//!    is not taken: the router moves on instead.
//! 4. When a target's retries are spent (or its wait is refused), the router falls back to
//!    the next target, without waiting. After the last target, the route fails with every
//!    attempt listed.
//!
//! `max_total_wait` bounds the time spent sleeping between attempts; each attempt itself is
//! bounded by its provider's per-call timeout. Time is injected ([`Sleeper`]) so tests run
//! instantly and deterministically.
//!
//! Every step is reported to a [`RouteObserver`] as it happens, so the engine can append
//! `model.requested` before a call and `model.responded`, `model.failed` and
//! `model.fallback` after.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::ModelError;
use crate::model_ref::ModelRef;
use crate::provider::Provider;
use crate::types::{ChatRequest, Exchange};

/// Retry and wait limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries per target after its first attempt (the config's `max_retries`).
    pub max_retries: u32,
    /// The most the whole route may sleep between attempts.
    pub max_total_wait: Duration,
    /// The first backoff when the server sent no `Retry-After`.
    pub initial_backoff: Duration,
    /// The largest backoff without `Retry-After`.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_retries: 2,
            max_total_wait: Duration::from_secs(300),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The backoff before retry `retry` (0-based) when the server named no wait.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 2u32.checked_pow(retry).unwrap_or(u32::MAX);
        self.initial_backoff
            .checked_mul(factor)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }
}

/// Waits. Injected so tests do not.
#[async_trait]
pub trait Sleeper: Send + Sync {
    async fn sleep(&self, duration: Duration);
}

/// Sleeps with tokio's timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioSleeper;

#[async_trait]
impl Sleeper for TokioSleeper {
    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// One model the router may use.
#[derive(Clone)]
pub struct Target {
    pub model: ModelRef,
    pub provider: Arc<dyn Provider>,
    /// Overrides [`RetryPolicy::max_retries`] for this target (its provider's `max_retries`).
    pub max_retries: Option<u32>,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("model", &self.model)
            .field("provider", &self.provider.name())
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

impl Target {
    pub fn new(model: ModelRef, provider: Arc<dyn Provider>) -> Target {
        Target {
            model,
            provider,
            max_retries: None,
        }
    }
}

/// One attempt and how it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    /// 1-based over the whole route.
    pub number: usize,
    /// Index into the targets (0 = the pinned model).
    pub target: usize,
    pub model: ModelRef,
    /// 0 for the first try of this target.
    pub retry: u32,
    /// `Ok(model_served)` or the error.
    pub outcome: Result<String, ModelError>,
    /// The exchange when one happened (a pin mismatch fails after a full answer, whose bytes
    /// are worth recording).
    pub exchange: Option<Exchange>,
}

impl AttemptRecord {
    /// `model.failed`'s `retryable`.
    pub fn retryable(&self) -> bool {
        self.outcome
            .as_ref()
            .err()
            .is_some_and(ModelError::retryable)
    }
}

/// A switch to the next model (`model.fallback`).
#[derive(Debug, Clone, PartialEq)]
pub struct Fallback {
    pub from: ModelRef,
    pub to: ModelRef,
    /// Why: the last error of `from`, and why it was not retried further.
    pub reason: String,
}

/// What the router reports as it goes.
#[derive(Debug)]
pub enum RouteEvent<'a> {
    /// About to call: `request_body` is exactly what will be sent (empty when the provider
    /// sends nothing, see `WireFormat::sends`).
    Attempt {
        number: usize,
        target: usize,
        model: &'a ModelRef,
        retry: u32,
        request: &'a ChatRequest,
        request_body: &'a [u8],
    },
    /// The call succeeded and passed the pin check (`model.responded`).
    Responded { record: &'a AttemptRecord },
    /// The call failed (`model.failed`); for a pin mismatch `record.exchange` holds the answer.
    Failed { record: &'a AttemptRecord },
    /// Waiting before a retry of the same target.
    Waiting { duration: Duration, retry: u32 },
    /// Switching to the next target (`model.fallback`).
    Fallback(&'a Fallback),
}

/// The engine stopped the route (e.g. its event store failed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RouteAbort(pub String);

/// Receives [`RouteEvent`]s. Returning an error stops the route.
#[async_trait]
pub trait RouteObserver: Send {
    async fn on_event(&mut self, event: RouteEvent<'_>) -> Result<(), RouteAbort>;
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

#[async_trait]
impl RouteObserver for NoObserver {
    async fn on_event(&mut self, _event: RouteEvent<'_>) -> Result<(), RouteAbort> {
        Ok(())
    }
}

/// A successful route.
#[derive(Debug, Clone, PartialEq)]
pub struct Routed {
    pub exchange: Exchange,
    /// The target that answered.
    pub target: usize,
    pub model: ModelRef,
    /// Every attempt, the successful one last.
    pub attempts: Vec<AttemptRecord>,
    pub fallbacks: Vec<Fallback>,
    /// Total time slept.
    pub waited: Duration,
}

/// A failed route.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// A non-retryable error: no fallback was tried.
    #[error(
        "{}: {error} (not retryable, so no fallback was tried){}",
        last_model(attempts),
        list(attempts)
    )]
    Fatal {
        error: ModelError,
        attempts: Vec<AttemptRecord>,
    },
    /// Every target failed.
    #[error("every model failed ({} attempts){}", attempts.len(), list(attempts))]
    Exhausted { attempts: Vec<AttemptRecord> },
    /// The observer stopped the route.
    #[error("model calls stopped: {reason}")]
    Aborted {
        reason: RouteAbort,
        attempts: Vec<AttemptRecord>,
    },
    /// No targets were given.
    #[error("no model to call")]
    NoTargets,
}

impl RouteError {
    pub fn attempts(&self) -> &[AttemptRecord] {
        match self {
            RouteError::Fatal { attempts, .. }
            | RouteError::Exhausted { attempts }
            | RouteError::Aborted { attempts, .. } => attempts,
            RouteError::NoTargets => &[],
        }
    }
}

fn last_model(attempts: &[AttemptRecord]) -> String {
    attempts
        .last()
        .map(|a| a.model.to_string())
        .unwrap_or_default()
}

fn list(attempts: &[AttemptRecord]) -> String {
    let mut out = String::from("; tried:");
    for attempt in attempts {
        let outcome = match &attempt.outcome {
            Ok(served) => format!("served {served}"),
            Err(error) => error.to_string().replace('\n', " "),
        };
        let retry = if attempt.retry == 0 {
            String::new()
        } else {
            format!(" (retry {})", attempt.retry)
        };
        out.push_str(&format!(
            "\n  {}. {}{}: {}",
            attempt.number, attempt.model, retry, outcome
        ));
    }
    out
}

/// What to do after a failed attempt: the pure core of the router.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Wait, then try the same target again.
    Retry { after: Duration },
    /// Move to the next target; `reason` says why.
    FallBack { reason: String },
    /// Stop: the error is final.
    Stop,
    /// Stop: no target is left.
    Exhausted,
}

/// Decides after a failed attempt. `retry` is the attempt's retry count on its target,
/// `max_retries` that target's limit, `waited` what the route slept so far, `has_next` whether
/// a fallback remains.
pub fn decide(
    policy: &RetryPolicy,
    error: &ModelError,
    retry: u32,
    max_retries: u32,
    waited: Duration,
    has_next: bool,
) -> Decision {
    if !error.retryable() {
        return Decision::Stop;
    }
    let why = if retry < max_retries {
        let after = error.retry_after().unwrap_or_else(|| policy.backoff(retry));
        if waited.saturating_add(after) <= policy.max_total_wait {
            return Decision::Retry { after };
        }
        format!(
            "{error}; waiting {}s more would exceed the {}s wait limit",
            after.as_secs_f64(),
            policy.max_total_wait.as_secs_f64()
        )
    } else if max_retries == 0 {
        error.to_string()
    } else {
        format!("{error}; {max_retries} retries spent")
    };
    if has_next {
        Decision::FallBack { reason: why }
    } else {
        Decision::Exhausted
    }
}

/// Runs a request over the pinned model and its fallbacks.
pub struct Router {
    targets: Vec<Target>,
    policy: RetryPolicy,
    allow_snapshot_mismatch: bool,
    sleeper: Arc<dyn Sleeper>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("targets", &self.targets)
            .field("policy", &self.policy)
            .field("allow_snapshot_mismatch", &self.allow_snapshot_mismatch)
            .finish_non_exhaustive()
    }
}

impl Router {
    /// `targets`: the pinned model first, then the fallbacks in order.
    pub fn new(targets: Vec<Target>, policy: RetryPolicy, sleeper: Arc<dyn Sleeper>) -> Router {
        Router {
            targets,
            policy,
            allow_snapshot_mismatch: false,
            sleeper,
        }
    }

    /// Accept a served id that is another dated snapshot of the pinned one.
    pub fn allow_snapshot_mismatch(mut self, allow: bool) -> Router {
        self.allow_snapshot_mismatch = allow;
        self
    }

    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// Runs `request` (its `model` is replaced by each target's id) without observing.
    pub async fn run(&self, request: &ChatRequest) -> Result<Routed, RouteError> {
        self.run_observed(request, &mut NoObserver).await
    }

    /// Runs `request`, reporting every step to `observer` as it happens.
    pub async fn run_observed(
        &self,
        request: &ChatRequest,
        observer: &mut dyn RouteObserver,
    ) -> Result<Routed, RouteError> {
        let mut request = request.clone();
        self.run_in_place(&mut request, observer).await
    }

    /// [`Router::run_observed`] without copying the request: each attempt sets its `model`
    /// in place (the caller's conversation is lent, not cloned, once per call).
    pub async fn run_in_place(
        &self,
        request: &mut ChatRequest,
        observer: &mut dyn RouteObserver,
    ) -> Result<Routed, RouteError> {
        if self.targets.is_empty() {
            return Err(RouteError::NoTargets);
        }
        let mut attempts: Vec<AttemptRecord> = Vec::new();
        let mut fallbacks: Vec<Fallback> = Vec::new();
        let mut waited = Duration::ZERO;
        let mut index = 0;
        let mut retry = 0u32;
        loop {
            let Some(target) = self.targets.get(index) else {
                return Err(RouteError::Exhausted { attempts });
            };
            request.model = target.model.model_id().to_string();
            let this_request = &*request;
            let number = attempts.len() + 1;
            // A provider that sends no bytes (scripted) is not made to encode the request.
            let format = target.provider.wire_format();
            let encoded = if format.sends() {
                format.encode_request(this_request)
            } else {
                Ok(Vec::new())
            };
            let result = match encoded {
                Ok(body) => {
                    observer
                        .on_event(RouteEvent::Attempt {
                            number,
                            target: index,
                            model: &target.model,
                            retry,
                            request: this_request,
                            request_body: &body,
                        })
                        .await
                        .map_err(|reason| RouteError::Aborted {
                            reason,
                            attempts: attempts.clone(),
                        })?;
                    target.provider.chat(this_request).await
                }
                Err(error) => Err(error),
            };
            let (outcome, exchange) = match result {
                Ok(exchange) => {
                    let served = exchange.response.model_served.clone();
                    match target
                        .model
                        .check_served(&served, self.allow_snapshot_mismatch)
                    {
                        Ok(()) => (Ok(served), Some(exchange)),
                        Err(error) => (Err(error), Some(exchange)),
                    }
                }
                Err(error) => (Err(error), None),
            };
            let record = AttemptRecord {
                number,
                target: index,
                model: target.model.clone(),
                retry,
                outcome,
                exchange,
            };
            let error = match &record.outcome {
                Ok(_) => {
                    let abort = observer
                        .on_event(RouteEvent::Responded { record: &record })
                        .await;
                    let exchange = record.exchange.clone();
                    attempts.push(record);
                    abort.map_err(|reason| RouteError::Aborted {
                        reason,
                        attempts: attempts.clone(),
                    })?;
                    let Some(exchange) = exchange else {
                        // A success always carries its exchange; keep the type honest anyway.
                        return Err(RouteError::Exhausted { attempts });
                    };
                    return Ok(Routed {
                        exchange,
                        target: index,
                        model: target.model.clone(),
                        attempts,
                        fallbacks,
                        waited,
                    });
                }
                Err(error) => error.clone(),
            };
            let abort = observer
                .on_event(RouteEvent::Failed { record: &record })
                .await;
            attempts.push(record);
            abort.map_err(|reason| RouteError::Aborted {
                reason,
                attempts: attempts.clone(),
            })?;
            let max_retries = target.max_retries.unwrap_or(self.policy.max_retries);
            let has_next = index + 1 < self.targets.len();
            match decide(&self.policy, &error, retry, max_retries, waited, has_next) {
                Decision::Retry { after } => {
                    retry += 1;
                    observer
                        .on_event(RouteEvent::Waiting {
                            duration: after,
                            retry,
                        })
                        .await
                        .map_err(|reason| RouteError::Aborted {
                            reason,
                            attempts: attempts.clone(),
                        })?;
                    self.sleeper.sleep(after).await;
                    waited = waited.saturating_add(after);
                }
                Decision::FallBack { reason } => {
                    let to = self
                        .targets
                        .get(index + 1)
                        .map(|t| t.model.clone())
                        .unwrap_or_else(|| target.model.clone());
                    let fallback = Fallback {
                        from: target.model.clone(),
                        to,
                        reason,
                    };
                    observer
                        .on_event(RouteEvent::Fallback(&fallback))
                        .await
                        .map_err(|reason| RouteError::Aborted {
                            reason,
                            attempts: attempts.clone(),
                        })?;
                    fallbacks.push(fallback);
                    index += 1;
                    retry = 0;
                }
                Decision::Stop => return Err(RouteError::Fatal { error, attempts }),
                Decision::Exhausted => return Err(RouteError::Exhausted { attempts }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, retry_after: Option<u64>) -> ModelError {
        ModelError::Status {
            provider: "p".into(),
            status: code,
            message: "m".into(),
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let policy = RetryPolicy {
            max_retries: 10,
            max_total_wait: Duration::from_secs(1000),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
        };
        let waits: Vec<u64> = (0..6).map(|n| policy.backoff(n).as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 10, 10]);
        assert_eq!(policy.backoff(40), Duration::from_secs(10));
    }

    #[test]
    fn decide_table() {
        let policy = RetryPolicy {
            max_retries: 2,
            max_total_wait: Duration::from_secs(10),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(8),
        };
        let s = Duration::from_secs;
        // (error, retry, max_retries, waited, has_next, expected decision kind, detail)
        let cases: Vec<(ModelError, u32, u32, Duration, bool, Decision)> = vec![
            (status(400, None), 0, 2, s(0), true, Decision::Stop),
            (status(401, None), 0, 2, s(0), true, Decision::Stop),
            (
                status(429, Some(3)),
                0,
                2,
                s(0),
                true,
                Decision::Retry { after: s(3) },
            ),
            (
                status(500, None),
                1,
                2,
                s(0),
                true,
                Decision::Retry { after: s(2) },
            ),
            (
                status(529, None),
                0,
                2,
                s(9),
                true,
                Decision::Retry { after: s(1) },
            ),
            (
                status(429, Some(30)),
                0,
                2,
                s(0),
                false,
                Decision::Exhausted,
            ),
            (status(500, None), 2, 2, s(0), false, Decision::Exhausted),
        ];
        for (error, retry, max, waited, has_next, expected) in cases {
            assert_eq!(
                decide(&policy, &error, retry, max, waited, has_next),
                expected,
                "{error} retry={retry}"
            );
        }
        let Decision::FallBack { reason } =
            decide(&policy, &status(429, Some(30)), 0, 2, s(0), true)
        else {
            panic!("expected a fallback");
        };
        assert!(
            reason.contains("would exceed the 10s wait limit"),
            "{reason}"
        );
        let Decision::FallBack { reason } = decide(&policy, &status(500, None), 2, 2, s(0), true)
        else {
            panic!("expected a fallback");
        };
        assert!(reason.ends_with("2 retries spent"), "{reason}");
    }
}
