//! Database ownership: [`DbThread`] runs one dedicated OS thread per writable database and
//! executes commands sent from async code, answering on a oneshot; [`DbError`] is the error
//! of everything here. The central DB's schema and queries are in [`central`].
//!
//! No rusqlite call runs on a tokio worker thread, and no transaction spans an `.await`:
//! each command is a closure that runs to completion on the owning thread.

pub mod central;

use std::sync::Mutex;
use std::sync::mpsc;
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// Errors of the host's databases.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite refused. Retryable only when the database was busy or locked.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The central DB's migrations failed. Not retryable.
    #[error("migrating the central database failed: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    /// A session file could not be opened or migrated. See [`protocol::SchemaError::is_retryable`].
    #[error(transparent)]
    Schema(#[from] protocol::SchemaError),
    /// A file operation failed. Not retryable without a change on disk.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The named thing does not exist. Not retryable.
    #[error("{what} {id:?} not found")]
    NotFound { what: &'static str, id: String },
    /// The change would break a uniqueness or consistency rule. Not retryable.
    #[error("{0}")]
    Conflict(String),
    /// Input was refused. Not retryable.
    #[error("{0}")]
    Invalid(String),
    /// The owning thread has stopped (shutdown or a panic in a command). Not retryable.
    #[error("the {0} database thread has stopped")]
    Closed(&'static str),
}

impl DbError {
    pub fn is_retryable(&self) -> bool {
        match self {
            DbError::Sqlite(e) => matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            DbError::Schema(e) => e.is_retryable(),
            DbError::Migration(_)
            | DbError::Io { .. }
            | DbError::NotFound { .. }
            | DbError::Conflict(_)
            | DbError::Invalid(_)
            | DbError::Closed(_) => false,
        }
    }
}

type Command<S> = Box<dyn FnOnce(&mut S) + Send>;

/// A dedicated thread owning some database state `S` (a `Connection`, or a cache of them).
pub struct DbThread<S> {
    name: &'static str,
    sender: Mutex<Option<mpsc::Sender<Command<S>>>>,
    join: Mutex<Option<JoinHandle<()>>>,
}

impl<S: 'static> DbThread<S> {
    /// Starts the thread; `init` builds the state on the thread itself (so a `Connection` is
    /// opened where it will live). Returns once `init` has succeeded or failed.
    pub fn spawn(
        name: &'static str,
        init: impl FnOnce() -> Result<S, DbError> + Send + 'static,
    ) -> Result<Self, DbError> {
        let (sender, receiver) = mpsc::channel::<Command<S>>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), DbError>>();
        let join = std::thread::Builder::new()
            .name(format!("db-{name}"))
            .spawn(move || {
                let mut state = match init() {
                    Ok(state) => {
                        let _ = ready_tx.send(Ok(()));
                        state
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while let Ok(command) = receiver.recv() {
                    command(&mut state);
                }
            })
            .map_err(|source| DbError::Io {
                action: "spawning thread for",
                path: name.into(),
                source,
            })?;
        ready_rx.recv().map_err(|_| DbError::Closed(name))??;
        Ok(Self {
            name,
            sender: Mutex::new(Some(sender)),
            join: Mutex::new(Some(join)),
        })
    }

    /// Runs `f` on the owning thread and returns its result.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut S) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let (tx, rx) = oneshot::channel();
        self.send(Box::new(move |state: &mut S| {
            let _ = tx.send(f(state));
        }))?;
        rx.await.map_err(|_| DbError::Closed(self.name))?
    }

    /// Like [`DbThread::call`], for callers that are not async (CLI setup, tests).
    pub fn call_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut S) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let (tx, rx) = mpsc::channel();
        self.send(Box::new(move |state: &mut S| {
            let _ = tx.send(f(state));
        }))?;
        rx.recv().map_err(|_| DbError::Closed(self.name))?
    }

    fn send(&self, command: Command<S>) -> Result<(), DbError> {
        let guard = self.sender.lock().map_err(|_| DbError::Closed(self.name))?;
        let sender = guard.as_ref().ok_or(DbError::Closed(self.name))?;
        sender.send(command).map_err(|_| DbError::Closed(self.name))
    }

    /// Stops accepting commands, lets queued ones finish, and joins the thread.
    pub fn shutdown(&self) {
        if let Ok(mut sender) = self.sender.lock() {
            sender.take();
        }
        let join = self.join.lock().ok().and_then(|mut j| j.take());
        if let Some(join) = join {
            let _ = join.join();
        }
    }
}

impl<S> Drop for DbThread<S> {
    fn drop(&mut self) {
        if let Ok(mut sender) = self.sender.lock() {
            sender.take();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commands_run_in_order_on_one_thread() {
        let db = DbThread::spawn("test", || Ok(Vec::<std::thread::ThreadId>::new())).unwrap();
        for _ in 0..3 {
            db.call(|state| {
                state.push(std::thread::current().id());
                Ok(())
            })
            .await
            .unwrap();
        }
        let ids = db.call(|state| Ok(state.clone())).await.unwrap();
        assert_eq!(ids.len(), 3);
        assert!(ids.iter().all(|id| *id == ids[0]));
        assert_ne!(ids[0], std::thread::current().id());
        db.shutdown();
        assert!(matches!(
            db.call(|_| Ok(())).await,
            Err(DbError::Closed("test"))
        ));
    }

    #[test]
    fn failed_init_is_reported() {
        let result = DbThread::<()>::spawn("bad", || Err(DbError::Invalid("nope".into())));
        assert!(matches!(result, Err(DbError::Invalid(_))));
    }
}
