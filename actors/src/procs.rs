//! Is a pid a claudemesh daemon? (SPEC §3 step 1.) A `daemon.pid` left by a crash can name a
//! pid that the OS has since given to an unrelated process (pids are reused; after a reboot a
//! low pid such as 1 is almost certain). Only a live process that *is* a claudemesh daemon —
//! this binary, or the TypeScript CLI running `daemon` — may block a start or receive `down`'s
//! SIGTERM; anything else makes the pid file stale.
//!
//! On Linux the answer comes from `/proc/<pid>/cmdline`. Where that cannot be read (another
//! OS, a `hidepid` mount) a live pid is assumed to be a daemon: refusing to start is
//! recoverable by hand, signalling a stranger is not.
//!
//! Pure std + libc; no actix.

use std::path::Path;

use crate::files::pid_alive;

/// What a pid names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PidOwner {
    /// No such process.
    Dead,
    /// A live claudemesh daemon (or a live process whose command line cannot be read).
    Daemon,
    /// A live process that is not a claudemesh daemon; `name` is its program's file name
    /// (for the log line; never its arguments, which may hold secrets).
    Other { name: String },
}

/// Classifies `pid` (see the module docs).
pub fn pid_owner(pid: u32) -> PidOwner {
    pid_owner_in(Path::new("/proc"), pid)
}

/// [`pid_owner`] against another procfs root (tests).
pub fn pid_owner_in(proc_root: &Path, pid: u32) -> PidOwner {
    if !pid_alive(pid) {
        return PidOwner::Dead;
    }
    if !cfg!(target_os = "linux") {
        return PidOwner::Daemon;
    }
    match std::fs::read(proc_root.join(pid.to_string()).join("cmdline")) {
        Ok(raw) => {
            let args = split_cmdline(&raw);
            if is_daemon_command(&args) {
                PidOwner::Daemon
            } else {
                let name = args.first().map(|a| basename(a)).unwrap_or_default();
                PidOwner::Other {
                    name: name.chars().take(64).collect(),
                }
            }
        }
        // Exited between the two checks.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => PidOwner::Dead,
        Err(_) => PidOwner::Daemon,
    }
}

/// `/proc/<pid>/cmdline`: NUL-separated arguments (lossy UTF-8, trailing NUL dropped).
pub fn split_cmdline(raw: &[u8]) -> Vec<String> {
    let end = raw.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    if end == 0 {
        return Vec::new();
    }
    raw[..end]
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// True for a claudemesh daemon's command line: `claudemeshd …` (any subcommand: only a daemon
/// writes `daemon.pid`), or the TypeScript CLI with `daemon` after it (`claudemesh daemon up`,
/// `node …/claudemesh/…/cli.js daemon up --foreground`). An empty command line (a kernel
/// thread, a zombie) is not a daemon.
pub fn is_daemon_command(args: &[String]) -> bool {
    let Some(first) = args.first() else {
        return false;
    };
    if basename(first) == "claudemeshd" {
        return true;
    }
    args.iter()
        .position(|a| a.contains("claudemesh"))
        .is_some_and(|i| args[i + 1..].iter().any(|a| a == "daemon"))
}

fn basename(arg: &str) -> &str {
    arg.rsplit('/').next().unwrap_or(arg)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn claudemeshd_and_the_ts_daemon_are_daemons() {
        for cmd in [
            &["claudemeshd", "up"][..],
            &["/usr/local/bin/claudemeshd", "up", "--tcp-port", "0"],
            &["claudemesh", "daemon", "up", "--foreground"],
            &[
                "/usr/bin/node",
                "/home/u/.npm/lib/node_modules/claudemesh-cli/dist/entrypoints/cli.js",
                "daemon",
                "up",
                "--foreground",
            ],
            &["bun", "--smol", "/opt/claudemesh/cli.js", "daemon", "up"],
        ] {
            assert!(is_daemon_command(&args(cmd)), "{cmd:?}");
        }
    }

    #[test]
    fn other_processes_are_not_daemons() {
        for cmd in [
            &[][..],
            &[""],
            &["/sbin/init", "splash"],
            &["/process_api", "--firecracker-init"],
            &["claudemesh", "send", "bob", "hi"],
            &["node", "/srv/app.js", "daemon"],
            &["daemon", "claudemesh"],
            &["/usr/bin/claudemeshd-old", "up"],
            &["vim", "claudemeshd.rs"],
        ] {
            assert!(!is_daemon_command(&args(cmd)), "{cmd:?}");
        }
    }

    #[test]
    fn cmdline_is_split_on_nul_without_the_trailing_one() {
        assert_eq!(
            split_cmdline(b"claudemeshd\0up\0--tcp-port\0\0"),
            args(&["claudemeshd", "up", "--tcp-port"])
        );
        assert_eq!(split_cmdline(b""), Vec::<String>::new());
        assert_eq!(split_cmdline(b"a\0\0b\0"), args(&["a", "", "b"]));
    }

    #[test]
    fn pid_owner_reads_the_command_line_under_proc() {
        let root = tempfile::tempdir().unwrap();
        let me = std::process::id();
        let dir = root.path().join(me.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cmdline"), b"/sbin/init\0splash\0").unwrap();
        assert_eq!(
            pid_owner_in(root.path(), me),
            PidOwner::Other {
                name: "init".into()
            }
        );
        std::fs::write(dir.join("cmdline"), b"/opt/bin/claudemeshd\0up\0").unwrap();
        assert_eq!(pid_owner_in(root.path(), me), PidOwner::Daemon);
        // A live pid that the procfs root does not list: it exited between the checks.
        assert_eq!(pid_owner_in(root.path(), 1), PidOwner::Dead);
        assert_eq!(pid_owner_in(root.path(), u32::MAX), PidOwner::Dead);
    }

    #[test]
    fn pid_1_here_is_not_a_claudemesh_daemon() {
        // The test runner's pid 1 (init, a container's entry point) is never ours.
        assert!(
            matches!(pid_owner(1), PidOwner::Other { .. }),
            "{:?}",
            pid_owner(1)
        );
    }
}
