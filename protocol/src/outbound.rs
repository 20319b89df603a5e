//! Queries on `outbound.db`. The runner writes (messages, acks, container state); the host
//! reads everything here as hostile input: [`read_after`] never fails a whole batch for one bad
//! row, and caps the size of every value before loading it.

use crate::ids::MessageId;
use crate::rows::{Ack, AckStatus, NewOutboundRow, OutboundKind, OutboundRow};
use crate::seq::{Seq, Writer};
use crate::time::now_ms;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};

/// Longest id, destination or thread id the host accepts, in bytes.
pub const MAX_NAME_BYTES: i64 = 256;

/// The largest seq in `messages_out`.
pub fn max_seq(conn: &Connection) -> rusqlite::Result<Option<Seq>> {
    let value: Option<i64> =
        conn.query_row("SELECT max(seq) FROM messages_out", [], |row| row.get(0))?;
    Ok(value.map(Seq))
}

/// Runner: inserts a row with the next odd seq above everything in this file and `also_seen`
/// (the largest inbound seq the runner has read). Returns the allocated seq.
pub fn insert(
    conn: &Connection,
    row: &NewOutboundRow,
    also_seen: Option<Seq>,
) -> rusqlite::Result<Seq> {
    let seq = Writer::Container.next_seq(max_seq(conn)?.max(also_seen));
    conn.execute(
        "INSERT INTO messages_out (id, seq, in_reply_to, created_at, deliver_after, kind, destination, thread_id, content) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            row.id,
            seq.0,
            row.in_reply_to,
            now_ms(),
            row.deliver_after,
            row.kind,
            row.destination,
            row.thread_id,
            row.content.to_json(),
        ],
    )?;
    Ok(seq)
}

/// Runner: claims or finishes an inbound row.
pub fn set_ack(
    conn: &Connection,
    message_id: &MessageId,
    status: AckStatus,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO processing_ack (message_id, status, changed_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (message_id) DO UPDATE SET status = excluded.status, changed_at = excluded.changed_at",
        params![message_id, status, now_ms()],
    )?;
    Ok(())
}

/// The ack of one inbound row, if any.
pub fn ack(conn: &Connection, message_id: &MessageId) -> rusqlite::Result<Option<AckStatus>> {
    conn.query_row(
        "SELECT status FROM processing_ack WHERE message_id = ?1",
        [message_id],
        |row| row.get(0),
    )
    .optional()
}

/// All acks. The host reads these as hostile input: a row with an unknown status or a
/// non-text id is skipped.
pub fn acks(conn: &Connection) -> rusqlite::Result<Vec<Ack>> {
    let mut statement = conn.prepare_cached(
        "SELECT message_id, status, changed_at FROM processing_ack \
         WHERE typeof(message_id) = 'text' AND length(message_id) <= ?1 AND typeof(changed_at) = 'integer'",
    )?;
    let rows = statement.query_map([MAX_NAME_BYTES], |row| {
        let status: String = row.get(1)?;
        Ok(AckStatus::parse(&status).map(|status| Ack {
            message_id: MessageId::new(row.get::<_, String>(0).unwrap_or_default()),
            status,
            changed_at: row.get(2).unwrap_or(0),
        }))
    })?;
    let mut acks = Vec::new();
    for row in rows {
        if let Some(ack) = row? {
            acks.push(ack);
        }
    }
    Ok(acks)
}

/// Runner: records the tool in progress (or none) so the sweep can tell busy from stuck.
pub fn set_container_state(conn: &Connection, tool: Option<(&str, i64)>) -> rusqlite::Result<()> {
    let now = now_ms();
    let (name, timeout, started) = match tool {
        Some((name, timeout_ms)) => (Some(name), Some(timeout_ms), Some(now)),
        None => (None, None, None),
    };
    conn.execute(
        "INSERT OR REPLACE INTO container_state (id, current_tool, tool_timeout_ms, tool_started_at, updated_at) \
         VALUES (1, ?1, ?2, ?3, ?4)",
        params![name, timeout, started, now],
    )?;
    Ok(())
}

const OWN_ROW_COLUMNS: &str =
    "id, seq, in_reply_to, created_at, deliver_after, kind, destination, thread_id, content";

