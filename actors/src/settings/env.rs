//! Environment overrides of the tuning: every `daemon.toml` key is also
//! `CLAUDEMESH_<SECTION>_<KEY>` (top-level keys: `CLAUDEMESH_<KEY>`), upper-case.
//!
//! One table ([`KEYS`]) lists every key with an accessor to its field and its range rule; it
//! drives the environment overrides and the range checks of `daemon.toml` values alike, and a
//! test checks it covers every field `Tuning` serializes. `CLAUDEMESH_CONFIG_DIR` and
//! `CLAUDEMESH_DAEMON_DIR` locate directories and are not tuning keys.

use super::{ClonePolicy, Durability, SettingsError, Tuning};

/// The variable that overrides the top-level `default_mesh`.
pub const DEFAULT_MESH_ENV: &str = "CLAUDEMESH_DEFAULT_MESH";

/// A mutable view of one tuning field, typed so a string can be parsed into it.
enum Slot<'a> {
    Bool(&'a mut bool),
    U16(&'a mut u16),
    U32(&'a mut u32),
    U64(&'a mut u64),
    Usize(&'a mut usize),
    OptString(&'a mut Option<String>),
    Durability(&'a mut Durability),
    ClonePolicy(&'a mut ClonePolicy),
}

impl Slot<'_> {
    /// Parses `value` into the field; on failure returns what was expected.
    fn set(self, value: &str, positive: bool) -> Result<(), &'static str> {
        fn num<T: std::str::FromStr + PartialEq + Default>(
            field: &mut T,
            value: &str,
            positive: bool,
            expected: &'static str,
        ) -> Result<(), &'static str> {
            let n: T = value.parse().map_err(|_| expected)?;
            if positive && n == T::default() {
                return Err(expected);
            }
            *field = n;
            Ok(())
        }
        match self {
            Slot::Bool(f) => {
                *f = match value.to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" | "on" => true,
                    "false" | "0" | "no" | "off" => false,
                    _ => return Err("true or false"),
                };
                Ok(())
            }
            Slot::U16(f) => num(f, value, positive, "an integer in 0..=65535"),
            Slot::U32(f) if positive => num(f, value, true, "an integer in 1..=4294967295"),
            Slot::U32(f) => num(f, value, false, "an integer in 0..=4294967295"),
            Slot::U64(f) if positive => num(f, value, true, "a positive integer"),
            Slot::U64(f) => num(f, value, false, "a non-negative integer"),
            Slot::Usize(f) if positive => num(f, value, true, "a positive integer"),
            Slot::Usize(f) => num(f, value, false, "a non-negative integer"),
            Slot::OptString(f) => {
                *f = Some(value.to_string());
                Ok(())
            }
            Slot::Durability(f) => {
                *f = value.parse().map_err(|_| "one of normal, full")?;
                Ok(())
            }
            Slot::ClonePolicy(f) => {
                *f = value.parse().map_err(|_| "one of refuse, warn, allow")?;
                Ok(())
            }
        }
    }

    /// True when the field holds zero (never true for non-numeric fields).
    fn is_zero(&self) -> bool {
        match self {
            Slot::U16(f) => **f == 0,
            Slot::U32(f) => **f == 0,
            Slot::U64(f) => **f == 0,
            Slot::Usize(f) => **f == 0,
            Slot::Bool(_) | Slot::OptString(_) | Slot::Durability(_) | Slot::ClonePolicy(_) => {
                false
            }
        }
    }
}

/// One tuning key: where it lives, how to reach its field, whether 0 is forbidden.
struct Key {
    /// `daemon.toml` section, `""` for top-level keys.
    section: &'static str,
    /// Key within the section.
    key: &'static str,
    /// The field.
    slot: fn(&mut Tuning) -> Slot<'_>,
    /// Zero would make the daemon useless (a timeout, limit or window of 0).
    positive: bool,
}

macro_rules! keys {
    ($($section:literal $key:ident: $variant:ident($($path:ident).+) $(, $pos:ident)?;)+) => {
        &[$(Key {
            section: $section,
            key: stringify!($key),
            slot: |t| Slot::$variant(&mut t.$($path).+),
            positive: keys!(@pos $($pos)?),
        }),+]
    };
    (@pos positive) => { true };
    (@pos) => { false };
}

/// Every tuning key (SPEC.md §10), in `config/daemon.toml` order.
const KEYS: &[Key] = keys! {
    "" default_mesh: OptString(default_mesh);
    "ipc" tcp_enabled: Bool(ipc.tcp_enabled);
    "ipc" tcp_port: U16(ipc.tcp_port);
    "ipc" public_health: Bool(ipc.public_health);
    "ipc" max_inflight: Usize(ipc.max_inflight), positive;
    "ipc" max_sse_streams: Usize(ipc.max_sse_streams), positive;
    "ipc" send_body_limit: Usize(ipc.send_body_limit), positive;
    "ipc" body_limit: Usize(ipc.body_limit), positive;
    "ipc" sse_heartbeat_ms: U64(ipc.sse_heartbeat_ms), positive;
    "outbox" max_attempts: U32(outbox.max_attempts), positive;
    "outbox" max_age_hours: U64(outbox.max_age_hours), positive;
    "outbox" window: U32(outbox.window), positive;
    "outbox" durability: Durability(outbox.durability);
    "outbox" payload_retention_days: U32(outbox.payload_retention_days);
    "broker" hello_timeout_ms: U64(broker.hello_timeout_ms), positive;
    "broker" ack_timeout_ms: U64(broker.ack_timeout_ms), positive;
    "broker" ping_interval_ms: U64(broker.ping_interval_ms), positive;
    "broker" stale_after_ms: U64(broker.stale_after_ms), positive;
    "broker" rate_burst: U32(broker.rate_burst), positive;
    "broker" rate_per_sec: U32(broker.rate_per_sec), positive;
    "broker" max_frame_bytes: Usize(broker.max_frame_bytes), positive;
    "broker" reconnect_cap_ms: U64(broker.reconnect_cap_ms), positive;
    "broker" redelivery_nudge_ms: U64(broker.redelivery_nudge_ms), positive;
    "inbox" retention_days: U32(inbox.retention_days), positive;
    "inbox" event_journal: U64(inbox.event_journal), positive;
    "clone" policy: ClonePolicy(clone.policy);
};

impl Key {
    fn var(&self) -> String {
        if self.section.is_empty() {
            format!("CLAUDEMESH_{}", self.key.to_ascii_uppercase())
        } else {
            format!(
                "CLAUDEMESH_{}_{}",
                self.section.to_ascii_uppercase(),
                self.key.to_ascii_uppercase()
            )
        }
    }

    fn dotted(&self) -> String {
        if self.section.is_empty() {
            self.key.to_string()
        } else {
            format!("{}.{}", self.section, self.key)
        }
    }
}

/// The names of every tuning environment variable, in `daemon.toml` order (for docs, `--help`
/// and diagnostics).
pub fn env_var_names() -> Vec<String> {
    KEYS.iter().map(Key::var).collect()
}

/// The first key whose value breaks its range rule, as `(dotted key, reason)`.
pub(super) fn first_invalid(tuning: &Tuning) -> Option<(String, &'static str)> {
    // Slots borrow mutably; inspect a copy so callers can keep `&Tuning`.
    let mut copy = tuning.clone();
    KEYS.iter()
        .find(|k| k.positive && (k.slot)(&mut copy).is_zero())
        .map(|k| (k.dotted(), "must be greater than 0"))
}

impl Tuning {
    /// Applies every `CLAUDEMESH_<SECTION>_<KEY>` variable that `lookup` returns. Values are
    /// trimmed; an empty value counts as unset. A value that does not parse or is out of range
    /// is an error naming the variable; on error `self` may be partly updated.
    pub fn apply_env(
        &mut self,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), SettingsError> {
        for k in KEYS {
            let var = k.var();
            let Some(raw) = lookup(&var) else { continue };
            let value = raw.trim();
            if value.is_empty() {
                continue;
            }
            (k.slot)(self)
                .set(value, k.positive)
                .map_err(|expected| SettingsError::Env {
                    var,
                    value: raw.clone(),
                    expected,
                })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
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
            let changed = ["9", "false", "true", "full", "allow"]
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
}
