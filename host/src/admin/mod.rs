//! The admin API on `data/crabpot.sock` (HTTP over a unix socket, mode 0600, served by axum)
//! and, for owners and admins, on the web server under `/api/v1/...`: the server ([`Admin`],
//! one [`Admin::call`] behind both), its wire types ([`api`]) and the client the CLI uses
//! ([`client`]).
//!
//! Every call is `POST /v1/<resource>/<verb>` with a JSON body; each resource has its own
//! handler file (`groups`, `chats`, `wirings`, `destinations`, `people` for users, roles and
//! members, `sessions`, `approvals`, `tasks`, `status` with dropped messages and `channels` (every adapter's health), `adapters` for
//! out-of-process channel adapters, `web` for passwords, API tokens and login links, `webhooks` for inbound and outbound webhooks). Handlers run the central-DB work on its thread, then
//! project destination changes into the affected sessions' `inbound.db` at once. Failures are [`AdminError`]s, sent as [`api::ApiError`].

mod adapters;
pub mod api;
mod approvals;
mod chats;
pub mod client;
mod destinations;
mod egress;
mod groups;
pub mod openapi;
mod people;
mod sessions;
mod status;
mod tasks;
mod web;
mod webhooks;
mod wirings;

use crate::db::{DbError, DbThread};
use crate::router::Router;
use crate::router::approvals::DecideError;
use crate::runtime::ContainerRuntime;
use crate::session::SessionStore;
use crate::supervisor::Supervisor;
use api::{ApiError, ErrorKind};
use axum::body::Body;
use axum::extract::{Path as RoutePath, State};
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Limited};
use rusqlite::Connection;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

pub use api::Status;

/// Largest request body accepted.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Why an admin call failed; the kind decides the HTTP status and the CLI's exit code.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Not retryable.
    #[error("{0}")]
    NotFound(String),
    /// Not retryable as is.
    #[error("{0}")]
    Invalid(String),
    /// Not retryable as is.
    #[error("{0}")]
    Conflict(String),
    /// Not retryable: the caller may not do this.
    #[error("{0}")]
    Refused(String),
    /// Retryable when it was a busy database.
    #[error("{0}")]
    Internal(String),
}

impl AdminError {
    fn kind(&self) -> ErrorKind {
        match self {
            AdminError::NotFound(_) => ErrorKind::NotFound,
            AdminError::Invalid(_) => ErrorKind::Invalid,
            AdminError::Conflict(_) => ErrorKind::Conflict,
            AdminError::Refused(_) => ErrorKind::Refused,
            AdminError::Internal(_) => ErrorKind::Internal,
        }
    }
}

impl From<DbError> for AdminError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::NotFound { .. } => AdminError::NotFound(error.to_string()),
            DbError::Conflict(message) => AdminError::Conflict(message),
            DbError::Invalid(message) => AdminError::Invalid(message),
            other => AdminError::Internal(other.to_string()),
        }
    }
}

impl From<DecideError> for AdminError {
    fn from(error: DecideError) -> Self {
        match error {
            DecideError::NotFound(_) => AdminError::NotFound(error.to_string()),
            DecideError::Refused(message) => AdminError::Refused(message),
            DecideError::Invalid(message) => AdminError::Invalid(message),
            DecideError::Db(e) => e.into(),
        }
    }
}

type Reply = Result<serde_json::Value, AdminError>;

/// The admin server's view of the daemon.
pub struct Admin {
    pub install_id: String,
    pub model: String,
    pub runtime: Arc<dyn ContainerRuntime>,
    pub supervisor: Arc<Supervisor>,
    pub central: Arc<DbThread<Connection>>,
    pub sessions: Arc<SessionStore>,
    pub router: Arc<Router>,
    pub tasks: Arc<crate::tasks::Tasks>,
    /// Absolute path of `groups/`.
    pub groups_dir: PathBuf,
    /// The channel adapters, for their health.
    pub channels: Arc<crate::channels::Channels>,
    /// The out-of-process adapters (`crabpot adapters`).
    pub adapters: Arc<crate::channels::external::ExternalAdapters>,
    /// The web server's base URL, for login links; `None` when it is off.
    pub web_base_url: Option<String>,
}

/// Binds `data/crabpot.sock` with mode 0600, replacing a stale socket file.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    // One binder for every private socket of the host: a stale socket is replaced, any
    // other file there is refused, the mode is 0600.
    crate::proxy::bind_session_socket(path, None).map_err(std::io::Error::other)
}

impl Admin {
    /// Serves the admin API on `data/crabpot.sock` until `shutdown` (the same handlers as
    /// `/api/v1/...` on the web server, see [`Admin::call`]).
    pub async fn serve(self: Arc<Self>, listener: UnixListener, shutdown: CancellationToken) {
        let app = axum::Router::new()
            .route("/v1/{*route}", axum::routing::any(socket_call))
            .fallback(socket_fallback)
            .with_state(self);
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
        {
            tracing::error!(error = %e, "the admin socket stopped serving");
        }
    }

