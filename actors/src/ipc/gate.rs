//! The TCP gate (issue 13 item 7): accepts on the loopback TCP port itself, so that another
//! local user can neither exhaust the daemon's file descriptors nor its memory, then hands
//! each connection to actix-http on this arbiter.
//!
//! Per connection: a slot of the TCP budget ([`ConnLimits::tcp_budget`]); the first request
//! head is read here, before anything is authenticated, with a small size limit (431 past it)
//! and a short deadline (408 after it); only then is the connection given to the HTTP
//! service, with the bytes already read put back in front of the stream. When the budget is
//! full, the oldest connection still sending its first head is closed to make room (a client
//! that sends its request at once, like the CLI, always gets through); if every slot is past
//! its head, the new connection is closed. Refused requests are answered with
//! `Connection: close` by the routes, so slots past the head free up at once.
//!
//! After a flood the allocator's free memory is handed back to the OS (`malloc_trim`).
//!
//! Idle cost (issue 15): the HTTP service is dropped after [`SERVICE_IDLE`] without a
//! connection (its date timer would wake the thread twice a second) and built again on the
//! next one; the periodic chores run only while there is one to do.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix_web::rt::net::TcpStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::limits::{head_end, ConnLimits};
pub use super::prefixed::PrefixedStream;

/// Serves one connection whose first head has been read (the actix-http handler).
pub type Serve = Rc<dyn Fn(PrefixedStream, Option<SocketAddr>) -> Served>;
/// The future of one served connection.
pub type Served = std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;
/// Builds the HTTP service (at start, and again on a connection after it was dropped).
pub type MakeServe =
    Rc<dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Serve, ()>>>>>;

/// The HTTP service is dropped after this long without a TCP connection: actix-http keeps a
/// 500 ms date timer per service, two wake-ups a second while no client is there (issue 15).
/// It is built again, in microseconds, when the next connection is accepted.
const SERVICE_IDLE: Duration = Duration::from_secs(10);

/// Commands from the IpcListener actor to the gate (which runs on its own arbiter).
pub enum GateCommand {
    /// Stop accepting; open connections go on.
    Pause,
    /// Stop accepting, let open connections finish within `grace`, close the rest, then
    /// answer on `done`.
    Stop {
        /// Time open connections get.
        grace: Duration,
        /// Answered when the gate is gone.
        done: oneshot::Sender<()>,
    },
}

/// One open connection in the budget.
struct Slot {
    /// Still in its first head (evictable).
    in_head: bool,
    /// Its task, aborted on eviction or at the end of the shutdown grace.
    task: Option<JoinHandle<()>>,
}

/// The open connections, by accept order (so the first entry in head is the oldest).
#[derive(Default)]
struct Registry {
    slots: BTreeMap<u64, Slot>,
    next_id: u64,
    /// Most connections open at once since the last trim.
    peak: usize,
}

/// Removes its connection from the registry when the connection's task ends or is dropped.
struct SlotGuard {
    id: u64,
    registry: Rc<RefCell<Registry>>,
}

impl SlotGuard {
    fn past_head(&self) {
        if let Some(slot) = self.registry.borrow_mut().slots.get_mut(&self.id) {
            slot.in_head = false;
        }
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        // `try_borrow_mut`: an abort may drop the task while the registry is borrowed.
        if let Ok(mut r) = self.registry.try_borrow_mut() {
            r.slots.remove(&self.id);
        }
    }
}

/// What reading the first head gave.
enum Head {
    /// The head is complete; these are all bytes read so far.
    Complete(Vec<u8>),
    /// Past the limit (431).
    TooLarge,
    /// Not complete in time (408).
    TimedOut,
    /// The peer closed or the read failed: nothing to answer.
    Gone,
}

async fn read_head(stream: &mut TcpStream, limit: usize, within: Duration) -> Head {
    let mut buf = Vec::with_capacity(1024);
    let read = async {
        let mut chunk = [0u8; 2048];
        loop {
            let room = limit.saturating_sub(buf.len()).min(chunk.len());
            if room == 0 {
                return Head::TooLarge;
            }
            let n = match stream.read(&mut chunk[..room]).await {
                Ok(0) | Err(_) => return Head::Gone,
                Ok(n) => n,
            };
            let scan_from = buf.len().saturating_sub(3);
            buf.extend_from_slice(&chunk[..n]);
            if head_end(&buf[scan_from..]).is_some() {
                return Head::Complete(std::mem::take(&mut buf));
            }
        }
    };
    tokio::time::timeout(within, read)
        .await
        .unwrap_or(Head::TimedOut)
}

