//! Buttons as Discord message components: action rows (type 1) of at most five buttons
//! (type 2), at most five rows, labels cut to 80 characters. A button's `custom_id` (at most
//! 100 characters) says what a press means ([`ButtonAction`]): `q:<question id>:<answer>`
//! answers a question, `t:<text>` is the presser typing that text; one that would be longer
//! is `k:<key>`, with the action kept in `channel_state` under `button:<key>` so a press
//! after a restart still finds it.

use crate::edge::Button;
use serde_json::{Value, json};

/// The longest `custom_id` Discord takes.
pub const MAX_CUSTOM_ID: usize = 100;
const MAX_LABEL: usize = 80;
const MAX_PER_ROW: usize = 5;
const MAX_ROWS: usize = 5;

/// What pressing a button means.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ButtonAction {
    /// Answers `question_id` with `answer`.
    Answer { question_id: String, answer: String },
    /// The presser typed `text` in the chat (a host message's shortcut).
    Text { text: String },
}

/// How a button's action is named in its `custom_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CustomId {
    /// The action fits in the id.
    Inline(String),
    /// Too long: the id is `k:<key>` and the action is stored under `button:<key>`.
    Stored { custom_id: String, key: String },
}

impl CustomId {
    pub fn as_str(&self) -> &str {
        match self {
            CustomId::Inline(id) | CustomId::Stored { custom_id: id, .. } => id,
        }
    }
}

/// The `custom_id` for `action`.
pub fn custom_id(action: &ButtonAction) -> CustomId {
    let inline = match action {
        ButtonAction::Answer {
            question_id,
            answer,
        } if !question_id.contains(':') => format!("q:{question_id}:{answer}"),
        ButtonAction::Answer { .. } => String::new(),
        ButtonAction::Text { text } => format!("t:{text}"),
    };
    if !inline.is_empty() && inline.chars().count() <= MAX_CUSTOM_ID {
        CustomId::Inline(inline)
    } else {
        let key = uuid::Uuid::new_v4().simple().to_string();
        CustomId::Stored {
            custom_id: format!("k:{key}"),
            key,
        }
    }
}

/// What a pressed `custom_id` means: the action itself, or the key of a stored one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pressed {
    Action(ButtonAction),
    Stored(String),
}

/// Reads a `custom_id` back; `None` when it is none of ours.
pub fn parse_custom_id(custom_id: &str) -> Option<Pressed> {
    if custom_id.chars().count() > MAX_CUSTOM_ID {
        return None;
    }
    if let Some(rest) = custom_id.strip_prefix("q:") {
        let (question_id, answer) = rest.split_once(':')?;
        return (!question_id.is_empty()).then(|| {
            Pressed::Action(ButtonAction::Answer {
                question_id: question_id.to_owned(),
                answer: answer.to_owned(),
            })
        });
    }
    if let Some(text) = custom_id.strip_prefix("t:") {
        return Some(Pressed::Action(ButtonAction::Text {
            text: text.to_owned(),
        }));
    }
    let key = custom_id.strip_prefix("k:")?;
    (key.len() == 32 && key.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| Pressed::Stored(key.to_owned()))
}

/// The action of each button of a message (`question_id` set: a question's answers).
pub fn actions(buttons: &[Button], question_id: Option<&str>) -> Vec<ButtonAction> {
    buttons
        .iter()
        .map(|button| match question_id {
            Some(question_id) => ButtonAction::Answer {
                question_id: question_id.to_owned(),
                answer: button.answer.clone(),
            },
            None => ButtonAction::Text {
                text: button.answer.clone(),
            },
        })
        .collect()
}

/// The `components` of a message with these buttons and ids (empty: no rows).
pub fn rows(buttons: &[Button], ids: &[CustomId]) -> Value {
    let buttons: Vec<Value> = buttons
        .iter()
        .zip(ids)
        .take(MAX_PER_ROW * MAX_ROWS)
        .map(|(button, id)| {
            let mut label: String = button.label.chars().take(MAX_LABEL).collect();
            if label.trim().is_empty() {
                label = button.answer.chars().take(MAX_LABEL).collect();
            }
            json!({"type": 2, "style": style(&button.answer), "label": label, "custom_id": id.as_str()})
        })
        .collect();
    Value::Array(
        buttons
            .chunks(MAX_PER_ROW)
            .map(|row| json!({"type": 1, "components": row}))
            .collect(),
    )
}

/// Green for approving, red for denying, blurple for the rest.
fn style(answer: &str) -> u8 {
    if answer.starts_with("approve") {
        3
    } else if answer.starts_with("deny") {
        4
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(action: ButtonAction) {
        let id = custom_id(&action);
        assert!(id.as_str().chars().count() <= MAX_CUSTOM_ID, "{id:?}");
        match (&id, parse_custom_id(id.as_str())) {
            (CustomId::Inline(_), Some(Pressed::Action(back))) => assert_eq!(back, action),
            (CustomId::Stored { key, .. }, Some(Pressed::Stored(back))) => assert_eq!(&back, key),
            (id, back) => panic!("{id:?} read back as {back:?}"),
        }
    }

    #[test]
    fn custom_ids_round_trip_and_stay_short() {
        check(ButtonAction::Answer {
            question_id: "q-123".into(),
            answer: "2".into(),
        });
        check(ButtonAction::Answer {
            question_id: "q-1".into(),
            answer: "a: with colons".into(),
        });
        check(ButtonAction::Text {
            text: "approve ap-0193".into(),
        });
        check(ButtonAction::Text {
            text: "x".repeat(300),
        });
        check(ButtonAction::Answer {
            question_id: "has:colon".into(),
            answer: "1".into(),
        });
        assert_eq!(parse_custom_id("something else"), None);
        assert_eq!(parse_custom_id("k:../../etc"), None);
        assert_eq!(parse_custom_id("q::1"), None);
    }

    #[test]
    fn buttons_fill_rows_of_five() {
        let buttons: Vec<Button> = (1..=7)
            .map(|n| Button {
                label: format!("option {n}"),
                answer: n.to_string(),
            })
            .collect();
        let ids: Vec<CustomId> = actions(&buttons, Some("q-9"))
            .iter()
            .map(custom_id)
            .collect();
        let rows = rows(&buttons, &ids);
        let rows = rows.as_array().cloned().unwrap_or_default();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["components"].as_array().map(Vec::len), Some(5));
        assert_eq!(rows[1]["components"][1]["custom_id"], "q:q-9:7");
        assert_eq!(rows[1]["components"][1]["label"], "option 7");
    }
}
