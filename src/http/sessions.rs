//! The session routes (SPEC §12): `POST /v1/sessions/register`, `DELETE /v1/sessions/<token>`,
//! `GET /v1/sessions/me`, `GET /v1/sessions`.
//!
//! Invariant: no answer ever carries a token or a secret key — only the 8-hex `token_prefix`
//! and the session's public key ([`view_json`] is built from a [`SessionView`], which has
//! neither). Nothing here logs a token, a secret, or the reason text of a key parser.

use actix_web::{web, HttpRequest, HttpResponse};
use claudemesh_actors::crypto::MemberKeys;
use claudemesh_actors::handles::Handles;
use claudemesh_actors::sessions::model::{
    NewSession, ParentAttestation, SessionPresence, SessionToken, SessionView,
};
use claudemesh_actors::sessions::msg::{EndSession, ListSessions, RegisterSession};
use claudemesh_actors::time::iso_from_ms;
use serde_json::{json, Map, Value};

use super::caller::Caller;
use super::error::ApiError;
use super::limits::read_body;
use super::send_request::optional_string;

/// The JSON of one session (the `session` of `/me`, an item of the list).
pub fn view_json(s: &SessionView) -> Value {
    json!({
        "session_id": s.session_id,
        "mesh": s.mesh,
        "display_name": s.display_name,
        "pid": s.pid,
        "cwd": s.cwd,
        "role": s.role,
        "groups": s.groups,
        "registered_at": iso_from_ms(s.registered_at),
        "token_prefix": s.token_prefix,
        "session_pubkey": s.session_pubkey,
        "presence_status": s.presence_status.as_str(),
    })
}

/// A registration body after validation; `presence` is still raw (it is judged against the
/// mesh's member key, and a bad one only costs the session its presence).
#[derive(Debug)]
pub struct Registration {
    pub session: NewSession,
    pub presence: Option<Value>,
}

fn required_string(obj: &Map<String, Value>, field: &str) -> Result<String, ApiError> {
    match optional_string(obj, field)? {
        Some(s) if !s.trim().is_empty() => Ok(s.to_string()),
        _ => Err(ApiError::invalid(format!(
            "`{field}` is required (a non-empty string)"
        ))),
    }
}

/// Parses a registration: `token` (64 hex), `session_id`, `mesh`, `display_name`, `pid` (a
/// positive integer) required; `cwd`, `role` strings and `groups` (strings) optional.
pub fn parse_registration(body: &[u8]) -> Result<Registration, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("body is not valid JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(ApiError::invalid("body must be a JSON object"));
    };
    let token = match obj.get("token") {
        Some(Value::String(t)) => SessionToken::parse(t),
        _ => None,
    }
    .ok_or_else(|| ApiError::invalid("`token` is required (64 hex characters)"))?;
    let session_id = required_string(&obj, "session_id")?;
    let mesh = required_string(&obj, "mesh")?;
    let display_name = required_string(&obj, "display_name")?;
    let pid = obj
        .get("pid")
        .and_then(Value::as_u64)
        .and_then(|p| u32::try_from(p).ok())
        .filter(|p| (1..=i32::MAX as u32).contains(p))
        .ok_or_else(|| ApiError::invalid("`pid` is required (a positive integer)"))?;
    let groups = match obj.get("groups") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|g| g.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| ApiError::invalid("`groups` must be an array of strings"))?,
        Some(_) => return Err(ApiError::invalid("`groups` must be an array of strings")),
    };
    Ok(Registration {
        session: NewSession {
            token,
            session_id,
            mesh,
            display_name,
            pid,
            cwd: optional_string(&obj, "cwd")?.map(str::to_string),
            role: optional_string(&obj, "role")?.map(str::to_string),
            groups,
            presence: None,
        },
        presence: obj.get("presence").filter(|p| !p.is_null()).cloned(),
    })
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Judges presence material: the keypair must be consistent (the secret's seed yields the
/// pubkey) and the attestation must name that session key and this mesh's member key. The
/// error is a fixed phrase, safe to log (never the material).
pub fn parse_presence(raw: &Value, member_pubkey: &str) -> Result<SessionPresence, &'static str> {
    let text = |v: &Value, f: &str| {
        v.get(f)
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
    };
    let pubkey = text(raw, "session_pubkey").ok_or("session_pubkey missing")?;
    let secret = text(raw, "session_secret_key").ok_or("session_secret_key missing")?;
    if !is_hex(&pubkey, 64) || !is_hex(&secret, 128) {
        return Err("session keys are not 64/128 hex characters");
    }
    let keys = MemberKeys::from_hex(&pubkey, &secret)
        .map_err(|_| "session_secret_key does not belong to session_pubkey")?;
    let att = raw
        .get("parent_attestation")
        .filter(|a| a.is_object())
        .ok_or("parent_attestation missing")?;
    let attestation = ParentAttestation {
        session_pubkey: text(att, "session_pubkey").ok_or("attestation session_pubkey missing")?,
        parent_member_pubkey: text(att, "parent_member_pubkey")
            .ok_or("attestation parent_member_pubkey missing")?,
        expires_at: att
            .get("expires_at")
            .and_then(Value::as_i64)
            .ok_or("attestation expires_at missing")?,
        signature: text(att, "signature").ok_or("attestation signature missing")?,
    };
    if attestation.session_pubkey != pubkey {
        return Err("the attestation names another session key");
    }
    if attestation.parent_member_pubkey != member_pubkey.to_ascii_lowercase() {
        return Err("the attestation names another member than this mesh's");
    }
    if !is_hex(&attestation.signature, 128) {
        return Err("attestation signature is not 128 hex characters");
    }
    Ok(SessionPresence { keys, attestation })
}

