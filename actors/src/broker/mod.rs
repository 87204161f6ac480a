//! BrokerConnection: one per joined mesh, supervised.
//!
//! Owns the mesh's WebSocket (awc), the hello handshake, ack correlation of `send` frames, the
//! peer-list cache, the saved profile and the liveness watchdog. Accepts [`msg::DeliverSend`],
//! [`msg::ResolvePeer`], [`msg::GetPeers`], [`msg::ApplyProfile`], [`msg::GetLinkStatus`],
//! [`msg::CloseLink`] (handlers in `handlers/`, one file per message family); a `rate_limit`
//! refusal pauses its own pacer. Emits [`msg::LinkEvent`] to the drainer (late acks included), [`msg::PushReceived`]
//! and journal events to the InboxStore.
//!
//! Every hello carries the daemon's stable session id (SPEC §5.6). Against a broker that
//! leases presences, the first link after a start or after an unclean link end runs the
//! redelivery nudge once ([`nudge`]).
//!
//! Failure is expressed as `ctx.stop()`; actix's `Supervisor` restarts the actor, `restarting`
//! resets every connection-scoped field, and `started` waits out a full-jitter backoff before
//! the next attempt. A close with 4001/4002 (or shutdown) leaves the actor dormant instead.

pub mod error;
mod frames;
mod handlers;
pub mod msg;
pub mod nudge;
pub mod peers;
pub mod rate;
pub mod session;
mod timers;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::io::{SinkWrite, WriteHandler};
use actix::prelude::*;
use actix_codec::Framed;
use awc::error::WsProtocolError;
use awc::ws::{Codec, Message as WsMessage};
use awc::BoxedSocket;
use futures_util::stream::{SplitSink, StreamExt};
use rand::Rng;
use tokio::sync::oneshot;

use nudge::Nudge;

use crate::crypto::MemberKeys;
use crate::inbox::msg::RecordEvent;
use crate::metrics::Metrics;
use crate::settings::{BrokerTuning, JoinedMesh};
use crate::time::now_ms;
use msg::*;
use peers::PeerCache;
use rate::Pacer;

type WsSink = SinkWrite<WsMessage, SplitSink<Framed<BoxedSocket, Codec>, WsMessage>>;

/// How long a shutdown waits for the broker to answer our close frame.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// A send waiting for its ack.
struct PendingAck {
    tx: oneshot::Sender<DeliveryOutcome>,
    deadline: Instant,
    /// The drainer's number for this dispatch ([`DeliverSend::seq`]).
    seq: u64,
    /// This send repeats one that timed out unanswered on this socket.
    resend_of_overdue: bool,
}

/// Backoff caps of successive reconnect attempts (SPEC §4), in ms.
const BACKOFF_CAPS_MS: [u64; 6] = [1_000, 2_000, 4_000, 8_000, 16_000, 30_000];

/// Who the connection reports to.
#[derive(Clone)]
pub struct LinkPeers {
    /// The drainer: link up/down, peers online.
    pub drainer: Recipient<LinkEvent>,
    /// The inbox: pushes to store.
    pub pushes: Recipient<PushReceived>,
    /// The inbox: events to journal.
    pub journal: Recipient<RecordEvent>,
}

/// Static configuration of one connection.
pub struct LinkConfig {
    pub mesh: JoinedMesh,
    pub keys: MemberKeys,
    pub display_name: Option<String>,
    /// Groups announced in the hello (config.json `groups`).
    pub groups: Vec<crate::wire::Group>,
    pub tuning: BrokerTuning,
    /// Where the saved profile of this mesh lives (re-applied after every reconnect).
    pub profile_path: PathBuf,
    /// The daemon's stable session id (`daemon-<16 hex>`, SPEC §5.6), the same for every mesh.
    pub session_id: String,
    /// The first link owes the redelivery nudge of a process start (SPEC §6).
    pub nudge_after_start: bool,
    /// `Some` for a session's own connection (SPEC §12 "Presence"): `session_hello` instead
    /// of `hello`, DMs addressed to the session key.
    pub session: Option<session::SessionLink>,
}

