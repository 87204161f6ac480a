//! The drain (BROKER-PROTOCOL §7.1) that delivers a presence's queued rows in the minimal
//! envelope, and the head profile's `client_ack` (§4.4).
//!
//! Seed: the drain marks what it selects delivered (at most once; lost if the socket is dead).
//! Head (§7.2): the drain *claims* what it selects for `claim_ms` on behalf of the presence and
//! pushes it — into nothing if the presence is in its offline lease — and echoes the row's
//! `client_message_id`/`request_fingerprint` (§9). A row is drainable again once its claim has
//! expired, but only a drain trigger (a hello, a reattach, a DM to the presence) drains it; the
//! sweep only releases claims. `client_ack` marks it delivered for good.

use claudemesh_actors::time::{iso_from_ms, now_ms};
use claudemesh_actors::wire::{BrokerFrame, Push};

use super::msg::ConnId;
use super::Hub;
use crate::queue::{self, Acker, Claim};

impl Hub {
    /// Delivers `conn`'s queued rows that its status lets through (§7.1), in the minimal
    /// envelope. A manual `working` does not survive a drain (the broker re-infers `idle`); only
    /// `dnd` holds `next`/`low` back.
    pub(super) fn drain(&mut self, conn: ConnId) {
        let head = self.head();
        let claim_ms = i64::try_from(self.opts.claim_ms).unwrap_or(i64::MAX);
        let Some(p) = self.presence_mut(conn) else {
            return;
        };
        if p.status != "dnd" {
            p.status = "idle".into();
        }
        let priorities: &[&str] = if p.status == "dnd" {
            &["now"]
        } else {
            &["now", "next", "low"]
        };
        let mut targets = vec![p.member_pubkey.clone(), "*".into(), "@all".into()];
        targets.extend(p.session_pubkey.clone());
        targets.extend(p.groups.iter().map(|g| format!("@{}", g.name)));
        let mesh_id = p.mesh_id.clone();
        let claimer = p.presence_id.clone();
        let claim = if head {
            Claim::Lease {
                claimer: &claimer,
                claim_ms,
            }
        } else {
            Claim::Deliver
        };
        let now = now_ms();
        let rows = match queue::claim_for_drain(
            &mut self.db,
            &mesh_id,
            &targets,
            priorities,
            now,
            claim,
        ) {
            Ok(rows) => rows,
            Err(err) => {
                log::warn!("dev broker: drain: {err}");
                return;
            }
        };
        if head && !rows.is_empty() && self.is_leased(conn) {
            log::debug!(
                "dev broker: {} rows claimed by leased presence {claimer} (pushed into a dead socket)",
                rows.len()
            );
        }
        for drained in rows {
            let row = drained.row;
            let (client_message_id, request_fingerprint) = if head {
                (row.client_message_id, row.request_fingerprint)
            } else {
                (None, None)
            };
            let push = BrokerFrame::Push(Push {
                message_id: row.id,
                mesh_id: row.mesh_id,
                sender_pubkey: row
                    .sender_session_pubkey
                    .unwrap_or(drained.sender_member_pubkey),
                sender_member_pubkey: None,
                sender_member_id: None,
                sender_name: None,
                topic: None,
                reply_to_id: None,
                priority: row.priority,
                nonce: row.nonce,
                ciphertext: row.ciphertext,
                created_at: iso_from_ms(row.created_at),
                subtype: None,
                event: None,
                event_data: None,
                client_message_id,
                request_fingerprint: request_fingerprint.filter(|f| !f.is_empty()),
            });
            self.send_frame(conn, &push);
        }
    }

    /// Head `client_ack` (§4.4): marks the matching row delivered; no reply, ever. Ignored by
    /// the seed profile (an unknown type there).
    pub(super) fn on_client_ack(
        &mut self,
        conn: ConnId,
        client_id: Option<String>,
        broker_id: Option<String>,
    ) {
        if !self.head() {
            return;
        }
        let Some(p) = self.presence(conn) else {
            return;
        };
        let acker = Acker {
            mesh_id: &p.mesh_id,
            member_pubkey: &p.member_pubkey,
            session_pubkey: p.session_pubkey.as_deref(),
        };
        let client_id = client_id.filter(|c| !c.is_empty());
        let broker_id = broker_id.filter(|b| !b.is_empty());
        match queue::client_ack(
            &self.db,
            acker,
            client_id.as_deref(),
            broker_id.as_deref(),
            now_ms(),
        ) {
            Ok(n) => log::debug!("dev broker: client_ack marked {n} rows delivered"),
            Err(err) => log::warn!("dev broker: client_ack: {err}"),
        }
    }
}
