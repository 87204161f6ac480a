//! Late acks (issue 8): an `ack` that arrives after its timeout credits a row that has not
//! been sent again, and is counted when the row was. The broker is frozen (SIGSTOP) to make
//! its ack late, against the head profile.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;
use crate::head::{counter, head_world, signal};

/// The outbox row of `client_message_id` on `d`.
fn row(d: &Daemon, client_message_id: &str) -> Value {
    d.get("/v1/outbox?limit=500").expect("outbox").json()["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["client_message_id"] == client_message_id)
        .cloned()
        .unwrap_or(Value::Null)
}

#[test]
fn a_late_ack_turns_the_row_done_without_a_second_send() {
    // The broker is frozen while alice's send waits for its ack: the ack times out (1 s) and,
    // with one attempt allowed, the row is not sent again. The broker resumes and acks late.
    let w = head_world();
    let late_env = [
        ("CLAUDEMESH_BROKER_ACK_TIMEOUT_MS", "1000"),
        ("CLAUDEMESH_OUTBOX_MAX_ATTEMPTS", "1"),
    ];
    let alice = Daemon::start(&w.config_dir("alice"), &late_env);
    let bob = Daemon::start(&w.config_dir("bob"), &[]);
    let broker_pid = w.broker.child.id();
    signal(broker_pid, libc::SIGSTOP);
    let r = alice.post(
        "/v1/send",
        &json!({"to": w.pubkey("bob"), "message": "late", "client_message_id": "late-1"}),
    );
    assert_eq!(r.status, 202);
    let timed_out = wait_until(Duration::from_secs(10), || {
        let r = row(&alice, "late-1");
        r["attempts"] == 1 && r["status"] != "inflight"
    });
    signal(broker_pid, libc::SIGCONT);
    assert!(timed_out, "{}", alice.log());
    let done = wait_until(Duration::from_secs(10), || {
        row(&alice, "late-1")["status"] == "done"
    });
    let r = row(&alice, "late-1");
    assert!(done, "row after the late ack: {r}\n{}", alice.log());
    assert!(r["broker_message_id"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    assert_eq!(counter(&alice, "late_acks_credited"), 1);
    assert_eq!(counter(&alice, "late_acks_after_resend"), 0);
    assert!(wait_until(Duration::from_secs(10), || bob.inbox_bodies() == ["late"]));
    assert_eq!(r["attempts"], 1, "sent once");
}

#[test]
fn a_late_ack_after_the_row_was_sent_again_is_counted_and_the_copy_is_harmless() {
    // Frozen broker, 3 s ack timeout: the row times out, is sent again (still unanswered),
    // then the broker resumes and answers both sends. The first ack settles the row, the
    // second is the trace of the double send; bob stores the message once.
    let w = head_world();
    let alice = Daemon::start(&w.config_dir("alice"), &[]);
    let bob = Daemon::start(&w.config_dir("bob"), &[]);
    let broker_pid = w.broker.child.id();
    signal(broker_pid, libc::SIGSTOP);
    let r = alice.post(
        "/v1/send",
        &json!({"to": w.pubkey("bob"), "message": "twice", "client_message_id": "twice-1"}),
    );
    assert_eq!(r.status, 202);
    let resent = wait_until(Duration::from_secs(15), || {
        let r = row(&alice, "twice-1");
        r["attempts"] == 1 && r["status"] == "inflight"
    });
    signal(broker_pid, libc::SIGCONT);
    assert!(resent, "{}", alice.log());
    assert!(wait_until(Duration::from_secs(10), || row(
        &alice, "twice-1"
    )["status"]
        == "done"));
    assert!(wait_until(Duration::from_secs(10), || counter(
        &alice,
        "late_acks_after_resend"
    ) == 1));
    assert_eq!(counter(&alice, "late_acks_credited"), 0);
    assert!(wait_until(Duration::from_secs(10), || bob.inbox_bodies() == ["twice"]));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        bob.inbox_bodies(),
        ["twice"],
        "the second copy is deduplicated"
    );
}
