//! Storage failures (SPEC §5.1): a daemon dir on a full filesystem answers 507 on writes,
//! keeps serving reads, loses nothing it accepted, and takes writes again once space is back;
//! a database locked past its busy timeout answers 503 with `Retry-After`.
//!
//! The disk-full test mounts a small tmpfs (tests run as root, here and in CI); one that
//! cannot mount fails and says so. The mount is undone by a guard, whatever happens.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::cli::NO_RATE;
use crate::harness::*;

/// A tmpfs mounted at a directory; unmounted on drop (lazily if something still holds it).
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).expect("mount point");
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .output();
        match out {
            Ok(o) if o.status.success() => Tmpfs {
                path: path.to_path_buf(),
            },
            Ok(o) => panic!(
                "this test needs to mount a tmpfs (run it as root): mount failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => panic!("this test needs to mount a tmpfs (run it as root): {e}"),
        }
    }

    /// Bytes free for an unprivileged-style writer (`f_bavail`).
    fn free_bytes(&self) -> u64 {
        let c = std::ffi::CString::new(self.path.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: statvfs writes into the zeroed struct we own; the path is NUL-terminated.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
        assert_eq!(rc, 0, "statvfs {}", self.path.display());
        st.f_bavail as u64 * st.f_frsize as u64
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// The message of send `i`: 16 KiB, distinct per `i`.
fn message(i: usize) -> String {
    let head = format!("fill-{i:04}-");
    let mut m = head.clone();
    while m.len() < 16 * 1024 {
        m.push_str(&head);
    }
    m.truncate(16 * 1024);
    m
}

/// One send of message `i` with id `id`: status and JSON body.
fn send(d: &Daemon, to: &str, id: &str, i: usize) -> Sent {
    let r = d
        .request(
            "POST",
            "/v1/send",
            Some(&json!({"to": to, "message": message(i), "client_message_id": id}).to_string()),
        )
        .expect("send");
    Sent {
        status: r.status,
        body: r.json(),
    }
}

struct Sent {
    status: u16,
    body: Value,
}

/// `client_message_id` → payload of every row, read straight from `outbox.db`, plus the
/// result of `PRAGMA integrity_check`.
fn outbox_rows(daemon_dir: &Path) -> (BTreeMap<String, Vec<u8>>, String) {
    let conn = rusqlite::Connection::open_with_flags(
        daemon_dir.join("outbox.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open outbox.db");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    let mut st = conn
        .prepare("SELECT client_message_id, payload FROM outbox")
        .expect("prepare");
    let rows = st
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<Vec<u8>>>(1)?))
        })
        .expect("query")
        .map(|r| {
            let (id, p) = r.expect("row");
            (id, p.unwrap_or_default())
        })
        .collect();
    (rows, check)
}

