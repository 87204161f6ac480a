//! A session's own presence (SPEC §12 "Presence", BROKER-PROTOCOL §1.10): what makes a
//! [`BrokerConnection`](super::BrokerConnection) a *session* connection instead of the
//! member's, the `session_hello` frame, and the presence states the connection reports.
//!
//! A session connection is the member connection's machinery (backoff, watchdog, close codes,
//! redelivery nudge, `client_ack` on its own socket) with three differences: it says
//! `session_hello` signed with the session key, carrying an attestation the daemon re-signs
//! with the member key on every connect (`expiresAt` = now + 12 h); it stores DMs as addressed
//! to the session; and against a broker that does not know `session_hello` (`no_hello`, or no
//! `hello_ack` within the hello timeout) it reports [`PresenceState::Unsupported`] and tries
//! again only after `broker.session_unsupported_retry_ms`.

use actix::prelude::*;
use serde_json::json;

use crate::crypto::MemberKeys;

/// How long each connect's attestation is valid (SPEC §12: now + 12 h).
pub const ATTESTATION_TTL_MS: i64 = 12 * 3_600_000;

/// Who a session connection says it is.
#[derive(Clone)]
pub struct SessionIdentity {
    /// The session's keypair (signs the hello, opens and seals its DMs).
    pub keys: MemberKeys,
    /// The session's own `session_id` (the hello's `sessionId`).
    pub session_id: String,
    pub display_name: String,
    pub pid: u32,
    pub cwd: Option<String>,
    pub role: Option<String>,
    pub groups: Vec<String>,
}

impl SessionIdentity {
    /// The session pubkey, 64 lowercase hex.
    pub fn pubkey(&self) -> String {
        self.keys.pubkey_hex()
    }
}

/// The session side of a [`super::LinkConfig`].
#[derive(Clone)]
pub struct SessionLink {
    pub id: SessionIdentity,
    /// Where presence states go (the session registry).
    pub presence: Recipient<PresenceUpdate>,
    /// Lifetime of the attestation signed on each connect, ms (`broker.session_attestation_ttl_ms`).
    pub attestation_ttl_ms: i64,
    /// Wait before trying `session_hello` again after `Unsupported` or `Rejected`, ms.
    pub retry_after_refusal_ms: u64,
}

/// Where a session's presence stands, as its connection sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresenceState {
    /// `hello_ack` received: the session is its own peer.
    Open,
    /// The socket is down; the connection is reconnecting.
    Down,
    /// The broker does not know `session_hello` (seed): sends go through the member.
    Unsupported,
    /// The broker refused the `session_hello` with this §1.10 code.
    Rejected(String),
}

/// Notification from a session connection to the registry (and, as
/// [`super::msg::LinkEvent::Session`], to the drainer).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct PresenceUpdate {
    pub mesh: String,
    pub session_pubkey: String,
    pub state: PresenceState,
}

/// The attestation's signed text (§1.10).
pub fn attestation_canonical(member_pubkey: &str, session_pubkey: &str, expires_at: i64) -> String {
    format!("claudemesh-session-attest|{member_pubkey}|{session_pubkey}|{expires_at}")
}

/// The session hello's signed text (§1.10).
pub fn hello_canonical(
    mesh_id: &str,
    member_pubkey: &str,
    session_pubkey: &str,
    timestamp_ms: i64,
) -> String {
    format!("claudemesh-session-hello|{mesh_id}|{member_pubkey}|{session_pubkey}|{timestamp_ms}")
}

