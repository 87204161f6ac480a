//! The SPEC §5.3 table, one test per cell, plus batching, id minting and concurrency.

use std::sync::{Arc, Barrier};

use super::*;

/// A row with id `x` and fingerprint seed 1 brought into `status` through the real API.
fn row_in(conn: &mut Connection, status: Status) -> i64 {
    let id = queue(conn, send(Some("x"), 1, "*", Some("*")), NOW);
    match status {
        Status::Pending => {}
        Status::Inflight => assert_eq!(claim_ids(conn, NOW, 10), vec![id]),
        Status::Done => {
            assert_eq!(claim_ids(conn, NOW, 10), vec![id]);
            mark_done(conn, id, "bm-1", NOW + 5).unwrap();
        }
        Status::Dead => mark_dead(conn, id, "blocked by recipient grants", NOW).unwrap(),
        Status::Aborted => {
            requeue(conn, id, Some("x2".into()), "test", NOW).unwrap();
        }
    }
    assert_eq!(super::status(conn, id), status);
    id
}

/// Accepts id `x` again, with the same fingerprint (seed 1) or another one (seed 2).
fn again(conn: &mut Connection, same: bool) -> Accepted {
    let fp = if same { 1 } else { 2 };
    accept1(conn, send(Some("x"), fp, "*", Some("*")), NOW + 10)
}