    /// One admin call: `route` is what follows `/v1/` (`<resource>/<verb>`), `body` its
    /// JSON (empty = `{}`). Every transport (the unix socket, `/api/v1` over HTTP) ends here.
    pub async fn call(&self, method: &Method, route: &str, body: Body) -> Response {
        self.call_as(method, route, body, None).await
    }

    /// [`Admin::call`] on behalf of a person (a web session or token of theirs): decisions of
    /// approvals are taken as that user (`as_user`, whatever the body says), so they meet the
    /// same approver checks as `crabpot approvals approve --as USER`.
    pub async fn call_as(
        &self,
        method: &Method,
        route: &str,
        body: Body,
        person: Option<&str>,
    ) -> Response {
        let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) => {
                return error(AdminError::Invalid(format!(
                    "cannot read the request body: {e}"
                )));
            }
        };
        let body: serde_json::Value = if body.is_empty() {
            serde_json::Value::Object(Default::default())
        } else {
            match serde_json::from_slice(&body) {
                Ok(value) => value,
                Err(e) => {
                    return error(AdminError::Invalid(format!(
                        "the request body is not JSON: {e}"
                    )));
                }
            }
        };
        let mut body = body;
        if let (Some(person), "approvals/approve" | "approvals/deny") =
            (person, route.trim_end_matches('/'))
            && let Some(object) = body.as_object_mut()
        {
            object.insert("as_user".into(), person.into());
        }
        match self.dispatch(method.as_str(), route, body).await {
            Ok(value) => json(StatusCode::OK, &value),
            Err(e) => error(e),
        }
    }

    async fn dispatch(&self, method: &str, route: &str, body: serde_json::Value) -> Reply {
        let (resource, verb) = route.split_once('/').unwrap_or((route, "show"));
        match (method, resource) {
            ("GET" | "POST", "status") => status::status(self).await,
            ("POST", "groups") => groups::handle(self, verb, body).await,
            ("POST", "chats") => chats::handle(self, verb, body).await,
            ("POST", "wirings") => wirings::handle(self, verb, body).await,
            ("POST", "destinations") => destinations::handle(self, verb, body).await,
            ("POST", "users") if verb == "passwd" => web::passwd(self, body).await,
            ("POST", "users" | "roles" | "members") => {
                people::handle(self, resource, verb, body).await
            }
            ("POST", "sessions") => sessions::handle(self, verb, body).await,
            ("POST", "approvals") => approvals::handle(self, verb, body).await,
            ("POST", "tasks") => tasks::handle(self, verb, body).await,
            ("POST", "dropped") => status::dropped(self, verb, body).await,
            ("POST", "channels") => status::channels(self, verb),
            ("POST", "adapters") => adapters::handle(self, verb, body).await,
            ("POST", "tokens") => web::tokens(self, verb, body).await,
            ("POST", "web") => web::handle(self, verb, body).await,
            ("POST", "webhooks") => webhooks::handle(self, verb, body).await,
            ("POST", "egress") => egress::handle(self, verb, body).await,
            _ => Err(no_endpoint(method, &format!("/v1/{route}"))),
        }
    }

    /// Runs `f` on the central DB's thread inside one transaction.
    async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, AdminError> {
        Ok(self
            .central
            .call(move |conn| {
                let tx = conn.transaction()?;
                let value = f(&tx)?;
                tx.commit()?;
                Ok(value)
            })
            .await?)
    }
}

async fn socket_call(
    State(admin): State<Arc<Admin>>,
    method: Method,
    RoutePath(route): RoutePath<String>,
    body: Body,
) -> Response {
    admin.call(&method, &route, body).await
}

async fn socket_fallback(method: Method, uri: http::Uri) -> Response {
    error(no_endpoint(method.as_str(), uri.path()))
}

fn no_endpoint(method: &str, path: &str) -> AdminError {
    AdminError::NotFound(format!("no admin endpoint {method} {path}"))
}

fn unknown_verb(resource: &str, verb: &str) -> AdminError {
    AdminError::NotFound(format!("no admin endpoint for `{resource} {verb}`"))
}

/// Parses a request body into the verb's request type.
fn parse<T: DeserializeOwned>(body: serde_json::Value) -> Result<T, AdminError> {
    serde_json::from_value(body).map_err(|e| AdminError::Invalid(format!("bad request: {e}")))
}

/// Serialises an answer.
fn to_value(value: &impl Serialize) -> Reply {
    serde_json::to_value(value).map_err(|e| AdminError::Internal(e.to_string()))
}

fn json(status: StatusCode, value: &impl Serialize) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    (
        status,
        [(http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

fn error(error: AdminError) -> Response {
    let kind = error.kind();
    let status = StatusCode::from_u16(kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(
        status,
        &ApiError {
            kind,
            error: error.to_string(),
        },
    )
}
