//! The cold-path send (SPEC §10): `claudemeshd send` when no daemon answers on the socket.
//! One short-lived WebSocket to the mesh's broker, as the member itself: hello (signed with
//! the member key, no `sessionPubkey`, `sessionId` `cli-<pid>`), `list_peers` when the
//! destination is a name or prefix, one `send`, its `ack`, close 1000.
//!
//! It uses the daemon's own rules so a message means the same whichever path carried it: the
//! body is validated by the HTTP layer's phase-A parser, names resolve through the engine's
//! [`PeerCache::resolve`], DMs are sealed with the member secret, the frame carries
//! `id` = `client_message_id` and the SPEC §5.2 request fingerprint.
//!
//! Invariants: it never opens the daemon's databases or writes into the daemon dir (settings
//! are read, nothing is written); it sends nothing before `hello_ack` and nothing but the
//! one `list_peers` and the one `send` after it; it never sends `client_ack`, so a head broker
//! redelivers any queued push that reached this connection to the daemon later. (A seed
//! broker marks drained pushes delivered when it sends them: those are counted in
//! [`ColdSent::pushes_ignored`] and reported, since this path cannot store them.)

use std::time::Duration;

use awc::error::WsProtocolError;
use awc::ws::{CloseCode, CloseReason, Frame, Message};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde_json::{json, Value};
use tokio::time::Instant;

use claudemesh_actors::broker::msg::Resolution;
use claudemesh_actors::broker::peers::{is_pubkey, PeerCache};
use claudemesh_actors::crypto::{self, CryptoError, MemberKeys};
use claudemesh_actors::fingerprint::{destination_for, request_fingerprint};
use claudemesh_actors::settings::{JoinedMesh, SettingsError};
use claudemesh_actors::time::now_ms;
use claudemesh_actors::wire::{self, BrokerFrame, ClientFrame, Hello, Priority, SendFrame};

use crate::http::send_request::{check_broker_size, parse_send, TargetForm};
use crate::settings::{self, UpFlags};

/// How long to wait for the broker's `ack` of the send.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the broker's close echo after our close 1000.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// What to send, as the user gave it.
#[derive(Debug, Clone, Default)]
pub struct ColdRequest {
    /// Destination (SPEC §5.1 forms).
    pub to: String,
    /// Message text.
    pub message: String,
    /// `now|next|low`; `None` = `next`.
    pub priority: Option<String>,
    /// `meta` (must be a JSON object).
    pub meta: Option<Value>,
    /// `reply_to_id`.
    pub reply_to_id: Option<String>,
    /// Idempotency key; `None` mints a ULID.
    pub client_message_id: Option<String>,
    /// Mesh slug; `None` = the default mesh.
    pub mesh: Option<String>,
}

/// A send the broker accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColdSent {
    /// The id sent as `id`/`client_message_id`.
    pub client_message_id: String,
    /// The ack's `messageId`.
    pub broker_message_id: String,
    /// The mesh slug used.
    pub mesh: String,
    /// The `targetSpec` sent (a name resolved to its pubkey).
    pub target: String,
    /// A deduplicating broker had already accepted this id with this fingerprint.
    pub duplicate: bool,
    /// Queued pushes for this member that reached the one-shot connection and were not stored.
    pub pushes_ignored: usize,
}

