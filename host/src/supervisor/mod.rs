//! The supervisor: one container per session, within a global cap (DESIGN §4 Wake, §5).
//!
//! [`Supervisor::wake`] gives a session with pending rows a container: a running one is
//! reused (the runner notices new rows by itself), never doubled; over the cap, sessions
//! queue in arrival order. Starting a container (`start`) means: check the disk reserve, give
//! the session its own uid and its quota disk, project config and destinations into
//! `inbound.db`, serve the session's model proxy on `in/proxy.sock`, create the container
//! (inspected and verified against the policy by the runtime), start it, and watch `out/` so
//! delivery hears of new rows at once. A start that fails or panics frees its slot. The sweep calls [`Supervisor::check`] to notice exits,
//! stale heartbeats and idle containers, and [`Supervisor::wake_due`] (in `due`) to start
//! containers for sessions whose scheduled tasks came due; [`Supervisor::adopt`] takes over
//! running containers after a host restart.

use crate::config::WakeMode;
use crate::db::DbThread;
use crate::proxy::Proxy;
use crate::runtime::{ContainerId, ContainerLimits, ContainerRuntime};
use crate::session::{SessionRef, SessionStore};
use protocol::{SessionConfig, SessionId};
use rusqlite::Connection;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod adopt;
mod due;
mod groups;
mod health;
pub use health::heartbeat_age;
mod quarantine;
mod start;
mod watch;

pub use start::{DiskSettings, DiskStatus};

pub const LABEL_INSTALL: &str = "crabpot.install";
pub const LABEL_SESSION: &str = "crabpot.session";
pub const LABEL_GROUP: &str = "crabpot.group";

/// How many times a row is retried after its container died before it is `failed`.
const MAX_TRIES: i64 = 3;

/// What the supervisor needs to know, fixed at start.
#[derive(Clone, Debug)]
pub struct SupervisorConfig {
    pub install_id: String,
    pub image: String,
    /// The image of groups that choose `toolbox`.
    pub toolbox_image: String,
    /// Quotas, the disk reserve and the uid scheme (each container's user comes from the
    /// session store's owners).
    pub disk: DiskSettings,
    pub limits: ContainerLimits,
    pub max_containers: usize,
    /// Absolute path of `groups/`.
    pub groups_dir: PathBuf,
    pub idle_timeout: Duration,
    pub heartbeat_stale: Duration,
    /// `RUST_LOG` inside the container.
    pub agent_log: String,
    pub wake_mode: WakeMode,
    pub session_config: SessionConfig,
}

/// Something a person should be told about a session, through its origin chat.
#[derive(Clone, Debug)]
pub struct Notice {
    pub session: SessionRef,
    pub text: String,
    /// Inbound rows this notice finishes: their turns are reported complete after it.
    pub finished: Vec<protocol::MessageId>,
}

struct Running {
    session: SessionRef,
    container: ContainerId,
    started_at: Instant,
    last_activity: Instant,
    /// Cancels the session's proxy server.
    cancel: CancellationToken,
    /// Keeps the `out/` watch alive; dropped with the slot.
    _watcher: Option<notify::RecommendedWatcher>,
}

enum Slot {
    Starting,
    Running(Running),
}

#[derive(Default)]
struct State {
    slots: HashMap<SessionId, Slot>,
    queue: VecDeque<SessionRef>,
}

/// A snapshot for `crabpot status` and the sweep.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SupervisorStatus {
    pub running: Vec<String>,
    pub starting: usize,
    pub queued: Vec<String>,
    pub max_containers: usize,
    pub disk: DiskStatus,
}

pub struct Supervisor {
    config: SupervisorConfig,
    runtime: Arc<dyn ContainerRuntime>,
    sessions: Arc<SessionStore>,
    central: Arc<DbThread<Connection>>,
    proxy: Arc<Proxy>,
    state: Mutex<State>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    /// Sessions whose `out/` changed: delivery reads them.
    out_changed: mpsc::UnboundedSender<SessionRef>,
    notices: mpsc::UnboundedSender<Notice>,
    /// Sessions marked failed (see `quarantine`): they get no container.
    failures: quarantine::Failures,
    /// Coalesces the warnings a crash-looping session repeats (failed starts, exits).
    log_gate: Arc<crate::log_gate::LogGate>,
}

