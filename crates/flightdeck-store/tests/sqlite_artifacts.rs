//! The SQLite store's artifacts: where each artifact lives (staged, in the database, in a
//! file), that every way of reading finds it there, and crash safety: an artifact referenced
//! by a durable event survives the process dying at once after the append.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use std::path::Path;

use flightdeck_core::Digest;
use flightdeck_store::{
    AppendRequest, ArtifactError, ArtifactStore, EventStore, FsArtifactStore, NewEvent, Projection,
    SqliteStore, INLINE_MAX,
};
use serde_json::json;

fn request(mission: &str, expected_seq: u64, artifact: &Digest) -> AppendRequest {
    AppendRequest {
        mission: mission.into(),
        expected_seq,
        events: vec![NewEvent {
            at_ms: 1_795_000_000_000 + expected_seq as i64,
            event_type: "note".into(),
            data: json!({"artifact": artifact.to_string()}),
        }],
        projection: Projection {
            status: "running".into(),
            template: "t".into(),
            summary: json!({"id": mission}),
            items: Vec::new(),
            columns: flightdeck_store::ProjectionColumns::default(),
        },
        consumes: Vec::new(),
        fence: None,
    }
}

async fn open(dir: &Path) -> SqliteStore {
    SqliteStore::open(&dir.join("flightdeck.db")).await.unwrap()
}

/// Rows in the artifacts table, read on a connection of the test's own.
fn rows_in_db(dir: &Path, digest: &Digest) -> usize {
    let conn = rusqlite::Connection::open(dir.join("flightdeck.db")).unwrap();
    conn.query_row(
        "SELECT count(*) FROM artifacts WHERE digest = ?1",
        [digest.to_string()],
        |row| row.get(0),
    )
    .unwrap()
}

/// Where an artifact is when it is read.
#[derive(Debug, Clone, Copy)]
enum Place {
    /// Put, no append since: only in the store's memory.
    Staged,
    /// Put, then an append: in the database.
    Committed,
    /// Over `INLINE_MAX`: a file, written by `put`.
    Large,
    /// A file written before artifacts moved into the database.
    Legacy,
    /// Never stored.
    Missing,
}

#[tokio::test]
async fn every_read_finds_an_artifact_wherever_it_lives() {
    // (place, in the database afterwards, a file under artifacts/ before local_path)
    let cases = [
        (Place::Staged, false, false),
        (Place::Committed, true, false),
        (Place::Large, false, true),
        (Place::Legacy, false, true),
        (Place::Missing, false, false),
    ];
    for (place, in_db, file_before) in cases {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        let files = dir.path().join("artifacts");
        let artifacts = store.artifacts(&files);
        let bytes = match place {
            Place::Large => vec![b'x'; INLINE_MAX + 1],
            _ => format!("artifact at {place:?}").into_bytes(),
        };
        let digest = Digest::of(&bytes);
        match place {
            Place::Staged | Place::Large => {
                assert_eq!(artifacts.put(&bytes).await.unwrap(), digest);
            }
            Place::Committed => {
                artifacts.put(&bytes).await.unwrap();
                store.append(request("m-a", 0, &digest)).await.unwrap();
            }
            Place::Legacy => {
                FsArtifactStore::new(&files).put(&bytes).await.unwrap();
            }
            Place::Missing => {}
        }
        assert_eq!(
            rows_in_db(dir.path(), &digest),
            usize::from(in_db),
            "{place:?}"
        );
        let file = FsArtifactStore::new(&files).local_path(&digest).unwrap();
        assert_eq!(
            file.is_file(),
            file_before,
            "{place:?}: file before local_path"
        );
        match place {
            Place::Missing => {
                assert!(matches!(
                    artifacts.get(&digest).await,
                    Err(ArtifactError::NotFound(_))
                ));
                assert!(!artifacts.contains(&digest).await.unwrap());
                assert_eq!(artifacts.local_path(&digest), None);
            }
            _ => {
                assert_eq!(artifacts.get(&digest).await.unwrap(), bytes, "{place:?}");
                assert!(artifacts.contains(&digest).await.unwrap(), "{place:?}");
                // A person gets a file to open, wherever the bytes live.
                let path = artifacts.local_path(&digest).unwrap();
                assert_eq!(std::fs::read(&path).unwrap(), bytes, "{place:?}");
            }
        }
    }
}

