//! The dev broker: a faithful stand-in for the claudemesh broker, **for development, the demo
//! and tests only** (SPEC §11). It is not a production broker and never will be: real meshes
//! use the claudemesh broker, whose protocol (BROKER-PROTOCOL.md) it reproduces — including
//! the inconvenient parts, so that a daemon that passes against it also works against the real
//! one. What it reproduces and where it deliberately differs: `docs/dev-broker.md`.
//!
//! This crate is a library; the command lines `claudemeshd dev-mesh …` and
//! `claudemeshd dev-broker …` live in the daemon crate (`src/cli/dev.rs`) and call into it.
//!
//! Layout:
//! - `mesh`: `dev-mesh create`/`revoke` and the members' `config.json` files.
//! - `state`, `queue`, `peer_state`, `presence_table`: the SQLite state under `--state DIR`
//!   (the last one a mirror of the live presences, read by [`presences_in`]).
//! - `server`: actix-web, the exact-`/ws` path rule; `session`: one task per WebSocket;
//!   `hub`: the thread that owns the live state and routes every frame.
//! - `hello_check`, `session_hello_check`, `rate`, `ids`: pure helpers.
//! - `inspect`: the [`Profile`] switch and the read-only views tests observe.
//!
//! Two profiles ([`Profile`]): `seed` (the default) reproduces the seed broker; `head` the
//! current one — offline lease, silent reattach, `session_hello`, 30 s claims released by a
//! sweep and cleared by `client_ack`, `peerRole`, the stale-pong terminate.
//!
//! In-process use (tests): [`start`] returns a [`DevBroker`] handle with the controls a test
//! needs — [`DevBroker::kick`], [`DevBroker::set_half_open`], [`DevBroker::drop_all`],
//! [`DevBroker::stop`] — the views [`DevBroker::presences`] and [`DevBroker::queue_rows`], and
//! a stopped broker can be started again on the same port.
//! [`start`] works inside any Tokio runtime, an actix `System` included.

mod error;
mod hello_check;
mod hub;
mod ids;
mod inspect;
mod mesh;
mod peer_state;
mod presence_table;
mod queue;
mod rate;
mod server;
mod session;
mod session_hello_check;
mod state;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use serde_json::{Map, Value};
use tokio::sync::oneshot;

pub use error::DevBrokerError;
pub use inspect::{PresenceInfo, Profile, QueueRowInfo};
pub use mesh::{create_mesh, revoke_member, CreatedMember, MeshCreated, MESH_SLUG};
pub use presence_table::{presences_in, queue_rows_in};
pub use rate::RATE_LIMIT_ERROR;
pub use state::MemberRow;

use hub::msg::HubCmd;
use hub::{Hub, HubOptions};
use session::SessionConfig;

/// Exact ack error strings of the broker (BROKER-PROTOCOL §2.4) and of `--dedupe` (SPEC §11).
pub mod errors {
    pub use super::hub::{
        FINGERPRINT_MISMATCH_ERROR, GRANTS_ERROR, INJECTED_FAILURE_ERROR, MAX_MESSAGE_BYTES,
        NO_PEER_ERROR,
    };
    pub use super::rate::RATE_LIMIT_ERROR;
}

/// How long [`DevBroker::stop`] waits for sessions to queue their 1001 close frames.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// How long it then waits for clients to close their connections before dropping them.
const DISCONNECT_GRACE: Duration = Duration::from_millis(100);

/// Settings of one dev broker run.
#[derive(Clone, Debug)]
pub struct DevBrokerOptions {
    /// State directory (created 0700 if missing); holds `broker.db`.
    pub state_dir: PathBuf,
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The per-member send rate limit (burst 10, 1/s); the real broker always has it.
    pub rate_limit: bool,
    /// SPEC §11 broker-side idempotency on `(mesh, client_message_id)`.
    pub dedupe: bool,
    /// Interval of WebSocket pings to every socket (real broker: 30 000).
    pub ping_interval_ms: u64,
    /// Terminate sockets whose last pong is older than this (head broker: 75 000); `None` =
    /// never (seed broker).
    pub stale_after_ms: Option<u64>,
    /// Which real broker to reproduce (`seed` by default).
    pub profile: Profile,
    /// Head: how long a closed socket's presence stays listed in its offline lease.
    pub grace_ms: u64,
    /// Head: how long a drained row stays claimed before it can be pushed again.
    pub claim_ms: u64,
    /// Head: interval of the sweep that releases expired claims (it never pushes).
    pub sweep_ms: u64,
    /// Test fault: every Nth `send` is refused with [`INJECTED_FAILURE_ERROR`] (not queued).
    pub fail_every: Option<u64>,
    /// Test fault: every Nth `send` is queued, then its sender's socket is dropped before
    /// the ack is written (a broker that dies between queueing and acking).
    pub drop_every: Option<u64>,
}

