//! Running one command: combined stdout and stderr through one pipe (so the output reads in
//! the order it was written), a capture cap, a timeout that kills the whole process tree.
//!
//! Every command runs in a process group of its own, led by a watchdog: a `sh` whose stdin is
//! the read end of a pipe (the lifeline) whose only write end flightdeck holds. The watchdog
//! reads until end of file, then kills its process group. flightdeck's end closes when
//! flightdeck is done with the command, when the command's future is dropped, and when
//! flightdeck dies by any means, SIGKILL included (the kernel closes a dead process's files), so
//! the command and everything it started die with it and stop writing into the worktree.
//! A parent-death signal (`PR_SET_PDEATHSIG`) would not do: it reaches only the direct child
//! (a `sleep &` of the command would survive), and it fires when the *thread* that spawned the
//! child exits, which in a thread pool is not flightdeck's death.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::WorkspaceError;

/// Output kept per command; the rest is dropped with a note (the artifact store is not a
/// place for gigabytes of logs).
pub const MAX_CAPTURED_OUTPUT: usize = 16 * 1024 * 1024;

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutcome {
    /// `None` when the command was killed (timeout, signal).
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    /// stdout and stderr interleaved, at most [`MAX_CAPTURED_OUTPUT`] bytes.
    pub output: Vec<u8>,
    /// Bytes the command wrote beyond the cap.
    pub dropped_bytes: u64,
    pub duration: Duration,
    /// The workspace limit the command ran into (processes, memory), said for a person.
    pub limit_hit: Option<String>,
}

impl CommandOutcome {
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }

    /// The last `lines` lines of output, for error messages.
    pub fn tail(&self, lines: usize) -> String {
        let text = String::from_utf8_lossy(&self.output);
        let all: Vec<&str> = text.trim_end().lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// The watchdog: signals that could end it before the lifeline closes are ignored; when the
/// lifeline reads end of file, the whole group (the watchdog too) is killed. Builtins only.
const WATCHDOG: &str = "trap '' HUP INT QUIT TERM PIPE; read -r _; kill -s KILL 0";

/// A command's process group, led by its watchdog. Dropping it kills the group.
struct Group {
    pgid: Pid,
    watchdog: tokio::process::Child,
    /// flightdeck's end of the lifeline: dropping it (or dying) makes the watchdog kill the
    /// group.
    _lifeline: std::io::PipeWriter,
    /// Set once the watchdog is reaped: from then on the group's id may name another group.
    ended: bool,
}

impl Group {
    fn start() -> std::io::Result<Group> {
        let (lifeline_reader, lifeline) = std::io::pipe()?;
        let mut command = tokio::process::Command::new(crate::local::SH);
        command
            .arg("-c")
            .arg(WATCHDOG)
            .env_clear()
            .envs(std::env::var_os("PATH").map(|path| ("PATH", path)))
            .stdin(lifeline_reader)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        let watchdog = command.spawn()?;
        let pid = watchdog
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .ok_or_else(|| std::io::Error::other("the watchdog exited at once"))?;
        Ok(Group {
            pgid: Pid::from_raw(pid),
            watchdog,
            _lifeline: lifeline,
            ended: false,
        })
    }

    /// The group's id, for [`tokio::process::Command::process_group`].
    fn id(&self) -> i32 {
        self.pgid.as_raw()
    }

    /// Kills every process of the group. While the watchdog (the leader) is not reaped, its
    /// pid, hence the group id, cannot be reused: the signal cannot reach anyone else.
    fn kill(&self) {
        if !self.ended {
            let _ = killpg(self.pgid, Signal::SIGKILL);
        }
    }

    /// Kills the group and reaps the watchdog.
    async fn end(&mut self) {
        self.kill();
        let _ = self.watchdog.wait().await;
        self.ended = true;
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // The command's future was dropped (or failed) before `end`: kill now rather than when
        // the watchdog notices the lifeline; the watchdog is reaped by tokio afterwards.
        self.kill();
    }
}

/// Spawns `command` (already wrapped in whatever sandbox applies) in a process group of its
/// own, collects its output and waits for it, killing it at `timeout`. Whatever it left
/// running in its group is killed when it exits, when this future is dropped, and when
/// flightdeck dies.
pub(crate) async fn run(
    mut command: tokio::process::Command,
    program: &str,
    timeout: Duration,
) -> Result<CommandOutcome, WorkspaceError> {
    let spawn_error = |source| WorkspaceError::Spawn {
        program: program.to_string(),
        source,
    };
    let mut group = Group::start().map_err(|source| WorkspaceError::Spawn {
        program: "sh (the watchdog that ends the command with flightdeck)".to_string(),
        source,
    })?;
    let (reader, writer) = std::io::pipe().map_err(spawn_error)?;
    let writer_for_stderr = writer.try_clone().map_err(spawn_error)?;
    command
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer_for_stderr)
        .process_group(group.id())
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = match command.spawn() {
        Ok(child) => child,
        // The command itself is too long for the kernel (one argument over 128 KiB, or all of
        // them over the system's limit): that is the command's failure, told like one, not
        // an error of the machine that would stop the mission on every resume.
        Err(e) if e.raw_os_error() == Some(nix::libc::E2BIG) => {
            return Ok(too_long(started.elapsed(), &e));
        }
        Err(e) => return Err(spawn_error(e)),
    };
    // `command` still holds the write ends; drop it so EOF arrives when the child is done.
    drop(command);
    let collector = tokio::task::spawn_blocking(move || collect(reader));
    let (exit_code, timed_out) = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => (status.code(), false),
        Ok(Err(source)) => return Err(spawn_error(source)),
        Err(_) => {
            group.kill();
            let _ = child.wait().await;
            (None, true)
        }
    };
    // Whatever the command left running still holds the pipe; end it so EOF comes.
    group.end().await;
    let (output, dropped_bytes) =
        match tokio::time::timeout(Duration::from_secs(5), collector).await {
            Ok(Ok(collected)) => collected,
            _ => (b"[flightdeck: output could not be collected]\n".to_vec(), 0),
        };
    Ok(CommandOutcome {
        exit_code,
        timed_out,
        output,
        dropped_bytes,
        duration: started.elapsed(),
        limit_hit: None,
    })
}

