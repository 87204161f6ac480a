//! `claudemeshd up`: the daemon's lifecycle (SPEC §3) — startup checks in order, each failure
//! one clear line and a distinct exit code; the actor tree; the IPC listener; signals; the
//! ordered shutdown. [`run`] takes its shutdown trigger as a parameter so tests and `main`
//! drive it the same way.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use claudemesh_actors::handles::DaemonInfo;
use claudemesh_actors::ipc::{IpcListener, ListenerConfig};
use claudemesh_actors::supervisor::{self, EngineConfig};
use claudemesh_actors::time::now_ms;
use claudemesh_actors::{files, outbox, procs};

mod startup;

use crate::http::{self, LocalToken};
use crate::settings::DaemonSettings;

/// Exit codes of SPEC §10.
pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILURE: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const AUTH: i32 = 3;
    pub const HOST_MISMATCH: i32 = 4;
    pub const STORAGE: i32 = 5;
}

/// Why the daemon could not start (or stopped badly); each maps to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("already running (pid {})", .pid.map(|p| p.to_string()).unwrap_or_else(|| "unknown".into()))]
    AlreadyRunning { pid: Option<u32> },
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Auth(String),
    #[error("this host does not match {path}: the daemon dir looks copied from another machine; if this is intended run `claudemeshd accept-host`, or start with --clone-policy warn|allow")]
    HostMismatch { path: PathBuf },
    #[error("{0}")]
    Storage(String),
    #[error("{0}")]
    Io(String),
}

impl DaemonError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            DaemonError::AlreadyRunning { .. } | DaemonError::Io(_) => exit::FAILURE,
            DaemonError::Config(_) => exit::USAGE,
            DaemonError::Auth(_) => exit::AUTH,
            DaemonError::HostMismatch { .. } => exit::HOST_MISMATCH,
            DaemonError::Storage(_) => exit::STORAGE,
        }
    }
}

/// A daemon-dir failure: another user's dir or a planted file is a configuration error the
/// user must fix (exit 2); anything else is an I/O failure (exit 1).
fn files_error(e: files::FilesError) -> DaemonError {
    match e {
        files::FilesError::NotOwned { .. } | files::FilesError::Untrusted { .. } => {
            DaemonError::Config(e.to_string())
        }
        other => DaemonError::Io(other.to_string()),
    }
}

/// What ended one attachment of the engine.
enum Trigger {
    /// Stop the daemon.
    Stop,
    /// SIGHUP with a configuration that loaded: attach again with it.
    Reload(Box<DaemonSettings>),
}

/// Re-reads the configuration on SIGHUP (`config.json`, `daemon.toml`, environment, the
/// original flags).
pub type Reload =
    Box<dyn Fn() -> Result<DaemonSettings, claudemesh_actors::settings::SettingsError>>;

