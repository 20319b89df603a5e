//! What the model reads: the system prompt ([`system_prompt`]: the group's `AGENT.md`, the
//! destinations, a note on tools) and inbound rows rendered as user text ([`render_rows`]:
//! one `[seq 12] Ann: text` line per row).

use protocol::paths::AGENT_INSTRUCTIONS;
use protocol::{
    Destination, DestinationType, InboundContent, InboundKind, InboundRow, SessionPaths,
};
use std::fmt::Write;
use std::path::Path;

/// The instructions used when the group has no readable `AGENT.md`.
pub const DEFAULT_INSTRUCTIONS: &str = "You are a helpful assistant taking part in a chat. \
Answer clearly and briefly, in the language you are addressed in.";

/// The group's instructions from `<group_dir>/AGENT.md`, or [`DEFAULT_INSTRUCTIONS`].
pub fn load_instructions(group_dir: &Path) -> String {
    let path = group_dir.join(AGENT_INSTRUCTIONS);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => text,
        Ok(_) => DEFAULT_INSTRUCTIONS.to_owned(),
        Err(error) => {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), %error, "cannot read the agent instructions; using the default");
            }
            DEFAULT_INSTRUCTIONS.to_owned()
        }
    }
}

/// The system prompt: instructions, destinations, and how messages and tools work.
pub fn system_prompt(instructions: &str, destinations: &[Destination]) -> String {
    let mut prompt = instructions.trim_end().to_owned();
    prompt.push_str("\n\n## Destinations\n\n");
    if destinations.is_empty() {
        prompt.push_str(
            "You have no named destinations: you can only answer the chat this conversation came from.\n",
        );
    } else {
        prompt
            .push_str("Besides the chat this conversation came from, you can send messages to:\n");
        for destination in destinations {
            let kind = match destination.destination_type {
                DestinationType::Channel => "a chat",
                DestinationType::Agent => "another agent",
            };
            let _ = writeln!(
                prompt,
                "- `{}`: {} ({kind})",
                destination.name, destination.display_name
            );
        }
    }
    prompt.push_str(
        "\n## How this works\n\n\
Each new message reaches you as a line `[seq N] sender: text`; `task` and `system` lines come \
from the scheduler and the host, not from a person. Your final answer is sent to the chat \
this conversation came from. Use the `send_message` tool to send to a named destination, or \
to send something to this chat before you finish; if you send to this chat with the tool, \
your final answer is not sent as well. Answer with empty text to send nothing.\n",
    );
    prompt
}

/// New inbound rows as one user message, a line per row.
pub fn render_rows(rows: &[InboundRow], paths: &SessionPaths) -> String {
    let mut text = String::new();
    for row in rows {
        if !text.is_empty() {
            text.push('\n');
        }
        let content: InboundContent = serde_json::from_str(&row.content).unwrap_or_else(|error| {
            tracing::warn!(seq = %row.seq, %error, "inbound content is not the expected JSON; showing it raw");
            InboundContent {
                text: row.content.clone(),
                ..InboundContent::default()
            }
        });
        let who = match row.kind {
            InboundKind::Chat | InboundKind::Webhook => content
                .sender
                .as_ref()
                .map(|sender| sender.name.clone().unwrap_or_else(|| sender.id.clone()))
                .unwrap_or_else(|| row.kind.as_str().to_owned()),
            InboundKind::Task | InboundKind::System => row.kind.as_str().to_owned(),
        };
        let _ = write!(text, "[seq {}] {who}: {}", row.seq, content.text);
        if !content.attachments.is_empty() {
            let inbox = paths.inbox(row.id.as_str());
            let files: Vec<String> = content
                .attachments
                .iter()
                .map(|name| inbox.join(name).display().to_string())
                .collect();
            let _ = write!(text, " [attachments: {}]", files.join(", "));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{InboundStatus, MessageId, Sender, Seq};

    fn row(seq: i64, kind: InboundKind, content: &str) -> InboundRow {
        InboundRow {
            id: MessageId::new(format!("m{seq}")),
            seq: Seq(seq),
            kind,
            created_at: 0,
            status: InboundStatus::Pending,
            process_after: None,
            recurrence: None,
            series_id: None,
            tries: 0,
            trigger: true,
            on_wake: false,
            channel_type: None,
            platform_id: None,
            thread_id: None,
            source_session_id: None,
            content: content.to_owned(),
        }
    }

    fn content(text: &str, sender: Option<(&str, Option<&str>)>, attachments: &[&str]) -> String {
        serde_json::to_string(&InboundContent {
            text: text.into(),
            sender: sender.map(|(id, name)| Sender {
                id: id.into(),
                name: name.map(str::to_owned),
            }),
            attachments: attachments.iter().map(|a| a.to_string()).collect(),
        })
        .unwrap()
    }

    #[test]
    fn rows_render_one_line_each() {
        let rows = [
            row(
                12,
                InboundKind::Chat,
                &content("hi", Some(("u1", Some("Ann"))), &[]),
            ),
            row(
                14,
                InboundKind::Chat,
                &content("pic", Some(("u2", None)), &["a.png"]),
            ),
            row(
                16,
                InboundKind::Task,
                &content("water the plants", None, &[]),
            ),
            row(
                18,
                InboundKind::System,
                &content("delivery failed", None, &[]),
            ),
            row(20, InboundKind::Webhook, "not json"),
        ];
        let text = render_rows(&rows, &SessionPaths::at("/session"));
        assert_eq!(
            text,
            "[seq 12] Ann: hi\n\
             [seq 14] u2: pic [attachments: /session/in/inbox/m14/a.png]\n\
             [seq 16] task: water the plants\n\
             [seq 18] system: delivery failed\n\
             [seq 20] webhook: not json"
        );
    }

    #[test]
    fn system_prompt_snapshot() {
        let destinations = [
            Destination {
                name: "family".into(),
                display_name: "Family group".into(),
                destination_type: DestinationType::Channel,
                channel_type: Some("telegram".into()),
                platform_id: Some("-100".into()),
                thread_id: None,
                agent_group_id: None,
            },
            Destination {
                name: "researcher".into(),
                display_name: "Research agent".into(),
                destination_type: DestinationType::Agent,
                channel_type: None,
                platform_id: None,
                thread_id: None,
                agent_group_id: Some(protocol::AgentGroupId::new("research")),
            },
        ];
        insta::assert_snapshot!(system_prompt("You are Pip.\n", &destinations));
        insta::assert_snapshot!("no_destinations", system_prompt(DEFAULT_INSTRUCTIONS, &[]));
    }

    #[test]
    fn instructions_fall_back_to_the_default() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_instructions(dir.path()), DEFAULT_INSTRUCTIONS);
        std::fs::write(dir.path().join("AGENT.md"), "Be Pip.").unwrap();
        assert_eq!(load_instructions(dir.path()), "Be Pip.");
    }
}
