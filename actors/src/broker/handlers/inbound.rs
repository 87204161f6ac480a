//! What the broker sends: the WebSocket frame stream (pings answered, close codes 4001/4002
//! made terminal) and the text frames — `hello_ack`, errors, acks, pushes (stored, then
//! `client_ack`ed), topology events (journaled, rows woken), `peers_list`.

use std::time::Instant;

use actix::prelude::*;
use awc::error::WsProtocolError;
use awc::ws::{Frame, Message as WsMessage};

use super::super::msg::*;
use super::super::{frames, BrokerConnection};
use crate::time::now_ms;

impl BrokerConnection {
    pub(in crate::broker) fn on_text(&mut self, ctx: &mut Context<Self>, text: &str) {
        match frames::classify(text, &self.own_pubkey()) {
            frames::Inbound::HelloAck { presence_id } => {
                if !self.hello_acked {
                    self.on_hello_ack(ctx, presence_id);
                }
            }
            frames::Inbound::Error { code, message } => {
                log::warn!("mesh {}: broker error {code}: {message}", self.slug());
                if code == "revoked" {
                    self.revoked = true;
                }
                if self.cfg.session.is_some() && !self.hello_acked {
                    // §1.10: a seed broker answers `no_hello`; a head broker names the check
                    // that failed.
                    self.refuse(if code == "no_hello" {
                        super::super::session::PresenceState::Unsupported
                    } else {
                        super::super::session::PresenceState::Rejected(code.clone())
                    });
                }
                self.last_error = Some(format!("{code}: {message}"));
            }
            frames::Inbound::Ack(outcome_id, outcome) => self.on_ack(ctx, outcome_id, outcome),
            frames::Inbound::Message(push) => self.on_push(ctx, *push),
            frames::Inbound::PeerOnline { event, returned } => {
                self.journal_peer("peer_join", &event, returned);
                let keys = self.peer_cache.keys_related_to(&event.pubkey);
                self.peers_out.drainer.do_send(LinkEvent::PeerOnline {
                    mesh: self.slug().to_string(),
                    keys,
                });
                // The cached list may not know this peer's other key yet: wake again with the
                // keys the refreshed list relates to it.
                self.joined_since_refresh.push(event.pubkey.clone());
                self.request_peers();
            }
            frames::Inbound::PeerLeft(event) => {
                self.journal_peer("peer_leave", &event, false);
                self.request_peers();
            }
            frames::Inbound::System { event, data } => {
                let mut f = serde_json::Map::new();
                f.insert("event".into(), event.into());
                f.insert("data".into(), data);
                self.journal("system", f);
            }
            frames::Inbound::Peers(list) => {
                self.nudge.peers_seen(&list);
                self.peer_cache.replace(list, now_ms());
                self.peers_requested_at = None;
                for w in self.peer_waiters.drain(..) {
                    let _ = w.send(());
                }
                let joined = std::mem::take(&mut self.joined_since_refresh);
                if !joined.is_empty() {
                    let mut keys: Vec<String> = Vec::new();
                    for k in joined
                        .iter()
                        .flat_map(|j| self.peer_cache.keys_related_to(j))
                    {
                        if !keys.contains(&k) {
                            keys.push(k);
                        }
                    }
                    self.peers_out.drainer.do_send(LinkEvent::PeerOnline {
                        mesh: self.slug().to_string(),
                        keys,
                    });
                }
            }
            frames::Inbound::Ignored(why) => {
                log::debug!("mesh {}: ignored frame: {why}", self.slug())
            }
        }
    }

    fn journal_peer(&self, kind: &str, e: &frames::PeerEvent, returned: bool) {
        let mut f = serde_json::Map::new();
        f.insert("name".into(), e.name.clone().into());
        f.insert("pubkey".into(), e.pubkey.clone().into());
        if returned {
            f.insert("returned".into(), true.into());
        }
        self.journal(kind, f);
    }

    fn on_push(&mut self, ctx: &mut Context<Self>, push: crate::wire::Push) {
        // A fresh clone of the recipient for each push: its message is queued in the inbox's
        // mailbox at once, in arrival order, even when the mailbox is over capacity. Through
        // one shared sender, a full mailbox parks it and the parked sends are retried in no
        // particular order: a burst of pushes (a pipelined sender, a drained queue) would be
        // stored out of order.
        let store = self.peers_out.pushes.clone().send(PushReceived {
            mesh: self.slug().to_string(),
            push,
            session: self.cfg.session.as_ref().map(|s| s.id.keys.clone()),
        });
        ctx.spawn(store.into_actor(self).map(|res, act, _ctx| match res {
            Ok(Ok(PushStored::Ack {
                client_message_id,
                broker_message_id,
            })) => {
                let frame = frames::client_ack(&client_message_id, &broker_message_id);
                // Nothing may precede hello_ack (pushes can): hold acks until it arrives.
                if act.hello_acked {
                    act.send_text(frame);
                } else {
                    act.held_acks.push(frame);
                }
            }
            Ok(Ok(PushStored::Ignored)) => {}
            // Storage failures are logged by the inbox, once a minute; the push is not acked.
            Ok(Err(e)) if e.fault().is_some() => {}
            Ok(Err(e)) => log::error!("mesh {}: storing push failed: {e}", act.slug()),
            Err(e) => log::error!("mesh {}: inbox unavailable: {e}", act.slug()),
        }));
    }
}

impl StreamHandler<Result<Frame, WsProtocolError>> for BrokerConnection {
    fn handle(&mut self, item: Result<Frame, WsProtocolError>, ctx: &mut Context<Self>) {
        self.last_rx = Instant::now();
        match item {
            Ok(Frame::Text(bytes)) => match std::str::from_utf8(&bytes) {
                Ok(text) => self.on_text(ctx, text),
                Err(_) => log::warn!("mesh {}: non-UTF-8 text frame ignored", self.slug()),
            },
            Ok(Frame::Ping(b)) => {
                if let Some(sink) = self.sink.as_mut() {
                    let _ = sink.write(WsMessage::Pong(b));
                }
            }
            Ok(Frame::Pong(_)) | Ok(Frame::Binary(_)) | Ok(Frame::Continuation(_)) => {}
            Ok(Frame::Close(reason)) => {
                let code = reason.as_ref().map(|r| u16::from(r.code)).unwrap_or(1005);
                let text = reason.and_then(|r| r.description).unwrap_or_default();
                if code == 4001 || code == 4002 {
                    log::error!(
                        "mesh {}: broker closed with {code} {text}: not reconnecting",
                        self.slug()
                    );
                    self.revoked = true;
                }
                self.fail(ctx, format!("closed by broker: {code} {text}"));
            }
            Err(e) => self.fail(ctx, format!("protocol error: {e}")),
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        self.fail(ctx, "socket closed".into());
    }
}
