//! A mission's inbox: inputs posted by others, taken in by the mission's appends (applied in
//! the transaction of the events they led to) or refused, each decided once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use std::sync::Arc;

use common::{consuming, input, open, request};
use flightdeck_store::{EventStore, InputState, SqliteStore, StoreError};
use serde_json::json;

#[tokio::test]
async fn a_posted_input_is_pending_until_an_append_applies_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    store.append(request("m-a", 0, 1)).await.unwrap();
    let vote = store
        .post_input(input("m-a", "approval.vote"))
        .await
        .unwrap();
    let raise = store
        .post_input(input("m-a", "budget.raise"))
        .await
        .unwrap();
    assert!(raise > vote);

    let pending = store.pending_inputs("m-a").await.unwrap();
    assert_eq!(
        pending.iter().map(|i| i.id).collect::<Vec<_>>(),
        [vote, raise],
        "oldest first"
    );
    assert_eq!(pending[0].kind, "approval.vote");
    assert_eq!(pending[0].mission, "m-a");
    assert_eq!(
        pending[0].payload,
        json!({"by": "alice", "kind": "approval.vote"})
    );
    assert_eq!(pending[0].posted_at_ms, 1_795_000_100_000);
    assert_eq!(pending[0].state, InputState::Pending);
    assert_eq!(
        store.missions_with_pending_inputs(10).await.unwrap(),
        ["m-a"]
    );

    // One append of two events applies the vote: at the seq of its last event.
    let stored = store
        .append(consuming(request("m-a", 1, 2), &[vote]))
        .await
        .unwrap();
    assert_eq!(stored.last().unwrap().seq, 3);
    let row = store.input(vote).await.unwrap().unwrap();
    assert_eq!(row.state, InputState::Applied { seq: 3 });
    assert_eq!(
        store
            .pending_inputs("m-a")
            .await
            .unwrap()
            .iter()
            .map(|i| i.id)
            .collect::<Vec<_>>(),
        [raise]
    );
    assert_eq!(store.input(raise + 100).await.unwrap(), None);

    // Durable: a store opened afresh sees the same inbox.
    drop(store);
    let store = open(dir.path()).await;
    assert_eq!(
        store.input(vote).await.unwrap().unwrap().state,
        InputState::Applied { seq: 3 }
    );
    assert_eq!(store.pending_inputs("m-a").await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_input_is_refused_once_and_then_cannot_be_applied() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    store.append(request("m-a", 0, 1)).await.unwrap();
    let id = store
        .post_input(input("m-a", "budget.raise"))
        .await
        .unwrap();
    store
        .refuse_input(id, "the mission is finished", 1_795_000_200_000)
        .await
        .unwrap();
    assert_eq!(
        store.input(id).await.unwrap().unwrap().state,
        InputState::Refused {
            reason: "the mission is finished".into()
        }
    );
    assert!(store.pending_inputs("m-a").await.unwrap().is_empty());
    assert!(store
        .missions_with_pending_inputs(10)
        .await
        .unwrap()
        .is_empty());

    let again = store.refuse_input(id, "twice", 0).await.unwrap_err();
    assert!(
        matches!(again, StoreError::InputNotPending { id: i } if i == id),
        "{again}"
    );
    let unknown = store.refuse_input(id + 1, "who?", 0).await.unwrap_err();
    assert!(
        matches!(unknown, StoreError::UnknownInput { .. }),
        "{unknown}"
    );

    let err = store
        .append(consuming(request("m-a", 1, 1), &[id]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::InputNotPending { id: i } if i == id),
        "{err}"
    );
    assert_eq!(
        store.events("m-a", 0).await.unwrap().len(),
        1,
        "nothing written"
    );
    assert_eq!(
        store.input(id).await.unwrap().unwrap().state,
        InputState::Refused {
            reason: "the mission is finished".into()
        }
    );
}

#[tokio::test]
async fn consuming_an_input_twice_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
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

    // `a` is applied already: the append fails whole, `b` stays pending.
    let err = store
        .append(consuming(request("m-a", 2, 1), &[b, a]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::InputNotPending { id } if id == a),
        "{err}"
    );
    // Named twice in one append.
    let err = store
        .append(consuming(request("m-a", 2, 1), &[b, b]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::InputNotPending { id } if id == b),
        "{err}"
    );
    let err = store
        .append(consuming(request("m-a", 2, 1), &[b + 1000]))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnknownInput { .. }), "{err}");

    assert_eq!(store.events("m-a", 0).await.unwrap().len(), 2);
    assert_eq!(store.mission("m-a").await.unwrap().unwrap().last_seq, 2);
    assert_eq!(
        store.input(a).await.unwrap().unwrap().state,
        InputState::Applied { seq: 2 }
    );
    assert_eq!(
        store.input(b).await.unwrap().unwrap().state,
        InputState::Pending
    );

    // A stale append that consumes fails as a conflict and applies nothing either.
    let err = store
        .append(consuming(request("m-a", 1, 1), &[b]))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert_eq!(
        store.input(b).await.unwrap().unwrap().state,
        InputState::Pending
    );
    store
        .append(consuming(request("m-a", 2, 1), &[b]))
        .await
        .unwrap();
    assert_eq!(
        store.input(b).await.unwrap().unwrap().state,
        InputState::Applied { seq: 3 }
    );
}

