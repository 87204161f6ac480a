//! Property tests of the parsers that face untrusted bytes on the daemon side (issue 9,
//! deliverable 4): the `/v1/send` body, the query strings of the read routes, `config.json` and
//! `daemon.toml` (parsed alone and loaded from files through [`crate::settings::load`]). No
//! input panics; each is answered with a value or a clear error (a 400/413 naming the problem,
//! a settings error naming the file). Case counts are bounded so `make test` stays fast.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use actix_web::ResponseError;
use claudemesh_actors::settings::{parse_config_json, parse_daemon_toml};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

use crate::http::error::ApiError;
use crate::http::query::{EventParams, InboxParams, OutboxParams};
use crate::http::send_request::parse_send;
use crate::settings::{load, UpFlags};

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
fn object_with(fields: &'static [&'static str]) -> impl Strategy<Value = Value> {
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

/// A refused request: a client error status and a JSON body whose `error` is a code.
fn assert_client_error(e: &ApiError, input: &str) {
    let status = e.status_code().as_u16();
    assert!(
        matches!(status, 400 | 404 | 413),
        "{status} for {input:?}: {e}"
    );
    assert!(
        e.body()["error"].as_str().is_some_and(|c| !c.is_empty()),
        "{input:?}"
    );
}

fn check_send(body: &[u8], key: Option<&[u8]>) {
    match parse_send(body, key) {
        Ok(req) => {
            assert!(!req.message.is_empty());
            assert_eq!(req.to, req.to.trim());
            if let Some(id) = &req.client_message_id {
                assert!(
                    (1..=128).contains(&id.len())
                        && id.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
                );
            }
        }
        Err(e) => assert_client_error(&e, &String::from_utf8_lossy(body)),
    }
}

fn check_queries(q: &str) {
    for result in [
        InboxParams::parse(q).map(|_| ()),
        OutboxParams::parse(q).map(|_| ()),
        EventParams::parse(q).map(|_| ()),
    ] {
        if let Err(e) = result {
            assert_client_error(&e, q);
            assert_eq!(e.status_code().as_u16(), 400, "{q:?}");
        }
    }
}

const SEND_FIELDS: &[&str] = &[
    "to",
    "message",
    "priority",
    "meta",
    "reply_to_id",
    "client_message_id",
    "mesh",
];

/// A plausible value for a send field (so valid bodies are generated too), or any value.
fn send_value(field: &str) -> BoxedStrategy<Value> {
    let plausible: BoxedStrategy<Value> = match field {
        "to" => prop_oneof![
            prop::sample::select(vec![
                "*",
                "@all",
                "@ops",
                "#t1",
                "bob",
                " bob ",
                "0123456789abcdef"
            ])
            .prop_map(Value::from),
            "[0-9a-f]{64}".prop_map(Value::from),
            "[ -~]{0,70}".prop_map(Value::from),
        ]
        .boxed(),
        "message" => ".{0,60}".prop_map(Value::from).boxed(),
        "priority" => prop::sample::select(vec!["now", "next", "low", "NOW", ""])
            .prop_map(Value::from)
            .boxed(),
        "client_message_id" | "reply_to_id" => "[ -~]{0,130}".prop_map(Value::from).boxed(),
        "mesh" => "[a-z-]{0,10}".prop_map(Value::from).boxed(),
        _ => json_value().boxed(),
    };
    prop_oneof![3 => plausible, 1 => json_value()].boxed()
}

/// A send body: a valid one with some fields replaced, removed or added.
fn send_like() -> impl Strategy<Value = Value> {
    let edit = prop::sample::select(SEND_FIELDS)
        .prop_flat_map(|f| (Just(f), prop::option::weighted(0.85, send_value(f))));
    prop::collection::vec(edit, 0..5).prop_map(|edits| {
        let mut body = json!({"to": "*", "message": "hello"});
        for (field, value) in edits {
            match value {
                Some(v) => body[field] = v,
                None => {
                    body.as_object_mut().map(|o| o.remove(field));
                }
            }
        }
        body
    })
}

/// A query string from known keys and values, percent-escapes and junk.
fn query_like() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        prop::sample::select(vec![
            "since",
            "topic",
            "from",
            "mesh",
            "limit",
            "before",
            "status",
            "kinds",
            "last_event_id",
            "token",
        ])
        .prop_map(str::to_string),
        "[a-z_%=&+]{0,8}",
    ];
    let value = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        "[0-9]{0,25}",
        "2026-[0-9]{2}-[0-9]{2}T[0-9:.]{0,12}Z?",
        "[a-z_,]{0,30}",
        "%[0-9A-Fa-f]{0,2}[ -~]{0,10}",
        ".{0,12}",
    ];
    prop::collection::vec((key, value), 0..6).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    })
}

