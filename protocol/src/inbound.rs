//! Queries on `inbound.db`. The host writes (insert, status, delivered, projections); the
//! runner only reads (pending rows, destinations, routing, config).
//!
//! Every function takes a `&Connection`, so callers can group them in one transaction.

use crate::ids::{AgentGroupId, MessageId, SessionId};
use crate::rows::{
    DeliveryStatus, Destination, DestinationType, InboundRow, InboundStatus, NewInboundRow,
    SessionConfig, SessionRouting,
};
use crate::seq::{Seq, Writer};
use crate::time::now_ms;
use rusqlite::{Connection, OptionalExtension, Row, params};

pub(crate) const ROW_COLUMNS: &str = "id, seq, kind, created_at, status, process_after, recurrence, series_id, tries, \
     trigger, on_wake, channel_type, platform_id, thread_id, source_session_id, content";

pub(crate) fn read_row(row: &Row<'_>) -> rusqlite::Result<InboundRow> {
    Ok(InboundRow {
        id: row.get(0)?,
        seq: Seq(row.get(1)?),
        kind: row.get(2)?,
        created_at: row.get(3)?,
        status: row.get(4)?,
        process_after: row.get(5)?,
        recurrence: row.get(6)?,
        series_id: row.get(7)?,
        tries: row.get(8)?,
        trigger: row.get(9)?,
        on_wake: row.get(10)?,
        channel_type: row.get(11)?,
        platform_id: row.get(12)?,
        thread_id: row.get(13)?,
        source_session_id: row.get::<_, Option<String>>(14)?.map(SessionId::new),
        content: row.get(15)?,
    })
}

/// The largest seq the host has seen in this file: its own rows and every outbound row it
/// has handled (recorded in `delivered`).
pub fn max_seen_seq(conn: &Connection) -> rusqlite::Result<Option<Seq>> {
    let value: Option<i64> = conn.query_row(
        "SELECT max(m) FROM (SELECT max(seq) AS m FROM messages_in UNION ALL SELECT max(seq) FROM delivered)",
        [],
        |row| row.get(0),
    )?;
    Ok(value.map(Seq))
}

/// The largest seq in `messages_in` (what the runner has seen of the host's rows).
pub fn max_seq(conn: &Connection) -> rusqlite::Result<Option<Seq>> {
    let value: Option<i64> =
        conn.query_row("SELECT max(seq) FROM messages_in", [], |row| row.get(0))?;
    Ok(value.map(Seq))
}

/// Host: inserts a row with the next even seq above everything seen here and `also_seen`
/// (the largest outbound seq the host knows of). Returns the allocated seq.
pub fn insert(
    conn: &Connection,
    row: &NewInboundRow,
    also_seen: Option<Seq>,
) -> rusqlite::Result<Seq> {
    let seen = max_seen_seq(conn)?.max(also_seen);
    let seq = Writer::Host.next_seq(seen);
    conn.execute(
        "INSERT INTO messages_in (id, seq, kind, created_at, status, process_after, recurrence, series_id, \
         tries, trigger, on_wake, channel_type, platform_id, thread_id, source_session_id, content) \
         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6, ?7, 0, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        params![
            row.id,
            seq.0,
            row.kind,
            now_ms(),
            row.process_after,
            row.recurrence,
            row.series_id,
            row.trigger,
            row.on_wake,
            row.channel_type,
            row.platform_id,
            row.thread_id,
            row.source_session_id,
            row.content,
        ],
    )?;
    Ok(seq)
}

/// Rows with `seq > after`, in order.
pub fn rows_after(conn: &Connection, after: Seq) -> rusqlite::Result<Vec<InboundRow>> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {ROW_COLUMNS} FROM messages_in WHERE seq > ?1 ORDER BY seq"
    ))?;
    let rows = statement.query_map([after.0], read_row)?;
    rows.collect()
}

/// Pending rows whose time has come (`process_after` unset or not after `now`), in order.
pub fn due_pending(conn: &Connection, now: i64) -> rusqlite::Result<Vec<InboundRow>> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {ROW_COLUMNS} FROM messages_in WHERE status = 'pending' \
         AND (process_after IS NULL OR process_after <= ?1) ORDER BY seq"
    ))?;
    let rows = statement.query_map([now], read_row)?;
    rows.collect()
}

