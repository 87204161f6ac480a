//! Fidelity: replay the client side of the recorded real-broker sessions and match their frame
//! types and key sets — `tests/fixtures/wire/seed-broker*` against the default (seed) profile,
//! `head-broker.jsonl` against `--profile head`.

use awc::ws::Message;
use claudemesh_actors::crypto::MemberKeys;
use claudemesh_actors::time::now_ms;
use claudemesh_devbroker::{errors, Profile};
use futures_util::SinkExt;
use serde_json::{json, Value};

use crate::support::{dm, hello, join, join_with, Event, Member, Mesh, Ws, WAIT};

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

/// Replays one recording against a fresh dev mesh (a broker of `profile`) whose members
/// `peer-a`/`peer-b` stand for the recorded ones; returns the coverage labels of every matched
/// reply.
async fn replay(file: &str, profile: Profile) -> std::collections::BTreeSet<String> {
    use std::collections::{BTreeSet, HashMap};
    let lines = recording(file);
    let mesh = Mesh::new(&["peer-a", "peer-b"]);
    let broker = match profile {
        Profile::Seed => mesh.broker(|_| {}).await,
        Profile::Head => mesh.head_broker(|_| {}).await,
    };
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
    // Members that had disconnected before the recording began (their first `hello_ack` is
    // `restored`) are primed with a connection of their own. (On the head profile that
    // connection would stay listed in its lease, so only recordings that need it get it.)
    for name in ["peer-b", "peer-a"] {
        let first_ack = lines
            .iter()
            .find(|l| l.who == name && l.dir == "recv" && l.frame["type"] == "hello_ack");
        if first_ack.is_some_and(|l| l.frame["restored"] == true) {
            let mut ws = join(&url, &members[name]).await;
            ws.close().await;
        }
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
        covered.extend(replay(file, Profile::Seed).await);
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
async fn replaying_the_recorded_head_session_on_the_head_profile_gets_the_same_frames() {
    let file = "head-broker.jsonl";
    let recorded: std::collections::BTreeSet<String> = recording(file)
        .iter()
        .filter(|l| l.dir == "recv")
        .map(|l| kind_of(&l.frame))
        .collect();
    let covered = replay(file, Profile::Head).await;
    assert_eq!(covered, recorded);
    for kind in [
        "hello_ack",
        "peers_list",
        "push:peer_joined",
        "push:peer_returned",
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
