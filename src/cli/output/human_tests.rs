//! Human renderings of representative documents.

use super::*;

#[test]
fn status_lists_links_and_outbox_depth() {
    let h = json!({"pid": 7, "version": "0.1.0", "uptime_s": 3, "socket": "/s",
        "tcp": null, "default_mesh": "w",
        "meshes": [{"slug": "w", "broker_status": "reconnecting", "last_error": "boom",
                    "connected_since": null},
                   {"slug": "v", "broker_status": "open", "last_error": null,
                    "connected_since": null, "session_id": "daemon-0123456789abcdef",
                    "session_connections": {"open": 1, "total": 2}}],
        "outbox": {"pending": 2, "inflight": 0, "dead": 1, "oldest_pending_age_s": 300},
        "sse_streams": 0});
    let text = status(&h);
    assert!(text.starts_with("running: pid 7, version 0.1.0, up 3 s\n"));
    assert!(text.contains("tcp: off"));
    assert!(text.contains("mesh w: reconnecting (last error: boom)"));
    assert!(text
        .contains("mesh v: open, session daemon-0123456789abcdef; session connections 1/2 open"));
    assert!(text.contains("outbox: 2 pending, 0 inflight, 1 dead; oldest pending: 5 min"));
}

#[test]
fn inbox_prints_oldest_first_with_the_cursor() {
    let v = json!({"items": [
        {"received_at": "t2", "mesh": "m", "sender_name": "bob", "body": "second"},
        {"received_at": "t1", "mesh": "m", "sender_pubkey": "0123456789abcdef0123", "body": null}
    ], "next_before": 5});
    assert_eq!(
        inbox(&v),
        "t1  m  0123456789abcdef: (undecryptable)\nt2  m  bob: second\n(older messages: --before 5)"
    );
    assert_eq!(inbox(&json!({"items": []})), "no messages");
}

#[test]
fn table_aligns_columns() {
    let t = table(&[
        vec!["A".into(), "BB".into(), "C".into()],
        vec!["long".into(), "x".into(), "y".into()],
    ]);
    assert_eq!(t, "A     BB  C\nlong  x   y");
}

#[test]
fn events_render_for_humans_and_as_json_lines() {
    let ev = SseEvent {
        id: Some("4".into()),
        event: "message".into(),
        data: r#"{"kind":"message","mesh":"m","sender_name":"bob","body":"hi"}"#.into(),
    };
    assert_eq!(event(&ev), "[4] message m: from bob: hi");
    assert_eq!(event_json(&ev)["id"], 4);
    assert_eq!(event_json(&ev)["data"]["body"], "hi");
    let reset = SseEvent {
        id: None,
        event: "reset".into(),
        data: r#"{"oldest_id":5,"newest_id":9}"#.into(),
    };
    assert!(event(&reset).contains("oldest 5, newest 9"));
}

#[test]
fn ages_use_readable_units() {
    assert_eq!(age(5), "5 s");
    assert_eq!(age(600), "10 min");
    assert_eq!(age(36_000), "10 h");
}

#[test]
fn peers_are_grouped_by_member_with_each_presence_role() {
    let bob = "b0".repeat(32);
    let v = json!({"peers": [
        {"pubkey": "5e".repeat(32), "memberPubkey": bob, "displayName": "reviewer",
         "peerRole": "session", "status": "working", "summary": "PR 7", "mesh": "m"},
        {"pubkey": "ca".repeat(32), "memberPubkey": "ca".repeat(32), "displayName": "carol"},
        {"pubkey": bob, "memberPubkey": bob, "displayName": "bob", "peerRole": "control-plane",
         "status": "idle", "summary": null},
    ], "stale": false});
    assert_eq!(
        peers(&v),
        format!(
            "MEMBER  PRESENCE  ROLE           PUBKEY            STATUS   SUMMARY\n\
             bob     bob       member daemon  {b16}  idle\n        \
             reviewer  session        {s16}  working  PR 7\n\
             carol   carol     member         {c16}  -\n\
             2 members, 3 presences",
            b16 = &bob[..16],
            s16 = &"5e".repeat(8),
            c16 = &"ca".repeat(8)
        )
    );
    assert_eq!(peers(&json!({"peers": []})), "no peers online");
}

#[test]
fn sessions_list_shows_presence_and_a_short_pubkey() {
    let v = json!({"sessions": [{"session_id": "s1", "mesh": "m", "display_name": "agent",
        "pid": 42, "presence_status": "pending", "session_pubkey": "ab".repeat(32),
        "registered_at": claudemesh_actors::time::iso_from_ms(claudemesh_actors::time::now_ms() - 90_000)}]});
    let text = sessions(&v);
    assert!(
        text.starts_with("SESSION  MESH  NAME   PID  PRESENCE  PUBKEY            AGE\n"),
        "{text}"
    );
    assert!(
        text.ends_with(&format!(
            "s1       m     agent  42   pending   {}  90 s",
            "ab".repeat(8)
        )),
        "{text}"
    );
    assert!(sessions(&json!({"sessions": []})).starts_with("no sessions registered"));
}

#[test]
fn outbox_list_shortens_pubkey_targets_only() {
    let v = json!({"items": [
        {"id": 1, "status": "pending", "attempts": 0, "mesh": "m", "to": "ab".repeat(32),
         "client_message_id": "c", "enqueued_at": "t"},
        {"id": 2, "status": "done", "attempts": 1, "mesh": "m", "to": "bob",
         "client_message_id": "d", "enqueued_at": "t", "broker_message_id": "x"}]});
    let text = outbox_list(&v);
    assert!(text.contains(&format!("{}…", "ab".repeat(8))), "{text}");
    assert!(!text.contains(&"ab".repeat(9)));
    assert!(text.contains("  bob  "));
}
