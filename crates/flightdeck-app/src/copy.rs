//! `flightdeck store copy --to URL`: moves an installation's timelines into another store
//! (a SQLite data directory into PostgreSQL) with every hash intact.
//!
//! A timeline is re-appended event by event: the chain is a function of the mission id, the
//! seqs, the times, the types and the data, so the copy's hashes are the original's. Each
//! event's hash is recomputed and compared before anything of its mission is written, and
//! each mission is one append (all of it or nothing). So an interrupted copy is run again:
//! what was copied is found with the same head and skipped; a mission the target has with
//! another head is refused, never overwritten.
//!
//! Also copied: every artifact the events reference (and those JSON artifacts reference in
//! turn), the pending inputs, and the API tokens (as their hashes). Leases are not: a copy
//! is made while no driver runs. Nor are feed cursors (`EventStore::feed_cursor`): they are
//! positions in the source's feed, which mean nothing in the target's (its appends get
//! positions of their own), so a reader of the target starts afresh there.

use std::collections::{BTreeSet, HashSet};

use flightdeck_core::{Digest, StoredEvent};
use flightdeck_store::{
    ArtifactStore, EventStore, InputState, NewEvent, NewInput, Projection, ProjectionColumns,
    ProjectionItem,
};
use serde::Serialize;
use serde_json::Value;

use crate::error::AppError;

/// What a copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CopyReport {
    /// Missions written to the target.
    pub copied: Vec<String>,
    /// Missions the target already had, with the same head.
    pub already_there: Vec<String>,
    pub events: u64,
    pub artifacts: u64,
    pub inputs: u64,
    pub tokens: u64,
}

/// What one mission's copy did, as it happens (for progress).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Copied {
    Mission { id: String, events: u64 },
    AlreadyThere { id: String },
}

/// The digests (`sha256:<64 hex>`) named anywhere in `value`.
fn digests_in(value: &Value, found: &mut BTreeSet<String>) {
    match value {
        Value::String(s)
            if s.len() == 71
                && s.starts_with("sha256:")
                && s.bytes().skip(7).all(|b| b.is_ascii_hexdigit()) =>
        {
            found.insert(s.clone());
        }
        Value::Array(items) => items.iter().for_each(|v| digests_in(v, found)),
        Value::Object(map) => map.values().for_each(|v| digests_in(v, found)),
        _ => {}
    }
}

/// Copies the artifacts `digests` name (and those JSON artifacts name in turn) that the
/// target does not have; returns how many were written. A digest the source does not have
/// is not an artifact (a diff's hash, say) and is passed over.
async fn copy_artifacts(
    from: &dyn ArtifactStore,
    to: &dyn ArtifactStore,
    digests: BTreeSet<String>,
    seen: &mut HashSet<String>,
) -> Result<u64, AppError> {
    let mut written = 0;
    let mut queue: Vec<String> = digests.into_iter().collect();
    while let Some(text) = queue.pop() {
        if !seen.insert(text.clone()) {
            continue;
        }
        let Ok(digest) = text.parse::<Digest>() else {
            continue;
        };
        let bytes = match from.get(&digest).await {
            Ok(bytes) => bytes,
            Err(flightdeck_store::ArtifactError::NotFound(_)) => continue,
            Err(e) => return Err(AppError::failed(format!("reading artifact {text}: {e}"))),
        };
        if let Ok(json) = serde_json::from_slice::<Value>(&bytes) {
            let mut inner = BTreeSet::new();
            digests_in(&json, &mut inner);
            queue.extend(inner.into_iter().filter(|d| !seen.contains(d)));
        }
        if !to
            .contains(&digest)
            .await
            .map_err(|e| AppError::failed(format!("the target's artifacts: {e}")))?
        {
            to.put(&bytes)
                .await
                .map_err(|e| AppError::failed(format!("writing artifact {text}: {e}")))?;
            written += 1;
        }
    }
    Ok(written)
}

