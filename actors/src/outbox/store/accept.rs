//! Accepting sends: the duplicate lookup table of SPEC §5.3, applied to a batch of sends in
//! one `BEGIN IMMEDIATE` transaction (group commit).

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::{Accepted, Conflict, NewSend, Status, StoreError};

/// Mints a fresh `client_message_id`: a ULID (26 Crockford base32 characters).
pub fn mint_client_message_id() -> String {
    ulid::Ulid::new().to_string()
}

/// Accepts every send of `batch` in one `BEGIN IMMEDIATE` transaction and answers each, in
/// order, per the SPEC §5.3 table. The transaction commits before this returns, so every
/// answer may be sent as soon as it is returned. Two sends of one batch with the same id are
/// answered as if sequential: the second sees the row the first inserted.
///
/// Any SQL error rolls the whole batch back (no answer is valid then).
pub fn accept_batch(
    conn: &mut Connection,
    batch: &[NewSend],
    now_ms: i64,
) -> Result<Vec<Accepted>, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(StoreError::sql("accept: begin"))?;
    let answers = batch
        .iter()
        .map(|send| accept_one(&tx, send, now_ms))
        .collect::<Result<Vec<_>, _>>()?;
    tx.commit().map_err(StoreError::sql("accept: commit"))?;
    Ok(answers)
}

/// The row an accept compares against.
struct Existing {
    id: i64,
    status: String,
    fingerprint: Vec<u8>,
    broker_message_id: Option<String>,
    last_error: Option<String>,
}

/// The answer for a send whose id is already taken, read without writing: `None` when no row
/// has `client_message_id` (only the writer may insert it). Meant for a read-only connection
/// (SPEC §5.3 lookups that do not write): the row's state in that snapshot was true at some
/// moment during the request, so the answer is as valid as the writer's.
pub fn lookup(
    conn: &Connection,
    client_message_id: &str,
    fingerprint: &[u8; 32],
) -> Result<Option<Accepted>, StoreError> {
    let Some(row) = find(conn, client_message_id)? else {
        return Ok(None);
    };
    let status = parse_status(&row.status)?;
    Ok(Some(decide(
        row,
        status,
        fingerprint,
        client_message_id.to_owned(),
    )))
}

fn parse_status(status: &str) -> Result<Status, StoreError> {
    status.parse::<Status>().map_err(|e| StoreError::Sql {
        operation: "accept: read status",
        source: rusqlite::Error::FromSqlConversionFailure(
            1,
            rusqlite::types::Type::Text,
            Box::new(e),
        ),
    })
}

/// The row holding `client_message_id`, if any.
fn find(conn: &Connection, client_message_id: &str) -> Result<Option<Existing>, StoreError> {
    conn.prepare_cached(
        "SELECT id, status, request_fingerprint, broker_message_id, last_error
               FROM outbox WHERE client_message_id = ?1",
    )
    .and_then(|mut st| {
        st.query_row([client_message_id], |r| {
            Ok(Existing {
                id: r.get(0)?,
                status: r.get(1)?,
                fingerprint: r.get(2)?,
                broker_message_id: r.get(3)?,
                last_error: r.get(4)?,
            })
        })
        .optional()
    })
    .map_err(StoreError::sql("accept: look up id"))
}

fn accept_one(tx: &Transaction<'_>, send: &NewSend, now_ms: i64) -> Result<Accepted, StoreError> {
    let (client_message_id, minted) = match &send.client_message_id {
        Some(id) => (id.clone(), false),
        None => (mint_client_message_id(), true),
    };
    // A name resolved now may wake queued rows before its insert (see `insert`): look the id
    // up first there. Everywhere else the insert goes first and the id's row is read only
    // when it is taken: one statement per new row instead of two.
    let resolved_name = send.target.as_deref().is_some_and(|t| t != send.to);
    if resolved_name && !minted {
        if let Some(row) = find(tx, &client_message_id)? {
            return answer_existing(row, &send.fingerprint, client_message_id);
        }
    }
    if let Some(id) = insert(tx, send, &client_message_id, now_ms)? {
        return Ok(Accepted::Queued {
            id,
            client_message_id,
        });
    }
    let row = find(tx, &client_message_id)?.ok_or(StoreError::RowNotFound {
        operation: "accept: read the row holding the id",
        id: 0,
    })?;
    answer_existing(row, &send.fingerprint, client_message_id)
}

fn answer_existing(
    row: Existing,
    fingerprint: &[u8; 32],
    client_message_id: String,
) -> Result<Accepted, StoreError> {
    let status = parse_status(&row.status)?;
    Ok(decide(row, status, fingerprint, client_message_id))
}

/// The SPEC §5.3 table for an existing row.
fn decide(row: Existing, status: Status, fingerprint: &[u8; 32], id_str: String) -> Accepted {
    let matches = row.fingerprint.as_slice() == fingerprint.as_slice();
    let conflict = |conflict: Conflict, reason: Option<String>| Accepted::Conflict {
        client_message_id: id_str.clone(),
        conflict,
        broker_message_id: row.broker_message_id.clone(),
        reason,
    };
    match (status, matches) {
        (Status::Pending, true) => Accepted::Queued {
            id: row.id,
            client_message_id: id_str,
        },
        (Status::Pending, false) => conflict(Conflict::PendingMismatch, None),
        (Status::Inflight, true) => Accepted::Inflight {
            id: row.id,
            client_message_id: id_str,
        },
        (Status::Inflight, false) => conflict(Conflict::InflightMismatch, None),
        (Status::Done, true) => Accepted::Duplicate {
            id: row.id,
            client_message_id: id_str,
            broker_message_id: row.broker_message_id,
        },
        (Status::Done, false) => conflict(Conflict::DoneMismatch, None),
        (Status::Dead, true) => conflict(Conflict::DeadMatch, row.last_error.clone()),
        (Status::Dead, false) => conflict(Conflict::DeadMismatch, None),
        (Status::Aborted, true) => conflict(Conflict::AbortedMatch, None),
        (Status::Aborted, false) => conflict(Conflict::AbortedMismatch, None),
    }
}

