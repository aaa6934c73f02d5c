//! The SQLite store's change feeds where they depend on its files: a driver's inputs feed
//! watches the `-inbox` file alone, so its own appends do not wake it, and a read-only
//! follower's own reads do not wake its feed. That feeds wake on appends and inbox changes,
//! through the same store or another, is checked on every backend in conformance.rs. No
//! timing is asserted: each wait has a generous deadline that only a broken feed reaches.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use std::time::Duration;

use common::{db, fired, input, open, request};
use flightdeck_store::{ChangeFeed, EventStore, SqliteStore};

/// A driver's feed: woken by inputs posted here or through another store (another process),
/// not by the driver's own appends, so a driver does not look at its inbox after each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inputs_feed_is_not_woken_by_the_drivers_own_appends() {
    let dir = tempfile::tempdir().unwrap();
    let driver = open(dir.path()).await;
    let poster = SqliteStore::open(&db(dir.path())).await.unwrap();
    let mut inputs = driver.subscribe_inputs().await.unwrap();
    let mut everything = driver.subscribe().await.unwrap();
    for seq in 0..5u64 {
        driver.append(request("m-a", seq, 1)).await.unwrap();
    }
    fired(&mut everything).await;
    // Long enough for a wrong wake-up through the watcher to arrive; nothing may.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !inputs.has_changed(),
        "the driver's own appends woke its inputs feed"
    );

    poster.post_input(input("m-a", "cancel")).await.unwrap();
    fired(&mut inputs).await;
    driver.post_input(input("m-a", "cancel")).await.unwrap();
    fired(&mut inputs).await;
    assert!(std::fs::metadata(format!("{}-inbox", db(dir.path()).display())).is_ok());
}

/// A follower (`timeline --follow`) on an idle database: its store is read-only and, with no
/// writer, reads through a fresh `immutable=1` connection each time, opening and closing the
/// database file. Those reads must not wake its own feed, or it would read again at once,
/// forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readers_own_reads_do_not_wake_its_feed() {
    let dir = tempfile::tempdir().unwrap();
    let writer = open(dir.path()).await;
    writer.append(request("m-a", 0, 1)).await.unwrap();
    drop(writer); // the last connection: the `-wal` is checkpointed and removed
    let follower = SqliteStore::open_read_only(&db(dir.path())).await.unwrap();
    let mut feed = follower.subscribe().await.unwrap();
    for _ in 0..5 {
        assert_eq!(follower.events("m-a", 0).await.unwrap().len(), 1);
        // A CLI listing from another process reads the same way.
        let other = SqliteStore::open_read_only(&db(dir.path())).await.unwrap();
        assert!(other.mission("m-a").await.unwrap().is_some());
    }
    // Long enough for a wake-up through the watcher to arrive; none may.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!feed.has_changed(), "reads woke the feed");

    // A write still does.
    let writer = open(dir.path()).await;
    writer.append(request("m-a", 1, 1)).await.unwrap();
    fired(&mut feed).await;
}

#[tokio::test]
async fn a_never_feed_never_fires() {
    let mut feed = ChangeFeed::never();
    assert!(
        tokio::time::timeout(Duration::from_millis(50), feed.changed())
            .await
            .is_err()
    );
}
