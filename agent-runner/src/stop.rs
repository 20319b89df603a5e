//! `/stop` (`protocol::live::STOP_COMMAND`): a `chat` row whose trimmed text is exactly that
//! cancels the running turn. The router stores it as a normal row; the runner answers it
//! itself and never shows it to the model.
//!
//! Who may stop a turn: the person who started it (the sender of one of its chat rows) or an
//! owner or admin (`sender_role`). While a turn runs, [`watch`] looks for `/stop` rows on
//! every file event of `in/` and at least every [`POLL_DURING_TURN`]; an allowed one fires
//! the turn's [`StopRequest`], which the turn selects on around model calls and tools, and
//! the turn ends with one reply keeping the text shown so far and [`STOPPED_LINE`]
//! ([`stopped_reply`]). A refused one is answered [`STOP_REFUSED_REPLY`] at once and the turn
//! goes on. A `/stop` with no turn running is answered [`NOTHING_RUNNING_REPLY`]. Key types:
//! [`StopCommand`], [`Starters`], [`StopRequest`].

use crate::store::{OnWakeRows, StoreError, StoreHandle};
use crate::wake::Wake;
use protocol::live::STOP_COMMAND;
use protocol::{
    InboundContent, InboundKind, InboundRow, MessageContent, MessageId, NewOutboundRow,
    OutboundContent, OutboundKind, Seq,
};
use std::convert::Infallible;
use std::sync::OnceLock;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The line a stopped turn's reply ends with (the whole reply when nothing was shown yet).
pub const STOPPED_LINE: &str = "⏹ Stopped.";
/// The answer to `/stop` when no turn is running.
pub const NOTHING_RUNNING_REPLY: &str = "Nothing is running.";
/// The answer to `/stop` from someone who may not stop the running turn.
pub const STOP_REFUSED_REPLY: &str =
    "Only the person who started this turn, or an owner or admin of this agent, can stop it.";
/// What the model is told of a tool call cut short by `/stop`.
pub const STOPPED_TOOL_RESULT: &str = "cancelled: the user stopped this turn with /stop";
/// How often the store is looked at for `/stop` during a turn, whatever the file events do.
pub const POLL_DURING_TURN: Duration = Duration::from_millis(100);

/// A `/stop` row and who sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StopCommand {
    pub row: MessageId,
    pub sender_id: Option<String>,
    /// The host marked the sender as an owner or admin.
    pub privileged: bool,
}

impl StopCommand {
    /// The `/stop` command `row` carries, if it is one.
    pub fn parse(row: &InboundRow) -> Option<StopCommand> {
        if row.kind != InboundKind::Chat {
            return None;
        }
        let content: InboundContent = serde_json::from_str(&row.content).ok()?;
        (content.text.trim() == STOP_COMMAND).then(|| StopCommand {
            row: row.id.clone(),
            privileged: content.sender_is_owner_or_admin(),
            sender_id: content.sender.map(|sender| sender.id),
        })
    }

    /// True when this sender may stop a turn started by `starters`.
    pub fn may_stop(&self, starters: &Starters) -> bool {
        self.privileged
            || self
                .sender_id
                .as_ref()
                .is_some_and(|id| starters.0.contains(id))
    }
}

/// The first `/stop` among `rows`, with its index.
pub fn find_stop(rows: &[InboundRow]) -> Option<(usize, StopCommand)> {
    rows.iter()
        .enumerate()
        .find_map(|(index, row)| StopCommand::parse(row).map(|command| (index, command)))
}

/// The people who started a turn: the senders of its chat rows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Starters(Vec<String>);

impl Starters {
    pub fn of(rows: &[InboundRow]) -> Self {
        let mut ids: Vec<String> = rows
            .iter()
            .filter(|row| row.kind == InboundKind::Chat)
            .filter_map(|row| serde_json::from_str::<InboundContent>(&row.content).ok())
            .filter_map(|content| content.sender.map(|sender| sender.id))
            .collect();
        ids.sort();
        ids.dedup();
        Self(ids)
    }
}

/// A turn's stop signal: fired once, by the first allowed `/stop`.
#[derive(Debug, Default)]
pub struct StopRequest {
    token: CancellationToken,
    row: OnceLock<MessageId>,
}

