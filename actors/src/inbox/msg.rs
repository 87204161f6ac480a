//! Messages the [`InboxStore`](super::actor::InboxStore) accepts. It owns `inbox.db`: the
//! inbox rows and the durable event journal that gives SSE events their ids.

use actix::prelude::*;

use super::store::{InboxItem, InboxQuery, Replay, StoredEvent};

/// Errors the inbox actor reports to its callers.
#[derive(Debug, thiserror::Error)]
pub enum InboxActorError {
    /// The SQL layer failed.
    #[error(transparent)]
    Store(#[from] super::store::InboxError),
    /// The actor's mailbox is closed (shutdown in progress).
    #[error("inbox store unavailable: {0}")]
    Mailbox(#[from] MailboxError),
}

impl InboxActorError {
    /// The storage failure behind this error (disk full, busy, I/O), if any.
    pub fn fault(&self) -> Option<crate::storage::StorageFault> {
        match self {
            InboxActorError::Store(e) => e.fault(),
            InboxActorError::Mailbox(_) => None,
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

/// Query: one page of the inbox.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(Vec<InboxItem>, Option<i64>), InboxActorError>")]
pub struct ListInbox {
    pub query: InboxQuery,
}

/// Query: journal events after an id (SSE replay).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Replay, InboxActorError>")]
pub struct ReplayEvents {
    pub after_id: i64,
    pub limit: usize,
}

/// Command: delete inbox rows older than the retention.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<usize, InboxActorError>")]
pub struct PruneInbox {
    pub older_than_ms: i64,
}

/// Command: mark a clean shutdown and stop using the database.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), InboxActorError>")]
pub struct CloseInbox;
