//! Storage and hostile-client scenarios: a full disk, corrupt databases, one id sent 1,000
//! times at once, slow clients on both listeners, and schemathesis against a live daemon.

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use claudemeshd::client::{self, Endpoint};
use serde_json::json;

use crate::account::{problems, settle, Sends, Tally};
use crate::harness::{Daemon, World};
use crate::{Opts, Outcome, Rng};

const DEDUPE: [&str; 2] = ["--no-rate-limit", "--dedupe"];

/// A tmpfs mounted at a directory; unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let o = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !o.status.success() {
            return Err(format!(
                "needs root to mount a tmpfs: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
        Ok(Tmpfs(path.to_path_buf()))
    }

    fn free_bytes(&self) -> u64 {
        let c = std::ffi::CString::new(self.0.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: statvfs fills the zeroed struct we own; the path is NUL-terminated.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        unsafe { libc::statvfs(c.as_ptr(), &mut st) };
        st.f_bavail as u64 * st.f_frsize as u64
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// A 16 KiB message whose client_message_id is `id`.
fn send_big(sends: &mut Sends, d: &Daemon, to: &str, id: &str) -> Option<u16> {
    sends.sent += 1;
    let mut message = String::with_capacity(16 * 1024);
    while message.len() < 16 * 1024 {
        message.push_str(id);
        message.push(' ');
    }
    let body = json!({"to": to, "message": message, "client_message_id": id}).to_string();
    match d.request("POST", "/v1/send", Some(&body)) {
        Ok(r) if r.status == 202 || r.status == 200 => {
            sends.accepted.push(id.to_string());
            Some(r.status)
        }
        Ok(r) => {
            *sends.other.entry(r.status).or_default() += 1;
            Some(r.status)
        }
        Err(_) => {
            sends.maybe.push(id.to_string());
            None
        }
    }
}

/// The sender's daemon dir on a small tmpfs, the broker up (drain writes too): sends fill it
/// until 507, writes keep answering 507 (or 503) and reads 200 while full; space comes back
/// and sends succeed again without a restart; every accepted message is delivered once.
pub fn disk_full(o: &Opts, _rng: &mut Rng) -> Outcome {
    let _ = o;
    let w = World::new("alice,bob", &DEDUPE);
    let a = w.config_dir("alice");
    let fs = match Tmpfs::mount(&a.join("daemon"), "4m") {
        Ok(fs) => fs,
        Err(e) => {
            return Outcome {
                tally: Tally::default(),
                problems: vec![e],
            }
        }
    };
    let alice = Daemon::start(&a, &[]);
    let bob = Daemon::start(&w.config_dir("bob"), &[]);
    let to = w.pubkey("bob");
    let filler = fs.0.join("filler");
    let fill = fs.free_bytes().saturating_sub(400 * 1024);
    let mut problems_seen = Vec::new();
    if let Err(e) = std::fs::write(&filler, vec![0u8; fill as usize]) {
        problems_seen.push(format!("filler: {e}"));
    }
    let mut sends = Sends::default();
    let mut first_507 = None;
    for i in 0..600 {
        let st = send_big(&mut sends, &alice, &to, &format!("df-{i}"));
        if st == Some(507) && first_507.is_none() {
            first_507 = Some(i);
        }
        if first_507.is_some_and(|f| i >= f + 20) {
            break;
        }
    }
    let reads_ok = alice.get("/v1/health").is_ok_and(|r| r.status == 200)
        && alice
            .get("/v1/outbox?limit=10")
            .is_ok_and(|r| r.status == 200);
    let _ = std::fs::remove_file(&filler);
    let mut after = 0;
    for i in 0..20 {
        if send_big(&mut sends, &alice, &to, &format!("df-after-{i}")) == Some(202) {
            after += 1;
        }
    }
    let mut t = settle(
        &sends,
        &alice,
        &bob,
        &w.broker.state,
        Duration::from_secs(60),
    );
    t.bad_5xx = sends.bad_5xx(&[507, 503]);
    let refused: usize = sends.other.get(&507).copied().unwrap_or(0);
    t.notes.push(format!(
        "first 507 at send {}; {refused} × 507; {after}/20 accepted after space came back",
        first_507.map_or("-".into(), |f| f.to_string())
    ));
    let mut p = problems(&t, true);
    p.extend(problems_seen);
    if first_507.is_none() {
        p.push("the disk never filled".into());
    }
    if !reads_ok {
        p.push("reads failed while full".into());
    }
    if after != 20 {
        p.push(format!(
            "only {after}/20 sends accepted after space came back"
        ));
    }
    drop(alice);
    drop(bob);
    drop(fs);
    Outcome {
        tally: t,
        problems: p,
    }
}

/// Scribbles over the first page of a stopped daemon's database (a corrupt header).
fn corrupt(db: &Path) -> Vec<u8> {
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let mut bytes = std::fs::read(db).unwrap_or_default();
    let n = bytes.len().min(4096);
    for (i, b) in bytes[..n].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37) ^ 0x5a;
    }
    std::fs::write(db, &bytes).expect("write corrupt db");
    bytes
}

/// A corrupt `outbox.db`: the daemon refuses to start (exit 5) and leaves the file untouched.
pub fn corrupt_outbox(_o: &Opts, _rng: &mut Rng) -> Outcome {
    let w = World::new("alice,bob", &DEDUPE);
    let a = w.config_dir("alice");
    let mut alice = Daemon::start(&a, &[]);
    let bob = Daemon::start(&w.config_dir("bob"), &[]);
    let to = w.pubkey("bob");
    let mut sends = Sends::default();
    for i in 0..20 {
        sends.send(&alice, &to, &format!("co-{i}"));
    }
    let mut t = settle(
        &sends,
        &alice,
        &bob,
        &w.broker.state,
        Duration::from_secs(30),
    );
    alice.stop();
    let db = alice.daemon_dir.join("outbox.db");
    let before = corrupt(&db);
    let mut again = Daemon::spawn(&a, &[], &[]);
    let code = again.wait_exit(Duration::from_secs(20));
    let untouched = std::fs::read(&db).is_ok_and(|b| b == before);
    let mut p = problems(&t, true);
    if code != Some(5) {
        p.push(format!("exit code {code:?}, not 5"));
    }
    if !untouched {
        p.push("outbox.db was changed".into());
    }
    t.notes.push(format!(
        "restart exit {code:?}; file untouched: {untouched}"
    ));
    Outcome {
        tally: t,
        problems: p,
    }
}

/// A corrupt `inbox.db`: quarantined beside, a fresh one opened, the daemon up and receiving.
pub fn corrupt_inbox(_o: &Opts, _rng: &mut Rng) -> Outcome {
    let w = World::new("alice,bob", &DEDUPE);
    let alice = Daemon::start(&w.config_dir("alice"), &[]);
    let b = w.config_dir("bob");
    let mut bob = Daemon::start(&b, &[]);
    let to = w.pubkey("bob");
    let mut first = Sends::default();
    for i in 0..20 {
        first.send(&alice, &to, &format!("ci-a-{i}"));
    }
    let _ = settle(
        &first,
        &alice,
        &bob,
        &w.broker.state,
        Duration::from_secs(30),
    );
    bob.stop();
    corrupt(&bob.daemon_dir.join("inbox.db"));
    let bob = Daemon::spawn(&b, &[], &[]);
    let up = crate::harness::wait_until(Duration::from_secs(20), || {
        bob.get("/v1/health").is_ok_and(|r| r.status == 200)
    });
    let quarantined = std::fs::read_dir(&bob.daemon_dir)
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with("inbox.db.corrupt-")
                })
                .count()
        })
        .unwrap_or(0);
    let mut sends = Sends::default();
    for i in 0..50 {
        sends.send(&alice, &to, &format!("ci-b-{i}"));
    }
    let mut t = settle(
        &sends,
        &alice,
        &bob,
        &w.broker.state,
        Duration::from_secs(60),
    );
    let mut p = problems(&t, true);
    if !up {
        p.push("the daemon did not come up".into());
    }
    if quarantined != 1 {
        p.push(format!("{quarantined} quarantined files, not 1"));
    }
    t.notes
        .push(format!("up: {up}; quarantined files: {quarantined}"));
    Outcome {
        tally: t,
        problems: p,
    }
}

