//! What arrives from Slack, from the HTTP endpoints ([`super::hooks`]) and Socket Mode
//! ([`super::socket`]) alike: an `event_callback`'s event ([`SlackChannel::take_event`]) and
//! a button press of a `block_actions` payload ([`SlackChannel::take_press`]). Both return
//! `Ok` only once what they carry is durable (or deliberately ignored): only then is Slack
//! answered 200 or the envelope acked; an `Err` makes Slack send it again.
//!
//! Slack re-sends an event it thinks was lost (`X-Slack-Retry-Num`, the same `event_id`):
//! the id is recorded (`channel_state::first_event`) before the push, and forgotten if the
//! push failed, so a retry is stored once and a failure is retried.

use super::blocks::{Press, chosen_blocks};
use super::events::{SlackMessage, map_event};
use super::{CHANNEL_TYPE, SlackChannel};
use crate::db::central::channel_state;
use crate::edge::{AnswerError, InboundEvent, QuestionAnswer, RouteError};
use protocol::Sender;
use serde_json::Value;
use std::sync::Arc;

/// Why an event or press was not taken; Slack is told to try again.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The adapter has not started (no router yet, `auth.test` pending). Retryable.
    #[error("the slack adapter is not ready yet")]
    NotReady,
    /// The central DB failed recording the event id. Retryable.
    #[error("recording the slack event failed: {0}")]
    Db(#[from] crate::db::DbError),
    /// The router could not store the message. Retryable when it says so.
    #[error("routing the slack message failed: {0}")]
    Route(#[from] RouteError),
    /// The same event is being taken right now (Slack retried before the first delivery was
    /// answered): Slack is asked to send it again later, when the first has an outcome.
    /// Retryable.
    #[error("the slack event {0} is being taken already")]
    InFlight(String),
    /// The answer could not be stored. Retryable.
    #[error("storing the answer failed: {0}")]
    Answer(AnswerError),
}

impl SlackChannel {
    /// Takes one Events API event; `Ok` once it is stored, a repeat, or ignored.
    pub(super) async fn take_event(
        &self,
        event_id: &str,
        event: &Value,
    ) -> Result<(), IntakeError> {
        let context = self.context().ok_or(IntakeError::NotReady)?;
        let bot_user_id = self.bot_user_id().ok_or(IntakeError::NotReady)?;
        let message = match map_event(event, &bot_user_id) {
            Ok(message) => message,
            Err(ignored) => {
                tracing::debug!(event_id, reason = ignored.reason(), "slack event ignored");
                return Ok(());
            }
        };
        let _taking = InFlight::enter(self, event_id)?;
        let id = event_id.to_owned();
        let first = self
            .parts
            .central
            .call(move |conn| channel_state::first_event(conn, CHANNEL_TYPE, &id))
            .await?;
        if !first {
            tracing::debug!(event_id, "a slack event sent again; stored once already");
            return Ok(());
        }
        let inbound = self.inbound(message).await;
        let uploads = inbound.uploads.clone();
        let pushed = context.push(inbound).await;
        if let Some(files) = self.files() {
            files.discard(&uploads).await;
        }
        match pushed {
            Ok(_) => Ok(()),
            Err(e) => {
                let id = event_id.to_owned();
                if let Err(forget) = self
                    .parts
                    .central
                    .call(move |conn| channel_state::forget_event(conn, CHANNEL_TYPE, &id))
                    .await
                {
                    tracing::warn!(event_id, error = %forget, "forgetting a failed slack event failed; Slack's retry will be taken as a repeat");
                }
                Err(IntakeError::Route(e))
            }
        }
    }

    /// The message as the router takes it, with its files downloaded and staged.
    async fn inbound(&self, message: SlackMessage) -> InboundEvent {
        let name = self.user_name(&message.user).await;
        let mut uploads = Vec::new();
        if let Some(files) = self.files() {
            for file in &message.files {
                match files.download(file).await {
                    Ok(upload) => uploads.push(upload),
                    Err(e) => {
                        tracing::warn!(file = %file.id, error = %e, "a file sent on slack could not be taken");
                    }
                }
            }
        }
        InboundEvent {
            channel_type: CHANNEL_TYPE.to_owned(),
            platform_id: message.channel,
            thread_id: message.thread_ts,
            platform_message_id: message.ts,
            sender: Sender {
                id: format!("{CHANNEL_TYPE}:{}", message.user),
                name,
            },
            text: message.text,
            attachments: Vec::new(),
            is_mention: message.is_mention,
            is_group: message.is_group,
            chat_name: None,
            uploads,
        }
    }

    /// Takes a `block_actions` payload: the first pressed button of crabpot's.
    pub(super) async fn take_press(self: &Arc<Self>, payload: &Value) -> Result<(), IntakeError> {
        let context = self.context().ok_or(IntakeError::NotReady)?;
        let text = |value: &Value, path: &[&str]| -> Option<String> {
            path.iter()
                .try_fold(value, |value, key| value.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        if text(payload, &["type"]).as_deref() != Some("block_actions") {
            return Ok(());
        }
        let (Some(user), Some(channel)) = (
            text(payload, &["user", "id"]),
            text(payload, &["channel", "id"])
                .or_else(|| text(payload, &["container", "channel_id"])),
        ) else {
            tracing::debug!("a slack button press without user or channel; ignored");
            return Ok(());
        };
        let Some(action) = payload
            .get("actions")
            .and_then(Value::as_array)
            .and_then(|actions| actions.first())
        else {
            return Ok(());
        };
        let Some(press) = text(action, &["value"]).as_deref().and_then(Press::parse) else {
            tracing::debug!("a slack button press that is not crabpot's; ignored");
            return Ok(());
        };
        let label = text(action, &["text", "text"]).unwrap_or_default();
        let message_ts = text(payload, &["container", "message_ts"])
            .or_else(|| text(payload, &["message", "ts"]))
            .unwrap_or_default();
        let thread_ts = text(payload, &["container", "thread_ts"])
            .or_else(|| text(payload, &["message", "thread_ts"]))
            .filter(|thread| *thread != message_ts);
        let action_ts = text(action, &["action_ts"]).unwrap_or_default();
        let sender = Sender {
            id: format!("{CHANNEL_TYPE}:{user}"),
            name: self.user_name(&user).await,
        };
        match press {
            Press::Answer {
                question_id,
                answer,
            } => {
                let answered = context
                    .answer(QuestionAnswer {
                        channel_type: CHANNEL_TYPE.to_owned(),
                        platform_id: channel.clone(),
                        thread_id: thread_ts,
                        question_id: Some(question_id),
                        answer,
                        sender,
                        platform_message_id: format!("{message_ts}/{action_ts}"),
                    })
                    .await;
                match answered {
                    Ok(_) => {}
                    Err(AnswerError::Db(e)) => return Err(IntakeError::Answer(AnswerError::Db(e))),
                    Err(e) => {
                        tracing::info!(error = %e, "a slack button answered no open question");
                        return Ok(());
                    }
                }
            }
            Press::Say { text } => {
                context
                    .push(InboundEvent {
                        channel_type: CHANNEL_TYPE.to_owned(),
                        platform_id: channel.clone(),
                        thread_id: thread_ts,
                        platform_message_id: format!("{message_ts}/{action_ts}"),
                        sender,
                        text,
                        attachments: Vec::new(),
                        is_mention: true,
                        is_group: !channel.starts_with('D'),
                        chat_name: None,
                        uploads: Vec::new(),
                    })
                    .await?;
            }
        }
        // The choice replaces the buttons; a failure here loses nothing that matters.
        let original = text(payload, &["message", "text"]).unwrap_or_default();
        let channel_for_update = Arc::clone(self);
        tokio::spawn(async move {
            channel_for_update
                .show_choice(&channel, &message_ts, &original, &label, &user)
                .await;
        });
        Ok(())
    }

    async fn show_choice(&self, channel: &str, ts: &str, text: &str, label: &str, user: &str) {
        if ts.is_empty() {
            return;
        }
        let blocks = chosen_blocks(text, label, user);
        let updated = match self.replies() {
            Ok(replies) => replies.update(channel, ts, text, &blocks).await,
            Err(e) => Err(e),
        };
        if let Err(e) = updated {
            tracing::debug!(error = %e, "showing a slack button's choice failed");
        }
    }
}

/// An event id being taken; leaving (drop) frees it for Slack's next retry.
struct InFlight<'a> {
    channel: &'a SlackChannel,
    event_id: String,
}

impl<'a> InFlight<'a> {
    fn enter(channel: &'a SlackChannel, event_id: &str) -> Result<Self, IntakeError> {
        if !channel.in_flight().insert(event_id.to_owned()) {
            return Err(IntakeError::InFlight(event_id.to_owned()));
        }
        Ok(Self {
            channel,
            event_id: event_id.to_owned(),
        })
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.channel.in_flight().remove(&self.event_id);
    }
}
