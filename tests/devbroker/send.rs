//! Sends: direct messages (live, queued, drained), priorities and dnd, broadcasts, groups and
//! topics, the send error strings and the rate limit.

use claudemesh_actors::crypto::MemberKeys;
use claudemesh_devbroker::{self as devbroker, errors};
use serde_json::{json, Value};

use crate::support::{
    dm, hello, join, join_with, keys_of, sorted, Event, Mesh, DRAINED_PUSH_KEYS, LIVE_PUSH_KEYS,
    QUIET,
};

#[actix_web::test]
async fn a_dm_is_acked_queued_and_drained_in_the_minimal_envelope() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|_| {}).await;
    let (alice, bob) = (mesh.member("alice"), mesh.member("bob"));
    let alice_session = MemberKeys::generate().pubkey_hex();
    let (mut a, _, _) = join_with(&broker.url(), hello(&alice, Some(&alice_session), "a")).await;
    let bob_session = MemberKeys::generate().pubkey_hex();
    let (mut b, _, _) = join_with(&broker.url(), hello(&bob, Some(&bob_session), "b")).await;
    a.recv_kind("push", Some("peer_joined")).await;
    for (id, target) in [("to-member", &bob.pubkey), ("to-session", &bob_session)] {
        a.send(dm(id, target, "next")).await;
        let ack = a.recv().await;
        assert_eq!(
            keys_of(&ack),
            sorted(&["type", "id", "messageId", "queued"])
        );
        assert_eq!(
            (ack["id"].as_str(), ack["queued"].as_bool()),
            (Some(id), Some(true))
        );
        let push = b.recv().await;
        assert_eq!(keys_of(&push), sorted(DRAINED_PUSH_KEYS));
        assert_eq!(push["messageId"], ack["messageId"]);
        assert_eq!(push["senderPubkey"], alice_session);
        assert_eq!(push["meshId"], mesh.mesh_id);
        assert_eq!(push["ciphertext"], "c2VjcmV0IGJvZHk=");
        assert_eq!(push["priority"], "next");
    }
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn queued_dms_are_drained_before_the_hello_ack_of_the_next_connection() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|_| {}).await;
    let (alice, bob) = (mesh.member("alice"), mesh.member("bob"));
    let mut a = join(&broker.url(), &alice).await;
    let mut b = join(&broker.url(), &bob).await;
    a.recv_kind("push", Some("peer_joined")).await;
    b.send(json!({"type": "set_status", "status": "dnd"})).await;
    b.send(json!({"type": "list_peers"})).await;
    b.recv_kind("peers_list", None).await;
    a.send(dm("held", &bob.pubkey, "low")).await;
    let ack = a.recv().await;
    b.expect_silence().await;
    b.close().await;
    let (_b2, _, before) = join_with(&broker.url(), hello(&bob, None, "b2")).await;
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(before[0]["messageId"], ack["messageId"]);
    assert_eq!(before[0]["senderPubkey"], alice.pubkey);
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn dnd_holds_next_and_low_until_the_next_drain_trigger_while_now_goes_through() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|_| {}).await;
    let (alice, bob) = (mesh.member("alice"), mesh.member("bob"));
    let mut a = join(&broker.url(), &alice).await;
    let mut b = join(&broker.url(), &bob).await;
    a.recv_kind("push", Some("peer_joined")).await;
    b.send(json!({"type": "set_status", "status": "dnd"})).await;
    b.send(json!({"type": "list_peers"})).await;
    b.recv_kind("peers_list", None).await;
    a.send(dm("held", &bob.pubkey, "next")).await;
    let held = a.recv().await;
    b.expect_silence().await;
    a.send(dm("urgent", &bob.pubkey, "now")).await;
    let urgent = a.recv().await;
    assert_eq!(b.recv().await["messageId"], urgent["messageId"]);
    b.send(json!({"type": "set_status", "status": "idle"}))
        .await;
    b.expect_silence().await;
    a.send(dm("trigger", &bob.pubkey, "now")).await;
    let trigger = a.recv().await;
    assert_eq!(b.recv().await["messageId"], held["messageId"]);
    assert_eq!(b.recv().await["messageId"], trigger["messageId"]);
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn broadcasts_and_groups_skip_the_senders_member_and_hidden_peers_and_are_never_stored() {
    let mut mesh = Mesh::new(&["alice", "bob", "carol"]);
    let broker = mesh.broker(|_| {}).await;
    let url = broker.url();
    let (alice, bob, carol) = (
        mesh.member("alice"),
        mesh.member("bob"),
        mesh.member("carol"),
    );
    let mut a1 = join(&url, &alice).await;
    let mut a2 = join(&url, &alice).await;
    let mut bob_hello = hello(&bob, None, "bob-ops");
    bob_hello["groups"] = json!([{"name": "ops", "role": "lead"}]);
    let (mut b, _, _) = join_with(&url, bob_hello).await;
    let mut c = join(&url, &carol).await;
    c.send(json!({"type": "set_visible", "visible": false}))
        .await;
    c.recv_kind("ack", None).await;
    for target in ["*", "@all", "@ops"] {
        a1.send(dm("bc", target, "next")).await;
        let ack = a1.recv_kind("ack", None).await;
        assert_eq!(ack["queued"], true);
        let push = b.recv_kind("push", None).await;
        assert_eq!(keys_of(&push), sorted(LIVE_PUSH_KEYS));
        assert_eq!(push["messageId"], ack["messageId"]);
        assert_eq!(push["senderName"], "alice");
        assert_eq!(push["senderMemberPubkey"], alice.pubkey);
        assert_eq!(push["senderMemberId"], alice.member_id);
    }
    c.send(json!({"type": "set_visible", "visible": true}))
        .await;
    c.recv_kind("ack", None).await;
    a1.send(dm("ops-only", "@ops", "next")).await;
    a1.recv_kind("ack", None).await;
    b.recv_kind("push", None).await;
    for quiet in [&mut a2, &mut c] {
        loop {
            match quiet.next(QUIET).await {
                Some(Event::Text(v)) if v["subtype"] == "system" || v["type"] == "ack" => continue,
                None => break,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    mesh.add(&["dave"]);
    let (_d, _, before) = join_with(&url, hello(&mesh.member("dave"), None, "dave")).await;
    assert!(before.is_empty());
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn a_topic_send_is_acked_but_never_pushed_live() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|_| {}).await;
    let mut a = join(&broker.url(), &mesh.member("alice")).await;
    let mut b = join(&broker.url(), &mesh.member("bob")).await;
    a.recv_kind("push", Some("peer_joined")).await;
    a.send(dm("topic", "#general", "now")).await;
    let ack = a.recv().await;
    assert_eq!(ack["queued"], true);
    assert_eq!(ack["messageId"].as_str().unwrap().len(), 32);
    b.expect_silence().await;
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn the_four_send_error_strings_are_byte_exact() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|_| {}).await;
    let (alice, bob) = (mesh.member("alice"), mesh.member("bob"));
    let mut a = join(&broker.url(), &alice).await;
    let error_of = |ack: Value| ack["error"].as_str().unwrap().to_owned();
    for target in [bob.pubkey.as_str(), "bob", alice.pubkey.as_str()] {
        a.send(dm("off", target, "next")).await;
        let ack = a.recv().await;
        assert_eq!(
            keys_of(&ack),
            sorted(&["type", "id", "messageId", "queued", "error"])
        );
        assert_eq!(error_of(ack),
            "no connected peer for target (not online, or targetSpec is your own key without another session)");
    }
    assert_eq!(errors::NO_PEER_ERROR, "no connected peer for target (not online, or targetSpec is your own key without another session)");
    let mut b = join(&broker.url(), &bob).await;
    let mut grants = serde_json::Map::new();
    grants.insert(alice.pubkey.clone(), json!([]));
    devbroker::set_peer_grants(&mesh.state(), "bob", &grants).unwrap();
    a.send(dm("denied", &bob.pubkey, "next")).await;
    assert_eq!(
        error_of(a.recv_kind("ack", None).await),
        "blocked by recipient grants (sender lacks dm capability)"
    );
    let mut huge = dm("huge", &bob.pubkey, "next");
    huge["ciphertext"] = json!("B".repeat(65_536));
    a.send(huge).await;
    assert_eq!(
        error_of(a.recv_kind("ack", None).await),
        format!(
            "payload too large: {} bytes > MAX_MESSAGE_BYTES=65536",
            65_536 + 32 + 64
        )
    );
    b.expect_silence().await;
    broker.stop().await.unwrap();
}

async fn flood(limited: bool) -> Vec<Value> {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|o| o.rate_limit = limited).await;
    let mut a1 = join(&broker.url(), &mesh.member("alice")).await;
    let mut a2 = join(&broker.url(), &mesh.member("alice")).await;
    // One bucket per member: both connections draw from it.
    for i in 0..6 {
        a1.send(dm(&format!("a1-{i}"), "*", "next")).await;
        a2.send(dm(&format!("a2-{i}"), "*", "next")).await;
    }
    let mut acks = Vec::new();
    for ws in [&mut a1, &mut a2] {
        for _ in 0..6 {
            acks.push(ws.recv_kind("ack", None).await);
        }
    }
    broker.stop().await.unwrap();
    acks
}