/// The registry's mailbox is closed (shutdown in progress): 503.
fn registry_gone(source: actix::MailboxError) -> ApiError {
    ApiError::Unavailable {
        actor: "session registry",
        source,
    }
}

/// `POST /v1/sessions/register`.
pub async fn register(
    payload: web::Payload,
    handles: web::Data<Handles>,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(payload, handles.tuning.ipc.body_limit).await?;
    let Registration {
        mut session,
        presence,
    } = parse_registration(&body)?;
    let Some(mesh) = handles.meshes.iter().find(|m| m.slug == session.mesh) else {
        return Err(ApiError::MeshNotAttached {
            mesh: session.mesh,
            meshes: handles.slugs(),
        });
    };
    if let Some(raw) = presence {
        match parse_presence(&raw, &mesh.member_pubkey) {
            Ok(p) => session.presence = Some(p),
            Err(why) => log::warn!(
                "session {} (mesh {}): presence not accepted: {why}; registered without it",
                session.session_id,
                session.mesh
            ),
        }
    }
    let registered = handles
        .sessions
        .send(RegisterSession { session })
        .await
        .map_err(registry_gone)?
        .map_err(|source| ApiError::Sessions {
            operation: "register",
            source: Box::new(source),
        })?;
    Ok(HttpResponse::Ok().json(json!({
        "ok": true,
        "registered_at": iso_from_ms(registered.registered_at),
        "presence_accepted": registered.presence_accepted,
    })))
}

/// `DELETE /v1/sessions/<token>`.
pub async fn deregister(
    req: HttpRequest,
    handles: web::Data<Handles>,
) -> Result<HttpResponse, ApiError> {
    let raw = req.match_info().get("token").unwrap_or_default();
    let token = SessionToken::parse(raw)
        .ok_or_else(|| ApiError::invalid("the session token must be 64 hex characters"))?;
    let ended = handles
        .sessions
        .send(EndSession { token })
        .await
        .map_err(registry_gone)?
        .map_err(|source| ApiError::Sessions {
            operation: "deregister",
            source: Box::new(source),
        })?;
    match ended {
        Some(token_prefix) => {
            Ok(HttpResponse::Ok().json(json!({"ok": true, "token_prefix": token_prefix})))
        }
        None => Err(ApiError::NotFound),
    }
}

/// `GET /v1/sessions/me`.
pub async fn me(caller: Caller) -> Result<HttpResponse, ApiError> {
    match caller.0 {
        Some(s) => Ok(HttpResponse::Ok().json(json!({ "session": view_json(&s) }))),
        None => Err(ApiError::NoSession),
    }
}

/// `GET /v1/sessions`.
pub async fn list(handles: web::Data<Handles>) -> Result<HttpResponse, ApiError> {
    let all = handles
        .sessions
        .send(ListSessions)
        .await
        .map_err(registry_gone)?;
    Ok(HttpResponse::Ok().json(json!({
        "sessions": all.iter().map(view_json).collect::<Vec<_>>(),
    })))
}

#[cfg(test)]
#[path = "sessions_tests.rs"]
mod tests;