/// Why a cold-path send failed; [`ColdPathError::exit_code`] maps it to SPEC §10.
#[derive(Debug, thiserror::Error)]
pub enum ColdPathError {
    /// `config.json`/`daemon.toml`/environment could not be loaded.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The send fails the daemon's phase-A validation.
    #[error("{detail}")]
    Invalid {
        /// What the validator said.
        detail: String,
    },
    /// `--mesh` names a mesh that is not joined.
    #[error("unknown mesh {requested:?} (joined: {})", joined.join(", "))]
    UnknownMesh {
        /// The slug given.
        requested: String,
        /// The joined slugs.
        joined: Vec<String>,
    },
    /// The member keys in `config.json` are unusable.
    #[error("mesh {slug}: member keys in config.json: {source}")]
    Keys {
        /// Mesh slug.
        slug: String,
        /// The crypto error.
        #[source]
        source: CryptoError,
    },
    /// The WebSocket could not be opened.
    #[error("cannot connect to the broker of mesh {mesh} at {url}: {detail}")]
    Connect {
        /// Mesh slug.
        mesh: String,
        /// Broker URL.
        url: String,
        /// awc's error.
        detail: String,
    },
    /// The broker answered the hello with an `error` frame.
    #[error("the broker of mesh {mesh} refused the hello: {code}: {message}")]
    HelloRejected {
        /// Mesh slug.
        mesh: String,
        /// `bad_signature`, `revoked`, `timestamp_skew`, …
        code: String,
        /// The broker's text.
        message: String,
    },
    /// No answer in time (`hello_ack`, `peers_list`).
    #[error("no {what} from the broker of mesh {mesh} within {ms} ms")]
    Timeout {
        /// Mesh slug.
        mesh: String,
        /// What was awaited.
        what: &'static str,
        /// The wait.
        ms: u128,
    },
    /// No `ack` in time: the broker may or may not have the message.
    #[error("no ack from the broker of mesh {mesh} within {ms} ms; the message may have been accepted: retry with --idempotency-key {client_message_id}")]
    AckTimeout {
        /// Mesh slug.
        mesh: String,
        /// The wait.
        ms: u128,
        /// The id to retry with.
        client_message_id: String,
    },
    /// The connection ended or failed.
    #[error("broker connection of mesh {mesh} lost while waiting for {during}: {detail}")]
    Lost {
        /// Mesh slug.
        mesh: String,
        /// What was awaited.
        during: &'static str,
        /// Close reason or protocol error.
        detail: String,
    },
    /// No peer has that name or prefix.
    #[error("unknown peer {name:?} on mesh {mesh}")]
    UnknownPeer {
        /// The name given.
        name: String,
        /// Mesh slug.
        mesh: String,
    },
    /// Several peers match.
    #[error("ambiguous peer {name:?}: {}", candidates.join(", "))]
    AmbiguousPeer {
        /// The name given.
        name: String,
        /// What matched.
        candidates: Vec<String>,
    },
    /// Sealing the DM failed.
    #[error("cannot encrypt the DM to {target}: {source}")]
    Encrypt {
        /// Recipient pubkey.
        target: String,
        /// The crypto error.
        #[source]
        source: CryptoError,
    },
    /// The broker's ack carried an error (or an `error` frame came instead).
    #[error("the broker refused the message: {error}")]
    Refused {
        /// The broker's error text, verbatim.
        error: String,
    },
}

impl ColdPathError {
    /// 2 for what the arguments or config got wrong, 3 for a refused hello, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            ColdPathError::Settings(_)
            | ColdPathError::Invalid { .. }
            | ColdPathError::UnknownMesh { .. }
            | ColdPathError::Keys { .. }
            | ColdPathError::UnknownPeer { .. }
            | ColdPathError::AmbiguousPeer { .. } => 2,
            ColdPathError::HelloRejected { .. } => 3,
            _ => 1,
        }
    }

    /// A short machine code for `--json` output.
    pub fn code(&self) -> &'static str {
        match self {
            ColdPathError::Settings(_) => "config",
            ColdPathError::Invalid { .. } => "invalid_request",
            ColdPathError::UnknownMesh { .. } => "unknown_mesh",
            ColdPathError::Keys { .. } => "bad_keys",
            ColdPathError::Connect { .. } => "broker_unreachable",
            ColdPathError::HelloRejected { .. } => "hello_rejected",
            ColdPathError::Timeout { .. } | ColdPathError::AckTimeout { .. } => "timeout",
            ColdPathError::Lost { .. } => "broker_connection_lost",
            ColdPathError::UnknownPeer { .. } => "unknown_peer",
            ColdPathError::AmbiguousPeer { .. } => "ambiguous_peer",
            ColdPathError::Encrypt { .. } => "encrypt_failed",
            ColdPathError::Refused { .. } => "broker_refused",
        }
    }
}

