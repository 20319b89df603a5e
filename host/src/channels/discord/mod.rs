//! Discord as a [`Channel`] ([`DiscordChannel`]): messages and button presses arrive over
//! the Gateway ([`gateway`]), replies go out through the REST API ([`rest`], rate limits
//! from its headers in [`ratelimit`]). Chats are `discord/<channel id>` (a DM or a guild
//! channel); a thread is `thread_id` = the thread's channel id in its parent's chat
//! ([`threads`]); users are `discord:<user id>` ([`inbound`]). Buttons are message components ([`components`]); presses are taken in by
//! [`receive`]. Discord posts nothing to the host, so there are no hooks.
//!
//! At start the token is checked (`GET /users/@me`) and the gateway URL found
//! (`GET /gateway/bot`, unless `CRABPOT_DISCORD_GATEWAY_URL` names it); a refused token
//! fails the adapter with a message naming `CRABPOT_DISCORD_BOT_TOKEN`, and the host runs on.

pub mod components;
pub mod gateway;
pub mod inbound;
pub mod ratelimit;
pub mod receive;
pub mod rest;
pub mod threads;

use self::components::{CustomId, actions, custom_id, rows};
use self::receive::Receiver;
use self::rest::{Body, Rest, RestError, encode_segment};
use super::http::read_outgoing_file;
use super::platforms::PlatformParts;
use super::staging::Staging;
use crate::config::channels::DiscordConfig;
use crate::db::central::channel_state;
use crate::edge::{
    BoxFuture, Capabilities, Channel, ChannelContext, ChannelError, ChatAddress, Health,
    HealthState, Markup, OutgoingMessage, Rate, RateLimits,
};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const CHANNEL_TYPE: &str = "discord";

/// The longest message Discord takes (without Nitro).
const MAX_TEXT_CHARS: usize = 2000;
/// The largest upload of a bot in a server without boosts.
const MAX_FILE_BYTES: u64 = 10 * 1024 * 1024;
/// Shown where a message would be empty (Discord refuses empty messages).
const PLACEHOLDER: &str = "…";
/// The longest `nonce` Discord takes.
const MAX_NONCE: usize = 25;

/// The Discord adapter.
pub struct DiscordChannel {
    config: DiscordConfig,
    parts: PlatformParts,
    rest: Rest,
    staging: Staging,
    health: Mutex<Health>,
    /// Which guild channels are threads of which channel.
    threads: threads::ThreadParents,
    /// The bot's own user id (from `GET /users/@me` and READY): its own messages are
    /// skipped, and mentions of it engage.
    bot_id: Mutex<String>,
}

/// The `channel_state` key of a stored button action.
pub fn button_key(key: &str) -> String {
    format!("button:{key}")
}

/// The idempotency key of a message: derived from its row id and piece, so a resend after a
/// crash carries the same one and Discord (`enforce_nonce`) does not post it twice.
pub fn nonce(message: &OutgoingMessage) -> Option<String> {
    if message.id.as_str().is_empty() {
        return None;
    }
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{}.{}", message.id, message.piece).as_bytes(),
    );
    let hex: String = digest
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    Some(hex.chars().take(MAX_NONCE).collect())
}

/// A Discord id (a snowflake): digits only, so it is safe in a path.
fn snowflake<'a>(id: &'a str, what: &str) -> Result<&'a str, ChannelError> {
    if !id.is_empty() && id.len() <= 20 && id.chars().all(|c| c.is_ascii_digit()) {
        Ok(id)
    } else {
        Err(ChannelError::Rejected(format!(
            "discord: {what} {id:?} is not a Discord id"
        )))
    }
}

/// The channel a message to `to` goes to: the thread when one is named.
fn channel_of(to: &ChatAddress) -> Result<&str, ChannelError> {
    snowflake(
        to.thread_id.as_deref().unwrap_or(&to.platform_id),
        "the channel",
    )
}

