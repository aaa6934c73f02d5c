//! `audit verify` over what is actually stored: every hash recomputed, every link checked,
//! and the stored data text required to be exactly its canonical form (so that a change that
//! parses to the same JSON, such as added whitespace, is caught too).

use flightdeck_core::chain::verify_chain;
use flightdeck_core::jcs::canonicalize;

use flightdeck_core::StoredEvent;

use crate::{EventStore, RawEvent, StoreError};

/// The first thing wrong with a stored timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyFailure {
    pub seq: u64,
    pub reason: String,
}

/// Verifies `mission`'s stored chain. `Ok(Ok((head_hash, events)))` when it holds.
pub async fn verify_mission(
    store: &dyn EventStore,
    mission: &str,
) -> Result<Result<(String, u64), VerifyFailure>, StoreError> {
    Ok(verify_mission_events(store, mission)
        .await?
        .map(|(head, events)| (head, events.len() as u64)))
}

/// [`verify_mission`], returning the verified events too, so a caller that checks more (the
/// artifacts they reference) reads the timeline once.
pub async fn verify_mission_events(
    store: &dyn EventStore,
    mission: &str,
) -> Result<Result<(String, Vec<StoredEvent>), VerifyFailure>, StoreError> {
    let raw = store.raw_events(mission).await?;
    let count = raw.len() as u64;
    let mut events = Vec::with_capacity(raw.len());
    for event in raw {
        // Parsed once: checked for canonical form, then kept.
        let data = match check_canonical(&event) {
            Ok(data) => data,
            Err(failure) => return Ok(Err(failure)),
        };
        events.push(StoredEvent {
            at: flightdeck_core::clock::format_rfc3339_millis(event.at_ms),
            mission: event.mission,
            seq: event.seq,
            event_type: event.event_type,
            data,
            prev_hash: event.prev_hash,
            hash: event.hash,
        });
    }
    let head = match verify_chain(mission, &events) {
        Ok(head) => head,
        Err(e) => {
            return Ok(Err(VerifyFailure {
                seq: e.seq,
                reason: e.reason,
            }))
        }
    };
    // The mission row must agree with the chain, or someone cut the timeline short.
    if let Some(row) = store.mission(mission).await? {
        if row.last_seq != count || row.head_hash != head {
            return Ok(Err(VerifyFailure {
                seq: count.min(row.last_seq) + 1,
                reason: format!(
                    "the mission row records {} events ending in {}, the timeline has {count} ending in {head}",
                    row.last_seq, row.head_hash
                ),
            }));
        }
    }
    Ok(Ok((head, events)))
}

fn check_canonical(event: &RawEvent) -> Result<serde_json::Value, VerifyFailure> {
    let fail = |reason: String| VerifyFailure {
        seq: event.seq,
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_str(&event.data).map_err(|e| fail(format!("data is not JSON: {e}")))?;
    let canonical = canonicalize(&value).map_err(|e| fail(e.to_string()))?;
    if canonical != event.data {
        return Err(fail(
            "data is not in its canonical (JCS) form: it was edited".to_string(),
        ));
    }
    Ok(value)
}
