//! The webhook (`mode = webhook`): Telegram posts each [`Update`] to `POST /hooks/telegram`
//! with the `secret_token` registered by `setWebhook` in `X-Telegram-Bot-Api-Secret-Token`,
//! checked in constant time ([`secret_matches`]).
//!
//! An update is answered 200 once it is durable (or deliberately dropped); 500 makes
//! Telegram post it again, and an update id already taken is answered 200 without taking
//! it twice (`channel_seen_events`).

use super::inbound::Inbound;
use super::mapping::CHANNEL_TYPE;
use super::wire::Update;
use crate::config::ApiKey;
use crate::db::DbThread;
use crate::db::central::channel_state;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use bytes::Bytes;
use rusqlite::Connection;
use std::sync::{Arc, OnceLock};

/// The header Telegram puts the secret token in.
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// The path of the webhook on the web server.
pub const PATH: &str = "/hooks/telegram";

/// The largest update body taken.
const MAX_UPDATE_BYTES: usize = 1024 * 1024;

/// What the webhook route holds.
#[derive(Clone)]
pub struct WebhookState {
    pub secret: Option<ApiKey>,
    /// Set when the adapter has started (updates before that are answered 503).
    pub inbound: Arc<OnceLock<Arc<Inbound>>>,
    pub central: Arc<DbThread<Connection>>,
}

/// Whether `given` is `expected`, comparing every byte whatever differs first.
pub fn secret_matches(expected: &[u8], given: &[u8]) -> bool {
    if expected.len() != given.len() {
        return false;
    }
    expected
        .iter()
        .zip(given)
        .fold(0u8, |differ, (a, b)| differ | (a ^ b))
        == 0
}

/// The webhook's route, with its state.
pub fn routes(state: WebhookState) -> axum::Router {
    axum::Router::new()
        .route(PATH, post(receive))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_UPDATE_BYTES))
        .with_state(state)
}

async fn receive(State(state): State<WebhookState>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let Some(secret) = &state.secret else {
        return StatusCode::NOT_FOUND;
    };
    let given = headers
        .get(SECRET_HEADER)
        .map(|value| value.as_bytes())
        .unwrap_or_default();
    if !secret_matches(secret.expose_secret().as_bytes(), given) {
        return StatusCode::UNAUTHORIZED;
    }
    let Some(inbound) = state.inbound.get().cloned() else {
        return StatusCode::SERVICE_UNAVAILABLE;
    };
    let update: Update = match serde_json::from_slice(&body) {
        Ok(update) => update,
        Err(e) => {
            tracing::warn!(error = %e, "an unreadable telegram webhook update was refused");
            return StatusCode::BAD_REQUEST;
        }
    };
    let event_id = update.update_id.to_string();
    let seen_id = event_id.clone();
    let first = state
        .central
        .call(move |conn| channel_state::first_event(conn, CHANNEL_TYPE, &seen_id))
        .await;
    match first {
        Ok(true) => {}
        Ok(false) => return StatusCode::OK,
        Err(e) => {
            tracing::warn!(error = %e, "telegram webhook: the seen updates cannot be read");
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
    }
    match inbound.take(update).await {
        Ok(()) => StatusCode::OK,
        Err(again) => {
            tracing::warn!(%again, "telegram webhook update not taken; Telegram will post it again");
            let forgotten = state
                .central
                .call(move |conn| channel_state::forget_event(conn, CHANNEL_TYPE, &event_id))
                .await;
            if let Err(e) = forgotten {
                tracing::warn!(error = %e, "telegram webhook: a failed update stays marked seen");
            }
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}
