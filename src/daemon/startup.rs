//! Startup pieces of the lifecycle that run again on a SIGHUP reload: member keys, the two
//! databases (integrity check after an unclean stop, migrations, inflight reset) and the
//! listeners; plus the one-time host-fingerprint check.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::Path;

use claudemesh_actors::crypto::MemberKeys;
use claudemesh_actors::settings::{ClonePolicy, Durability, JoinedMesh};
use claudemesh_actors::time::now_ms;
use claudemesh_actors::{files, host, inbox, outbox};
use rusqlite::Connection;

use super::DaemonError;
use crate::settings::DaemonSettings;

fn io(what: &str, path: &Path, e: impl std::fmt::Display) -> DaemonError {
    DaemonError::Io(format!("{what} {}: {e}", path.display()))
}

/// What one attachment of the engine needs, prepared before any actor starts.
pub(super) struct Attach {
    pub meshes: Vec<(JoinedMesh, MemberKeys)>,
    pub outbox: Connection,
    pub inbox: Connection,
    pub unix: UnixListener,
    pub tcp: Option<TcpListener>,
}

/// Parses every selected mesh's keys (a secret that does not match its pubkey is refused).
pub(super) fn member_keys(
    settings: &DaemonSettings,
) -> Result<Vec<(JoinedMesh, MemberKeys)>, DaemonError> {
    let mut meshes = Vec::new();
    for (i, m) in settings.meshes.iter().enumerate() {
        let keys = MemberKeys::from_hex(&m.pubkey, &m.secret_key).map_err(|e| {
            DaemonError::Config(format!(
                "{}: meshes[{i}] ({}): {e}",
                settings.dirs.config_json().display(),
                m.slug
            ))
        })?;
        meshes.push((m.clone(), keys));
    }
    Ok(meshes)
}

/// Opens both databases and binds the listeners for `settings`. `tcp_port` overrides the
/// configured port (a reload keeps the port it already had).
pub(super) fn attach(
    settings: &DaemonSettings,
    meshes: Vec<(JoinedMesh, MemberKeys)>,
    tcp_port: Option<u16>,
) -> Result<Attach, DaemonError> {
    let dirs = &settings.dirs;
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
    let unix = files::bind_private_socket(&dirs.daemon_dir, "daemon.sock")
        .map_err(|e| DaemonError::Io(e.to_string()))?;
    widen_backlog(&unix).map_err(|e| DaemonError::Io(format!("daemon.sock: listen: {e}")))?;
    // Gone before the bind: if the bind fails or we die before writing the new one, no
    // stale port is left for `--tcp` clients.
    let _ = std::fs::remove_file(dirs.tcp_port_file());
    let tcp = bind_tcp(settings, tcp_port)?;
    match tcp.as_ref().and_then(|l| l.local_addr().ok()) {
        Some(addr) => files::write_private_file(
            &dirs.tcp_port_file(),
            format!("{}\n", addr.port()).as_bytes(),
        )
        .map_err(|e| DaemonError::Io(e.to_string()))?,
        None => {
            let _ = std::fs::remove_file(dirs.tcp_port_file());
        }
    }
    Ok(Attach {
        meshes,
        outbox: outbox_conn,
        inbox: inbox_open.conn,
        unix,
        tcp,
    })
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

pub(super) fn check_host(path: &Path, policy: ClonePolicy) -> Result<(), DaemonError> {
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

/// Connections the kernel queues for a listener before the daemon accepts them. The standard
/// library listens with 128: a burst of more connections at once (1,000 SSE subscribers
/// connecting together) overflowed it and some were dropped before the daemon saw them. The
/// connection budgets (at most 1,024 TCP, 512 socket) bound what is served; this only keeps
/// a burst from being lost before the gate can apply them. The kernel caps it at
/// `net.core.somaxconn`.
const LISTEN_BACKLOG: libc::c_int = 1024;

/// Listens again on `listener` with [`LISTEN_BACKLOG`] (Linux and the BSDs update the queue
/// length of a listening socket).
fn widen_backlog(listener: &impl AsRawFd) -> std::io::Result<()> {
    // SAFETY: `listen` on a descriptor we own and that is already a listening socket.
    if unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn bind_tcp(
    settings: &DaemonSettings,
    port: Option<u16>,
) -> Result<Option<TcpListener>, DaemonError> {
    let ipc = &settings.tuning.ipc;
    if !ipc.tcp_enabled {
        return Ok(None);
    }
    let port = port.unwrap_or(ipc.tcp_port);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    match TcpListener::bind(addr).and_then(|l| widen_backlog(&l).map(|()| l)) {
        Ok(l) => Ok(Some(l)),
        Err(e) if settings.tcp_port_explicit => Err(DaemonError::Config(format!(
            "tcp port {port} is not available: {e}"
        ))),
        Err(e) => {
            log::warn!("tcp port {port} is taken ({e}); serving the socket only");
            Ok(None)
        }
    }
}
