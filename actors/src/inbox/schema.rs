//! Schema of `inbox.db`: numbered, forward-only migrations, each in one transaction, with the
//! applied version kept in the `schema_version` table; and the adoption of a database left by
//! the TypeScript daemon (an `inbox` table and no `schema_version`), whose rows are imported
//! after a consistent copy of the original is kept as `inbox.db.ts-backup`.
//!
//! Tables (version 1):
//! - `inbox`: one row per distinct `(mesh, dedupe_key)`; `dedupe_key` is
//!   `c:<sender pubkey>:<client_message_id>` when the push carries a client id (ids are chosen
//!   by senders, so they are only unique per sender), else `b:<broker message id>`. `id` is
//!   the paging cursor.
//! - `events`: the journal; `AUTOINCREMENT` so an id is never issued twice, even after the
//!   rows holding the highest ids were trimmed (the high-water mark lives in `sqlite_sequence`).
//! - `meta`: key/value (the clean-shutdown marker).
//!
//! Version 2 (sessions, SPEC §12) adds to `inbox`: `seen_at` (unix ms, NULL = unread),
//! `recipient_pubkey` and `recipient_kind` (`member` | `session`: which of our identities the
//! push was addressed to; existing rows become `member` with an unknown pubkey), and
//! `sender_member_pubkey` (the sender's member key when the broker gave it).

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::store::{sql_err, InboxError};

/// The schema version this binary writes; a database with a higher one is refused.
pub const SCHEMA_VERSION: i64 = 2;

pub(super) const V1_TABLES: &str = "
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE inbox (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    mesh              TEXT    NOT NULL,
    dedupe_key        TEXT    NOT NULL,
    client_message_id TEXT,
    broker_message_id TEXT    NOT NULL,
    topic             TEXT,
    sender_pubkey     TEXT    NOT NULL,
    sender_name       TEXT,
    body              TEXT,
    kind              TEXT    NOT NULL CHECK (kind IN ('dm', 'plain', 'undecryptable')),
    decrypt_error     INTEGER NOT NULL DEFAULT 0 CHECK (decrypt_error IN (0, 1)),
    received_at       INTEGER NOT NULL,
    reply_to_id       TEXT,
    priority          TEXT,
    UNIQUE (mesh, dedupe_key)
);
CREATE TABLE events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT    NOT NULL,
    mesh       TEXT,
    created_at INTEGER NOT NULL,
    data       TEXT    NOT NULL
);
";

pub(super) const V1_INDEXES: &str = "
CREATE INDEX inbox_received_at ON inbox (received_at);
CREATE INDEX inbox_topic_id    ON inbox (topic, id);
CREATE INDEX inbox_sender_id   ON inbox (sender_pubkey, id);
CREATE INDEX inbox_mesh_id     ON inbox (mesh, id);
";

const V2: &str = "
ALTER TABLE inbox ADD COLUMN seen_at INTEGER;
ALTER TABLE inbox ADD COLUMN recipient_pubkey TEXT;
ALTER TABLE inbox ADD COLUMN recipient_kind TEXT NOT NULL DEFAULT 'member'
    CHECK (recipient_kind IN ('member', 'session'));
ALTER TABLE inbox ADD COLUMN sender_member_pubkey TEXT;
CREATE INDEX inbox_mesh_unseen ON inbox (mesh, id) WHERE seen_at IS NULL;
INSERT INTO schema_version (version) VALUES (2);
";

/// Copies the TS daemon's rows. Its `client_message_id` was "client id, else broker id"; a
/// client id equal to the broker id was that fallback, so it becomes NULL, and the dedupe key
/// is built the way `insert_message` builds it (sender-scoped client id, else broker id). The TS daemon did not record whether a body was a DM, so bodies import as
/// `plain`; a NULL body as `undecryptable`.
const TS_IMPORT: &str = "
INSERT OR IGNORE INTO inbox (mesh, dedupe_key, client_message_id, broker_message_id, topic,
    sender_pubkey, sender_name, body, kind, decrypt_error, received_at, reply_to_id)
