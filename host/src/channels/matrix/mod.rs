//! Matrix as a [`Channel`]: [`MatrixChannel`], on the client-server API of any homeserver
//! (tested against Synapse), with plain HTTP calls through the host's one client.
//!
//! - [`api`]: calls and media transfers, answers classified into `RateLimited` (429 or
//!   `M_LIMIT_EXCEEDED` with `retry_after_ms`), `Unavailable` (5xx, network), `Rejected`.
//! - [`login`]: a password login (its device kept across restarts) or an access token.
//! - [`wire`]: the `/sync` answer and room events as read.
//! - [`mapping`]: an event as an `InboundEvent` (chats `matrix/<room id>`, `m.thread`
//!   threads, senders `matrix:<user id>`, mentions), with no I/O.
//! - [`rooms`]: members, names, encryption and direct-ness of the joined rooms.
//! - [`sync`]: the `/sync` long poll, invites, and `since` stored once a batch is durable.
//! - [`inbound`]: one event taken in (media downloaded, keycap answers, the notice of an
//!   encrypted room).
//! - [`outbound`]: sending, editing (`m.replace`), reacting, redacting, typing, media up.
//! - [`state`]: what is kept in `channel_state`.
//!
//! The adapter takes canonical Markdown ([`Markup::Markdown`]) and renders it twice itself:
//! a Matrix message carries both a plain `body` and an HTML `formatted_body`, and deriving
//! the plain text from HTML would lose more than rendering it from the Markdown.
//!
//! A refused login fails the adapter for good (health failing, naming the variable) while
//! the rest of the host runs on. A token refused later, while syncing, is replaced by a new
//! password login (on the same device); a configured access token cannot be, so that fails.

pub mod api;
pub mod inbound;
pub mod login;
pub mod mapping;
pub mod outbound;
pub mod rooms;
pub mod state;
pub mod sync;
#[cfg(test)]
mod tests;
pub mod wire;

use super::platforms::PlatformParts;
use super::staging::Staging;
use crate::channels::http;
use crate::config::matrix::{MatrixAuth, MatrixConfig};
use crate::edge::{
    BoxFuture, Capabilities, Channel, ChannelContext, ChannelError, ChatAddress, Health,
    HealthState, Markup, OutgoingMessage, Rate, RateLimits,
};
use api::Api;
use inbound::Inbound;
use login::LoginError;
use mapping::BotIdentity;
use outbound::Outbound;
use rooms::RoomBook;
use state::State;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;
use sync::Syncer;
use tokio_util::sync::CancellationToken;

pub use mapping::CHANNEL_TYPE;

/// The longest wait between login tries while the homeserver is unreachable.
const MAX_START_BACKOFF: Duration = Duration::from_secs(30);

/// The longest text of one message. An event is at most 64 KiB, and an edit carries the
/// text three times (the fallback `body`, and `body` and `formatted_body` of
/// `m.new_content`), so 4000 characters fit even when every one takes four bytes.
pub const MAX_TEXT_CHARS: usize = 4000;

/// What Matrix can do: threads, edits, reactions, redactions, files, typing (renewed before
/// its 30 s timeout). No buttons: questions get numbered options, and keycap reactions as a
/// shortcut. Synapse limits a user's messages (`rc_message`); past that it answers 429 with
/// `retry_after_ms`, which the bridge honours, so edits are kept to one every two seconds.
pub fn capabilities() -> Capabilities {
    Capabilities {
        threads: true,
        edits: true,
        min_edit_interval: Duration::from_secs(2),
        reactions: true,
        buttons: false,
        files: true,
        max_file_bytes: outbound::MAX_UPLOAD_BYTES,
        max_text_chars: MAX_TEXT_CHARS,
        markup: Markup::Markdown,
        typing_renew: Some(Duration::from_secs(20)),
        live_drafts: false,
        deletes: true,
        rate: RateLimits {
            per_platform: None,
            per_chat: Some(Rate {
                burst: 5,
                per: Duration::from_secs(1),
            }),
        },
    }
}

/// The Matrix adapter of one bot account.
pub struct MatrixChannel {
    config: MatrixConfig,
    parts: PlatformParts,
    /// `Err` when the client could not be built (then start fails, saying so).
    api: Result<Arc<Api>, ChannelError>,
    health: Arc<Mutex<Health>>,
    /// Set once logged in.
    outbound: OnceLock<Arc<Outbound>>,
}

impl MatrixChannel {
    /// The adapter for `config`; nothing is called until [`Channel::start`].
    pub fn new(config: MatrixConfig, parts: PlatformParts) -> Arc<Self> {
        let api = Api::new(&config.homeserver).map(Arc::new);
        Arc::new(Self {
            config,
            parts,
            api,
            health: Arc::new(Mutex::new(Health {
                state: HealthState::Starting,
                last_error: None,
            })),
            outbound: OnceLock::new(),
        })
    }

    fn set_health(&self, health: Health) {
        *self.health.lock().unwrap_or_else(PoisonError::into_inner) = health;
    }

