//! claudemesh-actors: the claudemeshd engine.
//!
//! Pure modules (no actix, unit-tested on their own):
//! - [`crypto`]: member keys, hello signature, ed25519→X25519, crypto_box DMs, base64 bodies.
//! - [`fingerprint`]: the request fingerprint of SPEC §5.2 and the `to` → destination mapping.
//! - [`wire`]: typed serde frames of the broker WebSocket protocol, both directions.
//! - [`settings`]: `config.json` and `daemon.toml` data types, parsing and validation.
//! - [`host`]: host fingerprint (clone detection) and its refuse/warn/allow decision.
//! - [`files`]: daemon-dir files: permissions, `local-token`, the `flock` singleton.
//! - [`procs`]: whether a pid file names a claudemesh daemon (stale pid files).
//! - [`storage`]: storage failures (disk full, busy, I/O) as the API reports them.
//! - [`outbox::store`], [`inbox::store`]: the SQL of the two databases.

//! - [`outbox::store`], [`inbox::store`], [`sessions::store`]: the SQL of the two databases.
//! - [`sessions`]: the session registry (SPEC §12) — the SessionRegistry actor, its `sessions`
//!   table in `outbox.db` (through the OutboxDb thread) and the process-liveness reaper.
//! - [`time`]: unix milliseconds and ISO 8601.

pub mod broker;
pub mod checkpoint;
pub mod crypto;
pub mod events;
pub mod files;
pub mod fingerprint;
pub mod handles;
pub mod host;
pub mod inbox;
pub mod ipc;
pub mod metrics;
pub mod outbox;
pub mod procs;
pub mod readpool;

pub mod sessions;
pub mod settings;
pub mod storage;
pub mod supervisor;
pub mod time;
pub mod wire;
