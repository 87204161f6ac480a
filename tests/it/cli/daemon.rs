//! Commands against running daemons: human and `--json` output, exit codes, `--tcp`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

use super::{cli, NO_RATE};
use crate::harness::*;

#[test]
fn status_version_peers_profile_and_tcp_against_a_running_daemon() {
    let w = World::new("alice,bob", &NO_RATE);
    let a = w.config_dir("alice");
    let b = w.config_dir("bob");
    let _alice = Daemon::start(&a, &[]);
    let bob = Daemon::start(&b, &[]);

    let s = cli(&a, &["status"]);
    s.expect(0);
    assert!(s.stdout.starts_with("running: pid "), "{}", s.stdout);
    assert!(s.stdout.contains("mesh dev-mesh: open"), "{}", s.stdout);
    assert!(
        s.stdout.contains("outbox: 0 pending, 0 inflight, 0 dead"),
        "{}",
        s.stdout
    );
    let sj = cli(&a, &["status", "--json"]);
    sj.expect(0);
    let h = sj.json();
    assert_eq!(h["running"], true);
    assert!(h["pid"].as_u64().is_some() && h["tcp"].as_str().is_some());
    assert_eq!(h["meshes"][0]["broker_status"], "open");
    assert_eq!(h["outbox"]["oldest_pending_age_s"], Value::Null);

    let v = cli(&a, &["version", "--json"]);
    v.expect(0);
    assert_eq!(v.json()["daemon_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v.json()["versions_differ"], false);
    assert!(v.stderr.is_empty(), "no warning when equal: {}", v.stderr);
    assert!(cli(&a, &["version"]).stdout.contains("daemon 0."));

    // Alice's list learns of bob through a peer_joined refresh: wait for it.
    let bob_key = w.pubkey("bob");
    assert!(wait_until(Duration::from_secs(10), || {
        cli(&a, &["peers", "--json"]).json()["peers"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|x| x["pubkey"] == bob_key))
    }));
    let p = cli(&a, &["peers"]);
    p.expect(0);
    assert!(
        p.stdout.starts_with("MEMBER  PRESENCE  ROLE"),
        "{}",
        p.stdout
    );
    assert!(
        p.stdout
            .lines()
            .any(|l| l.starts_with("bob ") && l.contains(&bob_key[..16])),
        "{}",
        p.stdout
    );

    let pr = cli(
        &a,
        &["profile", "--summary", "testing", "--status", "working"],
    );
    pr.expect(0);
    assert!(
        pr.stdout.contains("profile set: summary, status"),
        "{}",
        pr.stdout
    );
    let prj = cli(&a, &["profile", "--visible", "true", "--json"]).json();
    assert_eq!(prj["applied"], json!(["visible"]));

    // --tcp: the same API over 127.0.0.1:<tcp.port> with the token.
    let t = cli(&a, &["status", "--tcp", "--json"]);
    t.expect(0);
    assert_eq!(t.json()["running"], true);
    let tcp_send = cli(&a, &["--tcp", "send", "bob", "over tcp", "--json"]);
    tcp_send.expect(0);
    assert_eq!(tcp_send.json()["via"], "daemon");
    assert!(wait_until(Duration::from_secs(10), || bob
        .inbox_bodies()
        .contains(&"over tcp".to_string())));
}

#[test]
fn send_inbox_and_outbox_against_running_daemons_in_human_and_json() {
    let w = World::new("alice,bob", &NO_RATE);
    let a = w.config_dir("alice");
    let b = w.config_dir("bob");
    let _alice = Daemon::start(&a, &[]);
    let bob = Daemon::start(&b, &[]);

    // send: human, json, idempotent retry, refusals.
    let sent = cli(
        &a,
        &[
            "send",
            "bob",
            "hello from the cli",
            "--idempotency-key",
            "k-1",
        ],
    );
    sent.expect(0);
    assert_eq!(sent.stdout.trim(), "queued k-1");
    let meta = cli(
        &a,
        &[
            "send",
            "bob",
            "second",
            "--meta",
            r#"{"n":2}"#,
            "--priority",
            "now",
            "--json",
        ],
    );
    meta.expect(0);
    assert_eq!(meta.json()["status"], "queued");
    assert_eq!(meta.json()["via"], "daemon");
    assert!(wait_until(Duration::from_secs(10), || bob
        .inbox_bodies()
        .len()
        == 2));
    let again = cli(
        &a,
        &[
            "send",
            "bob",
            "hello from the cli",
            "--idempotency-key",
            "k-1",
            "--json",
        ],
    );
    again.expect(0);
    assert_eq!(again.json()["duplicate"], true);
    let conflict = cli(
        &a,
        &["send", "bob", "other text", "--idempotency-key", "k-1"],
    );
    conflict.expect(1);
    assert!(
        conflict.one_line_error().contains("idempotency_key_reused"),
        "{}",
        conflict.stderr
    );
    let unknown = cli(&a, &["send", "nobody", "hi"]);
    unknown.expect(2);
    // The refusal says who is online and how to reach an offline member.
    let line = unknown.one_line_error();
    assert!(
        line.contains("no online peer is called \"nobody\""),
        "{line}"
    );
    assert!(line.contains("online now: bob"), "{line}");
    assert!(line.contains("64-hex pubkey"), "{line}");
    let unknown = cli(&a, &["send", "nobody", "hi", "--json"]);
    unknown.expect(2);
    assert_eq!(unknown.json()["error"], "unknown_peer");
    assert_eq!(unknown.json()["online"], json!(["bob"]));
    let bad_mesh = cli(&a, &["send", "bob", "hi", "--mesh", "nope", "--json"]);
    bad_mesh.expect(2);
    assert_eq!(bad_mesh.json()["error"], "unknown_mesh");
    assert_eq!(bad_mesh.json()["status"], 400);

    // inbox on bob.
    let inbox = cli(&b, &["inbox"]);
    inbox.expect(0);
    let lines: Vec<&str> = inbox.stdout.lines().collect();
    assert!(
        lines[0].ends_with("alice: hello from the cli"),
        "{}",
        inbox.stdout
    );
    assert!(lines[1].ends_with("alice: second"), "{}", inbox.stdout);
    let ij = cli(&b, &["inbox", "--limit", "1", "--json"]).json();
    assert_eq!(ij["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(ij["items"][0]["body"], "second");
    let next = ij["next_before"]
        .as_i64()
        .expect("a second page")
        .to_string();
    let older = cli(&b, &["inbox", "--before", &next, "--json"]).json();
    assert_eq!(older["items"][0]["body"], "hello from the cli");
    let since = cli(&b, &["inbox", "--since", "2999-01-01T00:00:00Z"]);
    assert_eq!(since.stdout.trim(), "no messages");

    // outbox: list by status, requeue a pending row, refuse a done one.
    assert!(wait_until(Duration::from_secs(10), || {
        cli(&a, &["outbox", "list", "--done", "--json"]).json()["items"]
            .as_array()
            .is_some_and(|i| i.len() == 2)
    }));
    let done = cli(&a, &["outbox", "list", "--done"]);
    done.expect(0);
    assert!(done.stdout.starts_with("ID"), "{}", done.stdout);
    assert!(
        done.stdout.contains("k-1") && done.stdout.contains("broker id"),
        "{}",
        done.stdout
    );
    // Not a curve point: the row can never be encrypted and goes dead at once.
    let bad_key = "ab".repeat(32);
    cli(
        &a,
        &[
            "send",
            &bad_key,
            "undeliverable",
            "--idempotency-key",
            "k-off",
        ],
    )
    .expect(0);
    let mut failed = Value::Null;
    assert!(wait_until(Duration::from_secs(10), || {
        failed = cli(
            &a,
            &["outbox", "list", "--failed", "--limit", "5", "--json"],
        )
        .json();
        failed["items"].as_array().is_some_and(|i| !i.is_empty())
    }));
    let row = failed["items"]
        .as_array()
        .and_then(|i| i.iter().find(|r| r["client_message_id"] == "k-off"))
        .expect("dead row")
        .clone();
    let id = row["id"].to_string();
    let rq = cli(
        &a,
        &["outbox", "requeue", &id, "--new-client-id", "k-off-2"],
    );
    rq.expect(0);
    assert!(
        rq.stdout.contains(&format!("row {id} aborted")),
        "{}",
        rq.stdout
    );
    assert!(rq.stdout.contains("k-off-2"));
    let aborted = cli(&a, &["outbox", "list", "--aborted", "--json"]).json();
    assert_eq!(aborted["items"][0]["id"], row["id"]);
    assert!(
        aborted["items"][0]["superseded_by"].is_number(),
        "{aborted}"
    );
    let refused = cli(&a, &["outbox", "requeue", &id, "--json"]);
    refused.expect(1);
    assert_eq!(refused.json()["status"], 409);
    let missing = cli(&a, &["outbox", "requeue", "999999"]);
    missing.expect(2);
    missing.one_line_error();
}

/// Reads lines of a child's stdout on a thread, so the test can wait with a timeout.
fn line_reader(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn events_child(config: &Path, args: &[&str]) -> std::process::Child {
    Command::new(BIN)
        .arg("events")
        .args(args)
        .env("CLAUDEMESH_CONFIG_DIR", config)
        .env_remove("CLAUDEMESH_DAEMON_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn events")
}

#[test]
fn events_stream_until_interrupted_and_resume_from_an_id() {
    let w = World::new("alice,bob", &NO_RATE);
    let a = w.config_dir("alice");
    let b = w.config_dir("bob");
    let alice = Daemon::start(&a, &[]);
    let _bob = Daemon::start(&b, &[]);

    let mut live = events_child(&b, &["--json", "--kinds", "message"]);
    let rx = line_reader(&mut live);
    std::thread::sleep(Duration::from_millis(300));
    let r = alice.post("/v1/send", &json!({"to": "bob", "message": "event one"}));
    assert_eq!(r.status, 202);
    let line = rx
        .recv_timeout(Duration::from_secs(15))
        .expect("an event line");
    let ev: Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(ev["event"], "message");
    assert_eq!(ev["data"]["body"], "event one");
    let id = ev["id"].as_i64().expect("id");
    let _ = live.kill();
    let _ = live.wait();

    // Resume from the id before it: the event is replayed first; human form this time.
    let mut resumed = events_child(
        &b,
        &[
            "--kinds",
            "message",
            "--last-event-id",
            &(id - 1).to_string(),
        ],
    );
    let rx = line_reader(&mut resumed);
    let human = rx
        .recv_timeout(Duration::from_secs(15))
        .expect("a replayed line");
    assert_eq!(
        human,
        format!("[{id}] message dev-mesh: from alice: event one")
    );
    let _ = resumed.kill();
    let _ = resumed.wait();
}
