//! Block Kit for crabpot's buttons: a message with buttons is a `section` with its text and
//! an `actions` block of `button`s ([`message_blocks`]). Each button's `value` (at most
//! 2000 characters, Slack's cap) says what a press means ([`Press`]): an answer to a
//! question (`{"q": question id, "a": answer}`) or a host message's shortcut, the presser
//! typing `{"t": text}`. After a press the message is rewritten without its buttons, with
//! the choice under the text ([`chosen_blocks`]).

use crate::edge::Button;
use serde_json::{Value, json};

/// Slack's cap on a button's `value`.
pub const MAX_VALUE_CHARS: usize = 2000;
/// Slack's cap on a section's text.
pub const MAX_SECTION_CHARS: usize = 3000;
/// Slack's cap on a button's label.
const MAX_LABEL_CHARS: usize = 75;
/// Slack's cap on the elements of one actions block.
const MAX_BUTTONS_PER_BLOCK: usize = 25;

/// What pressing a button means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Press {
    /// Answers question `question_id` with `answer`.
    Answer { question_id: String, answer: String },
    /// The presser typing `text` in the chat.
    Say { text: String },
}

impl Press {
    /// The button's `value`; `None` when it would pass Slack's cap.
    pub fn value(&self) -> Option<String> {
        let value = match self {
            Press::Answer {
                question_id,
                answer,
            } => json!({"q": question_id, "a": answer}),
            Press::Say { text } => json!({"t": text}),
        }
        .to_string();
        (value.chars().count() <= MAX_VALUE_CHARS).then_some(value)
    }

    /// Reads a pressed button's `value`.
    pub fn parse(value: &str) -> Option<Press> {
        let value: Value = serde_json::from_str(value).ok()?;
        let text = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
        match (text("q"), text("a"), text("t")) {
            (Some(question_id), Some(answer), None) => Some(Press::Answer {
                question_id,
                answer,
            }),
            (None, None, Some(text)) => Some(Press::Say { text }),
            _ => None,
        }
    }
}

/// The blocks of a message with `buttons`; `None` without buttons (plain `text` then).
pub fn message_blocks(text: &str, buttons: &[Button], question_id: Option<&str>) -> Option<Value> {
    let elements: Vec<Value> = buttons
        .iter()
        .enumerate()
        .filter_map(|(index, button)| {
            let press = match question_id {
                Some(question_id) => Press::Answer {
                    question_id: question_id.to_owned(),
                    answer: button.answer.clone(),
                },
                None => Press::Say {
                    text: button.answer.clone(),
                },
            };
            let value = press.value()?;
            Some(json!({
                "type": "button",
                "text": {"type": "plain_text", "text": label(&button.label), "emoji": true},
                "action_id": format!("crabpot-{index}"),
                "value": value,
            }))
        })
        .collect();
    if elements.is_empty() {
        return None;
    }
    let mut blocks = vec![section(text)];
    for (index, chunk) in elements.chunks(MAX_BUTTONS_PER_BLOCK).enumerate() {
        blocks.push(json!({
            "type": "actions",
            "block_id": format!("crabpot-actions-{index}"),
            "elements": chunk,
        }));
    }
    Some(Value::Array(blocks))
}

/// The blocks of a message whose button `label` was pressed by `user_id`.
pub fn chosen_blocks(text: &str, label: &str, user_id: &str) -> Value {
    json!([
        section(text),
        {
            "type": "context",
            "elements": [{
                "type": "mrkdwn",
                "text": cut(&format!("✔ {label} (<@{user_id}>)"), MAX_SECTION_CHARS),
            }],
        }
    ])
}

fn section(text: &str) -> Value {
    // A section's text may not be empty.
    let text = if text.trim().is_empty() { " " } else { text };
    json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": cut(text, MAX_SECTION_CHARS)},
    })
}

fn label(label: &str) -> String {
    let label = if label.trim().is_empty() { "?" } else { label };
    cut(label, MAX_LABEL_CHARS)
}

/// `text` cut to `max` characters.
pub fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => text[..at].to_owned(),
        None => text.to_owned(),
    }
}
