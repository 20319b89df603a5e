//! The messaging tools besides `send_message`: `send_file` ([`SendFile`]: copies a workspace
//! file into `out/outbox/<row id>/` before writing the row that names it), `edit_message`
//! ([`EditMessage`]: an `edit` row for one of the agent's own messages) and `add_reaction`
//! ([`AddReaction`]: a `reaction` row on any chat message of the conversation).
//!
//! The seqs the model names are checked against the session files first, so a wrong one
//! gets a clear error instead of a row the host would refuse.

use super::send_message::{check_text, resolve_destination};
use super::{Tool, ToolContext, ToolDefinition, ToolError, ToolFuture, blocking, parse_arguments};
use protocol::ids::is_safe_folder_name;
use protocol::{
    InboundKind, MessageContent, MessageId, NewOutboundRow, OutboundContent, OutboundKind, Seq,
};
use serde::Deserialize;

pub const SEND_FILE: &str = "send_file";
pub const EDIT_MESSAGE: &str = "edit_message";
pub const ADD_REACTION: &str = "add_reaction";

/// Longest reaction, in characters (an emoji with modifiers is several).
const MAX_EMOJI_CHARS: usize = 16;
/// Longest file name in the outbox, in bytes (the protocol's folder-name cap).
const MAX_FILE_NAME_BYTES: usize = 128;

/// Sends a file from the workspace.
pub struct SendFile;
/// Edits a message the agent sent.
pub struct EditMessage;
/// Reacts to a message with an emoji.
pub struct AddReaction;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendFileArguments {
    path: String,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EditArguments {
    seq: i64,
    text: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReactionArguments {
    seq: i64,
    emoji: String,
}

impl Tool for SendFile {
    fn definition(&self) -> ToolDefinition {
        ToolDefinition {
            name: SEND_FILE.into(),
            description: "Send a file from your workspace /session/work as a chat message, \
                with an optional caption. Without `to` it goes to the chat this conversation \
                came from (and your final answer is then not sent as well); with `to` it goes \
                to that named destination."
                .into(),
            parameters: serde_json::json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "The file, relative to /session/work."},
                    "to": {"type": "string", "description": "A destination name; omit for the chat this conversation came from."},
                    "text": {"type": "string", "description": "A caption sent with the file."},
                    "name": {"type": "string", "description": "The file name the recipient sees (default: the file's own name)."}
                },
                "required": ["path"],
                "additionalProperties": false
            }),
        }
    }

    fn call<'a>(
        &'a self,
        context: &'a mut ToolContext<'_>,
        arguments: serde_json::Value,
    ) -> ToolFuture<'a> {
        Box::pin(async move {
            let arguments: SendFileArguments = parse_arguments(SEND_FILE, arguments)?;
            let text = arguments.text.unwrap_or_default();
            check_text("text", &text, true)?;
            let target = resolve_destination(context, arguments.to)?;
            let source = context.workspace.resolve(&arguments.path)?;
            let shown = context.workspace.display(&source);
            let raw_name = arguments.name.unwrap_or_else(|| {
                source
                    .file_name()
                    .map(|name| name.to_string_lossy().into_owned())
                    .unwrap_or_default()
            });
            let name = safe_file_name(&raw_name);
            let id = MessageId::generate();
            let outbox = context.paths.outbox(id.as_str());
            let max = context.tool_limits.max_file_bytes;
            let (copy_to, copy_name) = (outbox.clone(), name.clone());
            let size = blocking(move || {
                let metadata = std::fs::metadata(&source)
                    .map_err(|error| super::files::io_error(&shown, &error))?;
                if !metadata.is_file() {
                    return Err(ToolError::Refused(format!("{shown} is not a file")));
                }
                if metadata.len() > max {
                    return Err(ToolError::Refused(format!(
                        "{shown} is {} bytes, over the cap of {max} for files sent",
                        metadata.len()
                    )));
                }
                std::fs::create_dir_all(&copy_to)
                    .and_then(|()| std::fs::copy(&source, copy_to.join(&copy_name)))
                    .map_err(|error| {
                        let _ = std::fs::remove_dir_all(&copy_to);
                        ToolError::Io(format!("could not copy {shown} into the outbox: {error}"))
                    })
            })
            .await?;
            let row = NewOutboundRow {
                id,
                in_reply_to: None,
                deliver_after: None,
                kind: OutboundKind::Chat,
                destination: target.destination,
                thread_id: None,
                content: OutboundContent::Message(MessageContent {
                    text,
                    files: vec![name.clone()],
                }),
            };
            let seq = match context.send(row).await {
                Ok(seq) => seq,
                Err(error) => {
                    let _ = std::fs::remove_dir_all(&outbox);
                    return Err(error);
                }
            };
            if target.to_origin {
                context.effects.sent_to_origin = true;
            }
            Ok(format!("sent {name} ({size} bytes) (seq {seq})"))
        })
    }
}

