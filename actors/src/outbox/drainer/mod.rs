//! OutboxDrainer: drains pending rows to each mesh's BrokerConnection.
//!
//! Accepts [`RequeueRow`], [`CloseOutbox`] from the IPC layer, [`AcceptsCommitted`](super::accepts::AcceptsCommitted) from
//! the accept lane ([`crate::outbox::accepts`], which commits sends without this actor) and
//! [`LinkEvent`] from the connections (reads go to [`crate::readpool`], never here). Sends
//! [`DeliverSend`]/[`ResolvePeer`] to connections and `outbox_dead` events to the
//! InboxStore journal. SQL runs on the [`OutboxDb`] thread. Accepting never depends on a broker:
//! with every link down, sends still commit and wait as `pending`.
//!
//! Drain rules (SPEC §5.4): per destination FIFO order, up to `destination_window` rows in
//! flight back to back (`flight`: outcomes taken in send order, a failure sends the rows
//! behind it back to pending); up to `window` rows in flight per mesh; encryption at drain
//! time; the ack outcome table decides done / pending (counted or not) / dead. Claims take
//! up to [`CLAIM_AHEAD`] rows of a destination at once; the ones beyond its wire window are
//! held and sent as slots free up (the mesh's free slots go to the longest-waiting
//! destination first).
//!
//! Handlers live beside their message family: `accept` (new rows to drain), `claim` (claim,
//! resolve, dispatch, link events), `flight` (one destination's window), `apply` (outcomes
//! in send order, group apply, close), `queries` (operator reads and requeue), `wake` (the
//! one timer, armed only while a backoff is running). This file holds the state,
//! housekeeping and the stop.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;

mod accept;
mod apply;
mod claim;
mod flight;
mod late;
mod queries;
mod sessions;
mod wake;

pub use sessions::{SessionLinkAdded, SessionLinkRemoved, SessionLinksReady};

use super::db::{DbTask, OutboxDb};
use super::msg::*;
use super::outcome::Update;
use super::seen::SeenIds;
use super::store::{self, OutboxRow};
use crate::broker::msg::{DeliverSend, ResolvePeer};
use crate::broker::BrokerConnection;
use crate::crypto::MemberKeys;
use crate::inbox::msg::RecordEvent;
use crate::metrics::Metrics;
use crate::settings::OutboxTuning;
use crate::time::now_ms;

/// Backoff of rows whose target is offline or unresolved (not counted), capped (SPEC §5.4).
const OFFLINE_CAP_MS: u64 = 60_000;
/// Backoff of counted failures.
const RETRY_BASE_MS: u64 = 500;
const RETRY_CAP_MS: u64 = 30_000;

/// `count` units of `unit_ms` milliseconds, saturating at `i64::MAX` ("never"): a wrapped
/// product would put an expiry cutoff in the future and kill every row.
fn span_ms(count: u64, unit_ms: u64) -> i64 {
    count
        .checked_mul(unit_ms)
        .and_then(|ms| i64::try_from(ms).ok())
        .unwrap_or(i64::MAX)
}

/// One mesh the drainer can send to.
pub struct DrainTarget {
    pub slug: String,
    pub keys: MemberKeys,
    pub link: Addr<BrokerConnection>,
}

/// What the drainer sends to one mesh's connection: recipients rather than the connection's
/// address, so the drain can be exercised against a stand-in link.
#[derive(Clone)]
pub struct LinkRecipients {
    /// Sends a row and answers with the broker's outcome.
    pub deliver: Recipient<DeliverSend>,
    /// Resolves a name or prefix against the peer list.
    pub resolve: Recipient<ResolvePeer>,
}

impl From<Addr<BrokerConnection>> for LinkRecipients {
    fn from(link: Addr<BrokerConnection>) -> Self {
        LinkRecipients {
            deliver: link.clone().recipient(),
            resolve: link.recipient(),
        }
    }
}

struct MeshState {
    keys: MemberKeys,
    link: LinkRecipients,
    up: bool,
    /// Destinations with rows in flight, each with its window.
    busy: HashMap<String, flight::DestFlight>,
    /// Destinations with a held row waiting for a free slot of the mesh window, longest
    /// waiting first: the next free slot goes to the front one.
    ready: std::collections::VecDeque<String>,
    /// A claim is running; `again` asks for another when it ends.
    claiming: bool,
    again: bool,
}

impl MeshState {
    /// Rows claimed and not yet recorded, over every destination.
    fn in_flight(&self) -> usize {
        self.busy.values().map(flight::DestFlight::len).sum()
    }
}

/// Rows a claim takes ahead per destination beyond its wire window (at least this many are
/// claimed together): they go out one by one as the rows ahead come back, with no claim in
/// between, so one destination drains at the broker's round trip, not the database's.
const CLAIM_AHEAD: usize = 8;

impl OutboxDrainer {
    /// Rows on the wire per destination (`destination_window`, SPEC §5.4).
    fn wire_window(&self) -> usize {
        self.tuning.destination_window.max(1) as usize
    }

    /// Rows one destination may have claimed at once: held and on the wire.
    fn claim_depth(&self) -> usize {
        self.wire_window().max(CLAIM_AHEAD)
    }

    /// Rows one mesh may have claimed at once: its window (rows on the wire) times the
    /// claim-ahead depth.
    fn claim_budget(&self) -> usize {
        (self.tuning.window.max(1) as usize).saturating_mul(CLAIM_AHEAD)
    }
}