/// The connection actor. Fields under "connection-scoped" are reset on every restart.
pub struct BrokerConnection {
    cfg: LinkConfig,
    peers_out: LinkPeers,
    metrics: Arc<Metrics>,
    /// The daemon's stable `daemon-<16 hex>` (from `<daemon dir>/session-id`).
    session_id: String,
    /// Redelivery nudge state; survives reconnects.
    nudge: Nudge,
    /// Saved profile, re-applied after each `hello_ack`.
    profile: Profile,
    /// Attempts since the last `hello_ack` (drives the backoff).
    attempt: u32,
    reconnects: u64,
    last_error: Option<String>,
    /// Terminal: 4001/4002 seen.
    revoked: bool,
    /// Terminal: shutdown requested.
    closing: bool,
    /// [`CloseLink`] callers waiting for the socket to be gone.
    close_waiters: Vec<oneshot::Sender<()>>,
    /// Paces sends to the broker's bucket; survives reconnects (the broker's bucket does).
    pacer: Pacer,
    /// Peer list; survives reconnects as a stale cache.
    peer_cache: PeerCache,
    // --- connection-scoped ---
    state: LinkState,
    sink: Option<WsSink>,
    hello_acked: bool,
    connected_since: Option<i64>,
    last_rx: Instant,
    /// Send acks awaited, by frame id (the row's client_message_id), with their deadlines.
    /// One timer at the earliest deadline expires them (`timers.rs`): a timer per send would
    /// make every poll of this actor's context walk thousands of sleeping futures.
    pending_acks: HashMap<String, PendingAck>,
    /// Sends the pacer holds back, not yet written: frame id → the timer that writes it. A
    /// `rate_limit` refusal cancels them (`handlers/send.rs`): their scheduled times assumed
    /// tokens the broker's bucket does not have.
    unsent: HashMap<String, SpawnHandle>,
    /// The armed ack timer: when it fires and its handle (None: nothing awaits an ack, or
    /// the timer is firing).
    ack_timer: Option<(Instant, SpawnHandle)>,
    /// Callers waiting for the next `peers_list`.
    peer_waiters: Vec<oneshot::Sender<()>>,
    /// When the outstanding `list_peers` was sent (cleared by its answer).
    peers_requested_at: Option<Instant>,
    /// Keys of peers that joined since the last `peers_list`; their rows are woken again
    /// once the refreshed list relates them to their other key.
    joined_since_refresh: Vec<String>,
    /// `client_ack` frames for pushes stored before `hello_ack`, sent right after it.
    held_acks: Vec<String>,
    list_seq: u64,
    /// Sends answered `Timeout` on this socket and not sent again: frame id → (the drainer's
    /// seq, when). An ack for one of them is late and credits the row.
    overdue: HashMap<String, (u64, Instant)>,
    /// Re-sends of overdue sends whose first ack settled them: a second ack is the trace of
    /// a double send (counted).
    sent_twice: HashSet<String>,
    /// The nudge fired: no new sends; reattach once the window is empty.
    reattach_pending: bool,
    /// The socket is being closed by the nudge: the restart that follows reconnects at once.
    reattaching: bool,
    /// Session links: the broker refused `session_hello` (unsupported or rejected); the next
    /// attempt waits `retry_after_refusal_ms` instead of the backoff. Survives restarts.
    refused: bool,
}

impl BrokerConnection {
    /// A connection for `cfg.mesh`, not yet started.
    pub fn new(cfg: LinkConfig, peers_out: LinkPeers, metrics: Arc<Metrics>) -> Self {
        let profile = std::fs::read(&cfg.profile_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Profile>(&b).ok())
            .unwrap_or_default();
        let pacer = Pacer::new(cfg.tuning.rate_burst, cfg.tuning.rate_per_sec);
        BrokerConnection {
            session_id: cfg.session_id.clone(),
            nudge: Nudge::new(cfg.nudge_after_start),
            cfg,
            peers_out,
            metrics,
            profile,
            attempt: 0,
            reconnects: 0,
            last_error: None,
            revoked: false,
            closing: false,
            close_waiters: Vec::new(),
            pacer,
            peer_cache: PeerCache::default(),
            state: LinkState::Connecting,
            sink: None,
            hello_acked: false,
            connected_since: None,
            last_rx: Instant::now(),
            pending_acks: HashMap::new(),
            unsent: HashMap::new(),
            ack_timer: None,
            peer_waiters: Vec::new(),
            peers_requested_at: None,
            joined_since_refresh: Vec::new(),
            held_acks: Vec::new(),
            list_seq: 0,
            overdue: HashMap::new(),
            sent_twice: HashSet::new(),
            reattach_pending: false,
            reattaching: false,
            refused: false,
        }
    }

    /// The key this connection is on the mesh: the session's, or the member's.
    fn own_pubkey(&self) -> String {
        match &self.cfg.session {
            Some(s) => s.id.pubkey(),
            None => self.cfg.mesh.pubkey.clone(),
        }
    }

    /// For logs: the mesh, and the session of a session connection.
    fn who(&self) -> String {
        match &self.cfg.session {
            Some(s) => format!("{} session {}", self.cfg.mesh.slug, s.id.session_id),
            None => self.cfg.mesh.slug.clone(),
        }
    }

