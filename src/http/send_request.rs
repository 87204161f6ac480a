//! Phase-A validation of `POST /v1/send` (SPEC §5.1): the body parsed as JSON whatever its
//! `Content-Type`, field types, the idempotency id (body field or `Idempotency-Key` header),
//! the `to` forms, and the broker's size rule. Pure: nothing is written and no actor is asked,
//! so a refused request leaves its id free.

use serde_json::{Map, Value};

use super::error::ApiError;

/// The broker's `MAX_MESSAGE_BYTES` (BROKER-PROTOCOL §2.3).
pub const BROKER_MAX_MESSAGE_BYTES: usize = 65_536;
/// Length of a base64 24-byte nonce.
const NONCE_B64_LEN: usize = 32;
/// crypto_box MAC overhead counted on every message.
const BOX_OVERHEAD: usize = 16;
/// targetSpec length counted for a name or prefix resolved later (a full pubkey).
const RESOLVED_TARGET_LEN: usize = 64;
/// Longest accepted `client_message_id`.
pub const MAX_CLIENT_ID_LEN: usize = 128;

/// Send priority (`next` by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Priority {
    /// Deliver now, even to a busy peer.
    Now,
    /// Deliver at the peer's next turn.
    #[default]
    Next,
    /// Deliver when the peer is idle.
    Low,
}

impl Priority {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Now => "now",
            Priority::Next => "next",
            Priority::Low => "low",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "now" => Some(Priority::Now),
            "next" => Some(Priority::Next),
            "low" => Some(Priority::Low),
            _ => None,
        }
    }
}

/// What a `to` names (SPEC §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetForm {
    /// `*` or `@all`.
    Broadcast,
    /// `@<group>`.
    Group,
    /// `#<topic id>`.
    Topic,
    /// 64 lowercase hex: a DM to that pubkey.
    Pubkey,
    /// A display name or a 16–63 hex pubkey prefix, resolved against the peer list.
    Name,
}

impl TargetForm {
    /// True when `to` is used verbatim as the row's target (no resolution).
    pub fn is_literal(self) -> bool {
        !matches!(self, TargetForm::Name)
    }
}

/// Classifies a trimmed `to`; an empty one, or a bare `@`/`#`, is invalid.
pub fn classify_target(to: &str) -> Result<TargetForm, ApiError> {
    if to.is_empty() {
        return Err(ApiError::invalid("`to` must not be empty"));
    }
    if to == "*" || to == "@all" {
        return Ok(TargetForm::Broadcast);
    }
    if let Some(group) = to.strip_prefix('@') {
        return if group.is_empty() {
            Err(ApiError::invalid("`to` names an empty group"))
        } else {
            Ok(TargetForm::Group)
        };
    }
    if let Some(topic) = to.strip_prefix('#') {
        return if topic.is_empty() {
            Err(ApiError::invalid("`to` names an empty topic"))
        } else {
            Ok(TargetForm::Topic)
        };
    }
    if is_full_pubkey(to) {
        return Ok(TargetForm::Pubkey);
    }
    Ok(TargetForm::Name)
}

/// True for exactly 64 lowercase hex characters.
pub fn is_full_pubkey(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Length of standard padded base64 of `n` bytes.
pub fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// The size the broker checks: base64(message + 16) + 32 (nonce) + targetSpec length, with
/// names counted as a 64-char pubkey.
pub fn broker_size(message_len: usize, to: &str, form: TargetForm) -> usize {
    let target_len = if form.is_literal() {
        to.len()
    } else {
        RESOLVED_TARGET_LEN
    };
    base64_len(message_len + BOX_OVERHEAD) + NONCE_B64_LEN + target_len
}

/// 413 when the broker would refuse the message as too large.
pub fn check_broker_size(message_len: usize, to: &str, form: TargetForm) -> Result<(), ApiError> {
    if broker_size(message_len, to, form) > BROKER_MAX_MESSAGE_BYTES {
        return Err(ApiError::PayloadTooLarge {
            limit_bytes: BROKER_MAX_MESSAGE_BYTES,
        });
    }
    Ok(())
}

/// Checks an idempotency id: 1–128 printable ASCII characters (0x20–0x7e).
pub fn validate_client_id(id: &str, source: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > MAX_CLIENT_ID_LEN {
        return Err(ApiError::invalid(format!(
            "{source} must be 1-{MAX_CLIENT_ID_LEN} characters"
        )));
    }
    if !id.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(ApiError::invalid(format!(
            "{source} must be printable ASCII"
        )));
    }
    Ok(())
}

/// A `POST /v1/send` body that passed phase A's type checks.
#[derive(Debug, Clone, PartialEq)]
pub struct SendRequest {
    /// Trimmed destination.
    pub to: String,
    /// Its form.
    pub form: TargetForm,
    /// Message text, non-empty.
    pub message: String,
    /// Priority (default `next`).
    pub priority: Priority,
    /// `meta` object; `None` when absent or null.
    pub meta: Option<Map<String, Value>>,
    /// `reply_to_id`; `None` when absent, null or empty.
    pub reply_to_id: Option<String>,
    /// Body `client_message_id`, else the `Idempotency-Key` header; `None` = mint one.
    pub client_message_id: Option<String>,
    /// Mesh slug; `None` = the default mesh.
    pub mesh: Option<String>,
}

/// Parses and type-checks a send body. `idempotency_key` is the raw header value, if any.
pub fn parse_send(body: &[u8], idempotency_key: Option<&[u8]>) -> Result<SendRequest, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("body is not valid JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(ApiError::invalid("body must be a JSON object"));
    };
    let to = required_string(&obj, "to")?.trim().to_string();
    let form = classify_target(&to)?;
    let message = required_string(&obj, "message")?.to_string();
    if message.is_empty() {
        return Err(ApiError::invalid("`message` must not be empty"));
    }
    let priority = match optional_string(&obj, "priority")? {
        None => Priority::default(),
        Some(p) => Priority::parse(p)
            .ok_or_else(|| ApiError::invalid(format!("unknown priority {p:?} (now|next|low)")))?,
    };
    let meta = match obj.get("meta") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m.clone()),
        Some(_) => return Err(ApiError::invalid("`meta` must be an object")),
    };
    let reply_to_id = optional_string(&obj, "reply_to_id")?
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let mesh = optional_string(&obj, "mesh")?.map(str::to_string);
    let client_message_id = match optional_string(&obj, "client_message_id")? {
        Some(id) => {
            validate_client_id(id, "client_message_id")?;
            Some(id.to_string())
        }
        None => match idempotency_key {
            Some(raw) => {
                let id = std::str::from_utf8(raw)
                    .map_err(|_| ApiError::invalid("Idempotency-Key must be printable ASCII"))?;
                validate_client_id(id, "Idempotency-Key")?;
                Some(id.to_string())
            }
            None => None,
        },
    };
    Ok(SendRequest {
        to,
        form,
        message,
        priority,
        meta,
        reply_to_id,
        client_message_id,
        mesh,
    })
}

fn required_string<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a str, ApiError> {
    match obj.get(field) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(ApiError::invalid(format!("`{field}` is required"))),
        Some(_) => Err(ApiError::invalid(format!("`{field}` must be a string"))),
    }
}

/// A string field that may be absent or null.
pub(crate) fn optional_string<'a>(
    obj: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a str>, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::invalid(format!("`{field}` must be a string"))),
    }
}

#[cfg(test)]
#[path = "send_request_tests.rs"]
mod tests;