/// The drainer actor.
pub struct OutboxDrainer {
    db: Addr<OutboxDb>,
    meshes: HashMap<String, MeshState>,
    tuning: OutboxTuning,
    journal: Recipient<RecordEvent>,
    metrics: Arc<Metrics>,
    /// Rate limit of the log lines of storage failures (a full disk fails every step).
    storage_log: crate::storage::LogGate,
    /// Uncounted retries per row, for the offline backoff exponent (in memory only).
    offline_retries: HashMap<i64, u32>,
    /// After [`CloseOutbox`]: no new claims.
    closing: bool,
    /// Outcomes waiting for the next group apply.
    updates: Vec<Update>,
    /// A group apply is running.
    updating: bool,
    /// Dispatch numbers and timed-out rows, for late acks (`late.rs`).
    late: late::LateAcks,
    /// When backoffs expire, and the one timer armed for the earliest (`wake.rs`).
    due: wake::DueTimes,
    /// Session connections, for rows sent by a session (`sessions.rs`).
    session_routes: sessions::SessionRoutes,
    /// The ids the outbox may hold: a requeue adds its new id here before its row can exist
    /// (`queries.rs`; accepts add theirs in the accept lane).
    seen: Arc<SeenIds>,
    /// Shared DM keys per recipient: one X25519 exchange per peer, not per row.
    boxes: crate::crypto::DmBoxes,
}

impl OutboxDrainer {
    /// A drainer over `db` for `targets`.
    pub fn new(
        db: Addr<OutboxDb>,
        targets: Vec<DrainTarget>,
        tuning: OutboxTuning,
        journal: Recipient<RecordEvent>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let links = targets
            .into_iter()
            .map(|t| (t.slug, t.keys, LinkRecipients::from(t.link)))
            .collect();
        let mut drainer = Self::with_links(db, links, tuning, journal, metrics);
        // Rows sent by sessions must not be routed before the registry has said which
        // sessions live ([`SessionLinksReady`]).
        drainer.session_routes.ready = false;
        drainer
    }

    /// A drainer over `db` sending each mesh `(slug, keys, link)` to `link`.
    pub fn with_links(
        db: Addr<OutboxDb>,
        links: Vec<(String, MemberKeys, LinkRecipients)>,
        tuning: OutboxTuning,
        journal: Recipient<RecordEvent>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let meshes = links
            .into_iter()
            .map(|(slug, keys, link)| {
                let state = MeshState {
                    keys,
                    link,
                    up: false,
                    busy: HashMap::new(),
                    ready: Default::default(),
                    claiming: false,
                    again: false,
                };
                (slug, state)
            })
            .collect();
        OutboxDrainer {
            db,
            meshes,
            tuning,
            journal,
            metrics,
            storage_log: Default::default(),
            offline_retries: HashMap::new(),
            closing: false,
            updates: Vec::new(),
            updating: false,
            late: late::LateAcks::default(),
            due: wake::DueTimes::default(),
            session_routes: Default::default(),
            boxes: Default::default(),
            seen: Arc::default(),
        }
    }

    /// Records the ids this drainer's requeues may store in `ids` (shared with the accept
    /// lane and the IPC layer, which skips the read-only lookup for an id certainly not there).
    pub fn with_seen_ids(mut self, ids: Arc<SeenIds>) -> Self {
        self.seen = ids;
        self
    }
}

impl OutboxDrainer {
    fn report_dead(&self, row: &OutboxRow, error: &str) {
        Metrics::inc(&self.metrics.sends_dead);
        log::warn!(
            "outbox row {} ({}) is dead: {error}",
            row.id,
            row.client_message_id
        );
        let mut f = serde_json::Map::new();
        f.insert("id".into(), row.id.into());
        f.insert(
            "client_message_id".into(),
            row.client_message_id.clone().into(),
        );
        f.insert("to".into(), row.to.clone().into());
        f.insert("last_error".into(), error.into());
        f.insert("attempts".into(), row.attempts.into());
        self.journal.do_send(RecordEvent {
            kind: "outbox_dead".into(),
            mesh: Some(row.mesh.clone()),
            fields: f,
        });
    }

    fn housekeeping(&mut self, ctx: &mut Context<Self>) {
        let now = now_ms();
        let max_age = span_ms(self.tuning.max_age_hours, 3_600_000);
        let retention = span_ms(u64::from(self.tuning.payload_retention_days), 86_400_000);
        let fut = self.db.send(DbTask::new(move |conn| {
            let expired = store::expire(conn, now, max_age)?;
            store::prune_payloads(conn, now.saturating_sub(retention))?;
            Ok(expired)
        }));
        ctx.spawn(fut.into_actor(self).map(|res, act, _| match res {
            Ok(Ok(rows)) => {
                for row in rows {
                    act.offline_retries.remove(&row.id);
                    let err = row.last_error.clone().unwrap_or_else(|| "expired".into());
                    act.report_dead(&row, &err);
                }
            }
            Ok(Err(e)) => log::error!("outbox housekeeping failed: {e}"),
            Err(e) => log::error!("outbox db unavailable: {e}"),
        }));
    }
}

impl Actor for OutboxDrainer {
    type Context = Context<Self>;

    /// No fixed tick: claims follow events, and backoff expiries arm one timer (`wake.rs`).
    fn started(&mut self, ctx: &mut Context<Self>) {
        self.housekeeping(ctx);
        // Rows an earlier run left backing off: their expiry arms the timer.
        self.schedule_from_db(ctx);
        ctx.run_interval(wake::HOUSEKEEPING, |act, ctx| {
            act.housekeeping(ctx);
            act.drain_all(ctx);
        });
    }
}

impl Handler<StopDraining> for OutboxDrainer {
    type Result = ();

    fn handle(&mut self, _msg: StopDraining, _ctx: &mut Context<Self>) {
        self.closing = true;
    }
}

#[cfg(test)]
mod tests;
