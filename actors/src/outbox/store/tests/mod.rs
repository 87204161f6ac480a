//! Unit tests of the outbox store, against temp-file databases. Shared helpers here; one file
//! per area.

mod accept;
mod admin;
mod claim;
mod counts;
mod drain;
mod open;

use std::collections::HashSet;
use std::path::PathBuf;

use rusqlite::Connection;
use tempfile::TempDir;

use super::*;

/// A fixed "now" so tests never depend on the clock.
pub(super) const NOW: i64 = 1_700_000_000_000;

/// A fresh database in its own temp dir (kept alive by the returned `TempDir`).
pub(super) fn temp_db() -> (TempDir, PathBuf, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let conn = open(&path, Durability::Normal, false).unwrap();
    (dir, path, conn)
}

/// A broadcast-ish send with the given id, fingerprint seed and destination.
pub(super) fn send(id: Option<&str>, fp: u8, to: &str, target: Option<&str>) -> NewSend {
    NewSend {
        session_pubkey: None,
        client_message_id: id.map(str::to_owned),
        fingerprint: [fp; 32],
        mesh: "m1".to_owned(),
        to: to.to_owned(),
        target: target.map(str::to_owned),
        priority: "next".to_owned(),
        meta: None,
        reply_to_id: None,
        payload: format!("hello {fp}").into_bytes(),
    }
}

/// Accepts one send at `now` and returns its answer.
pub(super) fn accept1(conn: &mut Connection, s: NewSend, now: i64) -> Accepted {
    let mut v = accept_batch(conn, &[s], now).unwrap();
    assert_eq!(v.len(), 1);
    v.remove(0)
}

/// Accepts one send and returns its row id (it must be new).
pub(super) fn queue(conn: &mut Connection, s: NewSend, now: i64) -> i64 {
    match accept1(conn, s, now) {
        Accepted::Queued { id, .. } => id,
        other => panic!("expected Queued, got {other:?}"),
    }
}

/// Claims due rows of mesh `m1` with no busy destination; returns their ids.
pub(super) fn claim_ids(conn: &mut Connection, now: i64, limit: usize) -> Vec<i64> {
    claim_due(conn, "m1", now, limit, &HashSet::new())
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect()
}

/// The status of a row that must exist.
pub(super) fn status(conn: &Connection, id: i64) -> Status {
    get(conn, id).unwrap().unwrap().status
}

#[test]
fn status_round_trips_through_its_column_value() {
    for s in [
        Status::Pending,
        Status::Inflight,
        Status::Done,
        Status::Dead,
        Status::Aborted,
    ] {
        assert_eq!(s.as_str().parse::<Status>().unwrap(), s);
    }
    assert!("queued".parse::<Status>().is_err());
}

#[test]
fn full_jitter_stays_below_the_capped_exponential_bound() {
    let mut rng = rand::thread_rng();
    for attempt in 0..70u32 {
        let bound = 500u64.saturating_mul(1u64.checked_shl(attempt).unwrap_or(u64::MAX));
        let bound = bound.min(30_000);
        for _ in 0..50 {
            assert!(full_jitter_ms(attempt, 500, 30_000, &mut rng) < bound);
        }
    }
    assert_eq!(full_jitter_ms(3, 0, 30_000, &mut rng), 0);
    // Over many draws at the cap, values spread over the whole range.
    let max = (0..2000)
        .map(|_| full_jitter_ms(20, 500, 30_000, &mut rng))
        .max()
        .unwrap();
    assert!(max > 25_000, "max draw {max}");
}

#[test]
fn destination_key_is_target_else_to() {
    let (_d, _p, mut conn) = temp_db();
    let a = queue(&mut conn, send(Some("a"), 1, "alice", None), NOW);
    let b = queue(
        &mut conn,
        send(Some("b"), 2, "Bob", Some(&"b".repeat(64))),
        NOW,
    );
    assert_eq!(destination_key(&get(&conn, a).unwrap().unwrap()), "alice");
    assert_eq!(
        destination_key(&get(&conn, b).unwrap().unwrap()),
        "b".repeat(64)
    );
}
