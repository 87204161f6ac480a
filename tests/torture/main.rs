//! `make torture` (issue 9 item 2): real processes — dev broker, daemons — on loopback, in temp
//! dirs, pushed through crashes, outages, full disks, corrupt files and hostile clients, with
//! exact accounting of every message sent. Prints one table row per scenario and ends with
//! `N passed, M failed`.
//!
//! `cargo test --test torture -- [--short] [--seed N] [--only NAME]` (a `harness = false`
//! target with `test = false`: never part of `cargo test --workspace`). `--short` is the CI
//! version (≤ 2 minutes); the full one takes ≤ 10 minutes on 2 cores.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../it/harness.rs"]
#[allow(dead_code)]
mod harness;

mod account;
mod crash;
mod hostile;

use std::time::{Duration, Instant};

use account::Tally;

/// Run-wide settings from the command line.
pub struct Opts {
    pub short: bool,
    pub seed: u64,
}

/// A small deterministic PRNG (xorshift64*), seeded from the command line or the clock.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `lo..hi` (hi > lo).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo).max(1)
    }
}

/// One scenario's outcome: the accounting plus whether its own targets held.
pub struct Outcome {
    pub tally: Tally,
    pub problems: Vec<String>,
}

type Scenario = fn(&Opts, &mut Rng) -> Outcome;

const SCENARIOS: &[(&str, Scenario)] = &[
    ("kill9-sender", crash::kill9_sender),
    ("broker-restarts", crash::broker_restarts),
    ("broker-restarts-seed", crash::broker_restarts_seed),
    ("kill9-receiver-head", crash::kill9_receiver_head),
    ("broker-sigstop", crash::broker_sigstop),
    ("plain-broker-kill9", crash::plain_broker_kill9),
    ("disk-full", hostile::disk_full),
    ("corrupt-outbox", hostile::corrupt_outbox),
    ("corrupt-inbox", hostile::corrupt_inbox),
    ("same-id-x1000", hostile::same_id_concurrent),
    ("slow-clients", hostile::slow_clients),
    ("schemathesis", hostile::schemathesis),
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let short = args.iter().any(|a| a == "--short");
    let arg_after = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let seed = arg_after("--seed")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let only = arg_after("--only");
    let opts = Opts { short, seed };
    println!(
        "torture: {} run, seed {seed} (repeat with --seed {seed})",
        if short { "short" } else { "full" }
    );
    let started = Instant::now();
    let mut rows = Vec::new();
    for (name, run) in SCENARIOS {
        if only.as_deref().is_some_and(|o| o != *name) {
            continue;
        }
        // CI runs schemathesis on its own (`make schemathesis`, bounded); the full run has a
        // longer one here.
        if short && *name == "schemathesis" && only.is_none() {
            continue;
        }
        let t = Instant::now();
        let mut rng = Rng::new(seed ^ fxhash(name));
        eprintln!("torture: {name} …");
        let outcome =
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&opts, &mut rng))) {
                Ok(o) => o,
                Err(e) => {
                    let msg = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "panic".into());
                    Outcome {
                        tally: Tally::default(),
                        problems: vec![format!("aborted: {msg}")],
                    }
                }
            };
        rows.push((name.to_string(), outcome, t.elapsed()));
    }
    print_table(&rows);
    let failed = rows
        .iter()
        .filter(|(_, o, _)| !o.problems.is_empty())
        .count();
    println!("total time {:.0} s", started.elapsed().as_secs_f64());
    println!("{} passed, {failed} failed", rows.len() - failed);
    std::process::exit(i32::from(failed > 0));
}

fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn print_table(rows: &[(String, Outcome, Duration)]) {
    println!();
    println!(
        "| {:<20} | {:>6} | {:>8} | {:>9} | {:>8} | {:>8} | {:>4} | {:>5} | {:>4} | {:>5} | result | notes",
        "scenario", "sent", "accepted", "delivered", "dup-wire", "dup-inbx", "lost", "stuck", "5xx", "secs"
    );
    println!("|{}|", "-".repeat(120));
    for (name, o, took) in rows {
        let t = &o.tally;
        let result = if o.problems.is_empty() {
            "PASS"
        } else {
            "FAIL"
        };
        let mut notes = t.notes.join("; ");
        if !o.problems.is_empty() {
            if !notes.is_empty() {
                notes.push_str("; ");
            }
            notes.push_str(&o.problems.join("; "));
        }
        println!(
            "| {:<20} | {:>6} | {:>8} | {:>9} | {:>8} | {:>8} | {:>4} | {:>5} | {:>4} | {:>5.0} | {:<6} | {}",
            name,
            t.sent,
            t.accepted,
            t.delivered_once,
            t.dup_wire,
            t.dup_inbox,
            t.lost,
            t.stuck,
            t.bad_5xx,
            took.as_secs_f64(),
            result,
            notes
        );
    }
    println!();
}
