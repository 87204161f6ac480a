//! IpcListener: the actix-web server on the Unix socket and the loopback TCP port.
//!
//! The engine does not know the routes: the edge crate hands over a `configure` function that
//! mounts them (and its own app data); the listener adds [`Handles`] as app data, tags every
//! connection with [`ConnInfo`] (transport and, on the socket, the peer's uid from
//! `SO_PEERCRED`) and owns the server handle. Accepts [`PauseServing`] and [`StopServing`]
//! for the ordered shutdown.

use std::os::unix::net::UnixListener;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};

use crate::handles::Handles;

/// What the request's connection is, stored in the connection's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnInfo {
    /// The Unix socket; `peer_uid` from `SO_PEERCRED` (None if the OS did not say).
    Unix { peer_uid: Option<u32> },
    /// The loopback TCP port (bearer token required).
    Tcp,
}

/// Mounts the routes and their app data.
pub type Configure = Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync>;

/// Listener settings.
pub struct ListenerConfig {
    pub unix: UnixListener,
    pub tcp: Option<std::net::TcpListener>,
    pub configure: Configure,
    /// Worker threads of the HTTP server.
    pub workers: usize,
    /// Grace for in-flight requests at shutdown.
    pub shutdown_grace: Duration,
}

/// Holds the running server.
pub struct IpcListener {
    handle: ServerHandle,
}

/// Command: stop accepting, let in-flight requests finish (bounded), then stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopServing;

impl IpcListener {
    /// Starts serving on both listeners; the server runs on the current actix system.
    pub fn start_serving(
        handles: Handles,
        cfg: ListenerConfig,
    ) -> std::io::Result<Addr<IpcListener>> {
        let configure = cfg.configure.clone();
        let data = web::Data::new(handles);
        cfg.unix.set_nonblocking(true)?;
        let mut server = HttpServer::new(move || {
            let configure = configure.clone();
            App::new()
                .app_data(data.clone())
                .configure(move |c| configure(c))
        })
        .workers(cfg.workers.max(1))
        .disable_signals()
        .shutdown_timeout(cfg.shutdown_grace.as_secs().max(1))
        .client_request_timeout(Duration::from_secs(10))
        .on_connect(|conn, ext| {
            if let Some(sock) = conn.downcast_ref::<actix_web::rt::net::UnixStream>() {
                let peer_uid = sock.peer_cred().ok().map(|c| c.uid());
                ext.insert(ConnInfo::Unix { peer_uid });
            } else {
                ext.insert(ConnInfo::Tcp);
            }
        })
        .listen_uds(cfg.unix)?;
        if let Some(tcp) = cfg.tcp {
            server = server.listen(tcp)?;
        }
        let server = server.run();
        let handle = server.handle();
        actix::spawn(async move {
            if let Err(e) = server.await {
                log::error!("ipc server stopped with error: {e}");
            }
        });
        Ok(IpcListener { handle }.start())
    }
}

/// Command: stop accepting new connections; requests in flight go on.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PauseServing;

impl Handler<PauseServing> for IpcListener {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _msg: PauseServing, _ctx: &mut Context<Self>) -> Self::Result {
        let handle = self.handle.clone();
        Box::pin(async move { handle.pause().await })
    }
}

impl Actor for IpcListener {
    type Context = Context<Self>;
}

impl Handler<StopServing> for IpcListener {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _msg: StopServing, _ctx: &mut Context<Self>) -> Self::Result {
        let handle = self.handle.clone();
        Box::pin(async move { handle.stop(true).await })
    }
}
