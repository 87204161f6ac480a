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
        let meshes: HashSet<String> = batch.iter().map(|s| s.mesh.clone()).collect();
        let now = now_ms();
        let fut = self.db.send(DbTask::new(move |conn| {
            store::accept_batch(conn, &batch, now)
        }));
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.accepting = false;
            match res {
                Ok(Ok(answers)) => {
                    for (answer, reply) in answers.into_iter().zip(replies) {
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
                    log::error!("outbox accept failed: {e}");
                    let msg = e.to_string();
                    for reply in replies {
                        let _ = reply.send(Err(OutboxError::Batch(msg.clone())));
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
}

impl Handler<AcceptSend> for OutboxDrainer {
    type Result = ResponseFuture<Result<Accepted, OutboxError>>;

    fn handle(&mut self, msg: AcceptSend, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.accept_queue.push((msg.send, tx));
        self.flush_accepts(ctx);
        Box::pin(async move { rx.await.unwrap_or(Err(OutboxError::Cancelled)) })
    }
}
