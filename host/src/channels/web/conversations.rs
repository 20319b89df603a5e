//! The owner's side of a conversation: starting one (a browser conversation, or an API
//! conversation on first use), finding it (only the owner ever does), and what the owner
//! sends (a message, an answer to a question), pushed to the router and logged.

use super::{
    CHANNEL_TYPE, EventBody, MAX_TITLE_CHARS, Message, Role, WebChannel, WebChatError,
    check_api_name, check_text, user_handle,
};
use crate::db::DbError;
use crate::db::central::web_chats::{self, ConversationKind, NewConversation, WebConversation};
use crate::edge::{InboundEvent, QuestionAnswer};
use protocol::{AgentGroupId, Sender};
use rusqlite::Connection;

/// What became of a message the owner sent.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Posted {
    /// The rows that wake the agent: each turn's key (drafts, `turn_complete`).
    pub message_ids: Vec<String>,
    /// Rows stored as context only.
    pub context_ids: Vec<String>,
    /// Approvals holding the message.
    pub held: Vec<String>,
    /// The log event of the message.
    pub event_id: Option<i64>,
}

impl WebChannel {
    /// The agent groups `user_id` may talk to.
    pub async fn usable_groups(
        &self,
        user_id: &str,
    ) -> Result<Vec<web_chats::UsableGroup>, WebChatError> {
        let user_id = user_id.to_owned();
        Ok(self
            .central
            .call(move |conn| web_chats::usable_groups(conn, &user_id))
            .await?)
    }

    /// Whether `user_id` may talk to `group`; a group that does not exist is `NotFound`.
    async fn check_access(&self, user_id: &str, group: &AgentGroupId) -> Result<(), WebChatError> {
        let (user, target) = (user_id.to_owned(), group.clone());
        let allowed = self
            .central
            .call(move |conn| web_chats::may_use(conn, &user, &target))
            .await?;
        if allowed {
            Ok(())
        } else {
            Err(WebChatError::Forbidden(format!(
                "{user_id} is not a member of agent group {group}"
            )))
        }
    }

    /// A new browser conversation of `user_id` with `group`. Returns it and whether its chat
    /// was wired just now (always, for a new one).
    pub async fn create_conversation(
        &self,
        user_id: &str,
        group: &AgentGroupId,
        title: Option<&str>,
    ) -> Result<WebConversation, WebChatError> {
        self.check_access(user_id, group).await?;
        let title = match title.map(str::trim) {
            Some(title) if !title.is_empty() => {
                if title.chars().count() > MAX_TITLE_CHARS || title.chars().any(char::is_control) {
                    return Err(WebChatError::Invalid(format!(
                        "a title is at most {MAX_TITLE_CHARS} printable characters"
                    )));
                }
                title.to_owned()
            }
            _ => format!("{} with {group}", user_handle(user_id)),
        };
        let id = web_chats::new_conversation_id();
        let new = NewConversation {
            platform_id: format!("{}/{id}", user_handle(user_id)),
            id,
            user_id: user_id.to_owned(),
            agent_group: group.clone(),
            kind: ConversationKind::Browser,
            title,
        };
        self.ensure(new).await
    }

    /// The API conversation `name` of `user_id` with `group`, created on first use.
    pub async fn api_conversation(
        &self,
        user_id: &str,
        group: &AgentGroupId,
        name: &str,
    ) -> Result<WebConversation, WebChatError> {
        check_api_name(name)?;
        self.check_access(user_id, group).await?;
        let handle = user_handle(user_id);
        let new = NewConversation {
            id: web_chats::new_conversation_id(),
            user_id: user_id.to_owned(),
            platform_id: format!("api/{handle}/{name}"),
            agent_group: group.clone(),
            kind: ConversationKind::Api,
            title: format!("API {handle}/{name}"),
        };
        self.ensure(new).await
    }

    async fn ensure(&self, new: NewConversation) -> Result<WebConversation, WebChatError> {
        let conversation = self
            .central
            .call(move |conn| {
                let tx = conn.transaction()?;
                let (conversation, created) = web_chats::ensure_conversation(&tx, &new)?;
                if created {
                    // The conversation is its owner's alone: no other session of the group
                    // may send into it (replies go to the session's own chat).
                    let chat =
                        crate::db::central::messaging_group(&tx, &conversation.messaging_group_id)?;
                    remove_chat_destinations(&tx, &conversation.agent_group_id, &chat.id)?;
                }
                tx.commit()?;
                Ok(conversation)
            })
            .await?;
        Ok(conversation)
    }

    /// The conversation `id` if `user_id` owns it; anyone else gets `NotFound`, the same
    /// answer as for a conversation that does not exist.
    pub async fn owned_conversation(
        &self,
        user_id: &str,
        id: &str,
    ) -> Result<WebConversation, WebChatError> {
        let lookup = id.to_owned();
        let found = self
            .central
            .call(move |conn| web_chats::conversation(conn, &lookup))
            .await?;
        match found {
            Some(conversation) if conversation.user_id == user_id => Ok(conversation),
            Some(_) | None => Err(WebChatError::NotFound(format!("no conversation {id:?}"))),
        }
    }

    /// The conversations of `user_id`, the most recently active first.
    pub async fn conversations(&self, user_id: &str) -> Result<Vec<WebConversation>, WebChatError> {
        let user = user_id.to_owned();
        Ok(self
            .central
            .call(move |conn| web_chats::list_conversations(conn, &user))
            .await?)
    }

