//! Client → broker frames (BROKER-PROTOCOL.md §1.3, §2.1, §4.4, §5): what the daemon sends and
//! what the dev broker reads.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{explain, serialize_raw, serialize_raw_with_reason, Group};

/// A frame sent by a client to the broker, tagged by its `type`.
///
/// `session_hello` (head only, §1.10) and every other type the daemon never sends decode as
/// [`ClientFrame::Unknown`].
///
/// Decode with [`super::decode_client`]: the derived `Deserialize` alone rejects unknown types instead
/// of yielding `Unknown`. Encode with [`super::encode`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// `hello`: the signed handshake, first frame on a socket (§1.3).
    Hello(Hello),
    /// `send`: one message to a target (§2.1). The broker answers with an `ack`.
    Send(SendFrame),
    /// `list_peers`: answered by `peers_list` carrying the same `_reqId` (§5.1).
    ListPeers {
        /// Correlation id echoed on the `peers_list`; the daemon uses `pl-<n>`.
        #[serde(rename = "_reqId", default, skip_serializing_if = "Option::is_none")]
        req_id: Option<String>,
    },
    /// `set_status`: `idle` | `working` | `dnd`; no reply (an invalid value is dropped silently).
    SetStatus {
        /// The new status, unvalidated here.
        status: String,
    },
    /// `set_summary`: no reply. A missing `summary` means `""` to the broker, and decodes so.
    SetSummary {
        /// The new summary.
        #[serde(default)]
        summary: String,
    },
    /// `set_visible`: answered by `peer_visible`/`peer_hidden` to others and an `ack`-typed reply.
    SetVisible {
        /// Whether other members' broadcasts and `list_peers` see this connection.
        visible: bool,
        /// Echoed as the reply's `id` and `_reqId`. The daemon leaves it out (SPEC §5.4).
        #[serde(rename = "_reqId", default, skip_serializing_if = "Option::is_none")]
        req_id: Option<String>,
    },
    /// `set_profile`: field-wise merge into the profile; answered by an `ack`-typed reply.
    SetProfile {
        /// Avatar (emoji or URL).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        avatar: Option<String>,
        /// Short title.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        /// Longer description.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bio: Option<String>,
        /// Free-form capability names.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        capabilities: Option<Vec<String>>,
        /// Echoed as the reply's `id` and `_reqId`. The daemon leaves it out (SPEC §5.4).
        #[serde(rename = "_reqId", default, skip_serializing_if = "Option::is_none")]
        req_id: Option<String>,
    },
    /// `set_stats`: kept in broker memory and shown as `peers_list[].stats`; no reply.
    SetStats {
        /// `{messagesIn?, messagesOut?, toolCalls?, uptime?, errors?}`, passed through as is.
        stats: Value,
    },
    /// `join_group`: adds a group to this connection; no reply.
    JoinGroup {
        /// Group name without `@`.
        name: String,
        /// Optional role inside the group.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<String>,
    },
    /// `leave_group`: removes a group from this connection; no reply.
    LeaveGroup {
        /// Group name without `@`.
        name: String,
    },
    /// `client_ack` (head): marks a drained push delivered; no reply. Either id is enough.
    ClientAck {
        /// The push's `client_message_id`, else its `messageId` (SPEC §7.1).
        #[serde(
            rename = "clientMessageId",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        client_message_id: Option<String>,
        /// The push's `messageId`.
        #[serde(
            rename = "brokerMessageId",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        broker_message_id: Option<String>,
    },
    /// Any other `type`; `raw` is the whole frame and is what gets encoded.
    #[serde(untagged, skip_deserializing, serialize_with = "serialize_raw")]
    Unknown {
        /// The frame's `type` string.
        kind: String,
        /// The whole frame as received.
        raw: Value,
    },
    /// A known `type` whose fields do not fit (missing, or of the wrong JSON type). The real
    /// broker throws inside its handler for these and answers nothing.
    #[serde(
        untagged,
        skip_deserializing,
        serialize_with = "serialize_raw_with_reason"
    )]
    Malformed {
        /// The frame's `type` string (one of [`ClientFrame::KNOWN_KINDS`]).
        kind: String,
        /// The whole frame as received.
        raw: Value,
        /// The decoder's explanation, for logs.
        reason: String,
    },
}

impl ClientFrame {
    /// The `type` strings that decode into a typed variant; every other one is `Unknown`.
    pub const KNOWN_KINDS: &'static [&'static str] = &[
        "hello",
        "send",
        "list_peers",
        "set_status",
        "set_summary",
        "set_visible",
        "set_profile",
        "set_stats",
        "join_group",
        "leave_group",
        "client_ack",
    ];

    /// The frame's `type` string.
    pub fn kind(&self) -> &str {
        match self {
            Self::Hello(_) => "hello",
            Self::Send(_) => "send",
            Self::ListPeers { .. } => "list_peers",
            Self::SetStatus { .. } => "set_status",
            Self::SetSummary { .. } => "set_summary",
            Self::SetVisible { .. } => "set_visible",
            Self::SetProfile { .. } => "set_profile",
            Self::SetStats { .. } => "set_stats",
            Self::JoinGroup { .. } => "join_group",
            Self::LeaveGroup { .. } => "leave_group",
            Self::ClientAck { .. } => "client_ack",
            Self::Unknown { kind, .. } | Self::Malformed { kind, .. } => kind,
        }
    }
}

