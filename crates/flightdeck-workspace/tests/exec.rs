//! Commands in a real workspace: output capture, timeouts that kill the whole tree, and the
//! bubblewrap sandbox's walls (no writes outside the worktree, no network, a clean environment).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::time::{Duration, Instant};

use flightdeck_workspace::{CommandSpec, LocalWorkspace, Sandbox, Workspace};

fn spec(command: &str, timeout_ms: u64) -> CommandSpec {
    CommandSpec {
        command: command.to_string(),
        timeout: Duration::from_millis(timeout_ms),
        env: vec![("FLIGHTDECK_MISSION".into(), "m-test".into())],
        network: false,
        trusted: false,
        private_home: false,
    }
}

fn workspaces(dir: &tempfile::TempDir) -> Vec<LocalWorkspace> {
    let mut all = vec![LocalWorkspace::new(dir.path().to_path_buf(), Sandbox::None)];
    all.push(LocalWorkspace::new(
        dir.path().to_path_buf(),
        Sandbox::bubblewrap().expect("bubblewrap is installed by scripts/test"),
    ));
    all
}

#[tokio::test]
async fn output_is_captured_in_order_with_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    for ws in workspaces(&dir) {
        let out = ws
            .exec(&spec("echo one; echo two >&2; echo three; exit 7", 10_000))
            .await
            .unwrap();
        assert_eq!(
            out.exit_code,
            Some(7),
            "{} {}",
            ws.sandbox(),
            String::from_utf8_lossy(&out.output)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.output),
            "one\ntwo\nthree\n",
            "{}",
            ws.sandbox()
        );
        assert!(!out.success());
        let env = ws
            .exec(&spec(
                "echo $FLIGHTDECK_MISSION; echo ${SECRET_TOKEN:-unset}",
                10_000,
            ))
            .await
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&env.output),
            "m-test\nunset\n",
            "{}",
            ws.sandbox()
        );
    }
}

#[tokio::test]
async fn a_timeout_kills_the_command_and_what_it_started() {
    let dir = tempfile::tempdir().unwrap();
    for ws in workspaces(&dir) {
        let marker = format!("late-{}", ws.sandbox());
        let started = Instant::now();
        let command = format!("(sleep 2; touch {marker}) & sleep 30");
        let out = ws.exec(&spec(&command, 300)).await.unwrap();
        assert!(out.timed_out, "{}", ws.sandbox());
        assert_eq!(out.exit_code, None);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{}: {:?}",
            ws.sandbox(),
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            !dir.path().join(&marker).exists(),
            "{}: a background child survived the timeout",
            ws.sandbox()
        );
    }
}

#[tokio::test]
async fn the_sandbox_keeps_writes_in_the_worktree_and_has_no_network() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let sandboxed = LocalWorkspace::new(dir.path().to_path_buf(), Sandbox::bubblewrap().unwrap());
    let target = outside.path().join("escaped");
    let out = sandboxed
        .exec(&spec(
            &format!("echo x > {}; touch inside", target.display()),
            10_000,
        ))
        .await
        .unwrap();
    assert!(
        !target.exists(),
        "wrote outside the worktree: {}",
        String::from_utf8_lossy(&out.output)
    );
    assert!(dir.path().join("inside").exists());

    // A server on the host's loopback: reachable from outside the sandbox, not from inside.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let probe = format!(
        "python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}), timeout=2); print(\"connected\")'"
    );
    let host = LocalWorkspace::new(dir.path().to_path_buf(), Sandbox::None)
        .exec(&spec(&probe, 10_000))
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&host.output).trim(),
        "connected",
        "the probe itself works"
    );
    let inside = sandboxed.exec(&spec(&probe, 10_000)).await.unwrap();
    assert!(
        !inside.success(),
        "reached the host's loopback from the sandbox"
    );
    assert!(!String::from_utf8_lossy(&inside.output).contains("connected"));
}

/// `sleep` processes started for one test: their argument is unique to it (`sleep 100001.<pid>`,
/// a duration no one else uses), so they can be told apart from anyone else's on this machine,
/// inside a sandbox's PID namespace or not.
fn marker(test: u32) -> String {
    format!("{}.{}", 100_000 + test, std::process::id())
}

/// Live processes running `sleep <marker>`, as (pid, start time) so that a reused pid is not
/// mistaken for a survivor. Zombies are dead.
fn sleeps(marker: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let argv: Vec<&[u8]> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .collect();
        if argv.len() != 2 || !argv[0].ends_with(b"sleep") || argv[1] != marker.as_bytes() {
            continue;
        }
        if let Some(start) = live_start_time(pid) {
            found.push((pid, start));
        }
    }
    found.sort();
    found
}

