//! flightdeck's model layer.
//!
//! - [`types`]: provider-neutral messages, tools, requests, responses, usage.
//! - [`Provider`]: one call, no retries, returning the exact bytes sent and received
//!   ([`Exchange`]). Implementations: [`OpenAiProvider`] (Chat Completions, any compatible
//!   server), [`AnthropicProvider`] (Messages), [`ScriptedProvider`] (`scripted:<path>`),
//!   [`ReplayProvider`] (a model served from a recording).
//! - [`ModelRef`] and the pinning rule ([`check_pin`]).
//! - [`Router`]: retries with backoff honouring `Retry-After`, fallback in order, every
//!   attempt reported.
//! - [`Pricing`], token estimates and [`worst_case_cost`] for budget checks.
//! - [`Capabilities`]: which sampling parameters a model accepts (a built-in table by model
//!   id, [`CapabilityOverride`]s per installation); the others are left out of its requests.
//!
//! The crate never reads the environment except in [`ApiKey::from_env_var`], never prints,
//! and never puts an API key into request or response bytes: keys travel only in headers
//! marked sensitive, and any echo of the key in a server's answer is replaced by
//! [`http::REDACTED`] before it reaches an [`Exchange`] or a [`ModelError`].

pub mod anthropic;
mod capabilities;
mod error;
pub mod http;
mod model_ref;
pub mod openai;
mod pricing;
mod provider;
mod replay;
mod router;
pub mod scripted;
pub mod types;

pub use anthropic::{AnthropicConfig, AnthropicProvider};
pub use capabilities::{Capabilities, CapabilityOverride, ProviderKind, SamplingParam};
pub use error::ModelError;
pub use http::{ApiKey, MissingApiKey};
pub use model_ref::{
    check_pin, compare_pin, split_snapshot, ModelRef, ModelRefError, PinMatch, SCRIPTED,
};
pub use openai::{MaxTokensField, OpenAiConfig, OpenAiProvider};
pub use pricing::{
    estimate_input_tokens, estimate_json_tokens, estimate_message_tokens, estimate_output_tokens,
    estimate_text_tokens, estimate_tools_tokens, input_tokens_of, worst_case_cost, Pricing,
    WorstCase, DEFAULT_MAX_OUTPUT_TOKENS, PER_REQUEST_TOKENS,
};
pub use provider::{Provider, WireFormat};
pub use replay::{first_difference, RecordedAttempt, Recording, ReplayProvider};
pub use router::{
    decide, AttemptRecord, Decision, Fallback, NoObserver, RetryPolicy, RouteAbort, RouteError,
    RouteEvent, RouteObserver, Routed, Router, Sleeper, Target, TokioSleeper,
};
pub use scripted::{Script, ScriptError, ScriptedProvider};
pub use types::{
    ChatRequest, ChatResponse, Exchange, Message, StopReason, ToolCall, ToolDefinition, Usage,
};