#[tokio::test]
async fn artifacts_become_visible_to_other_connections_with_the_next_commit() {
    // (what follows the put, visible to another store afterwards)
    let cases = [
        ("nothing", false),
        ("an append", true),
        ("an append that conflicts", true),
        ("a flush", true),
    ];
    for (then, visible) in cases {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        let artifacts = store.artifacts(dir.path().join("artifacts"));
        let digest = artifacts.put(then.as_bytes()).await.unwrap();
        match then {
            "an append" => {
                store.append(request("m-a", 0, &digest)).await.unwrap();
            }
            "an append that conflicts" => {
                // The transaction commits what is staged even though this append writes
                // nothing.
                store.append(request("m-a", 7, &digest)).await.unwrap_err();
            }
            "a flush" => artifacts.flush().await.unwrap(),
            _ => {}
        }
        let other = open(dir.path()).await;
        let seen = other.artifacts(dir.path().join("artifacts"));
        assert_eq!(seen.contains(&digest).await.unwrap(), visible, "{then}");
    }
}

#[tokio::test]
async fn an_artifact_changed_in_the_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let artifacts = store.artifacts(dir.path().join("artifacts"));
    let digest = artifacts.put(b"patch bytes").await.unwrap();
    artifacts.flush().await.unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("flightdeck.db")).unwrap();
    let refused = conn.execute(
        "UPDATE artifacts SET bytes = ?1 WHERE digest = ?2",
        rusqlite::params![b"patch bytez".as_slice(), digest.to_string()],
    );
    assert!(refused.is_err(), "the database refuses the edit");
    conn.execute_batch("DROP TRIGGER artifacts_are_immutable")
        .unwrap();
    conn.execute(
        "UPDATE artifacts SET bytes = ?1 WHERE digest = ?2",
        rusqlite::params![b"patch bytez".as_slice(), digest.to_string()],
    )
    .unwrap();
    let err = artifacts.get(&digest).await.unwrap_err();
    assert!(matches!(err, ArtifactError::Corrupt { .. }), "{err}");
    assert_eq!(artifacts.local_path(&digest), None);
}

/// Where the crash child writes; set only in the child process.
const CRASH_DIR: &str = "FLIGHTDECK_STORE_CRASH_DIR";

/// The child of `a_referenced_artifact_survives_a_crash_after_the_append`: puts, appends and
/// dies on the spot, with no destructor run and no chance to flush anything.
#[tokio::test]
async fn crash_child() {
    let Some(dir) = std::env::var_os(CRASH_DIR) else {
        return;
    };
    let dir = Path::new(&dir);
    let store = open(dir).await;
    let artifacts = store.artifacts(dir.join("artifacts"));
    let referenced = artifacts.put(b"referenced").await.unwrap();
    store.append(request("m-a", 0, &referenced)).await.unwrap();
    artifacts.put(b"never referenced").await.unwrap();
    artifacts.put(&vec![b'x'; INLINE_MAX + 1]).await.unwrap();
    std::process::abort();
}

#[tokio::test]
async fn a_referenced_artifact_survives_a_crash_after_the_append() {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CRASH_DIR, dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child was meant to die");
    let store = open(dir.path()).await;
    let artifacts = store.artifacts(dir.path().join("artifacts"));
    let events = store.events("m-a", 0).await.unwrap();
    assert_eq!(events.len(), 1, "the append was durable");
    let referenced: Digest = events[0].data["artifact"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // (artifact, survives): what an event references always does; a large artifact is
    // durable when put returns; a small one nobody referenced was never promised.
    let cases = [
        (referenced, true),
        (Digest::of(&vec![b'x'; INLINE_MAX + 1]), true),
        (Digest::of(b"never referenced"), false),
    ];
    for (digest, survives) in cases {
        assert_eq!(
            artifacts.contains(&digest).await.unwrap(),
            survives,
            "{digest}"
        );
        if survives {
            artifacts.get(&digest).await.unwrap();
        }
    }
}
