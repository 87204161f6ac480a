//! Every line of the recorded real-broker sessions (`tests/fixtures/wire/*.jsonl`) decodes into
//! its typed variant with the recorded values, and re-encodes to the same JSON.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::wire::*;

const FIXTURE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/wire");
const EXPECTED_FILES: &[&str] = &[
    "head-broker.jsonl",
    "seed-broker-extra.jsonl",
    "seed-broker-ts-daemon.jsonl",
    "seed-broker.jsonl",
];

/// One recorded line: `{ts, who, dir, frame, close?}`.
struct Recorded {
    place: String,
    dir: String,
    frame: Value,
    close: Option<Value>,
}

fn fixture_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(FIXTURE_DIR)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "jsonl"))
        .collect();
    files.sort();
    files
}

fn read_recorded(path: &Path) -> Vec<Recorded> {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            let mut value: Value = serde_json::from_str(line).unwrap();
            let place = format!("{name}:{}", index + 1);
            let dir = value["dir"].as_str().unwrap().to_owned();
            Recorded {
                place,
                dir,
                frame: value["frame"].take(),
                close: value.get_mut("close").map(Value::take),
            }
        })
        .collect()
}

fn opt_str<'a>(frame: &'a Value, key: &str) -> Option<&'a str> {
    frame.get(key).map(|value| value.as_str().unwrap())
}

fn assert_reencodes_identically<T: WireFrame>(decoded: &T, frame: &Value, place: &str) {
    let reencoded: Value = serde_json::from_str(&encode(decoded)).unwrap();
    assert_eq!(&reencoded, frame, "{place}: re-encoded frame differs");
}

fn check_sent(rec: &Recorded) {
    let (frame, place) = (&rec.frame, rec.place.as_str());
    let decoded = decode_client(&frame.to_string()).unwrap();
    assert_eq!(decoded.kind(), frame["type"].as_str().unwrap(), "{place}");
    match &decoded {
        ClientFrame::Hello(hello) => {
            assert_eq!(hello.mesh_id, frame["meshId"], "{place}");
            assert_eq!(hello.member_id, frame["memberId"], "{place}");
            assert_eq!(hello.pubkey, frame["pubkey"], "{place}");
            let session_pubkey = opt_str(frame, "sessionPubkey");
            assert_eq!(hello.session_pubkey.as_deref(), session_pubkey, "{place}");
            assert_eq!(hello.session_id, frame["sessionId"], "{place}");
            assert_eq!(
                u64::from(hello.pid),
                frame["pid"].as_u64().unwrap(),
                "{place}"
            );
            assert_eq!(hello.timestamp_ms(), frame["timestamp"].as_i64(), "{place}");
            assert_eq!(hello.signature.len(), 128, "{place}");
        }
        ClientFrame::Send(send) => {
            assert_eq!(send.id.as_deref(), opt_str(frame, "id"), "{place}");
            assert_eq!(send.target_spec, frame["targetSpec"], "{place}");
            assert_eq!(send.priority.as_str(), frame["priority"], "{place}");
            assert_eq!(send.nonce, frame["nonce"], "{place}");
            assert_eq!(send.ciphertext, frame["ciphertext"], "{place}");
        }
        ClientFrame::ListPeers { req_id } => {
            assert_eq!(req_id.as_deref(), opt_str(frame, "_reqId"), "{place}");
        }
        ClientFrame::SetStatus { status } => assert_eq!(status, &frame["status"], "{place}"),
        other => panic!("{place}: recorded send decoded as unexpected {other:?}"),
    }
    assert_reencodes_identically(&decoded, frame, place);
}

/// Checks one received frame; returns a finer label for system events.
fn check_received(rec: &Recorded) -> Option<String> {
    let (frame, place) = (&rec.frame, rec.place.as_str());
    let decoded = decode_broker(&frame.to_string()).unwrap();
    assert_eq!(decoded.kind(), frame["type"].as_str().unwrap(), "{place}");
    let mut label = None;
    match &decoded {
        BrokerFrame::HelloAck(ack) => {
            assert_eq!(ack.presence_id, frame["presenceId"], "{place}");
            assert_eq!(ack.presence_id.len(), 32, "{place}");
            assert_eq!(
                ack.member_display_name, frame["memberDisplayName"],
                "{place}"
            );
            assert_eq!(
                ack.restored,
                frame.get("restored").map(|v| v.as_bool().unwrap())
            );
            assert_eq!(
                ack.last_seen_at.as_deref(),
                opt_str(frame, "lastSeenAt"),
                "{place}"
            );
        }
        BrokerFrame::Error { code, message, id } => {
            assert_eq!(code, &frame["code"], "{place}");
            assert_eq!(message, &frame["message"], "{place}");
            assert_eq!(id, &None, "{place}");
            if let Some(close) = &rec.close {
                // §1.6: a hello rejection closes 1008 with the code as the reason.
                assert_eq!(close["c"], 1008, "{place}");
                assert_eq!(&close["why"], &frame["code"], "{place}");
            }
        }
        BrokerFrame::Ack(ack) => {
            assert_eq!(ack.id, frame["id"], "{place}");
            assert_eq!(ack.message_id, frame["messageId"], "{place}");
            assert_eq!(ack.queued, frame["queued"].as_bool().unwrap(), "{place}");
            assert_eq!(ack.error.as_deref(), opt_str(frame, "error"), "{place}");
            assert_eq!(ack.is_success(), ack.error.is_none(), "{place}");
            assert!(
                !ack.is_set_reply(),
                "{place}: a send ack looks like a set_* reply"
            );
            if let Some(error) = &ack.error {
                assert!(ack.message_id.is_empty() && !ack.queued, "{place}");
                label = Some(format!("ack error {error}"));
            }
        }
        BrokerFrame::Push(push) => {
            assert_eq!(push.message_id, frame["messageId"], "{place}");
            assert_eq!(push.mesh_id, frame["meshId"], "{place}");
            assert_eq!(push.sender_pubkey, frame["senderPubkey"], "{place}");
            assert_eq!(push.ciphertext, frame["ciphertext"], "{place}");
            assert_eq!(push.created_at, frame["createdAt"], "{place}");
            label = Some(check_push_event(push, frame, place));
        }
        BrokerFrame::PeersList { req_id, peers } => {
            assert_eq!(req_id.as_deref(), opt_str(frame, "_reqId"), "{place}");
            let recorded = frame["peers"].as_array().unwrap();
            assert_eq!(peers.len(), recorded.len(), "{place}");
            for (peer, raw) in peers.iter().zip(recorded) {
                assert_eq!(peer.pubkey, raw["pubkey"], "{place}");
                assert_eq!(peer.pubkey.len(), 64, "{place}");
                assert_eq!(peer.member_pubkey.as_deref(), opt_str(raw, "memberPubkey"));
                assert_eq!(peer.display_name, raw["displayName"], "{place}");
                assert_eq!(peer.summary, None, "{place}");
                assert_eq!(
                    peer.peer_role.as_deref(),
                    opt_str(raw, "peerRole"),
                    "{place}"
                );
                // Every recorded field has a typed home; `extra` is for future ones.
                assert!(peer.extra.is_empty(), "{place}: untyped {:?}", peer.extra);
            }
        }
        other => panic!("{place}: recorded recv decoded as unexpected {other:?}"),
    }
    assert_reencodes_identically(&decoded, frame, place);
    label
}

