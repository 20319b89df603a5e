//! What the model reads: the system prompt ([`system_prompt`]: the group's `AGENT.md`, its
//! skills from `skills/*/SKILL.md` ([`load_skills`]), the destinations, and how messages and
//! tools work) and inbound rows rendered as user text ([`render_rows`]: one
//! `[seq 12 at 2025-06-01 09:00 UTC] Ann: text` line per row; [`attachment_files`] names
//! their attachments, so images among them can reach the model as image input).

use crate::clock::format_minutes;
use protocol::paths::AGENT_INSTRUCTIONS;
use protocol::{
    Destination, DestinationType, InboundContent, InboundKind, InboundRow, SessionPaths,
};
use std::fmt::Write;
use std::path::{Component, Path, PathBuf};

/// The folder of skills inside the group folder: `skills/<name>/SKILL.md`.
pub const SKILLS_DIR: &str = "skills";
/// The file of one skill.
pub const SKILL_FILE: &str = "SKILL.md";
/// Longest skill included, in bytes; a longer one is cut with a note.
pub const MAX_SKILL_BYTES: usize = 32 * 1024;
/// Most bytes of skills included in all; skills past it are left out with a note.
pub const MAX_SKILLS_BYTES: usize = 128 * 1024;

/// One skill: its folder name and the text of its `SKILL.md`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skill {
    pub name: String,
    pub text: String,
}

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

/// The group's skills, `<group_dir>/skills/*/SKILL.md`, sorted by folder name. Unreadable
/// or empty skills are skipped; sizes are capped ([`MAX_SKILL_BYTES`], [`MAX_SKILLS_BYTES`]).
pub fn load_skills(group_dir: &Path) -> Vec<Skill> {
    let folder = group_dir.join(SKILLS_DIR);
    let Ok(entries) = std::fs::read_dir(&folder) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.path().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut skills = Vec::new();
    let mut total = 0;
    for name in names {
        let path = folder.join(&name).join(SKILL_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) if !text.trim().is_empty() => text,
            Ok(_) => continue,
            Err(error) => {
                if error.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), %error, "cannot read a skill; leaving it out");
                }
                continue;
            }
        };
        let mut text = text.trim().to_owned();
        if text.len() > MAX_SKILL_BYTES {
            let mut cut = MAX_SKILL_BYTES;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str("\n\n(this skill was cut: it is longer than 32 KB)");
        }
        if total + text.len() > MAX_SKILLS_BYTES {
            tracing::warn!(skill = %name, "the skills are over 128 KB in all; leaving the rest out");
            break;
        }
        total += text.len();
        skills.push(Skill { name, text });
    }
    skills
}

/// The system prompt: instructions, skills, destinations, and how messages and tools work.
pub fn system_prompt(instructions: &str, skills: &[Skill], destinations: &[Destination]) -> String {
    let mut prompt = instructions.trim_end().to_owned();
    if !skills.is_empty() {
        prompt.push_str(
            "\n\n## Skills\n\nSkills from your group folder; follow a skill when it applies.\n",
        );
        for skill in skills {
            let _ = write!(prompt, "\n### {}\n\n{}\n", skill.name, skill.text);
        }
        prompt.truncate(prompt.trim_end().len());
    }
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
Each new message reaches you as a line `[seq N at TIME] sender: text`; times are UTC. `task` \
lines are your scheduled tasks coming due; `system` lines come from the host, not from a \
person. Your final answer is sent to the chat this conversation came from. Use `send_message` \
to send to a named destination, or to send something to this chat before you finish; if you \
send to this chat with a tool, your final answer is not sent as well. Answer with empty text \
to send nothing.\n\n\
Your working folder is /session/work; its files stay across restarts. Work on them with \
`bash`, `read_file`, `write_file`, `edit_file`, `list_files` and `grep`. To ask the person \
something and wait for the answer, use `ask_user_question`. For work with several steps, \
show your plan with `todo_write` and keep it current. To do something later or repeatedly, \
use `schedule_task`. A seq names a message: use it with `edit_message` and `add_reaction`.\n",
    );
    prompt
}

/// A row's content; content that is not the expected JSON is shown raw.
fn row_content(row: &InboundRow) -> InboundContent {
    serde_json::from_str(&row.content).unwrap_or_else(|error| {
        tracing::warn!(seq = %row.seq, %error, "inbound content is not the expected JSON; showing it raw");
        InboundContent {
            text: row.content.clone(),
            ..InboundContent::default()
        }
    })
}

