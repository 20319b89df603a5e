//! One agent turn seen through the OpenAI-compatible API: [`Turn`] follows a conversation's
//! events until every routed row's turn is complete, and [`Deltas`] turns the growing text
//! (drafts carry the whole text so far; then the replies) into the pieces a streaming client
//! appends, never sending a character twice.
//!
//! A question the agent asks ends the answer (with its options listed): the agent waits for
//! it, and the client's next message in the conversation is its answer.
//!
//! Text comes in segments: a draft that grows, then the reply that takes its place (the same
//! text, complete). When a draft does not extend the text sent so far (the runner reset it
//! because a tool call followed), or a reply does not extend its draft, what was sent stays
//! and a new segment starts after a blank line. So a stream may hold text the non-streamed
//! answer (the replies joined by blank lines) does not.

use crate::channels::web::{ConversationEvent, EventBody, Message, Role};
use std::collections::HashSet;

/// Joins separate pieces of text.
const SEPARATOR: &str = "\n\n";

/// The text a streaming client has been sent, and the segment being written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deltas {
    sent: String,
    /// Where the open segment starts in `sent`; `None` when no segment is open (nothing sent
    /// yet, or the last one ended with a reply).
    segment_start: Option<usize>,
}

impl Deltas {
    /// Everything sent so far.
    pub fn sent(&self) -> &str {
        &self.sent
    }

    /// The text of the segment now stands at `text`: returns what to send (nothing when
    /// nothing new). `last` ends the segment (a reply).
    pub fn update(&mut self, text: &str, last: bool) -> Option<String> {
        let delta = match self.segment_start {
            Some(start) if text.starts_with(&self.sent[start..]) => {
                text[self.sent.len() - start..].to_owned()
            }
            // An older, shorter draft: nothing new.
            Some(start) if self.sent[start..].starts_with(text) && !last => String::new(),
            Some(_) | None => {
                let separator = if self.sent.is_empty() { "" } else { SEPARATOR };
                let delta = format!("{separator}{text}");
                self.segment_start = Some(self.sent.len() + separator.len());
                delta
            }
        };
        self.sent.push_str(&delta);
        if last {
            self.segment_start = None;
        }
        (!delta.is_empty()).then_some(delta)
    }
}

/// What a [`Turn`] made of one event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// Text to stream.
    pub delta: Option<String>,
    /// Every routed row's turn is complete.
    pub done: bool,
}

/// The replies to one request, as the conversation's events come.
#[derive(Clone, Debug)]
pub struct Turn {
    /// The routed rows whose turns are not complete yet (also the drafts' keys).
    waiting: HashSet<String>,
    keys: HashSet<String>,
    replies: Vec<String>,
    deltas: Deltas,
    /// The agent asked a question: the answer ends here, and the client's next message
    /// answers it.
    asked: bool,
}

impl Turn {
    pub fn new(message_ids: &[String]) -> Turn {
        Turn {
            waiting: message_ids.iter().cloned().collect(),
            keys: message_ids.iter().cloned().collect(),
            replies: Vec::new(),
            deltas: Deltas::default(),
            asked: false,
        }
    }

    /// The answer: the replies, joined by blank lines.
    pub fn content(&self) -> String {
        self.replies.join(SEPARATOR)
    }

    pub fn is_done(&self) -> bool {
        self.waiting.is_empty() || self.asked
    }

    pub fn apply(&mut self, event: &ConversationEvent) -> Step {
        let delta = match &event.body {
            EventBody::Draft { key, text, .. } if self.keys.contains(key) => {
                self.deltas.update(text, false)
            }
            EventBody::Message(message) => match message.role {
                Role::Agent | Role::Host => {
                    self.asked |= message.question.is_some();
                    let text = reply_text(message);
                    let delta = self.deltas.update(&text, true);
                    self.replies.push(text);
                    delta
                }
                Role::User => None,
            },
            EventBody::TurnComplete { message_id } => {
                self.waiting.remove(message_id);
                None
            }
            EventBody::Draft { .. }
            | EventBody::Edit { .. }
            | EventBody::Delete { .. }
            | EventBody::Typing { .. } => None,
        };
        Step {
            delta,
            done: self.is_done(),
        }
    }
}

