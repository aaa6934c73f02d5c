//! What every backend of the store promises, written once and checked against each backend
//! (`common::backends`: SQLite, and PostgreSQL on the server `FLIGHTDECK_TEST_DATABASE_URL`
//! names): appends with optimistic concurrency, the hash chain, reading timelines whole and
//! in pages, the projection and its item lists, listings, leases, the inbox, the change feed
//! (through another store on the same database too, as another process would be), API
//! tokens and artifacts. What one backend alone has (SQLite's files, `?mode=ro`, tampering
//! with the sqlite3 CLI, old SQLite schemas, artifacts inline in the SQLite database) is
//! tested in the other files.
//!
//! Each check is an `async fn(Backend)`; `on_every_backend!` at the end makes it a test that
//! runs it against every backend and fails naming the backends it failed on.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use common::backends::{with_database, Backend};
use common::{consuming, fired, input, request, DEADLINE};
use flightdeck_core::chain::verify_chain;
use flightdeck_core::jcs::canonicalize;
use flightdeck_core::Digest;
use flightdeck_store::{
    verify_mission, AppendRequest, ArtifactError, ClaimRequest, Claimed, GitHubDelivery,
    InputState, Lease, MissionIndexRow, NewEvent, ProjectionColumns, ProjectionItem, StoreError,
    TokenRow, INLINE_MAX,
};
use serde_json::{json, Value};

/// `count` events of `mission` from `expected_seq` on, the first at `at_ms` (one ms apart),
/// with the projection `status`/`template`/`summary`.
fn request_at(
    mission: &str,
    expected_seq: u64,
    count: u64,
    at_ms: i64,
    summary: Value,
) -> AppendRequest {
    let mut request = request(mission, expected_seq, count);
    for (i, event) in request.events.iter_mut().enumerate() {
        event.at_ms = at_ms + i as i64;
    }
    request.projection.status = format!("status of {mission}");
    request.projection.template = format!("template of {mission}");
    request.projection.summary = summary;
    request
}

fn ids(missions: &[MissionIndexRow]) -> Vec<&str> {
    missions.iter().map(|m| m.id.as_str()).collect()
}

// --- Appends and the hash chain -------------------------------------------------------------

async fn appends_are_gapless_chained_and_projected(backend: Backend) {
    let store = backend.open().await;
    let first = store.append(request("m-a", 0, 2)).await.unwrap();
    let second = store.append(request("m-a", 2, 1)).await.unwrap();
    let appended = [first, second].concat();
    assert_eq!(
        appended.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3],
        "{backend}: seqs"
    );
    let events = store.events("m-a", 0).await.unwrap();
    assert_eq!(events, appended, "{backend}: read back as appended");
    assert_eq!(events[0].prev_hash, "0".repeat(64), "{backend}: genesis");
    assert_eq!(events[0].at, "2026-11-18T11:06:40.000Z", "{backend}: at");
    assert!(
        events.windows(2).all(|w| w[1].prev_hash == w[0].hash),
        "{backend}: each event chains onto the one before"
    );
    let head = verify_chain("m-a", &events).unwrap();
    let row = store.mission("m-a").await.unwrap().unwrap();
    assert_eq!(
        (row.last_seq, row.head_hash.as_str()),
        (3, head.as_str()),
        "{backend}: mission row"
    );
    assert_eq!(row.summary["events"], 3, "{backend}");
    assert_eq!(row.summary["head_hash"], head, "{backend}");
    assert_eq!(
        store.events("m-a", 2).await.unwrap(),
        events[2..],
        "{backend}"
    );
    assert_eq!(
        verify_mission(store.as_ref(), "m-a").await.unwrap(),
        Ok((head, 3)),
        "{backend}: verify"
    );

    // As stored: the same events, their data as canonical text.
    let raw = store.raw_events("m-a").await.unwrap();
    assert_eq!(raw.len(), 3, "{backend}: raw events");
    for (raw, event) in raw.iter().zip(&events) {
        assert_eq!(
            (raw.mission.as_str(), raw.seq, raw.event_type.as_str()),
            ("m-a", event.seq, event.event_type.as_str()),
            "{backend}"
        );
        assert_eq!(
            raw.at_ms,
            1_795_000_000_000 + event.seq as i64 - 1,
            "{backend}"
        );
        assert_eq!(raw.data, canonicalize(&event.data).unwrap(), "{backend}");
        assert_eq!(
            (&raw.prev_hash, &raw.hash),
            (&event.prev_hash, &event.hash),
            "{backend}"
        );
    }

    // Another store on the database (another process) reads the same.
    let other = backend.open().await;
    assert_eq!(other.events("m-a", 0).await.unwrap(), events, "{backend}");
    assert_eq!(other.mission("m-a").await.unwrap(), Some(row), "{backend}");
}

/// Event data of every shape is stored as its canonical (JCS) text, read back as written,
/// and verifies: the chain's hashes are over that text, so a backend that stores data in a
/// form of its own (reordering keys, dropping what it cannot hold) breaks the chain.
async fn event_data_is_stored_canonically_and_read_back_as_written(backend: Backend) {
    let deep = (0..64).fold(json!("bottom"), |inner, _| json!([inner]));
    let cases: [(&str, Value); 10] = [
        (
            "keys out of order",
            json!({"b": [1.5, null], "a": true, "A": {"z": 1, "é": 2, "10": 3, "9": 4, "": 5}}),
        ),
        (
            "unicode and escapes",
            json!({"text": "event \u{e9}\n\t\"quoted\" back\\slash \u{1F680} \u{2028}"}),
        ),
        (
            "control characters and NUL",
            json!({"s": "a\u{0}b\u{1}c\u{1f}d\u{7f}", "\u{0}key": 1}),
        ),
        (
            "numbers",
            json!({"n": [0, -1, 9_007_199_254_740_991_i64, -9_007_199_254_740_991_i64, 1.5, 0.1, -2.5e-7, 1e300]}),
        ),
        (
            "empty and null",
            json!({"o": {}, "a": [], "s": "", "n": null, "f": false}),
        ),
        ("deeply nested", json!({ "deep": deep })),
        ("a megabyte of text", json!({"out": "x".repeat(1 << 20)})),
        ("an array", json!([1, "two", {"three": 3}])),
        ("a string", json!("just text")),
        ("null", Value::Null),
    ];
    let store = backend.open().await;
    let events: Vec<NewEvent> = cases
        .iter()
        .enumerate()
        .map(|(i, (_, data))| NewEvent {
            at_ms: 1_795_000_000_000 + i as i64,
            event_type: "note".into(),
            data: data.clone(),
        })
        .collect();
    let mut append = request("m-data", 0, 1);
    append.events = events;
    store.append(append).await.unwrap();

    let read = store.events("m-data", 0).await.unwrap();
    let raw = store.raw_events("m-data").await.unwrap();
    assert_eq!(
        (read.len(), raw.len()),
        (cases.len(), cases.len()),
        "{backend}"
    );
    for (((what, data), event), raw) in cases.iter().zip(&read).zip(&raw) {
        assert_eq!(&event.data, data, "{backend}: {what}: read back");
        assert_eq!(
            raw.data,
            canonicalize(data).unwrap(),
            "{backend}: {what}: stored text"
        );
    }
    assert!(
        verify_mission(store.as_ref(), "m-data")
            .await
            .unwrap()
            .is_ok(),
        "{backend}: verify"
    );
}

async fn a_stale_writer_is_refused_and_leaves_no_trace(backend: Backend) {
    let store = backend.open().await;
    store.append(request("m-a", 0, 1)).await.unwrap();
    let before = store.mission("m-a").await.unwrap().unwrap();
    // (expected seq, what the writer believes)
    let cases = [(0, "the mission is new"), (2, "the mission is further on")];
    for (expected_seq, believes) in cases {
        let mut stale = request("m-a", expected_seq, 1);
        stale.projection.status = "stale".into();
        let err = store.append(stale).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Conflict { expected, actual: 1, .. } if expected == expected_seq),
            "{backend}: a writer who believes {believes}: {err}"
        );
    }
    assert_eq!(store.events("m-a", 0).await.unwrap().len(), 1, "{backend}");
    assert_eq!(
        store.mission("m-a").await.unwrap().unwrap(),
        before,
        "{backend}: the projection is untouched"
    );
    // A mission that does not exist is at seq 0: nothing else is expected of it.
    let err = store.append(request("m-new", 3, 1)).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                expected: 3,
                actual: 0,
                ..
            }
        ),
        "{backend}: {err}"
    );
    assert!(store.mission("m-new").await.unwrap().is_none(), "{backend}");
    let mut empty = request("m-a", 1, 1);
    empty.events.clear();
    assert!(
        matches!(
            store.append(empty).await.unwrap_err(),
            StoreError::EmptyAppend(_)
        ),
        "{backend}: an empty append"
    );
    assert_eq!(store.mission("m-a").await.unwrap().unwrap(), before);
}

/// 16 writers, through two stores on one database, all believe the mission is at seq 1:
/// exactly one may append; the others are told of the conflict.
async fn concurrent_appenders_on_one_mission_never_both_win(backend: Backend) {
    let stores = [backend.open().await, backend.open().await];
    stores[0].append(request("m-a", 0, 1)).await.unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = stores[i % 2].clone();
            tokio::spawn(async move {
                let mut append = request("m-a", 1, 1);
                append.events[0].data = json!({"writer": i});
                store.append(append).await
            })
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => wins += 1,
            Err(StoreError::Conflict {
                expected: 1,
                actual: 2,
                ..
            }) => {}
            Err(e) => panic!("{backend}: a losing writer got {e}, not a conflict"),
        }
    }
    assert_eq!(wins, 1, "{backend}: winners");
    for store in &stores {
        let events = store.events("m-a", 0).await.unwrap();
        assert_eq!(events.len(), 2, "{backend}");
        verify_chain("m-a", &events).unwrap();
        assert!(verify_mission(store.as_ref(), "m-a").await.unwrap().is_ok());
    }
}

