//! The `flightdeck` command line: parses arguments, runs a command, and turns its outcome
//! into the contract's exit code, with errors on stderr followed by a `hint:`.

mod cli;
mod commands;
mod context;
mod error;
mod output;

use clap::Parser;

use crate::cli::Cli;
use crate::context::Context;
use crate::error::{exit, CliError};

/// How long a process that exported traces waits at its end for the last ones to be sent.
const TELEMETRY_FLUSH: std::time::Duration = std::time::Duration::from_secs(2);

fn main() {
    // Inside a workspace's sandbox this binary is its server, and never gets further.
    flightdeck_workspace::serve_if_asked();
    let cli = Cli::parse();
    let code = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(async {
            match Context::new(cli.global) {
                Ok(ctx) => {
                    let telemetry = ctx.app.telemetry.clone();
                    let code = commands::dispatch(ctx, cli.command)
                        .await
                        .unwrap_or_else(report);
                    // Traces still queued go out now, or not at all: the process is ending.
                    telemetry.shutdown(TELEMETRY_FLUSH).await;
                    code
                }
                Err(e) => report(e),
            }
        }),
        Err(e) => report(CliError::failed(format!(
            "failed to start the async runtime: {e}"
        ))),
    };
    std::process::exit(code);
}

#[allow(clippy::print_stderr)]
fn report(error: CliError) -> i32 {
    eprintln!("error: {}", error.message);
    if let Some(hint) = &error.hint {
        eprintln!("hint: {hint}");
    }
    match error.exit_code() {
        exit::OK => exit::FAILED,
        code => code,
    }
}
