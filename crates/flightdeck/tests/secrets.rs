//! Secrets stay where they are given, end to end with the real binary: a secret goes only to
//! the repositories (and templates) its scope names; no form of a secret reaches git; a
//! mission's snapshots never enter the user's object store; every form redaction knows is
//! masked wherever flightdeck stores text.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::Path;
use std::process::Command;

use flightdeck_testkit::{Cli, TestRepo};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");
const POLICY: &str = "[defaults]\npublish = \"allow\"\n";

fn repo_with(files: &[(&str, &str)]) -> TestRepo {
    let mut all = vec![
        ("README.md", "# sample\n"),
        (".flightdeck/policy.toml", POLICY),
    ];
    all.extend_from_slice(files);
    let repo = TestRepo::with_files(&all);
    repo.commit_all("sample");
    repo
}

/// Every object of the object directory `objects` (and its alternates), uncompressed.
fn objects_text(objects: &Path) -> Vec<u8> {
    let out = Command::new("git")
        .args(["cat-file", "--batch-all-objects", "--batch"])
        .current_dir(objects.parent().unwrap())
        .env("GIT_DIR", probe_repo())
        .env("GIT_OBJECT_DIRECTORY", objects)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    out.stdout
}

/// An empty repository: `cat-file` needs one, and reads the objects it is pointed at.
fn probe_repo() -> &'static Path {
    static PROBE: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    PROBE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let out = Command::new("git")
                .args(["init", "--quiet", "--bare"])
                .arg(dir.path())
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            dir
        })
        .path()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    memchr::memmem::find(haystack, needle.as_bytes()).is_some()
}

fn no_mission_was_created(cli: &Cli) {
    let missions = cli.run(&["--json", "missions"]);
    assert!(
        missions.stdout().trim().is_empty()
            || missions.json().as_array().is_some_and(|m| m.is_empty()),
        "nothing was created: {}",
        missions.stdout()
    );
    let workspaces = cli.data_dir().join("workspaces");
    let made = std::fs::read_dir(&workspaces).map_or(0, |d| d.count());
    assert_eq!(made, 0, "no worktree in {}", workspaces.display());
}

#[test]
fn a_secret_goes_only_to_the_repositories_and_templates_its_scope_names() {
    let template = "goal = \"g\"\n[workspace]\nsecrets = [\"DEPLOY_KEY\"]\n[[steps]]\nrun = 'test -n \"$DEPLOY_KEY\" && echo ok > ok.txt'\n";
    let repo = repo_with(&[(".flightdeck/missions/t.toml", template)]);
    repo.git(&[
        "remote",
        "add",
        "origin",
        "https://github.com/acme/textstats.git",
    ]);
    let checkout = std::fs::canonicalize(repo.path()).unwrap();
    let checkout = checkout.to_str().unwrap();
    let key = "[secrets.DEPLOY_KEY]\nenv = \"FD_TEST_DEPLOY_KEY\"\n";
    // (scope lines, None when the mission runs, else what stderr must say)
    let refused_hint = |s: &'static str| Some(s);
    let cases: Vec<(String, Option<&str>)> = vec![
        (String::new(), refused_hint("repos = [\"acme/textstats\"]")),
        (
            "repos = [\"acme/other\"]\n".into(),
            refused_hint("repos = [\"acme/other\", \"acme/textstats\"]"),
        ),
        (
            "repos = [\"/srv/checkouts/textstats\"]\n".into(),
            refused_hint("repos = [\"/srv/checkouts/textstats\", \"acme/textstats\"]"),
        ),
        (
            "repos = [\"other/acme/textstats\"]\n".into(),
            refused_hint("acme/textstats"),
        ),
        (
            "repos = [\"acme/textstats\"]\ntemplates = [\"deploy\"]\n".into(),
            refused_hint("templates = [\"deploy\", \"t\"]"),
        ),
        (
            "repos = [\"textstats\"]\n".into(),
            refused_hint("is neither `owner/name` nor an absolute path"),
        ),
        ("repos = [\"acme/textstats\"]\n".into(), None),
        ("repos = [\"ACME/TextStats\"]\n".into(), None),
        (format!("repos = [\"{checkout}\"]\n"), None),
        (
            "repos = [\"acme/textstats\"]\ntemplates = [\"t\"]\n".into(),
            None,
        ),
    ];
    for (scope, refused) in cases {
        let cli = Cli::new(BIN);
        cli.write_config(&format!("{key}{scope}"));
        let mut command = cli.command(&["--json", "run", "t", "--repo", checkout]);
        command.env("FD_TEST_DEPLOY_KEY", "deploy-key-value-0123456789");
        let out = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        match refused {
            Some(says) => {
                assert_eq!(out.status.code(), Some(2), "{scope}: {stderr}");
                assert!(stderr.contains("DEPLOY_KEY"), "{scope}: {stderr}");
                assert!(stderr.contains(says), "{scope}: {stderr}");
                assert!(stderr.contains("hint:"), "{scope}: {stderr}");
                if !says.starts_with("is neither") {
                    assert!(stderr.contains("acme/textstats"), "{scope}: {stderr}");
                    assert!(stderr.contains("nothing was created"), "{scope}: {stderr}");
                }
                no_mission_was_created(&cli);
            }
            None => {
                assert_eq!(out.status.code(), Some(0), "{scope}: {stderr}");
                let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
                assert_eq!(summary["status"], "succeeded", "{scope}: {summary}");
            }
        }
    }
}

