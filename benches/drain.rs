//! Drain benchmark (issue 10 item 3): real processes (dev broker + one daemon, release build)
//! on loopback. For each configuration the rows are accepted while the broker is away, then
//! the broker comes back and the time from link open until nothing is pending or in flight
//! gives the drain rate. One destination (`*`, nobody else online) and 64 destinations
//! (`@d0`…`@d63`), with one row in flight per destination (the default, SPEC §5.4) and with
//! the pipelined drain (`outbox.destination_window = 32`). Run with `make bench`.
//!
//! `DRAIN_BENCH_ROWS` (default 20,000) sets the rows per configuration; `CLAUDEMESHD_BIN`
//! the binary to measure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{bin, broker, dev_mesh, poll, Proc};

fn daemon(config: &Path, window: u32, dest_window: u32) -> Proc {
    let child = Command::new(bin())
        .args(["up", "--no-tcp"])
        .env("CLAUDEMESH_CONFIG_DIR", config)
        .env("CLAUDEMESH_BROKER_RATE_BURST", "1000000000")
        .env("CLAUDEMESH_BROKER_RECONNECT_CAP_MS", "100")
        .env("CLAUDEMESH_OUTBOX_WINDOW", window.to_string())
        .env(
            "CLAUDEMESH_OUTBOX_DESTINATION_WINDOW",
            dest_window.to_string(),
        )
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Proc(child)
}

/// One HTTP/1.1 request on a fresh socket connection.
fn call(sock: &Path, method: &str, path: &str) -> Option<(u16, String)> {
    let mut s = UnixStream::connect(sock).ok()?;
    let req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let status = raw.split_whitespace().nth(1)?.parse().ok()?;
    let body = raw.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

fn health(sock: &Path) -> Option<Value> {
    let (s, b) = call(sock, "GET", "/v1/health")?;
    (s == 200).then(|| serde_json::from_str(&b).ok()).flatten()
}

/// Accepts `n` sends to `dest(i)` over one keep-alive connection, requests pipelined.
fn accept(sock: &Path, tag: &str, n: usize, dest: impl Fn(usize) -> String) {
    let stream = UnixStream::connect(sock).unwrap();
    let mut w = stream.try_clone().unwrap();
    let reqs: Vec<String> = (0..n)
        .map(|i| {
            let body = format!(
                r#"{{"to":"{}","message":"payload {i}","client_message_id":"{tag}-{i}"}}"#,
                dest(i)
            );
            format!(
                "POST /v1/send HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        })
        .collect();
    let writer = std::thread::spawn(move || {
        for r in reqs {
            w.write_all(r.as_bytes()).unwrap();
        }
    });
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    for _ in 0..n {
        line.clear();
        r.read_line(&mut line).unwrap();
        assert!(line.contains(" 202 "), "{line}");
        let mut len = 0;
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut buf = vec![0; len];
        r.read_exact(&mut buf).unwrap();
    }
    writer.join().unwrap();
}

fn open_rows(h: &Value) -> i64 {
    h["outbox"]["pending"].as_i64().unwrap_or(0) + h["outbox"]["inflight"].as_i64().unwrap_or(0)
}

fn main() {
    let rows: usize = std::env::var("DRAIN_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("broker");
    let (first, url, port) = broker(&state, 0);
    let out = dir.path().join("out");
    dev_mesh(&state, &url, "alice,bob", &out);
    drop(first);
    let alice = out.join("alice");
    let sock = alice.join("daemon/daemon.sock");

    println!(
        "claudemeshd drain benchmark ({}, loopback, {rows} rows per line)\n",
        bin()
    );
    println!(
        "{:<58} {:>12}  {:>9}",
        "destinations, window, destination_window", "msgs/s", "seconds"
    );
    let runs: [(&str, u32, u32); 6] = [
        ("one (`*`), window 32, destination_window 1", 32, 1),
        ("one (`*`), window 32, destination_window 32", 32, 32),
        ("64 groups, window 32, destination_window 1", 32, 1),
        ("64 groups, window 32, destination_window 32", 32, 32),
        ("64 groups, window 256, destination_window 1", 256, 1),
        ("64 groups, window 256, destination_window 32", 256, 32),
    ];
    for (k, (label, window, dest_window)) in runs.iter().enumerate() {
        let d = daemon(&alice, *window, *dest_window);
        assert!(poll(
            Duration::from_secs(20),
            Duration::from_millis(5),
            || { health(&sock).is_some() }
        ));
        let tag = format!("run{k}");
        if label.starts_with("one") {
            accept(&sock, &tag, rows, |_| "*".into());
        } else {
            accept(&sock, &tag, rows, |i| format!("@d{}", i % 64));
        }
        let before = open_rows(&health(&sock).unwrap());
        assert_eq!(before, rows as i64);
        let (b, _, _) = broker(&state, port);
        // The clock starts when the link is open; rows drained before that are not counted.
        let mut left = 0;
        assert!(poll(
            Duration::from_secs(20),
            Duration::from_millis(1),
            || {
                health(&sock).is_some_and(|h| {
                    left = open_rows(&h);
                    h["meshes"][0]["broker_status"] == "open"
                })
            }
        ));
        let t = Instant::now();
        let done = poll(Duration::from_secs(600), Duration::from_millis(50), || {
            health(&sock).is_some_and(|h| open_rows(&h) == 0)
        });
        let secs = t.elapsed().as_secs_f64();
        assert!(done, "{label}: not drained");
        println!("{label:<58} {:>12.0}  {secs:>9.2}", left as f64 / secs);
        drop(d);
        drop(b);
    }
    println!(
        "\n(rows left when the link opened, over the time from then until nothing is pending \
         or in flight; health polled every 50 ms)"
    );
}
