//! Slack as a [`Channel`]: [`SlackChannel`].
//!
//! - Chats are `slack/<conversation id>` (`D…` direct chats are not groups), threads are a
//!   message's `thread_ts`, people are `slack:<user id>` with their display name
//!   (`users.info`, cached).
//! - At start `auth.test` names the bot's own user id (for mentions and to skip its own
//!   messages); a refused bot token fails this adapter with a message naming
//!   `CRABPOT_SLACK_BOT_TOKEN`, and the host runs on.
//! - Inbound ([`intake`]): the Events API and interactivity at `/hooks/slack/…` ([`hooks`],
//!   signed requests only, [`signature`]) or Socket Mode with the app token ([`socket`]).
//!   Slack is answered only once the message is durable; its retries are stored once.
//! - Outbound: `chat.postMessage` (in the thread), `chat.update` for streamed replies and
//!   edits, `chat.delete`, `reactions.add` ([`emoji`]), Block Kit buttons ([`blocks`]),
//!   files through the external upload flow ([`files`]). Slack's 429 + `Retry-After` is
//!   [`ChannelError::RateLimited`], for the bridge to wait and retry ([`api`]).

pub mod api;
pub mod blocks;
pub mod emoji;
pub mod events;
pub mod files;
mod hooks;
mod intake;
mod replies;
pub mod signature;
mod socket;
#[cfg(test)]
mod tests;

use super::platforms::PlatformParts;
use super::staging::Staging;
use crate::config::channels::SlackConfig;
use crate::edge::{
    BoxFuture, Capabilities, Channel, ChannelContext, ChannelError, ChatAddress, Health,
    HealthState, Markup, OutgoingMessage, Rate, RateLimits,
};
use api::{Args, SlackApi, str_field};
use files::SlackFiles;
use replies::Replies;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The channel type of every Slack chat.
pub const CHANNEL_TYPE: &str = "slack";

/// The longest text of one message: a section block's cap, so buttons fit too.
const MAX_TEXT_CHARS: usize = blocks::MAX_SECTION_CHARS;
/// How long a display name lookup may hold up taking a message.
const USER_LOOKUP_TIMEOUT: Duration = Duration::from_millis(1500);
/// Display names kept; past this the cache starts over.
const MAX_CACHED_USERS: usize = 10_000;
/// The id prefix of a message that is a shared file (no `ts` of its own to edit).
pub(crate) const FILE_ID_PREFIX: &str = "file:";

/// What the adapter learns as it runs.
struct State {
    health: Health,
    /// The bot's own user id, from `auth.test`.
    bot_user_id: Option<String>,
    /// Display names by user id.
    users: HashMap<String, Option<String>>,
}

/// The Slack adapter (see the module docs).
pub struct SlackChannel {
    config: SlackConfig,
    parts: PlatformParts,
    /// What goes out; absent when the HTTP client could not be built.
    core: Result<Replies, ChannelError>,
    context: OnceLock<ChannelContext>,
    state: Mutex<State>,
    /// Event ids being taken right now ([`intake`]).
    in_flight: Mutex<HashSet<String>>,
}

impl SlackChannel {
    /// The adapter for `config`; it connects in [`Channel::start`].
    pub fn new(config: SlackConfig, parts: PlatformParts) -> Arc<Self> {
        let core = super::http::client().map(|client| {
            let api = SlackApi::new(client, &config.api_url, config.bot_token.clone());
            let files =
                SlackFiles::new(api.clone(), Staging::new(&parts.uploads_dir, CHANNEL_TYPE));
            Replies::new(api, files)
        });
        Arc::new(Self {
            config,
            parts,
            core,
            context: OnceLock::new(),
            in_flight: Mutex::new(HashSet::new()),
            state: Mutex::new(State {
                health: Health {
                    state: HealthState::Starting,
                    last_error: None,
                },
                bot_user_id: None,
                users: HashMap::new(),
            }),
        })
    }

