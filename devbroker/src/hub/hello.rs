//! Member `hello` handling (BROKER-PROTOCOL §1.2–§1.8): validation in the seed broker's order,
//! member lookup in the database (so members added while the broker runs are seen), (head) the
//! lease reattach of `head_hello`, `session_replaced` dedupe, registration, the drain started
//! before `hello_ack`, and the `peer_joined` / `peer_returned` event to the other members'
//! connections.

use claudemesh_actors::time::{iso_from_ms, now_ms};
use claudemesh_actors::wire::{encode, BrokerFrame, Hello, HelloAck};
use serde_json::{json, Map, Value};

use super::msg::{ConnId, Outgoing};
use super::{Hub, Presence};
use crate::hello_check::{check_session_pubkey, check_signature};
use crate::ids::row_id;
use crate::peer_state::{self, PeerState};
use crate::state::{self, MemberRow};

/// Connections a mesh may hold at once (`MAX_CONNECTIONS_PER_MESH`).
pub const MAX_CONNECTIONS_PER_MESH: usize = 100;

/// How a hello ends when it does not succeed.
pub(super) enum Refusal {
    /// `error` frame, then close `close_code` with reason `reason`.
    Reject {
        code: &'static str,
        message: String,
        close_code: u16,
        reason: &'static str,
    },
    /// No answer at all (the real broker's swallowed exception).
    Silent,
}

pub(super) fn reject(code: &'static str, message: String) -> Refusal {
    Refusal::Reject {
        code,
        message,
        close_code: 1008,
        reason: code,
    }
}

impl Hub {
    pub(super) fn on_hello(&mut self, conn: ConnId, raw: &Value, typed: Option<Hello>) {
        let Some(current) = self.conns.get(&conn) else {
            return;
        };
        if let Some(current) = &current.presence {
            // A second hello on an authenticated socket is ignored (see docs/dev-broker.md),
            // except on the head profile with the socket's own `sessionId`: the head broker's
            // dedupe then closes this very socket 1000 `session_replaced`, registers a new
            // presence on it (its drain and ack lost on the closing socket, its
            // `peer_joined`/`peer_returned` sent) that the close puts into a lease.
            let same_session = typed
                .as_ref()
                .is_some_and(|h| h.session_id == current.session_id);
            if !(self.head() && same_session) {
                return;
            }
        }
        let had_presence = current.presence.is_some();
        let admitted = self.admit(conn, raw, typed);
        if had_presence && matches!(admitted, Err(Refusal::Silent)) {
            // The socket keeps its presence (the broker's swallowed exception).
            return;
        }
        self.answer_refusal(conn, admitted);
    }

    /// Answers a failed hello or `session_hello`: nothing, or the error frame and the close.
    pub(super) fn answer_refusal(&mut self, conn: ConnId, result: Result<(), Refusal>) {
        match result {
            Ok(()) => {}
            Err(Refusal::Silent) => self.send(conn, Outgoing::HelloSilent),
            Err(Refusal::Reject {
                code,
                message,
                close_code,
                reason,
            }) => {
                let error = BrokerFrame::Error {
                    code: code.to_owned(),
                    message,
                    id: None,
                };
                self.send_frame(conn, &error);
                self.send(
                    conn,
                    Outgoing::Close {
                        code: close_code,
                        reason: reason.to_owned(),
                    },
                );
            }
        }
    }

    fn admit(&mut self, conn: ConnId, raw: &Value, typed: Option<Hello>) -> Result<(), Refusal> {
        let session_pubkey =
            check_session_pubkey(raw).map_err(|r| reject(r.code(), r.message()))?;
        let mesh_id = raw
            .get("meshId")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if self.mesh_conns(mesh_id).len() >= MAX_CONNECTIONS_PER_MESH {
            return Err(reject("capacity", "mesh connection limit reached".into()));
        }
        check_signature(raw, now_ms()).map_err(|r| reject(r.code(), r.message()))?;
        let member = self.lookup_member(mesh_id, raw)?;
        let hello = typed.ok_or(Refusal::Silent)?;
        if self.head() && self.reattach_member(conn, &hello, &member, session_pubkey.as_deref()) {
            return Ok(());
        }
        let restored = peer_state::load_peer_state(&self.db, &member.mesh_id, &member.id)
            .unwrap_or_else(|err| {
                log::warn!("dev broker: loading peer_state of {}: {err}", member.id);
                None
            });
        self.replace_session(&member.mesh_id, &hello.session_id);
        let presence = self.register(conn, &hello, &member, session_pubkey, restored.as_ref());
        // The drain starts before the ack is built (§1.2): queued pushes precede `hello_ack`.
        self.drain(conn);
        let ack = hello_ack(&presence, &member, &hello, restored.as_ref());
        self.send(conn, Outgoing::HelloAck(encode(&ack)));
        let mut data = json!({
            "name": presence.display_name,
            "pubkey": presence.routing_pubkey(),
            "groups": presence.groups,
        });
        let event = match &restored {
            Some(saved) => {
                data["lastSeenAt"] = json!(iso_from_ms(saved.last_seen_at));
                if !saved.summary.is_empty() {
                    data["summary"] = json!(saved.summary);
                }
                "peer_returned"
            }
            None => "peer_joined",
        };
        self.broadcast_event(&presence, conn, event, data, false);
        Ok(())
    }

    /// Step 4: the member row with this exact pubkey; `revoked` (4002 `banned`) when only a
    /// revoked one exists, `unauthorized` when none does.
    fn lookup_member(&self, mesh_id: &str, raw: &Value) -> Result<MemberRow, Refusal> {
        let pubkey = raw
            .get("pubkey")
            .and_then(Value::as_str)
            .unwrap_or_default();
        self.lookup_member_by_pubkey(mesh_id, pubkey, "hello rejected: unauthorized")
    }

