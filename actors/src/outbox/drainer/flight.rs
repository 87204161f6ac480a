//! One destination's window of rows in flight (the pipelined drain, issue 10 item 3).
//!
//! Several rows of one destination are sent back to back, in FIFO order, and the broker
//! handles one socket's frames in order. Their outcomes are taken **in the same order**: an
//! outcome that comes back before the one of an older row waits for it. The first row whose
//! outcome is not `done`/`dead` *breaks* the window: every row behind it goes back to
//! `pending` (not counted, whatever its own outcome — even a `queued:true` ack), and nothing
//! more is claimed for the destination until the whole window has come back and been
//! recorded. Its next claim starts again at the failed row, so rows of one destination are
//! recorded `done` in FIFO order and never sent ahead of an older row that is still to be
//! retried.
//!
//! A claim takes more rows of a destination than its wire window (claim-ahead): the rows
//! beyond the window wait here, *held*, and go out one by one as the rows ahead of them come
//! back, without a trip to the database between them. A failure sends the held rows back to
//! `pending` with the rows behind it, unsent.
//!
//! Pure bookkeeping, no actix: [`DestFlight`] is driven by the drainer's `claim`/`apply`.

use std::collections::VecDeque;

use super::super::outcome::Step;
use super::super::store::{InFlight, OutboxRow};

/// A dispatched row come back with its result.
#[derive(Debug)]
pub(super) struct Returned {
    pub row: OutboxRow,
    /// The target the row was sent to (a name resolved at drain time), if it got that far.
    pub target: Option<String>,
    pub step: Step,
}

/// The rows of one destination between their claim and the commit of their outcome.
#[derive(Debug, Default)]
pub(super) struct DestFlight {
    /// Sent rows, oldest first, each with its result once it came back.
    sent: VecDeque<(i64, Option<Returned>)>,
    /// Claimed rows not sent yet, behind every sent row, oldest first.
    held: VecDeque<OutboxRow>,
    /// Outcomes handed to the group apply and not yet committed.
    applying: usize,
    /// A row of this window failed: the rows behind it go back to pending.
    broken: bool,
}

impl DestFlight {
    /// Row `id` is sent, behind every row already in flight.
    #[cfg(test)]
    pub(super) fn sent(&mut self, id: i64) {
        self.sent.push_back((id, None));
    }

    /// A claimed row waits behind the rows already here.
    pub(super) fn hold(&mut self, row: OutboxRow) {
        self.held.push_back(row);
    }

    /// The oldest held row, if it may go now: the window is not broken and fewer than
    /// `wire_window` rows are out. It counts as sent from here on.
    pub(super) fn next_to_send(&mut self, wire_window: usize) -> Option<OutboxRow> {
        if self.broken || self.sent.len() >= wire_window {
            return None;
        }
        let row = self.held.pop_front()?;
        self.sent.push_back((row.id, None));
        Some(row)
    }

    /// Whether a held row waits for a slot of the mesh (its own wire window has room).
    pub(super) fn waits_for_mesh(&self, wire_window: usize) -> bool {
        !self.broken && !self.held.is_empty() && self.sent.len() < wire_window
    }

    /// The held rows, unsent, for the group apply (they go back to pending behind a failed
    /// row, or are released).
    pub(super) fn take_held(&mut self) -> Vec<OutboxRow> {
        let rows: Vec<OutboxRow> = self.held.drain(..).collect();
        self.applying += rows.len();
        rows
    }

    /// Rows on the wire.
    pub(super) fn wire(&self) -> usize {
        self.sent.len()
    }

    /// Whether a row of this window failed (the rest goes back to pending).
    pub(super) fn is_broken(&self) -> bool {
        self.broken
    }

    /// A row came back. Rows of another destination's window (which cannot happen) are
    /// handed back at once.
    pub(super) fn returned(&mut self, r: Returned) -> Option<Returned> {
        match self.sent.iter_mut().find(|(id, _)| *id == r.row.id) {
            Some((_, slot)) => {
                *slot = Some(r);
                None
            }
            None => Some(r),
        }
    }

    /// Row `id` will not be sent after all (its session connection is away): it leaves the
    /// window, and so do the held rows behind it (returned, to be released with it). With
    /// them, whether nothing of the destination is left in flight.
    pub(super) fn forget(&mut self, id: i64) -> (Vec<OutboxRow>, bool) {
        self.sent.retain(|(sent, _)| *sent != id);
        let held = self.held.drain(..).collect();
        (held, self.idle())
    }

