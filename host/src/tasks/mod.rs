//! Scheduled tasks, host side (DESIGN §4 Sweep). A task is a series of `task` rows in one
//! session's `inbound.db` sharing a `series_id` (see `protocol::schedule`); the host is the
//! only one who writes them. [`apply`] carries out one [`TaskChange`] — from an agent's
//! `system` action or from `crabpot tasks` — inside the session's transaction;
//! [`crate::schedule::follow_up`] writes a recurring task's next run when a run finishes
//! (delivery and the supervisor's health checks call it, below this module). [`Tasks`] wraps both for async callers: it mirrors each
//! session's earliest scheduled row into the central DB (so the sweep wakes idle sessions
//! when a task comes due), indexes which session holds which task, and lists tasks.

use crate::db::central::tasks as task_db;
use crate::db::{DbError, DbThread};
use crate::schedule::{self, ScheduleError};
use crate::session::{SessionRef, SessionStore};
use crate::supervisor::Supervisor;
use protocol::actions::{ScheduleTask, UpdateTask};
use protocol::schedule::Schedule;
use protocol::series::{self, SeriesUpdate};
use protocol::{InboundContent, InboundRow, InboundStatus, NewInboundRow, SessionId};
use rusqlite::Connection;
use serde::Serialize;
use std::sync::Arc;

/// Why a task change was not made.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// No open (pending or paused) task with this id. Not retryable.
    #[error("there is no scheduled task {0:?} (it may have run already or been cancelled)")]
    NotFound(String),
    /// The id is taken in this session. Not retryable.
    #[error("task {0:?} already exists; choose another id")]
    Exists(String),
    /// The schedule cannot be evaluated. Not retryable.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// Several sessions hold this id. Not retryable.
    #[error("task id {0:?} names tasks in several sessions")]
    Ambiguous(String),
    /// The database failed. Retryable when it was busy.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// One change to a session's tasks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskChange {
    Schedule(ScheduleTask),
    Update(UpdateTask),
    Pause(String),
    Resume(String),
    Cancel(String),
    /// Run the task once now, besides its schedule.
    RunNow(String),
}

impl TaskChange {
    pub fn task_id(&self) -> &str {
        match self {
            TaskChange::Schedule(task) => &task.task_id,
            TaskChange::Update(update) => &update.task_id,
            TaskChange::Pause(task_id)
            | TaskChange::Resume(task_id)
            | TaskChange::Cancel(task_id)
            | TaskChange::RunNow(task_id) => task_id,
        }
    }
}

/// What a change did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// When the task runs next (unix ms), if it is still scheduled and not paused.
    pub next_run_at: Option<i64>,
    /// A run is due now: the session should be woken.
    pub due_now: bool,
}

fn prompt_content(prompt: &str) -> String {
    serde_json::to_string(&InboundContent {
        text: prompt.to_owned(),
        ..InboundContent::default()
    })
    .unwrap_or_else(|_| "{}".into())
}