/// The number of pending rows that would wake the agent now.
pub fn count_due_triggers(conn: &Connection, now: i64) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT count(*) FROM messages_in WHERE status = 'pending' AND trigger = 1 \
         AND (process_after IS NULL OR process_after <= ?1)",
        [now],
        |row| row.get(0),
    )
}

/// When the next pending trigger row that is not yet due comes due (unix ms): a scheduled
/// task the runner should wake for.
pub fn next_due_at(conn: &Connection, now: i64) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT min(process_after) FROM messages_in WHERE status = 'pending' AND trigger = 1 \
         AND process_after > ?1",
        [now],
        |row| row.get(0),
    )
}

/// The first row with `seq > after` whose content answers the question `question_id`
/// (its JSON `question_id` field). Rows whose content is not JSON are skipped.
pub fn answer_to(
    conn: &Connection,
    question_id: &str,
    after: Seq,
) -> rusqlite::Result<Option<InboundRow>> {
    conn.query_row(
        &format!(
            "SELECT {ROW_COLUMNS} FROM messages_in WHERE seq > ?1 AND json_valid(content) \
             AND json_extract(content, '$.question_id') = ?2 ORDER BY seq LIMIT 1"
        ),
        params![after.0, question_id],
        read_row,
    )
    .optional()
}

/// The scheduled tasks: `task` rows with a `series_id` that are `pending` or `paused`,
/// ordered by series and then by when they run.
pub fn task_rows(conn: &Connection) -> rusqlite::Result<Vec<InboundRow>> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {ROW_COLUMNS} FROM messages_in WHERE kind = 'task' AND series_id IS NOT NULL \
         AND status IN ('pending', 'paused') ORDER BY series_id, process_after, seq"
    ))?;
    let rows = statement.query_map([], read_row)?;
    rows.collect()
}

/// One row by seq.
pub fn get_by_seq(conn: &Connection, seq: Seq) -> rusqlite::Result<Option<InboundRow>> {
    conn.prepare_cached(&format!(
        "SELECT {ROW_COLUMNS} FROM messages_in WHERE seq = ?1"
    ))?
    .query_row([seq.0], read_row)
    .optional()
}

/// One row by id. The statement is cached: the host looks rows up by id for every finished
/// ack on every delivery pass, and parsing the query each time was most of its CPU time
/// (`make bench`).
pub fn get(conn: &Connection, id: &MessageId) -> rusqlite::Result<Option<InboundRow>> {
    conn.prepare_cached(&format!(
        "SELECT {ROW_COLUMNS} FROM messages_in WHERE id = ?1"
    ))?
    .query_row([id], read_row)
    .optional()
}

/// Host: sets a row's status (copying a finished ack, pausing, cancelling).
/// Returns false when the row does not exist.
pub fn set_status(
    conn: &Connection,
    id: &MessageId,
    status: InboundStatus,
) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "UPDATE messages_in SET status = ?2 WHERE id = ?1",
        params![id, status],
    )? > 0)
}

/// Host: counts one more try of a row.
pub fn add_try(conn: &Connection, id: &MessageId) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE messages_in SET tries = tries + 1 WHERE id = ?1",
        [id],
    )?;
    Ok(())
}

/// Host: records the state of an outbound row's delivery. `sending` is written before the
/// platform call; each call counts one attempt.
pub fn record_delivery(
    conn: &Connection,
    message_out_id: &MessageId,
    seq: Seq,
    status: DeliveryStatus,
    platform_message_id: Option<&str>,
    error: Option<&str>,
) -> rusqlite::Result<()> {
    let attempt = i64::from(status == DeliveryStatus::Sending);
    conn.execute(
        "INSERT INTO delivered (message_out_id, seq, status, platform_message_id, attempts, error, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (message_out_id) DO UPDATE SET status = excluded.status, \
           platform_message_id = coalesce(excluded.platform_message_id, platform_message_id), \
           attempts = attempts + excluded.attempts, error = excluded.error, updated_at = excluded.updated_at",
        params![message_out_id, seq.0, status, platform_message_id, attempt, error, now_ms()],
    )?;
    Ok(())
}

