//! Inbound messages in `inbox.db` (SPEC §7.1, §7.2): the dedupe-insert that journals its
//! `message` event in the same transaction, the newest-first paged query, and age pruning.
//!
//! Invariants: at most one row per `(mesh, dedupe_key)` where the key is the sender's pubkey
//! with its `client_message_id` if present (non-empty), else the broker's message id; an
//! `undecryptable` row never stores a body (no ciphertext posing as text) and always has
//! `decrypt_error = 1`; a duplicate writes nothing and journals nothing.
//! A [`Scope`] (a session's view, see `read_state`) narrows [`query`].

use rusqlite::{Connection, Row, TransactionBehavior};
use serde_json::{json, Value};

use super::journal::{append_in_tx, StoredEvent};
use super::read_state::Scope;
use super::store::{sql_op, InboxError};

/// How an inbound body was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// Opened with crypto_box (a direct message).
    Dm,
    /// Base64 UTF-8 plaintext (broadcast, group, topic).
    Plain,
    /// Neither worked; the body is not stored.
    Undecryptable,
}

impl MessageKind {
    /// The stored and reported name: `dm`, `plain`, `undecryptable`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dm => "dm",
            Self::Plain => "plain",
            Self::Undecryptable => "undecryptable",
        }
    }
}

/// Which of our identities a push was addressed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipientKind {
    /// The mesh member (pushes on the member connection).
    Member,
    /// One session (pushes on that session's connection).
    Session,
}

impl RecipientKind {
    /// The stored and reported name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::Session => "session",
        }
    }
}

/// A decoded broker push, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    /// The sender's idempotency id, when the broker relays one (the preferred dedupe key).
    pub client_message_id: Option<String>,
    /// The broker's `messageId` (the dedupe key when there is no client id).
    pub broker_message_id: String,
    /// Mesh slug the push arrived on.
    pub mesh: String,
    /// Topic of a topic post.
    pub topic: Option<String>,
    /// Sender's pubkey (hex).
    pub sender_pubkey: String,
    /// Sender's display name, when the broker gave one.
    pub sender_name: Option<String>,
    /// Decrypted text; ignored (stored as NULL) for [`MessageKind::Undecryptable`].
    pub body: Option<String>,
    /// How the body was obtained.
    pub kind: MessageKind,
    /// Unix ms when the daemon received it (also the event's `ts`).
    pub received_at: i64,
    /// The message this replies to.
    pub reply_to_id: Option<String>,
    /// The sender's priority (`now|next|low`), when given.
    pub priority: Option<String>,
    /// The pubkey the push was addressed to (ours: the member's or a session's).
    pub recipient_pubkey: Option<String>,
    /// Whether that is the member or a session.
    pub recipient_kind: RecipientKind,
    /// The sender's member pubkey, when the broker gave it (a session sender's parent).
    pub sender_member_pubkey: Option<String>,
}

/// A stored inbox row as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxItem {
    /// Row id; also the `before` paging cursor.
    pub id: i64,
    /// The sender's idempotency id, if any.
    pub client_message_id: Option<String>,
    /// The broker's message id.
    pub broker_message_id: String,
    /// Mesh slug.
    pub mesh: String,
    /// Topic of a topic post.
    pub topic: Option<String>,
    /// Sender's pubkey.
    pub sender_pubkey: String,
    /// Sender's display name.
    pub sender_name: Option<String>,
    /// Text, or `None` when undecryptable.
    pub body: Option<String>,
    /// Unix ms received.
    pub received_at: i64,
    /// The message this replies to.
    pub reply_to_id: Option<String>,
    /// `dm`, `plain` or `undecryptable`.
    pub kind: String,
    /// True exactly when the body could not be decrypted.
    pub decrypt_error: bool,
    /// Unix ms of the first time it was marked seen; `None` = unread.
    pub seen_at: Option<i64>,
    /// The pubkey it was addressed to (`None` for rows stored before schema version 2).
    pub recipient_pubkey: Option<String>,
    /// `member` or `session`.
    pub recipient_kind: String,
    /// The sender's member pubkey, when known.
    pub sender_member_pubkey: Option<String>,
}

