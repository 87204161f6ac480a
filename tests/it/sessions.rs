//! Sessions (SPEC §12) against a real daemon: every route and status code over the socket and
//! TCP, no token or secret in any answer or log line, scoping of the inbox, events and peers
//! by the session header, read state, the reaper on a killed process, rehydration across a
//! restart and a pid whose start time changed while the daemon was down.

use std::net::TcpStream;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use claudemesh_actors::crypto::MemberKeys;
use claudemesh_actors::inbox::store::RecipientKind;
use claudemesh_actors::inbox::store::{self as inbox_store, InboundMessage, MessageKind};
use claudemeshd::client::{self, Endpoint};
use serde_json::{json, Value};

use crate::harness::*;

/// A process standing in for an agent session (killed on drop).
struct SessionProcess(Child);

impl SessionProcess {
    fn spawn() -> SessionProcess {
        SessionProcess(
            Command::new("sleep")
                .arg("600")
                .spawn()
                .expect("spawn sleep"),
        )
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn kill(&mut self) {
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
fn new_token() -> String {
    MemberKeys::generate().pubkey_hex()
}

fn session_header(token: &str) -> String {
    format!("ClaudeMesh-Session {token}")
}

/// A registration body; with `keys`, presence material vouched for by `member`.
fn registration(
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
fn sock(d: &Daemon, method: &str, path: &str, auth: &[&str], body: &str) -> RawResponse {
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", *a)).collect();
    d.request_with_headers(method, path, &headers, body)
}

/// One request over TCP with `Authorization` lines `auth`.
fn tcp(d: &Daemon, method: &str, path: &str, auth: &[&str], body: &str) -> RawResponse {
    let mut stream = TcpStream::connect(("127.0.0.1", d.tcp_port())).expect("connect tcp");
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", *a)).collect();
    raw_request(&mut stream, method, path, &headers, body)
}

fn json_of(r: &RawResponse) -> Value {
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
fn first_slug(w: &World, name: &str) -> String {
    let cfg: Value = serde_json::from_slice(
        &std::fs::read(w.config_dir(name).join("config.json")).expect("config"),
    )
    .expect("json");
    cfg["meshes"][0]["slug"].as_str().expect("slug").to_string()
}

/// Joins `name` to a second mesh on a second broker under the slug `second`.
fn join_second_mesh(w: &World, name: &str) -> (tempfile::TempDir, Broker) {
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

#[test]
fn session_routes_answer_every_status_over_socket_and_tcp_and_never_leak_a_secret() {
    let w = World::new("alice,bob", &["--no-rate-limit"]);
    // Debug logging: not even there may a token or a secret appear.
    let alice = Daemon::start(&w.config_dir("alice"), &[("RUST_LOG", "debug")]);
    let mesh = first_slug(&w, "alice");
    let member = w.pubkey("alice");
    let proc_a = SessionProcess::spawn();
    let (ka, kb, kc) = (
        MemberKeys::generate(),
        MemberKeys::generate(),
        MemberKeys::generate(),
    );
    let (ta, tb, tc) = (new_token(), new_token(), new_token());
    let mut seen = String::new();
    let mut keep = |r: RawResponse| {
        seen.push_str(&r.headers);
        seen.push_str(&r.body);
        r
    };

    // Register over the socket: presence accepted; a malformed presence costs only presence.
    let r = keep(sock(
        &alice,
        "POST",
        "/v1/sessions/register",
        &[],
        &registration(&ta, "sa", &mesh, proc_a.pid(), Some((&ka, &member))).to_string(),
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    let v = json_of(&r);
    assert_eq!(v["ok"], true);
    assert_eq!(v["presence_accepted"], true);
    assert!(v["registered_at"].is_string());
    let mut bad = registration(&tb, "sb", &mesh, proc_a.pid(), Some((&kb, &member)));
    bad["presence"]["session_secret_key"] = kc.secret_hex().into();
    let r = keep(sock(
        &alice,
        "POST",
        "/v1/sessions/register",
        &[],
        &bad.to_string(),
    ));
    assert_eq!(
        (r.status, json_of(&r)["presence_accepted"].clone()),
        (200, json!(false))
    );
    // 400: missing or malformed required fields; 404: a mesh this daemon is not attached to.
    for broken in [
        json!({"token": tc, "session_id": "x", "mesh": mesh, "display_name": "x"}),
        json!({"token": "abc", "session_id": "x", "mesh": mesh, "display_name": "x", "pid": 1}),
        json!({"token": tc, "mesh": mesh, "display_name": "x", "pid": 1}),
    ] {
        let r = keep(sock(
            &alice,
            "POST",
            "/v1/sessions/register",
            &[],
            &broken.to_string(),
        ));
        assert_eq!(
            (r.status, json_of(&r)["error"].clone()),
            (400, json!("invalid_request"))
        );
    }
    let r = keep(sock(
        &alice,
        "POST",
        "/v1/sessions/register",
        &[],
        &registration(&tc, "sc", "no-such-mesh", proc_a.pid(), None).to_string(),
    ));
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(json_of(&r)["error"], "mesh_not_attached");

    // /me: 200 with the session's header, 401 without one or with an unknown token.
    let r = keep(sock(
        &alice,
        "GET",
        "/v1/sessions/me",
        &[&session_header(&ta)],
        "",
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    let s = json_of(&r)["session"].clone();
    assert_eq!(s["session_id"], "sa");
    assert_eq!(s["mesh"], mesh.as_str());
    assert_eq!(s["display_name"], "agent-sa");
    assert_eq!(s["pid"], proc_a.pid());
    assert_eq!(s["cwd"], "/work");
    assert_eq!(s["role"], "reviewer");
    assert_eq!(s["groups"], json!(["@dev"]));
    assert_eq!(s["token_prefix"], &ta[..8]);
    assert_eq!(s["session_pubkey"], ka.pubkey_hex());
    assert_eq!(s["presence_status"], "pending");
    assert!(s["registered_at"].is_string());
    for auth in [vec![], vec![session_header(&new_token())]] {
        let auth: Vec<&str> = auth.iter().map(String::as_str).collect();
        let r = keep(sock(&alice, "GET", "/v1/sessions/me", &auth, ""));
        assert_eq!(
            (r.status, json_of(&r)["error"].clone()),
            (401, json!("no_session"))
        );
    }
    let r = keep(sock(&alice, "GET", "/v1/sessions", &[], ""));
    assert_eq!(r.status, 200);
    let list = json_of(&r)["sessions"].clone();
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
    assert_eq!(list[1]["presence_status"], "none");
    assert_eq!(list[1]["session_pubkey"], Value::Null);

    // TCP: the bearer is required; the session header travels beside it (two lines, or one
    // folded line), in either order.
    let bearer = format!("Bearer {}", alice.token());
    let sh = session_header(&ta);
    for auth in [
        vec![bearer.clone(), sh.clone()],
        vec![sh.clone(), bearer.clone()],
        vec![format!("{bearer}, {sh}")],
    ] {
        let auth: Vec<&str> = auth.iter().map(String::as_str).collect();
        let r = keep(tcp(&alice, "GET", "/v1/sessions/me", &auth, ""));
        assert_eq!(r.status, 200, "{auth:?}: {}", r.body);
        assert_eq!(json_of(&r)["session"]["session_id"], "sa");
    }
    let r = keep(tcp(&alice, "GET", "/v1/sessions/me", &[&sh], ""));
    assert_eq!(
        (r.status, json_of(&r)["error"].clone()),
        (401, json!("unauthorized"))
    );
    let r = keep(tcp(&alice, "GET", "/v1/sessions/me", &[&bearer], ""));
    assert_eq!(
        (r.status, json_of(&r)["error"].clone()),
        (401, json!("no_session"))
    );
    let r = keep(tcp(&alice, "GET", "/v1/sessions", &[], ""));
    assert_eq!(r.status, 401);
    let r = keep(tcp(
        &alice,
        "POST",
        "/v1/sessions/register",
        &[&bearer],
        &registration(&tc, "sc", &mesh, proc_a.pid(), Some((&kc, &member))).to_string(),
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    let r = keep(tcp(
        &alice,
        "POST",
        "/v1/sessions/register",
        &[&bearer],
        &registration(&tc, "sc", "nope", proc_a.pid(), None).to_string(),
    ));
    assert_eq!(r.status, 404);
    let r = keep(tcp(
        &alice,
        "POST",
        "/v1/sessions/register",
        &[&bearer],
        "{}",
    ));
    assert_eq!(r.status, 400);
    let r = keep(tcp(&alice, "GET", "/v1/sessions", &[&bearer], ""));
    assert_eq!(json_of(&r)["sessions"].as_array().map(Vec::len), Some(3));
    let path_c = format!("/v1/sessions/{tc}");
    let r = keep(tcp(&alice, "DELETE", &path_c, &[&bearer], ""));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(json_of(&r), json!({"ok": true, "token_prefix": &tc[..8]}));
    let r = keep(tcp(&alice, "DELETE", &path_c, &[&bearer], ""));
    assert_eq!(
        (r.status, json_of(&r)["error"].clone()),
        (404, json!("not_found"))
    );
    let r = keep(tcp(&alice, "DELETE", &path_c, &[], ""));
    assert_eq!(r.status, 401);

    // DELETE over the socket: 200, then 404; a malformed token is 400; wrong methods 405.
    let r = keep(sock(
        &alice,
        "DELETE",
        &format!("/v1/sessions/{tb}"),
        &[],
        "",
    ));
    assert_eq!(
        (r.status, json_of(&r)["token_prefix"].clone()),
        (200, json!(&tb[..8]))
    );
    let r = keep(sock(
        &alice,
        "DELETE",
        &format!("/v1/sessions/{tb}"),
        &[],
        "",
    ));
    assert_eq!(r.status, 404);
    let r = keep(sock(&alice, "DELETE", "/v1/sessions/xyz", &[], ""));
    assert_eq!(r.status, 400);
    for (m, p) in [
        ("GET", "/v1/sessions/register"),
        ("POST", "/v1/sessions"),
        ("DELETE", "/v1/sessions/me"),
    ] {
        let r = keep(sock(&alice, m, p, &[], ""));
        assert_eq!(r.status, 405, "{m} {p}");
    }
    let r = keep(sock(&alice, "GET", "/v1/version", &[], ""));
    assert!(json_of(&r)["ipc_features"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "sessions")));
    let r = keep(sock(&alice, "GET", "/v1/metrics", &[], ""));
    assert_eq!(r.status, 200);
    // The remaining session still answers; an ended one is unknown again.
    let r = keep(sock(
        &alice,
        "GET",
        "/v1/sessions/me",
        &[&session_header(&tb)],
        "",
    ));
    assert_eq!(r.status, 401);

    // No token and no secret in any answer, nor in the (debug) log.
    let log = alice.log();
    assert!(log.contains("session sa"), "registrations are logged");
    for secret in [
        ta.clone(),
        tb.clone(),
        tc.clone(),
        ka.secret_hex(),
        kb.secret_hex(),
        kc.secret_hex(),
        hex::encode(ka.seed()),
        hex::encode(kc.seed()),
        alice.token(),
    ] {
        assert!(!seen.contains(&secret), "a response carries a secret");
        assert!(!log.contains(&secret), "the log carries a secret");
        assert!(!log.contains(&secret.to_uppercase()));
    }
}

/// Stores one message in the daemon's inbox.db (as a push would), addressed as given.
fn put_message(
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

fn inbox_bodies(r: &RawResponse) -> Vec<String> {
    let mut v: Vec<String> = json_of(r)["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["body"].as_str().map(str::to_string))
        .collect();
    v.sort();
    v
}

#[test]
fn a_session_sees_only_its_own_and_member_messages_live_and_replayed() {
    let w = World::new("alice,bob", &["--no-rate-limit"]);
    let (_second_dir, _second_broker) = join_second_mesh(&w, "alice");
    let alice = Daemon::start(&w.config_dir("alice"), &[]);
    let bob = Daemon::start(&w.config_dir("bob"), &[]);
    let mesh = first_slug(&w, "alice");
    let member = w.pubkey("alice");
    let p = SessionProcess::spawn();
    let (ka, kb) = (MemberKeys::generate(), MemberKeys::generate());
    let (ta, tb, tc) = (new_token(), new_token(), new_token());
    for body in [
        registration(&ta, "sa", &mesh, p.pid(), Some((&ka, &member))),
        registration(&tb, "sb", &mesh, p.pid(), Some((&kb, &member))),
        registration(&tc, "sc", "second", p.pid(), None),
    ] {
        let r = sock(
            &alice,
            "POST",
            "/v1/sessions/register",
            &[],
            &body.to_string(),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
    {
        // DMs to each session can only arrive over issue 12's session connections; until then
        // they are stored as a push would store them.
        let mut conn =
            inbox_store::open(&alice.daemon_dir.join("inbox.db"), false).expect("open inbox");
        put_message(
            &mut conn,
            &mesh,
            "to-a",
            (RecipientKind::Session, &ka.pubkey_hex()),
        );
        put_message(
            &mut conn,
            &mesh,
            "to-b",
            (RecipientKind::Session, &kb.pubkey_hex()),
        );
        put_message(
            &mut conn,
            &mesh,
            "to-member",
            (RecipientKind::Member, &member),
        );
        put_message(
            &mut conn,
            "second",
            "second-member",
            (RecipientKind::Member, "c"),
        );
    }
    let (ha, hb, hc) = (
        session_header(&ta),
        session_header(&tb),
        session_header(&tc),
    );
    let r = sock(&alice, "GET", "/v1/inbox", &[&ha], "");
    assert_eq!(inbox_bodies(&r), ["to-a", "to-member"]);
    let r = sock(&alice, "GET", "/v1/inbox", &[&hb], "");
    assert_eq!(inbox_bodies(&r), ["to-b", "to-member"]);
    let r = sock(&alice, "GET", "/v1/inbox", &[&hc], "");
    assert_eq!(inbox_bodies(&r), ["second-member"]);
    let r = sock(&alice, "GET", &format!("/v1/inbox?mesh={mesh}"), &[&hc], "");
    assert_eq!(
        inbox_bodies(&r),
        Vec::<String>::new(),
        "a session never sees another mesh"
    );
    let r = sock(&alice, "GET", "/v1/inbox", &[], "");
    assert_eq!(inbox_bodies(&r).len(), 4, "the operator sees everything");
    let items = json_of(&r)["items"].clone();
    let to_a = items
        .as_array()
        .and_then(|i| i.iter().find(|x| x["body"] == "to-a"))
        .cloned()
        .expect("to-a");
    assert_eq!(to_a["recipient_kind"], "session");
    assert_eq!(to_a["recipient_pubkey"], ka.pubkey_hex());
    // Over TCP the same view, with the bearer beside the session header.
    let bearer = format!("Bearer {}", alice.token());
    let r = tcp(&alice, "GET", "/v1/inbox", &[&bearer, &hb], "");
    assert_eq!(inbox_bodies(&r), ["to-b", "to-member"]);
    // B can neither mark nor delete A's message.
    let id_a = to_a["id"].as_i64().expect("id");
    let r = sock(
        &alice,
        "POST",
        "/v1/inbox/seen",
        &[&hb],
        &json!({"ids": [id_a]}).to_string(),
    );
    assert_eq!(json_of(&r), json!({"marked_seen": 0}));
    let r = sock(&alice, "DELETE", &format!("/v1/inbox/{id_a}"), &[&hb], "");
    assert_eq!(r.status, 404);

    // Events: A's stream replays its own and the member's messages, then goes on live.
    let sock_path = alice.socket();
    let endpoint = Endpoint::Socket(&sock_path);
    let mut stream = client::open_stream(
        &endpoint,
        "/v1/events?last_event_id=0",
        &[("Authorization", ha.as_str())],
        Duration::from_secs(20),
    )
    .expect("events");
    assert_eq!(stream.status, 200);
    // Live: B leaves (a system event of A's mesh), then bob DMs the member.
    let r = sock(&alice, "DELETE", &format!("/v1/sessions/{tb}"), &[], "");
    assert_eq!(r.status, 200);
    let r = bob.post("/v1/send", &json!({"to": member, "message": "live-dm"}));
    assert_eq!(r.status, 202, "{}", r.body);
    let mut bodies = Vec::new();
    let mut left = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) && !bodies.iter().any(|b| b == "live-dm") {
        let Ok(Some(ev)) = client::next_event(&mut *stream.body) else {
            break;
        };
        let data: Value = serde_json::from_str(&ev.data).unwrap_or(Value::Null);
        assert_eq!(data["mesh"], mesh.as_str(), "{}", ev.data);
        match ev.event.as_str() {
            "message" => bodies.push(data["body"].as_str().unwrap_or("").to_string()),
            "session_left" => left.push((data["session_id"].clone(), data["reason"].clone())),
            _ => {}
        }
    }
    assert_eq!(bodies, ["to-a", "to-member", "live-dm"]);
    assert_eq!(left, vec![(json!("sb"), json!("deregistered"))]);

    // Peers and sends default to the session's mesh; explicit values still win.
    let r = sock(&alice, "GET", "/v1/peers", &[&hc], "");
    assert_eq!(r.status, 200, "{}", r.body);
    let peers = json_of(&r)["peers"].clone();
    assert!(peers
        .as_array()
        .is_some_and(|p| !p.is_empty() && p.iter().all(|x| x["mesh"] == "second")));
    let r = sock(&alice, "GET", "/v1/peers", &[], "");
    let peers = json_of(&r)["peers"].clone();
    let bob_entry = peers
        .as_array()
        .and_then(|p| p.iter().find(|x| x["displayName"] == "bob"))
        .cloned()
        .expect("bob listed");
    assert_eq!(bob_entry["mesh"], mesh.as_str());
    let r = sock(
        &alice,
        "POST",
        "/v1/send",
        &[&hc],
        &json!({"to": "*", "message": "on my mesh", "client_message_id": "c-sess"}).to_string(),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let r = sock(
        &alice,
        "POST",
        "/v1/send",
        &[&ha],
        &json!({"to": "*", "message": "explicit", "client_message_id": "c-expl", "mesh": "second"})
            .to_string(),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let r = alice.get("/v1/outbox?limit=10").expect("outbox");
    let rows = r.json()["items"].clone();
    let mesh_of = |id: &str| {
        rows.as_array()
            .and_then(|i| i.iter().find(|x| x["client_message_id"] == id))
            .map(|x| x["mesh"].clone())
    };
    assert_eq!(mesh_of("c-sess"), Some(json!("second")));
    assert_eq!(mesh_of("c-expl"), Some(json!("second")));
}

#[test]
fn read_state_round_trips_over_the_socket_and_tcp() {
    let w = World::new("alice", &["--no-rate-limit"]);
    let alice = Daemon::start(&w.config_dir("alice"), &[]);
    let mesh = first_slug(&w, "alice");
    {
        let mut conn =
            inbox_store::open(&alice.daemon_dir.join("inbox.db"), false).expect("open inbox");
        for b in ["one", "two", "three"] {
            put_message(&mut conn, &mesh, b, (RecipientKind::Member, "m"));
        }
    }
    let r = sock(&alice, "GET", "/v1/inbox?unread_only=true", &[], "");
    assert_eq!(inbox_bodies(&r).len(), 3);
    assert!(json_of(&r).get("marked_seen").is_none());
    let r = sock(&alice, "GET", "/v1/inbox?limit=2&mark_seen=true", &[], "");
    let v = json_of(&r);
    assert_eq!(v["marked_seen"], 2);
    assert!(
        v["items"]
            .as_array()
            .is_some_and(|i| i.iter().all(|x| x["seen_at"].is_null())),
        "the page shows the state before the mark"
    );
    let r = sock(&alice, "GET", "/v1/inbox?unread_only=true", &[], "");
    assert_eq!(inbox_bodies(&r), ["one"]);
    let r = sock(&alice, "GET", "/v1/inbox", &[], "");
    let items = json_of(&r)["items"].clone();
    assert!(items[0]["seen_at"].is_string());
    let id_one = items[2]["id"].as_i64().expect("id");
    let bearer = format!("Bearer {}", alice.token());
    let seen_body = json!({"ids": [id_one.to_string(), id_one]}).to_string();
    let r = tcp(&alice, "POST", "/v1/inbox/seen", &[&bearer], &seen_body);
    assert_eq!((r.status, json_of(&r)), (200, json!({"marked_seen": 1})));
    let r = sock(&alice, "POST", "/v1/inbox/seen", &[], "{\"ids\":\"x\"}");
    assert_eq!(r.status, 400);
    let r = sock(&alice, "GET", "/v1/inbox?unread_only=maybe", &[], "");
    assert_eq!(r.status, 400);
    let r = sock(&alice, "GET", "/v1/inbox?unread_only=true", &[], "");
    assert!(inbox_bodies(&r).is_empty());
    let r = tcp(
        &alice,
        "DELETE",
        &format!("/v1/inbox/{id_one}"),
        &[&bearer],
        "",
    );
    assert_eq!(
        (r.status, json_of(&r)),
        (200, json!({"removed": 1, "id": id_one}))
    );
    let r = sock(&alice, "DELETE", &format!("/v1/inbox/{id_one}"), &[], "");
    assert_eq!(r.status, 404);
    let r = sock(&alice, "DELETE", "/v1/inbox/abc", &[], "");
    assert_eq!(r.status, 400);
    let r = sock(&alice, "DELETE", "/v1/inbox?before=1000", &[], "");
    assert_eq!(json_of(&r), json!({"removed": 0}));
    let r = sock(&alice, "DELETE", &format!("/v1/inbox?mesh={mesh}"), &[], "");
    assert_eq!(json_of(&r), json!({"removed": 2}));
    let r = sock(&alice, "GET", "/v1/inbox", &[], "");
    assert!(inbox_bodies(&r).is_empty());
}

fn session_ids(d: &Daemon) -> Vec<String> {
    d.get("/v1/sessions")
        .ok()
        .map(|r| {
            r.json()["sessions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["session_id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `(session_id, reason)` of every journaled `session_left`, replayed from the journal.
fn departures(d: &Daemon) -> Vec<(String, String)> {
    let sock_path = d.socket();
    let mut stream = client::open_stream(
        &Endpoint::Socket(&sock_path),
        "/v1/events?last_event_id=0&kinds=session_left",
        &[],
        Duration::from_millis(500),
    )
    .expect("events");
    let mut out = Vec::new();
    // The replay comes at once; the read times out when it is over.
    while let Ok(Some(ev)) = client::next_event(&mut *stream.body) {
        let data: Value = serde_json::from_str(&ev.data).unwrap_or(Value::Null);
        if ev.event == "session_left" {
            out.push((
                data["session_id"].as_str().unwrap_or("").to_string(),
                data["reason"].as_str().unwrap_or("").to_string(),
            ));
        }
    }
    out
}

#[test]
fn reaper_drops_a_killed_process_and_a_restart_rehydrates_only_the_same_process() {
    let w = World::new("alice", &["--no-rate-limit"]);
    let config = w.config_dir("alice");
    let mut alice = Daemon::start(&config, &[]);
    let mesh = first_slug(&w, "alice");
    let member = w.pubkey("alice");
    let mut doomed = SessionProcess::spawn();
    let lasting = SessionProcess::spawn();
    let keys = MemberKeys::generate();
    let (t1, t2) = (new_token(), new_token());
    for body in [
        registration(&t1, "doomed", &mesh, doomed.pid(), None),
        registration(&t2, "lasting", &mesh, lasting.pid(), Some((&keys, &member))),
    ] {
        let r = sock(
            &alice,
            "POST",
            "/v1/sessions/register",
            &[],
            &body.to_string(),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
    doomed.kill();
    // The reaper sweeps every 5 s.
    assert!(
        wait_until(Duration::from_secs(20), || session_ids(&alice)
            == ["lasting"]),
        "{:?}",
        session_ids(&alice)
    );
    assert!(wait_until(Duration::from_secs(5), || departures(&alice)
        .contains(&(
            "doomed".to_string(),
            "process_exited".to_string()
        ))));

    // SIGHUP re-attaches the engine: the registry is rebuilt from the table.
    let pid = alice.child.as_ref().expect("child").id() as libc::pid_t;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    assert!(wait_until(Duration::from_secs(15), || alice
        .log()
        .lines()
        .any(
            |l| l.contains("session lasting") && l.contains("rehydrated")
        )));
    assert!(
        wait_until(Duration::from_secs(15), || session_ids(&alice)
            == ["lasting"]),
        "{}",
        alice.log()
    );

    // Restart: the live session comes back with its keypair, its token still works.
    assert_eq!(alice.stop(), Some(0));
    let mut alice = Daemon::start(&config, &[]);
    assert_eq!(session_ids(&alice), ["lasting"]);
    let r = sock(
        &alice,
        "GET",
        "/v1/sessions/me",
        &[&session_header(&t2)],
        "",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(json_of(&r)["session"]["session_pubkey"], keys.pubkey_hex());
    assert_eq!(json_of(&r)["session"]["presence_status"], "pending");

    // While the daemon is down the pid is "reused": its start time no longer matches.
    assert_eq!(alice.stop(), Some(0));
    let db = rusqlite::Connection::open(config.join("daemon/outbox.db")).expect("open outbox");
    let n = db
        .execute(
            "UPDATE sessions SET process_start = process_start + 1 WHERE session_id = 'lasting'",
            [],
        )
        .expect("update");
    assert_eq!(n, 1);
    drop(db);
    let alice = Daemon::start(&config, &[]);
    assert!(session_ids(&alice).is_empty());
    let r = sock(
        &alice,
        "GET",
        "/v1/sessions/me",
        &[&session_header(&t2)],
        "",
    );
    assert_eq!(r.status, 401);
    assert!(wait_until(Duration::from_secs(5), || departures(&alice)
        .contains(&("lasting".to_string(), "pid_reused".to_string()))));
    let db = rusqlite::Connection::open(config.join("daemon/outbox.db")).expect("open outbox");
    assert!(wait_until(Duration::from_secs(5), || db
        .query_row("SELECT count(*) FROM sessions", [], |r| r.get::<_, i64>(0))
        .is_ok_and(|n| n == 0)));
    drop(lasting);
}

#[test]
fn cli_lists_sessions_and_reads_unread_messages_marking_them_seen() {
    let w = World::new("alice", &["--no-rate-limit"]);
    let config = w.config_dir("alice");
    let alice = Daemon::start(&config, &[]);
    let mesh = first_slug(&w, "alice");
    let p = SessionProcess::spawn();
    let keys = MemberKeys::generate();
    let token = new_token();
    let body = registration(
        &token,
        "cli-s1",
        &mesh,
        p.pid(),
        Some((&keys, &w.pubkey("alice"))),
    );
    let r = sock(
        &alice,
        "POST",
        "/v1/sessions/register",
        &[],
        &body.to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.body);

    let human = crate::cli::cli(&config, &["sessions"]);
    human.expect(0);
    let lines: Vec<&str> = human.stdout.lines().collect();
    assert!(lines[0].starts_with("SESSION"), "{}", human.stdout);
    assert!(lines[1].starts_with("cli-s1"), "{}", human.stdout);
    assert!(lines[1].contains("agent-cli-s1") && lines[1].contains("pending"));
    assert!(lines[1].contains(&keys.pubkey_hex()[..16]));
    assert!(
        !human.stdout.contains(&keys.pubkey_hex()[..17]),
        "pubkey shortened"
    );
    let json = crate::cli::cli(&config, &["sessions", "--json"]);
    json.expect(0);
    assert_eq!(json.json()["sessions"][0]["session_id"], "cli-s1");
    assert!(!json.stdout.contains(&token) && !json.stdout.contains(&keys.secret_hex()));

    {
        let mut conn =
            inbox_store::open(&alice.daemon_dir.join("inbox.db"), false).expect("open inbox");
        for b in ["first", "second"] {
            put_message(&mut conn, &mesh, b, (RecipientKind::Member, "m"));
        }
    }
    let unread = crate::cli::cli(&config, &["inbox", "--unread", "--mark-seen"]);
    unread.expect(0);
    assert!(unread.stdout.contains("bob: first") && unread.stdout.contains("bob: second"));
    assert!(
        unread.stdout.contains("(marked 2 seen)"),
        "{}",
        unread.stdout
    );
    let again = crate::cli::cli(&config, &["inbox", "--unread", "--json"]);
    again.expect(0);
    assert_eq!(again.json()["items"], json!([]));
    let all = crate::cli::cli(&config, &["inbox", "--json"]);
    assert_eq!(all.json()["items"].as_array().map(Vec::len), Some(2));
}
