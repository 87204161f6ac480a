//! Accepted rows: the accept lane ([`crate::outbox::accepts`]) commits sends on the database
//! thread and tells the drainer which meshes have new rows ([`AcceptsCommitted`]); the
//! drainer claims them. Also the rate-limited log of failed database steps.

use actix::prelude::*;

use super::super::accepts::AcceptsCommitted;
use super::super::store;
use super::OutboxDrainer;

impl OutboxDrainer {
    /// Logs a failed database step ([`store::StoreError::log_failed`], this drainer's gate).
    pub(super) fn log_db_failure(&mut self, what: &str, e: &store::StoreError) {
        e.log_failed(what, &mut self.storage_log);
    }
}
impl Handler<AcceptsCommitted> for OutboxDrainer {
    type Result = ();

    fn handle(&mut self, msg: AcceptsCommitted, ctx: &mut Context<Self>) {
        for mesh in msg.meshes {
            self.drain(ctx, &mesh);
        }
    }
}