    /// The routes Slack posts to, under `/hooks/slack/`; `None` when it posts nothing
    /// (no signing secret: Socket Mode only).
    pub fn hooks(self: &Arc<Self>) -> Option<axum::Router> {
        self.config
            .signing_secret
            .as_ref()
            .map(|_| hooks::routes(Arc::clone(self)))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn set_health(&self, health: Health) {
        self.state().health = health;
    }

    fn context(&self) -> Option<ChannelContext> {
        self.context.get().cloned()
    }

    fn bot_user_id(&self) -> Option<String> {
        self.state().bot_user_id.clone()
    }

    fn signing_secret(&self) -> Option<&str> {
        self.config
            .signing_secret
            .as_ref()
            .map(|secret| secret.expose_secret())
    }

    fn api(&self) -> Result<&SlackApi, ChannelError> {
        self.core
            .as_ref()
            .map(|core| &core.api)
            .map_err(Clone::clone)
    }

    fn replies(&self) -> Result<&Replies, ChannelError> {
        self.core.as_ref().map_err(Clone::clone)
    }

    fn files(&self) -> Option<&SlackFiles> {
        self.core.as_ref().ok().map(|core| &core.files)
    }

    /// A person's display name: `profile.display_name`, else `real_name`, else `name`;
    /// `None` when Slack cannot say (the message is taken all the same).
    async fn user_name(&self, user_id: &str) -> Option<String> {
        if let Some(cached) = self.state().users.get(user_id) {
            return cached.clone();
        }
        let api = self.api().ok()?;
        // Slack wants its answer within 3 s: a slow lookup leaves the sender unnamed.
        let fields = [("user", user_id.to_owned())];
        let lookup = api.call("users.info", Args::Form(&fields));
        let answer = match tokio::time::timeout(USER_LOOKUP_TIMEOUT, lookup).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "users.info failed; the sender stays unnamed");
                return None;
            }
            Err(_) => {
                tracing::debug!("users.info was slow; the sender stays unnamed this time");
                return None;
            }
        };
        let user = answer.get("user").unwrap_or(&Value::Null);
        let profile = user.get("profile").unwrap_or(&Value::Null);
        let name = [
            str_field(profile, "display_name"),
            str_field(profile, "real_name"),
            str_field(user, "real_name"),
            str_field(user, "name"),
        ]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|name| !name.is_empty())
        .map(|name| blocks::cut(name, 100));
        let mut state = self.state();
        if state.users.len() >= MAX_CACHED_USERS {
            state.users.clear();
        }
        state.users.insert(user_id.to_owned(), name.clone());
        name
    }

    /// `auth.test` until it answers: the bot's user id, or a refusal for good.
    async fn authenticate(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<Option<String>, ChannelError> {
        let api = self.api()?;
        let mut backoff = Duration::from_millis(500);
        loop {
            match api.call("auth.test", Args::Form(&[])).await {
                Ok(answer) => return Ok(str_field(&answer, "user_id").map(str::to_owned)),
                Err(e) if e.is_auth() => {
                    let message = format!(
                        "slack: the bot token was refused ({}); check CRABPOT_SLACK_BOT_TOKEN",
                        e.code().unwrap_or_default()
                    );
                    return Err(ChannelError::Rejected(message));
                }
                Err(e) => {
                    self.set_health(Health::failing(format!("slack: {e}")));
                    tracing::warn!(error = %e, "slack auth.test failed; retrying");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = shutdown.cancelled() => return Ok(None),
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    async fn run(
        self: Arc<Self>,
        context: ChannelContext,
        shutdown: CancellationToken,
    ) -> Result<(), ChannelError> {
        if let Err(e) = &self.core {
            self.set_health(Health::failing(format!("slack: {e}")));
            return Err(e.clone());
        }
        let bot_user_id = match self.authenticate(&shutdown).await {
            Ok(Some(id)) => id,
            Ok(None) if shutdown.is_cancelled() => return Ok(()),
            Ok(None) => {
                let message = "slack: auth.test named no user_id; check CRABPOT_SLACK_BOT_TOKEN is a bot token (xoxb-…)";
                self.set_health(Health::failing(message));
                return Err(ChannelError::Rejected(message.into()));
            }
            Err(e) => {
                let message = match &e {
                    ChannelError::Rejected(message) => message.clone(),
                    other => format!("slack: {other}"),
                };
                self.set_health(Health::failing(message));
                return Err(e);
            }
        };
        tracing::info!(bot_user_id, "slack: connected");
        self.state().bot_user_id = Some(bot_user_id);
        // Set once: `start` runs once per adapter.
        let _ = self.context.set(context.clone());
        context.channel_arrived(CHANNEL_TYPE);
        match (&self.config.app_token, &self.config.signing_secret) {
            (Some(app_token), _) => {
                self.set_health(Health {
                    state: HealthState::Starting,
                    last_error: Some("slack: opening the Socket Mode connection".into()),
                });
                let app_api = self.api()?.with_token(app_token.clone());
                self.run_socket(app_api, shutdown).await
            }
            (None, Some(_)) => {
                self.set_health(Health::connected());
                shutdown.cancelled().await;
                Ok(())
            }
            (None, None) => {
                let message = "slack: neither CRABPOT_SLACK_SIGNING_SECRET (Events API) nor CRABPOT_SLACK_APP_TOKEN (Socket Mode) is set: nothing can arrive";
                self.set_health(Health::failing(message));
                Err(ChannelError::Rejected(message.into()))
            }
        }
    }
}

impl Channel for SlackChannel {
    fn channel_type(&self) -> &str {
        CHANNEL_TYPE
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            threads: true,
            edits: true,
            // chat.update is Tier 3 (about 50 a minute); one edit a second per message.
            min_edit_interval: Duration::from_millis(1100),
            reactions: true,
            buttons: true,
            files: true,
            max_file_bytes: files::MAX_SEND_BYTES,
            max_text_chars: MAX_TEXT_CHARS,
            markup: Markup::SlackMrkdwn,
            // Bots on the Events API have no typing indicator.
            typing_renew: None,
            live_drafts: false,
            deletes: true,
            rate: RateLimits {
                // chat.postMessage: about one message a second per channel, short bursts
                // allowed.
                per_chat: Some(Rate {
                    burst: 2,
                    per: Duration::from_secs(2),
                }),
                per_platform: Some(Rate {
                    burst: 100,
                    per: Duration::from_secs(60),
                }),
            },
        }
    }

    fn start(
        self: Arc<Self>,
        context: ChannelContext,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<(), ChannelError>> {
        Box::pin(self.run(context, shutdown))
    }

    fn health(&self) -> Health {
        self.state().health.clone()
    }

    fn deliver<'a>(
        &'a self,
        to: &'a ChatAddress,
        message: &'a OutgoingMessage,
    ) -> BoxFuture<'a, Result<String, ChannelError>> {
        Box::pin(async move { self.replies()?.send(to, message).await })
    }

    fn edit<'a>(
        &'a self,
        to: &'a ChatAddress,
        platform_message_id: &'a str,
        message: &'a OutgoingMessage,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            self.replies()?
                .change(to, platform_message_id, message)
                .await
        })
    }

    fn react<'a>(
        &'a self,
        to: &'a ChatAddress,
        platform_message_id: &'a str,
        emoji: &'a str,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            self.replies()?
                .add_reaction(to, platform_message_id, emoji)
                .await
        })
    }

    fn delete<'a>(
        &'a self,
        to: &'a ChatAddress,
        platform_message_id: &'a str,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move { self.replies()?.remove(to, platform_message_id).await })
    }

    fn open_dm<'a>(&'a self, user_id: &'a str) -> BoxFuture<'a, Result<ChatAddress, ChannelError>> {
        Box::pin(async move { self.replies()?.direct_chat(user_id).await })
    }
}