fn check_push_event(push: &Push, frame: &Value, place: &str) -> String {
    let Some(event) = push.system_event() else {
        assert!(!push.is_system(), "{place}");
        assert_eq!(push.dedupe_key(), push.message_id, "{place}");
        return if push.sender_name.is_some() {
            "live push"
        } else {
            "drained push"
        }
        .to_owned();
    };
    let data = &frame["eventData"];
    assert_eq!(push.sender_pubkey, "system", "{place}");
    match &event {
        SystemEvent::PeerJoined {
            name,
            pubkey,
            groups,
        } => {
            assert_name_pubkey(name, pubkey, data, place);
            assert!(groups.is_empty(), "{place}");
        }
        SystemEvent::PeerReturned {
            name,
            pubkey,
            last_seen_at,
            summary,
            ..
        } => {
            assert_name_pubkey(name, pubkey, data, place);
            assert_eq!(
                last_seen_at.as_deref(),
                opt_str(data, "lastSeenAt"),
                "{place}"
            );
            assert_eq!(summary, &None, "{place}");
        }
        SystemEvent::PeerLeft { name, pubkey } => {
            assert_name_pubkey(name, pubkey, data, place);
        }
        SystemEvent::Other { .. } => panic!("{place}: recorded event not classified: {event:?}"),
    }
    format!("event {}", frame["event"].as_str().unwrap())
}

fn assert_name_pubkey(name: &str, pubkey: &str, data: &Value, place: &str) {
    assert_eq!(Some(name), opt_str(data, "name"), "{place}");
    assert_eq!(Some(pubkey), opt_str(data, "pubkey"), "{place}");
}

/// Every recorded line of the given direction, across all fixture files.
fn recorded(dir: &str) -> Vec<Recorded> {
    let files = fixture_files();
    let names: Vec<String> = files
        .iter()
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, EXPECTED_FILES);
    let all: Vec<Recorded> = files.iter().flat_map(|path| read_recorded(path)).collect();
    for rec in &all {
        assert!(
            ["send", "recv", "close"].contains(&rec.dir.as_str()),
            "{}",
            rec.place
        );
    }
    all.into_iter().filter(|rec| rec.dir == dir).collect()
}

fn tally(labels: impl IntoIterator<Item = String>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for label in labels {
        *counts.entry(label).or_default() += 1;
    }
    counts
}

fn expected(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs
        .iter()
        .map(|(key, count)| ((*key).to_owned(), *count))
        .collect()
}

#[test]
fn recorded_client_frames_decode_typed_and_reencode_identically() {
    let labels = recorded("send").into_iter().map(|rec| {
        check_sent(&rec);
        rec.frame["type"].as_str().unwrap().to_owned()
    });
    let want = [
        ("hello", 15),
        ("send", 21),
        ("list_peers", 2),
        ("set_status", 4),
    ];
    assert_eq!(tally(labels.collect::<Vec<_>>()), expected(&want));
}

#[test]
fn recorded_broker_frames_decode_typed_and_reencode_identically() {
    let mut labels = Vec::new();
    for rec in recorded("recv") {
        labels.extend(check_received(&rec));
        labels.push(rec.frame["type"].as_str().unwrap().to_owned());
    }
    let no_peer = "ack error no connected peer for target (not online, or targetSpec is your own \
                   key without another session)";
    let want = [
        ("hello_ack", 15),
        ("error", 4),
        ("ack", 21),
        (no_peer, 1),
        ("push", 28),
        ("drained push", 12),
        ("live push", 5),
        ("event peer_joined", 1),
        ("event peer_returned", 7),
        ("event peer_left", 3),
        ("peers_list", 2),
    ];
    assert_eq!(tally(labels), expected(&want));
}

#[test]
fn recorded_close_lines_carry_code_and_reason() {
    let closes = recorded("close");
    for rec in &closes {
        assert!(rec.frame["code"].is_u64(), "{}", rec.place);
        assert!(rec.frame["reason"].is_string(), "{}", rec.place);
    }
    assert_eq!(closes.len(), 15);
}
