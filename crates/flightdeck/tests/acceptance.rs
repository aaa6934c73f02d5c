//! Acceptance, run by the platform after the steps, end to end: deleted and skipped tests,
//! paths, flaky commands, and the coder's fix round with the failure report.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use flightdeck_testkit::{Cli, TestRepo};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");

/// A repository with a test file, template `t` (one coder step + `acceptance`) and a script
/// whose coder makes `calls` and then finishes; `fix` are the calls of a fix round (if any).
fn setup(acceptance: &str, calls: &[&str], fix: &[&str]) -> (TestRepo, Cli) {
    let mut script = String::from("model = \"sim-1\"\n");
    let mut turn = |call: &str, expect: Option<&str>| {
        script.push_str("[[turn]]\n");
        if let Some(expect) = expect {
            script.push_str(&format!("expect = '''{expect}'''\n"));
        }
        script.push_str(&format!("[[turn.call]]\n{call}\n"));
    };
    for call in calls {
        turn(call, None);
    }
    turn("tool = \"finish\"\nargs = { summary = \"done\" }", None);
    for (i, call) in fix.iter().enumerate() {
        turn(call, (i == 0).then_some("acceptance checks failed"));
    }
    if !fix.is_empty() {
        turn("tool = \"finish\"\nargs = { summary = \"fixed\" }", None);
    }
    let template = format!(
        "goal = \"g\"\n[model]\npin = \"scripted:.flightdeck/script.toml\"\n[[steps]]\nagent = \"coder\"\n[acceptance]\n{acceptance}\n"
    );
    let repo = TestRepo::with_files(&[
        (".gitignore", "/target\n"),
        ("src/lib.rs", "pub fn answer() -> u32 { 41 }\n"),
        (
            "tests/answer.rs",
            "#[test]\nfn answers() { assert_eq!(2 + 2, 4); }\n",
        ),
        ("docs/guide.md", "# Guide\n"),
        (
            ".flightdeck/policy.toml",
            "[defaults]\npublish = \"allow\"\n",
        ),
        (".flightdeck/missions/t.toml", &template),
        (".flightdeck/script.toml", &script),
    ]);
    repo.commit_all("acceptance sample");
    (repo, Cli::new(BIN))
}

fn run(cli: &Cli, repo: &TestRepo) -> (i32, Value) {
    let out = cli.run(&[
        "--json",
        "run",
        "t",
        "--repo",
        repo.path().to_str().unwrap(),
    ]);
    let code = out.code();
    assert!(!out.stdout().trim().is_empty(), "{}", out.stderr());
    (code, out.json())
}

fn checks(cli: &Cli, id: &str) -> Vec<Value> {
    cli.timeline(id)
        .into_iter()
        .filter(|e| e["type"] == "acceptance.checked")
        .map(|e| e["data"].clone())
        .collect()
}

const DELETE_TEST: &str = "tool = \"run\"\nargs = { command = \"rm tests/answer.rs\" }";
const ADD_IGNORE: &str = "tool = \"edit_file\"\nargs = { path = \"tests/answer.rs\", old = \"#[test]\", new = \"#[test]\\n#[ignore]\" }";
const EDIT_SRC: &str =
    "tool = \"edit_file\"\nargs = { path = \"src/lib.rs\", old = \"41\", new = \"42\" }";
const EDIT_DOCS: &str =
    "tool = \"write_file\"\nargs = { path = \"docs/guide.md\", content = \"# Guide\\nMore.\\n\" }";

#[test]
fn the_diff_rules_catch_what_agents_do_to_go_green() {
    // (name, acceptance, coder calls, violation kind)
    let cases: &[(&str, &str, &[&str], &str)] = &[
        (
            "a deleted test",
            "forbid_test_deletion = true\nfix_rounds = 0",
            &[DELETE_TEST],
            "test_deleted",
        ),
        (
            "an added #[ignore]",
            "forbid_test_deletion = true\nfix_rounds = 0",
            &[ADD_IGNORE],
            "skip_marker_added",
        ),
        (
            "a path outside `paths`",
            "paths = [\"src/**\"]\nfix_rounds = 0",
            &[EDIT_SRC, EDIT_DOCS],
            "outside_paths",
        ),
        (
            "too many files",
            "max_changed_files = 1\nfix_rounds = 0",
            &[EDIT_SRC, EDIT_DOCS],
            "too_many_files",
        ),
    ];
    for (name, acceptance, calls, kind) in cases {
        let (repo, cli) = setup(acceptance, calls, &[]);
        let (code, summary) = run(&cli, &repo);
        assert_eq!(code, 1, "{name}");
        assert_eq!(summary["error"]["kind"], "acceptance_failed", "{name}");
        assert!(
            summary["branch"].is_null(),
            "{name}: nothing may be published"
        );
        let id = summary["id"].as_str().unwrap();
        let checked = checks(&cli, id);
        assert_eq!(checked.len(), 1, "{name}");
        assert_eq!(checked[0]["passed"], false, "{name}");
        let kinds: Vec<&str> = checked[0]["violation_details"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, [*kind], "{name}");
        let message = summary["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("Acceptance check 1: FAILED"),
            "{name}: {message}"
        );
        assert!(
            message.contains(checked[0]["violations"][0].as_str().unwrap()),
            "{name}"
        );
    }
}

