//! One sandbox per workspace that commands enter, instead of a bubblewrap per command.
//!
//! Setting up bubblewrap (its namespaces, above all the network namespace, and its mounts)
//! costs about 13 ms, and `setpriv` another 3: most of what a sandboxed `run = "true"` step
//! cost. So when flightdeck runs as root (commands run as `nobody`), a workspace's sandbox is
//! made once, with a small server as its PID 1 (flightdeck's own binary, bound read-only, run
//! with [`SERVER_ARG`]), and each command is a request to it over a socket: the server forks,
//! the child takes a session and an IPC namespace of its own (SysV and POSIX IPC objects die
//! with the command), becomes `nobody` and execs `sh -c`. When the command exits, the server
//! kills everything else in the sandbox's PID namespace and reaps it (every orphan is its
//! child), and empties `/tmp`, so the next command starts from the same state as it would in a
//! sandbox of its own. Anything it cannot undo for certain (a process that will not die, a
//! file it cannot remove, a socket still in the network namespace, a connection in
//! `TIME_WAIT` say) ends the sandbox instead: the next command gets a new one.
//!
//! As PID 1 the server cannot be killed or stopped from inside the sandbox, and when it ends
//! for any reason the kernel kills everything in the namespace. It keeps only the
//! capabilities it needs (bubblewrap `--cap-drop ALL --cap-add …`, and its bounding set cut
//! to them); commands, as `nobody`, cannot touch it. Descriptors it inherited without
//! close-on-exec are marked so. A kernel that cannot tell it when a command ends (no
//! `pidfd_open`) makes it exit before it takes any request. Without root there is no second user to run commands as, so each command
//! gets a bubblewrap of its own.
//!
//! The socket is the lifeline: when flightdeck closes it (the workspace is dropped, a command
//! timed out or its future was dropped) or dies, the server exits, and with it everything.
//! (bubblewrap's `--die-with-parent` is not used: it fires when the *thread* that spawned it
//! exits, which in a thread pool is not our death.)
//!
//! The protocol, all on one Unix stream socket:
//! - flightdeck → server: one byte `R` carrying the command's output descriptor
//!   (`SCM_RIGHTS`), then a `u32` little-endian length and that many bytes: the working
//!   directory, the command, then `NAME=value` entries, each ended by a NUL byte.
//! - server → flightdeck: `A` once the request is read, before anything runs; then `X`, an
//!   `i32` little-endian (the exit code, or minus the signal that killed it) and one byte,
//!   1 when the sandbox is ready for the next command, 0 when it is ending.
//!
//! End of file before `A`: nothing ran, and the caller may run the command in a bubblewrap of
//! its own (which reports what is wrong). After `A`: the command's fate is unknown, and it is
//! never run again.

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
        // Commands never run as the server's own user.
        let code = match ids[..] {
            [uid, gid] if uid != 0 && gid != 0 => serve(uid, gid),
            _ => 2,
        };
        std::process::exit(code);
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
    /// The server never took it (it was not there): nothing ran.
    NotStarted,
    /// Exit code, or `None` when a signal ended it; `keep`: the sandbox is ready for more.
    Exited { code: Option<i32>, keep: bool },
    /// The sandbox went away while the command ran.
    Lost,
}