#[tokio::test]
async fn another_missions_input_cannot_be_consumed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    store.append(request("m-a", 0, 1)).await.unwrap();
    store.append(request("m-b", 0, 1)).await.unwrap();
    let for_b = store.post_input(input("m-b", "cancel")).await.unwrap();
    let err = store
        .append(consuming(request("m-a", 1, 1), &[for_b]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::InputNotPending { id } if id == for_b),
        "{err}"
    );
    assert_eq!(store.events("m-a", 0).await.unwrap().len(), 1);
    assert_eq!(
        store.input(for_b).await.unwrap().unwrap().state,
        InputState::Pending
    );
}

#[tokio::test]
async fn an_input_for_an_unknown_mission_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let err = store
        .post_input(input("m-nope", "cancel"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::UnknownMission { mission } if mission == "m-nope"),
        "{err}"
    );
    assert!(store.pending_inputs("m-nope").await.unwrap().is_empty());
    assert!(store
        .missions_with_pending_inputs(10)
        .await
        .unwrap()
        .is_empty());
    assert!(store.mission("m-nope").await.unwrap().is_none());
}

#[tokio::test]
async fn the_scheduler_sees_missions_waiting_longest_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    for m in ["m-a", "m-b", "m-c"] {
        store.append(request(m, 0, 1)).await.unwrap();
    }
    let b1 = store.post_input(input("m-b", "x")).await.unwrap();
    let _a1 = store.post_input(input("m-a", "x")).await.unwrap();
    let _b2 = store.post_input(input("m-b", "x")).await.unwrap();
    let c1 = store.post_input(input("m-c", "x")).await.unwrap();
    assert_eq!(
        store.missions_with_pending_inputs(10).await.unwrap(),
        ["m-b", "m-a", "m-c"]
    );
    assert_eq!(
        store.missions_with_pending_inputs(2).await.unwrap(),
        ["m-b", "m-a"]
    );
    store.refuse_input(c1, "no", 0).await.unwrap();
    store
        .append(consuming(request("m-b", 1, 1), &[b1]))
        .await
        .unwrap();
    assert_eq!(
        store.missions_with_pending_inputs(10).await.unwrap(),
        ["m-a", "m-b"]
    );
}

/// Many missions append at once (group commit puts them in shared transactions); one of the
/// appends consumes an input that is not pending. It fails alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_consume_fails_alone_in_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()).await);
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
                assert!(matches!(result, Err(StoreError::InputNotPending { .. })));
            } else if i == bad {
                // Its first append failed, so its seq lags one behind.
                assert!(matches!(result, Err(StoreError::Conflict { .. })));
            } else {
                result.unwrap();
            }
        }
    }
    for (i, m) in missions.iter().enumerate() {
        let events = store.events(m, 0).await.unwrap();
        if i == bad {
            assert_eq!(events.len(), 1);
            assert!(matches!(
                store.input(inputs[i]).await.unwrap().unwrap().state,
                InputState::Refused { .. }
            ));
        } else {
            assert_eq!(events.len(), 4);
            assert_eq!(
                store.input(inputs[i]).await.unwrap().unwrap().state,
                InputState::Applied { seq: 2 }
            );
        }
    }
}

#[tokio::test]
async fn decided_inputs_cannot_be_edited_behind_the_stores_back() {
    let dir = tempfile::tempdir().unwrap();
    let store: SqliteStore = open(dir.path()).await;
    store.append(request("m-a", 0, 1)).await.unwrap();
    let id = store.post_input(input("m-a", "x")).await.unwrap();
    store.refuse_input(id, "no", 0).await.unwrap();
    let conn = rusqlite::Connection::open(common::db(dir.path())).unwrap();
    let err = conn
        .execute("UPDATE inputs SET state = 'pending', reason = NULL, decided_at_ms = NULL WHERE id = ?1", [id])
        .unwrap_err();
    assert!(err.to_string().contains("decided once"), "{err}");
    let err = conn
        .execute(
            "INSERT INTO inputs (mission, kind, payload, posted_at_ms, state) VALUES ('m-a', 'x', '{}', 0, 'applied')",
            [],
        )
        .unwrap_err();
    assert!(err.to_string().contains("CHECK"), "{err}");
}
