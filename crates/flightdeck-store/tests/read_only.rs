//! Read-only stores: reading never writes (no migration, no mark, no writer, no new
//! database), writes are refused, and reading works where writing cannot: a read-only
//! directory or file system, a full disk, a read-only view of a database another process
//! is writing. The mounts need root (with CAP_SYS_ADMIN); without it those tests say so and
//! check what they can.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)] // test code

mod common;

use std::path::Path;

use common::{consuming, db, fired, input, open, request, Mount, DEADLINE};
use flightdeck_store::{
    ArtifactError, ArtifactStore, EventStore, InputState, SqliteStore, StoreError,
};

/// A database with a mission of 3 events and an applied and a pending input.
async fn populate(dir: &Path) -> (i64, i64) {
    let store = open(dir).await;
    store.append(request("m-a", 0, 2)).await.unwrap();
    let applied = store.post_input(input("m-a", "x")).await.unwrap();
    let pending = store.post_input(input("m-a", "y")).await.unwrap();
    store
        .append(consuming(request("m-a", 2, 1), &[applied]))
        .await
        .unwrap();
    (applied, pending)
}

/// Reads everything and checks every write is refused.
async fn reads_and_refuses_writes(store: &SqliteStore, (applied, pending): (i64, i64)) {
    assert!(store.is_read_only());
    assert_eq!(store.events("m-a", 0).await.unwrap().len(), 3);
    assert_eq!(store.raw_events("m-a").await.unwrap().len(), 3);
    assert_eq!(store.mission("m-a").await.unwrap().unwrap().last_seq, 3);
    assert_eq!(store.missions(10).await.unwrap().len(), 1);
    assert_eq!(
        store.mission_ids_with_prefix("m-", 10).await.unwrap(),
        ["m-a"]
    );
    assert_eq!(
        store.input(applied).await.unwrap().unwrap().state,
        InputState::Applied { seq: 3 }
    );
    assert_eq!(
        store
            .pending_inputs("m-a")
            .await
            .unwrap()
            .iter()
            .map(|i| i.id)
            .collect::<Vec<_>>(),
        [pending]
    );
    assert_eq!(
        store.missions_with_pending_inputs(5).await.unwrap(),
        ["m-a"]
    );
    assert!(flightdeck_store::verify_mission(store, "m-a")
        .await
        .unwrap()
        .is_ok());

    let read_only = |e: StoreError| assert!(matches!(e, StoreError::ReadOnly), "{e}");
    read_only(store.append(request("m-a", 3, 1)).await.unwrap_err());
    read_only(store.post_input(input("m-a", "z")).await.unwrap_err());
    read_only(store.refuse_input(pending, "no", 0).await.unwrap_err());
    read_only(
        store
            .acquire_lease("m-a", "w", 0, 1_000, None)
            .await
            .unwrap_err(),
    );
    read_only(store.release_lease("m-a", "w").await.unwrap_err());
    let artifacts = store.artifacts(std::env::temp_dir().join("never-written"));
    assert!(matches!(
        artifacts.put(b"bytes").await.unwrap_err(),
        ArtifactError::ReadOnly
    ));
    assert!(matches!(
        artifacts.flush().await.unwrap_err(),
        ArtifactError::ReadOnly
    ));
}

#[tokio::test]
async fn a_read_only_store_reads_and_refuses_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let ids = populate(dir.path()).await;
    let listing = || {
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    };
    // The read-write store, closed, left its database and its inbox file (no `-wal`, no
    // `-shm`).
    assert_eq!(listing(), ["flightdeck.db", "flightdeck.db-inbox"]);
    let before = std::fs::read(db(dir.path())).unwrap();
    let store = SqliteStore::open_read_only(&db(dir.path())).await.unwrap();
    reads_and_refuses_writes(&store, ids).await;
    let mut feed = store.subscribe().await.unwrap();
    assert_eq!(
        listing(),
        ["flightdeck.db", "flightdeck.db-inbox"],
        "a read-only store created files"
    );
    drop(store);
    assert_eq!(
        std::fs::read(db(dir.path())).unwrap(),
        before,
        "the database was written"
    );

    // A writer starts: the store reads what it commits (through SQLite's locking now).
    let store = SqliteStore::open_read_only(&db(dir.path())).await.unwrap();
    let writer = open(dir.path()).await;
    writer.append(request("m-a", 3, 1)).await.unwrap();
    fired(&mut feed).await;
    assert_eq!(store.events("m-a", 0).await.unwrap().len(), 4);
    drop(store);
    drop(writer);
    assert_eq!(listing(), ["flightdeck.db", "flightdeck.db-inbox"]);
    let before = std::fs::read(db(dir.path())).unwrap();

    // The same through URLs, both spellings.
    for url in [
        format!("sqlite://{}?mode=ro", db(dir.path()).display()),
        format!("sqlite:{}?mode=ro", db(dir.path()).display()),
    ] {
        let store = flightdeck_store::open(&url).await.unwrap();
        assert_eq!(store.events("m-a", 0).await.unwrap().len(), 4);
        assert!(matches!(
            store.append(request("m-a", 4, 1)).await.unwrap_err(),
            StoreError::ReadOnly
        ));
        let (store, artifacts) =
            flightdeck_store::open_with_artifacts(&url, &dir.path().join("artifacts"))
                .await
                .unwrap();
        assert_eq!(store.mission("m-a").await.unwrap().unwrap().last_seq, 4);
        assert!(matches!(
            artifacts.put(b"x").await.unwrap_err(),
            ArtifactError::ReadOnly
        ));
    }
    assert_eq!(listing(), ["flightdeck.db", "flightdeck.db-inbox"]);
    assert_eq!(std::fs::read(db(dir.path())).unwrap(), before);
}

