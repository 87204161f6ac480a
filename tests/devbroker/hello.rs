//! Hello validation: rejections and their close codes, the capacity limit, frames before or
//! pipelined behind the hello, and the `hello_ack` fields.

use awc::ws::Message;
use claudemesh_actors::crypto::MemberKeys;
use claudemesh_actors::time::now_ms;
use claudemesh_devbroker as devbroker;
use futures_util::SinkExt;
use serde_json::{json, Value};

use crate::support::{hello, join, join_with, keys_of, sorted, Member, Mesh, Ws};

async fn rejected(url: &str, frame: Value) -> (Value, Option<(u16, String)>) {
    let mut ws = Ws::connect(url).await;
    ws.send(frame).await;
    let (texts, close) = ws.until_close().await;
    assert_eq!(texts.len(), 1, "{texts:?}");
    (texts[0].clone(), close)
}

#[actix_web::test]
async fn every_hello_rejection_is_an_error_frame_then_its_close_code() {
    let mut mesh = Mesh::new(&["alice", "mallory"]);
    let broker = mesh.broker(|_| {}).await;
    let url = broker.url();
    let alice = mesh.member("alice");
    let expect = |code: &str, message: &str, close: (u16, &str)| {
        (
            json!({"type": "error", "code": code, "message": message}),
            Some((close.0, close.1.to_owned())),
        )
    };

    let mut bad_session = hello(&alice, Some(&"AB".repeat(32)), "s1");
    let got = rejected(&url, bad_session.take()).await;
    assert_eq!(got.1, Some((1008, "bad_session_pubkey".into())));
    assert_eq!(got.0["code"], "bad_session_pubkey");

    let mut skewed = hello(&alice, None, "s2");
    let ts = now_ms() - 61_000;
    skewed["timestamp"] = json!(ts);
    skewed["signature"] = json!(alice.keys.sign_hello(&alice.mesh_id, &alice.member_id, ts));
    assert_eq!(
        rejected(&url, skewed).await,
        expect(
            "timestamp_skew",
            "hello rejected: timestamp_skew",
            (1008, "timestamp_skew")
        )
    );

    let mut short_sig = hello(&alice, None, "s3");
    short_sig["signature"] = json!("abcd");
    assert_eq!(
        rejected(&url, short_sig).await,
        expect(
            "malformed",
            "hello rejected: malformed",
            (1008, "malformed")
        )
    );

    let mut forged = hello(&alice, None, "s4");
    forged["signature"] =
        json!(MemberKeys::generate().sign_hello(&alice.mesh_id, &alice.member_id, 1));
    assert_eq!(
        rejected(&url, forged).await,
        expect(
            "bad_signature",
            "hello rejected: bad_signature",
            (1008, "bad_signature")
        )
    );

    let stranger = Member {
        name: "stranger".into(),
        keys: MemberKeys::generate(),
        ..alice.clone()
    };
    let stranger = Member {
        pubkey: stranger.keys.pubkey_hex(),
        ..stranger
    };
    let (error, close) = rejected(&url, hello(&stranger, None, "s5")).await;
    assert_eq!(
        (error["code"].clone(), close),
        (json!("unauthorized"), Some((1008, "unauthorized".into())))
    );
    assert_eq!(keys_of(&error), sorted(&["type", "code", "message"]));

    devbroker::revoke_member(&mesh.state(), "mallory").unwrap();
    let mallory = mesh.member("mallory");
    assert_eq!(
        rejected(&url, hello(&mallory, None, "s6")).await,
        expect(
            "revoked",
            "You've been removed from \"dev-mesh\". Contact the mesh owner to rejoin.",
            (4002, "banned")
        )
    );
    mesh.add(&["late"]);
    join(&url, &mesh.member("late")).await;
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn the_101st_connection_of_a_mesh_is_refused_with_capacity() {
    let mesh = Mesh::new(&["alice"]);
    let broker = mesh.broker(|_| {}).await;
    let alice = mesh.member("alice");
    let mut held = Vec::new();
    for _ in 0..100 {
        held.push(join(&broker.url(), &alice).await);
    }
    let (error, close) = rejected(&broker.url(), hello(&alice, None, "one-too-many")).await;
    assert_eq!(error["code"], "capacity");
    assert_eq!(close, Some((1008, "capacity".into())));
    held.pop().unwrap().close().await;
    join(&broker.url(), &alice).await;
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn frames_before_hello_get_no_hello_and_the_socket_stays_open() {
    let mesh = Mesh::new(&["alice"]);
    let broker = mesh.broker(|_| {}).await;
    let mut ws = Ws::connect(&broker.url()).await;
    ws.send(json!({"type": "list_peers", "_reqId": "early"}))
        .await;
    assert_eq!(
        ws.recv().await,
        json!({"type": "error", "code": "no_hello", "message": "must send hello first"})
    );
    ws.send_text("not json".into()).await;
    ws.expect_silence().await;
    ws.send(hello(&mesh.member("alice"), None, "late-hello"))
        .await;
    assert_eq!(ws.recv().await["type"], "hello_ack");
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn a_frame_pipelined_behind_the_hello_can_get_no_hello() {
    let mesh = Mesh::new(&["alice"]);
    let broker = mesh.broker(|_| {}).await;
    let mut ws = Ws::connect(&broker.url()).await;
    // Both frames in one write, as a client that does not wait for `hello_ack` sends them.
    let hello_text = hello(&mesh.member("alice"), None, "pipelined").to_string();
    ws.io.feed(Message::Text(hello_text.into())).await.unwrap();
    ws.io
        .feed(Message::Text(
            json!({"type": "list_peers"}).to_string().into(),
        ))
        .await
        .unwrap();
    ws.io.flush().await.unwrap();
    let first = ws.recv().await;
    assert_eq!(first["code"], "no_hello", "{first}");
    assert_eq!(ws.recv().await["type"], "hello_ack");
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn a_hello_without_pid_or_cwd_gets_no_answer_and_no_close() {
    let mesh = Mesh::new(&["alice"]);
    let broker = mesh.broker(|_| {}).await;
    let alice = mesh.member("alice");
    let mut ws = Ws::connect(&broker.url()).await;
    let mut no_pid = hello(&alice, None, "np");
    no_pid.as_object_mut().unwrap().remove("pid");
    ws.send(no_pid).await;
    ws.expect_silence().await;
    let mut no_cwd = hello(&alice, None, "nc");
    no_cwd.as_object_mut().unwrap().remove("cwd");
    ws.send(no_cwd).await;
    ws.expect_silence().await;
    ws.send(hello(&alice, None, "ok")).await;
    assert_eq!(ws.recv().await["type"], "hello_ack");
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn hello_ack_has_the_seed_fields_and_restored_ones_after_a_first_disconnect() {
    let mesh = Mesh::new(&["alice"]);
    let broker = mesh.broker(|_| {}).await;
    let alice = mesh.member("alice");
    let (mut first, ack, _) = join_with(&broker.url(), hello(&alice, None, "a1")).await;
    assert_eq!(
        keys_of(&ack),
        sorted(&[
            "type",
            "presenceId",
            "memberDisplayName",
            "memberProfile",
            "meshPolicy"
        ])
    );
    assert_eq!(ack["presenceId"].as_str().unwrap().len(), 32);
    assert_eq!(ack["memberDisplayName"], "alice");
    assert_eq!(
        ack["memberProfile"],
        json!({"roleTag": null, "groups": [], "messageMode": "push"})
    );
    assert_eq!(
        ack["meshPolicy"],
        json!({"selfEditable": {"displayName": true, "roleTag": true, "groups": true, "messageMode": true}})
    );
    first
        .send(json!({"type": "set_summary", "summary": "busy with tests"}))
        .await;
    first.send(json!({"type": "list_peers"})).await;
    first.recv().await;
    first.close().await;
    let (_, again, _) = join_with(&broker.url(), hello(&alice, None, "a2")).await;
    assert_eq!(
        keys_of(&again),
        sorted(&[
            "type",
            "presenceId",
            "memberDisplayName",
            "memberProfile",
            "meshPolicy",
            "restored",
            "lastSummary",
            "lastSeenAt",
            "restoredStats"
        ])
    );
    assert_eq!(again["restored"], true);
    assert_eq!(again["lastSummary"], "busy with tests");
    assert_eq!(
        again["restoredStats"],
        json!({"messagesIn": 0, "messagesOut": 0, "toolCalls": 0, "errors": 0})
    );
    broker.stop().await.unwrap();
}
