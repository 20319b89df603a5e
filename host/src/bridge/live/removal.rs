//! Taking drafts off a chat: a stream's own when its turn ends without a reply or a newer
//! turn begins, and the drafts an earlier run of the host left (`bridge::remembered`).

use super::{PLACEHOLDER, Shown, Stream, Streams};
use crate::bridge::remembered::ShownDraft;
use crate::edge::{Draft, OutgoingMessage};
use protocol::{MessageId, Seq};

impl Streams {
    /// Takes a draft an earlier run of the host showed off the chat.
    pub(super) async fn remove_found(&self, found: ShownDraft) {
        self.remembered.gone(&found.session, &found.key).await;
        let Some(channel) = self.channels.get(&found.address.channel_type) else {
            return;
        };
        let mut shown = Shown {
            platform_id: Some(found.platform_id),
            target: Some((found.address, channel)),
            ..Shown::default()
        };
        self.remove_shown(&found.key, &mut shown).await;
    }

    /// Stops a stream and takes what it showed off the chat.
    pub(super) async fn remove_draft(&self, stream: &Stream) {
        stream.stop();
        let mut shown = stream.io.lock().await;
        clear_typing(&mut shown).await;
        if shown.platform_id.is_some() {
            self.remembered.gone(&stream.session, &stream.key).await;
        }
        self.remove_shown(&stream.key, &mut shown).await;
    }

    /// Takes what a draft shows off its chat: deletes its message (or empties it where the
    /// platform cannot delete), or clears a native draft.
    async fn remove_shown(&self, key: &str, shown: &mut Shown) {
        let Some((address, channel)) = shown.target.clone() else {
            return;
        };
        let capabilities = channel.capabilities();
        let removed = if let Some(platform_id) = shown.platform_id.take() {
            self.limiter.acquire(&address, &capabilities.rate).await;
            if capabilities.deletes {
                channel.delete(&address, &platform_id).await
            } else {
                let message = OutgoingMessage {
                    id: MessageId::new(format!("draft-{key}")),
                    seq: Seq(-1),
                    text: PLACEHOLDER.to_owned(),
                    ..OutgoingMessage::default()
                };
                channel.edit(&address, &platform_id, &message).await
            }
        } else if shown.visible && capabilities.live_drafts {
            let draft = Draft {
                key: key.to_owned(),
                text: String::new(),
                appended: None,
            };
            channel.draft(&address, &draft).await
        } else {
            Ok(())
        };
        if let Err(e) = removed {
            tracing::debug!(error = %e, "removing a draft failed");
        }
    }
}

pub(super) async fn clear_typing(shown: &mut Shown) {
    if shown.typing {
        shown.typing = false;
        if let Some((address, channel)) = &shown.target {
            let _ = channel.set_typing(address, false).await;
        }
    }
}
