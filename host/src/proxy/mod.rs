//! The per-session model proxy (DESIGN §6): API keys never enter a container.
//!
//! The host binds one unix socket per session at `<session>/in/proxy.sock`
//! ([`bind_session_socket`]) and serves it with [`Proxy::serve`]; the socket itself says which
//! session is calling. Two routes exist, `POST /v1/chat/completions` (OpenAI shape) and
//! `POST /v1/messages` (Anthropic shape); each is forwarded to the configured
//! [`ModelUpstream`] with the host's [`ApiKey`] added, the model forced to the configured one
//! and the container's own credentials stripped. Responses, server-sent event streams
//! included, pass through as they arrive. Every forwarded request yields one [`UsageRecord`]
//! on the channel given to [`Proxy::new`]. Anything else gets a JSON error ([`ProxyError`]).
//!
//! Files: `socket` (binding), `route` (the two endpoints), `upstream` (URL, headers, body
//! rewrite), `request` (one request end to end), `body` (streaming response bodies), `usage`
//! (token counting), `error`.

mod body;
mod error;
mod request;
mod route;
mod socket;
mod upstream;
mod usage;

#[cfg(test)]
mod tests;

pub use error::ProxyError;
pub use socket::bind_session_socket;
pub use upstream::{ApiKey, DEFAULT_ANTHROPIC_VERSION, ModelUpstream};
pub use usage::UsageRecord;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use protocol::{AgentGroupId, SessionId};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use upstream::PreparedUpstream;

/// The largest request body the container may send (a long transcript with images fits).
pub const MAX_REQUEST_BODY_BYTES: usize = 16 * 1024 * 1024;

/// How long to wait for the upstream to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the upstream may stay silent, before its response head or between two chunks of
/// the body. Generous because a non-streaming answer arrives only once it is fully generated;
/// there is no total timeout, so a long stream that keeps flowing is never cut.
const IDLE_READ_TIMEOUT: Duration = Duration::from_secs(600);

/// After shutdown, how long open connections may take to finish their current response
/// before they are closed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long to pause after a failed `accept` (out of file descriptors) before trying again.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Who is calling: the session a socket belongs to. Used for usage records and the tracing
/// span `session{session_id, group}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionLabel {
    pub session_id: SessionId,
    pub agent_group_id: AgentGroupId,
}

/// The model proxy for sessions that share one upstream (one agent group, or the whole host).
/// Cheap to share: serve any number of session sockets from one `Arc<Proxy>`.
#[derive(Debug)]
pub struct Proxy {
    /// `None`: no model configured; every model request is answered 503.
    upstream: Option<PreparedUpstream>,
    client: reqwest::Client,
    usage: UnboundedSender<UsageRecord>,
    max_request_body_bytes: usize,
}

impl Proxy {
    /// A proxy forwarding to `upstream` (or answering 503 when it is `None`) and sending one
    /// [`UsageRecord`] per forwarded request on `usage`.
    ///
    /// Fails when the upstream's base URL or API key is unusable
    /// ([`ProxyError::InvalidUpstream`]) or the HTTP client cannot be built.
    pub fn new(
        upstream: Option<ModelUpstream>,
        usage: UnboundedSender<UsageRecord>,
    ) -> Result<Arc<Self>, ProxyError> {
        let upstream = upstream.map(PreparedUpstream::new).transpose()?;
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(IDLE_READ_TIMEOUT)
            // A redirect would be followed with the key; the container sees the 3xx instead.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(ProxyError::HttpClient)?;
        Ok(Arc::new(Self {
            upstream,
            client,
            usage,
            max_request_body_bytes: MAX_REQUEST_BODY_BYTES,
        }))
    }

    /// The configured upstream, if any.
    pub fn upstream(&self) -> Option<&ModelUpstream> {
        self.upstream.as_ref().map(|prepared| &prepared.config)
    }

    /// Serves one session's socket (HTTP/1.1) until `shutdown` is cancelled.
    ///
    /// On shutdown it stops accepting, lets each open connection finish the response in
    /// flight (streams included) for up to 10 s, then closes what is left; the future ends
    /// once every connection task has ended. A broken-off response still yields its usage
    /// record. The socket file is left in place; [`bind_session_socket`] replaces it.
    pub async fn serve(
        self: Arc<Self>,
        listener: UnixListener,
        session: SessionLabel,
        shutdown: CancellationToken,
    ) {
        let span = tracing::info_span!(
            "session",
            session_id = %session.session_id,
            group = %session.agent_group_id,
        );
        self.accept_connections(listener, Arc::new(session), shutdown)
            .instrument(span)
            .await;
    }

    async fn accept_connections(
        self: Arc<Self>,
        listener: UnixListener,
        session: Arc<SessionLabel>,
        shutdown: CancellationToken,
    ) {
        let connections = TaskTracker::new();
        let force_close = CancellationToken::new();
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, _address)) => {
                    let connection = serve_connection(
                        Arc::clone(&self),
                        Arc::clone(&session),
                        stream,
                        shutdown.clone(),
                        force_close.clone(),
                    );
                    connections.spawn(connection.in_current_span());
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot accept a proxy connection");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(ACCEPT_RETRY_DELAY) => {}
                    }
                }
            }
        }
        drop(listener);
        connections.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, connections.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                n_open = connections.len(),
                "proxy connections still open after the grace period; closing them"
            );
            force_close.cancel();
            connections.wait().await;
        }
        tracing::debug!("proxy stopped");
    }
}

/// Serves one connection from the container; on shutdown, finishes the response in flight
/// unless `force_close` comes first.
async fn serve_connection(
    proxy: Arc<Proxy>,
    session: Arc<SessionLabel>,
    stream: UnixStream,
    shutdown: CancellationToken,
    force_close: CancellationToken,
) {
    let service = service_fn(move |request| {
        let proxy = Arc::clone(&proxy);
        let session = Arc::clone(&session);
        async move { Ok::<_, Infallible>(request::handle(&proxy, &session, request).await) }
    });
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                result = connection.as_mut() => result,
                // Dropping the connection drops its response body, which reports its usage.
                () = force_close.cancelled() => return,
            }
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "proxy connection ended with an error");
    }
}
