//! The session registry's data (SPEC §12): what a registration carries, what the daemon keeps,
//! and the secret-free [`SessionView`] that is the only form leaving the registry.
//!
//! Invariants: a session's token is never stored or kept — only its SHA-256 (the lookup key)
//! and its first 8 hex characters (`token_prefix`, shown to users); the session secret key
//! lives in [`SessionPresence::keys`], whose `Debug` shows the public key only.

use sha2::{Digest, Sha256};

use crate::crypto::MemberKeys;

/// The head CLI's `parent_attestation`: the member key vouching for the session key until
/// `expires_at`. Kept as given; issue 12's session connection re-signs it on every connect.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ParentAttestation {
    /// The session's ed25519 pubkey (64 hex), equal to the presence's.
    pub session_pubkey: String,
    /// The member pubkey that signed (64 hex).
    pub parent_member_pubkey: String,
    /// Unix ms.
    pub expires_at: i64,
    /// ed25519 signature (128 hex).
    pub signature: String,
}

/// A session's own identity on the mesh: its keypair and the member's attestation.
#[derive(Debug, Clone)]
pub struct SessionPresence {
    /// The session keypair (validated: the pubkey is the seed's).
    pub keys: MemberKeys,
    /// As registered.
    pub attestation: ParentAttestation,
}

impl SessionPresence {
    /// The session pubkey, 64 lowercase hex.
    pub fn pubkey(&self) -> String {
        self.keys.pubkey_hex()
    }
}

/// Where a session's own broker presence stands (`presence_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceStatus {
    /// Registered without presence material: the session has no key of its own and is seen
    /// on the mesh through the member's presence only.
    None,
    /// Presence material accepted; the session's own connection is connecting or reconnecting.
    Pending,
    /// The session's connection is open (`hello_ack` to its `session_hello`): its own peer.
    Open,
    /// The broker does not serve `session_hello` (a seed broker): sends go through the member
    /// connection; tried again every `broker.session_retry_ms`.
    Unsupported,
    /// The broker refused the `session_hello` (a §1.10 code, logged): as `Unsupported`.
    Rejected,
}

impl PresenceStatus {
    /// The `presence_status` string.
    pub fn as_str(self) -> &'static str {
        match self {
            PresenceStatus::None => "none",
            PresenceStatus::Pending => "pending",
            PresenceStatus::Open => "open",
            PresenceStatus::Unsupported => "unsupported",
            PresenceStatus::Rejected => "rejected",
        }
    }
}

/// A registration as the HTTP layer validated it.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The bearer secret of the session (64 lowercase hex). Hashed at once, never stored.
    pub token: SessionToken,
    pub session_id: String,
    /// Mesh slug (attached: the HTTP layer checked).
    pub mesh: String,
    pub display_name: String,
    pub pid: u32,
    pub cwd: Option<String>,
    pub role: Option<String>,
    pub groups: Vec<String>,
    /// `None` when absent or malformed (then `presence_accepted:false`).
    pub presence: Option<SessionPresence>,
}

/// A session token (64 lowercase hex). `Debug` and `Display` show the 8-hex prefix only.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl SessionToken {
    /// Parses 64 hex characters (either case); `None` for anything else.
    pub fn parse(raw: &str) -> Option<SessionToken> {
        let raw = raw.trim();
        (raw.len() == 64 && raw.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| SessionToken(raw.to_ascii_lowercase()))
    }

    /// SHA-256 of the token, 64 hex: the registry's lookup key and primary key on disk.
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }

    /// The first 8 hex characters, the only part ever shown.
    pub fn prefix(&self) -> String {
        self.0[..8].to_string()
    }
}

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionToken({}…)", self.prefix())
    }
}

/// One registered session as the registry keeps it (and as `outbox.db` stores it).
#[derive(Debug, Clone)]
pub struct Session {
    /// SHA-256 of the token (64 hex).
    pub token_digest: String,
    /// First 8 hex of the token.
    pub token_prefix: String,
    pub session_id: String,
    pub mesh: String,
    pub display_name: String,
    pub pid: u32,
    /// The process start time at registration (`/proc/<pid>/stat` field 22); `None` when
    /// the OS did not say (then only liveness is checked).
    pub process_start: Option<u64>,
    pub cwd: Option<String>,
    pub role: Option<String>,
    pub groups: Vec<String>,
    /// Unix ms.
    pub registered_at: i64,
    pub presence: Option<SessionPresence>,
    pub presence_status: PresenceStatus,
}

impl Session {
    /// The secret-free projection.
    pub fn view(&self) -> SessionView {
        SessionView {
            session_id: self.session_id.clone(),
            mesh: self.mesh.clone(),
            display_name: self.display_name.clone(),
            pid: self.pid,
            cwd: self.cwd.clone(),
            role: self.role.clone(),
            groups: self.groups.clone(),
            registered_at: self.registered_at,
            token_prefix: self.token_prefix.clone(),
            session_pubkey: self.presence.as_ref().map(SessionPresence::pubkey),
            presence_status: self.presence_status,
        }
    }
}

/// What callers outside the registry may see of a session: no token, no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionView {
    pub session_id: String,
    pub mesh: String,
    pub display_name: String,
    pub pid: u32,
    pub cwd: Option<String>,
    pub role: Option<String>,
    pub groups: Vec<String>,
    /// Unix ms.
    pub registered_at: i64,
    /// First 8 hex of the token.
    pub token_prefix: String,
    /// The session's own pubkey, when it registered presence material.
    pub session_pubkey: Option<String>,
    pub presence_status: PresenceStatus,
}
