//! Head profile, `session_hello` (BROKER-PROTOCOL §1.10) and the stale-pong terminate (§6.2):
//! an accepted session is a peer with `peerRole:"session"` and its own pubkey; each check
//! rejects with its code (error frame, then close 1008 with the code, revoked → 4002
//! `banned`); the same session pubkey takes an entry over; a socket that stops answering pings
//! is dropped without a close frame.

use std::time::Duration;

use claudemesh_actors::crypto::MemberKeys;
use claudemesh_devbroker as devbroker;
use serde_json::{json, Value};

use crate::head_lease::{next_event, peers, until_leased, SLOW};
use crate::support::{dm, hello, join_with, session_hello, wait_until, Event, Mesh, Ws, WAIT};

#[actix_web::test]
async fn an_accepted_session_hello_is_a_session_peer_that_receives_its_dms() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.head_broker(|_| {}).await;
    let (alice, bob) = (mesh.member("alice"), mesh.member("bob"));
    let (mut a, _, _) = join_with(&broker.url(), hello(&alice, None, "alice-d")).await;
    let (mut b, _, _) = join_with(&broker.url(), hello(&bob, None, "bob-d")).await;
    next_event(&mut a, "peer_joined", SLOW).await.unwrap();
    let session = MemberKeys::generate();
    let frame = session_hello(&alice, &session, "alice-s1", 3_600_000);
    let (mut s, ack, _) = join_with(&broker.url(), frame).await;
    let mut keys: Vec<&str> = ack
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "memberDisplayName",
            "memberProfile",
            "meshPolicy",
            "presenceId",
            "type"
        ]
    );
    assert_eq!(ack["memberDisplayName"], "alice-session");
    // peer_joined goes to everyone else, the session's own member included.
    for ws in [&mut a, &mut b] {
        let joined = next_event(ws, "peer_joined", SLOW).await.unwrap();
        assert_eq!(joined["eventData"]["pubkey"], session.pubkey_hex().as_str());
    }
    let listed = peers(&mut b).await;
    let row = listed
        .iter()
        .find(|p| p["pubkey"] == session.pubkey_hex().as_str())
        .unwrap();
    assert_eq!(row["peerRole"], "session");
    assert_eq!(row["memberPubkey"], alice.pubkey.as_str());
    assert_eq!(row["sessionId"], "alice-s1");
    let daemon = listed
        .iter()
        .find(|p| p["pubkey"] == alice.pubkey.as_str())
        .unwrap();
    assert_eq!(daemon["peerRole"], "control-plane");
    // A DM to the session pubkey reaches the session socket only.
    b.send(dm("to-session", &session.pubkey_hex(), "next"))
        .await;
    let ack = b.recv_kind("ack", None).await;
    let push = s.recv_kind("push", None).await;
    assert_eq!(push["messageId"], ack["messageId"]);
    assert_eq!(push["senderPubkey"], bob.pubkey.as_str());
    a.expect_silence().await;
    broker.stop().await.unwrap();
}

#[actix_web::test]
async fn the_same_session_pubkey_takes_the_entry_over_silently() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh.head_broker(|_| {}).await;
    let (alice, bob) = (mesh.member("alice"), mesh.member("bob"));
    let (mut b, _, _) = join_with(&broker.url(), hello(&bob, None, "bob-d")).await;
    let session = MemberKeys::generate();
    let (mut old, first, _) = join_with(
        &broker.url(),
        session_hello(&alice, &session, "s1", 600_000),
    )
    .await;
    next_event(&mut b, "peer_joined", SLOW).await.unwrap();
    // Online: the old socket is replaced.
    let (new, second, _) = join_with(
        &broker.url(),
        session_hello(&alice, &session, "s2", 600_000),
    )
    .await;
    assert_eq!(second["presenceId"], first["presenceId"]);
    assert!(second.get("memberProfile").is_none(), "{second}");
    let (_, close) = old.until_close().await;
    assert_eq!(close, Some((1000, "session_replaced".into())));
    // Leased: the entry comes back with the same presence and a new sessionId.
    let mut new = new;
    new.close().await;
    until_leased(&broker, first["presenceId"].as_str().unwrap()).await;
    let (_again, third, _) = join_with(
        &broker.url(),
        session_hello(&alice, &session, "s3", 600_000),
    )
    .await;
    assert_eq!(third["presenceId"], first["presenceId"]);
    b.expect_silence().await;
    let sessions: Vec<Value> = peers(&mut b)
        .await
        .into_iter()
        .filter(|p| p["peerRole"] == "session")
        .collect();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["sessionId"], "s3");
    broker.stop().await.unwrap();
}

