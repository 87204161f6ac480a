//! The drain state machine of SPEC §5.4: claiming due rows in per-destination FIFO order,
//! applying broker outcomes, crash recovery, expiry and waking rows when a peer returns.

use rusqlite::{Connection, TransactionBehavior};

use super::rows::{self, not_updated, COLUMNS};
use super::{OutboxRow, RetryOutcome, StoreError, EXPIRED_ERROR};

/// Records the broker's `queued:true` ack: the row becomes `done` with its message id.
///
/// Applies to `inflight` rows and also to `pending`/`dead` ones (an ack that arrives after
/// its timeout already put the row back: the broker did queue it). A row already `done` is
/// left as it is (a repeated ack). An `aborted` row is [`StoreError::WrongStatus`].
pub fn mark_done(
    conn: &Connection,
    id: i64,
    broker_message_id: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    const OP: &str = "mark_done";
    let n = conn
        .prepare_cached(
            "UPDATE outbox SET status = 'done', broker_message_id = ?2, delivered_at = ?3
              WHERE id = ?1 AND status IN ('inflight','pending','dead')",
        )
        .and_then(|mut st| st.execute((id, broker_message_id, now_ms)))
        .map_err(StoreError::sql(OP))?;
    if n == 1 {
        return Ok(());
    }
    match not_updated(conn, id, OP) {
        StoreError::WrongStatus {
            status: super::Status::Done,
            ..
        } => Ok(()),
        e => Err(e),
    }
}

/// Puts an `inflight` row back to `pending`, due at `next_attempt_at`, with `error` as
/// `last_error`. A `counted` failure adds one attempt; reaching `max_attempts` makes the row
/// `dead` instead. Uncounted failures (rate limit, offline peer, unresolved name) never kill.
/// (`_now_ms` is part of the drain API for symmetry; the row records no failure time.)
pub fn mark_retry(
    conn: &Connection,
    id: i64,
    error: &str,
    counted: bool,
    next_attempt_at: i64,
    max_attempts: i64,
    _now_ms: i64,
) -> Result<RetryOutcome, StoreError> {
    const OP: &str = "mark_retry";
    let status: Option<String> = conn
        .prepare_cached(
            "UPDATE outbox SET
                 attempts = attempts + ?3,
                 last_error = ?2,
                 next_attempt_at = ?4,
                 status = CASE WHEN ?3 = 1 AND attempts + 1 >= ?5 THEN 'dead' ELSE 'pending' END
              WHERE id = ?1 AND status = 'inflight'
              RETURNING status",
        )
        .and_then(|mut st| {
            let mut rows =
                st.query((id, error, i64::from(counted), next_attempt_at, max_attempts))?;
            rows.next()?.map(|r| r.get(0)).transpose()
        })
        .map_err(StoreError::sql(OP))?;
    match status.as_deref() {
        Some("dead") => Ok(RetryOutcome::Dead),
        Some(_) => Ok(RetryOutcome::Pending),
        None => Err(not_updated(conn, id, OP)),
    }
}

/// Makes a `pending` or `inflight` row `dead` with `error` as `last_error` (a permanent
/// broker refusal, or a row that cannot be sent). (`_now_ms`: see [`mark_retry`].)
pub fn mark_dead(conn: &Connection, id: i64, error: &str, _now_ms: i64) -> Result<(), StoreError> {
    const OP: &str = "mark_dead";
    let n = conn
        .prepare_cached(
            "UPDATE outbox SET status = 'dead', last_error = ?2
              WHERE id = ?1 AND status IN ('pending','inflight')",
        )
        .and_then(|mut st| st.execute((id, error)))
        .map_err(StoreError::sql(OP))?;
    if n == 1 {
        Ok(())
    } else {
        Err(not_updated(conn, id, OP))
    }
}

/// Records the targetSpec a name or prefix resolved to at drain time.
///
/// Every other `pending` row of the same mesh sent to the same unresolved `to` is resolved
/// with it, so those rows stay queued behind this one in the new destination's FIFO instead
/// of overtaking it under the old key.
pub fn set_target(conn: &Connection, id: i64, target: &str) -> Result<(), StoreError> {
    const OP: &str = "set_target";
    // A savepoint, not a transaction: the drainer calls this inside its group-apply
    // transaction (SQLite refuses a nested BEGIN), and standalone callers get one atomic unit.
    conn.execute_batch("SAVEPOINT set_target")
        .map_err(StoreError::sql(OP))?;
    let result = set_target_rows(conn, id, target);
    let end = if result.is_ok() {
        "RELEASE set_target"
    } else {
        "ROLLBACK TO set_target; RELEASE set_target"
    };
    conn.execute_batch(end).map_err(StoreError::sql(OP))?;
    result
}

fn set_target_rows(conn: &Connection, id: i64, target: &str) -> Result<(), StoreError> {
    const OP: &str = "set_target";
    conn.execute(
        "UPDATE outbox SET target = ?2
          WHERE status = 'pending' AND target IS NULL AND id <> ?1
            AND mesh = (SELECT mesh FROM outbox WHERE id = ?1 AND target IS NULL)
            AND dest = (SELECT to_spec FROM outbox WHERE id = ?1 AND target IS NULL)",
        (id, target),
    )
    .map_err(StoreError::sql(OP))?;
    let n = conn
        .execute("UPDATE outbox SET target = ?2 WHERE id = ?1", (id, target))
        .map_err(StoreError::sql(OP))?;
    if n == 0 {
        return Err(StoreError::RowNotFound { operation: OP, id });
    }
    Ok(())
}

