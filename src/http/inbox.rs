//! `GET /v1/inbox` (SPEC §7.2): query parameters ([`super::query::InboxParams`]) → `ListInbox`
//! to the InboxStore → `{"items":[…], "next_before": id|null}`, newest first.

use actix_web::{web, HttpRequest, HttpResponse};
use claudemesh_actors::handles::Handles;
use claudemesh_actors::inbox::msg::ListInbox;
use claudemesh_actors::inbox::store::{InboxItem, InboxQuery};
use serde_json::{json, Value};

use super::error::ApiError;
use super::query::InboxParams;

/// The handler.
pub async fn list(req: HttpRequest, handles: web::Data<Handles>) -> Result<HttpResponse, ApiError> {
    let p = InboxParams::parse(req.query_string())?;
    let query = InboxQuery {
        since: p.since_ms,
        topic: p.topic,
        from: p.from,
        mesh: p.mesh,
        limit: p.limit,
        before: p.before,
    };
    let (items, next_before) = handles
        .inbox
        .send(ListInbox { query })
        .await
        .map_err(|source| ApiError::Unavailable {
            actor: "inbox",
            source,
        })?
        .map_err(|source| ApiError::Inbox {
            operation: "list inbox",
            source: Box::new(source),
        })?;
    Ok(HttpResponse::Ok().json(page(&items, next_before)))
}

/// The response body of one page.
fn page(items: &[InboxItem], next_before: Option<i64>) -> Value {
    json!({
        "items": items.iter().map(InboxItem::to_json).collect::<Vec<_>>(),
        "next_before": next_before,
    })
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
        };
        let v = page(&[item], Some(7));
        assert_eq!(v["next_before"], 7);
        assert_eq!(v["items"][0]["received_at"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["items"][0]["body"], "hi");
        assert_eq!(page(&[], None), json!({"items": [], "next_before": null}));
    }
}
