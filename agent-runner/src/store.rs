//! The session files as the runner uses them: [`Store`] holds the read-only `inbound.db` and
//! the read-write `outbound.db` connections, and [`StoreHandle`] runs every SQLite call on one
//! dedicated thread that owns them, so no SQLite call (and no `busy_timeout` wait) ever blocks
//! the tokio thread that also drives the heartbeat.
//!
//! All SQL is in `protocol`; this module only groups its queries into the runner's
//! transactions (claim rows, send a message, finish a turn) and the reads the tools need
//! (rows by seq, answers to questions, the task list with [`TaskList`]).

use protocol::actions::Action;
use protocol::rows::{AckStatus, DeliveryStatus};
use protocol::schedule::ScheduledTask;
use protocol::schema::{open_inbound_reader, open_outbound_writer};
use protocol::{
    Destination, InboundRow, MessageId, NewOutboundRow, OutboundContent, OutboundKind, OutboundRow,
    SchemaError, Seq, SessionConfig, SessionPaths, SessionRouting, inbound, outbound,
};
use rusqlite::Connection;
use std::sync::mpsc;
use tokio::sync::oneshot;

/// Errors from the session files.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Opening a session file failed; retryable as [`SchemaError::is_retryable`] says.
    #[error(transparent)]
    Open(#[from] SchemaError),
    /// A query failed; retryable only when SQLite was busy or locked.
    #[error("session database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// `inbound.db` has no `session_config` row yet. Retryable: the host writes it.
    #[error("inbound.db has no session_config row: the host has not configured this session")]
    NotConfigured,
    /// The store thread is gone (it could not start, or it died). Not retryable.
    #[error("the session store thread has stopped")]
    ThreadGone,
}

impl StoreError {
    /// True when trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Open(error) => error.is_retryable(),
            StoreError::Sqlite(error) => matches!(
                error.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            StoreError::NotConfigured => true,
            StoreError::ThreadGone => false,
        }
    }
}

/// Which pending rows a read returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnWakeRows {
    /// A fresh process that has not run a turn yet also sees `on_wake` rows.
    Include,
    Exclude,
}

/// The scheduled tasks as `list_tasks` shows them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskList {
    /// The tasks in `inbound.db`, by task id.
    pub tasks: Vec<ScheduledTask>,
    /// Task actions this runner wrote that the host has not handled yet, with their seqs.
    pub pending: Vec<(Seq, Action)>,
}

/// The two session connections. Lives on the store thread; reach it through [`StoreHandle`].
pub struct Store {
    inbound: Connection,
    outbound: Connection,
}

impl Store {
    /// Opens `in/inbound.db` read-only and `out/outbound.db` read-write, checking both schemas.
    pub fn open(paths: &SessionPaths) -> Result<Self, StoreError> {
        let inbound = open_inbound_reader(&paths.inbound_db())?;
        let outbound = open_outbound_writer(&paths.outbound_db())?;
        Ok(Self { inbound, outbound })
    }

    pub fn config(&self) -> Result<SessionConfig, StoreError> {
        inbound::config(&self.inbound)?.ok_or(StoreError::NotConfigured)
    }

    pub fn routing(&self) -> Result<Option<SessionRouting>, StoreError> {
        Ok(inbound::routing(&self.inbound)?)
    }

    pub fn destinations(&self) -> Result<Vec<Destination>, StoreError> {
        Ok(inbound::destinations(&self.inbound)?)
    }

    /// Pending rows due at `now` that this container has not finished: rows acked
    /// `completed` or `failed` are skipped (the host has not copied the ack yet), rows left
    /// `processing` by a crashed container are returned to be taken again.
    pub fn due_rows(&self, now: i64, on_wake: OnWakeRows) -> Result<Vec<InboundRow>, StoreError> {
        let mut rows = Vec::new();
        for row in inbound::due_pending(&self.inbound, now)? {
            if row.on_wake && on_wake == OnWakeRows::Exclude {
                continue;
            }
            match outbound::ack(&self.outbound, &row.id)? {
                Some(AckStatus::Completed | AckStatus::Failed) => continue,
                Some(AckStatus::Processing) | None => rows.push(row),
            }
        }
        Ok(rows)
    }

    /// Marks rows `processing`, in one transaction.
    pub fn claim(&mut self, ids: &[MessageId]) -> Result<(), StoreError> {
        let transaction = self.outbound.transaction()?;
        for id in ids {
            outbound::set_ack(&transaction, id, AckStatus::Processing)?;
        }
        transaction.commit()?;
        Ok(())
    }

