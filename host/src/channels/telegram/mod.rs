//! Telegram as a [`Channel`] (skeleton: filled in by the telegram adapter's work).

use super::platforms::PlatformParts;
use crate::config::channels::TelegramConfig;
use crate::edge::{
    BoxFuture, Capabilities, Channel, ChannelError, ChatAddress, Markup, OutgoingMessage,
};
use std::sync::Arc;

pub const CHANNEL_TYPE: &str = "telegram";

pub struct TelegramChannel {
    #[expect(dead_code, reason = "skeleton")]
    config: TelegramConfig,
    #[expect(dead_code, reason = "skeleton")]
    parts: PlatformParts,
}

impl TelegramChannel {
    pub fn new(config: TelegramConfig, parts: PlatformParts) -> Arc<Self> {
        Arc::new(Self { config, parts })
    }

    /// The routes Telegram posts to, under `/hooks/telegram/`; `None` when it posts nothing.
    pub fn hooks(self: &Arc<Self>) -> Option<axum::Router> {
        None
    }
}

impl Channel for TelegramChannel {
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
