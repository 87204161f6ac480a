//! The outbox routes (SPEC §8): `GET /v1/outbox?status=&limit=`, `GET /v1/outbox/{id}` and
//! `POST /v1/outbox/requeue`. Rows are shown with ISO 8601 times and `payload_bytes`, never
//! with their payload; `{id}` is always the row id.

use actix_web::{web, HttpRequest, HttpResponse};
use claudemesh_actors::handles::Handles;
use claudemesh_actors::outbox::msg::{OutboxError, RequeueRow};
use claudemesh_actors::outbox::store::{self, OutboxRow, RequeueError, Status};
use claudemesh_actors::time::iso_from_ms;
use serde_json::{json, Value};

use super::error::ApiError;
use super::limits::read_body;
use super::query::OutboxParams;
use super::send_request::{optional_string, validate_client_id};

/// Who an IPC requeue is recorded as (`aborted_by`).
const REQUEUED_BY: &str = "ipc";

/// One row as the API shows it (the names the TS CLI reads).
pub fn row_json(row: &OutboxRow) -> Value {
    json!({
        "id": row.id,
        "client_message_id": row.client_message_id,
        "status": row.status.as_str(),
        "attempts": row.attempts,
        "enqueued_at": iso_from_ms(row.enqueued_at),
        "next_attempt_at": iso_from_ms(row.next_attempt_at),
        "delivered_at": row.delivered_at.map(iso_from_ms),
        "broker_message_id": row.broker_message_id,
        "last_error": row.last_error,
        "aborted_at": row.aborted_at.map(iso_from_ms),
        "aborted_by": row.aborted_by,
        "superseded_by": row.superseded_by,
        "payload_bytes": row.payload_bytes,
        "mesh": row.mesh,
        "to": row.to,
        "target": row.target,
        "priority": row.priority,
    })
}

fn outbox_err(operation: &'static str) -> impl FnOnce(OutboxError) -> ApiError {
    move |source| ApiError::Outbox {
        operation,
        source: Box::new(source),
    }
}

fn mailbox_err(source: actix::MailboxError) -> ApiError {
    ApiError::Unavailable {
        actor: "outbox",
        source,
    }
}

/// `GET /v1/outbox`.
pub async fn list(req: HttpRequest, handles: web::Data<Handles>) -> Result<HttpResponse, ApiError> {
    let p = OutboxParams::parse(req.query_string())?;
    let status = p
        .status
        .map(|s| s.parse::<Status>())
        .transpose()
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let limit = p.limit;
    let rows = handles
        .outbox_reads
        .run(move |c| Ok::<_, OutboxError>(store::list(c, status, limit)?))
        .await
        .map_err(outbox_err("list outbox"))?;
    let items: Vec<Value> = rows.iter().map(row_json).collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}

/// `GET /v1/outbox/{id}`.
pub async fn get(
    id: web::Path<String>,
    handles: web::Data<Handles>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_row_id(&id)?;
    let row = handles
        .outbox_reads
        .run(move |c| Ok::<_, OutboxError>(store::get(c, id)?))
        .await
        .map_err(outbox_err("get outbox row"))?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(row_json(&row)))
}

/// A row id from the path: a positive integer.
fn parse_row_id(raw: &str) -> Result<i64, ApiError> {
    raw.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::invalid("outbox row id must be a positive integer"))
}

/// A parsed requeue body.
#[derive(Debug, PartialEq, Eq)]
struct RequeueBody {
    id: i64,
    new_client_message_id: Option<String>,
}

fn parse_requeue(body: &[u8]) -> Result<RequeueBody, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("body is not valid JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(ApiError::invalid("body must be a JSON object"));
    };
    let id = match obj.get("id") {
        Some(Value::Number(n)) => n
            .as_i64()
            .filter(|n| *n > 0)
            .ok_or_else(|| ApiError::invalid("`id` must be a positive integer"))?,
        Some(Value::String(s)) => parse_row_id(s)?,
        None | Some(Value::Null) => return Err(ApiError::invalid("`id` is required")),
        Some(_) => return Err(ApiError::invalid("`id` must be a positive integer")),
    };
    let new_client_message_id = optional_string(&obj, "new_client_message_id")?
        .map(|s| validate_client_id(s, "new_client_message_id").map(|()| s.to_string()))
        .transpose()?;
    Ok(RequeueBody {
        id,
        new_client_message_id,
    })
}

/// Maps a refused requeue to its 404/409.
fn requeue_err(err: OutboxError) -> ApiError {
    match err {
        OutboxError::Requeue(RequeueError::NotFound { .. }) => ApiError::NotFound,
        OutboxError::Requeue(RequeueError::NotRequeueable { id, status }) => {
            ApiError::NotRequeueable {
                id,
                status: status.to_string(),
            }
        }
        OutboxError::Requeue(RequeueError::IdInUse { client_message_id }) => {
            ApiError::ClientIdInUse { client_message_id }
        }
        OutboxError::Requeue(RequeueError::DestinationUnknown { id }) => {
            ApiError::DestinationUnknown { id }
        }
        other => ApiError::Outbox {
            operation: "requeue",
            source: Box::new(other),
        },
    }
}

/// `POST /v1/outbox/requeue`.
pub async fn requeue(
    payload: web::Payload,
    handles: web::Data<Handles>,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(payload, handles.tuning.ipc.body_limit).await?;
    let req = parse_requeue(&body)?;
    let done = handles
        .outbox
        .send(RequeueRow {
            id: req.id,
            new_client_message_id: req.new_client_message_id,
            by: REQUEUED_BY.to_string(),
        })
        .await
        .map_err(mailbox_err)?
        .map_err(requeue_err)?;
    log::info!(
        "outbox row {} requeued as row {} ({})",
        done.aborted_row_id,
        done.new_row_id,
        done.new_client_message_id
    );
    Ok(HttpResponse::Ok().json(json!({
        "aborted_row_id": done.aborted_row_id,
        "new_row_id": done.new_row_id,
        "new_client_message_id": done.new_client_message_id,
    })))
}

#[cfg(test)]
#[path = "outbox_tests.rs"]
mod tests;
