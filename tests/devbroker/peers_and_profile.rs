//! `list_peers` and the `set_*` requests: visibility, profile, and hidden members.

use serde_json::{json, Value};

use crate::support::{join, keys_of, sorted, Mesh};

#[actix_web::test]
async fn list_peers_includes_the_caller_and_hides_hidden_peers_of_other_members() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|_| {}).await;
    let (alice, bob) = (mesh.member("alice"), mesh.member("bob"));
    let mut a = join(&broker.url(), &alice).await;
    a.send(json!({"type": "list_peers", "_reqId": "pl-1"}))
        .await;
    let alone = a.recv().await;
    assert_eq!(keys_of(&alone), sorted(&["type", "_reqId", "peers"]));
    let peers = alone["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 1);
    assert_eq!(
        keys_of(&peers[0]),
        sorted(&[
            "pubkey",
            "memberPubkey",
            "displayName",
            "status",
            "summary",
            "groups",
            "sessionId",
            "connectedAt",
            "cwd",
            "hostname",
            "peerType",
            "channel",
            "visible"
        ])
    );
    assert_eq!(peers[0]["pubkey"], alice.pubkey);
    assert_eq!(peers[0]["summary"], Value::Null);
    assert_eq!(peers[0]["status"], "idle");
    let mut b = join(&broker.url(), &bob).await;
    b.send(json!({"type": "set_summary", "summary": "reviewing"}))
        .await;
    b.send(json!({"type": "set_status", "status": "working"}))
        .await;
    b.send(json!({"type": "set_profile", "title": "reviewer", "capabilities": ["review"]}))
        .await;
    b.recv_kind("ack", None).await;
    a.send(json!({"type": "list_peers"})).await;
    let both = a.recv_kind("peers_list", None).await;
    assert!(both.get("_reqId").is_none());
    let listed: Vec<&Value> = both["peers"].as_array().unwrap().iter().collect();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1]["displayName"], "bob");
    assert_eq!(listed[1]["summary"], "reviewing");
    assert_eq!(listed[1]["status"], "working");
    assert_eq!(
        listed[1]["profile"],
        json!({"title": "reviewer", "capabilities": ["review"]})
    );
    b.send(json!({"type": "set_visible", "visible": false}))
        .await;
    b.recv_kind("ack", None).await;
    a.send(json!({"type": "list_peers"})).await;
    let without_bob = a.recv_kind("peers_list", None).await;
    assert_eq!(without_bob["peers"].as_array().unwrap().len(), 1);
    b.send(json!({"type": "list_peers"})).await;
    let own = b.recv_kind("peers_list", None).await;
    assert_eq!(own["peers"].as_array().unwrap().len(), 2);
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn set_visible_and_set_profile_reply_with_an_ack_and_the_others_get_visibility_events() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|_| {}).await;
    let (alice, bob) = (mesh.member("alice"), mesh.member("bob"));
    let mut a1 = join(&broker.url(), &alice).await;
    let mut a2 = join(&broker.url(), &alice).await;
    let mut b = join(&broker.url(), &bob).await;
    a1.recv_kind("push", Some("peer_joined")).await;
    a1.send(json!({"type": "set_status", "status": "dnd"}))
        .await;
    a1.send(json!({"type": "set_summary", "summary": "x"}))
        .await;
    a1.send(json!({"type": "set_visible", "visible": false, "_reqId": "v-1"}))
        .await;
    assert_eq!(
        a1.recv().await,
        json!({"type": "ack", "id": "v-1", "messageId": "", "queued": false, "_reqId": "v-1"})
    );
    for other in [&mut a2, &mut b] {
        let hidden = other.recv_kind("push", Some("peer_hidden")).await;
        assert_eq!(
            hidden["eventData"],
            json!({"name": "alice", "pubkey": alice.pubkey})
        );
    }
    a1.send(json!({"type": "set_visible", "visible": true}))
        .await;
    assert_eq!(
        a1.recv().await,
        json!({"type": "ack", "id": "", "messageId": "", "queued": false})
    );
    b.recv_kind("push", Some("peer_visible")).await;
    a1.send(json!({"type": "set_profile", "avatar": "🦀", "_reqId": "p-1"}))
        .await;
    assert_eq!(
        a1.recv().await,
        json!({"type": "ack", "id": "p-1", "messageId": "", "queued": false, "_reqId": "p-1"})
    );
    a1.expect_silence().await;
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn a_hidden_member_reconnects_hidden() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|_| {}).await;
    let mut b = join(&broker.url(), &mesh.member("bob")).await;
    b.send(json!({"type": "set_visible", "visible": false}))
        .await;
    b.recv_kind("ack", None).await;
    b.close().await;
    let _b = join(&broker.url(), &mesh.member("bob")).await;
    let mut a = join(&broker.url(), &mesh.member("alice")).await;
    a.send(json!({"type": "list_peers"})).await;
    let list = a.recv_kind("peers_list", None).await;
    assert_eq!(list["peers"].as_array().unwrap().len(), 1, "{list}");
    broker.stop().await.unwrap();
}
