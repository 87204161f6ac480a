//! Supervisor: builds the actor tree in order, hands out [`Handles`], and runs the ordered
//! shutdown. Wiring is explicit here and nowhere else.
//!
//! Tree: EventHub → InboxStore (own arbiter, owns `inbox.db`) → OutboxDb (own arbiter, owns
//! `outbox.db`) → SessionRegistry (its rows through OutboxDb, rehydrated from the rows read
//! here before the connection moves to its thread) → OutboxDrainer, created together with one supervised BrokerConnection per mesh
//! (actix `Supervisor`: a connection that stops is restarted; 4001/4002 leave it dormant).
//! The IpcListener is started by the caller with the returned [`Handles`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use rusqlite::Connection;

use crate::broker::msg::{CloseLink, LinkEvent};
use crate::broker::{BrokerConnection, LinkConfig, LinkPeers};
use crate::crypto::MemberKeys;
use crate::events::{CloseStreams, EventHub};
use crate::handles::{DaemonInfo, Handles, MeshHandle};
use crate::inbox::actor::InboxStore;
use crate::inbox::msg::{CloseInbox, PruneInbox};
use crate::ipc::{IpcListener, PauseServing, StopServing};
use crate::metrics::Metrics;
use crate::outbox::accepts::AcceptLane;
use crate::outbox::db::OutboxDb;
use crate::outbox::drainer::{DrainTarget, OutboxDrainer};
use crate::outbox::msg::{CloseOutbox, StopDraining};
use crate::outbox::seen::SeenIds;
use crate::readpool::ReadPool;
use crate::sessions::links::{AttachSessionLinks, SessionLinkFactory};
use crate::sessions::msg::CloseSessions;
use crate::sessions::process::OsProbe;
use crate::sessions::{self, SessionRegistry};
use crate::settings::{JoinedMesh, Tuning};
use crate::time::now_ms;

/// Per-subscriber SSE buffer; a subscriber this far behind is dropped.
const SSE_BUFFER: usize = 1024;

/// Inbox rows one prune transaction deletes at most.
const PRUNE_CHUNK: usize = 5_000;

/// What the engine needs to start; databases are already opened, checked and migrated.
pub struct EngineConfig {
    /// Selected meshes with their parsed keys, in config order.
    pub meshes: Vec<(JoinedMesh, MemberKeys)>,
    pub default_mesh: String,
    pub display_name: Option<String>,
    /// Groups announced in every hello (config.json `groups`).
    pub groups: Vec<crate::wire::Group>,
    pub tuning: Tuning,
    pub daemon_dir: PathBuf,
    /// The stable broker session id every mesh's hello carries (SPEC §5.6).
    pub session_id: String,
    /// Whether the first link of each mesh owes the redelivery nudge of a start (SPEC §6):
    /// true for the first engine of the process; false after a SIGHUP re-attach once that
    /// start's nudge is no longer due (the old links were closed cleanly).
    pub nudge_after_start: bool,
    pub outbox: Connection,
    pub inbox: Connection,
    pub info: DaemonInfo,
    /// Counters; owned by the process so they survive a SIGHUP re-attach.
    pub metrics: Arc<Metrics>,
}

/// A running engine: handles plus what the shutdown needs.
pub struct Engine {
    pub handles: Handles,
    inbox_arbiter: Arbiter,
    outbox_arbiter: Arbiter,
}

/// The read pool beside a writer connection (its file; `:memory:` has none to share, and an
/// empty path gives readers that fail, which only tests without files reach).
fn reads_of(writer: &Connection) -> ReadPool {
    ReadPool::new(Path::new(writer.path().unwrap_or_default()))
}

