//! The SQL of `outbox.db` (SPEC §3 steps 4–5, §5.3, §5.4): plain functions over a
//! `rusqlite::Connection`, no actix.
//!
//! Owns: the file's creation (mode 0600) and PRAGMAs ([`open`]), the numbered forward-only
//! migrations kept in the `schema_version` table, the adoption of a TypeScript daemon's
//! `outbox.db`, the accept lookup table ([`accept_batch`]), the drain state machine
//! (`pending → inflight → done | pending | dead`, [`claim_due`], [`mark_done`],
//! [`mark_retry`], [`mark_dead`]), operator requeue ([`requeue`]) and housekeeping
//! ([`expire`], [`prune_payloads`], the clean-shutdown marker).
//!
//! Invariants:
//! - A `client_message_id` once written is never freed: rows are never deleted; done rows
//!   lose only their payload ([`prune_payloads`]), keeping id and fingerprint.
//! - Every accept runs inside one `BEGIN IMMEDIATE` transaction, so concurrent accepts of one
//!   id (from any connection) produce exactly one row.
//! - Per destination ([`destination_key`]) rows leave in enqueue order: only the oldest
//!   pending row of a destination can be claimed, and not while the destination has a row
//!   `inflight`.
//! - `dead` and `aborted` rows are never claimed again.

mod accept;
mod admin;
mod adopt;
mod claim;
mod drain;
mod rows;
mod schema;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::str::FromStr;

pub use accept::{accept_batch, lookup, mint_client_message_id};
pub use admin::{counts, get, list, next_due_after, prune_payloads, requeue};
pub use claim::{claim_due, claim_window, InFlight};
pub use drain::{
    expire, mark_dead, mark_done, mark_retry, release_claims, reset_inflight, set_target,
    settle_target, wake, Settled,
};
pub use schema::{integrity_check, open, was_clean_shutdown, write_clean_shutdown, SCHEMA_VERSION};

/// `last_error` given to pending/inflight rows adopted from a TypeScript daemon's outbox.
pub const IMPORTED_ERROR: &str = "imported: destination unknown";

/// `last_error` of a row that expired without any earlier error.
pub const EXPIRED_ERROR: &str = "expired";

/// Lifecycle state of an outbox row (the `status` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting to be sent (possibly backing off until `next_attempt_at`).
    Pending,
    /// Claimed by the drainer and on its way to the broker.
    Inflight,
    /// Acknowledged by the broker (`queued:true`); `broker_message_id` is set.
    Done,
    /// Given up (max attempts, max age, or a permanent broker refusal); never sent again.
    Dead,
    /// Superseded by an operator requeue; never sent again.
    Aborted,
}

impl Status {
    /// The value stored in the `status` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Inflight => "inflight",
            Status::Done => "done",
            Status::Dead => "dead",
            Status::Aborted => "aborted",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `status` string that names no [`Status`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown outbox status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for Status {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(Status::Pending),
            "inflight" => Ok(Status::Inflight),
            "done" => Ok(Status::Done),
            "dead" => Ok(Status::Dead),
            "aborted" => Ok(Status::Aborted),
            other => Err(UnknownStatus(other.to_owned())),
        }
    }
}

/// `synchronous` setting of the database (`durability` in `daemon.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// WAL + `synchronous = NORMAL`: survives a daemon crash; an OS crash may lose the last
    /// few milliseconds of commits.
    #[default]
    Normal,
    /// WAL + `synchronous = FULL`: every commit is fsynced.
    Full,
}

/// Errors of the outbox store; each names the file or the row and the operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be created or its mode set.
    #[error("{path}: cannot {operation}: {source}")]
    Io {
        path: PathBuf,
        operation: &'static str,
        source: std::io::Error,
    },
    /// The file is not a database or fails `PRAGMA integrity_check`.
    #[error("{path} is corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    /// The database was written by a newer binary.
    #[error("{path} has schema version {found}; this binary supports up to {supported}")]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// A statement failed while opening, migrating or adopting the file.
    #[error("{path}: {operation}: {source}")]
    Open {
        path: PathBuf,
        operation: &'static str,
        source: rusqlite::Error,
    },
    /// A statement failed during normal operation.
    #[error("outbox {operation}: {source}")]
    Sql {
        operation: &'static str,
        source: rusqlite::Error,
    },
    /// The row does not exist.
    #[error("outbox {operation}: no row with id {id}")]
    RowNotFound { operation: &'static str, id: i64 },
    /// The row is not in a state the operation applies to.
    #[error("outbox {operation}: row {id} is {status}")]
    WrongStatus {
        operation: &'static str,
        id: i64,
        status: Status,
    },
}