    /// The oldest row, if it came back: it leaves the window for the group apply. With it,
    /// whether the window is broken (the row must go back to pending behind a failed one).
    pub(super) fn next_ready(&mut self) -> Option<(Returned, bool)> {
        if !matches!(self.sent.front(), Some((_, Some(_)))) {
            return None;
        }
        let (_, r) = self.sent.pop_front()?;
        self.applying += 1;
        r.map(|r| (r, self.broken))
    }

    /// The row just taken by [`next_ready`](Self::next_ready) failed.
    pub(super) fn break_window(&mut self) {
        self.broken = true;
    }

    /// One outcome of this destination was committed. Returns `true` when nothing of it is
    /// left in flight (the entry can go; a broken window ends there).
    pub(super) fn committed(&mut self) -> bool {
        self.applying = self.applying.saturating_sub(1);
        self.idle()
    }

    fn idle(&self) -> bool {
        self.sent.is_empty() && self.held.is_empty() && self.applying == 0
    }

    /// What a claim may take for this destination once `settling` more outcomes of it are
    /// committed; `None` when nothing is left in flight.
    pub(super) fn claimable(&self, settling: usize) -> Option<InFlight> {
        let rows = self.len().saturating_sub(settling);
        match rows {
            0 => None,
            _ if self.broken => Some(InFlight::Blocked),
            n => Some(InFlight::Rows(n)),
        }
    }

    /// Rows claimed and not yet recorded: held, sent, or being recorded.
    pub(super) fn len(&self) -> usize {
        self.held.len() + self.sent.len() + self.applying
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::msg::DeliveryOutcome;

    fn back(id: i64, step: Step) -> Returned {
        let row = OutboxRow {
            id,
            client_message_id: format!("c{id}"),
            fingerprint: vec![0; 32],
            status: crate::outbox::store::Status::Inflight,
            attempts: 0,
            enqueued_at: id,
            next_attempt_at: id,
            last_error: None,
            delivered_at: None,
            broker_message_id: None,
            aborted_at: None,
            aborted_by: None,
            superseded_by: None,
            mesh: "m".into(),
            to: "*".into(),
            target: Some("*".into()),
            priority: "next".into(),
            meta: None,
            reply_to_id: None,
            payload: None,
            payload_bytes: 0,
            session_pubkey: None,
        };
        Returned {
            row,
            target: None,
            step,
        }
    }

    fn ok() -> Step {
        Step::Delivered(DeliveryOutcome::Acked {
            queued: true,
            message_id: "m".into(),
            error: None,
            duplicate: false,
        })
    }

    #[test]
    fn outcomes_are_taken_in_send_order_and_a_failure_sends_the_rest_back() {
        let mut f = DestFlight::default();
        for id in 1..=4 {
            f.sent(id);
        }
        // Row 2's ack comes back before row 1's outcome: it waits.
        assert!(f.returned(back(2, ok())).is_none());
        assert!(f.next_ready().is_none());
        f.returned(back(1, Step::Delivered(DeliveryOutcome::Timeout)));
        let (r, behind) = f.next_ready().unwrap();
        assert_eq!((r.row.id, behind), (1, false));
        f.break_window();
        // Row 2 was queued by the broker, but it is behind a failed row: back to pending.
        let (r, behind) = f.next_ready().unwrap();
        assert_eq!((r.row.id, behind), (2, true));
        assert!(f.next_ready().is_none(), "row 3 has not come back");
        assert_eq!(f.claimable(0), Some(InFlight::Blocked));
        f.returned(back(4, ok()));
        f.returned(back(3, ok()));
        assert!(f.next_ready().unwrap().1);
        assert!(f.next_ready().unwrap().1);
        assert_eq!(f.claimable(3), Some(InFlight::Blocked));
        assert_eq!(
            f.claimable(4),
            None,
            "once all four are recorded it may claim again"
        );
        assert!(!f.committed());
        assert!(!f.committed());
        assert!(!f.committed());
        assert!(f.committed());
    }

    #[test]
    fn an_unbroken_window_counts_its_rows() {
        let mut f = DestFlight::default();
        f.sent(1);
        f.sent(2);
        assert_eq!(f.claimable(0), Some(InFlight::Rows(2)));
        f.returned(back(1, ok()));
        assert!(!f.next_ready().unwrap().1);
        assert_eq!(f.len(), 2);
        assert_eq!(f.claimable(1), Some(InFlight::Rows(1)));
        assert!(!f.committed());
        assert_eq!(f.claimable(0), Some(InFlight::Rows(1)));
    }
}
