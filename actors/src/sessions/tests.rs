//! The registry actor against a real temp `outbox.db` (through an OutboxDb thread), a fake
//! process table (pid reuse on demand) and a journal that records what it is sent.

use std::collections::HashMap;
use std::sync::Mutex;

use super::model::{NewSession, ParentAttestation, SessionPresence, SessionToken};
use super::*;
use crate::crypto::MemberKeys;
use crate::inbox::msg::InboxActorError;
use crate::inbox::store::StoredEvent;
use crate::outbox::store::{open, Durability};

/// A process table the test edits.
#[derive(Default)]
struct FakeProbe(Mutex<HashMap<u32, ProcState>>);

impl FakeProbe {
    fn set(&self, pid: u32, state: ProcState) {
        self.0.lock().unwrap().insert(pid, state);
    }
}

impl ProcessProbe for FakeProbe {
    fn probe(&self, pid: u32) -> ProcState {
        self.0
            .lock()
            .unwrap()
            .get(&pid)
            .copied()
            .unwrap_or(ProcState::Gone)
    }
}

/// Records journaled events.
#[derive(Default)]
struct Journal(Arc<Mutex<Vec<RecordEvent>>>);

impl Actor for Journal {
    type Context = Context<Self>;
}

impl Handler<RecordEvent> for Journal {
    type Result = Result<StoredEvent, InboxActorError>;

    fn handle(&mut self, msg: RecordEvent, _ctx: &mut Context<Self>) -> Self::Result {
        let mut all = self.0.lock().unwrap();
        all.push(msg.clone());
        Ok(StoredEvent {
            id: i64::try_from(all.len()).unwrap(),
            kind: msg.kind,
            mesh: msg.mesh,
            data: "{}".into(),
        })
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    db: Addr<OutboxDb>,
    probe: Arc<FakeProbe>,
    events: Arc<Mutex<Vec<RecordEvent>>>,
    journal: Recipient<RecordEvent>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let conn = open(&path, Durability::Normal, false).unwrap();
    let db = OutboxDb::new(conn).start();
    let events = Arc::new(Mutex::new(Vec::new()));
    let journal = Journal(events.clone()).start().recipient();
    Fixture {
        _dir: dir,
        path,
        db,
        probe: Arc::new(FakeProbe::default()),
        events,
        journal,
    }
}

impl Fixture {
    fn registry(&self, loaded: Vec<Session>) -> Addr<SessionRegistry> {
        SessionRegistry::new(
            self.db.clone(),
            self.journal.clone(),
            self.probe.clone(),
            loaded,
            vec!["m1".into()],
            Duration::from_secs(3600),
        )
        .start()
    }

    fn rows(&self) -> Vec<Session> {
        let conn = rusqlite::Connection::open(&self.path).unwrap();
        store::load(&conn).unwrap()
    }

