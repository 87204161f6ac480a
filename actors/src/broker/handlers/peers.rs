//! The peer list (SPEC §5.5): [`ResolvePeer`] (names and hex prefixes, waiting briefly for a
//! fresh `peers_list` when the cache is old or misses) and [`GetPeers`] (`/v1/peers`).

use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::super::msg::*;
use super::super::{error, frames, BrokerConnection};
use crate::time::now_ms;

impl BrokerConnection {
    /// Sends `list_peers` (the answer replaces the cache).
    pub(in crate::broker) fn request_peers(&mut self) {
        self.peers_requested_at = Some(Instant::now());
        self.list_seq += 1;
        let frame = frames::list_peers(self.list_seq);
        self.send_text(frame);
    }

    /// Asks for a fresh list and returns a future that resolves when it arrives or after `wait_ms`.
    fn wait_for_peers(&mut self, wait_ms: u64) -> impl std::future::Future<Output = ()> {
        let (tx, rx) = oneshot::channel();
        self.peer_waiters.retain(|w| !w.is_closed());
        self.peer_waiters.push(tx);
        // Ask unless a request is already out and recent (a broker that drops a request
        // answers nothing, so an old outstanding request does not count).
        let outstanding = self
            .peers_requested_at
            .is_some_and(|t| t.elapsed() < Duration::from_millis(wait_ms.max(250)));
        if !outstanding {
            self.request_peers();
        }
        async move {
            let _ = tokio::time::timeout(Duration::from_millis(wait_ms), rx).await;
        }
    }
}

impl Handler<ResolvePeer> for BrokerConnection {
    type Result = ResponseActFuture<Self, Resolution>;

    /// Answers from the cache when it is fresh and knows the name. A miss, or a cache older
    /// than `max_age_ms`, waits (at most `wait_ms`) for a fresh `peers_list` first: a peer that
    /// joined a moment ago must not be reported unknown.
    fn handle(&mut self, msg: ResolvePeer, _ctx: &mut Context<Self>) -> Self::Result {
        let name = msg.name.trim().to_string();
        let fresh = self.peer_cache.is_fresh(now_ms(), msg.max_age_ms);
        let cached = self.peer_cache.resolve(&name, &self.cfg.mesh.pubkey);
        let settled = matches!(
            cached,
            Resolution::Found { .. } | Resolution::Ambiguous { .. }
        );
        if !self.hello_acked {
            // Broker down: a name the cache knows is used; anything else is accepted and
            // resolved at drain time (SPEC §5.1).
            let answer = if settled {
                cached
            } else {
                Resolution::Unavailable
            };
            return Box::pin(actix::fut::ready(answer));
        }
        if fresh && settled {
            return Box::pin(actix::fut::ready(cached));
        }
        let wait = self.wait_for_peers(msg.wait_ms);
        Box::pin(wait.into_actor(self).map(move |_, act, _| {
            let answer = act.peer_cache.resolve(&name, &act.cfg.mesh.pubkey);
            match answer {
                Resolution::Found { .. } | Resolution::Ambiguous { .. } => answer,
                // A miss is final only against a recent list from an open link.
                Resolution::NotFound
                    if act.hello_acked && act.peer_cache.is_fresh(now_ms(), msg.max_age_ms) =>
                {
                    answer
                }
                _ => Resolution::Unavailable,
            }
        }))
    }
}

impl Handler<GetPeers> for BrokerConnection {
    type Result = ResponseActFuture<Self, Result<PeersSnapshot, error::BrokerError>>;

    fn handle(&mut self, _msg: GetPeers, _ctx: &mut Context<Self>) -> Self::Result {
        const FRESH_MS: i64 = 5_000;
        let wait = (self.hello_acked && !self.peer_cache.is_fresh(now_ms(), FRESH_MS))
            .then(|| self.wait_for_peers(1_000));
        Box::pin(
            async move {
                if let Some(w) = wait {
                    w.await;
                }
            }
            .into_actor(self)
            .map(|_, act, _| match act.peer_cache.fetched_at {
                None => Err(error::BrokerError::Unavailable {
                    mesh: act.slug().to_string(),
                }),
                Some(at) => Ok(PeersSnapshot {
                    peers: act.peer_cache.peers.clone(),
                    fetched_at: at,
                    stale: !act.hello_acked || now_ms() - at > FRESH_MS,
                }),
            }),
        )
    }
}
