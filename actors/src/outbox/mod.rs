//! The outbox: every accepted send, durable until the broker acknowledges it (SPEC §5.3–§5.4).
//!
//! - [`store`]: the SQL of `outbox.db` — plain functions over a `rusqlite::Connection`, no actix.
//! - [`db`]: the OutboxDb actor, the one thread that runs that SQL (the only writer).
//! - [`accepts`]: the accept lane — sends committed in groups on that thread and answered
//!   from it, without an actor between.
//! - [`drainer`]: the OutboxDrainer actor — per-destination drain, ack outcomes; [`msg`]: the
//!   messages it accepts; `outcome`: the pure outcome table.
//! - [`seen`]: the ids the outbox may hold, so that a new id skips the read-only lookup.

pub mod accepts;
pub mod db;
pub mod drainer;
pub mod msg;
mod outcome;
pub mod seen;
pub mod store;
