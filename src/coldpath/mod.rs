//! The cold-path send (SPEC §10): `claudemeshd send` when no daemon answers on the socket.
//! One short-lived WebSocket to the mesh's broker, as the member itself: hello (signed with
//! the member key, no `sessionPubkey`, `sessionId` `cli-<pid>`), `list_peers` when the
//! destination is a name or prefix, one `send`, its `ack`, close 1000.
//!
//! It uses the daemon's own rules so a message means the same whichever path carried it: the
//! body is validated by the HTTP layer's phase-A parser, names resolve through the engine's
//! [`PeerCache::resolve`], DMs are sealed with the member secret, the frame carries
//! `id` = `client_message_id` and the SPEC §5.2 request fingerprint.
//!
//! Invariants: it never opens the daemon's databases or writes into the daemon dir (settings
//! are read, nothing is written); it sends nothing before `hello_ack` and nothing but the
//! one `list_peers` and the one `send` after it; it never sends `client_ack`, so a head broker
//! redelivers any queued push that reached this connection to the daemon later. (A seed
//! broker marks drained pushes delivered when it sends them: those are counted in
//! [`ColdSent::pushes_ignored`] and reported, since this path cannot store them.)

pub mod error;
mod link;

use std::time::Duration;

use serde_json::{json, Value};

use claudemesh_actors::crypto::MemberKeys;
use claudemesh_actors::fingerprint::{destination_for, request_fingerprint};
use claudemesh_actors::settings::JoinedMesh;
use claudemesh_actors::time::now_ms;
use claudemesh_actors::wire::{self, ClientFrame, Hello, Priority};

pub use error::ColdPathError;

use crate::http::send_request::{check_broker_size, parse_send, TargetForm};
use crate::settings::{self, UpFlags};

/// How long to wait for the broker's `ack` of the send.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the broker's close echo after our close 1000.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// What to send, as the user gave it.
#[derive(Debug, Clone, Default)]
pub struct ColdRequest {
    /// Destination (SPEC §5.1 forms).
    pub to: String,
    /// Message text.
    pub message: String,
    /// `now|next|low`; `None` = `next`.
    pub priority: Option<String>,
    /// `meta` (must be a JSON object).
    pub meta: Option<Value>,
    /// `reply_to_id`.
    pub reply_to_id: Option<String>,
    /// Idempotency key; `None` mints a ULID.
    pub client_message_id: Option<String>,
    /// Mesh slug; `None` = the default mesh.
    pub mesh: Option<String>,
}

/// A send the broker accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColdSent {
    /// The id sent as `id`/`client_message_id`.
    pub client_message_id: String,
    /// The ack's `messageId`.
    pub broker_message_id: String,
    /// The mesh slug used.
    pub mesh: String,
    /// The `targetSpec` sent (a name resolved to its pubkey).
    pub target: String,
    /// A deduplicating broker had already accepted this id with this fingerprint.
    pub duplicate: bool,
    /// Queued pushes for this member that reached the one-shot connection and were not stored.
    pub pushes_ignored: usize,
}

/// Everything the async part needs, prepared and validated up front.
struct Plan {
    mesh: JoinedMesh,
    keys: MemberKeys,
    display_name: Option<String>,
    to: String,
    form: TargetForm,
    message: String,
    priority: Priority,
    reply_to_id: Option<String>,
    client_message_id: String,
    fingerprint_hex: String,
    hello_timeout: Duration,
    max_frame: usize,
}

/// Sends `req` straight to the broker; blocks until the ack (or a failure).
pub fn send(
    req: ColdRequest,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ColdSent, ColdPathError> {
    let plan = prepare(req, env)?;
    actix_web::rt::System::new().block_on(link::run(plan))
}

fn prepare(req: ColdRequest, env: &dyn Fn(&str) -> Option<String>) -> Result<Plan, ColdPathError> {
    let settings = settings::load(&UpFlags::default(), env)?;
    let slug = req.mesh.clone().unwrap_or(settings.default_mesh.clone());
    let mesh = settings
        .config
        .meshes
        .iter()
        .find(|m| m.slug == slug)
        .cloned()
        .ok_or_else(|| ColdPathError::UnknownMesh {
            requested: slug.clone(),
            joined: settings
                .config
                .meshes
                .iter()
                .map(|m| m.slug.clone())
                .collect(),
        })?;
    let mut body = json!({"to": req.to, "message": req.message});
    for (k, v) in [
        ("priority", req.priority.map(Value::from)),
        ("meta", req.meta),
        ("reply_to_id", req.reply_to_id.map(Value::from)),
        ("client_message_id", req.client_message_id.map(Value::from)),
    ] {
        if let Some(v) = v {
            body[k] = v;
        }
    }
    let invalid = |e: crate::http::error::ApiError| ColdPathError::Invalid {
        detail: e.to_string(),
    };
    let parsed = parse_send(body.to_string().as_bytes(), None).map_err(invalid)?;
    check_broker_size(parsed.message.len(), &parsed.to, parsed.form).map_err(invalid)?;
    let keys = MemberKeys::from_hex(&mesh.pubkey, &mesh.secret_key).map_err(|source| {
        ColdPathError::Keys {
            slug: mesh.slug.clone(),
            source,
        }
    })?;
    let meta = parsed.meta.clone().map(Value::Object);
    let fingerprint = request_fingerprint(
        &destination_for(&parsed.to),
        parsed.reply_to_id.as_deref(),
        parsed.priority.as_str(),
        meta.as_ref(),
        parsed.message.as_bytes(),
    )
    .map_err(|e| ColdPathError::Invalid {
        detail: format!("`meta` cannot be canonicalised: {e}"),
    })?;
    let priority = match parsed.priority.as_str() {
        "now" => Priority::Now,
        "low" => Priority::Low,
        _ => Priority::Next,
    };
    Ok(Plan {
        keys,
        display_name: settings.display_name.clone(),
        to: parsed.to,
        form: parsed.form,
        message: parsed.message,
        priority,
        reply_to_id: parsed.reply_to_id,
        client_message_id: parsed
            .client_message_id
            .unwrap_or_else(|| ulid::Ulid::new().to_string()),
        fingerprint_hex: hex::encode(fingerprint),
        hello_timeout: Duration::from_millis(settings.tuning.broker.hello_timeout_ms),
        max_frame: settings.tuning.broker.max_frame_bytes,
        mesh,
    })
}

/// The member's hello for this one-shot connection.
fn hello(plan: &Plan) -> String {
    let ts = now_ms();
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "/".to_string());
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty());
    wire::encode(&ClientFrame::Hello(Hello {
        mesh_id: plan.mesh.mesh_id.clone(),
        member_id: plan.mesh.member_id.clone(),
        pubkey: plan.mesh.pubkey.clone(),
        session_pubkey: None,
        display_name: plan.display_name.clone(),
        session_id: format!("cli-{}", std::process::id()),
        pid: std::process::id(),
        cwd,
        hostname,
        peer_type: Some("ai".into()),
        channel: Some("claudemeshd-cli".into()),
        model: None,
        groups: None,
        protocol_version: None,
        capabilities: None,
        timestamp: ts.into(),
        signature: plan
            .keys
            .sign_hello(&plan.mesh.mesh_id, &plan.mesh.member_id, ts),
    }))
}

#[cfg(test)]
mod tests;
