//! Read state, housekeeping and session scoping of the inbox (SPEC §12).
//!
//! Invariants: `seen_at` is set once (the first time a row is marked seen) and never cleared;
//! a [`Scope`] (a session's view) admits only rows of its mesh that are not addressed to
//! another session — the same rule for listing ([`super::messages::query`]), marking and
//! deleting.

use rusqlite::{Connection, TransactionBehavior};

use super::store::{sql_op, InboxError};

/// A session's view of the inbox: its mesh, minus rows addressed to other sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The session's mesh slug.
    pub mesh: String,
    /// The session's own pubkey (`None`: a session without presence sees member rows only).
    pub session_pubkey: Option<String>,
}

impl Scope {
    /// Appends the scope's SQL condition (` AND …`) with its arguments.
    pub(super) fn push_sql(&self, sql: &mut String, args: &mut Vec<rusqlite::types::Value>) {
        args.push(self.mesh.clone().into());
        sql.push_str(&format!(" AND mesh = ?{}", args.len()));
        match &self.session_pubkey {
            Some(pk) => {
                args.push(pk.clone().into());
                sql.push_str(&format!(
                    " AND (recipient_kind <> 'session' OR recipient_pubkey = ?{})",
                    args.len()
                ));
            }
            None => sql.push_str(" AND recipient_kind <> 'session'"),
        }
    }
}

/// Marks the rows with these ids seen at `now_ms` (rows already seen keep their first time;
/// rows outside `scope` are left alone); returns how many changed from unread to seen.
pub fn mark_seen(
    conn: &mut Connection,
    ids: &[i64],
    scope: Option<&Scope>,
    now_ms: i64,
) -> Result<usize, InboxError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_op("begin mark seen"))?;
    let mut changed = 0;
    for id in ids {
        let mut sql = "UPDATE inbox SET seen_at = ?1 WHERE id = ?2 AND seen_at IS NULL".to_string();
        let mut args: Vec<rusqlite::types::Value> = vec![now_ms.into(), (*id).into()];
        if let Some(scope) = scope {
            scope.push_sql(&mut sql, &mut args);
        }
        changed += tx
            .execute(&sql, rusqlite::params_from_iter(args))
            .map_err(sql_op("mark seen"))?;
    }
    tx.commit().map_err(sql_op("commit mark seen"))?;
    Ok(changed)
}

/// Deletes rows (housekeeping, `DELETE /v1/inbox`): of `mesh` if given, received before
/// `before_ms` if given, inside `scope` if given; returns how many.
pub fn delete_rows(
    conn: &Connection,
    mesh: Option<&str>,
    before_ms: Option<i64>,
    scope: Option<&Scope>,
) -> Result<usize, InboxError> {
    let mut sql = "DELETE FROM inbox WHERE 1 = 1".to_string();
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    if let Some(mesh) = mesh {
        args.push(mesh.to_string().into());
        sql.push_str(&format!(" AND mesh = ?{}", args.len()));
    }
    if let Some(before) = before_ms {
        args.push(before.into());
        sql.push_str(&format!(" AND received_at < ?{}", args.len()));
    }
    if let Some(scope) = scope {
        scope.push_sql(&mut sql, &mut args);
    }
    conn.execute(&sql, rusqlite::params_from_iter(args))
        .map_err(sql_op("delete inbox rows"))
}

/// Deletes one row by id (inside `scope` if given); true when it existed.
pub fn delete_row(conn: &Connection, id: i64, scope: Option<&Scope>) -> Result<bool, InboxError> {
    let mut sql = "DELETE FROM inbox WHERE id = ?1".to_string();
    let mut args: Vec<rusqlite::types::Value> = vec![id.into()];
    if let Some(scope) = scope {
        scope.push_sql(&mut sql, &mut args);
    }
    conn.execute(&sql, rusqlite::params_from_iter(args))
        .map(|n| n > 0)
        .map_err(sql_op("delete inbox row"))
}
