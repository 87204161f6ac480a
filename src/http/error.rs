//! [`ApiError`]: every way a `/v1` request can fail, and the one place that turns a failure
//! into an HTTP status and a JSON body `{"error": code, …}` (SPEC §5.1, §5.3, §8, §9).
//!
//! Invariant: a response body only ever carries the documented fields. Internal failures
//! (a closed mailbox, a SQL error) are logged here with their context and answered with a
//! bare code, never with the internal message.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use claudemesh_actors::inbox::msg::InboxActorError;
use claudemesh_actors::outbox::msg::OutboxError;
use claudemesh_actors::sessions::msg::SessionError;
use claudemesh_actors::storage::StorageFault;
use serde_json::{json, Value};

/// A failed `/v1` request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed JSON, a wrong type, a bad id or query parameter (400 `invalid_request`).
    #[error("invalid request: {detail}")]
    InvalidRequest {
        /// Human-readable reason, returned to the client.
        detail: String,
    },
    /// The client did not finish sending its body in time (408).
    #[error("request body not received within {secs} s")]
    RequestTimeout {
        /// The time allowed.
        secs: u64,
    },
    /// The body, or the message as the broker would see it, is too large (413).
    #[error("payload too large (limit {limit_bytes} bytes)")]
    PayloadTooLarge {
        /// The limit that was exceeded.
        limit_bytes: usize,
    },
    /// The request names a mesh the daemon is not attached to (400).
    #[error("unknown mesh {requested:?}")]
    UnknownMesh {
        /// The slug asked for.
        requested: String,
        /// The slugs the daemon is attached to.
        meshes: Vec<String>,
    },
    /// A fresh peer list has no peer of that name or prefix (404).
    #[error("unknown peer {name:?}")]
    UnknownPeer {
        /// The name as given.
        name: String,
    },
    /// Several peers match the name or prefix (400).
    #[error("ambiguous peer {name:?}")]
    AmbiguousPeer {
        /// The name as given.
        name: String,
        /// What matched, for the client to choose from.
        candidates: Vec<String>,
    },
    /// The `client_message_id` already names another request or a finished row (409).
    #[error("idempotency key {client_message_id:?} reused: {conflict}")]
    IdempotencyKeyReused {
        /// The id that was reused.
        client_message_id: String,
        /// The SPEC §5.3 conflict code, e.g. `outbox_done_fingerprint_mismatch`.
        conflict: &'static str,
        /// First 8 bytes of the incoming request's fingerprint, 16 hex.
        daemon_fingerprint_prefix: String,
        /// The existing row's broker id, when it has one.
        broker_message_id: Option<String>,
        /// The dead row's last error (`outbox_dead_fingerprint_match` only).
        reason: Option<String>,
    },
    /// Unknown route or unknown row (404 `not_found`).
    #[error("not found")]
    NotFound,
    /// Known route, wrong method (405).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// TCP request without the right bearer token (401).
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// Unix-socket peer running as another user (403).
    #[error("socket peer uid {peer_uid} is not the daemon's uid {daemon_uid}")]
    ForbiddenPeer {
        /// The connecting process's uid.
        peer_uid: u32,
        /// Ours.
        daemon_uid: u32,
    },
    /// `Host` header other than a loopback name (403, DNS-rebinding guard).
    #[error("forbidden Host header")]
    ForbiddenHost,
    /// Any `Origin` header, i.e. a browser (403).
    #[error("forbidden Origin header")]
    ForbiddenOrigin,
    /// The token was put in the query string (400).
    #[error("token passed in the query string")]
    TokenInQuery,
    /// Too many requests in flight (429 with `Retry-After`).
    #[error("daemon busy ({max} requests in flight)")]
    DaemonBusy {
        /// `ipc.max_inflight`.
        max: usize,
    },
    /// The SSE stream cap is reached (429).
    #[error("too many event streams (max {max})")]
    TooManyStreams {
        /// `ipc.max_sse_streams`.
        max: usize,
    },
    /// The broker of that mesh is down and nothing is cached (503).
    #[error("broker of mesh {mesh:?} unavailable")]
    BrokerUnavailable {
        /// Mesh slug.
        mesh: String,
    },
    /// Requeue of a row that is `done`, `aborted` or actually in flight (409).
    #[error("outbox row {id} is {status} and cannot be requeued")]
    NotRequeueable {
        /// Row id.
        id: i64,
        /// Its current status.
        status: String,
    },
    /// Requeue with a new id that is already used (409).
    #[error("client_message_id {client_message_id:?} is already used")]
    ClientIdInUse {
        /// The id asked for.
        client_message_id: String,
    },
    /// Requeue of a row adopted without a recorded destination (409).
    #[error("outbox row {id} has no recorded destination")]
    DestinationUnknown {
        /// Row id.
        id: i64,
    },
    /// An actor's mailbox is closed: the daemon is shutting down (503).
    #[error("{actor} unavailable: {source}")]
    Unavailable {
        /// Which actor did not answer.
        actor: &'static str,
        /// The mailbox failure.
        source: actix::MailboxError,
    },
    /// The OutboxDrainer failed (500), or is gone (503 during shutdown).
    #[error("outbox: {operation}: {source}")]
    Outbox {
        /// What the handler asked for.
        operation: &'static str,
        /// The drainer's error (boxed: it is large and rare).
        source: Box<OutboxError>,
    },
    /// The InboxStore failed (500), or is gone (503 during shutdown).
    #[error("inbox: {operation}: {source}")]
    Inbox {
        /// What the handler asked for.
        operation: &'static str,
        /// The store's error (boxed: it is large and rare).
        source: Box<InboxActorError>,
    },
    /// A file the request had to write could not be written (507/503/500 by its fault).
    #[error("{operation}: {}", fault.as_str())]
    Storage {
        /// What was being written.
        operation: &'static str,
        /// The storage failure.
        fault: StorageFault,
    },
    /// `GET /v1/sessions/me` without the header of a registered session (401).
    #[error("no registered session token in the request")]
    NoSession,
    /// A session registration names a mesh the daemon is not attached to (404).
    #[error("mesh {mesh:?} is not attached")]
    MeshNotAttached {
        /// The slug asked for.
        mesh: String,
        /// The slugs the daemon is attached to.
        meshes: Vec<String>,
    },
    /// The session registry failed (500), or is gone (503 during shutdown).
    #[error("sessions: {operation}: {source}")]
    Sessions {
        /// What the handler asked for.
        operation: &'static str,
        /// The registry's error.
        source: Box<SessionError>,
    },
    /// The IPC server was built without app data a route needs (500; a wiring bug).
    #[error("ipc server misconfigured: {missing} not registered as app data")]
    Misconfigured {
        /// The missing type.
        missing: &'static str,
    },
}

