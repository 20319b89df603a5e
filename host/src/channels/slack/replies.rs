//! [`Replies`]: what the adapter sends to Slack — `chat.postMessage` (in the thread, with
//! Block Kit buttons), `chat.update` (streamed replies, edits, a pressed button's choice),
//! `chat.delete`, `reactions.add`, `conversations.open`, and files through [`SlackFiles`].
//!
//! When Slack rate-limits a chat (429 + `Retry-After`), no call goes to that chat before the
//! wait is over: the call answers [`ChannelError::RateLimited`] with the time left at once.
//! The bridge retries its sends after that wait; drafts of a streamed reply, which it does
//! not retry, are skipped instead of hammering Slack.

use super::api::{ApiError, Args, SlackApi, str_field};
use super::blocks;
use super::emoji;
use super::files::{Share, SlackFiles};
use super::{CHANNEL_TYPE, FILE_ID_PREFIX};
use crate::edge::{ChannelError, ChatAddress, OutgoingMessage};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// Rate-limited chats remembered; past this the map starts over.
const MAX_LIMITED_CHATS: usize = 10_000;

/// The `metadata.event_type` of crabpot's messages; the payload names the outbound row.
const METADATA_EVENT_TYPE: &str = "crabpot_message";
/// How many recent messages are searched for one sent before a crash.
const RESEND_LOOKBACK: &str = "50";

/// What makes a message the same message: its outbound row and piece.
pub(super) struct Key<'a> {
    id: &'a str,
    piece: u32,
}

/// What goes out to Slack (see the module docs).
pub struct Replies {
    pub(super) api: SlackApi,
    pub(super) files: SlackFiles,
    /// Chats Slack rate-limited, until when.
    limited_until: Mutex<HashMap<String, Instant>>,
}

impl Replies {
    /// Replies through `api` and `files`.
    pub fn new(api: SlackApi, files: SlackFiles) -> Self {
        Self {
            api,
            files,
            limited_until: Mutex::new(HashMap::new()),
        }
    }