impl StopRequest {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops the turn on behalf of the `/stop` row `row` (the first one counts).
    pub fn stop(&self, row: MessageId) {
        if self.row.set(row).is_ok() {
            self.token.cancel();
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once the turn is stopped.
    pub async fn stopped(&self) {
        self.token.cancelled().await;
    }

    /// The `/stop` row that stopped the turn.
    pub fn row(&self) -> Option<&MessageId> {
        self.row.get()
    }
}

/// The reply of a stopped turn: the text shown so far, then [`STOPPED_LINE`].
pub fn stopped_reply(shown: &str) -> String {
    let shown = shown.trim_end();
    if shown.is_empty() {
        STOPPED_LINE.to_owned()
    } else {
        format!("{shown}\n\n{STOPPED_LINE}")
    }
}

/// Answers the `/stop` row `row` with `text` and completes it, in one transaction.
pub async fn answer(
    store: &StoreHandle,
    row: &MessageId,
    text: &str,
) -> Result<Vec<Seq>, StoreError> {
    let reply = NewOutboundRow {
        id: MessageId::generate(),
        in_reply_to: Some(row.clone()),
        deliver_after: None,
        kind: OutboundKind::Chat,
        destination: None,
        thread_id: None,
        content: OutboundContent::Message(MessageContent {
            text: text.to_owned(),
            files: Vec::new(),
        }),
    };
    let row = row.clone();
    store
        .call(move |store| store.finish_turn(&[reply], &[row]))
        .await
}

/// Watches for `/stop` rows while the turn over `turn_rows` runs, until the future is
/// dropped: fires `stop` for the first allowed one, answers refused ones. Store errors are
/// logged and looked at again on the next wake; they never end the turn.
pub async fn watch(
    store: &StoreHandle,
    mut wake: Option<&mut Wake>,
    turn_rows: &[MessageId],
    starters: &Starters,
    stop: &StopRequest,
) -> Infallible {
    let mut poll = tokio::time::interval(POLL_DURING_TURN);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        match wake.as_deref_mut() {
            Some(wake) => {
                tokio::select! {
                    _ = wake.next() => {}
                    _ = poll.tick() => {}
                }
            }
            None => {
                poll.tick().await;
            }
        }
        if stop.is_stopped() {
            continue;
        }
        let rows = match store
            .call(|store| store.due_rows(protocol::time::now_ms(), OnWakeRows::Exclude))
            .await
        {
            Ok(rows) => rows,
            Err(error) => {
                tracing::debug!(%error, "cannot look for /stop during the turn");
                continue;
            }
        };
        for command in rows
            .iter()
            .filter(|row| !turn_rows.contains(&row.id))
            .filter_map(StopCommand::parse)
        {
            if command.may_stop(starters) {
                tracing::info!(privileged = command.privileged, "/stop: stopping the turn");
                stop.stop(command.row);
                break;
            }
            tracing::info!("refused /stop from someone who did not start the turn");
            if let Err(error) = answer(store, &command.row, STOP_REFUSED_REPLY).await {
                tracing::warn!(%error, "cannot answer a refused /stop");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::InboundStatus;

    fn row(seq: i64, kind: InboundKind, content: serde_json::Value) -> InboundRow {
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
            content: content.to_string(),
        }
    }

    fn chat(seq: i64, text: &str, sender: &str, role: Option<&str>) -> InboundRow {
        let mut content = serde_json::json!({"text": text, "sender": {"id": sender}});
        if let Some(role) = role {
            content["sender_role"] = role.into();
        }
        row(seq, InboundKind::Chat, content)
    }

    #[test]
    fn who_may_stop() {
        let turn = [
            chat(2, "write me an essay", "ann", None),
            row(
                4,
                InboundKind::Task,
                serde_json::json!({"text": "daily report"}),
            ),
        ];
        let starters = Starters::of(&turn);
        let check = |stop_row: InboundRow, expected: Option<bool>| {
            let got = StopCommand::parse(&stop_row).map(|command| command.may_stop(&starters));
            assert_eq!(got, expected, "{}", stop_row.content);
        };
        check(chat(6, "/stop", "ann", None), Some(true));
        check(chat(6, "  /stop\n", "ann", None), Some(true));
        check(chat(6, "/stop", "bob", None), Some(false));
        check(chat(6, "/stop", "bob", Some("admin")), Some(true));
        check(chat(6, "/stop", "bob", Some("owner")), Some(true));
        check(chat(6, "/stop", "bob", Some("member")), Some(false));
        check(
            row(6, InboundKind::Chat, serde_json::json!({"text": "/stop"})),
            Some(false),
        );
        check(chat(6, "/stop now", "ann", None), None);
        check(chat(6, "/STOP", "ann", None), None);
        check(
            row(6, InboundKind::Task, serde_json::json!({"text": "/stop"})),
            None,
        );
        check(
            row(6, InboundKind::Chat, serde_json::json!("not an object")),
            None,
        );
        let task_only = Starters::of(&turn[1..]);
        let stop = StopCommand::parse(&chat(6, "/stop", "ann", None)).unwrap();
        assert!(!stop.may_stop(&task_only), "nobody started a task turn");
        assert_eq!(
            find_stop(&[turn[0].clone(), chat(6, "/stop", "ann", None)]).map(|(index, _)| index),
            Some(1)
        );
    }

    #[test]
    fn stopped_replies_keep_what_was_shown() {
        assert_eq!(stopped_reply(""), STOPPED_LINE);
        assert_eq!(stopped_reply("  \n"), STOPPED_LINE);
        assert_eq!(
            stopped_reply("Once upon a time\n"),
            format!("Once upon a time\n\n{STOPPED_LINE}")
        );
    }

    #[tokio::test]
    async fn the_first_stop_counts() {
        let stop = StopRequest::new();
        assert!(!stop.is_stopped());
        stop.stop(MessageId::new("m6"));
        stop.stop(MessageId::new("m8"));
        stop.stopped().await;
        assert_eq!(stop.row(), Some(&MessageId::new("m6")));
    }
}
