//! Rows sent by a session, against a real `outbox.db` and two recording links (the member's
//! and the session's): held while the session connection is down, sent over it sealed with the
//! session key once it opens, through the member (member key) once the session has ended or
//! when the broker does not serve `session_hello`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;

use super::super::LinkRecipients;
use super::*;
use crate::broker::msg::{DeliveryOutcome, LinkEvent, Resolution, ResolvePeer};
use crate::inbox::msg::{InboxActorError, RecordEvent};
use crate::inbox::store::StoredEvent;
use crate::metrics::Metrics;
use crate::outbox::db::{DbTask, OutboxDb};
use crate::outbox::store::{self, Durability, NewSend, Status};
use crate::settings::OutboxTuning;

type Sent = Arc<Mutex<Vec<(String, String, String)>>>;

/// Records `(id, nonce, ciphertext)` of every send and acks it `queued:true`.
#[derive(Default)]
struct Recorder(Sent);

impl Actor for Recorder {
    type Context = Context<Self>;
}

impl Handler<DeliverSend> for Recorder {
    type Result = MessageResult<DeliverSend>;

    fn handle(&mut self, msg: DeliverSend, _ctx: &mut Context<Self>) -> Self::Result {
        let s = msg.send;
        self.0
            .lock()
            .unwrap()
            .push((s.client_message_id.clone(), s.nonce, s.ciphertext));
        MessageResult(DeliveryOutcome::Acked {
            queued: true,
            message_id: format!("bm-{}", s.client_message_id),
            error: None,
            duplicate: false,
        })
    }
}

impl Handler<ResolvePeer> for Recorder {
    type Result = MessageResult<ResolvePeer>;

    fn handle(&mut self, _msg: ResolvePeer, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(Resolution::Unavailable)
    }
}

impl Handler<RecordEvent> for Recorder {
    type Result = Result<StoredEvent, InboxActorError>;

    fn handle(&mut self, msg: RecordEvent, _ctx: &mut Context<Self>) -> Self::Result {
        Ok(StoredEvent {
            id: 0,
            kind: msg.kind,
            mesh: msg.mesh,
            data: String::new(),
        })
    }
}

/// A drainer (not started) over the outbox `conn`, with mesh `m1`'s member link and the
/// session links recording what they are handed.
struct Rig {
    db: Addr<OutboxDb>,
    drainer: OutboxDrainer,
    member_sent: Sent,
    session_sent: Sent,
    session_link: Addr<Recorder>,
}

fn rig(conn: rusqlite::Connection, member: MemberKeys) -> Rig {
    let db = OutboxDb::start_in_arbiter(&Arbiter::new().handle(), move |_| OutboxDb::new(conn));
    let (member_sent, session_sent) = (Sent::default(), Sent::default());
    let member_link = Recorder(member_sent.clone()).start();
    let session_link = Recorder(session_sent.clone()).start();
    let drainer = OutboxDrainer::with_links(
        db.clone(),
        vec![(
            "m1".into(),
            member,
            LinkRecipients {
                deliver: member_link.clone().recipient(),
                resolve: member_link.clone().recipient(),
            },
        )],
        OutboxTuning::default(),
        member_link.recipient(),
        Arc::new(Metrics::default()),
    );
    Rig {
        db,
        drainer,
        member_sent,
        session_sent,
        session_link,
    }
}

fn dm(id: &str, i: u8, to: &str, session: Option<&str>) -> NewSend {
    NewSend {
        client_message_id: Some(id.into()),
        fingerprint: [i; 32],
        mesh: "m1".into(),
        to: to.into(),
        target: Some(to.into()),
        priority: "next".into(),
        meta: None,
        reply_to_id: None,
        payload: id.as_bytes().to_vec(),
        session_pubkey: session.map(str::to_string),
    }
}

async fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..250 {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

fn ids(sent: &Sent) -> Vec<String> {
    sent.lock().unwrap().iter().map(|s| s.0.clone()).collect()
}

/// Opens what `sent` recorded for `id` with `recipient`, as sent by `sender`.
fn opens(sent: &Sent, id: &str, recipient: &MemberKeys, sender: &str) -> bool {
    let all = sent.lock().unwrap();
    let Some((_, nonce, ct)) = all.iter().find(|s| s.0 == id) else {
        return false;
    };
    crate::crypto::open_dm(recipient, sender, nonce, ct).is_ok_and(|b| b == id.as_bytes())
}

async fn status_of(db: &Addr<OutboxDb>, id: &str) -> Status {
    let id = id.to_string();
    db.send(DbTask::new(|conn| store::list(conn, None, 100)))
        .await
        .unwrap()
        .unwrap()
        .into_iter()
        .find(|r| r.client_message_id == id)
        .map(|r| r.status)
        .unwrap()
}

#[actix::test]
async fn a_session_row_waits_for_its_connection_then_goes_over_it_or_through_the_member() {
    let (member, session, peer, peer2) = (
        MemberKeys::generate(),
        MemberKeys::generate(),
        MemberKeys::generate(),
        MemberKeys::generate(),
    );
    let (p, p2, s) = (peer.pubkey_hex(), peer2.pubkey_hex(), session.pubkey_hex());
    let dir = tempfile::tempdir().unwrap();
    let mut conn = store::open(&dir.path().join("outbox.db"), Durability::Normal, false).unwrap();
    let now = crate::time::now_ms();
    // A session row to P, then the member's row to P: the member's waits behind it (FIFO).
    // The member's row to P2 is free to go.
    for (i, send) in [
        dm("s-p", 1, &p, Some(&s)),
        dm("m-p", 2, &p, None),
        dm("m-p2", 3, &p2, None),
    ]
    .iter()
    .enumerate()
    {
        store::accept_batch(&mut conn, std::slice::from_ref(send), now + i as i64).unwrap();
    }
    let Rig {
        db,
        drainer,
        member_sent,
        session_sent,
        session_link,
    } = rig(conn, member.clone());
    let drainer = drainer.start();
    drainer.do_send(SessionLinkAdded {
        mesh: "m1".into(),
        keys: session.clone(),
        deliver: session_link.clone().recipient(),
    });
    drainer.do_send(LinkEvent::Up { mesh: "m1".into() });

    // The session connection is not open: its row and everything behind it to P waits.
    assert!(wait_for(|| ids(&member_sent) == ["m-p2"]).await);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(ids(&member_sent), ["m-p2"]);
    assert!(ids(&session_sent).is_empty());
    assert_eq!(status_of(&db, "s-p").await, Status::Pending);

    // It opens: the row goes over it, sealed by the session key; then the member's row.
    drainer.do_send(LinkEvent::Session(PresenceUpdate {
        mesh: "m1".into(),
        session_pubkey: s.clone(),
        state: PresenceState::Open,
    }));
    assert!(wait_for(|| ids(&member_sent).len() == 2).await);
    assert_eq!(ids(&session_sent), ["s-p"]);
    assert!(
        opens(&session_sent, "s-p", &peer, &s),
        "sealed by the session key"
    );
    assert_eq!(ids(&member_sent), ["m-p2", "m-p"]);
    assert!(opens(&member_sent, "m-p", &peer, &member.pubkey_hex()));

    // The session ends: a row it sent that has not drained goes through the member.
    let dir2 = db
        .send(DbTask::new({
            let (p, s) = (p.clone(), s.clone());
            move |conn| {
                store::accept_batch(conn, &[dm("s-late", 4, &p, Some(&s))], now + 10)?;
                Ok(())
            }
        }))
        .await;
    assert!(matches!(dir2, Ok(Ok(()))));
    drainer.do_send(LinkEvent::Session(PresenceUpdate {
        mesh: "m1".into(),
        session_pubkey: s.clone(),
        state: PresenceState::Down,
    }));
    drainer.do_send(SessionLinkRemoved {
        mesh: "m1".into(),
        session_pubkey: s.clone(),
    });
    assert!(wait_for(|| ids(&member_sent).len() == 3).await);
    assert_eq!(ids(&member_sent)[2], "s-late");
    assert!(opens(&member_sent, "s-late", &peer, &member.pubkey_hex()));
    assert_eq!(ids(&session_sent), ["s-p"]);
}

#[actix::test]
async fn an_unsupported_session_sends_through_the_member_at_once() {
    let (member, session, peer) = (
        MemberKeys::generate(),
        MemberKeys::generate(),
        MemberKeys::generate(),
    );
    let (p, s) = (peer.pubkey_hex(), session.pubkey_hex());
    let dir = tempfile::tempdir().unwrap();
    let mut conn = store::open(&dir.path().join("outbox.db"), Durability::Normal, false).unwrap();
    store::accept_batch(
        &mut conn,
        &[dm("s-p", 1, &p, Some(&s))],
        crate::time::now_ms(),
    )
    .unwrap();
    let Rig {
        db,
        drainer,
        member_sent,
        session_sent,
        session_link,
    } = rig(conn, member.clone());
    let drainer = drainer.start();
    drainer.do_send(SessionLinkAdded {
        mesh: "m1".into(),
        keys: session,
        deliver: session_link.clone().recipient(),
    });
    drainer.do_send(LinkEvent::Up { mesh: "m1".into() });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(ids(&member_sent).is_empty(), "held while pending");
    drainer.do_send(LinkEvent::Session(PresenceUpdate {
        mesh: "m1".into(),
        session_pubkey: s,
        state: PresenceState::Unsupported,
    }));
    assert!(wait_for(|| ids(&member_sent) == ["s-p"]).await);
    assert!(opens(&member_sent, "s-p", &peer, &member.pubkey_hex()));
    assert!(ids(&session_sent).is_empty());
    assert_eq!(status_of(&db, "s-p").await, Status::Done);
}

/// At start a session's row waits for the registry: before [`SessionLinksReady`] it cannot be
/// told whether the session still lives, and must not slip out through the member.
#[actix::test]
async fn nothing_is_claimed_before_the_registry_has_announced_the_live_sessions() {
    let (member, session, peer) = (
        MemberKeys::generate(),
        MemberKeys::generate(),
        MemberKeys::generate(),
    );
    let (p, s) = (peer.pubkey_hex(), session.pubkey_hex());
    let dir = tempfile::tempdir().unwrap();
    let mut conn = store::open(&dir.path().join("outbox.db"), Durability::Normal, false).unwrap();
    store::accept_batch(
        &mut conn,
        &[dm("s-p", 1, &p, Some(&s))],
        crate::time::now_ms(),
    )
    .unwrap();
    let Rig {
        db: _,
        mut drainer,
        member_sent,
        session_sent,
        session_link,
    } = rig(conn, member);
    drainer.session_routes.ready = false;
    let drainer = drainer.start();
    drainer.do_send(LinkEvent::Up { mesh: "m1".into() });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        ids(&member_sent).is_empty(),
        "claimed before the registry spoke"
    );
    // The registry announces the rehydrated session, then readiness; its connection opens.
    drainer.do_send(SessionLinkAdded {
        mesh: "m1".into(),
        keys: session,
        deliver: session_link.clone().recipient(),
    });
    drainer.do_send(SessionLinksReady);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        ids(&member_sent).is_empty(),
        "held while its connection is down"
    );
    drainer.do_send(LinkEvent::Session(PresenceUpdate {
        mesh: "m1".into(),
        session_pubkey: s.clone(),
        state: PresenceState::Open,
    }));
    assert!(wait_for(|| ids(&session_sent) == ["s-p"]).await);
    assert!(opens(&session_sent, "s-p", &peer, &s));
    assert!(ids(&member_sent).is_empty());
}
