//! Discord's rate limits as its REST answers describe them ([`RateLimits`]): each route maps
//! to a bucket (`X-RateLimit-Bucket`), a bucket has calls left (`X-RateLimit-Remaining`)
//! until it resets (`X-RateLimit-Reset-After`, seconds), and a 429 names the wait
//! (`retry_after`, seconds as a float, in the JSON body; `global: true` or
//! `X-RateLimit-Global` when the whole bot must wait). Before a call the REST client asks
//! [`RateLimits::wait_before`] how long to hold it; after, it reports what the headers said.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What one answer's headers say about its bucket.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BucketHeaders {
    pub bucket: Option<String>,
    pub limit: Option<u32>,
    pub remaining: Option<u32>,
    pub reset_after: Option<Duration>,
    pub global: bool,
}

/// Reads Discord's `X-RateLimit-*` headers; absent or unreadable ones are `None`.
pub fn parse_headers(headers: &http::HeaderMap) -> BucketHeaders {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
    };
    BucketHeaders {
        bucket: text("x-ratelimit-bucket")
            .filter(|bucket| !bucket.is_empty() && bucket.len() <= 200)
            .map(str::to_owned),
        limit: text("x-ratelimit-limit").and_then(|v| v.parse().ok()),
        remaining: text("x-ratelimit-remaining").and_then(|v| v.parse().ok()),
        reset_after: text("x-ratelimit-reset-after")
            .and_then(|v| v.parse::<f64>().ok())
            .and_then(crate::channels::http::seconds),
        global: text("x-ratelimit-global").is_some_and(|v| v.eq_ignore_ascii_case("true")),
    }
}

/// The body of a 429.
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
pub struct TooManyRequests {
    #[serde(default)]
    pub retry_after: f64,
    #[serde(default)]
    pub global: bool,
}

/// The route a request counts against: the method and path with the ids that do not pick
/// a bucket (message ids, emoji, interaction tokens) replaced, and the top-level one kept
/// (Discord's "major parameter": the channel, guild or webhook).
pub fn route_key(method: &http::Method, path: &str) -> String {
    let mut key = format!("{method} ");
    let mut previous = "";
    let path = path.trim_start_matches('/');
    let interaction = path.starts_with("interactions/");
    for (index, segment) in path.split('/').enumerate() {
        if index > 0 {
            key.push('/');
        }
        let major = matches!(previous, "channels" | "guilds" | "webhooks") && index == 1;
        let is_id = segment.chars().all(|c| c.is_ascii_digit()) && !segment.is_empty();
        if previous == "reactions" {
            key.push_str(":emoji");
        } else if (interaction && (index == 1 || index == 2)) || (is_id && !major) {
            key.push_str(":id");
        } else {
            key.push_str(segment);
        }
        previous = segment;
    }
    key
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    remaining: u32,
    reset_at: Instant,
}

#[derive(Default)]
struct State {
    /// Route key to the bucket Discord named for it.
    routes: HashMap<String, String>,
    buckets: HashMap<String, Bucket>,
    global_until: Option<Instant>,
}

/// The buckets seen so far, shared by every call of one adapter.
#[derive(Default)]
pub struct RateLimits {
    state: Mutex<State>,
}

/// At most this many buckets are remembered (Discord has a few per channel).
const MAX_BUCKETS: usize = 10_000;

impl RateLimits {
    /// How long a call on `route` must wait now (zero when it may go).
    pub fn wait_before(&self, route: &str, now: Instant) -> Duration {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let global = state
            .global_until
            .map_or(Duration::ZERO, |until| until.saturating_duration_since(now));
        let bucket_name = state.routes.get(route).map_or(route, String::as_str);
        let bucket = state
            .buckets
            .get(bucket_name)
            .filter(|bucket| bucket.remaining == 0)
            .map_or(Duration::ZERO, |bucket| {
                bucket.reset_at.saturating_duration_since(now)
            });
        global.max(bucket)
    }

