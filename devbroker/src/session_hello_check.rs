//! The stateless checks of the head broker's `session_hello` (BROKER-PROTOCOL §1.10), in its
//! order: the two pubkey shapes, the attestation binding both pubkeys, then (after the
//! capacity check, which needs broker state) the parent attestation — `expiresAt` finite, in
//! the future, at most 24 h ahead, hex shapes, the member-key signature over
//! `claudemesh-session-attest|<parent>|<session>|<expiresAt>` — and the session signature —
//! ±60 s skew, hex shapes, the session-key signature over
//! `claudemesh-session-hello|<meshId>|<parent>|<session>|<timestamp>`.
//!
//! Each failure is an `error.code` that is also the close reason under 1008. Read from the raw
//! JSON, numbers rendered as JavaScript renders them. Pure: no actix, no I/O.

use claudemesh_actors::crypto::{verify_hex, CryptoError};
use serde_json::Value;

use crate::hello_check::{is_hex, js_number, js_string, MAX_SKEW_MS};

/// Longest accepted attestation lifetime (24 h).
pub const MAX_ATTESTATION_TTL_MS: f64 = 24.0 * 60.0 * 60.0 * 1000.0;

/// A rejected `session_hello`: the code (also the close reason) and the error message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRejection {
    /// `error.code` and close reason.
    pub code: &'static str,
    /// `error.message`.
    pub message: String,
}

fn reject(code: &'static str, message: impl Into<String>) -> SessionRejection {
    SessionRejection {
        code,
        message: message.into(),
    }
}

fn str_field<'a>(raw: &'a Value, key: &str) -> &'a str {
    raw.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// Steps 1–2: the pubkey shapes (lowercase 64-hex) and the attestation binding both pubkeys.
/// Returns `(session_pubkey, parent_member_pubkey)`.
pub fn check_shapes(raw: &Value) -> Result<(String, String), SessionRejection> {
    let session = str_field(raw, "sessionPubkey");
    if !is_hex(session, 64, false) {
        return Err(reject(
            "bad_session_pubkey",
            "sessionPubkey must be 64 lowercase hex chars",
        ));
    }
    let parent = str_field(raw, "parentMemberPubkey");
    if !is_hex(parent, 64, false) {
        return Err(reject(
            "bad_parent_pubkey",
            "parentMemberPubkey must be 64 lowercase hex chars",
        ));
    }
    let binds = raw.get("parentAttestation").is_some_and(|att| {
        att.get("sessionPubkey").and_then(Value::as_str) == Some(session)
            && att.get("parentMemberPubkey").and_then(Value::as_str) == Some(parent)
    });
    if !binds {
        return Err(reject(
            "attestation_mismatch",
            "parentAttestation does not bind the claimed session+parent pubkeys",
        ));
    }
    Ok((session.to_owned(), parent.to_owned()))
}

/// Steps 4–5: the parent attestation, then the session signature, at `now_ms`.
pub fn check_signatures(raw: &Value, now_ms: i64) -> Result<(), SessionRejection> {
    check_attestation(raw, now_ms)
        .map_err(|code| reject(code, format!("attestation rejected: {code}")))?;
    check_session_signature(raw, now_ms)
        .map_err(|code| reject(code, format!("session_hello rejected: {code}")))
}

fn verify(pubkey: &str, canonical: &str, signature: &str) -> Result<(), &'static str> {
    match verify_hex(pubkey, canonical.as_bytes(), signature) {
        Ok(()) => Ok(()),
        Err(CryptoError::Malformed { .. }) => Err("malformed"),
        Err(_) => Err("bad_signature"),
    }
}

fn shapes_ok(parent: &str, session: &str, signature: &str) -> bool {
    is_hex(parent, 64, true) && is_hex(session, 64, true) && is_hex(signature, 128, true)
}

fn check_attestation(raw: &Value, now_ms: i64) -> Result<(), &'static str> {
    let att = raw.get("parentAttestation").unwrap_or(&Value::Null);
    let Some(Value::Number(expires)) = att.get("expiresAt") else {
        return Err("malformed");
    };
    let expires_at = expires.as_f64().ok_or("malformed")?;
    let now = now_ms as f64;
    if expires_at <= now {
        return Err("expired");
    }
    if expires_at > now + MAX_ATTESTATION_TTL_MS {
        return Err("ttl_too_long");
    }
    let parent = str_field(att, "parentMemberPubkey");
    let session = str_field(att, "sessionPubkey");
    let signature = str_field(att, "signature");
    if !shapes_ok(parent, session, signature) {
        return Err("malformed");
    }
    let canonical = format!(
        "claudemesh-session-attest|{parent}|{session}|{}",
        js_number(expires)
    );
    verify(parent, &canonical, signature)
}

fn check_session_signature(raw: &Value, now_ms: i64) -> Result<(), &'static str> {
    let Some(Value::Number(timestamp)) = raw.get("timestamp") else {
        return Err("timestamp_skew");
    };
    let ts = timestamp.as_f64().ok_or("timestamp_skew")?;
    if (now_ms as f64 - ts).abs() > MAX_SKEW_MS {
        return Err("timestamp_skew");
    }
    let parent = str_field(raw, "parentMemberPubkey");
    let session = str_field(raw, "sessionPubkey");
    let signature = str_field(raw, "signature");
    if !shapes_ok(parent, session, signature) {
        return Err("malformed");
    }
    let canonical = format!(
        "claudemesh-session-hello|{}|{parent}|{session}|{}",
        js_string(raw.get("meshId")),
        js_number(timestamp)
    );
    verify(session, &canonical, signature)
}

#[cfg(test)]
#[path = "session_hello_check_tests.rs"]
mod tests;
