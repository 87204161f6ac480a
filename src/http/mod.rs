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
pub mod openapi;
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
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::from_fn;
use actix_web::{web, HttpRequest, HttpResponse, Resource, ResponseError, Scope};
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

/// Declares the route table once: [`ROUTES`] (method, path) — what the OpenAPI document is
/// checked against — and `mount`, which adds the same resources to a scope. Order matters
/// (a literal segment before `{id}`), so the table keeps the order it is written in.
macro_rules! route_table {
    ($( $path:literal => [ $( $method:ident => $handler:path ),+ ] ),* $(,)?) => {
        /// Every (method, path pattern) the router serves, in mount order.
        pub const ROUTES: &[(&str, &str)] = &[ $( $( (stringify!($method), $path), )+ )* ];

        fn mount(scope: Scope) -> Scope {
            scope $( .service(resource($path) $( .route(web::$method().to($handler)) )+ ) )*
        }
    };
}

route_table! {
    "/v1/send" => [post => send::send],
    "/v1/inbox" => [get => inbox::list, delete => inbox::delete_all],
    // Before `{id}`, so `GET /v1/inbox/seen` is a 405, not a row id.
    "/v1/inbox/seen" => [post => inbox::seen],
    "/v1/inbox/{id}" => [delete => inbox::delete_one],
    "/v1/sessions" => [get => sessions::list],
    "/v1/sessions/register" => [post => sessions::register],
    "/v1/sessions/me" => [get => sessions::me],
    "/v1/sessions/{token}" => [delete => sessions::deregister],
    "/v1/events" => [get => events::events],
    "/v1/version" => [get => status::version],
    "/v1/health" => [get => status::health],
    "/v1/metrics" => [get => status::metrics],
    "/v1/openapi.json" => [get => openapi::document],
    "/v1/peers" => [get => mesh::peers],
    "/v1/profile" => [post => mesh::profile],
    "/v1/outbox" => [get => outbox::list],
    // Before `{id}`, so `GET /v1/outbox/requeue` is a 405, not a lookup of row "requeue".
    "/v1/outbox/requeue" => [post => outbox::requeue],
    "/v1/outbox/{id}" => [get => outbox::get],
}

/// The route table behind the guard (also used by the tests with a fixed context).
pub fn api(ctx_of: CtxSource) -> impl HttpServiceFactory {
    mount(web::scope(""))
        .default_service(web::to(not_found))
        .wrap(from_fn(move |req, next| {
            guard::guard(req, next, Rc::clone(&ctx_of))
        }))
}

/// A resource whose unmatched methods answer 405 JSON.
fn resource(path: &str) -> Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

/// 405 JSON with `Allow` (RFC 9110 §15.5.6): the methods [`ROUTES`] has for the pattern.
async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    let mut resp = ApiError::MethodNotAllowed.error_response();
    if let Some(pattern) = req.match_pattern() {
        if let Ok(allow) = HeaderValue::from_str(&allowed_methods(&pattern)) {
            resp.headers_mut().insert(header::ALLOW, allow);
        }
    }
    resp
}

/// `GET, DELETE` for a route pattern of [`ROUTES`] (empty for an unknown one).
fn allowed_methods(pattern: &str) -> String {
    ROUTES
        .iter()
        .filter(|(_, p)| *p == pattern)
        .map(|(m, _)| m.to_ascii_uppercase())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
