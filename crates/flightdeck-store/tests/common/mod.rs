//! Helpers shared by the store's test files.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod backends;

use std::path::{Path, PathBuf};
use std::time::Duration;

use flightdeck_store::{AppendRequest, ChangeFeed, NewEvent, NewInput, Projection, SqliteStore};
use serde_json::json;

pub fn event(i: u64) -> NewEvent {
    NewEvent {
        at_ms: 1_795_000_000_000 + i as i64,
        event_type: if i == 0 {
            "mission.created".into()
        } else {
            "note".into()
        },
        data: json!({"i": i}),
    }
}

pub fn request(mission: &str, expected_seq: u64, count: u64) -> AppendRequest {
    AppendRequest {
        mission: mission.into(),
        expected_seq,
        events: (expected_seq..expected_seq + count).map(event).collect(),
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

pub fn consuming(mut request: AppendRequest, consumes: &[i64]) -> AppendRequest {
    request.consumes = consumes.to_vec();
    request
}

pub fn input(mission: &str, kind: &str) -> NewInput {
    NewInput {
        mission: mission.into(),
        kind: kind.into(),
        payload: json!({"by": "alice", "kind": kind}),
        posted_at_ms: 1_795_000_100_000,
    }
}

pub fn db(dir: &Path) -> PathBuf {
    dir.join("flightdeck.db")
}

pub async fn open(dir: &Path) -> SqliteStore {
    SqliteStore::open(&db(dir)).await.unwrap()
}

/// Generous: only a broken feed waits this long.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Waits for the feed to fire, failing the test at the deadline.
pub async fn fired(feed: &mut ChangeFeed) {
    tokio::time::timeout(DEADLINE, feed.changed())
        .await
        .expect("the feed did not fire before the deadline")
        .unwrap();
}

/// A file system mounted for a test, unmounted (lazily) when dropped. Needs root with
/// CAP_SYS_ADMIN; `None` where mounting is not allowed.
pub struct Mount {
    pub path: PathBuf,
}

impl Mount {
    pub fn tmpfs(path: &Path, size: &str) -> Option<Mount> {
        std::fs::create_dir_all(path).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Mount {
            path: path.to_path_buf(),
        })
    }

    pub fn bind_read_only(source: &Path, path: &Path) -> Option<Mount> {
        std::fs::create_dir_all(path).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["--bind", "-o", "ro"])
            .arg(source)
            .arg(path)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        let mount = Mount {
            path: path.to_path_buf(),
        };
        // Older mount(8)s ignore `ro` on a bind: remount to be sure.
        let ro = std::process::Command::new("mount")
            .args(["-o", "remount,bind,ro"])
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        (ok && ro).then_some(mount)
    }

    pub fn remount_read_only(&self) {
        let ok = std::process::Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.path)
            .status()
            .unwrap()
            .success();
        assert!(ok, "cannot remount {} read-only", self.path.display());
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}
