//! Email as a [`Channel`]: [`EmailChannel`], reading a mailbox over IMAP and answering over
//! SMTP.
//!
//! - [`imap`]: one IMAP connection (TLS or STARTTLS) and the commands used; [`watcher`]: the
//!   loop over it (IDLE, or polling where the server has none) with the last UID taken kept
//!   in `channel_state` once each message is durable.
//! - [`parse`]: a message as crabpot reads it; [`loops`]: auto-replies, bounces and list
//!   mail, which are never answered; [`inbound`]: taking one message in.
//! - [`threads`]: email threads (`Message-ID`, `In-Reply-To`, `References`) as crabpot
//!   threads, and what a reply in one needs; [`compose`]: a reply as MIME; [`smtp`]: sending
//!   it; [`outbound`]: the two together.
//! - [`tls`]: the certificates trusted (public roots and `channels.email.ca_file`).
//!
//! Chats are `email/<sender address>` (or `email/<bot address>` for the whole mailbox in
//! `chat_mode = mailbox`), users `email:<address>`, threads the root `Message-ID`.

pub mod compose;
pub mod imap;
pub mod inbound;
pub mod loops;
pub mod outbound;
pub mod parse;
pub mod smtp;
#[cfg(test)]
mod tests;
pub mod threads;
pub mod tls;
pub mod watcher;

use super::platforms::PlatformParts;
use super::staging::Staging;
use crate::config::email::{ChatMode, EmailConfig, plain_address};
use crate::edge::{
    BoxFuture, Capabilities, Channel, ChannelContext, ChannelError, ChatAddress, Health,
    HealthState, Markup, OutgoingMessage, RateLimits,
};
use inbound::Inbound;
use outbound::Outbound;
use smtp::Smtp;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio_rustls::rustls::ClientConfig;
use tokio_util::sync::CancellationToken;
use watcher::Watcher;

pub const CHANNEL_TYPE: &str = "email";

/// What email can do: threads and files, no edits, reactions, buttons or typing. Replies are
/// Markdown, rendered here into a plain-text and an HTML part; only the final text is sent.
pub fn capabilities() -> Capabilities {
    Capabilities {
        threads: true,
        edits: false,
        min_edit_interval: Duration::ZERO,
        reactions: false,
        buttons: false,
        files: true,
        max_file_bytes: outbound::MAX_ATTACHMENT_BYTES,
        max_text_chars: 100_000,
        markup: Markup::Markdown,
        typing_renew: None,
        live_drafts: false,
        deletes: false,
        rate: RateLimits::default(),
    }
}

/// The two TLS set-ups, made once from the configuration.
struct Transports {
    imap_tls: Arc<ClientConfig>,
    smtp: Arc<Smtp>,
}

/// The email adapter of one mailbox.
pub struct EmailChannel {
    config: EmailConfig,
    parts: PlatformParts,
    /// `Err` when the CA file or TLS could not be set up (then start fails, saying so).
    transports: Result<Transports, ChannelError>,
    health: Arc<Mutex<Health>>,
}

impl EmailChannel {
    /// The adapter for `config`; nothing connects until [`Channel::start`].
    pub fn new(config: EmailConfig, parts: PlatformParts) -> Arc<Self> {
        let transports = (|| {
            let pem = tls::extra_roots_pem(config.ca_file.as_deref())?;
            Ok(Transports {
                imap_tls: tls::client_config(pem.as_deref())?,
                smtp: Arc::new(Smtp::new(&config, pem.as_deref())?),
            })
        })();
        Arc::new(Self {
            config,
            parts,
            transports,
            health: Arc::new(Mutex::new(Health {
                state: HealthState::Starting,
                last_error: None,
            })),
        })
    }

    fn set_health(&self, health: Health) {
        *self.health.lock().unwrap_or_else(PoisonError::into_inner) = health;
    }

    fn outbound(&self) -> Result<Outbound, ChannelError> {
        let transports = self.transports.as_ref().map_err(Clone::clone)?;
        Ok(Outbound {
            address: self.config.address.clone(),
            chat_mode: self.config.chat_mode,
            smtp: Arc::clone(&transports.smtp),
            central: Arc::clone(&self.parts.central),
            health: Arc::clone(&self.health),
        })
    }

    async fn run(
        self: Arc<Self>,
        context: ChannelContext,
        shutdown: CancellationToken,
    ) -> Result<(), ChannelError> {
        let imap_tls = match &self.transports {
            Ok(transports) => Arc::clone(&transports.imap_tls),
            Err(error) => {
                let message = format!("email: {error}");
                tracing::error!(error = %message, "the email adapter cannot start");
                self.set_health(Health::failing(message.clone()));
                return Err(ChannelError::Rejected(message));
            }
        };
        let watcher = Watcher {
            config: self.config.clone(),
            tls: imap_tls,
            inbound: Inbound {
                address: self.config.address.clone(),
                chat_mode: self.config.chat_mode,
                context,
                staging: Staging::new(&self.parts.uploads_dir, CHANNEL_TYPE),
                central: Arc::clone(&self.parts.central),
            },
            central: Arc::clone(&self.parts.central),
            health: Arc::clone(&self.health),
        };
        watcher.run(shutdown).await
    }
}

impl Channel for EmailChannel {
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

    fn open_dm<'a>(&'a self, user_id: &'a str) -> BoxFuture<'a, Result<ChatAddress, ChannelError>> {
        Box::pin(async move {
            let address = user_id.strip_prefix("email:").unwrap_or(user_id);
            let Some(address) = plain_address(address) else {
                return Err(ChannelError::Rejected(format!(
                    "{user_id:?} is not an email address"
                )));
            };
            if self.config.chat_mode == ChatMode::Mailbox {
                return Err(ChannelError::Unsupported(
                    "open a direct chat in mailbox mode",
                ));
            }
            Ok(ChatAddress {
                channel_type: CHANNEL_TYPE.to_owned(),
                platform_id: address,
                thread_id: None,
            })
        })
    }
}
