//! The pipelined drain (issue 10 item 3): many rows of one destination in flight at once
//! (`outbox.destination_window = 32`), against a dev broker that drops sockets or refuses
//! sends, and a daemon killed mid-window.
//!
//! The guarantee under test: rows of one destination are written in FIFO order and recorded
//! done in FIFO order; a failed row sends the rows behind it again after its own retry. A
//! failure that also fails the rows behind it (a lost socket, a crash) keeps the recipient's
//! order exactly; with a deduplicating broker every message arrives once. A refusal of one
//! row while the broker queues the rows behind it (`--fail-every`) lets those rows reach the
//! recipient ahead of it — at most one window — and still once with `--dedupe`.
//!
//! The pacing against a rate-limited broker (60 messages in ~50 s) is long: it is ignored
//! here and run by `make torture`.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;

/// The window the tests pipeline with (the default is 1).
const WINDOW: usize = 32;

/// The environment of a daemon pipelining `WINDOW` rows per destination, reconnecting
/// quickly, plus `extra`.
fn pipelined_env<'a>(window: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("CLAUDEMESH_OUTBOX_DESTINATION_WINDOW", window),
        ("CLAUDEMESH_BROKER_RECONNECT_CAP_MS", "200"),
    ];
    env.extend_from_slice(extra);
    env
}

/// A daemon pipelining `WINDOW` rows per destination, reconnecting quickly.
fn pipelined(w: &World, name: &str) -> Daemon {
    let window = WINDOW.to_string();
    Daemon::start(&w.config_dir(name), &pipelined_env(&window, &[]))
}

/// Every inbox body of `d`, oldest first (all pages).
fn all_inbox_bodies(d: &Daemon) -> Vec<String> {
    let mut out = Vec::new();
    let mut before: Option<i64> = None;
    for _ in 0..1_000 {
        let path = match before {
            Some(b) => format!("/v1/inbox?limit=1000&before={b}"),
            None => "/v1/inbox?limit=1000".to_string(),
        };
        let page = d.get(&path).expect("inbox").json();
        let items = page["items"].as_array().cloned().unwrap_or_default();
        out.extend(
            items
                .iter()
                .filter_map(|i| i["body"].as_str().map(str::to_string)),
        );
        match page["next_before"].as_i64() {
            Some(b) if !items.is_empty() => before = Some(b),
            _ => break,
        }
    }
    out.reverse();
    out
}

