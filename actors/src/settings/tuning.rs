//! The daemon's tuning (SPEC.md §10 "Configuration keys"): the typed form of `daemon.toml`.
//! Every key has a built-in default, so an absent file or section means defaults; an unknown
//! key is an error naming it. `config/daemon.toml` documents the same defaults and a test keeps
//! the two identical.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{env, SettingsError};

/// All tunables. Sections mirror `daemon.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tuning {
    /// Slug of the mesh used when a send names none; `None` = the first selected mesh.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_mesh: Option<String>,
    /// The local HTTP API.
    pub ipc: IpcTuning,
    /// The durable outbox and its drain.
    pub outbox: OutboxTuning,
    /// Broker connections.
    pub broker: BrokerTuning,
    /// The durable inbox and the event journal.
    pub inbox: InboxTuning,
    /// Clone detection (host fingerprint).
    pub clone: CloneTuning,
}

/// `[ipc]`: the Unix socket and loopback TCP API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IpcTuning {
    /// Serve the API on 127.0.0.1 as well as on the socket.
    pub tcp_enabled: bool,
    /// Loopback TCP port; 0 = any free port (the bound one is written to `tcp.port`).
    pub tcp_port: u16,
    /// Let `/v1/health` answer on TCP without the bearer token.
    pub public_health: bool,
    /// Requests in flight before new ones get 429 `daemon_busy`.
    pub max_inflight: usize,
    /// Concurrent `/v1/events` SSE streams.
    pub max_sse_streams: usize,
    /// Request body limit of `POST /v1/send`, bytes.
    pub send_body_limit: usize,
    /// Request body limit of every other route, bytes.
    pub body_limit: usize,
    /// Interval of SSE keep-alive comments, milliseconds.
    pub sse_heartbeat_ms: u64,
}

impl Default for IpcTuning {
    fn default() -> Self {
        IpcTuning {
            tcp_enabled: true,
            tcp_port: 47823,
            public_health: false,
            max_inflight: 64,
            max_sse_streams: 32,
            send_body_limit: 262_144,
            body_limit: 16_384,
            sse_heartbeat_ms: 15_000,
        }
    }
}

/// `[outbox]`: retries, expiry and the drain window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboxTuning {
    /// Send attempts before a row becomes `dead`.
    pub max_attempts: u32,
    /// Age after which an undelivered row becomes `dead`, hours.
    pub max_age_hours: u64,
    /// Rows in flight (sent, not yet acked) per mesh.
    pub window: u32,
    /// Rows of one destination in flight at once (sent back to back, in order). 1 (the
    /// default) keeps SPEC §5.4's one-in-flight order against any broker; more pipelines the
    /// drain, in order only against a broker that handles one socket's frames in order (the
    /// dev broker; the real one does not, BROKER-PROTOCOL §0).
    pub destination_window: u32,
    /// SQLite durability of accepted sends.
    pub durability: Durability,
    /// Days a delivered row keeps its payload before it is cleared.
    pub payload_retention_days: u32,
}

impl Default for OutboxTuning {
    fn default() -> Self {
        OutboxTuning {
            max_attempts: 25,
            max_age_hours: 168,
            window: 32,
            destination_window: 1,
            durability: Durability::Normal,
            payload_retention_days: 7,
        }
    }
}

/// `[broker]`: handshake, acks, liveness, rate limit, frame size, reconnect backoff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerTuning {
    /// Time allowed for `hello_ack` after `hello`, milliseconds.
    pub hello_timeout_ms: u64,
    /// Time allowed for a `send`'s ack before the row is retried, milliseconds.
    pub ack_timeout_ms: u64,
    /// Interval of client WebSocket pings, milliseconds.
    pub ping_interval_ms: u64,
    /// Silence after which the connection is declared dead, milliseconds.
    pub stale_after_ms: u64,
    /// Token-bucket size of the client-side send rate limit (the broker's: 10).
    pub rate_burst: u32,
    /// Token-bucket refill of the client-side send rate limit, sends per second.
    pub rate_per_sec: u32,
    /// Largest WebSocket frame accepted from the broker, bytes.
    pub max_frame_bytes: usize,
    /// Cap of the full-jitter reconnect backoff, milliseconds.
    pub reconnect_cap_ms: u64,
    /// Redelivery nudge (SPEC §6): against a leasing (head) broker, this long after a link
    /// opens following a start or an unclean link end, say hello once more (a silent
    /// reattach) so DMs claimed by the dead socket are pushed again. Milliseconds; the head
    /// broker's claim (30 s) + sweep (15 s) + margin.
    pub redelivery_nudge_ms: u64,
    /// A session connection whose `session_hello` the broker does not serve (`no_hello`, no
    /// answer) or refused tries again after this long, milliseconds (SPEC §12: 5 minutes).
    pub session_retry_ms: u64,
    /// Lifetime of the attestation the daemon signs on each session connect, milliseconds
    /// (SPEC §12: 12 h; the broker refuses more than 24 h with `ttl_too_long`).
    pub session_attestation_ttl_ms: u64,
}

