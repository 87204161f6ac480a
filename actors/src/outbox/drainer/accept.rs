//! Accepting sends: [`AcceptSend`] queues into the next group commit ([`store::accept_batch`]);
//! each caller is answered once the transaction holding its row commits.

use std::collections::HashSet;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::super::db::DbTask;
use super::super::msg::*;
use super::super::store::{self, Accepted, NewSend};
use super::{AcceptReply, OutboxDrainer};
use crate::metrics::Metrics;
use crate::time::now_ms;

impl OutboxDrainer {
    pub(super) fn flush_accepts(&mut self, ctx: &mut Context<Self>) {
        if self.accepting || self.accept_queue.is_empty() {
            return;
        }
        self.accepting = true;
        let (batch, replies): (Vec<NewSend>, Vec<AcceptReply>) =
            std::mem::take(&mut self.accept_queue).into_iter().unzip();
        let minted: Vec<bool> = batch
            .iter()
            .map(|s| s.client_message_id.is_none())
            .collect();
        let meshes: HashSet<String> = batch.iter().map(|s| s.mesh.clone()).collect();
        let now = now_ms();
        let fut = self.db.send(DbTask::new(move |conn| {
            store::accept_batch(conn, &batch, now)
        }));
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.accepting = false;
            match res {
                Ok(Ok(answers)) => {
                    for ((answer, reply), minted) in answers.into_iter().zip(replies).zip(minted) {
                        if let (
                            true,
                            Accepted::Queued {
                                client_message_id, ..
                            },
                        ) = (minted, &answer)
                        {
                            // Seen before the caller can learn the id and send it again.
                            act.seen.add(client_message_id);
                        }
                        let fresh = matches!(answer, Accepted::Queued { .. });
                        Metrics::inc(if fresh {
                            &act.metrics.sends_accepted
                        } else {
                            &act.metrics.dedupe_hits
                        });
                        let _ = reply.send(Ok(answer));
                    }
                }
                Ok(Err(e)) => {
                    let detail = e.to_string();
                    let fault = e.fault();
                    act.log_db_failure("accept (rolled back)", &e);
                    for reply in replies {
                        let _ = reply.send(Err(OutboxError::Batch {
                            detail: detail.clone(),
                            fault,
                        }));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(OutboxError::Mailbox(e)));
                    }
                }
            }
            for mesh in meshes {
                act.drain(ctx, &mesh);
            }
            act.flush_accepts(ctx);
        }));
    }

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

impl Handler<AcceptSend> for OutboxDrainer {
    type Result = ResponseFuture<Result<Accepted, OutboxError>>;

    fn handle(&mut self, msg: AcceptSend, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        // Seen before the group commit can store it (`SeenIds`).
        if let Some(id) = &msg.send.client_message_id {
            self.seen.add(id);
        }
        self.accept_queue.push((msg.send, tx));
        self.flush_accepts(ctx);
        Box::pin(async move { rx.await.unwrap_or(Err(OutboxError::Cancelled)) })
    }
}
