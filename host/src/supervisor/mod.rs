//! The supervisor: one container per session, within a global cap (DESIGN §4 Wake, §5).
//!
//! [`Supervisor::wake`] gives a session with pending rows a container: a running one is
//! reused (the runner notices new rows by itself), never doubled; over the cap, sessions
//! queue in arrival order. Starting a container means: project config and destinations into
//! `inbound.db`, serve the session's model proxy on `in/proxy.sock`, create the container
//! (inspected and verified against the policy by the runtime), start it, and watch `out/` so
//! delivery hears of new rows at once. The sweep calls [`Supervisor::check`] to notice exits,
//! stale heartbeats and idle containers, and [`Supervisor::wake_due`] (in `due`) to start
//! containers for sessions whose scheduled tasks came due; [`Supervisor::adopt`] takes over
//! running containers after a host restart.

use crate::config::WakeMode;
use crate::db::DbThread;
use crate::db::central;
use crate::proxy::{Proxy, SessionLabel};
use crate::runtime::{ContainerId, ContainerLimits, ContainerRuntime, ContainerSpec, MountSpec};
use crate::session::{SessionRef, SessionSetup, SessionStore};
use protocol::{SessionConfig, SessionId};
use rusqlite::Connection;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

mod adopt;
mod due;
mod groups;
mod health;

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
    /// `uid:gid` of the container's user.
    pub container_user: (u32, u32),
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
        if self.shutdown.is_cancelled() {
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
        }
    }

    fn spawn_start(self: &Arc<Self>, session: SessionRef) {
        let this = Arc::clone(self);
        let span =
            tracing::info_span!("session", session_id = %session.id, group = %session.agent_group);
        self.tasks.spawn(
            async move {
                let result = this.start(&session).await;
                match result {
                    Ok(running) => {
                        tracing::info!(container = %running.container, "container started");
                        this.state().slots.insert(session.id.clone(), Slot::Running(running));
                        // Rows may have been written before the watch existed.
                        let _ = this.out_changed.send(session.clone());
                    }
                    Err(message) => {
                        tracing::error!(error = %message, "could not start the session's container");
                        this.state().slots.remove(&session.id);
                        let finished = this.fail_pending(&session, &message).await;
                        let _ = this.notices.send(Notice {
                            session: session.clone(),
                            text: format!("crabpot could not start this conversation's agent: {message}"),
                            finished,
                        });
                        this.fill_from_queue();
                    }
                }
            }
            .instrument(span),
        );
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

    fn container_name(&self, session: &SessionId) -> String {
        format!("crabpot-{}-{}", self.config.install_id, session)
    }

    fn spec(&self, session: &SessionRef, limits: ContainerLimits) -> ContainerSpec {
        let paths = self.sessions.paths(session);
        let (uid, gid) = self.config.container_user;
        let labels = BTreeMap::from([
            (LABEL_INSTALL.to_owned(), self.config.install_id.clone()),
            (LABEL_SESSION.to_owned(), session.id.to_string()),
            (LABEL_GROUP.to_owned(), session.agent_group.to_string()),
        ]);
        let mount = |source: PathBuf, target: String, read_only| MountSpec {
            source,
            target,
            read_only,
        };
        let root = protocol::paths::CONTAINER_SESSION_ROOT;
        ContainerSpec {
            name: self.container_name(&session.id),
            image: self.config.image.clone(),
            labels,
            user: format!("{uid}:{gid}"),
            env: vec![("RUST_LOG".into(), self.config.agent_log.clone())],
            command: Vec::new(),
            mounts: vec![
                mount(
                    paths.in_dir(),
                    format!("{root}/{}", protocol::paths::IN_DIR),
                    true,
                ),
                mount(
                    paths.out_dir(),
                    format!("{root}/{}", protocol::paths::OUT_DIR),
                    false,
                ),
                mount(
                    paths.work_dir(),
                    format!("{root}/{}", protocol::paths::WORK_DIR),
                    false,
                ),
                mount(
                    self.config.groups_dir.join(&session.group_folder),
                    protocol::paths::CONTAINER_GROUP_DIR.into(),
                    true,
                ),
            ],
            limits,
        }
    }

    async fn start(self: &Arc<Self>, session: &SessionRef) -> Result<Running, String> {
        let started_at = Instant::now();
        self.project(session)
            .await
            .map_err(|e| format!("preparing the session files failed: {e}"))?;
        let cancel = self.shutdown.child_token();
        self.serve_proxy(session, cancel.clone())?;
        let limits = self.limits_for(session).await;
        let spec = self.spec(session, limits);
        let created = match self.runtime.create(&spec).await {
            Err(crate::runtime::RuntimeError::NameConflict { name }) => {
                // A leftover container of this session (exited, not yet reaped): replace it.
                self.runtime
                    .remove(&ContainerId::new(name))
                    .await
                    .map_err(|e| e.to_string())?;
                self.runtime.create(&spec).await
            }
            other => other,
        };
        let container = match created {
            Ok(container) => container,
            Err(e) => {
                cancel.cancel();
                return Err(e.to_string());
            }
        };
        if let Err(e) = self.runtime.start(&container).await {
            cancel.cancel();
            let _ = self.runtime.remove(&container).await;
            return Err(e.to_string());
        }
        tracing::debug!(
            elapsed_ms = started_at.elapsed().as_millis() as u64,
            "create + start"
        );
        Ok(Running {
            session: session.clone(),
            container,
            started_at,
            last_activity: Instant::now(),
            cancel,
            _watcher: self.watch_out(session),
        })
    }

    /// Projects the current config and destinations into `inbound.db` (on every wake, and
    /// after every change to the group's destinations).
    async fn project(&self, session: &SessionRef) -> Result<(), crate::db::DbError> {
        let group = session.agent_group.clone();
        let destinations = self
            .central
            .call(move |conn| central::destinations_for(conn, &group))
            .await?;
        let mut config = self.config.session_config.clone();
        if self.config.wake_mode == WakeMode::Poll {
            config.poll_interval_ms = 1_000;
            config.watch_files = false;
        }
        self.sessions
            .project(
                session,
                SessionSetup {
                    routing: None,
                    config,
                    destinations,
                },
            )
            .await
    }

    fn serve_proxy(&self, session: &SessionRef, cancel: CancellationToken) -> Result<(), String> {
        let socket = self.sessions.paths(session).proxy_socket();
        let owner = Some(self.config.container_user);
        let listener = crate::proxy::bind_session_socket(&socket, owner).map_err(|e| {
            format!(
                "binding the model proxy at {} failed: {e}",
                socket.display()
            )
        })?;
        let label = SessionLabel {
            session_id: session.id.clone(),
            agent_group_id: session.agent_group.clone(),
        };
        self.tasks
            .spawn(Arc::clone(&self.proxy).serve(listener, label, cancel));
        Ok(())
    }

    /// Watches `out/` and forwards changes (not heartbeats) to delivery. `None` in poll mode
    /// or when the watch cannot be set up (delivery's periodic pass still covers the session).
    fn watch_out(&self, session: &SessionRef) -> Option<notify::RecommendedWatcher> {
        use notify::Watcher;
        if self.config.wake_mode == WakeMode::Poll {
            return None;
        }
        let sender = self.out_changed.clone();
        let target = session.clone();
        let handler = move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            let relevant = event.paths.iter().any(|path| {
                path.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(protocol::paths::OUTBOUND_DB))
            });
            if relevant {
                let _ = sender.send(target.clone());
            }
        };
        let mut watcher = match notify::recommended_watcher(handler) {
            Ok(watcher) => watcher,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch out/; relying on the periodic pass");
                return None;
            }
        };
        let out = self.sessions.paths(session).out_dir();
        match watcher.watch(&out, notify::RecursiveMode::NonRecursive) {
            Ok(()) => Some(watcher),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch out/; relying on the periodic pass");
                None
            }
        }
    }
}