    /// Writes one outbound row now, with a seq above everything in both files.
    pub fn send(&mut self, row: &NewOutboundRow) -> Result<Seq, StoreError> {
        let inbound_max = inbound::max_seq(&self.inbound)?;
        Ok(outbound::insert(&self.outbound, row, inbound_max)?)
    }

    /// Writes the turn's replies and marks its rows `completed`, in one transaction, so the
    /// host sees replies and acks together.
    pub fn finish_turn(
        &mut self,
        replies: &[NewOutboundRow],
        ids: &[MessageId],
    ) -> Result<Vec<Seq>, StoreError> {
        let inbound_max = inbound::max_seq(&self.inbound)?;
        let transaction = self.outbound.transaction()?;
        let mut seqs = Vec::with_capacity(replies.len());
        for reply in replies {
            seqs.push(outbound::insert(&transaction, reply, inbound_max)?);
        }
        for id in ids {
            outbound::set_ack(&transaction, id, AckStatus::Completed)?;
        }
        transaction.commit()?;
        Ok(seqs)
    }

    /// The largest inbound seq so far.
    pub fn max_inbound_seq(&self) -> Result<Option<Seq>, StoreError> {
        Ok(inbound::max_seq(&self.inbound)?)
    }

    /// When the next scheduled trigger row comes due (unix ms), if one is waiting.
    pub fn next_due_at(&self, now: i64) -> Result<Option<i64>, StoreError> {
        Ok(inbound::next_due_at(&self.inbound, now)?)
    }

    /// The answer to the question `question_id` among rows after `after`, unless this
    /// runner has already finished that row.
    pub fn answer_to(
        &self,
        question_id: &str,
        after: Seq,
    ) -> Result<Option<InboundRow>, StoreError> {
        let Some(row) = inbound::answer_to(&self.inbound, question_id, after)? else {
            return Ok(None);
        };
        match outbound::ack(&self.outbound, &row.id)? {
            Some(AckStatus::Completed | AckStatus::Failed) => Ok(None),
            Some(AckStatus::Processing) | None => Ok(Some(row)),
        }
    }

    /// One of this runner's own outbound rows.
    pub fn own_row(&self, seq: Seq) -> Result<Option<OutboundRow>, StoreError> {
        Ok(outbound::get_by_seq(&self.outbound, seq)?)
    }

    /// An inbound row by seq.
    pub fn inbound_row(&self, seq: Seq) -> Result<Option<InboundRow>, StoreError> {
        Ok(inbound::get_by_seq(&self.inbound, seq)?)
    }

    /// The scheduled tasks (`task` rows this runner has not finished), and the task actions
    /// it wrote that the host has not handled yet (no `delivered` row, or still `sending`).
    pub fn task_list(&self) -> Result<TaskList, StoreError> {
        let mut list = TaskList::default();
        for row in inbound::task_rows(&self.inbound)? {
            if let Some(AckStatus::Completed | AckStatus::Failed) =
                outbound::ack(&self.outbound, &row.id)?
            {
                continue;
            }
            let Some(task) = ScheduledTask::from_row(&row) else {
                continue;
            };
            // A series has one next run; a catch-up may leave several rows: show the first.
            if !list.tasks.iter().any(|known| known.task_id == task.task_id) {
                list.tasks.push(task);
            }
        }
        for row in outbound::rows_of_kind(&self.outbound, OutboundKind::System)? {
            let handled = matches!(
                inbound::delivery(&self.inbound, &row.id)?,
                Some((
                    DeliveryStatus::Delivered | DeliveryStatus::Failed | DeliveryStatus::Dropped,
                    _
                ))
            );
            if handled {
                continue;
            }
            let action = OutboundContent::parse(OutboundKind::System, &row.content)
                .ok()
                .and_then(|content| Action::from_content(&content).ok());
            if let Some(action) = action.filter(|action| action.task_id().is_some()) {
                list.pending.push((row.seq, action));
            }
        }
        Ok(list)
    }

    /// Records the tool in progress (or none), so the host's sweep can tell busy from stuck.
    pub fn set_current_tool(&self, tool: Option<(&str, i64)>) -> Result<(), StoreError> {
        Ok(outbound::set_container_state(&self.outbound, tool)?)
    }
}

type Job = Box<dyn FnOnce(&mut Store) + Send>;

