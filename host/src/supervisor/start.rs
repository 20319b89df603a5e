//! Starting a session's container ([`Supervisor::spawn_start`]): the disk reserve check, the
//! session's owner (its own uid), its quota disk (`session::disk`, made on the first start),
//! config and destinations projected into `inbound.db`, the model proxy on `in/proxy.sock`
//! (owned by the session's uid), then create (inspected and verified against the policy by the
//! runtime) and start, and the watch on `out/`.
//!
//! A start that fails, or panics, frees its slot, fails the rows that were waiting (so they
//! are not retried forever), and tells the person once; the next message starts afresh.
//! [`DiskSettings`] is what the supervisor knows about disks, [`DiskStatus`] what
//! `crabpot status` shows of them.

use super::groups::GroupContainer;
use super::{LABEL_GROUP, LABEL_INSTALL, LABEL_SESSION};
use super::{Notice, Running, Slot, Supervisor};
use crate::config::WakeMode;
use crate::db::central;
use crate::proxy::SessionLabel;
use crate::runtime::{ContainerId, ContainerSpec, MountSpec};
use crate::session::disk::{self, Prepared, Quotas};
use crate::session::owner::Owner;
use crate::session::{SessionRef, SessionSetup};
use futures_util::FutureExt;
use protocol::SessionId;
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Serializes mounting and unmounting of one session's disk (a start racing the release
/// after a stop), striped by session id so the table stays fixed in size.
static DISK_LOCKS: std::sync::LazyLock<Vec<tokio::sync::Mutex<()>>> =
    std::sync::LazyLock::new(|| (0..64).map(|_| tokio::sync::Mutex::new(())).collect());

fn disk_lock(session: &SessionId) -> &'static tokio::sync::Mutex<()> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    session.as_str().hash(&mut hasher);
    let stripe = (hasher.finish() % DISK_LOCKS.len() as u64) as usize;
    // In range by construction; `get` keeps clippy's indexing rules happy without a panic.
    DISK_LOCKS.get(stripe).unwrap_or(&DISK_LOCKS[0])
}

/// What the supervisor knows about disks, fixed at start.
#[derive(Clone, Debug)]
pub struct DiskSettings {
    /// Whether quota disks work on this host (`disk::probe`), and why not.
    pub quotas: Quotas,
    /// The default quota of a session's `out/` and `work/`, in MiB (a group may override).
    pub quota_mb: u64,
    /// Free disk kept on the data dir's filesystem, in MiB: below it no container starts.
    pub reserve_mb: u64,
    /// Where free disk is measured (the data dir).
    pub data_dir: PathBuf,
    /// Which uids containers run as, in words (for `crabpot status`).
    pub uids: String,
}

impl DiskSettings {
    /// No quotas and no reserve: unit tests and tools that run no real containers.
    pub fn off(reason: &str) -> DiskSettings {
        DiskSettings {
            quotas: Quotas::Off {
                reason: reason.to_owned(),
            },
            quota_mb: 0,
            reserve_mb: 0,
            data_dir: PathBuf::from("."),
            uids: String::new(),
        }
    }
}

/// The disk part of `crabpot status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DiskStatus {
    /// `on (1024 MiB per session)` or `off: <why>`.
    pub quotas: String,
    /// Free MiB on the data dir's filesystem; `None` when it cannot be measured.
    pub free_mb: Option<u64>,
    pub reserve_mb: u64,
    /// Set while new containers are refused for lack of disk, saying why.
    pub refusing: Option<String>,
    /// Which uids containers run as.
    pub uids: String,
}

