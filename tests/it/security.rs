//! The local API's security rules and limits (SPEC §9), over the real socket and TCP port.

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde_json::json;

use crate::harness::*;

fn tcp(d: &Daemon) -> TcpStream {
    TcpStream::connect(("127.0.0.1", d.tcp_port())).expect("tcp connect")
}

#[test]
fn tcp_requires_the_bearer_token_and_rejects_browsers() {
    let w = World::new("alice", &["--no-rate-limit"]);
    let d = Daemon::start(&w.config_dir("alice"), &[]);
    let token = d.token();
    let bearer = format!("Bearer {token}");
    let ok = raw_request(
        &mut tcp(&d),
        "GET",
        "/v1/health",
        &[("Authorization", &bearer)],
        "",
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    let none = raw_request(&mut tcp(&d), "GET", "/v1/health", &[], "");
    assert_eq!(
        (none.status, none.body.contains("unauthorized")),
        (401, true)
    );
    let wrong = raw_request(
        &mut tcp(&d),
        "GET",
        "/v1/health",
        &[("Authorization", "Bearer nope")],
        "",
    );
    assert_eq!(wrong.status, 401);
    let q = raw_request(
        &mut tcp(&d),
        "GET",
        &format!("/v1/health?token={token}"),
        &[],
        "",
    );
    assert_eq!(q.status, 400);
    assert!(!d.log().contains(&token), "the token is never logged");
    let origin = raw_request(
        &mut tcp(&d),
        "GET",
        "/v1/health",
        &[
            ("Authorization", &bearer),
            ("Origin", "http://evil.example"),
        ],
        "",
    );
    assert_eq!(origin.status, 403);
    assert!(!origin.body.is_empty());
    let host = raw_request(
        &mut tcp(&d),
        "GET",
        "/v1/health",
        &[("Authorization", &bearer), ("Host", "evil.example:80")],
        "",
    );
    assert_eq!(host.status, 403);
    let v6 = format!("[::1]:{}", d.tcp_port());
    let host_ok = raw_request(
        &mut tcp(&d),
        "GET",
        "/v1/health",
        &[("Authorization", &bearer), ("Host", &v6)],
        "",
    );
    assert_eq!(host_ok.status, 200);
    let unknown = raw_request(
        &mut tcp(&d),
        "GET",
        "/v1/nope",
        &[("Authorization", &bearer)],
        "",
    );
    assert_eq!(
        (unknown.status, unknown.body.contains("not_found")),
        (404, true)
    );
}

#[test]
fn oversized_and_malformed_bodies_get_clear_errors_and_write_nothing() {
    let w = World::new("alice,bob", &["--no-rate-limit"]);
    let d = Daemon::start(&w.config_dir("alice"), &[]);
    let big = json!({"to": "*", "message": "x".repeat(300 * 1024)}).to_string();
    let r = d.request("POST", "/v1/send", Some(&big)).expect("send");
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.json()["error"], "payload_too_large");
    let too_big_for_broker = json!({"to": "*", "message": "y".repeat(60_000)}).to_string();
    let r = d
        .request("POST", "/v1/send", Some(&too_big_for_broker))
        .expect("send");
    assert_eq!(r.status, 413, "{}", r.body);
    for bad in [
        "{",
        "[]",
        r#"{"to":"*"}"#,
        r#"{"to":"*","message":""}"#,
        r#"{"to":"*","message":"m","priority":"urgent"}"#,
    ] {
        let r = d.request("POST", "/v1/send", Some(bad)).expect("send");
        assert_eq!(
            (r.status, r.json()["error"].clone()),
            (400, json!("invalid_request")),
            "{bad}: {}",
            r.body
        );
    }
    let r = d
        .request(
            "POST",
            "/v1/send",
            Some(r#"{"to":"*","message":"m","mesh":"nope"}"#),
        )
        .expect("send");
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (400, json!("unknown_mesh"))
    );
    let h = d.get("/v1/health").expect("health").json();
    assert_eq!(h["outbox"]["pending"], 0, "nothing was written");
    let list = d.get("/v1/outbox").expect("outbox").json();
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0));
}

