//! Unit tests of [`super`]: row rendering, requeue body parsing and error mapping.

use super::*;
use claudemesh_actors::outbox::store::StoreError;

fn row() -> OutboxRow {
    OutboxRow {
        session_pubkey: None,
        id: 3,
        client_message_id: "c3".into(),
        fingerprint: vec![0; 32],
        status: Status::Done,
        attempts: 2,
        enqueued_at: 0,
        next_attempt_at: 1_000,
        last_error: None,
        delivered_at: Some(2_000),
        broker_message_id: Some("bm".into()),
        aborted_at: None,
        aborted_by: None,
        superseded_by: None,
        mesh: "m".into(),
        to: "bob".into(),
        target: Some("ab".repeat(32)),
        priority: "next".into(),
        meta: None,
        reply_to_id: None,
        payload: Some(b"secret body".to_vec()),
        payload_bytes: 11,
    }
}

#[test]
fn row_json_has_iso_times_and_no_payload() {
    let v = row_json(&row());
    assert_eq!(v["enqueued_at"], "1970-01-01T00:00:00.000Z");
    assert_eq!(v["next_attempt_at"], "1970-01-01T00:00:01.000Z");
    assert_eq!(v["delivered_at"], "1970-01-01T00:00:02.000Z");
    assert_eq!(v["aborted_at"], Value::Null);
    assert_eq!(v["status"], "done");
    assert_eq!(v["payload_bytes"], 11);
    for field in [
        "id",
        "client_message_id",
        "attempts",
        "broker_message_id",
        "last_error",
        "aborted_by",
        "superseded_by",
        "mesh",
        "to",
    ] {
        assert!(v.get(field).is_some(), "missing {field}");
    }
    assert!(v.get("payload").is_none());
    assert!(!v.to_string().contains("secret body"));
}

#[test]
fn requeue_body_takes_integer_or_numeric_string_ids() {
    assert_eq!(
        parse_requeue(br#"{"id":5}"#).unwrap(),
        RequeueBody {
            id: 5,
            new_client_message_id: None
        }
    );
    assert_eq!(
        parse_requeue(br#"{"id":"6","new_client_message_id":"n-1"}"#).unwrap(),
        RequeueBody {
            id: 6,
            new_client_message_id: Some("n-1".into())
        }
    );
    for bad in [
        &br#"{}"#[..],
        br#"{"id":0}"#,
        br#"{"id":-2}"#,
        br#"{"id":1.5}"#,
        br#"{"id":"x"}"#,
        br#"{"id":true}"#,
        br#"{"id":1,"new_client_message_id":""}"#,
        br#"{"id":1,"new_client_message_id":7}"#,
        br#"[1]"#,
        b"id=1",
    ] {
        assert!(
            matches!(parse_requeue(bad), Err(ApiError::InvalidRequest { .. })),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn row_ids_in_paths_must_be_positive_integers() {
    assert_eq!(parse_row_id("12").unwrap(), 12);
    assert!(parse_row_id("0").is_err());
    assert!(parse_row_id("abc").is_err());
}

#[test]
fn requeue_refusals_map_to_404_and_409() {
    use actix_web::ResponseError;
    let status = |e: OutboxError| requeue_err(e).status_code().as_u16();
    assert_eq!(
        status(OutboxError::Requeue(RequeueError::NotFound { id: 1 })),
        404
    );
    assert_eq!(
        status(OutboxError::Requeue(RequeueError::NotRequeueable {
            id: 1,
            status: Status::Done
        })),
        409
    );
    assert_eq!(
        status(OutboxError::Requeue(RequeueError::IdInUse {
            client_message_id: "x".into()
        })),
        409
    );
    assert_eq!(
        status(OutboxError::Requeue(RequeueError::DestinationUnknown {
            id: 1
        })),
        409
    );
    assert_eq!(
        status(OutboxError::Store(StoreError::RowNotFound {
            operation: "x",
            id: 1
        })),
        500
    );
    assert_eq!(status(OutboxError::Cancelled), 503);
}
