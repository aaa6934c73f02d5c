//! `flightdeck serve`: the JSON API (CONTRACT.md, "HTTP API") over the application layer.
//!
//! Every route goes through [`auth::authenticate`] first: a bearer token (`fd_…`, checked
//! against the hashes in the store) or, on a `local-only` server, a request from this
//! machine, which acts as the installation's default identity with every role. Each route
//! names the role it needs; reads need `viewer`. Errors are the contract's JSON
//! (`{"error": {"kind", "message", "hint"}}`) with the HTTP status of the same error kind
//! that gives the CLI its exit code.
//!
//! Invariant: the server never writes a timeline itself; what changes a mission is posted
//! through the engine (a vote, a cancel, a budget raise), exactly as the CLI posts it.

pub mod auth;
mod feed_notifier;
pub mod github;
pub mod oidc;
mod peer;
mod routes;
pub mod sessions;
pub mod slack;
pub mod tails;
mod web;

use std::net::SocketAddr;
use std::sync::Arc;

use flightdeck_app::{AppError, Reader};
use flightdeck_engine::Engine;

pub use auth::AuthMode;

/// What every request handler shares.
pub struct ServerState {
    /// Who a `local-only` request without a token acts as (the installation's default
    /// identity, as for the CLI on this machine).
    pub local_identity: String,
    /// The installation: its config (`[people]`, `[repos]`, secrets' scopes) and the
    /// settings new missions are checked against.
    pub app: Arc<flightdeck_app::App>,
    /// Posts votes, cancels and budget raises, as the CLI does.
    pub engine: Engine,
    pub auth: AuthMode,
    /// Where the server listens: a `local-only` server accepts only this host (and the
    /// loopback names) in `Host` and `Origin`.
    pub local_addr: SocketAddr,
    /// Fires when the server stops: live streams end with it, drivers record the
    /// interruption.
    pub shutdown: tokio::sync::watch::Receiver<Option<String>>,
    /// Missions the API resumed, driven on tasks of their own: awaited before `serve`
    /// returns, so each records its interruption before the process ends.
    pub drivers: std::sync::Mutex<tokio::task::JoinSet<()>>,
    /// The tips of streamed missions, read once per change for every stream.
    pub tails: Arc<tails::Tails>,
    /// The web UI's signed-in browsers.
    pub sessions: sessions::Sessions,
    /// Single sign-on, when `[server.oidc]` is configured.
    pub oidc: Option<oidc::Oidc>,
    /// Approvals in Slack, when `[slack]` is configured.
    pub slack: Option<Arc<slack::SlackChannel>>,
    /// GitHub as a channel, when `[github]` is configured.
    pub github: Option<Arc<github::GitHubChannel>>,
}

impl ServerState {
    /// Whether browsers reach this server over https (`[server] public_url`): its cookies
    /// are then `Secure`.
    pub fn served_over_https(&self) -> bool {
        self.app
            .config
            .server
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
    }

    /// The store and the artifacts, to read.
    pub fn reader(&self) -> Reader {
        Reader {
            store: self.engine.config().store.clone(),
            artifacts: self.engine.config().artifacts.clone(),
        }
    }
}

/// How long open connections get to finish once the server stops.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Refuses, before anything listens, an address other machines can reach without
/// `[server] auth = "required"`.
pub fn check_listen(addr: &SocketAddr, auth: AuthMode) -> Result<(), AppError> {
    if auth == AuthMode::LocalOnly && !addr.ip().is_loopback() {
        return Err(AppError::bad_input(
            format!(
                "--listen {addr}: other machines can reach this address, and the server's auth is local-only (no credentials asked)"
            ),
            Some(
                "set `[server] auth = \"required\"` in the config (API tokens: `flightdeck token create`), or listen on 127.0.0.1"
                    .to_string(),
            ),
        ));
    }
    Ok(())
}

/// Serves the API on `listener` until the state's `shutdown` fires.
pub async fn serve(state: ServerState, listener: tokio::net::TcpListener) -> Result<(), AppError> {
    let mut shutdown = state.shutdown.clone();
    let state = Arc::new(state);
    let state_for_drivers = state.clone();
    // Subscribed before the first request: no change a stream waits for goes unpublished.
    let feed = state
        .engine
        .config()
        .store
        .subscribe()
        .await
        .map_err(AppError::from)?;
    let tails = {
        let tails = state.tails.clone();
        let run = tokio::spawn(tails.clone().run(feed, state.shutdown.clone()));
        tokio::spawn(async move {
            // However it ends (a panic included), no stream is left waiting on it.
            let _ = run.await;
            tails.close();
        })
    };
    // Approval requests in Slack, kept up to date from the store's feed.
    let notifier = tokio::spawn(slack::run(state.clone()));
    // GitHub's deliveries handled after their answer, and what GitHub shows kept up to date.
    let github = tokio::spawn(github::run(state.clone()));
    let router = routes::router(state);
    let mut stopping = shutdown.clone();
    let serving = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = shutdown.wait_for(Option::is_some).await;
    });
    // Connections get SHUTDOWN_GRACE to finish once the server stops (a client that stops
    // reading a stream would hold it forever).
    tokio::select! {
        served = serving => served.map_err(|e| AppError::failed(format!("the server stopped: {e}")))?,
        () = async {
            let _ = stopping.wait_for(Option::is_some).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {}
    }
    let mut drivers = match state_for_drivers.drivers.lock() {
        Ok(mut set) => std::mem::take(&mut *set),
        Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
    };
    while drivers.join_next().await.is_some() {}
    let _ = tails.await;
    // It stops on the same signal, between two messages.
    let _ = notifier.await;
    let _ = github.await;
    Ok(())
}
