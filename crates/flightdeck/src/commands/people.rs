//! `people` (the directory) and `worker` (the scheduler, as a process).

#![allow(clippy::print_stdout, clippy::print_stderr)]

use flightdeck_app::scheduler::{ActionKind, Scheduler};
use serde_json::json;

use super::progress;
use crate::context::Context;
use crate::error::{exit, CliError};

/// `flightdeck people`: who is who, on every channel, and the teams.
pub fn people(ctx: &Context) -> Result<i32, CliError> {
    let persons = ctx.app.people.persons();
    let teams = &ctx.app.config.teams;
    if ctx.json() {
        let people: Vec<_> = persons
            .iter()
            .map(|p| {
                json!({
                    "key": p.key, "handle": p.handle, "emails": p.emails,
                    "github": p.github, "slack": p.slack,
                    "teams": teams.iter().filter(|(_, members)| members.iter().any(|m| {
                        let resolved = ctx.app.people.resolve(m, flightdeck_policy::IdentityChannel::Cli);
                        resolved.person.as_ref().is_some_and(|q| q.key == p.key)
                    })).map(|(team, _)| team.clone()).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"people": people, "teams": teams}))
                .unwrap_or_default()
        );
        return Ok(exit::OK);
    }
    if persons.is_empty() {
        println!(
            "no people configured in {}: every identity is its own person (`--as alice@acme.com` and `--as @alice` are two people)",
            ctx.app.config_path.display()
        );
        println!("hint: add [people.NAME] with handle, emails, github and slack to say who is who");
    } else {
        println!(
            "{:<12}  {:<16}  {:<28}  {:<14}  SLACK",
            "KEY", "HANDLE", "EMAILS", "GITHUB"
        );
        for p in persons {
            println!(
                "{:<12}  {:<16}  {:<28}  {:<14}  {}",
                p.key,
                p.handle,
                if p.emails.is_empty() {
                    "-".to_string()
                } else {
                    p.emails.join(", ")
                },
                p.github.as_deref().unwrap_or("-"),
                p.slack.as_deref().unwrap_or("-"),
            );
        }
    }
    for (team, members) in teams {
        let handles: Vec<String> = members
            .iter()
            .map(|m| {
                ctx.app
                    .people
                    .resolve(m, flightdeck_policy::IdentityChannel::Cli)
                    .handle
            })
            .collect();
        println!("team {team}: {}", handles.join(", "));
    }
    Ok(exit::OK)
}

/// `flightdeck worker`: the scheduler, until SIGINT / SIGTERM (or one pass with `--once`).
pub async fn worker(ctx: &Context, once: bool, concurrency: u32) -> Result<i32, CliError> {
    if concurrency == 0 {
        return Err(CliError::bad_input(
            "--concurrency 0: a worker drives at least one mission at a time",
            Some("e.g. --concurrency 2".to_string()),
        ));
    }
    ctx.stop_missions_on_signals();
    let engine = ctx.engine(progress(ctx)).await?.handing_back_on_shutdown();
    let scheduler = Scheduler::with_workers(engine, concurrency as usize);
    let json = ctx.json();
    let report = |actions: &[flightdeck_app::scheduler::Action]| {
        for action in actions {
            let what = match action.what {
                ActionKind::Settled => "took in what waited for",
                ActionKind::Continued => "continued",
                ActionKind::Failed => "could not drive",
            };
            if json {
                let mut line = json!({"mission": action.mission, "action": match action.what {
                    ActionKind::Settled => "settled",
                    ActionKind::Continued => "continued",
                    ActionKind::Failed => "failed",
                }, "status": action.status});
                if let Some(error) = &action.error {
                    line["error"] = json!(error);
                }
                println!("{line}");
            } else {
                match &action.error {
                    Some(error) => eprintln!("worker: {what} {}: {error}", action.mission),
                    None => eprintln!("worker: {what} {} ({})", action.mission, action.status),
                }
            }
        }
    };
    if once {
        let (actions, _) = scheduler.tick().await?;
        report(&actions);
        scheduler.drain().await;
        return Ok(exit::OK);
    }
    if !json {
        eprintln!("worker: continuing missions by themselves; stop with Ctrl-C");
    }
    scheduler
        .run(ctx.shutdown.clone(), report, |e| {
            eprintln!(
                "worker: a pass failed: {}; trying again in a few seconds",
                e.message
            );
        })
        .await?;
    Ok(exit::OK)
}

/// `flightdeck metrics`: how missions went, in all, per template and per day.
pub async fn metrics(
    ctx: &Context,
    since: Option<u32>,
    template: Option<&str>,
) -> Result<i32, CliError> {
    use flightdeck_engine::Clock;
    let now = flightdeck_engine::SystemClock.now_ms();
    let view = match ctx.app.reader().await? {
        Some(reader) => flightdeck_app::queries::metrics(&reader, now, since, template).await?,
        None => flightdeck_core::metrics::MetricsView::of(&[], now, since, template),
    };
    if ctx.json() {
        println!(
            "{}",
            serde_json::to_string_pretty(&view).unwrap_or_default()
        );
        return Ok(exit::OK);
    }
    let window = match since {
        Some(days) => format!("created in the last {days} day(s)"),
        None => "all missions".to_string(),
    };
    println!(
        "{window}{}",
        template
            .map(|t| format!(", template {t}"))
            .unwrap_or_default()
    );
    let line = |name: &str, c: &flightdeck_core::metrics::Counts| {
        format!(
            "{name:<20} {:>5} missions  {:>4} succeeded  {:>4} failed  {:>4} cancelled  {:>4} in progress  success {}  lead time {}  ${:.4} total, {} each",
            c.missions,
            c.succeeded,
            c.failed,
            c.cancelled,
            c.in_progress,
            c.success_rate.map_or("-".to_string(), |r| format!("{:.0}%", r * 100.0)),
            c.median_lead_time_seconds.map_or("-".to_string(), |s| format!("{s:.0}s")),
            c.cost_usd,
            c.cost_per_mission_usd.map_or("-".to_string(), |u| format!("${u:.4}")),
        )
    };
    println!("{}", line("all", &view.all));
    for t in &view.by_template {
        println!("{}", line(&t.template, &t.counts));
    }
    for day in &view.per_day {
        println!(
            "{}  {} mission(s), {} succeeded",
            day.day, day.missions, day.succeeded
        );
    }
    Ok(exit::OK)
}
