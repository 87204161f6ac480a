//! The accept lane: sends go from the IPC handler straight to the outbox's database thread
//! and are answered from it, in group commits (SPEC §5.3).
//!
//! A caller queues its send here. The first send into an empty lane asks the [`OutboxDb`]
//! for one flush; the flush takes every send queued by the time it runs, commits them in
//! one transaction ([`store::accept_batch`]), answers each caller, tells the drainer which
//! meshes have new rows ([`AcceptsCommitted`]), and asks for another flush at the back of
//! the database thread's mailbox if more sends arrived meanwhile, so claims and outcomes
//! are not starved.
//!
//! Invariants:
//! - An id is added to [`SeenIds`] before its row can exist: a caller's id when it is
//!   queued, a minted id before its answer goes out.
//! - Every queued send is answered exactly once: by its flush, or with
//!   [`OutboxError::Cancelled`] when the flush is dropped unrun (the database thread is
//!   gone), which also frees the lane for the next send.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use actix::prelude::*;
use rusqlite::Connection;
use tokio::sync::oneshot;

use super::db::{DbTask, OutboxDb};
use super::msg::OutboxError;
use super::seen::SeenIds;
use super::store::{self, Accepted, NewSend};
use crate::metrics::Metrics;
use crate::storage::LogGate;
use crate::time::now_ms;

/// Event to the drainer: rows were committed for these meshes (drain them).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct AcceptsCommitted {
    pub meshes: Vec<String>,
}

type Reply = oneshot::Sender<Result<Accepted, OutboxError>>;

#[derive(Default)]
struct Queue {
    sends: Vec<(NewSend, Reply)>,
    /// A flush is on its way to the database thread or running.
    scheduled: bool,
    /// Rate limit of the log lines of failed commits (a full disk fails every one).
    storage_log: LogGate,
}

struct Shared {
    db: Addr<OutboxDb>,
    committed: Recipient<AcceptsCommitted>,
    seen: Arc<SeenIds>,
    metrics: Arc<Metrics>,
    queue: Mutex<Queue>,
}

/// The accept lane (cheap to clone: one shared queue).
#[derive(Clone)]
pub struct AcceptLane(Arc<Shared>);

impl AcceptLane {
    /// A lane committing on `db`, telling `committed` (the drainer) about new rows.
    pub fn new(
        db: Addr<OutboxDb>,
        committed: Recipient<AcceptsCommitted>,
        seen: Arc<SeenIds>,
        metrics: Arc<Metrics>,
    ) -> Self {
        AcceptLane(Arc::new(Shared {
            db,
            committed,
            seen,
            metrics,
            queue: Mutex::default(),
        }))
    }

