//! The event journal in `inbox.db` (SPEC §7.3, §7.4): every event the daemon publishes is
//! appended here first, so SSE clients can resume by id across daemon restarts.
//!
//! Invariants: ids come from `AUTOINCREMENT`, so they increase by exactly one per committed
//! event (a rolled-back insert also rolls back the counter) and are never reused, also after
//! trimming and reopening; only the newest `journal_keep` events are retained; `data` is the
//! one-line JSON sent as the SSE `data:` field, `{"kind","ts","mesh",…fields}`.
//!
//! Ids also stay monotonic when the database itself is lost (quarantined as corrupt, or
//! deleted): a high-water mark lives outside it, in `<db>.event-id` beside the file, always at
//! or above every id issued. It is leased ahead ([`ID_LEASE`] ids per write, so one small
//! fsynced write per that many events), and a journal that has never issued an id starts
//! above it. A client holding an id from the lost journal then gets a `reset`, never a silent
//! resume over a different journal's events.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use serde_json::{Map, Value};

use super::store::{sql_op, InboxError};

/// Ids reserved in the high-water file per write.
pub const ID_LEASE: i64 = 1024;

/// `meta` key caching the high-water mark last written to the file.
const MARK_KEY: &str = "event_id_mark";

/// One journaled event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// The SSE `id:`; +1 per event, never reused.
    pub id: i64,
    /// The SSE `event:` (`message`, `peer_join`, …).
    pub kind: String,
    /// The mesh slug it concerns, if any (for `?mesh=` filtering).
    pub mesh: Option<String>,
    /// The SSE `data:` — JSON on one line.
    pub data: String,
}

/// What a resuming SSE client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// The events after the requested id, ascending (possibly empty).
    Events(Vec<StoredEvent>),
    /// The requested id is outside the journal (trimmed away, or newer than any id issued:
    /// the journal was recreated). The client gets one `reset` event and continues live.
    Reset {
        /// Oldest retained id (newest + 1 when the journal is empty).
        oldest_id: i64,
        /// Newest id ever issued (0 for a fresh journal).
        newest_id: i64,
    },
}

/// Appends an event in its own transaction and trims the journal to `journal_keep` events.
/// `data` = `{"kind":kind,"ts":ISO(now_ms),"mesh":mesh|null, …fields}`; `kind`, `ts` and
/// `mesh` in `fields` are overridden.
pub fn append_event(
    conn: &mut Connection,
    kind: &str,
    mesh: Option<&str>,
    fields: Map<String, Value>,
    now_ms: i64,
    journal_keep: usize,
) -> Result<StoredEvent, InboxError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_op("begin append event"))?;
    let event = append_in_tx(&tx, kind, mesh, fields, now_ms, journal_keep)?;
    tx.commit().map_err(sql_op("commit append event"))?;
    Ok(event)
}

/// The append itself, for callers that already hold a transaction (message insert).
pub(super) fn append_in_tx(
    conn: &Connection,
    kind: &str,
    mesh: Option<&str>,
    fields: Map<String, Value>,
    ts_ms: i64,
    journal_keep: usize,
) -> Result<StoredEvent, InboxError> {
    let mut data = fields;
    data.insert("kind".into(), Value::from(kind));
    data.insert("ts".into(), Value::from(crate::time::iso_from_ms(ts_ms)));
    data.insert("mesh".into(), mesh.map_or(Value::Null, Value::from));
    let data = serde_json::to_string(&data).map_err(|source| InboxError::Encode { source })?;
    conn.execute(
        "INSERT INTO events (kind, mesh, created_at, data) VALUES (?1, ?2, ?3, ?4)",
        rusqlite::params![kind, mesh, ts_ms, data],
    )
    .map_err(sql_op("insert event"))?;
    let id = conn.last_insert_rowid();
    cover_id(conn, id)?;
    // The journal never empties: the event just written is always kept.
    let keep = i64::try_from(journal_keep.max(1)).unwrap_or(i64::MAX);
    conn.execute(
        "DELETE FROM events WHERE id <= ?1",
        [id.saturating_sub(keep)],
    )
    .map_err(sql_op("trim journal"))?;
    Ok(StoredEvent {
        id,
        kind: kind.to_string(),
        mesh: mesh.map(str::to_string),
        data,
    })
}

