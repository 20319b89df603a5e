//! The terminal as a [`Channel`]: replies, drafts and the typing indicator as lines for the
//! chat's subscribed terminals. A terminal cannot edit what it printed or react, so the
//! bridge sends those as new lines; it shows a reply as it is written (`live_drafts`), and
//! buttons as numbered options.

use super::{CHANNEL_TYPE, CliChannel, Outgoing, ServerLine};
use crate::edge::{
    BoxFuture, Capabilities, Channel, ChannelContext, ChannelError, ChatAddress, Draft, Health,
    HealthState, Markup, OutgoingMessage,
};
use protocol::MessageId;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The longest reply text of one line.
const MAX_TEXT_CHARS: usize = 64 * 1024;

impl Channel for CliChannel {
    fn channel_type(&self) -> &str {
        CHANNEL_TYPE
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            files: true,
            max_file_bytes: u64::MAX,
            buttons: true,
            live_drafts: true,
            // A terminal shows "typing" until the reply; it needs no renewing, but the
            // bridge renews at this pace all the same.
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
            let listener = self.take_listener().ok_or(ChannelError::Unavailable(
                "the cli channel has no socket to serve (or started twice)".into(),
            ))?;
            self.serving.store(true, Ordering::SeqCst);
            let tasks = TaskTracker::new();
            Arc::clone(&self)
                .serve(listener, context, tasks.clone(), shutdown)
                .await;
            tasks.close();
            tasks.wait().await;
            self.serving.store(false, Ordering::SeqCst);
            Ok(())
        })
    }

    fn health(&self) -> Health {
        if self.serving.load(Ordering::SeqCst) {
            Health::connected()
        } else {
            Health {
                state: HealthState::Stopped,
                last_error: None,
            }
        }
    }

    fn deliver<'a>(
        &'a self,
        to: &'a ChatAddress,
        message: &'a OutgoingMessage,
    ) -> BoxFuture<'a, Result<String, ChannelError>> {
        Box::pin(async move {
            let mut text = message.text.clone();
            // A host message's buttons are shortcuts for what its text says to type: a
            // terminal shows the text alone.
            let buttons: &[crate::edge::Button] = if message.question_id.is_some() {
                &message.buttons
            } else {
                &[]
            };
            if !buttons.is_empty() {
                for button in buttons {
                    text.push_str(&format!("\n  {}. {}", button.answer, button.label));
                }
                text.push_str("\n(answer with a number or your own words)");
            }
            if let Some(question_id) = &message.question_id {
                // A script answers by naming it; a person sees which question is open.
                text.push_str(&format!(" [{question_id}]"));
            }
            let line = ServerLine::Reply {
                id: message.id.to_string(),
                seq: message.seq.0,
                text,
                files: message
                    .files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect(),
                platform_id: to.platform_id.clone(),
                thread_id: to.thread_id.clone(),
                question_id: message.question_id.clone(),
                options: buttons.iter().map(|b| b.label.clone()).collect(),
                replaces_draft: message.replaces_draft.clone(),
            };
            self.send_reply(to, line).await?;
            Ok(format!(
                "cli-{}",
                self.next_id.fetch_add(1, Ordering::Relaxed)
            ))
        })
    }

    fn draft<'a>(
        &'a self,
        to: &'a ChatAddress,
        draft: &'a Draft,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            let line = ServerLine::Draft {
                key: draft.key.clone(),
                text: draft.text.clone(),
                appended: draft.appended.clone(),
                platform_id: to.platform_id.clone(),
                thread_id: to.thread_id.clone(),
            };
            // A draft is not worth waiting for: queued for whoever listens, or dropped.
            for recipient in self.subscribers.recipients(to) {
                self.queue(&recipient, Outgoing::line(line.clone()));
            }
            Ok(())
        })
    }

    fn set_typing<'a>(
        &'a self,
        to: &'a ChatAddress,
        on: bool,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            let line = ServerLine::Typing {
                on,
                platform_id: to.platform_id.clone(),
            };
            for recipient in self.subscribers.recipients(to) {
                self.queue(&recipient, Outgoing::line(line.clone()));
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
            let line = ServerLine::TurnComplete {
                message_id: message_id.to_string(),
                platform_id: to.platform_id.clone(),
            };
            for recipient in self.subscribers.recipients(to) {
                self.queue(&recipient, Outgoing::line(line.clone()));
            }
        })
    }
}
