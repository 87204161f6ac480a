//! The hub: the single owner of the dev broker's live state — connections and their presences,
//! rate-limit buckets — and of its SQLite connection. It runs on its own thread and handles one
//! [`HubCmd`] at a time, so every decision (validate a hello, route a send, drain a queue, fan
//! out an event) is atomic with respect to every other, like one actor's mailbox.
//!
//! - `hello`: hello validation in the broker's order, registration, drain-before-ack, the
//!   `peer_joined`/`peer_returned` event.
//! - `send`: the `send` pipeline (rate limit, size, `--dedupe`, pre-flight, queue, ack, fan-out)
//!   and the drain.
//! - `peers`: `list_peers` and the `set_*`/group frames.
//!
//! Invariants:
//! - A connection has a [`Presence`] only between its successful hello and its close, kick,
//!   ban or replacement; only connections with a presence receive pushes and events, and only
//!   they are routed to.
//! - A presence removed by kick, ban (revocation) or `session_replaced` produces no `peer_left`
//!   and saves no `peer_state` (the real broker's close handler finds no entry); a presence
//!   removed by a close does both.
//! - Every member change made by `dev-mesh` is seen without a restart: members are read from
//!   the database at each hello and send; revocations are polled every 200 ms.

mod hello;
pub mod msg;
mod peers;
mod send;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use claudemesh_actors::time::{iso_from_ms, now_ms};
use claudemesh_actors::wire::{encode, BrokerFrame, Group, Push};
use rusqlite::Connection;
use serde_json::{json, Map, Value};

pub use self::send::{FINGERPRINT_MISMATCH_ERROR, GRANTS_ERROR, MAX_MESSAGE_BYTES, NO_PEER_ERROR};

use self::msg::{ConnId, HubCmd, Outgoing};
use super::ids::uuid_v4;
use super::peer_state::{self, PeerState};
use super::rate::RateLimiter;
use super::state;

/// How often revocations made by `dev-mesh revoke` are looked for.
const REVOKE_POLL: Duration = Duration::from_millis(200);

/// Behaviour switches of one broker run.
#[derive(Clone, Debug)]
pub struct HubOptions {
    /// The state directory (for logs).
    pub state_dir: PathBuf,
    /// Per-member token bucket on `send` (on by default; `--no-rate-limit` turns it off).
    pub rate_limit: bool,
    /// SPEC §11 broker-side idempotency on `(mesh, client_message_id)`.
    pub dedupe: bool,
}

/// One authenticated connection's in-memory entry (the broker's `connections` map).
#[derive(Clone, Debug)]
pub struct Presence {
    /// 32-character presence id (sent in `hello_ack`).
    pub presence_id: String,
    /// Registration order, to keep `list_peers` stable within one millisecond.
    pub seq: u64,
    /// `hello.meshId`.
    pub mesh_id: String,
    /// The member row's id.
    pub member_id: String,
    /// The member's pubkey.
    pub member_pubkey: String,
    /// `hello.sessionPubkey`, when set.
    pub session_pubkey: Option<String>,
    /// `hello.sessionId` (the dedupe key).
    pub session_id: String,
    /// `hello.displayName || member.display_name`.
    pub display_name: String,
    /// Current groups.
    pub groups: Vec<Group>,
    /// `set_visible`; hidden presences get no multicast and are not listed to other members.
    pub visible: bool,
    /// `set_profile` fields.
    pub profile: Map<String, Value>,
    /// `idle` | `working` | `dnd`.
    pub status: String,
    /// `set_summary`; `None` until set (listed as `null`).
    pub summary: Option<String>,
    /// `set_stats`, when received.
    pub stats: Option<Value>,
    /// Hello time, unix ms.
    pub connected_at: i64,
    /// `hello.cwd`.
    pub cwd: String,
    /// `hello.hostname`.
    pub hostname: Option<String>,
    /// `hello.peerType`.
    pub peer_type: Option<String>,
    /// `hello.channel`.
    pub channel: Option<String>,
    /// `hello.model`.
    pub model: Option<String>,
}

impl Presence {
    /// The routing identity: the session pubkey if any, else the member pubkey (§3.2).
    pub fn routing_pubkey(&self) -> &str {
        self.session_pubkey
            .as_deref()
            .unwrap_or(&self.member_pubkey)
    }
}

