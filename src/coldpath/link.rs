//! The WebSocket exchange of a cold-path send: connect, hello, (`list_peers`), `send`, `ack`,
//! close 1000. Pushes are counted and dropped, pings answered, undecodable frames skipped.

use awc::error::WsProtocolError;
use awc::ws::{CloseCode, CloseReason, Frame, Message};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::time::Instant;

use claudemesh_actors::broker::msg::Resolution;
use claudemesh_actors::broker::peers::{is_pubkey, PeerCache};
use claudemesh_actors::crypto;
use claudemesh_actors::time::now_ms;
use claudemesh_actors::wire::{self, BrokerFrame, ClientFrame, SendFrame};

use super::{hello, ColdPathError, ColdSent, Plan, ACK_TIMEOUT, CLOSE_GRACE};
use crate::http::send_request::TargetForm;

/// An open client WebSocket (awc's framed connection).
trait WsConn:
    Stream<Item = Result<Frame, WsProtocolError>> + Sink<Message, Error = WsProtocolError> + Unpin
{
}
impl<S> WsConn for S where
    S: Stream<Item = Result<Frame, WsProtocolError>>
        + Sink<Message, Error = WsProtocolError>
        + Unpin
{
}

/// The open WebSocket and what it has seen.
struct Link<S> {
    ws: S,
    mesh: String,
    pushes: usize,
}

impl<S: WsConn> Link<S> {
    async fn send_text(&mut self, text: String, during: &'static str) -> Result<(), ColdPathError> {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .map_err(|e| ColdPathError::Lost {
                mesh: self.mesh.clone(),
                during,
                detail: e.to_string(),
            })
    }

    /// The next broker frame other than a push, or `None` at `deadline`. Pings are answered;
    /// pushes are counted and dropped; undecodable frames are logged and skipped.
    async fn next(
        &mut self,
        deadline: Instant,
        during: &'static str,
    ) -> Result<Option<BrokerFrame>, ColdPathError> {
        let lost = |mesh: &str, detail: String| ColdPathError::Lost {
            mesh: mesh.to_string(),
            during,
            detail,
        };
        loop {
            let Ok(item) = tokio::time::timeout_at(deadline, self.ws.next()).await else {
                return Ok(None);
            };
            match item {
                None => return Err(lost(&self.mesh, "connection ended".into())),
                Some(Err(e)) => return Err(lost(&self.mesh, e.to_string())),
                Some(Ok(Frame::Text(bytes))) => {
                    let text = String::from_utf8_lossy(&bytes);
                    match wire::decode_broker(&text) {
                        Ok(BrokerFrame::Push(_)) => self.pushes += 1,
                        Ok(frame) => return Ok(Some(frame)),
                        Err(e) => log::debug!("cold path: ignoring a broker frame: {e}"),
                    }
                }
                Some(Ok(Frame::Ping(p))) => {
                    let _ = self.ws.send(Message::Pong(p)).await;
                }
                Some(Ok(Frame::Close(reason))) => {
                    let detail = reason
                        .map(|r| {
                            format!("closed {:?} {}", r.code, r.description.unwrap_or_default())
                        })
                        .unwrap_or_else(|| "closed".into());
                    return Err(lost(&self.mesh, detail));
                }
                Some(Ok(_)) => {}
            }
        }
    }

    /// Close 1000 and give the broker a moment to echo it.
    async fn close(mut self) {
        let reason = CloseReason {
            code: CloseCode::Normal,
            description: None,
        };
        if self.ws.send(Message::Close(Some(reason))).await.is_ok() {
            let _ = tokio::time::timeout(CLOSE_GRACE, async {
                while let Some(Ok(frame)) = self.ws.next().await {
                    if matches!(frame, Frame::Close(_)) {
                        break;
                    }
                }
            })
            .await;
        }
    }
}

pub(super) async fn run(plan: Plan) -> Result<ColdSent, ColdPathError> {
    let slug = plan.mesh.slug.clone();
    let client = awc::Client::builder()
        .max_http_version(awc::http::Version::HTTP_11)
        .timeout(plan.hello_timeout)
        .finish();
    let (_resp, ws) = client
        .ws(plan.mesh.broker_url.as_str())
        .max_frame_size(plan.max_frame)
        .connect()
        .await
        .map_err(|e| ColdPathError::Connect {
            mesh: slug.clone(),
            url: plan.mesh.broker_url.clone(),
            detail: e.to_string(),
        })?;
    let mut link = Link {
        ws,
        mesh: slug.clone(),
        pushes: 0,
    };
    let result = exchange(&plan, &mut link).await;
    let pushes = link.pushes;
    link.close().await;
    result.map(|mut sent| {
        sent.pushes_ignored = pushes;
        sent
    })
}