impl DiscordChannel {
    pub fn new(config: DiscordConfig, parts: PlatformParts) -> Arc<Self> {
        let http = super::http::client().unwrap_or_default();
        let rest = Rest::new(http, &config.api_url, config.bot_token.clone());
        let staging = Staging::new(&parts.uploads_dir, CHANNEL_TYPE);
        Arc::new(Self {
            config,
            parts,
            rest,
            staging,
            health: Mutex::new(Health {
                state: HealthState::Starting,
                last_error: None,
            }),
            threads: threads::ThreadParents::default(),
            bot_id: Mutex::new(String::new()),
        })
    }

    /// The routes Discord posts to, under `/hooks/discord/`; `None`: Discord posts nothing.
    pub fn hooks(self: &Arc<Self>) -> Option<axum::Router> {
        None
    }

    fn set_health(&self, health: Health) {
        *self.health.lock().unwrap_or_else(PoisonError::into_inner) = health;
    }

    fn set_failing(&self, message: &str) {
        self.set_health(Health::failing(message));
    }

    fn set_degraded(&self, message: &str) {
        self.set_health(Health {
            state: HealthState::Degraded,
            last_error: Some(message.to_owned()),
        });
    }

    fn set_connected(&self) {
        self.set_health(Health::connected());
    }

    fn is_connected(&self) -> bool {
        self.health().state == HealthState::Connected
    }

    fn set_bot_id(&self, id: &str) {
        *self.bot_id.lock().unwrap_or_else(PoisonError::into_inner) = id.to_owned();
    }

    fn bot_id(&self) -> String {
        self.bot_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn receiver(&self) -> Receiver<'_> {
        Receiver {
            rest: &self.rest,
            staging: &self.staging,
            central: &self.parts.central,
            threads: &self.threads,
            bot_id: self.bot_id(),
        }
    }

    async fn receive_message(&self, context: &ChannelContext, data: &Value) -> Result<(), String> {
        self.receiver().message(context, data).await
    }

    async fn receive_press(&self, context: &ChannelContext, data: &Value) -> Result<(), String> {
        self.receiver().press(context, data).await
    }

