//! Startup papercuts: stale pid files (SPEC §3 step 1) and the listener log lines (issue 14).

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::cli::{cli, NO_RATE};
use crate::harness::*;

fn write_pid_file(config_dir: &Path, pid: u32) {
    let daemon_dir = config_dir.join("daemon");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&daemon_dir)
        .expect("daemon dir");
    std::fs::write(daemon_dir.join("daemon.pid"), format!("{pid}\n")).expect("pid file");
}

#[test]
fn stale_pid_file_naming_pid_1_does_not_block_up() {
    let w = World::new("alice,bob", &NO_RATE);
    let a = w.config_dir("alice");
    write_pid_file(&a, 1);
    let mut alice = Daemon::spawn(&a, &[], &[]);
    alice.wait_open();
    let log = alice.log();
    assert!(
        log.contains("daemon.pid: pid 1 is a live process that is not a claudemesh daemon"),
        "{log}"
    );
    let pid = alice.child.as_ref().map(|c| c.id()).expect("child");
    let written = std::fs::read_to_string(alice.daemon_dir.join("daemon.pid")).expect("pid");
    assert_eq!(written.trim(), pid.to_string());
    assert_eq!(alice.stop(), Some(0));
}

#[test]
fn pid_file_naming_a_dead_process_is_stale_too() {
    let w = World::new("alice", &NO_RATE);
    let a = w.config_dir("alice");
    let mut gone = Command::new("true").spawn().expect("spawn true");
    let dead = gone.id();
    gone.wait().expect("wait");
    write_pid_file(&a, dead);
    let mut alice = Daemon::spawn(&a, &[], &[]);
    alice.wait_open();
    assert!(
        alice.log().contains(&format!("pid {dead} is not running")),
        "{}",
        alice.log()
    );
    assert_eq!(alice.stop(), Some(0));
}

#[test]
fn pid_file_naming_a_live_claudemeshd_refuses_up() {
    let w = World::new("alice", &NO_RATE);
    let a = w.config_dir("alice");
    // The dev broker is a live `claudemeshd` process: a daemon as far as the pid file can tell.
    let broker_pid = w.broker.child.id();
    write_pid_file(&a, broker_pid);
    let mut alice = Daemon::spawn(&a, &[], &[]);
    assert_eq!(alice.wait_exit(Duration::from_secs(20)), Some(1));
    assert!(
        alice
            .log()
            .contains(&format!("already running (pid {broker_pid})")),
        "{}",
        alice.log()
    );
    // Refused before anything was removed.
    let kept = std::fs::read_to_string(a.join("daemon").join("daemon.pid")).expect("pid");
    assert_eq!(kept.trim(), broker_pid.to_string());
}

#[test]
fn down_never_signals_a_process_that_is_not_a_daemon() {
    let w = World::new("alice", &NO_RATE);
    let a = w.config_dir("alice");
    let mut stranger = Command::new("sleep")
        .arg("60")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn sleep");
    write_pid_file(&a, stranger.id());
    let down = cli(&a, &["down"]);
    down.expect(1);
    assert!(
        down.stderr.contains("not a claudemesh daemon"),
        "{}",
        down.stderr
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        matches!(stranger.try_wait(), Ok(None)),
        "down signalled an unrelated process"
    );
    let _ = stranger.kill();
    let _ = stranger.wait();
}

#[test]
fn startup_log_names_each_listener_by_its_real_address() {
    let w = World::new("alice", &NO_RATE);
    let mut alice = Daemon::start(&w.config_dir("alice"), &[]);
    let port = alice.tcp_port();
    let log = alice.log();
    assert!(
        !log.contains(".~daemon"),
        "temporary bind name in the log: {log}"
    );
    let socket_line = format!("listening on unix socket {}", alice.socket().display());
    assert_eq!(log.matches(&socket_line).count(), 1, "{log}");
    let tcp_line = format!("listening on tcp 127.0.0.1:{port}");
    assert_eq!(log.matches(&tcp_line).count(), 1, "{log}");
    assert_eq!(log.matches("listening on").count(), 2, "{log}");
    assert_eq!(alice.stop(), Some(0));
}

#[test]
fn a_daemon_that_dies_while_starting_is_reported_at_once() {
    let w = World::new("alice", &NO_RATE);
    let a = w.config_dir("alice");
    // An explicit --mesh that is not joined: exit 2 right away.
    let d = Daemon::spawn(&a, &[], &["--mesh", "nope"]);
    let started = std::time::Instant::now();
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| d.wait_open()));
    let message = waited
        .err()
        .and_then(|p| p.downcast_ref::<String>().cloned())
        .expect("wait_open must fail");
    assert!(message.contains("exited while starting"), "{message}");
    assert!(message.contains("nope"), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}
