//! A mirror of the broker's per-member token bucket (burst 10, 1 token/s by default), as a
//! GCRA schedule: [`Pacer::reserve`] says how long to wait before the next `send` so the
//! broker's bucket is never found empty. Pure.

/// The pacing state of one connection.
#[derive(Debug, Clone)]
pub struct Pacer {
    /// Milliseconds per token.
    interval_ms: i64,
    /// How far ahead of `now` the schedule may run (burst − 1 tokens).
    tolerance_ms: i64,
    /// Theoretical arrival time of the next token.
    tat_ms: i64,
}

impl Pacer {
    /// A pacer for `burst` tokens refilled at `per_sec` tokens a second; `per_sec == 0`
    /// disables pacing.
    pub fn new(burst: u32, per_sec: u32) -> Self {
        let interval_ms = if per_sec == 0 {
            0
        } else {
            1000 / i64::from(per_sec.max(1))
        };
        Pacer {
            interval_ms,
            tolerance_ms: interval_ms * i64::from(burst.max(1) - 1),
            tat_ms: 0,
        }
    }

    /// Reserves one token and returns the delay (ms) before the send may go out.
    pub fn reserve(&mut self, now_ms: i64) -> i64 {
        if self.interval_ms == 0 {
            return 0;
        }
        let tat = self.tat_ms.max(now_ms);
        let send_at = now_ms.max(tat - self.tolerance_ms);
        self.tat_ms = tat + self.interval_ms;
        send_at - now_ms
    }

    /// The broker said its bucket is empty: schedule as if it were.
    pub fn drain(&mut self, now_ms: i64) {
        if self.interval_ms > 0 {
            self.tat_ms = self
                .tat_ms
                .max(now_ms + self.interval_ms + self.tolerance_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_goes_out_at_once_then_one_per_second() {
        let mut p = Pacer::new(10, 1);
        let delays: Vec<i64> = (0..12).map(|_| p.reserve(5_000)).collect();
        assert_eq!(&delays[..10], &[0; 10]);
        assert_eq!(delays[10], 1000);
        assert_eq!(delays[11], 2000);
        // After a quiet period the burst is available again.
        assert_eq!(p.reserve(60_000), 0);
    }

    #[test]
    fn drain_empties_the_bucket_and_zero_rate_disables() {
        let mut p = Pacer::new(10, 1);
        p.drain(1_000);
        assert_eq!(p.reserve(1_000), 1000);
        let mut off = Pacer::new(10, 0);
        assert!((0..100).all(|_| off.reserve(0) == 0));
    }
}
