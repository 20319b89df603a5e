//! The host's bounded reads of `messages_out` and `processing_ack`: every column is selected
//! with its `typeof` and `octet_length`, and its value only when it has the right type and
//! fits its cap, so a hostile value is never loaded ([`select_rows`], [`select_acks`]). A row
//! that cannot be read as a row becomes a [`BadRow`] naming the column and its size.
//!
//! `octet_length(x)` and `typeof(x)` read only the record header since SQLite 3.43 (the
//! bundled SQLite is 3.53): `OP_Column` gets `OPFLAG_BYTELENARG` / `OPFLAG_TYPEOFARG` and skips
//! the payload, so the `CASE` guard decides before any byte of the value is read.
//!
//! One load stays outside SQL's reach: the rows are found through the `seq` index, and
//! SQLite's b-tree layer reads an index entry whole when it overflows its page. An honest
//! `seq` is an integer (a few bytes); a huge text `seq` planted past the CHECK is read once
//! per read transaction, bounded by the file's size (the session's disk quota), and the
//! row then comes back as a [`BadRow`].

use crate::ids::MessageId;
use crate::rows::{Ack, AckStatus, OutboundRow};
use crate::seq::Seq;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, Row, params};
use std::sync::LazyLock;

/// Longest id, destination or thread id the host accepts, in bytes.
pub const MAX_NAME_BYTES: i64 = 256;

/// Most acks one read returns, from the reader's ack cursor on. An honest session has one per
/// inbound message and the host moves its cursor past each as soon as it is finished, so a
/// read sees the one in progress and the few finished since; the cap bounds what a file
/// with millions of acks costs one read (the rest come in the next reads).
pub const MAX_ACKS: usize = 1_024;

/// Longest ack status (`processing`), with room to spare; anything longer is not a status.
const MAX_STATUS_BYTES: i64 = 32;

/// A text column: its type, its size in bytes, and its value when it is text within `cap`.
fn text_column(column: &str, cap: &str) -> String {
    format!(
        "typeof({column}), octet_length({column}), \
         CASE WHEN typeof({column}) = 'text' AND octet_length({column}) <= {cap} THEN {column} END"
    )
}

/// An integer column: its type, and its value when it is an integer.
fn integer_column(column: &str) -> String {
    format!("typeof({column}), CASE WHEN typeof({column}) = 'integer' THEN {column} END")
}

/// `?1` = after, `?2` = limit, `?3` = content cap, `?4` = name cap.
static ROWS_SQL: LazyLock<String> = LazyLock::new(|| {
    let columns = [
        text_column("id", "?4"),
        integer_column("seq"),
        text_column("in_reply_to", "?4"),
        integer_column("created_at"),
        integer_column("deliver_after"),
        text_column("kind", "?4"),
        text_column("destination", "?4"),
        text_column("thread_id", "?4"),
        text_column("content", "?3"),
    ];
    format!(
        "SELECT rowid, {} FROM messages_out WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        columns.join(", ")
    )
});

/// `?1` = id cap, `?2` = status cap, `?3` = limit, `?4` = first rowid, `?5` = a JSON array
/// of earlier rowids to read again. In rowid order. Two rowid seeks merged (`UNION ALL`),
/// never a scan: the cost is the window's, whatever the table's size.
pub(crate) static ACKS_SQL: LazyLock<String> = LazyLock::new(|| {
    let columns = format!(
        "rowid, {}, {}, {}",
        text_column("message_id", "?1"),
        text_column("status", "?2"),
        integer_column("changed_at"),
    );
    format!(
        "SELECT {columns} FROM processing_ack \
           WHERE rowid IN (SELECT value FROM json_each(?5)) AND rowid < ?4 \
         UNION ALL \
         SELECT {columns} FROM processing_ack WHERE rowid >= ?4 \
         ORDER BY 1 LIMIT ?3"
    )
});

/// An outbound row the host could not even read as a row: which one and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadRow {
    pub rowid: i64,
    /// The row's id when it was readable text within [`MAX_NAME_BYTES`], for recording the
    /// refusal.
    pub id: Option<String>,
    pub seq: Option<i64>,
    /// Names the column and what was wrong with it, with its size when that was the problem.
    pub reason: String,
}

/// Reads up to `limit` rows with `seq > after`, in seq order, every column bounded as the
/// module header says. `content` over `max_content_bytes` and any other text over
/// [`MAX_NAME_BYTES`] is never loaded.
pub(crate) fn select_rows(
    conn: &Connection,
    after: Seq,
    limit: usize,
    max_content_bytes: usize,
) -> rusqlite::Result<Vec<Result<OutboundRow, BadRow>>> {
    let mut statement = conn.prepare_cached(&ROWS_SQL)?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let content_cap = i64::try_from(max_content_bytes).unwrap_or(i64::MAX);
    let mut rows = statement.query(params![after.0, limit, content_cap, MAX_NAME_BYTES])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(decode_row(row, content_cap)?);
    }
    Ok(out)
}

/// What one read of `processing_ack` saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct AckRead {
    /// The well-formed acks, in rowid order.
    pub acks: Vec<Ack>,
    /// The last rowid the read covered, bad acks included; `None` when it saw none.
    pub through: Option<i64>,
}

/// Which acks a read takes: those from rowid `from` on, and the earlier ones at `again`
/// (acks seen in progress, read again until they finish). At most [`MAX_ACKS`] in all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AckWindow {
    pub from: i64,
    pub again: Vec<i64>,
}

impl AckWindow {
    /// Every ack, from the first.
    pub fn all() -> Self {
        Self::default()
    }
}