/// The error recorded with an outbound row's delivery state (`None`: no row, or no error).
pub fn delivery_error(
    conn: &Connection,
    message_out_id: &MessageId,
) -> rusqlite::Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT error FROM delivered WHERE message_out_id = ?1")?
        .query_row([message_out_id], |row| row.get::<_, Option<String>>(0))
        .optional()?
        .flatten())
}

/// The delivery state of an outbound row: status and attempts so far. Cached: delivery asks
/// for every row of every batch.
pub fn delivery(
    conn: &Connection,
    message_out_id: &MessageId,
) -> rusqlite::Result<Option<(DeliveryStatus, i64)>> {
    conn.prepare_cached("SELECT status, attempts FROM delivered WHERE message_out_id = ?1")?
        .query_row([message_out_id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()
}

/// Host: takes back the attempt a `sending` mark counted, for a call that reached nobody
/// (no recipient was connected): such a wait is not a failed attempt.
pub fn undo_attempt(conn: &Connection, message_out_id: &MessageId) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE delivered SET attempts = attempts - 1 WHERE message_out_id = ?1 AND attempts > 0",
    )?
    .execute([message_out_id])?;
    Ok(())
}

/// How far the host has handled a session's outbound rows (`delivery_cursor`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliveryCursor {
    /// Every outbound row with seq <= this is handled for good.
    pub after: Option<Seq>,
    /// The largest outbound seq the host has handled or parked in `delivery_waiting`.
    pub high_water: Option<Seq>,
}

/// The stored delivery cursor (nothing handled yet when there is none).
pub fn delivery_cursor(conn: &Connection) -> rusqlite::Result<DeliveryCursor> {
    let stored: Option<(i64, i64)> = conn
        .query_row(
            "SELECT after_seq, high_water FROM delivery_cursor WHERE id = 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    // Seqs are never negative: -1 stands for "nothing yet".
    let seq = |value: i64| (value >= 0).then_some(Seq(value));
    Ok(
        stored.map_or_else(DeliveryCursor::default, |(after, high_water)| {
            DeliveryCursor {
                after: seq(after),
                high_water: seq(high_water),
            }
        }),
    )
}

/// Host: moves the delivery cursor forward. Each value only ever grows, whatever is passed.
pub fn advance_delivery_cursor(conn: &Connection, cursor: DeliveryCursor) -> rusqlite::Result<()> {
    let value = |seq: Option<Seq>| seq.map_or(-1, |s| s.0);
    conn.prepare_cached(
        "INSERT INTO delivery_cursor (id, after_seq, high_water, updated_at) VALUES (1, ?1, ?2, ?3) \
         ON CONFLICT (id) DO UPDATE SET after_seq = max(after_seq, excluded.after_seq), \
           high_water = max(high_water, excluded.high_water), updated_at = excluded.updated_at",
    )?
    .execute(params![
        value(cursor.after),
        value(cursor.high_water),
        now_ms()
    ])?;
    Ok(())
}

/// Why an outbound row the host has read is not finished yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WaitReason {
    /// Its `deliver_after` has not come.
    DeliverAfter,
    /// A call failed (or a lookup was busy) and is tried again later.
    Retry,
    /// Nobody was there to receive it; it goes when a recipient for its chat connects.
    NoRecipient,
}

impl WaitReason {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitReason::DeliverAfter => "deliver_after",
            WaitReason::Retry => "retry",
            WaitReason::NoRecipient => "no_recipient",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            WaitReason::DeliverAfter,
            WaitReason::Retry,
            WaitReason::NoRecipient,
        ]
        .into_iter()
        .find(|reason| reason.as_str() == text)
    }
}

/// An outbound row in `delivery_waiting`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    pub message_out_id: MessageId,
    pub seq: Seq,
    pub reason: WaitReason,
    /// Unix ms when it may go; `None` = when a recipient connects.
    pub until: Option<i64>,
}

/// Host: records (or updates) a row that waits.
pub fn set_waiting(conn: &Connection, waiting: &Waiting) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO delivery_waiting (message_out_id, seq, reason, until, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (message_out_id) DO UPDATE SET \
           seq = excluded.seq, reason = excluded.reason, until = excluded.until, updated_at = excluded.updated_at",
    )?
    .execute(params![
        waiting.message_out_id,
        waiting.seq.0,
        waiting.reason.as_str(),
        waiting.until,
        now_ms()
    ])?;
    Ok(())
}

