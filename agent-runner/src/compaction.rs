//! Keeping long conversations within the model's context window. Before each model call,
//! [`compact_if_needed`] estimates the request's size ([`estimate_tokens`]: characters / 4);
//! past `compact_at_percent` of `context_window_tokens` (both from `session_config`) it asks
//! the model to condense the older turns into one note ([`SUMMARY_SYSTEM_PROMPT`]) and
//! replaces them in the transcript with an [`Entry::Summary`], keeping the last
//! [`KEEP_RECENT_TURNS`] turns verbatim (or only the current one when that is not enough).
//! Images count as [`TOKENS_PER_IMAGE`] each for the few that are sent; the summariser
//! sees them named, never as image input.
//!
//! The summarisation request is recognisable by its system prompt (it starts with
//! "You condense") and its empty tool list. If it fails, the turn goes on with the full
//! conversation and compaction is not tried again in that turn.

use crate::config::Limits;
use crate::model::images::{ImageInputs, MAX_SENT_IMAGES};
use crate::model::{ModelClient, ModelError, ModelRequest};
use crate::tools::ToolDefinition;
use crate::transcript::{Entry, Transcript, TranscriptError};

/// The system prompt of a summarisation request.
pub const SUMMARY_SYSTEM_PROMPT: &str = "You condense a chat agent's conversation history into \
a compact note that the agent will read instead of the history. Keep: who said what (people's \
names as they appear), requests and decisions, facts and numbers that may matter later, what \
the agent promised, open tasks and questions (what is done and what is not), scheduled task \
ids, files in /session/work the agent made or uses, and the seqs of messages it may still edit \
or react to. Drop greetings, repetition and tool output that no longer matters. Write plain \
text in short lines, at most about 400 words, in the language of the conversation. Write only \
the note.";

/// Turns (a user entry and what followed it) kept verbatim when compacting.
pub const KEEP_RECENT_TURNS: usize = 2;
/// The estimate's rule of thumb: about four characters per token for English text and code
/// (it overestimates for code-heavy text and underestimates for some languages; the
/// threshold leaves room for that).
pub const CHARS_PER_TOKEN: usize = 4;
/// Per-message overhead of the chat formats, in tokens.
const TOKENS_PER_ENTRY: usize = 4;
/// What one image sent as input costs, in tokens: the providers scale a large image down to
/// about 1.15 megapixels, which is about 1600 tokens (Anthropic: width * height / 750).
pub const TOKENS_PER_IMAGE: usize = 1600;
/// The length of an image's text placeholder, in characters, roughly.
const IMAGE_PLACEHOLDER_CHARS: usize = 100;
/// Most tokens the summary may take.
const MAX_SUMMARY_TOKENS: u32 = 2048;
/// Longest tool result or call arguments shown to the summariser, in characters.
const MAX_DETAIL_CHARS: usize = 1000;

/// What [`compact_if_needed`] did.
#[derive(Debug)]
pub enum Compaction {
    /// The request fits.
    NotNeeded,
    /// Over the threshold, but only the current turn (or a summary) is left to condense.
    NothingToCompact { estimated_tokens: u32 },
    /// Older turns were replaced by a summary.
    Compacted {
        before_tokens: u32,
        after_tokens: u32,
        n_entries: usize,
    },
    /// The summarisation call failed; the transcript is unchanged.
    Failed(ModelError),
}

/// The estimated size of a request, in tokens.
pub fn estimate_tokens(system: &str, entries: &[Entry], tools: &[ToolDefinition]) -> u32 {
    let mut chars = system.chars().count();
    for entry in entries {
        chars += TOKENS_PER_ENTRY * CHARS_PER_TOKEN;
        chars += match entry {
            Entry::User { text, .. } | Entry::Summary { text, .. } => text.chars().count(),
            Entry::Assistant { text, tool_calls } => {
                text.chars().count()
                    + tool_calls
                        .iter()
                        .map(|call| {
                            call.name.len() + call.arguments.chars().count() + call.id.len()
                        })
                        .sum::<usize>()
            }
            Entry::ToolResult {
                content, call_id, ..
            } => content.chars().count() + call_id.len(),
        };
    }
    for tool in tools {
        chars += tool.name.len() + tool.description.len() + tool.parameters.to_string().len();
    }
    // The newest images are sent as image input; older ones are a line of text each.
    let n_images: usize = entries.iter().map(|entry| entry.images().len()).sum();
    let n_sent = n_images.min(MAX_SENT_IMAGES);
    let tokens = chars / CHARS_PER_TOKEN + n_sent * TOKENS_PER_IMAGE;
    let tokens = tokens + (n_images - n_sent) * IMAGE_PLACEHOLDER_CHARS / CHARS_PER_TOKEN;
    u32::try_from(tokens).unwrap_or(u32::MAX)
}

