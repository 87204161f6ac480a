//! Recording outcomes: each dispatched row's result is taken in its destination's send order
//! (`flight`), classified ([`outcome::classify`]) and queued for the next group apply, which records every queued outcome in one transaction and
//! refills the freed slots in the same database task. [`CloseOutbox`] records what is still
//! queued and puts the rest back to pending.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use actix::prelude::*;

use super::super::db::DbTask;
use super::super::msg::*;
use super::super::outcome::{self, apply_one, Change, Op, Step, Update};
use super::super::store::{self, InFlight, OutboxRow};
use super::flight::{self, Returned};
use super::queries::query;
use super::{OutboxDrainer, OFFLINE_CAP_MS, RETRY_BASE_MS, RETRY_CAP_MS};
use crate::metrics::Metrics;
use crate::time::now_ms;

impl OutboxDrainer {
    /// A dispatched row came back. Its destination's outcomes are applied in send order
    /// (`flight`): this one may wait for an older row's, or release younger ones waiting.
    pub(super) fn returned(
        &mut self,
        ctx: &mut Context<Self>,
        row: OutboxRow,
        target: Option<String>,
        step: Step,
    ) {
        let mesh = row.mesh.clone();
        let dest = store::destination_key(&row).to_string();
        let back = Returned { row, target, step };
        let flight = self
            .meshes
            .get_mut(&mesh)
            .and_then(|st| st.busy.get_mut(&dest));
        let Some(flight) = flight else {
            // Not in a window (cannot happen): record it as it is.
            self.apply(back, false);
            self.flush_updates(ctx);
            return;
        };
        if let Some(stray) = flight.returned(back) {
            self.apply(stray, false);
        }
        // Bounded by the window: each turn takes one row out of it.
        while let Some((next, behind)) = self
            .meshes
            .get_mut(&mesh)
            .and_then(|st| st.busy.get_mut(&dest))
            .and_then(|f| f.next_ready())
        {
            if self.apply(next, behind) {
                if let Some(f) = self
                    .meshes
                    .get_mut(&mesh)
                    .and_then(|st| st.busy.get_mut(&dest))
                {
                    f.break_window();
                }
            }
        }
        self.unsend_held_if_broken(&mesh, &dest);
        self.flush_updates(ctx);
        self.pump(ctx, &mesh, Some(&dest));
    }

    /// A broken window's held rows were never sent: they go back to pending behind the failed
    /// row (queued for the next group apply). Rows can be held there because a claim planned
    /// before the failure landed after it.
    pub(super) fn unsend_held_if_broken(&mut self, mesh: &str, dest: &str) {
        let unsent = self
            .meshes
            .get_mut(mesh)
            .and_then(|st| st.busy.get_mut(dest))
            .filter(|f| f.is_broken())
            .map(flight::DestFlight::take_held)
            .unwrap_or_default();
        for row in unsent {
            let back = Returned {
                row,
                target: None,
                step: Step::Behind,
            };
            self.apply(back, true);
        }
    }

    /// Classifies one outcome and queues it for the group apply. `behind`: an older row of
    /// the same window failed, so this one goes back to pending whatever its outcome (not
    /// counted). Returns `true` when the outcome is a failure that breaks the window (the row
    /// will be sent again), `false` for done, dead, or a row that was already behind.
    fn apply(&mut self, back: Returned, behind: bool) -> bool {
        let Returned { row, target, step } = back;
        let now = now_ms();
        let id = row.id;
        let dest = store::destination_key(&row).to_string();
        if behind {
            // Whatever the broker said, the row is sent again after the failed one; a late
            // ack for this dispatch must not credit it ahead of that row.
            self.late.forget(&row.client_message_id);
            Metrics::inc(&self.metrics.sends_behind_failure);
            self.updates.push(Update {
                row,
                op: Op::Retry(outcome::BEHIND_FAILURE_ERROR.into(), false, now),
                set_target: None,
                dead_error: None,
                dest,
            });
            return false;
        }
        let resolved_now = row.target.is_none() && target.is_some();
        let step = self.late.settle(&row, step);
        let change = outcome::classify(step, self.closing);
        let breaks = !matches!(change, Change::Done(_) | Change::Dead(_));
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
        self.updates.push(Update {
            row,
            op,
            set_target,
            dead_error,
            dest,
        });
        breaks
    }

