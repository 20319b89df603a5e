//! The runner's life: open the session ([`Runner::open`], retrying while the files are busy),
//! then heartbeat, wake on new rows (and when a scheduled row comes due), and run turns until
//! shut down ([`Runner::run_until`]). [`Runner::process_pending`] runs at most one turn (or
//! one `/clear` or `/stop`) and is what tests drive directly. While a turn runs, the runner
//! watches for `/stop` at the same time (`stop::watch`, on the same wake events).
//!
//! Errors are [`RunnerError`]; [`RunnerError::exit_code`] maps them to the documented exit
//! codes of the binary.

use crate::commands;
use crate::config::{Limits, RunnerOptions};
use crate::image::ImageStore;
use crate::live::LiveClient;
use crate::model::ModelClient;
use crate::stop::{self, Starters, StopRequest};
use crate::store::{OnWakeRows, StoreError, StoreThread};
use crate::tools::ToolRegistry;
use crate::tools::workspace::Workspace;
use crate::transcript::{Transcript, TranscriptError};
use crate::turn::{TurnContext, TurnError, TurnOutcome, TurnSummary, run_turn};
use crate::wake::Wake;
use crate::{EXIT_FAILURE, EXIT_SESSION_NOT_READY, EXIT_SESSION_UNUSABLE, heartbeat};
use protocol::MessageId;
use std::future::Future;
use std::time::Duration;
use tracing::Instrument;

/// Why the runner stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The session could not be opened at start: files missing, another schema version,
    /// no configuration, or still busy at the deadline. Not retryable in-process.
    #[error("cannot open the session: {0}")]
    Open(StoreError),
    /// A session file failed while running. Retryable when SQLite was busy.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The transcript could not be written. Not retryable.
    #[error(transparent)]
    Transcript(#[from] TranscriptError),
}

impl From<TurnError> for RunnerError {
    fn from(error: TurnError) -> Self {
        match error {
            TurnError::Store(error) => RunnerError::Store(error),
            TurnError::Transcript(error) => RunnerError::Transcript(error),
        }
    }
}

impl RunnerError {
    pub fn is_retryable(&self) -> bool {
        match self {
            RunnerError::Store(error) => error.is_retryable(),
            RunnerError::Open(_) | RunnerError::Transcript(_) => false,
        }
    }

    /// The process exit code for this error (see the binary's `--help`).
    pub fn exit_code(&self) -> u8 {
        match self {
            RunnerError::Open(StoreError::NotConfigured) => EXIT_SESSION_UNUSABLE,
            RunnerError::Open(error) if error.is_retryable() => EXIT_SESSION_NOT_READY,
            RunnerError::Open(_) => EXIT_SESSION_UNUSABLE,
            RunnerError::Store(_) | RunnerError::Transcript(_) => EXIT_FAILURE,
        }
    }
}

/// An open session and everything needed to run its turns.
pub struct Runner {
    options: RunnerOptions,
    store: StoreThread,
    limits: Limits,
    model: ModelClient,
    tools: ToolRegistry,
    workspace: Workspace,
    transcript: Transcript,
    live: LiveClient,
    /// File events of `in/`, while [`Runner::run_until`] runs; a turn watches them for
    /// `/stop` too.
    wake: Option<Wake>,
    /// No turn has run in this process yet, so `on_wake` rows are still due.
    fresh: bool,
}

impl Runner {
    /// Opens the session files (retrying with backoff while they are busy or not ready, up to
    /// `options.open_deadline`), reads the configuration and loads the transcript.
    pub async fn open(options: RunnerOptions) -> Result<Self, RunnerError> {
        let deadline = tokio::time::Instant::now() + options.open_deadline;
        let mut delay = Duration::from_millis(50);
        let (store, config) = loop {
            let error = match StoreThread::open(options.paths.clone()).await {
                Ok(store) => match store.handle.call(|store| store.config()).await {
                    Ok(config) => break (store, config),
                    Err(error) => {
                        store.close().await;
                        error
                    }
                },
                Err(error) => error,
            };
            if !error.is_retryable() || tokio::time::Instant::now() + delay > deadline {
                return Err(RunnerError::Open(error));
            }
            tracing::warn!(%error, ?delay, "the session is not ready; trying again");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        };
        let transcript = Transcript::load(&options.paths.transcript())?;
        let limits = Limits::new(config);
        let model = ModelClient::new(
            limits.config.provider,
            options.paths.proxy_socket(),
            options.model_retry,
        );
        tracing::info!(
            provider = %limits.config.provider,
            model = %limits.config.model,
            n_transcript_entries = transcript.entries().len(),
            "session opened"
        );
        // The group's MCP servers (none without /group/mcp.json); their tools join the set.
        let tools = ToolRegistry::standard();
        let mcp_tools = crate::mcp::start(
            &options.group_dir,
            &options.paths.work_dir(),
            tools.definitions(),
        )
        .await;
        Ok(Self {
            workspace: Workspace::new(options.paths.work_dir()),
            live: LiveClient::new(options.paths.proxy_socket()),
            wake: None,
            options,
            store,
            limits,
            model,
            tools: tools.with_extra(mcp_tools),
            transcript,
            fresh: true,
        })
    }

