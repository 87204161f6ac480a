//! Head profile, lease and reattach (BROKER-PROTOCOL §1.8 head rules, §6.2): a closed member
//! socket's presence stays listed and reachable for `--grace-ms`, `peer_left` comes only when
//! the lease ends, a member hello with the same `sessionId` reattaches silently, and a
//! reconnect after the lease is an ordinary new presence.

use std::time::{Duration, Instant};

use claudemesh_devbroker::errors::NO_PEER_ERROR;
use claudemesh_devbroker::DevBroker;
use serde_json::{json, Value};

use crate::support::{dm, hello, join_with, wait_until, Event, Mesh, Ws};

/// Generous bound for anything the broker does on its own timers, on a loaded machine.
pub(crate) const SLOW: Duration = Duration::from_secs(15);

/// `peers_list` as seen by `ws`.
pub(crate) async fn peers(ws: &mut Ws) -> Vec<Value> {
    ws.send(json!({"type": "list_peers", "_reqId": "pl"})).await;
    let list = ws.recv_kind("peers_list", None).await;
    list["peers"].as_array().unwrap().clone()
}

/// Waits until the broker holds presence `id` in its offline lease.
pub(crate) async fn until_leased(broker: &DevBroker, id: &str) {
    let leased = wait_until(SLOW, || async {
        broker
            .presences()
            .await
            .unwrap()
            .iter()
            .any(|p| p.presence_id == id && !p.online)
    })
    .await;
    assert!(leased, "presence {id} never entered its lease");
}

/// The next system push `event` within `within`, skipping everything else.
pub(crate) async fn next_event(ws: &mut Ws, event: &str, within: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match ws.next(left).await? {
            Event::Text(v) if v["event"] == event => return Some(v),
            Event::Text(_) | Event::Ping => continue,
            other => panic!("waiting for {event}: {other:?}"),
        }
    }
}

#[actix_web::test]
async fn the_lease_keeps_a_closed_presence_listed_and_sends_peer_left_only_at_its_end() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let grace = Duration::from_millis(3_000);
    let broker = mesh.head_broker(|o| o.grace_ms = 3_000).await;
    let (alice, bob) = (mesh.member("alice"), mesh.member("bob"));
    let (mut a, _, _) = join_with(&broker.url(), hello(&alice, None, "alice-d")).await;
    let (mut b, b_ack, _) = join_with(&broker.url(), hello(&bob, None, "bob-d")).await;
    next_event(&mut a, "peer_joined", SLOW).await.unwrap();
    let bob_presence = b_ack["presenceId"].as_str().unwrap().to_owned();
    // The lease cannot start before the close is sent.
    let closing = Instant::now();
    b.close().await;
    until_leased(&broker, &bob_presence).await;
    let listed = peers(&mut a).await;
    let bob_row = listed
        .iter()
        .find(|p| p["memberPubkey"] == bob.pubkey.as_str());
    assert_eq!(
        bob_row.map(|p| p["peerRole"].clone()),
        Some(json!("control-plane"))
    );
    let lease = broker.presences().await.unwrap();
    let bob_lease = lease
        .iter()
        .find(|p| p.presence_id == bob_presence)
        .unwrap();
    assert!(bob_lease.lease_remaining_ms.is_some_and(|ms| ms <= 3_000));
    let left = next_event(&mut a, "peer_left", SLOW)
        .await
        .expect("peer_left at lease end");
    assert!(
        closing.elapsed() >= grace,
        "peer_left after {:?}, before the lease ended",
        closing.elapsed()
    );
    assert_eq!(left["eventData"]["pubkey"], bob.pubkey.as_str());
    assert!(peers(&mut a)
        .await
        .iter()
        .all(|p| p["memberPubkey"] != bob.pubkey.as_str()));
    assert!(broker
        .presences()
        .await
        .unwrap()
        .iter()
        .all(|p| p.presence_id != bob_presence));
    // Seed for contrast: the same close is `peer_left` at once and a DM is refused.
    broker.stop().await.unwrap();
    let seed = mesh.broker(|_| {}).await;
    let (mut a, _, _) = join_with(&seed.url(), hello(&alice, None, "alice-s")).await;
    let (mut b, _, _) = join_with(&seed.url(), hello(&bob, None, "bob-s")).await;
    b.close().await;
    next_event(&mut a, "peer_left", SLOW).await.unwrap();
    a.send(dm("to-gone", &bob.pubkey, "next")).await;
    assert_eq!(a.recv_kind("ack", None).await["error"], NO_PEER_ERROR);
    seed.stop().await.unwrap();
}

