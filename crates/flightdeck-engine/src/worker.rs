//! Who drives a mission: a lease owner name that says which process on which host holds it,
//! so that a lease left by a process that died on this host can be taken over at once
//! instead of after its expiry.

/// `host:pid-namespace/pid/start-time` of a process (start time in clock ticks since boot,
/// so a reused pid is not mistaken for the original process; the pid namespace, so that
/// containers that share a host name never judge each other's processes by their own pids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerId(pub String);

impl WorkerId {
    /// This process.
    pub fn current() -> WorkerId {
        let pid = std::process::id();
        WorkerId(format!(
            "{}/{pid}/{}",
            this_host(),
            start_time(pid).unwrap_or_default()
        ))
    }

    /// Whether the process this names is certainly gone: it ran on this host and no process
    /// with its pid and start time exists. A lease of another host is never judged dead here.
    pub fn is_dead_on_this_host(owner: &str) -> bool {
        let mut parts = owner.rsplitn(3, '/');
        let (Some(start), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        if host != this_host() {
            return false;
        }
        let Ok(pid) = pid.parse::<u32>() else {
            return false;
        };
        start_time(pid).is_none_or(|actual| actual != start)
    }
}

/// The host name and this process's pid namespace: where a pid means one process.
fn this_host() -> String {
    let namespace = std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .and_then(|link| {
            let link = link.to_string_lossy().into_owned();
            link.strip_prefix("pid:[")
                .and_then(|rest| rest.strip_suffix(']'))
                .map(str::to_string)
        })
        .unwrap_or_default();
    format!("{}:{namespace}", hostname())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}

/// Field 22 of `/proc/<pid>/stat`: when the process started.
fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let after_name = stat.rsplit_once(')')?.1;
    after_name.split_whitespace().nth(19).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_made_up_one_is_dead() {
        let me = WorkerId::current();
        assert!(!WorkerId::is_dead_on_this_host(&me.0), "{}", me.0);
        let host = this_host();
        assert!(host.starts_with(&format!("{}:", hostname())), "{host}");
        assert!(WorkerId::is_dead_on_this_host(&format!(
            "{host}/{}/1",
            std::process::id()
        )));
        assert!(WorkerId::is_dead_on_this_host(&format!("{host}/4000000/1")));
        assert!(!WorkerId::is_dead_on_this_host("elsewhere/1/1"));
        // The same host name in another pid namespace (another container): never judged.
        assert!(!WorkerId::is_dead_on_this_host(&format!(
            "{}:0/4000000/1",
            hostname()
        )));
        assert!(!WorkerId::is_dead_on_this_host("garbage"));
    }
}
