//! The `presence` table of the state database: a mirror of the broker's in-memory presences
//! (online, and — head profile — those in their offline lease), rewritten by the hub whenever
//! they change and emptied when a broker starts. Nothing reads it back into the broker; it is
//! there so that a test driving `claudemeshd dev-broker` as a separate process can observe the
//! lease ([`presences_in`]) next to the queue's claims ([`queue_rows_in`]). Plain SQL.

use std::path::Path;

use rusqlite::{params, Connection};

use crate::error::DevBrokerError;
use crate::inspect::{PresenceInfo, QueueRowInfo};
use crate::state::{self, sql};

/// One mirrored presence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresenceRow {
    /// `presenceId`.
    pub presence_id: String,
    /// The mesh.
    pub mesh_id: String,
    /// The member row's id.
    pub member_id: String,
    /// The member's pubkey.
    pub member_pubkey: String,
    /// The session pubkey, if any.
    pub session_pubkey: Option<String>,
    /// `sessionId`.
    pub session_id: String,
    /// `control-plane` / `session` (head), `None` (seed).
    pub peer_role: Option<String>,
    /// Hello time, unix ms.
    pub connected_at: i64,
    /// When the offline lease ends, unix ms; `None` while online.
    pub lease_until_ms: Option<i64>,
}

/// Replaces the whole table with `rows` (one transaction).
pub fn replace_all(conn: &mut Connection, rows: &[PresenceRow]) -> Result<(), DevBrokerError> {
    // A savepoint, so that it nests in the hub's batch transaction.
    let tx = conn.savepoint().map_err(sql("begin presence mirror"))?;
    tx.execute("DELETE FROM presence", [])
        .map_err(sql("clear presence mirror"))?;
    for (order, row) in rows.iter().enumerate() {
        tx.prepare_cached(
            "INSERT INTO presence (presence_id, mesh_id, member_id, member_pubkey, session_pubkey,
                                   session_id, peer_role, connected_at, lease_until, ord)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .and_then(|mut st| {
            st.execute(params![
                row.presence_id,
                row.mesh_id,
                row.member_id,
                row.member_pubkey,
                row.session_pubkey,
                row.session_id,
                row.peer_role,
                row.connected_at,
                row.lease_until_ms,
                i64::try_from(order).unwrap_or(i64::MAX)
            ])
        })
        .map_err(sql("mirror presence"))?;
    }
    tx.commit().map_err(sql("commit presence mirror"))
}

/// The presences of the broker running (or last run) on `state_dir`, oldest first, as its
/// hub last mirrored them; `lease_remaining_ms` is computed against `now_ms`.
pub fn presences_in(state_dir: &Path, now_ms: i64) -> Result<Vec<PresenceInfo>, DevBrokerError> {
    let conn = state::open(state_dir)?;
    let mut stmt = conn
        .prepare(
            "SELECT presence_id, member_id, member_pubkey, session_pubkey, session_id, peer_role,
                    lease_until
             FROM presence ORDER BY ord",
        )
        .map_err(sql("prepare presence listing"))?;
    let rows = stmt
        .query_map([], |r| {
            let lease_until: Option<i64> = r.get(6)?;
            Ok(PresenceInfo {
                presence_id: r.get(0)?,
                member_id: r.get(1)?,
                member_pubkey: r.get(2)?,
                session_pubkey: r.get(3)?,
                session_id: r.get(4)?,
                peer_role: r.get(5)?,
                online: lease_until.is_none(),
                lease_remaining_ms: lease_until
                    .map(|until| u64::try_from(until.saturating_sub(now_ms)).unwrap_or(0)),
            })
        })
        .map_err(sql("list presences"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql("read presence row"))?;
    Ok(rows)
}

/// The queue rows of `state_dir`, oldest first, with their delivery and claim state.
pub fn queue_rows_in(state_dir: &Path) -> Result<Vec<QueueRowInfo>, DevBrokerError> {
    crate::queue::list_rows(&state::open(state_dir)?)
}