impl ApiError {
    /// Shorthand for [`ApiError::InvalidRequest`].
    pub fn invalid(detail: impl Into<String>) -> Self {
        ApiError::InvalidRequest {
            detail: detail.into(),
        }
    }

    /// The `error` code of the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidRequest { .. } => "invalid_request",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnknownMesh { .. } => "unknown_mesh",
            ApiError::UnknownPeer { .. } => "unknown_peer",
            ApiError::AmbiguousPeer { .. } => "ambiguous_peer",
            ApiError::IdempotencyKeyReused { .. } => "idempotency_key_reused",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Unauthorized => "unauthorized",
            ApiError::ForbiddenPeer { .. } => "forbidden_peer",
            ApiError::ForbiddenHost => "forbidden_host",
            ApiError::ForbiddenOrigin => "forbidden_origin",
            ApiError::TokenInQuery => "token_in_query",
            ApiError::RequestTimeout { .. } => "request_timeout",
            ApiError::DaemonBusy { .. } => "daemon_busy",
            ApiError::TooManyStreams { .. } => "too_many_streams",
            ApiError::BrokerUnavailable { .. } => "broker_unavailable",
            ApiError::NotRequeueable { .. } => "not_requeueable",
            ApiError::ClientIdInUse { .. } => "client_message_id_in_use",
            ApiError::DestinationUnknown { .. } => "destination_unknown",
            ApiError::NoSession => "no_session",
            ApiError::MeshNotAttached { .. } => "mesh_not_attached",
            ApiError::Unavailable { .. } => "daemon_unavailable",
            ApiError::Sessions { source, .. } if sessions_gone(source) => "daemon_unavailable",
            ApiError::Outbox { source, .. } if outbox_gone(source) => "daemon_unavailable",
            _ if self.fault() == Some(StorageFault::Full) => "insufficient_storage",
            _ if self.fault() == Some(StorageFault::Busy) => "storage_busy",
            _ if self.fault() == Some(StorageFault::Io) => "storage_error",
            ApiError::Inbox { source, .. } if inbox_gone(source) => "daemon_unavailable",
            ApiError::Outbox { .. }
            | ApiError::Inbox { .. }
            | ApiError::Storage { .. }
            | ApiError::Sessions { .. }
            | ApiError::Misconfigured { .. } => "internal",
        }
    }

    /// The JSON body sent to the client.
    pub fn body(&self) -> Value {
        let code = self.code();
        match self {
            ApiError::InvalidRequest { detail } => json!({"error": code, "detail": detail}),
            ApiError::PayloadTooLarge { limit_bytes } => {
                json!({"error": code, "limit_bytes": limit_bytes})
            }
            ApiError::UnknownMesh { meshes, .. } => json!({"error": code, "meshes": meshes}),
            ApiError::AmbiguousPeer { candidates, .. } => {
                json!({"error": code, "candidates": candidates})
            }
            ApiError::IdempotencyKeyReused {
                conflict,
                daemon_fingerprint_prefix,
                broker_message_id,
                reason,
                ..
            } => {
                let mut body = json!({
                    "error": code,
                    "conflict": conflict,
                    "daemon_fingerprint_prefix": daemon_fingerprint_prefix,
                    "broker_message_id": broker_message_id,
                });
                if let (Some(reason), Some(map)) = (reason, body.as_object_mut()) {
                    map.insert("reason".into(), Value::String(reason.clone()));
                }
                body
            }
            ApiError::NotRequeueable { id, status } => {
                json!({"error": code, "id": id, "status": status})
            }
            ApiError::ClientIdInUse { client_message_id } => {
                json!({"error": code, "client_message_id": client_message_id})
            }
            ApiError::DestinationUnknown { id } => json!({"error": code, "id": id}),
            _ if self.fault() == Some(StorageFault::Full) => json!({
                "error": code,
                "detail": "the filesystem holding the daemon's databases is full; nothing was written: free space and retry",
            }),
            ApiError::MeshNotAttached { mesh, meshes } => {
                json!({"error": code, "mesh": mesh, "meshes": meshes})
            }
            _ => json!({ "error": code }),
        }
    }
}

