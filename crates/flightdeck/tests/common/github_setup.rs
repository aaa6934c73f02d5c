//! What the GitHub end-to-end tests (`tests/github.rs`, `tests/github_poll.rs`) and the
//! benchmark (`benches/github.rs`) set up: an App key, the fake GitHub hosting
//! `acme/widgets` (template, policy and CODEOWNERS on main) over smart HTTP, the
//! installation's `[people]` and `[github]`, and `flightdeck serve`. Included by `#[path]`.

#![allow(dead_code)] // each includer uses a part

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use flightdeck_testkit::fake_github::FakeGitHub;
use flightdeck_testkit::{Cli, Served, TestRepo};
use serde_json::Value;

pub const APP_ID: u64 = 31_337;
pub const INSTALLATION: u64 = 4_242;
pub const REPO: &str = "acme/widgets";
pub const SECRET: &str = "It's a Secret to Everybody";

/// A publish that changes source needs one of its code owners (Bob owns `src/`).
pub const POLICY: &str = "[[rule]]\nid = \"owners\"\naction = \"publish\"\nchanges_any = [\"source\"]\ndecision = \"approve\"\napprovals = 1\napprovers = [\"codeowners\"]\n";
pub const TEMPLATE: &str =
    "[publish]\ntitle = \"Add g\"\n[[steps]]\nrun = \"echo 'pub fn g() {}' >> src/lib.rs\"\n";

pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=Eve", "-c", "user.email=eve@acme.test"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn openssl_key(path: &Path) {
    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The fake GitHub with the repository hosted (template, policy, CODEOWNERS on main), the
/// installation config, and `flightdeck serve`.
pub struct World {
    pub fake: FakeGitHub,
    pub cli: Cli,
    pub server: Served,
    pub bare: tempfile::TempDir,
}

impl World {
    /// The world with `[github]` in webhook mode (`extra` is added to the `[github]` table).
    pub async fn new(bin: &str) -> World {
        World::with(bin, "").await
    }

    pub async fn with(bin: &str, extra: &str) -> World {
        let cli = Cli::new(bin);
        let key = cli.data_dir().join("app.pem");
        openssl_key(&key);
        let fake = FakeGitHub::start(APP_ID, &std::fs::read(&key).unwrap()).await;
        fake.add_installation(INSTALLATION, "acme");
        fake.add_repo(INSTALLATION, REPO, "main");
        for (login, permission) in [
            ("carol-gh", "write"),
            ("bob-gh", "write"),
            ("dana-gh", "write"),
            ("eve-gh", "write"),
            ("mallory", "read"),
        ] {
            fake.set_permission(REPO, login, permission);
        }
        let source = TestRepo::with_files(&[
            ("README.md", "# widgets\n"),
            ("src/lib.rs", "pub fn f() {}\n"),
            (".flightdeck/policy.toml", POLICY),
            (".flightdeck/missions/fix.toml", TEMPLATE),
            (".github/CODEOWNERS", "src/ @bob @dana\n"),
        ]);
        source.commit_all("widgets");
        let bare = tempfile::tempdir().unwrap();
        git(bare.path(), &["init", "--quiet", "--bare", "."]);
        source.git(&[
            "push",
            "--quiet",
            bare.path().to_str().unwrap(),
            "HEAD:refs/heads/main",
        ]);
        fake.host_git(REPO, bare.path());
        cli.write_config(&format!(
            "[people.carol]\nhandle = \"@carol\"\ngithub = \"carol-gh\"\n\
             [people.bob]\nhandle = \"@bob\"\ngithub = \"bob-gh\"\n\
             [people.dana]\nhandle = \"@dana\"\ngithub = \"dana-gh\"\n\
             [people.eve]\nhandle = \"@eve\"\ngithub = \"eve-gh\"\n\
             [github]\napp_id = {APP_ID}\nprivate_key_file = \"app.pem\"\n\
             webhook_secret_env = \"FD_TEST_GITHUB_SECRET\"\napi_url = \"{}\"\n{extra}",
            fake.url()
        ));
        let server = cli.serve(&[], &[("FD_TEST_GITHUB_SECRET", SECRET)]);
        World {
            fake,
            cli,
            server,
            bare,
        }
    }

    /// A client of the fake acting as the App (with its key), for what a test asks GitHub
    /// itself.
    pub fn app_client(&self) -> flightdeck_github::GitHubClient {
        let pem = std::fs::read_to_string(self.cli.data_dir().join("app.pem")).unwrap();
        let key = flightdeck_github::AppKey::from_pem(&pem).unwrap();
        flightdeck_github::GitHubClient::new(&self.fake.url(), APP_ID, key).unwrap()
    }

    pub fn hook(&self) -> String {
        format!("{}/webhooks/github", self.server.url)
    }

    pub async fn deliver(&self, event: &str, payload: Value) -> u16 {
        let result = self
            .fake
            .deliver(&self.hook(), SECRET, event, payload)
            .await;
        result.status.unwrap_or(0)
    }

    pub fn missions(&self) -> Vec<Value> {
        let out = self.cli.run(&["--json", "missions"]);
        match out.json() {
            Value::Array(missions) => missions,
            other => other["missions"].as_array().cloned().unwrap_or_default(),
        }
    }

    pub fn created(&self, id: &str) -> Value {
        self.cli
            .timeline(id)
            .into_iter()
            .find(|e| e["type"] == "mission.created")
            .unwrap()["data"]
            .clone()
    }

    pub fn status(&self, id: &str) -> String {
        self.cli.run(&["--json", "show", id]).json()["status"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    pub fn events(&self, id: &str, kind: &str) -> Vec<Value> {
        self.cli
            .timeline(id)
            .into_iter()
            .filter(|e| e["type"] == kind)
            .collect()
    }

    pub fn check_runs_on(&self, sha: &str) -> Vec<Value> {
        self.fake
            .check_runs(REPO)
            .into_iter()
            .filter(|r| r["head_sha"] == sha && r["name"] == "flightdeck/approval")
            .collect()
    }

    pub fn comments_with(&self, number: u64, text: &str) -> Vec<String> {
        self.fake
            .comments(REPO, number)
            .into_iter()
            .filter_map(|c| c["body"].as_str().map(str::to_string))
            .filter(|b| b.contains(text))
            .collect()
    }
}