impl Default for BrokerTuning {
    fn default() -> Self {
        BrokerTuning {
            hello_timeout_ms: 5_000,
            ack_timeout_ms: 15_000,
            ping_interval_ms: 30_000,
            stale_after_ms: 75_000,
            rate_burst: 10,
            rate_per_sec: 1,
            max_frame_bytes: 16_777_216,
            reconnect_cap_ms: 30_000,
            redelivery_nudge_ms: 47_000,
            session_retry_ms: 300_000,
            session_attestation_ttl_ms: 12 * 3_600_000,
        }
    }
}

/// `[inbox]`: retention of received messages and of the event journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InboxTuning {
    /// Days a received message is kept.
    pub retention_days: u32,
    /// Events kept in the journal for SSE replay (`Last-Event-ID`).
    pub event_journal: u64,
}

impl Default for InboxTuning {
    fn default() -> Self {
        InboxTuning {
            retention_days: 30,
            event_journal: 10_000,
        }
    }
}

/// `[clone]`: what to do when the host fingerprint does not match.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloneTuning {
    /// The decision on a fingerprint mismatch.
    pub policy: ClonePolicy,
}

/// How hard SQLite syncs an accepted send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// WAL with `synchronous=NORMAL`: survives a process crash, may lose the last commits on
    /// power loss.
    #[default]
    Normal,
    /// `synchronous=FULL`: an accepted send survives power loss.
    Full,
}

/// The decision when the host fingerprint does not match the stored one (SPEC.md §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClonePolicy {
    /// Refuse to start (exit 4) until `claudemeshd accept-host`.
    #[default]
    Refuse,
    /// Start, logging a warning.
    Warn,
    /// Start silently.
    Allow,
}

/// Word forms shared by `FromStr`, `Display` and error messages.
macro_rules! word_enum {
    ($ty:ident, $expected:literal, $($variant:ident = $word:literal),+) => {
        impl $ty {
            /// The accepted words, for messages.
            pub const EXPECTED: &'static str = $expected;

            /// The word used in `daemon.toml`, flags and the environment.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $word),+ }
            }
        }

        impl FromStr for $ty {
            type Err = SettingsError;

            fn from_str(s: &str) -> Result<Self, SettingsError> {
                match s {
                    $($word => Ok($ty::$variant),)+
                    _ => Err(SettingsError::UnknownChoice {
                        value: s.to_string(),
                        expected: $expected,
                    }),
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

word_enum!(Durability, "normal, full", Normal = "normal", Full = "full");
word_enum!(
    ClonePolicy,
    "refuse, warn, allow",
    Refuse = "refuse",
    Warn = "warn",
    Allow = "allow"
);

/// Parses the text of `daemon.toml`; `file` is only used in error messages. Absent keys take
/// their defaults; an unknown key, a wrong type or a value outside the key's range is an
/// error naming the file and the key.
pub fn parse_daemon_toml(text: &str, file: &Path) -> Result<Tuning, SettingsError> {
    let tuning: Tuning = toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |span| span.start);
        let (line, column) = line_column(text, offset);
        SettingsError::DaemonToml {
            file: file.to_path_buf(),
            line,
            column,
            message: e.message().trim_end().to_string(),
        }
    })?;
    if let Some((key, reason)) = env::first_invalid(&tuning) {
        return Err(SettingsError::TuningValue {
            file: file.to_path_buf(),
            key,
            reason,
        });
    }
    Ok(tuning)
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
#[path = "tuning_tests.rs"]
mod tests;
