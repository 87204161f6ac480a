//! Messages the [`OutboxDrainer`](super::drainer::OutboxDrainer) accepts. It owns `outbox.db`
//! (through its one-thread [`OutboxDb`](super::db::OutboxDb)) and is the only writer.

use actix::prelude::*;

use super::store::{RequeueError, Requeued, StoreError};

/// Errors the drainer reports to its callers.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The SQL layer failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A requeue was refused (404/409 material).
    #[error(transparent)]
    Requeue(#[from] RequeueError),
    /// The database thread is gone (shutdown in progress).
    #[error("outbox unavailable: {0}")]
    Mailbox(#[from] MailboxError),
    /// The group commit this accept was part of failed and was rolled back (its error is
    /// logged once); `fault` says whether storage was the cause.
    #[error("outbox accept failed: {detail}")]
    Batch {
        /// The store error's text.
        detail: String,
        /// The storage failure behind it, if any.
        fault: Option<crate::storage::StorageFault>,
    },
    /// The database thread dropped the request.
    #[error("outbox request cancelled")]
    Cancelled,
    /// A read-only connection was not to be had.
    #[error(transparent)]
    Read(#[from] crate::readpool::ReadError),
}

impl OutboxError {
    /// The storage failure behind this error (disk full, busy, I/O), if any.
    pub fn fault(&self) -> Option<crate::storage::StorageFault> {
        match self {
            OutboxError::Store(e) | OutboxError::Requeue(RequeueError::Store(e)) => e.fault(),
            OutboxError::Batch { fault, .. } => *fault,
            _ => None,
        }
    }
}

/// Command: operator requeue (SPEC §5.4).
#[derive(Message, Debug)]
#[rtype(result = "Result<Requeued, OutboxError>")]
pub struct RequeueRow {
    pub id: i64,
    pub new_client_message_id: Option<String>,
    /// Who asked (e.g. `ipc`), stored as `aborted_by`.
    pub by: String,
}

/// Command: claim nothing more (first step of the shutdown, before the links close, so no
/// row is sent into a closing socket). Accepts keep working.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct StopDraining;

/// Command: stop draining, put rows back from inflight, mark a clean shutdown.
#[derive(Message, Debug)]
#[rtype(result = "Result<(), OutboxError>")]
pub struct CloseOutbox;
