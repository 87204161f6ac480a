//! Tests of the wire codec: hand-written edge cases ([`codec`], [`frames`]) and every line of
//! the recorded real-broker sessions ([`fixtures`]).

mod codec;
mod fixtures;
mod frames;

use serde_json::{json, Value};

use super::*;

pub(super) fn to_value<T: WireFrame>(frame: &T) -> Value {
    serde_json::from_str(&encode(frame)).unwrap()
}

pub(super) fn broker(frame: Value) -> BrokerFrame {
    decode_broker(&frame.to_string()).unwrap()
}

pub(super) fn client(frame: Value) -> ClientFrame {
    decode_client(&frame.to_string()).unwrap()
}

pub(super) fn ack_of(frame: Value) -> Ack {
    match broker(frame) {
        BrokerFrame::Ack(ack) => ack,
        other => panic!("not an ack: {other:?}"),
    }
}

pub(super) fn push_of(frame: Value) -> Push {
    match broker(frame) {
        BrokerFrame::Push(push) => push,
        other => panic!("not a push: {other:?}"),
    }
}

pub(super) fn system_push(event: &str, data: Value) -> Value {
    json!({"type": "push", "subtype": "system", "event": event, "eventData": data,
           "messageId": "7a5d0385-9fba-49ff-bc57-6306e4c56d5e", "meshId": "m",
           "senderPubkey": "system", "priority": "low", "nonce": "", "ciphertext": "",
           "createdAt": "2026-11-28T02:09:24.906Z"})
}