/// Sends `frame` on a fresh socket and returns the error code, and the close.
async fn rejected(url: &str, frame: Value) -> (String, Option<(u16, String)>) {
    let mut ws = Ws::connect(url).await;
    ws.send(frame).await;
    let (texts, close) = ws.until_close().await;
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert_eq!(texts[0]["type"], "error");
    (texts[0]["code"].as_str().unwrap().to_owned(), close)
}

#[actix_web::test]
async fn each_session_hello_check_rejects_with_its_code_and_close() {
    let mut mesh = Mesh::new(&["alice", "mallory"]);
    let broker = mesh.head_broker(|_| {}).await;
    let url = broker.url();
    let alice = mesh.member("alice");
    let session = MemberKeys::generate();
    let good = || session_hello(&alice, &session, "s", 600_000);
    let mut cases: Vec<(&str, Value)> = Vec::new();
    let mut f = good();
    f["sessionPubkey"] = json!(session.pubkey_hex().to_uppercase());
    cases.push(("bad_session_pubkey", f));
    let mut f = good();
    f["parentMemberPubkey"] = json!("xyz");
    cases.push(("bad_parent_pubkey", f));
    let mut f = good();
    f["parentAttestation"]["parentMemberPubkey"] = json!(mesh.member("mallory").pubkey);
    cases.push(("attestation_mismatch", f));
    cases.push(("expired", session_hello(&alice, &session, "s", -1)));
    cases.push((
        "ttl_too_long",
        session_hello(&alice, &session, "s", 24 * 3_600_000 + 60_000),
    ));
    let mut f = good();
    f["parentAttestation"]["expiresAt"] = json!("soon");
    cases.push(("malformed", f));
    let mut f = good();
    f["parentAttestation"]["signature"] = f["signature"].clone();
    cases.push(("bad_signature", f));
    let mut f = good();
    f["timestamp"] = json!(claudemesh_actors::time::now_ms() - 61_000);
    cases.push(("timestamp_skew", f));
    let mut f = good();
    f["signature"] = f["parentAttestation"]["signature"].clone();
    cases.push(("bad_signature", f));
    let mut f = good();
    f["parentMemberId"] = json!("someone-else");
    cases.push(("parent_member_id_mismatch", f));
    for (code, frame) in cases {
        let got = rejected(&url, frame).await;
        assert_eq!(got, (code.to_owned(), Some((1008, code.to_owned()))));
    }
    // A stranger's key: unauthorized; a revoked parent: revoked, closed 4002 `banned`.
    let mut stranger = alice.clone();
    stranger.keys = MemberKeys::generate();
    stranger.pubkey = stranger.keys.pubkey_hex();
    let got = rejected(&url, session_hello(&stranger, &session, "s", 600_000)).await;
    assert_eq!(
        got,
        ("unauthorized".into(), Some((1008, "unauthorized".into())))
    );
    devbroker::revoke_member(&mesh.state(), "mallory").unwrap();
    mesh.members.retain(|m| m.name != "alice");
    let mallory = mesh.member("mallory");
    let got = rejected(&url, session_hello(&mallory, &session, "s", 600_000)).await;
    assert_eq!(got, ("revoked".into(), Some((4002, "banned".into()))));
    // The seed profile does not know session_hello: `no_hello`, socket kept.
    broker.stop().await.unwrap();
    let seed = mesh.broker(|_| {}).await;
    let mut ws = Ws::connect(&seed.url()).await;
    ws.send(session_hello(&alice, &session, "s", 600_000)).await;
    assert_eq!(ws.recv().await["code"], "no_hello");
    ws.expect_silence().await;
    seed.stop().await.unwrap();
}

