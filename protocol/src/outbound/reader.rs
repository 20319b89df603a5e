//! [`OutboundReader`]: the host's one way to read a session's container-written
//! `out/outbound.db`, as hostile input. A read ([`OutboundReader::read`]) is one read
//! transaction that checks the file's schema and returns a [`Snapshot`] of rows and acks,
//! under a work budget.
//!
//! What a hostile container can do to this file, and where it is stopped:
//! - replace it with a link, FIFO, device or directory, or plant such a journal:
//!   [`OutboundFile`] (`lstat`, `O_NOFOLLOW | O_NONBLOCK` open, `fstat`), then SQLite's
//!   `SQLITE_OPEN_NOFOLLOW`; see that module for the residual race and its bound;
//! - swap the file once it is open: [`OutboundFile::recheck`] after the open and around
//!   every read transaction;
//! - put views, triggers, extra tables or indexes in its schema (an endless recursive view
//!   spins a reader forever): the schema must equal the migrations' exactly, checked in the
//!   same transaction as the rows, before any row is read; views and triggers are disabled
//!   on the connection as well;
//! - make a read expensive: a progress handler aborts a transaction after [`Budget::READ`]'s
//!   VM steps or wall-clock time, and SQLite limits (value length, SQL length, expression
//!   depth, ...) are set low;
//! - write huge or ill-typed values: every column is bounded in SQL before it is loaded
//!   ([`super::columns`]).

use super::columns::{self, AckWindow, BadRow};
use super::file::OutboundFile;
use crate::rows::{Ack, OutboundRow};
use crate::schema::{self, SchemaError};
use crate::seq::Seq;
use rusqlite::config::DbConfig;
use rusqlite::limits::Limit;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The reason of the [`SchemaError::Hostile`] a read over its budget returns.
pub const BUDGET_REASON: &str = "reading outbound.db took more than its budget";

/// How many VM steps run between two calls of the progress handler.
const STEPS_PER_CHECK: u64 = 1_000;

/// How long a read waits for the container's write lock. Short: a passing writer commits in
/// milliseconds, a busy read is retryable (the commit's own file event brings the next
/// pass), and a container that holds its lock must not hold up the host's delivery.
const BUSY_TIMEOUT: Duration = Duration::from_millis(100);

/// Room above the content cap in `SQLITE_LIMIT_LENGTH`, for the row's other (small) values.
const LENGTH_MARGIN: usize = 64 * 1024;

/// SQLite limits that no honest read of `outbound.db` comes near, set low so that a hostile
/// schema costs little to parse (a schema entry over them makes the file "malformed").
const LOW_LIMITS: [(Limit, i32); 9] = [
    (Limit::SQLITE_LIMIT_SQL_LENGTH, 64 * 1024),
    (Limit::SQLITE_LIMIT_EXPR_DEPTH, 64),
    (Limit::SQLITE_LIMIT_COMPOUND_SELECT, 4),
    (Limit::SQLITE_LIMIT_ATTACHED, 0),
    (Limit::SQLITE_LIMIT_VARIABLE_NUMBER, 16),
    (Limit::SQLITE_LIMIT_COLUMN, 64),
    (Limit::SQLITE_LIMIT_FUNCTION_ARG, 8),
    (Limit::SQLITE_LIMIT_LIKE_PATTERN_LENGTH, 64),
    (Limit::SQLITE_LIMIT_TRIGGER_DEPTH, 1),
];

/// How much work one open or read may take before it is aborted as hostile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Budget {
    /// SQLite VM steps, counted in units of [`STEPS_PER_CHECK`].
    pub(crate) steps: u64,
    /// Wall-clock time, checked every [`STEPS_PER_CHECK`] steps.
    pub(crate) time: Duration,
}

impl Budget {
    /// The budget of every read. An honest read (a batch of rows and up to
    /// [`columns::MAX_ACKS`] acks) takes well under a million steps.
    pub(crate) const READ: Budget = Budget {
        steps: 50_000_000,
        time: Duration::from_secs(2),
    };
}

/// The progress handler's state, shared between the handler (owned by SQLite) and the reader.
#[derive(Debug)]
struct Meter {
    armed: AtomicBool,
    checks_left: AtomicU64,
    deadline: Mutex<Instant>,
    tripped: AtomicBool,
}

impl Meter {
    fn new() -> Self {
        Self {
            armed: AtomicBool::new(false),
            checks_left: AtomicU64::new(0),
            deadline: Mutex::new(Instant::now()),
            tripped: AtomicBool::new(false),
        }
    }

