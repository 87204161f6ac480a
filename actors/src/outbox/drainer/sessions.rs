//! Rows sent by a session (SPEC §12 "Sending as a session"): which link a row goes out on.
//!
//! The session registry tells the drainer of every session connection it starts
//! ([`SessionLinkAdded`]) and ends ([`SessionLinkRemoved`]); the connection reports its presence
//! ([`LinkEvent::Session`](crate::broker::msg::LinkEvent::Session)). A row that records a
//! session goes out over that session's connection, sealed with the session key, while the
//! presence is open; it waits (uncounted, its destination held so later rows keep their
//! place) while the connection is down; it goes through the member connection, sealed with
//! the member key, once the session has ended or when the broker does not serve
//! `session_hello` (unsupported or refused: never stuck).

use std::collections::HashMap;

use actix::prelude::*;

use super::{LinkRecipients, OutboxDrainer};
use crate::broker::msg::DeliverSend;
use crate::broker::session::{PresenceState, PresenceUpdate};
use crate::broker::BrokerConnection;
use crate::crypto::MemberKeys;

/// A session connection the drainer can send over.
pub(super) struct SessionRoute {
    mesh: String,
    keys: MemberKeys,
    link: LinkRecipients,
    state: PresenceState,
    /// Destinations whose head row waits for this session's connection.
    held: Vec<String>,
}

/// Where one row goes.
pub(super) enum Route {
    /// The mesh's member connection and key.
    Member,
    /// The session's connection and key (the member link still resolves names).
    Session(Box<(LinkRecipients, MemberKeys)>),
    /// The session's connection is down: the row waits.
    Hold,
}

/// Command from the registry: a session connection started.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionLinkAdded {
    pub mesh: String,
    /// The session keypair.
    pub keys: MemberKeys,
    /// The session connection's sends.
    pub deliver: Recipient<DeliverSend>,
}

impl SessionLinkAdded {
    /// For the session connection `link` of `mesh`, with the session keypair `keys`.
    pub fn new(mesh: String, keys: MemberKeys, link: Addr<BrokerConnection>) -> Self {
        SessionLinkAdded {
            mesh,
            keys,
            deliver: link.recipient(),
        }
    }
}

/// Command from the registry: the session of this pubkey ended; its rows go through the member.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionLinkRemoved {
    pub mesh: String,
    pub session_pubkey: String,
}

/// Command from the registry: every live session's connection has been announced (sent once
/// at start, after the rehydrated sessions' [`SessionLinkAdded`]); draining may begin.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionLinksReady;

/// The session routes, by session pubkey.
pub(super) struct SessionRoutes {
    routes: HashMap<String, SessionRoute>,
    /// The registry has announced the live sessions: until then a session's row cannot be
    /// told from an ended session's, so nothing is claimed.
    pub(super) ready: bool,
}

impl Default for SessionRoutes {
    fn default() -> Self {
        SessionRoutes {
            routes: HashMap::new(),
            ready: true,
        }
    }
}

impl SessionRoutes {
    /// The route of a row sent by `session` (`None`: the member's own row).
    pub(super) fn route(&self, session: Option<&str>) -> Route {
        let Some(route) = session.and_then(|s| self.routes.get(s)) else {
            return Route::Member;
        };
        match route.state {
            PresenceState::Open => {
                Route::Session(Box::new((route.link.clone(), route.keys.clone())))
            }
            PresenceState::Down => Route::Hold,
            PresenceState::Unsupported | PresenceState::Rejected(_) => Route::Member,
        }
    }

    /// Holds `dest` until `session`'s connection opens or the session ends.
    pub(super) fn hold(&mut self, session: &str, dest: String) {
        if let Some(r) = self.routes.get_mut(session) {
            if !r.held.contains(&dest) {
                r.held.push(dest);
            }
        }
    }

    /// Destinations of `mesh` held by a session connection that is down.
    pub(super) fn held(&self, mesh: &str) -> impl Iterator<Item = &String> + '_ {
        let mesh = mesh.to_string();
        self.routes
            .values()
            .filter(move |r| r.mesh == mesh)
            .flat_map(|r| r.held.iter())
    }
}

impl Handler<SessionLinkAdded> for OutboxDrainer {
    type Result = ();

    fn handle(&mut self, msg: SessionLinkAdded, _ctx: &mut Context<Self>) {
        let Some(member) = self.meshes.get(&msg.mesh) else {
            return;
        };
        let link = LinkRecipients {
            deliver: msg.deliver,
            // Names resolve against the member connection's peer list.
            resolve: member.link.resolve.clone(),
        };
        let route = SessionRoute {
            mesh: msg.mesh,
            keys: msg.keys.clone(),
            link,
            state: PresenceState::Down,
            held: Vec::new(),
        };
        self.session_routes
            .routes
            .insert(msg.keys.pubkey_hex(), route);
    }
}

impl Handler<SessionLinkRemoved> for OutboxDrainer {
    type Result = ();

    fn handle(&mut self, msg: SessionLinkRemoved, ctx: &mut Context<Self>) {
        // Its held rows go out through the member connection from now on.
        if self
            .session_routes
            .routes
            .remove(&msg.session_pubkey)
            .is_some()
        {
            self.drain(ctx, &msg.mesh);
        }
    }
}

impl Handler<SessionLinksReady> for OutboxDrainer {
    type Result = ();

    fn handle(&mut self, _msg: SessionLinksReady, ctx: &mut Context<Self>) {
        self.session_routes.ready = true;
        let meshes: Vec<String> = self.meshes.keys().cloned().collect();
        for mesh in meshes {
            self.drain(ctx, &mesh);
        }
    }
}

impl OutboxDrainer {
    /// A session connection's presence changed: release its held rows when it opens or will
    /// not open (unsupported, refused), then drain.
    pub(super) fn on_session_presence(&mut self, ctx: &mut Context<Self>, u: PresenceUpdate) {
        let Some(route) = self.session_routes.routes.get_mut(&u.session_pubkey) else {
            return;
        };
        route.state = u.state;
        if route.state != PresenceState::Down {
            route.held.clear();
            self.drain(ctx, &u.mesh);
        }
    }
}

#[cfg(test)]
#[path = "sessions_tests.rs"]
mod tests;
