//! Chat rows besides plain text, as delivery treats them: the host's own checks of their
//! hostile content ([`check`]), which platform message an edit, a reaction or a progress
//! update changes ([`target_of`]), a message's files copied out of the outbox for the
//! channel ([`Delivery::stage_files`]), and questions recorded in the central DB so their
//! answers find the asking session ([`Delivery::record_question`]).

use super::Delivery;
use super::outbox;
use crate::db::DbError;
use crate::db::central::questions::{self, NewQuestion};
use crate::edge::{Capabilities, ChatAddress};
use crate::session::SessionRef;
use protocol::content::PROGRESS_STATUSES;
use protocol::schedule::MAX_TASK_ID_BYTES;
use protocol::{OutboundContent, OutboundRow, Seq, Writer};
use std::path::PathBuf;

/// Longest question title, option, progress item or reaction the host passes on, in
/// characters.
const MAX_TITLE_CHARS: usize = 200;
const MAX_OPTION_CHARS: usize = 500;
const MAX_ITEM_CHARS: usize = 2000;
const MAX_EMOJI_CHARS: usize = 32;

/// Checks what `OutboundContent::parse` leaves to the host: ids, targets and item sizes.
pub fn check(content: &OutboundContent) -> Result<(), String> {
    let too_long = |what: &str, text: &str, cap: usize| {
        (text.chars().count() > cap).then(|| format!("{what} is over {cap} characters"))
    };
    let problem = match content {
        OutboundContent::Message(_) | OutboundContent::System { .. } => None,
        OutboundContent::Edit { target_seq, .. } => {
            (!Writer::Container.owns(*target_seq)).then(|| {
                format!("an edit must target one of the agent's own (odd) seqs, not {target_seq}")
            })
        }
        OutboundContent::Reaction { target_seq, emoji } => {
            if target_seq.0 < 0 {
                Some(format!("seq {target_seq} is not a message"))
            } else if emoji.trim().is_empty() {
                Some("the reaction is empty".into())
            } else {
                too_long("the reaction", emoji, MAX_EMOJI_CHARS)
            }
        }
        OutboundContent::Question {
            question_id,
            title,
            options,
            ..
        } => {
            if question_id.len() > MAX_TASK_ID_BYTES
                || !protocol::ids::is_safe_folder_name(question_id)
            {
                Some(format!(
                    "question id {:?} is not a plain id",
                    question_id.chars().take(80).collect::<String>()
                ))
            } else if options.iter().any(|option| option.trim().is_empty()) {
                Some("a question option is empty".into())
            } else {
                too_long("the question's title", title, MAX_TITLE_CHARS).or_else(|| {
                    options
                        .iter()
                        .find_map(|option| too_long("a question option", option, MAX_OPTION_CHARS))
                })
            }
        }
        OutboundContent::Progress { items, target_seq } => {
            if let Some(target) = target_seq
                && !Writer::Container.owns(*target)
            {
                Some(format!(
                    "a progress update must target the agent's own (odd) progress seq, not {target}"
                ))
            } else if let Some(item) = items
                .iter()
                .find(|item| !PROGRESS_STATUSES.contains(&item.status.as_str()))
            {
                Some(format!(
                    "progress status {:?} is not one of {}",
                    item.status.chars().take(40).collect::<String>(),
                    PROGRESS_STATUSES.join(", ")
                ))
            } else {
                items
                    .iter()
                    .find_map(|item| too_long("a progress item", &item.text, MAX_ITEM_CHARS))
            }
        }
    };
    match problem {
        Some(problem) => Err(problem),
        None => Ok(()),
    }
}

/// The seq whose platform message this row changes: an edit's or a reaction's target, and a
/// progress update's first row where the platform can edit (elsewhere the list is sent anew).
pub fn target_of(content: &OutboundContent, capabilities: Capabilities) -> Option<Seq> {
    match content {
        OutboundContent::Edit { target_seq, .. } | OutboundContent::Reaction { target_seq, .. } => {
            Some(*target_seq)
        }
        OutboundContent::Progress { target_seq, .. } if capabilities.edits => *target_seq,
        OutboundContent::Progress { .. }
        | OutboundContent::Message(_)
        | OutboundContent::Question { .. }
        | OutboundContent::System { .. } => None,
    }
}