/// One accepted socket.
struct Conn {
    /// Where its outgoing frames go.
    tx: tokio::sync::mpsc::UnboundedSender<Outgoing>,
    /// Set between a successful hello and the end of the presence.
    presence: Option<Presence>,
}

/// The hub's state; see the module docs.
pub struct Hub {
    db: Connection,
    opts: HubOptions,
    conns: HashMap<ConnId, Conn>,
    rate: RateLimiter,
    next_seq: u64,
    shutting_down: bool,
}

impl Hub {
    /// A hub over an opened state database.
    pub fn new(db: Connection, opts: HubOptions) -> Self {
        Hub {
            db,
            opts,
            conns: HashMap::new(),
            rate: RateLimiter::default(),
            next_seq: 0,
            shutting_down: false,
        }
    }

    /// Handles commands until [`HubCmd::Exit`] or until every sender is gone, polling for
    /// revocations in between.
    pub fn run(mut self, rx: Receiver<HubCmd>) {
        let mut last_poll = Instant::now();
        loop {
            match rx.recv_timeout(REVOKE_POLL) {
                Ok(HubCmd::Exit) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(cmd) => self.handle(cmd),
                Err(RecvTimeoutError::Timeout) => {}
            }
            if last_poll.elapsed() >= REVOKE_POLL {
                last_poll = Instant::now();
                self.poll_revocations();
            }
        }
        log::debug!(
            "dev broker hub for {} stopped",
            self.opts.state_dir.display()
        );
    }

    fn handle(&mut self, cmd: HubCmd) {
        match cmd {
            HubCmd::Connected { conn, tx } => {
                if self.shutting_down {
                    let _ = tx.send(Outgoing::Close {
                        code: 1001,
                        reason: "shutting down".into(),
                    });
                }
                self.conns.insert(conn, Conn { tx, presence: None });
            }
            HubCmd::Hello { conn, raw, typed } => self.on_hello(conn, &raw, typed.map(|h| *h)),
            HubCmd::Frame { conn, frame } => self.on_frame(conn, *frame),
            HubCmd::Closed { conn } => self.on_closed(conn),
            HubCmd::Kick { who, reply } => {
                let _ = reply.send(self.close_member(&who, 4001, "kicked"));
            }
            HubCmd::HalfOpen { who, on, reply } => {
                let targets = self.conns_of(&who);
                for conn in &targets {
                    self.send(*conn, Outgoing::HalfOpen(on));
                }
                let _ = reply.send(targets.len());
            }
            HubCmd::DropAll { reply } => {
                let count = self.conns.len();
                for conn in self.conns.values() {
                    let _ = conn.tx.send(Outgoing::Terminate);
                }
                let _ = reply.send(count);
            }
            HubCmd::Shutdown { reply } => {
                self.shutting_down = true;
                let ids: Vec<ConnId> = self.conns.keys().copied().collect();
                for conn in ids {
                    self.end_presence(conn, true);
                    self.send(
                        conn,
                        Outgoing::Close {
                            code: 1001,
                            reason: "shutting down".into(),
                        },
                    );
                }
                let _ = reply.send(());
            }
            HubCmd::Exit => {}
        }
    }

    /// Writes `out` to `conn` if it is still there.
    fn send(&self, conn: ConnId, out: Outgoing) {
        if let Some(c) = self.conns.get(&conn) {
            let _ = c.tx.send(out);
        }
    }

    /// Encodes and writes a broker frame.
    fn send_frame(&self, conn: ConnId, frame: &BrokerFrame) {
        self.send(conn, Outgoing::Text(encode(frame)));
    }

    fn presence(&self, conn: ConnId) -> Option<&Presence> {
        self.conns.get(&conn).and_then(|c| c.presence.as_ref())
    }

    fn presence_mut(&mut self, conn: ConnId) -> Option<&mut Presence> {
        self.conns.get_mut(&conn).and_then(|c| c.presence.as_mut())
    }

    /// Authenticated connections of `mesh_id`, in registration order.
    fn mesh_conns(&self, mesh_id: &str) -> Vec<(ConnId, &Presence)> {
        let mut list: Vec<(ConnId, &Presence)> = self
            .conns
            .iter()
            .filter_map(|(id, c)| c.presence.as_ref().map(|p| (*id, p)))
            .filter(|(_, p)| p.mesh_id == mesh_id)
            .collect();
        list.sort_by_key(|(_, p)| (p.connected_at, p.seq));
        list
    }

