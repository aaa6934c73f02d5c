//! `store copy`: an installation's timelines into another database.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use flightdeck_app::copy::{copy_store, Copied};

use crate::context::Context;
use crate::error::{exit, CliError};

pub async fn copy(ctx: &Context, to: &str) -> Result<i32, CliError> {
    let from_url = ctx.database_url();
    if to.trim() == from_url.trim() {
        return Err(CliError::bad_input(
            format!(
                "--to {}: that is the store this copies from",
                flightdeck_store::masked_url(to)
            ),
            Some("name another database: --to postgres://USER@HOST/DATABASE".to_string()),
        ));
    }
    let Some(source) = ctx.app.reader().await? else {
        return Err(CliError::bad_input(
            format!(
                "there is no store at {} to copy",
                flightdeck_store::masked_url(&from_url)
            ),
            Some("point --data-dir or --database-url at the installation to copy".to_string()),
        ));
    };
    let (target, target_artifacts) =
        flightdeck_store::open_with_artifacts(to, &ctx.app.data_dir.join("artifacts"))
            .await
            .map_err(flightdeck_app::AppError::from)?;
    let json = ctx.json();
    let report = copy_store(
        (source.store.as_ref(), source.artifacts.as_ref()),
        (target.as_ref(), target_artifacts.as_ref()),
        |copied| {
            if json {
                return;
            }
            match copied {
                Copied::Mission { id, events } => eprintln!("copied {id} ({events} events)"),
                Copied::AlreadyThere { id } => {
                    eprintln!("{id} is already there, with the same head")
                }
            }
        },
    )
    .await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        eprintln!(
            "copied {} mission(s), {} event(s), {} artifact(s), {} pending input(s), {} token(s) into {}; {} already there",
            report.copied.len(),
            report.events,
            report.artifacts,
            report.inputs,
            report.tokens,
            flightdeck_store::masked_url(to),
            report.already_there.len()
        );
    }
    Ok(exit::OK)
}