impl InboxItem {
    /// The SPEC §7.2 JSON object (`received_at` as ISO 8601).
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "client_message_id": self.client_message_id,
            "broker_message_id": self.broker_message_id,
            "mesh": self.mesh,
            "topic": self.topic,
            "sender_pubkey": self.sender_pubkey,
            "sender_name": self.sender_name,
            "body": self.body,
            "received_at": crate::time::iso_from_ms(self.received_at),
            "reply_to_id": self.reply_to_id,
            "kind": self.kind,
            "decrypt_error": self.decrypt_error,
            "seen_at": self.seen_at.map(crate::time::iso_from_ms),
            "recipient_pubkey": self.recipient_pubkey,
            "recipient_kind": self.recipient_kind,
            "sender_member_pubkey": self.sender_member_pubkey,
        })
    }
}

/// Result of [`insert_message`].
// Short-lived return value, matched at once; boxing the item would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// A new row and its journaled `message` event (publish it).
    New {
        /// The stored row.
        item: InboxItem,
        /// The journaled event.
        event: StoredEvent,
    },
    /// Already stored under the same dedupe key; nothing written.
    Duplicate,
}

/// Stores `msg` unless its dedupe key is known for its mesh, and journals a `message` event in
/// the same transaction. The event data holds every [`InboxItem::to_json`] field except that
/// the item's `kind` is reported as `message_kind` (`kind` is the event kind, `"message"`),
/// plus `priority`. Trims the journal to `journal_keep` events.
pub fn insert_message(
    conn: &mut Connection,
    msg: &InboundMessage,
    journal_keep: usize,
) -> Result<Inserted, InboxError> {
    let client_message_id = msg.client_message_id.as_deref().filter(|id| !id.is_empty());
    // A client id is chosen by its sender, so it is only unique per sender: key it with the
    // sender's pubkey, or one peer could shadow another's message by reusing its id.
    let dedupe_key = match client_message_id {
        Some(id) => format!("c:{}:{id}", msg.sender_pubkey),
        None => format!("b:{}", msg.broker_message_id),
    };
    let undecryptable = msg.kind == MessageKind::Undecryptable;
    let body = if undecryptable {
        None
    } else {
        msg.body.as_deref()
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_op("begin insert message"))?;
    let inserted = tx
        .execute(
            "INSERT INTO inbox (mesh, dedupe_key, client_message_id, broker_message_id, topic,
                 sender_pubkey, sender_name, body, kind, decrypt_error, received_at,
                 reply_to_id, priority, recipient_pubkey, recipient_kind, sender_member_pubkey)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
             ON CONFLICT (mesh, dedupe_key) DO NOTHING",
            rusqlite::params![
                msg.mesh,
                dedupe_key,
                client_message_id,
                msg.broker_message_id,
                msg.topic,
                msg.sender_pubkey,
                msg.sender_name,
                body,
                msg.kind.as_str(),
                undecryptable,
                msg.received_at,
                msg.reply_to_id,
                msg.priority,
                msg.recipient_pubkey,
                msg.recipient_kind.as_str(),
                msg.sender_member_pubkey,
            ],
        )
        .map_err(sql_op("insert message"))?;
    if inserted == 0 {
        return Ok(Inserted::Duplicate);
    }
    let item = InboxItem {
        id: tx.last_insert_rowid(),
        client_message_id: client_message_id.map(str::to_string),
        broker_message_id: msg.broker_message_id.clone(),
        mesh: msg.mesh.clone(),
        topic: msg.topic.clone(),
        sender_pubkey: msg.sender_pubkey.clone(),
        sender_name: msg.sender_name.clone(),
        body: body.map(str::to_string),
        received_at: msg.received_at,
        reply_to_id: msg.reply_to_id.clone(),
        kind: msg.kind.as_str().to_string(),
        decrypt_error: undecryptable,
        seen_at: None,
        recipient_pubkey: msg.recipient_pubkey.clone(),
        recipient_kind: msg.recipient_kind.as_str().to_string(),
        sender_member_pubkey: msg.sender_member_pubkey.clone(),
    };
    let mut fields = match item.to_json() {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    if let Some(kind) = fields.remove("kind") {
        fields.insert("message_kind".into(), kind);
    }
    fields.insert("priority".into(), json!(msg.priority));
    let event = append_in_tx(
        &tx,
        "message",
        Some(&msg.mesh),
        fields,
        msg.received_at,
        journal_keep,
    )?;
    tx.commit().map_err(sql_op("commit insert message"))?;
    Ok(Inserted::New { item, event })
}

