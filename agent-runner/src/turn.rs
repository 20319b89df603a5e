//! One agent turn ([`run_turn`]): claim the due rows, show the new ones to the model, run its
//! tool calls until it answers or the round limit is reached, then write the reply and mark
//! the rows `completed` in one transaction. Key types: [`TurnContext`], [`TurnSummary`].
//!
//! The final-reply rule ([`final_reply`]): the model's final text goes to the origin chat
//! unless a tool already sent there during the turn — never both; empty text sends nothing.
//! When the model cannot be reached the user is told why, and the rows are still completed,
//! so nothing hangs. Before each model call the conversation is compacted when it would
//! outgrow the context window (`compaction`). Images people attach, and images a tool
//! returns (`TurnEffects::images`), are kept under `out/images/` and referred to by the user
//! entry or the tool result; the newest few are sent with each request (`model::images`).
//!
//! While the model writes what may be the final reply, its text is drafted live to the host
//! (`live::ReplyDraft`); a response that calls a tool takes its draft back. An allowed `/stop`
//! ([`StopRequest`]) cuts the model call or tool in flight: the turn ends with one reply
//! keeping the text shown so far and a line saying it was stopped, recorded in the
//! transcript, and its rows and the `/stop` row are completed (`stop`).

use crate::compaction::{self, Compaction};
use crate::config::{Limits, ToolLimits};
use crate::image::ImageStore;
use crate::live::{LiveClient, ReplyDraft};
use crate::model::images::ImageInputs;
use crate::model::{ModelClient, ModelRequest, StreamNote};
use crate::prompt;
use crate::stop::{self, StopRequest};
use crate::store::{StoreError, StoreHandle};
use crate::tools::workspace::Workspace;
use crate::tools::{ToolContext, ToolRegistry, TurnEffects, send_message};
use crate::transcript::{self, Entry, Transcript, TranscriptError};
use protocol::content::MAX_TEXT_CHARS;
use protocol::{
    InboundRow, MessageContent, MessageId, NewOutboundRow, OutboundContent, OutboundKind, Seq,
    SessionPaths,
};
use std::path::Path;

/// Errors that end a turn early. The claimed rows stay `processing` and are taken again.
#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    /// Retryable when SQLite was busy.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Not retryable.
    #[error(transparent)]
    Transcript(#[from] TranscriptError),
}

/// Everything a turn uses.
pub struct TurnContext<'a> {
    pub store: &'a StoreHandle,
    pub model: &'a ModelClient,
    pub tools: &'a ToolRegistry,
    pub transcript: &'a mut Transcript,
    pub limits: &'a Limits,
    pub paths: &'a SessionPaths,
    pub group_dir: &'a Path,
    pub workspace: &'a Workspace,
    pub tool_limits: &'a ToolLimits,
    /// Where live drafts of the reply go.
    pub live: &'a LiveClient,
    /// Fired by an allowed `/stop` (already fired when the `/stop` came with the turn's rows).
    pub stop: &'a StopRequest,
}

/// How a turn ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TurnOutcome {
    /// The model gave its final answer.
    Answered,
    /// The model was still calling tools when `max_tool_rounds` was reached.
    RoundLimit,
    /// The model could not be reached; the user was told why.
    ModelFailed,
    /// The transcript already held the final answer (a crash before the commit): it was
    /// sent without calling the model again.
    Recovered,
    /// An owner or admin sent `/clear`: the conversation was reset.
    Cleared,
    /// Someone without the role sent `/clear`: they were told it is not theirs to use.
    ClearRefused,
    /// `/stop` from the person who started the turn (or an owner or admin) cut it short.
    Stopped,
    /// `/stop` from someone else: they were told it is not theirs to use.
    StopRefused,
    /// `/stop` with no turn running: they were told so.
    NothingToStop,
}

/// What a turn did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TurnSummary {
    pub outcome: TurnOutcome,
    /// The inbound rows completed.
    pub rows: Vec<MessageId>,
    pub model_calls: u32,
    /// Seqs of the final reply rows (none, or several when a long text was split).
    pub replies: Vec<Seq>,
    pub effects: TurnEffects,
}

/// The final-reply rule.
pub fn final_reply(final_text: &str, effects: &TurnEffects) -> Option<String> {
    if final_text.trim().is_empty() || effects.sent_to_origin {
        None
    } else {
        Some(final_text.to_owned())
    }
}

