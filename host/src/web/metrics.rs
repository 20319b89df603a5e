//! `GET /metrics`: the Prometheus text format of [`crate::metrics`], with the supervisor's
//! container counts and every adapter's health read at the moment of the scrape.
//!
//! Who may scrape: a peer on loopback without credentials (a Prometheus on the same
//! machine), anyone else only as an owner or global admin ([`super::auth::Caller::require_admin`], an
//! `admin` API token as `Authorization: Bearer`). Behind a reverse proxy every peer is the
//! proxy, so on loopback; with `web_behind_https` set the loopback exemption is off and every
//! scrape needs an admin token.

use super::WebState;
use super::auth::Rejection;
use crate::metrics::{self, ContainerCounts, Snapshot};
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{StatusCode, header};
use std::net::SocketAddr;

pub fn routes() -> axum::Router<WebState> {
    axum::Router::new().route("/metrics", axum::routing::get(scrape))
}

/// Whether a scrape from `peer` is let in without credentials.
fn trusted_peer(peer: Option<SocketAddr>, behind_https: bool) -> bool {
    !behind_https && peer.is_some_and(|peer| peer.ip().to_canonical().is_loopback())
}

async fn scrape(State(state): State<WebState>, request: Parts) -> Response {
    if let Err(rejection) = admit(&state, &request).await {
        return rejection.into_response();
    }
    let snapshot = Snapshot {
        containers: Some(ContainerCounts::of(&state.admin.supervisor.status())),
        adapters: state.admin.channels.status(),
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, metrics::CONTENT_TYPE),
            (header::CACHE_CONTROL, "no-store"),
        ],
        metrics::render(&snapshot),
    )
        .into_response()
}

/// Lets a trusted peer in, and anyone else with an admin's credentials.
async fn admit(state: &WebState, request: &Parts) -> Result<(), Rejection> {
    let peer = request
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| *peer);
    if trusted_peer(peer, state.config.behind_https) {
        return Ok(());
    }
    let caller =
        super::auth::caller::authenticate(state, &request.method, &request.headers).await?;
    caller.require_admin(state).await
}

#[cfg(test)]
mod tests {
    use super::trusted_peer;

    #[test]
    fn only_loopback_is_trusted_and_not_behind_https() {
        let check = |peer: Option<&str>, behind_https: bool, trusted: bool| {
            let parsed = peer.map(|p| p.parse().unwrap_or_else(|e| panic!("{p}: {e}")));
            assert_eq!(
                trusted_peer(parsed, behind_https),
                trusted,
                "{peer:?} behind_https={behind_https}"
            );
        };
        check(Some("127.0.0.1:5000"), false, true);
        check(Some("127.8.9.10:5000"), false, true);
        check(Some("[::1]:5000"), false, true);
        check(Some("[::ffff:127.0.0.1]:5000"), false, true);
        check(Some("192.168.1.20:5000"), false, false);
        check(Some("[::ffff:10.0.0.1]:5000"), false, false);
        check(Some("[2001:db8::1]:5000"), false, false);
        check(None, false, false);
        check(Some("127.0.0.1:5000"), true, false);
        check(Some("[::1]:5000"), true, false);
    }
}
