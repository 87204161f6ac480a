//! `send` (BROKER-PROTOCOL §2.3, in order: rate limit, size, `--dedupe`, direct pre-flight with
//! grants, queue insert, **ack**, fan-out); the drain it triggers is in `drain`.
//!
//! Invariants: DMs are never pushed live — they are queued and delivered by draining each
//! recipient connection, after the sender's ack was queued; multicast is pushed live to the
//! other members' visible connections and its row marked delivered at once, so offline members
//! never get it; head profile: a presence in its offline lease is a DM candidate (`queued:true`)
//! and is drained into its dead socket, so the row is claimed and lost until the claim expires; `#topic` rows are queued and never pushed live (the dev broker has no topic
//! membership, so no drain ever selects them).

use std::collections::HashMap;

use claudemesh_actors::time::{iso_from_ms, now_ms};
use claudemesh_actors::wire::{encode, Ack, BrokerFrame, Push, SendFrame};

use super::msg::{ConnId, Outgoing};
use super::{Hub, Presence};
use crate::ids::row_id;
use crate::queue::{self, QueueRow};
use crate::rate::RATE_LIMIT_ERROR;
use crate::state::{self, MemberRow};

/// `MAX_MESSAGE_BYTES`: the broker's limit on ciphertext + nonce + targetSpec lengths.
pub const MAX_MESSAGE_BYTES: usize = 65_536;
/// The ack error of a DM whose target has no live connection.
pub const NO_PEER_ERROR: &str =
    "no connected peer for target (not online, or targetSpec is your own key without another session)";
/// The ack error of a DM every recipient's grants refuse.
pub const GRANTS_ERROR: &str = "blocked by recipient grants (sender lacks dm capability)";
/// The ack error of a send refused by the `--fail-every` test fault (not a broker string: the
/// daemon counts it as an ordinary failed attempt).
pub const INJECTED_FAILURE_ERROR: &str = "injected_failure (dev broker --fail-every)";
/// The `--dedupe` ack error of a reused `client_message_id` with another fingerprint.
pub const FINGERPRINT_MISMATCH_ERROR: &str = "idempotency_key_reused: request_fingerprint_mismatch";

/// How a `targetSpec` is routed (§2.2).
enum Target<'a> {
    /// `*` or `@all`.
    Broadcast,
    /// `@<group>`.
    Group(&'a str),
    /// `#<topicId>`.
    Topic,
    /// Anything else: a pubkey, or a name that can match nothing.
    Direct(&'a str),
}

fn classify(spec: &str) -> Target<'_> {
    match spec {
        "*" | "@all" => Target::Broadcast,
        _ if spec.starts_with('@') => Target::Group(&spec[1..]),
        _ if spec.starts_with('#') => Target::Topic,
        _ => Target::Direct(spec),
    }
}

/// JavaScript `.length` (UTF-16 code units), which is what the broker's size check adds up.
fn js_len(s: &str) -> usize {
    s.encode_utf16().count()
}

fn ack(id: &str, message_id: &str, queued: bool, error: Option<String>) -> BrokerFrame {
    BrokerFrame::Ack(Ack {
        id: id.to_owned(),
        message_id: message_id.to_owned(),
        queued,
        error,
        duplicate: None,
        req_id: None,
    })
}

impl Hub {
    pub(super) fn on_send(&mut self, conn: ConnId, send: SendFrame) {
        let Some(sender) = self.presence(conn).cloned() else {
            return;
        };
        let id = send.id.clone().unwrap_or_default();
        let now = now_ms();
        let fail =
            |hub: &Hub, error: String| hub.send_frame(conn, &ack(&id, "", false, Some(error)));
        self.sends_seen += 1;
        let nth = |every: Option<u64>, seen: u64| every.is_some_and(|n| seen.is_multiple_of(n));
        if nth(self.opts.fail_every, self.sends_seen) {
            return fail(self, INJECTED_FAILURE_ERROR.to_owned());
        }
        let drop_socket = nth(self.opts.drop_every, self.sends_seen);
        if self.opts.rate_limit && !self.rate.try_take(&sender.member_id, now) {
            return fail(self, RATE_LIMIT_ERROR.to_owned());
        }
        let size = js_len(&send.ciphertext) + js_len(&send.nonce) + js_len(&send.target_spec);
        if size > MAX_MESSAGE_BYTES {
            return fail(
                self,
                format!("payload too large: {size} bytes > MAX_MESSAGE_BYTES={MAX_MESSAGE_BYTES}"),
            );
        }
        if self.opts.dedupe && self.answer_duplicate(conn, &sender, &id, &send) {
            return;
        }
        let members = self.members_by_id(&sender.mesh_id);
        let target = classify(&send.target_spec);
        let mut recipients = Vec::new();
        if let Target::Direct(key) = target {
            let candidates: Vec<ConnId> = self
                .mesh_conns(&sender.mesh_id)
                .into_iter()
                .filter(|(id, p)| {
                    *id != conn
                        && (p.member_pubkey == key || p.session_pubkey.as_deref() == Some(key))
                })
                .map(|(id, _)| id)
                .collect();
            if candidates.is_empty() {
                return fail(self, NO_PEER_ERROR.to_owned());
            }
            recipients = candidates
                .into_iter()
                .filter(|id| self.allows(&members, *id, &sender, "dm"))
                .collect();
            if recipients.is_empty() {
                return fail(self, GRANTS_ERROR.to_owned());
            }
        }
        let row = QueueRow {
            id: row_id(),
            mesh_id: sender.mesh_id.clone(),
            sender_member_id: sender.member_id.clone(),
            sender_session_pubkey: sender.session_pubkey.clone(),
            target_spec: send.target_spec.clone(),
            priority: send.priority.as_str().to_owned(),
            nonce: send.nonce.clone(),
            ciphertext: send.ciphertext.clone(),
            created_at: now,
            client_message_id: send.client_message_id.clone().filter(|c| !c.is_empty()),
            request_fingerprint: send.request_fingerprint.clone(),
        };
        // The hub's batch transaction (see `Hub::run`) covers the insert and, for multicast,
        // the delivered mark: one commit for a whole burst of sends.
        if let Err(err) = queue::insert_queue(&self.db, &row) {
            // The real broker's insert exception: logged, no ack.
            log::warn!("dev broker: queueing {}: {err}", row.id);
            return;
        }
        if drop_socket {
            // The row is queued; the ack is lost with the socket.
            self.send(conn, Outgoing::Terminate);
        } else {
            self.send_frame(conn, &ack(&id, &row.id, true, None));
        }
        match target {
            Target::Broadcast | Target::Group(_) => {
                let group = match target {
                    Target::Group(name) => Some(name),
                    _ => None,
                };
                self.fan_out_live(&row, &send, &sender, group, &members);
                if let Err(err) = queue::mark_delivered(&self.db, &row.id, now_ms()) {
                    log::warn!("dev broker: marking {} delivered: {err}", row.id);
                }
            }
            Target::Direct(_) => {
                for recipient in recipients {
                    self.drain(recipient);
                }
            }
            Target::Topic => {}
        }
    }

