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
    /// Parses `value` into the field; on failure returns what was expected. A numeric field
    /// takes only integers within `range` (every numeric key has one).
    fn set(self, value: &str, range: Option<(u64, u64)>) -> Result<(), String> {
        fn num<T: TryFrom<u64>>(
            field: &mut T,
            value: &str,
            range: Option<(u64, u64)>,
        ) -> Result<(), String> {
            let (lo, hi) = range.unwrap_or((0, 0));
            let expected = || format!("an integer in {lo}..={hi}");
            let n: u64 = value.parse().map_err(|_| expected())?;
            if !(lo..=hi).contains(&n) {
                return Err(expected());
            }
            *field = T::try_from(n).map_err(|_| expected())?;
            Ok(())
        }
        match self {
            Slot::Bool(f) => {
                *f = match value.to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" | "on" => true,
                    "false" | "0" | "no" | "off" => false,
                    _ => return Err("true or false".into()),
                };
                Ok(())
            }
            Slot::U16(f) => num(f, value, range),
            Slot::U32(f) => num(f, value, range),
            Slot::U64(f) => num(f, value, range),
            Slot::Usize(f) => num(f, value, range),
            Slot::OptString(f) => {
                *f = Some(value.to_string());
                Ok(())
            }
            Slot::Durability(f) => {
                *f = value
                    .parse()
                    .map_err(|_| "one of normal, full".to_string())?;
                Ok(())
            }
            Slot::ClonePolicy(f) => {
                *f = value
                    .parse()
                    .map_err(|_| "one of refuse, warn, allow".to_string())?;
                Ok(())
            }
        }
    }

    /// The field's value when it is numeric.
    fn number(&self) -> Option<u64> {
        match self {
            Slot::U16(f) => Some(u64::from(**f)),
            Slot::U32(f) => Some(u64::from(**f)),
            Slot::U64(f) => Some(**f),
            Slot::Usize(f) => u64::try_from(**f).ok().or(Some(u64::MAX)),
            Slot::Bool(_) | Slot::OptString(_) | Slot::Durability(_) | Slot::ClonePolicy(_) => None,
        }
    }
}

/// One tuning key: where it lives, how to reach its field, which values are sane.
struct Key {
    /// `daemon.toml` section, `""` for top-level keys.
    section: &'static str,
    /// Key within the section.
    key: &'static str,
    /// The field.
    slot: fn(&mut Tuning) -> Slot<'_>,
    /// Inclusive range of a numeric key. Bounds keep every conversion the daemon makes
    /// (hours → ms, ms → `Instant` deadlines, sizes → buffers) far from overflow, and refuse
    /// zero where it would make the daemon useless (a timeout, limit or window of 0).
    range: Option<(u64, u64)>,
}

macro_rules! keys {
    ($($section:literal $key:ident: $variant:ident($($path:ident).+) $(, $lo:literal ..= $hi:literal)?;)+) => {
        &[$(Key {
            section: $section,
            key: stringify!($key),
            slot: |t| Slot::$variant(&mut t.$($path).+),
            range: keys!(@range $($lo, $hi)?),
        }),+]
    };
    (@range $lo:literal, $hi:literal) => { Some(($lo, $hi)) };
    (@range) => { None };
}

/// Every tuning key (SPEC.md §10), in `config/daemon.toml` order.
const KEYS: &[Key] = keys! {
    "" default_mesh: OptString(default_mesh);
    "ipc" tcp_enabled: Bool(ipc.tcp_enabled);
    "ipc" tcp_port: U16(ipc.tcp_port), 0..=65_535;
    "ipc" public_health: Bool(ipc.public_health);
    "ipc" max_inflight: Usize(ipc.max_inflight), 1..=65_536;
    "ipc" max_sse_streams: Usize(ipc.max_sse_streams), 1..=4_096;
    "ipc" send_body_limit: Usize(ipc.send_body_limit), 1_024..=67_108_864;
    "ipc" body_limit: Usize(ipc.body_limit), 1_024..=16_777_216;
    "ipc" sse_heartbeat_ms: U64(ipc.sse_heartbeat_ms), 1..=3_600_000;
    "outbox" max_attempts: U32(outbox.max_attempts), 1..=1_000_000;
    "outbox" max_age_hours: U64(outbox.max_age_hours), 1..=876_000;
    "outbox" window: U32(outbox.window), 1..=4_096;
    "outbox" destination_window: U32(outbox.destination_window), 1..=1_024;
    "outbox" durability: Durability(outbox.durability);
    "outbox" payload_retention_days: U32(outbox.payload_retention_days), 0..=36_500;
    "broker" hello_timeout_ms: U64(broker.hello_timeout_ms), 1..=600_000;
    "broker" ack_timeout_ms: U64(broker.ack_timeout_ms), 1..=3_600_000;
    "broker" ping_interval_ms: U64(broker.ping_interval_ms), 1..=3_600_000;
    "broker" stale_after_ms: U64(broker.stale_after_ms), 1..=86_400_000;
    "broker" rate_burst: U32(broker.rate_burst), 1..=4_294_967_295;
    "broker" rate_per_sec: U32(broker.rate_per_sec), 1..=1_000_000;
    "broker" max_frame_bytes: Usize(broker.max_frame_bytes), 1_024..=268_435_456;
    "broker" reconnect_cap_ms: U64(broker.reconnect_cap_ms), 1..=3_600_000;
    "broker" redelivery_nudge_ms: U64(broker.redelivery_nudge_ms), 1..=86_400_000;
    "broker" session_retry_ms: U64(broker.session_retry_ms), 1..=86_400_000;
    "broker" session_attestation_ttl_ms: U64(broker.session_attestation_ttl_ms), 1..=172_800_000;
    "inbox" retention_days: U32(inbox.retention_days), 1..=36_500;
    "inbox" event_journal: U64(inbox.event_journal), 1..=10_000_000;
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

/// The first key whose value is outside its range, as `(dotted key, reason)`.
pub(super) fn first_invalid(tuning: &Tuning) -> Option<(String, String)> {
    // Slots borrow mutably; inspect a copy so callers can keep `&Tuning`.
    let mut copy = tuning.clone();
    KEYS.iter().find_map(|k| {
        let (lo, hi) = k.range?;
        let v = (k.slot)(&mut copy).number()?;
        (!(lo..=hi).contains(&v)).then(|| (k.dotted(), format!("must be in {lo}..={hi}, got {v}")))
    })
}

/// The documented range of every numeric key, as `(dotted key, lo, hi)` in `daemon.toml`
/// order (for docs and diagnostics).
pub fn key_ranges() -> Vec<(String, u64, u64)> {
    KEYS.iter()
        .filter_map(|k| k.range.map(|(lo, hi)| (k.dotted(), lo, hi)))
        .collect()
}

impl Tuning {
    /// Checks every numeric value against its range (after `daemon.toml`, the environment and
    /// flags are merged); the error is `(dotted key, reason)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        match first_invalid(self) {
            Some(bad) => Err(bad),
            None => Ok(()),
        }
    }

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
                .set(value, k.range)
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
#[path = "env_tests.rs"]
mod tests;
