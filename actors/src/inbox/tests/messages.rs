use serde_json::{json, Value};

use super::{fresh_db, msg};
use crate::inbox::store::{
    insert_message, newest_event_id, prune, query, InboxQuery, Inserted, MessageKind,
};

fn count(conn: &rusqlite::Connection) -> i64 {
    conn.query_row("SELECT COUNT(*) FROM inbox", [], |r| r.get(0))
        .unwrap()
}

fn page(limit: usize, before: Option<i64>) -> InboxQuery {
    InboxQuery {
        limit,
        before,
        ..InboxQuery::default()
    }
}

#[test]
fn same_client_message_id_twice_is_new_then_duplicate_with_one_row() {
    let (_d, _p, mut conn) = fresh_db();
    let first = insert_message(&mut conn, &msg(Some("c1"), "b1", 1_000), 100).unwrap();
    assert!(matches!(first, Inserted::New { .. }));
    // Redelivered by the broker under another message id: still the same message.
    let again = insert_message(&mut conn, &msg(Some("c1"), "b2", 2_000), 100).unwrap();
    assert_eq!(again, Inserted::Duplicate);
    assert_eq!(count(&conn), 1);
    assert_eq!(
        newest_event_id(&conn).unwrap(),
        1,
        "a duplicate journals nothing"
    );
}

#[test]
fn without_client_id_the_broker_id_is_the_dedupe_key_per_mesh() {
    let (_d, _p, mut conn) = fresh_db();
    assert!(matches!(
        insert_message(&mut conn, &msg(None, "b1", 1), 100).unwrap(),
        Inserted::New { .. }
    ));
    let empty_client_id = msg(Some(""), "b1", 2);
    assert_eq!(
        insert_message(&mut conn, &empty_client_id, 100).unwrap(),
        Inserted::Duplicate
    );
    let mut other_mesh = msg(None, "b1", 3);
    other_mesh.mesh = "m2".into();
    assert!(matches!(
        insert_message(&mut conn, &other_mesh, 100).unwrap(),
        Inserted::New { .. }
    ));
    assert_eq!(count(&conn), 2);
}

#[test]
fn undecryptable_message_stores_null_body_and_decrypt_error() {
    let (_d, _p, mut conn) = fresh_db();
    let mut m = msg(Some("c1"), "b1", 1_000);
    m.kind = MessageKind::Undecryptable;
    m.body = Some("c2VjcmV0IGNpcGhlcnRleHQ=".into());
    let Inserted::New { item, event } = insert_message(&mut conn, &m, 100).unwrap() else {
        panic!("expected a new row");
    };
    assert_eq!(item.body, None);
    assert_eq!(item.kind, "undecryptable");
    assert!(item.decrypt_error);
    let data: Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(data["body"], Value::Null);
    assert_eq!(data["decrypt_error"], json!(true));
    let (items, _) = query(&conn, &page(10, None)).unwrap();
    assert_eq!(items, vec![item]);
}

#[test]
fn item_json_has_exactly_the_spec_fields_with_iso_time() {
    let (_d, _p, mut conn) = fresh_db();
    let mut m = msg(Some("c1"), "b1", 1_714_700_000_000);
    m.kind = MessageKind::Dm;
    m.topic = Some("t".into());
    m.reply_to_id = Some("r0".into());
    let Inserted::New { item, .. } = insert_message(&mut conn, &m, 100).unwrap() else {
        panic!("expected a new row");
    };
    assert_eq!(
        item.to_json(),
        json!({
            "id": item.id,
            "client_message_id": "c1",
            "broker_message_id": "b1",
            "mesh": "m1",
            "topic": "t",
            "sender_pubkey": "a".repeat(64),
            "sender_name": "alice",
            "body": "hello b1",
            "received_at": "2024-05-03T01:33:20.000Z",
            "reply_to_id": "r0",
            "kind": "dm",
            "decrypt_error": false,
            "seen_at": null,
            "recipient_pubkey": "e".repeat(64),
            "recipient_kind": "member",
            "sender_member_pubkey": null,
        })
    );
}

#[test]
fn message_event_carries_the_item_under_event_kind_message() {
    let (_d, _p, mut conn) = fresh_db();
    let mut m = msg(Some("c1"), "b1", 1_714_700_000_000);
    m.kind = MessageKind::Dm;
    let Inserted::New { item, event } = insert_message(&mut conn, &m, 100).unwrap() else {
        panic!("expected a new row");
    };
    assert_eq!((event.id, event.kind.as_str()), (1, "message"));
    assert_eq!(event.mesh.as_deref(), Some("m1"));
    assert!(!event.data.contains('\n'));
    let data: Value = serde_json::from_str(&event.data).unwrap();
    let mut expected = item.to_json();
    let obj = expected.as_object_mut().unwrap();
    obj.insert("message_kind".into(), obj["kind"].clone());
    obj.insert("kind".into(), json!("message"));
    obj.insert("ts".into(), json!("2024-05-03T01:33:20.000Z"));
    obj.insert("priority".into(), json!("next"));
    assert_eq!(data, expected);
}

