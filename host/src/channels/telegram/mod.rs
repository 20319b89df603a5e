//! Telegram as a [`Channel`]: [`TelegramChannel`], built on the Bot API.
//!
//! - [`api`]: calls (`<api_url>/bot<token>/<method>`) and downloads, answers classified
//!   into `RateLimited` (429 + `retry_after`), `Unavailable` (5xx, network) and `Rejected`.
//! - [`wire`]: the Bot API objects read (`Update`, `Message`, `Chat`, `User`, ...).
//! - [`mapping`]: an update as an `InboundEvent` (chats `telegram/<chat id>`, forum topics
//!   as threads, senders `telegram:<user id>`, mentions), with no I/O.
//! - [`inbound`]: taking an update in (files fetched and staged, button presses routed).
//! - [`poller`]: `getUpdates` long polling with the offset stored only after each update is
//!   durable; [`webhook`]: `POST /hooks/telegram` in webhook mode.
//! - [`outbound`]: sending, editing, reacting, deleting, typing; [`buttons`]: inline
//!   keyboards and their 64-byte `callback_data`.
//!
//! At start `getMe` checks the token: a refused one makes the adapter fail for good (health
//! failing, naming `CRABPOT_TELEGRAM_BOT_TOKEN`) while the rest of the host runs on.

pub mod api;
pub mod buttons;
pub mod inbound;
pub mod mapping;
pub mod outbound;
pub mod poller;
#[cfg(test)]
mod tests;
pub mod webhook;
pub mod wire;

use super::platforms::PlatformParts;
use super::staging::Staging;
use crate::channels::http;
use crate::config::channels::{TelegramConfig, TelegramMode};
use crate::edge::{
    BoxFuture, Capabilities, Channel, ChannelContext, ChannelError, ChatAddress, Health,
    HealthState, Markup, OutgoingMessage, Rate, RateLimits,
};
use api::{Api, ApiError};
use inbound::Inbound;
use mapping::BotIdentity;
use outbound::Outbound;
use poller::Poller;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use webhook::WebhookState;

pub use mapping::CHANNEL_TYPE;

/// The longest wait between tries of `getMe` or `setWebhook` while Telegram is unreachable.
const MAX_START_BACKOFF: Duration = Duration::from_secs(30);

/// What Telegram can do, with the limits its documentation gives: 4096 characters a
/// message, 50 MB uploads, a typing action that lasts 5 s, about one message a second in a
/// chat and 30 a second in all. (Groups allow 20 a minute; beyond that Telegram answers
/// 429 with `retry_after`, which the bridge honours.)
pub fn capabilities() -> Capabilities {
    Capabilities {
        threads: true,
        edits: true,
        min_edit_interval: Duration::from_secs(1),
        reactions: true,
        buttons: true,
        files: true,
        max_file_bytes: outbound::MAX_UPLOAD_BYTES,
        max_text_chars: 4096,
        markup: Markup::TelegramHtml,
        typing_renew: Some(Duration::from_secs(4)),
        live_drafts: false,
        deletes: true,
        rate: RateLimits {
            per_platform: Some(Rate {
                burst: 30,
                per: Duration::from_secs(1),
            }),
            per_chat: Some(Rate {
                burst: 1,
                per: Duration::from_secs(1),
            }),
        },
    }
}

/// The Telegram adapter of one bot.
pub struct TelegramChannel {
    config: TelegramConfig,
    parts: PlatformParts,
    /// `Err` when the HTTP client could not be built (then start fails, saying so).
    api: Result<Arc<Api>, ChannelError>,
    health: Arc<Mutex<Health>>,
    /// Set at start, for the webhook route built before it.
    inbound: Arc<OnceLock<Arc<Inbound>>>,
}

impl TelegramChannel {
    /// The adapter for `config`; nothing is called until [`Channel::start`].
    pub fn new(config: TelegramConfig, parts: PlatformParts) -> Arc<Self> {
        let api = Api::new(&config.api_url, config.bot_token.clone()).map(Arc::new);
        Arc::new(Self {
            config,
            parts,
            api,
            health: Arc::new(Mutex::new(Health {
                state: HealthState::Starting,
                last_error: None,
            })),
            inbound: Arc::new(OnceLock::new()),
        })
    }

