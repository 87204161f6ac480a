//! Unit tests of [`super`] (env.rs).
use super::*;
use std::collections::HashMap;

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

fn applied(pairs: &[(&str, &str)]) -> Result<Tuning, SettingsError> {
    let mut t = Tuning::default();
    t.apply_env(&env(pairs))?;
    Ok(t)
}

#[test]
fn env_overrides_keys_of_every_type() {
    let t = applied(&[
        ("CLAUDEMESH_DEFAULT_MESH", "work"),
        ("CLAUDEMESH_IPC_TCP_ENABLED", "false"),
        ("CLAUDEMESH_IPC_TCP_PORT", "0"),
        ("CLAUDEMESH_IPC_MAX_INFLIGHT", " 8 "),
        ("CLAUDEMESH_OUTBOX_MAX_ATTEMPTS", "3"),
        ("CLAUDEMESH_OUTBOX_DURABILITY", "full"),
        ("CLAUDEMESH_BROKER_PING_INTERVAL_MS", "50"),
        ("CLAUDEMESH_INBOX_EVENT_JOURNAL", "5"),
        ("CLAUDEMESH_CLONE_POLICY", "allow"),
    ])
    .unwrap();
    assert_eq!(t.default_mesh.as_deref(), Some("work"));
    assert!(!t.ipc.tcp_enabled);
    assert_eq!(t.ipc.tcp_port, 0);
    assert_eq!(t.ipc.max_inflight, 8);
    assert_eq!(t.outbox.max_attempts, 3);
    assert_eq!(t.outbox.durability, Durability::Full);
    assert_eq!(t.broker.ping_interval_ms, 50);
    assert_eq!(t.inbox.event_journal, 5);
    assert_eq!(t.clone.policy, ClonePolicy::Allow);
    assert_eq!(
        t.broker.stale_after_ms, 75_000,
        "untouched keys keep their value"
    );
}

#[test]
fn bad_env_value_is_an_error_naming_the_variable() {
    let msg = applied(&[("CLAUDEMESH_IPC_TCP_PORT", "80000")])
        .unwrap_err()
        .to_string();
    assert_eq!(
        msg,
        "environment variable CLAUDEMESH_IPC_TCP_PORT=\"80000\": expected an integer in 0..=65535"
    );
    let msg = applied(&[("CLAUDEMESH_CLONE_POLICY", "sometimes")])
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("CLAUDEMESH_CLONE_POLICY") && msg.contains("refuse"),
        "{msg}"
    );
    let msg = applied(&[("CLAUDEMESH_IPC_PUBLIC_HEALTH", "maybe")])
        .unwrap_err()
        .to_string();
    assert!(msg.contains("CLAUDEMESH_IPC_PUBLIC_HEALTH"), "{msg}");
}

#[test]
fn zero_is_rejected_for_positive_keys_only() {
    let msg = applied(&[("CLAUDEMESH_OUTBOX_WINDOW", "0")])
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("CLAUDEMESH_OUTBOX_WINDOW") && msg.contains("1..="),
        "{msg}"
    );
    let t = applied(&[("CLAUDEMESH_OUTBOX_PAYLOAD_RETENTION_DAYS", "0")]).unwrap();
    assert_eq!(t.outbox.payload_retention_days, 0);
}

#[test]
fn out_of_range_env_values_are_errors_naming_the_variable_and_the_range() {
    let msg = applied(&[("CLAUDEMESH_OUTBOX_MAX_AGE_HOURS", "18446744073709551615")])
        .unwrap_err()
        .to_string();
    assert_eq!(
        msg,
        "environment variable CLAUDEMESH_OUTBOX_MAX_AGE_HOURS=\"18446744073709551615\": \
         expected an integer in 1..=876000"
    );
    let msg = applied(&[("CLAUDEMESH_IPC_SSE_HEARTBEAT_MS", "99999999999")])
        .unwrap_err()
        .to_string();
    assert!(msg.contains("CLAUDEMESH_IPC_SSE_HEARTBEAT_MS"), "{msg}");
}

#[test]
fn every_range_fits_its_field_and_holds_the_default() {
    let defaults = flat(&Tuning::default());
    for k in KEYS {
        let Some((lo, hi)) = k.range else { continue };
        assert!(lo <= hi, "{}", k.dotted());
        let mut t = Tuning::default();
        for v in [lo, hi] {
            (k.slot)(&mut t)
                .set(&v.to_string(), k.range)
                .unwrap_or_else(|e| panic!("{} = {v}: {e}", k.dotted()));
        }
        let d = defaults[&k.dotted()].as_integer().unwrap() as u64;
        assert!((lo..=hi).contains(&d), "{} default {d}", k.dotted());
    }
}

#[test]
fn empty_env_value_counts_as_unset() {
    let t = applied(&[
        ("CLAUDEMESH_IPC_TCP_PORT", ""),
        ("CLAUDEMESH_DEFAULT_MESH", " "),
    ]);
    assert_eq!(t.unwrap(), Tuning::default());
}

#[test]
fn directory_variables_are_not_tuning_keys() {
    let t = applied(&[
        ("CLAUDEMESH_CONFIG_DIR", "/tmp/x"),
        ("CLAUDEMESH_DAEMON_DIR", "/tmp/y"),
    ])
    .unwrap();
    assert_eq!(t, Tuning::default());
    let names = env_var_names();
    assert!(!names.iter().any(|n| n.ends_with("_DIR")), "{names:?}");
    assert!(names.contains(&DEFAULT_MESH_ENV.to_string()));
}

#[test]
fn key_table_covers_every_serialized_field_exactly_once() {
    let all = Tuning {
        default_mesh: Some("x".into()),
        ..Tuning::default()
    };
    let table = toml::Table::try_from(&all).unwrap();
    let mut want = Vec::new();
    for (section, value) in &table {
        match value {
            toml::Value::Table(keys) => {
                want.extend(keys.keys().map(|k| format!("{section}.{k}")));
            }
            _ => want.push(section.clone()),
        }
    }
    let mut have: Vec<String> = KEYS.iter().map(Key::dotted).collect();
    want.sort();
    have.sort();
    assert_eq!(have, want);
}

/// Flattens a tuning into `dotted key → value` via its serialized form.
fn flat(t: &Tuning) -> HashMap<String, toml::Value> {
    let mut out = HashMap::new();
    for (section, value) in toml::Table::try_from(t).unwrap() {
        match value {
            toml::Value::Table(keys) => {
                out.extend(keys.into_iter().map(|(k, v)| (format!("{section}.{k}"), v)));
            }
            v => {
                out.insert(section, v);
            }
        }
    }
    out
}

#[test]
fn every_env_variable_writes_the_field_of_its_own_name() {
    let defaults = flat(&Tuning::default());
    for k in KEYS {
        let var = k.var();
        let changed = ["9", "2048", "false", "true", "full", "allow"]
            .iter()
            .filter_map(|v| applied(&[(&var, v)]).ok())
            .map(|t| flat(&t))
            .find(|f| *f != defaults)
            .unwrap_or_else(|| panic!("{var} changed nothing"));
        let diff: Vec<&String> = changed
            .keys()
            .filter(|key| changed.get(*key) != defaults.get(*key))
            .collect();
        assert_eq!(diff, [&k.dotted()], "{var}");
    }
}
