//! A receiver of crabpot's outbound webhooks for the end-to-end suite: a loopback HTTP server
//! ([`WebhookReceiver`], on [`FakeServer`]) that records every POST to `/hook` and answers
//! each with the next status of its script (200 once the script is used up), so a test can
//! make the first attempt fail and watch delivery retry.
//!
//! [`signature_is_valid`] checks a recorded request's `X-Crabpot-Signature` the way a
//! receiver would, with `ring` directly rather than the host's code, so the suite checks the
//! documented scheme (`t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`), not
//! the host against itself.

use crate::fake_platform::{Call, FakeServer, Recorder};
use axum::extract::State;
use axum::http::StatusCode;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

/// The path the receiver takes POSTs on.
pub const PATH: &str = "/hook";

/// A recording, scripted receiver (see the module docs).
pub struct WebhookReceiver {
    server: FakeServer,
    script: Arc<Mutex<VecDeque<u16>>>,
}

impl WebhookReceiver {
    /// Starts a receiver that answers its first requests with `statuses`, then 200.
    pub fn start(statuses: &[u16]) -> anyhow::Result<WebhookReceiver> {
        let script = Arc::new(Mutex::new(
            statuses.iter().copied().collect::<VecDeque<_>>(),
        ));
        let routes = axum::Router::new()
            .route(PATH, axum::routing::post(answer))
            .with_state(Arc::clone(&script));
        Ok(WebhookReceiver {
            server: FakeServer::start(routes)?,
            script,
        })
    }

    /// The URL to give `crabpot webhooks create NAME --url`.
    pub fn url(&self) -> String {
        format!("{}{PATH}", self.server.url())
    }

    /// Every request received, in order.
    pub fn recorder(&self) -> &Recorder {
        &self.server.recorder
    }

    /// How many scripted answers are left.
    pub fn script_left(&self) -> usize {
        self.script
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

async fn answer(State(script): State<Arc<Mutex<VecDeque<u16>>>>) -> (StatusCode, &'static str) {
    let status = script
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .pop_front()
        .unwrap_or(200);
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        "recorded",
    )
}

/// Whether `call` carries a valid `X-Crabpot-Signature` under `secret`, with a timestamp
/// within five minutes of now.
pub fn signature_is_valid(call: &Call, secret: &str) -> bool {
    let Some(header) = call.header("x-crabpot-signature") else {
        return false;
    };
    let mut timestamp = None;
    let mut tag = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => tag = Some(value.to_owned()),
            _ => return false,
        }
    }
    let (Some(timestamp), Some(tag)) = (timestamp, tag) else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64);
    if (now - timestamp).abs() > 300 {
        return false;
    }
    let Some(tag) = unhex(&tag) else {
        return false;
    };
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(&call.body);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    ring::hmac::verify(&key, &signed, &tag).is_ok()
}

/// The `X-Crabpot-Signature` a sender puts on `body` at `timestamp`, for tests that post to
/// an inbound hook.
pub fn crabpot_signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    format!(
        "t={timestamp},v1={}",
        hex(ring::hmac::sign(&key, &signed).as_ref())
    )
}

/// GitHub's `X-Hub-Signature-256` for `body`.
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    format!("sha256={}", hex(ring::hmac::sign(&key, body).as_ref()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).ok())
        .collect()
}
