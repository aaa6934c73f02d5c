//! Test helpers: temporary git repositories made with the real `git`, a driver for the
//! real `flightdeck` binary with its own data directory, and fake model provider servers
//! ([`FakeOpenAi`], [`FakeAnthropic`]) that hold every request and response to the providers'
//! published contracts ([`openapi`]); a fake GitHub ([`fake_github`]) that also serves git
//! over smart HTTP through the real `git http-backend` ([`git_http`]).
//!
//! Test support code: it panics on failure, as tests should.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod fake_anthropic;
pub mod fake_github;
pub mod fake_http;
pub mod fake_openai;
pub mod fake_slack;
pub mod git_http;
pub mod openapi;

pub use fake_anthropic::FakeAnthropic;
pub use fake_http::{FakeReply, RecordedRequest};
pub use fake_openai::FakeOpenAi;

/// A git repository in a temporary directory, removed on drop.
pub struct TestRepo {
    dir: tempfile::TempDir,
}

impl TestRepo {
    /// A repository whose first commit holds `files` (path, contents).
    pub fn with_files(files: &[(&str, &str)]) -> TestRepo {
        let dir = tempfile::tempdir().expect("temp dir");
        let repo = TestRepo { dir };
        repo.git(&["init", "--quiet", "--initial-branch=main"]);
        repo.git(&["config", "user.email", "dev@example.com"]);
        repo.git(&["config", "user.name", "Dev"]);
        repo.git(&["config", "commit.gpgsign", "false"]);
        repo.write_files(files);
        repo.commit_all("initial commit");
        repo
    }

    /// A repository whose first commit holds `files`, made at a fixed time by a fixed
    /// author: the same files give the same commit id on every machine, so a recording made
    /// in it (its base commit, the trees its steps left) can be replayed in another one.
    pub fn deterministic(files: &[(&str, &str)]) -> TestRepo {
        let dir = tempfile::tempdir().expect("temp dir");
        let repo = TestRepo { dir };
        repo.git(&["init", "--quiet", "--initial-branch=main"]);
        repo.git(&["config", "user.email", "dev@example.com"]);
        repo.git(&["config", "user.name", "Dev"]);
        repo.git(&["config", "commit.gpgsign", "false"]);
        repo.write_files(files);
        repo.git(&["add", "--all"]);
        let output = Command::new("git")
            .arg("-C")
            .arg(repo.path())
            .args(["commit", "--quiet", "--allow-empty", "-m", "fixture"])
            .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
            .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
            .output()
            .expect("run git");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write_files(&self, files: &[(&str, &str)]) {
        for (path, contents) in files {
            let full = self.path().join(path);
            if let Some(parent) = full.parent() {
                std::fs::create_dir_all(parent).unwrap();
            }
            std::fs::write(full, contents).unwrap();
        }
    }

    pub fn commit_all(&self, message: &str) -> String {
        self.git(&["add", "--all"]);
        self.git(&["commit", "--quiet", "--allow-empty", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// Runs git in the repository and returns its trimmed stdout; panics on failure.
    pub fn git(&self, args: &[&str]) -> String {
        git_in(self.path(), args)
    }
}

/// Runs git in `dir` and returns its trimmed stdout; panics on failure.
pub fn git_in(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("run git");
    assert!(
        output.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// The `flightdeck` binary with a data directory of its own.
pub struct Cli {
    pub bin: PathBuf,
    data: tempfile::TempDir,
}

impl Cli {
    /// `bin` is `env!("CARGO_BIN_EXE_flightdeck")` of the calling test.
    pub fn new(bin: &str) -> Cli {
        Cli {
            bin: PathBuf::from(bin),
            data: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// A command with the data directory and identity set and a clean environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.bin);
        command
            .args(args)
            .env_remove("FLIGHTDECK_CONFIG")
            .env_remove("FLIGHTDECK_DATABASE_URL")
            .env("FLIGHTDECK_DATA_DIR", self.data.path())
            .env("FLIGHTDECK_USER", "@carol")
            .env("NO_COLOR", "1");
        command
    }

    /// `flightdeck --json serve --listen 127.0.0.1:0` with `args` after it and `env` in its
    /// environment, once it says where it listens; stopped when dropped. Its stderr is the
    /// test's.
    pub fn serve(&self, args: &[&str], env: &[(&str, &str)]) -> Served {
        let mut all = vec!["--json", "serve", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let mut child = self
            .command(&all)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn flightdeck serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("serve's stdout"))
            .read_line(&mut line)
            .expect("read serve's first line");
        let started: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("serve said {line:?}: {e}"));
        let url = started["listening"]
            .as_str()
            .unwrap_or_else(|| panic!("serve said {line:?}, without `listening`"))
            .to_string();
        Served { child, url }
    }

    /// Runs to completion.
    pub fn run(&self, args: &[&str]) -> CliOutput {
        let output = self.command(args).output().expect("run flightdeck");
        CliOutput(output)
    }

    /// Runs as `identity` (`--as`).
    pub fn run_as(&self, identity: &str, args: &[&str]) -> CliOutput {
        let mut full = vec!["--as", identity];
        full.extend_from_slice(args);
        self.run(&full)
    }

    /// A mission's events (`timeline --json`).
    pub fn timeline(&self, mission: &str) -> Vec<serde_json::Value> {
        self.run(&["timeline", mission, "--json"])
            .expect_code(0)
            .json_lines()
    }

    /// Waits (up to 30 s) until `predicate` holds on the timeline of the newest mission, and
    /// returns that timeline; for tests that watch a mission another process drives.
    pub fn wait_for(
        &self,
        predicate: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let missions = self.run(&["missions", "--json"]).json();
            if let Some(id) = missions
                .as_array()
                .and_then(|m| m.first())
                .and_then(|m| m["id"].as_str())
            {
                let events = self.timeline(id);
                if predicate(&events) {
                    return events;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for the mission"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Writes the installation config (`<data-dir>/config.toml`).
    pub fn write_config(&self, text: &str) {
        std::fs::write(self.data.path().join("config.toml"), text).unwrap();
    }

    /// Every file under the data directory with its bytes (for "nothing was written" and
    /// "no secret anywhere" checks).
    pub fn data_files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut files = Vec::new();
        walk(self.data.path(), &mut files);
        files.sort();
        files
    }
}

fn walk(dir: &Path, files: &mut Vec<(PathBuf, Vec<u8>)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            walk(&path, files);
        } else if kind.is_file() {
            let bytes = std::fs::read(&path).unwrap_or_default();
            files.push((path, bytes));
        }
    }
}

/// The `type` of each event.
pub fn event_types(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// What a run of the binary produced.
pub struct CliOutput(pub Output);

/// A running `flightdeck serve` ([`Cli::serve`]): stopped by SIGINT when dropped (killed if
/// it is still running 30 s later).
pub struct Served {
    child: Child,
    /// `http://127.0.0.1:<port>`
    pub url: String,
}

impl Served {
    /// Kills it as a crash would: no chance to finish anything.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // Already reaped ([`Served::kill`]): its pid may be another process's by now.
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl CliOutput {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).to_string()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).to_string()
    }

    /// stdout parsed as one JSON value.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.0.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            )
        })
    }

    /// stdout parsed as JSON Lines.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }

    /// Asserts the exit code, showing both streams when it differs.
    pub fn expect_code(self, code: i32) -> CliOutput {
        assert_eq!(
            self.code(),
            code,
            "unexpected exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
}
