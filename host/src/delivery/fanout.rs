//! Replies that fan out ([`super::route::Route::Fanout`]): the reply of a turn an inbound
//! webhook started goes to every channel destination of the hook's agent group.
//!
//! A fanned-out row is still one row for delivery's bookkeeping (one `sending` mark, one
//! final state), sent to each [`Recipient`] in turn by [`Fanouts::send`]. Each recipient gets
//! its own idempotency key (`<row id>.<destination name>`), so an outbound webhook sees a key
//! that is stable across retries, and a row split in pieces keeps its pieces apart per chat.
//! Which recipients took the row is remembered between attempts, so a retry after one
//! recipient failed goes only to those that have not taken it. The row is delivered once all
//! have; a recipient that refused it for good fails the row (the agent is told which); a
//! passing failure, or a recipient not there, retries or parks the row as for any chat. The
//! memory is the host's: after a crash the row is resent once to every recipient, flagged as
//! a resend, with the same keys.

use crate::bridge::{Bridge, RowSend};
use crate::edge::{Channel, ChannelError, ChatAddress};
use protocol::{MessageId, OutboundContent, Seq, SessionId};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

/// One chat a fanned-out row goes to.
pub struct Recipient {
    pub channel: Arc<dyn Channel>,
    pub address: ChatAddress,
    /// The destination's name, for the agent's notes and the idempotency key.
    pub name: String,
}

/// One attempt at a fanned-out row.
pub struct FanoutSend<'a> {
    pub session: &'a SessionId,
    pub id: &'a MessageId,
    pub seq: Seq,
    pub content: &'a OutboundContent,
    pub files: &'a [PathBuf],
    pub resend: bool,
    pub recipients: &'a [Recipient],
    /// Whether this is the row's last attempt (then nothing is kept for a retry).
    pub last_attempt: bool,
}

/// What one row's recipients did so far.
#[derive(Default)]
struct Progress {
    /// Destination names that took the row.
    done: HashSet<String>,
    /// Destination names that refused it for good, with why.
    refused: Vec<(String, String)>,
    /// The platform id of the first recipient that took it: the row's.
    first_id: Option<String>,
}

/// What the fanned-out rows in flight have done so far, across attempts.
#[derive(Default)]
pub struct Fanouts {
    progress: Mutex<HashMap<MessageId, Progress>>,
}

/// What a fanned-out attempt came to.
pub struct FanoutResult {
    pub result: Result<String, ChannelError>,
    /// When the result is [`ChannelError::NoRecipient`]: the chat nobody was there to read.
    pub waiting_for: Option<ChatAddress>,
}

impl Fanouts {
    /// Sends the row to the recipients that have not taken it yet.
    pub async fn send(&self, bridge: &Bridge, send: FanoutSend<'_>) -> FanoutResult {
        let Progress {
            mut done,
            mut refused,
            mut first_id,
        } = self.lock().remove(send.id).unwrap_or_default();
        let mut passing: Option<(ChannelError, ChatAddress)> = None;
        for recipient in send.recipients {
            let already = done.contains(&recipient.name)
                || refused.iter().any(|(name, _)| name == &recipient.name);
            if already {
                continue;
            }
            let key = MessageId::new(format!("{}.{}", send.id, recipient.name));
            let result = bridge
                .send(
                    &recipient.channel,
                    RowSend {
                        session: send.session,
                        address: &recipient.address,
                        id: &key,
                        seq: send.seq,
                        content: send.content,
                        files: send.files,
                        target: None,
                        // Drafts are shown in the origin chat, which nobody reads here.
                        in_reply_to: None,
                        resend: send.resend,
                    },
                )
                .await;
            match result {
                Ok(platform_id) => {
                    first_id.get_or_insert(platform_id);
                    done.insert(recipient.name.clone());
                }
                Err(e) if e.is_retryable() => {
                    tracing::debug!(destination = %recipient.name, error = %e, "a fanned-out reply will be retried");
                    if passing.is_none() {
                        passing = Some((e, recipient.address.clone()));
                    }
                }
                Err(e) => refused.push((recipient.name.clone(), e.to_string())),
            }
        }
        let outcome = match passing {
            Some((error, address)) => {
                let waiting_for = matches!(error, ChannelError::NoRecipient(_)).then_some(address);
                FanoutResult {
                    result: Err(error),
                    waiting_for,
                }
            }
            None if !refused.is_empty() => {
                let reasons: Vec<String> = refused
                    .iter()
                    .map(|(name, why)| format!("{name}: {why}"))
                    .collect();
                FanoutResult {
                    result: Err(ChannelError::Rejected(format!(
                        "{} of {} destination(s) refused it ({}); the others took it",
                        refused.len(),
                        send.recipients.len(),
                        reasons.join("; ")
                    ))),
                    waiting_for: None,
                }
            }
            None => FanoutResult {
                result: Ok(first_id.clone().unwrap_or_default()),
                waiting_for: None,
            },
        };
        // A recipient not there is no attempt: the row waits for it however long it takes.
        let keep = match &outcome.result {
            Err(ChannelError::NoRecipient(_)) => true,
            Err(e) => e.is_retryable() && !send.last_attempt,
            Ok(_) => false,
        };
        let mut progress = self.lock();
        if keep {
            progress.insert(
                send.id.clone(),
                Progress {
                    done,
                    refused,
                    first_id,
                },
            );
        } else {
            progress.remove(send.id);
        }
        outcome
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<MessageId, Progress>> {
        self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::channels::Channels;
    use crate::edge::{BoxFuture, Capabilities, Markup, OutgoingMessage};
    use protocol::MessageContent;

    /// A channel that answers each delivery with the next result of its script (`Ok` once
    /// it is used up) and records the keys it was sent.
    struct Scripted {
        channel_type: &'static str,
        script: Mutex<Vec<Result<String, ChannelError>>>,
        keys: Mutex<Vec<String>>,
    }

    impl Scripted {
        fn new(
            channel_type: &'static str,
            mut script: Vec<Result<String, ChannelError>>,
        ) -> Arc<Self> {
            script.reverse();
            Arc::new(Self {
                channel_type,
                script: Mutex::new(script),
                keys: Mutex::new(Vec::new()),
            })
        }

        fn keys(&self) -> Vec<String> {
            self.keys.lock().unwrap().clone()
        }
    }

    impl Channel for Scripted {
        fn channel_type(&self) -> &str {
            self.channel_type
        }

        fn capabilities(&self) -> Capabilities {
            Capabilities::text_only(1000, Markup::Markdown)
        }

        fn deliver<'a>(
            &'a self,
            _to: &'a ChatAddress,
            message: &'a OutgoingMessage,
        ) -> BoxFuture<'a, Result<String, ChannelError>> {
            self.keys.lock().unwrap().push(message.id.to_string());
            let next = self.script.lock().unwrap().pop();
            let key = message.id.to_string();
            Box::pin(async move { next.unwrap_or(Ok(format!("p-{key}"))) })
        }
    }