/// Adds the ids already in `outbox.db` to `ids` on a thread of its own; until it ends, every
/// send with an id asks a reader (SPEC §5.3 lookups). The scan has a read-only connection of
/// its own with a small page cache, closed when it ends, and the allocator's freed memory is
/// handed back then: an idle daemon keeps only the filter.
fn load_seen_ids(ids: &Arc<SeenIds>, outbox: &Path) {
    let (ids, path) = (ids.clone(), outbox.to_path_buf());
    let spawned = std::thread::Builder::new()
        .name("outbox-ids".into())
        .spawn(move || {
            let started = std::time::Instant::now();
            let scanned = Connection::open_with_flags(
                &path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .and_then(|c| {
                c.pragma_update(None, "cache_size", -SCAN_CACHE_KIB)?;
                ids.load(&c)
            });
            match scanned {
                Ok(n) => log::info!(
                    "outbox: {n} message ids loaded in {} ms ({} KiB)",
                    started.elapsed().as_millis(),
                    ids.bytes() / 1024
                ),
                Err(e) => log::warn!(
                    "outbox: message ids not loaded, every send with an id is looked up: {e}"
                ),
            }
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            // SAFETY: malloc_trim only releases free memory of the allocator's arenas.
            unsafe {
                libc::malloc_trim(0);
            }
        });
    if let Err(e) = spawned {
        log::warn!("outbox: cannot start the id scan, every send with an id is looked up: {e}");
    }
}

/// Page cache of the start-up id scan, in KiB: it reads each index page once.
const SCAN_CACHE_KIB: i64 = 256;

/// Moves the WAL checkpoints of a writer connection off its thread (run on that thread).
fn attach_checkpoints(conn: &Connection, name: &str) {
    if let Err(e) = crate::checkpoint::attach(conn, name) {
        log::warn!("{name}: checkpoints stay on the writer thread: {e}");
    }
}

/// Starts every actor. Must run inside an actix system.
pub fn start(cfg: EngineConfig) -> Engine {
    let metrics = cfg.metrics.clone();
    let tuning = Arc::new(cfg.tuning);
    let events = EventHub::new(tuning.ipc.max_sse_streams, SSE_BUFFER).start();

    let keys: HashMap<String, MemberKeys> = cfg
        .meshes
        .iter()
        .map(|(m, k)| (m.slug.clone(), k.clone()))
        .collect();
    let journal_keep = usize::try_from(tuning.inbox.event_journal).unwrap_or(usize::MAX);
    let (outbox_reads, inbox_reads) = (reads_of(&cfg.outbox), reads_of(&cfg.inbox));
    let outbox_ids = Arc::new(SeenIds::new());
    load_seen_ids(&outbox_ids, outbox_reads.path());
    let inbox_arbiter = Arbiter::new();
    let inbox_conn = cfg.inbox;
    let (ev, me) = (events.clone(), metrics.clone());
    let inbox = InboxStore::start_in_arbiter(&inbox_arbiter.handle(), move |_| {
        attach_checkpoints(&inbox_conn, "inbox");
        InboxStore::new(inbox_conn, keys, ev, me, journal_keep)
    });

    // Read before the connection moves to its thread; a failure is logged, not fatal (the
    // sessions re-register; their rows stay for the next start).
    let loaded = sessions::store::load(&cfg.outbox).unwrap_or_else(|e| {
        log::error!("sessions: cannot load the registry from outbox.db: {e}");
        Vec::new()
    });
    let outbox_arbiter = Arbiter::new();
    let outbox_conn = cfg.outbox;
    let db = OutboxDb::start_in_arbiter(&outbox_arbiter.handle(), move |_| {
        attach_checkpoints(&outbox_conn, "outbox");
        OutboxDb::new(outbox_conn)
    });

    let attached: Vec<String> = cfg.meshes.iter().map(|(m, _)| m.slug.clone()).collect();
    let session_registry = SessionRegistry::new(
        db.clone(),
        inbox.clone().recipient(),
        Arc::new(OsProbe),
        loaded,
        attached,
        sessions::REAP_EVERY,
    )
    .start();

    let mesh_keys: HashMap<String, (JoinedMesh, MemberKeys)> = cfg
        .meshes
        .iter()
        .map(|(m, k)| (m.slug.clone(), (m.clone(), k.clone())))
        .collect();
    let daemon_dir = cfg.daemon_dir.clone();
    let mut meshes = Vec::new();
    let outbox_tuning = tuning.outbox.clone();
    let (inbox2, metrics2, tuning2) = (inbox.clone(), metrics.clone(), tuning.clone());
    let (seen, lane_db) = (outbox_ids.clone(), db.clone());
    let outbox = OutboxDrainer::create(|ctx| {
        let link_peers = LinkPeers {
            drainer: ctx.address().recipient::<LinkEvent>(),
            pushes: inbox2.clone().recipient(),
            journal: inbox2.clone().recipient(),
        };
        let mut targets = Vec::new();
        for (mesh, keys) in cfg.meshes {
            let link_cfg = LinkConfig {
                profile_path: cfg.daemon_dir.join(format!("profile-{}.json", mesh.slug)),
                mesh: mesh.clone(),
                keys: keys.clone(),
                display_name: cfg.display_name.clone(),
                groups: cfg.groups.clone(),
                tuning: tuning2.broker.clone(),
                session_id: cfg.session_id.clone(),
                nudge_after_start: cfg.nudge_after_start,
                session: None,
            };
            let (lp, me) = (link_peers.clone(), metrics2.clone());
            let link = Supervisor::start(move |_| BrokerConnection::new(link_cfg, lp, me));
            meshes.push(MeshHandle {
                slug: mesh.slug.clone(),
                mesh_id: mesh.mesh_id.clone(),
                member_pubkey: mesh.pubkey.clone(),
                link: link.clone(),
            });
            targets.push(DrainTarget {
                slug: mesh.slug,
                keys,
                link,
            });
        }
        OutboxDrainer::new(db, targets, outbox_tuning, inbox2.recipient(), metrics2)
            .with_seen_ids(seen)
    });
    // Sends commit on the database thread and are answered from it; the drainer only hears
    // which meshes have new rows.
    let accepts = AcceptLane::new(
        lane_db,
        outbox.clone().recipient(),
        outbox_ids.clone(),
        metrics.clone(),
    );

    // Session connections start once the drainer they report to exists (SPEC §12).
    session_registry.do_send(AttachSessionLinks(SessionLinkFactory {
        meshes: mesh_keys,
        tuning: tuning.broker.clone(),
        drainer: outbox.clone(),
        pushes: inbox.clone().recipient(),
        journal: inbox.clone().recipient(),
        metrics: metrics.clone(),
        daemon_dir,
    }));

    // Inbox retention: prune hourly (and once now), in chunks, so pushes are stored between
    // them even when a long outage or a shorter retention leaves a million rows to delete.
    let retention_ms = i64::from(tuning.inbox.retention_days) * 86_400_000;
    let pruner = inbox.clone();
    actix::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let cutoff = now_ms() - retention_ms;
            let mut pruned = 0;
            loop {
                let chunk = PruneInbox {
                    older_than_ms: cutoff,
                    limit: PRUNE_CHUNK,
                };
                match pruner.send(chunk).await {
                    Ok(Ok(n)) => {
                        pruned += n;
                        if n < PRUNE_CHUNK {
                            break;
                        }
                    }
                    Ok(Err(e)) => {
                        log::error!("inbox prune failed: {e}");
                        break;
                    }
                    Err(_) => return,
                }
            }
            if pruned > 0 {
                log::info!("inbox: pruned {pruned} rows past retention");
            }
        }
    });

    let handles = Handles {
        outbox,
        accepts,
        inbox,
        outbox_reads,
        outbox_ids,
        inbox_reads,
        events,
        sessions: session_registry,
        meshes,
        default_mesh: cfg.default_mesh,
        tuning,
        metrics,
        info: Arc::new(cfg.info),
    };
    Engine {
        handles,
        inbox_arbiter,
        outbox_arbiter,
    }
}

