//! The cold-path send, `up --detach` / `down`, and `accept-host`, as real processes.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use super::{cli, cli_env, NO_RATE};
use crate::harness::*;

#[test]
fn cold_path_send_reaches_a_daemon_peer_through_the_broker() {
    let w = World::new("alice,bob", &["--no-rate-limit", "--dedupe"]);
    let a = w.config_dir("alice");
    let bob = Daemon::start(&w.config_dir("bob"), &[]);

    let r = cli(&a, &["send", "bob", "hi", "--idempotency-key", "cold-1"]);
    r.expect(0);
    assert!(r.stdout.starts_with("sent "), "{}", r.stdout);
    assert!(r.stdout.contains("client id cold-1"), "{}", r.stdout);
    assert!(
        wait_until(Duration::from_secs(10), || bob.inbox_bodies() == ["hi"]),
        "{:?}",
        bob.inbox_bodies()
    );
    let item = bob.get("/v1/inbox").expect("inbox").json()["items"][0].clone();
    assert_eq!(item["kind"], "dm", "the DM was sealed for bob");
    assert_eq!(item["sender_pubkey"], w.pubkey("alice"));

    let j = cli(
        &a,
        &["send", "bob", "hi", "--idempotency-key", "cold-1", "--json"],
    );
    j.expect(0);
    let v = j.json();
    assert_eq!(
        (v["via"].clone(), v["duplicate"].clone()),
        (json!("cold_path"), json!(true))
    );
    assert_eq!(v["target"], w.pubkey("bob"));
    assert!(v["broker_message_id"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));

    let broadcast = cli(&a, &["send", "*", "to everyone", "--json"]);
    broadcast.expect(0);
    assert!(wait_until(Duration::from_secs(10), || bob
        .inbox_bodies()
        .contains(&"to everyone".to_string())));

    let unknown = cli(&a, &["send", "nobody", "hi"]);
    unknown.expect(2);
    assert!(
        unknown.one_line_error().contains("unknown peer"),
        "{}",
        unknown.stderr
    );
    let disabled = cli(&a, &["send", "bob", "hi again", "--no-cold-path"]);
    disabled.expect(1);
    disabled.one_line_error();
    let daemon_dir = a.join("daemon");
    for f in ["outbox.db", "inbox.db", "daemon.sock", "daemon.pid"] {
        assert!(!daemon_dir.join(f).exists(), "cold path wrote {f}");
    }
}

/// Kills a detached daemon (not our child) by its pid file when the test ends.
struct PidGuard(PathBuf);

impl Drop for PidGuard {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            // SAFETY: signalling the detached daemon this test started.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

#[test]
fn detach_returns_once_healthy_and_logs_to_the_daemon_log() {
    let w = World::new("alice", &NO_RATE);
    let a = w.config_dir("alice");
    let daemon_dir = a.join("daemon");
    let _guard = PidGuard(daemon_dir.join("daemon.pid"));

    let bad = cli_env(&a, &["up", "--detach", "--mesh", "nope"], &FAST_ENV);
    bad.expect(2);
    assert!(bad.one_line_error().contains("nope"), "{}", bad.stderr);

    let up = cli_env(
        &a,
        &["up", "--detach", "--tcp-port", "0", "--json"],
        &FAST_ENV,
    );
    up.expect(0);
    let v = up.json();
    let pid = v["pid"].as_u64().expect("pid");
    assert_eq!(
        v["log"],
        daemon_dir.join("daemon.log").display().to_string()
    );
    let s = cli(&a, &["status", "--json"]);
    s.expect(0);
    assert_eq!(s.json()["pid"].as_u64(), Some(pid));
    let log = std::fs::read_to_string(daemon_dir.join("daemon.log")).expect("daemon.log");
    assert!(log.contains("daemon_started"), "{log}");

    let twice = cli_env(&a, &["up", "--detach", "--tcp-port", "0"], &FAST_ENV);
    twice.expect(1);
    assert!(
        twice.one_line_error().contains("already running"),
        "{}",
        twice.stderr
    );

    let down = cli(&a, &["down"]);
    down.expect(0);
    assert_eq!(down.stdout.trim(), format!("stopped (pid {pid})"));
    assert!(!daemon_dir.join("daemon.sock").exists());
    let log = std::fs::read_to_string(daemon_dir.join("daemon.log")).expect("daemon.log");
    assert!(log.contains("daemon_shutdown"), "{log}");
    cli(&a, &["down"]).expect(1);
}

#[test]
fn accept_host_rewrites_a_foreign_fingerprint_so_up_starts_again() {
    let w = World::new("alice", &NO_RATE);
    let a = w.config_dir("alice");
    let daemon_dir = a.join("daemon");
    std::fs::create_dir_all(&daemon_dir).unwrap();
    let fp = daemon_dir.join("host_fingerprint.json");
    let foreign = json!({"schema_version": 1, "fingerprint": "00".repeat(32),
        "host_id": "linux:another-machine", "stable_mac": "02:00:00:00:00:01",
        "written_at": "2026-01-01T00:00:00.000Z"});
    std::fs::write(&fp, foreign.to_string()).unwrap();
    let refused = cli_env(&a, &["up", "--tcp-port", "0"], &FAST_ENV);
    refused.expect(4);
    assert!(
        refused.stderr.contains("claudemeshd accept-host"),
        "{}",
        refused.stderr
    );

    let accepted = cli(&a, &["accept-host", "--json"]);
    accepted.expect(0);
    let v = accepted.json();
    assert_eq!(v["previously_matched"], false);
    assert_eq!(v["previous_fingerprint"], "00".repeat(32));
    assert_ne!(v["host_id"], "linux:another-machine");
    let human = cli(&a, &["accept-host"]);
    human.expect(0);
    assert!(
        human.stdout.contains("it already matched this host"),
        "{}",
        human.stdout
    );
    let d = Daemon::start(&a, &[]);
    assert!(d.get("/v1/health").is_ok());
}
