//! Outbound hooks: [`WebhookChannel::post`] POSTs one message to the hook's URL.
//!
//! The body is JSON, `{hook, id, piece, text, files, resend}`, signed with the hook's secret
//! in `X-Crabpot-Signature` (the scheme inbound hooks verify, [`super::signature`]).
//! `X-Crabpot-Delivery` is the idempotency key: the outbound row's id (with `-<piece>` for the
//! later pieces of a long one), the same on every retry and on the resend after a host crash,
//! so a receiver can take each message once.
//!
//! The answer decides what delivery does: 2xx delivered; 429 waits for `Retry-After`; 5xx
//! and network failures are retried with back-off; any other status is a refusal for good.
//! Errors never carry the URL (it may hold a token of the receiver's).

use super::WebhookChannel;
use crate::channels::http;
use crate::db::central::webhooks::{self, Direction};
use crate::edge::{ChannelError, ChatAddress, Health, HealthState, OutgoingMessage};
use serde_json::json;
use std::time::Duration;

/// The idempotency key header.
pub const DELIVERY_HEADER: &str = "x-crabpot-delivery";
/// How long a 429 without `Retry-After` waits.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// How much of an error answer is read (for the log line's reason).
const MAX_ERROR_BYTES: usize = 4 * 1024;

impl WebhookChannel {
    /// POSTs `message` to the outbound hook named by `to`; the idempotency key is the
    /// platform message id.
    pub(super) async fn post(
        &self,
        to: &ChatAddress,
        message: &OutgoingMessage,
    ) -> Result<String, ChannelError> {
        let client = self.client.as_ref().map_err(Clone::clone)?;
        let name = to.platform_id.clone();
        let lookup = name.clone();
        let found = self
            .parts
            .central
            .call(move |conn| webhooks::find(conn, &lookup))
            .await
            .map_err(|e| ChannelError::Unavailable(format!("looking up webhook {name}: {e}")))?;
        let hook = match found {
            Some(found) => found,
            None => {
                return Err(ChannelError::Rejected(format!(
                    "there is no webhook named {name:?} (removed?)"
                )));
            }
        };
        let url = match (&hook.hook.direction, &hook.hook.url) {
            (Direction::Outbound, Some(url)) => url.clone(),
            (Direction::Inbound, _) | (Direction::Outbound, None) => {
                return Err(ChannelError::Rejected(format!(
                    "webhook {name:?} is an inbound hook: it takes no messages"
                )));
            }
        };
        let delivery = match message.piece {
            0 => message.id.to_string(),
            piece => format!("{}-{piece}", message.id),
        };
        let files: Vec<String> = message
            .files
            .iter()
            .filter_map(|path| path.file_name()?.to_str().map(str::to_owned))
            .collect();
        let body = json!({
            "hook": name,
            "id": delivery,
            "message_id": message.id.to_string(),
            "piece": message.piece,
            "text": message.text,
            "files": files,
            "resend": message.resend,
        })
        .to_string();
        let signature = super::signature::sign(
            hook.secret.expose_secret().as_bytes(),
            chrono::Utc::now().timestamp(),
            body.as_bytes(),
        );
        let sent = client
            .post(url)
            .timeout(http::CALL_TIMEOUT)
            .header(::http::header::CONTENT_TYPE, "application/json")
            .header(super::signature::CRABPOT_HEADER, signature)
            .header(DELIVERY_HEADER, &delivery)
            .body(body)
            .send()
            .await;
        let result = match sent {
            Err(e) => Err(http::unavailable(&format!("posting to webhook {name}"), e)),
            Ok(response) => answer(&name, response).await,
        };
        match &result {
            Ok(_) => self.set_health(Health::connected()),
            Err(e) => self.set_health(Health {
                state: HealthState::Degraded,
                last_error: Some(format!("webhook: {e}")),
            }),
        }
        result.map(|()| delivery)
    }
}

/// What the receiver's answer means for delivery.
async fn answer(name: &str, response: reqwest::Response) -> Result<(), ChannelError> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        return Err(ChannelError::RateLimited {
            retry_after: http::retry_after(response.headers()).unwrap_or(DEFAULT_RETRY_AFTER),
        });
    }
    let reason = http::read_capped(response, MAX_ERROR_BYTES, "the answer")
        .await
        .map(|bytes| {
            String::from_utf8_lossy(&bytes)
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect::<String>()
        })
        .unwrap_or_default();
    let what = format!("webhook {name} answered {status}: {reason}");
    if status.is_server_error() {
        Err(ChannelError::Unavailable(what))
    } else {
        Err(ChannelError::Rejected(what))
    }
}
