//! The message queue of the dev broker's state database (`queue`, BROKER-PROTOCOL §7): accepted
//! sends, the drain that claims them, the head profile's claim sweep and `client_ack`, and the
//! `--dedupe` lookup of SPEC §11.
//!
//! Invariants: rows are drained oldest first, in insertion order within one millisecond.
//! [`Claim::Deliver`] (seed, §7.2): the drain marks the rows it selects delivered in the same
//! transaction, so a row is delivered at most once. [`Claim::Lease`] (head): the drain sets
//! `claimed_at`/`claim_id`/`claim_expires_at` and leaves `delivered_at` NULL; a row is
//! drainable again once its claim is NULL or expired; only `client_ack` delivers it. Plain
//! SQL, no actix.

use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

use super::error::DevBrokerError;
use super::inspect::QueueRowInfo;
use super::state::sql;

/// One `message_queue` row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueRow {
    /// `messageId`.
    pub id: String,
    /// The mesh.
    pub mesh_id: String,
    /// Sending member.
    pub sender_member_id: String,
    /// The sending connection's session pubkey, if its hello had one.
    pub sender_session_pubkey: Option<String>,
    /// Raw `targetSpec`.
    pub target_spec: String,
    /// `now` | `next` | `low`.
    pub priority: String,
    /// Opaque base64.
    pub nonce: String,
    /// Opaque base64.
    pub ciphertext: String,
    /// Insert time.
    pub created_at: i64,
    /// Idempotency key (`--dedupe`).
    pub client_message_id: Option<String>,
    /// Request fingerprint (`--dedupe`).
    pub request_fingerprint: Option<String>,
}

/// A drained row with the sender's member pubkey (for `COALESCE(session, member)`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrainedRow {
    /// The row.
    pub row: QueueRow,
    /// The sender's member pubkey ("" if the member row is gone).
    pub sender_member_pubkey: String,
}

/// Inserts an accepted `send` into the queue.
pub fn insert_queue(conn: &Connection, row: &QueueRow) -> Result<(), DevBrokerError> {
    // Cached statements: the hub runs these once per `send`.
    conn.prepare_cached(
        "INSERT INTO queue (id, mesh_id, sender_member_id, sender_session_pubkey, target_spec,
                            priority, nonce, ciphertext, created_at, client_message_id,
                            request_fingerprint)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )
    .and_then(|mut st| {
        st.execute(params![
            row.id,
            row.mesh_id,
            row.sender_member_id,
            row.sender_session_pubkey,
            row.target_spec,
            row.priority,
            row.nonce,
            row.ciphertext,
            row.created_at,
            row.client_message_id,
            row.request_fingerprint
        ])
    })
    .map_err(sql("insert queue row"))?;
    Ok(())
}

/// Marks one row delivered (multicast rows right after their live fan-out).
pub fn mark_delivered(conn: &Connection, id: &str, now_ms: i64) -> Result<(), DevBrokerError> {
    conn.prepare_cached(
        "UPDATE queue SET delivered_at = ?2 WHERE id = ?1 AND delivered_at IS NULL",
    )
    .and_then(|mut st| st.execute(params![id, now_ms]))
    .map_err(sql("mark delivered"))?;
    Ok(())
}

