//! What the benchmark programs share: the binary under test, child processes stopped on drop,
//! a dev broker, a keep-alive HTTP/1.1 client over a daemon socket, polling.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test: `CLAUDEMESHD_BIN` if set (e.g. a release build driven by a debug
/// build of a bench), else the one cargo built with the bench.
pub fn bin() -> String {
    std::env::var("CLAUDEMESHD_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_claudemeshd").into())
}

/// A child process, stopped (SIGTERM, then SIGKILL after 10 s) when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A dev broker without rate limit on `port` (0 = any): its process, URL and port.
pub fn broker(state: &Path, port: u16) -> (Proc, String, u16) {
    let mut child = Command::new(bin())
        .args(["dev-broker", "--no-rate-limit", "--state"])
        .arg(state)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    let url = v["url"].as_str().unwrap().to_string();
    let port = url
        .trim_start_matches("ws://127.0.0.1:")
        .trim_end_matches("/ws")
        .parse()
        .unwrap();
    (Proc(child), url, port)
}

/// A keep-alive HTTP/1.1 connection to a daemon socket.
pub struct Conn {
    r: BufReader<UnixStream>,
}

impl Conn {
    pub fn open(sock: &Path) -> Option<Conn> {
        let s = UnixStream::connect(sock).ok()?;
        Some(Conn {
            r: BufReader::new(s),
        })
    }

    pub fn call(&mut self, method: &str, path: &str, body: &str) -> (u16, String) {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.r.get_mut().write_all(req.as_bytes()).unwrap();
        let mut line = String::new();
        self.r.read_line(&mut line).unwrap();
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut len = 0;
        loop {
            line.clear();
            self.r.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut buf = vec![0; len];
        self.r.read_exact(&mut buf).unwrap();
        (status, String::from_utf8_lossy(&buf).into_owned())
    }
}

/// Polls `f` every `every` until it holds or `timeout` passes.
pub fn poll(timeout: Duration, every: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(every);
    }
    false
}

pub fn health(sock: &Path) -> Option<Value> {
    let (s, b) = Conn::open(sock)?.call("GET", "/v1/health", "");
    (s == 200).then(|| serde_json::from_str(&b).ok()).flatten()
}

/// `dev-mesh create` on the broker state `state` (its URL `url`): one config dir per member
/// under `out`.
pub fn dev_mesh(state: &Path, url: &str, members: &str, out: &Path) {
    let o = Command::new(bin())
        .args(["dev-mesh", "create", "--state"])
        .arg(state)
        .args(["--broker-url", url, "--members", members, "--out"])
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "dev-mesh create: {o:?}");
}
