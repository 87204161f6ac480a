//! Actor tests of the drainer against a real `outbox.db` on its own arbiter and a stand-in
//! link that records what it is asked to send.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;

use super::*;
use crate::broker::msg::{DeliveryOutcome, LinkEvent, Resolution};
use crate::inbox::msg::InboxActorError;
use crate::inbox::store::StoredEvent;
use crate::outbox::store::{Durability, NewSend, Status};

/// Records every row id it is asked to deliver and acks it `queued:true`, except the first
/// delivery of each id in `refuse_once` (acked "no connected peer": offline backoff).
/// Resolves every name to `resolve_to` when set.
/// The first delivery of each id in `fail_once` is answered with a counted error, 300 ms
/// late (after the acks of the rows sent behind it).
/// With `ack_after_ms`, every ack waits that long, and `wire` records the most rows out at
/// once, per destination and in all.
#[derive(Default)]
struct FakeLink {
    delivered: Arc<Mutex<Vec<String>>>,
    refuse_once: Vec<String>,
    fail_once: Vec<String>,
    resolve_to: Option<String>,
    ack_after_ms: u64,
    wire: Arc<Mutex<Wire>>,
}

/// Rows out at once (delivered, not yet answered), now and at most.
#[derive(Default, Debug)]
struct Wire {
    now: HashMap<String, usize>,
    most_per_dest: usize,
    most: usize,
}

impl Wire {
    fn out(&mut self, dest: &str) {
        *self.now.entry(dest.to_string()).or_default() += 1;
        self.most_per_dest = self.most_per_dest.max(self.now[dest]);
        self.most = self.most.max(self.now.values().sum());
    }

    fn back(&mut self, dest: &str) {
        if let Some(n) = self.now.get_mut(dest) {
            *n -= 1;
        }
    }
}

impl Actor for FakeLink {
    type Context = Context<Self>;
}

impl Handler<DeliverSend> for FakeLink {
    type Result = ResponseFuture<DeliveryOutcome>;

    fn handle(&mut self, msg: DeliverSend, _ctx: &mut Context<Self>) -> Self::Result {
        let id = msg.send.client_message_id;
        self.delivered.lock().unwrap().push(id.clone());
        if self.ack_after_ms > 0 {
            let (wire, dest, ms) = (self.wire.clone(), msg.send.target_spec, self.ack_after_ms);
            wire.lock().unwrap().out(&dest);
            let fails = self
                .fail_once
                .iter()
                .position(|r| *r == id)
                .map(|i| self.fail_once.remove(i));
            return Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                wire.lock().unwrap().back(&dest);
                DeliveryOutcome::Acked {
                    queued: fails.is_none(),
                    message_id: format!("bm-{id}"),
                    error: fails.map(|_| "internal error".to_string()),
                    duplicate: false,
                }
            });
        }
        if let Some(i) = self.refuse_once.iter().position(|r| *r == id) {
            self.refuse_once.remove(i);
            return Box::pin(async {
                DeliveryOutcome::Acked {
                    queued: false,
                    message_id: String::new(),
                    error: Some("no connected peer for target".into()),
                    duplicate: false,
                }
            });
        }
        if let Some(i) = self.fail_once.iter().position(|r| *r == id) {
            self.fail_once.remove(i);
            return Box::pin(async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                DeliveryOutcome::Acked {
                    queued: false,
                    message_id: String::new(),
                    error: Some("internal error".into()),
                    duplicate: false,
                }
            });
        }
        Box::pin(async move {
            DeliveryOutcome::Acked {
                queued: true,
                message_id: format!("bm-{id}"),
                error: None,
                duplicate: false,
            }
        })
    }
}

impl Handler<ResolvePeer> for FakeLink {
    type Result = MessageResult<ResolvePeer>;

    fn handle(&mut self, _msg: ResolvePeer, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(match &self.resolve_to {
            Some(pubkey) => Resolution::Found {
                pubkey: pubkey.clone(),
            },
            None => Resolution::Unavailable,
        })
    }
}

