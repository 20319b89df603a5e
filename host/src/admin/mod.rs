//! The admin API on `data/crabpot.sock` (HTTP over a unix socket, mode 0600): the server
//! ([`Admin`]), its wire types ([`api`]) and the client the CLI uses ([`client`]).
//!
//! Every call is `POST /v1/<resource>/<verb>` with a JSON body; each resource has its own
//! handler file (`groups`, `chats`, `wirings`, `destinations`, `people` for users, roles and
//! members, `sessions`, `approvals`, `tasks`, `status` with dropped messages, `adapters` for
//! out-of-process channel adapters). Handlers run the central-DB work on its thread, then
//! project destination changes into the affected sessions' `inbound.db` at once. Failures are [`AdminError`]s, sent as [`api::ApiError`].

mod adapters;
pub mod api;
mod approvals;
mod chats;
pub mod client;
mod destinations;
mod groups;
mod people;
mod sessions;
mod status;
mod tasks;
mod wirings;

use crate::db::{DbError, DbThread};
use crate::router::Router;
use crate::router::approvals::DecideError;
use crate::runtime::ContainerRuntime;
use crate::session::SessionStore;
use crate::supervisor::Supervisor;
use api::{ApiError, ErrorKind};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rusqlite::Connection;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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
}

/// Binds `data/crabpot.sock` with mode 0600, replacing a stale socket file.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    // One binder for every private socket of the host: a stale socket is replaced, any
    // other file there is refused, the mode is 0600.
    crate::proxy::bind_session_socket(path, None).map_err(std::io::Error::other)
}

impl Admin {
    pub async fn serve(
        self: Arc<Self>,
        listener: UnixListener,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) {
        loop {
            let stream = tokio::select! {
                _ = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
            };
            let this = Arc::clone(&self);
            tasks.spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let this = Arc::clone(&this);
                    async move { Ok::<_, std::convert::Infallible>(this.handle(request).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    async fn handle(&self, request: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let method = request.method().as_str().to_owned();
        let path = request.uri().path().to_owned();
        let body = match Limited::new(request.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
        {
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
        let Some(route) = path.strip_prefix("/v1/") else {
            return error(no_endpoint(&method, &path));
        };
        let (resource, verb) = route.split_once('/').unwrap_or((route, "show"));
        let result = match (method.as_str(), resource) {
            ("GET" | "POST", "status") => status::status(self).await,
            ("POST", "groups") => groups::handle(self, verb, body).await,
            ("POST", "chats") => chats::handle(self, verb, body).await,
            ("POST", "wirings") => wirings::handle(self, verb, body).await,
            ("POST", "destinations") => destinations::handle(self, verb, body).await,
            ("POST", "users" | "roles" | "members") => {
                people::handle(self, resource, verb, body).await
            }
            ("POST", "sessions") => sessions::handle(self, verb, body).await,
            ("POST", "approvals") => approvals::handle(self, verb, body).await,
            ("POST", "tasks") => tasks::handle(self, verb, body).await,
            ("POST", "dropped") => status::dropped(self, verb, body).await,
            ("POST", "adapters") => adapters::handle(self, verb, body).await,
            _ => Err(no_endpoint(&method, &path)),
        };
        match result {
            Ok(value) => json(StatusCode::OK, &value),
            Err(e) => error(e),
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

fn json(status: StatusCode, value: &impl Serialize) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn error(error: AdminError) -> Response<Full<Bytes>> {
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
