//! Claiming and dispatching: due rows of a mesh are claimed up to the free window
//! ([`store::claim_due`]), resolved, encrypted and handed to the mesh's connection
//! ([`DeliverSend`]); [`LinkEvent`]s from the connections start and stop the drain and wake
//! rows whose peer came online.

use actix::prelude::*;

use super::super::db::DbTask;
use super::super::outcome::Step;
use super::super::store::{self, OutboxRow, Settled};
use super::{sessions, OutboxDrainer};
use crate::broker::msg::{
    DeliverSend, DeliveryOutcome, LinkEvent, OutgoingSend, Resolution, ResolvePeer,
};
use crate::broker::peers::is_pubkey;
use crate::crypto;
use crate::time::now_ms;

impl OutboxDrainer {
    /// Claims due rows of `mesh` up to the free window and dispatches them.
    pub(super) fn drain(&mut self, ctx: &mut Context<Self>, mesh: &str) {
        if self.closing || !self.session_routes.ready {
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
        let mut busy = st.busy.clone();
        busy.extend(self.session_routes.held(mesh).cloned());
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
                    act.log_db_failure(&format!("claim for {slug}"), &e);
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

    /// Resolves, encrypts and sends one claimed row, then applies the outcome.
    pub(super) fn dispatch(&mut self, ctx: &mut Context<Self>, row: OutboxRow) {
        let Some(st) = self.meshes.get_mut(&row.mesh) else {
            return;
        };
        // A session's row goes over its own connection (SPEC §12), or waits for it.
        let (link, keys) = match self.session_routes.route(row.session_pubkey.as_deref()) {
            sessions::Route::Member => (st.link.clone(), st.keys.clone()),
            sessions::Route::Session(route) => *route,
            sessions::Route::Hold => {
                let dest = store::destination_key(&row).to_string();
                st.busy.remove(&dest);
                if let Some(session) = row.session_pubkey.as_deref() {
                    self.session_routes.hold(session, dest);
                }
                self.release(ctx, vec![row]);
                return;
            }
        };
        let seq = self.late.sent(&row.client_message_id);
        let db = self.db.clone();
        let fut = async move {
            let target = match &row.target {
                Some(t) => t.clone(),
                None => {
                    let q = ResolvePeer {
                        name: row.to.clone(),
                        max_age_ms: 5_000,
                        wait_ms: 1_000,
                    };
                    let pubkey = match link.resolve.send(q).await {
                        Ok(Resolution::Found { pubkey }) => pubkey,
                        Ok(Resolution::Ambiguous { .. }) => {
                            return (row, None, Step::Unresolved("ambiguous_peer"))
                        }
                        Ok(_) => return (row, None, Step::Unresolved("unknown_peer")),
                        Err(_) => return (row, None, Step::Unresolved("unknown_peer")),
                    };
                    // The row was claimed under its name; the target may have older rows
                    // open (sent to the full key, or before a restart): wait behind them.
                    let (id, t) = (row.id, pubkey.clone());
                    match db
                        .send(DbTask::new(move |conn| store::settle_target(conn, id, &t)))
                        .await
                    {
                        Ok(Ok(Settled::Go)) => pubkey,
                        Ok(Ok(Settled::Behind)) => return (row, Some(pubkey), Step::Behind),
                        Ok(Err(e)) => return (row, None, Step::Deferred(e.to_string())),
                        Err(e) => return (row, None, Step::Deferred(e.to_string())),
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
            let outcome = match link.deliver.send(DeliverSend { send, seq }).await {
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
