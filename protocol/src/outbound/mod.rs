//! Queries on `outbound.db`. The runner writes (messages, acks, container state) with the
//! functions here; the host reads everything as hostile input through [`OutboundReader`]
//! (file checks, schema check, work budget: [`reader`]), which never fails a whole batch for
//! one bad row and bounds every value in SQL before loading it ([`columns`]). The file-level
//! checks are in [`file`].

mod columns;
mod file;
mod reader;

pub use columns::{AckWindow, BadRow, MAX_ACKS, MAX_NAME_BYTES};
pub use reader::{BUDGET_REASON, OutboundReader, Snapshot};

use crate::ids::MessageId;
use crate::rows::{Ack, AckStatus, NewOutboundRow, OutboundKind, OutboundRow};
use crate::seq::{Seq, Writer};
use crate::time::now_ms;
use rusqlite::{Connection, OptionalExtension, params};

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

/// The first [`MAX_ACKS`] acks on a connection of [`crate::schema::open_outbound_reader`],
/// bounded like [`OutboundReader::read`] (which the host uses): a row with an unknown status,
/// a non-text or oversized id is skipped.
pub fn acks(conn: &Connection) -> rusqlite::Result<Vec<Ack>> {
    Ok(columns::select_acks(conn, &AckWindow::all())?.acks)
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

/// Reads up to `limit` rows with `seq > after`, in seq order, on a connection of
/// [`crate::schema::open_outbound_reader`], bounded like [`OutboundReader::read`] (which the
/// host uses, with its schema check and work budget in one transaction). Each row is either a
/// well-typed [`OutboundRow`] (content still to be validated) or a [`BadRow`] naming the
/// problem; `content` longer than `max_content_bytes` is never loaded.
pub fn read_after(
    conn: &Connection,
    after: Seq,
    limit: usize,
    max_content_bytes: usize,
) -> rusqlite::Result<Vec<Result<OutboundRow, BadRow>>> {
    conn.set_limit(
        rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH,
        reader::length_limit(max_content_bytes),
    )?;
    columns::select_rows(conn, after, limit, max_content_bytes)
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
