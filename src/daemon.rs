//! `claudemeshd up`: the daemon's lifecycle (SPEC §3) — startup checks in order, each failure
//! one clear line and a distinct exit code; the actor tree; the IPC listener; signals; the
//! ordered shutdown. [`run`] takes its shutdown trigger as a parameter so tests and `main`
//! drive it the same way.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use claudemesh_actors::crypto::MemberKeys;
use claudemesh_actors::handles::DaemonInfo;
use claudemesh_actors::ipc::{IpcListener, ListenerConfig};
use claudemesh_actors::settings::{ClonePolicy, Durability};
use claudemesh_actors::supervisor::{self, EngineConfig};
use claudemesh_actors::time::now_ms;
use claudemesh_actors::{files, host, inbox, outbox};

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

fn io(what: &str, path: &Path, e: impl std::fmt::Display) -> DaemonError {
    DaemonError::Io(format!("{what} {}: {e}", path.display()))
}

/// Runs the daemon until `shutdown` resolves; returns after the ordered shutdown.
pub fn run<F>(settings: DaemonSettings, shutdown: F) -> Result<(), DaemonError>
where
    F: Future<Output = ()> + 'static,
{
    let dirs = settings.dirs.clone();
    // 1. daemon dir, lock, TS-daemon style pid/socket checks.
    match files::ensure_private_dir(&dirs.daemon_dir) {
        Ok(files::DirState::Tightened { old_mode }) => log::warn!(
            "daemon dir {} had mode {old_mode:o}; tightened to 0700",
            dirs.daemon_dir.display()
        ),
        Ok(_) => {}
        Err(e) => return Err(DaemonError::Io(e.to_string())),
    }
    let socket_path = dirs.socket();
    files::check_socket_path(&socket_path).map_err(|e| DaemonError::Config(e.to_string()))?;
    let lock = files::acquire_lock(&dirs.lock()).map_err(|e| match e {
        files::FilesError::AlreadyRunning { pid } => DaemonError::AlreadyRunning { pid },
        other => DaemonError::Io(other.to_string()),
    })?;
    let me = std::process::id();
    if let Some(pid) = files::read_pid_file(&dirs.pid_file()) {
        if pid != me && files::pid_alive(pid) {
            return Err(DaemonError::AlreadyRunning { pid: Some(pid) });
        }
    }
    if files::socket_answers(&socket_path) {
        return Err(DaemonError::AlreadyRunning { pid: None });
    }
    let _ = std::fs::remove_file(&socket_path);
    let _ = std::fs::remove_file(dirs.pid_file());

    // 2. host fingerprint.
    check_host(&dirs.host_fingerprint(), settings.tuning.clone.policy)?;

    // 3. member keys (config.json was parsed by settings::load).
    let mut meshes = Vec::new();
    for (i, m) in settings.meshes.iter().enumerate() {
        let keys = MemberKeys::from_hex(&m.pubkey, &m.secret_key).map_err(|e| {
            DaemonError::Config(format!(
                "{}: meshes[{i}] ({}): {e}",
                dirs.config_json().display(),
                m.slug
            ))
        })?;
        meshes.push((m.clone(), keys));
    }

    // 4–5. databases: integrity after an unclean stop, migrations, inflight reset.
    let durability = match settings.tuning.outbox.durability {
        Durability::Normal => outbox::store::Durability::Normal,
        Durability::Full => outbox::store::Durability::Full,
    };
    let outbox_conn = open_outbox(&dirs.outbox_db(), durability).map_err(|e| {
        DaemonError::Storage(format!(
            "{e}\nthe outbox holds accepted messages, so the daemon will not start on it: move {} aside (keep it for recovery) and start again",
            dirs.outbox_db().display()
        ))
    })?;
    let recovered = outbox::store::reset_inflight(&outbox_conn)
        .map_err(|e| DaemonError::Storage(e.to_string()))?;
    if recovered > 0 {
        log::warn!("crash recovery: {recovered} outbox rows were inflight; back to pending");
    }
    let inbox_open = inbox::store::open_for_startup(&dirs.inbox_db(), now_ms())
        .map_err(|e| DaemonError::Storage(e.to_string()))?;

    let token = files::load_or_create_token(&dirs.token()).map_err(|e| match e {
        files::FilesError::InsecureMode { .. } => DaemonError::Auth(e.to_string()),
        other => DaemonError::Io(other.to_string()),
    })?;

    // 6. listeners, then actors.
    let unix = files::bind_private_socket(&dirs.daemon_dir, "daemon.sock")
        .map_err(|e| DaemonError::Io(e.to_string()))?;
    let tcp = bind_tcp(&settings)?;
    let tcp_addr = tcp.as_ref().and_then(|l| l.local_addr().ok());
    if let Some(addr) = tcp_addr {
        files::write_private_file(
            &dirs.tcp_port_file(),
            format!("{}\n", addr.port()).as_bytes(),
        )
        .map_err(|e| DaemonError::Io(e.to_string()))?;
    } else {
        let _ = std::fs::remove_file(dirs.tcp_port_file());
    }

    let info = DaemonInfo {
        pid: me,
        version: env!("CARGO_PKG_VERSION"),
        started_at_ms: now_ms(),
        daemon_dir: dirs.daemon_dir.clone(),
        socket: socket_path.clone(),
        tcp: tcp_addr,
        schema_version: outbox::store::SCHEMA_VERSION,
    };
    let slugs: Vec<String> = meshes.iter().map(|(m, _)| m.slug.clone()).collect();
    let engine_cfg = EngineConfig {
        meshes,
        default_mesh: settings.default_mesh.clone(),
        display_name: settings.display_name.clone(),
        tuning: settings.tuning.clone(),
        daemon_dir: dirs.daemon_dir.clone(),
        outbox: outbox_conn,
        inbox: inbox_open.conn,
        info,
    };
    let pid_file = dirs.pid_file();
    let token = Arc::new(token);
    let system = actix::System::new();
    let result = system.block_on(async move {
        let engine = supervisor::start(engine_cfg);
        let token_data = actix_web::web::Data::new(LocalToken(token.as_str().to_string()));
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
                unix,
                tcp,
                configure,
                workers: 2,
                shutdown_grace: Duration::from_secs(5),
            },
        )
        .map_err(|e| DaemonError::Io(format!("starting the IPC server: {e}")))?;
        files::write_private_file(&pid_file, format!("{me}\n").as_bytes())
            .map_err(|e| DaemonError::Io(e.to_string()))?;
        // One bare JSON line on stderr (no log prefix) so supervisors and scripts can parse it.
        eprintln!(
            "{}",
            serde_json::json!({
                "msg": "daemon_started",
                "pid": me,
                "socket": socket_path.display().to_string(),
                "tcp": tcp_addr.map(|a| a.to_string()),
                "meshes": slugs,
                "version": env!("CARGO_PKG_VERSION"),
            })
        );
        shutdown.await;
        log::info!("shutting down");
        engine.shutdown(Some(listener)).await;
        Ok::<(), DaemonError>(())
    });
    let _ = std::fs::remove_file(dirs.socket());
    let _ = std::fs::remove_file(dirs.pid_file());
    drop(lock);
    eprintln!(
        "{}",
        serde_json::json!({"msg": "daemon_shutdown", "pid": me})
    );
    result
}