impl Handler<RecordEvent> for FakeLink {
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

struct Rig {
    _dir: tempfile::TempDir,
    db: Addr<OutboxDb>,
    drainer: Addr<OutboxDrainer>,
    delivered: Arc<Mutex<Vec<String>>>,
}

/// A drainer for mesh `m1` over a database holding broadcast rows `ids`, link down.
fn rig(ids: &[&str]) -> Rig {
    rig_with(ids, OutboxTuning::default())
}

fn rig_with(ids: &[&str], tuning: OutboxTuning) -> Rig {
    let sends: Vec<NewSend> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| topic_send(id, i, &format!("#t{i}"), Some(&format!("#t{i}"))))
        .collect();
    rig_of(&sends, tuning, FakeLink::default())
}

fn topic_send(id: &str, i: usize, to: &str, target: Option<&str>) -> NewSend {
    NewSend {
        session_pubkey: None,
        client_message_id: Some(id.to_string()),
        fingerprint: [i as u8; 32],
        mesh: "m1".into(),
        to: to.into(),
        target: target.map(str::to_string),
        priority: "next".into(),
        meta: None,
        reply_to_id: None,
        payload: b"hi".to_vec(),
    }
}

/// One send per id, all to topic `#t`, in order.
fn to_one_topic(ids: &[String]) -> Vec<NewSend> {
    ids.iter()
        .enumerate()
        .map(|(i, id)| topic_send(id, i, "#t", Some("#t")))
        .collect()
}

/// A drainer over a database holding `sends` (accepted one by one, in order), link down.
fn rig_of(sends: &[NewSend], tuning: OutboxTuning, link: FakeLink) -> Rig {
    rig_built(sends, tuning, link, |_| {})
}

/// Holds the database thread busy for `ms`, so work sent after this lands later.
fn stall_db(db: &Addr<OutboxDb>, ms: u64) {
    db.do_send(DbTask::new(move |_| {
        std::thread::sleep(Duration::from_millis(ms));
        Ok(())
    }));
}

async fn statuses(db: &Addr<OutboxDb>) -> Vec<Status> {
    db.send(DbTask::new(|conn| store::list(conn, None, 100)))
        .await
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|r| r.status)
        .collect()
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

#[actix::test]
async fn a_link_coming_up_drains_every_due_row_to_it() {
    let r = rig(&["a", "b"]);
    r.drainer.do_send(LinkEvent::Up { mesh: "m1".into() });
    assert!(wait_for(|| r.delivered.lock().unwrap().len() == 2).await);
    assert!(wait_for_all_done(&r.db, 2).await);
}

/// Issue 13 item 4: a claim that completes after `StopDraining` must not be dispatched (the
/// row could reach the broker just before the close frame and be sent again after restart).
#[actix::test]
async fn claims_landing_after_stop_draining_are_not_sent_and_stay_pending() {
    let r = rig(&["a", "b"]);
    // The claim the link-up starts queues behind a stalled database, so it lands after the
    // stop whatever the scheduling.
    stall_db(&r.db, 300);
    r.drainer.do_send(LinkEvent::Up { mesh: "m1".into() });
    r.drainer.send(StopDraining).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        r.delivered.lock().unwrap().is_empty(),
        "sent after the stop"
    );
    assert_eq!(statuses(&r.db).await, [Status::Pending, Status::Pending]);
}

/// Issue 13 item 2: hours → ms of a huge `max_age_hours` overflowed (wrapping in release,
/// so the expiry cutoff landed in the future and every pending row went dead; panicking in
/// debug). Whatever the tuning holds, housekeeping must not kill fresh rows.
#[actix::test]
async fn a_huge_max_age_expires_nothing_and_rows_are_still_delivered() {
    for hours in [3_000_000_000_000, u64::MAX] {
        let tuning = OutboxTuning {
            max_age_hours: hours,
            payload_retention_days: u32::MAX,
            ..OutboxTuning::default()
        };
        let r = rig_with(&["a"], tuning);
        // Housekeeping runs when the drainer starts; give it time to act.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(statuses(&r.db).await, [Status::Pending], "hours = {hours}");
        r.drainer.do_send(LinkEvent::Up { mesh: "m1".into() });
        assert!(wait_for(|| r.delivered.lock().unwrap().len() == 1).await);
    }
}