/// Host: a row no longer waits (it was handled for good).
pub fn clear_waiting(conn: &Connection, message_out_id: &MessageId) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM delivery_waiting WHERE message_out_id = ?1")?
        .execute([message_out_id])?;
    Ok(())
}

/// The rows that wait, in seq order. A reason this build does not know counts as a retry.
pub fn waiting(conn: &Connection) -> rusqlite::Result<Vec<Waiting>> {
    let mut statement = conn.prepare_cached(
        "SELECT message_out_id, seq, reason, until FROM delivery_waiting ORDER BY seq",
    )?;
    let rows = statement.query_map([], |row| {
        let reason: String = row.get(2)?;
        Ok(Waiting {
            message_out_id: row.get(0)?,
            seq: Seq(row.get(1)?),
            reason: WaitReason::parse(&reason).unwrap_or(WaitReason::Retry),
            until: row.get(3)?,
        })
    })?;
    rows.collect()
}

/// The largest seq below `seq` of an inbound row that starts a turn (a message, a task, a
/// webhook: not the host's own `system` notes): the row an outbound row with that seq was
/// written after, which names its turn. The container allocates every seq above all it has
/// seen and only the host writes inbound rows, so a container cannot make turns up; and the
/// host's notes, which land between a flood's seqs, do not start new ones.
pub fn inbound_seq_below(conn: &Connection, seq: Seq) -> rusqlite::Result<Option<Seq>> {
    let value: Option<i64> = conn
        .prepare_cached("SELECT max(seq) FROM messages_in WHERE seq < ?1 AND kind != 'system'")?
        .query_row([seq.0], |row| row.get(0))?;
    Ok(value.map(Seq))
}

/// Host: the platform message id an outbound seq was delivered as (for edits and reactions).
pub fn platform_message_id_of(conn: &Connection, seq: Seq) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT platform_message_id FROM delivered WHERE seq = ?1 AND status = 'delivered'",
        [seq.0],
        |row| row.get(0),
    )
    .optional()
    .map(Option::flatten)
}

/// Host: the platform message id of the chat message an inbound seq stands for (for
/// reactions to a person's message), as the host wrote it into the row's content.
pub fn inbound_platform_message_id(
    conn: &Connection,
    seq: Seq,
) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT CASE WHEN json_valid(content) THEN json_extract(content, '$.platform_message_id') END \
         FROM messages_in WHERE seq = ?1",
        [seq.0],
        |row| row.get::<_, Option<String>>(0),
    )
    .optional()
    .map(Option::flatten)
}

/// Host: replaces the projected destinations.
pub fn set_destinations(conn: &Connection, destinations: &[Destination]) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM destinations", [])?;
    let mut statement = conn.prepare_cached(
        "INSERT INTO destinations (name, display_name, type, channel_type, platform_id, thread_id, agent_group_id) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for d in destinations {
        statement.execute(params![
            d.name,
            d.display_name,
            d.destination_type,
            d.channel_type,
            d.platform_id,
            d.thread_id,
            d.agent_group_id
        ])?;
    }
    Ok(())
}

/// The projected destinations, by name.
pub fn destinations(conn: &Connection) -> rusqlite::Result<Vec<Destination>> {
    let mut statement = conn.prepare_cached(
        "SELECT name, display_name, type, channel_type, platform_id, thread_id, agent_group_id \
         FROM destinations ORDER BY name",
    )?;
    let rows = statement.query_map([], |row| {
        Ok(Destination {
            name: row.get(0)?,
            display_name: row.get(1)?,
            destination_type: row.get::<_, DestinationType>(2)?,
            channel_type: row.get(3)?,
            platform_id: row.get(4)?,
            thread_id: row.get(5)?,
            agent_group_id: row.get::<_, Option<String>>(6)?.map(AgentGroupId::new),
        })
    })?;
    rows.collect()
}

/// Host: sets the origin chat.
pub fn set_routing(conn: &Connection, routing: &SessionRouting) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO session_routing (id, channel_type, platform_id, thread_id) VALUES (1, ?1, ?2, ?3)",
        params![routing.channel_type, routing.platform_id, routing.thread_id],
    )?;
    Ok(())
}

