//! One function per command. Each returns the process exit code or a [`CliError`].

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod approvals;
mod attest;
mod audit;
mod people;
mod policy;
mod replay;
mod run;
mod serve;
mod store;
mod tokens;
mod workspace;

use std::io::Write;
use std::sync::Arc;

use flightdeck_app::queries;
use flightdeck_core::{Digest, MissionState, MissionStatus};
use flightdeck_engine::Silent;

use crate::cli::{
    AuditCommand, Command, PolicyCommand, StoreCommand, TokenCommand, WorkspaceCommand,
};
use crate::context::Context;
use crate::error::{exit, CliError};
use crate::output::{event_json, event_line, summary_text, Progress};

pub use audit::{audit_export, audit_verify};

pub async fn dispatch(ctx: Context, command: Command) -> Result<i32, CliError> {
    match command {
        Command::Init { repo } => run::init(&ctx, repo),
        Command::Run {
            template,
            repo,
            base,
            params,
            detach,
            queue,
            remote,
        } => {
            let start = if queue {
                run::Start::Queue
            } else if detach {
                run::Start::Detach
            } else {
                run::Start::Here
            };
            run::run(&ctx, &template, repo, remote, &base, &params, start).await
        }
        Command::Missions { limit } => missions(&ctx, limit).await,
        Command::Show { mission } => show(&ctx, &mission).await,
        Command::Timeline { mission, follow } => timeline(&ctx, &mission, follow).await,
        Command::Artifact { digest } => artifact(&ctx, &digest).await,
        Command::Approvals { pending } => approvals::list(&ctx, pending).await,
        Command::Approve { approval, comment } => {
            approvals::decide(&ctx, &approval, comment.as_deref(), true).await
        }
        Command::Deny { approval, comment } => {
            approvals::decide(&ctx, &approval, comment.as_deref(), false).await
        }
        Command::Policy { command } => match command {
            PolicyCommand::Explain {
                repo,
                base,
                command,
                write,
                changed,
            } => policy::explain(&ctx, repo, &base, command, write, changed),
        },
        Command::Workspace { command } => match command {
            WorkspaceCommand::Up { repo, template } => workspace::up(&ctx, repo, template).await,
            WorkspaceCommand::Exec {
                repo,
                timeout,
                command,
            } => workspace::exec(&ctx, repo, timeout, &command).await,
            WorkspaceCommand::Down { repo } => workspace::down(&ctx, repo).await,
            WorkspaceCommand::Lock { repo, template } => {
                workspace::lock(&ctx, repo, template).await
            }
            WorkspaceCommand::Gc { dry_run } => workspace::gc(&ctx, dry_run).await,
        },
        Command::Resume { mission } => resume(&ctx, &mission).await,
        Command::Budget { mission, add } => budget(&ctx, &mission, &add).await,
        Command::Cancel { mission } => cancel(&ctx, &mission).await,
        Command::Start { mission } => start(&ctx, &mission).await,
        Command::People => people::people(&ctx),
        Command::Metrics { since, template } => {
            people::metrics(&ctx, since, template.as_deref()).await
        }
        Command::Serve { listen, workers } => serve::serve(&ctx, &listen, workers).await,
        Command::Store { command } => match command {
            StoreCommand::Copy { to } => store::copy(&ctx, &to).await,
        },
        Command::Token { command } => match command {
            TokenCommand::Create {
                owner,
                role,
                expires,
            } => tokens::create(&ctx, &owner, &role, expires).await,
            TokenCommand::List => tokens::list(&ctx).await,
            TokenCommand::Revoke { id } => tokens::revoke(&ctx, &id).await,
        },
        Command::Worker { once, concurrency } => people::worker(&ctx, once, concurrency).await,
        Command::Replay {
            mission,
            reexecute,
            repo,
            template,
        } => replay::replay(&ctx, &mission, reexecute, repo, template).await,
        Command::Fork {
            mission,
            at,
            model,
            template,
        } => replay::fork(&ctx, &mission, at, model, template).await,
        Command::Audit { command } => match command {
            AuditCommand::Verify { mission, all } => {
                audit_verify(&ctx, mission.as_deref(), all).await
            }
            AuditCommand::Export { mission, format } => audit_export(&ctx, &mission, format).await,
            AuditCommand::VerifyAttestation { file, public_key } => {
                audit::verify_attestation(&ctx, &file, &public_key)
            }
        },
    }
}

