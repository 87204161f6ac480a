//! One task per accepted WebSocket: reads frames (up to 16 MiB; anything larger drops the
//! connection without a close frame, like the real broker's runtime), answers `no_hello` itself
//! while the socket is not authenticated, forwards the rest to the hub, writes what the hub
//! sends back, pings every `ping_interval`, and — when `stale_after` is set — terminates a
//! socket whose last pong is older than that (the head broker's watchdog).
//!
//! States: `AwaitHello` → (hello, or head `session_hello`, forwarded) `HelloPending` →
//! (`hello_ack` written) `Authed`.
//! Any frame but a hello before `hello_ack` has been **written** gets `no_hello`, so a client
//! that pipelines a frame behind its hello sees the real broker's race (§1.2, §10 item 2).
//! Bytes that are not JSON, and `null`, are ignored in every state (the broker's parse error).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, Session};
use claudemesh_actors::wire::{decode_client, encode, BrokerFrame, ClientFrame};
use serde_json::Value;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::{interval_at, Instant, MissedTickBehavior};

use super::hub::msg::{ConnId, HubCmd, Outgoing};

/// Largest frame a client may send.
pub const MAX_FRAME_BYTES: usize = 16 << 20;

/// Liveness settings of every session.
#[derive(Clone, Copy, Debug)]
pub struct SessionConfig {
    /// Interval of the broker's WebSocket pings.
    pub ping_interval: Duration,
    /// Terminate a socket whose last pong (or connect) is older than this; `None` = never.
    pub stale_after: Option<Duration>,
    /// Head profile: `session_hello` is a hello (seed: it gets `no_hello` like any frame).
    pub session_hello: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Auth {
    AwaitHello,
    HelloPending,
    Authed,
}

/// How a session ends.
enum End {
    /// Write a close frame first.
    Close(Option<CloseReason>),
    /// Just drop the connection.
    Drop,
}

/// Everything one session task owns.
pub struct SessionTask {
    /// Its id in the hub.
    pub conn: ConnId,
    /// The write half.
    pub session: Session,
    /// The read half.
    pub stream: AggregatedMessageStream,
    /// Frames and orders from the hub.
    pub outgoing: UnboundedReceiver<Outgoing>,
    /// Commands to the hub.
    pub hub: Sender<HubCmd>,
    /// Liveness settings.
    pub config: SessionConfig,
    /// Count of live sessions, decremented on exit (the broker's stop waits for zero).
    pub live: Arc<AtomicUsize>,
}

impl SessionTask {
    /// Runs the socket until it ends, then tells the hub.
    pub async fn run(mut self) {
        let end = self.serve().await;
        if let End::Close(reason) = end {
            let _ = self.session.clone().close(reason).await;
        }
        let _ = self.hub.send(HubCmd::Closed { conn: self.conn });
        self.live.fetch_sub(1, Ordering::SeqCst);
    }

