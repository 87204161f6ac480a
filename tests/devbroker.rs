//! The dev broker driven over real WebSockets on 127.0.0.1 (awc client): the path rule, hello
//! validation, events, routing, the error strings, the controls a test needs, `dev-mesh`, and a
//! fidelity replay of the recorded real-broker sessions (`tests/fixtures/wire/seed-broker*`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use awc::error::WsProtocolError as ProtocolError;
use awc::ws::{Frame, Message};
use claudemesh_actors::crypto::MemberKeys;
use claudemesh_actors::time::now_ms;
use claudemeshd::devbroker::{self, errors, DevBroker, DevBrokerOptions};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde_json::{json, Value};

/// How long a test waits for an expected frame.
const WAIT: Duration = Duration::from_secs(3);
/// How long "no answer" is observed.
const QUIET: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A dev mesh in a temp dir.
struct Mesh {
    dir: tempfile::TempDir,
    mesh_id: String,
    members: Vec<Member>,
}

#[derive(Clone)]
struct Member {
    name: String,
    mesh_id: String,
    member_id: String,
    pubkey: String,
    keys: MemberKeys,
}

impl Mesh {
    fn new(names: &[&str]) -> Mesh {
        let dir = tempfile::tempdir().unwrap();
        let mut mesh = Mesh {
            dir,
            mesh_id: String::new(),
            members: Vec::new(),
        };
        mesh.add(names);
        mesh
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// Adds members through `create_mesh` and loads them back from their config.json.
    fn add(&mut self, names: &[&str]) {
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

    fn member(&self, name: &str) -> Member {
        self.members
            .iter()
            .find(|m| m.name == name)
            .unwrap()
            .clone()
    }

    async fn broker(&self, configure: impl FnOnce(&mut DevBrokerOptions)) -> DevBroker {
        let mut opts = DevBrokerOptions::new(self.state(), "127.0.0.1:0".parse().unwrap());
        configure(&mut opts);
        devbroker::start(opts).await.unwrap()
    }
}

/// A signed hello; `session` adds a `sessionPubkey`.
fn hello(m: &Member, session: Option<&str>, session_id: &str) -> Value {
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

trait WsIo:
    Stream<Item = Result<Frame, ProtocolError>> + Sink<Message, Error = ProtocolError> + Unpin
{
}
impl<T> WsIo for T where
    T: Stream<Item = Result<Frame, ProtocolError>> + Sink<Message, Error = ProtocolError> + Unpin
{
}

#[derive(Debug, PartialEq)]
enum Event {
    Text(Value),
    Close(Option<(u16, String)>),
    Ping,
    Eof,
}

/// A WebSocket client with the 16 MiB frame limit; answers pings unless `auto_pong` is off.
struct Ws {
    io: Pin<Box<dyn WsIo>>,
    auto_pong: bool,
}

impl Ws {
    async fn connect(url: &str) -> Ws {
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

    async fn send(&mut self, frame: Value) {
        self.send_text(frame.to_string()).await;
    }

    async fn send_text(&mut self, text: String) {
        self.io.send(Message::Text(text.into())).await.unwrap();
    }

    async fn close(&mut self) {
        let _ = self.io.send(Message::Close(None)).await;
        while !matches!(
            self.next(WAIT).await,
            None | Some(Event::Eof | Event::Close(_))
        ) {}
    }

    /// The next event within `wait`; pings are answered (if `auto_pong`) and reported.
    async fn next(&mut self, wait: Duration) -> Option<Event> {
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
    async fn recv(&mut self) -> Value {
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
    async fn recv_kind(&mut self, kind: &str, event: Option<&str>) -> Value {
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
    async fn expect_silence(&mut self) {
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
    async fn until_close(&mut self) -> (Vec<Value>, Option<(u16, String)>) {
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
async fn join_with(url: &str, hello_frame: Value) -> (Ws, Value, Vec<Value>) {
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

async fn join(url: &str, m: &Member) -> Ws {
    let session_id = format!("{}-{}", m.name, devbroker_test_counter());
    join_with(url, hello(m, None, &session_id)).await.0
}

fn devbroker_test_counter() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::SeqCst)
}

fn keys_of(v: &Value) -> Vec<String> {
    let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

fn sorted(list: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

fn dm(id: &str, target: &str, priority: &str) -> Value {
    json!({"type": "send", "id": id, "targetSpec": target, "priority": priority,
           "nonce": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYX", "ciphertext": "c2VjcmV0IGJvZHk="})
}

const DRAINED_PUSH_KEYS: &[&str] = &[
    "type",
    "messageId",
    "meshId",
    "senderPubkey",
    "priority",
    "nonce",
    "ciphertext",
    "createdAt",
];
const LIVE_PUSH_KEYS: &[&str] = &[
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

// ---------------------------------------------------------------------------------------------
// Path rule and frame sizes
// ---------------------------------------------------------------------------------------------

/// Sends a WebSocket upgrade request for `target` on a raw TCP connection and returns every
/// byte the server sends before closing (or up to the end of the response head).
async fn raw_upgrade(port: u16, target: &str) -> Vec<u8> {
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
    raw_request(port, target, upgrade).await
}

/// A `GET target` with `headers` on a raw TCP connection; see [`raw_upgrade`].
async fn raw_request(port: u16, target: &str, headers: &str) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let request = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(WAIT, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => {
                got.extend_from_slice(&buf[..n]);
                if got.windows(4).any(|w| w == b"\r\n\r\n") {
                    return got;
                }
            }
            Err(_) => panic!("connection for {target} neither answered nor closed"),
        }
    }
}

#[actix_web::test]
async fn any_target_but_exactly_ws_drops_the_connection_without_an_http_response() {
    let mesh = Mesh::new(&["alice"]);
    let broker = mesh.broker(|_| {}).await;
    for target in [
        "/",
        "/ws?x=1",
        "/ws?",
        "/ws/",
        "/wss",
        "/health",
        "http://127.0.0.1/ws",
    ] {
        let got = raw_upgrade(broker.port(), target).await;
        assert!(
            got.is_empty(),
            "{target}: got {:?}",
            String::from_utf8_lossy(&got)
        );
    }
    assert!(raw_request(broker.port(), "/other", "").await.is_empty());
    let ok = raw_upgrade(broker.port(), "/ws").await;
    assert!(
        ok.starts_with(b"HTTP/1.1 101"),
        "{:?}",
        String::from_utf8_lossy(&ok)
    );
    let plain = raw_request(broker.port(), "/ws", "").await;
    assert!(
        plain.starts_with(b"HTTP/1.1 400"),
        "{:?}",
        String::from_utf8_lossy(&plain)
    );
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn oversized_send_gets_the_payload_too_large_ack_and_the_socket_stays_open() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|_| {}).await;
    let mut raw = Ws::connect(&broker.url()).await;
    raw.send_text(json!({"type": "send", "pad": "x".repeat(70_000)}).to_string())
        .await;
    assert_eq!(raw.recv().await["code"], "no_hello");
    let mut alice = join(&broker.url(), &mesh.member("alice")).await;
    let bob = mesh.member("bob");
    let mut big = dm("big", &bob.pubkey, "next");
    big["ciphertext"] = json!("A".repeat(69_880));
    alice.send(big).await;
    let ack = alice.recv().await;
    let n = 69_880 + 32 + 64;
    assert_eq!(
        ack,
        json!({"type": "ack", "id": "big", "messageId": "", "queued": false,
               "error": format!("payload too large: {n} bytes > MAX_MESSAGE_BYTES=65536")})
    );
    alice
        .send(json!({"type": "list_peers", "_reqId": "after"}))
        .await;
    assert_eq!(alice.recv().await["_reqId"], "after");
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn a_frame_over_16_mib_drops_the_connection_without_a_close_frame() {
    let mesh = Mesh::new(&["alice"]);
    let broker = mesh.broker(|_| {}).await;
    let mut alice = join(&broker.url(), &mesh.member("alice")).await;
    alice.send_text("x".repeat((16 << 20) + 1)).await;
    let (texts, close) = alice.until_close().await;
    assert!(texts.is_empty());
    assert_eq!(close, None);
    broker.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Hello
// ---------------------------------------------------------------------------------------------

async fn rejected(url: &str, frame: Value) -> (Value, Option<(u16, String)>) {
    let mut ws = Ws::connect(url).await;
    ws.send(frame).await;
    let (texts, close) = ws.until_close().await;
    assert_eq!(texts.len(), 1, "{texts:?}");
    (texts[0].clone(), close)
}

#[actix_web::test]
async fn every_hello_rejection_is_an_error_frame_then_its_close_code() {
    let mut mesh = Mesh::new(&["alice", "mallory"]);
    let broker = mesh.broker(|_| {}).await;
    let url = broker.url();
    let alice = mesh.member("alice");
    let expect = |code: &str, message: &str, close: (u16, &str)| {
        (
            json!({"type": "error", "code": code, "message": message}),
            Some((close.0, close.1.to_owned())),
        )
    };

    let mut bad_session = hello(&alice, Some(&"AB".repeat(32)), "s1");
    let got = rejected(&url, bad_session.take()).await;
    assert_eq!(got.1, Some((1008, "bad_session_pubkey".into())));
    assert_eq!(got.0["code"], "bad_session_pubkey");

    let mut skewed = hello(&alice, None, "s2");
    let ts = now_ms() - 61_000;
    skewed["timestamp"] = json!(ts);
    skewed["signature"] = json!(alice.keys.sign_hello(&alice.mesh_id, &alice.member_id, ts));
    assert_eq!(
        rejected(&url, skewed).await,
        expect(
            "timestamp_skew",
            "hello rejected: timestamp_skew",
            (1008, "timestamp_skew")
        )
    );

    let mut short_sig = hello(&alice, None, "s3");
    short_sig["signature"] = json!("abcd");
    assert_eq!(
        rejected(&url, short_sig).await,
        expect(
            "malformed",
            "hello rejected: malformed",
            (1008, "malformed")
        )
    );

    let mut forged = hello(&alice, None, "s4");
    forged["signature"] =
        json!(MemberKeys::generate().sign_hello(&alice.mesh_id, &alice.member_id, 1));
    assert_eq!(
        rejected(&url, forged).await,
        expect(
            "bad_signature",
            "hello rejected: bad_signature",
            (1008, "bad_signature")
        )
    );

    let stranger = Member {
        name: "stranger".into(),
        keys: MemberKeys::generate(),
        ..alice.clone()
    };
    let stranger = Member {
        pubkey: stranger.keys.pubkey_hex(),
        ..stranger
    };
    let (error, close) = rejected(&url, hello(&stranger, None, "s5")).await;
    assert_eq!(
        (error["code"].clone(), close),
        (json!("unauthorized"), Some((1008, "unauthorized".into())))
    );
    assert_eq!(keys_of(&error), sorted(&["type", "code", "message"]));

    devbroker::revoke_member(&mesh.state(), "mallory").unwrap();
    let mallory = mesh.member("mallory");
    assert_eq!(
        rejected(&url, hello(&mallory, None, "s6")).await,
        expect(
            "revoked",
            "You've been removed from \"dev-mesh\". Contact the mesh owner to rejoin.",
            (4002, "banned")
        )
    );
    mesh.add(&["late"]);
    join(&url, &mesh.member("late")).await;
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn the_101st_connection_of_a_mesh_is_refused_with_capacity() {
    let mesh = Mesh::new(&["alice"]);
    let broker = mesh.broker(|_| {}).await;
    let alice = mesh.member("alice");
    let mut held = Vec::new();
    for _ in 0..100 {
        held.push(join(&broker.url(), &alice).await);
    }
    let (error, close) = rejected(&broker.url(), hello(&alice, None, "one-too-many")).await;
    assert_eq!(error["code"], "capacity");
    assert_eq!(close, Some((1008, "capacity".into())));
    held.pop().unwrap().close().await;
    join(&broker.url(), &alice).await;
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn frames_before_hello_get_no_hello_and_the_socket_stays_open() {
    let mesh = Mesh::new(&["alice"]);
    let broker = mesh.broker(|_| {}).await;
    let mut ws = Ws::connect(&broker.url()).await;
    ws.send(json!({"type": "list_peers", "_reqId": "early"}))
        .await;
    assert_eq!(
        ws.recv().await,
        json!({"type": "error", "code": "no_hello", "message": "must send hello first"})
    );
    ws.send_text("not json".into()).await;
    ws.expect_silence().await;
    ws.send(hello(&mesh.member("alice"), None, "late-hello"))
        .await;
    assert_eq!(ws.recv().await["type"], "hello_ack");
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn a_frame_pipelined_behind_the_hello_can_get_no_hello() {
    let mesh = Mesh::new(&["alice"]);
    let broker = mesh.broker(|_| {}).await;
    let mut ws = Ws::connect(&broker.url()).await;
    // Both frames in one write, as a client that does not wait for `hello_ack` sends them.
    let hello_text = hello(&mesh.member("alice"), None, "pipelined").to_string();
    ws.io.feed(Message::Text(hello_text.into())).await.unwrap();
    ws.io
        .feed(Message::Text(
            json!({"type": "list_peers"}).to_string().into(),
        ))
        .await
        .unwrap();
    ws.io.flush().await.unwrap();
    let first = ws.recv().await;
    assert_eq!(first["code"], "no_hello", "{first}");
    assert_eq!(ws.recv().await["type"], "hello_ack");
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn a_hello_without_pid_or_cwd_gets_no_answer_and_no_close() {
    let mesh = Mesh::new(&["alice"]);
    let broker = mesh.broker(|_| {}).await;
    let alice = mesh.member("alice");
    let mut ws = Ws::connect(&broker.url()).await;
    let mut no_pid = hello(&alice, None, "np");
    no_pid.as_object_mut().unwrap().remove("pid");
    ws.send(no_pid).await;
    ws.expect_silence().await;
    let mut no_cwd = hello(&alice, None, "nc");
    no_cwd.as_object_mut().unwrap().remove("cwd");
    ws.send(no_cwd).await;
    ws.expect_silence().await;
    ws.send(hello(&alice, None, "ok")).await;
    assert_eq!(ws.recv().await["type"], "hello_ack");
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn hello_ack_has_the_seed_fields_and_restored_ones_after_a_first_disconnect() {
    let mesh = Mesh::new(&["alice"]);
    let broker = mesh.broker(|_| {}).await;
    let alice = mesh.member("alice");
    let (mut first, ack, _) = join_with(&broker.url(), hello(&alice, None, "a1")).await;
    assert_eq!(
        keys_of(&ack),
        sorted(&[
            "type",
            "presenceId",
            "memberDisplayName",
            "memberProfile",
            "meshPolicy"
        ])
    );
    assert_eq!(ack["presenceId"].as_str().unwrap().len(), 32);
    assert_eq!(ack["memberDisplayName"], "alice");
    assert_eq!(
        ack["memberProfile"],
        json!({"roleTag": null, "groups": [], "messageMode": "push"})
    );
    assert_eq!(
        ack["meshPolicy"],
        json!({"selfEditable": {"displayName": true, "roleTag": true, "groups": true, "messageMode": true}})
    );
    first
        .send(json!({"type": "set_summary", "summary": "busy with tests"}))
        .await;
    first.send(json!({"type": "list_peers"})).await;
    first.recv().await;
    first.close().await;
    let (_, again, _) = join_with(&broker.url(), hello(&alice, None, "a2")).await;
    assert_eq!(
        keys_of(&again),
        sorted(&[
            "type",
            "presenceId",
            "memberDisplayName",
            "memberProfile",
            "meshPolicy",
            "restored",
            "lastSummary",
            "lastSeenAt",
            "restoredStats"
        ])
    );
    assert_eq!(again["restored"], true);
    assert_eq!(again["lastSummary"], "busy with tests");
    assert_eq!(
        again["restoredStats"],
        json!({"messagesIn": 0, "messagesOut": 0, "toolCalls": 0, "errors": 0})
    );
    broker.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Events and sessions
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn peer_events_go_to_other_members_only_and_returned_follows_a_first_disconnect() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|_| {}).await;
    let (alice, bob) = (mesh.member("alice"), mesh.member("bob"));
    let mut a1 = join(&broker.url(), &alice).await;
    let mut a2 = join(&broker.url(), &alice).await;
    a1.expect_silence().await;
    let bob_session = MemberKeys::generate().pubkey_hex();
    let (mut b, _, _) = join_with(&broker.url(), hello(&bob, Some(&bob_session), "b1")).await;
    for a in [&mut a1, &mut a2] {
        let joined = a.recv().await;
        assert_eq!(joined["event"], "peer_joined");
        assert_eq!(joined["subtype"], "system");
        assert_eq!(joined["senderPubkey"], "system");
        assert_eq!(joined["priority"], "low");
        assert_eq!(
            joined["eventData"],
            json!({"name": "bob", "pubkey": bob_session, "groups": []})
        );
        assert_eq!(joined["messageId"].as_str().unwrap().len(), 36);
    }
    b.close().await;
    let left = a1.recv().await;
    assert_eq!(left["event"], "peer_left");
    assert_eq!(
        left["eventData"],
        json!({"name": "bob", "pubkey": bob_session})
    );
    a2.recv_kind("push", Some("peer_left")).await;
    let _b = join(&broker.url(), &bob).await;
    let back = a1.recv().await;
    assert_eq!(back["event"], "peer_returned");
    assert_eq!(
        keys_of(&back["eventData"]),
        sorted(&["name", "pubkey", "groups", "lastSeenAt"])
    );
    assert_eq!(back["eventData"]["pubkey"], bob.pubkey);
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn a_duplicate_session_id_closes_the_old_socket_with_session_replaced_and_no_peer_left() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|_| {}).await;
    let mut a = join(&broker.url(), &mesh.member("alice")).await;
    let (mut old, _, _) =
        join_with(&broker.url(), hello(&mesh.member("bob"), None, "daemon-1")).await;
    a.recv_kind("push", Some("peer_joined")).await;
    let (_new, _, _) = join_with(&broker.url(), hello(&mesh.member("bob"), None, "daemon-1")).await;
    let (_, close) = old.until_close().await;
    assert_eq!(close, Some((1000, "session_replaced".into())));
    // The replaced socket was not a disconnect: no peer_state, so `peer_joined` again.
    let event = a.recv().await;
    assert_eq!(event["event"], "peer_joined", "{event}");
    a.expect_silence().await;
    broker.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Send
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn a_dm_is_acked_queued_and_drained_in_the_minimal_envelope() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|_| {}).await;
    let (alice, bob) = (mesh.member("alice"), mesh.member("bob"));
    let alice_session = MemberKeys::generate().pubkey_hex();
    let (mut a, _, _) = join_with(&broker.url(), hello(&alice, Some(&alice_session), "a")).await;
    let bob_session = MemberKeys::generate().pubkey_hex();
    let (mut b, _, _) = join_with(&broker.url(), hello(&bob, Some(&bob_session), "b")).await;
    a.recv_kind("push", Some("peer_joined")).await;
    for (id, target) in [("to-member", &bob.pubkey), ("to-session", &bob_session)] {
        a.send(dm(id, target, "next")).await;
        let ack = a.recv().await;
        assert_eq!(
            keys_of(&ack),
            sorted(&["type", "id", "messageId", "queued"])
        );
        assert_eq!(
            (ack["id"].as_str(), ack["queued"].as_bool()),
            (Some(id), Some(true))
        );
        let push = b.recv().await;
        assert_eq!(keys_of(&push), sorted(DRAINED_PUSH_KEYS));
        assert_eq!(push["messageId"], ack["messageId"]);
        assert_eq!(push["senderPubkey"], alice_session);
        assert_eq!(push["meshId"], mesh.mesh_id);
        assert_eq!(push["ciphertext"], "c2VjcmV0IGJvZHk=");
        assert_eq!(push["priority"], "next");
    }
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn queued_dms_are_drained_before_the_hello_ack_of_the_next_connection() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|_| {}).await;
    let (alice, bob) = (mesh.member("alice"), mesh.member("bob"));
    let mut a = join(&broker.url(), &alice).await;
    let mut b = join(&broker.url(), &bob).await;
    a.recv_kind("push", Some("peer_joined")).await;
    b.send(json!({"type": "set_status", "status": "dnd"})).await;
    b.send(json!({"type": "list_peers"})).await;
    b.recv_kind("peers_list", None).await;
    a.send(dm("held", &bob.pubkey, "low")).await;
    let ack = a.recv().await;
    b.expect_silence().await;
    b.close().await;
    let (_b2, _, before) = join_with(&broker.url(), hello(&bob, None, "b2")).await;
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(before[0]["messageId"], ack["messageId"]);
    assert_eq!(before[0]["senderPubkey"], alice.pubkey);
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn dnd_holds_next_and_low_until_the_next_drain_trigger_while_now_goes_through() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|_| {}).await;
    let (alice, bob) = (mesh.member("alice"), mesh.member("bob"));
    let mut a = join(&broker.url(), &alice).await;
    let mut b = join(&broker.url(), &bob).await;
    a.recv_kind("push", Some("peer_joined")).await;
    b.send(json!({"type": "set_status", "status": "dnd"})).await;
    b.send(json!({"type": "list_peers"})).await;
    b.recv_kind("peers_list", None).await;
    a.send(dm("held", &bob.pubkey, "next")).await;
    let held = a.recv().await;
    b.expect_silence().await;
    a.send(dm("urgent", &bob.pubkey, "now")).await;
    let urgent = a.recv().await;
    assert_eq!(b.recv().await["messageId"], urgent["messageId"]);
    b.send(json!({"type": "set_status", "status": "idle"}))
        .await;
    b.expect_silence().await;
    a.send(dm("trigger", &bob.pubkey, "now")).await;
    let trigger = a.recv().await;
    assert_eq!(b.recv().await["messageId"], held["messageId"]);
    assert_eq!(b.recv().await["messageId"], trigger["messageId"]);
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn broadcasts_and_groups_skip_the_senders_member_and_hidden_peers_and_are_never_stored() {
    let mut mesh = Mesh::new(&["alice", "bob", "carol"]);
    let broker = mesh.broker(|_| {}).await;
    let url = broker.url();
    let (alice, bob, carol) = (
        mesh.member("alice"),
        mesh.member("bob"),
        mesh.member("carol"),
    );
    let mut a1 = join(&url, &alice).await;
    let mut a2 = join(&url, &alice).await;
    let mut bob_hello = hello(&bob, None, "bob-ops");
    bob_hello["groups"] = json!([{"name": "ops", "role": "lead"}]);
    let (mut b, _, _) = join_with(&url, bob_hello).await;
    let mut c = join(&url, &carol).await;
    c.send(json!({"type": "set_visible", "visible": false}))
        .await;
    c.recv_kind("ack", None).await;
    for target in ["*", "@all", "@ops"] {
        a1.send(dm("bc", target, "next")).await;
        let ack = a1.recv_kind("ack", None).await;
        assert_eq!(ack["queued"], true);
        let push = b.recv_kind("push", None).await;
        assert_eq!(keys_of(&push), sorted(LIVE_PUSH_KEYS));
        assert_eq!(push["messageId"], ack["messageId"]);
        assert_eq!(push["senderName"], "alice");
        assert_eq!(push["senderMemberPubkey"], alice.pubkey);
        assert_eq!(push["senderMemberId"], alice.member_id);
    }
    c.send(json!({"type": "set_visible", "visible": true}))
        .await;
    c.recv_kind("ack", None).await;
    a1.send(dm("ops-only", "@ops", "next")).await;
    a1.recv_kind("ack", None).await;
    b.recv_kind("push", None).await;
    for quiet in [&mut a2, &mut c] {
        loop {
            match quiet.next(QUIET).await {
                Some(Event::Text(v)) if v["subtype"] == "system" || v["type"] == "ack" => continue,
                None => break,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    mesh.add(&["dave"]);
    let (_d, _, before) = join_with(&url, hello(&mesh.member("dave"), None, "dave")).await;
    assert!(before.is_empty());
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn a_topic_send_is_acked_but_never_pushed_live() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|_| {}).await;
    let mut a = join(&broker.url(), &mesh.member("alice")).await;
    let mut b = join(&broker.url(), &mesh.member("bob")).await;
    a.recv_kind("push", Some("peer_joined")).await;
    a.send(dm("topic", "#general", "now")).await;
    let ack = a.recv().await;
    assert_eq!(ack["queued"], true);
    assert_eq!(ack["messageId"].as_str().unwrap().len(), 32);
    b.expect_silence().await;
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn the_four_send_error_strings_are_byte_exact() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|_| {}).await;
    let (alice, bob) = (mesh.member("alice"), mesh.member("bob"));
    let mut a = join(&broker.url(), &alice).await;
    let error_of = |ack: Value| ack["error"].as_str().unwrap().to_owned();
    for target in [bob.pubkey.as_str(), "bob", alice.pubkey.as_str()] {
        a.send(dm("off", target, "next")).await;
        let ack = a.recv().await;
        assert_eq!(
            keys_of(&ack),
            sorted(&["type", "id", "messageId", "queued", "error"])
        );
        assert_eq!(error_of(ack),
            "no connected peer for target (not online, or targetSpec is your own key without another session)");
    }
    assert_eq!(errors::NO_PEER_ERROR, "no connected peer for target (not online, or targetSpec is your own key without another session)");
    let mut b = join(&broker.url(), &bob).await;
    let mut grants = serde_json::Map::new();
    grants.insert(alice.pubkey.clone(), json!([]));
    devbroker::set_peer_grants(&mesh.state(), "bob", &grants).unwrap();
    a.send(dm("denied", &bob.pubkey, "next")).await;
    assert_eq!(
        error_of(a.recv_kind("ack", None).await),
        "blocked by recipient grants (sender lacks dm capability)"
    );
    let mut huge = dm("huge", &bob.pubkey, "next");
    huge["ciphertext"] = json!("B".repeat(65_536));
    a.send(huge).await;
    assert_eq!(
        error_of(a.recv_kind("ack", None).await),
        format!(
            "payload too large: {} bytes > MAX_MESSAGE_BYTES=65536",
            65_536 + 32 + 64
        )
    );
    b.expect_silence().await;
    broker.stop().await.unwrap();
}

async fn flood(limited: bool) -> Vec<Value> {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|o| o.rate_limit = limited).await;
    let mut a1 = join(&broker.url(), &mesh.member("alice")).await;
    let mut a2 = join(&broker.url(), &mesh.member("alice")).await;
    // One bucket per member: both connections draw from it.
    for i in 0..6 {
        a1.send(dm(&format!("a1-{i}"), "*", "next")).await;
        a2.send(dm(&format!("a2-{i}"), "*", "next")).await;
    }
    let mut acks = Vec::new();
    for ws in [&mut a1, &mut a2] {
        for _ in 0..6 {
            acks.push(ws.recv_kind("ack", None).await);
        }
    }
    broker.stop().await.unwrap();
    acks
}

#[actix_web::test]
async fn the_rate_limit_is_a_burst_of_ten_per_member_with_the_em_dash_error() {
    let acks = flood(true).await;
    let refused: Vec<&Value> = acks.iter().filter(|a| a["queued"] == false).collect();
    assert_eq!(acks.len() - refused.len(), 10, "{acks:?}");
    for ack in refused {
        assert_eq!(
            ack["error"],
            "rate_limit: max 60 msg/min (burst 10) \u{2014} slow down"
        );
        assert_eq!(ack["messageId"], "");
    }
    assert_eq!(
        errors::RATE_LIMIT_ERROR,
        "rate_limit: max 60 msg/min (burst 10) — slow down"
    );
}

#[actix_web::test]
async fn without_the_rate_limit_every_send_is_accepted() {
    let acks = flood(false).await;
    assert!(acks.iter().all(|a| a["queued"] == true), "{acks:?}");
}

#[actix_web::test]
async fn bad_priority_missing_target_unknown_types_and_client_ack_get_no_answer() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|_| {}).await;
    let bob = mesh.member("bob");
    let mut a = join(&broker.url(), &mesh.member("alice")).await;
    let _b = join(&broker.url(), &bob).await;
    a.recv_kind("push", Some("peer_joined")).await;
    a.send(dm("bad-priority", &bob.pubkey, "urgent")).await;
    let mut no_target = dm("no-target", &bob.pubkey, "next");
    no_target.as_object_mut().unwrap().remove("targetSpec");
    a.send(no_target).await;
    a.send(json!({"type": "state_get", "key": "x", "_reqId": "r"}))
        .await;
    a.send(json!({"type": "client_ack", "clientMessageId": "c", "brokerMessageId": "m"}))
        .await;
    a.send(json!({"type": "set_status", "status": "asleep"}))
        .await;
    a.expect_silence().await;
    broker.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Peers and set_*
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn list_peers_includes_the_caller_and_hides_hidden_peers_of_other_members() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|_| {}).await;
    let (alice, bob) = (mesh.member("alice"), mesh.member("bob"));
    let mut a = join(&broker.url(), &alice).await;
    a.send(json!({"type": "list_peers", "_reqId": "pl-1"}))
        .await;
    let alone = a.recv().await;
    assert_eq!(keys_of(&alone), sorted(&["type", "_reqId", "peers"]));
    let peers = alone["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 1);
    assert_eq!(
        keys_of(&peers[0]),
        sorted(&[
            "pubkey",
            "memberPubkey",
            "displayName",
            "status",
            "summary",
            "groups",
            "sessionId",
            "connectedAt",
            "cwd",
            "hostname",
            "peerType",
            "channel",
            "visible"
        ])
    );
    assert_eq!(peers[0]["pubkey"], alice.pubkey);
    assert_eq!(peers[0]["summary"], Value::Null);
    assert_eq!(peers[0]["status"], "idle");
    let mut b = join(&broker.url(), &bob).await;
    b.send(json!({"type": "set_summary", "summary": "reviewing"}))
        .await;
    b.send(json!({"type": "set_status", "status": "working"}))
        .await;
    b.send(json!({"type": "set_profile", "title": "reviewer", "capabilities": ["review"]}))
        .await;
    b.recv_kind("ack", None).await;
    a.send(json!({"type": "list_peers"})).await;
    let both = a.recv_kind("peers_list", None).await;
    assert!(both.get("_reqId").is_none());
    let listed: Vec<&Value> = both["peers"].as_array().unwrap().iter().collect();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1]["displayName"], "bob");
    assert_eq!(listed[1]["summary"], "reviewing");
    assert_eq!(listed[1]["status"], "working");
    assert_eq!(
        listed[1]["profile"],
        json!({"title": "reviewer", "capabilities": ["review"]})
    );
    b.send(json!({"type": "set_visible", "visible": false}))
        .await;
    b.recv_kind("ack", None).await;
    a.send(json!({"type": "list_peers"})).await;
    let without_bob = a.recv_kind("peers_list", None).await;
    assert_eq!(without_bob["peers"].as_array().unwrap().len(), 1);
    b.send(json!({"type": "list_peers"})).await;
    let own = b.recv_kind("peers_list", None).await;
    assert_eq!(own["peers"].as_array().unwrap().len(), 2);
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn set_visible_and_set_profile_reply_with_an_ack_and_the_others_get_visibility_events() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|_| {}).await;
    let (alice, bob) = (mesh.member("alice"), mesh.member("bob"));
    let mut a1 = join(&broker.url(), &alice).await;
    let mut a2 = join(&broker.url(), &alice).await;
    let mut b = join(&broker.url(), &bob).await;
    a1.recv_kind("push", Some("peer_joined")).await;
    a1.send(json!({"type": "set_status", "status": "dnd"}))
        .await;
    a1.send(json!({"type": "set_summary", "summary": "x"}))
        .await;
    a1.send(json!({"type": "set_visible", "visible": false, "_reqId": "v-1"}))
        .await;
    assert_eq!(
        a1.recv().await,
        json!({"type": "ack", "id": "v-1", "messageId": "", "queued": false, "_reqId": "v-1"})
    );
    for other in [&mut a2, &mut b] {
        let hidden = other.recv_kind("push", Some("peer_hidden")).await;
        assert_eq!(
            hidden["eventData"],
            json!({"name": "alice", "pubkey": alice.pubkey})
        );
    }
    a1.send(json!({"type": "set_visible", "visible": true}))
        .await;
    assert_eq!(
        a1.recv().await,
        json!({"type": "ack", "id": "", "messageId": "", "queued": false})
    );
    b.recv_kind("push", Some("peer_visible")).await;
    a1.send(json!({"type": "set_profile", "avatar": "🦀", "_reqId": "p-1"}))
        .await;
    assert_eq!(
        a1.recv().await,
        json!({"type": "ack", "id": "p-1", "messageId": "", "queued": false, "_reqId": "p-1"})
    );
    a1.expect_silence().await;
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn a_hidden_member_reconnects_hidden() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|_| {}).await;
    let mut b = join(&broker.url(), &mesh.member("bob")).await;
    b.send(json!({"type": "set_visible", "visible": false}))
        .await;
    b.recv_kind("ack", None).await;
    b.close().await;
    let _b = join(&broker.url(), &mesh.member("bob")).await;
    let mut a = join(&broker.url(), &mesh.member("alice")).await;
    a.send(json!({"type": "list_peers"})).await;
    let list = a.recv_kind("peers_list", None).await;
    assert_eq!(list["peers"].as_array().unwrap().len(), 1, "{list}");
    broker.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// --dedupe
// ---------------------------------------------------------------------------------------------

fn keyed(id: &str, target: &str, fingerprint: &str) -> Value {
    let mut frame = dm(id, target, "next");
    frame["client_message_id"] = json!(id);
    frame["request_fingerprint"] = json!(fingerprint);
    frame
}

#[actix_web::test]
async fn dedupe_acks_a_repeat_as_duplicate_without_redelivery_and_refuses_another_fingerprint() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|o| o.dedupe = true).await;
    let bob = mesh.member("bob");
    let mut a = join(&broker.url(), &mesh.member("alice")).await;
    let mut b = join(&broker.url(), &bob).await;
    let fp = "ab".repeat(32);
    a.send(keyed("01JCMID", &bob.pubkey, &fp)).await;
    let first = a.recv_kind("ack", None).await;
    assert_eq!(first["queued"], true);
    assert_eq!(
        b.recv_kind("push", None).await["messageId"],
        first["messageId"]
    );
    a.send(keyed("01JCMID", &bob.pubkey, &fp)).await;
    assert_eq!(
        a.recv_kind("ack", None).await,
        json!({"type": "ack", "id": "01JCMID", "messageId": first["messageId"], "queued": true,
               "duplicate": true})
    );
    a.send(keyed("01JCMID", &bob.pubkey, &"cd".repeat(32)))
        .await;
    assert_eq!(
        a.recv_kind("ack", None).await,
        json!({"type": "ack", "id": "01JCMID", "messageId": "", "queued": false,
               "error": "idempotency_key_reused: request_fingerprint_mismatch"})
    );
    b.expect_silence().await;
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn without_dedupe_a_repeated_client_message_id_is_delivered_again() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|_| {}).await;
    let bob = mesh.member("bob");
    let mut a = join(&broker.url(), &mesh.member("alice")).await;
    let mut b = join(&broker.url(), &bob).await;
    for _ in 0..2 {
        a.send(keyed("01JREPEAT", &bob.pubkey, &"ab".repeat(32)))
            .await;
        let ack = a.recv_kind("ack", None).await;
        assert!(ack.get("duplicate").is_none());
        assert_eq!(
            b.recv_kind("push", None).await["messageId"],
            ack["messageId"]
        );
    }
    broker.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Controls: revoke, kick, pings, stale sockets, half-open, drop, stop and restart
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn revoking_a_connected_member_closes_its_sockets_with_4002_banned() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|_| {}).await;
    let mut a = join(&broker.url(), &mesh.member("alice")).await;
    let mut b = join(&broker.url(), &mesh.member("bob")).await;
    devbroker::revoke_member(&mesh.state(), "bob").unwrap();
    let (_, close) = b.until_close().await;
    assert_eq!(close, Some((4002, "banned".into())));
    a.recv_kind("push", Some("peer_joined")).await;
    a.expect_silence().await;
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn kick_closes_every_socket_of_the_member_with_4001_kicked() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|_| {}).await;
    let bob = mesh.member("bob");
    let mut a = join(&broker.url(), &mesh.member("alice")).await;
    let mut b1 = join(&broker.url(), &bob).await;
    let mut b2 = join(&broker.url(), &bob).await;
    assert_eq!(broker.kick("bob").await.unwrap(), 2);
    for b in [&mut b1, &mut b2] {
        assert_eq!(b.until_close().await.1, Some((4001, "kicked".into())));
    }
    let mut b3 = join(&broker.url(), &bob).await;
    assert_eq!(broker.kick(&bob.pubkey).await.unwrap(), 1);
    assert_eq!(b3.until_close().await.1, Some((4001, "kicked".into())));
    assert_eq!(broker.kick("nobody").await.unwrap(), 0);
    a.send(json!({"type": "list_peers"})).await;
    assert_eq!(
        a.recv_kind("peers_list", None).await["peers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn the_broker_pings_every_interval_and_stale_sockets_are_terminated_without_close() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh
        .broker(|o| {
            o.ping_interval_ms = 50;
            o.stale_after_ms = Some(200);
        })
        .await;
    let mut lively = join(&broker.url(), &mesh.member("alice")).await;
    // The ponging client is read (and so answers pings) concurrently for 600 ms.
    let lively_task = actix_web::rt::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(600);
        let mut pings = 0;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match lively.next(left).await {
                None => return Ok(pings),
                Some(Event::Ping) => pings += 1,
                Some(Event::Text(_)) => continue,
                Some(other) => return Err(other),
            }
        }
    });
    let started = std::time::Instant::now();
    let mut silent = join(&broker.url(), &mesh.member("bob")).await;
    silent.auto_pong = false;
    let mut pings = 0;
    loop {
        match silent.next(WAIT).await {
            Some(Event::Ping) => pings += 1,
            Some(Event::Text(_)) => continue,
            Some(Event::Eof) => break,
            other => panic!("expected pings then a drop without close frame, got {other:?}"),
        }
    }
    assert!(pings >= 1, "{pings} pings");
    assert!(started.elapsed() >= Duration::from_millis(200));
    let lively_pings = lively_task
        .await
        .unwrap()
        .expect("the ponging socket stays open");
    assert!(lively_pings >= 4, "{lively_pings} pings");
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn a_half_open_socket_is_neither_read_nor_written_until_resumed() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|o| o.ping_interval_ms = 50).await;
    let alice = mesh.member("alice");
    let mut a = join(&broker.url(), &alice).await;
    let mut b = join(&broker.url(), &mesh.member("bob")).await;
    a.recv_kind("push", Some("peer_joined")).await;
    assert_eq!(broker.set_half_open(&alice.pubkey, true).await.unwrap(), 1);
    // A ping already on its way may still arrive; after that, nothing.
    while let Some(event) = a.next(Duration::from_millis(200)).await {
        assert_eq!(event, Event::Ping);
    }
    a.send(json!({"type": "list_peers", "_reqId": "while-half-open"}))
        .await;
    b.send(dm("to-alice", &alice.pubkey, "now")).await;
    b.recv_kind("ack", None).await;
    let nothing = a.next(QUIET).await;
    assert_eq!(
        nothing, None,
        "a half-open socket gets nothing, not even pings"
    );
    broker.set_half_open("alice", false).await.unwrap();
    let push = a.recv_kind("push", None).await;
    assert_eq!(push["priority"], "now");
    assert_eq!(
        a.recv_kind("peers_list", None).await["_reqId"],
        "while-half-open"
    );
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn drop_all_drops_every_socket_without_a_close_frame() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|_| {}).await;
    let mut a = join(&broker.url(), &mesh.member("alice")).await;
    let mut b = join(&broker.url(), &mesh.member("bob")).await;
    assert_eq!(broker.drop_all().await.unwrap(), 2);
    for ws in [&mut a, &mut b] {
        assert_eq!(ws.until_close().await.1, None);
    }
    let _again = join(&broker.url(), &mesh.member("alice")).await;
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn stop_closes_sockets_1001_and_a_restart_on_the_same_port_keeps_state() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|_| {}).await;
    let (alice, bob) = (mesh.member("alice"), mesh.member("bob"));
    let addr = broker.addr();
    let mut a = join(&broker.url(), &alice).await;
    let mut b = join(&broker.url(), &bob).await;
    b.send(json!({"type": "set_status", "status": "dnd"})).await;
    b.send(json!({"type": "list_peers"})).await;
    b.recv_kind("peers_list", None).await;
    a.send(dm("survives", &bob.pubkey, "next")).await;
    let ack = a.recv_kind("ack", None).await;
    let stopping = actix_web::rt::spawn(broker.stop());
    for ws in [&mut a, &mut b] {
        assert_eq!(
            ws.until_close().await.1,
            Some((1001, "shutting down".into()))
        );
    }
    stopping.await.unwrap().unwrap();
    let broker = mesh.broker(|o| o.listen = addr).await;
    assert_eq!(broker.port(), addr.port());
    let (_b, hello_ack, before) = join_with(&broker.url(), hello(&bob, None, "b-again")).await;
    assert_eq!(hello_ack["restored"], true);
    assert_eq!(before.len(), 1);
    assert_eq!(before[0]["messageId"], ack["messageId"]);
    broker.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// dev-mesh
// ---------------------------------------------------------------------------------------------

#[test]
fn dev_mesh_create_writes_private_claudemesh_configs_and_extends_the_same_mesh() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (state, out) = (dir.path().join("state"), dir.path().join("out"));
    let url = "ws://127.0.0.1:7901/ws";
    let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let created = devbroker::create_mesh(&state, url, &names(&["alice", "bob"]), &out).unwrap();
    let line = serde_json::to_value(&created).unwrap();
    assert_eq!(keys_of(&line), sorted(&["mesh_id", "members"]));
    assert_eq!(
        keys_of(&line["members"][0]),
        sorted(&["name", "member_id", "pubkey", "config_dir"])
    );
    let id = &created.mesh_id;
    assert!(id.len() == 32 && id.bytes().all(|c| c.is_ascii_alphanumeric()));
    let alice = &created.members[0];
    assert_eq!(
        alice.config_dir,
        std::path::absolute(out.join("alice")).unwrap()
    );
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&alice.config_dir), 0o700);
    let file = alice.config_dir.join("config.json");
    assert_eq!(mode(&file), 0o600);
    let config: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(
        keys_of(&config),
        sorted(&["version", "meshes", "displayName"])
    );
    assert_eq!(
        (config["version"].clone(), config["displayName"].clone()),
        (json!(1), json!("alice"))
    );
    let entry = &config["meshes"][0];
    assert_eq!(
        keys_of(entry),
        sorted(&[
            "meshId",
            "memberId",
            "slug",
            "name",
            "pubkey",
            "secretKey",
            "brokerUrl",
            "joinedAt"
        ])
    );
    assert_eq!(entry["meshId"], created.mesh_id.as_str());
    assert_eq!(entry["brokerUrl"], url);
    assert_eq!(entry["slug"], "dev-mesh");
    let keys = MemberKeys::from_hex(
        entry["pubkey"].as_str().unwrap(),
        entry["secretKey"].as_str().unwrap(),
    );
    assert_eq!(keys.unwrap().pubkey_hex(), alice.pubkey);

    let more = devbroker::create_mesh(&state, url, &names(&["carol"]), &out).unwrap();
    assert_eq!(more.mesh_id, created.mesh_id);
    let taken = devbroker::create_mesh(&state, url, &names(&["dave", "bob"]), &out).unwrap_err();
    assert!(
        taken.to_string().contains("\"bob\" already exists"),
        "{taken}"
    );
    assert!(!out.join("dave").exists());
    for bad in [vec!["../x"], vec!["a", "a"], vec![""]] {
        assert!(devbroker::create_mesh(&state, url, &names(&bad), &out).is_err());
    }
    assert!(devbroker::create_mesh(&state, "http://x/ws", &names(&["eve"]), &out).is_err());
    let revoked = devbroker::revoke_member(&state, "carol").unwrap();
    assert!(revoked.revoked_at.is_some());
    assert!(devbroker::revoke_member(&state, "zed").is_err());
}

