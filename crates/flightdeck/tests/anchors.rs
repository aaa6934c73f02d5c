//! History anchored outside the database, with the real binary: whoever can write the SQLite
//! file (here: the sqlite3 CLI) deletes a mission, cuts its tail and fixes the mission row,
//! or rewrites its history and re-hashes the chain; each kept its chain whole, and
//! `audit verify --all` still finds it against the anchor file. The anchor file itself, when
//! edited or (with a signing key) rebuilt without the key, is reported too.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use flightdeck_store::anchors::{verify_anchors, AnchorRecord, ANCHOR_FILE};
use flightdeck_store::{AnchorLog, AnchorPoint};
use flightdeck_testkit::{Cli, TestRepo};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");

const TEMPLATE: &str = r#"
goal = "Make answer() return 42."
[[steps]]
run = "sed -i 's/41/42/' src/lib.rs"
[[steps]]
run = "grep -q 42 src/lib.rs"
"#;

/// A data directory with one finished mission; its id and timeline.
fn finished_mission(cli: &Cli) -> (TestRepo, String, Vec<Value>) {
    let repo = TestRepo::with_files(&[
        ("README.md", "# sample\n"),
        ("src/lib.rs", "pub fn answer() -> u32 { 41 }\n"),
        (".flightdeck/missions/t.toml", TEMPLATE),
        (
            ".flightdeck/policy.toml",
            "[defaults]\npublish = \"allow\"\n",
        ),
    ]);
    let out = cli.run(&[
        "--json",
        "run",
        "t",
        "--repo",
        repo.path().to_str().unwrap(),
    ]);
    assert_eq!(out.code(), 0, "{}", out.stderr());
    let id = out.json()["id"].as_str().unwrap().to_string();
    let events = cli.timeline(&id);
    (repo, id, events)
}

