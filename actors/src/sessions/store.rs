//! The `sessions` table of `outbox.db` (schema version 2): plain functions over a
//! `rusqlite::Connection`, run on the OutboxDb thread (the file's one owner).
//!
//! Invariants: one row per token digest and per `session_id` (a new registration replaces
//! both in one transaction); the token itself is never written, the session secret only here
//! (the file is 0600).

use rusqlite::{Connection, Row, TransactionBehavior};

use super::model::{ParentAttestation, PresenceStatus, Session, SessionPresence};
use crate::crypto::MemberKeys;
use crate::outbox::store::StoreError;

const COLUMNS: &str = "token_sha256, token_prefix, session_id, mesh, display_name, pid, \
    process_start, cwd, role, groups, session_pubkey, session_secret, attestation, registered_at";

/// Stores `s`, replacing every row with its token digest or its `session_id`; returns the
/// token digests of the replaced rows other than `s`'s own (their sessions ended).
pub fn upsert(conn: &mut Connection, s: &Session) -> Result<Vec<String>, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(StoreError::sql("begin register session"))?;
    let replaced: Vec<String> = {
        let mut st = tx
            .prepare(
                "SELECT token_sha256 FROM sessions WHERE session_id = ?1 AND token_sha256 <> ?2",
            )
            .map_err(StoreError::sql("find replaced sessions"))?;
        let rows = st
            .query_map((&s.session_id, &s.token_digest), |r| r.get::<_, String>(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>());
        rows.map_err(StoreError::sql("find replaced sessions"))?
    };
    tx.execute(
        "DELETE FROM sessions WHERE session_id = ?1 OR token_sha256 = ?2",
        (&s.session_id, &s.token_digest),
    )
    .map_err(StoreError::sql("replace session"))?;
    let groups = serde_json::to_string(&s.groups).unwrap_or_else(|_| "[]".into());
    let (pubkey, secret, attestation) = match &s.presence {
        Some(p) => {
            let mut secret = p.keys.seed().to_vec();
            secret.extend_from_slice(&p.keys.pubkey_bytes());
            (
                Some(p.pubkey()),
                Some(secret),
                serde_json::to_string(&p.attestation).ok(),
            )
        }
        None => (None, None, None),
    };
    tx.execute(
        &format!(
            "INSERT INTO sessions ({COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
        ),
        rusqlite::params![
            s.token_digest,
            s.token_prefix,
            s.session_id,
            s.mesh,
            s.display_name,
            s.pid,
            s.process_start.and_then(|v| i64::try_from(v).ok()),
            s.cwd,
            s.role,
            groups,
            pubkey,
            secret,
            attestation,
            s.registered_at,
        ],
    )
    .map_err(StoreError::sql("insert session"))?;
    tx.commit()
        .map_err(StoreError::sql("commit register session"))?;
    Ok(replaced)
}

/// Deletes the sessions with these token digests; returns how many rows went.
pub fn delete(conn: &Connection, digests: &[String]) -> Result<usize, StoreError> {
    let mut n = 0;
    for d in digests {
        n += conn
            .execute("DELETE FROM sessions WHERE token_sha256 = ?1", [d])
            .map_err(StoreError::sql("delete session"))?;
    }
    Ok(n)
}

/// Every stored session, oldest registration first. A row whose stored key material no longer
/// parses is loaded without presence (and logged), never dropped silently.
pub fn load(conn: &Connection) -> Result<Vec<Session>, StoreError> {
    let mut st = conn
        .prepare(&format!(
            "SELECT {COLUMNS} FROM sessions ORDER BY registered_at, session_id"
        ))
        .map_err(StoreError::sql("load sessions"))?;
    let rows = st
        .query_map([], session_from_row)
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>());
    rows.map_err(StoreError::sql("load sessions"))
}

fn session_from_row(r: &Row<'_>) -> rusqlite::Result<Session> {
    let session_id: String = r.get(2)?;
    let groups: String = r.get(9)?;
    let pubkey: Option<String> = r.get(10)?;
    let secret: Option<Vec<u8>> = r.get(11)?;
    let attestation: Option<String> = r.get(12)?;
    let presence = match (pubkey, secret, attestation) {
        (Some(pk), Some(secret), Some(att)) => {
            let keys = MemberKeys::from_hex(&pk, &hex::encode(&secret));
            let att = serde_json::from_str::<ParentAttestation>(&att);
            match (keys, att) {
                (Ok(keys), Ok(attestation)) => Some(SessionPresence { keys, attestation }),
                _ => {
                    log::warn!(
                        "session {session_id}: stored presence does not parse; loaded without it"
                    );
                    None
                }
            }
        }
        _ => None,
    };
    let pid: i64 = r.get(5)?;
    let start: Option<i64> = r.get(6)?;
    Ok(Session {
        token_digest: r.get(0)?,
        token_prefix: r.get(1)?,
        session_id,
        mesh: r.get(3)?,
        display_name: r.get(4)?,
        pid: u32::try_from(pid).unwrap_or(0),
        process_start: start.and_then(|v| u64::try_from(v).ok()),
        cwd: r.get(7)?,
        role: r.get(8)?,
        groups: serde_json::from_str(&groups).unwrap_or_default(),
        registered_at: r.get(13)?,
        presence_status: if presence.is_some() {
            PresenceStatus::Pending
        } else {
            PresenceStatus::None
        },
        presence,
    })
}