/// Carries out one change in a session's `inbound.db` (inside the caller's transaction).
/// The outer error is the database's; the inner one says why the change was refused, in
/// which case nothing was written.
pub fn apply(
    tx: &Connection,
    change: &TaskChange,
    now: i64,
) -> Result<Result<Applied, TaskError>, DbError> {
    let task_id = change.task_id();
    let open = series::open_rows(tx, task_id)?;
    let next_of = |rows: &[InboundRow]| -> Option<i64> {
        rows.iter()
            .filter(|row| row.status == InboundStatus::Pending)
            .filter_map(|row| row.process_after)
            .min()
    };
    let pending_now = |tx: &Connection| -> Result<Applied, DbError> {
        let rows = series::open_rows(tx, task_id)?;
        let next_run_at = next_of(&rows);
        Ok(Applied {
            next_run_at,
            due_now: next_run_at.is_some_and(|at| at <= now),
        })
    };
    if open.is_empty() && !matches!(change, TaskChange::Schedule(_)) {
        return Ok(Err(TaskError::NotFound(task_id.to_owned())));
    }
    match change {
        TaskChange::Schedule(task) => {
            if !series::series_rows(tx, task_id)?.is_empty() {
                return Ok(Err(TaskError::Exists(task_id.to_owned())));
            }
            let run_at = match schedule::first_run(&task.schedule, now) {
                Ok(run_at) => run_at,
                Err(e) => return Ok(Err(e.into())),
            };
            let recurrence = match &task.schedule {
                Schedule::At(_) => None,
                Schedule::Cron(recurrence) => Some(recurrence),
            };
            let row = NewInboundRow::task(task_id, &task.prompt, run_at, recurrence);
            protocol::inbound::insert(tx, &row, None)?;
        }
        TaskChange::Update(update) => {
            let mut changes = SeriesUpdate {
                content: update.prompt.as_deref().map(prompt_content),
                ..SeriesUpdate::default()
            };
            if let Some(schedule) = &update.schedule {
                match schedule::first_run(schedule, now) {
                    Ok(run_at) => changes.process_after = Some(run_at),
                    Err(e) => return Ok(Err(e.into())),
                }
                changes.recurrence = Some(match schedule {
                    Schedule::At(_) => None,
                    Schedule::Cron(recurrence) => Some(recurrence.to_column()),
                });
            }
            series::update_series(tx, task_id, &changes)?;
        }
        TaskChange::Pause(_) => {
            series::set_series_status(
                tx,
                task_id,
                &[InboundStatus::Pending],
                InboundStatus::Paused,
            )?;
        }
        TaskChange::Resume(_) => {
            series::set_series_status(
                tx,
                task_id,
                &[InboundStatus::Paused],
                InboundStatus::Pending,
            )?;
        }
        TaskChange::Cancel(_) => {
            series::set_series_status(
                tx,
                task_id,
                &[InboundStatus::Pending, InboundStatus::Paused],
                InboundStatus::Cancelled,
            )?;
            return Ok(Ok(Applied {
                next_run_at: None,
                due_now: false,
            }));
        }
        TaskChange::RunNow(_) => {
            let recurring = open.iter().find(|row| {
                row.recurrence
                    .as_deref()
                    .is_some_and(|text| !text.trim().is_empty())
            });
            match recurring {
                // A recurring task keeps its schedule: one extra run, now.
                Some(row) => {
                    let mut extra = NewInboundRow::task(task_id, "", now, None);
                    extra.content = row.content.clone();
                    protocol::inbound::insert(tx, &extra, None)?;
                }
                // A one-off task is moved to now (and unpaused).
                None => {
                    series::update_series(
                        tx,
                        task_id,
                        &SeriesUpdate {
                            process_after: Some(now),
                            ..SeriesUpdate::default()
                        },
                    )?;
                    series::set_series_status(
                        tx,
                        task_id,
                        &[InboundStatus::Paused],
                        InboundStatus::Pending,
                    )?;
                }
            }
        }
    }
    Ok(Ok(pending_now(tx)?))
}

/// A task as `crabpot tasks list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TaskView {
    pub task_id: String,
    pub agent_group_id: String,
    pub session_id: String,
    /// `pending`, `paused`, or how its last run ended (`completed`, `failed`, `cancelled`).
    pub status: String,
    pub next_run_at: Option<i64>,
    /// `next_run_at` in RFC 3339, UTC.
    pub next_run: Option<String>,
    /// `once`, or the cron schedule (with `CRON_TZ=<zone>` when it has a timezone).
    pub schedule: String,
    pub prompt: String,
}

impl TaskView {
    fn from_rows(entry: &task_db::TaskEntry, rows: &[InboundRow]) -> Option<Self> {
        let open: Vec<&InboundRow> = rows
            .iter()
            .filter(|row| matches!(row.status, InboundStatus::Pending | InboundStatus::Paused))
            .collect();
        let shown = open
            .iter()
            .copied()
            .min_by_key(|row| row.process_after)
            .or_else(|| rows.last())?;
        // A cancelled task has a cancelled row (cancel takes every open row), whatever ran
        // before; otherwise a finished task ends as its last run did.
        let status = if open.iter().any(|row| row.status == InboundStatus::Pending) {
            "pending".to_owned()
        } else if open.is_empty()
            && rows
                .iter()
                .any(|row| row.status == InboundStatus::Cancelled)
        {
            InboundStatus::Cancelled.to_string()
        } else {
            shown.status.to_string()
        };
        let recurrence = rows.iter().rev().find_map(|row| {
            row.recurrence
                .clone()
                .filter(|text| !text.trim().is_empty())
        });
        let prompt = serde_json::from_str::<InboundContent>(&shown.content)
            .map(|content| content.text)
            .unwrap_or_else(|_| shown.content.clone());
        let next_run_at = (!open.is_empty()).then_some(shown.process_after).flatten();
        Some(Self {
            next_run: next_run_at.and_then(|at| {
                chrono::DateTime::<chrono::Utc>::from_timestamp_millis(at)
                    .map(|at| at.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            }),
            next_run_at,
            task_id: entry.task_id.clone(),
            agent_group_id: entry.agent_group_id.to_string(),
            session_id: entry.session_id.to_string(),
            status,
            schedule: recurrence.unwrap_or_else(|| "once".to_owned()),
            prompt,
        })
    }

    /// Whether the task is still scheduled (pending or paused).
    pub fn is_open(&self) -> bool {
        matches!(self.status.as_str(), "pending" | "paused")
    }
}

/// Task changes and listings for async callers (delivery, the admin API).
pub struct Tasks {
    sessions: Arc<SessionStore>,
    central: Arc<DbThread<Connection>>,
    supervisor: Arc<Supervisor>,
}

impl Tasks {
    pub fn new(
        sessions: Arc<SessionStore>,
        central: Arc<DbThread<Connection>>,
        supervisor: Arc<Supervisor>,
    ) -> Arc<Self> {
        Arc::new(Self {
            sessions,
            central,
            supervisor,
        })
    }

