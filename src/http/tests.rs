//! Tests of the route table and the guard through actix-web's test service (no sockets, so
//! every request is held to the TCP rules). Handlers that need the engine are not reached
//! here; the lead's integration tests cover them over real sockets.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::test::{call_service, init_service, read_body, TestRequest};
use actix_web::{web, App};
use claudemesh_actors::metrics::Metrics;
use claudemesh_actors::settings::IpcTuning;
use serde_json::{json, Value};

use super::*;

const TOKEN: &str = "tok-0123456789abcdefghijklmnopqrstuvwxyzABCDE";

struct Fixture {
    metrics: Arc<Metrics>,
    gauge: Arc<InflightGauge>,
    ipc: IpcTuning,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            metrics: Arc::new(Metrics::default()),
            gauge: Arc::new(InflightGauge::default()),
            ipc: IpcTuning {
                max_inflight: 2,
                ..IpcTuning::default()
            },
        }
    }

    fn ctx(&self) -> CtxSource {
        let ctx = GuardCtx {
            ipc: self.ipc.clone(),
            metrics: Arc::clone(&self.metrics),
            gauge: Arc::clone(&self.gauge),
        };
        Rc::new(move |_req: &ServiceRequest| Ok(ctx.clone()))
    }
}

fn authed(req: TestRequest) -> TestRequest {
    req.insert_header((header::AUTHORIZATION, format!("Bearer {TOKEN}")))
        .insert_header((header::HOST, "127.0.0.1:47823"))
}

/// Sends `req` to an app with the fixture's guard; returns status, JSON body and headers.
async fn call(fx: &Fixture, req: TestRequest) -> (u16, Value, header::HeaderMap) {
    let app = init_service(
        App::new()
            .app_data(web::Data::new(LocalToken(TOKEN.to_string())))
            .service(api(fx.ctx())),
    )
    .await;
    let resp = call_service(&app, req.to_request()).await;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = read_body(resp).await;
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, json, headers)
}

#[actix_web::test]
async fn unknown_routes_are_json_404() {
    let fx = Fixture::new();
    for path in ["/nope", "/v1/nope", "/v2/send", "/v1/outbox/1/x"] {
        let (status, body, _) = call(&fx, authed(TestRequest::get().uri(path))).await;
        assert_eq!(
            (status, body),
            (404, json!({"error":"not_found"})),
            "{path}"
        );
    }
}

#[actix_web::test]
async fn wrong_methods_are_json_405() {
    let fx = Fixture::new();
    for (req, path) in [
        (TestRequest::get(), "/v1/send"),
        (TestRequest::post(), "/v1/inbox"),
        (TestRequest::get(), "/v1/outbox/requeue"),
        (TestRequest::delete(), "/v1/outbox/5"),
        (TestRequest::get(), "/v1/profile"),
        (TestRequest::post(), "/v1/health"),
    ] {
        let (status, body, _) = call(&fx, authed(req.uri(path))).await;
        assert_eq!(
            (status, body),
            (405, json!({"error":"method_not_allowed"})),
            "{path}"
        );
    }
}

#[actix_web::test]
async fn tcp_requests_need_the_bearer_token_even_for_unknown_routes() {
    let fx = Fixture::new();
    for path in ["/v1/version", "/nope", "/v1/health"] {
        let (status, body, _) = call(&fx, TestRequest::get().uri(path)).await;
        assert_eq!(
            (status, body),
            (401, json!({"error":"unauthorized"})),
            "{path}"
        );
    }
    let wrong = TestRequest::get()
        .uri("/v1/version")
        .insert_header((header::AUTHORIZATION, "Bearer nope"));
    assert_eq!(call(&fx, wrong).await.0, 401);
}

#[actix_web::test]
async fn public_health_answers_only_ok_without_a_token() {
    let mut fx = Fixture::new();
    fx.ipc.public_health = true;
    let (status, body, _) = call(&fx, TestRequest::get().uri("/v1/health")).await;
    assert_eq!((status, body), (200, json!({"ok": true})));
    let (status, _, _) = call(&fx, TestRequest::get().uri("/v1/version")).await;
    assert_eq!(status, 401);
}