#[test]
fn a_fork_with_a_new_template_is_judged_by_the_scopes_as_run_is() {
    let plain = "goal = \"g\"\n[[steps]]\nrun = \"echo plain > plain.txt\"\n";
    let with_secret = "goal = \"g\"\n[workspace]\nsecrets = [\"DEPLOY_KEY\"]\n[[steps]]\nrun = 'test -n \"$DEPLOY_KEY\" && echo ok > ok.txt'\n";
    let repo = repo_with(&[(".flightdeck/missions/t.toml", plain)]);
    repo.git(&[
        "remote",
        "add",
        "origin",
        "https://github.com/acme/textstats.git",
    ]);
    let checkout = std::fs::canonicalize(repo.path()).unwrap();
    // The same repository fetched as a remote: its scope entry is the URL's whole path.
    let served = tempfile::tempdir().unwrap();
    let bare = served.path().join("acme/textstats.git");
    let out = Command::new("git")
        .args(["clone", "--quiet", "--bare"])
        .arg(&checkout)
        .arg(&bare)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let remote_entry = bare
        .to_str()
        .unwrap()
        .trim_start_matches('/')
        .trim_end_matches(".git")
        .to_string();
    let remote = format!("file://{}", bare.display());
    let new_template = served.path().join("deploy.toml");
    std::fs::write(&new_template, with_secret).unwrap();
    let key = "[secrets.DEPLOY_KEY]\nenv = \"FD_TEST_DEPLOY_KEY\"\n";
    // (how the mission is started, scope lines, None when the fork runs, else what it says)
    let from_checkout = ["--repo", checkout.to_str().unwrap()];
    let from_remote = ["--remote", remote.as_str()];
    let remote_scope = format!("repos = [\"{remote_entry}\"]\n");
    let remote_hint = format!("repos = [\"acme/other\", \"{remote_entry}\"]");
    let cases: Vec<(&[&str], &str, Option<&str>)> = vec![
        (
            &from_checkout,
            "repos = [\"acme/other\"]\n",
            Some("repos = [\"acme/other\", \"acme/textstats\"]"),
        ),
        (
            &from_checkout,
            "repos = [\"acme/textstats\"]\ntemplates = [\"deploy\"]\n",
            Some("templates = [\"deploy\", \"t\"]"),
        ),
        (&from_checkout, "repos = [\"acme/textstats\"]\n", None),
        (
            &from_remote,
            "repos = [\"acme/other\"]\n",
            Some(&remote_hint),
        ),
        (&from_remote, &remote_scope, None),
    ];
    for (source, scope, refused) in cases {
        let cli = Cli::new(BIN);
        cli.write_config(&format!("{key}{scope}"));
        let mut args = vec!["--json", "run", "t"];
        args.extend_from_slice(source);
        let out = cli.run(&args);
        assert_eq!(out.code(), 0, "{scope}: {}", out.stderr());
        let id = out.json()["id"].as_str().unwrap().to_string();
        let mut fork = cli.command(&[
            "--json",
            "fork",
            &id,
            "--at",
            "1",
            "--template",
            new_template.to_str().unwrap(),
        ]);
        fork.env("FD_TEST_DEPLOY_KEY", "deploy-key-value-0123456789");
        let out = fork.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let missions = cli.run(&["--json", "missions"]).json();
        match refused {
            Some(says) => {
                assert_eq!(out.status.code(), Some(2), "{scope}: {stderr}");
                for needle in ["DEPLOY_KEY", says, "nothing was created", "hint:"] {
                    assert!(stderr.contains(needle), "{scope}: {needle}: {stderr}");
                }
                assert_eq!(missions.as_array().unwrap().len(), 1, "{scope}: {missions}");
            }
            None => {
                assert_eq!(out.status.code(), Some(0), "{scope}: {stderr}");
                let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
                assert_eq!(summary["status"], "succeeded", "{scope}: {summary}");
                assert_eq!(missions.as_array().unwrap().len(), 2, "{scope}: {missions}");
            }
        }
    }
}

