//! The GitHub App's own credential: its RSA private key ([`AppKey`]) and the short-lived JWT
//! it signs (RS256) to call the `/app/…` endpoints, among them the one that hands out
//! installation tokens.
//!
//! [`AppKey::from_pem`] takes the `.pem` GitHub generates (`-----BEGIN RSA PRIVATE KEY-----`,
//! PKCS#1) or the same key as PKCS#8 (`-----BEGIN PRIVATE KEY-----`, what `openssl pkcs8
//! -topk8 -nocrypt` and most secret stores produce), and refuses anything else with a
//! [`KeyError`] naming what it found: an encrypted key, an EC / Ed25519 / DSA key, an OpenSSH
//! key, a public key or certificate, something that is not PEM. [`AppKey::jwt`] is pure given
//! the time: `iat` is [`JWT_BACKDATE_SECS`] in the past (GitHub's advice against clock
//! drift), `exp` is [`JWT_LIFETIME_SECS`] in the future, so `exp - iat` is exactly the 10
//! minutes GitHub allows. Neither the key nor a JWT is ever shown by `Debug` or put in an
//! error.

use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};

/// How far in the past `iat` is put (GitHub: "to protect against clock drift").
pub const JWT_BACKDATE_SECS: i64 = 60;
/// How far in the future `exp` is put: with the backdated `iat`, the token spans exactly
/// the 600 s GitHub allows.
pub const JWT_LIFETIME_SECS: i64 = 540;

/// Why a private key was refused (or, rarely, could not sign). Never contains key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the GitHub App private key is not PEM: no `-----BEGIN … KEY-----` block was found")]
    NotPem,
    #[error("the GitHub App private key is encrypted ({what}); give the unencrypted `.pem` GitHub generated")]
    Encrypted { what: &'static str },
    #[error("the GitHub App private key is {algorithm}, not RSA; GitHub App keys are RSA (RS256)")]
    NotRsa { algorithm: String },
    #[error("the GitHub App private key is a `{label}` PEM block; expected `RSA PRIVATE KEY` (PKCS#1) or `PRIVATE KEY` (PKCS#8){}", pem_hint(label))]
    UnsupportedPem { label: String },
    #[error("the GitHub App private key's PEM body is not valid base64")]
    BadBase64,
    #[error("the GitHub App private key ({format}) was refused: {reason}")]
    Rejected { format: KeyFormat, reason: String },
    #[error("cannot sign a JWT with the GitHub App private key")]
    Signing,
}

fn pem_hint(label: &str) -> &'static str {
    match label {
        "OPENSSH PRIVATE KEY" => " (an OpenSSH key; GitHub App keys are downloaded as PEM)",
        "PUBLIC KEY" | "RSA PUBLIC KEY" | "CERTIFICATE" => {
            " (a public part; the private key is needed)"
        }
        _ => "",
    }
}

/// How a key was encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// `-----BEGIN RSA PRIVATE KEY-----`: an RSAPrivateKey (RFC 8017), what GitHub hands out.
    Pkcs1,
    /// `-----BEGIN PRIVATE KEY-----`: a PrivateKeyInfo (RFC 5208) holding an RSA key.
    Pkcs8,
}

impl fmt::Display for KeyFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyFormat::Pkcs1 => "PKCS#1",
            KeyFormat::Pkcs8 => "PKCS#8",
        })
    }
}

/// A GitHub App's RSA private key, ready to sign JWTs. Cheap to clone; `Debug` shows only
/// the format and size.
#[derive(Clone)]
pub struct AppKey {
    pair: Arc<RsaKeyPair>,
    format: KeyFormat,
}

impl fmt::Debug for AppKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "AppKey({}, {} bits, <redacted>)",
            self.format,
            self.modulus_bits()
        )
    }
}