// ---------------------------------------------------------------------------------------------
// Fidelity: replay the client side of the recorded real-broker sessions
// ---------------------------------------------------------------------------------------------

/// One line of a recording.
struct Line {
    who: String,
    dir: String,
    frame: Value,
    close: Option<Value>,
}

fn recording(name: &str) -> Vec<Line> {
    let path = format!("{}/tests/fixtures/wire/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            Line {
                who: v["who"].as_str().unwrap().to_owned(),
                dir: v["dir"].as_str().unwrap().to_owned(),
                frame: v["frame"].clone(),
                close: v.get("close").cloned(),
            }
        })
        .collect()
}

/// The JSON types of a value, recursively: what must not differ from a recording.
fn shape(v: &Value) -> Value {
    match v {
        Value::Null => json!("null"),
        Value::Bool(_) => json!("bool"),
        Value::Number(_) => json!("number"),
        Value::String(_) => json!("string"),
        Value::Array(items) => Value::Array(items.iter().map(shape).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect())
        }
    }
}

/// Fields whose values are replayed or fixed by the protocol, so they must be equal too.
const LITERAL_FIELDS: &[&str] = &[
    "type",
    "subtype",
    "event",
    "queued",
    "error",
    "code",
    "message",
    "id",
    "priority",
    "_reqId",
    "memberDisplayName",
    "restored",
];