    fn limited_until(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.limited_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// `chat.update` of message `ts` with `text` and `blocks` (`[]` clears buttons).
    pub(super) async fn update(
        &self,
        channel: &str,
        ts: &str,
        text: &str,
        blocks: &Value,
    ) -> Result<(), ChannelError> {
        let body = json!({"channel": channel, "ts": ts, "text": text, "blocks": blocks});
        self.paced(channel, "chat.update", &body).await?;
        Ok(())
    }

    /// A chat call to `channel`, unless Slack asked to wait: then the time left, as Slack's
    /// own answer would say it.
    pub(super) async fn paced(
        &self,
        channel: &str,
        method: &str,
        body: &Value,
    ) -> Result<Value, ChannelError> {
        let now = Instant::now();
        {
            let mut limited_until = self.limited_until();
            match limited_until.get(channel) {
                Some(until) if *until > now => {
                    return Err(ChannelError::RateLimited {
                        retry_after: *until - now,
                    });
                }
                Some(_) => {
                    limited_until.remove(channel);
                }
                None => {}
            }
        }
        match self.api.call(method, Args::Json(body)).await {
            Ok(answer) => Ok(answer),
            Err(ApiError::RateLimited { retry_after, .. }) => {
                let mut limited_until = self.limited_until();
                if limited_until.len() >= MAX_LIMITED_CHATS {
                    limited_until.clear();
                }
                limited_until.insert(channel.to_owned(), Instant::now() + retry_after);
                Err(ChannelError::RateLimited { retry_after })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// `chat.postMessage`; returns the message's `ts`.
    pub(super) async fn post(
        &self,
        to: &ChatAddress,
        text: &str,
        blocks: Option<Value>,
        key: Option<&Key<'_>>,
    ) -> Result<String, ChannelError> {
        let mut body = json!({"channel": to.platform_id, "text": text, "unfurl_links": false});
        if let Some(thread_ts) = &to.thread_id {
            body["thread_ts"] = Value::from(thread_ts.as_str());
        }
        if let Some(blocks) = blocks {
            body["blocks"] = blocks;
        }
        if let Some(key) = key {
            body["metadata"] = json!({
                "event_type": METADATA_EVENT_TYPE,
                "event_payload": {"id": key.id, "piece": key.piece},
            });
        }
        let answer = self
            .paced(&to.platform_id, "chat.postMessage", &body)
            .await?;
        str_field(&answer, "ts").map(str::to_owned).ok_or_else(|| {
            ChannelError::Unavailable("chat.postMessage answered without a ts".into())
        })
    }

    /// The `ts` of a message with `key` among the chat's (or thread's) recent messages:
    /// one posted before a crash. `None` when there is none or Slack cannot say (then it is
    /// posted again: at least once beats never).
    async fn find_posted(&self, to: &ChatAddress, key: &Key<'_>) -> Option<String> {
        let mut fields = vec![
            ("channel", to.platform_id.clone()),
            ("limit", RESEND_LOOKBACK.to_owned()),
            ("include_all_metadata", "true".to_owned()),
        ];
        let method = match &to.thread_id {
            Some(thread_ts) => {
                fields.push(("ts", thread_ts.clone()));
                "conversations.replies"
            }
            None => "conversations.history",
        };
        let answer = match self.api.call(method, Args::Form(&fields)).await {
            Ok(answer) => answer,
            Err(e) => {
                tracing::warn!(error = %e, "looking for a message sent before a crash failed; sending it again");
                return None;
            }
        };
        answer
            .get("messages")
            .and_then(Value::as_array)?
            .iter()
            .find(|message| {
                let metadata = message.get("metadata").unwrap_or(&Value::Null);
                let payload = metadata.get("event_payload").unwrap_or(&Value::Null);
                str_field(metadata, "event_type") == Some(METADATA_EVENT_TYPE)
                    && str_field(payload, "id") == Some(key.id)
                    && payload.get("piece").and_then(Value::as_u64) == Some(u64::from(key.piece))
            })
            .and_then(|message| str_field(message, "ts"))
            .map(str::to_owned)
    }

    pub(super) async fn send(
        &self,
        to: &ChatAddress,
        message: &OutgoingMessage,
    ) -> Result<String, ChannelError> {
        let blocks = blocks::message_blocks(
            &message.text,
            &message.buttons,
            message.question_id.as_deref(),
        );
        let key = (!message.id.as_str().is_empty()).then(|| Key {
            id: message.id.as_str(),
            piece: message.piece,
        });
        if message.resend
            && let Some(key) = &key
            && let Some(ts) = self.find_posted(to, key).await
        {
            tracing::info!(
                ts,
                "slack already has this message from before a crash; not posted again"
            );
            return Ok(ts);
        }
        if message.files.is_empty() {
            return self.post(to, &message.text, blocks, key.as_ref()).await;
        }
        let files = &self.files;
        // With buttons, the text goes as a message of its own, and the files after it.
        let (first, comment) = match blocks {
            Some(blocks) => (
                Some(
                    self.post(to, &message.text, Some(blocks), key.as_ref())
                        .await?,
                ),
                "",
            ),
            None => (None, message.text.as_str()),
        };
        let file_id = files
            .send(
                &message.files,
                Share {
                    channel: &to.platform_id,
                    thread_ts: to.thread_id.as_deref(),
                    comment,
                },
            )
            .await?;
        Ok(first.unwrap_or_else(|| format!("{FILE_ID_PREFIX}{file_id}")))
    }

    pub(super) async fn change(
        &self,
        to: &ChatAddress,
        platform_message_id: &str,
        message: &OutgoingMessage,
    ) -> Result<(), ChannelError> {
        if platform_message_id.starts_with(FILE_ID_PREFIX) {
            return Err(ChannelError::Unsupported("edit a shared file"));
        }
        let blocks = blocks::message_blocks(
            &message.text,
            &message.buttons,
            message.question_id.as_deref(),
        )
        .unwrap_or_else(|| json!([]));
        self.update(&to.platform_id, platform_message_id, &message.text, &blocks)
            .await?;
        if !message.files.is_empty() {
            self.files
                .send(
                    &message.files,
                    Share {
                        channel: &to.platform_id,
                        thread_ts: to.thread_id.as_deref(),
                        comment: "",
                    },
                )
                .await?;
        }
        Ok(())
    }

    pub(super) async fn add_reaction(
        &self,
        to: &ChatAddress,
        platform_message_id: &str,
        emoji: &str,
    ) -> Result<(), ChannelError> {
        let name = emoji::slack_name(emoji);
        let (Some(name), false) = (name, platform_message_id.starts_with(FILE_ID_PREFIX)) else {
            // No Slack name (or nothing to react on): the emoji as a short message.
            self.post(to, emoji, None, None).await?;
            return Ok(());
        };
        let body =
            json!({"channel": to.platform_id, "timestamp": platform_message_id, "name": name});
        match self.api.call("reactions.add", Args::Json(&body)).await {
            Ok(_) => Ok(()),
            Err(ApiError::Refused { code, .. }) if code == "already_reacted" => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn remove(
        &self,
        to: &ChatAddress,
        platform_message_id: &str,
    ) -> Result<(), ChannelError> {
        if let Some(file_id) = platform_message_id.strip_prefix(FILE_ID_PREFIX) {
            let body = json!({"file": file_id});
            return match self.api.call("files.delete", Args::Json(&body)).await {
                Ok(_) => Ok(()),
                Err(ApiError::Refused { code, .. })
                    if code == "file_not_found" || code == "file_deleted" =>
                {
                    Ok(())
                }
                Err(e) => Err(e.into()),
            };
        }
        let body = json!({"channel": to.platform_id, "ts": platform_message_id});
        match self.api.call("chat.delete", Args::Json(&body)).await {
            Ok(_) => Ok(()),
            Err(ApiError::Refused { code, .. }) if code == "message_not_found" => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn direct_chat(&self, user_id: &str) -> Result<ChatAddress, ChannelError> {
        let user = user_id
            .strip_prefix(&format!("{CHANNEL_TYPE}:"))
            .unwrap_or(user_id);
        let body = json!({"users": user});
        let answer = self
            .api
            .call("conversations.open", Args::Json(&body))
            .await?;
        let channel = answer
            .get("channel")
            .and_then(|channel| str_field(channel, "id"))
            .ok_or_else(|| {
                ChannelError::Unavailable("conversations.open answered without a channel".into())
            })?;
        Ok(ChatAddress {
            channel_type: CHANNEL_TYPE.to_owned(),
            platform_id: channel.to_owned(),
            thread_id: None,
        })
    }
}
