//! Rate limit for security warnings (issue 13 item 10): a flood of refused requests from
//! another local user must not rotate the daemon's log away. The first event of an interval
//! is logged at once; later ones in the same interval are only counted, and the count rides
//! on the first line of the next interval. So at most one line per interval, whatever the
//! rate, and no event goes uncounted.
//!
//! Pure: the caller passes the clock, so the limiter is tested without sleeping.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a security warning may be written.
pub const SECURITY_WARN_INTERVAL: Duration = Duration::from_secs(60);

/// Counts events and says when one may be written.
#[derive(Debug)]
pub struct WarnLimiter {
    /// Length of one interval.
    interval: Duration,
    /// Start of the current interval (`None` before the first event).
    window_start: Option<Instant>,
    /// Events of the current interval that were not written.
    suppressed: u64,
}

impl WarnLimiter {
    /// A limiter writing at most one line per `interval`.
    pub const fn new(interval: Duration) -> Self {
        WarnLimiter {
            interval,
            window_start: None,
            suppressed: 0,
        }
    }

    /// Records one event at `now`. `Some(n)`: write a line now, mentioning the `n` earlier
    /// events that were not written; `None`: counted only.
    pub fn note(&mut self, now: Instant) -> Option<u64> {
        match self.window_start {
            Some(start) if now.saturating_duration_since(start) < self.interval => {
                self.suppressed = self.suppressed.saturating_add(1);
                None
            }
            _ => {
                self.window_start = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// The limiter of the "token in the query string" warning (shared by every worker).
pub static TOKEN_IN_QUERY: Mutex<WarnLimiter> =
    Mutex::new(WarnLimiter::new(SECURITY_WARN_INTERVAL));

/// Records one event on `limiter`; `Some(n)` when a line must be written now.
pub fn note(limiter: &Mutex<WarnLimiter>) -> Option<u64> {
    // A poisoned lock only means a panic elsewhere while counting; the count is still usable.
    let mut guard = limiter
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    guard.note(Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_carrying_the_count_of_the_previous_one() {
        let t0 = Instant::now();
        let mut l = WarnLimiter::new(Duration::from_secs(60));
        assert_eq!(l.note(t0), Some(0));
        let written = (1..1000)
            .filter(|i| l.note(t0 + Duration::from_millis(*i)).is_some())
            .count();
        assert_eq!(
            written, 0,
            "a burst inside one interval writes nothing more"
        );
        assert_eq!(l.note(t0 + Duration::from_secs(61)), Some(999));
        assert_eq!(l.note(t0 + Duration::from_secs(62)), None);
        assert_eq!(l.note(t0 + Duration::from_secs(200)), Some(1));
    }
}
