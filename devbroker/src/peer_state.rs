//! The `peer_state` table of the dev broker's state database: what the broker remembers of a
//! member between connections (BROKER-PROTOCOL §1.7, §5.2) — saved when a connection closes,
//! read at the member's next hello (`restored*` fields, `peer_returned`, hidden members stay
//! hidden). Plain SQL, no actix.

use claudemesh_actors::wire::Group;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{Map, Value};

use super::error::DevBrokerError;
use super::state::{sql, to_json};

/// What the broker remembers of a member between connections (`mesh.peer_state`).
#[derive(Clone, Debug, PartialEq)]
pub struct PeerState {
    /// Groups of the last connection to close.
    pub groups: Vec<Group>,
    /// Its summary (`""` when none).
    pub summary: String,
    /// Its visibility; a hidden member reconnects hidden (§10 item 15).
    pub visible: bool,
    /// Its profile object.
    pub profile: Map<String, Value>,
    /// `{messagesIn, messagesOut, toolCalls, errors}`.
    pub stats: Map<String, Value>,
    /// When it closed.
    pub last_seen_at: i64,
}

/// The saved state of `(mesh, member)`, if the member has ever disconnected.
pub fn load_peer_state(
    conn: &Connection,
    mesh_id: &str,
    member_id: &str,
) -> Result<Option<PeerState>, DevBrokerError> {
    let raw = conn
        .query_row(
            "SELECT groups, summary, visible, profile, stats, last_seen_at FROM peer_state
             WHERE mesh_id = ?1 AND member_id = ?2",
            params![mesh_id, member_id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, bool>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            },
        )
        .optional()
        .map_err(sql("read peer_state"))?;
    let Some((groups, summary, visible, profile, stats, last_seen_at)) = raw else {
        return Ok(None);
    };
    let json = |what: &'static str, text: &str| -> Result<Value, DevBrokerError> {
        serde_json::from_str(text).map_err(|source| DevBrokerError::Json { what, source })
    };
    let object = |value: Value| match value {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    Ok(Some(PeerState {
        groups: serde_json::from_str(&groups).map_err(|source| DevBrokerError::Json {
            what: "peer_state.groups",
            source,
        })?,
        summary,
        visible,
        profile: object(json("peer_state.profile", &profile)?),
        stats: object(json("peer_state.stats", &stats)?),
        last_seen_at,
    }))
}

/// Saves (replacing) the state of `(mesh, member)`.
pub fn save_peer_state(
    conn: &Connection,
    mesh_id: &str,
    member_id: &str,
    state: &PeerState,
) -> Result<(), DevBrokerError> {
    conn.execute(
        "INSERT OR REPLACE INTO peer_state
             (mesh_id, member_id, groups, summary, visible, profile, stats, last_seen_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            mesh_id,
            member_id,
            to_json("peer_state.groups", &state.groups)?,
            state.summary,
            state.visible,
            to_json("peer_state.profile", &state.profile)?,
            to_json("peer_state.stats", &state.stats)?,
            state.last_seen_at
        ],
    )
    .map_err(sql("save peer_state"))?;
    Ok(())
}
