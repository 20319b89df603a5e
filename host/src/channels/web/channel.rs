//! The web as a [`Channel`]: what the agent sends becomes events of the conversation (see the
//! module above). The browser edits and deletes messages in place, shows drafts as they grow
//! and a question's options as buttons, and renders canonical Markdown itself.

use super::events::{EventBody, Message, Question, QuestionOption, Role};
use super::{CHANNEL_TYPE, WebChannel};
use crate::edge::{
    BoxFuture, Capabilities, Channel, ChannelContext, ChannelError, ChatAddress, Draft, Health,
    HealthState, Markup, OutgoingMessage,
};
use protocol::MessageId;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The longest text of one message.
const MAX_TEXT_CHARS: usize = 100_000;

/// The largest file the agent may send into a web chat.
const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;

impl WebChannel {
    /// The conversation id of `to`, or the error a delivery gets for a chat no conversation
    /// owns (made by hand as `web/...`: nobody can ever read it).
    async fn conversation_for(&self, to: &ChatAddress) -> Result<String, ChannelError> {
        match self.conversation_at(&to.platform_id).await {
            Ok(Some(id)) => Ok(id),
            Ok(None) => Err(ChannelError::Rejected(format!(
                "no web conversation is web/{}",
                to.platform_id
            ))),
            Err(error) if error.is_retryable() => Err(ChannelError::Unavailable(error.to_string())),
            Err(error) => Err(ChannelError::Rejected(error.to_string())),
        }
    }

    async fn record_for(
        &self,
        to: &ChatAddress,
        body: EventBody,
        message_key: Option<String>,
        files: Vec<String>,
    ) -> Result<(), ChannelError> {
        let conversation = self.conversation_for(to).await?;
        match self.record(&conversation, body, message_key, files).await {
            Ok(_) => Ok(()),
            Err(error) if error.is_retryable() => Err(ChannelError::Unavailable(format!(
                "storing the web message: {error}"
            ))),
            Err(error) => {
                // The conversation went (its chat was deleted): forget it.
                self.forget(&to.platform_id);
                Err(ChannelError::Rejected(format!(
                    "storing the web message: {error}"
                )))
            }
        }
    }
}

fn question_of(message: &OutgoingMessage) -> Option<Question> {
    message.question_id.as_ref().map(|question_id| Question {
        question_id: question_id.clone(),
        options: message
            .buttons
            .iter()
            .map(|button| QuestionOption {
                label: button.label.clone(),
                answer: button.answer.clone(),
            })
            .collect(),
    })
}

/// The platform id of a delivered message: its row and piece (so a resend finds it), or a
/// fresh one for a host message, which has no row.
fn platform_message_id(message: &OutgoingMessage) -> (String, bool) {
    if message.id.as_str().is_empty() {
        (format!("host-{}", uuid::Uuid::now_v7().simple()), false)
    } else {
        (format!("{}.{}", message.id, message.piece), true)
    }
}

impl Channel for WebChannel {
    fn channel_type(&self) -> &str {
        CHANNEL_TYPE
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            edits: true,
            min_edit_interval: Duration::from_millis(250),
            buttons: true,
            files: true,
            max_file_bytes: MAX_FILE_BYTES,
            live_drafts: true,
            deletes: true,
            typing_renew: Some(Duration::from_secs(60)),
            ..Capabilities::text_only(MAX_TEXT_CHARS, Markup::Markdown)
        }
    }

    fn start(
        self: Arc<Self>,
        context: ChannelContext,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<(), ChannelError>> {
        Box::pin(async move {
            if self.context.set(context).is_err() {
                return Err(ChannelError::Unavailable(
                    "the web channel was started twice".into(),
                ));
            }
            shutdown.cancelled().await;
            self.stopping.cancel();
            Ok(())
        })
    }

    fn health(&self) -> Health {
        if self.stopping.is_cancelled() || self.context.get().is_none() {
            Health {
                state: HealthState::Stopped,
                last_error: None,
            }
        } else {
            Health::connected()
        }
    }

    fn deliver<'a>(
        &'a self,
        to: &'a ChatAddress,
        message: &'a OutgoingMessage,
    ) -> BoxFuture<'a, Result<String, ChannelError>> {
        Box::pin(async move {
            let (message_id, keyed) = platform_message_id(message);
            let role = if message.id.as_str().is_empty() {
                Role::Host
            } else {
                Role::Agent
            };
            let body = EventBody::Message(Message {
                message_id: message_id.clone(),
                role,
                text: message.text.clone(),
                files: message
                    .files
                    .iter()
                    .filter_map(|path| path.file_name())
                    .map(|name| name.to_string_lossy().into_owned())
                    .collect(),
                question: question_of(message),
                replaces_draft: message.replaces_draft.clone(),
                routed_ids: Vec::new(),
                answers_question: None,
            });
            let key = keyed.then(|| message_id.clone());
            let paths = message
                .files
                .iter()
                .map(|path| path.display().to_string())
                .collect();
            self.record_for(to, body, key, paths).await?;
            Ok(message_id)
        })
    }

    fn edit<'a>(
        &'a self,
        to: &'a ChatAddress,
        platform_message_id: &'a str,
        message: &'a OutgoingMessage,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            let body = EventBody::Edit {
                message_id: platform_message_id.to_owned(),
                text: message.text.clone(),
                question: question_of(message),
            };
            self.record_for(to, body, None, Vec::new()).await
        })
    }

    fn delete<'a>(
        &'a self,
        to: &'a ChatAddress,
        platform_message_id: &'a str,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            let body = EventBody::Delete {
                message_id: platform_message_id.to_owned(),
            };
            self.record_for(to, body, None, Vec::new()).await
        })
    }

    fn set_typing<'a>(
        &'a self,
        to: &'a ChatAddress,
        on: bool,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            if let Ok(conversation) = self.conversation_for(to).await {
                self.publish_live(&conversation, EventBody::Typing { on });
            }
            Ok(())
        })
    }

    fn draft<'a>(
        &'a self,
        to: &'a ChatAddress,
        draft: &'a Draft,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            // A draft is not worth storing or waiting for: sent to whoever watches.
            if let Ok(conversation) = self.conversation_for(to).await {
                let body = EventBody::Draft {
                    key: draft.key.clone(),
                    text: draft.text.clone(),
                    appended: draft.appended.clone(),
                };
                self.publish_live(&conversation, body);
            }
            Ok(())
        })
    }

    fn turn_complete<'a>(
        &'a self,
        to: &'a ChatAddress,
        message_id: &'a MessageId,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let body = EventBody::TurnComplete {
                message_id: message_id.to_string(),
            };
            if let Err(error) = self.record_for(to, body, None, Vec::new()).await {
                tracing::warn!(chat = %to.platform_id, %error, "recording a web chat's completed turn failed");
            }
        })
    }
}
