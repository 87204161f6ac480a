//! End-to-end behaviour of the daemon runtime against the dev broker.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;

const NO_RATE: [&str; 1] = ["--no-rate-limit"];

/// Reads SSE frames from a raw socket stream until `n` events of `kind` arrived.
fn sse_events(
    d: &Daemon,
    query: &str,
    last_id: Option<i64>,
    kind: &str,
    n: usize,
) -> Vec<(i64, Value)> {
    let mut s = UnixStream::connect(d.socket()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let extra = last_id
        .map(|i| format!("Last-Event-ID: {i}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET /v1/events{query} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n"
    )
    .expect("write");
    let mut r = BufReader::new(s);
    let mut out = Vec::new();
    let (mut id, mut ev) = (None, None);
    let mut line = String::new();
    while out.len() < n {
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        let l = line.trim_end();
        if let Some(v) = l.strip_prefix("id: ") {
            id = v.parse().ok();
        } else if let Some(v) = l.strip_prefix("event: ") {
            ev = Some(v.to_string());
        } else if let Some(v) = l.strip_prefix("data: ") {
            if ev.as_deref() == Some(kind) {
                out.push((
                    id.unwrap_or(-1),
                    serde_json::from_str(v).expect("data json"),
                ));
            }
            id = None;
            ev = None;
        }
    }
    out
}

#[test]
fn dm_alice_tobob_arrives_decrypted_in_inbox_and_sse() {
    let w = World::new("alice,bob", &NO_RATE);
    let alice = Daemon::start(&w.config_dir("alice"), &[]);
    let bob = Daemon::start(&w.config_dir("bob"), &[]);
    let sse = std::thread::scope(|s| {
        let h = s.spawn(|| sse_events(&bob, "?kinds=message", None, "message", 1));
        std::thread::sleep(Duration::from_millis(300));
        let r = alice.post(
            "/v1/send",
            &json!({"to": "bob", "message": "hello bob, secretly"}),
        );
        assert_eq!(r.status, 202, "{}", r.body);
        assert_eq!(r.json()["status"], "queued");
        h.join().expect("sse thread")
    });
    assert_eq!(sse.len(), 1);
    let data = &sse[0].1;
    assert_eq!(data["kind"], "message");
    assert_eq!(data["body"], "hello bob, secretly");
    assert_eq!(data["sender_pubkey"], w.pubkey("alice"));
    assert!(wait_until(Duration::from_secs(5), || bob.inbox_bodies()
        == ["hello bob, secretly"]));
    let item = &bob.get("/v1/inbox").expect("inbox").json()["items"][0];
    assert_eq!(item["kind"], "dm");
    assert_eq!(item["decrypt_error"], false);
    // The broker only ever held ciphertext: the plaintext is not in its state files.
    let mut raw = Vec::new();
    for e in std::fs::read_dir(&w.broker.state)
        .expect("state dir")
        .flatten()
    {
        if let Ok(mut f) = std::fs::File::open(e.path()) {
            let _ = f.read_to_end(&mut raw);
        }
    }
    assert!(!raw.is_empty());
    assert!(!String::from_utf8_lossy(&raw).contains("secretly"));
    // The row is done with the broker's message id.
    assert!(wait_until(Duration::from_secs(5), || {
        alice.get("/v1/outbox?status=done").expect("outbox").json()["items"][0]["broker_message_id"]
            .is_string()
    }));
}

#[test]
fn idempotent_send_answers_by_row_state_over_http() {
    let w = World::new("alice,bob", &NO_RATE);
    let alice = Daemon::start(&w.config_dir("alice"), &[]);
    let bob = Daemon::start(&w.config_dir("bob"), &[]);
    let send = json!({"to": "bob", "message": "once", "client_message_id": "k-1"});
    let r = alice.post("/v1/send", &send);
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(wait_until(Duration::from_secs(10), || alice
        .post("/v1/send", &send)
        .status
        == 200));
    let dup = alice.post("/v1/send", &send).json();
    assert_eq!(dup["duplicate"], true);
    assert!(dup["broker_message_id"].is_string());
    let other = alice.post(
        "/v1/send",
        &json!({"to": "bob", "message": "different", "client_message_id": "k-1"}),
    );
    assert_eq!(other.status, 409);
    let v = other.json();
    assert_eq!(v["error"], "idempotency_key_reused");
    assert_eq!(v["conflict"], "outbox_done_fingerprint_mismatch");
    assert_eq!(
        v["daemon_fingerprint_prefix"].as_str().map(str::len),
        Some(16)
    );
    // Same key through the Idempotency-Key header is the same request.
    let r = alice.request_with_headers(
        "POST",
        "/v1/send",
        &[("Idempotency-Key", "k-1")],
        r#"{"to":"bob","message":"once"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(wait_until(Duration::from_secs(5), || bob.inbox_bodies() == ["once"]));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(bob.inbox_bodies(), ["once"], "delivered exactly once");
}

#[test]
fn unknown_peer_name_is_404_and_broadcast_reaches_everyone_else() {
    let w = World::new("alice,bob,carol", &NO_RATE);
    let alice = Daemon::start(&w.config_dir("alice"), &[]);
    let bob = Daemon::start(&w.config_dir("bob"), &[]);
    let carol = Daemon::start(&w.config_dir("carol"), &[]);
    let r = alice.post("/v1/send", &json!({"to": "dave", "message": "x"}));
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (404, json!("unknown_peer"))
    );
    let r = alice.post("/v1/send", &json!({"to": "*", "message": "hi all"}));
    assert_eq!(r.status, 202);
    for d in [&bob, &carol] {
        assert!(
            wait_until(Duration::from_secs(10), || d.inbox_bodies() == ["hi all"]),
            "{}",
            d.log()
        );
    }
    assert!(
        alice.inbox_bodies().is_empty(),
        "the sender never receives its own broadcast"
    );
}

#[test]
fn sends_accepted_while_broker_is_down_are_all_delivered_once_after_restart() {
    let mut w = World::new("alice,bob", &NO_RATE);
    let alice = Daemon::start(&w.config_dir("alice"), &[]);
    let bob = Daemon::start(&w.config_dir("bob"), &[]);
    let bob_key = w.pubkey("bob");
    w.broker.stop();
    for i in 0..200 {
        let r = alice.post(
            "/v1/send",
            &json!({"to": bob_key, "message": format!("m{i}")}),
        );
        assert_eq!(
            r.status, 202,
            "accepts keep working with the broker down: {}",
            r.body
        );
    }
    w.restart_broker(&NO_RATE);
    let ok = wait_until(Duration::from_secs(60), || bob.inbox_bodies().len() >= 200);
    assert!(
        ok,
        "delivered {} of 200\nalice health: {}\nalice pending: {}\nalice: {}\nbob: {}",
        bob.inbox_bodies().len(),
        alice.get("/v1/health").map(|r| r.body).unwrap_or_default(),
        alice
            .get("/v1/outbox?limit=3")
            .map(|r| r.body)
            .unwrap_or_default(),
        alice.log(),
        bob.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    let bodies = bob.inbox_bodies();
    let expected: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
    assert_eq!(bodies, expected, "all delivered once, in order");
}

#[test]
fn kill_9_mid_burst_then_restart_delivers_every_accepted_message_exactly_once() {
    // A row acked by the broker just before the kill is sent again after the restart (at least
    // once); the deduplicating broker answers it `duplicate:true` without delivering it twice.
    let w = World::new("alice,bob", &["--no-rate-limit", "--dedupe"]);
    let mut alice = Daemon::start(&w.config_dir("alice"), &[]);
    let bob = Daemon::start(&w.config_dir("bob"), &[]);
    let bob_key = w.pubkey("bob");
    let mut accepted = Vec::new();
    for i in 0..300 {
        let body = format!("k{i}");
        let r = alice.post(
            "/v1/send",
            &json!({"to": bob_key, "message": body, "client_message_id": body}),
        );
        if r.status == 202 {
            accepted.push(body);
        }
        if i == 150 {
            alice.kill9();
            break;
        }
    }
    assert!(accepted.len() > 100);
    let alice2 = Daemon::start(&w.config_dir("alice"), &[]);
    let ok = wait_until(Duration::from_secs(60), || {
        let got = bob.inbox_bodies();
        accepted.iter().all(|a| got.contains(a))
    });
    assert!(ok, "{}", alice2.log());
    let got = bob.inbox_bodies();
    let mut dedup = got.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), got.len(), "no message twice in bob's inbox");
}

#[test]
fn dm_to_offline_peer_is_delivered_when_it_joins() {
    let w = World::new("alice,bob", &NO_RATE);
    let alice = Daemon::start(&w.config_dir("alice"), &[]);
    let r = alice.post(
        "/v1/send",
        &json!({"to": w.pubkey("bob"), "message": "see you later"}),
    );
    assert_eq!(r.status, 202);
    std::thread::sleep(Duration::from_millis(500));
    // Every status: the row may be in flight for one of its offline retries right now.
    let rows = alice.get("/v1/outbox").expect("outbox").json();
    let row = &rows["items"][0];
    assert!(
        row["status"] == "pending" || row["status"] == "inflight",
        "{rows}"
    );
    assert_eq!(row["attempts"], 0, "offline target does not spend attempts");
    let bob = Daemon::start(&w.config_dir("bob"), &[]);
    assert!(
        wait_until(Duration::from_secs(15), || bob.inbox_bodies()
            == ["see you later"]),
        "{}",
        alice.log()
    );
}

#[test]
fn burst_of_60_through_the_real_rate_limit_ends_with_no_dead_rows() {
    let w = World::new("alice,bob", &[]);
    let alice = Daemon::start(&w.config_dir("alice"), &REAL_RATE);
    let bob = Daemon::start(&w.config_dir("bob"), &REAL_RATE);
    for i in 0..60 {
        let r = alice.post(
            "/v1/send",
            &json!({"to": "bob", "message": format!("r{i}")}),
        );
        assert_eq!(r.status, 202);
    }
    assert!(
        wait_until(Duration::from_secs(90), || bob.inbox_bodies().len() == 60),
        "{}",
        bob.inbox_bodies().len()
    );
    let h = alice.get("/v1/health").expect("health").json();
    assert_eq!(h["outbox"]["dead"], 0);
}

#[test]
fn revoked_member_gets_4002_and_the_daemon_stops_retrying() {
    let w = World::new("alice,bob", &NO_RATE);
    let alice = Daemon::start(&w.config_dir("alice"), &[]);
    let o = std::process::Command::new(BIN)
        .args(["dev-mesh", "revoke", "--state"])
        .arg(&w.broker.state)
        .args(["--member", "alice"])
        .output()
        .expect("revoke");
    assert!(o.status.success());
    let revoked = || {
        alice
            .get("/v1/health")
            .ok()
            .is_some_and(|r| r.json()["meshes"][0]["broker_status"] == "revoked")
    };
    assert!(
        wait_until(Duration::from_secs(10), revoked),
        "{}",
        alice.log()
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert!(revoked());
    let reconnects = alice.get("/v1/metrics").expect("metrics").body;
    assert!(
        reconnects.contains("claudemeshd_broker_reconnects_total{mesh=\"dev-mesh\"} 0"),
        "{reconnects}"
    );
}

#[test]
fn sse_replays_by_id_across_a_daemon_restart() {
    let w = World::new("alice,bob", &NO_RATE);
    let alice = Daemon::start(&w.config_dir("alice"), &[]);
    let mut bob = Daemon::start(&w.config_dir("bob"), &[]);
    for i in 0..3 {
        alice.post(
            "/v1/send",
            &json!({"to": "bob", "message": format!("e{i}")}),
        );
    }
    assert!(wait_until(Duration::from_secs(10), || bob
        .inbox_bodies()
        .len()
        == 3));
    let first = sse_events(&bob, "?kinds=message", Some(0), "message", 3);
    assert_eq!(first.len(), 3);
    let after = first[0].0;
    assert_eq!(bob.stop(), Some(0));
    let bob2 = Daemon::start(&w.config_dir("bob"), &[]);
    let replay = sse_events(&bob2, "?kinds=message", Some(after), "message", 2);
    let bodies: Vec<&str> = replay
        .iter()
        .filter_map(|(_, d)| d["body"].as_str())
        .collect();
    assert_eq!(bodies, ["e1", "e2"]);
    assert!(replay.iter().all(|(id, _)| *id > after));
}

#[test]
fn second_daemon_on_one_daemon_dir_is_refused() {
    let w = World::new("alice,bob", &NO_RATE);
    let _alice = Daemon::start(&w.config_dir("alice"), &[]);
    let mut second = Daemon::spawn(&w.config_dir("alice"), &[], &[]);
    assert_eq!(second.wait_exit(Duration::from_secs(10)), Some(1));
    assert!(
        second.log().contains("already running (pid"),
        "{}",
        second.log()
    );
}

#[test]
fn half_open_broker_is_detected_by_the_watchdog() {
    let w = World::new("alice,bob", &NO_RATE);
    let fast = [
        ("CLAUDEMESH_BROKER_PING_INTERVAL_MS", "200"),
        ("CLAUDEMESH_BROKER_STALE_AFTER_MS", "800"),
    ];
    let alice = Daemon::start(&w.config_dir("alice"), &fast);
    // SIGSTOP freezes the broker: the TCP socket stays open but nothing is read or answered.
    let pid = w.broker.child.id() as libc::pid_t;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let lost = wait_until(Duration::from_secs(10), || {
        alice
            .get("/v1/health")
            .ok()
            .is_some_and(|r| r.json()["meshes"][0]["broker_status"] != "open")
    });
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert!(lost, "{}", alice.log());
    assert!(alice.log().contains("stale"), "{}", alice.log());
    alice.wait_open();
}

#[test]
fn daemon_shuts_down_cleanly_on_sigterm() {
    let w = World::new("alice,bob", &NO_RATE);
    let mut alice = Daemon::start(&w.config_dir("alice"), &[]);
    assert_eq!(alice.stop(), Some(0));
    assert!(!alice.socket().exists());
    assert!(!alice.daemon_dir.join("daemon.pid").exists());
    assert!(alice.log().contains("daemon_shutdown"));
}

#[test]
fn pending_dead_and_aborted_rows_answer_their_idempotency_cells_and_requeue_keeps_the_dm() {
    let w = World::new("alice,bob", &NO_RATE);
    let alice = Daemon::start(
        &w.config_dir("alice"),
        &[("CLAUDEMESH_OUTBOX_MAX_ATTEMPTS", "1")],
    );
    let bob_key = w.pubkey("bob");
    // bob is offline: the DM waits as pending without spending attempts.
    let first = json!({"to": bob_key, "message": "p", "client_message_id": "p-1"});
    assert_eq!(alice.post("/v1/send", &first).status, 202);
    std::thread::sleep(Duration::from_millis(300));
    let again = alice.post("/v1/send", &first);
    // The waiting row is pending, or for a moment inflight while the drainer retries it.
    assert_eq!(again.status, 202);
    let state = again.json()["status"].clone();
    assert!(state == "queued" || state == "inflight", "{state}");
    let other = alice.post(
        "/v1/send",
        &json!({"to": bob_key, "message": "q", "client_message_id": "p-1"}),
    );
    assert_eq!(other.status, 409);
    let conflict = other.json()["conflict"].clone();
    assert!(
        conflict == "outbox_pending_fingerprint_mismatch"
            || conflict == "outbox_inflight_fingerprint_mismatch",
        "{conflict}"
    );

    // A frozen broker never acks: the ack timeout is a counted attempt, and max_attempts=1 kills it.
    let pid = w.broker.child.id() as libc::pid_t;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let doomed = json!({"to": "*", "message": "d", "client_message_id": "d-1"});
    assert_eq!(alice.post("/v1/send", &doomed).status, 202);
    let dead = wait_until(Duration::from_secs(15), || {
        alice.post("/v1/send", &doomed).json()["conflict"] == "outbox_dead_fingerprint_match"
    });
    let r = alice.post("/v1/send", &doomed).json();
    let mismatch = alice.post(
        "/v1/send",
        &json!({"to": "*", "message": "e", "client_message_id": "d-1"}),
    );
    // Resumed only now: the broker then acks the send late, which credits the row `done`
    // (tests/it/head.rs), so the dead cells are checked while it is still frozen.
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert!(dead, "{}", alice.log());
    assert_eq!(r["reason"], "ack_timeout");
    assert_eq!(
        mismatch.json()["conflict"],
        "outbox_dead_fingerprint_mismatch"
    );

    // Requeue the DM under a new id: routing fields are kept (it stays a DM to bob). It is
    // pending, or dead if a retry fell into the frozen window above (max_attempts=1); both
    // may be requeued — wait until it is not momentarily inflight.
    let mut id = None;
    assert!(wait_until(Duration::from_secs(10), || {
        let rows = alice.get("/v1/outbox?limit=500").expect("outbox").json();
        id = rows["items"].as_array().and_then(|items| {
            items
                .iter()
                .find(|r| {
                    r["client_message_id"] == "p-1"
                        && (r["status"] == "pending" || r["status"] == "dead")
                })
                .and_then(|r| r["id"].as_i64())
        });
        id.is_some()
    }));
    let id = id.expect("row id");
    let rq = alice.post(
        "/v1/outbox/requeue",
        &json!({"id": id, "new_client_message_id": "p-2"}),
    );
    assert_eq!(rq.status, 200, "{}", rq.body);
    assert_eq!(rq.json()["new_client_message_id"], "p-2");
    let aborted = alice.post("/v1/send", &first);
    assert_eq!(
        aborted.json()["conflict"],
        "outbox_aborted_fingerprint_match"
    );
    let new_row = alice
        .get(&format!("/v1/outbox/{}", rq.json()["new_row_id"]))
        .expect("row")
        .json();
    assert_eq!(new_row["to"], bob_key.as_str());
    assert_eq!(new_row["target"], bob_key.as_str());
    let bob = Daemon::start(&w.config_dir("bob"), &[]);
    assert!(wait_until(Duration::from_secs(15), || bob.inbox_bodies() == ["p"]));
    let missing = alice.post("/v1/outbox/requeue", &json!({"id": 99999}));
    assert_eq!(missing.status, 404);
}

#[test]
fn profile_is_applied_and_peers_list_includes_it_after_reconnect() {
    let mut w = World::new("alice,bob", &NO_RATE);
    let alice = Daemon::start(&w.config_dir("alice"), &[]);
    let bob = Daemon::start(&w.config_dir("bob"), &[]);
    let r = alice.post(
        "/v1/profile",
        &json!({"summary": "benchmarking", "title": "tester"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["pending"], false);
    let bad = alice.post("/v1/profile", &json!({"status": "sleepy"}));
    assert_eq!(bad.status, 400);
    w.restart_broker(&NO_RATE);
    alice.wait_open();
    bob.wait_open();
    let alice_key = w.pubkey("alice");
    let seen = wait_until(Duration::from_secs(10), || {
        bob.get("/v1/peers").ok().is_some_and(|r| {
            r.json()["peers"].as_array().is_some_and(|ps| {
                ps.iter().any(|p| {
                    p["memberPubkey"] == alice_key.as_str()
                        && p["summary"] == "benchmarking"
                        && p["profile"]["title"] == "tester"
                })
            })
        })
    });
    assert!(
        seen,
        "{}",
        bob.get("/v1/peers").map(|r| r.body).unwrap_or_default()
    );
}

#[test]
fn a_name_matching_two_peers_is_ambiguous_and_a_hex_prefix_resolves() {
    let w = World::new("alice,bob,Bob", &NO_RATE);
    let alice = Daemon::start(&w.config_dir("alice"), &[]);
    let bob = Daemon::start(&w.config_dir("bob"), &[]);
    let _bob2 = Daemon::start(&w.config_dir("Bob"), &[]);
    // Wait until alice's peer list shows both (a peer that joined a moment ago may not be in
    // it yet; a name that resolves in a fresh list is used as is).
    let bobs = || {
        alice.get("/v1/peers").ok().is_some_and(|r| {
            r.json()["peers"].as_array().is_some_and(|ps| {
                ps.iter()
                    .filter(|p| {
                        p["displayName"]
                            .as_str()
                            .is_some_and(|n| n.eq_ignore_ascii_case("bob"))
                    })
                    .count()
                    == 2
            })
        })
    };
    assert!(wait_until(Duration::from_secs(10), bobs));
    let r = alice.post("/v1/send", &json!({"to": "BOB", "message": "which one?"}));
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"], "ambiguous_peer");
    assert_eq!(r.json()["candidates"].as_array().map(Vec::len), Some(2));
    let prefix = &w.pubkey("bob")[..20];
    let r = alice.post("/v1/send", &json!({"to": prefix, "message": "by prefix"}));
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(wait_until(Duration::from_secs(10), || bob.inbox_bodies()
        == ["by prefix"]));
}

#[test]
fn a_group_post_reaches_the_members_that_joined_the_group_in_config_json() {
    let w = World::new("alice,bob,carol", &NO_RATE);
    // bob joins `ops` through config.json's `groups` (as the TypeScript CLI writes it).
    let path = w.config_dir("bob").join("config.json");
    let mut cfg: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    cfg["groups"] = json!([{"name": "ops", "role": "oncall"}]);
    std::fs::write(&path, cfg.to_string()).expect("write");
    let alice = Daemon::start(&w.config_dir("alice"), &[]);
    let bob = Daemon::start(&w.config_dir("bob"), &[]);
    let carol = Daemon::start(&w.config_dir("carol"), &[]);
    let r = alice.post("/v1/send", &json!({"to": "@ops", "message": "deploy done"}));
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(wait_until(Duration::from_secs(10), || bob.inbox_bodies()
        == ["deploy done"]));
    let item = &bob.get("/v1/inbox").expect("inbox").json()["items"][0];
    assert_eq!(item["kind"], "plain");
    // The post went out (acked) and carol, outside the group, got nothing.
    assert!(wait_until(Duration::from_secs(5), || {
        alice.get("/v1/outbox?status=done").expect("outbox").json()["items"][0]["to"] == "@ops"
    }));
    std::thread::sleep(Duration::from_millis(300));
    assert!(carol.inbox_bodies().is_empty());
}

#[test]
fn a_name_accepted_before_any_broker_contact_is_resolved_at_drain_time() {
    let mut w = World::new("alice,bob", &NO_RATE);
    w.broker.stop();
    // alice has never reached the broker: no peer list, so the name waits unresolved.
    let alice = Daemon::spawn(
        &w.config_dir("alice"),
        &[("CLAUDEMESH_BROKER_RECONNECT_CAP_MS", "300")],
        &[],
    );
    assert!(wait_until(Duration::from_secs(10), || alice
        .get("/v1/health")
        .is_ok()));
    let r = alice.post(
        "/v1/send",
        &json!({"to": "bob", "message": "resolved later"}),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let row = &alice.get("/v1/outbox").expect("outbox").json()["items"][0];
    assert!(row["target"].is_null(), "{row}");
    w.restart_broker(&NO_RATE);
    let bob = Daemon::start(&w.config_dir("bob"), &[]);
    alice.wait_open();
    assert!(
        wait_until(Duration::from_secs(20), || bob.inbox_bodies()
            == ["resolved later"]),
        "{}",
        alice.log()
    );
    // The outcome was recorded with the resolved target: nothing stays inflight, and the
    // destination is free for the next send.
    assert!(wait_until(Duration::from_secs(5), || {
        let h = alice.get("/v1/health").expect("health").json();
        h["outbox"]["inflight"] == 0 && h["outbox"]["pending"] == 0
    }));
    let done = &alice.get("/v1/outbox?status=done").expect("outbox").json()["items"][0];
    assert_eq!(done["target"], w.pubkey("bob").as_str());
    alice.post("/v1/send", &json!({"to": "bob", "message": "next one"}));
    assert!(wait_until(Duration::from_secs(10), || bob
        .inbox_bodies()
        .len()
        == 2));
}
