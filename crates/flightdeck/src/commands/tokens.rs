//! `token create`, `token list`, `token revoke`: the API's credentials.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use flightdeck_app::tokens::{self, Role, TokenView};
use flightdeck_engine::{Clock, SystemClock};
use serde_json::json;

use crate::context::Context;
use crate::error::{exit, CliError};

pub async fn create(
    ctx: &Context,
    owner: &str,
    role: &str,
    expires: Option<u32>,
) -> Result<i32, CliError> {
    let role = Role::parse(role).ok_or_else(|| {
        CliError::bad_input(
            format!("--role {role}: not a role"),
            Some("roles: viewer, operator, approver, admin".to_string()),
        )
    })?;
    let by = ctx.identity(None)?;
    let store = ctx.app.store().await?;
    let now = SystemClock.now_ms();
    let made = tokens::create(
        store.as_ref(),
        &ctx.app.people,
        owner,
        role,
        expires,
        &by,
        now,
    )
    .await?;
    let view = TokenView::of(&made.row, now);
    if ctx.json() {
        let mut value = serde_json::to_value(&view).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            object.insert("token".to_string(), json!(made.secret));
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
        return Ok(exit::OK);
    }
    println!("{}", made.secret);
    eprintln!(
        "token {} acts as {} ({}){}; it is shown this once: only its hash is kept",
        view.id,
        view.owner,
        view.role,
        view.expires_at
            .as_deref()
            .map(|at| format!(", until {at}"))
            .unwrap_or_default()
    );
    Ok(exit::OK)
}

pub async fn list(ctx: &Context) -> Result<i32, CliError> {
    let now = SystemClock.now_ms();
    let rows = match ctx.app.reader().await? {
        Some(reader) => reader
            .store
            .tokens()
            .await
            .map_err(flightdeck_app::AppError::from)?,
        None => Vec::new(),
    };
    let views: Vec<TokenView> = rows.iter().map(|r| TokenView::of(r, now)).collect();
    if ctx.json() {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "tokens": views })).unwrap_or_default()
        );
        return Ok(exit::OK);
    }
    if views.is_empty() {
        println!("no tokens yet: `flightdeck token create --for HANDLE --role ROLE` makes one");
        return Ok(exit::OK);
    }
    for v in &views {
        println!(
            "{}  {:<8} {:<8} {}  created {} by {}  expires {}  last used {}",
            v.id,
            v.status,
            v.role,
            v.owner,
            v.created_at,
            v.created_by,
            v.expires_at.as_deref().unwrap_or("never"),
            v.last_used_at.as_deref().unwrap_or("never"),
        );
    }
    Ok(exit::OK)
}

pub async fn revoke(ctx: &Context, id: &str) -> Result<i32, CliError> {
    let store = ctx.app.store().await?;
    let now = SystemClock.now_ms();
    let row = tokens::revoke(store.as_ref(), id, now).await?;
    let view = TokenView::of(&row, now);
    if ctx.json() {
        println!(
            "{}",
            serde_json::to_string_pretty(&view).unwrap_or_default()
        );
    } else {
        println!("revoked {} ({}, {})", view.id, view.owner, view.role);
    }
    Ok(exit::OK)
}