/// Head profile default of [`DevBrokerOptions::grace_ms`] (`GRACE_MS`).
pub const HEAD_GRACE_MS: u64 = 90_000;
/// Head profile default of [`DevBrokerOptions::claim_ms`].
pub const HEAD_CLAIM_MS: u64 = 30_000;
/// Head profile default of [`DevBrokerOptions::sweep_ms`].
pub const HEAD_SWEEP_MS: u64 = 15_000;
/// Head profile default of [`DevBrokerOptions::stale_after_ms`].
pub const HEAD_STALE_AFTER_MS: u64 = 75_000;

impl DevBrokerOptions {
    /// Seed-broker defaults: rate limit on, no dedupe, pings every 30 s, no stale terminate.
    pub fn new(state_dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        DevBrokerOptions {
            state_dir: state_dir.into(),
            listen,
            rate_limit: true,
            dedupe: false,
            ping_interval_ms: 30_000,
            stale_after_ms: None,
            profile: Profile::Seed,
            grace_ms: HEAD_GRACE_MS,
            claim_ms: HEAD_CLAIM_MS,
            sweep_ms: HEAD_SWEEP_MS,
            fail_every: None,
            drop_every: None,
        }
    }

    /// Head-broker defaults: as [`DevBrokerOptions::new`] with `profile: Head`, a 90 s lease,
    /// 30 s claims, a 15 s claim sweep and the 75 s stale-pong terminate.
    pub fn head(state_dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        DevBrokerOptions {
            profile: Profile::Head,
            stale_after_ms: Some(HEAD_STALE_AFTER_MS),
            ..DevBrokerOptions::new(state_dir, listen)
        }
    }
}

/// A running dev broker. Dropping it without [`DevBroker::stop`] stops it abruptly.
pub struct DevBroker {
    addr: SocketAddr,
    hub: mpsc::Sender<HubCmd>,
    server: ServerHandle,
    hub_thread: Option<std::thread::JoinHandle<()>>,
    live: Arc<AtomicUsize>,
    open_conns: Arc<AtomicUsize>,
    stopped: bool,
}

/// Starts a dev broker: opens the state, starts the hub thread, binds and serves.
pub async fn start(opts: DevBrokerOptions) -> Result<DevBroker, DevBrokerError> {
    let db = state::open(&opts.state_dir)?;
    let (hub_tx, hub_rx) = mpsc::channel();
    let hub = Hub::new(
        db,
        HubOptions {
            state_dir: opts.state_dir.clone(),
            rate_limit: opts.rate_limit,
            dedupe: opts.dedupe,
            profile: opts.profile,
            grace: Duration::from_millis(opts.grace_ms),
            claim_ms: opts.claim_ms,
            sweep: Duration::from_millis(opts.sweep_ms.max(1)),
            fail_every: opts.fail_every.filter(|n| *n > 0),
            drop_every: opts.drop_every.filter(|n| *n > 0),
        },
    );
    let hub_thread = std::thread::Builder::new()
        .name("dev-broker-hub".into())
        .spawn(move || hub.run(hub_rx))
        .map_err(|source| DevBrokerError::Spawn { source })?;
    let live = Arc::new(AtomicUsize::new(0));
    let shared = Arc::new(server::Shared {
        hub: hub_tx.clone(),
        next_conn: AtomicU64::new(1),
        session: SessionConfig {
            ping_interval: Duration::from_millis(opts.ping_interval_ms),
            stale_after: opts.stale_after_ms.map(Duration::from_millis),
            session_hello: opts.profile == Profile::Head,
        },
        live: live.clone(),
    });
    let open_conns = Arc::new(AtomicUsize::new(0));
    let (server, addr) = match server::bind(opts.listen, shared, open_conns.clone()) {
        Ok(bound) => bound,
        Err(err) => {
            let _ = hub_tx.send(HubCmd::Exit);
            let _ = hub_thread.join();
            return Err(err);
        }
    };
    let handle = server.handle();
    tokio::spawn(async move {
        if let Err(err) = server.await {
            log::error!("dev broker server ended: {err}");
        }
    });
    log::info!("dev broker listening on ws://{addr}/ws");
    Ok(DevBroker {
        addr,
        hub: hub_tx,
        server: handle,
        hub_thread: Some(hub_thread),
        live,
        open_conns,
        stopped: false,
    })
}

