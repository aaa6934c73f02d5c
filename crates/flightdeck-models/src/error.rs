//! Why a model call failed, and whether trying again may help.

use std::time::Duration;

/// A failed model call. Messages are lowercase fragments that read after "model call failed: ".
///
/// No variant ever holds an API key: providers scrub the key out of anything a server sends
/// back before it reaches an error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The provider answered with a non-success HTTP status.
    #[error("{provider} answered HTTP {status}: {message}{}", retry_after_note(*retry_after))]
    Status {
        provider: String,
        status: u16,
        /// The provider's error message (from its JSON error body), or the start of the body.
        message: String,
        /// What the server asked for with `Retry-After` / `retry-after-ms`.
        retry_after: Option<Duration>,
    },
    /// No complete answer within the per-call timeout.
    #[error("{provider} did not answer within {}s", after.as_secs_f64())]
    Timeout { provider: String, after: Duration },
    /// The connection could not be made or broke.
    #[error("could not reach {provider}: {message}")]
    Connection { provider: String, message: String },
    /// A success status whose body is not the documented shape.
    #[error("{provider} sent a response flightdeck cannot read: {message}")]
    InvalidResponse { provider: String, message: String },
    /// The request cannot be encoded for this provider.
    #[error("invalid request for {provider}: {message}")]
    InvalidRequest { provider: String, message: String },
    /// The provider served a different dated snapshot of the pinned model.
    #[error(
        "pinned `{pinned}` but the provider served `{served}` (a different snapshot)\
         \nhint: set `allow_snapshot_mismatch = true` under [model] to accept other snapshots"
    )]
    SnapshotMismatch { pinned: String, served: String },
    /// The provider served a different model altogether.
    #[error("pinned `{pinned}` but the provider served `{served}` (a different model)")]
    ModelMismatch { pinned: String, served: String },
    /// A scripted model's turn did not fit the conversation, or the script ran out.
    #[error("{path}: turn {turn}: {message}")]
    Script {
        path: String,
        /// 1-based, in file order.
        turn: usize,
        message: String,
    },
    /// A failure served back from a recording, as it was recorded (message, kind and whether
    /// it was retryable), so the router decides again exactly as it did.
    #[error("{message}")]
    Recorded {
        message: String,
        kind: String,
        retryable: bool,
    },
}

fn retry_after_note(retry_after: Option<Duration>) -> String {
    match retry_after {
        Some(after) => format!(" (retry after {}s)", after.as_secs_f64()),
        None => String::new(),
    }
}

impl ModelError {
    /// Whether the same call may succeed later: rate limits (429), request timeouts (408),
    /// server errors (5xx, 529 overloaded included), timeouts and connection errors. Everything
    /// else (400, 401, 403, 404, 422, mismatches, script and replay errors) is final and does
    /// not fall back.
    pub fn retryable(&self) -> bool {
        match self {
            ModelError::Status { status, .. } => {
                matches!(*status, 408 | 429) || (500..=599).contains(status)
            }
            ModelError::Timeout { .. } | ModelError::Connection { .. } => true,
            ModelError::InvalidResponse { .. }
            | ModelError::InvalidRequest { .. }
            | ModelError::SnapshotMismatch { .. }
            | ModelError::ModelMismatch { .. }
            | ModelError::Script { .. } => false,
            ModelError::Recorded { retryable, .. } => *retryable,
        }
    }

    /// The wait the server asked for, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ModelError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A short machine-friendly kind, for events and breakers.
    pub fn kind(&self) -> &str {
        match self {
            ModelError::Recorded { kind, .. } => kind,
            ModelError::Status { status: 429, .. } => "rate_limited",
            ModelError::Status { status: 529, .. } => "overloaded",
            ModelError::Status { status, .. } if *status >= 500 => "server_error",
            ModelError::Status { .. } => "http_status",
            ModelError::Timeout { .. } => "timeout",
            ModelError::Connection { .. } => "connection",
            ModelError::InvalidResponse { .. } => "invalid_response",
            ModelError::InvalidRequest { .. } => "invalid_request",
            ModelError::SnapshotMismatch { .. } => "snapshot_mismatch",
            ModelError::ModelMismatch { .. } => "model_mismatch",
            ModelError::Script { .. } => "script",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> ModelError {
        ModelError::Status {
            provider: "openai".into(),
            status: code,
            message: "m".into(),
            retry_after: None,
        }
    }

    #[test]
    fn classification_table() {
        let cases: &[(ModelError, bool, &str)] = &[
            (status(400), false, "http_status"),
            (status(401), false, "http_status"),
            (status(403), false, "http_status"),
            (status(404), false, "http_status"),
            (status(408), true, "http_status"),
            (status(422), false, "http_status"),
            (status(429), true, "rate_limited"),
            (status(500), true, "server_error"),
            (status(502), true, "server_error"),
            (status(503), true, "server_error"),
            (status(529), true, "overloaded"),
            (
                ModelError::Timeout {
                    provider: "p".into(),
                    after: Duration::from_secs(1),
                },
                true,
                "timeout",
            ),
            (
                ModelError::Connection {
                    provider: "p".into(),
                    message: "refused".into(),
                },
                true,
                "connection",
            ),
            (
                ModelError::SnapshotMismatch {
                    pinned: "a".into(),
                    served: "b".into(),
                },
                false,
                "snapshot_mismatch",
            ),
            (
                ModelError::Script {
                    path: "s.toml".into(),
                    turn: 1,
                    message: "m".into(),
                },
                false,
                "script",
            ),
        ];
        for (error, retryable, kind) in cases {
            assert_eq!(error.retryable(), *retryable, "{error}");
            assert_eq!(error.kind(), *kind, "{error}");
        }
    }

    #[test]
    fn retry_after_is_shown_and_exposed() {
        let error = ModelError::Status {
            provider: "openai".into(),
            status: 429,
            message: "slow down".into(),
            retry_after: Some(Duration::from_secs(3)),
        };
        assert_eq!(error.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(
            error.to_string(),
            "openai answered HTTP 429: slow down (retry after 3s)"
        );
    }
}
