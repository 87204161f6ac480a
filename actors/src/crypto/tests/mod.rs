//! Known-answer tests against `tests/fixtures/crypto-vectors.json` (libsodium-wrappers 0.7.15)
//! and failure behaviour of every entry point.

mod bodies;
mod keys;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::Value;

use super::MemberKeys;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/crypto-vectors.json"
);

pub(super) fn vectors() -> Value {
    let text = std::fs::read_to_string(VECTORS).expect("read crypto-vectors.json");
    serde_json::from_str(&text).expect("parse crypto-vectors.json")
}

pub(super) fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("fixture string at {pointer}"))
}

pub(super) fn seed_of(v: &Value, key: &str) -> [u8; 32] {
    let bytes = hex::decode(text(v, &format!("/keys/{key}/seed_hex"))).expect("seed hex");
    bytes.try_into().expect("32-byte seed")
}

pub(super) fn keys_of(v: &Value, key: &str) -> MemberKeys {
    MemberKeys::from_seed(seed_of(v, key))
}

pub(super) fn flip_bit(b64: &str, byte: usize) -> String {
    let mut bytes = STANDARD.decode(b64).expect("fixture base64");
    bytes[byte] ^= 0x01;
    STANDARD.encode(bytes)
}

/// y = 2 is not the y-coordinate of any point on edwards25519.
pub(super) const OFF_CURVE: [u8; 32] = {
    let mut b = [0u8; 32];
    b[0] = 2;
    b
};
