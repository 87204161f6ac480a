//! Reads off the writers (SPEC §4, §8 "Cost"): an inbox page, outbox listing and health are
//! served by read-only connections, so they answer while both database owners are stuck
//! behind a write lock another process holds.

use std::thread;
use std::time::Duration;

use serde_json::json;

use crate::cli::NO_RATE;
use crate::harness::*;

#[test]
fn reads_answer_while_both_writers_wait_on_a_held_write_lock() {
    let w = World::new("alice,bob", &NO_RATE);
    let alice = Daemon::start(&w.config_dir("alice"), &[]);
    let bob_key = w.pubkey("bob");
    let sent = alice.post(
        "/v1/send",
        &json!({"to": bob_key, "message": "before", "client_message_id": "r-0"}),
    );
    assert_eq!(sent.status, 202, "{}", sent.body);

    // Another process holds both write locks: each owner's next write waits for it (up to its
    // 5 s busy timeout), and everything queued behind that write waits too.
    let dir = alice.daemon_dir.clone();
    let mut inbox_lock = rusqlite::Connection::open(dir.join("inbox.db")).expect("inbox.db");
    let mut outbox_lock = rusqlite::Connection::open(dir.join("outbox.db")).expect("outbox.db");
    let t1 = inbox_lock
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .expect("lock inbox");
    let t2 = outbox_lock
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .expect("lock outbox");

    let sock = alice.socket();
    let (s1, s2) = (sock.clone(), sock.clone());
    let seen = thread::spawn(move || {
        claudemeshd::client::request(
            &claudemeshd::client::Endpoint::Socket(&s1),
            "POST",
            "/v1/inbox/seen",
            Some(r#"{"ids":[1]}"#),
            Duration::from_secs(30),
        )
        .map(|r| r.status)
    });
    let send = thread::spawn(move || {
        let body = json!({"to": "*", "message": "blocked", "client_message_id": "r-1"});
        claudemeshd::client::request(
            &claudemeshd::client::Endpoint::Socket(&s2),
            "POST",
            "/v1/send",
            Some(&body.to_string()),
            Duration::from_secs(30),
        )
        .map(|r| r.status)
    });
    // Let both writes reach their owners (if they have not yet, the reads below pass
    // trivially; they cannot fail because of it).
    thread::sleep(Duration::from_millis(500));

    let page = alice.get("/v1/inbox?limit=10").expect("inbox page");
    let page_done_first = !seen.is_finished();
    let health = alice.get("/v1/health").expect("health");
    let health_done_first = !send.is_finished();
    let listing = alice.get("/v1/outbox?limit=10").expect("outbox list");
    let listing_done_first = !send.is_finished();
    drop(t1);
    drop(t2);
    let seen = seen.join().expect("seen thread");
    let send = send.join().expect("send thread");

    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page_done_first,
        "the inbox page waited for the inbox writer"
    );
    assert_eq!(health.status, 200, "{}", health.body);
    let outbox = &health.json()["outbox"];
    let open = outbox["pending"].as_i64().unwrap_or(0) + outbox["inflight"].as_i64().unwrap_or(0);
    assert_eq!(open, 1, "{}", health.body);
    assert!(health_done_first, "health waited for the outbox writer");
    assert_eq!(listing.status, 200, "{}", listing.body);
    assert_eq!(listing.json()["items"][0]["client_message_id"], "r-0");
    assert!(
        listing_done_first,
        "the outbox listing waited for the outbox writer"
    );
    // The blocked writes ended one way or the other (200/202 or 503 storage_busy).
    assert!(seen.is_ok() && send.is_ok(), "{seen:?} {send:?}");
}
