//! How presences end: a close (seed: `peer_left` at once; head: the offline lease), the lease
//! running out (head: `peer_left` then), kicks and revocations (no `peer_left`), and the
//! read-only view of every presence.

use std::time::Instant;

use claudemesh_actors::time::now_ms;
use serde_json::{json, Map, Value};

use super::msg::{ConnId, Outgoing};
use super::{Hub, Lease, Presence};
use crate::inspect::PresenceInfo;
use crate::peer_state::{self, PeerState};
use crate::state;

impl Hub {
    pub(super) fn on_closed(&mut self, conn: ConnId) {
        let lease = self.head() && !self.shutting_down;
        let grace = self.opts.grace;
        if let Some(entry) = self.conns.get_mut(&conn) {
            if lease && entry.lease_until.is_none() {
                if let Some(presence) = entry.presence.clone() {
                    // Head (§6.2): the presence stays listed and routable, its socket is gone.
                    entry.lease_until = Some(Lease {
                        until: Instant::now() + grace,
                        until_ms: now_ms()
                            .saturating_add(i64::try_from(grace.as_millis()).unwrap_or(i64::MAX)),
                    });
                    self.save_peer_state(&presence);
                    return;
                }
            }
        }
        if let Some(presence) = self.end_presence(conn, true) {
            self.send_peer_left(&presence, conn);
        }
        self.conns.remove(&conn);
    }

    /// `peer_left` about `presence` to the other members' connections.
    fn send_peer_left(&self, presence: &Presence, exclude: ConnId) {
        let data = json!({"name": presence.display_name, "pubkey": presence.routing_pubkey()});
        self.broadcast_event(presence, exclude, "peer_left", data, false);
    }

    /// Head: when the earliest offline lease ends.
    pub(super) fn next_lease_end(&self) -> Option<Instant> {
        self.conns
            .values()
            .filter_map(|c| c.lease_until.map(|l| l.until))
            .min()
    }

    /// Head: evicts every presence whose lease has ended (`peer_left`, then forgotten).
    pub(super) fn expire_leases(&mut self, now: Instant) {
        let ended: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.lease_until.is_some_and(|l| l.until <= now))
            .map(|(id, _)| *id)
            .collect();
        for conn in ended {
            if let Some(presence) = self.conns.remove(&conn).and_then(|c| c.presence) {
                log::debug!("dev broker: lease of {} expired", presence.presence_id);
                self.send_peer_left(&presence, conn);
            }
        }
    }

    /// Whether `conn` is the dead socket of a leased presence.
    pub(super) fn is_leased(&self, conn: ConnId) -> bool {
        self.conns
            .get(&conn)
            .is_some_and(|c| c.lease_until.is_some())
    }

    /// Removes `conn`'s presence; with `save`, stores the member's `peer_state` first.
    pub(super) fn end_presence(&mut self, conn: ConnId, save: bool) -> Option<Presence> {
        let presence = self.conns.get_mut(&conn)?.presence.take()?;
        if save {
            self.save_peer_state(&presence);
        }
        Some(presence)
    }

    /// Stores the member's `peer_state` from `presence` (on close).
    fn save_peer_state(&self, presence: &Presence) {
        let stats = match &presence.stats {
            Some(Value::Object(map)) => map.clone(),
            _ => Map::new(),
        };
        let saved = PeerState {
            groups: presence.groups.clone(),
            summary: presence.summary.clone().unwrap_or_default(),
            visible: presence.visible,
            profile: presence.profile.clone(),
            stats,
            last_seen_at: now_ms(),
        };
        if let Err(err) =
            peer_state::save_peer_state(&self.db, &presence.mesh_id, &presence.member_id, &saved)
        {
            log::warn!(
                "dev broker: saving peer_state of {}: {err}",
                presence.member_id
            );
        }
    }

    /// Presences (leased ones included) matching a member name, member pubkey or session
    /// pubkey.
    pub(super) fn conns_of(&self, who: &str) -> Vec<ConnId> {
        let member_ids: Vec<String> = state::mesh(&self.db)
            .ok()
            .flatten()
            .and_then(|mesh| state::members(&self.db, &mesh.id).ok())
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.name == who || m.pubkey == who)
            .map(|m| m.id)
            .collect();
        self.conns
            .iter()
            .filter(|(_, c)| {
                c.presence.as_ref().is_some_and(|p| {
                    member_ids.contains(&p.member_id)
                        || p.member_pubkey == who
                        || p.session_pubkey.as_deref() == Some(who)
                })
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// As [`Hub::conns_of`], live sockets only.
    pub(super) fn live_conns_of(&self, who: &str) -> Vec<ConnId> {
        let mut conns = self.conns_of(who);
        conns.retain(|id| !self.is_leased(*id));
        conns
    }

    /// Ends every presence of `who` without `peer_left`: live sockets are closed with
    /// `code`/`reason`, leased presences forgotten. Returns how many sockets were closed.
    pub(super) fn close_member(&mut self, who: &str, code: u16, reason: &str) -> usize {
        let mut closed = 0;
        for conn in self.conns_of(who) {
            if self.is_leased(conn) {
                self.conns.remove(&conn);
                continue;
            }
            self.end_presence(conn, false);
            self.send(
                conn,
                Outgoing::Close {
                    code,
                    reason: reason.to_owned(),
                },
            );
            closed += 1;
        }
        closed
    }

    pub(super) fn poll_revocations(&mut self) {
        let revoked = match state::revoked_member_ids(&self.db) {
            Ok(ids) => ids,
            Err(err) => {
                log::warn!("dev broker: polling revocations: {err}");
                return;
            }
        };
        let banned: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.presence
                    .as_ref()
                    .is_some_and(|p| revoked.contains(&p.member_id))
            })
            .map(|(id, _)| *id)
            .collect();
        for conn in banned {
            if self.is_leased(conn) {
                self.conns.remove(&conn);
                continue;
            }
            self.end_presence(conn, false);
            self.send(
                conn,
                Outgoing::Close {
                    code: 4002,
                    reason: "banned".into(),
                },
            );
        }
    }

    /// Every presence, oldest first (for [`crate::DevBroker::presences`]).
    pub(super) fn presence_infos(&self) -> Vec<PresenceInfo> {
        let now = Instant::now();
        let mut list: Vec<(&Presence, Option<Instant>)> = self
            .conns
            .values()
            .filter_map(|c| {
                c.presence
                    .as_ref()
                    .map(|p| (p, c.lease_until.map(|l| l.until)))
            })
            .collect();
        list.sort_by_key(|(p, _)| (p.connected_at, p.seq));
        list.into_iter()
            .map(|(p, lease)| p.info(lease, now))
            .collect()
    }
}
