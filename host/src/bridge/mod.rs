//! The bridge between delivery and every channel adapter (DESIGN §8). Delivery decides what
//! a row is and where it may go; the bridge decides how it reaches that platform:
//!
//! - [`degrade`]: buttons become numbered options where the platform has none, an edit
//!   becomes a new message where it cannot edit, a reaction a line where it cannot react;
//! - [`split`] and [`markup`]: text longer than the platform allows is cut at paragraph,
//!   line or sentence boundaries (never inside a code block), and canonical Markdown is
//!   converted to the platform's dialect with the escaping it needs;
//! - [`rate`]: every platform call waits for the platform's and the chat's rate, a
//!   platform's retry-after holds back that scope, and a rate-limited call is tried again;
//! - [`live`]: drafts of a reply being written are shown as they grow (natively, or as one
//!   message edited in place at the platform's edit rate) with a typing indicator before,
//!   and the final reply takes the draft's place, so a reply is always exactly one message;
//! - [`remembered`]: a draft shown as a platform message is written down, so a host that
//!   restarts mid-reply edits that message into the reply instead of leaving it behind.
//!
//! A row split in pieces remembers which pieces went out, so a retry after a failed piece
//! does not send the earlier ones twice.

pub mod degrade;
pub mod live;
pub mod markup;
pub mod rate;
pub mod remembered;
pub mod split;
#[cfg(test)]
mod tests;

use crate::channels::Channels;
use crate::edge::{Channel, ChannelError, ChatAddress, HostMessage, OutgoingMessage};
use degrade::Call;
use live::{Streams, Taken};
use protocol::{MessageId, OutboundContent, Seq, SessionId};
use rate::{RateLimiter, Scope};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The longest a platform's retry-after is waited for within one call; past it the row
/// waits in delivery like any other retry.
const MAX_INLINE_RETRY_AFTER: Duration = Duration::from_secs(30);
/// Rate-limited answers taken within one call before giving up to delivery's retry.
const MAX_RATE_LIMITED: u32 = 3;

/// One chat row for the bridge: validated, authorised, with its files staged.
pub struct RowSend<'a> {
    pub session: &'a SessionId,
    pub address: &'a ChatAddress,
    pub id: &'a MessageId,
    pub seq: Seq,
    pub content: &'a OutboundContent,
    pub files: &'a [PathBuf],
    /// The platform id of the message an edit, reaction or progress update changes.
    pub target: Option<String>,
    /// The inbound row this answers (a reply to the origin replaces that turn's draft).
    pub in_reply_to: Option<&'a MessageId>,
    /// The row was left `sending` by a host that crashed: the platform may have it.
    pub resend: bool,
}

pub struct Bridge {
    limiter: Arc<RateLimiter>,
    streams: Arc<Streams>,
    /// Rows split in pieces whose later pieces failed: the pieces that went out, and the
    /// first piece's platform id.
    partial: Mutex<HashMap<MessageId, (u32, String)>>,
}

impl Bridge {
    pub fn new(channels: Arc<Channels>) -> Arc<Self> {
        let limiter = Arc::new(RateLimiter::new());
        Arc::new(Self {
            streams: Streams::new(channels, Arc::clone(&limiter)),
            limiter,
            partial: Mutex::new(HashMap::new()),
        })
    }

    /// The live drafts of replies being written.
    pub fn streams(&self) -> &Arc<Streams> {
        &self.streams
    }

    /// Sends one agent row; returns the platform id of its (first) message.
    pub async fn send(
        &self,
        channel: &Arc<dyn Channel>,
        row: RowSend<'_>,
    ) -> Result<String, ChannelError> {
        let capabilities = channel.capabilities();
        let call = degrade::plan(row.content, &capabilities, row.target.as_deref());
        match call {
            Call::Edit { target, markdown } => {
                let text = markup::convert(&markdown, capabilities.markup);
                let message = OutgoingMessage {
                    id: row.id.clone(),
                    seq: row.seq,
                    text: truncate(&text, capabilities.max_text_chars),
                    resend: row.resend,
                    ..OutgoingMessage::default()
                };
                self.paced(channel, row.address, || {
                    channel.edit(row.address, &target, &message)
                })
                .await?;
                Ok(target)
            }
            Call::React { target, emoji } => {
                self.paced(channel, row.address, || {
                    channel.react(row.address, &target, &emoji)
                })
                .await?;
                Ok(target)
            }
            Call::Send {
                markdown,
                buttons,
                question_id,
            } => {
                let pieces = split::render_pieces(
                    &markdown,
                    capabilities.markup,
                    capabilities.max_text_chars,
                );
                // A reply to the origin takes the place of its turn's draft.
                let taken = match (row.content, row.in_reply_to) {
                    (OutboundContent::Message(_), Some(key)) => {
                        self.streams
                            .take(row.session, key.as_str(), row.address)
                            .await
                    }
                    _ => None,
                };
                let done = self
                    .partial
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(row.id)
                    .cloned();
                let mut first = done.as_ref().map(|(_, id)| id.clone());
                let skip = done.map_or(0, |(count, _)| count);
                let last = pieces.len().saturating_sub(1);
                for (index, text) in pieces.into_iter().enumerate() {
                    let piece = u32::try_from(index).unwrap_or(u32::MAX);
                    if piece < skip {
                        continue;
                    }
                    let message = OutgoingMessage {
                        id: row.id.clone(),
                        seq: row.seq,
                        piece,
                        text,
                        files: if index == 0 {
                            row.files.to_vec()
                        } else {
                            Vec::new()
                        },
                        buttons: if index == last {
                            buttons.clone()
                        } else {
                            Vec::new()
                        },
                        question_id: question_id.clone(),
                        replaces_draft: None,
                        resend: row.resend,
                    };
                    let sent = self
                        .send_piece(channel, row.address, message, index == 0, taken.as_ref())
                        .await;
                    match sent {
                        Ok(platform_id) => {
                            let first_id = first.get_or_insert(platform_id).clone();
                            if index != last {
                                self.partial
                                    .lock()
                                    .unwrap_or_else(PoisonError::into_inner)
                                    .insert(row.id.clone(), (piece + 1, first_id));
                            }
                        }
                        Err(e) => return Err(e),
                    }
                }
                self.partial
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(row.id);
                Ok(first.unwrap_or_default())
            }
        }
    }

