//! The outbox: every accepted send, durable until the broker acknowledges it (SPEC §5.3–§5.4).
//!
//! [`store`] holds the SQL of `outbox.db` — plain functions over a `rusqlite::Connection`, no
//! actix — used by the owning actor (the only writer of the file).

pub mod store;
