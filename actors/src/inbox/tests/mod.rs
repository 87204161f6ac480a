//! Unit tests of the inbox store, against temp-dir databases.

mod journal;
mod messages;
mod open;
mod read_state;

mod redelivery;

use std::path::PathBuf;

use rusqlite::Connection;

use super::store::{self, InboundMessage, MessageKind, RecipientKind};

/// A fresh `inbox.db` in its own temp dir (kept alive by the returned guard).
fn fresh_db() -> (tempfile::TempDir, PathBuf, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inbox.db");
    let conn = store::open(&path, false).unwrap();
    (dir, path, conn)
}

/// A plain message on mesh `m1` from `alice`.
fn msg(client_id: Option<&str>, broker_id: &str, received_at: i64) -> InboundMessage {
    InboundMessage {
        client_message_id: client_id.map(str::to_string),
        broker_message_id: broker_id.to_string(),
        mesh: "m1".into(),
        topic: None,
        sender_pubkey: "a".repeat(64),
        sender_name: Some("alice".into()),
        body: Some(format!("hello {broker_id}")),
        kind: MessageKind::Plain,
        received_at,
        reply_to_id: None,
        priority: Some("next".into()),
        recipient_pubkey: Some("e".repeat(64)),
        recipient_kind: RecipientKind::Member,
        sender_member_pubkey: None,
    }
}
