//! Model references (`"<provider>:<model id>"`, `"scripted:<path>"`) and the pinning check.
//!
//! # The pinning rule
//!
//! A model id may end in a *dated snapshot suffix*: `-YYYY-MM-DD` (OpenAI:
//! `gpt-4.1-2025-04-14`) or `-YYYYMMDD` (Anthropic: `claude-sonnet-4-5-20250929`). What comes
//! before it is the *family* (`gpt-4.1`, `claude-sonnet-4-5`). Comparing the pinned id with the
//! id the provider reports as served:
//!
//! | pinned | served | result |
//! |---|---|---|
//! | `gpt-4.1-2025-04-14` | `gpt-4.1-2025-04-14` | match |
//! | `gpt-4.1` (an alias) | `gpt-4.1-2025-04-14` | match: the alias admits any snapshot of its family |
//! | `gpt-4.1-2025-04-14` | `gpt-4.1-2025-05-01` | snapshot mismatch |
//! | `gpt-4.1-2025-04-14` | `gpt-4.1` | snapshot mismatch: the served snapshot cannot be verified |
//! | `gpt-4.1-2025-04-14` | `gpt-4o-2024-08-06` | model mismatch |
//!
//! A snapshot mismatch fails the call unless the template sets `allow_snapshot_mismatch`; a
//! model mismatch (another family) always fails. Comparison is exact (case-sensitive).

use std::fmt;

use crate::error::ModelError;

/// The provider name that selects the scripted model.
pub const SCRIPTED: &str = "scripted";

/// A parsed model reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ModelRef {
    /// `"<provider>:<model id>"`: a provider from the config (`openai`, `anthropic`, or a
    /// name under `[providers]`) and the model id to send.
    Remote { provider: String, model: String },
    /// `"scripted:<path>"`: a scripted model file, the path as written (the caller resolves
    /// it against the repo root).
    Scripted { path: String },
}

/// Why a model reference cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelRefError {
    #[error("model reference `{0}` has no provider\nhint: write \"<provider>:<model id>\", e.g. \"openai:gpt-4.1-2025-04-14\", or \"scripted:<path>\"")]
    MissingProvider(String),
    #[error("model reference `{reference}` has an invalid provider name `{provider}` (use lowercase letters, digits, `-` and `_`)")]
    BadProvider { reference: String, provider: String },
    #[error("model reference `{0}` has an empty model id")]
    EmptyModel(String),
    #[error("model reference `{0}` contains whitespace")]
    Whitespace(String),
}

impl ModelRef {
    /// Parses `"<provider>:<model id>"` (split at the first `:`, so `ollama:llama3.1:8b` is
    /// provider `ollama`, model `llama3.1:8b`) or `"scripted:<path>"`.
    pub fn parse(reference: &str) -> Result<ModelRef, ModelRefError> {
        let Some((provider, model)) = reference.split_once(':') else {
            return Err(ModelRefError::MissingProvider(reference.to_string()));
        };
        if provider.is_empty() {
            return Err(ModelRefError::MissingProvider(reference.to_string()));
        }
        if !provider
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return Err(ModelRefError::BadProvider {
                reference: reference.to_string(),
                provider: provider.to_string(),
            });
        }
        if model.is_empty() {
            return Err(ModelRefError::EmptyModel(reference.to_string()));
        }
        if provider == SCRIPTED {
            // Paths may contain spaces; only the outer ends must be clean.
            if model.trim() != model {
                return Err(ModelRefError::Whitespace(reference.to_string()));
            }
            return Ok(ModelRef::Scripted {
                path: model.to_string(),
            });
        }
        if model.chars().any(char::is_whitespace) {
            return Err(ModelRefError::Whitespace(reference.to_string()));
        }
        Ok(ModelRef::Remote {
            provider: provider.to_string(),
            model: model.to_string(),
        })
    }

    /// The provider name (`scripted` for scripts).
    pub fn provider(&self) -> &str {
        match self {
            ModelRef::Remote { provider, .. } => provider,
            ModelRef::Scripted { .. } => SCRIPTED,
        }
    }

    /// What goes into [`crate::ChatRequest::model`]: the model id, or the script path as
    /// written.
    pub fn model_id(&self) -> &str {
        match self {
            ModelRef::Remote { model, .. } => model,
            ModelRef::Scripted { path } => path,
        }
    }

    /// Checks the served id against this reference. Scripted models pin the script, not an
    /// id, so any served id is accepted for them.
    pub fn check_served(
        &self,
        served: &str,
        allow_snapshot_mismatch: bool,
    ) -> Result<(), ModelError> {
        match self {
            ModelRef::Remote { model, .. } => check_pin(model, served, allow_snapshot_mismatch),
            ModelRef::Scripted { .. } => Ok(()),
        }
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.provider(), self.model_id())
    }
}

