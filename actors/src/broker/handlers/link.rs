//! The link itself: [`GetLinkStatus`] (health), [`CloseLink`] (ordered shutdown), and the
//! redelivery nudge's silent reattach (SPEC §6; the decision is [`super::super::nudge`]).

use std::time::Duration;

use actix::prelude::*;
use awc::ws::Message as WsMessage;
use tokio::sync::oneshot;

use super::super::msg::*;
use super::super::{BrokerConnection, CLOSE_GRACE};
use crate::metrics::Metrics;

impl BrokerConnection {
    /// Arms this link's one nudge timer (called on `hello_ack` when a nudge is owed).
    pub(in crate::broker) fn arm_nudge(&mut self, ctx: &mut Context<Self>) {
        let after = Duration::from_millis(self.cfg.tuning.redelivery_nudge_ms);
        // The timer belongs to this link: a restart of the actor cancels it with the link.
        ctx.run_later(after, |act, ctx| {
            if act.closing || !act.hello_acked {
                return;
            }
            if !act.nudge.fire() {
                log::debug!(
                    "mesh {}: no redelivery nudge (broker does not lease presences)",
                    act.slug()
                );
                return;
            }
            act.reattach_pending = true;
            // The drainer claims nothing for this link until the reattached one is up.
            act.report_link(false);
            act.acks_settled(ctx);
        });
    }

    /// Called whenever a send's ack is settled: a nudge that waits for the window to empty
    /// (so no ack is lost with the socket) runs once it has.
    pub(in crate::broker) fn acks_settled(&mut self, ctx: &mut Context<Self>) {
        if self.reattach_pending && !self.reattaching && self.pending_acks.is_empty() {
            self.reattach(ctx);
        }
    }

    /// Closes the socket with 1000 and lets the supervisor reconnect at once (no backoff) with
    /// the same session id: a head broker swaps the new socket into the leased presence
    /// silently and drains what the old socket's claims held back.
    fn reattach(&mut self, ctx: &mut Context<Self>) {
        self.reattaching = true;
        Metrics::inc(&self.metrics.redelivery_nudges);
        log::info!(
            "mesh {}: redelivery nudge: reattaching with session id {}",
            self.slug(),
            self.session_id
        );
        match self.sink.as_mut() {
            Some(sink) => {
                let _ = sink.write(WsMessage::Close(Some(awc::ws::CloseReason {
                    code: awc::ws::CloseCode::Normal,
                    description: None,
                })));
                // The broker's answering close ends the stream; if it does not come, stop.
                ctx.run_later(CLOSE_GRACE, |_, ctx| ctx.stop());
            }
            None => ctx.stop(),
        }
    }
}

impl Handler<GetLinkStatus> for BrokerConnection {
    type Result = MessageResult<GetLinkStatus>;

    fn handle(&mut self, _msg: GetLinkStatus, _ctx: &mut Context<Self>) -> Self::Result {
        let open = self.hello_acked;
        MessageResult(LinkStatus {
            slug: self.slug().to_string(),
            broker_status: if open { LinkState::Open } else { self.state },
            connected_since: self.connected_since,
            last_error: self.last_error.clone(),
            lag_ms: open.then(|| self.last_rx.elapsed().as_millis() as i64),
            reconnects: self.reconnects,
            session_id: self.session_id.clone(),
        })
    }
}

impl Handler<CloseLink> for BrokerConnection {
    type Result = ResponseFuture<()>;

    /// Sends close 1000 and answers once the socket has closed (the broker answers the close
    /// frame, which ends the stream) or after [`CLOSE_GRACE`]: the shutdown puts inflight rows
    /// back to pending only after this, so no ack can arrive for a row already reset.
    fn handle(&mut self, _msg: CloseLink, ctx: &mut Context<Self>) -> Self::Result {
        self.closing = true;
        let (tx, rx) = oneshot::channel();
        self.close_waiters.push(tx);
        if let Some(sink) = self.sink.as_mut() {
            // Written, not `close()`d: closing the sink would drop the buffered close frame.
            // The broker's answering close (or the grace) ends the actor.
            let _ = sink.write(WsMessage::Close(Some(awc::ws::CloseReason {
                code: awc::ws::CloseCode::Normal,
                description: None,
            })));
            ctx.run_later(CLOSE_GRACE, |_, ctx| ctx.stop());
        } else {
            ctx.stop();
        }
        self.set_state(LinkState::Closed);
        Box::pin(async move {
            let _ = tokio::time::timeout(CLOSE_GRACE * 2, rx).await;
        })
    }
}
