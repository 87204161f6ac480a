//! Opening: file mode, migrations, crash recovery, corruption, newer schemas, adoption.

use std::os::unix::fs::PermissionsExt;

use super::*;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn open_creates_the_file_0600_and_tightens_a_wider_one() {
    let (dir, path, _conn) = temp_db();
    assert_eq!(mode(&path), 0o600);
    let other = dir.path().join("wide.db");
    std::fs::write(&other, b"").unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o644)).unwrap();
    open(&other, Durability::Full, true).unwrap();
    assert_eq!(mode(&other), 0o600);
}

/// The migrations recorded in `schema_version`, in order.
fn applied_versions(conn: &rusqlite::Connection) -> Vec<i64> {
    conn.prepare("SELECT version FROM schema_version ORDER BY version")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn reopening_applies_no_migration_twice() {
    let (_d, path, conn) = temp_db();
    drop(conn);
    let conn = open(&path, Durability::Normal, true).unwrap();
    let versions = applied_versions(&conn);
    assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
    let jm: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(jm, "wal");
}

#[test]
fn reopen_after_a_crash_reports_unclean_and_resets_inflight_rows_keeping_attempts() {
    let (_d, path, mut conn) = temp_db();
    assert!(was_clean_shutdown(&conn).unwrap());
    write_clean_shutdown(&conn, false).unwrap();
    let a = queue(&mut conn, send(Some("a"), 1, "*", Some("*")), NOW);
    let b = queue(&mut conn, send(Some("b"), 2, "@g", Some("@g")), NOW);
    claim_ids(&mut conn, NOW, 10);
    mark_retry(&conn, a, "socket closed", true, NOW, 25, NOW).unwrap();
    claim_ids(&mut conn, NOW, 10);
    drop(conn); // the crash: no clean-shutdown marker, rows left inflight

    let mut conn = open(&path, Durability::Normal, false).unwrap();
    assert!(!was_clean_shutdown(&conn).unwrap());
    integrity_check(&conn, &path).unwrap();
    assert_eq!(reset_inflight(&conn).unwrap(), 2);
    let row = get(&conn, a).unwrap().unwrap();
    assert_eq!((row.status, row.attempts), (Status::Pending, 1));
    assert_eq!(status(&conn, b), Status::Pending);
    assert_eq!(claim_ids(&mut conn, NOW, 10), vec![a, b]);
    write_clean_shutdown(&conn, true).unwrap();
    drop(conn);
    let conn = open(&path, Durability::Normal, false).unwrap();
    assert!(was_clean_shutdown(&conn).unwrap());
}

#[test]
fn garbage_file_is_reported_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 13) as u8).collect();
    std::fs::write(&path, garbage).unwrap();
    for check in [true, false] {
        let err = open(&path, Durability::Normal, check).unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt { path: p, .. } if p == &path),
            "{err}"
        );
    }
}

#[test]
fn damaged_pages_fail_the_integrity_check() {
    let (_d, path, mut conn) = temp_db();
    let batch: Vec<NewSend> = (0..400u32)
        .map(|i| {
            let mut s = send(Some(&format!("id-{i}")), 1, "*", Some("*"));
            s.payload = vec![b'p'; 500];
            s
        })
        .collect();
    accept_batch(&mut conn, &batch, NOW).unwrap();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
    drop(conn);
    // Overwrite the middle of the file (index and table pages) with noise.
    let mut bytes = std::fs::read(&path).unwrap();
    let len = bytes.len();
    assert!(len > 64 * 1024, "database only {len} bytes");
    for (i, b) in bytes[8192..len - 8192].iter_mut().enumerate() {
        if i % 3 == 0 {
            *b = 0xA5;
        }
    }
    std::fs::write(&path, bytes).unwrap();
    let err = open(&path, Durability::Normal, true).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
}

#[test]
fn database_from_a_newer_binary_is_refused() {
    let (_d, path, conn) = temp_db();
    conn.execute(
        "INSERT INTO schema_version (version, applied_at) VALUES (?1, 0)",
        [SCHEMA_VERSION + 1],
    )
    .unwrap();
    drop(conn);
    let err = open(&path, Durability::Normal, false).unwrap_err();
    match err {
        StoreError::TooNew {
            path: p,
            found,
            supported,
        } => {
            assert_eq!(p, path);
            assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        other => panic!("expected TooNew, got {other}"),
    }
}

/// The TypeScript daemon's outbox DDL (v0.9.0 shape, then its Sprint 4 columns).
const TS_SCHEMA: &str = "
CREATE TABLE outbox (
  id TEXT PRIMARY KEY, client_message_id TEXT NOT NULL UNIQUE,
  request_fingerprint BLOB NOT NULL, payload BLOB NOT NULL, enqueued_at INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at INTEGER NOT NULL,
  status TEXT NOT NULL CHECK(status IN ('pending','inflight','done','dead','aborted')),
  last_error TEXT, delivered_at INTEGER, broker_message_id TEXT, aborted_at INTEGER,
  aborted_by TEXT, superseded_by TEXT);
CREATE INDEX outbox_pending ON outbox(status, next_attempt_at);
CREATE INDEX outbox_aborted ON outbox(status, aborted_at) WHERE status = 'aborted';
";

fn ts_row(conn: &Connection, id: &str, status: &str, superseded_by: Option<&str>) {
    conn.execute(
        "INSERT INTO outbox (id, client_message_id, request_fingerprint, payload, enqueued_at,
             attempts, next_attempt_at, status, last_error, delivered_at, broker_message_id,
             superseded_by)
         VALUES (?1, 'c-' || ?1, ?2, CAST('body ' || ?1 AS BLOB), ?3, 2, ?3, ?4, 'boom',
                 CASE WHEN ?4 = 'done' THEN ?3 END, CASE WHEN ?4 = 'done' THEN 'bm-' || ?1 END,
                 ?5)",
        rusqlite::params![id, vec![id.len() as u8; 32], NOW, status, superseded_by],
    )
    .unwrap();
}

