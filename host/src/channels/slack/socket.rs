//! Socket Mode: with an app token (`xapp-…`), `apps.connections.open` names a `wss://` URL
//! and Slack sends its envelopes `{envelope_id, type, payload}` over that WebSocket instead
//! of posting to the host. An `events_api` envelope carries an `event_callback`, an
//! `interactive` one a `block_actions` payload; each is acked with `{"envelope_id": …}`
//! only once taken (see [`super::intake`]), so an unacked one comes again. A `disconnect`
//! (Slack refreshes connections every few hours) or a dropped socket reconnects, waiting
//! longer after each failure.

use super::SlackChannel;
use super::api::{ApiError, Args, SlackApi, str_field};
use super::events::{Envelope, envelope};
use crate::edge::{ChannelError, Health, HealthState};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// The longest wait between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The largest frame taken from Slack.
const MAX_FRAME_BYTES: usize = 1024 * 1024;

/// How one connection ended.
enum Ended {
    /// Slack asked to reconnect, or the socket closed: connect again at once.
    Reconnect,
    /// The host is shutting down.
    Shutdown,
}

impl SlackChannel {
    /// Runs Socket Mode with `app_api` (the API with the app token) until `shutdown`.
    pub(super) async fn run_socket(
        self: &Arc<Self>,
        app_api: SlackApi,
        shutdown: CancellationToken,
    ) -> Result<(), ChannelError> {
        let mut backoff = Duration::from_millis(500);
        loop {
            let outcome = tokio::select! {
                outcome = self.connect_once(&app_api, &shutdown) => outcome,
                () = shutdown.cancelled() => return Ok(()),
            };
            match outcome {
                Ok(Ended::Shutdown) => return Ok(()),
                Ok(Ended::Reconnect) => {
                    backoff = Duration::from_millis(500);
                    continue;
                }
                Err(e) if e.is_auth() => {
                    let message = format!(
                        "slack: the app token was refused ({}); check CRABPOT_SLACK_APP_TOKEN",
                        e.code().unwrap_or_default()
                    );
                    self.set_health(Health::failing(message.clone()));
                    return Err(ChannelError::Rejected(message));
                }
                Err(e) => {
                    self.set_health(Health {
                        state: HealthState::Degraded,
                        last_error: Some(format!("slack socket mode: {e}")),
                    });
                    tracing::warn!(error = %e, "slack socket mode connection failed; retrying");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = shutdown.cancelled() => return Ok(()),
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn connect_once(
        self: &Arc<Self>,
        app_api: &SlackApi,
        shutdown: &CancellationToken,
    ) -> Result<Ended, ApiError> {
        let opened = app_api
            .call("apps.connections.open", Args::Form(&[]))
            .await?;
        let unavailable = |reason: String| ApiError::Unavailable {
            method: "apps.connections.open".into(),
            reason,
        };
        let url =
            str_field(&opened, "url").ok_or_else(|| unavailable("the answer has no url".into()))?;
        let mut config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
        config.max_message_size = Some(MAX_FRAME_BYTES);
        config.max_frame_size = Some(MAX_FRAME_BYTES);
        let (mut socket, _) =
            tokio_tungstenite::connect_async_with_config(url, Some(config), false)
                .await
                .map_err(|e| unavailable(format!("connecting the socket: {e}")))?;
        loop {
            let frame = tokio::select! {
                frame = socket.next() => frame,
                () = shutdown.cancelled() => {
                    let _ = socket.close(None).await;
                    return Ok(Ended::Shutdown);
                }
            };
            let text = match frame {
                None => return Ok(Ended::Reconnect),
                Some(Err(e)) => return Err(unavailable(format!("reading the socket: {e}"))),
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(_))) => return Ok(Ended::Reconnect),
                Some(Ok(
                    Message::Ping(_) | Message::Pong(_) | Message::Binary(_) | Message::Frame(_),
                )) => {
                    continue;
                }
            };
            let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
                tracing::debug!("a slack socket frame that is not JSON; ignored");
                continue;
            };
            match str_field(&frame, "type").unwrap_or_default() {
                "hello" => self.set_health(Health::connected()),
                "disconnect" => {
                    tracing::debug!(reason = ?str_field(&frame, "reason"), "slack asked to reconnect");
                    let _ = socket.close(None).await;
                    return Ok(Ended::Reconnect);
                }
                kind => {
                    if let Some(envelope_id) = str_field(&frame, "envelope_id")
                        && self.take_envelope(kind, &frame).await
                    {
                        let ack = json!({ "envelope_id": envelope_id }).to_string();
                        socket
                            .send(Message::Text(ack.into()))
                            .await
                            .map_err(|e| unavailable(format!("acking an envelope: {e}")))?;
                    }
                }
            }
        }
    }

    /// Takes one envelope; true when it may be acked.
    async fn take_envelope(self: &Arc<Self>, kind: &str, frame: &Value) -> bool {
        let payload = frame.get("payload").unwrap_or(&Value::Null);
        let taken = match kind {
            "events_api" => match envelope(payload) {
                Envelope::Callback { event_id, event } => self.take_event(&event_id, &event).await,
                Envelope::UrlVerification { .. } | Envelope::Other => Ok(()),
            },
            "interactive" => self.take_press(payload).await,
            _ => Ok(()),
        };
        match taken {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "a slack envelope was not taken; Slack will send it again");
                false
            }
        }
    }
}
