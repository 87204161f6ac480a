//! Claiming, acks, retries, expiry, waking and target resolution.

use super::*;

fn pk(c: char) -> String {
    c.to_string().repeat(64)
}

/// Rows to destination A (twice) and B, in that enqueue order; returns (a1, a2, b1).
fn three_rows(conn: &mut Connection) -> (i64, i64, i64) {
    let a1 = queue(conn, send(Some("a1"), 1, &pk('a'), Some(&pk('a'))), NOW);
    let a2 = queue(conn, send(Some("a2"), 2, &pk('a'), Some(&pk('a'))), NOW + 1);
    let b1 = queue(conn, send(Some("b1"), 3, &pk('b'), Some(&pk('b'))), NOW + 2);
    (a1, a2, b1)
}

#[test]
fn claim_due_takes_only_the_oldest_row_of_each_destination_in_order() {
    let (_d, _p, mut conn) = temp_db();
    let (a1, a2, b1) = three_rows(&mut conn);
    let rows = claim_due(&mut conn, "m1", NOW + 10, 10, &HashSet::new()).unwrap();
    assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), vec![a1, b1]);
    assert!(rows.iter().all(|r| r.status == Status::Inflight));
    assert_eq!(status(&conn, a2), Status::Pending);
    // A's second row waits while A has a row inflight, then follows once it is done.
    assert!(claim_ids(&mut conn, NOW + 10, 10).is_empty());
    mark_done(&conn, a1, "bm-a1", NOW + 11).unwrap();
    assert_eq!(claim_ids(&mut conn, NOW + 12, 10), vec![a2]);
}

#[test]
fn claim_due_skips_busy_destinations_and_other_meshes_and_honours_limit() {
    let (_d, _p, mut conn) = temp_db();
    let (_a1, _a2, b1) = three_rows(&mut conn);
    let mut other = send(Some("o1"), 9, &pk('c'), Some(&pk('c')));
    other.mesh = "m2".into();
    let o1 = queue(&mut conn, other, NOW);
    let busy: HashSet<String> = [pk('a')].into();
    let rows = claim_due(&mut conn, "m1", NOW + 10, 10, &busy).unwrap();
    assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), vec![b1]);
    assert_eq!(status(&conn, o1), Status::Pending);
    let rows = claim_due(&mut conn, "m2", NOW + 10, 0, &HashSet::new()).unwrap();
    assert!(rows.is_empty());
    let rows = claim_due(&mut conn, "m2", NOW + 10, 1, &HashSet::new()).unwrap();
    assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), vec![o1]);
}

#[test]
fn claim_due_lets_a_backing_off_head_row_hold_back_its_destination() {
    let (_d, _p, mut conn) = temp_db();
    let (a1, a2, b1) = three_rows(&mut conn);
    assert_eq!(claim_ids(&mut conn, NOW + 10, 1), vec![a1]);
    let outcome = mark_retry(&conn, a1, "socket closed", true, NOW + 1000, 25, NOW + 20).unwrap();
    assert_eq!(outcome, RetryOutcome::Pending);
    // a1 is not due; a2 is, but must not overtake it. b1 is free.
    assert_eq!(claim_ids(&mut conn, NOW + 500, 10), vec![b1]);
    assert_eq!(status(&conn, a2), Status::Pending);
    assert_eq!(claim_ids(&mut conn, NOW + 1000, 10), vec![a1]);
}

#[test]
fn mark_retry_counts_an_attempt_only_when_counted() {
    let (_d, _p, mut conn) = temp_db();
    let id = queue(&mut conn, send(Some("x"), 1, "*", Some("*")), NOW);
    claim_ids(&mut conn, NOW, 1);
    mark_retry(&conn, id, "rate_limit: slow down", false, NOW + 1, 25, NOW).unwrap();
    let row = get(&conn, id).unwrap().unwrap();
    assert_eq!((row.status, row.attempts), (Status::Pending, 0));
    assert_eq!(row.last_error.as_deref(), Some("rate_limit: slow down"));
    assert_eq!(row.next_attempt_at, NOW + 1);
    claim_ids(&mut conn, NOW + 1, 1);
    mark_retry(&conn, id, "socket closed", true, NOW + 2, 25, NOW).unwrap();
    assert_eq!(get(&conn, id).unwrap().unwrap().attempts, 1);
}

#[test]
fn mark_retry_makes_the_row_dead_at_max_attempts_but_never_when_uncounted() {
    let (_d, _p, mut conn) = temp_db();
    let id = queue(&mut conn, send(Some("x"), 1, "*", Some("*")), NOW);
    for n in 1..=2 {
        assert_eq!(claim_ids(&mut conn, NOW + n, 1), vec![id]);
        let out = mark_retry(&conn, id, "ack timeout", true, NOW + n, 3, NOW).unwrap();
        assert_eq!(out, RetryOutcome::Pending);
    }
    claim_ids(&mut conn, NOW + 3, 1);
    let out = mark_retry(&conn, id, "no connected peer", false, NOW + 3, 3, NOW).unwrap();
    assert_eq!(out, RetryOutcome::Pending);
    claim_ids(&mut conn, NOW + 4, 1);
    let out = mark_retry(&conn, id, "ack timeout", true, NOW + 4, 3, NOW).unwrap();
    assert_eq!(out, RetryOutcome::Dead);
    let row = get(&conn, id).unwrap().unwrap();
    assert_eq!((row.status, row.attempts), (Status::Dead, 3));
    assert!(claim_ids(&mut conn, NOW + 100, 1).is_empty());
}

