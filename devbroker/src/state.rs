//! The dev broker's SQLite state under `--state DIR` (`DIR/broker.db`): the mesh (one per state
//! directory), its members, the message queue (with the `--dedupe` idempotency columns) and the
//! per-member `peer_state` saved on disconnect — the tables of BROKER-PROTOCOL §8.1 that the
//! behaviour depends on.
//!
//! Invariants:
//! - Plain SQL over `&Connection`; no actix. Every connection is opened with WAL and a busy
//!   timeout, so `dev-mesh create`/`revoke` can write while a broker runs, and the broker sees
//!   the change at its next read (members are read at every hello, revocations polled).
//! - Migrations are numbered (`PRAGMA user_version`), forward-only, one transaction each.
//! - `presence` (migration 3) only mirrors the hub's in-memory presences for outside
//!   observers (`presence_table`); the broker never reads it.
//! - Times are unix milliseconds. Seed profile: a queue row is delivered at most once — the
//!   drain marks it delivered in the same transaction that selects it (§7.2). Head profile: the
//!   drain sets the claim columns (migration 2) and only `client_ack` marks it delivered.

use std::path::{Path, PathBuf};

use claudemesh_actors::wire::Group;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde_json::{Map, Value};

use super::error::DevBrokerError;

/// File name of the state database inside the state directory.
pub const DB_FILE: &str = "broker.db";

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE mesh (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    slug        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE TABLE member (
    id              TEXT PRIMARY KEY,
    mesh_id         TEXT NOT NULL REFERENCES mesh(id),
    name            TEXT NOT NULL,
    display_name    TEXT NOT NULL,
    peer_pubkey     TEXT NOT NULL,
    revoked_at      INTEGER,
    peer_grants     TEXT NOT NULL DEFAULT '{}',
    default_groups  TEXT NOT NULL DEFAULT '[]',
    created_at      INTEGER NOT NULL,
    UNIQUE (mesh_id, name)
);
CREATE INDEX member_pubkey ON member (mesh_id, peer_pubkey);
CREATE TABLE queue (
    id                     TEXT PRIMARY KEY,
    mesh_id                TEXT NOT NULL,
    sender_member_id       TEXT NOT NULL,
    sender_session_pubkey  TEXT,
    target_spec            TEXT NOT NULL,
    priority               TEXT NOT NULL,
    nonce                  TEXT NOT NULL,
    ciphertext             TEXT NOT NULL,
    created_at             INTEGER NOT NULL,
    delivered_at           INTEGER,
    client_message_id      TEXT,
    request_fingerprint    TEXT
);
CREATE INDEX queue_pending ON queue (mesh_id, delivered_at, target_spec);
CREATE INDEX queue_client_id ON queue (mesh_id, client_message_id);
CREATE TABLE peer_state (
    mesh_id       TEXT NOT NULL,
    member_id     TEXT NOT NULL,
    groups        TEXT NOT NULL,
    summary       TEXT NOT NULL,
    visible       INTEGER NOT NULL,
    profile       TEXT NOT NULL,
    stats         TEXT NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    PRIMARY KEY (mesh_id, member_id)
);
"#,
    r#"
ALTER TABLE queue ADD COLUMN claimed_at INTEGER;
ALTER TABLE queue ADD COLUMN claim_id TEXT;
ALTER TABLE queue ADD COLUMN claim_expires_at INTEGER;
"#,
    r#"
CREATE TABLE presence (
    presence_id     TEXT PRIMARY KEY,
    mesh_id         TEXT NOT NULL,
    member_id       TEXT NOT NULL,
    member_pubkey   TEXT NOT NULL,
    session_pubkey  TEXT,
    session_id      TEXT NOT NULL,
    peer_role       TEXT,
    connected_at    INTEGER NOT NULL,
    lease_until     INTEGER,
    ord             INTEGER NOT NULL
);
"#,
];

/// The mesh of a state directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeshRow {
    /// `mesh.id`: random 32 characters over `[0-9A-Za-z]`; what a hello's `meshId` must equal.
    pub id: String,
    /// Human name (also used in the `revoked` message).
    pub name: String,
    /// Slug written into the members' `config.json`.
    pub slug: String,
}

