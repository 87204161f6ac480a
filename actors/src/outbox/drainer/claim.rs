//! Claiming and dispatching: due rows of a mesh are claimed up to the free windows
//! ([`store::claim_window`]), resolved, encrypted and handed to the mesh's connection
//! ([`DeliverSend`]); [`LinkEvent`]s from the connections start and stop the drain and wake
//! rows whose peer came online.

use std::collections::HashMap;

use actix::dev::RecipientRequest;
use actix::prelude::*;

use super::super::db::{DbTask, OutboxDb};
use super::super::outcome::Step;
use super::super::store::{self, InFlight, OutboxRow, Settled};
use super::{flight, sessions, LinkRecipients, OutboxDrainer};
use crate::broker::msg::{
    DeliverSend, DeliveryOutcome, LinkEvent, OutgoingSend, Resolution, ResolvePeer,
};
use crate::broker::peers::is_pubkey;
use crate::crypto;
use crate::crypto::{DmBoxes, MemberKeys};
use crate::time::now_ms;

impl OutboxDrainer {
    /// Claims due rows of `mesh` up to the free window and dispatches them.
    pub(super) fn drain(&mut self, ctx: &mut Context<Self>, mesh: &str) {
        if self.closing || !self.session_routes.ready {
            return;
        }
        let (budget, per_dest) = (self.claim_budget(), self.claim_depth());
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
        let free = budget.saturating_sub(st.in_flight());
        if free == 0 {
            return;
        }
        st.claiming = true;
        st.again = false;
        let mut busy: HashMap<String, InFlight> = st
            .busy
            .iter()
            .filter_map(|(d, f)| f.claimable(0).map(|c| (d.clone(), c)))
            .collect();
        // Destinations whose session connection is away: nothing is claimed for them.
        busy.extend(
            self.session_routes
                .held(mesh)
                .map(|d| (d.clone(), InFlight::Blocked)),
        );
        let slug = mesh.to_string();
        let now = now_ms();
        // The claim also reads when the next row becomes due (one index seek), so that a row
        // due a moment after this claim has a timer even if nothing else announced it.
        let fut = self.db.send(DbTask::new(move |conn| {
            let rows = store::claim_window(conn, &slug, now, free, per_dest, &busy)?;
            Ok((rows, store::next_due_after(conn, now)?))
        }));
        let slug = mesh.to_string();
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            let rows = match res {
                Ok(Ok((rows, next_due))) => {
                    if let Some(at) = next_due {
                        act.note_due(ctx, at);
                    }
                    rows
                }
                Ok(Err(e)) => {
                    act.log_db_failure(&format!("claim for {slug}"), &e);
                    act.claim_failed(ctx);
                    Vec::new()
                }
                Err(e) => {
                    log::error!("outbox db unavailable: {e}");
                    act.claim_failed(ctx);
                    Vec::new()
                }
            };
            act.claimed(ctx, &slug, rows);
        }));
    }

    /// A claim of `mesh` returned `rows`: hold them in their destinations' windows and send
    /// what the windows allow, in order; run the claim that was asked for meanwhile.
    pub(super) fn claimed(&mut self, ctx: &mut Context<Self>, mesh: &str, rows: Vec<OutboxRow>) {
        let mut again = false;
        if self.closing {
            // The claim ran before the stop and landed after it: sending now could put a row
            // on the wire just before the close frame, to be sent again after the restart.
            if let Some(st) = self.meshes.get_mut(mesh) {
                st.claiming = false;
            }
            self.release(ctx, rows);
            return;
        }
        let mut dests = Vec::new();
        if let Some(st) = self.meshes.get_mut(mesh) {
            st.claiming = false;
            again = st.again;
            for row in rows {
                let dest = store::destination_key(&row).to_string();
                if !st.ready.contains(&dest) {
                    st.ready.push_back(dest.clone());
                }
                if !dests.contains(&dest) {
                    dests.push(dest.clone());
                }
                st.busy.entry(dest).or_default().hold(row);
            }
        }
        // A window that broke while this claim ran takes none of it: back to pending.
        for dest in &dests {
            self.unsend_held_if_broken(mesh, dest);
        }
        self.flush_updates(ctx);
        self.pump(ctx, mesh, None);
        if again {
            self.drain(ctx, mesh);
        }
    }

    /// Sends held rows of `mesh` while its window has room: first the destinations waiting
    /// longest, then `returning` (whose row just came back; it waits its turn behind them).
    /// A destination that still holds rows its own window would let go waits for the next
    /// free slot.
    pub(super) fn pump(&mut self, ctx: &mut Context<Self>, mesh: &str, returning: Option<&str>) {
        if self.closing {
            return;
        }
        let (window, wire_window) = (self.tuning.window.max(1) as usize, self.wire_window());
        let Some(st) = self.meshes.get_mut(mesh) else {
            return;
        };
        let mut wire: usize = st.busy.values().map(flight::DestFlight::wire).sum();
        let mut order: Vec<String> = st.ready.drain(..).collect();
        if let Some(r) = returning.filter(|r| !order.iter().any(|d| d == r)) {
            order.push(r.to_string());
        }
        let mut to_send = Vec::new();
        for dest in order {
            let Some(f) = st.busy.get_mut(&dest) else {
                continue;
            };
            while wire < window {
                match f.next_to_send(wire_window) {
                    Some(row) => {
                        wire += 1;
                        to_send.push(row);
                    }
                    None => break,
                }
            }
            if f.waits_for_mesh(wire_window) {
                st.ready.push_back(dest);
            }
        }
        for row in to_send {
            self.dispatch(ctx, row);
        }
    }

    /// Puts claimed rows that will not be sent back to `pending`, unchanged.
    fn release(&mut self, ctx: &mut Context<Self>, rows: Vec<OutboxRow>) {
        if rows.is_empty() {
            return;
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let fut = self
            .db
            .send(DbTask::new(move |conn| store::release_claims(conn, &ids)));
        ctx.spawn(fut.into_actor(self).map(|res, _, _| match res {
            Ok(Ok(_)) => {}
            // Still inflight in the database: the close (or the next start) resets them.
            Ok(Err(e)) => log::error!("outbox release of unsent claims failed: {e}"),
            Err(e) => log::error!("outbox db unavailable releasing claims: {e}"),
        }));
    }

    /// Sends one claimed row and applies its outcome when it comes back. A row with a target
    /// is encrypted and handed to the connection here, synchronously, so rows reach the
    /// connection's mailbox in the order they were claimed (the window relies on it); a row
    /// to a name (alone in flight for it) is resolved first.
    pub(super) fn dispatch(&mut self, ctx: &mut Context<Self>, row: OutboxRow) {
        let Some(st) = self.meshes.get_mut(&row.mesh) else {
            return;
        };
        // A session's row goes over its own connection (SPEC §12), or waits for it.
        let (link, keys) = match self.session_routes.route(row.session_pubkey.as_deref()) {
            sessions::Route::Member => (st.link.clone(), st.keys.clone()),
            sessions::Route::Session(route) => *route,
            sessions::Route::Hold => {
                // The row leaves its window unsent (the rows behind it, same session, follow
                // it here); the destination is held until the session's connection is back.
                let dest = store::destination_key(&row).to_string();
                let mut unsent = vec![];
                if let Some(f) = st.busy.get_mut(&dest) {
                    let (held, idle) = f.forget(row.id);
                    unsent = held;
                    if idle {
                        st.busy.remove(&dest);
                    }
                }
                st.ready.retain(|d| d != &dest);
                if let Some(session) = row.session_pubkey.as_deref() {
                    self.session_routes.hold(session, dest);
                }
                unsent.insert(0, row);
                self.release(ctx, unsent);
                return;
            }
        };
        let seq = self.late.sent(&row.client_message_id);
        let Some(target) = row.target.clone() else {
            let db = self.db.clone();
            let fut = async move {
                let target = match resolve(&link, &db, &row).await {
                    Ok(t) => t,
                    Err((target, step)) => return (row, target, step),
                };
                // A name resolved now: rare, sealed without the drainer's cache.
                let sent = send(&link, &mut DmBoxes::default(), &keys, &row, &target, seq);
                let step = match sent {
                    Ok(request) => Step::Delivered(delivered(request.await)),
                    Err(step) => step,
                };
                (row, Some(target), step)
            };
            ctx.spawn(fut.into_actor(self).map(|(row, target, step), act, ctx| {
                act.returned(ctx, row, target, step);
            }));
            return;
        };
        match send(&link, &mut self.boxes, &keys, &row, &target, seq) {
            Ok(request) => {
                let fut = async move { delivered(request.await) };
                ctx.spawn(fut.into_actor(self).map(move |outcome, act, ctx| {
                    act.returned(ctx, row, Some(target), Step::Delivered(outcome));
                }));
            }
            Err(step) => self.returned(ctx, row, Some(target), step),
        }
    }
}

