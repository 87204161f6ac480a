//! Shared helpers for the dev broker tests: a dev mesh in a temp dir, signed hellos, the
//! awc WebSocket client with its event reader, and the push key sets.

use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use awc::error::WsProtocolError as ProtocolError;
use awc::ws::{Frame, Message};
use claudemesh_actors::crypto::MemberKeys;
use claudemesh_actors::time::now_ms;
use claudemesh_devbroker::{self as devbroker, DevBroker, DevBrokerOptions};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde_json::{json, Value};

/// How long a test waits for an expected frame.
pub(crate) const WAIT: Duration = Duration::from_secs(3);
/// How long "no answer" is observed.
pub(crate) const QUIET: Duration = Duration::from_millis(300);

/// A dev mesh in a temp dir.
pub(crate) struct Mesh {
    dir: tempfile::TempDir,
    pub(crate) mesh_id: String,
    pub(crate) members: Vec<Member>,
}

#[derive(Clone)]
pub(crate) struct Member {
    pub(crate) name: String,
    pub(crate) mesh_id: String,
    pub(crate) member_id: String,
    pub(crate) pubkey: String,
    pub(crate) keys: MemberKeys,
}

impl Mesh {
    pub(crate) fn new(names: &[&str]) -> Mesh {
        let dir = tempfile::tempdir().unwrap();
        let mut mesh = Mesh {
            dir,
            mesh_id: String::new(),
            members: Vec::new(),
        };
        mesh.add(names);
        mesh
    }

    pub(crate) fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub(crate) fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// Adds members through `create_mesh` and loads them back from their config.json.
    pub(crate) fn add(&mut self, names: &[&str]) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let created =
            devbroker::create_mesh(&self.state(), "ws://127.0.0.1:7900/ws", &names, &self.out())
                .unwrap();
        self.mesh_id = created.mesh_id.clone();
        for m in created.members {
            let text = std::fs::read_to_string(m.config_dir.join("config.json")).unwrap();
            let config: Value = serde_json::from_str(&text).unwrap();
            let entry = &config["meshes"][0];
            let keys = MemberKeys::from_hex(
                entry["pubkey"].as_str().unwrap(),
                entry["secretKey"].as_str().unwrap(),
            )
            .unwrap();
            self.members.push(Member {
                name: m.name,
                mesh_id: entry["meshId"].as_str().unwrap().to_owned(),
                member_id: entry["memberId"].as_str().unwrap().to_owned(),
                pubkey: m.pubkey,
                keys,
            });
        }
    }

    pub(crate) fn member(&self, name: &str) -> Member {
        self.members
            .iter()
            .find(|m| m.name == name)
            .unwrap()
            .clone()
    }

    pub(crate) async fn broker(&self, configure: impl FnOnce(&mut DevBrokerOptions)) -> DevBroker {
        let mut opts = DevBrokerOptions::new(self.state(), "127.0.0.1:0".parse().unwrap());
        configure(&mut opts);
        devbroker::start(opts).await.unwrap()
    }

    /// A head-profile broker (its defaults, then `configure`).
    pub(crate) async fn head_broker(
        &self,
        configure: impl FnOnce(&mut DevBrokerOptions),
    ) -> DevBroker {
        let mut opts = DevBrokerOptions::head(self.state(), "127.0.0.1:0".parse().unwrap());
        configure(&mut opts);
        devbroker::start(opts).await.unwrap()
    }
}

/// Polls `check` every 20 ms until it holds or `within` has passed; returns whether it held.
pub(crate) async fn wait_until<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A signed head `session_hello` for a session of `m` with `session` keys, its attestation
/// expiring `ttl_ms` from now.
pub(crate) fn session_hello(
    m: &Member,
    session: &MemberKeys,
    session_id: &str,
    ttl_ms: i64,
) -> Value {
    let ts = now_ms();
    let session_pubkey = session.pubkey_hex();
    let expires_at = ts + ttl_ms;
    let attest = format!(
        "claudemesh-session-attest|{}|{session_pubkey}|{expires_at}",
        m.pubkey
    );
    let signed = format!(
        "claudemesh-session-hello|{}|{}|{session_pubkey}|{ts}",
        m.mesh_id, m.pubkey
    );
    json!({
        "type": "session_hello", "meshId": m.mesh_id, "parentMemberId": m.member_id,
        "parentMemberPubkey": m.pubkey, "sessionPubkey": session_pubkey,
        "parentAttestation": {
            "sessionPubkey": session_pubkey, "parentMemberPubkey": m.pubkey,
            "expiresAt": expires_at, "signature": m.keys.sign_hex(attest.as_bytes()),
        },
        "displayName": format!("{}-session", m.name), "sessionId": session_id, "pid": 4343,
        "cwd": "/work/session", "hostname": "devbox", "peerType": "ai",
        "channel": "claudemesh-session", "timestamp": ts,
        "signature": session.sign_hex(signed.as_bytes()),
    })
}

/// A signed hello; `session` adds a `sessionPubkey`.
pub(crate) fn hello(m: &Member, session: Option<&str>, session_id: &str) -> Value {
    let ts = now_ms();
    let mut frame = json!({
        "type": "hello", "meshId": m.mesh_id, "memberId": m.member_id, "pubkey": m.pubkey,
        "displayName": m.name, "sessionId": session_id, "pid": 4242, "cwd": "/work",
        "hostname": "devbox", "peerType": "ai", "channel": "claudemesh-daemon",
        "timestamp": ts, "signature": m.keys.sign_hello(&m.mesh_id, &m.member_id, ts),
    });
    if let Some(key) = session {
        frame["sessionPubkey"] = json!(key);
    }
    frame
}