/// The exit code that tells a script how a mission stands.
pub fn status_code(status: MissionStatus) -> i32 {
    match status {
        MissionStatus::Failed => exit::FAILED,
        MissionStatus::AwaitingApproval => exit::AWAITING_APPROVAL,
        MissionStatus::Blocked => exit::BLOCKED,
        MissionStatus::Cancelled => exit::CANCELLED,
        MissionStatus::Succeeded
        | MissionStatus::Queued
        | MissionStatus::Provisioning
        | MissionStatus::Running => exit::OK,
    }
}

fn progress(ctx: &Context) -> Arc<dyn flightdeck_engine::Observer> {
    if ctx.json() {
        Arc::new(Silent)
    } else {
        Arc::new(Progress::default())
    }
}

/// Prints a mission's summary (from its timeline) and returns the status's exit code.
pub async fn print_summary(ctx: &Context, state: &MissionState) -> Result<i32, CliError> {
    let summary = state.summary_view();
    if ctx.json() {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).unwrap_or_default()
        );
    } else {
        let artifacts = ctx.artifacts().await?;
        print!(
            "{}",
            summary_text(&summary, |digest| {
                artifacts
                    .local_path(digest)
                    .map(|p| p.display().to_string())
            })
        );
    }
    Ok(status_code(state.status))
}

async fn missions(ctx: &Context, limit: u32) -> Result<i32, CliError> {
    let summaries = match ctx.app.reader().await? {
        Some(reader) => queries::missions(&reader, limit).await?,
        None => Vec::new(),
    };
    if ctx.json() {
        println!(
            "{}",
            serde_json::to_string_pretty(&summaries).unwrap_or_default()
        );
        return Ok(exit::OK);
    }
    if summaries.is_empty() {
        println!("no missions yet: start one with `flightdeck run TEMPLATE`");
        return Ok(exit::OK);
    }
    println!(
        "{:<28}  {:<17}  {:<20}  {:<19}  REQUESTED BY",
        "MISSION", "STATUS", "TEMPLATE", "CREATED"
    );
    for summary in summaries {
        let created = &summary.created_at;
        println!(
            "{:<28}  {:<17}  {:<20}  {:<19}  {}",
            summary.id,
            summary.status.as_str(),
            summary.template.as_deref().unwrap_or("-"),
            created.get(..19).unwrap_or(created).replace('T', " "),
            summary.requested_by.as_deref().unwrap_or("-"),
        );
    }
    Ok(exit::OK)
}

async fn show(ctx: &Context, mission: &str) -> Result<i32, CliError> {
    let reader = ctx.reader_for(mission).await?;
    let id = queries::resolve_id(&*reader.store, mission).await?;
    let state = queries::mission(&reader, &id).await?;
    print_summary(ctx, &state).await?;
    Ok(exit::OK)
}

/// Prints a mission's events; with `follow`, new ones as they are appended (woken by the
/// store's change feed, not by polling) until the mission finishes.
async fn timeline(ctx: &Context, mission: &str, follow: bool) -> Result<i32, CliError> {
    let reader = ctx.reader_for(mission).await?;
    let id = queries::resolve_id(&*reader.store, mission).await?;
    // Subscribed before the first read: nothing appended in between is missed.
    let mut feed = if follow {
        Some(reader.store.subscribe().await?)
    } else {
        None
    };
    let mut after = 0;
    loop {
        let events = queries::timeline(&reader, &id, after).await?;
        let mut out = std::io::stdout().lock();
        let mut finished = false;
        for event in &events {
            let line = if ctx.json() {
                event_json(event)
            } else {
                event_line(event)
            };
            if writeln!(out, "{line}").is_err() {
                return Ok(exit::OK); // the reader went away (a pipe into `head`)
            }
            after = event.seq;
            finished |= event.event_type == "mission.finished";
        }
        let _ = out.flush();
        drop(out);
        let Some(feed) = feed.as_mut().filter(|_| !finished) else {
            return Ok(exit::OK);
        };
        feed.changed().await?;
    }
}

