//! The dev broker's one error enum: every failure of its state store, of `dev-mesh`, and of
//! starting or driving a running broker, with the context needed to act on it.

use std::path::PathBuf;

/// Everything that can go wrong in the dev broker and `dev-mesh`.
#[derive(Debug, thiserror::Error)]
pub enum DevBrokerError {
    /// A SQLite statement on the state database failed.
    #[error("dev broker state database: {op}: {source}")]
    Sqlite {
        /// What was being done (`open`, `insert member`, ...).
        op: &'static str,
        /// The driver's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A file system operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`create directory`, `write`, ...).
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A value could not be serialised or a stored JSON column could not be read.
    #[error("JSON {what}: {source}")]
    Json {
        /// Which value.
        what: &'static str,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// The state directory holds no mesh yet (`dev-mesh create` makes one).
    #[error("no mesh in state directory {} (run `claudemeshd dev-mesh create` first)", state_dir.display())]
    NoMesh {
        /// The state directory.
        state_dir: PathBuf,
    },
    /// `dev-mesh create` was asked for a member name the mesh already has.
    #[error("member {name:?} already exists in this mesh")]
    MemberExists {
        /// The name.
        name: String,
    },
    /// No member of the mesh has this name (or pubkey).
    #[error("no member {name:?} in this mesh")]
    UnknownMember {
        /// The name or pubkey that was looked up.
        name: String,
    },
    /// A member name that cannot be used as a directory name or is empty/duplicated.
    #[error("invalid member name {name:?}: {reason}")]
    InvalidMemberName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The `--broker-url` is not a `ws://` or `wss://` URL.
    #[error("invalid broker URL {url:?}: expected ws://HOST:PORT/ws or wss://HOST/ws")]
    InvalidBrokerUrl {
        /// The rejected URL.
        url: String,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The broker's state thread could not be spawned.
    #[error("cannot spawn the dev broker state thread: {source}")]
    Spawn {
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The broker has already been stopped (its state thread is gone).
    #[error("the dev broker is stopped")]
    Stopped,
}