async fn many_missions_appending_at_once_all_land(backend: Backend) {
    let stores = [backend.open().await, backend.open().await];
    let tasks: Vec<_> = (0..32)
        .map(|m| {
            let store = stores[m % 2].clone();
            tokio::spawn(async move {
                let id = format!("m-{m}");
                for seq in 0..20u64 {
                    store.append(request(&id, seq, 1)).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    for m in 0..32 {
        let id = format!("m-{m}");
        let events = stores[0].events(&id, 0).await.unwrap();
        assert_eq!(events.len(), 20, "{backend}: {id}");
        verify_chain(&id, &events).unwrap();
    }
    assert_eq!(
        stores[1].missions(100).await.unwrap().len(),
        32,
        "{backend}"
    );
}

// --- Reading timelines ---------------------------------------------------------------------

/// A long timeline reads whole and in order from any starting seq, and page by page, through
/// the store that wrote it and another.
async fn a_long_timeline_reads_whole_and_in_order(backend: Backend) {
    let writer = backend.open().await;
    let n = 20_000u64;
    for seq in (0..n).step_by(1_000) {
        writer.append(request("m-a", seq, 1_000)).await.unwrap();
    }
    let all = writer.events("m-a", 0).await.unwrap();
    assert_eq!(all.len() as u64, n, "{backend}");
    assert!(
        all.iter().zip(1..).all(|(e, s)| e.seq == s),
        "{backend}: in order"
    );
    verify_chain("m-a", &all).unwrap();
    let reader = backend.open().await;
    for store in [&writer, &reader] {
        for after in [0, 1, 4_095, 9_999, 11_808, 19_999, 20_000, 30_000] {
            let events = store.events("m-a", after).await.unwrap();
            // Compared whole, not printed whole: 20,000 events would drown the message.
            assert!(
                events[..] == all[after.min(n) as usize..],
                "{backend}: after {after}: {} events read, seqs {:?}..{:?}",
                events.len(),
                events.first().map(|e| e.seq),
                events.last().map(|e| e.seq)
            );
        }
        // Paged through as a listing reads it.
        let mut paged = Vec::new();
        let mut after = 0;
        loop {
            let page = store
                .events_between("m-a", after, after + 4_096)
                .await
                .unwrap();
            let Some(last) = page.last() else { break };
            after = last.seq;
            paged.extend(page);
        }
        assert!(paged == all, "{backend}: the pages join up to the timeline");
    }
    assert_eq!(
        reader.raw_events("m-a").await.unwrap().len() as u64,
        n,
        "{backend}"
    );
}

async fn events_between_reads_exactly_the_page_asked_for(backend: Backend) {
    let store = backend.open().await;
    store.append(request("m-a", 0, 20)).await.unwrap();
    store.append(request("m-b", 0, 5)).await.unwrap();
    // (after, up to, seqs read)
    let cases: [(u64, u64, &[u64]); 9] = [
        (0, 0, &[]),
        (0, 1, &[1]),
        (0, 5, &[1, 2, 3, 4, 5]),
        (5, 5, &[]),
        (5, 3, &[]),
        (17, 20, &[18, 19, 20]),
        (18, 100, &[19, 20]),
        (20, 30, &[]),
        (100, 200, &[]),
    ];
    for (after, up_to, expected) in cases {
        let page = store.events_between("m-a", after, up_to).await.unwrap();
        assert_eq!(
            page.iter().map(|e| e.seq).collect::<Vec<_>>(),
            expected,
            "{backend}: after {after} up to {up_to}"
        );
        assert!(page.iter().all(|e| e.mission == "m-a"), "{backend}");
    }
    let all = store.events("m-a", 0).await.unwrap();
    assert_eq!(
        store.events_between("m-a", 3, 9).await.unwrap(),
        all[3..9],
        "{backend}: the same events as a whole read"
    );
}

async fn an_unknown_mission_reads_as_nothing(backend: Backend) {
    let store = backend.open().await;
    store.append(request("m-a", 0, 2)).await.unwrap();
    assert!(
        store.mission("m-nope").await.unwrap().is_none(),
        "{backend}"
    );
    assert!(
        store.events("m-nope", 0).await.unwrap().is_empty(),
        "{backend}"
    );
    assert!(
        store
            .events_between("m-nope", 0, 10)
            .await
            .unwrap()
            .is_empty(),
        "{backend}"
    );
    assert!(
        store.raw_events("m-nope").await.unwrap().is_empty(),
        "{backend}"
    );
    assert!(
        store.pending_inputs("m-nope").await.unwrap().is_empty(),
        "{backend}"
    );
    assert_eq!(
        store
            .acquire_lease("m-nope", "w1", 1_000, 500, None)
            .await
            .unwrap(),
        None,
        "{backend}: no lease on a mission that does not exist"
    );
    assert!(
        store.mission("m-nope").await.unwrap().is_none(),
        "{backend}: a lease attempt creates no mission"
    );
    assert_eq!(store.missions(10).await.unwrap().len(), 1, "{backend}");
}

// --- The projection and listings -----------------------------------------------------------

fn item(position: u64, status: &str) -> ProjectionItem {
    ProjectionItem {
        list: "steps".into(),
        position,
        value: json!({"index": position, "status": status}),
    }
}

/// Lists kept item by item: an append upserts only the items it names, and reading puts
/// each list back into the summary in position order (a stale or failed append writes none).
async fn projection_items_are_kept_one_by_one_and_read_back_into_the_summary(backend: Backend) {
    let store = backend.open().await;
    let mut first = request("m-a", 0, 1);
    first.projection.summary = json!({"id": "m-a", "steps": []});
    first.projection.items = vec![item(10, "running"), item(2, "running")];
    store.append(first).await.unwrap();
    let mut second = request("m-a", 1, 1);
    second.projection.summary = json!({"id": "m-a", "steps": [], "status": "second"});
    second.projection.items = vec![item(10, "succeeded")];
    store.append(second).await.unwrap();
    let mut stale = request("m-a", 1, 1);
    stale.projection.items = vec![item(2, "stale")];
    assert!(store.append(stale).await.is_err(), "{backend}");
    // A list of another name is kept apart and put back beside it.
    let mut third = request("m-a", 2, 1);
    third.projection.summary = json!({"id": "m-a", "steps": [], "status": "third"});
    third.projection.items = vec![ProjectionItem {
        list: "notes".into(),
        position: 0,
        value: json!("a note"),
    }];
    store.append(third).await.unwrap();
    // Another mission's items stay its own; a mission without items keeps its summary's list.
    let mut other = request("m-b", 0, 1);
    other.projection.summary = json!({"id": "m-b", "steps": [{"index": 0}]});
    store.append(other).await.unwrap();

    let steps = json!([{"index": 2, "status": "running"}, {"index": 10, "status": "succeeded"}]);
    for store in [store, backend.open().await] {
        let row = store.mission("m-a").await.unwrap().unwrap();
        assert_eq!(row.summary["status"], "third", "{backend}");
        assert_eq!(row.summary["steps"], steps, "{backend}: steps");
        assert_eq!(row.summary["notes"], json!(["a note"]), "{backend}: notes");
        let rows = store.missions(10).await.unwrap();
        let listed: Vec<_> = rows
            .iter()
            .map(|r| (r.id.as_str(), r.summary["steps"].clone()))
            .collect();
        assert!(
            listed.contains(&("m-a", steps.clone())),
            "{backend}: {listed:?}"
        );
        assert!(
            listed.contains(&("m-b", json!([{"index": 0}]))),
            "{backend}: {listed:?}"
        );
    }
}

/// A mission's row: the latest projection, when its timeline began and last moved, its head,
/// and its summary with the event count and head hash added; listed as it is read alone.
async fn a_mission_row_carries_the_latest_projection_and_the_timelines_times(backend: Backend) {
    let store = backend.open().await;
    store
        .append(request_at("m-a", 0, 2, 5_000, json!({"phase": "one"})))
        .await
        .unwrap();
    let mut later = request_at("m-a", 2, 3, 9_000, json!({"phase": "two", "n": [1, 2]}));
    later.projection.status = "succeeded".into();
    let stored = store.append(later).await.unwrap();
    let head = stored.last().unwrap().hash.clone();
    let row = store.mission("m-a").await.unwrap().unwrap();
    assert_eq!(
        (
            row.id.as_str(),
            row.status.as_str(),
            row.template.as_str(),
            row.created_at_ms,
            row.updated_at_ms,
            row.last_seq,
            row.head_hash.as_str(),
            &row.lease,
        ),
        (
            "m-a",
            "succeeded",
            "template of m-a",
            5_000,
            9_002,
            5,
            head.as_str(),
            &None
        ),
        "{backend}"
    );
    assert_eq!(
        row.summary,
        json!({"phase": "two", "n": [1, 2], "events": 5, "head_hash": head}),
        "{backend}: summary"
    );
    let listed = store.missions(10).await.unwrap();
    assert_eq!(
        listed,
        std::slice::from_ref(&row),
        "{backend}: listed as read alone"
    );
    let other = backend.open().await;
    assert_eq!(other.mission("m-a").await.unwrap(), Some(row), "{backend}");
}

/// Missions are listed newest first (by when their timeline began; the greater id first on
/// a tie), the index with the same rows as the full listing, each as long as the limit.
async fn missions_are_listed_newest_first_and_indexed_alike(backend: Backend) {
    let store = backend.open().await;
    // (mission, its first event's time)
    let created = [
        ("m-1", 3_000),
        ("m-2", 1_000),
        ("m-3", 2_000),
        ("m-4", 2_000),
    ];
    for (mission, at_ms) in created {
        store
            .append(request_at(mission, 0, 1, at_ms, json!({"id": mission})))
            .await
            .unwrap();
    }
    // A later append moves a mission's updated time, not its place.
    store
        .append(request_at("m-2", 1, 1, 9_000, json!({"id": "m-2"})))
        .await
        .unwrap();
    let newest_first = ["m-1", "m-4", "m-3", "m-2"];
    for limit in [0u32, 1, 3, 4, 100] {
        let expected = &newest_first[..newest_first.len().min(limit as usize)];
        let rows = store.missions(limit).await.unwrap();
        assert_eq!(
            rows.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            expected,
            "{backend}: missions({limit})"
        );
        let index = store.mission_index(limit).await.unwrap();
        let from_rows: Vec<MissionIndexRow> = rows
            .iter()
            .map(|m| MissionIndexRow {
                id: m.id.clone(),
                status: m.status.clone(),
                template: m.template.clone(),
                created_at_ms: m.created_at_ms,
            })
            .collect();
        assert_eq!(index, from_rows, "{backend}: mission_index({limit})");
    }
    let index = store.mission_index(1).await.unwrap();
    assert_eq!(
        index,
        [MissionIndexRow {
            id: "m-1".into(),
            status: "status of m-1".into(),
            template: "template of m-1".into(),
            created_at_ms: 3_000,
        }],
        "{backend}"
    );
}

/// The index of one person's missions, as their projections say now.
async fn the_index_of_a_requesters_missions_follows_their_projections(backend: Backend) {
    let store = backend.open().await;
    // (mission, created at, its summary)
    let missions = [
        ("m-1", 1_000, json!({"requested_by": "@alice"})),
        ("m-2", 2_000, json!({"requested_by": "@bob"})),
        ("m-3", 3_000, json!({"requested_by": "@alice"})),
        ("m-4", 4_000, json!({"id": "m-4"})),
        ("m-5", 5_000, json!({"requested_by": 7})),
        ("m-6", 6_000, json!({"requested_by": {"handle": "@alice"}})),
        ("m-7", 7_000, json!({"requested_by": "@Alice"})),
        ("m-8", 8_000, json!({"requested_by": "@alice "})),
    ];
    // The typed column says who, as the engine's projections always say it in both.
    let with_requester = |mission, seq, at_ms, summary: Value| {
        let mut request = request_at(mission, seq, 1, at_ms, summary.clone());
        request.projection.columns.requested_by =
            summary["requested_by"].as_str().map(str::to_string);
        request
    };
    for (mission, at_ms, summary) in missions {
        store
            .append(with_requester(mission, 0, at_ms, summary))
            .await
            .unwrap();
    }
    // m-2 changes hands: its projection now names @alice.
    store
        .append(with_requester(
            "m-2",
            1,
            9_000,
            json!({"requested_by": "@alice"}),
        ))
        .await
        .unwrap();
    // (requester, limit, missions listed)
    let cases: [(&str, u32, &[&str]); 7] = [
        ("@alice", 10, &["m-3", "m-2", "m-1"]),
        ("@alice", 2, &["m-3", "m-2"]),
        ("@alice", 0, &[]),
        ("@bob", 10, &[]),
        ("@Alice", 10, &["m-7"]),
        ("@carol", 10, &[]),
        ("", 10, &[]),
    ];
    for (who, limit, expected) in cases {
        let index = store.mission_index_requested_by(limit, who).await.unwrap();
        assert_eq!(ids(&index), expected, "{backend}: {who:?}, limit {limit}");
        let all = store.mission_index(100).await.unwrap();
        for row in &index {
            assert!(all.contains(row), "{backend}: {row:?} as the index has it");
        }
    }
}

/// Ids are matched as plain text: no character is a wildcard, case counts, and the ids come
/// in byte order.
async fn mission_ids_with_a_prefix_are_matched_as_plain_text(backend: Backend) {
    let store = backend.open().await;
    let missions = [
        "m-abc", "m-abc-2", "m-abd", "m-b", "m_x", "m%", "M-up", "é-1", "m\\y", "mx-1",
    ];
    for mission in missions {
        store.append(request(mission, 0, 1)).await.unwrap();
    }
    // (prefix, limit, ids)
    let cases: [(&str, u32, &[&str]); 15] = [
        ("m-ab", 10, &["m-abc", "m-abc-2", "m-abd"]),
        ("m-abc", 10, &["m-abc", "m-abc-2"]),
        ("m-abc-2", 10, &["m-abc-2"]),
        ("m-abc-2-more", 10, &[]),
        ("m-", 2, &["m-abc", "m-abc-2"]),
        ("m-", 0, &[]),
        ("m_", 10, &["m_x"]),
        ("m%", 10, &["m%"]),
        ("%", 10, &[]),
        ("_", 10, &[]),
        ("m\\", 10, &["m\\y"]),
        ("M", 10, &["M-up"]),
        ("é", 10, &["é-1"]),
        ("e", 10, &[]),
        (
            "",
            100,
            &[
                "M-up", "m%", "m-abc", "m-abc-2", "m-abd", "m-b", "m\\y", "m_x", "mx-1", "é-1",
            ],
        ),
    ];
    for (prefix, limit, expected) in cases {
        assert_eq!(
            store.mission_ids_with_prefix(prefix, limit).await.unwrap(),
            expected,
            "{backend}: prefix {prefix:?}, limit {limit}"
        );
    }
}

// --- Leases --------------------------------------------------------------------------------

async fn leases_exclude_other_owners_until_expiry_or_steal(backend: Backend) {
    let store = backend.open().await;
    store.append(request("m-a", 0, 1)).await.unwrap();
    // (who, now, steals from, holder afterwards, its expiry, its epoch; why), each lease for
    // 500 ms. The epoch grows whenever the lease passes to a new holding.
    type Step<'a> = (&'a str, i64, Option<&'a str>, &'a str, i64, u64, &'a str);
    let steps: [Step<'_>; 7] = [
        ("w1", 1_000, None, "w1", 1_500, 1, "a free lease is taken"),
        ("w2", 1_200, None, "w1", 1_500, 1, "a live lease is not"),
        ("w1", 1_300, None, "w1", 1_800, 1, "its holder renews it"),
        (
            "w2",
            1_400,
            Some("w3"),
            "w1",
            1_800,
            1,
            "stealing from another owner takes nothing",
        ),
        (
            "w2",
            1_400,
            Some("w1"),
            "w2",
            1_900,
            2,
            "a dead owner's lease may be stolen by name",
        ),
        ("w3", 1_899, None, "w2", 1_900, 2, "live until its expiry"),
        (
            "w3",
            1_900,
            None,
            "w3",
            2_400,
            3,
            "an expired lease is free",
        ),
    ];
    for (who, now_ms, steal_from, holder, expires_ms, epoch, why) in steps {
        let expected = Some(Lease {
            owner: holder.into(),
            expires_ms,
            epoch,
        });
        let got = store
            .acquire_lease("m-a", who, now_ms, 500, steal_from)
            .await
            .unwrap();
        assert_eq!(got, expected, "{backend}: {why}");
        assert_eq!(
            store.mission("m-a").await.unwrap().unwrap().lease,
            expected,
            "{backend}: {why}: the mission row"
        );
    }
    store.release_lease("m-a", "w1").await.unwrap();
    assert_eq!(
        store.mission("m-a").await.unwrap().unwrap().lease,
        Some(Lease {
            owner: "w3".into(),
            expires_ms: 2_400,
            epoch: 3,
        }),
        "{backend}: only its holder gives a lease back"
    );
    store.release_lease("m-a", "w3").await.unwrap();
    assert!(
        store.mission("m-a").await.unwrap().unwrap().lease.is_none(),
        "{backend}: given back"
    );
    let got = store
        .acquire_lease("m-a", "w2", 2_000, 500, None)
        .await
        .unwrap();
    assert_eq!(got.unwrap().owner, "w2", "{backend}: free again");
    // Another store sees the lease.
    let other = backend.open().await;
    let got = other
        .acquire_lease("m-a", "w4", 2_100, 500, None)
        .await
        .unwrap();
    assert_eq!(got.unwrap().owner, "w2", "{backend}: held across stores");
}

/// Many workers, through two stores, reach for a free lease at once: one gets it, and every
/// one of them is told who did.
async fn appends_carrying_a_stale_lease_epoch_change_nothing(backend: Backend) {
    let store = backend.open().await;
    store.append(request("m-a", 0, 1)).await.unwrap();
    let fenced = |expected_seq, epoch| {
        let mut r = request("m-a", expected_seq, 1);
        r.fence = Some(epoch);
        r
    };
    let first = store
        .acquire_lease("m-a", "w1", 1_000, 500, None)
        .await
        .unwrap()
        .unwrap();
    store.append(fenced(1, first.epoch)).await.unwrap();
    // w1 stalls past its lease; w2 takes over and writes.
    let second = store
        .acquire_lease("m-a", "w2", 1_600, 500, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.owner, "w2", "{backend}");
    assert!(
        second.epoch > first.epoch,
        "{backend}: a takeover is a new epoch"
    );
    store.append(fenced(2, second.epoch)).await.unwrap();
    // w1 wakes up and writes with what it held, even at the right seq and taking in an
    // input: refused, nothing written (events, row, input).
    let row_before = store.mission("m-a").await.unwrap();
    let posted = store.post_input(input("m-a", "vote")).await.unwrap();
    let mut stale = fenced(3, first.epoch);
    stale.consumes = vec![posted];
    stale.projection.status = "written-by-a-stale-driver".into();
    let stale = store.append(stale).await;
    match stale {
        Err(StoreError::Fenced { held, current, .. }) => {
            assert_eq!((held, current), (first.epoch, second.epoch), "{backend}");
        }
        other => panic!("{backend}: a stale epoch's append gave {other:?}"),
    }
    assert_eq!(store.events("m-a", 0).await.unwrap().len(), 3, "{backend}");
    assert_eq!(
        store.mission("m-a").await.unwrap(),
        row_before,
        "{backend}: the row is as it was"
    );
    assert_eq!(
        store.input(posted).await.unwrap().unwrap().state,
        InputState::Pending,
        "{backend}: the input waits for the new holder"
    );
    // Even after w2 lets go, w1's old epoch stays stale; taking the lease again gives a new
    // one, which writes.
    store.release_lease("m-a", "w2").await.unwrap();
    assert!(matches!(
        store.append(fenced(3, first.epoch)).await,
        Err(StoreError::Fenced { .. })
    ));
    let again = store
        .acquire_lease("m-a", "w1", 1_700, 500, None)
        .await
        .unwrap()
        .unwrap();
    assert!(again.epoch > second.epoch, "{backend}");
    store.append(fenced(3, again.epoch)).await.unwrap();
    // Its holder renewing in time keeps the epoch.
    let renewed = store
        .acquire_lease("m-a", "w1", 1_800, 500, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        renewed.epoch, again.epoch,
        "{backend}: a renewal is the same holding"
    );
    // Taken again by its holder after it ran out: a new holding (someone may have written
    // in between).
    let late = store
        .acquire_lease("m-a", "w1", 2_400, 500, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(late.owner, "w1", "{backend}");
    assert!(
        late.epoch > renewed.epoch,
        "{backend}: a late renewal is a new epoch"
    );
}

async fn one_of_many_workers_reaching_for_a_lease_at_once_gets_it(backend: Backend) {
    let stores = [backend.open().await, backend.open().await];
    stores[0].append(request("m-a", 0, 1)).await.unwrap();
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let store = stores[i % 2].clone();
            tokio::spawn(async move {
                let owner = format!("w{i}");
                let holder = store
                    .acquire_lease("m-a", &owner, 1_000, 60_000, None)
                    .await;
                (owner, holder)
            })
        })
        .collect();
    let mut holders = Vec::new();
    let mut winners = Vec::new();
    for task in tasks {
        let (owner, holder) = task.await.unwrap();
        let holder = holder.unwrap().expect("a lease is held");
        if holder.owner == owner {
            winners.push(owner);
        }
        holders.push(holder);
    }
    assert_eq!(winners.len(), 1, "{backend}: winners {winners:?}");
    let row = stores[1].mission("m-a").await.unwrap().unwrap();
    assert!(
        holders.iter().all(|h| Some(h) == row.lease.as_ref()),
        "{backend}: each was told who holds it: {holders:?}, the row says {:?}",
        row.lease
    );
}

// --- The inbox -----------------------------------------------------------------------------

async fn a_posted_input_is_pending_until_an_append_applies_it(backend: Backend) {
    let store = backend.open().await;
    store.append(request("m-a", 0, 1)).await.unwrap();
    let vote = store
        .post_input(input("m-a", "approval.vote"))
        .await
        .unwrap();
    let raise = store
        .post_input(input("m-a", "budget.raise"))
        .await
        .unwrap();
    assert!(raise > vote, "{backend}: ids increase in posting order");

    let pending = store.pending_inputs("m-a").await.unwrap();
    assert_eq!(
        pending.iter().map(|i| i.id).collect::<Vec<_>>(),
        [vote, raise],
        "{backend}: oldest first"
    );
    assert_eq!(pending[0].kind, "approval.vote", "{backend}");
    assert_eq!(pending[0].mission, "m-a", "{backend}");
    assert_eq!(
        pending[0].payload,
        json!({"by": "alice", "kind": "approval.vote"}),
        "{backend}"
    );
    assert_eq!(pending[0].posted_at_ms, 1_795_000_100_000, "{backend}");
    assert_eq!(pending[0].state, InputState::Pending, "{backend}");
    assert_eq!(
        store.input(vote).await.unwrap().as_ref(),
        Some(&pending[0]),
        "{backend}: read alone as listed"
    );
    assert_eq!(
        store.missions_with_pending_inputs(10).await.unwrap(),
        ["m-a"],
        "{backend}"
    );

    // One append of two events applies the vote: at the seq of its last event.
    let stored = store
        .append(consuming(request("m-a", 1, 2), &[vote]))
        .await
        .unwrap();
    assert_eq!(stored.last().unwrap().seq, 3, "{backend}");
    let row = store.input(vote).await.unwrap().unwrap();
    assert_eq!(row.state, InputState::Applied { seq: 3 }, "{backend}");
    assert_eq!(
        store
            .pending_inputs("m-a")
            .await
            .unwrap()
            .iter()
            .map(|i| i.id)
            .collect::<Vec<_>>(),
        [raise],
        "{backend}"
    );
    assert_eq!(store.input(raise + 100).await.unwrap(), None, "{backend}");

    // Durable: a store opened afresh sees the same inbox.
    drop(store);
    let store = backend.open().await;
    assert_eq!(
        store.input(vote).await.unwrap().unwrap().state,
        InputState::Applied { seq: 3 },
        "{backend}"
    );
    assert_eq!(
        store.pending_inputs("m-a").await.unwrap().len(),
        1,
        "{backend}"
    );
}

/// Payloads of every shape come back as posted.
async fn input_payloads_come_back_as_posted(backend: Backend) {
    let store = backend.open().await;
    store.append(request("m-a", 0, 1)).await.unwrap();
    let payloads = [
        json!({"b": 1, "a": {"z": [1.5, null, "\u{e9}\u{0}\n"]}}),
        json!([]),
        json!("text"),
        Value::Null,
        json!({"big": "y".repeat(100_000)}),
    ];
    for payload in payloads {
        let mut posted = input("m-a", "x");
        posted.payload = payload.clone();
        let id = store.post_input(posted).await.unwrap();
        let read = store.input(id).await.unwrap().unwrap();
        assert_eq!(read.payload, payload, "{backend}");
    }
}

async fn an_input_is_refused_once_and_then_cannot_be_applied(backend: Backend) {
    let store = backend.open().await;
    store.append(request("m-a", 0, 1)).await.unwrap();
    let id = store
        .post_input(input("m-a", "budget.raise"))
        .await
        .unwrap();
    store
        .refuse_input(id, "the mission is finished", 1_795_000_200_000)
        .await
        .unwrap();
    let refused = InputState::Refused {
        reason: "the mission is finished".into(),
    };
    assert_eq!(
        store.input(id).await.unwrap().unwrap().state,
        refused,
        "{backend}"
    );
    assert!(
        store.pending_inputs("m-a").await.unwrap().is_empty(),
        "{backend}"
    );
    assert!(
        store
            .missions_with_pending_inputs(10)
            .await
            .unwrap()
            .is_empty(),
        "{backend}"
    );

    let again = store.refuse_input(id, "twice", 0).await.unwrap_err();
    assert!(
        matches!(again, StoreError::InputNotPending { id: i } if i == id),
        "{backend}: {again}"
    );
    let unknown = store.refuse_input(id + 1, "who?", 0).await.unwrap_err();
    assert!(
        matches!(unknown, StoreError::UnknownInput { .. }),
        "{backend}: {unknown}"
    );

    let err = store
        .append(consuming(request("m-a", 1, 1), &[id]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::InputNotPending { id: i } if i == id),
        "{backend}: {err}"
    );
    assert_eq!(
        store.events("m-a", 0).await.unwrap().len(),
        1,
        "{backend}: nothing written"
    );
    assert_eq!(
        store.input(id).await.unwrap().unwrap().state,
        refused,
        "{backend}"
    );
}

async fn consuming_an_input_twice_is_refused_and_writes_nothing(backend: Backend) {
    let store = backend.open().await;
    store.append(request("m-a", 0, 1)).await.unwrap();
    let a = store
        .post_input(input("m-a", "approval.vote"))
        .await
        .unwrap();
    let b = store
        .post_input(input("m-a", "approval.vote"))
        .await
        .unwrap();
    store
        .append(consuming(request("m-a", 1, 1), &[a]))
        .await
        .unwrap();
    let before = store.mission("m-a").await.unwrap().unwrap();

    // (what the append consumes, why it fails): each fails whole, `b` stays pending.
    let cases: [(&[i64], &str); 3] = [
        (&[b, a], "a is applied already"),
        (&[b, b], "b is named twice"),
        (&[b + 1000], "no such input"),
    ];
    for (consumes, why) in cases {
        let mut bad = consuming(request("m-a", 2, 1), consumes);
        bad.projection.status = "bad".into();
        let err = store.append(bad).await.unwrap_err();
        let expected = match why {
            "a is applied already" => matches!(err, StoreError::InputNotPending { id } if id == a),
            "b is named twice" => matches!(err, StoreError::InputNotPending { id } if id == b),
            _ => matches!(err, StoreError::UnknownInput { id } if id == b + 1000),
        };
        assert!(expected, "{backend}: {why}: {err}");
        assert_eq!(
            store.mission("m-a").await.unwrap().unwrap(),
            before,
            "{backend}: {why}: nothing written"
        );
        assert_eq!(store.events("m-a", 0).await.unwrap().len(), 2, "{backend}");
        assert_eq!(
            store.input(a).await.unwrap().unwrap().state,
            InputState::Applied { seq: 2 },
            "{backend}: {why}"
        );
        assert_eq!(
            store.input(b).await.unwrap().unwrap().state,
            InputState::Pending,
            "{backend}: {why}"
        );
    }

    // A stale append that consumes fails as a conflict and applies nothing either.
    let err = store
        .append(consuming(request("m-a", 1, 1), &[b]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { .. }),
        "{backend}: {err}"
    );
    assert_eq!(
        store.input(b).await.unwrap().unwrap().state,
        InputState::Pending,
        "{backend}"
    );
    store
        .append(consuming(request("m-a", 2, 1), &[b]))
        .await
        .unwrap();
    assert_eq!(
        store.input(b).await.unwrap().unwrap().state,
        InputState::Applied { seq: 3 },
        "{backend}"
    );
}

async fn another_missions_input_cannot_be_consumed(backend: Backend) {
    let store = backend.open().await;
    store.append(request("m-a", 0, 1)).await.unwrap();
    store.append(request("m-b", 0, 1)).await.unwrap();
    let for_b = store.post_input(input("m-b", "cancel")).await.unwrap();
    let err = store
        .append(consuming(request("m-a", 1, 1), &[for_b]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::InputNotPending { id } if id == for_b),
        "{backend}: {err}"
    );
    assert_eq!(store.events("m-a", 0).await.unwrap().len(), 1, "{backend}");
    assert_eq!(
        store.input(for_b).await.unwrap().unwrap().state,
        InputState::Pending,
        "{backend}"
    );
}

async fn an_input_for_an_unknown_mission_is_refused(backend: Backend) {
    let store = backend.open().await;
    let err = store
        .post_input(input("m-nope", "cancel"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::UnknownMission { mission } if mission == "m-nope"),
        "{backend}: {err}"
    );
    assert!(
        store.pending_inputs("m-nope").await.unwrap().is_empty(),
        "{backend}"
    );
    assert!(
        store
            .missions_with_pending_inputs(10)
            .await
            .unwrap()
            .is_empty(),
        "{backend}"
    );
    assert!(
        store.mission("m-nope").await.unwrap().is_none(),
        "{backend}"
    );
}

async fn the_scheduler_sees_missions_waiting_longest_first(backend: Backend) {
    let store = backend.open().await;
    for m in ["m-a", "m-b", "m-c"] {
        store.append(request(m, 0, 1)).await.unwrap();
    }
    let b1 = store.post_input(input("m-b", "x")).await.unwrap();
    let _a1 = store.post_input(input("m-a", "x")).await.unwrap();
    let _b2 = store.post_input(input("m-b", "x")).await.unwrap();
    let c1 = store.post_input(input("m-c", "x")).await.unwrap();
    assert_eq!(
        store.missions_with_pending_inputs(10).await.unwrap(),
        ["m-b", "m-a", "m-c"],
        "{backend}"
    );
    assert_eq!(
        store.missions_with_pending_inputs(2).await.unwrap(),
        ["m-b", "m-a"],
        "{backend}"
    );
    store.refuse_input(c1, "no", 0).await.unwrap();
    store
        .append(consuming(request("m-b", 1, 1), &[b1]))
        .await
        .unwrap();
    assert_eq!(
        store.missions_with_pending_inputs(10).await.unwrap(),
        ["m-a", "m-b"],
        "{backend}"
    );
}

/// Many missions append at once (a backend may put them in shared transactions); one of the
/// appends consumes an input that is not pending. It fails alone.
async fn a_bad_consume_fails_alone_among_concurrent_appends(backend: Backend) {
    let store = backend.open().await;
    let missions: Vec<String> = (0..24).map(|m| format!("m-{m}")).collect();
    for m in &missions {
        store.append(request(m, 0, 1)).await.unwrap();
    }
    let mut inputs = Vec::new();
    for m in &missions {
        inputs.push(store.post_input(input(m, "x")).await.unwrap());
    }
    let bad = 7;
    store.refuse_input(inputs[bad], "already", 0).await.unwrap();
    for round in 0..3u64 {
        let tasks: Vec<_> = missions
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let store = store.clone();
                let m = m.clone();
                let consumes = if round == 0 {
                    vec![inputs[i]]
                } else {
                    Vec::new()
                };
                tokio::spawn(async move {
                    store
                        .append(consuming(request(&m, 1 + round, 1), &consumes))
                        .await
                })
            })
            .collect();
        for (i, task) in tasks.into_iter().enumerate() {
            let result = task.await.unwrap();
            if i == bad && round == 0 {
                assert!(
                    matches!(result, Err(StoreError::InputNotPending { .. })),
                    "{backend}: {result:?}"
                );
            } else if i == bad {
                // Its first append failed, so its seq lags one behind.
                assert!(
                    matches!(result, Err(StoreError::Conflict { .. })),
                    "{backend}: {result:?}"
                );
            } else {
                result.unwrap_or_else(|e| panic!("{backend}: m-{i}, round {round}: {e}"));
            }
        }
    }
    for (i, m) in missions.iter().enumerate() {
        let events = store.events(m, 0).await.unwrap();
        let state = store.input(inputs[i]).await.unwrap().unwrap().state;
        if i == bad {
            assert_eq!(events.len(), 1, "{backend}: {m}");
            assert!(
                matches!(state, InputState::Refused { .. }),
                "{backend}: {m}"
            );
        } else {
            assert_eq!(events.len(), 4, "{backend}: {m}");
            assert_eq!(state, InputState::Applied { seq: 2 }, "{backend}: {m}");
        }
    }
}

// --- The change feed -----------------------------------------------------------------------

async fn appends_and_inbox_changes_wake_a_feed_of_the_same_store(backend: Backend) {
    let store = backend.open().await;
    let mut feed = store.subscribe().await.unwrap();
    store.append(request("m-a", 0, 1)).await.unwrap();
    fired(&mut feed).await;
    let id = store.post_input(input("m-a", "x")).await.unwrap();
    fired(&mut feed).await;
    store.refuse_input(id, "no", 0).await.unwrap();
    fired(&mut feed).await;
}

/// The other store sees the change when its feed fires: the feed never fires only before a
/// commit is visible, with nothing after (what `timeline --follow` relies on).
async fn an_append_through_another_store_wakes_the_feed_and_is_visible(backend: Backend) {
    let writer = backend.open().await;
    let reader = backend.open().await;
    let mut feed = reader.subscribe().await.unwrap();
    for seq in 0..30u64 {
        writer.append(request("m-a", seq, 1)).await.unwrap();
        // Woken (possibly more than once) until the event is there; never polled.
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if reader.events("m-a", seq).await.unwrap().len() == 1 {
                break;
            }
            tokio::time::timeout_at(deadline, feed.changed())
                .await
                .unwrap_or_else(|_| {
                    panic!("{backend}: append {seq} never woke the other store's feed")
                })
                .unwrap();
        }
    }
}

async fn inbox_changes_through_another_store_wake_the_feed(backend: Backend) {
    let driver = backend.open().await;
    driver.append(request("m-a", 0, 1)).await.unwrap();
    // The poster (another process, e.g. `flightdeck approve`) waits on its input's state.
    let poster = backend.open().await;
    let mut driver_feed = driver.subscribe().await.unwrap();
    let mut poster_feed = poster.subscribe().await.unwrap();

    let id = poster
        .post_input(input("m-a", "approval.vote"))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while driver.pending_inputs("m-a").await.unwrap().is_empty() {
        tokio::time::timeout_at(deadline, driver_feed.changed())
            .await
            .unwrap_or_else(|_| panic!("{backend}: the post never woke the driver"))
            .unwrap();
    }
    driver
        .append(consuming(request("m-a", 1, 1), &[id]))
        .await
        .unwrap();
    loop {
        let state = poster.input(id).await.unwrap().unwrap().state;
        if state == (InputState::Applied { seq: 2 }) {
            break;
        }
        tokio::time::timeout_at(deadline, poster_feed.changed())
            .await
            .unwrap_or_else(|_| panic!("{backend}: applying the input never woke the poster"))
            .unwrap();
    }
}

/// A driver's inputs feed wakes on inputs posted through its own store or another (another
/// process). (That a driver's own appends do not wake it is SQLite's; the trait allows it.)
async fn an_inputs_feed_wakes_on_posts_here_and_through_another_store(backend: Backend) {
    let driver = backend.open().await;
    let poster = backend.open().await;
    driver.append(request("m-a", 0, 1)).await.unwrap();
    let mut inputs = driver.subscribe_inputs().await.unwrap();
    poster.post_input(input("m-a", "cancel")).await.unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while driver.pending_inputs("m-a").await.unwrap().is_empty() {
        tokio::time::timeout_at(deadline, inputs.changed())
            .await
            .unwrap_or_else(|_| panic!("{backend}: a post through another store never woke it"))
            .unwrap();
    }
    drop(inputs);
    let mut inputs = driver.subscribe_inputs().await.unwrap();
    driver.post_input(input("m-a", "cancel")).await.unwrap();
    fired(&mut inputs).await;
}

async fn feeds_outlive_each_other_and_a_new_one_works_after_all_are_gone(backend: Backend) {
    let writer = backend.open().await;
    let reader = backend.open().await;
    let first = reader.subscribe().await.unwrap();
    let mut second = reader.subscribe().await.unwrap();
    drop(first);
    writer.append(request("m-a", 0, 1)).await.unwrap();
    fired(&mut second).await;
    drop(second);
    // All feeds gone: a new one works all the same.
    let mut third = reader.subscribe().await.unwrap();
    writer.append(request("m-a", 1, 1)).await.unwrap();
    fired(&mut third).await;
    // And the writer's own.
    let mut own = writer.subscribe().await.unwrap();
    writer.append(request("m-a", 2, 1)).await.unwrap();
    fired(&mut own).await;
}

// --- API tokens ----------------------------------------------------------------------------

fn token(id: &str, hash: &str, created_at_ms: i64) -> TokenRow {
    TokenRow {
        id: id.into(),
        hash: hash.into(),
        owner: "@alice".into(),
        role: "approver".into(),
        created_at_ms,
        created_by: "@root".into(),
        expires_at_ms: Some(9_000),
        revoked_at_ms: None,
        last_used_ms: None,
    }
}

async fn tokens_are_found_by_hash_revoked_once_and_touched(backend: Backend) {
    let store = backend.open().await;
    store
        .create_token(token("tok_a", "aa", 1_000))
        .await
        .unwrap();
    store
        .create_token(token("tok_b", "bb", 2_000))
        .await
        .unwrap();
    // One hash, one token; one id, one token. The refusal fails that write alone, not an
    // append made at the same time.
    let (same_hash, same_id, appended) = tokio::join!(
        store.create_token(token("tok_c", "aa", 3_000)),
        store.create_token(token("tok_a", "cc", 3_000)),
        store.append(request("m-a", 0, 2))
    );
    assert!(same_hash.is_err(), "{backend}: a second token of one hash");
    assert!(same_id.is_err(), "{backend}: a second token of one id");
    assert_eq!(appended.unwrap().len(), 2, "{backend}");
    assert_eq!(store.events("m-a", 0).await.unwrap().len(), 2, "{backend}");

    assert_eq!(
        store.token_by_hash("aa").await.unwrap(),
        Some(token("tok_a", "aa", 1_000)),
        "{backend}"
    );
    assert!(
        store.token_by_hash("cc").await.unwrap().is_none(),
        "{backend}"
    );
    assert!(
        store.revoke_token("tok_a", 2_000).await.unwrap(),
        "{backend}"
    );
    assert!(
        !store.revoke_token("tok_a", 3_000).await.unwrap(),
        "{backend}: revoked once"
    );
    assert!(
        !store.revoke_token("tok_zz", 3_000).await.unwrap(),
        "{backend}: no such token"
    );
    store.touch_token("tok_b", 2_500).await.unwrap();
    store.touch_token("tok_b", 2_600).await.unwrap();

    let revoked = TokenRow {
        revoked_at_ms: Some(2_000),
        ..token("tok_a", "aa", 1_000)
    };
    let used = TokenRow {
        last_used_ms: Some(2_600),
        ..token("tok_b", "bb", 2_000)
    };
    // Another store on the database reads the same.
    for store in [store, backend.open().await] {
        assert_eq!(
            store.token_by_hash("aa").await.unwrap().as_ref(),
            Some(&revoked),
            "{backend}: a revoked token is still found"
        );
        assert_eq!(
            store.tokens().await.unwrap(),
            [used.clone(), revoked.clone()],
            "{backend}: newest first"
        );
    }
}

// --- Artifacts -----------------------------------------------------------------------------

/// Artifacts are stored by digest, whatever their size, read back checked, and found (or
/// not) by `contains`.
async fn artifacts_are_content_addressed_and_read_back(backend: Backend) {
    let (_store, artifacts) = backend.open_with_artifacts().await;
    let sizes = [0, 1, 100, INLINE_MAX, INLINE_MAX + 1, 3 << 20];
    let mut stored = Vec::new();
    for size in sizes {
        let bytes: Vec<u8> = (0..size)
            .map(|i| (i % 251) as u8 ^ (size % 7) as u8)
            .collect();
        let digest = artifacts.put(&bytes).await.unwrap();
        assert_eq!(digest, Digest::of(&bytes), "{backend}: {size} bytes");
        assert_eq!(
            artifacts.put(&bytes).await.unwrap(),
            digest,
            "{backend}: {size} bytes again"
        );
        assert_eq!(
            artifacts.get(&digest).await.unwrap(),
            bytes,
            "{backend}: {size} bytes"
        );
        assert!(
            artifacts.contains(&digest).await.unwrap(),
            "{backend}: {size} bytes"
        );
        // A path, where the store gives one, holds the bytes.
        if let Some(path) = artifacts.local_path(&digest) {
            assert_eq!(
                std::fs::read(&path).unwrap(),
                bytes,
                "{backend}: {size} bytes at {}",
                path.display()
            );
        }
        stored.push((digest, bytes));
    }
    // Many at once, in the order asked, repeats and all.
    let order = [3, 0, 5, 3, 1];
    let wanted: Vec<Digest> = order.iter().map(|&i| stored[i].0.clone()).collect();
    let got = artifacts.get_many(&wanted).await.unwrap();
    let expected: Vec<Vec<u8>> = order.iter().map(|&i| stored[i].1.clone()).collect();
    assert!(got == expected, "{backend}: get_many");

    let missing = Digest::of(b"never stored");
    assert!(
        matches!(artifacts.get(&missing).await, Err(ArtifactError::NotFound(d)) if d == missing),
        "{backend}"
    );
    assert!(!artifacts.contains(&missing).await.unwrap(), "{backend}");
    assert!(
        matches!(
            artifacts
                .get_many(&[stored[0].0.clone(), missing.clone()])
                .await,
            Err(ArtifactError::NotFound(_))
        ),
        "{backend}: get_many of a missing one"
    );
}

/// An artifact an event references is there for whoever reads the event: another store on
/// the database (another process) finds it after the append, small or large.
async fn an_artifact_an_append_references_is_found_by_another_store(backend: Backend) {
    let (store, artifacts) = backend.open_with_artifacts().await;
    let small = b"a small artifact".to_vec();
    let large = vec![b'x'; INLINE_MAX + 1];
    for (seq, bytes) in [&small, &large].into_iter().enumerate() {
        let digest = artifacts.put(bytes).await.unwrap();
        let mut append = request("m-a", seq as u64, 1);
        append.events[0].data = json!({"artifact": digest.to_string()});
        store.append(append).await.unwrap();
    }
    let (other, found) = backend.open_with_artifacts().await;
    for event in other.events("m-a", 0).await.unwrap() {
        let digest: Digest = event.data["artifact"].as_str().unwrap().parse().unwrap();
        assert!(
            found.contains(&digest).await.unwrap(),
            "{backend}: {digest}"
        );
        let bytes = found.get(&digest).await.unwrap();
        assert_eq!(Digest::of(&bytes), digest, "{backend}");
    }
}

// --- Opening -------------------------------------------------------------------------------

/// Processes opening a new database at once (a command run while another starts) all get
/// it made and migrated, once.
async fn concurrent_opens_of_a_new_database_all_succeed(backend: Backend) {
    for round in 0..6 {
        let fresh = backend.another().await;
        let url = fresh.url.clone();
        let opens: Vec<_> = (0..6)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { flightdeck_store::open(&url).await })
            })
            .collect();
        for open in opens {
            let store = open
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("{backend}: round {round}: {e}"));
            assert!(
                store.missions(1).await.unwrap().is_empty(),
                "{backend}: round {round}"
            );
        }
        // And it works: an append through one is read through another.
        let a = fresh.open().await;
        a.append(request("m-a", 0, 1)).await.unwrap();
        let b = fresh.open().await;
        assert_eq!(
            b.events("m-a", 0).await.unwrap().len(),
            1,
            "{backend}: round {round}"
        );
    }
}

