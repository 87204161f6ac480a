//! [`ColdPathError`]: why a cold-path send failed, with its SPEC §10 exit code and a short
//! machine code for `--json`.

use claudemesh_actors::crypto::CryptoError;
use claudemesh_actors::settings::SettingsError;

/// Why a cold-path send failed; [`ColdPathError::exit_code`] maps it to SPEC §10.
#[derive(Debug, thiserror::Error)]
pub enum ColdPathError {
    /// `config.json`/`daemon.toml`/environment could not be loaded.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The send fails the daemon's phase-A validation.
    #[error("{detail}")]
    Invalid {
        /// What the validator said.
        detail: String,
    },
    /// `--mesh` names a mesh that is not joined.
    #[error("unknown mesh {requested:?} (joined: {})", joined.join(", "))]
    UnknownMesh {
        /// The slug given.
        requested: String,
        /// The joined slugs.
        joined: Vec<String>,
    },
    /// The member keys in `config.json` are unusable.
    #[error("mesh {slug}: member keys in config.json: {source}")]
    Keys {
        /// Mesh slug.
        slug: String,
        /// The crypto error.
        #[source]
        source: CryptoError,
    },
    /// The WebSocket could not be opened.
    #[error("cannot connect to the broker of mesh {mesh} at {url}: {detail}")]
    Connect {
        /// Mesh slug.
        mesh: String,
        /// Broker URL.
        url: String,
        /// awc's error.
        detail: String,
    },
    /// The broker answered the hello with an `error` frame.
    #[error("the broker of mesh {mesh} refused the hello: {code}: {message}")]
    HelloRejected {
        /// Mesh slug.
        mesh: String,
        /// `bad_signature`, `revoked`, `timestamp_skew`, …
        code: String,
        /// The broker's text.
        message: String,
    },
    /// No answer in time (`hello_ack`, `peers_list`).
    #[error("no {what} from the broker of mesh {mesh} within {ms} ms")]
    Timeout {
        /// Mesh slug.
        mesh: String,
        /// What was awaited.
        what: &'static str,
        /// The wait.
        ms: u128,
    },
    /// No `ack` in time: the broker may or may not have the message.
    #[error("no ack from the broker of mesh {mesh} within {ms} ms; the message may have been accepted: retry with --idempotency-key {client_message_id}")]
    AckTimeout {
        /// Mesh slug.
        mesh: String,
        /// The wait.
        ms: u128,
        /// The id to retry with.
        client_message_id: String,
    },
    /// The connection ended or failed.
    #[error("broker connection of mesh {mesh} lost while waiting for {during}: {detail}")]
    Lost {
        /// Mesh slug.
        mesh: String,
        /// What was awaited.
        during: &'static str,
        /// Close reason or protocol error.
        detail: String,
    },
    /// No peer has that name or prefix.
    #[error("unknown peer {name:?} on mesh {mesh}")]
    UnknownPeer {
        /// The name given.
        name: String,
        /// Mesh slug.
        mesh: String,
    },
    /// Several peers match.
    #[error("ambiguous peer {name:?}: {}", candidates.join(", "))]
    AmbiguousPeer {
        /// The name given.
        name: String,
        /// What matched.
        candidates: Vec<String>,
    },
    /// Sealing the DM failed.
    #[error("cannot encrypt the DM to {target}: {source}")]
    Encrypt {
        /// Recipient pubkey.
        target: String,
        /// The crypto error.
        #[source]
        source: CryptoError,
    },
    /// The broker's ack carried an error (or an `error` frame came instead).
    #[error("the broker refused the message: {error}")]
    Refused {
        /// The broker's error text, verbatim.
        error: String,
    },
}

impl ColdPathError {
    /// 2 for what the arguments or config got wrong, 3 for a refused hello, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            ColdPathError::Settings(_)
            | ColdPathError::Invalid { .. }
            | ColdPathError::UnknownMesh { .. }
            | ColdPathError::Keys { .. }
            | ColdPathError::UnknownPeer { .. }
            | ColdPathError::AmbiguousPeer { .. } => 2,
            ColdPathError::HelloRejected { .. } => 3,
            _ => 1,
        }
    }

    /// A short machine code for `--json` output.
    pub fn code(&self) -> &'static str {
        match self {
            ColdPathError::Settings(_) => "config",
            ColdPathError::Invalid { .. } => "invalid_request",
            ColdPathError::UnknownMesh { .. } => "unknown_mesh",
            ColdPathError::Keys { .. } => "bad_keys",
            ColdPathError::Connect { .. } => "broker_unreachable",
            ColdPathError::HelloRejected { .. } => "hello_rejected",
            ColdPathError::Timeout { .. } | ColdPathError::AckTimeout { .. } => "timeout",
            ColdPathError::Lost { .. } => "broker_connection_lost",
            ColdPathError::UnknownPeer { .. } => "unknown_peer",
            ColdPathError::AmbiguousPeer { .. } => "ambiguous_peer",
            ColdPathError::Encrypt { .. } => "encrypt_failed",
            ColdPathError::Refused { .. } => "broker_refused",
        }
    }
}
