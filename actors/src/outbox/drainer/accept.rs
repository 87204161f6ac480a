//! Accepted rows: the accept lane ([`crate::outbox::accepts`]) commits sends on the database
//! thread and tells the drainer which meshes have new rows ([`AcceptsCommitted`]); the
//! drainer claims them. Also the rate-limited log of failed database steps.

use actix::prelude::*;

use super::super::accepts::AcceptsCommitted;
use super::super::store;
use super::OutboxDrainer;
use crate::time::now_ms;

impl OutboxDrainer {
    /// Logs a failed database step; storage failures (under a full disk every step fails) at
    /// most once a minute, with the count of those held back.
    pub(super) fn log_db_failure(&mut self, what: &str, e: &store::StoreError) {
        if e.fault().is_none() {
            log::error!("outbox {what} failed: {e}");
        } else if let Some(held) = self.storage_log.pass(now_ms(), 60_000) {
            log::error!(
                "outbox {what} failed: {e} ({held} more storage failures not logged in the last minute)"
            );
        }
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
