//! The broker's per-member send rate limit (BROKER-PROTOCOL §2.5): a token bucket with
//! capacity 10 that refills at 60 tokens a minute, keyed by member id so that every connection
//! of a member shares one bucket. Only `send` consumes tokens.
//!
//! Pure: time is passed in (milliseconds), so the bucket is unit-tested without sleeping.

use std::collections::HashMap;

/// Bucket capacity (the burst).
pub const BURST: f64 = 10.0;
/// Refill rate in tokens per millisecond (60 per minute).
pub const REFILL_PER_MS: f64 = 1.0 / 1000.0;
/// The exact error string the broker puts in the `ack` (note the em dash).
pub const RATE_LIMIT_ERROR: &str = "rate_limit: max 60 msg/min (burst 10) — slow down";

/// One member's bucket.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// Tokens available, at most [`BURST`].
    tokens: f64,
    /// When `tokens` was last brought up to date.
    updated_ms: i64,
}

/// Every member's bucket; a member without one has a full bucket.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: HashMap<String, Bucket>,
}

impl RateLimiter {
    /// Takes one token for `member_id` at `now_ms`; `false` when the bucket is empty.
    pub fn try_take(&mut self, member_id: &str, now_ms: i64) -> bool {
        let bucket = self.buckets.entry(member_id.to_owned()).or_insert(Bucket {
            tokens: BURST,
            updated_ms: now_ms,
        });
        let elapsed = (now_ms - bucket.updated_ms).max(0) as f64;
        bucket.tokens = (bucket.tokens + elapsed * REFILL_PER_MS).min(BURST);
        bucket.updated_ms = now_ms;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_of_ten_then_refuses_until_a_second_has_passed() {
        let mut limiter = RateLimiter::default();
        for _ in 0..10 {
            assert!(limiter.try_take("m1", 1_000));
        }
        assert!(!limiter.try_take("m1", 1_000));
        assert!(!limiter.try_take("m1", 1_999));
        assert!(limiter.try_take("m1", 2_000));
        assert!(!limiter.try_take("m1", 2_000));
    }

    #[test]
    fn members_have_separate_buckets_and_refill_caps_at_the_burst() {
        let mut limiter = RateLimiter::default();
        for _ in 0..10 {
            assert!(limiter.try_take("m1", 0));
        }
        assert!(limiter.try_take("m2", 0));
        let taken = (0..20)
            .filter(|_| limiter.try_take("m1", 3_600_000))
            .count();
        assert_eq!(taken, 10);
    }
}
