//! Sessions (SPEC §12) against a real daemon: every route and status code over the socket and
//! TCP, no token or secret in any answer or log line (`routes`), scoping of the inbox, events,
//! peers and sends by the session header and read state (`scoping`), the reaper on a killed
//! process, rehydration across a SIGHUP and a restart, a pid whose start time changed while
//! the daemon was down, and the CLI (`lifecycle`). Shared helpers here.

mod lifecycle;
mod presence;
mod routes;
mod scoping;

use std::net::TcpStream;
use std::process::{Child, Command};

use claudemesh_actors::crypto::MemberKeys;
use claudemesh_actors::inbox::store::RecipientKind;
use claudemesh_actors::inbox::store::{self as inbox_store, InboundMessage, MessageKind};
use serde_json::{json, Value};

pub use crate::harness::*;

/// A process standing in for an agent session (killed on drop).
pub struct SessionProcess(Child);

impl SessionProcess {
    pub fn spawn() -> SessionProcess {
        SessionProcess(
            Command::new("sleep")
                .arg("600")
                .spawn()
                .expect("spawn sleep"),
        )
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for SessionProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A fresh random 64-hex token.
pub fn new_token() -> String {
    MemberKeys::generate().pubkey_hex()
}

pub fn session_header(token: &str) -> String {
    format!("ClaudeMesh-Session {token}")
}

/// A registration body; with `keys`, presence material vouched for by `member`.
pub fn registration(
    token: &str,
    id: &str,
    mesh: &str,
    pid: u32,
    presence: Option<(&MemberKeys, &str)>,
) -> Value {
    let mut v = json!({"token": token, "session_id": id, "mesh": mesh,
                       "display_name": format!("agent-{id}"), "pid": pid, "cwd": "/work",
                       "role": "reviewer", "groups": ["@dev"]});
    if let Some((keys, member)) = presence {
        v["presence"] = json!({
            "session_pubkey": keys.pubkey_hex(),
            "session_secret_key": keys.secret_hex(),
            "parent_attestation": {
                "session_pubkey": keys.pubkey_hex(),
                "parent_member_pubkey": member,
                "expires_at": 4_000_000_000_000i64,
                "signature": "5a".repeat(64),
            }
        });
    }
    v
}

/// One request over the socket with `Authorization` lines `auth`.
pub fn sock(d: &Daemon, method: &str, path: &str, auth: &[&str], body: &str) -> RawResponse {
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", *a)).collect();
    d.request_with_headers(method, path, &headers, body)
}

/// One request over TCP with `Authorization` lines `auth`.
pub fn tcp(d: &Daemon, method: &str, path: &str, auth: &[&str], body: &str) -> RawResponse {
    let mut stream = TcpStream::connect(("127.0.0.1", d.tcp_port())).expect("connect tcp");
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", *a)).collect();
    raw_request(&mut stream, method, path, &headers, body)
}

pub fn json_of(r: &RawResponse) -> Value {
    // The body may be chunked; the JSON document is the one line that parses.
    serde_json::from_str(r.body.trim())
        .ok()
        .or_else(|| {
            r.body
                .lines()
                .find_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        })
        .unwrap_or(Value::Null)
}

/// The slug of the member's first mesh.
pub fn first_slug(w: &World, name: &str) -> String {
    let cfg: Value = serde_json::from_slice(
        &std::fs::read(w.config_dir(name).join("config.json")).expect("config"),
    )
    .expect("json");
    cfg["meshes"][0]["slug"].as_str().expect("slug").to_string()
}

/// Joins `name` to a second mesh on a second broker under the slug `second`.
pub fn join_second_mesh(w: &World, name: &str) -> (tempfile::TempDir, Broker) {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(&dir.path().join("broker"), 0, &["--no-rate-limit"]);
    create_mesh(&broker.state, &broker.url, "carol", &dir.path().join("out"));
    let path = w.config_dir(name).join("config.json");
    let mut cfg: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    let carol: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("out/carol/config.json")).expect("read"),
    )
    .expect("json");
    let mut second = carol["meshes"][0].clone();
    second["slug"] = json!("second");
    cfg["meshes"].as_array_mut().expect("meshes").push(second);
    std::fs::write(&path, cfg.to_string()).expect("write");
    (dir, broker)
}

/// Stores one message in the daemon's inbox.db (as a push would), addressed as given.
pub fn put_message(
    conn: &mut rusqlite::Connection,
    mesh: &str,
    body: &str,
    recipient: (RecipientKind, &str),
) {
    let m = InboundMessage {
        client_message_id: None,
        broker_message_id: format!("bm-{body}"),
        mesh: mesh.into(),
        topic: None,
        sender_pubkey: "b".repeat(64),
        sender_name: Some("bob".into()),
        body: Some(body.into()),
        kind: MessageKind::Dm,
        received_at: claudemesh_actors::time::now_ms(),
        reply_to_id: None,
        priority: Some("next".into()),
        recipient_pubkey: Some(recipient.1.into()),
        recipient_kind: recipient.0,
        sender_member_pubkey: Some("b".repeat(64)),
    };
    inbox_store::insert_message(conn, &m, 10_000).expect("insert");
}

pub fn inbox_bodies(r: &RawResponse) -> Vec<String> {
    let mut v: Vec<String> = json_of(r)["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["body"].as_str().map(str::to_string))
        .collect();
    v.sort();
    v
}
