//! Unit tests of [`super`]: statuses, bodies and headers of every error.

use super::*;
use actix_web::body::MessageBody;

fn rendered(err: &ApiError) -> (u16, Value, Option<String>) {
    let resp = err.error_response();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = resp.into_body().try_into_bytes().unwrap();
    (status, serde_json::from_slice(&bytes).unwrap(), retry)
}

#[test]
fn conflict_body_has_every_documented_field_and_reason_only_when_set() {
    let mut err = ApiError::IdempotencyKeyReused {
        client_message_id: "k".into(),
        conflict: "outbox_done_fingerprint_mismatch",
        daemon_fingerprint_prefix: "0011223344556677".into(),
        broker_message_id: Some("b1".into()),
        reason: None,
    };
    let (status, body, _) = rendered(&err);
    assert_eq!(status, 409);
    assert_eq!(
        body,
        json!({"error":"idempotency_key_reused","conflict":"outbox_done_fingerprint_mismatch",
               "daemon_fingerprint_prefix":"0011223344556677","broker_message_id":"b1"})
    );
    if let ApiError::IdempotencyKeyReused {
        conflict,
        reason,
        broker_message_id,
        ..
    } = &mut err
    {
        *conflict = "outbox_dead_fingerprint_match";
        *reason = Some("payload too large".into());
        *broker_message_id = None;
    }
    let (_, body, _) = rendered(&err);
    assert_eq!(body["reason"], "payload too large");
    assert_eq!(body["broker_message_id"], Value::Null);
}

#[test]
fn busy_answers_429_with_retry_after() {
    let (status, body, retry) = rendered(&ApiError::DaemonBusy { max: 64 });
    assert_eq!(status, 429);
    assert_eq!(body, json!({"error":"daemon_busy"}));
    assert_eq!(retry.as_deref(), Some("1"));
}

#[test]
fn statuses_and_bodies_follow_the_spec() {
    let cases: Vec<(ApiError, u16, Value)> = vec![
        (
            ApiError::invalid("bad"),
            400,
            json!({"error":"invalid_request","detail":"bad"}),
        ),
        (
            ApiError::PayloadTooLarge { limit_bytes: 65536 },
            413,
            json!({"error":"payload_too_large","limit_bytes":65536}),
        ),
        (
            ApiError::UnknownMesh {
                requested: "x".into(),
                meshes: vec!["a".into()],
            },
            400,
            json!({"error":"unknown_mesh","meshes":["a"]}),
        ),
        (
            ApiError::UnknownPeer { name: "bob".into() },
            404,
            json!({"error":"unknown_peer"}),
        ),
        (
            ApiError::AmbiguousPeer {
                name: "b".into(),
                candidates: vec!["b1".into(), "b2".into()],
            },
            400,
            json!({"error":"ambiguous_peer","candidates":["b1","b2"]}),
        ),
        (ApiError::NotFound, 404, json!({"error":"not_found"})),
        (
            ApiError::MethodNotAllowed,
            405,
            json!({"error":"method_not_allowed"}),
        ),
        (ApiError::Unauthorized, 401, json!({"error":"unauthorized"})),
        (
            ApiError::ForbiddenPeer {
                peer_uid: 1,
                daemon_uid: 2,
            },
            403,
            json!({"error":"forbidden_peer"}),
        ),
        (
            ApiError::ForbiddenHost,
            403,
            json!({"error":"forbidden_host"}),
        ),
        (
            ApiError::ForbiddenOrigin,
            403,
            json!({"error":"forbidden_origin"}),
        ),
        (
            ApiError::TokenInQuery,
            400,
            json!({"error":"token_in_query"}),
        ),
        (
            ApiError::TooManyStreams { max: 32 },
            429,
            json!({"error":"too_many_streams"}),
        ),
        (
            ApiError::BrokerUnavailable { mesh: "m".into() },
            503,
            json!({"error":"broker_unavailable"}),
        ),
    ];
    for (err, want_status, want_body) in cases {
        let (status, body, _) = rendered(&err);
        assert_eq!((status, &body), (want_status, &want_body), "{err}");
    }
}

#[test]
fn internal_errors_do_not_leak_their_detail() {
    let err = ApiError::Misconfigured { missing: "Handles" };
    let (status, body, _) = rendered(&err);
    assert_eq!(status, 500);
    assert_eq!(body, json!({"error":"internal"}));
    let gone = ApiError::Outbox {
        operation: "accept send",
        source: Box::new(OutboxError::Cancelled),
    };
    let (status, body, _) = rendered(&gone);
    assert_eq!(status, 503);
    assert_eq!(body, json!({"error":"daemon_unavailable"}));
}

#[test]
fn storage_failures_are_507_503_with_retry_after_and_500_storage_error() {
    use claudemesh_actors::inbox::store::InboxError;
    use claudemesh_actors::outbox::store::StoreError;
    let sqlite = |code| rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
    let batch = |fault| ApiError::Outbox {
        operation: "accept send",
        source: Box::new(OutboxError::Batch {
            detail: "outbox accept: commit: database or disk is full".into(),
            fault,
        }),
    };
    let (status, body, retry) = rendered(&batch(Some(StorageFault::Full)));
    assert_eq!(status, 507);
    assert_eq!(body["error"], "insufficient_storage");
    assert!(body["detail"].as_str().is_some_and(|d| d.contains("full")));
    assert!(
        !body.to_string().contains("commit"),
        "internal detail leaked: {body}"
    );
    assert_eq!(retry, None);
    let (status, body, retry) = rendered(&batch(Some(StorageFault::Busy)));
    assert_eq!((status, body), (503, json!({"error":"storage_busy"})));
    assert_eq!(retry.as_deref(), Some("1"));
    let (status, body, _) = rendered(&batch(Some(StorageFault::Io)));
    assert_eq!((status, body), (500, json!({"error":"storage_error"})));
    let (status, body, _) = rendered(&batch(None));
    assert_eq!((status, body), (500, json!({"error":"internal"})));

    // A requeue (a write through the store) on a full disk, and a failed inbox read.
    let requeue = ApiError::Outbox {
        operation: "requeue",
        source: Box::new(OutboxError::Store(StoreError::Sql {
            operation: "requeue: insert",
            source: sqlite(rusqlite::ffi::SQLITE_FULL),
        })),
    };
    assert_eq!(rendered(&requeue).0, 507);
    let read = ApiError::Inbox {
        operation: "list inbox",
        source: Box::new(
            InboxError::Io {
                op: "read",
                path: "/x/inbox.db".into(),
                source: std::io::Error::from_raw_os_error(libc::EIO),
            }
            .into(),
        ),
    };
    assert_eq!(
        rendered(&read),
        (500, json!({"error":"storage_error"}), None)
    );
}
