//! Operator and housekeeping queries: requeue (SPEC §5.4), listing, counts, payload pruning.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::accept::mint_client_message_id;
use super::rows::{self, COLUMNS};
use super::{Counts, OutboxRow, RequeueError, Requeued, Status, StoreError};

/// Operator requeue, in one transaction: the row becomes `aborted` (`aborted_at`,
/// `aborted_by`, `superseded_by` = the new row) and a new `pending` row, due now, takes its
/// place with a fresh id (`new_client_message_id` or a minted ULID), the old fingerprint,
/// payload and **every routing field** (mesh, to, target, priority, meta, reply_to_id), and
/// no attempts.
///
/// Allowed from `pending`, `dead` and `inflight` (the caller guarantees an inflight row is not
/// really in flight). Refused: unknown id → [`RequeueError::NotFound`]; `done`, `aborted` or a
/// pruned payload → [`RequeueError::NotRequeueable`]; an adopted row without a recorded
/// mesh/destination → [`RequeueError::DestinationUnknown`]; a new id already used →
/// [`RequeueError::IdInUse`].
pub fn requeue(
    conn: &mut Connection,
    id: i64,
    new_client_message_id: Option<String>,
    by: &str,
    now_ms: i64,
) -> Result<Requeued, RequeueError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(StoreError::sql("requeue: begin"))?;
    let old = rows::by_id(&tx, id, "requeue: read row")?.ok_or(RequeueError::NotFound { id })?;
    if matches!(old.status, Status::Done | Status::Aborted) || old.payload.is_none() {
        return Err(RequeueError::NotRequeueable {
            id,
            status: old.status,
        });
    }
    if old.mesh.is_empty() || old.to.is_empty() {
        return Err(RequeueError::DestinationUnknown { id });
    }
    let new_id = new_client_message_id.unwrap_or_else(mint_client_message_id);
    let taken: Option<i64> = tx
        .query_row(
            "SELECT id FROM outbox WHERE client_message_id = ?1",
            [&new_id],
            |r| r.get(0),
        )
        .optional()
        .map_err(StoreError::sql("requeue: look up new id"))?;
    if taken.is_some() {
        return Err(RequeueError::IdInUse {
            client_message_id: new_id,
        });
    }
    tx.execute(
        "INSERT INTO outbox (client_message_id, request_fingerprint, payload, payload_bytes,
             enqueued_at, attempts, next_attempt_at, status, mesh, to_spec, target, priority,
             meta, reply_to_id)
         SELECT ?2, request_fingerprint, payload, payload_bytes, ?3, 0, ?3, 'pending', mesh,
                to_spec, target, priority, meta, reply_to_id
           FROM outbox WHERE id = ?1",
        (id, &new_id, now_ms),
    )
    .map_err(StoreError::sql("requeue: insert new row"))?;
    let new_row_id = tx.last_insert_rowid();
    tx.execute(
        "UPDATE outbox SET status = 'aborted', aborted_at = ?2, aborted_by = ?3,
                superseded_by = ?4
          WHERE id = ?1",
        (id, now_ms, by, new_row_id),
    )
    .map_err(StoreError::sql("requeue: abort old row"))?;
    tx.commit().map_err(StoreError::sql("requeue: commit"))?;
    Ok(Requeued {
        aborted_row_id: id,
        new_row_id,
        new_client_message_id: new_id,
    })
}

/// Up to `limit` rows, optionally of one status, newest first (by `enqueued_at`, then id).
pub fn list(
    conn: &Connection,
    status: Option<Status>,
    limit: usize,
) -> Result<Vec<OutboxRow>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    // Two statements rather than `?1 IS NULL OR status = ?1`, which would hide the
    // (status, enqueued_at) index from the planner.
    let result = match status {
        Some(status) => conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM outbox WHERE status = ?1
                  ORDER BY enqueued_at DESC, id DESC LIMIT ?2"
            ))
            .and_then(|mut st| {
                st.query_map((status.as_str(), limit), rows::from_sql)?
                    .collect()
            }),
        None => conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM outbox ORDER BY enqueued_at DESC, id DESC LIMIT ?1"
            ))
            .and_then(|mut st| st.query_map([limit], rows::from_sql)?.collect()),
    };
    result.map_err(StoreError::sql("list"))
}

/// The row with this id, if any.
pub fn get(conn: &Connection, id: i64) -> Result<Option<OutboxRow>, StoreError> {
    rows::by_id(conn, id, "get")
}

/// Row counts by status and the age of the oldest pending row, in time independent of the
/// outbox size (SPEC §8 "Cost"): five rows of `outbox_counts` (kept by triggers in the
/// transactions that change rows) and one descent of the `(status, enqueued_at)` index. Meant
/// for a read-only connection ([`crate::readpool`]): one read transaction, so the counts and the
/// oldest time are of one snapshot.
pub fn counts(conn: &Connection) -> Result<Counts, StoreError> {
    let mut c = Counts::default();
    let mut st = conn
        .prepare_cached(
            "SELECT status, n FROM outbox_counts
             UNION ALL SELECT '', (SELECT min(enqueued_at) FROM outbox WHERE status = 'pending')",
        )
        .map_err(StoreError::sql("counts"))?;
    let by_status = st
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?))
        })
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(StoreError::sql("counts"))?;
    for (status, value) in by_status {
        if status.is_empty() {
            c.oldest_pending_enqueued_at = value;
            continue;
        }
        let n = value.unwrap_or(0);
        match status.parse::<Status>() {
            Ok(Status::Pending) => c.pending = n,
            Ok(Status::Inflight) => c.inflight = n,
            Ok(Status::Done) => c.done = n,
            Ok(Status::Dead) => c.dead = n,
            Ok(Status::Aborted) => c.aborted = n,
            // The CHECK constraint makes other values impossible; do not fail health on one.
            Err(e) => log::warn!("outbox counts: {e}"),
        }
    }
    Ok(c)
}

/// Drops the payload of `done` rows delivered before `done_before_ms` (their id, fingerprint
/// and broker message id stay, so the id keeps answering duplicates). Returns how many rows
/// were pruned.
pub fn prune_payloads(conn: &Connection, done_before_ms: i64) -> Result<usize, StoreError> {
    conn.execute(
        "UPDATE outbox SET payload = NULL
          WHERE status = 'done' AND payload IS NOT NULL AND delivered_at < ?1",
        [done_before_ms],
    )
    .map_err(StoreError::sql("prune_payloads"))
}