fn read_own_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<OutboundRow> {
    Ok(OutboundRow {
        id: row.get(0)?,
        seq: Seq(row.get(1)?),
        in_reply_to: row.get(2)?,
        created_at: row.get(3)?,
        deliver_after: row.get(4)?,
        kind: row.get(5)?,
        destination: row.get(6)?,
        thread_id: row.get(7)?,
        content: row.get(8)?,
    })
}

/// Runner: its own row with this seq, if any (the runner trusts its own file; the host
/// uses [`read_after`]).
pub fn get_by_seq(conn: &Connection, seq: Seq) -> rusqlite::Result<Option<OutboundRow>> {
    conn.query_row(
        &format!("SELECT {OWN_ROW_COLUMNS} FROM messages_out WHERE seq = ?1"),
        [seq.0],
        read_own_row,
    )
    .optional()
}

/// Runner: its own rows of one kind, in seq order (for the `system` actions it wrote).
pub fn rows_of_kind(conn: &Connection, kind: OutboundKind) -> rusqlite::Result<Vec<OutboundRow>> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {OWN_ROW_COLUMNS} FROM messages_out WHERE kind = ?1 ORDER BY seq"
    ))?;
    let rows = statement.query_map([kind], read_own_row)?;
    rows.collect()
}

/// An outbound row the host could not even read as a row: which one and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadRow {
    pub rowid: i64,
    /// The row's id when it was readable text, for recording the refusal.
    pub id: Option<String>,
    pub seq: Option<i64>,
    pub reason: String,
}