/// The start time of `pid` from `/proc/<pid>/stat`, `None` when it is gone or a zombie.
fn live_start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name in parentheses: state is the 1st field, start time the 20th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let state = fields.first()?;
    if *state == "Z" || *state == "X" {
        return None;
    }
    fields.get(19).map(|s| s.to_string())
}

fn survivors(started: &[(u32, String)]) -> Vec<u32> {
    started
        .iter()
        .filter(|(pid, start)| live_start_time(*pid).as_ref() == Some(start))
        .map(|(pid, _)| *pid)
        .collect()
}

/// Polls `done` every 20 ms until it holds or `deadline` passes; says whether it held.
fn poll(deadline: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + deadline;
    loop {
        if done() {
            return true;
        }
        if Instant::now() > until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill_all(pids: &[u32]) {
    for pid in pids {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
}

const HELPER_SANDBOX: &str = "FD_TEST_EXEC_HELPER_SANDBOX";
const HELPER_DIR: &str = "FD_TEST_EXEC_HELPER_DIR";
const HELPER_COMMAND: &str = "FD_TEST_EXEC_HELPER_COMMAND";

/// Not a test of its own: the stand-in for flightdeck that `commands_die_with_flightdeck` runs
/// in a child process (this test binary again) and SIGKILLs. Without its variables it does
/// nothing.
#[test]
fn helper_flightdeck_running_one_command() {
    let Ok(sandbox) = std::env::var(HELPER_SANDBOX) else {
        return;
    };
    let sandbox = match sandbox.as_str() {
        "none" => Sandbox::None,
        _ => Sandbox::bubblewrap().unwrap(),
    };
    let dir = std::env::var(HELPER_DIR).unwrap();
    let command = std::env::var(HELPER_COMMAND).unwrap();
    // A thread pool like flightdeck's.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let ws = LocalWorkspace::new(dir.into(), sandbox);
        let _ = ws.exec(&spec(&command, 600_000)).await;
    });
}

/// flightdeck SIGKILLed while a command runs: the command and what it started in the
/// background die too, sandboxed or not.
#[test]
fn commands_die_with_flightdeck() {
    for (test, sandbox) in [(1, "none"), (2, "bubblewrap")] {
        let dir = tempfile::tempdir().unwrap();
        let marker = marker(test);
        let mut flightdeck = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "helper_flightdeck_running_one_command",
                "--exact",
                "--nocapture",
            ])
            .env(HELPER_SANDBOX, sandbox)
            .env(HELPER_DIR, dir.path())
            .env(HELPER_COMMAND, format!("sleep {marker} & sleep {marker}"))
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut started = Vec::new();
        let running = poll(Duration::from_secs(30), || {
            started = sleeps(&marker);
            started.len() == 2
        });
        flightdeck.kill().unwrap();
        flightdeck.wait().unwrap();
        assert!(
            running,
            "{sandbox}: the command's two sleeps never ran: {started:?}"
        );
        let mut left = Vec::new();
        let ended = poll(Duration::from_secs(10), || {
            left = survivors(&started);
            left.is_empty()
        });
        kill_all(&left);
        assert!(
            ended,
            "{sandbox}: processes {left:?} of the command outlived a SIGKILLed flightdeck"
        );
    }
}

/// The `exec` future dropped (the mission cancelled) while a command runs: its whole tree is
/// killed, not only the process flightdeck started.
#[tokio::test(flavor = "multi_thread")]
async fn dropping_exec_kills_the_command_tree() {
    let dir = tempfile::tempdir().unwrap();
    for (test, ws) in (3..).zip(workspaces(&dir)) {
        let marker = marker(test);
        let command = spec(&format!("sleep {marker} & sleep {marker}"), 600_000);
        let watch = marker.clone();
        let started = tokio::select! {
            outcome = ws.exec(&command) => panic!("{}: ended on its own: {outcome:?}", ws.sandbox()),
            started = tokio::task::spawn_blocking(move || {
                let mut started = Vec::new();
                poll(Duration::from_secs(30), || {
                    started = sleeps(&watch);
                    started.len() == 2
                });
                started
            }) => started.unwrap(),
        };
        assert_eq!(started.len(), 2, "{}: the sleeps never ran", ws.sandbox());
        // The exec future is gone here.
        let mut left = Vec::new();
        let ended = poll(Duration::from_secs(10), || {
            left = survivors(&started);
            left.is_empty()
        });
        kill_all(&left);
        assert!(
            ended,
            "{}: processes {left:?} outlived the dropped exec",
            ws.sandbox()
        );
    }
}