/// flightdeck's end of a workspace's sandbox. Dropping it ends the sandbox.
#[derive(Debug)]
pub(crate) struct Server {
    /// Whether the sandbox binds the caches writable (see [`crate::CommandSpec::trusted`]).
    pub(crate) trusted: bool,
    socket: tokio::net::UnixStream,
    /// bubblewrap, which ends after the server (tokio reaps it once dropped).
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
            // handle, not the sandbox's. Not killed when dropped: the server ends when the
            // socket closes, and bubblewrap after it (killing bubblewrap would only leave
            // the server an orphan of whichever process reaps on the host).
            .process_group(0);
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
        let mut accepted = [0u8; 1];
        match self.socket.read_exact(&mut accepted).await {
            Ok(_) if accepted[0] == b'A' => {}
            _ => return Ok(Ran::NotStarted),
        }
        let mut end = [0u8; 6];
        match self.socket.read_exact(&mut end).await {
            Ok(_) if end[0] == b'X' => {
                let code = i32::from_le_bytes([end[1], end[2], end[3], end[4]]);
                Ok(Ran::Exited {
                    code: (code >= 0).then_some(code),
                    keep: end[5] == 1,
                })
            }
            _ => Ok(Ran::Lost),
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

/// Serves commands until the socket (descriptor 0) closes, as the sandbox's PID 1: returning
/// ends the namespace and everything in it (killed first all the same). Commands run as
/// `uid` and `gid`.
fn serve(uid: u32, gid: u32) -> i32 {
    // Only as PID 1 of a namespace of its own: its `kill(-1)`s reach that namespace alone.
    // Run by hand on a host as root, they would kill every process there.
    if nix::unistd::getpid().as_raw() != 1 {
        #[allow(clippy::print_stderr)] // no one else to tell
        {
            eprintln!(
                "error: {SERVER_ARG} is flightdeck's own, run only inside a workspace's sandbox"
            );
        }
        return 2;
    }
    let code = serve_until_done(uid, gid);
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(-1), nix::sys::signal::SIGKILL);
    code
}

/// The capabilities the server keeps in its bounding set (see `SERVER_CAPABILITIES` in
/// `local.rs`): SYS_ADMIN, SETUID, SETGID, SETPCAP, KILL, DAC_OVERRIDE, FOWNER.
const KEPT_CAPABILITIES: [i32; 7] = [21, 7, 6, 8, 5, 1, 3];

fn serve_until_done(uid: u32, gid: u32) -> i32 {
    #[allow(unsafe_code)]
    // SAFETY: prctl and close_range with integer arguments.
    unsafe {
        // Not dumpable: nothing in the sandbox can ptrace the server or read its memory.
        libc::prctl(
            libc::PR_SET_DUMPABLE,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        );
        // Nothing beyond what it has, ever.
        for cap in 0..64 {
            if !KEPT_CAPABILITIES.contains(&cap) {
                libc::prctl(
                    libc::PR_CAPBSET_DROP,
                    cap as libc::c_ulong,
                    0 as libc::c_ulong,
                    0 as libc::c_ulong,
                    0 as libc::c_ulong,
                );
            }
        }
        // Descriptors flightdeck's own parent left open without close-on-exec must not reach
        // commands.
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
    // The kernel must tell the server when a command ends (Linux 5.3 and later; a seccomp
    // profile may refuse it): checked before any request is acknowledged, so that flightdeck
    // can still run commands in a bubblewrap each.
    if pidfd(nix::unistd::getpid()).is_err() {
        return 1;
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
    // What bubblewrap made under /tmp (the parents of what is bound there) stays.
    let skeleton = tmp_skeleton();
    let mut stream = std::os::unix::net::UnixStream::from(socket);
    loop {
        let request = match receive(&mut stream) {
            Ok(Some(request)) => request,
            Ok(None) => return 0,
            Err(_) => return 1,
        };
        // From here on flightdeck never runs this command anywhere else.
        if stream.write_all(b"A").is_err() {
            return 0;
        }
        let Ok(code) = run_one(&mut stream, request, uid, gid) else {
            // flightdeck is gone or wants the command stopped.
            return 0;
        };
        let clean = end_leftovers() && empty_tmp(&skeleton) && no_sockets_left();
        let mut end = [b'X', 0, 0, 0, 0, u8::from(clean)];
        end[1..5].copy_from_slice(&code.to_le_bytes());
        if stream.write_all(&end).is_err() || !clean {
            return 0;
        }
    }
}

/// A descriptor that becomes readable when `pid` exits.
fn pidfd(pid: nix::unistd::Pid) -> std::io::Result<OwnedFd> {
    #[allow(unsafe_code)]
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let raw = RawFd::try_from(raw).map_err(std::io::Error::other)?;
    #[allow(unsafe_code)]
    // SAFETY: pidfd_open returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Whether the sandbox's network namespace holds no socket any more (a connection in
/// `TIME_WAIT` would keep the next command from binding its port, as it would not in a
/// sandbox of its own): else the sandbox ends. Read from the namespace's counters
/// (`sockstat`: every `inuse` and `tw` must be 0) and its unix socket table; the tables of
/// `/proc/net/tcp` would cost milliseconds, as they walk the whole host's connections.
fn no_sockets_left() -> bool {
    let counters_zero = ["/proc/net/sockstat", "/proc/net/sockstat6"]
        .iter()
        .all(|file| {
            std::fs::read_to_string(file).is_ok_and(|text| {
                text.lines().all(|line| {
                    let words: Vec<&str> = line.split_whitespace().collect();
                    words
                        .windows(2)
                        .filter(|pair| pair[0] == "inuse" || pair[0] == "tw")
                        .all(|pair| pair[1] == "0")
                })
            })
        });
    let no_unix =
        std::fs::read_to_string("/proc/net/unix").is_ok_and(|text| text.lines().nth(1).is_none());
    counters_zero && no_unix
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
    uid: u32,
    gid: u32,
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
            (uid, gid),
            too_long.as_bytes(),
        ),
        nix::unistd::ForkResult::Parent { child } => child,
    };
    drop(request.output);
    wait_for(stream, child)
}

/// The exit code of a wait status, or minus the signal.
fn code_of(status: nix::sys::wait::WaitStatus) -> i32 {
    match status {
        nix::sys::wait::WaitStatus::Exited(_, code) => code,
        nix::sys::wait::WaitStatus::Signaled(_, signal, _) => -(signal as i32),
        _ => -libc::SIGKILL,
    }
}

/// Waits until `child` exits, reaping what else ends meanwhile (as PID 1 every orphan in
/// the sandbox is the server's child); `Err` as soon as the socket has anything to say (end
/// of file: flightdeck stopped the command or died).
fn wait_for(
    stream: &std::os::unix::net::UnixStream,
    child: nix::unistd::Pid,
) -> std::io::Result<i32> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let pidfd = pidfd(child)?;
    let mut exited = false;
    loop {
        let mut fds = [
            PollFd::new(stream.as_fd(), PollFlags::POLLIN),
            PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
        ];
        // Woken by the command's end; every quarter second also, to reap orphans. Once it
        // has ended, its descriptor stays readable: only the socket is watched then.
        let watched = if exited { &mut fds[..1] } else { &mut fds[..] };
        let timeout = if exited { 1u16 } else { 250u16 };
        match poll(watched, PollTimeout::from(timeout)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        if fds[0].revents().is_some_and(|r| !r.is_empty()) {
            return Err(std::io::Error::other("stopped by flightdeck"));
        }
        exited |= fds[1].revents().is_some_and(|r| !r.is_empty());
        loop {
            match waitpid(nix::unistd::Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(status) if status.pid() == Some(child) => return Ok(code_of(status)),
                Ok(_) => {}
            }
        }
        if exited {
            // Ended but not reapable: something else traces it. Its tracer, like everything
            // the command left, goes now; then the command is ours to reap.
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(-1), nix::sys::signal::SIGKILL);
        }
    }
}

/// In the forked child: a session and an IPC namespace of its own, the output on 1 and 2,
/// the working directory, `nobody` with no capabilities and no way to gain any, then `sh -c`.
fn become_command(
    output: &OwnedFd,
    cwd: &CString,
    sh: &CString,
    argv: &[CString],
    env: &[CString],
    (uid, gid): (u32, u32),
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
    let zero = 0 as libc::c_ulong;
    #[allow(unsafe_code)]
    // SAFETY: plain system calls on descriptors and values owned by this process.
    unsafe {
        if libc::dup2(output.as_raw_fd(), 1) < 0 || libc::dup2(output.as_raw_fd(), 2) < 0 {
            libc::_exit(crate::exec::CANNOT_START_EXIT_CODE);
        }
        if libc::setsid() < 0 {
            fail(b"[flightdeck: could not give the command a session]\n");
        }
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        if libc::chdir(cwd.as_ptr()) != 0 {
            fail(b"[flightdeck: the command's directory is not there]\n");
        }
        // SysV and POSIX IPC objects of its own, gone with its last process.
        if libc::unshare(libc::CLONE_NEWIPC) != 0 {
            fail(b"[flightdeck: could not give the command an IPC namespace]\n");
        }
        // Emptied first, while still root: then nothing can be regained, not even through
        // a file's inheritable capabilities. Past the last capability the kernel says EINVAL.
        for cap in 0..64 as libc::c_ulong {
            if libc::prctl(libc::PR_CAPBSET_DROP, cap, zero, zero, zero) != 0
                && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL)
            {
                fail(b"[flightdeck: could not empty the bounding set]\n");
            }
        }
        if libc::setgroups(0, std::ptr::null()) != 0
            || libc::setresgid(gid, gid, gid) != 0
            || libc::setresuid(uid, uid, uid) != 0
        {
            fail(b"[flightdeck: could not become the sandbox's user]\n");
        }
        if !clear_inheritable() {
            fail(b"[flightdeck: could not clear the inheritable capabilities]\n");
        }
        if libc::prctl(
            libc::PR_SET_NO_NEW_PRIVS,
            1 as libc::c_ulong,
            zero,
            zero,
            zero,
        ) != 0
        {
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
fn clear_inheritable() -> bool {
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
    unsafe { libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) == 0 }
}

/// Kills every other process of the sandbox and reaps them; `false` when some are still
/// there after two seconds (stuck in the kernel): the sandbox must end.
fn end_leftovers() -> bool {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        // From PID 1: every process of the namespace but the server.
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(-1), nix::sys::signal::SIGKILL);
        loop {
            match waitpid(nix::unistd::Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                // Every process left in the namespace descends from the server: none is left.
                Err(nix::errno::Errno::ECHILD) => return true,
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Everything on `/tmp`'s own filesystem when the sandbox starts: the directories bubblewrap
/// made as mount points' parents (root's, `0755`).
fn tmp_skeleton() -> std::collections::HashSet<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    fn walk(dir: &Path, device: u64, found: &mut std::collections::HashSet<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if let Ok(meta) = std::fs::symlink_metadata(&path) {
                if meta.dev() == device {
                    if meta.is_dir() {
                        walk(&path, device, found);
                    }
                    found.insert(path);
                }
            }
        }
    }
    let mut found = std::collections::HashSet::new();
    if let Ok(meta) = std::fs::symlink_metadata("/tmp") {
        walk(Path::new("/tmp"), meta.dev(), &mut found);
    }
    found
}

/// Empties `/tmp` back to its skeleton: each command has a private one, as it had in a
/// sandbox of its own. Only what is on `/tmp`'s own filesystem goes: the worktree, HOME or
/// caches bound somewhere below it (a data directory under the host's `/tmp`) are other
/// mounts, never entered. `false` when anything could not be removed (too deep for a path,
/// say): the sandbox must end.
fn empty_tmp(skeleton: &std::collections::HashSet<PathBuf>) -> bool {
    use std::os::unix::fs::MetadataExt;
    fn wipe(dir: &Path, device: u64, skeleton: &std::collections::HashSet<PathBuf>) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return false;
        };
        let mut clean = true;
        for entry in entries {
            let Ok(entry) = entry else {
                return false;
            };
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                return false;
            };
            if meta.dev() != device {
                continue;
            }
            if skeleton.contains(&path) {
                clean &= !meta.is_dir() || wipe(&path, device, skeleton);
                continue;
            }
            // `remove_dir_all` works through descriptors: no path length limit, symlinks
            // never followed.
            let removed = if meta.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            clean &= removed.is_ok();
        }
        clean
    }
    match std::fs::symlink_metadata("/tmp") {
        Ok(meta) => wipe(Path::new("/tmp"), meta.dev(), skeleton),
        Err(_) => false,
    }
}
