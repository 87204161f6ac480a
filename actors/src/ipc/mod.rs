//! IpcListener: the actix-web server on the Unix socket and the loopback TCP port.
//!
//! The engine does not know the routes: the edge crate hands over a `configure` function that
//! mounts them (and its own app data); the listener adds [`Handles`] as app data, tags every
//! connection with [`ConnInfo`] (transport and, on the socket, the peer's uid from
//! `SO_PEERCRED`) and owns the server handles. Accepts [`PauseServing`] and [`StopServing`]
//! for the ordered shutdown.
//!
//! The two listeners are served apart, each with its own connection budget
//! ([`limits::ConnLimits`]), so that connections to the TCP port (which any local user can
//! open) can never starve the socket: the socket by an actix-web server with its own workers
//! and accept loop, the TCP port by the [`gate`] on an arbiter of its own, which reads each
//! first request head itself under a small size limit and a short deadline before handing
//! the connection to the same routes.

use std::os::unix::net::UnixListener;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};
use tokio::sync::{mpsc, oneshot};

use crate::handles::Handles;

pub mod gate;
pub mod limits;
mod prefixed;

use limits::ConnLimits;

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
    /// Connection budgets and TCP head limits.
    pub limits: ConnLimits,
}

/// Holds the running servers.
pub struct IpcListener {
    /// The socket's actix-web server.
    handle: ServerHandle,
    /// The TCP gate's command channel (None without a TCP port).
    gate: Option<mpsc::UnboundedSender<gate::GateCommand>>,
    /// The arbiter the gate runs on, stopped after it.
    gate_arbiter: Option<actix::Arbiter>,
    /// Grace for in-flight requests at shutdown.
    grace: Duration,
}

/// Command: stop accepting, let in-flight requests finish (bounded), then stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopServing;

impl IpcListener {
    /// Starts serving on both listeners: the socket on an actix-web server of the current
    /// actix system, the TCP port through the [`gate`] on an arbiter of its own.
    pub fn start_serving(
        handles: Handles,
        cfg: ListenerConfig,
    ) -> std::io::Result<Addr<IpcListener>> {
        let configure = cfg.configure.clone();
        let data = web::Data::new(handles);
        cfg.unix.set_nonblocking(true)?;
        let workers = cfg.workers.max(1);
        let app_data = data.clone();
        let server = HttpServer::new(move || {
            let configure = configure.clone();
            App::new()
                .app_data(app_data.clone())
                .configure(move |c| configure(c))
        })
        .workers(workers)
        .max_connections(cfg.limits.unix_budget.div_ceil(workers).max(1))
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
        .listen_uds(cfg.unix)?
        .run();
        let handle = server.handle();
        actix::spawn(async move {
            if let Err(e) = server.await {
                log::error!("ipc server stopped with error: {e}");
            }
        });
        let (gate, gate_arbiter) = match cfg.tcp {
            Some(tcp) => {
                let (tx, rx) = mpsc::unbounded_channel();
                let arbiter = actix::Arbiter::new();
                let configure = cfg.configure.clone();
                let limits = cfg.limits;
                // The closure is sent to the arbiter's thread; the gate itself (not `Send`)
                // is spawned there.
                let spawned = arbiter.spawn_fn(move || {
                    let stopping = Rc::new(tokio::sync::Notify::new());
                    let signal = Rc::clone(&stopping);
                    let make: gate::MakeServe = Rc::new(move || {
                        Box::pin(tcp_service(
                            data.clone(),
                            configure.clone(),
                            limits,
                            Rc::clone(&signal),
                        ))
                    });
                    actix_web::rt::spawn(gate::run(tcp, limits, make, stopping, rx));
                });
                if !spawned {
                    return Err(std::io::Error::other(
                        "the TCP gate's arbiter is not running",
                    ));
                }
                (Some(tx), Some(arbiter))
            }
            None => (None, None),
        };
        Ok(IpcListener {
            handle,
            gate,
            gate_arbiter,
            grace: cfg.shutdown_grace,
        }
        .start())
    }
}

/// The routes as an HTTP/1 service for the TCP gate (built on the gate's arbiter: the app is
/// not `Send`). The gate builds it at start and again after dropping it for idleness.
async fn tcp_service(
    data: web::Data<Handles>,
    configure: Configure,
    limits: ConnLimits,
    stopping: Rc<tokio::sync::Notify>,
) -> Result<gate::Serve, ()> {
    use actix_service::{map_config, Service as _, ServiceFactory as _};
    let app = App::new().app_data(data).configure(move |c| configure(c));
    let factory = actix_http::HttpService::build()
        .keep_alive(limits.tcp_keep_alive)
        .client_request_timeout(limits.tcp_head_timeout)
        .client_disconnect_timeout(Duration::from_secs(1))
        // At shutdown, idle kept-alive connections close at once (as actix-web's own server
        // does), so they do not hold the grace period.
        .graceful_shutdown_signal(move || {
            let stopping = Rc::clone(&stopping);
            async move { stopping.notified().await }
        })
        .on_connect_ext(|_io: &gate::PrefixedStream, ext| {
            ext.insert(ConnInfo::Tcp);
        })
        .h1(map_config(app, |()| actix_web::dev::AppConfig::default()));
    let handler = Rc::new(factory.new_service(()).await?);
    Ok(Rc::new(move |io, peer| {
        let served = handler.call((io, peer));
        Box::pin(async move {
            if let Err(e) = served.await {
                log::debug!("ipc: TCP connection ended with {e}");
            }
        })
    }))
}

/// Command: stop accepting new connections; requests in flight go on.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PauseServing;

impl Handler<PauseServing> for IpcListener {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _msg: PauseServing, _ctx: &mut Context<Self>) -> Self::Result {
        let handle = self.handle.clone();
        if let Some(gate) = &self.gate {
            let _ = gate.send(gate::GateCommand::Pause);
        }
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
        let gate = self.gate.take();
        let arbiter = self.gate_arbiter.take();
        let grace = self.grace;
        Box::pin(async move {
            let gate_done = async {
                if let Some(gate) = gate {
                    let (done, stopped) = oneshot::channel();
                    if gate.send(gate::GateCommand::Stop { grace, done }).is_ok() {
                        // Bounded: the gate answers within the grace (plus a margin).
                        let _ = tokio::time::timeout(grace + Duration::from_secs(2), stopped).await;
                    }
                }
                if let Some(arbiter) = arbiter {
                    arbiter.stop();
                }
            };
            futures_util::join!(handle.stop(true), gate_done);
        })
    }
}
