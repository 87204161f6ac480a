//! Inbox area: the durable, deduplicated store of inbound messages and the event journal
//! (SPEC §3 step 4, §7), both in `inbox.db`.
//!
//! - [`store`]: the public surface — opening (0600 file, WAL, migrations, integrity check,
//!   quarantine of a corrupt file, adoption of a TypeScript-daemon database), the
//!   clean-shutdown marker, and re-exports of the message and journal operations.
//! - `schema`: numbered forward-only migrations and the TS import.
//! - `messages`: dedupe-insert (with its `message` event in the same transaction), paged
//!   queries, pruning.
//! - `journal`: the event journal whose ids increase by one, survive restarts and trimming,
//!   and back SSE replay.
//!
//! Everything here is plain SQL over `rusqlite::Connection`; no actix. The owning actor runs
//! it on a blocking thread with the single writer connection.

mod journal;
mod messages;
mod schema;
pub mod store;

#[cfg(test)]
mod tests;
