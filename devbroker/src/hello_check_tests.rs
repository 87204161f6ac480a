use claudemesh_actors::crypto::MemberKeys;
use serde_json::json;

use super::*;

const NOW: i64 = 1_714_700_000_000;

fn signed(keys: &MemberKeys, ts: i64) -> Value {
    json!({
        "type": "hello", "meshId": "mesh1", "memberId": "member1",
        "pubkey": keys.pubkey_hex(), "sessionId": "s", "pid": 1, "cwd": "/",
        "timestamp": ts, "signature": keys.sign_hello("mesh1", "member1", ts),
    })
}

#[test]
fn a_correctly_signed_hello_passes_and_exactly_sixty_seconds_of_skew_is_accepted() {
    let keys = MemberKeys::generate();
    assert_eq!(check_signature(&signed(&keys, NOW), NOW), Ok(()));
    assert_eq!(check_signature(&signed(&keys, NOW - 60_000), NOW), Ok(()));
    assert_eq!(check_signature(&signed(&keys, NOW + 60_000), NOW), Ok(()));
}

#[test]
fn skew_over_sixty_seconds_or_a_string_timestamp_is_timestamp_skew() {
    let keys = MemberKeys::generate();
    let late = signed(&keys, NOW - 60_001);
    assert_eq!(
        check_signature(&late, NOW),
        Err(HelloRejection::TimestampSkew)
    );
    let mut text = signed(&keys, NOW);
    text["timestamp"] = json!(NOW.to_string());
    assert_eq!(
        check_signature(&text, NOW),
        Err(HelloRejection::TimestampSkew)
    );
}

#[test]
fn skew_is_checked_before_the_hex_shapes() {
    let mut hello = signed(&MemberKeys::generate(), NOW - 120_000);
    hello["pubkey"] = json!("nothex");
    assert_eq!(
        check_signature(&hello, NOW),
        Err(HelloRejection::TimestampSkew)
    );
}

#[test]
fn bad_hex_shapes_are_malformed_and_a_wrong_signature_is_bad_signature() {
    let keys = MemberKeys::generate();
    let mut short = signed(&keys, NOW);
    short["signature"] = json!("abcd");
    assert_eq!(check_signature(&short, NOW), Err(HelloRejection::Malformed));
    let mut missing = signed(&keys, NOW);
    missing.as_object_mut().unwrap().remove("pubkey");
    assert_eq!(
        check_signature(&missing, NOW),
        Err(HelloRejection::Malformed)
    );
    let mut other_member = signed(&keys, NOW);
    other_member["memberId"] = json!("member2");
    assert_eq!(
        check_signature(&other_member, NOW),
        Err(HelloRejection::BadSignature)
    );
}

#[test]
fn uppercase_hex_is_accepted_for_pubkey_and_signature() {
    let keys = MemberKeys::generate();
    let upper = keys.pubkey_hex().to_uppercase();
    let canonical = format!("mesh1|member1|{upper}|{NOW}");
    let mut hello = signed(&keys, NOW);
    hello["pubkey"] = json!(upper);
    hello["signature"] = json!(keys.sign_hex(canonical.as_bytes()).to_uppercase());
    assert_eq!(check_signature(&hello, NOW), Ok(()));
}

#[test]
fn a_missing_member_id_is_signed_as_undefined_like_javascript() {
    let keys = MemberKeys::generate();
    let canonical = format!("mesh1|undefined|{}|{NOW}", keys.pubkey_hex());
    let mut hello = signed(&keys, NOW);
    hello.as_object_mut().unwrap().remove("memberId");
    hello["signature"] = json!(keys.sign_hex(canonical.as_bytes()));
    assert_eq!(check_signature(&hello, NOW), Ok(()));
}

#[test]
fn session_pubkey_must_be_lowercase_64_hex_when_truthy() {
    let key = "ab".repeat(32);
    assert_eq!(check_session_pubkey(&json!({})), Ok(None));
    assert_eq!(
        check_session_pubkey(&json!({"sessionPubkey": ""})),
        Ok(None)
    );
    assert_eq!(
        check_session_pubkey(&json!({ "sessionPubkey": key })),
        Ok(Some(key.clone()))
    );
    assert_eq!(
        check_session_pubkey(&json!({ "sessionPubkey": key.to_uppercase() })),
        Err(HelloRejection::BadSessionPubkey)
    );
    assert_eq!(
        check_session_pubkey(&json!({"sessionPubkey": 12})),
        Err(HelloRejection::BadSessionPubkey)
    );
}

#[test]
fn rejection_codes_and_messages_match_the_broker() {
    assert_eq!(HelloRejection::BadSignature.code(), "bad_signature");
    assert_eq!(
        HelloRejection::BadSignature.message(),
        "hello rejected: bad_signature"
    );
    assert_eq!(
        HelloRejection::TimestampSkew.message(),
        "hello rejected: timestamp_skew"
    );
    assert_eq!(
        HelloRejection::Malformed.message(),
        "hello rejected: malformed"
    );
}
