//! `audit verify` and `audit export`.

#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::io::Write;

use flightdeck_app::queries;
use flightdeck_store::anchors::{verify_anchors, AnchorRecord};
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

/// The installation's anchor file, checked on its own.
enum AnchorFile {
    /// Every line holds; the records by mission, in order.
    Holds {
        records: usize,
        head: String,
        signed_by: Option<String>,
        by_mission: BTreeMap<String, Vec<AnchorRecord>>,
    },
    /// There is none (a data directory no mission ever ran in has none either).
    Missing,
    /// The first line that does not hold, and why.
    Broken { line: u64, reason: String },
}

impl AnchorFile {
    fn read(ctx: &Context) -> Result<AnchorFile, CliError> {
        let path = ctx.app.anchor_path();
        let key = ctx.app.signing_key()?.map(|k| k.verifying_key());
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(AnchorFile::Missing),
            Err(e) => {
                return Ok(AnchorFile::Broken {
                    line: 0,
                    reason: format!("{} cannot be read: {e}", path.display()),
                })
            }
        };
        match verify_anchors(&text, key.as_ref()) {
            Ok(records) => {
                let head = records
                    .last()
                    .map(|r| r.hash.clone())
                    .unwrap_or_else(|| flightdeck_core::hash::GENESIS_HASH.to_string());
                let count = records.len();
                let mut by_mission: BTreeMap<String, Vec<AnchorRecord>> = BTreeMap::new();
                for record in records {
                    by_mission
                        .entry(record.mission.clone())
                        .or_default()
                        .push(record);
                }
                Ok(AnchorFile::Holds {
                    records: count,
                    head,
                    signed_by: key.map(|k| flightdeck_store::anchors::key_id(&k)),
                    by_mission,
                })
            }
            Err(broken) => Ok(AnchorFile::Broken {
                line: broken.line,
                reason: broken.reason,
            }),
        }
    }

    /// The anchors of `mission` to check its timeline against; `None` when the file cannot
    /// be trusted (its own failure is reported once, for the file).
    fn of(&self, mission: &str) -> Option<&[AnchorRecord]> {
        match self {
            AnchorFile::Holds { by_mission, .. } => {
                Some(by_mission.get(mission).map_or(&[][..], Vec::as_slice))
            }
            AnchorFile::Missing | AnchorFile::Broken { .. } => None,
        }
    }
}

/// Where `events` (a verified timeline) departs from what the anchor file recorded of it:
/// the first bad seq and why.
fn check_anchors(
    events: &[flightdeck_core::StoredEvent],
    anchored: &[AnchorRecord],
) -> Option<(u64, String)> {
    // A kill between a mission's first append and its anchor leaves it without a creation
    // anchor: its first anchor is then its first park or finish.
    if anchored.is_empty() {
        return Some((
            1,
            "not anchored: the anchor file has no record of this mission (its records were removed, it was made before flightdeck anchored missions, or flightdeck was killed as it was created and it never parked or finished since)".to_string(),
        ));
    }
    let count = events.len() as u64;
    for record in anchored {
        let index = usize::try_from(record.seq).unwrap_or(usize::MAX);
        match index.checked_sub(1).and_then(|i| events.get(i)) {
            None => {
                return Some((
                    count + 1,
                    format!(
                        "truncated: the anchor file (line {}) records seq {} ({} {}) with hash {}; the timeline ends at seq {count}",
                        record.n, record.seq, record.reason.as_str(), record.status, record.head
                    ),
                ))
            }
            Some(event) if event.hash != record.head => {
                return Some((
                    record.seq,
                    format!(
                        "rewritten: seq {} hashes to {}, the anchor file (line {}) records {}",
                        record.seq, event.hash, record.n, record.head
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    None
}

async fn verify_one(
    store: &dyn EventStore,
    artifacts: &dyn ArtifactStore,
    anchors: &AnchorFile,
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
    // The chain holds; the heads anchored outside the store must be in it.
    let count = events.len() as u64;
    if let Some(failure) = anchors.of(mission).and_then(|a| check_anchors(&events, a)) {
        return Ok(Verdict {
            mission: mission.to_string(),
            events: count,
            head_hash: Some(head),
            failure: Some(failure),
        });
    }
    // Every artifact it references must exist and hash to its digest.
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
    // Read before the timelines, so every head it anchors is already stored.
    let anchors = AnchorFile::read(ctx)?;
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
        verdicts.push(
            verify_one(
                reader.store.as_ref(),
                reader.artifacts.as_ref(),
                &anchors,
                id,
            )
            .await?,
        );
    }
    // A mission the anchor file knows and the store does not was deleted.
    if let (None, AnchorFile::Holds { by_mission, .. }) = (mission, &anchors) {
        for (id, records) in by_mission {
            if missions.contains(id) || reader.store.mission(id).await?.is_some() {
                continue;
            }
            let Some(last) = records.last() else { continue };
            verdicts.push(Verdict {
                mission: id.clone(),
                events: 0,
                head_hash: None,
                failure: Some((
                    1,
                    format!(
                        "deleted: the anchor file (line {}) records it at seq {} ({}), the store has no such mission",
                        last.n, last.seq, last.status
                    ),
                )),
            });
        }
    }
    // The file itself: missing while there are missions to anchor, or broken.
    let file_failure = match &anchors {
        AnchorFile::Holds { .. } => None,
        AnchorFile::Missing if missions.is_empty() => None,
        AnchorFile::Missing => Some((
            0,
            format!(
                "{} is missing: nothing anchors these missions outside the database",
                ctx.app.anchor_path().display()
            ),
        )),
        AnchorFile::Broken { line, reason } => Some((*line, reason.clone())),
    };
    let all_ok = file_failure.is_none() && verdicts.iter().all(|v| v.failure.is_none());
    let anchors_json = match &anchors {
        AnchorFile::Holds {
            records,
            head,
            signed_by,
            ..
        } => json!({
            "ok": true,
            "path": ctx.app.anchor_path(),
            "records": records,
            "head": head,
            "signed_by": signed_by,
        }),
        _ => json!({
            "ok": file_failure.is_none(),
            "path": ctx.app.anchor_path(),
            "first_bad_line": file_failure.as_ref().map(|f| f.0),
            "reason": file_failure.as_ref().map(|f| f.1.clone()),
        }),
    };
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
            serde_json::to_string_pretty(
                &json!({"ok": all_ok, "anchors": anchors_json, "missions": list})
            )
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
        match (&anchors, &file_failure) {
            (
                AnchorFile::Holds {
                    records,
                    head,
                    signed_by,
                    ..
                },
                _,
            ) => println!(
                "ok      anchors  {records} records, head {head}{}",
                signed_by
                    .as_ref()
                    .map(|k| format!(", every one signed by key {k}"))
                    .unwrap_or_default()
            ),
            (_, Some((line, reason))) => println!(
                "BROKEN  anchors  {}{}: {reason}",
                ctx.app.anchor_path().display(),
                if *line > 0 {
                    format!(" line {line}")
                } else {
                    String::new()
                }
            ),
            (_, None) => {}
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
            let statement = match ctx.app.signing_key()? {
                Some(key) => super::attest::envelope(&statement, &key),
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