const MESH_FIELDS: &[&str] = &[
    "meshId",
    "memberId",
    "slug",
    "name",
    "pubkey",
    "secretKey",
    "brokerUrl",
    "joinedAt",
    "rootKey",
    "inviteVersion",
];

/// A `config.json`-shaped document: a valid mesh with one field replaced, or random fields.
fn config_json_like() -> impl Strategy<Value = String> {
    let valid = json!({"meshId": "mesh_a", "memberId": "m_a", "slug": "a", "name": "a",
        "pubkey": "ab".repeat(32), "secretKey": "cd".repeat(64),
        "brokerUrl": "ws://127.0.0.1:7900/ws", "joinedAt": "2026-05-03T12:00:00Z"});
    let unchanged = valid.clone();
    let mesh = prop_oneof![
        2 => Just(unchanged),
        3 => (prop::sample::select(MESH_FIELDS), prop::option::of(json_value())).prop_map(
            move |(field, v)| {
                let mut m = valid.clone();
                match v {
                    Some(v) => m[field] = v,
                    None => {
                        m.as_object_mut().map(|o| o.remove(field));
                    }
                }
                m
            }
        ),
        1 => object_with(MESH_FIELDS),
    ];
    (
        prop::collection::vec(mesh, 0..3),
        prop_oneof![Just(json!(1)), json_value()],
        prop::option::of(json_value()),
    )
        .prop_map(|(meshes, version, name)| {
            let mut root = json!({"version": version, "meshes": meshes});
            if let Some(n) = name {
                root["displayName"] = n;
            }
            root.to_string()
        })
}

/// Sections and keys of `config/daemon.toml`, and a few that do not exist.
const TOML_KEYS: &[(&str, &[&str])] = &[
    (
        "ipc",
        &[
            "tcp_enabled",
            "tcp_port",
            "public_health",
            "max_inflight",
            "max_sse_streams",
            "send_body_limit",
            "body_limit",
            "sse_heartbeat_ms",
        ],
    ),
    (
        "outbox",
        &[
            "max_attempts",
            "max_age_hours",
            "window",
            "durability",
            "payload_retention_days",
        ],
    ),
    (
        "broker",
        &[
            "hello_timeout_ms",
            "ack_timeout_ms",
            "ping_interval_ms",
            "stale_after_ms",
            "rate_burst",
            "rate_per_sec",
            "max_frame_bytes",
            "reconnect_cap_ms",
        ],
    ),
    ("inbox", &["retention_days", "event_journal"]),
    ("clone", &["policy"]),
    ("nope", &["x"]),
];

/// A `daemon.toml`-shaped document: known sections and keys with values of any TOML type.
fn daemon_toml_like() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        (0i64..100_000).prop_map(|n| n.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        "[a-z]{0,8}".prop_map(|s| format!("{s:?}")),
        Just("\"normal\"".to_string()),
        Just("\"warn\"".to_string()),
        Just("[1, 2]".to_string()),
        Just("{ a = 1 }".to_string()),
        "[ -~]{0,10}",
    ];
    let entry = (0..TOML_KEYS.len(), any::<prop::sample::Index>(), value);
    (
        prop::collection::vec(entry, 0..8),
        prop::option::of("[a-z_]{1,12}"),
    )
        .prop_map(|(entries, default_mesh)| {
            let mut text = String::new();
            if let Some(slug) = default_mesh {
                text.push_str(&format!("default_mesh = {slug:?}\n"));
            }
            for (s, k, v) in entries {
                let (section, keys) = TOML_KEYS[s];
                text.push_str(&format!(
                    "[{section}]\n{} = {v}\n",
                    keys[k.index(keys.len())]
                ));
            }
            text
        })
}

