//! What happens in a web conversation, as the browser sees it: [`EventBody`] (tagged by
//! `type`), and [`ConversationEvent`], a body with its event id when it is durable.
//!
//! Durable events (`message`, `edit`, `delete`, `turn_complete`) are stored in the
//! conversation's log (`db::central::web_chats`) and carry `event_id`; `draft` and `typing`
//! are only ever live and carry none.

use serde::{Deserialize, Serialize};

/// Who wrote a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The conversation's owner.
    User,
    /// The agent.
    Agent,
    /// The host itself (a notice, an approval request).
    Host,
}

/// An answer option of a question.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuestionOption {
    pub label: String,
    /// What choosing it answers (the option's number, from 1).
    pub answer: String,
}

/// A question the agent asked, with its options (buttons in the UI).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Question {
    pub question_id: String,
    pub options: Vec<QuestionOption>,
}

/// A message in the conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The message's id within the conversation (`m<event id>`); edits and deletions name it.
    pub message_id: String,
    pub role: Role,
    /// Markdown (to be rendered text-safe: no HTML of a reply ever runs).
    pub text: String,
    /// File names the agent attached.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question: Option<Question>,
    /// The draft this message takes the place of (the UI removes the draft).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces_draft: Option<String>,
    /// For the user's messages: the ids of the rows routed (the drafts' and turns' keys).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routed_ids: Vec<String>,
    /// For an answer: the question it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers_question: Option<String>,
}

/// One event of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventBody {
    Message(Message),
    /// A message's text (and question) replaced.
    Edit {
        message_id: String,
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        question: Option<Question>,
    },
    Delete {
        message_id: String,
    },
    /// The agent has finished its turn on the user's row `message_id`.
    TurnComplete {
        message_id: String,
    },
    /// The whole text so far of a reply being written (`appended`: what was added).
    Draft {
        key: String,
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        appended: Option<String>,
    },
    Typing {
        on: bool,
    },
}

impl EventBody {
    /// The `type` tag, which is also the SSE event name.
    pub fn kind(&self) -> &'static str {
        match self {
            EventBody::Message(_) => "message",
            EventBody::Edit { .. } => "edit",
            EventBody::Delete { .. } => "delete",
            EventBody::TurnComplete { .. } => "turn_complete",
            EventBody::Draft { .. } => "draft",
            EventBody::Typing { .. } => "typing",
        }
    }

    /// Whether it goes into the durable log.
    pub fn is_durable(&self) -> bool {
        match self {
            EventBody::Message(_)
            | EventBody::Edit { .. }
            | EventBody::Delete { .. }
            | EventBody::TurnComplete { .. } => true,
            EventBody::Draft { .. } | EventBody::Typing { .. } => false,
        }
    }
}

/// An event as it is sent: `event_id` set for durable ones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationEvent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<i64>,
    #[serde(flatten)]
    pub body: EventBody,
}

impl ConversationEvent {
    /// Reads a stored event back; a body that no longer parses is `None` (logged by the
    /// caller), never a failure of the whole read.
    pub fn from_stored(event_id: i64, body: &str) -> Option<ConversationEvent> {
        let body: EventBody = serde_json::from_str(body).ok()?;
        Some(ConversationEvent {
            event_id: Some(event_id),
            body,
        })
    }
}

/// The messages of a log as they stand: edits applied, deleted ones gone, in order.
pub fn fold_messages(events: &[ConversationEvent]) -> Vec<(i64, Message)> {
    let mut messages: Vec<(i64, Message)> = Vec::new();
    for event in events {
        match &event.body {
            EventBody::Message(message) => {
                messages.push((event.event_id.unwrap_or(0), message.clone()));
            }
            EventBody::Edit {
                message_id,
                text,
                question,
            } => {
                if let Some((_, message)) = messages
                    .iter_mut()
                    .find(|(_, m)| &m.message_id == message_id)
                {
                    message.text.clone_from(text);
                    message.question.clone_from(question);
                }
            }
            EventBody::Delete { message_id } => {
                messages.retain(|(_, m)| &m.message_id != message_id);
            }
            EventBody::TurnComplete { .. } | EventBody::Draft { .. } | EventBody::Typing { .. } => {
            }
        }
    }
    messages
}

