//! `audit verify` and `audit export`.

#![allow(clippy::print_stdout)]

use std::io::Write;

use flightdeck_app::queries;
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
    // Reading never writes: the store is opened read-only.
    let reader = match mission {
        Some(given) => ctx.reader_for(given).await?,
        None => match ctx.app.reader().await? {
            Some(reader) => reader,
            None if !ctx.data_dir().exists() => {
                return Err(CliError::not_found(
                    format!(
                        "--all: the data directory {} does not exist",
                        ctx.data_dir().display()
                    ),
                    Some("point --data-dir (or FLIGHTDECK_DATA_DIR) at the installation whose missions to verify".to_string()),
                ))
            }
            None => {
                return Err(CliError::not_found(
                    format!(
                        "--all: there is no store in {} ({})",
                        ctx.data_dir().display(),
                        ctx.database_url()
                    ),
                    Some("no mission has run with this data directory; check --data-dir and --database-url".to_string()),
                ))
            }
        },
    };
    let missions: Vec<String> = match mission {
        Some(given) => vec![queries::resolve_id(&*reader.store, given).await?],
        None => reader
            .store
            .missions(u32::MAX)
            .await?
            .into_iter()
            .map(|r| r.id)
            .collect(),
    };
    let mut verdicts = Vec::new();
    for id in &missions {
        verdicts.push(verify_one(reader.store.as_ref(), reader.artifacts.as_ref(), id).await?);
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
    let reader = ctx.reader_for(mission).await?;
    let id = queries::resolve_id(&*reader.store, mission).await?;
    match format {
        ExportFormat::Jsonl => {
            let events = reader.store.events(&id, 0).await?;
            let mut out = std::io::stdout().lock();
            for event in &events {
                if writeln!(out, "{}", event_json(event)).is_err() {
                    break;
                }
            }
            let _ = out.flush();
        }
        ExportFormat::Intoto => {
            let events = reader.store.events(&id, 0).await?;
            let state = queries::mission(&reader, &id).await?;
            let statement = intoto_statement(&state, &events)?;
            let statement = match &ctx.app.config.audit.signing_key {
                Some(path) => {
                    let key = super::attest::read_signing_key(&ctx.data_dir().join(path))?;
                    super::attest::envelope(&statement, &key)
                }
                None => statement,
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&statement).unwrap_or_default()
            );
        }
    }
    Ok(exit::OK)
}

/// `audit verify-attestation FILE --public-key PEM`: the signature first, then the statement.
pub fn verify_attestation(
    ctx: &Context,
    file: &std::path::Path,
    public_key: &std::path::Path,
) -> Result<i32, CliError> {
    let key = super::attest::read_public_key(public_key)?;
    let text = std::fs::read_to_string(file)
        .map_err(|e| CliError::bad_input(format!("{}: {e}", file.display()), None))?;
    let envelope: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        CliError::bad_input(
            format!("{}: not JSON: {e}", file.display()),
            Some("pass the output of `flightdeck audit export MISSION --format intoto` with [audit] signing_key set".to_string()),
        )
    })?;
    let verdict = super::attest::open_envelope(&envelope, &key);
    let subjects: Vec<String> = verdict
        .as_ref()
        .ok()
        .and_then(|s| s["subject"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|s| s["name"].as_str().map(str::to_string))
        .collect();
    if ctx.json() {
        println!(
            "{}",
            json!({
                "ok": verdict.is_ok(),
                "reason": verdict.as_ref().err(),
                "subjects": subjects,
                "invocation": verdict.as_ref().ok().map(|s| s.pointer("/predicate/runDetails/metadata/invocationId").cloned()),
            })
        );
    } else {
        match &verdict {
            Ok(_) => println!("ok      signed statement for {}", subjects.join(", ")),
            Err(reason) => println!("BROKEN  {}: {reason}", file.display()),
        }
    }
    Ok(if verdict.is_ok() {
        exit::OK
    } else {
        exit::FAILED
    })
}

/// `sha256:<hex>` → `{"sha256": "<hex>"}`, as in-toto digests are written.
fn digest_set(digest: &flightdeck_core::Digest) -> serde_json::Value {
    let text = digest.to_string();
    let hex = text.strip_prefix("sha256:").unwrap_or(&text);
    json!({ "sha256": hex })
}

fn rfc3339(ms: i64) -> String {
    flightdeck_core::clock::format_rfc3339_millis(ms)
}