fn conflict_of(a: Accepted) -> (Conflict, Option<String>, Option<String>) {
    match a {
        Accepted::Conflict {
            client_message_id,
            conflict,
            broker_message_id,
            reason,
        } => {
            assert_eq!(client_message_id, "x");
            (conflict, broker_message_id, reason)
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
}

#[test]
fn accept_of_new_id_inserts_a_pending_row_and_answers_queued() {
    let (_d, _p, mut conn) = temp_db();
    let a = accept1(&mut conn, send(Some("x"), 1, "*", Some("*")), NOW);
    let Accepted::Queued {
        id,
        client_message_id,
    } = a
    else {
        panic!("expected Queued, got {a:?}")
    };
    assert_eq!(client_message_id, "x");
    let row = get(&conn, id).unwrap().unwrap();
    assert_eq!(row.status, Status::Pending);
    assert_eq!(row.fingerprint, vec![1; 32]);
    assert_eq!(
        (row.enqueued_at, row.next_attempt_at, row.attempts),
        (NOW, NOW, 0)
    );
    assert_eq!(row.payload_bytes, 7);
}

#[test]
fn accept_of_pending_row_with_same_fingerprint_answers_queued_without_change() {
    let (_d, _p, mut conn) = temp_db();
    let id = row_in(&mut conn, Status::Pending);
    let before = get(&conn, id).unwrap();
    let a = again(&mut conn, true);
    assert_eq!(
        a,
        Accepted::Queued {
            id,
            client_message_id: "x".into()
        }
    );
    assert_eq!(get(&conn, id).unwrap(), before);
    assert_eq!(counts(&conn).unwrap().pending, 1);
}

#[test]
fn accept_of_pending_row_with_other_fingerprint_answers_pending_mismatch() {
    let (_d, _p, mut conn) = temp_db();
    row_in(&mut conn, Status::Pending);
    let (c, bm, reason) = conflict_of(again(&mut conn, false));
    assert_eq!(c, Conflict::PendingMismatch);
    assert_eq!(c.code(), "outbox_pending_fingerprint_mismatch");
    assert_eq!((bm, reason), (None, None));
}

#[test]
fn accept_of_inflight_row_with_same_fingerprint_answers_inflight() {
    let (_d, _p, mut conn) = temp_db();
    let id = row_in(&mut conn, Status::Inflight);
    assert_eq!(
        again(&mut conn, true),
        Accepted::Inflight {
            id,
            client_message_id: "x".into()
        }
    );
}

#[test]
fn accept_of_inflight_row_with_other_fingerprint_answers_inflight_mismatch() {
    let (_d, _p, mut conn) = temp_db();
    row_in(&mut conn, Status::Inflight);
    let (c, _, _) = conflict_of(again(&mut conn, false));
    assert_eq!(c, Conflict::InflightMismatch);
    assert_eq!(c.code(), "outbox_inflight_fingerprint_mismatch");
}

#[test]
fn accept_of_done_row_with_same_fingerprint_answers_duplicate() {
    let (_d, _p, mut conn) = temp_db();
    let id = row_in(&mut conn, Status::Done);
    assert_eq!(
        again(&mut conn, true),
        Accepted::Duplicate {
            id,
            client_message_id: "x".into(),
            broker_message_id: Some("bm-1".into())
        }
    );
}

#[test]
fn accept_of_done_row_with_other_fingerprint_answers_done_mismatch_with_broker_id() {
    let (_d, _p, mut conn) = temp_db();
    row_in(&mut conn, Status::Done);
    let (c, bm, _) = conflict_of(again(&mut conn, false));
    assert_eq!(c, Conflict::DoneMismatch);
    assert_eq!(c.code(), "outbox_done_fingerprint_mismatch");
    assert_eq!(bm.as_deref(), Some("bm-1"));
}

#[test]
fn accept_of_dead_row_with_same_fingerprint_answers_dead_match_with_reason() {
    let (_d, _p, mut conn) = temp_db();
    row_in(&mut conn, Status::Dead);
    let (c, _, reason) = conflict_of(again(&mut conn, true));
    assert_eq!(c, Conflict::DeadMatch);
    assert_eq!(c.code(), "outbox_dead_fingerprint_match");
    assert_eq!(reason.as_deref(), Some("blocked by recipient grants"));
}

#[test]
fn accept_of_dead_row_with_other_fingerprint_answers_dead_mismatch() {
    let (_d, _p, mut conn) = temp_db();
    row_in(&mut conn, Status::Dead);
    let (c, _, _) = conflict_of(again(&mut conn, false));
    assert_eq!(c, Conflict::DeadMismatch);
    assert_eq!(c.code(), "outbox_dead_fingerprint_mismatch");
}

#[test]
fn accept_of_aborted_row_with_same_fingerprint_answers_aborted_match() {
    let (_d, _p, mut conn) = temp_db();
    row_in(&mut conn, Status::Aborted);
    let (c, _, _) = conflict_of(again(&mut conn, true));
    assert_eq!(c, Conflict::AbortedMatch);
    assert_eq!(c.code(), "outbox_aborted_fingerprint_match");
}

#[test]
fn accept_of_aborted_row_with_other_fingerprint_answers_aborted_mismatch() {
    let (_d, _p, mut conn) = temp_db();
    row_in(&mut conn, Status::Aborted);
    let (c, _, _) = conflict_of(again(&mut conn, false));
    assert_eq!(c, Conflict::AbortedMismatch);
    assert_eq!(c.code(), "outbox_aborted_fingerprint_mismatch");
}

#[test]
fn accept_batch_answers_in_order_and_second_send_of_one_id_sees_the_first_row() {
    let (_d, _p, mut conn) = temp_db();
    let batch = [
        send(Some("a"), 1, "*", Some("*")),
        send(Some("b"), 2, "*", Some("*")),
        send(Some("a"), 1, "*", Some("*")),
        send(Some("a"), 3, "*", Some("*")),
    ];
    let answers = accept_batch(&mut conn, &batch, NOW).unwrap();
    let Accepted::Queued { id: a_id, .. } = answers[0] else {
        panic!("{answers:?}")
    };
    assert!(
        matches!(&answers[1], Accepted::Queued { client_message_id, .. } if client_message_id == "b")
    );
    assert_eq!(
        answers[2],
        Accepted::Queued {
            id: a_id,
            client_message_id: "a".into()
        }
    );
    assert_eq!(conflict_of_id(&answers[3]), Conflict::PendingMismatch);
    assert_eq!(counts(&conn).unwrap().pending, 2);
}

fn conflict_of_id(a: &Accepted) -> Conflict {
    match a {
        Accepted::Conflict { conflict, .. } => *conflict,
        other => panic!("expected Conflict, got {other:?}"),
    }
}

#[test]
fn accept_without_id_mints_a_unique_26_char_ulid() {
    let (_d, _p, mut conn) = temp_db();
    let batch: Vec<NewSend> = (0..50).map(|i| send(None, i, "*", Some("*"))).collect();
    let ids: Vec<String> = accept_batch(&mut conn, &batch, NOW)
        .unwrap()
        .into_iter()
        .map(|a| match a {
            Accepted::Queued {
                client_message_id, ..
            } => client_message_id,
            other => panic!("expected Queued, got {other:?}"),
        })
        .collect();
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), 50);
    for id in &ids {
        assert_eq!(id.len(), 26);
        assert!(id.parse::<ulid::Ulid>().is_ok(), "{id} is not a ULID");
    }
    let minted = mint_client_message_id();
    assert_eq!(minted.len(), 26);
    assert_ne!(minted, mint_client_message_id());
}

