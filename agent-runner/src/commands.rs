//! Chat commands the runner answers itself, without the model. This module has `/clear`
//! (`protocol::content::CLEAR_COMMAND`), a `chat` row whose trimmed text is exactly that;
//! `/stop`, which acts on a running turn, has its own module (`crate::stop`).
//!
//! From a sender the host marked as owner or admin (`sender_role` in the row's content) it
//! empties the transcript, completes that row and every row before it in the batch (they
//! belong to the conversation being cleared), and replies [`CLEARED_REPLY`]. From anyone
//! else it completes only that row and replies [`CLEAR_REFUSED_REPLY`]; the other rows are
//! left for the next turn. Either way one reply row and the acks are written in one
//! transaction, so a crash in between repeats the command, which is harmless.

use crate::store::StoreHandle;
use crate::transcript::Transcript;
use crate::turn::{TurnError, TurnOutcome, TurnSummary};
use protocol::{
    InboundContent, InboundKind, InboundRow, MessageContent, MessageId, NewOutboundRow,
    OutboundContent, OutboundKind,
};

/// The reply to an authorised `/clear`.
pub const CLEARED_REPLY: &str = "Conversation cleared.";
/// The reply to `/clear` from someone who is not an owner or admin.
pub const CLEAR_REFUSED_REPLY: &str =
    "Only an owner or admin of this agent can clear the conversation.";

/// A `/clear` found among due rows: where it is and whether its sender may use it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClearCommand {
    pub index: usize,
    pub authorized: bool,
}

/// The first `/clear` among `rows` (in seq order), if any.
pub fn find_clear(rows: &[InboundRow]) -> Option<ClearCommand> {
    rows.iter().enumerate().find_map(|(index, row)| {
        if row.kind != InboundKind::Chat {
            return None;
        }
        let content: InboundContent = serde_json::from_str(&row.content).ok()?;
        content.is_clear_command().then(|| ClearCommand {
            index,
            authorized: content.sender_is_owner_or_admin(),
        })
    })
}

/// Carries out (or refuses) a `/clear` found by [`find_clear`].
pub async fn run_clear(
    store: &StoreHandle,
    transcript: &mut Transcript,
    rows: &[InboundRow],
    command: ClearCommand,
) -> Result<TurnSummary, TurnError> {
    let Some(clear_row) = rows.get(command.index) else {
        return Ok(TurnSummary {
            outcome: TurnOutcome::ClearRefused,
            rows: Vec::new(),
            model_calls: 0,
            replies: Vec::new(),
            effects: Default::default(),
        });
    };
    let (outcome, text, finished) = if command.authorized {
        transcript.replace(Vec::new())?;
        tracing::info!("conversation cleared by /clear");
        let finished: Vec<MessageId> = rows[..=command.index]
            .iter()
            .map(|row| row.id.clone())
            .collect();
        (TurnOutcome::Cleared, CLEARED_REPLY, finished)
    } else {
        tracing::info!("refused /clear from a sender without the owner or admin role");
        (
            TurnOutcome::ClearRefused,
            CLEAR_REFUSED_REPLY,
            vec![clear_row.id.clone()],
        )
    };
    let reply = NewOutboundRow {
        id: MessageId::generate(),
        in_reply_to: Some(clear_row.id.clone()),
        deliver_after: None,
        kind: OutboundKind::Chat,
        destination: None,
        thread_id: None,
        content: OutboundContent::Message(MessageContent {
            text: text.to_owned(),
            files: Vec::new(),
        }),
    };
    let acked = finished.clone();
    let replies = store
        .call(move |store| store.finish_turn(&[reply], &acked))
        .await?;
    Ok(TurnSummary {
        outcome,
        rows: finished,
        model_calls: 0,
        replies,
        effects: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{InboundStatus, Seq};

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

    #[test]
    fn find_clear_table() {
        let check = |rows: &[InboundRow], expected: Option<(usize, bool)>| {
            assert_eq!(
                find_clear(rows).map(|c| (c.index, c.authorized)),
                expected,
                "{rows:?}"
            );
        };
        let hello = row(2, InboundKind::Chat, r#"{"text":"hello"}"#);
        let admin = row(
            4,
            InboundKind::Chat,
            r#"{"text":" /clear\n","sender_role":"admin"}"#,
        );
        let owner = row(
            4,
            InboundKind::Chat,
            r#"{"text":"/clear","sender_role":"owner"}"#,
        );
        let member = row(4, InboundKind::Chat, r#"{"text":"/clear"}"#);
        let task = row(
            4,
            InboundKind::Task,
            r#"{"text":"/clear","sender_role":"owner"}"#,
        );
        let mention = row(
            4,
            InboundKind::Chat,
            r#"{"text":"/clear please","sender_role":"owner"}"#,
        );
        check(&[hello.clone(), admin], Some((1, true)));
        check(&[owner], Some((0, true)));
        check(&[hello.clone(), member], Some((1, false)));
        check(&[task], None);
        check(&[mention], None);
        check(&[hello], None);
    }
}