    /// Tells the drainer (and, for a session, the registry) that this link is up or down.
    fn report_link(&self, up: bool) {
        let mesh = self.slug().to_string();
        match &self.cfg.session {
            None if up => self.peers_out.drainer.do_send(LinkEvent::Up { mesh }),
            None => self.peers_out.drainer.do_send(LinkEvent::Down { mesh }),
            Some(_) => self.report_presence(if up {
                session::PresenceState::Open
            } else {
                session::PresenceState::Down
            }),
        }
    }

    /// Session connections: a presence state to the registry and the drainer.
    fn report_presence(&self, state: session::PresenceState) {
        let Some(s) = &self.cfg.session else {
            return;
        };
        let update = session::PresenceUpdate {
            mesh: self.slug().to_string(),
            session_pubkey: s.id.pubkey(),
            state,
        };
        self.peers_out
            .drainer
            .do_send(LinkEvent::Session(update.clone()));
        s.presence.do_send(update);
    }

    /// Session connections: the broker does not serve `session_hello` (`no_hello`, or no
    /// answer) or refused it with a §1.10 code.
    fn refuse(&mut self, state: session::PresenceState) {
        if self.cfg.session.is_none() {
            return;
        }
        self.refused = true;
        log::warn!(
            "mesh {}: session_hello {}; retrying in {} s",
            self.who(),
            match &state {
                session::PresenceState::Rejected(code) => format!("rejected: {code}"),
                _ => "not supported by this broker (sends go through the member connection)".into(),
            },
            self.cfg
                .session
                .as_ref()
                .map(|s| s.retry_after_refusal_ms / 1000)
                .unwrap_or(0)
        );
        self.report_presence(state);
    }

    fn slug(&self) -> &str {
        &self.cfg.mesh.slug
    }

    fn send_text(&mut self, text: String) -> bool {
        match self.sink.as_mut() {
            Some(sink) => sink.write(WsMessage::Text(text.into())).is_ok(),
            None => false,
        }
    }

    fn journal(&self, kind: &str, fields: serde_json::Map<String, serde_json::Value>) {
        // The member connection journals the mesh's topology and link state; a session
        // connection would repeat every event once per session.
        if self.cfg.session.is_some() {
            return;
        }
        self.peers_out.journal.do_send(RecordEvent {
            kind: kind.to_string(),
            mesh: Some(self.cfg.mesh.slug.clone()),
            fields,
        });
    }

    fn set_state(&mut self, state: LinkState) {
        if self.state == state {
            return;
        }
        self.state = state;
        let mut f = serde_json::Map::new();
        f.insert("status".into(), state.as_str().into());
        if let Some(e) = &self.last_error {
            f.insert("last_error".into(), e.clone().into());
        }
        self.journal("broker_status", f);
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        let url = self.cfg.mesh.broker_url.clone();
        let hello_timeout = Duration::from_millis(self.cfg.tuning.hello_timeout_ms);
        let max_frame = self.cfg.tuning.max_frame_bytes;
        let client = awc::Client::builder()
            .max_http_version(awc::http::Version::HTTP_11)
            .timeout(hello_timeout)
            .finish();
        let fut = async move { client.ws(url).max_frame_size(max_frame).connect().await };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| match res {
            // Shutdown began while connecting: drop the socket without a hello (a hello would
            // start a drain of queued DMs into a process that is exiting).
            Ok(_) if act.closing => {}
            Ok((_resp, framed)) => {
                let (sink, stream) = framed.split();
                act.sink = Some(SinkWrite::new(sink, ctx));
                ctx.add_stream(stream);
                act.last_rx = Instant::now();
                act.send_hello();
                ctx.run_later(hello_timeout, |act, ctx| {
                    if !act.hello_acked {
                        // A seed broker answers `session_hello` with nothing at all.
                        act.refuse(session::PresenceState::Unsupported);
                        act.fail(ctx, "hello_timeout".to_string());
                    }
                });
            }
            Err(e) => act.fail(ctx, format!("connect failed: {e}")),
        }));
    }

    fn send_hello(&mut self) {
        if let Some(s) = &self.cfg.session {
            let now = now_ms();
            let frame = session::session_hello(
                &self.cfg.mesh.mesh_id,
                &self.cfg.mesh.member_id,
                &self.cfg.keys,
                &s.id,
                now,
                now.saturating_add(s.attestation_ttl_ms),
            );
            self.send_text(frame);
            return;
        }
        let frame = frames::hello(
            &self.cfg.mesh,
            &self.cfg.keys,
            self.cfg.display_name.as_deref(),
            &self.cfg.groups,
            &self.session_id,
            now_ms(),
        );
        self.send_text(frame);
    }

    /// Ends this connection attempt; the supervisor restarts the actor.
    fn fail(&mut self, ctx: &mut Context<Self>, reason: String) {
        if self.reattaching {
            // The nudge's own close: clean, not an error.
            log::debug!(
                "mesh {}: closed for the redelivery nudge: {reason}",
                self.slug()
            );
        } else {
            if !self.closing {
                log::warn!("mesh {}: broker link lost: {reason}", self.who());
            }
            self.last_error = Some(reason);
        }
        self.nudge.link_lost(self.closing || self.reattaching);
        ctx.stop();
    }

    fn on_hello_ack(&mut self, ctx: &mut Context<Self>, presence_id: Option<String>) {
        self.hello_acked = true;
        self.attempt = 0;
        self.refused = false;
        self.connected_since = Some(now_ms());
        self.last_error = None;
        match &self.cfg.session {
            Some(s) => log::info!(
                "mesh {}: session presence open (pubkey {}…)",
                self.who(),
                &s.id.pubkey()[..16]
            ),
            None => log::info!(
                "mesh {}: broker link open (session {})",
                self.slug(),
                self.session_id
            ),
        }
        self.set_state(LinkState::Open);
        if self.nudge.link_up(presence_id.as_deref()) {
            self.arm_nudge(ctx);
        }
        for frame in std::mem::take(&mut self.held_acks) {
            self.send_text(frame);
        }
        self.request_peers();
        if self.cfg.session.is_none() {
            // The saved profile is the member's.
            let profile = self.profile.clone();
            self.send_profile(&profile);
        }
        self.report_link(true);
        let ping = Duration::from_millis(self.cfg.tuning.ping_interval_ms.max(10));
        ctx.run_interval(ping, |act, _| act.ping());
        // One timer at the instant the link would go stale, not a periodic check: a dead
        // socket still goes at stale_after_ms (`timers.rs`). Acks arm their own timer.
        self.arm_watchdog(ctx);
    }

    fn ping(&mut self) {
        if let Some(sink) = self.sink.as_mut() {
            let _ = sink.write(WsMessage::Ping(Default::default()));
        }
    }
}

