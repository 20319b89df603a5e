//! Inline-keyboard buttons and their `callback_data`, which Telegram caps at 64 bytes.
//!
//! A button's [`Press`] (answer a question, or type a host message's shortcut) is written
//! into the data itself when it fits (`q:<answer>|<question id>`, `t:<text>`), so a press
//! works after any restart with nothing stored; otherwise the data is a short key
//! (`k:<32 hex>`) for the press kept in `channel_state` under `button:<key>`.
//!
//! Callback data comes back from the person's client, so it is as hostile as a typed
//! message: a forged one can only do what typing could (the router checks who may answer or
//! decide), and unreadable data is refused.

use crate::edge::Button;
use serde::{Deserialize, Serialize};

/// Telegram's cap on `callback_data`, in bytes.
pub const MAX_CALLBACK_DATA_BYTES: usize = 64;

/// What pressing a button does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Press {
    /// Answers question `question_id` with `answer` (an option's number).
    Answer { question_id: String, answer: String },
    /// The presser typing `text` in the chat (`approve <id>`).
    Say { text: String },
}

/// A button's data: the press itself, or the key it is stored under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallbackData {
    Inline(Press),
    Stored(String),
}

impl Press {
    /// The press of `button` on a message asking `question_id` (or a host message).
    pub fn of(button: &Button, question_id: Option<&str>) -> Press {
        match question_id {
            Some(question_id) => Press::Answer {
                question_id: question_id.to_owned(),
                answer: button.answer.clone(),
            },
            None => Press::Say {
                text: button.answer.clone(),
            },
        }
    }

    /// The press as callback data, when it fits in [`MAX_CALLBACK_DATA_BYTES`].
    pub fn inline_data(&self) -> Option<String> {
        let data = match self {
            Press::Answer {
                question_id,
                answer,
            } if !answer.contains('|') => format!("q:{answer}|{question_id}"),
            Press::Answer { .. } => return None,
            Press::Say { text } => format!("t:{text}"),
        };
        (data.len() <= MAX_CALLBACK_DATA_BYTES).then_some(data)
    }
}

/// The data for a stored press with `key`.
pub fn stored_data(key: &str) -> String {
    format!("k:{key}")
}

/// The `channel_state` key a stored press is kept under.
pub fn state_key(key: &str) -> String {
    format!("button:{key}")
}

/// Reads a button's data; `None` when it is none of ours.
pub fn parse(data: &str) -> Option<CallbackData> {
    if data.len() > MAX_CALLBACK_DATA_BYTES {
        return None;
    }
    if let Some(rest) = data.strip_prefix("q:") {
        let (answer, question_id) = rest.split_once('|')?;
        if answer.trim().is_empty() || question_id.is_empty() {
            return None;
        }
        return Some(CallbackData::Inline(Press::Answer {
            question_id: question_id.to_owned(),
            answer: answer.to_owned(),
        }));
    }
    if let Some(text) = data.strip_prefix("t:") {
        if text.trim().is_empty() {
            return None;
        }
        return Some(CallbackData::Inline(Press::Say {
            text: text.to_owned(),
        }));
    }
    let key = data.strip_prefix("k:")?;
    (key.len() == 32 && key.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| CallbackData::Stored(key.to_owned()))
}

/// A new key for a press too long to be its own data.
pub fn new_key() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
