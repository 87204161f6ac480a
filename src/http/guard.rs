//! The middleware wrapped around every route (SPEC §9): access rules ([`super::security`]),
//! declared body size, the in-flight cap (SSE streams excluded), and one
//! `Metrics::record_request` per request with a bounded route label.
//!
//! It records the [`Access`] of an admitted request in the request extensions, where
//! `/v1/health` reads whether it may answer more than `{"ok":true}`.

use std::sync::Arc;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage};
use claudemesh_actors::ipc::ConnInfo;
use claudemesh_actors::metrics::Metrics;
use claudemesh_actors::settings::IpcTuning;

use super::error::ApiError;
use super::limits::{body_limit_for, declared_length_exceeds, InflightGauge};
use super::security::{authorize, Access, Policy, RequestFacts, Transport};
use super::{warnlimit, CtxSource, LocalToken};

/// What the guard needs besides the request.
#[derive(Clone)]
pub struct GuardCtx {
    /// `[ipc]` tuning: limits and `public_health`.
    pub ipc: IpcTuning,
    /// Where requests are counted.
    pub metrics: Arc<Metrics>,
    /// The in-flight gauge (shared by all workers when the listener registered one).
    pub gauge: Arc<InflightGauge>,
}

/// Routes that are not counted against `max_inflight` (long-lived streams).
const STREAMING_PATHS: [&str; 1] = ["/v1/events"];

/// The metrics label of a path: its route pattern, or `unmatched` (bounded cardinality).
pub fn route_label(path: &str) -> &'static str {
    match path {
        "/v1/send" => "/v1/send",
        "/v1/inbox" => "/v1/inbox",
        "/v1/events" => "/v1/events",
        "/v1/version" => "/v1/version",
        "/v1/health" => "/v1/health",
        "/v1/metrics" => "/v1/metrics",
        "/v1/openapi.json" => "/v1/openapi.json",
        "/v1/peers" => "/v1/peers",
        "/v1/profile" => "/v1/profile",
        "/v1/outbox" => "/v1/outbox",
        "/v1/outbox/requeue" => "/v1/outbox/requeue",
        "/v1/inbox/seen" => "/v1/inbox/seen",
        "/v1/sessions" => "/v1/sessions",
        "/v1/sessions/me" => "/v1/sessions/me",
        "/v1/sessions/register" => "/v1/sessions/register",
        // Never the path itself: it holds a session token.
        p if p
            .strip_prefix("/v1/sessions/")
            .is_some_and(|t| !t.is_empty() && !t.contains('/')) =>
        {
            "/v1/sessions/{token}"
        }
        p if p
            .strip_prefix("/v1/inbox/")
            .is_some_and(|id| !id.is_empty() && !id.contains('/')) =>
        {
            "/v1/inbox/{id}"
        }
        p if p
            .strip_prefix("/v1/outbox/")
            .is_some_and(|id| !id.is_empty() && !id.contains('/')) =>
        {
            "/v1/outbox/{id}"
        }
        _ => "unmatched",
    }
}

/// The uid the daemon runs as.
fn daemon_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// Runs the checks, then the route, then records the request.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
    ctx_of: CtxSource,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let started = Instant::now();
    let ctx = match ctx_of(&req) {
        Ok(ctx) => ctx,
        Err(err) => return Ok(req.error_response(err)),
    };
    let route = route_label(req.path());
    let res = match admit(&req, &ctx) {
        Err(err) => Ok(req.error_response(err)),
        Ok((access, permit)) => {
            req.extensions_mut().insert(access);
            let mut res = next
                .call(req)
                .await
                .map(ServiceResponse::map_into_boxed_body);
            drop(permit);
            if let (Access::PublicHealth, Ok(r)) = (access, res.as_mut()) {
                // Unauthenticated: no kept-alive connection (whose later heads would skip the
                // TCP gate's small head limit).
                r.response_mut()
                    .head_mut()
                    .set_connection_type(actix_web::http::ConnectionType::Close);
            }
            res
        }
    };
    let status = match &res {
        Ok(r) => r.status().as_u16(),
        Err(e) => e.as_response_error().status_code().as_u16(),
    };
    ctx.metrics
        .record_request(route, status, started.elapsed().as_secs_f64());
    res
}

/// The security and limit checks; on success the request's access and its in-flight permit.
fn admit(
    req: &ServiceRequest,
    ctx: &GuardCtx,
) -> Result<(Access, Option<super::limits::InflightPermit>), ApiError> {
    let headers = req.headers();
    let header_str =
        |name: header::HeaderName| headers.get(name).map(|v| v.to_str().unwrap_or_default());
    let transport = match req.conn_data::<ConnInfo>() {
        Some(ConnInfo::Unix { peer_uid }) => Transport::Unix {
            peer_uid: *peer_uid,
        },
        // Unknown connections are held to the stricter TCP rules.
        Some(ConnInfo::Tcp) | None => Transport::Tcp,
    };
    let token = req
        .app_data::<web::Data<LocalToken>>()
        .map(|t| t.0.trim().to_string())
        .unwrap_or_default();
    // Two Host headers are malformed; judge them as a foreign host.
    let host = match headers.get_all(header::HOST).count() {
        0 | 1 => header_str(header::HOST),
        _ => Some(""),
    };
    let facts = RequestFacts {
        transport,
        host,
        has_origin: headers.contains_key(header::ORIGIN),
        // The bearer among possibly several credentials (a session header may travel with
        // it, see `caller`).
        authorization: super::caller::bearer_credential(headers),
        query: req.query_string(),
        path: req.path(),
        absolute_target: req.uri().scheme().is_some() || req.uri().authority().is_some(),
    };
    let policy = Policy {
        daemon_uid: daemon_uid(),
        token: &token,
        public_health: ctx.ipc.public_health,
    };
    let access = authorize(&facts, &policy).inspect_err(|err| {
        if matches!(err, ApiError::TokenInQuery) {
            // Never log the query itself: it holds the token. Rate-limited: another local
            // user can send these as fast as they like.
            if let Some(earlier) = warnlimit::note(&warnlimit::TOKEN_IN_QUERY) {
                log::warn!(
                    "security: refused a request to {} with a `token` query parameter; \
                     send the token in the Authorization header ({earlier} more refused since \
                     the last such line; at most one line per {} s)",
                    route_label(req.path()),
                    warnlimit::SECURITY_WARN_INTERVAL.as_secs()
                );
            }
        }
    })?;
    let limit = body_limit_for(req.path(), ctx.ipc.send_body_limit, ctx.ipc.body_limit);
    if declared_length_exceeds(header_str(header::CONTENT_LENGTH), limit) {
        return Err(ApiError::PayloadTooLarge { limit_bytes: limit });
    }
    let permit = if STREAMING_PATHS.contains(&req.path()) {
        None
    } else {
        let max = ctx.ipc.max_inflight;
        Some(
            ctx.gauge
                .try_acquire(max)
                .ok_or(ApiError::DaemonBusy { max })?,
        )
    };
    Ok((access, permit))
}