/// Everything the async part needs, prepared and validated up front.
struct Plan {
    mesh: JoinedMesh,
    keys: MemberKeys,
    display_name: Option<String>,
    to: String,
    form: TargetForm,
    message: String,
    priority: Priority,
    reply_to_id: Option<String>,
    client_message_id: String,
    fingerprint_hex: String,
    hello_timeout: Duration,
    max_frame: usize,
}

/// Sends `req` straight to the broker; blocks until the ack (or a failure).
pub fn send(
    req: ColdRequest,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ColdSent, ColdPathError> {
    let plan = prepare(req, env)?;
    actix_web::rt::System::new().block_on(run(plan))
}

fn prepare(req: ColdRequest, env: &dyn Fn(&str) -> Option<String>) -> Result<Plan, ColdPathError> {
    let settings = settings::load(&UpFlags::default(), env)?;
    let slug = req.mesh.clone().unwrap_or(settings.default_mesh.clone());
    let mesh = settings
        .config
        .meshes
        .iter()
        .find(|m| m.slug == slug)
        .cloned()
        .ok_or_else(|| ColdPathError::UnknownMesh {
            requested: slug.clone(),
            joined: settings
                .config
                .meshes
                .iter()
                .map(|m| m.slug.clone())
                .collect(),
        })?;
    let mut body = json!({"to": req.to, "message": req.message});
    for (k, v) in [
        ("priority", req.priority.map(Value::from)),
        ("meta", req.meta),
        ("reply_to_id", req.reply_to_id.map(Value::from)),
        ("client_message_id", req.client_message_id.map(Value::from)),
    ] {
        if let Some(v) = v {
            body[k] = v;
        }
    }
    let invalid = |e: crate::http::error::ApiError| ColdPathError::Invalid {
        detail: e.to_string(),
    };
    let parsed = parse_send(body.to_string().as_bytes(), None).map_err(invalid)?;
    check_broker_size(parsed.message.len(), &parsed.to, parsed.form).map_err(invalid)?;
    let keys = MemberKeys::from_hex(&mesh.pubkey, &mesh.secret_key).map_err(|source| {
        ColdPathError::Keys {
            slug: mesh.slug.clone(),
            source,
        }
    })?;
    let meta = parsed.meta.clone().map(Value::Object);
    let fingerprint = request_fingerprint(
        &destination_for(&parsed.to),
        parsed.reply_to_id.as_deref(),
        parsed.priority.as_str(),
        meta.as_ref(),
        parsed.message.as_bytes(),
    )
    .map_err(|e| ColdPathError::Invalid {
        detail: format!("`meta` cannot be canonicalised: {e}"),
    })?;
    let priority = match parsed.priority.as_str() {
        "now" => Priority::Now,
        "low" => Priority::Low,
        _ => Priority::Next,
    };
    Ok(Plan {
        keys,
        display_name: settings.display_name.clone(),
        to: parsed.to,
        form: parsed.form,
        message: parsed.message,
        priority,
        reply_to_id: parsed.reply_to_id,
        client_message_id: parsed
            .client_message_id
            .unwrap_or_else(|| ulid::Ulid::new().to_string()),
        fingerprint_hex: hex::encode(fingerprint),
        hello_timeout: Duration::from_millis(settings.tuning.broker.hello_timeout_ms),
        max_frame: settings.tuning.broker.max_frame_bytes,
        mesh,
    })
}

/// The member's hello for this one-shot connection.
fn hello(plan: &Plan) -> String {
    let ts = now_ms();
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "/".to_string());
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty());
    wire::encode(&ClientFrame::Hello(Hello {
        mesh_id: plan.mesh.mesh_id.clone(),
        member_id: plan.mesh.member_id.clone(),
        pubkey: plan.mesh.pubkey.clone(),
        session_pubkey: None,
        display_name: plan.display_name.clone(),
        session_id: format!("cli-{}", std::process::id()),
        pid: std::process::id(),
        cwd,
        hostname,
        peer_type: Some("ai".into()),
        channel: Some("claudemeshd-cli".into()),
        model: None,
        groups: None,
        protocol_version: None,
        capabilities: None,
        timestamp: ts.into(),
        signature: plan
            .keys
            .sign_hello(&plan.mesh.mesh_id, &plan.mesh.member_id, ts),
    }))
}

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

