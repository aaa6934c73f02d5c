//! Signing in to the web UI with an OpenID Connect provider (`[server.oidc]`): the
//! authorization code flow with PKCE (S256), a `state` bound to the browser by a cookie, a
//! `nonce` bound to the ID token, and the ID token's signature (RS256 or ES256, keys from
//! the provider's JWKS) checked before any of its claims is believed. The subject is
//! mapped to a person by `[people.NAME] oidc = "<sub>"` (or, when the config allows it, by
//! an email the provider says is verified); anyone else is refused.
//!
//! Flows in progress live in memory for ten minutes, and each can be finished once.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use flightdeck_app::config::OidcConfig;
use flightdeck_app::tokens::Role;
use flightdeck_app::{AppError, ErrorKind};
use flightdeck_policy::{IdentityChannel, People};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// How long a browser has to come back from the provider.
const FLOW_TTL_MS: i64 = 10 * 60_000;
/// The most flows in progress at once (the oldest go first).
const MAX_FLOWS: usize = 10_000;
/// How long the provider's discovery document and keys are kept.
const PROVIDER_TTL_MS: i64 = 3_600_000;
/// Clock difference tolerated between the provider and this server.
const SKEW_S: i64 = 60;
/// The path the provider sends the browser back to.
pub const CALLBACK_PATH: &str = "/auth/oidc/callback";
/// The cookie that binds a flow to the browser that started it.
pub const STATE_COOKIE: &str = "fd_oidc_state";

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64url(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .ok()
}

fn random() -> Result<String, AppError> {
    crate::sessions::random_secret()
        .map_err(|e| AppError::failed(format!("cannot get random bytes: {e}")))
}

fn refused(message: impl Into<String>) -> AppError {
    AppError::new(
        ErrorKind::Unauthenticated,
        message,
        Some("start again from the sign-in page".to_string()),
    )
}

/// The provider's endpoints and keys.
#[derive(Debug, Clone)]
struct Provider {
    authorization_endpoint: String,
    token_endpoint: String,
    keys: Vec<Value>,
    fetched_at_ms: i64,
}

/// A flow started and not finished yet.
struct Flow {
    verifier: String,
    nonce: String,
    next: String,
    started_ms: i64,
}

/// Who finished a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    pub handle: String,
    /// Where the browser was going.
    pub next: String,
}

pub struct Oidc {
    issuer: String,
    client_id: String,
    client_secret: Option<String>,
    redirect_url: String,
    scopes: Vec<String>,
    default_role: Role,
    roles: BTreeMap<String, Role>,
    match_verified_email: bool,
    http: reqwest::Client,
    provider: tokio::sync::Mutex<Option<Provider>>,
    flows: Mutex<HashMap<String, Flow>>,
}