fn same_frame(want: &Value, got: &Value) -> bool {
    shape(want) == shape(got)
        && LITERAL_FIELDS.iter().all(|k| want.get(*k) == got.get(*k))
        && (want["senderPubkey"] != "system" || got["senderPubkey"] == "system")
        && want["eventData"]["name"] == got["eventData"]["name"]
}

/// A coverage label for a broker frame.
fn kind_of(v: &Value) -> String {
    let t = v["type"].as_str().unwrap_or_default();
    match t {
        "push" if v["subtype"] == "system" => format!("push:{}", v["event"].as_str().unwrap()),
        "push" if v.get("senderName").is_some() => "push:live".into(),
        "push" => "push:drained".into(),
        "ack" if v.get("error").is_some() => "ack:error".into(),
        "error" => format!("error:{}", v["code"].as_str().unwrap()),
        other => other.into(),
    }
}

/// One replayed client connection and the frames it received that were not yet expected.
struct Replayed {
    ws: Ws,
    pending: Vec<Value>,
}

impl Replayed {
    async fn expect(&mut self, want: &Value) {
        if let Some(i) = self.pending.iter().position(|got| same_frame(want, got)) {
            self.pending.remove(i);
            return;
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.ws.next(left).await {
                Some(Event::Text(got)) if same_frame(want, &got) => return,
                Some(Event::Text(got)) => self.pending.push(got),
                Some(Event::Ping) => continue,
                other => panic!(
                    "waiting for {want}\n got {other:?}\n unmatched so far: {:?}",
                    self.pending
                ),
            }
        }
    }
}