    fn sender(user_id: &str) -> Sender {
        Sender {
            id: user_id.to_owned(),
            name: Some(user_handle(user_id).to_owned()),
        }
    }

    /// Sends the owner's message to the conversation's agent, and logs it.
    pub async fn post(
        &self,
        conversation: &WebConversation,
        text: &str,
    ) -> Result<Posted, WebChatError> {
        self.post_with_files(conversation, text, &[]).await
    }

    /// [`WebChannel::post`] with files uploaded before ([`super::uploads`]): they go into the
    /// session's inbox as the message's attachments. A message of files alone says so.
    pub async fn post_with_files(
        &self,
        conversation: &WebConversation,
        text: &str,
        upload_ids: &[String],
    ) -> Result<Posted, WebChatError> {
        let uploads = self.uploads.resolve(&conversation.id, upload_ids)?;
        let names: Vec<String> = uploads.iter().map(|u| u.name.clone()).collect();
        let text = if text.trim().is_empty() && !names.is_empty() {
            format!("(sent {})", names.join(", "))
        } else {
            text.to_owned()
        };
        let text = text.as_str();
        check_text(text)?;
        self.check_access(&conversation.user_id, &conversation.agent_group_id)
            .await?;
        let event = InboundEvent {
            channel_type: CHANNEL_TYPE.into(),
            platform_id: conversation.platform_id.clone(),
            thread_id: None,
            platform_message_id: format!("web-in-{}", uuid::Uuid::now_v7().simple()),
            sender: Self::sender(&conversation.user_id),
            text: text.to_owned(),
            attachments: Vec::new(),
            is_mention: true,
            is_group: false,
            chat_name: Some(conversation.title.clone()),
            uploads,
        };
        let outcome = self.context()?.push(event.clone()).await?;
        self.uploads.discard(&conversation.id, upload_ids);
        if outcome.routed.is_empty() && outcome.held.is_empty() && outcome.decision.is_none() {
            let why = if outcome.dropped.is_empty() {
                "a repeat of a message already stored".to_owned()
            } else {
                outcome.dropped.join("; ")
            };
            return Err(WebChatError::NotRouted(why));
        }
        let (triggers, context_rows): (Vec<_>, Vec<_>) =
            outcome.routed.iter().partition(|r| r.trigger);
        let message_ids: Vec<String> = triggers.iter().map(|r| r.message_id.to_string()).collect();
        let shown = if names.is_empty() {
            text.to_owned()
        } else {
            let list: Vec<String> = names.iter().map(|name| format!("📎 {name}")).collect();
            format!("{text}\n\n{}", list.join("\n"))
        };
        let message = Message {
            message_id: event.platform_message_id.clone(),
            role: Role::User,
            text: shown,
            files: Vec::new(),
            question: None,
            replaces_draft: None,
            routed_ids: message_ids.clone(),
            answers_question: None,
        };
        let event_id = self
            .record_logged(&conversation.id, EventBody::Message(message), None)
            .await;
        Ok(Posted {
            message_ids,
            context_ids: context_rows
                .iter()
                .map(|r| r.message_id.to_string())
                .collect(),
            held: outcome.held,
            event_id,
        })
    }

    /// Answers the question `question_id` the agent asked in the conversation, and logs it.
    pub async fn answer(
        &self,
        conversation: &WebConversation,
        question_id: &str,
        answer: &str,
    ) -> Result<Posted, WebChatError> {
        check_text(answer)?;
        self.check_access(&conversation.user_id, &conversation.agent_group_id)
            .await?;
        let platform_message_id = format!("web-in-{}", uuid::Uuid::now_v7().simple());
        let answered = self
            .context()?
            .answer(QuestionAnswer {
                channel_type: CHANNEL_TYPE.into(),
                platform_id: conversation.platform_id.clone(),
                thread_id: None,
                question_id: Some(question_id.to_owned()),
                answer: answer.to_owned(),
                sender: Self::sender(&conversation.user_id),
                platform_message_id: platform_message_id.clone(),
            })
            .await?;
        let message = Message {
            message_id: platform_message_id,
            role: Role::User,
            text: answered.answer.clone(),
            files: Vec::new(),
            question: None,
            replaces_draft: None,
            routed_ids: vec![answered.message_id.to_string()],
            answers_question: Some(answered.question_id.clone()),
        };
        let event_id = self
            .record_logged(&conversation.id, EventBody::Message(message), None)
            .await;
        let id = answered.message_id.to_string();
        let (message_ids, context_ids) = if answered.trigger {
            (vec![id], Vec::new())
        } else {
            (Vec::new(), vec![id])
        };
        Ok(Posted {
            message_ids,
            context_ids,
            held: Vec::new(),
            event_id,
        })
    }
}

/// Removes the destinations `create_wiring` made for a web chat.
fn remove_chat_destinations(
    conn: &Connection,
    agent_group: &AgentGroupId,
    chat_id: &str,
) -> Result<(), DbError> {
    conn.execute(
        "DELETE FROM agent_destinations WHERE agent_group_id = ?1 AND type = 'channel' \
         AND messaging_group_id = ?2",
        rusqlite::params![agent_group, chat_id],
    )?;
    Ok(())
}
