//! Validation of registrations and presence material (pure; the routes are exercised over
//! real sockets by the integration tests).

use super::*;

fn body(v: Value) -> Result<Registration, ApiError> {
    parse_registration(v.to_string().as_bytes())
}

fn good() -> Value {
    json!({"token": "ab".repeat(32), "session_id": "s1", "mesh": "m", "display_name": "agent",
           "pid": 42, "cwd": "/w", "role": "dev", "groups": ["@a"]})
}

#[test]
fn a_registration_needs_its_required_fields_well_formed() {
    let r = body(good()).unwrap();
    assert_eq!(r.session.session_id, "s1");
    assert_eq!(r.session.pid, 42);
    assert_eq!(r.session.groups, vec!["@a".to_string()]);
    assert!(r.presence.is_none());
    for (field, bad) in [
        ("token", json!("ab")),
        ("token", json!(null)),
        ("session_id", json!("")),
        ("mesh", json!(3)),
        ("display_name", json!(null)),
        ("pid", json!(0)),
        ("pid", json!(-1)),
        ("pid", json!("42")),
        ("pid", json!(4_294_967_296u64)),
        ("groups", json!("a")),
        ("groups", json!([1])),
        ("cwd", json!(1)),
    ] {
        let mut v = good();
        v[field] = bad.clone();
        assert!(
            matches!(body(v), Err(ApiError::InvalidRequest { .. })),
            "{field} = {bad}"
        );
    }
    assert!(parse_registration(b"not json").is_err());
    assert!(parse_registration(b"[]").is_err());
}

fn presence(keys: &MemberKeys, member: &str) -> Value {
    json!({
        "session_pubkey": keys.pubkey_hex(),
        "session_secret_key": keys.secret_hex(),
        "parent_attestation": {
            "session_pubkey": keys.pubkey_hex(),
            "parent_member_pubkey": member,
            "expires_at": 1_900_000_000_000i64,
            "signature": "cd".repeat(64),
        }
    })
}

#[test]
fn presence_must_be_a_consistent_keypair_vouched_for_by_this_member() {
    let keys = MemberKeys::generate();
    let member = "ee".repeat(32);
    let p = parse_presence(&presence(&keys, &member), &member).unwrap();
    assert_eq!(p.pubkey(), keys.pubkey_hex());
    let other = MemberKeys::generate();
    let mut swapped = presence(&keys, &member);
    swapped["session_secret_key"] = other.secret_hex().into();
    assert!(parse_presence(&swapped, &member).is_err());
    assert!(parse_presence(&presence(&keys, &"ff".repeat(32)), &member).is_err());
    let mut wrong_att = presence(&keys, &member);
    wrong_att["parent_attestation"]["session_pubkey"] = other.pubkey_hex().into();
    assert!(parse_presence(&wrong_att, &member).is_err());
    let mut no_att = presence(&keys, &member);
    no_att["parent_attestation"] = Value::Null;
    assert!(parse_presence(&no_att, &member).is_err());
    // A refusal never echoes the material.
    let err = parse_presence(&swapped, &member).unwrap_err();
    assert!(!err.contains(&other.secret_hex()[..16]));
}