impl std::str::FromStr for ModelRef {
    type Err = ModelRefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ModelRef::parse(s)
    }
}

/// How a served id relates to a pinned one (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinMatch {
    /// Identical, or the pin is an alias and the served id is a snapshot of its family.
    Match,
    /// Same family, a different (or unverifiable) snapshot.
    SnapshotMismatch,
    /// Another family.
    ModelMismatch,
}

/// Splits `id` into its family and dated snapshot suffix, if it has one.
pub fn split_snapshot(id: &str) -> (&str, Option<&str>) {
    let bytes = id.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = bytes.get(range)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        part.iter().try_fold(0u32, |n, b| {
            n.checked_mul(10)?.checked_add(u32::from(b - b'0'))
        })
    };
    let plausible = |year: Option<u32>, month: Option<u32>, day: Option<u32>| {
        matches!((year, month, day), (Some(y), Some(m), Some(d))
            if (2000..=2999).contains(&y) && (1..=12).contains(&m) && (1..=31).contains(&d))
    };
    // `-YYYY-MM-DD`, with a non-empty family before it.
    if bytes.len() > 11 {
        let s = bytes.len() - 11;
        if bytes[s] == b'-'
            && bytes[s + 5] == b'-'
            && bytes[s + 8] == b'-'
            && plausible(
                digits(s + 1..s + 5),
                digits(s + 6..s + 8),
                digits(s + 9..s + 11),
            )
        {
            // The suffix is ASCII, so `s` is a char boundary.
            return (&id[..s], Some(&id[s + 1..]));
        }
    }
    // `-YYYYMMDD`
    if bytes.len() > 9 {
        let s = bytes.len() - 9;
        if bytes[s] == b'-'
            && plausible(
                digits(s + 1..s + 5),
                digits(s + 5..s + 7),
                digits(s + 7..s + 9),
            )
        {
            return (&id[..s], Some(&id[s + 1..]));
        }
    }
    (id, None)
}

/// Classifies `served` against `pinned` (see the module docs).
pub fn compare_pin(pinned: &str, served: &str) -> PinMatch {
    if pinned == served {
        return PinMatch::Match;
    }
    let (pinned_family, pinned_snapshot) = split_snapshot(pinned);
    let (served_family, _) = split_snapshot(served);
    if pinned_family != served_family {
        return PinMatch::ModelMismatch;
    }
    match pinned_snapshot {
        // An alias pin admits any snapshot of its family.
        None => PinMatch::Match,
        Some(_) => PinMatch::SnapshotMismatch,
    }
}