// --- Claiming work --------------------------------------------------------------------------

/// An append of one event to `mission` (after `expected_seq`) at `at_ms`, with these typed
/// columns.
fn with_columns(
    mission: &str,
    expected_seq: u64,
    at_ms: i64,
    columns: ProjectionColumns,
) -> AppendRequest {
    let mut request = request_at(mission, expected_seq, 1, at_ms, json!({"id": mission}));
    request.projection.columns = columns;
    request
}

fn ready() -> ProjectionColumns {
    ProjectionColumns {
        ready: true,
        ..ProjectionColumns::default()
    }
}

fn waiting(deadline: Option<i64>) -> ProjectionColumns {
    ProjectionColumns {
        waiting_for: Some("approval".into()),
        next_deadline_ms: deadline,
        ..ProjectionColumns::default()
    }
}

fn claim(owner: &str, now_ms: i64, limit: u32) -> ClaimRequest {
    ClaimRequest {
        owner: owner.into(),
        now_ms,
        ttl_ms: 500,
        limit,
        steal_from: Vec::new(),
        skip: Vec::new(),
    }
}

fn claimed_ids(claimed: &[Claimed]) -> Vec<&str> {
    claimed.iter().map(|c| c.mission.as_str()).collect()
}

/// What a claim hands out: missions ready by their columns, with a pending input, or with a
/// deadline due, the longest waiting first; never one leased to a live holder, one waiting
/// with nothing due, one asked to be skipped; each leased to the claimer at a new epoch.
async fn a_claim_hands_out_what_can_make_progress_longest_waiting_first(backend: Backend) {
    let store = backend.open().await;
    let t = 1_795_000_000_000;
    // Appended in this order: their rows' `updated_at_ms` are t+1.. in this order.
    store
        .append(with_columns("m-ready-old", 0, t + 1, ready()))
        .await
        .unwrap();
    store
        .append(with_columns("m-parked", 0, t + 2, waiting(None)))
        .await
        .unwrap();
    store
        .append(with_columns("m-due", 0, t + 3, waiting(Some(t + 100))))
        .await
        .unwrap();
    store
        .append(with_columns("m-later", 0, t + 4, waiting(Some(t + 10_000))))
        .await
        .unwrap();
    store
        .append(with_columns("m-inbox", 0, t + 5, waiting(None)))
        .await
        .unwrap();
    store
        .append(with_columns("m-held", 0, t + 6, ready()))
        .await
        .unwrap();
    store
        .append(with_columns("m-skipped", 0, t + 7, ready()))
        .await
        .unwrap();
    store
        .append(with_columns("m-ready-new", 0, t + 8, ready()))
        .await
        .unwrap();
    store.post_input(input("m-inbox", "vote")).await.unwrap();
    let live = store
        .acquire_lease("m-held", "w-live", t + 500, 60_000, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store.next_deadline_ms().await.unwrap(),
        Some(t + 100),
        "{backend}"
    );
    let mut request = claim("w1", t + 1_000, 10);
    request.skip = vec!["m-skipped".into()];
    let got = store.claim_runnable(request).await.unwrap();
    assert_eq!(
        claimed_ids(&got),
        ["m-ready-old", "m-due", "m-inbox", "m-ready-new"],
        "{backend}"
    );
    for c in &got {
        assert_eq!(c.lease.owner, "w1", "{backend}");
        assert_eq!(c.lease.expires_ms, t + 1_500, "{backend}");
        let row = store.mission(&c.mission).await.unwrap().unwrap();
        assert_eq!(
            row.lease.as_ref(),
            Some(&c.lease),
            "{backend}: {}",
            c.mission
        );
    }
    assert_eq!(
        store.mission("m-held").await.unwrap().unwrap().lease,
        Some(live),
        "{backend}: a live lease is not taken"
    );
    // Leased now: a second claimer gets only what is left (the skipped one, for it).
    let got = store
        .claim_runnable(claim("w2", t + 1_100, 10))
        .await
        .unwrap();
    assert_eq!(claimed_ids(&got), ["m-skipped"], "{backend}");
    // When the claims run out, the same missions are there to claim again, at a new epoch:
    // the late claimer's appends are fenced.
    let first = store
        .mission("m-ready-old")
        .await
        .unwrap()
        .unwrap()
        .lease
        .unwrap();
    let again = store
        .claim_runnable(claim("w3", t + 1_600, 1))
        .await
        .unwrap();
    assert_eq!(claimed_ids(&again), ["m-ready-old"], "{backend}");
    assert!(again[0].lease.epoch > first.epoch, "{backend}");
    let mut late = with_columns("m-ready-old", 1, t + 1_700, ready());
    late.fence = Some(first.epoch);
    assert!(
        matches!(store.append(late).await, Err(StoreError::Fenced { .. })),
        "{backend}"
    );
    // A dead holder's missions are taken at once when named.
    let mut steal = claim("w4", t + 1_200, 10);
    steal.steal_from = vec!["w-live".into()];
    let got = store.claim_runnable(steal).await.unwrap();
    assert_eq!(claimed_ids(&got), ["m-held"], "{backend}");
    assert_eq!(
        store.lease_holders(t + 1_650).await.unwrap().len(),
        2,
        "{backend}: w3 and w4 hold leases then ({:?})",
        store.lease_holders(t + 1_650).await.unwrap()
    );
    // Parked with nothing due, or a deadline to come: never claimed.
    let rest = store
        .claim_runnable(claim("w5", t + 9_000, 10))
        .await
        .unwrap();
    assert!(
        !claimed_ids(&rest)
            .iter()
            .any(|m| *m == "m-parked" || *m == "m-later"),
        "{backend}: {rest:?}"
    );
    // Once an append says it waits with nothing due, it is no longer handed out.
    let lease = store
        .mission("m-due")
        .await
        .unwrap()
        .unwrap()
        .lease
        .unwrap();
    let mut settled = with_columns("m-due", 1, t + 9_100, waiting(None));
    settled.fence = Some(lease.epoch);
    store.append(settled).await.unwrap();
    let rest = store
        .claim_runnable(claim("w6", t + 20_000, 10))
        .await
        .unwrap();
    assert!(
        !claimed_ids(&rest).contains(&"m-due"),
        "{backend}: {rest:?}"
    );
    assert!(
        claimed_ids(&rest).contains(&"m-later"),
        "{backend}: its deadline came"
    );
}