/// Opens `outbox.db`; runs `PRAGMA integrity_check` only after an unclean stop (it costs ~1 s
/// per 100k rows), then marks this run as not yet cleanly stopped.
fn open_outbox(
    path: &Path,
    durability: outbox::store::Durability,
) -> Result<rusqlite::Connection, outbox::store::StoreError> {
    let conn = outbox::store::open(path, durability, false)?;
    if !outbox::store::was_clean_shutdown(&conn)? {
        log::warn!(
            "{}: last run did not stop cleanly; checking integrity",
            path.display()
        );
        outbox::store::integrity_check(&conn, path)?;
    }
    outbox::store::write_clean_shutdown(&conn, false)?;
    Ok(conn)
}

fn check_host(path: &Path, policy: ClonePolicy) -> Result<(), DaemonError> {
    let identity = host::read_identity(Path::new("/"));
    let stored = host::load(path).map_err(|e| DaemonError::Io(e.to_string()))?;
    let check = host::check(stored.as_ref(), &identity);
    match host::decide(check, policy) {
        host::HostDecision::Refuse => Err(DaemonError::HostMismatch {
            path: path.to_path_buf(),
        }),
        decision => {
            if decision == host::HostDecision::ProceedWithWarning {
                log::warn!(
                    "host fingerprint mismatch ({}), continuing under clone policy {}",
                    path.display(),
                    policy.as_str()
                );
            }
            if stored.is_none() {
                host::write(path, &identity, now_ms()).map_err(|e| io("writing", path, e))?;
            }
            Ok(())
        }
    }
}

fn bind_tcp(settings: &DaemonSettings) -> Result<Option<TcpListener>, DaemonError> {
    let ipc = &settings.tuning.ipc;
    if !ipc.tcp_enabled {
        return Ok(None);
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], ipc.tcp_port));
    match TcpListener::bind(addr) {
        Ok(l) => Ok(Some(l)),
        Err(e) if settings.tcp_port_explicit => Err(DaemonError::Config(format!(
            "tcp port {} is not available: {e}",
            ipc.tcp_port
        ))),
        Err(e) => {
            log::warn!(
                "tcp port {} is taken ({e}); serving the socket only",
                ipc.tcp_port
            );
            Ok(None)
        }
    }
}

/// Resolves on SIGTERM or SIGINT; logs and ignores SIGHUP (configuration reload is not
/// supported yet — the default action would kill the daemon).
pub async fn signals() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        log::error!("cannot install signal handlers; stop the daemon with SIGKILL");
        return std::future::pending().await;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => log::warn!("SIGHUP: configuration reload is not supported yet; restart the daemon to apply changes"),
        }
    }
}