/// The pinning check as an error: `Ok` when `served` satisfies `pinned`.
pub fn check_pin(
    pinned: &str,
    served: &str,
    allow_snapshot_mismatch: bool,
) -> Result<(), ModelError> {
    match compare_pin(pinned, served) {
        PinMatch::Match => Ok(()),
        PinMatch::SnapshotMismatch if allow_snapshot_mismatch => Ok(()),
        PinMatch::SnapshotMismatch => Err(ModelError::SnapshotMismatch {
            pinned: pinned.to_string(),
            served: served.to_string(),
        }),
        PinMatch::ModelMismatch => Err(ModelError::ModelMismatch {
            pinned: pinned.to_string(),
            served: served.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let ok: &[(&str, ModelRef)] = &[
            (
                "openai:gpt-4.1-2025-04-14",
                ModelRef::Remote {
                    provider: "openai".into(),
                    model: "gpt-4.1-2025-04-14".into(),
                },
            ),
            (
                "ollama:llama3.1:8b",
                ModelRef::Remote {
                    provider: "ollama".into(),
                    model: "llama3.1:8b".into(),
                },
            ),
            (
                "my_vllm-2:Qwen/Qwen2.5-Coder-32B-Instruct",
                ModelRef::Remote {
                    provider: "my_vllm-2".into(),
                    model: "Qwen/Qwen2.5-Coder-32B-Instruct".into(),
                },
            ),
            (
                "scripted:fixtures/model.toml",
                ModelRef::Scripted {
                    path: "fixtures/model.toml".into(),
                },
            ),
            (
                "scripted:/abs/my script.toml",
                ModelRef::Scripted {
                    path: "/abs/my script.toml".into(),
                },
            ),
        ];
        for (text, expected) in ok {
            let parsed = ModelRef::parse(text).unwrap();
            assert_eq!(&parsed, expected, "{text}");
            assert_eq!(parsed.to_string(), *text, "round trip");
        }
        let bad: &[(&str, &str)] = &[
            ("gpt-4.1", "has no provider"),
            (":gpt-4.1", "has no provider"),
            ("OpenAI:gpt-4.1", "invalid provider name `OpenAI`"),
            ("openai:", "empty model id"),
            ("scripted:", "empty model id"),
            ("openai:gpt 4", "whitespace"),
            ("scripted: x.toml", "whitespace"),
        ];
        for (text, message) in bad {
            let error = ModelRef::parse(text).unwrap_err().to_string();
            assert!(error.contains(message), "{text}: {error}");
        }
    }

    #[test]
    fn snapshot_split_table() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("gpt-4.1-2025-04-14", "gpt-4.1", Some("2025-04-14")),
            (
                "claude-sonnet-4-5-20250929",
                "claude-sonnet-4-5",
                Some("20250929"),
            ),
            ("gpt-4.1", "gpt-4.1", None),
            ("gpt-4o-mini", "gpt-4o-mini", None),
            ("model-12345678", "model-12345678", None),
            ("x-2025-13-01", "x-2025-13-01", None),
            ("2025-04-14", "2025-04-14", None),
            ("llama3.1:8b", "llama3.1:8b", None),
            ("modèle-éé-2025-04-14", "modèle-éé", Some("2025-04-14")),
            ("ééééééééééééé", "ééééééééééééé", None),
        ];
        for (id, family, snapshot) in cases {
            assert_eq!(split_snapshot(id), (*family, *snapshot), "{id}");
        }
    }

    #[test]
    fn pin_table() {
        use PinMatch::*;
        let cases: &[(&str, &str, PinMatch)] = &[
            ("gpt-4.1-2025-04-14", "gpt-4.1-2025-04-14", Match),
            ("gpt-4.1", "gpt-4.1-2025-04-14", Match),
            ("gpt-4.1", "gpt-4.1", Match),
            ("gpt-4.1-2025-04-14", "gpt-4.1-2025-05-01", SnapshotMismatch),
            ("gpt-4.1-2025-04-14", "gpt-4.1", SnapshotMismatch),
            (
                "claude-sonnet-4-5-20250929",
                "claude-sonnet-4-5-20251001",
                SnapshotMismatch,
            ),
            ("gpt-4.1-2025-04-14", "gpt-4o-2024-08-06", ModelMismatch),
            ("gpt-4.1", "gpt-4.1-mini-2025-04-14", ModelMismatch),
            ("gpt-4.1", "gpt-4o", ModelMismatch),
            ("GPT-4.1", "gpt-4.1", ModelMismatch),
        ];
        for (pinned, served, expected) in cases {
            assert_eq!(
                compare_pin(pinned, served),
                *expected,
                "{pinned} vs {served}"
            );
        }
    }

    #[test]
    fn check_pin_honours_the_flag_only_for_snapshots() {
        let snapshot = check_pin("gpt-4.1-2025-04-14", "gpt-4.1-2025-05-01", false).unwrap_err();
        assert_eq!(snapshot.kind(), "snapshot_mismatch");
        assert!(!snapshot.retryable());
        assert!(check_pin("gpt-4.1-2025-04-14", "gpt-4.1-2025-05-01", true).is_ok());
        let family = check_pin("gpt-4.1-2025-04-14", "gpt-4o-2024-08-06", true).unwrap_err();
        assert_eq!(family.kind(), "model_mismatch");
        let scripted = ModelRef::parse("scripted:s.toml").unwrap();
        assert!(scripted.check_served("sim-1", false).is_ok());
    }
}
