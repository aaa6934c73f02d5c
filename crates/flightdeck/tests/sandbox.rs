//! The local workspace's walls, end to end with the real binary and the real bubblewrap
//! sandbox: escape attempts (each must fail, and the mission must say why), secrets given
//! only where the template allows and never stored, limits, toolchain pins and caches.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::{Path, PathBuf};

use base64::Engine as _;
use flightdeck_testkit::{Cli, TestRepo};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");
const POLICY: &str = "[defaults]\npublish = \"allow\"\n";

fn repo_with(template: &str, files: &[(&str, &str)]) -> TestRepo {
    let mut all = vec![
        ("README.md", "# sample\n"),
        (".flightdeck/missions/t.toml", template),
        (".flightdeck/policy.toml", POLICY),
    ];
    all.extend_from_slice(files);
    let repo = TestRepo::with_files(&all);
    repo.commit_all("sample");
    repo
}

/// Runs template `t`; the exit code and the JSON summary.
fn run(cli: &Cli, repo: &TestRepo) -> (i32, Value) {
    let out = cli.run(&[
        "--json",
        "run",
        "t",
        "--repo",
        repo.path().to_str().unwrap(),
    ]);
    let code = out.code();
    let summary = if out.stdout().trim().is_empty() {
        Value::Null
    } else {
        out.json()
    };
    assert!(!summary.is_null() || code == 2, "{}", out.stderr());
    (code, summary)
}

fn provisioned(cli: &Cli, id: &str) -> Value {
    cli.timeline(id)
        .into_iter()
        .find(|e| e["type"] == "workspace.provisioned")
        .map(|e| e["data"].clone())
        .expect("workspace.provisioned")
}

/// A file in this user's real home (tests run as root in CI: `/root`), removed when dropped.
struct HomeFile(PathBuf);

impl HomeFile {
    fn new(content: &str) -> HomeFile {
        let home = PathBuf::from(std::env::var("HOME").expect("HOME is set"));
        let path = home.join(format!(".flightdeck-escape-{}", std::process::id()));
        std::fs::write(&path, content).unwrap();
        HomeFile(path)
    }
}

impl Drop for HomeFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A file only root may read in `/etc`, which every sandbox sees, removed when dropped.
struct RootOnlyFile(PathBuf);