#[test]
fn requests_over_the_in_flight_cap_get_429_daemon_busy() {
    let w = World::new("alice", &["--no-rate-limit"]);
    let d = Daemon::start(
        &w.config_dir("alice"),
        &[("CLAUDEMESH_IPC_MAX_INFLIGHT", "4")],
    );
    // Four requests that stay in flight: headers promise a body that never comes.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = UnixStream::connect(d.socket()).expect("connect");
        write!(
            s,
            "POST /v1/send HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{{"
        )
        .expect("write");
        held.push(s);
    }
    std::thread::sleep(Duration::from_millis(300));
    let r = d.request_with_headers("GET", "/v1/health", &[], "");
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.body.contains("daemon_busy"));
    assert!(
        r.headers.to_ascii_lowercase().contains("retry-after: 1"),
        "{}",
        r.headers
    );
    // A client that never finishes its body times out (408) and frees its slot.
    let mut first = held.remove(0);
    first
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut first, &mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    drop(held);
    assert!(wait_until(Duration::from_secs(5), || d
        .get("/v1/health")
        .is_ok_and(|r| r.status == 200)));
}

/// Writes `head` on a fresh TCP connection and reads until the server closes it (or 10 s).
fn exchange_keep_alive(d: &Daemon, head: &str) -> (String, bool) {
    let mut s = tcp(d);
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(head.as_bytes()).expect("write");
    let mut raw = Vec::new();
    let closed = std::io::Read::read_to_end(&mut s, &mut raw).is_ok();
    (String::from_utf8_lossy(&raw).into_owned(), closed)
}

#[test]
fn absolute_targets_and_semicolon_tokens_are_refused_and_refusals_close_the_connection() {
    let w = World::new("alice", &["--no-rate-limit"]);
    let d = Daemon::start(&w.config_dir("alice"), &[]);
    let bearer = format!("Bearer {}", d.token());
    let abs = raw_request(
        &mut tcp(&d),
        "GET",
        "http://evil.example/v1/version",
        &[("Authorization", &bearer)],
        "",
    );
    assert_eq!(
        (abs.status, abs.body.contains("invalid_request")),
        (400, true),
        "{}",
        abs.body
    );
    let over_socket = d.request_with_headers("GET", "http://localhost/v1/version", &[], "");
    assert_eq!(over_socket.status, 400, "{}", over_socket.body);
    let semi = raw_request(
        &mut tcp(&d),
        "GET",
        "/v1/version?a=1;token=abc",
        &[("Authorization", &bearer)],
        "",
    );
    assert_eq!(
        (semi.status, semi.body.contains("token_in_query")),
        (400, true),
        "{}",
        semi.body
    );
    // Keep-alive requests (no `Connection: close`): a refusal ends the connection.
    for (head, status) in [
        ("GET /v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n", "401"),
        (
            &*format!("GET /v1/health HTTP/1.1\r\nHost: evil\r\nAuthorization: {bearer}\r\n\r\n"),
            "403",
        ),
        (
            &*format!("GET /v1/health?token=x HTTP/1.1\r\nAuthorization: {bearer}\r\n\r\n"),
            "400",
        ),
    ] {
        let (answer, closed) = exchange_keep_alive(&d, head);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{answer}"
        );
        assert!(closed, "connection left open after {status}: {answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
    }
    // An authenticated keep-alive request is not closed by the server.
    let mut s = tcp(&d);
    s.set_read_timeout(Some(Duration::from_millis(1500)))
        .expect("timeout");
    write!(
        s,
        "GET /v1/version HTTP/1.1\r\nHost: localhost\r\nAuthorization: {bearer}\r\n\r\n"
    )
    .expect("write");
    let mut raw = Vec::new();
    let r = std::io::Read::read_to_end(&mut s, &mut raw);
    assert!(r.is_err(), "authenticated keep-alive stays open");
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 200"));
}

#[test]
fn a_burst_of_token_query_requests_writes_a_bounded_number_of_log_lines() {
    let w = World::new("alice", &["--no-rate-limit"]);
    let d = Daemon::start(&w.config_dir("alice"), &[]);
    for i in 0..200 {
        let r = raw_request(
            &mut tcp(&d),
            "GET",
            &format!("/v1/inbox?limit=1&token=guess{i}"),
            &[],
            "",
        );
        assert_eq!(r.status, 400, "{}", r.body);
    }
    let lines = d
        .log()
        .lines()
        .filter(|l| l.contains("`token` query parameter"))
        .count();
    assert!(
        (1..=2).contains(&lines),
        "{lines} warning lines for 200 refused requests:\n{}",
        d.log()
    );
}

