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
//!
//! A session cannot take more than its share of the host ([`ProxyLimits`]): at most
//! `max_connections_per_session` connections are open per socket, and every connection holds a
//! permit of the host's [`FdBudget`]; when either runs out the socket simply stops accepting
//! (the kernel backlog holds the rest at no cost to the host). Request heads, idle kept-alive
//! connections and whole requests are bounded in time (`connection`). Accept errors back off
//! exponentially and their warnings are coalesced through a [`LogGate`].
//!
//! The same socket takes the runner's live drafts of a reply, `POST /crabpot/v1/live`
//! (`live`): checked with `protocol::live::parse`, capped per session in rate, handed to the
//! [`LiveSink`] set with [`Proxy::set_live_sink`] (dropped without one), never forwarded and
//! never counted as usage.
//!
//! The same socket takes egress (`egress`): `CONNECT host:port` and plain HTTP requests in
//! absolute form, checked by the [`crate::egress::EgressGate`] set with [`Proxy::set_egress`]
//! against the session's agent group rules, and recorded; without a gate they are refused.
//!
//! Files: `socket` (binding), `egress` (CONNECT tunnels and forwarded plain HTTP), `connection` (one connection and its clocks), `route` (the two
//! endpoints), `upstream` (URL, headers, body rewrite), `request` (one request end to end),
//! `body` (streaming response bodies), `usage` (token counting), `live` (drafts), `error`.

mod body;
mod connection;
mod egress;
mod error;
mod estimate;
mod live;
mod request;
mod route;
mod socket;
mod upstream;
mod usage;

#[cfg(test)]
mod tests;

pub use crate::config::{ApiKey, ModelUpstream};
pub use error::ProxyError;
pub use live::{LiveRefusal, LiveSink, MAX_LIVE_EVENTS_PER_SECOND};
pub use socket::bind_session_socket;
pub use upstream::DEFAULT_ANTHROPIC_VERSION;
pub use usage::UsageRecord;

use crate::fd_budget::{AcceptBackoff, BudgetedListener, FdBudget};
use crate::log_gate::LogGate;
use protocol::{AgentGroupId, SessionId};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UnixListener;
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

/// How long repeated identical proxy warnings (per session and kind) are coalesced.
const LOG_WINDOW: Duration = Duration::from_secs(30);

/// What one session may hold open on its proxy socket, and for how long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyLimits {
    /// Connections open at once on one session's socket; past it the socket stops accepting
    /// until one closes.
    pub max_connections_per_session: usize,
    /// How long a request head may take to arrive whole. hyper counts it from when it starts
    /// waiting for a head, so it also bounds the wait for the next request on a kept-alive
    /// connection.
    pub header_timeout: Duration,
    /// How long a kept-alive connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// One request end to end, its whole response body included: generous, so a long model
    /// stream fits, yet finite, so a response that never ends is cut.
    pub request_timeout: Duration,
}

impl Default for ProxyLimits {
    fn default() -> Self {
        Self {
            max_connections_per_session: 16,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(15 * 60),
        }
    }
}

impl ProxyLimits {
    /// Checks that every limit lets something through; the error names the field.
    pub fn validate(&self) -> Result<(), ProxyError> {
        let invalid = |field: &'static str| {
            Err(ProxyError::InvalidLimit {
                field,
                reason: "must be greater than zero",
            })
        };
        if self.max_connections_per_session == 0 {
            return invalid("max_connections_per_session");
        }
        for (field, value) in [
            ("header_timeout", self.header_timeout),
            ("idle_timeout", self.idle_timeout),
            ("request_timeout", self.request_timeout),
        ] {
            if value.is_zero() {
                return invalid(field);
            }
        }
        Ok(())
    }
}

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
    limits: ProxyLimits,
    fd_budget: Arc<FdBudget>,
    /// Coalesces the warnings of every session this proxy serves (keys name the session).
    log_gate: Arc<LogGate>,
    /// Where live drafts go, and their per-session rate caps.
    live: live::LiveEndpoint,
    /// Egress decisions and their log; until set, egress requests are refused.
    egress: std::sync::OnceLock<Arc<crate::egress::EgressGate>>,
    /// The host's web tools (`POST /crabpot/v1/web/...`); until set, those paths answer 503.
    web: crate::egress::web::WebSlot,
}

impl Proxy {
    /// The gate its repeated warnings go through (`serve` runs its flusher, so the count of
    /// a warning that stopped repeating is logged too).
    pub fn log_gate(&self) -> Arc<crate::log_gate::LogGate> {
        Arc::clone(&self.log_gate)
    }

