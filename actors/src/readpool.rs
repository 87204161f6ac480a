//! [`ReadPool`]: a few read-only connections to a database whose one writer lives on its
//! owning actor's thread (SPEC §4, STYLE "SQLite"). In WAL mode readers see the last committed
//! state and neither wait for the writer nor make it wait, so inbox paging, outbox listing and
//! lookups, idempotency lookups that do not write and the health counts are served here and
//! never queue behind a long write transaction or a burst of accepts.
//!
//! Queries run on the blocking pool ([`ReadPool::run`]), never on an async arbiter. The pool
//! opens connections lazily (a daemon nobody asks keeps none) and keeps them once opened.

use std::path::{Path, PathBuf};
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags};

/// Connections at most: the machine has few cores and each reader holds a page cache.
const MAX_READERS: u32 = 4;
/// How long a request waits for a free reader before it fails.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a reader waits on a lock (a WAL reader only waits during recovery or a
/// checkpoint restart, rarely and briefly).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Page cache of one reader, in KiB (a negative `cache_size`): enough for index descents and
/// a page of rows, small enough to keep the idle RSS flat.
const READER_CACHE_KIB: i64 = 2048;

/// Why a read could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// No reader was free, or one could not be opened, within the checkout timeout.
    #[error("{path}: no read connection: {source}")]
    Pool { path: PathBuf, source: r2d2::Error },
    /// The blocking task was cancelled (runtime shutting down).
    #[error("{path}: read cancelled")]
    Cancelled { path: PathBuf },
}

/// A small pool of read-only connections to one database file.
#[derive(Clone)]
pub struct ReadPool {
    pool: r2d2::Pool<SqliteConnectionManager>,
    path: PathBuf,
}

impl std::fmt::Debug for ReadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadPool")
            .field("path", &self.path)
            .finish()
    }
}

impl ReadPool {
    /// A pool over `path` (already created, in WAL mode, migrated by its writer). Opens
    /// nothing yet: connections are made on first use.
    pub fn new(path: &Path) -> Self {
        let manager = SqliteConnectionManager::file(path)
            .with_flags(
                OpenFlags::SQLITE_OPEN_READ_ONLY
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX
                    | OpenFlags::SQLITE_OPEN_URI,
            )
            .with_init(|c| {
                c.busy_timeout(BUSY_TIMEOUT)?;
                c.pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
                c.pragma_update(None, "query_only", "ON")
            });
        let pool = r2d2::Pool::builder()
            .max_size(MAX_READERS)
            .min_idle(Some(0))
            .idle_timeout(None)
            .max_lifetime(None)
            .connection_timeout(CHECKOUT_TIMEOUT)
            .test_on_check_out(false)
            .build_unchecked(manager);
        ReadPool {
            pool,
            path: path.to_path_buf(),
        }
    }

    /// The file this pool reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `read` on a reader connection, synchronously (for blocking contexts and tests).
    pub fn read<R, E>(&self, read: impl FnOnce(&Connection) -> Result<R, E>) -> Result<R, E>
    where
        E: From<ReadError>,
    {
        let conn = self.pool.get().map_err(|source| ReadError::Pool {
            path: self.path.clone(),
            source,
        })?;
        read(&conn)
    }

    /// Runs `read` on a reader connection on the blocking pool.
    pub async fn run<R, E>(
        &self,
        read: impl FnOnce(&Connection) -> Result<R, E> + Send + 'static,
    ) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<ReadError> + Send + 'static,
    {
        let pool = self.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || pool.read(read))
            .await
            .unwrap_or_else(|_| Err(ReadError::Cancelled { path }.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let w = Connection::open(&path).unwrap();
        w.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);",
        )
        .unwrap();
        let pool = ReadPool::new(&path);
        let n: i64 = pool
            .read(|c| {
                c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                    .map_err(|e| e.to_string())
            })
            .unwrap();
        assert_eq!(n, 1);
        let err = pool
            .read(|c| {
                c.execute("INSERT INTO t VALUES (2)", [])
                    .map_err(|e| e.to_string())
            })
            .unwrap_err();
        assert!(
            err.contains("readonly") || err.contains("read-only") || err.contains("query_only"),
            "{err}"
        );
    }

    impl From<ReadError> for String {
        fn from(e: ReadError) -> String {
            e.to_string()
        }
    }
}
