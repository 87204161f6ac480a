//! `POST /v1/send` (SPEC §5.1–§5.3): phase-A validation ([`super::send_request`]), the size
//! rule, the mesh, name resolution through the mesh's `BrokerConnection` (`ResolvePeer`),
//! the request fingerprint, then a lookup of a repeated id on a read-only connection (SPEC §5.3
//! answers that write nothing) or else the accept lane (group commit on the outbox's database
//! thread); the answer maps to 202 queued / 202 inflight / 200 duplicate / 409
//! idempotency_key_reused.
//!
//! Invariant: nothing is written before the accept lane, so every refusal above leaves the id
//! free; the 409 prefix is the *incoming* request's fingerprint, not the stored one.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use claudemesh_actors::broker::msg::{Resolution, ResolvePeer};
use claudemesh_actors::fingerprint::{destination_for, prefix_hex, request_fingerprint};
use claudemesh_actors::handles::{Handles, MeshHandle};
use claudemesh_actors::metrics::Metrics;
use claudemesh_actors::outbox::msg::OutboxError;
use claudemesh_actors::outbox::store::{self, Accepted, NewSend};
use serde_json::{json, Value};

use super::error::ApiError;
use super::limits::read_body;
use super::send_request::{check_broker_size, parse_send, SendRequest, TargetForm};

/// How old a cached peer list may be before a miss is re-checked (SPEC §5.1: "a few seconds").
const RESOLVE_MAX_AGE_MS: i64 = 3_000;
/// How long to wait for that refresh (the TS CLI gives up after 3 s).
const RESOLVE_WAIT_MS: u64 = 1_000;

/// The handler.
pub async fn send(
    req: HttpRequest,
    payload: web::Payload,
    caller: super::caller::Caller,
    handles: web::Data<Handles>,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(payload, handles.tuning.ipc.send_body_limit).await?;
    let key = req.headers().get("idempotency-key").map(|v| v.as_bytes());
    let send = parse_send(&body, key)?;
    check_broker_size(send.message.len(), &send.to, send.form)?;
    // Without `mesh`, a session sends on its own mesh, anyone else on the default (SPEC §12).
    let requested = caller.mesh_or(send.mesh.as_deref());
    let mesh = handles
        .mesh(requested)
        .ok_or_else(|| ApiError::UnknownMesh {
            requested: requested.unwrap_or(&handles.default_mesh).to_string(),
            meshes: handles.slugs(),
        })?;
    let target = resolve_target(mesh, &send).await?;
    let meta = send.meta.clone().map(Value::Object);
    let fingerprint = request_fingerprint(
        &destination_for(&send.to),
        send.reply_to_id.as_deref(),
        send.priority.as_str(),
        meta.as_ref(),
        send.message.as_bytes(),
    )
    .map_err(|e| ApiError::invalid(format!("`meta` cannot be canonicalised: {e}")))?;
    let new = NewSend {
        // `None` lets the store mint a ULID inside the accept transaction.
        client_message_id: send.client_message_id.clone(),
        fingerprint,
        mesh: mesh.slug.clone(),
        to: send.to.clone(),
        target,
        priority: send.priority.as_str().to_string(),
        meta: meta.as_ref().map(Value::to_string),
        reply_to_id: send.reply_to_id.clone(),
        payload: send.message.into_bytes(),
        // A session with presence sends as itself on its own mesh (SPEC §12).
        session_pubkey: caller
            .0
            .as_ref()
            .filter(|s| s.mesh == mesh.slug)
            .and_then(|s| s.session_pubkey.clone()),
    };
    // A repeated id is answered from a read-only connection: only a new id needs the writer.
    // An id certainly not in the outbox (`SeenIds`, kept by the outbox's writes) skips it.
    if new
        .client_message_id
        .as_deref()
        .is_some_and(|id| handles.outbox_ids.maybe_seen(id))
    {
        if let Some(answered) = read_repeat(&handles, &new).await {
            return answer(answered, &fingerprint);
        }
    }
    let accepted = handles
        .accepts
        .accept(new)
        .await
        .map_err(|source| ApiError::Outbox {
            operation: "accept send",
            source: Box::new(source),
        })?;
    answer(accepted, &fingerprint)
}

/// The answer for a send whose id a row already holds, read off the writer; `None` when the
/// id is free (or the read failed: the writer then answers, as it always could).
async fn read_repeat(handles: &Handles, new: &NewSend) -> Option<Accepted> {
    let id = new.client_message_id.clone()?;
    let fingerprint = new.fingerprint;
    let found = handles
        .outbox_reads
        .run(move |c| Ok::<_, OutboxError>(store::lookup(c, &id, &fingerprint)?))
        .await;
    match found {
        Ok(Some(answered)) => {
            Metrics::inc(&handles.metrics.dedupe_hits);
            Some(answered)
        }
        Ok(None) => None,
        Err(e) => {
            log::debug!("send: repeated-id lookup on a reader failed ({e}); asking the writer");
            None
        }
    }
}

