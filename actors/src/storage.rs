//! Storage failures (SPEC §5.1 "Storage failures"): which errors of the two databases are a
//! full disk, a database busy past its timeout, or some other I/O failure. The HTTP edge
//! answers them 507, 503 with `Retry-After`, and 500 `storage_error`; everything else stays an
//! internal error.
//!
//! Pure: no actix, no connection.

use rusqlite::ErrorCode;

/// A failure of the storage under a database, as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageFault {
    /// The filesystem is full (`SQLITE_FULL`, `ENOSPC`, `EDQUOT`): 507.
    Full,
    /// The database stayed locked past its busy timeout (`SQLITE_BUSY`, `SQLITE_LOCKED`): 503.
    Busy,
    /// Another I/O failure (`SQLITE_IOERR`, `SQLITE_CANTOPEN`, `SQLITE_READONLY`, an OS error):
    /// 500 `storage_error`.
    Io,
}

impl StorageFault {
    /// A short text for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            StorageFault::Full => "disk full",
            StorageFault::Busy => "database busy",
            StorageFault::Io => "storage i/o error",
        }
    }
}

/// The fault a SQLite error stands for, if it is one. SQLite's unix VFS turns a short write
/// with `ENOSPC` into `SQLITE_FULL`; constraint violations, misuse and the like are `None`.
pub fn sqlite_fault(e: &rusqlite::Error) -> Option<StorageFault> {
    match e.sqlite_error_code()? {
        ErrorCode::DiskFull => Some(StorageFault::Full),
        ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => Some(StorageFault::Busy),
        ErrorCode::SystemIoFailure
        | ErrorCode::CannotOpen
        | ErrorCode::ReadOnly
        | ErrorCode::FileLockingProtocolFailed
        | ErrorCode::NoLargeFileSupport
        | ErrorCode::PermissionDenied => Some(StorageFault::Io),
        _ => None,
    }
}

/// The fault an OS error stands for: `ENOSPC`/`EDQUOT` are [`StorageFault::Full`], any other
/// [`StorageFault::Io`].
pub fn io_fault(e: &std::io::Error) -> StorageFault {
    match e.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT) => StorageFault::Full,
        _ => StorageFault::Io,
    }
}

/// A log gate that lets one line through per `period_ms` and counts what it held back (SPEC
/// §5.1: an inbound push that cannot be stored is logged once per minute, not per message).
#[derive(Debug, Default)]
pub struct LogGate {
    last_ms: Option<i64>,
    held: u64,
}

impl LogGate {
    /// `Some(n)` when a line may be logged now (`n` = lines held back since the last one);
    /// `None` when this one is to be held back.
    pub fn pass(&mut self, now_ms: i64, period_ms: i64) -> Option<u64> {
        match self.last_ms {
            Some(last) if now_ms.saturating_sub(last) < period_ms => {
                self.held = self.held.saturating_add(1);
                None
            }
            _ => {
                self.last_ms = Some(now_ms);
                Some(std::mem::take(&mut self.held))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn sqlite(code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn sqlite_codes_map_to_faults() {
        use rusqlite::ffi;
        assert_eq!(
            sqlite_fault(&sqlite(ffi::SQLITE_FULL)),
            Some(StorageFault::Full)
        );
        assert_eq!(
            sqlite_fault(&sqlite(ffi::SQLITE_BUSY)),
            Some(StorageFault::Busy)
        );
        assert_eq!(
            sqlite_fault(&sqlite(ffi::SQLITE_LOCKED)),
            Some(StorageFault::Busy)
        );
        assert_eq!(
            sqlite_fault(&sqlite(ffi::SQLITE_IOERR_WRITE)),
            Some(StorageFault::Io)
        );
        assert_eq!(
            sqlite_fault(&sqlite(ffi::SQLITE_CANTOPEN)),
            Some(StorageFault::Io)
        );
        assert_eq!(sqlite_fault(&sqlite(ffi::SQLITE_CONSTRAINT_UNIQUE)), None);
        assert_eq!(sqlite_fault(&rusqlite::Error::QueryReturnedNoRows), None);
    }

    #[test]
    fn os_errors_map_to_faults() {
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(io_fault(&full), StorageFault::Full);
        let quota = std::io::Error::from_raw_os_error(libc::EDQUOT);
        assert_eq!(io_fault(&quota), StorageFault::Full);
        let eio = std::io::Error::from_raw_os_error(libc::EIO);
        assert_eq!(io_fault(&eio), StorageFault::Io);
    }

    #[test]
    fn log_gate_passes_one_line_a_period_and_counts_the_rest() {
        let mut gate = LogGate::default();
        assert_eq!(gate.pass(1_000, 60_000), Some(0));
        assert_eq!(gate.pass(2_000, 60_000), None);
        assert_eq!(gate.pass(60_999, 60_000), None);
        assert_eq!(gate.pass(61_000, 60_000), Some(2));
        assert_eq!(gate.pass(61_001, 60_000), None);
        assert_eq!(gate.pass(200_000, 60_000), Some(1));
    }
}
