//! The admin API on `data/crabpot.sock` (HTTP over a unix socket, mode 0600) and its client.
//! Today it answers `GET /v1/status`; the resource verbs of the admin CLI build on it.

use crate::runtime::ContainerRuntime;
use crate::supervisor::{Supervisor, SupervisorStatus};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What `crabpot status` shows.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    pub install_id: String,
    pub docker: String,
    pub model: String,
    pub running: Vec<String>,
    pub starting: usize,
    pub queued: Vec<String>,
    pub max_containers: usize,
}

pub struct Admin {
    pub install_id: String,
    pub model: String,
    pub runtime: Arc<dyn ContainerRuntime>,
    pub supervisor: Arc<Supervisor>,
}

/// Binds `data/crabpot.sock` with mode 0600, replacing a stale socket file.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if path.exists() {
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
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
        match (request.method().as_str(), request.uri().path()) {
            ("GET", "/v1/status") => {
                let docker = match self.runtime.version().await {
                    Ok(v) => format!("{} (API {})", v.engine_version, v.negotiated_api_version),
                    Err(e) => format!("unreachable: {e}"),
                };
                let SupervisorStatus {
                    running,
                    starting,
                    queued,
                    max_containers,
                } = self.supervisor.status();
                let status = Status {
                    install_id: self.install_id.clone(),
                    docker,
                    model: self.model.clone(),
                    running,
                    starting,
                    queued,
                    max_containers,
                };
                json(StatusCode::OK, &status)
            }
            _ => json(
                StatusCode::NOT_FOUND,
                &serde_json::json!({"error": "no such admin endpoint"}),
            ),
        }
    }
}

fn json(status: StatusCode, value: &impl Serialize) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

/// Client: `GET path` on the admin socket, parsed as `T`.
pub async fn get<T: for<'de> Deserialize<'de>>(
    socket: &Path,
    path: &str,
) -> Result<T, crate::chat::ChatError> {
    use crate::chat::ChatError;
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|source| ChatError::NotRunning {
            path: socket.display().to_string(),
            source,
        })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ChatError::Io(std::io::Error::other(e)))?;
    tokio::spawn(connection);
    let request = Request::get(path)
        .header("host", "crabpot")
        .body(Full::new(Bytes::new()))
        .map_err(|e| ChatError::Refused(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| ChatError::Io(std::io::Error::other(e)))?;
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| ChatError::Io(std::io::Error::other(e)))?;
    serde_json::from_slice(&body.to_bytes()).map_err(|e| ChatError::Refused(e.to_string()))
}
