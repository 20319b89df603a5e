//! [`Caller`], the extractor every authenticated handler takes, its [`Rejection`], and what a
//! caller may reach ([`Access`], [`Caller::require_admin`]).
//!
//! A request authenticates with `Authorization: Bearer cpt_…` (an API token) or with the
//! `crabpot_session` cookie. With the cookie, a request whose method is not GET, HEAD or
//! OPTIONS must also carry `X-CSRF-Token` equal to the session's token; a Bearer request
//! needs none, since a browser never adds that header by itself.

use super::{SESSION_COOKIE, Scope, secrets};
use crate::db::central::people::{self, Role, RoleGrant};
use crate::web::WebState;
use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderMap, Method, StatusCode, header};
use protocol::AgentGroupId;

/// The header that carries the session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// An authenticated caller.
#[derive(Clone)]
pub struct Caller {
    /// The crabpot user id, e.g. `web:alice`.
    pub user_id: String,
    /// `Some` when the caller came with an API token.
    pub token_scope: Option<Scope>,
    /// `Some` when the caller came with a session cookie.
    pub(crate) session: Option<SessionRef>,
}

/// The session a cookie-authenticated caller came with.
#[derive(Clone)]
pub(crate) struct SessionRef {
    pub(crate) id_hash: String,
    pub(crate) csrf_token: String,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the CSRF token or the session's hash: this may be logged.
        f.debug_struct("Caller")
            .field("user_id", &self.user_id)
            .field("token_scope", &self.token_scope)
            .field("session", &self.session.is_some())
            .finish()
    }
}

/// What a caller may reach.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Access {
    /// The user's role grants.
    pub roles: Vec<RoleGrant>,
    /// May use the admin API: an owner or global admin, not through a `chat` token.
    pub admin: bool,
    /// The agent groups the caller may chat with: every group for owners and global
    /// admins, else those they are a member or an admin of.
    pub groups: Vec<AgentGroupId>,
}

/// Why a request was not let in: 401 (no or bad credentials), 403 (not allowed), 429 (too
/// many logins) or 500. The body is `{"kind": …, "error": …}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: StatusCode,
    pub kind: &'static str,
    pub error: String,
    /// For 429: seconds until the next attempt may succeed.
    pub retry_after: Option<u64>,
}

impl Rejection {
    pub fn unauthenticated(error: impl Into<String>) -> Rejection {
        Rejection::new(StatusCode::UNAUTHORIZED, "unauthenticated", error)
    }

    pub fn refused(error: impl Into<String>) -> Rejection {
        Rejection::new(StatusCode::FORBIDDEN, "refused", error)
    }

    pub fn internal(error: impl Into<String>) -> Rejection {
        Rejection::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", error)
    }

    pub fn rate_limited(wait: std::time::Duration) -> Rejection {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Rejection {
            retry_after: Some(seconds.max(1)),
            ..Rejection::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many failed logins; try again in {} s", seconds.max(1)),
            )
        }
    }

    fn new(status: StatusCode, kind: &'static str, error: impl Into<String>) -> Rejection {
        Rejection {
            status,
            kind,
            error: error.into(),
            retry_after: None,
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "kind": self.kind, "error": self.error });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

impl From<crate::db::DbError> for Rejection {
    fn from(error: crate::db::DbError) -> Self {
        Rejection::internal(format!("cannot check credentials: {error}"))
    }
}

impl FromRequestParts<WebState> for Caller {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, Rejection> {
        authenticate(state, &parts.method, &parts.headers).await
    }
}

impl OptionalFromRequestParts<WebState> for Caller {
    type Rejection = Rejection;

    /// `None` when the request has no valid credentials; a refusal (a missing CSRF token)
    /// or an internal failure is still an error.
    async fn from_request_parts(
        parts: &mut Parts,
        state: &WebState,
    ) -> Result<Option<Self>, Rejection> {
        match authenticate(state, &parts.method, &parts.headers).await {
            Ok(caller) => Ok(Some(caller)),
            Err(rejection) if rejection.status == StatusCode::UNAUTHORIZED => Ok(None),
            Err(rejection) => Err(rejection),
        }
    }
}

