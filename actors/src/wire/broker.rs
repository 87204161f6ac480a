//! Broker → client frames (BROKER-PROTOCOL.md §1.6, §1.7, §2.4, §4, §5.1): what the daemon reads
//! and what the dev broker sends.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{explain, serialize_raw, serialize_raw_with_reason};

/// A frame sent by the broker to a client, tagged by its `type`.
///
/// Unsolicited frames of features the daemon does not implement (`state_change`,
/// `stream_data`, `mcp_call_forward`, ...) decode as [`BrokerFrame::Unknown`].
///
/// Decode with [`super::decode_broker`]: the derived `Deserialize` alone rejects unknown types instead
/// of yielding `Unknown`. Encode with [`super::encode`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BrokerFrame {
    /// `hello_ack`: the handshake succeeded (§1.7). A `push` may arrive before it.
    HelloAck(HelloAck),
    /// `error`: `no_hello` (socket stays open) or a hello rejection followed by a close (§1.6).
    Error {
        /// Machine code: `no_hello`, `bad_signature`, `timestamp_skew`, `revoked`, ...
        code: String,
        /// Human text, e.g. `hello rejected: bad_signature`.
        message: String,
        /// Correlation id; hello errors leave it out.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// `ack`: the answer to a `send`, and also to `set_visible`/`set_profile` (see [`Ack`]).
    Ack(Ack),
    /// `push`: a message or a system event (§4).
    Push(Push),
    /// `peers_list`: the answer to `list_peers` (§5.1); includes the caller's own presences.
    PeersList {
        /// Echo of the request's `_reqId`, only if it had one.
        #[serde(rename = "_reqId", default, skip_serializing_if = "Option::is_none")]
        req_id: Option<String>,
        /// Connected, visible presences, oldest first.
        peers: Vec<Peer>,
    },
    /// Any other `type`; `raw` is the whole frame and is what gets encoded.
    #[serde(untagged, skip_deserializing, serialize_with = "serialize_raw")]
    Unknown {
        /// The frame's `type` string.
        kind: String,
        /// The whole frame as received.
        raw: Value,
    },
    /// A known `type` whose fields do not fit (missing, or of the wrong JSON type).
    #[serde(
        untagged,
        skip_deserializing,
        serialize_with = "serialize_raw_with_reason"
    )]
    Malformed {
        /// The frame's `type` string (one of [`BrokerFrame::KNOWN_KINDS`]).
        kind: String,
        /// The whole frame as received.
        raw: Value,
        /// The decoder's explanation, for logs.
        reason: String,
    },
}

impl BrokerFrame {
    /// The `type` strings that decode into a typed variant; every other one is `Unknown`.
    pub const KNOWN_KINDS: &'static [&'static str] =
        &["hello_ack", "error", "ack", "push", "peers_list"];

    /// The frame's `type` string. Also set for `Malformed`, so a client can still see that,
    /// for example, a `hello_ack` it cannot fully read has arrived.
    pub fn kind(&self) -> &str {
        match self {
            Self::HelloAck(_) => "hello_ack",
            Self::Error { .. } => "error",
            Self::Ack(_) => "ack",
            Self::Push(_) => "push",
            Self::PeersList { .. } => "peers_list",
            Self::Unknown { kind, .. } | Self::Malformed { kind, .. } => kind,
        }
    }
}

/// Why a frame of a known `kind` failed to decode, naming the field where possible.
pub(super) fn malformed_reason(kind: &str, raw: &Value, err: &serde_json::Error) -> String {
    match kind {
        "hello_ack" => explain::<HelloAck>(kind, raw, err),
        "ack" => explain::<Ack>(kind, raw, err),
        "push" => explain::<Push>(kind, raw, err),
        "peers_list" => explain::<PeersOnly>(kind, raw, err),
        _ => format!("`{kind}` frame: a field is missing or has the wrong JSON type"),
    }
}

/// The `peers` field alone, to explain a `peers_list` that fails to decode.
#[derive(Deserialize)]
struct PeersOnly {
    #[serde(rename = "peers")]
    _peers: Vec<Peer>,
}

/// `hello_ack` (§1.7). Clients need only its arrival; the nested objects are kept as loose JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelloAck {
    /// The broker's 32-character presence id for this connection.
    pub presence_id: String,
    /// `hello.displayName`, else the member's display name.
    pub member_display_name: String,
    /// Member row values: `{roleTag, groups, messageMode}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_profile: Option<Value>,
    /// `{selfEditable: {displayName, roleTag, groups, messageMode}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh_policy: Option<Value>,
    /// `true` when saved peer state existed (after the member's first disconnect ever).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored: Option<bool>,
    /// Saved summary, only when non-empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_summary: Option<String>,
    /// ISO 8601 time of the member's last disconnect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_at: Option<String>,
    /// `[{name, role}]`, only when the hello had no groups and saved ones exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_groups: Option<Value>,
    /// `{messagesIn, messagesOut, toolCalls, errors}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_stats: Option<Value>,
    /// Running mesh services; absent when the broker's lookup failed (as in every recording).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Value>,
}

