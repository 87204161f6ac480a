//! The profile switch and the read-only views of the broker's state that tests observe
//! ([`crate::DevBroker::presences`], [`crate::DevBroker::queue_rows`]). Plain data, no actix.

use serde::Serialize;

/// Which claudemesh broker the dev broker reproduces (SPEC §11, BROKER-PROTOCOL §9).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// The seed broker (v0.9.0): `peer_left` on close, at-most-once drain, no `session_hello`.
    #[default]
    Seed,
    /// The current broker: offline lease, silent reattach, `session_hello`, claims until
    /// `client_ack`, `peerRole`, stale-pong terminate.
    Head,
}

impl std::str::FromStr for Profile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "seed" => Ok(Profile::Seed),
            "head" => Ok(Profile::Head),
            other => Err(format!("unknown profile {other:?} (expected seed or head)")),
        }
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Profile::Seed => "seed",
            Profile::Head => "head",
        })
    }
}

/// One presence as the broker holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PresenceInfo {
    /// `hello_ack.presenceId` (kept across a reattach).
    pub presence_id: String,
    /// The member row's id.
    pub member_id: String,
    /// The member's pubkey.
    pub member_pubkey: String,
    /// The session pubkey (`hello.sessionPubkey` or `session_hello`), if any.
    pub session_pubkey: Option<String>,
    /// `hello.sessionId`.
    pub session_id: String,
    /// Head: `control-plane` (member `hello`) or `session` (`session_hello`); seed: `None`.
    pub peer_role: Option<String>,
    /// `false` while the presence is in its offline lease (head), `true` otherwise.
    pub online: bool,
    /// Milliseconds left of the offline lease; `None` when online.
    pub lease_remaining_ms: Option<u64>,
}

/// One queue row with its delivery state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QueueRowInfo {
    /// `messageId`.
    pub id: String,
    /// Raw `targetSpec`.
    pub target_spec: String,
    /// `send.client_message_id`, when the sender gave one.
    pub client_message_id: Option<String>,
    /// Insert time, unix ms.
    pub created_at: i64,
    /// When it was delivered (seed: drained; head: `client_ack`ed; multicast: fanned out).
    pub delivered_at: Option<i64>,
    /// Head: the presence id of the last drain that claimed it (kept until released).
    pub claim_id: Option<String>,
    /// Head: when the current claim expires, unix ms; `None` when unclaimed or released.
    pub claim_expires_at: Option<i64>,
}

impl QueueRowInfo {
    /// Whether the row is held by a claim that has not expired at `now_ms`.
    pub fn claimed_at(&self, now_ms: i64) -> bool {
        self.claim_expires_at.is_some_and(|t| t >= now_ms)
    }
}