/// Exit code of a command that could not be started (as a shell says for "cannot execute").
pub(crate) const CANNOT_START_EXIT_CODE: i32 = 126;

/// The outcome of a command the kernel refused to start because it is too long.
fn too_long(duration: Duration, error: &std::io::Error) -> CommandOutcome {
    let output = too_long_message(error);
    CommandOutcome {
        exit_code: Some(CANNOT_START_EXIT_CODE),
        timed_out: false,
        output: output.into_bytes(),
        dropped_bytes: 0,
        duration,
        limit_hit: None,
    }
}

/// What a command too long for the kernel gets as its output.
pub(crate) fn too_long_message(error: &std::io::Error) -> String {
    format!(
        "[flightdeck: the command could not be started: it is too long for the system ({error}); \
         a single command may be at most 128 KiB: write long content to a file and run that]\n"
    )
}

/// Output kept up to [`MAX_CAPTURED_OUTPUT`]; what comes beyond is counted and dropped.
#[derive(Default)]
struct Capture {
    output: Vec<u8>,
    dropped: u64,
}

impl Capture {
    fn push(&mut self, bytes: &[u8]) {
        let room = MAX_CAPTURED_OUTPUT.saturating_sub(self.output.len());
        let keep = bytes.len().min(room);
        self.output.extend_from_slice(&bytes[..keep]);
        self.dropped += (bytes.len() - keep) as u64;
    }

    fn finish(mut self) -> (Vec<u8>, u64) {
        if self.dropped > 0 {
            self.output.extend_from_slice(
                format!(
                    "\n[flightdeck: {} more bytes of output dropped]\n",
                    self.dropped
                )
                .as_bytes(),
            );
        }
        (self.output, self.dropped)
    }
}

fn collect(mut reader: std::io::PipeReader) -> (Vec<u8>, u64) {
    let mut capture = Capture::default();
    let mut buffer = [0u8; 64 * 1024];
    loop {
        match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => capture.push(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    capture.finish()
}

/// [`collect`] without a thread of its own: dropping the future closes the pipe, so a
/// process that somehow still holds the write end cannot keep flightdeck from exiting.
pub(crate) async fn collect_async(mut reader: tokio::net::unix::pipe::Receiver) -> (Vec<u8>, u64) {
    use tokio::io::AsyncReadExt;
    let mut capture = Capture::default();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) => break,
            Ok(n) => capture.push(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    capture.finish()
}
