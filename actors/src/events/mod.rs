//! EventHub: fans journaled events out to SSE subscribers.
//!
//! Accepts [`Publish`] (from the InboxStore, after an event is journaled, so every event
//! already has its durable id), [`Subscribe`] and [`Unsubscribe`] (from the IPC layer), and
//! [`CountStreams`]. Each subscriber owns a bounded channel; a subscriber whose channel is full
//! is dropped at once (its stream ends and it can resume by id), so one slow reader never
//! slows the others or grows memory without bound.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::mpsc;

use crate::inbox::store::{Scope, StoredEvent};

/// Which events a subscriber wants (`?kinds=`, `?mesh=`, and a session's scope).
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Wanted kinds; empty = all.
    pub kinds: HashSet<String>,
    /// Wanted mesh slug; `None` = all.
    pub mesh: Option<String>,
    /// A session's view (SPEC §12): events of its mesh only, and of the `message` events only
    /// those not addressed to another session. `None` = the operator's view.
    pub scope: Option<Scope>,
}

impl EventFilter {
    /// True when `event` passes the filter. `reset` markers always pass.
    pub fn matches(&self, event: &StoredEvent) -> bool {
        let kind_ok = self.kinds.is_empty() || self.kinds.contains(&event.kind);
        let mesh_ok = match (&self.mesh, &event.mesh) {
            (None, _) => true,
            (Some(want), Some(got)) => want == got,
            (Some(_), None) => false,
        };
        kind_ok && mesh_ok && self.scope.as_ref().is_none_or(|s| in_scope(s, event))
    }
}

/// The session rule for one event: its mesh, and for a `message` addressed to a session, that
/// session. The recipient is read from the event's data (`recipient_kind`,
/// `recipient_pubkey`), where the InboxStore put it when it journaled the message.
fn in_scope(scope: &Scope, event: &StoredEvent) -> bool {
    if event.mesh.as_deref() != Some(scope.mesh.as_str()) {
        return false;
    }
    if event.kind != "message" {
        return true;
    }
    #[derive(serde::Deserialize)]
    struct Recipient {
        recipient_kind: Option<String>,
        recipient_pubkey: Option<String>,
    }
    let Ok(r) = serde_json::from_str::<Recipient>(&event.data) else {
        return false;
    };
    match r.recipient_kind.as_deref() {
        Some("session") => {
            scope.session_pubkey.is_some() && r.recipient_pubkey == scope.session_pubkey
        }
        // `member`, or journaled before recipients were recorded: the member's.
        _ => true,
    }
}

/// Notification: a journaled event to deliver live.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Publish {
    pub event: Arc<StoredEvent>,
}

/// A live subscription: events arrive on `rx` until the hub drops it.
#[derive(Debug)]
pub struct Subscription {
    /// Key for [`Unsubscribe`].
    pub id: u64,
    /// Live events, in journal order.
    pub rx: mpsc::Receiver<Arc<StoredEvent>>,
}

/// The stream cap is reached.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("too many event streams (max {max})")]
pub struct TooManyStreams {
    pub max: usize,
}

/// Command: open a subscription.
#[derive(Message, Debug)]
#[rtype(result = "Result<Subscription, TooManyStreams>")]
pub struct Subscribe {
    pub filter: EventFilter,
}

/// Command: close a subscription (its stream ended).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Unsubscribe {
    pub id: u64,
}

/// Query: open streams.
#[derive(Message, Debug)]
#[rtype(result = "usize")]
pub struct CountStreams;

/// Command: end every stream (shutdown).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct CloseStreams;

struct Subscriber {
    filter: EventFilter,
    tx: mpsc::Sender<Arc<StoredEvent>>,
}

/// The hub actor. State: the live subscribers; nothing durable (the journal is the InboxStore's).
pub struct EventHub {
    /// Open subscriptions by id.
    subscribers: HashMap<u64, Subscriber>,
    /// Next subscription id.
    next_id: u64,
    /// `ipc.max_sse_streams`.
    max_streams: usize,
    /// Per-subscriber buffer; a full buffer drops the subscriber.
    buffer: usize,
    /// Subscribers dropped for being slow (metrics).
    dropped_slow: u64,
    /// False after [`CloseStreams`]: new subscriptions are refused.
    open: bool,
}

