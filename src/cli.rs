//! Command-line interface (clap derive): the daemon itself (`up`) and the commands that talk
//! to it over its socket. Output is printed here only; `--json` prints one JSON document.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde_json::{json, Value};

use crate::client::{self, Endpoint};
use crate::daemon::{self, exit};
use crate::devbroker::cli::{DevBrokerArgs, DevMeshArgs};
use crate::settings::{self, Dirs, UpFlags};
use claudemesh_actors::settings::ClonePolicy;

/// claudemeshd: a durable, end-to-end encrypted claudemesh peer daemon and its CLI.
#[derive(Parser, Debug)]
#[command(name = "claudemeshd", version, about)]
pub struct Cli {
    /// Print one JSON document instead of human output.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon in the foreground (what a service manager wants).
    Up(UpArgs),
    /// Stop the running daemon (SIGTERM via its pid file; waits up to 5 s).
    Down,
    /// Show whether the daemon runs, its broker links and its outbox.
    Status,
    /// Show the CLI version and the running daemon's version.
    Version,
    /// Send a message through the running daemon.
    Send(SendArgs),
    /// Create or change a development mesh for the dev broker (not for production).
    DevMesh(DevMeshArgs),
    /// Run the development broker, a stand-in for the claudemesh broker (not for production).
    DevBroker(DevBrokerArgs),
}

/// Flags of `up`.
#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// Attach only to this mesh (slug); repeatable. Default: every joined mesh.
    #[arg(long = "mesh")]
    pub meshes: Vec<String>,
    /// Display name announced to the broker (default: config.json displayName).
    #[arg(long)]
    pub name: Option<String>,
    /// Serve the Unix socket only.
    #[arg(long)]
    pub no_tcp: bool,
    /// Loopback TCP port (0 = any free port, written to tcp.port).
    #[arg(long)]
    pub tcp_port: Option<u16>,
    /// Answer /v1/health on TCP without a token (then only {"ok":true}).
    #[arg(long)]
    pub public_health: bool,
    /// What to do when the daemon dir seems copied from another host.
    #[arg(long, value_parser = ["refuse", "warn", "allow"])]
    pub clone_policy: Option<String>,
}

/// Arguments of `send`.
#[derive(clap::Args, Debug)]
pub struct SendArgs {
    /// Recipient: display name, pubkey (or 16+ hex prefix), `*`/`@all`, `@group`, `#topic`.
    pub to: String,
    /// The message text.
    pub message: String,
    /// now | next | low.
    #[arg(long)]
    pub priority: Option<String>,
    /// Idempotency key (client_message_id); retrying with the same key never sends twice.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Mesh slug (default: the daemon's default mesh).
    #[arg(long)]
    pub mesh: Option<String>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn dirs_or_exit() -> Result<Dirs, i32> {
    settings::resolve_dirs(&env).map_err(|e| {
        eprintln!("claudemeshd: {e}");
        exit::USAGE
    })
}

/// Runs the parsed command; returns the exit code.
pub fn run(cli: Cli) -> i32 {
    let code = match cli.command {
        Command::Up(args) => up(args),
        Command::Down => down(cli.json),
        Command::Status => status(cli.json),
        Command::Version => version(cli.json),
        Command::Send(args) => send(args, cli.json),
        Command::DevMesh(args) => return crate::devbroker::cli::run_dev_mesh(args),
        Command::DevBroker(args) => return crate::devbroker::cli::run_dev_broker(args),
    };
    code.unwrap_or_else(|c| c)
}

fn up(args: UpArgs) -> Result<i32, i32> {
    let clone_policy = args
        .clone_policy
        .as_deref()
        .map(|s| s.parse::<ClonePolicy>())
        .transpose()
        .map_err(|e| {
            eprintln!("claudemeshd: {e}");
            exit::USAGE
        })?;
    let flags = UpFlags {
        meshes: args.meshes,
        name: args.name,
        no_tcp: args.no_tcp,
        tcp_port: args.tcp_port,
        public_health: args.public_health,
        clone_policy,
    };
    let settings = settings::load(&flags, &env).map_err(|e| {
        eprintln!("claudemeshd: {e}");
        exit::USAGE
    })?;
    match daemon::run(settings, daemon::signals()) {
        Ok(()) => Ok(exit::OK),
        Err(e) => {
            eprintln!("claudemeshd: {e}");
            Err(e.exit_code())
        }
    }
}

fn socket_get(dirs: &Dirs, path: &str) -> Result<client::Response, client::ClientError> {
    let sock = dirs.socket();
    client::request(
        &Endpoint::Socket(&sock),
        "GET",
        path,
        None,
        Duration::from_secs(5),
    )
}

fn print(json_mode: bool, value: &Value, human: impl FnOnce() -> String) {
    if json_mode {
        println!("{value}");
    } else {
        println!("{}", human());
    }
}

fn status(json_mode: bool) -> Result<i32, i32> {
    let dirs = dirs_or_exit()?;
    match socket_get(&dirs, "/v1/health") {
        Ok(r) if r.status == 200 => {
            let h = r.json();
            let v = json!({"running": true, "socket": dirs.socket(), "health": h});
            print(json_mode, &v, || human_status(&dirs.socket(), &h));
            Ok(exit::OK)
        }
        Ok(r) => {
            eprintln!(
                "claudemeshd: daemon answered {}: {}",
                r.status,
                r.body.trim()
            );
            Err(exit::FAILURE)
        }
        Err(e) => {
            let v = json!({"running": false, "socket": dirs.socket(), "error": e.to_string()});
            print(json_mode, &v, || format!("not running: {e}"));
            Err(exit::FAILURE)
        }
    }
}

fn human_status(sock: &std::path::Path, h: &Value) -> String {
    let mut out = format!(
        "running: pid {}, version {}, up {} s\nsocket: {}\ntcp: {}\n",
        h["pid"],
        h["version"].as_str().unwrap_or("?"),
        h["uptime_s"],
        sock.display(),
        h["tcp"].as_str().unwrap_or("off")
    );
    for m in h["meshes"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "mesh {}: {}{}\n",
            m["slug"].as_str().unwrap_or("?"),
            m["broker_status"].as_str().unwrap_or("?"),
            m["last_error"]
                .as_str()
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default()
        ));
    }
    let o = &h["outbox"];
    out.push_str(&format!(
        "outbox: {} pending, {} inflight, {} dead, oldest pending {} s",
        o["pending"],
        o["inflight"],
        o["dead"],
        o["oldest_pending_age_s"]
            .as_i64()
            .map(|v| v.to_string())
            .unwrap_or_else(|| "-".into())
    ));
    out
}

