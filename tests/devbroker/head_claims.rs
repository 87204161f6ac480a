//! Head profile, claims (BROKER-PROTOCOL §4.4, §7.2): a DM pushed into a dead socket stays
//! claimed for `--claim-ms`; the sweep only releases it (nothing is pushed); the next drain
//! trigger after that pushes it again; `client_ack` ends it for good.

use std::time::Duration;

use claudemesh_actors::time::now_ms;
use claudemesh_devbroker::{DevBroker, QueueRowInfo};
use serde_json::{json, Value};

use crate::head_lease::{next_event, until_leased, SLOW};
use crate::support::{dm, hello, join_with, wait_until, Event, Mesh, Ws};

async fn row(broker: &DevBroker, id: &str) -> QueueRowInfo {
    broker
        .queue_rows()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.id == id)
        .unwrap()
}

/// Sends a DM to `target` and returns its `messageId` (the ack must be `queued:true`).
async fn send_dm(ws: &mut Ws, id: &str, target: &str) -> String {
    let mut frame = dm(id, target, "next");
    frame["client_message_id"] = json!(format!("cm-{id}"));
    ws.send(frame).await;
    let ack = ws.recv_kind("ack", None).await;
    assert_eq!(
        (ack["queued"].clone(), ack.get("error")),
        (json!(true), None),
        "{ack}"
    );
    ack["messageId"].as_str().unwrap().to_owned()
}

/// The next `n` message pushes (within [`SLOW`]), then nothing more for a moment.
async fn next_pushes(ws: &mut Ws, n: usize) -> Vec<Value> {
    let mut got = Vec::new();
    while got.len() < n {
        match ws.next(SLOW).await {
            Some(Event::Text(v)) if v["type"] == "push" && v["subtype"] != "system" => got.push(v),
            Some(Event::Text(_) | Event::Ping) => continue,
            other => panic!("waiting for {n} pushes, got {got:?} then {other:?}"),
        }
    }
    ws.expect_silence().await;
    got
}

/// Message pushes (no system events) received for `quiet`.
async fn pushes_for(ws: &mut Ws, quiet: Duration) -> Vec<Value> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + quiet;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match ws.next(left).await {
            None => return got,
            Some(Event::Text(v)) if v["type"] == "push" && v["subtype"] != "system" => got.push(v),
            Some(Event::Text(_) | Event::Ping) => continue,
            Some(other) => panic!("unexpected {other:?}"),
        }
    }
}

fn ids(pushes: &[Value]) -> Vec<&str> {
    pushes
        .iter()
        .map(|p| p["messageId"].as_str().unwrap())
        .collect()
}

/// Closes `ws`, waits for its lease, and reattaches with the same `sessionId`; returns the new
/// socket and the pushes drained before its `hello_ack`.
async fn bounce(
    broker: &DevBroker,
    ws: Ws,
    m: &crate::support::Member,
    presence: &str,
) -> (Ws, Vec<Value>) {
    let mut ws = ws;
    ws.close().await;
    until_leased(broker, presence).await;
    let (ws, ack, before) = join_with(&broker.url(), hello(m, None, "bob-d")).await;
    assert_eq!(ack["presenceId"], presence);
    (ws, before)
}

