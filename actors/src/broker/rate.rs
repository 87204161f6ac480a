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

    /// Gives back the tokens of `n` reserved sends that will not go out (cancelled before
    /// their time): the sends scheduled after them do not wait for them.
    pub fn release(&mut self, n: usize) {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        self.tat_ms = self
            .tat_ms
            .saturating_sub(n.saturating_mul(self.interval_ms));
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
    fn released_sends_give_their_slots_back() {
        let mut p = Pacer::new(10, 1);
        for _ in 0..10 {
            assert_eq!(p.reserve(5_000), 0);
        }
        // Three more are scheduled 1, 2 and 3 s ahead, then cancelled before their time.
        let later: Vec<i64> = (0..3).map(|_| p.reserve(5_000)).collect();
        assert_eq!(later, [1_000, 2_000, 3_000]);
        p.release(3);
        assert_eq!(
            p.reserve(5_100),
            900,
            "the next one takes the first freed slot"
        );
        // After a refusal (`drain`) the schedule restarts one interval from now.
        p.release(1);
        p.drain(5_200);
        assert_eq!(p.reserve(5_200), 1_000);
        assert_eq!(p.reserve(5_200), 2_000);
    }

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
