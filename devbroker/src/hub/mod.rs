//! The hub: the single owner of the dev broker's live state — connections and their presences,
//! rate-limit buckets — and of its SQLite connection. It runs on its own thread and handles one
//! [`HubCmd`] at a time, so every decision (validate a hello, route a send, drain a queue, fan
//! out an event) is atomic with respect to every other, like one actor's mailbox.
//!
//! - `hello`: member-`hello` validation in the broker's order, registration, drain-before-ack,
//!   the `peer_joined`/`peer_returned` event; `head_hello`: the head profile's lease reattach
//!   and `session_hello`.
//! - `send`: the `send` pipeline (rate limit, size, `--dedupe`, pre-flight, queue, ack,
//!   fan-out); `drain`: the drain (seed: at most once; head: claims) and `client_ack`.
//! - `peers`: `list_peers` and the `set_*`/group frames.
//! - `lifecycle`: closes (seed: `peer_left`; head: the offline lease), lease expiry, the claim
//!   sweep, kicks and revocations.
//!
//! Invariants:
//! - A connection has a [`Presence`] only between its successful hello and its close, kick,
//!   ban or replacement; only connections with a presence receive pushes and events, and only
//!   they are routed to. Head profile: a closed connection whose presence was online stays in
//!   the map as *leased* (`lease_until` set, its socket gone) until a reattach moves the
//!   presence to the new connection or the lease expires; it is listed and routed to, and
//!   whatever is written to it is lost, like the real broker's `sendToPeer` on a dead socket.
//! - A presence removed by kick, ban (revocation) or `session_replaced` produces no `peer_left`
//!   and saves no `peer_state` (the real broker's close handler finds no entry); a presence
//!   removed by a close (seed) or by its lease expiring (head) sends `peer_left`; its
//!   `peer_state` is saved at the close.
//! - Every member change made by `dev-mesh` is seen without a restart: members are read from
//!   the database at each hello and send; revocations are polled every 200 ms.

#[cfg(test)]
mod batch_tests;
mod drain;
mod head_hello;
mod hello;
mod lifecycle;
pub mod msg;
mod peers;
mod presence;
mod send;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use claudemesh_actors::time::{iso_from_ms, now_ms};
use claudemesh_actors::wire::{encode, BrokerFrame, Push};
use rusqlite::Connection;
use serde_json::Value;

pub use self::presence::Presence;
pub use self::send::{
    FINGERPRINT_MISMATCH_ERROR, GRANTS_ERROR, INJECTED_FAILURE_ERROR, MAX_MESSAGE_BYTES,
    NO_PEER_ERROR,
};

use self::msg::{ConnId, HubCmd, Outgoing};
use super::ids::uuid_v4;
use super::inspect::Profile;
use super::presence_table::{self, PresenceRow};
use super::queue;
use super::rate::RateLimiter;

/// How often revocations made by `dev-mesh revoke` are looked for.
const REVOKE_POLL: Duration = Duration::from_millis(200);
/// Most commands handled in one transaction: a burst of sends shares one commit.
const MAX_BATCH: usize = 256;

/// Behaviour switches of one broker run.
#[derive(Clone, Debug)]
pub struct HubOptions {
    /// The state directory (for logs).
    pub state_dir: PathBuf,
    /// Per-member token bucket on `send` (on by default; `--no-rate-limit` turns it off).
    pub rate_limit: bool,
    /// SPEC §11 broker-side idempotency on `(mesh, client_message_id)`.
    pub dedupe: bool,
    /// Which broker to reproduce.
    pub profile: Profile,
    /// Head: the offline lease of a closed presence.
    pub grace: Duration,
    /// Head: how long a drained row stays claimed, in ms.
    pub claim_ms: u64,
    /// Head: interval of the expired-claim sweep.
    pub sweep: Duration,
    /// Test fault: every Nth `send` is refused (`injected_failure`).
    pub fail_every: Option<u64>,
    /// Test fault: every Nth `send` is queued and its socket dropped before the ack.
    pub drop_every: Option<u64>,
}

/// One accepted socket — or, head profile, the dead socket of a leased presence.
struct Conn {
    /// Where its outgoing frames go (nowhere once the socket is gone).
    tx: tokio::sync::mpsc::UnboundedSender<Outgoing>,
    /// Set between a successful hello and the end of the presence.
    presence: Option<Presence>,
    /// Head: set when the socket closed and the presence entered its offline lease.
    lease_until: Option<Lease>,
}