impl Tool for EditMessage {
    fn definition(&self) -> ToolDefinition {
        ToolDefinition {
            name: EDIT_MESSAGE.into(),
            description: "Replace the text of a message you sent earlier, named by its seq \
                (the `seq N` a send reported). Where the chat cannot edit, the new text is \
                sent as a new message."
                .into(),
            parameters: serde_json::json!({
                "type": "object",
                "properties": {
                    "seq": {"type": "integer", "description": "The seq of your message."},
                    "text": {"type": "string", "description": "The new text."}
                },
                "required": ["seq", "text"],
                "additionalProperties": false
            }),
        }
    }

    fn call<'a>(
        &'a self,
        context: &'a mut ToolContext<'_>,
        arguments: serde_json::Value,
    ) -> ToolFuture<'a> {
        Box::pin(async move {
            let arguments: EditArguments = parse_arguments(EDIT_MESSAGE, arguments)?;
            check_text("text", &arguments.text, false)?;
            let target_seq = Seq(arguments.seq);
            if target_seq.0 <= 0 || target_seq.0 % 2 == 0 {
                return Err(ToolError::Refused(format!(
                    "seq {target_seq} is not one of your messages: yours have odd seqs (the `seq N` a send reported)"
                )));
            }
            let row = context
                .store
                .call(move |store| store.own_row(target_seq))
                .await?
                .ok_or_else(|| {
                    ToolError::Refused(format!("you have sent no message with seq {target_seq}"))
                })?;
            let is_message = OutboundKind::parse(&row.kind) == Some(OutboundKind::Chat)
                && matches!(
                    OutboundContent::parse(OutboundKind::Chat, &row.content),
                    Ok(OutboundContent::Message(_))
                );
            if !is_message {
                return Err(ToolError::Refused(format!(
                    "seq {target_seq} is not a plain message (an edit, reaction, question, plan or action cannot be edited)"
                )));
            }
            let seq = context
                .send(NewOutboundRow {
                    id: MessageId::generate(),
                    in_reply_to: None,
                    deliver_after: None,
                    kind: OutboundKind::Chat,
                    destination: row.destination,
                    thread_id: None,
                    content: OutboundContent::Edit {
                        target_seq,
                        text: arguments.text,
                    },
                })
                .await?;
            Ok(format!("edited seq {target_seq} (seq {seq})"))
        })
    }
}

impl Tool for AddReaction {
    fn definition(&self) -> ToolDefinition {
        ToolDefinition {
            name: ADD_REACTION.into(),
            description: "React with an emoji to a chat message of this conversation, named by \
                its seq (the `seq N` shown before each message, or one of yours). Where the \
                chat has no reactions, the host sends the emoji as a short reply."
                .into(),
            parameters: serde_json::json!({
                "type": "object",
                "properties": {
                    "seq": {"type": "integer", "description": "The seq of the message."},
                    "emoji": {"type": "string", "description": "One emoji, such as 👍."}
                },
                "required": ["seq", "emoji"],
                "additionalProperties": false
            }),
        }
    }

