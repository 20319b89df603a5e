//! Answers to the questions agents ask (`ask_user_question`): [`Router::answer_question`]
//! finds the question a chat's answer is for (by its id, or the chat's newest open one),
//! turns an option number into the option's text, and writes the answer into the asking
//! session as a `chat` row whose content carries the `question_id` — which is what the
//! blocked tool waits for. An answer after the question's `expires_at` is stored with
//! `trigger = 0`: the agent has stopped waiting, so it rides along with the next turn
//! instead of waking an idle container.

use super::Router;
use crate::db::central::{self, questions};
use crate::edge::{AnswerError, Answered, QuestionAnswer};
use crate::session::SessionRef;
use protocol::{InboundContent, NewInboundRow};

/// The option an answer picks: its number (1-based) or its text (any case); else the
/// answer as typed.
pub fn resolve_option(options: &[String], answer: &str) -> String {
    let answer = answer.trim();
    if let Ok(number) = answer.parse::<usize>()
        && let Some(option) = number.checked_sub(1).and_then(|index| options.get(index))
    {
        return option.clone();
    }
    options
        .iter()
        .find(|option| option.trim().eq_ignore_ascii_case(answer))
        .cloned()
        .unwrap_or_else(|| answer.to_owned())
}

impl Router {
    /// Takes an answer from a chat and writes it into the asking session.
    pub async fn answer_question(&self, answer: QuestionAnswer) -> Result<Answered, AnswerError> {
        if answer.answer.trim().is_empty() {
            return Err(AnswerError::Empty);
        }
        let lookup = answer.clone();
        let found = self
            .central
            .call(move |conn| {
                let tx = conn.transaction()?;
                let question = match &lookup.question_id {
                    Some(id) => questions::question_in_chat(
                        &tx,
                        id,
                        &lookup.channel_type,
                        &lookup.platform_id,
                    )?,
                    None => {
                        questions::open_question(&tx, &lookup.channel_type, &lookup.platform_id)?
                    }
                };
                let Some(question) = question else {
                    return Ok(Err(AnswerError::NoQuestion(match &lookup.question_id {
                        Some(id) => format!(
                            "no question {id:?} was asked in {}/{}",
                            lookup.channel_type, lookup.platform_id
                        ),
                        None => format!(
                            "no question is waiting for an answer in {}/{}",
                            lookup.channel_type, lookup.platform_id
                        ),
                    })));
                };
                let resolved = resolve_option(&question.options, &lookup.answer);
                if !questions::set_answered(&tx, &question.id, &resolved, &lookup.sender.id)? {
                    return Ok(Err(AnswerError::AlreadyAnswered(question.question_id)));
                }
                let stored = central::session(&tx, &question.session_id)?;
                let group = central::agent_group(&tx, &stored.agent_group_id)?;
                tx.commit()?;
                let session = SessionRef {
                    id: stored.id,
                    agent_group: group.id,
                    group_folder: group.folder,
                };
                Ok(Ok((question, resolved, session)))
            })
            .await??;
        let (question, resolved, session) = found;
        let trigger = question
            .expires_at
            .is_none_or(|expires_at| protocol::time::now_ms() <= expires_at);
        let content = InboundContent {
            text: answer.answer.trim().to_owned(),
            sender: Some(answer.sender.clone()),
            question_id: Some(question.question_id.clone()),
            answer: Some(resolved.clone()),
            platform_message_id: Some(answer.platform_message_id.clone()),
            ..InboundContent::default()
        };
        let mut row = NewInboundRow::chat(&content);
        row.trigger = trigger;
        row.channel_type = Some(answer.channel_type);
        row.platform_id = Some(answer.platform_id);
        row.thread_id = answer.thread_id;
        let message_id = row.id.clone();
        self.sessions
            .with_inbound(&session, move |tx, _| {
                Ok(protocol::inbound::insert(tx, &row, None)?)
            })
            .await?;
        tracing::info!(session_id = %session.id, question_id = %question.question_id, trigger, "question answered");
        if trigger {
            self.supervisor.wake(&session);
        }
        Ok(Answered {
            message_id,
            question_id: question.question_id,
            answer: resolved,
            trigger,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::resolve_option;

    #[test]
    fn options_by_number_or_text() {
        let options = vec!["red".to_owned(), "Green".to_owned()];
        for (typed, want) in [
            ("1", "red"),
            (" 2 ", "Green"),
            ("green", "Green"),
            ("3", "3"),
            ("0", "0"),
            ("blue-ish", "blue-ish"),
        ] {
            assert_eq!(resolve_option(&options, typed), want, "{typed:?}");
        }
        assert_eq!(resolve_option(&[], "2"), "2");
    }
}