pub struct SupervisorParts {
    pub runtime: Arc<dyn ContainerRuntime>,
    pub sessions: Arc<SessionStore>,
    pub central: Arc<DbThread<Connection>>,
    pub proxy: Arc<Proxy>,
    pub tasks: TaskTracker,
    pub shutdown: CancellationToken,
    pub out_changed: mpsc::UnboundedSender<SessionRef>,
    pub notices: mpsc::UnboundedSender<Notice>,
}

impl Supervisor {
    /// The gate its repeated warnings go through (`serve` runs its flusher, so the count of
    /// a warning that stopped repeating is logged too).
    pub fn log_gate(&self) -> Arc<crate::log_gate::LogGate> {
        Arc::clone(&self.log_gate)
    }

    pub fn new(config: SupervisorConfig, parts: SupervisorParts) -> Arc<Self> {
        Arc::new(Self {
            config,
            runtime: parts.runtime,
            sessions: parts.sessions,
            central: parts.central,
            proxy: parts.proxy,
            state: Mutex::new(State::default()),
            tasks: parts.tasks,
            shutdown: parts.shutdown,
            out_changed: parts.out_changed,
            notices: parts.notices,
            failures: quarantine::Failures::default(),
            log_gate: Arc::new(crate::log_gate::LogGate::new(Duration::from_secs(60))),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock would be a bug in this file; keep serving anyway.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Makes sure the session has a container (now, or when a slot frees up).
    pub fn wake(self: &Arc<Self>, session: &SessionRef) {
        if self.shutdown.is_cancelled() || self.refuse_failed(session) {
            return;
        }
        let mut state = self.state();
        match state.slots.get_mut(&session.id) {
            Some(Slot::Running(running)) => {
                running.last_activity = Instant::now();
                return;
            }
            Some(Slot::Starting) => return,
            None => {}
        }
        if state.slots.len() >= self.config.max_containers {
            if !state.queue.iter().any(|queued| queued.id == session.id) {
                tracing::info!(session_id = %session.id, queued = state.queue.len() + 1, "at the container cap; queued");
                state.queue.push_back(session.clone());
            }
            return;
        }
        state.slots.insert(session.id.clone(), Slot::Starting);
        drop(state);
        self.spawn_start(session.clone());
    }

    /// Notes activity (a delivered reply), which postpones the idle timeout.
    pub fn touch(&self, session: &SessionId) {
        if let Some(Slot::Running(running)) = self.state().slots.get_mut(session) {
            running.last_activity = Instant::now();
        }
    }

    /// The sessions with a running container.
    pub fn running_sessions(&self) -> Vec<SessionRef> {
        self.state()
            .slots
            .values()
            .filter_map(|slot| match slot {
                Slot::Running(running) => Some(running.session.clone()),
                Slot::Starting => None,
            })
            .collect()
    }

    pub fn status(&self) -> SupervisorStatus {
        let state = self.state();
        let mut running = Vec::new();
        let mut starting = 0;
        for (id, slot) in &state.slots {
            match slot {
                Slot::Running(_) => running.push(id.to_string()),
                Slot::Starting => starting += 1,
            }
        }
        running.sort();
        SupervisorStatus {
            running,
            starting,
            queued: state.queue.iter().map(|s| s.id.to_string()).collect(),
            max_containers: self.config.max_containers,
            disk: self.disk_status(),
        }
    }

    fn fill_from_queue(self: &Arc<Self>) {
        loop {
            let next = {
                let mut state = self.state();
                if state.slots.len() >= self.config.max_containers {
                    return;
                }
                let Some(next) = state.queue.pop_front() else {
                    return;
                };
                if state.slots.contains_key(&next.id) {
                    continue;
                }
                state.slots.insert(next.id.clone(), Slot::Starting);
                next
            };
            self.spawn_start(next);
        }
    }
}
