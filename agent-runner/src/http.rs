//! A minimal HTTP/1.1 client for the host's per-session proxy at `in/proxy.sock`:
//! [`ProxyClient`] opens a new unix-socket connection per request (hyper 1, no pooling, no
//! TLS, no DNS) and hands back the streaming response.
//!
//! It never adds credentials: the host proxy injects the API key on its side of the socket.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::path::PathBuf;
use std::time::Duration;
use tokio::net::UnixStream;

/// Errors talking to the proxy. All but [`HttpError::TooLarge`] are retryable: the proxy may
/// be restarting with the host.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("could not connect to the model proxy at {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("HTTP error talking to the model proxy: {0}")]
    Protocol(#[from] hyper::Error),
    #[error("could not build the request: {0}")]
    Request(#[from] http::Error),
    #[error("the model proxy sent nothing for {0:?}")]
    Timeout(Duration),
    #[error("the response body is larger than {0} bytes")]
    TooLarge(usize),
}

impl HttpError {
    pub fn is_retryable(&self) -> bool {
        match self {
            HttpError::Connect { .. } | HttpError::Protocol(_) | HttpError::Timeout(_) => true,
            HttpError::Request(_) | HttpError::TooLarge(_) => false,
        }
    }
}

/// Talks HTTP to the proxy socket.
#[derive(Clone, Debug)]
pub struct ProxyClient {
    socket: PathBuf,
    /// Longest wait to connect, and for the response head.
    pub connect_timeout: Duration,
    /// Longest wait for the response head and then between two body chunks. Models can
    /// think for a while before the first token, so this is generous.
    pub idle_timeout: Duration,
}

impl ProxyClient {
    pub fn new(socket: PathBuf) -> Self {
        Self {
            socket,
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
        }
    }

    /// Sends `POST path` with a JSON body and returns the response with its body unread.
    pub async fn post_json(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<http::Response<Incoming>, HttpError> {
        let connect = UnixStream::connect(&self.socket);
        let stream = tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| HttpError::Timeout(self.connect_timeout))?
            .map_err(|source| HttpError::Connect {
                path: self.socket.clone(),
                source,
            })?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "model proxy connection ended with an error");
            }
        });
        let mut request = http::Request::post(path)
            .header(http::header::HOST, "proxy")
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "text/event-stream, application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(Bytes::from(body)))?;
        let response = tokio::time::timeout(self.idle_timeout, sender.send_request(request))
            .await
            .map_err(|_| HttpError::Timeout(self.idle_timeout))??;
        Ok(response)
    }

    /// The next chunk of body data, or `None` at its end.
    pub async fn next_chunk(&self, body: &mut Incoming) -> Result<Option<Bytes>, HttpError> {
        loop {
            let frame = tokio::time::timeout(self.idle_timeout, body.frame())
                .await
                .map_err(|_| HttpError::Timeout(self.idle_timeout))?;
            match frame {
                None => return Ok(None),
                Some(frame) => {
                    // Trailers carry nothing we need; keep reading data frames.
                    if let Ok(data) = frame?.into_data() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }

    /// The whole body, refusing more than `cap` bytes.
    pub async fn read_body(&self, body: &mut Incoming, cap: usize) -> Result<Vec<u8>, HttpError> {
        let mut out = Vec::new();
        while let Some(chunk) = self.next_chunk(body).await? {
            if out.len() + chunk.len() > cap {
                return Err(HttpError::TooLarge(cap));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
}
