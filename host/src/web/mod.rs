//! The host's one HTTP server (axum), on `127.0.0.1:7878` by default (`web_listen`): the web
//! chat and its assets, the admin dashboard, the admin API over HTTP (`/api/v1/...`, the same
//! handlers as `data/crabpot.sock`), the OpenAI-compatible API (`/v1/...`, [`openai`]) and
//! `/metrics` ([`metrics`]), and the platforms' webhooks under `/hooks/`. Who may call what is
//! [`auth`]'s; a webhook checks its platform's secret or signature itself.
//!
//! TLS is a reverse proxy's; with `web_behind_https` the cookies are `Secure`.

pub mod auth;
pub mod chat_api;
pub mod chat_ui;
pub mod dashboard;
pub mod metrics;
pub mod openai;
pub mod pages;
mod state;

pub use state::WebState;

use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Every route of the server.
pub fn router(state: WebState) -> axum::Router {
    axum::Router::new()
        .merge(auth::login::routes())
        .route("/api/v1/{*route}", axum::routing::any(admin_api))
        .route("/api/openapi.json", axum::routing::get(openapi))
        .merge(openai::routes())
        .merge(chat_api::routes())
        .merge(chat_ui::routes())
        .merge(dashboard::routes())
        .merge(metrics::routes())
        .with_state(state)
}

/// `/api/v1/<resource>/<verb>`: the admin API of `data/crabpot.sock`, for an owner or a
/// global admin (an `admin` token, or a session with the CSRF token).
async fn admin_api(
    axum::extract::State(state): axum::extract::State<WebState>,
    caller: auth::Caller,
    method: http::Method,
    axum::extract::Path(route): axum::extract::Path<String>,
    body: axum::body::Body,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if let Err(rejection) = caller.require_admin(&state).await {
        return rejection.into_response();
    }
    tracing::debug!(user = %caller.user_id, %route, "admin API call over HTTP");
    state
        .admin
        .call_as(&method, &route, body, Some(&caller.user_id))
        .await
}

/// `GET /api/openapi.json`: the admin API's OpenAPI 3 document, for any authenticated caller.
async fn openapi(_caller: auth::Caller) -> axum::Json<serde_json::Value> {
    axum::Json(crate::admin::openapi::document("/api/v1"))
}

/// Binds the listen address, naming it in the error.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    use anyhow::Context;
    TcpListener::bind(addr).await.with_context(|| {
        format!(
            "cannot listen on {addr} for the web server (is another crabpot running? set \
             --web-listen / CRABPOT_WEB_LISTEN to another address, or `off`)"
        )
    })
}

/// Serves until `shutdown`; connections still open then are closed gracefully. `hooks` are
/// the routes the platform adapters serve (`/hooks/<platform>/...`, see
/// `crate::channels::platforms`): they answer to the platform's own proof, not a session.
pub async fn serve(
    listener: TcpListener,
    state: WebState,
    hooks: axum::Router,
    shutdown: CancellationToken,
) {
    let app = router(state)
        .merge(hooks)
        .into_make_service_with_connect_info::<SocketAddr>();
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
    {
        tracing::error!(error = %e, "the web server stopped");
    }
}
