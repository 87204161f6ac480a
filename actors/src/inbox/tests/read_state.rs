//! Read state, housekeeping and session scoping of the inbox (SPEC §12), and the migration
//! of a version-1 database with rows in it.

use super::*;
use crate::inbox::store::{
    delete_row, delete_rows, insert_message, mark_seen, query, InboxQuery, Inserted, Scope,
};

const SESSION_A: &str = "aaaa000000000000000000000000000000000000000000000000000000000000";
const SESSION_B: &str = "bbbb000000000000000000000000000000000000000000000000000000000000";

/// Stores one message and returns its row id.
fn put(conn: &mut Connection, m: InboundMessage) -> i64 {
    match insert_message(conn, &m, 100).unwrap() {
        Inserted::New { item, event } => {
            // The journaled event carries the recipient for SSE scoping.
            let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
            assert_eq!(data["recipient_kind"], m.recipient_kind.as_str());
            assert_eq!(
                data["recipient_pubkey"],
                serde_json::json!(m.recipient_pubkey)
            );
            assert!(data.get("sender_member_pubkey").is_some());
            item.id
        }
        Inserted::Duplicate => panic!("duplicate"),
    }
}

fn to_session(broker_id: &str, pubkey: &str) -> InboundMessage {
    InboundMessage {
        recipient_pubkey: Some(pubkey.into()),
        recipient_kind: RecipientKind::Session,
        ..msg(None, broker_id, 1_000)
    }
}

fn ids(conn: &Connection, q: &InboxQuery) -> Vec<String> {
    let mut v: Vec<String> = query(conn, q)
        .unwrap()
        .0
        .into_iter()
        .map(|i| i.broker_message_id)
        .collect();
    v.sort();
    v
}

fn all() -> InboxQuery {
    InboxQuery {
        limit: 1000,
        ..InboxQuery::default()
    }
}

#[test]
fn marking_seen_is_counted_once_and_unread_only_follows_it() {
    let (_d, _p, mut conn) = fresh_db();
    let a = put(&mut conn, msg(None, "b1", 1_000));
    let b = put(&mut conn, msg(None, "b2", 1_001));
    put(&mut conn, msg(None, "b3", 1_002));
    let unread = InboxQuery {
        unread_only: true,
        ..all()
    };
    assert_eq!(ids(&conn, &unread).len(), 3);
    assert_eq!(mark_seen(&mut conn, &[a, b, 999], None, 5_000).unwrap(), 2);
    assert_eq!(mark_seen(&mut conn, &[a], None, 6_000).unwrap(), 0);
    assert_eq!(ids(&conn, &unread), ["b3"]);
    let items = query(&conn, &all()).unwrap().0;
    let seen: Vec<Option<i64>> = items.iter().map(|i| i.seen_at).collect();
    assert_eq!(seen, [None, Some(5_000), Some(5_000)], "first time kept");
    assert_eq!(
        items[1].to_json()["seen_at"],
        crate::time::iso_from_ms(5_000)
    );
}

#[test]
fn a_session_sees_its_own_and_member_rows_of_its_mesh_only() {
    let (_d, _p, mut conn) = fresh_db();
    put(&mut conn, msg(None, "member", 1_000));
    let for_a = put(&mut conn, to_session("to-a", SESSION_A));
    put(&mut conn, to_session("to-b", SESSION_B));
    put(
        &mut conn,
        InboundMessage {
            mesh: "m2".into(),
            ..msg(None, "other-mesh", 1_000)
        },
    );
    let scope = |pk: Option<&str>| Scope {
        mesh: "m1".into(),
        session_pubkey: pk.map(str::to_string),
    };
    let view = |pk: Option<&str>| InboxQuery {
        scope: Some(scope(pk)),
        ..all()
    };
    assert_eq!(ids(&conn, &view(Some(SESSION_A))), ["member", "to-a"]);
    assert_eq!(ids(&conn, &view(Some(SESSION_B))), ["member", "to-b"]);
    assert_eq!(ids(&conn, &view(None)), ["member"]);
    assert_eq!(ids(&conn, &all()).len(), 4, "the operator sees everything");
    // B can neither mark nor delete A's row.
    let b = scope(Some(SESSION_B));
    assert_eq!(mark_seen(&mut conn, &[for_a], Some(&b), 1).unwrap(), 0);
    assert!(!delete_row(&conn, for_a, Some(&b)).unwrap());
    assert!(delete_row(&conn, for_a, Some(&scope(Some(SESSION_A)))).unwrap());
    assert!(!delete_row(&conn, for_a, None).unwrap());
    // A bulk delete in B's scope leaves the other mesh and nothing of A's.
    assert_eq!(delete_rows(&conn, None, None, Some(&b)).unwrap(), 2);
    assert_eq!(ids(&conn, &all()), ["other-mesh"]);
}

#[test]
fn bulk_delete_filters_by_mesh_and_time() {
    let (_d, _p, mut conn) = fresh_db();
    put(&mut conn, msg(None, "old", 1_000));
    put(&mut conn, msg(None, "new", 9_000));
    put(
        &mut conn,
        InboundMessage {
            mesh: "m2".into(),
            ..msg(None, "m2-old", 1_000)
        },
    );
    assert_eq!(
        delete_rows(&conn, Some("m1"), Some(5_000), None).unwrap(),
        1
    );
    assert_eq!(ids(&conn, &all()), ["m2-old", "new"]);
    assert_eq!(delete_rows(&conn, None, None, None).unwrap(), 2);
}

#[test]
fn a_version_1_database_with_rows_migrates_to_member_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inbox.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(crate::inbox::schema::V1_TABLES).unwrap();
        conn.execute_batch(crate::inbox::schema::V1_INDEXES)
            .unwrap();
        conn.execute_batch(
            "INSERT INTO schema_version (version) VALUES (1);
             INSERT INTO inbox (mesh, dedupe_key, broker_message_id, sender_pubkey, body, kind,
                                received_at)
             VALUES ('m1', 'b:old', 'old', 'aa', 'kept', 'dm', 1000);
             INSERT INTO events (kind, mesh, created_at, data) VALUES ('message', 'm1', 1, '{}');",
        )
        .unwrap();
    }
    let mut conn = store::open(&path, true).unwrap();
    let items = query(&conn, &all()).unwrap().0;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].body.as_deref(), Some("kept"));
    assert_eq!(items[0].recipient_kind, "member");
    assert_eq!(items[0].recipient_pubkey, None);
    assert_eq!(items[0].seen_at, None);
    let version: i64 = conn
        .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, store::SCHEMA_VERSION);
    // The journal kept its ids: the next event continues after the old one.
    let next = put(&mut conn, msg(None, "new", 2_000));
    assert!(next > items[0].id);
    let newest = store::newest_event_id(&conn).unwrap();
    assert_eq!(newest, 2);
    // Session-scoped reads see the migrated member row.
    let scoped = InboxQuery {
        scope: Some(Scope {
            mesh: "m1".into(),
            session_pubkey: Some(SESSION_A.into()),
        }),
        ..all()
    };
    assert_eq!(ids(&conn, &scoped), ["new", "old"]);
}