/// Runs the daemon until `shutdown` resolves; returns after the ordered shutdown. On SIGHUP,
/// `reload` (when given) re-reads the configuration; if it loads, the engine is detached in
/// order and attached again with it — new meshes connect, removed ones close (their rows stay
/// in the outbox), tunables apply; IPC clients see one reconnect and SSE resumes by id. A
/// configuration that does not load is logged and the daemon keeps running as it was.
pub fn run<F>(
    settings: DaemonSettings,
    shutdown: F,
    reload: Option<Reload>,
) -> Result<(), DaemonError>
where
    F: Future<Output = ()> + 'static,
{
    let dirs = settings.dirs.clone();
    // Every connection costs a descriptor: take all the kernel allows, and size the
    // listeners' connection budgets well under it.
    let nofile = claudemesh_actors::ipc::limits::raise_fd_limit();
    // 1. daemon dir, lock, TS-daemon style pid/socket checks.
    match files::ensure_private_dir(&dirs.daemon_dir) {
        Ok(files::DirState::Tightened { old_mode }) => log::warn!(
            "daemon dir {} had mode {old_mode:o}; tightened to 0700",
            dirs.daemon_dir.display()
        ),
        Ok(_) => {}
        Err(e) => return Err(files_error(e)),
    }
    let socket_path = dirs.socket();
    files::check_socket_path(&socket_path).map_err(|e| DaemonError::Config(e.to_string()))?;
    let lock = files::acquire_lock(&dirs.lock()).map_err(|e| match e {
        files::FilesError::AlreadyRunning { pid } => DaemonError::AlreadyRunning { pid },
        other => files_error(other),
    })?;
    // Files that others (SQLite, the host module) open for us: refuse planted links and
    // other users' files before anything opens them.
    for name in [
        "outbox.db",
        "outbox.db-wal",
        "outbox.db-shm",
        "inbox.db",
        "inbox.db-wal",
        "inbox.db-shm",
        "host_fingerprint.json",
    ] {
        files::check_entry(&dirs.daemon_dir.join(name)).map_err(files_error)?;
    }
    let me = std::process::id();
    if let Some(pid) = files::read_pid_file(&dirs.pid_file()).filter(|pid| *pid != me) {
        match procs::pid_owner(pid) {
            procs::PidOwner::Daemon => return Err(DaemonError::AlreadyRunning { pid: Some(pid) }),
            procs::PidOwner::Dead => log::warn!(
                "stale {}: pid {pid} is not running; ignoring it",
                dirs.pid_file().display()
            ),
            procs::PidOwner::Other { name } => log::warn!(
                "stale {}: pid {pid} is a live process that is not a claudemesh daemon ({name:?}); ignoring it",
                dirs.pid_file().display()
            ),
        }
    }
    if files::socket_answers(&socket_path) {
        return Err(DaemonError::AlreadyRunning { pid: None });
    }
    let _ = std::fs::remove_file(&socket_path);
    let _ = std::fs::remove_file(dirs.pid_file());

    // 2. host fingerprint; 3. member keys (config.json was parsed by settings::load).
    startup::check_host(&dirs.host_fingerprint(), settings.tuning.clone.policy)?;
    let meshes = startup::member_keys(&settings)?;
    let token = files::load_or_create_token(&dirs.token()).map_err(|e| match e {
        files::FilesError::InsecureMode { .. } => DaemonError::Auth(e.to_string()),
        other => files_error(other),
    })?;
    let (session_id, state) = files::load_or_create_session_id(&dirs.session_id())
        .map_err(|e| DaemonError::Io(e.to_string()))?;
    match state {
        files::SessionIdState::Existing => {}
        files::SessionIdState::Created => log::info!("broker session id {session_id} created"),
        files::SessionIdState::Replaced { reason } => log::warn!(
            "{} held no valid session id ({reason}); replaced with {session_id}: a head broker \
             may list this daemon's previous presence for up to 90 s",
            dirs.session_id().display()
        ),
    }
    // 4–6. databases and listeners.
    let mut attach = startup::attach(&settings, meshes, None)?;

    let limits = claudemesh_actors::ipc::limits::ConnLimits::for_fd_limit(nofile);
    log::info!(
        "open-file limit {nofile}: at most {} TCP and {} socket connections",
        limits.tcp_budget,
        limits.unix_budget
    );
    let process = Process {
        limits,
        token,
        session_id,
        started_at: now_ms(),
        started: std::time::Instant::now(),
        metrics: Arc::new(claudemesh_actors::metrics::Metrics::default()),
    };
    let system = actix::System::new();
    let mut shutdown = Box::pin(shutdown);
    let mut settings = settings;
    let mut result = Ok(());
    loop {
        let tcp_addr = attach.tcp.as_ref().and_then(|l| l.local_addr().ok());
        let trigger = system.block_on(serve_once(
            &settings,
            attach,
            &process,
            tcp_addr,
            shutdown.as_mut(),
            reload.as_deref(),
        ));
        match trigger {
            Ok(Trigger::Stop) => break,
            Ok(Trigger::Reload(next)) => {
                let port = tcp_addr.map(|a| a.port());
                let reattached = startup::member_keys(&next)
                    .and_then(|meshes| startup::attach(&next, meshes, port));
                match reattached {
                    Ok(a) => {
                        attach = a;
                        settings = *next;
                    }
                    Err(e) => {
                        // The old engine is already detached: go back to the configuration
                        // that was running rather than exit.
                        log::error!("SIGHUP: re-attaching with the new configuration failed ({e}); keeping the previous one");
                        match startup::member_keys(&settings)
                            .and_then(|meshes| startup::attach(&settings, meshes, port))
                        {
                            Ok(a) => attach = a,
                            Err(e) => {
                                result = Err(e);
                                break;
                            }
                        }
                    }
                }
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    let _ = std::fs::remove_file(dirs.socket());
    let _ = std::fs::remove_file(dirs.pid_file());
    // A stale tcp.port would send `--tcp` clients (and their token) to whoever binds the
    // port next.
    let _ = std::fs::remove_file(dirs.tcp_port_file());
    drop(lock);
    eprintln!(
        "{}",
        serde_json::json!({"msg": "daemon_shutdown", "pid": me})
    );
    result
}

/// One attachment: starts the actors and the IPC server, waits for a stop or a valid reload,
/// then runs the ordered shutdown.
/// What lives as long as the process, across SIGHUP re-attaches.
struct Process {
    /// Connection budgets of the listeners (from the open-file limit at start).
    limits: claudemesh_actors::ipc::limits::ConnLimits,
    /// The bearer token of the TCP port.
    token: String,
    /// The stable broker session id of every mesh's hello (SPEC §5.6).
    session_id: String,
    /// Unix ms of the start (uptime in health).
    started_at: i64,
    /// The start, for the redelivery nudge (SPEC §6) of the links opened after it.
    started: std::time::Instant,
    /// Counters for `/v1/metrics`.
    metrics: Arc<claudemesh_actors::metrics::Metrics>,
}

async fn serve_once(
    settings: &DaemonSettings,
    attach: startup::Attach,
    process: &Process,
    tcp_addr: Option<std::net::SocketAddr>,
    mut shutdown: std::pin::Pin<&mut (dyn Future<Output = ()> + 'static)>,
    reload: Option<&dyn Fn() -> Result<DaemonSettings, claudemesh_actors::settings::SettingsError>>,
) -> Result<Trigger, DaemonError> {
    let dirs = &settings.dirs;
    let me = std::process::id();
    let slugs: Vec<String> = attach.meshes.iter().map(|(m, _)| m.slug.clone()).collect();
    let engine = supervisor::start(EngineConfig {
        meshes: attach.meshes,
        default_mesh: settings.default_mesh.clone(),
        display_name: settings.display_name.clone(),
        groups: settings.config.groups.clone(),
        tuning: settings.tuning.clone(),
        daemon_dir: dirs.daemon_dir.clone(),
        session_id: process.session_id.clone(),
        // A SIGHUP re-attach closed the old links cleanly: only a nudge that may still be due
        // from the start carries over.
        nudge_after_start: process.started.elapsed()
            < Duration::from_millis(settings.tuning.broker.redelivery_nudge_ms),
        outbox: attach.outbox,
        inbox: attach.inbox,
        info: DaemonInfo {
            pid: me,
            version: env!("CARGO_PKG_VERSION"),
            started_at_ms: process.started_at,
            daemon_dir: dirs.daemon_dir.clone(),
            socket: dirs.socket(),
            tcp: tcp_addr,
            schema_version: outbox::store::SCHEMA_VERSION,
            session_id: process.session_id.clone(),
        },
        metrics: process.metrics.clone(),
    });
    let token_data = actix_web::web::Data::new(LocalToken(process.token.clone()));
    // One gauge for every worker: the in-flight cap is per daemon, not per worker.
    let gauge = actix_web::web::Data::new(http::limits::InflightGauge::default());
    let configure: claudemesh_actors::ipc::Configure = Arc::new(move |cfg| {
        cfg.app_data(token_data.clone());
        cfg.app_data(gauge.clone());
        http::routes(cfg);
    });
    let listener = IpcListener::start_serving(
        engine.handles.clone(),
        ListenerConfig {
            unix: attach.unix,
            tcp: attach.tcp,
            configure,
            // One worker: the daemon serves one user, and every actix-web worker keeps a
            // 500 ms date timer (about 4 wake-ups a second each, idle or not; issue 15).
            // Accept throughput with one worker: README, Benchmarks.
            workers: 1,
            shutdown_grace: Duration::from_secs(5),
            limits: process.limits,
        },
    )
    .map_err(|e| DaemonError::Io(format!("starting the IPC server: {e}")))?;
    files::write_private_file(&dirs.pid_file(), format!("{me}\n").as_bytes())
        .map_err(|e| DaemonError::Io(e.to_string()))?;
    // One bare JSON line on stderr (no log prefix) so supervisors and scripts can parse it.
    eprintln!(
        "{}",
        serde_json::json!({
            "msg": "daemon_started",
            "pid": me,
            "socket": dirs.socket().display().to_string(),
            "tcp": tcp_addr.map(|a| a.to_string()),
            "meshes": slugs,
            "version": env!("CARGO_PKG_VERSION"),
        })
    );
    // One line per listener, naming what a client connects to (not the temporary bind name).
    log::info!(
        "listening on unix socket {} (mode 0600, this user only)",
        dirs.socket().display()
    );
    match tcp_addr {
        Some(addr) => log::info!(
            "listening on tcp {addr} (loopback; bearer token in {})",
            dirs.token().display()
        ),
        None => log::info!("tcp listener off: serving the unix socket only"),
    }
    let trigger = wait_for_trigger(shutdown.as_mut(), reload).await;
    log::info!(
        "{}",
        match trigger {
            Trigger::Stop => "shutting down",
            Trigger::Reload(_) => "SIGHUP: configuration reloaded; re-attaching",
        }
    );
    engine.shutdown(Some(listener)).await;
    Ok(trigger)
}

/// Waits for `shutdown` or a SIGHUP whose configuration loads (an invalid one is logged and
/// ignored: the running daemon is kept).
async fn wait_for_trigger(
    mut shutdown: std::pin::Pin<&mut (dyn Future<Output = ()> + 'static)>,
    reload: Option<&dyn Fn() -> Result<DaemonSettings, claudemesh_actors::settings::SettingsError>>,
) -> Trigger {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        shutdown.await;
        return Trigger::Stop;
    };
    loop {
        tokio::select! {
            _ = shutdown.as_mut() => return Trigger::Stop,
            _ = hup.recv() => match reload {
                None => log::warn!("SIGHUP ignored: this daemon was started without a reload source"),
                Some(f) => match f() {
                    Ok(next) => match startup::member_keys(&next) {
                        Ok(_) => return Trigger::Reload(Box::new(next)),
                        Err(e) => log::error!("SIGHUP: not reloading, keeping the running configuration: {e}"),
                    },
                    Err(e) => log::error!("SIGHUP: not reloading, keeping the running configuration: {e}"),
                },
            },
        }
    }
}

/// Resolves on SIGTERM or SIGINT (SIGHUP is handled by [`run`] as a reload).
pub async fn signals() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        log::error!("cannot install signal handlers; stop the daemon with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
