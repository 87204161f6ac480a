//! `/v1/send` bodies and the read routes' query strings.

use actix_web::ResponseError;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::{accepted_of_400, config, json_value, object_with};
use crate::http::error::ApiError;
use crate::http::query::{EventParams, InboxParams, OutboxParams};
use crate::http::send_request::parse_send;

/// A refused request: a client error status and a JSON body whose `error` is a code.
fn assert_client_error(e: &ApiError, input: &str) {
    let status = e.status_code().as_u16();
    assert!(
        matches!(status, 400 | 404 | 413),
        "{status} for {input:?}: {e}"
    );
    assert!(
        e.body()["error"].as_str().is_some_and(|c| !c.is_empty()),
        "{input:?}"
    );
}

fn check_send(body: &[u8], key: Option<&[u8]>) {
    match parse_send(body, key) {
        Ok(req) => {
            assert!(!req.message.is_empty());
            assert_eq!(req.to, req.to.trim());
            if let Some(id) = &req.client_message_id {
                assert!(
                    (1..=128).contains(&id.len())
                        && id.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
                );
            }
        }
        Err(e) => assert_client_error(&e, &String::from_utf8_lossy(body)),
    }
}

fn check_queries(q: &str) {
    for result in [
        InboxParams::parse(q).map(|_| ()),
        OutboxParams::parse(q).map(|_| ()),
        EventParams::parse(q).map(|_| ()),
    ] {
        if let Err(e) = result {
            assert_client_error(&e, q);
            assert_eq!(e.status_code().as_u16(), 400, "{q:?}");
        }
    }
}

const SEND_FIELDS: &[&str] = &[
    "to",
    "message",
    "priority",
    "meta",
    "reply_to_id",
    "client_message_id",
    "mesh",
];

/// A plausible value for a send field (so valid bodies are generated too), or any value.
fn send_value(field: &str) -> BoxedStrategy<Value> {
    let plausible: BoxedStrategy<Value> = match field {
        "to" => prop_oneof![
            prop::sample::select(vec![
                "*",
                "@all",
                "@ops",
                "#t1",
                "bob",
                " bob ",
                "0123456789abcdef"
            ])
            .prop_map(Value::from),
            "[0-9a-f]{64}".prop_map(Value::from),
            "[ -~]{0,70}".prop_map(Value::from),
        ]
        .boxed(),
        "message" => ".{0,60}".prop_map(Value::from).boxed(),
        "priority" => prop::sample::select(vec!["now", "next", "low", "NOW", ""])
            .prop_map(Value::from)
            .boxed(),
        "client_message_id" | "reply_to_id" => "[ -~]{0,130}".prop_map(Value::from).boxed(),
        "mesh" => "[a-z-]{0,10}".prop_map(Value::from).boxed(),
        _ => json_value().boxed(),
    };
    prop_oneof![3 => plausible, 1 => json_value()].boxed()
}

/// A send body: a valid one with some fields replaced, removed or added.
fn send_like() -> impl Strategy<Value = Value> {
    let edit = prop::sample::select(SEND_FIELDS)
        .prop_flat_map(|f| (Just(f), prop::option::weighted(0.85, send_value(f))));
    prop::collection::vec(edit, 0..5).prop_map(|edits| {
        let mut body = json!({"to": "*", "message": "hello"});
        for (field, value) in edits {
            match value {
                Some(v) => body[field] = v,
                None => {
                    body.as_object_mut().map(|o| o.remove(field));
                }
            }
        }
        body
    })
}

/// A query string from known keys and values, percent-escapes and junk.
fn query_like() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        prop::sample::select(vec![
            "since",
            "topic",
            "from",
            "mesh",
            "limit",
            "before",
            "status",
            "kinds",
            "last_event_id",
            "token",
        ])
        .prop_map(str::to_string),
        "[a-z_%=&+]{0,8}",
    ];
    let value = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        "[0-9]{0,25}",
        "2026-[0-9]{2}-[0-9]{2}T[0-9:.]{0,12}Z?",
        "[a-z_,]{0,30}",
        "%[0-9A-Fa-f]{0,2}[ -~]{0,10}",
        ".{0,12}",
    ];
    prop::collection::vec((key, value), 0..6).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    })
}

proptest! {
    #![proptest_config(config(320))]

    #[test]
    fn send_body_of_arbitrary_bytes_is_parsed_or_refused(
        body in prop::collection::vec(any::<u8>(), 0..300),
        key in prop::option::of(prop::collection::vec(any::<u8>(), 0..140)),
    ) {
        check_send(&body, key.as_deref());
    }

    #[test]
    fn send_body_of_send_shaped_json_is_parsed_or_refused(
        body in prop_oneof![send_like(), object_with(SEND_FIELDS)],
        key in prop::option::of("[ -~]{0,140}"),
    ) {
        check_send(body.to_string().as_bytes(), key.as_deref().map(str::as_bytes));
    }

    #[test]
    fn query_strings_are_parsed_or_refused_with_400(q in prop_oneof![query_like(), ".{0,80}"]) {
        check_queries(&q);
    }
}

/// The generators are not vacuous: some of what they make is accepted, so the properties
/// above run the success paths too, not only the first refusal.
#[test]
fn generators_reach_accepted_sends_and_queries_too() {
    let sends = accepted_of_400(send_like(), |v| {
        parse_send(v.to_string().as_bytes(), None).is_ok()
    });
    let queries = accepted_of_400(query_like(), |q| {
        InboxParams::parse(&q).is_ok() && OutboxParams::parse(&q).is_ok()
    });
    assert!(
        sends >= 10 && queries >= 10,
        "accepted of 400: sends {sends}, queries {queries}"
    );
}
