//! One sandbox per workspace that commands enter (the local runtime when the program can
//! serve it, as flightdeck's binary can): each command must find the sandbox as it would a
//! sandbox of its own, and nothing a command starts may outlive it.
//!
//! No test harness: like flightdeck's `main`, this binary first offers itself as the server.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)] // test code

use std::path::Path;
use std::time::{Duration, Instant};

use flightdeck_workspace::caches::Cache;
use flightdeck_workspace::{CommandSpec, LocalWorkspace, Sandbox, SandboxLayout, Workspace};

fn spec(command: &str) -> CommandSpec {
    CommandSpec {
        command: command.to_string(),
        timeout: Duration::from_secs(20),
        env: vec![("FLIGHTDECK_MISSION".into(), "m-test".into())],
        network: false,
        trusted: false,
        private_home: false,
    }
}

fn text(out: &flightdeck_workspace::CommandOutcome) -> String {
    String::from_utf8_lossy(&out.output).into_owned()
}

/// A workspace whose worktree, HOME and cache all lie under the host's `/tmp`, below the
/// sandbox's own `/tmp`, which is emptied after every command.
fn workspace(dir: &Path) -> (LocalWorkspace, std::path::PathBuf) {
    let worktree = dir.join("wt");
    std::fs::create_dir_all(&worktree).unwrap();
    std::fs::write(worktree.join("tracked.txt"), "in the worktree\n").unwrap();
    let cache_dir = dir.join("caches/cargo/key");
    std::fs::create_dir_all(&cache_dir).unwrap();
    let cache = Cache {
        ecosystem: "cargo".into(),
        key: "sha256:key".into(),
        lockfiles: vec!["Cargo.lock".into()],
        host_dir: cache_dir.clone(),
        home_dir: ".cargo/registry",
        variable: "",
    };
    let layout = SandboxLayout::for_mission(
        &dir.join("m-1.home"),
        &dir.join("data"),
        None,
        &[],
        std::slice::from_ref(&cache),
    )
    .unwrap();
    let ws = LocalWorkspace::new(worktree, Sandbox::bubblewrap().unwrap()).with_layout(layout);
    (ws, cache_dir)
}