#[test]
fn query_pages_newest_first_by_cursor() {
    let (_d, _p, mut conn) = fresh_db();
    for i in 1..=5 {
        insert_message(&mut conn, &msg(None, &format!("b{i}"), i), 100).unwrap();
    }
    let ids =
        |items: &[crate::inbox::store::InboxItem]| items.iter().map(|i| i.id).collect::<Vec<_>>();
    let (p1, next) = query(&conn, &page(2, None)).unwrap();
    assert_eq!((ids(&p1), next), (vec![5, 4], Some(4)));
    let (p2, next) = query(&conn, &page(2, next)).unwrap();
    assert_eq!((ids(&p2), next), (vec![3, 2], Some(2)));
    let (p3, next) = query(&conn, &page(2, next)).unwrap();
    assert_eq!((ids(&p3), next), (vec![1], None));
    // A page that ends exactly on the last row has no next cursor.
    let (all, next) = query(&conn, &page(5, None)).unwrap();
    assert_eq!((all.len(), next), (5, None));
}

#[test]
fn query_filters_by_since_topic_sender_and_mesh() {
    let (_d, _p, mut conn) = fresh_db();
    let mut a = msg(None, "b1", 100);
    a.topic = Some("ops".into());
    let mut b = msg(None, "b2", 200);
    b.sender_pubkey = "b".repeat(64);
    let mut c = msg(None, "b3", 300);
    c.topic = Some("ops".into());
    c.mesh = "m2".into();
    for m in [&a, &b, &c] {
        insert_message(&mut conn, m, 100).unwrap();
    }
    let brokers = |q: InboxQuery| {
        query(&conn, &q)
            .unwrap()
            .0
            .into_iter()
            .map(|i| i.broker_message_id)
            .collect::<Vec<_>>()
    };
    let base = InboxQuery {
        limit: 10,
        ..InboxQuery::default()
    };
    assert_eq!(
        brokers(InboxQuery {
            since: Some(200),
            ..base.clone()
        }),
        ["b3", "b2"]
    );
    assert_eq!(
        brokers(InboxQuery {
            topic: Some("ops".into()),
            ..base.clone()
        }),
        ["b3", "b1"]
    );
    assert_eq!(
        brokers(InboxQuery {
            from: Some("b".repeat(64)),
            ..base.clone()
        }),
        ["b2"]
    );
    assert_eq!(
        brokers(InboxQuery {
            mesh: Some("m2".into()),
            ..base.clone()
        }),
        ["b3"]
    );
    assert_eq!(
        brokers(InboxQuery {
            topic: Some("ops".into()),
            mesh: Some("m1".into()),
            ..base.clone()
        }),
        ["b1"]
    );
    assert_eq!(brokers(InboxQuery { limit: 1, ..base }), ["b3"]);
}

/// A prune deletes at most its limit, oldest first, so a large one runs as short chunks.
#[test]
fn prune_deletes_at_most_its_limit_oldest_first() {
    let (_d, _p, mut conn) = fresh_db();
    for i in 0..25 {
        insert_message(&mut conn, &msg(None, &format!("b{i:02}"), 1_000 + i), 100).unwrap();
    }
    assert_eq!(prune(&conn, 1_020, 8).unwrap(), 8);
    assert_eq!(prune(&conn, 1_020, 8).unwrap(), 8);
    assert_eq!(prune(&conn, 1_020, 8).unwrap(), 4);
    assert_eq!(prune(&conn, 1_020, 8).unwrap(), 0);
    assert_eq!(count(&conn), 5, "rows at or after the cutoff stay");
}

#[test]
fn prune_deletes_only_rows_older_than_the_cutoff() {
    let (_d, _p, mut conn) = fresh_db();
    for (i, t) in [1_000, 2_000, 3_000].iter().enumerate() {
        insert_message(&mut conn, &msg(None, &format!("b{i}"), *t), 100).unwrap();
    }
    assert_eq!(prune(&conn, 2_000, 100).unwrap(), 1);
    assert_eq!(count(&conn), 2);
    assert_eq!(prune(&conn, 2_000, 100).unwrap(), 0);
    // A pruned message that is redelivered is stored again (retention bounds dedupe too).
    assert!(matches!(
        insert_message(&mut conn, &msg(None, "b0", 4_000), 100).unwrap(),
        Inserted::New { .. }
    ));
}

#[test]
fn one_client_id_from_two_senders_is_two_messages() {
    let (_d, _p, mut conn) = fresh_db();
    let first = msg(Some("same-id"), "bm-1", 1);
    let mut second = msg(Some("same-id"), "bm-2", 2);
    second.sender_pubkey = "b".repeat(64);
    assert!(matches!(
        insert_message(&mut conn, &first, 100).unwrap(),
        Inserted::New { .. }
    ));
    assert!(matches!(
        insert_message(&mut conn, &second, 100).unwrap(),
        Inserted::New { .. }
    ));
    assert_eq!(count(&conn), 2);
    assert_eq!(
        insert_message(&mut conn, &second, 100).unwrap(),
        Inserted::Duplicate
    );
}