/// The row's target: `to` itself for literal forms, the peer's pubkey for a resolved name,
/// `None` when the broker is unreachable (resolved at drain time).
async fn resolve_target(mesh: &MeshHandle, send: &SendRequest) -> Result<Option<String>, ApiError> {
    if send.form.is_literal() {
        return Ok(Some(send.to.clone()));
    }
    debug_assert_eq!(send.form, TargetForm::Name);
    let asked = mesh
        .link
        .send(ResolvePeer {
            name: send.to.clone(),
            max_age_ms: RESOLVE_MAX_AGE_MS,
            wait_ms: RESOLVE_WAIT_MS,
        })
        .await;
    match asked {
        Ok(Resolution::Found { pubkey }) => Ok(Some(pubkey)),
        Ok(Resolution::NotFound) => Err(ApiError::UnknownPeer {
            name: send.to.clone(),
        }),
        Ok(Resolution::Ambiguous { candidates }) => Err(ApiError::AmbiguousPeer {
            name: send.to.clone(),
            candidates,
        }),
        Ok(Resolution::Unavailable) => Ok(None),
        Err(e) => {
            // The connection actor is restarting; the drainer resolves the name later.
            log::warn!(
                "mesh {}: peer resolution unavailable ({e}); accepting {:?} unresolved",
                mesh.slug,
                send.to
            );
            Ok(None)
        }
    }
}

/// Maps the accept answer to the SPEC §5.3 responses.
fn answer(accepted: Accepted, fingerprint: &[u8; 32]) -> Result<HttpResponse, ApiError> {
    match accepted {
        Accepted::Queued {
            client_message_id, ..
        } => Ok(HttpResponse::build(StatusCode::ACCEPTED)
            .json(json!({"client_message_id": client_message_id, "status": "queued"}))),
        Accepted::Inflight {
            client_message_id, ..
        } => Ok(HttpResponse::build(StatusCode::ACCEPTED)
            .json(json!({"client_message_id": client_message_id, "status": "inflight"}))),
        Accepted::Duplicate {
            client_message_id,
            broker_message_id,
            ..
        } => Ok(HttpResponse::Ok().json(json!({
            "client_message_id": client_message_id,
            "broker_message_id": broker_message_id,
            "duplicate": true,
        }))),
        Accepted::Conflict {
            client_message_id,
            conflict,
            broker_message_id,
            reason,
        } => Err(ApiError::IdempotencyKeyReused {
            client_message_id,
            conflict: conflict.code(),
            daemon_fingerprint_prefix: prefix_hex(fingerprint),
            broker_message_id,
            reason,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;
    use claudemesh_actors::outbox::store::Conflict;

    fn body(resp: HttpResponse) -> (u16, Value) {
        let status = resp.status().as_u16();
        let bytes = resp.into_body().try_into_bytes().unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[test]
    fn accept_answers_map_to_the_spec_table() {
        let fp = [0xab; 32];
        let (s, b) = body(
            answer(
                Accepted::Queued {
                    id: 1,
                    client_message_id: "k".into(),
                },
                &fp,
            )
            .unwrap(),
        );
        assert_eq!(
            (s, b),
            (202, json!({"client_message_id":"k","status":"queued"}))
        );
        let (s, b) = body(
            answer(
                Accepted::Inflight {
                    id: 1,
                    client_message_id: "k".into(),
                },
                &fp,
            )
            .unwrap(),
        );
        assert_eq!(
            (s, b),
            (202, json!({"client_message_id":"k","status":"inflight"}))
        );
        let (s, b) = body(
            answer(
                Accepted::Duplicate {
                    id: 1,
                    client_message_id: "k".into(),
                    broker_message_id: Some("bm".into()),
                },
                &fp,
            )
            .unwrap(),
        );
        assert_eq!(
            (s, b),
            (
                200,
                json!({"client_message_id":"k","broker_message_id":"bm","duplicate":true})
            )
        );
    }

    #[test]
    fn conflict_carries_the_incoming_fingerprint_prefix_and_reason() {
        let mut fp = [0u8; 32];
        fp[..8].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let err = answer(
            Accepted::Conflict {
                client_message_id: "k".into(),
                conflict: Conflict::DeadMatch,
                broker_message_id: None,
                reason: Some("blocked by recipient grants".into()),
            },
            &fp,
        )
        .unwrap_err();
        let (s, b) = body(actix_web::ResponseError::error_response(&err));
        assert_eq!(s, 409);
        assert_eq!(
            b,
            json!({"error":"idempotency_key_reused","conflict":"outbox_dead_fingerprint_match",
                   "daemon_fingerprint_prefix":"0102030405060708","broker_message_id":null,
                   "reason":"blocked by recipient grants"})
        );
    }
}
