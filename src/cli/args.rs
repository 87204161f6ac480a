//! The clap definitions of every command and flag. The `///` docs are the `--help` text and
//! the man page (`docs/claudemeshd.1` is generated from them), so they are written for users.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};

use crate::cli::dev::{DevBrokerArgs, DevMeshArgs};
use crate::service::ServiceFormat;

/// Event kinds `events --kinds` accepts (SPEC §7.3).
pub const EVENT_KINDS: [&str; 6] = [
    "message",
    "peer_join",
    "peer_leave",
    "broker_status",
    "outbox_dead",
    "system",
];

/// claudemeshd: a durable, end-to-end encrypted claudemesh peer daemon, and the CLI that
/// talks to it.
///
/// Exit codes: 0 ok; 1 failure or daemon unreachable; 2 usage or configuration error;
/// 3 authentication error; 4 host mismatch (run `claudemeshd accept-host`); 5 storage refused.
#[derive(Parser, Debug)]
#[command(name = "claudemeshd", version, about, long_about)]
pub struct Cli {
    /// Print one JSON document instead of human output (`events`: one JSON object per line).
    #[arg(long, global = true)]
    pub json: bool,
    /// Talk to the daemon over its loopback TCP port (127.0.0.1:<tcp.port>, with the bearer
    /// token from local-token) instead of its Unix socket.
    #[arg(long, global = true)]
    pub tcp: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon (foreground by default, what a service manager wants).
    Up(UpArgs),
    /// Stop the running daemon (SIGTERM to the pid in daemon.pid; waits up to 5 s).
    Down,
    /// Show whether the daemon runs: pid, socket, TCP address, broker links, outbox depth.
    Status,
    /// Show the CLI version and the running daemon's version (warns when they differ).
    Version,
    /// Accept this host as the daemon dir's home: rewrite host_fingerprint.json for this
    /// machine (after moving or restoring the claudemesh dir on purpose).
    AcceptHost,
    /// Send a message; through the daemon, or straight to the broker when no daemon runs.
    Send(SendArgs),
    /// List received messages (oldest of the page first; --json keeps the API's newest first).
    Inbox(InboxArgs),
    /// List the peers the broker reports for a mesh.
    Peers(PeersArgs),
    /// Print events as they arrive (messages, peers joining and leaving, broker status)
    /// until interrupted.
    Events(EventsArgs),
    /// Set this member's profile and presence on a mesh (re-applied after every reconnect).
    Profile(ProfileArgs),
    /// Inspect and requeue outbox rows.
    #[command(subcommand)]
    Outbox(OutboxCmd),
    /// Install claudemeshd as a per-user service (systemd user unit or launchd agent) that
    /// runs `claudemeshd up`.
    InstallService(InstallServiceArgs),
    /// Stop and remove the service file that install-service wrote (and nothing else).
    UninstallService(UninstallServiceArgs),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
    /// Print the man page (roff) generated from these definitions.
    #[command(hide = true)]
    Man,
    /// Create or change a development mesh for the dev broker (not for production).
    DevMesh(DevMeshArgs),
    /// Run the development broker, a stand-in for the claudemesh broker (not for production).
    DevBroker(DevBrokerArgs),
}

/// Flags of `up`.
#[derive(Args, Debug, Clone)]
pub struct UpArgs {
    /// Attach only to this mesh (slug); repeatable. Default: every joined mesh.
    #[arg(long = "mesh", value_name = "SLUG")]
    pub meshes: Vec<String>,
    /// Display name announced to the broker (default: config.json displayName).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Serve the Unix socket only (no loopback TCP port).
    #[arg(long)]
    pub no_tcp: bool,
    /// Loopback TCP port (0 = any free port; the bound port is written to tcp.port).
    #[arg(long, value_name = "PORT")]
    pub tcp_port: Option<u16>,
    /// Answer /v1/health on TCP without a token (then only {"ok":true}).
    #[arg(long)]
    pub public_health: bool,
    /// What to do when the daemon dir seems copied from another host.
    #[arg(long, value_name = "POLICY", value_parser = ["refuse", "warn", "allow"])]
    pub clone_policy: Option<String>,
    /// Start in the background and return once /v1/health answers; logs go to
    /// <daemon dir>/daemon.log (rotated at 10 MB, 3 old files kept).
    #[arg(long)]
    pub detach: bool,
    /// With --detach: how long to wait for /v1/health before giving up.
    #[arg(long, value_name = "SECS", default_value_t = 30, requires = "detach")]
    pub detach_timeout: u64,
    /// Append logs to this file (rotated at 10 MB, 3 old files kept) instead of stderr
    /// (with --detach the default is <daemon dir>/daemon.log).
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
}

/// Arguments of `send`.
#[derive(Args, Debug)]
pub struct SendArgs {
    /// Recipient: a peer's display name, a pubkey (or a 16+ hex prefix), `*` or `@all`
    /// (broadcast), `@group`, `#topic`.
    pub to: String,
    /// The message text.
    pub message: String,
    /// Delivery priority.
    #[arg(long, value_name = "PRIORITY", value_parser = ["now", "next", "low"])]
    pub priority: Option<String>,
    /// Metadata, a JSON object (part of the idempotency fingerprint).
    #[arg(long, value_name = "JSON")]
    pub meta: Option<String>,
    /// The message this one replies to.
    #[arg(long = "reply-to", value_name = "ID")]
    pub reply_to: Option<String>,
    /// Idempotency key (client_message_id): retrying with the same key never sends twice.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// Mesh slug (default: default_mesh of daemon.toml, else the first joined mesh).
    #[arg(long, value_name = "SLUG")]
    pub mesh: Option<String>,
    /// Fail when no daemon answers instead of sending straight to the broker.
    #[arg(long)]
    pub no_cold_path: bool,
}

