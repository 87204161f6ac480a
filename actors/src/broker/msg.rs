//! Messages the [`BrokerConnection`](super::BrokerConnection) accepts, and the notifications
//! it emits to the drainer, the inbox and the supervisor.

use actix::prelude::*;
use serde::Serialize;

use super::error::BrokerError;
use crate::wire::Push;

/// Where the link to one mesh's broker stands (SPEC §8 `broker_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// First attempt in progress.
    Connecting,
    /// `hello_ack` received; sends flow.
    Open,
    /// Lost and waiting out the backoff before the next attempt.
    Reconnecting,
    /// Closed on purpose (shutdown).
    Closed,
    /// Closed by the broker with 4001/4002: terminal, never retried.
    Revoked,
}

impl LinkState {
    /// The name used in health and events.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::Open => "open",
            LinkState::Reconnecting => "reconnecting",
            LinkState::Closed => "closed",
            LinkState::Revoked => "revoked",
        }
    }
}

/// Snapshot of a link for `/v1/health` and the CLI.
#[derive(Debug, Clone, Serialize)]
pub struct LinkStatus {
    /// Mesh slug.
    pub slug: String,
    /// Current state.
    pub broker_status: LinkState,
    /// Unix ms of the last `hello_ack`, while open.
    pub connected_since: Option<i64>,
    /// Last error seen on this link (close reason, hello rejection, I/O).
    pub last_error: Option<String>,
    /// Milliseconds since the last frame was received, while open.
    pub lag_ms: Option<i64>,
    /// Reconnects since start.
    pub reconnects: u64,
    /// The `sessionId` of this link's hello: the daemon's stable id (SPEC §5.6).
    pub session_id: String,
}

/// Query: the link's state.
#[derive(Message)]
#[rtype(result = "LinkStatus")]
pub struct GetLinkStatus;

/// Result of resolving a name or prefix against the peer list (SPEC §5.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Exactly one peer matched; its `pubkey` is the DM target.
    Found { pubkey: String },
    /// No peer matched in a fresh list.
    NotFound,
    /// Several peers matched.
    Ambiguous { candidates: Vec<String> },
    /// The broker is not connected and no list is cached: resolve at drain time.
    Unavailable,
}

/// Query: resolve a display name or a 16–63 hex prefix. `max_age_ms` bounds how old the cached
/// list may be before a refresh is awaited (bounded by `wait_ms`).
#[derive(Message)]
#[rtype(result = "Resolution")]
pub struct ResolvePeer {
    /// Display name or hex prefix, as given.
    pub name: String,
    /// How fresh the list must be to trust a miss.
    pub max_age_ms: i64,
    /// How long to wait for a refresh when the list is older than `max_age_ms`.
    pub wait_ms: u64,
}

/// The peer list as last received from the broker.
#[derive(Debug, Clone)]
pub struct PeersSnapshot {
    /// Entries verbatim from `peers_list` (every broker field kept).
    pub peers: Vec<serde_json::Value>,
    /// Unix ms when the list was received.
    pub fetched_at: i64,
    /// True when the list is older than the freshness bound or the link is down.
    pub stale: bool,
}

/// Query: the cached peer list, refreshed first if the link is open and the cache is old.
#[derive(Message)]
#[rtype(result = "Result<PeersSnapshot, BrokerError>")]
pub struct GetPeers;

/// Profile fields of `POST /v1/profile`; each `Some` is applied and remembered.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, Serialize)]
pub struct Profile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visible: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bio: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
}

impl Profile {
    /// Overlays the fields set in `other` onto `self`.
    pub fn merge(&mut self, other: &Profile) {
        macro_rules! take {
            ($($f:ident),*) => { $( if other.$f.is_some() { self.$f = other.$f.clone(); } )* };
        }
        take!(summary, status, visible, avatar, title, bio, capabilities);
    }

    /// Names of the fields that are set, in wire order.
    pub fn field_names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        macro_rules! name {
            ($($f:ident),*) => { $( if self.$f.is_some() { v.push(stringify!($f)); } )* };
        }
        name!(summary, status, visible, avatar, title, bio, capabilities);
        v
    }
}