/// Resolves the name of `row` (claimed under it) and records the target, or says why the
/// row cannot go now.
async fn resolve(
    link: &LinkRecipients,
    db: &Addr<OutboxDb>,
    row: &OutboxRow,
) -> Result<String, (Option<String>, Step)> {
    let q = ResolvePeer {
        name: row.to.clone(),
        max_age_ms: 5_000,
        wait_ms: 1_000,
    };
    let pubkey = match link.resolve.send(q).await {
        Ok(Resolution::Found { pubkey }) => pubkey,
        Ok(Resolution::Ambiguous { .. }) => return Err((None, Step::Unresolved("ambiguous_peer"))),
        Ok(_) | Err(_) => return Err((None, Step::Unresolved("unknown_peer"))),
    };
    // The row was claimed under its name; the target may have older rows open (sent to the
    // full key, or before a restart) or rows in flight: wait behind them.
    let (id, t) = (row.id, pubkey.clone());
    match db
        .send(DbTask::new(move |conn| store::settle_target(conn, id, &t)))
        .await
    {
        Ok(Ok(Settled::Go)) => Ok(pubkey),
        Ok(Ok(Settled::Behind)) => Err((Some(pubkey), Step::Behind)),
        Ok(Err(e)) => Err((None, Step::Deferred(e.to_string()))),
        Err(e) => Err((None, Step::Deferred(e.to_string()))),
    }
}