/// Many claimers at once, through two stores, over more missions than they ask for: no
/// mission is handed to two of them, and all of them are handed out.
async fn concurrent_claimers_never_get_the_same_mission(backend: Backend) {
    let store = backend.open().await;
    let other = backend.open().await;
    let t = 1_795_000_000_000;
    for i in 0..40 {
        store
            .append(with_columns(&format!("m-{i:02}"), 0, t + i, ready()))
            .await
            .unwrap();
    }
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = if i % 2 == 0 {
                store.clone()
            } else {
                other.clone()
            };
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = store
                        .claim_runnable(ClaimRequest {
                            ttl_ms: 60_000,
                            ..claim(&format!("w{i}"), t + 1_000, 3)
                        })
                        .await
                        .unwrap();
                    if got.is_empty() {
                        return mine;
                    }
                    mine.extend(got.into_iter().map(|c| c.mission));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let distinct: std::collections::BTreeSet<_> = all.iter().cloned().collect();
    assert_eq!(
        all.len(),
        distinct.len(),
        "{backend}: handed out twice: {all:?}"
    );
    assert_eq!(distinct.len(), 40, "{backend}");
}

// --- The global feed ------------------------------------------------------------------------

/// Every append of every mission is on the feed once, in commit order, from any position.
async fn the_feed_lists_every_append_once_in_commit_order(backend: Backend) {
    let store = backend.open().await;
    store.append(request("m-a", 0, 1)).await.unwrap();
    store.append(request("m-b", 0, 2)).await.unwrap();
    let mut parked = request("m-a", 1, 1);
    parked.projection.status = "awaiting_approval".into();
    store.append(parked).await.unwrap();
    let all = store.feed(0, 100).await.unwrap();
    let seen: Vec<(&str, u64, &str)> = all
        .iter()
        .map(|e| (e.mission.as_str(), e.last_seq, e.status.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("m-a", 1, "running"),
            ("m-b", 2, "running"),
            ("m-a", 2, "awaiting_approval")
        ],
        "{backend}"
    );
    assert!(
        all.windows(2).all(|w| w[0].position < w[1].position),
        "{backend}"
    );
    assert_eq!(
        store.feed(all[0].position, 100).await.unwrap(),
        all[1..],
        "{backend}"
    );
    assert_eq!(store.feed(0, 1).await.unwrap(), all[..1], "{backend}");
    assert!(
        store.feed(all[2].position, 100).await.unwrap().is_empty(),
        "{backend}"
    );
    // Nothing new: waiting gives up after its patience.
    let nothing = store
        .wait_for_change(all[2].position, 10, std::time::Duration::from_millis(100))
        .await
        .unwrap();
    assert!(nothing.is_empty(), "{backend}");
}

