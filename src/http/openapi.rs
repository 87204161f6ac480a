//! `GET /v1/openapi.json`: the OpenAPI 3.1 document of this API (`docs/openapi.json`, compiled
//! in), served as is. A test checks it against the router's [`super::ROUTES`] both ways.

use actix_web::http::header;
use actix_web::HttpResponse;

/// The document, byte for byte as in the repository.
pub const DOCUMENT: &str = include_str!("../../docs/openapi.json");

/// `GET /v1/openapi.json`.
pub async fn document() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .content_type("application/json")
        .body(DOCUMENT)
}

#[cfg(test)]
#[path = "openapi_tests.rs"]
mod tests;