/// Command: apply a profile update now if the link is open, and after every reconnect.
#[derive(Message)]
#[rtype(result = "ProfileApplied")]
pub struct ApplyProfile {
    /// The fields to change.
    pub profile: Profile,
}

/// Reply to [`ApplyProfile`].
#[derive(Debug, Clone, Serialize)]
pub struct ProfileApplied {
    /// Field names sent to the broker now.
    pub applied: Vec<&'static str>,
    /// True when the link is down and the profile waits for the next `hello_ack`.
    pub pending: bool,
    /// The profile could not be saved (`profile-<mesh>.json`): nothing was applied or sent.
    #[serde(skip)]
    pub not_saved: Option<crate::storage::StorageFault>,
}

/// One outbox row ready for the wire: the drainer has resolved and encrypted it.
#[derive(Debug, Clone)]
pub struct OutgoingSend {
    /// The row's client_message_id, used as the frame `id` for ack correlation.
    pub client_message_id: String,
    /// 64 hex request fingerprint.
    pub request_fingerprint: String,
    /// Resolved target spec.
    pub target_spec: String,
    pub priority: String,
    pub nonce: String,
    pub ciphertext: String,
    /// Sent as `replyToId` for `#topic` targets.
    pub reply_to_id: Option<String>,
}

/// How a [`DeliverSend`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The broker answered with an `ack` frame.
    Acked {
        queued: bool,
        message_id: String,
        error: Option<String>,
        duplicate: bool,
    },
    /// No ack within `ack_timeout_ms`.
    Timeout,
    /// The link is not open, or closed before the ack came.
    NotConnected { reason: String },
}

/// The [`DeliveryOutcome::NotConnected`] reason of a send the pacer held back and a
/// `rate_limit` refusal cancelled: never written, retried like the refused send (uncounted).
pub const RATE_LIMITED_UNSENT: &str = "rate_limit: not sent (the broker's bucket is empty)";

/// Command: send one row and wait for its ack (paced by the mirrored rate-limit bucket).
#[derive(Message)]
#[rtype(result = "DeliveryOutcome")]
pub struct DeliverSend {
    pub send: OutgoingSend,
    /// The drainer's number for this dispatch of the row: an ack that comes after the
    /// timeout is reported back with it ([`LinkEvent::LateAck`]), so the drainer can tell
    /// whether the row has been sent again since.
    pub seq: u64,
}

/// Command: close the socket with 1000 and stay closed (ordered shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseLink;

/// Notification to the drainer: a link opened or changed its peers.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub enum LinkEvent {
    /// `hello_ack` received: drain this mesh.
    Up { mesh: String },
    /// Socket lost: rows in flight on it have failed (their futures resolve `NotConnected`).
    Down { mesh: String },
    /// A peer joined/returned: wake rows targeting any of these keys.
    PeerOnline { mesh: String, keys: Vec<String> },
    /// A `queued:true` ack arrived after its send had already been answered `Timeout`.
    LateAck {
        mesh: String,
        /// The acked frame id (the row's client_message_id).
        client_message_id: String,
        /// The [`DeliverSend::seq`] of the send that timed out.
        seq: u64,
        /// The ack's `messageId`.
        broker_message_id: String,
    },
    /// A session connection's presence changed (SPEC §12): its rows drain over it while
    /// `Open`, wait while `Down`, go through the member connection otherwise.
    Session(super::session::PresenceUpdate),
}

/// A push to be stored; the reply tells the connection what to `client_ack`.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<PushStored, crate::inbox::msg::InboxActorError>")]
pub struct PushReceived {
    pub mesh: String,
    pub push: Push,
    /// The session key, for a push that arrived on a session connection (SPEC §12
    /// "Receiving as a session"); `None` on the member connection.
    pub session: Option<crate::crypto::MemberKeys>,
}

/// Reply to [`PushReceived`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushStored {
    /// Stored now, or already stored (duplicate): ack either way.
    Ack {
        client_message_id: String,
        broker_message_id: String,
    },
    /// Our own echo or a system push: nothing to ack.
    Ignored,
}
