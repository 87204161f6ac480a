use serde_json::{json, Map, Value};

use super::fresh_db;
use crate::inbox::store::{
    append_event, newest_event_id, open, replay_after, Replay, DEFAULT_JOURNAL_KEEP,
};

fn fields(n: i64) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("n".into(), json!(n));
    m
}

fn ids(replay: Replay) -> Vec<i64> {
    match replay {
        Replay::Events(events) => events.into_iter().map(|e| e.id).collect(),
        Replay::Reset { .. } => panic!("expected events, got {replay:?}"),
    }
}

fn journal_len(conn: &rusqlite::Connection) -> i64 {
    conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn event_data_is_one_json_line_with_kind_ts_mesh_and_fields() {
    let (_d, _p, mut conn) = fresh_db();
    let mut f = fields(7);
    f.insert("kind".into(), json!("spoofed"));
    let ev = append_event(&mut conn, "peer_join", None, f, 1_714_700_000_000, 100).unwrap();
    assert_eq!(
        (ev.id, ev.kind.as_str(), ev.mesh.as_deref()),
        (1, "peer_join", None)
    );
    assert!(!ev.data.contains('\n'));
    let data: Value = serde_json::from_str(&ev.data).unwrap();
    assert_eq!(
        data,
        json!({"kind": "peer_join", "ts": "2024-05-03T01:33:20.000Z", "mesh": null, "n": 7})
    );
    let ev = append_event(&mut conn, "broker_status", Some("m1"), Map::new(), 0, 100).unwrap();
    assert_eq!(ev.mesh.as_deref(), Some("m1"));
    assert_eq!(
        serde_json::from_str::<Value>(&ev.data).unwrap()["mesh"],
        json!("m1")
    );
}

#[test]
fn event_ids_increase_by_one_and_continue_after_reopen() {
    let (_d, path, mut conn) = fresh_db();
    assert_eq!(newest_event_id(&conn).unwrap(), 0);
    for expected in 1..=3 {
        let ev = append_event(&mut conn, "system", Some("m1"), fields(expected), 0, 2).unwrap();
        assert_eq!(ev.id, expected);
    }
    drop(conn);
    let mut conn = open(&path, false).unwrap();
    assert_eq!(newest_event_id(&conn).unwrap(), 3);
    assert_eq!(
        append_event(&mut conn, "system", None, fields(4), 0, 2)
            .unwrap()
            .id,
        4
    );
}

#[test]
fn replay_returns_events_after_the_id_ascending_and_bounded() {
    let (_d, _p, mut conn) = fresh_db();
    assert_eq!(ids(replay_after(&conn, 0, 10).unwrap()), Vec::<i64>::new());
    for n in 1..=6 {
        append_event(&mut conn, "system", None, fields(n), 0, 100).unwrap();
    }
    assert_eq!(ids(replay_after(&conn, 3, 10).unwrap()), [4, 5, 6]);
    assert_eq!(ids(replay_after(&conn, 0, 2).unwrap()), [1, 2]);
    assert_eq!(ids(replay_after(&conn, 6, 10).unwrap()), Vec::<i64>::new());
    let Replay::Events(events) = replay_after(&conn, 5, 10).unwrap() else {
        panic!("expected events");
    };
    assert_eq!(
        serde_json::from_str::<Value>(&events[0].data).unwrap()["n"],
        json!(6)
    );
}

#[test]
fn replay_resets_when_older_than_the_retained_window() {
    let (_d, _p, mut conn) = fresh_db();
    for n in 1..=12 {
        append_event(&mut conn, "system", None, fields(n), 0, 5).unwrap();
    }
    assert_eq!(journal_len(&conn), 5);
    // 8..=12 retained: resuming after 7 loses nothing, after 6 lost event 7.
    assert_eq!(
        ids(replay_after(&conn, 7, 100).unwrap()),
        [8, 9, 10, 11, 12]
    );
    assert_eq!(
        replay_after(&conn, 6, 100).unwrap(),
        Replay::Reset {
            oldest_id: 8,
            newest_id: 12
        }
    );
}

#[test]
fn replay_resets_when_newer_than_any_issued_id() {
    let (_d, _p, mut conn) = fresh_db();
    // A recreated journal: the client remembers ids this one never issued.
    assert_eq!(
        replay_after(&conn, 57, 100).unwrap(),
        Replay::Reset {
            oldest_id: 1,
            newest_id: 0
        }
    );
    append_event(&mut conn, "system", None, fields(1), 0, 5).unwrap();
    assert_eq!(
        replay_after(&conn, 2, 100).unwrap(),
        Replay::Reset {
            oldest_id: 1,
            newest_id: 1
        }
    );
}

#[test]
fn trimming_keeps_the_newest_and_ids_survive_it() {
    let (_d, path, mut conn) = fresh_db();
    for n in 1..=10 {
        append_event(&mut conn, "system", None, fields(n), 0, 3).unwrap();
    }
    let kept: Vec<i64> = conn
        .prepare("SELECT id FROM events ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(kept, [8, 9, 10]);
    drop(conn);
    let mut conn = open(&path, false).unwrap();
    assert_eq!(
        append_event(&mut conn, "system", None, fields(11), 0, 3)
            .unwrap()
            .id,
        11
    );
}

#[test]
fn default_retention_keeps_exactly_ten_thousand_events() {
    let (_d, _p, mut conn) = fresh_db();
    // Bulk-fill in one transaction (speed), then let one ordinary append trim.
    let tx = conn.transaction().unwrap();
    for n in 1..=10_004 {
        crate::inbox::journal::append_in_tx(&tx, "system", None, fields(n), 0, usize::MAX).unwrap();
    }
    tx.commit().unwrap();
    assert_eq!(journal_len(&conn), 10_004);
    append_event(
        &mut conn,
        "system",
        None,
        fields(10_005),
        0,
        DEFAULT_JOURNAL_KEEP,
    )
    .unwrap();
    assert_eq!(journal_len(&conn), 10_000);
    assert_eq!(
        replay_after(&conn, 4, 1).unwrap(),
        Replay::Reset {
            oldest_id: 6,
            newest_id: 10_005
        }
    );
    assert_eq!(ids(replay_after(&conn, 5, 1).unwrap()), [6]);
}

/// Issue 13 item 5: a quarantined `inbox.db` restarted event ids at 1, so a client whose
/// `Last-Event-ID` was below the new journal's newest id resumed silently, skipping events.
/// Ids must stay above every id issued before, and such a client must get a `reset`.
#[test]
fn event_ids_stay_monotonic_across_a_quarantine_and_an_old_client_id_gets_a_reset() {
    let (dir, path, mut conn) = fresh_db();
    for n in 1..=50 {
        append_event(&mut conn, "system", None, fields(n), 0, 10_000).unwrap();
    }
    drop(conn);
    std::fs::write(&path, vec![0xA5u8; 8192]).unwrap();
    let (mut conn, moved) =
        crate::inbox::store::open_or_quarantine(&path, false, 1_714_700_000_000).unwrap();
    assert!(moved.is_some(), "the garbage file was quarantined");
    let mut new_ids = Vec::new();
    for n in 0..100 {
        new_ids.push(
            append_event(&mut conn, "system", None, fields(n), 0, 10_000)
                .unwrap()
                .id,
        );
    }
    assert!(new_ids[0] > 50, "ids restarted at {}", new_ids[0]);
    assert!(new_ids.windows(2).all(|w| w[1] == w[0] + 1), "{new_ids:?}");
    // The client had seen id 50; the new journal does not hold what followed it.
    assert!(matches!(
        replay_after(&conn, 50, 500).unwrap(),
        Replay::Reset { .. }
    ));
    // An id newer than any issued (a client from some other journal) gets a reset too.
    let newest = newest_event_id(&conn).unwrap();
    assert!(matches!(
        replay_after(&conn, newest + 1, 500).unwrap(),
        Replay::Reset { .. }
    ));
    // A client that saw everything resumes with nothing to replay.
    assert_eq!(
        ids(replay_after(&conn, newest, 500).unwrap()),
        Vec::<i64>::new()
    );
    drop(dir);
}

#[test]
fn a_deleted_database_also_restarts_above_every_issued_id() {
    let (dir, path, mut conn) = fresh_db();
    for n in 1..=3_000 {
        append_event(&mut conn, "system", None, fields(n), 0, 10).unwrap();
    }
    drop(conn);
    std::fs::remove_file(&path).unwrap();
    let mut conn = open(&path, false).unwrap();
    let id = append_event(&mut conn, "system", None, fields(0), 0, 10)
        .unwrap()
        .id;
    assert!(id > 3_000, "ids restarted at {id}");
    drop(dir);
}
