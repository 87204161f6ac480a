//! The path rule (only `GET /ws` upgrades) and the frame size limits.

use serde_json::json;

use crate::support::{dm, join, Mesh, Ws, WAIT};

/// Sends a WebSocket upgrade request for `target` on a raw TCP connection and returns every
/// byte the server sends before closing (or up to the end of the response head).
pub(crate) async fn raw_upgrade(port: u16, target: &str) -> Vec<u8> {
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
