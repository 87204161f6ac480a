//! Opening `inbox.db` and the inbox API the InboxStore actor calls (SPEC §3 step 4, §7).
//!
//! Opening creates the file 0600 (before SQLite does, so no umask window; SQLite gives the
//! `-wal`/`-shm` files the same mode), sets WAL, `synchronous = NORMAL`, `busy_timeout`,
//! `foreign_keys`, optionally runs `PRAGMA integrity_check`, then migrates. A corrupt file or
//! one that is not a database is [`InboxError::Corrupt`]; [`open_or_quarantine`] then moves it
//! (with its `-wal`/`-shm`) to `inbox.db.corrupt-<unix seconds>` and starts a fresh one: the
//! inbox is a cache of what the broker already delivered, so losing it beats refusing to run.
//!
//! The clean-shutdown marker lives in the `meta` table: [`open_for_startup`] runs the
//! integrity check only when the previous run did not write it, then clears it; the daemon
//! writes it with [`write_clean_shutdown`] as its last act.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OptionalExtension};

pub use super::journal::{append_event, newest_event_id, replay_after, Replay, StoredEvent};
pub use super::messages::{
    insert_message, prune, query, InboundMessage, InboxItem, InboxQuery, Inserted, MessageKind,
    RecipientKind,
};
pub use super::read_state::{delete_row, delete_rows, mark_seen, Scope};
pub use super::schema::SCHEMA_VERSION;

/// How long a statement waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Default number of journaled events kept (`inbox.event_journal`).
pub const DEFAULT_JOURNAL_KEEP: usize = 10_000;

/// Errors of the inbox database.
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    /// SQLite could not open the file.
    #[error("open {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A filesystem operation around the database failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The file is not a database or fails the integrity check.
    #[error("{path} is corrupt: {detail}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// SQLite's diagnosis.
        detail: String,
    },
    /// The database was written by a newer claudemeshd.
    #[error("{path} has schema version {found}, newer than this binary's {supported}; upgrade claudemeshd")]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest this binary knows.
        supported: i64,
    },
    /// A path SQLite must receive as text is not UTF-8.
    #[error("{path} is not valid UTF-8")]
    NonUtf8Path {
        /// The path.
        path: PathBuf,
    },
    /// A statement failed.
    #[error("inbox {op}: {source}")]
    Sql {
        /// What was being done.
        op: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// Event data could not be encoded as JSON.
    #[error("encode event data: {source}")]
    Encode {
        /// serde's error.
        #[source]
        source: serde_json::Error,
    },
}

impl InboxError {
    /// The storage failure this error is (disk full, busy, I/O), if it is one.
    pub fn fault(&self) -> Option<crate::storage::StorageFault> {
        match self {
            Self::Io { source, .. } => Some(crate::storage::io_fault(source)),
            Self::Sql { source, .. } | Self::Open { source, .. } => {
                crate::storage::sqlite_fault(source)
            }
            _ => None,
        }
    }

    /// True for corruption, also when it surfaces in a statement after opening.
    pub fn is_corrupt(&self) -> bool {
        match self {
            Self::Corrupt { .. } => true,
            Self::Sql { source, .. } | Self::Open { source, .. } => is_corruption(source),
            _ => false,
        }
    }
}

fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

/// Maps a statement error to [`InboxError::Sql`].
pub(super) fn sql_op(op: &'static str) -> impl FnOnce(rusqlite::Error) -> InboxError {
    move |source| InboxError::Sql { op, source }
}

/// Like [`sql_op`], but corruption becomes [`InboxError::Corrupt`] naming `path`.
pub(super) fn sql_err<'a>(
    path: &'a Path,
    op: &'static str,
) -> impl FnOnce(rusqlite::Error) -> InboxError + 'a {
    move |source| {
        if is_corruption(&source) {
            InboxError::Corrupt {
                path: path.to_path_buf(),
                detail: format!("{op}: {source}"),
            }
        } else {
            InboxError::Sql { op, source }
        }
    }
}

/// When to run `PRAGMA integrity_check` while opening.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Always,
    Never,
    UnlessCleanShutdown,
}

/// Opens (creating 0600 if needed) and migrates `inbox.db`; with `integrity_check`, runs
/// `PRAGMA integrity_check` first. Corruption → [`InboxError::Corrupt`]; a newer schema →
/// [`InboxError::TooNew`]; a TypeScript-daemon database is adopted (rows imported, original
/// kept as `inbox.db.ts-backup`).
pub fn open(path: &Path, integrity_check: bool) -> Result<Connection, InboxError> {
    let check = if integrity_check {
        Check::Always
    } else {
        Check::Never
    };
    open_checked(path, check).map(|(conn, _)| conn)
}