/// A reply as text: a question's options listed after it.
fn reply_text(message: &Message) -> String {
    let mut text = message.text.clone();
    if let Some(question) = &message.question {
        for option in &question.options {
            text.push_str(&format!("\n{}. {}", option.answer, option.label));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `steps` (text, is the reply) and checks the deltas and what the client holds.
    fn check(steps: &[(&str, bool)], expected_deltas: &[&str], expected_sent: &str) {
        let mut deltas = Deltas::default();
        let got: Vec<String> = steps
            .iter()
            .filter_map(|(text, last)| deltas.update(text, *last))
            .collect();
        assert_eq!(got, expected_deltas, "{steps:?}");
        assert_eq!(deltas.sent(), expected_sent, "{steps:?}");
        assert_eq!(got.concat(), expected_sent);
    }

    #[test]
    fn deltas_send_each_character_once() {
        // Drafts that grow, then the reply that is their text.
        check(
            &[
                ("The", false),
                ("The crab", false),
                ("The crab builds.", true),
            ],
            &["The", " crab", " builds."],
            "The crab builds.",
        );
        // The reply equals the last draft: nothing more.
        check(&[("ab", false), ("ab", true)], &["ab"], "ab");
        // A repeated or older draft adds nothing.
        check(
            &[("abc", false), ("ab", false), ("abc", false)],
            &["abc"],
            "abc",
        );
        // No drafts at all: the reply in one piece.
        check(&[("hello", true)], &["hello"], "hello");
        // A draft reset (a tool call followed): a new segment after a blank line.
        check(
            &[
                ("Let me look", false),
                ("Found it", false),
                ("Found it: 42", true),
            ],
            &["Let me look", "\n\nFound it", ": 42"],
            "Let me look\n\nFound it: 42",
        );
        // Two replies in one turn.
        check(
            &[("one", true), ("tw", false), ("two", true)],
            &["one", "\n\ntw", "o"],
            "one\n\ntwo",
        );
        // A reply that differs from its draft starts a new segment.
        check(
            &[("draft", false), ("other", true)],
            &["draft", "\n\nother"],
            "draft\n\nother",
        );
    }

    fn draft(key: &str, text: &str) -> ConversationEvent {
        ConversationEvent {
            event_id: None,
            body: EventBody::Draft {
                key: key.into(),
                text: text.into(),
                appended: None,
            },
        }
    }

    fn reply(role: Role, text: &str) -> ConversationEvent {
        ConversationEvent {
            event_id: Some(1),
            body: EventBody::Message(Message {
                message_id: "r".into(),
                role,
                text: text.into(),
                files: Vec::new(),
                question: None,
                replaces_draft: None,
                routed_ids: Vec::new(),
                answers_question: None,
            }),
        }
    }

    fn complete(id: &str) -> ConversationEvent {
        ConversationEvent {
            event_id: Some(2),
            body: EventBody::TurnComplete {
                message_id: id.into(),
            },
        }
    }

    #[test]
    fn a_turn_collects_its_replies_until_each_row_is_complete() {
        let mut turn = Turn::new(&["m1".to_owned()]);
        assert_eq!(turn.apply(&draft("m1", "he")).delta.as_deref(), Some("he"));
        // Another turn's draft and the person's own message are not this answer.
        assert_eq!(turn.apply(&draft("other", "zzz")).delta, None);
        assert_eq!(turn.apply(&reply(Role::User, "hi")).delta, None);
        assert_eq!(
            turn.apply(&reply(Role::Agent, "hello")).delta.as_deref(),
            Some("llo")
        );
        assert!(!turn.apply(&complete("other")).done);
        assert!(turn.apply(&complete("m1")).done);
        assert_eq!(turn.content(), "hello");
    }

    #[test]
    fn a_question_ends_the_answer_with_its_options() {
        let mut turn = Turn::new(&["m1".to_owned()]);
        let mut question = reply(Role::Agent, "Which colour?");
        if let EventBody::Message(message) = &mut question.body {
            message.question = Some(crate::channels::web::Question {
                question_id: "q1".into(),
                options: vec![crate::channels::web::QuestionOption {
                    label: "red".into(),
                    answer: "1".into(),
                }],
            });
        }
        let step = turn.apply(&question);
        assert!(step.done);
        assert_eq!(turn.content(), "Which colour?\n1. red");
    }
}