/// A reader tails the feed through another store while appenders on two stores write: it
/// sees each append exactly once, positions only ever growing, woken without polling.
async fn a_tail_of_the_feed_misses_nothing_under_concurrent_appends(backend: Backend) {
    let store = backend.open().await;
    let other = backend.open().await;
    let reader = backend.open().await;
    let writers: Vec<_> = (0..6)
        .map(|w| {
            let store = if w % 2 == 0 {
                store.clone()
            } else {
                other.clone()
            };
            tokio::spawn(async move {
                let mission = format!("m-{w}");
                for seq in 0..15 {
                    store.append(request(&mission, seq, 1)).await.unwrap();
                }
            })
        })
        .collect();
    // The tail, as a reader sees it: every entry once, positions only growing.
    let mut cursor = 0;
    let mut tail = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while tail.len() < 90 {
        assert!(
            std::time::Instant::now() < deadline,
            "{backend}: saw {}",
            tail.len()
        );
        let entries = reader
            .wait_for_change(cursor, 7, std::time::Duration::from_secs(10))
            .await
            .unwrap();
        if let Some(last) = entries.last() {
            cursor = last.position;
        }
        tail.extend(entries);
    }
    for writer in writers {
        writer.await.unwrap();
    }
    // What the feed holds once every append is in is exactly what the tail saw, in the
    // same order: no position appeared behind the reader's cursor after it moved on.
    let whole = store.feed(0, 1_000).await.unwrap();
    assert_eq!(whole.len(), 90, "{backend}");
    assert_eq!(
        tail, whole,
        "{backend}: the tail missed or reordered appends"
    );
}

