//! Before `--tcp` sends the bearer token, make sure the port in `tcp.port` is really the
//! daemon's (issue 13 item 8): a stale `tcp.port` left by a crash names a port that any local
//! user may have bound since, and whoever listens there would receive the token.
//!
//! Linux: the pid in `daemon.pid` must be alive and hold, among its open files
//! (`/proc/<pid>/fd`), the listening socket on `127.0.0.1:<port>` that `/proc/net/tcp` lists
//! with our uid. Elsewhere there is no `/proc`, and the check is not made (documented in the
//! README). The parsing is pure and unit-tested.

use std::path::Path;

/// Why the TCP port is not trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotDaemon {
    /// The port from `tcp.port`.
    pub port: u16,
    /// What the check found.
    pub reason: String,
}

/// The inodes of sockets in `LISTEN` state on `127.0.0.1:<port>` or `0.0.0.0:<port>` owned
/// by `uid`, from the text of `/proc/net/tcp`.
pub fn listening_inodes(proc_net_tcp: &str, port: u16, uid: u32) -> Vec<u64> {
    const LISTEN: &str = "0A";
    let loopback = u32::from_ne_bytes([127, 0, 0, 1]);
    proc_net_tcp
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (local, state, owner, inode) = (f.get(1)?, f.get(3)?, f.get(7)?, f.get(9)?);
            let (ip, p) = local.split_once(':')?;
            let ip = u32::from_str_radix(ip, 16).ok()?;
            let p = u16::from_str_radix(p, 16).ok()?;
            let matches = p == port
                && *state == LISTEN
                && (ip == loopback || ip == 0)
                && owner.parse::<u32>().ok()? == uid;
            if matches {
                inode.parse::<u64>().ok()
            } else {
                None
            }
        })
        .collect()
}

/// Checks that the daemon named by `pid_file` holds the listener on `127.0.0.1:<port>`.
#[cfg(target_os = "linux")]
pub fn verify(pid_file: &Path, port: u16) -> Result<(), NotDaemon> {
    use claudemesh_actors::files;
    let fail = |reason: String| Err(NotDaemon { port, reason });
    let Some(pid) = files::read_pid_file(pid_file) else {
        return fail(format!("{} is missing or unreadable", pid_file.display()));
    };
    if !files::pid_alive(pid) {
        return fail(format!(
            "pid {pid} from {} is not running",
            pid_file.display()
        ));
    }
    let table = match std::fs::read_to_string("/proc/net/tcp") {
        Ok(t) => t,
        Err(e) => return fail(format!("cannot read /proc/net/tcp: {e}")),
    };
    let inodes = listening_inodes(&table, port, files::our_uid());
    if inodes.is_empty() {
        return fail(
            "no listener of ours on that port (another user's process may hold it)".into(),
        );
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let fds = match std::fs::read_dir(format!("/proc/{pid}/fd")) {
        Ok(d) => d,
        Err(e) => return fail(format!("cannot list the open files of pid {pid}: {e}")),
    };
    let held = fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .is_ok_and(|target| wanted.iter().any(|w| target.as_os_str() == w.as_str()))
    });
    if held {
        Ok(())
    } else {
        fail(format!(
            "the listener there is not held by the daemon (pid {pid})"
        ))
    }
}

/// Without `/proc` the listener cannot be attributed to a process; the check is skipped.
#[cfg(not(target_os = "linux"))]
pub fn verify(_pid_file: &Path, _port: u16) -> Result<(), NotDaemon> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex_ip(octets: [u8; 4]) -> String {
        format!("{:08X}", u32::from_ne_bytes(octets))
    }

    #[test]
    fn only_our_listeners_on_loopback_or_any_count() {
        let lo = hex_ip([127, 0, 0, 1]);
        let other = hex_ip([10, 0, 0, 1]);
        let table = format!(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
             0: {lo}:BADF 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1 0 100 0 0 10 0\n\
             1: {lo}:BADF 00000000:0000 0A 00000000:00000000 00:00000000 00000000 65534        0 222 1 0 100 0 0 10 0\n\
             2: 00000000:BADF 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 333 1 0 100 0 0 10 0\n\
             3: {lo}:BADF {lo}:9999 01 00000000:00000000 00:00000000 00000000  1000        0 444 1 0 100 0 0 10 0\n\
             4: {other}:BADF 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 555 1 0 100 0 0 10 0\n\
             5: {lo}:BAE0 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 666 1 0 100 0 0 10 0\n\
             garbage line\n"
        );
        assert_eq!(listening_inodes(&table, 0xBADF, 1000), vec![111, 333]);
        assert_eq!(listening_inodes(&table, 0xBADF, 65534), vec![222]);
        assert!(listening_inodes(&table, 1, 1000).is_empty());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn our_own_listener_is_verified_and_a_dead_pid_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("daemon.pid");
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::fs::write(&pid_file, format!("{}\n", std::process::id())).unwrap();
        assert_eq!(verify(&pid_file, port), Ok(()));
        drop(l);
        assert!(verify(&pid_file, port).is_err());
        std::fs::write(&pid_file, "999999999\n").unwrap();
        assert!(verify(&pid_file, port).is_err());
    }
}