#[tokio::test]
async fn a_missing_database_is_never_created_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/dir/flightdeck.db");
    let err = SqliteStore::open_read_only(&path).await.unwrap_err();
    assert!(matches!(err, StoreError::Missing { .. }), "{err}");
    let url = format!("sqlite://{}?mode=ro", path.display());
    let err = flightdeck_store::open(&url).await.err().unwrap();
    assert!(matches!(err, StoreError::Missing { .. }), "{err}");
    let err = flightdeck_store::open_with_artifacts(&url, dir.path())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::Missing { .. }), "{err}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "something was created"
    );

    // Refused parameters create nothing either.
    let url = format!("sqlite://{}?mode=rw", dir.path().join("x.db").display());
    let err = flightdeck_store::open(&url).await.err().unwrap();
    assert!(
        matches!(err, StoreError::UnsupportedUrlParameter { .. }),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn foreign_empty_and_unmigrated_files_are_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.db");
    std::fs::write(&text, "hello, this is not a database at all").unwrap();
    let err = SqliteStore::open_read_only(&text).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFlightdeck { .. }), "{err}");
    assert_eq!(
        std::fs::read(&text).unwrap(),
        b"hello, this is not a database at all"
    );

    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, "").unwrap();
    let err = SqliteStore::open_read_only(&empty).await.unwrap_err();
    assert!(matches!(err, StoreError::Unmigrated { .. }), "{err}");
    assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0);

    let other = dir.path().join("other.db");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE customers (id INTEGER);")
        .unwrap();
    let before = std::fs::read(&other).unwrap();
    let err = SqliteStore::open_read_only(&other).await.unwrap_err();
    assert!(err.to_string().contains("customers"), "{err}");
    assert_eq!(std::fs::read(&other).unwrap(), before);

    let err = SqliteStore::open_read_only(dir.path()).await.unwrap_err();
    assert!(err.to_string().contains("directory"), "{err}");
}

/// An older schema (from before the inbox and projection items) is read as it is; a newer
/// one is refused.
#[tokio::test]
async fn older_schemas_are_read_and_newer_ones_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    store.append(request("m-a", 0, 2)).await.unwrap();
    drop(store);
    let conn = rusqlite::Connection::open(db(dir.path())).unwrap();
    conn.execute_batch(
        "DROP TABLE inputs; DROP TABLE projection_items; DROP TABLE tokens;
         DROP TABLE quota_usage; DROP TABLE quota_holds; DROP TABLE feed_cursors;
         ALTER TABLE missions DROP COLUMN lease_epoch;
         DROP INDEX missions_ready; DROP INDEX missions_deadline; DROP INDEX missions_leased; DROP INDEX missions_by_requester;
         ALTER TABLE missions DROP COLUMN requested_by; ALTER TABLE missions DROP COLUMN team; ALTER TABLE missions DROP COLUMN ready;
         ALTER TABLE missions DROP COLUMN waiting_for;
         ALTER TABLE missions DROP COLUMN next_deadline_ms;
         ALTER TABLE missions DROP COLUMN cost_usd; DROP TABLE feed;
         DELETE FROM _sqlx_migrations WHERE version >= 3;",
    )
    .unwrap();
    drop(conn);
    let old = SqliteStore::open_read_only(&db(dir.path())).await.unwrap();
    assert_eq!(old.events("m-a", 0).await.unwrap().len(), 2);
    assert_eq!(old.missions(5).await.unwrap().len(), 1);
    assert!(old.mission("m-a").await.unwrap().is_some());
    assert!(old.pending_inputs("m-a").await.unwrap().is_empty());
    assert!(old.input(1).await.unwrap().is_none());
    assert!(old.tokens().await.unwrap().is_empty());
    assert!(old.token_by_hash("00").await.unwrap().is_none());
    assert!(old.quota_usage("2026-11").await.unwrap().is_empty());
    assert_eq!(old.feed_cursor("slack-notifier").await.unwrap(), None);
    assert!(matches!(
        old.save_feed_cursor("slack-notifier", 1).await,
        Err(StoreError::ReadOnly)
    ));
    assert!(matches!(
        old.hold_feed_reader("slack-notifier", "p", 0, 1_000, None)
            .await,
        Err(StoreError::ReadOnly)
    ));
    assert!(old
        .missions_with_pending_inputs(5)
        .await
        .unwrap()
        .is_empty());
    // A read-write open (another process) migrates it while the read-only store is open;
    // what is written with items from then on, the read-only store reads with them.
    let store = open(dir.path()).await;
    store.post_input(input("m-a", "x")).await.unwrap();
    let mut with_a_step = request("m-a", 2, 1);
    with_a_step
        .projection
        .items
        .push(flightdeck_store::ProjectionItem {
            list: "steps".into(),
            position: 0,
            value: serde_json::json!({"index": 0}),
        });
    store.append(with_a_step).await.unwrap();
    drop(store);
    let summary = old.mission("m-a").await.unwrap().unwrap().summary;
    assert_eq!(
        summary["steps"],
        serde_json::json!([{"index": 0}]),
        "{summary}"
    );
    let listed = old.missions(5).await.unwrap();
    assert_eq!(
        listed[0].summary["steps"],
        serde_json::json!([{"index": 0}])
    );
    drop(old);

    let conn = rusqlite::Connection::open(db(dir.path())).unwrap();
    conn.execute_batch(
        "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time)
         VALUES (99, 'future', CURRENT_TIMESTAMP, 1, x'00', 0);",
    )
    .unwrap();
    drop(conn);
    let err = SqliteStore::open_read_only(&db(dir.path()))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::TooNew { found: 99, .. }), "{err}");
}