#[test]
fn full_disk_answers_507_keeps_every_accepted_row_and_recovers_without_restart() {
    let mut w = World::new("alice,bob", &NO_RATE);
    let a = w.config_dir("alice");
    // Declared before the daemons: dropped after them, so the mount is free to go.
    let fs = Tmpfs::mount(&a.join("daemon"), "4m");
    let alice = Daemon::start(&a, &[]);
    let bob = Daemon::start(&w.config_dir("bob"), &[]);
    let bob_key = w.pubkey("bob");
    // The broker goes away: accepted rows stay pending, so the only writes are the accepts.
    w.broker.stop();

    // Leave ~400 KiB: a couple of dozen 16 KiB sends.
    let filler = fs.path.join("filler");
    let fill = fs.free_bytes().saturating_sub(400 * 1024);
    std::fs::write(&filler, vec![0u8; fill as usize]).expect("filler");

    let mut accepted: Vec<(String, usize)> = Vec::new();
    let mut refused: Option<(String, usize, Value)> = None;
    for i in 0..400 {
        let id = format!("fill-{i:04}");
        let r = send(&alice, &bob_key, &id, i);
        match r.status {
            202 => accepted.push((id, i)),
            507 => {
                refused = Some((id, i, r.body));
                break;
            }
            other => panic!("send {i}: unexpected {other} {}\n{}", r.body, alice.log()),
        }
    }
    let (refused_id, refused_i, body) = refused.expect("the disk never filled up");
    assert!(
        !accepted.is_empty(),
        "no send was accepted before the disk was full"
    );
    assert_eq!(body["error"], "insufficient_storage", "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );

    // Still full: writes keep answering 507, reads keep working.
    assert_eq!(send(&alice, &bob_key, &refused_id, refused_i).status, 507);
    let health = alice.get("/v1/health").expect("health");
    assert_eq!(health.status, 200, "{}", health.body);
    let pending = alice
        .get("/v1/outbox?status=pending&limit=500")
        .expect("outbox");
    assert_eq!(pending.status, 200, "{}", pending.body);
    let listed = pending.json()["items"].as_array().map_or(0, Vec::len);
    assert_eq!(listed, accepted.len());

    // Every 202 is in the file, whole; the refused id left nothing behind.
    let (rows, check) = outbox_rows(&alice.daemon_dir);
    assert_eq!(check, "ok");
    assert_eq!(rows.len(), accepted.len());
    for (id, i) in &accepted {
        assert_eq!(
            rows.get(id).map(Vec::as_slice),
            Some(message(*i).as_bytes()),
            "{id}"
        );
    }
    assert!(!rows.contains_key(&refused_id));
    // Two refused sends, one log line (once a minute), naming the cause.
    let log = alice.log();
    let line = "outbox accept (rolled back) failed";
    assert_eq!(log.matches(line).count(), 1, "{log}");
    assert!(log.contains("full"), "{log}");

    // Space back: the same daemon takes writes again, the refused id first (it stayed free).
    std::fs::remove_file(&filler).expect("free space");
    let again = send(&alice, &bob_key, &refused_id, refused_i);
    assert_eq!(again.status, 202, "{}", again.body);
    assert_eq!(again.body["status"], "queued", "{}", again.body);
    accepted.push((refused_id, refused_i));
    let more = send(&alice, &bob_key, "after-free", 9_999);
    assert_eq!(more.status, 202, "{}", more.body);
    accepted.push(("after-free".into(), 9_999));
    let (rows, check) = outbox_rows(&alice.daemon_dir);
    assert_eq!(check, "ok");
    assert_eq!(rows.len(), accepted.len());

    // The broker back: every accepted message reaches bob exactly once.
    let port = w.broker.port;
    let state = w.broker.state.clone();
    w.broker = Broker::start(&state, port, &NO_RATE);
    let all = wait_until(Duration::from_secs(90), || {
        bob.inbox_bodies().len() >= accepted.len()
    });
    let bodies = bob.inbox_bodies();
    assert!(
        all,
        "bob got {} of {}\n{}",
        bodies.len(),
        accepted.len(),
        alice.log()
    );
    let mut want: Vec<String> = accepted.iter().map(|(_, i)| message(*i)).collect();
    let mut got = bodies;
    want.sort();
    got.sort();
    assert_eq!(got.len(), want.len(), "duplicates or losses");
    assert!(
        got == want,
        "delivered bodies differ from the accepted ones"
    );
    drop(alice);
    drop(bob);
    drop(fs);
}

#[test]
fn database_locked_past_its_busy_timeout_answers_503_with_retry_after() {
    let w = World::new("alice,bob", &NO_RATE);
    let alice = Daemon::start(&w.config_dir("alice"), &[]);
    let bob_key = w.pubkey("bob");
    // Another process holds the write lock for longer than the daemon's 5 s busy timeout.
    let mut holder =
        rusqlite::Connection::open(alice.daemon_dir.join("outbox.db")).expect("open outbox.db");
    let tx = holder
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .expect("lock");
    let r = alice.request_with_headers(
        "POST",
        "/v1/send",
        &[("Content-Type", "application/json")],
        &json!({"to": bob_key, "message": "locked", "client_message_id": "busy-1"}).to_string(),
    );
    assert_eq!(r.status, 503, "{} {}", r.headers, r.body);
    assert!(
        r.headers.to_ascii_lowercase().contains("retry-after:"),
        "{}",
        r.headers
    );
    let body: Value = serde_json::from_str(&r.body).expect("json body");
    assert_eq!(body["error"], "storage_busy", "{body}");
    drop(tx);
    // Lock released: the same id is free and goes through.
    let ok = alice.post(
        "/v1/send",
        &json!({"to": bob_key, "message": "locked", "client_message_id": "busy-1"}),
    );
    assert_eq!(ok.status, 202, "{}", ok.body);
}

#[test]
fn inbound_push_that_cannot_be_stored_is_logged_once_a_minute_and_storing_resumes() {
    let w = World::new("alice,bob", &NO_RATE);
    let b = w.config_dir("bob");
    let fs = Tmpfs::mount(&b.join("daemon"), "4m");
    let alice = Daemon::start(&w.config_dir("alice"), &[]);
    let bob = Daemon::start(&b, &[]);
    let bob_key = w.pubkey("bob");
    // Fill bob's filesystem to the last block.
    let filler = fs.path.join("filler");
    let _ = std::fs::write(&filler, vec![0u8; fs.free_bytes() as usize]);
    for i in 0..5 {
        let r = send(&alice, &bob_key, &format!("in-{i}"), i);
        assert_eq!(r.status, 202, "{}", r.body);
    }
    // All five reach bob's daemon and fail to be stored: one log line for the lot.
    let line = "inbox: an inbound message could not be stored";
    assert!(
        wait_until(Duration::from_secs(20), || {
            alice
                .get("/v1/outbox?status=done&limit=10")
                .is_ok_and(|r| r.json()["items"].as_array().map_or(0, Vec::len) == 5)
        }),
        "{}",
        alice.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(bob.log().matches(line).count(), 1, "{}", bob.log());
    assert!(bob.inbox_bodies().is_empty());
    assert_eq!(bob.get("/v1/health").expect("health").status, 200);
    // The other route that writes (the profile file) refuses whole, too.
    let profile = json!({"summary": "full disk"});
    let r = bob.post("/v1/profile", &profile);
    assert_eq!(r.status, 507, "{}", r.body);
    assert_eq!(r.json()["error"], "insufficient_storage");
    let saved = |d: &Daemon| {
        std::fs::read_dir(&d.daemon_dir)
            .expect("daemon dir")
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().starts_with("profile-"))
    };
    assert!(!saved(&bob));
    // Space back: the next push is stored by the same daemon.
    std::fs::remove_file(&filler).expect("free space");
    assert_eq!(send(&alice, &bob_key, "in-after", 77).status, 202);
    assert!(
        wait_until(Duration::from_secs(20), || bob.inbox_bodies().len() == 1),
        "{}",
        bob.log()
    );
    assert_eq!(bob.inbox_bodies(), vec![message(77)]);
    let r = bob.post("/v1/profile", &profile);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(saved(&bob));
    drop(alice);
    drop(bob);
    drop(fs);
}

/// Kill -9 while WAL checkpoints run on the checkpointer thread (`actors/src/checkpoint.rs`):
/// every send answered 202 before the kill is in `outbox.db` after the restart, whole, and the
/// file passes SQLite's integrity check. The sends are large enough that the WAL crosses the
/// wake threshold again and again, so checkpoints are copying while the process dies.
#[test]
fn kill_9_among_background_checkpoints_loses_no_accepted_send() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    let w = World::new("alice", &NO_RATE);
    let mut alice = Daemon::start(&w.config_dir("alice"), &[]);
    let pid = alice.child.as_ref().expect("child").id();
    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("tasks")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|c| c.trim().to_string())
        .collect();
    for name in ["outbox-checkpoi", "inbox-checkpoin"] {
        assert!(threads.iter().any(|t| t == name), "{name} in {threads:?}");
    }
    let db = alice.daemon_dir.join("outbox.db");
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let first = size(&db);
    let sock = alice.socket();
    let payload = "x".repeat(3000);
    let accepted = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..4 {
            let (sock, payload, accepted, stop) = (&sock, &payload, &accepted, &stop);
            s.spawn(move || {
                for i in 0..5_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let id = format!("c{t}-{i}");
                    let body = json!({"to": "@crew", "message": payload, "client_message_id": id});
                    let sent = claudemeshd::client::request(
                        &claudemeshd::client::Endpoint::Socket(sock),
                        "POST",
                        "/v1/send",
                        Some(&body.to_string()),
                        Duration::from_secs(10),
                    );
                    match sent {
                        Ok(r) if r.status == 202 => accepted.lock().expect("lock").push(id),
                        Ok(r) => panic!("send {id}: {} {}", r.status, r.body),
                        Err(_) => break, // the daemon is gone
                    }
                }
            });
        }
        // Checkpoints have copied several WAL generations into the file, and go on.
        let copied = wait_until(Duration::from_secs(60), || {
            size(&db) > first + 12 * 1024 * 1024
        });
        alice.kill9();
        stop.store(true, Ordering::Relaxed);
        assert!(
            copied,
            "the database file grew by checkpoints: {}",
            size(&db)
        );
    });
    let accepted = accepted.into_inner().expect("lock");
    assert!(accepted.len() > 1_000, "{}", accepted.len());
    let _alice = Daemon::start(&w.config_dir("alice"), &[]);
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("outbox.db");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(check, "ok");
    let mut st = conn
        .prepare("SELECT payload_bytes FROM outbox WHERE client_message_id = ?1")
        .expect("prepare");
    let missing: Vec<&String> = accepted
        .iter()
        .filter(|id| {
            !st.query_row([id.as_str()], |r| r.get::<_, i64>(0))
                .is_ok_and(|bytes| bytes == 3000)
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} lost: {:?}",
        missing.len(),
        accepted.len(),
        &missing[..missing.len().min(5)]
    );
}
