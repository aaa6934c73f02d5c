//! One sandbox per workspace that commands enter, instead of a bubblewrap per command.
//!
//! Setting up bubblewrap (its namespaces, above all the network namespace, and its mounts)
//! costs about 13 ms, and `setpriv` another 3: most of what a sandboxed `run = "true"` step
//! cost. So a workspace's sandbox is made once, with a small server inside it (flightdeck's
//! own binary, bound read-only, run with [`SERVER_ARG`]), and each command is a request to it
//! over a socket: the server forks, the child starts a session of its own, becomes `nobody`
//! (when flightdeck runs as root) and execs `sh -c`. When the command exits, the server kills
//! everything else in the sandbox's PID namespace (what the command left running), waits until
//! it is gone and empties `/tmp`, so the next command starts from the same state as it would in
//! a sandbox of its own.
//!
//! The socket is also the lifeline: when flightdeck closes it (the workspace is dropped, a
//! command timed out or its future was dropped) or dies, the server kills every process and
//! exits, and with it the PID namespace. (bubblewrap's `--die-with-parent` is not used: it
//! fires when the *thread* that spawned it exits, which in a thread pool is not our death.)
//!
//! The protocol, all on one Unix stream socket:
//! - flightdeck → server: one byte `R` carrying the command's output descriptor
//!   (`SCM_RIGHTS`), then a `u32` little-endian length and that many bytes: the working
//!   directory, the command, then `NAME=value` entries, each ended by a NUL byte.
//! - server → flightdeck: `S` once the command is started, then `X` and an `i32`
//!   little-endian: the exit code, or minus the signal that killed it.
//!
//! A server that is not there to answer (bubblewrap failed to start it) sends nothing: the
//! caller then runs the command in a bubblewrap of its own, which reports the failure.

use std::ffi::{CString, OsStr, OsString};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::libc;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};

/// The first argument that makes a binary which calls [`serve_if_asked`] a sandbox's server.
pub const SERVER_ARG: &str = "__flightdeck-sandbox-server";

/// Where the server's binary is bound inside the sandbox.
pub(crate) const SERVER_INSIDE: &str = "/.flightdeck-sandbox-server";

/// The binary that can serve sandboxes, once [`serve_if_asked`] has been called.
static SERVER_EXE: OnceLock<PathBuf> = OnceLock::new();

/// To be called first thing by a binary that can serve sandboxes (flightdeck's `main`). Run
/// with [`SERVER_ARG`], it serves a sandbox and exits; otherwise it records the binary, and
/// local workspaces then make one sandbox each that their commands enter. A program that
/// never calls it (a test harness) runs each command in a bubblewrap of its own.
pub fn serve_if_asked() {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() == Some(OsStr::new(SERVER_ARG)) {
        let ids: Vec<u32> = args
            .filter_map(|a| a.to_str().and_then(|s| s.parse().ok()))
            .collect();
        let drop_to = match ids[..] {
            [uid, gid] => Some((uid, gid)),
            _ => None,
        };
        std::process::exit(serve(drop_to));
    }
    if let Ok(exe) = std::env::current_exe() {
        let _ = SERVER_EXE.set(exe);
    }
}

/// The binary to serve sandboxes with, if this program can.
pub(crate) fn server_exe() -> Option<&'static Path> {
    SERVER_EXE.get().map(PathBuf::as_path)
}

/// What a command given to the server came to.
#[derive(Debug)]
pub(crate) enum Ran {
    /// The server never started it (it was not there): nothing ran.
    NotStarted,
    /// Exit code, or `None` when a signal ended it (or the sandbox went away under it).
    Exited(Option<i32>),
}

/// flightdeck's end of a workspace's sandbox. Dropping it ends the sandbox.
#[derive(Debug)]
pub(crate) struct Server {
    /// Whether the sandbox binds the caches writable (see [`crate::CommandSpec::trusted`]).
    pub(crate) trusted: bool,
    socket: tokio::net::UnixStream,
    /// bubblewrap; killed when dropped (the server ends by itself once the socket closes).
    _bubblewrap: tokio::process::Child,
}