/// The origin chat, once set.
pub fn routing(conn: &Connection) -> rusqlite::Result<Option<SessionRouting>> {
    conn.query_row(
        "SELECT channel_type, platform_id, thread_id FROM session_routing WHERE id = 1",
        [],
        |row| {
            Ok(SessionRouting {
                channel_type: row.get(0)?,
                platform_id: row.get(1)?,
                thread_id: row.get(2)?,
            })
        },
    )
    .optional()
}

/// Host: sets the runner's configuration.
pub fn set_config(conn: &Connection, config: &SessionConfig) -> rusqlite::Result<()> {
    let json = serde_json::to_string(config)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    conn.execute(
        "INSERT OR REPLACE INTO session_config (id, config) VALUES (1, ?1)",
        [json],
    )?;
    Ok(())
}

/// The runner's configuration, once set.
pub fn config(conn: &Connection) -> rusqlite::Result<Option<SessionConfig>> {
    let json: Option<String> = conn
        .query_row(
            "SELECT config FROM session_config WHERE id = 1",
            [],
            |row| row.get(0),
        )
        .optional()?;
    json.map(|json| {
        serde_json::from_str(&json).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::InboundContent;
    use crate::schema::open_inbound_writer;

    #[test]
    fn insert_allocates_even_seqs_above_everything_seen() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_inbound_writer(&dir.path().join("inbound.db")).unwrap();
        let row = || {
            NewInboundRow::chat(&InboundContent {
                text: "hi".into(),
                ..Default::default()
            })
        };
        assert_eq!(insert(&conn, &row(), None).unwrap(), Seq(0));
        assert_eq!(insert(&conn, &row(), Some(Seq(7))).unwrap(), Seq(8));
        record_delivery(
            &conn,
            &MessageId::new("o1"),
            Seq(11),
            DeliveryStatus::Delivered,
            Some("p1"),
            None,
        )
        .unwrap();
        assert_eq!(insert(&conn, &row(), None).unwrap(), Seq(12));
        assert_eq!(due_pending(&conn, now_ms()).unwrap().len(), 3);
        assert_eq!(
            platform_message_id_of(&conn, Seq(11)).unwrap().as_deref(),
            Some("p1")
        );
    }

    #[test]
    fn answers_tasks_and_next_due() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_inbound_writer(&dir.path().join("inbound.db")).unwrap();
        let plain = NewInboundRow::chat(&InboundContent {
            text: "hi".into(),
            ..Default::default()
        });
        let first = insert(&conn, &plain, None).unwrap();
        let mut broken = NewInboundRow::chat(&InboundContent::default());
        broken.content = "not json".into();
        insert(&conn, &broken, None).unwrap();
        let answer = NewInboundRow::chat(&InboundContent {
            text: "blue".into(),
            question_id: Some("q-1".into()),
            ..Default::default()
        });
        let answer_seq = insert(&conn, &answer, None).unwrap();
        assert_eq!(
            answer_to(&conn, "q-1", first).unwrap().map(|row| row.seq),
            Some(answer_seq)
        );
        assert_eq!(answer_to(&conn, "q-1", answer_seq).unwrap(), None);
        assert_eq!(answer_to(&conn, "q-2", Seq(-1)).unwrap(), None);

        let now = now_ms();
        assert_eq!(next_due_at(&conn, now).unwrap(), None);
        let later = NewInboundRow::task("t-1", "water", now + 60_000, None);
        let later_seq = insert(&conn, &later, None).unwrap();
        insert(
            &conn,
            &NewInboundRow::task("t-2", "feed", now + 5_000, None),
            None,
        )
        .unwrap();
        assert_eq!(next_due_at(&conn, now).unwrap(), Some(now + 5_000));
        let tasks: Vec<Option<String>> = task_rows(&conn)
            .unwrap()
            .into_iter()
            .map(|row| row.series_id)
            .collect();
        assert_eq!(tasks, [Some("t-1".into()), Some("t-2".into())]);
        set_status(&conn, &later.id, InboundStatus::Cancelled).unwrap();
        assert_eq!(task_rows(&conn).unwrap().len(), 1);
        assert_eq!(
            get_by_seq(&conn, later_seq).unwrap().map(|row| row.id),
            Some(later.id)
        );
    }

    #[test]
    fn delivery_cursor_and_waiting_rows_only_move_forward() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_inbound_writer(&dir.path().join("inbound.db")).unwrap();
        assert_eq!(delivery_cursor(&conn).unwrap(), DeliveryCursor::default());
        let cursor = |after: i64, high_water: i64| DeliveryCursor {
            after: Some(Seq(after)),
            high_water: Some(Seq(high_water)),
        };
        advance_delivery_cursor(&conn, cursor(3, 9)).unwrap();
        advance_delivery_cursor(&conn, cursor(1, 5)).unwrap();
        assert_eq!(delivery_cursor(&conn).unwrap(), cursor(3, 9));
        advance_delivery_cursor(
            &conn,
            DeliveryCursor {
                after: None,
                high_water: Some(Seq(11)),
            },
        )
        .unwrap();
        assert_eq!(delivery_cursor(&conn).unwrap(), cursor(3, 11));

        let waiting_row = |id: &str, seq: i64, reason| Waiting {
            message_out_id: MessageId::new(id),
            seq: Seq(seq),
            reason,
            until: None,
        };
        set_waiting(&conn, &waiting_row("b", 7, WaitReason::Retry)).unwrap();
        set_waiting(&conn, &waiting_row("a", 5, WaitReason::DeliverAfter)).unwrap();
        set_waiting(&conn, &waiting_row("b", 7, WaitReason::NoRecipient)).unwrap();
        assert_eq!(
            waiting(&conn).unwrap(),
            [
                waiting_row("a", 5, WaitReason::DeliverAfter),
                waiting_row("b", 7, WaitReason::NoRecipient)
            ]
        );
        clear_waiting(&conn, &MessageId::new("a")).unwrap();
        assert_eq!(waiting(&conn).unwrap().len(), 1);
        for reason in [
            WaitReason::DeliverAfter,
            WaitReason::Retry,
            WaitReason::NoRecipient,
        ] {
            assert_eq!(WaitReason::parse(reason.as_str()), Some(reason));
        }
    }

    #[test]
    fn the_turn_of_an_outbound_seq_is_the_inbound_row_below_it() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_inbound_writer(&dir.path().join("inbound.db")).unwrap();
        assert_eq!(inbound_seq_below(&conn, Seq(5)).unwrap(), None);
        let row = NewInboundRow::chat(&InboundContent::default());
        insert(&conn, &row, None).unwrap();
        let second = NewInboundRow::chat(&InboundContent::default());
        insert(&conn, &second, Some(Seq(7))).unwrap();
        let mut note = NewInboundRow::chat(&InboundContent::default());
        note.kind = crate::rows::InboundKind::System;
        insert(&conn, &note, Some(Seq(11))).unwrap();
        assert_eq!(inbound_seq_below(&conn, Seq(5)).unwrap(), Some(Seq(0)));
        assert_eq!(inbound_seq_below(&conn, Seq(9)).unwrap(), Some(Seq(8)));
        // The host's own note (seq 12) starts no turn.
        assert_eq!(inbound_seq_below(&conn, Seq(13)).unwrap(), Some(Seq(8)));
    }

    #[test]
    fn a_call_that_reached_nobody_gives_its_attempt_back() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_inbound_writer(&dir.path().join("inbound.db")).unwrap();
        let id = MessageId::new("o1");
        record_delivery(&conn, &id, Seq(1), DeliveryStatus::Sending, None, None).unwrap();
        undo_attempt(&conn, &id).unwrap();
        undo_attempt(&conn, &id).unwrap();
        assert_eq!(
            delivery(&conn, &id).unwrap(),
            Some((DeliveryStatus::Sending, 0))
        );
    }

    #[test]
    fn delivery_attempts_count_sending() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_inbound_writer(&dir.path().join("inbound.db")).unwrap();
        let id = MessageId::new("o1");
        record_delivery(&conn, &id, Seq(1), DeliveryStatus::Sending, None, None).unwrap();
        record_delivery(
            &conn,
            &id,
            Seq(1),
            DeliveryStatus::Failed,
            None,
            Some("boom"),
        )
        .unwrap();
        record_delivery(&conn, &id, Seq(1), DeliveryStatus::Sending, None, None).unwrap();
        assert_eq!(
            delivery(&conn, &id).unwrap(),
            Some((DeliveryStatus::Sending, 2))
        );
    }
}