    /// The routes Telegram posts to, under `/hooks/telegram`; `None` when it posts nothing
    /// (polling mode).
    pub fn hooks(self: &Arc<Self>) -> Option<axum::Router> {
        (self.config.mode == TelegramMode::Webhook).then(|| {
            webhook::routes(WebhookState {
                secret: self.config.webhook_secret.clone(),
                inbound: Arc::clone(&self.inbound),
                central: Arc::clone(&self.parts.central),
            })
        })
    }

    fn set_health(&self, health: Health) {
        *self.health.lock().unwrap_or_else(PoisonError::into_inner) = health;
    }

    fn api(&self) -> Result<Arc<Api>, ChannelError> {
        self.api.clone()
    }

    fn outbound(&self) -> Result<Outbound, ChannelError> {
        Ok(Outbound {
            api: self.api()?,
            central: Arc::clone(&self.parts.central),
        })
    }

    /// Fails the adapter for good with `error`, shown in its health.
    fn fail(&self, error: ChannelError) -> Result<(), ChannelError> {
        let message = match &error {
            ChannelError::Rejected(why) => format!("telegram: {why}"),
            other => format!("telegram: {other}"),
        };
        tracing::error!(error = %message, "the telegram adapter cannot start");
        self.set_health(Health::failing(message.clone()));
        Err(ChannelError::Rejected(message))
    }

    /// Calls `method` until Telegram answers, waiting longer after each failure; `Ok(None)`
    /// on shutdown.
    async fn until_answered<T: serde::de::DeserializeOwned>(
        &self,
        api: &Api,
        method: &str,
        body: serde_json::Value,
        shutdown: &CancellationToken,
    ) -> Result<Option<T>, ApiError> {
        let mut backoff = Duration::from_secs(1);
        loop {
            match api.call(method, &body, http::CALL_TIMEOUT).await {
                Ok(answer) => return Ok(Some(answer)),
                Err(ApiError::Channel(error)) if error.is_retryable() => {
                    self.set_health(Health::failing(format!(
                        "telegram: {method} failed, trying again: {error}"
                    )));
                    let wait = match error {
                        ChannelError::RateLimited { retry_after } => retry_after,
                        _ => backoff,
                    };
                    backoff = (backoff * 2).min(MAX_START_BACKOFF);
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(None),
                        () = tokio::time::sleep(wait) => {}
                    }
                }
                Err(other) => return Err(other),
            }
        }
    }

    async fn run(
        self: Arc<Self>,
        context: ChannelContext,
        shutdown: CancellationToken,
    ) -> Result<(), ChannelError> {
        let api = match self.api() {
            Ok(api) => api,
            Err(error) => return self.fail(error),
        };
        let me: wire::User = match self
            .until_answered(&api, "getMe", serde_json::json!({}), &shutdown)
            .await
        {
            Ok(Some(me)) => me,
            Ok(None) => return Ok(()),
            Err(ApiError::Unauthorized(description)) => {
                return self.fail(ApiError::Unauthorized(description).into());
            }
            Err(ApiError::Channel(ChannelError::Rejected(why))) => {
                // 404 is Telegram's answer to a token of the wrong shape.
                return self.fail(ChannelError::Rejected(format!(
                    "the bot token was refused ({why}); check CRABPOT_TELEGRAM_BOT_TOKEN"
                )));
            }
            Err(ApiError::Channel(other)) => return self.fail(other),
        };
        let bot = BotIdentity {
            id: me.id,
            username: me.username.clone(),
        };
        tracing::info!(bot = ?bot.username, "telegram bot connected");
        let inbound = Arc::new(Inbound {
            api: Arc::clone(&api),
            bot,
            context,
            staging: Staging::new(&self.parts.uploads_dir, CHANNEL_TYPE),
            central: Arc::clone(&self.parts.central),
        });
        // Only the first start sets it; a second start of the same adapter is not a thing.
        let _ = self.inbound.set(Arc::clone(&inbound));
        match self.config.mode {
            TelegramMode::Polling => {
                // A webhook left from an earlier run would make getUpdates refuse (409).
                let deleted: Result<Option<bool>, ApiError> = self
                    .until_answered(
                        &api,
                        "deleteWebhook",
                        serde_json::json!({"drop_pending_updates": false}),
                        &shutdown,
                    )
                    .await;
                if let Err(e) = deleted {
                    tracing::warn!(error = %e, "telegram deleteWebhook failed");
                }
                self.set_health(Health::connected());
                let poller = Poller {
                    api,
                    inbound,
                    central: Arc::clone(&self.parts.central),
                    health: Arc::clone(&self.health),
                };
                poller.run(shutdown).await
            }
            TelegramMode::Webhook => {
                let url = match &self.config.webhook_url {
                    Some(url) => url.clone(),
                    None => {
                        let base = self.parts.web_base_url.get().cloned().unwrap_or_default();
                        if base.is_empty() {
                            return self.fail(ChannelError::Rejected(
                                "webhook mode needs the web server's URL or channels.telegram.webhook_url".into(),
                            ));
                        }
                        format!("{}{}", base.trim_end_matches('/'), webhook::PATH)
                    }
                };
                let secret = self
                    .config
                    .webhook_secret
                    .as_ref()
                    .map(|secret| secret.expose_secret().to_owned())
                    .unwrap_or_default();
                let body = serde_json::json!({
                    "url": url,
                    "secret_token": secret,
                    "allowed_updates": poller::ALLOWED_UPDATES,
                });
                match self
                    .until_answered::<bool>(&api, "setWebhook", body, &shutdown)
                    .await
                {
                    Ok(Some(_)) => {}
                    Ok(None) => return Ok(()),
                    Err(error) => return self.fail(error.into()),
                }
                self.set_health(Health::connected());
                shutdown.cancelled().await;
                Ok(())
            }
        }
    }
}