/// Shell that prints a form of `$API_TOKEN` (every transformation redaction knows).
const FORMS: &[(&str, &str)] = &[
    ("raw", r#"printf %s "$API_TOKEN""#),
    ("upper", r#"printf %s "$API_TOKEN" | tr a-z A-Z"#),
    (
        "hex",
        r#"printf %s "$API_TOKEN" | od -An -tx1 | tr -d ' \n'"#,
    ),
    (
        "HEX",
        r#"printf %s "$API_TOKEN" | od -An -tx1 | tr -d ' \n' | tr a-f A-F"#,
    ),
    ("reversed", r#"printf %s "$API_TOKEN" | rev"#),
    ("base64", r#"printf %s "$API_TOKEN" | base64 -w0"#),
];

/// The form `name` of `value`, as the shell above makes it.
fn form_of(name: &str, value: &str) -> String {
    use base64::Engine as _;
    let hex: String = value.bytes().map(|b| format!("{b:02x}")).collect();
    match name {
        "raw" => value.to_string(),
        "upper" => value.to_ascii_uppercase(),
        "hex" => hex,
        "HEX" => hex.to_ascii_uppercase(),
        "reversed" => value.chars().rev().collect(),
        "base64" => base64::engine::general_purpose::STANDARD.encode(value),
        other => panic!("no form {other}"),
    }
}

/// Secrets × forms × places: a step prints a form of the secret and fails (the command
/// output artifact and the failure event hold it, masked), or writes it into a file (the
/// step fails `secret_in_worktree`, naming the file; no object store, patch or artifact
/// holds it).
#[test]
fn no_form_of_a_secret_is_stored_or_reaches_git() {
    let values = [
        format!("tok_{}_9f8e7d6c5b4a", std::process::id()),
        format!("Pass-{}-Word-Mixed", std::process::id()),
    ];
    let mut files = Vec::new();
    for (form, shell) in FORMS {
        files.push((
            format!(".flightdeck/missions/print-{form}.toml"),
            format!("goal = \"g\"\n[workspace]\nsecrets = [\"API_TOKEN\"]\n[[steps]]\nrun = '''echo \"form: $({shell})\"; exit 3'''\n"),
        ));
        files.push((
            format!(".flightdeck/missions/leak-{form}.toml"),
            format!("goal = \"g\"\n[workspace]\nsecrets = [\"API_TOKEN\"]\n[[steps]]\nrun = '''echo fine > fine.txt; mkdir -p out; {shell} > out/leak.txt; echo written'''\n"),
        ));
    }
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let repo = repo_with(&files);
    let checkout = repo.path().to_str().unwrap().to_string();
    for value in &values {
        let cli = Cli::new(BIN);
        cli.write_config(&format!(
            "[secrets.API_TOKEN]\nenv = \"FD_TEST_API_TOKEN\"\nrepos = [\"{checkout}\"]\n"
        ));
        for (form, _) in FORMS {
            let shown = form_of(form, value);
            for template in [format!("print-{form}"), format!("leak-{form}")] {
                let mut command = cli.command(&["--json", "run", &template, "--repo", &checkout]);
                command.env("FD_TEST_API_TOKEN", value);
                let out = command.output().unwrap();
                let summary: Value = serde_json::from_slice(&out.stdout)
                    .unwrap_or_else(|_| panic!("{template}: {out:?}"));
                assert_eq!(summary["status"], "failed", "{template}: {summary}");
                let id = summary["id"].as_str().unwrap();
                let error = &cli.run(&["--json", "show", id]).json()["error"];
                let message = error["message"].as_str().unwrap();
                assert!(!message.contains(&shown), "{template}: {message}");
                let output = cli
                    .timeline(id)
                    .into_iter()
                    .find(|e| e["type"] == "tool.completed")
                    .map(|e| e["data"]["output"].as_str().unwrap().to_string())
                    .unwrap();
                let artifact = cli.run(&["artifact", &output]).stdout();
                if template.starts_with("print") {
                    assert_eq!(error["kind"], "step_failed", "{template}: {error}");
                    // Event payload: the failure's tail of output, masked.
                    assert!(
                        message.contains("form: [REDACTED:API_TOKEN]"),
                        "{template}: {message}"
                    );
                    // Command output artifact, masked.
                    assert!(
                        artifact.contains("form: [REDACTED:API_TOKEN]"),
                        "{template}: {artifact}"
                    );
                } else {
                    assert_eq!(error["kind"], "secret_in_worktree", "{template}: {error}");
                    assert!(message.contains("out/leak.txt"), "{template}: {message}");
                    assert!(message.contains("`API_TOKEN`"), "{template}: {message}");
                    assert!(artifact.contains("written"), "{template}: {artifact}");
                    // Nothing of that step reached an object store: not even the harmless
                    // file written beside the secret.
                    let mission_objects = cli.data_dir().join("objects").join(id);
                    let recorded = objects_text(&mission_objects);
                    assert!(!contains(&recorded, "fine\n"), "{template}");
                }
            }
            // Places: every object store (the user's, every mission's) and every file of the
            // data directory (events, artifacts, patches).
            let user = objects_text(&repo.path().join(".git/objects"));
            assert!(!contains(&user, &shown), "{form} is in the user's objects");
            for entry in std::fs::read_dir(cli.data_dir().join("objects")).unwrap() {
                let dir = entry.unwrap().path();
                if dir.is_dir() {
                    let text = objects_text(&dir);
                    assert!(!contains(&text, &shown), "{form} is in {}", dir.display());
                }
            }
            // The failed mission's worktree is kept for inspection, with the file the step
            // wrote: that is the step's own output, not something flightdeck stored.
            let workspaces = cli.data_dir().join("workspaces");
            for (path, bytes) in cli.data_files() {
                if path.starts_with(&workspaces) {
                    continue;
                }
                assert!(!contains(&bytes, &shown), "{form} is in {}", path.display());
            }
        }
    }
}

const MARKER_SCRIPT: &str = r#"
model = "sim-1"
[[turn]]
[[turn.call]]
tool = "write_file"
args = { path = "draft.txt", content = "MARKER-A\n" }

[[turn]]
[[turn.call]]
tool = "edit_file"
args = { path = "draft.txt", old = "-A", new = "-fd-objects-7c1e9a" }

[[turn]]
[[turn.call]]
tool = "write_file"
args = { path = "draft.txt", content = "final text\n" }

[[turn]]
[[turn.call]]
tool = "finish"
args = { summary = "Wrote the draft." }
"#;

/// A mission's snapshots go to its own object directory under the data directory, never into
/// the user's `.git/objects`; the mission still publishes (its commit reaches the repository),
/// verifies and replays.
#[test]
fn mission_snapshots_stay_out_of_the_users_object_store() {
    let template = "goal = \"Write the draft.\"\n[model]\npin = \"scripted:.flightdeck/script.toml\"\n[[steps]]\nagent = \"coder\"\n";
    let repo = repo_with(&[
        (".flightdeck/missions/t.toml", template),
        (".flightdeck/script.toml", MARKER_SCRIPT),
    ]);
    let cli = Cli::new(BIN);
    let out = cli.run(&[
        "--json",
        "run",
        "t",
        "--repo",
        repo.path().to_str().unwrap(),
    ]);
    assert_eq!(out.code(), 0, "{}", out.stderr());
    let summary = out.json();
    assert_eq!(summary["status"], "succeeded", "{summary}");
    let id = summary["id"].as_str().unwrap();
    // Made by the edit: the script (committed in the repository) never holds it whole.
    let marker = "MARKER-fd-objects-7c1e9a";

    let user = objects_text(&repo.path().join(".git/objects"));
    assert!(
        !contains(&user, marker),
        "a snapshot reached the user's objects"
    );
    let mission = objects_text(&cli.data_dir().join("objects").join(id));
    assert!(contains(&mission, marker), "the snapshot is the mission's");

    // Published: the commit and its files are in the repository itself.
    let branch = cli.run(&["--json", "show", id]).json()["branch"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        repo.git(&["show", &format!("{branch}:draft.txt")])
            .trim_end(),
        "final text"
    );
    let fsck = Command::new("git")
        .args([
            "-C",
            repo.path().to_str().unwrap(),
            "fsck",
            "--connectivity-only",
        ])
        .output()
        .unwrap();
    assert!(fsck.status.success(), "{fsck:?}");

    let verify = cli.run(&["audit", "verify", id]);
    assert_eq!(verify.code(), 0, "{}{}", verify.stdout(), verify.stderr());
    let replay = cli.run(&["--json", "replay", id]);
    assert_eq!(replay.code(), 0, "{}{}", replay.stdout(), replay.stderr());
}