    fn call<'a>(
        &'a self,
        context: &'a mut ToolContext<'_>,
        arguments: serde_json::Value,
    ) -> ToolFuture<'a> {
        Box::pin(async move {
            let arguments: ReactionArguments = parse_arguments(ADD_REACTION, arguments)?;
            let emoji = arguments.emoji.trim().to_owned();
            if emoji.is_empty()
                || emoji.chars().count() > MAX_EMOJI_CHARS
                || emoji.chars().any(char::is_whitespace)
            {
                return Err(ToolError::Refused(
                    "`emoji` must be one emoji (at most 16 characters, no spaces)".into(),
                ));
            }
            let target_seq = Seq(arguments.seq);
            let destination = if target_seq.0 >= 0 && target_seq.0 % 2 == 0 {
                let row = context
                    .store
                    .call(move |store| store.inbound_row(target_seq))
                    .await?
                    .ok_or_else(|| {
                        ToolError::Refused(format!("there is no message with seq {target_seq}"))
                    })?;
                match row.kind {
                    InboundKind::Chat | InboundKind::Webhook => None,
                    InboundKind::Task | InboundKind::System => {
                        return Err(ToolError::Refused(format!(
                            "seq {target_seq} is a {} row, not a chat message",
                            row.kind
                        )));
                    }
                }
            } else {
                let row = context
                    .store
                    .call(move |store| store.own_row(target_seq))
                    .await?
                    .filter(|row| OutboundKind::parse(&row.kind) == Some(OutboundKind::Chat))
                    .ok_or_else(|| {
                        ToolError::Refused(format!(
                            "there is no chat message with seq {target_seq}"
                        ))
                    })?;
                row.destination
            };
            let seq = context
                .send(NewOutboundRow {
                    id: MessageId::generate(),
                    in_reply_to: None,
                    deliver_after: None,
                    kind: OutboundKind::Chat,
                    destination,
                    thread_id: None,
                    content: OutboundContent::Reaction {
                        target_seq,
                        emoji: emoji.clone(),
                    },
                })
                .await?;
            Ok(format!("reacted {emoji} to seq {target_seq} (seq {seq})"))
        })
    }
}