/// The attachments of `rows` as (file name, path in the inbox), in row order. A name that
/// is not a plain file name (the host never writes one) is left out.
pub fn attachment_files(rows: &[InboundRow], paths: &SessionPaths) -> Vec<(String, PathBuf)> {
    let mut files = Vec::new();
    for row in rows {
        let inbox = paths.inbox(row.id.as_str());
        for name in row_content(row).attachments {
            let mut components = Path::new(&name).components();
            let plain = matches!(
                (components.next(), components.next()),
                (Some(Component::Normal(_)), None)
            );
            if plain {
                files.push((name.clone(), inbox.join(&name)));
            } else {
                tracing::warn!(seq = %row.seq, "an attachment name is not a plain file name");
            }
        }
    }
    files
}

/// New inbound rows as one user message, a line per row.
pub fn render_rows(rows: &[InboundRow], paths: &SessionPaths) -> String {
    let mut text = String::new();
    for row in rows {
        if !text.is_empty() {
            text.push('\n');
        }
        let content = row_content(row);
        let who = match row.kind {
            InboundKind::Chat | InboundKind::Webhook => content
                .sender
                .as_ref()
                .map(|sender| sender.name.clone().unwrap_or_else(|| sender.id.clone()))
                .unwrap_or_else(|| row.kind.as_str().to_owned()),
            InboundKind::Task => match &row.series_id {
                Some(task_id) => format!("task {task_id}"),
                None => "task".to_owned(),
            },
            InboundKind::System => row.kind.as_str().to_owned(),
        };
        let who = match &content.question_id {
            Some(question_id) => format!("{who} (answering question {question_id})"),
            None => who,
        };
        let said = content.answer_text().unwrap_or(&content.text);
        let _ = write!(
            text,
            "[seq {} at {}] {who}: {said}",
            row.seq,
            format_minutes(row.created_at)
        );
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
            created_at: 1_748_768_405_000,
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
            ..InboundContent::default()
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
            row(
                22,
                InboundKind::Chat,
                r#"{"text":"the blue one","answer":"Blue","question_id":"q-1","sender":{"id":"u1","name":"Ann"}}"#,
            ),
        ];
        let mut rows = rows.to_vec();
        rows[2].series_id = Some("t-7".into());
        let text = render_rows(&rows, &SessionPaths::at("/session"));
        assert_eq!(
            text,
            "[seq 12 at 2025-06-01 09:00 UTC] Ann: hi\n\
             [seq 14 at 2025-06-01 09:00 UTC] u2: pic [attachments: /session/in/inbox/m14/a.png]\n\
             [seq 16 at 2025-06-01 09:00 UTC] task t-7: water the plants\n\
             [seq 18 at 2025-06-01 09:00 UTC] system: delivery failed\n\
             [seq 20 at 2025-06-01 09:00 UTC] webhook: not json\n\
             [seq 22 at 2025-06-01 09:00 UTC] Ann (answering question q-1): Blue"
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
        let skills = [Skill {
            name: "weather".into(),
            text: "Look the forecast up before answering.".into(),
        }];
        insta::assert_snapshot!(system_prompt("You are Pip.\n", &skills, &destinations));
        insta::assert_snapshot!(
            "no_destinations",
            system_prompt(DEFAULT_INSTRUCTIONS, &[], &[])
        );
    }

    #[test]
    fn skills_are_sorted_and_capped() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_skills(dir.path()).is_empty());
        for (name, text) in [
            ("zeta", "Z skill"),
            ("alpha", "A skill\n"),
            ("empty", "  "),
            ("big", &"x".repeat(MAX_SKILL_BYTES + 10)),
        ] {
            let folder = dir.path().join(SKILLS_DIR).join(name);
            std::fs::create_dir_all(&folder).unwrap();
            std::fs::write(folder.join(SKILL_FILE), text).unwrap();
        }
        std::fs::create_dir_all(dir.path().join(SKILLS_DIR).join("no-file")).unwrap();
        std::fs::write(dir.path().join(SKILLS_DIR).join("stray.md"), "not a skill").unwrap();
        let skills = load_skills(dir.path());
        let names: Vec<&str> = skills.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["alpha", "big", "zeta"]);
        assert_eq!(skills[0].text, "A skill");
        assert!(
            skills[1]
                .text
                .ends_with("(this skill was cut: it is longer than 32 KB)")
        );
    }

    #[test]
    fn instructions_fall_back_to_the_default() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_instructions(dir.path()), DEFAULT_INSTRUCTIONS);
        std::fs::write(dir.path().join("AGENT.md"), "Be Pip.").unwrap();
        assert_eq!(load_instructions(dir.path()), "Be Pip.");
    }
}
