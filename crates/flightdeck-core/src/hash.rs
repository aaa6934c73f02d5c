//! Content digests and the timeline's hash chain (CONTRACT.md, "Events").

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::jcs::{canonicalize, JcsError};

/// `prev_hash` of the first event of every timeline: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A content digest in the form `sha256:<64 lowercase hex>`, used for artifacts, templates
/// and policies.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(format!("sha256:{}", sha256_hex(bytes)))
    }

    /// The 64 hex characters after `sha256:`.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a digest of the form sha256:<64 lowercase hex digits>")]
pub struct DigestParseError(pub String);

impl TryFrom<String> for Digest {
    type Error = DigestParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        let valid = s.strip_prefix("sha256:").is_some_and(|h| {
            h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        });
        if valid {
            Ok(Digest(s))
        } else {
            Err(DigestParseError(s))
        }
    }
}

impl std::str::FromStr for Digest {
    type Err = DigestParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::try_from(s.to_string())
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.0
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The canonical bytes an event's hash covers: `JCS({"mission","seq","at","type","data"})`.
pub fn event_preimage(
    mission: &str,
    seq: u64,
    at: &str,
    event_type: &str,
    data: &Value,
) -> Result<String, JcsError> {
    canonicalize(&json!({
        "mission": mission,
        "seq": seq,
        "at": at,
        "type": event_type,
        "data": data,
    }))
}

/// `sha256_hex(prev_hash + "\n" + JCS({"mission","seq","at","type","data"}))`.
pub fn event_hash(
    prev_hash: &str,
    mission: &str,
    seq: u64,
    at: &str,
    event_type: &str,
    data: &Value,
) -> Result<String, JcsError> {
    let preimage = event_preimage(mission, seq, at, event_type, data)?;
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(b"\n");
    hasher.update(preimage.as_bytes());
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_hash_is_sha256_over_prev_newline_jcs() {
        let data = json!({"b": 1, "a": "x"});
        let expected_preimage = r#"{"at":"2026-01-01T00:00:00.000Z","data":{"a":"x","b":1},"mission":"m-1","seq":1,"type":"t"}"#;
        assert_eq!(
            event_preimage("m-1", 1, "2026-01-01T00:00:00.000Z", "t", &data).unwrap(),
            expected_preimage
        );
        let expected = sha256_hex(format!("{GENESIS_HASH}\n{expected_preimage}").as_bytes());
        assert_eq!(
            event_hash(
                GENESIS_HASH,
                "m-1",
                1,
                "2026-01-01T00:00:00.000Z",
                "t",
                &data
            )
            .unwrap(),
            expected
        );
    }

    #[test]
    fn digests_parse_only_in_canonical_form() {
        let d = Digest::of(b"hello");
        assert_eq!(
            d.as_str(),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        for bad in [
            "",
            "sha256:",
            "sha1:aa",
            "SHA256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
            "sha256:2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad}");
        }
        assert_eq!(d.as_str().parse::<Digest>().unwrap(), d);
    }
}