#[test]
fn mark_retry_of_a_row_not_inflight_is_refused() {
    let (_d, _p, mut conn) = temp_db();
    let id = queue(&mut conn, send(Some("x"), 1, "*", Some("*")), NOW);
    let err = mark_retry(&conn, id, "e", true, NOW, 25, NOW).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::WrongStatus {
                status: Status::Pending,
                ..
            }
        ),
        "{err}"
    );
    let err = mark_retry(&conn, 999, "e", true, NOW, 25, NOW).unwrap_err();
    assert!(
        matches!(err, StoreError::RowNotFound { id: 999, .. }),
        "{err}"
    );
}

#[test]
fn mark_done_records_the_broker_id_and_a_repeated_ack_changes_nothing() {
    let (_d, _p, mut conn) = temp_db();
    let id = queue(&mut conn, send(Some("x"), 1, "*", Some("*")), NOW);
    claim_ids(&mut conn, NOW, 1);
    mark_done(&conn, id, "bm-1", NOW + 7).unwrap();
    mark_done(&conn, id, "bm-other", NOW + 9).unwrap();
    let row = get(&conn, id).unwrap().unwrap();
    assert_eq!(row.status, Status::Done);
    assert_eq!(row.broker_message_id.as_deref(), Some("bm-1"));
    assert_eq!(row.delivered_at, Some(NOW + 7));
    assert!(matches!(
        mark_done(&conn, 42, "bm", NOW),
        Err(StoreError::RowNotFound { id: 42, .. })
    ));
}

#[test]
fn expire_kills_pending_rows_older_than_max_age_keeping_an_earlier_error() {
    let (_d, _p, mut conn) = temp_db();
    let old = queue(&mut conn, send(Some("old"), 1, "alice", None), NOW);
    let named = queue(&mut conn, send(Some("named"), 2, "bob", None), NOW);
    let young = queue(
        &mut conn,
        send(Some("young"), 3, "carol", None),
        NOW + 5_000,
    );
    let busy: HashSet<String> = ["alice".to_owned()].into();
    let claimed = claim_due(&mut conn, "m1", NOW, 10, &busy).unwrap();
    assert_eq!(
        claimed.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![named]
    );
    mark_retry(&conn, named, "unknown_peer", false, NOW, 25, NOW).unwrap();
    let died = expire(&conn, NOW + 10_000, 6_000).unwrap();
    let mut ids: Vec<i64> = died.iter().map(|r| r.id).collect();
    ids.sort();
    assert_eq!(ids, vec![old, named]);
    assert!(died.iter().all(|r| r.status == Status::Dead));
    let err = |id| get(&conn, id).unwrap().unwrap().last_error;
    assert_eq!(err(old).as_deref(), Some(EXPIRED_ERROR));
    assert_eq!(err(named).as_deref(), Some("unknown_peer"));
    assert_eq!(status(&conn, young), Status::Pending);
}

#[test]
fn wake_makes_backing_off_rows_of_the_named_targets_due_now() {
    let (_d, _p, mut conn) = temp_db();
    let (a1, _a2, b1) = three_rows(&mut conn);
    claim_ids(&mut conn, NOW + 10, 10);
    for id in [a1, b1] {
        mark_retry(&conn, id, "no connected peer", false, NOW + 60_000, 25, NOW).unwrap();
    }
    // a2 was due all along (it waits behind a1), so only a1 changes.
    assert_eq!(wake(&conn, "m1", &[pk('a')], NOW + 20).unwrap(), 1);
    assert_eq!(wake(&conn, "m2", &[pk('b')], NOW + 20).unwrap(), 0);
    assert_eq!(get(&conn, a1).unwrap().unwrap().next_attempt_at, NOW + 20);
    assert_eq!(
        get(&conn, b1).unwrap().unwrap().next_attempt_at,
        NOW + 60_000
    );
    assert_eq!(claim_ids(&mut conn, NOW + 20, 10), vec![a1]);
}