#[test]
fn a_command_that_fails_then_passes_is_flaky_with_both_outputs_kept() {
    let flaky = "commands = [\"mkdir -p target; if test -e target/once; then echo second; else touch target/once; echo first; exit 1; fi\"]\nretries = 1";
    let (repo, cli) = setup(flaky, &[EDIT_SRC], &[]);
    let (code, summary) = run(&cli, &repo);
    assert_eq!(code, 0, "{summary}");
    let checked = checks(&cli, summary["id"].as_str().unwrap());
    let result = &checked[0]["results"][0];
    assert_eq!(result["flaky"], true);
    assert_eq!(result["passed"], true);
    assert_eq!(result["attempts"], 2);
    let outputs: Vec<String> = result["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            cli.run(&["artifact", d.as_str().unwrap()])
                .expect_code(0)
                .stdout()
        })
        .collect();
    assert_eq!(outputs, ["first\n", "second\n"]);
    let pr = cli
        .run(&[
            "artifact",
            summary["artifacts"]["pr_description"].as_str().unwrap(),
        ])
        .expect_code(0)
        .stdout();
    assert!(pr.contains("## Acceptance (run by the platform)"), "{pr}");
    assert!(pr.contains("passed (flaky: failed first) | 2 |"), "{pr}");
}

#[test]
fn a_failed_check_gives_the_coder_a_fix_round_with_the_report() {
    let acceptance = "commands = [\"grep -q 42 src/lib.rs\"]\nforbid_test_deletion = true";
    // The coder first edits the docs only; the check fails; the fix round edits the source.
    let (repo, cli) = setup(acceptance, &[EDIT_DOCS], &[EDIT_SRC]);
    let (code, summary) = run(&cli, &repo);
    assert_eq!(code, 0, "{summary}");
    let id = summary["id"].as_str().unwrap();
    let checked = checks(&cli, id);
    assert_eq!(checked.len(), 2);
    assert_eq!(
        (checked[0]["passed"].clone(), checked[1]["passed"].clone()),
        (false.into(), true.into())
    );
    assert_eq!(checked[1]["round"], 2);
    let events = cli.timeline(id);
    let fix_calls: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "tool.requested")
        .filter_map(|e| e["data"]["call_id"].as_str())
        .filter(|c| c.starts_with("acceptance.1.fix."))
        .collect();
    assert_eq!(
        fix_calls,
        ["acceptance.1.fix.m1.t1", "acceptance.1.fix.m2.t1"]
    );
    let branch = summary["branch"].as_str().unwrap();
    assert_eq!(
        repo.git(&["show", &format!("{branch}:src/lib.rs")]),
        "pub fn answer() -> u32 { 42 }"
    );
}

#[test]
fn acceptance_that_still_fails_after_the_fix_round_fails_with_a_readable_report() {
    let acceptance = "commands = [\"echo checking; grep -q 43 src/lib.rs\"]\nfix_rounds = 1";
    let (repo, cli) = setup(acceptance, &[EDIT_SRC], &[EDIT_DOCS]);
    let (code, summary) = run(&cli, &repo);
    assert_eq!(code, 1, "{summary}");
    assert_eq!(summary["error"]["kind"], "acceptance_failed");
    let message = summary["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("Acceptance check 2: FAILED"),
        "{message}"
    );
    assert!(message.contains("- `echo checking; grep -q 43 src/lib.rs`: FAILED (exit 1) after 1 attempt(s)\n    checking"), "{message}");
    assert_eq!(checks(&cli, summary["id"].as_str().unwrap()).len(), 2);
    assert!(summary["branch"].is_null());
}
