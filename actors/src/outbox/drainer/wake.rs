//! When the drainer wakes without a trigger: only when a backoff expires.
//!
//! Every claim that can follow an event is started by that event (a link coming up, an
//! accept, an outcome freeing a slot, a peer coming online, a requeue). What no event
//! announces is a backoff running out, so the drainer keeps the due times it knows of — each
//! retry it records ([`OutboxDrainer::note_due`]), and the earliest future `next_attempt_at`
//! in the database ([`store::next_due_after`], read at start, with every claim and at every
//! wake-up) — and arms
//! **one** timer at the earliest. With nothing backing off, no timer runs at all.
//!
//! Wake-ups are at least [`MIN_GAP_MS`] apart: many rows backing off to distinct instants
//! (jittered offline retries) are claimed together instead of one wake-up each. Housekeeping
//! (expiry, payload pruning) runs every [`HOUSEKEEPING`] and also drains every link that is
//! up: a safety net, not the schedule.

use std::collections::BTreeSet;
use std::time::Duration;

use actix::prelude::*;

use super::super::db::DbTask;
use super::super::store;
use super::OutboxDrainer;
use crate::time::now_ms;

/// The least time between two wake-ups of the due timer (the old fixed tick's period).
pub(super) const MIN_GAP_MS: i64 = 250;
/// How often expiry and payload pruning run.
pub(super) const HOUSEKEEPING: Duration = Duration::from_secs(60);
/// Due times remembered at most; beyond this the latest are dropped (the database holds
/// them, and every wake-up reads the next one from it).
const MAX_REMEMBERED: usize = 4_096;
/// A claim that failed is tried again this much later.
pub(super) const RETRY_FAILED_CLAIM_MS: i64 = 1_000;

/// Known future due times and the one timer armed for the earliest. Pure bookkeeping apart
/// from the timer's handle.
#[derive(Default)]
pub(super) struct DueTimes {
    /// Unix ms at which some row's backoff expires.
    times: BTreeSet<i64>,
    /// The armed timer: when it fires and its handle.
    armed: Option<(i64, SpawnHandle)>,
    /// When the timer last fired (for [`MIN_GAP_MS`]).
    last_fire: i64,
}

impl DueTimes {
    /// Remembers `at`; a time that has already come by the time it is learnt (a claim's
    /// answer that took longer than the backoff left) counts as `now`: it still wakes the
    /// drainer, at once, instead of being lost.
    pub(super) fn insert(&mut self, at: i64, now: i64) {
        self.times.insert(at.max(now));
        while self.times.len() > MAX_REMEMBERED {
            self.times.pop_last();
        }
    }

    /// Forgets every time that has come (`<= now`).
    pub(super) fn take_due(&mut self, now: i64) {
        self.times = self.times.split_off(&(now + 1));
    }

    /// When the timer should fire next: the earliest known time, no sooner than
    /// [`MIN_GAP_MS`] after the last wake-up.
    pub(super) fn next_fire(&self) -> Option<i64> {
        let first = *self.times.first()?;
        Some(first.max(self.last_fire.saturating_add(MIN_GAP_MS)))
    }

    /// Whether a timer is armed.
    #[cfg(test)]
    pub(super) fn is_armed(&self) -> bool {
        self.armed.is_some()
    }
}

impl OutboxDrainer {
    /// A row's backoff ends at `at` (unix ms): make sure the drainer wakes then.
    pub(super) fn note_due(&mut self, ctx: &mut Context<Self>, at: i64) {
        self.due.insert(at, now_ms());
        self.arm_due_timer(ctx);
    }

    /// Arms the timer for the earliest due time, replacing a later one.
    fn arm_due_timer(&mut self, ctx: &mut Context<Self>) {
        let Some(at) = self.due.next_fire() else {
            return;
        };
        if let Some((armed_at, handle)) = self.due.armed {
            if armed_at <= at {
                return;
            }
            ctx.cancel_future(handle);
        }
        let delay = u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0);
        let handle = ctx.run_later(Duration::from_millis(delay), |act, ctx| {
            act.due.armed = None;
            act.on_due(ctx);
        });
        self.due.armed = Some((at, handle));
    }

    /// The timer fired (or the drainer started): claim on every link that is up, then look
    /// up the next due time in the database.
    fn on_due(&mut self, ctx: &mut Context<Self>) {
        let now = now_ms();
        self.due.last_fire = now;
        self.due.take_due(now);
        self.drain_all(ctx);
        self.schedule_from_db(ctx);
    }

    /// Reads the earliest future due time from the database and arms the timer for it.
    pub(super) fn schedule_from_db(&mut self, ctx: &mut Context<Self>) {
        let now = now_ms();
        let fut = self
            .db
            .send(DbTask::new(move |conn| store::next_due_after(conn, now)));
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| match res {
            Ok(Ok(Some(at))) => act.note_due(ctx, at),
            Ok(Ok(None)) => act.arm_due_timer(ctx),
            Ok(Err(e)) => {
                act.log_db_failure("reading the next due time", &e);
                act.note_due(ctx, now + RETRY_FAILED_CLAIM_MS);
            }
            Err(e) => log::error!("outbox db unavailable: {e}"),
        }));
    }

    /// A claim failed (the database refused it): claim again a little later.
    pub(super) fn claim_failed(&mut self, ctx: &mut Context<Self>) {
        self.note_due(ctx, now_ms() + RETRY_FAILED_CLAIM_MS);
    }

    /// Claims on every mesh whose link is up.
    pub(super) fn drain_all(&mut self, ctx: &mut Context<Self>) {
        let up: Vec<String> = self
            .meshes
            .iter()
            .filter(|(_, s)| s.up)
            .map(|(k, _)| k.clone())
            .collect();
        for mesh in up {
            self.drain(ctx, &mesh);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_already_come_fire_at_once_and_the_earliest_fires_first() {
        let mut d = DueTimes::default();
        assert_eq!(d.next_fire(), None, "nothing known: no timer");
        d.insert(900, 1_000);
        assert_eq!(d.next_fire(), Some(1_000), "a time already come fires now");
        d.take_due(1_000);
        assert_eq!(d.next_fire(), None);
        d.insert(5_000, 1_000);
        d.insert(3_000, 1_000);
        d.insert(3_000, 1_000);
        assert_eq!(d.next_fire(), Some(3_000));
        d.take_due(3_000);
        assert_eq!(d.next_fire(), Some(5_000));
        d.take_due(10_000);
        assert_eq!(d.next_fire(), None);
        assert!(!d.is_armed());
    }

    #[test]
    fn wake_ups_are_at_least_the_minimum_gap_apart() {
        let mut d = DueTimes {
            last_fire: 10_000,
            ..DueTimes::default()
        };
        d.insert(10_001, 10_000);
        d.insert(10_002, 10_000);
        assert_eq!(d.next_fire(), Some(10_000 + MIN_GAP_MS));
        d.insert(20_000, 10_000);
        d.take_due(10_000 + MIN_GAP_MS);
        assert_eq!(d.next_fire(), Some(20_000), "a later time is not delayed");
    }

    #[test]
    fn the_remembered_times_are_bounded_keeping_the_earliest() {
        let mut d = DueTimes::default();
        for i in 0..(MAX_REMEMBERED as i64 + 100) {
            d.insert(1_000_000 - i, 0);
        }
        assert_eq!(d.times.len(), MAX_REMEMBERED);
        assert_eq!(
            d.next_fire(),
            Some(1_000_000 - (MAX_REMEMBERED as i64 + 99))
        );
    }
}
