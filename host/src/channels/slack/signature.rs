//! Slack's request signatures: every Events API and interactivity request carries
//! `X-Slack-Signature: v0=<hex>`, the HMAC-SHA256 under the app's signing secret of
//! `v0:<X-Slack-Request-Timestamp>:<raw body>`. [`verify`] checks it in constant time
//! (`ring::hmac::verify`) and refuses timestamps more than [`MAX_SKEW_SECONDS`] from now, so
//! a captured request cannot be replayed later. [`sign`] is the other half, for tests and
//! the fake Slack.

/// How far a request's timestamp may be from the host's clock.
pub const MAX_SKEW_SECONDS: i64 = 5 * 60;

/// Why a request was refused; every variant answers 401 and is not retryable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the request has no X-Slack-Request-Timestamp or X-Slack-Signature header")]
    Missing,
    #[error("the X-Slack-Request-Timestamp header is not a number of seconds")]
    BadTimestamp,
    #[error("the request's timestamp is {0} seconds away from now (at most 300 allowed)")]
    Stale(i64),
    #[error("the X-Slack-Signature header is not v0=<hex>")]
    BadFormat,
    #[error("the request's signature does not match the signing secret")]
    Mismatch,
}

/// The `X-Slack-Signature` value Slack sends for `body` at `timestamp` (seconds).
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, &base_string(timestamp, body));
    format!("v0={}", hex(tag.as_ref()))
}

/// Checks a request's `timestamp` and `signature` headers against `body`, at `now`
/// (Unix seconds).
pub fn verify(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(SignatureError::Missing);
    };
    let seconds: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    let skew = now.saturating_sub(seconds).saturating_abs();
    if skew > MAX_SKEW_SECONDS {
        return Err(SignatureError::Stale(skew));
    }
    let tag = signature
        .trim()
        .strip_prefix("v0=")
        .and_then(unhex)
        .ok_or(SignatureError::BadFormat)?;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    ring::hmac::verify(&key, &base_string(timestamp, body), &tag)
        .map_err(|_| SignatureError::Mismatch)
}

fn base_string(timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut base = Vec::with_capacity(body.len() + timestamp.len() + 4);
    base.extend_from_slice(b"v0:");
    base.extend_from_slice(timestamp.as_bytes());
    base.push(b':');
    base.extend_from_slice(body);
    base
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

/// Hex of exactly 32 bytes (an HMAC-SHA256 tag); `None` for anything else.
fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}