/// Whether `url` may name the provider: https, or http on this machine (tests, a local
/// provider).
fn acceptable_url(url: &str) -> bool {
    match reqwest::Url::parse(url) {
        Ok(u) if u.scheme() == "https" => true,
        Ok(u) if u.scheme() == "http" => match u.host() {
            Some(url::Host::Domain(d)) => d == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

impl Oidc {
    /// The sign-in `[server.oidc]` describes, every value checked (errors name the key).
    pub fn from_config(
        config: &OidcConfig,
        public_url: Option<&str>,
        local: SocketAddr,
        people: &People,
    ) -> Result<Oidc, AppError> {
        let bad = |what: String, hint: &str| {
            AppError::bad_input(format!("[server.oidc] {what}"), Some(hint.to_string()))
        };
        let issuer = config.issuer.trim().trim_end_matches('/').to_string();
        if !acceptable_url(&issuer) {
            return Err(bad(
                format!("issuer = \"{}\": not an https URL", config.issuer),
                "the provider's issuer, e.g. https://login.acme.com (http only on this machine)",
            ));
        }
        if config.client_id.trim().is_empty() {
            return Err(bad(
                "client_id is empty".to_string(),
                "the client id the provider gave flightdeck",
            ));
        }
        let client_secret =
            match &config.client_secret_env {
                None => None,
                Some(name) => match std::env::var(name) {
                    Ok(value) if !value.is_empty() => Some(value),
                    _ => return Err(bad(
                        format!(
                            "client_secret_env = \"{name}\": that environment variable is not set"
                        ),
                        "set it in serve's environment (the secret is never written in the config)",
                    )),
                },
            };
        let redirect_url = match (&config.redirect_url, public_url) {
            (Some(url), _) => url.clone(),
            (None, Some(public)) => format!("{}{CALLBACK_PATH}", public.trim_end_matches('/')),
            (None, None) if local.ip().is_unspecified() => {
                return Err(bad(
                    format!("no redirect_url, and the server listens on {local}, which no browser can open"),
                    "set [server] public_url (how browsers reach this server) or [server.oidc] redirect_url",
                ))
            }
            (None, None) => format!("http://{local}{CALLBACK_PATH}"),
        };
        if reqwest::Url::parse(&redirect_url).is_err() {
            return Err(bad(
                format!("redirect_url = \"{redirect_url}\": not a URL"),
                "this server's address as browsers reach it, ending in /auth/oidc/callback",
            ));
        }
        let parse_role = |key: String, text: &str| {
            Role::parse(text).ok_or_else(|| {
                bad(
                    format!("{key} = \"{text}\": not a role"),
                    "roles: viewer, operator, approver, admin",
                )
            })
        };
        let default_role = match &config.default_role {
            Some(text) => parse_role("default_role".to_string(), text)?,
            None => Role::Viewer,
        };
        let mut roles = BTreeMap::new();
        for (who, role) in &config.roles {
            let resolved = people.resolve(who, IdentityChannel::Web);
            if resolved.is_unknown() {
                return Err(bad(
                    format!("roles.\"{who}\": no such person in [people]"),
                    "name people by their handle, as [people] lists them",
                ));
            }
            roles.insert(
                resolved.handle,
                parse_role(format!("roles.\"{who}\""), role)?,
            );
        }
        let mut scopes = vec!["openid".to_string()];
        for scope in &config.scopes {
            if !scopes.contains(scope) {
                scopes.push(scope.clone());
            }
        }
        if config.match_verified_email && !scopes.iter().any(|s| s == "email") {
            scopes.push("email".to_string());
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| AppError::failed(format!("cannot make an HTTP client: {e}")))?;
        Ok(Oidc {
            issuer,
            client_id: config.client_id.clone(),
            client_secret,
            redirect_url,
            scopes,
            default_role,
            roles,
            match_verified_email: config.match_verified_email,
            http,
            provider: tokio::sync::Mutex::new(None),
            flows: Mutex::new(HashMap::new()),
        })
    }

    /// The role of `handle` when signed in this way.
    pub fn role_of(&self, handle: &str) -> Role {
        self.roles.get(handle).copied().unwrap_or(self.default_role)
    }

    async fn get_json(&self, url: &str, what: &str) -> Result<Value, AppError> {
        let failed = |why: String| {
            AppError::new(
                ErrorKind::Failed,
                format!("the sign-in provider's {what} ({url}): {why}"),
                Some("check [server.oidc] issuer, and that this server can reach it".to_string()),
            )
        };
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| failed(e.to_string()))?;
        if !response.status().is_success() {
            return Err(failed(format!("answered {}", response.status())));
        }
        let bytes = response.bytes().await.map_err(|e| failed(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| failed(format!("not JSON: {e}")))
    }

    /// The provider's endpoints and keys: fetched, or as fetched within the hour
    /// (`refresh`: fetched again, for a key the cached set does not have).
    async fn provider(&self, now_ms: i64, refresh: bool) -> Result<Provider, AppError> {
        let mut cached = self.provider.lock().await;
        if let Some(p) = cached.as_ref() {
            if !refresh && now_ms - p.fetched_at_ms < PROVIDER_TTL_MS {
                return Ok(p.clone());
            }
        }
        let discovery_url = format!("{}/.well-known/openid-configuration", self.issuer);
        let discovery = self.get_json(&discovery_url, "discovery document").await?;
        // An https issuer's endpoints are https too (the client secret is sent to one).
        let issuer_https = self.issuer.starts_with("https://");
        let field = |name: &str| {
            discovery
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
                .filter(|u| acceptable_url(u) && (!issuer_https || u.starts_with("https://")))
                .ok_or_else(|| {
                    AppError::failed(format!(
                        "the sign-in provider's discovery document ({discovery_url}) has no usable `{name}`"
                    ))
                })
        };
        // The document must be the issuer's own (OpenID Connect Discovery, 4.3).
        let said = discovery
            .get("issuer")
            .and_then(Value::as_str)
            .unwrap_or("");
        if said.trim_end_matches('/') != self.issuer {
            return Err(AppError::failed(format!(
                "the discovery document at {discovery_url} names issuer `{said}`, not `{}`",
                self.issuer
            )));
        }
        let jwks_uri = field("jwks_uri")?;
        let jwks = self.get_json(&jwks_uri, "keys").await?;
        let provider = Provider {
            authorization_endpoint: field("authorization_endpoint")?,
            token_endpoint: field("token_endpoint")?,
            keys: jwks
                .get("keys")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            fetched_at_ms: now_ms,
        };
        *cached = Some(provider.clone());
        Ok(provider)
    }

    fn flows(&self) -> std::sync::MutexGuard<'_, HashMap<String, Flow>> {
        self.flows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts a flow: the URL to send the browser to, and the state to bind to it (cookie).
    pub async fn start(&self, next: &str, now_ms: i64) -> Result<(String, String), AppError> {
        let provider = self.provider(now_ms, false).await?;
        let state = random()?;
        let nonce = random()?;
        let verifier = random()?;
        let challenge = b64url(&Sha256::digest(verifier.as_bytes()));
        let url = reqwest::Url::parse_with_params(
            &provider.authorization_endpoint,
            &[
                ("response_type", "code"),
                ("client_id", self.client_id.as_str()),
                ("redirect_uri", self.redirect_url.as_str()),
                ("scope", self.scopes.join(" ").as_str()),
                ("state", state.as_str()),
                ("nonce", nonce.as_str()),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
            ],
        )
        .map_err(|e| AppError::failed(format!("the provider's authorization endpoint: {e}")))?;
        let mut flows = self.flows();
        flows.retain(|_, f| now_ms - f.started_ms < FLOW_TTL_MS);
        while flows.len() >= MAX_FLOWS {
            let oldest = flows
                .iter()
                .min_by_key(|(_, f)| f.started_ms)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(key) => flows.remove(&key),
                None => break,
            };
        }
        flows.insert(
            state.clone(),
            Flow {
                verifier,
                nonce,
                next: next.to_string(),
                started_ms: now_ms,
            },
        );
        Ok((url.to_string(), state))
    }

    /// Finishes a flow: the code exchanged for an ID token (with the PKCE verifier), the
    /// token checked, its subject mapped to a person.
    pub async fn finish(
        &self,
        state: &str,
        cookie_state: Option<&str>,
        code: &str,
        people: &People,
        now_ms: i64,
    ) -> Result<SignedIn, AppError> {
        // The browser that comes back must be the one that left.
        if !cookie_state.is_some_and(|c| crate::sessions::same_secret(c, state)) {
            return Err(refused(
                "this sign-in was not started by this browser (its state does not match)",
            ));
        }
        let flow = self
            .flows()
            .remove(state)
            .filter(|f| now_ms - f.started_ms < FLOW_TTL_MS)
            .ok_or_else(|| refused("this sign-in is unknown, expired or already used"))?;
        let provider = self.provider(now_ms, false).await?;
        let mut request = self.http.post(&provider.token_endpoint).form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect_url.as_str()),
            ("code_verifier", flow.verifier.as_str()),
            ("client_id", self.client_id.as_str()),
        ]);
        if let Some(secret) = &self.client_secret {
            // client_secret_basic: both parts form-encoded first (RFC 6749, 2.3.1).
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            request = request.basic_auth(enc(&self.client_id), Some(enc(secret)));
        }
        let response = request
            .send()
            .await
            .map_err(|e| AppError::failed(format!("the sign-in provider's token endpoint: {e}")))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| AppError::failed(format!("the sign-in provider's token endpoint: {e}")))?;
        if !status.is_success() {
            return Err(refused(format!(
                "the provider refused the sign-in code ({status})"
            )));
        }
        let answer: Value = serde_json::from_slice(&bytes)
            .map_err(|e| refused(format!("the provider's token answer is not JSON: {e}")))?;
        let id_token = answer
            .get("id_token")
            .and_then(Value::as_str)
            .ok_or_else(|| refused("the provider's token answer has no id_token"))?;
        let header = jwt_header(id_token).map_err(refused)?;
        let kid = header.get("kid").and_then(Value::as_str);
        let mut keys = provider.keys.clone();
        if !keys
            .iter()
            .any(|k| kid.is_none_or(|kid| k.get("kid").and_then(Value::as_str) == Some(kid)))
        {
            // A key the cached set does not have: the provider may have rotated.
            keys = self.provider(now_ms, true).await?.keys;
        }
        let claims = verify_id_token(
            id_token,
            &keys,
            &Expected {
                issuer: &self.issuer,
                client_id: &self.client_id,
                nonce: &flow.nonce,
                now_s: now_ms / 1000,
            },
        )
        .map_err(|why| refused(format!("the ID token was refused: {why}")))?;
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or_else(|| refused("the ID token names no subject"))?;
        let person = people
            .by_oidc_subject(subject)
            .map(|p| p.handle.clone())
            .or_else(|| {
                let verified = claims.get("email_verified").and_then(Value::as_bool) == Some(true);
                let email = claims.get("email").and_then(Value::as_str)?;
                // An address only: never a handle or a `github:` name a provider let through.
                (self.match_verified_email && verified)
                    .then(|| people.by_email(email))
                    .flatten()
                    .map(|p| p.handle.clone())
            });
        let handle = person.ok_or_else(|| {
            AppError::new(
                ErrorKind::Forbidden,
                format!("the provider's subject `{subject}` is nobody in [people]"),
                Some(format!(
                    "an admin adds `oidc = \"{subject}\"` to that person in the config"
                )),
            )
        })?;
        Ok(SignedIn {
            handle,
            next: flow.next,
        })
    }
}