/// The newest event id ever issued (0 when none), even if that event was trimmed.
pub fn newest_event_id(conn: &Connection) -> Result<i64, InboxError> {
    conn.query_row(
        "SELECT seq FROM sqlite_sequence WHERE name = 'events'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .optional()
    .map(|seq| seq.unwrap_or(0))
    .map_err(sql_op("read newest event id"))
}

/// Events with id > `after_id`, ascending, at most `limit`; or [`Replay::Reset`] when
/// `after_id` is older than the retained window (`after_id < oldest_id - 1`) or newer than
/// the newest id ever issued.
pub fn replay_after(conn: &Connection, after_id: i64, limit: usize) -> Result<Replay, InboxError> {
    let newest_id = newest_event_id(conn)?;
    let oldest: Option<i64> = conn
        .query_row("SELECT MIN(id) FROM events", [], |r| r.get(0))
        .map_err(sql_op("read oldest event id"))?;
    let oldest_id = oldest.unwrap_or(newest_id + 1);
    if after_id > newest_id || after_id < oldest_id - 1 {
        return Ok(Replay::Reset {
            oldest_id,
            newest_id,
        });
    }
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, kind, mesh, data FROM events WHERE id > ?1 ORDER BY id LIMIT ?2",
        )
        .map_err(sql_op("prepare replay"))?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let events = stmt
        .query_map(rusqlite::params![after_id, limit], |r| {
            Ok(StoredEvent {
                id: r.get(0)?,
                kind: r.get(1)?,
                mesh: r.get(2)?,
                data: r.get(3)?,
            })
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(sql_op("replay events"))?;
    Ok(Replay::Events(events))
}

/// The high-water file of the database `conn` has open (`None` for in-memory databases).
fn mark_path(conn: &Connection) -> Option<PathBuf> {
    conn.path()
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(format!("{p}.event-id")))
}

/// The mark in the file; `None` when absent or unreadable (logged: ids may then restart).
fn read_mark(path: &Path) -> Option<i64> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            log::warn!("event id mark {}: cannot read: {e}", path.display());
            return None;
        }
    };
    let mark = text.trim().parse::<i64>().ok().filter(|m| *m >= 0);
    if mark.is_none() {
        log::warn!(
            "event id mark {}: not a non-negative integer; ignored",
            path.display()
        );
    }
    mark
}

/// Replaces the file with `mark`, durably (temp file, fsync, rename), 0600, never through a
/// symlink.
fn write_mark(path: &Path, mark: i64) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    f.write_all(format!("{mark}\n").as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

fn cached_mark(conn: &Connection) -> Result<i64, InboxError> {
    let v: Option<String> = conn
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")
        .and_then(|mut st| st.query_row([MARK_KEY], |r| r.get(0)).optional())
        .map_err(sql_op("read event id mark"))?;
    Ok(v.and_then(|v| v.parse().ok()).unwrap_or(0))
}

fn cache_mark(conn: &Connection, mark: i64) -> Result<(), InboxError> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .and_then(|mut st| st.execute((MARK_KEY, mark.to_string())))
    .map(|_| ())
    .map_err(sql_op("write event id mark"))
}

/// Makes the high-water file cover `id` before the event is committed, leasing ahead.
fn cover_id(conn: &Connection, id: i64) -> Result<(), InboxError> {
    let Some(path) = mark_path(conn) else {
        return Ok(());
    };
    if id <= cached_mark(conn)? {
        return Ok(());
    }
    let mark = id.saturating_add(ID_LEASE - 1);
    if let Err(e) = write_mark(&path, mark) {
        // The event is still journaled: losing monotonicity after a later quarantine beats
        // losing the message now. Cached anyway, so the next write is a lease away.
        log::warn!("event id mark {}: cannot write: {e}", path.display());
    }
    cache_mark(conn, mark)
}

/// At open: a journal that has never issued an id (new, or recreated after its database was
/// quarantined or deleted) continues above the high-water mark. A journal that has issued
/// ids keeps counting by one (the mark is leased ahead, so it is usually above them).
pub(super) fn continue_above_mark(conn: &Connection) -> Result<(), InboxError> {
    let Some(path) = mark_path(conn) else {
        return Ok(());
    };
    if newest_event_id(conn)? != 0 {
        return Ok(());
    }
    let Some(mark) = read_mark(&path) else {
        return Ok(());
    };
    let n = conn
        .execute(
            "UPDATE sqlite_sequence SET seq = ?1 WHERE name = 'events'",
            [mark],
        )
        .map_err(sql_op("raise event ids"))?;
    if n == 0 {
        conn.execute(
            "INSERT INTO sqlite_sequence (name, seq) VALUES ('events', ?1)",
            [mark],
        )
        .map_err(sql_op("raise event ids"))?;
    }
    log::info!("event journal is new; its ids continue above {mark}");
    cache_mark(conn, mark)
}