/// An `ack` frame (§2.4). One struct covers both shapes the broker sends with `type:"ack"`:
///
/// - the answer to a `send`: `{id, messageId, queued:true}` on success, or
///   `{id, messageId:"", queued:false, error}` on failure (a deduplicating dev broker may add
///   `duplicate:true` to a success);
/// - the answer to `set_visible`/`set_profile`: `{id:<_reqId or "">, messageId:"", queued:false,
///   _reqId?}`, with **no** `error`.
///
/// A client tells them apart by [`Ack::is_set_reply`] (empty `messageId`, `queued:false`, no
/// `error`), which no send ack matches; and the daemon sends `set_*` without `_reqId`, so their
/// `id` is `""` and never equals a send's `id` (a non-empty `client_message_id`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Echo of `send.id` (or of `_reqId` for `set_*`), `""` when there was none.
    pub id: String,
    /// `message_queue.id` on success, `""` otherwise.
    #[serde(rename = "messageId")]
    pub message_id: String,
    /// `true` when the broker accepted the send.
    pub queued: bool,
    /// Failure text, byte-exact (e.g. `rate_limit: max 60 msg/min (burst 10) — slow down`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Dev broker idempotency: the send repeated an already accepted `client_message_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<bool>,
    /// Echo of `_reqId` on `set_*` replies.
    #[serde(rename = "_reqId", default, skip_serializing_if = "Option::is_none")]
    pub req_id: Option<String>,
}

impl Ack {
    /// The send was accepted: `queued` and no `error`.
    pub fn is_success(&self) -> bool {
        self.queued && self.error.is_none()
    }

    /// The shape of a `set_visible`/`set_profile` reply: empty `messageId`, not queued, no error.
    pub fn is_set_reply(&self) -> bool {
        self.message_id.is_empty() && !self.queued && self.error.is_none()
    }
}

/// A `push` (§4). Live multicast pushes carry the sender fields; drained pushes (all DMs) carry
/// only the minimal envelope; system events have `subtype:"system"` and `senderPubkey:"system"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Push {
    /// `message_queue.id`, or a UUID v4 for system events.
    #[serde(rename = "messageId")]
    pub message_id: String,
    /// The mesh's id.
    #[serde(rename = "meshId")]
    pub mesh_id: String,
    /// Session pubkey of the sending connection, else its member pubkey; `system` for events.
    #[serde(rename = "senderPubkey")]
    pub sender_pubkey: String,
    /// Sender member pubkey (live multicast only).
    #[serde(
        rename = "senderMemberPubkey",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub sender_member_pubkey: Option<String>,
    /// Sender member id (live multicast only).
    #[serde(
        rename = "senderMemberId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub sender_member_id: Option<String>,
    /// Sender display name (live multicast only).
    #[serde(
        rename = "senderName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub sender_name: Option<String>,
    /// Topic name (live topic pushes only, which the real broker never sends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Reply target (live multicast only).
    #[serde(rename = "replyToId", default, skip_serializing_if = "Option::is_none")]
    pub reply_to_id: Option<String>,
    /// `now` | `next` | `low`; kept as a string so an unexpected value never loses a message.
    pub priority: String,
    /// Standard base64, `""` for system events and scheduler sends.
    pub nonce: String,
    /// Standard base64, `""` for system events.
    pub ciphertext: String,
    /// ISO 8601.
    #[serde(rename = "createdAt")]
    pub created_at: String,
    /// `system` for events, `reminder` for scheduler sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtype: Option<String>,
    /// System event name (`peer_joined`, `peer_returned`, `peer_left`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// System event payload.
    #[serde(rename = "eventData", default, skip_serializing_if = "Option::is_none")]
    pub event_data: Option<Value>,
    /// Sender's idempotency key (head, drained pushes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_message_id: Option<String>,
    /// Sender's request fingerprint (head, drained pushes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_fingerprint: Option<String>,
}

/// One `peers_list` entry (§5.1). Fields the broker adds beyond these are kept in `extra` and
/// re-encoded, so the daemon can pass every broker field through to its API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Peer {
    /// The key to DM this peer: its session pubkey if any, else its member pubkey.
    pub pubkey: String,
    /// The member pubkey.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_pubkey: Option<String>,
    /// Presence display name, else member display name.
    pub display_name: String,
    /// `idle` | `working` | `dnd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Summary; always on the wire, `null` when unset.
    #[serde(default)]
    pub summary: Option<String>,
    /// `[{name, role}]` as sent (loose JSON); `null` when absent, and then not re-encoded.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub groups: Value,
    /// The presence's `hello.sessionId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// ISO 8601 connect time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_at: Option<String>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Head only: `control-plane` | `session` | `service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_role: Option<String>,
    /// Host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// `ai` | `human` | `connector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_type: Option<String>,
    /// Client channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Model name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// `set_stats` values, only if any were received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<Value>,
    /// Present only if an in-memory connection matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visible: Option<bool>,
    /// `{avatar, title, bio, capabilities}`, only if non-empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Value>,
    /// Every other field the broker sent, passed through unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
