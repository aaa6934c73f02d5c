//! API tokens: made once and shown once (`fd_` and 43 characters of 32 random bytes), kept
//! as their SHA-256, acting as one person with one role.
//!
//! Roles are ordered: each may do what the ones before it may. `viewer` reads; `operator`
//! also starts, cancels and resumes missions and raises budgets; `approver` also decides
//! approvals (still only where the policy makes them eligible); `admin` also manages tokens.

use base64::Engine as _;
use flightdeck_policy::{IdentityChannel, People};
use flightdeck_store::{EventStore, TokenRow};
use sha2::{Digest as _, Sha256};

use crate::error::{AppError, ErrorKind};

/// What every token starts with: a scanner (and a person) can tell one when they see it.
pub const TOKEN_PREFIX: &str = "fd_";

/// What a token (or a session) may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Approver,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Operator, Role::Approver, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text.trim())
    }

    /// Whether this role may do what `needed` may.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a request acts as, once its credentials are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The person's handle (what is recorded as the actor).
    pub handle: String,
    pub role: Role,
    /// The token used, if any (`None` for loopback requests of a `local-only` server).
    pub token_id: Option<String>,
    /// Its SHA-256, to check it again later (a long-lived stream).
    pub token_hash: Option<String>,
}

/// A token just made: the secret (shown once, never stored) and what is stored.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub secret: String,
    pub row: TokenRow,
}

/// The hex SHA-256 of a token: what the store keeps and looks up.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Makes a token for the person `owner` names (a handle, an email, `github:LOGIN`...,
/// resolved through `[people]`; an identity no configured person has is refused when people
/// are configured), stores its hash and returns it once.
pub async fn create(
    store: &dyn EventStore,
    people: &People,
    owner: &str,
    role: Role,
    expires_days: Option<u32>,
    created_by: &str,
    now_ms: i64,
) -> Result<NewToken, AppError> {
    let resolved = people.resolve(owner, IdentityChannel::Token);
    if owner.trim().is_empty() || resolved.is_unknown() {
        return Err(AppError::bad_input(
            format!("--for {owner}: no person in [people] has this name"),
            Some(
                "a token acts as one person: name them by handle (@alice) or email; `flightdeck people` lists them"
                    .to_string(),
            ),
        ));
    }
    if expires_days == Some(0) {
        return Err(AppError::bad_input(
            "--expires 0: a token must live at least a day",
            Some("leave --expires out for a token that does not expire".to_string()),
        ));
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| AppError::failed(format!("cannot get random bytes for a token: {e}")))?;
    let secret = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let ulid = ulid::Ulid::new();
    let row = TokenRow {
        id: format!("tok_{}", ulid.to_string().to_lowercase()),
        hash: token_hash(&secret),
        owner: resolved.handle,
        role: role.as_str().to_string(),
        created_at_ms: now_ms,
        created_by: created_by.to_string(),
        expires_at_ms: expires_days.map(|d| now_ms + i64::from(d) * 86_400_000),
        revoked_at_ms: None,
        last_used_ms: None,
    };
    store.create_token(row.clone()).await?;
    Ok(NewToken { secret, row })
}

/// Revokes the token `id`.
pub async fn revoke(store: &dyn EventStore, id: &str, now_ms: i64) -> Result<TokenRow, AppError> {
    let id = id.trim();
    let known = store.tokens().await?.into_iter().find(|t| t.id == id);
    let Some(token) = known else {
        return Err(AppError::not_found(
            format!("no token {id}"),
            Some("`flightdeck token list` shows the tokens and their ids".to_string()),
        ));
    };
    if token.revoked_at_ms.is_some() || !store.revoke_token(id, now_ms).await? {
        return Err(AppError::new(
            ErrorKind::Conflict,
            format!("token {id} is already revoked"),
            None,
        ));
    }
    Ok(TokenRow {
        revoked_at_ms: Some(now_ms),
        ..token
    })
}

/// How often a token's last use is written: at most once a minute per token.
const TOUCH_EVERY_MS: i64 = 60_000;

/// A refused token's error, with the hint every refusal gives.
fn unauthenticated(message: String) -> AppError {
    AppError::new(
        ErrorKind::Unauthenticated,
        message,
        Some(
            "send `Authorization: Bearer fd_…` with a token made by `flightdeck token create`"
                .to_string(),
        ),
    )
}

/// Checks a presented token: one that is unknown, revoked or expired is refused (401), with
/// the same message for unknown and malformed ones so nothing is learnt by guessing.
///
/// A token whose person is no longer in `[people]` (when people are configured) is refused
/// too: taking someone out of the directory takes their tokens with them.
pub async fn authenticate(
    store: &dyn EventStore,
    people: &People,
    presented: &str,
    now_ms: i64,
) -> Result<Principal, AppError> {
    let presented = presented.trim();
    if !presented.starts_with(TOKEN_PREFIX) {
        return Err(unauthenticated("the token is not valid".to_string()));
    }
    authenticate_hash(store, people, &token_hash(presented), now_ms).await
}

/// [`authenticate`] for a token known by its hash (a web session made with it keeps only
/// the hash, and is checked again at every request).
pub async fn authenticate_hash(
    store: &dyn EventStore,
    people: &People,
    hash: &str,
    now_ms: i64,
) -> Result<Principal, AppError> {
    let Some(token) = store.token_by_hash(hash).await? else {
        return Err(unauthenticated("the token is not valid".to_string()));
    };
    if token.revoked_at_ms.is_some() {
        return Err(unauthenticated(format!("token {} was revoked", token.id)));
    }
    if token.expires_at_ms.is_some_and(|at| at <= now_ms) {
        return Err(unauthenticated(format!("token {} has expired", token.id)));
    }
    let Some(role) = Role::parse(&token.role) else {
        return Err(unauthenticated(format!(
            "token {} has no known role",
            token.id
        )));
    };
    if people
        .resolve(&token.owner, IdentityChannel::Token)
        .is_unknown()
    {
        return Err(unauthenticated(format!(
            "token {} acts as {}, who is no longer in [people]",
            token.id, token.owner
        )));
    }
    if token
        .last_used_ms
        .is_none_or(|at| now_ms - at >= TOUCH_EVERY_MS)
    {
        // A failure to record the use does not refuse the request.
        let _ = store.touch_token(&token.id, now_ms).await;
    }
    Ok(Principal {
        handle: token.owner,
        role,
        token_id: Some(token.id),
        token_hash: Some(token.hash),
    })
}

/// A token as `token list --json` (and the API) show it: never its secret or its hash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenView {
    pub id: String,
    pub owner: String,
    pub role: String,
    /// `active`, `revoked` or `expired`.
    pub status: &'static str,
    pub created_at: String,
    pub created_by: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
}

impl TokenView {
    pub fn of(row: &TokenRow, now_ms: i64) -> TokenView {
        use flightdeck_core::clock::format_rfc3339_millis as at;
        let status = if row.revoked_at_ms.is_some() {
            "revoked"
        } else if row.expires_at_ms.is_some_and(|e| e <= now_ms) {
            "expired"
        } else {
            "active"
        };
        TokenView {
            id: row.id.clone(),
            owner: row.owner.clone(),
            role: row.role.clone(),
            status,
            created_at: at(row.created_at_ms),
            created_by: row.created_by.clone(),
            expires_at: row.expires_at_ms.map(at),
            revoked_at: row.revoked_at_ms.map(at),
            last_used_at: row.last_used_ms.map(at),
        }
    }
}