/// A cheap handle to the store thread. The thread ends when the last handle is dropped.
#[derive(Clone)]
pub struct StoreHandle {
    jobs: mpsc::Sender<Job>,
}

/// The store thread itself, to be joined at shutdown so no transaction is cut short.
pub struct StoreThread {
    pub handle: StoreHandle,
    join: std::thread::JoinHandle<()>,
}

impl StoreThread {
    /// Starts the thread and opens the session files on it.
    pub async fn open(paths: SessionPaths) -> Result<Self, StoreError> {
        let (jobs, receiver) = mpsc::channel::<Job>();
        let (opened, open_result) = oneshot::channel();
        let join = std::thread::Builder::new()
            .name("session-store".into())
            .spawn(move || {
                let mut store = match Store::open(&paths) {
                    Ok(store) => {
                        let _ = opened.send(Ok(()));
                        store
                    }
                    Err(error) => {
                        let _ = opened.send(Err(error));
                        return;
                    }
                };
                while let Ok(job) = receiver.recv() {
                    job(&mut store);
                }
            })
            .map_err(|_| StoreError::ThreadGone)?;
        open_result.await.map_err(|_| StoreError::ThreadGone)??;
        Ok(Self {
            handle: StoreHandle { jobs },
            join,
        })
    }

    /// Drops this handle and waits for the thread to finish its current job. Other clones
    /// of the handle must be dropped first, or this waits for them.
    pub async fn close(self) {
        drop(self.handle);
        let join = self.join;
        if tokio::task::spawn_blocking(move || join.join())
            .await
            .is_err()
        {
            tracing::warn!("the session store thread did not stop cleanly");
        }
    }
}

impl StoreHandle {
    /// Runs `job` on the store thread and returns its result.
    pub async fn call<R, F>(&self, job: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Store) -> Result<R, StoreError> + Send + 'static,
    {
        let (reply, result) = oneshot::channel();
        self.jobs
            .send(Box::new(move |store: &mut Store| {
                let _ = reply.send(job(store));
            }))
            .map_err(|_| StoreError::ThreadGone)?;
        result.await.map_err(|_| StoreError::ThreadGone)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::schema::{create_outbound, open_inbound_writer};
    use protocol::{InboundContent, NewInboundRow};

    fn session() -> (tempfile::TempDir, SessionPaths, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let paths = SessionPaths::at(dir.path());
        std::fs::create_dir_all(paths.in_dir()).unwrap();
        std::fs::create_dir_all(paths.out_dir()).unwrap();
        let host = open_inbound_writer(&paths.inbound_db()).unwrap();
        create_outbound(&paths.outbound_db()).unwrap();
        (dir, paths, host)
    }

    fn insert(host: &Connection, on_wake: bool) -> MessageId {
        let mut row = NewInboundRow::chat(&InboundContent {
            text: "hi".into(),
            ..Default::default()
        });
        row.on_wake = on_wake;
        inbound::insert(host, &row, None).unwrap();
        row.id
    }

    #[test]
    fn due_rows_skip_finished_and_retake_processing() {
        let (_dir, paths, host) = session();
        let done = insert(&host, false);
        let failed = insert(&host, false);
        let crashed = insert(&host, false);
        let fresh = insert(&host, false);
        let wake = insert(&host, true);
        let mut store = Store::open(&paths).unwrap();
        store.claim(&[crashed.clone(), done.clone()]).unwrap();
        store.finish_turn(&[], &[done]).unwrap();
        outbound::set_ack(&store.outbound, &failed, AckStatus::Failed).unwrap();
        let ids = |on_wake| -> Vec<MessageId> {
            let rows = store.due_rows(i64::MAX, on_wake).unwrap();
            rows.into_iter().map(|r| r.id).collect()
        };
        assert_eq!(
            ids(OnWakeRows::Include),
            [crashed.clone(), fresh.clone(), wake]
        );
        assert_eq!(ids(OnWakeRows::Exclude), [crashed, fresh]);
    }

    #[test]
    fn missing_config_and_files_are_named() {
        let (dir, paths, _host) = session();
        let store = Store::open(&paths).unwrap();
        assert!(matches!(store.config(), Err(StoreError::NotConfigured)));
        let missing = Store::open(&SessionPaths::at(dir.path().join("nope")));
        assert!(matches!(
            missing,
            Err(StoreError::Open(SchemaError::Missing { .. }))
        ));
    }
}