    /// A proxy forwarding to `upstream` (or answering 503 when it is `None`) and sending one
    /// [`UsageRecord`] per forwarded request on `usage`, with the default [`ProxyLimits`] and
    /// no descriptor budget ([`FdBudget::unlimited`]).
    ///
    /// Fails when the upstream's base URL or API key is unusable
    /// ([`ProxyError::InvalidUpstream`]) or the HTTP client cannot be built.
    pub fn new(
        upstream: Option<ModelUpstream>,
        usage: UnboundedSender<UsageRecord>,
    ) -> Result<Arc<Self>, ProxyError> {
        Self::new_with(
            upstream,
            usage,
            ProxyLimits::default(),
            FdBudget::unlimited(),
        )
    }

    /// [`Proxy::new`] with these limits, taking connection permits from `fd_budget` (share
    /// one budget between every proxy and the cli channel). Also fails when a limit is zero
    /// ([`ProxyError::InvalidLimit`]).
    pub fn new_with(
        upstream: Option<ModelUpstream>,
        usage: UnboundedSender<UsageRecord>,
        limits: ProxyLimits,
        fd_budget: Arc<FdBudget>,
    ) -> Result<Arc<Self>, ProxyError> {
        limits.validate()?;
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
            limits,
            fd_budget,
            log_gate: Arc::new(LogGate::new(LOG_WINDOW)),
            live: live::LiveEndpoint::default(),
            egress: std::sync::OnceLock::new(),
            web: crate::egress::web::WebSlot::default(),
        }))
    }

    /// Sends the live drafts of every session this proxy serves to `sink` (replacing an
    /// earlier one). Until a sink is set, live events are answered `204` and dropped.
    pub fn set_live_sink(&self, sink: Arc<dyn LiveSink>) {
        self.live.set_sink(sink);
    }

    /// Serves egress on every session socket of this proxy through `gate` (set once; a
    /// second gate is ignored with a warning). Until then egress requests are refused.
    pub fn set_egress(&self, gate: Arc<crate::egress::EgressGate>) {
        if self.egress.set(gate).is_err() {
            tracing::warn!("the proxy's egress gate was already set; keeping the first");
        }
    }

    /// Serves `web_fetch` and `web_search` (`POST /crabpot/v1/web/...`) with `tools`.
    pub fn set_web_tools(&self, tools: Arc<crate::egress::web::WebTools>) {
        self.web.set(tools);
    }

    /// Where egress attempts are recorded, once egress is set (for the host's web tools).
    pub fn egress_recorder(&self) -> Option<crate::egress::EgressRecorder> {
        self.egress.get().map(|gate| gate.recorder().clone())
    }

    /// [`Proxy::set_live_sink`], for chaining after [`Proxy::new_with`].
    pub fn with_live_sink(self: Arc<Self>, sink: Arc<dyn LiveSink>) -> Arc<Self> {
        self.set_live_sink(sink);
        self
    }

    /// The limits every session socket is served with.
    pub fn limits(&self) -> &ProxyLimits {
        &self.limits
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
    ///
    /// At most `max_connections_per_session` connections are open at once, each with a permit
    /// of the proxy's [`FdBudget`]; while either is used up, the socket is not accepted from.
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

    /// Serves one connection over any byte stream, as if it had been accepted on `session`'s
    /// socket, with the same limits (except the per-session count and the budget, which
    /// belong to a listener). For fuzzing and tests: no socket file is needed. Ends when the
    /// connection does.
    pub async fn serve_io<IO>(self: Arc<Self>, io: IO, session: SessionLabel)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let never = CancellationToken::new();
        connection::serve_connection(self, Arc::new(session), io, never.clone(), never).await;
    }

    async fn accept_connections(
        self: Arc<Self>,
        listener: UnixListener,
        session: Arc<SessionLabel>,
        shutdown: CancellationToken,
    ) {
        let listener = BudgetedListener::new(
            listener,
            Arc::clone(&self.fd_budget),
            self.limits.max_connections_per_session,
        );
        let connections = TaskTracker::new();
        let force_close = CancellationToken::new();
        let mut backoff = AcceptBackoff::new();
        let gate_key = format!("proxy.accept {}", session.session_id);
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, permit)) => {
                    backoff.succeeded();
                    let connection = connection::serve_connection(
                        Arc::clone(&self),
                        Arc::clone(&session),
                        stream,
                        shutdown.clone(),
                        force_close.clone(),
                    );
                    connections.spawn(
                        async move {
                            connection.await;
                            // Freed only once the connection (and so its descriptor) is gone.
                            drop(permit);
                        }
                        .in_current_span(),
                    );
                }
                Err(error) => {
                    let pause = backoff.failed();
                    if self.log_gate.should_log(&gate_key) {
                        tracing::warn!(%error, pause_ms = pause.as_millis(), "cannot accept a proxy connection");
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(pause) => {}
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