    /// Checks the token and finds the gateway; `Ok(None)` when shut down meanwhile.
    async fn connect_rest(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<Option<String>, ChannelError> {
        let mut wait = Duration::from_secs(1);
        loop {
            let found = async {
                let me = self
                    .rest
                    .call(http::Method::GET, "/users/@me", Body::None)
                    .await?;
                if let Some(id) = me.get("id").and_then(Value::as_str) {
                    self.set_bot_id(id);
                }
                if let Some(url) = &self.config.gateway_url {
                    return Ok(url.clone());
                }
                let gateway = self
                    .rest
                    .call(http::Method::GET, "/gateway/bot", Body::None)
                    .await?;
                gateway
                    .get("url")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| RestError::Unavailable("GET /gateway/bot named no url".into()))
            }
            .await;
            match found {
                Ok(url) => return Ok(Some(url)),
                Err(RestError::Unauthorized) => {
                    let message = RestError::Unauthorized.to_string();
                    tracing::error!("{message}");
                    self.set_failing(&message);
                    return Err(ChannelError::Rejected(message));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "discord: connecting failed; trying again");
                    self.set_degraded(&e.to_string());
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(None),
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(Duration::from_secs(60));
        }
    }

    /// The `custom_id`s of a message's buttons, storing the actions too long to inline.
    async fn custom_ids(&self, message: &OutgoingMessage) -> Result<Vec<CustomId>, ChannelError> {
        let mut ids = Vec::new();
        for action in actions(&message.buttons, message.question_id.as_deref()) {
            let id = custom_id(&action);
            if let CustomId::Stored { key, .. } = &id {
                let key = button_key(key);
                let value = serde_json::to_string(&action)
                    .map_err(|e| ChannelError::Rejected(format!("a button: {e}")))?;
                self.parts
                    .central
                    .call(move |conn| channel_state::put(conn, CHANNEL_TYPE, &key, &value))
                    .await
                    .map_err(|e| ChannelError::Unavailable(format!("storing a button: {e}")))?;
            }
            ids.push(id);
        }
        Ok(ids)
    }

    /// The JSON of a message's text and buttons.
    async fn payload(&self, message: &OutgoingMessage) -> Result<Value, ChannelError> {
        let content = if message.text.trim().is_empty() && message.files.is_empty() {
            PLACEHOLDER.to_owned()
        } else {
            message.text.chars().take(MAX_TEXT_CHARS).collect()
        };
        let ids = self.custom_ids(message).await?;
        Ok(json!({
            "content": content,
            "components": rows(&message.buttons, &ids),
            // Agents cannot ping @everyone or roles.
            "allowed_mentions": {"parse": ["users"]},
        }))
    }
}

/// A multipart body of `payload` and `files` (`files[n]`, named in `attachments`).
async fn with_files(
    mut payload: Value,
    files: &[std::path::PathBuf],
) -> Result<reqwest::multipart::Form, ChannelError> {
    let mut form = reqwest::multipart::Form::new();
    let mut attachments = Vec::new();
    for (index, path) in files.iter().take(10).enumerate() {
        let (name, bytes) = read_outgoing_file(path, MAX_FILE_BYTES).await?;
        attachments.push(json!({"id": index, "filename": name}));
        let part = reqwest::multipart::Part::bytes(bytes.to_vec())
            .file_name(name)
            .mime_str("application/octet-stream")
            .map_err(|e| ChannelError::Rejected(format!("a file part: {e}")))?;
        form = form.part(format!("files[{index}]"), part);
    }
    payload["attachments"] = Value::Array(attachments);
    Ok(form.text("payload_json", payload.to_string()))
}

impl Channel for DiscordChannel {
    fn channel_type(&self) -> &str {
        CHANNEL_TYPE
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            threads: true,
            edits: true,
            min_edit_interval: Duration::from_secs(1),
            reactions: true,
            buttons: true,
            files: true,
            max_file_bytes: MAX_FILE_BYTES,
            max_text_chars: MAX_TEXT_CHARS,
            markup: Markup::DiscordMarkdown,
            // The indicator lasts 10 s.
            typing_renew: Some(Duration::from_secs(8)),
            live_drafts: false,
            deletes: true,
            rate: RateLimits {
                per_platform: Some(Rate {
                    burst: 50,
                    per: Duration::from_secs(1),
                }),
                per_chat: Some(Rate {
                    burst: 5,
                    per: Duration::from_secs(5),
                }),
            },
        }
    }