async fn artifact(ctx: &Context, digest: &str) -> Result<i32, CliError> {
    let digest: Digest =
        digest
            .trim()
            .parse()
            .map_err(|e: flightdeck_core::hash::DigestParseError| {
                CliError::bad_input(
                    e.to_string(),
                    Some(
                        "digests look like sha256:<64 hex>, as `flightdeck show` prints them"
                            .to_string(),
                    ),
                )
            })?;
    let bytes = ctx.artifacts().await?.get(&digest).await?;
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes)?;
    out.flush()?;
    Ok(exit::OK)
}

async fn resume(ctx: &Context, mission: &str) -> Result<i32, CliError> {
    ctx.stop_missions_on_signals();
    let engine = ctx.existing_engine(mission, progress(ctx)).await?;
    let id = engine.resolve_id(mission).await?;
    let by = ctx.identity(None)?;
    let state = engine.resume(&id, &by).await?;
    if state.status == MissionStatus::AwaitingApproval && !ctx.json() {
        let waiting: Vec<String> = state
            .pending_approvals()
            .map(|a| {
                format!(
                    "{} ({}/{} from {})",
                    a.request.approval_id,
                    a.approved_by().len(),
                    a.request.required,
                    a.request.eligible.join(", ")
                )
            })
            .collect();
        eprintln!(
            "mission {} is still waiting for approval: {}",
            state.id,
            waiting.join("; ")
        );
    }
    print_summary(ctx, &state).await
}

/// `flightdeck budget MISSION --add DIM=AMOUNT…`: records `budget.raised` (exit 0); the
/// mission stays as it was until `resume`.
async fn budget(ctx: &Context, mission: &str, adds: &[String]) -> Result<i32, CliError> {
    let mut parsed = Vec::with_capacity(adds.len());
    for add in adds {
        let bad = || {
            CliError::bad_input(
                format!("--add {add}: expected DIM=AMOUNT"),
                Some("e.g. --add usd=1.5 --add tool_calls=50 (dimensions: usd, tokens, tool_calls, model_calls, wall_seconds)".to_string()),
            )
        };
        let (dimension, amount) = add.split_once('=').ok_or_else(bad)?;
        let amount: f64 = amount.trim().parse().map_err(|_| bad())?;
        // `nan`, `inf` and negative amounts parse as f64; a raise is a positive amount.
        if !(amount.is_finite() && amount > 0.0) {
            return Err(CliError::bad_input(
                format!("--add {add}: the amount must be positive"),
                Some("e.g. --add usd=1.5 or --add tool_calls=50".to_string()),
            ));
        }
        parsed.push((dimension.trim().to_string(), amount));
    }
    let engine = ctx.existing_engine(mission, Arc::new(Silent)).await?;
    let id = engine.resolve_id(mission).await?;
    let by = ctx.identity(None)?;
    let state = engine.raise_budget(&id, &by, &parsed).await?;
    if ctx.json() {
        println!(
            "{}",
            serde_json::to_string_pretty(&state.summary_view()).unwrap_or_default()
        );
    } else {
        for (dimension, amount) in &parsed {
            let limit = flightdeck_core::budget::Dimension::parse(dimension)
                .and_then(|d| state.budget_limit(d))
                .unwrap_or(0.0);
            println!("{dimension}: +{amount} by {by}, limit now {limit}");
        }
        if state.status == MissionStatus::Blocked {
            eprintln!("mission {id} is still blocked; continue it with `flightdeck resume {id}` (a running `flightdeck worker` continues it by itself)");
        }
    }
    Ok(exit::OK)
}

async fn start(ctx: &Context, mission: &str) -> Result<i32, CliError> {
    ctx.stop_missions_on_signals();
    let engine = ctx.existing_engine(mission, progress(ctx)).await?;
    let id = engine.resolve_id(mission).await?;
    let state = engine.start(&id).await?;
    Ok(status_code(state.status))
}

async fn cancel(ctx: &Context, mission: &str) -> Result<i32, CliError> {
    let engine = ctx.existing_engine(mission, Arc::new(Silent)).await?;
    let id = engine.resolve_id(mission).await?;
    let by = ctx.identity(None)?;
    let state = engine.cancel(&id, &by).await?;
    print_summary(ctx, &state).await?;
    Ok(exit::OK) // the command did what was asked; `run`/`resume` report 5 for a cancelled mission
}