/// A counter of `GET /v1/metrics` (`claudemeshd_<name>_total`), 0 when absent.
fn counter(d: &Daemon, name: &str) -> u64 {
    let Ok(r) = d.get("/v1/metrics") else {
        return 0;
    };
    let prefix = format!("claudemeshd_{name}_total ");
    r.body
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Posts `n` DMs `{tag}{i:05}` from `from` to `to` (client ids = bodies), in that order, all
/// accepted. One keep-alive connection with the requests pipelined (HTTP/1.1 answers them in
/// order), so that 10,000 accepts take seconds even in a debug build on a busy machine.
///
/// If the connection ends early (seen once, in a fresh-clone CI run: end-of-file after 3,422
/// of 4,000; not reproduced in 9 runs, 5 of them on a loaded machine — the daemon's 5 s
/// keep-alive expiring while the test's writer thread is descheduled is a guess), the rest is
/// posted again on a new connection from the first unanswered send: a repeated id is answered
/// `202 queued` as long as its row waits, so nothing is sent twice.
fn post_dms(from: &Daemon, to: &str, tag: &str, n: usize) -> Vec<String> {
    let bodies: Vec<String> = (0..n).map(|i| format!("{tag}{i:05}")).collect();
    let mut next = 0;
    for attempt in 0..4 {
        next = post_pipelined(from, to, &bodies, next);
        // An ended connection must not hide a panic of the worker that served it.
        let log = from.log();
        assert!(!log.contains("panicked"), "{log}");
        if next == n {
            return bodies;
        }
        eprintln!("post_dms: connection closed after {next} of {n} (attempt {attempt})");
    }
    panic!("post_dms: {next} of {n} answered\n{}", from.log());
}

/// Posts `bodies[first..]` pipelined on one connection; returns how many of `bodies` are
/// answered `202` when the connection ends (every one, or up to an end-of-file).
fn post_pipelined(from: &Daemon, to: &str, bodies: &[String], first: usize) -> usize {
    let stream = UnixStream::connect(from.socket()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    let requests: Vec<String> = bodies[first..]
        .iter()
        .map(|b| {
            let body = json!({"to": to, "message": b, "client_message_id": b}).to_string();
            format!(
                "POST /v1/send HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        })
        .collect();
    let write = std::thread::spawn(move || {
        for r in requests {
            // A closed connection ends the writes; the reader sees where it stopped.
            if writer.write_all(r.as_bytes()).is_err() {
                return;
            }
        }
    });
    let mut r = BufReader::new(stream);
    let mut answered = first;
    for (i, b) in bodies.iter().enumerate().skip(first) {
        let mut line = String::new();
        if r.read_line(&mut line).expect("status line") == 0 {
            break;
        }
        assert!(line.contains(" 202 "), "send {i} ({b}): {line}");
        let mut len = 0;
        loop {
            line.clear();
            r.read_line(&mut line).expect("header");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut buf = vec![0; len];
        r.read_exact(&mut buf).expect("body");
        answered = i + 1;
    }
    drop(r);
    write.join().expect("writer");
    answered
}

/// Where `got` first differs from `expected`, with what surrounds it.
fn first_difference(got: &[String], expected: &[String]) -> String {
    let at = got
        .iter()
        .zip(expected)
        .position(|(g, e)| g != e)
        .unwrap_or(got.len().min(expected.len()));
    let lo = at.saturating_sub(3);
    format!(
        "{} received, {} expected; first difference at {at}: got {:?}, expected {:?}",
        got.len(),
        expected.len(),
        &got[lo..(at + 5).min(got.len())],
        &expected[lo..(at + 5).min(expected.len())]
    )
}

/// `(pending + inflight, dead)` of `d`'s outbox.
fn outbox_open_and_dead(d: &Daemon) -> (i64, i64) {
    let h = d.get("/v1/health").expect("health").json();
    let o = &h["outbox"];
    (
        o["pending"].as_i64().unwrap_or(-1) + o["inflight"].as_i64().unwrap_or(-1),
        o["dead"].as_i64().unwrap_or(-1),
    )
}

/// Stops the broker, starts a pipelining `alice`, has her accept `n` DMs to bob, then brings
/// the broker back (same port, `flags`): the whole drain happens after the accepts.
///
/// Alice is stopped before the broker returns and started again only once bob is connected:
/// the broker refuses a DM to a member with no live connection (BROKER-PROTOCOL §7.1), and a
/// refused head row lets the rows pipelined behind it arrive first. Bob online first is what
/// makes the exact order a property of the daemon, not of who reconnected first.
fn accepted_while_broker_away(
    w: &mut World,
    flags: &[&str],
    tag: &str,
    n: usize,
) -> (Daemon, Daemon, Vec<String>) {
    accepted_while_broker_away_as(w, flags, tag, n, &[], &[])
}

/// [`accepted_while_broker_away`] with `alice_extra` in alice's environment (both starts) and
/// `bob_env` in bob's.
fn accepted_while_broker_away_as(
    w: &mut World,
    flags: &[&str],
    tag: &str,
    n: usize,
    alice_extra: &[(&str, &str)],
    bob_env: &[(&str, &str)],
) -> (Daemon, Daemon, Vec<String>) {
    w.broker.stop();
    let window = WINDOW.to_string();
    let alice_env = pipelined_env(&window, alice_extra);
    let mut alice = Daemon::spawn(&w.config_dir("alice"), &alice_env, &[]);
    assert!(
        wait_until(Duration::from_secs(20), || alice.get("/v1/health").is_ok()),
        "{}",
        alice.log()
    );
    let expected = post_dms(&alice, &w.pubkey("bob"), tag, n);
    assert_eq!(alice.stop(), Some(0), "{}", alice.log());
    w.restart_broker(flags);
    let bob = Daemon::start(&w.config_dir("bob"), bob_env);
    let alice = Daemon::start(&w.config_dir("alice"), &alice_env);
    (alice, bob, expected)
}

/// Waits until `to` has stored `n` messages and `from` has nothing left to send.
fn wait_delivered(from: &Daemon, to: &Daemon, n: u64, timeout: Duration) {
    let ok = wait_until(timeout, || {
        counter(to, "receives") >= n && outbox_open_and_dead(from).0 == 0
    });
    assert!(
        ok,
        "{} of {n} stored; sender outbox {:?}\n{}",
        counter(to, "receives"),
        outbox_open_and_dead(from),
        from.log()
    );
}

#[test]
fn ten_thousand_rows_to_one_peer_arrive_in_order_once_through_dropped_sockets() {
    // Every 1,500th send is queued and then its socket dropped before the ack: every row in
    // flight fails at once; the unacked ones are sent again and answered `duplicate:true`.
    let flags = ["--no-rate-limit", "--dedupe", "--drop-every", "1500"];
    let mut w = World::new("alice,bob", &flags);
    let t = Instant::now();
    let (alice, bob, expected) = accepted_while_broker_away(&mut w, &flags, "p", 10_000);
    eprintln!("10,000 accepted in {:?}", t.elapsed());
    wait_delivered(&alice, &bob, 10_000, Duration::from_secs(120));
    eprintln!("10,000 delivered in {:?}", t.elapsed());
    assert!(
        counter(&alice, "reconnects") >= 5,
        "the injected drops happened"
    );
    let got = all_inbox_bodies(&bob);
    assert!(got == expected, "{}", first_difference(&got, &expected));
    assert_eq!(counter(&bob, "receives"), 10_000);
    assert_eq!(
        counter(&bob, "receive_duplicates"),
        0,
        "the broker sent none twice"
    );
    assert_eq!(outbox_open_and_dead(&alice), (0, 0));
}

#[test]
fn refused_rows_with_queued_rows_behind_them_arrive_once_and_at_most_a_window_late() {
    // Every 101st send is refused while the ones behind it are queued by the broker: those
    // go back behind the refused row and are sent again; `--dedupe` answers them duplicate.
    let flags = ["--no-rate-limit", "--dedupe", "--fail-every", "101"];
    let mut w = World::new("alice,bob", &flags);
    let (alice, bob, expected) = accepted_while_broker_away(&mut w, &flags, "f", 2_000);
    wait_delivered(&alice, &bob, 2_000, Duration::from_secs(90));
    let got = all_inbox_bodies(&bob);
    let mut once = got.clone();
    once.sort();
    once.dedup();
    assert_eq!(once.len(), got.len(), "a message arrived twice");
    assert_eq!(once, expected, "every message arrived");
    // Displacement: no message arrives more than one window away from its place.
    for (pos, body) in got.iter().enumerate() {
        let want: usize = body[1..].parse().unwrap();
        assert!(pos.abs_diff(want) <= WINDOW, "{body} arrived at {pos}");
    }
    assert!(
        counter(&alice, "sends_behind_failure") > 0,
        "rows behind a refused one were sent again"
    );
    assert_eq!(outbox_open_and_dead(&alice), (0, 0));
}

#[test]
fn kill_9_mid_window_then_restart_delivers_every_accepted_message_in_order_once() {
    let flags = ["--no-rate-limit", "--dedupe"];
    let mut w = World::new("alice,bob", &flags);
    // Everything is accepted while the broker is away, so the kill lands mid-drain.
    let (mut alice, bob, expected) = accepted_while_broker_away(&mut w, &flags, "k", 4_000);
    assert!(
        wait_until(Duration::from_secs(30), || counter(&bob, "receives") >= 50),
        "{}",
        alice.log()
    );
    alice.kill9();
    let before = counter(&bob, "receives");
    assert!(before < 4_000, "killed after the drain ended");
    let alice2 = pipelined(&w, "alice");
    wait_delivered(&alice2, &bob, 4_000, Duration::from_secs(90));
    let got = all_inbox_bodies(&bob);
    assert!(got == expected, "{}", first_difference(&got, &expected));
    assert_eq!(
        counter(&bob, "receive_duplicates"),
        0,
        "the broker sent none twice"
    );
    assert_eq!(outbox_open_and_dead(&alice2), (0, 0));
}

/// A `rate_limit` refusal inside a pipelined window: the sends the pacer still holds back
/// are not written (cancelled, then sent again after the refused one), so the recipient gets
/// every message once and in order, without waiting for the cancelled sends' old slots.
/// Alice's mirror of the bucket is set larger than the broker's (burst 12 against 10) and her
/// 16 DMs wait while the broker is away, so that her first claim takes all of them: 12 go out
/// at once, the broker refuses the 11th and 12th (as it refuses a send that arrives a few
/// milliseconds early), and 4 are still held back by the pacer. Before, those 4 went out at
/// their old times, ahead of the refused rows, and were sent again after them (seen as 60
/// paced messages taking 82 s instead of 50, with 31 copies).
#[test]
fn a_refusal_inside_a_paced_window_cancels_the_held_back_sends_and_order_holds() {
    let mut w = World::new("alice,bob", &[]);
    let burst = [("CLAUDEMESH_BROKER_RATE_BURST", "12")];
    let (alice, bob, expected) =
        accepted_while_broker_away_as(&mut w, &[], "q", 16, &burst, &REAL_RATE);
    let t = Instant::now();
    wait_delivered(&alice, &bob, 16, Duration::from_secs(60));
    let took = t.elapsed();
    assert_eq!(all_inbox_bodies(&bob), expected, "{}", alice.log());
    assert_eq!(
        counter(&bob, "receives"),
        16,
        "no message reached bob twice"
    );
    assert_eq!(outbox_open_and_dead(&alice), (0, 0));
    // 10 at once, then one a second from the refusal on: 11 … 16 by about 6 s.
    assert!(took < Duration::from_secs(12), "{took:?}");
    assert!(
        alice.log().contains("4 held-back sends cancelled"),
        "{}",
        alice.log()
    );
}

/// Pacing against a rate-limited broker (burst 10, 1/s) is unchanged by the pipelined drain:
/// 60 messages to one peer take ~50 s and none dies. Long: run by `make torture`.
#[test]
#[ignore = "long (~50 s): run by `make torture`"]
fn sixty_messages_against_a_rate_limited_broker_take_about_fifty_seconds_and_none_dies() {
    let w = World::new("alice,bob", &[]);
    let bob = Daemon::start(&w.config_dir("bob"), &REAL_RATE);
    let window = WINDOW.to_string();
    let mut env = REAL_RATE.to_vec();
    env.push(("CLAUDEMESH_OUTBOX_DESTINATION_WINDOW", window.as_str()));
    let alice = Daemon::start(&w.config_dir("alice"), &env);
    let t = Instant::now();
    let expected = post_dms(&alice, &w.pubkey("bob"), "r", 60);
    wait_delivered(&alice, &bob, 60, Duration::from_secs(120));
    let took = t.elapsed();
    eprintln!("60 messages paced in {took:?}");
    // Burst 10 then 1/s: the 60th token is due ~50 s after the first send.
    assert!(
        took >= Duration::from_secs(45) && took <= Duration::from_secs(60),
        "{took:?}"
    );
    assert_eq!(all_inbox_bodies(&bob), expected);
    assert_eq!(outbox_open_and_dead(&alice), (0, 0));
}
