//! API tokens through the application layer, over a real SQLite store: made once, found by
//! their hash, refused when unknown, malformed, revoked, expired, or when their person left
//! the directory.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::Path;

use flightdeck_app::tokens::{self, Role, TOKEN_PREFIX};
use flightdeck_app::{Config, ErrorKind};
use flightdeck_store::{EventStore, SqliteStore};

fn people(text: &str) -> flightdeck_policy::People {
    let path = Path::new("config.toml");
    Config::parse(text, path).unwrap().people(path).unwrap()
}

const BOB: &str = "[people.bob]\nhandle = \"@bob\"\nemails = [\"bob@acme.com\"]\n";
const CAROL: &str = "[people.carol]\nhandle = \"@carol\"\n";

#[tokio::test]
async fn tokens_act_as_their_person_until_revoked_expired_or_the_person_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("flightdeck.db"))
        .await
        .unwrap();
    let with_bob = people(&format!("{BOB}{CAROL}"));
    let now = 1_800_000_000_000;
    let made = tokens::create(
        &store,
        &with_bob,
        "bob@acme.com",
        Role::Approver,
        Some(1),
        "@carol",
        now,
    )
    .await
    .unwrap();
    assert!(made.secret.starts_with(TOKEN_PREFIX));
    assert_eq!(made.secret.len(), TOKEN_PREFIX.len() + 43);
    assert_eq!(made.row.owner, "@bob", "resolved to the person");
    assert_ne!(made.row.hash, made.secret);
    let stored = store.tokens().await.unwrap();
    assert_eq!(stored.len(), 1);
    assert!(
        !format!("{stored:?}").contains(&made.secret),
        "only the hash is kept"
    );

    let who = tokens::authenticate(&store, &with_bob, &made.secret, now + 1)
        .await
        .unwrap();
    assert_eq!((who.handle.as_str(), who.role), ("@bob", Role::Approver));
    assert!(store.tokens().await.unwrap()[0].last_used_ms.is_some());

    // (presented, people, at, what the refusal says)
    let cases: Vec<(String, &flightdeck_policy::People, i64, &str)> = vec![
        ("fd_guessed".into(), &with_bob, now, "not valid"),
        (
            made.secret.replace("fd_", "xx_"),
            &with_bob,
            now,
            "not valid",
        ),
        (format!("{} ", made.secret), &with_bob, now, ""),
        (made.secret.clone(), &with_bob, now + 86_400_000, "expired"),
    ];
    let without_bob = people(CAROL);
    for (presented, directory, at, says) in cases {
        let result = tokens::authenticate(&store, directory, &presented, at).await;
        if says.is_empty() {
            assert!(
                result.is_ok(),
                "{presented:?}: surrounding spaces are not part of a token"
            );
            continue;
        }
        let error = result.unwrap_err();
        assert_eq!(error.kind, ErrorKind::Unauthenticated, "{presented}");
        assert!(
            error.message.contains(says),
            "{presented}: {}",
            error.message
        );
    }
    let left = tokens::authenticate(&store, &without_bob, &made.secret, now)
        .await
        .unwrap_err();
    assert!(
        left.message.contains("no longer in [people]"),
        "{}",
        left.message
    );
    // Someone the directory does not know gets no token; neither does a zero-day one.
    let nobody = tokens::create(
        &store,
        &with_bob,
        "@mallory",
        Role::Viewer,
        None,
        "@carol",
        now,
    )
    .await;
    assert_eq!(nobody.unwrap_err().kind, ErrorKind::BadInput);
    let zero = tokens::create(
        &store,
        &with_bob,
        "@bob",
        Role::Viewer,
        Some(0),
        "@carol",
        now,
    )
    .await;
    assert_eq!(zero.unwrap_err().kind, ErrorKind::BadInput);

    let revoked = tokens::revoke(&store, &made.row.id, now + 2).await.unwrap();
    assert_eq!(revoked.revoked_at_ms, Some(now + 2));
    let error = tokens::authenticate(&store, &with_bob, &made.secret, now + 3)
        .await
        .unwrap_err();
    assert!(error.message.contains("revoked"), "{}", error.message);
    assert_eq!(
        tokens::revoke(&store, &made.row.id, now + 4)
            .await
            .unwrap_err()
            .kind,
        ErrorKind::Conflict
    );
    assert_eq!(
        tokens::revoke(&store, "tok_nope", now)
            .await
            .unwrap_err()
            .kind,
        ErrorKind::NotFound
    );
}

#[test]
fn roles_are_ordered() {
    assert!(Role::Admin.allows(Role::Approver));
    assert!(Role::Approver.allows(Role::Operator));
    assert!(Role::Operator.allows(Role::Viewer));
    assert!(!Role::Viewer.allows(Role::Operator));
    assert!(!Role::Operator.allows(Role::Approver));
    assert!(!Role::Approver.allows(Role::Admin));
    for role in Role::ALL {
        assert_eq!(Role::parse(role.as_str()), Some(role));
    }
    assert_eq!(Role::parse("root"), None);
}
