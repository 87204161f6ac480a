//! The `/v1` HTTP API of the daemon (SPEC §5.1, §7.2–§9, §12), mounted by the IpcListener with
//! [`routes`] on both the Unix socket and the loopback TCP port.
//!
//! Handlers extract, send one typed message to an actor, and map the reply to JSON; the
//! pure parts (validation, query parsing, SSE framing, Prometheus text, access rules) live in
//! their own modules and are unit-tested there.
//!
//! App data the listener must register: `web::Data<Handles>` (required), `web::Data<LocalToken>`
//! (required for TCP; without it every TCP request is 401), and optionally one
//! `web::Data<InflightGauge>` shared by every worker (without it the in-flight cap is per
//! worker). Connection data: a `ConnInfo` from `on_connect` (without it the request is held
//! to the TCP rules).
//!
//! Every request, unknown paths included, passes through [`guard`]; errors are JSON
//! `{"error": code, …}` built in one place ([`error::ApiError`]); no CORS header is ever set.

pub mod caller;
pub mod error;
pub mod events;
pub mod guard;
pub mod inbox;
pub mod limits;
pub mod mesh;
pub mod outbox;
pub mod prom;
pub mod query;
pub mod security;
pub mod send;
pub mod send_request;
pub mod sessions;
pub mod sse;
pub mod status;
pub mod warnlimit;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use actix_web::dev::{HttpServiceFactory, ServiceRequest};
use actix_web::middleware::from_fn;
use actix_web::{web, HttpResponse, Resource};
use claudemesh_actors::handles::Handles;

use error::ApiError;
use guard::GuardCtx;
use limits::InflightGauge;

/// The bearer token of the TCP listener (the `local-token` file's contents). Register it as
/// `web::Data<LocalToken>`; it is compared in constant time and never logged.
pub struct LocalToken(pub String);

impl std::fmt::Debug for LocalToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalToken(<redacted>)")
    }
}

/// How the guard finds its context for one request.
pub type CtxSource = Rc<dyn Fn(&ServiceRequest) -> Result<GuardCtx, ApiError>>;

/// Mounts every `/v1` route, the guard, and the JSON 404/405 answers.
pub fn routes(cfg: &mut web::ServiceConfig) {
    // Used only when the listener registered no shared gauge.
    let fallback = Arc::new(InflightGauge::default());
    let warned = Cell::new(false);
    let ctx_of: CtxSource = Rc::new(move |req: &ServiceRequest| {
        let handles = req
            .app_data::<web::Data<Handles>>()
            .ok_or(ApiError::Misconfigured { missing: "Handles" })?;
        let gauge = match req.app_data::<web::Data<InflightGauge>>() {
            Some(shared) => shared.clone().into_inner(),
            None => {
                if !warned.replace(true) {
                    log::warn!(
                        "no shared InflightGauge registered: ipc.max_inflight is enforced \
                         per worker"
                    );
                }
                Arc::clone(&fallback)
            }
        };
        Ok(GuardCtx {
            ipc: handles.tuning.ipc.clone(),
            metrics: Arc::clone(&handles.metrics),
            gauge,
        })
    });
    cfg.service(api(ctx_of));
}

/// The route table behind the guard (also used by the tests with a fixed context).
pub fn api(ctx_of: CtxSource) -> impl HttpServiceFactory {
    web::scope("")
        .wrap(from_fn(move |req, next| {
            guard::guard(req, next, Rc::clone(&ctx_of))
        }))
        .service(resource("/v1/send").route(web::post().to(send::send)))
        .service(
            resource("/v1/inbox")
                .route(web::get().to(inbox::list))
                .route(web::delete().to(inbox::delete_all)),
        )
        // Before `{id}`, so `GET /v1/inbox/seen` is a 405, not a row id.
        .service(resource("/v1/inbox/seen").route(web::post().to(inbox::seen)))
        .service(resource("/v1/inbox/{id}").route(web::delete().to(inbox::delete_one)))
        .service(resource("/v1/sessions").route(web::get().to(sessions::list)))
        .service(resource("/v1/sessions/register").route(web::post().to(sessions::register)))
        .service(resource("/v1/sessions/me").route(web::get().to(sessions::me)))
        .service(resource("/v1/sessions/{token}").route(web::delete().to(sessions::deregister)))
        .service(resource("/v1/events").route(web::get().to(events::events)))
        .service(resource("/v1/version").route(web::get().to(status::version)))
        .service(resource("/v1/health").route(web::get().to(status::health)))
        .service(resource("/v1/metrics").route(web::get().to(status::metrics)))
        .service(resource("/v1/peers").route(web::get().to(mesh::peers)))
        .service(resource("/v1/profile").route(web::post().to(mesh::profile)))
        .service(resource("/v1/outbox").route(web::get().to(outbox::list)))
        // Before `{id}`, so `GET /v1/outbox/requeue` is a 405, not a lookup of row "requeue".
        .service(resource("/v1/outbox/requeue").route(web::post().to(outbox::requeue)))
        .service(resource("/v1/outbox/{id}").route(web::get().to(outbox::get)))
        .default_service(web::to(not_found))
}

/// A resource whose unmatched methods answer 405 JSON.
fn resource(path: &str) -> Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

#[cfg(test)]
mod tests;
