//! Every route and status code of SPEC §12 over the socket and TCP; no secret anywhere.

use claudemesh_actors::crypto::MemberKeys;
use serde_json::{json, Value};

use super::*;

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
    // Its own connection is starting, or (the seed profile) already known unsupported.
    assert!(
        ["pending", "unsupported"].contains(&s["presence_status"].as_str().unwrap_or("")),
        "{s}"
    );
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