impl Supervisor {
    pub(super) fn spawn_start(self: &Arc<Self>, session: SessionRef) {
        let this = Arc::clone(self);
        let span =
            tracing::info_span!("session", session_id = %session.id, group = %session.agent_group);
        self.tasks.spawn(
            async move {
                // Cancels what a failed or panicked start leaves serving (its proxy).
                let cancel = this.shutdown.child_token();
                let started = AssertUnwindSafe(this.start(&session, cancel.clone()))
                    .catch_unwind()
                    .await;
                let result = match started {
                    Ok(result) => result,
                    Err(panic) => Err(format!("the start failed unexpectedly ({})", panic_text(&panic))),
                };
                match result {
                    Ok(running) => {
                        tracing::info!(container = %running.container, "container started");
                        crate::metrics::global().container_started();
                        this.state().slots.insert(session.id.clone(), Slot::Running(running));
                        // Rows may have been written before the watch existed.
                        let _ = this.out_changed.send(session.clone());
                    }
                    Err(message) => {
                        cancel.cancel();
                        crate::metrics::global().container_start_failed();
                        if this.log_gate.should_log(&format!("supervisor.start {}", session.id)) {
                            tracing::error!(error = %message, "could not start the session's container");
                        }
                        this.state().slots.remove(&session.id);
                        let finished = this.fail_pending(&session, &message).await;
                        if this.notices.send(Notice {
                            session: session.clone(),
                            text: format!("crabpot could not start this conversation's agent: {message}"),
                            finished,
                        }).is_err() {
                            tracing::warn!("the notice of a failed start could not be queued (shutting down)");
                        }
                        this.fill_from_queue();
                    }
                }
            }
            .instrument(span),
        );
    }

    fn container_name(&self, session: &SessionId) -> String {
        format!("crabpot-{}-{}", self.config.install_id, session)
    }