impl RootOnlyFile {
    fn new() -> RootOnlyFile {
        use std::os::unix::fs::PermissionsExt;
        let path = PathBuf::from(format!("/etc/flightdeck-escape-{}", std::process::id()));
        std::fs::write(&path, "root's eyes only\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        RootOnlyFile(path)
    }
}

impl Drop for RootOnlyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A directory outside `/tmp` (which is private in the sandbox, so a write there would not
/// show the wall), where the host may write and the sandbox must not.
fn outside_dir() -> tempfile::TempDir {
    tempfile::tempdir_in("/var/tmp").unwrap()
}

#[test]
fn escape_attempts_fail_and_the_mission_says_why() {
    let secret = HomeFile::new("the host's private notes\n");
    let root_only = RootOnlyFile::new();
    let outside = outside_dir();
    std::fs::write(outside.path().join("target.txt"), "host file\n").unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let secret_path = secret.0.display().to_string();
    let outside_path = outside.path().display().to_string();

    // (what is tried, extra files in the repo, the step, what the failure must say)
    type Attempt<'a> = (&'a str, Vec<(String, String)>, String, &'a str);
    let attempts: Vec<Attempt> = vec![
        (
            "reach a server on the host's loopback",
            vec![],
            format!(
                "python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), 3)\""
            ),
            "Connection refused",
        ),
        (
            "write outside the worktree (not even there: the sandbox is an allow-list)",
            vec![],
            format!("echo escaped > {outside_path}/escaped.txt"),
            "Directory nonexistent",
        ),
        (
            "read a file in the host's home",
            vec![],
            format!("cat {secret_path}"),
            "No such file or directory",
        ),
        (
            "read the installation config in the data directory",
            vec![],
            "cat {data}/config.toml".to_string(),
            "No such file or directory",
        ),
        (
            "read an untracked file in the checkout the mission started from",
            vec![],
            "cat {repo}/.env".to_string(),
            "No such file or directory",
        ),
        (
            "follow a symlink out of the worktree to read the host's home",
            vec![("notes".to_string(), secret_path.clone())],
            "cat notes".to_string(),
            "No such file or directory",
        ),
        (
            "follow a symlink out of the worktree to write",
            vec![(
                "target.txt".to_string(),
                format!("{outside_path}/target.txt"),
            )],
            "echo overwritten > target.txt".to_string(),
            "Directory nonexistent",
        ),
        (
            "read a root-only file in a system directory (commands run as nobody)",
            vec![],
            format!("cat {}", root_only.0.display()),
            "Permission denied",
        ),
        (
            "exhaust processes",
            vec![],
            "i=0; while [ $i -lt 200 ]; do sleep 3 & i=$((i+1)); done; wait".to_string(),
            "the command hit the workspace's process limit (max_processes = 40)",
        ),
    ];
    for (what, links, step, says) in &attempts {
        let cli = Cli::new(BIN);
        cli.write_config("[identity]\ndefault = \"@carol\"\n");
        let step = step.replace("{data}", &cli.data_dir().display().to_string());
        let template = format!(
            "goal = \"g\"\n[workspace]\nmax_processes = 40\n[[steps]]\nrun = '''{step}'''\n"
        );
        // The checkout lives outside /tmp (private in the sandbox anyway), as a user's would.
        let checkout = tempfile::tempdir_in("/var/tmp").unwrap();
        let checkout_path = checkout.path().join("repo");
        let template = template.replace("{repo}", checkout_path.to_str().unwrap());
        let repo = repo_with(&template, &[]);
        for (name, target) in links {
            std::os::unix::fs::symlink(target, repo.path().join(name)).unwrap();
        }
        repo.commit_all("links");
        flightdeck_testkit::git_in(
            checkout.path(),
            &["clone", "-q", repo.path().to_str().unwrap(), "repo"],
        );
        // Untracked: in the checkout, not in the mission's worktree.
        std::fs::write(checkout_path.join(".env"), "API_KEY=from-the-checkout\n").unwrap();
        let out = cli
            .command(&[
                "--json",
                "run",
                "t",
                "--repo",
                checkout_path.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{what}: {out:?}");
        let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(summary["status"], "failed", "{what}");
        assert_eq!(summary["error"]["kind"], "step_failed", "{what}");
        let message = summary["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(says),
            "{what}: the mission says {message:?}"
        );
    }
    // Nothing reached the host.
    assert!(
        listener.accept().is_err(),
        "the loopback server got a connection"
    );
    assert!(!outside.path().join("escaped.txt").exists());
    assert_eq!(
        std::fs::read_to_string(outside.path().join("target.txt")).unwrap(),
        "host file\n"
    );
}

#[test]
fn the_store_the_signing_key_and_git_configs_are_covered_wherever_they_live() {
    // A store and a key under /opt, which every sandbox sees (toolchains live there).
    let place = PathBuf::from(format!("/opt/flightdeck-test-{}", std::process::id()));
    std::fs::create_dir_all(&place).unwrap();
    struct Remove(PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _remove = Remove(place.clone());
    let store = place.join("store.db");
    let key = place.join("key.pem");
    // A real key: live engines sign the anchor file with it.
    let made = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let repo = repo_with("goal = \"g\"\n", &[]);
    // A submodule's git dir, with a config (credentials live in such files).
    let module = repo.path().join(".git/modules/lib");
    std::fs::create_dir_all(&module).unwrap();
    std::fs::write(
        module.join("config"),
        "[remote \"origin\"]\nurl = https://user:token@example.com/lib\n",
    )
    .unwrap();
    let files = [
        store.clone(),
        place.join("store.db-wal"),
        key.clone(),
        repo.path().join(".git/config"),
        module.join("config"),
    ];
    let listed: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    // Each file's size as the sandbox sees it (a covered file is empty; -1 if absent).
    let step = format!(
        "for f in {}; do if [ -e \"$f\" ]; then wc -c < \"$f\"; else echo -1; fi; done > sizes.txt",
        listed.join(" ")
    );
    repo.write_files(&[(
        ".flightdeck/missions/t.toml",
        &format!("goal = \"g\"\n[[steps]]\nrun = '''{step}'''\n"),
    )]);
    repo.commit_all("probe");
    let cli = Cli::new(BIN);
    cli.write_config(&format!("[audit]\nsigning_key = \"{}\"\n", key.display()));
    let out = cli
        .command(&[
            "--database-url",
            &format!("sqlite://{}", store.display()),
            "--json",
            "run",
            "t",
            "--repo",
            repo.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["status"], "succeeded", "{summary} {out:?}");
    let branch = summary["branch"].as_str().unwrap();
    let sizes = repo.git(&["show", &format!("{branch}:sizes.txt")]);
    let sizes: Vec<&str> = sizes.lines().collect();
    assert_eq!(sizes.len(), listed.len(), "{sizes:?}");
    // The store exists on the host and is not empty; in the sandbox every file is.
    assert!(std::fs::metadata(&store).unwrap().len() > 0);
    for (file, size) in listed.iter().zip(&sizes) {
        assert!(
            *size == "0" || (*size == "-1" && !Path::new(file).exists()),
            "{file} is {size} bytes in the sandbox"
        );
    }
}

#[test]
fn limits_are_recorded_and_enforced_by_cgroups() {
    let repo = repo_with(
        "goal = \"g\"\n[workspace]\nmemory_mb = 64\nmax_processes = 100\n[[steps]]\nrun = \"python3 -c 'x = bytearray(300 * 1024 * 1024)'\"\n",
        &[],
    );
    let cli = Cli::new(BIN);
    let (code, summary) = run(&cli, &repo);
    assert_eq!(code, 1, "{summary}");
    let message = summary["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("the command hit the workspace's memory limit (memory_mb = 64)"),
        "{message}"
    );
    let limits = &provisioned(&cli, summary["id"].as_str().unwrap())["limits"];
    assert_eq!(limits["memory_mb"], 64);
    assert_eq!(limits["max_processes"], 100);
    assert!(
        limits["enforced"].as_str().unwrap().starts_with("cgroup"),
        "{limits}"
    );
}

#[test]
fn the_sandbox_has_its_own_home_a_clean_environment_and_the_toolchains() {
    let repo = repo_with(
        "goal = \"g\"\n[[steps]]\nrun = '''test \"$HOME\" != /root && touch \"$HOME/.made\" && env > env.txt && rustc --version > rustc.txt && git log --format=%s > log.txt && git status --short > status.txt'''\n",
        &[],
    );
    let cli = Cli::new(BIN);
    let mut command = cli.command(&[
        "--json",
        "run",
        "t",
        "--repo",
        repo.path().to_str().unwrap(),
    ]);
    command.env("FLIGHTDECK_TEST_LEAK", "leaked-value-123");
    let out = command.output().unwrap();
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["status"], "succeeded", "{summary}");
    let id = summary["id"].as_str().unwrap();
    let branch = summary["branch"].as_str().unwrap();
    let env = repo.git(&["show", &format!("{branch}:env.txt")]);
    assert!(!env.contains("leaked-value-123"), "{env}");
    let home = env
        .lines()
        .find_map(|l| l.strip_prefix("HOME="))
        .unwrap()
        .to_string();
    assert!(home.ends_with(&format!("workspaces/{id}.home")), "{home}");
    assert!(env.contains(&format!("FLIGHTDECK_MISSION={id}")), "{env}");
    let rustc = repo.git(&["show", &format!("{branch}:rustc.txt")]);
    assert!(rustc.starts_with("rustc "), "{rustc}");
    // git works in the worktree (the repository's objects are there, read-only).
    let log = repo.git(&["show", &format!("{branch}:log.txt")]);
    assert!(log.starts_with("sample\n"), "{log}");
}

#[test]
fn secrets_go_only_where_allowed_and_are_never_stored() {
    let value = format!("s3cr3t-{}-value-for-the-test", std::process::id());
    let template = r#"goal = "g"
[workspace]
secrets = ["API_TOKEN"]
[[steps]]
run = '''test -n "$API_TOKEN" && echo "token=$API_TOKEN" && printf %s "$API_TOKEN" | base64 && printf 'x%s' "$API_TOKEN" | base64 && echo "$API_TOKEN" | sed 's/-/%2D/g' && echo "$API_TOKEN" > "$HOME/.token" && echo "$API_TOKEN" > /tmp/token && echo ok > used.txt'''
[[steps]]
secrets = []
run = '''test -z "$API_TOKEN" && test ! -e "$HOME/.token" && test ! -e /tmp/token && echo "no secret here" > unused.txt'''
[[steps]]
run = '''echo "about to fail with $API_TOKEN"; exit 3'''
"#;
    let repo = repo_with(template, &[]);
    let cli = Cli::new(BIN);
    cli.write_config(&format!(
        "[secrets.API_TOKEN]\nenv = \"FD_TEST_API_TOKEN\"\nrepos = [\"{}\"]\n",
        repo.path().display()
    ));
    let mut command = cli.command(&[
        "--json",
        "run",
        "t",
        "--repo",
        repo.path().to_str().unwrap(),
    ]);
    command.env("FD_TEST_API_TOKEN", &value);
    let out = command.output().unwrap();
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    // The second step finds nothing the first left in its HOME or /tmp (a throwaway HOME).
    // The last step fails printing the secret: its message, stored in the mission's summary
    // and in `mission.finished`, is masked too.
    assert_eq!(summary["status"], "failed", "{summary} {out:?}");
    assert_eq!(summary["steps"][1]["status"], "succeeded", "{summary}");
    let id = summary["id"].as_str().unwrap();
    let shown = cli.run(&["--json", "show", id]).json();
    let message = shown["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("about to fail with [REDACTED:API_TOKEN]"),
        "{message}"
    );
    let data = provisioned(&cli, id);
    assert_eq!(data["secrets"], serde_json::json!(["API_TOKEN"]));
    // The step's output was stored, masked.
    let output = cli
        .timeline(id)
        .into_iter()
        .find(|e| e["type"] == "tool.completed")
        .map(|e| e["data"]["output"].as_str().unwrap().to_string())
        .unwrap();
    let shown = cli.run(&["artifact", &output]).stdout();
    assert!(shown.contains("token=[REDACTED:API_TOKEN]"), "{shown}");

    let b64 = base64::engine::general_purpose::STANDARD;
    let forms = [
        value.clone(),
        b64.encode(&value),
        // The inner part of the base64 of `x` + value: what a shifted encoding shares.
        b64.encode(format!("x{value}"))[4..24].to_string(),
        value.replace('-', "%2D"),
    ];
    for (path, bytes) in cli.data_files() {
        for form in &forms {
            assert!(
                memchr::memmem::find(&bytes, form.as_bytes()).is_none(),
                "{form:?} is in {}",
                path.display()
            );
        }
    }
}

#[test]
fn a_missing_secret_fails_before_anything_runs_naming_it() {
    let repo = repo_with(
        "goal = \"g\"\n[workspace]\nsecrets = [\"DEPLOY_KEY\"]\n[[steps]]\nrun = \"echo hi > hi.txt\"\n",
        &[],
    );
    for (config, says) in [
        ("", "the installation config has no [secrets.DEPLOY_KEY]"),
        (
            "[secrets.DEPLOY_KEY]\nenv = \"FD_TEST_UNSET_VARIABLE\"\n",
            "the environment variable `FD_TEST_UNSET_VARIABLE` is not set",
        ),
        (
            "[secrets.DEPLOY_KEY]\nfile = \"/nonexistent/deploy_key\"\n",
            "cannot read /nonexistent/deploy_key",
        ),
    ] {
        let cli = Cli::new(BIN);
        cli.write_config(config);
        let out = cli.run(&["run", "t", "--repo", repo.path().to_str().unwrap()]);
        assert_eq!(out.code(), 2, "{}", out.stderr());
        let stderr = out.stderr();
        assert!(stderr.contains("secret `DEPLOY_KEY`"), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
        assert!(stderr.contains("hint:"), "{stderr}");
        let missions = cli.run(&["--json", "missions"]);
        assert!(
            missions.stdout().trim().is_empty()
                || missions.json().as_array().is_some_and(|m| m.is_empty()),
            "nothing was created: {}",
            missions.stdout()
        );
    }
}

#[test]
fn toolchain_pins_are_recorded_and_drift_is_enforced_when_asked() {
    let files: &[(&str, &str)] = &[
        ("rust-toolchain.toml", "[toolchain]\nchannel = \"stable\"\n"),
        (".python-version", "2.7.18\n"),
    ];
    for (mode, code) in [("warn", 0), ("enforce", 1)] {
        let template = format!(
            "goal = \"g\"\n[workspace]\ntoolchain = \"{mode}\"\n[[steps]]\nrun = \"echo ran > ran.txt\"\n"
        );
        let repo = repo_with(&template, files);
        let cli = Cli::new(BIN);
        let (exit, summary) = run(&cli, &repo);
        assert_eq!(exit, code, "{mode}: {summary}");
        let id = summary["id"].as_str().unwrap();
        let events = cli.timeline(id);
        let toolchain = &provisioned(&cli, id)["toolchain"];
        assert_eq!(toolchain["rust"]["pinned"], "stable");
        assert_eq!(toolchain["rust"]["ok"], true);
        assert!(toolchain["rust"]["found"]
            .as_str()
            .unwrap()
            .starts_with("1."));
        assert_eq!(toolchain["python"]["pinned"], "2.7.18");
        assert_eq!(toolchain["python"]["source"], ".python-version");
        let drift: Vec<&Value> = events
            .iter()
            .filter(|e| e["type"] == "workspace.drift")
            .map(|e| &e["data"])
            .collect();
        assert_eq!(drift.len(), 1, "{drift:?}");
        assert_eq!(drift[0]["tool"], "python");
        assert_eq!(drift[0]["pinned"], "2.7.18");
        // pyenv's shim refuses a version it does not have; then the system's python answers.
        let found = drift[0]["found"].as_str().unwrap();
        assert!(found.starts_with("3.") || found == "(missing)", "{found}");
        let ran = events.iter().any(|e| e["type"] == "step.started");
        if mode == "enforce" {
            assert_eq!(summary["error"]["kind"], "toolchain_drift");
            let message = summary["error"]["message"].as_str().unwrap();
            assert!(message.contains("python pinned 2.7.18"), "{message}");
            assert!(!ran, "no step runs when the toolchain drifts under enforce");
        } else {
            assert!(ran);
        }
    }
}

#[test]
fn caches_are_keyed_by_lockfiles_and_shared() {
    let template =
        "goal = \"g\"\n[[steps]]\nrun = '''echo \"$npm_config_cache\" > cache.txt && touch \"$npm_config_cache/marker-$FLIGHTDECK_MISSION\"'''\n";
    let repo = repo_with(
        template,
        &[("package-lock.json", "{\"lockfileVersion\": 3}\n")],
    );
    let cli = Cli::new(BIN);
    let mut keys = Vec::new();
    for _ in 0..2 {
        let (code, summary) = run(&cli, &repo);
        assert_eq!(code, 0, "{summary}");
        let id = summary["id"].as_str().unwrap().to_string();
        let caches = provisioned(&cli, &id)["caches"].clone();
        assert_eq!(
            caches["npm"]["lockfiles"],
            serde_json::json!(["package-lock.json"])
        );
        keys.push(caches["npm"]["key"].as_str().unwrap().to_string());
    }
    assert_eq!(keys[0], keys[1]);
    // Both missions wrote into the one cache directory for that key.
    let dir = std::fs::read_dir(cli.data_dir().join("caches/npm"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect::<Vec<_>>();
    assert_eq!(dir.len(), 1, "{dir:?}");
    let markers = std::fs::read_dir(&dir[0]).unwrap().count();
    assert_eq!(markers, 2);
}

#[test]
fn workspace_up_exec_down_and_gc() {
    let repo = repo_with(
        "goal = \"g\"\n[workspace]\nmax_processes = 50\n[[steps]]\nrun = \"true\"\n",
        &[("rust-toolchain.toml", "[toolchain]\nchannel = \"stable\"\n")],
    );
    let cli = Cli::new(BIN);
    let dir = repo.path().to_str().unwrap();
    let up = cli
        .run(&[
            "--json",
            "workspace",
            "up",
            "--repo",
            dir,
            "--template",
            "t",
        ])
        .expect_code(0)
        .json();
    let id = up["id"].as_str().unwrap().to_string();
    assert_eq!(up["workspace"]["runtime"], "local");
    assert_eq!(up["workspace"]["limits"]["max_processes"], 50);
    assert_eq!(up["workspace"]["toolchain"]["rust"]["ok"], true);
    let path = PathBuf::from(up["workspace"]["path"].as_str().unwrap());
    assert!(path.join("README.md").is_file());

    let out = cli.run(&[
        "workspace",
        "exec",
        "--repo",
        dir,
        "--",
        "sh",
        "-c",
        "cat README.md; echo made > new.txt; exit 3",
    ]);
    assert_eq!(out.code(), 3, "{}", out.stderr());
    assert_eq!(out.stdout(), "# sample\n");
    assert_eq!(
        std::fs::read_to_string(path.join("new.txt")).unwrap(),
        "made\n"
    );
    // Unknown repository: said clearly.
    let other = tempfile::tempdir().unwrap();
    flightdeck_testkit::git_in(other.path(), &["init", "-q"]);
    let out = cli.run(&[
        "workspace",
        "exec",
        "--repo",
        other.path().to_str().unwrap(),
        "--",
        "true",
    ]);
    assert_eq!(out.code(), 2);
    assert!(
        out.stderr().contains("flightdeck workspace up"),
        "{}",
        out.stderr()
    );

    // gc keeps a live debugging workspace and removes a finished mission's.
    let (code, summary) = run(&cli, &repo);
    assert_eq!(code, 0, "{summary}");
    let mission = summary["id"].as_str().unwrap().to_string();
    std::fs::create_dir_all(cli.data_dir().join(format!("workspaces/{mission}"))).unwrap();
    std::fs::create_dir_all(
        cli.data_dir()
            .join("workspaces/m-00000000000000000000000000"),
    )
    .unwrap();
    let dry = cli
        .run(&["--json", "workspace", "gc", "--dry-run"])
        .expect_code(0)
        .json();
    let ids: Vec<&str> = dry["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["m-00000000000000000000000000", mission.as_str()],
        "{dry}"
    );
    assert!(cli
        .data_dir()
        .join(format!("workspaces/{mission}"))
        .exists());
    cli.run(&["workspace", "gc"]).expect_code(0);
    assert!(!cli
        .data_dir()
        .join(format!("workspaces/{mission}"))
        .exists());
    assert!(path.exists(), "the debugging workspace stays");

    cli.run(&["workspace", "down", "--repo", dir])
        .expect_code(0);
    assert!(!path.exists());
    assert!(!cli
        .data_dir()
        .join(format!("workspaces/{id}.home"))
        .exists());
}

#[test]
fn only_the_installation_lets_a_template_run_unsandboxed_and_a_policy_may_still_forbid() {
    let template = "goal = \"g\"\n[workspace]\nruntime = \"local-unsandboxed\"\n[[steps]]\nrun = \"echo hi > hi.txt\"\n";
    let allow = "[workspace]\nallow_unsandboxed = true\n";
    // (installation config, the repository's policy, exit code, what stderr says)
    let cases = [
        // The repository cannot turn the sandbox off by itself, whatever its policy says.
        ("", POLICY, 2, "not allowed by this installation"),
        (
            "",
            "allow_unsandboxed = true\n[defaults]\npublish = \"allow\"\n",
            2,
            "allow_unsandboxed = true under [workspace]",
        ),
        (
            "[workspace]\nallow_unsandboxed = false\n",
            POLICY,
            2,
            "not allowed by this installation",
        ),
        (
            allow,
            "allow_unsandboxed = false\n[defaults]\npublish = \"allow\"\n",
            2,
            "forbidden by the policy",
        ),
        // `allow_unsandboxed` under [defaults] is not a default: an unknown key.
        (
            allow,
            "[defaults]\npublish = \"allow\"\nallow_unsandboxed = false\n",
            2,
            "allow_unsandboxed",
        ),
        (allow, POLICY, 0, ""),
    ];
    for (config, policy, code, says) in cases {
        let repo = repo_with(template, &[]);
        repo.write_files(&[(".flightdeck/policy.toml", policy)]);
        repo.commit_all("policy");
        let cli = Cli::new(BIN);
        cli.write_config(config);
        let out = cli.run(&[
            "--json",
            "run",
            "t",
            "--repo",
            repo.path().to_str().unwrap(),
        ]);
        assert_eq!(out.code(), code, "{config} {policy}: {}", out.stderr());
        assert!(
            out.stderr().contains(says),
            "{config} {policy}: {}",
            out.stderr()
        );
        if code == 0 {
            let summary = out.json();
            let data = provisioned(&cli, summary["id"].as_str().unwrap());
            assert_eq!(data["runtime"], "local-unsandboxed");
            assert_eq!(data["sandbox"], "none");
        }
    }
}

#[test]
fn a_killed_flightdeck_leaves_no_cgroup_behind_once_collected() {
    // cgroup2, or cgroup1's pids and memory hierarchies.
    let parents = [
        "/sys/fs/cgroup/flightdeck",
        "/sys/fs/cgroup/pids/flightdeck",
        "/sys/fs/cgroup/memory/flightdeck",
    ];
    let repo = repo_with("goal = \"g\"\n[[steps]]\nrun = \"sleep 60\"\n", &[]);
    let cli = Cli::new(BIN);
    let mut child = cli
        .command(&["run", "t", "--repo", repo.path().to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let prefix = format!("ws-{}-", child.id());
    let ours = || -> Vec<PathBuf> {
        parents
            .iter()
            .filter_map(|parent| std::fs::read_dir(parent).ok())
            .flat_map(|entries| entries.flatten())
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while ours().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the command never joined a cgroup under {parents:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // The sandbox dies with flightdeck (its watchdog); its group is left behind, empty.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let out = cli.run(&["--json", "workspace", "gc"]);
        assert_eq!(out.code(), 0, "{}", out.stderr());
        if ours().is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "left behind: {:?}",
            ours()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn a_step_that_changes_too_much_fails_before_anything_is_recorded() {
    // (what the step does, the kind the mission fails with)
    let cases = [
        (
            "mkdir many && cd many && seq 1 20001 | xargs touch && echo made",
            "workspace_too_large",
        ),
        // A sparse file: its size counts, not the blocks it uses.
        ("truncate -s 600M big.bin", "workspace_too_large"),
        ("seq 1 100 | sed 's/^/f/' | xargs touch", ""),
    ];
    for (step, kind) in cases {
        let repo = repo_with(&format!("goal = \"g\"\n[[steps]]\nrun = \"{step}\"\n"), &[]);
        let cli = Cli::new(BIN);
        let (code, summary) = run(&cli, &repo);
        if kind.is_empty() {
            assert_eq!(code, 0, "{step}: {summary}");
            continue;
        }
        assert_eq!(code, 1, "{step}: {summary}");
        assert_eq!(summary["error"]["kind"], kind, "{step}: {summary}");
        let message = summary["error"]["message"].as_str().unwrap();
        assert!(message.contains("nothing was recorded"), "{message}");
        // Nothing of it reached an object store: the mission's holds no blob at all.
        let id = summary["id"].as_str().unwrap();
        let objects = cli.data_dir().join("objects").join(id);
        let out = std::process::Command::new("git")
            .args(["-C", repo.path().to_str().unwrap(), "count-objects", "-v"])
            .env("GIT_OBJECT_DIRECTORY", &objects)
            .output()
            .unwrap();
        let counted = String::from_utf8_lossy(&out.stdout);
        assert!(counted.contains("count: 0\n"), "{step}: {counted}");
        assert!(counted.contains("in-pack: 0\n"), "{step}: {counted}");
    }
}

/// Whether a process on this host has exactly `argv`.
fn host_process_with(argv: &[&str]) -> bool {
    let wanted: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        std::fs::read(entry.path().join("cmdline")).is_ok_and(|cmdline| cmdline == wanted)
    })
}

#[test]
fn commands_enter_one_sandbox_and_each_finds_it_as_a_sandbox_of_its_own() {
    // The server's own mode refuses to run anywhere but as a sandbox's PID 1 (its kill(-1)
    // would reach every process of the host).
    let out = std::process::Command::new(BIN)
        .args(["__flightdeck-sandbox-server", "65534", "65534"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("inside a workspace's sandbox"));

    // Each step is checked by the next: the first leaves processes, a file in /tmp and an
    // IPC object. As root (CI), commands are run by the workspace's server; without root,
    // each gets a bubblewrap of its own (and the server's checks do not apply).
    let steps = [
        // Run by the workspace's server (PID 1), not by a bubblewrap of its own.
        "[ \"$(id -u)\" != 65534 ] || tr '\\0' ' ' < /proc/1/cmdline | grep -q __flightdeck-sandbox-server",
        "(sleep 4241 &) ; setsid sleep 4242 & echo mine > /tmp/left; mkdir -p /tmp/d/e; ipcmk -M 4096; echo kept > kept.txt",
        // Nothing the last command left runs or is in /tmp; what it wrote in the worktree is.
        "! grep -qsx sleep /proc/[0-9]*/comm && test ! -e /tmp/left && test ! -e /tmp/d && test -z \"$(tail -n +2 /proc/sysvipc/shm)\" && test -f kept.txt",
        // The server is out of a command's reach: not readable, not signalled.
        "[ \"$(id -u)\" != 65534 ] || { ! cat /proc/1/environ 2>/dev/null && ! kill -0 1 2>/dev/null; }",
    ];
    let mut template = String::from("goal = \"g\"\n");
    for step in steps {
        template.push_str(&format!("[[steps]]\nrun = '''{step}'''\n"));
    }
    let repo = repo_with(&template, &[]);
    let cli = Cli::new(BIN);
    let (code, summary) = run(&cli, &repo);
    assert_eq!(code, 0, "{summary}");

    // A command killed at its timeout takes everything it started with it.
    // Arguments no other process on the host has.
    let (first, second) = (
        format!("{}3", 100_000 + std::process::id()),
        format!("{}4", 100_000 + std::process::id()),
    );
    let repo = repo_with(
        &format!("goal = \"g\"\n[[steps]]\nrun = \"true\"\n[[steps]]\nrun = \"sleep {first} & sleep {second}\"\ntimeout_seconds = 1\n"),
        &[],
    );
    let (code, summary) = run(&cli, &repo);
    assert_eq!(code, 1, "{summary}");
    assert!(
        summary["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{summary}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while host_process_with(&["sleep", &first]) || host_process_with(&["sleep", &second]) {
        assert!(
            std::time::Instant::now() < deadline,
            "a timed-out command's processes outlived it"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
