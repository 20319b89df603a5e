//! How a terminal shows an agent's message: [`render`]. The terminal cannot edit or react, so
//! an edit or a reaction arrives as a new line saying so, a question comes with its numbered
//! options, and each update of a progress list is sent again in full.

use crate::channels::ChannelError;
use protocol::OutboundContent;

/// The text a terminal shows for a message: edits and reactions as lines saying so, a
/// question with its numbered options, a progress list item by item.
pub fn render(content: &OutboundContent) -> Result<String, ChannelError> {
    Ok(match content {
        OutboundContent::Message(m) => m.text.clone(),
        OutboundContent::Edit { target_seq, text } => format!("(edit of {target_seq}) {text}"),
        OutboundContent::Reaction { target_seq, emoji } => {
            format!("(reaction to {target_seq}) {emoji}")
        }
        OutboundContent::Question {
            title,
            question,
            options,
            question_id,
            ..
        } => {
            let numbered: Vec<String> = options
                .iter()
                .enumerate()
                .map(|(i, o)| format!("  {}. {o}", i + 1))
                .collect();
            let how = if options.is_empty() {
                "answer in your own words".to_owned()
            } else {
                "answer with a number or your own words".to_owned()
            };
            format!(
                "{title} [{question_id}]\n{question}\n{}{}({how})",
                numbered.join("\n"),
                if numbered.is_empty() { "" } else { "\n" }
            )
        }
        OutboundContent::Progress { items, target_seq } => {
            let heading = match target_seq {
                Some(seq) => format!("plan (update of {seq}):"),
                None => "plan:".to_owned(),
            };
            let lines: Vec<String> = items
                .iter()
                .map(|i| format!("[{}] {}", i.status, i.text))
                .collect();
            format!("{heading}\n{}", lines.join("\n"))
        }
        OutboundContent::System { action, .. } => {
            return Err(ChannelError::Rejected(format!(
                "system action {action} is not a chat message"
            )));
        }
    })
}
