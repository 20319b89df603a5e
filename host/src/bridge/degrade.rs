//! What an agent's chat row becomes on a platform ([`plan`]), degraded around what the
//! platform cannot do: buttons become numbered options answered by number, an edit or a
//! progress update becomes a new message where the platform cannot edit (or the target is
//! not known), and a reaction becomes a line saying so where it cannot react.
//!
//! Text here is still canonical Markdown; `markup` converts it for the platform after.

use crate::edge::{Button, Capabilities};
use protocol::OutboundContent;
use protocol::content::ProgressItem;

/// The platform call one row needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// A new message (with the row's files, if it has any).
    Send {
        markdown: String,
        buttons: Vec<Button>,
        question_id: Option<String>,
    },
    /// Replace the text of the platform message `target`.
    Edit { target: String, markdown: String },
    /// React to the platform message `target`.
    React { target: String, emoji: String },
}

/// The call for `content` on a platform with `capabilities`; `target` is the platform id of
/// the message an edit, a reaction or a progress update changes, when it is known.
pub fn plan(content: &OutboundContent, capabilities: &Capabilities, target: Option<&str>) -> Call {
    let send = |markdown: String| Call::Send {
        markdown,
        buttons: Vec::new(),
        question_id: None,
    };
    match content {
        OutboundContent::Message(message) => send(message.text.clone()),
        OutboundContent::Edit { target_seq, text } => match target {
            Some(target) if capabilities.edits => Call::Edit {
                target: target.to_owned(),
                markdown: text.clone(),
            },
            _ => send(format!("(edit of {target_seq}) {text}")),
        },
        OutboundContent::Reaction { target_seq, emoji } => match target {
            Some(target) if capabilities.reactions => Call::React {
                target: target.to_owned(),
                emoji: emoji.clone(),
            },
            _ => send(format!("(reaction to {target_seq}) {emoji}")),
        },
        OutboundContent::Question {
            question_id,
            title,
            question,
            options,
            ..
        } => question_call(question_id, title, question, options, capabilities),
        OutboundContent::Progress { items, target_seq } => {
            let list = checklist(items);
            match (target, target_seq) {
                (Some(target), Some(_)) if capabilities.edits => Call::Edit {
                    target: target.to_owned(),
                    markdown: format!("plan:\n{list}"),
                },
                (_, Some(seq)) => send(format!("plan (update of {seq}):\n{list}")),
                (_, None) => send(format!("plan:\n{list}")),
            }
        }
        // Refused before it gets here (`operations::check`); a line rather than a panic.
        OutboundContent::System { action, .. } => send(format!("(system action {action})")),
    }
}

fn question_call(
    question_id: &str,
    title: &str,
    question: &str,
    options: &[String],
    capabilities: &Capabilities,
) -> Call {
    let heading = if title.trim().is_empty() {
        question.to_owned()
    } else {
        format!("**{title}**\n{question}")
    };
    if capabilities.buttons && !options.is_empty() {
        return Call::Send {
            markdown: heading,
            buttons: options
                .iter()
                .enumerate()
                .map(|(index, label)| Button {
                    label: label.clone(),
                    answer: (index + 1).to_string(),
                })
                .collect(),
            question_id: Some(question_id.to_owned()),
        };
    }
    let numbered: Vec<String> = options
        .iter()
        .enumerate()
        .map(|(index, option)| format!("{}. {option}", index + 1))
        .collect();
    let how = if options.is_empty() {
        "answer in your own words"
    } else {
        "answer with a number or your own words"
    };
    let body = if numbered.is_empty() {
        String::new()
    } else {
        format!("\n\n{}", numbered.join("\n"))
    };
    Call::Send {
        markdown: format!("{heading}{body}\n\n({how})"),
        buttons: Vec::new(),
        question_id: Some(question_id.to_owned()),
    }
}

