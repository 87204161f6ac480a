//! Against the dev broker's head profile (the current claudemesh broker, BROKER-PROTOCOL §9):
//! a restarted daemon keeps one presence (stable session id) and gets the DMs sent while it was
//! away within the redelivery nudge's bound; redelivered pushes are harmless; late acks credit
//! their row. Short broker timings (claim 2 s, sweep 1 s) and a 4 s nudge keep it in seconds.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::*;

/// The head profile with a claim of `claim_ms`, a 1 s sweep and a lease long enough to
/// outlive every restart here.
fn head_world_with_claim(claim_ms: &str) -> World {
    World::new(
        "alice,bob",
        &[
            "--profile",
            "head",
            "--no-rate-limit",
            "--claim-ms",
            claim_ms,
            "--sweep-ms",
            "1000",
            "--grace-ms",
            "60000",
        ],
    )
}

/// The timings: claim 2 s, sweep 1 s.
pub(crate) fn head_world() -> World {
    head_world_with_claim("2000")
}

/// The bound: every DM in the inbox within 10 s of the restart.
const BOUND: Duration = Duration::from_secs(10);

fn nudge(ms: &str) -> [(&'static str, String); 1] {
    [("CLAUDEMESH_BROKER_REDELIVERY_NUDGE_MS", ms.to_string())]
}

fn start(config: &Path, env: &[(&'static str, String)]) -> Daemon {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Daemon::start(config, &env)
}

/// A counter of `/v1/metrics` (`claudemeshd_<name>_total`).
pub(crate) fn counter(d: &Daemon, name: &str) -> u64 {
    let text = d.get("/v1/metrics").expect("metrics").body;
    let prefix = format!("claudemeshd_{name}_total ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in metrics"))
}

/// Entries of alice's `/v1/peers` that are a presence of `member`.
fn presences_of(d: &Daemon, member: &str) -> usize {
    let r = d.get("/v1/peers").expect("peers");
    r.json()["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["memberPubkey"] == member || p["pubkey"] == member)
        .count()
}

/// Sends `n` DMs to `to` (a full pubkey) and waits until the broker acked every one
/// (`done`): from then on they sit in the broker's queue, claimed by whatever presence it
/// pushed them to.
fn send_and_wait_done(alice: &Daemon, to: &str, tag: &str, n: usize) -> Vec<String> {
    let bodies: Vec<String> = (0..n).map(|i| format!("{tag}-{i}")).collect();
    for b in &bodies {
        let r = alice.post("/v1/send", &json!({"to": to, "message": b}));
        assert_eq!(r.status, 202, "{}", r.body);
    }
    let done = wait_until(Duration::from_secs(15), || {
        alice
            .get("/v1/outbox?status=done&limit=500")
            .expect("outbox")
            .json()["items"]
            .as_array()
            .is_some_and(|items| items.len() >= n)
    });
    assert!(done, "the broker did not ack every DM: {}", alice.log());
    bodies
}

/// Waits (bounded) until `d`'s inbox holds every one of `want`; returns what it holds then.
fn inbox_within(d: &Daemon, want: &[String], bound: Duration, from: Instant) -> Vec<String> {
    let left = bound.saturating_sub(from.elapsed());
    wait_until(left, || {
        let got = d.inbox_bodies();
        want.iter().all(|w| got.contains(w))
    });
    d.inbox_bodies()
}

fn assert_each_once(got: &[String], want: &[String]) {
    let mut sorted = got.to_vec();
    sorted.sort();
    let mut expected = want.to_vec();
    expected.sort();
    assert_eq!(sorted, expected, "every DM exactly once");
}

/// `message` events in `d`'s journal, replayed from the start over SSE.
fn message_events(d: &Daemon) -> usize {
    events(d, "message")
}

/// Events of `kind` in `d`'s journal, replayed from the start over SSE.
fn events(d: &Daemon, kind: &str) -> usize {
    let mut s = UnixStream::connect(d.socket()).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(1500)))
        .expect("timeout");
    write!(
        s,
        "GET /v1/events?kinds={kind} HTTP/1.1\r\nHost: localhost\r\nLast-Event-ID: 0\r\n\r\n"
    )
    .expect("write");
    let mut r = BufReader::new(s);
    let mut n = 0;
    let mut line = String::new();
    // The replay arrives at once; the read timeout ends the stream.
    for _ in 0..10_000 {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line.trim_end().strip_prefix("event: ") == Some(kind) => n += 1,
            Ok(_) => {}
        }
    }
    n
}

