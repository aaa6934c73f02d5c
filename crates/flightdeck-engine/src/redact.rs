//! Redaction: the values of the secrets this process knows (the API keys of configured
//! providers) never reach an event, an artifact or a model's prompt. Every artifact passes
//! [`Secrets::redact`] in `Engine::put_artifact`, every event's data in `Engine::append`, and
//! a tool's output before the model is shown it, so a command that prints a key (from
//! `/proc`, a dotfile, anywhere) leaves `[REDACTED:<name>]` instead.

use std::borrow::Cow;
use std::fmt;

/// Secret values by name. Values shorter than [`MIN_SECRET_LEN`] are ignored: redacting a
/// short string would mangle ordinary output and protects nothing.
#[derive(Clone, Default)]
pub struct Secrets {
    /// Longest value first, so a value containing another is replaced whole.
    values: Vec<(String, String)>,
}

/// The shortest value treated as a secret.
pub const MIN_SECRET_LEN: usize = 8;

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.values.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Secrets").field("names", &names).finish()
    }
}

impl Secrets {
    /// `(name, value)` pairs, e.g. `("OPENAI_API_KEY", "sk-…")`.
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Secrets {
        let mut values: Vec<(String, String)> = pairs
            .into_iter()
            .filter(|(_, v)| v.trim().len() >= MIN_SECRET_LEN)
            .map(|(n, v)| (n, v.trim().to_string()))
            .collect();
        values.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
        values.dedup_by(|a, b| a.1 == b.1);
        Secrets { values }
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `bytes` with every secret value replaced by `[REDACTED:<name>]`.
    pub fn redact<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        let mut out: Cow<'a, [u8]> = Cow::Borrowed(bytes);
        for (name, value) in &self.values {
            let needle = value.as_bytes();
            if find(&out, needle).is_none() {
                continue;
            }
            let marker = format!("[REDACTED:{name}]");
            let mut replaced = Vec::with_capacity(out.len());
            let mut rest: &[u8] = &out;
            while let Some(at) = find(rest, needle) {
                replaced.extend_from_slice(&rest[..at]);
                replaced.extend_from_slice(marker.as_bytes());
                rest = &rest[at + needle.len()..];
            }
            replaced.extend_from_slice(rest);
            out = Cow::Owned(replaced);
        }
        out
    }

    /// A JSON value with every secret in its strings (and keys) replaced.
    pub fn redact_json(&self, value: serde_json::Value) -> serde_json::Value {
        if self.is_empty() {
            return value;
        }
        let text = value.to_string();
        match self.redact(text.as_bytes()) {
            Cow::Borrowed(_) => value,
            // The markers are plain ASCII without quotes or backslashes: still valid JSON.
            Cow::Owned(bytes) => serde_json::from_slice(&bytes).unwrap_or(value),
        }
    }
}

/// Every artifact passes here, the largest being whole conversations: a SIMD substring
/// search keeps redaction off the profile.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    memchr::memmem::find(haystack, needle)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn redaction_table() {
        let secrets = Secrets::new([
            (
                "OPENAI_API_KEY".to_string(),
                "sk-test-123456789".to_string(),
            ),
            ("SHORT".to_string(), "abc".to_string()),
            (
                "LONGER".to_string(),
                "sk-test-123456789-extended".to_string(),
            ),
        ]);
        let cases: &[(&str, &str)] = &[
            ("nothing here", "nothing here"),
            ("key=sk-test-123456789\n", "key=[REDACTED:OPENAI_API_KEY]\n"),
            (
                "sk-test-123456789sk-test-123456789",
                "[REDACTED:OPENAI_API_KEY][REDACTED:OPENAI_API_KEY]",
            ),
            ("x sk-test-123456789-extended y", "x [REDACTED:LONGER] y"),
            (
                "abc is too short to be a secret",
                "abc is too short to be a secret",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(
                String::from_utf8(secrets.redact(input.as_bytes()).into_owned()).unwrap(),
                *expected
            );
        }
        let json = serde_json::json!({"a": ["see sk-test-123456789"], "b": 1});
        assert_eq!(
            secrets.redact_json(json),
            serde_json::json!({"a": ["see [REDACTED:OPENAI_API_KEY]"], "b": 1})
        );
        assert!(!format!("{secrets:?}").contains("sk-test"));
    }
}
