//! Late acks (SPEC §5.4, issue 8): an `ack` that arrives after its send was answered `Timeout`.
//!
//! [`LateAcks`] follows each row from its dispatch to its outcome, numbering dispatches
//! (`seq`, carried by [`DeliverSend`](crate::broker::msg::DeliverSend) and echoed by
//! [`LinkEvent::LateAck`](crate::broker::msg::LinkEvent::LateAck)). A late `queued:true` ack
//! whose `seq` is the row's latest dispatch, and which timed out, credits the row: `done` with
//! that broker message id, through the drainer's ordered group apply, so it lands after the
//! timeout's own update. A late ack for an older dispatch means the row was already sent again:
//! counted (`late_acks_after_resend`) and logged once. A late ack that overtakes its own
//! timeout (both ready in one poll of the drainer) is kept and turns that timeout into the ack.

use std::collections::HashMap;

use actix::prelude::*;

use super::super::outcome::{Op, Step, Update};
use super::super::store::OutboxRow;
use super::OutboxDrainer;
use crate::broker::msg::DeliveryOutcome;
use crate::metrics::Metrics;

/// Rows kept after a timeout, waiting for a re-send or a late ack. Beyond this many, new
/// timeouts are not kept (their late acks are then only counted as after-resend).
const MAX_TIMED_OUT: usize = 4_096;

/// Where the latest dispatch of a row stands.
#[derive(Debug)]
enum Latest {
    /// Sent, outcome not yet applied; `early` holds a late ack that overtook the timeout.
    InFlight { seq: u64, early: Option<String> },
    /// Answered `Timeout`; the row (payload dropped) waits to be credited or sent again.
    TimedOut { seq: u64, row: Box<OutboxRow> },
}

/// What to do with a late ack.
#[derive(Debug, PartialEq)]
pub(super) enum LateVerdict {
    /// Credit the row: done with this broker message id.
    Credit(Box<OutboxRow>),
    /// Its timeout is still on the way: the timeout will be applied as this ack.
    Held,
    /// The row was sent again (or already settled) since.
    AfterResend,
}

/// The dispatch bookkeeping of late acks, by client_message_id.
#[derive(Debug, Default)]
pub(super) struct LateAcks {
    next_seq: u64,
    latest: HashMap<String, Latest>,
}

impl LateAcks {
    /// A row is dispatched: returns this dispatch's `seq`. A row that timed out before is
    /// now sent again.
    pub(super) fn sent(&mut self, client_message_id: &str) -> u64 {
        self.next_seq += 1;
        let seq = self.next_seq;
        self.latest.insert(
            client_message_id.to_string(),
            Latest::InFlight { seq, early: None },
        );
        seq
    }

    /// A dispatch of `row` ended with `step`. A `Timeout` keeps the row for a late ack (or is
    /// replaced by one that already came); anything else forgets it.
    pub(super) fn settle(&mut self, row: &OutboxRow, step: Step) -> Step {
        let key = &row.client_message_id;
        let timed_out = matches!(step, Step::Delivered(DeliveryOutcome::Timeout));
        match self.latest.remove(key) {
            Some(Latest::InFlight { seq, early }) if timed_out => match early {
                Some(message_id) => Step::Delivered(DeliveryOutcome::Acked {
                    queued: true,
                    message_id,
                    error: None,
                    duplicate: false,
                }),
                None => {
                    if self.latest.len() < MAX_TIMED_OUT {
                        let mut kept = row.clone();
                        kept.payload = None;
                        self.latest.insert(
                            key.clone(),
                            Latest::TimedOut {
                                seq,
                                row: Box::new(kept),
                            },
                        );
                    }
                    step
                }
            },
            _ => step,
        }
    }

    /// The row's dispatch is settled without its outcome (it goes back behind a failed row):
    /// a late ack for it credits nothing.
    pub(super) fn forget(&mut self, client_message_id: &str) {
        self.latest.remove(client_message_id);
    }

    /// A late `queued:true` ack for dispatch `seq` of `client_message_id`.
    pub(super) fn late_ack(
        &mut self,
        client_message_id: &str,
        seq: u64,
        message_id: &str,
    ) -> LateVerdict {
        match self.latest.get_mut(client_message_id) {
            Some(Latest::TimedOut { seq: s, .. }) if *s == seq => {
                match self.latest.remove(client_message_id) {
                    Some(Latest::TimedOut { row, .. }) => LateVerdict::Credit(row),
                    _ => LateVerdict::AfterResend,
                }
            }
            Some(Latest::InFlight { seq: s, early }) if *s == seq => {
                *early = Some(message_id.to_string());
                LateVerdict::Held
            }
            _ => LateVerdict::AfterResend,
        }
    }
}

