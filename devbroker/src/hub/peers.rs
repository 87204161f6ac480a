//! Frames of an authenticated connection other than `send` (BROKER-PROTOCOL §5): `list_peers`
//! and its `peers_list`, `set_status`/`set_summary`/`set_stats`/`join_group`/`leave_group`
//! (no reply), `set_visible`/`set_profile` (the `ack`-typed reply, and `peer_visible` /
//! `peer_hidden` events), `client_ack` (head: marks delivered; seed: ignored; never a reply). Unknown types and frames whose
//! fields do not fit get no answer at all, as on the real broker.

use std::collections::HashMap;

use claudemesh_actors::time::iso_from_ms;
use claudemesh_actors::wire::{Ack, BrokerFrame, ClientFrame, Group, Peer};
use serde_json::{json, Map, Value};

use super::msg::ConnId;
use super::{Hub, Presence};

/// The reply to `set_visible`/`set_profile`: `{type:"ack", id:_reqId||"", messageId:"",
/// queued:false, _reqId?}` with no `error`.
fn set_reply(req_id: Option<String>) -> BrokerFrame {
    BrokerFrame::Ack(Ack {
        id: req_id.clone().unwrap_or_default(),
        message_id: String::new(),
        queued: false,
        error: None,
        duplicate: None,
        req_id,
    })
}

impl Hub {
    pub(super) fn on_frame(&mut self, conn: ConnId, frame: ClientFrame) {
        if self.presence(conn).is_none() {
            return;
        }
        match frame {
            ClientFrame::Send(send) => self.on_send(conn, send),
            ClientFrame::ListPeers { req_id } => self.list_peers(conn, req_id),
            ClientFrame::SetStatus { status } => {
                if matches!(status.as_str(), "idle" | "working" | "dnd") {
                    self.update(conn, |p| p.status = status);
                }
            }
            ClientFrame::SetSummary { summary } => self.update(conn, |p| p.summary = Some(summary)),
            ClientFrame::SetStats { stats } => self.update(conn, |p| p.stats = Some(stats)),
            ClientFrame::JoinGroup { name, role } => self.update(conn, |p| {
                p.groups.retain(|g| g.name != name);
                p.groups.push(Group { name, role });
            }),
            ClientFrame::LeaveGroup { name } => {
                self.update(conn, |p| p.groups.retain(|g| g.name != name))
            }
            ClientFrame::SetVisible { visible, req_id } => {
                self.update(conn, |p| p.visible = visible);
                if let Some(p) = self.presence(conn) {
                    let event = if visible {
                        "peer_visible"
                    } else {
                        "peer_hidden"
                    };
                    let data = json!({"name": p.display_name, "pubkey": p.routing_pubkey()});
                    self.broadcast_event(p, conn, event, data, true);
                }
                self.send_frame(conn, &set_reply(req_id));
            }
            ClientFrame::SetProfile {
                avatar,
                title,
                bio,
                capabilities,
                req_id,
            } => {
                self.update(conn, |p| {
                    let fields = [
                        ("avatar", avatar.map(Value::from)),
                        ("title", title.map(Value::from)),
                        ("bio", bio.map(Value::from)),
                        ("capabilities", capabilities.map(Value::from)),
                    ];
                    for (key, value) in fields {
                        if let Some(value) = value {
                            p.profile.insert(key.to_owned(), value);
                        }
                    }
                });
                self.send_frame(conn, &set_reply(req_id));
            }
            // The broker takes the rate-limit token before it reads any other field of a
            // `send`, so a malformed one still spends a token (and, when none is left, gets
            // the rate-limit ack); otherwise it throws later and answers nothing.
            ClientFrame::Malformed { kind, raw, .. } if kind == "send" => {
                let id = raw.get("id").and_then(Value::as_str).unwrap_or_default();
                self.take_send_token(conn, id);
            }
            ClientFrame::ClientAck {
                client_message_id,
                broker_message_id,
            } => self.on_client_ack(conn, client_message_id, broker_message_id),
            // A second hello on an authenticated socket, unknown types and other malformed
            // frames: no answer.
            ClientFrame::Hello(_) | ClientFrame::Unknown { .. } | ClientFrame::Malformed { .. } => {
            }
        }
    }

    fn update(&mut self, conn: ConnId, change: impl FnOnce(&mut Presence)) {
        if let Some(p) = self.presence_mut(conn) {
            change(p);
        }
    }

    /// `peers_list` (§5.1): every presence of the mesh oldest first, the caller's own included;
    /// hidden presences only for their own member. In-memory fields come from the last
    /// connection with the same routing pubkey, as in the broker's lookup.
    fn list_peers(&self, conn: ConnId, req_id: Option<String>) {
        let Some(me) = self.presence(conn) else {
            return;
        };
        let all = self.mesh_conns(&me.mesh_id);
        let mut by_key: HashMap<&str, &Presence> = HashMap::new();
        for (_, p) in &all {
            by_key.insert(p.routing_pubkey(), p);
        }
        let peers = all
            .iter()
            .filter_map(|(_, p)| {
                let live = by_key.get(p.routing_pubkey()).copied().unwrap_or(p);
                if !live.visible && p.member_id != me.member_id {
                    return None;
                }
                Some(peer_entry(p, live))
            })
            .collect();
        self.send_frame(conn, &BrokerFrame::PeersList { req_id, peers });
    }
}

fn peer_entry(row: &Presence, live: &Presence) -> Peer {
    let profile = (!live.profile.is_empty()).then(|| Value::Object(live.profile.clone()));
    Peer {
        pubkey: row.routing_pubkey().to_owned(),
        member_pubkey: Some(row.member_pubkey.clone()),
        display_name: row.display_name.clone(),
        status: Some(row.status.clone()),
        summary: row.summary.clone(),
        groups: json!(row.groups),
        session_id: Some(row.session_id.clone()),
        connected_at: Some(iso_from_ms(row.connected_at)),
        cwd: Some(row.cwd.clone()),
        peer_role: row.peer_role.map(str::to_owned),
        hostname: live.hostname.clone(),
        peer_type: live.peer_type.clone(),
        channel: live.channel.clone(),
        model: live.model.clone(),
        stats: live.stats.clone(),
        visible: Some(live.visible),
        profile,
        extra: Map::new(),
    }
}