#[actix_web::test]
async fn the_rate_limit_is_a_burst_of_ten_per_member_with_the_em_dash_error() {
    let acks = flood(true).await;
    let refused: Vec<&Value> = acks.iter().filter(|a| a["queued"] == false).collect();
    assert_eq!(acks.len() - refused.len(), 10, "{acks:?}");
    for ack in refused {
        assert_eq!(
            ack["error"],
            "rate_limit: max 60 msg/min (burst 10) \u{2014} slow down"
        );
        assert_eq!(ack["messageId"], "");
    }
    assert_eq!(
        errors::RATE_LIMIT_ERROR,
        "rate_limit: max 60 msg/min (burst 10) — slow down"
    );
}

#[actix_web::test]
async fn without_the_rate_limit_every_send_is_accepted() {
    let acks = flood(false).await;
    assert!(acks.iter().all(|a| a["queued"] == true), "{acks:?}");
}

#[actix_web::test]
async fn bad_priority_missing_target_unknown_types_and_client_ack_get_no_answer() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|_| {}).await;
    let bob = mesh.member("bob");
    let mut a = join(&broker.url(), &mesh.member("alice")).await;
    let _b = join(&broker.url(), &bob).await;
    a.recv_kind("push", Some("peer_joined")).await;
    a.send(dm("bad-priority", &bob.pubkey, "urgent")).await;
    let mut no_target = dm("no-target", &bob.pubkey, "next");
    no_target.as_object_mut().unwrap().remove("targetSpec");
    a.send(no_target).await;
    a.send(json!({"type": "state_get", "key": "x", "_reqId": "r"}))
        .await;
    a.send(json!({"type": "client_ack", "clientMessageId": "c", "brokerMessageId": "m"}))
        .await;
    a.send(json!({"type": "set_status", "status": "asleep"}))
        .await;
    a.expect_silence().await;
    broker.stop().await.unwrap();
}
