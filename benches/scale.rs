//! Scale benchmark (issue 10): what grows with the outbox and inbox. Real processes (dev broker
//! and daemons, release build) on loopback. For 1k, 100k and 1M rows in both `outbox.db`
//! (delivered history) and `inbox.db`: start to health, RSS, health p50, accept throughput and
//! p99 at c=64 with an inbox page p99 measured beside that load, and the drain of what was
//! accepted to one destination and to 64. Then SSE fan-out: 1,000 subscribers at 1,000
//! events/s, each resuming by id when the daemon ends its stream for a slow reader. Prints one
//! table. Bounded: fixed work per phase, every wait has a timeout.
//! Rows are written straight into the files with the daemon stopped (the schema is the
//! daemon's: it created and migrated them on a first start).
//!
//! For a quick look at one part: `SCALE_SIZES=1000,100000` measures only those sizes and
//! `SCALE_FANOUT=0` skips the fan-out (`make bench` runs everything).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;
use common::{bin, broker, dev_mesh, health, poll, Conn, Proc};

const SIZES: [usize; 3] = [1_000, 100_000, 1_000_000];
/// Accepts per size (c=64): 64 destinations × 500.
const ACCEPTS: usize = 32_000;
/// Rows drained to one destination per size.
const ONE_DEST: usize = 5_000;
const SUBSCRIBERS: usize = 1_000;
const FANOUT_RATE: u64 = 1_000;
const FANOUT_EVENTS: usize = 3_000;

fn daemon(config: &Path, env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(bin());
    cmd.args(["up", "--tcp-port", "0"])
        .env("CLAUDEMESH_CONFIG_DIR", config)
        .env("CLAUDEMESH_BROKER_RATE_BURST", "1000000000")
        .env("CLAUDEMESH_BROKER_RECONNECT_CAP_MS", "300")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Proc(cmd.spawn().unwrap())
}

fn wait_open(sock: &Path) {
    assert!(poll(
        Duration::from_secs(30),
        Duration::from_millis(5),
        || health(sock).is_some_and(|h| h["meshes"][0]["broker_status"] == "open")
    ));
}

fn open_rows(sock: &Path) -> i64 {
    health(sock).map_or(-1, |h| {
        h["outbox"]["pending"].as_i64().unwrap_or(0) + h["outbox"]["inflight"].as_i64().unwrap_or(0)
    })
}

fn pct(sorted: &mut [f64], p: f64) -> f64 {
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .map_or(0.0, |kb: f64| kb / 1024.0)
}

/// Writes `n` delivered outbox rows and `n` inbox rows straight into the files, dated the
/// last `n` milliseconds: inside every retention, so the daemon's start-up prune keeps them.
fn prefill(daemon_dir: &Path, n: usize) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let first = now - n as i64;
    let mut o = rusqlite::Connection::open(daemon_dir.join("outbox.db")).unwrap();
    let tx = o.transaction().unwrap();
    {
        let mut st = tx
            .prepare(
                "INSERT INTO outbox (client_message_id, request_fingerprint, payload_bytes,
                   enqueued_at, attempts, next_attempt_at, status, mesh, to_spec, target,
                   priority, delivered_at, broker_message_id)
                 VALUES (?1, zeroblob(32), 12, ?2, 1, ?2, 'done', 'history', '@old', '@old',
                   'next', ?2, ?1)",
            )
            .unwrap();
        for i in 0..n {
            st.execute((format!("hist-{i:08}"), first + i as i64))
                .unwrap();
        }
    }
    tx.commit().unwrap();
    let mut b = rusqlite::Connection::open(daemon_dir.join("inbox.db")).unwrap();
    let tx = b.transaction().unwrap();
    {
        let mut st = tx
            .prepare(
                "INSERT INTO inbox (mesh, dedupe_key, broker_message_id, sender_pubkey, body,
                   kind, received_at)
                 VALUES ('history', ?1, ?1, 'aa', 'an old message body', 'plain', ?2)",
            )
            .unwrap();
        for i in 0..n {
            st.execute((format!("in-{i:08}"), first + i as i64))
                .unwrap();
        }
    }
    tx.commit().unwrap();
}