impl AppKey {
    /// Reads an unencrypted RSA private key in PEM, PKCS#1 or PKCS#8. Blank lines, CRLF line
    /// ends, text around the block, and a key pasted with literal `\n`s (as environment
    /// variables often carry it) are accepted. ring refuses keys under 2048 bits.
    pub fn from_pem(pem: &str) -> Result<AppKey, KeyError> {
        let unescaped;
        let pem = if !pem.contains('\n') && pem.contains("\\n") {
            unescaped = pem.replace("\\n", "\n");
            unescaped.as_str()
        } else {
            pem
        };
        let block = first_key_block(pem)?;
        let (format, der) = match block.label.as_str() {
            "RSA PRIVATE KEY" => {
                if block.encrypted_header {
                    return Err(KeyError::Encrypted {
                        what: "a `Proc-Type: 4,ENCRYPTED` PEM header",
                    });
                }
                (KeyFormat::Pkcs1, decode_body(&block.body)?)
            }
            "PRIVATE KEY" => {
                let der = decode_body(&block.body)?;
                match pkcs8_algorithm(&der) {
                    Some(oid) if oid == OID_RSA_ENCRYPTION => {}
                    Some(oid) => {
                        return Err(KeyError::NotRsa {
                            algorithm: algorithm_name(oid),
                        })
                    }
                    None => {
                        return Err(KeyError::Rejected {
                            format: KeyFormat::Pkcs8,
                            reason: "not a PKCS#8 PrivateKeyInfo".to_string(),
                        })
                    }
                }
                (KeyFormat::Pkcs8, der)
            }
            "ENCRYPTED PRIVATE KEY" => {
                return Err(KeyError::Encrypted {
                    what: "a PKCS#8 `ENCRYPTED PRIVATE KEY`",
                })
            }
            "EC PRIVATE KEY" => {
                return Err(KeyError::NotRsa {
                    algorithm: "an EC key (`EC PRIVATE KEY`)".to_string(),
                })
            }
            "DSA PRIVATE KEY" => {
                return Err(KeyError::NotRsa {
                    algorithm: "a DSA key (`DSA PRIVATE KEY`)".to_string(),
                })
            }
            other => {
                return Err(KeyError::UnsupportedPem {
                    label: other.to_string(),
                })
            }
        };
        let pair = match format {
            KeyFormat::Pkcs1 => RsaKeyPair::from_der(&der),
            KeyFormat::Pkcs8 => RsaKeyPair::from_pkcs8(&der),
        }
        .map_err(|rejected| KeyError::Rejected {
            format,
            reason: rejected.to_string(),
        })?;
        Ok(AppKey {
            pair: Arc::new(pair),
            format,
        })
    }

    /// How the key was encoded.
    pub fn format(&self) -> KeyFormat {
        self.format
    }

    /// The size of the key's modulus in bits.
    pub fn modulus_bits(&self) -> usize {
        self.pair.public().modulus_len() * 8
    }

    /// A JWT for the app `app_id` at `now_unix` (seconds): header
    /// `{"alg":"RS256","typ":"JWT"}`, claims `{"iat": now-60, "exp": now+540, "iss":
    /// "<app_id>"}`, signed RSASSA-PKCS1-v1_5 with SHA-256. The result is a credential for
    /// ten minutes: put it only in an `Authorization: Bearer` header.
    pub fn jwt(&self, app_id: u64, now_unix: i64) -> Result<String, KeyError> {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = format!(
            r#"{{"iat":{},"exp":{},"iss":"{app_id}"}}"#,
            now_unix.saturating_sub(JWT_BACKDATE_SECS),
            now_unix.saturating_add(JWT_LIFETIME_SECS),
        );
        let mut token = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.as_bytes()));
        let mut signature = vec![0u8; self.pair.public().modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                token.as_bytes(),
                &mut signature,
            )
            .map_err(|_| KeyError::Signing)?;
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(&signature));
        Ok(token)
    }
}

/// One PEM block: its label, whether it had an encryption header, its base64 body.
struct PemBlock {
    label: String,
    encrypted_header: bool,
    body: String,
}

/// The first PEM block that is not `EC PARAMETERS` (which `openssl ecparam -genkey` puts
/// before an EC key).
fn first_key_block(pem: &str) -> Result<PemBlock, KeyError> {
    let mut lines = pem.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"))
        else {
            continue;
        };
        let label = clean_label(label);
        let end = format!("-----END {label}-----");
        let mut block = PemBlock {
            label,
            encrypted_header: false,
            body: String::new(),
        };
        let mut closed = false;
        for line in lines.by_ref() {
            if line == end {
                closed = true;
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                // RFC 1421 headers of a traditional PEM block (`Proc-Type`, `DEK-Info`).
                if name.trim().eq_ignore_ascii_case("Proc-Type") && value.contains("ENCRYPTED") {
                    block.encrypted_header = true;
                }
                continue;
            }
            block.body.push_str(line);
        }
        if !closed {
            return Err(KeyError::NotPem);
        }
        if block.label == "EC PARAMETERS" {
            continue;
        }
        return Ok(block);
    }
    Err(KeyError::NotPem)
}