/// A directory on a file system mounted read-only, where not even root can write: SQLite
/// cannot make its `-shm`, so reads go to the immutable database file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_on_a_read_only_file_system_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mount) = Mount::tmpfs(&dir.path().join("fs"), "16m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)");
        return;
    };
    let ids = populate(&mount.path).await;
    mount.remount_read_only();
    let before: Vec<_> = std::fs::read_dir(&mount.path)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        std::fs::write(mount.path.join("probe"), b"x").is_err(),
        "not read-only"
    );

    let store = SqliteStore::open_read_only(&db(&mount.path)).await.unwrap();
    reads_and_refuses_writes(&store, ids).await;
    let _feed = store.subscribe().await.unwrap(); // watching needs no writing
    let err = SqliteStore::open(&db(&mount.path)).await.unwrap_err();
    eprintln!("(a read-write open there fails as it must: {err})");
    drop(store);
    let after: Vec<_> = std::fs::read_dir(&mount.path)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before, after);
}

/// A full disk: SQLite cannot grow a new `-shm`; reads still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_on_a_full_disk_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mount) = Mount::tmpfs(&dir.path().join("fs"), "2m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)");
        return;
    };
    let ids = populate(&mount.path).await;
    // The writer closed cleanly: no `-wal`, no `-shm` left. Fill the disk.
    assert!(!mount.path.join("flightdeck.db-shm").exists());
    {
        use std::io::Write;
        let mut filler = std::fs::File::create(mount.path.join("filler")).unwrap();
        let block = vec![7u8; 64 * 1024];
        while filler.write_all(&block).is_ok() {}
        while filler.write_all(&block[..512]).is_ok() {}
        while filler.write_all(&block[..1]).is_ok() {}
        let _ = filler.sync_all();
    }
    assert!(
        std::fs::write(mount.path.join("probe"), vec![0u8; 4096]).is_err(),
        "not full"
    );
    let before = std::fs::read(db(&mount.path)).unwrap();
    let store = SqliteStore::open_read_only(&db(&mount.path)).await.unwrap();
    reads_and_refuses_writes(&store, ids).await;
    drop(store);
    assert_eq!(std::fs::read(db(&mount.path)).unwrap(), before);
}

/// A read-only view (a read-only bind mount, as a container's read-only volume) of a
/// database another process keeps writing: the reader follows it, woken by its feed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_view_follows_a_live_writer() {
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = Mount::tmpfs(&dir.path().join("fs"), "16m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)");
        return;
    };
    let Some(view) = Mount::bind_read_only(&fs.path, &dir.path().join("view")) else {
        eprintln!("skipped: cannot bind-mount read-only here");
        return;
    };
    // Opened while no writer is running (no `-wal`), then a writer starts, and stops.
    let ids = populate(&fs.path).await;
    let reader = SqliteStore::open_read_only(&db(&view.path)).await.unwrap();
    reads_and_refuses_writes(&reader, ids).await;
    let mut feed = reader.subscribe().await.unwrap();
    let writer = open(&fs.path).await;
    for seq in 3..13u64 {
        writer.append(request("m-a", seq, 1)).await.unwrap();
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while reader.events("m-a", seq).await.unwrap().is_empty() {
            tokio::time::timeout_at(deadline, feed.changed())
                .await
                .unwrap_or_else(|_| panic!("append {seq} was not seen through the view"))
                .unwrap();
        }
    }
    drop(writer);
    fired(&mut feed).await;
    assert_eq!(reader.events("m-a", 0).await.unwrap().len(), 13);
    // And after the writer has gone (its `-wal` removed on the way out).
    let writer = open(&fs.path).await;
    writer.append(request("m-a", 13, 1)).await.unwrap();
    drop(writer);
    assert_eq!(reader.events("m-a", 0).await.unwrap().len(), 14);
}