fn open_checked(path: &Path, check: Check) -> Result<(Connection, bool), InboxError> {
    create_private(path)?;
    let mut conn = Connection::open(path).map_err(|source| InboxError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(sql_err(path, "set busy_timeout"))?;
    // The first statement that reads the file: "not a database" surfaces here.
    conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
        .map_err(sql_err(path, "set journal_mode"))?;
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
        .map_err(sql_err(path, "set pragmas"))?;
    let run_check = match check {
        Check::Always => true,
        Check::Never => false,
        Check::UnlessCleanShutdown => {
            !read_clean_marker(&conn).map_err(sql_err(path, "read marker"))?
        }
    };
    if run_check {
        integrity_check(&conn, path)?;
    }
    super::schema::migrate(&mut conn, path)?;
    super::journal::continue_above_mark(&conn)?;
    Ok((conn, run_check))
}

/// Creates the file 0600 if missing; tightens an existing one (and its `-wal`/`-shm`) to 0600.
fn create_private(path: &Path) -> Result<(), InboxError> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|source| InboxError::Io {
            op: "create",
            path: path.to_path_buf(),
            source,
        })?;
    for p in [
        path.to_path_buf(),
        sidecar(path, "-wal"),
        sidecar(path, "-shm"),
    ] {
        if let Ok(meta) = fs::metadata(&p) {
            if meta.permissions().mode() & 0o077 != 0 {
                fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).map_err(|source| {
                    InboxError::Io {
                        op: "chmod",
                        path: p.clone(),
                        source,
                    }
                })?;
            }
        }
    }
    Ok(())
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Runs `PRAGMA integrity_check`; anything but `ok` is [`InboxError::Corrupt`].
pub fn integrity_check(conn: &Connection, path: &Path) -> Result<(), InboxError> {
    let mut stmt = conn
        .prepare("PRAGMA integrity_check(20)")
        .map_err(sql_err(path, "integrity_check"))?;
    let lines = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(sql_err(path, "integrity_check"))?;
    if lines.len() == 1 && lines[0] == "ok" {
        return Ok(());
    }
    Err(InboxError::Corrupt {
        path: path.to_path_buf(),
        detail: lines.join("; "),
    })
}

/// [`open`], but a corrupt file is moved aside (see [`quarantine`]) and a fresh database
/// opened; returns the quarantine path when that happened.
pub fn open_or_quarantine(
    path: &Path,
    integrity_check: bool,
    now_ms: i64,
) -> Result<(Connection, Option<PathBuf>), InboxError> {
    let check = if integrity_check {
        Check::Always
    } else {
        Check::Never
    };
    open_or_quarantine_checked(path, check, now_ms).map(|o| (o.conn, o.quarantined))
}

/// What [`open_for_startup`] did.
#[derive(Debug)]
pub struct StartupOpen {
    /// The open, migrated writer connection.
    pub conn: Connection,
    /// Where a corrupt database was moved, if it was.
    pub quarantined: Option<PathBuf>,
    /// Whether the previous file was checked: `PRAGMA integrity_check` ran (the last run ended
    /// uncleanly) or corruption was found while opening.
    pub integrity_checked: bool,
}

fn open_or_quarantine_checked(
    path: &Path,
    check: Check,
    now_ms: i64,
) -> Result<StartupOpen, InboxError> {
    match open_checked(path, check) {
        Ok((conn, integrity_checked)) => Ok(StartupOpen {
            conn,
            quarantined: None,
            integrity_checked,
        }),
        Err(e) if e.is_corrupt() => {
            let moved = quarantine(path, now_ms)?;
            log::warn!(
                "inbox database {} is corrupt ({e}); moved it to {} and started a fresh one",
                path.display(),
                moved.display()
            );
            let (conn, _) = open_checked(path, Check::Never)?;
            Ok(StartupOpen {
                conn,
                quarantined: Some(moved),
                integrity_checked: true,
            })
        }
        Err(e) => Err(e),
    }
}

/// Daemon startup: opens `inbox.db`, running the integrity check only if the previous run left
/// no clean-shutdown marker, quarantines a corrupt file, then clears the marker so a crash from
/// here on is detected next time.
pub fn open_for_startup(path: &Path, now_ms: i64) -> Result<StartupOpen, InboxError> {
    let opened = open_or_quarantine_checked(path, Check::UnlessCleanShutdown, now_ms)?;
    write_clean_shutdown(&opened.conn, false)?;
    Ok(opened)
}

/// Renames `path` and its `-wal`/`-shm` to `<name>.corrupt-<unix seconds>` (plus `.N` if that
/// exists already) and returns the new main path. The connection must be closed.
pub fn quarantine(path: &Path, now_ms: i64) -> Result<PathBuf, InboxError> {
    let base = format!("{}.corrupt-{}", path.display(), now_ms.div_euclid(1000));
    let mut target = PathBuf::from(&base);
    let mut n = 0u32;
    while fs::symlink_metadata(&target).is_ok() {
        n += 1;
        target = PathBuf::from(format!("{base}.{n}"));
    }
    let rename = |from: &Path, to: &Path| {
        fs::rename(from, to).map_err(|source| InboxError::Io {
            op: "quarantine",
            path: from.to_path_buf(),
            source,
        })
    };
    rename(path, &target)?;
    for suffix in ["-wal", "-shm"] {
        let from = sidecar(path, suffix);
        if fs::symlink_metadata(&from).is_ok() {
            rename(&from, &sidecar(&target, suffix))?;
        }
    }
    Ok(target)
}

const CLEAN_KEY: &str = "clean_shutdown";

fn read_clean_marker(conn: &Connection) -> rusqlite::Result<bool> {
    // Before migrations the table may not exist (fresh or TS database): not clean.
    let has_meta = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
            [],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if !has_meta {
        return Ok(false);
    }
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [CLEAN_KEY], |r| {
        r.get::<_, String>(0)
    })
    .optional()
    .map(|v| v.as_deref() == Some("1"))
}

/// Records whether the daemon is shutting down cleanly (`true`, its last write) or running
/// (`false`, written at startup).
pub fn write_clean_shutdown(conn: &Connection, clean: bool) -> Result<(), InboxError> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [CLEAN_KEY, if clean { "1" } else { "0" }],
    )
    .map(|_| ())
    .map_err(sql_op("write clean-shutdown marker"))
}

/// True when the last run wrote the clean-shutdown marker; false when it did not, or when the
/// marker cannot be read (so the caller errs towards checking integrity).
pub fn was_clean_shutdown(conn: &Connection) -> bool {
    read_clean_marker(conn).unwrap_or(false)
}