impl Server {
    /// Starts `bubblewrap`, whose arguments end with the server's command line.
    pub(crate) fn start(
        mut bubblewrap: tokio::process::Command,
        trusted: bool,
    ) -> std::io::Result<Server> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        bubblewrap
            .stdin(std::process::Stdio::from(OwnedFd::from(theirs)))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            // Out of flightdeck's process group: a Ctrl-C at the terminal is flightdeck's to
            // handle, not the sandbox's.
            .process_group(0)
            .kill_on_drop(true);
        let child = bubblewrap.spawn()?;
        // The command holds the server's end: closed here, so our reads see its death.
        drop(bubblewrap);
        ours.set_nonblocking(true)?;
        Ok(Server {
            trusted,
            socket: tokio::net::UnixStream::from_std(ours)?,
            _bubblewrap: child,
        })
    }

    /// Sends one command; its output goes to `output`. Returns once it has exited. Not
    /// cancel-safe: a caller that stops waiting must drop the server.
    pub(crate) async fn run(
        &mut self,
        output: OwnedFd,
        cwd: &Path,
        command: &str,
        env: &[(OsString, OsString)],
    ) -> std::io::Result<Ran> {
        let mut request = Vec::with_capacity(command.len() + 1024);
        for field in [cwd.as_os_str(), OsStr::new(command)] {
            request.extend_from_slice(field.as_bytes());
            request.push(0);
        }
        for (name, value) in env {
            request.extend_from_slice(name.as_bytes());
            request.push(b'=');
            request.extend_from_slice(value.as_bytes());
            request.push(0);
        }
        let length =
            u32::try_from(request.len()).map_err(|_| std::io::Error::other("request too large"))?;
        let sent = self
            .socket
            .async_io(Interest::WRITABLE, || {
                let fds = [output.as_raw_fd()];
                sendmsg::<()>(
                    self.socket.as_raw_fd(),
                    &[std::io::IoSlice::new(b"R")],
                    &[ControlMessage::ScmRights(&fds)],
                    MsgFlags::MSG_NOSIGNAL,
                    None,
                )
                .map_err(std::io::Error::from)
            })
            .await;
        if sent.is_err() {
            return Ok(Ran::NotStarted);
        }
        // Only the command (and what it starts) holds the write end from now on.
        drop(output);
        if self.socket.write_all(&length.to_le_bytes()).await.is_err()
            || self.socket.write_all(&request).await.is_err()
        {
            return Ok(Ran::NotStarted);
        }
        let mut started = [0u8; 1];
        match self.socket.read_exact(&mut started).await {
            Ok(_) if started[0] == b'S' => {}
            _ => return Ok(Ran::NotStarted),
        }
        let mut end = [0u8; 5];
        match self.socket.read_exact(&mut end).await {
            Ok(_) if end[0] == b'X' => {
                let code = i32::from_le_bytes([end[1], end[2], end[3], end[4]]);
                Ok(Ran::Exited((code >= 0).then_some(code)))
            }
            // The sandbox went away while the command ran (something killed the server).
            _ => Ok(Ran::Exited(None)),
        }
    }
}

// ----------------------------------------------------------------------------------------
// Inside the sandbox.

/// A request as the server reads it.
struct Request {
    output: OwnedFd,
    cwd: CString,
    command: CString,
    env: Vec<CString>,
}

/// Serves commands until the socket (descriptor 0) closes. `drop_to`: the uid and gid
/// commands run as (the server itself keeps the identity bubblewrap gave it, so a command
/// cannot touch it).
fn serve(drop_to: Option<(u32, u32)>) -> i32 {
    // Not dumpable: a command running as the same user (no root, so no `drop_to`) can
    // neither ptrace the server nor read its memory.
    #[allow(unsafe_code)]
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
    let Ok(socket) = nix::fcntl::fcntl(
        std::io::stdin().as_fd(),
        nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3),
    ) else {
        return 1;
    };
    #[allow(unsafe_code)]
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(socket) };
    // Commands get /dev/null as stdin, never the socket.
    let Ok(null) = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
    else {
        return 1;
    };
    if nix::unistd::dup2_stdin(&null).is_err() {
        return 1;
    }
    let mut stream = std::os::unix::net::UnixStream::from(socket);
    loop {
        let request = match receive(&mut stream) {
            Ok(Some(request)) => request,
            Ok(None) => return 0,
            Err(_) => return 1,
        };
        match run_one(&mut stream, request, drop_to) {
            Ok(code) => {
                let mut end = [b'X', 0, 0, 0, 0];
                end[1..].copy_from_slice(&code.to_le_bytes());
                if stream.write_all(&end).is_err() {
                    kill_others();
                    return 0;
                }
            }
            // flightdeck is gone or wants the command stopped: end everything.
            Err(_) => {
                kill_others();
                return 0;
            }
        }
    }
}