/// Filters and page of [`query`]; `None` means "no filter".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboxQuery {
    /// Only rows received at or after this unix ms.
    pub since: Option<i64>,
    /// Only this topic.
    pub topic: Option<String>,
    /// Only this sender pubkey.
    pub from: Option<String>,
    /// Only this mesh slug.
    pub mesh: Option<String>,
    /// Page size (the HTTP layer bounds it to 1..=1000; 0 is treated as 1).
    pub limit: usize,
    /// Cursor: only rows with an id below this (the previous page's `next_before`).
    pub before: Option<i64>,
    /// Only rows never marked seen.
    pub unread_only: bool,
    /// A session's view; `None` = everything (the operator's view).
    pub scope: Option<Scope>,
}

const ITEM_COLUMNS: &str = "id, client_message_id, broker_message_id, mesh, topic, \
    sender_pubkey, sender_name, body, received_at, reply_to_id, kind, decrypt_error, seen_at, \
    recipient_pubkey, recipient_kind, sender_member_pubkey";

fn item_from_row(r: &Row<'_>) -> rusqlite::Result<InboxItem> {
    Ok(InboxItem {
        id: r.get(0)?,
        client_message_id: r.get(1)?,
        broker_message_id: r.get(2)?,
        mesh: r.get(3)?,
        topic: r.get(4)?,
        sender_pubkey: r.get(5)?,
        sender_name: r.get(6)?,
        body: r.get(7)?,
        received_at: r.get(8)?,
        reply_to_id: r.get(9)?,
        kind: r.get(10)?,
        decrypt_error: r.get(11)?,
        seen_at: r.get(12)?,
        recipient_pubkey: r.get(13)?,
        recipient_kind: r.get(14)?,
        sender_member_pubkey: r.get(15)?,
    })
}

/// One page of inbox rows, newest first (by id), and the cursor of the next page: the last
/// returned id when older matching rows remain, else `None`.
pub fn query(
    conn: &Connection,
    q: &InboxQuery,
) -> Result<(Vec<InboxItem>, Option<i64>), InboxError> {
    let mut sql = format!("SELECT {ITEM_COLUMNS} FROM inbox WHERE 1 = 1");
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    let mut filter = |clause: &str, value: rusqlite::types::Value| {
        args.push(value);
        sql.push_str(&format!(" AND {clause} ?{}", args.len()));
    };
    if let Some(since) = q.since {
        filter("received_at >=", since.into());
    }
    if let Some(topic) = &q.topic {
        filter("topic =", topic.clone().into());
    }
    if let Some(from) = &q.from {
        filter("sender_pubkey =", from.clone().into());
    }
    if let Some(mesh) = &q.mesh {
        filter("mesh =", mesh.clone().into());
    }
    if let Some(before) = q.before {
        filter("id <", before.into());
    }
    if q.unread_only {
        sql.push_str(" AND seen_at IS NULL");
    }
    if let Some(scope) = &q.scope {
        scope.push_sql(&mut sql, &mut args);
    }
    let limit = q.limit.max(1);
    // One extra row tells whether another page exists.
    args.push(
        i64::try_from(limit.saturating_add(1))
            .unwrap_or(i64::MAX)
            .into(),
    );
    sql.push_str(&format!(" ORDER BY id DESC LIMIT ?{}", args.len()));
    let mut stmt = conn.prepare(&sql).map_err(sql_op("prepare inbox query"))?;
    let mut items = stmt
        .query_map(rusqlite::params_from_iter(args), item_from_row)
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(sql_op("query inbox"))?;
    let next_before = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|item| item.id)
    } else {
        None
    };
    Ok((items, next_before))
}

/// Deletes at most `limit` of the rows received before `older_than_ms` (unix ms), oldest
/// first; returns how many. Callers repeat it until it deletes fewer than `limit`, so a large
/// prune is many short transactions with inbound pushes stored between them, not one long
/// one.
pub fn prune(conn: &Connection, older_than_ms: i64, limit: usize) -> Result<usize, InboxError> {
    conn.execute(
        "DELETE FROM inbox WHERE id IN (SELECT id FROM inbox WHERE received_at < ?1
           ORDER BY received_at LIMIT ?2)",
        (older_than_ms, i64::try_from(limit).unwrap_or(i64::MAX)),
    )
    .map_err(sql_op("prune inbox"))
}
