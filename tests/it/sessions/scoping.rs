//! The session header scopes the inbox, events, peers and sends; read state round trips.

use std::time::{Duration, Instant};

use claudemesh_actors::crypto::MemberKeys;
use claudemesh_actors::inbox::store::{self as inbox_store, RecipientKind};
use claudemeshd::client::{self, Endpoint};
use serde_json::{json, Value};

use super::*;

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