fn version(json_mode: bool) -> Result<i32, i32> {
    let dirs = dirs_or_exit()?;
    let cli_version = env!("CARGO_PKG_VERSION");
    let daemon_version = socket_get(&dirs, "/v1/version")
        .ok()
        .filter(|r| r.status == 200)
        .and_then(|r| r.json()["daemon_version"].as_str().map(str::to_string));
    let v = json!({"cli_version": cli_version, "daemon_version": daemon_version});
    print(json_mode, &v, || match &daemon_version {
        Some(d) if d != cli_version => {
            format!("cli {cli_version}\ndaemon {d} (warning: versions differ)")
        }
        Some(d) => format!("cli {cli_version}\ndaemon {d}"),
        None => format!("cli {cli_version}\ndaemon not running"),
    });
    Ok(exit::OK)
}

fn down(json_mode: bool) -> Result<i32, i32> {
    let dirs = dirs_or_exit()?;
    let Some(pid) = claudemesh_actors::files::read_pid_file(&dirs.pid_file()) else {
        eprintln!(
            "claudemeshd: not running (no {})",
            dirs.pid_file().display()
        );
        return Err(exit::FAILURE);
    };
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return Err(exit::FAILURE);
    };
    // SAFETY: sending SIGTERM to a pid read from our own pid file.
    if unsafe { libc::kill(raw, libc::SIGTERM) } != 0 {
        eprintln!(
            "claudemeshd: cannot signal pid {pid}: {}",
            std::io::Error::last_os_error()
        );
        return Err(exit::FAILURE);
    }
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        if !claudemesh_actors::files::pid_alive(pid) {
            print(json_mode, &json!({"stopped": true, "pid": pid}), || {
                format!("stopped (pid {pid})")
            });
            return Ok(exit::OK);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("claudemeshd: pid {pid} still running after 5 s");
    Err(exit::FAILURE)
}

fn send(args: SendArgs, json_mode: bool) -> Result<i32, i32> {
    let dirs = dirs_or_exit()?;
    let mut body = json!({"to": args.to, "message": args.message});
    if let Some(p) = args.priority {
        body["priority"] = p.into();
    }
    if let Some(k) = args.idempotency_key {
        body["client_message_id"] = k.into();
    }
    if let Some(m) = args.mesh {
        body["mesh"] = m.into();
    }
    let sock: PathBuf = dirs.socket();
    let r = client::request(
        &Endpoint::Socket(&sock),
        "POST",
        "/v1/send",
        Some(&body.to_string()),
        Duration::from_secs(10),
    )
    .map_err(|e| {
        eprintln!("claudemeshd: {e}");
        exit::FAILURE
    })?;
    let v = r.json();
    if r.status == 200 || r.status == 202 {
        print(json_mode, &v, || {
            format!(
                "{} {}",
                v["status"].as_str().unwrap_or(if v["duplicate"] == true {
                    "duplicate"
                } else {
                    "accepted"
                }),
                v["client_message_id"].as_str().unwrap_or("")
            )
        });
        Ok(exit::OK)
    } else {
        if json_mode {
            println!("{v}");
        }
        eprintln!(
            "claudemeshd: send refused ({}): {}",
            r.status,
            r.body.trim()
        );
        Err(if r.status == 400 || r.status == 404 || r.status == 413 {
            exit::USAGE
        } else {
            exit::FAILURE
        })
    }
}
