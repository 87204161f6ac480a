//! Opening `outbox.db`: file creation (0600), PRAGMAs, integrity check, the numbered
//! forward-only migrations (each in one `BEGIN IMMEDIATE` transaction, applied versions kept
//! in `schema_version`) and the clean-shutdown marker in `daemon_meta`.

use std::fs::{OpenOptions, Permissions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior};

use super::{adopt, Durability, StoreError};
use crate::time::now_ms;

/// Version 1: the outbox with the reference columns plus every routing field.
///
/// `dest` is the per-destination FIFO key (`coalesce(target, to_spec)`); the partial indexes
/// on it let [`super::claim_due`] find each destination's oldest pending row without scanning
/// the queue.
pub(super) const V1: &str = "
CREATE TABLE schema_version (
    version    INTEGER PRIMARY KEY,
    applied_at INTEGER NOT NULL
);
CREATE TABLE daemon_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE outbox (
    id                  INTEGER PRIMARY KEY,
    client_message_id   TEXT NOT NULL UNIQUE,
    request_fingerprint BLOB NOT NULL,
    payload             BLOB,
    payload_bytes       INTEGER NOT NULL,
    enqueued_at         INTEGER NOT NULL,
    attempts            INTEGER NOT NULL DEFAULT 0,
    next_attempt_at     INTEGER NOT NULL,
    status              TEXT NOT NULL
                        CHECK (status IN ('pending','inflight','done','dead','aborted')),
    last_error          TEXT,
    delivered_at        INTEGER,
    broker_message_id   TEXT,
    aborted_at          INTEGER,
    aborted_by          TEXT,
    superseded_by       INTEGER REFERENCES outbox(id),
    mesh                TEXT NOT NULL,
    to_spec             TEXT NOT NULL,
    target              TEXT,
    priority            TEXT NOT NULL CHECK (priority IN ('now','next','low')),
    meta                TEXT,
    reply_to_id         TEXT,
    dest                TEXT GENERATED ALWAYS AS (coalesce(target, to_spec)) VIRTUAL
);
CREATE INDEX outbox_status_next_attempt ON outbox(status, next_attempt_at);
CREATE INDEX outbox_status_enqueued ON outbox(status, enqueued_at);
CREATE INDEX outbox_pending_dest ON outbox(mesh, dest, enqueued_at, id)
    WHERE status = 'pending';
CREATE INDEX outbox_inflight_dest ON outbox(mesh, dest) WHERE status = 'inflight';
CREATE INDEX outbox_done_unpruned ON outbox(delivered_at)
    WHERE status = 'done' AND payload IS NOT NULL;
";

/// Version 2: the session registry (SPEC §12). One row per registered agent session, keyed by
/// the SHA-256 of its token (the token itself is never stored); the session secret key lives
/// only here, in this 0600 file, so a restart can rehydrate live sessions with their keypair.
const V2: &str = "
CREATE TABLE sessions (
    token_sha256   TEXT PRIMARY KEY,
    token_prefix   TEXT NOT NULL,
    session_id     TEXT NOT NULL UNIQUE,
    mesh           TEXT NOT NULL,
    display_name   TEXT NOT NULL,
    pid            INTEGER NOT NULL,
    process_start  INTEGER,
    cwd            TEXT,
    role           TEXT,
    groups         TEXT NOT NULL DEFAULT '[]',
    session_pubkey TEXT,
    session_secret BLOB,
    attestation    TEXT,
    registered_at  INTEGER NOT NULL
);
";

/// Version 3: the sending session of a row (SPEC §12 "Sending as a session"): its pubkey, so
/// the row drains over that session's connection while the session lives.
const V3: &str = "
ALTER TABLE outbox ADD COLUMN session_pubkey TEXT;
";