/// The mission as an in-toto Statement v1 (https://in-toto.io/Statement/v1) whose subject is
/// the published patch and commit, with an SLSA Provenance v1 predicate
/// (https://slsa.dev/provenance/v1): what went in (base commit, template, policy, prompts,
/// model pins), how it ran (models served, workspace, approvals) and the timeline's head.
fn intoto_statement(
    state: &flightdeck_core::MissionState,
    events: &[flightdeck_core::StoredEvent],
) -> Result<serde_json::Value, CliError> {
    use flightdeck_core::EventKind;
    let created = state.created.as_ref().ok_or_else(|| {
        CliError::bad_input(format!("mission {} has no mission.created", state.id), None)
    })?;
    let published = state.published.as_ref().ok_or_else(|| {
        CliError::bad_input(
            format!(
                "mission {} published nothing ({}), so there is no subject to attest",
                state.id,
                state.status.as_str()
            ),
            Some("`--format jsonl` exports the timeline of any mission".to_string()),
        )
    })?;
    let mut prompts = serde_json::Map::new();
    let mut pins = Vec::new();
    for event in events {
        if let Ok(EventKind::StepStarted(started)) = event.kind() {
            if let (Some(role), Some(prompt)) = (&started.role, &started.system_prompt) {
                prompts.insert(role.clone(), json!(prompt.to_string()));
            }
            for model in started.models {
                if !pins.contains(&model) {
                    pins.push(model);
                }
            }
        }
    }
    let served: Vec<_> = state
        .ledger
        .by_model
        .iter()
        .map(|(model, entry)| {
            json!({
                "model": model,
                "served": entry.served,
                "calls": entry.calls,
                "failed_attempts": entry.failed,
                "cost_usd": entry.cost_usd,
            })
        })
        .collect();
    let approvals: Vec<_> = state
        .approvals
        .values()
        .flat_map(|approval| {
            approval.votes.iter().map(move |vote| {
                // The subject of a vote is the diff it was given for.
                let diff = &vote.decided.diff_hash;
                json!({
                    "name": format!("approval/{}", approval.request.approval_id),
                    "digest": { "sha256": diff.strip_prefix("sha256:").unwrap_or(diff) },
                    "annotations": {
                        "gate": approval.request.gate,
                        "by": vote.decided.by,
                        "decision": vote.decided.decision,
                        "at": rfc3339(vote.at_ms),
                        "channel": vote.decided.channel,
                        "diff_hash": vote.decided.diff_hash,
                        "policy_hash": vote.decided.policy_hash.to_string(),
                    }
                })
            })
        })
        .collect();
    let workspace = state.workspace.as_ref().map(|w| {
        json!({
            "runtime": w.runtime,
            "sandbox": w.sandbox,
            "network": w.network,
            "image": w.image,
            "image_digest": w.image_digest,
            "toolchain": w.toolchain,
        })
    });
    let head = events.last().map(|e| e.hash.clone()).unwrap_or_default();
    let mut dependencies = vec![
        json!({
            "uri": format!("git+file://{}", created.repo),
            "name": "base",
            "digest": { "gitCommit": created.base_commit },
            "annotations": { "ref": created.base_ref },
        }),
        json!({
            "name": format!("template/{}", created.template),
            "digest": digest_set(&created.template_hash),
        }),
        json!({ "name": "policy", "digest": digest_set(&created.policy_hash) }),
    ];
    if let Some(image) = state
        .workspace
        .as_ref()
        .and_then(|w| w.image_digest.clone())
    {
        let hex = image.strip_prefix("sha256:").unwrap_or(&image).to_string();
        dependencies.push(json!({ "name": "workspace-image", "digest": { "sha256": hex } }));
    }
    let mut byproducts = vec![json!({
        "name": "timeline",
        "digest": { "sha256": head },
        "annotations": { "events": events.len(), "mission": state.id },
    })];
    byproducts.extend(approvals);
    byproducts.push(json!({
        "name": "pr-description",
        "digest": digest_set(&published.pr_description),
    }));
    Ok(json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [
            {
                "name": format!("{}.patch", published.branch),
                "digest": digest_set(&published.patch),
            },
            {
                "name": published.branch,
                "digest": { "gitCommit": published.commit },
            }
        ],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": "https://flightdeck.dev/mission/v1",
                "externalParameters": {
                    "template": created.template,
                    "params": created.params,
                    "requested_by": created.requested_by,
                    "base_ref": created.base_ref,
                },
                "internalParameters": {
                    "template_hash": created.template_hash.to_string(),
                    "policy_hash": created.policy_hash.to_string(),
                    "prompt_hashes": prompts,
                    "model_pins": pins,
                    "models_served": served,
                    "workspace": workspace,
                    "budget": created.budget,
                    "forked_from": state.forked.as_ref().map(|f| json!({"mission": f.origin, "at_seq": f.at_seq})),
                },
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {
                    "id": "https://flightdeck.dev/engine",
                    "version": { "flightdeck": created.engine_version },
                },
                "metadata": {
                    "invocationId": state.id,
                    "startedOn": rfc3339(state.first_at_ms),
                    "finishedOn": rfc3339(state.last_at_ms),
                },
                "byproducts": byproducts,
            }
        }
    }))
}
