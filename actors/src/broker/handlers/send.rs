//! Sends and their acks: [`DeliverSend`] (paced by the mirrored rate-limit bucket), the ack
//! expiry that answers `Timeout` (its timer in `timers.rs`), the correlation of `ack` frames, and **late acks** — a
//! `queued:true` ack for a send already answered `Timeout` is reported to the drainer as
//! [`LinkEvent::LateAck`] so the row is credited instead of sent twice. A `rate_limit`
//! refusal cancels the sends the pacer still holds back.

use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::super::msg::*;
use super::super::{frames, BrokerConnection, PendingAck};
use crate::metrics::Metrics;
use crate::time::now_ms;

/// Sends answered `Timeout` that a late ack can still credit (and re-sends whose second ack
/// is awaited), per link. Beyond this many the oldest is forgotten (its late ack then only
/// logs).
const MAX_OVERDUE: usize = 4_096;

impl BrokerConnection {
    /// Answers `Timeout` to every send whose ack is overdue, remembering each so that a late
    /// ack for it can still be credited.
    pub(in crate::broker) fn expire_acks(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let overdue: Vec<String> = self
            .pending_acks
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(k, _)| k.clone())
            .collect();
        if overdue.is_empty() {
            return;
        }
        for id in overdue {
            if let Some(p) = self.pending_acks.remove(&id) {
                let _ = p.tx.send(DeliveryOutcome::Timeout);
                if self.overdue.len() >= MAX_OVERDUE {
                    if let Some(oldest) = self
                        .overdue
                        .iter()
                        .min_by_key(|(_, (_, at))| *at)
                        .map(|(k, _)| k.clone())
                    {
                        self.overdue.remove(&oldest);
                    }
                }
                self.overdue.insert(id, (p.seq, now));
            }
        }
        self.acks_settled(ctx);
    }

    /// An `ack` frame for frame id `id`. A send that timed out on this socket and has not been
    /// sent again is matched first: its ack is late, and goes to the drainer to credit the row.
    /// Once the row has been sent again, the first ack settles the re-send (the row was queued
    /// either way) and a second one is the trace of a double send: counted and logged.
    pub(in crate::broker) fn on_ack(
        &mut self,
        ctx: &mut Context<Self>,
        id: String,
        outcome: DeliveryOutcome,
    ) {
        if let Some((seq, timed_out_at)) = self.overdue.remove(&id) {
            match outcome {
                DeliveryOutcome::Acked {
                    queued: true,
                    message_id,
                    ..
                } => {
                    log::info!(
                        "mesh {}: late ack for {id} ({} ms after its timeout)",
                        self.slug(),
                        timed_out_at.elapsed().as_millis()
                    );
                    self.peers_out.drainer.do_send(LinkEvent::LateAck {
                        mesh: self.slug().to_string(),
                        client_message_id: id,
                        seq,
                        broker_message_id: message_id,
                    });
                }
                other => log::info!(
                    "mesh {}: late ack for {id} ignored (not queued: {other:?})",
                    self.slug()
                ),
            }
            return;
        }
        if let Some(p) = self.pending_acks.remove(&id) {
            if p.resend_of_overdue && self.sent_twice.len() < MAX_OVERDUE {
                self.sent_twice.insert(id);
            }
            let refused = matches!(
                &outcome,
                DeliveryOutcome::Acked { error: Some(e), .. } if e.starts_with("rate_limit")
            );
            let _ = p.tx.send(outcome);
            if refused {
                self.rate_limited(ctx);
            }
            self.acks_settled(ctx);
            return;
        }
        if self.sent_twice.remove(&id) {
            Metrics::inc(&self.metrics.late_acks_after_resend);
            log::warn!(
                "mesh {}: a second ack for {id}: its first send was acked only after it had \
                 been sent again (the recipient deduplicates it)",
                self.slug()
            );
            return;
        }
        log::debug!("mesh {}: ack for unknown frame id {id}", self.slug());
    }
}

