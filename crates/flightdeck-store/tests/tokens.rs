//! API tokens in the SQLite store: read through a read-only store too, and never changed
//! but by revoking and using them (the schema refuses it: a guard against mistakes, not
//! against someone who can write the file, who can drop the trigger too). How tokens behave,
//! on every backend, is checked in conformance.rs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use common::{db, open};
use flightdeck_store::{EventStore, SqliteStore, TokenRow};

fn row(id: &str, hash: &str) -> TokenRow {
    TokenRow {
        id: id.into(),
        hash: hash.into(),
        owner: "@alice".into(),
        role: "approver".into(),
        created_at_ms: 1_000,
        created_by: "@root".into(),
        expires_at_ms: Some(9_000),
        revoked_at_ms: None,
        last_used_ms: None,
    }
}

#[tokio::test]
async fn tokens_are_read_read_only_and_otherwise_unchangeable() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    store.create_token(row("tok_a", "aa")).await.unwrap();
    store.create_token(row("tok_b", "bb")).await.unwrap();
    assert!(store.revoke_token("tok_a", 2_000).await.unwrap());
    drop(store);
    // Read-only stores read them too, and make none.
    let reader = SqliteStore::open_read_only(&db(dir.path())).await.unwrap();
    assert_eq!(
        reader.token_by_hash("bb").await.unwrap(),
        Some(row("tok_b", "bb"))
    );
    assert_eq!(reader.tokens().await.unwrap().len(), 2);
    assert!(reader.create_token(row("tok_d", "dd")).await.is_err());
    drop(reader);
    // An UPDATE cannot give a token another role, owner or expiry, or take back a
    // revocation.
    let conn = rusqlite::Connection::open(db(dir.path())).unwrap();
    for sql in [
        "UPDATE tokens SET role = 'admin' WHERE id = 'tok_b'",
        "UPDATE tokens SET owner = '@mallory' WHERE id = 'tok_b'",
        "UPDATE tokens SET expires_at_ms = NULL WHERE id = 'tok_b'",
        "UPDATE tokens SET hash = 'ee' WHERE id = 'tok_b'",
        "UPDATE tokens SET revoked_at_ms = NULL WHERE id = 'tok_a'",
        "UPDATE tokens SET role = 'root' WHERE id = 'tok_b'",
    ] {
        assert!(conn.execute_batch(sql).is_err(), "{sql}");
    }
    conn.execute_batch("UPDATE tokens SET last_used_ms = 5 WHERE id = 'tok_b'")
        .unwrap();
}
