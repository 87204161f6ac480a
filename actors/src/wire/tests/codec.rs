//! Decoding edge cases: unknown types and fields, malformed frames, non-object text, and the
//! two shapes of `ack`.

use serde_json::json;

use super::*;

#[test]
fn unknown_broker_type_decodes_as_unknown_and_reencodes_its_raw_frame() {
    let raw = json!({"type": "state_change", "key": "k", "value": 1, "updatedBy": "x"});
    let frame = broker(raw.clone());
    assert_eq!(
        frame,
        BrokerFrame::Unknown {
            kind: "state_change".to_owned(),
            raw: raw.clone()
        }
    );
    assert_eq!(frame.kind(), "state_change");
    assert_eq!(to_value(&frame), raw);
}

#[test]
fn session_hello_and_other_unknown_client_types_decode_as_unknown() {
    for kind in ["session_hello", "kick", "set_state"] {
        let frame = client(json!({"type": kind, "meshId": "m"}));
        assert!(
            matches!(&frame, ClientFrame::Unknown { kind: k, .. } if k == kind),
            "{frame:?}"
        );
    }
}

#[test]
fn unknown_extra_fields_are_accepted_on_known_types() {
    let ack = ack_of(
        json!({"type": "ack", "id": "a", "messageId": "m", "queued": true,
                            "futureField": {"x": 1}}),
    );
    assert!(ack.is_success());
    let frame = client(json!({"type": "set_status", "status": "idle", "extra": true}));
    assert_eq!(
        frame,
        ClientFrame::SetStatus {
            status: "idle".to_owned()
        }
    );
}

#[test]
fn ack_without_message_id_decodes_as_malformed_instead_of_failing() {
    let raw = json!({"type": "ack", "id": "a", "queued": true});
    match broker(raw.clone()) {
        BrokerFrame::Malformed {
            kind,
            raw: kept,
            reason,
        } => {
            assert_eq!(kind, "ack");
            assert_eq!(kept, raw);
            assert!(reason.contains("messageId"), "{reason}");
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn malformed_frame_reencodes_its_raw_frame() {
    let raw = json!({"type": "push", "messageId": 7});
    let frame = broker(raw.clone());
    assert_eq!(frame.kind(), "push");
    assert_eq!(to_value(&frame), raw);
}

#[test]
fn text_that_is_not_a_typed_json_object_is_an_error() {
    assert!(matches!(
        decode_broker("not json"),
        Err(WireError::InvalidJson { len: 8, .. })
    ));
    assert!(matches!(
        decode_client("[1,2]"),
        Err(WireError::NotAnObject { found: "array" })
    ));
    assert!(matches!(
        decode_broker(r#"{"code":"x"}"#),
        Err(WireError::MissingType)
    ));
    assert!(matches!(
        decode_client(r#"{"type":5}"#),
        Err(WireError::TypeNotString { found: "number" })
    ));
}

#[test]
fn rate_limit_error_string_survives_byte_for_byte_with_its_em_dash() {
    let text = "rate_limit: max 60 msg/min (burst 10) \u{2014} slow down";
    let raw = json!({"type": "ack", "id": "c1", "messageId": "", "queued": false, "error": text});
    let ack = ack_of(raw.clone());
    assert_eq!(
        ack.error.as_deref().map(str::as_bytes),
        Some(text.as_bytes())
    );
    assert!(!ack.is_success());
    assert!(!ack.is_set_reply());
    assert_eq!(to_value(&BrokerFrame::Ack(ack)), raw);
}

#[test]
fn set_reply_ack_is_told_apart_from_send_acks() {
    let set_reply = ack_of(json!({"type": "ack", "id": "", "messageId": "", "queued": false}));
    assert!(set_reply.is_set_reply());
    assert!(!set_reply.is_success());
    let with_req = ack_of(
        json!({"type": "ack", "id": "r1", "messageId": "", "queued": false,
                                 "_reqId": "r1"}),
    );
    assert!(with_req.is_set_reply());
    assert_eq!(with_req.req_id.as_deref(), Some("r1"));
    let ok = ack_of(json!({"type": "ack", "id": "c1", "messageId": "M", "queued": true}));
    assert!(ok.is_success() && !ok.is_set_reply());
    let too_large = "payload too large: 69912 bytes > MAX_MESSAGE_BYTES=65536";
    let failed = ack_of(
        json!({"type": "ack", "id": "c1", "messageId": "", "queued": false,
                               "error": too_large}),
    );
    assert!(!failed.is_success() && !failed.is_set_reply());
}

#[test]
fn duplicate_ack_from_a_deduplicating_broker_is_a_success() {
    let ack = ack_of(
        json!({"type": "ack", "id": "c1", "messageId": "M", "queued": true,
                            "duplicate": true}),
    );
    assert!(ack.is_success());
    assert_eq!(ack.duplicate, Some(true));
}
