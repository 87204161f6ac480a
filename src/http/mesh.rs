//! Per-mesh routes (SPEC §8): `GET /v1/peers?mesh=` (the connection's cached peer list, each
//! entry with its `mesh`; a session's default mesh is its own) and
//! `POST /v1/profile` (validated, then `ApplyProfile` on the mesh's connection, which applies
//! it now if the link is open and again after every reconnect).

use actix_web::{web, HttpRequest, HttpResponse};
use claudemesh_actors::broker::msg::{ApplyProfile, GetPeers, Profile};
use claudemesh_actors::handles::{Handles, MeshHandle};
use claudemesh_actors::time::iso_from_ms;
use serde_json::{json, Map, Value};

use super::caller::Caller;
use super::error::ApiError;
use super::limits::read_body;
use super::query::Params;
use super::send_request::optional_string;

/// Profile `status` values the broker knows.
const PROFILE_STATUSES: [&str; 3] = ["idle", "working", "dnd"];

/// The mesh named by `slug` (default mesh when `None`), or 400 `unknown_mesh`.
pub fn mesh_or_400<'a>(
    handles: &'a Handles,
    slug: Option<&str>,
) -> Result<&'a MeshHandle, ApiError> {
    handles.mesh(slug).ok_or_else(|| ApiError::UnknownMesh {
        requested: slug.unwrap_or(&handles.default_mesh).to_string(),
        meshes: handles.slugs(),
    })
}

/// `GET /v1/peers`.
pub async fn peers(
    req: HttpRequest,
    caller: Caller,
    handles: web::Data<Handles>,
) -> Result<HttpResponse, ApiError> {
    let params = Params::parse(req.query_string())?;
    // A session's default is its own mesh (SPEC §12).
    let mesh = mesh_or_400(&handles, caller.mesh_or(params.get("mesh")))?;
    let unavailable = || ApiError::BrokerUnavailable {
        mesh: mesh.slug.clone(),
    };
    let snapshot = match mesh.link.send(GetPeers).await {
        Ok(Ok(snapshot)) => snapshot,
        Ok(Err(e)) => {
            log::debug!("peers of mesh {}: {e}", mesh.slug);
            return Err(unavailable());
        }
        Err(e) => {
            log::warn!(
                "peers of mesh {}: connection actor unavailable: {e}",
                mesh.slug
            );
            return Err(unavailable());
        }
    };
    let peers = with_mesh(snapshot.peers, &mesh.slug);
    Ok(HttpResponse::Ok().json(json!({
        "peers": peers,
        "fetched_at": iso_from_ms(snapshot.fetched_at),
        "stale": snapshot.stale,
    })))
}

/// The broker's entries verbatim (`peerRole`, `channel`, … unchanged) plus the `mesh` they
/// are of (SPEC §12).
pub fn with_mesh(peers: Vec<Value>, slug: &str) -> Vec<Value> {
    peers
        .into_iter()
        .map(|mut p| {
            if let Value::Object(map) = &mut p {
                map.insert("mesh".into(), Value::from(slug));
            }
            p
        })
        .collect()
}

/// Parses a profile body: every field optional, wrong types refused; returns the profile and
/// the body's `mesh`, if any.
pub fn parse_profile(body: &[u8]) -> Result<(Profile, Option<String>), ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("body is not valid JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(ApiError::invalid("body must be a JSON object"));
    };
    let text = |field: &str| optional_string(&obj, field).map(|s| s.map(str::to_string));
    let status = text("status")?;
    if let Some(s) = &status {
        if !PROFILE_STATUSES.contains(&s.as_str()) {
            return Err(ApiError::invalid(format!(
                "unknown status {s:?} (idle|working|dnd)"
            )));
        }
    }
    let visible = match obj.get("visible") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(ApiError::invalid("`visible` must be a boolean")),
    };
    let profile = Profile {
        summary: text("summary")?,
        status,
        visible,
        avatar: text("avatar")?,
        title: text("title")?,
        bio: text("bio")?,
        capabilities: capabilities(&obj)?,
    };
    Ok((profile, text("mesh")?))
}

fn capabilities(obj: &Map<String, Value>) -> Result<Option<Vec<String>>, ApiError> {
    let bad = || ApiError::invalid("`capabilities` must be an array of strings");
    match obj.get("capabilities") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(bad))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(bad()),
    }
}

/// `POST /v1/profile`.
pub async fn profile(
    req: HttpRequest,
    payload: web::Payload,
    handles: web::Data<Handles>,
) -> Result<HttpResponse, ApiError> {
    let params = Params::parse(req.query_string())?;
    let body = read_body(payload, handles.tuning.ipc.body_limit).await?;
    let (profile, body_mesh) = parse_profile(&body)?;
    let slug = params.get("mesh").map(str::to_string).or(body_mesh);
    let mesh = mesh_or_400(&handles, slug.as_deref())?;
    let applied = mesh
        .link
        .send(ApplyProfile { profile })
        .await
        .map_err(|source| ApiError::Unavailable {
            actor: "broker connection",
            source,
        })?;
    if let Some(fault) = applied.not_saved {
        return Err(ApiError::Storage {
            operation: "saving the profile",
            fault,
        });
    }
    Ok(HttpResponse::Ok().json(json!({
        "ok": true,
        "applied": applied.applied,
        "pending": applied.pending,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<(Profile, Option<String>), ApiError> {
        parse_profile(v.to_string().as_bytes())
    }

    #[test]
    fn peers_keep_the_broker_fields_and_gain_their_mesh() {
        let entry = json!({"pubkey": "ab", "peerRole": "session", "channel": "claude-code",
                           "displayName": "x", "future": {"a": 1}});
        let out = with_mesh(vec![entry.clone()], "work");
        let mut expected = entry;
        expected["mesh"] = json!("work");
        assert_eq!(out, vec![expected]);
    }

    #[test]
    fn every_profile_field_is_read() {
        let (p, mesh) = parse(json!({
            "summary": "s", "status": "dnd", "visible": false, "avatar": "a", "title": "t",
            "bio": "b", "capabilities": ["x", "y"], "mesh": "work", "other": 1
        }))
        .unwrap();
        assert_eq!(
            p,
            Profile {
                summary: Some("s".into()),
                status: Some("dnd".into()),
                visible: Some(false),
                avatar: Some("a".into()),
                title: Some("t".into()),
                bio: Some("b".into()),
                capabilities: Some(vec!["x".into(), "y".into()]),
            }
        );
        assert_eq!(mesh.as_deref(), Some("work"));
        let (empty, mesh) = parse(json!({})).unwrap();
        assert_eq!(empty, Profile::default());
        assert_eq!(mesh, None);
    }

    #[test]
    fn wrong_profile_types_are_refused() {
        for bad in [
            json!({"status": "busy"}),
            json!({"status": 1}),
            json!({"visible": "yes"}),
            json!({"summary": 3}),
            json!({"capabilities": "x"}),
            json!({"capabilities": ["x", 1]}),
            json!({"mesh": false}),
            json!([1]),
        ] {
            assert!(
                matches!(parse(bad.clone()), Err(ApiError::InvalidRequest { .. })),
                "{bad}"
            );
        }
        assert!(parse_profile(b"summary=x").is_err());
    }
}
