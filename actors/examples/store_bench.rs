//! Throughput of the outbox store on a temp file: accepts per second (one row per
//! transaction with `synchronous` NORMAL and FULL, and batched group commits), the latency of
//! `claim_due` over a 100k-row queue, and the claim + mark_done drain rate.
//!
//! Run: `cargo run --release -p claudemesh-actors --example store_bench` (well under a minute).

use std::collections::{HashMap, HashSet};
use std::error::Error;
use std::path::Path;
use std::time::{Duration, Instant};

use claudemesh_actors::outbox::store::{self, Durability, InFlight, NewSend};
use rusqlite::Connection;

const NOW: i64 = 1_700_000_000_000;

fn main() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    println!(
        "{:<52} {:>10} {:>12} {:>12}",
        "case", "rows", "seconds", "rows/s"
    );

    let mut conn = fresh(&dir.path().join("normal.db"), Durability::Normal)?;
    let t = accept_loop(&mut conn, 20_000, 1, 0)?;
    report("accept, 1 row/tx, WAL + synchronous=NORMAL", 20_000, t);

    let mut conn = fresh(&dir.path().join("full.db"), Durability::Full)?;
    let t = accept_loop(&mut conn, 2_000, 1, 0)?;
    report("accept, 1 row/tx, WAL + synchronous=FULL", 2_000, t);

    let mut conn = fresh(&dir.path().join("batch.db"), Durability::Normal)?;
    let t = accept_loop(&mut conn, 64_000, 64, 0)?;
    report("accept, 64 rows/tx, WAL + synchronous=NORMAL", 64_000, t);

    let mut conn = fresh(&dir.path().join("batch-full.db"), Durability::Full)?;
    let t = accept_loop(&mut conn, 6_400, 64, 0)?;
    report("accept, 64 rows/tx, WAL + synchronous=FULL", 6_400, t);

    // 100k pending rows to a single destination: the worst case for finding the head.
    let mut conn = fresh(&dir.path().join("one-dest.db"), Durability::Normal)?;
    accept_loop(&mut conn, 100_000, 1_000, 1)?;
    let t = Instant::now();
    let claimed = store::claim_due(&mut conn, "m1", NOW + 1_000_000, 32, &HashSet::new())?;
    let one = t.elapsed();
    println!(
        "{:<52} {:>10} {:>12.6} {:>12}",
        "claim_due latency, 100k pending, 1 destination",
        claimed.len(),
        one.as_secs_f64(),
        "-"
    );

    // 100k pending rows over 200 destinations, drained by claim (window 32) + mark_done.
    let mut conn = fresh(&dir.path().join("drain.db"), Durability::Normal)?;
    accept_loop(&mut conn, 100_000, 1_000, 200)?;
    let t = Instant::now();
    let claimed = store::claim_due(&mut conn, "m1", NOW + 1_000_000, 32, &HashSet::new())?;
    println!(
        "{:<52} {:>10} {:>12.6} {:>12}",
        "claim_due latency, 100k pending, 200 destinations",
        claimed.len(),
        t.elapsed().as_secs_f64(),
        "-"
    );
    // A send to a name nobody resolved yet (broker down) joins the newest open row sent to
    // that name: with none, the lookup must not walk the 100k pending rows of the others.
    let t = Instant::now();
    let named = bench_send("bench-name".to_owned(), 7, "carol", None);
    store::accept_batch(&mut conn, &[named], NOW + 2_000_000)?;
    println!(
        "{:<52} {:>10} {:>12.6} {:>12}",
        "accept to an unknown name, 100k pending to others",
        1,
        t.elapsed().as_secs_f64(),
        "-"
    );

    let (n, t) = drain(&mut conn, claimed, Duration::from_secs(10))?;
    report("drain, claim_due(32) + mark_done per row, NORMAL", n, t);

    // The claim-ahead refill: 64 destinations, each holding 8 claimed rows except 4 whose
    // rows just came back (1 slot free each) — what the drainer asks after each apply.
    let mut conn = fresh(&dir.path().join("refill.db"), Durability::Normal)?;
    accept_loop(&mut conn, 64_000, 1_000, 64)?;
    let busy: HashMap<String, InFlight> = (0..64)
        .map(|d| {
            let held = if d % 16 == 0 { 7 } else { 8 };
            (format!("{d:064x}"), InFlight::Rows(held))
        })
        .collect();
    let (mut claims, mut in_claims) = (0, Duration::ZERO);
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(2) {
        let c = Instant::now();
        let rows = store::claim_window(&mut conn, "m1", NOW + 1_000_000, 256, 8, &busy)?;
        in_claims += c.elapsed();
        store::release_claims(&mut conn, &rows.iter().map(|r| r.id).collect::<Vec<_>>())?;
        claims += 1;
    }
    println!(
        "{:<52} {:>10} {:>12.6} {:>12}",
        "claim refill latency, 64 dests, 4 with a free slot",
        claims,
        in_claims.as_secs_f64() / f64::from(claims),
        "-"
    );
    Ok(())
}

fn fresh(path: &Path, durability: Durability) -> Result<Connection, Box<dyn Error>> {
    Ok(store::open(path, durability, false)?)
}

/// Accepts `rows` sends in transactions of `per_tx`; `dests` > 0 spreads them over that many
/// DM destinations (0: all broadcast). Returns the elapsed time.
fn accept_loop(
    conn: &mut Connection,
    rows: usize,
    per_tx: usize,
    dests: usize,
) -> Result<Duration, Box<dyn Error>> {
    let t = Instant::now();
    let mut next = 0usize;
    while next < rows {
        let batch: Vec<NewSend> = (next..(next + per_tx).min(rows))
            .map(|i| {
                let target = if dests == 0 {
                    "*".to_owned()
                } else {
                    format!("{:064x}", i % dests)
                };
                bench_send(
                    format!("bench-{i}"),
                    (i % 251) as u8,
                    &target,
                    Some(&target),
                )
            })
            .collect();
        next += batch.len();
        store::accept_batch(conn, &batch, NOW + next as i64)?;
    }
    Ok(t.elapsed())
}

/// A send of 200 bytes in mesh `m1` with id `id` to `to`, resolved to `target`.
fn bench_send(id: String, fingerprint: u8, to: &str, target: Option<&str>) -> NewSend {
    NewSend {
        session_pubkey: None,
        client_message_id: Some(id),
        fingerprint: [fingerprint; 32],
        mesh: "m1".to_owned(),
        to: to.to_owned(),
        target: target.map(str::to_owned),
        priority: "next".to_owned(),
        meta: None,
        reply_to_id: None,
        payload: vec![b'x'; 200],
    }
}

/// Drains until the queue is empty or `budget` is spent; returns (rows done, elapsed).
fn drain(
    conn: &mut Connection,
    mut claimed: Vec<store::OutboxRow>,
    budget: Duration,
) -> Result<(usize, Duration), Box<dyn Error>> {
    let t = Instant::now();
    let mut done = 0;
    while !claimed.is_empty() && t.elapsed() < budget {
        for row in &claimed {
            store::mark_done(conn, row.id, "bm", NOW)?;
        }
        done += claimed.len();
        claimed = store::claim_due(conn, "m1", NOW + 1_000_000, 32, &HashSet::new())?;
    }
    Ok((done, t.elapsed()))
}

fn report(case: &str, rows: usize, t: Duration) {
    let secs = t.as_secs_f64();
    println!(
        "{case:<52} {rows:>10} {secs:>12.3} {:>12.0}",
        rows as f64 / secs
    );
}