/// Runs one turn over `rows` (due rows in seq order, at least one of them a trigger).
pub async fn run_turn(
    context: TurnContext<'_>,
    rows: Vec<InboundRow>,
) -> Result<TurnSummary, TurnError> {
    let ids: Vec<MessageId> = rows.iter().map(|row| row.id.clone()).collect();
    let Some(in_reply_to) = rows
        .iter()
        .max_by_key(|row| row.seq)
        .map(|row| row.id.clone())
    else {
        return Ok(TurnSummary {
            outcome: TurnOutcome::Answered,
            rows: ids,
            model_calls: 0,
            replies: Vec::new(),
            effects: TurnEffects::default(),
        });
    };
    let mut draft = ReplyDraft::new(context.live.start_turn(in_reply_to.clone()));
    let claim = ids.clone();
    context.store.call(move |store| store.claim(&claim)).await?;
    let (destinations, routing) = context
        .store
        .call(|store| Ok((store.destinations()?, store.routing()?)))
        .await?;
    let system = prompt::system_prompt(
        &prompt::load_instructions(context.group_dir),
        &prompt::load_skills(context.group_dir),
        &destinations,
    );
    let config = &context.limits.config;
    let images = ImageStore::in_out_dir(&context.paths.out_dir());
    let transcript = context.transcript;
    let mut effects = TurnEffects::default();
    let mut model_calls = 0;
    let mut may_compact = true;

    let new_rows: Vec<InboundRow> = rows
        .into_iter()
        .filter(|row| !transcript.contains_seq(row.seq.0))
        .collect();
    let recovered = match transcript.entries().last() {
        Some(Entry::Assistant { text, tool_calls })
            if new_rows.is_empty() && tool_calls.is_empty() =>
        {
            Some(text.clone())
        }
        _ => None,
    };
    let (outcome, reply) = if let Some(text) = recovered {
        tracing::info!("the transcript already holds this turn's answer; sending it");
        effects.sent_to_origin = origin_sent_since_last_user(transcript.entries());
        (TurnOutcome::Recovered, final_reply(&text, &effects))
    } else {
        if !new_rows.is_empty() {
            let attachments = prompt::attachment_files(&new_rows, context.paths);
            let images = if attachments.is_empty() {
                Vec::new()
            } else {
                let store = images.clone();
                tokio::task::spawn_blocking(move || store.keep_files(&attachments))
                    .await
                    .unwrap_or_else(|error| {
                        tracing::warn!(%error, "could not keep the attached images");
                        Vec::new()
                    })
            };
            transcript.append(Entry::User {
                text: prompt::render_rows(&new_rows, context.paths),
                seqs: new_rows.iter().map(|row| row.seq.0).collect(),
                images,
            })?;
        }
        let mut last_text = String::new();
        loop {
            if context.stop.is_stopped() {
                break stopped(transcript, &mut draft)?;
            }
            if model_calls >= config.max_tool_rounds {
                tracing::warn!(model_calls, "the turn reached its limit of model calls");
                let reply = final_reply(&last_text, &effects).or_else(|| {
                    (!effects.sent_to_origin).then(|| {
                        format!(
                            "I stopped before finishing: this turn reached its limit of {} model calls.",
                            config.max_tool_rounds
                        )
                    })
                });
                break (TurnOutcome::RoundLimit, reply);
            }
            if may_compact {
                let compacted = tokio::select! {
                    biased;
                    () = context.stop.stopped() => None,
                    compacted = compact(
                        context.model,
                        transcript,
                        &images,
                        context.limits,
                        &system,
                        context.tools,
                    ) => Some(compacted?),
                };
                match compacted {
                    Some(again) => may_compact = again,
                    None => break stopped(transcript, &mut draft)?,
                }
            }
            let entries = transcript::for_model(transcript.entries());
            // At most a few megabytes of local files, read once per model call.
            let image_inputs = ImageInputs::load(&entries, &images, config.vision);
            let request = ModelRequest {
                model: &config.model,
                system: &system,
                entries: &entries,
                tools: context.tools.definitions(),
                max_output_tokens: config.max_output_tokens,
                images: &image_inputs,
            };
            model_calls += 1;
            let mut noting = |note: StreamNote<'_>| draft.note(note);
            let answered = tokio::select! {
                biased;
                () = context.stop.stopped() => None,
                answered = context.model.complete_noting(&request, &mut noting) => Some(answered),
            };
            let Some(answered) = answered else {
                break stopped(transcript, &mut draft)?;
            };
            let response = match answered {
                Ok(response) => response,
                Err(error) => {
                    tracing::error!(%error, "the model call failed");
                    let text = format!("I could not reach the model: {}", error.user_message());
                    break (TurnOutcome::ModelFailed, Some(text));
                }
            };
            tracing::debug!(text = %response.text, n_tool_calls = response.tool_calls.len(), "model answered");
            transcript.append(Entry::Assistant {
                text: response.text.clone(),
                tool_calls: response.tool_calls.clone(),
            })?;
            draft.end_response(!response.tool_calls.is_empty());
            if response.tool_calls.is_empty() {
                break (TurnOutcome::Answered, final_reply(&response.text, &effects));
            }
            let mut cut_short = false;
            for (position, call) in response.tool_calls.iter().enumerate() {
                let mut tool_context = ToolContext {
                    store: context.store,
                    destinations: &destinations,
                    routing: routing.as_ref(),
                    in_reply_to: &in_reply_to,
                    effects: &mut effects,
                    paths: context.paths,
                    workspace: context.workspace,
                    limits: context.limits,
                    tool_limits: context.tool_limits,
                };
                let result = tokio::select! {
                    biased;
                    () = context.stop.stopped() => None,
                    result = context.tools.run(&mut tool_context, call) => Some(result),
                };
                let call_images = std::mem::take(&mut effects.images);
                let Some(result) = result else {
                    close_stopped_calls(
                        context.store,
                        transcript,
                        &response.tool_calls[position..],
                    )
                    .await?;
                    cut_short = true;
                    break;
                };
                transcript.append(Entry::ToolResult {
                    call_id: call.id.clone(),
                    content: result.content,
                    is_error: result.is_error,
                    images: call_images,
                })?;
            }
            if cut_short {
                break stopped(transcript, &mut draft)?;
            }
            if effects.sent_to_origin {
                draft.stop_drafting();
            }
            last_text = response.text;
        }
    };
    draft.finish();

    let replies: Vec<NewOutboundRow> = reply
        .map(|text| split_text(&text, MAX_TEXT_CHARS))
        .unwrap_or_default()
        .into_iter()
        .map(|text| NewOutboundRow {
            id: MessageId::generate(),
            in_reply_to: Some(in_reply_to.clone()),
            deliver_after: None,
            kind: OutboundKind::Chat,
            destination: None,
            thread_id: None,
            content: OutboundContent::Message(MessageContent {
                text,
                files: Vec::new(),
            }),
        })
        .collect();
    let mut finished = ids.clone();
    finished.extend(effects.consumed_rows.iter().cloned());
    if outcome == TurnOutcome::Stopped {
        finished.extend(context.stop.row().cloned());
    }
    let reply_seqs = context
        .store
        .call(move |store| store.finish_turn(&replies, &finished))
        .await?;
    tracing::info!(
        ?outcome,
        n_rows = ids.len(),
        model_calls,
        n_replies = reply_seqs.len(),
        n_messages_sent = effects.n_messages_sent,
        "turn finished"
    );
    let mut rows = ids;
    if outcome == TurnOutcome::Stopped {
        rows.extend(context.stop.row().cloned());
    }
    Ok(TurnSummary {
        outcome,
        rows,
        model_calls,
        replies: reply_seqs,
        effects,
    })
}