/// hello → (list_peers) → send → ack.
async fn exchange<S: WsConn>(plan: &Plan, link: &mut Link<S>) -> Result<ColdSent, ColdPathError> {
    let slug = plan.mesh.slug.clone();
    let timeout = |what| ColdPathError::Timeout {
        mesh: slug.clone(),
        what,
        ms: plan.hello_timeout.as_millis(),
    };
    link.send_text(hello(plan), "hello_ack").await?;
    let deadline = Instant::now() + plan.hello_timeout;
    loop {
        match link.next(deadline, "hello_ack").await? {
            None => return Err(timeout("hello_ack")),
            Some(BrokerFrame::HelloAck(_)) => break,
            Some(BrokerFrame::Error { code, message, .. }) => {
                return Err(ColdPathError::HelloRejected {
                    mesh: slug.clone(),
                    code,
                    message,
                })
            }
            Some(other) => log::debug!("cold path: {} before hello_ack", other.kind()),
        }
    }

    let target = if plan.form == TargetForm::Name {
        resolve(plan, link, &slug).await?
    } else {
        plan.to.clone()
    };
    let body = if is_pubkey(&target) {
        crypto::seal_dm(&plan.keys, &target, plan.message.as_bytes()).map_err(|source| {
            ColdPathError::Encrypt {
                target: target.clone(),
                source,
            }
        })?
    } else {
        crypto::encode_plain(&plan.message)
    };
    let frame = wire::encode(&ClientFrame::Send(SendFrame {
        id: Some(plan.client_message_id.clone()),
        target_spec: target.clone(),
        priority: plan.priority,
        nonce: body.nonce_b64,
        ciphertext: body.ciphertext_b64,
        client_message_id: Some(plan.client_message_id.clone()),
        request_fingerprint: Some(plan.fingerprint_hex.clone()),
        // Only a topic post has a reply target on the wire (BROKER-PROTOCOL §2.1).
        reply_to_id: (plan.form == TargetForm::Topic)
            .then(|| plan.reply_to_id.clone())
            .flatten(),
        mentions: None,
        body_version: None,
    }));
    link.send_text(frame, "ack").await?;
    let deadline = Instant::now() + ACK_TIMEOUT;
    loop {
        match link.next(deadline, "ack").await? {
            None => {
                return Err(ColdPathError::AckTimeout {
                    mesh: slug.clone(),
                    ms: ACK_TIMEOUT.as_millis(),
                    client_message_id: plan.client_message_id.clone(),
                })
            }
            Some(BrokerFrame::Ack(ack)) if ack.id == plan.client_message_id => {
                if !ack.is_success() {
                    return Err(ColdPathError::Refused {
                        error: ack
                            .error
                            .unwrap_or_else(|| "not queued (no error text)".into()),
                    });
                }
                return Ok(ColdSent {
                    client_message_id: plan.client_message_id.clone(),
                    broker_message_id: ack.message_id,
                    mesh: slug,
                    target,
                    duplicate: ack.duplicate.unwrap_or(false),
                    pushes_ignored: 0,
                });
            }
            Some(BrokerFrame::Error { code, message, .. }) => {
                return Err(ColdPathError::Refused {
                    error: format!("{code}: {message}"),
                })
            }
            Some(other) => log::debug!(
                "cold path: ignoring {} while waiting for the ack",
                other.kind()
            ),
        }
    }
}

/// `list_peers`, then the engine's resolution rules against our own member key.
async fn resolve<S: WsConn>(
    plan: &Plan,
    link: &mut Link<S>,
    slug: &str,
) -> Result<String, ColdPathError> {
    let req_id = format!("cli-pl-{}", std::process::id());
    let frame = wire::encode(&ClientFrame::ListPeers {
        req_id: Some(req_id.clone()),
    });
    link.send_text(frame, "peers_list").await?;
    let deadline = Instant::now() + plan.hello_timeout;
    let peers = loop {
        match link.next(deadline, "peers_list").await? {
            None => {
                return Err(ColdPathError::Timeout {
                    mesh: slug.to_string(),
                    what: "peers_list",
                    ms: plan.hello_timeout.as_millis(),
                })
            }
            Some(BrokerFrame::PeersList { req_id: r, peers }) if r.as_deref() != Some("") => {
                if r.is_some_and(|r| r != req_id) {
                    continue;
                }
                break peers;
            }
            Some(_) => {}
        }
    };
    let mut cache = PeerCache::default();
    cache.replace(
        peers
            .iter()
            .filter_map(|p| serde_json::to_value(p).ok())
            .collect(),
        now_ms(),
    );
    match cache.resolve(&plan.to, &plan.mesh.pubkey) {
        Resolution::Found { pubkey } => Ok(pubkey),
        Resolution::Ambiguous { candidates } => Err(ColdPathError::AmbiguousPeer {
            name: plan.to.clone(),
            candidates,
        }),
        Resolution::NotFound | Resolution::Unavailable => Err(ColdPathError::UnknownPeer {
            name: plan.to.clone(),
            mesh: slug.to_string(),
        }),
    }
}
