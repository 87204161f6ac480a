//! Each session its own presence (SPEC §12 "Presence", "Sending as a session", "Receiving as
//! a session"): the session connection against the dev broker's head profile — seen by the
//! other daemon as a `peerRole:"session"` peer, DMs to it reach only its scoped inbox and
//! stream, its sends carry its pubkey; kill -9 and restart keep one presence and deliver what
//! was sent meanwhile once; a session that exits leaves after the lease; a refused
//! `session_hello` is marked; against the seed profile sends fall back to the member.

use std::time::{Duration, Instant};

use claudemesh_actors::crypto::MemberKeys;
use claudemeshd::client::{self, Endpoint};
use serde_json::{json, Value};

use super::*;

const LONG: Duration = Duration::from_secs(30);

fn register(
    d: &Daemon,
    token: &str,
    id: &str,
    mesh: &str,
    pid: u32,
    keys: &MemberKeys,
    member: &str,
) {
    let body = registration(token, id, mesh, pid, Some((keys, member)));
    let r = sock(d, "POST", "/v1/sessions/register", &[], &body.to_string());
    assert_eq!(r.status, 200, "{}", r.body);
}

fn presence_status(d: &Daemon, token: &str) -> String {
    let r = sock(d, "GET", "/v1/sessions/me", &[&session_header(token)], "");
    json_of(&r)["session"]["presence_status"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn wait_status(d: &Daemon, token: &str, want: &str) {
    assert!(
        wait_until(LONG, || presence_status(d, token) == want),
        "presence_status never became {want} (is {}); log:\n{}",
        presence_status(d, token),
        d.log()
    );
}

fn peers(d: &Daemon) -> Vec<Value> {
    d.get("/v1/peers")
        .ok()
        .and_then(|r| r.json()["peers"].as_array().cloned())
        .unwrap_or_default()
}

/// Inbox items as seen with `auth` (none: the operator).
fn items(d: &Daemon, auth: &[&str]) -> Vec<Value> {
    let r = sock(d, "GET", "/v1/inbox", auth, "");
    json_of(&r)["items"].as_array().cloned().unwrap_or_default()
}

fn bodies_of(items: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = items
        .iter()
        .filter_map(|i| i["body"].as_str().map(str::to_string))
        .collect();
    v.sort();
    v
}

/// Replayed events of `kind` as seen with `auth`.
fn replay(d: &Daemon, kind: &str, auth: &[(&str, &str)]) -> Vec<Value> {
    let sock_path = d.socket();
    let Ok(mut stream) = client::open_stream(
        &Endpoint::Socket(&sock_path),
        &format!("/v1/events?last_event_id=0&kinds={kind}"),
        auth,
        Duration::from_millis(500),
    ) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    while let Ok(Some(ev)) = client::next_event(&mut *stream.body) {
        if ev.event == kind {
            out.push(serde_json::from_str(&ev.data).unwrap_or(Value::Null));
        }
    }
    out
}

fn send_as(d: &Daemon, token: &str, to: &str, message: &str) {
    let r = sock(
        d,
        "POST",
        "/v1/send",
        &[&session_header(token)],
        &json!({"to": to, "message": message}).to_string(),
    );
    assert_eq!(r.status, 202, "{}", r.body);
}

fn session_connections(d: &Daemon, mesh: &str) -> Value {
    let h = d.get("/v1/health").expect("health").json();
    h["meshes"]
        .as_array()
        .and_then(|m| m.iter().find(|x| x["slug"] == mesh))
        .map(|m| m["session_connections"].clone())
        .unwrap_or(Value::Null)
}

#[test]
fn a_session_is_its_own_peer_receives_only_its_dms_and_sends_as_itself() {
    let w = crate::head::head_world();
    let alice = Daemon::start(&w.config_dir("alice"), &[]);
    let bob = Daemon::start(&w.config_dir("bob"), &[]);
    let mesh = first_slug(&w, "alice");
    let member = w.pubkey("alice");
    let p = SessionProcess::spawn();
    let (k1, k2) = (MemberKeys::generate(), MemberKeys::generate());
    let (t1, t2) = (new_token(), new_token());
    register(&alice, &t1, "s1", &mesh, p.pid(), &k1, &member);
    register(&alice, &t2, "s2", &mesh, p.pid(), &k2, &member);
    wait_status(&alice, &t1, "open");
    wait_status(&alice, &t2, "open");
    assert_eq!(
        session_connections(&alice, &mesh),
        json!({"open": 2, "total": 2})
    );

    // Bob sees each session as its own peer.
    let (pk1, pk2) = (k1.pubkey_hex(), k2.pubkey_hex());
    assert!(
        wait_until(LONG, || {
            let ps = peers(&bob);
            [&pk1, &pk2].iter().all(|pk| {
                ps.iter()
                    .any(|x| x["pubkey"] == pk.as_str() && x["peerRole"] == "session")
            })
        }),
        "{:?}",
        peers(&bob)
    );

    // A live stream of session 1, open before the DM.
    let (h1, h2) = (session_header(&t1), session_header(&t2));
    let sock_path = alice.socket();
    let mut stream = client::open_stream(
        &Endpoint::Socket(&sock_path),
        "/v1/events?kinds=message",
        &[("Authorization", h1.as_str())],
        LONG,
    )
    .expect("events");
    assert_eq!(stream.status, 200);

    // Bob DMs session 1 directly: only its scoped view (and the operator's) has it.
    let r = bob.post("/v1/send", &json!({"to": pk1, "message": "to-s1"}));
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(
        wait_until(LONG, || bodies_of(&items(&alice, &[&h1])) == ["to-s1"]),
        "{:?}\n{}",
        items(&alice, &[]),
        alice.log()
    );
    let got = items(&alice, &[&h1]);
    assert_eq!(got[0]["recipient_kind"], "session");
    assert_eq!(got[0]["recipient_pubkey"], pk1.as_str());
    assert_eq!(got[0]["sender_pubkey"], w.pubkey("bob").as_str());
    assert!(bodies_of(&items(&alice, &[&h2])).is_empty());
    assert_eq!(bodies_of(&items(&alice, &[])), ["to-s1"]);
    let ev = client::next_event(&mut *stream.body)
        .expect("read")
        .expect("an event");
    let data: Value = serde_json::from_str(&ev.data).expect("json");
    assert_eq!(
        (ev.event.as_str(), &data["body"]),
        ("message", &json!("to-s1"))
    );
    assert_eq!(data["recipient_kind"], "session");
    // Session 2's replay does not carry it.
    assert!(replay(&alice, "message", &[("Authorization", h2.as_str())]).is_empty());

    // Session 1 sends as itself: bob gets the session pubkey as sender, decrypted.
    send_as(&alice, &t1, &w.pubkey("bob"), "from-s1");
    assert!(wait_until(LONG, || bob
        .inbox_bodies()
        .contains(&"from-s1".to_string())));
    let bob_items = items(&bob, &[]);
    let from = bob_items
        .iter()
        .find(|i| i["body"] == "from-s1")
        .expect("from-s1");
    assert_eq!(from["sender_pubkey"], pk1.as_str());

    // Two sessions of one daemon DM each other.
    send_as(&alice, &t1, &pk2, "s1-to-s2");
    assert!(
        wait_until(LONG, || bodies_of(&items(&alice, &[&h2])) == ["s1-to-s2"]),
        "{:?}",
        items(&alice, &[])
    );
    let got = items(&alice, &[&h2]);
    assert_eq!(got[0]["sender_pubkey"], pk1.as_str());
    assert_eq!(bodies_of(&items(&alice, &[&h1])), ["to-s1"]);
}

#[test]
fn kill9_and_restart_reattach_the_session_and_deliver_what_was_sent_meanwhile_once() {
    let w = crate::head::head_world();
    let nudge = [("CLAUDEMESH_BROKER_REDELIVERY_NUDGE_MS", "4000")];
    let mut alice = Daemon::start(&w.config_dir("alice"), &nudge);
    let bob = Daemon::start(&w.config_dir("bob"), &[]);
    let mesh = first_slug(&w, "alice");
    let p = SessionProcess::spawn();
    let k = MemberKeys::generate();
    let t = new_token();
    register(&alice, &t, "s1", &mesh, p.pid(), &k, &w.pubkey("alice"));
    wait_status(&alice, &t, "open");
    let pk = k.pubkey_hex();
    assert!(wait_until(LONG, || peers(&bob)
        .iter()
        .any(|x| x["pubkey"] == pk.as_str())));

    alice.kill9();
    let sent: Vec<String> = (0..3).map(|i| format!("while-down-{i}")).collect();
    for m in &sent {
        let r = bob.post("/v1/send", &json!({"to": pk, "message": m}));
        assert_eq!(r.status, 202, "{}", r.body);
    }
    // Each is queued by the broker for the leased session presence.
    assert!(wait_until(LONG, || {
        let r = bob.get("/v1/outbox?status=done").ok();
        r.map(|r| r.json()["items"].as_array().map_or(0, Vec::len) >= 3)
            .unwrap_or(false)
    }));

    let restarted = Instant::now();
    let alice = Daemon::start(&w.config_dir("alice"), &nudge);
    wait_status(&alice, &t, "open");
    let h = session_header(&t);
    assert!(
        wait_until(LONG, || bodies_of(&items(&alice, &[&h])).len() >= 3),
        "{:?}\n{}",
        items(&alice, &[]),
        alice.log()
    );
    eprintln!(
        "session DMs sent while the daemon was down delivered {} ms after the restart",
        restarted.elapsed().as_millis()
    );
    // Once each, and one presence for the session.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(bodies_of(&items(&alice, &[&h])), sent);
    let ps = peers(&bob);
    assert_eq!(
        ps.iter().filter(|x| x["pubkey"] == pk.as_str()).count(),
        1,
        "{ps:?}"
    );
}

#[test]
fn a_session_whose_process_exits_closes_its_socket_and_leaves_after_the_lease() {
    let w = World::new(
        "alice,bob",
        &["--profile", "head", "--no-rate-limit", "--grace-ms", "3000"],
    );
    let alice = Daemon::start(&w.config_dir("alice"), &[]);
    let bob = Daemon::start(&w.config_dir("bob"), &[]);
    let mesh = first_slug(&w, "alice");
    let mut p = SessionProcess::spawn();
    let k = MemberKeys::generate();
    let t = new_token();
    register(&alice, &t, "s1", &mesh, p.pid(), &k, &w.pubkey("alice"));
    wait_status(&alice, &t, "open");
    let pk = k.pubkey_hex();
    assert!(wait_until(LONG, || peers(&bob)
        .iter()
        .any(|x| x["pubkey"] == pk.as_str())));
    p.kill();
    // The reaper (5 s) ends the session and closes its socket; the lease (3 s) runs out.
    assert!(
        wait_until(LONG, || replay(&bob, "peer_leave", &[])
            .iter()
            .any(|e| e["pubkey"] == pk.as_str())),
        "{}",
        alice.log()
    );
    assert!(!peers(&bob).iter().any(|x| x["pubkey"] == pk.as_str()));
    assert_eq!(
        session_connections(&alice, &mesh),
        json!({"open": 0, "total": 0})
    );
}

#[test]
fn a_refused_session_hello_is_logged_and_marked_and_its_sends_go_through_the_member() {
    let w = crate::head::head_world();
    // 25 h: more than the broker allows (§1.10 check 4, `ttl_too_long`).
    let alice = Daemon::start(
        &w.config_dir("alice"),
        &[("CLAUDEMESH_BROKER_SESSION_ATTESTATION_TTL_MS", "90000000")],
    );
    let bob = Daemon::start(&w.config_dir("bob"), &[]);
    let mesh = first_slug(&w, "alice");
    let p = SessionProcess::spawn();
    let k = MemberKeys::generate();
    let t = new_token();
    register(&alice, &t, "s1", &mesh, p.pid(), &k, &w.pubkey("alice"));
    wait_status(&alice, &t, "rejected");
    assert!(alice.log().contains("ttl_too_long"), "{}", alice.log());
    send_as(&alice, &t, &w.pubkey("bob"), "via-member");
    assert!(wait_until(LONG, || bob
        .inbox_bodies()
        .contains(&"via-member".to_string())));
    let from = items(&bob, &[])
        .into_iter()
        .find(|i| i["body"] == "via-member")
        .expect("delivered");
    assert_eq!(from["sender_pubkey"], w.pubkey("alice").as_str());
}

#[test]
fn against_a_seed_broker_a_session_is_unsupported_and_sends_through_the_member() {
    let w = World::new("alice,bob", &["--no-rate-limit"]);
    let alice = Daemon::start(
        &w.config_dir("alice"),
        &[("CLAUDEMESH_BROKER_SESSION_RETRY_MS", "1000")],
    );
    let bob = Daemon::start(&w.config_dir("bob"), &[]);
    let mesh = first_slug(&w, "alice");
    let p = SessionProcess::spawn();
    let k = MemberKeys::generate();
    let t = new_token();
    register(&alice, &t, "s1", &mesh, p.pid(), &k, &w.pubkey("alice"));
    wait_status(&alice, &t, "unsupported");
    for i in 0..3 {
        send_as(&alice, &t, &w.pubkey("bob"), &format!("seed-{i}"));
    }
    assert!(
        wait_until(LONG, || bob.inbox_bodies().len() >= 3),
        "{}",
        alice.log()
    );
    assert_eq!(bob.inbox_bodies(), ["seed-0", "seed-1", "seed-2"]);
    assert_eq!(
        session_connections(&alice, &mesh),
        json!({"open": 0, "total": 1})
    );
    // Retried (every second here), still unsupported, never stuck.
    assert!(wait_until(LONG, || alice
        .log()
        .matches("session_hello not supported")
        .count()
        >= 2));
    assert_eq!(presence_status(&alice, &t), "unsupported");
}
