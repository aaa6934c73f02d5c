//! The app's JWT, signed with keys `openssl` generates at test time and checked with the
//! public key `openssl` extracts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use common::{openssl, TestKey};
use flightdeck_github::jwt::{JWT_BACKDATE_SECS, JWT_LIFETIME_SECS};
use flightdeck_github::{AppKey, KeyError, KeyFormat};
use serde_json::json;

const NOW: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

#[test]
fn pkcs1_and_pkcs8_keys_sign_verifiable_jwts() {
    for (key, format) in [
        (TestKey::pkcs1(), KeyFormat::Pkcs1),
        (TestKey::pkcs8(), KeyFormat::Pkcs8),
    ] {
        assert!(
            key.pem.starts_with(match format {
                KeyFormat::Pkcs1 => "-----BEGIN RSA PRIVATE KEY-----",
                KeyFormat::Pkcs8 => "-----BEGIN PRIVATE KEY-----",
            }),
            "{}",
            &key.pem[..40]
        );
        let app_key = AppKey::from_pem(&key.pem).expect("the key reads");
        assert_eq!(app_key.format(), format);
        assert_eq!(app_key.modulus_bits(), 2048);
        let jwt = app_key.jwt(123456, NOW).expect("signs");
        let (header, claims) = key.verify(&jwt);
        assert_eq!(header, json!({"alg": "RS256", "typ": "JWT"}));
        assert_eq!(
            claims,
            json!({"iat": NOW - 60, "exp": NOW + 540, "iss": "123456"})
        );
        // GitHub: `exp` at most 10 minutes after `iat`.
        assert_eq!(JWT_BACKDATE_SECS + JWT_LIFETIME_SECS, 600);
        // Pure given the time: the same JWT again (PKCS#1 v1.5 signatures are deterministic).
        assert_eq!(app_key.jwt(123456, NOW).expect("signs"), jwt);
        assert_ne!(app_key.jwt(123456, NOW + 1).expect("signs"), jwt);
        // `Debug` shows no key material.
        let shown = format!("{app_key:?}");
        assert!(shown.contains("redacted"), "{shown}");
        let body_line = key.pem.lines().nth(1).expect("a body line");
        assert!(!shown.contains(&body_line[..20]), "{shown}");
    }
}

#[test]
fn the_same_key_reads_in_both_formats_and_odd_layouts() {
    let key = TestKey::pkcs1();
    let pkcs8 = openssl(
        key.dir.path(),
        &["pkcs8", "-topk8", "-nocrypt", "-in", "key.pem"],
    );
    let pkcs8 = String::from_utf8(pkcs8).expect("PEM");
    let from_pkcs8 = AppKey::from_pem(&pkcs8).expect("PKCS#8 reads");
    assert_eq!(from_pkcs8.format(), KeyFormat::Pkcs8);
    // Same key: a JWT signed from either encoding verifies with the one public key.
    key.verify(&from_pkcs8.jwt(1, NOW).expect("signs"));
    // CRLF line ends, indentation, text around the block, a key in an environment variable
    // with literal `\n`s.
    let crlf = key.pem.replace('\n', "\r\n");
    let indented: String = key.pem.lines().map(|l| format!("  {l}\n")).collect();
    let surrounded = format!("Downloaded from GitHub:\n\n{}\n-- end\n", key.pem);
    let escaped = key.pem.trim_end().replace('\n', "\\n");
    for (name, pem) in [
        ("crlf", crlf),
        ("indented", indented),
        ("surrounded", surrounded),
        ("escaped", escaped),
    ] {
        let app_key = AppKey::from_pem(&pem).unwrap_or_else(|e| panic!("{name}: {e}"));
        key.verify(&app_key.jwt(1, NOW).expect("signs"));
    }
}

