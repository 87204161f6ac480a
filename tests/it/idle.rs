//! Timers armed only when there is work (issue 15): with no periodic sweep or tick left, an
//! ack still times out on time, and the backoff that follows still expires on time and sends
//! the row again without any other event. Short configured timings; the broker is frozen
//! (SIGSTOP) so that no ack ever comes. The TCP gate drops its HTTP service when idle and
//! builds it again for the next connection.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::*;
use crate::head::signal;

/// The outbox row of `client_message_id` on `d` (Null while not listed).
fn row(d: &Daemon, client_message_id: &str) -> Value {
    d.get("/v1/outbox?limit=50").expect("outbox").json()["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["client_message_id"] == client_message_id)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Polls the row every 10 ms until `cond` holds; when it did (None: not within `timeout`).
fn seen(d: &Daemon, id: &str, timeout: Duration, cond: impl Fn(&Value) -> bool) -> Option<Instant> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if cond(&row(d, id)) {
            return Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

#[test]
fn an_ack_times_out_on_time_and_the_backoff_expiry_sends_the_row_again() {
    let w = World::new("alice,bob", &["--no-rate-limit"]);
    let alice = Daemon::start(
        &w.config_dir("alice"),
        &[
            ("CLAUDEMESH_BROKER_ACK_TIMEOUT_MS", "600"),
            ("CLAUDEMESH_OUTBOX_MAX_ATTEMPTS", "3"),
        ],
    );
    let broker_pid = w.broker.child.id();
    signal(broker_pid, libc::SIGSTOP);
    let sent = Instant::now();
    let r = alice.post(
        "/v1/send",
        &json!({"to": "*", "message": "never acked", "client_message_id": "idle-1"}),
    );
    assert_eq!(r.status, 202);
    // First attempt: the ack timer fires at the deadline (600 ms), no sweep needed.
    // (`attempts` counts the timeout when it is recorded; a backoff near zero may already
    // have the row inflight again when it is seen.)
    let timed_out = seen(&alice, "idle-1", Duration::from_secs(10), |r| {
        r["attempts"].as_i64().unwrap_or(0) >= 1
    });
    // Its counted backoff (full jitter, under 1 s for a first retry) ends and the row is
    // claimed again: only the drainer's due timer can notice.
    let resent = timed_out.and_then(|_| {
        seen(&alice, "idle-1", Duration::from_secs(10), |r| {
            let attempts = r["attempts"].as_i64().unwrap_or(0);
            attempts >= 2 || (attempts == 1 && r["status"] == "inflight")
        })
    });
    let dead = seen(&alice, "idle-1", Duration::from_secs(20), |r| {
        r["status"] == "dead"
    });
    signal(broker_pid, libc::SIGCONT);
    let timed_out = timed_out.expect("the ack never timed out");
    let first = timed_out - sent;
    assert!(
        first >= Duration::from_millis(550) && first < Duration::from_millis(2_500),
        "first ack timeout after {first:?}\n{}",
        alice.log()
    );
    let resent = resent.expect("the backoff never expired");
    let backoff = resent - timed_out;
    assert!(
        backoff < Duration::from_millis(2_000),
        "sent again {backoff:?} after the timeout (backoff under 1 s)\n{}",
        alice.log()
    );
    // Three timeouts of 600 ms and two backoffs (under 1 s and 2 s): dead within seconds,
    // and never before the three deadlines could have passed.
    let dead = dead.expect("the row never died");
    let total = dead - sent;
    assert!(
        total >= Duration::from_millis(1_750) && total < Duration::from_secs(10),
        "dead after {total:?}\n{}",
        alice.log()
    );
    let r = row(&alice, "idle-1");
    assert_eq!(r["attempts"], 3, "{r}");
    assert_eq!(r["last_error"], "ack_timeout", "{r}");
}

#[test]
fn the_tcp_service_dropped_when_idle_is_built_again_for_the_next_request() {
    let w = World::new("alice", &["--no-rate-limit"]);
    let d = Daemon::start(
        &w.config_dir("alice"),
        &[("RUST_LOG", "info,claudemesh_actors::ipc::gate=debug")],
    );
    let bearer = format!("Bearer {}", d.token());
    let health = || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", d.tcp_port())).expect("connect");
        raw_request(
            &mut s,
            "GET",
            "/v1/health",
            &[("Authorization", &bearer)],
            "",
        )
    };
    assert_eq!(health().status, 200);
    // Idle for 10 s (checked on a 2 s tick): the service and its date timer go.
    assert!(
        wait_until(Duration::from_secs(20), || d
            .log()
            .contains("TCP service dropped")),
        "{}",
        d.log()
    );
    let again = health();
    assert_eq!(again.status, 200, "{}", again.body);
    assert!(d.log().contains("TCP service built again"), "{}", d.log());
}
