//! The counts of `outbox_counts` (kept by triggers) against `COUNT(*)` through every
//! transition, a rolled-back batch, a restart and an adopted file; and the planner does not
//! scan for them.

use super::*;
use crate::readpool::{ReadError, ReadPool};

/// The counts as a full scan sees them.
fn scanned(conn: &Connection) -> Counts {
    let mut c = Counts::default();
    let mut st = conn
        .prepare("SELECT status, count(*) FROM outbox GROUP BY status")
        .unwrap();
    let rows = st
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .unwrap();
    for row in rows {
        let (s, n) = row.unwrap();
        match s.parse::<Status>().unwrap() {
            Status::Pending => c.pending = n,
            Status::Inflight => c.inflight = n,
            Status::Done => c.done = n,
            Status::Dead => c.dead = n,
            Status::Aborted => c.aborted = n,
        }
    }
    c.oldest_pending_enqueued_at = conn
        .query_row(
            "SELECT min(enqueued_at) FROM outbox WHERE status = 'pending'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    c
}

impl From<ReadError> for StoreError {
    fn from(e: ReadError) -> StoreError {
        StoreError::Sql {
            operation: "test read",
            source: rusqlite::Error::InvalidParameterName(e.to_string()),
        }
    }
}

/// Counts from the writer and from a read-only connection both equal the scan.
fn check(conn: &Connection, reads: &ReadPool, step: &str) -> Counts {
    let want = scanned(conn);
    assert_eq!(counts(conn).unwrap(), want, "writer, after {step}");
    assert_eq!(reads.read(counts).unwrap(), want, "reader, after {step}");
    want
}

#[test]
fn counts_stay_exact_through_every_transition_and_a_restart() {
    let (_dir, path, mut conn) = temp_db();
    let reads = ReadPool::new(&path);
    assert_eq!(check(&conn, &reads, "open"), Counts::default());

    let a = queue(&mut conn, send(Some("a"), 1, "*", Some("*")), NOW);
    let b = queue(&mut conn, send(Some("b"), 2, "#t", Some("#t")), NOW + 1);
    let c = queue(&mut conn, send(Some("c"), 3, "@g", Some("@g")), NOW + 2);
    let d = queue(&mut conn, send(Some("d"), 4, "@h", Some("@h")), NOW + 3);
    // A repeated id changes nothing.
    accept1(&mut conn, send(Some("a"), 1, "*", Some("*")), NOW + 4);
    let got = check(&conn, &reads, "accept");
    assert_eq!(
        (got.pending, got.oldest_pending_enqueued_at),
        (4, Some(NOW))
    );

    let claimed = claim_ids(&mut conn, NOW + 10, 10);
    assert_eq!(claimed.len(), 4);
    assert_eq!(check(&conn, &reads, "claim").inflight, 4);

    mark_done(&conn, a, "bm-a", NOW + 11).unwrap();
    mark_done(&conn, a, "bm-a", NOW + 12).unwrap(); // a repeated ack
    mark_dead(&conn, b, "refused", NOW + 12).unwrap();
    mark_retry(&conn, c, "socket closed", true, NOW + 13, 25, NOW + 13).unwrap();
    assert_eq!(
        mark_retry(&conn, d, "e", true, NOW, 1, NOW).unwrap(),
        RetryOutcome::Dead
    );
    let got = check(&conn, &reads, "done/dead/retry");
    assert_eq!(
        (got.done, got.dead, got.pending, got.inflight),
        (1, 2, 1, 0)
    );
    assert_eq!(got.oldest_pending_enqueued_at, Some(NOW + 2));

    // A late ack turns a dead row done.
    mark_done(&conn, b, "bm-b", NOW + 14).unwrap();
    check(&conn, &reads, "late ack");

    let r = requeue(&mut conn, d, None, "test", NOW + 20).unwrap();
    assert_eq!(check(&conn, &reads, "requeue").aborted, 1);
    requeue(&mut conn, r.new_row_id, Some("e".into()), "test", NOW + 21).unwrap();
    check(&conn, &reads, "requeue of a pending row");

    let again = claim_ids(&mut conn, NOW + 30, 10);
    assert!(!again.is_empty());
    release_claims(&mut conn, &again[..1]).unwrap();
    check(&conn, &reads, "release");
    claim_ids(&mut conn, NOW + 31, 10);
    assert!(reset_inflight(&conn).unwrap() > 0);
    check(&conn, &reads, "reset_inflight");

    expire(&conn, NOW + 1_000_000, 10).unwrap();
    assert_eq!(check(&conn, &reads, "expire").pending, 0);

    // A batch that fails rolls its counts back with its rows.
    let bad = NewSend {
        priority: "urgent".into(), // violates the CHECK constraint
        ..send(Some("z"), 9, "*", Some("*"))
    };
    let batch = [send(Some("y"), 8, "*", Some("*")), bad];
    assert!(accept_batch(&mut conn, &batch, NOW + 40).is_err());
    let before = check(&conn, &reads, "rolled-back batch");

    drop(conn);
    let conn = open(&path, Durability::Normal, false).unwrap();
    assert_eq!(check(&conn, &reads, "restart"), before);
}

#[test]
fn counts_of_an_outbox_migrated_with_rows_start_exact() {
    // Files written by older binaries: v2 (main before the session column) and the version
    // just before the counts.
    for from in [2, schema::COUNTS_VERSION - 1] {
        migrated_from(from);
    }
}

fn migrated_from(from: i64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL;").unwrap();
        schema::apply_up_to(&conn, from).unwrap();
        let mut st = conn
            .prepare(
                "INSERT INTO outbox (client_message_id, request_fingerprint, payload,
                   payload_bytes, enqueued_at, next_attempt_at, status, mesh, to_spec, target,
                   priority)
                 VALUES (?1, zeroblob(32), x'00', 1, ?2, ?2, ?3, 'm1', '*', '*', 'next')",
            )
            .unwrap();
        let statuses = [
            "pending", "pending", "inflight", "done", "done", "done", "dead",
        ];
        for (i, status) in statuses.iter().enumerate() {
            st.execute((format!("old-{i}"), NOW + 10 - i as i64, status))
                .unwrap();
        }
    }
    let mut conn = open(&path, Durability::Normal, false).unwrap();
    assert_eq!(
        schema::current_version(&conn).unwrap(),
        schema::SCHEMA_VERSION
    );
    let reads = ReadPool::new(&path);
    let got = check(&conn, &reads, &format!("migration from v{from}"));
    assert_eq!(
        (got.pending, got.inflight, got.done, got.dead, got.aborted),
        (2, 1, 3, 1, 0)
    );
    assert_eq!(got.oldest_pending_enqueued_at, Some(NOW + 9));
    // The triggers run from then on.
    queue(&mut conn, send(Some("new"), 1, "*", Some("*")), NOW + 20);
    assert_eq!(check(&conn, &reads, "accept after migration").pending, 3);
}

#[test]
fn counts_do_not_scan_the_outbox() {
    let (_dir, _path, conn) = temp_db();
    let plan: Vec<String> = conn
        .prepare(
            "EXPLAIN QUERY PLAN SELECT status, n FROM outbox_counts
             UNION ALL SELECT '', (SELECT min(enqueued_at) FROM outbox WHERE status = 'pending')",
        )
        .unwrap()
        .query_map([], |r| r.get::<_, String>(3))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert!(
        plan.iter()
            .all(|l| l != "SCAN outbox" && !l.starts_with("SCAN outbox ")),
        "{plan:?}"
    );
    assert!(
        plan.iter().any(|l| l.contains("outbox_status_enqueued")),
        "{plan:?}"
    );
}
