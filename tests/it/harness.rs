//! Shared helpers of the integration tests: real `claudemeshd` processes (dev broker, dev
//! mesh, daemons) in temp dirs on loopback, and a polling `wait_until`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use claudemeshd::client::{self, Endpoint, Response};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_claudemeshd");

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

fn sigterm(child: &Child) {
    // SAFETY: signalling our own child process.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
}

fn stop_child(child: &mut Child) -> Option<i32> {
    sigterm(child);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// A dev broker process.
pub struct Broker {
    pub child: Child,
    pub url: String,
    pub port: u16,
    pub state: PathBuf,
}

impl Broker {
    /// Starts `claudemeshd dev-broker` on `port` (0 = any) and waits for its ready line.
    pub fn start(state: &Path, port: u16, extra: &[&str]) -> Broker {
        let listen = format!("127.0.0.1:{port}");
        let mut child = Command::new(BIN)
            .args(["dev-broker", "--state"])
            .arg(state)
            .args(["--listen", &listen])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn dev-broker");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("ready line");
        let v: Value = serde_json::from_str(&line).expect("ready line is JSON");
        assert_eq!(v["msg"], "dev_broker_started", "{line}");
        let url = v["url"].as_str().expect("url").to_string();
        let port = url
            .trim_start_matches("ws://127.0.0.1:")
            .trim_end_matches("/ws")
            .parse()
            .expect("port");
        Broker {
            child,
            url,
            port,
            state: state.to_path_buf(),
        }
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) -> Option<i32> {
        stop_child(&mut self.child)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            stop_child(&mut self.child);
        }
    }
}

/// `claudemeshd dev-mesh create`; returns config dirs by member name.
pub fn create_mesh(state: &Path, url: &str, members: &str, out: &Path) -> Value {
    let o = Command::new(BIN)
        .args(["dev-mesh", "create", "--state"])
        .arg(state)
        .args(["--broker-url", url, "--members", members, "--out"])
        .arg(out)
        .output()
        .expect("dev-mesh create");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("dev-mesh prints JSON")
}

/// A mesh member's pubkey from the dev-mesh output.
pub fn pubkey_of(mesh: &Value, name: &str) -> String {
    mesh["members"]
        .as_array()
        .and_then(|m| m.iter().find(|x| x["name"] == name))
        .and_then(|m| m["pubkey"].as_str())
        .expect("member")
        .to_string()
}

/// A daemon process for one member's config dir.
pub struct Daemon {
    pub child: Option<Child>,
    pub daemon_dir: PathBuf,
    pub stderr_log: PathBuf,
}

/// Short broker timings so tests run in milliseconds, and no client-side pacing (most tests
/// run the dev broker with `--no-rate-limit`; the rate-limit test restores the real bucket).
pub const FAST_ENV: [(&str, &str); 4] = [
    ("CLAUDEMESH_BROKER_HELLO_TIMEOUT_MS", "2000"),
    ("CLAUDEMESH_BROKER_ACK_TIMEOUT_MS", "3000"),
    ("CLAUDEMESH_BROKER_RATE_BURST", "1000000"),
    ("RUST_LOG", "info"),
];

/// The real broker's bucket (burst 10, 1/s), mirrored by the daemon.
pub const REAL_RATE: [(&str, &str); 1] = [("CLAUDEMESH_BROKER_RATE_BURST", "10")];

impl Daemon {
    /// Spawns `claudemeshd up --tcp-port 0` without waiting.
    pub fn spawn(config_dir: &Path, extra_env: &[(&str, &str)], args: &[&str]) -> Daemon {
        Daemon::spawn_with(config_dir, extra_env, args, |_| {})
    }

