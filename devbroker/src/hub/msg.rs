//! The messages between the hub thread, the per-socket session tasks and the [`DevBroker`]
//! handle. Sessions and the handle send [`HubCmd`]s over one `std::sync::mpsc` channel; the hub
//! answers each session through that session's own unbounded channel of [`Outgoing`]s, so the
//! order in which the hub decides frames is the order in which they are written.
//!
//! [`DevBroker`]: crate::DevBroker

use claudemesh_actors::wire::{ClientFrame, Hello};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::inspect::{PresenceInfo, QueueRowInfo};

/// Identifies one accepted WebSocket for its whole life (never reused within a broker run).
pub type ConnId = u64;

/// A command for the hub thread.
#[derive(Debug)]
pub enum HubCmd {
    /// A WebSocket was accepted; `tx` is where its outgoing frames go.
    Connected {
        /// The new connection.
        conn: ConnId,
        /// Its outgoing channel.
        tx: mpsc::UnboundedSender<Outgoing>,
    },
    /// A `hello` arrived on a connection that has not completed one.
    Hello {
        /// The connection.
        conn: ConnId,
        /// The whole frame as JSON, for the broker-order validation.
        raw: Value,
        /// The typed frame, `None` when it does not decode (the broker then stays silent).
        typed: Option<Box<Hello>>,
    },
    /// Head profile: a `session_hello` arrived on a connection that has not completed a hello
    /// (validated from the raw JSON, §1.10).
    SessionHello {
        /// The connection.
        conn: ConnId,
        /// The whole frame.
        raw: Value,
    },
    /// Any other decoded frame on an authenticated connection.
    Frame {
        /// The connection.
        conn: ConnId,
        /// The frame.
        frame: Box<ClientFrame>,
    },
    /// The connection is gone (closed by either side, dropped or terminated).
    Closed {
        /// The connection.
        conn: ConnId,
    },
    /// Test control: close every connection of a member (by name, member pubkey or session
    /// pubkey) with 4001 `kicked`. Answers how many were closed.
    Kick {
        /// Name or pubkey.
        who: String,
        /// Number of connections closed.
        reply: oneshot::Sender<usize>,
    },
    /// Test control: stop (or resume) reading and writing a member's sockets.
    HalfOpen {
        /// Name, member pubkey or session pubkey.
        who: String,
        /// `true` to go half-open, `false` to resume.
        on: bool,
        /// Number of connections affected.
        reply: oneshot::Sender<usize>,
    },
    /// Test control: drop every socket without a close frame.
    DropAll {
        /// Number of connections dropped.
        reply: oneshot::Sender<usize>,
    },
    /// Test view: every presence, online or leased.
    Presences {
        /// The presences, oldest first.
        reply: oneshot::Sender<Vec<PresenceInfo>>,
    },
    /// Test view: every queue row with its delivery and claim state.
    QueueRows {
        /// The rows, oldest first.
        reply: oneshot::Sender<Vec<QueueRowInfo>>,
    },
    /// Shutdown, first step: close every socket with 1001 `shutting down` and refuse new ones.
    Shutdown {
        /// Answered once every close has been queued.
        reply: oneshot::Sender<()>,
    },
    /// Shutdown, last step: the hub thread ends.
    Exit,
}

/// What the hub asks a session to do with its socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// Write one text frame.
    Text(String),
    /// Write the `hello_ack`; from then on the session forwards frames instead of answering
    /// `no_hello`.
    HelloAck(String),
    /// The hello failed without an answer (the broker's swallowed exception): the socket is
    /// back to waiting for a hello.
    HelloSilent,
    /// Write a close frame with this code and reason, then end.
    Close {
        /// WebSocket close code.
        code: u16,
        /// Close reason.
        reason: String,
    },
    /// End without a close frame (the TCP connection is simply dropped).
    Terminate,
    /// Stop (`true`) or resume (`false`) reading and writing the socket; frames queued
    /// meanwhile are written on resume.
    HalfOpen(bool),
}
