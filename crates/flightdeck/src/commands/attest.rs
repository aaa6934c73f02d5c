//! DSSE envelopes (https://github.com/secure-systems-lab/dsse, v1) around in-toto statements,
//! signed and verified with ed25519 keys in PKCS#8 / SPKI PEM files (as
//! `openssl genpkey -algorithm ed25519` and `openssl pkey -pubout` write them).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::pkcs8::DecodePublicKey;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde_json::{json, Value};

use crate::error::CliError;

/// The payload type of an in-toto statement.
pub const INTOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// DSSE's pre-authentication encoding: what is signed.
fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

use flightdeck_store::anchors::key_id;

pub fn read_public_key(path: &std::path::Path) -> Result<VerifyingKey, CliError> {
    let pem = std::fs::read_to_string(path)
        .map_err(|e| CliError::bad_input(format!("--public-key {}: {e}", path.display()), None))?;
    VerifyingKey::from_public_key_pem(&pem).map_err(|e| {
        CliError::bad_input(
            format!(
                "--public-key {}: not an ed25519 public key in SPKI PEM ({e})",
                path.display()
            ),
            Some("`openssl pkey -in signing.pem -pubout -out public.pem` writes it".to_string()),
        )
    })
}

/// `statement` in a DSSE envelope signed with `key`.
pub fn envelope(statement: &Value, key: &SigningKey) -> Value {
    let payload = serde_json::to_vec(statement).unwrap_or_default();
    let signature = key.sign(&pae(INTOTO_PAYLOAD_TYPE, &payload));
    json!({
        "payloadType": INTOTO_PAYLOAD_TYPE,
        "payload": BASE64.encode(&payload),
        "signatures": [{
            "keyid": key_id(&key.verifying_key()),
            "sig": BASE64.encode(signature.to_bytes()),
        }],
    })
}

/// Checks an envelope's signature by `key` (before anything in the payload is read) and
/// returns the statement. `Err` says why it does not verify.
pub fn open_envelope(envelope: &Value, key: &VerifyingKey) -> Result<Value, String> {
    let payload_type = envelope["payloadType"].as_str().ok_or("no payloadType")?;
    let payload = BASE64
        .decode(envelope["payload"].as_str().ok_or("no payload")?)
        .map_err(|e| format!("payload is not base64: {e}"))?;
    let signatures = envelope["signatures"].as_array().ok_or("no signatures")?;
    let message = pae(payload_type, &payload);
    let verified = signatures.iter().any(|s| {
        let Some(sig) = s["sig"].as_str().and_then(|sig| BASE64.decode(sig).ok()) else {
            return false;
        };
        let Ok(signature) = Signature::from_slice(&sig) else {
            return false;
        };
        key.verify(&message, &signature).is_ok()
    });
    if !verified {
        return Err(format!(
            "no signature by key {} verifies over the payload",
            key_id(key)
        ));
    }
    if payload_type != INTOTO_PAYLOAD_TYPE {
        return Err(format!(
            "payloadType is {payload_type}, not {INTOTO_PAYLOAD_TYPE}"
        ));
    }
    serde_json::from_slice(&payload).map_err(|e| format!("the signed payload is not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn pae_is_the_dsse_v1_encoding() {
        assert_eq!(pae("t", b"ab"), b"DSSEv1 1 t 2 ab".to_vec());
    }

    #[test]
    fn an_envelope_verifies_with_its_key_and_nothing_else() {
        let statement = json!({"_type": "https://in-toto.io/Statement/v1", "subject": []});
        let signed = envelope(&statement, &key(1));
        assert_eq!(
            open_envelope(&signed, &key(1).verifying_key()),
            Ok(statement)
        );
        // (what is changed, how) -> must fail
        let payload = signed["payload"].as_str().unwrap().to_string();
        let mut flipped = BASE64.decode(&payload).unwrap();
        flipped[3] ^= 1;
        let cases: Vec<(&str, Value, VerifyingKey)> = vec![
            ("another key", signed.clone(), key(2).verifying_key()),
            (
                "a flipped payload byte",
                {
                    let mut e = signed.clone();
                    e["payload"] = json!(BASE64.encode(&flipped));
                    e
                },
                key(1).verifying_key(),
            ),
            (
                "another payload type",
                {
                    let mut e = signed.clone();
                    e["payloadType"] = json!("application/json");
                    e
                },
                key(1).verifying_key(),
            ),
            (
                "no signature",
                {
                    let mut e = signed.clone();
                    e["signatures"] = json!([]);
                    e
                },
                key(1).verifying_key(),
            ),
        ];
        for (what, envelope, public) in cases {
            assert!(open_envelope(&envelope, &public).is_err(), "{what}");
        }
    }
}