/// The index of the first entry kept verbatim: the start of the `keep_turns`-th last turn.
/// `None` when nothing before it is worth condensing (nothing, or one summary alone).
pub fn split_point(entries: &[Entry], keep_turns: usize) -> Option<usize> {
    let starts: Vec<usize> = entries
        .iter()
        .enumerate()
        .filter(|(_, entry)| matches!(entry, Entry::User { .. }))
        .map(|(index, _)| index)
        .collect();
    let cut = *starts.get(starts.len().checked_sub(keep_turns.max(1))?)?;
    match &entries[..cut] {
        [] | [Entry::Summary { .. }] => None,
        _ => Some(cut),
    }
}

/// Compacts the transcript when the next request would be too large.
pub async fn compact_if_needed(
    model: &ModelClient,
    transcript: &mut Transcript,
    limits: &Limits,
    system: &str,
    tools: &[ToolDefinition],
) -> Result<Compaction, TranscriptError> {
    let before_tokens = estimate_tokens(system, transcript.entries(), tools);
    if before_tokens <= limits.compact_at_tokens {
        return Ok(Compaction::NotNeeded);
    }
    let entries = transcript.entries();
    let Some(cut) = split_point(entries, KEEP_RECENT_TURNS).or_else(|| split_point(entries, 1))
    else {
        return Ok(Compaction::NothingToCompact {
            estimated_tokens: before_tokens,
        });
    };
    // The summariser sees the older part; leave it room for its prompt and its answer.
    let budget_chars = usize::try_from(limits.context_window_tokens)
        .unwrap_or(usize::MAX)
        .saturating_mul(CHARS_PER_TOKEN)
        / 10
        * 6;
    let history = render_history(&entries[..cut], budget_chars);
    let request_entries = [Entry::User {
        text: format!("Condense this conversation history:\n\n{history}"),
        seqs: Vec::new(),
        images: Vec::new(),
    }];
    // The summariser reads the history as text: images are named, not sent.
    let no_images = ImageInputs::none();
    let request = ModelRequest {
        model: &limits.config.model,
        system: SUMMARY_SYSTEM_PROMPT,
        entries: &request_entries,
        tools: &[],
        max_output_tokens: limits.config.max_output_tokens.min(MAX_SUMMARY_TOKENS),
        images: &no_images,
    };
    let summary = match model.complete(&request).await {
        Ok(response) if !response.text.trim().is_empty() => response.text.trim().to_owned(),
        Ok(_) => {
            return Ok(Compaction::Failed(ModelError::Decode(
                "the model returned an empty summary".into(),
            )));
        }
        Err(error) => return Ok(Compaction::Failed(error)),
    };
    let seqs: Vec<i64> = entries[..cut]
        .iter()
        .flat_map(|entry| match entry {
            Entry::User { seqs, .. } | Entry::Summary { seqs, .. } => seqs.clone(),
            Entry::Assistant { .. } | Entry::ToolResult { .. } => Vec::new(),
        })
        .collect();
    let mut compacted = Vec::with_capacity(entries.len() - cut + 1);
    compacted.push(Entry::Summary {
        text: summary,
        seqs,
    });
    compacted.extend_from_slice(&entries[cut..]);
    transcript.replace(compacted)?;
    Ok(Compaction::Compacted {
        before_tokens,
        after_tokens: estimate_tokens(system, transcript.entries(), tools),
        n_entries: cut,
    })
}

/// The older entries as plain text for the summariser, cut in the middle past `budget`
/// characters.
fn render_history(entries: &[Entry], budget: usize) -> String {
    let mut text = String::new();
    for entry in entries {
        match entry {
            Entry::Summary { text: summary, .. } => {
                text.push_str(&format!("(summary of what came before)\n{summary}\n\n"));
            }
            Entry::User {
                text: user, images, ..
            } => {
                text.push_str(user);
                for image in images {
                    text.push_str(&format!(" {}", image.describe()));
                }
                text.push_str("\n\n");
            }
            Entry::Assistant {
                text: said,
                tool_calls,
            } => {
                if !said.trim().is_empty() {
                    text.push_str(&format!("assistant: {said}\n"));
                }
                for call in tool_calls {
                    text.push_str(&format!(
                        "assistant called {}({})\n",
                        call.name,
                        shorten(&call.arguments)
                    ));
                }
                text.push('\n');
            }
            Entry::ToolResult {
                content,
                is_error,
                images,
                ..
            } => {
                let label = if *is_error {
                    "tool error"
                } else {
                    "tool result"
                };
                text.push_str(&format!("{label}: {}", shorten(content)));
                for image in images {
                    text.push_str(&format!(" {}", image.describe()));
                }
                text.push_str("\n\n");
            }
        }
    }
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= budget {
        return text;
    }
    let head: String = chars[..budget / 3].iter().collect();
    let tail: String = chars[chars.len() - (budget - budget / 3)..]
        .iter()
        .collect();
    format!(
        "{head}\n[... {} characters of history omitted ...]\n{tail}",
        chars.len() - budget
    )
}

