//! InboxStore: owns `inbox.db` on its own arbiter thread (one connection; blocking SQL there
//! never stalls the async arbiters that serve IPC and broker sockets).
//!
//! Accepts [`PushReceived`] from the connections (decrypt, dedupe, insert and journal in one
//! transaction, then reply so the connection sends `client_ack`), [`RecordEvent`] (journal other
//! events), [`ListInbox`], [`MarkSeen`], [`DeleteInbox`], [`DeleteInboxRow`], [`ReplayEvents`],
//! [`PruneInbox`], [`CloseInbox`]. Every journaled
//! event is published to the [`EventHub`] after its transaction commits.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use rusqlite::Connection;

use super::msg::*;
use super::store::{self, InboundMessage, Inserted, MessageKind, RecipientKind, StoredEvent};
use crate::broker::msg::{PushReceived, PushStored};
use crate::broker::peers::is_pubkey;
use crate::crypto::{self, MemberKeys};
use crate::events::{EventHub, Publish};
use crate::metrics::Metrics;
use crate::time::now_ms;
use crate::wire::Push;

/// The inbox actor.
pub struct InboxStore {
    conn: Connection,
    /// Member keys by mesh slug (DM decryption).
    keys: HashMap<String, MemberKeys>,
    /// Publishes journaled events.
    events: Addr<EventHub>,
    metrics: Arc<Metrics>,
    /// Journal retention (`inbox.event_journal`).
    journal_keep: usize,
    /// Rate limit of the "push not stored" log line.
    store_fail_log: crate::storage::LogGate,
    /// Shared DM keys per sender: one X25519 exchange per peer, not per message.
    boxes: crypto::DmBoxes,
}

impl InboxStore {
    /// An inbox over an opened, migrated connection.
    pub fn new(
        conn: Connection,
        keys: HashMap<String, MemberKeys>,
        events: Addr<EventHub>,
        metrics: Arc<Metrics>,
        journal_keep: usize,
    ) -> Self {
        InboxStore {
            conn,
            keys,
            events,
            metrics,
            journal_keep,
            store_fail_log: Default::default(),
            boxes: Default::default(),
        }
    }

    fn publish(&self, event: StoredEvent) {
        self.events.do_send(Publish {
            event: Arc::new(event),
        });
    }
}

/// Decrypts a push per SPEC §7.1: crypto_box when it carries a nonce and a 64-hex sender,
/// else (or on failure) base64 UTF-8 plaintext, else undecryptable — never ciphertext as text.
pub fn decrypt(
    boxes: &mut crypto::DmBoxes,
    keys: Option<&MemberKeys>,
    push: &Push,
) -> (Option<String>, MessageKind) {
    if let Some(keys) = keys {
        if !push.nonce.is_empty() && is_pubkey(&push.sender_pubkey) {
            if let Ok(bytes) = boxes.open(keys, &push.sender_pubkey, &push.nonce, &push.ciphertext)
            {
                if let Ok(text) = String::from_utf8(bytes) {
                    return (Some(text), MessageKind::Dm);
                }
            }
        }
    }
    match crypto::decode_plain(&push.ciphertext) {
        Ok(text) => (Some(text), MessageKind::Plain),
        Err(_) => (None, MessageKind::Undecryptable),
    }
}

impl Actor for InboxStore {
    type Context = Context<Self>;
}

impl Handler<PushReceived> for InboxStore {
    type Result = Result<PushStored, InboxActorError>;

