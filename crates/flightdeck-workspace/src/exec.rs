//! Running one command: combined stdout and stderr through one pipe (so the output reads in
//! the order it was written), a capture cap, a timeout that kills the whole process tree.

use std::io::Read;
use std::time::{Duration, Instant};

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

/// Spawns `command` (already wrapped in whatever sandbox applies), collects its output and
/// waits for it, killing it at `timeout`. `kill_tree` kills what the command left behind.
pub(crate) async fn run(
    mut command: tokio::process::Command,
    program: &str,
    timeout: Duration,
    kill_tree: impl Fn(u32),
) -> Result<CommandOutcome, WorkspaceError> {
    let spawn_error = |source| WorkspaceError::Spawn {
        program: program.to_string(),
        source,
    };
    let (reader, writer) = std::io::pipe().map_err(spawn_error)?;
    let writer_for_stderr = writer.try_clone().map_err(spawn_error)?;
    command
        .stdin(std::process::Stdio::null())
        .stdout(writer)
        .stderr(writer_for_stderr)
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = command.spawn().map_err(spawn_error)?;
    // `command` still holds the write ends; drop it so EOF arrives when the child is done.
    drop(command);
    let pid = child.id();
    let collector = tokio::task::spawn_blocking(move || collect(reader));
    let (exit_code, timed_out) = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => (status.code(), false),
        Ok(Err(source)) => return Err(spawn_error(source)),
        Err(_) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            (None, true)
        }
    };
    // Whatever the command left running still holds the pipe; end it so EOF comes.
    if let Some(pid) = pid {
        kill_tree(pid);
    }
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

fn collect(mut reader: std::io::PipeReader) -> (Vec<u8>, u64) {
    let mut output = Vec::new();
    let mut dropped = 0u64;
    let mut buffer = [0u8; 64 * 1024];
    loop {
        match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                let room = MAX_CAPTURED_OUTPUT.saturating_sub(output.len());
                let keep = n.min(room);
                output.extend_from_slice(&buffer[..keep]);
                dropped += (n - keep) as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    if dropped > 0 {
        output.extend_from_slice(
            format!("\n[flightdeck: {dropped} more bytes of output dropped]\n").as_bytes(),
        );
    }
    (output, dropped)
}
