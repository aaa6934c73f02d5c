//! Slack's request signing (HTTP mode): `X-Slack-Signature: v0=<hex>` where `<hex>` is
//! HMAC-SHA256, keyed by the app's signing secret, over `v0:{X-Slack-Request-Timestamp}:{raw
//! body}`. [`verify`] checks it in constant time (`ring::hmac::verify`) before anything parses
//! the body, and refuses a timestamp more than [`MAX_SKEW_SECS`] from now in either
//! direction (a replayed request). Errors say what was wrong, never the secret or the
//! expected signature.

use ring::hmac;

/// How far a request's timestamp may be from now, either way, in seconds (5 minutes).
pub const MAX_SKEW_SECS: i64 = 300;

/// The only signature version Slack uses.
const VERSION: &str = "v0";

/// Why a request's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no signing secret is configured, so no request can be verified")]
    NoSecret,
    #[error("the X-Slack-Request-Timestamp header is missing or not a whole number of seconds")]
    MalformedTimestamp,
    #[error("the request is {age_secs} s old; more than {MAX_SKEW_SECS} s is refused (a replay or a wrong clock)")]
    Stale { age_secs: i64 },
    #[error("the request is timestamped {ahead_secs} s in the future; more than {MAX_SKEW_SECS} s is refused")]
    Future { ahead_secs: i64 },
    #[error("the X-Slack-Signature header does not start with `v0=`")]
    UnknownVersion,
    #[error("the X-Slack-Signature header is not 64 hexadecimal digits after `v0=`")]
    MalformedSignature,
    #[error("the request's signature does not match its body and timestamp")]
    Mismatch,
}

/// Verifies a Slack request: `timestamp_header` and `signature_header` are the values of
/// `X-Slack-Request-Timestamp` and `X-Slack-Signature`, `raw_body` the bytes exactly as
/// received, `now_unix` the current time in seconds.
pub fn verify(
    signing_secret: &[u8],
    timestamp_header: &str,
    signature_header: &str,
    raw_body: &[u8],
    now_unix: i64,
) -> Result<(), SignatureError> {
    if signing_secret.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    let timestamp = parse_timestamp(timestamp_header)?;
    let skew = i128::from(now_unix) - i128::from(timestamp);
    if skew > i128::from(MAX_SKEW_SECS) {
        return Err(SignatureError::Stale {
            age_secs: clamp(skew),
        });
    }
    if -skew > i128::from(MAX_SKEW_SECS) {
        return Err(SignatureError::Future {
            ahead_secs: clamp(-skew),
        });
    }
    let digits = signature_header
        .strip_prefix("v0=")
        .ok_or(SignatureError::UnknownVersion)?;
    let tag = decode_hex(digits).ok_or(SignatureError::MalformedSignature)?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, signing_secret);
    let message = base_string(timestamp_header, raw_body);
    hmac::verify(&key, &message, &tag).map_err(|_| SignatureError::Mismatch)
}

/// The `X-Slack-Signature` value Slack would send for this secret, timestamp and body (for
/// tests and fakes; the server only verifies).
pub fn sign(signing_secret: &[u8], timestamp: &str, raw_body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, signing_secret);
    let tag = hmac::sign(&key, &base_string(timestamp, raw_body));
    let mut out = String::with_capacity(3 + 64);
    out.push_str(VERSION);
    out.push('=');
    for byte in tag.as_ref() {
        out.push(hex_digit(byte >> 4));
        out.push(hex_digit(byte & 0x0f));
    }
    out
}

fn base_string(timestamp: &str, raw_body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(VERSION.len() + timestamp.len() + 2 + raw_body.len());
    message.extend_from_slice(VERSION.as_bytes());
    message.push(b':');
    message.extend_from_slice(timestamp.as_bytes());
    message.push(b':');
    message.extend_from_slice(raw_body);
    message
}

/// Only ASCII digits (no sign, no spaces), at most 15 of them.
fn parse_timestamp(header: &str) -> Result<i64, SignatureError> {
    if header.is_empty() || header.len() > 15 || !header.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::MalformedTimestamp);
    }
    header
        .parse::<i64>()
        .map_err(|_| SignatureError::MalformedTimestamp)
}

fn clamp(value: i128) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// 64 hex digits (either case) → 32 bytes.
fn decode_hex(digits: &str) -> Option<Vec<u8>> {
    let bytes = digits.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some(hex_value(pair[0])? << 4 | hex_value(pair[1])?))
        .collect()
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

