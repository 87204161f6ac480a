//! The CLI as a user and a script run it (SPEC §10): every command's human and `--json`
//! output and exit code, against running daemons and with no daemon; the cold-path send;
//! `up --detach`; `accept-host`; the generated man page and completions.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;

const NO_RATE: [&str; 1] = ["--no-rate-limit"];

/// One finished CLI run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {}", self.stdout))
    }

    /// Asserts the exit code, printing both streams when it differs.
    pub fn expect(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    /// Asserts stderr is exactly one `claudemeshd: …` line and returns it.
    pub fn one_line_error(&self) -> &str {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "stderr: {}", self.stderr);
        assert!(lines[0].starts_with("claudemeshd: "), "{}", lines[0]);
        lines[0]
    }
}

/// Runs `claudemeshd args` for the member whose config dir is `config`, with `env` added.
pub fn cli_env(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("CLAUDEMESH_CONFIG_DIR", config)
        .env_remove("CLAUDEMESH_DAEMON_DIR")
        .env_remove("CI")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().expect("run claudemeshd");
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).to_string(),
        stderr: String::from_utf8_lossy(&o.stderr).to_string(),
    }
}

pub fn cli(config: &Path, args: &[&str]) -> Run {
    cli_env(config, args, &[])
}

#[test]
fn without_a_daemon_client_commands_exit_1_with_one_line_and_a_json_failure() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path();
    for args in [
        &["status"][..],
        &["inbox"],
        &["peers"],
        &["events"],
        &["profile", "--summary", "x"],
        &["outbox", "list"],
        &["outbox", "requeue", "1"],
        &["down"],
        &["send", "bob", "hi", "--no-cold-path"],
        &["status", "--tcp"],
    ] {
        let r = cli(c, args);
        r.expect(1);
        assert!(r.stdout.is_empty(), "{args:?}: {}", r.stdout);
        let line = r.one_line_error();
        assert!(
            line.contains("daemon") || line.contains("not running") || line.contains("tcp.port"),
            "{args:?}: {line}"
        );
        let mut json_args = args.to_vec();
        json_args.push("--json");
        let j = cli(c, &json_args);
        j.expect(1);
        let v = j.json();
        assert_eq!(
            (v["ok"].clone(), v["exit_code"].clone()),
            (json!(false), json!(1))
        );
        assert!(v["message"].as_str().is_some_and(|m| !m.contains('\n')));
    }
    let status = cli(c, &["status", "--json"]).json();
    assert_eq!(status["running"], false);
    assert_eq!(status["error"], "not_running");

    let v = cli(c, &["version"]);
    v.expect(0);
    assert!(v.stdout.contains("daemon not running"), "{}", v.stdout);
    let vj = cli(c, &["version", "--json"]);
    assert_eq!(vj.json()["daemon_version"], Value::Null);
    assert_eq!(vj.json()["cli_version"], env!("CARGO_PKG_VERSION"));
    assert!(!c.join("daemon").exists(), "client commands create nothing");
}

#[test]
fn bad_flags_and_bad_values_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--bogus"][..],
        &["nope"],
        &["send", "bob"],
        &["send", "bob", "hi", "--priority", "urgent"],
        &["send", "bob", "hi", "--meta", "[1]"],
        &["send", "bob", "hi", "--meta", "{not json"],
        &["outbox", "list", "--pending", "--done"],
        &["outbox", "list", "--limit", "0"],
        &["outbox", "requeue", "x"],
        &["inbox", "--limit", "1001"],
        &["events", "--kinds", "message,bogus"],
        &["profile"],
        &["profile", "--status", "asleep"],
        &["profile", "--visible", "maybe"],
        &["up", "--detach-timeout", "3"],
        &["up", "--clone-policy", "sometimes"],
        &["completions", "tcsh-ish"],
        &["install-service", "--format", "upstart"],
    ] {
        let r = cli(dir.path(), args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(!r.stderr.is_empty(), "{args:?}");
    }
    // With no config.json, a cold-path send is a configuration error: 2, naming the fix.
    let r = cli(dir.path(), &["send", "bob", "hi"]);
    r.expect(2);
    assert!(
        r.one_line_error().contains("claudemesh join"),
        "{}",
        r.stderr
    );
}