#[actix_web::test]
async fn a_reattach_within_the_lease_is_silent_keeps_the_presence_and_drains_what_was_queued() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh
        .head_broker(|o| {
            o.grace_ms = 60_000;
            o.claim_ms = 300;
        })
        .await;
    let (alice, bob) = (mesh.member("alice"), mesh.member("bob"));
    let (mut a, _, _) = join_with(&broker.url(), hello(&alice, None, "alice-d")).await;
    let (mut b, b_ack, _) = join_with(&broker.url(), hello(&bob, None, "bob-d")).await;
    next_event(&mut a, "peer_joined", SLOW).await.unwrap();
    let bob_presence = b_ack["presenceId"].as_str().unwrap().to_owned();
    b.close().await;
    until_leased(&broker, &bob_presence).await;
    // A DM to a presence in its lease is accepted and queued.
    let mut send = dm("while-away", &bob.pubkey, "next");
    send["client_message_id"] = json!("cm-while-away");
    send["request_fingerprint"] = json!("f".repeat(64));
    a.send(send).await;
    let ack = a.recv_kind("ack", None).await;
    assert_eq!(
        (ack["queued"].clone(), ack.get("error")),
        (json!(true), None)
    );
    let message_id = ack["messageId"].as_str().unwrap().to_owned();
    // It was pushed into the dead socket and claimed; once the claim has expired, the
    // reattach drains it before its `hello_ack`.
    let expired = wait_until(SLOW, || async {
        let now = claudemesh_actors::time::now_ms();
        broker.queue_rows().await.unwrap().iter().any(|r| {
            r.id == message_id && r.claim_id.as_deref() == Some(&bob_presence) && !r.claimed_at(now)
        })
    })
    .await;
    assert!(expired);
    let (mut b, again, before) = join_with(&broker.url(), hello(&bob, None, "bob-d")).await;
    assert_eq!(again["presenceId"], bob_presence.as_str());
    for key in ["restored", "restoredStats", "lastSeenAt", "restoredGroups"] {
        assert!(again.get(key).is_none(), "{key} in a reattach ack: {again}");
    }
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(before[0]["messageId"], message_id.as_str());
    assert_eq!(before[0]["client_message_id"], "cm-while-away");
    assert_eq!(before[0]["request_fingerprint"], "f".repeat(64).as_str());
    // Nobody was told anything: no peer_joined, no peer_returned, no peer_left.
    a.expect_silence().await;
    b.expect_silence().await;
    let info = broker.presences().await.unwrap();
    assert_eq!(info.len(), 2);
    assert!(info.iter().all(|p| p.online));
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn a_reconnect_after_the_lease_is_an_ordinary_new_presence() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.head_broker(|o| o.grace_ms = 300).await;
    let (alice, bob) = (mesh.member("alice"), mesh.member("bob"));
    let (mut a, _, _) = join_with(&broker.url(), hello(&alice, None, "alice-d")).await;
    let (mut b, b_ack, _) = join_with(&broker.url(), hello(&bob, None, "bob-d")).await;
    next_event(&mut a, "peer_joined", SLOW).await.unwrap();
    b.close().await;
    next_event(&mut a, "peer_left", SLOW).await.unwrap();
    let (_b, again, _) = join_with(&broker.url(), hello(&bob, None, "bob-d")).await;
    assert_ne!(again["presenceId"], b_ack["presenceId"]);
    assert_eq!(again["restored"], true);
    let returned = next_event(&mut a, "peer_returned", SLOW).await.unwrap();
    assert_eq!(returned["eventData"]["pubkey"], bob.pubkey.as_str());
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn an_online_duplicate_session_id_is_replaced_as_on_the_seed_broker() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.head_broker(|_| {}).await;
    let (alice, bob) = (mesh.member("alice"), mesh.member("bob"));
    let (mut a, _, _) = join_with(&broker.url(), hello(&alice, None, "alice-d")).await;
    let (mut old, old_ack, _) = join_with(&broker.url(), hello(&bob, None, "bob-d")).await;
    next_event(&mut a, "peer_joined", SLOW).await.unwrap();
    let (_new, new_ack, _) = join_with(&broker.url(), hello(&bob, None, "bob-d")).await;
    assert_ne!(new_ack["presenceId"], old_ack["presenceId"]);
    let (_, close) = old.until_close().await;
    assert_eq!(close, Some((1000, "session_replaced".into())));
    let bobs = peers(&mut a)
        .await
        .into_iter()
        .filter(|p| p["memberPubkey"] == bob.pubkey.as_str())
        .count();
    assert_eq!(bobs, 1);
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn a_second_hello_on_the_same_socket_is_deduped_against_itself_like_on_the_head_broker() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.head_broker(|o| o.claim_ms = 60_000).await;
    let (alice, bob) = (mesh.member("alice"), mesh.member("bob"));
    let (mut a, _, _) = join_with(&broker.url(), hello(&alice, None, "alice-d")).await;
    let (mut b, b_ack, _) = join_with(&broker.url(), hello(&bob, None, "bob-d")).await;
    next_event(&mut a, "peer_joined", SLOW).await.unwrap();
    // Queued for bob while his socket is busy closing: claimed by the new presence, lost.
    b.send(json!({"type": "set_status", "status": "dnd"})).await;
    peers(&mut b).await; // set_status has no reply: a round trip makes sure it was applied
    a.send(dm("held", &bob.pubkey, "next")).await;
    let held = a.recv_kind("ack", None).await["messageId"].clone();
    b.send(hello(&bob, None, "bob-d")).await;
    let (texts, close) = b.until_close().await;
    assert_eq!(close, Some((1000, "session_replaced".into())), "{texts:?}");
    assert!(texts.iter().all(|t| t["type"] != "hello_ack"), "{texts:?}");
    // The others see a new presence, which the close then puts in its lease.
    next_event(&mut a, "peer_joined", SLOW).await.unwrap();
    let leased = wait_until(SLOW, || async {
        let info = broker.presences().await.unwrap();
        let bobs: Vec<_> = info
            .iter()
            .filter(|p| p.member_pubkey == bob.pubkey)
            .collect();
        bobs.len() == 1 && !bobs[0].online && bobs[0].presence_id != b_ack["presenceId"]
    })
    .await;
    assert!(leased);
    let info = broker.presences().await.unwrap();
    let new_bob = info.iter().find(|p| p.member_pubkey == bob.pubkey).unwrap();
    let rows = broker.queue_rows().await.unwrap();
    let row = rows.iter().find(|r| r.id == held).unwrap();
    assert_eq!(row.claim_id.as_deref(), Some(new_bob.presence_id.as_str()));
    assert!(row.claimed_at(claudemesh_actors::time::now_ms()) && row.delivered_at.is_none());
    // Seed: the same second hello is ignored and the socket stays usable.
    broker.stop().await.unwrap();
    let seed = mesh.broker(|_| {}).await;
    let (mut b, _, _) = join_with(&seed.url(), hello(&bob, None, "bob-s")).await;
    b.send(hello(&bob, None, "bob-s")).await;
    b.expect_silence().await;
    assert_eq!(peers(&mut b).await.len(), 1);
    seed.stop().await.unwrap();
}
