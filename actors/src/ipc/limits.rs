//! Connection limits of the IPC listeners (issue 13 item 7), as pure functions and plain
//! data so they are unit-tested without sockets:
//!
//! - [`raise_fd_limit`]: the soft `RLIMIT_NOFILE` is raised to the hard one at start;
//! - [`ConnLimits::for_fd_limit`]: a connection budget per listener, together well under the
//!   fd limit (the TCP port gets a quarter of it, the Unix socket an eighth, each capped), so
//!   `accept` never meets `EMFILE` and the TCP port can never starve the socket;
//! - [`head_end`]: where a request head ends, for the TCP gate's small pre-read.

use std::time::Duration;

/// Budgets and timeouts of the two listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// TCP connections open at once (past it, the oldest still sending its first head is
    /// closed to make room; if none is, the new connection is closed).
    pub tcp_budget: usize,
    /// Unix-socket connections open at once (actix stops accepting past it).
    pub unix_budget: usize,
    /// Largest first request head accepted on TCP, before any authentication (431 past it).
    pub tcp_head_limit: usize,
    /// Time a TCP client has from connect to the end of its first head (408 after it), and
    /// for every later head on a kept-alive connection.
    pub tcp_head_timeout: Duration,
    /// Idle time allowed between requests on a kept-alive TCP connection.
    pub tcp_keep_alive: Duration,
}

/// Largest TCP budget, whatever the fd limit.
pub const MAX_TCP_BUDGET: usize = 1024;
/// Largest Unix-socket budget, whatever the fd limit.
pub const MAX_UNIX_BUDGET: usize = 512;
/// Smallest budgets, for absurdly low fd limits.
pub const MIN_BUDGET: usize = 16;

impl ConnLimits {
    /// The limits for a process whose soft fd limit is `nofile`.
    pub fn for_fd_limit(nofile: u64) -> Self {
        let share = |div: u64, max: usize| {
            usize::try_from(nofile / div)
                .unwrap_or(max)
                .clamp(MIN_BUDGET, max)
        };
        ConnLimits {
            tcp_budget: share(4, MAX_TCP_BUDGET),
            unix_budget: share(8, MAX_UNIX_BUDGET),
            tcp_head_limit: 8 * 1024,
            tcp_head_timeout: Duration::from_secs(5),
            tcp_keep_alive: Duration::from_secs(5),
        }
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit in force
/// afterwards (the old one if raising failed, e.g. macOS refuses `RLIM_INFINITY`).
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return raised.rlim_cur;
        }
        log::warn!(
            "could not raise the open-file limit from {} to {}: {}",
            lim.rlim_cur,
            lim.rlim_max,
            std::io::Error::last_os_error()
        );
    }
    lim.rlim_cur
}

/// The length of the request head at the start of `buf` (through its blank line), or `None`
/// while it is incomplete. Accepts CRLF and bare-LF line ends, as the HTTP parser does.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_stay_well_under_the_fd_limit() {
        for nofile in [64, 256, 1024, 4096, 20_000, 1 << 20, u64::MAX] {
            let l = ConnLimits::for_fd_limit(nofile);
            assert!(l.tcp_budget <= MAX_TCP_BUDGET && l.unix_budget <= MAX_UNIX_BUDGET);
            if nofile >= 256 {
                assert!(
                    ((l.tcp_budget + l.unix_budget) as u64) * 8 <= nofile.saturating_mul(3),
                    "{nofile}: {l:?}"
                );
            }
        }
        let l = ConnLimits::for_fd_limit(1024);
        assert_eq!((l.tcp_budget, l.unix_budget), (256, 128));
        let l = ConnLimits::for_fd_limit(4096);
        assert_eq!((l.tcp_budget, l.unix_budget), (1024, 512));
    }

    #[test]
    fn raising_the_fd_limit_reaches_the_hard_limit() {
        let soft = raise_fd_limit();
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!(soft, lim.rlim_cur);
        assert_eq!(lim.rlim_cur, lim.rlim_max);
    }

    #[test]
    fn head_end_finds_the_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody"), Some(27));
        assert_eq!(head_end(b"GET / HTTP/1.1\nHost: x\n\n"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(head_end(b""), None);
    }
}