/// Why a frame of a known `kind` failed to decode, naming the field where possible.
pub(super) fn malformed_reason(kind: &str, raw: &Value, err: &serde_json::Error) -> String {
    match kind {
        "hello" => explain::<Hello>(kind, raw, err),
        "send" => explain::<SendFrame>(kind, raw, err),
        _ => format!("`{kind}` frame: a field is missing or has the wrong JSON type"),
    }
}

/// The `hello` handshake (§1.3). The signature covers `meshId|memberId|pubkey|timestamp`,
/// signed with the member key (§1.4); building it is the crypto module's job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hello {
    /// `mesh.id` primary key (not the slug).
    pub mesh_id: String,
    /// Member id; signed, never checked by the broker.
    pub member_id: String,
    /// Member ed25519 public key, 64 lowercase hex.
    pub pubkey: String,
    /// Ephemeral session key, 64 lowercase hex. The daemon leaves it out (SPEC §5.6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_pubkey: Option<String>,
    /// Overrides the member's display name for this presence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Dedupe key per mesh; the daemon uses `daemon-<pid>`.
    pub session_id: String,
    /// Process id.
    pub pid: u32,
    /// Working directory shown to peers.
    pub cwd: String,
    /// Host name shown to peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// `ai` | `human` | `connector`, unvalidated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_type: Option<String>,
    /// Free-form client channel, e.g. `claudemesh-daemon`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Model name shown to peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Initial groups; when non-empty they win over restored and default groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<Group>>,
    /// Declared by the protocol, never read by the broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<u32>,
    /// Declared by the protocol, never read by the broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
    /// Signing time in unix milliseconds; the broker rejects a skew over 60 s.
    pub timestamp: HelloTimestamp,
    /// ed25519 detached signature, 128 lowercase hex.
    pub signature: String,
}

impl Hello {
    /// The timestamp when it is a JSON integer, as the broker requires; `None` otherwise.
    pub fn timestamp_ms(&self) -> Option<i64> {
        match self.timestamp {
            HelloTimestamp::Millis(ms) => Some(ms),
            HelloTimestamp::Other(_) => None,
        }
    }
}

/// `hello.timestamp` as received. The daemon always sends [`HelloTimestamp::Millis`]; a dev
/// broker must answer anything else (a string, a fraction, `null`) with `timestamp_skew`,
/// as the real broker does, so the decoder keeps it instead of failing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HelloTimestamp {
    /// A JSON integer: unix milliseconds.
    Millis(i64),
    /// Any other JSON value, kept verbatim.
    Other(Value),
}

impl From<i64> for HelloTimestamp {
    fn from(ms: i64) -> Self {
        Self::Millis(ms)
    }
}

/// Delivery priority of a `send` (Postgres enum on the broker; any other value makes the broker
/// drop the send without an ack, so it decodes as `Malformed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Delivered even to `working`/`dnd` recipients.
    Now,
    /// The default; held back while the recipient is `dnd`.
    Next,
    /// Held back like `next`.
    Low,
}

impl Priority {
    /// The wire string: `now`, `next` or `low`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Now => "now",
            Self::Next => "next",
            Self::Low => "low",
        }
    }
}

/// The `send` frame (§2.1). Note the snake_case `client_message_id`/`request_fingerprint`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SendFrame {
    /// Correlation id echoed as the ack's `id` (`""` when left out). The daemon puts its
    /// `client_message_id` here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `*`, `@all`, `@<group>`, `#<topicId>` or a 64-hex pubkey (§2.2).
    #[serde(rename = "targetSpec")]
    pub target_spec: String,
    /// Delivery priority.
    pub priority: Priority,
    /// Standard base64 (24 random bytes); opaque to the broker.
    pub nonce: String,
    /// Standard base64; opaque to the broker.
    pub ciphertext: String,
    /// Idempotency key; stored by head brokers, ignored by seed brokers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_message_id: Option<String>,
    /// 64-hex request fingerprint (SPEC §5.2); opaque to the broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_fingerprint: Option<String>,
    /// Topic reply target; only meaningful for `#` targets.
    #[serde(rename = "replyToId", default, skip_serializing_if = "Option::is_none")]
    pub reply_to_id: Option<String>,
    /// Topic mention notifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mentions: Option<Vec<String>>,
    /// Topic body version (1 when left out).
    #[serde(
        rename = "bodyVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub body_version: Option<i64>,
}
