//! Delivery (DESIGN §4): reads each session's `outbound.db` read-only, as hostile input, and
//! hands valid replies to the channels.
//!
//! Every session being delivered has its own task ([`worker`]), fed by a coalesced "dirty"
//! signal, so a session whose read blocks, spins or floods delays only itself. [`Delivery::run`]
//! is the dispatcher ([`dispatch`]): `out/` file events, the periodic tick, terminals that
//! connect (`arrivals`) are routed to the right session's task; notices and the host's own
//! messages go to a task of their own. A read runs on a blocking thread under a timeout
//! ([`reader`]); a hostile or broken file fails its session once (`supervisor::quarantine`).
//! A session whose events bring nothing new backs off, and an unchanged file costs the tick
//! one `lstat`.
//!
//! A pass reads the rows above the session's high-water mark (and, when waiting rows are
//! due, those above its cursor) and the acks. Every row is checked — odd seq, strictly
//! increasing, above the last handled seq unless it is known to wait, within the caps of
//! [`OutboundLimits`], known kind, well-formed content within size caps — and a bad row is
//! refused with a logged reason, recorded as `dropped` in `delivered` and in
//! `dropped_messages`, and never stops the loop. The destination is re-validated against the
//! central DB (the origin chat, or one of the agent group's `agent_destinations`), never
//! taken from what the container wrote. Chat rows are sent in runs: `sending` recorded for
//! the run in one transaction before the platform calls, the results, the rows that wait and
//! the persisted cursor in one transaction after ([`bookkeeping`]). Failures are retried with
//! backoff, and after the last attempt the row is `failed` and the agent is told with a
//! `system` row. A row nobody could receive (no terminal connected) waits, without counting
//! an attempt, until a recipient of its chat arrives. Finished acks are copied into
//! `messages_in`, and the channel hears that the turn is complete.
//!
//! Where a row goes is decided in `route` (the reply of a turn an inbound webhook started
//! fans out to the group's destinations, in `fanout`); rows to another agent are written into its
//! session by [`a2a`], within its loop caps; the agent's `system` rows (tasks, new agents)
//! are carried out in `actions`; questions, progress lists, edits, reactions and files are
//! prepared in `operations` (files through [`outbox`], whose folder is removed once a row is
//! handled); host notices and turn completion are in `notices`, where a finished run of a
//! recurring task also gets its next run.

pub mod a2a;
mod acks;
mod actions;
mod bookkeeping;
mod chat;
mod dispatch;
pub mod drafts;
mod fanout;
pub mod limits;
pub mod live;
mod notices;
mod operations;
pub mod outbox;
mod pass;
mod reader;
pub mod refusal;
mod route;
#[cfg(test)]
mod tests;
mod worker;

use crate::bridge::Bridge;
use crate::channels::Channels;
use crate::db::DbThread;
use crate::router::Router;
use crate::session::{SessionRef, SessionStore};
use crate::supervisor::Supervisor;
use crate::tasks::Tasks;
use a2a::{A2aLimits, LoopGuard};
pub use limits::OutboundLimits;
use protocol::inbound::{WaitReason, Waiting};
use protocol::{OutboundContent, OutboundKind, OutboundRow, Seq, Writer};
use refusal::Refusal;
use route::Route;
use rusqlite::Connection;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Platform calls per row before it is `failed`.
const MAX_ATTEMPTS: i64 = 5;
/// How long repeated warnings of one kind and session are coalesced.
const LOG_WINDOW: Duration = Duration::from_secs(60);
/// How long a row waits after a passing failure of the host's own (a busy database).
const BUSY_RETRY_MS: i64 = 1_000;