#[actix_web::test]
async fn a_socket_that_stops_answering_pings_is_terminated_into_its_lease() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let broker = mesh
        .head_broker(|o| {
            o.ping_interval_ms = 100;
            o.stale_after_ms = Some(1_000);
        })
        .await;
    let (alice, bob) = (mesh.member("alice"), mesh.member("bob"));
    let (mut a, _, _) = join_with(&broker.url(), hello(&alice, None, "alice-d")).await;
    let (mut b, b_ack, _) = join_with(&broker.url(), hello(&bob, None, "bob-d")).await;
    b.auto_pong = false;
    // Bob stops answering: dropped without a close frame. Alice, who answers every ping (she
    // keeps reading her socket), stays connected well past the stale bound.
    let bob_end = async {
        tokio::time::timeout(SLOW, async {
            loop {
                match b.next(WAIT).await {
                    Some(Event::Ping | Event::Text(_)) | None => continue,
                    Some(end) => return end,
                }
            }
        })
        .await
        .expect("bob was never terminated")
    };
    let alice_reads = async {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(2_500);
        while tokio::time::Instant::now() < deadline {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match a.next(left).await {
                None | Some(Event::Ping | Event::Text(_)) => continue,
                Some(other) => panic!("alice: {other:?}"),
            }
        }
    };
    let (ended, ()) = tokio::join!(bob_end, alice_reads);
    assert_eq!(ended, Event::Eof);
    until_leased(&broker, b_ack["presenceId"].as_str().unwrap()).await;
    let online = wait_until(Duration::from_millis(100), || async {
        broker
            .presences()
            .await
            .unwrap()
            .iter()
            .any(|p| p.member_pubkey == alice.pubkey && p.online)
    })
    .await;
    assert!(online);
    assert!(!peers(&mut a).await.is_empty());
    broker.stop().await.unwrap();
}

/// The daemon's own `session_hello` (claudemesh_actors::broker::session): accepted as built;
/// an expired attestation and one forged with another member's key are refused with the §1.10
/// codes.
#[actix_web::test]
async fn the_daemons_session_hello_is_accepted_and_expired_or_forged_ones_are_refused() {
    use claudemesh_actors::broker::session::{session_hello as daemon_hello, SessionIdentity};
    let mesh = Mesh::new(&["alice", "mallory"]);
    let broker = mesh.head_broker(|_| {}).await;
    let url = broker.url();
    let (alice, mallory) = (mesh.member("alice"), mesh.member("mallory"));
    let id = SessionIdentity {
        keys: MemberKeys::generate(),
        session_id: "daemon-s1".into(),
        display_name: "alice-agent".into(),
        pid: 4242,
        cwd: Some("/work".into()),
        role: Some("reviewer".into()),
        groups: vec!["dev".into()],
    };
    let now = claudemesh_actors::time::now_ms();
    let frame = |signer: &MemberKeys, expires_at: i64| -> Value {
        serde_json::from_str(&daemon_hello(
            &alice.mesh_id,
            &alice.member_id,
            signer,
            &id,
            claudemesh_actors::time::now_ms(),
            expires_at,
        ))
        .unwrap()
    };
    // Forged: the attestation names alice but is signed with mallory's key (the parent
    // pubkey is the signer's, so it is repaired to alice's to get past the mismatch check).
    let mut forged = frame(&mallory.keys, now + 3_600_000);
    forged["parentMemberPubkey"] = json!(alice.pubkey);
    forged["parentAttestation"]["parentMemberPubkey"] = json!(alice.pubkey);
    for (code, f) in [
        ("expired", frame(&alice.keys, now - 1_000)),
        ("bad_signature", forged),
    ] {
        let got = rejected(&url, f).await;
        assert_eq!(got, (code.to_owned(), Some((1008, code.to_owned()))));
    }
    let mut ws = Ws::connect(&url).await;
    ws.send(frame(&alice.keys, now + 12 * 3_600_000)).await;
    let ack = ws.recv().await;
    assert_eq!(ack["type"], "hello_ack", "{ack}");
    broker.stop().await.unwrap();
}