/// A `sleep` argument no other process on the host has (tests run side by side, and a
/// process left by an earlier run must not count): the `k`th of this run.
fn mark(k: u32) -> String {
    format!("{}{k}", 100_000 + std::process::id())
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

/// Whether `sleep ARG` is gone from the host within `seconds`.
async fn gone_within(arg: String, seconds: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while host_process_with(&["sleep", &arg]) {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// Waits until `sleep ARG` runs on the host (so that "gone" below means killed,
/// not "never started").
async fn seen_within(arg: String, seconds: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !host_process_with(&["sleep", &arg]) {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

/// The host pid of the workspace's server: the process with its command line working in
/// `worktree`.
fn server_pid(worktree: &Path) -> Option<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .find_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cwd = std::fs::read_link(entry.path().join("cwd")).ok()?;
            (cwd == worktree && cmdline.starts_with(b"/.flightdeck-sandbox-server\0"))
                .then_some(pid)
        })
}

async fn checks() {
    let dir = tempfile::tempdir().unwrap();
    let (ws, cache_dir) = workspace(dir.path());
    let parent = "tr '\\0' ' ' < /proc/$PPID/cmdline";
    if !is_root() {
        // Without root there is no second user to run commands as: each command gets a
        // bubblewrap of its own.
        let out = ws.exec(&spec(parent)).await.unwrap();
        assert!(
            !text(&out).contains("__flightdeck-sandbox-server"),
            "{}",
            text(&out)
        );
        println!("not root: commands get a sandbox each, the server is not used");
        return;
    }

    let planted = format!(
        "(sleep {} &); setsid sleep {} & echo mine > /tmp/left; mkdir -p /tmp/d/e; \
         chmod 0 /tmp/d; ipcmk -M 4096 >/dev/null && ipcmk -Q >/dev/null; \
         python3 -c 'import os; os.chdir(\"/tmp\")\nfor _ in range(40): os.mkdir(\"x\" * 200); os.chdir(\"x\" * 200)\nopen(\"deep\", \"w\").write(\"deep\")' && echo ok",
        mark(1),
        mark(2)
    );
    // (command, trusted, exit code, the output contains): one after another, in one sandbox.
    type Case<'a> = (&'a str, bool, Option<i32>, &'a str);
    let cases: [Case; 16] = [
        (parent, false, Some(0), "__flightdeck-sandbox-server"),
        (
            "echo one; echo two >&2; echo three; exit 7",
            false,
            Some(7),
            "one\ntwo\nthree\n",
        ),
        ("echo $FLIGHTDECK_MISSION ${SECRET_TOKEN:-unset}", false, Some(0), "m-test unset"),
        // Left behind: processes (orphaned, in a session of their own), files and
        // directories in /tmp (one unreadable, one deeper than a path may be long), SysV
        // IPC objects.
        (
            &planted,
            false,
            Some(0),
            "ok",
        ),
        // None of it is there for the next command; the worktree (under the host's /tmp)
        // is whole.
        (
            "grep -sx sleep /proc/[0-9]*/comm; find /tmp -xdev -mindepth 1 ! -type d; \
             find /tmp -xdev -mindepth 1 -name d -o -name 'x*'; tail -q -n +2 /proc/sysvipc/shm /proc/sysvipc/msg; \
             cat tracked.txt",
            false,
            Some(0),
            "in the worktree",
        ),
        // A connection closed on the sandbox's loopback leaves TIME_WAIT behind; a sandbox
        // of its own would let the next command bind the port at once.
        (
            "python3 -c \"import socket; s = socket.socket(); s.bind(('127.0.0.1', 47011)); s.listen(); \
             c = socket.create_connection(('127.0.0.1', 47011)); a, _ = s.accept(); a.close(); c.close(); print('closed')\"",
            false,
            Some(0),
            "closed",
        ),
        (
            "python3 -c \"import socket; socket.socket().bind(('127.0.0.1', 47011)); print('bound')\"",
            false,
            Some(0),
            "bound",
        ),
        // Only its standard streams (and `ls`'s own directory).
        ("ls /proc/self/fd | tr '\\n' ' '", false, Some(0), "0 1 2 3 "),
        ("kill -9 $$", false, None, ""),
        // PID 1 cannot be signalled from inside, least of all by nobody.
        ("kill -9 1 || kill -STOP 1 || echo refused", false, Some(0), "refused"),
        ("id -u; grep -E '^Cap(Prm|Eff|Bnd)' /proc/self/status", false, Some(0), "65534\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nCapBnd:\t0000000000000000"),
        // The sandbox's caches follow the command's trust: the server is restarted.
        (
            "echo fetched > $HOME/.cargo/registry/fetched && echo done",
            true,
            Some(0),
            "done",
        ),
        (
            "echo planted > $HOME/.cargo/registry/build.rs",
            false,
            Some(2),
            "Read-only file system",
        ),
        ("cat $HOME/.cargo/registry/fetched", false, Some(0), "fetched"),
        ("cat /proc/1/environ", false, Some(1), "Permission denied"),
        ("echo $PWD", false, Some(0), "/wt"),
    ];
    for (command, trusted, code, says) in cases {
        let mut spec = spec(command);
        spec.trusted = trusted;
        let out = ws.exec(&spec).await.unwrap();
        let output = text(&out);
        assert_eq!(out.exit_code, code, "{command}: {output}");
        assert!(output.contains(says), "{command}: {output:?}");
        if command.starts_with("grep") {
            assert_eq!(output, "in the worktree\n", "{command}");
        }
    }
    assert!(!cache_dir.join("build.rs").exists());
    assert!(gone_within(mark(2), 5).await);

    // A command over the kernel's limit for one argument fails like a command.
    let long = format!("echo {}", "x".repeat(200 * 1024));
    let out = ws.exec(&spec(&long)).await.unwrap();
    assert_eq!(out.exit_code, Some(126), "{}", text(&out));
    assert!(text(&out).contains("too long"), "{}", text(&out));

    // A timeout kills the command and what it started; the next command gets a new sandbox.
    let mut slow = spec(&format!("sleep {} & sleep {}", mark(3), mark(4)));
    slow.timeout = Duration::from_secs(2);
    let (out, seen) = tokio::join!(ws.exec(&slow), seen_within(mark(3), 2));
    let out = out.unwrap();
    assert!(seen, "the command never started");
    assert!(out.timed_out, "{}", text(&out));
    assert!(gone_within(mark(3), 5).await);
    assert!(gone_within(mark(4), 5).await);
    let out = ws.exec(&spec("echo again")).await.unwrap();
    assert_eq!(text(&out), "again\n");

    // A command whose caller stops waiting is killed at once, not at the next command.
    let late = spec(&format!("sleep {}; echo late > late.txt", mark(5)));
    let stopped = tokio::select! {
        _ = ws.exec(&late) => None,
        seen = seen_within(mark(5), 5) => Some(seen),
    };
    assert_eq!(stopped, Some(true), "the command never started");
    assert!(gone_within(mark(5), 5).await);
    assert!(!dir.path().join("wt/late.txt").exists());

    // A server killed from outside (the memory limit's OOM killer, say) takes everything in
    // the sandbox with it, at once; the command is told, the next gets a new sandbox.
    let worktree = ws.root().to_path_buf();
    let killer = async {
        if seen_within(mark(6), 5).await {
            if let Some(pid) = server_pid(&worktree) {
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status();
            }
        }
    };
    let started = Instant::now();
    let victim = spec(&format!("(setsid sleep {} &); sleep {}", mark(7), mark(6)));
    let (out, ()) = tokio::join!(ws.exec(&victim), killer);
    let out = out.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(out.exit_code, None, "{}", text(&out));
    assert!(
        text(&out).contains("the workspace's sandbox ended"),
        "{}",
        text(&out)
    );
    assert!(gone_within(mark(7), 5).await);
    let out = ws.exec(&spec("echo again")).await.unwrap();
    assert_eq!(text(&out), "again\n");

    // Dropping the workspace ends its sandbox: no process is left in the worktree.
    assert!(
        server_pid(&worktree).is_some(),
        "the server is not in the worktree"
    );
    drop(ws);
    let deadline = Instant::now() + Duration::from_secs(5);
    while in_directory(&worktree) {
        assert!(
            Instant::now() < deadline,
            "the server outlived its workspace"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether a process on this host works in `dir`.
fn in_directory(dir: &Path) -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .any(|entry| std::fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd == dir))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

fn main() {
    flightdeck_workspace::serve_if_asked();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(checks());
    println!("test server ... ok");
}