/// The question the agent is waiting on: the last one it asked, not answered in the log,
/// while a turn of the owner's is still open (a question of a finished turn waits no more,
/// and an answer to it would only ride along with the next turn).
pub fn open_question(events: &[ConversationEvent]) -> Option<String> {
    let mut open_turns: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut question: Option<&str> = None;
    for event in events {
        match &event.body {
            EventBody::Message(message) => match message.role {
                Role::User => {
                    open_turns.extend(message.routed_ids.iter().map(String::as_str));
                    if message.answers_question.is_some()
                        && message.answers_question.as_deref() == question
                    {
                        question = None;
                    }
                }
                Role::Agent | Role::Host => {
                    if let Some(asked) = &message.question {
                        question = Some(asked.question_id.as_str());
                    }
                }
            },
            EventBody::TurnComplete { message_id } => {
                open_turns.remove(message_id.as_str());
            }
            EventBody::Edit { .. }
            | EventBody::Delete { .. }
            | EventBody::Draft { .. }
            | EventBody::Typing { .. } => {}
        }
    }
    if open_turns.is_empty() {
        None
    } else {
        question.map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str, text: &str) -> ConversationEvent {
        ConversationEvent {
            event_id: Some(1),
            body: EventBody::Message(Message {
                message_id: id.into(),
                role: Role::Agent,
                text: text.into(),
                files: Vec::new(),
                question: None,
                replaces_draft: None,
                routed_ids: Vec::new(),
                answers_question: None,
            }),
        }
    }

    #[test]
    fn events_serialise_flat_with_their_type() {
        let event = ConversationEvent {
            event_id: Some(7),
            body: EventBody::TurnComplete {
                message_id: "msg-1".into(),
            },
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"event_id": 7, "type": "turn_complete", "message_id": "msg-1"})
        );
        let draft = ConversationEvent {
            event_id: None,
            body: EventBody::Draft {
                key: "k".into(),
                text: "ab".into(),
                appended: Some("b".into()),
            },
        };
        let json = serde_json::to_value(&draft).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "draft", "key": "k", "text": "ab", "appended": "b"})
        );
        assert!(!draft.body.is_durable());
        let stored = serde_json::to_string(&event.body).unwrap();
        assert_eq!(ConversationEvent::from_stored(7, &stored), Some(event));
        assert_eq!(
            ConversationEvent::from_stored(8, "{\"type\":\"nope\"}"),
            None
        );
    }

    fn person(routed: &[&str], answers: Option<&str>) -> ConversationEvent {
        ConversationEvent {
            event_id: Some(1),
            body: EventBody::Message(Message {
                message_id: "p".into(),
                role: Role::User,
                text: "hi".into(),
                files: Vec::new(),
                question: None,
                replaces_draft: None,
                routed_ids: routed.iter().map(|id| (*id).to_owned()).collect(),
                answers_question: answers.map(str::to_owned),
            }),
        }
    }

    fn asks(question_id: &str) -> ConversationEvent {
        let mut event = message("q", "which?");
        if let EventBody::Message(message) = &mut event.body {
            message.question = Some(Question {
                question_id: question_id.into(),
                options: Vec::new(),
            });
        }
        event
    }

    fn done(id: &str) -> ConversationEvent {
        ConversationEvent {
            event_id: Some(9),
            body: EventBody::TurnComplete {
                message_id: id.into(),
            },
        }
    }

    #[test]
    fn a_question_is_open_while_its_turn_is() {
        let check = |events: &[ConversationEvent], expected: Option<&str>| {
            assert_eq!(open_question(events).as_deref(), expected, "{events:?}");
        };
        check(&[], None);
        check(&[person(&["m1"], None)], None);
        check(&[person(&["m1"], None), asks("q1")], Some("q1"));
        // Answered: not open any more.
        check(
            &[
                person(&["m1"], None),
                asks("q1"),
                person(&["a1"], Some("q1")),
            ],
            None,
        );
        // The turn ended (the agent stopped waiting): not open.
        check(&[person(&["m1"], None), asks("q1"), done("m1")], None);
        // A later question in a new turn.
        check(
            &[
                person(&["m1"], None),
                asks("q1"),
                done("m1"),
                person(&["m2"], None),
                asks("q2"),
            ],
            Some("q2"),
        );
    }

    #[test]
    fn folding_applies_edits_and_deletions() {
        let events = vec![
            message("m1", "one"),
            message("m2", "two"),
            ConversationEvent {
                event_id: Some(3),
                body: EventBody::Edit {
                    message_id: "m1".into(),
                    text: "one, edited".into(),
                    question: None,
                },
            },
            ConversationEvent {
                event_id: Some(4),
                body: EventBody::Delete {
                    message_id: "m2".into(),
                },
            },
        ];
        let folded = fold_messages(&events);
        assert_eq!(folded.len(), 1);
        assert_eq!(folded[0].1.text, "one, edited");
    }
}
