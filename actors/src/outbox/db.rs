//! OutboxDb: the one thread that touches `outbox.db`. An actor on its own arbiter thread with one
//! writer connection; the [`OutboxDrainer`](super::drainer::OutboxDrainer) and the
//! [`SessionRegistry`](crate::sessions::SessionRegistry) (its `sessions` table) are its clients and send
//! it [`DbTask`]s — closures over the store functions of [`super::store`] — so SQLite never
//! blocks an async arbiter and every write is serialised on one connection.

use actix::prelude::*;
use rusqlite::Connection;

use super::store::StoreError;

/// Owns the writer connection.
pub struct OutboxDb {
    conn: Connection,
}

impl OutboxDb {
    /// Wraps an opened, migrated connection.
    pub fn new(conn: Connection) -> Self {
        OutboxDb { conn }
    }
}

impl Actor for OutboxDb {
    type Context = Context<Self>;
}

/// The closure a [`DbTask`] carries.
type Work<R> = Box<dyn FnOnce(&mut Connection) -> Result<R, StoreError> + Send>;

/// A unit of SQL work run on the database thread.
pub struct DbTask<R> {
    work: Work<R>,
}

impl<R> DbTask<R> {
    /// Wraps `work`.
    pub fn new(
        work: impl FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Self {
        DbTask {
            work: Box::new(work),
        }
    }
}

impl<R: Send + 'static> Message for DbTask<R> {
    type Result = Result<R, StoreError>;
}

impl<R: Send + 'static> Handler<DbTask<R>> for OutboxDb {
    type Result = Result<R, StoreError>;

    fn handle(&mut self, msg: DbTask<R>, _ctx: &mut Context<Self>) -> Self::Result {
        (msg.work)(&mut self.conn)
    }
}