/// Tests that act as another uid need root (`chown`, `setpriv`); without it they fail.
pub fn require_root(what: &str) {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "{what} needs root (it switches to uid 65534); run the tests as root, as CI does"
    );
}

#[test]
fn a_planted_lock_symlink_or_a_daemon_dir_of_another_user_refuses_the_start() {
    require_root("a_planted_lock_symlink_or_a_daemon_dir_of_another_user_refuses_the_start");
    use std::os::unix::fs::PermissionsExt;
    let w = World::new("alice", &["--no-rate-limit"]);
    let cfg = w.config_dir("alice");
    let daemon_dir = cfg.join("daemon");
    // A world-writable daemon dir where another user planted daemon.lock -> victim.
    std::fs::create_dir_all(&daemon_dir).unwrap();
    std::fs::set_permissions(&daemon_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let victim = w.dir.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    std::os::unix::fs::symlink(&victim, daemon_dir.join("daemon.lock")).unwrap();
    let mut d = Daemon::spawn(&cfg, &[], &[]);
    let code = d.wait_exit(Duration::from_secs(20));
    assert_eq!(code, Some(2), "{}", d.log());
    assert!(d.log().contains("daemon.lock"), "{}", d.log());
    assert!(d.log().contains("symbolic link"), "{}", d.log());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(!daemon_dir.join("daemon.sock").exists());
    // The same dir owned by another user: refused before anything in it is opened.
    std::fs::remove_file(daemon_dir.join("daemon.lock")).unwrap();
    std::os::unix::fs::chown(&daemon_dir, Some(65534), Some(65534)).unwrap();
    let mut d = Daemon::spawn(&cfg, &[], &[]);
    let code = d.wait_exit(Duration::from_secs(20));
    assert_eq!(code, Some(2), "{}", d.log());
    assert!(d.log().contains("owned by uid 65534"), "{}", d.log());
    assert!(!daemon_dir.join("daemon.lock").exists());
}

/// A TCP listener of uid 65534 on `port` (perl, in perl-base): appends whatever it receives
/// to `out` and answers like a healthy daemon would.
fn squatter(port: u16, out: &std::path::Path) -> std::process::Child {
    use std::io::BufRead;
    const SCRIPT: &str = r#"
        use IO::Socket::INET; $| = 1;
        my ($port, $out) = @ARGV;
        my $l = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $port,
            Listen => 16, ReuseAddr => 1) or die "bind: $!";
        print "ready\n";
        while (my $c = $l->accept) {
            my $buf = ""; $c->recv($buf, 65536);
            open(my $f, ">>", $out) or die; print $f $buf; close $f;
            my $body = '{"ok":true,"pid":1,"meshes":[]}';
            print $c "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " . length($body) . "\r\n\r\n" . $body;
            close $c;
        }
    "#;
    let mut child = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "perl",
            "-e",
            SCRIPT,
        ])
        .arg(port.to_string())
        .arg(out)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("setpriv (util-linux) and perl");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("squatter ready line");
    assert_eq!(line.trim(), "ready", "squatter could not bind {port}");
    child
}

fn cli_tcp(config_dir: &std::path::Path, args: &[&str]) -> crate::cli::Run {
    let mut cmd = std::process::Command::new(BIN);
    cmd.arg("--tcp")
        .args(args)
        .env("CLAUDEMESH_CONFIG_DIR", config_dir)
        .env_remove("CLAUDEMESH_DAEMON_DIR");
    crate::cli::Run::of(cmd)
}

