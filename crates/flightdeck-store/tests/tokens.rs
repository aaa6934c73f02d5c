//! API tokens in the SQLite store: kept by hash, revoked once, used, and never changed
//! otherwise (the schema refuses it: a guard against mistakes, not against someone who can
//! write the file, who can drop the trigger too).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use common::{db, open, request};
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
async fn tokens_are_found_by_hash_revoked_once_and_otherwise_unchangeable() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    store.create_token(row("tok_a", "aa")).await.unwrap();
    store.create_token(row("tok_b", "bb")).await.unwrap();
    // One hash, one token; the refusal fails that write alone, not the appends written in
    // the same transaction.
    let (refused, appended) = tokio::join!(
        store.create_token(row("tok_c", "aa")),
        store.append(request("m-a", 0, 2))
    );
    assert!(refused.is_err());
    assert_eq!(appended.unwrap().len(), 2);
    assert_eq!(store.events("m-a", 0).await.unwrap().len(), 2);
    let found = store.token_by_hash("aa").await.unwrap().unwrap();
    assert_eq!(found, row("tok_a", "aa"));
    assert!(store.token_by_hash("cc").await.unwrap().is_none());
    assert!(store.revoke_token("tok_a", 2_000).await.unwrap());
    assert!(
        !store.revoke_token("tok_a", 3_000).await.unwrap(),
        "revoked once"
    );
    assert!(!store.revoke_token("tok_zz", 3_000).await.unwrap());
    store.touch_token("tok_b", 2_500).await.unwrap();
    let listed = store.tokens().await.unwrap();
    assert_eq!(listed.len(), 2);
    let a = listed.iter().find(|t| t.id == "tok_a").unwrap();
    assert_eq!(a.revoked_at_ms, Some(2_000));
    let b = listed.iter().find(|t| t.id == "tok_b").unwrap();
    assert_eq!(b.last_used_ms, Some(2_500));
    drop(store);
    // Read-only stores read them too.
    let reader = SqliteStore::open_read_only(&db(dir.path())).await.unwrap();
    assert!(reader.token_by_hash("bb").await.unwrap().is_some());
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