    async fn serve(&mut self) -> End {
        let mut auth = Auth::AwaitHello;
        let mut half_open = false;
        let mut held: VecDeque<Outgoing> = VecDeque::new();
        let mut last_pong = Instant::now();
        let period = self.config.ping_interval.max(Duration::from_millis(1));
        let mut ticker = interval_at(Instant::now() + period, period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            // Biased towards reading: a frame already received when the hub's `hello_ack`
            // arrives is handled first, so a frame pipelined behind a hello gets `no_hello`.
            tokio::select! {
                biased;
                incoming = self.stream.recv(), if !half_open => match incoming {
                    Some(Ok(AggregatedMessage::Text(text))) => self.on_text(&text, &mut auth).await,
                    Some(Ok(AggregatedMessage::Binary(bytes))) => {
                        if let Ok(text) = std::str::from_utf8(&bytes) {
                            self.on_text(text, &mut auth).await;
                        }
                    }
                    Some(Ok(AggregatedMessage::Ping(bytes))) => {
                        if self.session.pong(&bytes).await.is_err() {
                            return End::Drop;
                        }
                    }
                    Some(Ok(AggregatedMessage::Pong(_))) => last_pong = Instant::now(),
                    // Echo the client's close code, as the `ws` library does.
                    Some(Ok(AggregatedMessage::Close(reason))) => return End::Close(reason),
                    Some(Err(err)) => {
                        log::debug!("dev broker: connection {} dropped: {err}", self.conn);
                        return End::Drop;
                    }
                    None => return End::Drop,
                },
                out = self.outgoing.recv() => {
                    let Some(out) = out else { return End::Drop };
                    match out {
                        Outgoing::HalfOpen(on) => {
                            half_open = on;
                            if !on {
                                while let Some(next) = held.pop_front() {
                                    if let Some(end) = self.write(next, &mut auth).await {
                                        return end;
                                    }
                                }
                            }
                        }
                        out @ (Outgoing::Text(_) | Outgoing::HelloAck(_)) if half_open => held.push_back(out),
                        out => {
                            if let Some(end) = self.write(out, &mut auth).await {
                                return end;
                            }
                        }
                    }
                }
                _ = ticker.tick() => {
                    if let Some(stale) = self.config.stale_after {
                        if last_pong.elapsed() > stale {
                            log::debug!("dev broker: connection {} stale, terminated", self.conn);
                            return End::Drop;
                        }
                    }
                    if !half_open && self.session.ping(b"").await.is_err() {
                        return End::Drop;
                    }
                }
            }
        }
    }

    /// Performs one hub order; `Some` when the session must end.
    async fn write(&mut self, out: Outgoing, auth: &mut Auth) -> Option<End> {
        let written = match out {
            Outgoing::Text(text) => self.session.text(text).await,
            Outgoing::HelloAck(text) => {
                *auth = Auth::Authed;
                self.session.text(text).await
            }
            Outgoing::HelloSilent => {
                *auth = Auth::AwaitHello;
                Ok(())
            }
            Outgoing::Close { code, reason } => {
                return Some(End::Close(Some(CloseReason {
                    code: CloseCode::from(code),
                    description: Some(reason),
                })))
            }
            Outgoing::Terminate => return Some(End::Drop),
            Outgoing::HalfOpen(_) => Ok(()),
        };
        written.err().map(|_| End::Drop)
    }

    async fn on_text(&mut self, text: &str, auth: &mut Auth) {
        let raw: Value = match serde_json::from_str(text) {
            Ok(Value::Null) | Err(_) => return,
            Ok(raw) => raw,
        };
        let kind = raw.get("type").and_then(Value::as_str);
        let is_hello = kind == Some("hello");
        let is_session_hello = self.config.session_hello && kind == Some("session_hello");
        match *auth {
            Auth::AwaitHello | Auth::HelloPending if is_session_hello => {
                *auth = Auth::HelloPending;
                let _ = self.hub.send(HubCmd::SessionHello {
                    conn: self.conn,
                    raw,
                });
            }
            Auth::AwaitHello | Auth::HelloPending if is_hello => {
                let typed = match decode_client(text) {
                    Ok(ClientFrame::Hello(hello)) => Some(Box::new(hello)),
                    _ => None,
                };
                *auth = Auth::HelloPending;
                let _ = self.hub.send(HubCmd::Hello {
                    conn: self.conn,
                    raw,
                    typed,
                });
            }
            Auth::AwaitHello | Auth::HelloPending => {
                let error = BrokerFrame::Error {
                    code: "no_hello".into(),
                    message: "must send hello first".into(),
                    id: None,
                };
                let _ = self.session.text(encode(&error)).await;
            }
            // Head: a second `hello` on an authenticated socket goes to the hub as a hello
            // (the head broker runs it through its session-id dedupe, see `hub::hello`).
            Auth::Authed if is_hello && self.config.session_hello => {
                let typed = match decode_client(text) {
                    Ok(ClientFrame::Hello(hello)) => Some(Box::new(hello)),
                    _ => None,
                };
                let _ = self.hub.send(HubCmd::Hello {
                    conn: self.conn,
                    raw,
                    typed,
                });
            }
            Auth::Authed => {
                if let Ok(frame) = decode_client(text) {
                    let _ = self.hub.send(HubCmd::Frame {
                        conn: self.conn,
                        frame: Box::new(frame),
                    });
                }
            }
        }
    }
}