    /// Applies a change to a session's tasks, mirrors when the session comes due next, and
    /// wakes it when a run is due now.
    pub async fn change(
        &self,
        session: &SessionRef,
        change: TaskChange,
    ) -> Result<Applied, TaskError> {
        let now = protocol::time::now_ms();
        let scheduling = matches!(change, TaskChange::Schedule(_));
        let task_id = change.task_id().to_owned();
        let (result, earliest) = self
            .sessions
            .with_inbound(session, move |tx, _| {
                let result = apply(tx, &change, now)?;
                Ok((result, series::earliest_scheduled(tx)?))
            })
            .await?;
        let applied = result?;
        let (id, group) = (session.id.clone(), session.agent_group.clone());
        self.central
            .call(move |conn| {
                if scheduling {
                    task_db::add_task(conn, &task_id, &id, &group)?;
                }
                task_db::set_next_due(conn, &id, earliest)
            })
            .await?;
        if applied.due_now {
            self.supervisor.wake(session);
        }
        Ok(applied)
    }

    /// Mirrors when a session's earliest scheduled row comes due (after a run finished).
    pub async fn mirror_due(&self, session: &SessionId, earliest: Option<i64>) {
        let id = session.clone();
        if let Err(e) = self
            .central
            .call(move |conn| task_db::set_next_due(conn, &id, earliest))
            .await
        {
            tracing::warn!(session_id = %session, error = %e, "recording when the session is due failed");
        }
    }

    /// The session that holds a task.
    pub async fn find(&self, task_id: &str) -> Result<SessionRef, TaskError> {
        let id = task_id.to_owned();
        let entries = self
            .central
            .call(move |conn| task_db::find_task(conn, &id))
            .await?;
        match entries.as_slice() {
            [] => Err(TaskError::NotFound(task_id.to_owned())),
            [entry] => Ok(SessionRef {
                id: entry.session_id.clone(),
                agent_group: entry.agent_group_id.clone(),
                group_folder: entry.group_folder.clone(),
            }),
            _ => Err(TaskError::Ambiguous(task_id.to_owned())),
        }
    }

    /// Tasks, optionally of one group; finished ones too with `all`.
    pub async fn list(
        &self,
        group: Option<protocol::AgentGroupId>,
        all: bool,
    ) -> Result<Vec<TaskView>, TaskError> {
        let entries = self
            .central
            .call(move |conn| task_db::list_tasks(conn, group.as_ref()))
            .await?;
        let mut views = Vec::new();
        for entry in entries {
            let session = SessionRef {
                id: entry.session_id.clone(),
                agent_group: entry.agent_group_id.clone(),
                group_folder: entry.group_folder.clone(),
            };
            if !self.sessions.paths(&session).inbound_db().exists() {
                continue;
            }
            let task_id = entry.task_id.clone();
            let rows = self
                .sessions
                .with_inbound(&session, move |tx, _| {
                    Ok(series::series_rows(tx, &task_id)?)
                })
                .await?;
            if let Some(view) = TaskView::from_rows(&entry, &rows)
                && (all || view.is_open())
            {
                views.push(view);
            }
        }
        Ok(views)
    }
}

#[cfg(test)]
mod tests;
