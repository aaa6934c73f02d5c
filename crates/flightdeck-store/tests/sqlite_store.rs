//! The SQLite store against its promises: gapless seqs, the contract's hash chain, optimistic
//! concurrency, group commit under concurrency, refusal of foreign files, and tamper evidence.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use std::sync::Arc;

use flightdeck_core::chain::verify_chain;
use flightdeck_store::{
    verify_mission, AppendRequest, ArtifactStore, EventStore, FsArtifactStore, NewEvent,
    Projection, ProjectionItem, SqliteStore, StoreError,
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
        },
        consumes: Vec::new(),
    }
}

async fn open(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(&dir.path().join("flightdeck.db"))
        .await
        .unwrap()
}

#[tokio::test]
async fn appends_are_gapless_chained_and_projected() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let first = store
        .append(request("m-a", 0, vec![event(0), event(1)]))
        .await
        .unwrap();
    let second = store
        .append(request("m-a", 2, vec![event(2)]))
        .await
        .unwrap();
    assert_eq!(
        first
            .iter()
            .chain(&second)
            .map(|e| e.seq)
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let events = store.events("m-a", 0).await.unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0].prev_hash, "0".repeat(64));
    assert_eq!(events[0].at, "2026-11-18T11:06:40.000Z");
    let head = verify_chain("m-a", &events).unwrap();
    let row = store.mission("m-a").await.unwrap().unwrap();
    assert_eq!((row.last_seq, row.head_hash.as_str()), (3, head.as_str()));
    assert_eq!(row.summary["events"], 3);
    assert_eq!(row.summary["head_hash"], head);
    assert_eq!(store.events("m-a", 2).await.unwrap().len(), 1);
    assert_eq!(verify_mission(&store, "m-a").await.unwrap(), Ok((head, 3)));
}

fn item(position: u64, status: &str) -> ProjectionItem {
    ProjectionItem {
        list: "steps".into(),
        position,
        value: json!({"index": position, "status": status}),
    }
}

/// Lists kept item by item: an append upserts only the items it names, and reading puts
/// each list back into the summary in position order (a stale or failed append writes none).
#[tokio::test]
async fn projection_items_are_kept_one_by_one_and_read_back_into_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let mut first = request("m-a", 0, vec![event(0)]);
    first.projection.summary = json!({"id": "m-a", "steps": []});
    first.projection.items = vec![item(10, "running"), item(2, "running")];
    store.append(first).await.unwrap();
    let mut second = request("m-a", 1, vec![event(1)]);
    second.projection.summary = json!({"id": "m-a", "steps": [], "status": "second"});
    second.projection.items = vec![item(10, "succeeded")];
    store.append(second).await.unwrap();
    let mut stale = request("m-a", 1, vec![event(2)]);
    stale.projection.items = vec![item(2, "stale")];
    assert!(store.append(stale).await.is_err());
    // Another mission's items stay its own; a mission without items keeps its summary's list.
    let mut other = request("m-b", 0, vec![event(0)]);
    other.projection.summary = json!({"id": "m-b", "steps": [{"index": 0}]});
    store.append(other).await.unwrap();

    let row = store.mission("m-a").await.unwrap().unwrap();
    assert_eq!(row.summary["status"], "second");
    assert_eq!(
        row.summary["steps"],
        json!([{"index": 2, "status": "running"}, {"index": 10, "status": "succeeded"}])
    );
    let rows = store.missions(10).await.unwrap();
    let listed: Vec<_> = rows
        .iter()
        .map(|r| (r.id.as_str(), r.summary["steps"].clone()))
        .collect();
    assert!(listed.contains(&(
        "m-a",
        json!([{"index": 2, "status": "running"}, {"index": 10, "status": "succeeded"}])
    )));
    assert!(listed.contains(&("m-b", json!([{"index": 0}]))));
    // A read-only store reads them the same way.
    drop(store);
    let ro = SqliteStore::open_read_only(&dir.path().join("flightdeck.db"))
        .await
        .unwrap();
    let row = ro.mission("m-a").await.unwrap().unwrap();
    assert_eq!(row.summary["steps"][1]["status"], "succeeded");
}

#[tokio::test]
async fn a_stale_writer_is_refused_and_leaves_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    store
        .append(request("m-a", 0, vec![event(0)]))
        .await
        .unwrap();
    let err = store
        .append(request("m-a", 0, vec![event(1)]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                expected: 0,
                actual: 1,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(store.events("m-a", 0).await.unwrap().len(), 1);
    assert!(matches!(
        store.append(request("m-a", 1, vec![])).await.unwrap_err(),
        StoreError::EmptyAppend(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appenders_on_one_mission_never_both_win() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir).await);
    store
        .append(request("m-a", 0, vec![event(0)]))
        .await
        .unwrap();
    // 16 writers all believe the mission is at seq 1: exactly one may append.
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.append(request("m-a", 1, vec![event(i + 1)])).await })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        if t.await.unwrap().is_ok() {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
    let events = store.events("m-a", 0).await.unwrap();
    assert_eq!(events.len(), 2);
    verify_chain("m-a", &events).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_missions_appending_at_once_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir).await);
    let tasks: Vec<_> = (0..32)
        .map(|m| {
            let store = store.clone();
            tokio::spawn(async move {
                let id = format!("m-{m}");
                for seq in 0..20u64 {
                    store
                        .append(request(&id, seq, vec![event(seq)]))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    for m in 0..32 {
        let id = format!("m-{m}");
        let events = store.events(&id, 0).await.unwrap();
        assert_eq!(events.len(), 20);
        verify_chain(&id, &events).unwrap();
    }
    assert_eq!(store.missions(100).await.unwrap().len(), 32);
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
async fn leases_exclude_other_owners_until_expiry_or_steal() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    store
        .append(request("m-a", 0, vec![event(0)]))
        .await
        .unwrap();
    let holder = store
        .acquire_lease("m-a", "w1", 1_000, 500, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(holder.owner, "w1");
    let holder = store
        .acquire_lease("m-a", "w2", 1_200, 500, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(holder.owner, "w1", "w2 may not take a live lease");
    let holder = store
        .acquire_lease("m-a", "w2", 1_200, 500, Some("w1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        holder.owner, "w2",
        "a dead owner's lease may be stolen by name"
    );
    let holder = store
        .acquire_lease("m-a", "w3", 1_800, 500, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(holder.owner, "w3", "an expired lease is free");
    store.release_lease("m-a", "w3").await.unwrap();
    assert!(store.mission("m-a").await.unwrap().unwrap().lease.is_none());
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

/// A long timeline is read in two halves at once: they join in order, without a gap or a
/// repeat, from any starting seq, in a read-write and a read-only store alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_timeline_reads_whole_and_in_order() {
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
    assert!(all.iter().zip(1..).all(|(e, s)| e.seq == s));
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
        assert_eq!(&events[..], &all[after.min(n) as usize..]);
    }
}

/// Processes opening a new database at once (a command run while another starts) all get
/// it migrated once: SQLite's migrations take no lock across processes, so one that finds
/// the schema made under it by another looks again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_opens_of_a_new_database_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..6 {
        let path = dir.path().join(format!("fresh-{round}.db"));
        let opens: Vec<_> = (0..6)
            .map(|_| {
                let path = path.clone();
                tokio::spawn(async move { SqliteStore::open(&path).await })
            })
            .collect();
        for open in opens {
            let store = open
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert!(store.missions(1).await.unwrap().is_empty());
        }
    }
}