/// Replays one recording against a fresh dev mesh whose members `peer-a`/`peer-b` stand for the
/// recorded ones; returns the coverage labels of every matched reply.
async fn replay(file: &str) -> std::collections::BTreeSet<String> {
    use std::collections::{BTreeSet, HashMap};
    let lines = recording(file);
    let mesh = Mesh::new(&["peer-a", "peer-b"]);
    let broker = mesh.broker(|_| {}).await;
    let url = broker.url();
    let members: HashMap<&str, Member> = [
        ("peer-a", mesh.member("peer-a")),
        ("peer-b", mesh.member("peer-b")),
    ]
    .into();
    // Recorded keys → new keys (member pubkeys from the hellos, session pubkeys minted).
    let mut keys: HashMap<String, String> = HashMap::new();
    for line in lines
        .iter()
        .filter(|l| l.dir == "send" && l.frame["type"] == "hello")
    {
        let recorded = line.frame["pubkey"].as_str().unwrap().to_owned();
        keys.insert(recorded, members[line.who.as_str()].pubkey.clone());
    }
    // Pushes no recorded client sent came from the TS daemon of peer-a (not recorded): a
    // stand-in connection of peer-a's member sends them.
    let acked: BTreeSet<&str> = lines
        .iter()
        .filter(|l| l.dir == "recv" && l.frame["type"] == "ack")
        .filter_map(|l| l.frame["messageId"].as_str())
        .collect();
    let from_daemon = |l: &Line| {
        l.dir == "recv"
            && l.frame["type"] == "push"
            && l.frame["subtype"] != "system"
            && !acked.contains(l.frame["messageId"].as_str().unwrap())
    };
    for line in lines.iter().filter(|l| from_daemon(l)) {
        let recorded = line.frame["senderMemberPubkey"]
            .as_str()
            .unwrap()
            .to_owned();
        keys.insert(recorded, members["peer-a"].pubkey.clone());
    }
    // Members have disconnected before in every recording (hence `restored`): prime them.
    for name in ["peer-b", "peer-a"] {
        let mut ws = join(&url, &members[name]).await;
        ws.close().await;
    }
    let mut open: HashMap<String, Replayed> = HashMap::new();
    let mut daemon: Option<Ws> = None;
    let mut covered = BTreeSet::new();
    let mut barrier = 0;
    let mut i = 0;
    while i < lines.len() {
        let line = &lines[i];
        let who = line.who.as_str();
        match line.dir.as_str() {
            "send" if line.frame["type"] == "hello" => {
                if open.is_empty() && daemon.is_none() {
                    let end = lines[i..]
                        .iter()
                        .position(|l| l.dir == "close" && l.who != "raw")
                        .map_or(lines.len(), |p| i + p);
                    if lines[i..end].iter().any(from_daemon) {
                        let session = MemberKeys::generate().pubkey_hex();
                        let h = hello(&members["peer-a"], Some(&session), "daemon-a");
                        daemon = Some(join_with(&url, h).await.0);
                    }
                }
                let m = &members[who];
                let mut h = line.frame.clone();
                let ts = now_ms();
                h["meshId"] = json!(m.mesh_id);
                h["memberId"] = json!(m.member_id);
                h["pubkey"] = json!(m.pubkey);
                h["timestamp"] = json!(ts);
                h["signature"] = json!(m.keys.sign_hello(&m.mesh_id, &m.member_id, ts));
                if let Some(recorded) = line.frame["sessionPubkey"].as_str() {
                    let new = keys
                        .entry(recorded.to_owned())
                        .or_insert_with(|| MemberKeys::generate().pubkey_hex());
                    h["sessionPubkey"] = json!(new);
                }
                let mut ws = Ws::connect(&url).await;
                ws.send(h).await;
                open.insert(
                    who.to_owned(),
                    Replayed {
                        ws,
                        pending: Vec::new(),
                    },
                );
            }
            "send" => {
                let mut frame = line.frame.clone();
                if let Some(target) = frame["targetSpec"].as_str().and_then(|t| keys.get(t)) {
                    frame["targetSpec"] = json!(target);
                }
                let conn = open.get_mut(who).unwrap();
                conn.ws.send(frame).await;
                if line.frame["type"] == "set_status" {
                    // No reply: make sure the broker has applied it before anything else.
                    barrier += 1;
                    let id = format!("barrier-{barrier}");
                    conn.ws
                        .send(json!({"type": "list_peers", "_reqId": id}))
                        .await;
                    loop {
                        let got = conn.ws.recv().await;
                        if got["_reqId"] == id.as_str() {
                            break;
                        }
                        conn.pending.push(got);
                    }
                }
            }
            "recv" if who == "raw" => {
                let mut raw = Ws::connect(&url).await;
                if line.frame["code"] == "no_hello" {
                    raw.send(json!({"type": "list_peers"})).await;
                } else {
                    let mut forged = hello(&members["peer-a"], None, "raw");
                    forged["signature"] = json!(MemberKeys::generate().sign_hex(b"other"));
                    raw.send(forged).await;
                }
                let got = raw.recv().await;
                assert!(same_frame(&line.frame, &got), "{} vs {got}", line.frame);
                if let Some(close) = &line.close {
                    let want = (
                        close["c"].as_u64().unwrap() as u16,
                        close["why"].as_str().unwrap().to_owned(),
                    );
                    assert_eq!(raw.until_close().await, (vec![], Some(want)));
                }
                covered.insert(kind_of(&got));
            }
            "recv" => {
                if from_daemon(line) {
                    let d = daemon.as_mut().expect("daemon stand-in connected");
                    let f = &line.frame;
                    d.send(json!({"type": "send", "id": "daemon", "targetSpec": "*",
                                  "priority": f["priority"], "nonce": f["nonce"],
                                  "ciphertext": f["ciphertext"]}))
                        .await;
                    d.recv_kind("ack", None).await;
                }
                open.get_mut(who).unwrap().expect(&line.frame).await;
                covered.insert(kind_of(&line.frame));
            }
            "close" => {
                // Recorded closes that follow each other were simultaneous: a `peer_left` for
                // one may or may not reach the other before its own close.
                let group: Vec<&Line> =
                    lines[i..].iter().take_while(|l| l.dir == "close").collect();
                let mut closing = Vec::new();
                for l in &group {
                    let mut conn = open.remove(l.who.as_str()).unwrap();
                    let _ = conn.ws.io.send(Message::Close(None)).await;
                    closing.push((l.who.clone(), conn));
                }
                for (name, mut conn) in closing {
                    let (texts, _) = conn.ws.until_close().await;
                    conn.pending.extend(texts);
                    conn.pending
                        .retain(|f| group.len() == 1 || f["event"] != "peer_left");
                    assert!(
                        conn.pending.is_empty(),
                        "{name}: unexpected {:?}",
                        conn.pending
                    );
                }
                i += group.len() - 1;
                if open.is_empty() {
                    if let Some(mut d) = daemon.take() {
                        d.close().await;
                    }
                }
            }
            other => panic!("unknown dir {other}"),
        }
        i += 1;
    }
    assert!(open.is_empty());
    broker.stop().await.unwrap();
    covered
}