impl Handler<DeliverSend> for BrokerConnection {
    type Result = ResponseFuture<DeliveryOutcome>;

    fn handle(&mut self, msg: DeliverSend, ctx: &mut Context<Self>) -> Self::Result {
        if self.closing {
            let reason = "daemon_shutdown".to_string();
            return Box::pin(async move { DeliveryOutcome::NotConnected { reason } });
        }
        if !self.hello_acked || self.reattach_pending {
            // While the redelivery nudge waits for the window to empty, nothing new is sent
            // into the socket it is about to close (not counted: `broker_not_open`).
            let state = if self.hello_acked {
                "reattaching"
            } else {
                self.state.as_str()
            };
            let reason = format!("broker_not_open ({state})");
            return Box::pin(async move { DeliveryOutcome::NotConnected { reason } });
        }
        let (tx, rx) = oneshot::channel();
        let id = msg.send.client_message_id.clone();
        let frame = frames::send(&msg.send);
        let delay = self.pacer.reserve(now_ms()).max(0) as u64;
        let deadline =
            Instant::now() + Duration::from_millis(self.cfg.tuning.ack_timeout_ms + delay);
        // A send that timed out here unanswered is being sent again: from now on an ack for
        // this id settles the new send (see `on_ack`).
        let resend_of_overdue = self.overdue.remove(&id).is_some();
        self.pending_acks.insert(
            id.clone(),
            PendingAck {
                tx,
                deadline,
                seq: msg.seq,
                resend_of_overdue,
            },
        );
        self.arm_ack_timer(ctx, deadline);
        let write = move |act: &mut Self, ctx: &mut Context<Self>| {
            act.unsent.remove(&id);
            if act.pending_acks.contains_key(&id) && !act.send_text(frame) {
                if let Some(p) = act.pending_acks.remove(&id) {
                    let _ = p.tx.send(DeliveryOutcome::NotConnected {
                        reason: "ws_write_failed".into(),
                    });
                    act.acks_settled(ctx);
                }
            }
        };
        if delay == 0 {
            write(self, ctx);
        } else {
            let timer = ctx.run_later(Duration::from_millis(delay), write);
            self.unsent
                .insert(msg.send.client_message_id.clone(), timer);
        }
        Box::pin(async move {
            rx.await.unwrap_or(DeliveryOutcome::NotConnected {
                reason: "broker_disconnected".into(),
            })
        })
    }
}

impl BrokerConnection {
    /// The broker refused a send of this connection with `rate_limit`: its bucket is empty.
    /// Sends the pacer still holds are cancelled and answered [`RATE_LIMITED_UNSENT`], their
    /// tokens given back, and the schedule restarts one token from now: written at their old
    /// times they would be refused too, or — pipelined behind the refused row — arrive ahead
    /// of it and be sent again after it (a duplicate). Runs on the refusal's own ack, before
    /// another held-back send can be written. A held-back re-send of a send that timed out is
    /// left to go: cancelling it would lose the credit a late ack of the first send gives.
    fn rate_limited(&mut self, ctx: &mut Context<Self>) {
        let held: Vec<String> = self
            .unsent
            .keys()
            .filter(|id| {
                self.pending_acks
                    .get(*id)
                    .is_some_and(|p| !p.resend_of_overdue)
            })
            .cloned()
            .collect();
        for id in &held {
            if let Some(timer) = self.unsent.remove(id) {
                ctx.cancel_future(timer);
            }
            if let Some(p) = self.pending_acks.remove(id) {
                let _ = p.tx.send(DeliveryOutcome::NotConnected {
                    reason: RATE_LIMITED_UNSENT.to_string(),
                });
            }
        }
        self.pacer.release(held.len());
        self.pacer.drain(now_ms());
        if !held.is_empty() {
            log::info!(
                "mesh {}: rate limited by the broker; {} held-back sends cancelled, retried in order",
                self.slug(),
                held.len()
            );
        }
    }
}