/// The projection the engine writes for a summary read back from a store: the `steps` list
/// as items (one per step), the summary without it.
fn projection_of(
    status: &str,
    template: &str,
    summary: &Value,
    columns: ProjectionColumns,
) -> Projection {
    let mut summary = summary.clone();
    let mut items = Vec::new();
    if let Some(object) = summary.as_object_mut() {
        if let Some(Value::Array(steps)) = object.get(flightdeck_core::views::STEPS_LIST) {
            items = steps
                .iter()
                .enumerate()
                .map(|(position, value)| ProjectionItem {
                    list: flightdeck_core::views::STEPS_LIST.to_string(),
                    position: position as u64,
                    value: value.clone(),
                })
                .collect();
        }
        object.insert(
            flightdeck_core::views::STEPS_LIST.to_string(),
            Value::Array(Vec::new()),
        );
    }
    Projection {
        status: status.to_string(),
        template: template.to_string(),
        summary,
        items,
        columns,
    }
}

/// Posts to `to` the pending inputs of `mission` in `from` that `to` does not have pending
/// (the same kind, payload and time); returns how many.
async fn copy_pending_inputs(
    from: &dyn EventStore,
    to: &dyn EventStore,
    mission: &str,
) -> Result<u64, AppError> {
    let there = to.pending_inputs(mission).await?;
    let mut posted = 0;
    for input in from.pending_inputs(mission).await? {
        let copied = there.iter().any(|t| {
            t.kind == input.kind
                && t.payload == input.payload
                && t.posted_at_ms == input.posted_at_ms
        });
        if input.state != InputState::Pending || copied {
            continue;
        }
        to.post_input(NewInput {
            mission: input.mission,
            kind: input.kind,
            payload: input.payload,
            posted_at_ms: input.posted_at_ms,
        })
        .await?;
        posted += 1;
    }
    Ok(posted)
}

