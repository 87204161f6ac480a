//! [`CliError`]: every way a CLI command fails, its SPEC §10 exit code, and its `--json`
//! form. The output module prints it (one line on stderr, plus one JSON document on stdout
//! under `--json`).
//!
//! Exit codes: 0 ok; 1 failure, daemon unreachable, daemon refused for a reason of state
//! (409, 429, 5xx); 2 usage or configuration (bad flag value, `config.json` problems, the
//! daemon's 400/404/413 answers to what the arguments asked); 3 auth (401/403, a token file
//! with a wider mode, a refused broker hello); 4 host mismatch; 5 storage refused.

use std::path::PathBuf;

use claudemesh_actors::files::FilesError;
use claudemesh_actors::host::HostError;
use claudemesh_actors::settings::SettingsError;
use serde_json::{json, Value};

use crate::client::ClientError;
use crate::coldpath::ColdPathError;
use crate::daemon::{exit, DaemonError};
use crate::service::ServiceError;

/// A failed command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Directories or `config.json`/`daemon.toml`/environment could not be resolved.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// A flag value the parser could not check (e.g. `--meta` that is not a JSON object).
    #[error("{flag}: {detail}")]
    Usage {
        /// The flag.
        flag: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The daemon could not be reached or the exchange failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The daemon does not run (status, down).
    #[error("not running ({reason})")]
    NotRunning {
        /// Why we think so.
        reason: String,
        /// The socket that was tried.
        socket: PathBuf,
    },
    /// `--tcp` but no `tcp.port` file: the daemon is not running or serves no TCP port.
    #[error("no TCP port to talk to: {path} is missing (the daemon is not running, or runs with --no-tcp)")]
    NoTcpPort {
        /// The `tcp.port` file.
        path: PathBuf,
    },
    /// `--tcp` and the `tcp.port` or `local-token` file is unusable.
    #[error("{path}: {detail}")]
    TcpFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// `--tcp`, but the port in `tcp.port` is not held by the daemon: the token is not sent.
    #[error("not sending the token to 127.0.0.1:{port}: {reason}; is the daemon running? (`claudemeshd status` checks over the socket)")]
    TcpNotDaemon {
        /// The port from `tcp.port`.
        port: u16,
        /// What the check found.
        reason: String,
    },
    /// The token file is readable by others; we refuse to use it, like the daemon.
    #[error("{path} has mode {mode:04o}; refusing to use a token readable by others (chmod 600 {path})", path = .path.display())]
    TokenMode {
        /// The `local-token` file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The daemon answered with an error status.
    #[error("daemon refused {what} (HTTP {status}): {}", describe_api_error(.body))]
    Api {
        /// What was asked (`send`, `outbox requeue`, …).
        what: &'static str,
        /// The HTTP status.
        status: u16,
        /// The JSON body (`{"error": code, …}`), or `{"raw": text}`.
        body: Value,
    },
    /// `send` to a name that no online peer carries (the daemon's 404 `unknown_peer`), with
    /// the names that are online, so the user can see what went wrong.
    #[error("{}", unknown_peer_text(.name, .online))]
    UnknownPeer {
        /// The name as given.
        name: String,
        /// Display names online on that mesh (empty when the list could not be fetched).
        online: Vec<String>,
    },
    /// The cold-path send failed.
    #[error("cold path (no daemon running): {0}")]
    ColdPath(#[from] ColdPathError),
    /// A daemon process exists but does not answer, so the cold path is not taken.
    #[error("a daemon (pid {pid}) runs but does not answer on {socket} ({reason}); not sending around it")]
    DaemonUnresponsive {
        /// Its pid.
        pid: u32,
        /// The socket.
        socket: PathBuf,
        /// The connection error.
        reason: String,
    },
    /// Service install/uninstall failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// Reading or writing the host fingerprint failed.
    #[error(transparent)]
    Host(#[from] HostError),
    /// A local file operation of the claudemesh dirs failed.
    #[error(transparent)]
    Files(#[from] FilesError),
    /// `claudemeshd up` failed.
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    /// `down`: signalling the pid failed.
    #[error("cannot signal pid {pid}: {source}")]
    Signal {
        /// The pid.
        pid: u32,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `down`: the daemon did not exit in time.
    #[error("pid {pid} still running {secs} s after SIGTERM")]
    StillRunning {
        /// The pid.
        pid: u32,
        /// The wait.
        secs: u64,
    },
    /// `up --detach`: the background process could not be started.
    #[error("cannot start the daemon in the background: {source}")]
    DetachSpawn {
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `up --detach`: the background daemon exited during startup.
    #[error("the daemon exited during startup (exit {code}): {last_line} (log: {})", log.display())]
    DetachExited {
        /// Its exit code (passed on as ours).
        code: i32,
        /// The last line of its log, usually the reason.
        last_line: String,
        /// Its log file.
        log: PathBuf,
    },
    /// `up --detach`: `/v1/health` did not answer in time.
    #[error("the daemon (pid {pid}) did not answer /v1/health within {secs} s; it is still starting or stuck: see {}", log.display())]
    DetachTimeout {
        /// The background pid (left running).
        pid: u32,
        /// The wait.
        secs: u64,
        /// Its log file.
        log: PathBuf,
    },
    /// `events`: the daemon ended the stream (it is shutting down).
    #[error("event stream ended: {detail}")]
    StreamEnded {
        /// Why.
        detail: String,
    },
}

/// The message of [`CliError::UnknownPeer`].
fn unknown_peer_text(name: &str, online: &[String]) -> String {
    let who = if online.is_empty() {
        "nobody else is online".to_string()
    } else {
        format!("online now: {}", online.join(", "))
    };
    format!(
        "no online peer is called {name:?} ({who}); a name reaches only someone online: to \
         queue a message for an offline member, send to their 64-hex pubkey (it waits in the \
         outbox until they connect)"
    )
}

/// `code: detail` from an API error body, compact and on one line.
pub fn describe_api_error(body: &Value) -> String {
    let Some(obj) = body.as_object() else {
        return body.to_string();
    };
    let code = obj.get("error").and_then(Value::as_str).unwrap_or("error");
    let mut parts = Vec::new();
    for (k, v) in obj {
        if k == "error" || v.is_null() {
            continue;
        }
        let v = match v {
            Value::String(s) => s.clone(),
            Value::Array(items) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| i.to_string())
                })
                .collect::<Vec<_>>()
                .join(", "),
            other => other.to_string(),
        };
        if k == "detail" || k == "raw" {
            parts.push(v);
        } else {
            parts.push(format!("{k} {v}"));
        }
    }
    if parts.is_empty() {
        code.to_string()
    } else {
        format!("{code}: {}", parts.join("; "))
    }
}

impl CliError {
    /// The SPEC §10 exit code.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Settings(_) | CliError::Usage { .. } | CliError::UnknownPeer { .. } => {
                exit::USAGE
            }
            CliError::TokenMode { .. } => exit::AUTH,
            CliError::Api { status, .. } => match status {
                401 | 403 => exit::AUTH,
                400 | 404 | 413 => exit::USAGE,
                _ => exit::FAILURE,
            },
            CliError::ColdPath(e) => e.exit_code(),
            CliError::Service(e) => e.exit_code(),
            CliError::Daemon(e) => e.exit_code(),
            CliError::DetachExited { code, .. } if *code > 0 => *code,
            _ => exit::FAILURE,
        }
    }

    /// A short machine-readable code for `--json`.
    pub fn code(&self) -> String {
        let code = match self {
            CliError::Settings(_) => "config",
            CliError::Usage { .. } => "usage",
            CliError::Client(ClientError::Unreachable { .. }) => "unreachable",
            CliError::Client(_) => "ipc_failed",
            CliError::NotRunning { .. } => "not_running",
            CliError::NoTcpPort { .. } | CliError::TcpFile { .. } => "no_tcp",
            CliError::TcpNotDaemon { .. } => "tcp_not_daemon",
            CliError::TokenMode { .. } => "insecure_token",
            CliError::Api { body, .. } => {
                return body["error"].as_str().unwrap_or("api_error").to_string()
            }
            CliError::UnknownPeer { .. } => "unknown_peer",
            CliError::ColdPath(e) => e.code(),
            CliError::DaemonUnresponsive { .. } => "daemon_unresponsive",
            CliError::Service(_) => "service",
            CliError::Host(_) => "host_fingerprint",
            CliError::Files(_) => "files",
            CliError::Daemon(_) => "daemon",
            CliError::Signal { .. } | CliError::StillRunning { .. } => "stop_failed",
            CliError::DetachSpawn { .. }
            | CliError::DetachExited { .. }
            | CliError::DetachTimeout { .. } => "detach_failed",
            CliError::StreamEnded { .. } => "stream_ended",
        };
        code.to_string()
    }

    /// The `--json` document for this failure.
    pub fn to_json(&self, message: &str) -> Value {
        let mut v = json!({
            "ok": false,
            "error": self.code(),
            "message": message,
            "exit_code": self.exit_code(),
        });
        match self {
            CliError::Api { status, body, .. } => {
                v["status"] = (*status).into();
                v["response"] = body.clone();
            }
            CliError::UnknownPeer { name, online } => {
                v["name"] = name.clone().into();
                v["online"] = online.clone().into();
            }
            CliError::NotRunning { socket, .. } => {
                v["running"] = false.into();
                v["socket"] = socket.display().to_string().into();
            }
            _ => {}
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_map_to_spec_exit_codes() {
        let api = |status| CliError::Api {
            what: "send",
            status,
            body: json!({"error": "x"}),
        };
        assert_eq!(api(400).exit_code(), 2);
        assert_eq!(api(404).exit_code(), 2);
        assert_eq!(api(413).exit_code(), 2);
        assert_eq!(api(401).exit_code(), 3);
        assert_eq!(api(403).exit_code(), 3);
        assert_eq!(api(409).exit_code(), 1);
        assert_eq!(api(503).exit_code(), 1);
        assert_eq!(api(409).code(), "x");
    }

    #[test]
    fn api_error_descriptions_are_one_line_and_name_the_code() {
        assert_eq!(
            describe_api_error(
                &json!({"error": "invalid_request", "detail": "`to` must not be empty"})
            ),
            "invalid_request: `to` must not be empty"
        );
        assert_eq!(
            describe_api_error(&json!({"error": "unknown_mesh", "meshes": ["a", "b"]})),
            "unknown_mesh: meshes a, b"
        );
        assert_eq!(
            describe_api_error(&json!({"error": "unknown_peer"})),
            "unknown_peer"
        );
        assert_eq!(describe_api_error(&json!({"raw": "oops"})), "error: oops");
    }
}