#[test]
fn typescript_outbox_is_adopted_with_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    {
        let ts = Connection::open(&path).unwrap();
        ts.pragma_update(None, "journal_mode", "WAL").unwrap();
        ts.execute_batch(TS_SCHEMA).unwrap();
        ts_row(&ts, "d", "done", None);
        ts_row(&ts, "pp", "pending", None);
        ts_row(&ts, "iii", "inflight", None);
        ts_row(&ts, "dddd", "dead", None);
        ts_row(&ts, "eeeee", "pending", None);
        ts_row(&ts, "aaaaaa", "aborted", Some("eeeee"));
    }
    let mut conn = open(&path, Durability::Normal, true).unwrap();
    let backup = dir.path().join("outbox.db.ts-backup");
    assert_eq!(mode(&backup), 0o600);
    let old = Connection::open(&backup).unwrap();
    let n: i64 = old
        .query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 6);

    let by_cmid = |c: &str| {
        list(&conn, None, 100)
            .unwrap()
            .into_iter()
            .find(|r| r.client_message_id == c)
            .unwrap()
    };
    let done = by_cmid("c-d");
    assert_eq!(done.status, Status::Done);
    assert_eq!(done.broker_message_id.as_deref(), Some("bm-d"));
    for c in ["c-pp", "c-iii", "c-eeeee"] {
        let r = by_cmid(c);
        assert_eq!(r.status, Status::Dead, "{c}");
        assert_eq!(r.last_error.as_deref(), Some(IMPORTED_ERROR), "{c}");
        assert_eq!(r.attempts, 2);
    }
    let dead = by_cmid("c-dddd");
    assert_eq!(
        (dead.status, dead.last_error.as_deref()),
        (Status::Dead, Some("boom"))
    );
    let aborted = by_cmid("c-aaaaaa");
    assert_eq!(aborted.status, Status::Aborted);
    assert_eq!(aborted.superseded_by, Some(by_cmid("c-eeeee").id));
    let pp = by_cmid("c-pp");
    assert_eq!(pp.payload.as_deref(), Some(&b"body pp"[..]));
    assert_eq!(
        (pp.mesh.as_str(), pp.to.as_str(), pp.priority.as_str()),
        ("", "", "next")
    );

    // The done id keeps answering duplicates; an imported row without a destination is not
    // requeued as a guess.
    let mut again = send(Some("c-d"), 1, "*", Some("*"));
    again.fingerprint = [1; 32];
    assert!(matches!(
        accept1(&mut conn, again, NOW),
        Accepted::Duplicate { .. }
    ));
    let err = requeue(&mut conn, pp.id, None, "ipc", NOW).unwrap_err();
    assert!(
        matches!(err, RequeueError::DestinationUnknown { .. }),
        "{err}"
    );
    drop(conn);
    // Adoption happens once.
    let conn = open(&path, Durability::Normal, false).unwrap();
    assert_eq!(list(&conn, None, 100).unwrap().len(), 6);
    assert!(!dir
        .path()
        .join(format!("outbox.db.ts-backup-{NOW}"))
        .exists());
}

#[test]
fn a_version_1_outbox_with_rows_migrates_and_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(super::super::schema::V1).unwrap();
        conn.execute_batch(
            "INSERT INTO schema_version (version, applied_at) VALUES (1, 0);
             INSERT INTO outbox (client_message_id, request_fingerprint, payload, payload_bytes,
                 enqueued_at, next_attempt_at, status, mesh, to_spec, target, priority)
             VALUES ('keep-me', x'00', x'68', 1, 1, 1, 'pending', 'm1', '*', '*', 'next');",
        )
        .unwrap();
    }
    let conn = open(&path, Durability::Normal, true).unwrap();
    let versions = applied_versions(&conn);
    assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
    let row: String = conn
        .query_row("SELECT client_message_id FROM outbox", [], |r| r.get(0))
        .unwrap();
    assert_eq!(row, "keep-me");
    let sessions: i64 = conn
        .query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(sessions, 0);
}
