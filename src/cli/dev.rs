//! The `dev-mesh` and `dev-broker` subcommands (SPEC §11): their clap arguments (the `///`
//! docs are the `--help`) and their runners, which return the process exit code.
//!
//! Output: each command prints exactly one JSON line on stdout on success (`dev-mesh create`:
//! `{"mesh_id","members":[{name,member_id,pubkey,config_dir}]}`; `dev-mesh revoke`:
//! `{"revoked","member_id","pubkey"}`; `dev-broker`: `{"msg":"dev_broker_started","url"}` when
//! ready). Errors go to stderr. Exit codes: 0 success, 1 failure (clap uses 2 for usage errors).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde_json::json;

use claudemesh_devbroker::{
    create_mesh, revoke_member, start, DevBrokerOptions, Profile, HEAD_CLAIM_MS, HEAD_GRACE_MS,
    HEAD_STALE_AFTER_MS, HEAD_SWEEP_MS,
};

/// `claudemeshd dev-mesh`: manage the mesh of a dev broker state directory.
#[derive(clap::Args, Debug)]
pub struct DevMeshArgs {
    /// What to do.
    #[command(subcommand)]
    pub cmd: DevMeshCmd,
}

/// `dev-mesh` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum DevMeshCmd {
    /// Create (or extend) the mesh of a state directory, one member per name
    ///
    /// Each member gets a fresh ed25519 keypair and OUT/<name>/config.json, a complete
    /// claudemesh config directory (use it as CLAUDEMESH_CONFIG_DIR). Prints one JSON line
    /// {"mesh_id","members":[{name,member_id,pubkey,config_dir}]}.
    Create {
        /// Dev broker state directory (created if missing); a running dev broker on it sees
        /// the new members without a restart.
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
        /// Broker URL written into each config.json, e.g. ws://127.0.0.1:7900/ws.
        #[arg(long, value_name = "URL")]
        broker_url: String,
        /// Comma-separated member names, e.g. alice,bob (letters, digits, '-', '_', '.').
        #[arg(long, value_name = "NAMES", value_delimiter = ',', required = true)]
        members: Vec<String>,
        /// Directory that receives one config directory per member (OUT/<name>).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Mark a member revoked
    ///
    /// A running dev broker closes its sockets with 4002 `banned` (within ~200 ms) and answers
    /// its next hellos with `revoked`. Prints one JSON line {"revoked","member_id","pubkey"}.
    Revoke {
        /// Dev broker state directory.
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
        /// Name of the member to revoke.
        #[arg(long, value_name = "NAME")]
        member: String,
    },
}

/// `claudemeshd dev-broker`: a local stand-in for the claudemesh broker, for development,
/// demos and tests only — not a production broker. `--profile head` reproduces the current
/// broker (docs/dev-broker.md).
#[derive(clap::Args, Debug)]
pub struct DevBrokerArgs {
    /// State directory holding the mesh made by `dev-mesh create` (and the message queue).
    #[arg(long, value_name = "DIR")]
    pub state: PathBuf,
    /// Address to listen on; port 0 picks a free port (the ready line shows the real one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Turn off the per-member send rate limit (burst 10, 1/s) that the real broker enforces.
    #[arg(long)]
    pub no_rate_limit: bool,
    /// Broker-side idempotency (SPEC §11): a repeated client_message_id with the same
    /// request_fingerprint is acked as a duplicate and not delivered again; with another
    /// fingerprint it is refused with `idempotency_key_reused: request_fingerprint_mismatch`.
    #[arg(long)]
    pub dedupe: bool,
    /// Interval of the WebSocket pings sent to every socket, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    pub ping_interval_ms: u64,
    /// Terminate (no close frame) sockets that have not answered a ping for this long, in
    /// milliseconds; default: off under `--profile seed`, 75000 under `--profile head`.
    #[arg(long, value_name = "MS")]
    pub stale_after_ms: Option<u64>,
    /// Which claudemesh broker to reproduce: `seed` (v0.9.0) or `head` (the current broker:
    /// offline lease, silent reattach, session_hello, claims until client_ack, peerRole).
    #[arg(long, value_name = "PROFILE", default_value_t = Profile::Seed)]
    pub profile: Profile,
    /// Head: how long a closed socket's presence stays listed (and DMs to it queue) before
    /// `peer_left`, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = HEAD_GRACE_MS)]
    pub grace_ms: u64,
    /// Head: how long a pushed DM stays claimed before a later drain may push it again, in
    /// milliseconds.
    #[arg(long, value_name = "MS", default_value_t = HEAD_CLAIM_MS)]
    pub claim_ms: u64,
    /// Head: interval of the sweep that releases expired claims (it never pushes), in
    /// milliseconds.
    #[arg(long, value_name = "MS", default_value_t = HEAD_SWEEP_MS)]
    pub sweep_ms: u64,
    /// Test fault: refuse every Nth `send` with an `injected_failure` ack (not queued).
    #[arg(long, value_name = "N")]
    pub fail_every: Option<u64>,
    /// Test fault: queue every Nth `send`, then drop its sender's socket before the ack.
    #[arg(long, value_name = "N")]
    pub drop_every: Option<u64>,
}