impl ApiError {
    /// The storage failure behind an outbox or inbox error (SPEC §5.1 "Storage failures").
    pub fn fault(&self) -> Option<StorageFault> {
        match self {
            ApiError::Outbox { source, .. } => source.fault(),
            ApiError::Inbox { source, .. } => source.fault(),
            ApiError::Storage { fault, .. } => Some(*fault),
            _ => None,
        }
    }
}

/// True when the drainer did not answer because it is shutting down.
fn outbox_gone(e: &OutboxError) -> bool {
    matches!(e, OutboxError::Mailbox(_) | OutboxError::Cancelled)
}

/// True when the session registry did not answer because it is shutting down.
fn sessions_gone(e: &SessionError) -> bool {
    matches!(e, SessionError::Mailbox(_))
}

/// True when the inbox actor did not answer because it is shutting down.
fn inbox_gone(e: &InboxActorError) -> bool {
    matches!(e, InboxActorError::Mailbox(_))
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest { .. }
            | ApiError::UnknownMesh { .. }
            | ApiError::AmbiguousPeer { .. }
            | ApiError::TokenInQuery => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnknownPeer { .. }
            | ApiError::NotFound
            | ApiError::MeshNotAttached { .. } => StatusCode::NOT_FOUND,
            ApiError::IdempotencyKeyReused { .. }
            | ApiError::NotRequeueable { .. }
            | ApiError::ClientIdInUse { .. }
            | ApiError::DestinationUnknown { .. } => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unauthorized | ApiError::NoSession => StatusCode::UNAUTHORIZED,
            ApiError::ForbiddenPeer { .. }
            | ApiError::ForbiddenHost
            | ApiError::ForbiddenOrigin => StatusCode::FORBIDDEN,
            ApiError::DaemonBusy { .. } | ApiError::TooManyStreams { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::BrokerUnavailable { .. } | ApiError::Unavailable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Outbox { source, .. } if outbox_gone(source) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Inbox { source, .. } if inbox_gone(source) => StatusCode::SERVICE_UNAVAILABLE,
            _ if self.fault() == Some(StorageFault::Full) => StatusCode::INSUFFICIENT_STORAGE,
            _ if self.fault() == Some(StorageFault::Busy) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Sessions { source, .. } if sessions_gone(source) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Outbox { .. }
            | ApiError::Inbox { .. }
            | ApiError::Storage { .. }
            | ApiError::Sessions { .. }
            | ApiError::Misconfigured { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let full_or_busy = matches!(self.fault(), Some(StorageFault::Full | StorageFault::Busy));
        if status.is_server_error() && !full_or_busy {
            log::error!("ipc request failed: {self}");
        } else {
            // Refusals; a full or busy database is logged by the drainer, once a minute.
            log::debug!("ipc request refused: {self}");
        }
        let mut resp = HttpResponse::build(status);
        if closes_connection(status) {
            // A refused client (often another local user probing the TCP port) does not
            // keep its connection, and an unread body is not drained.
            resp.force_close();
        }
        if matches!(self, ApiError::DaemonBusy { .. }) || self.fault() == Some(StorageFault::Busy) {
            resp.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
        }
        resp.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        resp.json(self.body())
    }
}

/// Answers after which the connection is closed: malformed (400), unauthenticated (401),
/// forbidden (403), too slow (408) or too large (413) requests.
pub fn closes_connection(status: StatusCode) -> bool {
    matches!(status.as_u16(), 400 | 401 | 403 | 408 | 413)
}

#[cfg(test)]
#[path = "error_tests.rs"]
mod tests;