    fn arm(&self, budget: Budget) {
        self.checks_left
            .store(budget.steps / STEPS_PER_CHECK, Ordering::Relaxed);
        *self.deadline.lock().unwrap_or_else(PoisonError::into_inner) =
            Instant::now() + budget.time;
        self.tripped.store(false, Ordering::Relaxed);
        self.armed.store(true, Ordering::Relaxed);
    }

    fn disarm(&self) {
        self.armed.store(false, Ordering::Relaxed);
    }

    /// Called by SQLite every [`STEPS_PER_CHECK`] steps; true aborts the statement.
    fn tick(&self) -> bool {
        if !self.armed.load(Ordering::Relaxed) {
            return false;
        }
        let left = self.checks_left.load(Ordering::Relaxed);
        let late = Instant::now() >= *self.deadline.lock().unwrap_or_else(PoisonError::into_inner);
        if left == 0 || late {
            self.tripped.store(true, Ordering::Relaxed);
            return true;
        }
        self.checks_left.store(left - 1, Ordering::Relaxed);
        false
    }

    fn tripped(&self) -> bool {
        self.tripped.load(Ordering::Relaxed)
    }
}

/// What one read of `outbound.db` saw, in one transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Rows with `seq` above the cursor, in seq order: each a well-typed row (content still to
    /// be validated) or a [`BadRow`] naming what was wrong.
    pub rows: Vec<Result<OutboundRow, BadRow>>,
    /// Up to [`columns::MAX_ACKS`] well-formed acks from the read's ack cursor on, in rowid
    /// order; none when the read was asked for none.
    pub acks: Vec<Ack>,
    /// The last `processing_ack` rowid the read covered, skipped bad acks included: a cursor
    /// that moves past it never reads them again.
    pub acks_through: Option<i64>,
}

/// A session's `outbound.db`, opened read-only as hostile input. Holds the connection and the
/// checked file; keep one per session and call [`Self::read`] for every delivery pass.
#[derive(Debug)]
pub struct OutboundReader {
    conn: Connection,
    file: OutboundFile,
    meter: Arc<Meter>,
    budget: Budget,
}

impl OutboundReader {
    /// Opens the session's outbound.db read-only, as hostile input: the file checks, the
    /// defensive connection settings, and one schema check. `Missing` when there is no file
    /// yet, `NotReady` (retryable) for a crashed writer's hot journal, `Hostile` for anything
    /// the session must be failed for.
    pub fn open(path: &Path) -> Result<OutboundReader, SchemaError> {
        Self::open_with_budget(path, Budget::READ)
    }

