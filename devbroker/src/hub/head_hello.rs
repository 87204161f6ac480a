//! The head profile's hello paths (BROKER-PROTOCOL §1.8 head rules, §1.10): the member-`hello`
//! lease reattach, and `session_hello` — its checks in order, the takeover of an entry with the
//! same session pubkey, registration with `peerRole:"session"`, the drain before `hello_ack`,
//! and `peer_joined` to every other connection, the same member's included.
//!
//! A reattach or takeover moves the presence (same `presenceId`, groups, status, profile) from
//! its old connection to the new one and acks silently: no `peer_joined`, no `restored*`
//! fields; the queue is drained first.

use claudemesh_actors::time::now_ms;
use claudemesh_actors::wire::{encode, BrokerFrame, Group, Hello, HelloAck};
use serde_json::{json, Value};

use super::hello::{hello_ack, reject, Refusal, MAX_CONNECTIONS_PER_MESH};
use super::msg::{ConnId, Outgoing};
use super::{Hub, Presence};
use crate::ids::row_id;
use crate::session_hello_check::{check_shapes, check_signatures, SessionRejection};
use crate::state::MemberRow;

fn refusal(rejection: SessionRejection) -> Refusal {
    reject(rejection.code, rejection.message)
}

/// The `session_hello` fields a new presence needs (`session_id NOT NULL`, `pid integer NOT
/// NULL`, `cwd NOT NULL`); without them the real broker's insert throws and nothing answers.
struct SessionFields {
    session_id: String,
    cwd: String,
    display_name: Option<String>,
    groups: Option<Vec<Group>>,
    hostname: Option<String>,
    peer_type: Option<String>,
    channel: Option<String>,
    model: Option<String>,
}

fn session_fields(raw: &Value) -> Option<SessionFields> {
    let text = |key: &str| raw.get(key).and_then(Value::as_str).map(str::to_owned);
    raw.get("pid").filter(|p| p.is_i64() || p.is_u64())?;
    let groups = match raw.get("groups") {
        None | Some(Value::Null) => None,
        Some(list) => Some(serde_json::from_value(list.clone()).ok()?),
    };
    Some(SessionFields {
        session_id: text("sessionId")?,
        cwd: text("cwd")?,
        display_name: text("displayName"),
        groups,
        hostname: text("hostname"),
        peer_type: text("peerType"),
        channel: text("channel"),
        model: text("model"),
    })
}

impl Hub {
    /// Member-`hello` reattach: an offline-leased entry of this mesh with the same non-empty
    /// `sessionPubkey`, or — neither having one — the same `sessionId` and member pubkey, gets
    /// this connection. Returns `false` when there is none.
    pub(super) fn reattach_member(
        &mut self,
        conn: ConnId,
        hello: &Hello,
        member: &MemberRow,
        session_pubkey: Option<&str>,
    ) -> bool {
        let leased = self.conns.iter().find(|(_, c)| {
            c.lease_until.is_some()
                && c.presence.as_ref().is_some_and(|p| {
                    p.mesh_id == member.mesh_id
                        && match (session_pubkey, p.session_pubkey.as_deref()) {
                            (Some(new), Some(old)) => new == old,
                            (None, None) => {
                                p.session_id == hello.session_id && p.member_pubkey == hello.pubkey
                            }
                            _ => false,
                        }
                })
        });
        let Some(old) = leased.map(|(id, _)| *id) else {
            return false;
        };
        let Some(mut presence) = self.conns.remove(&old).and_then(|c| c.presence) else {
            return false;
        };
        presence.cwd = hello.cwd.clone();
        if let Some(name) = hello.display_name.as_deref().filter(|n| !n.is_empty()) {
            presence.display_name = name.to_owned();
        }
        log::debug!("dev broker: {} reattached", presence.presence_id);
        let ack = hello_ack(&presence, member, hello, None);
        self.attach(conn, presence);
        self.drain(conn);
        self.send(conn, Outgoing::HelloAck(encode(&ack)));
        true
    }

