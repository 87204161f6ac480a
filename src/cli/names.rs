//! Best-effort display names for human output. Drained DMs arrive in the broker's minimal
//! envelope, without `senderName`, so `inbox` and `events` would show bare key prefixes;
//! this looks the sender's pubkey up in the daemon's peer list (`GET /v1/peers?mesh=`).
//!
//! Only the human rendering is enriched — the `--json` documents stay exactly what the daemon
//! returned. Any failure (broker down, 503) just leaves the prefix; a list is refetched at
//! most every [`REFRESH`] for a key it did not contain.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{call, query, Target};

/// Minimum time between two fetches of one mesh's list.
const REFRESH: Duration = Duration::from_secs(5);

/// pubkey / memberPubkey → displayName, per mesh.
pub struct Names<'a> {
    target: &'a Target,
    meshes: HashMap<String, (Instant, HashMap<String, String>)>,
}

impl<'a> Names<'a> {
    /// An empty cache over the daemon at `target`.
    pub fn new(target: &'a Target) -> Self {
        Names {
            target,
            meshes: HashMap::new(),
        }
    }

    fn fetch(&self, mesh: &str) -> HashMap<String, String> {
        let q = query(&[("mesh", Some(mesh.to_string()))]);
        let Ok((_, v)) = call(self.target, "peers", "GET", &format!("/v1/peers{q}"), None) else {
            return HashMap::new();
        };
        let mut out = HashMap::new();
        for p in v["peers"].as_array().into_iter().flatten() {
            let Some(name) = p["displayName"].as_str() else {
                continue;
            };
            for key in ["pubkey", "memberPubkey"] {
                if let Some(k) = p[key].as_str() {
                    out.insert(k.to_string(), name.to_string());
                }
            }
        }
        out
    }

    /// The display name of `pubkey` on `mesh`, if the peer list knows it.
    pub fn name(&mut self, mesh: &str, pubkey: &str) -> Option<String> {
        let stale = match self.meshes.get(mesh) {
            None => true,
            Some((at, names)) => !names.contains_key(pubkey) && at.elapsed() >= REFRESH,
        };
        if stale {
            let names = self.fetch(mesh);
            self.meshes
                .insert(mesh.to_string(), (Instant::now(), names));
        }
        self.meshes.get(mesh)?.1.get(pubkey).cloned()
    }

    /// Fills `sender_name` of a message object that has none.
    pub fn fill(&mut self, item: &mut Value) {
        if item["sender_name"].is_string() {
            return;
        }
        let (Some(mesh), Some(key)) = (item["mesh"].as_str(), item["sender_pubkey"].as_str())
        else {
            return;
        };
        if let Some(name) = self.name(mesh, key) {
            item["sender_name"] = name.into();
        }
    }
}
