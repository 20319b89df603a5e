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

/// The delivery state of an outbound row: status and attempts so far.
pub fn delivery(
    conn: &Connection,
    message_out_id: &MessageId,
) -> rusqlite::Result<Option<(DeliveryStatus, i64)>> {
    conn.query_row(
        "SELECT status, attempts FROM delivered WHERE message_out_id = ?1",
        [message_out_id],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .optional()
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