impl StoreError {
    /// The storage failure this error is (disk full, busy, I/O), if it is one.
    pub fn fault(&self) -> Option<crate::storage::StorageFault> {
        match self {
            StoreError::Io { source, .. } => Some(crate::storage::io_fault(source)),
            StoreError::Open { source, .. } | StoreError::Sql { source, .. } => {
                crate::storage::sqlite_fault(source)
            }
            _ => None,
        }
    }

    /// Logs this error as the failure of `what`: every other error at once, storage failures
    /// (under a full disk every step fails) at most once a minute per `gate`, with the count
    /// of those held back.
    pub fn log_failed(&self, what: &str, gate: &mut crate::storage::LogGate) {
        if self.fault().is_none() {
            log::error!("outbox {what} failed: {self}");
        } else if let Some(held) = gate.pass(crate::time::now_ms(), 60_000) {
            log::error!(
                "outbox {what} failed: {self} ({held} more storage failures not logged in the last minute)"
            );
        }
    }

    /// Wraps a rusqlite error with the operation that failed.
    pub(crate) fn sql(operation: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
        move |source| StoreError::Sql { operation, source }
    }
}

/// One send to accept (SPEC §5.1 after validation and §5.2 fingerprinting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSend {
    /// Caller's id (body field or `Idempotency-Key`); `None` → a ULID is minted.
    pub client_message_id: Option<String>,
    /// Request fingerprint (SPEC §5.2), stored with the row.
    pub fingerprint: [u8; 32],
    /// Mesh slug.
    pub mesh: String,
    /// `to` as the user gave it (trimmed).
    pub to: String,
    /// Resolved targetSpec (`*`, `@all`, `@g`, `#t`, 64-hex pubkey); `None` = a name or
    /// prefix to resolve at drain time.
    pub target: Option<String>,
    /// `now`, `next` or `low`.
    pub priority: String,
    /// `meta` as JSON text.
    pub meta: Option<String>,
    /// Id of the message this one replies to.
    pub reply_to_id: Option<String>,
    /// UTF-8 message bytes (plaintext; encrypted at drain time).
    pub payload: Vec<u8>,
    /// The sending session's pubkey, for a send made by a session with presence (SPEC §12
    /// "Sending as a session"); `None` for the member.
    pub session_pubkey: Option<String>,
}

/// The answer to one accepted send (SPEC §5.3 table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// New row inserted, or the same request already pending: 202 `queued`.
    Queued { id: i64, client_message_id: String },
    /// The same request is in flight: 202 `inflight`.
    Inflight { id: i64, client_message_id: String },
    /// The same request was delivered: 200 `duplicate:true`.
    Duplicate {
        id: i64,
        client_message_id: String,
        broker_message_id: Option<String>,
    },
    /// The id is taken by another request or a dead/aborted row: 409.
    Conflict {
        client_message_id: String,
        conflict: Conflict,
        /// The existing row's broker message id (set for done rows).
        broker_message_id: Option<String>,
        /// The existing row's last error (set for [`Conflict::DeadMatch`]).
        reason: Option<String>,
    },
}

/// Which 409 of the SPEC §5.3 table applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Conflict {
    PendingMismatch,
    InflightMismatch,
    DoneMismatch,
    DeadMatch,
    DeadMismatch,
    AbortedMatch,
    AbortedMismatch,
}

