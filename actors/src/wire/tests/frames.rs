//! Encoding of the frames the daemon sends, and the typed helpers on received frames (system
//! events, `client_ack`, peers pass-through, known kinds).

use serde_json::json;

use super::*;

#[test]
fn daemon_hello_encodes_integer_timestamp_and_omits_unset_fields() {
    let hello = ClientFrame::Hello(Hello {
        mesh_id: "mesh".to_owned(),
        member_id: "member".to_owned(),
        pubkey: "ab".repeat(32),
        session_pubkey: None,
        display_name: Some("alice".to_owned()),
        session_id: "daemon-42".to_owned(),
        pid: 42,
        cwd: "/".to_owned(),
        hostname: None,
        peer_type: Some("ai".to_owned()),
        channel: Some("claudemesh-daemon".to_owned()),
        model: None,
        groups: Some(vec![Group {
            name: "ops".to_owned(),
            role: None,
        }]),
        protocol_version: None,
        capabilities: None,
        timestamp: 1_714_700_000_000.into(),
        signature: "cd".repeat(64),
    });
    assert_eq!(
        to_value(&hello),
        json!({"type": "hello", "meshId": "mesh", "memberId": "member", "pubkey": "ab".repeat(32),
               "displayName": "alice", "sessionId": "daemon-42", "pid": 42, "cwd": "/",
               "peerType": "ai", "channel": "claudemesh-daemon", "groups": [{"name": "ops"}],
               "timestamp": 1_714_700_000_000_i64, "signature": "cd".repeat(64)})
    );
}

#[test]
fn hello_with_string_timestamp_decodes_so_the_broker_can_answer_timestamp_skew() {
    let frame = client(
        json!({"type": "hello", "meshId": "m", "memberId": "b", "pubkey": "p",
                              "sessionId": "s", "pid": 1, "cwd": "/",
                              "timestamp": "1714700000000", "signature": "s"}),
    );
    let ClientFrame::Hello(hello) = frame else {
        panic!("expected Hello, got {frame:?}");
    };
    assert_eq!(hello.timestamp_ms(), None);
    assert_eq!(
        hello.timestamp,
        HelloTimestamp::Other(json!("1714700000000"))
    );
}

#[test]
fn send_with_invalid_priority_or_without_target_is_malformed() {
    let bad_priority = client(json!({"type": "send", "id": "x", "targetSpec": "*",
                                     "priority": "urgent", "nonce": "", "ciphertext": ""}));
    let ClientFrame::Malformed { kind, reason, .. } = bad_priority else {
        panic!("expected Malformed, got {bad_priority:?}");
    };
    assert_eq!(kind, "send");
    assert!(reason.contains("urgent"), "{reason}");
    let no_target = client(json!({"type": "send", "priority": "now", "nonce": "",
                                  "ciphertext": ""}));
    let ClientFrame::Malformed { kind, reason, .. } = no_target else {
        panic!("expected Malformed, got {no_target:?}");
    };
    assert_eq!(kind, "send");
    assert!(reason.contains("targetSpec"), "{reason}");
}

#[test]
fn daemon_send_encodes_snake_case_idempotency_fields_next_to_camel_case_ones() {
    let send = ClientFrame::Send(SendFrame {
        id: Some("c1".to_owned()),
        target_spec: "*".to_owned(),
        priority: Priority::Next,
        nonce: "n".to_owned(),
        ciphertext: "c".to_owned(),
        client_message_id: Some("c1".to_owned()),
        request_fingerprint: Some("f".repeat(64)),
        reply_to_id: None,
        mentions: None,
        body_version: None,
    });
    let expected = json!({"type": "send", "id": "c1", "client_message_id": "c1",
                          "request_fingerprint": "f".repeat(64), "targetSpec": "*",
                          "priority": "next", "nonce": "n", "ciphertext": "c"});
    assert_eq!(to_value(&send), expected);
    assert_eq!(client(expected), send);
}

#[test]
fn set_frames_encode_only_the_fields_that_are_set() {
    let profile = ClientFrame::SetProfile {
        avatar: None,
        title: Some("builder".to_owned()),
        bio: None,
        capabilities: None,
        req_id: None,
    };
    assert_eq!(
        to_value(&profile),
        json!({"type": "set_profile", "title": "builder"})
    );
    let visible = ClientFrame::SetVisible {
        visible: false,
        req_id: None,
    };
    assert_eq!(
        to_value(&visible),
        json!({"type": "set_visible", "visible": false})
    );
    let missing_summary = client(json!({"type": "set_summary"}));
    assert_eq!(
        missing_summary,
        ClientFrame::SetSummary {
            summary: String::new()
        }
    );
}

#[test]
fn client_ack_for_a_push_uses_camel_case_ids_and_prefers_client_message_id() {
    let base = json!({"type": "push", "messageId": "B1", "meshId": "m", "senderPubkey": "p",
                      "priority": "next", "nonce": "n", "ciphertext": "c",
                      "createdAt": "2026-11-28T02:09:22.117Z"});
    let plain = push_of(base.clone());
    assert_eq!(
        to_value(&plain.client_ack()),
        json!({"type": "client_ack", "clientMessageId": "B1", "brokerMessageId": "B1"})
    );
    let mut with_id = base;
    with_id["client_message_id"] = json!("C1");
    let keyed = push_of(with_id);
    assert_eq!(keyed.dedupe_key(), "C1");
    assert_eq!(
        to_value(&keyed.client_ack()),
        json!({"type": "client_ack", "clientMessageId": "C1", "brokerMessageId": "B1"})
    );
}

