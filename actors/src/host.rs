//! Host fingerprint for accidental-clone detection (SPEC §9, §3 step 2).
//!
//! Owns the `host_fingerprint.json` format, which is file-compatible with the TypeScript
//! daemon (`{"schema_version","fingerprint","host_id","stable_mac","written_at"}`, 0600), how
//! the current host identity is read, and the refuse/warn/allow decision. A file the TS daemon
//! wrote (any `schema_version`, extra fields) is read as-is: on Linux both daemons derive the
//! same `host_id` from the machine-id, and a matching non-empty `host_id` is a match whatever
//! the MAC (NICs come and go; the machine-id does not).
//!
//! Not attacker-grade: copying the file with the keys defeats it. Pure, no actix.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::files::{self, FilesError};

/// Errors reading or writing the host fingerprint.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The fingerprint file exists but could not be read.
    #[error("read {path}: {source}")]
    Read {
        /// The fingerprint file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The fingerprint file is not the expected JSON.
    #[error("{path} is not a host fingerprint file: {source}")]
    Parse {
        /// The fingerprint file.
        path: PathBuf,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// The fingerprint could not be encoded as JSON.
    #[error("encode {path}: {source}")]
    Encode {
        /// The fingerprint file.
        path: PathBuf,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// Writing the fingerprint file failed.
    #[error(transparent)]
    Write(#[from] FilesError),
}

/// The persisted `host_fingerprint.json` (field names are the TS daemon's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFingerprintFile {
    /// 1 for files we write; the TS daemon may have written 2 (same fields).
    pub schema_version: u32,
    /// Hex `sha256(host_id ‖ 0x00 ‖ stable_mac)` (the TS v2 files hash a `"v2"` prefix too).
    pub fingerprint: String,
    /// `"linux:<machine-id>"`, or `""` when unavailable.
    pub host_id: String,
    /// Lowercase colon-form MAC of the first external interface, or `""`.
    pub stable_mac: String,
    /// When the file was written, ISO 8601.
    pub written_at: String,
}

/// What identifies this host now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostIdentity {
    /// `"linux:" + machine-id`, or `""` when no machine-id is readable.
    pub host_id: String,
    /// Lowercase colon-form MAC, or `""` when no interface qualifies.
    pub stable_mac: String,
}

/// Interface name prefixes that are never the stable MAC (virtual, tunnel, container, Apple
/// peer-to-peer); matched case-insensitively, exactly the TS daemon's list.
const IGNORED_PREFIXES: [&str; 14] = [
    "lo",
    "docker",
    "br-",
    "veth",
    "tap",
    "tun",
    "tailscale",
    "wg",
    "utun",
    "ppp",
    "vboxnet",
    "vmnet",
    "awdl",
    "llw",
];

/// `IFF_LOOPBACK` in `/sys/class/net/<iface>/flags`.
const IFF_LOOPBACK: u32 = 0x8;

/// Reads the host identity below `root` (production passes `/`; tests a fake tree):
/// `etc/machine-id`, `var/lib/dbus/machine-id`, `sys/class/net/*/{address,flags}`.
pub fn read_identity(root: &Path) -> HostIdentity {
    let host_id = ["etc/machine-id", "var/lib/dbus/machine-id"]
        .iter()
        .filter_map(|p| fs::read_to_string(root.join(p)).ok())
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty())
        .map(|id| format!("linux:{id}"))
        .unwrap_or_default();
    HostIdentity {
        host_id,
        stable_mac: stable_mac(&root.join("sys/class/net")).unwrap_or_default(),
    }
}

fn stable_mac(net: &Path) -> Option<String> {
    let mut candidates: Vec<String> = fs::read_dir(net)
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let name = entry.file_name().to_str()?.to_string();
            if is_ignored_interface(&name) || is_loopback(&entry.path()) {
                return None;
            }
            let mac = normalize_mac(&fs::read_to_string(entry.path().join("address")).ok()?)?;
            // The TS daemon sorts "name::mac" strings; sorting the same strings keeps the pick
            // identical when one name prefixes another (`eth1` vs `eth10`).
            Some(format!("{name}::{mac}"))
        })
        .collect();
    candidates.sort();
    let first = candidates.first()?;
    first.split_once("::").map(|(_, mac)| mac.to_string())
}

fn is_ignored_interface(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    IGNORED_PREFIXES.iter().any(|p| lower.starts_with(p))
}

