//! Sealing events into the hash chain and verifying a chain. The store seals on append;
//! `audit verify` verifies.

use serde_json::Value;

use crate::clock::{format_rfc3339_millis, parse_rfc3339_millis};
use crate::event::{EventKind, StoredEvent};
use crate::hash::{event_hash, GENESIS_HASH};
use crate::jcs::JcsError;

/// Builds the stored form of an event: `at` laid out canonically and the hash computed.
pub fn seal(
    mission: &str,
    seq: u64,
    at_ms: i64,
    prev_hash: &str,
    event_type: &str,
    data: Value,
) -> Result<StoredEvent, JcsError> {
    let at = format_rfc3339_millis(at_ms);
    let hash = event_hash(prev_hash, mission, seq, &at, event_type, &data)?;
    Ok(StoredEvent {
        mission: mission.to_string(),
        seq,
        at,
        event_type: event_type.to_string(),
        data,
        prev_hash: prev_hash.to_string(),
        hash,
    })
}

/// [`seal`] for a typed event.
pub fn seal_kind(
    mission: &str,
    seq: u64,
    at_ms: i64,
    prev_hash: &str,
    kind: &EventKind,
) -> Result<StoredEvent, JcsError> {
    seal(
        mission,
        seq,
        at_ms,
        prev_hash,
        kind.type_name(),
        kind.data(),
    )
}

/// The first place a timeline's chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("seq {seq}: {reason}")]
pub struct ChainError {
    pub seq: u64,
    pub reason: String,
}

/// Recomputes every hash of `events` (a whole timeline, in order) and checks every link.
/// Returns the head hash.
pub fn verify_chain(mission: &str, events: &[StoredEvent]) -> Result<String, ChainError> {
    let mut prev = GENESIS_HASH.to_string();
    for (i, event) in events.iter().enumerate() {
        let expected_seq = i as u64 + 1;
        let fail = |reason: String| ChainError {
            seq: event.seq,
            reason,
        };
        if event.seq != expected_seq {
            return Err(ChainError {
                seq: expected_seq,
                reason: format!("expected seq {expected_seq}, found seq {}", event.seq),
            });
        }
        if event.mission != mission {
            return Err(fail(format!("belongs to mission `{}`", event.mission)));
        }
        match parse_rfc3339_millis(&event.at) {
            Some(ms) if format_rfc3339_millis(ms) == event.at => {}
            _ => {
                return Err(fail(format!(
                    "`at` is not a canonical RFC 3339 time: `{}`",
                    event.at
                )))
            }
        }
        if event.prev_hash != prev {
            return Err(fail(
                "prev_hash does not match the previous event's hash".to_string(),
            ));
        }
        let recomputed = event_hash(
            &prev,
            mission,
            event.seq,
            &event.at,
            &event.event_type,
            &event.data,
        )
        .map_err(|e| fail(e.to_string()))?;
        if recomputed != event.hash {
            return Err(fail(format!(
                "hash mismatch: stored {}, recomputed {recomputed}",
                event.hash
            )));
        }
        prev = recomputed;
    }
    Ok(prev)
}