fn check_config_json(text: &str) {
    let file = Path::new("/x/config.json");
    if let Err(e) = parse_config_json(text, file) {
        assert!(e.to_string().contains("/x/config.json"), "{e}");
    }
}

fn check_daemon_toml(text: &str) {
    let file = Path::new("/x/daemon.toml");
    if let Err(e) = parse_daemon_toml(text, file) {
        assert!(e.to_string().contains("/x/daemon.toml"), "{e}");
    }
}

proptest! {
    #![proptest_config(config(320))]

    #[test]
    fn send_body_of_arbitrary_bytes_is_parsed_or_refused(
        body in prop::collection::vec(any::<u8>(), 0..300),
        key in prop::option::of(prop::collection::vec(any::<u8>(), 0..140)),
    ) {
        check_send(&body, key.as_deref());
    }

    #[test]
    fn send_body_of_send_shaped_json_is_parsed_or_refused(
        body in prop_oneof![send_like(), object_with(SEND_FIELDS)],
        key in prop::option::of("[ -~]{0,140}"),
    ) {
        check_send(body.to_string().as_bytes(), key.as_deref().map(str::as_bytes));
    }

    #[test]
    fn query_strings_are_parsed_or_refused_with_400(q in prop_oneof![query_like(), ".{0,80}"]) {
        check_queries(&q);
    }

    #[test]
    fn config_json_text_is_loaded_or_refused_naming_the_file(
        text in prop_oneof![config_json_like(), ".{0,120}"],
    ) {
        check_config_json(&text);
    }

    #[test]
    fn daemon_toml_text_is_loaded_or_refused_naming_the_file(
        text in prop_oneof![daemon_toml_like(), ".{0,120}"],
    ) {
        check_daemon_toml(&text);
    }
}

proptest! {
    #![proptest_config(config(48))]

    /// The whole load from files, as `up` and SIGHUP do it.
    #[test]
    fn settings_load_from_files_answers_settings_or_an_error(
        config_json in config_json_like(),
        daemon_toml in prop::option::of(daemon_toml_like()),
    ) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), &config_json).unwrap();
        if let Some(t) = &daemon_toml {
            std::fs::create_dir_all(dir.path().join("daemon")).unwrap();
            std::fs::write(dir.path().join("daemon").join("daemon.toml"), t).unwrap();
        }
        let root = dir.path().to_string_lossy().into_owned();
        let env = move |name: &str| (name == "CLAUDEMESH_CONFIG_DIR").then(|| root.clone());
        match load(&UpFlags::default(), &env) {
            Ok(s) => prop_assert!(!s.meshes.is_empty()),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}

/// The generators are not vacuous: some of what they make is accepted, so the properties
/// above run the success paths too, not only the first refusal.
#[test]
fn generators_reach_accepted_inputs_too() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut sample =
        |s: &dyn Fn(&mut TestRunner) -> bool| (0..400).filter(|_| s(&mut runner)).count();
    let sends = sample(&|r| {
        let v = send_like().new_tree(r).unwrap().current();
        parse_send(v.to_string().as_bytes(), None).is_ok()
    });
    let configs = sample(&|r| {
        let t = config_json_like().new_tree(r).unwrap().current();
        parse_config_json(&t, Path::new("/x/config.json")).is_ok_and(|c| !c.meshes.is_empty())
    });
    let tomls = sample(&|r| {
        let t = daemon_toml_like().new_tree(r).unwrap().current();
        parse_daemon_toml(&t, Path::new("/x/daemon.toml")).is_ok()
    });
    let queries = sample(&|r| {
        let q = query_like().new_tree(r).unwrap().current();
        InboxParams::parse(&q).is_ok() && OutboxParams::parse(&q).is_ok()
    });
    eprintln!(
        "accepted of 400: sends {sends}, configs {configs}, tomls {tomls}, queries {queries}"
    );
    assert!(
        sends >= 10 && configs >= 10 && tomls >= 10 && queries >= 10,
        "accepted of 400: sends {sends}, configs {configs}, tomls {tomls}, queries {queries}"
    );
}
