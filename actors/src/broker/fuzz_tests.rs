//! Property tests of the wire decoder on untrusted broker bytes (issue 9, deliverable 4):
//! `decode_broker`, `decode_client` and the connection's `classify` never panic; every input
//! is a frame or a clear error, and a decoded frame re-encodes to text that decodes again.
//! Case counts are bounded so `make test` stays fast.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde_json::{Map, Value};

use super::frames::{classify, Inbound};
use crate::wire::{self, BrokerFrame, ClientFrame};

const OWN: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<u64>().prop_map(Value::from),
        ".{0,24}".prop_map(Value::String),
        "[0-9a-f]{64}".prop_map(Value::String),
        "[A-Za-z0-9+/=]{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Field names the decoders look at, so typed paths are reached, not just `Unknown`.
const FIELDS: &[&str] = &[
    "id",
    "messageId",
    "queued",
    "error",
    "code",
    "message",
    "duplicate",
    "ciphertext",
    "nonce",
    "senderPubkey",
    "senderName",
    "subtype",
    "event",
    "eventData",
    "data",
    "peers",
    "topic",
    "clientMessageId",
    "replyToId",
    "priority",
    "createdAt",
    "pubkey",
    "displayName",
    "status",
    "meshId",
    "memberId",
    "signature",
    "timestamp",
    "targetSpec",
    "groups",
    "sessionPubkey",
];

/// A value of the type the decoders expect for `field` (mostly), or any value.
fn field_value(field: &str) -> BoxedStrategy<Value> {
    let plausible: BoxedStrategy<Value> = match field {
        "queued" | "duplicate" => any::<bool>().prop_map(Value::Bool).boxed(),
        "timestamp" => any::<u32>().prop_map(Value::from).boxed(),
        "senderPubkey" | "pubkey" | "sessionPubkey" => "[0-9a-f]{64}".prop_map(Value::from).boxed(),
        "ciphertext" | "nonce" => "[A-Za-z0-9+/]{0,40}={0,2}".prop_map(Value::from).boxed(),
        "priority" => prop::sample::select(vec!["now", "next", "low"])
            .prop_map(Value::from)
            .boxed(),
        "subtype" => prop::sample::select(vec!["system", "message", ""])
            .prop_map(Value::from)
            .boxed(),
        "peers" | "groups" => prop::collection::vec(json_value(), 0..3)
            .prop_map(Value::Array)
            .boxed(),
        "eventData" | "data" => json_value().boxed(),
        _ => "[ -~]{0,30}".prop_map(Value::from).boxed(),
    };
    prop_oneof![3 => plausible, 1 => json_value()].boxed()
}

/// A frame-shaped object: a `type` (known to either side, or random) and known or random
/// fields with arbitrary values.
fn frame_like() -> impl Strategy<Value = String> {
    let kinds: Vec<&'static str> = BrokerFrame::KNOWN_KINDS
        .iter()
        .chain(ClientFrame::KNOWN_KINDS)
        .copied()
        .collect();
    let kind = prop_oneof![
        4 => prop::sample::select(kinds).prop_map(Value::from),
        1 => json_value(),
    ];
    let known =
        prop::sample::select(FIELDS).prop_flat_map(|f| (Just(f.to_string()), field_value(f)));
    let fields = prop::collection::vec(
        prop_oneof![4 => known, 1 => (".{0,8}", json_value())],
        0..12,
    );
    (kind, fields, prop::bool::weighted(0.9)).prop_map(|(kind, fields, with_type)| {
        let mut obj = Map::new();
        if with_type {
            obj.insert("type".into(), kind);
        }
        for (k, v) in fields {
            obj.insert(k, v);
        }
        Value::Object(obj).to_string()
    })
}

/// Real frames from the recorded broker sessions, one field replaced or removed.
fn mutated_fixture() -> impl Strategy<Value = String> {
    let frames: Vec<Value> = [
        include_str!("../../../tests/fixtures/wire/seed-broker.jsonl"),
        include_str!("../../../tests/fixtures/wire/head-broker.jsonl"),
    ]
    .iter()
    .flat_map(|f| f.lines())
    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
    .filter_map(|v| v.get("frame").cloned())
    .filter(Value::is_object)
    .collect();
    assert!(!frames.is_empty(), "no fixture frames");
    (
        prop::sample::select(frames),
        any::<prop::sample::Index>(),
        prop::option::of(json_value()),
    )
        .prop_map(|(mut frame, pick, value)| {
            if let Some(obj) = frame.as_object_mut() {
                let keys: Vec<String> = obj.keys().cloned().collect();
                if !keys.is_empty() {
                    let key = keys[pick.index(keys.len())].clone();
                    match value {
                        Some(v) => obj.insert(key, v),
                        None => obj.remove(&key),
                    };
                }
            }
            frame.to_string()
        })
}

/// Decodes `text` both ways and classifies it; checks the answers are sound.
fn check(text: &str) {
    match wire::decode_broker(text) {
        Ok(frame) => {
            let again = wire::encode(&frame);
            assert!(wire::decode_broker(&again).is_ok(), "{text} → {again}");
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    match wire::decode_client(text) {
        Ok(frame) => {
            let again = wire::encode(&frame);
            assert!(wire::decode_client(&again).is_ok(), "{text} → {again}");
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    if let Inbound::Ignored(why) = classify(text, OWN) {
        assert!(!why.is_empty());
    }
}

proptest! {
    #![proptest_config(config(384))]

    #[test]
    fn arbitrary_bytes_never_panic_the_decoders(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn arbitrary_text_never_panics_the_decoders(text in ".{0,256}") {
        check(&text);
    }
}

proptest! {
    #![proptest_config(config(384))]

    #[test]
    fn frame_shaped_json_is_a_frame_or_a_clear_error(text in frame_like()) {
        check(&text);
    }

    #[test]
    fn mutated_real_frames_are_a_frame_or_a_clear_error(text in mutated_fixture()) {
        check(&text);
    }
}

/// The generators are not vacuous: some frames they make decode into typed variants (not just
/// `Unknown`/`Malformed`), so the typed paths are exercised too.
#[test]
fn generators_reach_typed_frames_too() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let typed = |text: &str| {
        let broker = !matches!(
            wire::decode_broker(text),
            Ok(BrokerFrame::Unknown { .. } | BrokerFrame::Malformed { .. }) | Err(_)
        );
        let client = !matches!(
            wire::decode_client(text),
            Ok(ClientFrame::Unknown { .. } | ClientFrame::Malformed { .. }) | Err(_)
        );
        broker || client
    };
    let mut count =
        |s: &dyn Fn(&mut TestRunner) -> String| (0..400).filter(|_| typed(&s(&mut runner))).count();
    let shaped = count(&|r| frame_like().new_tree(r).unwrap().current());
    let mutated = count(&|r| mutated_fixture().new_tree(r).unwrap().current());
    eprintln!("typed frames of 400: shaped {shaped}, mutated {mutated}");
    assert!(
        shaped >= 10 && mutated >= 10,
        "shaped {shaped}, mutated {mutated}"
    );
}
