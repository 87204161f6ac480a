//! Daemon benchmark: real processes (dev broker + daemons, release build) on loopback.
//! Prints one table: accept throughput and latency over the socket at several concurrencies,
//! end-to-end latency daemon → dev broker → daemon → SSE, drain throughput, idle RSS, and
//! start-to-health with 100,000 outbox rows; the idle cost of a daemon as shipped (wake-ups
//! per second and CPU over 60 s with one open broker link) and the CPU time per 10,000
//! accepts. Run with `make bench`; `cargo bench --bench daemon -- idle` runs the idle phase
//! alone, and `CLAUDEMESHD_BIN=<path>` measures another build of the binary. Bounded:
//! every phase has a fixed amount of work and a timeout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{bin, broker, dev_mesh, health, poll, Conn, Proc};

/// How long the idle phase watches the daemon.
const IDLE_WINDOW: Duration = Duration::from_secs(60);

/// A daemon as shipped: default tuning and logging, TCP port on (any free port, so benches
/// and a real daemon on this machine do not collide).
fn shipped_daemon(config: &Path) -> Proc {
    let child = Command::new(bin())
        .arg("up")
        .env("CLAUDEMESH_CONFIG_DIR", config)
        .env("CLAUDEMESH_IPC_TCP_PORT", "0")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Proc(child)
}

fn daemon(config: &Path) -> Proc {
    let child = Command::new(bin())
        .args(["up", "--no-tcp"])
        .env("CLAUDEMESH_CONFIG_DIR", config)
        .env("CLAUDEMESH_BROKER_RATE_BURST", "1000000000")
        .env("CLAUDEMESH_BROKER_RECONNECT_CAP_MS", "500")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Proc(child)
}

fn wait_for(timeout: Duration, f: impl FnMut() -> bool) -> bool {
    poll(timeout, Duration::from_millis(2), f)
}

