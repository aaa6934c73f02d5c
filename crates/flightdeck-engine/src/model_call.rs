//! One model call, governed like every other call: the router (retries, fallback) runs as
//! the effect, and reports each step to the driver, which decides and records it. Before
//! each attempt the driver checks the attempt's worst case against the budget
//! ([`crate::protocol::govern_model_attempt`]: `budget.exceeded` instead of the attempt when
//! it does not fit), then records `model.requested` (the request record, see
//! `request_record`, and the digest of the bytes sent); `model.responded`, `model.failed`
//! and `model.fallback` as the router reports them. The router never sees the mission's
//! state; the driver never waits on the provider except through its input channel, so a
//! cancel or a budget raise during a long call is taken in at once.

use std::sync::Arc;

use async_trait::async_trait;
use flightdeck_core::budget::{after_model_failure, BreakerLimits};
use flightdeck_core::event::MissionCreated;
use flightdeck_core::event::{
    ModelFailed, ModelFallback, ModelRequested, ModelResponded, Reservation,
};
use flightdeck_core::{Digest, EventKind};
use flightdeck_models::{
    ChatRequest, ChatResponse, ModelRef, Pricing, Provider, RetryPolicy, RouteAbort, RouteError,
    RouteEvent, RouteObserver, Router, Script, ScriptedProvider, Target, Usage,
};
use tokio::sync::{mpsc, oneshot};

use crate::driver::{Driver, Input, Report, ReportStep, Running, Stop, Verdict};
use crate::error::EngineError;
use crate::models::{remote_provider, StepModels};
use crate::quota;
use crate::request_record::{self, RecordedRequest};
use crate::shared::Shared;

/// How a model call ended.
pub(crate) enum ModelOutcome {
    /// The answer, and the record of the request that got it (the next call continues it).
    Answered(ChatResponse, RecordedRequest),
    /// A budget or breaker stopped it; the reason is recorded and the mission is blocked.
    Stopped,
    /// Every model failed, or one failed in a way no fallback fixes.
    Failed(RouteError),
}

/// The router's observer: turns each step into a report and waits for the driver's verdict.
struct Reporter<'a> {
    sender: mpsc::UnboundedSender<Input>,
    callables: &'a [Callable],
    call_id: &'a str,
    role: &'a str,
    limits: BreakerLimits,
    /// The record this call's requests continue.
    after: Option<&'a RecordedRequest>,
    /// The record of the latest attempt's request.
    latest: Option<RecordedRequest>,
    secrets: &'a crate::Secrets,
}

impl Reporter<'_> {
    async fn report(&mut self, step: ReportStep) -> Result<Option<Digest>, RouteAbort> {
        let (reply, verdict) = oneshot::channel();
        let report = Report {
            call_id: self.call_id.to_string(),
            role: self.role.to_string(),
            limits: self.limits,
            step,
        };
        self.sender
            .send(Input::Model(report, reply))
            .map_err(|_| RouteAbort("the mission's driver stopped".into()))?;
        match verdict.await {
            Ok(Verdict::Go(digest)) => Ok(digest),
            Ok(Verdict::Abort(reason)) => Err(RouteAbort(reason)),
            Err(_) => Err(RouteAbort("the mission's driver stopped".into())),
        }
    }

    fn pricing(&self, target: usize) -> Option<&flightdeck_models::Pricing> {
        self.callables.get(target).and_then(|c| c.pricing.as_ref())
    }
}

#[async_trait]
impl RouteObserver for Reporter<'_> {
    async fn on_event(&mut self, event: RouteEvent<'_>) -> Result<(), RouteAbort> {
        let step = match event {
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
                let record = request_record::encode(request, self.after)
                    .map_err(|e| RouteAbort(e.to_string()))?;
                // The bytes sent (by providers that send any) are pinned by their digest
                // only: storing them would store the whole conversation again.
                let wire = (!request_body.is_empty())
                    .then(|| Digest::of(&self.secrets.redact(request_body)));
                let messages = request.messages.len();
                let omitted = self
                    .callables
                    .get(target)
                    .map(|c| c.provider.wire_format().omitted_params(request))
                    .unwrap_or_default()
                    .into_iter()
                    .map(|p| p.as_str().to_string())
                    .collect();
                let step = ReportStep::Attempt {
                    number,
                    provider: model.provider().to_string(),
                    model: model.model_id().to_string(),
                    record,
                    wire,
                    reserved,
                    omitted,
                };
                let digest = self.report(step).await?;
                if let Some(digest) = digest {
                    self.latest = Some(RecordedRequest { digest, messages });
                }
                return Ok(());
            }
            RouteEvent::Responded { record } => {
                let Some(exchange) = &record.exchange else {
                    return Ok(());
                };
                let response = &exchange.response;
                let neutral =
                    serde_json::to_vec(response).map_err(|e| RouteAbort(e.to_string()))?;
                ReportStep::Responded {
                    model_served: response.model_served.clone(),
                    usage: response.usage,
                    cost_usd: self
                        .pricing(record.target)
                        .map_or(0.0, |p| p.cost(&response.usage)),
                    raw: exchange.response_body.clone(),
                    neutral,
                }
            }
            RouteEvent::Failed { record } => {
                let Err(error) = &record.outcome else {
                    return Ok(());
                };
                ReportStep::Failed {
                    error: error.to_string(),
                    retryable: error.retryable(),
                    model: record.model.to_string(),
                    attempt: record.number,
                    kind: error.kind().to_string(),
                    raw: record.exchange.as_ref().map(|e| e.response_body.clone()),
                }
            }
            RouteEvent::Waiting { .. } => return Ok(()),
            RouteEvent::Fallback(fallback) => ReportStep::Fallback {
                from: fallback.from.to_string(),
                to: fallback.to.to_string(),
                reason: fallback.reason.clone(),
            },
        };
        self.report(step).await.map(|_| ())
    }
}

