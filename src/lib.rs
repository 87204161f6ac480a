//! claudemeshd: the edges of the daemon — command line, settings precedence, HTTP handlers,
//! client, service install — around the `claudemesh-actors` engine.
//!
//! - [`settings`]: directories, and `config.json` + `daemon.toml` + environment + flags merged
//!   into one [`settings::DaemonSettings`] (flag > env > file > default).

pub mod settings;