/// What an ID token must say.
pub struct Expected<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub nonce: &'a str,
    pub now_s: i64,
}

fn jwt_header(token: &str) -> Result<Value, String> {
    let header = token.split('.').next().unwrap_or("");
    unb64url(header)
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| "its header is not base64url JSON".to_string())
}

/// Checks an ID token's signature with `keys` (a JWKS's `keys`) and then its claims, and
/// returns the claims. Only RS256 and ES256 are accepted (never `none`, never HMAC).
pub fn verify_id_token(
    token: &str,
    keys: &[Value],
    expected: &Expected<'_>,
) -> Result<Value, String> {
    let mut parts = token.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a signed JWT (three parts)".to_string());
    };
    let header = jwt_header(token)?;
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let kid = header.get("kid").and_then(Value::as_str);
    let signature = unb64url(signature_b64).ok_or("its signature is not base64url")?;
    let signed = format!("{header_b64}.{claims_b64}");
    let candidates = keys.iter().filter(|k| {
        kid.is_none_or(|kid| k.get("kid").and_then(Value::as_str) == Some(kid))
            && k.get("use")
                .and_then(Value::as_str)
                .is_none_or(|u| u == "sig")
    });
    let mut verified = false;
    for key in candidates {
        let field = |name: &str| key.get(name).and_then(Value::as_str).and_then(unb64url);
        let ok = match (alg, key.get("kty").and_then(Value::as_str)) {
            ("RS256", Some("RSA")) => match (field("n"), field("e")) {
                (Some(n), Some(e)) => ring::signature::RsaPublicKeyComponents { n, e }
                    .verify(
                        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                        signed.as_bytes(),
                        &signature,
                    )
                    .is_ok(),
                _ => false,
            },
            ("ES256", Some("EC")) => match (field("x"), field("y")) {
                (Some(x), Some(y)) if key.get("crv").and_then(Value::as_str) == Some("P-256") => {
                    let mut point = vec![4u8];
                    point.extend_from_slice(&x);
                    point.extend_from_slice(&y);
                    ring::signature::UnparsedPublicKey::new(
                        &ring::signature::ECDSA_P256_SHA256_FIXED,
                        point,
                    )
                    .verify(signed.as_bytes(), &signature)
                    .is_ok()
                }
                _ => false,
            },
            _ => false,
        };
        if ok {
            verified = true;
            break;
        }
    }
    if !matches!(alg, "RS256" | "ES256") {
        return Err(format!("its algorithm `{alg}` is not RS256 or ES256"));
    }
    if !verified {
        return Err("its signature does not verify with the provider's keys".to_string());
    }
    let claims: Value = unb64url(claims_b64)
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or("its claims are not base64url JSON")?;
    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
    if iss.trim_end_matches('/') != expected.issuer {
        return Err(format!("issued by `{iss}`, not `{}`", expected.issuer));
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !audiences.contains(&expected.client_id) {
        return Err(format!("not for this client (aud {audiences:?})"));
    }
    if audiences.len() > 1 && claims.get("azp").and_then(Value::as_str) != Some(expected.client_id)
    {
        return Err("several audiences, and azp is not this client".to_string());
    }
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or("it has no exp")?;
    if exp + SKEW_S <= expected.now_s {
        return Err("it has expired".to_string());
    }
    if claims
        .get("iat")
        .and_then(Value::as_i64)
        .is_some_and(|iat| iat > expected.now_s + SKEW_S)
    {
        return Err("it was issued in the future".to_string());
    }
    let nonce = claims.get("nonce").and_then(Value::as_str).unwrap_or("");
    if !crate::sessions::same_secret(nonce, expected.nonce) {
        return Err("its nonce is not this sign-in's".to_string());
    }
    Ok(claims)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use serde_json::json;

    fn key() -> (EcdsaKeyPair, Value) {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let public = pair.public_key().as_ref();
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig",
            "x": b64url(&public[1..33]), "y": b64url(&public[33..65]),
        });
        (pair, jwk)
    }

    fn sign(pair: &EcdsaKeyPair, header: &Value, claims: &Value) -> String {
        let signed = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let rng = ring::rand::SystemRandom::new();
        let signature = pair.sign(&rng, signed.as_bytes()).unwrap();
        format!("{signed}.{}", b64url(signature.as_ref()))
    }

    #[test]
    fn id_tokens_are_believed_only_when_signed_and_meant_for_this_sign_in() {
        let (pair, jwk) = key();
        let (other, _) = key();
        let keys = vec![jwk];
        let expected = Expected {
            issuer: "https://idp.example",
            client_id: "flightdeck",
            nonce: "n-1",
            now_s: 1_000_000,
        };
        let header = json!({"alg": "ES256", "kid": "k1"});
        let good = json!({
            "iss": "https://idp.example", "aud": "flightdeck", "sub": "u-1",
            "exp": 1_000_300, "iat": 1_000_000, "nonce": "n-1",
        });
        let claims = verify_id_token(&sign(&pair, &header, &good), &keys, &expected).unwrap();
        assert_eq!(claims["sub"], "u-1");

        let with = |key: &str, value: Value| {
            let mut claims = good.clone();
            claims[key] = value;
            sign(&pair, &header, &claims)
        };
        let cases = [
            (sign(&other, &header, &good), "signature"),
            (with("iss", json!("https://evil.example")), "issued by"),
            (with("aud", json!("someone-else")), "not for this client"),
            (with("aud", json!(["flightdeck", "x"])), "azp"),
            (with("exp", json!(999_000)), "expired"),
            (with("iat", json!(1_100_000)), "future"),
            (with("nonce", json!("n-2")), "nonce"),
            (
                sign(&pair, &json!({"alg": "none", "kid": "k1"}), &good),
                "algorithm",
            ),
            (
                sign(&pair, &json!({"alg": "ES256", "kid": "k2"}), &good),
                "signature",
            ),
            ("a.b".to_string(), "three parts"),
        ];
        for (token, why) in cases {
            let refused = verify_id_token(&token, &keys, &expected).unwrap_err();
            assert!(refused.contains(why), "{why}: {refused}");
        }
        // Claims changed after signing.
        let token = sign(&pair, &header, &good);
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = b64url(with_sub(&good).to_string().as_bytes());
        parts[1] = &forged;
        assert!(verify_id_token(&parts.join("."), &keys, &expected)
            .unwrap_err()
            .contains("signature"));
    }

    fn with_sub(claims: &Value) -> Value {
        let mut claims = claims.clone();
        claims["sub"] = json!("admin");
        claims
    }

    #[test]
    fn only_https_providers_or_this_machine() {
        assert!(acceptable_url("https://login.acme.com"));
        assert!(acceptable_url("http://127.0.0.1:9000"));
        assert!(acceptable_url("http://localhost:9000/x"));
        assert!(!acceptable_url("http://login.acme.com"));
        assert!(!acceptable_url("ftp://x"));
        assert!(!acceptable_url("not a url"));
    }
}