#[actix_web::test]
async fn replaying_the_recorded_seed_sessions_gets_the_same_frame_types_and_key_sets() {
    let mut covered = std::collections::BTreeSet::new();
    let mut recorded = std::collections::BTreeSet::new();
    for file in [
        "seed-broker.jsonl",
        "seed-broker-extra.jsonl",
        "seed-broker-ts-daemon.jsonl",
    ] {
        recorded.extend(
            recording(file)
                .iter()
                .filter(|l| l.dir == "recv")
                .map(|l| kind_of(&l.frame)),
        );
        covered.extend(replay(file).await);
    }
    assert_eq!(covered, recorded);
    for kind in [
        "hello_ack",
        "ack",
        "ack:error",
        "peers_list",
        "push:peer_returned",
        "push:peer_left",
        "push:live",
        "push:drained",
        "error:no_hello",
        "error:bad_signature",
    ] {
        assert!(covered.contains(kind), "{kind} not covered: {covered:?}");
    }
}

#[actix_web::test]
async fn a_malformed_send_spends_a_rate_limit_token_like_on_the_real_broker() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.broker(|_| {}).await;
    let bob = mesh.member("bob");
    let mut a = join(&broker.url(), &mesh.member("alice")).await;
    let _b = join(&broker.url(), &bob).await;
    for i in 0..10 {
        a.send(dm(&format!("bad-{i}"), &bob.pubkey, "urgent")).await;
    }
    a.send(dm("good", &bob.pubkey, "now")).await;
    a.send(dm("bad-11", &bob.pubkey, "urgent")).await;
    for id in ["good", "bad-11"] {
        let ack = a.recv_kind("ack", None).await;
        assert_eq!(ack["id"], id);
        assert_eq!(ack["error"], errors::RATE_LIMIT_ERROR);
    }
    broker.stop().await.unwrap();
}

#[tokio::test]
async fn the_broker_starts_serves_and_stops_inside_a_plain_tokio_runtime() {
    let mesh = Mesh::new(&["alice"]);
    let broker = mesh.broker(|_| {}).await;
    let ok = raw_upgrade(broker.port(), "/ws").await;
    assert!(ok.starts_with(b"HTTP/1.1 101"));
    broker.stop().await.unwrap();
}
