//! Unit tests of [`super`]: phase-A validation of `POST /v1/send`.

use serde_json::json;

use super::*;

const PK: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn parse(v: serde_json::Value) -> Result<SendRequest, ApiError> {
    parse_send(v.to_string().as_bytes(), None)
}

fn detail(r: Result<SendRequest, ApiError>) -> String {
    match r {
        Err(ApiError::InvalidRequest { detail }) => detail,
        other => panic!("expected invalid_request, got {other:?}"),
    }
}

#[test]
fn minimal_body_gets_defaults_and_trimmed_to() {
    let req = parse(json!({"to": "  bob \n", "message": "hi"})).unwrap();
    assert_eq!(req.to, "bob");
    assert_eq!(req.form, TargetForm::Name);
    assert_eq!(req.priority, Priority::Next);
    assert_eq!(req.meta, None);
    assert_eq!(req.reply_to_id, None);
    assert_eq!(req.client_message_id, None);
    assert_eq!(req.mesh, None);
}

#[test]
fn every_field_is_read_and_unknown_fields_are_ignored() {
    let req = parse(json!({
        "to": "#t1", "message": "m", "priority": "low", "meta": {"a": 1},
        "reply_to_id": "r1", "client_message_id": "id-1", "mesh": "work", "extra": [1]
    }))
    .unwrap();
    assert_eq!(req.form, TargetForm::Topic);
    assert_eq!(req.priority, Priority::Low);
    assert_eq!(req.meta.unwrap()["a"], 1);
    assert_eq!(req.reply_to_id.as_deref(), Some("r1"));
    assert_eq!(req.client_message_id.as_deref(), Some("id-1"));
    assert_eq!(req.mesh.as_deref(), Some("work"));
}

#[test]
fn null_optionals_count_as_absent() {
    let req = parse(
        json!({"to": "*", "message": "m", "priority": null, "meta": null,
        "reply_to_id": null, "client_message_id": null, "mesh": null}),
    )
    .unwrap();
    assert_eq!(req.priority, Priority::Next);
    assert_eq!(req.meta, None);
    assert_eq!(req.client_message_id, None);
}

#[test]
fn malformed_or_non_object_bodies_are_invalid_requests() {
    assert!(detail(parse_send(b"to=bob&message=hi", None)).contains("JSON"));
    assert!(detail(parse_send(b"[1,2]", None)).contains("object"));
    assert!(detail(parse_send(b"", None)).contains("JSON"));
}

#[test]
fn wrong_types_and_missing_fields_name_the_field() {
    assert!(detail(parse(json!({"message": "m"}))).contains("`to`"));
    assert!(detail(parse(json!({"to": 5, "message": "m"}))).contains("`to`"));
    assert!(detail(parse(json!({"to": "bob"}))).contains("`message`"));
    assert!(detail(parse(json!({"to": "bob", "message": ""}))).contains("empty"));
    assert!(detail(parse(json!({"to": "   ", "message": "m"}))).contains("empty"));
    assert!(detail(parse(json!({"to": "bob", "message": "m", "meta": [1]}))).contains("meta"));
    assert!(detail(parse(json!({"to": "bob", "message": "m", "mesh": 1}))).contains("mesh"));
    assert!(detail(parse(
        json!({"to": "bob", "message": "m", "reply_to_id": {}})
    ))
    .contains("reply_to_id"));
}

#[test]
fn unknown_priority_is_refused() {
    assert!(detail(parse(
        json!({"to": "bob", "message": "m", "priority": "urgent"})
    ))
    .contains("priority"));
    assert_eq!(
        parse(json!({"to": "bob", "message": "m", "priority": "now"}))
            .unwrap()
            .priority,
        Priority::Now
    );
}

#[test]
fn client_ids_must_be_1_to_128_printable_ascii() {
    let long = "a".repeat(129);
    let max = "a".repeat(128);
    for bad in ["", long.as_str(), "caf\u{e9}", "tab\tid", "nl\n"] {
        assert!(
            parse(json!({"to": "*", "message": "m", "client_message_id": bad})).is_err(),
            "{bad:?}"
        );
    }
    for good in [max.as_str(), "a b", "~!@#$%^&*()"] {
        assert!(parse(json!({"to": "*", "message": "m", "client_message_id": good})).is_ok());
    }
}

#[test]
fn idempotency_header_is_used_but_the_body_field_wins() {
    let body = json!({"to": "*", "message": "m"}).to_string();
    let req = parse_send(body.as_bytes(), Some(b"hdr-1")).unwrap();
    assert_eq!(req.client_message_id.as_deref(), Some("hdr-1"));
    let body = json!({"to": "*", "message": "m", "client_message_id": "body-1"}).to_string();
    let req = parse_send(body.as_bytes(), Some(b"hdr-1")).unwrap();
    assert_eq!(req.client_message_id.as_deref(), Some("body-1"));
    let body = json!({"to": "*", "message": "m"}).to_string();
    assert!(parse_send(body.as_bytes(), Some(b"\xff\xfe")).is_err());
    assert!(parse_send(body.as_bytes(), Some(b"")).is_err());
}

#[test]
fn target_forms_follow_the_spec() {
    assert_eq!(classify_target("*").unwrap(), TargetForm::Broadcast);
    assert_eq!(classify_target("@all").unwrap(), TargetForm::Broadcast);
    assert_eq!(classify_target("@devs").unwrap(), TargetForm::Group);
    assert_eq!(classify_target("#topic-1").unwrap(), TargetForm::Topic);
    assert_eq!(classify_target(PK).unwrap(), TargetForm::Pubkey);
    assert_eq!(
        classify_target(&PK.to_uppercase()).unwrap(),
        TargetForm::Name
    );
    assert_eq!(classify_target(&PK[..16]).unwrap(), TargetForm::Name);
    assert_eq!(classify_target("Bob").unwrap(), TargetForm::Name);
    assert!(classify_target("@").is_err());
    assert!(classify_target("#").is_err());
    assert!(classify_target("").is_err());
}

#[test]
fn base64_length_is_padded() {
    assert_eq!(base64_len(0), 0);
    assert_eq!(base64_len(1), 4);
    assert_eq!(base64_len(3), 4);
    assert_eq!(base64_len(4), 8);
}

#[test]
fn size_rule_matches_the_broker_limit_at_the_boundary() {
    // Pubkey target: base64(n + 16) + 32 + 64 <= 65536  <=>  n <= 49064.
    assert_eq!(broker_size(49_064, PK, TargetForm::Pubkey), 65_536);
    assert!(check_broker_size(49_064, PK, TargetForm::Pubkey).is_ok());
    assert!(matches!(
        check_broker_size(49_065, PK, TargetForm::Pubkey),
        Err(ApiError::PayloadTooLarge {
            limit_bytes: 65_536
        })
    ));
    // Names count as 64 whatever their own length.
    assert_eq!(
        broker_size(10, "bob", TargetForm::Name),
        broker_size(10, PK, TargetForm::Pubkey)
    );
    // Broadcast `*`: one char of targetSpec.
    assert!(check_broker_size(49_109, "*", TargetForm::Broadcast).is_ok());
    assert!(check_broker_size(49_110, "*", TargetForm::Broadcast).is_err());
}