/// When an offline lease ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// On the hub's clock.
    pub until: Instant,
    /// The same moment, unix ms (for the presence mirror).
    pub until_ms: i64,
}

/// The hub's state; see the module docs.
pub struct Hub {
    db: Connection,
    opts: HubOptions,
    conns: HashMap<ConnId, Conn>,
    rate: RateLimiter,
    next_seq: u64,
    shutting_down: bool,
    /// `send` frames seen (for the test faults).
    sends_seen: u64,
    /// What the `presence` table holds (rewritten when the presences differ).
    mirrored: Option<Vec<PresenceRow>>,
    /// A batch transaction is open (see [`Hub::run`]).
    in_batch: bool,
    /// Frames decided during the open batch, in decision order, each with its socket's
    /// channel: written once the batch has committed, so no client sees an ack (or a push)
    /// before the row behind it is stored.
    held: RefCell<Vec<(tokio::sync::mpsc::UnboundedSender<Outgoing>, Outgoing)>>,
}

impl Hub {
    /// A hub over an opened state database. A new broker holds no presences: the `presence`
    /// mirror left by a previous run is cleared here, before the broker serves.
    pub fn new(mut db: Connection, opts: HubOptions) -> Self {
        let mirrored = match presence_table::replace_all(&mut db, &[]) {
            Ok(()) => Some(Vec::new()),
            Err(err) => {
                log::warn!("dev broker: clearing the presence mirror: {err}");
                None
            }
        };
        Hub {
            db,
            opts,
            conns: HashMap::new(),
            rate: RateLimiter::default(),
            next_seq: 0,
            shutting_down: false,
            sends_seen: 0,
            mirrored,
            in_batch: false,
            held: RefCell::new(Vec::new()),
        }
    }

    fn head(&self) -> bool {
        self.opts.profile == Profile::Head
    }

    /// Handles commands until [`HubCmd::Exit`] or until every sender is gone; in between,
    /// polls for revocations and (head) expires leases and sweeps expired claims.
    ///
    /// Group commit: the commands already waiting (up to [`MAX_BATCH`]) are handled in one
    /// `BEGIN IMMEDIATE` transaction, committed before any frame they produced is written, so a
    /// burst of sends costs one commit instead of one or two each. Frames keep the order in
    /// which they were decided, and every frame still follows the write it reports, as when
    /// each statement committed on its own; only the moment they leave changes (after the
    /// batch, microseconds later).
    pub fn run(mut self, rx: Receiver<HubCmd>) {
        let mut next_poll = Instant::now() + REVOKE_POLL;
        let mut next_sweep = Instant::now() + self.opts.sweep;
        let mut exit = false;
        while !exit {
            let mut wake = next_poll;
            if self.head() {
                wake = wake.min(next_sweep);
                if let Some(lease) = self.next_lease_end() {
                    wake = wake.min(lease);
                }
            }
            let first = match rx.recv_timeout(wake.saturating_duration_since(Instant::now())) {
                Ok(HubCmd::Exit) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(cmd) => Some(cmd),
                Err(RecvTimeoutError::Timeout) => None,
            };
            self.begin_batch();
            if let Some(cmd) = first {
                self.handle(cmd);
                for _ in 1..MAX_BATCH {
                    match rx.try_recv() {
                        Ok(HubCmd::Exit) | Err(TryRecvError::Disconnected) => {
                            exit = true;
                            break;
                        }
                        Ok(cmd) => self.handle(cmd),
                        Err(TryRecvError::Empty) => break,
                    }
                }
            }
            let now = Instant::now();
            if now >= next_poll {
                next_poll = now + REVOKE_POLL;
                self.poll_revocations();
            }
            if self.head() {
                self.expire_leases(now);
                if now >= next_sweep {
                    next_sweep = now + self.opts.sweep;
                    match queue::release_expired_claims(&self.db, now_ms()) {
                        Ok(0) => {}
                        Ok(n) => log::debug!("dev broker: {n} expired claims released"),
                        Err(err) => log::warn!("dev broker: claim sweep: {err}"),
                    }
                }
            }
            self.mirror_presences();
            self.end_batch();
        }
        log::debug!(
            "dev broker hub for {} stopped",
            self.opts.state_dir.display()
        );
    }