/// Encrypts `row` for `target` and hands it to the connection (the message is in its
/// mailbox when this returns); the request answers with the broker's outcome.
fn send(
    link: &LinkRecipients,
    boxes: &mut DmBoxes,
    keys: &MemberKeys,
    row: &OutboxRow,
    target: &str,
    seq: u64,
) -> Result<RecipientRequest<DeliverSend>, Step> {
    let payload = row.payload.as_deref().unwrap_or_default();
    let body = if is_pubkey(target) {
        boxes
            .seal(keys, target, payload)
            .map_err(|e| Step::Permanent(format!("encrypt: {e}")))?
    } else {
        match std::str::from_utf8(payload) {
            Ok(text) => crypto::encode_plain(text),
            Err(_) => return Err(Step::Permanent("payload is not UTF-8".into())),
        }
    };
    let send = OutgoingSend {
        client_message_id: row.client_message_id.clone(),
        request_fingerprint: hex::encode(&row.fingerprint),
        target_spec: target.to_string(),
        priority: row.priority.clone(),
        nonce: body.nonce_b64,
        ciphertext: body.ciphertext_b64,
        reply_to_id: row.reply_to_id.clone(),
    };
    Ok(link.deliver.send(DeliverSend { send, seq }))
}

/// The connection's answer, or a lost link.
fn delivered(answer: Result<DeliveryOutcome, MailboxError>) -> DeliveryOutcome {
    answer.unwrap_or_else(|e| DeliveryOutcome::NotConnected {
        reason: format!("link mailbox: {e}"),
    })
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
            LinkEvent::Session(update) => self.on_session_presence(ctx, update),
        }
    }
}