    /// Step 1 of every `send`: takes a token from the sender member's bucket; when the bucket
    /// is empty, answers the rate-limit ack and returns `false`.
    pub(super) fn take_send_token(&mut self, conn: ConnId, id: &str) -> bool {
        let Some(member_id) = self.presence(conn).map(|p| p.member_id.clone()) else {
            return false;
        };
        if !self.opts.rate_limit || self.rate.try_take(&member_id, now_ms()) {
            return true;
        }
        self.send_frame(conn, &ack(id, "", false, Some(RATE_LIMIT_ERROR.to_owned())));
        false
    }

    /// `--dedupe` (SPEC §11): answers a repeated `(mesh, client_message_id)` and returns `true`,
    /// or returns `false` for a first use.
    fn answer_duplicate(
        &self,
        conn: ConnId,
        sender: &Presence,
        id: &str,
        send: &SendFrame,
    ) -> bool {
        let Some(client_id) = send.client_message_id.as_deref().filter(|c| !c.is_empty()) else {
            return false;
        };
        let found = match queue::find_client_message(&self.db, &sender.mesh_id, client_id) {
            Ok(found) => found,
            Err(err) => {
                log::warn!("dev broker: dedupe lookup of {client_id}: {err}");
                None
            }
        };
        let Some((message_id, fingerprint)) = found else {
            return false;
        };
        let frame = if fingerprint == send.request_fingerprint {
            BrokerFrame::Ack(Ack {
                id: id.to_owned(),
                message_id,
                queued: true,
                error: None,
                duplicate: Some(true),
                req_id: None,
            })
        } else {
            ack(id, "", false, Some(FINGERPRINT_MISMATCH_ERROR.to_owned()))
        };
        self.send_frame(conn, &frame);
        true
    }

    /// The mesh's member rows by id, read fresh (grants may have changed).
    fn members_by_id(&self, mesh_id: &str) -> HashMap<String, MemberRow> {
        state::members(&self.db, mesh_id)
            .unwrap_or_else(|err| {
                log::warn!("dev broker: reading members: {err}");
                Vec::new()
            })
            .into_iter()
            .map(|m| (m.id.clone(), m))
            .collect()
    }

    /// Whether the member of `recipient` grants `capability` to `sender` (§2.6): the sender's
    /// member pubkey first, then its session pubkey; no entry means allowed.
    fn allows(
        &self,
        members: &HashMap<String, MemberRow>,
        recipient: ConnId,
        sender: &Presence,
        capability: &str,
    ) -> bool {
        let Some(member) = self
            .presence(recipient)
            .and_then(|p| members.get(&p.member_id))
        else {
            return true;
        };
        let by_member = member.grants(&sender.member_pubkey, capability);
        let by_session = sender
            .session_pubkey
            .as_deref()
            .and_then(|key| member.grants(key, capability));
        by_member.or(by_session).unwrap_or(true)
    }

    /// Live multicast: every visible connection of the mesh except the sender's member's.
    fn fan_out_live(
        &self,
        row: &QueueRow,
        send: &SendFrame,
        sender: &Presence,
        group: Option<&str>,
        members: &HashMap<String, MemberRow>,
    ) {
        let push = BrokerFrame::Push(Push {
            message_id: row.id.clone(),
            mesh_id: row.mesh_id.clone(),
            sender_pubkey: sender.routing_pubkey().to_owned(),
            sender_member_pubkey: Some(sender.member_pubkey.clone()),
            sender_member_id: Some(sender.member_id.clone()),
            sender_name: Some(sender.display_name.clone()),
            topic: None,
            reply_to_id: send.reply_to_id.clone(),
            priority: row.priority.clone(),
            nonce: row.nonce.clone(),
            ciphertext: row.ciphertext.clone(),
            created_at: iso_from_ms(now_ms()),
            subtype: None,
            event: None,
            event_data: None,
            client_message_id: None,
            request_fingerprint: None,
        });
        let text = encode(&push);
        for (id, p) in self.mesh_conns(&row.mesh_id) {
            let in_group = group.is_none_or(|g| p.groups.iter().any(|pg| pg.name == g));
            if p.member_id == sender.member_id || !p.visible || !in_group {
                continue;
            }
            if self.allows(members, id, sender, "broadcast") {
                self.send(id, Outgoing::Text(text.clone()));
            }
        }
    }
}