#[test]
fn system_events_are_classified_and_incomplete_ones_fall_back_to_other() {
    let returned = push_of(system_push(
        "peer_returned",
        json!({"name": "bob", "pubkey": "k", "groups": [{"name": "ops", "role": "lead"}, 7],
               "lastSeenAt": "2026-11-28T02:09:22.879Z", "summary": "busy"}),
    ));
    assert_eq!(
        returned.system_event(),
        Some(SystemEvent::PeerReturned {
            name: "bob".to_owned(),
            pubkey: "k".to_owned(),
            groups: vec![Group {
                name: "ops".to_owned(),
                role: Some("lead".to_owned())
            }],
            last_seen_at: Some("2026-11-28T02:09:22.879Z".to_owned()),
            summary: Some("busy".to_owned()),
        })
    );
    let data = json!({"name": "bob", "pubkey": "k"});
    let hidden = push_of(system_push("peer_hidden", data.clone()));
    assert_eq!(
        hidden.system_event(),
        Some(SystemEvent::Other {
            event: "peer_hidden".to_owned(),
            data
        })
    );
    let no_pubkey = push_of(system_push("peer_joined", json!({"name": "bob"})));
    assert!(matches!(
        no_pubkey.system_event(),
        Some(SystemEvent::Other { ref event, .. }) if event == "peer_joined"
    ));
}

#[test]
fn message_push_is_not_a_system_event() {
    let push = push_of(json!({"type": "push", "messageId": "B1", "meshId": "m",
                              "senderPubkey": "p", "priority": "now", "nonce": "n",
                              "ciphertext": "c", "createdAt": "t", "subtype": "reminder"}));
    assert!(!push.is_system());
    assert_eq!(push.system_event(), None);
}

#[test]
fn peers_list_keeps_untyped_peer_fields_and_reencodes_them() {
    let raw = json!({"type": "peers_list", "_reqId": "pl-1", "peers": [
        {"pubkey": "k", "displayName": "bob", "summary": null, "groups": [],
         "role": "legacy", "future": {"a": [1, 2]}}]});
    let frame = broker(raw.clone());
    let BrokerFrame::PeersList { req_id, peers } = &frame else {
        panic!("expected PeersList, got {frame:?}");
    };
    assert_eq!(req_id.as_deref(), Some("pl-1"));
    assert_eq!(peers[0].extra.get("role"), Some(&json!("legacy")));
    assert_eq!(peers[0].extra.get("future"), Some(&json!({"a": [1, 2]})));
    assert_eq!(to_value(&frame), raw);
}

#[test]
fn hello_ack_with_services_and_unknown_fields_decodes() {
    let frame = broker(
        json!({"type": "hello_ack", "presenceId": "P", "memberDisplayName": "a",
                              "services": [], "lastSummary": "s", "newThing": 1}),
    );
    let BrokerFrame::HelloAck(ack) = frame else {
        panic!("expected HelloAck, got {frame:?}");
    };
    assert_eq!(ack.services, Some(json!([])));
    assert_eq!(ack.last_summary.as_deref(), Some("s"));
}

#[test]
fn every_typed_variant_round_trips_and_its_kind_is_in_known_kinds() {
    let clients = [
        json!({"type": "list_peers", "_reqId": "pl-1"}),
        json!({"type": "set_status", "status": "dnd"}),
        json!({"type": "set_summary", "summary": "s"}),
        json!({"type": "set_visible", "visible": true, "_reqId": "r"}),
        json!({"type": "set_profile", "avatar": "a", "title": "t", "bio": "b",
               "capabilities": ["x"], "_reqId": "r"}),
        json!({"type": "set_stats", "stats": {"messagesIn": 1}}),
        json!({"type": "join_group", "name": "ops", "role": "lead"}),
        json!({"type": "leave_group", "name": "ops"}),
        json!({"type": "client_ack", "clientMessageId": "c", "brokerMessageId": "b"}),
    ];
    for raw in clients {
        let frame = client(raw.clone());
        assert!(
            ClientFrame::KNOWN_KINDS.contains(&frame.kind()),
            "{frame:?}"
        );
        assert!(!matches!(
            frame,
            ClientFrame::Malformed { .. } | ClientFrame::Unknown { .. }
        ));
        assert_eq!(to_value(&frame), raw);
    }
    let error = json!({"type": "error", "code": "no_hello", "message": "m", "id": "i"});
    let frame = broker(error.clone());
    assert!(matches!(frame, BrokerFrame::Error { .. }));
    assert_eq!(to_value(&frame), error);
    let kinds: Vec<&str> = [
        "hello",
        "send",
        "list_peers",
        "set_status",
        "set_summary",
        "set_visible",
        "set_profile",
        "set_stats",
        "join_group",
        "leave_group",
        "client_ack",
    ]
    .to_vec();
    assert_eq!(ClientFrame::KNOWN_KINDS, kinds.as_slice());
}
