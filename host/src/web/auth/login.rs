//! The login endpoints: `GET /login` (the page), `POST /login` (a form or JSON
//! `{username, password}`; `alice` is the user `web:alice`), `GET /login/link/{token}` (a
//! one-time link), `POST /logout` and `GET /api/session` (who am I, with the CSRF token), and
//! `GET /`, the landing page (or a redirect to `/login`).
//!
//! A form login answers with a redirect to `/`; a JSON login with `{user_id, csrf_token}`.
//! Both set the session cookie.

use super::{Caller, Rejection, SESSION_COOKIE, SESSION_TTL, caller, passwords, secrets};
use crate::db::central::web::{self as web_db, LinkUse, WebSession};
use crate::web::WebState;
use crate::web::pages::{self, Notice};
use axum::extract::{ConnectInfo, FromRequest, Path, Request, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;
use std::net::SocketAddr;

/// The routes of this file.
pub fn routes() -> axum::Router<WebState> {
    axum::Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login))
        .route("/login/link/{token}", get(login_link))
        .route("/logout", post(logout))
        .route("/api/session", get(session))
        .route("/assets/style.css", get(pages::style))
}

/// The longest user name a login may give.
const MAX_USERNAME_BYTES: usize = 200;

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

async fn login_page() -> Response {
    pages::login(StatusCode::OK, None)
}

async fn home(caller: Option<Caller>) -> Response {
    match caller {
        // A browser session goes on to the web chat (`web::chat_ui`).
        Some(caller) => match caller.csrf_token() {
            Some(_) => Redirect::to("/chat").into_response(),
            // A Bearer token has no page to show: say who it is.
            None => Json(serde_json::json!({ "user_id": caller.user_id })).into_response(),
        },
        None => Redirect::to("/login").into_response(),
    }
}

async fn login(
    State(state): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let headers = request.headers().clone();
    let as_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|text| text.starts_with("application/json"));
    let fail = |rejection: Rejection| -> Response {
        if as_json {
            rejection.into_response()
        } else {
            let mut page = pages::login(rejection.status, Some(&rejection.error));
            if let Some(seconds) = rejection.retry_after {
                page.headers_mut()
                    .insert(header::RETRY_AFTER, seconds.into());
            }
            page
        }
    };
    if let Err(rejection) = check_origin(&state, &headers) {
        return fail(rejection);
    }
    let credentials = if as_json {
        Json::<Credentials>::from_request(request, &state)
            .await
            .map(|Json(c)| c)
            .map_err(|e| e.body_text())
    } else {
        Form::<Credentials>::from_request(request, &state)
            .await
            .map(|Form(c)| c)
            .map_err(|e| e.body_text())
    };
    let credentials = match credentials {
        Ok(credentials) => credentials,
        Err(e) => {
            return fail(Rejection {
                status: StatusCode::BAD_REQUEST,
                kind: "invalid",
                error: format!("send username and password: {e}"),
                retry_after: None,
            });
        }
    };
    let name = credentials.username.trim();
    let name = name.strip_prefix("web:").unwrap_or(name);
    // Bounded before it becomes a key of the rate limiter's table.
    if name.is_empty() || name.len() > MAX_USERNAME_BYTES {
        return fail(Rejection::unauthenticated("wrong user name or password"));
    }
    let user_id = format!("web:{name}");
    let address = peer.ip();
    if let Err(wait) = state.auth.limiter.check(&user_id, address) {
        tracing::warn!(user = %user_id, %address, "login refused: too many failures");
        return fail(Rejection::rate_limited(wait));
    }
    let lookup = user_id.clone();
    let stored = match state
        .auth
        .central
        .call(move |conn| web_db::password_hash(conn, &lookup))
        .await
    {
        Ok(stored) => stored,
        Err(e) => return fail(e.into()),
    };
    let password = credentials.password;
    let verified = tokio::task::spawn_blocking(move || {
        passwords::verify_or_dummy(&password, stored.as_deref())
    })
    .await
    .unwrap_or(false);
    if !verified {
        state.auth.limiter.failed(&user_id, address);
        tracing::info!(user = %user_id, %address, "failed login");
        return fail(Rejection::unauthenticated("wrong user name or password"));
    }
    state.auth.limiter.succeeded(&user_id);
    let (cookie, csrf_token) = match start_session(&state, &user_id).await {
        Ok(started) => started,
        Err(rejection) => return fail(rejection),
    };
    tracing::info!(user = %user_id, "logged in");
    let mut response = if as_json {
        Json(serde_json::json!({ "user_id": user_id, "csrf_token": csrf_token })).into_response()
    } else {
        Redirect::to("/").into_response()
    };
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
}

/// A login from another site's page is refused: it would log the victim into the attacker's
/// account. Browsers send `Origin` on every POST; clients that send none are not browsers.
fn check_origin(state: &WebState, headers: &HeaderMap) -> Result<(), Rejection> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("");
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let same = origin == state.base_url
        || (!host.is_empty()
            && (origin == format!("http://{host}") || origin == format!("https://{host}")));
    if same {
        Ok(())
    } else {
        Err(Rejection::refused(format!(
            "a login from another site ({origin}) is refused"
        )))
    }
}