/// A file name the protocol accepts (ASCII letters, digits, `-`, `_`, `.`; not starting
/// with `.`; at most 128 bytes), keeping the extension when the name must be shortened.
pub fn safe_file_name(raw: &str) -> String {
    let mapped: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let trimmed = mapped.trim_start_matches('.');
    let mut name = if trimmed.is_empty() {
        "file".to_owned()
    } else {
        trimmed.to_owned()
    };
    if name.len() > MAX_FILE_NAME_BYTES {
        let extension = name
            .rfind('.')
            .map(|dot| name[dot..].to_owned())
            .filter(|extension| extension.len() <= 16)
            .unwrap_or_default();
        name.truncate(MAX_FILE_NAME_BYTES - extension.len());
        name.push_str(&extension);
    }
    debug_assert!(is_safe_folder_name(&name));
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::testing::Fixture;
    use protocol::{InboundContent, NewInboundRow, inbound};
    use serde_json::json;

    #[test]
    fn file_names_are_made_safe() {
        for (raw, expected) in [
            ("report.pdf", "report.pdf".to_owned()),
            ("my report (final).pdf", "my_report__final_.pdf".to_owned()),
            ("..hidden", "hidden".to_owned()),
            ("", "file".to_owned()),
            ("été.txt", "_t_.txt".to_owned()),
            (
                &format!("{}.txt", "a".repeat(200)),
                format!("{}.txt", "a".repeat(124)),
            ),
        ] {
            let safe = safe_file_name(raw);
            assert_eq!(safe, expected, "{raw}");
            assert!(is_safe_folder_name(&safe), "{safe}");
        }
    }

    #[tokio::test]
    async fn send_file_copies_into_the_outbox_before_the_row() {
        let mut fixture = Fixture::new().await;
        std::fs::create_dir_all(fixture.work("out")).unwrap();
        std::fs::write(fixture.work("out/chart 1.png"), b"PNG...").unwrap();
        let text = fixture
            .ok(
                SendFile,
                json!({"path": "out/chart 1.png", "text": "the chart"}),
            )
            .await;
        assert!(
            text.starts_with("sent chart_1.png (6 bytes) (seq "),
            "{text}"
        );
        assert!(fixture.effects.sent_to_origin);
        let rows = fixture.outbound_rows();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows[0].content,
            r#"{"files":["chart_1.png"],"text":"the chart"}"#
        );
        let copied = fixture
            .paths
            .outbox(rows[0].id.as_str())
            .join("chart_1.png");
        assert_eq!(std::fs::read(copied).unwrap(), b"PNG...");

        let elsewhere = fixture
            .ok(
                SendFile,
                json!({"path": "out/chart 1.png", "to": "family", "name": "c.png"}),
            )
            .await;
        assert!(elsewhere.starts_with("sent c.png"), "{elsewhere}");
        for (arguments, fragment) in [
            (json!({"path": "nope.png"}), "nope.png does not exist"),
            (json!({"path": "out"}), "out is not a file"),
            (
                json!({"path": "../out/outbound.db"}),
                "is outside the workspace",
            ),
            (
                json!({"path": "out/chart 1.png", "to": "boss"}),
                "valid destinations: family",
            ),
        ] {
            let error = fixture.error(SendFile, arguments).await;
            assert!(error.contains(fragment), "{error} lacks {fragment}");
        }
        assert_eq!(fixture.outbound_rows().len(), 2, "refusals write nothing");
        let outbox_entries = std::fs::read_dir(fixture.paths.out_dir().join("outbox"))
            .unwrap()
            .count();
        assert_eq!(outbox_entries, 2, "refusals leave no outbox folder");
    }

    #[tokio::test]
    async fn edits_and_reactions_name_real_messages() {
        let mut fixture = Fixture::new().await;
        let chat = NewInboundRow::chat(&InboundContent {
            text: "hi".into(),
            ..Default::default()
        });
        let chat_seq = inbound::insert(&fixture.host, &chat, None).unwrap();
        let task = NewInboundRow::task("t-1", "water", 0, None);
        let task_seq = inbound::insert(&fixture.host, &task, None).unwrap();
        let sent = fixture
            .ok(
                super::super::send_message::SendMessage,
                json!({"to": "family", "text": "draft"}),
            )
            .await;
        let own_seq: i64 = sent
            .trim_start_matches("sent (seq ")
            .trim_end_matches(')')
            .parse()
            .unwrap();

        let edited = fixture
            .ok(EditMessage, json!({"seq": own_seq, "text": "final"}))
            .await;
        assert!(
            edited.starts_with(&format!("edited seq {own_seq} (seq ")),
            "{edited}"
        );
        let reacted = fixture
            .ok(AddReaction, json!({"seq": chat_seq.0, "emoji": "👍"}))
            .await;
        assert!(
            reacted.starts_with(&format!("reacted 👍 to seq {chat_seq}")),
            "{reacted}"
        );
        fixture
            .ok(AddReaction, json!({"seq": own_seq, "emoji": "✅"}))
            .await;
        let rows = fixture.outbound_rows();
        assert_eq!(
            rows[1].content,
            format!(r#"{{"operation":"edit","target_seq":{own_seq},"text":"final"}}"#)
        );
        assert_eq!(rows[1].destination.as_deref(), Some("family"));
        assert_eq!(rows[2].destination, None);
        assert_eq!(rows[3].destination.as_deref(), Some("family"));
        assert!(
            !fixture.effects.sent_to_origin,
            "edits and reactions are not answers"
        );

        let edit_of_edit = rows[1].seq.0;
        for (arguments, fragment) in [
            (
                json!({"seq": chat_seq.0, "text": "x"}),
                "is not one of your messages",
            ),
            (
                json!({"seq": 999, "text": "x"}),
                "you have sent no message with seq 999",
            ),
            (
                json!({"seq": edit_of_edit, "text": "x"}),
                "is not a plain message",
            ),
            (json!({"seq": own_seq, "text": ""}), "`text` is empty"),
        ] {
            let error = fixture.error(EditMessage, arguments).await;
            assert!(error.contains(fragment), "{error} lacks {fragment}");
        }
        for (arguments, fragment) in [
            (
                json!({"seq": 1000, "emoji": "👍"}),
                "there is no message with seq 1000",
            ),
            (json!({"seq": task_seq.0, "emoji": "👍"}), "is a task row"),
            (
                json!({"seq": 999, "emoji": "👍"}),
                "there is no chat message with seq 999",
            ),
            (
                json!({"seq": chat_seq.0, "emoji": "thumbs up"}),
                "must be one emoji",
            ),
        ] {
            let error = fixture.error(AddReaction, arguments).await;
            assert!(error.contains(fragment), "{error} lacks {fragment}");
        }
    }
}
