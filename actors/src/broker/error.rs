//! Errors of the broker-connection area.

/// What a caller of the connection actor can be told.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BrokerError {
    /// Not connected and nothing cached.
    #[error("broker unavailable for mesh {mesh}")]
    Unavailable { mesh: String },
    /// The actor's mailbox is closed.
    #[error("broker connection actor gone: {0}")]
    Mailbox(String),
}