/// `total` unique-id accepts from 64 connections spread over `dests` groups, with one
/// connection paging the inbox meanwhile. Returns (rate, accept p99 ms, inbox page p99 ms).
fn accept_load(sock: &Path, total: usize, dests: usize, tag: &str) -> (f64, f64, f64) {
    let conc = 64;
    let lat = Mutex::new(Vec::with_capacity(total));
    let pages = Mutex::new(Vec::new());
    let done = AtomicBool::new(false);
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut c = Conn::open(sock).unwrap();
            let mut mine = Vec::new();
            while !done.load(Ordering::Relaxed) && mine.len() < 100_000 {
                let t = Instant::now();
                let (status, _) = c.call("GET", "/v1/inbox?limit=50", "");
                assert_eq!(status, 200);
                mine.push(t.elapsed().as_secs_f64() * 1e3);
                std::thread::sleep(Duration::from_millis(2));
            }
            pages.lock().unwrap().extend(mine);
        });
        let workers: Vec<_> = (0..conc)
            .map(|w| {
                let lat = &lat;
                s.spawn(move || {
                    let mut c = Conn::open(sock).unwrap();
                    let mut mine = Vec::new();
                    for i in 0..total / conc {
                        let to = format!("@d{}", (w * 7 + i) % dests);
                        let body = format!(
                            r#"{{"to":"{to}","message":"payload {i}","client_message_id":"{tag}-{w}-{i}"}}"#
                        );
                        let t = Instant::now();
                        let (status, _) = c.call("POST", "/v1/send", &body);
                        assert!(status == 202, "status {status}");
                        mine.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                    lat.lock().unwrap().extend(mine);
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        done.store(true, Ordering::Relaxed);
    });
    let secs = start.elapsed().as_secs_f64();
    let mut l = lat.into_inner().unwrap();
    let rate = l.len() as f64 / secs;
    let mut p = pages.into_inner().unwrap();
    (rate, pct(&mut l, 0.99), pct(&mut p, 0.99))
}

/// Time for the open rows to reach zero once the broker is up; msgs/s.
fn drain(sock: &Path, rows: usize) -> f64 {
    let t = Instant::now();
    poll(Duration::from_secs(120), Duration::from_millis(20), || {
        open_rows(sock) == 0
    });
    rows as f64 / t.elapsed().as_secs_f64()
}

struct Row {
    size: usize,
    start_ms: f64,
    rss_start: f64,
    health_p50: f64,
    accept: (f64, f64, f64),
    repeat: (f64, f64, f64),
    rss_loaded: f64,
    drain64: f64,
    drain1: f64,
}

fn one_size(alice_dir: &Path, state: &Path, port: u16, n: usize) -> Row {
    let sock = alice_dir.join("daemon/daemon.sock");
    let dd = alice_dir.join("daemon");
    for f in [
        "outbox.db",
        "outbox.db-wal",
        "outbox.db-shm",
        "inbox.db",
        "inbox.db-wal",
        "inbox.db-shm",
    ] {
        let _ = std::fs::remove_file(dd.join(f));
    }
    // First start creates and migrates the files; then fill them with the daemon stopped.
    {
        let first = daemon(alice_dir, &[]);
        assert!(poll(
            Duration::from_secs(20),
            Duration::from_millis(5),
            || health(&sock).is_some()
        ));
        drop(first);
    }
    prefill(&dd, n);
    // Start to health, broker down (accepts measure the write path alone).
    let t = Instant::now();
    // 64 senders and the inbox pager: one more request in flight than the default cap.
    let d = daemon(alice_dir, &[("CLAUDEMESH_IPC_MAX_INFLIGHT", "128")]);
    assert!(poll(
        Duration::from_secs(30),
        Duration::from_millis(1),
        || health(&sock).is_some()
    ));
    let start_ms = t.elapsed().as_secs_f64() * 1e3;
    // After the start-up scan of the message ids (~0.3 s at 1M rows) has filled its filter.
    std::thread::sleep(Duration::from_millis(1_000));
    let rss_start = rss_mb(d.0.id());
    let mut c = Conn::open(&sock).unwrap();
    let mut h = Vec::new();
    for _ in 0..2_000 {
        let t = Instant::now();
        let (status, _) = c.call("GET", "/v1/health", "");
        assert_eq!(status, 200);
        h.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let health_p50 = pct(&mut h, 0.5);
    let accept = accept_load(&sock, ACCEPTS, 64, &format!("u{n}"));
    // The same requests again: every id is taken, answered without the writer.
    let repeat = accept_load(&sock, ACCEPTS, 64, &format!("u{n}"));
    let rss_loaded = rss_mb(d.0.id());
    // The history is all still there: the start-up prune kept it (inside the retention).
    let (status, page) = c.call(
        "GET",
        &format!("/v1/inbox?limit=50&before={}", n / 2 + 1),
        "",
    );
    let page: serde_json::Value = serde_json::from_str(&page).unwrap();
    let items = page["items"].as_array().map_or(0, Vec::len);
    assert!(
        status == 200 && items == 50.min(n / 2),
        "inbox history pruned: {items} rows"
    );
    // Drain to 64 destinations: bring the broker up.
    let (b, _, _) = broker(state, port);
    wait_open(&sock);
    let drain64 = drain(&sock, ACCEPTS);
    // Drain to one destination: accept with the broker down, then bring it back.
    drop(b);
    poll(Duration::from_secs(10), Duration::from_millis(20), || {
        health(&sock).is_some_and(|h| h["meshes"][0]["broker_status"] != "open")
    });
    accept_load(&sock, ONE_DEST, 1, &format!("one{n}"));
    let (b, _, _) = broker(state, port);
    wait_open(&sock);
    let drain1 = drain(&sock, ONE_DEST);
    drop(b);
    drop(d);
    Row {
        size: n,
        start_ms,
        rss_start,
        health_p50,
        accept,
        repeat,
        rss_loaded,
        drain64,
        drain1,
    }
}

fn tcp_port(daemon_dir: &Path) -> u16 {
    let mut port = 0;
    poll(Duration::from_secs(10), Duration::from_millis(10), || {
        port = std::fs::read_to_string(daemon_dir.join("tcp.port"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        port != 0
    });
    port
}

/// 1,000 SSE subscribers on bob's TCP port while alice sends bob 1,000 messages/s: events lost
/// (summed over subscribers) and bob's RSS at the end.
/// Returns (subscribers connected, deliveries lost, streams resumed by id, RSS MB, seconds).
fn fanout(
    alice_dir: &Path,
    bob_dir: &Path,
    state: &Path,
    port: u16,
) -> (usize, usize, usize, f64, f64) {
    let (_b, _, _) = broker(state, port);
    let (asock, bsock) = (
        alice_dir.join("daemon/daemon.sock"),
        bob_dir.join("daemon/daemon.sock"),
    );
    let alice = daemon(alice_dir, &[]);
    let streams = (SUBSCRIBERS + 16).to_string();
    let bob = daemon(
        bob_dir,
        &[
            ("CLAUDEMESH_IPC_MAX_SSE_STREAMS", &streams),
            ("CLAUDEMESH_IPC_MAX_INFLIGHT", "4096"),
        ],
    );
    wait_open(&asock);
    wait_open(&bsock);
    let bd = bob_dir.join("daemon");
    let tport = tcp_port(&bd);
    let token = std::fs::read_to_string(bd.join("local-token"))
        .unwrap()
        .trim()
        .to_string();
    let got = Arc::new(AtomicUsize::new(0));
    let ready = Arc::new(AtomicUsize::new(0));
    let resumed = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut subs = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let (got, ready, stop, token) = (got.clone(), ready.clone(), stop.clone(), token.clone());
        let resumed = resumed.clone();
        subs.push(
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    // A stream the daemon ends for a slow reader is resumed by id, as a client
                    // does (SPEC §7.4): only what never arrives counts as lost.
                    let mut last_id: Option<u64> = None;
                    let mut counted = false;
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        let Ok(mut st) = TcpStream::connect(("127.0.0.1", tport)) else {
                            return;
                        };
                        st.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
                        let resume = last_id.map_or(String::new(), |id| {
                            format!("Last-Event-ID: {id}\r\n")
                        });
                        let _ = write!(
                            st,
                            "GET /v1/events?kinds=message HTTP/1.1\r\nHost: 127.0.0.1:{tport}\r\nAuthorization: Bearer {token}\r\n{resume}\r\n"
                        );
                        let mut r = BufReader::new(st);
                        let mut line = String::new();
                        let mut id: Option<u64> = None;
                        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                            line.clear();
                            match r.read_line(&mut line) {
                                Ok(0) => break,
                                Ok(_) => {
                                    if !counted && line.starts_with("HTTP/1.1 200") {
                                        counted = true;
                                        ready.fetch_add(1, Ordering::Relaxed);
                                    }
                                    if let Some(v) = line.strip_prefix("id: ") {
                                        id = v.trim().parse().ok();
                                    }
                                    if line.starts_with("data: ")
                                        && line.contains("fan ")
                                        && id > last_id
                                    {
                                        got.fetch_add(1, Ordering::Relaxed);
                                        last_id = id;
                                    }
                                }
                                Err(_) => continue,
                            }
                        }
                        if !counted || stop.load(Ordering::Relaxed) {
                            return;
                        }
                        resumed.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .unwrap(),
        );
    }
    poll(Duration::from_secs(30), Duration::from_millis(20), || {
        ready.load(Ordering::Relaxed) >= SUBSCRIBERS
    });
    let connected = ready.load(Ordering::Relaxed);
    let mut c = Conn::open(&asock).unwrap();
    let start = Instant::now();
    for i in 0..FANOUT_EVENTS {
        let due = start + Duration::from_micros(1_000_000 / FANOUT_RATE * i as u64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let (status, _) = c.call(
            "POST",
            "/v1/send",
            &format!(r#"{{"to":"bob","message":"fan {i}"}}"#),
        );
        assert_eq!(status, 202);
    }
    let want = connected * FANOUT_EVENTS;
    poll(Duration::from_secs(30), Duration::from_millis(50), || {
        got.load(Ordering::Relaxed) >= want
    });
    let rss = rss_mb(bob.0.id());
    let delivered_in = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for s in subs {
        let _ = s.join();
    }
    drop(bob);
    drop(alice);
    (
        connected,
        want.saturating_sub(got.load(Ordering::Relaxed)),
        resumed.load(Ordering::Relaxed),
        rss,
        delivered_in,
    )
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("broker");
    let (first_broker, url, port) = broker(&state, 0);
    let out = dir.path().join("out");
    dev_mesh(&state, &url, "alice,bob", &out);
    drop(first_broker);
    let (alice_dir, bob_dir): (PathBuf, PathBuf) = (out.join("alice"), out.join("bob"));

    println!("claudemeshd scale benchmark (release build, loopback, 2-core machine)");
    println!(
        "rows = outbox history (status done) + as many inbox rows, bulk-inserted into the files with\n\
         the daemon stopped (one transaction each, through the daemon's schema and triggers).\n\
         Accepts: {ACCEPTS} unique ids at c=64 over 64 groups, broker down, one connection paging the\n\
         inbox (limit 50, every 2 ms) meanwhile (ipc.max_inflight 128); then the same {ACCEPTS} requests again (every id\n\
         taken). Drains: those {ACCEPTS} rows (64 destinations), then {ONE_DEST} rows to one destination.\n"
    );
    let sizes: Vec<usize> = std::env::var("SCALE_SIZES").map_or(SIZES.to_vec(), |v| {
        v.split(',').filter_map(|n| n.trim().parse().ok()).collect()
    });
    let rows: Vec<Row> = sizes
        .iter()
        .map(|&n| {
            let r = one_size(&alice_dir, &state, port, n);
            eprintln!("scale: {n} rows measured");
            r
        })
        .collect();
    let line = |name: &str, f: &dyn Fn(&Row) -> String| {
        let cells: Vec<String> = rows.iter().map(|r| format!("{:>10}", f(r))).collect();
        println!("{name:<44}{}", cells.join(""));
    };
    line("rows", &|r| r.size.to_string());
    line("start to health, ms", &|r| format!("{:.1}", r.start_ms));
    line("RSS 1 s after start, MB", &|r| {
        format!("{:.1}", r.rss_start)
    });
    line("health p50, ms", &|r| format!("{:.3}", r.health_p50));
    line("accept, unique ids, c=64, /s", &|r| {
        format!("{:.0}", r.accept.0)
    });
    line("accept, unique ids, p99 ms", &|r| {
        format!("{:.2}", r.accept.1)
    });
    line("inbox page p99 beside unique accepts, ms", &|r| {
        format!("{:.2}", r.accept.2)
    });
    line("accept, repeated ids, c=64, /s", &|r| {
        format!("{:.0}", r.repeat.0)
    });
    line("accept, repeated ids, p99 ms", &|r| {
        format!("{:.2}", r.repeat.1)
    });
    line("inbox page p99 beside repeated, ms", &|r| {
        format!("{:.2}", r.repeat.2)
    });
    line("unique / repeated", &|r| {
        format!("{:.2}", r.accept.0 / r.repeat.0)
    });
    line("RSS after accepts, MB", &|r| format!("{:.1}", r.rss_loaded));
    line("drain to 64 destinations, msgs/s", &|r| {
        format!("{:.0}", r.drain64)
    });
    line("drain to 1 destination, msgs/s", &|r| {
        format!("{:.0}", r.drain1)
    });
    if std::env::var("SCALE_FANOUT").is_ok_and(|v| v == "0") {
        return;
    }
    let (connected, lost, resumed, rss, secs) = fanout(&alice_dir, &bob_dir, &state, port);
    println!(
        "\nSSE fan-out: {connected} of {SUBSCRIBERS} subscribers (TCP), {FANOUT_EVENTS} events at {FANOUT_RATE}/s: \
         {lost} of {} deliveries lost, all in {secs:.1} s, RSS {rss:.1} MB; {resumed} streams \
         ended for a slow reader and resumed by id",
        connected * FANOUT_EVENTS
    );
}