fn hex_digit(nibble: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(nibble & 0x0f)])
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"8f742231b10e8888abcd99yyyzzz85a5";
    const TIMESTAMP: &str = "1531420618";
    const BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SIGNATURE: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
    const NOW: i64 = 1531420618;

    #[test]
    fn slack_sdk_vector_verifies() {
        assert_eq!(
            verify(SECRET, TIMESTAMP, SIGNATURE, BODY.as_bytes(), NOW),
            Ok(())
        );
        assert_eq!(sign(SECRET, TIMESTAMP, BODY.as_bytes()), SIGNATURE);
        // Upper-case hex is the same signature.
        let upper = format!("v0={}", SIGNATURE[3..].to_ascii_uppercase());
        assert_eq!(
            verify(SECRET, TIMESTAMP, &upper, BODY.as_bytes(), NOW),
            Ok(())
        );
        // Exactly five minutes either way is still accepted.
        assert_eq!(
            verify(SECRET, TIMESTAMP, SIGNATURE, BODY.as_bytes(), NOW + 300),
            Ok(())
        );
        assert_eq!(
            verify(SECRET, TIMESTAMP, SIGNATURE, BODY.as_bytes(), NOW - 300),
            Ok(())
        );
    }

    #[test]
    fn bad_requests_are_refused_with_the_reason() {
        let mut flipped = BODY.as_bytes().to_vec();
        flipped[10] ^= 0x01;
        let non_hex = format!("v0={}", "g".repeat(64));
        let short = &SIGNATURE[..SIGNATURE.len() - 2];
        let v1 = SIGNATURE.replacen("v0=", "v1=", 1);
        /// name, secret, timestamp, signature, body, now, the refusal
        type Case<'a> = (
            &'a str,
            &'a [u8],
            &'a str,
            &'a str,
            &'a [u8],
            i64,
            SignatureError,
        );
        let cases: Vec<Case> = vec![
            (
                "stale",
                SECRET,
                TIMESTAMP,
                SIGNATURE,
                BODY.as_bytes(),
                NOW + 301,
                SignatureError::Stale { age_secs: 301 },
            ),
            (
                "an hour old",
                SECRET,
                TIMESTAMP,
                SIGNATURE,
                BODY.as_bytes(),
                NOW + 3600,
                SignatureError::Stale { age_secs: 3600 },
            ),
            (
                "future",
                SECRET,
                TIMESTAMP,
                SIGNATURE,
                BODY.as_bytes(),
                NOW - 301,
                SignatureError::Future { ahead_secs: 301 },
            ),
            (
                "wrong secret",
                b"8f742231b10e8888abcd99yyyzzz85a6",
                TIMESTAMP,
                SIGNATURE,
                BODY.as_bytes(),
                NOW,
                SignatureError::Mismatch,
            ),
            (
                "flipped body byte",
                SECRET,
                TIMESTAMP,
                SIGNATURE,
                &flipped,
                NOW,
                SignatureError::Mismatch,
            ),
            (
                "other timestamp, same signature",
                SECRET,
                "1531420619",
                SIGNATURE,
                BODY.as_bytes(),
                NOW,
                SignatureError::Mismatch,
            ),
            (
                "missing v0=",
                SECRET,
                TIMESTAMP,
                &SIGNATURE[3..],
                BODY.as_bytes(),
                NOW,
                SignatureError::UnknownVersion,
            ),
            (
                "v1=",
                SECRET,
                TIMESTAMP,
                &v1,
                BODY.as_bytes(),
                NOW,
                SignatureError::UnknownVersion,
            ),
            (
                "non-hex",
                SECRET,
                TIMESTAMP,
                &non_hex,
                BODY.as_bytes(),
                NOW,
                SignatureError::MalformedSignature,
            ),
            (
                "too short",
                SECRET,
                TIMESTAMP,
                short,
                BODY.as_bytes(),
                NOW,
                SignatureError::MalformedSignature,
            ),
            (
                "empty signature",
                SECRET,
                TIMESTAMP,
                "",
                BODY.as_bytes(),
                NOW,
                SignatureError::UnknownVersion,
            ),
            (
                "empty timestamp",
                SECRET,
                "",
                SIGNATURE,
                BODY.as_bytes(),
                NOW,
                SignatureError::MalformedTimestamp,
            ),
            (
                "signed timestamp",
                SECRET,
                "+1531420618",
                SIGNATURE,
                BODY.as_bytes(),
                NOW,
                SignatureError::MalformedTimestamp,
            ),
            (
                "negative timestamp",
                SECRET,
                "-1",
                SIGNATURE,
                BODY.as_bytes(),
                NOW,
                SignatureError::MalformedTimestamp,
            ),
            (
                "timestamp with space",
                SECRET,
                " 1531420618",
                SIGNATURE,
                BODY.as_bytes(),
                NOW,
                SignatureError::MalformedTimestamp,
            ),
            (
                "huge timestamp",
                SECRET,
                "99999999999999999999",
                SIGNATURE,
                BODY.as_bytes(),
                NOW,
                SignatureError::MalformedTimestamp,
            ),
            (
                "no secret",
                b"",
                TIMESTAMP,
                SIGNATURE,
                BODY.as_bytes(),
                NOW,
                SignatureError::NoSecret,
            ),
        ];
        for (name, secret, timestamp, signature, body, now, expected) in cases {
            assert_eq!(
                verify(secret, timestamp, signature, body, now),
                Err(expected),
                "{name}"
            );
        }
    }

    #[test]
    fn errors_do_not_echo_the_secret_or_the_expected_signature() {
        let err = verify(
            b"s3cr3t-value",
            TIMESTAMP,
            &format!("v0={}", "0".repeat(64)),
            BODY.as_bytes(),
            NOW,
        )
        .err()
        .map(|e| format!("{e} {e:?}"))
        .unwrap_or_default();
        assert!(err.contains("does not match"), "{err}");
        assert!(!err.contains("s3cr3t"), "{err}");
        let expected = sign(b"s3cr3t-value", TIMESTAMP, BODY.as_bytes());
        assert!(!err.contains(&expected[3..]), "{err}");
    }
}
