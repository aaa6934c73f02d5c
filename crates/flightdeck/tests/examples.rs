//! The bundled examples run as the README says: the quickstart's mission, end to end, with
//! its scripted coder, the built-in policy's approval and the sandboxed `cargo test`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use std::path::{Path, PathBuf};

use flightdeck_testkit::{git_in, Cli};

const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn example(name: &str) -> (tempfile::TempDir, PathBuf) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join(name);
    copy_dir(&source, &repo);
    git_in(&repo, &["init", "--quiet", "--initial-branch=main"]);
    git_in(&repo, &["add", "--all"]);
    git_in(
        &repo,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "commit",
            "--quiet",
            "-m",
            "import",
        ],
    );
    (dir, repo)
}

#[test]
fn the_quickstart_mission_fixes_word_count_waits_for_the_code_owner_and_publishes() {
    let (_dir, repo) = example("sample-repo");
    let cli = Cli::new(BIN);
    let out = cli.run_as(
        "quickstart@example.com",
        &[
            "--json",
            "run",
            "fix-word-count",
            "--repo",
            repo.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code(), 3, "parks for the code owner: {}", out.stderr());
    let summary = out.json();
    let id = summary["id"].as_str().unwrap().to_string();
    assert_eq!(summary["steps"][0]["status"], "succeeded");
    assert_eq!(summary["steps"][1]["status"], "succeeded");
    assert!(summary["cost"]["total_usd"].as_f64().unwrap() > 0.0);
    let approval = summary["pending_approvals"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        summary["pending_approvals"][0]["eligible"][0],
        "@textstats-lead"
    );
    cli.run_as("@textstats-lead", &["approve", &approval])
        .expect_code(0);
    let done = cli
        .run_as("quickstart@example.com", &["--json", "resume", &id])
        .expect_code(0)
        .json();
    assert_eq!(done["status"], "succeeded");
    let branch = done["branch"].as_str().unwrap();
    let lib = git_in(&repo, &["show", &format!("{branch}:src/lib.rs")]);
    assert!(lib.contains("text.split_whitespace().count()"), "{lib}");
    // The agent ran the tests before and after its edit, in the sandbox.
    let events = cli.timeline(&id);
    let exits: Vec<i64> = events
        .iter()
        .filter(|e| {
            e["type"] == "tool.completed"
                && e["data"]["call_id"]
                    .as_str()
                    .unwrap()
                    .starts_with("step-0.")
                && !e["data"]["exit_code"].is_null()
        })
        .map(|e| e["data"]["exit_code"].as_i64().unwrap())
        .collect();
    assert_eq!(
        exits,
        [101, 0],
        "cargo test failed before the fix and passed after"
    );
}