/// The next request, or `None` at end of file.
fn receive(stream: &mut std::os::unix::net::UnixStream) -> std::io::Result<Option<Request>> {
    let mut byte = [0u8; 1];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let mut output = None;
    let received = {
        let mut iov = [std::io::IoSliceMut::new(&mut byte)];
        let message = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        for cmsg in message.cmsgs()? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                for fd in fds {
                    #[allow(unsafe_code)]
                    // SAFETY: the kernel just installed this descriptor for us.
                    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                    output.get_or_insert(fd);
                }
            }
        }
        message.bytes
    };
    if received == 0 {
        return Ok(None);
    }
    let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let output = output.ok_or_else(|| invalid("a request without its output descriptor"))?;
    let mut length = [0u8; 4];
    stream.read_exact(&mut length)?;
    let mut body = vec![0u8; u32::from_le_bytes(length) as usize];
    stream.read_exact(&mut body)?;
    let mut fields = body
        .split(|b| *b == 0)
        .map(|f| CString::new(f).map_err(|_| invalid("a NUL inside a field")));
    let cwd = fields.next().ok_or_else(|| invalid("no directory"))??;
    let command = fields.next().ok_or_else(|| invalid("no command"))??;
    // The body ends with a NUL: the last split is empty.
    let env = fields
        .filter(|f| f.as_ref().map_or(true, |f| !f.as_bytes().is_empty()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(Request {
        output,
        cwd,
        command,
        env,
    }))
}

/// Runs one command to its end; `Err` when flightdeck closed the socket meanwhile.
fn run_one(
    stream: &mut std::os::unix::net::UnixStream,
    request: Request,
    drop_to: Option<(u32, u32)>,
) -> std::io::Result<i32> {
    let sh = CString::new(crate::local::SH).map_err(std::io::Error::other)?;
    let argv = [sh.clone(), c"-c".to_owned(), request.command];
    let too_long = crate::exec::too_long_message(&std::io::Error::from_raw_os_error(libc::E2BIG));
    #[allow(unsafe_code)]
    // SAFETY: the server has one thread, so the child may do anything; it only makes
    // system calls on what was prepared above, then execs or exits.
    let forked = unsafe { nix::unistd::fork() }.map_err(std::io::Error::from)?;
    let child = match forked {
        nix::unistd::ForkResult::Child => become_command(
            &request.output,
            &request.cwd,
            &sh,
            &argv,
            &request.env,
            drop_to,
            too_long.as_bytes(),
        ),
        nix::unistd::ForkResult::Parent { child } => child,
    };
    drop(request.output);
    stream.write_all(b"S")?;
    wait_or_stop(stream, child)?;
    let code = match nix::sys::wait::waitpid(child, None) {
        Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => code,
        Ok(nix::sys::wait::WaitStatus::Signaled(_, signal, _)) => -(signal as i32),
        _ => -(libc::SIGKILL),
    };
    kill_others();
    empty_tmp();
    Ok(code)
}

/// Waits until `child` exits; `Err` as soon as the socket has anything to say (end of file:
/// flightdeck stopped the command or died).
fn wait_or_stop(
    stream: &std::os::unix::net::UnixStream,
    child: nix::unistd::Pid,
) -> std::io::Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    #[allow(unsafe_code)]
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, child.as_raw(), 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let raw = RawFd::try_from(raw).map_err(std::io::Error::other)?;
    #[allow(unsafe_code)]
    // SAFETY: pidfd_open returned a new descriptor that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(raw) };
    loop {
        let mut fds = [
            PollFd::new(stream.as_fd(), PollFlags::POLLIN),
            PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let said = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
        if said(&fds[0]) {
            return Err(std::io::Error::other("stopped by flightdeck"));
        }
        if said(&fds[1]) {
            return Ok(());
        }
    }
}

