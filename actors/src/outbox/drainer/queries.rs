//! The drainer's operator handler: requeue, on the database thread like every write to
//! `outbox.db`. Reads (listing, one row, counts) do not come here: the IPC layer serves them
//! from the read-only connections of [`crate::readpool`].

use std::collections::HashSet;

use actix::prelude::*;

use super::super::db::{DbTask, OutboxDb};
use super::super::msg::*;
use super::super::store;
use super::OutboxDrainer;
use crate::time::now_ms;

/// Runs `work` on the database thread and flattens the two error layers.
pub(super) fn query<R: Send + 'static>(
    db: &Addr<OutboxDb>,
    work: impl FnOnce(&mut rusqlite::Connection) -> Result<R, store::StoreError> + Send + 'static,
) -> ResponseFuture<Result<R, OutboxError>> {
    let fut = db.send(DbTask::new(work));
    Box::pin(async move { Ok(fut.await??) })
}

impl Handler<RequeueRow> for OutboxDrainer {
    type Result = ResponseActFuture<Self, Result<store::Requeued, OutboxError>>;

    /// The new row is due at once: a successful requeue claims on every link that is up.
    fn handle(&mut self, msg: RequeueRow, _ctx: &mut Context<Self>) -> Self::Result {
        // An inflight row may be requeued only when it is not really in flight (SPEC §5.4).
        // A mesh with a claim running may hold rows already inflight in the database whose
        // destinations are not yet marked busy: treat all its inflight rows as in flight.
        let in_flight: HashSet<String> = self
            .meshes
            .values()
            .flat_map(|m| m.busy.keys().cloned())
            .collect();
        let claiming: HashSet<String> = self
            .meshes
            .iter()
            .filter(|(_, m)| m.claiming)
            .map(|(slug, _)| slug.clone())
            .collect();
        // The new row's id is seen before it can exist (`SeenIds`); a minted one once known.
        if let Some(id) = &msg.new_client_message_id {
            self.seen.add(id);
        }
        let fut = self.db.send(DbTask::new(move |conn| {
            if let Some(row) = store::get(conn, msg.id)? {
                if row.status == store::Status::Inflight
                    && (in_flight.contains(store::destination_key(&row))
                        || claiming.contains(&row.mesh))
                {
                    return Ok(Err(store::RequeueError::NotRequeueable {
                        id: row.id,
                        status: row.status,
                    }));
                }
            }
            Ok(store::requeue(
                conn,
                msg.id,
                msg.new_client_message_id,
                &msg.by,
                now_ms(),
            ))
        }));
        let work = async move { fut.await??.map_err(OutboxError::Requeue) };
        Box::pin(work.into_actor(self).map(|res, act, ctx| {
            if let Ok(done) = &res {
                act.seen.add(&done.new_client_message_id);
                act.drain_all(ctx);
            }
            res
        }))
    }
}