impl Delivery {
    /// Copies a message's files out of the session's outbox into `data/files/` and returns
    /// the copies' paths (what the channel gets). `Err` says why the files were refused.
    pub(super) async fn stage_files(
        &self,
        session: &SessionRef,
        row: &OutboundRow,
        content: &OutboundContent,
    ) -> Result<Vec<PathBuf>, String> {
        let OutboundContent::Message(message) = content else {
            return Ok(Vec::new());
        };
        if message.files.is_empty() {
            return Ok(Vec::new());
        }
        let staging = outbox::staging_dir(&self.files_dir, session.id.as_str(), row.id.as_str())
            .ok_or_else(|| {
                format!(
                    "message id {:?} is not a plain name: it cannot carry files",
                    row.id.as_str()
                )
            })?;
        let paths = self.sessions.paths(session);
        let (out_dir, from) = (paths.out_dir(), paths.outbox(row.id.as_str()));
        let names = message.files.clone();
        tokio::task::spawn_blocking(move || {
            outbox::stage_for_channel(&out_dir, &from, &names, &staging)
        })
        .await
        .map_err(|e| format!("copying the files failed: {e}"))?
    }

    /// Removes a handled row's outbox folder (files are copied out by then).
    pub(super) async fn clean_outbox(&self, session: &SessionRef, row_id: &str) {
        let out_dir = self.sessions.paths(session).out_dir();
        let id = row_id.to_owned();
        let removed =
            tokio::task::spawn_blocking(move || outbox::remove_outbox(&out_dir, &id)).await;
        match removed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(session_id = %session.id, row_id, error = %e, "cannot remove the outbox folder")
            }
            Err(e) => tracing::warn!(error = %e, "removing the outbox folder failed"),
        }
    }

    /// Records a question with the chat it is asked in, so an answer there finds the session.
    pub(super) async fn record_question(
        &self,
        session: &SessionRef,
        content: &OutboundContent,
        address: &ChatAddress,
    ) -> Result<(), DbError> {
        let OutboundContent::Question {
            question_id,
            title,
            question,
            options,
            expires_at,
        } = content
        else {
            return Ok(());
        };
        let new = NewQuestion {
            session_id: session.id.clone(),
            agent_group_id: session.agent_group.clone(),
            question_id: question_id.clone(),
            title: title.clone(),
            question: question.clone(),
            options: options.clone(),
            channel_type: address.channel_type.clone(),
            platform_id: address.platform_id.clone(),
            thread_id: address.thread_id.clone(),
            expires_at: *expires_at,
        };
        self.central
            .call(move |conn| questions::record_question(conn, &new))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::OutboundKind;

    fn check_json(json: &str) -> Result<(), String> {
        let content =
            OutboundContent::parse(OutboundKind::Chat, json).map_err(|e| e.to_string())?;
        check(&content)
    }

    #[test]
    fn hostile_operations_are_refused() {
        for (json, fragment) in [
            (r#"{"operation":"edit","target_seq":3,"text":"x"}"#, None),
            (
                r#"{"operation":"edit","target_seq":4,"text":"x"}"#,
                Some("own (odd) seqs"),
            ),
            (
                r#"{"operation":"reaction","target_seq":4,"emoji":"👍"}"#,
                None,
            ),
            (
                r#"{"operation":"reaction","target_seq":-2,"emoji":"👍"}"#,
                Some("not a message"),
            ),
            (
                r#"{"operation":"question","question_id":"q-1","title":"t","question":"?","options":["a"]}"#,
                None,
            ),
            (
                r#"{"operation":"question","question_id":"../q","title":"t","question":"?","options":[]}"#,
                Some("not a plain id"),
            ),
            (
                r#"{"operation":"question","question_id":"q-1","title":"t","question":"?","options":[" "]}"#,
                Some("option is empty"),
            ),
            (
                r#"{"operation":"progress","items":[{"text":"a","status":"done"}],"target_seq":5}"#,
                None,
            ),
            (
                r#"{"operation":"progress","items":[{"text":"a","status":"exploded"}]}"#,
                Some("is not one of"),
            ),
            (
                r#"{"operation":"progress","items":[],"target_seq":6}"#,
                Some("own (odd) progress seq"),
            ),
        ] {
            match (check_json(json), fragment) {
                (Ok(()), None) => {}
                (Err(got), Some(fragment)) => assert!(got.contains(fragment), "{json}: {got}"),
                (got, want) => panic!("{json}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn progress_updates_target_their_first_row_only_where_the_platform_edits() {
        let content = OutboundContent::Progress {
            items: vec![],
            target_seq: Some(Seq(5)),
        };
        let mut capabilities = Capabilities::text_only(100, crate::edge::Markup::Markdown);
        assert_eq!(target_of(&content, capabilities), None);
        capabilities.edits = true;
        assert_eq!(target_of(&content, capabilities), Some(Seq(5)));
    }
}