/// Issue 13 item 1 through the drainer: A, sent to P's full key, is refused once (offline)
/// and backs off; B, sent later to the name "bob", is claimed under its own key meanwhile and
/// resolves to P. B must wait behind A: the broker sees A, A again, then B — never B first.
#[actix::test]
async fn a_name_resolved_at_drain_time_does_not_overtake_an_older_row_to_its_target() {
    let p = MemberKeys::generate().pubkey_hex();
    let sends = [
        topic_send("a", 0, &p, Some(&p)),
        topic_send("b", 1, "bob", None),
    ];
    let link = FakeLink {
        refuse_once: vec!["a".into()],
        resolve_to: Some(p.clone()),
        ..FakeLink::default()
    };
    let r = rig_of(&sends, OutboxTuning::default(), link);
    r.drainer.do_send(LinkEvent::Up { mesh: "m1".into() });
    assert!(wait_for(|| r.delivered.lock().unwrap().len() == 3).await);
    assert_eq!(*r.delivered.lock().unwrap(), ["a", "a", "b"]);
    let rows =
        r.db.send(DbTask::new(|conn| store::list(conn, None, 10)))
            .await
            .unwrap()
            .unwrap();
    let b = rows
        .iter()
        .find(|row| row.client_message_id == "b")
        .unwrap();
    assert_eq!(b.attempts, 0, "waiting behind A is not an attempt");
}

