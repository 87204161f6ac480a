//! Settings data: the claudemesh `config.json` (joined meshes, read only) and the daemon's
//! tuning (`daemon.toml` + `CLAUDEMESH_<SECTION>_<KEY>` environment overrides).
//!
//! Pure: no actix, no process-environment access (environment lookups come in as a closure),
//! no file I/O — callers hand in the text and the path it came from, so every error can name
//! the file. Resolving directories, reading files and the flag > env > file > default
//! precedence live in the root crate (`claudemeshd::settings`).
//!
//! Invariants:
//! - A parsed [`ClaudemeshConfig`] has well-formed keys (64/128 hex), `ws://`/`wss://` broker
//!   URLs, non-empty ids and unique slugs. Whether `secretKey` matches `pubkey` is the crypto
//!   module's check, not this one.
//! - A [`Tuning`] built by [`parse_daemon_toml`] and [`Tuning::apply_env`] holds no unknown
//!   key and no numeric value outside its documented range ([`key_ranges`]): no zero where
//!   zero would be meaningless, nothing large enough to overflow a conversion.
//! - [`JoinedMesh`]'s `Debug` never prints the secret key.

mod config;
mod env;
mod tuning;

pub use config::{parse_config_json, ClaudemeshConfig, JoinedMesh};
pub use env::{env_var_names, key_ranges, DEFAULT_MESH_ENV};
pub use tuning::{
    parse_daemon_toml, BrokerTuning, ClonePolicy, CloneTuning, Durability, InboxTuning, IpcTuning,
    OutboxTuning, Tuning,
};

use std::path::PathBuf;

/// Everything that can be wrong with the daemon's settings. The CLI maps every variant to
/// exit code 2 (usage/config error); each message is one line naming the file, field or
/// variable at fault.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// `config.json` (or `daemon.toml`) exists but cannot be read.
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        /// The file that failed to read.
        file: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// `config.json` is not valid JSON; the serde_json message carries line and column.
    #[error("{}: invalid JSON: {source}", file.display())]
    ConfigJson {
        /// The config file.
        file: PathBuf,
        /// The parse error, with line and column.
        source: serde_json::Error,
    },
    /// A field of `config.json` is missing, mistyped or malformed.
    #[error("{}: {field}: {reason}", file.display())]
    ConfigField {
        /// The config file.
        file: PathBuf,
        /// JSON path of the field, e.g. `meshes[1].secretKey`.
        field: String,
        /// What is wrong, e.g. `expected 128 hex characters`.
        reason: String,
    },
    /// `config.json` is absent: no mesh has been joined on this host.
    #[error(
        "{} not found: no mesh joined; run `claudemesh join <invite>` first \
         (or set CLAUDEMESH_CONFIG_DIR)",
        file.display()
    )]
    NoConfig {
        /// Where the config was looked for.
        file: PathBuf,
    },
    /// `config.json` lists no mesh.
    #[error("{}: no mesh joined; run `claudemesh join <invite>` first", file.display())]
    NoMeshes {
        /// The config file.
        file: PathBuf,
    },
    /// `daemon.toml` is not valid TOML, or has an unknown key or a value of the wrong type.
    #[error("{}:{line}:{column}: {message}", file.display())]
    DaemonToml {
        /// The tuning file.
        file: PathBuf,
        /// 1-based line of the offending text (1 when the parser gave no position).
        line: usize,
        /// 1-based column of the offending text.
        column: usize,
        /// The parser's message, e.g. ``unknown field `foo`, expected one of …``.
        message: String,
    },
    /// A `daemon.toml` value is well-typed but out of range.
    #[error("{}: {key}: {reason}", file.display())]
    TuningValue {
        /// The tuning file.
        file: PathBuf,
        /// Dotted key, e.g. `outbox.window`.
        key: String,
        /// What is wrong, e.g. `must be in 1..=4096, got 0`.
        reason: String,
    },
    /// The merged tuning (file, environment, flags) holds a value outside its range.
    #[error("{key}: {reason}")]
    OutOfRange {
        /// Dotted key, e.g. `outbox.max_age_hours`.
        key: String,
        /// What is wrong, e.g. `must be in 1..=876000, got 3000000000000`.
        reason: String,
    },
    /// A `CLAUDEMESH_*` tuning variable holds a value that does not parse or is out of range.
    #[error("environment variable {var}={value:?}: expected {expected}")]
    Env {
        /// The variable name, e.g. `CLAUDEMESH_IPC_TCP_PORT`.
        var: String,
        /// The value found.
        value: String,
        /// What was expected, e.g. `an integer in 0..=65535`.
        expected: String,
    },
    /// A choice-valued setting (durability, clone policy) got an unknown word.
    #[error("{value:?} is not one of {expected}")]
    UnknownChoice {
        /// The word given.
        value: String,
        /// The accepted words, e.g. `refuse, warn, allow`.
        expected: &'static str,
    },
    /// Neither `CLAUDEMESH_CONFIG_DIR` nor `HOME` is set, so the config dir is unknown.
    #[error(
        "cannot locate the claudemesh config dir: neither CLAUDEMESH_CONFIG_DIR nor HOME is set"
    )]
    NoHome,
    /// `--mesh` named a slug that is not joined.
    #[error("unknown mesh {slug:?}; joined meshes: {}", joined.join(", "))]
    UnknownMesh {
        /// The slug asked for.
        slug: String,
        /// The slugs in `config.json`.
        joined: Vec<String>,
    },
    /// `default_mesh` names a mesh that is not among the ones this daemon attaches to.
    #[error("default_mesh {slug:?} is not among the selected meshes: {}", selected.join(", "))]
    DefaultMeshNotSelected {
        /// The configured default mesh.
        slug: String,
        /// The slugs selected for this run.
        selected: Vec<String>,
    },
}
