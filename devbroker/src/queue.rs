//! The message queue of the dev broker's state database (`queue`, BROKER-PROTOCOL §7): accepted
//! sends, the drain that claims them, and the `--dedupe` lookup of SPEC §11.
//!
//! Invariants: a row is delivered at most once — the drain marks the rows it selects delivered
//! in the same transaction (seed claim semantics, §7.2); rows are drained oldest first, in
//! insertion order within one millisecond. Plain SQL, no actix.

use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

use super::error::DevBrokerError;
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

/// Selects the undelivered rows of `mesh_id` addressed to one of `targets` with one of
/// `priorities`, oldest first, and marks them delivered in the same transaction.
pub fn claim_for_drain(
    conn: &mut Connection,
    mesh_id: &str,
    targets: &[String],
    priorities: &[&str],
    now_ms: i64,
) -> Result<Vec<DrainedRow>, DevBrokerError> {
    if targets.is_empty() || priorities.is_empty() {
        return Ok(Vec::new());
    }
    let tx = conn.transaction().map_err(sql("begin drain"))?;
    let target_marks = vec!["?"; targets.len()].join(", ");
    let priority_marks = vec!["?"; priorities.len()].join(", ");
    let text = format!(
        "SELECT q.id, q.mesh_id, q.sender_member_id, q.sender_session_pubkey, q.target_spec,
                q.priority, q.nonce, q.ciphertext, q.created_at, q.client_message_id,
                q.request_fingerprint, COALESCE(m.peer_pubkey, '')
         FROM queue q LEFT JOIN member m ON m.id = q.sender_member_id
         WHERE q.mesh_id = ? AND q.delivered_at IS NULL
           AND q.target_spec IN ({target_marks}) AND q.priority IN ({priority_marks})
         ORDER BY q.created_at, q.rowid"
    );
    let mut args: Vec<&str> = vec![mesh_id];
    args.extend(targets.iter().map(String::as_str));
    args.extend(priorities.iter().copied());
    let rows = {
        let mut stmt = tx.prepare(&text).map_err(sql("prepare drain"))?;
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
        mark_delivered(&tx, &drained.row.id, now_ms)?;
    }
    tx.commit().map_err(sql("commit drain"))?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state;

    fn row(id: &str, target: &str, priority: &str, created_at: i64) -> QueueRow {
        QueueRow {
            id: id.into(),
            mesh_id: "m".into(),
            sender_member_id: "s".into(),
            sender_session_pubkey: None,
            target_spec: target.into(),
            priority: priority.into(),
            nonce: "n".into(),
            ciphertext: "c".into(),
            created_at,
            client_message_id: Some(format!("cm-{id}")),
            request_fingerprint: Some(format!("fp-{id}")),
        }
    }

    #[test]
    fn a_drain_claims_matching_rows_once_in_insertion_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = state::open(dir.path()).unwrap();
        for (id, target, priority) in [
            ("z", "bob", "next"),
            ("a", "bob", "now"),
            ("x", "carol", "now"),
            ("l", "bob", "low"),
        ] {
            insert_queue(&conn, &row(id, target, priority, 5)).unwrap();
        }
        let targets = vec!["bob".to_owned()];
        let urgent = claim_for_drain(&mut conn, "m", &targets, &["now"], 9).unwrap();
        assert_eq!(
            urgent.iter().map(|d| d.row.id.as_str()).collect::<Vec<_>>(),
            ["a"]
        );
        assert_eq!(urgent[0].sender_member_pubkey, "");
        let rest = claim_for_drain(&mut conn, "m", &targets, &["now", "next", "low"], 9).unwrap();
        assert_eq!(
            rest.iter().map(|d| d.row.id.as_str()).collect::<Vec<_>>(),
            ["z", "l"]
        );
        assert!(
            claim_for_drain(&mut conn, "m", &targets, &["now", "next", "low"], 9)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            find_client_message(&conn, "m", "cm-z").unwrap(),
            Some(("z".into(), Some("fp-z".into())))
        );
        assert_eq!(find_client_message(&conn, "m", "cm-none").unwrap(), None);
    }
}