/// A reader's cursor is saved durably and only ever moves forward; each reader name has its
/// own, and a store opened afresh (a restarted process) finds it.
async fn feed_cursors_only_move_forward_and_survive_a_reopen(backend: Backend) {
    let store = backend.open().await;
    assert_eq!(
        store.feed_cursor("slack-notifier").await.unwrap(),
        None,
        "{backend}: a fresh store has no cursor"
    );
    store.save_feed_cursor("slack-notifier", 5).await.unwrap();
    assert_eq!(
        store.feed_cursor("slack-notifier").await.unwrap(),
        Some(5),
        "{backend}"
    );
    store.save_feed_cursor("slack-notifier", 3).await.unwrap();
    assert_eq!(
        store.feed_cursor("slack-notifier").await.unwrap(),
        Some(5),
        "{backend}: a lower save does not move the cursor back"
    );
    assert_eq!(
        store.feed_cursor("other").await.unwrap(),
        None,
        "{backend}: readers are independent"
    );
    store.save_feed_cursor("other", 2).await.unwrap();
    store.save_feed_cursor("slack-notifier", 9).await.unwrap();
    assert_eq!(
        store.feed_cursor("other").await.unwrap(),
        Some(2),
        "{backend}"
    );
    drop(store);
    // Reopened (SQLite: the file again; PostgreSQL: a new pool), as a restarted server is.
    let reopened = backend.open().await;
    assert_eq!(
        reopened.feed_cursor("slack-notifier").await.unwrap(),
        Some(9),
        "{backend}: the cursor survives a reopen"
    );
    assert_eq!(
        reopened.feed_cursor("other").await.unwrap(),
        Some(2),
        "{backend}"
    );
    reopened
        .save_feed_cursor("slack-notifier", 4)
        .await
        .unwrap();
    assert_eq!(
        reopened.feed_cursor("slack-notifier").await.unwrap(),
        Some(9),
        "{backend}: nor back after a reopen"
    );
}

/// One holder at a time reads under a name: a lease held until it runs out or is given
/// back, each name's apart, and the cursor left as it is.
async fn a_feed_reader_is_held_by_one_owner_until_it_runs_out_or_is_released(backend: Backend) {
    let store = backend.open().await;
    let hold = |reader: &'static str, owner: &'static str, now_ms: i64| {
        let store = store.clone();
        async move {
            store
                .hold_feed_reader(reader, owner, now_ms, 500, None)
                .await
                .unwrap()
                .as_deref()
                == Some(owner)
        }
    };
    assert!(hold("slack-notifier", "a", 1_000).await, "{backend}: free");
    assert_eq!(
        store.feed_cursor("slack-notifier").await.unwrap(),
        None,
        "{backend}: holding saves no position"
    );
    assert!(
        !hold("slack-notifier", "b", 1_200).await,
        "{backend}: refused while a's lease runs"
    );
    assert!(
        hold("slack-notifier", "a", 1_400).await,
        "{backend}: a renews (until 1_900)"
    );
    assert!(
        !hold("slack-notifier", "b", 1_800).await,
        "{backend}: the renewal counts from when it was made"
    );
    assert!(
        hold("slack-notifier", "b", 1_900).await,
        "{backend}: b takes it once a's ran out"
    );
    assert!(
        !hold("slack-notifier", "a", 2_000).await,
        "{backend}: a is then refused"
    );

    // Two readers' leases are apart.
    assert!(hold("other", "a", 2_000).await, "{backend}");
    assert!(!hold("other", "b", 2_000).await, "{backend}");

    // Given back by a non-holder: nothing; by the holder: free.
    store
        .release_feed_reader("slack-notifier", "a")
        .await
        .unwrap();
    assert!(
        !hold("slack-notifier", "c", 2_000).await,
        "{backend}: only the holder gives it back"
    );
    store.save_feed_cursor("slack-notifier", 7).await.unwrap();
    store
        .release_feed_reader("slack-notifier", "b")
        .await
        .unwrap();
    assert!(
        hold("slack-notifier", "c", 2_000).await,
        "{backend}: free once given back"
    );
    assert!(
        !hold("other", "c", 2_000).await,
        "{backend}: the other reader is still a's"
    );
    store.release_feed_reader("nobody", "a").await.unwrap();

    // The cursors are as saved, holding and releasing aside.
    assert_eq!(
        store.feed_cursor("slack-notifier").await.unwrap(),
        Some(7),
        "{backend}"
    );
    assert_eq!(
        store.feed_cursor("other").await.unwrap(),
        None,
        "{backend}: a reader only held has no cursor"
    );
    store.save_feed_cursor("other", 3).await.unwrap();
    assert_eq!(
        store.feed_cursor("other").await.unwrap(),
        Some(3),
        "{backend}"
    );
    assert!(
        !hold("other", "c", 2_100).await,
        "{backend}: saving a cursor leaves the lease as it is"
    );
    store.release_feed_reader("other", "a").await.unwrap();
    assert_eq!(
        store.feed_cursor("other").await.unwrap(),
        Some(3),
        "{backend}: nor does giving it back move the cursor"
    );

    // Another store on the database (another process) sees the same lease, and who holds it.
    let other = backend.open().await;
    assert_eq!(
        other
            .hold_feed_reader("slack-notifier", "d", 2_100, 500, None)
            .await
            .unwrap()
            .as_deref(),
        Some("c"),
        "{backend}: c's lease is seen through another store"
    );
    // A holder known to be dead is taken over at once, no one else's lease.
    assert_eq!(
        other
            .hold_feed_reader("slack-notifier", "d", 2_100, 500, Some("b"))
            .await
            .unwrap()
            .as_deref(),
        Some("c"),
        "{backend}: stealing from b takes nothing from c"
    );
    assert_eq!(
        other
            .hold_feed_reader("slack-notifier", "d", 2_100, 500, Some("c"))
            .await
            .unwrap()
            .as_deref(),
        Some("d"),
        "{backend}: c's lease taken over"
    );
}