    fn handle(&mut self, msg: PushReceived, _ctx: &mut Context<Self>) -> Self::Result {
        let push = msg.push;
        if push.is_system() {
            return Ok(PushStored::Ignored);
        }
        let member = self.keys.get(&msg.mesh);
        // On a session connection, a DM opened with the session key is addressed to the
        // session; anything else it carries (broadcasts, groups, topics) is the mesh's and is
        // stored as the member's, like its copy on the member connection (SPEC §12).
        let session_dm =
            msg.session
                .as_ref()
                .and_then(|sk| match decrypt(&mut self.boxes, Some(sk), &push) {
                    (body, MessageKind::Dm) => Some((body, sk.pubkey_hex())),
                    _ => None,
                });
        let (body, kind, recipient_pubkey, recipient_kind) = match session_dm {
            Some((body, pubkey)) => (body, MessageKind::Dm, Some(pubkey), RecipientKind::Session),
            None => {
                let (body, kind) = decrypt(&mut self.boxes, member, &push);
                (
                    body,
                    kind,
                    member.map(MemberKeys::pubkey_hex),
                    RecipientKind::Member,
                )
            }
        };
        let inbound = InboundMessage {
            client_message_id: push.client_message_id.clone(),
            broker_message_id: push.message_id.clone(),
            mesh: msg.mesh,
            topic: push.topic.clone(),
            sender_pubkey: push.sender_pubkey.clone(),
            sender_name: push.sender_name.clone(),
            body,
            kind,
            received_at: now_ms(),
            reply_to_id: push.reply_to_id.clone(),
            priority: Some(push.priority.clone()),
            recipient_pubkey,
            recipient_kind,
            sender_member_pubkey: push.sender_member_pubkey.clone(),
        };
        let inserted = match store::insert_message(&mut self.conn, &inbound, self.journal_keep) {
            Ok(inserted) => inserted,
            Err(e) => {
                // Not stored, so not acked: a head broker redelivers it. Under a full disk
                // every push fails: one line a minute (SPEC §5.1).
                if let Some(fault) = e.fault() {
                    if let Some(held) = self.store_fail_log.pass(now_ms(), 60_000) {
                        log::error!(
                            "inbox: an inbound message could not be stored ({}: {e}); not acknowledged, so a head broker redelivers it ({held} more such failures in the last minute)",
                            fault.as_str()
                        );
                    }
                }
                return Err(e.into());
            }
        };
        match inserted {
            Inserted::New { event, .. } => {
                Metrics::inc(&self.metrics.receives);
                self.publish(event);
            }
            Inserted::Duplicate => Metrics::inc(&self.metrics.receive_duplicates),
        }
        Ok(PushStored::Ack {
            client_message_id: push.dedupe_key().to_string(),
            broker_message_id: push.message_id,
        })
    }
}

impl Handler<RecordEvent> for InboxStore {
    type Result = Result<StoredEvent, InboxActorError>;

    fn handle(&mut self, msg: RecordEvent, _ctx: &mut Context<Self>) -> Self::Result {
        let event = store::append_event(
            &mut self.conn,
            &msg.kind,
            msg.mesh.as_deref(),
            msg.fields,
            now_ms(),
            self.journal_keep,
        )?;
        self.publish(event.clone());
        Ok(event)
    }
}

impl Handler<ListInbox> for InboxStore {
    type Result = Result<InboxPage, InboxActorError>;

    fn handle(&mut self, msg: ListInbox, _ctx: &mut Context<Self>) -> Self::Result {
        let (items, next_before) = store::query(&self.conn, &msg.query)?;
        let marked_seen = if msg.mark_seen {
            let unread: Vec<i64> = items
                .iter()
                .filter(|i| i.seen_at.is_none())
                .map(|i| i.id)
                .collect();
            store::mark_seen(&mut self.conn, &unread, msg.query.scope.as_ref(), now_ms())?
        } else {
            0
        };
        Ok(InboxPage {
            items,
            next_before,
            marked_seen,
        })
    }
}

impl Handler<MarkSeen> for InboxStore {
    type Result = Result<usize, InboxActorError>;

    fn handle(&mut self, msg: MarkSeen, _ctx: &mut Context<Self>) -> Self::Result {
        Ok(store::mark_seen(
            &mut self.conn,
            &msg.ids,
            msg.scope.as_ref(),
            now_ms(),
        )?)
    }
}

impl Handler<DeleteInbox> for InboxStore {
    type Result = Result<usize, InboxActorError>;

    fn handle(&mut self, msg: DeleteInbox, _ctx: &mut Context<Self>) -> Self::Result {
        Ok(store::delete_rows(
            &self.conn,
            msg.mesh.as_deref(),
            msg.before_ms,
            msg.scope.as_ref(),
        )?)
    }
}

impl Handler<DeleteInboxRow> for InboxStore {
    type Result = Result<bool, InboxActorError>;

    fn handle(&mut self, msg: DeleteInboxRow, _ctx: &mut Context<Self>) -> Self::Result {
        Ok(store::delete_row(&self.conn, msg.id, msg.scope.as_ref())?)
    }
}

impl Handler<ReplayEvents> for InboxStore {
    type Result = Result<store::Replay, InboxActorError>;

    fn handle(&mut self, msg: ReplayEvents, _ctx: &mut Context<Self>) -> Self::Result {
        Ok(store::replay_after(&self.conn, msg.after_id, msg.limit)?)
    }
}

impl Handler<PruneInbox> for InboxStore {
    type Result = Result<usize, InboxActorError>;

    fn handle(&mut self, msg: PruneInbox, _ctx: &mut Context<Self>) -> Self::Result {
        Ok(store::prune(&self.conn, msg.older_than_ms, msg.limit)?)
    }
}

impl Handler<CloseInbox> for InboxStore {
    type Result = Result<(), InboxActorError>;

    fn handle(&mut self, _msg: CloseInbox, _ctx: &mut Context<Self>) -> Self::Result {
        store::write_clean_shutdown(&self.conn, true)?;
        Ok(())
    }
}
