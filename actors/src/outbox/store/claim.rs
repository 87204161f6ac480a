//! Claiming due rows (SPEC §5.4): per destination, FIFO, up to a per-destination window.

use std::collections::{HashMap, HashSet};

use rusqlite::{Connection, TransactionBehavior};

use super::rows::{self, COLUMNS};
use super::{OutboxRow, StoreError};

/// The oldest pending row of every destination of mesh `?1` that is due at `?2`, oldest
/// first, with its destination key and whether that destination has a row `inflight`.
///
/// `dests` walks the distinct destinations with one index seek each (a skip scan over
/// `outbox_pending_dest`); `heads` takes each one's oldest row with one more seek. The cost
/// grows with the number of destinations, not with the length of their queues.
pub(super) const DUE_HEADS: &str = "
WITH RECURSIVE dests(d) AS (
    SELECT (SELECT dest FROM outbox WHERE status = 'pending' AND mesh = ?1
             ORDER BY dest LIMIT 1)
    UNION ALL
    SELECT (SELECT dest FROM outbox WHERE status = 'pending' AND mesh = ?1 AND dest > dests.d
             ORDER BY dest LIMIT 1)
      FROM dests WHERE dests.d IS NOT NULL
),
heads(id, busy) AS (
    SELECT (SELECT id FROM outbox WHERE status = 'pending' AND mesh = ?1 AND dest = dests.d
             ORDER BY enqueued_at, id LIMIT 1),
           EXISTS (SELECT 1 FROM outbox WHERE status = 'inflight' AND mesh = ?1
                     AND dest = dests.d)
      FROM dests
     WHERE dests.d IS NOT NULL
)
SELECT o.id, o.dest, heads.busy FROM heads JOIN outbox o ON o.id = heads.id
 WHERE o.next_attempt_at <= ?2
 ORDER BY o.enqueued_at, o.id";

/// The pending rows of one destination behind its head, oldest first.
const DEST_QUEUE: &str = "
SELECT id, next_attempt_at, target IS NULL FROM outbox
 WHERE status = 'pending' AND mesh = ?1 AND dest = ?2
 ORDER BY enqueued_at, id LIMIT ?3";

/// How many rows of a destination the drainer already has in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InFlight {
    /// This many rows sent and not yet settled; more may follow them.
    Rows(usize),
    /// Nothing may be claimed for it now (a row of its window failed and the rows behind it
    /// are still coming back).
    Blocked,
}

/// Claims up to `limit` due rows of `mesh` and sets them `inflight` (one transaction), at
/// most `per_dest` in flight per destination ([`super::destination_key`]).
///
/// Per destination the rows are taken in FIFO order (`enqueued_at, id`) from its oldest
/// pending row, as long as they are due: a head row backing off holds back the whole
/// destination, and a row backing off behind it stops the run there. `busy` gives what the
/// caller already has in flight per destination; a destination it does not list but that has
/// a row `inflight` in the database (claimed elsewhere, e.g. a name resolving to it) is left
/// alone. A row whose name is still unresolved (`target` NULL) goes alone: its destination
/// key changes when it resolves. Destinations share `limit` round-robin, oldest head first,
/// so one long queue does not starve the others. Rows are returned in that order, each
/// destination's in FIFO order.
pub fn claim_window(
    conn: &mut Connection,
    mesh: &str,
    now_ms: i64,
    limit: usize,
    per_dest: usize,
    busy: &HashMap<String, InFlight>,
) -> Result<Vec<OutboxRow>, StoreError> {
    if limit == 0 || per_dest == 0 {
        return Ok(Vec::new());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(StoreError::sql("claim: begin"))?;
    let heads: Vec<(i64, String, bool)> = tx
        .prepare_cached(DUE_HEADS)
        .and_then(|mut st| {
            st.query_map((mesh, now_ms), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .map_err(StoreError::sql("claim: find due rows"))?;
    // Each destination's run of claimable rows, in head order.
    let mut runs: Vec<Vec<i64>> = Vec::new();
    let mut budget = limit;
    {
        let mut queue = tx
            .prepare_cached(DEST_QUEUE)
            .map_err(StoreError::sql("claim: prepare queue"))?;
        for (head, dest, db_busy) in heads {
            if budget == 0 {
                break;
            }
            let used = match busy.get(&dest) {
                Some(InFlight::Blocked) => continue,
                Some(InFlight::Rows(n)) => *n,
                None if db_busy => continue,
                None => 0,
            };
            let free = per_dest.saturating_sub(used).min(budget);
            if free == 0 {
                continue;
            }
            let queued: Vec<(i64, i64, bool)> = queue
                .query_map((mesh, &dest, free as i64), |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .and_then(|rows| rows.collect())
                .map_err(StoreError::sql("claim: read queue"))?;
            let mut run = Vec::new();
            for (id, due_at, unresolved) in queued {
                if due_at > now_ms || (unresolved && (used > 0 || !run.is_empty())) {
                    break;
                }
                run.push(id);
                if unresolved {
                    break;
                }
            }
            // The head found by the skip scan is the queue's first row.
            if run.first() != Some(&head) {
                continue;
            }
            budget -= run.len();
            runs.push(run);
        }
    }
    let mut claimed = Vec::new();
    {
        let mut st = tx
            .prepare_cached(&format!(
                "UPDATE outbox SET status = 'inflight' WHERE id = ?1 AND status = 'pending'
                 RETURNING {COLUMNS}"
            ))
            .map_err(StoreError::sql("claim: prepare"))?;
        let longest = runs.iter().map(Vec::len).max().unwrap_or(0);
        for i in 0..longest {
            for run in &runs {
                if let Some(id) = run.get(i) {
                    let row = st
                        .query_row([id], rows::from_sql)
                        .map_err(StoreError::sql("claim: set inflight"))?;
                    claimed.push(row);
                }
            }
        }
    }
    tx.commit().map_err(StoreError::sql("claim: commit"))?;
    Ok(claimed)
}

/// [`claim_window`] with one row in flight per destination: claims up to `limit` due rows of
/// `mesh`, each the oldest pending row of a destination not in `busy` and with nothing
/// `inflight` in the database. Rows are returned oldest first.
pub fn claim_due(
    conn: &mut Connection,
    mesh: &str,
    now_ms: i64,
    limit: usize,
    busy: &HashSet<String>,
) -> Result<Vec<OutboxRow>, StoreError> {
    let busy = busy
        .iter()
        .map(|d| (d.clone(), InFlight::Blocked))
        .collect();
    claim_window(conn, mesh, now_ms, limit, 1, &busy)
}
