//! `audit verify` and `audit export`.

#![allow(clippy::print_stdout)]

use std::io::Write;
use std::sync::Arc;

use flightdeck_engine::Silent;
use flightdeck_store::{verify_mission_events, ArtifactError, ArtifactStore, EventStore};
use serde_json::json;

use crate::cli::ExportFormat;
use crate::context::Context;
use crate::error::{exit, CliError};
use crate::output::event_json;

/// The verdict on one mission.
struct Verdict {
    mission: String,
    events: u64,
    head_hash: Option<String>,
    /// First bad seq and why.
    failure: Option<(u64, String)>,
}

async fn verify_one(
    store: &dyn EventStore,
    artifacts: &dyn ArtifactStore,
    mission: &str,
) -> Result<Verdict, CliError> {
    let (head, events) = match verify_mission_events(store, mission).await? {
        Ok(ok) => ok,
        Err(f) => {
            return Ok(Verdict {
                mission: mission.to_string(),
                events: 0,
                head_hash: None,
                failure: Some((f.seq, f.reason)),
            })
        }
    };
    // The chain holds; every artifact it references must exist and hash to its digest.
    let count = events.len() as u64;
    for event in &events {
        let Ok(kind) = event.kind() else { continue };
        for digest in kind.artifact_refs() {
            let problem = match artifacts.get(digest).await {
                Ok(_) => None,
                Err(ArtifactError::NotFound(_)) => Some(format!("artifact {digest} is missing")),
                Err(e) => Some(e.to_string()),
            };
            if let Some(reason) = problem {
                return Ok(Verdict {
                    mission: mission.to_string(),
                    events: count,
                    head_hash: Some(head),
                    failure: Some((event.seq, reason)),
                });
            }
        }
    }
    Ok(Verdict {
        mission: mission.to_string(),
        events: count,
        head_hash: Some(head),
        failure: None,
    })
}

pub async fn audit_verify(
    ctx: &Context,
    mission: Option<&str>,
    _all: bool,
) -> Result<i32, CliError> {
    let label = mission.unwrap_or("--all");
    let missions: Vec<String> = match mission {
        Some(given) => {
            let engine = ctx.existing_engine(given, Arc::new(Silent)).await?;
            vec![engine.resolve_id(given).await?]
        }
        None if !ctx.store_exists() => Vec::new(),
        None => ctx
            .store()
            .await?
            .missions(u32::MAX)
            .await?
            .into_iter()
            .map(|r| r.id)
            .collect(),
    };
    let stores = if missions.is_empty() {
        None
    } else {
        Some(ctx.stores().await?)
    };
    let mut verdicts = Vec::new();
    if let Some((store, artifacts)) = &stores {
        for id in &missions {
            verdicts.push(verify_one(store.as_ref(), artifacts.as_ref(), id).await?);
        }
    }
    let all_ok = verdicts.iter().all(|v| v.failure.is_none());
    if ctx.json() {
        let list: Vec<_> = verdicts
            .iter()
            .map(|v| {
                json!({
                    "mission": v.mission,
                    "ok": v.failure.is_none(),
                    "events": v.events,
                    "head_hash": v.head_hash,
                    "first_bad_seq": v.failure.as_ref().map(|f| f.0),
                    "reason": v.failure.as_ref().map(|f| f.1.clone()),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"ok": all_ok, "missions": list}))
                .unwrap_or_default()
        );
    } else {
        if verdicts.is_empty() {
            println!("no missions to verify ({label})");
        }
        for v in &verdicts {
            match &v.failure {
                None => println!(
                    "ok      {}  {} events, head {}",
                    v.mission,
                    v.events,
                    v.head_hash.as_deref().unwrap_or("")
                ),
                Some((seq, reason)) => {
                    println!("BROKEN  {}  first bad seq {seq}: {reason}", v.mission)
                }
            }
        }
    }
    Ok(if all_ok { exit::OK } else { exit::FAILED })
}

pub async fn audit_export(
    ctx: &Context,
    mission: &str,
    format: ExportFormat,
) -> Result<i32, CliError> {
    let engine = ctx.existing_engine(mission, Arc::new(Silent)).await?;
    let id = engine.resolve_id(mission).await?;
    match format {
        ExportFormat::Jsonl => {
            let events = engine.config().store.events(&id, 0).await?;
            let mut out = std::io::stdout().lock();
            for event in &events {
                if writeln!(out, "{}", event_json(event)).is_err() {
                    break;
                }
            }
            let _ = out.flush();
        }
    }
    Ok(exit::OK)
}
