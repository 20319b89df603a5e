//! Host queries on the task series of `inbound.db` (see [`crate::schedule`] for what a task
//! is): every row of a series ([`series_rows`]), moving its open rows between `pending`,
//! `paused` and `cancelled` ([`set_series_status`]), rewriting its prompt and schedule
//! ([`update_series`]), and the earliest time a scheduled row of the session comes due
//! ([`earliest_scheduled`]), which the host mirrors into its central DB so its sweep knows
//! which idle sessions to wake.
//!
//! Only the host runs these (the runner opens `inbound.db` read-only). Each takes a
//! `&Connection`, so the caller groups them in one transaction.

use crate::rows::{InboundRow, InboundStatus};
use rusqlite::{Connection, params};

/// Every row of a task series (any status), oldest first.
pub fn series_rows(conn: &Connection, task_id: &str) -> rusqlite::Result<Vec<InboundRow>> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {} FROM messages_in WHERE kind = 'task' AND series_id = ?1 ORDER BY seq",
        crate::inbound::ROW_COLUMNS
    ))?;
    let rows = statement.query_map([task_id], crate::inbound::read_row)?;
    rows.collect()
}

/// The series' open rows: `pending` or `paused`, in seq order.
pub fn open_rows(conn: &Connection, task_id: &str) -> rusqlite::Result<Vec<InboundRow>> {
    Ok(series_rows(conn, task_id)?
        .into_iter()
        .filter(|row| matches!(row.status, InboundStatus::Pending | InboundStatus::Paused))
        .collect())
}

/// Sets every row of the series whose status is one of `from` to `to`; returns how many
/// changed.
pub fn set_series_status(
    conn: &Connection,
    task_id: &str,
    from: &[InboundStatus],
    to: InboundStatus,
) -> rusqlite::Result<usize> {
    let mut changed = 0;
    for status in from {
        changed += conn.execute(
            "UPDATE messages_in SET status = ?3 WHERE kind = 'task' AND series_id = ?1 AND status = ?2",
            params![task_id, status, to],
        )?;
    }
    Ok(changed)
}

/// What [`update_series`] changes; `None` keeps the current value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeriesUpdate {
    /// The new content JSON (the prompt as an `InboundContent`).
    pub content: Option<String>,
    /// When the next run is due (unix ms).
    pub process_after: Option<i64>,
    /// The new `recurrence` column: `Some(None)` makes the task a one-off.
    pub recurrence: Option<Option<String>>,
}

/// Rewrites the series' open rows (pending or paused). Returns how many changed.
pub fn update_series(
    conn: &Connection,
    task_id: &str,
    update: &SeriesUpdate,
) -> rusqlite::Result<usize> {
    let mut changed = 0;
    for row in open_rows(conn, task_id)? {
        let content = update.content.as_ref().unwrap_or(&row.content);
        let process_after = update.process_after.or(row.process_after);
        let recurrence = match &update.recurrence {
            Some(recurrence) => recurrence.clone(),
            None => row.recurrence.clone(),
        };
        changed += conn.execute(
            "UPDATE messages_in SET content = ?2, process_after = ?3, recurrence = ?4 WHERE id = ?1",
            params![row.id, content, process_after, recurrence],
        )?;
    }
    Ok(changed)
}

/// When the earliest pending trigger row with a `process_after` comes due (unix ms), past
/// or future; `None` when the session has no scheduled row left.
pub fn earliest_scheduled(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT min(process_after) FROM messages_in WHERE status = 'pending' AND trigger = 1 \
         AND process_after IS NOT NULL",
        [],
        |row| row.get(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NewInboundRow;
    use crate::inbound::insert;
    use crate::schedule::Recurrence;
    use crate::schema::open_inbound_writer;

    #[test]
    fn series_move_between_statuses_and_update() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_inbound_writer(&dir.path().join("inbound.db")).unwrap();
        assert_eq!(earliest_scheduled(&conn).unwrap(), None);
        let daily = Recurrence {
            cron: "@daily".into(),
            timezone: None,
        };
        insert(
            &conn,
            &NewInboundRow::task("t-1", "water", 500, Some(&daily)),
            None,
        )
        .unwrap();
        insert(&conn, &NewInboundRow::task("t-2", "feed", 300, None), None).unwrap();
        assert_eq!(earliest_scheduled(&conn).unwrap(), Some(300));
        assert_eq!(series_rows(&conn, "t-1").unwrap().len(), 1);

        let paused = set_series_status(
            &conn,
            "t-2",
            &[InboundStatus::Pending],
            InboundStatus::Paused,
        )
        .unwrap();
        assert_eq!(paused, 1);
        assert_eq!(earliest_scheduled(&conn).unwrap(), Some(500));
        assert_eq!(open_rows(&conn, "t-2").unwrap().len(), 1);

        let update = SeriesUpdate {
            content: Some(r#"{"text":"water twice"}"#.into()),
            process_after: Some(100),
            recurrence: Some(None),
        };
        assert_eq!(update_series(&conn, "t-1", &update).unwrap(), 1);
        let row = &series_rows(&conn, "t-1").unwrap()[0];
        assert_eq!(row.process_after, Some(100));
        assert_eq!(row.recurrence, None);
        assert!(row.content.contains("water twice"));
        assert_eq!(earliest_scheduled(&conn).unwrap(), Some(100));

        set_series_status(
            &conn,
            "t-1",
            &[InboundStatus::Pending, InboundStatus::Paused],
            InboundStatus::Cancelled,
        )
        .unwrap();
        assert!(open_rows(&conn, "t-1").unwrap().is_empty());
        assert_eq!(update_series(&conn, "t-1", &update).unwrap(), 0);
        assert_eq!(earliest_scheduled(&conn).unwrap(), None);
    }
}