async fn run(plan: Plan) -> Result<ColdSent, ColdPathError> {
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
    if pushes > 0 {
        log::warn!("{pushes} queued message(s) for this member reached the one-shot connection and were not stored; run the daemon to receive messages");
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn cold_path_validates_before_connecting() {
        let dir = tempfile::tempdir().unwrap();
        let keys = MemberKeys::generate();
        let config = json!({"version": 1, "meshes": [{
            "meshId": "m1", "memberId": "u1", "slug": "work", "name": "Work",
            "pubkey": keys.pubkey_hex(), "secretKey": keys.secret_hex(),
            "brokerUrl": "ws://127.0.0.1:9/ws", "joinedAt": "2026-01-01T00:00:00Z"
        }]});
        std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
        let d = dir.path().to_path_buf();
        let env = move |k: &str| (k == "CLAUDEMESH_CONFIG_DIR").then(|| d.display().to_string());
        let req = |to: &str, mesh: Option<&str>| ColdRequest {
            to: to.into(),
            message: "hi".into(),
            mesh: mesh.map(str::to_string),
            ..Default::default()
        };
        let plan = prepare(req("bob", None), &env).unwrap();
        assert_eq!(plan.mesh.slug, "work");
        assert_eq!(plan.form, TargetForm::Name);
        assert_eq!(plan.fingerprint_hex.len(), 64);
        assert!(matches!(
            prepare(req("bob", Some("play")), &env),
            Err(ColdPathError::UnknownMesh { .. })
        ));
        assert!(matches!(
            prepare(req("", None), &env),
            Err(ColdPathError::Invalid { .. })
        ));
        let bad_meta = ColdRequest {
            meta: Some(json!([1])),
            ..req("bob", None)
        };
        assert_eq!(
            prepare(bad_meta, &env).err().map(|e| e.exit_code()),
            Some(2)
        );
        assert!(matches!(
            prepare(req("bob", None), &no_env),
            Err(ColdPathError::Settings(_))
        ));
    }

    #[test]
    fn unreachable_broker_is_a_connect_failure_with_exit_1() {
        let dir = tempfile::tempdir().unwrap();
        let keys = MemberKeys::generate();
        // Bind and drop a listener to get a port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = json!({"version": 1, "meshes": [{
            "meshId": "m1", "memberId": "u1", "slug": "work", "name": "Work",
            "pubkey": keys.pubkey_hex(), "secretKey": keys.secret_hex(),
            "brokerUrl": format!("ws://127.0.0.1:{port}/ws"), "joinedAt": "2026-01-01T00:00:00Z"
        }]});
        std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
        let d = dir.path().to_path_buf();
        let env = move |k: &str| (k == "CLAUDEMESH_CONFIG_DIR").then(|| d.display().to_string());
        let err = send(
            ColdRequest {
                to: "*".into(),
                message: "hi".into(),
                ..Default::default()
            },
            &env,
        )
        .unwrap_err();
        assert!(matches!(err, ColdPathError::Connect { .. }), "{err}");
        assert_eq!(err.exit_code(), 1);
        assert!(!dir.path().join("daemon").exists());
    }
}
