//! Discord as a [`Channel`] (skeleton: filled in by the discord adapter's work).

use super::platforms::PlatformParts;
use crate::config::channels::DiscordConfig;
use crate::edge::{
    BoxFuture, Capabilities, Channel, ChannelError, ChatAddress, Markup, OutgoingMessage,
};
use std::sync::Arc;

pub const CHANNEL_TYPE: &str = "discord";

pub struct DiscordChannel {
    #[expect(dead_code, reason = "skeleton")]
    config: DiscordConfig,
    #[expect(dead_code, reason = "skeleton")]
    parts: PlatformParts,
}

impl DiscordChannel {
    pub fn new(config: DiscordConfig, parts: PlatformParts) -> Arc<Self> {
        Arc::new(Self { config, parts })
    }

    /// The routes Discord posts to, under `/hooks/discord/`; `None` when it posts nothing.
    pub fn hooks(self: &Arc<Self>) -> Option<axum::Router> {
        None
    }
}

impl Channel for DiscordChannel {
    fn channel_type(&self) -> &str {
        CHANNEL_TYPE
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::text_only(2000, Markup::Plain)
    }

    fn deliver<'a>(
        &'a self,
        _to: &'a ChatAddress,
        _message: &'a OutgoingMessage,
    ) -> BoxFuture<'a, Result<String, ChannelError>> {
        Box::pin(async { Err(ChannelError::Unsupported("deliver yet")) })
    }
}
