//! The connection's timers, armed only while there is something to time (issue 15): an idle
//! link wakes for its liveness ping and little else.
//!
//! - **Ack expiry**: one timer at the earliest deadline of the sends awaiting their ack
//!   ([`BrokerConnection::arm_ack_timer`]), re-armed for the next one after each expiry; none
//!   while nothing awaits an ack.
//! - **Watchdog**: one timer at `last_rx + stale_after_ms`; when it fires and something was
//!   received meanwhile, it moves to the new `last_rx + stale_after_ms`, so an idle link with
//!   a 30 s ping wakes for it about once a minute.
//!
//! Both are connection-scoped: a restart drops the context's timers, `restarting` forgets
//! the ack timer's handle, and `hello_ack` arms the watchdog again.

use std::time::{Duration, Instant};

use actix::prelude::*;

use super::BrokerConnection;

/// Least time between two ack expiry passes: sends timing out close together are answered
/// by one pass (as by the old 100 ms sweep) rather than one wake-up each.
pub(super) const ACK_SLACK: Duration = Duration::from_millis(100);

/// When the ack timer should fire after an expiry pass at `now`: the earliest deadline
/// still pending, no sooner than [`ACK_SLACK`] from now. None: nothing awaits an ack.
pub(super) fn next_ack_fire(
    deadlines: impl Iterator<Item = Instant>,
    now: Instant,
) -> Option<Instant> {
    deadlines.min().map(|d| d.max(now + ACK_SLACK))
}

/// How long until a link last heard from at `last_rx` is stale; None: it is stale now.
pub(super) fn until_stale(last_rx: Instant, stale: Duration, now: Instant) -> Option<Duration> {
    let at = last_rx + stale;
    (at > now).then(|| at - now)
}

impl BrokerConnection {
    /// A send awaits its ack until `deadline`: make sure the ack timer fires by then
    /// (replacing a timer armed for later).
    pub(super) fn arm_ack_timer(&mut self, ctx: &mut Context<Self>, deadline: Instant) {
        if let Some((at, handle)) = self.ack_timer {
            if at <= deadline {
                return;
            }
            ctx.cancel_future(handle);
        }
        let delay = deadline.saturating_duration_since(Instant::now());
        let handle = ctx.run_later(delay, |act, ctx| {
            act.ack_timer = None;
            act.expire_acks(ctx);
            let next = next_ack_fire(
                act.pending_acks.values().map(|p| p.deadline),
                Instant::now(),
            );
            if let Some(next) = next {
                act.arm_ack_timer(ctx, next);
            }
        });
        self.ack_timer = Some((deadline, handle));
    }

    /// Arms the watchdog for the moment the link would become stale.
    pub(super) fn arm_watchdog(&mut self, ctx: &mut Context<Self>) {
        let stale = Duration::from_millis(self.cfg.tuning.stale_after_ms);
        match until_stale(self.last_rx, stale, Instant::now()) {
            // A millisecond past the instant, so the check that follows sees it passed.
            Some(wait) => {
                ctx.run_later(wait + Duration::from_millis(1), |act, ctx| {
                    act.arm_watchdog(ctx)
                });
            }
            None => self.fail(ctx, "stale: nothing received within stale_after_ms".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ack_timer_follows_the_earliest_pending_deadline_with_slack() {
        let now = Instant::now();
        assert_eq!(
            next_ack_fire(std::iter::empty(), now),
            None,
            "no send: no timer"
        );
        let later = now + Duration::from_secs(15);
        let sooner = now + Duration::from_secs(3);
        assert_eq!(
            next_ack_fire([later, sooner].into_iter(), now),
            Some(sooner)
        );
        let overdue = now + Duration::from_millis(1);
        assert_eq!(
            next_ack_fire([later, overdue].into_iter(), now),
            Some(now + ACK_SLACK),
            "a deadline closer than the slack waits for the slack"
        );
    }

    #[test]
    fn the_watchdog_waits_until_the_link_would_be_stale() {
        let now = Instant::now();
        let stale = Duration::from_secs(75);
        assert_eq!(until_stale(now, stale, now), Some(stale));
        let heard = now - Duration::from_secs(30);
        assert_eq!(
            until_stale(heard, stale, now),
            Some(Duration::from_secs(45))
        );
        assert_eq!(until_stale(now - stale, stale, now), None, "stale now");
        assert_eq!(until_stale(now - 2 * stale, stale, now), None);
    }
}
