use serde_json::{json, Value};

use super::*;

/// The known answers of `tests/fixtures/crypto-vectors.json` (`keys`, `session_hello`).
fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/crypto-vectors.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The `session_hello` the vectors sign, and the `now` at which it is fresh.
fn signed() -> (Value, i64) {
    let v = vectors();
    let sh = &v["session_hello"];
    let parent = v["keys"]["A"]["pubkey_hex"].as_str().unwrap();
    let session = v["keys"]["A_session"]["pubkey_hex"].as_str().unwrap();
    let hello_canonical = sh["hello_canonical"].as_str().unwrap();
    let mesh_id = hello_canonical.split('|').nth(1).unwrap();
    let ts = sh["timestamp"].as_i64().unwrap();
    let raw = json!({
        "type": "session_hello", "meshId": mesh_id, "parentMemberId": "m1",
        "parentMemberPubkey": parent, "sessionPubkey": session,
        "parentAttestation": {
            "sessionPubkey": session, "parentMemberPubkey": parent,
            "expiresAt": sh["expiresAt"], "signature": sh["attestation_signature_hex_by_member_key"],
        },
        "sessionId": "s1", "pid": 1, "cwd": "/",
        "timestamp": ts, "signature": sh["hello_signature_hex_by_session_key"],
    });
    (raw, ts)
}

fn code_of(raw: &Value, now: i64) -> &'static str {
    match check_shapes(raw).and_then(|_| check_signatures(raw, now)) {
        Ok(()) => "ok",
        Err(rejection) => rejection.code,
    }
}

#[test]
fn the_known_answer_session_hello_passes_every_check() {
    let (raw, now) = signed();
    let (session, parent) = check_shapes(&raw).unwrap();
    assert_eq!(session, raw["sessionPubkey"].as_str().unwrap());
    assert_eq!(parent, raw["parentMemberPubkey"].as_str().unwrap());
    assert_eq!(check_signatures(&raw, now), Ok(()));
    // ±60 s of skew is still fresh.
    assert_eq!(code_of(&raw, now + 60_000), "ok");
    assert_eq!(code_of(&raw, now - 60_000), "ok");
}

#[test]
fn the_shape_and_binding_checks_come_first_with_their_codes() {
    let (raw, now) = signed();
    let mut upper = raw.clone();
    upper["sessionPubkey"] = json!(raw["sessionPubkey"].as_str().unwrap().to_uppercase());
    assert_eq!(code_of(&upper, now), "bad_session_pubkey");
    let mut parent = raw.clone();
    parent["parentMemberPubkey"] = json!("abc");
    // Even with a stale timestamp, the shape is what is reported.
    parent["timestamp"] = json!(0);
    assert_eq!(code_of(&parent, now), "bad_parent_pubkey");
    let mut unbound = raw.clone();
    unbound["parentAttestation"]["sessionPubkey"] = json!("0".repeat(64));
    assert_eq!(code_of(&unbound, now), "attestation_mismatch");
    let mut missing = raw.clone();
    missing.as_object_mut().unwrap().remove("parentAttestation");
    assert_eq!(code_of(&missing, now), "attestation_mismatch");
}

#[test]
fn the_attestation_is_checked_before_the_session_signature() {
    let (raw, now) = signed();
    let expires = raw["parentAttestation"]["expiresAt"].as_i64().unwrap();
    assert_eq!(code_of(&raw, expires), "expired");
    assert_eq!(code_of(&raw, expires - 24 * 3_600_000 - 1), "ttl_too_long");
    let mut text = raw.clone();
    text["parentAttestation"]["expiresAt"] = json!(expires.to_string());
    assert_eq!(code_of(&text, now), "malformed");
    let mut short = raw.clone();
    short["parentAttestation"]["signature"] = json!("abcd");
    assert_eq!(code_of(&short, now), "malformed");
    let mut forged = raw.clone();
    forged["parentAttestation"]["signature"] = raw["signature"].clone();
    // A wrong attestation is reported even when the session timestamp is stale too.
    forged["timestamp"] = json!(now - 120_000);
    assert_eq!(code_of(&forged, now), "bad_signature");
    let rejection = check_signatures(&forged, now).unwrap_err();
    assert_eq!(rejection.message, "attestation rejected: bad_signature");
}

#[test]
fn the_session_signature_checks_skew_then_shape_then_the_session_key() {
    let (raw, now) = signed();
    assert_eq!(code_of(&raw, now + 60_001), "timestamp_skew");
    let mut text = raw.clone();
    text["timestamp"] = json!(now.to_string());
    assert_eq!(code_of(&text, now), "timestamp_skew");
    let mut short = raw.clone();
    short["signature"] = json!("00");
    assert_eq!(code_of(&short, now), "malformed");
    let mut forged = raw.clone();
    forged["signature"] = raw["parentAttestation"]["signature"].clone();
    let rejection = check_signatures(&forged, now).unwrap_err();
    assert_eq!(rejection.code, "bad_signature");
    assert_eq!(rejection.message, "session_hello rejected: bad_signature");
    let mut other_mesh = raw.clone();
    other_mesh["meshId"] = json!("another-mesh");
    assert_eq!(code_of(&other_mesh, now), "bad_signature");
}