/// Copies every mission of `from` into `to` (see the module doc).
pub async fn copy_store(
    from: (&dyn EventStore, &dyn ArtifactStore),
    to: (&dyn EventStore, &dyn ArtifactStore),
    mut progress: impl FnMut(&Copied),
) -> Result<CopyReport, AppError> {
    let (from_store, from_artifacts) = from;
    let (to_store, to_artifacts) = to;
    let mut report = CopyReport::default();
    let mut seen_artifacts = HashSet::new();
    let mut rows = from_store.missions(u32::MAX).await?;
    // Oldest first: the copy lists as the original does, and a rerun meets them in order.
    rows.reverse();
    for row in rows {
        let raw = from_store.raw_events(&row.id).await?;
        if let Some(there) = to_store.mission(&row.id).await? {
            if there.head_hash == row.head_hash && there.last_seq == row.last_seq {
                // A copy cut off after the mission's append may not have posted its inputs.
                report.inputs += copy_pending_inputs(from_store, to_store, &row.id).await?;
                report.already_there.push(row.id.clone());
                progress(&Copied::AlreadyThere { id: row.id.clone() });
                continue;
            }
            return Err(AppError::new(
                crate::error::ErrorKind::Conflict,
                format!(
                    "mission {} is already in the target with another timeline ({} events, head {}; here {} events, head {})",
                    row.id, there.last_seq, there.head_hash, row.last_seq, row.head_hash
                ),
                Some("copy into an empty database, or remove that mission from the target first".to_string()),
            ));
        }
        // Every event re-sealed and checked before anything of the mission is written.
        let mut events = Vec::with_capacity(raw.len());
        let mut digests = BTreeSet::new();
        let mut prev = flightdeck_core::hash::GENESIS_HASH.to_string();
        let mut sealed_events = Vec::with_capacity(raw.len());
        for event in &raw {
            let data: Value = serde_json::from_str(&event.data).map_err(|e| {
                AppError::failed(format!(
                    "mission {} event {}: its data is not JSON: {e}",
                    row.id, event.seq
                ))
            })?;
            let sealed: StoredEvent = flightdeck_core::chain::seal(
                &row.id,
                event.seq,
                event.at_ms,
                &prev,
                &event.event_type,
                data.clone(),
            )
            .map_err(|e| {
                AppError::failed(format!("mission {} event {}: {e}", row.id, event.seq))
            })?;
            if sealed.hash != event.hash || event.prev_hash != prev {
                return Err(AppError::failed(format!(
                    "mission {} event {} does not verify here, so it is not copied (run `flightdeck audit verify {}`)",
                    row.id, event.seq, row.id
                )));
            }
            prev = sealed.hash.clone();
            sealed_events.push(sealed);
            digests_in(&data, &mut digests);
            events.push(NewEvent {
                at_ms: event.at_ms,
                event_type: event.event_type.clone(),
                data,
            });
        }
        if prev != row.head_hash {
            return Err(AppError::failed(format!(
                "mission {} changed while it was read (its head is not its last event's): copy while no driver runs",
                row.id
            )));
        }
        // Artifacts first: an event is never there before what it references.
        report.artifacts +=
            copy_artifacts(from_artifacts, to_artifacts, digests, &mut seen_artifacts).await?;
        if events.is_empty() {
            continue;
        }
        let stored = to_store
            .append(flightdeck_store::AppendRequest {
                mission: row.id.clone(),
                expected_seq: 0,
                events,
                projection: projection_of(
                    &row.status,
                    &row.template,
                    &row.summary,
                    // The typed columns from the timeline itself; one that does not fold
                    // cannot be driven anyway.
                    flightdeck_core::MissionState::fold(&row.id, &sealed_events)
                        .map(|state| flightdeck_engine::projection_columns(&state, None))
                        .unwrap_or_default(),
                ),
                consumes: Vec::new(),
                fence: None,
            })
            .await?;
        if stored.last().map(|e| e.hash.as_str()) != Some(row.head_hash.as_str()) {
            return Err(AppError::failed(format!(
                "mission {}: the target recorded another head than the original's",
                row.id
            )));
        }
        report.inputs += copy_pending_inputs(from_store, to_store, &row.id).await?;
        report.events += stored.len() as u64;
        report.copied.push(row.id.clone());
        progress(&Copied::Mission {
            id: row.id.clone(),
            events: stored.len() as u64,
        });
    }
    let there: std::collections::HashMap<String, flightdeck_store::TokenRow> = to_store
        .tokens()
        .await?
        .into_iter()
        .map(|t| (t.hash.clone(), t))
        .collect();
    for token in from_store.tokens().await? {
        if let Some(copy) = there.get(&token.hash) {
            // Revoked here since the last copy (or before a copy that was cut off): revoked
            // there too.
            if let (Some(at), None) = (token.revoked_at_ms, copy.revoked_at_ms) {
                to_store.revoke_token(&copy.id, at).await?;
            }
            continue;
        }
        let (revoked, used) = (token.revoked_at_ms, token.last_used_ms);
        let id = token.id.clone();
        to_store.create_token(token).await?;
        if let Some(at) = revoked {
            to_store.revoke_token(&id, at).await?;
        }
        if let Some(at) = used {
            to_store.touch_token(&id, at).await?;
        }
        report.tokens += 1;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn digests_are_found_anywhere_in_the_data_and_nothing_else_is() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let mut found = BTreeSet::new();
        digests_in(
            &json!({"a": [1, {"b": digest}], "c": "sha256:short", "d": format!("{digest}x")}),
            &mut found,
        );
        assert_eq!(found.into_iter().collect::<Vec<_>>(), vec![digest]);
    }

    #[test]
    fn the_steps_list_becomes_items() {
        let projection = projection_of(
            "running",
            "t",
            &json!({"id": "m", "steps": [{"i": 0}, {"i": 1}]}),
            ProjectionColumns::default(),
        );
        assert_eq!(projection.summary, json!({"id": "m", "steps": []}));
        assert_eq!(projection.items.len(), 2);
        assert_eq!(projection.items[1].position, 1);
    }
}