    fn start(
        self: Arc<Self>,
        context: ChannelContext,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<(), ChannelError>> {
        Box::pin(async move {
            let Some(gateway_url) = self.connect_rest(&shutdown).await? else {
                return Ok(());
            };
            let result = gateway::run(Arc::clone(&self), context, shutdown, gateway_url).await;
            if result.is_ok() {
                self.set_health(Health {
                    state: HealthState::Stopped,
                    last_error: None,
                });
            }
            result
        })
    }

    fn health(&self) -> Health {
        self.health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn deliver<'a>(
        &'a self,
        to: &'a ChatAddress,
        message: &'a OutgoingMessage,
    ) -> BoxFuture<'a, Result<String, ChannelError>> {
        Box::pin(async move {
            let channel_id = channel_of(to)?;
            let mut payload = self.payload(message).await?;
            if let Some(nonce) = nonce(message) {
                payload["nonce"] = json!(nonce);
                payload["enforce_nonce"] = json!(true);
            }
            let body = if message.files.is_empty() {
                Body::Json(payload)
            } else {
                Body::Multipart(with_files(payload, &message.files).await?)
            };
            let sent = self
                .rest
                .call(
                    http::Method::POST,
                    &format!("/channels/{channel_id}/messages"),
                    body,
                )
                .await?;
            sent.get("id")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| {
                    ChannelError::Unavailable("discord: a sent message has no id".into())
                })
        })
    }

    fn edit<'a>(
        &'a self,
        to: &'a ChatAddress,
        platform_message_id: &'a str,
        message: &'a OutgoingMessage,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            let channel_id = channel_of(to)?;
            let message_id = snowflake(platform_message_id, "the message")?;
            let payload = self.payload(message).await?;
            self.rest
                .call(
                    http::Method::PATCH,
                    &format!("/channels/{channel_id}/messages/{message_id}"),
                    Body::Json(payload),
                )
                .await?;
            Ok(())
        })
    }

    fn react<'a>(
        &'a self,
        to: &'a ChatAddress,
        platform_message_id: &'a str,
        emoji: &'a str,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            let channel_id = channel_of(to)?;
            let message_id = snowflake(platform_message_id, "the message")?;
            let emoji = encode_segment(emoji);
            self.rest
                .call(
                    http::Method::PUT,
                    &format!("/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me"),
                    Body::None,
                )
                .await?;
            Ok(())
        })
    }

    fn delete<'a>(
        &'a self,
        to: &'a ChatAddress,
        platform_message_id: &'a str,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            let channel_id = channel_of(to)?;
            let message_id = snowflake(platform_message_id, "the message")?;
            match self
                .rest
                .call(
                    http::Method::DELETE,
                    &format!("/channels/{channel_id}/messages/{message_id}"),
                    Body::None,
                )
                .await
            {
                // Already gone.
                Err(RestError::Rejected { status: 404, .. }) | Ok(_) => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn set_typing<'a>(
        &'a self,
        to: &'a ChatAddress,
        on: bool,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            // Discord has no "stop typing": the indicator ends with the next message.
            if !on {
                return Ok(());
            }
            let channel_id = channel_of(to)?;
            self.rest
                .call(
                    http::Method::POST,
                    &format!("/channels/{channel_id}/typing"),
                    Body::None,
                )
                .await?;
            Ok(())
        })
    }

    fn open_dm<'a>(&'a self, user_id: &'a str) -> BoxFuture<'a, Result<ChatAddress, ChannelError>> {
        Box::pin(async move {
            let id = user_id
                .strip_prefix(&format!("{CHANNEL_TYPE}:"))
                .unwrap_or(user_id);
            let id = snowflake(id, "the user")?;
            let channel = self
                .rest
                .call(
                    http::Method::POST,
                    "/users/@me/channels",
                    Body::Json(json!({"recipient_id": id})),
                )
                .await?;
            let channel_id = channel.get("id").and_then(Value::as_str).ok_or_else(|| {
                ChannelError::Unavailable("discord: a DM channel has no id".into())
            })?;
            Ok(ChatAddress {
                channel_type: CHANNEL_TYPE.to_owned(),
                platform_id: channel_id.to_owned(),
                thread_id: None,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::MessageId;

    #[test]
    fn nonces_are_short_stable_and_per_piece() {
        let message = OutgoingMessage {
            id: MessageId::new("m-0193abcdef".to_owned()),
            ..OutgoingMessage::default()
        };
        let first = nonce(&message);
        assert_eq!(first, nonce(&message));
        assert_eq!(first.as_ref().map(String::len), Some(MAX_NONCE));
        let second = nonce(&OutgoingMessage {
            piece: 1,
            ..message.clone()
        });
        assert_ne!(first, second);
        assert_eq!(nonce(&OutgoingMessage::default()), None);
    }

    #[test]
    fn only_snowflakes_go_into_paths() {
        assert!(snowflake("123456789012345678", "x").is_ok());
        for bad in ["", "12/../3", "abc", "123456789012345678901"] {
            assert!(snowflake(bad, "x").is_err(), "{bad}");
        }
        let to = ChatAddress {
            channel_type: CHANNEL_TYPE.into(),
            platform_id: "1".into(),
            thread_id: Some("2".into()),
        };
        assert_eq!(channel_of(&to).ok(), Some("2"));
    }
}
