//! The connection's view of the wire: builds the frames a daemon sends and classifies what the
//! broker sends into what the connection acts on. Pure (no actix), on top of [`crate::wire`].

use serde_json::Value;

use super::msg::{DeliveryOutcome, OutgoingSend, Profile};
use crate::crypto::MemberKeys;
use crate::settings::JoinedMesh;
use crate::wire::{self, BrokerFrame, ClientFrame, Hello, Priority, Push, SendFrame, SystemEvent};

/// A peer topology event.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerEvent {
    pub name: String,
    pub pubkey: String,
}

/// What an inbound text frame means to the connection.
#[derive(Debug)]
pub enum Inbound {
    /// The handshake completed; `presence_id` as the broker gave it (absent or unreadable:
    /// `None`). A head broker returns the previous link's id on a silent reattach.
    HelloAck {
        presence_id: Option<String>,
    },
    Error {
        code: String,
        message: String,
    },
    /// A send ack, by frame id (set_* acks, which carry `id:""`, never reach here).
    Ack(String, DeliveryOutcome),
    /// A message push to store.
    Message(Box<Push>),
    PeerOnline {
        event: PeerEvent,
        returned: bool,
    },
    PeerLeft(PeerEvent),
    System {
        event: String,
        data: Value,
    },
    Peers(Vec<Value>),
    Ignored(String),
}

/// The daemon's hello: member identity, no `sessionPubkey` (SPEC §5.6).
pub fn hello(
    mesh: &JoinedMesh,
    keys: &MemberKeys,
    display_name: Option<&str>,
    groups: &[crate::wire::Group],
    session_id: &str,
    timestamp_ms: i64,
) -> String {
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "/".to_string());
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty());
    wire::encode(&ClientFrame::Hello(Hello {
        mesh_id: mesh.mesh_id.clone(),
        member_id: mesh.member_id.clone(),
        pubkey: mesh.pubkey.clone(),
        session_pubkey: None,
        display_name: display_name.map(str::to_string),
        session_id: session_id.to_string(),
        pid: std::process::id(),
        cwd,
        hostname,
        peer_type: Some("ai".into()),
        channel: Some("claudemesh-daemon".into()),
        model: None,
        // Groups from config.json; none = the member's default groups on the broker.
        groups: (!groups.is_empty()).then(|| groups.to_vec()),
        protocol_version: None,
        capabilities: None,
        timestamp: timestamp_ms.into(),
        signature: keys.sign_hello(&mesh.mesh_id, &mesh.member_id, timestamp_ms),
    }))
}

/// `list_peers` with a `pl-<n>` request id.
pub fn list_peers(seq: u64) -> String {
    wire::encode(&ClientFrame::ListPeers {
        req_id: Some(format!("pl-{seq}")),
    })
}

/// The `set_*` frames for the fields of `p` that are set; sent without `_reqId` so their
/// `ack`-typed replies carry `id:""` and can never be taken for a send's ack.
pub fn profile_frames(p: &Profile) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(summary) = &p.summary {
        out.push(wire::encode(&ClientFrame::SetSummary {
            summary: summary.clone(),
        }));
    }
    if let Some(status) = &p.status {
        out.push(wire::encode(&ClientFrame::SetStatus {
            status: status.clone(),
        }));
    }
    if let Some(visible) = p.visible {
        out.push(wire::encode(&ClientFrame::SetVisible {
            visible,
            req_id: None,
        }));
    }
    if p.avatar.is_some() || p.title.is_some() || p.bio.is_some() || p.capabilities.is_some() {
        out.push(wire::encode(&ClientFrame::SetProfile {
            avatar: p.avatar.clone(),
            title: p.title.clone(),
            bio: p.bio.clone(),
            capabilities: p.capabilities.clone(),
            req_id: None,
        }));
    }
    out
}

/// A drained row as a `send` frame (`id` = `client_message_id` for ack correlation).
pub fn send(s: &OutgoingSend) -> String {
    let priority = match s.priority.as_str() {
        "now" => Priority::Now,
        "low" => Priority::Low,
        _ => Priority::Next,
    };
    wire::encode(&ClientFrame::Send(SendFrame {
        id: Some(s.client_message_id.clone()),
        target_spec: s.target_spec.clone(),
        priority,
        nonce: s.nonce.clone(),
        ciphertext: s.ciphertext.clone(),
        client_message_id: Some(s.client_message_id.clone()),
        request_fingerprint: Some(s.request_fingerprint.clone()),
        // The broker reads `replyToId` for topic posts only (BROKER-PROTOCOL §2.1).
        reply_to_id: s
            .reply_to_id
            .clone()
            .filter(|_| s.target_spec.starts_with('#')),
        mentions: None,
        body_version: None,
    }))
}

/// `client_ack` after an inbound message is stored (camelCase ids, SPEC §7.1).
pub fn client_ack(client_message_id: &str, broker_message_id: &str) -> String {
    wire::encode(&ClientFrame::ClientAck {
        client_message_id: Some(client_message_id.to_string()),
        broker_message_id: Some(broker_message_id.to_string()),
    })
}