    /// Takes one call from `route`'s bucket before it is sent, so concurrent calls do not
    /// all see the last one left.
    pub fn take(&self, route: &str) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket_name = state
            .routes
            .get(route)
            .cloned()
            .unwrap_or_else(|| route.to_owned());
        if let Some(bucket) = state.buckets.get_mut(&bucket_name) {
            bucket.remaining = bucket.remaining.saturating_sub(1);
        }
    }

    /// Records what an answer on `route` said about its bucket.
    pub fn update(&self, route: &str, headers: &BucketHeaders, now: Instant) {
        let (Some(remaining), Some(reset_after)) = (headers.remaining, headers.reset_after) else {
            return;
        };
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.buckets.len() >= MAX_BUCKETS {
            state.buckets.retain(|_, bucket| bucket.reset_at > now);
            state.routes.clear();
        }
        let bucket_name = headers.bucket.clone().unwrap_or_else(|| route.to_owned());
        let major = route
            .split('/')
            .nth(1)
            .filter(|segment| segment.chars().all(|c| c.is_ascii_digit()))
            .unwrap_or("");
        // A bucket is shared by routes, but counted per major parameter.
        let bucket_name = format!("{bucket_name}:{major}");
        state.routes.insert(route.to_owned(), bucket_name.clone());
        state.buckets.insert(
            bucket_name,
            Bucket {
                remaining,
                reset_at: now + reset_after,
            },
        );
    }

    /// A 429 on `route`: nothing more goes on it (or anywhere, when `global`) for `wait`.
    pub fn limited(&self, route: &str, wait: Duration, global: bool, now: Instant) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if global {
            state.global_until = Some(now + wait);
            return;
        }
        let bucket_name = state
            .routes
            .get(route)
            .cloned()
            .unwrap_or_else(|| route.to_owned());
        state.buckets.insert(
            bucket_name,
            Bucket {
                remaining: 0,
                reset_at: now + wait,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, http::HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn headers_are_read() {
        let parsed = parse_headers(&headers(&[
            ("x-ratelimit-bucket", "abcd1234"),
            ("x-ratelimit-limit", "5"),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset-after", "1.250"),
            ("x-ratelimit-global", "true"),
        ]));
        assert_eq!(
            parsed,
            BucketHeaders {
                bucket: Some("abcd1234".into()),
                limit: Some(5),
                remaining: Some(0),
                reset_after: Some(Duration::from_millis(1250)),
                global: true,
            }
        );
        let junk = parse_headers(&headers(&[
            ("x-ratelimit-remaining", "-3"),
            ("x-ratelimit-reset-after", "soon"),
        ]));
        assert_eq!(junk, BucketHeaders::default());
    }

    #[test]
    fn routes_keep_the_major_parameter_only() {
        for (method, path, key) in [
            (
                http::Method::POST,
                "/channels/111/messages",
                "POST channels/111/messages",
            ),
            (
                http::Method::PATCH,
                "/channels/111/messages/222",
                "PATCH channels/111/messages/:id",
            ),
            (
                http::Method::PUT,
                "/channels/111/messages/222/reactions/%F0%9F%91%8D/@me",
                "PUT channels/111/messages/:id/reactions/:emoji/@me",
            ),
            (
                http::Method::POST,
                "/interactions/333/tok-en/callback",
                "POST interactions/:id/:id/callback",
            ),
            (http::Method::GET, "/users/@me", "GET users/@me"),
        ] {
            assert_eq!(route_key(&method, path), key, "{path}");
        }
    }

    #[test]
    fn an_empty_bucket_holds_calls_until_it_resets() {
        let limits = RateLimits::default();
        let now = Instant::now();
        let route = "POST channels/1/messages";
        assert_eq!(limits.wait_before(route, now), Duration::ZERO);
        let mut seen = parse_headers(&headers(&[
            ("x-ratelimit-bucket", "b1"),
            ("x-ratelimit-remaining", "1"),
            ("x-ratelimit-reset-after", "2"),
        ]));
        limits.update(route, &seen, now);
        assert_eq!(limits.wait_before(route, now), Duration::ZERO);
        limits.take(route);
        assert_eq!(limits.wait_before(route, now), Duration::from_secs(2));
        seen.remaining = Some(0);
        limits.update(route, &seen, now);
        assert_eq!(
            limits.wait_before(route, now + Duration::from_millis(500)),
            Duration::from_millis(1500)
        );
        assert_eq!(
            limits.wait_before(route, now + Duration::from_secs(3)),
            Duration::ZERO
        );
        // Another channel's bucket of the same name is counted on its own.
        assert_eq!(
            limits.wait_before("POST channels/2/messages", now),
            Duration::ZERO
        );
    }

    #[test]
    fn a_429_holds_its_route_or_everything() {
        let limits = RateLimits::default();
        let now = Instant::now();
        limits.limited(
            "POST channels/1/messages",
            Duration::from_secs(1),
            false,
            now,
        );
        assert_eq!(
            limits.wait_before("POST channels/1/messages", now),
            Duration::from_secs(1)
        );
        assert_eq!(limits.wait_before("GET users/@me", now), Duration::ZERO);
        limits.limited("GET users/@me", Duration::from_secs(3), true, now);
        assert_eq!(
            limits.wait_before("POST channels/9/messages", now),
            Duration::from_secs(3)
        );
        let body: TooManyRequests = serde_json::from_str(
            r#"{"message":"You are being rate limited.","retry_after":1.5,"global":false}"#,
        )
        .unwrap_or_default();
        assert_eq!(body.retry_after, 1.5);
    }
}