/// A label as shown in errors: at most 40 of the characters PEM labels are made of.
fn clean_label(label: &str) -> String {
    label
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '#'))
        .take(40)
        .collect()
}

fn decode_body(body: &str) -> Result<Vec<u8>, KeyError> {
    STANDARD.decode(body).map_err(|_| KeyError::BadBase64)
}

/// rsaEncryption, 1.2.840.113549.1.1.1.
const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// The algorithm OID (its content bytes) of a PKCS#8 PrivateKeyInfo:
/// `SEQUENCE { INTEGER version, SEQUENCE { OBJECT IDENTIFIER algorithm, … }, … }`.
fn pkcs8_algorithm(der: &[u8]) -> Option<&[u8]> {
    let (tag, info, _) = der_element(der)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, _version, rest) = der_element(info)?;
    if tag != 0x02 {
        return None;
    }
    let (tag, algorithm, _) = der_element(rest)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, oid, _) = der_element(algorithm)?;
    (tag == 0x06).then_some(oid)
}

/// One DER element: (tag, contents, what follows). Definite lengths of up to 4 bytes.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, rest) = rest.split_at(count);
        let length = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (length, rest)
    };
    if rest.len() < length {
        return None;
    }
    let (contents, rest) = rest.split_at(length);
    Some((tag, contents, rest))
}

/// A readable name for a PKCS#8 algorithm that is not rsaEncryption.
fn algorithm_name(oid: &[u8]) -> String {
    match oid {
        [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01] => "an EC key (id-ecPublicKey)".to_string(),
        [0x2b, 0x65, 0x70] => "an Ed25519 key".to_string(),
        [0x2b, 0x65, 0x71] => "an Ed448 key".to_string(),
        [0x2b, 0x65, 0x6e] => "an X25519 key".to_string(),
        [0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x01] => "a DSA key".to_string(),
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a] => {
            "an RSA-PSS key (id-RSASSA-PSS, restricted to PSS; RS256 needs a plain RSA key)"
                .to_string()
        }
        _ => format!("a key of algorithm {}", dotted_oid(oid)),
    }
}

/// An OID's contents in dotted form (`1.2.840…`); `?` if it does not decode.
fn dotted_oid(oid: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut value: u64 = 0;
    for &byte in oid {
        if value > (u64::MAX >> 7) {
            return "?".to_string();
        }
        value = (value << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (value / 40).min(2);
                arcs.push(first);
                arcs.push(value - first * 40);
            } else {
                arcs.push(value);
            }
            value = 0;
        }
    }
    if arcs.is_empty() || oid.last().is_some_and(|b| b & 0x80 != 0) {
        return "?".to_string();
    }
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids_are_named() {
        assert_eq!(dotted_oid(OID_RSA_ENCRYPTION), "1.2.840.113549.1.1.1");
        assert_eq!(dotted_oid(&[0x2b, 0x65, 0x70]), "1.3.101.112");
        assert_eq!(dotted_oid(&[0x2b, 0x85]), "?");
        assert_eq!(algorithm_name(&[0x2a, 0x03]), "a key of algorithm 1.2.3");
    }

    #[test]
    fn der_lengths() {
        assert_eq!(
            der_element(&[0x30, 0x02, 0x05, 0x00, 0xff]),
            Some((0x30, &[0x05, 0x00][..], &[0xff][..]))
        );
        assert_eq!(
            der_element(&[0x04, 0x81, 0x01, 0x07]),
            Some((0x04, &[0x07][..], &[][..]))
        );
        assert_eq!(der_element(&[0x04, 0x05, 0x00]), None);
        assert_eq!(der_element(&[0x04, 0x80]), None);
        assert_eq!(pkcs8_algorithm(&[0x30, 0x00]), None);
    }
}