#[test]
fn concurrent_accepts_of_one_id_from_16_connections_make_exactly_one_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    // The file is created (WAL, migrated) once, as the daemon does at startup; the race under
    // test is the accept, not 16 first-time opens switching the journal mode at once.
    drop(open(&path, Durability::Normal, false).unwrap());
    let barrier = Arc::new(Barrier::new(16));
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let (path, barrier) = (path.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let mut conn = open(&path, Durability::Normal, false).unwrap();
                accept1(&mut conn, send(Some("same"), 7, "*", Some("*")), NOW)
            })
        })
        .collect();
    let answers: Vec<Accepted> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let conn = open(&path, Durability::Normal, false).unwrap();
    let rows = list(&conn, None, 100).unwrap();
    assert_eq!(rows.len(), 1);
    for a in answers {
        assert_eq!(
            a,
            Accepted::Queued {
                id: rows[0].id,
                client_message_id: "same".into()
            }
        );
    }
}

#[test]
fn a_name_resolved_now_queues_behind_earlier_unresolved_sends_to_that_name() {
    let (_d, _p, mut conn) = temp_db();
    let pk = "ab".repeat(32);
    // Accepted while the broker was down: the name waits unresolved.
    let first = queue(&mut conn, send(Some("n1"), 1, "bob", None), NOW);
    // Accepted after the link came up, resolved at accept time: must not overtake `first`.
    let second = queue(&mut conn, send(Some("n2"), 2, "bob", Some(&pk)), NOW + 1);
    assert_eq!(get(&conn, second).unwrap().unwrap().target, None);
    assert_eq!(claim_ids(&mut conn, NOW + 5, 10), vec![first]);
    // Once nothing waits unresolved, a resolved name keeps its target.
    mark_done(&conn, first, "bm", NOW + 6).unwrap();
    set_target(&conn, second, &pk).unwrap();
    let third = queue(&mut conn, send(Some("n3"), 3, "bob", Some(&pk)), NOW + 7);
    assert_eq!(
        get(&conn, third).unwrap().unwrap().target.as_deref(),
        Some(pk.as_str())
    );
}

/// Issue 13 item 1: row A to "bob" resolved to P backs off; after a restart (empty peer
/// cache) row B to "bob" is accepted unresolved. B must take A's target and wait behind it,
/// never go out under its own key first, and never be in flight beside A.
#[test]
fn an_unresolved_name_reuses_the_target_of_the_newest_open_row_and_waits_behind_it() {
    let (_d, _p, mut conn) = temp_db();
    let pk = "ab".repeat(32);
    let a = queue(&mut conn, send(Some("a"), 1, "bob", Some(&pk)), NOW);
    assert_eq!(claim_ids(&mut conn, NOW, 10), vec![a]);
    mark_retry(&conn, a, "socket closed", true, NOW + 10_000, 25, NOW).unwrap();
    // Restart: inflight rows go back to pending; the peer cache starts empty.
    reset_inflight(&conn).unwrap();
    let b = queue(&mut conn, send(Some("b"), 2, "bob", None), NOW + 1);
    assert_eq!(
        get(&conn, b).unwrap().unwrap().target.as_deref(),
        Some(pk.as_str())
    );
    // A backs off: B must not be claimed before it.
    assert!(claim_ids(&mut conn, NOW + 5_000, 10).is_empty());
    assert_eq!(claim_ids(&mut conn, NOW + 10_000, 10), vec![a]);
    // One in flight per recipient: B waits while A is inflight, then follows.
    assert!(claim_ids(&mut conn, NOW + 10_001, 10).is_empty());
    mark_done(&conn, a, "bm-a", NOW + 10_002).unwrap();
    assert_eq!(claim_ids(&mut conn, NOW + 10_003, 10), vec![b]);
}

