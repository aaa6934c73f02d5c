//! The SQLite store's own promises: refusal of foreign files, tamper evidence (any byte
//! changed in the file behind the store's back, with the sqlite3 CLI, is caught), reading a
//! long timeline through a read-only store; and the file artifact store. What every backend
//! promises (appends, the chain, concurrency, leases, ...) is checked in conformance.rs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use flightdeck_core::chain::verify_chain;
use flightdeck_store::{
    verify_mission, AppendRequest, ArtifactStore, EventStore, FsArtifactStore, NewEvent,
    Projection, SqliteStore,
};
use proptest::prelude::*;
use serde_json::json;

fn event(i: u64) -> NewEvent {
    NewEvent {
        at_ms: 1_795_000_000_000 + i as i64,
        event_type: if i == 0 {
            "mission.created".into()
        } else {
            "note".into()
        },
        data: json!({"i": i, "text": format!("event {i} \u{e9}\n"), "nested": {"b": [1.5, null], "a": true}}),
    }
}

fn request(mission: &str, expected_seq: u64, events: Vec<NewEvent>) -> AppendRequest {
    AppendRequest {
        mission: mission.into(),
        expected_seq,
        events,
        projection: Projection {
            status: "running".into(),
            template: "t".into(),
            summary: json!({"id": mission}),
            items: Vec::new(),
            columns: flightdeck_store::ProjectionColumns::default(),
        },
        consumes: Vec::new(),
        fence: None,
    }
}

#[tokio::test]
async fn foreign_files_are_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.db");
    std::fs::write(&text, "hello, this is not a database at all").unwrap();
    let other = dir.path().join("other.db");
    let status = std::process::Command::new("sqlite3")
        .arg(&other)
        .arg("CREATE TABLE customers (id INTEGER);")
        .status();
    for (path, reason) in [
        (&text, "not a SQLite database"),
        (&other, "other tables: customers"),
    ] {
        if path == &other && !status.as_ref().is_ok_and(|s| s.success()) {
            continue; // no sqlite3 CLI to make the foreign database with
        }
        let before = std::fs::read(path).unwrap();
        let err = SqliteStore::open(path).await.unwrap_err();
        assert!(err.to_string().contains(reason), "{err}");
        assert_eq!(
            std::fs::read(path).unwrap(),
            before,
            "{} was modified",
            path.display()
        );
    }
    let err = SqliteStore::open(dir.path()).await.unwrap_err();
    assert!(err.to_string().contains("directory"), "{err}");
}

#[tokio::test]
async fn artifacts_are_content_addressed_and_checked_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let artifacts = FsArtifactStore::new(dir.path().join("artifacts"));
    let digest = artifacts.put(b"patch bytes").await.unwrap();
    assert_eq!(artifacts.put(b"patch bytes").await.unwrap(), digest);
    assert_eq!(artifacts.get(&digest).await.unwrap(), b"patch bytes");
    let path = artifacts.local_path(&digest).unwrap();
    std::fs::write(&path, b"patch bytez").unwrap();
    let err = artifacts.get(&digest).await.unwrap_err();
    assert!(err.to_string().contains("corrupt"), "{err}");
}

/// Columns of the events table a tamperer could edit.
const COLUMNS: [&str; 6] = ["seq", "at_ms", "type", "data", "prev_hash", "hash"];

/// Flips one byte of one column of one stored event with the sqlite3 CLI (dropping the
/// append-only trigger first, as a tamperer would).
fn tamper(db: &std::path::Path, seq: u64, column: &str, offset: usize, xor: u8) -> bool {
    let read = std::process::Command::new("sqlite3")
        .arg(db)
        .arg(format!(
            "SELECT CAST({column} AS TEXT) FROM events WHERE mission = 'm-a' AND seq = {seq};"
        ))
        .output()
        .unwrap();
    let mut value = read.stdout;
    while value.last() == Some(&b'\n') {
        value.pop();
    }
    if value.is_empty() {
        return false;
    }
    let at = offset % value.len();
    value[at] ^= xor;
    let Ok(text) = String::from_utf8(value) else {
        return false;
    };
    if text.contains('\0') {
        return false; // a NUL cannot be passed to the sqlite3 CLI: nothing written
    }
    let literal = match column {
        "seq" | "at_ms" => match text.parse::<i64>() {
            Ok(n) => n.to_string(),
            Err(_) => return false,
        },
        _ => format!("'{}'", text.replace('\'', "''")),
    };
    let sql = format!(
        "DROP TRIGGER IF EXISTS events_are_append_only_update; UPDATE events SET {column} = {literal} WHERE mission = 'm-a' AND seq = {seq};"
    );
    std::process::Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .status()
        .unwrap()
        .success()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any single-byte change anywhere in a stored event is caught by `verify_mission`.
    #[test]
    fn any_single_byte_change_is_caught(
        seq in 1u64..=5,
        column in 0usize..COLUMNS.len(),
        offset in any::<usize>(),
        bit in 0u8..7,
    ) {
        if std::process::Command::new("sqlite3").arg("-version").output().is_err() {
            return Ok(()); // needs the sqlite3 CLI to edit the file behind the store's back
        }
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("flightdeck.db");
        runtime.block_on(async {
            let store = SqliteStore::open(&db).await.unwrap();
            store.append(request("m-a", 0, (0..5).map(event).collect())).await.unwrap();
            prop_assert!(verify_mission(&store, "m-a").await.unwrap().is_ok());
            Ok(())
        })?;
        if !tamper(&db, seq, COLUMNS[column], offset, 1 << bit) {
            return Ok(()); // the flip made text that is not UTF-8 or a number: nothing written
        }
        runtime.block_on(async {
            let store = SqliteStore::open(&db).await.unwrap();
            let verdict = verify_mission(&store, "m-a").await.unwrap();
            prop_assert!(verdict.is_err(), "{} of seq {seq} changed but verify passed", COLUMNS[column]);
            Ok(())
        })?;
    }
}