    pub(crate) fn open_with_budget(path: &Path, budget: Budget) -> Result<Self, SchemaError> {
        let file = OutboundFile::check(path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NOFOLLOW
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let meter = Arc::new(Meter::new());
        let conn = Connection::open_with_flags(file.sqlite_uri(), flags)
            .map_err(|e| classify(&file, &meter, e))?;
        let reader = Self {
            conn,
            file,
            meter,
            budget,
        };
        reader.meter.arm(budget);
        let configured = reader.configure();
        reader.meter.disarm();
        configured?;
        reader.transaction(|_| Ok(()))?;
        Ok(reader)
    }

    /// One read transaction: rows with seq > after (at most `limit`, content over
    /// `max_content_bytes` never loaded) and, with `acks`, the acks of that window (at most
    /// [`columns::MAX_ACKS`]), under a work budget.
    pub fn read(
        &mut self,
        after: Seq,
        limit: usize,
        max_content_bytes: usize,
        acks: Option<&AckWindow>,
    ) -> Result<Snapshot, SchemaError> {
        self.conn
            .set_limit(Limit::SQLITE_LIMIT_LENGTH, length_limit(max_content_bytes))
            .map_err(|e| self.classify(e))?;
        self.transaction(|conn| {
            let rows = columns::select_rows(conn, after, limit, max_content_bytes)?;
            let acks = match acks {
                Some(window) => columns::select_acks(conn, window)?,
                None => columns::AckRead::default(),
            };
            Ok(Snapshot {
                rows,
                acks: acks.acks,
                acks_through: acks.through,
            })
        })
    }

    /// The bare connection, without the work budget, for [`schema::open_outbound_reader`].
    pub(crate) fn into_connection(self) -> Connection {
        // Without a reader to re-arm it the meter would stay disarmed anyway; removing the
        // handler saves its calls. It cannot fail on an open connection; if it did, the
        // handler left in place returns "continue" while disarmed.
        if self.conn.progress_handler(0, None::<fn() -> bool>).is_err() {
            self.meter.disarm();
        }
        self.conn
    }

    fn configure(&self) -> Result<(), SchemaError> {
        let conn = &self.conn;
        let meter = Arc::clone(&self.meter);
        let steps = i32::try_from(STEPS_PER_CHECK).unwrap_or(i32::MAX);
        conn.progress_handler(steps, Some(move || meter.tick()))
            .map_err(|e| self.classify(e))?;
        conn.set_limit(
            Limit::SQLITE_LIMIT_LENGTH,
            length_limit(crate::content::MAX_OUTBOUND_CONTENT_BYTES),
        )
        .map_err(|e| self.classify(e))?;
        for (limit, value) in LOW_LIMITS {
            conn.set_limit(limit, value).map_err(|e| self.classify(e))?;
        }
        for (setting, on) in [
            (DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true),
            (DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false),
            (DbConfig::SQLITE_DBCONFIG_ENABLE_VIEW, false),
            (DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, false),
            (DbConfig::SQLITE_DBCONFIG_DQS_DML, false),
            (DbConfig::SQLITE_DBCONFIG_DQS_DDL, false),
        ] {
            conn.set_db_config(setting, on)
                .map_err(|e| self.classify(e))?;
        }
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| self.classify(e))?;
        for (pragma, value) in [
            ("query_only", "ON"),
            ("cell_size_check", "ON"),
            ("mmap_size", "0"),
        ] {
            conn.pragma_update(None, pragma, value)
                .map_err(|e| self.classify(e))?;
        }
        self.file.recheck()
    }

    /// Runs `work` in one read transaction that first checks the schema, under the budget,
    /// with the file re-checked before and after.
    fn transaction<T>(
        &self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, SchemaError> {
        self.file.recheck()?;
        self.meter.arm(self.budget);
        let result = self.run(work);
        self.meter.disarm();
        if !self.conn.is_autocommit() {
            // Only after a failed read. A failed ROLLBACK of a read transaction leaves it
            // open; the next BEGIN then fails and reports it, so nothing is hidden here.
            let rolled_back = self.conn.execute_batch("ROLLBACK");
            if let (Ok(_), Err(e)) = (&result, rolled_back) {
                return Err(self.classify(e));
            }
        }
        let value = result?;
        self.file.recheck()?;
        Ok(value)
    }

    fn run<T>(
        &self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, SchemaError> {
        self.conn
            .execute_batch("BEGIN DEFERRED")
            .map_err(|e| self.classify(e))?;
        match schema::outbound_schema_difference(&self.conn)? {
            Ok(None) => {}
            Ok(Some(reason)) => return Err(self.file.hostile(reason)),
            Err(e) => return Err(self.classify(e)),
        }
        let value = work(&self.conn).map_err(|e| self.classify(e))?;
        self.conn
            .execute_batch("COMMIT")
            .map_err(|e| self.classify(e))?;
        Ok(value)
    }

    fn classify(&self, error: rusqlite::Error) -> SchemaError {
        classify(&self.file, &self.meter, error)
    }
}

/// Maps a SQLite error of this reader: an abort by the budget, a corrupt, oversized or
/// unopenable file are hostile; a hot journal is "not ready"; the rest stay SQLite errors
/// (a busy lock among them, retryable).
fn classify(file: &OutboundFile, meter: &Meter, error: rusqlite::Error) -> SchemaError {
    if meter.tripped() {
        return file.hostile(BUDGET_REASON.into());
    }
    match error.sqlite_error_code() {
        Some(
            ErrorCode::DatabaseCorrupt
            | ErrorCode::NotADatabase
            | ErrorCode::TooBig
            | ErrorCode::CannotOpen,
        ) => file.hostile(format!("sqlite refused it: {error}")),
        _ => schema::sqlite(file.shown())(error),
    }
}

/// `SQLITE_LIMIT_LENGTH` for a read with this content cap: a little above it, so that no
/// value the bounded SELECT would refuse can be loaded even by mistake.
pub(super) fn length_limit(max_content_bytes: usize) -> i32 {
    i32::try_from(max_content_bytes.saturating_add(LENGTH_MARGIN)).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests;