    fn recipient(channel: &Arc<Scripted>, name: &str) -> Recipient {
        Recipient {
            channel: Arc::clone(channel) as Arc<dyn Channel>,
            address: ChatAddress {
                channel_type: channel.channel_type.to_owned(),
                platform_id: name.to_owned(),
                thread_id: None,
            },
            name: name.to_owned(),
        }
    }

    async fn attempt(fanouts: &Fanouts, bridge: &Bridge, recipients: &[Recipient]) -> FanoutResult {
        let content = OutboundContent::Message(MessageContent {
            text: "deployed".into(),
            files: Vec::new(),
        });
        fanouts
            .send(
                bridge,
                FanoutSend {
                    session: &SessionId::new("s-1"),
                    id: &MessageId::new("out-1"),
                    seq: Seq(1),
                    content: &content,
                    files: &[],
                    resend: false,
                    recipients,
                    last_attempt: false,
                },
            )
            .await
    }

    #[tokio::test]
    async fn a_retry_goes_only_to_the_recipients_that_did_not_take_the_row() {
        let bridge = Bridge::new(Arc::new(Channels::default()));
        let fanouts = Fanouts::default();
        let chat = Scripted::new("cli", vec![]);
        let hook = Scripted::new(
            "webhook",
            vec![Err(ChannelError::Unavailable("500".into()))],
        );
        let recipients = [recipient(&chat, "terminal"), recipient(&hook, "pager")];

        let first = attempt(&fanouts, &bridge, &recipients).await;
        assert_eq!(first.result, Err(ChannelError::Unavailable("500".into())));
        assert_eq!(first.waiting_for, None);
        let second = attempt(&fanouts, &bridge, &recipients).await;
        assert_eq!(second.result, Ok("p-out-1.terminal".into()));
        assert_eq!(chat.keys(), ["out-1.terminal"], "the terminal got it once");
        assert_eq!(
            hook.keys(),
            ["out-1.pager", "out-1.pager"],
            "one key per recipient"
        );
        assert!(fanouts.lock().is_empty(), "nothing kept once delivered");
    }

    #[tokio::test]
    async fn refusals_fail_the_row_and_absent_readers_park_it() {
        let bridge = Bridge::new(Arc::new(Channels::default()));
        let fanouts = Fanouts::default();
        let chat = Scripted::new("cli", vec![Err(ChannelError::NoRecipient("away".into()))]);
        let hook = Scripted::new("webhook", vec![Err(ChannelError::Rejected("404".into()))]);
        let recipients = [recipient(&chat, "terminal"), recipient(&hook, "pager")];

        let first = attempt(&fanouts, &bridge, &recipients).await;
        assert_eq!(first.result, Err(ChannelError::NoRecipient("away".into())));
        assert_eq!(first.waiting_for, Some(recipients[0].address.clone()));
        // The terminal is back; the refusal of the other is final and reported.
        let second = attempt(&fanouts, &bridge, &recipients).await;
        let Err(ChannelError::Rejected(why)) = second.result else {
            panic!("expected a refusal: {:?}", second.result);
        };
        assert!(why.contains("pager") && why.contains("404"), "{why}");
        assert_eq!(hook.keys().len(), 1, "a refusal is not retried");
        assert_eq!(chat.keys().len(), 2);
        assert!(fanouts.lock().is_empty());
    }
}