    /// A system push (§4.2): `subtype:"system"`, `senderPubkey:"system"`, a UUID v4 id.
    fn system_push(mesh_id: &str, event: &str, data: Value) -> BrokerFrame {
        BrokerFrame::Push(Push {
            message_id: uuid_v4(),
            mesh_id: mesh_id.to_owned(),
            sender_pubkey: "system".into(),
            sender_member_pubkey: None,
            sender_member_id: None,
            sender_name: None,
            topic: None,
            reply_to_id: None,
            priority: "low".into(),
            nonce: String::new(),
            ciphertext: String::new(),
            created_at: iso_from_ms(now_ms()),
            subtype: Some("system".into()),
            event: Some(event.to_owned()),
            event_data: Some(data),
            client_message_id: None,
            request_fingerprint: None,
        })
    }

    /// Sends a system event about `subject` to the other connections of its mesh; with
    /// `same_member`, connections of the subject's own member get it too.
    fn broadcast_event(
        &self,
        subject: &Presence,
        exclude: ConnId,
        event: &str,
        data: Value,
        same_member: bool,
    ) {
        let frame = Self::system_push(&subject.mesh_id, event, data);
        let text = encode(&frame);
        for (id, p) in self.mesh_conns(&subject.mesh_id) {
            if id == exclude || (!same_member && p.member_id == subject.member_id) {
                continue;
            }
            self.send(id, Outgoing::Text(text.clone()));
        }
    }

    fn on_closed(&mut self, conn: ConnId) {
        if let Some(presence) = self.end_presence(conn, true) {
            let data = json!({"name": presence.display_name, "pubkey": presence.routing_pubkey()});
            self.broadcast_event(&presence, conn, "peer_left", data, false);
        }
        self.conns.remove(&conn);
    }

    /// Removes `conn`'s presence; with `save`, stores the member's `peer_state` first.
    fn end_presence(&mut self, conn: ConnId, save: bool) -> Option<Presence> {
        let presence = self.conns.get_mut(&conn)?.presence.take()?;
        if save {
            let stats = match &presence.stats {
                Some(Value::Object(map)) => map.clone(),
                _ => Map::new(),
            };
            let saved = PeerState {
                groups: presence.groups.clone(),
                summary: presence.summary.clone().unwrap_or_default(),
                visible: presence.visible,
                profile: presence.profile.clone(),
                stats,
                last_seen_at: now_ms(),
            };
            if let Err(err) = peer_state::save_peer_state(
                &self.db,
                &presence.mesh_id,
                &presence.member_id,
                &saved,
            ) {
                log::warn!(
                    "dev broker: saving peer_state of {}: {err}",
                    presence.member_id
                );
            }
        }
        Some(presence)
    }

    /// Connections matching a member name, member pubkey or session pubkey.
    fn conns_of(&self, who: &str) -> Vec<ConnId> {
        let member_ids: Vec<String> = state::mesh(&self.db)
            .ok()
            .flatten()
            .and_then(|mesh| state::members(&self.db, &mesh.id).ok())
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.name == who || m.pubkey == who)
            .map(|m| m.id)
            .collect();
        self.conns
            .iter()
            .filter(|(_, c)| {
                c.presence.as_ref().is_some_and(|p| {
                    member_ids.contains(&p.member_id)
                        || p.member_pubkey == who
                        || p.session_pubkey.as_deref() == Some(who)
                })
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// Closes every connection of `who` with `code`/`reason`, without `peer_left`.
    fn close_member(&mut self, who: &str, code: u16, reason: &str) -> usize {
        let targets = self.conns_of(who);
        for conn in &targets {
            self.end_presence(*conn, false);
            self.send(
                *conn,
                Outgoing::Close {
                    code,
                    reason: reason.to_owned(),
                },
            );
        }
        targets.len()
    }

    fn poll_revocations(&mut self) {
        let revoked = match state::revoked_member_ids(&self.db) {
            Ok(ids) => ids,
            Err(err) => {
                log::warn!("dev broker: polling revocations: {err}");
                return;
            }
        };
        let banned: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.presence
                    .as_ref()
                    .is_some_and(|p| revoked.contains(&p.member_id))
            })
            .map(|(id, _)| *id)
            .collect();
        for conn in banned {
            self.end_presence(conn, false);
            self.send(
                conn,
                Outgoing::Close {
                    code: 4002,
                    reason: "banned".into(),
                },
            );
        }
    }
}
