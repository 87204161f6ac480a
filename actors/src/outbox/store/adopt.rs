//! Adoption of an `outbox.db` left by the TypeScript daemon (SPEC §3 step 4).
//!
//! Recognised by an `outbox` table without a `schema_version` table. A consistent copy of
//! the original (WAL included) is first written beside it as `outbox.db.ts-backup` (0600);
//! then, in one transaction, the old table is renamed away, our schema created and the rows
//! imported: `done` stays `done` (its id keeps answering duplicates), `pending`/`inflight`
//! become `dead` with `last_error` [`IMPORTED_ERROR`] (the TS daemon sent every row as a
//! plaintext broadcast, so no destination is known to resume), `dead` and `aborted` stay as
//! they were, and `superseded_by` links are carried over to the new row ids. Routing columns
//! the later TS versions recorded (`mesh`, `target_spec`, `priority`) are kept when present;
//! otherwise `mesh` and `to` are empty and requeue refuses the row.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, TransactionBehavior};

use super::schema::{apply_all, open_err, table_exists};
use super::{StoreError, IMPORTED_ERROR};
use crate::time::now_ms;

/// Name the TypeScript table is moved to while its rows are copied.
const OLD_TABLE: &str = "ts_outbox_import";

/// Whether this database is a TypeScript daemon's outbox not yet adopted.
pub(super) fn is_typescript_outbox(conn: &Connection) -> rusqlite::Result<bool> {
    Ok(!table_exists(conn, "schema_version")? && table_exists(conn, "outbox")?)
}

/// Backs the file up and imports its rows into the current schema (see the module docs).
pub(super) fn adopt(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let backup = backup(conn, path)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(open_err(path, "begin adoption"))?;
    // Another opener may have adopted the file while we were copying it.
    if !is_typescript_outbox(&tx).map_err(open_err(path, "inspect schema"))? {
        return Ok(());
    }
    let imported = import(&tx).map_err(open_err(path, "import typescript outbox"))?;
    tx.commit().map_err(open_err(path, "commit adoption"))?;
    log::info!(
        "{}: adopted the TypeScript daemon's outbox ({imported} rows); original kept at {}",
        path.display(),
        backup.display()
    );
    Ok(())
}

/// Writes a consistent copy of the database to `<path>.ts-backup` (or, if that exists from an
/// earlier interrupted attempt, `<path>.ts-backup-<unix ms>`), created 0600.
fn backup(conn: &Connection, path: &Path) -> Result<PathBuf, StoreError> {
    let mut target = PathBuf::from(format!("{}.ts-backup", path.display()));
    if target.exists() {
        target = PathBuf::from(format!("{}.ts-backup-{}", path.display(), now_ms()));
    }
    let io = |operation| {
        let target = target.clone();
        move |source| StoreError::Io {
            path: target,
            operation,
            source,
        }
    };
    // VACUUM INTO accepts an existing empty file, so the copy is never world-readable.
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&target)
        .map_err(io("create backup"))?;
    let name = target.to_str().ok_or_else(|| {
        io("name backup")(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "path is not UTF-8",
        ))
    })?;
    conn.execute("VACUUM INTO ?1", [name])
        .map_err(open_err(path, "back up typescript outbox"))?;
    Ok(target)
}

/// Moves the TS table aside, creates our schema, copies the rows, drops the old table.
/// Returns the number of rows imported.
fn import(conn: &Connection) -> rusqlite::Result<usize> {
    let columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('outbox')")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let has = |c: &str| columns.iter().any(|n| n == c);
    let indexes: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master
              WHERE type = 'index' AND tbl_name = 'outbox' AND sql IS NOT NULL",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for name in indexes {
        conn.execute_batch(&format!("DROP INDEX \"{}\"", name.replace('"', "\"\"")))?;
    }
    conn.execute_batch(&format!("ALTER TABLE outbox RENAME TO {OLD_TABLE}"))?;
    apply_all(conn)?;

    let mesh = if has("mesh") {
        "coalesce(mesh, '')"
    } else {
        "''"
    };
    let (to, target) = if has("target_spec") {
        ("coalesce(target_spec, '')", "target_spec")
    } else {
        ("''", "NULL")
    };
    let priority = if has("priority") {
        "CASE WHEN priority IN ('now','next','low') THEN priority ELSE 'next' END"
    } else {
        "'next'"
    };
    let imported = conn.execute(
        &format!(
            "INSERT INTO outbox (client_message_id, request_fingerprint, payload, payload_bytes,
                 enqueued_at, attempts, next_attempt_at, status, last_error, delivered_at,
                 broker_message_id, aborted_at, aborted_by, mesh, to_spec, target, priority)
             SELECT client_message_id, request_fingerprint, payload,
                 coalesce(length(payload), 0), enqueued_at, attempts, next_attempt_at,
                 CASE WHEN status IN ('pending','inflight') THEN 'dead' ELSE status END,
                 CASE WHEN status IN ('pending','inflight') THEN ?1 ELSE last_error END,
                 delivered_at, broker_message_id, aborted_at, aborted_by,
                 {mesh}, {to}, {target}, {priority}
               FROM {OLD_TABLE} ORDER BY enqueued_at, rowid"
        ),
        [IMPORTED_ERROR],
    )?;
    // superseded_by held the TS text id of the replacement row; point it at the new row id.
    conn.execute_batch(&format!(
        "UPDATE outbox SET superseded_by = (
             SELECT n.id FROM {OLD_TABLE} o
               JOIN {OLD_TABLE} s ON s.id = o.superseded_by
               JOIN outbox n ON n.client_message_id = s.client_message_id
              WHERE o.client_message_id = outbox.client_message_id)
          WHERE client_message_id IN
                (SELECT client_message_id FROM {OLD_TABLE} WHERE superseded_by IS NOT NULL);
         DROP TABLE {OLD_TABLE};"
    ))?;
    Ok(imported)
}
