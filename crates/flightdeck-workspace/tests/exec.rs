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
        assert_eq!(out.exit_code, Some(7), "{}", ws.sandbox());
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
