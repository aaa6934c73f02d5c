//! `network = "on"` in the sandbox: the command keeps a network namespace of its own, joined to
//! the outside by slirp4netns (user-mode networking, Debian's `slirp4netns`) with the host's
//! loopback out of reach (`--disable-host-loopback`). Abstract unix sockets belong to a network
//! namespace, so the host's are out of reach too. Sharing the host's namespace
//! (`--share-net`) would hand the command every service listening on 127.0.0.1.
//!
//! bubblewrap tells us its child's pid on `--info-fd` and waits on `--block-fd` before it runs
//! the command; in between (once bubblewrap has brought the loopback up) slirp4netns attaches a
//! tap device to the child's namespace and says when it is ready. slirp4netns ends when its stdin closes (`--exit-fd=0`): when the command
//! is done or flightdeck dies.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long bubblewrap and slirp4netns may take to get the network up.
const SET_UP_TIMEOUT: Duration = Duration::from_secs(20);

/// slirp4netns from PATH, found once.
pub(crate) fn slirp4netns() -> Option<&'static PathBuf> {
    static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
    FOUND
        .get_or_init(|| crate::local::find_in_path("slirp4netns"))
        .as_ref()
}

/// The pipes between bubblewrap and us for one command.
pub(crate) struct NetworkPlumbing {
    info_read: OwnedFd,
    info_write: OwnedFd,
    block_read: OwnedFd,
    block_write: OwnedFd,
}

/// slirp4netns serving one command; ends when dropped.
pub(crate) struct Slirp {
    _child: tokio::process::Child,
    _stdin: tokio::process::ChildStdin,
}

impl NetworkPlumbing {
    pub(crate) fn new() -> std::io::Result<NetworkPlumbing> {
        let (info_read, info_write) = std::io::pipe()?;
        let (block_read, block_write) = std::io::pipe()?;
        Ok(NetworkPlumbing {
            info_read: info_read.into(),
            info_write: info_write.into(),
            block_read: block_read.into(),
            block_write: block_write.into(),
        })
    }

    /// bubblewrap's arguments naming the two descriptors it inherits.
    pub(crate) fn bubblewrap_args(&self) -> [String; 4] {
        [
            "--info-fd".into(),
            self.info_write.as_raw_fd().to_string(),
            "--block-fd".into(),
            self.block_read.as_raw_fd().to_string(),
        ]
    }

    /// The descriptors bubblewrap must inherit.
    pub(crate) fn inherited(&self) -> [RawFd; 2] {
        [self.info_write.as_raw_fd(), self.block_read.as_raw_fd()]
    }

    /// Once bubblewrap runs: reads its child's pid, attaches slirp4netns to the child's
    /// namespace, waits until it is ready, then lets the command start. On an error the
    /// command is let go without a network (fail closed), and the error says why.
    pub(crate) async fn connect(self) -> Result<Slirp, String> {
        let NetworkPlumbing {
            info_read,
            info_write,
            block_read,
            block_write,
        } = self;
        let mut info = tokio::net::unix::pipe::Receiver::from_owned_fd(info_read)
            .map_err(|e| format!("cannot read bubblewrap's info: {e}"))?;
        let mut block = tokio::net::unix::pipe::Sender::from_owned_fd(block_write)
            .map_err(|e| format!("cannot signal bubblewrap: {e}"))?;
        let attach = async {
            let pid = child_pid(&mut info).await?;
            // Ours are no longer needed once bubblewrap has its copies (it has started).
            drop(info_write);
            drop(block_read);
            loopback_up(pid).await?;
            let slirp = slirp4netns().ok_or_else(|| {
                "slirp4netns is not installed (hint: apt-get install slirp4netns)".to_string()
            })?;
            let mut child = tokio::process::Command::new(slirp)
                .args([
                    "--configure",
                    // slirp4netns parses the command's packets: as little power as it can.
                    "--enable-sandbox",
                    "--enable-seccomp",
                    "--mtu=65520",
                    "--disable-host-loopback",
                    "--ready-fd=1",
                    "--exit-fd=0",
                ])
                .arg(pid.to_string())
                .arg("tap0")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .env_clear()
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", slirp.display()))?;
            let stdin = child.stdin.take().ok_or("slirp4netns has no stdin")?;
            let mut ready = child.stdout.take().ok_or("slirp4netns has no stdout")?;
            let mut byte = [0u8; 1];
            match ready.read(&mut byte).await {
                Ok(1) => {}
                _ => return Err("slirp4netns stopped before the network was up".to_string()),
            }
            Ok(Slirp {
                _child: child,
                _stdin: stdin,
            })
        };
        let result = match tokio::time::timeout(SET_UP_TIMEOUT, attach).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "the network was not up after {}s",
                SET_UP_TIMEOUT.as_secs()
            )),
        };
        // Let the command start, with the network or (after an error) without.
        let _ = block.write_all(b"1").await;
        result
    }
}

/// Waits until bubblewrap has brought up the loopback in the child's namespace: slirp4netns
/// configuring the namespace meanwhile makes bubblewrap fail ("loopback: Failed
/// RTM_NEWADDR"). The address shows in the namespace's routing table.
async fn loopback_up(pid: u32) -> Result<(), String> {
    let table = format!("/proc/{pid}/net/fib_trie");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::fs::read_to_string(&table).await {
            Ok(text) if text.contains("127.0.0.1") => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(format!("cannot read {table}: {e}")),
        }
        if tokio::time::Instant::now() > deadline {
            return Err("bubblewrap did not bring the loopback up".to_string());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Reads `{"child-pid": N}` from bubblewrap's info pipe.
async fn child_pid(info: &mut tokio::net::unix::pipe::Receiver) -> Result<u32, String> {
    let mut text = Vec::new();
    let mut chunk = [0u8; 256];
    loop {
        let n = info
            .read(&mut chunk)
            .await
            .map_err(|e| format!("cannot read bubblewrap's info: {e}"))?;
        if n == 0 {
            return Err("bubblewrap stopped before it started the command".to_string());
        }
        text.extend_from_slice(&chunk[..n]);
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&text) {
            return value["child-pid"]
                .as_u64()
                .and_then(|pid| u32::try_from(pid).ok())
                .ok_or_else(|| format!("bubblewrap's info has no child-pid: {value}"));
        }
        if text.len() > 64 * 1024 {
            return Err("bubblewrap's info is not JSON".to_string());
        }
    }
}
