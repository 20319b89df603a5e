//! The live endpoint of the session socket: `POST /crabpot/v1/live` (`protocol::live`), where
//! the runner posts drafts of the reply it is writing. Each body is read under
//! `MAX_LIVE_BODY_BYTES`, parsed with `protocol::live::parse` (the one parser of this hostile
//! input) and handed to the [`LiveSink`] set on the proxy ([`super::Proxy::set_live_sink`]);
//! without a sink, events are answered `204` and dropped.
//!
//! Answers: `204` taken (or ignored: [`LiveRefusal::NotStreaming`]); `409 {"have": n}` when
//! the sink holds another length of the draft ([`LiveRefusal::OffsetMismatch`]), so the
//! runner resends from `n`; `429` past [`MAX_LIVE_EVENTS_PER_SECOND`] of one session (the
//! event is dropped); `413`/`400` for a body that is too large or not a live event, with the
//! reason named. Live events are not model usage and never go upstream.
//!
//! Key types: [`LiveSink`], [`LiveRefusal`], and [`LiveEndpoint`] (the sink slot and the
//! per-session rate buckets, owned by the proxy).

use super::body::{ProxyBody, full};
use super::error::ProxyError;
use super::request::{error_response, log_failure};
use super::{Proxy, SessionLabel};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use protocol::SessionId;
use protocol::live::{LiveEvent, MAX_LIVE_BODY_BYTES};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// Most live events one session may post per second (a burst of this many is allowed);
/// past it, events are answered `429` and dropped.
pub const MAX_LIVE_EVENTS_PER_SECOND: u32 = 100;

/// Rate buckets kept before idle ones are forgotten.
const MAX_TRACKED_SESSIONS: usize = 1024;
/// A bucket untouched for this long is full again, so it can be forgotten.
const IDLE_BUCKET: Duration = Duration::from_secs(10);

/// Where live events go: the host's bridge, which shows drafts in the chat.
pub trait LiveSink: Send + Sync {
    /// Takes one checked event from `session`'s container. Called on the proxy's task, so
    /// it must not block: queue the event and return.
    fn live(&self, session: &SessionLabel, event: LiveEvent) -> Result<(), LiveRefusal>;
}

/// Why a sink did not take an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LiveRefusal {
    /// The sink holds `have` characters of this draft, not the event's offset: the runner
    /// resends from `have` (answered `409 {"have": n}`).
    #[error("the host holds {have} characters of this draft")]
    OffsetMismatch { have: u32 },
    /// Nothing is being shown for this reply (its final row came, or the platform cannot
    /// edit): the event is dropped quietly (answered `204`).
    #[error("the host is not showing a draft of this reply")]
    NotStreaming,
}

/// The live endpoint's state in one proxy: the sink, and a token bucket per session.
pub(crate) struct LiveEndpoint {
    sink: RwLock<Option<Arc<dyn LiveSink>>>,
    buckets: Mutex<HashMap<SessionId, Bucket>>,
    pub(crate) events_per_second: u32,
}

impl std::fmt::Debug for LiveEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveEndpoint")
            .field("has_sink", &self.sink().is_some())
            .field("events_per_second", &self.events_per_second)
            .finish_non_exhaustive()
    }
}

impl Default for LiveEndpoint {
    fn default() -> Self {
        Self {
            sink: RwLock::new(None),
            buckets: Mutex::new(HashMap::new()),
            events_per_second: MAX_LIVE_EVENTS_PER_SECOND,
        }
    }
}

impl LiveEndpoint {
    pub(crate) fn set_sink(&self, sink: Arc<dyn LiveSink>) {
        *self.sink.write().unwrap_or_else(PoisonError::into_inner) = Some(sink);
    }

    fn sink(&self) -> Option<Arc<dyn LiveSink>> {
        self.sink
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Takes one event's worth from `session`'s bucket; false when it is empty.
    fn admit(&self, session: &SessionId, now: Instant) -> bool {
        let rate = f64::from(self.events_per_second.max(1));
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= MAX_TRACKED_SESSIONS && !buckets.contains_key(session) {
            buckets.retain(|_, bucket| now.duration_since(bucket.updated) < IDLE_BUCKET);
        }
        let bucket = buckets.entry(session.clone()).or_insert(Bucket {
            tokens: rate,
            updated: now,
        });
        let refill = now.duration_since(bucket.updated).as_secs_f64() * rate;
        bucket.tokens = (bucket.tokens + refill).min(rate);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Answers one `POST /crabpot/v1/live`.
pub(crate) async fn handle(
    proxy: &Proxy,
    session: &SessionLabel,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    match take(proxy, session, request).await {
        Ok(response) => response,
        Err(error) => {
            log_failure(proxy, session, &error);
            error_response(&error)
        }
    }
}

async fn take(
    proxy: &Proxy,
    session: &SessionLabel,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, ProxyError> {
    // Counted before the body is read, so a flood costs the host no parsing.
    if !proxy.live.admit(&session.session_id, Instant::now()) {
        return Err(ProxyError::LiveRateLimited {
            per_second: proxy.live.events_per_second,
        });
    }
    let body = read_body(request).await?;
    let event = protocol::live::parse(&body).map_err(ProxyError::LiveRefused)?;
    let Some(sink) = proxy.live.sink() else {
        return Ok(no_content());
    };
    match sink.live(session, event) {
        Ok(()) | Err(LiveRefusal::NotStreaming) => Ok(no_content()),
        Err(LiveRefusal::OffsetMismatch { have }) => Ok(have_response(have)),
    }
}

async fn read_body(request: Request<Incoming>) -> Result<Bytes, ProxyError> {
    let limit = MAX_LIVE_BODY_BYTES;
    let declared_length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > limit as u64) {
        return Err(ProxyError::BodyTooLarge { limit });
    }
    match Limited::new(request.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            Err(ProxyError::BodyTooLarge { limit })
        }
        Err(error) => Err(ProxyError::ReadBody(error)),
    }
}

fn no_content() -> Response<ProxyBody> {
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

/// `409 {"have": n}`.
fn have_response(have: u32) -> Response<ProxyBody> {
    let mut response = Response::new(full(serde_json::json!({ "have": have }).to_string()));
    *response.status_mut() = StatusCode::CONFLICT;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refill_at_the_rate_and_are_per_session() {
        let endpoint = LiveEndpoint {
            events_per_second: 10,
            ..LiveEndpoint::default()
        };
        let (a, b) = (SessionId::new("s-a"), SessionId::new("s-b"));
        let start = Instant::now();
        let admitted = (0..15).filter(|_| endpoint.admit(&a, start)).count();
        assert_eq!(admitted, 10, "a burst of the rate, then nothing");
        assert!(
            endpoint.admit(&b, start),
            "another session has its own bucket"
        );
        let later = start + Duration::from_millis(250);
        let admitted = (0..5).filter(|_| endpoint.admit(&a, later)).count();
        assert_eq!(
            admitted, 2,
            "a quarter second refills a quarter of the rate"
        );
    }

    #[test]
    fn idle_buckets_are_forgotten_past_the_cap() {
        let endpoint = LiveEndpoint::default();
        let start = Instant::now();
        for n in 0..MAX_TRACKED_SESSIONS {
            endpoint.admit(&SessionId::new(format!("s-{n}")), start);
        }
        endpoint.admit(&SessionId::new("s-new"), start + IDLE_BUCKET);
        let buckets = endpoint.buckets.lock().unwrap();
        assert_eq!(buckets.len(), 1);
    }
}
