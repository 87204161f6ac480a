//! A small blocking HTTP/1.1 client for the daemon's Unix socket and its loopback TCP port,
//! used by the CLI. One request per connection (`Connection: close`); bodies are JSON.
//!
//! Two shapes: [`request`] reads a whole response; [`open_stream`] returns the status and a
//! reader over the (de-chunked) body as it arrives, for `GET /v1/events`.
//!
//! Invariant: [`ClientError::Unreachable`] means the connection itself could not be made
//! (no socket file, connection refused) — nothing reached a daemon, so a caller may fall back
//! to something else (the cold-path send). Any failure after connecting is
//! [`ClientError::Io`] or [`ClientError::BadResponse`]: the daemon may have acted on it.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Why a request failed before an HTTP status was read.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The connection could not be made: nothing listens there.
    #[error("no daemon answers at {target}: {}", connect_reason(.source))]
    Unreachable {
        /// The socket path or `127.0.0.1:<port>`.
        target: String,
        /// The OS error of `connect`.
        #[source]
        source: io::Error,
    },
    /// Connected, then writing or reading failed (timeout, reset).
    #[error("talking to the daemon at {target} failed: {source}")]
    Io {
        /// The socket path or `127.0.0.1:<port>`.
        target: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The answer was not HTTP.
    #[error("bad response from the daemon at {target}: {detail}")]
    BadResponse {
        /// The socket path or `127.0.0.1:<port>`.
        target: String,
        /// What was wrong with it.
        detail: String,
    },
}

/// Why a connect failed, in the words a user expects.
fn connect_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no socket file (is the daemon running?)".into(),
        io::ErrorKind::ConnectionRefused => "connection refused (is the daemon running?)".into(),
        _ => e.to_string(),
    }
}

/// A status and a body.
#[derive(Debug, Clone)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// The whole body (de-chunked), lossily decoded as UTF-8.
    pub body: String,
}

impl Response {
    /// The body as JSON (`null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Where the daemon listens.
pub enum Endpoint<'a> {
    /// The Unix socket (no token: the daemon checks our uid).
    Socket(&'a Path),
    /// The loopback TCP port, with the bearer token of `local-token`.
    Tcp {
        /// The port on 127.0.0.1.
        port: u16,
        /// The token, sent as `Authorization: Bearer`.
        token: &'a str,
    },
}

impl Endpoint<'_> {
    /// The socket path or `127.0.0.1:<port>`, for messages.
    pub fn target(&self) -> String {
        match self {
            Endpoint::Socket(p) => p.display().to_string(),
            Endpoint::Tcp { port, .. } => format!("127.0.0.1:{port}"),
        }
    }
}

/// A connected byte stream to the daemon.
trait Duplex: Read + Write + Send {}
impl Duplex for UnixStream {}
impl Duplex for TcpStream {}

fn connect(endpoint: &Endpoint<'_>, timeout: Duration) -> Result<Box<dyn Duplex>, ClientError> {
    let target = endpoint.target();
    let unreachable = |source| ClientError::Unreachable {
        target: target.clone(),
        source,
    };
    let io_err = |source| ClientError::Io {
        target: target.clone(),
        source,
    };
    match endpoint {
        Endpoint::Socket(p) => {
            let s = UnixStream::connect(p).map_err(unreachable)?;
            s.set_read_timeout(Some(timeout)).map_err(io_err)?;
            s.set_write_timeout(Some(timeout)).map_err(io_err)?;
            Ok(Box::new(s))
        }
        Endpoint::Tcp { port, .. } => {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], *port));
            let s = TcpStream::connect_timeout(&addr, timeout).map_err(unreachable)?;
            s.set_read_timeout(Some(timeout)).map_err(io_err)?;
            s.set_write_timeout(Some(timeout)).map_err(io_err)?;
            Ok(Box::new(s))
        }
    }
}

fn request_head(
    endpoint: &Endpoint<'_>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> String {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Endpoint::Tcp { token, .. } = endpoint {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    head
}

