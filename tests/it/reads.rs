//! Reads off the writers (SPEC §4, §8 "Cost"): an inbox page, outbox listing and health are
//! served by read-only connections, so they answer while both database owners are stuck
//! behind a write lock another process holds.

use std::thread;
use std::time::Duration;

use serde_json::json;

use crate::cli::NO_RATE;
use crate::harness::*;

/// POSTs `body` to `path` over `d`'s socket on a thread of its own (a request that may wait
/// on a held write lock); the thread returns the status.
fn post_on_thread(
    d: &Daemon,
    path: &'static str,
    body: String,
) -> thread::JoinHandle<Result<u16, claudemeshd::client::ClientError>> {
    let sock = d.socket();
    thread::spawn(move || {
        claudemeshd::client::request(
            &claudemeshd::client::Endpoint::Socket(&sock),
            "POST",
            path,
            Some(&body),
            Duration::from_secs(30),
        )
        .map(|r| r.status)
    })
}

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

    let seen = post_on_thread(&alice, "/v1/inbox/seen", r#"{"ids":[1]}"#.into());
    let body = json!({"to": "*", "message": "blocked", "client_message_id": "r-1"});
    let send = post_on_thread(&alice, "/v1/send", body.to_string());
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

/// A send's id known to be new skips the read-only lookup and goes to the writer; a repeated
/// one is still answered off the writer: an id accepted before a restart once the start-up
/// scan has loaded the ids in `outbox.db`, one accepted since, and one the daemon minted.
#[test]
fn after_a_restart_a_repeated_id_is_answered_off_the_writer_and_a_new_one_waits_for_it() {
    let w = World::new("alice,bob", &NO_RATE);
    let mut alice = Daemon::start(&w.config_dir("alice"), &[]);
    let body = json!({"to": "*", "message": "kept", "client_message_id": "k-0"});
    assert_eq!(alice.post("/v1/send", &body).status, 202);
    assert_eq!(alice.stop(), Some(0), "{}", alice.log());
    let alice = Daemon::start(&w.config_dir("alice"), &[]);
    assert!(
        wait_until(Duration::from_secs(10), || alice
            .log()
            .contains("message ids loaded")),
        "{}",
        alice.log()
    );
    let since = json!({"to": "*", "message": "since", "client_message_id": "k-2"});
    assert_eq!(alice.post("/v1/send", &since).status, 202);
    let minted = alice.post("/v1/send", &json!({"to": "*", "message": "minted"}));
    assert_eq!(minted.status, 202, "{}", minted.body);
    let minted_id = minted.json()["client_message_id"].clone();
    let minted = json!({"to": "*", "message": "minted", "client_message_id": minted_id});

    let dir = alice.daemon_dir.clone();
    let mut outbox_lock = rusqlite::Connection::open(dir.join("outbox.db")).expect("outbox.db");
    let lock = outbox_lock
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .expect("lock outbox");
    let new_body = json!({"to": "*", "message": "new", "client_message_id": "k-1"});
    let fresh = post_on_thread(&alice, "/v1/send", new_body.to_string());
    let repeat = alice.post("/v1/send", &body);
    let repeat_since = alice.post("/v1/send", &since);
    let repeat_minted = alice.post("/v1/send", &minted);
    // Give the new id time to reach the writer (it waits there up to its 5 s busy timeout).
    thread::sleep(Duration::from_millis(500));
    let fresh_waited = !fresh.is_finished();
    drop(lock);
    let fresh = fresh.join().expect("send thread");

    // Delivered before the restart, or still pending: either answer comes off the writer.
    assert!(
        [200, 202].contains(&repeat.status),
        "{} {}",
        repeat.status,
        repeat.body
    );
    assert_eq!(repeat.json()["client_message_id"], "k-0", "{}", repeat.body);
    assert!(
        [200, 202].contains(&repeat_since.status),
        "{} {}",
        repeat_since.status,
        repeat_since.body
    );
    assert!(
        [200, 202].contains(&repeat_minted.status),
        "{} {}",
        repeat_minted.status,
        repeat_minted.body
    );
    assert!(fresh_waited, "a new id was answered without the writer");
    assert_eq!(fresh.ok(), Some(202));
}