/// A progress list as Markdown lines, one mark per status.
pub fn checklist(items: &[ProgressItem]) -> String {
    items
        .iter()
        .map(|item| format!("[{}] {}", item.status, item.text))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::Markup;
    use protocol::{MessageContent, Seq};

    fn caps(edits: bool, reactions: bool, buttons: bool) -> Capabilities {
        Capabilities {
            edits,
            reactions,
            buttons,
            ..Capabilities::text_only(4000, Markup::Markdown)
        }
    }

    fn send(markdown: &str) -> Call {
        Call::Send {
            markdown: markdown.into(),
            buttons: Vec::new(),
            question_id: None,
        }
    }

    #[test]
    fn rows_degrade_around_what_the_platform_cannot_do() {
        let edit = OutboundContent::Edit {
            target_seq: Seq(3),
            text: "fixed".into(),
        };
        let reaction = OutboundContent::Reaction {
            target_seq: Seq(2),
            emoji: "👍".into(),
        };
        let progress = OutboundContent::Progress {
            items: vec![ProgressItem {
                text: "dig".into(),
                status: "done".into(),
            }],
            target_seq: Some(Seq(5)),
        };
        let table: Vec<(&str, OutboundContent, Capabilities, Option<&str>, Call)> = vec![
            (
                "message",
                OutboundContent::Message(MessageContent {
                    text: "hi".into(),
                    files: Vec::new(),
                }),
                caps(true, true, true),
                None,
                send("hi"),
            ),
            (
                "edit in place",
                edit.clone(),
                caps(true, false, false),
                Some("p3"),
                Call::Edit {
                    target: "p3".into(),
                    markdown: "fixed".into(),
                },
            ),
            (
                "edit without edits is a new message",
                edit.clone(),
                caps(false, false, false),
                Some("p3"),
                send("(edit of 3) fixed"),
            ),
            (
                "edit of an unknown message is a new message",
                edit,
                caps(true, false, false),
                None,
                send("(edit of 3) fixed"),
            ),
            (
                "reaction",
                reaction.clone(),
                caps(false, true, false),
                Some("p2"),
                Call::React {
                    target: "p2".into(),
                    emoji: "👍".into(),
                },
            ),
            (
                "reaction without reactions is a line",
                reaction,
                caps(true, false, true),
                Some("p2"),
                send("(reaction to 2) 👍"),
            ),
            (
                "progress update edits the list",
                progress.clone(),
                caps(true, false, false),
                Some("p5"),
                Call::Edit {
                    target: "p5".into(),
                    markdown: "plan:\n[done] dig".into(),
                },
            ),
            (
                "progress update without edits is sent anew",
                progress,
                caps(false, false, false),
                Some("p5"),
                send("plan (update of 5):\n[done] dig"),
            ),
        ];
        for (name, content, capabilities, target, expected) in table {
            assert_eq!(plan(&content, &capabilities, target), expected, "{name}");
        }
    }

    #[test]
    fn questions_are_buttons_or_numbered_options() {
        let question = OutboundContent::Question {
            question_id: "q1".into(),
            title: "Pick".into(),
            question: "Which one?".into(),
            options: vec!["red".into(), "blue".into()],
            expires_at: None,
        };
        assert_eq!(
            plan(&question, &caps(false, false, true), None),
            Call::Send {
                markdown: "**Pick**\nWhich one?".into(),
                buttons: vec![
                    Button {
                        label: "red".into(),
                        answer: "1".into()
                    },
                    Button {
                        label: "blue".into(),
                        answer: "2".into()
                    },
                ],
                question_id: Some("q1".into()),
            }
        );
        assert_eq!(
            plan(&question, &caps(false, false, false), None),
            Call::Send {
                markdown: "**Pick**\nWhich one?\n\n1. red\n2. blue\n\n(answer with a number or your own words)"
                    .into(),
                buttons: Vec::new(),
                question_id: Some("q1".into()),
            }
        );
    }
}