/// One member of the mesh.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberRow {
    /// `member.id`, random 32 characters.
    pub id: String,
    /// The mesh it belongs to.
    pub mesh_id: String,
    /// The `dev-mesh` name (unique in the mesh; its config directory name).
    pub name: String,
    /// `member.display_name`, used when a hello has no `displayName`.
    pub display_name: String,
    /// Lowercase 64-hex ed25519 public key; compared exactly with `hello.pubkey`.
    pub pubkey: String,
    /// Set by `dev-mesh revoke`.
    pub revoked_at: Option<i64>,
    /// `peer_grants`: sender pubkey → capabilities; `{}` allows everything (§2.6).
    pub peer_grants: Map<String, Value>,
    /// `default_groups`, used when neither the hello nor a saved state has groups.
    pub default_groups: Vec<Group>,
}

impl MemberRow {
    /// Whether this member (as a recipient) lets `sender_pubkey` use `capability` (§2.6): a
    /// missing key means the defaults `read, dm, broadcast, state-read`.
    pub fn grants(&self, sender_pubkey: &str, capability: &str) -> Option<bool> {
        let caps = self.peer_grants.get(sender_pubkey)?;
        Some(
            caps.as_array()
                .is_some_and(|list| list.iter().any(|c| c.as_str() == Some(capability))),
        )
    }
}

/// Serialises a value into a JSON column.
pub(super) fn to_json<T: serde::Serialize>(
    what: &'static str,
    value: &T,
) -> Result<String, DevBrokerError> {
    serde_json::to_string(value).map_err(|source| DevBrokerError::Json { what, source })
}

pub(super) fn sql(op: &'static str) -> impl FnOnce(rusqlite::Error) -> DevBrokerError {
    move |source| DevBrokerError::Sqlite { op, source }
}

/// Path of the state database in `state_dir`.
pub fn db_path(state_dir: &Path) -> PathBuf {
    state_dir.join(DB_FILE)
}

/// Opens (creating the directory 0700 and the database when missing) and migrates the state.
pub fn open(state_dir: &Path) -> Result<Connection, DevBrokerError> {
    create_private_dir(state_dir)?;
    let mut conn = Connection::open(db_path(state_dir)).map_err(sql("open"))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(sql("set busy timeout"))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sql("enable WAL"))?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(sql("set synchronous"))?;
    migrate(&mut conn)?;
    Ok(conn)
}

/// Creates `dir` (and parents) with mode 0700 when it does not exist.
pub fn create_private_dir(dir: &Path) -> Result<(), DevBrokerError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| DevBrokerError::Io {
            op: "create directory",
            path: dir.to_path_buf(),
            source,
        })
}

fn migrate(conn: &mut Connection) -> Result<(), DevBrokerError> {
    for (index, migration) in MIGRATIONS.iter().enumerate() {
        let target = i64::try_from(index).unwrap_or(i64::MAX) + 1;
        // The version is read inside the write transaction: a `dev-mesh create` and a broker
        // opening a new state directory at the same moment migrate it once.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql("begin migration"))?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(sql("read schema version"))?;
        if version < target {
            tx.execute_batch(migration).map_err(sql("migrate"))?;
            tx.pragma_update(None, "user_version", target)
                .map_err(sql("set schema version"))?;
        }
        tx.commit().map_err(sql("commit migration"))?;
    }
    Ok(())
}

/// The mesh of this state directory, if one was created.
pub fn mesh(conn: &Connection) -> Result<Option<MeshRow>, DevBrokerError> {
    conn.query_row(
        "SELECT id, name, slug FROM mesh ORDER BY created_at LIMIT 1",
        [],
        |r| {
            Ok(MeshRow {
                id: r.get(0)?,
                name: r.get(1)?,
                slug: r.get(2)?,
            })
        },
    )
    .optional()
    .map_err(sql("read mesh"))
}

/// Inserts the mesh row.
pub fn insert_mesh(conn: &Connection, mesh: &MeshRow, now_ms: i64) -> Result<(), DevBrokerError> {
    conn.execute(
        "INSERT INTO mesh (id, name, slug, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![mesh.id, mesh.name, mesh.slug, now_ms],
    )
    .map_err(sql("insert mesh"))?;
    Ok(())
}

/// Inserts a member row (not revoked, grants `{}`, no default groups).
pub fn insert_member(
    conn: &Connection,
    member: &MemberRow,
    now_ms: i64,
) -> Result<(), DevBrokerError> {
    conn.execute(
        "INSERT INTO member (id, mesh_id, name, display_name, peer_pubkey, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            member.id,
            member.mesh_id,
            member.name,
            member.display_name,
            member.pubkey,
            now_ms
        ],
    )
    .map_err(sql("insert member"))?;
    Ok(())
}