fn sqlite(cli: &Cli, sql: &str) {
    let db = cli.data_dir().join("flightdeck.db");
    let out = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg(sql)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sqlite3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `audit verify --all` as JSON, with its exit code.
fn verify_all(cli: &Cli) -> (i32, Value) {
    let out = cli.run(&["--json", "audit", "verify", "--all"]);
    (out.code(), out.json())
}

fn anchors(cli: &Cli) -> Vec<AnchorRecord> {
    let text = std::fs::read_to_string(cli.data_dir().join(ANCHOR_FILE)).unwrap();
    verify_anchors(&text, None).unwrap()
}

/// Deletes the whole mission, as if it never was.
fn delete_mission(cli: &Cli, id: &str, _events: &[Value]) {
    let id = quoted(id);
    sqlite(
        cli,
        &format!(
            "DROP TRIGGER events_are_append_only_delete; \
             DELETE FROM events WHERE mission = {id}; \
             DELETE FROM projection_items WHERE mission = {id}; \
             DELETE FROM missions WHERE id = {id};"
        ),
    );
}

/// Cuts the last three events and makes the mission row agree with what is left.
fn truncate_tail(cli: &Cli, id: &str, events: &[Value]) {
    let keep = events.len() - 3;
    let head = events[keep - 1]["hash"].as_str().unwrap();
    let id = quoted(id);
    sqlite(
        cli,
        &format!(
            "DROP TRIGGER events_are_append_only_delete; \
             DELETE FROM events WHERE mission = {id} AND seq > {keep}; \
             UPDATE missions SET last_seq = {keep}, head_hash = '{head}', status = 'running' WHERE id = {id};"
        ),
    );
}

/// Rewrites who asked for the mission (its first event) and re-hashes every event after it,
/// then fixes the mission row's head: a chain that holds, telling another story.
fn rehash_rewritten_history(cli: &Cli, id: &str, events: &[Value]) {
    let mut sql = String::from("DROP TRIGGER events_are_append_only_update; ");
    let mut prev = flightdeck_core::hash::GENESIS_HASH.to_string();
    for (i, event) in events.iter().enumerate() {
        let mut data = event["data"].clone();
        if i == 0 {
            data["requested_by"] = Value::from("@mallory");
        }
        let at_ms =
            flightdeck_core::clock::parse_rfc3339_millis(event["at"].as_str().unwrap()).unwrap();
        let sealed = flightdeck_core::chain::seal(
            id,
            event["seq"].as_u64().unwrap(),
            at_ms,
            &prev,
            event["type"].as_str().unwrap(),
            data.clone(),
        )
        .unwrap();
        sql.push_str(&format!(
            "UPDATE events SET data = {}, prev_hash = '{}', hash = '{}' WHERE mission = {} AND seq = {}; ",
            quoted(&flightdeck_core::jcs::canonicalize(&data).unwrap()),
            sealed.prev_hash,
            sealed.hash,
            quoted(id),
            sealed.seq
        ));
        prev = sealed.hash;
    }
    sql.push_str(&format!(
        "UPDATE missions SET head_hash = '{prev}' WHERE id = {};",
        quoted(id)
    ));
    sqlite(cli, &sql);
}

/// Changes the head an anchor records, leaving its hash as it was.
fn edit_anchor_file(cli: &Cli, _id: &str, events: &[Value]) {
    let path = cli.data_dir().join(ANCHOR_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    let last = events.last().unwrap()["hash"].as_str().unwrap();
    let edited = text.replacen(last, &"f".repeat(64), 1);
    assert_ne!(edited, text);
    std::fs::write(&path, edited).unwrap();
}

#[test]
fn tampering_with_the_database_is_found_against_the_anchors() {
    type Tamper = fn(&Cli, &str, &[Value]);
    /// The first bad seq reported, from the number of events.
    type AtSeq = fn(usize) -> u64;
    // (attack, what it does, the mission's reported reason starts with, at seq (None: the
    // anchor file is reported))
    let cases: [(&str, Tamper, &str, Option<AtSeq>); 4] = [
        ("delete a mission", delete_mission, "deleted", Some(|_| 1)),
        (
            "cut the tail and fix the mission row",
            truncate_tail,
            "truncated",
            Some(|n| (n - 3 + 1) as u64),
        ),
        (
            "rewrite history and re-hash it",
            rehash_rewritten_history,
            "rewritten",
            Some(|_| 1),
        ),
        ("edit the anchor file", edit_anchor_file, "", None),
    ];
    for (attack, tamper, reason, at_seq) in cases {
        let cli = Cli::new(BIN);
        let (_repo, id, events) = finished_mission(&cli);
        let (code, report) = verify_all(&cli);
        assert_eq!(code, 0, "{attack}: genuine first: {report:#}");
        tamper(&cli, &id, &events);
        // The reason is the anchors', never the chain's: the database alone still holds.
        let (code, report) = verify_all(&cli);
        assert_eq!(code, 1, "{attack}: {report:#}");
        assert_eq!(report["ok"], false, "{attack}");
        match at_seq {
            Some(at_seq) => {
                let entry = report["missions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|m| m["mission"] == id.as_str())
                    .unwrap_or_else(|| panic!("{attack}: {id} not reported: {report:#}"));
                assert_eq!(entry["ok"], false, "{attack}: {report:#}");
                let why = entry["reason"].as_str().unwrap();
                assert!(why.starts_with(reason), "{attack}: {why}");
                assert_eq!(entry["first_bad_seq"], at_seq(events.len()), "{attack}");
                assert_eq!(report["anchors"]["ok"], true, "{attack}");
            }
            None => {
                assert_eq!(report["anchors"]["ok"], false, "{attack}: {report:#}");
                assert!(report["anchors"]["first_bad_line"].as_u64().unwrap() >= 1);
            }
        }
        // Text names it too.
        let text = cli.run(&["audit", "verify", "--all"]);
        assert_eq!(text.code(), 1, "{attack}");
        assert!(
            text.stdout().contains("BROKEN"),
            "{attack}: {}",
            text.stdout()
        );
    }
}

#[test]
fn a_genuine_data_dir_verifies_and_its_commit_names_the_timeline() {
    let cli = Cli::new(BIN);
    let (repo, id, events) = finished_mission(&cli);
    let (code, report) = verify_all(&cli);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["anchors"]["records"], 2, "{report:#}");
    // Its creation and its finish, each naming the head as it then was.
    let records = anchors(&cli);
    let reasons: Vec<&str> = records.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(reasons, ["created", "finished"]);
    assert_eq!(records[0].seq, 1);
    assert_eq!(records[0].head, events[0]["hash"].as_str().unwrap());
    let last = events.last().unwrap();
    assert_eq!(records[1].seq, last["seq"].as_u64().unwrap());
    assert_eq!(records[1].head, last["hash"].as_str().unwrap());
    assert_eq!(records[1].status, "succeeded");
    // The published commit carries the seq and hash of the event that recorded it.
    let committing = events
        .iter()
        .find(|e| e["type"] == "change.committing")
        .unwrap();
    let message = repo.git(&["log", "-1", "--format=%B", &format!("flightdeck/{id}")]);
    assert!(
        message.contains(&format!(
            "Flightdeck-Timeline-Seq: {}\nFlightdeck-Timeline-Head: {}",
            committing["seq"],
            committing["hash"].as_str().unwrap()
        )),
        "{message}"
    );
    let trailers = repo.git(&[
        "log",
        "-1",
        "--format=%(trailers:key=Flightdeck-Timeline-Head,valueonly)",
        &format!("flightdeck/{id}"),
    ]);
    assert_eq!(trailers.trim(), committing["hash"].as_str().unwrap());
    // Missions are anchored before the file exists only in an empty data directory.
    std::fs::remove_file(cli.data_dir().join(ANCHOR_FILE)).unwrap();
    let (code, report) = verify_all(&cli);
    assert_eq!(code, 1, "{report:#}");
    assert!(
        report["anchors"]["reason"]
            .as_str()
            .unwrap()
            .contains("missing"),
        "{report:#}"
    );
}

#[test]
fn with_a_signing_key_the_anchor_file_cannot_be_rebuilt_without_it() {
    let keys = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out", "signing.pem"])
        .current_dir(keys.path())
        .status()
        .unwrap();
    assert!(status.success());
    let cli = Cli::new(BIN);
    cli.write_config(&format!(
        "[audit]\nsigning_key = \"{}\"\n",
        keys.path().join("signing.pem").display()
    ));
    let (_repo, id, events) = finished_mission(&cli);
    let (code, report) = verify_all(&cli);
    assert_eq!(code, 0, "{report:#}");
    assert!(report["anchors"]["signed_by"].is_string(), "{report:#}");
    // Someone who can write the data directory but not read the key rewrites the history
    // and rebuilds the anchor file to match: every line hashes right, none is signed.
    rehash_rewritten_history(&cli, &id, &events);
    let rewritten = cli.timeline(&id);
    let path = cli.data_dir().join(ANCHOR_FILE);
    let genuine = anchors(&cli);
    std::fs::remove_file(&path).unwrap();
    let forger = AnchorLog::new(path, None);
    for record in &genuine {
        let event = &rewritten[record.seq as usize - 1];
        forger
            .append(&AnchorPoint {
                mission: record.mission.clone(),
                seq: record.seq,
                head: event["hash"].as_str().unwrap().to_string(),
                at: record.at.clone(),
                reason: record.reason,
                status: record.status.clone(),
            })
            .unwrap();
    }
    let (code, report) = verify_all(&cli);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["anchors"]["ok"], false, "{report:#}");
    assert_eq!(report["anchors"]["first_bad_line"], 1);
    assert!(
        report["anchors"]["reason"]
            .as_str()
            .unwrap()
            .contains("not signed"),
        "{report:#}"
    );
}
