//! The stateless part of hello validation, in the real broker's order (BROKER-PROTOCOL §1.5):
//! the `sessionPubkey` shape, then the timestamp skew (±60 s, rejected only when *greater*
//! than 60 000 ms), then the hex shapes of `pubkey` and `signature`, then the ed25519 signature
//! over `meshId|memberId|pubkey|timestamp` with the member key.
//!
//! The checks read the hello as raw JSON, because the broker validates before it touches the
//! fields a typed decode requires (`pid`, `cwd`, ...): a hello missing `pid` but carrying a bad
//! signature is still answered `bad_signature`. The canonical string is rebuilt the way a
//! JavaScript template literal renders each value (`undefined` for a missing field, numbers in
//! JS form), since that is what the real broker verifies.
//!
//! Pure: no actix, no I/O.

use claudemesh_actors::crypto::{verify_hex, CryptoError};
use serde_json::Value;

/// Maximum accepted clock skew of `hello.timestamp`, in milliseconds.
pub const MAX_SKEW_MS: f64 = 60_000.0;

/// Why a hello is rejected by the stateless checks; each maps to an `error.code`, the close
/// reason, and close code 1008.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HelloRejection {
    /// `sessionPubkey` is present and truthy but not lowercase 64-hex.
    BadSessionPubkey,
    /// `timestamp` is not a number or is more than 60 s away from now.
    TimestampSkew,
    /// `pubkey` is not 64 hex or `signature` not 128 hex.
    Malformed,
    /// The signature does not verify.
    BadSignature,
}

impl HelloRejection {
    /// The `error.code` and close reason.
    pub fn code(self) -> &'static str {
        match self {
            Self::BadSessionPubkey => "bad_session_pubkey",
            Self::TimestampSkew => "timestamp_skew",
            Self::Malformed => "malformed",
            Self::BadSignature => "bad_signature",
        }
    }

    /// The `error.message`: `hello rejected: <code>` for the signature checks (§1.6).
    pub fn message(self) -> String {
        match self {
            Self::BadSessionPubkey => "sessionPubkey must be 64 lowercase hex characters".into(),
            other => format!("hello rejected: {}", other.code()),
        }
    }
}

/// Step 1: the `sessionPubkey` shape. Returns the session pubkey when one is set.
pub fn check_session_pubkey(hello: &Value) -> Result<Option<String>, HelloRejection> {
    match hello.get("sessionPubkey") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::Number(n)) if n.as_f64() == Some(0.0) => Ok(None),
        Some(Value::String(s)) if is_hex(s, 64, false) => Ok(Some(s.clone())),
        Some(_) => Err(HelloRejection::BadSessionPubkey),
    }
}

/// Steps 3: skew, hex shapes, signature (the capacity check of step 2 needs broker state and
/// runs between the two calls).
pub fn check_signature(hello: &Value, now_ms: i64) -> Result<(), HelloRejection> {
    let timestamp = match hello.get("timestamp") {
        Some(Value::Number(n)) => n,
        _ => return Err(HelloRejection::TimestampSkew),
    };
    let ts = timestamp.as_f64().ok_or(HelloRejection::TimestampSkew)?;
    if (now_ms as f64 - ts).abs() > MAX_SKEW_MS {
        return Err(HelloRejection::TimestampSkew);
    }
    let (Some(Value::String(pubkey)), Some(Value::String(signature))) =
        (hello.get("pubkey"), hello.get("signature"))
    else {
        return Err(HelloRejection::Malformed);
    };
    if !is_hex(pubkey, 64, true) || !is_hex(signature, 128, true) {
        return Err(HelloRejection::Malformed);
    }
    let canonical = format!(
        "{}|{}|{}|{}",
        js_string(hello.get("meshId")),
        js_string(hello.get("memberId")),
        pubkey,
        js_number(timestamp)
    );
    match verify_hex(pubkey, canonical.as_bytes(), signature) {
        Ok(()) => Ok(()),
        Err(CryptoError::Malformed { .. }) => Err(HelloRejection::Malformed),
        Err(_) => Err(HelloRejection::BadSignature),
    }
}

pub(crate) fn is_hex(s: &str, len: usize, any_case: bool) -> bool {
    s.len() == len
        && s.bytes().all(|c| {
            c.is_ascii_digit()
                || (b'a'..=b'f').contains(&c)
                || (any_case && (b'A'..=b'F').contains(&c))
        })
}

/// How a JavaScript template literal renders a JSON value (`undefined` when absent).
pub(crate) fn js_string(value: Option<&Value>) -> String {
    match value {
        None => "undefined".into(),
        Some(Value::Null) => "null".into(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => js_number(n),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::Null => String::new(),
                other => js_string(Some(other)),
            })
            .collect::<Vec<_>>()
            .join(","),
        Some(Value::Object(_)) => "[object Object]".into(),
    }
}

/// How JavaScript renders a number in a string: integers in plain decimal, fractions in their
/// shortest round-trip form.
pub(crate) fn js_number(n: &serde_json::Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e21 => format!("{f:.0}"),
        Some(f) => f.to_string(),
        None => n.to_string(),
    }
}

#[cfg(test)]
#[path = "hello_check_tests.rs"]
mod tests;