impl Channel for TelegramChannel {
    fn channel_type(&self) -> &str {
        CHANNEL_TYPE
    }

    fn capabilities(&self) -> Capabilities {
        capabilities()
    }

    fn start(
        self: Arc<Self>,
        context: ChannelContext,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<(), ChannelError>> {
        Box::pin(self.run(context, shutdown))
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
        Box::pin(async move { self.outbound()?.deliver(to, message).await })
    }

    fn edit<'a>(
        &'a self,
        to: &'a ChatAddress,
        platform_message_id: &'a str,
        message: &'a OutgoingMessage,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            self.outbound()?
                .edit(to, platform_message_id, message)
                .await
        })
    }

    fn react<'a>(
        &'a self,
        to: &'a ChatAddress,
        platform_message_id: &'a str,
        emoji: &'a str,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move { self.outbound()?.react(to, platform_message_id, emoji).await })
    }

    fn delete<'a>(
        &'a self,
        to: &'a ChatAddress,
        platform_message_id: &'a str,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move { self.outbound()?.delete(to, platform_message_id).await })
    }

    fn set_typing<'a>(
        &'a self,
        to: &'a ChatAddress,
        on: bool,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            if on {
                self.outbound()?.typing(to).await
            } else {
                // Telegram's indicator ends by itself (5 s) or with the next message.
                Ok(())
            }
        })
    }

    fn open_dm<'a>(&'a self, user_id: &'a str) -> BoxFuture<'a, Result<ChatAddress, ChannelError>> {
        Box::pin(async move {
            // A private chat's id is the user's id.
            let id = user_id.strip_prefix("telegram:").unwrap_or(user_id).trim();
            if id.parse::<i64>().is_err() {
                return Err(ChannelError::Rejected(format!(
                    "{user_id:?} is not a telegram user id"
                )));
            }
            Ok(ChatAddress {
                channel_type: CHANNEL_TYPE.to_owned(),
                platform_id: id.to_owned(),
                thread_id: None,
            })
        })
    }
}