/// Reads up to [`MAX_ACKS`] acks of `window`, in rowid order. An ack with a bad id, an
/// unknown status or a non-integer time is skipped (it can only concern this session's own
/// rows), but counts in [`AckRead::through`], so a cursor moves past it.
pub(crate) fn select_acks(conn: &Connection, window: &AckWindow) -> rusqlite::Result<AckRead> {
    let mut statement = conn.prepare_cached(&ACKS_SQL)?;
    let limit = i64::try_from(MAX_ACKS).unwrap_or(i64::MAX);
    let again = serde_json::to_string(&window.again).unwrap_or_else(|_| "[]".to_owned());
    let mut rows = statement.query(params![
        MAX_NAME_BYTES,
        MAX_STATUS_BYTES,
        limit,
        window.from,
        again
    ])?;
    let mut read = AckRead::default();
    while let Some(row) = rows.next()? {
        let rowid = match row.get_ref(0)? {
            ValueRef::Integer(rowid) => rowid,
            _ => continue,
        };
        read.through = Some(rowid);
        let cells = Cells { row };
        let message_id = cells.text(1, "message_id", MAX_NAME_BYTES)?;
        let status = cells.text(4, "status", MAX_STATUS_BYTES)?;
        let changed_at = cells.integer(7, "changed_at")?;
        if let (Ok(Some(message_id)), Ok(Some(status)), Ok(Some(changed_at))) =
            (message_id, status, changed_at)
            && let Some(status) = AckStatus::parse(&status)
        {
            read.acks.push(Ack {
                rowid,
                message_id: MessageId::new(message_id),
                status,
                changed_at,
            });
        }
    }
    Ok(read)
}

/// One decoded row: SQLite errors (`?`) end the read, a hostile value becomes a [`BadRow`].
fn decode_row(row: &Row<'_>, content_cap: i64) -> rusqlite::Result<Result<OutboundRow, BadRow>> {
    let cells = Cells { row };
    let rowid = match row.get_ref(0)? {
        ValueRef::Integer(rowid) => rowid,
        _ => -1,
    };
    let id = cells.text(1, "id", MAX_NAME_BYTES)?;
    let seq = cells.integer(4, "seq")?;
    let in_reply_to = cells.text(6, "in_reply_to", MAX_NAME_BYTES)?;
    let created_at = cells.integer(9, "created_at")?;
    let deliver_after = cells.integer(11, "deliver_after")?;
    let kind = cells.text(13, "kind", MAX_NAME_BYTES)?;
    let destination = cells.text(16, "destination", MAX_NAME_BYTES)?;
    let thread_id = cells.text(19, "thread_id", MAX_NAME_BYTES)?;
    let content = cells.text(22, "content", content_cap)?;
    let bad = BadRow {
        rowid,
        id: id.clone().ok().flatten(),
        seq: seq.clone().ok().flatten(),
        reason: String::new(),
    };
    // Fields are evaluated in schema order, so the first bad column is the one reported.
    let decoded = (|| -> Result<OutboundRow, String> {
        Ok(OutboundRow {
            id: MessageId::new(required(id, "id")?),
            seq: Seq(required(seq, "seq")?),
            in_reply_to: in_reply_to?.map(MessageId::new),
            // NOT NULL in the schema; a NULL from a hostile file reads as "long ago".
            created_at: created_at?.unwrap_or(0),
            deliver_after: deliver_after?,
            kind: required(kind, "kind")?,
            destination: destination?,
            thread_id: thread_id?,
            content: required(content, "content")?,
        })
    })();
    Ok(decoded.map_err(|reason| BadRow { reason, ..bad }))
}

fn required<T>(value: Result<Option<T>, String>, name: &str) -> Result<T, String> {
    value?.ok_or_else(|| format!("{name} is missing"))
}

/// Typed access to the `typeof` / `octet_length` / guarded value triples of one row.
struct Cells<'a, 'b> {
    row: &'a Row<'b>,
}

impl Cells<'_, '_> {
    /// A text column starting at `index` (typeof, octet_length, guarded value). `Ok(None)` for
    /// NULL; `Err(reason)` for a value over `cap`, not text, or not UTF-8.
    fn text(
        &self,
        index: usize,
        name: &str,
        cap: i64,
    ) -> rusqlite::Result<Result<Option<String>, String>> {
        let kind = self.kind(index)?;
        let size = match self.row.get_ref(index + 1)? {
            ValueRef::Integer(size) => size,
            _ => 0,
        };
        if kind == "null" {
            return Ok(Ok(None));
        }
        if size > cap {
            return Ok(Err(format!(
                "{name} is {size} bytes, over the cap of {cap}"
            )));
        }
        if kind != "text" {
            return Ok(Err(format!("{name} is not text but {kind} ({size} bytes)")));
        }
        Ok(match self.row.get_ref(index + 2)? {
            ValueRef::Text(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => Ok(Some(text.to_owned())),
                Err(_) => Err(format!("{name} is not valid UTF-8 ({size} bytes)")),
            },
            _ => Err(format!("{name} could not be read ({size} bytes)")),
        })
    }

    /// An integer column starting at `index` (typeof, guarded value).
    fn integer(&self, index: usize, name: &str) -> rusqlite::Result<Result<Option<i64>, String>> {
        let kind = self.kind(index)?;
        Ok(match (kind.as_str(), self.row.get_ref(index + 1)?) {
            ("null", _) => Ok(None),
            ("integer", ValueRef::Integer(value)) => Ok(Some(value)),
            _ => Err(format!("{name} is not an integer but {kind}")),
        })
    }

    fn kind(&self, index: usize) -> rusqlite::Result<String> {
        Ok(match self.row.get_ref(index)? {
            // `typeof` returns one of five short words.
            ValueRef::Text(kind) => String::from_utf8_lossy(kind).into_owned(),
            _ => "unknown".into(),
        })
    }
}
