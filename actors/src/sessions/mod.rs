//! The session registry (SPEC §12): every agent session the head CLI launches registers here
//! with a token; requests carrying `Authorization: ClaudeMesh-Session <token>` are then made
//! *by that session* and scoped to it.
//!
//! - [`model`]: registrations, sessions, the secret-free [`SessionView`] — the only form that
//!   leaves the registry (no token, no secret key).
//! - [`store`]: the `sessions` table of `outbox.db` (schema version 2).
//! - [`process`]: process liveness and start time (`/proc/<pid>/stat` field 22), the reaper rule.
//! - [`SessionRegistry`] (this file): the actor that owns the registry; [`msg`]: its messages.
//!
//! Ownership: the registry's state lives in this one actor (an in-memory map by token digest,
//! so resolving a request's session never waits behind SQL). Its rows live in `outbox.db`,
//! whose one owner is the OutboxDb thread: the registry sends it [`DbTask`]s like the drainer
//! does, so the file keeps exactly one writer connection (STYLE "one owner per database").
//!
//! Lifecycle: [`SessionRegistry::new`] takes the rows loaded at engine start; `started`
//! rehydrates the sessions whose process still runs (same pid, same start time) and mesh is
//! attached, and drops the others; a reaper every 5 s drops sessions whose process exited, whose
//! pid was reused, or that are older than 24 h. Every session that ends — reaped,
//! deregistered, replaced — is deleted from the table and journaled as a `session_left` event.
//! A session owns its keypair ([`model::SessionPresence`]) and a `presence_status` from
//! registration on; the session's own broker connection (`session_hello`) is started and
//! closed at exactly these points (register/rehydrate, and every way a session ends).

pub mod links;
pub mod model;
pub mod msg;
pub mod process;
pub mod store;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use serde_json::{json, Map, Value};

use crate::inbox::msg::RecordEvent;
use crate::outbox::db::{DbTask, OutboxDb};
use crate::time::now_ms;
use model::{PresenceStatus, Session};
use msg::*;
use process::{reap_reason, LeaveReason, ProcState, ProcessProbe};

/// How often the reaper sweeps (SPEC §12).
pub const REAP_EVERY: Duration = Duration::from_secs(5);
/// Sessions older than this are dropped (a leak guard for forgotten sessions).
pub const SESSION_TTL_MS: i64 = 24 * 3_600_000;

/// The registry actor.
pub struct SessionRegistry {
    /// The one thread of `outbox.db`.
    db: Addr<OutboxDb>,
    /// Where `session_left` events are journaled (the InboxStore).
    journal: Recipient<RecordEvent>,
    /// Process lookups (the OS; a fake in tests).
    probe: Arc<dyn ProcessProbe>,
    /// Live sessions by token digest.
    sessions: HashMap<String, Session>,
    /// Rows loaded at start, judged in `started` (rehydration).
    loaded: Vec<Session>,
    /// Slugs of the attached meshes: a session of another mesh cannot be served.
    attached: Vec<String>,
    /// Reaper period.
    reap_every: Duration,
    /// Starts session connections; `None` until [`links::AttachSessionLinks`].
    factory: Option<links::SessionLinkFactory>,
    /// The open session connections, by token digest.
    links: HashMap<String, Addr<crate::broker::BrokerConnection>>,
}

impl SessionRegistry {
    /// A registry over `db`, to rehydrate from `loaded` (the `sessions` rows read at start).
    pub fn new(
        db: Addr<OutboxDb>,
        journal: Recipient<RecordEvent>,
        probe: Arc<dyn ProcessProbe>,
        loaded: Vec<Session>,
        attached: Vec<String>,
        reap_every: Duration,
    ) -> Self {
        SessionRegistry {
            db,
            journal,
            probe,
            sessions: HashMap::new(),
            loaded,
            attached,
            reap_every,
            factory: None,
            links: HashMap::new(),
        }
    }

