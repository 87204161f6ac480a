//! OutboxDrainer: accepts sends (group commit) and drains pending rows to each mesh's
//! BrokerConnection.
//!
//! Accepts [`AcceptSend`], [`ListOutbox`], [`GetOutboxRow`], [`RequeueRow`], [`GetOutboxCounts`],
//! [`CloseOutbox`] from the IPC layer and [`LinkEvent`] from the connections. Sends
//! [`DeliverSend`]/[`ResolvePeer`]/[`RateLimited`] to connections and `outbox_dead` events to the
//! InboxStore journal. SQL runs on the [`OutboxDb`] thread. Accepting never depends on a broker:
//! with every link down, sends still commit and wait as `pending`.
//!
//! Drain rules (SPEC §5.4): per destination one row in flight and FIFO order; up to `window`
//! destinations in flight per mesh; encryption at drain time; the ack outcome table decides
//! done / pending (counted or not) / dead.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

mod late;
mod queries;
use queries::query;

use super::db::{DbTask, OutboxDb};
use super::msg::*;
use super::outcome::{self, apply_one, Change, Op, Step, Update};
use super::store::{self, Accepted, NewSend, OutboxRow};
use crate::broker::msg::{
    DeliverSend, DeliveryOutcome, LinkEvent, OutgoingSend, RateLimited, Resolution, ResolvePeer,
};
use crate::broker::peers::is_pubkey;
use crate::broker::BrokerConnection;
use crate::crypto::{self, MemberKeys};
use crate::inbox::msg::RecordEvent;
use crate::metrics::Metrics;
use crate::settings::OutboxTuning;
use crate::time::now_ms;

/// How often due rows are looked for even without a trigger (backoff expiry).
const TICK: Duration = Duration::from_millis(250);
/// Backoff of rows whose target is offline or unresolved (not counted), capped (SPEC §5.4).
const OFFLINE_CAP_MS: u64 = 60_000;
/// Backoff of counted failures.
const RETRY_BASE_MS: u64 = 500;
const RETRY_CAP_MS: u64 = 30_000;

/// One mesh the drainer can send to.
pub struct DrainTarget {
    pub slug: String,
    pub keys: MemberKeys,
    pub link: Addr<BrokerConnection>,
}

struct MeshState {
    keys: MemberKeys,
    link: Addr<BrokerConnection>,
    up: bool,
    /// Destinations with a row in flight.
    busy: HashSet<String>,
    /// A claim is running; `again` asks for another when it ends.
    claiming: bool,
    again: bool,
}

type AcceptReply = oneshot::Sender<Result<Accepted, OutboxError>>;

