//! The reaper, rehydration (SIGHUP, restart, a reused pid) and the CLI.

use std::time::Duration;

use claudemesh_actors::crypto::MemberKeys;
use claudemesh_actors::inbox::store::{self as inbox_store, RecipientKind};
use claudemeshd::client::{self, Endpoint};
use serde_json::{json, Value};

use super::*;

fn session_ids(d: &Daemon) -> Vec<String> {
    d.get("/v1/sessions")
        .ok()
        .map(|r| {
            r.json()["sessions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["session_id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `(session_id, reason)` of every journaled `session_left`, replayed from the journal.
fn departures(d: &Daemon) -> Vec<(String, String)> {
    let sock_path = d.socket();
    let mut stream = client::open_stream(
        &Endpoint::Socket(&sock_path),
        "/v1/events?last_event_id=0&kinds=session_left",
        &[],
        Duration::from_millis(500),
    )
    .expect("events");
    let mut out = Vec::new();
    // The replay comes at once; the read times out when it is over.
    while let Ok(Some(ev)) = client::next_event(&mut *stream.body) {
        let data: Value = serde_json::from_str(&ev.data).unwrap_or(Value::Null);
        if ev.event == "session_left" {
            out.push((
                data["session_id"].as_str().unwrap_or("").to_string(),
                data["reason"].as_str().unwrap_or("").to_string(),
            ));
        }
    }
    out
}

#[test]
fn reaper_drops_a_killed_process_and_a_restart_rehydrates_only_the_same_process() {
    let w = World::new("alice", &["--no-rate-limit"]);
    let config = w.config_dir("alice");
    let mut alice = Daemon::start(&config, &[]);
    let mesh = first_slug(&w, "alice");
    let member = w.pubkey("alice");
    let mut doomed = SessionProcess::spawn();
    let lasting = SessionProcess::spawn();
    let keys = MemberKeys::generate();
    let (t1, t2) = (new_token(), new_token());
    for body in [
        registration(&t1, "doomed", &mesh, doomed.pid(), None),
        registration(&t2, "lasting", &mesh, lasting.pid(), Some((&keys, &member))),
    ] {
        let r = sock(
            &alice,
            "POST",
            "/v1/sessions/register",
            &[],
            &body.to_string(),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
    doomed.kill();
    // The reaper sweeps every 5 s.
    assert!(
        wait_until(Duration::from_secs(20), || session_ids(&alice)
            == ["lasting"]),
        "{:?}",
        session_ids(&alice)
    );
    assert!(wait_until(Duration::from_secs(20), || departures(&alice)
        .contains(&(
            "doomed".to_string(),
            "process_exited".to_string()
        ))));

    // SIGHUP re-attaches the engine: the registry is rebuilt from the table.
    let pid = alice.child.as_ref().expect("child").id() as libc::pid_t;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    assert!(wait_until(Duration::from_secs(15), || alice
        .log()
        .lines()
        .any(
            |l| l.contains("session lasting") && l.contains("rehydrated")
        )));
    assert!(
        wait_until(Duration::from_secs(15), || session_ids(&alice)
            == ["lasting"]),
        "{}",
        alice.log()
    );

    // Restart: the live session comes back with its keypair, its token still works.
    assert_eq!(alice.stop(), Some(0));
    let mut alice = Daemon::start(&config, &[]);
    assert_eq!(session_ids(&alice), ["lasting"]);
    let r = sock(
        &alice,
        "GET",
        "/v1/sessions/me",
        &[&session_header(&t2)],
        "",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(json_of(&r)["session"]["session_pubkey"], keys.pubkey_hex());
    // The seed profile does not serve `session_hello`: pending until it says so.
    assert!(["pending", "unsupported"].contains(
        &json_of(&r)["session"]["presence_status"]
            .as_str()
            .unwrap_or("")
    ));

    // While the daemon is down the pid is "reused": its start time no longer matches.
    assert_eq!(alice.stop(), Some(0));
    let db = rusqlite::Connection::open(config.join("daemon/outbox.db")).expect("open outbox");
    let n = db
        .execute(
            "UPDATE sessions SET process_start = process_start + 1 WHERE session_id = 'lasting'",
            [],
        )
        .expect("update");
    assert_eq!(n, 1);
    drop(db);
    let alice = Daemon::start(&config, &[]);
    assert!(session_ids(&alice).is_empty());
    let r = sock(
        &alice,
        "GET",
        "/v1/sessions/me",
        &[&session_header(&t2)],
        "",
    );
    assert_eq!(r.status, 401);
    assert!(wait_until(Duration::from_secs(20), || departures(&alice)
        .contains(&("lasting".to_string(), "pid_reused".to_string()))));
    let db = rusqlite::Connection::open(config.join("daemon/outbox.db")).expect("open outbox");
    assert!(wait_until(Duration::from_secs(20), || db
        .query_row("SELECT count(*) FROM sessions", [], |r| r.get::<_, i64>(0))
        .is_ok_and(|n| n == 0)));
    drop(lasting);
}

#[test]
fn cli_lists_sessions_and_reads_unread_messages_marking_them_seen() {
    let w = World::new("alice", &["--no-rate-limit"]);
    let config = w.config_dir("alice");
    let alice = Daemon::start(&config, &[]);
    let mesh = first_slug(&w, "alice");
    let p = SessionProcess::spawn();
    let keys = MemberKeys::generate();
    let token = new_token();
    let body = registration(
        &token,
        "cli-s1",
        &mesh,
        p.pid(),
        Some((&keys, &w.pubkey("alice"))),
    );
    let r = sock(
        &alice,
        "POST",
        "/v1/sessions/register",
        &[],
        &body.to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.body);

    let human = crate::cli::cli(&config, &["sessions"]);
    human.expect(0);
    let lines: Vec<&str> = human.stdout.lines().collect();
    assert!(lines[0].starts_with("SESSION"), "{}", human.stdout);
    assert!(lines[1].starts_with("cli-s1"), "{}", human.stdout);
    assert!(
        lines[1].contains("agent-cli-s1")
            && (lines[1].contains("pending") || lines[1].contains("unsupported")),
        "{}",
        human.stdout
    );
    assert!(lines[1].contains(&keys.pubkey_hex()[..16]));
    assert!(
        !human.stdout.contains(&keys.pubkey_hex()[..17]),
        "pubkey shortened"
    );
    let json = crate::cli::cli(&config, &["sessions", "--json"]);
    json.expect(0);
    assert_eq!(json.json()["sessions"][0]["session_id"], "cli-s1");
    assert!(!json.stdout.contains(&token) && !json.stdout.contains(&keys.secret_hex()));

    {
        let mut conn =
            inbox_store::open(&alice.daemon_dir.join("inbox.db"), false).expect("open inbox");
        for b in ["first", "second"] {
            put_message(&mut conn, &mesh, b, (RecipientKind::Member, "m"));
        }
    }
    let unread = crate::cli::cli(&config, &["inbox", "--unread", "--mark-seen"]);
    unread.expect(0);
    assert!(unread.stdout.contains("bob: first") && unread.stdout.contains("bob: second"));
    assert!(
        unread.stdout.contains("(marked 2 seen)"),
        "{}",
        unread.stdout
    );
    let again = crate::cli::cli(&config, &["inbox", "--unread", "--json"]);
    again.expect(0);
    assert_eq!(again.json()["items"], json!([]));
    let all = crate::cli::cli(&config, &["inbox", "--json"]);
    assert_eq!(all.json()["items"].as_array().map(Vec::len), Some(2));
}
