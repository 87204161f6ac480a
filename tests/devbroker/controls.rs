//! Controls: revoke, kick, pings, stale sockets, half-open, drop, stop and restart, and running
//! inside a plain tokio runtime.

use std::time::Duration;

use claudemesh_devbroker as devbroker;
use serde_json::json;

use crate::path_and_sizes::raw_upgrade;
use crate::support::{dm, hello, join, join_with, Event, Mesh, QUIET, WAIT};

#[actix_web::test]
async fn revoking_a_connected_member_closes_its_sockets_with_4002_banned() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|_| {}).await;
    let mut a = join(&broker.url(), &mesh.member("alice")).await;
    let mut b = join(&broker.url(), &mesh.member("bob")).await;
    devbroker::revoke_member(&mesh.state(), "bob").unwrap();
    let (_, close) = b.until_close().await;
    assert_eq!(close, Some((4002, "banned".into())));
    a.recv_kind("push", Some("peer_joined")).await;
    a.expect_silence().await;
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn kick_closes_every_socket_of_the_member_with_4001_kicked() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|_| {}).await;
    let bob = mesh.member("bob");
    let mut a = join(&broker.url(), &mesh.member("alice")).await;
    let mut b1 = join(&broker.url(), &bob).await;
    let mut b2 = join(&broker.url(), &bob).await;
    assert_eq!(broker.kick("bob").await.unwrap(), 2);
    for b in [&mut b1, &mut b2] {
        assert_eq!(b.until_close().await.1, Some((4001, "kicked".into())));
    }
    let mut b3 = join(&broker.url(), &bob).await;
    assert_eq!(broker.kick(&bob.pubkey).await.unwrap(), 1);
    assert_eq!(b3.until_close().await.1, Some((4001, "kicked".into())));
    assert_eq!(broker.kick("nobody").await.unwrap(), 0);
    a.send(json!({"type": "list_peers"})).await;
    assert_eq!(
        a.recv_kind("peers_list", None).await["peers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn the_broker_pings_every_interval_and_stale_sockets_are_terminated_without_close() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh
        .broker(|o| {
            o.ping_interval_ms = 50;
            o.stale_after_ms = Some(200);
        })
        .await;
    let mut lively = join(&broker.url(), &mesh.member("alice")).await;
    // The ponging client is read (and so answers pings) concurrently for 600 ms.
    let lively_task = actix_web::rt::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(600);
        let mut pings = 0;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match lively.next(left).await {
                None => return Ok(pings),
                Some(Event::Ping) => pings += 1,
                Some(Event::Text(_)) => continue,
                Some(other) => return Err(other),
            }
        }
    });
    let started = std::time::Instant::now();
    let mut silent = join(&broker.url(), &mesh.member("bob")).await;
    silent.auto_pong = false;
    let mut pings = 0;
    loop {
        match silent.next(WAIT).await {
            Some(Event::Ping) => pings += 1,
            Some(Event::Text(_)) => continue,
            Some(Event::Eof) => break,
            other => panic!("expected pings then a drop without close frame, got {other:?}"),
        }
    }
    assert!(pings >= 1, "{pings} pings");
    assert!(started.elapsed() >= Duration::from_millis(200));
    let lively_pings = lively_task
        .await
        .unwrap()
        .expect("the ponging socket stays open");
    assert!(lively_pings >= 4, "{lively_pings} pings");
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn a_half_open_socket_is_neither_read_nor_written_until_resumed() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|o| o.ping_interval_ms = 50).await;
    let alice = mesh.member("alice");
    let mut a = join(&broker.url(), &alice).await;
    let mut b = join(&broker.url(), &mesh.member("bob")).await;
    a.recv_kind("push", Some("peer_joined")).await;
    assert_eq!(broker.set_half_open(&alice.pubkey, true).await.unwrap(), 1);
    // A ping already on its way may still arrive; after that, nothing.
    while let Some(event) = a.next(Duration::from_millis(200)).await {
        assert_eq!(event, Event::Ping);
    }
    a.send(json!({"type": "list_peers", "_reqId": "while-half-open"}))
        .await;
    b.send(dm("to-alice", &alice.pubkey, "now")).await;
    b.recv_kind("ack", None).await;
    let nothing = a.next(QUIET).await;
    assert_eq!(
        nothing, None,
        "a half-open socket gets nothing, not even pings"
    );
    broker.set_half_open("alice", false).await.unwrap();
    let push = a.recv_kind("push", None).await;
    assert_eq!(push["priority"], "now");
    assert_eq!(
        a.recv_kind("peers_list", None).await["_reqId"],
        "while-half-open"
    );
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn drop_all_drops_every_socket_without_a_close_frame() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|_| {}).await;
    let mut a = join(&broker.url(), &mesh.member("alice")).await;
    let mut b = join(&broker.url(), &mesh.member("bob")).await;
    assert_eq!(broker.drop_all().await.unwrap(), 2);
    for ws in [&mut a, &mut b] {
        assert_eq!(ws.until_close().await.1, None);
    }
    let _again = join(&broker.url(), &mesh.member("alice")).await;
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn stop_closes_sockets_1001_and_a_restart_on_the_same_port_keeps_state() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|_| {}).await;
    let (alice, bob) = (mesh.member("alice"), mesh.member("bob"));
    let addr = broker.addr();
    let mut a = join(&broker.url(), &alice).await;
    let mut b = join(&broker.url(), &bob).await;
    b.send(json!({"type": "set_status", "status": "dnd"})).await;
    b.send(json!({"type": "list_peers"})).await;
    b.recv_kind("peers_list", None).await;
    a.send(dm("survives", &bob.pubkey, "next")).await;
    let ack = a.recv_kind("ack", None).await;
    let stopping = actix_web::rt::spawn(broker.stop());
    for ws in [&mut a, &mut b] {
        assert_eq!(
            ws.until_close().await.1,
            Some((1001, "shutting down".into()))
        );
    }
    stopping.await.unwrap().unwrap();
    let broker = mesh.broker(|o| o.listen = addr).await;
    assert_eq!(broker.port(), addr.port());
    let (_b, hello_ack, before) = join_with(&broker.url(), hello(&bob, None, "b-again")).await;
    assert_eq!(hello_ack["restored"], true);
    assert_eq!(before.len(), 1);
    assert_eq!(before[0]["messageId"], ack["messageId"]);
    broker.stop().await.unwrap();
}

#[tokio::test]
async fn the_broker_starts_serves_and_stops_inside_a_plain_tokio_runtime() {
    let mesh = Mesh::new(&["alice"]);
    let broker = mesh.broker(|_| {}).await;
    let ok = raw_upgrade(broker.port(), "/ws").await;
    assert!(ok.starts_with(b"HTTP/1.1 101"));
    broker.stop().await.unwrap();
}