/// The drainer actor.
pub struct OutboxDrainer {
    db: Addr<OutboxDb>,
    meshes: HashMap<String, MeshState>,
    tuning: OutboxTuning,
    journal: Recipient<RecordEvent>,
    metrics: Arc<Metrics>,
    /// Accepts waiting for the next group commit.
    accept_queue: Vec<(NewSend, AcceptReply)>,
    /// A group commit is running.
    accepting: bool,
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
        let meshes = targets
            .into_iter()
            .map(|t| {
                let state = MeshState {
                    keys: t.keys,
                    link: t.link,
                    up: false,
                    busy: HashSet::new(),
                    claiming: false,
                    again: false,
                };
                (t.slug, state)
            })
            .collect();
        OutboxDrainer {
            db,
            meshes,
            tuning,
            journal,
            metrics,
            accept_queue: Vec::new(),
            accepting: false,
            offline_retries: HashMap::new(),
            closing: false,
            updates: Vec::new(),
            updating: false,
            late: late::LateAcks::default(),
        }
    }

    fn flush_accepts(&mut self, ctx: &mut Context<Self>) {
        if self.accepting || self.accept_queue.is_empty() {
            return;
        }
        self.accepting = true;
        let (batch, replies): (Vec<NewSend>, Vec<AcceptReply>) =
            std::mem::take(&mut self.accept_queue).into_iter().unzip();
        let meshes: HashSet<String> = batch.iter().map(|s| s.mesh.clone()).collect();
        let now = now_ms();
        let fut = self.db.send(DbTask::new(move |conn| {
            store::accept_batch(conn, &batch, now)
        }));
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.accepting = false;
            match res {
                Ok(Ok(answers)) => {
                    for (answer, reply) in answers.into_iter().zip(replies) {
                        let fresh = matches!(answer, Accepted::Queued { .. });
                        Metrics::inc(if fresh {
                            &act.metrics.sends_accepted
                        } else {
                            &act.metrics.dedupe_hits
                        });
                        let _ = reply.send(Ok(answer));
                    }
                }
                Ok(Err(e)) => {
                    log::error!("outbox accept failed: {e}");
                    let msg = e.to_string();
                    for reply in replies {
                        let _ = reply.send(Err(OutboxError::Batch(msg.clone())));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(OutboxError::Mailbox(e)));
                    }
                }
            }
            for mesh in meshes {
                act.drain(ctx, &mesh);
            }
            act.flush_accepts(ctx);
        }));
    }

    /// Claims due rows of `mesh` up to the free window and dispatches them.
    fn drain(&mut self, ctx: &mut Context<Self>, mesh: &str) {
        if self.closing {
            return;
        }
        let window = self.tuning.window.max(1) as usize;
        let Some(st) = self.meshes.get_mut(mesh) else {
            return;
        };
        if !st.up {
            return;
        }
        if st.claiming {
            st.again = true;
            return;
        }
        let free = window.saturating_sub(st.busy.len());
        if free == 0 {
            return;
        }
        st.claiming = true;
        st.again = false;
        let busy = st.busy.clone();
        let slug = mesh.to_string();
        let now = now_ms();
        let fut = self.db.send(DbTask::new(move |conn| {
            store::claim_due(conn, &slug, now, free, &busy)
        }));
        let slug = mesh.to_string();
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            let rows = match res {
                Ok(Ok(rows)) => rows,
                Ok(Err(e)) => {
                    log::error!("outbox claim for {slug} failed: {e}");
                    Vec::new()
                }
                Err(e) => {
                    log::error!("outbox db unavailable: {e}");
                    Vec::new()
                }
            };
            act.claimed(ctx, &slug, rows);
        }));
    }

    /// A claim of `mesh` returned `rows`: mark their destinations busy and send them; run the
    /// claim that was asked for meanwhile.
    fn claimed(&mut self, ctx: &mut Context<Self>, mesh: &str, rows: Vec<OutboxRow>) {
        let mut again = false;
        if let Some(st) = self.meshes.get_mut(mesh) {
            st.claiming = false;
            again = st.again;
            for row in &rows {
                st.busy.insert(store::destination_key(row).to_string());
            }
        }
        for row in rows {
            self.dispatch(ctx, row);
        }
        if again {
            self.drain(ctx, mesh);
        }
    }

    /// Resolves, encrypts and sends one claimed row, then applies the outcome.
    fn dispatch(&mut self, ctx: &mut Context<Self>, row: OutboxRow) {
        let Some(st) = self.meshes.get(&row.mesh) else {
            return;
        };
        let link = st.link.clone();
        let keys = st.keys.clone();
        let seq = self.late.sent(&row.client_message_id);
        let fut = async move {
            let target = match &row.target {
                Some(t) => t.clone(),
                None => {
                    let q = ResolvePeer {
                        name: row.to.clone(),
                        max_age_ms: 5_000,
                        wait_ms: 1_000,
                    };
                    match link.send(q).await {
                        Ok(Resolution::Found { pubkey }) => pubkey,
                        Ok(Resolution::Ambiguous { .. }) => {
                            return (row, None, Step::Unresolved("ambiguous_peer"))
                        }
                        Ok(_) => return (row, None, Step::Unresolved("unknown_peer")),
                        Err(_) => return (row, None, Step::Unresolved("unknown_peer")),
                    }
                }
            };
            let payload = row.payload.clone().unwrap_or_default();
            let body = if is_pubkey(&target) {
                match crypto::seal_dm(&keys, &target, &payload) {
                    Ok(b) => b,
                    Err(e) => return (row, Some(target), Step::Permanent(format!("encrypt: {e}"))),
                }
            } else {
                match std::str::from_utf8(&payload) {
                    Ok(text) => crypto::encode_plain(text),
                    Err(_) => {
                        return (
                            row,
                            Some(target),
                            Step::Permanent("payload is not UTF-8".into()),
                        )
                    }
                }
            };
            let send = OutgoingSend {
                client_message_id: row.client_message_id.clone(),
                request_fingerprint: hex::encode(&row.fingerprint),
                target_spec: target.clone(),
                priority: row.priority.clone(),
                nonce: body.nonce_b64,
                ciphertext: body.ciphertext_b64,
                reply_to_id: row.reply_to_id.clone(),
            };
            let outcome = match link.send(DeliverSend { send, seq }).await {
                Ok(o) => o,
                Err(e) => DeliveryOutcome::NotConnected {
                    reason: format!("link mailbox: {e}"),
                },
            };
            (row, Some(target), Step::Delivered(outcome))
        };
        ctx.spawn(fut.into_actor(self).map(|(row, target, step), act, ctx| {
            act.apply(ctx, row, target, step);
        }));
    }

    fn apply(
        &mut self,
        ctx: &mut Context<Self>,
        row: OutboxRow,
        target: Option<String>,
        step: Step,
    ) {
        let now = now_ms();
        let id = row.id;
        let mesh = row.mesh.clone();
        let resolved_now = row.target.is_none() && target.is_some();
        let step = self.late.settle(&row, step);
        let change = outcome::classify(step, self.closing);
        if matches!(change, Change::RateLimited(_)) {
            if let Some(st) = self.meshes.get(&mesh) {
                st.link.do_send(RateLimited);
            }
        }
        let mut rng = rand::thread_rng();
        let (op, dead_error): (Op, Option<String>) = match change {
            Change::Done(mid) => {
                self.offline_retries.remove(&id);
                Metrics::inc(&self.metrics.sends_delivered);
                (Op::Done(mid), None)
            }
            Change::Dead(e) => (Op::Dead(e.clone()), Some(e)),
            Change::RateLimited(e) => (Op::Retry(e, false, now + 1_000), None),
            Change::Uncounted(e, delay) => (Op::Retry(e, false, now + delay), None),
            Change::Offline(e) => {
                let n = self.offline_retries.entry(id).or_insert(0);
                *n += 1;
                let delay = store::full_jitter_ms(*n, 1_000, OFFLINE_CAP_MS, &mut rng) as i64;
                (Op::Retry(e, false, now + delay.max(250)), None)
            }
            Change::Counted(e) => {
                let attempt = u32::try_from(row.attempts + 1).unwrap_or(u32::MAX);
                let delay =
                    store::full_jitter_ms(attempt, RETRY_BASE_MS, RETRY_CAP_MS, &mut rng) as i64;
                (Op::Retry(e, true, now + delay), None)
            }
        };
        let set_target = if resolved_now { target } else { None };
        let dest = store::destination_key(&row).to_string();
        self.updates.push(Update {
            row,
            op,
            set_target,
            dead_error,
            dest,
        });
        self.flush_updates(ctx);
    }

    /// Applies every queued outcome in one transaction (group apply, like group commit on
    /// accept): per-row transactions would make the database thread the drain's bottleneck.
    fn flush_updates(&mut self, ctx: &mut Context<Self>) {
        if self.updating || self.updates.is_empty() {
            return;
        }
        self.updating = true;
        let batch = std::mem::take(&mut self.updates);
        let ops: Vec<(i64, Option<String>, Op)> = batch
            .iter()
            .map(|u| (u.row.id, u.set_target.clone(), u.op.clone()))
            .collect();
        // The claims that follow this apply ride in the same database task: the slots it
        // frees are refilled without another round trip to the database thread.
        let claims = self.plan_claims(&batch);
        let planned: Vec<String> = claims.iter().map(|(m, _, _)| m.clone()).collect();
        let max_attempts = i64::from(self.tuning.max_attempts);
        let now = now_ms();
        let fut = self.db.send(DbTask::new(move |conn| {
            let tx = conn
                .transaction()
                .map_err(store::StoreError::sql("apply outcomes: begin"))?;
            let died: Vec<Result<Option<String>, String>> = ops
                .into_iter()
                .map(|(id, set_target, op)| {
                    apply_one(&tx, id, set_target.as_deref(), op, max_attempts, now)
                        .map_err(|e| format!("row {id}: {e}"))
                })
                .collect();
            tx.commit()
                .map_err(store::StoreError::sql("apply outcomes: commit"))?;
            let claimed: Vec<(String, Result<Vec<OutboxRow>, String>)> = claims
                .into_iter()
                .map(|(mesh, free, busy)| {
                    let rows =
                        store::claim_due(conn, &mesh, now, free, &busy).map_err(|e| e.to_string());
                    (mesh, rows)
                })
                .collect();
            Ok((died, claimed))
        }));
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.updating = false;
            let (results, claimed) = match res {
                Ok(Ok(r)) => r,
                failed => {
                    // Nothing was recorded: the rows are still inflight in the database. Keep
                    // their destinations busy and try the same outcomes again shortly, so no
                    // row is left inflight (which would block its destination until restart).
                    match failed {
                        Ok(Err(e)) => log::error!("outbox outcome batch failed, retrying: {e}"),
                        Err(e) => log::error!("outbox db unavailable, retrying outcomes: {e}"),
                        Ok(Ok(_)) => {}
                    }
                    for mesh in &planned {
                        if let Some(st) = act.meshes.get_mut(mesh) {
                            st.claiming = false;
                        }
                    }
                    act.updates.extend(batch);
                    if !act.closing {
                        ctx.run_later(Duration::from_secs(1), |act, ctx| act.flush_updates(ctx));
                    }
                    return;
                }
            };
            let mut meshes = HashSet::new();
            for (u, result) in batch.into_iter().zip(results) {
                let died = match result {
                    Ok(died) => u.dead_error.or(died),
                    Err(e) => {
                        log::error!("outbox update failed: {e}");
                        None
                    }
                };
                if let Some(err) = died {
                    act.offline_retries.remove(&u.row.id);
                    act.report_dead(&u.row, &err);
                }
                if let Some(st) = act.meshes.get_mut(&u.row.mesh) {
                    st.busy.remove(&u.dest);
                }
                meshes.insert(u.row.mesh);
            }
            for (mesh, rows) in claimed {
                let rows = rows.unwrap_or_else(|e| {
                    log::error!("outbox claim for {mesh} failed: {e}");
                    Vec::new()
                });
                act.claimed(ctx, &mesh, rows);
                meshes.remove(&mesh);
            }
            // Meshes whose claim could not ride along (one was already running) claim now.
            for mesh in meshes {
                act.drain(ctx, &mesh);
            }
            act.flush_updates(ctx);
        }));
    }

    /// For each mesh of `batch` that is up and not already claiming: the free slots and the
    /// busy destinations as they will be once `batch` is applied. Marks those meshes claiming.
    fn plan_claims(&mut self, batch: &[Update]) -> Vec<(String, usize, HashSet<String>)> {
        if self.closing {
            return Vec::new();
        }
        let window = self.tuning.window.max(1) as usize;
        let mut plans = Vec::new();
        let meshes: HashSet<&str> = batch.iter().map(|u| u.row.mesh.as_str()).collect();
        for mesh in meshes {
            let Some(st) = self.meshes.get_mut(mesh) else {
                continue;
            };
            if !st.up || st.claiming {
                continue;
            }
            let mut busy = st.busy.clone();
            for u in batch.iter().filter(|u| u.row.mesh == mesh) {
                busy.remove(&u.dest);
            }
            let free = window.saturating_sub(busy.len());
            if free == 0 {
                continue;
            }
            st.claiming = true;
            st.again = false;
            plans.push((mesh.to_string(), free, busy));
        }
        plans
    }

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
        let max_age = i64::try_from(self.tuning.max_age_hours).unwrap_or(i64::MAX / 4) * 3_600_000;
        let retention = i64::from(self.tuning.payload_retention_days) * 86_400_000;
        let fut = self.db.send(DbTask::new(move |conn| {
            let expired = store::expire(conn, now, max_age)?;
            store::prune_payloads(conn, now - retention)?;
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

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(TICK, |act, ctx| {
            let up: Vec<String> = act
                .meshes
                .iter()
                .filter(|(_, s)| s.up)
                .map(|(k, _)| k.clone())
                .collect();
            for mesh in up {
                act.drain(ctx, &mesh);
            }
        });
        self.housekeeping(ctx);
        ctx.run_interval(Duration::from_secs(60), |act, ctx| act.housekeeping(ctx));
    }
}

impl Handler<AcceptSend> for OutboxDrainer {
    type Result = ResponseFuture<Result<Accepted, OutboxError>>;

    fn handle(&mut self, msg: AcceptSend, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.accept_queue.push((msg.send, tx));
        self.flush_accepts(ctx);
        Box::pin(async move { rx.await.unwrap_or(Err(OutboxError::Cancelled)) })
    }
}

impl Handler<LinkEvent> for OutboxDrainer {
    type Result = ();

    fn handle(&mut self, msg: LinkEvent, ctx: &mut Context<Self>) {
        match msg {
            LinkEvent::Up { mesh } => {
                if let Some(st) = self.meshes.get_mut(&mesh) {
                    st.up = true;
                }
                self.drain(ctx, &mesh);
            }
            LinkEvent::Down { mesh } => {
                if let Some(st) = self.meshes.get_mut(&mesh) {
                    st.up = false;
                }
            }
            LinkEvent::PeerOnline { mesh, keys } => {
                let now = now_ms();
                let slug = mesh.clone();
                let fut = self.db.send(DbTask::new(move |conn| {
                    store::wake(conn, &slug, &keys, now)
                }));
                ctx.spawn(
                    fut.into_actor(self)
                        .map(move |_, act, ctx| act.drain(ctx, &mesh)),
                );
            }
            LinkEvent::LateAck {
                client_message_id,
                seq,
                broker_message_id,
                ..
            } => self.on_late_ack(ctx, client_message_id, seq, broker_message_id),
        }
    }
}

impl Handler<StopDraining> for OutboxDrainer {
    type Result = ();

    fn handle(&mut self, _msg: StopDraining, _ctx: &mut Context<Self>) {
        self.closing = true;
    }
}

impl Handler<CloseOutbox> for OutboxDrainer {
    type Result = ResponseActFuture<Self, Result<(), OutboxError>>;

    /// Puts inflight rows back to pending, writes the clean marker, then stops the actor (it
    /// and the connections hold each other's addresses; stopping here ends both).
    fn handle(&mut self, _msg: CloseOutbox, _ctx: &mut Context<Self>) -> Self::Result {
        self.closing = true;
        // Outcomes still queued for the next group apply are recorded first (a running apply
        // is ahead of this task on the database thread); only then go the rest back to pending.
        let ops: Vec<(i64, Option<String>, Op)> = std::mem::take(&mut self.updates)
            .into_iter()
            .map(|u| (u.row.id, u.set_target, u.op))
            .collect();
        let max_attempts = i64::from(self.tuning.max_attempts);
        let work = query(&self.db, move |conn| {
            let now = now_ms();
            let tx = conn
                .transaction()
                .map_err(store::StoreError::sql("close: begin"))?;
            for (id, set_target, op) in ops {
                if let Err(e) = apply_one(&tx, id, set_target.as_deref(), op, max_attempts, now) {
                    log::error!("outbox close: recording row {id} failed: {e}");
                }
            }
            tx.commit()
                .map_err(store::StoreError::sql("close: commit"))?;
            store::reset_inflight(conn)?;
            store::write_clean_shutdown(conn, true)
        });
        Box::pin(work.into_actor(self).map(|res, act, ctx| {
            act.meshes.clear();
            ctx.stop();
            res
        }))
    }
}
