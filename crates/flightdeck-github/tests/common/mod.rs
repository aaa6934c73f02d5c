//! Test keys made with the `openssl` CLI at test time (never checked in).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};

/// Runs `openssl args…` in `dir`; panics with its stderr if it fails.
pub fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed (the tests generate their keys with it)");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// A freshly generated 2048-bit RSA key: its PEM and its public key (PKCS#1 RSAPublicKey
/// DER, what ring verifies with).
pub struct TestKey {
    pub dir: tempfile::TempDir,
    pub pem: String,
    pub public_der: Vec<u8>,
}

impl TestKey {
    /// `-----BEGIN RSA PRIVATE KEY-----` (`openssl genrsa -traditional`).
    pub fn pkcs1() -> TestKey {
        TestKey::generate(&["genrsa", "-traditional", "-out", "key.pem", "2048"])
    }

    /// `-----BEGIN PRIVATE KEY-----` (`openssl genpkey -algorithm RSA`).
    pub fn pkcs8() -> TestKey {
        TestKey::generate(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "key.pem",
        ])
    }

    fn generate(args: &[&str]) -> TestKey {
        let dir = tempfile::tempdir().expect("tempdir");
        openssl(dir.path(), args);
        let pem = std::fs::read_to_string(dir.path().join("key.pem")).expect("key.pem");
        let public_der = openssl(
            dir.path(),
            &[
                "rsa",
                "-in",
                "key.pem",
                "-RSAPublicKey_out",
                "-outform",
                "DER",
            ],
        );
        TestKey {
            dir,
            pem,
            public_der,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Checks `jwt`'s RS256 signature with this key's public half and returns its header
    /// and claims.
    pub fn verify(&self, jwt: &str) -> (serde_json::Value, serde_json::Value) {
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3, "{jwt}");
        let signature = URL_SAFE_NO_PAD
            .decode(parts[2])
            .expect("base64url signature");
        let signed = format!("{}.{}", parts[0], parts[1]);
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &self.public_der)
            .verify(signed.as_bytes(), &signature)
            .expect("the signature verifies with the public key");
        let decode = |part: &str| -> serde_json::Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
        };
        (decode(parts[0]), decode(parts[1]))
    }
}
