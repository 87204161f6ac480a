//! The command line (SPEC §10, §12): clap definitions ([`args`]), the commands (the daemon's own
//! lifecycle in [`local`], the HTTP API clients in [`api`], service files and generated
//! documents in [`setup`]), their failures ([`error`]) and all printing ([`output`]).
//!
//! Client commands only talk to the daemon's HTTP API (over the socket, or loopback TCP with
//! the token under `--tcp`), never open its databases; the one exception to "through the
//! daemon" is the cold-path `send` ([`crate::coldpath`]), which talks to the broker.
//! `dev-mesh` and `dev-broker` ([`dev`]) parse their flags here and run the
//! `claudemesh-devbroker` crate.

pub mod api;
pub mod args;
pub mod dev;
pub mod error;
pub mod listener;
pub mod local;
pub mod names;
pub mod output;
pub mod setup;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

pub use args::{Cli, Command};
use error::CliError;
use output::Report;

use crate::client::{self, Endpoint};
use crate::logfile::{RotatingFile, DEFAULT_KEEP, DEFAULT_MAX_BYTES};
use crate::settings::{self, Dirs};

/// Reads the process environment (the CLI's only source of `CLAUDEMESH_*`, `HOME`, `CI`).
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Initialises env_logger: `RUST_LOG`, default `info` for the daemon and the dev broker and
/// `warn` for client commands; `up --log-file` (and so `up --detach`) logs into the rotated
/// file instead of stderr.
pub fn init_logging(cli: &Cli) {
    let default = match &cli.command {
        Command::Up(_) | Command::DevBroker(_) | Command::DevMesh(_) => "info",
        _ => "warn",
    };
    let mut builder = env_logger::Builder::new();
    builder.parse_filters(default);
    // actix-server's own start/stop lines name the socket's temporary bind name (`.~daemon.so`)
    // and its workers; the daemon logs one line per listener with the real path instead.
    // `RUST_LOG=actix_server=info` brings them back.
    builder.filter_module("actix_server", log::LevelFilter::Warn);
    builder.parse_env(env_logger::Env::default());
    builder.target(env_logger::Target::Stderr);
    if let Command::Up(args::UpArgs {
        log_file: Some(path),
        ..
    }) = &cli.command
    {
        match RotatingFile::open(path, DEFAULT_MAX_BYTES, DEFAULT_KEEP) {
            Ok(file) => {
                builder.target(env_logger::Target::Pipe(Box::new(file)));
            }
            Err(e) => output::warning(&format!("{e}; logging to stderr")),
        }
    }
    builder.init();
}

/// Runs the parsed command; returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    let ctx = Ctx {
        json: cli.json,
        tcp: cli.tcp,
    };
    let result = match cli.command {
        Command::Up(a) => local::up(&ctx, a),
        Command::Down => local::down(&ctx),
        Command::Status => local::status(&ctx),
        Command::Version => local::version(&ctx),
        Command::AcceptHost => local::accept_host(&ctx),
        Command::Send(a) => api::send(&ctx, a),
        Command::Inbox(a) => api::inbox(&ctx, a),
        Command::Peers(a) => api::peers(&ctx, a),
        Command::Sessions => api::sessions(&ctx),
        Command::Profile(a) => api::profile(&ctx, a),
        Command::Outbox(c) => api::outbox(&ctx, c),
        Command::Events(a) => api::events(&ctx, a),
        Command::InstallService(a) => setup::install_service(&ctx, a),
        Command::UninstallService(a) => setup::uninstall_service(&ctx, a),
        Command::Completions(a) => setup::completions(a),
        Command::Man => setup::man(),
        Command::DevMesh(a) => return dev::run_dev_mesh(a),
        Command::DevBroker(a) => return dev::run_dev_broker(a),
    };
    output::finish(ctx.json, result)
}

/// Global flags every command sees.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    /// `--json`.
    pub json: bool,
    /// `--tcp`.
    pub tcp: bool,
}

/// Where to reach the daemon (an owned [`Endpoint`]).
#[derive(Debug, Clone)]
pub enum Target {
    /// `<daemon dir>/daemon.sock`.
    Socket(PathBuf),
    /// `127.0.0.1:<tcp.port>` with the `local-token`.
    Tcp {
        /// The port.
        port: u16,
        /// The bearer token.
        token: String,
    },
}