/// Classifies a broker text frame. `own_pubkey` filters our own topology events.
pub fn classify(text: &str, own_pubkey: &str) -> Inbound {
    let frame = match wire::decode_broker(text) {
        Ok(f) => f,
        Err(e) => return Inbound::Ignored(format!("undecodable frame: {e}")),
    };
    match frame {
        BrokerFrame::HelloAck(ack) => Inbound::HelloAck {
            presence_id: Some(ack.presence_id).filter(|p| !p.is_empty()),
        },
        BrokerFrame::Error { code, message, .. } => Inbound::Error { code, message },
        BrokerFrame::Ack(ack) => {
            if ack.id.is_empty() {
                return Inbound::Ignored("ack without id (set_visible/set_profile reply)".into());
            }
            let outcome = DeliveryOutcome::Acked {
                queued: ack.queued,
                message_id: ack.message_id,
                error: ack.error,
                duplicate: ack.duplicate.unwrap_or(false),
            };
            Inbound::Ack(ack.id, outcome)
        }
        BrokerFrame::Push(push) => classify_push(push, own_pubkey),
        BrokerFrame::PeersList { peers, .. } => Inbound::Peers(
            peers
                .iter()
                .filter_map(|p| serde_json::to_value(p).ok())
                .collect(),
        ),
        BrokerFrame::Unknown { kind, .. } => Inbound::Ignored(format!("unknown type {kind}")),
        // Clients only need `type == "hello_ack"` (BROKER-PROTOCOL §1.7): an ack whose other
        // fields do not fit still completes the handshake.
        BrokerFrame::Malformed { kind, reason, raw } if kind == "hello_ack" => {
            log::warn!("hello_ack with unexpected fields ({reason}); accepted");
            let presence_id = raw
                .get("presenceId")
                .and_then(Value::as_str)
                .filter(|p| !p.is_empty())
                .map(str::to_string);
            Inbound::HelloAck { presence_id }
        }
        BrokerFrame::Malformed { kind, reason, .. } => {
            Inbound::Ignored(format!("malformed {kind}: {reason}"))
        }
    }
}

fn classify_push(push: Push, own_pubkey: &str) -> Inbound {
    let Some(event) = push.system_event() else {
        if push.sender_pubkey == own_pubkey {
            return Inbound::Ignored("own echo".into());
        }
        return Inbound::Message(Box::new(push));
    };
    match event {
        SystemEvent::PeerJoined { name, pubkey, .. }
        | SystemEvent::PeerReturned { name, pubkey, .. }
            if pubkey == own_pubkey =>
        {
            Inbound::Ignored(format!("own presence event ({name})"))
        }
        SystemEvent::PeerJoined { name, pubkey, .. } => Inbound::PeerOnline {
            event: PeerEvent { name, pubkey },
            returned: false,
        },
        SystemEvent::PeerReturned { name, pubkey, .. } => Inbound::PeerOnline {
            event: PeerEvent { name, pubkey },
            returned: true,
        },
        SystemEvent::PeerLeft { pubkey, .. } if pubkey == own_pubkey => {
            Inbound::Ignored("own presence left".into())
        }
        SystemEvent::PeerLeft { name, pubkey } => Inbound::PeerLeft(PeerEvent { name, pubkey }),
        SystemEvent::Other { event, data } => Inbound::System { event, data },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "d04ab232742bb4ab3a1368bd4615e4e6d0224ab71a016baf8520a332c9778737";

    #[test]
    fn send_ack_is_correlated_and_set_reply_is_not() {
        match classify(
            r#"{"type":"ack","id":"c1","messageId":"m1","queued":true}"#,
            ME,
        ) {
            Inbound::Ack(
                id,
                DeliveryOutcome::Acked {
                    queued: true,
                    message_id,
                    ..
                },
            ) => {
                assert_eq!((id.as_str(), message_id.as_str()), ("c1", "m1"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(
                r#"{"type":"ack","id":"","messageId":"","queued":false}"#,
                ME
            ),
            Inbound::Ignored(_)
        ));
    }

    #[test]
    fn own_echo_and_own_presence_are_ignored() {
        let echo = format!(
            r#"{{"type":"push","messageId":"m","meshId":"x","senderPubkey":"{ME}","priority":"next","nonce":"","ciphertext":"aGk=","createdAt":"2026-01-01T00:00:00.000Z"}}"#
        );
        assert!(matches!(classify(&echo, ME), Inbound::Ignored(_)));
        let joined = format!(
            r#"{{"type":"push","subtype":"system","event":"peer_returned","eventData":{{"name":"me","pubkey":"{ME}","groups":[]}},"messageId":"u","meshId":"x","senderPubkey":"system","priority":"low","nonce":"","ciphertext":"","createdAt":"2026-01-01T00:00:00.000Z"}}"#
        );
        assert!(matches!(classify(&joined, ME), Inbound::Ignored(_)));
        assert!(matches!(classify("not json", ME), Inbound::Ignored(_)));
        assert!(matches!(
            classify(r#"{"type":"state_change"}"#, ME),
            Inbound::Ignored(_)
        ));
        assert!(matches!(
            classify(r#"{"type":"hello_ack","presenceId":null}"#, ME),
            Inbound::HelloAck { presence_id: None }
        ));
        match classify(
            r#"{"type":"hello_ack","presenceId":"p1","memberDisplayName":"a"}"#,
            ME,
        ) {
            Inbound::HelloAck { presence_id } => assert_eq!(presence_id.as_deref(), Some("p1")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn profile_frames_carry_no_req_id() {
        let p = Profile {
            visible: Some(false),
            title: Some("t".into()),
            ..Default::default()
        };
        let frames = profile_frames(&p);
        assert_eq!(frames.len(), 2);
        assert!(frames.iter().all(|f| !f.contains("_reqId")));
    }
}
