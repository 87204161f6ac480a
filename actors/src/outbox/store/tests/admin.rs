//! Requeue, listing, counts and payload pruning.

use super::*;

fn dm() -> NewSend {
    NewSend {
        session_pubkey: None,
        client_message_id: Some("dm-1".into()),
        fingerprint: [9; 32],
        mesh: "work".into(),
        to: "Alice".into(),
        target: Some("a".repeat(64)),
        priority: "now".into(),
        meta: Some(r#"{"k":1}"#.into()),
        reply_to_id: Some("parent-7".into()),
        payload: "secret for alice".into(),
    }
}

#[test]
fn requeue_of_a_dead_dm_keeps_every_routing_field_and_the_payload() {
    let (_d, _p, mut conn) = temp_db();
    let old = queue(&mut conn, dm(), NOW);
    mark_dead(&conn, old, "ack timeout", NOW).unwrap();
    let r = requeue(&mut conn, old, Some("dm-2".into()), "operator", NOW + 50).unwrap();
    assert_eq!(r.aborted_row_id, old);
    assert_eq!(r.new_client_message_id, "dm-2");
    let o = get(&conn, old).unwrap().unwrap();
    assert_eq!(o.status, Status::Aborted);
    assert_eq!(o.aborted_at, Some(NOW + 50));
    assert_eq!(o.aborted_by.as_deref(), Some("operator"));
    assert_eq!(o.superseded_by, Some(r.new_row_id));
    let n = get(&conn, r.new_row_id).unwrap().unwrap();
    assert_eq!(n.client_message_id, "dm-2");
    assert_eq!(
        (n.status, n.attempts, n.last_error.clone()),
        (Status::Pending, 0, None)
    );
    assert_eq!((n.enqueued_at, n.next_attempt_at), (NOW + 50, NOW + 50));
    let sent = dm();
    assert_eq!(n.mesh, sent.mesh);
    assert_eq!(n.to, sent.to);
    assert_eq!(n.target, sent.target);
    assert_eq!(n.priority, sent.priority);
    assert_eq!(n.meta, sent.meta);
    assert_eq!(n.reply_to_id, sent.reply_to_id);
    assert_eq!(n.payload, Some(sent.payload.clone()));
    assert_eq!(n.payload_bytes, 16);
    assert_eq!(n.fingerprint, sent.fingerprint.to_vec());
}

#[test]
fn requeue_from_pending_or_inflight_mints_a_ulid_when_no_id_is_given() {
    let (_d, _p, mut conn) = temp_db();
    let a = queue(&mut conn, send(Some("a"), 1, "*", Some("*")), NOW);
    let r = requeue(&mut conn, a, None, "ipc", NOW).unwrap();
    assert_eq!(r.new_client_message_id.len(), 26);
    let b = queue(&mut conn, send(Some("b"), 2, "@g", Some("@g")), NOW);
    assert_eq!(claim_ids(&mut conn, NOW, 10), vec![r.new_row_id, b]);
    let r2 = requeue(&mut conn, b, None, "ipc", NOW).unwrap();
    assert_eq!(status(&conn, b), Status::Aborted);
    assert_eq!(status(&conn, r2.new_row_id), Status::Pending);
}

#[test]
fn requeue_of_an_unknown_id_is_not_found() {
    let (_d, _p, mut conn) = temp_db();
    let err = requeue(&mut conn, 404, None, "ipc", NOW).unwrap_err();
    assert!(matches!(err, RequeueError::NotFound { id: 404 }), "{err}");
}

#[test]
fn requeue_of_a_done_row_is_refused() {
    let (_d, _p, mut conn) = temp_db();
    let id = queue(&mut conn, send(Some("a"), 1, "*", Some("*")), NOW);
    claim_ids(&mut conn, NOW, 1);
    mark_done(&conn, id, "bm", NOW).unwrap();
    let err = requeue(&mut conn, id, None, "ipc", NOW).unwrap_err();
    assert!(
        matches!(
            err,
            RequeueError::NotRequeueable {
                status: Status::Done,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(counts(&conn).unwrap().pending, 0);
}

#[test]
fn requeue_of_an_aborted_row_is_refused() {
    let (_d, _p, mut conn) = temp_db();
    let id = queue(&mut conn, send(Some("a"), 1, "*", Some("*")), NOW);
    requeue(&mut conn, id, None, "ipc", NOW).unwrap();
    let err = requeue(&mut conn, id, None, "ipc", NOW).unwrap_err();
    assert!(
        matches!(
            err,
            RequeueError::NotRequeueable {
                status: Status::Aborted,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn requeue_to_an_id_already_used_is_refused_and_changes_nothing() {
    let (_d, _p, mut conn) = temp_db();
    let id = queue(&mut conn, send(Some("a"), 1, "*", Some("*")), NOW);
    queue(&mut conn, send(Some("b"), 2, "*", Some("*")), NOW);
    let err = requeue(&mut conn, id, Some("b".into()), "ipc", NOW).unwrap_err();
    assert!(
        matches!(&err, RequeueError::IdInUse { client_message_id } if client_message_id == "b"),
        "{err}"
    );
    assert_eq!(status(&conn, id), Status::Pending);
    assert_eq!(list(&conn, None, 10).unwrap().len(), 2);
}

#[test]
fn pruned_done_row_keeps_answering_duplicate() {
    let (_d, _p, mut conn) = temp_db();
    let id = queue(&mut conn, send(Some("x"), 1, "*", Some("*")), NOW);
    claim_ids(&mut conn, NOW, 1);
    mark_done(&conn, id, "bm-1", NOW + 1).unwrap();
    assert_eq!(prune_payloads(&conn, NOW + 1).unwrap(), 0);
    assert_eq!(prune_payloads(&conn, NOW + 2).unwrap(), 1);
    let row = get(&conn, id).unwrap().unwrap();
    assert_eq!((row.payload, row.payload_bytes), (None, 7));
    assert_eq!(
        accept1(&mut conn, send(Some("x"), 1, "*", Some("*")), NOW + 3),
        Accepted::Duplicate {
            id,
            client_message_id: "x".into(),
            broker_message_id: Some("bm-1".into())
        }
    );
}

#[test]
fn list_is_newest_first_and_filters_by_status_and_counts_add_up() {
    let (_d, _p, mut conn) = temp_db();
    let a = queue(&mut conn, send(Some("a"), 1, "*", Some("*")), NOW);
    let b = queue(&mut conn, send(Some("b"), 2, "@g", Some("@g")), NOW + 1);
    let c = queue(&mut conn, send(Some("c"), 3, "#t", Some("#t")), NOW + 2);
    mark_dead(&conn, b, "payload too large", NOW).unwrap();
    let all: Vec<i64> = list(&conn, None, 10)
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(all, vec![c, b, a]);
    let pending: Vec<i64> = list(&conn, Some(Status::Pending), 10)
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(pending, vec![c, a]);
    assert_eq!(list(&conn, None, 1).unwrap().len(), 1);
    claim_ids(&mut conn, NOW + 5, 1);
    assert_eq!(
        counts(&conn).unwrap(),
        Counts {
            pending: 1,
            inflight: 1,
            done: 0,
            dead: 1,
            aborted: 0,
            oldest_pending_enqueued_at: Some(NOW + 2),
        }
    );
}