impl Target {
    /// The borrowed form the client takes.
    pub fn endpoint(&self) -> Endpoint<'_> {
        match self {
            Target::Socket(p) => Endpoint::Socket(p),
            Target::Tcp { port, token } => Endpoint::Tcp { port: *port, token },
        }
    }
}

impl Ctx {
    /// The claudemesh directories from the environment.
    pub fn dirs(&self) -> Result<Dirs, CliError> {
        Ok(settings::resolve_dirs(&env)?)
    }

    /// The socket, or under `--tcp` the port and token from the daemon dir.
    pub fn target(&self, dirs: &Dirs) -> Result<Target, CliError> {
        if !self.tcp {
            return Ok(Target::Socket(dirs.socket()));
        }
        let port_file = dirs.tcp_port_file();
        let port = match std::fs::read_to_string(&port_file) {
            Ok(text) => text.trim().parse::<u16>().map_err(|_| CliError::TcpFile {
                path: port_file.clone(),
                detail: format!("not a port number: {:?}", text.trim()),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CliError::NoTcpPort { path: port_file })
            }
            Err(e) => {
                return Err(CliError::TcpFile {
                    path: port_file,
                    detail: e.to_string(),
                })
            }
        };
        let token = read_token(&dirs.token())?;
        // Never hand the token to whoever listens on a stale port.
        listener::verify(&dirs.pid_file(), port).map_err(|e| CliError::TcpNotDaemon {
            port: e.port,
            reason: e.reason,
        })?;
        Ok(Target::Tcp { port, token })
    }
}

/// Reads `local-token`, refusing one that group or others can read (as the daemon does), and
/// a link or another user's file (`O_NOFOLLOW` + `fstat`, as the daemon opens it).
fn read_token(path: &std::path::Path) -> Result<String, CliError> {
    use std::io::Read as _;
    use std::os::unix::fs::PermissionsExt;
    let unreadable = |e: std::io::Error| CliError::TcpFile {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    let mut file =
        claudemesh_actors::files::open_owned(path, std::fs::OpenOptions::new().read(true))
            .map_err(|e| CliError::TcpFile {
                path: path.to_path_buf(),
                detail: e.to_string(),
            })?;
    let mode = file.metadata().map_err(unreadable)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CliError::TokenMode {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut token = String::new();
    file.read_to_string(&mut token).map_err(unreadable)?;
    Ok(token.trim().to_string())
}

/// How long a plain API request may take.
const API_TIMEOUT: Duration = Duration::from_secs(15);

/// One API request; a non-2xx answer is [`CliError::Api`]. Returns the status and the body.
pub fn call(
    target: &Target,
    what: &'static str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), CliError> {
    let text = body.map(Value::to_string);
    let r = client::request(
        &target.endpoint(),
        method,
        path,
        text.as_deref(),
        API_TIMEOUT,
    )?;
    let json = serde_json::from_str::<Value>(&r.body)
        .unwrap_or_else(|_| serde_json::json!({ "raw": r.body.trim() }));
    if (200..300).contains(&r.status) {
        Ok((r.status, json))
    } else {
        Err(CliError::Api {
            what,
            status: r.status,
            body: json,
        })
    }
}

/// A query string from the pairs whose value is present (`?a=1&b=x%20y`, or `""`).
pub fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", percent_encode(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A report whose human text is rendered from its JSON.
pub fn report(json: Value, human: fn(&Value) -> String) -> Report {
    let text = human(&json);
    Report::new(json, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_skip_absent_values_and_escape_the_rest() {
        assert_eq!(query(&[("a", None)]), "");
        assert_eq!(
            query(&[
                ("since", Some("2026-01-01T00:00:00+02:00".into())),
                ("x", None),
                ("topic", Some("a b&c".into()))
            ]),
            "?since=2026-01-01T00%3A00%3A00%2B02%3A00&topic=a%20b%26c"
        );
    }

    #[test]
    fn a_token_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("local-token");
        std::fs::write(&p, "tok\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_token(&p).unwrap(), "tok");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_token(&p).unwrap_err();
        assert_eq!(e.exit_code(), 3);
        let link = dir.path().join("link-token");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = read_token(&link).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
    }
}