impl EventHub {
    /// A hub allowing `max_streams` subscribers with `buffer` queued events each.
    pub fn new(max_streams: usize, buffer: usize) -> Self {
        EventHub {
            subscribers: HashMap::new(),
            next_id: 1,
            max_streams,
            buffer: buffer.max(1),
            dropped_slow: 0,
            open: true,
        }
    }
}

impl Actor for EventHub {
    type Context = Context<Self>;
}

impl Handler<Publish> for EventHub {
    type Result = ();

    fn handle(&mut self, msg: Publish, _ctx: &mut Context<Self>) {
        let mut dead = Vec::new();
        for (id, sub) in &self.subscribers {
            if !sub.filter.matches(&msg.event) {
                continue;
            }
            match sub.tx.try_send(msg.event.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    log::warn!("sse subscriber {id} too slow; dropped (it can resume by id)");
                    self.dropped_slow += 1;
                    dead.push(*id);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => dead.push(*id),
            }
        }
        for id in dead {
            self.subscribers.remove(&id);
        }
    }
}

impl Handler<Subscribe> for EventHub {
    type Result = Result<Subscription, TooManyStreams>;

    fn handle(&mut self, msg: Subscribe, _ctx: &mut Context<Self>) -> Self::Result {
        self.subscribers.retain(|_, s| !s.tx.is_closed());
        if !self.open || self.subscribers.len() >= self.max_streams {
            return Err(TooManyStreams {
                max: self.max_streams,
            });
        }
        let (tx, rx) = mpsc::channel(self.buffer);
        let id = self.next_id;
        self.next_id += 1;
        self.subscribers.insert(
            id,
            Subscriber {
                filter: msg.filter,
                tx,
            },
        );
        Ok(Subscription { id, rx })
    }
}

impl Handler<Unsubscribe> for EventHub {
    type Result = ();

    fn handle(&mut self, msg: Unsubscribe, _ctx: &mut Context<Self>) {
        self.subscribers.remove(&msg.id);
    }
}

impl Handler<CountStreams> for EventHub {
    type Result = usize;

    fn handle(&mut self, _msg: CountStreams, _ctx: &mut Context<Self>) -> usize {
        self.subscribers.retain(|_, s| !s.tx.is_closed());
        self.subscribers.len()
    }
}

impl Handler<CloseStreams> for EventHub {
    type Result = ();

    fn handle(&mut self, _msg: CloseStreams, _ctx: &mut Context<Self>) {
        self.open = false;
        self.subscribers.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: i64, kind: &str, mesh: &str) -> Arc<StoredEvent> {
        Arc::new(StoredEvent {
            id,
            kind: kind.into(),
            mesh: Some(mesh.into()),
            data: "{}".into(),
        })
    }

    #[actix::test]
    async fn slow_subscriber_is_dropped_without_blocking_others() {
        let hub = EventHub::new(4, 2).start();
        let mut slow = hub
            .send(Subscribe {
                filter: EventFilter::default(),
            })
            .await
            .unwrap()
            .unwrap();
        let mut fast = hub
            .send(Subscribe {
                filter: EventFilter::default(),
            })
            .await
            .unwrap()
            .unwrap();
        for i in 1..=3 {
            hub.send(Publish {
                event: ev(i, "message", "m"),
            })
            .await
            .unwrap();
            assert_eq!(fast.rx.recv().await.unwrap().id, i);
        }
        // slow got 2 buffered, then was dropped on the third.
        assert_eq!(slow.rx.recv().await.unwrap().id, 1);
        assert_eq!(slow.rx.recv().await.unwrap().id, 2);
        assert!(slow.rx.recv().await.is_none());
        assert_eq!(hub.send(CountStreams).await.unwrap(), 1);
    }