#[actix_web::test]
async fn browsers_rebinding_and_query_tokens_are_refused() {
    let fx = Fixture::new();
    let origin = authed(TestRequest::get().uri("/v1/version"))
        .insert_header((header::ORIGIN, "http://127.0.0.1:47823"));
    let (status, body, headers) = call(&fx, origin).await;
    assert_eq!((status, body), (403, json!({"error":"forbidden_origin"})));
    assert!(!headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    let host = authed(TestRequest::get().uri("/v1/version"))
        .insert_header((header::HOST, "attacker.example:47823"));
    let (status, body, _) = call(&fx, host).await;
    assert_eq!((status, body), (403, json!({"error":"forbidden_host"})));
    let two_hosts =
        authed(TestRequest::get().uri("/v1/version")).append_header((header::HOST, "evil.example"));
    let (status, body, _) = call(&fx, two_hosts).await;
    assert_eq!((status, body), (403, json!({"error":"forbidden_host"})));
    let query = authed(TestRequest::get().uri(&format!("/v1/version?token={TOKEN}")));
    let (status, body, _) = call(&fx, query).await;
    assert_eq!((status, body), (400, json!({"error":"token_in_query"})));
}

#[actix_web::test]
async fn declared_bodies_over_the_route_limit_are_413() {
    let fx = Fixture::new();
    let profile = authed(TestRequest::post().uri("/v1/profile"))
        .insert_header((header::CONTENT_LENGTH, "16385"))
        .set_payload(vec![b' '; 16_385]);
    let (status, body, _) = call(&fx, profile).await;
    assert_eq!(
        (status, body),
        (
            413,
            json!({"error":"payload_too_large","limit_bytes":16384})
        )
    );
    let send = authed(TestRequest::post().uri("/v1/send"))
        .insert_header((header::CONTENT_LENGTH, "262145"))
        .set_payload(vec![b' '; 262_145]);
    let (status, body, _) = call(&fx, send).await;
    assert_eq!(
        (status, body),
        (
            413,
            json!({"error":"payload_too_large","limit_bytes":262144})
        )
    );
}

#[actix_web::test]
async fn too_many_requests_in_flight_is_429_but_event_streams_are_not_counted() {
    let fx = Fixture::new();
    let _held: Vec<_> = (0..2).map(|_| fx.gauge.try_acquire(2).unwrap()).collect();
    let (status, body, headers) = call(&fx, authed(TestRequest::get().uri("/v1/version"))).await;
    assert_eq!((status, body), (429, json!({"error":"daemon_busy"})));
    assert_eq!(headers.get(header::RETRY_AFTER).unwrap(), "1");
    // The events route passes the cap (and fails later only because this app has no engine).
    let (status, _, _) = call(&fx, authed(TestRequest::get().uri("/v1/events"))).await;
    assert_ne!(status, 429);
}

#[actix_web::test]
async fn every_request_is_recorded_with_a_bounded_route_label() {
    let fx = Fixture::new();
    call(&fx, authed(TestRequest::get().uri("/v1/send"))).await;
    call(&fx, authed(TestRequest::get().uri("/random/path/123"))).await;
    call(&fx, TestRequest::delete().uri("/v1/outbox/77")).await;
    let recorded = fx.metrics.requests();
    assert!(
        recorded.contains(&(("/v1/send".into(), 405), 1)),
        "{recorded:?}"
    );
    assert!(
        recorded.contains(&(("unmatched".into(), 404), 1)),
        "{recorded:?}"
    );
    assert!(
        recorded.contains(&(("/v1/outbox/{id}".into(), 401), 1)),
        "{recorded:?}"
    );
    assert_eq!(fx.gauge.current(), 0, "permits are released");
}

#[actix_web::test]
async fn routes_without_engine_handles_fail_closed_with_500() {
    let app = init_service(App::new().configure(routes)).await;
    let resp = call_service(&app, TestRequest::get().uri("/v1/version").to_request()).await;
    assert_eq!(resp.status().as_u16(), 500);
    let body: Value = serde_json::from_slice(&read_body(resp).await).unwrap();
    assert_eq!(body, json!({"error":"internal"}));
}

#[test]
fn local_token_debug_never_shows_the_token() {
    let shown = format!("{:?}", LocalToken(TOKEN.into()));
    assert!(!shown.contains(TOKEN));
}

#[actix_web::test]
async fn the_openapi_document_is_served_as_in_the_repository() {
    let fx = Fixture::new();
    let (status, body, headers) =
        call(&fx, authed(TestRequest::get().uri("/v1/openapi.json"))).await;
    assert_eq!(status, 200);
    assert_eq!(
        headers.get(header::CONTENT_TYPE).unwrap(),
        "application/json"
    );
    let file: Value = serde_json::from_str(super::openapi::DOCUMENT).unwrap();
    assert_eq!(body, file);
    // Without the token it is refused like every other route.
    let (status, _, _) = call(&fx, TestRequest::get().uri("/v1/openapi.json")).await;
    assert_eq!(status, 401);
}

#[actix_web::test]
async fn every_declared_route_reaches_a_handler() {
    let fx = Fixture::new();
    for (method, path) in super::ROUTES {
        let uri = path
            .replace("{id}", "1")
            .replace("{token}", &"a".repeat(64));
        let m = actix_web::http::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let (status, body, _) = call(&fx, authed(TestRequest::default().method(m).uri(&uri))).await;
        assert_ne!(status, 405, "{method} {path}");
        assert_ne!(body["error"], "not_found", "{method} {path}: {body}");
    }
}

#[actix_web::test]
async fn a_405_names_the_allowed_methods() {
    // RFC 9110 §15.5.6: a 405 carries `Allow` (found by schemathesis, check ST204).
    let fx = Fixture::new();
    for (method, uri, allow) in [
        ("TRACE", "/v1/version", "GET"),
        ("PUT", "/v1/inbox", "GET, DELETE"),
        ("GET", "/v1/send", "POST"),
        ("PATCH", "/v1/outbox/7", "GET"),
        ("GET", "/v1/sessions/abc", "DELETE"),
    ] {
        let m = actix_web::http::Method::from_bytes(method.as_bytes()).unwrap();
        let (status, body, headers) =
            call(&fx, authed(TestRequest::default().method(m).uri(uri))).await;
        assert_eq!(status, 405, "{method} {uri}");
        assert_eq!(body["error"], "method_not_allowed");
        assert_eq!(
            headers.get(header::ALLOW).map(|v| v.to_str().unwrap()),
            Some(allow),
            "{method} {uri}"
        );
    }
}