/// The first accepted row of `(mesh, client_message_id)`: its id and fingerprint (`--dedupe`).
pub fn find_client_message(
    conn: &Connection,
    mesh_id: &str,
    client_message_id: &str,
) -> Result<Option<(String, Option<String>)>, DevBrokerError> {
    conn.query_row(
        "SELECT id, request_fingerprint FROM queue WHERE mesh_id = ?1 AND client_message_id = ?2
         ORDER BY created_at, rowid LIMIT 1",
        params![mesh_id, client_message_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
    .map_err(sql("look up client_message_id"))
}

/// What a drain does to the rows it selects.
#[derive(Clone, Copy, Debug)]
pub enum Claim<'a> {
    /// Seed: mark them delivered.
    Deliver,
    /// Head: claim them for `claim_ms` on behalf of presence `claimer`.
    Lease {
        /// The claiming presence id (recorded for inspection only; expiry alone re-enables).
        claimer: &'a str,
        /// Claim length.
        claim_ms: i64,
    },
}

/// Selects the undelivered (and, head, unclaimed or expired) rows of `mesh_id` addressed to one
/// of `targets` with one of `priorities`, oldest first, and claims them per `claim` in the same
/// transaction.
pub fn claim_for_drain(
    conn: &mut Connection,
    mesh_id: &str,
    targets: &[String],
    priorities: &[&str],
    now_ms: i64,
    claim: Claim<'_>,
) -> Result<Vec<DrainedRow>, DevBrokerError> {
    if targets.is_empty() || priorities.is_empty() {
        return Ok(Vec::new());
    }
    // A savepoint: atomic on its own, and nested in the hub's batch transaction when one is
    // open (a plain BEGIN would fail there).
    let tx = conn.savepoint().map_err(sql("begin drain"))?;
    let target_marks = vec!["?"; targets.len()].join(", ");
    let priority_marks = vec!["?"; priorities.len()].join(", ");
    let text = format!(
        "SELECT q.id, q.mesh_id, q.sender_member_id, q.sender_session_pubkey, q.target_spec,
                q.priority, q.nonce, q.ciphertext, q.created_at, q.client_message_id,
                q.request_fingerprint, COALESCE(m.peer_pubkey, '')
         FROM queue q LEFT JOIN member m ON m.id = q.sender_member_id
         WHERE q.mesh_id = ? AND q.delivered_at IS NULL
           AND (q.claim_expires_at IS NULL OR q.claim_expires_at < ?)
           AND q.target_spec IN ({target_marks}) AND q.priority IN ({priority_marks})
         ORDER BY q.created_at, q.rowid"
    );
    use rusqlite::types::Value as Sql;
    let mut args: Vec<Sql> = vec![Sql::Text(mesh_id.to_owned()), Sql::Integer(now_ms)];
    args.extend(targets.iter().map(|t| Sql::Text(t.clone())));
    args.extend(priorities.iter().map(|p| Sql::Text((*p).to_owned())));
    let rows = {
        let mut stmt = tx.prepare_cached(&text).map_err(sql("prepare drain"))?;
        let rows = stmt
            .query_map(params_from_iter(args), |r| {
                Ok(DrainedRow {
                    row: QueueRow {
                        id: r.get(0)?,
                        mesh_id: r.get(1)?,
                        sender_member_id: r.get(2)?,
                        sender_session_pubkey: r.get(3)?,
                        target_spec: r.get(4)?,
                        priority: r.get(5)?,
                        nonce: r.get(6)?,
                        ciphertext: r.get(7)?,
                        created_at: r.get(8)?,
                        client_message_id: r.get(9)?,
                        request_fingerprint: r.get(10)?,
                    },
                    sender_member_pubkey: r.get(11)?,
                })
            })
            .map_err(sql("query drain"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sql("read drain row"))?;
        rows
    };
    for drained in &rows {
        match claim {
            Claim::Deliver => mark_delivered(&tx, &drained.row.id, now_ms)?,
            Claim::Lease { claimer, claim_ms } => {
                tx.prepare_cached(
                    "UPDATE queue SET claimed_at = ?2, claim_id = ?3, claim_expires_at = ?4
                     WHERE id = ?1",
                )
                .and_then(|mut st| {
                    st.execute(params![
                        drained.row.id,
                        now_ms,
                        claimer,
                        now_ms.saturating_add(claim_ms)
                    ])
                })
                .map_err(sql("claim row"))?;
            }
        }
    }
    tx.commit().map_err(sql("commit drain"))?;
    Ok(rows)
}

/// The head claim sweep: clears the claim of every undelivered row whose claim has expired at
/// `now_ms`. Returns how many were released. It never pushes anything.
pub fn release_expired_claims(conn: &Connection, now_ms: i64) -> Result<usize, DevBrokerError> {
    conn.prepare_cached(
        "UPDATE queue SET claimed_at = NULL, claim_id = NULL, claim_expires_at = NULL
         WHERE delivered_at IS NULL AND claim_expires_at IS NOT NULL AND claim_expires_at < ?1",
    )
    .and_then(|mut st| st.execute(params![now_ms]))
    .map_err(sql("release expired claims"))
}

/// Who sends a `client_ack`: its mesh and the keys a row's `targetSpec` may name.
#[derive(Clone, Copy, Debug)]
pub struct Acker<'a> {
    /// The acking connection's mesh.
    pub mesh_id: &'a str,
    /// Its member pubkey.
    pub member_pubkey: &'a str,
    /// Its session pubkey, if any.
    pub session_pubkey: Option<&'a str>,
}

/// `client_ack` (§4.4): marks delivered the undelivered rows of the acker's mesh whose id is
/// `broker_id` or whose `client_message_id` is `client_id`, and whose `targetSpec` is the
/// acker's member or session pubkey, `*`, `@…` or `#…`. Returns how many rows changed.
pub fn client_ack(
    conn: &Connection,
    acker: Acker<'_>,
    client_id: Option<&str>,
    broker_id: Option<&str>,
    now_ms: i64,
) -> Result<usize, DevBrokerError> {
    if client_id.is_none() && broker_id.is_none() {
        return Ok(0);
    }
    conn.prepare_cached(
        "UPDATE queue SET delivered_at = ?1
         WHERE mesh_id = ?2 AND delivered_at IS NULL
           AND ((?3 IS NOT NULL AND id = ?3) OR (?4 IS NOT NULL AND client_message_id = ?4))
           AND (target_spec = ?5 OR (?6 IS NOT NULL AND target_spec = ?6) OR target_spec = '*'
                OR target_spec LIKE '@%' OR target_spec LIKE '#%')",
    )
    .and_then(|mut st| {
        st.execute(params![
            now_ms,
            acker.mesh_id,
            broker_id,
            client_id,
            acker.member_pubkey,
            acker.session_pubkey
        ])
    })
    .map_err(sql("client_ack"))
}

/// Every row, oldest first, with its delivery and claim state (for tests).
pub fn list_rows(conn: &Connection) -> Result<Vec<QueueRowInfo>, DevBrokerError> {
    let mut stmt = conn
        .prepare(
            "SELECT id, target_spec, client_message_id, created_at, delivered_at, claim_id,
                    claim_expires_at
             FROM queue ORDER BY created_at, rowid",
        )
        .map_err(sql("prepare queue listing"))?;
    let rows = stmt
        .query_map([], |r| {
            Ok(QueueRowInfo {
                id: r.get(0)?,
                target_spec: r.get(1)?,
                client_message_id: r.get(2)?,
                created_at: r.get(3)?,
                delivered_at: r.get(4)?,
                claim_id: r.get(5)?,
                claim_expires_at: r.get(6)?,
            })
        })
        .map_err(sql("list queue"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql("read queue row"))?;
    Ok(rows)
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