/// Ends a stopped turn: the reply keeps what the draft showed, and the transcript records it
/// as the model's answer, so the conversation reads as the person saw it.
fn stopped(
    transcript: &mut Transcript,
    draft: &mut ReplyDraft,
) -> Result<(TurnOutcome, Option<String>), TranscriptError> {
    let text = stop::stopped_reply(&draft.finish());
    transcript.append(Entry::Assistant {
        text: text.clone(),
        tool_calls: Vec::new(),
    })?;
    tracing::info!("the turn was stopped by /stop");
    Ok((TurnOutcome::Stopped, Some(text)))
}

/// Gives the tool calls a stop cut short a result each (the model sees they were cancelled)
/// and clears the tool in progress, which the cut-off tool could not clear itself.
async fn close_stopped_calls(
    store: &StoreHandle,
    transcript: &mut Transcript,
    calls: &[crate::transcript::ToolCall],
) -> Result<(), TurnError> {
    for call in calls {
        transcript.append(Entry::ToolResult {
            call_id: call.id.clone(),
            content: stop::STOPPED_TOOL_RESULT.to_owned(),
            is_error: true,
            images: Vec::new(),
        })?;
    }
    if let Err(error) = store.call(|store| store.set_current_tool(None)).await {
        tracing::warn!(%error, "cannot clear the stopped tool from container_state");
    }
    Ok(())
}

