//! System events (BROKER-PROTOCOL.md §4.2) and the push helpers a receiver needs: classifying
//! `subtype:"system"` pushes, the inbox dedupe key and the `client_ack` reply (§4.4).

use serde_json::Value;

use super::{ClientFrame, Group, Push};

/// A classified system push (`subtype:"system"`).
#[derive(Clone, Debug, PartialEq)]
pub enum SystemEvent {
    /// `peer_joined`: a new presence of another member (or, at head, any session).
    PeerJoined {
        /// Display name.
        name: String,
        /// Session pubkey if the peer has one, else its member pubkey.
        pubkey: String,
        /// Groups the presence starts with.
        groups: Vec<Group>,
    },
    /// `peer_returned`: like `peer_joined`, for a member that has connected before.
    PeerReturned {
        /// Display name.
        name: String,
        /// Session pubkey if the peer has one, else its member pubkey.
        pubkey: String,
        /// Groups the presence starts with.
        groups: Vec<Group>,
        /// ISO 8601 time of the member's previous disconnect.
        last_seen_at: Option<String>,
        /// Saved summary; absent when empty.
        summary: Option<String>,
    },
    /// `peer_left`: a presence went away.
    PeerLeft {
        /// Display name.
        name: String,
        /// Session pubkey if the peer had one, else its member pubkey.
        pubkey: String,
    },
    /// Any other event, or a `peer_*` event whose data lacks a string `name`/`pubkey`.
    Other {
        /// The `event` name (`""` when missing).
        event: String,
        /// The `eventData` (`null` when missing).
        data: Value,
    },
}

impl Push {
    /// Whether this is a system event rather than a message.
    pub fn is_system(&self) -> bool {
        self.subtype.as_deref() == Some("system")
    }

    /// Classifies a system push; `None` for message pushes.
    pub fn system_event(&self) -> Option<SystemEvent> {
        if !self.is_system() {
            return None;
        }
        let event = self.event.clone().unwrap_or_default();
        let data = self.event_data.clone().unwrap_or(Value::Null);
        let text = |key: &str| data.get(key).and_then(Value::as_str).map(str::to_owned);
        let classified = match (event.as_str(), text("name"), text("pubkey")) {
            ("peer_joined", Some(name), Some(pubkey)) => Some(SystemEvent::PeerJoined {
                name,
                pubkey,
                groups: groups_of(&data),
            }),
            ("peer_returned", Some(name), Some(pubkey)) => Some(SystemEvent::PeerReturned {
                name,
                pubkey,
                groups: groups_of(&data),
                last_seen_at: text("lastSeenAt"),
                summary: text("summary"),
            }),
            ("peer_left", Some(name), Some(pubkey)) => Some(SystemEvent::PeerLeft { name, pubkey }),
            _ => None,
        };
        Some(classified.unwrap_or(SystemEvent::Other { event, data }))
    }

    /// Inbox dedupe key: `client_message_id` when present and non-empty, else `messageId`.
    pub fn dedupe_key(&self) -> &str {
        match self.client_message_id.as_deref() {
            Some(id) if !id.is_empty() => id,
            _ => &self.message_id,
        }
    }

    /// The `client_ack` that marks this push delivered on a head broker (§4.4, SPEC §7.1).
    pub fn client_ack(&self) -> ClientFrame {
        ClientFrame::ClientAck {
            client_message_id: Some(self.dedupe_key().to_owned()),
            broker_message_id: Some(self.message_id.clone()),
        }
    }
}

/// Reads `eventData.groups` leniently: entries without a string `name` are skipped.
fn groups_of(data: &Value) -> Vec<Group> {
    let Some(entries) = data.get("groups").and_then(Value::as_array) else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|entry| {
            let name = entry.get("name")?.as_str()?.to_owned();
            let role = entry.get("role").and_then(Value::as_str).map(str::to_owned);
            Some(Group { name, role })
        })
        .collect()
}