/// 1,000 sends of one id from 50 threads at once: every answer 202 or 200, one outbox row,
/// one delivery.
pub fn same_id_concurrent(_o: &Opts, _rng: &mut Rng) -> Outcome {
    let w = World::new("alice,bob", &DEDUPE);
    let alice = Daemon::start(&w.config_dir("alice"), &[]);
    let bob = Daemon::start(&w.config_dir("bob"), &[]);
    let to = w.pubkey("bob");
    let id = "same-id-0001";
    let ok = AtomicUsize::new(0);
    let statuses = std::sync::Mutex::new(std::collections::BTreeMap::<u16, usize>::new());
    let go = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..50 {
            s.spawn(|| {
                while !go.load(Ordering::Acquire) {
                    std::hint::spin_loop();
                }
                for _ in 0..20 {
                    let body = json!({"to": to, "message": id, "client_message_id": id});
                    let st = alice
                        .request("POST", "/v1/send", Some(&body.to_string()))
                        .map_or(0, |r| r.status);
                    if st == 202 || st == 200 {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    *statuses.lock().unwrap().entry(st).or_default() += 1;
                }
            });
        }
        go.store(true, Ordering::Release);
    });
    let rows = alice
        .get("/v1/outbox?limit=500")
        .map(|r| {
            r.json()["items"].as_array().map_or(0, |a| {
                a.iter().filter(|x| x["client_message_id"] == id).count()
            })
        })
        .unwrap_or(0);
    let mut sends = Sends {
        sent: 1000,
        accepted: vec![id.to_string()],
        ..Sends::default()
    };
    for (st, n) in statuses.lock().unwrap().iter() {
        if *st != 202 && *st != 200 {
            sends.other.insert(*st, *n);
        }
    }
    let mut t = settle(
        &sends,
        &alice,
        &bob,
        &w.broker.state,
        Duration::from_secs(30),
    );
    t.accepted = ok.load(Ordering::Relaxed);
    let st = statuses.lock().unwrap().clone();
    t.notes
        .push(format!("answers {st:?}; outbox rows with the id: {rows}"));
    let mut p = problems(&t, true);
    if rows != 1 {
        p.push(format!("{rows} outbox rows, not 1"));
    }
    if t.accepted != 1000 {
        p.push(format!("{} of 1000 answered 202/200", t.accepted));
    }
    Outcome {
        tally: t,
        problems: p,
    }
}