async fn one_of_many_processes_reaching_for_a_feed_reader_at_once_holds_it(backend: Backend) {
    let stores = [backend.open().await, backend.open().await];
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = stores[i % 2].clone();
            tokio::spawn(async move {
                let owner = format!("p{i}");
                let held = store
                    .hold_feed_reader("slack-notifier", &owner, 1_000, 60_000, None)
                    .await
                    .unwrap()
                    .as_deref()
                    == Some(owner.as_str());
                (owner, held)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        let (owner, held) = task.await.unwrap();
        if held {
            winners.push(owner);
        }
    }
    assert_eq!(winners.len(), 1, "{backend}: holders {winners:?}");
    assert_eq!(
        stores[1]
            .hold_feed_reader("slack-notifier", &winners[0], 1_000, 60_000, None)
            .await
            .unwrap(),
        Some(winners[0].clone()),
        "{backend}: the winner holds it"
    );
}

// --- GitHub deliveries ------------------------------------------------------------------------

/// The ids of deliveries, in the order given.
fn delivery_ids(deliveries: &[GitHubDelivery]) -> Vec<&str> {
    deliveries.iter().map(|d| d.id.as_str()).collect()
}

/// A delivery is stored once per id (a redelivery, pending or handled, is not stored again),
/// listed while pending and due (oldest received first, at most the limit asked), put off by
/// a retry until its time with the attempt counted, and once finished keeps only its id and
/// outcome; a store opened afresh finds all of it.
async fn github_deliveries_are_kept_once_until_handled(backend: Backend) {
    let store = backend.open().await;
    // Not UTF-8, with a NUL: the body is bytes, kept exactly.
    let raw: Vec<u8> = vec![b'{', 0, 0x9f, 0x92, 0x96, 0xff, b'}'];
    assert!(
        store
            .record_delivery("d-1", "pull_request", &raw, 1_000)
            .await
            .unwrap(),
        "{backend}: a new delivery is new"
    );
    assert!(
        !store
            .record_delivery("d-1", "push", b"other", 1_010)
            .await
            .unwrap(),
        "{backend}: the same id again is known"
    );
    assert!(store
        .record_delivery("d-2", "push", b"{\"ref\":\"main\"}", 1_100)
        .await
        .unwrap());
    assert!(store
        .record_delivery("d-3", "check_suite", b"{}", 1_050)
        .await
        .unwrap());
    let delivery =
        |id: &str, event: &str, body: &[u8], received_ms: i64, attempts: u32| GitHubDelivery {
            id: id.into(),
            event: event.into(),
            body: body.to_vec(),
            received_ms,
            attempts,
        };
    assert_eq!(
        store.pending_deliveries(2_000, 10).await.unwrap(),
        [
            delivery("d-1", "pull_request", &raw, 1_000, 0),
            delivery("d-3", "check_suite", b"{}", 1_050, 0),
            delivery("d-2", "push", b"{\"ref\":\"main\"}", 1_100, 0),
        ],
        "{backend}: every pending one, oldest received first, as first recorded"
    );
    assert_eq!(
        delivery_ids(&store.pending_deliveries(2_000, 2).await.unwrap()),
        ["d-1", "d-3"],
        "{backend}: at most the limit, the oldest"
    );
    assert!(
        store.pending_deliveries(2_000, 0).await.unwrap().is_empty(),
        "{backend}: a limit of 0"
    );
    assert!(
        store.pending_deliveries(999, 10).await.unwrap().is_empty(),
        "{backend}: none is due before it was received"
    );
    assert_eq!(
        delivery_ids(&store.pending_deliveries(1_050, 10).await.unwrap()),
        ["d-1", "d-3"],
        "{backend}: due at or before now"
    );
    assert_eq!(
        store.delivery_outcome("d-1").await.unwrap(),
        None,
        "{backend}: pending"
    );
    assert_eq!(
        store.delivery_outcome("d-9").await.unwrap(),
        None,
        "{backend}: unknown"
    );

    // A retry puts it off until its time and counts the attempt.
    store
        .retry_delivery("d-1", "GitHub answered 502", 5_000)
        .await
        .unwrap();
    assert_eq!(
        delivery_ids(&store.pending_deliveries(4_999, 10).await.unwrap()),
        ["d-3", "d-2"],
        "{backend}: a retried delivery is not due before its time"
    );
    let due = store.pending_deliveries(5_000, 10).await.unwrap();
    assert_eq!(
        due.first(),
        Some(&delivery("d-1", "pull_request", &raw, 1_000, 1)),
        "{backend}: due again at its time, still first (by receipt), the attempt counted"
    );
    store
        .retry_delivery("d-1", "GitHub answered 503", 6_000)
        .await
        .unwrap();
    assert!(
        !delivery_ids(&store.pending_deliveries(5_999, 10).await.unwrap()).contains(&"d-1"),
        "{backend}: the second retry put it off again"
    );
    assert_eq!(
        store.pending_deliveries(6_000, 1).await.unwrap(),
        [delivery("d-1", "pull_request", &raw, 1_000, 2)],
        "{backend}: both attempts counted"
    );

    // Finished: gone from the pending ones, its outcome kept, its body dropped, its id
    // still known.
    store
        .finish_delivery("d-3", "ignored: no mission watches this repository", 2_500)
        .await
        .unwrap();
    assert_eq!(
        delivery_ids(&store.pending_deliveries(10_000, 10).await.unwrap()),
        ["d-1", "d-2"],
        "{backend}: a handled delivery is no longer pending"
    );
    assert_eq!(
        store.delivery_outcome("d-3").await.unwrap().as_deref(),
        Some("ignored: no mission watches this repository"),
        "{backend}"
    );
    assert_eq!(
        backend.stored_delivery_body("d-3").await,
        Some(Vec::new()),
        "{backend}: a handled delivery's body is dropped"
    );
    assert_eq!(
        backend.stored_delivery_body("d-2").await,
        Some(b"{\"ref\":\"main\"}".to_vec()),
        "{backend}: a pending one's is kept"
    );
    assert!(
        !store
            .record_delivery("d-3", "check_suite", b"{}", 3_000)
            .await
            .unwrap(),
        "{backend}: a redelivery of a handled delivery is known"
    );
    assert!(
        !delivery_ids(&store.pending_deliveries(10_000, 10).await.unwrap()).contains(&"d-3"),
        "{backend}: and is not pending again"
    );

    // Handled once: a second finish or a late retry changes nothing.
    store
        .finish_delivery("d-3", "started mission m-x", 2_600)
        .await
        .unwrap();
    store.retry_delivery("d-3", "late", 2_700).await.unwrap();
    assert_eq!(
        store.delivery_outcome("d-3").await.unwrap().as_deref(),
        Some("ignored: no mission watches this repository"),
        "{backend}: the first outcome stays"
    );
    assert!(
        !delivery_ids(&store.pending_deliveries(10_000, 10).await.unwrap()).contains(&"d-3"),
        "{backend}: a retry does not bring a handled delivery back"
    );
    // Unknown ids: nothing to finish or retry, and nothing made.
    store
        .finish_delivery("d-9", "nothing", 2_800)
        .await
        .unwrap();
    store.retry_delivery("d-9", "nothing", 2_800).await.unwrap();
    assert_eq!(
        store.delivery_outcome("d-9").await.unwrap(),
        None,
        "{backend}"
    );
    assert_eq!(backend.stored_delivery_body("d-9").await, None, "{backend}");
    drop(store);

    // Reopened (SQLite: the file again; PostgreSQL: a new pool), as a restarted server is.
    let reopened = backend.open().await;
    assert_eq!(
        reopened.pending_deliveries(10_000, 10).await.unwrap(),
        [
            delivery("d-1", "pull_request", &raw, 1_000, 2),
            delivery("d-2", "push", b"{\"ref\":\"main\"}", 1_100, 0),
        ],
        "{backend}: the pending deliveries survive a reopen"
    );
    assert_eq!(
        reopened.delivery_outcome("d-3").await.unwrap().as_deref(),
        Some("ignored: no mission watches this repository"),
        "{backend}"
    );
    for id in ["d-1", "d-2", "d-3"] {
        assert!(
            !reopened
                .record_delivery(id, "push", b"{}", 20_000)
                .await
                .unwrap(),
            "{backend}: {id} is still known after a reopen"
        );
    }
    reopened
        .finish_delivery("d-1", "commented on the pull request", 20_000)
        .await
        .unwrap();
    assert_eq!(
        delivery_ids(&reopened.pending_deliveries(30_000, 10).await.unwrap()),
        ["d-2"],
        "{backend}"
    );
}

/// Many processes recording one delivery at once (GitHub redelivering while the first is
/// stored, servers behind one load balancer): exactly one stores it.
async fn one_of_many_stores_recording_a_delivery_at_once_stores_it(backend: Backend) {
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(backend.open().await);
    }
    let mut tasks = Vec::new();
    for round in 0..8 {
        let id = format!("d-{round}");
        for (i, store) in stores.iter().enumerate() {
            for attempt in 0..2 {
                let (store, id) = (store.clone(), id.clone());
                tasks.push(tokio::spawn(async move {
                    let body = format!("{i}/{attempt}");
                    let new = store
                        .record_delivery(&id, "push", body.as_bytes(), 1_000)
                        .await
                        .unwrap();
                    (id, new)
                }));
            }
        }
    }
    let mut stored = std::collections::BTreeMap::<String, usize>::new();
    for task in tasks {
        let (id, new) = task.await.unwrap();
        *stored.entry(id).or_default() += usize::from(new);
    }
    assert_eq!(stored.len(), 8, "{backend}: {stored:?}");
    assert!(
        stored.values().all(|&n| n == 1),
        "{backend}: each delivery stored exactly once: {stored:?}"
    );
    assert_eq!(
        stores[0]
            .pending_deliveries(1_000, 100)
            .await
            .unwrap()
            .len(),
        8,
        "{backend}: one row each"
    );
}

// --- The tests -----------------------------------------------------------------------------

// --- Team quotas -----------------------------------------------------------------------------

fn hold(team: &str, dimension: &str, limit: f64, amount: f64) -> flightdeck_store::QuotaHold {
    flightdeck_store::QuotaHold {
        team: team.into(),
        dimension: dimension.into(),
        limit,
        amount,
    }
}

fn reservation(
    id: &str,
    period: &str,
    holds: Vec<flightdeck_store::QuotaHold>,
) -> flightdeck_store::QuotaReservation {
    flightdeck_store::QuotaReservation {
        id: id.into(),
        mission: "m-quota".into(),
        period: period.into(),
        at_ms: 1_795_000_000_000,
        holds,
    }
}

fn settlement(id: &str, usd: f64, tokens: f64) -> flightdeck_store::QuotaSettlement {
    flightdeck_store::QuotaSettlement {
        id: id.into(),
        at_ms: 1_795_000_100_000,
        spent: vec![("usd".into(), usd), ("tokens".into(), tokens)],
    }
}

/// `(reserved, spent)` of each team's dimension in `period`, as `team dimension`.
async fn usage(
    store: &dyn flightdeck_store::EventStore,
    period: &str,
) -> std::collections::BTreeMap<String, (f64, f64)> {
    store
        .quota_usage(period)
        .await
        .unwrap()
        .into_iter()
        .map(|u| {
            assert_eq!(u.period, period);
            (format!("{} {}", u.team, u.dimension), (u.reserved, u.spent))
        })
        .collect()
}

fn granted(again: bool) -> flightdeck_store::QuotaGrant {
    flightdeck_store::QuotaGrant::Granted { again }
}

async fn quota_reservations_hold_all_or_nothing_until_settled_to_the_cost(backend: Backend) {
    use flightdeck_store::QuotaGrant;
    let store = backend.open().await;
    let p = "2026-11";
    let both = |usd: f64, tokens: f64| {
        vec![
            hold("@acme/platform", "usd", 10.0, usd),
            hold("@acme/platform", "tokens", 1_000.0, tokens),
        ]
    };
    let reserve = |id: &str, holds| store.reserve_quota(reservation(id, p, holds));
    assert_eq!(
        reserve("r1", both(3.0, 400.0)).await.unwrap(),
        granted(false)
    );
    assert_eq!(
        reserve("r2", both(6.0, 500.0)).await.unwrap(),
        granted(false)
    );
    let held = |usd: (f64, f64), tokens: (f64, f64)| {
        std::collections::BTreeMap::from([
            ("@acme/platform tokens".to_string(), tokens),
            ("@acme/platform usd".to_string(), usd),
        ])
    };
    assert_eq!(
        usage(store.as_ref(), p).await,
        held((9.0, 0.0), (900.0, 0.0))
    );

    // What does not fit is refused, naming the first hold (team, dimension order) that
    // does not, and nothing is reserved, not even the holds that would fit.
    let refused = reserve("r3", both(2.0, 50.0)).await.unwrap();
    assert_eq!(
        refused,
        QuotaGrant::Refused {
            team: "@acme/platform".into(),
            dimension: "usd".into(),
            used: 9.0,
            limit: 10.0,
            needed: 2.0,
        },
        "{backend}"
    );
    let refused = reserve("r4", both(0.5, 200.0)).await.unwrap();
    assert!(
        matches!(&refused, QuotaGrant::Refused { dimension, used, .. } if dimension == "tokens" && *used == 900.0),
        "{backend}: {refused:?}"
    );
    assert_eq!(
        usage(store.as_ref(), p).await,
        held((9.0, 0.0), (900.0, 0.0)),
        "{backend}: refusals reserve nothing"
    );

    // Settled: the reservation leaves `reserved`, the cost joins `spent`; once.
    assert!(store
        .settle_quota(settlement("r1", 1.25, 300.0))
        .await
        .unwrap());
    assert_eq!(
        usage(store.as_ref(), p).await,
        held((6.0, 1.25), (500.0, 300.0))
    );
    assert!(!store
        .settle_quota(settlement("r1", 5.0, 5.0))
        .await
        .unwrap());
    assert!(!store
        .settle_quota(settlement("nope", 5.0, 5.0))
        .await
        .unwrap());
    assert_eq!(
        usage(store.as_ref(), p).await,
        held((6.0, 1.25), (500.0, 300.0)),
        "{backend}: settled once"
    );

    // Room made by a settlement is used again; a sum may reach its limit exactly.
    assert_eq!(
        reserve("r3", both(2.0, 50.0)).await.unwrap(),
        granted(false)
    );
    assert_eq!(
        reserve("r5", both(0.75, 150.0)).await.unwrap(),
        granted(false)
    );
    assert_eq!(
        usage(store.as_ref(), p).await,
        held((8.75, 1.25), (700.0, 300.0))
    );
    let full = reserve("r6", both(0.000_001, 0.0)).await.unwrap();
    assert!(
        matches!(full, QuotaGrant::Refused { .. }),
        "{backend}: {full:?}"
    );
    // A cost not given for a dimension is nothing; a call cut off (r2) keeps holding.
    let usd_only = flightdeck_store::QuotaSettlement {
        spent: vec![("usd".into(), 0.5)],
        ..settlement("r5", 0.0, 0.0)
    };
    assert!(store.settle_quota(usd_only).await.unwrap());
    assert_eq!(
        usage(store.as_ref(), p).await,
        held((8.0, 1.75), (550.0, 300.0))
    );

    // Teams are summed apart; another store (another process) reads the same sums.
    assert_eq!(
        store
            .reserve_quota(reservation(
                "o1",
                p,
                vec![hold("@acme/sre", "usd", 1.0, 1.0)]
            ))
            .await
            .unwrap(),
        granted(false)
    );
    let other = backend.open().await;
    let mut expected = held((8.0, 1.75), (550.0, 300.0));
    expected.insert("@acme/sre usd".into(), (1.0, 0.0));
    assert_eq!(usage(other.as_ref(), p).await, expected, "{backend}");
    assert!(
        usage(other.as_ref(), "2026-10").await.is_empty(),
        "{backend}"
    );

    // What no quota can hold is refused as an error, and writes nothing.
    for bad in [
        vec![],
        vec![hold("@acme/sre", "usd", 1.0, -1.0)],
        vec![hold("@acme/sre", "usd", f64::NAN, 0.0)],
        vec![
            hold("@acme/sre", "usd", 9.0, 1.0),
            hold("@acme/sre", "usd", 9.0, 1.0),
        ],
    ] {
        let result = store
            .reserve_quota(reservation("bad", p, bad.clone()))
            .await;
        assert!(result.is_err(), "{backend}: {bad:?} gave {result:?}");
    }
    assert_eq!(usage(other.as_ref(), p).await, expected, "{backend}");
}

