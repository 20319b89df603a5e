//! Handling one request from the container: [`handle`] checks the route, reads and rewrites
//! the JSON body, forwards it to the upstream with the host's key, and answers with the
//! upstream's response streamed through a [`MeteredBody`], or with a JSON error.
//!
//! `POST /crabpot/v1/live` is not a model route: it goes to `super::live` before any of this.
//!
//! The order of the checks is what the agent-runner relies on: a refused path is 403 whatever
//! else is wrong; with no model configured every model route is 503 (so the user learns how to
//! configure one); only then is the shape checked against the provider (400) and the body
//! read (413, 400).

use super::Proxy;
use super::SessionLabel;
use super::body::{MeteredBody, ProxyBody, full};
use super::error::ProxyError;
use super::estimate;
use super::route::Route;
use super::upstream::{PreparedUpstream, is_returned};
use super::usage::{UsageMeter, UsageRecord};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::Value;

/// Answers one container request; every failure becomes a JSON error response.
pub(crate) async fn handle(
    proxy: &Proxy,
    session: &SessionLabel,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    if request.method() == http::Method::POST && request.uri().path() == protocol::live::LIVE_PATH {
        return super::live::handle(proxy, session, request).await;
    }
    if request.uri().path().starts_with(protocol::web::WEB_PREFIX) {
        return proxy.web.handle(session, request).await.map(full);
    }
    match forward(proxy, session, request).await {
        Ok(response) => response,
        Err(error) => {
            log_failure(proxy, session, &error);
            error_response(&error)
        }
    }
}

/// Logs a failed or refused request, coalescing repeats of the same kind per session: a
/// container can send thousands of bad requests a second, and the log must not grow with them.
pub(crate) fn log_failure(proxy: &Proxy, session: &SessionLabel, error: &ProxyError) {
    let status = error.status().as_u16();
    let key = format!(
        "proxy.request {} {} {status}",
        session.session_id,
        error.error_type()
    );
    if !proxy.log_gate.should_log(&key) {
        return;
    }
    if error.status().is_server_error() {
        tracing::warn!(status, error = %error.message(), "model request failed");
    } else {
        tracing::info!(status, error = %error.message(), "model request refused");
    }
}

/// The JSON error response for a request-level error.
pub(crate) fn error_response(error: &ProxyError) -> Response<ProxyBody> {
    let mut response = Response::new(full(error.to_json().to_string()));
    *response.status_mut() = error.status();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

async fn forward(
    proxy: &Proxy,
    session: &SessionLabel,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let route = Route::classify(request.method(), request.uri().path()).ok_or_else(|| {
        ProxyError::Forbidden {
            method: request.method().to_string(),
            path: request.uri().path().to_owned(),
        }
    })?;
    let upstream = proxy
        .upstream
        .as_ref()
        .ok_or(ProxyError::NoModelConfigured)?;
    if route.provider() != upstream.config.provider {
        return Err(ProxyError::WrongShape {
            provider: upstream.config.provider,
        });
    }
    let (parts, body) = request.into_parts();
    let body = read_json_object(body, &parts.headers, proxy.max_request_body_bytes).await?;
    send_upstream(proxy, session, upstream, &parts.headers, body).await
}

/// Reads the request body, at most `limit` bytes, as a JSON object.
async fn read_json_object(
    body: Incoming,
    headers: &http::HeaderMap,
    limit: usize,
) -> Result<serde_json::Map<String, Value>, ProxyError> {
    let declared_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > limit as u64) {
        return Err(ProxyError::BodyTooLarge { limit });
    }
    let bytes: Bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            return Err(ProxyError::BodyTooLarge { limit });
        }
        Err(error) => return Err(ProxyError::ReadBody(error)),
    };
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(ProxyError::InvalidBody {
            reason: "the body must be a JSON object".to_owned(),
        }),
        Err(error) => Err(ProxyError::InvalidBody {
            reason: format!("the body is not JSON ({error})"),
        }),
    }
}

async fn send_upstream(
    proxy: &Proxy,
    session: &SessionLabel,
    upstream: &PreparedUpstream,
    incoming_headers: &http::HeaderMap,
    mut body: serde_json::Map<String, Value>,
) -> Result<Response<ProxyBody>, ProxyError> {
    upstream.rewrite_body(&mut body);
    let prompt_chars = estimate::request_chars(&body);
    let body = Value::Object(body).to_string();
    // Created before sending, so a request is recorded even if the container hangs up
    // before the upstream answers (dropping the meter sends the record).
    let mut meter = UsageMeter::new(
        UsageRecord {
            session_id: session.session_id.clone(),
            agent_group_id: session.agent_group_id.clone(),
            provider: upstream.config.provider,
            model: upstream.config.model.clone(),
            status: 0,
            input_tokens: 0,
            output_tokens: 0,
            estimated: false,
            completed: false,
            at_ms: 0,
        },
        proxy.usage.clone(),
    );
    meter.estimate_prompt_from(prompt_chars);
    tracing::debug!(endpoint = %upstream.endpoint, body_bytes = body.len(), "forwarding model request");
    let sent = proxy
        .client
        .post(upstream.endpoint.clone())
        .headers(upstream.request_headers(incoming_headers))
        .body(body)
        .send()
        .await;
    let upstream_response = match sent {
        Ok(response) => response,
        Err(error) => {
            let error = ProxyError::from_upstream(upstream.origin.clone(), error);
            meter.fail(error.status().as_u16());
            return Err(error);
        }
    };

    let status = upstream_response.status();
    let mut headers = http::HeaderMap::new();
    for (name, value) in upstream_response.headers() {
        if is_returned(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    let event_stream = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        });
    meter.start_response(status.as_u16(), event_stream);
    let mut response = Response::new(MeteredBody::new(upstream_response, meter).boxed_unsync());
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}