impl Actor for BrokerConnection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.revoked {
            self.set_state(LinkState::Revoked);
            return;
        }
        if self.closing {
            self.set_state(LinkState::Closed);
            return;
        }
        if self.attempt == 0 {
            self.connect(ctx);
            return;
        }
        self.set_state(LinkState::Reconnecting);
        let idx = (self.attempt as usize - 1).min(BACKOFF_CAPS_MS.len() - 1);
        let cap = BACKOFF_CAPS_MS[idx].min(self.cfg.tuning.reconnect_cap_ms.max(1));
        let delay = match &self.cfg.session {
            // A refused `session_hello` is tried again at most this often (SPEC §12).
            Some(s) if self.refused => s.retry_after_refusal_ms,
            _ => rand::thread_rng().gen_range(0..cap),
        };
        ctx.run_later(Duration::from_millis(delay), |act, ctx| {
            if act.closing {
                return;
            }
            Metrics::inc(&act.metrics.reconnects);
            act.reconnects += 1;
            act.connect(ctx);
        });
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        let reason = if self.closing {
            "daemon_shutdown"
        } else {
            "broker_disconnected"
        };
        for (_, p) in self.pending_acks.drain() {
            let _ = p.tx.send(DeliveryOutcome::NotConnected {
                reason: reason.to_string(),
            });
        }
        if self.hello_acked {
            self.report_link(false);
        }
        for w in self.close_waiters.drain(..) {
            let _ = w.send(());
        }
    }
}

impl Supervised for BrokerConnection {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.sink = None;
        self.hello_acked = false;
        self.connected_since = None;
        self.pending_acks.clear();
        // The restart cancelled their timers: the broker never saw them, so their tokens
        // are still in its bucket.
        self.pacer.release(self.unsent.len());
        self.unsent.clear();
        self.ack_timer = None;
        self.peer_waiters.clear();
        self.peers_requested_at = None;
        self.joined_since_refresh.clear();
        self.held_acks.clear();
        self.overdue.clear();
        self.sent_twice.clear();
        self.reattach_pending = false;
        if self.reattaching {
            // The nudge's reattach reconnects at once, without backoff.
            self.reattaching = false;
        } else {
            self.attempt = self.attempt.saturating_add(1);
        }
    }
}

impl WriteHandler<WsProtocolError> for BrokerConnection {
    fn error(&mut self, err: WsProtocolError, ctx: &mut Context<Self>) -> Running {
        self.fail(ctx, format!("write failed: {err}"));
        Running::Stop
    }
}

#[cfg(test)]
#[path = "fuzz_tests.rs"]
mod fuzz_tests;
