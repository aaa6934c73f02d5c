//! The SQLite store's inbox table guards itself: a decided input cannot be edited behind the
//! store's back (a guard against mistakes, not against someone who can write the file, who
//! can drop the trigger too). How the inbox behaves, on every backend, is checked in
//! conformance.rs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use common::{input, open, request};
use flightdeck_store::{EventStore, SqliteStore};

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