#[test]
fn set_target_resolves_the_name_and_keeps_its_other_rows_queued_behind() {
    let (_d, _p, mut conn) = temp_db();
    let n1 = queue(&mut conn, send(Some("n1"), 1, "alice", None), NOW);
    let n2 = queue(&mut conn, send(Some("n2"), 2, "alice", None), NOW + 1);
    let other = queue(&mut conn, send(Some("o"), 3, "bob", None), NOW + 2);
    assert_eq!(claim_ids(&mut conn, NOW + 5, 1), vec![n1]);
    set_target(&conn, n1, &pk('a')).unwrap();
    let row = |id| get(&conn, id).unwrap().unwrap();
    assert_eq!(row(n1).target, Some(pk('a')));
    assert_eq!(destination_key(&row(n2)), pk('a'));
    assert_eq!(row(other).target, None);
    // n2 now waits behind n1 (inflight) in the resolved destination.
    assert_eq!(claim_ids(&mut conn, NOW + 5, 10), vec![other]);
    mark_retry(&conn, n1, "socket closed", true, NOW + 100, 25, NOW).unwrap();
    assert_eq!(claim_ids(&mut conn, NOW + 50, 10), Vec::<i64>::new());
    assert!(matches!(
        set_target(&conn, 77, "x"),
        Err(StoreError::RowNotFound { id: 77, .. })
    ));
}

#[test]
fn claim_query_seeks_indexes_instead_of_scanning_the_table() {
    let (_d, _p, conn) = temp_db();
    let plan: Vec<String> = conn
        .prepare(&format!(
            "EXPLAIN QUERY PLAN {}",
            crate::outbox::store::claim::DUE_HEADS
        ))
        .unwrap()
        .query_map(("m1", NOW), |r| r.get::<_, String>(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        plan.iter().any(|l| l.contains("outbox_pending_dest")),
        "{plan:?}"
    );
    assert!(
        !plan.iter().any(|l| l.starts_with("SCAN outbox")),
        "{plan:?}"
    );
}

/// Issue 13 item 1, drain side: B to a name is claimed under its own key and resolves to P,
/// while an older row A to P (sent to the full key) backs off. B records P and waits behind
/// A instead of going out first; nothing is counted against B.
#[test]
fn a_name_resolved_at_drain_time_waits_behind_an_older_open_row_of_that_target() {
    let (_d, _p, mut conn) = temp_db();
    let p = pk('p');
    let a = queue(&mut conn, send(Some("a"), 1, &p, Some(&p)), NOW);
    assert_eq!(claim_ids(&mut conn, NOW, 10), vec![a]);
    mark_retry(&conn, a, "socket closed", true, NOW + 10_000, 25, NOW).unwrap();
    let b = queue(&mut conn, send(Some("b"), 2, "bob", None), NOW + 1);
    let b2 = queue(&mut conn, send(Some("b2"), 3, "bob", None), NOW + 2);
    assert_eq!(claim_ids(&mut conn, NOW + 5, 10), vec![b]);
    assert_eq!(settle_target(&mut conn, b, &p).unwrap(), Settled::Behind);
    let row = get(&conn, b).unwrap().unwrap();
    assert_eq!(row.target.as_deref(), Some(p.as_str()));
    assert_eq!(destination_key(&get(&conn, b2).unwrap().unwrap()), p);
    mark_retry(&conn, b, "behind", false, NOW + 6, 25, NOW + 6).unwrap();
    assert_eq!(get(&conn, b).unwrap().unwrap().attempts, 0);
    // A still backs off and holds the destination; then A, B, B2 in order.
    assert!(claim_ids(&mut conn, NOW + 5_000, 10).is_empty());
    for (id, at) in [(a, NOW + 10_000), (b, NOW + 10_010), (b2, NOW + 10_020)] {
        assert_eq!(claim_ids(&mut conn, at, 10), vec![id]);
        mark_done(&conn, id, "bm", at + 1).unwrap();
    }
}

#[test]
fn a_name_resolved_at_drain_time_goes_when_nothing_older_is_open_for_the_target() {
    let (_d, _p, mut conn) = temp_db();
    let p = pk('p');
    let b = queue(&mut conn, send(Some("b"), 1, "bob", None), NOW);
    // A newer row to the full key: not ahead of B.
    let later = queue(&mut conn, send(Some("l"), 2, &p, Some(&p)), NOW + 1);
    assert_eq!(claim_ids(&mut conn, NOW + 5, 1), vec![b]);
    assert_eq!(settle_target(&mut conn, b, &p).unwrap(), Settled::Go);
    // B is now inflight under P: the newer row cannot join it in flight.
    assert_eq!(status(&conn, b), Status::Inflight);
    assert!(claim_ids(&mut conn, NOW + 6, 10).is_empty());
    mark_done(&conn, b, "bm", NOW + 7).unwrap();
    assert_eq!(claim_ids(&mut conn, NOW + 8, 10), vec![later]);
}

#[test]
fn a_name_resolved_at_drain_time_waits_while_another_row_of_the_target_is_inflight() {
    let (_d, _p, mut conn) = temp_db();
    let p = pk('p');
    let b = queue(&mut conn, send(Some("b"), 1, "bob", None), NOW);
    let later = queue(&mut conn, send(Some("l"), 2, &p, Some(&p)), NOW + 1);
    // Both claimed under their own keys before the name was resolved.
    assert_eq!(claim_ids(&mut conn, NOW + 5, 10), vec![b, later]);
    assert_eq!(settle_target(&mut conn, b, &p).unwrap(), Settled::Behind);
}