/// Compacts the conversation when the next request would be too large, and removes the
/// images only the summarised entries referred to. Returns whether compaction may be tried
/// again in this turn (not after a failed summarisation).
async fn compact(
    model: &ModelClient,
    transcript: &mut Transcript,
    images: &ImageStore,
    limits: &Limits,
    system: &str,
    tools: &ToolRegistry,
) -> Result<bool, TranscriptError> {
    match compaction::compact_if_needed(model, transcript, limits, system, tools.definitions())
        .await?
    {
        Compaction::NotNeeded => Ok(true),
        Compaction::NothingToCompact { estimated_tokens } => {
            tracing::debug!(
                estimated_tokens,
                "over the compaction threshold, but only the current turn is left"
            );
            Ok(true)
        }
        Compaction::Compacted {
            before_tokens,
            after_tokens,
            n_entries,
        } => {
            tracing::info!(
                before_tokens,
                after_tokens,
                n_entries,
                "compacted the conversation"
            );
            images.prune(transcript.entries());
            Ok(true)
        }
        Compaction::Failed(error) => {
            tracing::warn!(%error, "could not compact the conversation; going on without");
            Ok(false)
        }
    }
}

/// After a restart: did a `send_message` without `to` succeed since the last user entry?
fn origin_sent_since_last_user(entries: &[Entry]) -> bool {
    let start = entries
        .iter()
        .rposition(|entry| matches!(entry, Entry::User { .. }))
        .map_or(0, |index| index + 1);
    let segment = &entries[start..];
    let succeeded = |id: &str| {
        segment.iter().any(|entry| {
            matches!(entry, Entry::ToolResult { call_id, is_error: false, .. } if call_id == id)
        })
    };
    segment.iter().any(|entry| match entry {
        Entry::Assistant { tool_calls, .. } => tool_calls.iter().any(|call| {
            let to_origin = serde_json::from_str::<serde_json::Value>(&call.arguments)
                .ok()
                .is_some_and(|arguments| {
                    arguments["to"]
                        .as_str()
                        .is_none_or(|to| to.trim().is_empty())
                });
            call.name == send_message::NAME && to_origin && succeeded(&call.id)
        }),
        Entry::User { .. } | Entry::ToolResult { .. } | Entry::Summary { .. } => false,
    })
}

/// Splits `text` into pieces of at most `max_chars` characters.
fn split_text(text: &str, max_chars: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(max_chars.max(1))
        .map(|chunk| chunk.iter().collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transcript::ToolCall;

    #[test]
    fn final_reply_rule() {
        let nothing_sent = TurnEffects::default();
        let sent_elsewhere = TurnEffects {
            sent_to_origin: false,
            n_messages_sent: 1,
            ..TurnEffects::default()
        };
        let sent_here = TurnEffects {
            sent_to_origin: true,
            n_messages_sent: 1,
            ..TurnEffects::default()
        };
        assert_eq!(final_reply("hi", &nothing_sent).as_deref(), Some("hi"));
        assert_eq!(final_reply("hi", &sent_elsewhere).as_deref(), Some("hi"));
        assert_eq!(final_reply("hi", &sent_here), None);
        assert_eq!(final_reply("  \n", &nothing_sent), None);
        assert_eq!(final_reply("", &sent_here), None);
    }

    #[test]
    fn origin_sends_are_found_after_a_restart() {
        let call = |id: &str, arguments: &str| ToolCall {
            id: id.into(),
            name: send_message::NAME.into(),
            arguments: arguments.into(),
        };
        let result = |id: &str, is_error: bool| Entry::ToolResult {
            call_id: id.into(),
            content: String::new(),
            is_error,
            images: Vec::new(),
        };
        let user = Entry::User {
            text: "q".into(),
            seqs: vec![2],
            images: Vec::new(),
        };
        let turn = |calls: Vec<ToolCall>, results: Vec<Entry>| {
            let mut entries = vec![user.clone()];
            entries.push(Entry::Assistant {
                text: String::new(),
                tool_calls: calls,
            });
            entries.extend(results);
            entries
        };
        let to_origin = turn(vec![call("a", r#"{"text":"x"}"#)], vec![result("a", false)]);
        assert!(origin_sent_since_last_user(&to_origin));
        let failed = turn(vec![call("a", r#"{"text":"x"}"#)], vec![result("a", true)]);
        assert!(!origin_sent_since_last_user(&failed));
        let elsewhere = turn(
            vec![call("a", r#"{"to":"family","text":"x"}"#)],
            vec![result("a", false)],
        );
        assert!(!origin_sent_since_last_user(&elsewhere));
        let mut earlier_turn = to_origin.clone();
        earlier_turn.push(user);
        assert!(!origin_sent_since_last_user(&earlier_turn));
    }

    #[test]
    fn long_text_is_split_by_characters() {
        assert_eq!(split_text("ééé", 2), ["éé", "é"]);
        assert_eq!(split_text("abc", 5), ["abc"]);
        assert!(split_text("", 5).is_empty());
    }
}
