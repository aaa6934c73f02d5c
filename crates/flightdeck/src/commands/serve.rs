//! `serve`: the HTTP API, with the scheduler in-process.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::net::SocketAddr;
use std::sync::Arc;

use flightdeck_app::scheduler::Scheduler;
use flightdeck_engine::Silent;
use flightdeck_server::{check_listen, ServerState};
use serde_json::json;

use crate::context::Context;
use crate::error::{exit, CliError};

pub async fn serve(ctx: &Context, listen: &str, workers: u32) -> Result<i32, CliError> {
    let addr: SocketAddr = listen.trim().parse().map_err(|_| {
        CliError::bad_input(
            format!("--listen {listen}: not an address"),
            Some("e.g. --listen 127.0.0.1:7777 (an IP address and a port)".to_string()),
        )
    })?;
    let auth = ctx.app.config.server.auth;
    check_listen(&addr, auth)?;
    ctx.stop_missions_on_signals();
    // Missions it drives when it stops are handed back to the fleet's other workers.
    let engine = ctx
        .engine(Arc::new(Silent))
        .await?
        .handing_back_on_shutdown();
    let listener = listen_on(addr).map_err(|e| {
        CliError::bad_input(
            format!("--listen {addr}: cannot listen: {e}"),
            Some("pick another port, or stop what listens there".to_string()),
        )
    })?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| CliError::failed(format!("cannot read the address listened on: {e}")))?;
    // Links in Slack messages: the public address, else where this server listens.
    let slack = match &ctx.app.config.slack {
        Some(config) => {
            let public = ctx
                .app
                .config
                .server
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{local_addr}"));
            let slack = flightdeck_server::slack::SlackChannel::from_config(
                config,
                &public,
                Box::new(|message| eprintln!("serve: slack: {message}")),
            )?;
            // A token Slack refuses stops the server here, not at the first approval.
            slack.check_token().await?;
            Some(Arc::new(slack))
        }
        None => None,
    };
    // GitHub: deliveries at POST /webhooks/github, links to the mission pages.
    let github = match &ctx.app.github {
        Some(app) => {
            let public = ctx
                .app
                .config
                .server
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{local_addr}"));
            Some(Arc::new(flightdeck_server::github::GitHubChannel::new(
                app.clone(),
                &public,
                Box::new(|message| eprintln!("serve: github: {message}")),
            )?))
        }
        None => None,
    };
    let oidc = match &ctx.app.config.server.oidc {
        Some(config) => Some(flightdeck_server::oidc::Oidc::from_config(
            config,
            ctx.app.config.server.public_url.as_deref(),
            local_addr,
            &ctx.app.people,
        )?),
        None => None,
    };
    let scheduler_task = if workers > 0 {
        // One scheduler continues parked missions, driving up to `workers` at once (workers
        // on other machines sharing a store come with PostgreSQL).
        let scheduler = Scheduler::with_workers(engine.clone(), workers as usize);
        let shutdown = ctx.shutdown.clone();
        Some(tokio::spawn(async move {
            let report = |actions: &[flightdeck_app::scheduler::Action]| {
                for action in actions {
                    if let Some(error) = &action.error {
                        eprintln!("serve: could not drive {}: {error}", action.mission);
                    }
                }
            };
            let failed = |e: &flightdeck_app::AppError| {
                eprintln!(
                    "serve: a scheduler pass failed: {}; trying again in a few seconds",
                    e.message
                );
            };
            if let Err(e) = scheduler.run(shutdown, report, failed).await {
                eprintln!("serve: the scheduler stopped: {}", e.message);
            }
        }))
    } else {
        None
    };
    let local_identity = ctx.identity(None)?;
    let tails = flightdeck_server::tails::Tails::new(engine.config().store.clone());
    let url = format!("http://{local_addr}");
    if ctx.json() {
        println!(
            "{}",
            json!({"listening": url, "auth": match auth {
                flightdeck_server::AuthMode::LocalOnly => "local-only",
                flightdeck_server::AuthMode::Required => "required",
            }})
        );
    } else {
        eprintln!(
            "serve: the web UI is at {url}/ and the API at {url}/api/v1 (health: {url}/healthz); stop with Ctrl-C"
        );
    }
    flightdeck_server::serve(
        ServerState {
            sessions: Default::default(),
            oidc,
            local_identity,
            app: Arc::new(ctx.app.reopen()?),
            engine,
            auth,
            local_addr,
            shutdown: ctx.shutdown.clone(),
            drivers: std::sync::Mutex::new(tokio::task::JoinSet::new()),
            tails,
            slack,
            github,
        },
        listener,
    )
    .await?;
    // The scheduler stops on the same signal; what it drives records its interruption.
    if let Some(task) = scheduler_task {
        let _ = task.await;
    }
    Ok(exit::OK)
}

/// Listens on `addr` with a backlog of 1024: a burst of webhook deliveries (GitHub sends
/// hundreds at once) would overflow the default 128, and a dropped connection is retried
/// by its client only a second later.
fn listen_on(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}
