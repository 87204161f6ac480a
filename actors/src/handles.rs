//! [`Handles`]: the addresses of a running daemon's actors, handed to the IPC layer. Created
//! once by [`crate::supervisor::start`]; cloning is cheap (addresses and `Arc`s).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use actix::Addr;

use crate::broker::BrokerConnection;
use crate::events::EventHub;
use crate::inbox::actor::InboxStore;
use crate::metrics::Metrics;
use crate::outbox::accepts::AcceptLane;
use crate::outbox::drainer::OutboxDrainer;
use crate::outbox::seen::SeenIds;
use crate::readpool::ReadPool;
use crate::sessions::SessionRegistry;
use crate::settings::Tuning;

/// One joined mesh the daemon is attached to.
#[derive(Clone)]
pub struct MeshHandle {
    /// Mesh slug (what `mesh` in requests names).
    pub slug: String,
    /// Broker-side mesh id.
    pub mesh_id: String,
    /// Our member pubkey (64 hex) in this mesh.
    pub member_pubkey: String,
    /// The connection actor of this mesh.
    pub link: Addr<BrokerConnection>,
}

/// Facts about the running process, for `/v1/health` and `/v1/version`.
#[derive(Debug, Clone)]
pub struct DaemonInfo {
    pub pid: u32,
    pub version: &'static str,
    pub started_at_ms: i64,
    pub daemon_dir: PathBuf,
    pub socket: PathBuf,
    /// Bound TCP address, or `None` when TCP is off or the port was taken.
    pub tcp: Option<SocketAddr>,
    pub schema_version: i64,
    /// The stable broker session id of every mesh's hello (SPEC §5.6).
    pub session_id: String,
}

/// Everything the IPC layer needs to serve requests.
#[derive(Clone)]
pub struct Handles {
    pub outbox: Addr<OutboxDrainer>,
    /// Accepts sends into `outbox.db` (group commits on its database thread).
    pub accepts: AcceptLane,
    pub inbox: Addr<InboxStore>,
    /// Read-only connections to `outbox.db`: counts, listing, lookups (never the writer).
    pub outbox_reads: ReadPool,
    /// The ids `outbox.db` may hold: a new id skips the read-only lookup.
    pub outbox_ids: Arc<SeenIds>,
    /// Read-only connections to `inbox.db`: paging without `mark_seen`.
    pub inbox_reads: ReadPool,
    pub events: Addr<EventHub>,
    /// The session registry (SPEC §12).
    pub sessions: Addr<SessionRegistry>,
    /// Attached meshes, in config order.
    pub meshes: Vec<MeshHandle>,
    /// Slug used when a send names no mesh.
    pub default_mesh: String,
    pub tuning: Arc<Tuning>,
    pub metrics: Arc<Metrics>,
    pub info: Arc<DaemonInfo>,
}

impl Handles {
    /// The mesh named by `slug`, or the default mesh when `None`.
    pub fn mesh(&self, slug: Option<&str>) -> Option<&MeshHandle> {
        let want = slug.unwrap_or(&self.default_mesh);
        self.meshes.iter().find(|m| m.slug == want)
    }

    /// Slugs of the attached meshes.
    pub fn slugs(&self) -> Vec<String> {
        self.meshes.iter().map(|m| m.slug.clone()).collect()
    }
}
