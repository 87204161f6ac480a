//! Process-wide counters for `/v1/metrics`. Plain atomics written by the actors that own the
//! events they count (no actor reads another's state through them; the IPC layer only renders
//! them), so they need no mailbox round trip on hot paths.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Upper bounds (seconds) of the IPC latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

/// Counters shared (read-mostly) by the daemon.
#[derive(Debug, Default)]
pub struct Metrics {
    /// New outbox rows accepted.
    pub sends_accepted: AtomicU64,
    /// Accepts answered from an existing row (any idempotent repeat).
    pub dedupe_hits: AtomicU64,
    /// Rows acked `queued:true` by a broker.
    pub sends_delivered: AtomicU64,
    /// Rows that went dead.
    pub sends_dead: AtomicU64,
    /// Inbound messages stored (new).
    pub receives: AtomicU64,
    /// Inbound duplicates suppressed.
    pub receive_duplicates: AtomicU64,
    /// Broker reconnect attempts.
    pub reconnects: AtomicU64,
    /// Rows credited `done` by an ack that came after its timeout, before any re-send.
    pub late_acks_credited: AtomicU64,
    /// Acks that came after their timeout for a row already sent again (a double send).
    pub late_acks_after_resend: AtomicU64,
    /// Rows of a drain window put back to pending (to be sent again) because an older row
    /// of their destination failed first (whatever their own ack said).
    pub sends_behind_failure: AtomicU64,
    /// Redelivery nudges run (silent reattaches against a leasing broker, SPEC §6).
    pub redelivery_nudges: AtomicU64,
    /// IPC requests by (route, status).
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// IPC latency histogram: cumulative counts per bucket, then +Inf.
    latency_buckets: [AtomicU64; 11],
    latency_sum_us: AtomicU64,
    latency_count: AtomicU64,
}

impl Metrics {
    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Records one IPC request.
    pub fn record_request(&self, route: &str, status: u16, seconds: f64) {
        if let Ok(mut map) = self.requests.lock() {
            *map.entry((route.to_string(), status)).or_insert(0) += 1;
        }
        let idx = LATENCY_BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.latency_buckets[idx].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
        self.latency_count.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests by (route, status).
    pub fn requests(&self) -> Vec<((String, u16), u64)> {
        self.requests
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default()
    }

    /// Cumulative histogram `(le, count)` pairs (last is +Inf), sum in seconds, count.
    pub fn latency(&self) -> (Vec<(Option<f64>, u64)>, f64, u64) {
        let mut acc = 0;
        let mut out = Vec::with_capacity(LATENCY_BUCKETS.len() + 1);
        for (i, b) in self.latency_buckets.iter().enumerate() {
            acc += b.load(Ordering::Relaxed);
            out.push((LATENCY_BUCKETS.get(i).copied(), acc));
        }
        let sum = self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        (out, sum, self.latency_count.load(Ordering::Relaxed))
    }

    /// Current value of a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