    /// Accepts one send (SPEC §5.3); answered once the transaction holding its row commits.
    pub async fn accept(&self, send: NewSend) -> Result<Accepted, OutboxError> {
        if let Some(id) = &send.client_message_id {
            self.0.seen.add(id);
        }
        let (tx, rx) = oneshot::channel();
        let first = {
            let mut q = self.queue();
            q.sends.push((send, tx));
            !std::mem::replace(&mut q.scheduled, true)
        };
        if first {
            self.schedule();
        }
        rx.await.unwrap_or(Err(OutboxError::Cancelled))
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding the lock cannot leave the queue half-changed: every
        // critical section is one push, take or flag.
        self.0.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn schedule(&self) {
        let flush = Flush {
            lane: self.clone(),
            ran: false,
        };
        self.0.db.do_send(DbTask::new(move |conn| {
            let mut flush = flush;
            flush.run(conn);
            Ok(())
        }));
    }
}

/// One flush; answers its lane's queue with `Cancelled` if dropped without running.
struct Flush {
    lane: AcceptLane,
    ran: bool,
}

impl Flush {
    fn run(&mut self, conn: &mut Connection) {
        self.ran = true;
        let lane = &self.lane;
        let (batch, replies): (Vec<NewSend>, Vec<Reply>) =
            std::mem::take(&mut lane.queue().sends).into_iter().unzip();
        let minted: Vec<bool> = batch
            .iter()
            .map(|s| s.client_message_id.is_none())
            .collect();
        let meshes: HashSet<String> = batch.iter().map(|s| s.mesh.clone()).collect();
        match store::accept_batch(conn, &batch, now_ms()) {
            Ok(answers) => {
                let metrics = &lane.0.metrics;
                for ((answer, reply), minted) in answers.into_iter().zip(replies).zip(minted) {
                    match &answer {
                        Accepted::Queued {
                            client_message_id, ..
                        } => {
                            if minted {
                                // Seen before the caller can learn the id and send it again.
                                lane.0.seen.add(client_message_id);
                            }
                            Metrics::inc(&metrics.sends_accepted);
                        }
                        _ => Metrics::inc(&metrics.dedupe_hits),
                    }
                    let _ = reply.send(Ok(answer));
                }
            }
            Err(e) => {
                e.log_failed("accept (rolled back)", &mut lane.queue().storage_log);
                let (detail, fault) = (e.to_string(), e.fault());
                for reply in replies {
                    let _ = reply.send(Err(OutboxError::Batch {
                        detail: detail.clone(),
                        fault,
                    }));
                }
            }
        }
        if !meshes.is_empty() {
            lane.0.committed.do_send(AcceptsCommitted {
                meshes: meshes.into_iter().collect(),
            });
        }
        let more = {
            let mut q = lane.queue();
            q.scheduled = !q.sends.is_empty();
            q.scheduled
        };
        if more {
            lane.schedule();
        }
    }
}

impl Drop for Flush {
    fn drop(&mut self) {
        if self.ran {
            return;
        }
        let sends = {
            let mut q = self.lane.queue();
            q.scheduled = false;
            std::mem::take(&mut q.sends)
        };
        for (_, reply) in sends {
            let _ = reply.send(Err(OutboxError::Cancelled));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use super::*;
    use crate::outbox::store::Durability;

    /// Records every [`AcceptsCommitted`].
    #[derive(Default)]
    struct Drainer(Arc<Mutex<Vec<Vec<String>>>>);

    impl Actor for Drainer {
        type Context = Context<Self>;
    }

    impl Handler<AcceptsCommitted> for Drainer {
        type Result = ();

        fn handle(&mut self, msg: AcceptsCommitted, _ctx: &mut Context<Self>) {
            self.0.lock().unwrap().push(msg.meshes);
        }
    }

    struct Rig {
        _dir: tempfile::TempDir,
        arbiter: Arbiter,
        db: Addr<OutboxDb>,
        lane: AcceptLane,
        seen: Arc<SeenIds>,
        committed: Arc<Mutex<Vec<Vec<String>>>>,
    }

    fn rig() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let conn = store::open(&dir.path().join("outbox.db"), Durability::Normal, false).unwrap();
        let seen = Arc::new(SeenIds::new());
        seen.load(&conn).unwrap();
        let arbiter = Arbiter::new();
        let db = OutboxDb::start_in_arbiter(&arbiter.handle(), move |_| OutboxDb::new(conn));
        let recorder = Drainer::default();
        let committed = recorder.0.clone();
        let lane = AcceptLane::new(
            db.clone(),
            recorder.start().recipient(),
            seen.clone(),
            Arc::new(Metrics::default()),
        );
        Rig {
            _dir: dir,
            arbiter,
            db,
            lane,
            seen,
            committed,
        }
    }

    fn send(id: Option<&str>, mesh: &str) -> NewSend {
        NewSend {
            client_message_id: id.map(str::to_string),
            fingerprint: [7; 32],
            mesh: mesh.into(),
            to: "#t".into(),
            target: Some("#t".into()),
            priority: "next".into(),
            meta: None,
            reply_to_id: None,
            payload: b"hi".to_vec(),
            session_pubkey: None,
        }
    }

    /// Holds the database thread until the returned sender is dropped.
    async fn hold(db: &Addr<OutboxDb>) -> std::sync::mpsc::Sender<()> {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let (started, running) = oneshot::channel();
        db.do_send(DbTask::new(move |_| {
            let _ = started.send(());
            let _ = wait.recv();
            Ok(())
        }));
        running.await.unwrap();
        release
    }

    /// Sends queued while the database thread is busy go out in one transaction: one flush,
    /// one notice to the drainer naming both meshes, every caller answered with its own row.
    #[actix::test]
    async fn sends_queued_behind_a_busy_writer_commit_together_and_each_is_answered() {
        let r = rig();
        let release = hold(&r.db).await;
        let calls: Vec<_> = (0..50)
            .map(|i| {
                let (lane, mesh) = (r.lane.clone(), if i % 2 == 0 { "m1" } else { "m2" });
                actix::spawn(async move { lane.accept(send(Some(&format!("k{i}")), mesh)).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            r.lane.queue().sends.len(),
            50,
            "all queued behind the held thread"
        );
        drop(release);
        let mut ids = Vec::new();
        for call in calls {
            match call.await.unwrap().unwrap() {
                Accepted::Queued {
                    id,
                    client_message_id,
                } => ids.push((id, client_message_id)),
                other => panic!("{other:?}"),
            }
        }
        let rows: std::collections::HashSet<i64> = ids.iter().map(|(id, _)| *id).collect();
        assert_eq!(rows.len(), 50);
        assert_eq!(ids[7].1, "k7");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut notices = r.committed.lock().unwrap().clone();
        assert_eq!(notices.len(), 1, "{notices:?}");
        notices[0].sort();
        assert_eq!(notices[0], ["m1", "m2"]);
        assert!(!r.lane.queue().scheduled, "the lane is idle again");
        // A repeat of a committed id is answered as a duplicate of the same row.
        let again = r.lane.accept(send(Some("k7"), "m1")).await.unwrap();
        assert!(
            matches!(again, Accepted::Queued { id, .. } if id == ids[7].0),
            "{again:?}"
        );
    }

    /// A minted id is in `SeenIds` when its caller learns it, and a caller's id as soon as
    /// it is queued (before its row can exist).
    #[actix::test]
    async fn ids_are_seen_before_their_rows_can_be_asked_about() {
        let r = rig();
        let release = hold(&r.db).await;
        let lane = r.lane.clone();
        let call = actix::spawn(async move { lane.accept(send(Some("mine"), "m1")).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(r.seen.maybe_seen("mine"), "added while still queued");
        drop(release);
        call.await.unwrap().unwrap();
        let minted = match r.lane.accept(send(None, "m1")).await.unwrap() {
            Accepted::Queued {
                client_message_id, ..
            } => client_message_id,
            other => panic!("{other:?}"),
        };
        assert!(r.seen.maybe_seen(&minted));
        assert!(!r.seen.maybe_seen("never-sent"));
    }

    /// With the database thread gone, a send is answered `Cancelled` instead of waiting
    /// forever, and so is the next one (the lane is not left marked busy).
    #[actix::test]
    async fn a_gone_database_thread_cancels_sends_and_frees_the_lane() {
        let r = rig();
        r.arbiter.stop();
        r.arbiter.join().unwrap();
        for id in ["a", "b"] {
            let answer =
                tokio::time::timeout(Duration::from_secs(5), r.lane.accept(send(Some(id), "m1")))
                    .await
                    .expect("answered, not left waiting");
            assert!(matches!(answer, Err(OutboxError::Cancelled)), "{answer:?}");
        }
        assert!(!r.lane.queue().scheduled);
        assert!(r.committed.lock().unwrap().is_empty());
    }
}