/// Host: reads up to `limit` rows with `seq > after`, in seq order. Each row is either a
/// well-typed [`OutboundRow`] (content still to be validated) or a [`BadRow`] naming the
/// problem; `content` longer than `max_content_bytes` is never loaded.
pub fn read_after(
    conn: &Connection,
    after: Seq,
    limit: usize,
    max_content_bytes: usize,
) -> rusqlite::Result<Vec<Result<OutboundRow, BadRow>>> {
    let mut statement = conn.prepare_cached(
        "SELECT rowid, id, seq, in_reply_to, created_at, deliver_after, kind, destination, thread_id, \
           CASE WHEN length(CAST(content AS BLOB)) <= ?3 THEN content END, length(CAST(content AS BLOB)) \
         FROM messages_out WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let max = i64::try_from(max_content_bytes).unwrap_or(i64::MAX);
    let rows = statement.query_map(params![after.0, limit, max], |row| {
        let values: Vec<Value> = (0..11)
            .map(|i| row.get::<_, Value>(i))
            .collect::<Result<_, _>>()?;
        Ok(values)
    })?;
    let mut out = Vec::new();
    for values in rows {
        out.push(typed_row(values?, max));
    }
    Ok(out)
}

fn typed_row(values: Vec<Value>, max_content_bytes: i64) -> Result<OutboundRow, BadRow> {
    let rowid = match values.first() {
        Some(Value::Integer(i)) => *i,
        _ => -1,
    };
    let id = match values.get(1) {
        Some(Value::Text(t)) if t.len() as i64 <= MAX_NAME_BYTES => Some(t.clone()),
        _ => None,
    };
    let seq = match values.get(2) {
        Some(Value::Integer(i)) => Some(*i),
        _ => None,
    };
    let bad = |reason: String| BadRow {
        rowid,
        id: id.clone(),
        seq,
        reason,
    };
    let Some(id_text) = id.clone() else {
        return Err(bad("id is not text of at most 256 bytes".into()));
    };
    let Some(seq_value) = seq else {
        return Err(bad("seq is not an integer".into()));
    };
    let text = |index: usize, name: &str| -> Result<Option<String>, BadRow> {
        match values.get(index) {
            Some(Value::Null) | None => Ok(None),
            Some(Value::Text(t)) if t.len() as i64 <= MAX_NAME_BYTES => Ok(Some(t.clone())),
            Some(_) => Err(bad(format!("{name} is not text of at most 256 bytes"))),
        }
    };
    let integer = |index: usize, name: &str| -> Result<Option<i64>, BadRow> {
        match values.get(index) {
            Some(Value::Null) | None => Ok(None),
            Some(Value::Integer(i)) => Ok(Some(*i)),
            Some(_) => Err(bad(format!("{name} is not an integer"))),
        }
    };
    let in_reply_to = text(3, "in_reply_to")?;
    let created_at = integer(4, "created_at")?.unwrap_or(0);
    let deliver_after = integer(5, "deliver_after")?;
    let kind = text(6, "kind")?.ok_or_else(|| bad("kind is missing".into()))?;
    let destination = text(7, "destination")?;
    let thread_id = text(8, "thread_id")?;
    let content = match (values.get(9), values.get(10)) {
        (Some(Value::Text(t)), _) => t.clone(),
        (_, Some(Value::Integer(size))) if *size > max_content_bytes => {
            return Err(bad(format!(
                "content is {size} bytes, over the cap of {max_content_bytes}"
            )));
        }
        _ => return Err(bad("content is not text".into())),
    };
    Ok(OutboundRow {
        id: MessageId::new(id_text),
        seq: Seq(seq_value),
        in_reply_to: in_reply_to.map(MessageId::new),
        created_at,
        deliver_after,
        kind,
        destination,
        thread_id,
        content,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::{MessageContent, OutboundContent};
    use crate::schema::{create_outbound, open_outbound_reader, open_outbound_writer};

    fn message(text: &str) -> NewOutboundRow {
        NewOutboundRow {
            id: MessageId::generate(),
            in_reply_to: None,
            deliver_after: None,
            kind: OutboundKind::Chat,
            destination: None,
            thread_id: None,
            content: OutboundContent::Message(MessageContent {
                text: text.into(),
                files: vec![],
            }),
        }
    }

    #[test]
    fn runner_writes_odd_seqs_and_host_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbound.db");
        create_outbound(&path).unwrap();
        let writer = open_outbound_writer(&path).unwrap();
        assert_eq!(
            insert(&writer, &message("a"), Some(Seq(4))).unwrap(),
            Seq(5)
        );
        assert_eq!(insert(&writer, &message("b"), None).unwrap(), Seq(7));
        set_ack(&writer, &MessageId::new("m1"), AckStatus::Completed).unwrap();
        let reader = open_outbound_reader(&path).unwrap();
        let rows = read_after(&reader, Seq(-1), 100, 1024).unwrap();
        let seqs: Vec<i64> = rows.iter().map(|r| r.as_ref().unwrap().seq.0).collect();
        assert_eq!(seqs, [5, 7]);
        assert_eq!(acks(&reader).unwrap().len(), 1);
        let own = get_by_seq(&writer, Seq(7)).unwrap().unwrap();
        assert_eq!(own.content, r#"{"text":"b"}"#);
        assert_eq!(get_by_seq(&writer, Seq(9)).unwrap(), None);
        assert_eq!(rows_of_kind(&writer, OutboundKind::Chat).unwrap().len(), 2);
        assert!(
            rows_of_kind(&writer, OutboundKind::System)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn hostile_rows_are_named_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbound.db");
        create_outbound(&path).unwrap();
        let writer = open_outbound_writer(&path).unwrap();
        writer
            .pragma_update(None, "ignore_check_constraints", "ON")
            .unwrap();
        writer
            .execute_batch(
                "INSERT INTO messages_out (id, seq, created_at, kind, content) VALUES ('big', 1, 0, 'chat', zeroblob(5000));
                 INSERT INTO messages_out (id, seq, created_at, kind, content) VALUES (x'00ff', 3, 0, 'chat', '{}');
                 INSERT INTO messages_out (id, seq, created_at, kind, content) VALUES ('ok', 5, 0, 'chat', '{\"text\":\"hi\"}');
                 INSERT INTO processing_ack VALUES ('m1', 'bogus', 0);",
            )
            .unwrap();
        let reader = open_outbound_reader(&path).unwrap();
        let rows = read_after(&reader, Seq(-1), 100, 1024).unwrap();
        assert!(
            rows[0]
                .as_ref()
                .unwrap_err()
                .reason
                .contains("over the cap"),
            "{:?}",
            rows[0]
        );
        assert!(
            rows[1]
                .as_ref()
                .unwrap_err()
                .reason
                .contains("id is not text"),
            "{:?}",
            rows[1]
        );
        assert_eq!(rows[2].as_ref().unwrap().id.as_str(), "ok");
        assert!(acks(&reader).unwrap().is_empty());
    }
}
