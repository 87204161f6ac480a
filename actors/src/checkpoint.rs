//! Background WAL checkpoints for the two writer connections (`outbox.db`, `inbox.db`).
//!
//! In WAL mode a commit appends pages to the `-wal` file; a checkpoint copies them back into
//! the database file and, with `synchronous = NORMAL`, fsyncs both. SQLite's automatic
//! checkpoint runs inside the commit that crosses 1,000 WAL pages, on the writer's thread: the
//! fsyncs then stall every accept queued behind that commit. [`attach`] moves that work to a
//! thread of its own with its own connection: the writer's commit only wakes it.
//!
//! - A commit that leaves [`WAKE_PAGES`] or more in the WAL wakes the checkpointer, which runs
//!   a `PASSIVE` checkpoint (it never waits for the writer or a reader). Wake-ups coalesce.
//! - The writer restarts the WAL from its start at its next transaction once every frame is
//!   copied back, as before; while the checkpointer keeps up the file stays as small as it was.
//! - If the WAL still reaches [`INLINE_PAGES`] (the checkpointer fell behind a long burst,
//!   failed, or is gone), the writer checkpoints inline, as SQLite would have done. While the
//!   checkpointer is in the middle of one, the writer's attempt is busy and skipped: the WAL
//!   then grows until that checkpoint ends (bounded by the checkpointer's progress, not by
//!   [`INLINE_PAGES`]).
//! - Under a sustained write load the checkpointer never quite catches up (the WAL restarts
//!   only when every frame is copied back as a transaction begins), so the WAL grows to
//!   [`INLINE_PAGES`] and the writer's inline checkpoint, which then has only the tail left to
//!   copy, restarts it: the `-wal` file reaches ~71 MB (4.7 MB with checkpoints on the
//!   writer) and is reused at that size. Cutting it back to 16 MiB (`journal_size_limit`)
//!   doubled the accept p99 and cost ~10 % of unique accepts; an inline threshold of 4,000
//!   pages also doubled the p99 (issue 10, scale bench).
//! - The checkpointer runs at a lower priority ([`NICE`]): requests go first on a busy CPU.
//! - A failure is logged (at most once a minute), never returned: the commit that woke the
//!   checkpointer has already happened and must be answered as committed.
//!
//! The hook finds the checkpointer through a thread-local of the writer's thread, so
//! [`attach`] runs on that thread; the checkpointer ends when that thread ends. Crash safety
//! is SQLite's: a checkpoint interrupted at any point is redone from the WAL at the next open.

use std::cell::RefCell;
use std::os::raw::c_int;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};

use rusqlite::hooks::{CheckpointMode, Wal};
use rusqlite::Connection;

use crate::storage::LogGate;
use crate::time::now_ms;

/// WAL pages after a commit that wake the checkpointer (SQLite's own automatic threshold).
pub const WAKE_PAGES: c_int = 1_000;
/// WAL pages after a commit at which the writer checkpoints inline (64 MiB of 4 KiB pages).
pub const INLINE_PAGES: c_int = 16_000;
/// Nice value of the checkpointer thread: under a full load it yields the CPU to requests
/// (issue 10: inbox page p99 beside unique accepts 5.4–9.1 ms at nice 0, 2.6–3.6 ms at 10)
/// and still gets a tenth of a busy core, so it keeps up instead of leaving the copy to the
/// writer at [`INLINE_PAGES`].
const NICE: i32 = 10;

thread_local! {
    /// The checkpointers of the writer connections of this thread.
    static CHECKPOINTERS: RefCell<Vec<SyncSender<()>>> = const { RefCell::new(Vec::new()) };
    /// Log gate of the writer's inline checkpoints (a full disk fails every one).
    static INLINE_FAILURES: RefCell<LogGate> = RefCell::new(LogGate::default());
}