    /// One piece: the first piece of a reply with a draft takes the draft's place.
    async fn send_piece(
        &self,
        channel: &Arc<dyn Channel>,
        to: &ChatAddress,
        mut message: OutgoingMessage,
        first: bool,
        taken: Option<&Taken>,
    ) -> Result<String, ChannelError> {
        match taken {
            Some(Taken::Edited {
                platform_id,
                not_before,
            }) if first && message.files.is_empty() => {
                tokio::time::sleep_until(*not_before).await;
                self.paced(channel, to, || channel.edit(to, platform_id, &message))
                    .await?;
                Ok(platform_id.clone())
            }
            Some(Taken::Live { key }) if first => {
                message.replaces_draft = Some(key.clone());
                self.paced(channel, to, || channel.deliver(to, &message))
                    .await
            }
            Some(Taken::Edited { platform_id, .. }) if first => {
                // An edit cannot add files: the reply is a new message and the draft goes.
                let sent = self
                    .paced(channel, to, || channel.deliver(to, &message))
                    .await?;
                let removed = if channel.capabilities().deletes {
                    channel.delete(to, platform_id).await
                } else {
                    let placeholder = OutgoingMessage {
                        text: live::PLACEHOLDER.to_owned(),
                        ..message.clone()
                    };
                    channel.edit(to, platform_id, &placeholder).await
                };
                if let Err(e) = removed {
                    tracing::debug!(error = %e, "removing a draft failed");
                }
                Ok(sent)
            }
            _ => {
                self.paced(channel, to, || channel.deliver(to, &message))
                    .await
            }
        }
    }

    /// Sends a message from the host itself (approval requests, notices).
    pub async fn host_message(
        &self,
        channel: &Arc<dyn Channel>,
        message: &HostMessage,
    ) -> Result<String, ChannelError> {
        let capabilities = channel.capabilities();
        let id = MessageId::generate();
        let mut first = None;
        let pieces = split::render_pieces(
            &message.text,
            capabilities.markup,
            capabilities.max_text_chars,
        );
        let last = pieces.len().saturating_sub(1);
        for (index, text) in pieces.into_iter().enumerate() {
            // The shortcuts go with the last piece; where there are no buttons, the text
            // already says what to type.
            let buttons = if index == last && capabilities.buttons {
                message.buttons.clone()
            } else {
                Vec::new()
            };
            let outgoing = OutgoingMessage {
                id: id.clone(),
                seq: Seq(-1),
                piece: u32::try_from(index).unwrap_or(u32::MAX),
                text,
                buttons,
                ..OutgoingMessage::default()
            };
            let platform_id = self
                .paced(channel, &message.to, || {
                    channel.deliver(&message.to, &outgoing)
                })
                .await?;
            first.get_or_insert(platform_id);
        }
        Ok(first.unwrap_or_default())
    }

    /// One platform call within the platform's and the chat's rate; a rate-limited answer
    /// holds back its scope for the time the platform asked and the call is tried again.
    async fn paced<'c, T, F>(
        &self,
        channel: &Arc<dyn Channel>,
        to: &ChatAddress,
        call: F,
    ) -> Result<T, ChannelError>
    where
        F: Fn() -> crate::edge::BoxFuture<'c, Result<T, ChannelError>>,
    {
        let limits = channel.capabilities().rate;
        let mut limited = 0;
        loop {
            self.limiter.acquire(to, &limits).await;
            match call().await {
                Err(ChannelError::RateLimited { retry_after })
                    if limited < MAX_RATE_LIMITED && retry_after <= MAX_INLINE_RETRY_AFTER =>
                {
                    limited += 1;
                    self.limiter
                        .retry_after(to, Scope::of(&limits), retry_after);
                }
                other => return other,
            }
        }
    }
}

/// Cuts text to `max_chars` characters (an edit is one message: it cannot be split).
fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((at, _)) => text[..at].to_owned(),
        None => text.to_owned(),
    }
}