/// Version 4: row counts by status kept in the transactions that change the rows (SPEC §8
/// "Cost"): health, metrics and status read five rows instead of counting the outbox. Seeded
/// from the rows the file holds when the migration runs (an adopted TypeScript outbox
/// included); the triggers keep it exact from then on, whoever writes (a rolled-back
/// transaction rolls its counts back too).
const V4: &str = "
CREATE TABLE outbox_counts (
    status TEXT PRIMARY KEY,
    n      INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO outbox_counts (status, n)
    SELECT s.status, (SELECT count(*) FROM outbox o WHERE o.status = s.status)
      FROM (SELECT 'pending' AS status UNION ALL SELECT 'inflight' UNION ALL SELECT 'done'
            UNION ALL SELECT 'dead' UNION ALL SELECT 'aborted') s;
CREATE TRIGGER outbox_counts_insert AFTER INSERT ON outbox BEGIN
    UPDATE outbox_counts SET n = n + 1 WHERE status = NEW.status;
END;
CREATE TRIGGER outbox_counts_update AFTER UPDATE OF status ON outbox
    WHEN OLD.status <> NEW.status BEGIN
    UPDATE outbox_counts SET n = n - 1 WHERE status = OLD.status;
    UPDATE outbox_counts SET n = n + 1 WHERE status = NEW.status;
END;
CREATE TRIGGER outbox_counts_delete AFTER DELETE ON outbox BEGIN
    UPDATE outbox_counts SET n = n - 1 WHERE status = OLD.status;
END;
";

/// Version 5: the pending rows of a mesh sent to a name (the only rows whose `target` is NULL
/// or differs from `to_spec`), by that name, so that a send to a name nobody has resolved yet
/// finds the newest pending row sent to that name with one descent instead of walking every
/// pending row (issue 10: no cost on the writer that grows with the outbox). Rows sent to a
/// pubkey, group, topic or `*` stay out of it and cost nothing more; in-flight rows need no
/// such index (the drain's claim budget bounds them). A file at version 4 gets it built once,
/// at the first start of this binary (one pass over the table).
const V5: &str = "
CREATE INDEX outbox_pending_named ON outbox(mesh, to_spec, enqueued_at, id)
    WHERE status = 'pending' AND (target IS NULL OR target <> to_spec);
";

/// The version that adds `outbox_counts` (a file below it is seeded from its rows).
#[cfg(test)]
pub(super) const COUNTS_VERSION: i64 = 4;

/// The migrations, version `i + 1` at index `i`. Append only; never edit a released one.
const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5];

/// The schema version this binary writes; a database with a higher one is refused.
pub const SCHEMA_VERSION: i64 = 5;

const _: () = assert!(MIGRATIONS.len() as i64 == SCHEMA_VERSION);

/// Key of the clean-shutdown marker in `daemon_meta`.
const CLEAN_SHUTDOWN_KEY: &str = "clean_shutdown";

/// Opens (creating it 0600 if needed) and migrates `outbox.db`.
///
/// Sets WAL, `synchronous` per `durability`, `busy_timeout` 5 s and `foreign_keys`. With
/// `integrity_check`, runs `PRAGMA integrity_check` first (the caller does so after an
/// unclean shutdown). A TypeScript daemon's outbox is adopted (see the `adopt` module).
///
/// Errors: [`StoreError::Corrupt`] for a file that is not a database or fails the check,
/// [`StoreError::TooNew`] for a schema newer than [`SCHEMA_VERSION`].
pub fn open(
    path: &Path,
    durability: Durability,
    integrity_check: bool,
) -> Result<Connection, StoreError> {
    create_private(path)?;
    let mut conn = Connection::open(path).map_err(open_err(path, "open"))?;
    conn.busy_timeout(Duration::from_millis(5000))
        .map_err(open_err(path, "set busy_timeout"))?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .map_err(open_err(path, "set journal_mode"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        log::warn!("{}: journal_mode is {mode}, not wal", path.display());
    }
    let sync = match durability {
        Durability::Normal => "NORMAL",
        Durability::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", sync)
        .map_err(open_err(path, "set synchronous"))?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(open_err(path, "set foreign_keys"))?;
    if integrity_check {
        self::integrity_check(&conn, path)?;
    }
    migrate(&mut conn, path)?;
    Ok(conn)
}

/// Runs `PRAGMA integrity_check`; anything but `ok` is [`StoreError::Corrupt`].
pub fn integrity_check(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let lines = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut st| {
            st.query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(open_err(path, "integrity_check"))?;
    if lines.len() == 1 && lines[0] == "ok" {
        return Ok(());
    }
    let shown: Vec<&str> = lines.iter().take(5).map(String::as_str).collect();
    Err(StoreError::Corrupt {
        path: path.to_path_buf(),
        detail: format!("integrity_check: {}", shown.join("; ")),
    })
}

/// Records whether the daemon is shutting down cleanly: `false` right after startup, `true`
/// as the last write of an ordered shutdown.
pub fn write_clean_shutdown(conn: &Connection, clean: bool) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO daemon_meta (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (CLEAN_SHUTDOWN_KEY, if clean { "1" } else { "0" }),
    )
    .map(drop)
    .map_err(StoreError::sql("write clean-shutdown marker"))
}

/// Whether the last run ended with [`write_clean_shutdown`]`(true)`. A database without a
/// marker (new, or adopted) counts as clean: no previous run of ours can have left it torn.
pub fn was_clean_shutdown(conn: &Connection) -> Result<bool, StoreError> {
    let v: Option<String> = conn
        .query_row(
            "SELECT value FROM daemon_meta WHERE key = ?1",
            [CLEAN_SHUTDOWN_KEY],
            |r| r.get(0),
        )
        .optional()
        .map_err(StoreError::sql("read clean-shutdown marker"))?;
    Ok(v.is_none_or(|v| v == "1"))
}

/// Applies every missing migration, one transaction each. The version is re-read inside each
/// `BEGIN IMMEDIATE`, so concurrent openers never apply one twice.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    if adopt::is_typescript_outbox(conn).map_err(open_err(path, "inspect schema"))? {
        adopt::adopt(conn, path)?;
    }
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(open_err(path, "begin migration"))?;
        let found = current_version(&tx).map_err(open_err(path, "read schema_version"))?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: path.to_path_buf(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        let Some((sql, version)) = MIGRATIONS.iter().zip(1i64..).nth(found_index(found)) else {
            return Ok(());
        };
        apply(&tx, version, sql).map_err(open_err(path, "apply migration"))?;
        tx.commit().map_err(open_err(path, "commit migration"))?;
        log::info!("{}: migrated to schema version {version}", path.display());
    }
}

