//! Peer events and sessions: joined/left/returned events and duplicate session ids.

use claudemesh_actors::crypto::MemberKeys;
use serde_json::json;

use crate::support::{hello, join, join_with, keys_of, sorted, Mesh};

#[actix_web::test]
async fn peer_events_go_to_other_members_only_and_returned_follows_a_first_disconnect() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|_| {}).await;
    let (alice, bob) = (mesh.member("alice"), mesh.member("bob"));
    let mut a1 = join(&broker.url(), &alice).await;
    let mut a2 = join(&broker.url(), &alice).await;
    a1.expect_silence().await;
    let bob_session = MemberKeys::generate().pubkey_hex();
    let (mut b, _, _) = join_with(&broker.url(), hello(&bob, Some(&bob_session), "b1")).await;
    for a in [&mut a1, &mut a2] {
        let joined = a.recv().await;
        assert_eq!(joined["event"], "peer_joined");
        assert_eq!(joined["subtype"], "system");
        assert_eq!(joined["senderPubkey"], "system");
        assert_eq!(joined["priority"], "low");
        assert_eq!(
            joined["eventData"],
            json!({"name": "bob", "pubkey": bob_session, "groups": []})
        );
        assert_eq!(joined["messageId"].as_str().unwrap().len(), 36);
    }
    b.close().await;
    let left = a1.recv().await;
    assert_eq!(left["event"], "peer_left");
    assert_eq!(
        left["eventData"],
        json!({"name": "bob", "pubkey": bob_session})
    );
    a2.recv_kind("push", Some("peer_left")).await;
    let _b = join(&broker.url(), &bob).await;
    let back = a1.recv().await;
    assert_eq!(back["event"], "peer_returned");
    assert_eq!(
        keys_of(&back["eventData"]),
        sorted(&["name", "pubkey", "groups", "lastSeenAt"])
    );
    assert_eq!(back["eventData"]["pubkey"], bob.pubkey);
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn a_duplicate_session_id_closes_the_old_socket_with_session_replaced_and_no_peer_left() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|_| {}).await;
    let mut a = join(&broker.url(), &mesh.member("alice")).await;
    let (mut old, _, _) =
        join_with(&broker.url(), hello(&mesh.member("bob"), None, "daemon-1")).await;
    a.recv_kind("push", Some("peer_joined")).await;
    let (_new, _, _) = join_with(&broker.url(), hello(&mesh.member("bob"), None, "daemon-1")).await;
    let (_, close) = old.until_close().await;
    assert_eq!(close, Some((1000, "session_replaced".into())));
    // The replaced socket was not a disconnect: no peer_state, so `peer_joined` again.
    let event = a.recv().await;
    assert_eq!(event["event"], "peer_joined", "{event}");
    a.expect_silence().await;
    broker.stop().await.unwrap();
}
