//! Is a session's process still the one that registered? (SPEC §12, the reaper.) Pure
//! functions over `/proc` (Linux) or `kill(pid, 0)` elsewhere; no actix.
//!
//! A pid alone is not an identity: pids are reused. On Linux the process start time — field 22
//! of `/proc/<pid>/stat`, clock ticks since boot — is recorded at registration and compared on
//! every sweep; a different value means the registered process is gone and an unrelated one
//! now has its pid. Where `/proc` is missing (macOS) only liveness can be checked.

use std::io;

use crate::files::pid_alive;

/// What a probe found for one pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcState {
    /// A live process has this pid; `start` is its start time when the OS tells it.
    Running {
        /// `/proc/<pid>/stat` field 22 (clock ticks after boot), `None` without `/proc`.
        start: Option<u64>,
    },
    /// No live process has this pid (also a zombie: it has exited, only its entry is left).
    Gone,
}

/// Looks processes up. A trait so that tests can play pid reuse, which a real OS does not do
/// on demand.
pub trait ProcessProbe: Send + Sync {
    /// The state of `pid` now.
    fn probe(&self, pid: u32) -> ProcState;
}

/// The real probe: `/proc/<pid>/stat` where it exists, else `kill(pid, 0)`.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsProbe;

impl ProcessProbe for OsProbe {
    fn probe(&self, pid: u32) -> ProcState {
        if pid == 0 {
            return ProcState::Gone;
        }
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => parse_stat(&stat).unwrap_or(ProcState::Running { start: None }),
            Err(e) if e.kind() == io::ErrorKind::NotFound && proc_mounted() => ProcState::Gone,
            Err(_) => {
                if pid_alive(pid) {
                    ProcState::Running { start: None }
                } else {
                    ProcState::Gone
                }
            }
        }
    }
}

/// True when `/proc` is a procfs with our own entry (Linux); false on macOS.
fn proc_mounted() -> bool {
    std::path::Path::new("/proc/self/stat").exists()
}

/// Parses a `/proc/<pid>/stat` line: the state (field 3) and the start time (field 22).
/// `comm` (field 2) is in parentheses and may itself hold spaces and `)`, so fields are
/// counted after the **last** `)`. `None` for a line that does not have the fields.
pub fn parse_stat(stat: &str) -> Option<ProcState> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3, so field N is at index N - 3.
    let state = fields.first()?;
    if matches!(*state, "Z" | "X" | "x") {
        return Some(ProcState::Gone);
    }
    let start = fields.get(22 - 3)?.parse::<u64>().ok()?;
    Some(ProcState::Running { start: Some(start) })
}

/// Why a session is dropped, reported as `reason` in its `session_left` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveReason {
    /// The registered process exited.
    ProcessExited,
    /// The pid now belongs to another process (its start time differs).
    PidReused,
    /// Registered more than the TTL (24 h) ago.
    Expired,
    /// `DELETE /v1/sessions/<token>`.
    Deregistered,
    /// A new registration with the same `session_id` (or token) replaced it.
    Replaced,
    /// Its mesh is no longer attached (after a restart or SIGHUP with fewer meshes).
    MeshDetached,
}

impl LeaveReason {
    /// The `reason` string of the event.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaveReason::ProcessExited => "process_exited",
            LeaveReason::PidReused => "pid_reused",
            LeaveReason::Expired => "expired",
            LeaveReason::Deregistered => "deregistered",
            LeaveReason::Replaced => "replaced",
            LeaveReason::MeshDetached => "mesh_detached",
        }
    }
}

/// The reaper's rule for one session: `None` keeps it. `recorded_start` is the start time
/// taken at registration (`None` when the OS did not give one: liveness only).
pub fn reap_reason(
    state: ProcState,
    recorded_start: Option<u64>,
    registered_at_ms: i64,
    now_ms: i64,
    ttl_ms: i64,
) -> Option<LeaveReason> {
    match state {
        ProcState::Gone => return Some(LeaveReason::ProcessExited),
        ProcState::Running { start: Some(now) } if recorded_start.is_some_and(|s| s != now) => {
            return Some(LeaveReason::PidReused)
        }
        ProcState::Running { .. } => {}
    }
    (now_ms.saturating_sub(registered_at_ms) > ttl_ms).then_some(LeaveReason::Expired)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 3 1 0 0 \
                        20 0 1 0 987654 1000 10 18446744073709551615";

    #[test]
    fn start_time_is_field_22_counted_after_the_last_paren() {
        assert_eq!(
            parse_stat(STAT),
            Some(ProcState::Running {
                start: Some(987654)
            })
        );
        assert_eq!(
            parse_stat(&STAT.replace(") S ", ") Z ")),
            Some(ProcState::Gone)
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
    }

    #[test]
    fn our_own_process_is_running_with_a_start_time_and_a_free_pid_is_gone() {
        let me = OsProbe.probe(std::process::id());
        assert!(
            matches!(me, ProcState::Running { start: Some(_) }),
            "{me:?}"
        );
        // Stable across calls: the same process keeps its start time.
        assert_eq!(OsProbe.probe(std::process::id()), me);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert_eq!(OsProbe.probe(pid), ProcState::Gone);
        assert_eq!(OsProbe.probe(0), ProcState::Gone);
    }

    #[test]
    fn reaper_rule_covers_exit_reuse_and_ttl() {
        let day = 86_400_000;
        let running = |s| ProcState::Running { start: s };
        assert_eq!(reap_reason(running(Some(5)), Some(5), 0, 10, day), None);
        assert_eq!(
            reap_reason(ProcState::Gone, Some(5), 0, 10, day),
            Some(LeaveReason::ProcessExited)
        );
        assert_eq!(
            reap_reason(running(Some(6)), Some(5), 0, 10, day),
            Some(LeaveReason::PidReused)
        );
        // Without a recorded start only liveness counts.
        assert_eq!(reap_reason(running(Some(6)), None, 0, 10, day), None);
        assert_eq!(reap_reason(running(None), Some(5), 0, 10, day), None);
        assert_eq!(
            reap_reason(running(Some(5)), Some(5), 0, day + 1, day),
            Some(LeaveReason::Expired)
        );
        assert_eq!(reap_reason(running(Some(5)), Some(5), 0, day, day), None);
    }
}
