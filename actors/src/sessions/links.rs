//! Each session's own broker connection (SPEC §12 "Presence"): the registry starts one
//! supervised [`BrokerConnection`] per session with presence when the session registers or is
//! rehydrated, and closes it with 1000 when the session ends (reaper, DELETE, replacement).
//! The connection reports its presence ([`PresenceUpdate`]), which becomes the session's
//! `presence_status`; the drainer is told of every connection started and ended, so the
//! session's rows go out over it (or through the member connection once it is gone).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use actix::prelude::*;

use super::model::{PresenceStatus, Session};
use super::SessionRegistry;
use crate::broker::msg::{CloseLink, LinkEvent, PushReceived};
use crate::broker::session::{PresenceState, PresenceUpdate, SessionIdentity, SessionLink};
use crate::broker::{BrokerConnection, LinkConfig, LinkPeers};
use crate::crypto::MemberKeys;
use crate::inbox::msg::RecordEvent;
use crate::metrics::Metrics;
use crate::outbox::drainer::{
    OutboxDrainer, SessionLinkAdded, SessionLinkRemoved, SessionLinksReady,
};
use crate::settings::{BrokerTuning, JoinedMesh};

/// What the registry needs to start session connections (given once the drainer exists).
pub struct SessionLinkFactory {
    /// The attached meshes with the member keys, by slug.
    pub meshes: HashMap<String, (JoinedMesh, MemberKeys)>,
    pub tuning: BrokerTuning,
    pub drainer: Addr<OutboxDrainer>,
    pub pushes: Recipient<PushReceived>,
    pub journal: Recipient<RecordEvent>,
    pub metrics: Arc<Metrics>,
    pub daemon_dir: PathBuf,
}

/// Command: session connections may start now (sent by the supervisor after the drainer is
/// up); the sessions already rehydrated connect at once.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachSessionLinks(pub SessionLinkFactory);

/// Query: session connections per mesh, `(mesh, open, total)`, for status and health.
#[derive(Message, Debug)]
#[rtype(result = "Vec<(String, usize, usize)>")]
pub struct SessionConnections;

impl SessionRegistry {
    /// Starts the connection of the session under `digest`, if it has presence material and
    /// its mesh is attached. `rehydrated`: it comes back after a daemon start, so its first
    /// link owes the redelivery nudge (SPEC §6).
    pub(super) fn start_link(&mut self, ctx: &mut Context<Self>, digest: &str, rehydrated: bool) {
        let Some(f) = &self.factory else {
            return;
        };
        let Some(s) = self.sessions.get(digest) else {
            return;
        };
        let (Some(presence), Some((mesh, member))) = (&s.presence, f.meshes.get(&s.mesh)) else {
            return;
        };
        let link_cfg = LinkConfig {
            profile_path: f.daemon_dir.join(format!("profile-{}.json", mesh.slug)),
            mesh: mesh.clone(),
            keys: member.clone(),
            display_name: Some(s.display_name.clone()),
            groups: Vec::new(),
            tuning: f.tuning.clone(),
            session_id: s.session_id.clone(),
            nudge_after_start: rehydrated,
            session: Some(SessionLink {
                id: SessionIdentity {
                    keys: presence.keys.clone(),
                    session_id: s.session_id.clone(),
                    display_name: s.display_name.clone(),
                    pid: s.pid,
                    cwd: s.cwd.clone(),
                    role: s.role.clone(),
                    groups: s.groups.clone(),
                },
                presence: ctx.address().recipient(),
                attestation_ttl_ms: i64::try_from(f.tuning.session_attestation_ttl_ms)
                    .unwrap_or(crate::broker::session::ATTESTATION_TTL_MS),
                retry_after_refusal_ms: f.tuning.session_retry_ms,
            }),
        };
        let peers = LinkPeers {
            drainer: f.drainer.clone().recipient::<LinkEvent>(),
            pushes: f.pushes.clone(),
            journal: f.journal.clone(),
        };
        let metrics = f.metrics.clone();
        let link = Supervisor::start(move |_| BrokerConnection::new(link_cfg, peers, metrics));
        f.drainer.do_send(SessionLinkAdded::new(
            s.mesh.clone(),
            presence.keys.clone(),
            link.clone(),
        ));
        self.links.insert(digest.to_string(), link);
    }

    /// Closes the connection of `s` with 1000 (if it has one); its rows go through the member.
    pub(super) fn stop_link(&mut self, s: &Session) {
        let Some(link) = self.links.remove(&s.token_digest) else {
            return;
        };
        link.do_send(CloseLink);
        if let (Some(f), Some(p)) = (&self.factory, &s.presence) {
            f.drainer.do_send(SessionLinkRemoved {
                mesh: s.mesh.clone(),
                session_pubkey: p.pubkey(),
            });
        }
    }

    /// Closes every session connection with 1000 (ordered shutdown): the sessions stay
    /// registered for the next start, which reattaches them within the broker's lease.
    pub(super) fn close_links(&mut self) -> Vec<Addr<BrokerConnection>> {
        self.links.drain().map(|(_, l)| l).collect()
    }
}

impl Handler<AttachSessionLinks> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: AttachSessionLinks, ctx: &mut Context<Self>) {
        self.factory = Some(msg.0);
        let digests: Vec<String> = self.sessions.keys().cloned().collect();
        for d in digests {
            self.start_link(ctx, &d, true);
        }
        if let Some(f) = &self.factory {
            f.drainer.do_send(SessionLinksReady);
        }
    }
}

impl Handler<PresenceUpdate> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: PresenceUpdate, _ctx: &mut Context<Self>) {
        let status = match &msg.state {
            PresenceState::Open => PresenceStatus::Open,
            PresenceState::Down => PresenceStatus::Pending,
            PresenceState::Unsupported => PresenceStatus::Unsupported,
            PresenceState::Rejected(_) => PresenceStatus::Rejected,
        };
        let Some(s) = self.sessions.values_mut().find(|s| {
            s.mesh == msg.mesh
                && s.presence.as_ref().map(|p| p.pubkey()).as_deref()
                    == Some(msg.session_pubkey.as_str())
        }) else {
            return;
        };
        if s.presence_status != status {
            log::info!(
                "session {} (mesh {}): presence {} → {}",
                s.session_id,
                s.mesh,
                s.presence_status.as_str(),
                status.as_str()
            );
            s.presence_status = status;
        }
    }
}

impl Handler<SessionConnections> for SessionRegistry {
    type Result = MessageResult<SessionConnections>;

    fn handle(&mut self, _msg: SessionConnections, _ctx: &mut Context<Self>) -> Self::Result {
        let mut per: HashMap<String, (usize, usize)> = HashMap::new();
        for s in self.sessions.values().filter(|s| s.presence.is_some()) {
            let e = per.entry(s.mesh.clone()).or_default();
            e.1 += 1;
            if s.presence_status == PresenceStatus::Open {
                e.0 += 1;
            }
        }
        let mut out: Vec<(String, usize, usize)> =
            per.into_iter().map(|(m, (o, t))| (m, o, t)).collect();
        out.sort();
        MessageResult(out)
    }
}