pub struct Delivery {
    sessions: Arc<SessionStore>,
    central: Arc<DbThread<Connection>>,
    supervisor: Arc<Supervisor>,
    channels: Arc<Channels>,
    /// How rows reach each platform (degrading, splitting, markup, rates, live drafts).
    bridge: Arc<Bridge>,
    interval: Duration,
    loop_guard: Mutex<LoopGuard>,
    router: Arc<Router>,
    tasks: Arc<Tasks>,
    /// `data/files/`: copies of the files agents send, for channel adapters to read.
    files_dir: PathBuf,
    limits: OutboundLimits,
    /// What fanned-out replies (of turns inbound webhooks started) have done so far.
    fanouts: fanout::Fanouts,
    /// Coalesces repeated warnings per session (a flood of refused rows is one line).
    log_gate: Arc<crate::log_gate::LogGate>,
    #[cfg(test)]
    read_gate: Mutex<Option<reader::ReadGate>>,
}

/// What delivery needs.
pub struct DeliveryParts {
    pub sessions: Arc<SessionStore>,
    pub central: Arc<DbThread<Connection>>,
    pub supervisor: Arc<Supervisor>,
    pub channels: Arc<Channels>,
    pub bridge: Arc<Bridge>,
    /// How often sessions are looked at even without file events.
    pub interval: Duration,
    pub a2a_limits: A2aLimits,
    /// For `create_agent` (policy and approvals) and the host's notes to agents.
    pub router: Arc<Router>,
    /// For task actions, and the next run of recurring tasks.
    pub tasks: Arc<Tasks>,
    /// Where files sent to chats are copied (`data/files/`).
    pub files_dir: PathBuf,
    /// Rows per turn and per minute, and the read timeout.
    pub outbound_limits: OutboundLimits,
}

/// Why a row is not handled yet, and until when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wait {
    pub reason: WaitReason,
    /// Unix ms; `None` = until a recipient arrives.
    pub until: Option<i64>,
}

impl Wait {
    /// A passing failure of the host's own: try again shortly.
    fn busy() -> Self {
        Wait {
            reason: WaitReason::Retry,
            until: Some(protocol::time::now_ms() + BUSY_RETRY_MS),
        }
    }

    fn of(self, row_id: &protocol::MessageId, seq: Seq) -> Waiting {
        Waiting {
            message_out_id: row_id.clone(),
            seq,
            reason: self.reason,
            until: self.until,
        }
    }
}

/// What became of one row: handled for good by its handler (delivered to an agent, carried
/// out, or failed for good, which is final too), a chat message ready to send (the pass
/// sends runs of them), deferred to a later pass, or refused (bad or unauthorised; `tell` =
/// say so to the agent).
enum RowOutcome {
    Delivered,
    Send(Box<chat::ChatSend>),
    Deferred(Wait),
    Refused { refusal: Refusal, tell: bool },
}

impl RowOutcome {
    fn refused(refusal: Refusal) -> Self {
        RowOutcome::Refused {
            refusal,
            tell: true,
        }
    }

    fn busy() -> Self {
        RowOutcome::Deferred(Wait::busy())
    }
}

impl Delivery {
    /// The gate its repeated warnings go through (`serve` runs its flusher, so the count of
    /// a warning that stopped repeating is logged too).
    pub fn log_gate(&self) -> Arc<crate::log_gate::LogGate> {
        Arc::clone(&self.log_gate)
    }

    pub fn new(parts: DeliveryParts) -> Arc<Self> {
        Arc::new(Self {
            sessions: parts.sessions,
            central: parts.central,
            supervisor: parts.supervisor,
            channels: parts.channels,
            bridge: parts.bridge,
            interval: parts.interval,
            loop_guard: Mutex::new(LoopGuard::new(parts.a2a_limits)),
            router: parts.router,
            tasks: parts.tasks,
            files_dir: parts.files_dir,
            limits: parts.outbound_limits,
            fanouts: fanout::Fanouts::default(),
            log_gate: Arc::new(crate::log_gate::LogGate::new(LOG_WINDOW)),
            #[cfg(test)]
            read_gate: Mutex::new(None),
        })
    }