SELECT mesh,
       CASE WHEN client_message_id IS NULL OR client_message_id = broker_message_id
            THEN 'b:' || COALESCE(broker_message_id, client_message_id)
            ELSE 'c:' || sender_pubkey || ':' || client_message_id END,
       CASE WHEN client_message_id = broker_message_id THEN NULL ELSE client_message_id END,
       COALESCE(broker_message_id, ''), topic, sender_pubkey, sender_name, body,
       CASE WHEN body IS NULL THEN 'undecryptable' ELSE 'plain' END,
       CASE WHEN body IS NULL THEN 1 ELSE 0 END,
       received_at, reply_to_id
  FROM ts_inbox
 ORDER BY received_at, rowid;
DROP TABLE ts_inbox;
";

fn table_exists(conn: &Connection, name: &str) -> Result<bool, rusqlite::Error> {
    conn.query_row(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [name],
        |_| Ok(()),
    )
    .optional()
    .map(|found| found.is_some())
}

/// The applied schema version: 0 for an empty or TS-daemon database.
pub(super) fn current_version(conn: &Connection) -> Result<i64, rusqlite::Error> {
    if !table_exists(conn, "schema_version")? {
        return Ok(0);
    }
    conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )
}

/// Brings the database at `path` to [`SCHEMA_VERSION`]; refuses a newer one.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), InboxError> {
    let found = current_version(conn).map_err(sql_err(path, "read schema version"))?;
    if found > SCHEMA_VERSION {
        return Err(InboxError::TooNew {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found < 1 {
        migrate_v1(conn, path)?;
    }
    if found < 2 {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err(path, "begin migration 2"))?;
        tx.execute_batch(V2).map_err(sql_err(path, "migration 2"))?;
        tx.commit().map_err(sql_err(path, "commit migration 2"))?;
    }
    Ok(())
}

fn migrate_v1(conn: &mut Connection, path: &Path) -> Result<(), InboxError> {
    let legacy = table_exists(conn, "inbox").map_err(sql_err(path, "inspect schema"))?;
    if legacy {
        let backup = backup_legacy(conn, path)?;
        log::info!(
            "adopting TypeScript daemon inbox {}; original kept as {}",
            path.display(),
            backup.display()
        );
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_err(path, "begin migration 1"))?;
    let mut batch = String::new();
    if legacy {
        // The TS indexes move with the renamed table and die with it; our names differ anyway.
        batch.push_str("ALTER TABLE inbox RENAME TO ts_inbox;");
    }
    batch.push_str(V1_TABLES);
    if legacy {
        batch.push_str(TS_IMPORT);
    }
    batch.push_str(V1_INDEXES);
    batch.push_str("INSERT INTO schema_version (version) VALUES (1);");
    tx.execute_batch(&batch)
        .map_err(sql_err(path, "migration 1"))?;
    tx.commit().map_err(sql_err(path, "commit migration 1"))
}

/// Writes a consistent copy of the TS database (WAL included) next to it, 0600, under the
/// first free name of `inbox.db.ts-backup`, `inbox.db.ts-backup.1`, ….
fn backup_legacy(conn: &Connection, path: &Path) -> Result<PathBuf, InboxError> {
    let base = format!("{}.ts-backup", path.display());
    let mut n = 0u32;
    loop {
        let candidate = PathBuf::from(if n == 0 {
            base.clone()
        } else {
            format!("{base}.{n}")
        });
        // Created empty with its final mode first: VACUUM INTO accepts an empty target and
        // would otherwise create it with the umask's mode.
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&candidate)
        {
            Ok(_) => {
                let Some(target) = candidate.to_str() else {
                    return Err(InboxError::NonUtf8Path { path: candidate });
                };
                conn.execute("VACUUM INTO ?1", [target])
                    .map_err(sql_err(path, "back up TypeScript inbox"))?;
                return Ok(candidate);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
            Err(source) => {
                return Err(InboxError::Io {
                    op: "create backup",
                    path: candidate,
                    source,
                })
            }
        }
    }
}
