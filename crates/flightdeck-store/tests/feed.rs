//! Change feeds: woken by appends and inbox changes made through the same store, and through
//! another store on the same file (as another process would be), without polling. No timing
//! is asserted: each wait has a generous deadline that only a broken feed reaches.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use std::time::Duration;

use common::{db, fired, input, open, request, DEADLINE};
use flightdeck_store::{ChangeFeed, EventStore, InputState, SqliteStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_wakes_a_feed_of_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
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
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_through_another_connection_wakes_the_feed_and_is_visible() {
    let dir = tempfile::tempdir().unwrap();
    let writer = open(dir.path()).await;
    let reader = SqliteStore::open(&db(dir.path())).await.unwrap();
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
                .unwrap_or_else(|_| panic!("append {seq} never woke the other store's feed"))
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_changes_through_another_connection_wake_the_feed() {
    let dir = tempfile::tempdir().unwrap();
    let driver = open(dir.path()).await;
    driver.append(request("m-a", 0, 1)).await.unwrap();
    // The poster (another process, e.g. `flightdeck approve`) waits on its input's state.
    let poster = SqliteStore::open(&db(dir.path())).await.unwrap();
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
            .expect("the post never woke the driver")
            .unwrap();
    }
    driver
        .append(common::consuming(request("m-a", 1, 1), &[id]))
        .await
        .unwrap();
    loop {
        let state = poster.input(id).await.unwrap().unwrap().state;
        if state == (InputState::Applied { seq: 2 }) {
            break;
        }
        tokio::time::timeout_at(deadline, poster_feed.changed())
            .await
            .expect("applying the input never woke the poster")
            .unwrap();
    }
}

/// A driver's feed: woken by inputs posted here or through another store (another process),
/// not by the driver's own appends, so a driver does not look at its inbox after each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inputs_feed_wakes_on_posts_only() {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feeds_share_one_watcher_and_outlive_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let writer = open(dir.path()).await;
    let reader = SqliteStore::open(&db(dir.path())).await.unwrap();
    let first = reader.subscribe().await.unwrap();
    let mut second = reader.subscribe().await.unwrap();
    drop(first);
    writer.append(request("m-a", 0, 1)).await.unwrap();
    fired(&mut second).await;
    drop(second);
    // All feeds gone (the watcher stopped): a new one starts it again.
    let mut third = reader.subscribe().await.unwrap();
    writer.append(request("m-a", 1, 1)).await.unwrap();
    fired(&mut third).await;
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