/// Issue 10 item 3: ten rows to one destination go out back to back. Row 3 fails, and its
/// answer comes back after the `queued:true` acks of rows 4–9 (the broker had queued them).
/// Those rows must not be recorded done ahead of row 3: they go back to pending (not
/// counted) and are sent again after row 3's retry, in order. Rows are done in FIFO order.
#[actix::test]
async fn a_failed_row_sends_the_rows_behind_it_again_after_its_retry_in_order() {
    let ids: Vec<String> = (0..10).map(|i| format!("r{i}")).collect();
    let sends = to_one_topic(&ids);
    let link = FakeLink {
        fail_once: vec!["r3".into()],
        ..FakeLink::default()
    };
    let tuning = OutboxTuning {
        destination_window: 32,
        ..OutboxTuning::default()
    };
    let r = rig_of(&sends, tuning, link);
    r.drainer.do_send(LinkEvent::Up { mesh: "m1".into() });
    assert!(wait_for(|| r.delivered.lock().unwrap().len() == 17).await);
    let mut expected: Vec<String> = ids.clone();
    expected.extend(ids[3..].iter().cloned());
    assert_eq!(*r.delivered.lock().unwrap(), expected);
    let mut rows = Vec::new();
    for _ in 0..250 {
        rows =
            r.db.send(DbTask::new(|conn| store::list(conn, None, 100)))
                .await
                .unwrap()
                .unwrap();
        if rows.iter().all(|row| row.status == Status::Done) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rows.sort_by_key(|row| row.id);
    assert!(
        rows.iter().all(|row| row.status == Status::Done),
        "{rows:?}"
    );
    let attempts: Vec<i64> = rows.iter().map(|row| row.attempts).collect();
    assert_eq!(
        attempts,
        [0, 0, 0, 1, 0, 0, 0, 0, 0, 0],
        "only row 3 failed"
    );
    let done_at: Vec<i64> = rows.iter().map(|row| row.delivered_at.unwrap()).collect();
    assert!(
        done_at.windows(2).all(|w| w[0] <= w[1]),
        "done in FIFO order: {done_at:?}"
    );
    assert!(done_at[4] >= done_at[3], "row 4 is not done before row 3");
    assert_eq!(
        rows[4].last_error.as_deref(),
        Some(crate::outbox::outcome::BEHIND_FAILURE_ERROR)
    );
}

/// Claim-ahead: a claim takes several rows of a destination, but the broker sees at most
/// `destination_window` of them out at once and at most `window` over the mesh; every
/// destination's rows arrive in FIFO order, each once, and all end `done`.
#[actix::test]
async fn rows_claimed_ahead_go_out_one_per_destination_within_the_mesh_window() {
    let (dests, per_dest) = (6, 10);
    let sends: Vec<NewSend> = (0..per_dest)
        .flat_map(|i| (0..dests).map(move |d| (d, i)))
        .enumerate()
        .map(|(n, (d, i))| {
            topic_send(
                &format!("d{d}-{i:02}"),
                n,
                &format!("#t{d}"),
                Some(&format!("#t{d}")),
            )
        })
        .collect();
    let link = FakeLink {
        ack_after_ms: 5,
        ..FakeLink::default()
    };
    let wire = link.wire.clone();
    let tuning = OutboxTuning {
        window: 4,
        destination_window: 1,
        ..OutboxTuning::default()
    };
    let r = rig_of(&sends, tuning, link);
    r.drainer.do_send(LinkEvent::Up { mesh: "m1".into() });
    assert!(wait_for(|| r.delivered.lock().unwrap().len() == dests * per_dest).await);
    let delivered = r.delivered.lock().unwrap().clone();
    for d in 0..dests {
        let mine: Vec<&String> = delivered
            .iter()
            .filter(|id| id.starts_with(&format!("d{d}-")))
            .collect();
        let expected: Vec<String> = (0..per_dest).map(|i| format!("d{d}-{i:02}")).collect();
        assert_eq!(
            mine,
            expected.iter().collect::<Vec<_>>(),
            "destination {d}: FIFO, once each"
        );
    }
    let (per_dest_most, most) = {
        let wire = wire.lock().unwrap();
        (wire.most_per_dest, wire.most)
    };
    assert_eq!(per_dest_most, 1);
    assert!(most <= 4, "{most} out at once");
    assert!(most >= 2, "destinations went in parallel: {most}");
    assert!(wait_for_all_done(&r.db, dests * per_dest).await);
}

/// A failure with rows held behind it: they were never sent; they go back to pending
/// behind the failed row (not counted) and follow it once it has gone again, in order.
#[actix::test]
async fn held_rows_behind_a_failed_row_go_back_unsent_and_follow_it_in_order() {
    let ids: Vec<String> = (0..20).map(|i| format!("r{i:02}")).collect();
    let sends = to_one_topic(&ids);
    let link = FakeLink {
        ack_after_ms: 2,
        fail_once: vec!["r05".into()],
        ..FakeLink::default()
    };
    let wire = link.wire.clone();
    let r = rig_of(&sends, OutboxTuning::default(), link);
    r.drainer.do_send(LinkEvent::Up { mesh: "m1".into() });
    assert!(wait_for(|| r.delivered.lock().unwrap().len() == 21).await);
    let mut expected: Vec<String> = ids[..6].to_vec();
    expected.extend(ids[5..].iter().cloned());
    assert_eq!(*r.delivered.lock().unwrap(), expected);
    assert_eq!(wire.lock().unwrap().most_per_dest, 1);
    assert!(wait_for_all_done(&r.db, 20).await);
    let mut rows =
        r.db.send(DbTask::new(|conn| store::list(conn, None, 100)))
            .await
            .unwrap()
            .unwrap();
    rows.sort_by_key(|row| row.id);
    let attempts: Vec<i64> = rows.iter().map(|row| row.attempts).collect();
    let mut counted = vec![0; 20];
    counted[5] = 1;
    assert_eq!(attempts, counted, "only the failed row counts an attempt");
}

/// Every row `done`, within the wait.
async fn wait_for_all_done(db: &Addr<OutboxDb>, n: usize) -> bool {
    for _ in 0..250 {
        let st = statuses(db).await;
        if st.len() == n && st.iter().all(|s| *s == Status::Done) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

// --- Issue 15: no fixed tick; a backoff's expiry is the only timer. ---

/// As [`rig_of`], with `prepare` run on the database after the accepts and before the
/// drainer starts (what an earlier run of the daemon left behind).
fn rig_prepared(
    sends: &[NewSend],
    link: FakeLink,
    prepare: impl FnOnce(&rusqlite::Connection),
) -> Rig {
    rig_built(sends, OutboxTuning::default(), link, prepare)
}

/// The drainer of [`rig_of`] and [`rig_prepared`].
fn rig_built(
    sends: &[NewSend],
    tuning: OutboxTuning,
    link: FakeLink,
    prepare: impl FnOnce(&rusqlite::Connection),
) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = store::open(&dir.path().join("outbox.db"), Durability::Normal, false).unwrap();
    let now = crate::time::now_ms();
    for (i, send) in sends.iter().enumerate() {
        store::accept_batch(&mut conn, std::slice::from_ref(send), now + i as i64).unwrap();
    }
    prepare(&conn);
    let db = OutboxDb::start_in_arbiter(&Arbiter::new().handle(), move |_| OutboxDb::new(conn));
    let delivered = link.delivered.clone();
    let link = link.start();
    let links = vec![(
        "m1".to_string(),
        MemberKeys::generate(),
        LinkRecipients {
            deliver: link.clone().recipient(),
            resolve: link.clone().recipient(),
        },
    )];
    let drainer = OutboxDrainer::with_links(
        db.clone(),
        links,
        tuning,
        link.recipient(),
        Arc::new(Metrics::default()),
    )
    .start();
    Rig {
        _dir: dir,
        db,
        drainer,
        delivered,
    }
}

/// A row left backing off by an earlier run waits out its backoff, then goes without any
/// other trigger: the drainer reads the next due time from the database when it starts.
#[actix::test]
async fn a_backoff_left_in_the_database_expires_on_time_after_a_start() {
    let due_in = 700;
    let r = rig_prepared(
        &[topic_send("a", 0, "#t", Some("#t"))],
        FakeLink::default(),
        |c| {
            c.execute(
                "UPDATE outbox SET next_attempt_at = ?1, last_error = 'no connected peer'",
                [crate::time::now_ms() + due_in],
            )
            .unwrap();
        },
    );
    let started = std::time::Instant::now();
    r.drainer.do_send(LinkEvent::Up { mesh: "m1".into() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        r.delivered.lock().unwrap().is_empty(),
        "sent before its backoff ended"
    );
    assert!(wait_for(|| r.delivered.lock().unwrap().len() == 1).await);
    assert!(started.elapsed() >= Duration::from_millis(due_in as u64 - 50));
}

/// A row refused as offline backs off (250–1000 ms for a first retry) and is sent again when
/// the backoff ends: the retry's due time arms the drainer's timer.
#[actix::test]
async fn a_row_refused_as_offline_is_sent_again_when_its_backoff_expires() {
    let link = FakeLink {
        refuse_once: vec!["a".into()],
        ..FakeLink::default()
    };
    let r = rig_of(
        &[topic_send("a", 0, "#t", Some("#t"))],
        OutboxTuning::default(),
        link,
    );
    r.drainer.do_send(LinkEvent::Up { mesh: "m1".into() });
    assert!(wait_for(|| r.delivered.lock().unwrap().len() == 2).await);
    let mut done = false;
    for _ in 0..250 {
        done = statuses(&r.db).await == [Status::Done];
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(done);
}

/// A requeued row is due at once and goes at once (no tick would find it).
#[actix::test]
async fn a_requeued_row_is_sent_at_once() {
    let r = rig(&["a"]);
    let id =
        r.db.send(DbTask::new(|conn| {
            let row = store::list(conn, None, 1)?.remove(0);
            store::mark_dead(conn, row.id, "payload too large", 0)?;
            Ok(row.id)
        }))
        .await
        .unwrap()
        .unwrap();
    r.drainer.do_send(LinkEvent::Up { mesh: "m1".into() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        r.delivered.lock().unwrap().is_empty(),
        "a dead row was sent"
    );
    r.drainer
        .send(RequeueRow {
            id,
            new_client_message_id: Some("a2".into()),
            by: "test".into(),
        })
        .await
        .unwrap()
        .unwrap();
    assert!(wait_for(|| *r.delivered.lock().unwrap() == ["a2"]).await);
}
