//! The OpenAPI document against the router: every (method, path) of [`ROUTES`] is documented,
//! every documented operation is routed, and each operation lists its statuses.

use std::collections::BTreeSet;

use serde_json::Value;

use super::DOCUMENT;
use crate::http::ROUTES;

fn doc() -> Value {
    serde_json::from_str(DOCUMENT).expect("docs/openapi.json is JSON")
}

fn documented() -> BTreeSet<(String, String)> {
    let doc = doc();
    let paths = doc["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("path item")
                .keys()
                .map(move |m| (m.to_string(), path.to_string()))
        })
        .collect()
}

#[test]
fn every_routed_operation_is_documented_and_every_documented_one_is_routed() {
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(routed.len(), ROUTES.len(), "a route is declared twice");
    let documented = documented();
    let missing: Vec<_> = routed.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&routed).collect();
    assert!(missing.is_empty(), "routed but not documented: {missing:?}");
    assert!(extra.is_empty(), "documented but not routed: {extra:?}");
}

#[test]
fn the_document_is_openapi_3_1_and_every_operation_has_statuses_and_an_id() {
    let doc = doc();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut ids = BTreeSet::new();
    for (method, path) in documented() {
        let op = &doc["paths"][&path][&method];
        let responses = op["responses"].as_object().expect("responses");
        assert!(
            responses.keys().any(|c| c.starts_with('2')),
            "{method} {path}: no success status"
        );
        for code in ["400", "401", "403", "413", "429", "503"] {
            assert!(responses.contains_key(code), "{method} {path}: no {code}");
        }
        let id = op["operationId"].as_str().expect("operationId");
        assert!(ids.insert(id.to_string()), "operationId {id} twice");
    }
}

#[test]
fn every_reference_resolves() {
    let doc = doc();
    let text = DOCUMENT;
    for part in text.split("\"$ref\": \"#/").skip(1) {
        let pointer = part.split('"').next().unwrap_or_default();
        assert!(
            doc.pointer(&format!("/{pointer}")).is_some(),
            "dangling $ref #/{pointer}"
        );
    }
}
