//! One model call of an agent, recorded as it happens: the budget is checked against each
//! attempt's worst case before it is made (`budget.exceeded` instead of the call when it
//! does not fit), then `model.requested` (the request record, see `request_record`, and the
//! digest of the bytes sent), and `model.responded`,
//! `model.failed` or `model.fallback` as the router reports them.

use async_trait::async_trait;
use flightdeck_core::budget::{after_model_failure, check_model_call, BreakerLimits};
use flightdeck_core::event::{
    ModelFailed, ModelFallback, ModelRequested, ModelResponded, Reservation,
};
use flightdeck_core::{EventKind, MissionState};
use flightdeck_models::{
    ChatRequest, ChatResponse, RouteAbort, RouteError, RouteEvent, RouteObserver, Usage,
};

use crate::models::Callable;
use crate::request_record::{self, RecordedRequest};
use crate::{Engine, EngineError};

/// How a model call ended.
pub(crate) enum ModelOutcome {
    /// The answer, and the record of the request that got it (the next call continues it).
    Answered(ChatResponse, RecordedRequest),
    /// A budget or breaker stopped it; the reason is recorded and the mission is blocked.
    Stopped,
    /// Every model failed, or one failed in a way no fallback fixes.
    Failed(RouteError),
}

/// Turns the router's reports into events.
struct Recorder<'a> {
    engine: &'a Engine,
    state: &'a mut MissionState,
    callables: &'a [Callable],
    call_id: &'a str,
    role: &'a str,
    limits: BreakerLimits,
    /// The record this call's requests continue.
    after: Option<&'a RecordedRequest>,
    /// The record of the latest attempt's request.
    latest: Option<RecordedRequest>,
    /// An error of the store while recording: the route is stopped and this is returned.
    error: Option<EngineError>,
}

impl Recorder<'_> {
    async fn record(&mut self, kinds: Vec<EventKind>) -> Result<(), RouteAbort> {
        let result = self.engine.append(self.state, kinds).await;
        self.keep_error(result).map(|_| ())
    }

    async fn artifact(&mut self, bytes: &[u8]) -> Result<flightdeck_core::Digest, RouteAbort> {
        let result = self.engine.put_artifact(bytes).await;
        self.keep_error(result)
    }

    /// An engine error stops the route; the error itself is kept for the caller.
    fn keep_error<T>(&mut self, result: Result<T, EngineError>) -> Result<T, RouteAbort> {
        result.map_err(|e| {
            let reason = RouteAbort(e.to_string());
            self.error = Some(e);
            reason
        })
    }

    fn pricing(&self, target: usize) -> Option<&flightdeck_models::Pricing> {
        self.callables.get(target).and_then(|c| c.pricing.as_ref())
    }
}