    /// Opens the batch transaction. If it cannot be opened (the database busy past its
    /// timeout), the batch runs without one: each statement commits on its own, as it would
    /// without batching.
    fn begin_batch(&mut self) {
        match self.db.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => self.in_batch = true,
            Err(err) => log::warn!("dev broker: begin batch: {err}"),
        }
    }

    /// Commits the batch, then writes the held frames. If the commit fails, the batch is rolled
    /// back and none of its frames is written: an ack there would name a row that is not stored.
    /// Each socket that had frames held is closed with 1011 instead, as a broker that failed
    /// mid-request would, so its client sends again whatever it has not seen acked.
    fn end_batch(&mut self) {
        let committed = !std::mem::take(&mut self.in_batch) || self.commit_batch();
        let held = std::mem::take(self.held.get_mut());
        if committed {
            for (tx, out) in held {
                let _ = tx.send(out);
            }
            return;
        }
        let mut closed: Vec<tokio::sync::mpsc::UnboundedSender<Outgoing>> = Vec::new();
        for (tx, _) in held {
            if closed.iter().any(|c| c.same_channel(&tx)) {
                continue;
            }
            let _ = tx.send(Outgoing::Close {
                code: 1011,
                reason: "internal error".into(),
            });
            closed.push(tx);
        }
    }

    /// `COMMIT`; on failure logs, rolls back and answers false.
    fn commit_batch(&mut self) -> bool {
        match self.db.execute_batch("COMMIT") {
            Ok(()) => true,
            Err(err) => {
                log::warn!("dev broker: commit batch: {err}");
                if let Err(err) = self.db.execute_batch("ROLLBACK") {
                    log::warn!("dev broker: roll back batch: {err}");
                }
                false
            }
        }
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
                let entry = Conn {
                    tx,
                    presence: None,
                    lease_until: None,
                };
                self.conns.insert(conn, entry);
            }
            HubCmd::Hello { conn, raw, typed } => self.on_hello(conn, &raw, typed.map(|h| *h)),
            HubCmd::SessionHello { conn, raw } => self.on_session_hello(conn, &raw),
            HubCmd::Frame { conn, frame } => self.on_frame(conn, *frame),
            HubCmd::Closed { conn } => self.on_closed(conn),
            HubCmd::Kick { who, reply } => {
                let _ = reply.send(self.close_member(&who, 4001, "kicked"));
            }
            HubCmd::HalfOpen { who, on, reply } => {
                let targets = self.live_conns_of(&who);
                for conn in &targets {
                    self.send(*conn, Outgoing::HalfOpen(on));
                }
                let _ = reply.send(targets.len());
            }
            HubCmd::DropAll { reply } => {
                let live: Vec<ConnId> = self
                    .conns
                    .iter()
                    .filter(|(_, c)| c.lease_until.is_none())
                    .map(|(id, _)| *id)
                    .collect();
                for conn in &live {
                    self.send(*conn, Outgoing::Terminate);
                }
                let _ = reply.send(live.len());
            }
            HubCmd::Presences { reply } => {
                let _ = reply.send(self.presence_infos());
            }
            HubCmd::QueueRows { reply } => {
                let rows = queue::list_rows(&self.db).unwrap_or_else(|err| {
                    log::warn!("dev broker: listing the queue: {err}");
                    Vec::new()
                });
                let _ = reply.send(rows);
            }
            HubCmd::Shutdown { reply } => {
                self.shutting_down = true;
                self.conns.retain(|_, c| c.lease_until.is_none());
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

    /// Rewrites the `presence` table when the presences differ from what it holds.
    fn mirror_presences(&mut self) {
        let mut rows: Vec<(u64, PresenceRow)> = self
            .conns
            .values()
            .filter_map(|c| {
                let p = c.presence.as_ref()?;
                Some((p.seq, p.row(c.lease_until.map(|l| l.until_ms))))
            })
            .collect();
        rows.sort_by_key(|(seq, row)| (row.connected_at, *seq));
        let rows: Vec<PresenceRow> = rows.into_iter().map(|(_, row)| row).collect();
        if self.mirrored.as_ref() == Some(&rows) {
            return;
        }
        match presence_table::replace_all(&mut self.db, &rows) {
            Ok(()) => self.mirrored = Some(rows),
            Err(err) => log::warn!("dev broker: mirroring presences: {err}"),
        }
    }

    /// Writes `out` to `conn` if it is still there (lost if its socket is gone), once the
    /// current batch has committed.
    fn send(&self, conn: ConnId, out: Outgoing) {
        if let Some(c) = self.conns.get(&conn) {
            self.held.borrow_mut().push((c.tx.clone(), out));
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

    /// Presences of `mesh_id` (leased ones included), in registration order.
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
}
