//! The HMAC-SHA256 signatures of webhooks, both ways.
//!
//! Two headers are taken on inbound requests ([`verify`]):
//! - GitHub's `X-Hub-Signature-256: sha256=<hex of HMAC(secret, body)>`. It has no timestamp,
//!   so a replay is caught by the signature itself, which the adapter remembers (GitHub's
//!   `X-GitHub-Delivery` is not signed, so it cannot decide).
//! - crabpot's own `X-Crabpot-Signature: t=<unix seconds>,v1=<hex of HMAC(secret, "<t>.<body>")>`
//!   (Stripe's scheme). A timestamp more than [`MAX_SKEW_SECONDS`] from the host's clock is
//!   refused, and the adapter remembers each signature it took for longer than that window,
//!   so the same request sent again is refused too.
//!
//! Tags are compared in constant time (`ring::hmac::verify`). [`sign`] makes crabpot's header,
//! for what outbound hooks POST and for tests.

/// How far a crabpot signature's timestamp may be from the host's clock, either way.
pub const MAX_SKEW_SECONDS: i64 = 5 * 60;

/// GitHub's header.
pub const GITHUB_HEADER: &str = "x-hub-signature-256";
/// crabpot's header.
pub const CRABPOT_HEADER: &str = "x-crabpot-signature";

/// Why a request's signature was refused; every variant answers 401 and is not retryable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the request is not signed: send X-Crabpot-Signature or X-Hub-Signature-256")]
    Missing,
    #[error("the X-Hub-Signature-256 header is not sha256=<64 hex digits>")]
    BadGithubFormat,
    #[error("the X-Crabpot-Signature header is not t=<unix seconds>,v1=<64 hex digits>")]
    BadCrabpotFormat,
    #[error(
        "the request's timestamp is {0} seconds away from the host's clock (at most 300 allowed)"
    )]
    Stale(i64),
    #[error("the request's signature does not match the webhook's secret")]
    Mismatch,
}

/// Which header a verified request was signed with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signed {
    /// `X-Hub-Signature-256`: no timestamp, and GitHub's delivery id is not signed, so a
    /// replay is caught by `tag` (the hex tag: the same body signs the same) while it is
    /// remembered.
    Github { tag: String },
    /// `X-Crabpot-Signature`: `tag` is the hex tag, remembered against replay for the window.
    Crabpot { timestamp: i64, tag: String },
}

/// The `X-Crabpot-Signature` value for `body` at `timestamp` (unix seconds).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, &crabpot_base(timestamp, body));
    format!("t={timestamp},v1={}", crate::secrets::hex(tag.as_ref()))
}

/// The `X-Hub-Signature-256` value GitHub sends for `body`.
pub fn sign_github(secret: &[u8], body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, body);
    format!("sha256={}", crate::secrets::hex(tag.as_ref()))
}

/// Checks a request's signature headers against `body` at `now` (unix seconds). crabpot's
/// header is preferred when both are present.
pub fn verify(
    secret: &[u8],
    crabpot: Option<&str>,
    github: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<Signed, SignatureError> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    match (crabpot, github) {
        (Some(header), _) => {
            let (timestamp, tag) = parse_crabpot(header)?;
            let bytes = unhex(&tag).ok_or(SignatureError::BadCrabpotFormat)?;
            let skew = now.saturating_sub(timestamp).saturating_abs();
            if skew > MAX_SKEW_SECONDS {
                return Err(SignatureError::Stale(skew));
            }
            ring::hmac::verify(&key, &crabpot_base(timestamp, body), &bytes)
                .map_err(|_| SignatureError::Mismatch)?;
            Ok(Signed::Crabpot {
                timestamp,
                tag: tag.to_ascii_lowercase(),
            })
        }
        (None, Some(header)) => {
            let bytes = header
                .trim()
                .strip_prefix("sha256=")
                .and_then(unhex)
                .ok_or(SignatureError::BadGithubFormat)?;
            ring::hmac::verify(&key, body, &bytes).map_err(|_| SignatureError::Mismatch)?;
            Ok(Signed::Github {
                tag: crate::secrets::hex(&bytes),
            })
        }
        (None, None) => Err(SignatureError::Missing),
    }
}

/// `t=<seconds>,v1=<hex>`, in either order, spaces allowed around the parts.
fn parse_crabpot(header: &str) -> Result<(i64, String), SignatureError> {
    let (mut timestamp, mut tag) = (None, None);
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) if timestamp.is_none() => {
                timestamp = Some(
                    value
                        .trim()
                        .parse::<i64>()
                        .map_err(|_| SignatureError::BadCrabpotFormat)?,
                );
            }
            Some(("v1", value)) if tag.is_none() => tag = Some(value.trim().to_owned()),
            _ => return Err(SignatureError::BadCrabpotFormat),
        }
    }
    match (timestamp, tag) {
        (Some(timestamp), Some(tag)) => Ok((timestamp, tag)),
        _ => Err(SignatureError::BadCrabpotFormat),
    }
}