#[test]
fn a_stale_tcp_port_squatted_by_another_user_never_receives_the_token() {
    require_root("a_stale_tcp_port_squatted_by_another_user_never_receives_the_token");
    use std::os::unix::fs::PermissionsExt;
    let w = World::new("alice", &["--no-rate-limit"]);
    let cfg = w.config_dir("alice");
    let mut d = Daemon::start(&cfg, &[]);
    let port_file = d.daemon_dir.join("tcp.port");
    cli_tcp(&cfg, &["status"]).expect(0);
    assert_eq!(d.stop(), Some(0));
    assert!(!port_file.exists(), "a clean stop removes tcp.port");
    // A crash leaves tcp.port (and a dead pid) behind; another user then binds that port.
    let mut d = Daemon::start(&cfg, &[]);
    let token = d.token();
    let port = d.tcp_port();
    d.kill9();
    assert!(port_file.exists());
    let drop_box = tempfile::tempdir().unwrap();
    std::fs::set_permissions(drop_box.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let received = drop_box.path().join("received");
    let mut squat = squatter(port, &received);
    let status = cli_tcp(&cfg, &["status"]);
    let peers = cli_tcp(&cfg, &["peers"]);
    let _ = squat.kill();
    let _ = squat.wait();
    let got = std::fs::read_to_string(&received).unwrap_or_default();
    assert!(!got.contains(&token), "the squatter received the token");
    assert!(got.is_empty(), "nothing was sent to the squatter: {got}");
    assert_eq!(status.code, 1, "{}", status.stderr);
    assert!(
        status.stderr.contains("not sending the token"),
        "{}",
        status.stderr
    );
    assert_ne!(peers.code, 0, "{}", peers.stderr);
    assert!(
        peers.stderr.contains(&format!("127.0.0.1:{port}")),
        "{}",
        peers.stderr
    );
}

#[test]
fn tcp_first_heads_over_8_kib_or_slower_than_5_s_are_refused_before_authentication() {
    let w = World::new("alice", &["--no-rate-limit"]);
    let d = Daemon::start(&w.config_dir("alice"), &[]);
    let bearer = format!("Bearer {}", d.token());
    // A slow client: half a head, then silence.
    let mut slow = tcp(&d);
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    write!(slow, "GET /v1/health HTTP/1.1\r\nHost: localhost\r\n").expect("write");
    let sent_at = std::time::Instant::now();
    // A head past 8 KiB, even with the right token, is refused before it is parsed.
    let pad = "a".repeat(9 * 1024);
    let big = raw_request(
        &mut tcp(&d),
        "GET",
        "/v1/health",
        &[("Authorization", &bearer), ("X-Pad", &pad)],
        "",
    );
    assert_eq!(big.status, 431, "{}", big.body);
    assert!(big.body.contains("headers_too_large"), "{}", big.body);
    // A normal head just under the limit still works.
    let pad = "a".repeat(6 * 1024);
    let ok = raw_request(
        &mut tcp(&d),
        "GET",
        "/v1/health",
        &[("Authorization", &bearer), ("X-Pad", &pad)],
        "",
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    // Only the head is limited: a 40 KB body passes through the gate.
    let body = json!({"to": "*", "message": "m".repeat(40_000)}).to_string();
    let sent = raw_request(
        &mut tcp(&d),
        "POST",
        "/v1/send",
        &[("Authorization", &bearer)],
        &body,
    );
    assert_eq!(sent.status, 202, "{}", sent.body);
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut slow, &mut answer);
    let waited = sent_at.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(15),
        "408 after {waited:?}"
    );
}

#[test]
fn an_idle_kept_alive_tcp_connection_does_not_hold_the_shutdown() {
    let w = World::new("alice", &["--no-rate-limit"]);
    let mut d = Daemon::start(&w.config_dir("alice"), &[]);
    let bearer = format!("Bearer {}", d.token());
    let mut idle = tcp(&d);
    write!(
        idle,
        "GET /v1/version HTTP/1.1\r\nHost: localhost\r\nAuthorization: {bearer}\r\n\r\n"
    )
    .expect("write");
    let mut first = [0u8; 12];
    std::io::Read::read_exact(&mut idle, &mut first).expect("answer");
    assert_eq!(&first, b"HTTP/1.1 200");
    // A client in the middle of its first head, too.
    let mut half = tcp(&d);
    write!(half, "GET /v1/version HTTP/1.1\r\n").expect("write");
    let asked = std::time::Instant::now();
    assert_eq!(d.stop(), Some(0));
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(4), "shutdown took {took:?}");
    eprintln!("shutdown with idle TCP connections took {took:?}");
}

#[test]
fn the_unauthenticated_public_health_answer_closes_its_connection() {
    let w = World::new("alice", &["--no-rate-limit"]);
    let d = Daemon::start(
        &w.config_dir("alice"),
        &[("CLAUDEMESH_IPC_PUBLIC_HEALTH", "true")],
    );
    let asked = std::time::Instant::now();
    let (answer, closed) =
        exchange_keep_alive(&d, "GET /v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#"{"ok":true}"#), "{answer}");
    assert!(closed, "kept alive: {answer}");
    // Closed by the answer itself, not by the 5 s keep-alive timeout.
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(4),
        "{:?}",
        asked.elapsed()
    );
}