/// In the forked child: a session of its own, the output on 1 and 2, the working directory,
/// `nobody` with no capabilities and no way to gain any, then `sh -c`.
fn become_command(
    output: &OwnedFd,
    cwd: &CString,
    sh: &CString,
    argv: &[CString],
    env: &[CString],
    drop_to: Option<(u32, u32)>,
    too_long: &[u8],
) -> ! {
    let fail = |what: &[u8]| -> ! {
        let _ = nix::unistd::write(std::io::stdout(), what);
        #[allow(unsafe_code)]
        // SAFETY: _exit ends the child without running the parent's destructors.
        unsafe {
            libc::_exit(crate::exec::CANNOT_START_EXIT_CODE)
        }
    };
    #[allow(unsafe_code)]
    // SAFETY: plain system calls on descriptors and values owned by this process.
    unsafe {
        libc::setsid();
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        if libc::dup2(output.as_raw_fd(), 1) < 0 || libc::dup2(output.as_raw_fd(), 2) < 0 {
            libc::_exit(crate::exec::CANNOT_START_EXIT_CODE);
        }
        if libc::chdir(cwd.as_ptr()) != 0 {
            fail(b"[flightdeck: the command's directory is not there]\n");
        }
        if let Some((uid, gid)) = drop_to {
            // Emptied first, while still root: then nothing can be regained, not even through
            // a file's inheritable capabilities.
            for cap in 0..64 {
                libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
            }
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(gid, gid, gid) != 0
                || libc::setresuid(uid, uid, uid) != 0
            {
                fail(b"[flightdeck: could not become the sandbox's user]\n");
            }
            clear_inheritable();
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            fail(b"[flightdeck: could not set no_new_privs]\n");
        }
    }
    let errno = nix::unistd::execve(sh, argv, env).err();
    if errno == Some(nix::errno::Errno::E2BIG) {
        fail(too_long);
    }
    fail(b"[flightdeck: the command could not be started]\n")
}

/// Clears the inheritable capability set (the permitted and effective ones went with root).
#[allow(unsafe_code)]
fn clear_inheritable() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capset reads a version-3 header and two data structs, as given.
    unsafe {
        libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr());
    }
}

/// Kills every process of the sandbox but its init and the server (what the last command
/// left running), and waits, briefly, until they are gone.
fn kill_others() {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(-1), nix::sys::signal::SIGKILL);
    let me = std::process::id();
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && others_alive(me) {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Whether a process other than init (1) and `me` is alive (not a zombie) in this PID
/// namespace.
fn others_alive(me: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            return false;
        };
        if pid == 1 || pid == me {
            return false;
        }
        std::fs::read(entry.path().join("stat")).is_ok_and(|stat| {
            // The state follows the command name's closing parenthesis.
            let state = stat
                .iter()
                .rposition(|b| *b == b')')
                .and_then(|at| stat.get(at + 2));
            !matches!(state, Some(b'Z' | b'X'))
        })
    })
}

/// Empties `/tmp`: each command has a private one, as it had in a sandbox of its own. Only
/// what is on `/tmp`'s own filesystem goes: the worktree, HOME or caches bound somewhere below
/// it (a data directory under the host's `/tmp`) are other mounts, never entered.
fn empty_tmp() {
    use std::os::unix::fs::MetadataExt;
    fn wipe(dir: &Path, device: u64) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.dev() != device {
                continue;
            }
            if meta.is_dir() {
                wipe(&path, device);
                // Fails, and stays, when a mount lies below it.
                let _ = std::fs::remove_dir(&path);
            } else {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    if let Ok(meta) = std::fs::symlink_metadata("/tmp") {
        wipe(Path::new("/tmp"), meta.dev());
    }
}