/// Moves the checkpoints of `conn`, a writer connection in WAL mode, to a thread named
/// `{name}-checkpoint`. Must run on the thread that commits on `conn`; the checkpointer ends
/// when that thread does. On an error (no connection path, no thread) nothing changes:
/// SQLite keeps checkpointing inline.
pub fn attach(conn: &Connection, name: &str) -> std::io::Result<()> {
    let path = conn
        .path()
        .filter(|p| !p.is_empty())
        .map(std::path::PathBuf::from)
        .ok_or_else(|| std::io::Error::other("the connection has no file"))?;
    let (wake, woken) = sync_channel(1);
    let label = name.to_string();
    std::thread::Builder::new()
        .name(format!("{name}-checkpoint"))
        .spawn(move || run(&path, &label, &woken))?;
    CHECKPOINTERS.with(|c| c.borrow_mut().push(wake));
    conn.wal_hook(Some(on_commit));
    Ok(())
}

/// The WAL hook of an attached writer (replaces SQLite's automatic checkpoint).
fn on_commit(wal: &Wal, pages: c_int) -> rusqlite::Result<()> {
    if pages < WAKE_PAGES {
        return Ok(());
    }
    let woken = pages < INLINE_PAGES
        && CHECKPOINTERS.with(|c| {
            let mut c = c.borrow_mut();
            c.retain(|w| !matches!(w.try_send(()), Err(TrySendError::Disconnected(()))));
            !c.is_empty()
        });
    if !woken {
        match wal.checkpoint_v2(CheckpointMode::PASSIVE) {
            Ok(_) => {}
            // The checkpointer is copying right now: the WAL restarts once it is done.
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => {}
            Err(e) => INLINE_FAILURES.with(|gate| {
                if let Some(held) = gate.borrow_mut().pass(now_ms(), 60_000) {
                    log::warn!(
                        "wal checkpoint on the writer ({pages} pages) failed: {e} ({held} more failures not logged)"
                    );
                }
            }),
        }
    }
    Ok(())
}

/// The checkpointer: one `PASSIVE` checkpoint per wake-up, until the writer's thread ends.
fn run(path: &Path, name: &str, woken: &Receiver<()>) {
    lower_priority(name);
    let conn = match Connection::open(path) {
        Ok(c) => c,
        Err(e) => {
            // The hook sees the channel closed and checkpoints inline.
            log::error!("{name}: cannot open the checkpoint connection: {e}");
            return;
        }
    };
    let mut failures = LogGate::default();
    while woken.recv().is_ok() {
        let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        });
        match done {
            Ok((log, copied)) => log::trace!("{name}: checkpoint copied {copied} of {log} pages"),
            Err(e) => {
                if let Some(held) = failures.pass(now_ms(), 60_000) {
                    log::warn!(
                        "{name}: wal checkpoint failed: {e} ({held} more failures not logged)"
                    );
                }
            }
        }
    }
}

