//! Messages the [`InboxStore`](super::actor::InboxStore) accepts. It owns `inbox.db`: the
//! inbox rows and the durable event journal that gives SSE events their ids.

use actix::prelude::*;

use super::store::{InboxItem, InboxQuery, Replay, Scope, StoredEvent};

/// Errors the inbox actor reports to its callers.
#[derive(Debug, thiserror::Error)]
pub enum InboxActorError {
    /// The SQL layer failed.
    #[error(transparent)]
    Store(#[from] super::store::InboxError),
    /// The actor's mailbox is closed (shutdown in progress).
    #[error("inbox store unavailable: {0}")]
    Mailbox(#[from] MailboxError),
    /// A read-only connection was not to be had.
    #[error(transparent)]
    Read(#[from] crate::readpool::ReadError),
}

impl InboxActorError {
    /// The storage failure behind this error (disk full, busy, I/O), if any.
    pub fn fault(&self) -> Option<crate::storage::StorageFault> {
        match self {
            InboxActorError::Store(e) => e.fault(),
            InboxActorError::Mailbox(_) | InboxActorError::Read(_) => None,
        }
    }
}

/// Command: journal one non-message event (peer_join, broker_status, outbox_dead, …) and
/// publish it to the EventHub.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<StoredEvent, InboxActorError>")]
pub struct RecordEvent {
    /// Event kind as on the SSE wire.
    pub kind: String,
    /// Mesh slug the event belongs to.
    pub mesh: Option<String>,
    /// Event-specific fields (merged after `kind`, `ts`, `mesh`).
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// Query: one page of the inbox; with `mark_seen`, the returned unread rows are then marked
/// seen (the items show the state before the mark).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<InboxPage, InboxActorError>")]
pub struct ListInbox {
    pub query: InboxQuery,
    pub mark_seen: bool,
}

/// The answer to [`ListInbox`].
#[derive(Debug, Clone)]
pub struct InboxPage {
    /// Newest first.
    pub items: Vec<InboxItem>,
    /// Cursor of the next page.
    pub next_before: Option<i64>,
    /// Rows this request turned from unread to seen (0 without `mark_seen`).
    pub marked_seen: usize,
}

/// Command: mark rows seen (`POST /v1/inbox/seen`); answers how many changed.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<usize, InboxActorError>")]
pub struct MarkSeen {
    pub ids: Vec<i64>,
    /// A session's view: rows outside it are left alone.
    pub scope: Option<Scope>,
}

/// Command: delete rows (`DELETE /v1/inbox?mesh=&before=`); answers how many.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<usize, InboxActorError>")]
pub struct DeleteInbox {
    pub mesh: Option<String>,
    /// Only rows received before this unix ms.
    pub before_ms: Option<i64>,
    pub scope: Option<Scope>,
}

/// Command: delete one row (`DELETE /v1/inbox/<id>`); false when no such row (in scope).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<bool, InboxActorError>")]
pub struct DeleteInboxRow {
    pub id: i64,
    pub scope: Option<Scope>,
}

/// Query: journal events after an id (SSE replay).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Replay, InboxActorError>")]
pub struct ReplayEvents {
    pub after_id: i64,
    pub limit: usize,
}

/// Command: delete at most `limit` inbox rows older than the retention (the caller repeats it
/// while it deletes `limit`: pushes are stored between two chunks).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<usize, InboxActorError>")]
pub struct PruneInbox {
    pub older_than_ms: i64,
    pub limit: usize,
}

/// Command: mark a clean shutdown and stop using the database.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), InboxActorError>")]
pub struct CloseInbox;