pub(crate) trait WsIo:
    Stream<Item = Result<Frame, ProtocolError>> + Sink<Message, Error = ProtocolError> + Unpin
{
}
impl<T> WsIo for T where
    T: Stream<Item = Result<Frame, ProtocolError>> + Sink<Message, Error = ProtocolError> + Unpin
{
}

#[derive(Debug, PartialEq)]
pub(crate) enum Event {
    Text(Value),
    Close(Option<(u16, String)>),
    Ping,
    Eof,
}

/// A WebSocket client with the 16 MiB frame limit; answers pings unless `auto_pong` is off.
pub(crate) struct Ws {
    pub(crate) io: Pin<Box<dyn WsIo>>,
    pub(crate) auto_pong: bool,
}

impl Ws {
    pub(crate) async fn connect(url: &str) -> Ws {
        let (_, framed) = awc::Client::new()
            .ws(url)
            .max_frame_size(16 << 20)
            .connect()
            .await
            .unwrap();
        Ws {
            io: Box::pin(framed),
            auto_pong: true,
        }
    }

    pub(crate) async fn send(&mut self, frame: Value) {
        self.send_text(frame.to_string()).await;
    }

    pub(crate) async fn send_text(&mut self, text: String) {
        self.io.send(Message::Text(text.into())).await.unwrap();
    }

    pub(crate) async fn close(&mut self) {
        let _ = self.io.send(Message::Close(None)).await;
        while !matches!(
            self.next(WAIT).await,
            None | Some(Event::Eof | Event::Close(_))
        ) {}
    }

    /// The next event within `wait`; pings are answered (if `auto_pong`) and reported.
    pub(crate) async fn next(&mut self, wait: Duration) -> Option<Event> {
        let frame = tokio::time::timeout(wait, self.io.next()).await.ok()?;
        Some(match frame {
            Some(Ok(Frame::Text(bytes))) => Event::Text(serde_json::from_slice(&bytes).unwrap()),
            Some(Ok(Frame::Close(reason))) => {
                Event::Close(reason.map(|r| (u16::from(r.code), r.description.unwrap_or_default())))
            }
            Some(Ok(Frame::Ping(bytes))) => {
                if self.auto_pong {
                    let _ = self.io.send(Message::Pong(bytes)).await;
                }
                Event::Ping
            }
            Some(Ok(_)) => return Box::pin(self.next(wait)).await,
            Some(Err(_)) | None => Event::Eof,
        })
    }

    /// The next text frame (pings skipped); panics on anything else.
    pub(crate) async fn recv(&mut self) -> Value {
        loop {
            match self.next(WAIT).await {
                Some(Event::Text(v)) => return v,
                Some(Event::Ping) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next text frame of `kind`, skipping others; for pushes, the system event `event`,
    /// or with `None` the next message push.
    pub(crate) async fn recv_kind(&mut self, kind: &str, event: Option<&str>) -> Value {
        loop {
            let v = self.recv().await;
            let event_ok = match event {
                Some(e) => v["event"] == e,
                None => v["subtype"] != "system",
            };
            if v["type"] == kind && event_ok {
                return v;
            }
        }
    }

    /// Asserts no text frame arrives for [`QUIET`].
    pub(crate) async fn expect_silence(&mut self) {
        let deadline = tokio::time::Instant::now() + QUIET;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                None => return,
                Some(Event::Ping) => continue,
                Some(other) => panic!("expected silence, got {other:?}"),
            }
        }
    }

    /// Text frames until the close; returns them and the close code/reason (`None` for EOF).
    pub(crate) async fn until_close(&mut self) -> (Vec<Value>, Option<(u16, String)>) {
        let mut texts = Vec::new();
        loop {
            match self.next(WAIT).await {
                Some(Event::Text(v)) => texts.push(v),
                Some(Event::Ping) => continue,
                Some(Event::Close(reason)) => return (texts, reason),
                Some(Event::Eof) => return (texts, None),
                None => panic!("no close within {WAIT:?}; got {texts:?}"),
            }
        }
    }
}

/// Connects and says hello; returns the socket, its `hello_ack`, and frames seen before it.
pub(crate) async fn join_with(url: &str, hello_frame: Value) -> (Ws, Value, Vec<Value>) {
    let mut ws = Ws::connect(url).await;
    ws.send(hello_frame).await;
    let mut before = Vec::new();
    loop {
        let v = ws.recv().await;
        if v["type"] == "hello_ack" {
            return (ws, v, before);
        }
        before.push(v);
    }
}

pub(crate) async fn join(url: &str, m: &Member) -> Ws {
    let session_id = format!("{}-{}", m.name, devbroker_test_counter());
    join_with(url, hello(m, None, &session_id)).await.0
}

fn devbroker_test_counter() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::SeqCst)
}

pub(crate) fn keys_of(v: &Value) -> Vec<String> {
    let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

pub(crate) fn sorted(list: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

pub(crate) fn dm(id: &str, target: &str, priority: &str) -> Value {
    json!({"type": "send", "id": id, "targetSpec": target, "priority": priority,
           "nonce": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYX", "ciphertext": "c2VjcmV0IGJvZHk="})
}

pub(crate) const DRAINED_PUSH_KEYS: &[&str] = &[
    "type",
    "messageId",
    "meshId",
    "senderPubkey",
    "priority",
    "nonce",
    "ciphertext",
    "createdAt",
];
pub(crate) const LIVE_PUSH_KEYS: &[&str] = &[
    "type",
    "messageId",
    "meshId",
    "senderPubkey",
    "senderMemberPubkey",
    "senderMemberId",
    "senderName",
    "priority",
    "nonce",
    "ciphertext",
    "createdAt",
];
