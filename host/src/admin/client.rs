//! The admin API's client, used by the CLI: [`call`] sends `POST /v1/<resource>/<verb>` with
//! a JSON body over `data/crabpot.sock` and returns the JSON answer, or a [`ClientError`]
//! whose [`ClientError::exit_code`] is the CLI's documented exit code.

use super::api::{ApiError, ErrorKind};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use std::path::Path;
use tokio::net::UnixStream;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the socket. Retryable once the host runs.
    #[error("cannot reach the crabpot host at {path}: {source} (is `crabpot serve` running?)")]
    NotRunning {
        path: String,
        source: std::io::Error,
    },
    /// The host answered with an error. Not retryable as is.
    #[error("{}", .0.error)]
    Api(ApiError),
    /// The connection broke or the answer was not what the API sends. Retryable.
    #[error("talking to the host failed: {0}")]
    Transport(String),
}

impl ClientError {
    /// See `crabpot --help`: 3 host not running, 5 not found, 6 invalid input, 7 conflict,
    /// 8 refused, 1 anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::NotRunning { .. } => 3,
            ClientError::Api(error) => error.kind.exit_code(),
            ClientError::Transport(_) => 1,
        }
    }
}

/// `POST /v1/<resource>/<verb>` with `body`; the answer parsed as `T`.
pub async fn call<T: DeserializeOwned>(
    socket: &Path,
    resource: &str,
    verb: &str,
    body: &serde_json::Value,
) -> Result<T, ClientError> {
    let value = request(socket, &format!("/v1/{resource}/{verb}"), body).await?;
    serde_json::from_value(value).map_err(|e| ClientError::Transport(e.to_string()))
}

/// One request; the JSON answer or the API's error.
pub async fn request(
    socket: &Path,
    path: &str,
    body: &serde_json::Value,
) -> Result<serde_json::Value, ClientError> {
    let transport = |e: &dyn std::fmt::Display| ClientError::Transport(e.to_string());
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|source| ClientError::NotRunning {
            path: socket.display().to_string(),
            source,
        })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| transport(&e))?;
    tokio::spawn(connection);
    let body = serde_json::to_vec(body).map_err(|e| transport(&e))?;
    let request = Request::post(path)
        .header("host", "crabpot")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| transport(&e))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| transport(&e))?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| transport(&e))?
        .to_bytes();
    if status.is_success() {
        return serde_json::from_slice(&bytes).map_err(|e| transport(&e));
    }
    match serde_json::from_slice::<ApiError>(&bytes) {
        Ok(error) => Err(ClientError::Api(error)),
        Err(_) => Err(ClientError::Api(ApiError {
            kind: ErrorKind::Internal,
            error: format!("the host answered {status}"),
        })),
    }
}
