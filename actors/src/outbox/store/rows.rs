//! Mapping between the `outbox` table and [`OutboxRow`]: the one column list every query that
//! returns whole rows selects, and its decoder.

use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row};

use super::{OutboxRow, Status, StoreError};

/// The columns of [`OutboxRow`], in the order [`from_sql`] reads them.
pub(super) const COLUMNS: &str = "id, client_message_id, request_fingerprint, status, attempts, \
     enqueued_at, next_attempt_at, last_error, delivered_at, broker_message_id, aborted_at, \
     aborted_by, superseded_by, mesh, to_spec, target, priority, meta, reply_to_id, payload, \
     payload_bytes, session_pubkey";

/// Decodes one row selected with [`COLUMNS`].
pub(super) fn from_sql(r: &Row<'_>) -> rusqlite::Result<OutboxRow> {
    let status: String = r.get(3)?;
    let status = status
        .parse::<Status>()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(3, Type::Text, Box::new(e)))?;
    Ok(OutboxRow {
        id: r.get(0)?,
        client_message_id: r.get(1)?,
        fingerprint: r.get(2)?,
        status,
        attempts: r.get(4)?,
        enqueued_at: r.get(5)?,
        next_attempt_at: r.get(6)?,
        last_error: r.get(7)?,
        delivered_at: r.get(8)?,
        broker_message_id: r.get(9)?,
        aborted_at: r.get(10)?,
        aborted_by: r.get(11)?,
        superseded_by: r.get(12)?,
        mesh: r.get(13)?,
        to: r.get(14)?,
        target: r.get(15)?,
        priority: r.get(16)?,
        meta: r.get(17)?,
        reply_to_id: r.get(18)?,
        payload: r.get(19)?,
        payload_bytes: r.get(20)?,
        session_pubkey: r.get(21)?,
    })
}

/// The row with this id, if any.
pub(super) fn by_id(
    conn: &Connection,
    id: i64,
    operation: &'static str,
) -> Result<Option<OutboxRow>, StoreError> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM outbox WHERE id = ?1"))
        .and_then(|mut st| st.query_row([id], from_sql).optional())
        .map_err(StoreError::sql(operation))
}

/// The status of the row with this id, if any.
pub(super) fn status_of(
    conn: &Connection,
    id: i64,
    operation: &'static str,
) -> Result<Option<Status>, StoreError> {
    let s: Option<String> = conn
        .prepare_cached("SELECT status FROM outbox WHERE id = ?1")
        .and_then(|mut st| st.query_row([id], |r| r.get(0)).optional())
        .map_err(StoreError::sql(operation))?;
    s.map(|s| {
        s.parse::<Status>().map_err(|e| StoreError::Sql {
            operation,
            source: rusqlite::Error::FromSqlConversionFailure(0, Type::Text, Box::new(e)),
        })
    })
    .transpose()
}

/// The error for a conditional update that touched no row: missing row or wrong status.
pub(super) fn not_updated(conn: &Connection, id: i64, operation: &'static str) -> StoreError {
    match status_of(conn, id, operation) {
        Ok(Some(status)) => StoreError::WrongStatus {
            operation,
            id,
            status,
        },
        Ok(None) => StoreError::RowNotFound { operation, id },
        Err(e) => e,
    }
}