impl DevBroker {
    /// `ws://127.0.0.1:PORT/ws`.
    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The bound address (pass it as `listen` to restart on the same port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> HubCmd,
    ) -> Result<T, DevBrokerError> {
        let (tx, rx) = oneshot::channel();
        self.hub
            .send(make(tx))
            .map_err(|_| DevBrokerError::Stopped)?;
        rx.await.map_err(|_| DevBrokerError::Stopped)
    }

    /// Closes every connection of a member (given by name, member pubkey or session pubkey)
    /// with 4001 `kicked`, without `peer_left`. Returns how many were closed.
    pub async fn kick(&self, member_name_or_pubkey: &str) -> Result<usize, DevBrokerError> {
        let who = member_name_or_pubkey.to_owned();
        self.ask(|reply| HubCmd::Kick { who, reply }).await
    }

    /// Makes a member's current sockets half-open (`true`): the broker stops reading them — so
    /// it neither sees frames nor answers pings — and stops writing to them (frames are held
    /// and written on `false`). Matches a name, member pubkey or session pubkey. Returns how
    /// many sockets were affected; new connections are not affected.
    pub async fn set_half_open(
        &self,
        pubkey: &str,
        half_open: bool,
    ) -> Result<usize, DevBrokerError> {
        let who = pubkey.to_owned();
        self.ask(|reply| HubCmd::HalfOpen {
            who,
            on: half_open,
            reply,
        })
        .await
    }

    /// Drops every socket without a close frame (the client sees 1006). Returns how many.
    pub async fn drop_all(&self) -> Result<usize, DevBrokerError> {
        self.ask(|reply| HubCmd::DropAll { reply }).await
    }

    /// Every presence the broker holds, oldest first — online ones and (head profile) those in
    /// their offline lease, with the lease's remaining time.
    pub async fn presences(&self) -> Result<Vec<PresenceInfo>, DevBrokerError> {
        self.ask(|reply| HubCmd::Presences { reply }).await
    }

    /// Every queue row, oldest first, with its delivery and (head profile) claim state.
    pub async fn queue_rows(&self) -> Result<Vec<QueueRowInfo>, DevBrokerError> {
        self.ask(|reply| HubCmd::QueueRows { reply }).await
    }

    /// Stops like the real broker on SIGTERM: every socket is closed 1001 `shutting down`,
    /// then the listener is released (the same port can be bound again at once).
    pub async fn stop(mut self) -> Result<(), DevBrokerError> {
        self.stopped = true;
        if self.ask(|reply| HubCmd::Shutdown { reply }).await.is_ok() {
            let deadline = tokio::time::Instant::now() + CLOSE_GRACE;
            while self.live.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        server::stop(&self.server, &self.open_conns, DISCONNECT_GRACE).await;
        let _ = self.hub.send(HubCmd::Exit);
        if let Some(thread) = self.hub_thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        Ok(())
    }
}

impl Drop for DevBroker {
    fn drop(&mut self) {
        if !self.stopped {
            // `stop` sends its command eagerly; the completion future is not needed here.
            drop(self.server.stop(false));
            let _ = self.hub.send(HubCmd::Exit);
        }
    }
}

/// Replaces the `peer_grants` of member `name` (sender pubkey → capabilities; `{}` allows all):
/// the way to reproduce `blocked by recipient grants` in a test. Seen by a running broker at
/// the next send.
pub fn set_peer_grants(
    state_dir: &Path,
    name: &str,
    grants: &Map<String, Value>,
) -> Result<(), DevBrokerError> {
    let conn = state::open(state_dir)?;
    let mesh = state::mesh(&conn)?.ok_or_else(|| DevBrokerError::NoMesh {
        state_dir: state_dir.to_path_buf(),
    })?;
    let member = state::members(&conn, &mesh.id)?
        .into_iter()
        .find(|m| m.name == name)
        .ok_or_else(|| DevBrokerError::UnknownMember {
            name: name.to_owned(),
        })?;
    state::set_peer_grants(&conn, &member.id, grants)
}