/// Arguments of `inbox`.
#[derive(Args, Debug)]
pub struct InboxArgs {
    /// Only messages received at or after this time (ISO 8601 or unix milliseconds).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only messages of this topic.
    #[arg(long, value_name = "TOPIC")]
    pub topic: Option<String>,
    /// Only messages from this sender pubkey.
    #[arg(long, value_name = "PUBKEY")]
    pub from: Option<String>,
    /// Only messages of this mesh.
    #[arg(long, value_name = "SLUG")]
    pub mesh: Option<String>,
    /// Page size.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: Option<u32>,
    /// Page cursor: the next_before of the previous page (--json shows it).
    #[arg(long, value_name = "ID")]
    pub before: Option<u64>,
}

/// Arguments of `peers`.
#[derive(Args, Debug)]
pub struct PeersArgs {
    /// Mesh slug (default: the daemon's default mesh).
    #[arg(long, value_name = "SLUG")]
    pub mesh: Option<String>,
}

/// Arguments of `events`.
#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Only these kinds (comma-separated).
    #[arg(long, value_name = "KINDS", value_delimiter = ',', value_parser = EVENT_KINDS)]
    pub kinds: Vec<String>,
    /// Resume: replay every event after this id first (ids survive daemon restarts).
    #[arg(long, value_name = "ID")]
    pub last_event_id: Option<u64>,
    /// Only events of this mesh.
    #[arg(long, value_name = "SLUG")]
    pub mesh: Option<String>,
}

/// Arguments of `profile`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("fields").required(true).multiple(true)
    .args(["summary", "status", "visible", "avatar", "title", "bio", "capabilities"])))]
pub struct ProfileArgs {
    /// One-line summary of what this member is doing.
    #[arg(long, value_name = "TEXT")]
    pub summary: Option<String>,
    /// Presence status (dnd holds back next/low messages).
    #[arg(long, value_name = "STATUS", value_parser = ["idle", "working", "dnd"])]
    pub status: Option<String>,
    /// Whether other members see this member in their peer lists.
    #[arg(long, value_name = "BOOL")]
    pub visible: Option<bool>,
    /// Avatar (an emoji or a URL).
    #[arg(long, value_name = "AVATAR")]
    pub avatar: Option<String>,
    /// Short title.
    #[arg(long, value_name = "TEXT")]
    pub title: Option<String>,
    /// Longer description.
    #[arg(long, value_name = "TEXT")]
    pub bio: Option<String>,
    /// A capability name; repeat for several (replaces the whole list).
    #[arg(long = "capability", value_name = "NAME")]
    pub capabilities: Vec<String>,
    /// Mesh slug (default: the daemon's default mesh).
    #[arg(long, value_name = "SLUG")]
    pub mesh: Option<String>,
}

/// `outbox` subcommands.
#[derive(Subcommand, Debug)]
pub enum OutboxCmd {
    /// List outbox rows, newest first (no payloads).
    List(OutboxListArgs),
    /// Abort a pending or failed row and queue a copy with a new id (same destination).
    Requeue(OutboxRequeueArgs),
}

/// Which outbox rows to list (at most one).
#[derive(Args, Debug)]
#[group(multiple = false)]
pub struct StatusFilter {
    /// Only rows waiting to be sent.
    #[arg(long)]
    pub pending: bool,
    /// Only rows sent and waiting for the broker's ack.
    #[arg(long)]
    pub inflight: bool,
    /// Only delivered rows.
    #[arg(long)]
    pub done: bool,
    /// Only rows that gave up (status dead).
    #[arg(long)]
    pub failed: bool,
    /// Only rows aborted by a requeue.
    #[arg(long)]
    pub aborted: bool,
}

/// Arguments of `outbox list`.
#[derive(Args, Debug)]
pub struct OutboxListArgs {
    /// Status filter.
    #[command(flatten)]
    pub filter: StatusFilter,
    /// How many rows.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=500))]
    pub limit: Option<u32>,
}

/// Arguments of `outbox requeue`.
#[derive(Args, Debug)]
pub struct OutboxRequeueArgs {
    /// The row id (the `id` column of `outbox list`).
    pub id: u64,
    /// client_message_id for the new row (default: a fresh ULID).
    #[arg(long, value_name = "ID")]
    pub new_client_id: Option<String>,
}

/// Arguments of `install-service`.
#[derive(Args, Debug)]
pub struct InstallServiceArgs {
    /// Pass --mesh SLUG to `up` in the service; repeatable. Default: every joined mesh.
    #[arg(long = "mesh", value_name = "SLUG")]
    pub meshes: Vec<String>,
    /// Print the service file and what would be run; write and run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Install even though the CI environment variable is set.
    #[arg(long)]
    pub allow_ci_persistent: bool,
    /// Service manager format (default: launchd on macOS, systemd elsewhere).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<ServiceFormat>,
}

/// Arguments of `uninstall-service`.
#[derive(Args, Debug)]
pub struct UninstallServiceArgs {
    /// Service manager format (default: launchd on macOS, systemd elsewhere).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<ServiceFormat>,
    /// Print what would be removed and run; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Arguments of `completions`.
#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}
