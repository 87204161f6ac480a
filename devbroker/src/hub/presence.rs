//! One presence's in-memory entry (the broker's `connections` map value) and its read-only
//! view for tests.

use std::time::Instant;

use claudemesh_actors::wire::Group;
use serde_json::{Map, Value};

use crate::inspect::PresenceInfo;
use crate::presence_table::PresenceRow;

/// One authenticated connection's in-memory entry (the broker's `connections` map).
#[derive(Clone, Debug)]
pub struct Presence {
    /// 32-character presence id (sent in `hello_ack`).
    pub presence_id: String,
    /// Registration order, to keep `list_peers` stable within one millisecond.
    pub seq: u64,
    /// `hello.meshId`.
    pub mesh_id: String,
    /// The member row's id.
    pub member_id: String,
    /// The member's pubkey.
    pub member_pubkey: String,
    /// `hello.sessionPubkey`, when set.
    pub session_pubkey: Option<String>,
    /// `hello.sessionId` (the dedupe key).
    pub session_id: String,
    /// `hello.displayName || member.display_name`.
    pub display_name: String,
    /// Current groups.
    pub groups: Vec<Group>,
    /// `set_visible`; hidden presences get no multicast and are not listed to other members.
    pub visible: bool,
    /// `set_profile` fields.
    pub profile: Map<String, Value>,
    /// `idle` | `working` | `dnd`.
    pub status: String,
    /// `set_summary`; `None` until set (listed as `null`).
    pub summary: Option<String>,
    /// `set_stats`, when received.
    pub stats: Option<Value>,
    /// Hello time, unix ms.
    pub connected_at: i64,
    /// `hello.cwd`.
    pub cwd: String,
    /// `hello.hostname`.
    pub hostname: Option<String>,
    /// `hello.peerType`.
    pub peer_type: Option<String>,
    /// `hello.channel`.
    pub channel: Option<String>,
    /// `hello.model`.
    pub model: Option<String>,
    /// Head: `control-plane` (member `hello`) or `session` (`session_hello`); seed: `None`.
    pub peer_role: Option<&'static str>,
}

impl Presence {
    /// The routing identity: the session pubkey if any, else the member pubkey (§3.2).
    pub fn routing_pubkey(&self) -> &str {
        self.session_pubkey
            .as_deref()
            .unwrap_or(&self.member_pubkey)
    }

    /// The view [`crate::DevBroker::presences`] returns; `lease_until` is set while the
    /// presence is in its offline lease.
    pub fn info(&self, lease_until: Option<Instant>, now: Instant) -> PresenceInfo {
        PresenceInfo {
            presence_id: self.presence_id.clone(),
            member_id: self.member_id.clone(),
            member_pubkey: self.member_pubkey.clone(),
            session_pubkey: self.session_pubkey.clone(),
            session_id: self.session_id.clone(),
            peer_role: self.peer_role.map(str::to_owned),
            online: lease_until.is_none(),
            lease_remaining_ms: lease_until.map(|until| {
                u64::try_from(until.saturating_duration_since(now).as_millis()).unwrap_or(u64::MAX)
            }),
        }
    }

    /// Its row in the `presence` mirror.
    pub fn row(&self, lease_until_ms: Option<i64>) -> PresenceRow {
        PresenceRow {
            presence_id: self.presence_id.clone(),
            mesh_id: self.mesh_id.clone(),
            member_id: self.member_id.clone(),
            member_pubkey: self.member_pubkey.clone(),
            session_pubkey: self.session_pubkey.clone(),
            session_id: self.session_id.clone(),
            peer_role: self.peer_role.map(str::to_owned),
            connected_at: self.connected_at,
            lease_until_ms,
        }
    }
}