/// The scenario of issue 8: bob goes away (`stop`), 5 DMs are sent to him while he is down,
/// he is restarted at once. Returns (bob, the DMs, when bob was restarted).
fn bob_away_and_back(
    w: &World,
    nudge_ms: &str,
    stop: impl FnOnce(&mut Daemon),
) -> (Daemon, Daemon, Vec<String>, Instant) {
    let env = nudge(nudge_ms);
    let alice = start(&w.config_dir("alice"), &env);
    let mut bob = start(&w.config_dir("bob"), &env);
    let bob_key = w.pubkey("bob");
    assert!(wait_until(Duration::from_secs(10), || presences_of(
        &alice, &bob_key
    ) == 1));
    stop(&mut bob);
    let dms = send_and_wait_done(&alice, &bob_key, "while-down", 5);
    let restarted = Instant::now();
    let bob = start(&w.config_dir("bob"), &env);
    (alice, bob, dms, restarted)
}

fn kill9(d: &mut Daemon) {
    d.kill9();
}

fn graceful(d: &mut Daemon) {
    assert_eq!(d.stop(), Some(0));
}

fn check_delivered_within_bound(stop: impl FnOnce(&mut Daemon)) {
    let w = head_world();
    let (alice, bob, dms, restarted) = bob_away_and_back(&w, "4000", stop);
    let got = inbox_within(&bob, &dms, BOUND, restarted);
    eprintln!(
        "{} of 5 DMs in bob's inbox {:?} after the restart",
        got.len(),
        restarted.elapsed()
    );
    assert_each_once(&got, &dms);
    // One presence: the restart and the nudge reattached to the leased one (stable session
    // id) silently: alice saw bob join once, when he first came, and never leave.
    assert_eq!(presences_of(&alice, &w.pubkey("bob")), 1);
    assert_eq!(events(&alice, "peer_join"), 1);
    assert_eq!(events(&alice, "peer_leave"), 0);
    assert_eq!(counter(&bob, "redelivery_nudges"), 1, "{}", bob.log());
    assert_eq!(message_events(&bob), 5, "one SSE event per DM");
    let health = bob.get("/v1/health").expect("health").json();
    let sid = health["meshes"][0]["session_id"]
        .as_str()
        .expect("session_id");
    let file = std::fs::read_to_string(bob.daemon_dir.join("session-id")).expect("session-id");
    assert_eq!(file.trim(), sid);
    assert_eq!(health["brokers"], json!({"dev-mesh": "open"}));
}

#[test]
fn a_killed_daemon_restarted_at_once_gets_every_dm_sent_meanwhile_within_the_nudge_bound() {
    check_delivered_within_bound(kill9);
}

#[test]
fn a_gracefully_restarted_daemon_gets_every_dm_sent_meanwhile_within_the_nudge_bound() {
    check_delivered_within_bound(graceful);
}

#[test]
fn without_the_nudge_the_dms_claimed_by_the_dead_socket_stay_stuck() {
    // The control of the two tests above: the same scenario with the nudge out of reach shows
    // the head broker's gap, so those tests cannot pass by luck. (A 6 s claim instead of 2 s,
    // so that a restart slowed down by a loaded machine cannot outlast the claims and drain
    // them at its own hello.)
    let w = head_world_with_claim("6000");
    let (alice, bob, dms, restarted) = bob_away_and_back(&w, "600000", kill9);
    let got = inbox_within(&bob, &dms, BOUND, restarted);
    assert!(
        got.len() < dms.len(),
        "all {} DMs arrived without the nudge: the scenario shows no gap",
        dms.len()
    );
    assert_eq!(counter(&bob, "redelivery_nudges"), 0);
    assert_eq!(presences_of(&alice, &w.pubkey("bob")), 1);
}