    fn spec(&self, session: &SessionRef, owner: Owner, settings: GroupContainer) -> ContainerSpec {
        let paths = self.sessions.paths(session);
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
            image: settings.image,
            labels,
            user: owner.user(),
            env: container_env(&self.config.agent_log, &settings.git_author),
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
            limits: settings.limits,
        }
    }

    async fn start(
        self: &Arc<Self>,
        session: &SessionRef,
        cancel: CancellationToken,
    ) -> Result<Running, String> {
        let started_at = Instant::now();
        if let Some(reason) = self.disk_refusal() {
            return Err(reason);
        }
        let owner = self
            .sessions
            .owner(session)
            .await
            .map_err(|e| format!("preparing the session folder failed: {e}"))?;
        self.prepare_disk(session, owner).await?;
        self.project(session)
            .await
            .map_err(|e| format!("preparing the session files failed: {e}"))?;
        self.serve_proxy(session, owner, cancel.clone())?;
        let settings = self.container_settings_for(session).await;
        let spec = self.spec(session, owner, settings);
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
        let container = created.map_err(|e| e.to_string())?;
        if let Err(e) = self.runtime.start(&container).await {
            if let Err(remove) = self.runtime.remove(&container).await {
                tracing::warn!(error = %remove, "removing the container that did not start failed");
            }
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

    /// Why new containers are refused for lack of disk, if they are.
    pub(super) fn disk_refusal(&self) -> Option<String> {
        let reserve_mb = self.config.disk.reserve_mb;
        if reserve_mb == 0 {
            return None;
        }
        let free_mb = disk::free_bytes(&self.config.disk.data_dir).ok()? / (1024 * 1024);
        (free_mb < reserve_mb).then(|| {
            format!(
                "the host's disk is nearly full: {free_mb} MiB free where crabpot keeps its data, \
                 below the reserve of {reserve_mb} MiB (disk_reserve_mb); the operator must free space"
            )
        })
    }

    pub(super) fn disk_status(&self) -> DiskStatus {
        let settings = &self.config.disk;
        DiskStatus {
            quotas: match &settings.quotas {
                Quotas::On => format!(
                    "on ({} MiB per session unless its group says otherwise)",
                    settings.quota_mb
                ),
                Quotas::Off { reason } => format!("off: {reason}"),
            },
            free_mb: disk::free_bytes(&settings.data_dir)
                .ok()
                .map(|bytes| bytes / (1024 * 1024)),
            reserve_mb: settings.reserve_mb,
            refusing: self.disk_refusal(),
            uids: settings.uids.clone(),
        }
    }

    /// Readies `out/` and `work/` (the quota disk, made or mounted again) on a blocking thread.
    async fn prepare_disk(&self, session: &SessionRef, owner: Owner) -> Result<Prepared, String> {
        let quota_mb = match self.config.disk.quotas {
            Quotas::On => Some(self.quota_for(session).await).filter(|mb| *mb > 0),
            Quotas::Off { .. } => None,
        };
        let paths = self.sessions.paths(session);
        let _locked = disk_lock(&session.id).lock().await;
        let prepared = tokio::task::spawn_blocking(move || disk::prepare(&paths, owner, quota_mb))
            .await
            .map_err(|e| format!("preparing the session's disk failed: {e}"))?
            .map_err(|e| format!("preparing the session's disk failed: {e}"))?;
        if let (Prepared::NoQuota, Some(_)) = (prepared, quota_mb) {
            tracing::warn!("this session's folders predate disk quotas: it runs without one");
        }
        Ok(prepared)
    }

    /// After a session's container was stopped for idleness: unmounts its disk unless a new
    /// start has begun meanwhile, so sessions left idle hold no loop device and no mount (the
    /// next start mounts it again, in a few ms).
    pub(super) async fn release_disk_if_stopped(&self, session: &SessionRef) {
        if self.config.disk.quotas != Quotas::On {
            return;
        }
        let _locked = disk_lock(&session.id).lock().await;
        if self.state().slots.contains_key(&session.id) {
            return;
        }
        let paths = self.sessions.paths(session);
        match tokio::task::spawn_blocking(move || disk::release(&paths)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "unmounting the session's disk failed"),
            Err(e) => tracing::warn!(error = %e, "unmounting the session's disk failed"),
        }
    }

    /// Unmounts a session's quota disk (before its folder is removed). Not mounted is fine.
    pub async fn release_disk(&self, session: &SessionRef) -> Result<(), String> {
        let paths = self.sessions.paths(session);
        let _locked = disk_lock(&session.id).lock().await;
        tokio::task::spawn_blocking(move || disk::release(&paths))
            .await
            .map_err(|e| format!("releasing the session's disk failed: {e}"))?
            .map_err(|e| format!("releasing the session's disk failed: {e}"))
    }

    /// Projects the current config and destinations into `inbound.db` (on every wake, and
    /// after every change to the group's destinations).
    pub(super) async fn project(&self, session: &SessionRef) -> Result<(), crate::db::DbError> {
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
        let paths = self.sessions.paths(session);
        config.disk_quota_mb =
            match tokio::task::spawn_blocking(move || disk::recorded(&paths)).await {
                Ok(Some(Prepared::Quota { mb })) => mb,
                Ok(Some(Prepared::NoQuota) | None) | Err(_) => 0,
            };
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

    /// Serves the session's model proxy on `in/proxy.sock`, owned by the uid its container
    /// runs as (no other uid can connect).
    pub(super) fn serve_proxy(
        &self,
        session: &SessionRef,
        owner: Owner,
        cancel: CancellationToken,
    ) -> Result<(), String> {
        let socket = self.sessions.paths(session).proxy_socket();
        let listener = crate::proxy::bind_session_socket(&socket, Some((owner.uid, owner.gid)))
            .map_err(|e| {
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
}

/// The message of a caught panic, for the failure notice and the log.
fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned())
}

#[cfg(test)]
mod tests;

/// The container's environment. Never a secret: the proxy is the runner's own forwarder to
/// the host's egress checks (`localhost` stays in the container, so a dev server the agent
/// starts is reached directly), and the author names the group's commits.
fn container_env(agent_log: &str, git_author: &str) -> Vec<(String, String)> {
    const PROXY: &str = "http://127.0.0.1:3128";
    let (name, email) = git_author
        .split_once(" <")
        .map(|(name, email)| (name.trim(), email.trim_end_matches('>')))
        .unwrap_or((git_author, ""));
    let mut env = vec![("RUST_LOG".to_owned(), agent_log.to_owned())];
    for key in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
        env.push((key.to_owned(), PROXY.to_owned()));
    }
    for key in ["NO_PROXY", "no_proxy"] {
        env.push((key.to_owned(), "localhost".to_owned()));
    }
    for (key, value) in [
        ("GIT_AUTHOR_NAME", name),
        ("GIT_COMMITTER_NAME", name),
        ("GIT_AUTHOR_EMAIL", email),
        ("GIT_COMMITTER_EMAIL", email),
    ] {
        env.push((key.to_owned(), value.to_owned()));
    }
    env
}