/// Where a name resolved at drain time leaves its claimed row ([`settle_target`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Nothing older is open for the target and nothing else of it is in flight: send now.
    Go,
    /// An older row of the target is still open, or another is in flight: the row keeps its
    /// new target and must go back to `pending` (not counted) to wait its turn.
    Behind,
}

/// Records that the `inflight` row `id`, claimed under its unresolved `to`, resolved to
/// `target` ([`set_target`], which re-keys its queued siblings too), and says whether it may
/// be sent now. It may not when another row of the same mesh and target is `inflight`, or an
/// older one is `pending` (e.g. sent to the full key and backing off): sending would overtake
/// it or put two rows in flight to one recipient (SPEC §5.4). One transaction, so a claim
/// running next sees the row inflight under `target` and holds that destination back.
pub fn settle_target(conn: &mut Connection, id: i64, target: &str) -> Result<Settled, StoreError> {
    const OP: &str = "settle_target";
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(StoreError::sql(OP))?;
    set_target(&tx, id, target)?;
    let behind: bool = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM outbox o WHERE o.status = 'inflight'
                              AND o.mesh = r.mesh AND o.dest = ?2 AND o.id <> r.id)
                 OR EXISTS (SELECT 1 FROM outbox o WHERE o.status = 'pending'
                              AND o.mesh = r.mesh AND o.dest = ?2
                              AND (o.enqueued_at < r.enqueued_at
                                   OR (o.enqueued_at = r.enqueued_at AND o.id < r.id)))
               FROM outbox r WHERE r.id = ?1",
        )
        .and_then(|mut st| st.query_row((id, target), |r| r.get(0)))
        .map_err(StoreError::sql(OP))?;
    tx.commit().map_err(StoreError::sql(OP))?;
    Ok(if behind { Settled::Behind } else { Settled::Go })
}

/// Puts the `inflight` rows `ids` back to `pending` untouched (attempts, error and due time
/// kept): they were claimed but never sent. Returns how many moved.
pub fn release_claims(conn: &mut Connection, ids: &[i64]) -> Result<usize, StoreError> {
    const OP: &str = "release_claims";
    let tx = conn.transaction().map_err(StoreError::sql(OP))?;
    let mut moved = 0;
    {
        let mut st = tx
            .prepare_cached(
                "UPDATE outbox SET status = 'pending' WHERE id = ?1 AND status = 'inflight'",
            )
            .map_err(StoreError::sql(OP))?;
        for id in ids {
            moved += st.execute([id]).map_err(StoreError::sql(OP))?;
        }
    }
    tx.commit().map_err(StoreError::sql(OP))?;
    Ok(moved)
}

/// Crash recovery: every `inflight` row goes back to `pending` (attempts kept). Returns how
/// many rows moved.
pub fn reset_inflight(conn: &Connection) -> Result<usize, StoreError> {
    conn.execute(
        "UPDATE outbox SET status = 'pending' WHERE status = 'inflight'",
        [],
    )
    .map_err(StoreError::sql("reset_inflight"))
}

/// Makes every `pending` row enqueued more than `max_age_ms` before `now_ms` `dead`, keeping
/// an earlier `last_error` (e.g. `unknown_peer`) or else recording [`EXPIRED_ERROR`]. Returns
/// the rows that died (for `outbox_dead` events).
pub fn expire(
    conn: &Connection,
    now_ms: i64,
    max_age_ms: i64,
) -> Result<Vec<OutboxRow>, StoreError> {
    let cutoff = now_ms.saturating_sub(max_age_ms);
    conn.prepare_cached(&format!(
        "UPDATE outbox SET status = 'dead', last_error = coalesce(last_error, ?2)
          WHERE status = 'pending' AND enqueued_at < ?1
          RETURNING {COLUMNS}"
    ))
    .and_then(|mut st| {
        st.query_map((cutoff, EXPIRED_ERROR), rows::from_sql)?
            .collect()
    })
    .map_err(StoreError::sql("expire"))
}

/// Makes the `pending` rows of `mesh` whose target is one of `targets` due now (a peer came
/// online). Returns how many rows were woken.
pub fn wake(
    conn: &Connection,
    mesh: &str,
    targets: &[String],
    now_ms: i64,
) -> Result<usize, StoreError> {
    let mut st = conn
        .prepare_cached(
            "UPDATE outbox SET next_attempt_at = ?3
              WHERE status = 'pending' AND mesh = ?1 AND dest = ?2 AND target = ?2
                AND next_attempt_at > ?3",
        )
        .map_err(StoreError::sql("wake"))?;
    let mut woken = 0;
    for target in targets {
        woken += st
            .execute((mesh, target, now_ms))
            .map_err(StoreError::sql("wake"))?;
    }
    Ok(woken)
}