/// The `session_hello` frame: attestation signed with the member key (valid until
/// `expires_at`), hello signed with the session key at `timestamp_ms`.
pub fn session_hello(
    mesh_id: &str,
    member_id: &str,
    member: &MemberKeys,
    s: &SessionIdentity,
    timestamp_ms: i64,
    expires_at: i64,
) -> String {
    let member_pubkey = member.pubkey_hex();
    let session_pubkey = s.pubkey();
    let attestation = member
        .sign_hex(attestation_canonical(&member_pubkey, &session_pubkey, expires_at).as_bytes());
    let signature = s.keys.sign_hex(
        hello_canonical(mesh_id, &member_pubkey, &session_pubkey, timestamp_ms).as_bytes(),
    );
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty());
    let mut frame = json!({
        "type": "session_hello",
        "meshId": mesh_id,
        "parentMemberId": member_id,
        "parentMemberPubkey": member_pubkey,
        "sessionPubkey": session_pubkey,
        "parentAttestation": {
            "sessionPubkey": session_pubkey,
            "parentMemberPubkey": member_pubkey,
            "expiresAt": expires_at,
            "signature": attestation,
        },
        "displayName": s.display_name,
        "sessionId": s.session_id,
        "pid": s.pid,
        "cwd": s.cwd.clone().unwrap_or_else(|| "/".to_string()),
        "peerType": "ai",
        "channel": "claude-code",
        "timestamp": timestamp_ms,
        "signature": signature,
    });
    if let Some(obj) = frame.as_object_mut() {
        if let Some(h) = hostname {
            obj.insert("hostname".into(), h.into());
        }
        if let Some(role) = &s.role {
            obj.insert("role".into(), role.clone().into());
        }
        if !s.groups.is_empty() {
            let groups: Vec<_> = s.groups.iter().map(|g| json!({ "name": g })).collect();
            obj.insert("groups".into(), groups.into());
        }
    }
    frame.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn vectors() -> Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/crypto-vectors.json"
        );
        serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("json")
    }

    fn keys(v: &Value, who: &str) -> MemberKeys {
        let seed = hex::decode(v["keys"][who]["seed_hex"].as_str().expect("seed")).expect("hex");
        MemberKeys::from_seed(seed.try_into().expect("32 bytes"))
    }

    #[test]
    fn session_hello_frame_carries_the_known_answer_signatures() {
        let v = vectors();
        let (a, a_session) = (keys(&v, "A"), keys(&v, "A_session"));
        let sv = &v["session_hello"];
        let expires = sv["expiresAt"].as_i64().expect("expiresAt");
        let ts = sv["timestamp"].as_i64().expect("timestamp");
        let link = SessionIdentity {
            keys: a_session.clone(),
            session_id: "s1".into(),
            display_name: "a-session".into(),
            pid: 42,
            cwd: Some("/tmp".into()),
            role: None,
            groups: vec![],
        };
        let frame: Value = serde_json::from_str(&session_hello(
            "mesh_test_0001",
            "member-a",
            &a,
            &link,
            ts,
            expires,
        ))
        .expect("frame json");
        assert_eq!(
            attestation_canonical(&a.pubkey_hex(), &a_session.pubkey_hex(), expires),
            sv["attestation_canonical"].as_str().expect("canonical")
        );
        assert_eq!(
            hello_canonical(
                "mesh_test_0001",
                &a.pubkey_hex(),
                &a_session.pubkey_hex(),
                ts
            ),
            sv["hello_canonical"].as_str().expect("canonical")
        );
        assert_eq!(
            frame["parentAttestation"]["signature"],
            sv["attestation_signature_hex_by_member_key"]
        );
        assert_eq!(frame["signature"], sv["hello_signature_hex_by_session_key"]);
        assert_eq!(frame["type"], "session_hello");
        assert_eq!(frame["sessionPubkey"], a_session.pubkey_hex());
        assert_eq!(
            frame["parentAttestation"]["sessionPubkey"],
            frame["sessionPubkey"]
        );
        assert_eq!(frame["parentMemberId"], "member-a");
    }

    #[test]
    fn a_dm_sealed_by_a_session_key_opens_with_the_session_pubkey_as_sender() {
        let v = vectors();
        let (b, a_session) = (keys(&v, "B"), keys(&v, "A_session"));
        let dm = &v["session_dm"];
        let nonce_b64 = dm["nonce_b64"].as_str().expect("nonce");
        let nonce: [u8; 24] =
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, nonce_b64)
                .expect("b64")
                .try_into()
                .expect("24 bytes");
        let plain = dm["plaintext_utf8"].as_str().expect("plaintext");
        let sealed =
            crate::crypto::seal_dm_with_nonce(&a_session, &b.pubkey_hex(), plain.as_bytes(), nonce)
                .expect("seal");
        assert_eq!(
            sealed.ciphertext_b64,
            dm["ciphertext_b64"].as_str().expect("ct")
        );
        let opened = crate::crypto::open_dm(
            &b,
            &a_session.pubkey_hex(),
            nonce_b64,
            &sealed.ciphertext_b64,
        )
        .expect("B opens it with the session pubkey as sender");
        assert_eq!(opened, plain.as_bytes());
        // The member's key is not the sender: opening with it fails.
        let a = keys(&v, "A");
        assert!(
            crate::crypto::open_dm(&b, &a.pubkey_hex(), nonce_b64, &sealed.ciphertext_b64).is_err()
        );
    }
}
