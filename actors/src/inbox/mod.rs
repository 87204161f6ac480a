//! Inbox area: the durable, deduplicated store of inbound messages and the event journal
//! (SPEC §3 step 4, §7), both in `inbox.db`.
//!
//! - [`store`]: the public surface — opening (0600 file, WAL, migrations, integrity check,
//!   quarantine of a corrupt file, adoption of a TypeScript-daemon database), the
//!   clean-shutdown marker, and re-exports of the message and journal operations.
//! - `schema`: numbered forward-only migrations and the TS import.
//! - `messages`: dedupe-insert (with its `message` event in the same transaction), paged
//!   queries, pruning.
//! - `read_state`: `seen_at`, bulk and single deletes, the session [`store::Scope`].
//! - `journal`: the event journal whose ids increase by one, survive restarts and trimming,
//!   and back SSE replay.
//!
//! - [`actor`]: the InboxStore actor that owns the database on its own arbiter thread;
//!   [`msg`]: the messages it accepts.
//!
//! The SQL modules are plain functions over `rusqlite::Connection`; no actix.

pub mod actor;
mod journal;
mod messages;
pub mod msg;
mod read_state;
mod schema;
pub mod store;

#[cfg(test)]
mod tests;
