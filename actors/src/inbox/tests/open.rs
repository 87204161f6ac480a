use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rusqlite::Connection;

use super::{fresh_db, msg};
use crate::inbox::store::{
    insert_message, open, open_for_startup, open_or_quarantine, quarantine, query,
    was_clean_shutdown, write_clean_shutdown, InboxError, InboxQuery, Inserted, SCHEMA_VERSION,
};

const NOW_MS: i64 = 1_714_700_000_123;

fn all(conn: &Connection) -> Vec<crate::inbox::store::InboxItem> {
    query(
        conn,
        &InboxQuery {
            limit: 1000,
            ..InboxQuery::default()
        },
    )
    .unwrap()
    .0
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn new_database_is_0600_wal_and_records_its_schema_version() {
    let (_d, path, conn) = fresh_db();
    assert_eq!(mode(&path), 0o600);
    let journal: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
    let sync: i64 = conn
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .unwrap();
    assert_eq!(sync, 1, "NORMAL");
    let version: i64 = conn
        .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    drop(conn);
    // Reopening does not migrate again.
    let conn = open(&path, true).unwrap();
    let rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM schema_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        rows, SCHEMA_VERSION,
        "one row per migration, none applied twice"
    );
}

#[test]
fn database_from_a_newer_binary_is_refused() {
    let (_d, path, conn) = fresh_db();
    conn.execute(
        "UPDATE schema_version SET version = ?1",
        [SCHEMA_VERSION + 1],
    )
    .unwrap();
    drop(conn);
    match open(&path, false) {
        Err(InboxError::TooNew {
            found, supported, ..
        }) => {
            assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        other => panic!("expected TooNew, got {other:?}"),
    }
}

fn quarantined_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("inbox.db.corrupt-"))
        .collect();
    names.sort();
    names
}

#[test]
fn garbage_file_is_quarantined_and_a_fresh_database_opened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inbox.db");
    fs::write(&path, vec![0xA5u8; 8192]).unwrap();
    assert!(matches!(
        open(&path, false),
        Err(InboxError::Corrupt { .. })
    ));
    let (mut conn, moved) = open_or_quarantine(&path, false, NOW_MS).unwrap();
    let moved = moved.unwrap();
    assert_eq!(moved, dir.path().join("inbox.db.corrupt-1714700000"));
    assert_eq!(fs::read(&moved).unwrap(), vec![0xA5u8; 8192]);
    assert_eq!(
        quarantined_files(dir.path()),
        ["inbox.db.corrupt-1714700000"]
    );
    assert!(matches!(
        insert_message(&mut conn, &msg(None, "b1", 1), 100).unwrap(),
        Inserted::New { .. }
    ));
}

#[test]
fn corrupted_pages_in_a_valid_database_fail_the_integrity_check_and_are_quarantined() {
    let (dir, path, mut conn) = fresh_db();
    for i in 0..400 {
        let mut m = msg(None, &format!("b{i}"), i);
        m.body = Some(format!("{i:04}").repeat(300));
        insert_message(&mut conn, &m, 10_000).unwrap();
    }
    drop(conn); // last connection: checkpoints the WAL into the main file
    let len = fs::metadata(&path).unwrap().len();
    assert!(len > 100 * 4096, "want a multi-page file, got {len} bytes");
    // Overwrite a few pages in the middle (never page 1, the header): invalid page types and
    // out-of-range overflow pointers, whatever those pages held.
    let mut f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.seek(SeekFrom::Start((len / 4096 / 2) * 4096)).unwrap();
    f.write_all(&vec![0xFFu8; 3 * 4096]).unwrap();
    drop(f);
    // Opening without the check does not notice: only integrity_check reads every page.
    drop(open(&path, false).unwrap());
    match open(&path, true) {
        Err(e) => assert!(e.is_corrupt(), "expected corruption, got {e:?}"),
        Ok(_) => panic!("integrity_check missed the damage"),
    }
    let (conn, moved) = open_or_quarantine(&path, true, NOW_MS).unwrap();
    assert!(moved.unwrap().exists());
    assert_eq!(quarantined_files(dir.path()).len(), 1);
    assert!(all(&conn).is_empty());
}