/// Sends one request and reads the whole response.
pub fn request(
    endpoint: &Endpoint<'_>,
    method: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> Result<Response, ClientError> {
    let target = endpoint.target();
    let mut conn = connect(endpoint, timeout)?;
    let head = request_head(endpoint, method, path, &[], body);
    let mut raw = Vec::new();
    conn.write_all(head.as_bytes())
        .and_then(|()| conn.write_all(body.unwrap_or("").as_bytes()))
        .and_then(|()| conn.read_to_end(&mut raw))
        .map_err(|source| ClientError::Io {
            target: target.clone(),
            source,
        })?;
    parse_response(&raw).map_err(|detail| ClientError::BadResponse { target, detail })
}

/// A response whose body is read as it arrives.
pub struct StreamResponse {
    /// The HTTP status code.
    pub status: u16,
    /// The body, de-chunked when the response was chunked.
    pub body: Box<dyn BufRead + Send>,
}

impl StreamResponse {
    /// Reads the rest of the body (for error answers).
    pub fn into_string(mut self) -> String {
        let mut s = String::new();
        let _ = self.body.read_to_string(&mut s);
        s
    }
}

/// Sends a `GET` with extra `headers` and returns once the response head is read; reads
/// of the body time out after `read_timeout` without data.
pub fn open_stream(
    endpoint: &Endpoint<'_>,
    path: &str,
    headers: &[(&str, &str)],
    read_timeout: Duration,
) -> Result<StreamResponse, ClientError> {
    let target = endpoint.target();
    let mut conn = connect(endpoint, read_timeout)?;
    let head = request_head(endpoint, "GET", path, headers, None);
    conn.write_all(head.as_bytes())
        .map_err(|source| ClientError::Io {
            target: target.clone(),
            source,
        })?;
    let mut reader = BufReader::new(conn);
    let mut status_line = String::new();
    let mut chunked = false;
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .map_err(|source| ClientError::Io {
                target: target.clone(),
                source,
            })?;
        if n == 0 {
            return Err(ClientError::BadResponse {
                target,
                detail: "connection closed inside the response head".into(),
            });
        }
        let l = line.trim_end();
        if status_line.is_empty() {
            status_line = l.to_string();
            continue;
        }
        if l.is_empty() {
            break;
        }
        let lower = l.to_ascii_lowercase();
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    let status = parse_status(&status_line).map_err(|detail| ClientError::BadResponse {
        target: target.clone(),
        detail,
    })?;
    let body: Box<dyn BufRead + Send> = if chunked {
        Box::new(BufReader::new(ChunkedReader::new(reader)))
    } else {
        Box::new(reader)
    };
    Ok(StreamResponse { status, body })
}

fn parse_status(line: &str) -> Result<u16, String> {
    line.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {line:?}"))
}

fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| "no header terminator".to_string())?;
    let status = parse_status(head.lines().next().unwrap_or(""))?;
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.contains("chunked"));
    let body = if chunked {
        let mut out = String::new();
        let _ = ChunkedReader::new(body.as_bytes()).read_to_string(&mut out);
        out
    } else {
        body.to_string()
    };
    Ok(Response { status, body })
}

/// Reads an HTTP/1.1 chunked body as the plain byte stream it carries; ends at the `0` chunk.
pub struct ChunkedReader<R: BufRead> {
    inner: R,
    /// Bytes left in the current chunk.
    left: usize,
    done: bool,
}

impl<R: BufRead> ChunkedReader<R> {
    /// Wraps a reader positioned at the first chunk-size line.
    pub fn new(inner: R) -> Self {
        ChunkedReader {
            inner,
            left: 0,
            done: false,
        }
    }

    fn next_chunk(&mut self) -> io::Result<()> {
        let mut line = String::new();
        loop {
            line.clear();
            if self.inner.read_line(&mut line)? == 0 {
                self.done = true;
                return Ok(());
            }
            // The CRLF closing the previous chunk shows up as an empty line.
            if !line.trim().is_empty() {
                break;
            }
        }
        let size = line.trim().split(';').next().unwrap_or("");
        let n = usize::from_str_radix(size.trim(), 16).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad chunk size {size:?}"),
            )
        })?;
        if n == 0 {
            self.done = true;
        }
        self.left = n;
        Ok(())
    }
}

impl<R: BufRead> Read for ChunkedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.left == 0 && !self.done {
            self.next_chunk()?;
        }
        if self.done {
            return Ok(0);
        }
        let want = buf.len().min(self.left);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            self.done = true;
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed inside a chunk",
            ));
        }
        self.left -= n;
        Ok(n)
    }
}

/// One Server-Sent Event as read off the stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `id:` field (absent on `reset`).
    pub id: Option<String>,
    /// The `event:` field (`message` when absent, per the SSE rules).
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Reads the next event from an SSE body; `Ok(None)` when the stream ends. Comment lines
/// (`: connected`, heartbeats) are skipped.
pub fn next_event(reader: &mut dyn BufRead) -> io::Result<Option<SseEvent>> {
    let mut ev = SseEvent::default();
    let mut seen = false;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            if seen {
                if ev.event.is_empty() {
                    ev.event = "message".into();
                }
                return Ok(Some(ev));
            }
            continue;
        }
        if l.starts_with(':') {
            continue;
        }
        let (field, value) = l.split_once(':').unwrap_or((l, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        seen = true;
        match field {
            "id" => ev.id = Some(value.to_string()),
            "event" => ev.event = value.to_string(),
            "data" => {
                if !ev.data.is_empty() {
                    ev.data.push('\n');
                }
                ev.data.push_str(value);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