/// A minimal JSON error answer written by the gate itself (the routes never saw the request).
async fn refuse(stream: &mut TcpStream, status: &str, body: &str) {
    let text = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(text.as_bytes())).await;
    // Lingering close: closing with unread input would send a reset that can destroy the
    // answer before the client reads it; so send FIN, then discard input briefly (bounded).
    let _ = stream.shutdown().await;
    let drain = async {
        let mut sink = [0u8; 2048];
        let mut left: usize = 64 * 1024;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

/// Runs the gate until a `Stop` command (or the command channel closes).
pub async fn run(
    listener: std::net::TcpListener,
    limits: ConnLimits,
    make_serve: MakeServe,
    stopping: Rc<tokio::sync::Notify>,
    mut commands: mpsc::UnboundedReceiver<GateCommand>,
) {
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpListener::from_std(listener))
    {
        Ok(l) => l,
        Err(e) => {
            log::error!("ipc: cannot serve the TCP port: {e}");
            return;
        }
    };
    // Built once here so that a broken service shows at start, not at the first request.
    let mut serve = match make_serve().await {
        Ok(serve) => Some(serve),
        Err(()) => {
            log::error!("ipc: the TCP service did not start");
            return;
        }
    };
    let registry = Rc::new(RefCell::new(Registry::default()));
    // The 2 s chores (trim, the shed log's flush, dropping an idle service) run only while
    // there is one to do: a gate with no service and nothing to log sleeps in `accept`.
    let mut chore = tokio::time::interval(Duration::from_secs(2));
    chore.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut idle_since: Option<Instant> = None;
    let mut paused = false;
    let mut shed = ShedLog::default();
    let (grace, done) = loop {
        let chores = serve.is_some() || shed.pending() || registry.borrow().peak >= TRIM_PEAK;
        tokio::select! {
            cmd = commands.recv() => match cmd {
                Some(GateCommand::Pause) => paused = true,
                Some(GateCommand::Stop { grace, done }) => break (grace, Some(done)),
                None => break (Duration::ZERO, None),
            },
            accepted = listener.accept(), if !paused => match accepted {
                Ok((stream, peer)) => {
                    if serve.is_none() {
                        serve = make_serve().await.ok();
                        log::debug!("ipc: TCP service built again");
                    }
                    idle_since = None;
                    match &serve {
                        Some(serve) => admit(stream, peer, &registry, &limits, serve, &mut shed),
                        None => log::error!("ipc: the TCP service did not start; connection closed"),
                    }
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    shed.accept_failed(&e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = chore.tick(), if chores => {
                shed.flush();
                maybe_trim(&registry);
                if serve.is_some() && drop_idle_service(&registry, &mut idle_since) {
                    serve = None;
                    log::debug!("ipc: TCP service dropped after {} s idle", SERVICE_IDLE.as_secs());
                }
            }
        }
    };
    drop(listener);
    // Requests in flight finish; idle connections and unfinished first heads go now.
    stopping.notify_waiters();
    let unstarted: Vec<JoinHandle<()>> = {
        let mut r = registry.borrow_mut();
        let ids: Vec<u64> = r
            .slots
            .iter()
            .filter(|(_, s)| s.in_head)
            .map(|(id, _)| *id)
            .collect();
        ids.iter()
            .filter_map(|id| r.slots.remove(id).and_then(|s| s.task))
            .collect()
    };
    for t in unstarted {
        t.abort();
    }
    let deadline = Instant::now() + grace;
    while !registry.borrow().slots.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let tasks: Vec<JoinHandle<()>> = registry
        .borrow_mut()
        .slots
        .values_mut()
        .filter_map(|s| s.task.take())
        .collect();
    for t in tasks {
        t.abort();
    }
    if let Some(done) = done {
        let _ = done.send(());
    }
}

/// Takes one accepted connection into the budget (evicting if needed) and starts its task.
fn admit(
    stream: TcpStream,
    peer: SocketAddr,
    registry: &Rc<RefCell<Registry>>,
    limits: &ConnLimits,
    serve: &Serve,
    shed: &mut ShedLog,
) {
    let full = registry.borrow().slots.len() >= limits.tcp_budget;
    if full {
        let evict = {
            let mut r = registry.borrow_mut();
            let oldest = r.slots.iter().find(|(_, s)| s.in_head).map(|(id, _)| *id);
            oldest
                .and_then(|id| r.slots.remove(&id))
                .and_then(|s| s.task)
        };
        match evict {
            Some(task) => {
                task.abort();
                shed.evicted();
            }
            None => {
                shed.refused();
                drop(stream);
                return;
            }
        }
    }
    let id = {
        let mut r = registry.borrow_mut();
        let id = r.next_id;
        r.next_id += 1;
        r.slots.insert(
            id,
            Slot {
                in_head: true,
                task: None,
            },
        );
        r.peak = r.peak.max(r.slots.len());
        id
    };
    let guard = SlotGuard {
        id,
        registry: Rc::clone(registry),
    };
    let serve = Rc::clone(serve);
    let (head_limit, head_timeout) = (limits.tcp_head_limit, limits.tcp_head_timeout);
    let task = actix_web::rt::spawn(async move {
        let mut stream = stream;
        match read_head(&mut stream, head_limit, head_timeout).await {
            Head::Complete(prefix) => {
                guard.past_head();
                let io = PrefixedStream::new(prefix, stream);
                serve(io, Some(peer)).await;
            }
            Head::TooLarge => {
                let body = format!(r#"{{"error":"headers_too_large","limit_bytes":{head_limit}}}"#);
                refuse(&mut stream, "431 Request Header Fields Too Large", &body).await;
            }
            Head::TimedOut => {
                refuse(
                    &mut stream,
                    "408 Request Timeout",
                    r#"{"error":"request_timeout"}"#,
                )
                .await;
            }
            Head::Gone => {}
        }
        drop(guard);
    });
    if let Some(slot) = registry.borrow_mut().slots.get_mut(&id) {
        slot.task = Some(task);
    }
}

/// Whether the HTTP service has been without a connection for [`SERVICE_IDLE`]; `idle_since`
/// tracks since when (checked on the 2 s chore tick).
fn drop_idle_service(registry: &Rc<RefCell<Registry>>, idle_since: &mut Option<Instant>) -> bool {
    if !registry.borrow().slots.is_empty() {
        *idle_since = None;
        return false;
    }
    let since = *idle_since.get_or_insert_with(Instant::now);
    if since.elapsed() < SERVICE_IDLE {
        return false;
    }
    *idle_since = None;
    true
}

/// Connections open at once past which a fall back to a quarter trims the heap.
const TRIM_PEAK: usize = 64;

/// Hands memory freed after a flood back to the OS: glibc keeps freed heap pages otherwise,
/// and a daemon under `MemoryMax` must come back down.
fn maybe_trim(registry: &Rc<RefCell<Registry>>) {
    let mut r = registry.borrow_mut();
    if r.peak >= TRIM_PEAK && r.slots.len() * 4 <= r.peak {
        r.peak = r.slots.len();
        drop(r);
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only releases free memory of the allocator's arenas.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

/// Counts shed connections and logs them at most once per interval (a flood must not flood
/// the log).
#[derive(Default)]
struct ShedLog {
    evicted: u64,
    refused: u64,
    accept_errors: u64,
    last_error: Option<String>,
    last_line: Option<Instant>,
}

impl ShedLog {
    const INTERVAL: Duration = Duration::from_secs(60);

    fn evicted(&mut self) {
        self.evicted += 1;
    }

    fn refused(&mut self) {
        self.refused += 1;
    }

    fn accept_failed(&mut self, e: &io::Error) {
        self.accept_errors += 1;
        self.last_error = Some(e.to_string());
    }

    /// Something waits to be logged.
    fn pending(&self) -> bool {
        self.evicted + self.refused + self.accept_errors > 0
    }

    fn flush(&mut self) {
        if !self.pending() {
            return;
        }
        if self.last_line.is_some_and(|t| t.elapsed() < Self::INTERVAL) {
            return;
        }
        log::warn!(
            "security: TCP connection budget full: closed {} connections still sending their \
             first request head and refused {} new ones; {} accept errors (last: {}); at most \
             one line per {} s",
            self.evicted,
            self.refused,
            self.accept_errors,
            self.last_error.as_deref().unwrap_or("none"),
            Self::INTERVAL.as_secs()
        );
        *self = ShedLog {
            last_line: Some(Instant::now()),
            ..ShedLog::default()
        };
    }
}
