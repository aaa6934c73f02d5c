//! The `Provider` trait and the wire formats whose bytes are recorded.

use async_trait::async_trait;

use crate::capabilities::{Capabilities, CapabilityOverride, ProviderKind, SamplingParam};
use crate::error::ModelError;
use crate::openai::MaxTokensField;
use crate::types::{ChatRequest, ChatResponse, Exchange};

/// Something that answers chat requests.
#[async_trait]
pub trait Provider: Send + Sync {
    /// The provider's name as model refs spell it (`openai`, `anthropic`, `scripted`, …).
    fn name(&self) -> &str;

    /// How this provider encodes requests: `wire_format().encode_request(r)` is exactly the
    /// body [`Provider::chat`] sends for `r`, so a caller can record the request before the
    /// call.
    fn wire_format(&self) -> WireFormat;

    /// The most input tokens `request` (encoded as `body`) can be billed for, for the budget
    /// check before the call. The default is the body's length in bytes: every token of a
    /// byte-level tokenizer covers at least one byte of text, and the JSON around the text
    /// takes more bytes than the few tokens a chat template adds per message.
    fn input_token_bound(&self, _request: &ChatRequest, body: &[u8]) -> u64 {
        body.len() as u64
    }

    /// A replay served one of this provider's recorded answers in its place: a provider
    /// with state that depends on the answers it gave (the scripted cursor) moves on as if
    /// it had answered.
    fn replayed_answer(&self) {}

    /// One call: the request as given (its `model` is sent as is), no retries. The exchange
    /// carries the exact bytes sent and received.
    async fn chat(&self, request: &ChatRequest) -> Result<Exchange, ModelError>;
}

/// How a provider puts a request and a response into bytes. The replay provider uses it to
/// re-encode a new request the way the recorded one was encoded, and to decode the recorded
/// response.
///
/// The [`CapabilityOverride`] of the remote formats is the provider's (see
/// `with_capabilities` on [`crate::OpenAiProvider`] and [`crate::AnthropicProvider`]): applied
/// over the built-in table ([`Capabilities::for_model`]) for the request's model, it decides
/// which sampling parameters the body leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    /// Chat Completions JSON.
    OpenAi(MaxTokensField, CapabilityOverride),
    /// Messages JSON.
    Anthropic(CapabilityOverride),
    /// The serde JSON of [`ChatRequest`] / [`ChatResponse`] (the scripted provider's bytes).
    Neutral,
}

impl WireFormat {
    /// Whether a provider of this format sends bytes at all: the neutral format is the
    /// scripted model's, which answers in process, so no body is built or recorded for it.
    pub fn sends(self) -> bool {
        !matches!(self, WireFormat::Neutral)
    }

    /// What `model` accepts in this format: the built-in table with the format's override
    /// applied. `None` for the neutral format, whose bytes are the request itself.
    pub fn capabilities(self, model: &str) -> Option<Capabilities> {
        let (kind, overrides) = match self {
            WireFormat::OpenAi(_, overrides) => (ProviderKind::OpenAi, overrides),
            WireFormat::Anthropic(overrides) => (ProviderKind::Anthropic, overrides),
            WireFormat::Neutral => return None,
        };
        Some(Capabilities::for_model(kind, model).with_override(overrides))
    }

    /// The parameters `request` asks for that [`WireFormat::encode_request`] leaves out,
    /// because `request.model` does not accept them (empty for the neutral format).
    pub fn omitted_params(self, request: &ChatRequest) -> Vec<SamplingParam> {
        self.capabilities(&request.model)
            .map(|capabilities| capabilities.omitted(request))
            .unwrap_or_default()
    }

    /// The request body this format sends for `request`: the parameters its model does not
    /// accept are left out (see [`WireFormat::omitted_params`]).
    pub fn encode_request(self, request: &ChatRequest) -> Result<Vec<u8>, ModelError> {
        let provider = self.label();
        let capabilities = self
            .capabilities(&request.model)
            .unwrap_or(Capabilities::ALL);
        match self {
            WireFormat::OpenAi(field, _) => crate::openai::to_bytes(
                provider,
                &crate::openai::encode_request_with(request, field, capabilities),
            ),
            WireFormat::Anthropic(_) => crate::openai::to_bytes(
                provider,
                &crate::anthropic::encode_request_with(request, capabilities),
            ),
            WireFormat::Neutral => {
                serde_json::to_vec(request).map_err(|e| ModelError::InvalidRequest {
                    provider: provider.to_string(),
                    message: format!("cannot encode the request: {e}"),
                })
            }
        }
    }

    /// Reads a response body of this format.
    pub fn decode_response(self, body: &[u8]) -> Result<ChatResponse, ModelError> {
        let provider = self.label();
        match self {
            WireFormat::OpenAi(..) => crate::openai::decode_response(provider, body),
            WireFormat::Anthropic(_) => crate::anthropic::decode_response(provider, body),
            WireFormat::Neutral => {
                serde_json::from_slice(body).map_err(|e| ModelError::InvalidResponse {
                    provider: provider.to_string(),
                    message: format!("not a neutral chat response: {e}"),
                })
            }
        }
    }

    fn label(self) -> &'static str {
        match self {
            WireFormat::OpenAi(..) => "openai",
            WireFormat::Anthropic(_) => "anthropic",
            WireFormat::Neutral => "neutral",
        }
    }
}