fn is_loopback(iface: &Path) -> bool {
    fs::read_to_string(iface.join("flags"))
        .ok()
        .and_then(|f| u32::from_str_radix(f.trim().trim_start_matches("0x"), 16).ok())
        .is_some_and(|flags| flags & IFF_LOOPBACK != 0)
}

/// Lowercase colon-form MAC, or `None` when empty, malformed or all zero.
fn normalize_mac(raw: &str) -> Option<String> {
    let mac = raw.trim().to_ascii_lowercase();
    let octets: Vec<&str> = mac.split(':').collect();
    let well_formed = octets.len() >= 6
        && octets
            .iter()
            .all(|o| o.len() == 2 && o.bytes().all(|b| b.is_ascii_hexdigit()));
    (well_formed && octets.iter().any(|o| *o != "00")).then_some(mac)
}

/// Hex `sha256(host_id ‖ 0x00 ‖ stable_mac)` over UTF-8.
pub fn fingerprint_hex(host_id: &str, stable_mac: &str) -> String {
    let mut h = Sha256::new();
    h.update(host_id.as_bytes());
    h.update([0u8]);
    h.update(stable_mac.as_bytes());
    hex::encode(h.finalize())
}

/// What to do when the host does not match (one enum for the whole daemon: `[clone] policy`).
pub use crate::settings::ClonePolicy;

/// Outcome of comparing the stored fingerprint with the current host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostCheck {
    /// No file yet: the caller writes one.
    FirstRun,
    /// Same host (same non-empty `host_id`, or same fingerprint).
    Match,
    /// Another host, or a clone of this one.
    Mismatch,
}

/// Compares `stored` with `current`: a match when the stored `host_id` is non-empty and equal
/// to ours (a changed MAC does not matter), or the stored fingerprint equals ours.
pub fn check(stored: Option<&HostFingerprintFile>, current: &HostIdentity) -> HostCheck {
    let Some(stored) = stored else {
        return HostCheck::FirstRun;
    };
    let same_id = !stored.host_id.is_empty() && stored.host_id == current.host_id;
    let same_fp = stored
        .fingerprint
        .eq_ignore_ascii_case(&fingerprint_hex(&current.host_id, &current.stable_mac));
    if same_id || same_fp {
        HostCheck::Match
    } else {
        HostCheck::Mismatch
    }
}

/// What startup does after the host check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostDecision {
    /// Continue.
    Proceed,
    /// Continue, logging that the host changed.
    ProceedWithWarning,
    /// Exit 4, naming `claudemeshd accept-host`.
    Refuse,
}

/// Applies the clone policy to a check result; only a mismatch is subject to the policy.
pub fn decide(check: HostCheck, policy: ClonePolicy) -> HostDecision {
    match (check, policy) {
        (HostCheck::FirstRun | HostCheck::Match, _) | (HostCheck::Mismatch, ClonePolicy::Allow) => {
            HostDecision::Proceed
        }
        (HostCheck::Mismatch, ClonePolicy::Warn) => HostDecision::ProceedWithWarning,
        (HostCheck::Mismatch, ClonePolicy::Refuse) => HostDecision::Refuse,
    }
}

/// Reads the fingerprint file; `Ok(None)` when it does not exist.
pub fn load(path: &Path) -> Result<Option<HostFingerprintFile>, HostError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(HostError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|source| HostError::Parse {
            path: path.to_path_buf(),
            source,
        })
}

/// Writes (atomically, 0600) the fingerprint file for `identity` (first run, `accept-host`).
pub fn write(
    path: &Path,
    identity: &HostIdentity,
    now_ms: i64,
) -> Result<HostFingerprintFile, HostError> {
    let file = HostFingerprintFile {
        schema_version: 1,
        fingerprint: fingerprint_hex(&identity.host_id, &identity.stable_mac),
        host_id: identity.host_id.clone(),
        stable_mac: identity.stable_mac.clone(),
        written_at: crate::time::iso_from_ms(now_ms),
    };
    // Pretty-printed with two spaces, like the TS daemon's JSON.stringify(…, null, 2).
    let mut json = serde_json::to_vec_pretty(&file).map_err(|source| HostError::Encode {
        path: path.to_path_buf(),
        source,
    })?;
    json.push(b'\n');
    files::write_private_file(path, &json)?;
    Ok(file)
}

#[cfg(test)]
mod tests;
