//! Crash and outage scenarios: kill -9 of the sending daemon, of the receiving daemon (head
//! broker), of the dev broker, and a frozen (SIGSTOP, half-open) broker, each under load.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::account::{problems, settle, settle_many, Sends};
use crate::harness::{Broker, Daemon, World};
use crate::{Opts, Outcome, Rng};

const DEDUPE: [&str; 2] = ["--no-rate-limit", "--dedupe"];
const PLAIN: [&str; 1] = ["--no-rate-limit"];

/// SIGKILL `pid` after `delay_ms`, from another thread.
fn kill_later(pid: u32, delay_ms: u64) {
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(delay_ms));
        // SAFETY: signalling a child process of ours.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    });
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: signalling a child process of ours.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

fn pid_of(d: &Daemon) -> u32 {
    d.child.as_ref().map_or(0, |c| c.id())
}

/// Restarts a daemon that died (reaping the old process).
fn revive(d: &mut Daemon, config: &std::path::Path) {
    d.kill9();
    *d = Daemon::start(config, &[]);
}

/// Sends in flight at once in the kill -9 runs: the outbox accepts concurrent sends in one
/// transaction (one commit for the lot), so eight at a time keeps a 10,000-message run within
/// the time budget, and a kill lands among several requests.
const PARALLEL: usize = 8;

