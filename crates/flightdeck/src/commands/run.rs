//! `init` and `run`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use flightdeck_app::intake::{self, RepoSource, RunRequest};
use flightdeck_engine::Engine;

use super::{print_summary, progress};
use crate::context::Context;
use crate::error::{exit, CliError};

/// The mission template `flightdeck init` writes: it runs offline and shows the loop.
pub const EXAMPLE_TEMPLATE: &str = r#"# An example mission template. Copy it to start your own: every key is described in
# flightdeck's docs/reference/templates.md.
description = "Add a line to NOTES.md"
owner = "@you"
goal = "Record \"{{note}}\" in NOTES.md."

[params.note]
default = "flightdeck was here"
description = "The line to add"

[workspace]
runtime = "local"       # commands run in a bubblewrap sandbox in a git worktree
network = "none"

[[steps]]
run = 'printf "%s\n" "{{note}}" >> NOTES.md'

[[steps]]
run = "grep -c . NOTES.md"

[publish]
title = "docs: add a note to NOTES.md"
"#;

pub fn init(ctx: &Context, repo: Option<PathBuf>) -> Result<i32, CliError> {
    let dir = repo.unwrap_or_else(|| PathBuf::from("."));
    if !dir.is_dir() {
        return Err(CliError::bad_input(
            format!("{} is not a directory", dir.display()),
            Some("pass --repo with the repository's directory".to_string()),
        ));
    }
    let root = flightdeck_workspace::repo_root(&dir).unwrap_or(dir);
    let files = [
        (
            root.join(".flightdeck/policy.toml"),
            flightdeck_policy::BUILTIN_POLICY_TOML,
        ),
        (
            root.join(".flightdeck/missions/example.toml"),
            EXAMPLE_TEMPLATE,
        ),
    ];
    let mut report = Vec::new();
    for (path, contents) in files {
        let written = if path.exists() {
            false
        } else {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, contents)?;
            true
        };
        report.push((path, written));
    }
    if ctx.json() {
        let files: Vec<_> = report
            .iter()
            .map(|(p, w)| serde_json::json!({"path": p.display().to_string(), "written": w}))
            .collect();
        println!(
            "{}",
            serde_json::json!({"repo": root.display().to_string(), "files": files})
        );
    } else {
        for (path, written) in &report {
            let what = if *written { "wrote" } else { "kept existing" };
            println!("{what} {}", path.display());
        }
        println!("next: flightdeck run example --repo {}", root.display());
    }
    Ok(exit::OK)
}

fn parse_params(raw: &[String]) -> Result<BTreeMap<String, String>, CliError> {
    let mut params = BTreeMap::new();
    for item in raw {
        let Some((key, value)) = item.split_once('=') else {
            return Err(CliError::bad_input(
                format!("-p {item}: a param is KEY=VALUE"),
                Some(format!("for example -p {item}=VALUE")),
            ));
        };
        if params
            .insert(key.trim().to_string(), value.to_string())
            .is_some()
        {
            return Err(CliError::bad_input(format!("-p {key}: given twice"), None));
        }
    }
    Ok(params)
}

/// Where a new mission is driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// In this process, until it ends or parks.
    Here,
    /// In a background process of this machine (`--detach` on SQLite), or by a worker of
    /// the fleet (`--detach` on PostgreSQL).
    Detach,
    /// By a worker (`--queue`).
    Queue,
}

pub async fn run(
    ctx: &Context,
    template: &str,
    repo: Option<PathBuf>,
    remote: Option<String>,
    base: &str,
    params: &[String],
    start: Start,
) -> Result<i32, CliError> {
    let source = match remote {
        Some(url) => intake::repo_source(&ctx.app.config, &url, true)?,
        None => RepoSource::Checkout(repo.unwrap_or_else(|| PathBuf::from("."))),
    };
    let identity_repo = match &source {
        RepoSource::Checkout(dir) => Some(dir.clone()),
        RepoSource::Remote(_) => None,
    };
    let params = parse_params(params)?;
    let requested_by = ctx.identity(identity_repo.as_deref())?;
    // The template, policy and CODEOWNERS as the base commit has them.
    let intake = intake::intake(
        ctx.data_dir(),
        &RunRequest {
            template: template.to_string(),
            repo: source,
            base: base.to_string(),
            params,
            requested_by,
            origin: flightdeck_engine::MissionOrigin::from_source(
                flightdeck_core::event::MissionSource::Cli,
            ),
            git_auth: None,
        },
    )?;
    if !ctx.json() {
        for warning in &intake.codeowners_warnings {
            eprintln!("warning: {warning}");
        }
    }
    // Everything the request names is checked before the store is opened: bad input
    // leaves no trace.
    Engine::validate(&intake.request, &ctx.app.models, &ctx.app.workspace)?;
    intake::check_secret_scopes(
        intake.scope_subject(),
        &ctx.app.config,
        &ctx.app.config_path,
    )?;
    ctx.stop_missions_on_signals();
    let engine = ctx.engine(progress(ctx)).await?;
    if start != Start::Here {
        let state = engine.create(intake.request).await?;
        if start == Start::Queue || flightdeck_store::is_postgres(&ctx.database_url()) {
            // A shared store: the mission is queued, and some worker of the fleet claims it.
            if !ctx.json() {
                eprintln!("mission {} is queued for the workers on this database (`flightdeck worker`, `flightdeck serve`); follow it with `flightdeck timeline {} --follow`", state.id, state.id);
            }
        } else {
            spawn_detached(ctx, &state.id)?;
            if !ctx.json() {
                eprintln!("mission {} runs in the background; follow it with `flightdeck timeline {} --follow`", state.id, state.id);
            }
        }
        print_summary(ctx, &state).await?;
        return Ok(exit::OK);
    }
    let state = engine.run(intake.request).await?;
    print_summary(ctx, &state).await
}

/// Starts `flightdeck __start MISSION` in its own session, logging to the data directory.
fn spawn_detached(ctx: &Context, mission: &str) -> Result<(), CliError> {
    let logs = ctx.data_dir().join("logs");
    std::fs::create_dir_all(&logs)?;
    let log = std::fs::File::create(logs.join(format!("{mission}.log")))?;
    let exe = std::env::current_exe()?;
    let mut command = std::process::Command::new(exe);
    command.arg("--data-dir").arg(ctx.data_dir());
    if let Some(config) = &ctx.global.config {
        command.arg("--config").arg(config);
    }
    // In the environment, not on the command line: a URL may carry a password, and every
    // user of the machine can read a process's arguments.
    command
        .env("FLIGHTDECK_DATABASE_URL", ctx.database_url())
        .args(["__start", mission])
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    command.spawn()?;
    Ok(())
}