fn wait_open(sock: &Path) {
    assert!(wait_for(Duration::from_secs(20), || health(sock)
        .is_some_and(|h| h["meshes"][0]["broker_status"] == "open")));
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// `total` accepts from `conc` keep-alive connections; `same_id` repeats one id.
/// Returns (req/s, p50 ms, p99 ms, daemon CPU ms per 10,000 accepts); `pid` is the daemon's.
fn accept_run(
    sock: &Path,
    pid: u32,
    conc: usize,
    total: usize,
    same_id: bool,
    tag: &str,
) -> (f64, f64, f64, f64) {
    let cpu_before = process_cpu_ms(pid);
    let lat = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let start = Instant::now();
    std::thread::scope(|s| {
        for w in 0..conc {
            let lat = lat.clone();
            s.spawn(move || {
                let mut c = Conn::open(sock).unwrap();
                let mut mine = Vec::new();
                for i in 0..total / conc {
                    let id = if same_id {
                        "bench-same".to_string()
                    } else {
                        format!("{tag}-{w}-{i}")
                    };
                    let text = if same_id {
                        "same payload".to_string()
                    } else {
                        format!("payload {i}")
                    };
                    // Spread over 64 groups: the drain phase then has 64 equal destinations.
                    let to = if same_id {
                        "@bench".to_string()
                    } else {
                        format!("@bench{}", (w * 7 + i) % 64)
                    };
                    let body =
                        format!(r#"{{"to":"{to}","message":"{text}","client_message_id":"{id}"}}"#);
                    let t = Instant::now();
                    let (status, _) = c.call("POST", "/v1/send", &body);
                    assert!(status == 202 || status == 200, "status {status}");
                    mine.push(t.elapsed().as_secs_f64() * 1e3);
                }
                lat.lock().unwrap().extend(mine);
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let cpu_per_10k = (process_cpu_ms(pid) - cpu_before) * 10_000.0 / total.max(1) as f64;
    let mut l = lat.lock().unwrap().clone();
    l.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (
        l.len() as f64 / secs,
        pct(&l, 0.5),
        pct(&l, 0.99),
        cpu_per_10k,
    )
}

/// A `/proc/<pid>/status` field in kB (`VmRSS`, `RssAnon`, ...).
fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// One thread's counters: name, context switches (voluntary + not), nanoseconds on a CPU.
#[derive(Clone, Default)]
struct TaskSample {
    name: String,
    switches: u64,
    cpu_ns: u64,
}

/// Every thread of `pid`, by thread id, from `/proc/<pid>/task/*/{status,schedstat}`.
fn sample_tasks(pid: u32) -> std::collections::BTreeMap<u32, TaskSample> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let mut t = TaskSample::default();
        for line in status.lines() {
            let mut it = line.split_whitespace();
            match it.next() {
                Some("Name:") => t.name = it.collect::<Vec<_>>().join(" "),
                Some("voluntary_ctxt_switches:") | Some("nonvoluntary_ctxt_switches:") => {
                    t.switches += it.next().and_then(|v| v.parse().ok()).unwrap_or(0)
                }
                _ => {}
            }
        }
        t.cpu_ns = std::fs::read_to_string(entry.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
            .unwrap_or(0);
        out.insert(tid, t);
    }
    out
}

/// CPU time of the whole process (every thread, ended ones too), in ms, from
/// `/proc/<pid>/stat` (utime + stime, clock ticks of 10 ms).
fn process_cpu_ms(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 * 1e3 / hz
}

/// Idle cost over [`IDLE_WINDOW`]: (wake-ups per second, CPU ms per minute, per-thread
/// wake-ups per second by thread name, busiest first).
fn idle_cost(pid: u32) -> (f64, f64, Vec<(String, f64)>) {
    let before = sample_tasks(pid);
    let start = Instant::now();
    std::thread::sleep(IDLE_WINDOW);
    let after = sample_tasks(pid);
    let secs = start.elapsed().as_secs_f64();
    let mut switches = 0u64;
    let mut cpu_ns = 0u64;
    let mut by_name: std::collections::BTreeMap<String, u64> = Default::default();
    for (tid, a) in &after {
        let b = before.get(tid).cloned().unwrap_or_default();
        let d = a.switches.saturating_sub(b.switches);
        switches += d;
        cpu_ns += a.cpu_ns.saturating_sub(b.cpu_ns);
        *by_name.entry(a.name.clone()).or_default() += d;
    }
    let mut threads: Vec<(String, f64)> = by_name
        .into_iter()
        .filter(|(_, d)| *d > 0)
        .map(|(n, d)| (n, d as f64 / secs))
        .collect();
    threads.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap());
    (
        switches as f64 / secs,
        cpu_ns as f64 / 1e6 * 60.0 / secs,
        threads,
    )
}

/// The idle phase: a daemon as shipped with one open broker link, left alone for a minute.
fn idle_phase(dir: &Path, rows: &mut Vec<(String, String)>) {
    let state = dir.join("idle-broker");
    let (broker_proc, url, _) = broker(&state, 0);
    let out = dir.join("idle-out");
    dev_mesh(&state, &url, "ida", &out);
    let config = out.join("ida");
    let sock = config.join("daemon/daemon.sock");
    let d = shipped_daemon(&config);
    wait_open(&sock);
    // The start's own traffic (peer list, profile, first ping) settles first.
    std::thread::sleep(Duration::from_secs(3));
    let (wakes, cpu_ms, threads) = idle_cost(d.0.id());
    let open = health(&sock).is_some_and(|h| h["meshes"][0]["broker_status"] == "open");
    rows.push((
        format!(
            "idle, one open broker link, {} s (as shipped)",
            IDLE_WINDOW.as_secs()
        ),
        format!(
            "{wakes:>9.2} wake-ups/s   CPU {cpu_ms:.1} ms/min ({:.4} %){}",
            cpu_ms / 600.0,
            if open { "" } else { "   LINK NOT OPEN" }
        ),
    ));
    let top: Vec<String> = threads
        .iter()
        .take(6)
        .map(|(n, w)| format!("{n} {w:.2}"))
        .collect();
    rows.push(("idle wake-ups/s by thread".into(), top.join(", ")));
    drop(d);
    drop(broker_proc);
}

fn main() {
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let mut rows: Vec<(String, String)> = Vec::new();
    println!("claudemeshd benchmark (release build, loopback, 2-core machine)\n");
    if only.iter().any(|a| a == "idle") {
        idle_phase(dir.path(), &mut rows);
        print_rows(rows);
        return;
    }
    let state = dir.path().join("broker");
    let (first_broker, url, port) = broker(&state, 0);
    let out = dir.path().join("out");
    dev_mesh(&state, &url, "alice,bob", &out);
    // Accept phases run with the broker down, so nothing drains meanwhile: they measure the
    // accept path alone (the daemon keeps accepting while every broker is down).
    drop(first_broker);
    let (alice_dir, bob_dir): (PathBuf, PathBuf) = (out.join("alice"), out.join("bob"));
    let alice = daemon(&alice_dir);
    let (asock, bsock) = (
        alice_dir.join("daemon/daemon.sock"),
        bob_dir.join("daemon/daemon.sock"),
    );
    assert!(wait_for(Duration::from_secs(20), || health(&asock).is_some()));
    let apid = alice.0.id();
    for (conc, total) in [(1usize, 5_000usize), (16, 40_000), (64, 64_000)] {
        let (rate, p50, p99, cpu) =
            accept_run(&asock, apid, conc, total, false, &format!("c{conc}"));
        rows.push((
            format!("accept, unique ids, c={conc}"),
            format!("{rate:>9.0} req/s   p50 {p50:.3} ms   p99 {p99:.3} ms   CPU {cpu:.0} ms/10k"),
        ));
    }
    let (rate, p50, p99, cpu) = accept_run(&asock, apid, 64, 64_000, true, "same");
    rows.push((
        "accept, one repeated id, c=64".into(),
        format!("{rate:>9.0} req/s   p50 {p50:.3} ms   p99 {p99:.3} ms   CPU {cpu:.0} ms/10k"),
    ));

    // Drain: the broker comes back; time from link open until nothing is pending.
    let (broker_proc, _, _) = broker(&state, port);
    wait_open(&asock);
    let drain_start = Instant::now();
    let before = health(&asock).unwrap()["outbox"]["pending"]
        .as_i64()
        .unwrap_or(0)
        + health(&asock).unwrap()["outbox"]["inflight"]
            .as_i64()
            .unwrap_or(0);
    poll(Duration::from_secs(300), Duration::from_millis(250), || {
        health(&asock).is_some_and(|h| h["outbox"]["pending"] == 0 && h["outbox"]["inflight"] == 0)
    });
    let drained = before as f64 / drain_start.elapsed().as_secs_f64();
    rows.push((
        "drain to dev broker (64 destinations, window 32)".into(),
        format!("{drained:>9.0} msgs/s  ({before} rows)"),
    ));

    let bob = daemon(&bob_dir);
    wait_open(&bsock);
    std::thread::sleep(Duration::from_millis(500));
    let idle_rss = status_kb(bob.0.id(), "VmRSS:");
    let idle_anon = status_kb(bob.0.id(), "RssAnon:");

    // End-to-end latency at 200 msg/s: alice's socket → broker → bob → bob's SSE.
    let n = 1_000usize;
    let sent: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; n]));
    let mut lat = Vec::with_capacity(n);
    std::thread::scope(|s| {
        let sent2 = sent.clone();
        let bsock = bsock.clone();
        let reader = s.spawn(move || {
            let mut st = UnixStream::connect(&bsock).unwrap();
            st.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            write!(
                st,
                "GET /v1/events?kinds=message HTTP/1.1\r\nHost: localhost\r\n\r\n"
            )
            .unwrap();
            let mut r = BufReader::new(st);
            let mut got = Vec::new();
            let mut line = String::new();
            while got.len() < n {
                line.clear();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(d) = line.strip_prefix("data: ") {
                    let now = Instant::now();
                    let v: Value = serde_json::from_str(d.trim()).unwrap_or(Value::Null);
                    if let Some(i) = v["body"]
                        .as_str()
                        .and_then(|b| b.strip_prefix("e2e "))
                        .and_then(|x| x.parse::<usize>().ok())
                    {
                        if let Some(t) = sent2.lock().unwrap()[i] {
                            got.push((now - t).as_secs_f64() * 1e3);
                        }
                    }
                }
            }
            got
        });
        std::thread::sleep(Duration::from_millis(300));
        let mut c = Conn::open(&asock).unwrap();
        let start = Instant::now();
        for i in 0..n {
            let due = start + Duration::from_micros(5_000 * i as u64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            sent.lock().unwrap()[i] = Some(Instant::now());
            let body = format!(r#"{{"to":"bob","message":"e2e {i}"}}"#);
            let (status, _) = c.call("POST", "/v1/send", &body);
            assert_eq!(status, 202);
        }
        lat = reader.join().unwrap();
    });
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    rows.push((
        "end-to-end DM at 200 msg/s (socket→broker→SSE)".into(),
        format!(
            "p50 {:.2} ms   p99 {:.2} ms   ({} of {n} seen)",
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            lat.len()
        ),
    ));
    rows.push((
        "idle RSS (a connected daemon, after start)".into(),
        format!(
            "{:.1} MB   (anonymous {:.1} MB; the rest is the mapped binary)",
            idle_rss as f64 / 1024.0,
            idle_anon as f64 / 1024.0
        ),
    ));
    drop(bob);
    drop(alice);

    // Start-to-health with 100,000 outbox rows: fill with the broker stopped, restart, time.
    drop(broker_proc);
    let fill = daemon(&alice_dir);
    assert!(wait_for(Duration::from_secs(20), || health(&asock).is_some()));
    let (_, _, _, _) = accept_run(&asock, fill.0.id(), 64, 100_032, false, "fill");
    let pending = health(&asock).unwrap()["outbox"]["pending"]
        .as_i64()
        .unwrap_or(0);
    drop(fill);
    let t = Instant::now();
    let again = daemon(&alice_dir);
    assert!(wait_for(Duration::from_secs(30), || health(&asock).is_some()));
    let start_ms = t.elapsed().as_secs_f64() * 1e3;
    rows.push((
        format!("start to /v1/health with {pending} pending rows"),
        format!("{start_ms:.1} ms"),
    ));
    drop(again);
    let _ = port;

    idle_phase(dir.path(), &mut rows);
    print_rows(rows);
}

fn print_rows(rows: Vec<(String, String)>) {
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        println!("{k:<w$}  {v}");
    }
}
