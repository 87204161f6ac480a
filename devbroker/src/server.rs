//! The dev broker's HTTP side: one actix-web server whose only answer is the WebSocket upgrade
//! at exactly `/ws`. Like the real broker (which `socket.destroy()`s on `req.url !== "/ws"`),
//! any other request target — another path, `/ws/`, or `/ws` with any query string, even `?` —
//! gets its TCP connection shut down with no HTTP response at all.
//!
//! Invariants: the server runs on its own workers (`workers(1)`), never installs signal
//! handlers (the CLI owns SIGTERM/SIGINT), and every accepted WebSocket gets one
//! [`SessionTask`] registered with the hub before its first frame is read.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

use super::error::DevBrokerError;
use super::hub::msg::HubCmd;
use super::session::{SessionConfig, SessionTask, MAX_FRAME_BYTES};

/// State shared by every request handler.
pub struct Shared {
    /// The hub's command channel.
    pub hub: Sender<HubCmd>,
    /// Source of connection ids.
    pub next_conn: AtomicU64,
    /// Liveness settings for new sessions.
    pub session: SessionConfig,
    /// Live session count.
    pub live: Arc<AtomicUsize>,
}

/// The raw descriptor of an accepted TCP connection, recorded when it is accepted so that a
/// request with the wrong target can be answered by shutting the connection down.
#[derive(Clone, Copy, Debug)]
struct ConnFd(RawFd);

/// Counts one open TCP connection for as long as the connection's data lives.
struct ConnGuard(Arc<AtomicUsize>);

impl ConnGuard {
    fn new(open: &Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::SeqCst);
        ConnGuard(open.clone())
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Binds `listen` and returns the (not yet polled) server and the address actually bound;
/// `open_conns` counts the open TCP connections.
pub fn bind(
    listen: SocketAddr,
    shared: Arc<Shared>,
    open_conns: Arc<AtomicUsize>,
) -> Result<(Server, SocketAddr), DevBrokerError> {
    let data = web::Data::from(shared);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(entry))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .on_connect(move |conn, ext| {
        if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
            ext.insert(ConnFd(tcp.as_raw_fd()));
        }
        ext.insert(ConnGuard::new(&open_conns));
    })
    .bind(listen)
    .map_err(|source| DevBrokerError::Bind {
        addr: listen,
        source,
    })?;
    let addr = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| DevBrokerError::Bind {
            addr: listen,
            source: std::io::Error::other("no address bound"),
        })?;
    Ok((server.run(), addr))
}

/// Whether the request target is exactly `/ws` (origin form, no query, not even `?`).
fn is_exactly_ws(req: &HttpRequest) -> bool {
    let uri = req.uri();
    uri.scheme().is_none()
        && uri.authority().is_none()
        && uri.path_and_query().map(|pq| pq.as_str()) == Some("/ws")
}

async fn entry(req: HttpRequest, body: web::Payload, shared: web::Data<Shared>) -> HttpResponse {
    if !is_exactly_ws(&req) {
        drop_connection(&req);
        // Never reaches the client: its connection is already shut down.
        return HttpResponse::new(StatusCode::NOT_FOUND);
    }
    let (response, session, stream) = match actix_ws::handle(&req, body) {
        Ok(parts) => parts,
        Err(err) => return err.error_response(),
    };
    let stream = stream
        .max_frame_size(MAX_FRAME_BYTES)
        .aggregate_continuations()
        .max_continuation_size(MAX_FRAME_BYTES);
    let conn = shared.next_conn.fetch_add(1, Ordering::SeqCst);
    let (tx, outgoing) = tokio::sync::mpsc::unbounded_channel();
    let hub = shared.hub.clone();
    if hub.send(HubCmd::Connected { conn, tx }).is_err() {
        drop_connection(&req);
        return HttpResponse::new(StatusCode::SERVICE_UNAVAILABLE);
    }
    shared.live.fetch_add(1, Ordering::SeqCst);
    let task = SessionTask {
        conn,
        session,
        stream,
        outgoing,
        hub,
        config: shared.session,
        live: shared.live.clone(),
    };
    actix_web::rt::spawn(task.run());
    response
}

/// Shuts the request's TCP connection down in both directions, so the client reads EOF and
/// no response bytes can follow.
fn drop_connection(req: &HttpRequest) {
    if let Some(ConnFd(fd)) = req.conn_data::<ConnFd>() {
        // SAFETY: `fd` is the descriptor of the connection this request is being served on; the
        // connection (and so the descriptor) stays open at least until this handler returns.
        // `shutdown` neither closes nor invalidates it, it only ends both directions.
        unsafe {
            libc::shutdown(*fd, libc::SHUT_RDWR);
        }
    }
}

/// Stops the server once the sessions have queued their close frames: waits up to `grace`
/// for the clients to close their connections (a well-behaved client closes TCP after the close
/// handshake) and then drops whatever is left. (actix's own graceful stop re-checks its
/// connections only once a second.)
pub async fn stop(handle: &ServerHandle, open_conns: &AtomicUsize, grace: Duration) {
    let deadline = tokio::time::Instant::now() + grace;
    while open_conns.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    handle.stop(false).await;
}
