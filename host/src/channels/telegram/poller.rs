//! [`Poller`]: `getUpdates` long polling, and the update offset kept across restarts.
//!
//! Each update is taken in ([`Inbound::take`]) in order; only once that returned `Ok` is
//! the offset moved past it and stored (`channel_state` key `offset`). Telegram drops the
//! updates before the offset a later `getUpdates` names, so an update is confirmed only
//! after it is durable: a restart neither loses one nor takes one twice. An update that
//! must be taken again stops the batch; the next poll asks from it, after a back-off.

use super::api::{Api, ApiError};
use super::inbound::Inbound;
use super::mapping::CHANNEL_TYPE;
use super::wire::Update;
use crate::db::DbThread;
use crate::db::central::channel_state;
use crate::edge::{ChannelError, Health, HealthState};
use rusqlite::Connection;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long one `getUpdates` waits for an update, in seconds.
pub const POLL_SECONDS: u64 = 25;

/// The `channel_state` key of the next update id to ask for.
pub const OFFSET_KEY: &str = "offset";

/// The update kinds asked for.
pub const ALLOWED_UPDATES: [&str; 2] = ["message", "callback_query"];

/// The longest back-off between failed polls.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The long poll of one bot.
pub struct Poller {
    pub api: Arc<Api>,
    pub inbound: Arc<Inbound>,
    pub central: Arc<DbThread<Connection>>,
    pub health: Arc<Mutex<Health>>,
}

impl Poller {
    fn set_health(&self, health: Health) {
        *self.health.lock().unwrap_or_else(PoisonError::into_inner) = health;
    }

    /// The stored offset; `None` when none was stored (or it cannot be read, which is logged:
    /// then Telegram's own confirmation state decides).
    pub async fn stored_offset(&self) -> Option<i64> {
        let read = self
            .central
            .call(|conn| channel_state::get(conn, CHANNEL_TYPE, OFFSET_KEY))
            .await;
        match read {
            Ok(value) => value.and_then(|text| text.parse::<i64>().ok()),
            Err(e) => {
                tracing::warn!(error = %e, "the telegram offset cannot be read");
                None
            }
        }
    }

    async fn store_offset(&self, offset: i64) {
        let stored = self
            .central
            .call(move |conn| {
                channel_state::put(conn, CHANNEL_TYPE, OFFSET_KEY, &offset.to_string())
            })
            .await;
        if let Err(e) = stored {
            // The router stores a platform message once, so an update taken again after a
            // restart is harmless; say so rather than stop.
            tracing::warn!(error = %e, offset, "the telegram offset was not stored");
        }
    }

    /// Polls until `shutdown`; an `Err` is a token refused while polling.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), ChannelError> {
        let mut offset = self.stored_offset().await;
        let mut backoff = Duration::ZERO;
        loop {
            if !backoff.is_zero() {
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(backoff) => {}
                }
            }
            let mut body = serde_json::json!({
                "timeout": POLL_SECONDS,
                "allowed_updates": ALLOWED_UPDATES,
            });
            if let Some(offset) = offset {
                body["offset"] = serde_json::json!(offset);
            }
            let polled: Result<Vec<serde_json::Value>, ApiError> = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                polled = self.api.call(
                    "getUpdates",
                    &body,
                    Duration::from_secs(POLL_SECONDS + 15),
                ) => polled,
            };
            let updates = match polled {
                Ok(updates) => updates,
                Err(ApiError::Unauthorized(description)) => {
                    let error = ChannelError::from(ApiError::Unauthorized(description));
                    self.set_health(Health::failing(error.to_string()));
                    return Err(error);
                }
                Err(ApiError::Channel(error)) => {
                    backoff = match error {
                        ChannelError::RateLimited { retry_after } => retry_after,
                        _ => (backoff * 2).clamp(Duration::from_secs(1), MAX_BACKOFF),
                    };
                    tracing::warn!(%error, ?backoff, "telegram getUpdates failed");
                    self.set_health(Health {
                        state: HealthState::Degraded,
                        last_error: Some(format!("telegram getUpdates failed: {error}")),
                    });
                    continue;
                }
            };
            backoff = Duration::ZERO;
            self.set_health(Health::connected());
            for value in updates {
                let Some(update_id) = value.get("update_id").and_then(serde_json::Value::as_i64)
                else {
                    tracing::warn!("a telegram update without update_id was skipped");
                    continue;
                };
                if offset.is_some_and(|offset| update_id < offset) {
                    continue;
                }
                match serde_json::from_value::<Update>(value) {
                    Ok(update) => {
                        if let Err(again) = self.inbound.take(update).await {
                            tracing::warn!(%again, "telegram update not taken yet");
                            backoff = Duration::from_secs(1);
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(update_id, error = %e, "an unreadable telegram update was skipped");
                    }
                }
                offset = Some(update_id.saturating_add(1));
                self.store_offset(update_id.saturating_add(1)).await;
            }
        }
    }
}