/// Raises this process's soft open-file limit to its hard limit.
fn raise_nofile() {
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// Slow clients on both listeners — idle connections (2,000; short: 600), slowloris heads
/// and trickled bodies, reopened whenever the daemon closes them — while a normal client
/// sends over the socket and over TCP: every one of its sends must succeed.
pub fn slow_clients(o: &Opts, _rng: &mut Rng) -> Outcome {
    raise_nofile();
    let (idle_tcp, idle_unix, normal) = if o.short {
        (450, 150, 100)
    } else {
        (1600, 400, 400)
    };
    let w = World::new("alice,bob", &DEDUPE);
    let alice = Daemon::start(&w.config_dir("alice"), &[]);
    let bob = Daemon::start(&w.config_dir("bob"), &[]);
    let to = w.pubkey("bob");
    let port = alice.tcp_port();
    let token = alice.token();
    let sock = alice.socket();
    let stop = AtomicBool::new(false);
    let opened = AtomicUsize::new(0);
    let mut sends = Sends::default();
    let mut slowest = Duration::ZERO;
    let mut failures = Vec::new();
    std::thread::scope(|s| {
        // Idle connections: opened once, never written to.
        s.spawn(|| {
            let mut held: Vec<Box<dyn std::any::Any>> = Vec::new();
            for _ in 0..idle_tcp {
                if let Ok(c) = TcpStream::connect(("127.0.0.1", port)) {
                    held.push(Box::new(c));
                }
            }
            for _ in 0..idle_unix {
                if let Ok(c) = UnixStream::connect(&sock) {
                    held.push(Box::new(c));
                }
            }
            opened.store(held.len(), Ordering::Relaxed);
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        // Slowloris heads and trickled bodies, 20 of each per listener, reopened when closed.
        for kind in 0..4 {
            let (stop, sock) = (&stop, &sock);
            s.spawn(move || {
                let head = |body: bool| {
                    if body {
                        "POST /v1/send HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n{\"to\":"
                    } else {
                        "GET /v1/health HTTP/1.1\r\nHost: localhost\r\nX-Slow: "
                    }
                };
                let open = || -> Option<Box<dyn Write>> {
                    let body = kind % 2 == 1;
                    let mut c: Box<dyn Write> = if kind < 2 {
                        Box::new(TcpStream::connect(("127.0.0.1", port)).ok()?)
                    } else {
                        Box::new(UnixStream::connect(sock).ok()?)
                    };
                    c.write_all(head(body).as_bytes()).ok()?;
                    Some(c)
                };
                let mut conns: Vec<Option<Box<dyn Write>>> = (0..20).map(|_| open()).collect();
                while !stop.load(Ordering::Relaxed) {
                    for c in conns.iter_mut() {
                        let alive = c.as_mut().is_some_and(|w| w.write_all(b"a").is_ok());
                        if !alive {
                            *c = open();
                        }
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            });
        }
        std::thread::sleep(Duration::from_secs(2));
        for i in 0..normal {
            let id = format!("sc-{i}");
            let body = json!({"to": to, "message": id, "client_message_id": id}).to_string();
            let ep = if i % 2 == 0 {
                Endpoint::Socket(&sock)
            } else {
                Endpoint::Tcp {
                    port,
                    token: &token,
                }
            };
            let t0 = Instant::now();
            sends.sent += 1;
            match client::request(
                &ep,
                "POST",
                "/v1/send",
                Some(&body),
                Duration::from_secs(10),
            ) {
                Ok(r) if r.status == 202 || r.status == 200 => sends.accepted.push(id),
                Ok(r) => {
                    *sends.other.entry(r.status).or_default() += 1;
                    failures.push(format!("{id}: {}", r.status));
                }
                Err(e) => failures.push(format!("{id}: {e}")),
            }
            slowest = slowest.max(t0.elapsed());
        }
        stop.store(true, Ordering::Relaxed);
    });
    let mut t = settle(
        &sends,
        &alice,
        &bob,
        &w.broker.state,
        Duration::from_secs(60),
    );
    t.notes.push(format!(
        "{} idle conns held; slowest normal send {} ms",
        opened.load(Ordering::Relaxed),
        slowest.as_millis()
    ));
    let mut p = problems(&t, true);
    if !failures.is_empty() {
        p.push(format!(
            "{} normal sends failed (first: {})",
            failures.len(),
            failures[0]
        ));
    }
    if alice.exited() {
        p.push("the daemon died".into());
    }
    Outcome {
        tally: t,
        problems: p,
    }
}

/// schemathesis (pinned, its venv made by scripts/st-venv.sh) against a live daemon over TCP
/// with the token: no 5xx, every response as documented (scripts/schemathesis.sh).
pub fn schemathesis(o: &Opts, _rng: &mut Rng) -> Outcome {
    let secs = if o.short { "30" } else { "120" };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join("scripts/schemathesis.sh"))
        .arg(secs)
        .env("BIN", crate::harness::BIN)
        .env("ST_SEED", (o.seed % 1_000_000).to_string())
        .output();
    let mut t = Tally::default();
    let mut p = Vec::new();
    match out {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            let cases = text
                .lines()
                .find(|l| l.contains(" generated,"))
                .map(|l| l.trim().to_string())
                .unwrap_or_default();
            t.notes.push(cases);
            if !out.status.success() {
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                eprintln!("{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
                eprintln!("{}", String::from_utf8_lossy(&out.stderr));
                p.push(format!("schemathesis exit {:?}", out.status.code()));
            }
        }
        Err(e) => p.push(format!("scripts/schemathesis.sh: {e}")),
    }
    Outcome {
        tally: t,
        problems: p,
    }
}