#[test]
fn every_api_command_against_a_running_daemon_in_human_and_json() {
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

    let p = cli(&a, &["peers"]);
    p.expect(0);
    assert!(p.stdout.contains("bob"), "{}", p.stdout);
    let pj = cli(&a, &["peers", "--json"]).json();
    assert!(pj["peers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["pubkey"] == w.pubkey("bob")));

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
    assert!(unknown.one_line_error().contains("unknown_peer"));
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

#[test]
fn cold_path_send_reaches_a_daemon_peer_through_the_broker() {
    let w = World::new("alice,bob", &["--no-rate-limit", "--dedupe"]);
    let a = w.config_dir("alice");
    let bob = Daemon::start(&w.config_dir("bob"), &[]);

    let r = cli(&a, &["send", "bob", "hi", "--idempotency-key", "cold-1"]);
    r.expect(0);
    assert!(r.stdout.starts_with("sent "), "{}", r.stdout);
    assert!(r.stdout.contains("client id cold-1"), "{}", r.stdout);
    assert!(
        wait_until(Duration::from_secs(10), || bob.inbox_bodies() == ["hi"]),
        "{:?}",
        bob.inbox_bodies()
    );
    let item = bob.get("/v1/inbox").expect("inbox").json()["items"][0].clone();
    assert_eq!(item["kind"], "dm", "the DM was sealed for bob");
    assert_eq!(item["sender_pubkey"], w.pubkey("alice"));

    let j = cli(
        &a,
        &["send", "bob", "hi", "--idempotency-key", "cold-1", "--json"],
    );
    j.expect(0);
    let v = j.json();
    assert_eq!(
        (v["via"].clone(), v["duplicate"].clone()),
        (json!("cold_path"), json!(true))
    );
    assert_eq!(v["target"], w.pubkey("bob"));
    assert!(v["broker_message_id"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));

    let broadcast = cli(&a, &["send", "*", "to everyone", "--json"]);
    broadcast.expect(0);
    assert!(wait_until(Duration::from_secs(10), || bob
        .inbox_bodies()
        .contains(&"to everyone".to_string())));

    let unknown = cli(&a, &["send", "nobody", "hi"]);
    unknown.expect(2);
    assert!(
        unknown.one_line_error().contains("unknown peer"),
        "{}",
        unknown.stderr
    );
    let disabled = cli(&a, &["send", "bob", "hi again", "--no-cold-path"]);
    disabled.expect(1);
    disabled.one_line_error();
    let daemon_dir = a.join("daemon");
    for f in ["outbox.db", "inbox.db", "daemon.sock", "daemon.pid"] {
        assert!(!daemon_dir.join(f).exists(), "cold path wrote {f}");
    }
}

/// Kills a detached daemon (not our child) by its pid file when the test ends.
struct PidGuard(PathBuf);

impl Drop for PidGuard {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            // SAFETY: signalling the detached daemon this test started.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

#[test]
fn detach_returns_once_healthy_and_logs_to_the_daemon_log() {
    let w = World::new("alice", &NO_RATE);
    let a = w.config_dir("alice");
    let daemon_dir = a.join("daemon");
    let _guard = PidGuard(daemon_dir.join("daemon.pid"));

    let bad = cli_env(&a, &["up", "--detach", "--mesh", "nope"], &FAST_ENV);
    bad.expect(2);
    assert!(bad.one_line_error().contains("nope"), "{}", bad.stderr);

    let up = cli_env(
        &a,
        &["up", "--detach", "--tcp-port", "0", "--json"],
        &FAST_ENV,
    );
    up.expect(0);
    let v = up.json();
    let pid = v["pid"].as_u64().expect("pid");
    assert_eq!(
        v["log"],
        daemon_dir.join("daemon.log").display().to_string()
    );
    let s = cli(&a, &["status", "--json"]);
    s.expect(0);
    assert_eq!(s.json()["pid"].as_u64(), Some(pid));
    let log = std::fs::read_to_string(daemon_dir.join("daemon.log")).expect("daemon.log");
    assert!(log.contains("daemon_started"), "{log}");

    let twice = cli_env(&a, &["up", "--detach", "--tcp-port", "0"], &FAST_ENV);
    twice.expect(1);
    assert!(
        twice.one_line_error().contains("already running"),
        "{}",
        twice.stderr
    );

    let down = cli(&a, &["down"]);
    down.expect(0);
    assert_eq!(down.stdout.trim(), format!("stopped (pid {pid})"));
    assert!(!daemon_dir.join("daemon.sock").exists());
    let log = std::fs::read_to_string(daemon_dir.join("daemon.log")).expect("daemon.log");
    assert!(log.contains("daemon_shutdown"), "{log}");
    cli(&a, &["down"]).expect(1);
}

#[test]
fn accept_host_rewrites_a_foreign_fingerprint_so_up_starts_again() {
    let w = World::new("alice", &NO_RATE);
    let a = w.config_dir("alice");
    let daemon_dir = a.join("daemon");
    std::fs::create_dir_all(&daemon_dir).unwrap();
    let fp = daemon_dir.join("host_fingerprint.json");
    let foreign = json!({"schema_version": 1, "fingerprint": "00".repeat(32),
        "host_id": "linux:another-machine", "stable_mac": "02:00:00:00:00:01",
        "written_at": "2026-01-01T00:00:00.000Z"});
    std::fs::write(&fp, foreign.to_string()).unwrap();
    let refused = cli_env(&a, &["up", "--tcp-port", "0"], &FAST_ENV);
    refused.expect(4);
    assert!(
        refused.stderr.contains("claudemeshd accept-host"),
        "{}",
        refused.stderr
    );

    let accepted = cli(&a, &["accept-host", "--json"]);
    accepted.expect(0);
    let v = accepted.json();
    assert_eq!(v["previously_matched"], false);
    assert_eq!(v["previous_fingerprint"], "00".repeat(32));
    assert_ne!(v["host_id"], "linux:another-machine");
    let human = cli(&a, &["accept-host"]);
    human.expect(0);
    assert!(
        human.stdout.contains("it already matched this host"),
        "{}",
        human.stdout
    );
    let d = Daemon::start(&a, &[]);
    assert!(d.get("/v1/health").is_ok());
}

#[test]
fn man_page_in_docs_is_generated_from_the_current_cli() {
    let committed = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/claudemeshd.1"))
        .unwrap_or_default();
    let generated = claudemeshd::cli::setup::man_page();
    assert!(
        committed == generated,
        "docs/claudemeshd.1 is out of date with the clap definitions; regenerate it with:\n    cargo run -q -- man > docs/claudemeshd.1"
    );
    let from_binary = cli(Path::new("/nonexistent"), &["man"]);
    from_binary.expect(0);
    assert_eq!(from_binary.stdout.as_bytes(), generated.as_slice());
}

#[test]
fn completions_print_a_script_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let r = cli(Path::new("/nonexistent"), &["completions", shell]);
        r.expect(0);
        assert!(r.stdout.contains("claudemeshd"), "{shell}");
        assert!(r.stdout.contains("install-service"), "{shell}");
    }
}

/// Splits a README command line like a shell would for simple quoting.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut has = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                has = true;
            }
            (None, c) if c.is_whitespace() => {
                if has || !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if has || !cur.is_empty() {
        words.push(cur);
    }
    words
}

#[test]
fn every_claudemeshd_command_in_the_readme_parses() {
    use clap::Parser;
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let mut in_code = false;
    let mut checked = 0;
    for line in readme.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if !in_code {
            continue;
        }
        let code = line.split(" #").next().unwrap_or("").trim();
        let Some(pos) = code.find("claudemeshd ") else {
            continue;
        };
        // Only invocations: the binary name at the start, after env assignments or a path.
        let before = &code[..pos];
        if !(before.is_empty()
            || before.ends_with('/')
            || before.ends_with("= ")
            || before.split_whitespace().all(|w| w.contains('=')))
        {
            continue;
        }
        let rest = &code[pos..];
        let cmd = rest
            .split(['|', ';', '&', '>', '<'])
            .next()
            .unwrap_or("")
            .trim();
        let words = shell_words(cmd);
        if words.iter().any(|w| w.contains('$')) && !words.iter().any(|w| w == "send") {
            continue;
        }
        if let Err(e) = claudemeshd::cli::Cli::try_parse_from(&words) {
            if !matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) {
                panic!("README command does not parse: {cmd}\n{e}");
            }
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} README commands found");
}