    /// Deletes the rows of `ended` and journals one `session_left` per session.
    fn ended(&mut self, ended: Vec<(Session, LeaveReason)>, delete_rows: bool) {
        if ended.is_empty() {
            return;
        }
        if delete_rows {
            let digests: Vec<String> = ended.iter().map(|(s, _)| s.token_digest.clone()).collect();
            let db = self.db.clone();
            actix::spawn(async move {
                match db
                    .send(DbTask::new(move |conn| store::delete(conn, &digests)))
                    .await
                {
                    Ok(Ok(_)) => {}
                    // The row stays; the next start's rehydration drops it again.
                    Ok(Err(e)) => log::error!("sessions: deleting ended sessions failed: {e}"),
                    Err(e) => log::warn!("sessions: outbox db unavailable: {e}"),
                }
            });
        }
        for (s, reason) in ended {
            self.stop_link(&s);
            log::info!(
                "session {} ({}, mesh {}, pid {}, token {}…) left: {}",
                s.session_id,
                s.display_name,
                s.mesh,
                s.pid,
                s.token_prefix,
                reason.as_str()
            );
            let event = RecordEvent {
                kind: "session_left".into(),
                mesh: Some(s.mesh.clone()),
                fields: left_fields(&s, reason),
            };
            let journal = self.journal.clone();
            actix::spawn(async move {
                match journal.send(event).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => log::error!("sessions: journaling session_left failed: {e}"),
                    Err(e) => log::warn!("sessions: journal unavailable: {e}"),
                }
            });
        }
    }

    /// One reaper sweep.
    fn reap(&mut self) {
        let now = now_ms();
        let mut dropped = Vec::new();
        for (digest, s) in &self.sessions {
            let state = self.probe.probe(s.pid);
            if let Some(reason) =
                reap_reason(state, s.process_start, s.registered_at, now, SESSION_TTL_MS)
            {
                dropped.push((digest.clone(), reason));
            }
        }
        let ended: Vec<(Session, LeaveReason)> = dropped
            .into_iter()
            .filter_map(|(d, reason)| self.sessions.remove(&d).map(|s| (s, reason)))
            .collect();
        self.ended(ended, true);
    }
}

/// The data of a `session_left` event (no token, no secret).
fn left_fields(s: &Session, reason: LeaveReason) -> Map<String, Value> {
    let v = json!({
        "session_id": s.session_id,
        "display_name": s.display_name,
        "pid": s.pid,
        "token_prefix": s.token_prefix,
        "session_pubkey": s.presence.as_ref().map(model::SessionPresence::pubkey),
        "reason": reason.as_str(),
    });
    match v {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

impl Actor for SessionRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Rehydration: the same process (pid and start time) still runs → the session comes
        // back with its keypair; anything else ended while the daemon was down.
        let now = now_ms();
        let mut ended = Vec::new();
        for s in std::mem::take(&mut self.loaded) {
            let reason = if !self.attached.contains(&s.mesh) {
                Some(LeaveReason::MeshDetached)
            } else {
                reap_reason(
                    self.probe.probe(s.pid),
                    s.process_start,
                    s.registered_at,
                    now,
                    SESSION_TTL_MS,
                )
            };
            match reason {
                Some(reason) => ended.push((s, reason)),
                None => {
                    log::info!(
                        "session {} ({}, mesh {}, pid {}) rehydrated",
                        s.session_id,
                        s.display_name,
                        s.mesh,
                        s.pid
                    );
                    self.sessions.insert(s.token_digest.clone(), s);
                }
            }
        }
        self.ended(ended, true);
        ctx.run_interval(self.reap_every, |act, _| act.reap());
    }
}

impl Handler<RegisterSession> for SessionRegistry {
    type Result = ResponseActFuture<Self, Result<Registered, SessionError>>;

