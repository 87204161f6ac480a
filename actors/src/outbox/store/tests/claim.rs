//! The per-destination window of [`claim_window`].

use std::collections::HashMap;

use super::*;

fn pk(c: char) -> String {
    c.to_string().repeat(64)
}

fn ids(rows: Vec<OutboxRow>) -> Vec<i64> {
    rows.into_iter().map(|r| r.id).collect()
}

/// `n` rows to `dest`, enqueued one ms apart from `from`.
fn rows_to(conn: &mut Connection, dest: &str, n: usize, from: i64) -> Vec<i64> {
    (0..n)
        .map(|i| {
            let id = format!("{}-{i}", &dest[..1]);
            queue(
                conn,
                send(Some(&id), i as u8, dest, Some(dest)),
                from + i as i64,
            )
        })
        .collect()
}

#[test]
fn claim_window_takes_a_run_of_each_destination_in_fifo_order_round_robin() {
    let (_d, _p, mut conn) = temp_db();
    let a = rows_to(&mut conn, &pk('a'), 5, NOW);
    let b = rows_to(&mut conn, &pk('b'), 2, NOW + 100);
    let got = ids(claim_window(&mut conn, "m1", NOW + 200, 10, 3, &HashMap::new()).unwrap());
    // Round-robin across destinations (oldest head first), each destination in FIFO order.
    assert_eq!(got, vec![a[0], b[0], a[1], b[1], a[2]]);
    // A has three in flight; with the caller's count of them, it may take up to the window.
    let busy: HashMap<String, InFlight> = [(pk('a'), InFlight::Rows(1))].into();
    mark_done(&conn, a[0], "m", NOW).unwrap();
    mark_done(&conn, a[1], "m", NOW).unwrap();
    let got = ids(claim_window(&mut conn, "m1", NOW + 200, 10, 3, &busy).unwrap());
    assert_eq!(got, vec![a[3], a[4]]);
}

#[test]
fn claim_window_leaves_blocked_and_unknown_busy_destinations_and_honours_the_limit() {
    let (_d, _p, mut conn) = temp_db();
    let a = rows_to(&mut conn, &pk('a'), 3, NOW);
    let b = rows_to(&mut conn, &pk('b'), 3, NOW + 100);
    assert_eq!(
        ids(claim_window(&mut conn, "m1", NOW + 200, 1, 8, &HashMap::new()).unwrap()),
        vec![a[0]]
    );
    // A has a row inflight the caller does not list: left alone.
    let got = ids(claim_window(&mut conn, "m1", NOW + 200, 2, 8, &HashMap::new()).unwrap());
    assert_eq!(got, vec![b[0], b[1]]);
    let busy: HashMap<String, InFlight> =
        [(pk('a'), InFlight::Blocked), (pk('b'), InFlight::Rows(2))].into();
    assert!(claim_window(&mut conn, "m1", NOW + 200, 8, 2, &busy)
        .unwrap()
        .is_empty());
}

#[test]
fn claim_window_stops_a_run_at_a_row_that_is_not_due() {
    let (_d, _p, mut conn) = temp_db();
    let a = rows_to(&mut conn, &pk('a'), 4, NOW);
    let got = ids(claim_window(&mut conn, "m1", NOW + 10, 8, 8, &HashMap::new()).unwrap());
    assert_eq!(got, a);
    // Row 0 failed; rows 1..3 went back behind it (due now), row 2 with a later due time.
    mark_retry(&conn, a[0], "x", true, NOW + 1_000, 25, NOW).unwrap();
    mark_retry(&conn, a[1], "behind", false, NOW, 25, NOW).unwrap();
    mark_retry(&conn, a[2], "behind", false, NOW + 5_000, 25, NOW).unwrap();
    mark_retry(&conn, a[3], "behind", false, NOW, 25, NOW).unwrap();
    assert!(
        claim_window(&mut conn, "m1", NOW + 500, 8, 8, &HashMap::new())
            .unwrap()
            .is_empty()
    );
    let got = ids(claim_window(&mut conn, "m1", NOW + 1_000, 8, 8, &HashMap::new()).unwrap());
    assert_eq!(
        got,
        vec![a[0], a[1]],
        "the run stops before the row not yet due"
    );
}

#[test]
fn claim_window_sends_a_row_to_an_unresolved_name_alone() {
    let (_d, _p, mut conn) = temp_db();
    let n1 = queue(&mut conn, send(Some("n1"), 1, "bob", None), NOW);
    let _n2 = queue(&mut conn, send(Some("n2"), 2, "bob", None), NOW + 1);
    let got = ids(claim_window(&mut conn, "m1", NOW + 10, 8, 8, &HashMap::new()).unwrap());
    assert_eq!(got, vec![n1]);
    let busy: HashMap<String, InFlight> = [("bob".to_string(), InFlight::Rows(1))].into();
    assert!(claim_window(&mut conn, "m1", NOW + 10, 8, 8, &busy)
        .unwrap()
        .is_empty());
}