    /// The member row with this exact pubkey, `revoked` or `unauthorized` (with that message).
    pub(super) fn lookup_member_by_pubkey(
        &self,
        mesh_id: &str,
        pubkey: &str,
        unauthorized: &str,
    ) -> Result<MemberRow, Refusal> {
        let rows = state::members_by_pubkey(&self.db, mesh_id, pubkey).map_err(|err| {
            log::warn!("dev broker: member lookup: {err}");
            Refusal::Silent
        })?;
        if let Some(active) = rows.iter().find(|m| m.revoked_at.is_none()) {
            return Ok(active.clone());
        }
        if !rows.is_empty() {
            let mesh_name = state::mesh(&self.db)
                .ok()
                .flatten()
                .map(|m| m.name)
                .unwrap_or_default();
            return Err(Refusal::Reject {
                code: "revoked",
                message: format!(
                    "You've been removed from \"{mesh_name}\". Contact the mesh owner to rejoin."
                ),
                close_code: 4002,
                reason: "banned",
            });
        }
        Err(reject("unauthorized", unauthorized.to_owned()))
    }

    /// Seed dedupe on `(meshId, sessionId)`: the old socket is closed 1000 `session_replaced`
    /// and forgotten without `peer_left` (§1.8); a leased presence (head) is just forgotten.
    pub(super) fn replace_session(&mut self, mesh_id: &str, session_id: &str) {
        let old: Vec<ConnId> = self
            .mesh_conns(mesh_id)
            .into_iter()
            .filter(|(_, p)| p.session_id == session_id)
            .map(|(id, _)| id)
            .collect();
        for id in old {
            if self.is_leased(id) {
                self.conns.remove(&id);
                continue;
            }
            self.end_presence(id, false);
            self.send(
                id,
                Outgoing::Close {
                    code: 1000,
                    reason: "session_replaced".into(),
                },
            );
        }
    }

    fn register(
        &mut self,
        conn: ConnId,
        hello: &Hello,
        member: &MemberRow,
        session_pubkey: Option<String>,
        restored: Option<&PeerState>,
    ) -> Presence {
        let hello_groups = hello.groups.clone().unwrap_or_default();
        let groups = if !hello_groups.is_empty() {
            hello_groups
        } else if let Some(saved) = restored.filter(|s| !s.groups.is_empty()) {
            saved.groups.clone()
        } else {
            member.default_groups.clone()
        };
        self.next_seq += 1;
        let presence = Presence {
            presence_id: row_id(),
            seq: self.next_seq,
            mesh_id: member.mesh_id.clone(),
            member_id: member.id.clone(),
            member_pubkey: member.pubkey.clone(),
            session_pubkey,
            session_id: hello.session_id.clone(),
            display_name: display_name(hello, member),
            groups,
            visible: restored.is_none_or(|s| s.visible),
            profile: restored.map(|s| s.profile.clone()).unwrap_or_default(),
            status: "idle".into(),
            summary: None,
            stats: None,
            connected_at: now_ms(),
            cwd: hello.cwd.clone(),
            hostname: hello.hostname.clone(),
            peer_type: hello.peer_type.clone(),
            channel: hello.channel.clone(),
            model: hello.model.clone(),
            peer_role: self.head().then_some("control-plane"),
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.presence = Some(presence.clone());
        }
        presence
    }
}

/// `hello.displayName || member.display_name` (JavaScript `||`: an empty name falls back).
pub(super) fn display_name(hello: &Hello, member: &MemberRow) -> String {
    match hello.display_name.as_deref() {
        Some(name) if !name.is_empty() => name.to_owned(),
        _ => member.display_name.clone(),
    }
}

/// `hello_ack` as the seed broker builds it (§1.7), without `services` (see the recordings).
pub(super) fn hello_ack(
    presence: &Presence,
    member: &MemberRow,
    hello: &Hello,
    restored: Option<&PeerState>,
) -> BrokerFrame {
    let mut ack = HelloAck {
        presence_id: presence.presence_id.clone(),
        member_display_name: presence.display_name.clone(),
        member_profile: Some(json!({
            "roleTag": null,
            "groups": member.default_groups,
            "messageMode": "push",
        })),
        mesh_policy: Some(json!({
            "selfEditable": {
                "displayName": true, "roleTag": true, "groups": true, "messageMode": true,
            }
        })),
        restored: None,
        last_summary: None,
        last_seen_at: None,
        restored_groups: None,
        restored_stats: None,
        services: None,
    };
    if let Some(saved) = restored {
        ack.restored = Some(true);
        ack.last_seen_at = Some(iso_from_ms(saved.last_seen_at));
        if !saved.summary.is_empty() {
            ack.last_summary = Some(saved.summary.clone());
        }
        let hello_had_groups = hello.groups.as_ref().is_some_and(|g| !g.is_empty());
        if !hello_had_groups && !saved.groups.is_empty() {
            ack.restored_groups = Some(json!(saved.groups));
        }
        ack.restored_stats = Some(Value::Object(restored_stats(&saved.stats)));
    }
    BrokerFrame::HelloAck(ack)
}

/// `{messagesIn, messagesOut, toolCalls, errors}` from the saved stats, zeros when missing.
fn restored_stats(saved: &Map<String, Value>) -> Map<String, Value> {
    ["messagesIn", "messagesOut", "toolCalls", "errors"]
        .iter()
        .map(|key| {
            let value = saved.get(*key).filter(|v| v.is_number()).cloned();
            ((*key).to_owned(), value.unwrap_or(json!(0)))
        })
        .collect()
}