#[test]
fn an_unresolved_name_with_no_resolved_open_row_stays_unresolved() {
    let (_d, _p, mut conn) = temp_db();
    let pk = "ab".repeat(32);
    // A done row and a row of another mesh lend no target.
    let done = queue(&mut conn, send(Some("d"), 1, "bob", Some(&pk)), NOW);
    claim_ids(&mut conn, NOW, 10);
    mark_done(&conn, done, "bm", NOW).unwrap();
    let mut other = send(Some("o"), 2, "bob", Some(&pk));
    other.mesh = "m2".into();
    queue(&mut conn, other, NOW);
    let b = queue(&mut conn, send(Some("b"), 3, "bob", None), NOW + 1);
    assert_eq!(get(&conn, b).unwrap().unwrap().target, None);
    // The newest open row decides: an unresolved one keeps the next unresolved too.
    let c = queue(&mut conn, send(Some("c"), 4, "bob", None), NOW + 2);
    assert_eq!(get(&conn, c).unwrap().unwrap().target, None);
}

#[test]
fn the_open_row_lookup_of_an_unresolved_accept_descends_to_the_name_or_walks_only_inflight() {
    let (_d, _p, conn) = temp_db();
    let plan = |query: &str| -> Vec<String> {
        conn.prepare(&format!("EXPLAIN QUERY PLAN {query}"))
            .unwrap()
            .query_map(("m1", "bob"), |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let [pending, inflight] = crate::outbox::store::accept::NEWEST_OPEN;
    // Pending: a descent to the name (`mesh=? AND to_spec=?`), not a walk of the queue.
    let p = plan(pending);
    assert!(
        p.iter().any(|l| l.contains("outbox_pending_named")
            && l.contains("mesh=?")
            && l.contains("to_spec=?")),
        "{p:?}"
    );
    // In flight: the in-flight rows only (a bounded set), newest first, no sort.
    let i = plan(inflight);
    assert!(
        i.iter().all(|l| l.starts_with("SEARCH outbox USING INDEX")),
        "{i:?}"
    );
    for l in p.iter().chain(&i) {
        assert!(!l.contains("TEMP B-TREE") && !l.starts_with("SCAN"), "{l}");
    }
}

#[test]
fn a_lookup_off_the_writer_answers_a_repeated_id_as_the_writer_would() {
    let (_dir, _path, mut conn) = temp_db();
    assert_eq!(lookup(&conn, "free", &[1; 32]).unwrap(), None);
    let p = queue(&mut conn, send(Some("p"), 1, "*", Some("*")), NOW);
    let i = queue(&mut conn, send(Some("i"), 2, "#a", Some("#a")), NOW);
    let d = queue(&mut conn, send(Some("d"), 3, "#b", Some("#b")), NOW);
    let x = queue(&mut conn, send(Some("x"), 4, "#c", Some("#c")), NOW);
    claim_ids(&mut conn, NOW, 10);
    release_claims(&mut conn, &[p]).unwrap();
    mark_done(&conn, d, "bm-d", NOW + 1).unwrap();
    mark_dead(&conn, x, "refused", NOW + 1).unwrap();
    let _ = i;
    for (id, fp, to) in [
        ("p", 1, "*"),
        ("i", 2, "#a"),
        ("d", 3, "#b"),
        ("x", 4, "#c"),
    ] {
        for fp in [fp, 99] {
            let read = lookup(&conn, id, &[fp; 32]).unwrap();
            let written = accept1(&mut conn, send(Some(id), fp, to, Some(to)), NOW + 2);
            assert_eq!(read, Some(written), "{id} fp {fp}");
        }
    }
}