    /// Applies every queued outcome in one transaction (group apply, like group commit on
    /// accept): per-row transactions would make the database thread the drain's bottleneck.
    pub(super) fn flush_updates(&mut self, ctx: &mut Context<Self>) {
        if self.updating || self.updates.is_empty() {
            return;
        }
        self.updating = true;
        let batch = std::mem::take(&mut self.updates);
        // No tick finds a row when its backoff ends: the drainer's timer must (`wake.rs`).
        for u in &batch {
            if let Op::Retry(_, _, at) = &u.op {
                self.note_due(ctx, *at);
            }
        }
        let ops: Vec<(i64, Option<String>, Op)> = batch
            .iter()
            .map(|u| (u.row.id, u.set_target.clone(), u.op.clone()))
            .collect();
        // The claims that follow this apply ride in the same database task: the slots it
        // frees are refilled without another round trip to the database thread.
        let claims = self.plan_claims(&batch);
        let planned: Vec<String> = claims.iter().map(|(m, _, _)| m.clone()).collect();
        let max_attempts = i64::from(self.tuning.max_attempts);
        let per_dest = self.claim_depth();
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
                    let rows = store::claim_window(conn, &mesh, now, free, per_dest, &busy)
                        .map_err(|e| e.to_string());
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
                        Ok(Err(e)) => act.log_db_failure("outcome batch (retrying)", &e),
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
                    if st.busy.get_mut(&u.dest).is_some_and(|f| f.committed()) {
                        st.busy.remove(&u.dest);
                    }
                }
                meshes.insert(u.row.mesh);
            }
            for (mesh, rows) in claimed {
                let rows = match rows {
                    Ok(rows) => rows,
                    Err(e) => {
                        log::error!("outbox claim for {mesh} failed: {e}");
                        act.claim_failed(ctx);
                        Vec::new()
                    }
                };
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
    /// destinations in flight as they will be once `batch` is applied. Marks those meshes
    /// claiming.
    pub(super) fn plan_claims(&mut self, batch: &[Update]) -> Vec<ClaimPlan> {
        if self.closing {
            return Vec::new();
        }
        let budget = self.claim_budget();
        let mut plans = Vec::new();
        let meshes: HashSet<&str> = batch.iter().map(|u| u.row.mesh.as_str()).collect();
        for mesh in meshes {
            let Some(st) = self.meshes.get_mut(mesh) else {
                continue;
            };
            if !st.up || st.claiming {
                continue;
            }
            let mut settling: HashMap<&str, usize> = HashMap::new();
            for u in batch.iter().filter(|u| u.row.mesh == mesh) {
                *settling.entry(u.dest.as_str()).or_default() += 1;
            }
            let busy: HashMap<String, InFlight> = st
                .busy
                .iter()
                .filter_map(|(d, f)| {
                    let n = settling.get(d.as_str()).copied().unwrap_or(0);
                    f.claimable(n).map(|c| (d.clone(), c))
                })
                .collect();
            let in_flight: usize = st
                .busy
                .iter()
                .map(|(d, f)| {
                    f.len()
                        .saturating_sub(settling.get(d.as_str()).copied().unwrap_or(0))
                })
                .sum();
            let free = budget.saturating_sub(in_flight);
            if free == 0 {
                continue;
            }
            st.claiming = true;
            st.again = false;
            plans.push((mesh.to_string(), free, busy));
        }
        plans
    }
}

/// A claim riding along a group apply: mesh, free slots, destinations in flight.
pub(super) type ClaimPlan = (String, usize, HashMap<String, InFlight>);

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