async fn a_reservation_asked_again_is_granted_without_reserving_twice(backend: Backend) {
    let store = backend.open().await;
    let other = backend.open().await;
    let p = "2026-11";
    let one = |amount: f64| vec![hold("@t/a", "usd", 5.0, amount)];
    assert_eq!(
        store
            .reserve_quota(reservation("m-1/step-1.m1/1", p, one(2.0)))
            .await
            .unwrap(),
        granted(false)
    );
    // Again, through another store (a driver retrying after a crash), even with another
    // amount: the reservation stands as it was.
    for amount in [2.0, 3.0] {
        assert_eq!(
            other
                .reserve_quota(reservation("m-1/step-1.m1/1", p, one(amount)))
                .await
                .unwrap(),
            granted(true),
            "{backend}"
        );
    }
    assert_eq!(
        usage(store.as_ref(), p).await["@t/a usd"],
        (2.0, 0.0),
        "{backend}"
    );
    // Settled, it is still never reserved again.
    assert!(store
        .settle_quota(settlement("m-1/step-1.m1/1", 1.0, 0.0))
        .await
        .unwrap());
    assert_eq!(
        store
            .reserve_quota(reservation("m-1/step-1.m1/1", p, one(2.0)))
            .await
            .unwrap(),
        granted(true)
    );
    assert_eq!(
        usage(store.as_ref(), p).await["@t/a usd"],
        (0.0, 1.0),
        "{backend}"
    );
    // A refused reservation leaves no trace: asked again once it fits, it is made.
    let big = store
        .reserve_quota(reservation("m-1/step-1.m2/1", p, one(4.5)))
        .await
        .unwrap();
    assert!(
        matches!(big, flightdeck_store::QuotaGrant::Refused { .. }),
        "{backend}"
    );
    assert!(store
        .settle_quota(settlement("m-1/step-1.m2/1", 1.0, 0.0))
        .await
        .is_ok());
    assert_eq!(
        store
            .reserve_quota(reservation("m-1/step-1.m2/1", p, one(4.0)))
            .await
            .unwrap(),
        granted(false),
        "{backend}"
    );
    assert_eq!(
        usage(store.as_ref(), p).await["@t/a usd"],
        (4.0, 1.0),
        "{backend}"
    );
}

async fn quotas_count_per_calendar_month(backend: Backend) {
    use flightdeck_core::quota::period_of;
    let store = backend.open().await;
    // The last millisecond of January 2026 and the first of February, UTC.
    let (january, february) = (1_769_903_999_999, 1_769_904_000_000);
    let (jan, feb) = (period_of(january), period_of(february));
    assert_eq!((jan.as_str(), feb.as_str()), ("2026-01", "2026-02"));
    let at = |id: &str, period: &str, at_ms: i64, amount: f64| flightdeck_store::QuotaReservation {
        at_ms,
        ..reservation(id, period, vec![hold("@t/a", "tokens", 100.0, amount)])
    };
    assert_eq!(
        store
            .reserve_quota(at("j1", &jan, january, 100.0))
            .await
            .unwrap(),
        granted(false)
    );
    let full = store
        .reserve_quota(at("j2", &jan, january, 1.0))
        .await
        .unwrap();
    assert!(
        matches!(full, flightdeck_store::QuotaGrant::Refused { .. }),
        "{backend}"
    );
    // A new month starts empty.
    assert_eq!(
        store
            .reserve_quota(at("f1", &feb, february, 100.0))
            .await
            .unwrap(),
        granted(false)
    );
    // A January call settled in February counts in January, where it was reserved.
    let late = flightdeck_store::QuotaSettlement {
        at_ms: february + 1_000,
        ..settlement("j1", 0.0, 60.0)
    };
    assert!(store.settle_quota(late).await.unwrap());
    assert_eq!(
        usage(store.as_ref(), &jan).await["@t/a tokens"],
        (0.0, 60.0),
        "{backend}"
    );
    assert_eq!(
        usage(store.as_ref(), &feb).await["@t/a tokens"],
        (100.0, 0.0),
        "{backend}"
    );
    assert_eq!(
        store
            .reserve_quota(at("j2", &jan, january, 40.0))
            .await
            .unwrap(),
        granted(false)
    );
}

async fn concurrent_reservations_from_many_stores_never_pass_the_limit(backend: Backend) {
    let stores = [
        backend.open().await,
        backend.open().await,
        backend.open().await,
    ];
    let p = "2026-11";
    // 48 reservations of 1 (tokens 10) against limits of 10 usd and 1,000 tokens, from three
    // stores at once; 8 ids are asked twice at the same moment. Each granted call settles to
    // its whole reservation, so the sums only grow and exactly ten fit.
    let tasks: Vec<_> = (0..48)
        .map(|i| {
            let store = stores[i % 3].clone();
            let id = format!("r{}", i % 40);
            tokio::spawn(async move {
                let grant = store
                    .reserve_quota(reservation(
                        &id,
                        p,
                        vec![
                            hold("@acme/platform", "usd", 10.0, 1.0),
                            hold("@acme/platform", "tokens", 1_000.0, 10.0),
                        ],
                    ))
                    .await
                    .unwrap();
                if grant == granted(false) && i % 2 == 0 {
                    store
                        .settle_quota(settlement(&id, 1.0, 10.0))
                        .await
                        .unwrap();
                }
                (id, grant)
            })
        })
        .collect();
    let mut made = Vec::new();
    for task in tasks {
        let (id, grant) = task.await.unwrap();
        if grant == granted(false) {
            made.push(id);
        }
    }
    made.sort();
    let reserved_once = {
        let mut ids = made.clone();
        ids.dedup();
        ids.len() == made.len()
    };
    assert!(
        reserved_once,
        "{backend}: an id was reserved twice: {made:?}"
    );
    assert_eq!(made.len(), 10, "{backend}: made {made:?}");
    let sums = usage(stores[1].as_ref(), p).await;
    let (usd, tokens) = (sums["@acme/platform usd"], sums["@acme/platform tokens"]);
    assert!((usd.0 + usd.1 - 10.0).abs() < 1e-9, "{backend}: {sums:?}");
    assert!(
        (tokens.0 + tokens.1 - 100.0).abs() < 1e-9,
        "{backend}: {sums:?}"
    );
}

/// Makes each check a test that runs it against every backend (`common::backends`).
macro_rules! on_every_backend {
    ($($check:ident),* $(,)?) => {
        mod on_every_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    crate::common::backends::run(super::$check).await;
                }
            )*
        }
    };
}

on_every_backend!(
    appends_are_gapless_chained_and_projected,
    event_data_is_stored_canonically_and_read_back_as_written,
    a_stale_writer_is_refused_and_leaves_no_trace,
    concurrent_appenders_on_one_mission_never_both_win,
    many_missions_appending_at_once_all_land,
    a_long_timeline_reads_whole_and_in_order,
    events_between_reads_exactly_the_page_asked_for,
    an_unknown_mission_reads_as_nothing,
    projection_items_are_kept_one_by_one_and_read_back_into_the_summary,
    a_mission_row_carries_the_latest_projection_and_the_timelines_times,
    missions_are_listed_newest_first_and_indexed_alike,
    the_index_of_a_requesters_missions_follows_their_projections,
    mission_ids_with_a_prefix_are_matched_as_plain_text,
    leases_exclude_other_owners_until_expiry_or_steal,
    appends_carrying_a_stale_lease_epoch_change_nothing,
    one_of_many_workers_reaching_for_a_lease_at_once_gets_it,
    a_posted_input_is_pending_until_an_append_applies_it,
    input_payloads_come_back_as_posted,
    an_input_is_refused_once_and_then_cannot_be_applied,
    consuming_an_input_twice_is_refused_and_writes_nothing,
    another_missions_input_cannot_be_consumed,
    an_input_for_an_unknown_mission_is_refused,
    the_scheduler_sees_missions_waiting_longest_first,
    a_bad_consume_fails_alone_among_concurrent_appends,
    appends_and_inbox_changes_wake_a_feed_of_the_same_store,
    an_append_through_another_store_wakes_the_feed_and_is_visible,
    inbox_changes_through_another_store_wake_the_feed,
    an_inputs_feed_wakes_on_posts_here_and_through_another_store,
    feeds_outlive_each_other_and_a_new_one_works_after_all_are_gone,
    tokens_are_found_by_hash_revoked_once_and_touched,
    artifacts_are_content_addressed_and_read_back,
    an_artifact_an_append_references_is_found_by_another_store,
    concurrent_opens_of_a_new_database_all_succeed,
    a_claim_hands_out_what_can_make_progress_longest_waiting_first,
    concurrent_claimers_never_get_the_same_mission,
    the_feed_lists_every_append_once_in_commit_order,
    a_tail_of_the_feed_misses_nothing_under_concurrent_appends,
    feed_cursors_only_move_forward_and_survive_a_reopen,
    a_feed_reader_is_held_by_one_owner_until_it_runs_out_or_is_released,
    one_of_many_processes_reaching_for_a_feed_reader_at_once_holds_it,
    quota_reservations_hold_all_or_nothing_until_settled_to_the_cost,
    a_reservation_asked_again_is_granted_without_reserving_twice,
    quotas_count_per_calendar_month,
    concurrent_reservations_from_many_stores_never_pass_the_limit,
    github_deliveries_are_kept_once_until_handled,
    one_of_many_stores_recording_a_delivery_at_once_stores_it,
);

/// The PostgreSQL backend's URL: the test server's, with the backend's database in it.
#[test]
fn a_backends_database_url_replaces_only_the_database() {
    let cases = [
        (
            "postgres://postgres@127.0.0.1:55432/postgres",
            "postgres://postgres@127.0.0.1:55432/fd_test_x",
        ),
        (
            "postgres://u:p@host/db?sslmode=disable",
            "postgres://u:p@host/fd_test_x?sslmode=disable",
        ),
        ("postgresql://host", "postgresql://host/fd_test_x"),
        ("postgres://host/", "postgres://host/fd_test_x"),
    ];
    for (url, expected) in cases {
        assert_eq!(with_database(url, "fd_test_x"), expected, "{url}");
    }
}