    /// Puts `presence` on `conn` (online).
    fn attach(&mut self, conn: ConnId, presence: Presence) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.presence = Some(presence);
            c.lease_until = None;
        }
    }

    pub(super) fn on_session_hello(&mut self, conn: ConnId, raw: &Value) {
        let Some(current) = self.conns.get(&conn) else {
            return;
        };
        if current.presence.is_some() {
            return;
        }
        let admitted = self.admit_session(conn, raw);
        self.answer_refusal(conn, admitted);
    }

    fn admit_session(&mut self, conn: ConnId, raw: &Value) -> Result<(), Refusal> {
        let (session_pubkey, parent_pubkey) = check_shapes(raw).map_err(refusal)?;
        let mesh_id = raw
            .get("meshId")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if self.mesh_conns(&mesh_id).len() >= MAX_CONNECTIONS_PER_MESH {
            return Err(reject("capacity", "mesh at connection capacity".into()));
        }
        check_signatures(raw, now_ms()).map_err(refusal)?;
        let member = self.lookup_member_by_pubkey(
            &mesh_id,
            &parent_pubkey,
            "parent pubkey not found in mesh",
        )?;
        let parent_id = raw.get("parentMemberId").and_then(Value::as_str);
        if parent_id.is_some_and(|id| !id.is_empty() && id != member.id) {
            return Err(reject(
                "parent_member_id_mismatch",
                "parentMemberId does not match parentMemberPubkey".into(),
            ));
        }
        let fields = session_fields(raw).ok_or(Refusal::Silent)?;
        if self.take_over_session(conn, &session_pubkey, &member, &fields) {
            return Ok(());
        }
        self.replace_session(&member.mesh_id, &fields.session_id);
        self.next_seq += 1;
        let presence = Presence {
            presence_id: row_id(),
            seq: self.next_seq,
            mesh_id: member.mesh_id.clone(),
            member_id: member.id.clone(),
            member_pubkey: parent_pubkey,
            session_pubkey: Some(session_pubkey),
            session_id: fields.session_id,
            display_name: fields
                .display_name
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| member.display_name.clone()),
            groups: fields
                .groups
                .unwrap_or_else(|| member.default_groups.clone()),
            visible: true,
            profile: Default::default(),
            status: "idle".into(),
            summary: None,
            stats: None,
            connected_at: now_ms(),
            cwd: fields.cwd,
            hostname: fields.hostname,
            peer_type: fields.peer_type,
            channel: fields.channel,
            model: fields.model,
            peer_role: Some("session"),
        };
        let ack = session_ack(&presence, &member, true);
        self.attach(conn, presence.clone());
        // The drain starts before the ack (§1.2).
        self.drain(conn);
        self.send(conn, Outgoing::HelloAck(encode(&ack)));
        let data = json!({
            "name": presence.display_name,
            "pubkey": presence.routing_pubkey(),
            "groups": presence.groups,
        });
        self.broadcast_event(&presence, conn, "peer_joined", data, true);
        Ok(())
    }

    /// `session_hello` takeover: any entry of the mesh with this session pubkey, online or
    /// leased, moves to `conn`; a live old socket is closed 1000 `session_replaced`.
    fn take_over_session(
        &mut self,
        conn: ConnId,
        session_pubkey: &str,
        member: &MemberRow,
        fields: &SessionFields,
    ) -> bool {
        let found = self.conns.iter().find(|(id, c)| {
            **id != conn
                && c.presence.as_ref().is_some_and(|p| {
                    p.mesh_id == member.mesh_id
                        && p.session_pubkey.as_deref() == Some(session_pubkey)
                })
        });
        let Some(old) = found.map(|(id, _)| *id) else {
            return false;
        };
        let presence = if self.is_leased(old) {
            self.conns.remove(&old).and_then(|c| c.presence)
        } else {
            let taken = self.conns.get_mut(&old).and_then(|c| c.presence.take());
            self.send(
                old,
                Outgoing::Close {
                    code: 1000,
                    reason: "session_replaced".into(),
                },
            );
            taken
        };
        let Some(mut presence) = presence else {
            return false;
        };
        presence.session_id = fields.session_id.clone();
        presence.cwd = fields.cwd.clone();
        if let Some(name) = fields.display_name.as_deref().filter(|n| !n.is_empty()) {
            presence.display_name = name.to_owned();
        }
        log::debug!("dev broker: session {} taken over", presence.presence_id);
        let ack = session_ack(&presence, member, false);
        self.attach(conn, presence);
        self.drain(conn);
        self.send(conn, Outgoing::HelloAck(encode(&ack)));
        true
    }
}

/// The `session_hello` ack (§1.10): `presenceId`, `memberDisplayName`, `memberProfile` (left out
/// on a takeover), `meshPolicy`; never `restored*` or `services`.
fn session_ack(presence: &Presence, member: &MemberRow, with_profile: bool) -> BrokerFrame {
    BrokerFrame::HelloAck(HelloAck {
        presence_id: presence.presence_id.clone(),
        member_display_name: presence.display_name.clone(),
        member_profile: with_profile.then(|| {
            json!({
                "roleTag": null,
                "groups": member.default_groups,
                "messageMode": "push",
            })
        }),
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
    })
}