/// `n` sends, [`PARALLEL`] at a time, with `kills` SIGKILLs of the sender, each a random
/// 0–30 ms after a randomly chosen group of sends is issued (distinct groups), so the kill
/// lands mid-request, mid-accept or mid-drain. The daemon is restarted after every group a
/// kill cut short.
fn kill9_run(o: &Opts, rng: &mut Rng, dedupe: bool, n: usize, kills: usize) -> Outcome {
    let _ = o;
    // Four receivers: the drain keeps one message in flight per destination (SPEC §5.4), so
    // four destinations drain four times as fast.
    let (w, mut alice, receivers, keys) = world4(if dedupe { &DEDUPE } else { &PLAIN }, &[]);
    let a = w.config_dir("alice");
    let groups = n.div_ceil(PARALLEL);
    let mut points: Vec<usize> = Vec::new();
    while points.len() < kills.min(groups.saturating_sub(1)) {
        let g = rng.range(1, groups as u64) as usize;
        if !points.contains(&g) {
            points.push(g);
        }
    }
    points.sort_unstable();
    let tag = if dedupe { "ks" } else { "kp" };
    let mut sends = Sends::default();
    let mut restarts = 0;
    let t0 = std::time::Instant::now();
    for g in 0..groups {
        let planned = points.binary_search(&g).is_ok();
        if planned {
            kill_later(pid_of(&alice), rng.range(0, 30));
        }
        let lo = g * PARALLEL;
        let hi = (lo + PARALLEL).min(n);
        let group: Vec<Sends> = std::thread::scope(|s| {
            let handles: Vec<_> = (lo..hi)
                .map(|i| {
                    let (alice, to) = (&alice, &keys[i % keys.len()]);
                    s.spawn(move || {
                        let mut one = Sends::default();
                        one.send(alice, to, &format!("{tag}-{i}"));
                        one
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        // A group can finish before its kill lands: wait for it, so the next planned kill
        // finds the restarted daemon, not this one.
        if planned {
            crate::harness::wait_until(Duration::from_secs(2), || alice.exited());
        }
        let cut = group.iter().any(|one| !one.maybe.is_empty());
        for one in group {
            sends.absorb(one);
        }
        if cut || alice.exited() {
            let t1 = std::time::Instant::now();
            revive(&mut alice, &a);
            eprintln!("torture: restart took {:.1} s", t1.elapsed().as_secs_f64());
            restarts += 1;
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    if alice.exited() {
        revive(&mut alice, &a);
        restarts += 1;
    }
    eprintln!(
        "torture: {} sends issued in {:.1} s",
        sends.sent,
        t0.elapsed().as_secs_f64()
    );
    let refs: Vec<&Daemon> = receivers.iter().collect();
    let mut t = settle_many(
        &sends,
        &alice,
        &refs,
        &w.broker.state,
        Duration::from_secs(240),
    );
    t.notes
        .push(format!("{} kill -9, {restarts} restarts", points.len()));
    if !dedupe {
        t.notes.push(format!(
            "plain broker: {} resent copies, {} reached the inbox",
            t.dup_wire, t.dup_inbox
        ));
    }
    let mut problems = problems(&t, dedupe);
    if restarts < points.len() {
        problems.push(format!(
            "{} kills planned, the daemon restarted {restarts} times",
            points.len()
        ));
    }
    Outcome { tally: t, problems }
}

/// 20 × kill -9 of the sending daemon during a 10,000-message run (short: 3 × in 600),
/// `--dedupe` broker: 0 lost, 0 stuck, 0 duplicates.
pub fn kill9_sender(o: &Opts, rng: &mut Rng) -> Outcome {
    let (n, kills) = if o.short { (600, 3) } else { (10_000, 20) };
    kill9_run(o, rng, true, n, kills)
}

/// The same against the plain broker: resends after a crash reach it again (counted).
pub fn plain_broker_kill9(o: &Opts, rng: &mut Rng) -> Outcome {
    let (n, kills) = if o.short { (300, 2) } else { (2000, 5) };
    kill9_run(o, rng, false, n, kills)
}

/// Four receivers and the world around them (the drain is FIFO per destination, so load
/// spread over four drains four times as fast).
fn world4(flags: &[&str], env: &[(&str, &str)]) -> (World, Daemon, Vec<Daemon>, Vec<String>) {
    let w = World::new("alice,bob,carol,dave,erin", flags);
    let alice = Daemon::start(&w.config_dir("alice"), env);
    let names = ["bob", "carol", "dave", "erin"];
    let receivers = names
        .iter()
        .map(|n| Daemon::start(&w.config_dir(n), env))
        .collect();
    let keys = names.iter().map(|n| w.pubkey(n)).collect();
    (w, alice, receivers, keys)
}

/// Sends (round robin over `to`, at most `cap`) from a second thread while `chaos` runs on
/// this one.
fn under_load(
    sender: &Daemon,
    to: &[String],
    tag: &str,
    cap: usize,
    chaos: impl FnOnce(),
) -> Sends {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            let mut sends = Sends::default();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) && i < cap {
                sends.send(sender, &to[i % to.len()], &format!("{tag}-{i}"));
                i += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            sends
        });
        chaos();
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap_or_default()
    })
}

/// A head broker that deduplicates, with short claims so a push lost in a dead socket is
/// redelivered within seconds (BROKER-PROTOCOL §7.2).
const HEAD_DEDUPE: [&str; 7] = [
    "--profile",
    "head",
    "--no-rate-limit",
    "--dedupe",
    "--claim-ms",
    "2000",
    "--sweep-ms",
];

/// 10 × the dev broker killed (SIGKILL) and restarted on its port while a client sends
/// (short: 2 ×), head profile: claims are redelivered until `client_ack`, so nothing may be
/// lost or duplicated.
pub fn broker_restarts(o: &Opts, rng: &mut Rng) -> Outcome {
    let mut flags = HEAD_DEDUPE.to_vec();
    flags.push("1000");
    // The daemon's redelivery nudge (a hello after a new link opens) brings back claims the
    // killed broker had pushed into the dead socket.
    let env = [("CLAUDEMESH_BROKER_REDELIVERY_NUDGE_MS", "3000")];
    let (mut t, _) = broker_restarts_on(o, rng, &flags, &env, "br");
    let problems = problems(&t, true);
    t.notes.push("head broker".into());
    Outcome { tally: t, problems }
}

/// The same against the seed profile, whose drain marks a row delivered when it selects it
/// (BROKER-PROTOCOL §7.2: at most once): a push the killed broker had not yet written to the
/// receiver's socket is lost by the broker. Those — the sender's row done, the broker's copy
/// marked delivered — are counted and reported; any other loss fails.
pub fn broker_restarts_seed(o: &Opts, rng: &mut Rng) -> Outcome {
    let (mut t, by_broker) = broker_restarts_on(o, rng, &DEDUPE, &[], "bs");
    let mut problems = problems(&t, true);
    if t.lost > 0 && t.lost == by_broker {
        problems.retain(|p| !p.ends_with(" lost"));
    }
    t.notes.push(format!(
        "seed broker: {by_broker} lost by its at-most-once drain (row done, copy marked delivered)"
    ));
    Outcome { tally: t, problems }
}

/// Broker kill -9 and restart under load; returns the tally and how many losses the broker's
/// own at-most-once drain explains.
fn broker_restarts_on(
    o: &Opts,
    rng: &mut Rng,
    flags: &[&str],
    env: &[(&str, &str)],
    tag: &str,
) -> (crate::account::Tally, usize) {
    let rounds = if o.short { 2 } else { 10 };
    let (mut w, alice, receivers, keys) = world4(flags, env);
    let state = w.broker.state.clone();
    let port = w.broker.port;
    let cap = if o.short { 600 } else { 3000 };
    let sends = under_load(&alice, &keys, tag, cap, || {
        for _ in 0..rounds {
            std::thread::sleep(Duration::from_millis(rng.range(300, 1500)));
            let _ = w.broker.child.kill();
            let _ = w.broker.child.wait();
            std::thread::sleep(Duration::from_millis(rng.range(0, 500)));
            w.broker = Broker::start(&state, port, flags);
        }
        std::thread::sleep(Duration::from_millis(500));
    });
    let refs: Vec<&Daemon> = receivers.iter().collect();
    let mut t = settle_many(&sends, &alice, &refs, &state, Duration::from_secs(180));
    let by_broker = t.lost_after_broker_delivered;
    t.notes.push(format!("{rounds} broker kill -9 + restart"));
    (t, by_broker)
}

/// kill -9 of the receiving daemon during inbound bursts, head profile (claims redelivered
/// until `client_ack`): bursts of 200, one kill in each (short: 2 bursts, full: 10).
pub fn kill9_receiver_head(o: &Opts, rng: &mut Rng) -> Outcome {
    let bursts = if o.short { 2 } else { 10 };
    let flags = [
        "--profile",
        "head",
        "--no-rate-limit",
        "--claim-ms",
        "2000",
        "--sweep-ms",
        "1000",
    ];
    let w = World::new("alice,bob", &flags);
    let alice = Daemon::start(&w.config_dir("alice"), &[]);
    let b = w.config_dir("bob");
    let mut bob = Daemon::start(&b, &[]);
    let to = w.pubkey("bob");
    let mut sends = Sends::default();
    for burst in 0..bursts {
        let at = rng.range(0, 200) as usize;
        for i in 0..200 {
            if i == at {
                kill_later(pid_of(&bob), rng.range(0, 50));
            }
            sends.send(&alice, &to, &format!("kr-{burst}-{i}"));
        }
        std::thread::sleep(Duration::from_millis(100));
        revive(&mut bob, &b);
    }
    let mut t = settle(
        &sends,
        &alice,
        &bob,
        &w.broker.state,
        Duration::from_secs(120),
    );
    let quarantined = std::fs::read_dir(&bob.daemon_dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
                .count()
        })
        .unwrap_or(0);
    t.notes.push(format!(
        "{bursts} receiver kill -9 (head broker); quarantined files: {quarantined}"
    ));
    // The head broker redelivers the same message id, which the receiver deduplicates: no
    // duplicate may reach the inbox (the wire count is the broker's own redelivery).
    let mut problems = problems(&t, false);
    if t.dup_inbox > 0 {
        problems.push(format!("{} duplicated in the inbox", t.dup_inbox));
    }
    if quarantined > 0 {
        problems.push(format!(
            "{quarantined} database files quarantined after a kill -9"
        ));
    }
    Outcome { tally: t, problems }
}

/// SIGSTOP of the broker under load (a half-open link the watchdog must detect), then
/// SIGCONT: 1 round (short) or 3.
pub fn broker_sigstop(o: &Opts, rng: &mut Rng) -> Outcome {
    let rounds = if o.short { 1 } else { 3 };
    let fast = [
        ("CLAUDEMESH_BROKER_PING_INTERVAL_MS", "200"),
        ("CLAUDEMESH_BROKER_STALE_AFTER_MS", "800"),
        ("CLAUDEMESH_BROKER_REDELIVERY_NUDGE_MS", "3000"),
    ];
    // Head profile: when the frozen broker wakes it writes the pushes it had claimed into the
    // sockets the receivers' watchdogs closed; a seed broker has already marked those
    // delivered (at most once, BROKER-PROTOCOL §7.2), a head broker redelivers them.
    let mut flags = HEAD_DEDUPE.to_vec();
    flags.push("1000");
    let (w, alice, receivers, keys) = world4(&flags, &fast);
    let pid = w.broker.child.id();
    let cap = if o.short { 400 } else { 1500 };
    let sends = under_load(&alice, &keys, "ss", cap, || {
        for _ in 0..rounds {
            std::thread::sleep(Duration::from_millis(rng.range(300, 1000)));
            signal(pid, libc::SIGSTOP);
            std::thread::sleep(Duration::from_millis(rng.range(2000, 4000)));
            signal(pid, libc::SIGCONT);
        }
        std::thread::sleep(Duration::from_millis(500));
    });
    let refs: Vec<&Daemon> = receivers.iter().collect();
    let mut t = settle_many(
        &sends,
        &alice,
        &refs,
        &w.broker.state,
        Duration::from_secs(180),
    );
    let stale = alice.log().matches("stale").count();
    t.notes.push(format!(
        "{rounds} SIGSTOP 2-4 s (head broker); watchdog lines: {stale}"
    ));
    let mut problems = problems(&t, true);
    if stale == 0 {
        problems.push("the watchdog never noticed the frozen broker".into());
    }
    Outcome { tally: t, problems }
}