/// Creates a session for `user_id`: the `Set-Cookie` value and the CSRF token.
async fn start_session(
    state: &WebState,
    user_id: &str,
) -> Result<(HeaderValue, String), Rejection> {
    let random = |_| Rejection::internal("the system's random source failed");
    let id = secrets::generate("").map_err(random)?;
    let csrf_token = secrets::generate("").map_err(random)?;
    let now = protocol::time::now_ms();
    let ttl_ms = i64::try_from(SESSION_TTL.as_millis()).unwrap_or(i64::MAX);
    let session = WebSession {
        id_hash: secrets::hash(&id),
        user_id: user_id.to_owned(),
        csrf_token: csrf_token.clone(),
        created_at: now,
        expires_at: now.saturating_add(ttl_ms),
        last_seen_at: now,
    };
    state
        .auth
        .central
        .call(move |conn| web_db::create_session(conn, &session))
        .await?;
    let cookie = session_cookie(&id, SESSION_TTL.as_secs(), state.config.behind_https);
    Ok((cookie, csrf_token))
}

/// The `Set-Cookie` value for the session cookie; `max_age` 0 clears it.
fn session_cookie(value: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text = format!(
        "{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"
    );
    // Hex ids and fixed attributes only: always a valid header value.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

async fn login_link(State(state): State<WebState>, Path(token): Path<String>) -> Response {
    let now = protocol::time::now_ms();
    let token_hash = secrets::hash(&token);
    let used = match state
        .auth
        .central
        .call(move |conn| web_db::consume_login_link(conn, &token_hash, now))
        .await
    {
        Ok(used) => used,
        Err(e) => return Rejection::from(e).into_response(),
    };
    let refused = |status, title, text| {
        pages::notice(&Notice {
            status,
            title,
            text,
            href: "/login",
            link: "Log in",
            refresh: false,
        })
    };
    match used {
        LinkUse::LoggedIn(user_id) => match start_session(&state, &user_id).await {
            Ok((cookie, _)) => {
                tracing::info!(user = %user_id, "logged in with a login link");
                // A page that moves on by itself rather than a redirect: after a redirect
                // from a link opened in another site (a mail), the browser would hold back
                // the SameSite=Strict cookie on the first page.
                let mut response = pages::notice(&Notice {
                    status: StatusCode::OK,
                    title: "Logged in",
                    text: &format!("You are logged in as {user_id}."),
                    href: "/",
                    link: "Continue",
                    refresh: true,
                });
                response.headers_mut().insert(header::SET_COOKIE, cookie);
                response
            }
            Err(rejection) => rejection.into_response(),
        },
        LinkUse::Unknown => refused(
            StatusCode::UNAUTHORIZED,
            "Unknown login link",
            "This login link is not valid. Ask the operator for a new one.",
        ),
        LinkUse::Used => refused(
            StatusCode::GONE,
            "Login link already used",
            "A login link works once, and this one has been used. Ask the operator for a new one.",
        ),
        LinkUse::Expired => refused(
            StatusCode::GONE,
            "Login link expired",
            "This login link has expired. Ask the operator for a new one.",
        ),
    }
}

#[derive(Deserialize, Default)]
struct LogoutForm {
    #[serde(default)]
    csrf_token: Option<String>,
}

/// Ends the session server-side and clears the cookie. The CSRF token comes in
/// `X-CSRF-Token` or, from the landing page's form, in the `csrf_token` field.
async fn logout(State(state): State<WebState>, request: Request) -> Response {
    let headers = request.headers().clone();
    if caller::cookie(&headers, SESSION_COOKIE).is_none() {
        return Rejection::unauthenticated("not logged in").into_response();
    }
    let from_form = !headers.contains_key(caller::CSRF_HEADER);
    let mut checked = headers.clone();
    if from_form {
        let form = Form::<LogoutForm>::from_request(request, &state)
            .await
            .map(|Form(form)| form)
            .unwrap_or_default();
        if let Some(token) = form.csrf_token.and_then(|t| HeaderValue::from_str(&t).ok()) {
            checked.insert(caller::CSRF_HEADER, token);
        }
    }
    let caller = match caller::authenticate(&state, &http::Method::POST, &checked).await {
        Ok(caller) => caller,
        Err(rejection) => return rejection.into_response(),
    };
    let Some(session) = caller.session else {
        return Rejection::unauthenticated("not logged in with a session").into_response();
    };
    let id_hash = session.id_hash;
    if let Err(e) = state
        .auth
        .central
        .call(move |conn| web_db::delete_session(conn, &id_hash))
        .await
    {
        return Rejection::from(e).into_response();
    }
    tracing::info!(user = %caller.user_id, "logged out");
    let mut response = if from_form {
        Redirect::to("/login").into_response()
    } else {
        Json(serde_json::json!({ "logged_out": caller.user_id })).into_response()
    };
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie("", 0, state.config.behind_https),
    );
    response
}

/// `GET /api/session`: who the caller is, their roles and groups, and (for a session) the
/// CSRF token to send back in `X-CSRF-Token`.
async fn session(State(state): State<WebState>, caller: Caller) -> Result<Response, Rejection> {
    let access = caller.access(&state).await?;
    let mut response = Json(serde_json::json!({
        "user_id": caller.user_id,
        "token_scope": caller.token_scope,
        "csrf_token": caller.csrf_token(),
        "admin": access.admin,
        "roles": access.roles,
        "groups": access.groups,
    }))
    .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_http_only_strict_and_secure_behind_https() {
        let plain = session_cookie("abc", 60, false);
        assert_eq!(
            plain.to_str().unwrap(),
            "crabpot_session=abc; HttpOnly; SameSite=Strict; Path=/; Max-Age=60"
        );
        let secure = session_cookie("abc", 60, true);
        assert!(secure.to_str().unwrap().ends_with("; Secure"));
    }
}