/// (what a command does, trusted, a throwaway HOME, whether it succeeds, what it prints)
type CacheCase<'a> = (&'a str, bool, bool, bool, &'a str);

#[tokio::test]
async fn caches_are_written_only_by_trusted_commands_and_secret_steps_get_a_throwaway_home() {
    use flightdeck_workspace::caches::Cache;
    use flightdeck_workspace::SandboxLayout;
    let dir = tempfile::tempdir().unwrap();
    let worktree = dir.path().join("wt");
    std::fs::create_dir_all(&worktree).unwrap();
    let home = dir.path().join("m-1.home");
    let cache_dir = dir.path().join("caches/cargo/key");
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
        &home,
        &dir.path().join("data"),
        None,
        &[],
        std::slice::from_ref(&cache),
    )
    .unwrap();
    let ws = LocalWorkspace::new(worktree, Sandbox::bubblewrap().unwrap()).with_layout(layout);
    let cases: [CacheCase; 6] = [
        (
            "echo fetched > $HOME/.cargo/registry/fetched && echo done",
            true,
            false,
            true,
            "done",
        ),
        (
            "echo planted > $HOME/.cargo/registry/build.rs",
            false,
            false,
            false,
            "Read-only file system",
        ),
        (
            "cat $HOME/.cargo/registry/fetched",
            false,
            false,
            true,
            "fetched",
        ),
        (
            "echo token > $HOME/token && cat $HOME/.cargo/registry/fetched",
            true,
            true,
            true,
            "fetched",
        ),
        ("cat $HOME/token", false, false, false, "No such file"),
        (
            "echo mine > $HOME/kept && cat $HOME/kept",
            false,
            false,
            true,
            "mine",
        ),
    ];
    for (command, trusted, private_home, succeeds, says) in cases {
        let mut spec = spec(command, 10_000);
        spec.trusted = trusted;
        spec.private_home = private_home;
        let out = ws.exec(&spec).await.unwrap();
        let output = String::from_utf8_lossy(&out.output);
        assert_eq!(out.success(), succeeds, "{command}: {output}");
        assert!(output.contains(says), "{command}: {output}");
    }
    assert_eq!(
        std::fs::read_to_string(cache_dir.join("fetched")).unwrap(),
        "fetched\n"
    );
    assert!(!cache_dir.join("build.rs").exists());
    assert!(!home.join("token").exists());
    assert!(home.join("kept").exists());
    // The throwaway HOME is gone.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.contains(".private-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// This machine's address on its first non-loopback interface, as the kernel would pick it.
fn host_address() -> Option<std::net::IpAddr> {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    // No packet is sent: connecting a UDP socket only picks a route.
    probe.connect("192.0.2.200:9").ok()?;
    let ip = probe.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn with_the_network_on_the_sandbox_reaches_out_but_never_the_hosts_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let ws = LocalWorkspace::new(dir.path().to_path_buf(), Sandbox::bubblewrap().unwrap());
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let abstract_name = format!("flightdeck-test-{}", std::process::id());
    let _abstract = {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(&abstract_name).unwrap();
        std::os::unix::net::UnixListener::bind_addr(&addr).unwrap()
    };
    let host = host_address().expect("this machine has a non-loopback address");
    // (where, reached?)
    let mut targets = vec![
        ("127.0.0.1".to_string(), false),
        // slirp4netns's alias for the host's loopback.
        ("10.0.2.2".to_string(), false),
    ];
    targets.push((host.to_string(), true));
    for (address, reached) in targets {
        let probe = format!(
            "python3 -c 'import socket; socket.create_connection((\"{address}\", {port}), timeout=3); print(\"connected\")'"
        );
        let mut with_network = spec(&probe, 20_000);
        with_network.network = true;
        let out = ws.exec(&with_network).await.unwrap();
        let output = String::from_utf8_lossy(&out.output);
        assert_eq!(out.success(), reached, "{address}: {output}");
        assert!(!output.contains("without the network"), "{output}");
        // Refused by the network, not by a sandbox that failed to start.
        assert!(
            reached || output.contains("Error: [Errno"),
            "{address}: {output}"
        );
    }
    // The host's abstract unix sockets live in the host's network namespace.
    let probe = format!(
        "python3 -c 'import socket; s = socket.socket(socket.AF_UNIX); s.connect(\"\\0{abstract_name}\"); print(\"connected\")'"
    );
    let mut with_network = spec(&probe, 20_000);
    with_network.network = true;
    let out = ws.exec(&with_network).await.unwrap();
    let output = String::from_utf8_lossy(&out.output);
    assert!(!out.success(), "{output}");
    assert!(output.contains("Error: [Errno"), "{output}");
}
