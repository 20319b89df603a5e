//! The next run of a recurring task, written when a run finishes ([`follow_up`]). Below
//! `tasks`, so delivery (which sees a run finish) and the supervisor's health checks (which
//! fail a run whose container died) call it without importing the layer above them.

use super::next_run;
use crate::db::DbError;
use protocol::schedule::Recurrence;
use protocol::series;
use protocol::{InboundKind, InboundRow, NewInboundRow};
use rusqlite::Connection;

/// After a run of a task finished (`row`, now completed or failed): writes the next run of a
/// recurring task, unless the series already has an open row. Returns when it runs.
pub fn follow_up(tx: &Connection, row: &InboundRow, now: i64) -> Result<Option<i64>, DbError> {
    let (InboundKind::Task, Some(task_id), Some(recurrence)) = (
        row.kind,
        row.series_id.as_deref(),
        row.recurrence
            .as_deref()
            .filter(|text| !text.trim().is_empty()),
    ) else {
        return Ok(None);
    };
    if !series::open_rows(tx, task_id)?.is_empty() {
        return Ok(None);
    }
    let recurrence = Recurrence::from_column(recurrence);
    let scheduled_at = row.process_after.unwrap_or(row.created_at);
    let run_at = match next_run(&recurrence, scheduled_at, now) {
        Ok(run_at) => run_at,
        Err(e) => {
            tracing::warn!(%task_id, error = %e, "a recurring task cannot be scheduled again; it stops");
            return Ok(None);
        }
    };
    let mut next = NewInboundRow::task(task_id, "", run_at, Some(&recurrence));
    next.content = row.content.clone();
    protocol::inbound::insert(tx, &next, None)?;
    Ok(Some(run_at))
}
