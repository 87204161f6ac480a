//! Who makes a request (SPEC §12): the operator, or one registered session.
//!
//! A request carries `Authorization: ClaudeMesh-Session <64 hex>` to act as that session. On
//! the socket that is the only credential (the head CLI sends exactly this). On TCP the bearer
//! token is required as well, so the two travel as two credentials: two `Authorization` header
//! lines (`Authorization: Bearer <local-token>` and `Authorization: ClaudeMesh-Session <hex>`,
//! any order), or — the same thing folded by an intermediary — one line with both separated by
//! a comma. Neither a bearer token nor a session token ever contains a comma, so splitting on
//! commas is unambiguous. An unknown or malformed session token is treated as no session (the
//! head CLI relies on that), never as an error.
//!
//! The registry is asked in memory ([`ResolveSession`]); the resolved [`SessionView`] carries no
//! token and no secret, so nothing a handler does with it can leak one.

use actix_web::dev::Payload;
use actix_web::http::header::{HeaderMap, AUTHORIZATION};
use actix_web::{web, FromRequest, HttpRequest};
use claudemesh_actors::handles::Handles;
use claudemesh_actors::inbox::store::Scope;
use claudemesh_actors::sessions::model::{SessionToken, SessionView};
use claudemesh_actors::sessions::msg::ResolveSession;
use futures_util::future::LocalBoxFuture;

use super::error::ApiError;
use super::security::bearer_token;

/// The session scheme of the `Authorization` header (case-insensitive).
pub const SESSION_SCHEME: &str = "ClaudeMesh-Session";

/// Every credential of the request's `Authorization` headers: each line, split on commas.
pub fn credentials(headers: &HeaderMap) -> Vec<&str> {
    headers
        .get_all(AUTHORIZATION)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

/// The `Bearer` credential among them (what the TCP check compares), else the first one (so
/// a request with only a wrong scheme is still judged, and refused).
pub fn bearer_credential(headers: &HeaderMap) -> Option<&str> {
    let all = credentials(headers);
    all.iter()
        .find(|c| bearer_token(Some(c)).is_some())
        .or(all.first())
        .copied()
}

/// The session token among them, when one is well formed.
pub fn session_token(headers: &HeaderMap) -> Option<SessionToken> {
    credentials(headers).into_iter().find_map(|c| {
        let (scheme, rest) = c.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case(SESSION_SCHEME)
            .then(|| SessionToken::parse(rest))
            .flatten()
    })
}

/// The caller: `Some` when the request carries the token of a registered session.
#[derive(Debug, Clone, Default)]
pub struct Caller(pub Option<SessionView>);

impl Caller {
    /// The session's inbox/event scope, if the caller is a session.
    pub fn scope(&self) -> Option<Scope> {
        self.0.as_ref().map(|s| Scope {
            mesh: s.mesh.clone(),
            session_pubkey: s.session_pubkey.clone(),
        })
    }

    /// An explicit mesh, else the session's mesh, else `None` (the daemon's default).
    pub fn mesh_or<'a>(&'a self, explicit: Option<&'a str>) -> Option<&'a str> {
        explicit.or(self.0.as_ref().map(|s| s.mesh.as_str()))
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Caller, ApiError>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let token = session_token(req.headers());
        let handles = req.app_data::<web::Data<Handles>>().cloned();
        Box::pin(async move {
            let Some(token) = token else {
                return Ok(Caller(None));
            };
            let handles = handles.ok_or(ApiError::Misconfigured { missing: "Handles" })?;
            let view = handles
                .sessions
                .send(ResolveSession { token })
                .await
                .map_err(|source| ApiError::Unavailable {
                    actor: "session registry",
                    source,
                })?;
            Ok(Caller(view))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(AUTHORIZATION, HeaderValue::from_str(l).unwrap());
        }
        h
    }

    #[test]
    fn bearer_and_session_coexist_as_two_lines_or_one_folded_line() {
        let hex = "Ab".repeat(32);
        for h in [
            headers(&["Bearer tok", &format!("ClaudeMesh-Session {hex}")]),
            headers(&[&format!("claudemesh-session {hex}"), "Bearer tok"]),
            headers(&[&format!("Bearer tok, ClaudeMesh-Session {hex}")]),
        ] {
            assert_eq!(bearer_credential(&h), Some("Bearer tok"));
            assert_eq!(session_token(&h), SessionToken::parse(&hex));
        }
        let only_session = headers(&[&format!("ClaudeMesh-Session {hex}")]);
        assert_eq!(session_token(&only_session), SessionToken::parse(&hex));
        // No bearer: the session credential is what the TCP check sees, and refuses.
        assert_eq!(
            bearer_credential(&only_session),
            Some(format!("ClaudeMesh-Session {hex}").as_str())
        );
        assert_eq!(session_token(&headers(&["ClaudeMesh-Session abc"])), None);
        assert_eq!(session_token(&headers(&["Bearer tok"])), None);
        assert_eq!(bearer_credential(&HeaderMap::new()), None);
    }
}