impl Driver {
    /// Makes model call `call_id` over `router`, recording every attempt.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn call_model(
        &mut self,
        router: &Router,
        callables: &[Callable],
        call_id: &str,
        role: &str,
        limits: BreakerLimits,
        request: &mut ChatRequest,
        after: Option<&RecordedRequest>,
    ) -> Result<Result<ModelOutcome, EngineError>, Stop> {
        let engine = self.shared.clone();
        let mut reporter = Reporter {
            sender: self.sender(),
            callables,
            call_id,
            role,
            limits,
            after,
            latest: None,
            secrets: &engine.cfg.secrets,
        };
        let label = format!("model call {call_id}");
        let result = self
            .perform(
                Running {
                    call_id,
                    label: &label,
                },
                router.run_in_place(request, &mut reporter),
            )
            .await?;
        if let Some(error) = self.model_error.take() {
            return Ok(Err(error));
        }
        Ok(Ok(match (result, reporter.latest) {
            (Ok(routed), Some(recorded)) => {
                ModelOutcome::Answered(routed.exchange.response, recorded)
            }
            (Ok(_), None) => {
                return Ok(Err(EngineError::Encode {
                    what: "model call",
                    message: format!("{call_id} was answered without a recorded request"),
                }))
            }
            (Err(RouteError::Aborted { .. }), _) => ModelOutcome::Stopped,
            (Err(other), _) => ModelOutcome::Failed(other),
        }))
    }

    /// Decides and records one report of a running model call.
    pub(crate) async fn model_report(&mut self, report: Report) -> Verdict {
        match self.record_model(report).await {
            Ok(verdict) => verdict,
            // A store or artifact error stops the route; the call returns the error.
            Err(error) => {
                let reason = error.to_string();
                self.model_error = Some(error);
                Verdict::Abort(reason)
            }
        }
    }

    async fn record_model(&mut self, report: Report) -> Result<Verdict, EngineError> {
        let Report {
            call_id,
            role,
            limits,
            step,
        } = report;
        match step {
            ReportStep::Attempt {
                number,
                provider,
                model,
                record,
                wire,
                reserved,
                omitted,
            } => {
                let now = self.log.now_ms();
                if let Some(exceeded) = crate::protocol::govern_model_attempt(
                    self.log.state(),
                    &call_id,
                    &reserved,
                    now,
                ) {
                    self.log.append(vec![exceeded]).await?;
                    return Ok(Verdict::Abort("budget exceeded".into()));
                }
                // Then the team quotas, in the store, so missions on other workers cannot
                // spend the same room.
                let cfg = &self.shared.cfg;
                match quota::reserve(cfg, self.log.state(), &call_id, &reserved, now).await? {
                    quota::Reserved::Free => self.quota_hold = None,
                    quota::Reserved::Held(id) => self.quota_hold = Some(id),
                    quota::Reserved::Refused(exceeded) => {
                        self.quota_hold = None;
                        let exceeded = EventKind::BudgetExceeded(exceeded);
                        self.log.append(vec![exceeded]).await?;
                        return Ok(Verdict::Abort("team quota exceeded".into()));
                    }
                }
                let digest = self.log.put_artifact(&record).await?;
                let requested = ModelRequested {
                    call_id,
                    provider,
                    model,
                    role,
                    request: digest.clone(),
                    wire,
                    attempt: u32::try_from(number).unwrap_or(u32::MAX),
                    reserved: Some(reserved),
                    omitted,
                };
                self.log
                    .append(vec![EventKind::ModelRequested(requested)])
                    .await?;
                Ok(Verdict::Go(Some(digest)))
            }
            ReportStep::Responded {
                model_served,
                usage,
                cost_usd,
                raw,
                neutral,
            } => {
                if let Some(id) = self.quota_hold.take() {
                    let tokens = usage.input_tokens + usage.output_tokens;
                    let now = self.log.now_ms();
                    quota::settle(&self.shared.cfg, id, tokens, cost_usd, now).await?;
                }
                let response = self.log.put_artifact(&raw).await?;
                let message = self.log.put_artifact(&neutral).await?;
                let responded = ModelResponded {
                    call_id,
                    model_served,
                    input_tokens: usage.input_tokens,
                    output_tokens: usage.output_tokens,
                    cost_usd,
                    response,
                    cache_read_tokens: usage.cache_read_tokens,
                    cache_write_tokens: usage.cache_write_tokens,
                    message: Some(message),
                };
                // Staged: stored with the next append, which is always the next intent (a
                // tool call's request, or the next model request) in the same commit. Lost
                // in a crash, the call is asked again, as when the process dies during it.
                self.log
                    .stage(vec![EventKind::ModelResponded(responded)])
                    .await?;
                Ok(Verdict::Go(None))
            }
            ReportStep::Failed {
                error,
                retryable,
                model,
                attempt,
                kind,
                raw,
            } => {
                // A failed attempt is billed nothing here (as in the cost ledger).
                if let Some(id) = self.quota_hold.take() {
                    let now = self.log.now_ms();
                    quota::settle(&self.shared.cfg, id, 0, 0.0, now).await?;
                }
                let response = match raw {
                    Some(raw) => Some(self.log.put_artifact(&raw).await?),
                    None => None,
                };
                let failed = EventKind::ModelFailed(ModelFailed {
                    call_id,
                    error,
                    retryable,
                    model: Some(model),
                    attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
                    kind: Some(kind),
                    response,
                });
                self.log.append(vec![failed]).await?;
                if let Some(tripped) = after_model_failure(self.log.state(), &limits) {
                    self.log
                        .append(vec![EventKind::BreakerTripped(tripped)])
                        .await?;
                    return Ok(Verdict::Abort("breaker provider_errors tripped".into()));
                }
                Ok(Verdict::Go(None))
            }
            ReportStep::Fallback { from, to, reason } => {
                let event = ModelFallback { from, to, reason };
                self.log
                    .append(vec![EventKind::ModelFallback(event)])
                    .await?;
                Ok(Verdict::Go(None))
            }
        }
    }
}