    /// Handles one row; once it is handled for good, its outbox folder goes (a chat send's
    /// goes after the send, in the pass).
    async fn handle_row(
        &self,
        session: &SessionRef,
        row: &OutboundRow,
        attempts: i64,
        resend: bool,
        routes: &mut route::RouteCache,
    ) -> RowOutcome {
        let outcome = self
            .handle_row_once(session, row, attempts, resend, routes)
            .await;
        match outcome {
            RowOutcome::Delivered | RowOutcome::Refused { .. } => {
                if names_files(row) {
                    self.clean_outbox(session, row.id.as_str()).await;
                }
            }
            RowOutcome::Send(_) | RowOutcome::Deferred(_) => {}
        }
        outcome
    }

    async fn handle_row_once(
        &self,
        session: &SessionRef,
        row: &OutboundRow,
        attempts: i64,
        resend: bool,
        routes: &mut route::RouteCache,
    ) -> RowOutcome {
        let Some(kind) = OutboundKind::parse(&row.kind) else {
            return RowOutcome::refused(Refusal::UnknownKind(format!(
                "unknown kind {:?}",
                row.kind
            )));
        };
        let content = match OutboundContent::parse(kind, &row.content) {
            Ok(content) => content,
            Err(e) => return RowOutcome::refused(Refusal::BadContent(e.to_string())),
        };
        let now = protocol::time::now_ms();
        if let Some(at) = row.deliver_after.filter(|at| *at > now) {
            return RowOutcome::Deferred(Wait {
                reason: WaitReason::DeliverAfter,
                until: Some(at),
            });
        }
        if let OutboundContent::System { .. } = &content {
            return self.run_action(session, row, &content).await;
        }
        let route = match routes
            .route(
                self,
                session,
                row.destination.as_deref(),
                row.in_reply_to.as_ref(),
            )
            .await
        {
            Ok(route) => route,
            Err(reason) => return RowOutcome::refused(Refusal::Destination(reason)),
        };
        let address = match (route, &content) {
            (Route::Chat(address), _) => address,
            (Route::Fanout { hook, targets }, _) => {
                return self
                    .prepare_fanout(session, row, content, (hook, targets), attempts, resend)
                    .await;
            }
            (Route::Agent { agent_group }, OutboundContent::Message(message)) => {
                return self
                    .send_to_agent(session, row, message, Some(agent_group), None)
                    .await;
            }
            (Route::Return { session: asking }, OutboundContent::Message(message)) => {
                return self
                    .send_to_agent(session, row, message, None, Some(asking))
                    .await;
            }
            (Route::Agent { .. } | Route::Return { .. }, _) => {
                return RowOutcome::refused(Refusal::ToAgent(
                    "only plain messages (text and files) can be sent to another agent".into(),
                ));
            }
        };
        self.prepare_chat(session, row, content, address, attempts, resend)
            .await
    }

    /// Test hook: runs `gate` on the blocking thread before every read of outbound.db, for
    /// sessions whose task starts after this call.
    #[cfg(test)]
    fn set_read_gate(&self, gate: reader::ReadGate) {
        *self
            .read_gate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(gate);
    }
}

/// Whether a row's content names files (whose outbox folder is removed once it is handled).
/// Cheap: most rows name none, and a flood of refused rows must not cost a folder walk each.
fn names_files(row: &OutboundRow) -> bool {
    row.content.contains("\"files\"")
}

/// Order and parity checks that need no database.
fn invalid_order(row: &OutboundRow, last: Option<Seq>) -> Option<String> {
    if !Writer::Container.owns(row.seq) {
        return Some(format!(
            "seq {} is not odd: the container writes odd seqs only",
            row.seq
        ));
    }
    if let Some(last) = last
        && row.seq <= last
    {
        return Some(format!("seq {} does not increase (after {last})", row.seq));
    }
    None
}
