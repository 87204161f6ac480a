//! A small blocking HTTP/1.1 client for the daemon's Unix socket (and its loopback TCP port),
//! used by the CLI. One request per connection (`Connection: close`); bodies are JSON.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Why a request failed before an HTTP status was read.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("daemon not reachable at {target}: {source}")]
    Unreachable {
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error("bad response from daemon: {0}")]
    BadResponse(String),
}

/// A status and a body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
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
    Socket(&'a Path),
    Tcp { port: u16, token: &'a str },
}

/// Sends one request and reads the whole response.
pub fn request(
    endpoint: &Endpoint<'_>,
    method: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> Result<Response, ClientError> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Endpoint::Tcp { token, .. } = endpoint {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    let mut raw = Vec::new();
    let (target, result) = match endpoint {
        Endpoint::Socket(p) => {
            let target = p.display().to_string();
            let r = UnixStream::connect(p).and_then(|mut s| {
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                s.write_all(head.as_bytes())?;
                s.write_all(body.unwrap_or("").as_bytes())?;
                s.read_to_end(&mut raw)
            });
            (target, r)
        }
        Endpoint::Tcp { port, .. } => {
            let target = format!("127.0.0.1:{port}");
            let r = TcpStream::connect(("127.0.0.1", *port)).and_then(|mut s| {
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                s.write_all(head.as_bytes())?;
                s.write_all(body.unwrap_or("").as_bytes())?;
                s.read_to_end(&mut raw)
            });
            (target, r)
        }
    };
    result.map_err(|source| ClientError::Unreachable { target, source })?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Result<Response, ClientError> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| ClientError::BadResponse("no header terminator".into()))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            ClientError::BadResponse(format!("bad status line: {:?}", head.lines().next()))
        })?;
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok(Response { status, body })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_responses() {
        let r = parse_response(b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((r.status, r.body.as_str()), (202, "{}"));
        let r = parse_response(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n").unwrap();
        assert_eq!(r.json()["a"], 1);
        assert!(parse_response(b"garbage").is_err());
    }
}