/// Gives the calling thread the [`NICE`] value (Linux: a thread's own nice value).
fn lower_priority(name: &str) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls on this thread's own id; no memory is shared.
        let rc =
            unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, NICE) };
        if rc != 0 {
            log::debug!(
                "{name}: checkpointer keeps its priority: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = name;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// A writer in WAL mode on a fresh file, with `attach`ed checkpoints or SQLite's own.
    fn writer(dir: &Path, attached: bool) -> Connection {
        let conn = Connection::open(dir.join("t.db")).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
             CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB);",
        )
        .unwrap();
        if attached {
            attach(&conn, "test").unwrap();
        }
        conn
    }

    /// Commits of ~`pages` WAL pages each, `n` times.
    fn commit_pages(conn: &Connection, n: usize, pages: usize) {
        for _ in 0..n {
            let tx = conn.unchecked_transaction().unwrap();
            for _ in 0..pages {
                tx.execute("INSERT INTO t (b) VALUES (zeroblob(4000))", [])
                    .unwrap();
            }
            tx.commit().unwrap();
        }
    }

    /// Rows the database file holds without its WAL (what checkpoints have copied back).
    fn rows_in_file(dir: &Path) -> i64 {
        let uri = format!("file:{}?immutable=1", dir.join("t.db").display());
        let c = Connection::open_with_flags(
            uri,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
        )
        .unwrap();
        c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap_or(0)
    }

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let start = std::time::Instant::now();
        while !done() {
            assert!(start.elapsed().as_secs() < 10, "timed out: {what}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Past the wake threshold, the checkpointer thread copies the WAL back into the file.
    /// The writer's own commit does not: right after it, the file still lacks the rows.
    #[test]
    fn a_commit_past_the_threshold_is_copied_back_by_the_checkpointer() {
        let dir = tempfile::tempdir().unwrap();
        let conn = writer(dir.path(), true);
        let burst = i64::from(WAKE_PAGES) + 50;
        commit_pages(&conn, 1, burst as usize);
        wait_for("the rows reach the database file", || {
            rows_in_file(dir.path()) == burst
        });
        // The WAL is reused from its start by the next commit: it does not keep growing.
        let wal = dir.path().join("t.db-wal");
        let size = std::fs::metadata(&wal).unwrap().len();
        for i in 2..=6 {
            commit_pages(&conn, 1, burst as usize);
            wait_for("each burst copied back", || {
                rows_in_file(dir.path()) == i * burst
            });
        }
        let after = std::fs::metadata(&wal).unwrap().len();
        assert!(after <= size * 2, "wal grew from {size} to {after} bytes");
        // The checkpointer threads run at the lower priority.
        let nices: Vec<i64> = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("stat")).ok())
            .filter(|stat| stat.contains("(test-checkpoint)"))
            .map(|stat| {
                let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
                // Fields from the state on: nice is the 17th (field 19 of stat).
                after_comm.split(' ').nth(16).unwrap().parse().unwrap()
            })
            .collect();
        assert!(!nices.is_empty());
        assert!(nices.iter().all(|&n| n == i64::from(NICE)), "{nices:?}");
    }

    /// Without `attach`, the commit that crosses the threshold checkpoints inline (SQLite's
    /// default): the rows are in the file as soon as it returns (the baseline the other tests
    /// differ from).
    #[test]
    fn without_attach_the_crossing_commit_copies_inline() {
        let dir = tempfile::tempdir().unwrap();
        let conn = writer(dir.path(), false);
        commit_pages(&conn, 1, WAKE_PAGES as usize + 50);
        assert_eq!(rows_in_file(dir.path()), i64::from(WAKE_PAGES) + 50);
    }

    /// With the checkpointer gone (its thread could not open the file), the writer falls
    /// back to checkpointing inline at the wake threshold.
    #[test]
    fn a_gone_checkpointer_falls_back_to_inline_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let conn = writer(dir.path(), false);
        let (wake, woken) = sync_channel(1);
        drop(woken);
        CHECKPOINTERS.with(|c| c.borrow_mut().push(wake));
        conn.wal_hook(Some(on_commit));
        commit_pages(&conn, 1, WAKE_PAGES as usize + 50);
        assert_eq!(rows_in_file(dir.path()), i64::from(WAKE_PAGES) + 50);
        assert!(CHECKPOINTERS.with(|c| c.borrow().is_empty()));
    }

    /// Past the inline threshold the writer checkpoints itself even with a checkpointer that
    /// never runs (a wake-up already pending and never taken).
    #[test]
    fn a_stalled_checkpointer_is_backed_up_by_the_writer_at_the_inline_threshold() {
        let dir = tempfile::tempdir().unwrap();
        let conn = writer(dir.path(), false);
        let (wake, _woken) = sync_channel(1);
        CHECKPOINTERS.with(|c| c.borrow_mut().push(wake));
        conn.wal_hook(Some(on_commit));
        commit_pages(&conn, 1, WAKE_PAGES as usize + 50);
        assert_eq!(rows_in_file(dir.path()), 0, "woken, not copied inline");
        commit_pages(&conn, 1, INLINE_PAGES as usize);
        assert!(rows_in_file(dir.path()) > i64::from(INLINE_PAGES));
        CHECKPOINTERS.with(|c| c.borrow_mut().clear());
    }
}