/// The highest applied migration; 0 for a database without `schema_version`.
pub(super) fn current_version(conn: &Connection) -> rusqlite::Result<i64> {
    if !table_exists(conn, "schema_version")? {
        return Ok(0);
    }
    conn.query_row(
        "SELECT coalesce(max(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )
}

/// Index into [`MIGRATIONS`] of the migration that follows version `found`.
fn found_index(found: i64) -> usize {
    usize::try_from(found).unwrap_or(0)
}

/// Runs migration `version` and records it (inside the caller's transaction).
fn apply(conn: &Connection, version: i64, sql: &str) -> rusqlite::Result<()> {
    conn.execute_batch(sql)?;
    conn.execute(
        "INSERT INTO schema_version (version, applied_at) VALUES (?1, ?2)",
        (version, now_ms()),
    )?;
    Ok(())
}

/// Runs every migration from an empty schema (inside the caller's transaction).
pub(super) fn apply_all(conn: &Connection) -> rusqlite::Result<()> {
    for (sql, version) in MIGRATIONS.iter().zip(1i64..) {
        apply(conn, version, sql)?;
    }
    Ok(())
}

/// Builds the schema of an older binary: migrations 1 to `version` only (tests of the
/// forward migration).
#[cfg(test)]
pub(super) fn apply_up_to(conn: &Connection, version: i64) -> rusqlite::Result<()> {
    for (sql, v) in MIGRATIONS.iter().zip(1i64..) {
        if v > version {
            break;
        }
        apply(conn, v, sql)?;
    }
    Ok(())
}

/// Whether a table of this name exists.
pub(super) fn table_exists(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [name],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}

/// Creates the file with mode 0600 before SQLite opens it (so it is never wider), and
/// tightens an existing file that is wider.
pub(super) fn create_private(path: &Path) -> Result<(), StoreError> {
    let io = |operation| {
        move |source| StoreError::Io {
            path: path.to_path_buf(),
            operation,
            source,
        }
    };
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io("create"))?;
    let mode = file.metadata().map_err(io("stat"))?.permissions().mode();
    if mode & 0o077 != 0 {
        file.set_permissions(Permissions::from_mode(0o600))
            .map_err(io("chmod 0600"))?;
        log::warn!(
            "{}: mode {:o} was wider than 0600; tightened",
            path.display(),
            mode & 0o777
        );
    }
    Ok(())
}

/// Maps an error met while opening: "not a database"/"corrupt" become
/// [`StoreError::Corrupt`], the rest [`StoreError::Open`] with the operation.
pub(super) fn open_err(
    path: &Path,
    operation: &'static str,
) -> impl Fn(rusqlite::Error) -> StoreError {
    let path: PathBuf = path.to_path_buf();
    move |source| match source.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
            path: path.clone(),
            detail: format!("{operation}: {source}"),
        },
        _ => StoreError::Open {
            path: path.clone(),
            operation,
            source,
        },
    }
}