/// True when rows of `mesh` addressed to `to` wait unresolved (pending or inflight).
fn waiting_unresolved(tx: &Transaction<'_>, mesh: &str, to: &str) -> Result<bool, StoreError> {
    tx.prepare_cached(
        // Two EXISTS, one per status, so each uses its partial index (an IN over both
        // statuses would scan).
        "SELECT EXISTS (SELECT 1 FROM outbox WHERE status = 'pending'
                          AND mesh = ?1 AND dest = ?2 AND target IS NULL)
             OR EXISTS (SELECT 1 FROM outbox WHERE status = 'inflight'
                          AND mesh = ?1 AND dest = ?2 AND target IS NULL)",
    )
    .and_then(|mut st| st.query_row((mesh, to), |r| r.get(0)))
    .map_err(StoreError::sql("accept: look for unresolved rows"))
}

/// The newest row of mesh `?1` sent to the name `?2`, one query per open status: a pending
/// one is one descent of `outbox_pending_named` (its `WHERE` repeated here, with the status a
/// literal, so that SQLite can use the partial index; for a name it excludes nothing, as a
/// name is never its own target); an in-flight one walks the in-flight rows newest first,
/// which the drain's claim budget bounds (`window` × 8 per mesh).
pub(super) const NEWEST_OPEN: [&str; 2] = [
    "SELECT enqueued_at, id, target FROM outbox
      WHERE status = 'pending' AND (target IS NULL OR target <> to_spec)
        AND mesh = ?1 AND to_spec = ?2
      ORDER BY enqueued_at DESC, id DESC LIMIT 1",
    "SELECT enqueued_at, id, target FROM outbox
      WHERE status = 'inflight' AND mesh = ?1 AND to_spec = ?2
      ORDER BY enqueued_at DESC, id DESC LIMIT 1",
];

/// The target of the newest open (`pending` or `inflight`) row of `mesh` sent to `to`; `None`
/// when there is no such row or it is unresolved too.
fn newest_open_target(
    tx: &Transaction<'_>,
    mesh: &str,
    to: &str,
) -> Result<Option<String>, StoreError> {
    let mut newest: Option<(i64, i64, Option<String>)> = None;
    for query in NEWEST_OPEN {
        let row: Option<(i64, i64, Option<String>)> = tx
            .prepare_cached(query)
            .and_then(|mut st| {
                st.query_row((mesh, to), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()
            })
            .map_err(StoreError::sql("accept: look for open rows to the name"))?;
        if let Some(row) = row {
            if newest.as_ref().is_none_or(|n| (row.0, row.1) > (n.0, n.1)) {
                newest = Some(row);
            }
        }
    }
    Ok(newest.and_then(|(_, _, target)| target))
}

/// Inserts a new pending row, due now; returns its row id, or `None` when a row already holds
/// `client_message_id` (nothing is inserted then).
fn insert(
    tx: &Transaction<'_>,
    send: &NewSend,
    client_message_id: &str,
    now_ms: i64,
) -> Result<Option<i64>, StoreError> {
    let payload_bytes = i64::try_from(send.payload.len()).unwrap_or(i64::MAX);
    // A name resolved now must not overtake earlier sends to the same name that still wait
    // unresolved (accepted while the broker was down): queue behind them, unresolved too, so
    // `set_target` re-keys the whole queue together at drain time.
    let target = match &send.target {
        Some(t) if t != &send.to && waiting_unresolved(tx, &send.mesh, &send.to)? => {
            // The name resolves now, so the rows ahead of this one can go now too: wake them
            // from their offline backoff.
            tx.prepare_cached(
                "UPDATE outbox SET next_attempt_at = ?3 WHERE status = 'pending'
                   AND mesh = ?1 AND dest = ?2 AND target IS NULL AND next_attempt_at > ?3",
            )
            .and_then(|mut st| st.execute((&send.mesh, &send.to, now_ms)))
            .map_err(StoreError::sql("accept: wake unresolved rows"))?;
            None
        }
        Some(t) => Some(t.clone()),
        // A name the cache does not know (broker down, fresh start): join the queue of the
        // newest open row sent to the same name, under its target if it has one, so this send
        // neither overtakes it nor travels beside it (SPEC §5.4: FIFO, one in flight).
        None => newest_open_target(tx, &send.mesh, &send.to)?,
    };
    let inserted = tx
        .prepare_cached(
            "INSERT INTO outbox (client_message_id, request_fingerprint, payload, payload_bytes,
             enqueued_at, attempts, next_attempt_at, status, mesh, to_spec, target, priority,
             meta, reply_to_id, session_pubkey)
         VALUES (?1, ?2, ?3, ?4, ?5, 0, ?5, 'pending', ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (client_message_id) DO NOTHING",
        )
        .and_then(|mut st| {
            st.execute(rusqlite::params![
                client_message_id,
                send.fingerprint,
                send.payload,
                payload_bytes,
                now_ms,
                send.mesh,
                send.to,
                target,
                send.priority,
                send.meta,
                send.reply_to_id,
                send.session_pubkey,
            ])
        })
        .map_err(StoreError::sql("accept: insert"))?;
    Ok((inserted == 1).then(|| tx.last_insert_rowid()))
}