    fn handle(&mut self, msg: RegisterSession, _ctx: &mut Context<Self>) -> Self::Result {
        let new = msg.session;
        let process_start = match self.probe.probe(new.pid) {
            ProcState::Running { start } => start,
            // Registered already dead: the next sweep drops it.
            ProcState::Gone => None,
        };
        let presence_status = if new.presence.is_some() {
            PresenceStatus::Pending
        } else {
            PresenceStatus::None
        };
        let session = Session {
            token_digest: new.token.digest(),
            token_prefix: new.token.prefix(),
            session_id: new.session_id,
            mesh: new.mesh,
            display_name: new.display_name,
            pid: new.pid,
            process_start,
            cwd: new.cwd,
            role: new.role,
            groups: new.groups,
            registered_at: now_ms(),
            presence: new.presence,
            presence_status,
        };
        let row = session.clone();
        let fut = self
            .db
            .send(DbTask::new(move |conn| store::upsert(conn, &row)));
        Box::pin(fut.into_actor(self).map(move |res, act, ctx| {
            res??;
            let same = |s: &Session| {
                s.token_digest == session.token_digest && s.session_id == session.session_id
            };
            let replaced: Vec<String> = act
                .sessions
                .iter()
                .filter(|(d, s)| **d == session.token_digest || s.session_id == session.session_id)
                .map(|(d, _)| d.clone())
                .collect();
            let mut ended = Vec::new();
            for d in replaced {
                if let Some(old) = act.sessions.remove(&d) {
                    if !same(&old) {
                        ended.push((old, LeaveReason::Replaced));
                    } else {
                        // The same session registering again: a fresh connection with what
                        // it registered now.
                        act.stop_link(&old);
                    }
                }
            }
            // The rows were replaced in the same transaction as the insert.
            act.ended(ended, false);
            log::info!(
                "session {} ({}, mesh {}, pid {}, token {}…) registered; presence: {}",
                session.session_id,
                session.display_name,
                session.mesh,
                session.pid,
                session.token_prefix,
                session.presence_status.as_str()
            );
            let answer = Registered {
                registered_at: session.registered_at,
                presence_accepted: session.presence.is_some(),
            };
            let digest = session.token_digest.clone();
            act.sessions.insert(digest.clone(), session);
            act.start_link(ctx, &digest, false);
            Ok(answer)
        }))
    }
}

impl Handler<EndSession> for SessionRegistry {
    type Result = ResponseActFuture<Self, Result<Option<String>, SessionError>>;

    fn handle(&mut self, msg: EndSession, _ctx: &mut Context<Self>) -> Self::Result {
        let digest = msg.token.digest();
        if !self.sessions.contains_key(&digest) {
            return Box::pin(actix::fut::ready(Ok(None)));
        }
        let d = vec![digest.clone()];
        let fut = self
            .db
            .send(DbTask::new(move |conn| store::delete(conn, &d)));
        Box::pin(fut.into_actor(self).map(move |res, act, _ctx| {
            res??;
            let Some(s) = act.sessions.remove(&digest) else {
                return Ok(None);
            };
            let prefix = s.token_prefix.clone();
            act.ended(vec![(s, LeaveReason::Deregistered)], false);
            Ok(Some(prefix))
        }))
    }
}

impl Handler<ResolveSession> for SessionRegistry {
    type Result = Option<model::SessionView>;

    fn handle(&mut self, msg: ResolveSession, _ctx: &mut Context<Self>) -> Self::Result {
        self.sessions.get(&msg.token.digest()).map(Session::view)
    }
}

impl Handler<ListSessions> for SessionRegistry {
    type Result = Vec<model::SessionView>;

    fn handle(&mut self, _msg: ListSessions, _ctx: &mut Context<Self>) -> Self::Result {
        let mut all: Vec<model::SessionView> = self.sessions.values().map(Session::view).collect();
        all.sort_by(|a, b| (a.registered_at, &a.session_id).cmp(&(b.registered_at, &b.session_id)));
        all
    }
}

impl Handler<CloseSessions> for SessionRegistry {
    type Result = ResponseFuture<()>;

    /// Stops the reaper and closes every session connection with 1000, answering once the
    /// sockets are gone (bounded by the connections' close grace).
    fn handle(&mut self, _msg: CloseSessions, ctx: &mut Context<Self>) -> Self::Result {
        let links = self.close_links();
        ctx.stop();
        Box::pin(async move {
            futures_util::future::join_all(
                links.iter().map(|l| l.send(crate::broker::msg::CloseLink)),
            )
            .await;
        })
    }
}

impl Handler<ReapSessions> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, _msg: ReapSessions, _ctx: &mut Context<Self>) {
        self.reap();
    }
}

#[cfg(test)]
mod tests;