impl OutboxDrainer {
    /// Applies a late ack (see the module doc).
    pub(super) fn on_late_ack(
        &mut self,
        ctx: &mut Context<Self>,
        client_message_id: String,
        seq: u64,
        broker_message_id: String,
    ) {
        match self
            .late
            .late_ack(&client_message_id, seq, &broker_message_id)
        {
            LateVerdict::Credit(row) => {
                log::info!(
                    "outbox row {} ({client_message_id}) done by a late ack, not sent again",
                    row.id
                );
                Metrics::inc(&self.metrics.late_acks_credited);
                Metrics::inc(&self.metrics.sends_delivered);
                self.offline_retries.remove(&row.id);
                self.updates.push(Update {
                    row: *row,
                    op: Op::Done(broker_message_id),
                    set_target: None,
                    dead_error: None,
                    // Not in flight: frees no destination.
                    dest: String::new(),
                });
                self.flush_updates(ctx);
            }
            LateVerdict::Held => {
                // Its timeout, still on the way, will be applied as this ack.
                log::info!("outbox {client_message_id}: late ack overtook its timeout; credited");
                Metrics::inc(&self.metrics.late_acks_credited);
            }
            LateVerdict::AfterResend => {
                Metrics::inc(&self.metrics.late_acks_after_resend);
                log::warn!(
                    "late ack for {client_message_id} after the row was sent again (the \
                     recipient deduplicates the second copy)"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cmid: &str) -> OutboxRow {
        use crate::outbox::store::{accept_batch, claim_due, open, Durability, NewSend};
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open(&dir.path().join("outbox.db"), Durability::Normal, false).unwrap();
        let send = NewSend {
            session_pubkey: None,
            client_message_id: Some(cmid.into()),
            fingerprint: [1; 32],
            mesh: "m".into(),
            to: "ab".repeat(32),
            target: Some("ab".repeat(32)),
            priority: "next".into(),
            meta: None,
            reply_to_id: None,
            payload: b"hi".to_vec(),
        };
        accept_batch(&mut conn, &[send], 1).unwrap();
        claim_due(&mut conn, "m", 2, 8, &Default::default())
            .unwrap()
            .remove(0)
    }

    fn timeout() -> Step {
        Step::Delivered(DeliveryOutcome::Timeout)
    }

    #[test]
    fn a_late_ack_before_any_resend_credits_the_row() {
        let r = row("c1");
        let mut l = LateAcks::default();
        let seq = l.sent("c1");
        assert!(matches!(
            l.settle(&r, timeout()),
            Step::Delivered(DeliveryOutcome::Timeout)
        ));
        match l.late_ack("c1", seq, "m1") {
            LateVerdict::Credit(kept) => {
                assert_eq!(kept.id, r.id);
                assert_eq!(kept.payload, None, "the kept row holds no payload");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            l.late_ack("c1", seq, "m1"),
            LateVerdict::AfterResend,
            "credited once"
        );
    }

    #[test]
    fn a_late_ack_after_the_row_was_sent_again_is_not_credited() {
        let r = row("c1");
        let mut l = LateAcks::default();
        let first = l.sent("c1");
        l.settle(&r, timeout());
        let second = l.sent("c1");
        assert_ne!(first, second);
        assert_eq!(l.late_ack("c1", first, "m1"), LateVerdict::AfterResend);
        // And once the re-send settled with an ack, a late ack of either is after-resend.
        let acked = Step::Delivered(DeliveryOutcome::Acked {
            queued: true,
            message_id: "m2".into(),
            error: None,
            duplicate: false,
        });
        l.settle(&r, acked);
        assert_eq!(l.late_ack("c1", second, "m2"), LateVerdict::AfterResend);
        assert!(l.latest.is_empty(), "settled rows are forgotten");
    }

    #[test]
    fn a_late_ack_that_overtakes_its_timeout_becomes_the_outcome() {
        let r = row("c1");
        let mut l = LateAcks::default();
        let seq = l.sent("c1");
        assert_eq!(l.late_ack("c1", seq, "m9"), LateVerdict::Held);
        match l.settle(&r, timeout()) {
            Step::Delivered(DeliveryOutcome::Acked {
                queued: true,
                message_id,
                ..
            }) => assert_eq!(message_id, "m9"),
            other => panic!("{other:?}"),
        }
        assert!(l.latest.is_empty());
    }

    #[test]
    fn other_outcomes_forget_the_row() {
        let r = row("c1");
        let mut l = LateAcks::default();
        let seq = l.sent("c1");
        let lost = Step::Delivered(DeliveryOutcome::NotConnected {
            reason: "broker_disconnected".into(),
        });
        l.settle(&r, lost);
        assert_eq!(l.late_ack("c1", seq, "m1"), LateVerdict::AfterResend);
        assert_eq!(l.late_ack("unknown", 1, "m1"), LateVerdict::AfterResend);
    }
}
