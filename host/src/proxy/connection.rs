//! One container connection to the proxy, served with its time limits: [`serve_connection`].
//!
//! Three clocks bound what a connection may hold ([`super::ProxyLimits`]):
//! - the header timeout is hyper's `header_read_timeout`: a request head must arrive whole
//!   within it, counted from when hyper starts waiting for it (so it also bounds the wait for
//!   the next request on a kept-alive connection);
//! - the idle timeout closes a kept-alive connection that has had no request in flight for
//!   that long ([`InFlight`] counts requests from the service call until hyper drops the
//!   response body);
//! - the request timeout bounds one request end to end: the handler's answer and then the
//!   whole response body ([`DeadlineBody`]), so a stream that never ends is cut.
//!
//! Egress requests (`CONNECT`, absolute-form URIs) go to `super::egress` instead of
//! `request::handle`. The connection is served with upgrades, and it ends only once every
//! `CONNECT` tunnel on it has ended (`Tunnels::finish`): a tunnel keeps its connection's slot
//! and descriptor permit for its whole life, and has its own bounds instead of the three
//! clocks above.

use super::body::ProxyBody;
use super::egress::{self, Tunnels};
use super::error::ProxyError;
use super::request;
use super::{Proxy, SessionLabel};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

/// Serves one connection from the container until it closes, goes idle for too long, or
/// `shutdown` asks it to finish; on shutdown the response in flight may finish unless
/// `force_close` comes first.
pub(crate) async fn serve_connection<IO>(
    proxy: Arc<Proxy>,
    session: Arc<SessionLabel>,
    io: IO,
    shutdown: CancellationToken,
    force_close: CancellationToken,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = proxy.limits.clone();
    let (in_flight, mut in_flight_changes) = watch::channel(0_usize);
    let in_flight = Arc::new(in_flight);
    let tunnels = Tunnels::new(force_close.clone());
    let service = {
        let proxy = Arc::clone(&proxy);
        let tunnels = Arc::clone(&tunnels);
        service_fn(move |request| {
            let proxy = Arc::clone(&proxy);
            let session = Arc::clone(&session);
            let tunnels = Arc::clone(&tunnels);
            let guard = InFlight::start(Arc::clone(&in_flight));
            async move {
                let deadline = Instant::now() + proxy.limits.request_timeout;
                let handled = async {
                    if egress::is_egress(&request) {
                        egress::handle(&proxy, &session, &tunnels, request).await
                    } else {
                        request::handle(&proxy, &session, request).await
                    }
                };
                let response = match tokio::time::timeout_at(deadline, handled).await {
                    Ok(response) => response,
                    Err(_elapsed) => {
                        let error = ProxyError::RequestTimeout {
                            limit: proxy.limits.request_timeout,
                        };
                        request::log_failure(&proxy, &session, &error);
                        request::error_response(&error)
                    }
                };
                let limit = proxy.limits.request_timeout;
                let response =
                    response.map(|body| DeadlineBody::wrap(body, deadline, limit, guard));
                Ok::<_, Infallible>(response)
            }
        })
    };
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = idle(&mut in_flight_changes, limits.idle_timeout) => {
            tracing::debug!("closing an idle proxy connection");
            connection.as_mut().graceful_shutdown();
            finish(connection.as_mut(), &force_close).await
        }
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            finish(connection.as_mut(), &force_close).await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "proxy connection ended with an error");
    }
    // Tunnels end by themselves, at their bounds, or when `force_close` is cancelled.
    tunnels.finish().await;
}

/// Lets a connection that was asked to shut down finish, unless `force_close` comes first.
async fn finish<F>(connection: Pin<&mut F>, force_close: &CancellationToken) -> hyper::Result<()>
where
    F: Future<Output = hyper::Result<()>>,
{
    tokio::select! {
        result = connection => result,
        // Dropping the connection drops its response body, which reports its usage.
        () = force_close.cancelled() => Ok(()),
    }
}

/// Returns once no request has been in flight for `idle_timeout`.
async fn idle(in_flight: &mut watch::Receiver<usize>, idle_timeout: Duration) {
    loop {
        if *in_flight.borrow_and_update() == 0 {
            tokio::select! {
                () = tokio::time::sleep(idle_timeout) => return,
                changed = in_flight.changed() => if changed.is_err() { return },
            }
        } else if in_flight.changed().await.is_err() {
            // The service is gone, so the connection is ending anyway.
            return;
        }
    }
}

/// Counts one request as in flight from the service call until its response body is
/// dropped (hyper drops it once it is fully written, or when the connection breaks).
struct InFlight {
    count: Arc<watch::Sender<usize>>,
}

impl InFlight {
    fn start(count: Arc<watch::Sender<usize>>) -> Self {
        count.send_modify(|n| *n += 1);
        Self { count }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.count.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// A response body cut off at the request's deadline, holding the request's [`InFlight`].
struct DeadlineBody {
    inner: ProxyBody,
    deadline: Pin<Box<Sleep>>,
    /// The configured limit, for the error.
    timeout: Duration,
    expired: bool,
    _in_flight: InFlight,
}

impl DeadlineBody {
    fn wrap(
        inner: ProxyBody,
        deadline: Instant,
        timeout: Duration,
        in_flight: InFlight,
    ) -> ProxyBody {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            timeout,
            expired: false,
            _in_flight: in_flight,
        }
        .boxed_unsync()
    }
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = ProxyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ProxyError>>> {
        // Every field is Unpin (the sleep is boxed), so the body can be used unpinned.
        let this = self.get_mut();
        if this.expired {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(context) {
            return Poll::Ready(frame);
        }
        if this.deadline.as_mut().poll(context).is_ready() {
            this.expired = true;
            tracing::warn!(
                limit_s = this.timeout.as_secs(),
                "model response cut off at the request time limit"
            );
            // An error makes hyper abort the connection: the container sees a truncated
            // response, and dropping the inner body reports its usage as incomplete.
            return Poll::Ready(Some(Err(ProxyError::RequestTimeout {
                limit: this.timeout,
            })));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.expired || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