    /// [`Daemon::spawn`] with a last say on the command (e.g. resource limits).
    pub fn spawn_with(
        config_dir: &Path,
        extra_env: &[(&str, &str)],
        args: &[&str],
        setup: impl FnOnce(&mut Command),
    ) -> Daemon {
        let daemon_dir = config_dir.join("daemon");
        let _ = std::fs::create_dir_all(&daemon_dir);
        let stderr_log = config_dir.join(format!("daemon-{}.log", std::process::id()));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr_log)
            .expect("log file");
        let mut cmd = Command::new(BIN);
        cmd.arg("up")
            .args(["--tcp-port", "0"])
            .args(args)
            .env("CLAUDEMESH_CONFIG_DIR", config_dir)
            .env_remove("CLAUDEMESH_DAEMON_DIR")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in FAST_ENV.iter().chain(extra_env) {
            cmd.env(k, v);
        }
        setup(&mut cmd);
        let child = cmd.spawn().expect("spawn daemon");
        Daemon {
            child: Some(child),
            daemon_dir,
            stderr_log,
        }
    }

    /// Spawns and waits until `/v1/health` answers and every mesh is `open`.
    pub fn start(config_dir: &Path, extra_env: &[(&str, &str)]) -> Daemon {
        let d = Daemon::spawn(config_dir, extra_env, &[]);
        d.wait_open();
        d
    }

    pub fn wait_open(&self) {
        let mut exited = false;
        let ok = wait_until(Duration::from_secs(20), || {
            // A daemon that died is reported at once, not after the timeout.
            exited = self.exited();
            exited
                || self.get("/v1/health").ok().is_some_and(|r| {
                    r.status == 200
                        && r.json()["meshes"]
                            .as_array()
                            .is_some_and(|m| m.iter().all(|x| x["broker_status"] == "open"))
                })
        });
        assert!(
            !exited,
            "daemon exited while starting; its stderr: {}",
            self.log()
        );
        assert!(ok, "daemon did not come up: {}", self.log());
    }

    /// True once the process has exited. Checked with `WNOWAIT`, so the exit status stays
    /// for [`Daemon::wait_exit`] and [`Daemon::stop`].
    pub fn exited(&self) -> bool {
        let Some(child) = self.child.as_ref() else {
            return true;
        };
        // SAFETY: waitid fills the zeroed siginfo we own; WNOWAIT leaves the child unreaped.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let rc = libc::waitid(
                libc::P_PID,
                child.id(),
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            );
            rc == 0 && info.si_pid() != 0
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.daemon_dir.join("daemon.sock")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.daemon_dir.join("local-token"))
            .expect("token")
            .trim()
            .to_string()
    }

    pub fn tcp_port(&self) -> u16 {
        std::fs::read_to_string(self.daemon_dir.join("tcp.port"))
            .expect("tcp.port")
            .trim()
            .parse()
            .expect("port")
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<Response, client::ClientError> {
        let sock = self.socket();
        client::request(
            &Endpoint::Socket(&sock),
            method,
            path,
            body,
            Duration::from_secs(10),
        )
    }

    /// A raw request with extra headers over the socket.
    pub fn request_with_headers(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> RawResponse {
        raw_request(
            &mut std::os::unix::net::UnixStream::connect(self.socket()).expect("connect"),
            method,
            path,
            headers,
            body,
        )
    }

    pub fn get(&self, path: &str) -> Result<Response, client::ClientError> {
        self.request("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Response {
        self.request("POST", path, Some(&body.to_string()))
            .expect("post")
    }

    /// Inbox bodies, oldest first.
    pub fn inbox_bodies(&self) -> Vec<String> {
        let r = self.get("/v1/inbox?limit=1000").expect("inbox");
        let mut v: Vec<String> = r.json()["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["body"].as_str().map(str::to_string))
            .collect();
        v.reverse();
        v
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        self.child.as_mut().and_then(stop_child)
    }

    /// SIGKILL (crash).
    pub fn kill9(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let c = self.child.as_mut()?;
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(s)) = c.try_wait() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            if let Ok(None) = c.try_wait() {
                stop_child(c);
            }
        }
    }
}

/// A dev broker and a mesh of named members, all under one temp dir.
pub struct World {
    pub dir: tempfile::TempDir,
    pub broker: Broker,
    pub mesh: Value,
}

impl World {
    pub fn new(members: &str, broker_flags: &[&str]) -> World {
        let mut dir = tempfile::tempdir().expect("tempdir");
        // TORTURE_KEEP=1 leaves the world's files (state, databases, daemon logs) behind for
        // a post-mortem; the path is printed.
        if std::env::var_os("TORTURE_KEEP").is_some() {
            dir.disable_cleanup(true);
            eprintln!("harness: keeping {}", dir.path().display());
        }
        let state = dir.path().join("broker");
        let broker = Broker::start(&state, 0, broker_flags);
        let mesh = create_mesh(&state, &broker.url, members, &dir.path().join("out"));
        World { dir, broker, mesh }
    }

    pub fn config_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join("out").join(name)
    }

    pub fn pubkey(&self, name: &str) -> String {
        pubkey_of(&self.mesh, name)
    }

    /// Restarts the broker on the same port.
    pub fn restart_broker(&mut self, flags: &[&str]) {
        self.broker.stop();
        let port = self.broker.port;
        let state = self.broker.state.clone();
        self.broker = Broker::start(&state, port, flags);
    }
}

/// A response with its raw header block.
pub struct RawResponse {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

/// Writes one HTTP/1.1 request with `headers` on `stream` and reads the response.
pub fn raw_request<S: std::io::Read + std::io::Write>(
    stream: &mut S,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> RawResponse {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str("Host: localhost\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).expect("write");
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (headers, body) = text
        .split_once("\r\n\r\n")
        .map(|(h, b)| (h.to_string(), b.to_string()))
        .unwrap_or_default();
    RawResponse {
        status,
        headers,
        body,
    }
}