#[test]
fn a_seed_broker_is_never_nudged() {
    let w = World::new("alice,bob", &["--no-rate-limit"]);
    let env = nudge("500");
    let alice = start(&w.config_dir("alice"), &env);
    let mut bob = start(&w.config_dir("bob"), &env);
    bob.kill9();
    let bob = start(&w.config_dir("bob"), &env);
    let r = alice.post("/v1/send", &json!({"to": w.pubkey("bob"), "message": "hi"}));
    assert_eq!(r.status, 202);
    assert!(wait_until(Duration::from_secs(10), || bob.inbox_bodies() == ["hi"]));
    // Well past the nudge delay, no reattach happened.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(counter(&bob, "redelivery_nudges"), 0, "{}", bob.log());
    assert_eq!(counter(&bob, "reconnects"), 0);
}

pub(crate) fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: signalling a child process this test started.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

#[test]
fn a_receiver_killed_after_the_push_but_before_its_ack_gets_the_message_exactly_once() {
    let w = head_world();
    let env = nudge("4000");
    let alice = start(&w.config_dir("alice"), &env);
    let mut bob = start(&w.config_dir("bob"), &env);
    let bob_pid = bob.child.as_ref().expect("bob").id();
    // Bob's daemon is frozen: the broker's push lands in its socket buffer, unread, unacked.
    signal(bob_pid, libc::SIGSTOP);
    let dms = send_and_wait_done(&alice, &w.pubkey("bob"), "frozen", 1);
    bob.kill9();
    let restarted = Instant::now();
    let bob = start(&w.config_dir("bob"), &env);
    let got = inbox_within(&bob, &dms, BOUND, restarted);
    assert_each_once(&got, &dms);
    // Well past one more claim + sweep: no second copy.
    std::thread::sleep(Duration::from_secs(4));
    assert_each_once(&bob.inbox_bodies(), &dms);
    assert_eq!(message_events(&bob), 1);
}

#[test]
fn last_error_is_cleared_when_the_link_opens_again() {
    let mut w = World::new("alice,bob", &["--no-rate-limit"]);
    let alice = Daemon::start(&w.config_dir("alice"), &[]);
    let before = alice.get("/v1/health").expect("health").json();
    w.restart_broker(&["--no-rate-limit"]);
    // The link drops (1001 from the stopping broker) and opens again on the new broker.
    let reopened = wait_until(Duration::from_secs(20), || {
        let h = alice.get("/v1/health").expect("health").json();
        h["meshes"][0]["broker_status"] == "open"
            && h["meshes"][0]["connected_since"] != before["meshes"][0]["connected_since"]
    });
    assert!(reopened, "{}", alice.log());
    let h = alice.get("/v1/health").expect("health").json();
    assert_eq!(h["meshes"][0]["last_error"], Value::Null, "{h}");
    assert!(
        alice.log().contains("broker link lost"),
        "the link did drop"
    );
}

/// `claudemeshd status --json` for the daemon of `config`.
fn status_json(config: &Path) -> Value {
    let o = std::process::Command::new(BIN)
        .args(["status", "--json"])
        .env("CLAUDEMESH_CONFIG_DIR", config)
        .env_remove("CLAUDEMESH_DAEMON_DIR")
        .output()
        .expect("status");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("status --json is JSON")
}

#[test]
fn the_session_id_is_created_once_and_kept_across_restarts() {
    let w = World::new("alice,bob", &["--no-rate-limit"]);
    let config = w.config_dir("bob");
    let mut bob = Daemon::start(&config, &[]);
    let first = status_json(&config)["meshes"][0]["session_id"]
        .as_str()
        .expect("session_id")
        .to_string();
    let hex = first.strip_prefix("daemon-").expect("daemon- prefix");
    assert!(
        hex.len() == 16
            && hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    let file = bob.daemon_dir.join("session-id");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file)
        .expect("session-id")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(bob.stop(), Some(0));
    let mut bob = Daemon::start(&config, &[]);
    assert_eq!(
        status_json(&config)["meshes"][0]["session_id"],
        first.as_str()
    );
    bob.kill9();
    let _bob = Daemon::start(&config, &[]);
    assert_eq!(
        status_json(&config)["meshes"][0]["session_id"],
        first.as_str()
    );
    assert_eq!(std::fs::read_to_string(&file).expect("read").trim(), first);
}
