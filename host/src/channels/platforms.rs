//! The chat platforms the host connects to itself ([`telegram`], [`slack`], [`discord`],
//! [`matrix`], [`email`]), built from `[channels.*]` ([`ChannelsConfig`]) and registered with
//! the other adapters, and [`webhook`], which is always on.
//!
//! Each adapter owns its platform's wire format; what they share is here and in
//! [`super::http`] (the HTTP client, errors without URLs, `Retry-After`) and
//! [`super::staging`] (files people send). Platforms that post to the host (Telegram's
//! webhook, Slack's Events API and interactivity) get routes under `/hooks/<platform>/` on
//! the web server; those requests carry the platform's own proof (a secret token, a
//! signature), never a crabpot session.
//!
//! [`telegram`]: super::telegram
//! [`slack`]: super::slack
//! [`discord`]: super::discord
//! [`matrix`]: super::matrix
//! [`email`]: super::email
//! [`webhook`]: super::webhook

use super::Channels;
use crate::config::ChannelsConfig;
use crate::db::DbThread;
use rusqlite::Connection;
use std::path::PathBuf;
use std::sync::Arc;

/// What every platform adapter is built with.
#[derive(Clone)]
pub struct PlatformParts {
    /// The central DB, for what an adapter keeps across restarts
    /// (`crate::db::central::channel_state`).
    pub central: Arc<DbThread<Connection>>,
    /// `data/uploads`: where files people send are staged ([`super::staging::Staging`]).
    pub uploads_dir: PathBuf,
    /// The web server's public base URL (for registering webhooks), set once it is bound,
    /// before any adapter starts; empty when the web server is off.
    pub web_base_url: Arc<std::sync::OnceLock<String>>,
}

/// Builds and registers the adapter of every platform that is on; returns the web routes
/// they serve (empty when none posts to the host).
pub fn register(
    config: &ChannelsConfig,
    parts: &PlatformParts,
    channels: &Channels,
) -> axum::Router {
    let mut hooks = axum::Router::new();
    if let Some(telegram) = &config.telegram {
        let channel = super::telegram::TelegramChannel::new(telegram.clone(), parts.clone());
        if let Some(routes) = channel.hooks() {
            hooks = hooks.merge(routes);
        }
        channels.register(channel);
    }
    if let Some(slack) = &config.slack {
        let channel = super::slack::SlackChannel::new(slack.clone(), parts.clone());
        if let Some(routes) = channel.hooks() {
            hooks = hooks.merge(routes);
        }
        channels.register(channel);
    }
    if let Some(discord) = &config.discord {
        let channel = super::discord::DiscordChannel::new(discord.clone(), parts.clone());
        channels.register(channel);
    }
    if let Some(matrix) = &config.matrix {
        let channel = super::matrix::MatrixChannel::new(matrix.clone(), parts.clone());
        channels.register(channel);
    }
    if let Some(email) = &config.email {
        let channel = super::email::EmailChannel::new(email.clone(), parts.clone());
        channels.register(channel);
    }
    // Webhooks are always on: hooks are made at run time (`crabpot webhooks create`).
    let webhooks = super::webhook::WebhookChannel::new(parts.clone());
    hooks = hooks.merge(webhooks.hooks());
    channels.register(webhooks);
    hooks
}