/// A model the router may call, with what budgets need to know of it.
pub(crate) struct Callable {
    pub(crate) provider: Arc<dyn Provider>,
    pub(crate) pricing: Option<Pricing>,
    /// The provider's own `max_retries` (remote providers).
    pub(crate) max_retries: Option<u32>,
}

/// Builds the providers of `models` for a mission: scripts from the copies pinned in
/// `mission.created`, each scripted cursor after the calls the script already answered.
pub(crate) async fn callables(
    shared: &Shared,
    created: &MissionCreated,
    models: &StepModels,
    answered: impl Fn(&str) -> u64,
) -> Result<Vec<Callable>, EngineError> {
    let settings = &shared.cfg.models;
    let ports = &shared.cfg.ports;
    let mut callables = Vec::with_capacity(models.refs.len());
    for model in &models.refs {
        let key = model.to_string();
        let callable =
            match model {
                ModelRef::Scripted { path } => {
                    let digest = created.model_scripts.get(&key).ok_or_else(|| {
                        EngineError::ModelConfig {
                            message: format!(
                                "mission {} has no pinned script for `{key}`",
                                created.template
                            ),
                            hint: None,
                        }
                    })?;
                    let script = match shared.cached_script(digest) {
                        Some(script) => script,
                        None => {
                            let source = shared.cfg.artifacts.get(digest).await?;
                            let script = Arc::new(
                                Script::parse(&String::from_utf8_lossy(&source), path).map_err(
                                    |e| EngineError::ModelConfig {
                                        message: e.to_string(),
                                        hint: None,
                                    },
                                )?,
                            );
                            shared.cache_script(digest, &script);
                            script
                        }
                    };
                    let pricing = settings.pricing_of(model, Some(&script));
                    let done = usize::try_from(answered(&key)).unwrap_or(usize::MAX);
                    Callable {
                        provider: Arc::new(ScriptedProvider::starting_at(script, done)),
                        pricing,
                        max_retries: None,
                    }
                }
                ModelRef::Remote { provider, .. } => {
                    let config =
                        settings
                            .provider(provider)
                            .ok_or_else(|| EngineError::ModelConfig {
                                message: format!(
                            "model `{key}` names provider `{provider}`, which is not configured"
                        ),
                                hint: Some(format!("add [providers.{provider}] to config.toml")),
                            })?;
                    Callable {
                        provider: remote_provider(provider, &config, !ports.models.needs_keys())?,
                        pricing: settings.pricing_of(model, None),
                        max_retries: Some(config.max_retries),
                    }
                }
            };
        // A replay serves the recorded answers through the provider (which only encodes).
        let callable = Callable {
            provider: ports.models.provider(&key, callable.provider),
            ..callable
        };
        callables.push(callable);
    }
    Ok(callables)
}

/// The router over `callables` (targets in the same order).
pub(crate) fn router(shared: &Shared, models: &StepModels, callables: &[Callable]) -> Router {
    let settings = &shared.cfg.models;
    let targets = models
        .refs
        .iter()
        .zip(callables)
        .map(|(model, callable)| Target {
            max_retries: callable.max_retries,
            ..Target::new(model.clone(), callable.provider.clone())
        })
        .collect();
    let policy = RetryPolicy {
        max_total_wait: settings.max_wait,
        ..RetryPolicy::default()
    };
    Router::new(targets, policy, shared.cfg.sleeper.clone())
        .allow_snapshot_mismatch(models.allow_snapshot_mismatch)
}