    fn outbound(&self) -> Result<&Arc<Outbound>, ChannelError> {
        self.outbound
            .get()
            .ok_or_else(|| ChannelError::Unavailable("matrix: not logged in yet".into()))
    }

    /// Fails the adapter for good with `message`, shown in its health.
    fn fail(&self, message: String) -> Result<(), ChannelError> {
        tracing::error!(error = %message, "the matrix adapter cannot start");
        self.set_health(Health::failing(message.clone()));
        Err(ChannelError::Rejected(message))
    }

    /// Logs in, trying again with a growing wait while the homeserver is unreachable;
    /// `Ok(None)` on shutdown.
    async fn log_in(
        &self,
        api: &Api,
        state: &State,
        shutdown: &CancellationToken,
    ) -> Result<Option<String>, String> {
        let mut backoff = Duration::from_secs(1);
        loop {
            match login::log_in(api, &self.config, state).await {
                Ok(user_id) => return Ok(Some(user_id)),
                Err(LoginError::Refused(why)) => return Err(format!("matrix: {why}")),
                Err(LoginError::Retry(error)) => {
                    self.set_health(Health {
                        state: HealthState::Degraded,
                        last_error: Some(format!("matrix: login failed, trying again: {error}")),
                    });
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
            }
        }
    }

    /// The bot's display name, for mentions by name; `None` when it has none.
    async fn display_name(api: &Api, user_id: &str) -> Option<String> {
        #[derive(serde::Deserialize)]
        struct Profile {
            displayname: Option<String>,
        }
        let profile: Result<Profile, _> = api
            .get(
                "profile",
                &["_matrix", "client", "v3", "profile", user_id, "displayname"],
                &[],
                http::CALL_TIMEOUT,
            )
            .await;
        profile.ok().and_then(|profile| profile.displayname)
    }

    async fn run(
        self: Arc<Self>,
        context: ChannelContext,
        shutdown: CancellationToken,
    ) -> Result<(), ChannelError> {
        let api = match self.api.clone() {
            Ok(api) => api,
            Err(error) => return self.fail(format!("matrix: {error}")),
        };
        let state = State {
            central: Arc::clone(&self.parts.central),
        };
        let user_id = match self.log_in(&api, &state, &shutdown).await {
            Ok(Some(user_id)) => user_id,
            Ok(None) => return Ok(()),
            Err(message) => return self.fail(message),
        };
        let bot = BotIdentity {
            display_name: Self::display_name(&api, &user_id).await,
            user_id: user_id.clone(),
        };
        tracing::info!(user_id = %bot.user_id, "matrix bot connected");
        let rooms = Arc::new(RoomBook::new(Arc::clone(&api), state.clone()));
        let outbound = Arc::new(Outbound {
            api: Arc::clone(&api),
            state: state.clone(),
            rooms: Arc::clone(&rooms),
            user_id,
        });
        // Only the first start sets it; a second start of the same adapter is not a thing.
        let _ = self.outbound.set(Arc::clone(&outbound));
        let inbound = Arc::new(Inbound {
            api: Arc::clone(&api),
            bot,
            context: context.clone(),
            staging: Staging::new(&self.parts.uploads_dir, CHANNEL_TYPE),
            state: state.clone(),
            rooms: Arc::clone(&rooms),
            outbound,
        });
        self.set_health(Health::connected());
        // Rows that waited for the login go out now.
        context.channel_arrived(CHANNEL_TYPE);
        let syncer = Syncer {
            api: Arc::clone(&api),
            inbound,
            state: state.clone(),
            rooms,
            invites: self.config.invites,
            health: Arc::clone(&self.health),
        };
        loop {
            let refused = match syncer.run(shutdown.clone()).await {
                Ok(()) => return Ok(()),
                Err(refused) => refused,
            };
            // A token refused while syncing (logged out, expired): with a password the bot
            // logs in again, on the same device; with a configured token it cannot.
            if !matches!(self.config.auth, MatrixAuth::Password(_)) {
                return self.fail(format!("{refused}; check CRABPOT_MATRIX_ACCESS_TOKEN"));
            }
            tracing::warn!("matrix: the access token was refused while syncing; logging in again");
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            match self.log_in(&api, &state, &shutdown).await {
                Ok(Some(_)) => self.set_health(Health::connected()),
                Ok(None) => return Ok(()),
                Err(message) => return self.fail(message),
            }
        }
    }
}

impl Channel for MatrixChannel {
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
        Box::pin(async move { self.outbound()?.typing(to, on).await })
    }

    fn open_dm<'a>(&'a self, user_id: &'a str) -> BoxFuture<'a, Result<ChatAddress, ChannelError>> {
        Box::pin(async move {
            let id = user_id.strip_prefix("matrix:").unwrap_or(user_id).trim();
            let room_id = self.outbound()?.open_dm(id).await?;
            Ok(ChatAddress {
                channel_type: CHANNEL_TYPE.to_owned(),
                platform_id: room_id,
                thread_id: None,
            })
        })
    }
}