#[async_trait]
impl RouteObserver for Recorder<'_> {
    async fn on_event(&mut self, event: RouteEvent<'_>) -> Result<(), RouteAbort> {
        match event {
            RouteEvent::Attempt {
                number,
                target,
                model,
                request,
                request_body,
                ..
            } => {
                let input_bound = self
                    .callables
                    .get(target)
                    .map_or(request_body.len() as u64, |c| {
                        c.provider.input_token_bound(request, request_body)
                    });
                let output_bound = request
                    .max_output_tokens
                    .unwrap_or(flightdeck_models::DEFAULT_MAX_OUTPUT_TOKENS);
                let reserved = Reservation {
                    tokens: input_bound.saturating_add(output_bound),
                    usd: self.pricing(target).map(|p| {
                        p.cost(&Usage {
                            input_tokens: input_bound,
                            output_tokens: output_bound,
                            cache_read_tokens: 0,
                            cache_write_tokens: 0,
                        })
                    }),
                };
                let now = self.engine.config().clock.now_ms();
                if let Some(exceeded) = check_model_call(self.state, self.call_id, &reserved, now) {
                    self.record(vec![EventKind::BudgetExceeded(exceeded)])
                        .await?;
                    return Err(RouteAbort("budget exceeded".into()));
                }
                let record = request_record::encode(request, self.after);
                let record = self.keep_error(record)?;
                let digest = self.artifact(&record).await?;
                self.latest = Some(RecordedRequest {
                    digest: digest.clone(),
                    messages: request.messages.len(),
                });
                // The bytes sent (by providers that send any) are pinned by their digest
                // only: storing them would store the whole conversation again.
                let wire = (!request_body.is_empty())
                    .then(|| flightdeck_core::Digest::of(&self.engine.redact(request_body)));
                let requested = ModelRequested {
                    call_id: self.call_id.to_string(),
                    provider: model.provider().to_string(),
                    model: model.model_id().to_string(),
                    role: self.role.to_string(),
                    request: digest,
                    wire,
                    attempt: u32::try_from(number).unwrap_or(u32::MAX),
                    reserved: Some(reserved),
                };
                self.record(vec![EventKind::ModelRequested(requested)])
                    .await
            }
            RouteEvent::Responded { record } => {
                let Some(exchange) = &record.exchange else {
                    return Ok(());
                };
                let response = &exchange.response;
                let raw = self.artifact(&exchange.response_body).await?;
                let neutral =
                    serde_json::to_vec(response).map_err(|e| RouteAbort(e.to_string()))?;
                let message = self.artifact(&neutral).await?;
                let cost = self
                    .pricing(record.target)
                    .map_or(0.0, |p| p.cost(&response.usage));
                let responded = ModelResponded {
                    call_id: self.call_id.to_string(),
                    model_served: response.model_served.clone(),
                    input_tokens: response.usage.input_tokens,
                    output_tokens: response.usage.output_tokens,
                    cost_usd: cost,
                    response: raw,
                    cache_read_tokens: response.usage.cache_read_tokens,
                    cache_write_tokens: response.usage.cache_write_tokens,
                    message: Some(message),
                };
                // Staged: stored with the next append, which is always the next intent (a
                // tool call's request, or the next model request) in the same commit. Lost
                // in a crash, the call is asked again, as when the process dies during it.
                let result = self
                    .engine
                    .stage(self.state, vec![EventKind::ModelResponded(responded)])
                    .await;
                self.keep_error(result)
            }
            RouteEvent::Failed { record } => {
                let Err(error) = &record.outcome else {
                    return Ok(());
                };
                let response = match &record.exchange {
                    Some(exchange) => Some(self.artifact(&exchange.response_body).await?),
                    None => None,
                };
                let failed = ModelFailed {
                    call_id: self.call_id.to_string(),
                    error: error.to_string(),
                    retryable: error.retryable(),
                    model: Some(record.model.to_string()),
                    attempt: u32::try_from(record.number).unwrap_or(u32::MAX),
                    kind: Some(error.kind().to_string()),
                    response,
                };
                let mut events = vec![EventKind::ModelFailed(failed)];
                let mut preview = self.state.clone();
                if let Some(first) = events.first() {
                    let _ = preview.apply(preview.events + 1, preview.last_at_ms, first);
                }
                let tripped = after_model_failure(&preview, &self.limits);
                let stop = tripped.is_some();
                if let Some(tripped) = tripped {
                    events.push(EventKind::BreakerTripped(tripped));
                }
                self.record(events).await?;
                if stop {
                    return Err(RouteAbort("breaker provider_errors tripped".into()));
                }
                Ok(())
            }
            RouteEvent::Waiting { .. } => Ok(()),
            RouteEvent::Fallback(fallback) => {
                let event = ModelFallback {
                    from: fallback.from.to_string(),
                    to: fallback.to.to_string(),
                    reason: fallback.reason.clone(),
                };
                self.record(vec![EventKind::ModelFallback(event)]).await
            }
        }
    }
}

impl Engine {
    /// Makes model call `call_id` over `router`, recording every attempt.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn call_model(
        &self,
        state: &mut MissionState,
        router: &flightdeck_models::Router,
        callables: &[Callable],
        call_id: &str,
        role: &str,
        limits: BreakerLimits,
        request: &mut ChatRequest,
        after: Option<&RecordedRequest>,
    ) -> Result<ModelOutcome, EngineError> {
        let mut recorder = Recorder {
            engine: self,
            state,
            callables,
            call_id,
            role,
            limits,
            after,
            latest: None,
            error: None,
        };
        let result = router.run_in_place(request, &mut recorder).await;
        if let Some(error) = recorder.error.take() {
            return Err(error);
        }
        Ok(match (result, recorder.latest) {
            (Ok(routed), Some(recorded)) => {
                ModelOutcome::Answered(routed.exchange.response, recorded)
            }
            (Ok(_), None) => {
                return Err(EngineError::Encode {
                    what: "model call",
                    message: format!("{call_id} was answered without a recorded request"),
                })
            }
            (Err(RouteError::Aborted { .. }), _) => ModelOutcome::Stopped,
            (Err(other), _) => ModelOutcome::Failed(other),
        })
    }
}
