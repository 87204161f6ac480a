//! Head brokers deliver at least once (BROKER-PROTOCOL §4.4, §7.2): a push that was not
//! `client_ack`ed in time, or whose ack was lost in a crash, comes again. Through the actor:
//! one inbox row, one `message` event, and every copy answered with the same `client_ack`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use serde_json::json;

use super::fresh_db;
use crate::broker::msg::{PushReceived, PushStored};
use crate::events::{EventFilter, EventHub, Subscribe};
use crate::inbox::actor::InboxStore;
use crate::inbox::msg::ListInbox;
use crate::inbox::store::InboxQuery;
use crate::metrics::Metrics;
use crate::wire::Push;

fn push(message_id: &str, client_message_id: Option<&str>, text: &str) -> Push {
    use base64::Engine as _;
    let mut v = json!({
        "type": "push", "messageId": message_id, "meshId": "mesh-1",
        "senderPubkey": "a".repeat(64), "priority": "next", "nonce": "",
        "ciphertext": base64::engine::general_purpose::STANDARD.encode(text),
        "createdAt": "2026-01-01T00:00:00.000Z"
    });
    if let Some(c) = client_message_id {
        v["client_message_id"] = c.into();
    }
    serde_json::from_value(v).unwrap()
}

async fn deliver(inbox: &Addr<InboxStore>, p: Push) -> PushStored {
    inbox
        .send(PushReceived {
            session: None,
            mesh: "m1".into(),
            push: p,
        })
        .await
        .unwrap()
        .unwrap()
}

#[actix::test]
async fn a_redelivered_push_is_one_row_one_event_and_acked_every_time() {
    let (_dir, _path, conn) = fresh_db();
    let hub = EventHub::new(4, 64).start();
    let mut sub = hub
        .send(Subscribe {
            filter: EventFilter::default(),
        })
        .await
        .unwrap()
        .unwrap();
    let metrics = Arc::new(Metrics::default());
    let inbox = InboxStore::new(conn, HashMap::new(), hub.clone(), metrics.clone(), 100).start();

    // With the sender's client id (a head broker echoes it on drained pushes), the same queue
    // row pushed three times (claim expired, crash before the ack), and once more as a second
    // queue row the sender's retry created: all one message.
    let copies = [
        push("q1", Some("c1"), "hello"),
        push("q1", Some("c1"), "hello"),
        push("q1", Some("c1"), "hello"),
        push("q2", Some("c1"), "hello"),
    ];
    for p in copies {
        let broker_id = p.message_id.clone();
        assert_eq!(
            deliver(&inbox, p).await,
            PushStored::Ack {
                client_message_id: "c1".into(),
                broker_message_id: broker_id,
            },
            "every copy is client_acked again"
        );
    }
    // Without a client id the broker's message id is the key.
    for _ in 0..2 {
        assert_eq!(
            deliver(&inbox, push("q3", None, "bye")).await,
            PushStored::Ack {
                client_message_id: "q3".into(),
                broker_message_id: "q3".into(),
            }
        );
    }

    let items = inbox
        .send(ListInbox {
            query: InboxQuery {
                limit: 100,
                ..InboxQuery::default()
            },
            mark_seen: false,
        })
        .await
        .unwrap()
        .unwrap()
        .items;
    let bodies: Vec<_> = items.iter().map(|i| i.body.clone().unwrap()).collect();
    assert_eq!(bodies, ["bye", "hello"], "one row per message");
    let first = sub.rx.recv().await.unwrap();
    let second = sub.rx.recv().await.unwrap();
    assert_eq!(
        (first.kind.as_str(), second.kind.as_str()),
        ("message", "message")
    );
    let more = tokio::time::timeout(Duration::from_millis(200), sub.rx.recv()).await;
    assert!(more.is_err(), "no event for a duplicate: {more:?}");
    assert_eq!(Metrics::get(&metrics.receives), 2);
    assert_eq!(Metrics::get(&metrics.receive_duplicates), 4);
}
