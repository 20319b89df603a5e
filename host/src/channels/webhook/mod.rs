//! Webhooks as a [`Channel`]: [`WebhookChannel`], always registered (hooks are made at run
//! time with `crabpot webhooks create`, kept in `db::central::webhooks`).
//!
//! - Inbound ([`inbound`]): `POST /hooks/webhooks/<name>` on the web server. A request must be
//!   signed with the hook's secret ([`signature`]: GitHub's `X-Hub-Signature-256` or
//!   crabpot's `X-Crabpot-Signature` with a timestamp); its JSON body becomes a `webhook` row
//!   from the sender `webhook:<name>` in the chat `webhook/<name>`, which is wired to the
//!   hook's agent group. Delivery sends the reply of such a turn to the group's destinations.
//! - Outbound ([`outbound`]): a message delivered to the chat `webhook/<name>` of an outbound
//!   hook is POSTed, signed, to the hook's URL; 5xx and network failures are retried by
//!   delivery, 429 waits for its `Retry-After`.
//!
//! Chats are `webhook/<name>`; the only sender is `webhook:<name>`. Text only (Markdown as
//! the agent wrote it), no edits, no streaming.

mod inbound;
mod outbound;
pub mod signature;
#[cfg(test)]
mod tests;

use super::platforms::PlatformParts;
use crate::edge::{
    BoxFuture, Capabilities, Channel, ChannelContext, ChannelError, ChatAddress, Health,
    HealthState, Markup, OutgoingMessage,
};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use tokio_util::sync::CancellationToken;

pub use crate::edge::WEBHOOK_CHANNEL_TYPE as CHANNEL_TYPE;

/// The longest text of one POSTed message, in characters (what an agent writes at most).
const MAX_TEXT_CHARS: usize = protocol::content::MAX_TEXT_CHARS;

/// The webhook adapter (see the module docs).
pub struct WebhookChannel {
    parts: PlatformParts,
    /// The HTTP client outbound hooks are POSTed with; absent when it could not be built.
    client: Result<reqwest::Client, ChannelError>,
    /// The way into the router, set at start; inbound requests before it are answered 503.
    context: OnceLock<ChannelContext>,
    health: Mutex<Health>,
}

impl WebhookChannel {
    pub fn new(parts: PlatformParts) -> Arc<Self> {
        Arc::new(Self {
            parts,
            client: super::http::client_without_redirects(),
            context: OnceLock::new(),
            health: Mutex::new(Health {
                state: HealthState::Starting,
                last_error: None,
            }),
        })
    }

    /// The routes inbound hooks are posted to, under `/hooks/webhooks/`.
    pub fn hooks(self: &Arc<Self>) -> axum::Router {
        inbound::routes(Arc::clone(self))
    }

    fn context(&self) -> Option<ChannelContext> {
        self.context.get().cloned()
    }

    fn set_health(&self, health: Health) {
        *self.health.lock().unwrap_or_else(PoisonError::into_inner) = health;
    }
}

impl Channel for WebhookChannel {
    fn channel_type(&self) -> &str {
        CHANNEL_TYPE
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::text_only(MAX_TEXT_CHARS, Markup::Markdown)
    }

    fn start(
        self: Arc<Self>,
        context: ChannelContext,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<(), ChannelError>> {
        Box::pin(async move {
            if let Err(e) = &self.client {
                self.set_health(Health::failing(format!("webhook: {e}")));
            } else {
                self.set_health(Health::connected());
            }
            // Set once: `start` runs once per adapter.
            let _ = self.context.set(context);
            shutdown.cancelled().await;
            self.set_health(Health {
                state: HealthState::Stopped,
                last_error: None,
            });
            Ok(())
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
        Box::pin(self.post(to, message))
    }
}