    /// Runs one turn if a trigger row is due; `None` when there was nothing to do.
    ///
    /// `on_wake` rows are included until this process has run its first turn (so a fresh
    /// container's first turn sees them, whatever woke it).
    pub async fn process_pending(&mut self) -> Result<Option<TurnSummary>, RunnerError> {
        let on_wake = if self.fresh {
            OnWakeRows::Include
        } else {
            OnWakeRows::Exclude
        };
        let (rows, config) = self
            .store
            .handle
            .call(move |store| {
                let rows = store.due_rows(protocol::time::now_ms(), on_wake)?;
                let config = match store.config() {
                    Ok(config) => Some(config),
                    Err(StoreError::NotConfigured) => None,
                    Err(error) => return Err(error),
                };
                Ok((rows, config))
            })
            .await?;
        if !rows.iter().any(|row| row.trigger) {
            return Ok(None);
        }
        if let Some(config) = config {
            self.reconfigure(config);
        }
        self.fresh = false;
        let clear = commands::find_clear(&rows);
        let mut rows = rows;
        let stop = StopRequest::new();
        if let Some((index, command)) = stop::find_stop(&rows)
            && clear.is_none_or(|clear| index < clear.index)
        {
            // The /stop came with the rows of the turn it would stop.
            rows.truncate(index);
            let starters = Starters::of(&rows);
            let reply = if !rows.iter().any(|row| row.trigger) {
                Some(stop::NOTHING_RUNNING_REPLY)
            } else if !command.may_stop(&starters) {
                Some(stop::STOP_REFUSED_REPLY)
            } else {
                None
            };
            if let Some(reply) = reply {
                return Ok(Some(self.answer_stop(&command.row, reply).await?));
            }
            stop.stop(command.row);
        } else if let Some(command) = clear {
            let span = tracing::info_span!("clear", authorized = command.authorized);
            let summary =
                commands::run_clear(&self.store.handle, &mut self.transcript, &rows, command)
                    .instrument(span)
                    .await?;
            ImageStore::in_out_dir(&self.options.paths.out_dir()).prune(self.transcript.entries());
            return Ok(Some(summary));
        }
        let turn_rows: Vec<MessageId> = rows.iter().map(|row| row.id.clone()).collect();
        let starters = Starters::of(&rows);
        let context = TurnContext {
            store: &self.store.handle,
            model: &self.model,
            tools: &self.tools,
            transcript: &mut self.transcript,
            limits: &self.limits,
            paths: &self.options.paths,
            group_dir: &self.options.group_dir,
            workspace: &self.workspace,
            tool_limits: &self.options.tool_limits,
            live: &self.live,
            stop: &stop,
        };
        let span = tracing::info_span!("turn", n_rows = rows.len());
        let turn = run_turn(context, rows).instrument(span);
        let watch = stop::watch(
            &self.store.handle,
            self.wake.as_mut(),
            &turn_rows,
            &starters,
            &stop,
        );
        tokio::select! {
            biased;
            summary = turn => Ok(Some(summary?)),
            never = watch => match never {},
        }
    }

    /// Answers a `/stop` that has no turn of its own to stop, and completes it.
    async fn answer_stop(
        &self,
        row: &MessageId,
        reply: &'static str,
    ) -> Result<TurnSummary, RunnerError> {
        let outcome = if reply == stop::NOTHING_RUNNING_REPLY {
            TurnOutcome::NothingToStop
        } else {
            TurnOutcome::StopRefused
        };
        tracing::info!(?outcome, "answered /stop");
        let replies = stop::answer(&self.store.handle, row, reply).await?;
        Ok(TurnSummary {
            outcome,
            rows: vec![row.clone()],
            model_calls: 0,
            replies,
            effects: Default::default(),
        })
    }