    fn reasons(&self) -> Vec<(String, String)> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|e| {
                assert_eq!(e.kind, "session_left");
                (
                    e.fields["session_id"].as_str().unwrap().to_string(),
                    e.fields["reason"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

fn token(n: u8) -> SessionToken {
    SessionToken::parse(&format!("{n:02x}").repeat(32)).unwrap()
}

fn presence() -> SessionPresence {
    let keys = MemberKeys::generate();
    SessionPresence {
        attestation: ParentAttestation {
            session_pubkey: keys.pubkey_hex(),
            parent_member_pubkey: "ab".repeat(32),
            expires_at: 1,
            signature: "cd".repeat(64),
        },
        keys,
    }
}

fn new_session(n: u8, id: &str, pid: u32) -> NewSession {
    NewSession {
        token: token(n),
        session_id: id.into(),
        mesh: "m1".into(),
        display_name: format!("agent-{id}"),
        pid,
        cwd: Some("/tmp".into()),
        role: None,
        groups: vec!["@dev".into()],
        presence: Some(presence()),
    }
}

async fn settle() {
    // Deletes and journal sends run as spawned futures; give them a few turns.
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[actix::test]
async fn register_resolve_list_and_deregister_round_trip_through_the_table() {
    let f = fixture();
    f.probe.set(100, ProcState::Running { start: Some(5) });
    let reg = f.registry(Vec::new());
    let a = reg
        .send(RegisterSession {
            session: new_session(1, "s1", 100),
        })
        .await
        .unwrap()
        .unwrap();
    assert!(a.presence_accepted);
    let me = reg
        .send(ResolveSession { token: token(1) })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(me.session_id, "s1");
    assert_eq!(me.token_prefix, "01010101");
    assert_eq!(me.presence_status, PresenceStatus::Pending);
    assert!(reg
        .send(ResolveSession { token: token(2) })
        .await
        .unwrap()
        .is_none());
    // The row holds the digest and the keypair, never the token.
    let rows = f.rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].token_digest, token(1).digest());
    assert_eq!(rows[0].process_start, Some(5));
    assert_eq!(
        rows[0].presence.as_ref().unwrap().pubkey(),
        me.session_pubkey.clone().unwrap()
    );
    let conn = rusqlite::Connection::open(&f.path).unwrap();
    let hits: i64 = conn
        .query_row(
            "SELECT count(*) FROM sessions WHERE token_sha256 = ?1 OR token_prefix = ?1",
            ["01".repeat(32)],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(hits, 0);
    assert_eq!(reg.send(ListSessions).await.unwrap().len(), 1);
    let ended = reg
        .send(EndSession { token: token(1) })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended.as_deref(), Some("01010101"));
    assert!(reg
        .send(EndSession { token: token(1) })
        .await
        .unwrap()
        .unwrap()
        .is_none());
    settle().await;
    assert!(f.rows().is_empty());
    assert_eq!(f.reasons(), vec![("s1".into(), "deregistered".into())]);
}

#[actix::test]
async fn a_new_registration_of_a_session_id_replaces_the_old_one() {
    let f = fixture();
    f.probe.set(100, ProcState::Running { start: Some(5) });
    let reg = f.registry(Vec::new());
    for n in [1, 2] {
        reg.send(RegisterSession {
            session: new_session(n, "s1", 100),
        })
        .await
        .unwrap()
        .unwrap();
    }
    assert!(reg
        .send(ResolveSession { token: token(1) })
        .await
        .unwrap()
        .is_none());
    assert!(reg
        .send(ResolveSession { token: token(2) })
        .await
        .unwrap()
        .is_some());
    settle().await;
    assert_eq!(f.rows().len(), 1);
    assert_eq!(f.reasons(), vec![("s1".into(), "replaced".into())]);
}

#[actix::test]
async fn reaper_drops_an_exited_process_and_a_reused_pid() {
    let f = fixture();
    f.probe.set(100, ProcState::Running { start: Some(5) });
    f.probe.set(200, ProcState::Running { start: Some(7) });
    f.probe.set(300, ProcState::Running { start: Some(9) });
    let reg = f.registry(Vec::new());
    for (n, id, pid) in [(1, "gone", 100), (2, "reused", 200), (3, "alive", 300)] {
        reg.send(RegisterSession {
            session: new_session(n, id, pid),
        })
        .await
        .unwrap()
        .unwrap();
    }
    reg.send(ReapSessions).await.unwrap();
    assert_eq!(reg.send(ListSessions).await.unwrap().len(), 3);
    f.probe.set(100, ProcState::Gone);
    f.probe.set(200, ProcState::Running { start: Some(8) });
    reg.send(ReapSessions).await.unwrap();
    let left: Vec<String> = reg
        .send(ListSessions)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.session_id)
        .collect();
    assert_eq!(left, vec!["alive".to_string()]);
    settle().await;
    let mut reasons = f.reasons();
    reasons.sort();
    assert_eq!(
        reasons,
        vec![
            ("gone".into(), "process_exited".into()),
            ("reused".into(), "pid_reused".into())
        ]
    );
    assert_eq!(f.rows().len(), 1);
}

#[actix::test]
async fn rehydration_keeps_live_sessions_only() {
    let f = fixture();
    f.probe.set(100, ProcState::Running { start: Some(5) });
    f.probe.set(200, ProcState::Running { start: Some(7) });
    f.probe.set(300, ProcState::Running { start: Some(9) });
    let first = f.registry(Vec::new());
    for (n, id, pid) in [(1, "live", 100), (2, "old", 200), (3, "other-mesh", 300)] {
        let mut s = new_session(n, id, pid);
        if id == "other-mesh" {
            s.mesh = "m2".into();
        }
        first
            .send(RegisterSession { session: s })
            .await
            .unwrap()
            .unwrap();
    }
    // Age one row past the TTL behind the registry's back.
    let conn = rusqlite::Connection::open(&f.path).unwrap();
    conn.execute(
        "UPDATE sessions SET registered_at = registered_at - ?1 WHERE session_id = 'old'",
        [SESSION_TTL_MS + 1],
    )
    .unwrap();
    let loaded = f.rows();
    let kept_keys = loaded
        .iter()
        .find(|s| s.session_id == "live")
        .and_then(|s| s.presence.as_ref().map(SessionPresence::pubkey));
    let second = f.registry(loaded);
    let all = second.send(ListSessions).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].session_id, "live");
    assert_eq!(all[0].session_pubkey, kept_keys);
    settle().await;
    let mut reasons = f.reasons();
    reasons.sort();
    assert_eq!(
        reasons,
        vec![
            ("old".into(), "expired".into()),
            ("other-mesh".into(), "mesh_detached".into())
        ]
    );
    assert_eq!(f.rows().len(), 1);
}

#[test]
fn tokens_show_only_their_prefix() {
    let t = token(0xab);
    assert_eq!(format!("{t:?}"), "SessionToken(abababab…)");
    assert!(SessionToken::parse(&"AB".repeat(32)).is_some());
    assert!(SessionToken::parse(&"ab".repeat(31)).is_none());
    assert!(SessionToken::parse(&"zz".repeat(32)).is_none());
    let p = presence();
    assert!(!format!("{p:?}").contains(&hex::encode(p.keys.seed())));
}

#[actix::test]
async fn close_stops_the_registry() {
    let f = fixture();
    let reg = f.registry(Vec::new());
    reg.send(CloseSessions).await.unwrap();
    settle().await;
    assert!(
        reg.send(ListSessions).await.is_err(),
        "the mailbox is closed"
    );
}

/// The reaper's interval runs only while sessions live (issue 15): it stops after the sweep
/// that drops the last one and starts again with the next registration.
#[actix::test]
async fn the_reaper_stops_without_sessions_and_runs_again_for_the_next_one() {
    let f = fixture();
    let reg = SessionRegistry::new(
        f.db.clone(),
        f.journal.clone(),
        f.probe.clone(),
        Vec::new(),
        vec!["m1".into()],
        Duration::from_millis(50),
    )
    .start();
    let gone_within = |reg: Addr<SessionRegistry>| async move {
        for _ in 0..100 {
            if reg.send(ListSessions).await.unwrap().is_empty() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    };
    for (n, id, pid) in [(1, "first", 100), (2, "second", 200)] {
        f.probe.set(pid, ProcState::Running { start: Some(5) });
        reg.send(RegisterSession {
            session: new_session(n, id, pid),
        })
        .await
        .unwrap()
        .unwrap();
        f.probe.set(pid, ProcState::Gone);
        assert!(gone_within(reg.clone()).await, "{id} was not reaped");
    }
    settle().await;
    let mut reasons = f.reasons();
    reasons.sort();
    assert_eq!(
        reasons,
        vec![
            ("first".into(), "process_exited".into()),
            ("second".into(), "process_exited".into())
        ]
    );
}
