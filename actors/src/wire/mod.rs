//! Typed serde frames of the claudemesh broker WebSocket protocol, in both directions
//! (BROKER-PROTOCOL.md §0–§5). The same codec serves the daemon (client side: it encodes
//! [`ClientFrame`]s and decodes [`BrokerFrame`]s) and the dev broker (server side: the reverse).
//!
//! Invariants:
//! - Every WS text frame is one JSON object with a string `type`; there is no envelope.
//! - Field names and casing are exactly the wire's: camelCase almost everywhere, but
//!   `client_message_id` / `request_fingerprint` in snake_case on `send` and `push`, and
//!   `_reqId` for RPC correlation. Optional fields are omitted when `None`, never sent as `null`
//!   (the one exception is `peers_list[].summary`, which the broker always sends, `null` included).
//! - Decoding never fails because of an unknown `type` or an unknown field: [`decode_broker`]
//!   and [`decode_client`] return `Err` only when the text is not a JSON object with a string
//!   `type`. An unknown `type` becomes `Unknown { kind, raw }`; a known `type` whose fields do not
//!   fit becomes `Malformed { kind, raw, reason }` (the real broker silently drops such frames,
//!   and the daemon logs and ignores them).
//! - Encoding cannot fail for the frame types of this module; `Unknown` and `Malformed` encode
//!   back to their `raw` JSON unchanged.
//!
//! Pure: no actix, no I/O.

mod broker;
mod client;
mod event;
#[cfg(test)]
mod tests;

pub use broker::{Ack, BrokerFrame, HelloAck, Peer, Push};
pub use client::{ClientFrame, Hello, HelloTimestamp, Priority, SendFrame};
pub use event::SystemEvent;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

/// A group membership as sent in `hello.groups`, `hello_ack.restoredGroups` and system events:
/// `{name, role?}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Group name without the leading `@`.
    pub name: String,
    /// Free-form role inside the group; omitted when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// Why a text frame could not be decoded at all (it is not a typed JSON object).
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The text is not valid JSON.
    #[error("frame is not valid JSON ({len} bytes): {source}")]
    InvalidJson {
        /// Length of the offending text in bytes (the text itself may hold secrets).
        len: usize,
        /// The parser's error, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// The text is JSON but not an object.
    #[error("frame is a JSON {found}, not an object")]
    NotAnObject {
        /// JSON type actually found (`array`, `string`, ...).
        found: &'static str,
    },
    /// The object has no `type` field.
    #[error("frame has no `type` field")]
    MissingType,
    /// The object's `type` field is not a string.
    #[error("frame `type` is a JSON {found}, not a string")]
    TypeNotString {
        /// JSON type actually found.
        found: &'static str,
    },
}

/// Frame types [`encode`] accepts. Sealed: implemented only for types whose serialization
/// cannot fail (only strings, numbers, booleans, `Value`s and string-keyed maps).
pub trait WireFrame: Serialize + sealed::Sealed {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::ClientFrame {}
    impl Sealed for super::BrokerFrame {}
}

impl WireFrame for ClientFrame {}
impl WireFrame for BrokerFrame {}

/// Encodes a frame as compact JSON, ready for one WS text frame.
pub fn encode<T: WireFrame>(frame: &T) -> String {
    match serde_json::to_string(frame) {
        Ok(text) => text,
        // Unreachable by construction (see `WireFrame`); an empty object is what the broker
        // ignores most quietly, and the log names the bug.
        Err(err) => {
            log::error!("wire: frame failed to encode: {err}");
            String::from("{}")
        }
    }
}

/// Decodes a frame sent by the broker (daemon side). See the module invariants.
pub fn decode_broker(text: &str) -> Result<BrokerFrame, WireError> {
    let (kind, raw) = parse_typed_object(text)?;
    if !BrokerFrame::KNOWN_KINDS.contains(&kind.as_str()) {
        return Ok(BrokerFrame::Unknown { kind, raw });
    }
    Ok(match BrokerFrame::deserialize(&raw) {
        Ok(frame) => frame,
        Err(err) => BrokerFrame::Malformed {
            reason: broker::malformed_reason(&kind, &raw, &err),
            kind,
            raw,
        },
    })
}

/// Decodes a frame sent by a client (dev broker side). See the module invariants.
pub fn decode_client(text: &str) -> Result<ClientFrame, WireError> {
    let (kind, raw) = parse_typed_object(text)?;
    if !ClientFrame::KNOWN_KINDS.contains(&kind.as_str()) {
        return Ok(ClientFrame::Unknown { kind, raw });
    }
    Ok(match ClientFrame::deserialize(&raw) {
        Ok(frame) => frame,
        Err(err) => ClientFrame::Malformed {
            reason: client::malformed_reason(&kind, &raw, &err),
            kind,
            raw,
        },
    })
}

/// Explains why `raw` failed to decode as `kind`. The derived enum decoder only says that no
/// variant matched (a side effect of the raw-JSON variants), so the payload type is decoded
/// again on its own where there is one, for a message naming the field.
fn explain<T: for<'de> Deserialize<'de>>(
    kind: &str,
    raw: &Value,
    enum_error: &serde_json::Error,
) -> String {
    match T::deserialize(raw) {
        Err(err) => format!("`{kind}` frame: {err}"),
        Ok(_) => format!("`{kind}` frame: {enum_error}"),
    }
}

/// Parses `text` into a JSON object and returns its `type` string with the whole value.
fn parse_typed_object(text: &str) -> Result<(String, Value), WireError> {
    let raw: Value = serde_json::from_str(text).map_err(|source| WireError::InvalidJson {
        len: text.len(),
        source,
    })?;
    let Value::Object(map) = &raw else {
        return Err(WireError::NotAnObject {
            found: json_type_name(&raw),
        });
    };
    let kind = match map.get("type") {
        Some(Value::String(kind)) => kind.clone(),
        Some(other) => {
            return Err(WireError::TypeNotString {
                found: json_type_name(other),
            })
        }
        None => return Err(WireError::MissingType),
    };
    Ok((kind, raw))
}

fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Serializes an `Unknown`/`Malformed` variant as its raw JSON, unchanged.
fn serialize_raw<S: Serializer>(
    _kind: &String,
    raw: &Value,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    raw.serialize(serializer)
}

/// Same as [`serialize_raw`] for variants that also carry a `reason`.
fn serialize_raw_with_reason<S: Serializer>(
    _kind: &String,
    raw: &Value,
    _reason: &String,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    raw.serialize(serializer)
}