#[test]
fn other_keys_are_refused_by_name() {
    let key = TestKey::pkcs1();
    let dir = key.dir.path();
    let read = |name: &str| std::fs::read_to_string(key.path(name)).expect("generated file");
    openssl(
        dir,
        &[
            "pkcs8",
            "-topk8",
            "-in",
            "key.pem",
            "-v2",
            "aes-256-cbc",
            "-passout",
            "pass:pw",
            "-out",
            "enc8.pem",
        ],
    );
    openssl(
        dir,
        &[
            "rsa",
            "-in",
            "key.pem",
            "-aes256",
            "-traditional",
            "-passout",
            "pass:pw",
            "-out",
            "enc1.pem",
        ],
    );
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "ec8.pem",
        ],
    );
    openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-out",
            "sec1.pem",
        ],
    );
    openssl(dir, &["genpkey", "-algorithm", "ED25519", "-out", "ed.pem"]);
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "RSA-PSS",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "pss.pem",
        ],
    );
    openssl(
        dir,
        &["genrsa", "-traditional", "-out", "small.pem", "1024"],
    );
    openssl(
        dir,
        &["rsa", "-in", "key.pem", "-pubout", "-out", "pub.pem"],
    );

    let refused = |pem: &str| AppKey::from_pem(pem).expect_err("refused");
    assert_eq!(
        refused(&read("enc8.pem")),
        KeyError::Encrypted {
            what: "a PKCS#8 `ENCRYPTED PRIVATE KEY`"
        }
    );
    assert_eq!(
        refused(&read("enc1.pem")),
        KeyError::Encrypted {
            what: "a `Proc-Type: 4,ENCRYPTED` PEM header"
        }
    );
    assert_eq!(
        refused(&read("ec8.pem")),
        KeyError::NotRsa {
            algorithm: "an EC key (id-ecPublicKey)".into()
        }
    );
    // `openssl ecparam -genkey` writes `EC PARAMETERS` first, then `EC PRIVATE KEY`.
    assert_eq!(
        refused(&read("sec1.pem")),
        KeyError::NotRsa {
            algorithm: "an EC key (`EC PRIVATE KEY`)".into()
        }
    );
    assert_eq!(
        refused(&read("ed.pem")),
        KeyError::NotRsa {
            algorithm: "an Ed25519 key".into()
        }
    );
    assert!(matches!(
        refused(&read("pss.pem")),
        KeyError::NotRsa { algorithm } if algorithm.contains("RSA-PSS")
    ));
    assert!(matches!(
        refused(&read("small.pem")),
        KeyError::Rejected {
            format: KeyFormat::Pkcs1,
            ..
        }
    ));
    let public = refused(&read("pub.pem"));
    assert_eq!(
        public,
        KeyError::UnsupportedPem {
            label: "PUBLIC KEY".into()
        }
    );
    assert!(public.to_string().contains("public part"), "{public}");
    assert_eq!(
        refused("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"),
        KeyError::UnsupportedPem {
            label: "OPENSSH PRIVATE KEY".into()
        }
    );
    assert_eq!(refused("not a key"), KeyError::NotPem);
    assert_eq!(refused(""), KeyError::NotPem);
    // A block that never ends.
    let truncated: String = key.pem.lines().take(5).collect::<Vec<_>>().join("\n");
    assert_eq!(refused(&truncated), KeyError::NotPem);
    assert_eq!(
        refused("-----BEGIN RSA PRIVATE KEY-----\n!!!!\n-----END RSA PRIVATE KEY-----\n"),
        KeyError::BadBase64
    );
    assert!(matches!(
        refused("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"),
        KeyError::Rejected {
            format: KeyFormat::Pkcs1,
            ..
        }
    ));
    assert!(matches!(
        refused("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
        KeyError::Rejected {
            format: KeyFormat::Pkcs8,
            ..
        }
    ));
    // A PKCS#8 key under the PKCS#1 label is refused, not misread.
    let mislabelled = read("ed.pem").replace("PRIVATE KEY", "RSA PRIVATE KEY");
    assert!(matches!(
        refused(&mislabelled),
        KeyError::Rejected {
            format: KeyFormat::Pkcs1,
            ..
        }
    ));
    // No error shows key material.
    for pem in [read("enc8.pem"), read("small.pem"), read("ec8.pem")] {
        let message = refused(&pem).to_string();
        let body_line = pem.lines().nth(1).expect("a body line");
        assert!(!message.contains(&body_line[..16]), "{message}");
    }
}
