//! Response bodies the proxy sends to the container: [`ProxyBody`], either a small body built
//! here (errors) or a [`MeteredBody`] that streams the upstream's body through unchanged,
//! chunk by chunk as it arrives, while a [`UsageMeter`] reads the token counts off it.
//!
//! Nothing is buffered on the way: each chunk reqwest yields becomes one HTTP frame for the
//! container straight away, which is what lets server-sent events pass through live.

use super::error::ProxyError;
use super::usage::UsageMeter;
use bytes::Bytes;
use futures_util::Stream;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::{Body, Frame};
use std::pin::Pin;
use std::task::{Context, Poll};

/// The body type of every response the proxy serves.
pub type ProxyBody = UnsyncBoxBody<Bytes, ProxyError>;

/// A complete, in-memory body (error responses).
pub(crate) fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send>>;

/// The upstream's response body, passed through as it arrives and metered on the way.
pub(crate) struct MeteredBody {
    chunks: ChunkStream,
    meter: UsageMeter,
}

impl MeteredBody {
    pub(crate) fn new(response: reqwest::Response, meter: UsageMeter) -> Self {
        Self {
            chunks: Box::pin(response.bytes_stream()),
            meter,
        }
    }
}

impl Body for MeteredBody {
    type Data = Bytes;
    type Error = ProxyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ProxyError>>> {
        // Every field is Unpin (the stream is boxed), so the body can be used unpinned.
        let this = self.get_mut();
        loop {
            return match this.chunks.as_mut().poll_next(context) {
                Poll::Pending => Poll::Pending,
                // An empty chunk carries nothing; skip it rather than send an empty frame.
                Poll::Ready(Some(Ok(chunk))) if chunk.is_empty() => continue,
                Poll::Ready(Some(Ok(chunk))) => {
                    this.meter.observe(&chunk);
                    Poll::Ready(Some(Ok(Frame::data(chunk))))
                }
                Poll::Ready(Some(Err(error))) => {
                    let error = ProxyError::UpstreamBody(error.without_url());
                    tracing::warn!(error = %error.message(), "model response broke off");
                    this.meter.finish(false);
                    Poll::Ready(Some(Err(error)))
                }
                Poll::Ready(None) => {
                    this.meter.finish(true);
                    Poll::Ready(None)
                }
            };
        }
    }
}