    /// Picks up a changed model or limits; the intervals and `watch_files` keep their
    /// start values.
    fn reconfigure(&mut self, config: protocol::SessionConfig) {
        if config == self.limits.config {
            return;
        }
        tracing::info!(provider = %config.provider, model = %config.model, "session configuration changed");
        if config.provider != self.limits.config.provider {
            self.model = ModelClient::new(
                config.provider,
                self.options.paths.proxy_socket(),
                self.options.model_retry,
            );
        }
        let intervals = (self.limits.heartbeat_interval, self.limits.poll_interval);
        self.limits = Limits::new(config);
        (self.limits.heartbeat_interval, self.limits.poll_interval) = intervals;
    }

    /// Heartbeats, waits for rows and runs turns until `shutdown` resolves, then stops
    /// without waiting for a turn in progress (its rows stay `processing` and the next
    /// container takes them again; every write is one atomic transaction).
    pub async fn run_until(
        mut self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), RunnerError> {
        let heartbeat = heartbeat::spawn(
            self.options.paths.heartbeat(),
            self.limits.heartbeat_interval,
        );
        self.wake = Some(Wake::new(
            &self.options.paths.in_dir(),
            self.limits.poll_interval,
            self.limits.config.watch_files,
        ));
        tokio::pin!(shutdown);
        let result = loop {
            // Rows due by now are seen by `process_all`; any due later is waited for below,
            // even one that comes due while the turns run.
            let checked_at = protocol::time::now_ms();
            tokio::select! {
                biased;
                () = &mut shutdown => break Ok(()),
                result = self.process_all() => if let Err(error) = result {
                    break Err(error);
                },
            }
            let next_due = match self.next_due_at(checked_at).await {
                Ok(next_due) => next_due,
                Err(error) => break Err(error),
            };
            tokio::select! {
                biased;
                () = &mut shutdown => break Ok(()),
                reason = next_wake(self.wake.as_mut()) => tracing::trace!(?reason, "woke"),
                () = sleep_until_unix_ms(next_due) => tracing::trace!("a scheduled row came due"),
            }
        };
        heartbeat.abort();
        self.close().await;
        tracing::info!("stopped");
        result
    }

    /// When the next trigger row due after `after` (unix ms) comes due. A busy database
    /// counts as "none known": the poll and file events still wake the runner.
    async fn next_due_at(&self, after: i64) -> Result<Option<i64>, RunnerError> {
        match self
            .store
            .handle
            .call(move |store| store.next_due_at(after))
            .await
        {
            Ok(next_due) => Ok(next_due),
            Err(error) if error.is_retryable() => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Runs turns until no trigger row is due. A busy database is logged and left for the
    /// next wake.
    async fn process_all(&mut self) -> Result<(), RunnerError> {
        loop {
            match self.process_pending().await {
                Ok(Some(_)) => {}
                Ok(None) => return Ok(()),
                Err(error) if error.is_retryable() => {
                    tracing::warn!(%error, "the session database is busy; trying again on the next wake");
                    return Ok(());
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Stops the store thread after its current transaction.
    pub async fn close(self) {
        self.store.close().await;
    }
}

/// The next wake event; never when there is no [`Wake`].
async fn next_wake(wake: Option<&mut Wake>) -> crate::wake::WakeReason {
    match wake {
        Some(wake) => wake.next().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until the unix time `at` (ms); forever when `None`.
async fn sleep_until_unix_ms(at: Option<i64>) {
    match at {
        Some(at) => {
            let wait = at.saturating_sub(protocol::time::now_ms()).max(0);
            tokio::time::sleep(Duration::from_millis(u64::try_from(wait).unwrap_or(0))).await;
        }
        None => std::future::pending().await,
    }
}

/// Opens the session and runs it until `shutdown` resolves (the binary passes SIGTERM or
/// Ctrl-C). Shutdown during the start is a clean exit too.
pub async fn run(
    options: RunnerOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunnerError> {
    tokio::pin!(shutdown);
    // HTTP(S)_PROXY inside the container: 127.0.0.1:3128 piped to the proxy socket.
    let _egress = crate::egress::start(&options.paths.proxy_socket()).await;
    let runner = tokio::select! {
        biased;
        () = &mut shutdown => return Ok(()),
        runner = Runner::open(options) => runner?,
    };
    runner.run_until(shutdown).await
}
