//! The batch boundary: frames decided in a batch leave only once it has committed.

use std::time::Duration;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::msg::{HubCmd, Outgoing};
use super::{Hub, HubOptions};
use crate::inspect::Profile;

fn hub(dir: &std::path::Path) -> Hub {
    let db = crate::state::open(dir).unwrap();
    Hub::new(
        db,
        HubOptions {
            state_dir: dir.to_path_buf(),
            rate_limit: false,
            dedupe: false,
            profile: Profile::Seed,
            grace: Duration::from_secs(90),
            claim_ms: 30_000,
            sweep: Duration::from_secs(1),
            fail_every: None,
            drop_every: None,
        },
    )
}

fn drained(rx: &mut UnboundedReceiver<Outgoing>) -> Vec<Outgoing> {
    let mut out = Vec::new();
    while let Ok(o) = rx.try_recv() {
        out.push(o);
    }
    out
}

/// A batch whose COMMIT fails: a deferred foreign key left violated.
fn poison(hub: &Hub) {
    hub.db
        .execute_batch(
            "CREATE TABLE t_parent (id INTEGER PRIMARY KEY);
             CREATE TABLE t_child (pid INTEGER REFERENCES t_parent(id) DEFERRABLE INITIALLY DEFERRED);
             PRAGMA foreign_keys = ON;",
        )
        .unwrap();
}

#[test]
fn frames_of_a_committed_batch_are_written_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub(dir.path());
    let (tx, mut rx) = unbounded_channel();
    hub.handle(HubCmd::Connected { conn: 1, tx });
    hub.begin_batch();
    hub.send(1, Outgoing::Text("a".into()));
    hub.send(1, Outgoing::Text("b".into()));
    assert!(
        drained(&mut rx).is_empty(),
        "nothing leaves before the commit"
    );
    hub.end_batch();
    let got: Vec<String> = drained(&mut rx)
        .into_iter()
        .map(|o| match o {
            Outgoing::Text(t) => t,
            _ => panic!("unexpected frame"),
        })
        .collect();
    assert_eq!(got, ["a", "b"]);
}

#[test]
fn a_batch_that_fails_to_commit_writes_no_ack_and_closes_its_sockets_once_with_1011() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub(dir.path());
    poison(&hub);
    let (tx1, mut rx1) = unbounded_channel();
    let (tx2, mut rx2) = unbounded_channel();
    let (tx3, mut rx3) = unbounded_channel();
    hub.handle(HubCmd::Connected { conn: 1, tx: tx1 });
    hub.handle(HubCmd::Connected { conn: 2, tx: tx2 });
    hub.handle(HubCmd::Connected { conn: 3, tx: tx3 });
    hub.begin_batch();
    hub.db
        .execute_batch("INSERT INTO t_child (pid) VALUES (42)")
        .unwrap();
    hub.send(1, Outgoing::Text("ack 1".into()));
    hub.send(1, Outgoing::Text("ack 2".into()));
    hub.send(2, Outgoing::Text("push".into()));
    hub.end_batch();
    for rx in [&mut rx1, &mut rx2] {
        let got = drained(rx);
        assert_eq!(got.len(), 1, "one close, no frame of the batch");
        assert!(matches!(&got[0], Outgoing::Close { code: 1011, .. }));
    }
    assert!(
        drained(&mut rx3).is_empty(),
        "a socket with nothing held is left alone"
    );
    let rows: i64 = hub
        .db
        .query_row("SELECT COUNT(*) FROM t_child", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 0, "the batch was rolled back");

    // The next batch commits normally.
    hub.db.execute_batch("DELETE FROM t_child").unwrap();
    hub.begin_batch();
    hub.send(3, Outgoing::Text("later".into()));
    hub.end_batch();
    assert!(matches!(drained(&mut rx3).as_slice(), [Outgoing::Text(t)] if t == "later"));
}