#[actix_web::test]
async fn a_dm_claimed_by_a_dead_socket_waits_for_a_trigger_and_client_ack_ends_it() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh
        .head_broker(|o| {
            o.grace_ms = 60_000;
            o.claim_ms = 1_500;
            o.sweep_ms = 100;
        })
        .await;
    let (alice, bob) = (mesh.member("alice"), mesh.member("bob"));
    let (mut a, _, _) = join_with(&broker.url(), hello(&alice, None, "alice-d")).await;
    let (mut b, b_ack, _) = join_with(&broker.url(), hello(&bob, None, "bob-d")).await;
    next_event(&mut a, "peer_joined", SLOW).await.unwrap();
    let presence = b_ack["presenceId"].as_str().unwrap().to_owned();
    b.close().await;
    until_leased(&broker, &presence).await;

    // 1. Pushed into the dead socket: claimed by bob's presence, not delivered.
    let first = send_dm(&mut a, "first", &bob.pubkey).await;
    let claimed = row(&broker, &first).await;
    assert_eq!(claimed.claim_id.as_deref(), Some(presence.as_str()));
    assert!(claimed.claimed_at(now_ms()) && claimed.delivered_at.is_none());

    // 2. A reattach while the claim holds drains nothing (the real broker's gap).
    let (mut b, ack, before) = join_with(&broker.url(), hello(&bob, None, "bob-d")).await;
    assert_eq!(ack["presenceId"], presence.as_str());
    assert!(before.is_empty(), "{before:?}");

    // 3. The sweep releases the claim, but pushes nothing by itself.
    let released = wait_until(SLOW, || async {
        row(&broker, &first).await.claim_expires_at.is_none()
    })
    .await;
    assert!(released, "the sweep never released the claim");
    assert!(pushes_for(&mut b, Duration::from_millis(500))
        .await
        .is_empty());

    // 4. The next trigger (a new DM to bob) pushes it again, then the new one, with the
    //    `client_message_id` echo; bob acks only the first (by broker id).
    let second = send_dm(&mut a, "second", &bob.pubkey).await;
    let got = next_pushes(&mut b, 2).await;
    assert_eq!(ids(&got), [first.as_str(), second.as_str()]);
    assert_eq!(got[0]["client_message_id"], "cm-first");
    b.send(json!({"type": "client_ack", "brokerMessageId": first}))
        .await;
    let acked = wait_until(SLOW, || async {
        row(&broker, &first).await.delivered_at.is_some()
    })
    .await;
    assert!(acked);
    b.expect_silence().await;

    // 5. After the claim expires, the next hello (a reattach) re-pushes only the unacked one.
    let expired = wait_until(SLOW, || async {
        !row(&broker, &second).await.claimed_at(now_ms())
    })
    .await;
    assert!(expired);
    let (mut b, before) = bounce(&broker, b, &bob, &presence).await;
    assert_eq!(ids(&before), [second.as_str()]);
    // Acked by client id this time: never pushed again.
    b.send(json!({"type": "client_ack", "clientMessageId": "cm-second"}))
        .await;
    let acked = wait_until(SLOW, || async {
        row(&broker, &second).await.delivered_at.is_some()
    })
    .await;
    assert!(acked);
    let (mut b, before) = bounce(&broker, b, &bob, &presence).await;
    assert!(before.is_empty(), "{before:?}");
    let third = send_dm(&mut a, "third", &bob.pubkey).await;
    assert_eq!(ids(&next_pushes(&mut b, 1).await), [third.as_str()]);
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn client_ack_only_marks_rows_addressed_to_the_acker() {
    let mesh = Mesh::new(&["alice", "bob", "carol"]);
    let broker = mesh.head_broker(|o| o.claim_ms = 60_000).await;
    let (alice, bob, carol) = (
        mesh.member("alice"),
        mesh.member("bob"),
        mesh.member("carol"),
    );
    let (mut a, _, _) = join_with(&broker.url(), hello(&alice, None, "alice-d")).await;
    let (mut b, _, _) = join_with(&broker.url(), hello(&bob, None, "bob-d")).await;
    let (mut c, _, _) = join_with(&broker.url(), hello(&carol, None, "carol-d")).await;
    let to_bob = send_dm(&mut a, "to-bob", &bob.pubkey).await;
    assert_eq!(ids(&next_pushes(&mut b, 1).await), [to_bob.as_str()]);
    // Carol cannot ack bob's row; an ack without ids is ignored; neither gets a reply.
    c.send(json!({"type": "client_ack", "brokerMessageId": to_bob}))
        .await;
    b.send(json!({"type": "client_ack"})).await;
    c.expect_silence().await;
    b.expect_silence().await;
    assert_eq!(row(&broker, &to_bob).await.delivered_at, None);
    b.send(
        json!({"type": "client_ack", "clientMessageId": "cm-to-bob", "brokerMessageId": to_bob}),
    )
    .await;
    b.expect_silence().await;
    assert!(row(&broker, &to_bob).await.delivered_at.is_some());
    broker.stop().await.unwrap();
}