/// A long timeline read through a read-only store (reading in two halves at once, from a
/// file no writer has open): whole, in order, without a gap or a repeat, from any starting
/// seq. (Through a read-write store, on every backend: conformance.rs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_timeline_reads_whole_and_in_order_through_a_read_only_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flightdeck.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let n = 20_000u64;
    let mut seq = 0;
    while seq < n {
        store
            .append(request("m-a", seq, (seq..seq + 1_000).map(event).collect()))
            .await
            .unwrap();
        seq += 1_000;
    }
    let all = store.events("m-a", 0).await.unwrap();
    assert_eq!(all.len() as u64, n);
    verify_chain("m-a", &all).unwrap();
    drop(store);
    let read_only = SqliteStore::open_read_only(&path).await.unwrap();
    for after in [0, 1, 4_095, 9_999, 11_808, 19_999, 20_000, 30_000] {
        let events = read_only.events("m-a", after).await.unwrap();
        assert_eq!(
            events.len() as u64,
            n.saturating_sub(after),
            "after {after}"
        );
        assert!(
            events.iter().zip(after + 1..).all(|(e, s)| e.seq == s),
            "after {after}"
        );
        assert!(events[..] == all[after.min(n) as usize..], "after {after}");
    }
}

/// A database of the release before the typed columns: opening it read-write fills them
/// from each mission's summary, so its missions are claimed (and its expiries fired) like
/// new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_before_the_typed_columns_gets_them_from_its_summaries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flightdeck.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let mut running = request("m-running", 0, vec![event(0)]);
    running.projection.summary =
        json!({"id": "m-running", "requested_by": "alice", "cost": {"total_usd": 0.25}});
    store.append(running).await.unwrap();
    let mut parked = request("m-parked", 0, vec![event(0)]);
    parked.projection.status = "awaiting_approval".into();
    parked.projection.summary = json!({"id": "m-parked", "pending_approvals": [
        {"approval_id": "a1", "expires_at": "2026-12-07T10:00:00.500Z"},
        {"approval_id": "a2", "expires_at": null}]});
    store.append(parked).await.unwrap();
    // Stopped by ctrl-c (its last event is the interruption): waits for `resume`.
    let mut interrupted = event(1);
    interrupted.event_type = "mission.interrupted".into();
    store
        .append(request("m-halted", 0, vec![event(0), interrupted]))
        .await
        .unwrap();
    // Parked, and every approval granted since: ready to go on.
    let mut granted = request("m-granted", 0, vec![event(0)]);
    granted.projection.status = "awaiting_approval".into();
    granted.projection.summary = json!({"id": "m-granted", "pending_approvals": []});
    store.append(granted).await.unwrap();
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "DROP INDEX missions_ready; DROP INDEX missions_deadline; DROP INDEX missions_leased; DROP INDEX missions_by_requester;
         ALTER TABLE missions DROP COLUMN requested_by; ALTER TABLE missions DROP COLUMN team; ALTER TABLE missions DROP COLUMN ready;
         ALTER TABLE missions DROP COLUMN waiting_for;
         ALTER TABLE missions DROP COLUMN next_deadline_ms;
         ALTER TABLE missions DROP COLUMN cost_usd; DROP TABLE feed;
         DELETE FROM _sqlx_migrations WHERE version >= 7;",
    )
    .unwrap();
    drop(conn);
    let store = SqliteStore::open(&path).await.unwrap();
    // The global feed starts with each mission once, at its last event.
    let feed = store.feed(0, 10).await.unwrap();
    let fed: Vec<_> = feed
        .iter()
        .map(|e| (e.mission.as_str(), e.last_seq))
        .collect();
    // (By the time of their last events, then by id.)
    assert_eq!(
        fed,
        [
            ("m-granted", 1),
            ("m-parked", 1),
            ("m-running", 1),
            ("m-halted", 2)
        ]
    );
    assert_eq!(store.feed_head().await.unwrap(), feed[3].position);
    let expiry = 1_796_637_600_500; // 2026-12-07T10:00:00.500Z
    assert_eq!(store.next_deadline_ms().await.unwrap(), Some(expiry));
    let claimed = store
        .claim_runnable(flightdeck_store::ClaimRequest {
            owner: "w".into(),
            now_ms: expiry - 1,
            ttl_ms: 1_000,
            limit: 10,
            steal_from: Vec::new(),
            skip: Vec::new(),
        })
        .await
        .unwrap();
    let ids: Vec<_> = claimed.iter().map(|c| c.mission.as_str()).collect();
    assert_eq!(
        ids,
        ["m-granted", "m-running"],
        "running or granted: ready; parked: not yet due; halted: waits for resume"
    );
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let (who, cost, waiting): (Option<String>, f64, Option<String>) = conn
        .query_row(
            "SELECT requested_by, cost_usd, (SELECT waiting_for FROM missions WHERE id = 'm-parked')
             FROM missions WHERE id = 'm-running'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .unwrap();
    assert_eq!(who.as_deref(), Some("alice"));
    assert!((cost - 0.25).abs() < 1e-9);
    assert_eq!(waiting.as_deref(), Some("approval"));
}