/// Checks a request's credentials.
pub async fn authenticate(
    state: &WebState,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Caller, Rejection> {
    let now = protocol::time::now_ms();
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|text| {
                let (scheme, token) = text.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or_else(|| {
                Rejection::unauthenticated("the Authorization header must be `Bearer <token>`")
            })?;
        let token_hash = secrets::hash(token);
        let found = state
            .auth
            .central
            .call(move |conn| crate::db::central::web::live_token(conn, &token_hash, now))
            .await?;
        let token = found
            .ok_or_else(|| Rejection::unauthenticated("the API token is unknown or revoked"))?;
        return Ok(Caller {
            user_id: token.user_id,
            token_scope: Some(token.scope),
            session: None,
        });
    }
    let Some(cookie) = cookie(headers, SESSION_COOKIE) else {
        return Err(Rejection::unauthenticated(
            "not logged in: log in at /login, or send Authorization: Bearer <token>",
        ));
    };
    let id_hash = secrets::hash(cookie);
    let found = state
        .auth
        .central
        .call(move |conn| crate::db::central::web::live_session(conn, &id_hash, now))
        .await?;
    let session = found.ok_or_else(|| {
        Rejection::unauthenticated("the session has expired or ended: log in again at /login")
    })?;
    if !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        let presented = headers
            .get(CSRF_HEADER)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("");
        if presented.is_empty() {
            return Err(Rejection::refused(
                "a request made with the session cookie must carry the X-CSRF-Token header (see GET /api/session)",
            ));
        }
        if !secrets::same(presented, &session.csrf_token) {
            return Err(Rejection::refused(
                "the X-CSRF-Token header does not match this session's token",
            ));
        }
    }
    Ok(Caller {
        user_id: session.user_id,
        token_scope: None,
        session: Some(SessionRef {
            id_hash: session.id_hash,
            csrf_token: session.csrf_token,
        }),
    })
}

/// The value of a cookie, from every `Cookie` header of the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|text| text.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"'))
        .filter(|value| !value.is_empty())
}

impl Caller {
    /// The session's CSRF token, for a cookie-authenticated caller.
    pub fn csrf_token(&self) -> Option<&str> {
        self.session.as_ref().map(|s| s.csrf_token.as_str())
    }

    /// What this caller may reach.
    pub async fn access(&self, state: &WebState) -> Result<Access, Rejection> {
        let user_id = self.user_id.clone();
        let chat_only = self.token_scope == Some(Scope::Chat);
        let access = state
            .auth
            .central
            .call(move |conn| {
                let roles: Vec<RoleGrant> = people::list_roles(conn)?
                    .into_iter()
                    .filter(|grant| grant.user_id == user_id)
                    .collect();
                let global = roles
                    .iter()
                    .any(|grant| grant.role == Role::Owner || grant.agent_group_id.is_none());
                let mut groups: Vec<AgentGroupId> = if global {
                    crate::db::central::groups::list_agent_groups(conn)?
                        .into_iter()
                        .map(|group| group.id)
                        .collect()
                } else {
                    let mut groups: Vec<AgentGroupId> = people::list_members(conn, None)?
                        .into_iter()
                        .filter(|member| member.user_id == user_id)
                        .map(|member| member.agent_group_id)
                        .collect();
                    groups.extend(roles.iter().filter_map(|g| g.agent_group_id.clone()));
                    groups
                };
                groups.sort_by(|a, b| a.as_str().cmp(b.as_str()));
                groups.dedup();
                Ok(Access {
                    roles,
                    admin: global && !chat_only,
                    groups,
                })
            })
            .await?;
        Ok(access)
    }

    /// Lets an owner or a global admin through (a per-group admin administers through the
    /// chat, not the whole admin API); a `chat` token never, whoever its user is.
    pub async fn require_admin(&self, state: &WebState) -> Result<(), Rejection> {
        if self.token_scope == Some(Scope::Chat) {
            return Err(Rejection::refused(
                "this API token has scope `chat`; the admin API needs a token of scope `admin`",
            ));
        }
        if self.access(state).await?.admin {
            Ok(())
        } else {
            Err(Rejection::refused(format!(
                "{} is neither an owner nor a global admin (crabpot roles grant)",
                self.user_id
            )))
        }
    }

    /// The agent groups this caller may chat with (see [`Access::groups`]).
    pub async fn groups(&self, state: &WebState) -> Result<Vec<AgentGroupId>, Rejection> {
        Ok(self.access(state).await?.groups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, "a=1; crabpot_session=abc".parse().unwrap());
        headers.append(header::COOKIE, "b=2".parse().unwrap());
        assert_eq!(cookie(&headers, "crabpot_session"), Some("abc"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "crabpot"), None);
        let mut empty = HeaderMap::new();
        empty.append(header::COOKIE, "crabpot_session=".parse().unwrap());
        assert_eq!(cookie(&empty, "crabpot_session"), None);
    }

    #[test]
    fn rejections_round_retry_after_up() {
        let rejection = Rejection::rate_limited(std::time::Duration::from_millis(1_500));
        assert_eq!(rejection.retry_after, Some(2));
        let response = rejection.into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
    }
}