fn crabpot_base(timestamp: i64, body: &[u8]) -> Vec<u8> {
    let timestamp = timestamp.to_string();
    let mut base = Vec::with_capacity(timestamp.len() + 1 + body.len());
    base.extend_from_slice(timestamp.as_bytes());
    base.push(b'.');
    base.extend_from_slice(body);
    base
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
        .map(|pair| match pair {
            [high, low] => Some((digit(*high)? << 4) | digit(*low)?),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test";
    const NOW: i64 = 1_700_000_000;

    fn check(
        crabpot: Option<&str>,
        github: Option<&str>,
        body: &[u8],
    ) -> Result<Signed, SignatureError> {
        verify(SECRET, crabpot, github, body, NOW)
    }

    #[test]
    fn crabpot_signatures_verify_within_the_window() {
        let body = br#"{"a":1}"#;
        let header = sign(SECRET, NOW, body);
        let Ok(Signed::Crabpot { timestamp, tag }) = check(Some(&header), None, body) else {
            panic!("a fresh signature is taken: {header}");
        };
        assert_eq!(timestamp, NOW);
        assert_eq!(tag.len(), 64);
        // Order and spacing do not matter; upper-case hex is hex.
        let (t, v1) = header.split_once(',').unwrap();
        let swapped = format!("{} , {}", v1.to_uppercase().replace("V1=", "v1="), t);
        assert!(check(Some(&swapped), None, body).is_ok(), "{swapped}");
        // At the edges of the window, in and just out.
        for (at, ok) in [
            (NOW - 300, true),
            (NOW + 300, true),
            (NOW - 301, false),
            (NOW + 301, false),
        ] {
            let header = sign(SECRET, at, body);
            assert_eq!(check(Some(&header), None, body).is_ok(), ok, "t={at}");
        }
        assert_eq!(
            check(Some(&sign(SECRET, NOW - 3600, body)), None, body),
            Err(SignatureError::Stale(3600))
        );
    }

    #[test]
    fn forged_and_malformed_signatures_are_refused() {
        let body = br#"{"a":1}"#;
        let header = sign(SECRET, NOW, body);
        assert_eq!(
            check(Some(&sign(b"other", NOW, body)), None, body),
            Err(SignatureError::Mismatch),
            "a wrong secret"
        );
        assert_eq!(
            check(Some(&header), None, br#"{"a":2}"#),
            Err(SignatureError::Mismatch),
            "another body"
        );
        // The timestamp is signed: changing it breaks the tag.
        let moved = header.replace(&format!("t={NOW}"), &format!("t={}", NOW + 1));
        assert_eq!(
            check(Some(&moved), None, body),
            Err(SignatureError::Mismatch)
        );
        for bad in [
            "",
            "v1=00",
            &format!("t={NOW}"),
            &format!("t=abc,v1={}", "0".repeat(64)),
            &format!("t={NOW},v1={}", "0".repeat(63)),
            &format!("t={NOW},v1={}", "g".repeat(64)),
            &format!("t={NOW},v1={},x=1", "0".repeat(64)),
            &format!("t={NOW},t={NOW},v1={}", "0".repeat(64)),
            "t=1,v1=ä",
        ] {
            assert_eq!(
                check(Some(bad), None, body),
                Err(SignatureError::BadCrabpotFormat),
                "{bad:?}"
            );
        }
        assert_eq!(check(None, None, body), Err(SignatureError::Missing));
    }

    #[test]
    fn github_signatures_verify() {
        let body = br#"{"zen":"hi"}"#;
        let header = sign_github(SECRET, body);
        assert!(header.starts_with("sha256="));
        assert_eq!(
            check(None, Some(&header), body),
            Ok(Signed::Github {
                tag: header["sha256=".len()..].to_owned()
            })
        );
        assert_eq!(
            check(None, Some(&sign_github(b"other", body)), body),
            Err(SignatureError::Mismatch)
        );
        for bad in ["", "sha1=abc", "sha256=zz", &header.replace("sha256=", "")] {
            assert_eq!(
                check(None, Some(bad), body),
                Err(SignatureError::BadGithubFormat),
                "{bad:?}"
            );
        }
        // GitHub's test vector (docs: "Validating webhook deliveries").
        assert_eq!(
            sign_github(b"It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }
}
