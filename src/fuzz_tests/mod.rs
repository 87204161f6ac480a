//! Property tests of the parsers that face untrusted bytes on the daemon side (issue 9,
//! deliverable 4): the `/v1/send` body, the query strings of the read routes, `config.json` and
//! `daemon.toml` (parsed alone and loaded from files through [`crate::settings::load`]). No
//! input panics; each is answered with a value or a clear error (a 400/413 naming the problem,
//! a settings error naming the file). Case counts are bounded so `make test` stays fast.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod http;
mod settings;

use proptest::prelude::*;
use serde_json::{Map, Value};

pub(super) fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Any JSON value, a few levels deep.
pub(super) fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,24}".prop_map(Value::String),
        "[ -~]{0,140}".prop_map(Value::String),
        "[0-9a-f]{64}".prop_map(Value::String),
        prop::sample::select(vec![
            "*", "@all", "@g", "#t", "now", "next", "low", " bob ", ""
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An object with the given field names (and random ones) set to arbitrary values.
pub(super) fn object_with(fields: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop::collection::vec(
        (
            prop_oneof![
                prop::sample::select(fields).prop_map(str::to_string),
                ".{0,8}"
            ],
            json_value(),
        ),
        0..10,
    )
    .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<String, Value>>()))
}

/// Counts, of 400 values of a generator, those `accepted` accepts (deterministic seed).
fn accepted_of_400<S: Strategy>(strategy: S, accepted: impl Fn(S::Value) -> bool) -> usize {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    (0..400)
        .filter(|_| accepted(strategy.new_tree(&mut runner).unwrap().current()))
        .count()
}