impl Conflict {
    /// The `conflict` code of the 409 body.
    pub fn code(self) -> &'static str {
        match self {
            Conflict::PendingMismatch => "outbox_pending_fingerprint_mismatch",
            Conflict::InflightMismatch => "outbox_inflight_fingerprint_mismatch",
            Conflict::DoneMismatch => "outbox_done_fingerprint_mismatch",
            Conflict::DeadMatch => "outbox_dead_fingerprint_match",
            Conflict::DeadMismatch => "outbox_dead_fingerprint_mismatch",
            Conflict::AbortedMatch => "outbox_aborted_fingerprint_match",
            Conflict::AbortedMismatch => "outbox_aborted_fingerprint_mismatch",
        }
    }
}

/// One row of the `outbox` table. Times are unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// Row id (local; never sent).
    pub id: i64,
    /// The idempotency key, also the frame `id` on the wire.
    pub client_message_id: String,
    /// The 32-byte request fingerprint.
    pub fingerprint: Vec<u8>,
    pub status: Status,
    /// Counted attempts (rate limits and offline peers do not count).
    pub attempts: i64,
    pub enqueued_at: i64,
    /// Not claimed before this time (backoff).
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub delivered_at: Option<i64>,
    pub broker_message_id: Option<String>,
    pub aborted_at: Option<i64>,
    pub aborted_by: Option<String>,
    /// Row id of the requeued copy of an aborted row.
    pub superseded_by: Option<i64>,
    /// Mesh slug (`""` for rows adopted from a TypeScript daemon that did not record it).
    pub mesh: String,
    /// `to` as the user gave it.
    pub to: String,
    /// Resolved targetSpec, `None` while a name is unresolved.
    pub target: Option<String>,
    pub priority: String,
    pub meta: Option<String>,
    pub reply_to_id: Option<String>,
    /// Message bytes; `None` once pruned (done rows after a week).
    pub payload: Option<Vec<u8>>,
    /// Length of the payload, kept after pruning.
    pub payload_bytes: i64,
    /// The session that sent it (its pubkey), if a session did (SPEC §12).
    pub session_pubkey: Option<String>,
}

/// The per-destination FIFO key of a row: its resolved target, else the `to` it was sent to.
pub fn destination_key(row: &OutboxRow) -> &str {
    row.target.as_deref().unwrap_or(&row.to)
}

/// Where [`mark_retry`] left the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOutcome {
    /// Back to pending, due at the given `next_attempt_at`.
    Pending,
    /// `max_attempts` counted attempts reached: dead.
    Dead,
}

/// Result of an operator requeue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requeued {
    pub aborted_row_id: i64,
    pub new_row_id: i64,
    pub new_client_message_id: String,
}

/// Why a requeue was refused (SPEC §5.4).
#[derive(Debug, thiserror::Error)]
pub enum RequeueError {
    /// No row with this id (404).
    #[error("outbox row {id} not found")]
    NotFound { id: i64 },
    /// The row is done or aborted, or its payload was pruned (409).
    #[error("outbox row {id} is {status} and cannot be requeued")]
    NotRequeueable { id: i64, status: Status },
    /// The requested new id is already used by a row (409).
    #[error("client_message_id {client_message_id:?} is already used")]
    IdInUse { client_message_id: String },
    /// The row was adopted from a TypeScript daemon that did not record its mesh or
    /// destination; sending it anywhere would be a guess (409).
    #[error("outbox row {id} has no recorded destination and cannot be requeued")]
    DestinationUnknown { id: i64 },
    /// The SQL layer failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Row counts by status, for health and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Counts {
    pub pending: i64,
    pub inflight: i64,
    pub done: i64,
    pub dead: i64,
    pub aborted: i64,
    /// `enqueued_at` of the oldest pending row.
    pub oldest_pending_enqueued_at: Option<i64>,
}

/// Full-jitter backoff: uniform in `[0, min(cap, base · 2^attempt))`; 0 when that bound is 0.
pub fn full_jitter_ms(attempt: u32, base_ms: u64, cap_ms: u64, rng: &mut impl rand::Rng) -> u64 {
    let exp = 1u64.checked_shl(attempt).unwrap_or(u64::MAX);
    let bound = base_ms.saturating_mul(exp).min(cap_ms);
    if bound == 0 {
        0
    } else {
        rng.gen_range(0..bound)
    }
}
