//! `config.json` and `daemon.toml`, parsed alone and loaded from files.

use std::path::Path;

use claudemesh_actors::settings::{parse_config_json, parse_daemon_toml};
use proptest::prelude::*;
use serde_json::json;

use super::{accepted_of_400, config, json_value, object_with};
use crate::settings::{load, UpFlags};

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
fn generators_reach_accepted_settings_too() {
    let configs = accepted_of_400(config_json_like(), |t| {
        parse_config_json(&t, Path::new("/x/config.json")).is_ok_and(|c| !c.meshes.is_empty())
    });
    let tomls = accepted_of_400(daemon_toml_like(), |t| {
        parse_daemon_toml(&t, Path::new("/x/daemon.toml")).is_ok()
    });
    assert!(
        configs >= 10 && tomls >= 10,
        "accepted of 400: configs {configs}, tomls {tomls}"
    );
}