#[test]
fn quarantine_moves_wal_and_shm_and_never_overwrites_an_earlier_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inbox.db");
    for _ in 0..2 {
        fs::write(&path, b"x").unwrap();
        fs::write(dir.path().join("inbox.db-wal"), b"w").unwrap();
        fs::write(dir.path().join("inbox.db-shm"), b"s").unwrap();
        quarantine(&path, NOW_MS).unwrap();
    }
    assert_eq!(
        quarantined_files(dir.path()),
        [
            "inbox.db.corrupt-1714700000",
            "inbox.db.corrupt-1714700000-shm",
            "inbox.db.corrupt-1714700000-wal",
            "inbox.db.corrupt-1714700000.1",
            "inbox.db.corrupt-1714700000.1-shm",
            "inbox.db.corrupt-1714700000.1-wal",
        ]
    );
    assert!(!path.exists());
}

#[test]
fn startup_checks_integrity_only_after_an_unclean_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inbox.db");
    let first = open_for_startup(&path, NOW_MS).unwrap();
    assert!(first.integrity_checked, "a new file has no marker");
    assert!(
        !was_clean_shutdown(&first.conn),
        "running clears the marker"
    );
    write_clean_shutdown(&first.conn, true).unwrap();
    assert!(was_clean_shutdown(&first.conn));
    drop(first);
    let second = open_for_startup(&path, NOW_MS).unwrap();
    assert!(!second.integrity_checked);
    assert!(second.quarantined.is_none());
    drop(second); // crash: no marker written
    let third = open_for_startup(&path, NOW_MS).unwrap();
    assert!(third.integrity_checked);
}

#[test]
fn typescript_daemon_database_is_adopted_and_its_original_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inbox.db");
    let ts = Connection::open(&path).unwrap();
    ts.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE inbox (
           id TEXT PRIMARY KEY, client_message_id TEXT NOT NULL UNIQUE, broker_message_id TEXT,
           mesh TEXT NOT NULL, topic TEXT, sender_pubkey TEXT NOT NULL, sender_name TEXT NOT NULL,
           body TEXT, meta TEXT, received_at INTEGER NOT NULL, reply_to_id TEXT,
           seen_at INTEGER, recipient_pubkey TEXT, recipient_kind TEXT);
         CREATE INDEX inbox_received_at ON inbox(received_at);
         CREATE INDEX inbox_topic ON inbox(topic);
         INSERT INTO inbox (id, client_message_id, broker_message_id, mesh, topic, sender_pubkey,
                            sender_name, body, received_at)
         VALUES ('u2', 'cm-2', 'bm-2', 'm1', NULL, 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'bob', 'second', 2000),
                ('u1', 'bm-1', 'bm-1', 'm1', 'ops', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'bob', 'first', 1000),
                ('u3', 'bm-3', 'bm-3', 'm1', NULL, 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'bob', NULL, 3000);",
    )
    .unwrap();
    drop(ts);

    let mut conn = open(&path, false).unwrap();
    let items = all(&conn);
    let summary: Vec<_> = items
        .iter()
        .map(|i| {
            (
                i.broker_message_id.as_str(),
                i.client_message_id.as_deref(),
                i.kind.as_str(),
                i.decrypt_error,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("bm-3", None, "undecryptable", true),
            ("bm-2", Some("cm-2"), "plain", false),
            ("bm-1", None, "plain", false),
        ]
    );
    assert_eq!(items[2].topic.as_deref(), Some("ops"));
    assert_eq!(items[2].received_at, 1000);
    // Imported ids keep answering as duplicates.
    assert_eq!(
        insert_message(&mut conn, &msg(Some("cm-2"), "bm-9", 9), 100).unwrap(),
        Inserted::Duplicate
    );
    assert_eq!(
        insert_message(&mut conn, &msg(None, "bm-1", 9), 100).unwrap(),
        Inserted::Duplicate
    );

    let backup = dir.path().join("inbox.db.ts-backup");
    assert_eq!(mode(&backup), 0o600);
    let original = Connection::open(&backup).unwrap();
    let rows: i64 = original
        .query_row("SELECT COUNT(*) FROM inbox", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 3);
    let versioned: i64 = original
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(versioned, 0, "the backup is the untouched original");
}