const MEMBER_COLUMNS: &str =
    "id, mesh_id, name, display_name, peer_pubkey, revoked_at, peer_grants, default_groups";

fn member_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(MemberRow, String, String)> {
    Ok((
        MemberRow {
            id: r.get(0)?,
            mesh_id: r.get(1)?,
            name: r.get(2)?,
            display_name: r.get(3)?,
            pubkey: r.get(4)?,
            revoked_at: r.get(5)?,
            peer_grants: Map::new(),
            default_groups: Vec::new(),
        },
        r.get(6)?,
        r.get(7)?,
    ))
}

fn finish_member(
    (mut member, grants, groups): (MemberRow, String, String),
) -> Result<MemberRow, DevBrokerError> {
    member.peer_grants = serde_json::from_str(&grants).map_err(|source| DevBrokerError::Json {
        what: "member.peer_grants",
        source,
    })?;
    member.default_groups =
        serde_json::from_str(&groups).map_err(|source| DevBrokerError::Json {
            what: "member.default_groups",
            source,
        })?;
    Ok(member)
}

fn query_members(
    conn: &Connection,
    where_clause: &str,
    args: &[&dyn rusqlite::ToSql],
) -> Result<Vec<MemberRow>, DevBrokerError> {
    let text = format!(
        "SELECT {MEMBER_COLUMNS} FROM member WHERE {where_clause} ORDER BY created_at, rowid"
    );
    let mut stmt = conn.prepare(&text).map_err(sql("prepare member query"))?;
    let rows = stmt
        .query_map(args, member_from_row)
        .map_err(sql("query members"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql("read member"))?;
    rows.into_iter().map(finish_member).collect()
}

/// Every member of `mesh_id`, oldest first, revoked ones included.
pub fn members(conn: &Connection, mesh_id: &str) -> Result<Vec<MemberRow>, DevBrokerError> {
    query_members(conn, "mesh_id = ?1", &[&mesh_id])
}

/// The member rows of `mesh_id` whose pubkey equals `pubkey` exactly (hello lookup, §1.5 step 4).
pub fn members_by_pubkey(
    conn: &Connection,
    mesh_id: &str,
    pubkey: &str,
) -> Result<Vec<MemberRow>, DevBrokerError> {
    query_members(
        conn,
        "mesh_id = ?1 AND peer_pubkey = ?2",
        &[&mesh_id, &pubkey],
    )
}

/// Ids of every revoked member (polled by a running broker to close their sockets).
pub fn revoked_member_ids(conn: &Connection) -> Result<Vec<String>, DevBrokerError> {
    let mut stmt = conn
        .prepare("SELECT id FROM member WHERE revoked_at IS NOT NULL")
        .map_err(sql("prepare revoked query"))?;
    let ids = stmt
        .query_map([], |r| r.get(0))
        .map_err(sql("query revoked members"))?
        .collect::<Result<Vec<String>, _>>()
        .map_err(sql("read revoked member"))?;
    Ok(ids)
}

/// Marks the member named `name` revoked (keeping an earlier revocation time). Returns its row.
pub fn revoke_member(
    conn: &Connection,
    mesh_id: &str,
    name: &str,
    now_ms: i64,
) -> Result<MemberRow, DevBrokerError> {
    let changed = conn
        .execute(
            "UPDATE member SET revoked_at = COALESCE(revoked_at, ?3) WHERE mesh_id = ?1 AND name = ?2",
            params![mesh_id, name, now_ms],
        )
        .map_err(sql("revoke member"))?;
    if changed == 0 {
        return Err(DevBrokerError::UnknownMember {
            name: name.to_owned(),
        });
    }
    query_members(conn, "mesh_id = ?1 AND name = ?2", &[&mesh_id, &name])?
        .into_iter()
        .next()
        .ok_or_else(|| DevBrokerError::UnknownMember {
            name: name.to_owned(),
        })
}

/// Replaces a member's `peer_grants` (tests use it to provoke `blocked by recipient grants`).
pub fn set_peer_grants(
    conn: &Connection,
    member_id: &str,
    grants: &Map<String, Value>,
) -> Result<(), DevBrokerError> {
    let text = serde_json::to_string(grants).map_err(|source| DevBrokerError::Json {
        what: "peer_grants",
        source,
    })?;
    conn.execute(
        "UPDATE member SET peer_grants = ?2 WHERE id = ?1",
        params![member_id, text],
    )
    .map_err(sql("set peer grants"))?;
    Ok(())
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