impl Engine {
    /// The ordered shutdown of SPEC §3: SSE streams closed, requests drained (bounded), broker
    /// sockets closed with 1000, inflight rows back to pending, clean markers written.
    pub async fn shutdown(self, ipc: Option<Addr<IpcListener>>) {
        let h = &self.handles;
        // Stop accepting first (a client reconnecting meanwhile sees a refused connection,
        // not a full stream table), then end the streams, then drain in-flight requests.
        if let Some(ipc) = &ipc {
            let _ = ipc.send(PauseServing).await;
        }
        let _ = h.events.send(CloseStreams).await;
        if let Some(ipc) = ipc {
            let _ = ipc.send(StopServing).await;
        }
        // No request can reach the registry any more; its reaper must not outlive the engine
        // (a SIGHUP re-attach starts a new one from the same rows).
        let _ = h.sessions.send(CloseSessions).await;
        // No new sends into closing sockets; rows still in flight get their acks or go back.
        let _ = h.outbox.send(StopDraining).await;
        // All links at once; each answers when its socket is gone (bounded).
        futures_util::future::join_all(h.meshes.iter().map(|m| m.link.send(CloseLink))).await;
        match h.outbox.send(CloseOutbox).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => log::error!("outbox close failed: {e}"),
            Err(e) => log::error!("outbox close failed: {e}"),
        }
        match h.inbox.send(CloseInbox).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => log::error!("inbox close failed: {e}"),
            Err(e) => log::error!("inbox close failed: {e}"),
        }
        self.inbox_arbiter.stop();
        self.outbox_arbiter.stop();
        let _ = self.inbox_arbiter.join();
        let _ = self.outbox_arbiter.join();
    }
}
