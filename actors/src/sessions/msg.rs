//! Messages the [`SessionRegistry`](super::SessionRegistry) accepts. It owns the session
//! registry (in memory, persisted through the OutboxDb thread to `outbox.db`'s `sessions`).

use actix::prelude::*;

use super::model::{NewSession, SessionToken, SessionView};
use crate::outbox::store::StoreError;

/// Errors the registry reports.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The `sessions` SQL failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The database thread is gone (shutdown in progress).
    #[error("session registry unavailable: {0}")]
    Mailbox(#[from] MailboxError),
}

/// Command: register (or replace, by `session_id` or token) one session. Answered after the
/// row is committed.
#[derive(Message, Debug)]
#[rtype(result = "Result<Registered, SessionError>")]
pub struct RegisterSession {
    pub session: NewSession,
}

/// The answer to [`RegisterSession`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// Unix ms.
    pub registered_at: i64,
    /// Whether presence material was kept.
    pub presence_accepted: bool,
}

/// Command: end the session of this token (`DELETE /v1/sessions/<token>`). `Ok(None)` when
/// no session has it; else its token prefix.
#[derive(Message, Debug)]
#[rtype(result = "Result<Option<String>, SessionError>")]
pub struct EndSession {
    pub token: SessionToken,
}

/// Query: the session of a `ClaudeMesh-Session` token, if it is registered. In memory only:
/// never waits behind SQL.
#[derive(Message, Debug)]
#[rtype(result = "Option<SessionView>")]
pub struct ResolveSession {
    pub token: SessionToken,
}

/// Query: every session, oldest registration first.
#[derive(Message, Debug)]
#[rtype(result = "Vec<SessionView>")]
pub struct ListSessions;

/// Command: run one reaper sweep now (the interval runs it every 5 s).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct ReapSessions;

/// Command: stop (ordered shutdown, SIGHUP re-attach). The reaper ends, session connections
/// close with 1000; the rows stay for the next start's rehydration.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct CloseSessions;
