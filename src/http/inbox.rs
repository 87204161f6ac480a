//! The inbox routes (SPEC §7.2, §12): `GET /v1/inbox` (one page, newest first; `unread_only`,
//! `mark_seen`), `POST /v1/inbox/seen {ids}`, `DELETE /v1/inbox?mesh=&before=` and
//! `DELETE /v1/inbox/<id>`.
//!
//! A request made by a session ([`Caller`]) sees, marks and deletes only its own view: rows of
//! its mesh not addressed to another session. Without a session header every row is visible
//! (the operator's view), as before.

use actix_web::{web, HttpRequest, HttpResponse};
use claudemesh_actors::handles::Handles;
use claudemesh_actors::inbox::msg::{
    DeleteInbox, DeleteInboxRow, InboxActorError, InboxPage, ListInbox, MarkSeen,
};
use claudemesh_actors::inbox::store::{self as inbox_store, InboxItem, InboxQuery};
use serde_json::{json, Value};

use super::caller::Caller;
use super::error::ApiError;
use super::limits::read_body;
use super::query::{parse_since, InboxParams, Params};

fn unavailable(source: actix::MailboxError) -> ApiError {
    ApiError::Unavailable {
        actor: "inbox",
        source,
    }
}

fn failed(operation: &'static str) -> impl FnOnce(InboxActorError) -> ApiError {
    move |source| ApiError::Inbox {
        operation,
        source: Box::new(source),
    }
}

/// `GET /v1/inbox`.
pub async fn list(
    req: HttpRequest,
    caller: Caller,
    handles: web::Data<Handles>,
) -> Result<HttpResponse, ApiError> {
    let p = InboxParams::parse(req.query_string())?;
    let query = InboxQuery {
        since: p.since_ms,
        topic: p.topic,
        from: p.from,
        mesh: p.mesh,
        limit: p.limit,
        before: p.before,
        unread_only: p.unread_only,
        scope: caller.scope(),
    };
    // A page that marks rows seen writes, so it goes to the owner; a plain page is read on a
    // read-only connection and never waits behind the writer.
    let page = if p.mark_seen {
        handles
            .inbox
            .send(ListInbox {
                query,
                mark_seen: true,
            })
            .await
            .map_err(unavailable)?
            .map_err(failed("list inbox"))?
    } else {
        handles
            .inbox_reads
            .run(move |c| {
                let (items, next_before) = inbox_store::query(c, &query)?;
                Ok::<_, InboxActorError>(InboxPage {
                    items,
                    next_before,
                    marked_seen: 0,
                })
            })
            .await
            .map_err(failed("list inbox"))?
    };
    let mut body = page_json(&page.items, page.next_before);
    if p.mark_seen {
        body["marked_seen"] = page.marked_seen.into();
    }
    Ok(HttpResponse::Ok().json(body))
}

/// The response body of one page.
fn page_json(items: &[InboxItem], next_before: Option<i64>) -> Value {
    json!({
        "items": items.iter().map(InboxItem::to_json).collect::<Vec<_>>(),
        "next_before": next_before,
    })
}

/// The ids of a `seen` body: integers, or strings holding one (the head CLI's ids are strings).
pub fn parse_ids(body: &[u8]) -> Result<Vec<i64>, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("body is not valid JSON: {e}")))?;
    let bad = || ApiError::invalid("`ids` must be an array of row ids");
    let items = v.get("ids").and_then(Value::as_array).ok_or_else(bad)?;
    items
        .iter()
        .map(|id| match id {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(bad)
}

/// `POST /v1/inbox/seen`.
pub async fn seen(
    payload: web::Payload,
    caller: Caller,
    handles: web::Data<Handles>,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(payload, handles.tuning.ipc.body_limit).await?;
    let ids = parse_ids(&body)?;
    let marked = handles
        .inbox
        .send(MarkSeen {
            ids,
            scope: caller.scope(),
        })
        .await
        .map_err(unavailable)?
        .map_err(failed("mark seen"))?;
    Ok(HttpResponse::Ok().json(json!({ "marked_seen": marked })))
}

/// `DELETE /v1/inbox?mesh=&before=` (`before`: ISO 8601 or unix ms, a receive time).
pub async fn delete_all(
    req: HttpRequest,
    caller: Caller,
    handles: web::Data<Handles>,
) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(req.query_string())?;
    let before_ms = p.get("before").map(parse_since).transpose()?;
    let removed = handles
        .inbox
        .send(DeleteInbox {
            mesh: p.get("mesh").map(str::to_string),
            before_ms,
            scope: caller.scope(),
        })
        .await
        .map_err(unavailable)?
        .map_err(failed("delete inbox rows"))?;
    Ok(HttpResponse::Ok().json(json!({ "removed": removed })))
}

/// `DELETE /v1/inbox/<id>`.
pub async fn delete_one(
    req: HttpRequest,
    caller: Caller,
    handles: web::Data<Handles>,
) -> Result<HttpResponse, ApiError> {
    let id: i64 = req
        .match_info()
        .get("id")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ApiError::invalid("the inbox row id must be an integer"))?;
    let removed = handles
        .inbox
        .send(DeleteInboxRow {
            id,
            scope: caller.scope(),
        })
        .await
        .map_err(unavailable)?
        .map_err(failed("delete inbox row"))?;
    if removed {
        Ok(HttpResponse::Ok().json(json!({"removed": 1, "id": id})))
    } else {
        Err(ApiError::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_has_items_with_iso_times_and_the_cursor() {
        let item = InboxItem {
            id: 7,
            client_message_id: Some("c".into()),
            broker_message_id: "b".into(),
            mesh: "m".into(),
            topic: None,
            sender_pubkey: "ab".into(),
            sender_name: Some("bob".into()),
            body: Some("hi".into()),
            received_at: 0,
            reply_to_id: None,
            kind: "dm".into(),
            decrypt_error: false,
            seen_at: None,
            recipient_pubkey: None,
            recipient_kind: "member".into(),
            sender_member_pubkey: None,
        };
        let v = page_json(&[item], Some(7));
        assert_eq!(v["next_before"], 7);
        assert_eq!(v["items"][0]["received_at"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["items"][0]["body"], "hi");
        assert_eq!(v["items"][0]["seen_at"], Value::Null);
        assert_eq!(
            page_json(&[], None),
            json!({"items": [], "next_before": null})
        );
    }

    #[test]
    fn seen_ids_are_integers_or_numeric_strings() {
        assert_eq!(
            parse_ids(br#"{"ids":[1,"2"," 3"]}"#).unwrap(),
            vec![1, 2, 3]
        );
        assert_eq!(parse_ids(br#"{"ids":[]}"#).unwrap(), Vec::<i64>::new());
        for bad in [&br#"{"ids":["x"]}"#[..], br#"{"ids":1}"#, br#"{}"#, b"nope"] {
            assert!(parse_ids(bad).is_err());
        }
    }
}
