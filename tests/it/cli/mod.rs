//! The CLI as a user and a script run it (SPEC §10): every command's human and `--json`
//! output and exit code, against running daemons and with no daemon; the cold-path send;
//! `up --detach`; `accept-host`; the generated man page, completions and README commands.

mod daemon;
mod docs;
mod lifecycle;

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::harness::*;

/// Dev broker flags of most tests.
pub const NO_RATE: [&str; 1] = ["--no-rate-limit"];

/// One finished CLI run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Runs `cmd` to completion and keeps its exit code and output.
    pub fn of(mut cmd: Command) -> Run {
        let o = cmd.output().expect("run claudemeshd");
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).to_string(),
            stderr: String::from_utf8_lossy(&o.stderr).to_string(),
        }
    }

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
    Run::of(cmd)
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