    #[actix::test]
    async fn stream_cap_and_filters() {
        let hub = EventHub::new(1, 8).start();
        let filter = EventFilter {
            kinds: ["peer_join".to_string()].into_iter().collect(),
            mesh: Some("a".into()),
            scope: None,
        };
        let mut sub = hub.send(Subscribe { filter }).await.unwrap().unwrap();
        assert!(hub
            .send(Subscribe {
                filter: EventFilter::default()
            })
            .await
            .unwrap()
            .is_err());
        hub.send(Publish {
            event: ev(1, "message", "a"),
        })
        .await
        .unwrap();
        hub.send(Publish {
            event: ev(2, "peer_join", "b"),
        })
        .await
        .unwrap();
        hub.send(Publish {
            event: ev(3, "peer_join", "a"),
        })
        .await
        .unwrap();
        assert_eq!(sub.rx.recv().await.unwrap().id, 3);
        hub.send(Unsubscribe { id: sub.id }).await.unwrap();
        assert_eq!(hub.send(CountStreams).await.unwrap(), 0);
    }

    #[actix::test]
    async fn a_scoped_subscriber_gets_only_its_own_live_messages() {
        let hub = EventHub::new(4, 8).start();
        let scope = |pk: &str| EventFilter {
            scope: Some(Scope {
                mesh: "m".into(),
                session_pubkey: Some(pk.repeat(64)),
            }),
            ..EventFilter::default()
        };
        let mut a = hub
            .send(Subscribe { filter: scope("a") })
            .await
            .unwrap()
            .unwrap();
        let mut operator = hub
            .send(Subscribe {
                filter: EventFilter::default(),
            })
            .await
            .unwrap()
            .unwrap();
        for (id, pk) in [(1, "b"), (2, "a")] {
            let data = format!(
                r#"{{"kind":"message","recipient_kind":"session","recipient_pubkey":"{}"}}"#,
                pk.repeat(64)
            );
            hub.send(Publish {
                event: Arc::new(StoredEvent {
                    id,
                    kind: "message".into(),
                    mesh: Some("m".into()),
                    data,
                }),
            })
            .await
            .unwrap();
        }
        assert_eq!(a.rx.recv().await.unwrap().id, 2);
        assert_eq!(operator.rx.recv().await.unwrap().id, 1);
        assert_eq!(operator.rx.recv().await.unwrap().id, 2);
        assert!(a.rx.try_recv().is_err());
    }

    #[test]
    fn a_session_scope_admits_its_mesh_and_its_own_messages_only() {
        let message = |mesh: &str, data: &str| StoredEvent {
            id: 1,
            kind: "message".into(),
            mesh: Some(mesh.into()),
            data: data.into(),
        };
        let a = "a".repeat(64);
        let filter = EventFilter {
            scope: Some(Scope {
                mesh: "m".into(),
                session_pubkey: Some(a.clone()),
            }),
            ..EventFilter::default()
        };
        let to = |kind: &str, pk: &str| {
            format!(r#"{{"kind":"message","recipient_kind":"{kind}","recipient_pubkey":"{pk}"}}"#)
        };
        assert!(filter.matches(&message("m", &to("session", &a))));
        assert!(!filter.matches(&message("m", &to("session", &"b".repeat(64)))));
        assert!(filter.matches(&message("m", &to("member", "x"))));
        assert!(filter.matches(&message("m", r#"{"kind":"message"}"#)));
        assert!(!filter.matches(&message("other", &to("member", "x"))));
        assert!(filter.matches(&ev(2, "peer_join", "m")));
        assert!(!filter.matches(&ev(3, "peer_join", "other")));
        let no_key = EventFilter {
            scope: Some(Scope {
                mesh: "m".into(),
                session_pubkey: None,
            }),
            ..EventFilter::default()
        };
        assert!(!no_key.matches(&message("m", &to("session", &a))));
        assert!(EventFilter::default().matches(&message("x", &to("session", &a))));
    }
}
