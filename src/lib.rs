//! claudemeshd: the edges of the daemon — command line, settings precedence, HTTP handlers,
//! client, lifecycle — around the `claudemesh-actors` engine.
//!
//! - [`settings`]: directories, and `config.json` + `daemon.toml` + environment + flags merged
//!   into one [`settings::DaemonSettings`] (flag > env > file > default).
//! - [`daemon`]: `claudemeshd up` — startup checks, actor tree, listeners, ordered shutdown.
//! - [`http`]: the `/v1` routes, DTOs and the local-API security rules.
//! - [`client`]: the CLI's HTTP client over the socket or loopback TCP (and its SSE reader).
//! - [`cli`]: clap definitions, the commands, and all command output.
//! - [`coldpath`]: `send` straight to the broker when no daemon runs.
//! - [`service`]: the systemd user unit / launchd agent, rendered from `config/` templates.
//! - [`logfile`]: the size-rotated log file of a `--detach`ed daemon.
//!
//! The development broker (a stand-in for the claudemesh broker; tests and demo only) is the
//! `claudemesh-devbroker` crate (`devbroker/`); `dev-mesh`/`dev-broker` are in [`cli::dev`].

pub mod cli;
pub mod client;
pub mod coldpath;
pub mod daemon;
pub mod http;
pub mod logfile;
pub mod service;
pub mod settings;

/// Installs rustls' ring provider as the process default (awc's `wss://` needs one).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
