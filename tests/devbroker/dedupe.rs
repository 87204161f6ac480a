//! `--dedupe`: a repeated client message id is acked as a duplicate (or delivered again
//! without it).

use serde_json::{json, Value};

use crate::support::{dm, join, Mesh};

fn keyed(id: &str, target: &str, fingerprint: &str) -> Value {
    let mut frame = dm(id, target, "next");
    frame["client_message_id"] = json!(id);
    frame["request_fingerprint"] = json!(fingerprint);
    frame
}

#[actix_web::test]
async fn dedupe_acks_a_repeat_as_duplicate_without_redelivery_and_refuses_another_fingerprint() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|o| o.dedupe = true).await;
    let bob = mesh.member("bob");
    let mut a = join(&broker.url(), &mesh.member("alice")).await;
    let mut b = join(&broker.url(), &bob).await;
    let fp = "ab".repeat(32);
    a.send(keyed("01JCMID", &bob.pubkey, &fp)).await;
    let first = a.recv_kind("ack", None).await;
    assert_eq!(first["queued"], true);
    assert_eq!(
        b.recv_kind("push", None).await["messageId"],
        first["messageId"]
    );
    a.send(keyed("01JCMID", &bob.pubkey, &fp)).await;
    assert_eq!(
        a.recv_kind("ack", None).await,
        json!({"type": "ack", "id": "01JCMID", "messageId": first["messageId"], "queued": true,
               "duplicate": true})
    );
    a.send(keyed("01JCMID", &bob.pubkey, &"cd".repeat(32)))
        .await;
    assert_eq!(
        a.recv_kind("ack", None).await,
        json!({"type": "ack", "id": "01JCMID", "messageId": "", "queued": false,
               "error": "idempotency_key_reused: request_fingerprint_mismatch"})
    );
    b.expect_silence().await;
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn without_dedupe_a_repeated_client_message_id_is_delivered_again() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|_| {}).await;
    let bob = mesh.member("bob");
    let mut a = join(&broker.url(), &mesh.member("alice")).await;
    let mut b = join(&broker.url(), &bob).await;
    for _ in 0..2 {
        a.send(keyed("01JREPEAT", &bob.pubkey, &"ab".repeat(32)))
            .await;
        let ack = a.recv_kind("ack", None).await;
        assert!(ack.get("duplicate").is_none());
        assert_eq!(
            b.recv_kind("push", None).await["messageId"],
            ack["messageId"]
        );
    }
    broker.stop().await.unwrap();
}