/// Writes one line to stdout and flushes; a closed stdout is not an error worth dying for.
fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Runs `dev-mesh create|revoke`; returns the exit code.
pub fn run_dev_mesh(args: DevMeshArgs) -> i32 {
    match args.cmd {
        DevMeshCmd::Create {
            state,
            broker_url,
            members,
            out,
        } => {
            let names: Vec<String> = members.iter().map(|n| n.trim().to_owned()).collect();
            match create_mesh(&state, &broker_url, &names, &out) {
                Ok(created) => match serde_json::to_string(&created) {
                    Ok(line) => {
                        print_line(&line);
                        0
                    }
                    Err(err) => {
                        eprintln!("claudemeshd dev-mesh create: {err}");
                        1
                    }
                },
                Err(err) => {
                    eprintln!("claudemeshd dev-mesh create: {err}");
                    1
                }
            }
        }
        DevMeshCmd::Revoke { state, member } => match revoke_member(&state, &member) {
            Ok(row) => {
                let line = json!({"revoked": row.name, "member_id": row.id, "pubkey": row.pubkey});
                print_line(&line.to_string());
                0
            }
            Err(err) => {
                eprintln!("claudemeshd dev-mesh revoke: {err}");
                1
            }
        },
    }
}

/// Runs the dev broker in an actix `System` until SIGTERM or SIGINT, then closes every socket
/// with 1001 `shutting down` and returns 0; returns 1 if it cannot start.
pub fn run_dev_broker(args: DevBrokerArgs) -> i32 {
    actix_web::rt::System::new().block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        // Handlers first, so a SIGTERM right after the ready line is a clean stop.
        let (mut term, mut int) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => (term, int),
            (Err(err), _) | (_, Err(err)) => {
                eprintln!("claudemeshd dev-broker: cannot install signal handlers: {err}");
                return 1;
            }
        };
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => log::info!("dev broker: SIGTERM, shutting down"),
                _ = int.recv() => log::info!("dev broker: SIGINT, shutting down"),
            }
        };
        serve(args, print_line, shutdown).await
    })
}

/// The body of `dev-broker`: starts the broker, hands the ready line to `ready`, runs until
/// `shutdown` completes, then stops cleanly. Returns the exit code.
pub async fn serve(
    args: DevBrokerArgs,
    ready: impl FnOnce(&str),
    shutdown: impl std::future::Future<Output = ()>,
) -> i32 {
    let opts = broker_options(args);
    let broker = match start(opts).await {
        Ok(broker) => broker,
        Err(err) => {
            eprintln!("claudemeshd dev-broker: {err}");
            return 1;
        }
    };
    ready(&json!({"msg": "dev_broker_started", "url": broker.url()}).to_string());
    shutdown.await;
    match broker.stop().await {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("claudemeshd dev-broker: {err}");
            1
        }
    }
}

/// The in-process options of a `dev-broker` command line; `--stale-after-ms` defaults by
/// profile (seed: off, head: 75 000).
pub fn broker_options(args: DevBrokerArgs) -> DevBrokerOptions {
    DevBrokerOptions {
        state_dir: args.state,
        listen: args.listen,
        rate_limit: !args.no_rate_limit,
        dedupe: args.dedupe,
        ping_interval_ms: args.ping_interval_ms,
        stale_after_ms: args.stale_after_ms.or(match args.profile {
            Profile::Seed => None,
            Profile::Head => Some(HEAD_STALE_AFTER_MS),
        }),
        profile: args.profile,
        grace_ms: args.grace_ms,
        claim_ms: args.claim_ms,
        sweep_ms: args.sweep_ms,
        fail_every: args.fail_every,
        drop_every: args.drop_every,
    }
}

#[cfg(test)]
#[path = "dev_tests.rs"]
mod tests;