fn shorten(text: &str) -> String {
    let mut short: String = text.chars().take(MAX_DETAIL_CHARS).collect();
    if short.len() < text.len() {
        short.push_str(" [...]");
    }
    short
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transcript::ToolCall;

    fn user(seq: i64) -> Entry {
        Entry::User {
            text: format!("[seq {seq}] Ann: hello"),
            seqs: vec![seq],
            images: Vec::new(),
        }
    }

    fn assistant(text: &str) -> Entry {
        Entry::Assistant {
            text: text.into(),
            tool_calls: vec![],
        }
    }

    #[test]
    fn split_points() {
        let summary = Entry::Summary {
            text: "s".into(),
            seqs: vec![0],
        };
        let three_turns = vec![user(2), assistant("a"), user(4), assistant("b"), user(6)];
        assert_eq!(split_point(&three_turns, 2), Some(2));
        assert_eq!(split_point(&three_turns, 1), Some(4));
        assert_eq!(
            split_point(&three_turns, 3),
            None,
            "nothing before the first turn"
        );
        assert_eq!(split_point(&three_turns, 4), None);
        let after_summary = vec![summary.clone(), user(8), assistant("c")];
        assert_eq!(
            split_point(&after_summary, 1),
            None,
            "a summary alone is not condensed again"
        );
        let summary_and_turn = vec![summary, user(8), assistant("c"), user(10)];
        assert_eq!(split_point(&summary_and_turn, 1), Some(3));
        assert_eq!(split_point(&[], 1), None);
    }

    #[test]
    fn estimate_counts_everything() {
        let entries = vec![
            user(2),
            Entry::Assistant {
                text: String::new(),
                tool_calls: vec![ToolCall {
                    id: "c".into(),
                    name: "bash".into(),
                    arguments: "x".repeat(400),
                }],
            },
            Entry::ToolResult {
                call_id: "c".into(),
                content: "y".repeat(4000),
                is_error: false,
                images: Vec::new(),
            },
        ];
        let estimate = estimate_tokens(&"s".repeat(40), &entries, &[]);
        assert_eq!(estimate, (40 + 3 * 16 + 18 + 405 + 4001) / 4);
        let image = crate::image::ImageRef {
            file: "a.png".into(),
            format: crate::image::ImageFormat::Png,
            width: 800,
            height: 600,
            name: "a.png".into(),
            bytes: 100,
        };
        let with_images = [Entry::ToolResult {
            call_id: "c".into(),
            content: String::new(),
            is_error: false,
            images: vec![image; MAX_SENT_IMAGES + 2],
        }];
        let estimate = estimate_tokens("", &with_images, &[]);
        assert_eq!(
            estimate as usize,
            (16 + 1) / 4 + MAX_SENT_IMAGES * TOKENS_PER_IMAGE + 2 * 100 / 4
        );
    }

    #[test]
    fn history_is_rendered_and_cut_in_the_middle() {
        let entries = vec![
            Entry::Summary {
                text: "Earlier: Bob left.".into(),
                seqs: vec![],
            },
            user(2),
            Entry::Assistant {
                text: "Checking.".into(),
                tool_calls: vec![ToolCall {
                    id: "c".into(),
                    name: "read_file".into(),
                    arguments: r#"{"path":"a"}"#.into(),
                }],
            },
            Entry::ToolResult {
                call_id: "c".into(),
                content: "no such file".into(),
                is_error: true,
                images: Vec::new(),
            },
        ];
        assert_eq!(
            render_history(&entries, 10_000),
            "(summary of what came before)\nEarlier: Bob left.\n\n[seq 2] Ann: hello\n\nassistant: Checking.\nassistant called read_file({\"path\":\"a\"})\n\ntool error: no such file\n\n"
        );
        let cut = render_history(&vec![user(2); 50], 300);
        assert!(cut.contains("characters of history omitted"), "{cut}");
        assert!(cut.chars().count() < 400);
    }
}
